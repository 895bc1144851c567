//! The admin console under `/admin`: sign-in, orders (filters, paging, totals, CSV), one order's
//! whole story with its actions, the troubled outbox, product editing, and coupon templates
//! (list, create, issue to a shopper), and group buying (activities: create, activate, end; an
//! activity's teams with their members; expire a team now). Every form carries a
//! CSRF token; every page needs an admin session (else a redirect to the sign-in).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::{FromRequest, HttpRequest, HttpResponse, dev::Payload, web};
use askama::Template;
use serde::Deserialize;

use super::client::ClientAddr;
use super::{csrf, filters, render, see_other, url_encode};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::models::coupon::{CouponKind, NewTemplate, TemplateWithProducts};
use crate::models::group_buy::{Activity, ActivityStatus, NewActivity, Plan};
use crate::models::order::{OrderFilter, OrderStatus};
use crate::models::order_total::StatusTotal;
use crate::models::orphan::OrphanPayment;
use crate::models::outbox::OutboxEntry;
use crate::models::product::Product;
use crate::services::admin::{
    self, ADMIN_COOKIE, Cursor, FilterTotal, OrderStory, OrdersList, ProductEdit, Refusal,
};
use crate::services::reconcile::{self, Reconciler};
use crate::services::{coupon as coupons, group_buy as groups, order_export, orphan};
use crate::state::AppState;

const PER_PAGE: i64 = 50;
const MAX_PER_PAGE: i64 = 200;
/// The sign-in form's own CSRF cookie (there is no session yet to derive a token from).
const FORM_COOKIE: &str = "paymall_admin_form";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/admin")
            .route("/login", web::get().to(login_form))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("", web::get().to(orders))
            .route("/", web::get().to(orders))
            .route("/orders.csv", web::get().to(orders_csv))
            .route("/orders/{order_id}", web::get().to(order_detail))
            .route("/orders/{order_id}/{action}", web::post().to(order_action))
            .route("/outbox", web::get().to(outbox))
            .route("/outbox/{outbox_id}/retry", web::post().to(retry_outbox))
            .route("/orphans", web::get().to(orphans))
            .route("/orphans/{orphan_id}/refund", web::post().to(refund_orphan))
            .route("/products", web::get().to(products))
            .route("/products/{product_id}", web::post().to(edit_product))
            .route("/coupons", web::get().to(coupon_templates))
            .route("/coupons", web::post().to(create_coupon_template))
            .route("/coupons/issue", web::post().to(issue_coupon))
            .route("/group-buy", web::get().to(group_buy_activities))
            .route("/group-buy", web::post().to(create_group_buy_activity))
            .route("/group-buy/teams/{team_id}/expire", web::post().to(expire_team))
            .route("/group-buy/{activity_id}", web::get().to(group_buy_activity))
            .route("/group-buy/{activity_id}/{action}", web::post().to(group_buy_activity_action)),
    );
}

/// A signed-in admin. Extracting it on a page without a session redirects to the sign-in.
pub struct Admin {
    pub username: String,
    token: String,
    /// The console's language, as for the shop's pages.
    pub lang: Lang,
}

impl Admin {
    fn csrf(&self) -> String {
        csrf::token_for(&self.token)
    }

    fn check(&self, submitted: Option<&str>) -> Result<(), AppError> {
        csrf::verify(&self.token, submitted)
    }
}

impl FromRequest for Admin {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let next =
                req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/admin".into());
            let login_required = AppError::AdminLogin(format!("/admin/login?next={}", url_encode(&next)));
            let Some(token) = req.cookie(ADMIN_COOKIE).map(|c| c.value().to_owned()) else {
                return Err(login_required);
            };
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| AppError::internal("no app state"))?
                .clone();
            let lookup = token.clone();
            match state.engine.run(move |conn| admin::session_admin(conn, &lookup)).await? {
                Some(username) => Ok(Admin { username, token, lang: super::lang::of_request(&req) }),
                None => Err(login_required),
            }
        })
    }
}

