//! The shop owner's console: sign-in (constant-time password check or a PHC hash, throttled),
//! admin sessions, and the actions on orders, the outbox and products.

use std::collections::BTreeMap;
use std::net::IpAddr;

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use chrono::{Duration, NaiveDateTime};

use crate::config::Settings;
use crate::db::{DbConn, write_transaction};
use crate::error::{AppError, AppResult};
use crate::log_escape::Untrusted;
use crate::models::order::{Order, OrderFilter, OrderStatus};
use crate::models::order_total::{self, StatusTotal};
use crate::models::{admin, now, outbox::OutboxEntry};
use crate::models::{alipay_notify, gateway_call, order_event};
use crate::services::{order_history, payment, session::token_hash};

pub const ADMIN_COOKIE: &str = "paymall_admin";
const SESSION_HOURS: i64 = 12;
/// Failures in a row (each within `LOCK_SECS` of the one before) before a lock-out, and how long
/// it lasts.
pub const LOCK_AFTER: i32 = 5;
const LOCK_SECS: i64 = 60;

/// Whether `given` is the configured password: a PHC string (`$argon2id$...`) is verified as a
/// hash; a plain value is compared in constant time (over digests, so lengths leak nothing).
pub fn password_matches(configured: &str, given: &str) -> bool {
    if configured.starts_with('$') {
        return PasswordHash::new(configured)
            .is_ok_and(|hash| argon2::Argon2::default().verify_password(given.as_bytes(), &hash).is_ok());
    }
    let (a, b) = (openssl::sha::sha256(configured.as_bytes()), openssl::sha::sha256(given.as_bytes()));
    !configured.is_empty() && openssl::memcmp::eq(&a, &b)
}

/// Why a sign-in was refused.
pub enum Refusal {
    /// Wrong name or password; this many failures in a row so far.
    Wrong {
        failures: i32,
    },
    Locked {
        seconds: i64,
    },
}

/// Checks the credentials under the throttle of this username from this client (so a guesser
/// locks out only itself); on success opens an admin session and returns its token.
pub fn sign_in(
    conn: &mut DbConn,
    settings: &Settings,
    username: &str,
    password: &str,
    client: IpAddr,
) -> AppResult<Result<String, Refusal>> {
    let key = throttle_key(username, client);
    if let Some(until) = admin::locked_until(conn, &key)? {
        return Ok(Err(Refusal::Locked { seconds: (until - now()).num_seconds().max(1) }));
    }
    let name_ok = openssl::memcmp::eq(
        &openssl::sha::sha256(username.as_bytes()),
        &openssl::sha::sha256(settings.admin.username.as_bytes()),
    );
    if name_ok && password_matches(settings.admin.password.expose(), password) {
        admin::clear_failures(conn, &key)?;
        let token = crate::random::token_hex(32);
        admin::insert_session(conn, &token_hash(&token), username, now() + Duration::hours(SESSION_HOURS))?;
        log::info!("admin {} signed in from {client}", Untrusted(username));
        return Ok(Ok(token));
    }
    let at = now();
    let failures = admin::record_failure(
        conn,
        &key,
        at - Duration::seconds(LOCK_SECS),
        LOCK_AFTER,
        at + Duration::seconds(LOCK_SECS),
    )?;
    log::warn!("admin sign-in failed for \"{}\" from {client} ({failures} in a row)", Untrusted(username));
    Ok(Err(Refusal::Wrong { failures }))
}

/// The throttle's key for a username tried from a client: the address and a digest of the name
/// (any name, of any length, makes a key of the same size).
fn throttle_key(username: &str, client: IpAddr) -> String {
    format!("{client} {}", crate::random::hex(&openssl::sha::sha256(username.as_bytes())))
}

/// How long to wait before answering the `failures`-th failure: 50 ms, doubling, at most 1.6 s.
pub fn failure_delay_ms(failures: i32) -> u64 {
    (50u64 << (failures.clamp(1, 6) - 1)).min(1600)
}

pub fn session_admin(conn: &mut DbConn, token: &str) -> AppResult<Option<String>> {
    Ok(admin::session_user(conn, &token_hash(token))?)
}

pub fn sign_out(conn: &mut DbConn, token: &str) -> AppResult<()> {
    admin::delete_session(conn, &token_hash(token))?;
    Ok(())
}

/// Where a page of the orders list starts: the newest, below a row id (older), or above one
/// (newer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    Newest,
    Before(i64),
    After(i64),
}

