//! Orphan payments: money a payment channel took, with a valid signature, that no order of the
//! shop takes (recorded by [`crate::services::payment::record`]), refunded through that channel.
//! A payment for an order the shop
//! does not know is refunded, from the admin console or by the background thread once
//! `alipay.orphan_refund_after_hours` have passed; a trade that already paid another order is
//! held for the admin. Each refund is one outbox entry under a stable request number, so it is
//! made once whoever asks and however often.

use chrono::Duration;

use crate::db::{DbConn, DbPool, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::{GatewayOp, Gateways, RefundRequest};
use crate::models::gateway_call;
use crate::models::now;
use crate::models::order::Order;
use crate::models::orphan::{self, OrphanPayment, OrphanStatus};
use crate::models::outbox::{OrphanRefund, OutboxEntry};

/// `OPEN -> REFUND_WAIT` and the refund enqueued, in one transaction; `false` when the orphan
/// is not open (being refunded or refunded already, or held because it is not refundable), or
/// when an order now holds its number or trade (then it is held).
pub fn request_refund(conn: &mut DbConn, orphan_id: i64, by: &str) -> AppResult<bool> {
    write_transaction(conn, |c| {
        let Some(payment) = orphan::find(c, orphan_id)? else { return Ok(false) };
        if hold_if_claimed(c, &payment)? || !orphan::start_refund(c, orphan_id, by)? {
            return Ok(false);
        }
        OutboxEntry::enqueue(c, &OrphanRefund { orphan_id })?;
        log::info!("orphan payment {orphan_id}: refund requested by {by}");
        Ok(true)
    })
}

/// Holds the orphan when an order of the shop holds its number or its trade by now (a number
/// reused after a restore, a trade that paid an order meanwhile): its money may be that order's.
fn hold_if_claimed(conn: &mut DbConn, payment: &OrphanPayment) -> AppResult<bool> {
    let row = &payment.row;
    let claimed_by = match Order::find(conn, &row.out_trade_no)? {
        Some(order) => Some(order.order_id),
        None => Order::paid_by_trade(conn, &row.trade_no)?,
    };
    let Some(order_id) = claimed_by else { return Ok(false) };
    let why = format!("held: order {order_id} holds its number or trade; check both at Alipay");
    if orphan::hold(conn, row.id, &why)? {
        log::warn!("orphan payment {} {why}", row.id);
    }
    Ok(true)
}

/// The background thread's part: refunds the orphans of unknown orders older than `after`.
pub fn refund_due(conn: &mut DbConn, after: Duration) -> AppResult<usize> {
    let due = orphan::due_for_refund(conn, now() - after, 100)?;
    let mut requested = 0;
    for orphan_id in due {
        requested += usize::from(request_refund(conn, orphan_id, "background")?);
    }
    Ok(requested)
}

/// The newest orphans, for the admin console.
pub fn latest(conn: &mut DbConn) -> AppResult<Vec<OrphanPayment>> {
    Ok(orphan::latest(conn, 200)?)
}

/// Consumer of `orphan_refund`, unless the orphan is held (an order holds its number or trade
/// by now): asks the channel that took the money (the same request number on every try), then
/// `REFUND_WAIT -> REFUNDED`. No pooled connection is held while the channel answers.
pub fn refund(pool: &DbPool, gateways: &Gateways, job: &OrphanRefund) -> AppResult<()> {
    let payment = {
        let conn = &mut *pool.get()?;
        let found = orphan::find(conn, job.orphan_id)?;
        let payment =
            found.ok_or_else(|| AppError::internal(format!("no orphan payment {}", job.orphan_id)))?;
        // Checked again as it is sent: an order may have taken the number or the trade meanwhile.
        if payment.status != OrphanStatus::RefundWait || hold_if_claimed(conn, &payment)? {
            return Ok(());
        }
        payment
    };
    let row = &payment.row;
    let request_no = format!("{}-R1", row.out_trade_no);
    let gateway = gateways.of(payment.channel)?;
    let answer = gateway.refund(&RefundRequest {
        out_trade_no: &row.out_trade_no,
        trade_no: Some(&row.trade_no),
        amount_cents: row.amount_cents,
        total_cents: row.amount_cents,
        request_no: &request_no,
        reason: "订单不存在，原路退款",
    });
    let outcome = match &answer {
        Ok(()) => format!("refunded ({request_no})"),
        Err(e) => format!("error: {e}"),
    };
    let mut conn = pool.get()?;
    let call = gateway.call_name(GatewayOp::Refund);
    gateway_call::record(&mut conn, &row.out_trade_no, call, "orphan refund", &outcome)?;
    answer?;
    if orphan::mark_refunded(&mut conn, row.id)? {
        log::info!("orphan payment {} (order {}) refunded", row.id, row.out_trade_no);
    }
    Ok(())
}
