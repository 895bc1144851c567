//! The order state machine. Every transition is one conditional UPDATE inside a write
//! transaction that also records the timeline and enqueues any after-commit work; a caller that
//! loses the race updates nothing.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Duration, NaiveDateTime};

use crate::config::Settings;
use serde::Serialize;

use crate::db::{DbConn, DbPool, Guard, Guarded, Inserts, write_transaction};
use crate::engine::{Engine, Thread};
use crate::error::{AppError, AppResult};
use crate::gateways::Gateways;
use crate::gateways::alipay::{AlipayClient, Cashier, PagePay};
use crate::gateways::wechat_pay::{JsapiPayParams, WechatPayClient};
use crate::jobs::Wake;
use crate::models::coupon::{self, UserCouponWithTemplate};
use crate::models::order::{Channel, CheckoutStart, NewOrder, Order, OrderAtCheckout, OrderStatus};
use crate::models::order_discount::DiscountType;
use crate::models::product::{self, Product};
use crate::models::user::AppUser;
use crate::models::{is_unique_violation, now};
use crate::models::{order_discount, order_event};
use crate::services::coupon::CouponRefusal;
use crate::services::group_buy::{self, GroupBuyDraft, GroupBuyPick};
use crate::services::pricing::{self, AppliedDiscount, Price, PricingChoices};
use crate::services::reconcile::{self, Reconciler};
use crate::services::session;

/// A form is not handed out when it has less than this left before `time_expire`.
pub const FORM_MARGIN_SECS: i64 = 60;

/// The first step of a checkout, which only reads: the shopper's open order for the product
/// while its payment form is valid, or what a new order needs. Then [`OrderDraft::sign`] with a
/// number from [`OrderNumbers`], and [`place`].
pub enum Checkout {
    Open(OrderToPay),
    New(Box<OrderDraft>),
    /// The shopper's open order is another channel's: closed there first, so that it can never
    /// be paid twice, then the checkout starts again.
    Switch(String),
}

/// An order waiting for its payment, and the signed form that pays it at Alipay's cashier.
pub struct OrderToPay {
    pub order: OrderAtCheckout,
    pub pay_form: String,
    /// The shopper's open order from an earlier checkout, handed out again.
    pub existing: bool,
}

/// What a shopper buys: the product and the marketing choices priced with it.
#[derive(Debug, Clone)]
pub struct Purchase {
    pub product_id: String,
    /// One of the shopper's coupons (one per order).
    pub coupon_id: Option<i64>,
    /// A group buy (拼团): open a team, or join one.
    pub group_buy: Option<GroupBuyPick>,
    /// How a new order is paid; an open order keeps the form it was made with, unless it is
    /// another channel's (the shopper switched: see [`checkout`]).
    pub method: PayMethod,
}

/// How the shopper pays: at Alipay's cashier (the computer's or the phone's), or with WeChat Pay
/// by scanning its code (Native) or inside WeChat (JSAPI, as the shopper's own openid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayMethod {
    Alipay(Cashier),
    WechatNative,
    WechatJsapi,
}

impl PayMethod {
    pub fn channel(self) -> Channel {
        match self {
            PayMethod::Alipay(_) => Channel::Alipay,
            PayMethod::WechatNative | PayMethod::WechatJsapi => Channel::WechatPay,
        }
    }
}

/// A new order before it exists: the product as priced now ([`pricing::price`]), and the
/// shopper's open order whose form expired, which [`place`] closes first (a new order replaces
/// it). It is signed outside any
/// transaction ([`OrderDraft::sign`]): the signature is the costliest step of an order, and
/// inside a transaction it would hold the product's row (PostgreSQL) or the one writer (SQLite),
/// so that orders arriving together were signed one after another.
pub struct OrderDraft {
    shopper: AppUser,
    /// The product as priced; its list price is what [`place`]'s reservation checks.
    product: Product,
    price: Price,
    coupon: Option<UserCouponWithTemplate>,
    group_buy: Option<GroupBuyDraft>,
    at: NaiveDateTime,
    expire_at: NaiveDateTime,
    next_query_at: NaiveDateTime,
    replaces: Option<String>,
}