#[derive(Template)]
#[template(path = "admin/login.html")]
struct LoginPage {
    lang: Lang,
    csrf: String,
    next: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

fn local_next(next: Option<&str>) -> String {
    let next = super::next::safe_next(next);
    if next.starts_with("/admin") { next } else { "/admin".to_owned() }
}

async fn login_form(
    req: HttpRequest,
    lang: Lang,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, AppError> {
    let token =
        req.cookie(FORM_COOKIE).map(|c| c.value().to_owned()).unwrap_or_else(|| crate::random::token_hex(16));
    let mut response = render(&LoginPage {
        lang,
        csrf: csrf::token_for(&token),
        next: local_next(query.next.as_deref()),
        error: None,
    })?;
    let cookie =
        Cookie::build(FORM_COOKIE, token).path("/admin").http_only(true).same_site(SameSite::Strict).finish();
    response.add_cookie(&cookie).map_err(AppError::internal)?;
    Ok(response)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    csrf: Option<String>,
    next: Option<String>,
}

/// Signs in, at most `limits.admin_sign_ins_per_minute` attempts per client (429 beyond, before
/// any check).
async fn login(
    req: HttpRequest,
    lang: Lang,
    state: web::Data<AppState>,
    client: ClientAddr,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, AppError> {
    if !crate::rate_limit::allow(&state.limits.admin_sign_ins, client.0) {
        return Err(AppError::TooManyRequests);
    }
    let form_token = req.cookie(FORM_COOKIE).map(|c| c.value().to_owned()).unwrap_or_default();
    csrf::verify(&form_token, form.csrf.as_deref())?;
    let LoginForm { username, password, next, .. } = form.into_inner();
    let next = local_next(next.as_deref());
    let settings = state.settings.clone();
    let outcome =
        state.engine.run(move |conn| admin::sign_in(conn, &settings, &username, &password, client.0)).await?;
    let retry = |error: String, status: actix_web::http::StatusCode| -> Result<HttpResponse, AppError> {
        let page =
            LoginPage { lang, csrf: csrf::token_for(&form_token), next: next.clone(), error: Some(error) };
        let mut response = render(&page)?;
        *response.status_mut() = status;
        Ok(response)
    };
    match outcome {
        Ok(token) => {
            let cookie = Cookie::build(ADMIN_COOKIE, token)
                .path("/admin")
                .http_only(true)
                .same_site(SameSite::Strict)
                .secure(state.settings.server.public_url.starts_with("https://"))
                .finish();
            let mut response = see_other(&next);
            response.add_cookie(&cookie).map_err(AppError::internal)?;
            Ok(response)
        }
        Err(Refusal::Wrong { failures }) => {
            // Each failure in a row answers later than the one before.
            actix_web::rt::time::sleep(Duration::from_millis(admin::failure_delay_ms(failures))).await;
            retry("Wrong name or password.".into(), actix_web::http::StatusCode::UNAUTHORIZED)
        }
        Err(Refusal::Locked { seconds }) => retry(
            format!("Too many failed attempts. Try again in {seconds} s."),
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
        ),
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

async fn logout(
    state: web::Data<AppState>,
    admin_user: Admin,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let token = admin_user.token.clone();
    state.engine.run(move |conn| admin::sign_out(conn, &token)).await?;
    let mut response = see_other("/admin/login");
    let mut expired = Cookie::build(ADMIN_COOKIE, "").path("/admin").finish();
    expired.make_removal();
    response.add_cookie(&expired).map_err(AppError::internal)?;
    Ok(response)
}

#[derive(Debug, Default, Deserialize)]
struct OrdersQuery {
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    openid: Option<String>,
    order_id: Option<String>,
    product_id: Option<String>,
    /// The cursor of an older page: orders below this row id.
    before: Option<i64>,
    /// The cursor of a newer page: orders above this row id.
    after: Option<i64>,
    /// Orders a page shows, 1 to [`MAX_PER_PAGE`] ([`PER_PAGE`] without it).
    per_page: Option<String>,
}

impl OrdersQuery {
    fn filter(&self) -> Result<OrderFilter, AppError> {
        let text =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let day = |v: &Option<String>, name: &str| match text(v) {
            None => Ok(None),
            Some(d) => admin::china_day_start(&d)
                .map(Some)
                .ok_or_else(|| AppError::BadRequest(format!("{name} must be a date like 2026-11-22"))),
        };
        Ok(OrderFilter {
            status: match text(&self.status) {
                None => None,
                Some(status) => {
                    Some(status.parse().map_err(|_| AppError::BadRequest("unknown status".into()))?)
                }
            },
            placed_from: day(&self.from, "from")?,
            placed_before: day(&self.to, "to")?.map(|d| d + chrono::Duration::days(1)),
            openid: text(&self.openid),
            order_id: text(&self.order_id),
            product_id: text(&self.product_id),
        })
    }

    fn cursor(&self) -> Result<Cursor, AppError> {
        match (self.before, self.after) {
            (None, None) => Ok(Cursor::Newest),
            (Some(before), None) => Ok(Cursor::Before(before)),
            (None, Some(after)) => Ok(Cursor::After(after)),
            (Some(_), Some(_)) => Err(AppError::BadRequest("give before or after, not both".into())),
        }
    }

    fn per_page(&self) -> Result<i64, AppError> {
        match self.per_page.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => Ok(PER_PAGE),
            Some(n) => n.parse().ok().filter(|n| (1..=MAX_PER_PAGE).contains(n)).ok_or_else(|| {
                AppError::BadRequest(format!("per_page must be a number from 1 to {MAX_PER_PAGE}"))
            }),
        }
    }

    /// The filter (and the page size) as a query string, for links that keep it.
    fn keep(&self) -> String {
        let pairs = [
            ("status", &self.status),
            ("from", &self.from),
            ("to", &self.to),
            ("openid", &self.openid),
            ("order_id", &self.order_id),
            ("product_id", &self.product_id),
            ("per_page", &self.per_page),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_deref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}", url_encode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

#[derive(Template)]
#[template(path = "admin/orders.html")]
struct OrdersPage {
    lang: Lang,
    admin: String,
    csrf: String,
    list: OrdersList,
    /// The filter's orders per status, when they were all counted.
    filter_exact: Option<Vec<StatusTotal>>,
    /// The filter's orders and amount over every status (when all were counted).
    filter_sum: (i64, i64),
    /// The count a filter's total stopped at, when more orders match.
    filter_at_least: Option<i64>,
    query: OrdersQuery,
    keep: String,
    statuses: [OrderStatus; 8],
}

/// The orders list: keyset-paged with `before` / `after` (row ids), filtered, with the shop's
/// totals per status and the filter's own.
async fn orders(
    state: web::Data<AppState>,
    admin_user: Admin,
    query: web::Query<OrdersQuery>,
) -> Result<HttpResponse, AppError> {
    let query = query.into_inner();
    let filter = query.filter()?;
    let cursor = query.cursor()?;
    let per_page = query.per_page()?;
    let cap = i64::from(state.settings.admin.filter_total_cap);
    let list = state.engine.run(move |conn| admin::orders_list(conn, &filter, cursor, per_page, cap)).await?;
    let filter_sum = list.filtered.as_ref().map(FilterTotal::sum).unwrap_or_default();
    let (filter_exact, filter_at_least) = match &list.filtered {
        None => (None, None),
        Some(FilterTotal::Exact(totals)) => (Some(totals.clone()), None),
        Some(FilterTotal::AtLeast(n)) => (None, Some(*n)),
    };
    let keep = query.keep();
    render(&OrdersPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        list,
        filter_exact,
        filter_sum,
        filter_at_least,
        query,
        keep,
        statuses: OrderStatus::ALL,
    })
}

/// The CSV export of exactly what the orders page filters to, newest first, streamed as it is
/// read ([`order_export`]): the file is named after the filters.
async fn orders_csv(
    state: web::Data<AppState>,
    _admin: Admin,
    query: web::Query<OrdersQuery>,
) -> Result<HttpResponse, AppError> {
    let filter = query.filter()?;
    let mut pieces = order_export::csv(&state.engine, filter)?;
    let body = futures_util::stream::poll_fn(move |cx| {
        pieces.poll_recv(cx).map(|piece| piece.map(|text| text.map(web::Bytes::from)))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(("Content-Disposition", format!("attachment; filename=\"{}\"", csv_filename(&query))))
        .streaming(body))
}

/// `orders.csv`, or with the filters in its name: `orders_status-PAY_SUCCESS_from-<day>.csv`.
/// Only letters, digits, `-` and `.` of the values are kept (others become `_`), 40 of each.
fn csv_filename(query: &OrdersQuery) -> String {
    let parts = [
        ("status", &query.status),
        ("from", &query.from),
        ("to", &query.to),
        ("openid", &query.openid),
        ("order", &query.order_id),
        ("product", &query.product_id),
    ];
    let mut name = String::from("orders");
    for (key, value) in parts {
        let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else { continue };
        let safe: String = value
            .chars()
            .take(40)
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' })
            .collect();
        name.push_str(&format!("_{key}-{safe}"));
    }
    name + ".csv"
}

#[derive(Template)]
#[template(path = "admin/order.html")]
struct OrderDetailPage {
    lang: Lang,
    admin: String,
    csrf: String,
    story: OrderStory,
    message: Option<String>,
}

#[derive(Deserialize)]
struct MessageQuery {
    done: Option<String>,
}

async fn order_detail(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<String>,
    query: web::Query<MessageQuery>,
) -> Result<HttpResponse, AppError> {
    let order_id = path.into_inner();
    let story = state.engine.run(move |conn| admin::story(conn, &order_id)).await?;
    render(&OrderDetailPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        story,
        message: query.done.clone(),
    })
}

/// "Sync", "Close" and "Refund" through the order's channel, each recorded with the admin's name.
async fn order_action(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let (order_id, action) = path.into_inner();
    let cause = format!("admin {}", admin_user.username);
    let (gateways, settings, owner) =
        (state.gateways.clone(), state.settings.clone(), state.instance.clone());
    let wake = state.wake.clone();
    let id = order_id.clone();
    let look_at = match action.as_str() {
        "sync" => reconcile::query,
        "close" => reconcile::close,
        "refund" => {
            let outcome =
                state.engine.run(move |conn| admin::refund(conn, &id, &admin_user.username)).await?;
            return Ok(see_other(&format!("/admin/orders/{order_id}?done={}", url_encode(&outcome))));
        }
        other => return Err(AppError::NotFound(format!("There is no action {other}."))),
    };
    // Sync and Close ask the order's channel while holding its lease (and no pooled connection).
    let outcome = state
        .engine
        .call_out(move |pool| {
            let reconciler =
                Reconciler { gateways: &gateways, settings: &settings, owner: &owner, wake: &wake };
            reconcile::by_admin(&reconciler, pool, &id, &cause, look_at)
        })
        .await?;
    Ok(see_other(&format!("/admin/orders/{order_id}?done={}", url_encode(&outcome))))
}

#[derive(Template)]
#[template(path = "admin/outbox.html")]
struct OutboxPage {
    lang: Lang,
    admin: String,
    csrf: String,
    entries: Vec<OutboxEntry>,
}

async fn outbox(state: web::Data<AppState>, admin_user: Admin) -> Result<HttpResponse, AppError> {
    let entries = state.engine.run(|conn| Ok(OutboxEntry::troubled(conn, 200)?)).await?;
    render(&OutboxPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        entries,
    })
}

async fn retry_outbox(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let outbox_id = path.into_inner();
    state.engine.run(move |conn| admin::retry_outbox(conn, outbox_id, &admin_user.username)).await?;
    Ok(see_other("/admin/outbox"))
}

#[derive(Template)]
#[template(path = "admin/orphans.html")]
struct OrphansPage {
    lang: Lang,
    admin: String,
    csrf: String,
    orphans: Vec<OrphanPayment>,
    refund_after_hours: u32,
}

async fn orphans(state: web::Data<AppState>, admin_user: Admin) -> Result<HttpResponse, AppError> {
    let orphans = state.engine.run(orphan::latest).await?;
    render(&OrphansPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        orphans,
        refund_after_hours: state.settings.alipay.orphan_refund_after_hours,
    })
}

async fn refund_orphan(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<i64>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let orphan_id = path.into_inner();
    let by = format!("admin {}", admin_user.username);
    state.engine.run(move |conn| orphan::request_refund(conn, orphan_id, &by)).await?;
    Ok(see_other("/admin/orphans"))
}

#[derive(Template)]
#[template(path = "admin/products.html")]
struct ProductsPage {
    lang: Lang,
    admin: String,
    csrf: String,
    products: Vec<Product>,
    error: Option<String>,
}

async fn products(state: web::Data<AppState>, admin_user: Admin) -> Result<HttpResponse, AppError> {
    let products = state.engine.run(|conn| Ok(Product::all(conn)?)).await?;
    render(&ProductsPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        products,
        error: None,
    })
}

#[derive(Deserialize)]
struct ProductForm {
    csrf: Option<String>,
    name: String,
    description: String,
    price: String,
    stock: String,
    stock_seen: i64,
    on_sale: Option<String>,
}

/// Why a product form is refused: the message the products page shows.
#[derive(Debug, thiserror::Error)]
enum InvalidProduct {
    #[error("The price {0:?} is not an amount like 12.50.")]
    Price(String),
    #[error("The stock {0:?} is not a whole number of 0 or more.")]
    Stock(String),
    #[error("The name must not be empty.")]
    EmptyName,
}

impl ProductForm {
    fn edit(&self) -> Result<ProductEdit, InvalidProduct> {
        let price_cents = crate::money::parse_yuan(&self.price)
            .filter(|c| *c > 0)
            .ok_or_else(|| InvalidProduct::Price(self.price.clone()))?;
        let stock: i64 = self
            .stock
            .trim()
            .parse()
            .ok()
            .filter(|s| *s >= 0)
            .ok_or_else(|| InvalidProduct::Stock(self.stock.clone()))?;
        if self.name.trim().is_empty() {
            return Err(InvalidProduct::EmptyName);
        }
        Ok(ProductEdit {
            name: self.name.clone(),
            description: self.description.clone(),
            price_cents,
            stock,
            stock_seen: self.stock_seen,
            on_sale: self.on_sale.is_some(),
        })
    }
}

async fn edit_product(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<String>,
    form: web::Form<ProductForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let product_id = path.into_inner();
    match form.edit() {
        Ok(edit) => {
            let name = admin_user.username.clone();
            state.engine.run(move |conn| admin::edit_product(conn, &product_id, &edit, &name)).await?;
            Ok(see_other("/admin/products"))
        }
        Err(error) => {
            let products = state.engine.run(|conn| Ok(Product::all(conn)?)).await?;
            let mut response = render(&ProductsPage {
                lang: admin_user.lang,
                csrf: admin_user.csrf(),
                admin: admin_user.username,
                products,
                error: Some(error.to_string()),
            })?;
            *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
            Ok(response)
        }
    }
}

#[derive(Template)]
#[template(path = "admin/coupons.html")]
struct CouponsPage {
    lang: Lang,
    admin: String,
    csrf: String,
    templates: Vec<TemplateWithProducts>,
    message: Option<String>,
}

async fn coupons_page(
    state: &AppState,
    admin_user: Admin,
    message: Option<String>,
) -> Result<HttpResponse, AppError> {
    let templates = state.engine.run(coupons::templates).await?;
    render(&CouponsPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        templates,
        message,
    })
}

async fn coupon_templates(
    state: web::Data<AppState>,
    admin_user: Admin,
    query: web::Query<MessageQuery>,
) -> Result<HttpResponse, AppError> {
    coupons_page(&state, admin_user, query.done.clone()).await
}

/// The template form as submitted: amounts in yuan, the rate in 折 (`8`, `8.5`), products
/// separated by commas or spaces (none: all products), and either `valid_days` or both dates.
#[derive(Deserialize)]
struct TemplateForm {
    csrf: Option<String>,
    name: String,
    kind: String,
    threshold: Option<String>,
    off: Option<String>,
    zhe: Option<String>,
    max_off: Option<String>,
    products: Option<String>,
    valid_days: Option<String>,
    valid_from: Option<String>,
    valid_until: Option<String>,
    total_quota: String,
    per_user_limit: String,
}

/// Why a template form is refused: the message the coupons page shows.
#[derive(Debug, thiserror::Error)]
enum InvalidTemplate {
    #[error("The name must not be empty.")]
    EmptyName,
    #[error("The kind must be ZJ, MJ or ZK.")]
    Kind,
    #[error("The {0} {1:?} is not an amount like 12.50 above 0.")]
    Amount(&'static str, String),
    #[error("The rate {0:?} is not a 折 from 0.01 to 9.99, like 8 or 8.5.")]
    Rate(String),
    #[error("The {0} {1:?} is not a whole number of 1 or more.")]
    Count(&'static str, String),
    #[error(
        "Give either the days a coupon is valid after claiming, or both dates (the first before the second)."
    )]
    Validity,
}

impl TemplateForm {
    fn template(&self) -> Result<NewTemplate, InvalidTemplate> {
        let text =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let amount = |name: &'static str, v: &Option<String>| match text(v) {
            None => Ok(None),
            Some(t) => crate::money::parse_yuan(&t)
                .filter(|c| *c > 0)
                .map(Some)
                .ok_or(InvalidTemplate::Amount(name, t)),
        };
        let required = |name: &'static str, v: &Option<String>| {
            amount(name, v)?.ok_or_else(|| InvalidTemplate::Amount(name, String::new()))
        };
        let count = |name: &'static str, v: &str| {
            v.trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| InvalidTemplate::Count(name, v.to_owned()))
        };
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(InvalidTemplate::EmptyName);
        }
        let kind: CouponKind = self.kind.trim().parse().map_err(|_| InvalidTemplate::Kind)?;
        let (threshold_cents, off_cents, rate_bp, max_off_cents) = match kind {
            CouponKind::Zj => (0, required("amount off", &self.off)?, 0, None),
            CouponKind::Mj => {
                (required("threshold", &self.threshold)?, required("amount off", &self.off)?, 0, None)
            }
            CouponKind::Zk => {
                let zhe = text(&self.zhe).unwrap_or_default();
                // 折 in hundredths (8.5 -> 850) times ten is basis points (8500).
                let rate_bp = crate::money::parse_yuan(&zhe)
                    .filter(|h| (1..1000).contains(h))
                    .ok_or(InvalidTemplate::Rate(zhe))?;
                (0, 0, rate_bp as i32 * 10, amount("cap", &self.max_off)?)
            }
        };
        let (valid_days, valid_from, valid_until) = match text(&self.valid_days) {
            Some(days) => (Some(count("valid days", &days)?), None, None),
            None => {
                let day = |v: &Option<String>| text(v).and_then(|d| admin::china_day_start(&d));
                match (day(&self.valid_from), day(&self.valid_until)) {
                    // The last day counts in full.
                    (Some(from), Some(until)) if from <= until => {
                        (None, Some(from), Some(until + chrono::Duration::days(1)))
                    }
                    _ => return Err(InvalidTemplate::Validity),
                }
            }
        };
        let product_ids = text(&self.products)
            .map(|p| p.split([',', ' ', '，']).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        Ok(NewTemplate {
            name,
            kind,
            threshold_cents,
            off_cents,
            rate_bp,
            max_off_cents,
            product_ids,
            valid_from,
            valid_until,
            valid_days,
            total_quota: i64::from(count("quota", &self.total_quota)?),
            per_user_limit: count("per-user limit", &self.per_user_limit)?,
        })
    }
}

