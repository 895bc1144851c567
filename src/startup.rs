//! Builds the application: binds the listener first (so port 0 works), prepares the database,
//! and registers the routes of each area.

use std::cell::Cell;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{self, Server, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::error::{JsonPayloadError, PayloadError, QueryPayloadError, UrlencodedError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{Condition, DefaultHeaders, Logger, Next, from_fn};
use actix_web::{App, HttpMessage, HttpRequest, HttpServer, web};
use futures_util::Stream;

use crate::config::{ConfigError, Settings, url_origin};
use crate::controllers;
use crate::db::{self, Checkpointer, DatabaseLocation, DbPool};
use crate::engine::{Engine, EngineError};
use crate::error::{AppError, api_envelope};
use crate::gateways::Gateways;
use crate::gateways::alipay::{AlipayClient, SettingKeyError};
use crate::gateways::wechat_pay::WechatPayClient;
use crate::gateways::weixin::WeixinClient;
use crate::jobs::{Background, Worker};
use crate::log_escape::Untrusted;
use crate::metrics::HttpMetrics;
use crate::rate_limit::RateLimits;
use crate::sandbox::alipay::{AlipaySandbox, SandboxKeyError};
use crate::sandbox::wechat_pay::WechatPaySandbox;
use crate::sandbox::weixin::WeixinSandbox;
use crate::services::catalogue::ShopWindow;
use crate::services::order::OrderNumbers;
use crate::services::pay_page::PayLinks;
use crate::state::AppState;

/// Bodies larger than this are refused before any handler sees them.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error(transparent)]
    AlipayKey(#[from] SettingKeyError),
    #[error(transparent)]
    WechatPay(#[from] crate::gateways::wechat_pay::SettingsError),
    #[error(transparent)]
    SandboxKeys(#[from] SandboxKeyError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot start the {0}")]
    Thread(&'static str, #[source] std::io::Error),
    #[error("cannot derive the pay links' secret from the merchant key")]
    PayLinkSecret,
}

pub struct Application {
    port: u16,
    settings: Arc<Settings>,
    server: Server,
    worker: Arc<Worker>,
    background: Background,
    /// SQLite only; stops when the application is dropped.
    _checkpointer: Option<Checkpointer>,
}

impl Application {
    /// Binds the listener first (port 0 picks a free one), then: the sandbox, the database, the
    /// shared state, the HTTP server, the background thread.
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        settings.check_sandbox_exposure()?;
        let (listener, address) = bind(&settings.server.bind)?;
        let generated_password = settings.admin.password.is_empty();
        let mut settings = settings.resolve(address);
        let sandbox = Sandbox::start(&mut settings)?;
        let settings = Arc::new(settings);
        let database = Database::open(&settings)?;
        log::info!(
            "paymall listening on http://{address} (public URL {}), database {} at {} ({} migrations applied), sandbox {}",
            settings.server.public_url,
            database.location.backend,
            database.location.redacted(),
            database.applied,
            if settings.sandbox.enabled { "on" } else { "off" },
        );
        let (state, worker) = share(&settings, &database)?;
        let server = serve(listener, state, sandbox, &settings)?;
        print_quick_start(&settings, generated_password);
        let interval = Duration::from_secs(settings.compensation.interval_secs);
        let background = Background::start(worker.clone(), interval)
            .map_err(|e| StartupError::Thread("background thread", e))?;
        Ok(Application {
            port: address.port(),
            settings,
            server,
            worker,
            background,
            _checkpointer: database.checkpointer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The settings after start-up filled in the bound address and the sandbox's values.
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.clone()
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// The background tasks, for running a tick by hand (tests, admin actions).
    pub fn worker(&self) -> Arc<Worker> {
        self.worker.clone()
    }

    /// Serves until SIGINT/SIGTERM or [`ServerHandle::stop`], finishing requests in flight,
    /// then stops the background thread after its current tick.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.background.stop();
        served
    }
}

fn bind(bind: &str) -> Result<(TcpListener, SocketAddr), StartupError> {
    let bind_error = |source| StartupError::Bind { bind: bind.to_owned(), source };
    let listener = TcpListener::bind(bind).map_err(bind_error)?;
    let address = listener.local_addr().map_err(bind_error)?;
    Ok((listener, address))
}

/// The WeChat and Alipay simulators, when `sandbox.enabled`: their keys made on first start.
#[derive(Clone)]
struct Sandbox {
    alipay: web::Data<Arc<AlipaySandbox>>,
    weixin: web::Data<WeixinSandbox>,
    wechat_pay: web::Data<Arc<WechatPaySandbox>>,
}

impl Sandbox {
    /// Also fills the settings the sandbox generates (the WeChat Pay APIv3 key).
    fn start(settings: &mut Settings) -> Result<Option<Sandbox>, StartupError> {
        if !settings.sandbox.enabled {
            return Ok(None);
        }
        crate::sandbox::alipay::ensure_keys(settings)?;
        crate::sandbox::wechat_pay::ensure_keys(settings)?;
        let alipay = AlipaySandbox::new(settings).map_err(SandboxKeyError::from)?;
        Ok(Some(Sandbox {
            alipay: web::Data::new(Arc::new(alipay)),
            weixin: web::Data::new(WeixinSandbox::new(settings)),
            wechat_pay: web::Data::new(Arc::new(WechatPaySandbox::new(settings)?)),
        }))
    }
}

/// The database migrated, its pool, and on SQLite its checkpointer (stopped when dropped).
struct Database {
    location: DatabaseLocation,
    applied: usize,
    pool: DbPool,
    checkpointer: Option<Checkpointer>,
}

impl Database {
    fn open(settings: &Settings) -> Result<Database, StartupError> {
        let location = DatabaseLocation::parse(settings.database.url.expose());
        let applied = db::prepare(&location)?;
        let pool = db::build_pool(&location, settings.database.pool_size)?;
        let checkpointer = Checkpointer::start(&location, &settings.database)?;
        Ok(Database { location, applied, pool, checkpointer })
    }
}

/// The cores the HTTP workers and the signing threads are sized to.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the handlers share, and the background tasks, which share the pool and the limits.
fn share(
    settings: &Arc<Settings>,
    database: &Database,
) -> Result<(web::Data<AppState>, Arc<Worker>), StartupError> {
    // WeChat Pay is taken when its merchant is configured; a half-configured one stops start-up.
    let wechat_pay = match settings.wechat_pay.mch_id.is_empty() {
        true => None,
        false => Some(Arc::new(WechatPayClient::from_settings(settings)?)),
    };
    let gateways = Gateways { alipay: Arc::new(AlipayClient::from_settings(settings)?), wechat_pay };
    let pay_links =
        PayLinks::new(gateways.alipay.derived_secret("pay-link").ok_or(StartupError::PayLinkSecret)?);
    let weixin = Arc::new(WeixinClient::from_settings(settings));
    let limits = Arc::new(RateLimits::new(&settings.limits));
    let pool = database.pool.clone();
    let worker = Arc::new(Worker::new(
        pool.clone(),
        settings.clone(),
        gateways.clone(),
        weixin.clone(),
        limits.clone(),
    ));
    let state = web::Data::new(AppState {
        engine: Engine::start(&database.location, pool, cores())?,
        settings: settings.clone(),
        gateways,
        weixin,
        instance: worker.owner.clone(),
        shop_window: ShopWindow::new(Duration::from_millis(settings.catalogue.list_max_age_ms)),
        order_numbers: OrderNumbers::default(),
        limits,
        wake: worker.wake.clone(),
        pay_links,
        http_metrics: HttpMetrics::new(),
    });
    Ok((state, worker))
}

/// The HTTP server on `listener`: the middlewares, the routes of each area, the sandbox's.
fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    sandbox: Option<Sandbox>,
    settings: &Settings,
) -> Result<Server, StartupError> {
    let workers = cores();
    // Database work runs on actix's blocking threads (`web::block`); there are as many as pooled
    // connections, so under load work queues instead of parking threads on the pool and waking
    // them one by one (gateway calls run on threads of their own: `Engine::call_out`).
    let database_threads = (settings.database.pool_size as usize).div_ceil(workers);
    // The access log renders its line's parts for every request, whether or not the level
    // lets the line out; with `info` off it is left out of the chain.
    let access_log = log::log_enabled!(target: "actix_web::middleware::logger", log::Level::Info);
    let limits = TimeLimits::from_settings(settings);
    let headers = security_headers(settings);
    let server_settings = &settings.server;
    let address = listener.local_addr().map_or_else(|_| server_settings.bind.clone(), |a| a.to_string());
    let server = HttpServer::new(move || {
        App::new()
            .wrap(from_fn({
                let headers = headers.clone();
                move |req: ServiceRequest, next: Next<_>| time_limits(req, next, limits, headers.clone())
            }))
            .wrap(Condition::new(
                access_log,
                Logger::new(r#"%a "%{request}xi" %s %b %Dms"#).custom_request_replace("request", |req| {
                    let line = redacted_request_line(req.method().as_str(), &req.uri().to_string());
                    Untrusted(&line).to_string()
                }),
            ))
            .wrap(headers.iter().cloned().fold(DefaultHeaders::new(), DefaultHeaders::add))
            .wrap(from_fn(controllers::lang::remember_choice))
            // Outermost: the latency covers every middleware, and the answer's final status.
            .wrap(from_fn({
                let worker_metrics = state.http_metrics.for_worker();
                move |req: ServiceRequest, next: Next<_>| {
                    crate::metrics::measure(req, next, worker_metrics.clone())
                }
            }))
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .app_data(web::FormConfig::default().limit(MAX_BODY_BYTES).error_handler(form_error))
            .app_data(web::JsonConfig::default().limit(MAX_BODY_BYTES).error_handler(json_error))
            .service(web::scope("/api").wrap(from_fn(api_envelope)).configure(controllers::api_routes))
            .service(
                web::scope("/public")
                    .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "public, max-age=3600")))
                    .service(actix_files::Files::new("", "public")),
            )
            .configure(controllers::page_routes)
            .configure(|cfg| {
                if let Some(sandbox) = &sandbox {
                    cfg.app_data(sandbox.alipay.clone())
                        .app_data(sandbox.weixin.clone())
                        .app_data(sandbox.wechat_pay.clone());
                    cfg.service(web::scope("/sandbox").configure(crate::sandbox::routes));
                }
            })
            .default_service(web::to(controllers::not_found))
    })
    .workers(workers)
    .worker_max_blocking_threads(database_threads)
    .max_connections(server_settings.max_connections_per_worker)
    .client_request_timeout(Duration::from_secs(server_settings.head_timeout_secs))
    .client_disconnect_timeout(Duration::from_secs(server_settings.disconnect_timeout_secs))
    .keep_alive(Duration::from_secs(server_settings.keep_alive_secs))
    .listen(listener)
    .map_err(|source| StartupError::Bind { bind: address, source })?
    .run();
    Ok(server)
}

/// Query values that are credentials (WeChat's `secret` and `access_token`, seen by the sandbox),
/// would let a reader of the log replay a portal request (its signatures, nonce and `echostr`),
/// or belong to a login inside WeChat under way (its `code` and `state`, on the callback and the
/// code exchange), or open an order's payment form (a pay link's `sig`) never reach the access
/// log. No other route takes parameters of these names.
const SECRET_PARAMS: [&str; 9] =
    ["secret", "access_token", "signature", "msg_signature", "nonce", "echostr", "code", "state", "sig"];

/// `METHOD /path?query` with the values of [`SECRET_PARAMS`] replaced by `***`.
pub fn redacted_request_line(method: &str, uri: &str) -> String {
    let Some((path, query)) = uri.split_once('?') else { return format!("{method} {uri}") };
    let query = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if SECRET_PARAMS.contains(&key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&");
    format!("{method} {path}?{query}")
}

/// Where to click: the shop, the sandbox's phone, cashier and inbox, and the admin console.
fn print_quick_start(settings: &Settings, generated_password: bool) {
    let public = &settings.server.public_url;
    log::info!("shop:   {public}/");
    if settings.sandbox.enabled {
        log::info!(
            "sandbox: log in at {public}/login and press 'Open the sandbox phone'; Buy leads to the sandbox cashier ({public}/sandbox/alipay/gateway.do); WeChat messages land in {public}/sandbox/weixin/inbox"
        );
    }
    if generated_password {
        // Printed once, on purpose: there is no other way to learn a generated dev password.
        log::info!(
            "admin:  {public}/admin  (user {}, password {} generated for this run; set admin.password to choose one)",
            settings.admin.username,
            settings.admin.password.expose()
        );
    } else {
        log::info!("admin:  {public}/admin  (user {})", settings.admin.username);
    }
}

/// Where the checkout form may go: the gateway, and, for Alipay's own gateway, the cashier hosts
/// it redirects the submitted form to (browsers apply `form-action` to those redirects too).
fn cashier_origins(gateway_url: &str) -> String {
    match url_origin(gateway_url) {
        Some(origin) if origin.starts_with("https://") && origin.ends_with(".alipay.com") => {
            format!(" {origin} https://*.alipay.com")
        }
        Some(origin) => format!(" {origin}"),
        None => String::new(),
    }
}

/// The headers every answer carries: everything from our own origin only, scripts never inline;
/// images also from the WeChat QR code's host, WebSockets to our origin, forms to us, the Alipay
/// gateway and WeChat's 网页授权 page (a visitor's Buy inside WeChat is redirected on to it, and
/// browsers apply `form-action` to redirects); never in a frame; HSTS when the shop is served
/// over https.
fn security_headers(settings: &Settings) -> SecurityHeaders {
    let origin = |url: &str| url_origin(url).map(|o| format!(" {o}")).unwrap_or_default();
    let own = origin(&settings.server.public_url);
    let websocket = own.replacen("http", "ws", 1);
    let policy = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'{}; connect-src 'self'{websocket}; \
         form-action 'self'{}{}; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        origin(&settings.weixin.qrcode_show_url),
        cashier_origins(&settings.alipay.gateway_url),
        origin(&settings.weixin.oauth_authorize_url),
    );
    // Answers carry a shopper's orders, forms and language: no shared cache may keep one (static
    // files set their own), and a page differs by the language cookie and header.
    let mut headers = vec![
        (header::CACHE_CONTROL, "no-store".to_owned()),
        (header::VARY, "Cookie, Accept-Language".to_owned()),
        (header::CONTENT_SECURITY_POLICY, policy),
        (header::X_FRAME_OPTIONS, "DENY".to_owned()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::REFERRER_POLICY, "strict-origin-when-cross-origin".to_owned()),
    ];
    if settings.server.public_url.starts_with("https://") {
        headers.push((header::STRICT_TRANSPORT_SECURITY, "max-age=31536000".to_owned()));
    }
    let valid =
        headers.into_iter().filter_map(|(name, value)| Some((name, HeaderValue::try_from(value).ok()?)));
    Arc::new(valid.collect())
}

type SecurityHeaders = Arc<Vec<(header::HeaderName, HeaderValue)>>;

#[derive(Debug, Clone, Copy)]
struct TimeLimits {
    body: Duration,
    request: Duration,
}

impl TimeLimits {
    fn from_settings(settings: &Settings) -> TimeLimits {
        TimeLimits {
            body: Duration::from_secs(settings.server.body_timeout_secs),
            request: Duration::from_secs(settings.server.request_timeout_secs),
        }
    }
}

/// A body still arriving `limits.body` after the head fails its reader, and the answer is a 408
/// (the body is unread, so actix closes the connection after it); a request not answered within
/// `limits.request` gets a 503. A WebSocket's stream (after a GET's upgrade) is not a body and has
/// no deadline; an upgrade asked for on any other method does not lift it.
async fn time_limits(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    limits: TimeLimits,
    headers: SecurityHeaders,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let late = Rc::new(Cell::new(false));
    let body = req.take_payload();
    if matches!(body, dev::Payload::None)
        || (req.method() == actix_web::http::Method::GET && req.head().upgrade())
    {
        req.set_payload(body);
    } else {
        let timer = Box::pin(actix_web::rt::time::sleep(limits.body));
        req.set_payload(dev::Payload::Stream {
            payload: Box::pin(Deadline { body, timer, late: late.clone() }),
        });
    }
    let api = req.path().starts_with("/api/");
    let what = format!("{} {}", req.method(), Untrusted(req.path()));
    match actix_web::rt::time::timeout(limits.request, next.call(req)).await {
        Ok(_) if late.get() => Err(refusal(|| AppError::RequestTimeout, api, headers)),
        Ok(answered) => answered.map(ServiceResponse::map_into_boxed_body),
        Err(_) => {
            let cause = format!("{what} took longer than server.request_timeout_secs");
            Err(refusal(move || AppError::Unavailable(cause.clone()), api, headers))
        }
    }
}

/// An error answered without the request (the middlewares outside never see a response): the
/// API's envelope or the error page, with the security headers.
fn refusal(error: impl Fn() -> AppError + 'static, api: bool, headers: SecurityHeaders) -> actix_web::Error {
    let mut refused = actix_web::Error::from(error());
    refused.add_response_mapper(move |page| {
        let mut response = if api { error().api_response() } else { page };
        for (name, value) in headers.iter() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response
    });
    refused
}

/// A request body with a deadline: past it, reading fails with `TimedOut` and `late` is set.
struct Deadline {
    body: dev::Payload,
    timer: Pin<Box<actix_web::rt::time::Sleep>>,
    late: Rc<Cell<bool>>,
}

impl Stream for Deadline {
    type Item = Result<web::Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(chunk) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(chunk);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.late.set(true);
        let timed_out =
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the request body arrived too slowly");
        Poll::Ready(Some(Err(PayloadError::Io(timed_out))))
    }
}

