-- Back to the checks as lists.
CREATE TABLE pay_order_rebuilt (
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
INSERT INTO pay_order_rebuilt SELECT * FROM pay_order;
-- AUTOINCREMENT: the next id is where the old table's was, also past rows deleted at the top.
DELETE FROM sqlite_sequence WHERE name = 'pay_order_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'pay_order_rebuilt', seq FROM sqlite_sequence WHERE name = 'pay_order';
DROP TABLE pay_order;
ALTER TABLE pay_order_rebuilt RENAME TO pay_order;
CREATE UNIQUE INDEX pay_order_one_open ON pay_order (user_id, product_id) WHERE status IN ('CREATE', 'PAY_WAIT');
CREATE INDEX pay_order_by_user ON pay_order (user_id, id);
CREATE INDEX pay_order_by_status ON pay_order (status, next_query_at);


CREATE TABLE outbox_rebuilt (
    outbox_id        INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    kind             TEXT NOT NULL,
    dedupe_key       TEXT NOT NULL,
    order_id         TEXT,
    payload          TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'DONE', 'DEAD')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TIMESTAMP NOT NULL,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_until      TIMESTAMP,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    UNIQUE (kind, dedupe_key)
);
INSERT INTO outbox_rebuilt SELECT * FROM outbox;
-- AUTOINCREMENT: the next id is where the old table's was, also past rows deleted at the top.
DELETE FROM sqlite_sequence WHERE name = 'outbox_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'outbox_rebuilt', seq FROM sqlite_sequence WHERE name = 'outbox';
DROP TABLE outbox;
ALTER TABLE outbox_rebuilt RENAME TO outbox;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_order ON outbox (order_id);
