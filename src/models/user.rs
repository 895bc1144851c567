use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{is_unique_violation, now};
use crate::db::schema::app_user;
use crate::db::{DbConn, KeepPreparedDsl};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = app_user)]
pub struct AppUser {
    pub user_id: i64,
    pub openid: String,
    pub created_at: NaiveDateTime,
    pub last_login_at: NaiveDateTime,
}

impl AppUser {
    pub fn find(conn: &mut DbConn, user_id: i64) -> QueryResult<Option<AppUser>> {
        app_user::table.find(user_id).select(AppUser::as_select()).get_result(conn).optional()
    }

    pub fn find_by_openid(conn: &mut DbConn, openid: &str) -> QueryResult<Option<AppUser>> {
        app_user::table
            .filter(app_user::openid.eq(openid))
            .select(AppUser::as_select())
            .get_result(conn)
            .optional()
    }

    /// The user of this openid, created on first login; `last_login_at` is updated either way.
    pub fn record_login(conn: &mut DbConn, openid: &str) -> QueryResult<AppUser> {
        let at = now();
        let inserted = conn.transaction(|c| {
            diesel::insert_into(app_user::table)
                .values((
                    app_user::openid.eq(openid),
                    app_user::created_at.eq(at),
                    app_user::last_login_at.eq(at),
                ))
                .execute(c)
        });
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                diesel::update(app_user::table.filter(app_user::openid.eq(openid)))
                    .set(app_user::last_login_at.eq(at))
                    .keep_prepared()
                    .execute(conn)?;
            }
            Err(e) => return Err(e),
        }
        AppUser::find_by_openid(conn, openid)?.ok_or(diesel::result::Error::NotFound)
    }
}
