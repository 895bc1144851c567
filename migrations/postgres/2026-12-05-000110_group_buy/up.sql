-- Group buying (拼团, MARKETING.md §4). An activity prices one product for shoppers who buy as a
-- team; a team opens with its leader's order and completes when `target_count` members have
-- paid, before `expires_at`; every seat is a member row keyed by its order.

-- Crowds: who may see or join an activity, or get its discount. No member row: not in the crowd.
CREATE TABLE crowd_tag (
    tag_id      BIGSERIAL PRIMARY KEY,
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
    activity_id            BIGSERIAL PRIMARY KEY,
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
    id           BIGSERIAL PRIMARY KEY,
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

-- pay_order: the MARKET status (the team formed, delivery to come) and the team of a group order.
ALTER TABLE pay_order DROP CONSTRAINT pay_order_status_check;
ALTER TABLE pay_order ADD CONSTRAINT pay_order_status_check CHECK (
    status IN ('CREATE', 'PAY_WAIT', 'PAY_SUCCESS', 'DEAL_DONE', 'CLOSE', 'REFUND_WAIT', 'REFUNDED', 'MARKET'));
ALTER TABLE pay_order ADD COLUMN team_id TEXT;

INSERT INTO order_status_total (status, orders, cents) VALUES ('MARKET', 0, 0);
