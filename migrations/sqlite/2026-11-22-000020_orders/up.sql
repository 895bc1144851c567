-- Order numbers come from this sequence, so order ids are unique by construction.
CREATE TABLE order_number (
    number      INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);

CREATE TABLE pay_order (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id        TEXT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL REFERENCES app_user (user_id),
    openid          TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    product_name    TEXT NOT NULL,
    total_cents     BIGINT NOT NULL CHECK (total_cents > 0),
    status          TEXT NOT NULL CHECK (status IN ('CREATE', 'PAY_WAIT', 'PAY_SUCCESS', 'DEAL_DONE', 'CLOSE', 'REFUND_WAIT', 'REFUNDED')),
    pay_form        TEXT,
    trade_no        TEXT,
    order_time      TIMESTAMP NOT NULL,
    expire_at       TIMESTAMP NOT NULL,
    pay_time        TIMESTAMP,
    next_query_at   TIMESTAMP NOT NULL,
    query_attempts  INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     TIMESTAMP,
    updated_at      TIMESTAMP NOT NULL
);
-- At most one open order per shopper and product.
CREATE UNIQUE INDEX pay_order_one_open ON pay_order (user_id, product_id) WHERE status IN ('CREATE', 'PAY_WAIT');
CREATE INDEX pay_order_by_user ON pay_order (user_id, id);
CREATE INDEX pay_order_by_status ON pay_order (status, next_query_at);

-- The timeline: every transition of every order, and why.
CREATE TABLE order_event (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id     TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    cause        TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMP NOT NULL
);
CREATE INDEX order_event_by_order ON order_event (order_id, id);

-- Every Alipay notification, stored raw before it is acted on.
CREATE TABLE alipay_notify (
    id            INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    notify_id     TEXT,
    out_trade_no  TEXT,
    trade_status  TEXT,
    raw           TEXT NOT NULL,
    verified      BOOLEAN NOT NULL DEFAULT FALSE,
    outcome       TEXT NOT NULL,
    received_at   TIMESTAMP NOT NULL
);
CREATE INDEX alipay_notify_by_order ON alipay_notify (out_trade_no);

CREATE TABLE shipment (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id    TEXT NOT NULL UNIQUE,
    detail      TEXT NOT NULL,
    shipped_at  TIMESTAMP NOT NULL
);
