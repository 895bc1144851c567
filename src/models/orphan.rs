//! Orphan payments (`orphan_payment`): trades a payment channel confirmed with a valid signature
//! that no order of the shop takes, with that channel. Status changes are conditional UPDATEs, as
//! for orders.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::schema::orphan_payment;
use crate::db::{Checked, DbConn, InsertOrSkip};
use crate::models::order::Channel;

/// Why no order takes the payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanKind {
    /// `out_trade_no` is no order of the shop (lost before it was paid): the money goes back.
    UnknownOrder,
    /// The trade already paid another order: held for the admin, never refunded automatically.
    TradeNoReused,
}

/// Where an orphan payment stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrphanStatus {
    Open,
    RefundWait,
    Refunded,
    /// An order of the shop holds its number or its trade by now: the money may be that
    /// order's, so nothing refunds it; the admin looks at both at Alipay.
    Held,
}

text_enum!(OrphanKind { UnknownOrder = "UNKNOWN_ORDER", TradeNoReused = "TRADE_NO_REUSED" });
text_enum!(OrphanStatus { Open = "OPEN", RefundWait = "REFUND_WAIT", Refunded = "REFUNDED", Held = "HELD" });

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orphan_payment)]
pub struct OrphanRow {
    pub id: i64,
    pub kind: String,
    pub out_trade_no: String,
    pub trade_no: String,
    pub amount_cents: i64,
    pub status: String,
    pub notify_id: Option<String>,
    pub detail: String,
    pub received_at: NaiveDateTime,
    pub refunded_by: Option<String>,
    pub updated_at: NaiveDateTime,
    pub channel: String,
}

/// An orphan payment as the shop reads it: the row with its kind and status typed.
#[derive(Debug, Clone)]
pub struct OrphanPayment {
    pub kind: OrphanKind,
    pub status: OrphanStatus,
    /// The channel that took the money, and refunds it.
    pub channel: Channel,
    pub row: OrphanRow,
}

impl OrphanPayment {
    fn from_row(row: OrphanRow) -> QueryResult<OrphanPayment> {
        let unknown = |e: super::UnknownText| diesel::result::Error::DeserializationError(e.into());
        Ok(OrphanPayment {
            kind: row.kind.parse().map_err(unknown)?,
            status: row.status.parse().map_err(unknown)?,
            channel: row.channel.parse().map_err(unknown)?,
            row,
        })
    }

    pub fn is_refundable(&self) -> bool {
        self.kind == OrphanKind::UnknownOrder && self.status == OrphanStatus::Open
    }
}

/// What a notification says about a payment no order takes.
pub struct NewOrphan<'a> {
    pub kind: OrphanKind,
    pub channel: Channel,
    pub out_trade_no: &'a str,
    pub trade_no: &'a str,
    pub amount_cents: i64,
    pub notify_id: Option<&'a str>,
    pub detail: &'a str,
}

/// Records it once per (`out_trade_no`, `trade_no`); `false` when it was recorded already (a
/// resent notification).
pub fn insert(conn: &mut DbConn, orphan: &NewOrphan) -> QueryResult<bool> {
    let at = now();
    InsertOrSkip(diesel::insert_into(orphan_payment::table).values((
        orphan_payment::kind.eq(orphan.kind.as_str()),
        orphan_payment::channel.eq(orphan.channel.as_str()),
        orphan_payment::out_trade_no.eq(orphan.out_trade_no),
        orphan_payment::trade_no.eq(orphan.trade_no),
        orphan_payment::amount_cents.eq(orphan.amount_cents),
        orphan_payment::status.eq(OrphanStatus::Open.as_str()),
        orphan_payment::notify_id.eq(orphan.notify_id),
        orphan_payment::detail.eq(orphan.detail),
        orphan_payment::received_at.eq(at),
        orphan_payment::updated_at.eq(at),
    )))
    .execute(conn)
    .map(|n| n == 1)
}

pub fn find(conn: &mut DbConn, id: i64) -> QueryResult<Option<OrphanPayment>> {
    let row = orphan_payment::table.find(id).select(OrphanRow::as_select()).get_result(conn).optional()?;
    row.map(OrphanPayment::from_row).transpose()
}

/// The newest first, at most `limit`.
pub fn latest(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<OrphanPayment>> {
    orphan_payment::table
        .order(orphan_payment::id.desc())
        .limit(limit)
        .select(OrphanRow::as_select())
        .load(conn)?
        .into_iter()
        .map(OrphanPayment::from_row)
        .collect()
}

/// Open orphans of an unknown order received before `received_before`.
pub fn due_for_refund(
    conn: &mut DbConn,
    received_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<i64>> {
    orphan_payment::table
        .filter(orphan_payment::status.eq(OrphanStatus::Open.as_str()))
        .filter(orphan_payment::kind.eq(OrphanKind::UnknownOrder.as_str()))
        .filter(orphan_payment::received_at.le(received_before))
        .order(orphan_payment::id.asc())
        .limit(limit)
        .select(orphan_payment::id)
        .load(conn)
}

/// `OPEN -> REFUND_WAIT` for a refundable orphan, naming who asked; whether this caller moved it.
pub fn start_refund(conn: &mut DbConn, id: i64, by: &str) -> QueryResult<bool> {
    diesel::update(
        orphan_payment::table
            .filter(orphan_payment::id.eq(id))
            .filter(orphan_payment::kind.eq(OrphanKind::UnknownOrder.as_str()))
            .filter(Checked(orphan_payment::status.eq(OrphanStatus::Open.as_str()))),
    )
    .set((
        orphan_payment::status.eq(OrphanStatus::RefundWait.as_str()),
        orphan_payment::refunded_by.eq(by),
        orphan_payment::updated_at.eq(now()),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// `OPEN|REFUND_WAIT -> HELD`, saying why; whether this caller moved it.
pub fn hold(conn: &mut DbConn, id: i64, why: &str) -> QueryResult<bool> {
    diesel::update(orphan_payment::table.filter(orphan_payment::id.eq(id)).filter(Checked(
        orphan_payment::status.eq_any([OrphanStatus::Open.as_str(), OrphanStatus::RefundWait.as_str()]),
    )))
    .set((
        orphan_payment::status.eq(OrphanStatus::Held.as_str()),
        orphan_payment::detail.eq(why),
        orphan_payment::updated_at.eq(now()),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// `REFUND_WAIT -> REFUNDED` once Alipay confirmed; whether this caller moved it.
pub fn mark_refunded(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
    diesel::update(
        orphan_payment::table
            .filter(orphan_payment::id.eq(id))
            .filter(Checked(orphan_payment::status.eq(OrphanStatus::RefundWait.as_str()))),
    )
    .set((orphan_payment::status.eq(OrphanStatus::Refunded.as_str()), orphan_payment::updated_at.eq(now())))
    .execute(conn)
    .map(|n| n == 1)
}
