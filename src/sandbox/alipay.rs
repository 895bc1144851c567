//! Alipay's side: `gateway.do` (page pay and phone (WAP) pay -> cashier page, each checking the
//! `product_code` its method takes; trade query/close/refund answered as
//! signed JSON), the async notifications (signed, resent until the shop answers `success`), the
//! signed `return_url` redirect, a ledger of trades, and fault switches for tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde::{Deserialize, Serialize};

use crate::china_time;
use crate::config::Settings;
use crate::gateways::alipay::{
    Cashier, KeyError, VerifyingKey, load_private_key, load_public_key, response_key, sign,
    sign_notification, verify_request,
};
use crate::gateways::http_agent;
use crate::i18n::Lang;
use crate::models::now;

/// The compressed resend schedule (Alipay: 4m, 10m, 10m, 1h, 2h, 6h, 15h).
pub const RESEND_AFTER_MS: [u64; 8] = [0, 500, 1000, 2000, 4000, 8000, 15000, 30000];

/// Where the sandbox keeps its half of each key pair, next to the shop's half.
pub fn sandbox_key_paths(settings: &Settings) -> (PathBuf, PathBuf) {
    let alipay = &settings.alipay;
    (
        alipay.merchant_private_key_path.with_file_name("sandbox_merchant_public_key.pem"),
        alipay.alipay_public_key_path.with_file_name("sandbox_alipay_private_key.pem"),
    )
}

/// Why the sandbox's key pairs cannot be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum SandboxKeyError {
    #[error(transparent)]
    Load(#[from] KeyError),
    #[error("cannot make a key pair: {0}")]
    Make(#[source] ErrorStack),
    #[error("{}: {source}", .path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// Generates the merchant and "Alipay" key pairs on first start (never committed: they live in
/// the data folder).
pub fn ensure_keys(settings: &Settings) -> Result<(), SandboxKeyError> {
    let (merchant_public, alipay_private) = sandbox_key_paths(settings);
    let pairs = [
        (&settings.alipay.merchant_private_key_path, merchant_public),
        (&alipay_private, settings.alipay.alipay_public_key_path.clone()),
    ];
    for (private_path, public_path) in pairs {
        ensure_key_pair(private_path, &public_path)?;
    }
    Ok(())
}

/// Makes sure an RSA key pair is in `private_path` and `public_path`. An existing private key
/// is kept (it may be a real merchant key): only its public half is written. A missing one is
/// generated.
pub fn ensure_key_pair(private_path: &Path, public_path: &Path) -> Result<(), SandboxKeyError> {
    if private_path.exists() && public_path.exists() {
        return Ok(());
    }
    let key = if private_path.exists() {
        load_private_key(private_path)?
    } else {
        let key = Rsa::generate(2048).and_then(PKey::from_rsa).map_err(SandboxKeyError::Make)?;
        write_pem(private_path, &key.private_key_to_pem_pkcs8().map_err(SandboxKeyError::Make)?)?;
        log::info!("sandbox: generated the key pair {}", private_path.display());
        key
    };
    write_pem(public_path, &key.public_key_to_pem().map_err(SandboxKeyError::Make)?)
}

/// Writes `pem` (or any secret) into `path`, making its folder.
pub fn write_pem(path: &Path, pem: &[u8]) -> Result<(), SandboxKeyError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|source| SandboxKeyError::Write { path: dir.to_owned(), source })?;
    }
    std::fs::write(path, pem).map_err(|source| SandboxKeyError::Write { path: path.to_owned(), source })
}

#[derive(Debug, Clone, Serialize)]
pub struct Trade {
    /// The payment method that opened the trade (`alipay.trade.page.pay` or `.wap.pay`).
    pub method: String,
    pub out_trade_no: String,
    pub total_amount: String,
    pub subject: String,
    pub status: String,
    pub trade_no: String,
    pub notify_url: String,
    pub return_url: String,
    pub paid_at: Option<String>,
    /// out_request_no -> refunded amount.
    pub refunds: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    pub drop_notify: bool,
    pub notify_delay_ms: u64,
    pub duplicate_notify: u32,
    pub query_system_error: bool,
}

