//! Thin HTTP handlers: extract, call a service inside `web::block`, render a template or JSON.
//! Routes are registered per area.

pub mod csrf;
pub mod health;
pub mod identity;
pub mod product;

use actix_web::{HttpResponse, web};
use askama::Template;

use crate::error::AppError;

/// Routes under `/api` (the envelope middleware wraps them).
pub fn api_routes(cfg: &mut web::ServiceConfig) {
    let _ = cfg;
}

/// Pages and operational endpoints.
pub fn page_routes(cfg: &mut web::ServiceConfig) {
    health::routes(cfg);
    product::routes(cfg);
}

pub async fn not_found() -> Result<HttpResponse, AppError> {
    Err(AppError::NotFound("There is no page at this address.".into()))
}

/// Renders a page through the error policy (a template failure becomes the 500 page).
pub fn render(page: &impl Template) -> Result<HttpResponse, AppError> {
    Ok(HttpResponse::Ok().content_type("text/html; charset=utf-8").body(page.render()?))
}

/// What the top bar needs to know about the visitor.
#[derive(Debug, Clone, Default)]
pub struct Nav {
    pub openid: Option<String>,
}

/// Filters the templates use.
pub mod filters {
    /// Cents as yuan: `{{ 168|yuan }}` -> `1.68`.
    #[askama::filter_fn]
    pub fn yuan(cents: &i64, _: &dyn askama::Values) -> askama::Result<String> {
        Ok(crate::money::format_yuan(*cents))
    }
}
