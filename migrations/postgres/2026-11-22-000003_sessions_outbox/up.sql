CREATE TABLE user_session (
    session_id  BIGSERIAL PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    user_id     BIGINT NOT NULL REFERENCES app_user (user_id),
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);
CREATE INDEX user_session_expires_at ON user_session (expires_at);

-- Work to do after a commit (delivery, WeChat messages, pushes, refunds), written in the same
-- transaction as the state change and drained by the background thread.
CREATE TABLE outbox (
    outbox_id        BIGSERIAL PRIMARY KEY,
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
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
CREATE INDEX outbox_order ON outbox (order_id);
