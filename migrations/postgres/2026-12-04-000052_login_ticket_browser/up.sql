-- A browser that asks for a login ticket again gets the one it holds: found by its nonce's hash.
CREATE INDEX login_ticket_browser_hash ON login_ticket (browser_hash);
