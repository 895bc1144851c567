//! The shopper's side of ordering: Buy (page form and JSON API), checkout, order pages with live
//! status and their price breakdown, and the API views of orders (one order, the numbered list,
//! and the original project's keyset list `query_user_order_list`).

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::device::Device;
use super::group_buy::{TEAM_STATES, TeamView, team_state};
use super::identity::{MaybeShopper, Shopper, session_token};
use super::{Nav, csrf, filters, render};
use crate::china_time;
use crate::config::url_origin;
use crate::error::{AppError, Envelope};
use crate::i18n::Lang;
use crate::models::group_buy::{Team, TeamStatus};
use crate::models::now;
use crate::models::order::{Order, OrderAtCheckout, OrderStatus};
use crate::models::order_discount::DiscountType;
use crate::models::user::AppUser;
use crate::money::format_yuan;
use crate::services::group_buy::GroupBuyPick;
use crate::services::order::{
    self as orders, OrderToPay, PayMethod, Purchase, RefundOutcome, RefundReply, Shop,
};
use crate::services::order_history::{self as history, Breakdown, OrderCursor, OrderPage, PricedOrder};
use crate::services::pay_page::{self, CheckoutView, PayPage, Payment};
use crate::services::reconcile::Reconciler;
use crate::services::session;
use crate::state::AppState;

const PER_PAGE: i64 = 20;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/products/{product_id}/buy", web::post().to(buy))
        .route("/orders", web::get().to(my_orders))
        .route("/orders/return", web::get().to(returned))
        .route("/orders/{order_id}", web::get().to(order_page))
        .route("/orders/{order_id}/pay", web::get().to(pay))
        .route("/orders/{order_id}/pay-with", web::post().to(pay_with))
        .route("/orders/{order_id}/cancel", web::post().to(cancel))
        .route("/orders/{order_id}/live", web::get().to(live_status));
}

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/alipay/create_pay_order", web::post().to(create_pay_order))
        .route("/v1/alipay/refund_order", web::post().to(refund_order))
        .route("/v1/alipay/query_user_order_list", web::post().to(query_user_order_list))
        .route("/v1/orders", web::get().to(api_my_orders))
        .route("/v1/orders/{order_id}", web::get().to(api_order));
}

/// An order as the JSON API shows it. `totalAmount` is what Alipay charges, as is `payAmount`;
/// `originalAmount` is the list price and `discountAmount` what `discounts` took off it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderView {
    pub order_id: String,
    pub product_id: String,
    pub product_name: String,
    pub total_amount: String,
    pub original_amount: String,
    pub discount_amount: String,
    pub pay_amount: String,
    pub discounts: Vec<DiscountView>,
    pub status: OrderStatus,
    pub order_time: String,
    pub pay_time: Option<String>,
    pub trade_no: Option<String>,
    pub market_type: u8,
    pub market_deduction_amount: String,
    pub team_id: Option<String>,
    pub team_status: Option<TeamStatus>,
    /// The team's state as the shopper reads it (`team-state-…`), one of `TEAM_STATES`.
    pub team_state: Option<&'static str>,
    /// A group order's team.
    pub team: Option<TeamView>,
}

/// One discount applied to an order.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscountView {
    #[serde(rename = "type")]
    pub discount_type: &'static str,
    pub ref_id: String,
    pub name: String,
    pub amount: String,
}

impl OrderView {
    pub fn new(o: &Order, breakdown: &Breakdown, team: Option<&Team>) -> Self {
        OrderView {
            order_id: o.order_id.clone(),
            product_id: o.product_id.clone(),
            product_name: o.product_name.clone(),
            total_amount: format_yuan(o.total_cents),
            original_amount: format_yuan(breakdown.original_cents),
            discount_amount: format_yuan(breakdown.discount_cents),
            pay_amount: format_yuan(breakdown.payable_cents),
            discounts: breakdown
                .discounts
                .iter()
                .map(|d| DiscountView {
                    discount_type: d.discount_type.as_str(),
                    ref_id: d.ref_id.clone(),
                    name: d.name.clone(),
                    amount: format_yuan(d.amount_cents),
                })
                .collect(),
            status: o.status,
            order_time: china_time::format(o.order_time),
            pay_time: o.pay_time.map(china_time::format),
            trade_no: o.trade_no.clone(),
            market_type: market_type(o),
            market_deduction_amount: format_yuan(breakdown.deduction_cents(DiscountType::GroupBuy)),
            team_id: o.team_id.clone(),
            team_status: team.map(|t| t.status),
            team_state: team.map(|t| team_state(t.status, o.status)),
            team: team.map(|t| team_view(o, t)),
        }
    }
}

