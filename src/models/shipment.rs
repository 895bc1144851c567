//! Shipments (`shipment`): one per order at most, so an order is never delivered twice.

use diesel::prelude::*;

use super::now;
use crate::db::schema::shipment;
use crate::db::{DbConn, InsertOrSkip};

/// Records the shipment; false when the order was shipped already.
pub fn insert(conn: &mut DbConn, order_id: &str, detail: &str) -> QueryResult<bool> {
    InsertOrSkip(diesel::insert_into(shipment::table).values((
        shipment::order_id.eq(order_id),
        shipment::detail.eq(detail),
        shipment::shipped_at.eq(now()),
    )))
    .execute(conn)
    .map(|n| n == 1)
}

/// How many shipments the order has (0 or 1).
pub fn count_of(conn: &mut DbConn, order_id: &str) -> QueryResult<i64> {
    shipment::table.filter(shipment::order_id.eq(order_id)).count().get_result(conn)
}
