//! WeChat's side: access tokens (short-lived on demand, and a switch that makes every issued
//! token stale so the refresh path runs), scene QR tickets with a real QR image, template
//! messages into an inbox, a "phone" that scans a ticket and pushes the signed event XML to
//! the shop's portal, as WeChat would (in safe mode when an EncodingAESKey is configured), and
//! 网页授权: the authorize page (pick an openid, approve) and the code exchange
//! `sns/oauth2/access_token` (codes good once, for five minutes).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::gateways::http_agent;
use crate::gateways::weixin::portal::{cdata, parse, signature};
use crate::gateways::weixin::safe_mode::SafeMode;
use crate::i18n::Lang;

const TOKEN_SECS: i64 = 7200;

/// How long a 网页授权 code can be exchanged, as WeChat's.
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// The openids the authorize page offers (any other can be typed in).
const SAMPLE_OPENIDS: [&str; 3] = ["o-sandbox-shopper", "o-sandbox-friend", "o-sandbox-newcomer"];

/// A 网页授权 code given out: whose it is, when, and whether it was exchanged.
struct OauthCode {
    openid: String,
    issued: Instant,
    used: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct InboxMessage {
    pub touser: String,
    pub template_id: String,
    pub url: String,
    pub client_msg_id: String,
    pub data: serde_json::Value,
}

pub struct WeixinSandbox {
    app_id: String,
    app_secret: String,
    token: String,
    original_id: String,
    portal_url: String,
    phone_url: String,
    /// The shop's public URL: the authorize page sends browsers back only under it.
    shop_url: String,
    /// Set when `weixin.encoding_aes_key` is: pushes go encrypted (`encrypt_type=aes`).
    safe_mode: Option<SafeMode>,
    /// access token -> still good.
    tokens: Mutex<HashMap<String, bool>>,
    /// ticket -> scene.
    tickets: Mutex<HashMap<String, String>>,
    followers: Mutex<HashSet<String>>,
    inbox: Mutex<Inbox>,
    tokens_issued: Mutex<u32>,
    /// code -> who it was given to.
    oauth_codes: Mutex<HashMap<String, OauthCode>>,
}

/// The inbox keeps the latest messages only: a shop that runs for days, or under a benchmark,
/// sends tens of thousands, and the sandbox lives in the shop's process.
const INBOX_KEEPS: usize = 1000;

#[derive(Default)]
struct Inbox {
    received: u64,
    latest: VecDeque<InboxMessage>,
}

impl WeixinSandbox {
    pub fn new(settings: &Settings) -> WeixinSandbox {
        let public = &settings.server.public_url;
        WeixinSandbox {
            app_id: settings.weixin.app_id.clone(),
            app_secret: settings.weixin.app_secret.expose().to_owned(),
            token: settings.weixin.token.expose().to_owned(),
            original_id: settings.weixin.original_id.clone(),
            portal_url: format!("{public}/api/v1/weixin/portal/receive"),
            phone_url: format!("{public}/sandbox/weixin/phone"),
            shop_url: format!("{public}/"),
            safe_mode: Some(&settings.weixin.encoding_aes_key)
                .filter(|key| !key.is_empty())
                .and_then(|key| SafeMode::new(key.expose(), &settings.weixin.app_id).ok()),
            tokens: Mutex::new(HashMap::new()),
            tickets: Mutex::new(HashMap::new()),
            followers: Mutex::new(HashSet::new()),
            inbox: Mutex::new(Inbox::default()),
            tokens_issued: Mutex::new(0),
            oauth_codes: Mutex::new(HashMap::new()),
        }
    }

    /// WeChat's answer to a call with an unknown or stale access token.
    fn refuse_stale(&self, query: &TokenParam) -> Option<HttpResponse> {
        let token = query.access_token.as_deref().unwrap_or("");
        let good = self.tokens.lock().expect("sandbox lock").get(token).copied().unwrap_or(false);
        (!good).then(|| error(40001, "invalid credential, access_token is invalid or not latest"))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/cgi-bin/token", web::get().to(token))
        .route("/cgi-bin/qrcode/create", web::post().to(qrcode_create))
        .route("/cgi-bin/message/template/send", web::post().to(template_send))
        .route("/cgi-bin/showqrcode", web::get().to(show_qrcode))
        .route("/phone", web::get().to(phone))
        .route("/phone/scan", web::post().to(scan))
        .route("/connect/oauth2/authorize", web::get().to(authorize))
        .route("/connect/oauth2/approve", web::post().to(approve))
        .route("/sns/oauth2/access_token", web::get().to(oauth_access_token))
        .route("/inbox", web::get().to(inbox_page))
        .route("/inbox.json", web::get().to(inbox_json))
        .route("/stats.json", web::get().to(stats))
        .route("/expire_tokens", web::post().to(expire_tokens));
}

fn error(code: i64, message: &str) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "errcode": code, "errmsg": message }))
}

