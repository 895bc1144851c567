//! WeChat pushes to our portal: which requests are acted on (a recent timestamp, a nonce never
//! used before), what each message does, and the text of the reply. The protocol (signatures,
//! XML, safe mode) is in [`crate::gateways::weixin::portal`]. Nothing here calls out over HTTP,
//! so answers stay far inside WeChat's 5-second limit.

use chrono::Duration;

use crate::db::{DbConn, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::weixin::portal::{self, WxMessage};
use crate::log_escape::Untrusted;
use crate::models::login::first_sighting;
use crate::models::{now, weixin_nonce};
use crate::services::login;

/// How far a request's timestamp may be from now, either way. WeChat signs each request as it
/// sends it: one signed longer ago is a replay.
pub const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// Why a portal request is refused before anything acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `signature` (or, in safe mode, `msg_signature`) is missing or wrong.
    BadSignature,
    /// The timestamp is not a number within [`TIMESTAMP_WINDOW_SECS`] of now.
    StaleTimestamp,
    /// The nonce was used with this timestamp before, on any instance.
    Replayed,
    /// A plain message while safe mode is configured and plain messages are not accepted.
    PlainMessage,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::BadSignature => "bad or missing signature",
            Refusal::StaleTimestamp => "timestamp outside the window",
            Refusal::Replayed => "nonce used before",
            Refusal::PlainMessage => "plain message while safe mode is configured",
        })
    }
}

/// A request signed by WeChat with a timestamp inside the window; whether its nonce is fresh
/// is for [`use_nonce`] to say.
#[derive(Debug)]
pub struct SignedRequest {
    nonce: String,
    timestamp_secs: i64,
    /// When the timestamp leaves the window: the nonce is remembered until then.
    remember_until: chrono::NaiveDateTime,
}

/// Checks WeChat's `signature` of a portal request over (token, `timestamp`, `nonce`), then that
/// `timestamp` is within [`TIMESTAMP_WINDOW_SECS`] of `now_secs`.
pub fn check_signed(
    token: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    nonce: Option<&str>,
    now_secs: i64,
) -> Result<SignedRequest, Refusal> {
    let (Some(given), Some(timestamp), Some(nonce)) = (signature, timestamp, nonce) else {
        return Err(Refusal::BadSignature);
    };
    if !portal::signature_matches(&portal::signature(&[token, timestamp, nonce]), given) {
        return Err(Refusal::BadSignature);
    }
    let timestamp_secs = timestamp
        .parse::<i64>()
        .ok()
        .filter(|secs| secs.abs_diff(now_secs) <= TIMESTAMP_WINDOW_SECS.unsigned_abs())
        .ok_or(Refusal::StaleTimestamp)?;
    let remember_until = chrono::DateTime::from_timestamp(timestamp_secs + TIMESTAMP_WINDOW_SECS, 0)
        .ok_or(Refusal::StaleTimestamp)?
        .naive_utc();
    Ok(SignedRequest { nonce: nonce.to_owned(), timestamp_secs, remember_until })
}

/// Marks the request's nonce used, for every instance, until its timestamp leaves the window;
/// false when it was used already (a replay).
pub fn use_nonce(conn: &mut DbConn, request: &SignedRequest) -> AppResult<bool> {
    Ok(write_transaction(conn, |c| {
        weixin_nonce::remember(c, &request.nonce, request.timestamp_secs, request.remember_until)
    })?)
}

/// Forgets the nonces whose timestamps left the window a window ago or more: the margin keeps
/// instances whose clocks differ by less than that in agreement.
pub fn purge_nonces(conn: &mut DbConn) -> AppResult<usize> {
    Ok(weixin_nonce::purge_expired(conn, now() - Duration::seconds(TIMESTAMP_WINDOW_SECS))?)
}

/// What became of a signed push.
#[derive(Debug)]
pub enum Outcome {
    /// Its nonce was used before: nothing was done.
    Replayed,
    /// Acted on; the text to reply, if any.
    Handled(Option<String>),
}

/// Acts on a signed push once per nonce. The nonce is remembered in the transaction of what the
/// push does, so a push that fails here is not remembered and can be sent again.
pub fn receive(conn: &mut DbConn, request: &SignedRequest, message: &WxMessage) -> AppResult<Outcome> {
    write_transaction(conn, |c| {
        if !use_nonce(c, request)? {
            return Ok(Outcome::Replayed);
        }
        Ok(Outcome::Handled(handle(c, message)?))
    })
}

const KNOWN_TYPES: [&str; 9] =
    ["event", "text", "image", "voice", "video", "shortvideo", "location", "link", "file"];

/// What the portal answers: a text reply or WeChat's "no reply" (`success`).
fn handle(conn: &mut DbConn, message: &WxMessage) -> AppResult<Option<String>> {
    if message.from_user.is_empty() || !KNOWN_TYPES.contains(&message.msg_type.as_str()) {
        log::info!("weixin portal: unsupported message type {}", Untrusted(&message.msg_type));
        return Err(AppError::BadRequest("unsupported message type".into()));
    }
    // A retry repeats the whole event; the event and its key keep two different scans made in
    // the same second apart.
    let dedupe_key = if message.msg_id.is_empty() {
        format!("{}:{}:{}:{}", message.from_user, message.create_time, message.event, message.event_key)
    } else {
        format!("msg:{}", message.msg_id)
    };
    if !first_sighting(conn, &dedupe_key)? {
        log::info!(
            "weixin: duplicate push {} from openid {} ignored",
            Untrusted(&dedupe_key),
            Untrusted(&message.from_user)
        );
        return Ok(None);
    }
    let openid = message.from_user.as_str();
    match (message.msg_type.as_str(), message.event.to_ascii_lowercase().as_str()) {
        ("event", "subscribe") => match message.event_key.strip_prefix("qrscene_") {
            Some(scene) => Ok(Some(scan_reply(login::record_scan(conn, scene, openid)?))),
            None => Ok(Some(
                "Welcome to paymall! Scan the QR code on the shop's login page to log in.".to_owned(),
            )),
        },
        ("event", "scan") => Ok(Some(scan_reply(login::record_scan(conn, &message.event_key, openid)?))),
        ("text", _) => Ok(Some(
            "Hello from paymall. To log in, open the shop's login page and scan its QR code with WeChat."
                .to_owned(),
        )),
        _ => Ok(None),
    }
}

fn scan_reply(recorded: bool) -> String {
    if recorded {
        "Scanned: you are now logged in to paymall in your browser.".to_owned()
    } else {
        "This QR code has expired or was already used: refresh it on the login page.".to_owned()
    }
}
