//! Payments: Alipay's notifications and the answers of `alipay.trade.query` end in the same
//! place, [`settle_paid`], so a payment is recorded once whichever arrives first.

use chrono::NaiveDateTime;

use crate::config::Settings;

use crate::db::{DbConn, DbPool, Inserts, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, parse_china_time};
use crate::gateways::weixin::WeixinClient;
use crate::models::order::{self, CLOSE, NewNotify, OPEN, Order, PAY_SUCCESS, PAY_WAIT, REFUND_WAIT};
use crate::models::outbox::{NewOutboxEntry, OutboxEntry};
use crate::models::{now, product};
use crate::money::{format_yuan, parse_yuan};
use crate::services::weixin_token;

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

/// A notification as Alipay sent it: its fields, the raw body that its audit row keeps, and
/// whether it is signed by Alipay and meant for us (why not, in words).
pub struct Notification {
    pub params: Vec<(String, String)>,
    pub raw: String,
    signed: Result<(), String>,
}

impl Notification {
    /// Checks the signature as it arrives, before it waits for a database writer: the check needs
    /// no database, and inside SQLite's one writer thread it was a tenth of a notification's time
    /// there, which everything queued behind it waited for too.
    pub fn received(
        alipay: &AlipayClient,
        settings: &Settings,
        params: Vec<(String, String)>,
        raw: String,
    ) -> Self {
        let signed = check_signed(alipay, settings, &params);
        Notification { params, raw, signed }
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Handles one notification: verified (signature, app id, seller, order, exact amount), acted
/// on, and stored raw with what came of it, all at once: the usual payment in one statement
/// ([`pay_if_waiting`]), anything else in one transaction. Anything that fails verification
/// changes nothing but its own audit row. If the work fails, it is undone and the caller keeps
/// the notification with [`keep_unprocessed`], so none is ever lost.
pub fn handle_notify(conn: &mut DbConn, notification: &Notification) -> AppResult<NotifyAnswer> {
    let (params, raw, signed) =
        (notification.params.as_slice(), notification.raw.as_str(), &notification.signed);
    let cause = format!("notify {}", notification.field("notify_id").unwrap_or("-"));
    let evidence = PaymentEvidence {
        cause: &cause,
        trade_no: notification.field("trade_no").unwrap_or(""),
        paid_at: notification.field("gmt_payment").and_then(parse_china_time).unwrap_or_else(now),
    };
    let (answer, outcome) = if signed.is_ok() && pay_if_waiting(conn, notification, &evidence)? {
        (NotifyAnswer::Success, "paid".to_owned())
    } else {
        write_transaction(conn, |c| {
            let mut inserts = Inserts::default();
            let (answer, verified, outcome) = match signed {
                Err(reason) => (NotifyAnswer::Fail, false, reason.clone()),
                Ok(()) => decide(c, notification, &evidence, &mut inserts)?,
            };
            inserts.add(order::notify_row(&notify_record(params, raw, verified, &outcome)));
            inserts.run(c)?;
            Ok::<_, AppError>((answer, outcome))
        })?
    };
    let notify_id = notification.field("notify_id").unwrap_or("-");
    let order_id = notification.field("out_trade_no").unwrap_or("-");
    match answer {
        NotifyAnswer::Success => log::info!("alipay notify {notify_id} for order {order_id}: {outcome}"),
        NotifyAnswer::Fail => log::warn!("alipay notify {notify_id} for order {order_id} refused: {outcome}"),
    }
    Ok(answer)
}

/// The usual notification: a payment for an order waiting for exactly its amount. The order is
/// paid, and its rows and the notification's are added, by one statement; `false` and nothing
/// changed for anything else (unknown order, another amount, paid already, closed), which
/// [`decide`] then looks at.
fn pay_if_waiting(
    conn: &mut DbConn,
    notification: &Notification,
    evidence: &PaymentEvidence,
) -> AppResult<bool> {
    if !matches!(notification.field("trade_status"), Some("TRADE_SUCCESS" | "TRADE_FINISHED")) {
        return Ok(false);
    }
    let (Some(order_id), Some(amount)) =
        (notification.field("out_trade_no"), notification.field("total_amount").and_then(parse_yuan))
    else {
        return Ok(false);
    };
    let mut inserts = Inserts::default();
    add_payment_rows(&mut inserts, order_id, PAY_WAIT, evidence, &format!("trade_no {}", evidence.trade_no));
    inserts.add(order::notify_row(&notify_record(&notification.params, &notification.raw, true, "paid")));
    Ok(Order::pay_waiting(conn, order_id, amount, evidence.trade_no, evidence.paid_at, &inserts)?)
}

/// A notification whose [`handle_notify`] failed, and was undone: stored raw with the reason, and
/// Alipay hears `fail` and resends.
pub fn keep_unprocessed(
    conn: &mut DbConn,
    notification: &Notification,
    error: &AppError,
) -> AppResult<NotifyAnswer> {
    let notify_id = notification.field("notify_id").unwrap_or("-");
    let order_id = notification.field("out_trade_no").unwrap_or("-");
    log::error!("alipay notify {notify_id} for order {order_id} not processed: {error}");
    let outcome = format!("not processed: {}", error.detail());
    order::store_notify(conn, &notify_record(&notification.params, &notification.raw, false, &outcome))?;
    Ok(NotifyAnswer::Fail)
}

/// The audit row of a notification as received, with what came of it.
fn notify_record<'a>(
    params: &'a [(String, String)],
    raw: &'a str,
    verified: bool,
    outcome: &'a str,
) -> NewNotify<'a> {
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    NewNotify {
        notify_id: field("notify_id"),
        out_trade_no: field("out_trade_no"),
        trade_status: field("trade_status"),
        raw,
        verified,
        outcome,
    }
}

