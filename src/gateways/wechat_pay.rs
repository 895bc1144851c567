//! WeChat Pay API v3 (直连商户, public-key mode): requests signed `WECHATPAY2-SHA256-RSA2048` with
//! the merchant key, every answer and notification verified with WeChat Pay's public key (its
//! `Wechatpay-Serial` is the key's id, its timestamp within five minutes), notification
//! resources decrypted with AEAD_AES_256_GCM under the APIv3 key. Calls: Native and JSAPI orders,
//! the JSAPI pay parameters, query, close, refund and refund query. Amounts are integer fen;
//! times are RFC 3339 in China time.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, SecondsFormat};
use openssl::pkey::{PKey, Private};
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};
use serde::{Deserialize, Serialize};

use super::alipay::{KeyError, VerifyingKey, load_private_key, load_public_key, sign};
use super::{GatewayError, counted, http_agent};
use crate::china_time;
use crate::config::Settings;
use crate::log_escape::Untrusted;
use crate::models::order::Channel;

pub const PLATFORM: &str = "WeChat Pay";

/// The `Authorization` scheme of a v3 request.
pub const AUTH_SCHEMA: &str = "WECHATPAY2-SHA256-RSA2048";

/// The only encryption of a notification's resource.
pub const AEAD_ALGORITHM: &str = "AEAD_AES_256_GCM";

/// How far a signed timestamp may be from our clock, either way.
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;

/// The length of the GCM tag at the end of a resource's ciphertext.
const GCM_TAG_LEN: usize = 16;

/// What a merchant signs: `METHOD\nURL\nTIMESTAMP\nNONCE\nBODY\n`, the URL being the request's
/// path with its query, the body empty for a GET.
pub fn request_message(method: &str, url_path: &str, timestamp: i64, nonce: &str, body: &str) -> String {
    format!("{method}\n{url_path}\n{timestamp}\n{nonce}\n{body}\n")
}

/// What WeChat Pay signs of an answer or a notification: `TIMESTAMP\nNONCE\nBODY\n`.
pub fn response_message(timestamp: &str, nonce: &str, body: &str) -> String {
    format!("{timestamp}\n{nonce}\n{body}\n")
}

/// What a JSAPI page's `paySign` covers: `appId\ntimeStamp\nnonceStr\npackage\n`.
pub fn jsapi_message(app_id: &str, timestamp: &str, nonce: &str, package: &str) -> String {
    format!("{app_id}\n{timestamp}\n{nonce}\n{package}\n")
}

/// The `Authorization` header of a request whose signing string [`request_message`] makes.
pub fn authorization_header(
    key: &PKey<Private>,
    mch_id: &str,
    serial_no: &str,
    message: (&str, &str, i64, &str, &str),
) -> String {
    let (method, url_path, timestamp, nonce, body) = message;
    let signature = sign(key, &request_message(method, url_path, timestamp, nonce, body));
    format!(
        "{AUTH_SCHEMA} mchid=\"{mch_id}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{serial_no}\""
    )
}

/// The parts of an `Authorization` header, as WeChat Pay reads a merchant's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

impl Authorization {
    /// Parses `WECHATPAY2-SHA256-RSA2048 k="v",...`; `None` unless the scheme matches and each of
    /// the five parts is there exactly once.
    pub fn parse(header: &str) -> Option<Authorization> {
        let params = header.strip_prefix(AUTH_SCHEMA)?.strip_prefix(' ')?;
        let mut parts: [Option<String>; 5] = Default::default();
        let names = ["mchid", "nonce_str", "signature", "timestamp", "serial_no"];
        for pair in params.split(',') {
            let (name, value) = pair.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            let slot = &mut parts[names.iter().position(|n| *n == name)?];
            if slot.replace(value.to_owned()).is_some() {
                return None;
            }
        }
        let [mchid, nonce_str, signature, timestamp, serial_no] = parts;
        Some(Authorization {
            mchid: mchid?,
            nonce_str: nonce_str?,
            signature: signature?,
            timestamp: timestamp?,
            serial_no: serial_no?,
        })
    }
}

/// The `Wechatpay-*` headers of an answer or a notification.
#[derive(Debug, Clone, Default)]
pub struct SignedHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    pub serial: String,
}

impl SignedHeaders {
    /// Reads the four headers through `get` (any header map); missing ones are empty.
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> SignedHeaders {
        let header = |name: &str| get(name).unwrap_or("").trim().to_owned();
        SignedHeaders {
            timestamp: header("Wechatpay-Timestamp"),
            nonce: header("Wechatpay-Nonce"),
            signature: header("Wechatpay-Signature"),
            serial: header("Wechatpay-Serial"),
        }
    }

    /// Signs `body` as WeChat Pay signs its answers and notifications.
    pub fn sign(key: &PKey<Private>, serial: &str, timestamp: i64, nonce: &str, body: &str) -> SignedHeaders {
        let timestamp = timestamp.to_string();
        let signature = sign(key, &response_message(&timestamp, nonce, body));
        SignedHeaders { timestamp, nonce: nonce.to_owned(), signature, serial: serial.to_owned() }
    }

    /// The headers as `(name, value)` pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            ("Wechatpay-Timestamp", self.timestamp.as_str()),
            ("Wechatpay-Nonce", self.nonce.as_str()),
            ("Wechatpay-Signature", self.signature.as_str()),
            ("Wechatpay-Serial", self.serial.as_str()),
        ]
    }
}

/// Checks that `body` is signed by `key`, whose id is `serial`, at a time within
/// [`MAX_CLOCK_SKEW_SECS`] of `now` (Unix seconds); the reason otherwise.
pub fn verify_signed(
    key: &VerifyingKey,
    serial: &str,
    headers: &SignedHeaders,
    body: &str,
    now: i64,
) -> Result<(), String> {
    if headers.serial != serial {
        return Err(format!("unknown serial {}", Untrusted(&headers.serial)));
    }
    let Ok(timestamp) = headers.timestamp.parse::<i64>() else {
        return Err(format!("malformed timestamp {}", Untrusted(&headers.timestamp)));
    };
    if (now - timestamp).abs() > MAX_CLOCK_SKEW_SECS {
        return Err(format!("stale timestamp {timestamp} (now {now})"));
    }
    if !key.verify(&response_message(&headers.timestamp, &headers.nonce, body), &headers.signature) {
        return Err("bad signature".into());
    }
    Ok(())
}

/// The APIv3 key: 32 bytes, as the merchant platform sets it (32 characters).
#[derive(Clone)]
pub struct ApiV3Key([u8; 32]);

impl ApiV3Key {
    pub fn new(key: &[u8]) -> Option<ApiV3Key> {
        Some(ApiV3Key(key.try_into().ok()?))
    }

