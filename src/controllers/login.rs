//! Login: with a WeChat QR code (the page and the original project's JSON API), inside WeChat
//! through 网页授权 (the redirect and its callback), and logout.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::client::ClientAddr;
use super::device::Device;
use super::identity::{MaybeShopper, session_token};
use super::next::safe_next;
use super::{Nav, csrf, render};
use crate::error::{AppError, Envelope};
use crate::i18n::Lang;
use crate::services::login::{self, BROWSER_COOKIE, NewTicket, OAUTH_CALLBACK_PATH, OauthLogin};
use crate::services::session::{self, SESSION_COOKIE, SESSION_DAYS};
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/login", web::get().to(login_page))
        .route("/login/done", web::get().to(scanned))
        .route(OAUTH_CALLBACK_PATH, web::get().to(oauth_callback))
        .route("/logout", web::get().to(logout_page))
        .route("/logout", web::post().to(logout));
}

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/login/weixin_qrcode_ticket", web::get().to(qrcode_ticket))
        .route("/v1/login/check_login", web::get().to(check_login));
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    lang: Lang,
    nav: Nav,
    ticket: String,
    qr_url: String,
    expires_in: i64,
    next: String,
    phone_url: Option<String>,
}

#[derive(Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

fn secure(state: &AppState) -> bool {
    state.settings.server.public_url.starts_with("https://")
}

/// The browser's login nonce: the existing cookie, or a new one to set.
fn browser_nonce(req: &HttpRequest) -> (String, bool) {
    match req.cookie(BROWSER_COOKIE) {
        Some(cookie) if cookie.value().len() == 32 => (cookie.value().to_owned(), false),
        _ => (crate::random::token_hex(16), true),
    }
}

fn nonce_cookie(nonce: &str, secure: bool) -> Cookie<'static> {
    Cookie::build(BROWSER_COOKIE, nonce.to_owned())
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(CookieDuration::minutes(30))
        .finish()
}

/// The ticket the browser holds, else a new one: at most `limits.login_tickets_per_minute` new
/// ones per client and `limits.all_login_tickets_per_minute` for all (429 beyond), each a row and
/// a call to WeChat.
async fn issue_ticket(
    state: &web::Data<AppState>,
    client: ClientAddr,
    nonce: String,
) -> Result<NewTicket, AppError> {
    let held_nonce = nonce.clone();
    if let Some(held) = state.engine.run(move |conn| login::held_ticket(conn, &held_nonce)).await? {
        return Ok(held);
    }
    if !crate::rate_limit::allow(&state.limits.login_tickets, client.0)
        || state.limits.all_login_tickets.check().is_err()
    {
        return Err(AppError::TooManyRequests);
    }
    let (weixin, owner) = (state.weixin.clone(), state.instance.clone());
    state.engine.call_out(move |pool| login::new_ticket(pool, &weixin, &owner, &nonce)).await
}

async fn login_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
    client: ClientAddr,
    device: Device,
    query: web::Query<LoginQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref());
    if shopper.0.is_some() {
        return Ok(super::see_other(&next));
    }
    let (nonce, fresh) = browser_nonce(&req);
    let mut response = match device {
        Device::WeChat => oauth_redirect(&state, client, nonce.clone(), next).await?,
        Device::Phone | Device::Desktop => qr_page(&state, lang, client, nonce.clone(), next).await?,
    };
    if fresh {
        response.add_cookie(&nonce_cookie(&nonce, secure(&state))).map_err(AppError::internal)?;
    }
    Ok(response)
}

/// Inside WeChat: off to WeChat's 网页授权 page (302), with a state bound to this browser. New
/// states count against the client's `limits.login_tickets_per_minute` (429 beyond), as tickets do.
async fn oauth_redirect(
    state: &web::Data<AppState>,
    client: ClientAddr,
    nonce: String,
    next: String,
) -> Result<HttpResponse, AppError> {
    if !crate::rate_limit::allow(&state.limits.login_tickets, client.0) {
        return Err(AppError::TooManyRequests);
    }
    let (settings, weixin) = (state.settings.clone(), state.weixin.clone());
    let url =
        state.engine.run(move |conn| login::oauth_start(conn, &settings, &weixin, &nonce, &next)).await?;
    Ok(HttpResponse::Found().insert_header((actix_web::http::header::LOCATION, url)).finish())
}

/// Outside WeChat: the QR code to scan.
async fn qr_page(
    state: &web::Data<AppState>,
    lang: Lang,
    client: ClientAddr,
    nonce: String,
    next: String,
) -> Result<HttpResponse, AppError> {
    let issued = issue_ticket(state, client, nonce).await?;
    let settings = &state.settings;
    let encoded = super::url_encode(&issued.ticket);
    let page = LoginPage {
        lang,
        nav: Nav::default(),
        qr_url: format!("{}?ticket={encoded}", settings.weixin.qrcode_show_url),
        phone_url: settings.sandbox.enabled.then(|| format!("/sandbox/weixin/phone?ticket={encoded}")),
        ticket: issued.ticket,
        expires_in: issued.expires_in,
        next,
    };
    render(&page)
}

