//! Prometheus metrics (the `prometheus` crate), rendered in its text format at `/metrics`:
//!
//! - per application: HTTP requests and their latency per route pattern and status class,
//!   counted by [`measure`], a middleware that runs on every request and keeps each worker's
//!   (route, class) handles so a request costs a lookup and two atomic updates;
//! - per process: calls to the platforms and their failures by channel and kind
//!   ([`gateway_call`]), payments recorded by channel and verdict ([`payment_recorded`]), the
//!   answers to Alipay's notifications ([`notification_answered`]), build info;
//! - at scrape time: the database's side ([`crate::services::operations::Snapshot`]) and the
//!   connection pool's state.
//!
//! docs/OPERATIONS.md says what each metric means.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::error::AppError;
use crate::models::order::Channel;
use crate::services::operations::Snapshot;
use crate::services::payment::Verdict;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The route label of a request that matched no route, or was refused before it was routed.
pub const UNMATCHED: &str = "unmatched";

const STATUS_CLASSES: [&str; 6] = ["other", "1xx", "2xx", "3xx", "4xx", "5xx"];

/// Latency buckets in seconds: half a millisecond to ten seconds.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// One application's HTTP metrics.
#[derive(Clone)]
pub struct HttpMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl HttpMetrics {
    pub fn new() -> HttpMetrics {
        let labels = ["route", "status_class"];
        let requests = IntCounterVec::new(
            Opts::new(
                "paymall_http_requests_total",
                "HTTP requests answered, by route pattern and status class",
            ),
            &labels,
        )
        .expect("a valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "paymall_http_request_duration_seconds",
                "Time from a request's arrival to its answer, by route pattern and status class",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &labels,
        )
        .expect("a valid metric");
        let registry = Registry::new();
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(latency.clone())).expect("registered once");
        HttpMetrics { registry, requests, latency }
    }

    /// A worker's cache of handles, for [`measure`].
    pub fn for_worker(&self) -> Rc<WorkerMetrics> {
        Rc::new(WorkerMetrics { metrics: self.clone(), routes: RefCell::default() })
    }
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics::new()
    }
}

type Handles = (IntCounter, Histogram);

/// One HTTP worker's handles per route pattern and status class, made on first use.
pub struct WorkerMetrics {
    metrics: HttpMetrics,
    routes: RefCell<HashMap<String, [Option<Handles>; 6]>>,
}

impl WorkerMetrics {
    fn observe(&self, route: Option<String>, status: u16, seconds: f64) {
        let class = usize::from(status / 100).min(5);
        let mut routes = self.routes.borrow_mut();
        let route = route.as_deref().unwrap_or(UNMATCHED);
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), Default::default());
        }
        let slot = &mut routes.get_mut(route).expect("inserted")[class];
        let (count, latency) = slot.get_or_insert_with(|| {
            let labels = [route, STATUS_CLASSES[class]];
            (
                self.metrics.requests.with_label_values(&labels),
                self.metrics.latency.with_label_values(&labels),
            )
        });
        count.inc();
        latency.observe(seconds);
    }
}

/// Counts the request and its latency under its route pattern (`/orders/{order_id}`, never the
/// raw path) and status class. A request refused before routing (the time limits) counts as
/// [`UNMATCHED`].
pub async fn measure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    metrics: Rc<WorkerMetrics>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let answered = next.call(req).await;
    let seconds = started.elapsed().as_secs_f64();
    match &answered {
        Ok(response) => {
            metrics.observe(response.request().match_pattern(), response.status().as_u16(), seconds)
        }
        Err(e) => metrics.observe(None, e.as_response_error().status_code().as_u16(), seconds),
    }
    answered
}

/// The process's own counters.
struct ProcessMetrics {
    registry: Registry,
    gateway_calls: IntCounterVec,
    gateway_failures: IntCounterVec,
    /// By channel and verdict, as handles: counting a payment is one atomic update.
    payments: [[IntCounter; 3]; 2],
    notify_success: IntCounter,
    notify_fail: IntCounter,
}

