//! What happens after a payment, run from the outbox (`jobs::outbox`): the delivery of a paid
//! order, the "paid" WeChat message, and an order's refund. Each is idempotent: an entry whose
//! lease ran out may run twice.

use crate::config::Settings;
use crate::db::{DbConn, DbPool, write_transaction};
use crate::error::{AppError, AppResult};
use crate::gateways::weixin::WeixinClient;
use crate::gateways::{GatewayOp, Gateways, RefundRequest};
use crate::models::order::{Order, OrderStatus};
use crate::models::outbox::{OutboxJob, Refund, WxPaid};
use crate::models::{coupon, gateway_call, now, order_event, product, shipment};
use crate::money::format_yuan;
use crate::services::{group_buy, weixin_token};

/// Consumer of `delivery`: `PAY_SUCCESS -> DEAL_DONE` (a group order: `MARKET -> DEAL_DONE`, once
/// its team formed) and the shipment (once: unique per order); an order in any other status
/// (delivered already, refunded first, a team still forming) ships nothing.
pub fn deliver(conn: &mut DbConn, order_id: &str) -> AppResult<()> {
    write_transaction(conn, |c| {
        let Some(order) = Order::find(c, order_id)? else {
            return Err(AppError::internal(format!("delivery for unknown order {order_id}")));
        };
        // Only a paid order ships: one refunded (or being refunded) before its delivery ran
        // does not, nor a group order before its team forms.
        let from = if order.team_id.is_some() { OrderStatus::Market } else { OrderStatus::PaySuccess };
        if !Order::transition(c, order_id, deliverable_from(from), OrderStatus::DealDone)? {
            log::info!("order {order_id} not delivered: it is {}", order.status);
            return Ok(());
        }
        shipment::insert(c, order_id, &format!("{} x1 to {}", order.product_name, order.openid))?;
        order_event::record(c, order_id, Some(from), OrderStatus::DealDone, "delivery", "delivered")?;
        log::info!("order {order_id} delivered to openid {}", order.openid);
        Ok(())
    })
}

/// The one status an order ships from, as the slice a transition takes.
fn deliverable_from(from: OrderStatus) -> &'static [OrderStatus] {
    match from {
        OrderStatus::Market => &[OrderStatus::Market],
        _ => &[OrderStatus::PaySuccess],
    }
}

/// Consumer of `wx_paid`: the "paid" template message to the shopper, written from the order,
/// with the job's dedupe key as `client_msg_id`.
pub fn send_paid_message(
    pool: &DbPool,
    weixin: &WeixinClient,
    settings: &Settings,
    owner: &str,
    job: &WxPaid,
) -> AppResult<()> {
    let order_id = job.order_id.as_str();
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
    weixin_token::send_template(pool, weixin, owner, &job.dedupe_key(), message)
}

/// Consumer of `refund`: asks the order's channel (the job's dedupe key as the refund's request
/// number, the same on every try), then `REFUND_WAIT -> REFUNDED`. No pooled connection is held
/// while the channel answers.
pub fn refund(pool: &DbPool, gateways: &Gateways, job: &Refund) -> AppResult<()> {
    let order_id = job.order_id.as_str();
    let request_no = job.dedupe_key();
    let order = Order::find(&mut *pool.get()?, order_id)?
        .ok_or_else(|| AppError::internal(format!("refund for unknown order {order_id}")))?;
    let gateway = gateways.of(order.channel)?;
    let answer = gateway.refund(&RefundRequest {
        out_trade_no: order_id,
        trade_no: order.trade_no.as_deref(),
        amount_cents: order.total_cents,
        total_cents: order.total_cents,
        request_no: &request_no,
        reason: &job.reason,
    });
    let outcome = match &answer {
        Ok(()) => format!("refunded ({request_no})"),
        Err(e) => format!("error: {e}"),
    };
    let conn = &mut *pool.get()?;
    gateway_call::record(conn, order_id, gateway.call_name(GatewayOp::Refund), "refund", &outcome)?;
    answer?;
    write_transaction(conn, |c| {
        if Order::transition(c, order_id, &[OrderStatus::RefundWait], OrderStatus::Refunded)? {
            if job.restock {
                product::release_one(c, &order.product_id)?;
            }
            // Refunded before delivery, the order gives its coupon back (MARKETING.md §5.10).
            if shipment::count_of(c, order_id)? == 0 {
                coupon::restore_used(c, order_id, now())?;
            }
            group_buy::seat_refunded(c, order_id)?;
            order_event::record(
                c,
                order_id,
                Some(OrderStatus::RefundWait),
                OrderStatus::Refunded,
                "refund",
                &format!("{} refunded ({})", order.channel.platform(), job.reason),
            )?;
            log::info!("order {order_id} refunded: {}", job.reason);
        }
        Ok(())
    })
}
