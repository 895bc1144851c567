//! WeChat Pay calls us: the payment and refund notifications (API v3).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::client::ClientAddr;
use crate::error::AppError;
use crate::gateways::wechat_pay::SignedHeaders;
use crate::rate_limit;
use crate::services::payment::{self, NotifyAnswer, WxNotification};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/wechat_pay/notify", web::post().to(notify));
}

/// WeChat Pay's answer: 204 once the effect is stored; otherwise a failure it resends on, with
/// `{"code":"FAIL","message":…}`. The signature over the raw body is checked before anything
/// reads it. A client whose notifications keep failing verification is answered 429 without
/// storing more of them; verified notifications are never limited. Without WeChat Pay configured
/// the route answers 404.
async fn notify(
    req: HttpRequest,
    state: web::Data<AppState>,
    client: ClientAddr,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let Some(wechat_pay) = state.gateways.wechat_pay.clone() else {
        return Err(AppError::NotFound("接口不存在".into()));
    };
    let raw = String::from_utf8(body.to_vec())
        .map_err(|_| AppError::BadRequest("非法参数：body 须为 UTF-8".into()))?;
    let headers = SignedHeaders::read(|name| req.headers().get(name).and_then(|v| v.to_str().ok()));
    let notification = Arc::new(WxNotification::received(&wechat_pay, &headers, raw));
    if !notification.is_verified() && !rate_limit::allow(&state.limits.unverified_notifications, client.0) {
        return Ok(failure(StatusCode::TOO_MANY_REQUESTS, "请求过于频繁"));
    }
    let (received, settings) = (notification.clone(), state.settings.clone());
    let handled = state
        .engine
        .write(move |conn| payment::handle_wechat_notify(conn, &settings.database, &received))
        .await;
    let (answer, failed_status) = match handled {
        Ok(handled) => {
            if handled.enqueued {
                state.wake.wake();
            }
            (handled.answer, StatusCode::BAD_REQUEST)
        }
        Err(e) => {
            state.engine.write(move |conn| payment::keep_unprocessed_wx(conn, &notification, &e)).await?;
            (NotifyAnswer::Fail, StatusCode::INTERNAL_SERVER_ERROR)
        }
    };
    crate::metrics::notification_answered(answer == NotifyAnswer::Success);
    Ok(match answer {
        NotifyAnswer::Success => HttpResponse::NoContent().finish(),
        NotifyAnswer::Fail => failure(failed_status, "失败"),
    })
}

fn failure(status: StatusCode, message: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({ "code": "FAIL", "message": message }))
}