/// What a signed notification that [`pay_if_waiting`] did not take means (answer, verified,
/// outcome) and its effect, inside the caller's transaction, with the rows it adds left in
/// `inserts`.
fn decide(
    conn: &mut DbConn,
    notification: &Notification,
    evidence: &PaymentEvidence,
    inserts: &mut Inserts,
) -> AppResult<(NotifyAnswer, bool, String)> {
    let order = match check_order(conn, &notification.params) {
        Ok(order) => order,
        Err(reason) => return Ok((NotifyAnswer::Fail, false, reason)),
    };
    Ok(match notification.field("trade_status").unwrap_or("") {
        "TRADE_SUCCESS" | "TRADE_FINISHED" => {
            (NotifyAnswer::Success, true, record_payment(conn, &order, evidence, inserts)?)
        }
        "TRADE_CLOSED" => (NotifyAnswer::Success, true, "trade closed at Alipay (recorded)".to_owned()),
        "WAIT_BUYER_PAY" => (NotifyAnswer::Success, true, "waiting for the buyer (recorded)".to_owned()),
        other => (NotifyAnswer::Fail, true, format!("unknown trade_status {other:?}")),
    })
}

/// Verification of what the notification says about itself, in the order Alipay documents it;
/// the error says why in words for the log and the audit row.
fn check_signed(
    alipay: &AlipayClient,
    settings: &Settings,
    params: &[(String, String)],
) -> Result<(), String> {
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if !alipay.verify_notification(params) {
        return Err("bad or missing signature".into());
    }
    if field("app_id") != Some(settings.alipay.app_id.as_str()) {
        return Err(format!("app_id {:?} is not ours", field("app_id")));
    }
    if field("seller_id") != Some(settings.alipay.seller_id.as_str()) {
        return Err(format!("seller_id {:?} is not ours", field("seller_id")));
    }
    Ok(())
}

/// The order a signed notification is about, if it is ours and asks exactly its amount.
fn check_order(conn: &mut DbConn, params: &[(String, String)]) -> Result<Order, String> {
    let field = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let out_trade_no = field("out_trade_no").ok_or("no out_trade_no")?;
    let order =
        Order::find(conn, out_trade_no).map_err(|e| format!("database: {e}"))?.ok_or("unknown order")?;
    let amount = field("total_amount").and_then(parse_yuan).ok_or("missing or malformed total_amount")?;
    if amount != order.total_cents {
        return Err(format!(
            "total_amount {} differs from the order's {}",
            amount,
            format_yuan(order.total_cents)
        ));
    }
    Ok(order)
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
    if Order::mark_paid(conn, id, &OPEN, evidence.trade_no, evidence.paid_at)? {
        let detail = format!("trade_no {}", evidence.trade_no);
        add_payment_rows(inserts, id, &order.status, evidence, &detail);
        return Ok("paid".to_owned());
    }
    let current = Order::find(conn, id)?.ok_or_else(|| AppError::internal("order vanished"))?;
    if current.status != CLOSE {
        return Ok(format!("duplicate: already {}", current.status));
    }
    if product::reserve_one(conn, &current.product_id)?.is_some()
        && Order::mark_paid(conn, id, &[CLOSE], evidence.trade_no, evidence.paid_at)?
    {
        let detail = "paid after the shop closed it; stock allowed, honoured";
        add_payment_rows(inserts, id, CLOSE, evidence, detail);
        return Ok("paid after close: honoured".to_owned());
    }
    if Order::transition(conn, id, &[CLOSE], REFUND_WAIT)? {
        Order::set_trade_no(conn, id, evidence.trade_no)?;
        let detail = "paid after the shop closed it; sold out, refunding";
        inserts.add(order::event(id, Some(CLOSE), REFUND_WAIT, evidence.cause, detail));
        enqueue_refund(conn, order, "sold out after the order closed", false)?;
        return Ok("paid after close: sold out, refund enqueued".to_owned());
    }
    Ok("duplicate: already being refunded".to_owned())
}

