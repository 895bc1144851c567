//! The engine room: where the shop's blocking work runs, behind one surface. Controllers and
//! services hand it closures; it decides the thread and the connection:
//!
//! - [`Engine::run`]: database work on a pooled connection, on actix's blocking threads (as many
//!   as pooled connections, so work queues instead of parking threads on the pool). Reads, and
//!   writes off the hot paths.
//! - [`Engine::write`]: the hot paths' writes (orders, payments): on SQLite the next batch of the
//!   group-committing [`writer::Writer`], on PostgreSQL like `run`.
//! - [`Engine::then_write`]: a payment form signed on the [`signing::SigningThreads`], or a
//!   WeChat Pay order opened on a call-out thread, then its order written; for the checkout only.
//! - [`Engine::call_out`]: work that calls a gateway over HTTP, on the call-out threads.
//!
//! The rule for gateways: work never holds a pooled connection while a gateway answers; it takes
//! one for each database step. Why each mechanism exists and what it buys: docs/PERFORMANCE.md.

pub mod signing;
pub mod writer;

use std::sync::LazyLock;
use std::time::Duration;

use actix_web::web;

use crate::db::{DatabaseLocation, DbConn, DbError, DbPool};
use crate::error::AppError;
use signing::SigningThreads;
use writer::Writer;

/// Where the first step of [`Engine::then_write`] runs.
#[derive(Clone, Copy)]
pub(crate) enum Thread {
    /// The signing threads ([`signing::SigningThreads`]).
    Signing,
    /// The call-out threads ([`on_call_out_thread`]).
    CallOut,
}

pub struct Engine {
    pool: DbPool,
    /// SQLite only: the group-committing writer of the hot paths.
    writer: Option<Writer>,
    signing: SigningThreads,
}

/// The engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Database(#[from] DbError),
    #[error("cannot start the signing threads")]
    Signing(#[source] std::io::Error),
}

impl Engine {
    /// Starts the writer (SQLite) and one signing thread per core.
    pub fn start(location: &DatabaseLocation, pool: DbPool, cores: usize) -> Result<Engine, EngineError> {
        Ok(Engine {
            pool,
            writer: Writer::start(location)?,
            signing: SigningThreads::start(cores).map_err(EngineError::Signing)?,
        })
    }

    /// The pool, for the background thread, which runs its own work where it is.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    /// Runs database work on a pooled connection, on actix's blocking threads.
    pub async fn run<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        web::block(move || {
            let mut conn = pool.get()?;
            work(&mut conn)
        })
        .await?
    }

    /// Runs a hot path's write: on SQLite in the writer's next batch, on PostgreSQL like
    /// [`Engine::run`]. The work must not call out over the network: every write of the shop
    /// waits for it.
    pub async fn write<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
    {
        match &self.writer {
            // The writer drops the work when it cannot begin a transaction (the database is
            // locked by another process past the busy wait).
            Some(writer) => writer
                .run(work)
                .await
                .map_err(|_| AppError::Unavailable("the database writer dropped the work".into()))?,
            None => self.run(work).await,
        }
    }

    /// Runs `first` on `thread` (a signature on a signing thread, a call out on a call-out
    /// thread), then `write` with what it made; when `first` fails nothing is written. On
    /// PostgreSQL that thread writes too, on a pooled connection (two wake-ups fewer); on SQLite
    /// the write goes to the writer's next batch, as [`Engine::write`] (docs/PERFORMANCE.md,
    /// "Signing threads").
    pub(crate) async fn then_write<S, T, F>(
        &self,
        thread: Thread,
        first: impl FnOnce() -> Result<S, AppError> + Send + 'static,
        write: F,
    ) -> Result<T, AppError>
    where
        S: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut DbConn, S) -> Result<T, AppError> + Send + 'static,
    {
        if self.writer.is_some() {
            let made = self.on(thread, first).await??;
            return self.write(move |conn| write(conn, made)).await;
        }
        let pool = self.pool.clone();
        self.on(thread, move || {
            let made = first()?;
            let mut conn = pool.get()?;
            write(&mut conn, made)
        })
        .await?
    }

    async fn on<T: Send + 'static>(
        &self,
        thread: Thread,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AppError> {
        match thread {
            Thread::Signing => self.signing.run(work).await,
            Thread::CallOut => on_call_out_thread(work).await,
        }
    }

    /// Runs work that calls a gateway over HTTP on a call-out thread: it may wait as long as the
    /// gateway's timeout and must not occupy a thread that serves database work. It takes
    /// pooled connections itself, only while it needs them.
    pub async fn call_out<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&DbPool) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        on_call_out_thread(move || work(&pool)).await?
    }

    /// Runs `produce` on a thread of its own (named `name`) that hands what it makes to the
    /// returned receiver through a channel of `capacity` items: `blocking_send` waits while the
    /// channel is full, so the reader sets the pace, and fails once the receiver is dropped, when
    /// `produce` stops. It takes pooled connections itself, one step at a time.
    pub fn feed<T, F>(
        &self,
        capacity: usize,
        name: &str,
        produce: F,
    ) -> Result<tokio::sync::mpsc::Receiver<T>, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&DbPool, &tokio::sync::mpsc::Sender<T>) + Send + 'static,
    {
        let (send, receive) = tokio::sync::mpsc::channel(capacity);
        let pool = self.pool.clone();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || produce(&pool, &send))
            .map_err(|e| AppError::internal(format!("cannot start a thread: {e}")))?;
        Ok(receive)
    }
}

/// At most this many calls out run at once; more wait for a free thread.
const CALL_OUT_THREADS: usize = 256;

/// The threads that run calls out, kept for the next call (an idle one ends after a while), so
/// that a call, such as every WeChat Pay checkout's, does not start and end a thread. A runtime
/// of their own, apart from actix's blocking threads, so that calls waiting on a slow gateway
/// never hold up the database's work.
static CALL_OUT: LazyLock<std::io::Result<tokio::runtime::Runtime>> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .thread_name("paymall-call-out")
        .max_blocking_threads(CALL_OUT_THREADS)
        .thread_keep_alive(Duration::from_secs(30))
        .build()
});

/// Runs blocking work on a call-out thread and waits for it without blocking the async worker.
pub async fn on_call_out_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    let threads = CALL_OUT
        .as_ref()
        .map_err(|e| AppError::internal(format!("cannot start the call-out threads: {e}")))?;
    threads.spawn_blocking(work).await.map_err(|_| AppError::internal("the thread calling out panicked"))
}