/// The query of the two calls that take the AppSecret: `cgi-bin/token` and
/// `sns/oauth2/access_token` (which also takes a `code`).
#[derive(Deserialize)]
struct GrantQuery {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    code: Option<String>,
}

impl WeixinSandbox {
    /// WeChat's answer to a grant of another type than `grant_type`, or with another AppID or
    /// secret than ours (answered with `bad_credentials`).
    fn refuse_grant(
        &self,
        query: &GrantQuery,
        grant_type: &str,
        bad_credentials: (i64, &str),
    ) -> Option<HttpResponse> {
        if query.grant_type.as_deref() != Some(grant_type) {
            return Some(error(40002, "invalid grant_type"));
        }
        let ours = query.appid.as_deref() == Some(self.app_id.as_str())
            && query.secret.as_deref() == Some(self.app_secret.as_str());
        (!ours).then(|| error(bad_credentials.0, bad_credentials.1))
    }
}

async fn token(query: web::Query<GrantQuery>, sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    if let Some(refused) =
        sandbox.refuse_grant(&query, "client_credential", (40013, "invalid appid or secret"))
    {
        return refused;
    }
    let token = format!("sandbox-{}", crate::random::token_hex(16));
    sandbox.tokens.lock().expect("sandbox lock").insert(token.clone(), true);
    *sandbox.tokens_issued.lock().expect("sandbox lock") += 1;
    HttpResponse::Ok().json(serde_json::json!({ "access_token": token, "expires_in": TOKEN_SECS }))
}

#[derive(Deserialize)]
struct TokenParam {
    access_token: Option<String>,
}

async fn qrcode_create(
    query: web::Query<TokenParam>,
    body: web::Json<serde_json::Value>,
    sandbox: web::Data<WeixinSandbox>,
) -> HttpResponse {
    if let Some(refused) = sandbox.refuse_stale(&query) {
        return refused;
    }
    let scene = body.pointer("/action_info/scene/scene_str").and_then(|v| v.as_str()).unwrap_or("");
    if body.get("action_name").and_then(|v| v.as_str()) != Some("QR_STR_SCENE")
        || scene.is_empty()
        || scene.len() > 64
    {
        return error(40053, "invalid action info");
    }
    let ticket = format!("gQ{}", crate::random::token_hex(24));
    sandbox.tickets.lock().expect("sandbox lock").insert(ticket.clone(), scene.to_owned());
    let expire = body.get("expire_seconds").and_then(|v| v.as_i64()).unwrap_or(60).min(2_592_000);
    HttpResponse::Ok().json(serde_json::json!({
        "ticket": ticket, "expire_seconds": expire, "url": format!("{}?ticket={ticket}", sandbox.phone_url),
    }))
}

async fn template_send(
    query: web::Query<TokenParam>,
    body: web::Json<serde_json::Value>,
    sandbox: web::Data<WeixinSandbox>,
) -> HttpResponse {
    if let Some(refused) = sandbox.refuse_stale(&query) {
        return refused;
    }
    let text = |key: &str| body.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
    if text("touser").is_empty() {
        return error(40003, "invalid openid");
    }
    let mut inbox = sandbox.inbox.lock().expect("sandbox lock");
    if inbox.latest.len() == INBOX_KEEPS {
        inbox.latest.pop_front();
    }
    inbox.latest.push_back(InboxMessage {
        touser: text("touser"),
        template_id: text("template_id"),
        url: text("url"),
        client_msg_id: text("client_msg_id"),
        data: body.get("data").cloned().unwrap_or_default(),
    });
    inbox.received += 1;
    HttpResponse::Ok().json(serde_json::json!({ "errcode": 0, "errmsg": "ok", "msgid": inbox.received }))
}

#[derive(Deserialize)]
struct TicketQuery {
    ticket: Option<String>,
}

/// A real, scannable QR code (SVG) of the phone page for this ticket.
async fn show_qrcode(query: web::Query<TicketQuery>, sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    let ticket = query.ticket.clone().unwrap_or_default();
    if !sandbox.tickets.lock().expect("sandbox lock").contains_key(&ticket) {
        return HttpResponse::NotFound().body("unknown ticket");
    }
    let target = format!("{}?ticket={}", sandbox.phone_url, crate::controllers::url_encode(&ticket));
    match crate::services::qr::svg(&target, 240) {
        Some(svg) => HttpResponse::Ok()
            .content_type("image/svg+xml")
            .insert_header(("Cache-Control", "no-store"))
            .body(svg),
        None => HttpResponse::InternalServerError().body("no QR code for this ticket"),
    }
}

