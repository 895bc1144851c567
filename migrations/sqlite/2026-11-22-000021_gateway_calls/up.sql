-- Every call made to Alipay about an order, and what came of it (shown to the admin).
CREATE TABLE gateway_call (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id    TEXT NOT NULL,
    call        TEXT NOT NULL,
    caller      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE INDEX gateway_call_by_order ON gateway_call (order_id, id);
