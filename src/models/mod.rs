//! Diesel structs and their queries. Functions take a connection and return `QueryResult`;
//! nothing here knows about HTTP or the outside platforms.
//!
//! Lookups by a unique key use `get_result`, not `first`: `first` adds `LIMIT ?`, and SQLite plans
//! a statement with a bound LIMIT again on every run (the plan may depend on the value), so it
//! would never profit from the prepared-statement cache.

pub mod admin;
pub mod alipay_notify;
pub mod gateway_call;
pub mod login;
pub mod order;
pub mod order_event;
pub mod orphan;
pub mod outbox;
pub mod product;
pub mod retention;
pub mod session;
pub mod shipment;
pub mod user;
pub mod weixin_nonce;

use chrono::NaiveDateTime;

/// The current time as stored in the database: UTC without a zone (both backends).
pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Whether an insert lost against a unique constraint (someone else inserted first).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}