#[derive(Template)]
#[template(path = "sandbox/phone.html")]
struct PhonePage {
    lang: Lang,
    ticket: String,
    openid: String,
    reply: Option<String>,
}

async fn phone(query: web::Query<TicketQuery>, lang: Lang) -> Result<HttpResponse, crate::error::AppError> {
    let page = PhonePage {
        lang,
        ticket: query.ticket.clone().unwrap_or_default(),
        openid: "o-sandbox-shopper".into(),
        reply: None,
    };
    crate::controllers::render(&page)
}

#[derive(Deserialize)]
struct ScanForm {
    ticket: String,
    openid: String,
}

/// The phone scans: WeChat pushes `subscribe` (first time, `qrscene_` prefix) or `SCAN` to the
/// shop's portal, signed with the shared token.
async fn scan(
    lang: Lang,
    form: web::Form<ScanForm>,
    sandbox: web::Data<WeixinSandbox>,
) -> Result<HttpResponse, crate::error::AppError> {
    let ScanForm { ticket, openid } = form.into_inner();
    let openid = openid.trim().to_owned();
    let scene = sandbox.tickets.lock().expect("sandbox lock").get(&ticket).cloned();
    let Some(scene) = scene.filter(|_| !openid.is_empty()) else {
        return Ok(HttpResponse::BadRequest().body("unknown ticket or empty openid"));
    };
    let first_time = sandbox.followers.lock().expect("sandbox lock").insert(openid.clone());
    let (event, key) = if first_time { ("subscribe", format!("qrscene_{scene}")) } else { ("SCAN", scene) };
    let now = chrono::Utc::now().timestamp();
    let xml = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event>{}</Event><EventKey>{}</EventKey><Ticket>{}</Ticket></xml>",
        cdata(&sandbox.original_id),
        cdata(&openid),
        cdata(event),
        cdata(&key),
        cdata(&ticket)
    );
    // Each push is signed afresh: the current timestamp and a new nonce.
    let (timestamp, nonce) = (now.to_string(), crate::random::token_hex(8));
    let mut url = format!(
        "{}?signature={}&timestamp={timestamp}&nonce={nonce}&openid={}",
        sandbox.portal_url,
        signature(&[&sandbox.token, &timestamp, &nonce]),
        crate::controllers::url_encode(&openid)
    );
    let body = match &sandbox.safe_mode {
        Some(safe) => {
            let encrypted = safe.encrypt(&xml)?;
            let msg_signature = signature(&[&sandbox.token, &timestamp, &nonce, &encrypted]);
            url.push_str(&format!("&encrypt_type=aes&msg_signature={msg_signature}"));
            format!(
                "<xml><ToUserName>{}</ToUserName><Encrypt>{}</Encrypt></xml>",
                cdata(&sandbox.original_id),
                cdata(&encrypted)
            )
        }
        None => xml,
    };
    // Our portal answers this post on the same server: never from a database thread it may need.
    let answer = crate::engine::on_call_out_thread(move || {
        let agent = http_agent(Duration::from_secs(5));
        match agent.post(&url).content_type("text/xml").send(body) {
            Ok(mut r) => Ok((r.status(), r.body_mut().read_to_string().unwrap_or_default())),
            Err(e) => Err(format!("the portal did not answer: {e}")),
        }
    })
    .await?;
    let reply = match answer {
        // The phone shows an encrypted reply opened, as WeChat would.
        Ok((status, text)) => match (&sandbox.safe_mode, parse(&text)) {
            (Some(safe), Ok(sealed)) if !sealed.encrypt.is_empty() => {
                format!("{status} {}", safe.decrypt(&sealed.encrypt)?)
            }
            _ => format!("{status} {text}"),
        },
        Err(failure) => failure,
    };
    crate::controllers::render(&PhonePage { lang, ticket, openid, reply: Some(reply) })
}

#[derive(Template)]
#[template(path = "sandbox/inbox.html")]
struct InboxPage {
    lang: Lang,
    messages: VecDeque<InboxMessage>,
}

async fn inbox_page(
    sandbox: web::Data<WeixinSandbox>,
    lang: Lang,
) -> Result<HttpResponse, crate::error::AppError> {
    let messages = sandbox.inbox.lock().expect("sandbox lock").latest.clone();
    crate::controllers::render(&InboxPage { lang, messages })
}

