//! `/metrics`: Prometheus's text format, open without a token and behind it with one.

use paymall::config::Secret;

use crate::helpers::{Backend, GIFT, TestApp, both_backends};

fn metrics_are_prometheus_text_with_a_label_per_route(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-metrics");
    app.create_order(&mut shopper, GIFT);
    shopper.get(&format!("/products/{GIFT}"));
    shopper.get("/no/such/page");
    app.execute(
        "INSERT INTO outbox (kind, dedupe_key, payload, status, attempts, next_attempt_at, created_at, updated_at)
         VALUES ('refund', 'dead-1', '{}', 'DEAD', 10, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    );
    let reply = app.browser().get("/metrics");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let text = reply.body;
    for line in [
        "# TYPE paymall_http_requests_total counter",
        "# TYPE paymall_http_request_duration_seconds histogram",
        "paymall_http_requests_total{route=\"/products/{product_id}\",status_class=\"2xx\"} 1",
        "paymall_http_requests_total{route=\"/api/v1/alipay/create_pay_order\",status_class=\"2xx\"} 1",
        "paymall_http_requests_total{route=\"unmatched\",status_class=\"4xx\"} 1",
        "paymall_http_request_duration_seconds_bucket{route=\"/products/{product_id}\",status_class=\"2xx\",le=\"+Inf\"} 1",
        "paymall_orders{status=\"PAY_WAIT\"} 1",
        "paymall_outbox_entries{kind=\"refund\",status=\"DEAD\"} 1",
        "paymall_outbox_entries{kind=\"delivery\",status=\"PENDING\"} 0",
        "paymall_outbox_oldest_due_seconds ",
        "paymall_compensation_lag_seconds 0",
        "paymall_db_pool_connections_in_use ",
        "paymall_db_pool_connections_idle ",
        "# TYPE paymall_gateway_calls_total counter",
        "# TYPE paymall_alipay_notifications_total counter",
        &format!("paymall_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION")),
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
    assert!(!text.contains("route=\"/no/such/page\""), "raw paths are never labels");
    assert!(!text.contains("o-metrics"), "no shopper in the labels");
}

fn with_a_token_only_its_bearer_reads_the_metrics(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.metrics.token = Secret::new("scrape-s3cret"));
    let mut browser = app.browser();
    let none = browser.get("/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer realm=\"paymall metrics\""));
    assert!(!none.body.contains("paymall_"));
    assert_eq!(browser.get_with_bearer("/metrics", "scrape-s3cre").status, 401);
    assert_eq!(browser.get_with_bearer("/metrics", "scrape-s3cret-and-more").status, 401);
    let read = browser.get_with_bearer("/metrics", "scrape-s3cret");
    assert_eq!(read.status, 200);
    assert!(read.body.contains("paymall_build_info"), "{}", read.body);
}

/// Calls to a payment channel's gateway and the payments it confirmed are counted per channel.
fn gateway_calls_and_payments_are_counted_per_channel(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    let (mut shopper, paid) = app.paid_unnotified("o-metrics-channel", GIFT);
    let mut admin = app.admin();
    let csrf = admin.csrf(&format!("/admin/orders/{paid}"));
    assert_eq!(admin.post_form(&format!("/admin/orders/{paid}/sync"), &[("csrf", &csrf)]).status, 303);
    assert_eq!(app.order_status(&mut shopper, &paid), "PAY_SUCCESS");
    let text = app.browser().get("/metrics").body;
    for line in [
        "paymall_gateway_calls_total{channel=\"ALIPAY\",kind=\"alipay.trade.query\"} ",
        "paymall_payments_total{channel=\"ALIPAY\",verdict=\"done\"} ",
    ] {
        assert!(text.contains(line), "no {line:?} in\n{text}");
    }
}

both_backends!(
    metrics_are_prometheus_text_with_a_label_per_route,
    with_a_token_only_its_bearer_reads_the_metrics,
    gateway_calls_and_payments_are_counted_per_channel,
);
