//! Deleting audit rows past their retention, a bounded batch at a time so that no single
//! statement holds the database long (the background thread repeats until a batch comes back
//! short).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConn;
use crate::db::schema::{admin_login_failure, alipay_notify, gateway_call};

/// Which notifications a deletion is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyBody {
    /// Kept whole: signed by Alipay for us.
    Whole,
    /// A bounded prefix and a hash: failed verification.
    Prefix,
}

/// Notifications of the kind received before `before`, at most `batch`.
pub fn delete_notifications(
    conn: &mut DbConn,
    body: NotifyBody,
    before: NaiveDateTime,
    batch: i64,
) -> QueryResult<usize> {
    let old = alipay_notify::table.filter(alipay_notify::received_at.lt(before)).select(alipay_notify::id);
    let ids: Vec<i64> = match body {
        NotifyBody::Whole => old.filter(alipay_notify::raw_sha256.is_null()).limit(batch).load(conn)?,
        NotifyBody::Prefix => old.filter(alipay_notify::raw_sha256.is_not_null()).limit(batch).load(conn)?,
    };
    diesel::delete(alipay_notify::table.filter(alipay_notify::id.eq_any(ids))).execute(conn)
}

/// Gateway call records made before `before`, at most `batch`.
pub fn delete_gateway_calls(conn: &mut DbConn, before: NaiveDateTime, batch: i64) -> QueryResult<usize> {
    let ids: Vec<i64> = gateway_call::table
        .filter(gateway_call::created_at.lt(before))
        .select(gateway_call::id)
        .limit(batch)
        .load(conn)?;
    diesel::delete(gateway_call::table.filter(gateway_call::id.eq_any(ids))).execute(conn)
}

/// Sign-in failure counters whose last failure was before `before` and that lock nobody out now.
pub fn delete_admin_failures(
    conn: &mut DbConn,
    before: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        admin_login_failure::table.filter(admin_login_failure::last_failed_at.lt(before)).filter(
            admin_login_failure::locked_until.is_null().or(admin_login_failure::locked_until.lt(now)),
        ),
    )
    .execute(conn)
}
