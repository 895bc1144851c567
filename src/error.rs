//! One error type for the whole request path, with one policy:
//! - a page gets the HTML error page for the status, with a short message a shopper can act on;
//! - anything under `/api` gets the original project's envelope `{code, info, data: null}`
//!   (`0002` bad argument, `0003` 未登录, a refusal's own code such as `C0007`, `0001`
//!   everything else) via [`api_envelope`]; `info` is the original's Chinese wording whatever
//!   the page language, and so are the messages the error page shows;
//! - server-side failures (5xx) are logged once, here, with their cause; the client never sees
//!   the cause, nor a parser's account of what it did not like;
//! - a 503 and a 429 carry `Retry-After`.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentType};
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};
use askama::Template;

use crate::i18n::Lang;
use crate::log_escape::Untrusted;

/// Seconds a 503 asks the client to wait before trying again.
pub const RETRY_AFTER_SECS: u32 = 5;
/// Seconds a client over its rate limit (429) is asked to wait: the limits are per minute.
pub const RATE_LIMITED_RETRY_AFTER_SECS: u32 = 60;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("未登录")]
    NotLoggedIn,
    /// An admin page without an admin session: redirect to the sign-in (the location).
    #[error("请先以管理员身份登录")]
    AdminLogin(String),
    #[error("{0}")]
    Forbidden(String),
    /// The request is valid but the state does not allow it (sold out, already paid, ...).
    #[error("{0}")]
    Conflict(String),
    /// A business rule refuses the request with a code of its own (`C0001`, ...) and its
    /// shopper-facing text; answered 409.
    #[error("{info}")]
    Refused { code: &'static str, info: &'static str },
    #[error("请求内容过大")]
    PayloadTooLarge,
    /// A client over its rate limit (answered with `Retry-After`).
    #[error("请求过于频繁，请一分钟后再试")]
    TooManyRequests,
    /// The body was still arriving when `server.body_timeout_secs` ran out.
    #[error("请求超时")]
    RequestTimeout,
    /// An outside platform (WeChat, Alipay) failed or could not be reached: a message for the
    /// client, and what exactly happened for the log and the operator.
    #[error("{message}")]
    Gateway { message: String, cause: String },
    #[error("系统繁忙，请稍后再试")]
    Unavailable(String),
    #[error("调用失败")]
    Internal(String),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        AppError::Internal(cause.to_string())
    }

    /// The envelope code of the original API.
    pub fn api_code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) | AppError::PayloadTooLarge | AppError::RequestTimeout => "0002",
            AppError::NotLoggedIn => "0003",
            AppError::Refused { code, .. } => code,
            _ => "0001",
        }
    }

    /// The cause kept for the log, when there is more to say than the public message.
    fn cause(&self) -> Option<&str> {
        match self {
            AppError::Unavailable(c) | AppError::Internal(c) | AppError::Gateway { cause: c, .. } => Some(c),
            _ => None,
        }
    }

    /// What an operator needs to know (outbox `last_error`, gateway call records): the cause
    /// when there is one, else the message.
    pub fn detail(&self) -> String {
        self.cause().map_or_else(|| self.to_string(), str::to_owned)
    }
}

/// A lost connection, or a SQLite database another process keeps locked, is the database
/// being unavailable (503); any other database failure is ours (500).
impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::NotFound => AppError::NotFound("not found".into()),
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => AppError::Unavailable(format!("database: {e}")),
            Error::DatabaseError(_, ref info) if info.message().contains("database is locked") => {
                AppError::Unavailable(format!("database: {e}"))
            }
            other => AppError::Internal(format!("database: {other}")),
        }
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        AppError::Unavailable(e.to_string())
    }
}

impl From<diesel::r2d2::PoolError> for AppError {
    fn from(e: diesel::r2d2::PoolError) -> Self {
        AppError::Unavailable(format!("database pool: {e}"))
    }
}

impl From<actix_web::error::BlockingError> for AppError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        AppError::Internal(format!("blocking task: {e}"))
    }
}

