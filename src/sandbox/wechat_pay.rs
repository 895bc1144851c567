//! WeChat Pay's side (API v3): Native and JSAPI orders, query, close, refund and refund query,
//! each request's `Authorization` verified with the merchant's public key and each answer signed
//! with the platform key (`Wechatpay-Serial` its id); a scan page for a `code_url` (pick a payer,
//! pay) and a stand-in for the WeChat browser's `getBrandWCPayRequest` that checks `paySign`;
//! AES-GCM-encrypted, signed payment and refund notifications resent until the shop answers
//! 2xx; a ledger and fault switches for tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use openssl::pkey::{PKey, Private};
use serde::{Deserialize, Serialize};

use super::alipay::{RESEND_AFTER_MS, SandboxKeyError, ensure_key_pair, write_pem};
use crate::config::{Secret, Settings};
use crate::gateways::alipay::{VerifyingKey, load_private_key, load_public_key};
use crate::gateways::http_agent;
use crate::gateways::wechat_pay::{
    AEAD_ALGORITHM, ApiV3Key, Authorization, JsapiPayParams, MAX_CLOCK_SKEW_SECS, SignedHeaders, WxAmount,
    WxPayer, WxRefundAmount, WxRefundNotice, WxTransaction, format_time, jsapi_message, parse_time,
    request_message,
};
use crate::i18n::Lang;
use crate::models::now;

/// The openids the scan page offers (any other can be typed in).
const SAMPLE_OPENIDS: [&str; 3] = ["o-sandbox-shopper", "o-sandbox-friend", "o-sandbox-newcomer"];

/// What a `code_url` starts with; the rest is the scan token.
const CODE_URL_PREFIX: &str = "weixin://wxpay/bizpayurl?pr=";

/// Where the sandbox keeps its halves of the key pairs and the APIv3 key: the merchant's public
/// key, the platform's private key, the APIv3 key (next to the merchant key).
pub fn sandbox_key_paths(settings: &Settings) -> (PathBuf, PathBuf, PathBuf) {
    let wx = &settings.wechat_pay;
    (
        wx.merchant_private_key_path.with_file_name("sandbox_wechat_pay_merchant_public_key.pem"),
        wx.platform_public_key_path.with_file_name("sandbox_wechat_pay_platform_private_key.pem"),
        wx.merchant_private_key_path.with_file_name("wechat_pay_api_v3_key"),
    )
}

/// Generates the merchant and platform key pairs and the APIv3 key on first start (never
/// committed: they live in the data folder), and fills an empty `wechat_pay.api_v3_key` with it.
pub fn ensure_keys(settings: &mut Settings) -> Result<(), SandboxKeyError> {
    let (merchant_public, platform_private, api_v3_key_path) = sandbox_key_paths(settings);
    ensure_key_pair(&settings.wechat_pay.merchant_private_key_path, &merchant_public)?;
    ensure_key_pair(&platform_private, &settings.wechat_pay.platform_public_key_path)?;
    if settings.wechat_pay.api_v3_key.is_empty() {
        settings.wechat_pay.api_v3_key = Secret::new(api_v3_key(&api_v3_key_path)?);
    }
    Ok(())
}

/// The APIv3 key kept in `path`, made on first use: 32 hex characters.
fn api_v3_key(path: &Path) -> Result<String, SandboxKeyError> {
    let unreadable = |source| SandboxKeyError::Write { path: path.to_owned(), source };
    if path.exists() {
        let key = std::fs::read_to_string(path).map_err(unreadable)?.trim().to_owned();
        return if key.len() == 32 { Ok(key) } else { Err(not_an_api_v3_key(path)) };
    }
    let key = crate::random::token_hex(16);
    write_pem(path, key.as_bytes())?;
    log::info!("sandbox: generated the WeChat Pay APIv3 key {}", path.display());
    Ok(key)
}

fn not_an_api_v3_key(path: &Path) -> SandboxKeyError {
    SandboxKeyError::Write { path: path.to_owned(), source: std::io::Error::other("not a 32-byte APIv3 key") }
}

