//! QR login tickets, the states of logins inside WeChat, the shared WeChat access token, and the
//! dedupe of WeChat pushes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::{is_unique_violation, now};
use crate::db::schema::{login_ticket, oauth_state, wx_access_token, wx_event_seen};
use crate::db::{DbConn, KeepPreparedDsl};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = login_ticket)]
pub struct LoginTicket {
    pub id: i64,
    pub ticket: String,
    pub scene: String,
    pub browser_hash: String,
    pub openid: Option<String>,
    pub scanned_at: Option<NaiveDateTime>,
    pub consumed: bool,
    pub expires_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
}

impl LoginTicket {
    pub fn insert(
        conn: &mut DbConn,
        ticket: &str,
        scene: &str,
        browser_hash: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::insert_into(login_ticket::table)
            .values((
                login_ticket::ticket.eq(ticket),
                login_ticket::scene.eq(scene),
                login_ticket::browser_hash.eq(browser_hash),
                login_ticket::consumed.eq(false),
                login_ticket::expires_at.eq(expires_at),
                login_ticket::created_at.eq(now()),
            ))
            .execute(conn)
            .map(|_| ())
    }

    pub fn find(conn: &mut DbConn, ticket: &str) -> QueryResult<Option<LoginTicket>> {
        login_ticket::table
            .filter(login_ticket::ticket.eq(ticket))
            .select(LoginTicket::as_select())
            .get_result(conn)
            .optional()
    }

    /// The browser's newest unconsumed ticket still valid at `valid_at`.
    pub fn held_by(
        conn: &mut DbConn,
        browser_hash: &str,
        valid_at: NaiveDateTime,
    ) -> QueryResult<Option<LoginTicket>> {
        login_ticket::table
            .filter(login_ticket::browser_hash.eq(browser_hash))
            .filter(login_ticket::consumed.eq(false))
            .filter(login_ticket::expires_at.gt(valid_at))
            .order(login_ticket::expires_at.desc())
            .select(LoginTicket::as_select())
            .first(conn)
            .optional()
    }

    /// Records who scanned the scene, once, while the ticket is valid.
    pub fn record_scan(conn: &mut DbConn, scene: &str, openid: &str) -> QueryResult<bool> {
        let at = now();
        diesel::update(
            login_ticket::table
                .filter(login_ticket::scene.eq(scene))
                .filter(login_ticket::openid.is_null())
                .filter(login_ticket::expires_at.gt(at)),
        )
        .set((login_ticket::openid.eq(openid), login_ticket::scanned_at.eq(at)))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Uses the ticket up; only one caller ever wins.
    pub fn consume(conn: &mut DbConn, id: i64) -> QueryResult<bool> {
        diesel::update(login_ticket::table.find(id).filter(login_ticket::consumed.eq(false)))
            .set(login_ticket::consumed.eq(true))
            .keep_prepared()
            .execute(conn)
            .map(|n| n == 1)
    }

    pub fn purge_expired(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(login_ticket::table.filter(login_ticket::expires_at.lt(before))).execute(conn)
    }
}

/// The `state` of a login inside WeChat (网页授权), bound to the browser that started it.
pub struct OauthState;

impl OauthState {
    pub fn insert(
        conn: &mut DbConn,
        state: &str,
        browser_hash: &str,
        next: &str,
        expires_at: NaiveDateTime,
    ) -> QueryResult<()> {
        diesel::insert_into(oauth_state::table)
            .values((
                oauth_state::state.eq(state),
                oauth_state::browser_hash.eq(browser_hash),
                oauth_state::next.eq(next),
                oauth_state::expires_at.eq(expires_at),
            ))
            .execute(conn)
            .map(|_| ())
    }

    /// Uses the state up, only for the browser it is bound to and while it is valid at `at`:
    /// one conditional DELETE, so only one caller ever wins. Returns where to go next.
    pub fn consume(
        conn: &mut DbConn,
        state: &str,
        browser_hash: &str,
        at: NaiveDateTime,
    ) -> QueryResult<Option<String>> {
        diesel::delete(
            oauth_state::table
                .filter(oauth_state::state.eq(state))
                .filter(oauth_state::browser_hash.eq(browser_hash))
                .filter(oauth_state::expires_at.gt(at)),
        )
        .returning(oauth_state::next)
        .get_result(conn)
        .optional()
    }

    pub fn purge_expired(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<usize> {
        diesel::delete(oauth_state::table.filter(oauth_state::expires_at.lt(before))).execute(conn)
    }
}

/// The shared access token row (there is exactly one, id 1).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = wx_access_token)]
pub struct StoredToken {
    pub id: i64,
    pub token: String,
    pub expires_at: NaiveDateTime,
    pub lease_owner: Option<String>,
    pub lease_until: Option<NaiveDateTime>,
}

impl StoredToken {
    pub fn load(conn: &mut DbConn) -> QueryResult<StoredToken> {
        wx_access_token::table.find(1i64).select(StoredToken::as_select()).get_result(conn)
    }

    /// Becomes the refresher if nobody holds a live lease.
    pub fn lease(conn: &mut DbConn, owner: &str, until: NaiveDateTime) -> QueryResult<bool> {
        let at = now();
        diesel::update(
            wx_access_token::table
                .find(1i64)
                .filter(wx_access_token::lease_until.is_null().or(wx_access_token::lease_until.lt(at))),
        )
        .set((wx_access_token::lease_owner.eq(owner), wx_access_token::lease_until.eq(until)))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
    }

    /// Stores a fresh token (when given) and gives the lease back.
    pub fn store_and_release(
        conn: &mut DbConn,
        owner: &str,
        fresh: Option<(&str, NaiveDateTime)>,
    ) -> QueryResult<usize> {
        let target = wx_access_token::table.find(1i64).filter(wx_access_token::lease_owner.eq(owner));
        let release = (
            wx_access_token::lease_owner.eq(None::<String>),
            wx_access_token::lease_until.eq(None::<NaiveDateTime>),
        );
        match fresh {
            Some((token, expires_at)) => diesel::update(target)
                .set((release, wx_access_token::token.eq(token), wx_access_token::expires_at.eq(expires_at)))
                .keep_prepared()
                .execute(conn),
            None => diesel::update(target).set(release).keep_prepared().execute(conn),
        }
    }
}

/// Marks a push as seen; false when it was seen before (a WeChat retry).
pub fn first_sighting(conn: &mut DbConn, dedupe_key: &str) -> QueryResult<bool> {
    let inserted = conn.transaction(|c| {
        diesel::insert_into(wx_event_seen::table)
            .values((wx_event_seen::dedupe_key.eq(dedupe_key), wx_event_seen::created_at.eq(now())))
            .execute(c)
    });
    match inserted {
        Ok(_) => Ok(true),
        Err(e) if is_unique_violation(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub fn purge_seen(conn: &mut DbConn, before: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(wx_event_seen::table.filter(wx_event_seen::created_at.lt(before))).execute(conn)
}
