//! The background thread: one per instance, it wakes every `compensation.interval_secs` and runs
//! each task once. Tasks claim their rows with a lease, so any number of instances can run it
//! over one database.

mod compensation;
mod outbox;

pub use outbox::MAX_ATTEMPTS as MAX_OUTBOX_ATTEMPTS;

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Settings;
use crate::db::{DbPool, PooledConn};
use crate::error::AppError;
use crate::gateways::alipay::AlipayClient;
use crate::gateways::weixin::WeixinClient;
use crate::rate_limit::RateLimits;

/// One background task: returns how many rows it handled.
type Task = fn(&Worker) -> Result<usize, AppError>;

/// What the tasks share. Cheap to share between the thread and tests that tick it by hand.
pub struct Worker {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub alipay: Arc<AlipayClient>,
    pub weixin: Arc<WeixinClient>,
    /// Names this instance in lease columns.
    pub owner: String,
    /// The request paths' rate limits, whose idle clients the purge forgets.
    pub limits: Arc<RateLimits>,
}

impl Worker {
    pub fn new(
        pool: DbPool,
        settings: Arc<Settings>,
        alipay: Arc<AlipayClient>,
        weixin: Arc<WeixinClient>,
        limits: Arc<RateLimits>,
    ) -> Worker {
        Worker { pool, settings, alipay, weixin, owner: instance_id(), limits }
    }

    fn conn(&self) -> Result<PooledConn, AppError> {
        Ok(self.pool.get()?)
    }

    /// Runs every task once. A failing task is logged and the others still run.
    pub fn tick(&self) {
        let tasks: [(&str, Task); 8] = [
            ("query dropped notifies", compensation::query_dropped),
            ("close unpaid orders", compensation::close_expired),
            ("deliver stranded payments", compensation::deliver_stranded),
            ("refund orphan payments", refund_orphans),
            ("outbox", outbox::drain),
            ("purge expired", purge_expired),
            ("retention", enforce_retention),
            ("fold order totals", fold_order_totals),
        ];
        for (name, task) in tasks {
            match task(self) {
                Ok(0) => {}
                Ok(n) => log::debug!("background: {name}: {n} handled"),
                Err(e) => log::warn!("background: {name} failed: {e}"),
            }
        }
    }
}

/// Expired sessions, login tickets, old push dedupe rows and portal nonces; coupons past their
/// validity; idle rate-limit state.
fn purge_expired(worker: &Worker) -> Result<usize, AppError> {
    worker.limits.forget_idle();
    let mut conn = worker.conn()?;
    Ok(crate::models::session::purge_expired(&mut conn)?
        + crate::services::login::purge_expired(&mut conn)?
        + crate::services::weixin_portal::purge_nonces(&mut conn)?
        + crate::services::coupon::expire_due(&mut conn)?)
}

/// Orphan payments of unknown orders older than `alipay.orphan_refund_after_hours`.
fn refund_orphans(worker: &Worker) -> Result<usize, AppError> {
    let after = chrono::Duration::hours(i64::from(worker.settings.alipay.orphan_refund_after_hours));
    crate::services::orphan::refund_due(&mut *worker.conn()?, after)
}

/// The timeline's new events into the admin's totals per status (`models::order_total`).
fn fold_order_totals(worker: &Worker) -> Result<usize, AppError> {
    crate::services::admin::fold_totals(&mut *worker.conn()?)
}

/// Audit rows past their retention.
fn enforce_retention(worker: &Worker) -> Result<usize, AppError> {
    crate::services::retention::enforce(&mut *worker.conn()?, &worker.settings.retention)
}

/// A name for this process in lease columns: host, pid and a random part.
pub fn instance_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "paymall".to_owned());
    format!("{host}-{}-{}", std::process::id(), crate::random::token_hex(4))
}

/// The running thread; dropping it (or [`Background::stop`]) stops it after its current tick.
pub struct Background {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    pub fn start(worker: Arc<Worker>, interval: Duration) -> std::io::Result<Background> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new().name("paymall-background".into()).spawn(move || {
            log::info!("background thread started (owner {}, every {interval:?})", worker.owner);
            loop {
                worker.tick();
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => continue,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            log::info!("background thread stopped");
        })?;
        Ok(Background { stop: Some(stop), thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.shutdown();
    }
}