/// A drafted order with its id and signed page-pay form, ready for [`place`].
pub struct SignedOrder {
    order_id: String,
    draft: OrderDraft,
    pay_form: String,
    /// The channel whose form `pay_form` is.
    channel: Channel,
}

/// A checkout: the shopper behind the session `token` and their order for the purchase, found
/// or made; a coupon that does not apply is refused with its code and nothing is made. The session and the open order are looked up in one write job (on SQLite in the writer,
/// though it only reads: the writer's page cache is the one every commit leaves warm); a new order
/// takes a number from this instance's block, has its form signed on a signing thread, outside any
/// transaction, and is placed in a second job. [`AppError::NotLoggedIn`] without a live session.
pub async fn checkout(
    shop: &Shop<'_>,
    token: String,
    purchase: Purchase,
) -> AppResult<(AppUser, OrderToPay)> {
    let Shop { engine, settings, gateways, numbers, .. } = *shop;
    // Each round ends with an order, or another request of the shopper made one first (or the
    // stock or price moved, or an order of another channel was closed): the next round finds it,
    // or says why there is none.
    for _ in 0..3 {
        let (lookup, wanted, begin) = (token.clone(), purchase.clone(), settings.clone());
        let (user, next) = engine.write(move |conn| begin_checkout(conn, &begin, &lookup, &wanted)).await?;
        let draft = match next {
            Checkout::Open(to_pay) => return Ok((user, to_pay)),
            Checkout::New(draft) => draft,
            Checkout::Switch(order_id) => {
                switch_away(shop, order_id).await?;
                continue;
            }
        };
        let number = numbers.next(|| engine.write(take_numbers)).await?;
        let settings = settings.clone();
        let placing = move |conn: &mut DbConn, signed: SignedOrder| place(conn, &settings, &signed);
        let placed = match purchase.method {
            PayMethod::Alipay(cashier) => {
                let alipay = gateways.alipay.clone();
                let sign = move || Ok(draft.sign(number, &alipay, cashier));
                engine.then_write(Thread::Signing, sign, placing).await?
            }
            method => {
                let wechat_pay = gateways
                    .wechat_pay
                    .clone()
                    .ok_or_else(|| AppError::Conflict("暂不支持微信支付".into()))?;
                let open = move || draft.open_at_wechat_pay(number, &wechat_pay, method);
                engine.then_write(Thread::CallOut, open, placing).await?
            }
        };
        if let Placed::Order(to_pay) = placed {
            return Ok((user, to_pay));
        }
    }
    Err(AppError::Conflict("订单正在处理中，请稍后再试".into()))
}

/// How a WeChat Pay order is paid, from its stored form: the code to scan (Native), or the
/// parameters the WeChat browser's pay call takes (JSAPI, signed now with the merchant key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WechatPayment {
    Native { code_url: String },
    Jsapi(JsapiPayParams),
}

/// The payment of a WeChat Pay order's form (`code_url`, or `prepay_id=…`).
pub fn wechat_payment(wechat_pay: &WechatPayClient, pay_form: &str) -> WechatPayment {
    match pay_form.strip_prefix("prepay_id=") {
        Some(prepay_id) => WechatPayment::Jsapi(wechat_pay.jsapi_pay_params(prepay_id)),
        None => WechatPayment::Native { code_url: pay_form.to_owned() },
    }
}

/// What a checkout works with: where blocking work runs, the settings, the channels' gateways,
/// this instance's order numbers, and for closing an order at its channel (a switch) the name
/// its lease is taken in and the wake for a payment found meanwhile.
#[derive(Clone, Copy)]
pub struct Shop<'a> {
    pub engine: &'a Engine,
    pub settings: &'a Arc<Settings>,
    pub gateways: &'a Gateways,
    pub numbers: &'a OrderNumbers,
    pub owner: &'a str,
    pub wake: &'a Wake,
}

