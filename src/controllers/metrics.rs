//! `GET /metrics`: Prometheus's text format, behind `metrics.token` when one is set.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::AppError;
use crate::metrics::{self, PoolState};
use crate::services::operations;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(scrape));
}

/// The metrics as of now; 401 without the configured bearer token.
async fn scrape(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, AppError> {
    let bearer = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !token_matches(state.settings.metrics.token.expose(), bearer) {
        return Ok(HttpResponse::Unauthorized()
            .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"paymall metrics\""))
            .content_type("text/plain; charset=utf-8")
            .body("a bearer token is required"));
    }
    let snapshot = state.engine.run(operations::snapshot).await?;
    let pool = state.engine.pool().state();
    let pool = PoolState { connections: pool.connections, idle: pool.idle_connections };
    let text = metrics::render(&state.http_metrics, &snapshot, pool)?;
    Ok(HttpResponse::Ok().content_type(metrics::CONTENT_TYPE).body(text))
}

/// Open when no token is configured; otherwise `Bearer <token>`, compared in constant time (over
/// digests, so lengths leak nothing).
fn token_matches(configured: &str, authorization: Option<&str>) -> bool {
    if configured.is_empty() {
        return true;
    }
    let Some(given) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else { return false };
    let (a, b) = (openssl::sha::sha256(configured.as_bytes()), openssl::sha::sha256(given.trim().as_bytes()));
    openssl::memcmp::eq(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::token_matches;

    #[test]
    fn the_token_is_a_bearer_when_set() {
        assert!(token_matches("", None));
        assert!(token_matches("", Some("Bearer anything")));
        assert!(!token_matches("s3cret", None));
        assert!(!token_matches("s3cret", Some("s3cret")));
        assert!(!token_matches("s3cret", Some("Bearer s3cre")));
        assert!(!token_matches("s3cret", Some("Basic s3cret")));
        assert!(token_matches("s3cret", Some("Bearer s3cret")));
    }
}