pub struct AlipaySandbox {
    app_id: String,
    seller_id: String,
    alipay_key: PKey<Private>,
    merchant_key: VerifyingKey,
    trades: Mutex<HashMap<String, Trade>>,
    faults: Mutex<Faults>,
    next_trade: Mutex<u64>,
}

impl AlipaySandbox {
    pub fn new(settings: &Settings) -> Result<AlipaySandbox, KeyError> {
        let (merchant_public, alipay_private) = sandbox_key_paths(settings);
        Ok(AlipaySandbox {
            app_id: settings.alipay.app_id.clone(),
            seller_id: settings.alipay.seller_id.clone(),
            alipay_key: load_private_key(&alipay_private)?,
            merchant_key: VerifyingKey::new(load_public_key(&merchant_public)?),
            trades: Mutex::new(HashMap::new()),
            faults: Mutex::new(Faults::default()),
            next_trade: Mutex::new(1),
        })
    }

    fn trade_no(&self) -> String {
        let mut next = self.next_trade.lock().expect("sandbox lock");
        *next += 1;
        format!("{}22001{:011}", chrono::Utc::now().format("%Y%m%d"), *next)
    }

    /// A signed OpenAPI answer: `{"<method>_response":{...},"sign":"..."}`.
    fn answer(&self, method: &str, inner: serde_json::Value) -> HttpResponse {
        let inner_text = inner.to_string();
        let signature = sign(&self.alipay_key, &inner_text);
        let root = response_key(method);
        let body = format!("{{\"{root}\":{inner_text},\"sign\":\"{signature}\"}}");
        HttpResponse::Ok().content_type("application/json; charset=utf-8").body(body)
    }