/// The order's team as its owner sees it. Only the shopper's own openid is at hand: another
/// leader shows as `****`.
fn team_view(o: &Order, t: &Team) -> TeamView {
    TeamView::new(t, if t.leader_user_id == o.user_id { &o.openid } else { "" }, now())
}

impl From<&PricedOrder> for OrderView {
    fn from(o: &PricedOrder) -> Self {
        OrderView::new(&o.order, &o.breakdown, o.team.as_ref())
    }
}

/// The original project's order list (`query_user_order_list`): `totalAmount` is the list
/// price, the deductions what each kind of discount took off it, `payAmount` what Alipay
/// charges; `payUrl` is the order's page; `lastId` starts the next page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOrderList {
    pub order_list: Vec<UserOrderItem>,
    pub has_more: bool,
    pub last_id: Option<i64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserOrderItem {
    pub id: i64,
    pub user_id: i64,
    pub order_id: String,
    pub product_id: String,
    pub product_name: String,
    pub order_time: String,
    pub total_amount: String,
    pub market_deduction_amount: String,
    pub coupon_deduction_amount: String,
    pub pay_amount: String,
    pub status: OrderStatus,
    pub pay_time: Option<String>,
    pub pay_url: String,
    pub market_type: u8,
    pub team_id: Option<String>,
    pub team_status: Option<TeamStatus>,
}

/// The original's `marketType`: 1 for a group order, 0 for one bought alone.
fn market_type(order: &Order) -> u8 {
    u8::from(order.team_id.is_some())
}

impl From<&OrderPage> for UserOrderList {
    fn from(page: &OrderPage) -> Self {
        let order_list = page
            .orders
            .iter()
            .map(|PricedOrder { order: o, breakdown, team }| UserOrderItem {
                id: o.id,
                user_id: o.user_id,
                order_id: o.order_id.clone(),
                product_id: o.product_id.clone(),
                product_name: o.product_name.clone(),
                order_time: china_time::format(o.order_time),
                total_amount: format_yuan(breakdown.original_cents),
                market_deduction_amount: format_yuan(breakdown.deduction_cents(DiscountType::GroupBuy)),
                coupon_deduction_amount: format_yuan(breakdown.deduction_cents(DiscountType::Coupon)),
                pay_amount: format_yuan(breakdown.payable_cents),
                status: o.status,
                pay_time: o.pay_time.map(china_time::format),
                pay_url: format!("/orders/{}", o.order_id),
                market_type: market_type(o),
                team_id: o.team_id.clone(),
                team_status: team.as_ref().map(|t| t.status),
            })
            .collect();
        UserOrderList { order_list, has_more: page.has_more, last_id: page.last_id }
    }
}

#[derive(Template)]
#[template(path = "checkout.html")]
struct CheckoutPage {
    lang: Lang,
    nav: Nav,
    order: OrderAtCheckout,
    breakdown: Breakdown,
    payment: Payment,
    /// The shopper's open order from an earlier Buy: the page offers to pay or cancel it instead
    /// of going on to the cashier by itself.
    existing: bool,
    /// Inside WeChat, an Alipay order's pay page to open in the phone's browser: the page shows
    /// the guide there instead of the form.
    pay_link: Option<String>,
    /// An Alipay form goes on to the cashier by itself (a new order on a phone); otherwise the
    /// page offers the channels to choose from.
    auto_submit: bool,
    /// WeChat Pay is configured: the Alipay page offers it too.
    wechat_pay: bool,
}

impl CheckoutPage {
    /// The order is paid with WeChat Pay: the page runs `public/js/wechat-pay.js`.
    fn wechat(&self) -> bool {
        !matches!(self.payment, Payment::Alipay { .. })
    }

    /// The order is paid by WeChat's pay call, inside WeChat.
    fn jsapi(&self) -> bool {
        matches!(self.payment, Payment::WechatJsapi { .. })
    }
}

