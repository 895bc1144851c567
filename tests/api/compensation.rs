use crate::helpers::{
    Backend, GIFT, MUG, PaymentPath, TestApp, both_backends, every_payment_path, order_id_of,
};

fn make_due_now(app: &TestApp) {
    app.execute("UPDATE pay_order SET next_query_at = order_time");
}

fn a_dropped_notify_is_recovered_by_query(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_with(backend, |s| {
        path.apply(s);
        s.compensation.query_after_secs = 0;
    });
    app.faults(serde_json::json!({ "drop_notify": true }));
    let mut shopper = app.login("o-dropped");
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "no notification came");
    make_due_now(&app);
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    let cause = app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}' AND cause = 'query'"
    ));
    assert_eq!(cause, 1);
}

/// The background thread never needs two connections at once, so a pool of one serves the shop
/// and it (it used to wait out the pool timeout, twice per tick).
fn a_pool_of_one_connection_is_enough(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.database.pool_size = 1;
        s.compensation.query_after_secs = 0;
    });
    app.faults(serde_json::json!({ "drop_notify": true }));
    let mut shopper = app.login("o-one-connection");
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    make_due_now(&app);
    let started = std::time::Instant::now();
    app.worker.tick();
    app.worker.tick();
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "ticks took {:?}", started.elapsed());
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
}

fn an_unpaid_order_closes_at_alipay_and_locally(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.compensation.close_after_minutes = 0;
        s.compensation.query_after_secs = 3600;
    });
    let (gift_stock, mug_stock) = (app.stock(GIFT), app.stock(MUG));
    let mut shopper = app.login("o-never-pays");
    let opened_form = app.create_order(&mut shopper, GIFT);
    app.open_cashier(&mut shopper, &opened_form);
    let opened = order_id_of(&opened_form);
    let never_opened = order_id_of(&app.create_order(&mut shopper, MUG));
    assert_eq!(app.stock(GIFT), gift_stock - 1);
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &opened), "CLOSE");
    assert_eq!(app.order_status(&mut shopper, &never_opened), "CLOSE");
    assert_eq!((app.stock(GIFT), app.stock(MUG)), (gift_stock, mug_stock), "stock is back");
    assert_eq!(app.ledger()[&opened]["status"], "TRADE_CLOSED");
    // The buyer can no longer pay the closed trade at the cashier.
    let refused = shopper.post_form(&format!("/sandbox/alipay/cashier/{opened}/pay"), &[]);
    assert_eq!(refused.status, 409);
}

fn a_close_racing_a_payment_ends_paid(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_with(backend, |s| {
        path.apply(s);
        s.compensation.close_after_minutes = 0;
        s.compensation.query_after_secs = 3600;
    });
    app.faults(serde_json::json!({ "drop_notify": true }));
    let mut shopper = app.login("o-just-in-time");
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}' AND to_status = 'CLOSE'"
        )),
        0
    );
}

fn gateway_errors_leave_orders_as_they_were(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.query_after_secs = 0);
    app.faults(serde_json::json!({ "drop_notify": true, "query_system_error": true }));
    let mut shopper = app.login("o-system-error");
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    make_due_now(&app);
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT");
    let attempts = app.scalar(&format!(
        "SELECT CAST(query_attempts AS BIGINT) AS n FROM pay_order WHERE order_id = '{order_id}'"
    ));
    assert_eq!(attempts, 1, "tried once, then backed off");
    app.worker.tick();
    assert_eq!(
        app.scalar(&format!(
            "SELECT CAST(query_attempts AS BIGINT) AS n FROM pay_order WHERE order_id = '{order_id}'"
        )),
        1,
        "not hammered"
    );
    app.faults(serde_json::json!({ "drop_notify": true }));
    make_due_now(&app);
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE", "queried, paid, delivered");

    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let offline = TestApp::spawn_with(backend, |s| {
        s.alipay.gateway_url = format!("http://{dead}/gateway.do");
        s.compensation.close_after_minutes = 0;
        s.compensation.query_after_secs = 0;
    });
    let before = offline.stock(GIFT);
    let mut buyer = offline.login("o-offline");
    let stranded = order_id_of(&offline.create_order(&mut buyer, GIFT));
    offline.worker.tick();
    assert_eq!(
        offline.order_status(&mut buyer, &stranded),
        "PAY_WAIT",
        "not closed while Alipay cannot confirm"
    );
    assert_eq!(offline.stock(GIFT), before - 1);
}

