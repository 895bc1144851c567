//! Diesel structs and their queries. Functions take a connection and return `QueryResult`;
//! nothing here knows about HTTP or the outside platforms.
//!
//! Lookups by a unique key use `get_result`, not `first`: `first` adds `LIMIT ?`, and SQLite plans
//! a statement with a bound LIMIT again on every run (the plan may depend on the value), so it
//! would never profit from the prepared-statement cache.

/// A domain enum stored as its text in a column: `as_str`, `Display`, `FromStr` and
/// `TryFrom<String>` (for diesel's `deserialize_as`); a text that names no variant is an
/// [`UnknownText`].
macro_rules! text_enum {
    ($name:ident { $($variant:ident = $text:literal),* $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::models::UnknownText;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)*
                    other => Err($crate::models::UnknownText { what: stringify!($name), text: other.to_owned() }),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::models::UnknownText;

            fn try_from(text: String) -> Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

pub mod admin;
pub mod alipay_notify;
pub mod coupon;
pub mod gateway_call;
pub mod group_buy;
pub mod login;
pub mod order;
pub mod order_discount;
pub mod order_event;
pub mod order_total;
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

/// A stored text that names no variant of the enum `what` (a newer build's value, or a damaged
/// row).
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} {text:?}")]
pub struct UnknownText {
    pub what: &'static str,
    pub text: String,
}
