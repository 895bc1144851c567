//! The background thread: one per instance, it wakes every `compensation.interval_secs` and runs
//! each task once, and in between drains the outbox whenever a request [`Wake`]s it (a payment
//! committed with its delivery enqueued). Tasks claim their rows with a lease, so any number of
//! instances can run it over one database; an instance delivers what another enqueued on its
//! next tick.

mod compensation;
mod outbox;

pub use outbox::MAX_ATTEMPTS as MAX_OUTBOX_ATTEMPTS;

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::Settings;
use crate::db::{DbPool, PooledConn};
use crate::error::AppError;
use crate::gateways::Gateways;
use crate::gateways::weixin::WeixinClient;
use crate::rate_limit::RateLimits;

/// One background task: returns how many rows it handled.
type Task = fn(&Worker) -> Result<usize, AppError>;

/// What the tasks share. Cheap to share between the thread and tests that tick it by hand.
pub struct Worker {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub gateways: Gateways,
    pub weixin: Arc<WeixinClient>,
    /// Names this instance in lease columns.
    pub owner: String,
    /// The request paths' rate limits, whose idle clients the purge forgets.
    pub limits: Arc<RateLimits>,
    /// Wakes this instance's background thread to drain the outbox now.
    pub wake: Wake,
}

impl Worker {
    pub fn new(
        pool: DbPool,
        settings: Arc<Settings>,
        gateways: Gateways,
        weixin: Arc<WeixinClient>,
        limits: Arc<RateLimits>,
    ) -> Worker {
        let wake = Wake { ignored: !settings.compensation.drain_on_payment, ..Wake::default() };
        Worker { pool, settings, gateways, weixin, owner: instance_id(), limits, wake }
    }

    fn conn(&self) -> Result<PooledConn, AppError> {
        Ok(self.pool.get()?)
    }

    /// Runs every task once. A failing task is logged and the others still run.
    pub fn tick(&self) {
        let tasks: [(&str, Task); 9] = [
            ("query dropped notifies", compensation::query_dropped),
            ("close unpaid orders", compensation::close_expired),
            ("expire group-buy teams", compensation::expire_teams),
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

    /// Drains the outbox only: what a [`Wake`] asks for between ticks.
    pub fn deliver(&self) {
        match outbox::drain(self) {
            Ok(0) => {}
            Ok(n) => log::debug!("background: outbox (woken): {n} handled"),
            Err(e) => log::warn!("background: outbox (woken) failed: {e}"),
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

/// Wakes the background thread to drain the outbox before its next tick. Cheap to clone and to
/// call (a lock and, when the thread sleeps, one futex wake); wakes that arrive while the thread
/// is busy count as one, so a burst of payments costs one drain per pass, not one per payment.
#[derive(Clone, Default)]
pub struct Wake {
    state: Arc<WakeState>,
    /// `compensation.drain_on_payment = false`: wakes are ignored, the tick alone drains.
    ignored: bool,
}

#[derive(Default)]
struct WakeState {
    flags: Mutex<WakeFlags>,
    changed: Condvar,
}

#[derive(Default)]
struct WakeFlags {
    woken: bool,
    stopped: bool,
}

/// What ended a wait of the background thread.
#[derive(Debug, PartialEq, Eq)]
enum Signal {
    Woken,
    Tick,
    Stop,
}

impl Wake {
    /// Asks for the outbox to be drained now. Call it after the commit that enqueued the work.
    pub fn wake(&self) {
        if self.ignored {
            return;
        }
        let mut flags = self.flags();
        if !flags.woken {
            flags.woken = true;
            self.state.changed.notify_one();
        }
    }

    fn stop(&self) {
        self.flags().stopped = true;
        self.state.changed.notify_all();
    }

    fn flags(&self) -> MutexGuard<'_, WakeFlags> {
        self.state.flags.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until a wake, a stop or `deadline`; a wake is used up by the wait that sees it.
    fn wait_until(&self, deadline: Instant) -> Signal {
        let mut flags = self.flags();
        loop {
            if flags.stopped {
                return Signal::Stop;
            }
            if flags.woken {
                flags.woken = false;
                return Signal::Woken;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
                return Signal::Tick;
            };
            flags = self.state.changed.wait_timeout(flags, left).unwrap_or_else(PoisonError::into_inner).0;
        }
    }
}

/// The running thread; dropping it (or [`Background::stop`]) stops it after its current tick.
pub struct Background {
    wake: Wake,
    thread: Option<JoinHandle<()>>,
}

impl Background {
    /// Ticks at once and then every `interval`; drains the outbox whenever `worker.wake` is
    /// woken in between.
    pub fn start(worker: Arc<Worker>, interval: Duration) -> std::io::Result<Background> {
        let wake = worker.wake.clone();
        let thread = std::thread::Builder::new().name("paymall-background".into()).spawn(move || {
            log::info!("background thread started (owner {}, every {interval:?})", worker.owner);
            worker.tick();
            let mut next_tick = Instant::now() + interval;
            loop {
                match worker.wake.wait_until(next_tick) {
                    Signal::Stop => break,
                    Signal::Woken => worker.deliver(),
                    Signal::Tick => {
                        worker.tick();
                        next_tick = Instant::now() + interval;
                    }
                }
            }
            log::info!("background thread stopped");
        })?;
        Ok(Background { wake, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.wake.stop();
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Signal, Wake};

    #[test]
    fn wakes_coalesce_a_stop_wins_and_the_deadline_ticks() {
        let wake = Wake::default();
        let soon = || Instant::now() + Duration::from_millis(20);
        assert_eq!(wake.wait_until(soon()), Signal::Tick);
        wake.wake();
        wake.wake();
        assert_eq!(wake.wait_until(soon()), Signal::Woken);
        assert_eq!(wake.wait_until(soon()), Signal::Tick, "two wakes before a wait are one");
        let other = wake.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            other.wake();
        });
        assert_eq!(wake.wait_until(Instant::now() + Duration::from_secs(10)), Signal::Woken);
        waker.join().unwrap();
        wake.wake();
        wake.stop();
        assert_eq!(wake.wait_until(soon()), Signal::Stop);
    }
}