/// Closes the shopper's open order at its own channel, then here, under its lease
/// ([`reconcile::close`]), before an order of another channel is made. If the old channel says
/// it was paid, the payment is recorded and the checkout refused: the shopper has paid.
async fn switch_away(shop: &Shop<'_>, order_id: String) -> AppResult<()> {
    let (settings, gateways, owner, wake) =
        (shop.settings.clone(), shop.gateways.clone(), shop.owner.to_owned(), shop.wake.clone());
    shop.engine
        .call_out(move |pool| {
            let reconciler =
                Reconciler { gateways: &gateways, settings: &settings, owner: &owner, wake: &wake };
            if reconciler.under_lease(pool, &order_id, "switch of channel", reconcile::close)?.is_none() {
                return Err(AppError::Conflict("订单正在处理中，请稍后再试".into()));
            }
            match Order::find(&mut *pool.get()?, &order_id)?.map(|o| o.status) {
                Some(status) if status.is_open() => {
                    Err(AppError::Conflict("订单正在处理中，请稍后再试".into()))
                }
                Some(OrderStatus::Close) | None => Ok(()),
                Some(_) => Err(AppError::Conflict("该订单已支付，请勿重复支付".into())),
            }
        })
        .await
}

/// The shopper behind the session `token` and where their checkout of the purchase starts, read
/// by one statement, and with marketing choices one more for each: the coupon (and its products
/// when its scope names some), the group buy's rows; [`AppError::NotLoggedIn`] without a live
/// session.
pub fn begin_checkout(
    conn: &mut DbConn,
    settings: &Settings,
    token: &str,
    purchase: &Purchase,
) -> AppResult<(AppUser, Checkout)> {
    let product_id = purchase.product_id.as_str();
    let CheckoutStart { user, open, product } =
        Order::checkout_start(conn, &session::token_hash(token), product_id)?.ok_or(AppError::NotLoggedIn)?;
    let mut replaces = None;
    if let Some((open, form)) = open {
        if open.channel != purchase.method.channel() {
            return Ok((user, Checkout::Switch(open.order_id)));
        }
        if open.expire_at - Duration::seconds(FORM_MARGIN_SECS) > now()
            && let Some(pay_form) = form
        {
            return Ok((user, Checkout::Open(OrderToPay { order: open, pay_form, existing: true })));
        }
        replaces = Some(open.order_id);
    }
    let product = product.ok_or_else(|| AppError::NotFound("商品不存在".into()))?;
    if !product.on_sale {
        return Err(AppError::Conflict("商品已下架".into()));
    }
    if product.stock <= 0 {
        return Err(AppError::Conflict("商品已售罄".into()));
    }
    let pay_timeout = Duration::minutes(i64::from(settings.alipay.pay_timeout_minutes));
    // The background thread first looks at the order when it may need a query or a close.
    let compensation = &settings.compensation;
    let first_look =
        Duration::seconds(compensation.query_after_secs.min(compensation.close_after_minutes * 60) as i64);
    let at = now();
    let coupon = match purchase.coupon_id {
        Some(id) => Some(coupon::find_coupon(conn, id)?.ok_or(CouponRefusal::Unknown)?),
        None => None,
    };
    let group_buy = match &purchase.group_buy {
        Some(pick) => {
            Some(group_buy::prepare(conn, settings, pick, product_id, Some(&user), replaces.as_deref(), at)?)
        }
        None => None,
    };
    let choices = PricingChoices { coupon: coupon.as_ref(), group_buy: group_buy.as_ref() };
    let price = pricing::price(&product, Some(&user), &choices, at)?;
    // A group order's payment window ends with its team.
    let expire_at =
        group_buy.as_ref().map_or(at + pay_timeout, |g| (at + pay_timeout).min(g.team_expires_at()));
    let draft = OrderDraft {
        shopper: user.clone(),
        product,
        price,
        coupon,
        group_buy,
        at,
        expire_at,
        next_query_at: at + first_look,
        replaces,
    };
    Ok((user, Checkout::New(Box::new(draft))))
}