    fn error_answer(&self, method: &str, sub_code: &str, sub_msg: &str) -> HttpResponse {
        self.answer(method, serde_json::json!({"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}))
    }

    /// The notification Alipay posts for a trade, signed.
    fn notification(&self, trade: &Trade) -> Vec<(String, String)> {
        let now_text = china_time::format(now());
        let mut params: Vec<(String, String)> = [
            ("notify_time", now_text.clone()),
            ("notify_type", "trade_status_sync".into()),
            ("notify_id", format!("sandbox{}{}", trade.trade_no, trade.status.len())),
            ("app_id", self.app_id.clone()),
            ("charset", "utf-8".into()),
            ("version", "1.0".into()),
            ("trade_no", trade.trade_no.clone()),
            ("out_trade_no", trade.out_trade_no.clone()),
            ("buyer_id", "2088102177846880".into()),
            ("seller_id", self.seller_id.clone()),
            ("trade_status", trade.status.clone()),
            ("total_amount", trade.total_amount.clone()),
            ("receipt_amount", trade.total_amount.clone()),
            ("buyer_pay_amount", trade.total_amount.clone()),
            ("subject", trade.subject.clone()),
            ("gmt_payment", trade.paid_at.clone().unwrap_or(now_text)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        sign_notification(&self.alipay_key, &mut params);
        params
    }

    /// Sends the notification on the resend schedule until the shop answers exactly `success`.
    fn send_notification(self: &Arc<Self>, trade: Trade) {
        let faults = self.faults.lock().expect("sandbox lock").clone();
        if faults.drop_notify {
            log::info!("sandbox alipay: dropping the notification of {}", trade.out_trade_no);
            return;
        }
        let form = self.notification(&trade);
        for _ in 0..faults.duplicate_notify.max(1) {
            let (form, url, order) = (form.clone(), trade.notify_url.clone(), trade.out_trade_no.clone());
            let delay = faults.notify_delay_ms;
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(delay));
                let agent = http_agent(Duration::from_secs(10));
                for (attempt, wait_ms) in RESEND_AFTER_MS.iter().enumerate() {
                    std::thread::sleep(Duration::from_millis(*wait_ms));
                    let pairs: Vec<(&str, &str)> =
                        form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let answer = agent
                        .post(&url)
                        .send_form(pairs)
                        .ok()
                        .and_then(|mut r| r.body_mut().read_to_string().ok());
                    if answer.as_deref() == Some("success") {
                        return;
                    }
                    log::info!(
                        "sandbox alipay: notify of {order} attempt {} answered {answer:?}; resending",
                        attempt + 1
                    );
                }
                log::warn!("sandbox alipay: gave up notifying {order}");
            });
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/gateway.do", web::get().to(gateway))
        .route("/gateway.do", web::post().to(gateway))
        .route("/cashier/{out_trade_no}/pay", web::post().to(pay))
        .route("/cashier/{out_trade_no}/cancel", web::post().to(cancel))
        .route("/ledger", web::get().to(ledger))
        .route("/faults", web::post().to(set_faults));
}

#[derive(Template)]
#[template(path = "sandbox/cashier.html")]
struct CashierPage {
    lang: Lang,
    trade: Trade,
    paid: bool,
}

/// The request's parameters: the query string plus a form body (`biz_content` travels there).
fn request_params(req: &HttpRequest, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(req.query_string()).unwrap_or_default();
    params.extend(serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default());
    params
}

async fn gateway(
    req: HttpRequest,
    lang: Lang,
    body: web::Bytes,
    sandbox: web::Data<Arc<AlipaySandbox>>,
) -> HttpResponse {
    let params = request_params(&req, &body);
    let field =
        |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let method = field("method");
    if field("app_id") != sandbox.app_id || !verify_request(&sandbox.merchant_key, &params) {
        return sandbox.answer(
            &method,
            serde_json::json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature", "sub_msg": "验签出错"}),
        );
    }
    let biz: serde_json::Value = serde_json::from_str(&field("biz_content")).unwrap_or_default();
    let text = |key: &str| biz.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    let out_trade_no = text("out_trade_no");
    match method.as_str() {
        "alipay.trade.page.pay" | "alipay.trade.wap.pay" => {
            // Each method takes its own product code, as Alipay checks.
            if Cashier::of_method(&method).map(Cashier::product_code) != Some(text("product_code").as_str()) {
                return sandbox.answer(
                    &method,
                    serde_json::json!({"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.PRODUCT_CODE_NOT_MATCH", "sub_msg": "产品码与接口不匹配"}),
                );
            }
            let trade = {
                let mut trades = sandbox.trades.lock().expect("sandbox lock");
                trades
                    .entry(out_trade_no.clone())
                    .or_insert_with(|| Trade {
                        method: method.clone(),
                        out_trade_no: out_trade_no.clone(),
                        total_amount: text("total_amount"),
                        subject: text("subject"),
                        status: "WAIT_BUYER_PAY".into(),
                        trade_no: sandbox.trade_no(),
                        notify_url: field("notify_url"),
                        return_url: field("return_url"),
                        paid_at: None,
                        refunds: HashMap::new(),
                    })
                    .clone()
            };
            let paid = trade.status != "WAIT_BUYER_PAY";
            match (CashierPage { lang, trade, paid }).render() {
                Ok(html) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html),
                Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
            }
        }
        "alipay.trade.query" => {
            if sandbox.faults.lock().expect("sandbox lock").query_system_error {
                return sandbox.error_answer(&method, "ACQ.SYSTEM_ERROR", "系统错误");
            }
            let trades = sandbox.trades.lock().expect("sandbox lock");
            match trades.get(&out_trade_no) {
                None => sandbox.error_answer(&method, "ACQ.TRADE_NOT_EXIST", "交易不存在"),
                Some(t) => sandbox.answer(
                    &method,
                    serde_json::json!({"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no,
                        "trade_status": t.status, "total_amount": t.total_amount, "send_pay_date": t.paid_at.clone().unwrap_or_default()}),
                ),
            }
        }
        "alipay.trade.close" => {
            let mut trades = sandbox.trades.lock().expect("sandbox lock");
            match trades.get_mut(&out_trade_no) {
                None => sandbox.error_answer(&method, "ACQ.TRADE_NOT_EXIST", "交易不存在"),
                Some(t) if t.status == "WAIT_BUYER_PAY" => {
                    t.status = "TRADE_CLOSED".into();
                    sandbox.answer(&method, serde_json::json!({"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no}))
                }
                Some(_) => sandbox.error_answer(&method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法"),
            }
        }
        "alipay.trade.refund" => {
            let mut trades = sandbox.trades.lock().expect("sandbox lock");
            let request_no = text("out_request_no");
            let trade_no = text("trade_no");
            match trades.get_mut(&out_trade_no) {
                None => sandbox.error_answer(&method, "ACQ.TRADE_NOT_EXIST", "交易不存在"),
                Some(t) if !trade_no.is_empty() && t.trade_no != trade_no => {
                    sandbox.error_answer(&method, "ACQ.TRADE_NOT_EXIST", "交易不存在")
                }
                Some(t) if t.status != "TRADE_SUCCESS" && t.status != "TRADE_FINISHED" => {
                    sandbox.error_answer(&method, "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
                }
                Some(t) => {
                    let fund_change = if t.refunds.contains_key(&request_no) { "N" } else { "Y" };
                    t.refunds.entry(request_no).or_insert_with(|| text("refund_amount"));
                    sandbox.answer(
                        &method,
                        serde_json::json!({"code": "10000", "msg": "Success", "out_trade_no": t.out_trade_no, "trade_no": t.trade_no,
                            "fund_change": fund_change, "refund_fee": text("refund_amount")}),
                    )
                }
            }
        }
        other => sandbox.answer(other, serde_json::json!({"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-method", "sub_msg": "不支持的方法"})),
    }
}

/// The buyer pays: the trade succeeds, the notification goes out, the browser returns to the
/// shop with signed parameters.
async fn pay(path: web::Path<String>, sandbox: web::Data<Arc<AlipaySandbox>>) -> HttpResponse {
    let out_trade_no = path.into_inner();
    let trade = {
        let mut trades = sandbox.trades.lock().expect("sandbox lock");
        let Some(trade) = trades.get_mut(&out_trade_no) else {
            return HttpResponse::NotFound().body("no such trade");
        };
        if trade.status == "WAIT_BUYER_PAY" {
            trade.status = "TRADE_SUCCESS".into();
            trade.paid_at = Some(china_time::format(now()));
        } else if trade.status != "TRADE_SUCCESS" {
            return HttpResponse::Conflict().body(format!("this trade is {}", trade.status));
        }
        trade.clone()
    };
    log::info!("sandbox alipay: buyer paid {} ({})", trade.out_trade_no, trade.total_amount);
    sandbox.send_notification(trade.clone());
    let mut back = vec![
        ("app_id".to_owned(), sandbox.app_id.clone()),
        ("method".to_owned(), format!("{}.return", trade.method)),
        ("charset".to_owned(), "utf-8".to_owned()),
        ("version".to_owned(), "1.0".to_owned()),
        ("timestamp".to_owned(), china_time::format(now())),
        ("out_trade_no".to_owned(), trade.out_trade_no.clone()),
        ("trade_no".to_owned(), trade.trade_no.clone()),
        ("total_amount".to_owned(), trade.total_amount.clone()),
        ("seller_id".to_owned(), sandbox.seller_id.clone()),
    ];
    sign_notification(&sandbox.alipay_key, &mut back);
    let location = format!("{}?{}", trade.return_url, serde_urlencoded::to_string(&back).unwrap_or_default());
    HttpResponse::SeeOther().insert_header(("Location", location)).finish()
}

/// The buyer leaves the cashier without paying.
async fn cancel(path: web::Path<String>, sandbox: web::Data<Arc<AlipaySandbox>>) -> HttpResponse {
    let trades = sandbox.trades.lock().expect("sandbox lock");
    match trades.get(path.as_str()) {
        Some(trade) => {
            let location = format!("{}?out_trade_no={}", trade.return_url, trade.out_trade_no);
            HttpResponse::SeeOther().insert_header(("Location", location)).finish()
        }
        None => HttpResponse::NotFound().body("no such trade"),
    }
}

async fn ledger(sandbox: web::Data<Arc<AlipaySandbox>>) -> HttpResponse {
    let trades = sandbox.trades.lock().expect("sandbox lock");
    let mut all: Vec<&Trade> = trades.values().collect();
    all.sort_by(|a, b| a.out_trade_no.cmp(&b.out_trade_no));
    HttpResponse::Ok().json(all)
}

async fn set_faults(faults: web::Json<Faults>, sandbox: web::Data<Arc<AlipaySandbox>>) -> HttpResponse {
    *sandbox.faults.lock().expect("sandbox lock") = faults.into_inner();
    HttpResponse::NoContent().finish()
}
