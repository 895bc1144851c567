//! Builds the application: binds the listener first (so port 0 works), prepares the database,
//! and registers the routes of each area.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::error::{JsonPayloadError, UrlencodedError};
use actix_web::http::header;
use actix_web::middleware::{Condition, DefaultHeaders, Logger, from_fn};
use actix_web::{App, HttpRequest, HttpServer, web};

use crate::config::Settings;
use crate::controllers;
use crate::db::writer::Writer;
use crate::db::{self, Checkpointer, DatabaseLocation};
use crate::error::{AppError, api_envelope};
use crate::gateways::alipay::AlipayClient;
use crate::gateways::weixin::WeixinClient;
use crate::jobs::{Background, Worker};
use crate::rate_limit::RateLimits;
use crate::sandbox::alipay::AlipaySandbox;
use crate::sandbox::weixin::WeixinSandbox;
use crate::services::catalogue::ShopWindow;
use crate::services::order::OrderNumbers;
use crate::signing::SigningThreads;
use crate::state::AppState;

/// Bodies larger than this are refused before any handler sees them.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot listen on {bind}: {source}")]
    Bind { bind: String, source: std::io::Error },
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error("{0}")]
    Keys(String),
    #[error("cannot start the {0}: {1}")]
    Thread(&'static str, std::io::Error),
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
    pub async fn build(settings: Settings) -> Result<Application, StartupError> {
        let bind_error = |source| StartupError::Bind { bind: settings.server.bind.clone(), source };
        let listener = TcpListener::bind(&settings.server.bind).map_err(bind_error)?;
        let address = listener.local_addr().map_err(bind_error)?;
        let generated_password = settings.admin.password.is_empty();
        let settings = Arc::new(settings.resolve(address));

        let sandbox = if settings.sandbox.enabled {
            crate::sandbox::alipay::ensure_keys(&settings).map_err(StartupError::Keys)?;
            let alipay = web::Data::new(Arc::new(AlipaySandbox::new(&settings).map_err(StartupError::Keys)?));
            Some((alipay, web::Data::new(WeixinSandbox::new(&settings))))
        } else {
            None
        };
        let alipay = Arc::new(AlipayClient::from_settings(&settings).map_err(StartupError::Keys)?);

        let location = DatabaseLocation::parse(settings.database.url.expose());
        let applied = db::prepare(&location)?;
        let pool = db::build_pool(&location, settings.database.pool_size)?;
        let checkpointer = Checkpointer::start(&location)?;
        let writer = Writer::start(&location)?;
        log::info!(
            "paymall listening on http://{address} (public URL {}), database {} at {} ({applied} migrations applied), sandbox {}",
            settings.server.public_url,
            location.backend,
            location.redacted(),
            if settings.sandbox.enabled { "on" } else { "off" },
        );

        let weixin = Arc::new(WeixinClient::from_settings(&settings));
        let limits = Arc::new(RateLimits::new(&settings.limits));
        let worker = Arc::new(Worker::new(
            pool.clone(),
            settings.clone(),
            alipay.clone(),
            weixin.clone(),
            limits.clone(),
        ));
        let instance = worker.owner.clone();
        let shop_window = ShopWindow::new(Duration::from_millis(settings.catalogue.list_max_age_ms));
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let state = web::Data::new(AppState {
            pool,
            settings: settings.clone(),
            alipay,
            weixin,
            instance,
            writer,
            shop_window,
            order_numbers: OrderNumbers::default(),
            signing: SigningThreads::start(workers)
                .map_err(|e| StartupError::Thread("signing threads", e))?,
            limits,
        });
        // Database work runs on actix's blocking threads (`web::block`); there are as many as pooled
        // connections, so under load work queues instead of parking threads on the pool and waking
        // them one by one (gateway calls run on threads of their own: `AppState::call_out`).
        let database_threads = (settings.database.pool_size as usize).div_ceil(workers);
        // The access log renders its line's parts for every request, whether or not the level
        // lets the line out; with `info` off it is left out of the chain.
        let access_log = log::log_enabled!(target: "actix_web::middleware::logger", log::Level::Info);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(Condition::new(
                    access_log,
                    Logger::new(r#"%a "%{request}xi" %s %b %Dms"#).custom_request_replace("request", |req| {
                        redacted_request_line(req.method().as_str(), &req.uri().to_string())
                    }),
                ))
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
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
                    if let Some((alipay, weixin)) = &sandbox {
                        cfg.app_data(alipay.clone()).app_data(weixin.clone());
                        cfg.service(web::scope("/sandbox").configure(crate::sandbox::routes));
                    }
                })
                .default_service(web::to(controllers::not_found))
        })
        .workers(workers)
        .worker_max_blocking_threads(database_threads)
        .listen(listener)
        .map_err(|source| StartupError::Bind { bind: address.to_string(), source })?
        .run();

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
            _checkpointer: checkpointer,
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

/// Query values that are credentials (WeChat's `secret` and `access_token`, seen by the sandbox)
/// or would let a reader of the log replay a portal request (its signatures, nonce and
/// `echostr`) never reach the access log.
const SECRET_PARAMS: [&str; 6] = ["secret", "access_token", "signature", "msg_signature", "nonce", "echostr"];

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

fn form_error(e: UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    match e {
        UrlencodedError::Overflow { .. } => AppError::PayloadTooLarge,
        other => AppError::BadRequest(format!("malformed form: {other}")),
    }
    .into()
}

fn json_error(e: JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    match e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            AppError::PayloadTooLarge
        }
        other => AppError::BadRequest(format!("malformed JSON: {other}")),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::redacted_request_line;

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
