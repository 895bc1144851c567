//! Payments: Alipay's notifications and the answers of `alipay.trade.query` end in the same
//! place, [`settle_paid`], so a payment is recorded once whichever arrives first.

use chrono::NaiveDateTime;

use crate::china_time;
use crate::db::{DbConn, Inserts, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, NotifyForm, Refused, VerifiedNotification};
use crate::log_escape::Untrusted;
use crate::models::alipay_notify::{self, NewNotify};
use crate::models::order::{Order, OrderStatus};
use crate::models::order_event;
use crate::models::orphan::{self, NewOrphan, OrphanKind};
use crate::models::outbox::{Delivery, NewOutboxEntry, OutboxEntry, Refund, WxPaid};
use crate::models::{now, product};
use crate::money::{format_yuan, parse_yuan};

/// What the notify endpoint answers: Alipay resends until it reads exactly `success`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyAnswer {
    Success,
    Fail,
}

impl NotifyAnswer {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyAnswer::Success => "success",
            NotifyAnswer::Fail => "fail",
        }
    }
}

/// Where a payment came from, for the timeline.
pub struct PaymentEvidence<'a> {
    pub cause: &'a str,
    pub trade_no: &'a str,
    pub paid_at: NaiveDateTime,
}

/// A notification as Alipay sent it: the raw body its audit row keeps, and either the fields
/// Alipay signed for our app and seller, or why it is refused. It is judged once, as it arrives
/// and before it waits for a database writer (the check needs no database); every later read
/// goes through the verified fields.
pub struct Notification {
    raw: String,
    verdict: Result<VerifiedNotification, Refused>,
}

/// An unverified body keeps this many bytes of itself (and the whole body's SHA-256).
pub const UNVERIFIED_PREFIX_BYTES: usize = 512;

impl Notification {
    pub fn received(alipay: &AlipayClient, raw: String) -> Self {
        let verdict = NotifyForm::parse(&raw).and_then(|form| alipay.verify_notification(form));
        Notification { raw, verdict }
    }

    /// Whether it is Alipay's, for us; rate limits count only the others.
    pub fn is_verified(&self) -> bool {
        self.verdict.is_ok()
    }

    /// For log lines: the notification's id and order as sent (escaped: they may be anyone's).
    fn describe(&self) -> String {
        let field = |name| match &self.verdict {
            Ok(verified) => verified.field(name),
            Err(refused) => refused.form.as_ref().and_then(|f| f.field(name)),
        };
        format!(
            "{} for order {}",
            Untrusted(field("notify_id").unwrap_or("-")),
            Untrusted(field("out_trade_no").unwrap_or("-"))
        )
    }
}

/// Handles one notification: a refused one leaves only its bounded audit row; a verified one is
/// checked against the order (exact amount, trade not used by another order), acted on, and
/// stored whole with what came of it, all at once: the usual payment in one statement
/// ([`pay_if_waiting`]), anything else in one transaction. If the work fails, it is undone and
/// the caller keeps the notification with [`keep_unprocessed`], so none is ever lost.
pub fn handle_notify(conn: &mut DbConn, notification: &Notification) -> AppResult<NotifyAnswer> {
    let (answer, outcome) = match &notification.verdict {
        Err(refused) => {
            alipay_notify::store(conn, &unverified_record(refused, &notification.raw))?;
            (NotifyAnswer::Fail, refused.reason.clone())
        }
        Ok(verified) => handle_verified(conn, verified, &notification.raw)?,
    };
    let described = notification.describe();
    match answer {
        NotifyAnswer::Success => log::info!("alipay notify {described}: {outcome}"),
        NotifyAnswer::Fail => log::warn!("alipay notify {described} refused: {outcome}"),
    }
    Ok(answer)
}

fn handle_verified(
    conn: &mut DbConn,
    notification: &VerifiedNotification,
    raw: &str,
) -> AppResult<(NotifyAnswer, String)> {
    let cause = format!("notify {}", notification.field("notify_id").unwrap_or("-"));
    let evidence = PaymentEvidence {
        cause: &cause,
        trade_no: notification.field("trade_no").unwrap_or(""),
        paid_at: notification.field("gmt_payment").and_then(china_time::parse).unwrap_or_else(now),
    };
    if pay_if_waiting(conn, notification, raw, &evidence)? {
        return Ok((NotifyAnswer::Success, "paid".to_owned()));
    }
    write_transaction(conn, |c| {
        let mut inserts = Inserts::default();
        let (answer, verified, outcome) = decide(c, notification, &evidence, &mut inserts)?;
        inserts.add(alipay_notify::row(&verified_record(notification, raw, verified, &outcome)));
        inserts.run(c)?;
        Ok::<_, AppError>((answer, outcome))
    })
}

