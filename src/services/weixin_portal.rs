//! WeChat pushes to our portal: signature checks, the XML messages (plain or in safe mode),
//! what each one does, and the reply. Nothing here calls out over HTTP, so answers stay far
//! inside WeChat's 5-second limit.

use chrono::Duration;
use openssl::symm::{Cipher, Crypter, Mode};
use serde::Deserialize;

use crate::db::{DbConn, write_transaction};
use crate::error::{AppError, AppResult};
use crate::log_escape::Untrusted;
use crate::models::login::first_sighting;
use crate::models::{now, weixin_nonce};
use crate::services::login;

/// `sha1(sort(parts).join(""))` in lowercase hex: WeChat's signature of a push.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    crate::random::hex(&openssl::sha::sha1(sorted.concat().as_bytes()))
}

pub fn signature_matches(expected: &str, given: &str) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

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
    if !signature_matches(&self::signature(&[token, timestamp, nonce]), given) {
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

/// A pushed message; WeChat adds fields over time, so unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WxMessage {
    #[serde(rename = "ToUserName")]
    pub to_user: String,
    #[serde(rename = "FromUserName")]
    pub from_user: String,
    #[serde(rename = "CreateTime")]
    pub create_time: String,
    #[serde(rename = "MsgType")]
    pub msg_type: String,
    #[serde(rename = "Event")]
    pub event: String,
    #[serde(rename = "EventKey")]
    pub event_key: String,
    #[serde(rename = "Ticket")]
    pub ticket: String,
    #[serde(rename = "Content")]
    pub content: String,
    #[serde(rename = "MsgId")]
    pub msg_id: String,
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
}

const KNOWN_TYPES: [&str; 9] =
    ["event", "text", "image", "voice", "video", "shortvideo", "location", "link", "file"];

pub fn parse(xml: &str) -> AppResult<WxMessage> {
    quick_xml::de::from_str(xml).map_err(|e| AppError::BadRequest(format!("malformed XML: {e}")))
}

/// What the portal answers: a text reply or WeChat's "no reply" (`success`).
fn handle(conn: &mut DbConn, message: &WxMessage) -> AppResult<Option<String>> {
    if message.from_user.is_empty() || !KNOWN_TYPES.contains(&message.msg_type.as_str()) {
        return Err(AppError::BadRequest(format!("unsupported message type {:?}", message.msg_type)));
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

/// The passive text reply, with the names swapped.
pub fn text_reply(message: &WxMessage, content: &str, now_secs: i64) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now_secs}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content></xml>",
        cdata(&message.from_user),
        cdata(&message.to_user),
        cdata(content)
    )
}

/// CDATA that survives a `]]>` inside the text.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

/// Safe mode (`encrypt_type=aes`): AES-256-CBC, key = base64(EncodingAESKey + "="), IV = the key's
/// first 16 bytes, PKCS#7 padding to 32-byte blocks; plaintext = 16 random bytes | u32 BE length
/// | message | appid.
pub struct SafeMode {
    key: Vec<u8>,
    app_id: String,
}

