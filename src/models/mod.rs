//! Diesel structs and their queries. Functions take a connection and return `QueryResult`;
//! nothing here knows about HTTP or the outside platforms.

pub mod admin;
pub mod login;
pub mod order;
pub mod outbox;
pub mod product;
pub mod session;
pub mod user;

use chrono::NaiveDateTime;

/// The current time as stored in the database: UTC without a zone (both backends).
pub fn now() -> NaiveDateTime {
    chrono::Utc::now().naive_utc()
}

/// Whether an insert lost against a unique constraint (someone else inserted first).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _))
}
