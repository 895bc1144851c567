-- The nonces of WeChat's signed portal requests (pushes and URL checks), each remembered while
-- its timestamp is inside the accepted window: a second request with the same nonce and
-- timestamp (a replay, to this or any other instance) fails to insert and is refused.
CREATE TABLE weixin_push_nonce (
    nonce           TEXT NOT NULL,
    timestamp_secs  BIGINT NOT NULL,
    expires_at      TIMESTAMP NOT NULL,
    PRIMARY KEY (nonce, timestamp_secs)
);
CREATE INDEX weixin_push_nonce_expires_at ON weixin_push_nonce (expires_at);
