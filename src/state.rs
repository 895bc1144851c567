//! What every handler shares: the engine, the resolved settings, the gateways' clients.

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Engine;
use crate::gateways::Gateways;
use crate::gateways::weixin::WeixinClient;
use crate::jobs::Wake;
use crate::metrics::HttpMetrics;
use crate::rate_limit::RateLimits;
use crate::services::catalogue::ShopWindow;
use crate::services::order::OrderNumbers;
use crate::services::pay_page::PayLinks;

pub struct AppState {
    /// Where blocking work runs: database work, signatures, calls to the platforms.
    pub engine: Engine,
    pub settings: Arc<Settings>,
    /// The payment channels' gateways (Alipay's client also signs the checkout's forms).
    pub gateways: Gateways,
    pub weixin: Arc<WeixinClient>,
    /// Names this instance in lease columns (shared with its background thread).
    pub instance: String,
    /// The product list page's snapshot of the products on sale.
    pub shop_window: ShopWindow,
    /// The block of order numbers this instance hands out.
    pub order_numbers: OrderNumbers,
    /// Per-client rate limits (shared with the background thread, which forgets idle clients).
    pub limits: Arc<RateLimits>,
    /// Wakes this instance's background thread to drain the outbox after a commit that
    /// enqueued work.
    pub wake: Wake,
    /// Signs the guide's pay links (`services::pay_page::PayLinks`).
    pub pay_links: PayLinks,
    /// The HTTP metrics every request updates (`metrics::measure`) and `/metrics` renders.
    pub http_metrics: HttpMetrics,
}