/// What a filter's total covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterTotal {
    /// Every matching order, per status.
    Exact(Vec<StatusTotal>),
    /// More than this many orders match; they were not counted further.
    AtLeast(i64),
}

impl FilterTotal {
    /// The orders and their amount over every status (for `Exact`).
    pub fn sum(&self) -> (i64, i64) {
        match self {
            FilterTotal::Exact(totals) => totals.iter().fold((0, 0), |(n, c), t| (n + t.orders, c + t.cents)),
            FilterTotal::AtLeast(n) => (*n, 0),
        }
    }
}

/// One page of the admin's orders list, with its cursors and its totals.
pub struct OrdersList {
    /// Newest first.
    pub orders: Vec<Order>,
    /// The cursor of the page of newer orders (`after`), if there are any.
    pub newer: Option<i64>,
    /// The cursor of the page of older orders (`before`), if there are any.
    pub older: Option<i64>,
    /// Every order of the shop per status, exact (statuses without orders left out).
    pub all: Vec<StatusTotal>,
    /// What the filter matches; `None` without a filter (`all` is that).
    pub filtered: Option<FilterTotal>,
}

/// A page of the orders the filter matches, newest first, and the totals. The cost is the same
/// at any number of orders: the page is keyset-paged through an index, the totals per status are
/// folded (`models::order_total`), and a filter's total counts at most `cap` orders (more is
/// "at least `cap`"; a status alone is exact, from the totals per status).
pub fn orders_list(
    conn: &mut DbConn,
    filter: &OrderFilter,
    cursor: Cursor,
    per_page: i64,
    cap: i64,
) -> AppResult<OrdersList> {
    let (orders, newer, older) = match cursor {
        Cursor::Newest | Cursor::Before(_) => {
            let before = if let Cursor::Before(id) = cursor { Some(id) } else { None };
            let mut orders = filter.page_older_than(conn, before, per_page + 1)?;
            let more = orders.len() as i64 > per_page;
            orders.truncate(per_page as usize);
            let older = if more { orders.last().map(|o| o.id) } else { None };
            let newer = match (before, orders.first()) {
                (None, _) => None,
                (Some(_), Some(top)) => filter.any_beyond(conn, top.id, true)?.then_some(top.id),
                (Some(before), None) => filter.any_beyond(conn, before - 1, true)?.then_some(before - 1),
            };
            (orders, newer, older)
        }
        Cursor::After(after) => {
            let mut orders = filter.newer_than(conn, after, per_page + 1)?;
            let more = orders.len() as i64 > per_page;
            orders.truncate(per_page as usize);
            let newer = if more { orders.last().map(|o| o.id) } else { None };
            orders.reverse();
            let older = match orders.last() {
                Some(bottom) => filter.any_beyond(conn, bottom.id, false)?.then_some(bottom.id),
                None => filter.any_beyond(conn, after + 1, false)?.then_some(after + 1),
            };
            (orders, newer, older)
        }
    };
    let mut all = order_total::current(conn)?;
    all.retain(|t| t.orders != 0);
    let filtered = if filter.is_empty() {
        None
    } else if filter.is_status_only() {
        let status = filter.status.map(|s| s.as_str()).unwrap_or_default();
        Some(FilterTotal::Exact(all.iter().filter(|t| t.status == status).cloned().collect()))
    } else {
        Some(filter_total(conn, filter, cap)?)
    };
    Ok(OrdersList { orders, newer, older, all, filtered })
}

/// The filter's orders per status, counting at most `cap` of them.
fn filter_total(conn: &mut DbConn, filter: &OrderFilter, cap: i64) -> AppResult<FilterTotal> {
    let amounts = filter.amounts(conn, cap.saturating_add(1))?;
    if amounts.len() as i64 > cap {
        return Ok(FilterTotal::AtLeast(cap));
    }
    let mut totals = BTreeMap::<String, (i64, i64)>::new();
    for (status, cents) in amounts {
        let entry = totals.entry(status).or_default();
        entry.0 += 1;
        entry.1 += cents;
    }
    Ok(FilterTotal::Exact(
        totals.into_iter().map(|(status, (orders, cents))| StatusTotal { status, orders, cents }).collect(),
    ))
}

/// The background thread's fold of new timeline events into the totals per status.
pub fn fold_totals(conn: &mut DbConn) -> AppResult<usize> {
    Ok(order_total::fold(conn)?)
}

