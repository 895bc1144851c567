use crate::helpers::{
    Backend, Browser, GIFT, PaymentPath, TestApp, both_backends, every_payment_path, hidden, order_id_of,
};

fn login_buy_pay_deliver(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login_by_scan("o-buyer-1");
    let page = shopper.get(&format!("/products/{GIFT}"));
    let csrf = hidden(&page.body, "csrf").to_owned();
    let before = app.stock(GIFT);

    let checkout = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", &csrf)]);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    assert!(checkout.body.contains("Continue to Alipay"));
    assert_eq!(app.stock(GIFT), before - 1, "stock is reserved at creation");
    // The page's first form is the top bar's Log out; the payment form comes later.
    let form = &checkout.body[checkout.body.find("punchout_form").expect("the payment form")..];
    let order_id = app.pay_at_cashier(&mut shopper, form);
    assert_eq!(order_id.len(), 16);
    assert!(order_id.chars().all(|c| c.is_ascii_digit()));

    // The return_url only shows the order; the notification is what marks it paid.
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    let page = shopper.get(&format!("/orders/{order_id}"));
    assert!(page.body.contains("order-live.js") && page.body.contains(&order_id));
    app.worker.tick();
    app.wait_for_status(&mut shopper, &order_id, "DEAL_DONE");
    app.worker.tick();
    let order = shopper.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["data"]["totalAmount"], "1.68");
    assert_eq!(order["data"]["productName"], "测试商品");
    assert!(order["data"]["tradeNo"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(order["data"]["payTime"].is_string());
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) AS n FROM shipment WHERE order_id = '{order_id}'")), 1);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'wx_paid' AND order_id = '{order_id}'"
        )),
        1
    );
    let inbox = app.inbox();
    let paid_messages: Vec<_> =
        inbox.iter().filter(|m| m["template_id"] == "order-paid" && m["touser"] == "o-buyer-1").collect();
    assert_eq!(paid_messages.len(), 1, "{inbox:?}");
    assert_eq!(paid_messages[0]["data"]["orderId"]["value"], order_id.as_str());
    let events = app.scalar(&format!("SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}'"));
    assert_eq!(events, 3, "placed (PAY_WAIT), PAY_SUCCESS, DEAL_DONE");
    let mine = shopper.get("/api/v1/orders").json();
    assert_eq!(mine["data"][0]["orderId"], order_id.as_str());
}

fn buy_needs_login_and_a_csrf_token(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut visitor = app.browser();
    let api = visitor.post_json("/api/v1/alipay/create_pay_order", &serde_json::json!({ "productId": GIFT }));
    assert_eq!(api.json()["code"], "0003");
    let page = visitor.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", "x")]);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login?next=%2Fproducts%2F100010090091"));

    let before = app.stock(GIFT);
    let mut shopper = app.login("o-csrf");
    let forged = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", "forged")]);
    assert_eq!(forged.status, 403);
    let missing = shopper.post_form(&format!("/products/{GIFT}/buy"), &[]);
    assert_eq!(missing.status, 403);
    assert_eq!(app.stock(GIFT), before);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 0);
}

fn asking_again_returns_the_same_open_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-again");
    let first = app.create_order(&mut shopper, GIFT);
    let second = app.create_order(&mut shopper, GIFT);
    assert_eq!(order_id_of(&first), order_id_of(&second));
    assert_eq!(first, second, "the form signed for the order, as it was stored");
    let unknown =
        shopper.post_json("/api/v1/alipay/create_pay_order", &serde_json::json!({ "productId": "404" }));
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["code"], "0001");
    let malformed = shopper.post_raw("/api/v1/alipay/create_pay_order", "application/json", b"{not json");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["code"], "0002");
}

fn an_open_order_whose_form_expired_or_is_gone_is_closed_and_replaced(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-expired");
    let before = app.stock(GIFT);
    let first = order_id_of(&app.create_order(&mut shopper, GIFT));
    // Its form runs out now: too late to hand it out again.
    app.execute(&format!("UPDATE pay_order SET expire_at = order_time WHERE order_id = '{first}'"));
    let second = order_id_of(&app.create_order(&mut shopper, GIFT));
    assert_ne!(first, second);
    assert_eq!(app.order_status(&mut shopper, &first), "CLOSE");
    assert_eq!(app.order_status(&mut shopper, &second), "PAY_WAIT");
    assert_eq!(app.stock(GIFT), before - 1, "the closed order's unit came back");
    // An open order without a stored form cannot be paid from here either.
    app.execute(&format!("DELETE FROM pay_form WHERE order_id = '{second}'"));
    let third = order_id_of(&app.create_order(&mut shopper, GIFT));
    assert_ne!(third, second);
    assert_eq!(app.order_status(&mut shopper, &second), "CLOSE");
    assert_eq!(app.stock(GIFT), before - 1);
}

