//! Shopper sessions: a random 256-bit token held by the browser (cookie) or an API client
//! (`Authorization: Bearer`); only its SHA-256 is stored.

use chrono::Duration;
use diesel::Connection;

use crate::db::DbConn;
use crate::error::AppResult;
use crate::models::now;
use crate::models::session;
use crate::models::user::AppUser;

pub const SESSION_COOKIE: &str = "paymall_session";
pub const SESSION_DAYS: i64 = 7;

pub fn token_hash(token: &str) -> String {
    let digest = openssl::sha::sha256(token.as_bytes());
    crate::random::hex(&digest)
}

/// Logs the openid in: records the user (created on first login) and opens a session.
/// Returns the user and the session token, which is shown to the client once.
pub fn start(conn: &mut DbConn, openid: &str) -> AppResult<(AppUser, String)> {
    let token = crate::random::token_hex(32);
    let user = conn.transaction(|c| {
        let user = AppUser::record_login(c, openid)?;
        session::insert(c, &token_hash(&token), user.user_id, now() + Duration::days(SESSION_DAYS))?;
        Ok::<_, diesel::result::Error>(user)
    })?;
    Ok((user, token))
}

pub fn user_for_token(conn: &mut DbConn, token: &str) -> AppResult<Option<AppUser>> {
    Ok(AppUser::find_by_session(conn, &token_hash(token))?)
}

pub fn end(conn: &mut DbConn, token: &str) -> AppResult<()> {
    session::delete(conn, &token_hash(token))?;
    Ok(())
}
