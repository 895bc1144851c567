//! Orders and their amount per status (`order_status_total`), kept without a statement on the
//! paths that change orders: every status change already writes its timeline row
//! (`order_event`: from, to) with the change, a new order's from being NULL, and
//! `pay_order.total_cents` never changes. The table holds the net of every event up to the
//! checkpoint (`order_total_checkpoint.folded_through`); [`current`] adds the events after it in
//! the same statement, and [`fold`] (the background thread, every tick) moves the checkpoint.
//!
//! When may the checkpoint pass an event id? Once no event with a lower or equal id can still
//! commit. On SQLite writers take turns and an id is taken inside its writer's transaction, so
//! every id up to the largest committed one is final: [`fold`] folds to it at once. On
//! PostgreSQL ids come from a sequence outside the transaction, so a transaction holding a lower
//! id may commit after one holding a higher id. There the fold sets a barrier and passes it on a
//! later tick:
//!
//! 1. it reads `M`, the largest committed event id, and then the transactions holding
//!    `RowExclusiveLock` on `order_event` (`pg_locks`; the lock is taken when an INSERT is
//!    planned, before its id is drawn, and held to the end of the transaction). Any transaction
//!    with an uncommitted id at most `M` drew it before `M`'s event was written, so it held the
//!    lock before `M` was read, and still holds it when the locks are read, or has ended;
//! 2. a later fold checks that none of those transactions is still running (their virtual
//!    transaction ids are gone from `pg_locks`), and only then folds the events up to `M`.
//!
//! This is exact, adds nothing to any writer, and folds a tick later than SQLite does.

use diesel::prelude::*;
use diesel::query_builder::SqlQuery;
use diesel::query_dsl::LoadQuery;
use diesel::sql_types::{BigInt, Text};

use super::now;
use crate::db::DbConn;
use crate::db::schema::{order_event, order_total_checkpoint};

/// Orders of one status and what they cost together.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct StatusTotal {
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = BigInt)]
    pub orders: i64,
    #[diesel(sql_type = BigInt)]
    pub cents: i64,
}

#[derive(Debug, Queryable, Selectable)]
#[diesel(table_name = order_total_checkpoint)]
struct Checkpoint {
    folded_through: i64,
    pending_through: Option<i64>,
    pending_vxids: String,
}

/// The net effect on the totals of the events in `$range` (a condition on `e.id`): +1 order and
/// its amount for the status entered, -1 for the one left.
fn net_of_events(range: &str) -> String {
    format!(
        "SELECT e.to_status AS status, 1 AS orders, o.total_cents AS cents \
           FROM order_event e JOIN pay_order o ON o.order_id = e.order_id WHERE {range} \
         UNION ALL \
         SELECT e.from_status, -1, -o.total_cents \
           FROM order_event e JOIN pay_order o ON o.order_id = e.order_id \
           WHERE {range} AND e.from_status IS NOT NULL"
    )
}

fn grouped(rows: &str) -> String {
    format!(
        "SELECT status, CAST(SUM(orders) AS BIGINT) AS orders, CAST(SUM(cents) AS BIGINT) AS cents \
         FROM ({rows}) AS t GROUP BY status ORDER BY status"
    )
}

/// Every status's orders and amount as of now, exactly: the folded totals plus the events after
/// the checkpoint, read in one snapshot, through `order_event`'s primary key. Costs the events of
/// the last tick or two, however many orders there are. The checkpoint is read first and written
/// into the statement as a number: for a subquery's value PostgreSQL's planner guesses a third of
/// the events and joins every order (a constant tenth of a second at two million orders), for a
/// number it sees how few follow.
pub fn current(conn: &mut DbConn) -> QueryResult<Vec<StatusTotal>> {
    match conn {
        DbConn::Pg(pg) => pg.build_transaction().repeatable_read().read_only().run(current_in),
        DbConn::Sqlite(sqlite) => sqlite.transaction(current_in),
    }
}

fn current_in<C>(conn: &mut C) -> QueryResult<Vec<StatusTotal>>
where
    C: Connection,
    SqlQuery: for<'a> LoadQuery<'a, C, StatusTotal> + for<'a> LoadQuery<'a, C, Count>,
{
    let folded: Count =
        diesel::sql_query("SELECT folded_through AS n FROM order_total_checkpoint").get_result(conn)?;
    // The bound is an id read from the database, not input.
    let unfolded = net_of_events(&format!("e.id > {}", folded.n));
    let sql = grouped(&format!("SELECT status, orders, cents FROM order_status_total UNION ALL {unfolded}"));
    diesel::sql_query(sql).load(conn)
}

