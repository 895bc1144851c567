//! Converging on the truth at the payment channels, whatever failed on the way:
//! - a `PAY_WAIT` order whose notification never came is queried at its channel with backoff,
//!   and a confirmed payment goes through the very same path as a notification;
//! - an order left unpaid too long is closed at its channel first, then locally (stock
//!   released), unless the channel says it was paid meanwhile: then it is marked paid instead;
//! - a paid order whose delivery was never enqueued gets it (a group order once its team formed);
//! - a group-buy team past its expiry forms or fails, and its paid members are refunded.
//!
//! Each order is worked on under a lease, so instances never handle the same order at once.

use chrono::Duration;

use super::Worker;
use crate::error::AppError;
use crate::models::now;
use crate::models::order::{Order, OrderStatus};
use crate::models::outbox::{Delivery, OutboxEntry};
use crate::services::group_buy;
use crate::services::reconcile::{self, LookAt, Reconciler};

const BATCH: i64 = 50;

/// Queries orders old enough to have been notified but not yet old enough to close (closing
/// queries when it has to).
pub fn query_dropped(worker: &Worker) -> Result<usize, AppError> {
    let compensation = &worker.settings.compensation;
    let query_after = Duration::seconds(compensation.query_after_secs as i64);
    let close_after = Duration::minutes(compensation.close_after_minutes as i64);
    let at = now();
    let due =
        Order::due(&mut *worker.conn()?, &[OrderStatus::PayWait], at - close_after, at - query_after, BATCH)?;
    look_at_each(worker, &due, "query", reconcile::query)
}

pub fn close_expired(worker: &Worker) -> Result<usize, AppError> {
    let close_after = Duration::minutes(worker.settings.compensation.close_after_minutes as i64);
    let (at, ever) = (now(), chrono::DateTime::UNIX_EPOCH.naive_utc());
    let due = Order::due(&mut *worker.conn()?, &[OrderStatus::PayWait], ever, at - close_after, BATCH)?;
    look_at_each(worker, &due, "timeout", reconcile::close)
}

/// Paid orders with no delivery enqueued (a crash between two steps) get one.
pub fn deliver_stranded(worker: &Worker) -> Result<usize, AppError> {
    let mut conn = worker.conn()?;
    let stranded = Order::paid_without_delivery(&mut conn, BATCH)?;
    for order_id in &stranded {
        if OutboxEntry::enqueue(&mut conn, &Delivery { order_id: order_id.clone() })? {
            log::warn!("order {order_id} was paid without a delivery enqueued; enqueued it");
        }
    }
    Ok(stranded.len())
}

/// Group-buy teams past their expiry: their unpaid members closed, then formed or failed and
/// refunded (`services::group_buy::expire`).
pub fn expire_teams(worker: &Worker) -> Result<usize, AppError> {
    group_buy::expire_due(&reconciler(worker), &worker.pool, BATCH)
}

fn reconciler(worker: &Worker) -> Reconciler<'_> {
    Reconciler {
        gateways: &worker.gateways,
        settings: &worker.settings,
        owner: &worker.owner,
        wake: &worker.wake,
    }
}

fn look_at_each(
    worker: &Worker,
    order_ids: &[String],
    cause: &str,
    look_at: LookAt,
) -> Result<usize, AppError> {
    let reconciler = reconciler(worker);
    let mut handled = 0;
    for order_id in order_ids {
        if reconciler.under_lease(&worker.pool, order_id, cause, look_at)?.is_some() {
            handled += 1;
        }
    }
    Ok(handled)
}