/// The scan page of a `code_url` the sandbox gave out (`None` for any other text).
pub fn scan_page_url(public_url: &str, code_url: &str) -> Option<String> {
    let token = code_url.strip_prefix(CODE_URL_PREFIX)?;
    Some(format!("{}/sandbox/wechatpay/scan/{token}", public_url.trim_end_matches('/')))
}

/// A trade in the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxTrade {
    /// `NATIVE` or `JSAPI`.
    pub trade_type: String,
    pub appid: String,
    pub mchid: String,
    pub out_trade_no: String,
    pub description: String,
    pub total: i64,
    /// `NOTPAY`, `SUCCESS`, `CLOSED`, `REFUND`.
    pub trade_state: String,
    pub transaction_id: String,
    pub notify_url: String,
    pub time_expire: String,
    pub payer_openid: Option<String>,
    pub success_time: Option<String>,
    pub code_url: Option<String>,
    pub prepay_id: Option<String>,
    /// Fen refunded so far.
    pub refunded: i64,
}

/// A refund in the ledger.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub refund: i64,
    pub total: i64,
    /// `SUCCESS` or `ABNORMAL`.
    pub status: String,
    pub reason: String,
    pub success_time: Option<String>,
    pub notify_url: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub drop_notify: bool,
    pub notify_delay_ms: u64,
    pub duplicate_notify: u32,
    /// Queries answer 500 SYSTEM_ERROR.
    pub query_system_error: bool,
    /// Answers carry a signature that does not verify.
    pub bad_answer_signature: bool,
    /// Refunds end ABNORMAL (REFUND.ABNORMAL is notified).
    pub refund_abnormal: bool,
    /// Orders are answered this late (a slow gateway).
    pub order_delay_ms: u64,
}

#[derive(Default)]
struct Ledger {
    trades: HashMap<String, SandboxTrade>,
    refunds: HashMap<String, SandboxRefund>,
    /// scan token -> out_trade_no.
    scans: HashMap<String, String>,
    /// prepay_id -> out_trade_no.
    prepays: HashMap<String, String>,
    serial: u64,
}

impl Ledger {
    fn next_serial(&mut self) -> u64 {
        self.serial += 1;
        self.serial
    }
}

pub struct WechatPaySandbox {
    mch_id: String,
    app_id: String,
    merchant_serial_no: String,
    platform_key_id: String,
    platform_key: PKey<Private>,
    merchant_key: VerifyingKey,
    api_v3_key: ApiV3Key,
    ledger: Mutex<Ledger>,
    faults: Mutex<Faults>,
}

/// A v3 error answer's parts.
type Failure = (StatusCode, &'static str, &'static str);

