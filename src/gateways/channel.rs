//! The payment channels behind one set of calls: what the services ask of a channel's gateway
//! about a trade (query, close, refund), in the channel's own protocol, and the answers in the
//! shop's terms (amounts as integer cents). [`Gateways`] picks the gateway of an order's channel.

use std::sync::Arc;

use chrono::NaiveDateTime;

use super::GatewayError;
use super::alipay::AlipayClient;
use super::wechat_pay::WechatPayClient;
use crate::models::order::Channel;

/// A trade as its channel reports it, answered signed and well formed.
#[derive(Debug, Clone, PartialEq)]
pub enum TradeState {
    /// The channel never saw the trade: the buyer never opened its cashier.
    NotExist,
    Waiting,
    Closed,
    /// Paid, with what the channel says was paid.
    Paid {
        trade_no: String,
        amount_cents: i64,
        paid_at: Option<NaiveDateTime>,
    },
}

/// What closing a trade at its channel came to.
#[derive(Debug, Clone, PartialEq)]
pub enum CloseOutcome {
    Closed,
    /// Never created at the channel: nothing to close there.
    NotExist,
    /// No longer waiting (maybe paid): query to find out.
    NotWaiting,
}

/// A refund of (part of) a trade.
#[derive(Debug, Clone, Copy)]
pub struct RefundRequest<'a> {
    pub out_trade_no: &'a str,
    /// The channel's trade number, when known: the channel refuses a pair that does not match.
    pub trade_no: Option<&'a str>,
    pub amount_cents: i64,
    /// What the trade took in all.
    pub total_cents: i64,
    /// Stable across tries: resending the same number never refunds twice.
    pub request_no: &'a str,
    pub reason: &'a str,
}

/// The calls a gateway makes about a trade, named for the records of each call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayOp {
    Query,
    Close,
    Refund,
}

/// A payment channel's server-to-server calls about one trade, by the shop's order number
/// (`out_trade_no`). Blocking: call it from a call-out thread or the background thread, never
/// holding a pooled connection. Each call is counted in the metrics under its channel.
pub trait PaymentGateway: Send + Sync {
    fn channel(&self) -> Channel;

    /// The name a call is recorded and counted under (`alipay.trade.query`, ...).
    fn call_name(&self, op: GatewayOp) -> &'static str;

    fn query(&self, out_trade_no: &str) -> Result<TradeState, GatewayError>;

    /// Closes a trade still waiting for its buyer, so that it can no longer be paid.
    fn close(&self, out_trade_no: &str) -> Result<CloseOutcome, GatewayError>;

    fn refund(&self, request: &RefundRequest) -> Result<(), GatewayError>;
}

/// The gateway of every channel the shop takes payments through.
#[derive(Clone)]
pub struct Gateways {
    pub alipay: Arc<AlipayClient>,
    /// `None` when the shop takes no WeChat Pay (`wechat_pay.mch_id` empty).
    pub wechat_pay: Option<Arc<WechatPayClient>>,
}

impl Gateways {
    /// The gateway of `channel`; a channel without one is unreachable (tried again later).
    pub fn of(&self, channel: Channel) -> Result<&dyn PaymentGateway, GatewayError> {
        match channel {
            Channel::Alipay => Ok(&*self.alipay),
            Channel::WechatPay => match &self.wechat_pay {
                Some(client) => Ok(&**client),
                None => Err(GatewayError::Unreachable {
                    platform: channel.platform(),
                    reason: "no gateway is configured for this channel".into(),
                }),
            },
        }
    }
}