impl OrderDraft {
    /// Numbers the order and opens its payment at WeChat Pay (a call out): a Native order's
    /// `code_url` to show as a QR code, or a JSAPI order's `prepay_id=…` package for the shopper's
    /// own openid, kept as the order's form. A call that fails or times out places nothing: a
    /// code never shown is never paid.
    pub fn open_at_wechat_pay(
        self,
        number: i64,
        wechat_pay: &WechatPayClient,
        method: PayMethod,
    ) -> AppResult<SignedOrder> {
        let order_id = self.order_id(number);
        let (description, fen, expire) =
            (self.product.name.as_str(), self.price.payable_cents, self.expire_at);
        let pay_form = match method {
            PayMethod::WechatJsapi => {
                let prepay_id =
                    wechat_pay.jsapi_order(&order_id, description, fen, expire, &self.shopper.openid)?;
                format!("prepay_id={prepay_id}")
            }
            _ => wechat_pay.native_order(&order_id, description, fen, expire)?,
        };
        Ok(SignedOrder { order_id, draft: self, pay_form, channel: Channel::WechatPay })
    }

    fn order_id(&self, number: i64) -> String {
        format!("{}{number:010}", self.at.format("%y%m%d"))
    }

    /// Numbers the order and signs its payment form for `cashier` (RSA2, local: no call out).
    pub fn sign(self, number: i64, alipay: &AlipayClient, cashier: Cashier) -> SignedOrder {
        let order_id = self.order_id(number);
        let pay = PagePay {
            out_trade_no: &order_id,
            total_cents: self.price.payable_cents,
            subject: &self.product.name,
            product_id: &self.product.product_id,
            time_expire: self.expire_at,
        };
        let pay_form = alipay.pay_form(&pay, cashier, self.at);
        SignedOrder { order_id, draft: self, pay_form, channel: Channel::Alipay }
    }
}

/// The order numbers this instance hands out: a block taken from the sequence at a time
/// ([`take_numbers`]), so an order does not write to the database before it is signed.
#[derive(Default)]
pub struct OrderNumbers {
    free: Mutex<Range<i64>>,
}

impl OrderNumbers {
    /// The next free number; `take_block` gets a new block when none is left.
    pub async fn next<F>(&self, take_block: impl FnOnce() -> F) -> AppResult<i64>
    where
        F: Future<Output = AppResult<Range<i64>>>,
    {
        if let Some(number) = self.free.lock().unwrap_or_else(PoisonError::into_inner).next() {
            return Ok(number);
        }
        let mut block = take_block().await?;
        let number = block.next().ok_or_else(|| AppError::internal("an empty block of order numbers"))?;
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        // Requests that ran out together each took a block; one keeps the rest of its own.
        if free.is_empty() {
            *free = block;
        }
        Ok(number)
    }
}

/// A new block of order numbers (it writes: on SQLite it runs in the writer).
pub fn take_numbers(conn: &mut DbConn) -> AppResult<Range<i64>> {
    Ok(Order::take_number_block(conn)?)
}

/// What came of [`place`].
pub enum Placed {
    Order(OrderToPay),
    /// Not placed, nothing changed: the product sold out, went off sale or changed its price, or
    /// another request of the shopper made an order for it first. [`begin_checkout`] says which.
    Moved,
}

/// Why a signed order was not placed, inside [`place`].
enum NotPlaced {
    Moved,
    /// A marketing rule refused it (a coupon, a seat, the take limit).
    Refused(AppError),
    Database(diesel::result::Error),
}

impl From<AppError> for NotPlaced {
    fn from(e: AppError) -> Self {
        NotPlaced::Refused(e)
    }
}

