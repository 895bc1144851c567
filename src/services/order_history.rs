//! The read side of orders: a shopper's orders page by page, newest first, and one order with
//! its price breakdown (list price, each discount applied, payable), for the shopper's pages,
//! the JSON API, the checkout and the admin.
//!
//! Paging is a keyset on `pay_order.id`: a page is the shopper's orders with an id below the
//! previous page's last one, so a page costs the same however deep it is and an order placed
//! meanwhile never shifts a page (no order is shown twice or skipped).

use std::collections::HashMap;

use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::group_buy::Team;
use crate::models::order::Order;
use crate::models::order_discount::{self, DiscountType, OrderDiscount};
use crate::models::user::AppUser;
use crate::services::group_buy;
use crate::services::order as orders;

/// Orders per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: i64 = 10;
/// The most orders one page holds.
pub const MAX_PAGE_SIZE: i64 = 50;

/// What an order costs: the list price, what the discounts took off (each one), and the
/// payable amount, the one Alipay charges (`payable_cents = original_cents - discount_cents`).
#[derive(Debug, Clone)]
pub struct Breakdown {
    pub original_cents: i64,
    pub discount_cents: i64,
    pub payable_cents: i64,
    pub discounts: Vec<OrderDiscount>,
}

impl Breakdown {
    /// The order's snapshot; an order placed without one costs its `total_cents`, undiscounted.
    pub fn of_order(order: &Order, discounts: Vec<OrderDiscount>) -> Breakdown {
        Breakdown {
            original_cents: order.original_cents(),
            discount_cents: order.discount_cents,
            payable_cents: order.total_cents,
            discounts,
        }
    }

    /// A payable amount and the discounts that led to it (the list price is their sum).
    pub fn of_payable(payable_cents: i64, discounts: Vec<OrderDiscount>) -> Breakdown {
        let discount_cents = discounts.iter().map(|d| d.amount_cents).sum();
        Breakdown { original_cents: payable_cents + discount_cents, discount_cents, payable_cents, discounts }
    }

    /// Whether anything was taken off the list price.
    pub fn has_discount(&self) -> bool {
        self.discount_cents > 0 || !self.discounts.is_empty()
    }

    /// What the discounts of one type took off.
    pub fn deduction_cents(&self, discount_type: DiscountType) -> i64 {
        self.discounts.iter().filter(|d| d.discount_type == discount_type).map(|d| d.amount_cents).sum()
    }
}

/// An order with its price breakdown, and a group order's team.
#[derive(Debug, Clone)]
pub struct PricedOrder {
    pub order: Order,
    pub breakdown: Breakdown,
    pub team: Option<Team>,
}

/// Where a page of orders starts and how long it is: the orders below `before_id` (from the
/// newest without it), `page_size` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderCursor {
    pub before_id: Option<i64>,
    pub page_size: i64,
}

impl OrderCursor {
    /// `last_id`: the last order id of the previous page; absent or 0 is the first page, a
    /// negative one is refused. `page_size`: absent is [`DEFAULT_PAGE_SIZE`]; outside 1 to
    /// [`MAX_PAGE_SIZE`] it is refused (not clamped), so a client learns its mistake.
    pub fn new(last_id: Option<i64>, page_size: Option<i64>) -> AppResult<OrderCursor> {
        let before_id = match last_id {
            None | Some(0) => None,
            Some(id) if id > 0 => Some(id),
            Some(_) => return Err(AppError::BadRequest("非法参数：lastId 须为正的订单编号".into())),
        };
        let page_size = match page_size.unwrap_or(DEFAULT_PAGE_SIZE) {
            size @ 1..=MAX_PAGE_SIZE => size,
            _ => {
                return Err(AppError::BadRequest(format!(
                    "非法参数：pageSize 须为 1 到 {MAX_PAGE_SIZE} 的整数"
                )));
            }
        };
        Ok(OrderCursor { before_id, page_size })
    }
}

/// A page of a shopper's orders, newest first; `last_id` (the last order's id) starts the next
/// page, and `has_more` says whether there is one.
#[derive(Debug, Clone)]
pub struct OrderPage {
    pub orders: Vec<PricedOrder>,
    pub has_more: bool,
    pub last_id: Option<i64>,
}

