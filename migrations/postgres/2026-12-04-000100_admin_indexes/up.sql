-- The admin's order list, newest first (`id` descending) under each filter: each index serves its
-- filter and the order together, so a page reads its rows and no more. The openid filter goes
-- through the shopper's user id and `pay_order_by_user (user_id, id)`. The status index holds the
-- settled orders only (the list's condition repeats its own, so that SQLite may use it): a
-- checkout and a payment write none of it, and the few open or just-paid orders are found through
-- `pay_order_by_status`. Comparisons, not an IN list: SQLite builds a temporary b-tree of a list
-- of more than two values every time it checks a row written.
CREATE INDEX pay_order_by_settled_status ON pay_order (status, id)
    WHERE status <> 'CREATE' AND status <> 'PAY_WAIT' AND status <> 'PAY_SUCCESS';
CREATE INDEX pay_order_by_product ON pay_order (product_id, id);
CREATE INDEX pay_order_by_time ON pay_order (order_time, id);