/// The usual notification: a payment for an order waiting for exactly its amount, by a trade
/// that paid no other order. The order is paid, and its rows and the notification's are added,
/// by one statement; `false` and nothing changed for anything else, which [`decide`] then
/// looks at.
fn pay_if_waiting(
    conn: &mut DbConn,
    notification: &VerifiedNotification,
    raw: &str,
    evidence: &PaymentEvidence,
) -> AppResult<bool> {
    if !is_paid_status(notification) || evidence.trade_no.is_empty() {
        return Ok(false);
    }
    let (Some(order_id), Some(amount)) =
        (notification.field("out_trade_no"), notification.field("total_amount").and_then(parse_yuan))
    else {
        return Ok(false);
    };
    let mut inserts = Inserts::default();
    add_payment_rows(
        &mut inserts,
        order_id,
        OrderStatus::PayWait,
        evidence,
        &format!("trade_no {}", evidence.trade_no),
    );
    inserts.add(alipay_notify::row(&verified_record(notification, raw, true, "paid")));
    Ok(Order::pay_waiting(conn, order_id, amount, evidence.trade_no, evidence.paid_at, &inserts)?)
}

fn is_paid_status(notification: &VerifiedNotification) -> bool {
    matches!(notification.field("trade_status"), Some("TRADE_SUCCESS" | "TRADE_FINISHED"))
}

/// A notification whose [`handle_notify`] failed, and was undone: stored with the reason, and
/// Alipay hears `fail` and resends.
pub fn keep_unprocessed(
    conn: &mut DbConn,
    notification: &Notification,
    error: &AppError,
) -> AppResult<NotifyAnswer> {
    log::error!("alipay notify {} not processed: {error}", notification.describe());
    let outcome = format!("not processed: {}", error.detail());
    let record = match &notification.verdict {
        Ok(verified) => verified_record(verified, &notification.raw, false, &outcome),
        Err(refused) => unverified_record(refused, &notification.raw),
    };
    alipay_notify::store(conn, &record)?;
    Ok(NotifyAnswer::Fail)
}

/// The audit row of a verified notification: the body whole, with what came of it.
fn verified_record<'a>(
    notification: &'a VerifiedNotification,
    raw: &'a str,
    verified: bool,
    outcome: &'a str,
) -> NewNotify<'a> {
    NewNotify {
        notify_id: notification.field("notify_id"),
        out_trade_no: notification.field("out_trade_no"),
        trade_status: notification.field("trade_status"),
        raw,
        raw_sha256: None,
        verified,
        outcome,
    }
}

/// The audit row of a refused notification, bounded whatever was sent: a prefix of the body and
/// the whole body's SHA-256, the fields it names cut short.
fn unverified_record<'a>(refused: &'a Refused, raw: &'a str) -> NewNotify<'a> {
    const FIELD_CHARS: usize = 64;
    let field = |name| refused.form.as_ref().and_then(|f| f.field(name)).map(|v| prefix(v, FIELD_CHARS));
    NewNotify {
        notify_id: field("notify_id"),
        out_trade_no: field("out_trade_no"),
        trade_status: field("trade_status"),
        raw: prefix(raw, UNVERIFIED_PREFIX_BYTES),
        raw_sha256: Some(crate::random::hex(&openssl::sha::sha256(raw.as_bytes()))),
        verified: false,
        outcome: &refused.reason,
    }
}

