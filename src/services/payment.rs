//! Payments: Alipay's notifications and the answers of a channel's query end in the same place,
//! [`record`], so a payment is recorded once, by the same rules, whichever arrives first and
//! whatever the channel.

use chrono::NaiveDateTime;

use crate::china_time;
use crate::config::DatabaseSettings;
use crate::db::{DbConn, InsertRows, Inserts, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, NotifyForm, Refused, VerifiedNotification};
use crate::gateways::wechat_pay::{
    self, Refused as WxRefused, SignedHeaders, VerifiedWxNotification, WechatPayClient, WxNotice,
};
use crate::log_escape::Untrusted;
use crate::models::alipay_notify::{self, NewNotify};
use crate::models::order::{Channel, Order, OrderStatus};
use crate::models::order_event;
use crate::models::orphan::{self, NewOrphan, OrphanKind};
use crate::models::outbox::{Delivery, NewOutboxEntry, OutboxEntry, OutboxKind, Refund, WxPaid};
use crate::models::{coupon, now, product};
use crate::money::{format_yuan, parse_yuan};
use crate::services::group_buy::{self, TeamPayment};

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
/// acted on by [`record`] when it reports a payment, and stored whole with what came of it, in
/// the same statement or transaction. If the work fails, it is undone and the caller keeps the
/// notification with [`keep_unprocessed`], so none is ever lost.
pub fn handle_notify(
    conn: &mut DbConn,
    settings: &DatabaseSettings,
    notification: &Notification,
) -> AppResult<Handled> {
    let recorded = match &notification.verdict {
        Err(refused) => {
            alipay_notify::store(conn, &unverified_record(refused, &notification.raw))?;
            Recorded::refused(refused.reason.clone())
        }
        Ok(verified) => handle_verified(conn, settings, verified, &notification.raw)?,
    };
    let answer = recorded.answer();
    match answer {
        NotifyAnswer::Success if log::log_enabled!(log::Level::Info) => {
            log::info!("alipay notify {}: {}", notification.describe(), recorded.outcome);
        }
        NotifyAnswer::Success => {}
        NotifyAnswer::Fail => {
            log::warn!("alipay notify {} refused: {}", notification.describe(), recorded.outcome);
        }
    }
    Ok(Handled { answer, enqueued: recorded.enqueued })
}

/// What [`handle_notify`] came to: the answer, and whether outbox work was enqueued with it;
/// once the work is committed the caller wakes the background thread
/// ([`crate::jobs::Wake`]) to deliver it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handled {
    pub answer: NotifyAnswer,
    pub enqueued: bool,
}

/// A verified notification: a payment goes to [`record`], with the notification's audit row;
/// anything else is only stored with what it means.
fn handle_verified(
    conn: &mut DbConn,
    settings: &DatabaseSettings,
    notification: &VerifiedNotification,
    raw: &str,
) -> AppResult<Recorded> {
    let audit = |recorded: &Recorded| {
        let verified = recorded.verdict != Verdict::Refused;
        alipay_notify::row(&verified_record(notification, raw, verified, &recorded.outcome))
    };
    let keep = |conn: &mut DbConn, recorded: Recorded| -> AppResult<Recorded> {
        audit(&recorded).execute(conn)?;
        Ok(recorded)
    };
    let Some(out_trade_no) = notification.field("out_trade_no") else {
        return keep(conn, Recorded::refused("no out_trade_no"));
    };
    let Some(amount_cents) = notification.field("total_amount").and_then(parse_yuan) else {
        return keep(conn, Recorded::refused("missing or malformed total_amount"));
    };
    if !is_paid_status(notification) {
        let recorded = trade_status_recorded(conn, notification, out_trade_no, amount_cents)?;
        return keep(conn, recorded);
    }
    let trade_no = notification.field("trade_no").unwrap_or("");
    if trade_no.is_empty() {
        return keep(conn, Recorded::refused("a payment without trade_no"));
    }
    let notify_id = notification.field("notify_id");
    let cause = format!("notify {}", notify_id.unwrap_or("-"));
    let payment = Payment {
        channel: Channel::Alipay,
        out_trade_no,
        amount_cents,
        trade_no,
        paid_at: notification.field("gmt_payment").and_then(china_time::parse).unwrap_or_else(now),
        cause: &cause,
        notify_id,
    };
    record(conn, settings.payment_in_one_statement, &payment, |recorded| Some(audit(recorded)))
}

