-- A QR login attempt: the ticket shown to the browser, the scene WeChat echoes back when the
-- phone scans, the hash of the browser nonce it is bound to, and the openid once scanned.
CREATE TABLE login_ticket (
    id            BIGSERIAL PRIMARY KEY,
    ticket        TEXT NOT NULL UNIQUE,
    scene         TEXT NOT NULL UNIQUE,
    browser_hash  TEXT NOT NULL,
    openid        TEXT,
    scanned_at    TIMESTAMP,
    consumed      BOOLEAN NOT NULL DEFAULT FALSE,
    expires_at    TIMESTAMP NOT NULL,
    created_at    TIMESTAMP NOT NULL
);
CREATE INDEX login_ticket_expires_at ON login_ticket (expires_at);

-- The one WeChat access token every instance shares, and the lease of its one refresher.
CREATE TABLE wx_access_token (
    id           BIGINT PRIMARY KEY NOT NULL,
    token        TEXT NOT NULL DEFAULT '',
    expires_at   TIMESTAMP NOT NULL,
    lease_owner  TEXT,
    lease_until  TIMESTAMP
);
INSERT INTO wx_access_token (id, token, expires_at) VALUES (1, '', '1970-01-01 00:00:00');

-- WeChat retries pushes: each message (MsgId) or event (FromUserName + CreateTime) acts once.
CREATE TABLE wx_event_seen (
    id          BIGSERIAL PRIMARY KEY,
    dedupe_key  TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMP NOT NULL
);
