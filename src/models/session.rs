use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use super::user::AppUser;
use crate::db::DbConn;
use crate::db::schema::{app_user, user_session};

impl AppUser {
    /// The user whose unexpired session has this token hash.
    pub fn find_by_session(conn: &mut DbConn, token_hash: &str) -> QueryResult<Option<AppUser>> {
        user_session::table
            .inner_join(app_user::table)
            .filter(user_session::token_hash.eq(token_hash))
            .filter(user_session::expires_at.gt(now()))
            .select(AppUser::as_select())
            .get_result(conn)
            .optional()
    }
}

pub fn insert(
    conn: &mut DbConn,
    token_hash: &str,
    user_id: i64,
    expires_at: NaiveDateTime,
) -> QueryResult<()> {
    diesel::insert_into(user_session::table)
        .values((
            user_session::token_hash.eq(token_hash),
            user_session::user_id.eq(user_id),
            user_session::created_at.eq(now()),
            user_session::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(|_| ())
}

pub fn delete(conn: &mut DbConn, token_hash: &str) -> QueryResult<usize> {
    diesel::delete(user_session::table.filter(user_session::token_hash.eq(token_hash))).execute(conn)
}

pub fn purge_expired(conn: &mut DbConn) -> QueryResult<usize> {
    diesel::delete(user_session::table.filter(user_session::expires_at.le(now()))).execute(conn)
}