const SIGN_ERROR: Failure = (StatusCode::UNAUTHORIZED, "SIGN_ERROR", "签名错误");
const PARAM_ERROR: Failure = (StatusCode::BAD_REQUEST, "PARAM_ERROR", "参数错误");
const ORDER_NOT_EXIST: Failure = (StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在");
const ORDER_PAID: Failure = (StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付");
const ORDER_CLOSED: Failure = (StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭");
const SYSTEM_ERROR: Failure = (StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "系统错误");

impl WechatPaySandbox {
    /// The sandbox over the keys [`ensure_keys`] made; `settings` resolved.
    pub fn new(settings: &Settings) -> Result<WechatPaySandbox, SandboxKeyError> {
        let (merchant_public, platform_private, api_v3_key_path) = sandbox_key_paths(settings);
        let wx = &settings.wechat_pay;
        let api_v3_key = ApiV3Key::new(wx.api_v3_key.expose().as_bytes())
            .ok_or_else(|| not_an_api_v3_key(&api_v3_key_path))?;
        Ok(WechatPaySandbox {
            mch_id: wx.mch_id.clone(),
            app_id: wx.app_id.clone(),
            merchant_serial_no: wx.merchant_serial_no.clone(),
            platform_key_id: wx.platform_public_key_id.clone(),
            platform_key: load_private_key(&platform_private).map_err(SandboxKeyError::from)?,
            merchant_key: VerifyingKey::new(
                load_public_key(&merchant_public).map_err(SandboxKeyError::from)?,
            ),
            api_v3_key,
            ledger: Mutex::new(Ledger::default()),
            faults: Mutex::new(Faults::default()),
        })
    }

    fn faults(&self) -> Faults {
        self.faults.lock().expect("sandbox lock").clone()
    }

    /// The platform's signature headers over `body`, now.
    fn signed_headers(&self, body: &str) -> SignedHeaders {
        let mut headers = SignedHeaders::sign(
            &self.platform_key,
            &self.platform_key_id,
            chrono::Utc::now().timestamp(),
            &crate::random::token_hex(16),
            body,
        );
        if self.faults().bad_answer_signature {
            headers.nonce.push('x');
        }
        headers
    }

    /// An answer signed by the platform key; an empty body for 204.
    fn answer(&self, status: StatusCode, body: Option<serde_json::Value>) -> HttpResponse {
        let text = body.map(|b| b.to_string()).unwrap_or_default();
        let mut response = HttpResponse::build(status);
        for (name, value) in self.signed_headers(&text).pairs() {
            response.insert_header((name, value.to_owned()));
        }
        response.insert_header(("Request-ID", crate::random::token_hex(8)));
        if text.is_empty() {
            response.finish()
        } else {
            response.content_type("application/json; charset=utf-8").body(text)
        }
    }

    fn fail(&self, (status, code, message): Failure) -> HttpResponse {
        self.answer(status, Some(serde_json::json!({ "code": code, "message": message })))
    }

    /// Checks a merchant's request as WeChat Pay does: the `Authorization` scheme and parts, our
    /// merchant, the certificate serial, a fresh timestamp, and the signature over the request.
    fn verify_request(&self, req: &HttpRequest, body: &str) -> Result<(), Failure> {
        let header = req.headers().get("Authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
        let refuse = |why: &str| {
            log::info!("sandbox wechat pay: refused {} {}: {why}", req.method(), req.path());
            Err(SIGN_ERROR)
        };
        let Some(auth) = Authorization::parse(header) else { return refuse("no valid Authorization") };
        if auth.mchid != self.mch_id || auth.serial_no != self.merchant_serial_no {
            return refuse("another merchant or certificate");
        }
        let Ok(timestamp) = auth.timestamp.parse::<i64>() else { return refuse("malformed timestamp") };
        if (chrono::Utc::now().timestamp() - timestamp).abs() > MAX_CLOCK_SKEW_SECS {
            return refuse("stale timestamp");
        }
        let url = req.uri().path_and_query().map_or(req.path(), |p| p.as_str());
        let message = request_message(req.method().as_str(), url, timestamp, &auth.nonce_str, body);
        if !self.merchant_key.verify(&message, &auth.signature) {
            return refuse("bad signature");
        }
        Ok(())
    }

    /// A verified request's JSON body.
    fn request_json(&self, req: &HttpRequest, body: &[u8]) -> Result<serde_json::Value, Failure> {
        let text = std::str::from_utf8(body).map_err(|_| PARAM_ERROR)?;
        self.verify_request(req, text)?;
        if text.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(text).map_err(|_| PARAM_ERROR)
    }

    fn transaction(&self, trade: &SandboxTrade) -> WxTransaction {
        let paid = trade.trade_state != "NOTPAY" && trade.trade_state != "CLOSED";
        WxTransaction {
            mchid: trade.mchid.clone(),
            appid: trade.appid.clone(),
            out_trade_no: trade.out_trade_no.clone(),
            transaction_id: if paid { trade.transaction_id.clone() } else { String::new() },
            trade_type: trade.trade_type.clone(),
            trade_state: trade.trade_state.clone(),
            trade_state_desc: match trade.trade_state.as_str() {
                "SUCCESS" => "支付成功",
                "NOTPAY" => "未支付",
                "CLOSED" => "已关闭",
                _ => "转入退款",
            }
            .into(),
            success_time: trade.success_time.clone(),
            amount: WxAmount {
                total: trade.total,
                payer_total: paid.then_some(trade.total),
                currency: "CNY".into(),
            },
            payer: trade.payer_openid.clone().map(|openid| WxPayer { openid }),
        }
    }

    /// A notification of `event_type` about `resource` (a `transaction` or a `refund`),
    /// encrypted under the APIv3 key.
    fn notification(&self, event_type: &str, original_type: &str, resource: &impl Serialize) -> String {
        let plaintext = serde_json::to_vec(resource).expect("a notification resource");
        let nonce = crate::random::token_hex(6);
        let ciphertext =
            self.api_v3_key.encrypt(&nonce, original_type, &plaintext).expect("AES-256-GCM encryption");
        serde_json::json!({
            "id": format!("{}-{}", original_type, crate::random::token_hex(8)),
            "create_time": format_time(now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": if original_type == "refund" { "退款状态变更" } else { "支付成功" },
            "resource": {
                "original_type": original_type,
                "algorithm": AEAD_ALGORITHM,
                "ciphertext": ciphertext,
                "associated_data": original_type,
                "nonce": nonce,
            },
        })
        .to_string()
    }

    /// Posts `body` to `url` on the resend schedule until the shop answers 2xx; each attempt is
    /// signed afresh, as WeChat Pay signs each delivery.
    fn deliver(self: &Arc<Self>, url: String, body: String, about: String) {
        let faults = self.faults();
        if faults.drop_notify {
            log::info!("sandbox wechat pay: dropping the notification of {about}");
            return;
        }
        for _ in 0..faults.duplicate_notify.max(1) {
            let (sandbox, url, body, about) = (self.clone(), url.clone(), body.clone(), about.clone());
            let delay = faults.notify_delay_ms;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let agent = http_agent(Duration::from_secs(10));
                for (attempt, wait_ms) in RESEND_AFTER_MS.iter().enumerate() {
                    std::thread::sleep(Duration::from_millis(*wait_ms));
                    let mut request = agent.post(&url).header("Content-Type", "application/json");
                    for (name, value) in sandbox.signed_headers(&body).pairs() {
                        request = request.header(name, value);
                    }
                    let status = request.send(body.as_bytes()).map(|r| r.status().as_u16());
                    if matches!(status, Ok(200..=299)) {
                        return;
                    }
                    log::info!(
                        "sandbox wechat pay: notify of {about} attempt {} answered {status:?}; resending",
                        attempt + 1
                    );
                }
                log::warn!("sandbox wechat pay: gave up notifying {about}");
            });
        }
    }

    /// The payer pays: the trade succeeds and the notification goes out. Only a trade waiting
    /// for payment and not past its `time_expire` can be paid.
    fn pay(self: &Arc<Self>, out_trade_no: &str, openid: &str) -> Result<SandboxTrade, String> {
        let trade = {
            let mut ledger = self.ledger.lock().expect("sandbox lock");
            let serial = ledger.next_serial();
            let Some(trade) = ledger.trades.get_mut(out_trade_no) else { return Err("no such trade".into()) };
            if trade.trade_state != "NOTPAY" {
                return Err(format!("this trade is {}", trade.trade_state));
            }
            if parse_time(&trade.time_expire).is_some_and(|expiry| expiry < now()) {
                return Err("this trade has expired".into());
            }
            trade.trade_state = "SUCCESS".into();
            trade.payer_openid = Some(openid.to_owned());
            trade.transaction_id = format!("42000{}{:013}", chrono::Utc::now().format("%Y%m%d"), serial);
            trade.success_time = Some(format_time(now()));
            trade.clone()
        };
        log::info!("sandbox wechat pay: {openid} paid {} ({} fen)", trade.out_trade_no, trade.total);
        let body = self.notification("TRANSACTION.SUCCESS", "transaction", &self.transaction(&trade));
        self.deliver(trade.notify_url.clone(), body, trade.out_trade_no.clone());
        Ok(trade)
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v3/pay/transactions/native", web::post().to(native_order))
        .route("/v3/pay/transactions/jsapi", web::post().to(jsapi_order))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}", web::get().to(query))
        .route("/v3/pay/transactions/out-trade-no/{out_trade_no}/close", web::post().to(close))
        .route("/v3/refund/domestic/refunds", web::post().to(refund))
        .route("/v3/refund/domestic/refunds/{out_refund_no}", web::get().to(refund_query))
        .route("/scan/{token}", web::get().to(scan_page))
        .route("/scan/{token}/pay", web::post().to(scan_pay))
        .route("/jsapi/pay", web::post().to(jsapi_pay))
        .route("/ledger", web::get().to(ledger))
        .route("/faults", web::post().to(set_faults));
}

type Sandbox = web::Data<Arc<WechatPaySandbox>>;

async fn native_order(req: HttpRequest, body: web::Bytes, sandbox: Sandbox) -> HttpResponse {
    let answer = place_order(&req, &body, &sandbox, "NATIVE");
    answer_late(&sandbox).await;
    answer
}

async fn jsapi_order(req: HttpRequest, body: web::Bytes, sandbox: Sandbox) -> HttpResponse {
    let answer = place_order(&req, &body, &sandbox, "JSAPI");
    answer_late(&sandbox).await;
    answer
}

/// Waits out the `order_delay_ms` fault (the order is in the ledger meanwhile), without holding
/// a worker.
async fn answer_late(sandbox: &WechatPaySandbox) {
    let delay = sandbox.faults().order_delay_ms;
    if delay > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// Places an order; placing the same order again (same type, amount and account) answers the
/// same `code_url` or `prepay_id`, as WeChat Pay does.
fn place_order(req: &HttpRequest, body: &[u8], sandbox: &WechatPaySandbox, trade_type: &str) -> HttpResponse {
    let order = match sandbox.request_json(req, body) {
        Ok(order) => order,
        Err(failure) => return sandbox.fail(failure),
    };
    let text = |key: &str| order.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let total = order.pointer("/amount/total").and_then(|v| v.as_i64()).unwrap_or(0);
    let openid = order.pointer("/payer/openid").and_then(|v| v.as_str()).map(str::to_owned);
    let jsapi = trade_type == "JSAPI";
    if text("mchid") != sandbox.mch_id
        || text("appid") != sandbox.app_id
        || text("out_trade_no").is_empty()
        || text("notify_url").is_empty()
        || parse_time(&text("time_expire")).is_none()
        || total <= 0
        || jsapi != openid.is_some()
    {
        return sandbox.fail(PARAM_ERROR);
    }
    let mut ledger = sandbox.ledger.lock().expect("sandbox lock");
    let serial = ledger.next_serial();
    let out_trade_no = text("out_trade_no");
    if let Some(trade) = ledger.trades.get(&out_trade_no) {
        match trade.trade_state.as_str() {
            "NOTPAY" => {}
            "CLOSED" => return sandbox.fail(ORDER_CLOSED),
            _ => return sandbox.fail(ORDER_PAID),
        }
        if trade.trade_type != trade_type || trade.total != total || trade.payer_openid != openid {
            return sandbox.fail((StatusCode::BAD_REQUEST, "INVALID_REQUEST", "订单号重复"));
        }
    } else {
        let token = crate::random::token_hex(12);
        let prepay_id = format!("wx{}{:010}", chrono::Utc::now().format("%d%H%M%S"), serial);
        let trade = SandboxTrade {
            trade_type: trade_type.into(),
            appid: text("appid"),
            mchid: text("mchid"),
            out_trade_no: out_trade_no.clone(),
            description: text("description"),
            total,
            trade_state: "NOTPAY".into(),
            transaction_id: String::new(),
            notify_url: text("notify_url"),
            time_expire: text("time_expire"),
            payer_openid: openid,
            success_time: None,
            code_url: (!jsapi).then(|| format!("{CODE_URL_PREFIX}{token}")),
            prepay_id: jsapi.then(|| prepay_id.clone()),
            refunded: 0,
        };
        if jsapi {
            ledger.prepays.insert(prepay_id, out_trade_no.clone());
        } else {
            ledger.scans.insert(token, out_trade_no.clone());
        }
        ledger.trades.insert(out_trade_no.clone(), trade);
    }
    let trade = &ledger.trades[&out_trade_no];
    let answer = match (&trade.code_url, &trade.prepay_id) {
        (Some(code_url), _) => serde_json::json!({ "code_url": code_url }),
        (_, Some(prepay_id)) => serde_json::json!({ "prepay_id": prepay_id }),
        _ => return sandbox.fail(SYSTEM_ERROR),
    };
    sandbox.answer(StatusCode::OK, Some(answer))
}

#[derive(Deserialize)]
struct MchidQuery {
    #[serde(default)]
    mchid: String,
}

async fn query(
    req: HttpRequest,
    path: web::Path<String>,
    mchid: web::Query<MchidQuery>,
    sandbox: Sandbox,
) -> HttpResponse {
    if let Err(refused) = sandbox.verify_request(&req, "") {
        return sandbox.fail(refused);
    }
    if mchid.mchid != sandbox.mch_id {
        return sandbox.fail(PARAM_ERROR);
    }
    if sandbox.faults().query_system_error {
        return sandbox.fail(SYSTEM_ERROR);
    }
    let ledger = sandbox.ledger.lock().expect("sandbox lock");
    match ledger.trades.get(path.as_str()) {
        None => sandbox.fail(ORDER_NOT_EXIST),
        Some(trade) => {
            let transaction = serde_json::to_value(sandbox.transaction(trade)).expect("a transaction");
            sandbox.answer(StatusCode::OK, Some(transaction))
        }
    }
}

async fn close(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    sandbox: Sandbox,
) -> HttpResponse {
    let request = match sandbox.request_json(&req, &body) {
        Ok(request) => request,
        Err(failure) => return sandbox.fail(failure),
    };
    if request.get("mchid").and_then(|v| v.as_str()) != Some(sandbox.mch_id.as_str()) {
        return sandbox.fail(PARAM_ERROR);
    }
    let mut ledger = sandbox.ledger.lock().expect("sandbox lock");
    match ledger.trades.get_mut(path.as_str()) {
        None => sandbox.fail(ORDER_NOT_EXIST),
        Some(trade) if trade.trade_state == "NOTPAY" || trade.trade_state == "CLOSED" => {
            trade.trade_state = "CLOSED".into();
            sandbox.answer(StatusCode::NO_CONTENT, None)
        }
        Some(_) => sandbox.fail(ORDER_PAID),
    }
}

/// A refund: the same `out_refund_no` again answers the refund already made. It succeeds at
/// once (or ends ABNORMAL with the fault), is answered `PROCESSING`, and is notified.
async fn refund(req: HttpRequest, body: web::Bytes, sandbox: Sandbox) -> HttpResponse {
    let request = match sandbox.request_json(&req, &body) {
        Ok(request) => request,
        Err(failure) => return sandbox.fail(failure),
    };
    let text = |key: &str| request.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let amount = |key: &str| request.pointer(&format!("/amount/{key}")).and_then(|v| v.as_i64()).unwrap_or(0);
    let (out_refund_no, refund_fen, total) = (text("out_refund_no"), amount("refund"), amount("total"));
    let unnamed = text("out_trade_no").is_empty() && text("transaction_id").is_empty();
    if out_refund_no.is_empty() || refund_fen <= 0 || unnamed {
        return sandbox.fail(PARAM_ERROR);
    }
    let abnormal = sandbox.faults().refund_abnormal;
    let (made, trade) = {
        let mut ledger = sandbox.ledger.lock().expect("sandbox lock");
        if let Some(made) = ledger.refunds.get(&out_refund_no) {
            let made = made.clone();
            drop(ledger);
            return sandbox.answer(StatusCode::OK, Some(refund_json(&made, &made.status)));
        }
        let serial = ledger.next_serial();
        let found = ledger.trades.values_mut().find(|t| {
            (text("out_trade_no").is_empty() || t.out_trade_no == text("out_trade_no"))
                && (text("transaction_id").is_empty() || t.transaction_id == text("transaction_id"))
        });
        let Some(trade) = found else {
            return sandbox.fail((StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在"));
        };
        if trade.trade_state != "SUCCESS" && trade.trade_state != "REFUND" {
            return sandbox.fail((StatusCode::FORBIDDEN, "INVALID_REQUEST", "订单状态不正确"));
        }
        if total != trade.total {
            return sandbox.fail(PARAM_ERROR);
        }
        if trade.refunded + refund_fen > trade.total {
            return sandbox.fail((StatusCode::FORBIDDEN, "NOT_ENOUGH", "申请退款金额超过订单可退金额"));
        }
        if !abnormal {
            trade.refunded += refund_fen;
            trade.trade_state = "REFUND".into();
        }
        let made = SandboxRefund {
            out_refund_no: out_refund_no.clone(),
            refund_id: format!("50000{}{:013}", chrono::Utc::now().format("%Y%m%d"), serial),
            out_trade_no: trade.out_trade_no.clone(),
            transaction_id: trade.transaction_id.clone(),
            refund: refund_fen,
            total,
            status: if abnormal { "ABNORMAL" } else { "SUCCESS" }.into(),
            reason: text("reason"),
            success_time: (!abnormal).then(|| format_time(now())),
            notify_url: if text("notify_url").is_empty() {
                trade.notify_url.clone()
            } else {
                text("notify_url")
            },
        };
        ledger.refunds.insert(out_refund_no, made.clone());
        let trade = ledger.trades[&made.out_trade_no].clone();
        (made, trade)
    };
    let notice = WxRefundNotice {
        mchid: trade.mchid.clone(),
        out_trade_no: made.out_trade_no.clone(),
        transaction_id: made.transaction_id.clone(),
        out_refund_no: made.out_refund_no.clone(),
        refund_id: made.refund_id.clone(),
        refund_status: made.status.clone(),
        success_time: made.success_time.clone(),
        user_received_account: "支付用户零钱".into(),
        amount: WxRefundAmount {
            total: made.total,
            refund: made.refund,
            payer_total: Some(made.total),
            payer_refund: Some(made.refund),
            currency: String::new(),
        },
    };
    let event = format!("REFUND.{}", made.status);
    let body = sandbox.notification(&event, "refund", &notice);
    sandbox.deliver(made.notify_url.clone(), body, made.out_refund_no.clone());
    sandbox.answer(StatusCode::OK, Some(refund_json(&made, "PROCESSING")))
}

fn refund_json(refund: &SandboxRefund, status: &str) -> serde_json::Value {
    serde_json::json!({
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": "支付用户零钱",
        "success_time": refund.success_time,
        "create_time": refund.success_time,
        "status": status,
        "amount": {
            "total": refund.total, "refund": refund.refund, "payer_total": refund.total,
            "payer_refund": refund.refund, "settlement_refund": refund.refund,
            "settlement_total": refund.total, "discount_refund": 0, "currency": "CNY",
        },
    })
}

async fn refund_query(req: HttpRequest, path: web::Path<String>, sandbox: Sandbox) -> HttpResponse {
    if let Err(refused) = sandbox.verify_request(&req, "") {
        return sandbox.fail(refused);
    }
    let refund = sandbox.ledger.lock().expect("sandbox lock").refunds.get(path.as_str()).cloned();
    match refund {
        None => sandbox.fail((StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在")),
        Some(refund) => sandbox.answer(StatusCode::OK, Some(refund_json(&refund, &refund.status))),
    }
}

#[derive(Template)]
#[template(path = "sandbox/wechat_pay_scan.html")]
struct ScanPage {
    lang: Lang,
    token: String,
    trade: SandboxTrade,
    yuan: String,
    openids: [&'static str; 3],
    waiting: bool,
}

/// What a phone shows after scanning a `code_url`: the trade, a payer to pick, Pay.
async fn scan_page(path: web::Path<String>, lang: Lang, sandbox: Sandbox) -> HttpResponse {
    let token = path.into_inner();
    let trade = {
        let ledger = sandbox.ledger.lock().expect("sandbox lock");
        ledger.scans.get(&token).and_then(|no| ledger.trades.get(no)).cloned()
    };
    let Some(trade) = trade else { return HttpResponse::NotFound().body("no such code_url") };
    let page = ScanPage {
        lang,
        yuan: crate::money::format_yuan(trade.total),
        waiting: trade.trade_state == "NOTPAY",
        token,
        trade,
        openids: SAMPLE_OPENIDS,
    };
    match page.render() {
        Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[derive(Deserialize)]
struct PayForm {
    openid: String,
}

/// The payer confirms on the scan page; back to the page, which shows the trade paid.
async fn scan_pay(path: web::Path<String>, form: web::Form<PayForm>, sandbox: Sandbox) -> HttpResponse {
    let token = path.into_inner();
    let out_trade_no = sandbox.ledger.lock().expect("sandbox lock").scans.get(&token).cloned();
    let Some(out_trade_no) = out_trade_no else { return HttpResponse::NotFound().body("no such code_url") };
    let openid = form.openid.trim();
    if openid.is_empty() {
        return HttpResponse::BadRequest().body("pick a payer");
    }
    match sandbox.pay(&out_trade_no, openid) {
        Ok(_) => HttpResponse::SeeOther()
            .insert_header(("Location", format!("/sandbox/wechatpay/scan/{token}")))
            .finish(),
        Err(reason) => HttpResponse::Conflict().body(reason),
    }
}

/// The WeChat browser's `getBrandWCPayRequest`: the parameters' `paySign` checked with the
/// merchant's public key, the `prepay_id`'s trade paid by its payer. Answers `{"err_msg": ...}`
/// as the bridge's callback receives it.
async fn jsapi_pay(params: web::Json<JsapiPayParams>, sandbox: Sandbox) -> HttpResponse {
    let fail = |reason: &str| {
        HttpResponse::Ok()
            .json(serde_json::json!({ "err_msg": "get_brand_wcpay_request:fail", "reason": reason }))
    };
    let message = jsapi_message(&params.app_id, &params.time_stamp, &params.nonce_str, &params.package);
    if params.app_id != sandbox.app_id
        || params.sign_type != "RSA"
        || !sandbox.merchant_key.verify(&message, &params.pay_sign)
    {
        return fail("bad paySign");
    }
    let Some(prepay_id) = params.package.strip_prefix("prepay_id=") else { return fail("bad package") };
    let trade = {
        let ledger = sandbox.ledger.lock().expect("sandbox lock");
        ledger.prepays.get(prepay_id).and_then(|no| ledger.trades.get(no)).cloned()
    };
    let Some(trade) = trade else { return fail("unknown prepay_id") };
    let payer = trade.payer_openid.clone().unwrap_or_default();
    match sandbox.pay(&trade.out_trade_no, &payer) {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "err_msg": "get_brand_wcpay_request:ok" })),
        Err(reason) => fail(&reason),
    }
}

async fn ledger(sandbox: Sandbox) -> HttpResponse {
    let ledger = sandbox.ledger.lock().expect("sandbox lock");
    let mut trades: Vec<&SandboxTrade> = ledger.trades.values().collect();
    trades.sort_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
    let mut refunds: Vec<&SandboxRefund> = ledger.refunds.values().collect();
    refunds.sort_by(|a, b| a.out_refund_no.cmp(&b.out_refund_no));
    HttpResponse::Ok().json(serde_json::json!({ "trades": trades, "refunds": refunds }))
}

async fn set_faults(faults: web::Json<Faults>, sandbox: Sandbox) -> HttpResponse {
    *sandbox.faults.lock().expect("sandbox lock") = faults.into_inner();
    HttpResponse::NoContent().finish()
}