static PROCESS: LazyLock<ProcessMetrics> = LazyLock::new(|| {
    let registry = Registry::new();
    let counter = |name: &str, help: &str, labels: &[&str]| {
        let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
        registry.register(Box::new(counter.clone())).expect("registered once");
        counter
    };
    let gateway_calls = counter(
        "paymall_gateway_calls_total",
        "Calls to Alipay and WeChat, by payment channel (empty: not a payment channel's) and kind",
        &["channel", "kind"],
    );
    let gateway_failures = counter(
        "paymall_gateway_failures_total",
        "Calls to Alipay and WeChat that failed (unreachable, a bad answer, an error code), by payment channel and kind",
        &["channel", "kind"],
    );
    let payments = counter(
        "paymall_payments_total",
        "Payments the channels confirmed (notified or queried), by channel and what came of them",
        &["channel", "verdict"],
    );
    let payments = [Channel::Alipay, Channel::WechatPay].map(|channel| {
        [Verdict::Done, Verdict::Held, Verdict::Refused]
            .map(|verdict| payments.with_label_values(&[channel.as_str(), verdict.as_str()]))
    });
    let notifications = counter(
        "paymall_alipay_notifications_total",
        "Alipay's payment notifications, by the answer they got (fail: Alipay resends)",
        &["answer"],
    );
    let build =
        IntGaugeVec::new(Opts::new("paymall_build_info", "The running build; always 1"), &["version"])
            .expect("a valid metric");
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build)).expect("registered once");
    ProcessMetrics {
        notify_success: notifications.with_label_values(&["success"]),
        notify_fail: notifications.with_label_values(&["fail"]),
        registry,
        gateway_calls,
        gateway_failures,
        payments,
    }
});

/// Counts a call to a platform (`alipay.trade.query`, `weixin.template.send`, ...), under the
/// payment channel it is a call of (`None`: WeChat's Official Account), and whether it failed.
pub fn gateway_call(channel: Option<Channel>, kind: &str, failed: bool) {
    let labels = [channel.map_or("", Channel::as_str), kind];
    PROCESS.gateway_calls.with_label_values(&labels).inc();
    if failed {
        PROCESS.gateway_failures.with_label_values(&labels).inc();
    }
}

/// Counts a payment a channel confirmed, by what recording it came to; counted as recorded, so a
/// write undone after it was recorded counts too.
pub fn payment_recorded(channel: Channel, verdict: Verdict) {
    PROCESS.payments[channel as usize][verdict as usize].inc();
}

/// Counts the answer a notification got.
pub fn notification_answered(success: bool) {
    if success { PROCESS.notify_success.inc() } else { PROCESS.notify_fail.inc() }
}

/// The connection pool at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
}

/// Everything in the text format: the application's HTTP metrics, the process's counters, and
/// the database's side and the pool as of now.
pub fn render(http: &HttpMetrics, snapshot: &Snapshot, pool: PoolState) -> Result<String, AppError> {
    let scrape = Registry::new();
    let gauge_vec = |name: &str, help: &str, labels: &[&str]| -> Result<IntGaugeVec, AppError> {
        let gauge = IntGaugeVec::new(Opts::new(name, help), labels).map_err(AppError::internal)?;
        scrape.register(Box::new(gauge.clone())).map_err(AppError::internal)?;
        Ok(gauge)
    };
    let gauge = |name: &str, help: &str, value: i64| -> Result<(), AppError> {
        let gauge = IntGauge::new(name, help).map_err(AppError::internal)?;
        gauge.set(value);
        scrape.register(Box::new(gauge)).map_err(AppError::internal)
    };
    let orders = gauge_vec("paymall_orders", "Orders by status", &["status"])?;
    for (status, n) in &snapshot.orders_by_status {
        orders.with_label_values(&[status]).set(*n);
    }
    let outbox =
        gauge_vec("paymall_outbox_entries", "Outbox entries PENDING or DEAD, by kind", &["kind", "status"])?;
    for kind in crate::models::outbox::OutboxKind::ALL {
        for status in ["PENDING", "DEAD"] {
            outbox.with_label_values(&[kind.as_str(), status]).set(0);
        }
    }
    for (kind, status, n) in &snapshot.outbox_open {
        outbox.with_label_values(&[kind, status]).set(*n);
    }
    gauge(
        "paymall_outbox_oldest_due_seconds",
        "Seconds since the longest-waiting due outbox entry became due (0: none due)",
        snapshot.oldest_due_outbox_secs,
    )?;
    gauge(
        "paymall_compensation_lag_seconds",
        "Seconds since the oldest PAY_WAIT order's next query at Alipay was due (0: none overdue)",
        snapshot.compensation_lag_secs,
    )?;
    let in_use = i64::from(pool.connections.saturating_sub(pool.idle));
    gauge("paymall_db_pool_connections_in_use", "Pooled database connections handed out", in_use)?;
    gauge(
        "paymall_db_pool_connections_idle",
        "Pooled database connections open and idle",
        i64::from(pool.idle),
    )?;
    let mut families = http.registry.gather();
    families.extend(PROCESS.registry.gather());
    families.extend(scrape.gather());
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = Vec::new();
    TextEncoder::new().encode(&families, &mut text).map_err(AppError::internal)?;
    String::from_utf8(text).map_err(AppError::internal)
}
