-- The demo group buy: the umbrella (89.00) at 69.00 (直减 20.00) for a team of 3 within 30
-- minutes, one seat per shopper, effective for a year from this migration.
INSERT INTO group_buy_activity (activity_id, name, product_id, plan, off_cents, target_count, valid_minutes,
                                take_limit, status, start_at, end_at, created_at) VALUES
(100123, '雨伞 3人团', '100010090095', 'ZJ', 2000, 3, 30, 1, 'EFFECTIVE',
 (now() AT TIME ZONE 'utc'), (now() AT TIME ZONE 'utc') + INTERVAL '1 year', (now() AT TIME ZONE 'utc'));
-- Activities the admin creates are numbered after the demo one.
SELECT setval(pg_get_serial_sequence('group_buy_activity', 'activity_id'), (SELECT MAX(activity_id) FROM group_buy_activity));