impl From<askama::Error> for AppError {
    fn from(e: askama::Error) -> Self {
        AppError::Internal(format!("template: {e}"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    lang: Lang,
    status: u16,
    title: String,
    message: String,
}

/// The statuses the error page has a title for (the message `http-<status>`); any other is
/// titled `http-other`.
const TITLED_STATUSES: [u16; 11] = [400, 401, 403, 404, 408, 409, 413, 429, 500, 502, 503];

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        match self {
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::NotLoggedIn => StatusCode::UNAUTHORIZED,
            AppError::AdminLogin(_) => StatusCode::SEE_OTHER,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::Conflict(_) | AppError::Refused { .. } => StatusCode::CONFLICT,
            AppError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            AppError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            AppError::Gateway { .. } => StatusCode::BAD_GATEWAY,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let AppError::AdminLogin(location) = self {
            return HttpResponse::SeeOther()
                .insert_header((actix_web::http::header::LOCATION, location.as_str()))
                .finish();
        }
        let status = self.status_code();
        if status.is_server_error() {
            log::error!("{status}: {self} ({})", self.cause().unwrap_or("no further cause"));
        }
        // The page has no request to read a language from: it speaks the shop's default.
        let (lang, code) = (Lang::default(), status.as_u16());
        let title =
            if TITLED_STATUSES.contains(&code) { lang.keyed("http", code) } else { lang.t("http-other") };
        let page = ErrorPage { lang, status: code, title, message: self.to_string() };
        let body = page.render().unwrap_or_else(|_| format!("<h1>{status}</h1>"));
        response_for(status).content_type(ContentType::html()).body(body)
    }
}

impl AppError {
    /// The error as the API answers it: the envelope, with the status of the page.
    pub fn api_response(&self) -> HttpResponse {
        envelope_response(self.status_code(), self.api_code(), self.to_string())
    }
}

/// A response of `status`, with `Retry-After` when it is a 503 or a 429.
fn response_for(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    let retry_after = match status {
        StatusCode::SERVICE_UNAVAILABLE => Some(RETRY_AFTER_SECS),
        StatusCode::TOO_MANY_REQUESTS => Some(RATE_LIMITED_RETRY_AFTER_SECS),
        _ => None,
    };
    if let Some(secs) = retry_after {
        builder.insert_header((header::RETRY_AFTER, secs.to_string()));
    }
    builder
}

fn envelope_response(status: StatusCode, code: &str, info: String) -> HttpResponse {
    response_for(status).json(Envelope::<()> { code: code.into(), info, data: None })
}

/// The JSON envelope of the original API: `{"code":"0000","info":"调用成功","data":...}`.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Envelope<T> {
    pub code: String,
    pub info: String,
    pub data: Option<T>,
}

impl<T: serde::Serialize> Envelope<T> {
    pub fn ok(data: T) -> HttpResponse {
        HttpResponse::Ok()
            .json(Envelope { code: "0000".into(), info: "调用成功".into(), data: Some(data) })
    }
}

/// Middleware for the `/api` scope: turns any error response that carries an [`AppError`] (or
/// any other actix error) into the envelope, keeping the HTTP status.
pub async fn api_envelope(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let envelope = match res.response().error() {
        Some(err) => match err.as_error::<AppError>() {
            Some(app) => Some((app.api_code(), app.to_string())),
            None => {
                // Another layer's error (an extractor, the router): its text stays in the log.
                log::info!(
                    "{status} for {}: {}",
                    Untrusted(res.request().path()),
                    Untrusted(&err.to_string())
                );
                let (code, info) = if status.is_client_error() {
                    ("0002", "非法参数")
                } else {
                    ("0001", "调用失败")
                };
                Some((code, info.to_owned()))
            }
        },
        None if status == StatusCode::NOT_FOUND => Some(("0001", "接口不存在".to_owned())),
        None => None,
    };
    Ok(match envelope {
        Some((code, info)) => res.into_response(envelope_response(status, code, info)),
        None => res.map_into_boxed_body(),
    })
}