/// The rows of a recorded payment: its timeline row (`from -> PAY_SUCCESS`), and in the outbox
/// the delivery and the "paid" WeChat message, which is written when it is sent
/// ([`send_paid_message`]), so that these rows need nothing of the order but its id.
fn add_payment_rows(
    inserts: &mut Inserts,
    order_id: &str,
    from: &str,
    evidence: &PaymentEvidence,
    detail: &str,
) {
    inserts.add(order::event(order_id, Some(from), PAY_SUCCESS, evidence.cause, detail));
    inserts.add(OutboxEntry::insert(&[
        NewOutboxEntry { kind: "delivery", dedupe_key: order_id, order_id: Some(order_id), payload: "{}" },
        NewOutboxEntry {
            kind: "wx_paid",
            dedupe_key: &format!("paid-{order_id}"),
            order_id: Some(order_id),
            payload: "{}",
        },
    ]));
}

/// Consumer of `wx_paid`: the "paid" template message to the shopper, written from the order.
pub fn send_paid_message(
    pool: &DbPool,
    weixin: &WeixinClient,
    settings: &Settings,
    owner: &str,
    entry: &OutboxEntry,
) -> AppResult<()> {
    let order_id =
        entry.order_id.as_deref().ok_or_else(|| AppError::internal("paid message without order"))?;
    let order = Order::find(&mut *pool.get()?, order_id)?
        .ok_or_else(|| AppError::internal(format!("paid message for unknown order {order_id}")))?;
    let message = serde_json::json!({
        "touser": order.openid,
        "template_id": settings.weixin.paid_template_id,
        "url": format!("{}/orders/{order_id}", settings.server.public_url),
        "data": {
            "orderId": { "value": order_id },
            "product": { "value": order.product_name },
            "amount": { "value": format_yuan(order.total_cents) },
        },
    });
    weixin_token::send_template(pool, weixin, owner, &entry.dedupe_key, message)
}

/// Enqueues the refund of an order's whole amount under a stable request number, so a retry or a
/// double click never refunds twice. `restock` puts the unit back once Alipay confirms.
pub fn enqueue_refund(conn: &mut DbConn, order: &Order, reason: &str, restock: bool) -> AppResult<bool> {
    let payload = serde_json::json!({ "reason": reason, "restock": restock }).to_string();
    let out_request_no = format!("{}-R1", order.order_id);
    Ok(OutboxEntry::enqueue(
        conn,
        &NewOutboxEntry {
            kind: "refund",
            dedupe_key: &out_request_no,
            order_id: Some(&order.order_id),
            payload: &payload,
        },
    )?)
}

/// Consumer of `delivery`: records the shipment (once: unique per order) and moves
/// `PAY_SUCCESS -> DEAL_DONE`.
pub fn deliver(conn: &mut DbConn, order_id: &str) -> AppResult<()> {
    write_transaction(conn, |c| {
        let Some(order) = Order::find(c, order_id)? else {
            return Err(AppError::internal(format!("delivery for unknown order {order_id}")));
        };
        let shipped =
            order::insert_shipment(c, order_id, &format!("{} x1 to {}", order.product_name, order.openid))?;
        if Order::transition(c, order_id, &[PAY_SUCCESS], order::DEAL_DONE)? {
            order::record_event(c, order_id, Some(PAY_SUCCESS), order::DEAL_DONE, "delivery", "delivered")?;
            log::info!("order {order_id} delivered to openid {}", order.openid);
        } else if shipped {
            log::warn!("order {order_id} shipped while {}", order.status);
        }
        Ok(())
    })
}

#[derive(serde::Deserialize)]
struct RefundPayload {
    reason: String,
    restock: bool,
}

/// Consumer of `refund`: asks Alipay (same `out_request_no` on every try), then
/// `REFUND_WAIT -> REFUNDED`.
pub fn refund(conn: &mut DbConn, alipay: &AlipayClient, entry: &OutboxEntry) -> AppResult<()> {
    let order_id = entry.order_id.as_deref().ok_or_else(|| AppError::internal("refund without order"))?;
    let payload: RefundPayload = serde_json::from_str(&entry.payload).map_err(AppError::internal)?;
    let order = Order::find(conn, order_id)?
        .ok_or_else(|| AppError::internal(format!("refund for unknown order {order_id}")))?;
    let answer = alipay.trade_refund(order_id, order.total_cents, &entry.dedupe_key, &payload.reason, now());
    let outcome = match &answer {
        Ok(()) => format!("refunded ({})", entry.dedupe_key),
        Err(e) => format!("error: {e}"),
    };
    order::record_gateway_call(conn, order_id, "alipay.trade.refund", "refund", &outcome)?;
    answer?;
    write_transaction(conn, |c| {
        if Order::transition(c, order_id, &[REFUND_WAIT], order::REFUNDED)? {
            if payload.restock {
                product::release_one(c, &order.product_id)?;
            }
            order::record_event(
                c,
                order_id,
                Some(REFUND_WAIT),
                order::REFUNDED,
                "refund",
                &format!("Alipay refunded ({})", payload.reason),
            )?;
            log::info!("order {order_id} refunded: {}", payload.reason);
        }
        Ok(())
    })
}