fn order_numbers_come_in_blocks_that_instances_never_share(backend: Backend) {
    let app = TestApp::spawn(backend);
    let sibling = app.spawn_sibling();
    let number = |form: &str| order_id_of(form)[6..].parse::<i64>().expect("order number");
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for i in 0..3 {
        here.push(number(&app.create_order(&mut app.login(&format!("o-here-{i}")), GIFT)));
        there.push(number(&sibling.create_order(&mut sibling.login(&format!("o-there-{i}")), GIFT)));
    }
    assert_eq!(here, [here[0], here[0] + 1, here[0] + 2], "an instance hands out its block in order");
    assert_eq!(there, [there[0], there[0] + 1, there[0] + 2]);
    assert_ne!(here[0] / 100, there[0] / 100, "each has a block of its own");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM order_number"), 2, "one block each, taken once");
}

fn bad_notifications_fail_and_change_nothing(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-bad-notify");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let id = order_id.as_str();
    let forged = {
        let mut p = app.signed_notify(&[("out_trade_no", id)], false);
        p.retain(|(k, _)| k != "sign");
        p.push(("sign".into(), "Zm9yZ2Vk".into()));
        p
    };
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("forged signature", forged),
        ("sign_type signed too", app.signed_notify(&[("out_trade_no", id)], true)),
        ("wrong amount", app.signed_notify(&[("out_trade_no", id), ("total_amount", "0.01")], false)),
        ("wrong app_id", app.signed_notify(&[("out_trade_no", id), ("app_id", "2021999")], false)),
        ("wrong seller", app.signed_notify(&[("out_trade_no", id), ("seller_id", "2088999")], false)),
        (
            "unknown order, not a payment",
            app.signed_notify(
                &[("out_trade_no", "2611220000009999"), ("trade_status", "WAIT_BUYER_PAY")],
                false,
            ),
        ),
        ("missing amount", app.signed_notify(&[("out_trade_no", id), ("total_amount", "")], false)),
    ];
    let total = cases.len() as i64;
    for (case, params) in cases {
        assert_eq!(app.post_notify(&params), "fail", "{case}");
        assert_eq!(app.order_status(&mut shopper, id), "PAY_WAIT", "{case}");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify WHERE verified = FALSE"), total);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox"), 0);
    assert_eq!(app.post_notify_body(&[0xff, 0xfe]).status, 400);
    assert_eq!(app.post_notify_body(&vec![b'a'; 70_000]).status, 413);
}

/// A notification whose effect cannot be stored (here a trigger refuses the timeline row) is
/// still kept, raw and with the reason, and answered `fail`: nothing of its effect remains, and
/// Alipay's resend pays the order once the database takes it.
fn a_notify_that_cannot_be_processed_is_kept_and_answered_fail(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-unprocessed");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let refuse = match backend {
        Backend::Sqlite => vec![
            "CREATE TRIGGER refuse_events BEFORE INSERT ON order_event \
             BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
        ],
        Backend::Postgres => vec![
            "CREATE FUNCTION refuse_events() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$",
            "CREATE TRIGGER refuse_events BEFORE INSERT ON order_event \
             FOR EACH ROW EXECUTE FUNCTION refuse_events()",
        ],
    };
    for sql in refuse {
        app.execute(sql);
    }
    let notify = app.signed_notify(&[("out_trade_no", &order_id)], false);
    assert_eq!(app.post_notify(&notify), "fail");
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox"), 0);
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}' \
             AND verified = FALSE AND outcome LIKE 'not processed: %injected failure%'"
        )),
        1,
        "kept raw with the reason"
    );

    app.execute(match backend {
        Backend::Sqlite => "DROP TRIGGER refuse_events",
        Backend::Postgres => "DROP TRIGGER refuse_events ON order_event",
    });
    assert_eq!(app.post_notify(&notify), "success");
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_SUCCESS");
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}'")),
        2
    );
}