#[derive(Template)]
#[template(path = "order.html")]
struct OrderDetailPage {
    lang: Lang,
    nav: Nav,
    order: Order,
    breakdown: Breakdown,
    /// A group order's team, and its state (`team-state-…` words).
    team: Option<TeamView>,
    team_state: Option<&'static str>,
    /// Every status, and every team state, for the live status's words.
    statuses: [OrderStatus; 8],
    team_states: [&'static str; 4],
    /// What the last 取消订单 / 申请退款 came to.
    notice: Option<String>,
}

/// The notices of the order page's 取消订单 / 申请退款, by the key its redirect carries: the
/// service's answers ([`RefundOutcome::key`]), `busy` and `failed`, each the message
/// `order-notice-<key>`. Only these texts are shown, so a link cannot put words on the page.
fn cancel_notice(key: &str, lang: Lang) -> Option<String> {
    let known = matches!(key, "busy" | "failed") || RefundOutcome::from_key(key).is_some();
    known.then(|| lang.keyed("order-notice", key))
}

#[derive(Deserialize)]
struct NoticeQuery {
    notice: Option<String>,
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
}

#[derive(Template)]
#[template(path = "orders.html")]
struct OrdersPage {
    lang: Lang,
    nav: Nav,
    page: OrderPage,
    /// Whether this is a later page (a link back to the newest is shown).
    later: bool,
}

#[derive(Deserialize)]
struct BuyForm {
    csrf: Option<String>,
    /// The coupon picked on the product page; empty for none.
    coupon_id: Option<String>,
    /// 开团购买 / 参与拼团: the product's group-buy activity, and the team joined (none: open one).
    activity_id: Option<String>,
    team_id: Option<String>,
}

/// The group-buy choice of a page form: an activity id (empty: bought alone) and a team id
/// (empty: open a team).
fn group_pick(activity_id: Option<&str>, team_id: Option<&str>) -> Result<Option<GroupBuyPick>, AppError> {
    let Some(activity_id) = activity_id.map(str::trim).filter(|id| !id.is_empty()) else { return Ok(None) };
    let activity_id = activity_id.parse().map_err(|_| AppError::BadRequest("拼团活动编号无效".into()))?;
    let team_id = team_id.map(str::trim).filter(|id| !id.is_empty()).map(str::to_owned);
    Ok(Some(GroupBuyPick { activity_id, team_id }))
}

/// The API's marketing choice (`marketType`, `activityId`, `teamId`): `marketType` 1 is a group
/// buy, which needs its activity; 0 or none is bought alone.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MarketChoice {
    market_type: Option<i64>,
    activity_id: Option<i64>,
    team_id: Option<String>,
}

impl MarketChoice {
    pub fn pick(self) -> Result<Option<GroupBuyPick>, AppError> {
        match (self.market_type.unwrap_or(0), self.activity_id) {
            (0, _) => Ok(None),
            (1, Some(activity_id)) => {
                let team_id = self.team_id.filter(|id| !id.trim().is_empty());
                Ok(Some(GroupBuyPick { activity_id, team_id }))
            }
            (1, None) => Err(AppError::BadRequest("非法参数：拼团须有 activityId".into())),
            _ => Err(AppError::BadRequest("非法参数：marketType 须为 0 或 1".into())),
        }
    }
}

impl BuyForm {
    fn coupon_id(&self) -> Result<Option<i64>, AppError> {
        match self.coupon_id.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some(id) => id.parse().map(Some).map_err(|_| AppError::BadRequest("优惠券编号无效".into())),
        }
    }
}

/// What the order services work with, from the app's state.
pub fn shop(state: &AppState) -> Shop<'_> {
    Shop {
        engine: &state.engine,
        settings: &state.settings,
        gateways: &state.gateways,
        numbers: &state.order_numbers,
        owner: &state.instance,
        wake: &state.wake,
    }
}

async fn checkout(
    state: &AppState,
    token: String,
    purchase: Purchase,
) -> Result<(AppUser, OrderToPay), AppError> {
    orders::checkout(&shop(state), token, purchase).await
}