/// Folds what it may (see the module) into `order_status_total` and moves the checkpoint, in one
/// transaction; returns how many events it folded. Instances fold one at a time (the
/// checkpoint's row is locked first).
pub fn fold(conn: &mut DbConn) -> QueryResult<usize> {
    crate::db::write_transaction(conn, |c| {
        diesel::update(order_total_checkpoint::table)
            .set(order_total_checkpoint::updated_at.eq(now()))
            .execute(c)?;
        let checkpoint: Checkpoint =
            order_total_checkpoint::table.select(Checkpoint::as_select()).get_result(c)?;
        let mut folded_through = checkpoint.folded_through;
        let mut pending = checkpoint.pending_through.map(|p| (p, checkpoint.pending_vxids));
        let through = match c {
            DbConn::Sqlite(_) => last_event(c)?,
            DbConn::Pg(pg) => match &pending {
                Some((through, vxids)) if !any_running(pg, vxids)? => {
                    let through = *through;
                    pending = None;
                    through
                }
                _ => folded_through,
            },
        };
        let mut folded = 0;
        if through > folded_through {
            folded = apply(c, folded_through, through)?;
            folded_through = through;
        }
        if pending.is_none() && matches!(c, DbConn::Pg(_)) {
            // The barrier: the last event first, then who may still hold a lower id.
            let last = last_event(c)?;
            if last > folded_through {
                let DbConn::Pg(pg) = c else { unreachable!("matched above") };
                pending = Some((last, writers_of_events(pg)?));
            }
        }
        let (pending_through, pending_vxids) = match pending {
            Some((through, vxids)) => (Some(through), vxids),
            None => (None, String::new()),
        };
        diesel::update(order_total_checkpoint::table)
            .set((
                order_total_checkpoint::folded_through.eq(folded_through),
                order_total_checkpoint::pending_through.eq(pending_through),
                order_total_checkpoint::pending_vxids.eq(pending_vxids),
            ))
            .execute(c)?;
        Ok(folded)
    })
}

/// The largest committed event id (0 without events).
fn last_event(conn: &mut DbConn) -> QueryResult<i64> {
    Ok(order_event::table
        .select(diesel::dsl::max(order_event::id))
        .get_result::<Option<i64>>(conn)?
        .unwrap_or(0))
}

/// Adds the events `after < id <= through` to the totals; returns how many there were.
fn apply(conn: &mut DbConn, after: i64, through: i64) -> QueryResult<usize> {
    use crate::db::schema::order_status_total as total;
    // Both bounds are ids read from the database, not input.
    let range = format!("e.id > {after} AND e.id <= {through}");
    let net: Vec<StatusTotal> = diesel::sql_query(grouped(&net_of_events(&range))).load(conn)?;
    for change in &net {
        diesel::update(total::table.filter(total::status.eq(&change.status)))
            .set((
                total::orders.eq(total::orders + change.orders),
                total::cents.eq(total::cents + change.cents),
            ))
            .execute(conn)?;
    }
    let events = order_event::table
        .filter(order_event::id.gt(after))
        .filter(order_event::id.le(through))
        .count()
        .get_result::<i64>(conn)?;
    Ok(events as usize)
}

#[derive(QueryableByName)]
struct Vxids {
    #[diesel(sql_type = Text)]
    vxids: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// PostgreSQL: the virtual transaction ids (comma-separated) of the other transactions that hold
/// or wait for `RowExclusiveLock` on `order_event`, that is every one that may still commit an
/// event.
fn writers_of_events(conn: &mut diesel::PgConnection) -> QueryResult<String> {
    let found: Vxids = diesel::sql_query(
        "SELECT COALESCE(string_agg(DISTINCT virtualtransaction, ','), '') AS vxids FROM pg_locks \
         WHERE locktype = 'relation' AND relation = 'order_event'::regclass \
           AND mode = 'RowExclusiveLock' AND pid IS DISTINCT FROM pg_backend_pid()",
    )
    .get_result(conn)?;
    Ok(found.vxids)
}

/// PostgreSQL: whether any of these virtual transactions (as [`writers_of_events`] gave them)
/// is still running: a running transaction always holds a lock on its own virtual id.
fn any_running(conn: &mut diesel::PgConnection, vxids: &str) -> QueryResult<bool> {
    if vxids.is_empty() {
        return Ok(false);
    }
    let running: Count = diesel::sql_query(
        "SELECT COUNT(*) AS n FROM pg_locks WHERE virtualtransaction = ANY(string_to_array($1, ','))",
    )
    .bind::<Text, _>(vxids)
    .get_result(conn)?;
    Ok(running.n > 0)
}