async fn inbox_json(sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    HttpResponse::Ok().json(&sandbox.inbox.lock().expect("sandbox lock").latest)
}

async fn stats(sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({ "tokens_issued": *sandbox.tokens_issued.lock().expect("sandbox lock") }))
}

/// Test switch: every token issued so far becomes stale (answered 40001).
async fn expire_tokens(sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    for good in sandbox.tokens.lock().expect("sandbox lock").values_mut() {
        *good = false;
    }
    HttpResponse::NoContent().finish()
}

#[derive(Deserialize)]
struct AuthorizeQuery {
    appid: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "sandbox/authorize.html")]
struct AuthorizePage {
    lang: Lang,
    redirect_uri: String,
    state: String,
    scope: String,
    openids: [&'static str; 3],
}

/// WeChat's 网页授权 page: checks the request as WeChat does (our AppID, `response_type=code`, a
/// known scope, a `redirect_uri` on the shop's site) and lets the tester pick who approves.
async fn authorize(
    lang: Lang,
    query: web::Query<AuthorizeQuery>,
    sandbox: web::Data<WeixinSandbox>,
) -> Result<HttpResponse, crate::error::AppError> {
    let AuthorizeQuery { appid, redirect_uri, response_type, scope, state } = query.into_inner();
    let redirect_uri = redirect_uri.unwrap_or_default();
    let scope = scope.unwrap_or_default();
    let refusal = if appid.as_deref() != Some(sandbox.app_id.as_str()) {
        Some("appid 错误")
    } else if response_type.as_deref() != Some("code")
        || !["snsapi_base", "snsapi_userinfo"].contains(&scope.as_str())
    {
        Some("参数错误")
    } else if !redirect_uri.starts_with(&sandbox.shop_url) {
        Some("redirect_uri 域名与后台配置不一致")
    } else {
        None
    };
    if let Some(reason) = refusal {
        return Ok(HttpResponse::BadRequest().content_type("text/plain; charset=utf-8").body(reason));
    }
    let page = AuthorizePage {
        lang,
        redirect_uri,
        state: state.unwrap_or_default(),
        scope,
        openids: SAMPLE_OPENIDS,
    };
    crate::controllers::render(&page)
}

#[derive(Deserialize)]
struct ApproveForm {
    redirect_uri: String,
    state: String,
    openid: String,
}

/// The shopper approves: back to the shop's `redirect_uri` with a fresh code and the `state`.
async fn approve(form: web::Form<ApproveForm>, sandbox: web::Data<WeixinSandbox>) -> HttpResponse {
    let ApproveForm { redirect_uri, state, openid } = form.into_inner();
    let openid = openid.trim().to_owned();
    if openid.is_empty() || !redirect_uri.starts_with(&sandbox.shop_url) {
        return HttpResponse::BadRequest().body("empty openid or a redirect_uri off the shop's site");
    }
    let code = crate::random::token_hex(16);
    let given = OauthCode { openid, issued: Instant::now(), used: false };
    sandbox.oauth_codes.lock().expect("sandbox lock").insert(code.clone(), given);
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let query =
        serde_urlencoded::to_string([("code", code.as_str()), ("state", state.as_str())]).unwrap_or_default();
    HttpResponse::Found().insert_header(("Location", format!("{redirect_uri}{separator}{query}"))).finish()
}

/// `sns/oauth2/access_token`: the openid a code was given for, once, within [`CODE_LIFETIME`].
async fn oauth_access_token(
    query: web::Query<GrantQuery>,
    sandbox: web::Data<WeixinSandbox>,
) -> HttpResponse {
    if let Some(refused) = sandbox.refuse_grant(&query, "authorization_code", (40125, "invalid appsecret")) {
        return refused;
    }
    let mut codes = sandbox.oauth_codes.lock().expect("sandbox lock");
    let Some(given) = codes.get_mut(query.code.as_deref().unwrap_or("")) else {
        return error(40029, "invalid code");
    };
    if given.used {
        return error(40163, "code been used");
    }
    if given.issued.elapsed() > CODE_LIFETIME {
        return error(40029, "invalid code");
    }
    given.used = true;
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": format!("sandbox-web-{}", crate::random::token_hex(16)),
        "expires_in": TOKEN_SECS,
        "refresh_token": format!("sandbox-refresh-{}", crate::random::token_hex(16)),
        "openid": given.openid,
        "scope": "snsapi_base",
    }))
}