/// At most `max_bytes` of `text`, cut at a character boundary.
fn prefix(text: &str, max_bytes: usize) -> &str {
    let mut end = text.len().min(max_bytes);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
/// What a verified notification that [`pay_if_waiting`] did not take means (answer, accepted,
/// outcome) and its effect, inside the caller's transaction, with the rows it adds left in
/// `inserts`. A payment that no order takes is never dropped: for an order the shop does not
/// know it becomes an orphan payment to refund; for a trade that paid another order it is
/// refused and held for the admin.
fn decide(
    conn: &mut DbConn,
    notification: &VerifiedNotification,
    evidence: &PaymentEvidence,
    inserts: &mut Inserts,
) -> AppResult<(NotifyAnswer, bool, String)> {
    let refused = |reason: &str| Ok((NotifyAnswer::Fail, false, reason.to_owned()));
    let Some(out_trade_no) = notification.field("out_trade_no") else { return refused("no out_trade_no") };
    let Some(amount) = notification.field("total_amount").and_then(parse_yuan) else {
        return refused("missing or malformed total_amount");
    };
    let order = Order::find(conn, out_trade_no)?;
    if !is_paid_status(notification) {
        let Some(order) = order.filter(|o| o.total_cents == amount) else {
            return refused("unknown order or another amount");
        };
        return Ok(match notification.field("trade_status").unwrap_or("") {
            "TRADE_CLOSED" => (
                NotifyAnswer::Success,
                true,
                format!("trade of {} closed at Alipay (recorded)", order.order_id),
            ),
            "WAIT_BUYER_PAY" => (NotifyAnswer::Success, true, "waiting for the buyer (recorded)".to_owned()),
            other => (NotifyAnswer::Fail, true, format!("unknown trade_status {}", Untrusted(other))),
        });
    }
    if evidence.trade_no.is_empty() {
        return refused("a payment without trade_no");
    }
    let record_orphan = |c: &mut DbConn, kind, detail: &str| {
        let new = NewOrphan {
            kind,
            out_trade_no,
            trade_no: evidence.trade_no,
            amount_cents: amount,
            notify_id: notification.field("notify_id"),
            detail,
        };
        orphan::insert(c, &new)
    };
    if let Some(holder) = Order::paid_by_trade(conn, evidence.trade_no)?.filter(|id| id != out_trade_no) {
        let detail = format!("trade_no {} already paid order {holder}", Untrusted(evidence.trade_no));
        record_orphan(conn, OrphanKind::TradeNoReused, &detail)?;
        return Ok((NotifyAnswer::Fail, true, format!("refused: {detail}; held for the admin")));
    }
    let Some(order) = order else {
        let new = record_orphan(conn, OrphanKind::UnknownOrder, "paid for an order the shop does not know")?;
        let outcome = if new {
            "orphan payment: no such order, to be refunded"
        } else {
            "orphan payment, recorded already"
        };
        return Ok((NotifyAnswer::Success, true, outcome.to_owned()));
    };
    if amount != order.total_cents {
        return refused(&format!(
            "total_amount {} differs from the order's {}",
            format_yuan(amount),
            format_yuan(order.total_cents)
        ));
    }
    Ok((NotifyAnswer::Success, true, record_payment(conn, &order, evidence, inserts)?))
}

/// Records a payment that Alipay confirmed (by notify or by query) and returns what happened.
/// Open order: `PAY_SUCCESS` plus delivery and the WeChat message, once. Already paid: nothing.
/// Closed at the shop: honoured if stock allows, otherwise refunded automatically — never dropped.
pub fn settle_paid(conn: &mut DbConn, order: &Order, evidence: &PaymentEvidence) -> AppResult<String> {
    write_transaction(conn, |c| {
        let mut inserts = Inserts::default();
        let outcome = record_payment(c, order, evidence, &mut inserts)?;
        inserts.run(c)?;
        Ok(outcome)
    })
}

/// [`settle_paid`] inside the caller's transaction, leaving the rows it adds (timeline, outbox)
/// in `inserts`, which the caller runs before it commits, with rows of its own.
fn record_payment(
    conn: &mut DbConn,
    order: &Order,
    evidence: &PaymentEvidence,
    inserts: &mut Inserts,
) -> AppResult<String> {
    let id = order.order_id.as_str();
    if Order::mark_paid(conn, id, &OrderStatus::OPEN, evidence.trade_no, evidence.paid_at)? {
        let detail = format!("trade_no {}", evidence.trade_no);
        add_payment_rows(inserts, id, order.status, evidence, &detail);
        return Ok("paid".to_owned());
    }
    let current = Order::find(conn, id)?.ok_or_else(|| AppError::internal("order vanished"))?;
    if current.status != OrderStatus::Close {
        return Ok(format!("duplicate: already {}", current.status));
    }
    if product::reserve_one(conn, &current.product_id)?.is_some()
        && Order::mark_paid(conn, id, &[OrderStatus::Close], evidence.trade_no, evidence.paid_at)?
    {
        let detail = "paid after the shop closed it; stock allowed, honoured";
        add_payment_rows(inserts, id, OrderStatus::Close, evidence, detail);
        return Ok("paid after close: honoured".to_owned());
    }
    if Order::transition(conn, id, &[OrderStatus::Close], OrderStatus::RefundWait)? {
        Order::set_trade_no(conn, id, evidence.trade_no)?;
        let detail = "paid after the shop closed it; sold out, refunding";
        inserts.add(order_event::row(
            id,
            Some(OrderStatus::Close),
            OrderStatus::RefundWait,
            evidence.cause,
            detail,
        ));
        enqueue_refund(conn, order, "sold out after the order closed", false)?;
        return Ok("paid after close: sold out, refund enqueued".to_owned());
    }
    Ok("duplicate: already being refunded".to_owned())
}

/// The rows of a recorded payment: its timeline row (`from -> PAY_SUCCESS`), and in the outbox
/// the delivery and the "paid" WeChat message, which is written when it is sent
/// ([`crate::services::fulfilment::send_paid_message`]), so that these rows need nothing of the
/// order but its id.
fn add_payment_rows(
    inserts: &mut Inserts,
    order_id: &str,
    from: OrderStatus,
    evidence: &PaymentEvidence,
    detail: &str,
) {
    inserts.add(order_event::row(order_id, Some(from), OrderStatus::PaySuccess, evidence.cause, detail));
    let order_id = order_id.to_owned();
    inserts.add(OutboxEntry::insert([
        NewOutboxEntry::of(&Delivery { order_id: order_id.clone() }),
        NewOutboxEntry::of(&WxPaid { order_id }),
    ]));
}

/// Enqueues the refund of an order's whole amount under a stable request number, so a retry or a
/// double click never refunds twice. `restock` puts the unit back once Alipay confirms.
pub fn enqueue_refund(conn: &mut DbConn, order: &Order, reason: &str, restock: bool) -> AppResult<bool> {
    let job = Refund { order_id: order.order_id.clone(), reason: reason.to_owned(), restock };
    Ok(OutboxEntry::enqueue(conn, &job)?)
}
