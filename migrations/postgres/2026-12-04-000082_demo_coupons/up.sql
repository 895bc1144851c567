-- Demo coupon templates, claimable by any logged-in shopper at /coupons.
INSERT INTO coupon_template (template_id, name, kind, threshold_cents, off_cents, rate_bp, max_off_cents, scope,
                             valid_days, total_quota, per_user_limit, created_at) VALUES
(9001, '满50减10', 'MJ', 5000, 1000, 0, NULL, 'ALL', 30, 10000, 1, (now() AT TIME ZONE 'utc')),
(9002, '绿茶8折券', 'ZK', 0, 0, 8000, 2000, 'PRODUCTS', 30, 10000, 1, (now() AT TIME ZONE 'utc')),
(9003, '直减5元', 'ZJ', 0, 500, 0, NULL, 'ALL', 30, 1000, 3, (now() AT TIME ZONE 'utc'));
INSERT INTO coupon_template_product (template_id, product_id) VALUES (9002, '100010090092');
-- Templates the admin creates are numbered after the demo ones.
SELECT setval(pg_get_serial_sequence('coupon_template', 'template_id'), (SELECT MAX(template_id) FROM coupon_template));
