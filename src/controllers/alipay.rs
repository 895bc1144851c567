//! Alipay calls us: the async payment notification.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::error::AppError;
use crate::services::payment::{self, Notification};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/alipay/alipay_notify_url", web::post().to(notify));
}

/// Answers exactly `success` once the effect is stored; `fail` (Alipay resends) otherwise.
async fn notify(state: web::Data<AppState>, body: web::Bytes) -> Result<HttpResponse, AppError> {
    let raw =
        String::from_utf8(body.to_vec()).map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let params: Vec<(String, String)> =
        serde_urlencoded::from_str(&raw).map_err(|e| AppError::BadRequest(format!("malformed form: {e}")))?;
    let notification = Arc::new(Notification::received(&state.alipay, &state.settings, params, raw));
    let received = notification.clone();
    let handled = state.db_write(move |conn| payment::handle_notify(conn, &received)).await;
    let answer = match handled {
        Ok(answer) => answer,
        Err(e) => state.db_write(move |conn| payment::keep_unprocessed(conn, &notification, &e)).await?,
    };
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(answer.as_str()))
}
