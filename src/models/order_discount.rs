//! The discounts applied to an order (`order_discount`): one row per discount, with the amount
//! it took off and a copy of its rule as applied, written with the order.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::order_discount;
use crate::db::{DbConn, InsertRows, Value};

/// What kind of rule a discount comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountType {
    /// `ref_id` is the `user_coupon.coupon_id`.
    Coupon,
    /// `ref_id` is the group-buy team.
    GroupBuy,
}

text_enum!(DiscountType { Coupon = "COUPON", GroupBuy = "GROUP_BUY" });

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_discount)]
pub struct OrderDiscount {
    pub id: i64,
    pub order_id: String,
    #[diesel(deserialize_as = String)]
    pub discount_type: DiscountType,
    pub ref_id: String,
    pub name: String,
    pub amount_cents: i64,
    /// The rule as applied, as JSON.
    pub rule: String,
    pub created_at: NaiveDateTime,
}

/// A discount as the pricing applied it, to be stored with its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrderDiscount<'a> {
    pub discount_type: DiscountType,
    pub ref_id: &'a str,
    pub name: &'a str,
    pub amount_cents: i64,
    pub rule: &'a str,
}

/// The rows of the order's discounts (at most one of each type: the unique (order_id,
/// discount_type) refuses a second), for the inserts that place the order; none without a
/// discount.
pub fn rows(order_id: &str, discounts: &[NewOrderDiscount], at: NaiveDateTime) -> Option<InsertRows> {
    (!discounts.is_empty()).then(|| {
        InsertRows::new(
            order_discount::table,
            (
                order_discount::order_id,
                order_discount::discount_type,
                order_discount::ref_id,
                order_discount::name,
                order_discount::amount_cents,
                order_discount::rule,
                order_discount::created_at,
            ),
            discounts
                .iter()
                .map(|d| {
                    [
                        Value::Text(order_id.to_owned()),
                        Value::Text(d.discount_type.as_str().to_owned()),
                        Value::Text(d.ref_id.to_owned()),
                        Value::Text(d.name.to_owned()),
                        Value::BigInt(d.amount_cents),
                        Value::Text(d.rule.to_owned()),
                        Value::at(at),
                    ]
                })
                .collect(),
        )
    })
}

/// The order's discounts, in the order they were applied.
pub fn for_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Vec<OrderDiscount>> {
    order_discount::table
        .filter(order_discount::order_id.eq(order_id))
        .order(order_discount::id.asc())
        .select(OrderDiscount::as_select())
        .load(conn)
}

/// The discounts of each of `order_ids` (one query for a page of orders), in the order they were
/// applied.
pub fn for_orders(conn: &mut DbConn, order_ids: &[&str]) -> QueryResult<Vec<OrderDiscount>> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    order_discount::table
        .filter(order_discount::order_id.eq_any(order_ids))
        .order(order_discount::id.asc())
        .select(OrderDiscount::as_select())
        .load(conn)
}

impl OrderDiscount {
    /// What the shopper calls this kind of discount.
    pub fn label(&self) -> &'static str {
        match self.discount_type {
            DiscountType::Coupon => "优惠券",
            DiscountType::GroupBuy => "拼团优惠",
        }
    }

    /// The rule in words as it was applied (`满100减10`), from the copy's `words`; empty when the
    /// copy has none.
    pub fn rule_in_words(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.rule)
            .ok()
            .and_then(|rule| rule.get("words").and_then(|w| w.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }
}
