-- A login inside WeChat (网页授权) under way: the `state` sent to WeChat, the hash of the browser
-- nonce it is bound to, and where to go once logged in. Deleted when used (once) or expired.
CREATE TABLE oauth_state (
    state         TEXT PRIMARY KEY NOT NULL,
    browser_hash  TEXT NOT NULL,
    next          TEXT NOT NULL,
    expires_at    TIMESTAMP NOT NULL
);
CREATE INDEX oauth_state_expires_at ON oauth_state (expires_at);