fn two_instances_settle_every_order_once(backend: Backend) {
    let a = TestApp::spawn_with(backend, |s| {
        s.compensation.query_after_secs = 0;
        s.compensation.close_after_minutes = 0;
        s.compensation.interval_secs = 3600;
    });
    let b = a.spawn_sibling();
    a.execute("UPDATE product SET stock = 100000");
    a.faults(serde_json::json!({ "drop_notify": true }));
    const ORDERS: usize = 210;
    let mut order_ids = Vec::new();
    for i in 0..ORDERS {
        let instance = if i % 2 == 0 { &a } else { &b };
        let mut shopper = instance.login(&format!("o-cluster-{i}"));
        let form = instance.create_order(&mut shopper, GIFT);
        match i % 3 {
            0 => {
                instance.pay_at_cashier(&mut shopper, &form);
            }
            1 => instance.open_cashier(&mut shopper, &form),
            _ => {}
        }
        order_ids.push(order_id_of(&form));
    }
    // Both background tasks run side by side until every order is settled (each round handles
    // a batch per instance; the leases keep them off each other's orders).
    for _ in 0..20 {
        std::thread::scope(|s| {
            s.spawn(|| a.worker.tick());
            s.spawn(|| b.worker.tick());
        });
        let unsettled = a.scalar(
            "SELECT COUNT(*) AS n FROM pay_order WHERE status IN ('CREATE', 'PAY_WAIT', 'PAY_SUCCESS')",
        );
        if unsettled == 0 {
            break;
        }
    }
    let truth = a.ledger();
    let mut paid = 0;
    for order_id in &order_ids {
        let status = a.scalar(&format!(
            "SELECT CAST(CASE status WHEN 'DEAL_DONE' THEN 1 WHEN 'CLOSE' THEN 0 ELSE 9 END AS BIGINT) AS n \
             FROM pay_order WHERE order_id = '{order_id}'"
        ));
        let alipay_status = truth.get(order_id).map(|trade| &trade["status"]);
        let alipay_paid = alipay_status.is_some_and(|status| status == "TRADE_SUCCESS");
        assert_eq!(status, if alipay_paid { 1 } else { 0 }, "order {order_id} vs Alipay {alipay_status:?}");
        paid += i64::from(alipay_paid);
    }
    assert_eq!(paid, (ORDERS as i64 + 2) / 3);
    assert_eq!(a.scalar("SELECT COUNT(*) AS n FROM shipment"), paid);
    assert_eq!(a.scalar("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'delivery'"), paid);
    assert_eq!(a.scalar("SELECT COUNT(*) AS n FROM order_event WHERE to_status = 'PAY_SUCCESS'"), paid);
    assert_eq!(
        a.scalar("SELECT COUNT(*) AS n FROM order_event WHERE to_status = 'CLOSE'"),
        ORDERS as i64 - paid
    );
    assert_eq!(a.scalar("SELECT COUNT(*) AS n FROM pay_order WHERE lease_owner IS NOT NULL"), 0);
}

both_backends!(
    a_pool_of_one_connection_is_enough,
    an_unpaid_order_closes_at_alipay_and_locally,
    gateway_errors_leave_orders_as_they_were,
    two_instances_settle_every_order_once,
);

/// Waits up to `seconds` for the order to reach `wanted`, with nobody ticking the worker.
fn delivered_within(app: &TestApp, shopper: &mut crate::helpers::Browser, order_id: &str, seconds: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    loop {
        let status = app.order_status(shopper, order_id);
        if status == "DEAL_DONE" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "order {order_id} stayed {status}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The background thread's tick is an hour away and nobody ticks by hand: a payment recorded by
/// a notification, and one found by the admin's Sync (a query), wake the real thread, which
/// delivers at once.
fn a_payment_is_delivered_without_waiting_for_the_tick(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_with(backend, |s| {
        path.apply(s);
        s.compensation.drain_on_payment = true;
    });
    assert_eq!(app.settings.compensation.interval_secs, 3600);
    let mut shopper = app.login("o-woken");
    let form = app.create_order(&mut shopper, GIFT);
    let notified = app.pay_at_cashier(&mut shopper, &form);
    delivered_within(&app, &mut shopper, &notified, 5);

    app.faults(serde_json::json!({ "drop_notify": true }));
    let form = app.create_order(&mut shopper, MUG);
    let queried = app.pay_at_cashier(&mut shopper, &form);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(app.order_status(&mut shopper, &queried), "PAY_WAIT", "no notification came");
    let mut admin = app.admin();
    let csrf = admin.csrf(&format!("/admin/orders/{queried}"));
    assert_eq!(admin.post_form(&format!("/admin/orders/{queried}/sync"), &[("csrf", &csrf)]).status, 303);
    delivered_within(&app, &mut shopper, &queried, 5);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM shipment"), 2);
}

// The payment rules, through both ways a payment is recorded.
every_payment_path!(
    a_dropped_notify_is_recovered_by_query,
    a_close_racing_a_payment_ends_paid,
    a_payment_is_delivered_without_waiting_for_the_tick,
);
