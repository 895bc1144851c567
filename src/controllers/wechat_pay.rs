//! WeChat Pay: a shopper's order paid with it (the API's `create_pay_order`), and its calls to us,
//! the payment and refund notifications (API v3).

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use serde::{Deserialize, Serialize};

use super::client::ClientAddr;
use super::identity::session_token;
use super::order::{MarketChoice, shop};
use crate::error::{AppError, Envelope};
use crate::gateways::wechat_pay::{JsapiPayParams, SignedHeaders};
use crate::rate_limit;
use crate::services::order::{self as orders, PayMethod, Purchase, WechatPayment};
use crate::services::payment::{self, NotifyAnswer, WxNotification};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/wechat_pay/notify", web::post().to(notify))
        .route("/v1/wechat_pay/create_pay_order", web::post().to(create_pay_order));
}

/// WeChat Pay's two ways to pay on our pages.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum TradeType {
    /// A QR code the shopper scans with WeChat (a computer's page).
    Native,
    /// The WeChat browser's own pay call, as the shopper's openid.
    Jsapi,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateWechatPayOrder {
    product_id: String,
    coupon_id: Option<i64>,
    trade_type: TradeType,
    #[serde(flatten)]
    market: MarketChoice,
}

/// A WeChat Pay order to pay: its `codeUrl` to show as a QR code, or the JSAPI parameters for
/// `WeixinJSBridge.invoke('getBrandWCPayRequest', …)`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WechatPayOrderView {
    order_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    code_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jsapi: Option<JsapiPayParams>,
}

/// The shopper's order for the product paid with WeChat Pay, found or made, as
/// `create_pay_order` does for Alipay; an open order of Alipay's is closed there first.
async fn create_pay_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreateWechatPayOrder>,
) -> Result<HttpResponse, AppError> {
    let token = session_token(&req).ok_or(AppError::NotLoggedIn)?;
    let Some(wechat_pay) = state.gateways.wechat_pay.clone() else {
        return Err(AppError::Conflict("暂不支持微信支付".into()));
    };
    let CreateWechatPayOrder { product_id, coupon_id, trade_type, market } = body.into_inner();
    if product_id.trim().is_empty() {
        return Err(AppError::BadRequest("非法参数：缺少 productId".into()));
    }
    let method = match trade_type {
        TradeType::Native => PayMethod::WechatNative,
        TradeType::Jsapi => PayMethod::WechatJsapi,
    };
    let purchase = Purchase { product_id, coupon_id, group_buy: market.pick()?, method };
    let (_, to_pay) = orders::checkout(&shop(&state), token, purchase).await?;
    let order_id = to_pay.order.order_id.clone();
    let payment =
        state.engine.call_out(move |_| Ok(orders::wechat_payment(&wechat_pay, &to_pay.pay_form))).await?;
    let view = match payment {
        WechatPayment::Native { code_url } => {
            WechatPayOrderView { order_id, code_url: Some(code_url), jsapi: None }
        }
        WechatPayment::Jsapi(params) => WechatPayOrderView { order_id, code_url: None, jsapi: Some(params) },
    };
    Ok(Envelope::ok(view))
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
    let Ok(raw) = String::from_utf8(body.to_vec()) else {
        return Ok(failure(StatusCode::BAD_REQUEST, "非法参数：body 须为 UTF-8"));
    };
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
