//! Retention of the audit tables (`retention.*` settings), enforced by the background thread:
//! verified notifications and gateway calls are payment evidence and kept long; notifications
//! that failed verification, WeChat dedupe keys and admin failure counters briefly. Every table
//! an attacker can add rows to without signing anything has a short retention, so junk cannot
//! fill the disk.

use chrono::Duration;

use crate::config::RetentionSettings;
use crate::db::DbConn;
use crate::error::AppResult;
use crate::models::now;
use crate::models::retention::{self, NotifyBody};

/// Rows deleted per statement; a table is revisited until a batch comes back short.
const BATCH: i64 = 1000;
/// At most this many batches per table per tick, so the other tasks of the tick run on time.
const MAX_BATCHES: usize = 20;

/// Deletes what is past its retention; returns how many rows went.
pub fn enforce(conn: &mut DbConn, settings: &RetentionSettings) -> AppResult<usize> {
    let at = now();
    let days = |n: u32| at - Duration::days(i64::from(n));
    let mut deleted = 0;
    deleted += in_batches(|| {
        retention::delete_notifications(
            conn,
            NotifyBody::Whole,
            days(settings.verified_notification_days),
            BATCH,
        )
    })?;
    deleted += in_batches(|| {
        retention::delete_notifications(
            conn,
            NotifyBody::Prefix,
            days(settings.unverified_notification_days),
            BATCH,
        )
    })?;
    deleted += in_batches(|| retention::delete_gateway_calls(conn, days(settings.gateway_call_days), BATCH))?;
    deleted += retention::delete_admin_failures(conn, days(settings.admin_failure_days), at)?;
    deleted += crate::models::login::purge_seen(conn, days(settings.weixin_event_days))?;
    Ok(deleted)
}

fn in_batches(mut batch: impl FnMut() -> diesel::QueryResult<usize>) -> AppResult<usize> {
    let mut deleted = 0;
    for _ in 0..MAX_BATCHES {
        let n = batch()?;
        deleted += n;
        if n < BATCH as usize {
            break;
        }
    }
    Ok(deleted)
}
