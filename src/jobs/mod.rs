//! The background thread: one per instance, it wakes every `compensation.interval_secs` and runs
//! each task once. Tasks claim their rows with a lease, so any number of instances can run it
//! over one database.

mod outbox;

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Settings;
use crate::db::{DbPool, PooledConn};
use crate::error::AppError;
use crate::gateways::alipay::AlipayClient;

/// One background task: returns how many rows it handled.
type Task = fn(&Worker) -> Result<usize, AppError>;

/// What the tasks share. Cheap to share between the thread and tests that tick it by hand.
pub struct Worker {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub alipay: Arc<AlipayClient>,
    /// Names this instance in lease columns.
    pub owner: String,
}

impl Worker {
    pub fn new(pool: DbPool, settings: Arc<Settings>, alipay: Arc<AlipayClient>) -> Worker {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "paymall".to_owned());
        let owner = format!("{host}-{}-{}", std::process::id(), crate::random::token_hex(4));
        Worker { pool, settings, alipay, owner }
    }

    fn conn(&self) -> Result<PooledConn, AppError> {
        Ok(self.pool.get()?)
    }

    /// Runs every task once. A failing task is logged and the others still run.
    pub fn tick(&self) {
        let tasks: [(&str, Task); 2] =
            [("outbox", outbox::drain), ("purge expired sessions", purge_expired_sessions)];
        for (name, task) in tasks {
            match task(self) {
                Ok(0) => {}
                Ok(n) => log::debug!("background: {name}: {n} handled"),
                Err(e) => log::warn!("background: {name} failed: {e}"),
            }
        }
    }
}

fn purge_expired_sessions(worker: &Worker) -> Result<usize, AppError> {
    Ok(crate::models::session::purge_expired(&mut *worker.conn()?)?)
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
