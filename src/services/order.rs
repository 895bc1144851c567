//! The order state machine. Every transition is one conditional UPDATE inside a write
//! transaction that also records the timeline and enqueues any after-commit work; a caller that
//! loses the race updates nothing.

use std::future::Future;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{Duration, NaiveDateTime};

use crate::config::Settings;
use crate::db::{DbConn, Inserts, write_transaction};
use crate::engine::Engine;
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, PagePay};
use crate::models::order::{CheckoutStart, NewOrder, Order, OrderAtCheckout, OrderStatus};
use crate::models::order_event;
use crate::models::product;
use crate::models::user::AppUser;
use crate::models::{is_unique_violation, now};
use crate::services::session;

/// A form is not handed out when it has less than this left before `time_expire`.
const FORM_MARGIN_SECS: i64 = 60;

/// The first step of a checkout, which only reads: the shopper's open order for the product
/// while its payment form is valid, or what a new order needs. Then [`OrderDraft::sign`] with a
/// number from [`OrderNumbers`], and [`place`].
pub enum Checkout {
    Open(OrderToPay),
    New(OrderDraft),
}

/// An order waiting for its payment, and the signed form that pays it at Alipay's cashier.
pub struct OrderToPay {
    pub order: OrderAtCheckout,
    pub pay_form: String,
}

/// A new order before it exists: the product as priced now, and the shopper's open order whose
/// form expired, which [`place`] closes first (a new order replaces it). It is signed outside any
/// transaction ([`OrderDraft::sign`]): the signature is the costliest step of an order, and
/// inside a transaction it would hold the product's row (PostgreSQL) or the one writer (SQLite),
/// so that orders arriving together were signed one after another.
pub struct OrderDraft {
    user_id: i64,
    openid: String,
    product_id: String,
    product_name: String,
    price_cents: i64,
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
}

/// A checkout: the shopper behind the session `token` and their order for the product, found or
/// made. The session and the open order are looked up in one write job (on SQLite in the writer,
/// though it only reads: the writer's page cache is the one every commit leaves warm); a new order
/// takes a number from this instance's block, has its form signed on a signing thread, outside any
/// transaction, and is placed in a second job. [`AppError::NotLoggedIn`] without a live session.
pub async fn checkout(
    engine: &Engine,
    settings: &Arc<Settings>,
    alipay: &Arc<AlipayClient>,
    numbers: &OrderNumbers,
    token: String,
    product_id: String,
) -> AppResult<(AppUser, OrderToPay)> {
    // Each round ends with an order, or another request of the shopper made one first (or the
    // stock or price moved): the next round finds it, or says why there is none.
    for _ in 0..3 {
        let (lookup, wanted, settings) = (token.clone(), product_id.clone(), settings.clone());
        let (user, next) =
            engine.write(move |conn| begin_checkout(conn, &settings, &lookup, &wanted)).await?;
        let draft = match next {
            Checkout::Open(to_pay) => return Ok((user, to_pay)),
            Checkout::New(draft) => draft,
        };
        let number = numbers.next(|| engine.write(take_numbers)).await?;
        let alipay = alipay.clone();
        let sign = move || draft.sign(number, &alipay);
        if let Some(to_pay) = engine.sign_then_write(sign, |conn, signed| place(conn, &signed)).await? {
            return Ok((user, to_pay));
        }
    }
    Err(AppError::Conflict("The order is being changed by another request; please try again.".into()))
}