fn is_paid_status(notification: &VerifiedNotification) -> bool {
    matches!(notification.field("trade_status"), Some("TRADE_SUCCESS" | "TRADE_FINISHED"))
}

/// A notification of a trade's state other than paid, for one of our orders at its amount:
/// recorded, nothing more.
fn trade_status_recorded(
    conn: &mut DbConn,
    notification: &VerifiedNotification,
    out_trade_no: &str,
    amount_cents: i64,
) -> AppResult<Recorded> {
    let Some(order) = Order::find(conn, out_trade_no)?.filter(|o| o.total_cents == amount_cents) else {
        return Ok(Recorded::refused("unknown order or another amount"));
    };
    Ok(match notification.field("trade_status").unwrap_or("") {
        "TRADE_CLOSED" => Recorded::done(format!("trade of {} closed at Alipay (recorded)", order.order_id)),
        "WAIT_BUYER_PAY" => Recorded::done("waiting for the buyer (recorded)"),
        other => Recorded::held(format!("unknown trade_status {}", Untrusted(other))),
    })
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
        channel: Channel::Alipay,
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
        channel: Channel::Alipay,
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
/// A WeChat Pay notification as it arrived: the raw body, and either the notice WeChat Pay
/// signed and encrypted for our merchant, or why it is refused. It is judged once, before it waits
/// for a database writer; every later read goes through the verified notice.
pub struct WxNotification {
    raw: String,
    verdict: Result<VerifiedWxNotification, WxRefused>,
}

impl WxNotification {
    pub fn received(client: &WechatPayClient, headers: &SignedHeaders, raw: String) -> Self {
        let verdict = client.verify_notification(headers, &raw);
        WxNotification { raw, verdict }
    }

    /// Whether it is WeChat Pay's, for us; rate limits count only the others.
    pub fn is_verified(&self) -> bool {
        self.verdict.is_ok()
    }
}

/// Handles one WeChat Pay notification by the same rules as Alipay's ([`handle_notify`]): a
/// refused one leaves only its bounded audit row; a payment goes to [`record`] with the decrypted
/// notice as its audit row, in the same statement or transaction; a refund notice is recorded and
/// wakes the outbox, whose refund entry asks WeChat Pay again and settles the order.
pub fn handle_wechat_notify(
    conn: &mut DbConn,
    settings: &DatabaseSettings,
    notification: &WxNotification,
) -> AppResult<Handled> {
    let recorded = match &notification.verdict {
        Err(refused) => {
            alipay_notify::store(conn, &unverified_wx_record(&refused.reason, &notification.raw))?;
            Recorded::refused(refused.reason.clone())
        }
        Ok(verified) => handle_verified_wx(conn, settings, verified)?,
    };
    let answer = recorded.answer();
    if answer == NotifyAnswer::Fail {
        log::warn!("wechat pay notify refused: {}", Untrusted(&recorded.outcome));
    }
    Ok(Handled { answer, enqueued: recorded.enqueued })
}

fn handle_verified_wx(
    conn: &mut DbConn,
    settings: &DatabaseSettings,
    notification: &VerifiedWxNotification,
) -> AppResult<Recorded> {
    let (out_trade_no, state) = match &notification.notice {
        WxNotice::Transaction(tx) => (tx.out_trade_no.as_str(), tx.trade_state.as_str()),
        WxNotice::Refund(refund) => (refund.out_trade_no.as_str(), refund.refund_status.as_str()),
    };
    let audit = |recorded: &Recorded| {
        alipay_notify::row(&NewNotify {
            notify_id: Some(&notification.id),
            out_trade_no: Some(out_trade_no),
            trade_status: Some(state),
            raw: &notification.plaintext,
            raw_sha256: None,
            verified: recorded.verdict != Verdict::Refused,
            outcome: &recorded.outcome,
            channel: Channel::WechatPay,
        })
    };
    let keep = |conn: &mut DbConn, recorded: Recorded| -> AppResult<Recorded> {
        audit(&recorded).execute(conn)?;
        Ok(recorded)
    };
    match &notification.notice {
        WxNotice::Transaction(tx) if tx.trade_state == "SUCCESS" => {
            let cause = format!("wxpay notify {}", notification.id);
            let payment = Payment {
                channel: Channel::WechatPay,
                out_trade_no,
                amount_cents: tx.amount.total,
                trade_no: &tx.transaction_id,
                paid_at: tx.success_time.as_deref().and_then(wechat_pay::parse_time).unwrap_or_else(now),
                cause: &cause,
                notify_id: Some(&notification.id),
            };
            if payment.trade_no.is_empty() {
                return keep(conn, Recorded::refused("a payment without transaction_id"));
            }
            record(conn, settings.payment_in_one_statement, &payment, |recorded| Some(audit(recorded)))
        }
        WxNotice::Transaction(_) => {
            keep(conn, Recorded::done(format!("trade_state {} (recorded)", Untrusted(state))))
        }
        WxNotice::Refund(_) => {
            OutboxEntry::due_now_for_order(conn, OutboxKind::Refund, out_trade_no)?;
            keep(
                conn,
                Recorded::enqueued(format!(
                    "refund {} (recorded; the refund entry settles it)",
                    Untrusted(state)
                )),
            )
        }
    }
}

/// The bounded audit row of a refused WeChat Pay notification: a prefix of the body and the
/// whole body's SHA-256.
fn unverified_wx_record<'a>(reason: &'a str, raw: &'a str) -> NewNotify<'a> {
    NewNotify {
        notify_id: None,
        out_trade_no: None,
        trade_status: None,
        raw: prefix(raw, UNVERIFIED_PREFIX_BYTES),
        raw_sha256: Some(crate::random::hex(&openssl::sha::sha256(raw.as_bytes()))),
        verified: false,
        outcome: reason,
        channel: Channel::WechatPay,
    }
}

/// A WeChat Pay notification whose [`handle_wechat_notify`] failed, and was undone: stored
/// bounded with the reason, and WeChat Pay hears a failure and resends.
pub fn keep_unprocessed_wx(
    conn: &mut DbConn,
    notification: &WxNotification,
    error: &AppError,
) -> AppResult<()> {
    log::error!("wechat pay notify not processed: {error}");
    let outcome = format!("not processed: {}", error.detail());
    alipay_notify::store(conn, &unverified_wx_record(&outcome, &notification.raw))?;
    Ok(())
}

/// A payment a channel confirmed for one of our order numbers, by notification or by query.
pub struct Payment<'a> {
    /// The channel that took the money (an orphan payment is refunded through it).
    pub channel: Channel,
    pub out_trade_no: &'a str,
    pub amount_cents: i64,
    pub trade_no: &'a str,
    pub paid_at: NaiveDateTime,
    /// Where it came from, for the timeline: `notify <id>`, `compensation`, `admin`.
    pub cause: &'a str,
    /// The notification that brought it, for an orphan's record.
    pub notify_id: Option<&'a str>,
}

