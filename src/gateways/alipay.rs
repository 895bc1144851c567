//! Alipay OpenAPI (RSA2): the signed payment forms (PC page and phone), notification verification, and the
//! server-to-server calls `alipay.trade.query`, `.close` and `.refund`, whose answers are
//! verified over the raw text of their `*_response` object. Facts: shared/PROTOCOLS.md.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::NaiveDateTime;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::pkey::{PKey, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use serde::Deserialize;

use super::channel::{CloseOutcome, GatewayOp, PaymentGateway, RefundRequest, TradeState};
use super::{GatewayError, counted, http_agent};
use crate::china_time;
use crate::config::Settings;
use crate::log_escape::Untrusted;
use crate::models::order::Channel;
use crate::money::{format_yuan, parse_yuan};

const PLATFORM: &str = "Alipay";

/// Parameters are signed as `k=v&...` over sorted keys, leaving out empty values and `exclude`.
pub fn signing_content<'a>(params: impl IntoIterator<Item = (&'a str, &'a str)>, exclude: &[&str]) -> String {
    let sorted: BTreeMap<&str, &str> = params.into_iter().filter(|(k, v)| is_signed(k, v, exclude)).collect();
    joined(sorted.iter().map(|(k, v)| (*k, *v)))
}

fn is_signed(key: &str, value: &str, exclude: &[&str]) -> bool {
    !value.is_empty() && !exclude.contains(&key)
}

/// `k=v&...` of pairs already in the order of their keys, written into one string: a
/// notification has about 16 pairs, each once a string of its own.
fn joined<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)> + Clone) -> String {
    let mut content = String::with_capacity(pairs.clone().map(|(k, v)| k.len() + v.len() + 2).sum());
    for (k, v) in pairs {
        if !content.is_empty() {
            content.push('&');
        }
        content.extend([k, "=", v]);
    }
    content
}

/// What the signature of a notification or a return redirect leaves out.
const NOTIFY_UNSIGNED: [&str; 2] = ["sign", "sign_type"];

/// Appends `sign`: the signature of every pair in `params` but `exclude` (see
/// [`signing_content`]). A merchant's request is signed with nothing excluded.
pub fn append_sign<K>(key: &PKey<Private>, params: &mut Vec<(K, String)>, exclude: &[&str])
where
    K: AsRef<str> + From<&'static str>,
{
    let content = signing_content(params.iter().map(|(k, v)| (k.as_ref(), v.as_str())), exclude);
    params.push(("sign".into(), sign(key, &content)));
}

/// Signs `params` as Alipay signs a notification or a return redirect: appends `sign`, over
/// every pair already there, and `sign_type`.
pub fn sign_notification<K>(key: &PKey<Private>, params: &mut Vec<(K, String)>)
where
    K: AsRef<str> + From<&'static str>,
{
    append_sign(key, params, &NOTIFY_UNSIGNED);
    params.push(("sign_type".into(), "RSA2".to_owned()));
}

/// Whether `params` carry in `sign` the signature by `key` of every other pair: a merchant's
/// request as Alipay checks it.
pub fn verify_request(key: &VerifyingKey, params: &[(String, String)]) -> bool {
    let signature = params.iter().find(|(k, _)| k == "sign").map_or("", |(_, v)| v.as_str());
    key.verify(&signing_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), &["sign"]), signature)
}

/// The key of an OpenAPI answer's object: `alipay.trade.query` answers under
/// `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// SHA256withRSA, standard Base64.
pub fn sign(key: &PKey<Private>, content: &str) -> String {
    let mut signer = Signer::new(MessageDigest::sha256(), key).expect("RSA-SHA256 signer");
    signer.update(content.as_bytes()).expect("signer update");
    openssl::base64::encode_block(&signer.sign_to_vec().expect("RSA signature"))
}

/// Alipay's public key, checking SHA256withRSA (RSA2) signatures in standard Base64. Setting up
/// an OpenSSL verification context looks the algorithm up again each time, at about a tenth of
/// the check's own cost, so contexts are set up once and kept, one for each check running at
/// once (docs/PERFORMANCE.md, "Verification contexts kept").
pub struct VerifyingKey {
    key: PKey<Public>,
    idle: Mutex<Vec<PkeyCtx<Public>>>,
}

