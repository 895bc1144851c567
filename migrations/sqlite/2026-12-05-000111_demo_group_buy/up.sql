-- The demo group buy: the umbrella (89.00) at 69.00 (直减 20.00) for a team of 3 within 30
-- minutes, one seat per shopper, effective for a year from this migration.
INSERT INTO group_buy_activity (activity_id, name, product_id, plan, off_cents, target_count, valid_minutes,
                                take_limit, status, start_at, end_at, created_at) VALUES
(100123, '雨伞 3人团', '100010090095', 'ZJ', 2000, 3, 30, 1, 'EFFECTIVE',
 CURRENT_TIMESTAMP, datetime('now', '+1 year'), CURRENT_TIMESTAMP);