/// What a channel's word on a payment came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Acted on, or recorded: a notification is answered `success`.
    Done,
    /// Alipay's, but the money is held for the admin (a trade that paid another order) or the
    /// state is unknown: answered `fail`, kept as evidence.
    Held,
    /// Not acted on (another amount, missing fields): answered `fail`.
    Refused,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Held => "held",
            Verdict::Refused => "refused",
        }
    }
}

/// What recording a payment came to, and why, for the logs and the audit row.
pub struct Recorded {
    pub verdict: Verdict,
    pub outcome: String,
    /// Outbox work (a delivery, a refund) was enqueued with it.
    pub enqueued: bool,
}

impl Recorded {
    fn done(outcome: impl Into<String>) -> Self {
        Recorded { verdict: Verdict::Done, outcome: outcome.into(), enqueued: false }
    }

    /// Done, with outbox work enqueued in the same statement or transaction.
    fn enqueued(outcome: impl Into<String>) -> Self {
        Recorded { verdict: Verdict::Done, outcome: outcome.into(), enqueued: true }
    }

    fn held(outcome: impl Into<String>) -> Self {
        Recorded { verdict: Verdict::Held, outcome: outcome.into(), enqueued: false }
    }

    fn refused(outcome: impl Into<String>) -> Self {
        Recorded { verdict: Verdict::Refused, outcome: outcome.into(), enqueued: false }
    }

