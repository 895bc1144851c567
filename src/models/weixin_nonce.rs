//! The nonces of WeChat's signed portal requests, in the database so that every instance sees
//! every nonce: the replay guard of the portal.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::schema::weixin_push_nonce;
use crate::db::{DbConn, InsertOrSkip};

/// Remembers `nonce` with the request's timestamp until `expires_at`, in one insert; false when
/// that pair is remembered already (a replay).
pub fn remember(
    conn: &mut DbConn,
    nonce: &str,
    timestamp_secs: i64,
    expires_at: NaiveDateTime,
) -> QueryResult<bool> {
    InsertOrSkip(diesel::insert_into(weixin_push_nonce::table).values((
        weixin_push_nonce::nonce.eq(nonce),
        weixin_push_nonce::timestamp_secs.eq(timestamp_secs),
        weixin_push_nonce::expires_at.eq(expires_at),
    )))
    .execute(conn)
    .map(|n| n == 1)
}

/// Forgets the nonces that expired before `before`.
pub fn purge_expired(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(weixin_push_nonce::table.filter(weixin_push_nonce::expires_at.lt(before))).execute(conn)
}
