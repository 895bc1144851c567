//! Admin sessions and the failed-login counters that slow guessing down.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{is_unique_violation, now};
use crate::db::schema::{admin_login_failure, admin_session};
use crate::db::{DbConn, KeepPreparedDsl};

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

/// Counts a failure for the key; returns the new count. `lock_after` failures lock it until
/// `lock_until`.
pub fn record_failure(
    conn: &mut DbConn,
    key: &str,
    lock_after: i32,
    lock_until: NaiveDateTime,
) -> QueryResult<i32> {
    let at = now();
    let bump = |c: &mut DbConn| {
        diesel::update(admin_login_failure::table.filter(admin_login_failure::throttle_key.eq(key)))
            .set((
                admin_login_failure::failures.eq(admin_login_failure::failures + 1),
                admin_login_failure::last_failed_at.eq(at),
            ))
            .keep_prepared()
            .execute(c)
    };
    if bump(conn)? == 0 {
        let inserted = conn.transaction(|c| {
            diesel::insert_into(admin_login_failure::table)
                .values((
                    admin_login_failure::throttle_key.eq(key),
                    admin_login_failure::failures.eq(1),
                    admin_login_failure::last_failed_at.eq(at),
                ))
                .execute(c)
        });
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                bump(conn)?;
            }
            Err(e) => return Err(e),
        }
    }
    let failures: i32 = admin_login_failure::table
        .filter(admin_login_failure::throttle_key.eq(key))
        .select(admin_login_failure::failures)
        .get_result(conn)?;
    if failures >= lock_after {
        diesel::update(admin_login_failure::table.filter(admin_login_failure::throttle_key.eq(key)))
            .set((admin_login_failure::locked_until.eq(lock_until), admin_login_failure::failures.eq(0)))
            .keep_prepared()
            .execute(conn)?;
    }
    Ok(failures)
}

pub fn clear_failures(conn: &mut DbConn, key: &str) -> QueryResult<usize> {
    diesel::delete(admin_login_failure::table.filter(admin_login_failure::throttle_key.eq(key))).execute(conn)
}