async fn create_coupon_template(
    state: web::Data<AppState>,
    admin_user: Admin,
    form: web::Form<TemplateForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let refused = match form.template() {
        Ok(new) => match state
            .engine
            .run(move |conn| coupons::create_template(conn, &new, crate::models::now()))
            .await
        {
            Ok(template_id) => {
                let done = format!("Template {template_id} created.");
                return Ok(see_other(&format!("/admin/coupons?done={}", url_encode(&done))));
            }
            Err(AppError::BadRequest(message)) => message,
            Err(other) => return Err(other),
        },
        Err(invalid) => invalid.to_string(),
    };
    let mut response = coupons_page(&state, admin_user, Some(refused)).await?;
    *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    Ok(response)
}

#[derive(Deserialize)]
struct IssueForm {
    csrf: Option<String>,
    template_id: i64,
    shopper: String,
}

/// Issues a coupon of a template to a shopper (openid or user id), under the template's quota
/// and per-user limit.
async fn issue_coupon(
    state: web::Data<AppState>,
    admin_user: Admin,
    form: web::Form<IssueForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let IssueForm { template_id, shopper, .. } = form.into_inner();
    let who = shopper.clone();
    let outcome =
        state.engine.run(move |conn| coupons::issue(conn, template_id, &shopper, crate::models::now())).await;
    let done = match outcome {
        Ok(claimed) => format!("Coupon {} ({}) issued to {who}.", claimed.coupon_id, claimed.code),
        Err(refused @ (AppError::Refused { .. } | AppError::NotFound(_))) => {
            format!("Not issued: {refused}")
        }
        Err(other) => return Err(other),
    };
    Ok(see_other(&format!("/admin/coupons?done={}", url_encode(&done))))
}