fn fifty_concurrent_copies_of_one_notify_pay_once(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-fifty");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let params = app.signed_notify(&[("out_trade_no", &order_id)], false);
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50).map(|_| s.spawn(|| app.post_notify(&params))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(answers.iter().all(|a| a == "success"), "{answers:?}");
    for _ in 0..3 {
        app.worker.tick();
    }
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    let paid_events = app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}' AND to_status = 'PAY_SUCCESS'"
    ));
    assert_eq!(paid_events, 1);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM shipment"), 1);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'delivery'"), 1);
    // Stored once per outcome: the payment, and the duplicates (a replay adds nothing).
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify"), 2);
}

fn twenty_concurrent_buys_make_one_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let token = app.login("o-twenty").cookies.clone();
    let before = app.stock(GIFT);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let cookies = token.clone();
                let app = &app;
                s.spawn(move || {
                    let mut b = app.browser();
                    b.cookies = cookies;
                    order_id_of(&app.create_order(&mut b, GIFT))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 1);
    assert_eq!(app.stock(GIFT), before - 1);
}

fn stock_k_and_three_k_buyers_sell_exactly_k(backend: Backend) {
    let app = TestApp::spawn(backend);
    const K: i64 = 5;
    app.execute(&format!("UPDATE product SET stock = {K} WHERE product_id = '{GIFT}'"));
    let buyers: Vec<Browser> = (0..3 * K).map(|i| app.login(&format!("o-rush-{i}"))).collect();
    let codes: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = buyers
            .into_iter()
            .map(|mut b| {
                s.spawn(move || {
                    let r = b.post_json(
                        "/api/v1/alipay/create_pay_order",
                        &serde_json::json!({ "productId": GIFT }),
                    );
                    format!("{} {}", r.status, r.json()["code"].as_str().unwrap_or(""))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let sold = codes.iter().filter(|c| c.as_str() == "200 0000").count() as i64;
    let sold_out = codes.iter().filter(|c| c.as_str() == "409 0001").count() as i64;
    assert_eq!((sold, sold_out), (K, 2 * K), "{codes:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), K);
    assert_eq!(app.stock(GIFT), 0);
    let page = app.browser().get(&format!("/products/{GIFT}"));
    assert!(page.body.contains("已售罄"));
}

fn checkout_needs_no_gateway_and_loses_no_stock(backend: Backend) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let app = TestApp::spawn_with(backend, |s| s.alipay.gateway_url = format!("http://{dead}/gateway.do"));
    let before = app.stock(GIFT);
    let mut shopper = app.login("o-dead-gateway");
    // The page-pay form is signed locally: the shopper gets it even while Alipay is down.
    let form = app.create_order(&mut shopper, GIFT);
    assert!(form.contains(&dead.to_string()));
    assert_eq!(app.stock(GIFT), before - 1);
    let again = app.create_order(&mut shopper, GIFT);
    assert_eq!(order_id_of(&form), order_id_of(&again));
    assert_eq!(app.stock(GIFT), before - 1, "asking again reserves nothing more");
}

fn someone_elses_order_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut owner = app.login("o-owner");
    let order_id = order_id_of(&app.create_order(&mut owner, GIFT));
    let mut other = app.login("o-other");
    assert_eq!(other.get(&format!("/api/v1/orders/{order_id}")).status, 404);
    assert_eq!(other.get(&format!("/orders/{order_id}")).status, 404);
    assert_eq!(other.get("/api/v1/orders").json()["data"].as_array().map(Vec::len), Some(0));
    let orders_page = owner.get("/orders");
    assert!(orders_page.body.contains(&order_id));
}

fn a_payment_for_a_closed_order_is_never_dropped(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-late");
    let honoured = order_id_of(&app.create_order(&mut shopper, GIFT));
    let refunded = order_id_of(&app.create_order(&mut shopper, "100010090095"));
    let close = |order_id: &str| {
        let mut conn = app.db.connect();
        assert!(
            paymall::services::order::close(&mut conn, order_id, "test", "closed for the test")
                .expect("close")
        );
    };
    close(&honoured);
    close(&refunded);
    app.execute("UPDATE product SET stock = 0 WHERE product_id = '100010090095'");
    // The buyers pay at the cashier anyway (their forms were still open in a tab).
    let forms = [
        (honoured.as_str(), "1.68", "2026112222001400000001"),
        (refunded.as_str(), "89.00", "2026112222001400000002"),
    ];
    for (order_id, amount, trade_no) in forms {
        let params = app.signed_notify(
            &[("out_trade_no", order_id), ("total_amount", amount), ("trade_no", trade_no)],
            false,
        );
        assert_eq!(app.post_notify(&params), "success");
    }
    assert_eq!(app.order_status(&mut shopper, &honoured), "PAY_SUCCESS");
    assert_eq!(app.order_status(&mut shopper, &refunded), "REFUND_WAIT");
    // The refund goes to Alipay (the sandbox knows the trade once its cashier was opened).
    let outbox = app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'refund' AND order_id = '{refunded}'"
    ));
    assert_eq!(outbox, 1);
    let timeline = app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{refunded}' AND detail LIKE '%sold out%'"
    ));
    assert_eq!(timeline, 1);
}

