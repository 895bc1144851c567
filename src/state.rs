//! What every handler shares: the pool and the resolved settings.

use std::sync::Arc;

use actix_web::web;

use crate::config::Settings;
use crate::db::{DbConn, DbPool};
use crate::error::AppError;
use crate::gateways::alipay::AlipayClient;
use crate::gateways::weixin::WeixinClient;

pub struct AppState {
    pub pool: DbPool,
    pub settings: Arc<Settings>,
    pub alipay: Arc<AlipayClient>,
    pub weixin: Arc<WeixinClient>,
    /// Names this instance in lease columns (shared with its background thread).
    pub instance: String,
}

impl AppState {
    /// Runs blocking database work on actix's blocking pool with a pooled connection.
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
}
