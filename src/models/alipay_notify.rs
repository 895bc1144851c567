//! The payment channels' notifications (`alipay_notify`, with the channel that sent each), each
//! stored as received with what came of it: the whole body when it is the channel's, a bounded
//! prefix and a hash when it failed verification.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::schema::alipay_notify;
use crate::db::{DbConn, InsertRows, Value};
use crate::models::order::Channel;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = alipay_notify)]
pub struct AlipayNotify {
    pub id: i64,
    pub notify_id: Option<String>,
    pub out_trade_no: Option<String>,
    pub trade_status: Option<String>,
    pub raw: String,
    pub verified: bool,
    pub outcome: String,
    pub received_at: NaiveDateTime,
    #[diesel(deserialize_as = String)]
    pub channel: Channel,
}

/// A notification as received (`raw`), and what came of it.
pub struct NewNotify<'a> {
    pub notify_id: Option<&'a str>,
    pub out_trade_no: Option<&'a str>,
    pub trade_status: Option<&'a str>,
    pub raw: &'a str,
    /// The whole body's SHA-256 when `raw` is only its prefix (an unverified notification).
    pub raw_sha256: Option<String>,
    pub verified: bool,
    pub outcome: &'a str,
    /// The channel it claims to come from (the endpoint it reached).
    pub channel: Channel,
}

/// Stores a notification as received, with what came of it.
pub fn store(conn: &mut DbConn, notify: &NewNotify) -> QueryResult<()> {
    row(notify).execute(conn).map(drop)
}

/// The row of [`store`], as a statement to run with others ([`Inserts`]). A verified
/// notification is stored once per (`notify_id`, outcome) (`alipay_notify_once`): a replay that
/// changes nothing adds nothing.
pub fn row(notify: &NewNotify) -> InsertRows {
    InsertRows::new(
        alipay_notify::table,
        (
            alipay_notify::notify_id,
            alipay_notify::out_trade_no,
            alipay_notify::trade_status,
            alipay_notify::raw,
            alipay_notify::raw_sha256,
            alipay_notify::verified,
            alipay_notify::outcome,
            alipay_notify::received_at,
            alipay_notify::channel,
        ),
        vec![[
            Value::OptionalText(notify.notify_id.map(str::to_owned)),
            Value::OptionalText(notify.out_trade_no.map(str::to_owned)),
            Value::OptionalText(notify.trade_status.map(str::to_owned)),
            Value::Text(notify.raw.to_owned()),
            Value::OptionalText(notify.raw_sha256.clone()),
            Value::Bool(notify.verified),
            Value::Text(notify.outcome.to_owned()),
            Value::at(now()),
            Value::Text(notify.channel.as_str().to_owned()),
        ]],
    )
    .skipping_conflicts()
}

/// The notifications about an order, oldest first.
pub fn of_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<AlipayNotify>> {
    alipay_notify::table
        .filter(alipay_notify::out_trade_no.eq(order_id))
        .order(alipay_notify::id.asc())
        .select(AlipayNotify::as_select())
        .load(conn)
}