impl VerifyingKey {
    pub fn new(key: PKey<Public>) -> VerifyingKey {
        VerifyingKey { key, idle: Mutex::new(Vec::new()) }
    }

    /// Whether `signature_b64` is this key's signature of `content`.
    pub fn verify(&self, content: &str, signature_b64: &str) -> bool {
        let Ok(signature) = openssl::base64::decode_block(signature_b64.trim()) else { return false };
        let digest = openssl::sha::sha256(content.as_bytes());
        let kept = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let Some(mut context) = kept.map_or_else(|| self.context().ok(), Some) else { return false };
        match context.verify(&digest, &signature) {
            Ok(valid) => {
                self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(context);
                valid
            }
            // A context that failed is not trusted again.
            Err(_) => false,
        }
    }

    fn context(&self) -> Result<PkeyCtx<Public>, ErrorStack> {
        let mut context = PkeyCtx::new(&self.key)?;
        context.verify_init()?;
        context.set_rsa_padding(Padding::PKCS1)?;
        context.set_signature_md(Md::sha256())?;
        Ok(context)
    }
}

/// The raw text of the object under `root_key` in an OpenAPI answer, exactly as received: the
/// signature covers these bytes, so they are never re-serialised. The end is found by counting
/// braces outside string literals.
pub fn signed_object<'a>(body: &'a str, root_key: &str) -> Option<&'a str> {
    let key_at = body.find(&format!("\"{root_key}\""))?;
    let after_key = &body[key_at + root_key.len() + 2..];
    let start = key_at + root_key.len() + 2 + after_key.find('{')?;
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (i, ch) in body[start..].char_indices() {
        match ch {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            '{' if !in_string => depth += 1,
            '}' if !in_string => {
                depth -= 1;
                if depth == 0 {
                    return Some(&body[start..start + i + 1]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {}: {source}", .path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{} is not an RSA {kind} key in PEM: {source}", .path.display())]
    NotPem { path: PathBuf, kind: &'static str, source: ErrorStack },
}

/// A key file that an `alipay.*` setting names and that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("alipay.{setting}: {source}")]
pub struct SettingKeyError {
    pub setting: &'static str,
    pub source: KeyError,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Unreadable { path: path.to_owned(), source })
}

/// A private key in PKCS#8 or PKCS#1 PEM.
pub fn load_private_key(path: &Path) -> Result<PKey<Private>, KeyError> {
    let pem = read_pem(path)?;
    PKey::private_key_from_pem(&pem)
        .or_else(|_| Rsa::private_key_from_pem(&pem).and_then(PKey::from_rsa))
        .map_err(|source| KeyError::NotPem { path: path.to_owned(), kind: "private", source })
}

/// A public key in SubjectPublicKeyInfo or PKCS#1 PEM.
pub fn load_public_key(path: &Path) -> Result<PKey<Public>, KeyError> {
    let pem = read_pem(path)?;
    Rsa::public_key_from_pem(&pem)
        .or_else(|_| Rsa::public_key_from_pem_pkcs1(&pem))
        .and_then(PKey::from_rsa)
        .map_err(|source| KeyError::NotPem { path: path.to_owned(), kind: "public", source })
}

/// An asynchronous notification's form with every key once. A key sent twice is refused
/// outright: the signature check and the payment must read one and the same value.
#[derive(Debug, Clone)]
pub struct NotifyForm(BTreeMap<String, String>);

/// Why a notification is not acted on; the form when it could be read (for the audit row).
#[derive(Debug)]
pub struct Refused {
    pub form: Option<NotifyForm>,
    pub reason: String,
}

/// The fields the shop acts on. Alipay signs `k=v&...` without escaping, so the same signed
/// text splits into other fields when a value holds `&` or `=` (`out_trade_no=A%26x%3D1` reads
/// as `out_trade_no=A&x=1`): these fields never hold either, and no key does.
const ACTED_ON: [&str; 8] = [
    "app_id",
    "seller_id",
    "notify_id",
    "out_trade_no",
    "trade_no",
    "trade_status",
    "total_amount",
    "gmt_payment",
];

impl NotifyForm {
    /// Parses `application/x-www-form-urlencoded` text; a field whose bytes are not UTF-8 is
    /// refused rather than read with replacement characters.
    pub fn parse(body: &str) -> Result<NotifyForm, Refused> {
        let refuse = |reason: String| Refused { form: None, reason };
        let mut fields = BTreeMap::new();
        for pair in body.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(key), Some(value)) = (form_decoded(key), form_decoded(value)) else {
                return Err(refuse(format!("field {} is not UTF-8", Untrusted(key))));
            };
            if key.contains(['&', '=']) || (ACTED_ON.contains(&&*key) && value.contains(['&', '='])) {
                return Err(refuse(format!("field {} holds '&' or '='", Untrusted(&key))));
            }
            match fields.entry(key.into_owned()) {
                Entry::Occupied(repeated) => {
                    return Err(refuse(format!("field {} repeated", Untrusted(repeated.key()))));
                }
                Entry::Vacant(field) => field.insert(value.into_owned()),
            };
        }
        Ok(NotifyForm(fields))
    }

    pub fn field(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn fields(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// What Alipay signs of a notification: every field but `sign` and `sign_type` (the form
    /// keeps its fields in the order of their keys already).
    pub fn signing_content(&self) -> String {
        joined(self.fields().filter(|(k, v)| is_signed(k, v, &NOTIFY_UNSIGNED)))
    }
}

/// One name or value of a form: `+` is a space and `%XX` a byte; `None` when the bytes are not
/// UTF-8. Most of a notification's fields need no decoding and are borrowed as they are.
fn form_decoded(text: &str) -> Option<Cow<'_, str>> {
    if !text.contains(['+', '%']) {
        return Some(Cow::Borrowed(text));
    }
    let spaced = text.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced).decode_utf8().ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

/// A notification signed by Alipay for our app and seller: built only by
/// [`AlipayClient::verify_notification`], read only through the fields its signature covers.
#[derive(Debug)]
pub struct VerifiedNotification(NotifyForm);

impl VerifiedNotification {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.0.field(name)
    }
}