impl From<diesel::result::Error> for NotPlaced {
    fn from(e: diesel::result::Error) -> Self {
        NotPlaced::Database(e)
    }
}

/// Places a signed order, born `PAY_WAIT` with its form and its price snapshot (list price,
/// discount, payable): one unit reserved at the list price that was priced, the order, its
/// timeline row, and with marketing choices its discount rows, its group-buy seat and its coupon
/// locked, all or nothing, in one statement on PostgreSQL. The reservation checks the list price
/// that was priced; what else the price depends on is a guard ([`place_marketed`]): a coupon
/// another order locked meanwhile (C0002), an activity ended meanwhile (E0101), a team filled
/// meanwhile (E0006) or the take limit (E0103) refuse it and nothing stays.
pub fn place(conn: &mut DbConn, settings: &Settings, signed: &SignedOrder) -> AppResult<Placed> {
    let (order_id, draft) = (signed.order_id.as_str(), &signed.draft);
    if let Some(expired) = &draft.replaces {
        // Closed even if the new order is then refused: its form could not be used any more.
        close(conn, expired, "checkout", "payment form expired; a new order replaces it")?;
    }
    let mut rows = Inserts::default();
    let team_id = draft.group_buy.as_ref().map(|g| g.team_id(order_id));
    let [order_row, form_row] = Order::insert(&NewOrder {
        order_id,
        user_id: draft.shopper.user_id,
        openid: &draft.shopper.openid,
        product_id: &draft.product.product_id,
        product_name: &draft.product.name,
        original_cents: draft.price.total_cents,
        discount_cents: draft.price.discount_cents,
        total_cents: draft.price.payable_cents,
        pay_form: &signed.pay_form,
        team_id: team_id.as_deref(),
        channel: signed.channel,
        order_time: draft.at,
        expire_at: draft.expire_at,
        next_query_at: draft.next_query_at,
    });
    rows.add(order_row);
    rows.add(form_row);
    rows.add(order_event::row(
        order_id,
        None,
        OrderStatus::PayWait,
        "shopper",
        "order placed, stock reserved, payment form issued",
    ));
    let placed = match (&draft.coupon, &draft.group_buy) {
        (None, None) => reserve(conn, draft, &rows, Vec::new()),
        _ => place_marketed(conn, settings, signed, rows),
    };
    match placed {
        Ok(()) => {}
        Err(NotPlaced::Moved) => return Ok(Placed::Moved),
        Err(NotPlaced::Refused(refusal)) => return Err(refusal),
        // The order id comes from a sequence, so the only unique index the order can hit is "one
        // open order per shopper and product".
        Err(NotPlaced::Database(e)) if is_unique_violation(&e) => return Ok(Placed::Moved),
        Err(NotPlaced::Database(e)) => return Err(e.into()),
    }
    log::info!(
        "order {order_id} created for openid {} product {}",
        draft.shopper.openid,
        draft.product.product_id
    );
    // All the checkout shows was just written: nothing to read back.
    let order = OrderAtCheckout {
        order_id: order_id.to_owned(),
        product_name: draft.product.name.clone(),
        total_cents: draft.price.payable_cents,
        expire_at: draft.expire_at,
        channel: signed.channel,
    };
    Ok(Placed::Order(OrderToPay { order, pay_form: signed.pay_form.clone(), existing: false }))
}

