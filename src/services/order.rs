//! The order state machine. Every transition is one conditional UPDATE inside a write
//! transaction that also records the timeline and enqueues any after-commit work; a caller that
//! loses the race updates nothing.

use chrono::Duration;

use crate::config::Settings;
use crate::db::{DbConn, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, PagePay};
use crate::models::order::{self, CLOSE, NewOrder, OPEN, Order};
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
        let at = now();
        let order = match Order::find_open(conn, user.user_id, product_id)? {
            Some(open) if open.expire_at - Duration::seconds(FORM_MARGIN_SECS) <= at => {
                close(conn, &open.order_id, "checkout", "payment form expired; a new order replaces it")?;
                continue;
            }
            Some(open) => open,
            None => match create(conn, alipay, user, product_id, pay_timeout, first_look)? {
                Some(created) => created,
                // Another request of the same shopper made it first: use theirs.
                None => continue,
            },
        };
        if order.status == order::CREATE {
            return attach_form(conn, alipay, order);
        }
        return Ok(order);
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

/// Reserves stock and inserts a `CREATE` order; `None` when the shopper already has an open
/// order for the product. The transaction rolls back whole, reservation included, on failure.
fn create(
    conn: &mut DbConn,
    alipay: &AlipayClient,
    user: &AppUser,
    product_id: &str,
    pay_timeout: Duration,
    first_look: Duration,
) -> AppResult<Option<Order>> {
    let created = write_transaction(conn, |c| {
        let product = Product::find(c, product_id)?
            .ok_or_else(|| AppError::NotFound(format!("There is no product {product_id}.")))?;
        if !product::reserve_one(c, product_id)? {
            return Err(AppError::Conflict(format!("{} is sold out.", product.name)).into());
        }
        let at = now();
        let order_id = format!("{}{:010}", at.format("%y%m%d"), Order::next_number(c)?);
        Order::insert(
            c,
            &NewOrder {
                order_id: &order_id,
                user_id: user.user_id,
                openid: &user.openid,
                product_id,
                product_name: &product.name,
                total_cents: product.price_cents,
                expire_at: at + pay_timeout,
                next_query_at: at + first_look,
            },
        )?;
        order::record_event(c, &order_id, None, order::CREATE, "shopper", "order placed, stock reserved")?;
        // The form is signed locally, so it is issued in the same transaction: one commit.
        let pay = PagePay {
            out_trade_no: &order_id,
            total_cents: product.price_cents,
            subject: &product.name,
            time_expire: at + pay_timeout,
        };
        issue_form(c, alipay, &pay)?;
        Ok::<_, CreateFailure>(order_id)
    });
    match created {
        Ok(order_id) => {
            log::info!("order {order_id} created for openid {} product {product_id}", user.openid);
            Ok(Order::find(conn, &order_id)?)
        }
        Err(CreateFailure::AlreadyOpen) => Ok(None),
        Err(CreateFailure::Failed(e)) => Err(e),
    }
}

/// Gives an order stuck in `CREATE` (its form was never made) its form.
fn attach_form(conn: &mut DbConn, alipay: &AlipayClient, order: Order) -> AppResult<Order> {
    let pay = PagePay {
        out_trade_no: &order.order_id,
        total_cents: order.total_cents,
        subject: &order.product_name,
        time_expire: order.expire_at,
    };
    write_transaction(conn, |c| issue_form(c, alipay, &pay))?;
    Order::find(conn, &order.order_id)?.ok_or_else(|| AppError::internal("order vanished"))
}

/// Signs the page-pay form and moves `CREATE -> PAY_WAIT`. Signing is local: no call to Alipay.
fn issue_form(conn: &mut DbConn, alipay: &AlipayClient, pay: &PagePay) -> AppResult<()> {
    let form = alipay.page_pay_form(pay, now());
    if Order::attach_form(conn, pay.out_trade_no, &form)? {
        order::record_event(
            conn,
            pay.out_trade_no,
            Some(order::CREATE),
            order::PAY_WAIT,
            "shopper",
            "payment form issued",
        )?;
    }
    Ok(())
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