    fn answer(&self) -> NotifyAnswer {
        if self.verdict == Verdict::Done { NotifyAnswer::Success } else { NotifyAnswer::Fail }
    }
}

/// Records a payment: the one function that does, for notifications and queries alike, by these
/// rules. An order waiting for exactly the amount is paid, once: `PAY_SUCCESS`, its coupon
/// USED, the delivery and the WeChat message enqueued; a group order's payment is counted in its
/// team instead of delivered, and the one that fills the team delivers every member
/// ([`group_buy::count_payment`]). A trade that already paid another order
/// pays nothing and is held for the admin; a payment for an order the shop does not know
/// becomes an orphan payment to refund; another amount is refused. A payment for an order the
/// shop closed is honoured if the order had no discount or team and stock allows, otherwise refunded:
/// never dropped. An order paid or being refunded already: nothing more.
///
/// The usual case, an order waiting with no discount to settle, is one statement
/// ([`Order::pay_waiting`], docs/PERFORMANCE.md "The usual payment in one statement") when
/// `one_statement` is set; everything else in one transaction. `audit` gives a row to write
/// with the outcome (a notification's own), in the same statement or transaction.
pub fn record(
    conn: &mut DbConn,
    one_statement: bool,
    payment: &Payment,
    audit: impl Fn(&Recorded) -> Option<InsertRows>,
) -> AppResult<Recorded> {
    let recorded = record_once(conn, one_statement, payment, audit)?;
    crate::metrics::payment_recorded(payment.channel, recorded.verdict);
    Ok(recorded)
}

/// [`record`]'s work: one statement, or a transaction.
fn record_once(
    conn: &mut DbConn,
    one_statement: bool,
    payment: &Payment,
    audit: impl Fn(&Recorded) -> Option<InsertRows>,
) -> AppResult<Recorded> {
    if one_statement {
        let paid = Recorded::enqueued("paid");
        let mut rows = Inserts::default();
        let detail = format!("trade_no {}", payment.trade_no);
        add_payment_rows(&mut rows, payment.out_trade_no, OrderStatus::PayWait, payment, &detail, true);
        if let Some(row) = audit(&paid) {
            rows.add(row);
        }
        if Order::pay_waiting(
            conn,
            payment.out_trade_no,
            payment.amount_cents,
            payment.trade_no,
            payment.paid_at,
            &rows,
        )? {
            return Ok(paid);
        }
    }
    write_transaction(conn, |c| {
        let mut rows = Inserts::default();
        let recorded = settle(c, payment, &mut rows)?;
        if let Some(row) = audit(&recorded) {
            rows.add(row);
        }
        rows.run(c)?;
        Ok(recorded)
    })
}