/// The product page's Buy button: a logged-in shopper with a valid CSRF token gets the checkout
/// page (inside WeChat, with WeChat Pay configured, of a WeChat Pay JSAPI order; otherwise of an
/// Alipay order); a visitor is sent to log in first.
async fn buy(
    req: HttpRequest,
    lang: Lang,
    state: web::Data<AppState>,
    path: web::Path<String>,
    form: web::Form<BuyForm>,
    device: Device,
) -> Result<HttpResponse, AppError> {
    let product_id = path.into_inner();
    let login = || {
        super::see_other(&format!("/login?next={}", super::url_encode(&format!("/products/{product_id}"))))
    };
    let Some(token) = session_token(&req) else { return Ok(login()) };
    if let Err(refused) = csrf::verify(&token, form.csrf.as_deref()) {
        // A page rendered for a visitor has no token: a stale cookie means "log in", not "forged".
        let lookup = token.clone();
        let user = state.engine.run(move |conn| session::user_for_token(conn, &lookup)).await?;
        return if user.is_none() { Ok(login()) } else { Err(refused) };
    }
    let group_buy = group_pick(form.activity_id.as_deref(), form.team_id.as_deref())?;
    let method = if device == Device::WeChat && state.gateways.wechat_pay.is_some() {
        PayMethod::WechatJsapi
    } else {
        PayMethod::Alipay(device.cashier())
    };
    let purchase =
        Purchase { product_id: product_id.clone(), coupon_id: form.coupon_id()?, group_buy, method };
    let (user, to_pay) = match checkout(&state, token.clone(), purchase).await {
        Err(AppError::NotLoggedIn) => return Ok(login()),
        other => other?,
    };
    checkout_page(&state, lang, MaybeShopper(Some(Shopper { user, token })), to_pay, device).await
}

/// The order's pay page, the link the guide inside WeChat gives: the checkout of the order again
/// (its form, or a fresh one once it expired), going on to the cashier by itself. A visitor logs
/// in first and comes back; an order no longer waiting goes to its own page.
async fn pay(
    lang: Lang,
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    path: web::Path<String>,
    query: web::Query<PayLinkQuery>,
    device: Device,
) -> Result<HttpResponse, AppError> {
    let order_id = path.into_inner();
    let page = format!("/orders/{}", super::url_encode(&order_id));
    if let (Some(until), Some(sig)) = (query.until, query.sig.as_deref()) {
        if !state.pay_links.verify(&order_id, until, sig, now()) {
            return Err(AppError::Forbidden("付款链接无效或已过期，请回到微信重新打开订单".into()));
        }
        return match pay_page::by_link(&state.engine, order_id).await? {
            PayPage::Form(to_pay) => checkout_page(&state, lang, shopper, to_pay, device).await,
            _ => Ok(super::see_other(&page)),
        };
    }
    let login = || super::see_other(&format!("/login?next={}", super::url_encode(&format!("{page}/pay"))));
    let Some(Shopper { token, .. }) = shopper.0 else { return Ok(login()) };
    let opened =
        pay_page::open(&shop(&state), token.clone(), order_id, PayMethod::Alipay(device.cashier())).await;
    opened_page(&state, lang, token, opened, device, &page, &format!("{page}/pay")).await
}

/// The checkout page of the order [`pay_page::open`] came to; an order no longer waiting goes to
/// its own `page`, and a session that ended to the login, back to `next` afterwards.
async fn opened_page(
    state: &AppState,
    lang: Lang,
    token: String,
    opened: Result<PayPage, AppError>,
    device: Device,
    page: &str,
    next: &str,
) -> Result<HttpResponse, AppError> {
    match opened {
        Ok(PayPage::Pay(user, to_pay)) => {
            let to_pay = OrderToPay { existing: false, ..to_pay };
            checkout_page(state, lang, MaybeShopper(Some(Shopper { user, token })), to_pay, device).await
        }
        Ok(PayPage::Form(_) | PayPage::Settled) => Ok(super::see_other(page)),
        Err(AppError::NotLoggedIn) => {
            Ok(super::see_other(&format!("/login?next={}", super::url_encode(next))))
        }
        Err(other) => Err(other),
    }
}

