//! The record of every call to Alipay about an order (`gateway_call`), for the admin's view.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::DbConn;
use crate::db::schema::gateway_call;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = gateway_call)]
pub struct GatewayCall {
    pub id: i64,
    pub order_id: String,
    pub call: String,
    pub caller: String,
    pub outcome: String,
    pub created_at: NaiveDateTime,
}

/// Records what a call answered.
pub fn record(conn: &mut DbConn, order_id: &str, call: &str, caller: &str, outcome: &str) -> QueryResult<()> {
    diesel::insert_into(gateway_call::table)
        .values((
            gateway_call::order_id.eq(order_id),
            gateway_call::call.eq(call),
            gateway_call::caller.eq(caller),
            gateway_call::outcome.eq(outcome),
            gateway_call::created_at.eq(now()),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The calls about an order, oldest first.
pub fn of_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<GatewayCall>> {
    gateway_call::table
        .filter(gateway_call::order_id.eq(order_id))
        .order(gateway_call::id.asc())
        .select(GatewayCall::as_select())
        .load(conn)
}