/// Everything the order page shows.
pub struct OrderStory {
    pub order: Order,
    /// The list price, each discount applied (with the copy of its rule) and the payable.
    pub breakdown: order_history::Breakdown,
    pub events: Vec<order_event::OrderEvent>,
    pub notifies: Vec<alipay_notify::AlipayNotify>,
    pub outbox: Vec<OutboxEntry>,
    pub calls: Vec<gateway_call::GatewayCall>,
}

pub fn story(conn: &mut DbConn, order_id: &str) -> AppResult<OrderStory> {
    let order = Order::find(conn, order_id)?
        .ok_or_else(|| AppError::NotFound(format!("There is no order {order_id}.")))?;
    Ok(OrderStory {
        breakdown: order_history::breakdown(conn, &order)?,
        events: order_event::of_order(conn, order_id)?,
        notifies: alipay_notify::of_order(conn, order_id)?,
        outbox: OutboxEntry::for_order(conn, order_id)?,
        calls: gateway_call::of_order(conn, order_id)?,
        order,
    })
}

/// `PAY_SUCCESS|MARKET|DEAL_DONE -> REFUND_WAIT` and the refund enqueued under a stable request
/// number: a double click refunds once. A group order's seat leaves its team (a formed team
/// turns COMPLETE_FAIL). Alipay's confirmation moves it to `REFUNDED` and puts
/// the unit back in stock.
pub fn refund(conn: &mut DbConn, order_id: &str, admin_name: &str) -> AppResult<String> {
    write_transaction(conn, |c| {
        let order = Order::find(c, order_id)?
            .ok_or_else(|| AppError::NotFound(format!("There is no order {order_id}.")))?;
        crate::services::group_buy::lock_team_of(c, &order)?;
        if !Order::transition(c, order_id, &OrderStatus::REFUNDABLE, OrderStatus::RefundWait)? {
            return Ok(format!("not refundable: the order is {}", order.status));
        }
        crate::services::group_buy::refund_seat(c, order_id)?;
        order_event::record(
            c,
            order_id,
            Some(order.status),
            OrderStatus::RefundWait,
            &format!("admin {admin_name}"),
            "refund requested",
        )?;
        payment::enqueue_refund(c, &order, &format!("refunded by {admin_name}"), true)?;
        log::info!("order {order_id}: refund requested by admin {admin_name}");
        Ok("refund requested".to_owned())
    })
}

/// Makes a retrying or dead outbox entry due now.
pub fn retry_outbox(conn: &mut DbConn, outbox_id: i64, admin_name: &str) -> AppResult<bool> {
    let retried = OutboxEntry::retry_now(conn, outbox_id)?;
    if retried {
        log::info!("outbox {outbox_id}: retry requested by admin {admin_name}");
    }
    Ok(retried)
}

pub use crate::models::product::ProductEdit;

pub fn edit_product(
    conn: &mut DbConn,
    product_id: &str,
    edit: &ProductEdit,
    admin_name: &str,
) -> AppResult<()> {
    if !crate::models::product::update(conn, product_id, edit)? {
        return match crate::models::product::Product::find(conn, product_id)? {
            None => Err(AppError::NotFound(format!("There is no product {product_id}."))),
            Some(now) => Err(AppError::Conflict(format!(
                "The stock of {product_id} changed to {} while you edited (orders came in); reload the page and try again.",
                now.stock
            ))),
        };
    }
    log::info!(
        "product {product_id} edited by admin {admin_name}: price {} stock {} on sale {}",
        crate::money::format_yuan(edit.price_cents),
        edit.stock,
        edit.on_sale
    );
    Ok(())
}

/// China-time calendar day `yyyy-mm-dd` to its first UTC instant.
pub fn china_day_start(day: &str) -> Option<NaiveDateTime> {
    let date = chrono::NaiveDate::parse_from_str(day.trim(), "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)? - Duration::hours(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_phc_passwords() {
        assert!(password_matches("s3cret", "s3cret"));
        assert!(!password_matches("s3cret", "s3cret "));
        assert!(!password_matches("", ""));
        let phc = {
            use argon2::password_hash::{PasswordHasher, SaltString};
            let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
            argon2::Argon2::default().hash_password(b"hunter2", &salt).unwrap().to_string()
        };
        assert!(password_matches(&phc, "hunter2"));
        assert!(!password_matches(&phc, "hunter3"));
    }

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(failure_delay_ms(1), 50);
        assert_eq!(failure_delay_ms(2), 100);
        assert_eq!(failure_delay_ms(9), 1600);
    }
}
