//! Reconciling one order with its channel (`Order::channel`'s gateway): ask (query) or close (at
//! the channel, then locally). Used by the background compensation and by the admin's "Sync" and
//! "Close"; both work under the order's lease, so they never act on an order at the same time. A
//! look takes a pooled connection for each database step and holds none while the channel
//! answers.

use chrono::Duration;

use crate::config::Settings;
use crate::db::{DbConn, DbPool};
use crate::error::{AppError, AppResult};
use crate::gateways::{CloseOutcome, GatewayError, GatewayOp, Gateways, TradeState};
use crate::jobs::Wake;
use crate::models::gateway_call;
use crate::models::now;
use crate::models::order::Order;
use crate::services::order as orders;
use crate::services::payment::{self, Payment, Verdict};

const LEASE_SECS: i64 = 60;
const MAX_BACKOFF_SECS: i64 = 300;

/// Seconds until the next look at an order after `attempt` looks: 10 s, 20 s, 40 s ... 5 min.
pub fn backoff_secs(attempt: i32) -> i64 {
    (10i64 << (attempt.clamp(1, 16) - 1)).min(MAX_BACKOFF_SECS)
}

/// What one look at an order decided.
#[derive(Debug)]
pub enum Look {
    /// Settled (paid, closed): nothing more to find out.
    Settled(String),
    /// Not settled yet: look again after the backoff.
    Later(String),
}

impl Look {
    pub fn describe(&self) -> &str {
        match self {
            Look::Settled(what) | Look::Later(what) => what,
        }
    }
}

/// Everything a look needs.
pub struct Reconciler<'a> {
    pub gateways: &'a Gateways,
    pub settings: &'a Settings,
    /// Holds the lease: this instance.
    pub owner: &'a str,
    /// Woken once a payment is recorded with work enqueued, after its commit.
    pub wake: &'a Wake,
}

pub type LookAt = fn(&Reconciler, &DbPool, &Order, &str) -> AppResult<Look>;

impl Reconciler<'_> {
    /// Leases the order, lets `look_at` decide (errors count as "later"), and schedules the next
    /// look. `None` when another instance holds the lease.
    pub fn under_lease(
        &self,
        pool: &DbPool,
        order_id: &str,
        cause: &str,
        look_at: LookAt,
    ) -> AppResult<Option<Look>> {
        let found = {
            let conn = &mut *pool.get()?;
            if !Order::lease(conn, order_id, self.owner, now() + Duration::seconds(LEASE_SECS))? {
                return Ok(None);
            }
            Order::find(conn, order_id)?
        };
        let attempt = found.as_ref().map_or(1, |o| o.query_attempts + 1);
        let look = match &found {
            Some(order) if order.status.is_open() => {
                look_at(self, pool, order, cause).unwrap_or_else(|e| Look::Later(e.detail()))
            }
            Some(order) => Look::Settled(format!("already {}", order.status)),
            None => Look::Settled("no such order".into()),
        };
        let next = now() + Duration::seconds(backoff_secs(attempt));
        Order::release(&mut *pool.get()?, order_id, self.owner, next, attempt)?;
        log::info!("reconcile ({cause}): order {order_id}: {}", look.describe());
        Ok(Some(look))
    }
}

/// Keeps what a call to the order's gateway answered, for the admin's view of the order.
fn record_call<T: std::fmt::Debug>(
    conn: &mut DbConn,
    order_id: &str,
    call: &str,
    cause: &str,
    answer: &Result<T, GatewayError>,
) -> AppResult<()> {
    let outcome = match answer {
        Ok(state) => format!("{state:?}"),
        Err(e) => format!("error: {e}"),
    };
    Ok(gateway_call::record(conn, order_id, call, cause, &outcome)?)
}

/// Asks the order's channel; a confirmed payment is recorded exactly like a notified one
/// ([`payment::record`]).
pub fn query(r: &Reconciler, pool: &DbPool, order: &Order, cause: &str) -> AppResult<Look> {
    let gateway = r.gateways.of(order.channel)?;
    let answer = gateway.query(&order.order_id);
    let conn = &mut *pool.get()?;
    record_call(conn, &order.order_id, gateway.call_name(GatewayOp::Query), cause, &answer)?;
    let platform = order.channel.platform();
    match answer? {
        TradeState::Paid { trade_no, amount_cents, paid_at } => {
            let payment = Payment {
                channel: order.channel,
                out_trade_no: &order.order_id,
                amount_cents,
                trade_no: &trade_no,
                paid_at: paid_at.unwrap_or_else(now),
                cause,
                notify_id: None,
            };
            let recorded =
                payment::record(conn, r.settings.database.payment_in_one_statement, &payment, |_| None)?;
            if recorded.enqueued {
                r.wake.wake();
            }
            Ok(match recorded.verdict {
                Verdict::Done => Look::Settled(recorded.outcome),
                Verdict::Held | Verdict::Refused => {
                    Look::Later(format!("{}; left for an operator", recorded.outcome))
                }
            })
        }
        TradeState::Closed => {
            orders::close(conn, &order.order_id, cause, &format!("{platform} closed the trade"))?;
            Ok(Look::Settled(format!("closed at {platform}")))
        }
        TradeState::Waiting => Ok(Look::Later(format!("{platform}: waiting for the buyer"))),
        TradeState::NotExist => Ok(Look::Later(format!("{platform}: the buyer has not opened the cashier"))),
    }
}

/// Closes at the order's channel first, so the buyer can no longer pay, then locally; if the
/// channel says the trade is no longer waiting, asks whether it was paid.
pub fn close(r: &Reconciler, pool: &DbPool, order: &Order, cause: &str) -> AppResult<Look> {
    let gateway = r.gateways.of(order.channel)?;
    let answer = gateway.close(&order.order_id);
    record_call(&mut *pool.get()?, &order.order_id, gateway.call_name(GatewayOp::Close), cause, &answer)?;
    match answer? {
        CloseOutcome::Closed | CloseOutcome::NotExist => {
            let conn = &mut *pool.get()?;
            let detail = format!("closed at {}, stock released", order.channel.platform());
            let closed = orders::close(conn, &order.order_id, cause, &detail)?;
            Ok(Look::Settled(if closed { "closed".into() } else { "changed meanwhile".into() }))
        }
        CloseOutcome::NotWaiting => query(r, pool, order, cause),
    }
}

/// An admin asked for this order to be looked at now; says what came of it.
pub fn by_admin(
    reconciler: &Reconciler,
    pool: &DbPool,
    order_id: &str,
    cause: &str,
    look_at: LookAt,
) -> AppResult<String> {
    match reconciler.under_lease(pool, order_id, cause, look_at)? {
        Some(look) => Ok(look.describe().to_owned()),
        None => Err(AppError::Conflict(
            "The background task is working on this order right now; try again in a minute.".into(),
        )),
    }
}