/// One unit reserved at the draft's list price, and then `rows`.
/// Reserves the unit with the order's `rows` and `guards`, each with the refusal it gives.
fn reserve(
    conn: &mut DbConn,
    draft: &OrderDraft,
    rows: &Inserts,
    guards: Vec<(Guard<'_>, AppError)>,
) -> Result<(), NotPlaced> {
    let (guards, mut refusals): (Vec<_>, Vec<_>) = guards.into_iter().unzip();
    match product::reserve_at_price(conn, &draft.product.product_id, draft.price.total_cents, rows, guards)? {
        Guarded::Changed => Ok(()),
        Guarded::Unchanged => Err(NotPlaced::Moved),
        Guarded::Refused(i) => Err(NotPlaced::Refused(refusals.swap_remove(i))),
    }
}

/// [`place`] for an order with a coupon or a group buy: reserved with the order's rows and those
/// of its discounts, team and seat, and with its guards (the activity still on, the seat and
/// take counted, the coupon locked), all or nothing. It is placed at the price signed: that
/// price depends on the product's list price, which the reservation checks, on the activity's
/// status, which its guard checks (its plan and window are never edited), and on the coupon's
/// owner, status and validity, which its lock checks (its template and scope are never edited).
fn place_marketed(
    conn: &mut DbConn,
    settings: &Settings,
    signed: &SignedOrder,
    mut rows: Inserts,
) -> Result<(), NotPlaced> {
    let (draft, price) = (&signed.draft, &signed.draft.price);
    let discounts: Vec<_> = price.applied.iter().map(AppliedDiscount::as_new).collect();
    if let Some(discount_rows) = order_discount::rows(&signed.order_id, &discounts, draft.at) {
        rows.add(discount_rows);
    }
    let mut guards = Vec::new();
    if let Some(group) = &draft.group_buy {
        group_buy::seat_rows(group, &draft.shopper, &signed.order_id, draft.at, &mut rows);
        guards = group_buy::seat_guards(settings, group, &draft.shopper, draft.at)?;
    }
    // A coupon that takes nothing off (the price at its least already) is not spent.
    let applied = price.applied.iter().any(|d| d.discount_type == DiscountType::Coupon);
    if let Some(coupon) = draft.coupon.as_ref().filter(|_| applied) {
        let lock = coupon::lock(coupon.coupon.coupon_id, draft.shopper.user_id, &signed.order_id, draft.at);
        guards.push((lock, CouponRefusal::NotAvailable.into()));
    }
    reserve(conn, draft, &rows, guards)
}

/// `CREATE|PAY_WAIT -> CLOSE`, releasing the reserved stock, the coupon and the group-buy seat.
/// Returns whether this call closed it.
pub fn close(conn: &mut DbConn, order_id: &str, cause: &str, detail: &str) -> AppResult<bool> {
    write_transaction(conn, |c| {
        let Some(order) = Order::find(c, order_id)? else { return Ok(false) };
        if !Order::transition(c, order_id, &OrderStatus::OPEN, OrderStatus::Close)? {
            return Ok(false);
        }
        product::release_one(c, &order.product_id)?;
        coupon::release(c, order_id, now())?;
        group_buy::release_unpaid(c, order_id)?;
        order_event::record(c, order_id, Some(order.status), OrderStatus::Close, cause, detail)?;
        log::info!("order {order_id} closed by {cause}: {detail}");
        Ok(true)
    })
}

/// A shopper's own order; anybody else's is "not found".
pub fn of_shopper(conn: &mut DbConn, user: &AppUser, order_id: &str) -> AppResult<Order> {
    match Order::find(conn, order_id)? {
        Some(order) if order.user_id == user.user_id => Ok(order),
        _ => Err(AppError::NotFound("订单不存在".into())),
    }
}

pub fn page_of_shopper(conn: &mut DbConn, user: &AppUser, page: i64, per_page: i64) -> AppResult<Vec<Order>> {
    Ok(Order::page_of_user(conn, user.user_id, (page.max(1) - 1) * per_page, per_page)?)
}

/// What the shopper's 取消订单 / 申请退款 came to (MARKETING.md §5.8).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefundReply {
    pub success: bool,
    pub message: &'static str,
    pub order_id: String,
    /// The same answer as a value, for pages.
    #[serde(skip)]
    pub outcome: RefundOutcome,
}

/// The answers of [`shopper_refund`], each with whether it is a success and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The open order is closed now.
    Cancelled,
    /// The order was closed already.
    Closed,
    /// Alipay could not close the order yet; it stays open.
    NotClosed,
    /// The order is paid: the customer service refunds it.
    ContactService,
    Refunding,
    Refunded,
}