#[derive(Template)]
#[template(path = "admin/group_buy.html")]
struct GroupBuyPage {
    lang: Lang,
    admin: String,
    csrf: String,
    activities: Vec<Activity>,
    message: Option<String>,
}

async fn group_buy_page(
    state: &AppState,
    admin_user: Admin,
    message: Option<String>,
) -> Result<HttpResponse, AppError> {
    let activities = state.engine.run(groups::activities).await?;
    render(&GroupBuyPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        activities,
        message,
    })
}

async fn group_buy_activities(
    state: web::Data<AppState>,
    admin_user: Admin,
    query: web::Query<MessageQuery>,
) -> Result<HttpResponse, AppError> {
    group_buy_page(&state, admin_user, query.done.clone()).await
}

/// The activity form as submitted: amounts in yuan, the ZK rate in basis points (8000 = 8折),
/// times as China time `YYYY-MM-DD HH:MM`.
#[derive(Deserialize)]
struct ActivityForm {
    csrf: Option<String>,
    name: String,
    product_id: String,
    plan: String,
    off: Option<String>,
    threshold: Option<String>,
    rate_bp: Option<String>,
    n_price: Option<String>,
    target_count: String,
    valid_minutes: String,
    take_limit: String,
    start_at: String,
    end_at: String,
}