/// [`record`]'s rules, inside its transaction, leaving the rows they add in `rows`.
fn settle(conn: &mut DbConn, payment: &Payment, rows: &mut Inserts) -> AppResult<Recorded> {
    let id = payment.out_trade_no;
    let record_orphan = |c: &mut DbConn, kind, detail: &str| {
        let new = NewOrphan {
            kind,
            channel: payment.channel,
            out_trade_no: id,
            trade_no: payment.trade_no,
            amount_cents: payment.amount_cents,
            notify_id: payment.notify_id,
            detail,
        };
        orphan::insert(c, &new)
    };
    if let Some(holder) = Order::paid_by_trade(conn, payment.trade_no)?.filter(|holder| holder != id) {
        let detail = format!("trade_no {} already paid order {holder}", Untrusted(payment.trade_no));
        record_orphan(conn, OrphanKind::TradeNoReused, &detail)?;
        return Ok(Recorded::held(format!("refused: {detail}; held for the admin")));
    }
    let Some(order) = Order::find(conn, id)? else {
        let new = record_orphan(conn, OrphanKind::UnknownOrder, "paid for an order the shop does not know")?;
        return Ok(Recorded::done(if new {
            "orphan payment: no such order, to be refunded"
        } else {
            "orphan payment, recorded already"
        }));
    };
    if payment.amount_cents != order.total_cents {
        return Ok(Recorded::refused(format!(
            "total_amount {} differs from the order's {}",
            format_yuan(payment.amount_cents),
            format_yuan(order.total_cents)
        )));
    }
    if Order::mark_paid(conn, id, &OrderStatus::OPEN, payment.trade_no, payment.paid_at)? {
        coupon::mark_used(conn, id)?;
        let detail = format!("trade_no {}", payment.trade_no);
        let Some(team_id) = &order.team_id else {
            add_payment_rows(rows, id, order.status, payment, &detail, true);
            return Ok(Recorded::enqueued("paid"));
        };
        // A group order is delivered once its team forms.
        add_payment_rows(rows, id, order.status, payment, &detail, false);
        return Ok(
            match group_buy::count_payment(conn, &order, team_id, payment.paid_at, payment.cause, rows)? {
                TeamPayment::Counted => Recorded::enqueued(format!("paid; counted in team {team_id}")),
                TeamPayment::Completed(orders) => Recorded::enqueued(format!(
                    "paid; team {team_id} formed, {} orders to deliver",
                    orders.len()
                )),
                TeamPayment::TooLate => {
                    Recorded::enqueued(format!("paid after team {team_id} closed; refund enqueued"))
                }
            },
        );
    }
    let current = Order::find(conn, id)?.ok_or_else(|| AppError::internal("order vanished"))?;
    if current.status != OrderStatus::Close {
        return Ok(Recorded::done(format!("duplicate: already {}", current.status)));
    }
    if current.discount_cents == 0
        && current.team_id.is_none()
        && product::reserve_one(conn, &current.product_id)?.is_some()
        && Order::mark_paid(conn, id, &[OrderStatus::Close], payment.trade_no, payment.paid_at)?
    {
        let detail = "paid after the shop closed it; stock allowed, honoured";
        add_payment_rows(rows, id, OrderStatus::Close, payment, detail, true);
        return Ok(Recorded::enqueued("paid after close: honoured"));
    }
    if Order::transition(conn, id, &[OrderStatus::Close], OrderStatus::RefundWait)? {
        Order::set_trade_no(conn, id, payment.trade_no)?;
        let why = if current.team_id.is_some() {
            "its group-buy seat went back"
        } else if current.discount_cents == 0 {
            "sold out"
        } else {
            "its coupon went back to the shopper"
        };
        let detail = format!("paid after the shop closed it; {why}, refunding");
        rows.add(order_event::row(
            id,
            Some(OrderStatus::Close),
            OrderStatus::RefundWait,
            payment.cause,
            &detail,
        ));
        enqueue_refund(conn, &current, &format!("paid after the order closed; {why}"), false)?;
        return Ok(Recorded::enqueued(format!("paid after close: {why}, refund enqueued")));
    }
    Ok(Recorded::done("duplicate: already being refunded"))
}

/// The rows of a recorded payment: its timeline row (`from -> PAY_SUCCESS`), and in the outbox
/// the "paid" WeChat message, which is written when it is sent
/// ([`crate::services::fulfilment::send_paid_message`]), so that these rows need nothing of the
/// order but its id, and the delivery when `deliver` (not for a group order, which waits for its
/// team).
fn add_payment_rows(
    inserts: &mut Inserts,
    order_id: &str,
    from: OrderStatus,
    payment: &Payment,
    detail: &str,
    deliver: bool,
) {
    inserts.add(order_event::row(order_id, Some(from), OrderStatus::PaySuccess, payment.cause, detail));
    let order_id = order_id.to_owned();
    let paid_message = NewOutboxEntry::of(&WxPaid { order_id: order_id.clone() });
    inserts.add(if deliver {
        OutboxEntry::insert([NewOutboxEntry::of(&Delivery { order_id }), paid_message])
    } else {
        OutboxEntry::insert([paid_message])
    });
}

/// Enqueues the refund of an order's whole amount under a stable request number, so a retry or a
/// double click never refunds twice. `restock` puts the unit back once Alipay confirms.
pub fn enqueue_refund(conn: &mut DbConn, order: &Order, reason: &str, restock: bool) -> AppResult<bool> {
    let job = Refund { order_id: order.order_id.clone(), reason: reason.to_owned(), restock };
    Ok(OutboxEntry::enqueue(conn, &job)?)
}
