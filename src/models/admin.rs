//! Admin sessions and the failed-login counters that slow guessing down.

use chrono::NaiveDateTime;
use diesel::dsl::case_when;
use diesel::prelude::*;
use diesel::sql_types::{Integer, Nullable, Timestamp};

use super::now;
use crate::db::schema::{admin_login_failure, admin_session};
use crate::db::{DbConn, load_natively};

pub fn insert_session(
    conn: &mut DbConn,
    token_hash: &str,
    username: &str,
    expires_at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(admin_session::table)
        .values((
            admin_session::token_hash.eq(token_hash),
            admin_session::username.eq(username),
            admin_session::created_at.eq(now()),
            admin_session::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The admin of an unexpired session.
pub fn session_user(conn: &mut DbConn, token_hash: &str) -> QueryResult<Option<String>> {
    admin_session::table
        .filter(admin_session::token_hash.eq(token_hash))
        .filter(admin_session::expires_at.gt(now()))
        .select(admin_session::username)
        .get_result(conn)
        .optional()
}

pub fn delete_session(conn: &mut DbConn, token_hash: &str) -> QueryResult<usize> {
    diesel::delete(admin_session::table.filter(admin_session::token_hash.eq(token_hash))).execute(conn)
}

/// When the key is locked out, until when.
pub fn locked_until(conn: &mut DbConn, key: &str) -> QueryResult<Option<NaiveDateTime>> {
    let until: Option<Option<NaiveDateTime>> = admin_login_failure::table
        .filter(admin_login_failure::throttle_key.eq(key))
        .select(admin_login_failure::locked_until)
        .get_result(conn)
        .optional()?;
    Ok(until.flatten().filter(|t| *t > now()))
}

/// Counts a failure for the key in one statement (concurrent failures are all counted) and
/// returns the count of its streak: a failure after `streak_since` (the previous failure being
/// older) starts a new streak. The failure that brings the streak to `lock_after` (2 or more) or
/// beyond locks the key until `lock_until`. A row whose streak and lock are over means the same
/// as no row.
pub fn record_failure(
    conn: &mut DbConn,
    key: &str,
    streak_since: NaiveDateTime,
    lock_after: i32,
    lock_until: NaiveDateTime,
) -> QueryResult<i32> {
    use admin_login_failure::{failures, last_failed_at, locked_until, throttle_key};
    let streak = case_when(last_failed_at.lt(streak_since), 1.into_sql::<Integer>()).otherwise(failures + 1);
    let lock = case_when(streak.ge(lock_after), lock_until.into_sql::<Nullable<Timestamp>>())
        .otherwise(locked_until);
    let at = now();
    let counted = diesel::insert_into(admin_login_failure::table)
        .values((throttle_key.eq(key), failures.eq(1), last_failed_at.eq(at)))
        .on_conflict(throttle_key)
        .do_update()
        .set((failures.eq(streak), locked_until.eq(lock), last_failed_at.eq(at)))
        .returning(failures);
    load_natively(conn, counted)?.into_iter().next().ok_or(diesel::result::Error::NotFound)
}

pub fn clear_failures(conn: &mut DbConn, key: &str) -> QueryResult<usize> {
    diesel::delete(admin_login_failure::table.filter(admin_login_failure::throttle_key.eq(key))).execute(conn)
}