impl SafeMode {
    pub fn new(encoding_aes_key: &str, app_id: &str) -> AppResult<SafeMode> {
        let key = openssl::base64::decode_block(&format!("{encoding_aes_key}="))
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                AppError::internal("weixin.encoding_aes_key is not a 43-character EncodingAESKey")
            })?;
        Ok(SafeMode { key, app_id: app_id.to_owned() })
    }

    fn crypt(&self, mode: Mode, data: &[u8]) -> Option<Vec<u8>> {
        let cipher = Cipher::aes_256_cbc();
        let mut crypter = Crypter::new(cipher, mode, &self.key, Some(&self.key[..16])).ok()?;
        crypter.pad(false);
        let mut out = vec![0; data.len() + cipher.block_size()];
        let mut n = crypter.update(data, &mut out).ok()?;
        n += crypter.finalize(&mut out[n..]).ok()?;
        out.truncate(n);
        Some(out)
    }

    pub fn decrypt(&self, encrypted_b64: &str) -> AppResult<String> {
        let refuse = |why: &str| AppError::BadRequest(format!("safe-mode message refused: {why}"));
        let data = openssl::base64::decode_block(encrypted_b64.trim()).map_err(|_| refuse("not Base64"))?;
        if data.is_empty() || data.len() % 32 != 0 {
            return Err(refuse("bad length"));
        }
        let plain = self.crypt(Mode::Decrypt, &data).ok_or_else(|| refuse("cannot decrypt"))?;
        let pad = *plain.last().unwrap_or(&0) as usize;
        if !(1..=32).contains(&pad) || pad > plain.len() || plain.len() < 20 + pad {
            return Err(refuse("bad padding"));
        }
        let body = &plain[16..plain.len() - pad];
        let length = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if body.len() < 4 + length {
            return Err(refuse("bad message length"));
        }
        let (message, app_id) = body[4..].split_at(length);
        if app_id != self.app_id.as_bytes() {
            return Err(refuse("it is for another appid"));
        }
        String::from_utf8(message.to_vec()).map_err(|_| refuse("not UTF-8"))
    }

    pub fn encrypt(&self, message: &str) -> AppResult<String> {
        let mut plain = vec![0u8; 16];
        openssl::rand::rand_bytes(&mut plain).map_err(AppError::internal)?;
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.app_id.as_bytes());
        let pad = 32 - plain.len() % 32;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let encrypted =
            self.crypt(Mode::Encrypt, &plain).ok_or_else(|| AppError::internal("AES encryption failed"))?;
        Ok(openssl::base64::encode_block(&encrypted))
    }

    /// The encrypted reply envelope, signed with `msg_signature`.
    pub fn wrap_reply(
        &self,
        token: &str,
        reply_xml: &str,
        timestamp: &str,
        nonce: &str,
    ) -> AppResult<String> {
        let encrypted = self.encrypt(reply_xml)?;
        let msg_signature = signature(&[token, timestamp, nonce, &encrypted]);
        Ok(format!(
            "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{timestamp}</TimeStamp><Nonce>{}</Nonce></xml>",
            cdata(&encrypted),
            cdata(&msg_signature),
            cdata(nonce)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_sorts_before_hashing() {
        assert_eq!(signature(&["b", "a", "c"]), signature(&["c", "b", "a"]));
        assert_eq!(signature(&["abc"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn cdata_splits_its_terminator() {
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn safe_mode_round_trips_and_checks_the_appid() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let ours = SafeMode::new(key, "wx123").unwrap();
        let theirs = SafeMode::new(key, "wx999").unwrap();
        let sealed = ours.encrypt("<xml>hi</xml>").unwrap();
        assert_eq!(ours.decrypt(&sealed).unwrap(), "<xml>hi</xml>");
        assert!(theirs.decrypt(&sealed).is_err());
    }

    #[test]
    fn parses_a_scan_event_and_ignores_unknown_fields() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>123</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_abc]]></EventKey><Ticket><![CDATA[t]]></Ticket><New>1</New></xml>";
        let m = parse(xml).unwrap();
        assert_eq!(
            (m.from_user.as_str(), m.event_key.as_str(), m.create_time.as_str()),
            ("o1", "qrscene_abc", "123")
        );
        assert!(parse("<xml><ToUserName>").is_err());
    }

    proptest::proptest! {
        /// Whatever WeChat or an attacker sends: the parser answers, it never panics.
        #[test]
        fn any_body_parses_or_is_refused(xml in "\\PC{0,80}") {
            let _ = parse(&xml);
        }

        /// A reply carries any text, `]]>` included, back out unchanged.
        #[test]
        fn a_reply_reads_back_as_written(openid in "[a-zA-Z0-9_-]{1,28}", content in "\\PC{0,40}") {
            let message = WxMessage { from_user: openid.clone(), to_user: "gh_1".into(), ..WxMessage::default() };
            let reply = parse(&text_reply(&message, &content, 1)).unwrap();
            proptest::prop_assert_eq!((reply.to_user, reply.content), (openid, content));
        }

        /// Safe mode opens what it sealed and refuses anything else without a panic.
        #[test]
        fn safe_mode_round_trips_and_refuses_junk(message in "\\PC{0,64}", junk in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let safe = SafeMode::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx123").unwrap();
            proptest::prop_assert_eq!(safe.decrypt(&safe.encrypt(&message).unwrap()).unwrap(), message);
            let _ = safe.decrypt(&openssl::base64::encode_block(&junk));
        }
    }
}
