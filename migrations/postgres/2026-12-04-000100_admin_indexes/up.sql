-- The admin's order list, newest first (`id` descending) under each filter: each index serves its
-- filter and the order together, so a page reads its rows and no more. The openid filter goes
-- through the shopper's user id and `pay_order_by_user (user_id, id)`.
CREATE INDEX pay_order_by_status_id ON pay_order (status, id);
CREATE INDEX pay_order_by_product ON pay_order (product_id, id);
CREATE INDEX pay_order_by_time ON pay_order (order_time, id);
