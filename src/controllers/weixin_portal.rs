//! WeChat calls us: the server check (GET) and pushed messages (POST), plain or in safe mode.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::error::AppError;
use crate::services::weixin_portal::{self, SafeMode, WxMessage};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/weixin/portal/receive", web::get().to(verify_server))
        .route("/v1/weixin/portal/receive", web::post().to(receive));
}

#[derive(Deserialize)]
struct PortalQuery {
    signature: Option<String>,
    timestamp: Option<String>,
    nonce: Option<String>,
    echostr: Option<String>,
    encrypt_type: Option<String>,
    msg_signature: Option<String>,
}

fn signed_by_wechat(state: &AppState, query: &PortalQuery) -> bool {
    let (Some(signature), Some(timestamp), Some(nonce)) = (&query.signature, &query.timestamp, &query.nonce)
    else {
        return false;
    };
    let expected = weixin_portal::signature(&[state.settings.weixin.token.expose(), timestamp, nonce]);
    weixin_portal::signature_matches(&expected, signature)
}

fn unauthorized() -> HttpResponse {
    log::warn!("weixin portal: request with a bad or missing signature refused");
    HttpResponse::Unauthorized().content_type("text/plain").body("invalid signature")
}

/// The URL check WeChat makes when the portal is configured: echo `echostr` verbatim.
async fn verify_server(state: web::Data<AppState>, query: web::Query<PortalQuery>) -> HttpResponse {
    if !signed_by_wechat(&state, &query) {
        return unauthorized();
    }
    HttpResponse::Ok().content_type("text/plain").body(query.echostr.clone().unwrap_or_default())
}

async fn receive(
    state: web::Data<AppState>,
    query: web::Query<PortalQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    if !signed_by_wechat(&state, &query) {
        return Ok(unauthorized());
    }
    let xml = std::str::from_utf8(&body).map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let envelope = weixin_portal::parse(xml)?;
    let settings = &state.settings;
    let safe_mode = if query.encrypt_type.as_deref() == Some("aes") {
        if settings.weixin.encoding_aes_key.is_empty() {
            return Err(AppError::BadRequest("safe mode is not configured".into()));
        }
        let (timestamp, nonce) =
            (query.timestamp.as_deref().unwrap_or(""), query.nonce.as_deref().unwrap_or(""));
        let expected =
            weixin_portal::signature(&[settings.weixin.token.expose(), timestamp, nonce, &envelope.encrypt]);
        if !weixin_portal::signature_matches(&expected, query.msg_signature.as_deref().unwrap_or("")) {
            return Ok(unauthorized());
        }
        Some(SafeMode::new(settings.weixin.encoding_aes_key.expose(), &settings.weixin.app_id)?)
    } else {
        None
    };
    let message: WxMessage = match &safe_mode {
        Some(safe) => weixin_portal::parse(&safe.decrypt(&envelope.encrypt)?)?,
        None => envelope,
    };
    let (reply, message) = state
        .db(move |conn| {
            let reply = weixin_portal::handle(conn, &message)?;
            Ok((reply, message))
        })
        .await?;
    let Some(text) = reply else {
        return Ok(HttpResponse::Ok().content_type("text/plain").body("success"));
    };
    let reply_xml = weixin_portal::text_reply(&message, &text, chrono::Utc::now().timestamp());
    let body = match &safe_mode {
        Some(safe) => safe.wrap_reply(
            settings.weixin.token.expose(),
            &reply_xml,
            query.timestamp.as_deref().unwrap_or(""),
            query.nonce.as_deref().unwrap_or(""),
        )?,
        None => reply_xml,
    };
    Ok(HttpResponse::Ok().content_type("application/xml; charset=utf-8").body(body))
}