/// The checkout page's 微信支付 / 支付宝支付 choice (`channel`: `WECHAT_PAY` or `ALIPAY`) for an
/// open order: [`pay_page::open`] with that channel's method for this device, then the checkout
/// page of the order that replaces it. A visitor is sent to log in; a form without this
/// session's token is refused; another shopper's order is not found; an order no longer
/// waiting goes to its own page.
async fn pay_with(
    lang: Lang,
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    path: web::Path<String>,
    form: web::Form<PayWithForm>,
    device: Device,
) -> Result<HttpResponse, AppError> {
    let order_id = path.into_inner();
    let page = format!("/orders/{}", super::url_encode(&order_id));
    let Some(Shopper { token, .. }) = shopper.0 else {
        return Ok(super::see_other(&format!("/login?next={}", super::url_encode(&page))));
    };
    csrf::verify(&token, form.csrf.as_deref())?;
    let method = match form.channel.as_str() {
        "ALIPAY" => PayMethod::Alipay(device.cashier()),
        "WECHAT_PAY" if state.gateways.wechat_pay.is_some() => device.wechat_pay_method(),
        "WECHAT_PAY" => return Err(AppError::Conflict("暂不支持微信支付".into())),
        _ => return Err(AppError::BadRequest("非法参数：channel 须为 ALIPAY 或 WECHAT_PAY".into())),
    };
    let opened = pay_page::open(&shop(&state), token.clone(), order_id, method).await;
    opened_page(&state, lang, token, opened, device, &page, &page).await
}

#[derive(Deserialize)]
struct PayWithForm {
    csrf: Option<String>,
    channel: String,
}

/// The checkout page of an order to pay, with its breakdown and its channel's way to pay
/// ([`pay_page::checkout_view`]): Alipay's form (on a computer beside a choice of WeChat Pay;
/// inside WeChat the guide with the order's signed pay link, as the phone's browser has no
/// session), or WeChat Pay's QR code or pay button.
async fn checkout_page(
    state: &AppState,
    lang: Lang,
    shopper: MaybeShopper,
    to_pay: OrderToPay,
    device: Device,
) -> Result<HttpResponse, AppError> {
    let OrderToPay { order, pay_form, existing } = to_pay;
    let CheckoutView { breakdown, payment } = pay_page::checkout_view(&shop(state), &order, pay_form).await?;
    let alipay = matches!(payment, Payment::Alipay { .. });
    let pay_link = (alipay && device == Device::WeChat).then(|| {
        let signed = state.pay_links.query(&order.order_id, order.expire_at);
        format!(
            "{}/orders/{}/pay?{signed}",
            state.settings.server.public_url,
            super::url_encode(&order.order_id)
        )
    });
    let auto_submit = alipay && !existing && device == Device::Phone;
    let wechat_pay = state.gateways.wechat_pay.is_some();
    let nav = shopper.nav();
    render(&CheckoutPage {
        lang,
        nav,
        order,
        breakdown,
        payment,
        existing,
        pay_link,
        auto_submit,
        wechat_pay,
    })
}

async fn create_pay_order(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<CreatePayOrder>,
    device: Device,
) -> Result<HttpResponse, AppError> {
    let token = session_token(&req).ok_or(AppError::NotLoggedIn)?;
    let CreatePayOrder { product_id, coupon_id, market } = body.into_inner();
    if product_id.trim().is_empty() {
        return Err(AppError::BadRequest("非法参数：缺少 productId".into()));
    }
    let method = PayMethod::Alipay(device.cashier());
    let purchase = Purchase { product_id, coupon_id, group_buy: market.pick()?, method };
    let (_, to_pay) = checkout(&state, token, purchase).await?;
    Ok(Envelope::ok(to_pay.pay_form))
}

/// The shopper's 取消订单 / 申请退款 (MARKETING.md §5.8): `{success, message, orderId}`.
async fn refund_order(
    state: web::Data<AppState>,
    shopper: Shopper,
    body: web::Json<OrderRef>,
) -> Result<HttpResponse, AppError> {
    let reply = shopper_refund(&state, shopper.user, body.into_inner().order_id).await?;
    Ok(Envelope::ok(reply))
}

/// [`orders::shopper_refund`]: it asks the order's channel holding the order's lease and no
/// pooled connection.
async fn shopper_refund(state: &AppState, user: AppUser, order_id: String) -> Result<RefundReply, AppError> {
    let (gateways, settings, owner) =
        (state.gateways.clone(), state.settings.clone(), state.instance.clone());
    let wake = state.wake.clone();
    state
        .engine
        .call_out(move |pool| {
            let reconciler =
                Reconciler { gateways: &gateways, settings: &settings, owner: &owner, wake: &wake };
            orders::shopper_refund(&reconciler, pool, &user, &order_id)
        })
        .await
}

