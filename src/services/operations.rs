//! What an operator watches, read from the database when `/metrics` is scraped: the orders by
//! status, the outbox's open entries, and how far the outbox and the compensation are behind.

use crate::db::DbConn;
use crate::error::AppResult;
use crate::models::now;
use crate::models::order::Order;
use crate::models::order_total;
use crate::models::outbox::OutboxEntry;

/// The database's side of the metrics, as of one scrape.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// (status, orders) for each status that has orders.
    pub orders_by_status: Vec<(String, i64)>,
    /// (kind, status, entries) of the `PENDING` and `DEAD` outbox entries.
    pub outbox_open: Vec<(String, String, i64)>,
    /// Seconds since the longest-waiting due outbox entry became due (0 when none is due).
    pub oldest_due_outbox_secs: i64,
    /// Seconds since the oldest `PAY_WAIT` order's next query was due (0 when none is overdue).
    pub compensation_lag_secs: i64,
}

/// The number of orders of each status, exact, from the kept totals ([`order_total::current`]):
/// the same cost at any number of orders.
pub fn order_totals(conn: &mut DbConn) -> AppResult<Vec<(String, i64)>> {
    Ok(order_total::current(conn)?.into_iter().map(|t| (t.status, t.orders)).collect())
}

pub fn snapshot(conn: &mut DbConn) -> AppResult<Snapshot> {
    let at = now();
    let behind = |since: Option<chrono::NaiveDateTime>| since.map_or(0, |t| (at - t).num_seconds().max(0));
    Ok(Snapshot {
        orders_by_status: order_totals(conn)?,
        outbox_open: OutboxEntry::count_open_by_kind(conn)?,
        oldest_due_outbox_secs: behind(OutboxEntry::oldest_due(conn, at)?),
        compensation_lag_secs: behind(Order::oldest_overdue_query(conn, at)?),
    })
}
