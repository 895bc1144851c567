//! Thin HTTP handlers: extract, call a service inside `web::block`, render a template or JSON.
//! Routes are registered per area.

pub mod admin;
pub mod alipay;
pub mod client;
pub mod coupon;
pub mod csrf;
pub mod device;
pub mod group_buy;
pub mod health;
pub mod identity;
pub mod lang;
pub mod login;
pub mod metrics;
pub mod next;
pub mod order;
pub mod product;
pub mod wechat_pay;
pub mod weixin_portal;

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::error::AppError;

/// Routes under `/api` (the envelope middleware wraps them).
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    alipay::api_routes(cfg);
    coupon::api_routes(cfg);
    group_buy::api_routes(cfg);
    login::api_routes(cfg);
    order::api_routes(cfg);
    wechat_pay::api_routes(cfg);
    weixin_portal::api_routes(cfg);
}

/// Pages and operational endpoints.
pub fn page_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/favicon.ico", web::get().to(favicon));
    health::routes(cfg);
    metrics::routes(cfg);
    product::routes(cfg);
    login::routes(cfg);
    order::routes(cfg);
    coupon::routes(cfg);
    admin::routes(cfg);
}

pub fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((actix_web::http::header::LOCATION, location)).finish()
}

/// A plain-text 429 for the platforms' callbacks (WeChat and Alipay read text, not the envelope).
pub fn too_many_requests(body: &'static str) -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header((
            actix_web::http::header::RETRY_AFTER,
            crate::error::RATE_LIMITED_RETRY_AFTER_SECS.to_string(),
        ))
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

pub fn url_encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn no_page() -> AppError {
    AppError::NotFound("页面不存在".into())
}

/// The shop's icon where browsers look for it by default.
async fn favicon() -> Result<actix_files::NamedFile, AppError> {
    actix_files::NamedFile::open("public/favicon.ico").map_err(|_| no_page())
}

pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(no_page())
}

/// Renders a page through the error policy (a template failure becomes the 500 page).
pub fn render(page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page.render()?))
}

/// What the top bar needs to know about the visitor.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub openid: Option<String>,
    /// The CSRF token of the shopper's forms (the Log out button); empty for a visitor.
    pub csrf: String,
}

/// The highest page number a list accepts; beyond it the offset would overflow.
pub const MAX_PAGE: i64 = 100_000;

/// A list's `page` parameter: absent is the first page; outside 1 to [`MAX_PAGE`] a 400.
pub fn page_number(page: Option<i64>) -> Result<i64, AppError> {
    match page.unwrap_or(1) {
        page @ 1..=MAX_PAGE => Ok(page),
        _ => Err(AppError::BadRequest(format!("非法参数：page 须为 1 到 {MAX_PAGE} 的整数"))),
    }
}

/// Filters the templates use.
pub mod filters {
    /// Cents as yuan: `{{ 168|yuan }}` -> `1.68`.
    #[askama::filter_fn]
    pub fn yuan(cents: &i64, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(crate::money::format_yuan(*cents))
    }

    /// A UTC timestamp as China time, the shop's display zone: `{{ order.order_time|china_time }}`.
    #[askama::filter_fn]
    pub fn china_time(at: &chrono::NaiveDateTime, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(crate::china_time::format(*at))
    }
}
