//! The order state machine. Every transition is one conditional UPDATE inside a write
//! transaction that also records the timeline and enqueues any after-commit work; a caller that
//! loses the race updates nothing.

use chrono::{Duration, NaiveDateTime};

use crate::config::Settings;
use crate::db::{DbConn, Inserts, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, PagePay};
use crate::models::order::{self, CLOSE, NewOrder, OPEN, Order, PAY_WAIT};
use crate::models::product::{self, Product};
use crate::models::user::AppUser;
use crate::models::{is_unique_violation, now};

/// A form is not handed out when it has less than this left before `time_expire`.
const FORM_MARGIN_SECS: i64 = 60;

/// The first step of a checkout: the shopper's open order for the product while its payment
/// form is valid, or what a new order needs (an expired one is closed first: a new order
/// replaces it). Then [`OrderDraft::sign`] and [`place`].
pub enum Checkout {
    Open(Order),
    New(OrderDraft),
}

/// A new order before it exists: its number, and the product as priced now. It is signed outside
/// any transaction ([`OrderDraft::sign`]): the signature is the costliest step of an order, and
/// inside a transaction it would hold the product's row (PostgreSQL) or the one writer (SQLite),
/// so that orders arriving together were signed one after another.
pub struct OrderDraft {
    order_id: String,
    user_id: i64,
    openid: String,
    product_id: String,
    product_name: String,
    price_cents: i64,
    at: NaiveDateTime,
    expire_at: NaiveDateTime,
    next_query_at: NaiveDateTime,
}

/// A drafted order with its signed page-pay form, ready for [`place`].
pub struct SignedOrder {
    draft: OrderDraft,
    pay_form: String,
}

pub fn begin_checkout(
    conn: &mut DbConn,
    settings: &Settings,
    user: &AppUser,
    product_id: &str,
) -> AppResult<Checkout> {
    if let Some(open) = Order::find_open(conn, user.user_id, product_id)? {
        if open.expire_at - Duration::seconds(FORM_MARGIN_SECS) > now() {
            return Ok(Checkout::Open(open));
        }
        close(conn, &open.order_id, "checkout", "payment form expired; a new order replaces it")?;
    }
    let product = Product::find(conn, product_id)?
        .ok_or_else(|| AppError::NotFound(format!("There is no product {product_id}.")))?;
    if !product.on_sale {
        return Err(AppError::Conflict(format!("{} is not on sale.", product.name)));
    }
    if product.stock <= 0 {
        return Err(AppError::Conflict(format!("{} is sold out.", product.name)));
    }
    let pay_timeout = Duration::minutes(i64::from(settings.alipay.pay_timeout_minutes));
    // The background thread first looks at the order when it may need a query or a close.
    let compensation = &settings.compensation;
    let first_look =
        Duration::seconds(compensation.query_after_secs.min(compensation.close_after_minutes * 60) as i64);
    let at = now();
    Ok(Checkout::New(OrderDraft {
        order_id: format!("{}{:010}", at.format("%y%m%d"), Order::next_number(conn)?),
        user_id: user.user_id,
        openid: user.openid.clone(),
        product_id: product.product_id,
        product_name: product.name,
        price_cents: product.price_cents,
        at,
        expire_at: at + pay_timeout,
        next_query_at: at + first_look,
    }))
}

impl OrderDraft {
    /// Signs the order's page-pay form (RSA2, local: no call out).
    pub fn sign(self, alipay: &AlipayClient) -> SignedOrder {
        let pay = PagePay {
            out_trade_no: &self.order_id,
            total_cents: self.price_cents,
            subject: &self.product_name,
            time_expire: self.expire_at,
        };
        let pay_form = alipay.page_pay_form(&pay, self.at);
        SignedOrder { draft: self, pay_form }
    }
}

/// Places a signed order, born `PAY_WAIT` with its form: one unit reserved at the price that was
/// signed, the order and its timeline row, all or nothing (one statement on PostgreSQL). `None`
/// when it was not placed, and nothing changed: the product sold out, went off sale or changed
/// its price, or another request of the shopper made an order for it first. The caller then
/// begins again, and [`begin_checkout`] says which.
pub fn place(conn: &mut DbConn, signed: &SignedOrder) -> AppResult<Option<Order>> {
    let draft = &signed.draft;
    let mut rows = Inserts::default();
    rows.add(Order::insert(&NewOrder {
        order_id: &draft.order_id,
        user_id: draft.user_id,
        openid: &draft.openid,
        product_id: &draft.product_id,
        product_name: &draft.product_name,
        total_cents: draft.price_cents,
        pay_form: &signed.pay_form,
        order_time: draft.at,
        expire_at: draft.expire_at,
        next_query_at: draft.next_query_at,
    }));
    rows.add(order::event(
        &draft.order_id,
        None,
        PAY_WAIT,
        "shopper",
        "order placed, stock reserved, payment form issued",
    ));
    match product::reserve_at_price(conn, &draft.product_id, draft.price_cents, &rows) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        // The order id comes from a sequence, so the only unique index the order can hit is "one
        // open order per shopper and product".
        Err(e) if is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    log::info!("order {} created for openid {} product {}", draft.order_id, draft.openid, draft.product_id);
    Order::find(conn, &draft.order_id)?
        .map(Some)
        .ok_or_else(|| AppError::internal("the placed order vanished"))
}

/// `CREATE|PAY_WAIT -> CLOSE`, releasing the reserved stock. Returns whether this call closed it.
pub fn close(conn: &mut DbConn, order_id: &str, cause: &str, detail: &str) -> AppResult<bool> {
    write_transaction(conn, |c| {
        let Some(order) = Order::find(c, order_id)? else { return Ok(false) };
        if !Order::transition(c, order_id, &OPEN, CLOSE)? {
            return Ok(false);
        }
        product::release_one(c, &order.product_id)?;
        order::record_event(c, order_id, Some(&order.status), CLOSE, cause, detail)?;
        log::info!("order {order_id} closed by {cause}: {detail}");
        Ok(true)
    })
}

/// A shopper's own order; anybody else's is "not found".
pub fn of_shopper(conn: &mut DbConn, user: &AppUser, order_id: &str) -> AppResult<Order> {
    match Order::find(conn, order_id)? {
        Some(order) if order.user_id == user.user_id => Ok(order),
        _ => Err(AppError::NotFound(format!("There is no order {order_id}."))),
    }
}

pub fn page_of_shopper(conn: &mut DbConn, user: &AppUser, page: i64, per_page: i64) -> AppResult<Vec<Order>> {
    Ok(Order::page_of_user(conn, user.user_id, (page.max(1) - 1) * per_page, per_page)?)
}