impl RefundReply {
    fn of(order_id: &str, outcome: RefundOutcome) -> Self {
        RefundReply {
            success: outcome.success(),
            message: outcome.message(),
            order_id: order_id.to_owned(),
            outcome,
        }
    }
}

impl RefundOutcome {
    pub const ALL: [RefundOutcome; 6] = [
        RefundOutcome::Cancelled,
        RefundOutcome::Closed,
        RefundOutcome::NotClosed,
        RefundOutcome::ContactService,
        RefundOutcome::Refunding,
        RefundOutcome::Refunded,
    ];

    pub fn success(self) -> bool {
        matches!(self, RefundOutcome::Cancelled | RefundOutcome::Refunding | RefundOutcome::Refunded)
    }

    /// The shopper-facing text.
    pub fn message(self) -> &'static str {
        match self {
            RefundOutcome::Cancelled => "订单已取消",
            RefundOutcome::Closed => "订单已关闭",
            RefundOutcome::NotClosed => "支付宝暂时无法关闭订单，请稍后再试",
            RefundOutcome::ContactService => "请联系客服退款",
            RefundOutcome::Refunding => "退款中",
            RefundOutcome::Refunded => "已退款",
        }
    }

    /// A short name for links (`?notice=cancelled`).
    pub fn key(self) -> &'static str {
        match self {
            RefundOutcome::Cancelled => "cancelled",
            RefundOutcome::Closed => "closed",
            RefundOutcome::NotClosed => "not-closed",
            RefundOutcome::ContactService => "contact",
            RefundOutcome::Refunding => "refunding",
            RefundOutcome::Refunded => "refunded",
        }
    }

    pub fn from_key(key: &str) -> Option<RefundOutcome> {
        RefundOutcome::ALL.into_iter().find(|o| o.key() == key)
    }
}

/// The shopper asks to cancel or refund their order. An unpaid order is closed at its channel
/// first, then here, under the order's lease ([`reconcile::close`]); when the channel says it was
/// paid, the payment is recorded and the answer is the paid order's. A paid group order whose
/// team is still forming leaves it and is refunded ([`group_buy::leave_forming_team`]); any other
/// paid order is refunded by the admin only; a refund under way or done answers success and
/// starts nothing.
pub fn shopper_refund(
    reconciler: &Reconciler,
    pool: &DbPool,
    user: &AppUser,
    order_id: &str,
) -> AppResult<RefundReply> {
    let mut order = of_shopper(&mut *pool.get()?, user, order_id)?;
    if order.status == OrderStatus::PaySuccess && order.team_id.is_some() {
        if group_buy::leave_forming_team(&mut *pool.get()?, &order)? {
            reconciler.wake.wake();
            return Ok(RefundReply::of(order_id, RefundOutcome::Refunding));
        }
        // Formed, or left by another request meanwhile: answered as it is now.
        order = of_shopper(&mut *pool.get()?, user, order_id)?;
    }
    let was_open = order.status.is_open();
    let status = if was_open {
        if reconciler.under_lease(pool, order_id, "shopper", reconcile::close)?.is_none() {
            return Err(AppError::Conflict("订单正在处理中，请稍后再试".into()));
        }
        of_shopper(&mut *pool.get()?, user, order_id)?.status
    } else {
        order.status
    };
    let outcome = match status {
        OrderStatus::Close if was_open => RefundOutcome::Cancelled,
        OrderStatus::Close => RefundOutcome::Closed,
        OrderStatus::Create | OrderStatus::PayWait => RefundOutcome::NotClosed,
        OrderStatus::PaySuccess | OrderStatus::Market | OrderStatus::DealDone => {
            RefundOutcome::ContactService
        }
        OrderStatus::RefundWait => RefundOutcome::Refunding,
        OrderStatus::Refunded => RefundOutcome::Refunded,
    };
    Ok(RefundReply::of(order_id, outcome))
}
