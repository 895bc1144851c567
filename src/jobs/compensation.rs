//! Converging on the truth at Alipay, whatever failed on the way:
//! - a `PAY_WAIT` order whose notification never came is queried (`alipay.trade.query`) with
//!   backoff, and a confirmed payment goes through the very same path as a notification;
//! - an order left unpaid too long is closed at Alipay first, then locally (stock released),
//!   unless Alipay says it was paid meanwhile: then it is marked paid instead;
//! - a paid order whose delivery was never enqueued gets it.
//!
//! Each order is worked on under a lease, so instances never handle the same order at once.

use chrono::{Duration, NaiveDateTime};

use super::Worker;
use crate::db::DbConn;
use crate::error::AppError;
use crate::gateways::alipay::{CloseOutcome, TradeState};
use crate::models::now;
use crate::models::order::{CREATE, OPEN, Order, PAY_WAIT};
use crate::models::outbox::{NewOutboxEntry, OutboxEntry};
use crate::money::parse_yuan;
use crate::services::{order as orders, payment};

const BATCH: i64 = 50;
const LEASE_SECS: i64 = 60;
/// An order stuck in `CREATE` (its form was never made) is closed after this long.
const STALE_CREATE_MINUTES: i64 = 10;
const MAX_BACKOFF_SECS: i64 = 300;

/// Seconds until the next look at an order after `attempt` looks: 10 s, 20 s, 40 s ... 5 min.
pub fn query_backoff_secs(attempt: i32) -> i64 {
    (10i64 << (attempt.clamp(1, 16) - 1)).min(MAX_BACKOFF_SECS)
}

/// What one look at an order decided.
enum Look {
    /// Settled (paid, closed): no need to look again.
    Settled(String),
    /// Look again after the backoff.
    Later(String),
}

/// Queries orders old enough to have been notified but not yet old enough to close (closing
/// queries when it has to).
pub fn query_dropped(worker: &Worker) -> Result<usize, AppError> {
    let compensation = &worker.settings.compensation;
    let query_after = Duration::seconds(compensation.query_after_secs as i64);
    let close_after = Duration::minutes(compensation.close_after_minutes as i64);
    let mut conn = worker.conn()?;
    let at = now();
    let due = Order::due(&mut conn, &[PAY_WAIT], at - close_after, at - query_after, BATCH)?;
    for_each_leased(worker, &mut conn, &due, |worker, conn, order| query(worker, conn, order, "query"))
}

pub fn close_expired(worker: &Worker) -> Result<usize, AppError> {
    let close_after = Duration::minutes(worker.settings.compensation.close_after_minutes as i64);
    let mut conn = worker.conn()?;
    let (at, ever) = (now(), chrono::DateTime::UNIX_EPOCH.naive_utc());
    let mut due = Order::due(&mut conn, &[PAY_WAIT], ever, at - close_after, BATCH)?;
    due.extend(Order::due(
        &mut conn,
        &[CREATE],
        ever,
        at - close_after.min(Duration::minutes(STALE_CREATE_MINUTES)),
        BATCH,
    )?);
    for_each_leased(worker, &mut conn, &due, close)
}

/// Paid orders with no delivery enqueued (a crash between two steps) get one.
pub fn deliver_stranded(worker: &Worker) -> Result<usize, AppError> {
    let mut conn = worker.conn()?;
    let stranded = Order::paid_without_delivery(&mut conn, BATCH)?;
    for order_id in &stranded {
        let id = order_id.as_str();
        if OutboxEntry::enqueue(
            &mut conn,
            &NewOutboxEntry { kind: "delivery", dedupe_key: id, order_id: Some(id), payload: "{}" },
        )? {
            log::warn!("order {id} was paid without a delivery enqueued; enqueued it");
        }
    }
    Ok(stranded.len())
}

type LookAt = fn(&Worker, &mut DbConn, &Order) -> Result<Look, AppError>;

/// Leases each order in turn, lets `look_at` decide, and says when to look again.
fn for_each_leased(
    worker: &Worker,
    conn: &mut DbConn,
    order_ids: &[String],
    look_at: LookAt,
) -> Result<usize, AppError> {
    let mut handled = 0;
    for order_id in order_ids {
        if !Order::lease(conn, order_id, &worker.owner, now() + Duration::seconds(LEASE_SECS))? {
            continue;
        }
        let Some(order) = Order::find(conn, order_id)? else { continue };
        let attempt = order.query_attempts + 1;
        let next_at: NaiveDateTime = now() + Duration::seconds(query_backoff_secs(attempt));
        let outcome = if OPEN.contains(&order.status.as_str()) {
            look_at(worker, conn, &order).unwrap_or_else(|e| Look::Later(e.to_string()))
        } else {
            Look::Settled(format!("already {}", order.status))
        };
        match &outcome {
            Look::Settled(what) => log::info!("compensation: order {order_id}: {what}"),
            Look::Later(why) => log::info!(
                "compensation: order {order_id}: {why}; again in {} s",
                query_backoff_secs(attempt)
            ),
        }
        Order::release(conn, order_id, &worker.owner, next_at, attempt)?;
        handled += 1;
    }
    Ok(handled)
}

/// Asks Alipay about the order; a confirmed payment of the right amount is settled like a notify.
fn query(worker: &Worker, conn: &mut DbConn, order: &Order, cause: &str) -> Result<Look, AppError> {
    match worker.alipay.trade_query(&order.order_id, now())? {
        TradeState::Paid { trade_no, total_amount, paid_at } => {
            if parse_yuan(&total_amount) != Some(order.total_cents) {
                return Ok(Look::Later(format!(
                    "Alipay reports a payment of {total_amount}, not the order's amount; left for an operator"
                )));
            }
            let evidence =
                payment::PaymentEvidence { cause, trade_no: &trade_no, paid_at: paid_at.unwrap_or_else(now) };
            Ok(Look::Settled(payment::settle_paid(conn, &worker.settings, order, &evidence)?))
        }
        TradeState::Closed => {
            orders::close(conn, &order.order_id, cause, "Alipay closed the trade")?;
            Ok(Look::Settled("closed at Alipay".into()))
        }
        TradeState::Waiting => Ok(Look::Later("Alipay: waiting for the buyer".into())),
        TradeState::NotExist => Ok(Look::Later("Alipay: the buyer has not opened the cashier".into())),
    }
}

/// Closes at Alipay first, so the buyer can no longer pay, then locally.
fn close(worker: &Worker, conn: &mut DbConn, order: &Order) -> Result<Look, AppError> {
    match worker.alipay.trade_close(&order.order_id, now())? {
        CloseOutcome::Closed | CloseOutcome::NotExist => {
            let closed = orders::close(
                conn,
                &order.order_id,
                "timeout",
                "unpaid in time; closed at Alipay, stock released",
            )?;
            Ok(Look::Settled(if closed {
                "closed after the timeout".into()
            } else {
                "changed meanwhile".into()
            }))
        }
        // No longer waiting at Alipay: most likely paid just now.
        CloseOutcome::NotWaiting => query(worker, conn, order, "close (paid at Alipay)"),
    }
}