/// The order and checkout pages' 取消订单 / 申请退款: [`orders::shopper_refund`], then back to the
/// order page with a notice key ([`cancel_notice`]). A visitor is sent to log in; a form without
/// this session's token is refused and changes nothing; another shopper's order is not found.
async fn cancel(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    path: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, AppError> {
    let order_id = path.into_inner();
    let page = format!("/orders/{}", super::url_encode(&order_id));
    let Some(current) = shopper.0 else {
        return Ok(super::see_other(&format!("/login?next={}", super::url_encode(&page))));
    };
    csrf::verify(&current.token, form.csrf.as_deref())?;
    let key = match shopper_refund(&state, current.user, order_id).await {
        Ok(reply) => reply.outcome.key(),
        Err(AppError::Conflict(_)) => "busy",
        Err(e @ (AppError::Gateway { .. } | AppError::Unavailable(_))) => {
            log::warn!("a shopper's cancel of {page} failed: {}", e.detail());
            "failed"
        }
        Err(other) => return Err(other),
    };
    Ok(super::see_other(&format!("{page}?notice={key}")))
}

/// A signed pay link's query (`services::pay_page::PayLinks`).
#[derive(Deserialize)]
struct PayLinkQuery {
    until: Option<i64>,
    sig: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OrderRef {
    order_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreatePayOrder {
    product_id: String,
    coupon_id: Option<i64>,
    #[serde(flatten)]
    market: MarketChoice,
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeysetQuery {
    last_id: Option<i64>,
}

/// "My orders": newest first, [`history::DEFAULT_PAGE_SIZE`] a page, each next page the orders
/// below the last one shown (`?lastId=`).
async fn my_orders(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
    query: web::Query<KeysetQuery>,
) -> Result<HttpResponse, AppError> {
    let Some(current) = shopper.0.clone() else { return Ok(super::see_other("/login?next=/orders")) };
    let cursor = OrderCursor::new(query.last_id, None)?;
    let user = current.user.clone();
    let page = state.engine.run(move |conn| history::keyset_page(conn, &user, cursor)).await?;
    render(&OrdersPage { lang, nav: shopper.nav(), page, later: cursor.before_id.is_some() })
}

/// `query_user_order_list`'s body. Both fields are whole numbers (a JSON number or a string of
/// digits) or absent; anything else is a 0002.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryUserOrderList {
    #[serde(default)]
    last_id: Option<serde_json::Value>,
    #[serde(default)]
    page_size: Option<serde_json::Value>,
}

fn whole_number(name: &str, value: Option<serde_json::Value>) -> Result<Option<i64>, AppError> {
    let number = match &value {
        None | Some(serde_json::Value::Null) => return Ok(None),
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        Some(_) => None,
    };
    number.map(Some).ok_or_else(|| AppError::BadRequest(format!("非法参数：{name} 须为整数")))
}

/// The original project's order list: the session's shopper's orders, newest first, keyset-paged
/// by `lastId` (see [`history::OrderCursor`]).
async fn query_user_order_list(
    state: web::Data<AppState>,
    shopper: Shopper,
    body: web::Json<QueryUserOrderList>,
) -> Result<HttpResponse, AppError> {
    let body = body.into_inner();
    let cursor =
        OrderCursor::new(whole_number("lastId", body.last_id)?, whole_number("pageSize", body.page_size)?)?;
    let user = shopper.user.clone();
    let page = state.engine.run(move |conn| history::keyset_page(conn, &user, cursor)).await?;
    Ok(Envelope::ok(UserOrderList::from(&page)))
}

async fn shoppers_order(
    state: &web::Data<AppState>,
    shopper: &Shopper,
    order_id: String,
) -> Result<PricedOrder, AppError> {
    let user = shopper.user.clone();
    state.engine.run(move |conn| history::of_shopper(conn, &user, &order_id)).await
}

async fn order_page(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
    path: web::Path<String>,
    query: web::Query<NoticeQuery>,
) -> Result<HttpResponse, AppError> {
    let order_id = path.into_inner();
    let Some(current) = shopper.0.clone() else {
        return Ok(super::see_other(&format!(
            "/login?next={}",
            super::url_encode(&format!("/orders/{order_id}"))
        )));
    };
    let PricedOrder { order, breakdown, team } = shoppers_order(&state, &current, order_id).await?;
    let notice = query.notice.as_deref().and_then(|key| cancel_notice(key, lang));
    let team_state = team.as_ref().map(|t| team_state(t.status, order.status));
    let team = team.as_ref().map(|t| team_view(&order, t));
    let (nav, statuses) = (shopper.nav(), OrderStatus::ALL);
    let team_states = TEAM_STATES;
    render(&OrderDetailPage { lang, nav, order, breakdown, team, team_state, statuses, team_states, notice })
}

#[derive(Deserialize)]
struct ReturnQuery {
    out_trade_no: Option<String>,
}

/// Alipay's `return_url`: back to the order page. It never marks an order paid: only a verified
/// notification or query does.
async fn returned(query: web::Query<ReturnQuery>) -> HttpResponse {
    match query.out_trade_no.as_deref().filter(|id| id.chars().all(|c| c.is_ascii_digit()) && !id.is_empty())
    {
        Some(order_id) => super::see_other(&format!("/orders/{order_id}")),
        None => super::see_other("/orders"),
    }
}

/// Pushes the order's status over a WebSocket whenever it changes. It reads the database, so a
/// payment handled by any instance shows up. Only the shop's own pages may open it: a missing
/// `Origin`, or one other than `server.public_url`'s, is refused (403), since the browser sends
/// the session cookie whichever site opens the socket.
async fn live_status(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
    shopper: Shopper,
    path: web::Path<String>,
) -> Result<HttpResponse, actix_web::Error> {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).and_then(url_origin);
    if origin.is_none() || origin != url_origin(&state.settings.server.public_url) {
        return Err(AppError::Forbidden("The live status is only for the shop's own pages.".into()).into());
    }
    // The breakdown is the order's snapshot: read once, sent with every status.
    let PricedOrder { order, breakdown, .. } = shoppers_order(&state, &shopper, path.into_inner()).await?;
    let (response, mut session, mut messages) = actix_ws::handle(&req, stream)?;
    actix_web::rt::spawn(async move {
        let mut last_status = None;
        let mut tick = actix_web::rt::time::interval(Duration::from_secs(1));
        let mut idle_ticks = 0u32;
        loop {
            tokio::select! {
                message = messages.next() => match message {
                    Some(Ok(actix_ws::Message::Ping(bytes))) => { if session.pong(&bytes).await.is_err() { return; } }
                    Some(Ok(actix_ws::Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                _ = tick.tick() => {
                    let (order_id, user) = (order.order_id.clone(), shopper.user.clone());
                    let Ok((current, team)) = state.engine.run(move |conn| history::current(conn, &user, &order_id)).await else { break };
                    let seen = (current.status, team.as_ref().map(|t| (t.status, t.lock_count, t.paid_count)));
                    if Some(seen) != last_status {
                        last_status = Some(seen);
                        idle_ticks = 0;
                        let view = serde_json::to_string(&OrderView::new(&current, &breakdown, team.as_ref())).unwrap_or_default();
                        if session.text(view).await.is_err() { return; }
                    } else {
                        idle_ticks += 1;
                        // Keep the connection alive through proxies; stop after an hour unchanged.
                        if idle_ticks.is_multiple_of(20) && session.ping(b"").await.is_err() { return; }
                        if idle_ticks > 3600 { break; }
                    }
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}

async fn api_my_orders(
    state: web::Data<AppState>,
    shopper: Shopper,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, AppError> {
    let page = super::page_number(query.page)?;
    let user = shopper.user.clone();
    let orders = state.engine.run(move |conn| history::numbered_page(conn, &user, page, PER_PAGE)).await?;
    Ok(Envelope::ok(orders.iter().map(OrderView::from).collect::<Vec<_>>()))
}

async fn api_order(
    state: web::Data<AppState>,
    shopper: Shopper,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let order = shoppers_order(&state, &shopper, path.into_inner()).await?;
    Ok(Envelope::ok(OrderView::from(&order)))
}