    /// Encrypts `plaintext` as a notification's resource: Base64 of the ciphertext followed by
    /// its 16-byte tag. `nonce` is the resource's 12 characters.
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &[u8]) -> Option<String> {
        let mut tag = [0u8; GCM_TAG_LEN];
        let mut sealed = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(nonce.as_bytes()),
            associated_data.as_bytes(),
            plaintext,
            &mut tag,
        )
        .ok()?;
        sealed.extend_from_slice(&tag);
        Some(openssl::base64::encode_block(&sealed))
    }

    /// Decrypts a resource's `ciphertext` (Base64; its last 16 bytes are the tag); `None` when
    /// it is malformed or does not authenticate under this key, nonce and associated data.
    pub fn decrypt(&self, nonce: &str, associated_data: &str, ciphertext_b64: &str) -> Option<Vec<u8>> {
        let sealed = openssl::base64::decode_block(ciphertext_b64.trim()).ok()?;
        let split = sealed.len().checked_sub(GCM_TAG_LEN)?;
        let (ciphertext, tag) = sealed.split_at(split);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.0,
            Some(nonce.as_bytes()),
            associated_data.as_bytes(),
            ciphertext,
            tag,
        )
        .ok()
    }
}

impl std::fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiV3Key(***)")
    }
}

/// A UTC time as WeChat Pay writes times: RFC 3339 in China time (`YYYY-MM-DDTHH:MM:SS+08:00`).
pub fn format_time(utc: NaiveDateTime) -> String {
    china_time::to_china(utc).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// An RFC 3339 time, back to UTC.
pub fn parse_time(text: &str) -> Option<NaiveDateTime> {
    Some(DateTime::parse_from_rfc3339(text.trim()).ok()?.naive_utc())
}

/// `amount` of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxAmount {
    pub total: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(default)]
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxPayer {
    pub openid: String,
}

/// A transaction as a query answers it and a payment notification carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxTransaction {
    pub mchid: String,
    pub appid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: String,
    #[serde(default)]
    pub trade_type: String,
    pub trade_state: String,
    #[serde(default)]
    pub trade_state_desc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    pub amount: WxAmount,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<WxPayer>,
}

/// `amount` of a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxRefundAmount {
    pub total: i64,
    pub refund: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_total: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer_refund: Option<i64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub currency: String,
}

/// A refund as a refund notification carries it (the refund call's answer says `status`, the
/// notification `refund_status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WxRefundNotice {
    pub mchid: String,
    pub out_trade_no: String,
    #[serde(default)]
    pub transaction_id: String,
    pub out_refund_no: String,
    #[serde(default)]
    pub refund_id: String,
    pub refund_status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_time: Option<String>,
    #[serde(default)]
    pub user_received_account: String,
    pub amount: WxRefundAmount,
}

/// Where a trade stands at WeChat Pay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WxTradeState {
    Paid {
        transaction_id: String,
        total_fen: i64,
        success_time: Option<NaiveDateTime>,
    },
    NotPay,
    Closed,
    /// Paid, then refunded (in part or whole).
    Refund,
    PayError,
    UserPaying,
    /// WeChat Pay has no trade of this number.
    NotExist,
}

/// What closing a trade came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// Closed now, or already.
    Closed,
    /// Paid: it cannot be closed; query it and record the payment.
    AlreadyPaid,
    /// WeChat Pay has no trade of this number.
    NotExist,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundStatus {
    Success,
    Closed,
    Processing,
    Abnormal,
}

impl RefundStatus {
    pub fn parse(text: &str) -> Option<RefundStatus> {
        serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
    }
}

/// A refund as the refund and refund query calls answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundState {
    pub refund_id: String,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub status: RefundStatus,
    pub refund_fen: i64,
    pub success_time: Option<NaiveDateTime>,
}

/// The parameters a JSAPI page passes to `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`,
/// serialised with WeChat's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsapiPayParams {
    pub app_id: String,
    pub time_stamp: String,
    pub nonce_str: String,
    pub package: String,
    pub sign_type: String,
    pub pay_sign: String,
}

/// A notification's envelope; `resource` is encrypted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationEnvelope {
    pub id: String,
    pub create_time: String,
    pub event_type: String,
    pub resource_type: String,
    pub resource: EncryptedResource,
    #[serde(default)]
    pub summary: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncryptedResource {
    pub algorithm: String,
    pub ciphertext: String,
    pub nonce: String,
    #[serde(default)]
    pub associated_data: String,
    pub original_type: String,
}

/// What a verified notification reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WxNotice {
    /// `TRANSACTION.SUCCESS`: the transaction, its `mchid` and `appid` ours.
    Transaction(WxTransaction),
    /// `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`: the refund, its `mchid` ours.
    Refund(WxRefundNotice),
}

/// A notification signed by WeChat Pay for our merchant, decrypted: built only by
/// [`WechatPayClient::verify_notification`]; what the shop acts on is what was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedWxNotification {
    pub id: String,
    pub create_time: String,
    pub event_type: String,
    pub notice: WxNotice,
    /// The decrypted resource, exactly as it came (for the audit row).
    pub plaintext: String,
}

/// Why a notification is not acted on; the decrypted resource when it could be read.
#[derive(Debug)]
pub struct Refused {
    pub reason: String,
    pub plaintext: Option<String>,
}

impl Refused {
    fn new(reason: impl Into<String>) -> Refused {
        Refused { reason: reason.into(), plaintext: None }
    }
}