/// What a payment form is for.
pub struct PagePay<'a> {
    pub out_trade_no: &'a str,
    pub total_cents: i64,
    pub subject: &'a str,
    /// The product bought: the phone cashier's `quit_url` is its page.
    pub product_id: &'a str,
    pub time_expire: NaiveDateTime,
}

/// Which of Alipay's cashiers a payment form opens: the computer's (`alipay.trade.page.pay`) or
/// the phone browser's (手机网站支付, `alipay.trade.wap.pay`). Each method takes its own
/// `product_code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cashier {
    Page,
    Wap,
}

impl Cashier {
    pub fn method(self) -> &'static str {
        match self {
            Cashier::Page => "alipay.trade.page.pay",
            Cashier::Wap => "alipay.trade.wap.pay",
        }
    }

    pub fn product_code(self) -> &'static str {
        match self {
            Cashier::Page => "FAST_INSTANT_TRADE_PAY",
            Cashier::Wap => "QUICK_WAP_WAY",
        }
    }

    /// The cashier of a payment method; `None` for any other method.
    pub fn of_method(method: &str) -> Option<Cashier> {
        [Cashier::Page, Cashier::Wap].into_iter().find(|cashier| cashier.method() == method)
    }
}

#[derive(Debug, Deserialize)]
struct OpenApiAnswer {
    code: String,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    sub_code: String,
    #[serde(default)]
    sub_msg: String,
    #[serde(default)]
    trade_status: String,
    #[serde(default)]
    trade_no: String,
    #[serde(default)]
    total_amount: String,
    #[serde(default)]
    send_pay_date: String,
}

pub struct AlipayClient {
    pub app_id: String,
    pub seller_id: String,
    gateway_url: String,
    notify_url: String,
    return_url: String,
    /// `<public_url>/products/`: a product's page, where the phone cashier's 退出 leads.
    product_pages: String,
    merchant_key: PKey<Private>,
    alipay_key: VerifyingKey,
    agent: ureq::Agent,
}

impl AlipayClient {
    /// A 32-byte secret for `purpose` (the shop's own signed links), derived from the merchant
    /// key: every instance holding the key derives the same, and no one without it can.
    pub fn derived_secret(&self, purpose: &str) -> Option<[u8; 32]> {
        let der = self.merchant_key.private_key_to_der().ok()?;
        let mut hasher = openssl::sha::Sha256::new();
        hasher.update(b"paymall-derived|");
        hasher.update(purpose.as_bytes());
        hasher.update(b"|");
        hasher.update(&der);
        Some(hasher.finish())
    }