/// Why an activity form is refused: the message the group-buy page shows.
#[derive(Debug, thiserror::Error)]
enum InvalidActivity {
    #[error("The name and the product must not be empty.")]
    Empty,
    #[error("The plan must be ZJ, MJ, ZK or N.")]
    Plan,
    #[error("The {0} {1:?} is not an amount like 12.50 above 0.")]
    Amount(&'static str, String),
    #[error("The rate {0:?} is not in basis points from 1 to 9999 (8000 = 8折).")]
    Rate(String),
    #[error("The {0} {1:?} is not a whole number of 1 or more.")]
    Count(&'static str, String),
    #[error("The {0} time {1:?} is not China time like 2026-12-24 20:00.")]
    Time(&'static str, String),
}

/// China time `YYYY-MM-DD HH:MM` (or a `datetime-local` value) to UTC.
fn china_minute(text: &str) -> Option<chrono::NaiveDateTime> {
    crate::china_time::parse(&format!("{}:00", text.trim().replacen('T', " ", 1)))
}

impl ActivityForm {
    fn activity(&self) -> Result<NewActivity<'_>, InvalidActivity> {
        let amount = |name: &'static str, v: &Option<String>| {
            let t = v.as_deref().unwrap_or("").trim();
            crate::money::parse_yuan(t)
                .filter(|c| *c > 0)
                .ok_or_else(|| InvalidActivity::Amount(name, t.into()))
        };
        let count = |name: &'static str, v: &str| {
            v.trim()
                .parse::<i32>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| InvalidActivity::Count(name, v.into()))
        };
        let time = |name: &'static str, v: &str| {
            china_minute(v).ok_or_else(|| InvalidActivity::Time(name, v.into()))
        };
        let (name, product_id) = (self.name.trim(), self.product_id.trim());
        if name.is_empty() || product_id.is_empty() {
            return Err(InvalidActivity::Empty);
        }
        let plan: Plan = self.plan.trim().parse().map_err(|_| InvalidActivity::Plan)?;
        let (mut off_cents, mut threshold_cents, mut rate_bp, mut n_price_cents) = (0, 0, 0, 0);
        match plan {
            Plan::Zj => off_cents = amount("amount off", &self.off)?,
            Plan::Mj => {
                threshold_cents = amount("threshold", &self.threshold)?;
                off_cents = amount("amount off", &self.off)?;
            }
            Plan::Zk => {
                let t = self.rate_bp.as_deref().unwrap_or("").trim();
                rate_bp = t
                    .parse()
                    .ok()
                    .filter(|r| (1..10000).contains(r))
                    .ok_or_else(|| InvalidActivity::Rate(t.into()))?;
            }
            Plan::N => n_price_cents = amount("N price", &self.n_price)?,
        }
        Ok(NewActivity {
            name,
            product_id,
            plan,
            off_cents,
            threshold_cents,
            rate_bp,
            n_price_cents,
            target_count: count("team size", &self.target_count)?,
            valid_minutes: count("valid minutes", &self.valid_minutes)?,
            take_limit: count("take limit", &self.take_limit)?,
            start_at: time("start", &self.start_at)?,
            end_at: time("end", &self.end_at)?,
        })
    }
}

