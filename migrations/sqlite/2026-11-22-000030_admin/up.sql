-- Admin sessions, separate from shoppers' sessions.
CREATE TABLE admin_session (
    id          INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    username    TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);

-- Failed admin logins per username and per client address, to slow guessing down.
CREATE TABLE admin_login_failure (
    id             INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    throttle_key   TEXT NOT NULL UNIQUE,
    failures       INTEGER NOT NULL,
    locked_until   TIMESTAMP,
    last_failed_at TIMESTAMP NOT NULL
);