async fn qrcode_ticket(
    req: HttpRequest,
    state: web::Data<AppState>,
    client: ClientAddr,
) -> Result<HttpResponse, AppError> {
    let (nonce, fresh) = browser_nonce(&req);
    let issued = issue_ticket(&state, client, nonce.clone()).await?;
    let mut response = Envelope::ok(issued.ticket);
    if fresh {
        response.add_cookie(&nonce_cookie(&nonce, secure(&state))).map_err(AppError::internal)?;
    }
    Ok(response)
}

#[derive(Deserialize)]
struct CheckQuery {
    ticket: Option<String>,
}

#[derive(Serialize)]
struct Waiting {
    code: &'static str,
    info: &'static str,
    data: Option<()>,
}

/// Polled by the login page: `0000` with the session token once scanned (the session cookie is
/// set too), otherwise `0003` (a normal answer while waiting, so HTTP 200).
async fn check_login(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<CheckQuery>,
) -> Result<HttpResponse, AppError> {
    let ticket = query
        .ticket
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| AppError::BadRequest("非法参数：缺少 ticket".into()))?;
    let Some(nonce) = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned()) else {
        return Ok(HttpResponse::Ok().json(Waiting { code: "0003", info: "未登录", data: None }));
    };
    let settings = state.settings.clone();
    let logged_in = state.engine.run(move |conn| login::check(conn, &settings, &ticket, &nonce)).await?;
    match logged_in {
        Some((_, token)) => {
            let mut response = Envelope::ok(token.clone());
            response.add_cookie(&session_cookie(token, secure(&state))).map_err(AppError::internal)?;
            Ok(response)
        }
        None => Ok(HttpResponse::Ok().json(Waiting { code: "0003", info: "未登录", data: None })),
    }
}

fn session_cookie(token: String, secure: bool) -> Cookie<'static> {
    Cookie::build(SESSION_COOKIE, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(secure)
        .max_age(CookieDuration::days(SESSION_DAYS))
        .finish()
}

#[derive(Deserialize)]
struct ScannedQuery {
    ticket: Option<String>,
    next: Option<String>,
}

/// "I have scanned", for browsers without JavaScript: logs in and goes on, or back to a fresh QR.
async fn scanned(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<ScannedQuery>,
) -> Result<HttpResponse, AppError> {
    let next = safe_next(query.next.as_deref());
    let (ticket, nonce) =
        (query.ticket.clone().unwrap_or_default(), req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned()));
    let logged_in = match nonce {
        Some(nonce) if !ticket.is_empty() => {
            let settings = state.settings.clone();
            state.engine.run(move |conn| login::check(conn, &settings, &ticket, &nonce)).await?
        }
        _ => None,
    };
    match logged_in {
        Some((_, token)) => logged_in_to(&next, token, &state),
        None => Ok(super::see_other(&format!("/login?next={}", super::url_encode(&next)))),
    }
}

/// A login's answer to a page: on to `next`, with the session cookie of `token`.
fn logged_in_to(next: &str, token: String, state: &AppState) -> Result<HttpResponse, AppError> {
    let mut response = super::see_other(next);
    response.add_cookie(&session_cookie(token, secure(state))).map_err(AppError::internal)?;
    Ok(response)
}

#[derive(Deserialize)]
struct OauthQuery {
    code: Option<String>,
    state: Option<String>,
}

/// WeChat sends the browser back here from 网页授权: logged in as a scan does (the session cookie
/// set) and on to where the login started. A state that is not this browser's unused, unexpired
/// one, a code WeChat refuses, or WeChat out of reach: an error page saying so, and no session.
async fn oauth_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<OauthQuery>,
) -> Result<HttpResponse, AppError> {
    let (code, oauth_state) = match (&query.code, &query.state) {
        (Some(code), Some(oauth_state)) if !code.is_empty() && !oauth_state.is_empty() => {
            (code.clone(), oauth_state.clone())
        }
        _ => return Err(AppError::BadRequest("微信登录未完成：缺少授权码，请重新登录。".into())),
    };
    let nonce = req.cookie(BROWSER_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    let (settings, weixin) = (state.settings.clone(), state.weixin.clone());
    let OauthLogin { token, next } = state
        .engine
        .call_out(move |pool| login::oauth_login(pool, &settings, &weixin, &oauth_state, &code, &nonce))
        .await?;
    // `next` was made safe when the login started; once more costs nothing.
    logged_in_to(&safe_next(Some(&next)), token, &state)
}

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage {
    lang: Lang,
    nav: Nav,
}

/// An old "Log out" link: a page with the button, since logging out takes the form's token.
async fn logout_page(shopper: MaybeShopper, lang: Lang) -> Result<HttpResponse, AppError> {
    if shopper.0.is_none() {
        return Ok(super::see_other("/"));
    }
    render(&LogoutPage { lang, nav: shopper.nav() })
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: Option<String>,
}

/// Ends the session; the form must carry the session's CSRF token, so another site cannot log
/// a shopper out.
async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, AppError> {
    if let Some(token) = session_token(&req) {
        csrf::verify(&token, form.csrf.as_deref())?;
        state.engine.run(move |conn| session::end(conn, &token)).await?;
    }
    let mut response = super::see_other("/");
    let mut expired = Cookie::build(SESSION_COOKIE, "").path("/").finish();
    expired.make_removal();
    response.add_cookie(&expired).map_err(AppError::internal)?;
    Ok(response)
}