/// Why the `wechat_pay.*` settings cannot make a client.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("wechat_pay.{setting}: {source}")]
    Key { setting: &'static str, source: KeyError },
    #[error("wechat_pay.api_v3_key: must be 32 bytes")]
    ApiV3Key,
    #[error("wechat_pay.{0}: must be set")]
    Missing(&'static str),
}

/// The WeChat Pay client: blocking (ureq); call it off the async workers.
pub struct WechatPayClient {
    mch_id: String,
    app_id: String,
    serial_no: String,
    platform_key_id: String,
    api_base_url: String,
    notify_url: String,
    merchant_key: PKey<Private>,
    platform_key: VerifyingKey,
    api_v3_key: ApiV3Key,
    agent: ureq::Agent,
}

/// The answer to a call, its signature verified.
struct Answer {
    status: u16,
    body: String,
}

/// An error answer's body.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// A refund or refund query answer.
#[derive(Debug, Deserialize)]
struct RefundAnswer {
    #[serde(default)]
    refund_id: String,
    out_refund_no: String,
    #[serde(default)]
    out_trade_no: String,
    #[serde(default)]
    transaction_id: String,
    status: String,
    #[serde(default)]
    success_time: Option<String>,
    amount: WxRefundAmount,
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The path and query of `url` (what a request signs).
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.find('/').map_or("/", |at| &rest[at..])
}

fn nonce() -> String {
    crate::random::token_hex(16).to_ascii_uppercase()
}

impl WechatPayClient {
    pub fn from_settings(settings: &Settings) -> Result<WechatPayClient, SettingsError> {
        let wx = &settings.wechat_pay;
        let required = [
            ("mch_id", wx.mch_id.is_empty()),
            ("app_id", wx.app_id.is_empty()),
            ("merchant_serial_no", wx.merchant_serial_no.is_empty()),
            ("platform_public_key_id", wx.platform_public_key_id.is_empty()),
            ("api_base_url", wx.api_base_url.is_empty()),
            ("notify_url", wx.notify_url.is_empty()),
        ];
        if let Some((setting, _)) = required.into_iter().find(|(_, missing)| *missing) {
            return Err(SettingsError::Missing(setting));
        }
        let key_error = |setting| move |source| SettingsError::Key { setting, source };
        let path = |path: &PathBuf, setting| {
            if path.as_os_str().is_empty() { Err(SettingsError::Missing(setting)) } else { Ok(path.clone()) }
        };
        let merchant_key =
            load_private_key(&path(&wx.merchant_private_key_path, "merchant_private_key_path")?)
                .map_err(key_error("merchant_private_key_path"))?;
        let platform_key = load_public_key(&path(&wx.platform_public_key_path, "platform_public_key_path")?)
            .map_err(key_error("platform_public_key_path"))?;
        Ok(WechatPayClient {
            mch_id: wx.mch_id.clone(),
            app_id: wx.app_id.clone(),
            serial_no: wx.merchant_serial_no.clone(),
            platform_key_id: wx.platform_public_key_id.clone(),
            api_base_url: wx.api_base_url.trim_end_matches('/').to_owned(),
            notify_url: wx.notify_url.clone(),
            merchant_key,
            platform_key: VerifyingKey::new(platform_key),
            api_v3_key: ApiV3Key::new(wx.api_v3_key.expose().as_bytes()).ok_or(SettingsError::ApiV3Key)?,
            agent: http_agent(Duration::from_secs(10)),
        })
    }

    pub fn mch_id(&self) -> &str {
        &self.mch_id
    }

    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    /// The `Authorization` header of a request (see [`authorization_header`]).
    pub fn authorization(
        &self,
        method: &str,
        url_path: &str,
        timestamp: i64,
        nonce: &str,
        body: &str,
    ) -> String {
        authorization_header(
            &self.merchant_key,
            &self.mch_id,
            &self.serial_no,
            (method, url_path, timestamp, nonce, body),
        )
    }

    /// Sends a signed request to `path` (under `api_base_url`) and verifies the answer's
    /// signature: only a verified answer comes back, whatever its status. A 2xx answer that
    /// fails verification is untrusted (`BadAnswer`); an error answer that fails it is `Refused`
    /// and never read for a fact (an unsigned 404 is not a trade that does not exist).
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Answer, GatewayError> {
        let url = format!("{}{path}", self.api_base_url);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let authorization = self.authorization(method, path_of(&url), unix_now(), &nonce(), &body);
        let unreachable =
            |e: ureq::Error| GatewayError::Unreachable { platform: PLATFORM, reason: e.to_string() };
        let mut response = if method == "GET" {
            self.agent
                .get(&url)
                .header("Authorization", &authorization)
                .header("Accept", "application/json")
                .call()
                .map_err(unreachable)?
        } else {
            self.agent
                .post(&url)
                .header("Authorization", &authorization)
                .header("Accept", "application/json")
                .header("Content-Type", "application/json")
                .send(body.as_bytes())
                .map_err(unreachable)?
        };
        let status = response.status().as_u16();
        let headers = SignedHeaders::read(|name| response.headers().get(name).and_then(|v| v.to_str().ok()));
        let answer = response.body_mut().read_to_string().map_err(unreachable)?;
        let bad = |reason: String| GatewayError::BadAnswer { platform: PLATFORM, reason };
        match verify_signed(&self.platform_key, &self.platform_key_id, &headers, &answer, unix_now()) {
            Ok(()) => Ok(Answer { status, body: answer }),
            Err(reason) if (200..300).contains(&status) => {
                Err(bad(format!("untrusted answer to {method} {path}: {reason}")))
            }
            // An unsigned error answer is a failure either way, and never a fact to act on.
            Err(reason) => {
                let error: ErrorBody = serde_json::from_str(&answer).unwrap_or_default();
                Err(GatewayError::Refused {
                    platform: PLATFORM,
                    code: format!("HTTP {status} {}", error.code),
                    message: format!("{} (unsigned: {reason})", error.message),
                })
            }
        }
    }

    /// Places a Native order; the `code_url` to show as a QR code.
    pub fn native_order(
        &self,
        out_trade_no: &str,
        description: &str,
        total_fen: i64,
        time_expire: NaiveDateTime,
    ) -> Result<String, GatewayError> {
        let body = self.order_body(out_trade_no, description, total_fen, time_expire);
        let placed = self.call("POST", "/v3/pay/transactions/native", Some(&body));
        counted(Some(Channel::WechatPay), "wechat_pay.native", placed.and_then(|a| field_of(a, "code_url")))
    }

    /// Places a JSAPI order for the payer `payer_openid` (of our Official Account); the
    /// `prepay_id` for [`WechatPayClient::jsapi_pay_params`].
    pub fn jsapi_order(
        &self,
        out_trade_no: &str,
        description: &str,
        total_fen: i64,
        time_expire: NaiveDateTime,
        payer_openid: &str,
    ) -> Result<String, GatewayError> {
        let mut body = self.order_body(out_trade_no, description, total_fen, time_expire);
        body["payer"] = serde_json::json!({ "openid": payer_openid });
        let placed = self.call("POST", "/v3/pay/transactions/jsapi", Some(&body));
        counted(Some(Channel::WechatPay), "wechat_pay.jsapi", placed.and_then(|a| field_of(a, "prepay_id")))
    }

    fn order_body(
        &self,
        out_trade_no: &str,
        description: &str,
        total_fen: i64,
        time_expire: NaiveDateTime,
    ) -> serde_json::Value {
        serde_json::json!({
            "appid": self.app_id,
            "mchid": self.mch_id,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": format_time(time_expire),
            "notify_url": self.notify_url,
            "amount": { "total": total_fen, "currency": "CNY" },
        })
    }

    /// The signed parameters of `getBrandWCPayRequest` for `prepay_id`.
    pub fn jsapi_pay_params(&self, prepay_id: &str) -> JsapiPayParams {
        self.jsapi_pay_params_at(prepay_id, unix_now(), &nonce())
    }

    pub fn jsapi_pay_params_at(&self, prepay_id: &str, timestamp: i64, nonce: &str) -> JsapiPayParams {
        let time_stamp = timestamp.to_string();
        let package = format!("prepay_id={prepay_id}");
        let pay_sign = sign(&self.merchant_key, &jsapi_message(&self.app_id, &time_stamp, nonce, &package));
        JsapiPayParams {
            app_id: self.app_id.clone(),
            time_stamp,
            nonce_str: nonce.to_owned(),
            package,
            sign_type: "RSA".into(),
            pay_sign,
        }
    }

    /// Queries a trade by our number.
    pub fn query(&self, out_trade_no: &str) -> Result<WxTradeState, GatewayError> {
        counted(Some(Channel::WechatPay), "wechat_pay.query", self.query_uncounted(out_trade_no))
    }

    fn query_uncounted(&self, out_trade_no: &str) -> Result<WxTradeState, GatewayError> {
        let path =
            format!("/v3/pay/transactions/out-trade-no/{}?mchid={}", encoded(out_trade_no), self.mch_id);
        let answer = self.call("GET", &path, None)?;
        if answer.status == 404 && error_code(&answer) == "ORDER_NOT_EXIST" {
            return Ok(WxTradeState::NotExist);
        }
        let answer = success(answer)?;
        let trade: WxTransaction = parse_answer(&answer.body)?;
        if trade.out_trade_no != out_trade_no || trade.mchid != self.mch_id {
            return Err(GatewayError::BadAnswer {
                platform: PLATFORM,
                reason: format!(
                    "the answer is about {} of {}",
                    Untrusted(&trade.out_trade_no),
                    Untrusted(&trade.mchid)
                ),
            });
        }
        Ok(match trade.trade_state.as_str() {
            "SUCCESS" => WxTradeState::Paid {
                success_time: trade.success_time.as_deref().and_then(parse_time),
                transaction_id: trade.transaction_id,
                total_fen: trade.amount.total,
            },
            "NOTPAY" => WxTradeState::NotPay,
            "CLOSED" | "REVOKED" => WxTradeState::Closed,
            "REFUND" => WxTradeState::Refund,
            "PAYERROR" => WxTradeState::PayError,
            "USERPAYING" => WxTradeState::UserPaying,
            other => {
                return Err(GatewayError::BadAnswer {
                    platform: PLATFORM,
                    reason: format!("unknown trade_state {}", Untrusted(other)),
                });
            }
        })
    }

    /// Closes a trade that is not paid.
    pub fn close(&self, out_trade_no: &str) -> Result<CloseOutcome, GatewayError> {
        counted(Some(Channel::WechatPay), "wechat_pay.close", self.close_uncounted(out_trade_no))
    }

    fn close_uncounted(&self, out_trade_no: &str) -> Result<CloseOutcome, GatewayError> {
        let path = format!("/v3/pay/transactions/out-trade-no/{}/close", encoded(out_trade_no));
        let answer = self.call("POST", &path, Some(&serde_json::json!({ "mchid": self.mch_id })))?;
        match (answer.status, error_code(&answer).as_str()) {
            (200..=299, _) | (_, "ORDER_CLOSED") => Ok(CloseOutcome::Closed),
            (_, "ORDERPAID" | "ORDER_PAID") => Ok(CloseOutcome::AlreadyPaid),
            (_, "ORDER_NOT_EXIST") => Ok(CloseOutcome::NotExist),
            _ => Err(refused(&answer)),
        }
    }

    /// Refunds `refund_fen` of the trade (`total_fen` in all); resending the same
    /// `out_refund_no` never refunds twice. With `transaction_id`, WeChat Pay refuses a pair that
    /// does not match `out_trade_no`'s trade.
    pub fn refund(
        &self,
        out_trade_no: &str,
        transaction_id: Option<&str>,
        out_refund_no: &str,
        refund_fen: i64,
        total_fen: i64,
        reason: &str,
    ) -> Result<RefundState, GatewayError> {
        let mut body = serde_json::json!({
            "out_trade_no": out_trade_no,
            "out_refund_no": out_refund_no,
            "reason": reason,
            "notify_url": self.notify_url,
            "amount": { "refund": refund_fen, "total": total_fen, "currency": "CNY" },
        });
        if let Some(transaction_id) = transaction_id {
            body["transaction_id"] = transaction_id.into();
        }
        let answered = self.call("POST", "/v3/refund/domestic/refunds", Some(&body));
        counted(
            Some(Channel::WechatPay),
            "wechat_pay.refund",
            answered.and_then(success).and_then(|a| refund_state(&a.body)),
        )
    }

    /// A refund by our number; `None` when WeChat Pay has none of that number.
    pub fn refund_query(&self, out_refund_no: &str) -> Result<Option<RefundState>, GatewayError> {
        let path = format!("/v3/refund/domestic/refunds/{}", encoded(out_refund_no));
        let answered = self.call("GET", &path, None).and_then(|answer| {
            if answer.status == 404 && error_code(&answer) == "RESOURCE_NOT_EXISTS" {
                return Ok(None);
            }
            refund_state(&success(answer)?.body).map(Some)
        });
        counted(Some(Channel::WechatPay), "wechat_pay.refund_query", answered)
    }

    /// Verifies a notification: the headers' signature over the raw body first, then the
    /// envelope, the decryption of its resource with the APIv3 key, and the resource's `mchid`
    /// (and a transaction's `appid`) against ours.
    pub fn verify_notification(
        &self,
        headers: &SignedHeaders,
        raw_body: &str,
    ) -> Result<VerifiedWxNotification, Refused> {
        self.verify_notification_at(headers, raw_body, unix_now())
    }

    /// [`WechatPayClient::verify_notification`] at `now` (Unix seconds).
    pub fn verify_notification_at(
        &self,
        headers: &SignedHeaders,
        raw_body: &str,
        now: i64,
    ) -> Result<VerifiedWxNotification, Refused> {
        verify_signed(&self.platform_key, &self.platform_key_id, headers, raw_body, now)
            .map_err(Refused::new)?;
        let envelope: NotificationEnvelope = serde_json::from_str(raw_body)
            .map_err(|e| Refused::new(format!("malformed notification: {e}")))?;
        let resource = &envelope.resource;
        if resource.algorithm != AEAD_ALGORITHM {
            return Err(Refused::new(format!("unknown algorithm {}", Untrusted(&resource.algorithm))));
        }
        let plaintext = self
            .api_v3_key
            .decrypt(&resource.nonce, &resource.associated_data, &resource.ciphertext)
            .ok_or_else(|| Refused::new("the resource does not decrypt under the APIv3 key"))?;
        let plaintext =
            String::from_utf8(plaintext).map_err(|_| Refused::new("the decrypted resource is not UTF-8"))?;
        let refuse =
            |reason: String, plaintext: &str| Refused { reason, plaintext: Some(plaintext.to_owned()) };
        let notice = match (resource.original_type.as_str(), envelope.event_type.as_str()) {
            ("transaction", "TRANSACTION.SUCCESS") => {
                let trade: WxTransaction = serde_json::from_str(&plaintext)
                    .map_err(|e| refuse(format!("malformed transaction: {e}"), &plaintext))?;
                if trade.appid != self.app_id {
                    return Err(refuse(format!("appid {} is not ours", Untrusted(&trade.appid)), &plaintext));
                }
                if trade.mchid != self.mch_id {
                    return Err(refuse(format!("mchid {} is not ours", Untrusted(&trade.mchid)), &plaintext));
                }
                WxNotice::Transaction(trade)
            }
            ("refund", "REFUND.SUCCESS" | "REFUND.ABNORMAL" | "REFUND.CLOSED") => {
                let refund: WxRefundNotice = serde_json::from_str(&plaintext)
                    .map_err(|e| refuse(format!("malformed refund: {e}"), &plaintext))?;
                if refund.mchid != self.mch_id {
                    return Err(refuse(
                        format!("mchid {} is not ours", Untrusted(&refund.mchid)),
                        &plaintext,
                    ));
                }
                WxNotice::Refund(refund)
            }
            (original, event) => {
                let reason = format!("unknown event {} of a {}", Untrusted(event), Untrusted(original));
                return Err(refuse(reason, &plaintext));
            }
        };
        Ok(VerifiedWxNotification {
            id: envelope.id,
            create_time: envelope.create_time,
            event_type: envelope.event_type,
            notice,
            plaintext,
        })
    }
}

/// A path segment, percent-encoded.
fn encoded(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn error_code(answer: &Answer) -> String {
    serde_json::from_str::<ErrorBody>(&answer.body).unwrap_or_default().code
}

fn refused(answer: &Answer) -> GatewayError {
    let error: ErrorBody = serde_json::from_str(&answer.body).unwrap_or_default();
    GatewayError::Refused {
        platform: PLATFORM,
        code: format!("HTTP {} {}", answer.status, error.code),
        message: error.message,
    }
}

/// The answer when it is a success, else its error.
fn success(answer: Answer) -> Result<Answer, GatewayError> {
    if (200..300).contains(&answer.status) { Ok(answer) } else { Err(refused(&answer)) }
}

fn parse_answer<T: serde::de::DeserializeOwned>(body: &str) -> Result<T, GatewayError> {
    serde_json::from_str(body)
        .map_err(|e| GatewayError::BadAnswer { platform: PLATFORM, reason: format!("malformed answer: {e}") })
}

fn field_of(answer: Answer, name: &str) -> Result<String, GatewayError> {
    let answer = success(answer)?;
    let value: serde_json::Value = parse_answer(&answer.body)?;
    match value.get(name).and_then(|v| v.as_str()) {
        Some(text) if !text.is_empty() => Ok(text.to_owned()),
        _ => Err(GatewayError::BadAnswer { platform: PLATFORM, reason: format!("no {name} in the answer") }),
    }
}

fn refund_state(body: &str) -> Result<RefundState, GatewayError> {
    let refund: RefundAnswer = parse_answer(body)?;
    let status = RefundStatus::parse(&refund.status).ok_or_else(|| GatewayError::BadAnswer {
        platform: PLATFORM,
        reason: format!("unknown refund status {}", Untrusted(&refund.status)),
    })?;
    Ok(RefundState {
        refund_id: refund.refund_id,
        out_refund_no: refund.out_refund_no,
        out_trade_no: refund.out_trade_no,
        transaction_id: refund.transaction_id,
        status,
        refund_fen: refund.amount.refund,
        success_time: refund.success_time.as_deref().and_then(parse_time),
    })
}

/// WeChat Pay as a payment channel: a trade's state in the shop's terms (fen are cents). A refund
/// still `PROCESSING` is not done: the caller tries again later under the same `out_refund_no`,
/// which asks WeChat Pay where it stands and never refunds twice.
impl super::PaymentGateway for WechatPayClient {
    fn channel(&self) -> Channel {
        Channel::WechatPay
    }

    fn call_name(&self, op: super::GatewayOp) -> &'static str {
        match op {
            super::GatewayOp::Query => "wechat_pay.query",
            super::GatewayOp::Close => "wechat_pay.close",
            super::GatewayOp::Refund => "wechat_pay.refund",
        }
    }

    fn query(&self, out_trade_no: &str) -> Result<super::TradeState, GatewayError> {
        use super::TradeState;
        Ok(match WechatPayClient::query(self, out_trade_no)? {
            WxTradeState::Paid { transaction_id, total_fen, success_time } => {
                TradeState::Paid { trade_no: transaction_id, amount_cents: total_fen, paid_at: success_time }
            }
            WxTradeState::NotPay | WxTradeState::UserPaying | WxTradeState::PayError => TradeState::Waiting,
            WxTradeState::Closed => TradeState::Closed,
            WxTradeState::NotExist => TradeState::NotExist,
            WxTradeState::Refund => {
                return Err(GatewayError::BadAnswer {
                    platform: PLATFORM,
                    reason: "the trade was paid and refunded at WeChat Pay; left for an operator".into(),
                });
            }
        })
    }

    fn close(&self, out_trade_no: &str) -> Result<super::CloseOutcome, GatewayError> {
        Ok(match WechatPayClient::close(self, out_trade_no)? {
            CloseOutcome::Closed => super::CloseOutcome::Closed,
            CloseOutcome::AlreadyPaid => super::CloseOutcome::NotWaiting,
            CloseOutcome::NotExist => super::CloseOutcome::NotExist,
        })
    }

    fn refund(&self, request: &super::RefundRequest) -> Result<(), GatewayError> {
        let state = WechatPayClient::refund(
            self,
            request.out_trade_no,
            request.trade_no,
            request.request_no,
            request.amount_cents,
            request.total_cents,
            request.reason,
        )?;
        match state.status {
            RefundStatus::Success => Ok(()),
            status => Err(GatewayError::Refused {
                platform: PLATFORM,
                code: format!("{status:?}").to_uppercase(),
                message: "the refund is not done yet; asked again later".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    /// A key made for these tests only (`openssl genrsa 2048`); it signs nothing anywhere else.
    const TEST_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----\n\
MIIEpAIBAAKCAQEA4g4jZckd/a/vYYGtX8QbBsVnknyHFHBi2uCHawEDGagNKv9n\n\
WzmECtQHDD36d3gPIKCn+zVE5HjsPXaF4Q36hXsImNgw1qvtJI2sYwaCm3kNCkBI\n\
RIas0oI/MtG/xnCrKLCSYLP3nl6U4cfbjXnz+dN7s7GmkNN6qC72jExOOLFxcrUh\n\
Fho86kiTtBaGCH0izKNg+bF0R2Ej4D4t+1As0d5seUM1J3jJu2C5Emb/U76aYd/k\n\
RTogW1OnoIGRrDwOa1hfJBYqnocHqZTQ56+aLPtVYu5ffb33vkUMCFxGbTi10p+r\n\
MFLxJl+t3zYkD3UDzZAT3RRF9rSQWKxhZOd/eQIDAQABAoIBAB1TZDgyLRfaGR33\n\
Kry/vhnUxij0yrlWExz9/9Nb4EEV0g9/7rKg9YZKF1f5OmMBSkUbUm9+a5+QKGWY\n\
2KlnnNZwLZ9WfI984ljZoEGAeLUesRhhWn65UfZFO1mmaFCgETRII9Uzw63h60KX\n\
IN5rscD5NJUNOOSU6taisQ1mYMdtzyOX67fSbnyxKPp1PobIXDd/5RcIFAgsB4Yu\n\
/3YLiAO7Q0mY3y7G3jditneHt4V8Txb9O7G9sYvNOD85K+oAa8L1A5KRwb/9FAQa\n\
FYyUWzEoHyzzLnQMf+Rpe4QzFUmVXNaYNPCtoLsL9ZNV5lfUeDwDdZR94YsE3BjY\n\
xbTqYuECgYEA/CnkErOd5vM4OkTVwinxfbFmtYy57T7CSxsw7ApDFY4TgqAKmlc5\n\
PyucpjNilvDOd70XGedFzHsnZcBP0yvPnjJMUirm6Cd12HHTouamur7PO97JApxp\n\
pw4YYzweBAzAs3/ykxycCfGa+CYpsD4yf67Iq98XibRYa5FXoWH4Mm0CgYEA5X6P\n\
6uwWIZle09C+iZMPzNtHXwmRHppLJgbrAKFor3c+RDbrnmCJV6rG+AFWdR39bUdf\n\
JF5GIR/dIBQP7QRrD3daQxCCqAFuKmy/BbI1Qzs+8FpXfBkQv7VfTrdy6HJVuwW+\n\
B7r93IbUOmlFfdJ///sETVDOubPswt4wXB0wOb0CgYEAkPXYCjQ9ouXRPhYSOFN6\n\
Y0KXg+jJfaxlb13LSvY/SGXrq10rmzxnSXxdymGh3JnEZ6tJW3fLdVia9nCOsxvt\n\
d8j8fQPyyCTfJzWQb4Ze9N36LjXNonWeew2sUWfe7X8TTF1SauW4gjLlXqA5uPqY\n\
dzRYYg2W72/AoN3l3X1/fCUCgYEAz2NH+yvN9B79Kr0A8qILLT0bii7DDbyxHHQz\n\
+iXizG4dvtdCpaTneGnD1GqhDsVDN3W/7MWk6lo5Ibv/iFjtxtQ8pU5ORDTGsWAE\n\
X8ljiJYJknqRhHvCPvxQXHo7RQPNpWzTBXld3+OX9hEb01Bei5zzjkrwBbEqzA6t\n\
9RALfKECgYAg0b0Kj962I50TcVeN7gUNZO+XQxpKABuLg1O9v/sz6BQA3v49U6G7\n\
FfwUHQIcjb18GTQd/lka2qPpn/kZ8T6lg+ZosAS1dnvnBSGcyHUg70PlttoJ7QG8\n\
CKvafVMwr8qEi5QBWuDLyqT9L5i5Z7/1jSKn45+wKgrw/0u6aDZsPw==\n\
-----END RSA PRIVATE KEY-----\n";

    /// `openssl dgst -sha256 -sign` of [`SIGNED`] under [`TEST_KEY`], Base64.
    const SIGNATURE: &str = "iM8Ya9xgtMdESrl34pp8ysaSBl1DAtwImSUtYYEvQ2RuSbjM105LZuT9uOzmMEhhZaNcyC+Rn6hGuxulXkKVoZaDit8HGl5L1Mx4qbsQ93x19YUZ1h+gwqe1HVleRIy9O42Dw0fjA6FiLeYX2jXTyV4D8JWTE+wA15miJaUst4nYYdloXcrLa9A5GJXC1UT0rliKO860576Mo4/9ydTSAV+ra/LS44mPryIyn0HFmb0g+bcKEuSDw82JLUsXctmrj9+ou3DYVPbwGJhWwUI9NM6HFOkaMk8Ao/YWF9WEmr726cjDw8HRyZx8yZwyajzgWETXib2S4UNDKURr0ZI2Xw==";

    const BODY: &str = r#"{"appid":"wx0000000000000001","mchid":"1900000001"}"#;
    const SIGNED: &str = "POST\n/v3/pay/transactions/native\n1764892800\n593BEC0C930BF1AFEB40B4A08C8FB242\n{\"appid\":\"wx0000000000000001\",\"mchid\":\"1900000001\"}\n";

    const MCH_ID: &str = "1900000001";
    const APP_ID: &str = "wx0000000000000001";
    const PLATFORM_KEY_ID: &str = "PUB_KEY_ID_0119000000012026120500000000000001";
    const API_V3_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_764_892_800;

    fn test_key() -> PKey<Private> {
        PKey::private_key_from_pem(TEST_KEY.as_bytes()).unwrap()
    }

    fn public_half(key: &PKey<Private>) -> VerifyingKey {
        VerifyingKey::new(PKey::public_key_from_pem(&key.public_key_to_pem().unwrap()).unwrap())
    }

    #[test]
    fn the_signing_string_and_authorization_match_the_known_vector() {
        let message = request_message(
            "POST",
            "/v3/pay/transactions/native",
            NOW,
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            BODY,
        );
        assert_eq!(message, SIGNED);
        let header = authorization_header(
            &test_key(),
            MCH_ID,
            "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            ("POST", "/v3/pay/transactions/native", NOW, "593BEC0C930BF1AFEB40B4A08C8FB242", BODY),
        );
        assert_eq!(
            header,
            format!(
                "WECHATPAY2-SHA256-RSA2048 mchid=\"1900000001\",nonce_str=\"593BEC0C930BF1AFEB40B4A08C8FB242\",signature=\"{SIGNATURE}\",timestamp=\"1764892800\",serial_no=\"5157F09EFDC096DE15EBE81A47057A7232F1B8E1\""
            )
        );
        let parsed = Authorization::parse(&header).unwrap();
        assert_eq!(parsed.signature, SIGNATURE);
        assert_eq!((parsed.mchid.as_str(), parsed.timestamp.as_str()), (MCH_ID, "1764892800"));
        assert!(public_half(&test_key()).verify(SIGNED, &parsed.signature));
        assert_eq!(request_message("GET", "/v3/x?mchid=1", 1, "n", ""), "GET\n/v3/x?mchid=1\n1\nn\n\n");
    }

    #[test]
    fn an_authorization_with_another_scheme_or_a_missing_or_repeated_part_does_not_parse() {
        let good =
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1",nonce_str="n",signature="s",timestamp="1",serial_no="x""#;
        assert!(Authorization::parse(good).is_some());
        assert!(Authorization::parse(&good.replace("RSA2048", "RSA1024")).is_none());
        assert!(Authorization::parse(&good.replace(r#",serial_no="x""#, "")).is_none());
        assert!(Authorization::parse(&good.replace(r#"serial_no="x""#, r#"mchid="2""#)).is_none());
        assert!(Authorization::parse(&good.replace(r#"mchid="1""#, "mchid=1")).is_none());
    }

    /// The ciphertext of `PLAIN` under [`API_V3_KEY`], nonce `abcdefghijkl`, associated data
    /// `transaction`, made by Python's `cryptography` (AESGCM), tag appended.
    const SEALED: &str = "Eu6myr+6GaECeJdOZPZ6BX4DjS6LsFprLo4OrOJs/tpd6ozeWiaTxy8l49Rv5+L/pHfv4fgdM6iN3TJSt7GplG9RSu7tJjPXzcwh";
    const PLAIN: &str = r#"{"out_trade_no":"2612050000000001","trade_state":"SUCCESS"}"#;

    #[test]
    fn aes_gcm_matches_the_known_vector_and_refuses_any_tampering() {
        let key = ApiV3Key::new(API_V3_KEY).unwrap();
        assert_eq!(key.decrypt("abcdefghijkl", "transaction", SEALED).unwrap(), PLAIN.as_bytes());
        assert_eq!(key.encrypt("abcdefghijkl", "transaction", PLAIN.as_bytes()).unwrap(), SEALED);
        let sealed = openssl::base64::decode_block(SEALED).unwrap();
        for at in [0, sealed.len() / 2, sealed.len() - 1] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 1;
            let tampered = openssl::base64::encode_block(&tampered);
            assert!(key.decrypt("abcdefghijkl", "transaction", &tampered).is_none(), "byte {at}");
        }
        assert!(key.decrypt("abcdefghijkm", "transaction", SEALED).is_none(), "another nonce");
        assert!(key.decrypt("abcdefghijkl", "refund", SEALED).is_none(), "other associated data");
        let other = ApiV3Key::new(b"0123456789abcdef0123456789abcdeX").unwrap();
        assert!(other.decrypt("abcdefghijkl", "transaction", SEALED).is_none(), "another key");
        assert!(key.decrypt("abcdefghijkl", "transaction", "AAAA").is_none(), "shorter than a tag");
        assert!(ApiV3Key::new(b"short").is_none());
    }

    #[test]
    fn times_are_rfc3339_in_china_time() {
        let utc = NaiveDateTime::parse_from_str("2026-12-04 16:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(format_time(utc), "2026-12-05T00:30:00+08:00");
        assert_eq!(parse_time("2026-12-05T00:30:00+08:00"), Some(utc));
        assert_eq!(parse_time("2026-12-04T16:30:00Z"), Some(utc));
        assert_eq!(parse_time("2026-12-05 00:30:00"), None);
    }

    /// The client and the platform's private key, as the sandbox holds it.
    fn client() -> (WechatPayClient, PKey<Private>) {
        let platform = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let client = WechatPayClient {
            mch_id: MCH_ID.into(),
            app_id: APP_ID.into(),
            serial_no: "5157F09EFDC096DE15EBE81A47057A7232F1B8E1".into(),
            platform_key_id: PLATFORM_KEY_ID.into(),
            api_base_url: "http://127.0.0.1:9/sandbox/wechatpay".into(),
            notify_url: "http://127.0.0.1:9/api/v1/wechat_pay/notify".into(),
            merchant_key: test_key(),
            platform_key: public_half(&platform),
            api_v3_key: ApiV3Key::new(API_V3_KEY).unwrap(),
            agent: http_agent(Duration::from_secs(1)),
        };
        (client, platform)
    }

    fn transaction() -> serde_json::Value {
        serde_json::json!({
            "mchid": MCH_ID, "appid": APP_ID, "out_trade_no": "2612050000000001",
            "transaction_id": "4200002612050000000001", "trade_type": "NATIVE", "trade_state": "SUCCESS",
            "trade_state_desc": "支付成功", "success_time": "2026-12-05T08:00:00+08:00",
            "amount": { "total": 168, "payer_total": 168, "currency": "CNY", "payer_currency": "CNY" },
            "payer": { "openid": "o-sandbox-shopper" },
        })
    }

    /// A notification as WeChat Pay sends it: the resource encrypted, the body signed.
    fn notification(
        platform: &PKey<Private>,
        event: &str,
        kind: &str,
        resource: &serde_json::Value,
    ) -> (SignedHeaders, String) {
        let key = ApiV3Key::new(API_V3_KEY).unwrap();
        let ciphertext = key.encrypt("0123456789ab", kind, resource.to_string().as_bytes()).unwrap();
        let body = serde_json::json!({
            "id": "EV-2018022511223320873", "create_time": "2026-12-05T08:00:01+08:00",
            "resource_type": "encrypt-resource", "event_type": event, "summary": "支付成功",
            "resource": { "original_type": kind, "algorithm": "AEAD_AES_256_GCM", "ciphertext": ciphertext,
                "associated_data": kind, "nonce": "0123456789ab" },
        })
        .to_string();
        (SignedHeaders::sign(platform, PLATFORM_KEY_ID, NOW, "5K8264ILTKCH16CQ2502SI8ZNMTM67VS", &body), body)
    }

    #[test]
    fn a_signed_notification_decrypts_to_the_transaction_the_shop_acts_on() {
        let (client, platform) = client();
        let (headers, body) = notification(&platform, "TRANSACTION.SUCCESS", "transaction", &transaction());
        let verified = client.verify_notification_at(&headers, &body, NOW + 10).unwrap();
        assert_eq!(verified.event_type, "TRANSACTION.SUCCESS");
        let WxNotice::Transaction(trade) = verified.notice else { panic!("a transaction") };
        assert_eq!(trade.out_trade_no, "2612050000000001");
        assert_eq!((trade.amount.total, trade.trade_state.as_str()), (168, "SUCCESS"));
        assert_eq!(trade.payer.unwrap().openid, "o-sandbox-shopper");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&verified.plaintext).unwrap(), transaction());
    }

    #[test]
    fn a_refund_notification_carries_the_refund() {
        let (client, platform) = client();
        let refund = serde_json::json!({
            "mchid": MCH_ID, "out_trade_no": "2612050000000001", "transaction_id": "4200002612050000000001",
            "out_refund_no": "R2612050000000001", "refund_id": "50000000382019052709732678859",
            "refund_status": "SUCCESS", "success_time": "2026-12-05T09:00:00+08:00",
            "user_received_account": "支付用户零钱",
            "amount": { "total": 168, "refund": 168, "payer_total": 168, "payer_refund": 168 },
        });
        let (headers, body) = notification(&platform, "REFUND.SUCCESS", "refund", &refund);
        let verified = client.verify_notification_at(&headers, &body, NOW).unwrap();
        let WxNotice::Refund(notice) = verified.notice else { panic!("a refund") };
        assert_eq!((notice.out_refund_no.as_str(), notice.amount.refund), ("R2612050000000001", 168));
        assert_eq!(RefundStatus::parse(&notice.refund_status), Some(RefundStatus::Success));

        let mut theirs = refund.clone();
        theirs["mchid"] = "1900000002".into();
        let (headers, body) = notification(&platform, "REFUND.SUCCESS", "refund", &theirs);
        let refused = client.verify_notification_at(&headers, &body, NOW).unwrap_err();
        assert_eq!(refused.reason, "mchid 1900000002 is not ours");
    }

    #[test]
    fn a_notification_is_refused_for_each_thing_wrong_with_it() {
        let (client, platform) = client();
        let refused = |headers: &SignedHeaders, body: &str| {
            client.verify_notification_at(headers, body, NOW).unwrap_err().reason
        };
        let (headers, body) = notification(&platform, "TRANSACTION.SUCCESS", "transaction", &transaction());

        let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let forged = SignedHeaders::sign(&other, PLATFORM_KEY_ID, NOW, &headers.nonce, &body);
        assert_eq!(refused(&forged, &body), "bad signature");
        assert_eq!(
            refused(&headers, &body.replace("TRANSACTION.SUCCESS", "TRANSACTION.SUCCESS ")),
            "bad signature"
        );
        let mut renonced = headers.clone();
        renonced.nonce.push('x');
        assert_eq!(refused(&renonced, &body), "bad signature");

        let stale = SignedHeaders::sign(&platform, PLATFORM_KEY_ID, NOW - 301, &headers.nonce, &body);
        assert!(refused(&stale, &body).starts_with("stale timestamp"));
        let early = SignedHeaders::sign(&platform, PLATFORM_KEY_ID, NOW + 301, &headers.nonce, &body);
        assert!(refused(&early, &body).starts_with("stale timestamp"));
        assert!(client.verify_notification_at(&stale, &body, NOW - 1).is_ok(), "within five minutes");

        let unknown = SignedHeaders::sign(&platform, "PUB_KEY_ID_0000", NOW, &headers.nonce, &body);
        assert_eq!(refused(&unknown, &body), "unknown serial PUB_KEY_ID_0000");

        for (field, value, reason) in [
            ("mchid", "1900000002", "mchid 1900000002 is not ours"),
            ("appid", "wx0000000000000002", "appid wx0000000000000002 is not ours"),
        ] {
            let mut theirs = transaction();
            theirs[field] = value.into();
            let (headers, body) = notification(&platform, "TRANSACTION.SUCCESS", "transaction", &theirs);
            let refused = client.verify_notification_at(&headers, &body, NOW).unwrap_err();
            assert_eq!(refused.reason, reason);
            assert!(refused.plaintext.is_some(), "kept for the audit row");
        }

        // A tampered ciphertext, signed again: the signature holds, the decryption does not.
        let mut envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut sealed =
            openssl::base64::decode_block(envelope["resource"]["ciphertext"].as_str().unwrap()).unwrap();
        sealed[3] ^= 0x20;
        envelope["resource"]["ciphertext"] = openssl::base64::encode_block(&sealed).into();
        let tampered = envelope.to_string();
        let resigned = SignedHeaders::sign(&platform, PLATFORM_KEY_ID, NOW, "n", &tampered);
        assert_eq!(refused(&resigned, &tampered), "the resource does not decrypt under the APIv3 key");

        let mut wrong_key = client;
        wrong_key.api_v3_key = ApiV3Key::new(b"fedcba9876543210fedcba9876543210").unwrap();
        let refused = wrong_key.verify_notification_at(&headers, &body, NOW).unwrap_err();
        assert_eq!(refused.reason, "the resource does not decrypt under the APIv3 key");
    }

    #[test]
    fn an_event_that_does_not_match_its_resource_is_refused() {
        let (client, platform) = client();
        let (headers, body) = notification(&platform, "REFUND.SUCCESS", "transaction", &transaction());
        let refused = client.verify_notification_at(&headers, &body, NOW).unwrap_err();
        assert_eq!(refused.reason, "unknown event REFUND.SUCCESS of a transaction");
    }

    #[test]
    fn jsapi_pay_params_are_signed_over_app_id_time_stamp_nonce_and_package() {
        let (client, _) = client();
        let params = client.jsapi_pay_params_at(
            "wx201410272009395522657a690389285100",
            NOW,
            "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        );
        assert_eq!(params.package, "prepay_id=wx201410272009395522657a690389285100");
        assert_eq!((params.sign_type.as_str(), params.time_stamp.as_str()), ("RSA", "1764892800"));
        let message = "wx0000000000000001\n1764892800\n5K8264ILTKCH16CQ2502SI8ZNMTM67VS\nprepay_id=wx201410272009395522657a690389285100\n";
        assert_eq!(
            jsapi_message(&params.app_id, &params.time_stamp, &params.nonce_str, &params.package),
            message
        );
        assert!(public_half(&test_key()).verify(message, &params.pay_sign));
        let json = serde_json::to_value(&params).unwrap();
        for name in ["appId", "timeStamp", "nonceStr", "package", "signType", "paySign"] {
            assert!(json.get(name).is_some(), "{name}");
        }
    }

    #[test]
    fn the_signed_path_is_the_url_without_its_origin() {
        assert_eq!(
            path_of("https://api.mch.weixin.qq.com/v3/pay/transactions/out-trade-no/1?mchid=2"),
            "/v3/pay/transactions/out-trade-no/1?mchid=2"
        );
        assert_eq!(
            path_of("http://127.0.0.1:8080/sandbox/wechatpay/v3/refund/domestic/refunds"),
            "/sandbox/wechatpay/v3/refund/domestic/refunds"
        );
    }
}
