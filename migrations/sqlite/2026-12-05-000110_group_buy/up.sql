-- Group buying (拼团, MARKETING.md §4). An activity prices one product for shoppers who buy as a
-- team; a team opens with its leader's order and completes when `target_count` members have
-- paid, before `expires_at`; every seat is a member row keyed by its order.

-- Crowds: who may see or join an activity, or get its discount. No member row: not in the crowd.
CREATE TABLE crowd_tag (
    tag_id      INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE TABLE crowd_tag_member (
    tag_id   BIGINT NOT NULL REFERENCES crowd_tag (tag_id),
    user_id  BIGINT NOT NULL,
    PRIMARY KEY (tag_id, user_id)
);

-- The plan's own fields: ZJ off_cents (直减), MJ threshold_cents and off_cents (满减), ZK rate_bp
-- (折扣, 8000 = 8折), N n_price_cents (N元购). One EFFECTIVE activity per product.
CREATE TABLE group_buy_activity (
    activity_id            INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name                   TEXT NOT NULL,
    product_id             TEXT NOT NULL REFERENCES product (product_id),
    plan                   TEXT NOT NULL CHECK (plan = 'ZJ' OR plan = 'MJ' OR plan = 'ZK' OR plan = 'N'),
    off_cents              BIGINT NOT NULL DEFAULT 0 CHECK (off_cents >= 0),
    threshold_cents        BIGINT NOT NULL DEFAULT 0 CHECK (threshold_cents >= 0),
    rate_bp                INTEGER NOT NULL DEFAULT 0,
    n_price_cents          BIGINT NOT NULL DEFAULT 0 CHECK (n_price_cents >= 0),
    target_count           INTEGER NOT NULL CHECK (target_count >= 1),
    valid_minutes          INTEGER NOT NULL CHECK (valid_minutes >= 1),
    take_limit             INTEGER NOT NULL CHECK (take_limit >= 1),
    status                 TEXT NOT NULL CHECK (status = 'CREATE' OR status = 'EFFECTIVE' OR status = 'OVERDUE' OR status = 'ABANDONED'),
    start_at               TIMESTAMP NOT NULL,
    end_at                 TIMESTAMP NOT NULL,
    tag_id                 BIGINT REFERENCES crowd_tag (tag_id),
    tag_limits_visibility  BOOLEAN NOT NULL DEFAULT FALSE,
    tag_limits_joining     BOOLEAN NOT NULL DEFAULT FALSE,
    discount_tag_only      BOOLEAN NOT NULL DEFAULT FALSE,
    created_at             TIMESTAMP NOT NULL,
    CHECK (start_at < end_at),
    CHECK ((plan = 'ZJ' AND off_cents > 0)
        OR (plan = 'MJ' AND off_cents > 0 AND threshold_cents > 0)
        OR (plan = 'ZK' AND rate_bp BETWEEN 1 AND 9999)
        OR (plan = 'N' AND n_price_cents >= 0)),
    CHECK (tag_id IS NOT NULL OR (NOT tag_limits_visibility AND NOT tag_limits_joining AND NOT discount_tag_only))
);
CREATE UNIQUE INDEX group_buy_activity_effective ON group_buy_activity (product_id) WHERE status = 'EFFECTIVE';

-- A team: its id is its leader's order number. lock_count seats are held (LOCKED or PAID
-- members), paid_count of them paid.
CREATE TABLE group_buy_team (
    team_id         TEXT PRIMARY KEY NOT NULL,
    activity_id     BIGINT NOT NULL REFERENCES group_buy_activity (activity_id),
    product_id      TEXT NOT NULL,
    leader_user_id  BIGINT NOT NULL,
    target_count    INTEGER NOT NULL,
    lock_count      INTEGER NOT NULL,
    paid_count      INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status = 'PROGRESS' OR status = 'COMPLETE' OR status = 'FAIL' OR status = 'COMPLETE_FAIL'),
    opened_at       TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    completed_at    TIMESTAMP,
    failed_at       TIMESTAMP,
    lease_owner     TEXT,
    lease_until     TIMESTAMP,
    updated_at      TIMESTAMP NOT NULL,
    CHECK (paid_count >= 0 AND paid_count <= lock_count AND lock_count <= target_count)
);
CREATE INDEX group_buy_team_due ON group_buy_team (status, expires_at);
CREATE INDEX group_buy_team_by_activity ON group_buy_team (activity_id, status, expires_at);

