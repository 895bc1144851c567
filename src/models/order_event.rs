//! The order's timeline (`order_event`): one row for every status change, written in the
//! transaction (or the statement) of the change itself.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use super::order::OrderStatus;
use crate::db::schema::order_event;
use crate::db::{DbConn, InsertRows, Value};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_event)]
pub struct OrderEvent {
    pub id: i64,
    pub order_id: String,
    pub from_status: Option<String>,
    pub to_status: String,
    pub cause: String,
    pub detail: String,
    pub created_at: NaiveDateTime,
}

/// Records a transition of the order.
pub fn record(
    conn: &mut DbConn,
    order_id: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    cause: &str,
    detail: &str,
) -> QueryResult<()> {
    row(order_id, from, to, cause, detail).execute(conn).map(drop)
}

/// The timeline row of a transition, as a statement to run with others ([`Inserts`]).
pub fn row(
    order_id: &str,
    from: Option<OrderStatus>,
    to: OrderStatus,
    cause: &str,
    detail: &str,
) -> InsertRows {
    InsertRows::new(
        order_event::table,
        (
            order_event::order_id,
            order_event::from_status,
            order_event::to_status,
            order_event::cause,
            order_event::detail,
            order_event::created_at,
        ),
        vec![[
            Value::Text(order_id.to_owned()),
            Value::OptionalText(from.map(|s| s.as_str().to_owned())),
            Value::Text(to.as_str().to_owned()),
            Value::Text(cause.to_owned()),
            Value::Text(detail.to_owned()),
            Value::at(now()),
        ]],
    )
}

/// The order's timeline, oldest first.
pub fn of_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<OrderEvent>> {
    order_event::table
        .filter(order_event::order_id.eq(order_id))
        .order(order_event::id.asc())
        .select(OrderEvent::as_select())
        .load(conn)
}