async fn create_group_buy_activity(
    state: web::Data<AppState>,
    admin_user: Admin,
    form: web::Form<ActivityForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let (form, settings) = (form.into_inner(), state.settings.clone());
    let created = state
        .engine
        .run(move |conn| match form.activity() {
            Ok(new) => groups::create_activity(conn, &settings, &new),
            Err(invalid) => Err(AppError::BadRequest(invalid.to_string())),
        })
        .await;
    let refused = match created {
        Ok(activity_id) => {
            let done = format!("Activity {activity_id} created.");
            return Ok(see_other(&format!("/admin/group-buy?done={}", url_encode(&done))));
        }
        Err(AppError::BadRequest(message)) => message,
        Err(other) => return Err(other),
    };
    let mut response = group_buy_page(&state, admin_user, Some(refused)).await?;
    *response.status_mut() = actix_web::http::StatusCode::BAD_REQUEST;
    Ok(response)
}

/// Activate (CREATE -> EFFECTIVE, one per product) or end (-> ABANDONED) an activity; the list
/// says what came of it.
async fn group_buy_activity_action(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<(i64, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let (activity_id, action) = path.into_inner();
    let to = match action.as_str() {
        "activate" => ActivityStatus::Effective,
        "end" => ActivityStatus::Abandoned,
        other => return Err(AppError::NotFound(format!("There is no action {other}."))),
    };
    let done = match state.engine.run(move |conn| groups::set_activity_status(conn, activity_id, to)).await {
        Ok(true) => format!("Activity {activity_id} is {to}."),
        Ok(false) => {
            format!("Activity {activity_id} was not changed: it cannot become {to} from its status.")
        }
        Err(AppError::Conflict(message)) => format!("Activity {activity_id} was not changed: {message}"),
        Err(other) => return Err(other),
    };
    Ok(see_other(&format!("/admin/group-buy?done={}", url_encode(&done))))
}

#[derive(Template)]
#[template(path = "admin/group_buy_activity.html")]
struct GroupBuyActivityPage {
    lang: Lang,
    admin: String,
    csrf: String,
    activity: Activity,
    teams: groups::TeamsWithMembers,
    message: Option<String>,
}

async fn group_buy_activity(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<i64>,
    query: web::Query<MessageQuery>,
) -> Result<HttpResponse, AppError> {
    let activity_id = path.into_inner();
    let (activity, teams) = state.engine.run(move |conn| groups::activity_detail(conn, activity_id)).await?;
    render(&GroupBuyActivityPage {
        lang: admin_user.lang,
        csrf: admin_user.csrf(),
        admin: admin_user.username,
        activity,
        teams,
        message: query.done.clone(),
    })
}

#[derive(Deserialize)]
struct ExpireForm {
    csrf: Option<String>,
    /// The activity page to go back to.
    activity_id: Option<i64>,
}

/// Expires a forming team now, through the background thread's expiry (unpaid members closed
/// at their channel first, then FAIL and refunds), asking the channel with no pooled connection
/// held; back to the activity's teams with what came of it.
async fn expire_team(
    state: web::Data<AppState>,
    admin_user: Admin,
    path: web::Path<String>,
    form: web::Form<ExpireForm>,
) -> Result<HttpResponse, AppError> {
    admin_user.check(form.csrf.as_deref())?;
    let team_id = path.into_inner();
    let cause = format!("admin {}", admin_user.username);
    let (gateways, settings, owner) =
        (state.gateways.clone(), state.settings.clone(), state.instance.clone());
    let wake = state.wake.clone();
    let id = team_id.clone();
    let expiry = state
        .engine
        .call_out(move |pool| {
            let reconciler =
                Reconciler { gateways: &gateways, settings: &settings, owner: &owner, wake: &wake };
            groups::expire_now(&reconciler, pool, &id, &cause)
        })
        .await?;
    let done = match expiry {
        groups::Expiry::Busy => format!("Team {team_id} is being expired elsewhere; look again in a minute."),
        groups::Expiry::NotDue => format!("Team {team_id} is not forming: nothing to expire."),
        groups::Expiry::Later => {
            format!("Team {team_id}: Alipay could not close every unpaid member yet; it is tried again.")
        }
        groups::Expiry::Formed => format!("Team {team_id} formed after all."),
        groups::Expiry::Failed(n) => format!("Team {team_id} failed; {n} paid member(s) being refunded."),
    };
    let back =
        form.activity_id.map_or_else(|| "/admin/group-buy".to_owned(), |id| format!("/admin/group-buy/{id}"));
    Ok(see_other(&format!("{back}?done={}", url_encode(&done))))
}