/// The shopper behind the session `token` and where their checkout of the product starts, all
/// read by one statement; [`AppError::NotLoggedIn`] without a live session.
pub fn begin_checkout(
    conn: &mut DbConn,
    settings: &Settings,
    token: &str,
    product_id: &str,
) -> AppResult<(AppUser, Checkout)> {
    let CheckoutStart { user, open, product } =
        Order::checkout_start(conn, &session::token_hash(token), product_id)?.ok_or(AppError::NotLoggedIn)?;
    let mut replaces = None;
    if let Some((open, form)) = open {
        if open.expire_at - Duration::seconds(FORM_MARGIN_SECS) > now()
            && let Some(pay_form) = form
        {
            return Ok((user, Checkout::Open(OrderToPay { order: open, pay_form })));
        }
        replaces = Some(open.order_id);
    }
    let product = product.ok_or_else(|| AppError::NotFound(format!("There is no product {product_id}.")))?;
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
    let draft = OrderDraft {
        user_id: user.user_id,
        openid: user.openid.clone(),
        product_id: product.product_id,
        product_name: product.name,
        price_cents: product.price_cents,
        at,
        expire_at: at + pay_timeout,
        next_query_at: at + first_look,
        replaces,
    };
    Ok((user, Checkout::New(draft)))
}

impl OrderDraft {
    /// Numbers the order and signs its page-pay form (RSA2, local: no call out).
    pub fn sign(self, number: i64, alipay: &AlipayClient) -> SignedOrder {
        let order_id = format!("{}{number:010}", self.at.format("%y%m%d"));
        let pay = PagePay {
            out_trade_no: &order_id,
            total_cents: self.price_cents,
            subject: &self.product_name,
            time_expire: self.expire_at,
        };
        let pay_form = alipay.page_pay_form(&pay, self.at);
        SignedOrder { order_id, draft: self, pay_form }
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

/// Places a signed order, born `PAY_WAIT` with its form: one unit reserved at the price that was
/// signed, the order and its timeline row, all or nothing (one statement on PostgreSQL). `None`
/// when it was not placed, and nothing changed: the product sold out, went off sale or changed
/// its price, or another request of the shopper made an order for it first. The caller then
/// begins again, and [`begin_checkout`] says which.
pub fn place(conn: &mut DbConn, signed: &SignedOrder) -> AppResult<Option<OrderToPay>> {
    let (order_id, draft) = (signed.order_id.as_str(), &signed.draft);
    if let Some(expired) = &draft.replaces {
        // Closed even if the new order is then refused: its form could not be used any more.
        close(conn, expired, "checkout", "payment form expired; a new order replaces it")?;
    }
    let mut rows = Inserts::default();
    let [order_row, form_row] = Order::insert(&NewOrder {
        order_id,
        user_id: draft.user_id,
        openid: &draft.openid,
        product_id: &draft.product_id,
        product_name: &draft.product_name,
        total_cents: draft.price_cents,
        pay_form: &signed.pay_form,
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
    match product::reserve_at_price(conn, &draft.product_id, draft.price_cents, &rows) {
        Ok(true) => {}
        Ok(false) => return Ok(None),
        // The order id comes from a sequence, so the only unique index the order can hit is "one
        // open order per shopper and product".
        Err(e) if is_unique_violation(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    log::info!("order {order_id} created for openid {} product {}", draft.openid, draft.product_id);
    // All the checkout shows was just written: nothing to read back.
    let order = OrderAtCheckout {
        order_id: order_id.to_owned(),
        product_name: draft.product_name.clone(),
        total_cents: draft.price_cents,
        expire_at: draft.expire_at,
    };
    Ok(Some(OrderToPay { order, pay_form: signed.pay_form.clone() }))
}

/// `CREATE|PAY_WAIT -> CLOSE`, releasing the reserved stock. Returns whether this call closed it.
pub fn close(conn: &mut DbConn, order_id: &str, cause: &str, detail: &str) -> AppResult<bool> {
    write_transaction(conn, |c| {
        let Some(order) = Order::find(c, order_id)? else { return Ok(false) };
        if !Order::transition(c, order_id, &OrderStatus::OPEN, OrderStatus::Close)? {
            return Ok(false);
        }
        product::release_one(c, &order.product_id)?;
        order_event::record(c, order_id, Some(order.status), OrderStatus::Close, cause, detail)?;
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
