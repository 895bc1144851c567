-- Coupon templates: what a coupon takes off (ZJ a fixed amount, MJ a fixed amount from a
-- threshold, ZK a rate in basis points, 8000 = 8折, with an optional cap), where it applies (all
-- products, or those in coupon_template_product), how long a claimed coupon is valid (a fixed
-- window, or valid_days after claiming), and how many there are (issued only while
-- issued_count < total_quota, at most per_user_limit to one shopper). A template never changes
-- once issued; the admin creates a new one instead.
CREATE TABLE coupon_template (
    template_id      BIGSERIAL PRIMARY KEY,
    name             TEXT NOT NULL,
    kind             TEXT NOT NULL CHECK (kind IN ('ZJ', 'MJ', 'ZK')),
    threshold_cents  BIGINT NOT NULL DEFAULT 0 CHECK (threshold_cents >= 0),
    off_cents        BIGINT NOT NULL DEFAULT 0 CHECK (off_cents >= 0),
    rate_bp          INTEGER NOT NULL DEFAULT 0,
    max_off_cents    BIGINT CHECK (max_off_cents IS NULL OR max_off_cents > 0),
    scope            TEXT NOT NULL CHECK (scope IN ('ALL', 'PRODUCTS')),
    valid_from       TIMESTAMP,
    valid_until      TIMESTAMP,
    valid_days       INTEGER CHECK (valid_days IS NULL OR valid_days >= 1),
    total_quota      BIGINT NOT NULL CHECK (total_quota >= 1),
    issued_count     BIGINT NOT NULL DEFAULT 0,
    per_user_limit   INTEGER NOT NULL CHECK (per_user_limit >= 1),
    status           TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'STOPPED')),
    created_at       TIMESTAMP NOT NULL,
    CHECK ((kind = 'ZJ' AND off_cents > 0 AND threshold_cents = 0)
        OR (kind = 'MJ' AND off_cents > 0 AND threshold_cents > 0)
        OR (kind = 'ZK' AND rate_bp BETWEEN 1 AND 9999)),
    CHECK ((valid_days IS NOT NULL AND valid_from IS NULL AND valid_until IS NULL)
        OR (valid_days IS NULL AND valid_from IS NOT NULL AND valid_until IS NOT NULL AND valid_from < valid_until)),
    CHECK (issued_count >= 0 AND issued_count <= total_quota)
);

-- The products of a template whose scope is PRODUCTS.
CREATE TABLE coupon_template_product (
    template_id  BIGINT NOT NULL REFERENCES coupon_template (template_id),
    product_id   TEXT NOT NULL,
    PRIMARY KEY (template_id, product_id)
);

-- A shopper's coupon. AVAILABLE -> LOCKED (an order placed with it; the lock lives as long as
-- the order waits for its payment) -> USED (the payment recorded), or back to AVAILABLE, or
-- EXPIRED past valid_until, when the order closes. Every step is one conditional UPDATE.
CREATE TABLE user_coupon (
    coupon_id        BIGSERIAL PRIMARY KEY,
    code             TEXT NOT NULL UNIQUE,
    template_id      BIGINT NOT NULL REFERENCES coupon_template (template_id),
    user_id          BIGINT NOT NULL REFERENCES app_user (user_id),
    status           TEXT NOT NULL CHECK (status IN ('AVAILABLE', 'LOCKED', 'USED', 'EXPIRED')),
    valid_from       TIMESTAMP NOT NULL,
    valid_until      TIMESTAMP NOT NULL,
    locked_order_id  TEXT,
    locked_at        TIMESTAMP,
    used_order_id    TEXT,
    used_at          TIMESTAMP,
    issued_at        TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL,
    CHECK (status <> 'LOCKED' OR locked_order_id IS NOT NULL),
    CHECK (status <> 'USED' OR used_order_id IS NOT NULL)
);
-- One coupon per order: at most one locked for it, at most one used by it.
CREATE UNIQUE INDEX user_coupon_locked_order ON user_coupon (locked_order_id) WHERE status = 'LOCKED';
CREATE UNIQUE INDEX user_coupon_used_order ON user_coupon (used_order_id) WHERE used_order_id IS NOT NULL;
CREATE INDEX user_coupon_by_user ON user_coupon (user_id, coupon_id);
CREATE INDEX user_coupon_by_template ON user_coupon (template_id, user_id);
