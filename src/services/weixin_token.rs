//! The one WeChat access token, shared by every instance through the database. Each fetch
//! invalidates the previous token, so exactly one instance refreshes at a time (a lease); the
//! others wait for its result. A call refused with a token error refreshes and retries once.
//! Connections are taken from the pool only around database work, never across a call to
//! WeChat, so a slow WeChat cannot tie up the pool.

use std::time::Duration as StdDuration;

use chrono::Duration;

use crate::db::DbPool;
use crate::error::{AppError, AppResult};
use crate::gateways::weixin::{WeixinClient, WeixinError};
use crate::models::login::StoredToken;
use crate::models::now;

/// Refresh this long before WeChat's expiry.
const REFRESH_MARGIN_SECS: i64 = 300;
const LEASE_SECS: i64 = 15;

/// Runs `call` with a valid token; on a token error, refreshes (unless someone already did) and
/// tries once more.
pub fn with_token<T>(
    pool: &DbPool,
    client: &WeixinClient,
    owner: &str,
    call: impl Fn(&str) -> Result<T, WeixinError>,
) -> AppResult<T> {
    let token = current(pool, client, owner, None)?;
    match call(&token) {
        Err(WeixinError::TokenInvalid(code)) => {
            log::info!("weixin: access token refused (errcode {code}); refreshing");
            let fresh = current(pool, client, owner, Some(&token))?;
            call(&fresh).map_err(AppError::from)
        }
        other => other.map_err(AppError::from),
    }
}

/// Sends a template message with `client_msg_id` = `message_id` (an outbox entry's dedupe key),
/// so WeChat drops a resend of the same message.
pub fn send_template(
    pool: &DbPool,
    client: &WeixinClient,
    owner: &str,
    message_id: &str,
    mut body: serde_json::Value,
) -> AppResult<()> {
    body["client_msg_id"] = serde_json::Value::String(message_id.to_owned());
    with_token(pool, client, owner, |token| client.send_template(token, &body))
}

/// A token that is valid now. `stale` is a token WeChat just refused: it is replaced even if its
/// stored expiry says otherwise.
fn current(pool: &DbPool, client: &WeixinClient, owner: &str, stale: Option<&str>) -> AppResult<String> {
    for _ in 0..50 {
        let mut conn = pool.get()?;
        let stored = StoredToken::load(&mut conn)?;
        let usable = !stored.token.is_empty()
            && stored.expires_at > now() + Duration::seconds(REFRESH_MARGIN_SECS)
            && Some(stored.token.as_str()) != stale;
        if usable {
            return Ok(stored.token);
        }
        if StoredToken::lease(&mut conn, owner, now() + Duration::seconds(LEASE_SECS))? {
            drop(conn);
            return refresh(pool, client, owner);
        }
        drop(conn);
        // Another instance is refreshing: its token will be in the row shortly.
        std::thread::sleep(StdDuration::from_millis(100));
    }
    Err(AppError::Unavailable("the WeChat token refresh is taking too long".into()))
}

fn refresh(pool: &DbPool, client: &WeixinClient, owner: &str) -> AppResult<String> {
    let fetched = client.fetch_token();
    let mut conn = pool.get()?;
    match fetched {
        Ok((token, expires_in)) => {
            StoredToken::store_and_release(
                &mut conn,
                owner,
                Some((&token, now() + Duration::seconds(expires_in))),
            )?;
            log::info!("weixin: access token refreshed by {owner}, valid {expires_in} s");
            Ok(token)
        }
        Err(e) => {
            StoredToken::store_and_release(&mut conn, owner, None)?;
            Err(AppError::from(e))
        }
    }
}