/// A refused request's parser detail goes to the log; the client gets `message` only.
fn malformed(message: &str, detail: impl std::fmt::Display, req: &HttpRequest) -> AppError {
    log::info!("{message} at {}: {}", Untrusted(req.path()), Untrusted(&detail.to_string()));
    AppError::BadRequest(message.to_owned())
}

fn form_error(e: UrlencodedError, req: &HttpRequest) -> actix_web::Error {
    match e {
        UrlencodedError::Overflow { .. } => AppError::PayloadTooLarge,
        other => malformed("非法参数：表单格式错误", other, req),
    }
    .into()
}

fn json_error(e: JsonPayloadError, req: &HttpRequest) -> actix_web::Error {
    match e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            AppError::PayloadTooLarge
        }
        other => malformed("非法参数：JSON 格式错误", other, req),
    }
    .into()
}

fn query_error(e: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    malformed("非法参数：查询参数格式错误", e, req).into()
}

#[cfg(test)]
mod tests {
    use super::{redacted_request_line, security_headers};
    use crate::config::Settings;

    fn header<'a>(headers: &'a super::SecurityHeaders, name: &str) -> Option<&'a str> {
        headers.iter().find(|(n, _)| n.as_str() == name).and_then(|(_, v)| v.to_str().ok())
    }

    #[test]
    fn the_policy_names_the_configured_platforms_and_https_adds_hsts() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut settings = Settings::load_from(&dir, None, Some(Default::default())).expect("defaults");
        settings.server.public_url = "https://shop.example".into();
        settings.sandbox.enabled = false;
        settings.weixin.qrcode_show_url = "https://mp.weixin.qq.com/cgi-bin/showqrcode".into();
        settings.alipay.gateway_url = "https://openapi.alipay.com/gateway.do".into();
        settings.weixin.oauth_authorize_url = "https://open.weixin.qq.com/connect/oauth2/authorize".into();
        let headers = security_headers(&settings.resolve("127.0.0.1:8080".parse().expect("address")));
        let policy = header(&headers, "content-security-policy").expect("CSP");
        assert!(policy.contains("img-src 'self' https://mp.weixin.qq.com;"), "{policy}");
        assert!(policy.contains("connect-src 'self' wss://shop.example;"), "{policy}");
        assert!(
            policy.contains(
                "form-action 'self' https://openapi.alipay.com https://*.alipay.com https://open.weixin.qq.com;"
            ),
            "{policy}"
        );
        assert_eq!(header(&headers, "strict-transport-security"), Some("max-age=31536000"));
    }

    #[test]
    fn credentials_in_the_query_are_not_logged() {
        assert_eq!(
            redacted_request_line(
                "GET",
                "/sandbox/weixin/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=s3cr3t"
            ),
            "GET /sandbox/weixin/cgi-bin/token?grant_type=client_credential&appid=wx1&secret=***"
        );
        assert_eq!(redacted_request_line("POST", "/x?access_token=abc&n=1"), "POST /x?access_token=***&n=1");
        assert_eq!(redacted_request_line("GET", "/products/1"), "GET /products/1");
        assert_eq!(
            redacted_request_line("GET", "/orders/2612050000000107/pay?until=1796431327&sig=4729"),
            "GET /orders/2612050000000107/pay?until=1796431327&sig=***"
        );
        assert_eq!(
            redacted_request_line("GET", "/login/oauth/callback?code=061abc&state=9f2e"),
            "GET /login/oauth/callback?code=***&state=***"
        );
        assert_eq!(
            redacted_request_line(
                "POST",
                "/api/v1/weixin/portal/receive?signature=5f1e&timestamp=1700000000&nonce=831&openid=o1&encrypt_type=aes&msg_signature=9ab2"
            ),
            "POST /api/v1/weixin/portal/receive?signature=***&timestamp=1700000000&nonce=***&openid=o1&encrypt_type=aes&msg_signature=***"
        );
        assert_eq!(
            redacted_request_line(
                "GET",
                "/api/v1/weixin/portal/receive?signature=5f1e&timestamp=1&nonce=2&echostr=hi"
            ),
            "GET /api/v1/weixin/portal/receive?signature=***&timestamp=1&nonce=***&echostr=***"
        );
    }
}
