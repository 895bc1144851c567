//! Alipay calls us: the async payment notification.

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use super::client::ClientAddr;
use crate::error::AppError;
use crate::rate_limit;
use crate::services::payment::{self, Notification, NotifyAnswer};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/alipay/alipay_notify_url", web::post().to(notify));
}

/// Answers exactly `success` once the effect is stored; `fail` (Alipay resends) otherwise.
/// A client whose notifications keep failing verification is answered 429 without storing
/// more of them; verified notifications are never limited.
async fn notify(
    state: web::Data<AppState>,
    client: ClientAddr,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let raw =
        String::from_utf8(body.to_vec()).map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let notification = Arc::new(Notification::received(&state.gateways.alipay, raw));
    if !notification.is_verified() && !rate_limit::allow(&state.limits.unverified_notifications, client.0) {
        return Ok(super::too_many_requests(NotifyAnswer::Fail.as_str()));
    }
    let (received, settings) = (notification.clone(), state.settings.clone());
    let handled =
        state.engine.write(move |conn| payment::handle_notify(conn, &settings.database, &received)).await;
    let answer = match handled {
        Ok(handled) => {
            // Committed: the background thread delivers now instead of at its next tick.
            if handled.enqueued {
                state.wake.wake();
            }
            handled.answer
        }
        Err(e) => state.engine.write(move |conn| payment::keep_unprocessed(conn, &notification, &e)).await?,
    };
    crate::metrics::notification_answered(answer == NotifyAnswer::Success);
    Ok(HttpResponse::Ok().content_type("text/plain; charset=utf-8").body(answer.as_str()))
}