    pub fn from_settings(settings: &Settings) -> Result<AlipayClient, SettingKeyError> {
        let alipay = &settings.alipay;
        Ok(AlipayClient {
            app_id: alipay.app_id.clone(),
            seller_id: alipay.seller_id.clone(),
            gateway_url: alipay.gateway_url.clone(),
            notify_url: alipay.notify_url.clone(),
            return_url: alipay.return_url.clone(),
            product_pages: format!("{}/products/", settings.server.public_url.trim_end_matches('/')),
            merchant_key: load_private_key(&alipay.merchant_private_key_path)
                .map_err(|source| SettingKeyError { setting: "merchant_private_key_path", source })?,
            alipay_key: VerifyingKey::new(
                load_public_key(&alipay.alipay_public_key_path)
                    .map_err(|source| SettingKeyError { setting: "alipay_public_key_path", source })?,
            ),
            agent: http_agent(Duration::from_secs(10)),
        })
    }

    fn common_params(
        &self,
        method: &str,
        biz_content: String,
        now: NaiveDateTime,
    ) -> Vec<(&'static str, String)> {
        vec![
            ("app_id", self.app_id.clone()),
            ("method", method.to_owned()),
            ("format", "JSON".to_owned()),
            ("charset", "utf-8".to_owned()),
            ("sign_type", "RSA2".to_owned()),
            ("timestamp", china_time::format(now)),
            ("version", "1.0".to_owned()),
            ("notify_url", self.notify_url.clone()),
            ("biz_content", biz_content),
        ]
    }