/// More payments at once than the outbox handles in one batch (50 entries): one tick still
/// delivers them all.
fn a_burst_of_payments_is_delivered_in_one_tick(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-burst");
    let orders: Vec<String> = (0..30)
        .map(|n| {
            let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
            let (notify_id, trade_no) = (format!("burst-{n}"), format!("2026112222001450{n:06}"));
            let overrides =
                [("out_trade_no", order_id.as_str()), ("notify_id", &notify_id), ("trade_no", &trade_no)];
            assert_eq!(app.post_notify(&app.signed_notify(&overrides, false)), "success");
            order_id
        })
        .collect();
    let waiting = app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE status = 'PENDING'");
    assert!(waiting > 50, "more than one batch waits: {waiting}");
    app.worker.tick();
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE status <> 'DONE'"), 0);
    for order_id in &orders {
        assert_eq!(app.order_status(&mut shopper, order_id), "DEAL_DONE");
    }
}

/// An entry whose payload does not parse fails and is retried, while the entries after it run;
/// entries whose payload leaves the order's id to the `order_id` column (`{}`) run as well.
fn an_entry_whose_payload_does_not_parse_fails_alone(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    let mut shopper = app.login("o-unparsed");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    assert_eq!(app.post_notify(&app.signed_notify(&[("out_trade_no", order_id.as_str())], false)), "success");
    app.execute(&format!("UPDATE outbox SET payload = '{{}}' WHERE order_id = '{order_id}'"));
    // Due before the others, so it is the first of the batch.
    app.execute(
        "INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, \
         created_at, updated_at) VALUES ('delivery', 'broken', NULL, 'not json', 'PENDING', 0, \
         '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    );
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE order_id = '{order_id}' AND status = 'DONE'"
        )),
        2
    );
    let paid = app.inbox().into_iter().filter(|m| m["touser"] == "o-unparsed").collect::<Vec<_>>();
    assert_eq!(paid.len(), 1, "{paid:?}");
    assert_eq!(paid[0]["client_msg_id"], format!("paid-{order_id}"));
    let broken = "SELECT COUNT(*) AS n FROM outbox WHERE dedupe_key = 'broken' AND status = 'PENDING' \
                  AND attempts >= 1 AND last_error LIKE '%payload does not parse%'";
    assert_eq!(app.scalar(broken), 1);
    let attempts = app.scalar("SELECT CAST(attempts AS BIGINT) AS n FROM outbox WHERE dedupe_key = 'broken'");
    app.execute("UPDATE outbox SET next_attempt_at = created_at WHERE dedupe_key = 'broken'");
    app.worker.tick();
    let retried = app.scalar("SELECT CAST(attempts AS BIGINT) AS n FROM outbox WHERE dedupe_key = 'broken'");
    assert_eq!(retried, attempts + 1, "it is retried");
}

both_backends!(
    buy_needs_login_and_a_csrf_token,
    asking_again_returns_the_same_open_order,
    an_open_order_whose_form_expired_or_is_gone_is_closed_and_replaced,
    order_numbers_come_in_blocks_that_instances_never_share,
    twenty_concurrent_buys_make_one_order,
    stock_k_and_three_k_buyers_sell_exactly_k,
    checkout_needs_no_gateway_and_loses_no_stock,
    someone_elses_order_is_not_found,
    a_burst_of_payments_is_delivered_in_one_tick,
    an_entry_whose_payload_does_not_parse_fails_alone,
);

// The payment rules, through both ways a payment is recorded.
every_payment_path!(
    login_buy_pay_deliver,
    bad_notifications_fail_and_change_nothing,
    fifty_concurrent_copies_of_one_notify_pay_once,
    a_payment_for_a_closed_order_is_never_dropped,
    a_notify_that_cannot_be_processed_is_kept_and_answered_fail,
);
