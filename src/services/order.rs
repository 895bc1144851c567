//! The order state machine. Every transition is one conditional UPDATE inside a write
//! transaction that also records the timeline and enqueues any after-commit work; a caller that
//! loses the race updates nothing.

use chrono::Duration;

use crate::config::Settings;
use crate::db::{DbConn, isolated_write_transaction, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, PagePay};
use crate::models::order::{self, CLOSE, NewOrder, OPEN, Order, PAY_WAIT};
use crate::models::product::{self, Product};
use crate::models::user::AppUser;
use crate::models::{is_unique_violation, now};

/// A form is not handed out when it has less than this left before `time_expire`.
const FORM_MARGIN_SECS: i64 = 60;

/// The shopper's open order for the product with a valid payment form: the existing one while
/// its form is valid, otherwise a new one (closing an expired one first). Stock is reserved when
/// an order is made.
pub fn checkout(
    conn: &mut DbConn,
    alipay: &AlipayClient,
    settings: &Settings,
    user: &AppUser,
    product_id: &str,
) -> AppResult<Order> {
    let pay_timeout = Duration::minutes(i64::from(settings.alipay.pay_timeout_minutes));
    // The background thread first looks at the order when it may need a query or a close.
    let compensation = &settings.compensation;
    let first_look =
        Duration::seconds(compensation.query_after_secs.min(compensation.close_after_minutes * 60) as i64);
    for _ in 0..3 {
        match Order::find_open(conn, user.user_id, product_id)? {
            Some(open) if open.expire_at - Duration::seconds(FORM_MARGIN_SECS) <= now() => {
                close(conn, &open.order_id, "checkout", "payment form expired; a new order replaces it")?;
            }
            Some(open) => return Ok(open),
            None => {
                if let Some(created) = create(conn, alipay, user, product_id, pay_timeout, first_look)? {
                    return Ok(created);
                }
                // Another request of the same shopper made it first: use theirs.
            }
        }
    }
    Err(AppError::Conflict("The order is being changed by another request; please try again.".into()))
}

/// Why `create` made no order.
enum CreateFailure {
    /// The shopper already has an open order for the product (the unique index decided).
    AlreadyOpen,
    Failed(AppError),
}

impl From<diesel::result::Error> for CreateFailure {
    fn from(e: diesel::result::Error) -> Self {
        // The order id comes from a sequence, so the only unique index an insert can hit is
        // "one open order per shopper and product".
        if is_unique_violation(&e) { CreateFailure::AlreadyOpen } else { CreateFailure::Failed(e.into()) }
    }
}

impl From<AppError> for CreateFailure {
    fn from(e: AppError) -> Self {
        CreateFailure::Failed(e)
    }
}

/// Reserves stock and inserts the order, born `PAY_WAIT` with its signed form: signing is local,
/// so the order never has to wait in `CREATE` for a form, and it all commits once. `None` when
/// the shopper already has an open order for the product. The transaction rolls back whole,
/// reservation included, on failure.
fn create(
    conn: &mut DbConn,
    alipay: &AlipayClient,
    user: &AppUser,
    product_id: &str,
    pay_timeout: Duration,
    first_look: Duration,
) -> AppResult<Option<Order>> {
    // The unique index may refuse the order after stock was reserved: that failure is handled, so
    // it must undo the reservation alone.
    let created = isolated_write_transaction(conn, |c| {
        let Some((product_name, price_cents)) = product::reserve_one(c, product_id)? else {
            return Err(unavailable(c, product_id).into());
        };
        let at = now();
        let order_id = format!("{}{:010}", at.format("%y%m%d"), Order::next_number(c)?);
        let pay = PagePay {
            out_trade_no: &order_id,
            total_cents: price_cents,
            subject: &product_name,
            time_expire: at + pay_timeout,
        };
        let pay_form = alipay.page_pay_form(&pay, at);
        let order = Order::insert(
            c,
            &NewOrder {
                order_id: &order_id,
                user_id: user.user_id,
                openid: &user.openid,
                product_id,
                product_name: &product_name,
                total_cents: price_cents,
                pay_form: &pay_form,
                order_time: at,
                expire_at: at + pay_timeout,
                next_query_at: at + first_look,
            },
        )?;
        order::record_event(
            c,
            &order_id,
            None,
            PAY_WAIT,
            "shopper",
            "order placed, stock reserved, payment form issued",
        )?;
        Ok::<_, CreateFailure>(order)
    });
    match created {
        Ok(order) => {
            log::info!("order {} created for openid {} product {product_id}", order.order_id, user.openid);
            Ok(Some(order))
        }
        Err(CreateFailure::AlreadyOpen) => Ok(None),
        Err(CreateFailure::Failed(e)) => Err(e),
    }
}

/// Why a product could not be reserved, in the shopper's words.
fn unavailable(conn: &mut DbConn, product_id: &str) -> AppError {
    match Product::find(conn, product_id) {
        Ok(Some(product)) if !product.on_sale => {
            AppError::Conflict(format!("{} is not on sale.", product.name))
        }
        Ok(Some(product)) => AppError::Conflict(format!("{} is sold out.", product.name)),
        Ok(None) => AppError::NotFound(format!("There is no product {product_id}.")),
        Err(e) => e.into(),
    }
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
