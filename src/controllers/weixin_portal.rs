//! WeChat calls us: the server check (GET) and pushed messages (POST), plain or in safe mode.
//! Every request must be signed over a recent timestamp and a nonce never used before; the ones
//! that are not count against the client's limit of unverified pushes.

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::controllers::client::ClientAddr;
use crate::error::AppError;
use crate::gateways::weixin::portal::{self, WxMessage};
use crate::gateways::weixin::safe_mode::SafeMode;
use crate::rate_limit;
use crate::services::weixin_portal::{self, Outcome, Refusal, SignedRequest};
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

fn signed_by_wechat(state: &AppState, query: &PortalQuery) -> Result<SignedRequest, Refusal> {
    weixin_portal::check_signed(
        state.settings.weixin.token.expose(),
        query.signature.as_deref(),
        query.timestamp.as_deref(),
        query.nonce.as_deref(),
        chrono::Utc::now().timestamp(),
    )
}

/// The answer to a request that failed verification: 401, or 429 once the client has sent more
/// such requests than its limit allows.
fn refuse(state: &AppState, client: ClientAddr, refusal: Refusal) -> HttpResponse {
    if !rate_limit::allow(&state.limits.unverified_portal_pushes, client.0) {
        log::debug!("weixin portal: {client} is over its limit of unverified requests ({refusal})");
        return super::too_many_requests("too many unverified requests");
    }
    log::warn!("weixin portal: request from {client} refused: {refusal}");
    HttpResponse::Unauthorized().content_type("text/plain").body("invalid signature")
}

/// The URL check WeChat makes when the portal is configured: echo `echostr` verbatim.
async fn verify_server(
    state: web::Data<AppState>,
    client: ClientAddr,
    query: web::Query<PortalQuery>,
) -> Result<HttpResponse, AppError> {
    let request = match signed_by_wechat(&state, &query) {
        Ok(request) => request,
        Err(refusal) => return Ok(refuse(&state, client, refusal)),
    };
    if !state.engine.run(move |conn| weixin_portal::use_nonce(conn, &request)).await? {
        return Ok(refuse(&state, client, Refusal::Replayed));
    }
    Ok(HttpResponse::Ok().content_type("text/plain").body(query.echostr.clone().unwrap_or_default()))
}

async fn receive(
    state: web::Data<AppState>,
    client: ClientAddr,
    query: web::Query<PortalQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let request = match signed_by_wechat(&state, &query) {
        Ok(request) => request,
        Err(refusal) => return Ok(refuse(&state, client, refusal)),
    };
    let xml = std::str::from_utf8(&body).map_err(|_| AppError::BadRequest("the body is not UTF-8".into()))?;
    let envelope = portal::parse(xml)?;
    let settings = &state.settings;
    let safe_mode = if query.encrypt_type.as_deref() == Some("aes") {
        if settings.weixin.encoding_aes_key.is_empty() {
            return Err(AppError::BadRequest("safe mode is not configured".into()));
        }
        let (timestamp, nonce) =
            (query.timestamp.as_deref().unwrap_or(""), query.nonce.as_deref().unwrap_or(""));
        let expected =
            portal::signature(&[settings.weixin.token.expose(), timestamp, nonce, &envelope.encrypt]);
        if !portal::signature_matches(&expected, query.msg_signature.as_deref().unwrap_or("")) {
            return Ok(refuse(&state, client, Refusal::BadSignature));
        }
        Some(SafeMode::new(settings.weixin.encoding_aes_key.expose(), &settings.weixin.app_id)?)
    } else if !settings.weixin.encoding_aes_key.is_empty() && !settings.weixin.accept_plain_messages {
        return Ok(refuse(&state, client, Refusal::PlainMessage));
    } else {
        None
    };
    let message: WxMessage = match &safe_mode {
        Some(safe) => portal::parse(&safe.decrypt(&envelope.encrypt)?)?,
        None => envelope,
    };
    let (outcome, message) = state
        .engine
        .run(move |conn| {
            let outcome = weixin_portal::receive(conn, &request, &message)?;
            Ok((outcome, message))
        })
        .await?;
    let text = match outcome {
        Outcome::Replayed => return Ok(refuse(&state, client, Refusal::Replayed)),
        Outcome::Handled(None) => return Ok(HttpResponse::Ok().content_type("text/plain").body("success")),
        Outcome::Handled(Some(text)) => text,
    };
    let reply_xml = portal::text_reply(&message, &text, chrono::Utc::now().timestamp());
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
