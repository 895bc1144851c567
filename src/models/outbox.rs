//! The outbox: after-commit work, enqueued once per (kind, dedupe key) in the same transaction
//! as the change that causes it, and claimed by the background thread with a lease.

use chrono::{Duration, NaiveDateTime};
use diesel::prelude::*;

use super::now;
use crate::db::schema::outbox;
use crate::db::{DbConn, InsertRows, KeepPreparedDsl, Value};

/// What an outbox entry asks for; each kind has one consumer (`jobs::outbox`). Stored as its
/// snake-case name in `outbox.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// Ship a paid order (once: a unique shipment row), then `PAY_SUCCESS -> DEAL_DONE`.
    Delivery,
    /// A WeChat template message prepared when enqueued (the payload is its body).
    WxTemplate,
    /// The "paid" WeChat template message, written from the order when it is sent.
    WxPaid,
    /// Refund an order at Alipay, then `REFUND_WAIT -> REFUNDED`.
    Refund,
    /// Refund an orphan payment at Alipay.
    OrphanRefund,
}

text_enum!(OutboxKind {
    Delivery = "delivery",
    WxTemplate = "wx_template",
    WxPaid = "wx_paid",
    Refund = "refund",
    OrphanRefund = "orphan_refund",
});

/// Where an entry stands, stored as its upper-case name in `outbox.status`: `PENDING` (due at
/// `next_attempt_at`, retried after a failure), then `DONE`, or `DEAD` after
/// `jobs::MAX_OUTBOX_ATTEMPTS` failed attempts (kept, shown to the admin, retried on request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxStatus {
    Pending,
    Done,
    Dead,
}

text_enum!(OutboxStatus {
    Pending = "PENDING",
    Done = "DONE",
    Dead = "DEAD",
});

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
pub struct OutboxEntry {
    pub outbox_id: i64,
    /// As stored: an entry of a kind this build does not know (one a newer instance enqueued)
    /// fails and is retried, it never stops the others. [`OutboxEntry::kind`] reads it.
    pub kind: String,
    pub dedupe_key: String,
    pub order_id: Option<String>,
    pub payload: String,
    #[diesel(deserialize_as = String)]
    pub status: OutboxStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Work to enqueue: `kind` says which consumer runs it, `dedupe_key` makes it enqueue once.
pub struct NewOutboxEntry<'a> {
    pub kind: OutboxKind,
    pub dedupe_key: &'a str,
    pub order_id: Option<&'a str>,
    pub payload: &'a str,
}

impl OutboxEntry {
    pub fn kind(&self) -> Result<OutboxKind, super::UnknownText> {
        self.kind.parse()
    }

    /// Enqueues the entry unless one with the same kind and dedupe key exists; returns whether
    /// it was new. A duplicate leaves the caller's transaction intact.
    pub fn enqueue(conn: &mut DbConn, entry: &NewOutboxEntry) -> QueryResult<bool> {
        Self::enqueue_all(conn, std::slice::from_ref(entry)).map(|new| new == 1)
    }