/// The shopper's orders from `cursor`, newest first, with their breakdowns: two queries (the
/// page plus one more row to learn whether another page follows, and the page's discounts).
pub fn keyset_page(conn: &mut DbConn, user: &AppUser, cursor: OrderCursor) -> AppResult<OrderPage> {
    let mut found = Order::keyset_of_user(conn, user.user_id, cursor.before_id, cursor.page_size + 1)?;
    let has_more = found.len() as i64 > cursor.page_size;
    found.truncate(cursor.page_size as usize);
    let last_id = found.last().map(|o| o.id);
    Ok(OrderPage { orders: with_discounts(conn, found)?, has_more, last_id })
}

/// Page `page` (from 1) of the shopper's orders, newest first, with their breakdowns.
pub fn numbered_page(
    conn: &mut DbConn,
    user: &AppUser,
    page: i64,
    per_page: i64,
) -> AppResult<Vec<PricedOrder>> {
    let found = orders::page_of_shopper(conn, user, page, per_page)?;
    with_discounts(conn, found)
}

/// The shopper's own order with its breakdown and team; anybody else's is "not found".
pub fn of_shopper(conn: &mut DbConn, user: &AppUser, order_id: &str) -> AppResult<PricedOrder> {
    let order = orders::of_shopper(conn, user, order_id)?;
    let discounts = order_discount::for_order(conn, order_id)?;
    let team = group_buy::team_of(conn, &order)?;
    Ok(PricedOrder { breakdown: Breakdown::of_order(&order, discounts), order, team })
}

/// The shopper's own order as it changes (its status, and a group order's team), for the live
/// status.
pub fn current(conn: &mut DbConn, user: &AppUser, order_id: &str) -> AppResult<(Order, Option<Team>)> {
    let order = orders::of_shopper(conn, user, order_id)?;
    let team = group_buy::team_of(conn, &order)?;
    Ok((order, team))
}

/// The breakdown of an order being checked out, from its payable amount and its discounts.
pub fn at_checkout(conn: &mut DbConn, order_id: &str, payable_cents: i64) -> AppResult<Breakdown> {
    Ok(Breakdown::of_payable(payable_cents, order_discount::for_order(conn, order_id)?))
}

/// Any order's breakdown, for the admin.
pub fn breakdown(conn: &mut DbConn, order: &Order) -> AppResult<Breakdown> {
    Ok(Breakdown::of_order(order, order_discount::for_order(conn, &order.order_id)?))
}

/// The orders with their discounts and teams: one query for each, whatever the page's length.
fn with_discounts(conn: &mut DbConn, found: Vec<Order>) -> AppResult<Vec<PricedOrder>> {
    let ids: Vec<&str> = found.iter().map(|o| o.order_id.as_str()).collect();
    let mut by_order: HashMap<String, Vec<OrderDiscount>> = HashMap::new();
    for discount in order_discount::for_orders(conn, &ids)? {
        by_order.entry(discount.order_id.clone()).or_default().push(discount);
    }
    let team_ids: Vec<&str> = found.iter().filter_map(|o| o.team_id.as_deref()).collect();
    let teams: HashMap<String, Team> = if team_ids.is_empty() {
        HashMap::new()
    } else {
        crate::models::group_buy::teams(conn, &team_ids)?
            .into_iter()
            .map(|t| (t.team_id.clone(), t))
            .collect()
    };
    Ok(found
        .into_iter()
        .map(|order| {
            let discounts = by_order.remove(&order.order_id).unwrap_or_default();
            let team = order.team_id.as_ref().and_then(|id| teams.get(id)).cloned();
            PricedOrder { breakdown: Breakdown::of_order(&order, discounts), order, team }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, OrderCursor};

    #[test]
    fn a_cursor_takes_defaults_and_refuses_what_is_out_of_range() {
        assert_eq!(
            OrderCursor::new(None, None).unwrap(),
            OrderCursor { before_id: None, page_size: DEFAULT_PAGE_SIZE }
        );
        assert_eq!(
            OrderCursor::new(Some(0), Some(1)).unwrap(),
            OrderCursor { before_id: None, page_size: 1 }
        );
        assert_eq!(
            OrderCursor::new(Some(42), Some(MAX_PAGE_SIZE)).unwrap(),
            OrderCursor { before_id: Some(42), page_size: MAX_PAGE_SIZE }
        );
        for size in [0, -1, MAX_PAGE_SIZE + 1, i64::MAX] {
            assert!(OrderCursor::new(None, Some(size)).is_err(), "{size}");
        }
        assert!(OrderCursor::new(Some(-5), None).is_err());
    }
}
