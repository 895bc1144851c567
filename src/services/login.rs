//! WeChat login, two ways that end alike ([`log_in`]). Outside WeChat, scan-to-login: the
//! browser asks for a ticket (bound to a nonce cookie it holds); the shopper scans the QR with
//! WeChat; WeChat pushes the scan to our portal with the scene; the browser's poll then turns the
//! scanned ticket into a session, once. Inside WeChat, 网页授权 (`snsapi_base`): the browser goes
//! to WeChat with a `state` bound to the same nonce ([`oauth_start`]) and comes back with a code,
//! which WeChat exchanges for the openid ([`oauth_login`]).

use chrono::Duration;

use crate::china_time;
use crate::config::Settings;
use crate::db::{DbConn, DbPool, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::weixin::WeixinClient;
use crate::log_escape::Untrusted;
use crate::models::login::{LoginTicket, OauthState};
use crate::models::now;
use crate::models::outbox::{OutboxEntry, WxTemplate};
use crate::models::user::AppUser;
use crate::services::{session, weixin_token};

/// How long a QR code is good for.
pub const TICKET_SECS: i64 = 600;

/// A held ticket with less time left than this is not shown again: the shopper gets a new one
/// with time to scan it.
const HELD_MIN_SECS: i64 = 60;

/// How long a login inside WeChat may take from `/login` to the callback.
pub const OAUTH_STATE_SECS: i64 = 600;

/// The nonce cookie that binds a ticket, or a login inside WeChat, to the browser that asked.
pub const BROWSER_COOKIE: &str = "paymall_login";

/// Where WeChat sends the browser back with the code: `<server.public_url>` + this.
pub const OAUTH_CALLBACK_PATH: &str = "/login/oauth/callback";

pub struct NewTicket {
    pub ticket: String,
    pub expires_in: i64,
}

/// The ticket this browser already holds, when it is unconsumed and has at least
/// [`HELD_MIN_SECS`] left: shown again instead of a new one (no row, no call to WeChat).
pub fn held_ticket(conn: &mut DbConn, browser_nonce: &str) -> AppResult<Option<NewTicket>> {
    let at = now();
    let held = LoginTicket::held_by(
        conn,
        &session::token_hash(browser_nonce),
        at + Duration::seconds(HELD_MIN_SECS),
    )?;
    Ok(held.map(|t| NewTicket { expires_in: (t.expires_at - at).num_seconds(), ticket: t.ticket }))
}

/// Asks WeChat for a QR ticket with a fresh random scene and records it for this browser.
/// Takes the pool rather than a connection: no connection is held while WeChat answers.
pub fn new_ticket(
    pool: &DbPool,
    client: &WeixinClient,
    owner: &str,
    browser_nonce: &str,
) -> AppResult<NewTicket> {
    let scene = crate::random::token_hex(16);
    let qr = weixin_token::with_token(pool, client, owner, |token| {
        client.create_qr_ticket(token, &scene, TICKET_SECS)
    })?;
    let expires_in = qr.expire_seconds.min(TICKET_SECS);
    LoginTicket::insert(
        &mut *pool.get()?,
        &qr.ticket,
        &scene,
        &session::token_hash(browser_nonce),
        now() + Duration::seconds(expires_in),
    )?;
    Ok(NewTicket { ticket: qr.ticket, expires_in })
}

/// The phone scanned the QR of `scene`: remember who, if the ticket is still waiting.
pub fn record_scan(conn: &mut DbConn, scene: &str, openid: &str) -> AppResult<bool> {
    let recorded = LoginTicket::record_scan(conn, scene, openid)?;
    if recorded {
        log::info!("login: openid {} scanned scene {}", Untrusted(openid), Untrusted(scene));
    } else {
        log::info!(
            "login: scan by openid {} for unknown, expired or used scene {}",
            Untrusted(openid),
            Untrusted(scene)
        );
    }
    Ok(recorded)
}

/// The browser polls: once the ticket is scanned, this browser's first poll logs the shopper
/// in (user row, session, and the "login succeeded" message enqueued in the same transaction).
/// Returns the session token, or `None` while there is nothing to log in.
pub fn check(
    conn: &mut DbConn,
    settings: &Settings,
    ticket: &str,
    browser_nonce: &str,
) -> AppResult<Option<(AppUser, String)>> {
    let Some(found) = LoginTicket::find(conn, ticket)? else { return Ok(None) };
    let same_browser =
        openssl::memcmp::eq(found.browser_hash.as_bytes(), session::token_hash(browser_nonce).as_bytes());
    let Some(openid) =
        found.openid.clone().filter(|_| same_browser && !found.consumed && found.expires_at > now())
    else {
        return Ok(None);
    };
    write_transaction(conn, |c| {
        if !LoginTicket::consume(c, found.id)? {
            return Ok(None);
        }
        log_in(c, settings, &openid, &format!("login-{}", found.ticket)).map(Some)
    })
}

/// Logs `openid` in, inside the caller's transaction: the user row, a session, and the "login
/// succeeded" template message enqueued under `message_key` (its dedupe key and `client_msg_id`).
/// Returns the user and the session token.
fn log_in(
    conn: &mut DbConn,
    settings: &Settings,
    openid: &str,
    message_key: &str,
) -> AppResult<(AppUser, String)> {
    let (user, token) = session::start(conn, openid)?;
    let serde_json::Value::Object(body) = serde_json::json!({
        "touser": openid,
        "template_id": settings.weixin.login_template_id,
        "url": settings.server.public_url,
        "data": { "time": { "value": china_time::format(now()) } },
    }) else {
        unreachable!("a JSON object")
    };
    OutboxEntry::enqueue(conn, &WxTemplate { client_msg_id: message_key.to_owned(), body })?;
    log::info!("login: openid {} logged in (user {})", Untrusted(openid), user.user_id);
    Ok((user, token))
}

/// Starts a login inside WeChat: a single-use `state` bound to this browser's nonce, valid for
/// [`OAUTH_STATE_SECS`], remembering `next` (already made safe). Returns the 网页授权 link.
pub fn oauth_start(
    conn: &mut DbConn,
    settings: &Settings,
    client: &WeixinClient,
    browser_nonce: &str,
    next: &str,
) -> AppResult<String> {
    let state = crate::random::token_hex(16);
    let expires_at = now() + Duration::seconds(OAUTH_STATE_SECS);
    OauthState::insert(conn, &state, &session::token_hash(browser_nonce), next, expires_at)?;
    let redirect_uri = format!("{}{OAUTH_CALLBACK_PATH}", settings.server.public_url);
    Ok(client.oauth_authorize_url(&redirect_uri, &state))
}

/// A shopper logged in inside WeChat, and where they were going.
pub struct OauthLogin {
    pub token: String,
    pub next: String,
}

/// WeChat sent the browser back with `code` and `state`: the state is used up first (only this
/// browser's, unexpired, once: anything else is refused and nothing is called), then WeChat
/// exchanges the code for the openid, then the shopper is logged in as a scan does. Takes the
/// pool: no connection is held while WeChat answers.
pub fn oauth_login(
    pool: &DbPool,
    settings: &Settings,
    client: &WeixinClient,
    state: &str,
    code: &str,
    browser_nonce: &str,
) -> AppResult<OauthLogin> {
    let next = OauthState::consume(&mut *pool.get()?, state, &session::token_hash(browser_nonce), now())?
        .ok_or_else(|| {
            log::info!("login: refused a 网页授权 state: unknown, used, expired or another browser's");
            AppError::Forbidden("这个登录链接已失效、已使用或不属于此浏览器，请重新登录。".into())
        })?;
    let openid = client.openid_for_code(code)?;
    let (_, token) =
        write_transaction(&mut *pool.get()?, |c| log_in(c, settings, &openid, &format!("login-{state}")))?;
    Ok(OauthLogin { token, next })
}

/// Consumer of `wx_template`: sends the message prepared when it was enqueued.
pub fn send_template(
    pool: &DbPool,
    client: &WeixinClient,
    owner: &str,
    message: &WxTemplate,
) -> AppResult<()> {
    let body = serde_json::Value::Object(message.body.clone());
    weixin_token::send_template(pool, client, owner, &message.client_msg_id, body)
}

pub fn purge_expired(conn: &mut DbConn) -> AppResult<usize> {
    let before = now() - Duration::hours(1);
    Ok(LoginTicket::purge_expired(conn, before)? + OauthState::purge_expired(conn, before)?)
}