-- A seat: one per order. LOCKED (unpaid) -> PAID, or RELEASED (the order closed unpaid);
-- PAID -> REFUNDING -> REFUNDED. One held seat per shopper and team.
CREATE TABLE group_buy_member (
    id           INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    team_id      TEXT NOT NULL REFERENCES group_buy_team (team_id),
    activity_id  BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    order_id     TEXT NOT NULL UNIQUE,
    status       TEXT NOT NULL CHECK (status = 'LOCKED' OR status = 'PAID' OR status = 'RELEASED' OR status = 'REFUNDING' OR status = 'REFUNDED'),
    refund_type  TEXT CHECK (refund_type IS NULL OR refund_type = 'unpaid_unlock' OR refund_type = 'paid_unformed' OR refund_type = 'paid_formed'),
    locked_at    TIMESTAMP NOT NULL,
    paid_at      TIMESTAMP,
    updated_at   TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX group_buy_member_one_seat ON group_buy_member (team_id, user_id) WHERE status = 'LOCKED' OR status = 'PAID';
CREATE INDEX group_buy_member_by_team ON group_buy_member (team_id, status);

-- Seats a shopper holds (LOCKED or PAID) in an activity's teams, at most its take_limit.
CREATE TABLE group_buy_take (
    activity_id  BIGINT NOT NULL,
    user_id      BIGINT NOT NULL,
    held         INTEGER NOT NULL CHECK (held >= 0),
    PRIMARY KEY (activity_id, user_id)
);

-- pay_order: the MARKET status (the team formed, delivery to come) and the team of a group order. SQLite cannot alter a CHECK, so the table is rebuilt, rows, ids and
-- indexes as they were.
CREATE TABLE pay_order_rebuilt (
    id              INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    order_id        TEXT NOT NULL UNIQUE,
    user_id         BIGINT NOT NULL REFERENCES app_user (user_id),
    openid          TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    product_name    TEXT NOT NULL,
    total_cents     BIGINT NOT NULL CHECK (total_cents > 0),
    status          TEXT NOT NULL CHECK (
        status = 'CREATE' OR status = 'PAY_WAIT' OR status = 'PAY_SUCCESS' OR status = 'DEAL_DONE' OR
        status = 'CLOSE' OR status = 'REFUND_WAIT' OR status = 'REFUNDED' OR status = 'MARKET'
    ),
    trade_no        TEXT,
    order_time      TIMESTAMP NOT NULL,
    expire_at       TIMESTAMP NOT NULL,
    pay_time        TIMESTAMP,
    next_query_at   TIMESTAMP NOT NULL,
    query_attempts  INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     TIMESTAMP,
    updated_at      TIMESTAMP NOT NULL,
    discount_cents  BIGINT NOT NULL DEFAULT 0 CHECK (discount_cents >= 0),
    original_cents  BIGINT CHECK (original_cents IS NULL OR original_cents = total_cents + discount_cents),
    team_id         TEXT
);
INSERT INTO pay_order_rebuilt (id, order_id, user_id, openid, product_id, product_name, total_cents, status,
                               trade_no, order_time, expire_at, pay_time, next_query_at,
                               query_attempts, lease_owner, lease_until, updated_at, discount_cents,
                               original_cents)
SELECT id, order_id, user_id, openid, product_id, product_name, total_cents, status, trade_no,
       order_time, expire_at, pay_time, next_query_at, query_attempts, lease_owner, lease_until,
       updated_at, discount_cents, original_cents
FROM pay_order;
-- AUTOINCREMENT: the next id is where the old table's was, also past rows deleted at the top.
DELETE FROM sqlite_sequence WHERE name = 'pay_order_rebuilt';
INSERT INTO sqlite_sequence (name, seq) SELECT 'pay_order_rebuilt', seq FROM sqlite_sequence WHERE name = 'pay_order';
DROP TABLE pay_order;
ALTER TABLE pay_order_rebuilt RENAME TO pay_order;
CREATE UNIQUE INDEX pay_order_one_open ON pay_order (user_id, product_id) WHERE status IN ('CREATE', 'PAY_WAIT');
CREATE INDEX pay_order_by_user ON pay_order (user_id, id);
CREATE INDEX pay_order_by_status ON pay_order (status, next_query_at);
CREATE UNIQUE INDEX pay_order_by_trade_no ON pay_order (trade_no) WHERE trade_no IS NOT NULL;
CREATE INDEX pay_order_by_settled_status ON pay_order (status, id)
    WHERE status <> 'CREATE' AND status <> 'PAY_WAIT' AND status <> 'PAY_SUCCESS';
CREATE INDEX pay_order_by_product ON pay_order (product_id, id);
CREATE INDEX pay_order_by_time ON pay_order (order_time, id);

INSERT INTO order_status_total (status, orders, cents) VALUES ('MARKET', 0, 0);