    fn signed(&self, mut params: Vec<(&'static str, String)>) -> Vec<(&'static str, String)> {
        append_sign(&self.merchant_key, &mut params, &[]);
        params
    }

    /// The HTML form the browser submits to the cashier (what Alipay's SDK returns, without its
    /// inline script: `public/js/checkout.js` submits the form named `punchout_form`; the form is
    /// `#alipay-form`, its button `#alipay-submit`). The phone cashier also takes `quit_url`, the
    /// product's page.
    pub fn pay_form(&self, order: &PagePay, cashier: Cashier, now: NaiveDateTime) -> String {
        let mut biz = serde_json::json!({
            "out_trade_no": order.out_trade_no,
            "total_amount": format_yuan(order.total_cents),
            "subject": order.subject,
            "product_code": cashier.product_code(),
            "time_expire": china_time::format(order.time_expire),
        });
        if cashier == Cashier::Wap {
            let product =
                percent_encoding::utf8_percent_encode(order.product_id, percent_encoding::NON_ALPHANUMERIC);
            biz["quit_url"] = format!("{}{product}", self.product_pages).into();
        }
        let mut params = self.common_params(cashier.method(), biz.to_string(), now);
        params.push(("return_url", self.return_url.clone()));
        let params = self.signed(params);
        let query: Vec<(&str, &str)> =
            params.iter().filter(|(k, _)| *k != "biz_content").map(|(k, v)| (*k, v.as_str())).collect();
        let action =
            format!("{}?{}", self.gateway_url, serde_urlencoded::to_string(&query).unwrap_or_default());
        let biz_content =
            params.iter().find(|(k, _)| *k == "biz_content").map(|(_, v)| v.as_str()).unwrap_or("");
        format!(
            "<form name=\"punchout_form\" id=\"alipay-form\" method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"biz_content\" value=\"{}\">\n<button type=\"submit\" class=\"button primary\" id=\"alipay-submit\">Continue to Alipay</button>\n</form>",
            html_escape(&action),
            html_escape(biz_content)
        )
    }

    /// rsaCheckV1 over the form's fields (every one but `sign` and `sign_type`) with Alipay's
    /// public key, then `app_id` and `seller_id` against ours. The verified notification holds
    /// the very fields the signature covered, and nothing else can build one.
    pub fn verify_notification(&self, form: NotifyForm) -> Result<VerifiedNotification, Refused> {
        let refuse = |form: NotifyForm, reason: String| Err(Refused { form: Some(form), reason });
        let Some(signature) = form.field("sign") else { return refuse(form, "missing signature".into()) };
        if !self.alipay_key.verify(&form.signing_content(), signature) {
            return refuse(form, "bad signature".into());
        }
        if form.field("app_id") != Some(self.app_id.as_str()) {
            let reason =
                format!("app_id {} is not ours", Untrusted(form.field("app_id").unwrap_or("(none)")));
            return refuse(form, reason);
        }
        if form.field("seller_id") != Some(self.seller_id.as_str()) {
            let reason =
                format!("seller_id {} is not ours", Untrusted(form.field("seller_id").unwrap_or("(none)")));
            return refuse(form, reason);
        }
        // Other texts Alipay signs (the return_url's parameters the buyer's browser receives)
        // are not notifications.
        let notification = form.field("notify_type") == Some("trade_status_sync")
            && form.field("notify_id").is_some_and(|id| !id.is_empty());
        if !notification {
            return refuse(form, "not an asynchronous notification".into());
        }
        Ok(VerifiedNotification(form))
    }

    /// Calls an OpenAPI method and returns its verified inner object.
    fn call(
        &self,
        method: &str,
        biz: serde_json::Value,
        now: NaiveDateTime,
    ) -> Result<OpenApiAnswer, GatewayError> {
        let params = self.signed(self.common_params(method, biz.to_string(), now));
        let query: Vec<(&str, &str)> =
            params.iter().filter(|(k, _)| *k != "biz_content").map(|(k, v)| (*k, v.as_str())).collect();
        let url = format!("{}?{}", self.gateway_url, serde_urlencoded::to_string(&query).unwrap_or_default());
        let biz_content =
            params.iter().find(|(k, _)| *k == "biz_content").map(|(_, v)| v.clone()).unwrap_or_default();
        let unreachable =
            |e: ureq::Error| GatewayError::Unreachable { platform: PLATFORM, reason: e.to_string() };
        let mut response =
            self.agent.post(&url).send_form([("biz_content", biz_content.as_str())]).map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        let bad = |reason: String| GatewayError::BadAnswer { platform: PLATFORM, reason };
        if status != 200 {
            return Err(bad(format!("HTTP {status} from {method}")));
        }
        let root = response_key(method);
        let inner = signed_object(&body, &root)
            .or_else(|| signed_object(&body, "error_response"))
            .ok_or_else(|| bad(format!("no {root} in the answer")))?;
        let answer: OpenApiAnswer =
            serde_json::from_str(inner).map_err(|e| bad(format!("malformed {root}: {e}")))?;
        let envelope: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
        let signature = envelope.get("sign").and_then(|s| s.as_str()).unwrap_or("");
        if !self.alipay_key.verify(inner, signature) {
            // Gateway-level errors may come unsigned; they are failures either way.
            return Err(if answer.code == "10000" {
                bad(format!("{method} answer has a bad signature"))
            } else {
                refused(&answer)
            });
        }
        Ok(answer)
    }
}

impl PaymentGateway for AlipayClient {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    fn call_name(&self, op: GatewayOp) -> &'static str {
        match op {
            GatewayOp::Query => "alipay.trade.query",
            GatewayOp::Close => "alipay.trade.close",
            GatewayOp::Refund => "alipay.trade.refund",
        }
    }

    fn query(&self, out_trade_no: &str) -> Result<TradeState, GatewayError> {
        let method = self.call_name(GatewayOp::Query);
        let answered = self.call(method, serde_json::json!({ "out_trade_no": out_trade_no }), utc_now());
        counted(Some(Channel::Alipay), method, answered.and_then(trade_state))
    }

    fn close(&self, out_trade_no: &str) -> Result<CloseOutcome, GatewayError> {
        let method = self.call_name(GatewayOp::Close);
        let answered = self.call(method, serde_json::json!({ "out_trade_no": out_trade_no }), utc_now());
        let closed = answered.and_then(|answer| match (answer.code.as_str(), answer.sub_code.as_str()) {
            ("10000", _) => Ok(CloseOutcome::Closed),
            ("40004", "ACQ.TRADE_NOT_EXIST") => Ok(CloseOutcome::NotExist),
            ("40004", "ACQ.TRADE_STATUS_ERROR") => Ok(CloseOutcome::NotWaiting),
            _ => Err(refused(&answer)),
        });
        counted(Some(Channel::Alipay), method, closed)
    }

