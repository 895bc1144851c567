//! What every handler shares: the pool, the resolved settings, the gateways' clients.

use std::sync::Arc;

use actix_web::web;

use crate::config::Settings;
use crate::db::writer::Writer;
use crate::db::{DbConn, DbPool};
use crate::error::AppError;
use crate::gateways::alipay::AlipayClient;
use crate::gateways::weixin::WeixinClient;
use crate::rate_limit::RateLimits;
use crate::services::catalogue::ShopWindow;
use crate::services::order::OrderNumbers;
use crate::signing::SigningThreads;

pub struct AppState {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub alipay: Arc<AlipayClient>,
    pub weixin: Arc<WeixinClient>,
    /// Names this instance in lease columns (shared with its background thread).
    pub instance: String,
    /// SQLite only: the group-committing writer that request paths which write use.
    pub writer: Option<Writer>,
    /// The product list page's snapshot of the products on sale.
    pub shop_window: ShopWindow,
    /// The block of order numbers this instance hands out.
    pub order_numbers: OrderNumbers,
    /// Where orders' payment forms are signed.
    pub signing: SigningThreads,
    /// Per-client rate limits (shared with the background thread, which forgets idle clients).
    pub limits: Arc<RateLimits>,
}

impl AppState {
    /// Runs blocking database work on actix's blocking pool with a pooled connection. That pool
    /// has as many threads as the connection pool has connections (see `startup`), so work
    /// queues cheaply instead of parking threads that wait for a connection.
    pub async fn db<T, F>(&self, work: F) -> Result<T, AppError>
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

    /// Runs database work that writes on a hot path (orders, payments): on SQLite in the next
    /// batch of the group-committing [`Writer`], on PostgreSQL like [`AppState::db`]. The work
    /// must not call out over the network: every write of the shop waits for it.
    pub async fn db_write<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, AppError> + Send + 'static,
    {
        match &self.writer {
            Some(writer) => {
                // The writer drops the work when it cannot begin a transaction (the database is
                // locked by another process past the busy wait).
                writer
                    .run(work)
                    .await
                    .map_err(|_| AppError::Unavailable("the database writer dropped the work".into()))?
            }
            None => self.db(work).await,
        }
    }

    /// Runs `sign` on a signing thread, then `write` with what it signed. On PostgreSQL the
    /// signing thread runs it itself on a pooled connection (waiting out the round trip) instead
    /// of handing back to the async worker and on to a database thread: two wake-ups fewer, each
    /// of which may wait for a core under load. On SQLite the write goes to the writer's next
    /// batch from the async worker, as [`AppState::db_write`]: queued straight from the signing
    /// threads instead, an order cost 5% more CPU and the maximum rate fell by 5% (measured, the
    /// cause not traced).
    pub async fn sign_then_write<S, T, F>(
        &self,
        sign: impl FnOnce() -> S + Send + 'static,
        write: F,
    ) -> Result<T, AppError>
    where
        S: Send + 'static,
        T: Send + 'static,
        F: FnOnce(&mut DbConn, S) -> Result<T, AppError> + Send + 'static,
    {
        if self.writer.is_some() {
            let signed = self.signing.run(sign).await?;
            return self.db_write(move |conn| write(conn, signed)).await;
        }
        let pool = self.pool.clone();
        self.signing
            .run(move || {
                let signed = sign();
                let mut conn = pool.get()?;
                write(&mut conn, signed)
            })
            .await?
    }

    /// Runs work that calls a gateway over HTTP on a thread of its own: it may wait as long as
    /// the gateway's timeout and must not occupy one of the few threads that serve database
    /// work. It takes pooled connections itself, only while it needs them.
    pub async fn call_out<T, F>(&self, work: F) -> Result<T, AppError>
    where
        T: Send + 'static,
        F: FnOnce(&DbPool) -> Result<T, AppError> + Send + 'static,
    {
        let pool = self.pool.clone();
        on_own_thread(move || work(&pool)).await?
    }
}

/// Runs blocking work on a new thread and waits for it without blocking the async worker.
pub async fn on_own_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AppError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("paymall-call-out".into())
        .spawn(move || {
            let _ = done.send(work());
        })
        .map_err(|e| AppError::internal(format!("cannot start a thread: {e}")))?;
    result.await.map_err(|_| AppError::internal("the thread calling out panicked"))
}