    /// Enqueues the entries of one change in one statement, each unless one with the same kind
    /// and dedupe key exists; returns how many were new.
    pub fn enqueue_all(conn: &mut DbConn, entries: &[NewOutboxEntry]) -> QueryResult<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        Self::insert(entries).execute(conn)
    }

    /// The statement of [`OutboxEntry::enqueue_all`], to run with others ([`crate::db::Inserts`]):
    /// one statement for all the entries of a change, each left out if its (kind, dedupe key)
    /// is enqueued already.
    pub fn insert(entries: &[NewOutboxEntry]) -> InsertRows {
        let at = now();
        let rows = entries
            .iter()
            .map(|e| {
                vec![
                    Value::Text(e.kind.as_str().to_owned()),
                    Value::Text(e.dedupe_key.to_owned()),
                    Value::OptionalText(e.order_id.map(str::to_owned)),
                    Value::Text(e.payload.to_owned()),
                    Value::Text(OutboxStatus::Pending.as_str().to_owned()),
                    Value::Integer(0),
                    Value::at(at),
                    Value::at(at),
                    Value::at(at),
                ]
            })
            .collect();
        InsertRows::new(
            "outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, \
             created_at, updated_at)",
            rows,
        )
        .skipping_conflicts()
    }

    /// Ids of pending entries that are due and not leased by a live worker.
    pub fn due_ids(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<i64>> {
        let at = now();
        outbox::table
            .filter(outbox::status.eq(OutboxStatus::Pending.as_str()))
            .filter(outbox::next_attempt_at.le(at))
            .filter(outbox::lease_until.is_null().or(outbox::lease_until.lt(at)))
            .order(outbox::next_attempt_at.asc())
            .limit(limit)
            .select(outbox::outbox_id)
            .load(conn)
    }

    /// Takes the lease on one entry; `None` when another worker holds it or it is no longer due.
    pub fn claim(
        conn: &mut DbConn,
        outbox_id: i64,
        owner: &str,
        lease: Duration,
    ) -> QueryResult<Option<OutboxEntry>> {
        let at = now();
        let claimed = diesel::update(
            outbox::table
                .filter(outbox::outbox_id.eq(outbox_id))
                .filter(outbox::status.eq(OutboxStatus::Pending.as_str()))
                .filter(outbox::lease_until.is_null().or(outbox::lease_until.lt(at))),
        )
        .set((outbox::lease_owner.eq(owner), outbox::lease_until.eq(at + lease)))
        .keep_prepared()
        .execute(conn)?;
        if claimed == 0 {
            return Ok(None);
        }
        outbox::table.find(outbox_id).select(OutboxEntry::as_select()).get_result(conn).optional()
    }

    /// Marks the entry done, if we still hold its lease.
    pub fn complete(conn: &mut DbConn, outbox_id: i64, owner: &str) -> QueryResult<usize> {
        diesel::update(
            outbox::table.filter(outbox::outbox_id.eq(outbox_id)).filter(outbox::lease_owner.eq(owner)),
        )
        .set((
            outbox::status.eq(OutboxStatus::Done.as_str()),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::last_error.eq(None::<String>),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::updated_at.eq(now()),
        ))
        .keep_prepared()
        .execute(conn)
    }

    /// Records a failed attempt: tried again at `retry_at`, or `DEAD` when `retry_at` is `None`.
    pub fn fail(
        conn: &mut DbConn,
        outbox_id: i64,
        owner: &str,
        error: &str,
        retry_at: Option<NaiveDateTime>,
    ) -> QueryResult<usize> {
        let at = now();
        diesel::update(
            outbox::table.filter(outbox::outbox_id.eq(outbox_id)).filter(outbox::lease_owner.eq(owner)),
        )
        .set((
            outbox::status.eq(if retry_at.is_some() { OutboxStatus::Pending } else { OutboxStatus::Dead }.as_str()),
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::next_attempt_at.eq(retry_at.unwrap_or(at)),
            outbox::last_error.eq(Some(error)),
            outbox::lease_owner.eq(None::<String>),
            outbox::lease_until.eq(None::<NaiveDateTime>),
            outbox::updated_at.eq(at),
        ))
        .keep_prepared()
        .execute(conn)
    }

    pub fn for_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::order_id.eq(order_id))
            .order(outbox::outbox_id.asc())
            .select(OutboxEntry::as_select())
            .load(conn)
    }

    pub fn of_kind(conn: &mut DbConn, kind: OutboxKind) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::kind.eq(kind.as_str()))
            .order(outbox::outbox_id.asc())
            .select(OutboxEntry::as_select())
            .load(conn)
    }
}

impl OutboxEntry {
    /// A retrying or dead entry due now (the admin's "retry now"); its history stays.
    pub fn retry_now(conn: &mut DbConn, outbox_id: i64) -> QueryResult<bool> {
        diesel::update(outbox::table.filter(outbox::outbox_id.eq(outbox_id)).filter(outbox::status.ne(OutboxStatus::Done.as_str())))
            .set((
                outbox::status.eq(OutboxStatus::Pending.as_str()),
                outbox::next_attempt_at.eq(now()),
                outbox::updated_at.eq(now()),
            ))
            .keep_prepared()
            .execute(conn)
            .map(|n| n == 1)
    }

    /// Entries that failed at least once and are not done: retrying or dead.
    pub fn troubled(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<OutboxEntry>> {
        outbox::table
            .filter(outbox::status.ne(OutboxStatus::Done.as_str()))
            .filter(outbox::attempts.gt(0).or(outbox::status.eq(OutboxStatus::Dead.as_str())))
            .order(outbox::outbox_id.desc())
            .limit(limit)
            .select(OutboxEntry::as_select())
            .load(conn)
    }
}