    /// `alipay.trade.refund` under `out_request_no` = the request's number; a refund beyond the
    /// trade's total is refused here, uncounted, before Alipay would refuse it.
    fn refund(&self, request: &RefundRequest) -> Result<(), GatewayError> {
        let method = self.call_name(GatewayOp::Refund);
        if request.amount_cents > request.total_cents {
            let message = format!(
                "refund {} exceeds the trade's {}; not sent",
                format_yuan(request.amount_cents),
                format_yuan(request.total_cents)
            );
            return Err(GatewayError::Refused {
                platform: PLATFORM,
                code: "REFUND_EXCEEDS_TOTAL".into(),
                message,
            });
        }
        let mut biz = serde_json::json!({
            "out_trade_no": request.out_trade_no,
            "refund_amount": format_yuan(request.amount_cents),
            "out_request_no": request.request_no,
            "refund_reason": request.reason,
        });
        if let Some(trade_no) = request.trade_no {
            biz["trade_no"] = trade_no.into();
        }
        let answered = self.call(method, biz, utc_now());
        counted(
            Some(Channel::Alipay),
            method,
            answered.and_then(|a| if a.code == "10000" { Ok(()) } else { Err(refused(&a)) }),
        )
    }
}

/// What a signed `alipay.trade.query` answer says of the trade. The amount is read strictly
/// ([`parse_yuan`]): a paid answer whose `total_amount` is not an amount is a bad answer, never
/// a payment.
fn trade_state(answer: OpenApiAnswer) -> Result<TradeState, GatewayError> {
    let bad = |reason: String| GatewayError::BadAnswer { platform: PLATFORM, reason };
    match (answer.code.as_str(), answer.sub_code.as_str()) {
        ("10000", _) => match answer.trade_status.as_str() {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => {
                let Some(amount_cents) = parse_yuan(&answer.total_amount) else {
                    return Err(bad(format!("malformed total_amount {:?}", answer.total_amount)));
                };
                Ok(TradeState::Paid {
                    trade_no: answer.trade_no,
                    amount_cents,
                    paid_at: china_time::parse(&answer.send_pay_date),
                })
            }
            "WAIT_BUYER_PAY" => Ok(TradeState::Waiting),
            "TRADE_CLOSED" => Ok(TradeState::Closed),
            other => Err(bad(format!("unknown trade_status {other:?}"))),
        },
        ("40004", "ACQ.TRADE_NOT_EXIST") => Ok(TradeState::NotExist),
        _ => Err(refused(&answer)),
    }
}

/// The time of a request, as the models store it (UTC without a zone).
fn utc_now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

fn refused(answer: &OpenApiAnswer) -> GatewayError {
    let code = if answer.sub_code.is_empty() {
        answer.code.clone()
    } else {
        format!("{}/{}", answer.code, answer.sub_code)
    };
    let message = if answer.sub_msg.is_empty() { answer.msg.clone() } else { answer.sub_msg.clone() };
    GatewayError::Refused { platform: PLATFORM, code, message }
}

pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_object_is_the_raw_inner_text() {
        let body = r#"{"alipay_trade_query_response":{"code":"10000","msg":"a \"}\" {brace}","n":{"x":1}},"sign":"abc"}"#;
        assert_eq!(
            signed_object(body, "alipay_trade_query_response"),
            Some(r#"{"code":"10000","msg":"a \"}\" {brace}","n":{"x":1}}"#)
        );
        assert_eq!(signed_object(body, "alipay_trade_close_response"), None);
    }

    #[test]
    fn verify_takes_only_a_sha256_rsa_signature_of_the_content_by_the_key() {
        let private = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let public =
            VerifyingKey::new(PKey::public_key_from_pem(&private.public_key_to_pem().unwrap()).unwrap());
        let content = "out_trade_no=2612010000000100&total_amount=9.90";
        let signature = sign(&private, content);
        assert!(public.verify(content, &signature));
        assert!(!public.verify("out_trade_no=2612010000000100&total_amount=0.01", &signature));
        let mut bytes = openssl::base64::decode_block(&signature).unwrap();
        bytes[100] ^= 1;
        assert!(!public.verify(content, &openssl::base64::encode_block(&bytes)), "a flipped bit");
        let short = openssl::base64::encode_block(&openssl::base64::decode_block(&signature).unwrap()[1..]);
        assert!(!public.verify(content, &short), "a signature shorter than the key");
        assert!(!public.verify(content, "not base64!"));
        let other = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        assert!(!public.verify(content, &sign(&other, content)), "another key's signature");
        let mut sha1 = Signer::new(MessageDigest::sha1(), &private).unwrap();
        sha1.update(content.as_bytes()).unwrap();
        let sha1 = openssl::base64::encode_block(&sha1.sign_to_vec().unwrap());
        assert!(!public.verify(content, &sha1), "the key's signature over SHA-1, not SHA-256");
        assert!(public.verify(content, &signature), "the kept contexts check again after refusals");
    }

    #[test]
    fn signing_content_sorts_and_drops_empty_and_excluded() {
        let params = [("b", "2"), ("a", "1"), ("sign", "x"), ("sign_type", "RSA2"), ("c", "")];
        assert_eq!(signing_content(params, &["sign"]), "a=1&b=2&sign_type=RSA2");
        assert_eq!(signing_content(params, &["sign", "sign_type"]), "a=1&b=2");
    }

    #[test]
    fn requests_sign_every_pair_and_notifications_all_but_sign_type() {
        let private = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let public =
            VerifyingKey::new(PKey::public_key_from_pem(&private.public_key_to_pem().unwrap()).unwrap());
        let pairs =
            || vec![("app_id".to_owned(), "2021".to_owned()), ("out_trade_no".to_owned(), "1".to_owned())];
        let mut request = pairs();
        request.push(("sign_type".to_owned(), "RSA2".to_owned()));
        append_sign(&private, &mut request, &[]);
        assert!(verify_request(&public, &request));
        request[0].1 = "2022".to_owned();
        assert!(!verify_request(&public, &request), "a changed pair");

        let mut notification = pairs();
        sign_notification(&private, &mut notification);
        let form = NotifyForm::parse(&serde_urlencoded::to_string(&notification).unwrap()).unwrap();
        assert_eq!(form.field("sign_type"), Some("RSA2"));
        assert!(public.verify(&form.signing_content(), form.field("sign").unwrap()));
    }

    #[test]
    fn a_notification_form_with_a_repeated_key_is_refused() {
        let refused = NotifyForm::parse("out_trade_no=1&total_amount=9.90&out_trade_no=2").unwrap_err();
        assert_eq!(refused.reason, "field out_trade_no repeated");
        assert!(refused.form.is_none());
        let form = NotifyForm::parse("b=2&a=1&c=").unwrap();
        assert_eq!((form.field("a"), form.field("c"), form.field("d")), (Some("1"), Some(""), None));
    }

    #[test]
    fn a_form_decodes_plus_and_percent_and_refuses_bytes_that_are_not_utf8() {
        let form =
            NotifyForm::parse("gmt_payment=2026-12-04+10%3A00%3A00&subject=%E6%B5%8B%E8%AF%95&s%69gn=a%2Bb")
                .unwrap();
        assert_eq!(form.field("gmt_payment"), Some("2026-12-04 10:00:00"));
        assert_eq!(form.field("subject"), Some("测试"));
        assert_eq!(form.field("sign"), Some("a+b"));
        let refused = NotifyForm::parse("subject=%FF%FE").unwrap_err();
        assert_eq!(refused.reason, "field subject is not UTF-8");
        let twice = NotifyForm::parse("sign=a&s%69gn=b").unwrap_err();
        assert_eq!(twice.reason, "field sign repeated");
    }

    fn answer(json: &str) -> OpenApiAnswer {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_query_answer_maps_to_a_trade_state_in_cents() {
        let paid = answer(
            r#"{"code":"10000","msg":"Success","trade_status":"TRADE_SUCCESS","trade_no":"2026T1","total_amount":"89.90","send_pay_date":"2026-12-04 21:05:00"}"#,
        );
        assert_eq!(
            trade_state(paid).unwrap(),
            TradeState::Paid {
                trade_no: "2026T1".into(),
                amount_cents: 8990,
                paid_at: china_time::parse("2026-12-04 21:05:00"),
            }
        );
        let finished =
            answer(r#"{"code":"10000","trade_status":"TRADE_FINISHED","trade_no":"T","total_amount":"2"}"#);
        assert!(matches!(
            trade_state(finished),
            Ok(TradeState::Paid { amount_cents: 200, paid_at: None, .. })
        ));
        let waiting = answer(r#"{"code":"10000","trade_status":"WAIT_BUYER_PAY"}"#);
        assert_eq!(trade_state(waiting).unwrap(), TradeState::Waiting);
        let closed = answer(r#"{"code":"10000","trade_status":"TRADE_CLOSED"}"#);
        assert_eq!(trade_state(closed).unwrap(), TradeState::Closed);
        let missing = answer(r#"{"code":"40004","sub_code":"ACQ.TRADE_NOT_EXIST"}"#);
        assert_eq!(trade_state(missing).unwrap(), TradeState::NotExist);
        let refused = answer(r#"{"code":"40004","sub_code":"ACQ.SYSTEM_ERROR","sub_msg":"busy"}"#);
        assert!(matches!(trade_state(refused), Err(GatewayError::Refused { .. })));
        let unknown = answer(r#"{"code":"10000","trade_status":"TRADE_PENDING"}"#);
        assert!(matches!(trade_state(unknown), Err(GatewayError::BadAnswer { .. })));
    }

    #[test]
    fn a_paid_answer_with_a_malformed_amount_is_an_error_not_a_payment() {
        for amount in ["", "1.681", "-1.68", "1e2", " 1.68", "1,68", ".5", "abc"] {
            let paid = answer(&format!(
                r#"{{"code":"10000","trade_status":"TRADE_SUCCESS","trade_no":"T","total_amount":"{amount}"}}"#
            ));
            match trade_state(paid) {
                Err(GatewayError::BadAnswer { reason, .. }) => {
                    assert!(reason.starts_with("malformed total_amount"), "{amount:?}: {reason}")
                }
                other => panic!("{amount:?} read as {other:?}"),
            }
        }
    }

    #[test]
    fn a_refund_beyond_the_trades_total_is_refused_unsent() {
        let private = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let public = PKey::public_key_from_pem(&private.public_key_to_pem().unwrap()).unwrap();
        let client = AlipayClient {
            app_id: "2021".into(),
            seller_id: "2088".into(),
            // Nothing listens there: a request that were sent would come back unreachable.
            gateway_url: "http://127.0.0.1:9/gateway.do".into(),
            notify_url: String::new(),
            return_url: String::new(),
            product_pages: String::new(),
            merchant_key: private,
            alipay_key: VerifyingKey::new(public),
            agent: http_agent(Duration::from_millis(200)),
        };
        assert_eq!(client.channel(), Channel::Alipay);
        assert_eq!(client.call_name(GatewayOp::Refund), "alipay.trade.refund");
        let request = RefundRequest {
            out_trade_no: "2612050000000001",
            trade_no: Some("T1"),
            amount_cents: 169,
            total_cents: 168,
            request_no: "2612050000000001-R1",
            reason: "test",
        };
        match client.refund(&request) {
            Err(GatewayError::Refused { code, .. }) => assert_eq!(code, "REFUND_EXCEEDS_TOTAL"),
            other => panic!("{other:?}"),
        }
    }

    proptest::proptest! {
        /// Whatever the form, the signature and the payment read the same fields: a form parses
        /// to exactly its pairs when every key is unique, and is refused otherwise.
        #[test]
        fn a_form_parses_to_its_pairs_or_is_refused(pairs in proptest::collection::vec(("[a-z_]{1,3}", "\\PC{0,4}"), 0..8)) {
            let body = serde_urlencoded::to_string(&pairs).unwrap();
            let unique: BTreeMap<&str, &str> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            match NotifyForm::parse(&body) {
                Ok(form) => {
                    proptest::prop_assert_eq!(unique.len(), pairs.len());
                    let parsed: BTreeMap<&str, &str> = form.fields().collect();
                    proptest::prop_assert_eq!(parsed, unique);
                }
                Err(refused) => {
                    proptest::prop_assert!(unique.len() < pairs.len());
                    proptest::prop_assert!(refused.reason.ends_with(" repeated"));
                }
            }
        }

        #[test]
        fn any_body_parses_or_is_refused_without_panic(body in "\\PC{0,64}") {
            let _ = NotifyForm::parse(&body);
        }
    }
}
