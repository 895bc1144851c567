use std::time::{Duration, Instant};

use paymall::gateways::alipay::{load_private_key, sign, signing_content};
use paymall::sandbox::alipay::sandbox_key_paths;

use crate::helpers::{Backend, Browser, TestApp, both_backends};

const GIFT: &str = "100010090091";

/// Reads a value of an HTML attribute or hidden input out of a page.
pub fn attribute<'a>(html: &'a str, before: &str) -> &'a str {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} not in {html}")) + before.len();
    let end = start + html[start..].find('"').expect("closing quote");
    &html[start..end]
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The order id inside a page-pay form.
pub fn order_id_of(form: &str) -> String {
    let biz = unescape(attribute(form, "name=\"biz_content\" value=\""));
    let biz: serde_json::Value = serde_json::from_str(&biz).expect("biz_content JSON");
    biz["out_trade_no"].as_str().expect("out_trade_no").to_owned()
}

/// Submits the page-pay form the way the browser does and presses Pay at the sandbox cashier.
pub fn pay_at_cashier(browser: &mut Browser, form: &str) -> String {
    let action = unescape(attribute(form, "action=\""));
    let biz = unescape(attribute(form, "name=\"biz_content\" value=\""));
    let cashier = browser.post_form(&action, &[("biz_content", &biz)]);
    assert_eq!(cashier.status, 200, "{}", cashier.body);
    assert!(cashier.body.contains("Cashier"), "{}", cashier.body);
    let order_id = order_id_of(form);
    let sandbox = &action[..action.find("gateway.do").expect("gateway URL")];
    let paid = browser.post_form(&format!("{sandbox}cashier/{order_id}/pay"), &[]);
    assert_eq!(paid.status, 303, "{}", paid.body);
    let back = paid.header("location").expect("return_url").to_owned();
    assert!(back.contains("/orders/return?") && back.contains("sign="), "{back}");
    order_id
}

pub fn order_status(browser: &mut Browser, order_id: &str) -> String {
    let reply = browser.get(&format!("/api/v1/orders/{order_id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["data"]["status"].as_str().expect("status").to_owned()
}

pub fn wait_for_status(browser: &mut Browser, order_id: &str, wanted: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = order_status(browser, order_id);
        if status == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "order {order_id} stayed {status}, wanted {wanted}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn create_order(browser: &mut Browser, product_id: &str) -> String {
    let reply =
        browser.post_json("/api/v1/alipay/create_pay_order", &serde_json::json!({ "productId": product_id }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["code"], "0000");
    reply.json()["data"].as_str().expect("form").to_owned()
}

fn scalar(app: &TestApp, sql: &str) -> i64 {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(sql).load(&mut *app.db.connect()).expect("query");
    rows[0].n
}

pub fn count(app: &TestApp, sql: &str) -> i64 {
    scalar(app, sql)
}

pub fn execute(app: &TestApp, sql: &str) {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql).execute(&mut *app.db.connect()).expect(sql);
}

fn stock(app: &TestApp, product_id: &str) -> i64 {
    scalar(app, &format!("SELECT stock AS n FROM product WHERE product_id = '{product_id}'"))
}

/// A notification signed with the sandbox's Alipay key, as Alipay would send it.
pub fn signed_notify(
    app: &TestApp,
    overrides: &[(&str, &str)],
    sign_with_sign_type: bool,
) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> = vec![
        ("notify_time", "2026-11-22 20:00:00"),
        ("notify_type", "trade_status_sync"),
        ("notify_id", "test-notify-1"),
        ("app_id", app.settings.alipay.app_id.as_str()),
        ("charset", "utf-8"),
        ("version", "1.0"),
        ("trade_no", "2026112222001400000001"),
        ("seller_id", app.settings.alipay.seller_id.as_str()),
        ("trade_status", "TRADE_SUCCESS"),
        ("total_amount", "1.68"),
        ("gmt_payment", "2026-11-22 19:59:30"),
        ("sign_type", "RSA2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    for (k, v) in overrides {
        params.retain(|(key, _)| key != k);
        if !v.is_empty() {
            params.push((k.to_string(), v.to_string()));
        }
    }
    let (_, alipay_private) = sandbox_key_paths(&app.settings);
    let key = load_private_key(&alipay_private).expect("sandbox key");
    let excluded: &[&str] = if sign_with_sign_type { &[] } else { &["sign_type"] };
    let content = signing_content(params.iter().map(|(k, v)| (k.as_str(), v.as_str())), excluded);
    params.push(("sign".to_owned(), sign(&key, &content)));
    params
}

pub fn post_notify(app: &TestApp, params: &[(String, String)]) -> String {
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let reply = app.browser().post_form("/api/v1/alipay/alipay_notify_url", &pairs);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

fn login_buy_pay_deliver(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = crate::login::log_in(&app, "o-buyer-1");
    let page = shopper.get(&format!("/products/{GIFT}"));
    let csrf = attribute(&page.body, "name=\"csrf\" value=\"").to_owned();
    let before = stock(&app, GIFT);

    let checkout = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", &csrf)]);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    assert!(checkout.body.contains("Continue to Alipay"));
    assert_eq!(stock(&app, GIFT), before - 1, "stock is reserved at creation");
    // The page's first form is the top bar's Log out; the payment form comes later.
    let form = &checkout.body[checkout.body.find("punchout_form").expect("the payment form")..];
    let order_id = pay_at_cashier(&mut shopper, form);
    assert_eq!(order_id.len(), 16);
    assert!(order_id.chars().all(|c| c.is_ascii_digit()));

    // The return_url only shows the order; the notification is what marks it paid.
    wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    let page = shopper.get(&format!("/orders/{order_id}"));
    assert!(page.body.contains("order-live.js") && page.body.contains(&order_id));
    app.worker.tick();
    wait_for_status(&mut shopper, &order_id, "DEAL_DONE");
    app.worker.tick();
    let order = shopper.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["data"]["totalAmount"], "1.68");
    assert_eq!(order["data"]["productName"], "测试商品");
    assert!(order["data"]["tradeNo"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(order["data"]["payTime"].is_string());
    assert_eq!(count(&app, &format!("SELECT COUNT(*) AS n FROM shipment WHERE order_id = '{order_id}'")), 1);
    assert_eq!(
        count(
            &app,
            &format!("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'wx_paid' AND order_id = '{order_id}'")
        ),
        1
    );
    let inbox = app.browser().get("/sandbox/weixin/inbox.json").json();
    let paid_messages: Vec<_> = inbox
        .as_array()
        .expect("inbox")
        .iter()
        .filter(|m| m["template_id"] == "order-paid" && m["touser"] == "o-buyer-1")
        .collect();
    assert_eq!(paid_messages.len(), 1, "{inbox}");
    assert_eq!(paid_messages[0]["data"]["orderId"]["value"], order_id.as_str());
    let events = count(&app, &format!("SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}'"));
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

    let before = stock(&app, GIFT);
    let mut shopper = app.browser_logged_in_as("o-csrf");
    let forged = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", "forged")]);
    assert_eq!(forged.status, 403);
    let missing = shopper.post_form(&format!("/products/{GIFT}/buy"), &[]);
    assert_eq!(missing.status, 403);
    assert_eq!(stock(&app, GIFT), before);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM pay_order"), 0);
}

fn asking_again_returns_the_same_open_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-again");
    let first = create_order(&mut shopper, GIFT);
    let second = create_order(&mut shopper, GIFT);
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
    let mut shopper = app.browser_logged_in_as("o-expired");
    let before = stock(&app, GIFT);
    let first = order_id_of(&create_order(&mut shopper, GIFT));
    // Its form runs out now: too late to hand it out again.
    execute(&app, &format!("UPDATE pay_order SET expire_at = order_time WHERE order_id = '{first}'"));
    let second = order_id_of(&create_order(&mut shopper, GIFT));
    assert_ne!(first, second);
    assert_eq!(order_status(&mut shopper, &first), "CLOSE");
    assert_eq!(order_status(&mut shopper, &second), "PAY_WAIT");
    assert_eq!(stock(&app, GIFT), before - 1, "the closed order's unit came back");
    // An open order without a stored form cannot be paid from here either.
    execute(&app, &format!("DELETE FROM pay_form WHERE order_id = '{second}'"));
    let third = order_id_of(&create_order(&mut shopper, GIFT));
    assert_ne!(third, second);
    assert_eq!(order_status(&mut shopper, &second), "CLOSE");
    assert_eq!(stock(&app, GIFT), before - 1);
}

fn order_numbers_come_in_blocks_that_instances_never_share(backend: Backend) {
    let app = TestApp::spawn(backend);
    let sibling = app.spawn_sibling();
    let number = |form: &str| order_id_of(form)[6..].parse::<i64>().expect("order number");
    let (mut here, mut there) = (Vec::new(), Vec::new());
    for i in 0..3 {
        here.push(number(&create_order(&mut app.browser_logged_in_as(&format!("o-here-{i}")), GIFT)));
        there.push(number(&create_order(&mut sibling.browser_logged_in_as(&format!("o-there-{i}")), GIFT)));
    }
    assert_eq!(here, [here[0], here[0] + 1, here[0] + 2], "an instance hands out its block in order");
    assert_eq!(there, [there[0], there[0] + 1, there[0] + 2]);
    assert_ne!(here[0] / 100, there[0] / 100, "each has a block of its own");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM order_number"), 2, "one block each, taken once");
}

fn bad_notifications_fail_and_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-bad-notify");
    let order_id = order_id_of(&create_order(&mut shopper, GIFT));
    let id = order_id.as_str();
    let forged = {
        let mut p = signed_notify(&app, &[("out_trade_no", id)], false);
        p.retain(|(k, _)| k != "sign");
        p.push(("sign".into(), "Zm9yZ2Vk".into()));
        p
    };
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("forged signature", forged),
        ("sign_type signed too", signed_notify(&app, &[("out_trade_no", id)], true)),
        ("wrong amount", signed_notify(&app, &[("out_trade_no", id), ("total_amount", "0.01")], false)),
        ("wrong app_id", signed_notify(&app, &[("out_trade_no", id), ("app_id", "2021999")], false)),
        ("wrong seller", signed_notify(&app, &[("out_trade_no", id), ("seller_id", "2088999")], false)),
        (
            "unknown order, not a payment",
            signed_notify(
                &app,
                &[("out_trade_no", "2611220000009999"), ("trade_status", "WAIT_BUYER_PAY")],
                false,
            ),
        ),
        ("missing amount", signed_notify(&app, &[("out_trade_no", id), ("total_amount", "")], false)),
    ];
    let total = cases.len() as i64;
    for (case, params) in cases {
        assert_eq!(post_notify(&app, &params), "fail", "{case}");
        assert_eq!(order_status(&mut shopper, id), "PAY_WAIT", "{case}");
    }
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM alipay_notify WHERE verified = FALSE"), total);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM outbox"), 0);
    let garbage = app.browser().post_raw(
        "/api/v1/alipay/alipay_notify_url",
        "application/x-www-form-urlencoded",
        &[0xff, 0xfe],
    );
    assert_eq!(garbage.status, 400);
    let huge = app.browser().post_raw(
        "/api/v1/alipay/alipay_notify_url",
        "application/x-www-form-urlencoded",
        &vec![b'a'; 70_000],
    );
    assert_eq!(huge.status, 413);
}

/// A notification whose effect cannot be stored (here a trigger refuses the timeline row) is
/// still kept, raw and with the reason, and answered `fail`: nothing of its effect remains, and
/// Alipay's resend pays the order once the database takes it.
fn a_notify_that_cannot_be_processed_is_kept_and_answered_fail(backend: Backend) {
    use diesel::RunQueryDsl;
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-unprocessed");
    let order_id = order_id_of(&create_order(&mut shopper, GIFT));
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
        diesel::sql_query(sql).execute(&mut *app.db.connect()).expect("trigger");
    }
    let notify = signed_notify(&app, &[("out_trade_no", &order_id)], false);
    assert_eq!(post_notify(&app, &notify), "fail");
    assert_eq!(order_status(&mut shopper, &order_id), "PAY_WAIT");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM outbox"), 0);
    assert_eq!(
        count(
            &app,
            &format!(
                "SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}' \
                 AND verified = FALSE AND outcome LIKE 'not processed: %injected failure%'"
            )
        ),
        1,
        "kept raw with the reason"
    );

    diesel::sql_query(
        "DROP TRIGGER refuse_events".to_owned()
            + if backend == Backend::Postgres { " ON order_event" } else { "" },
    )
    .execute(&mut *app.db.connect())
    .expect("drop trigger");
    assert_eq!(post_notify(&app, &notify), "success");
    assert_eq!(order_status(&mut shopper, &order_id), "PAY_SUCCESS");
    assert_eq!(
        count(&app, &format!("SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}'")),
        2
    );
}

fn fifty_concurrent_copies_of_one_notify_pay_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-fifty");
    let order_id = order_id_of(&create_order(&mut shopper, GIFT));
    let params = signed_notify(&app, &[("out_trade_no", &order_id)], false);
    let answers: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..50).map(|_| s.spawn(|| post_notify(&app, &params))).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(answers.iter().all(|a| a == "success"), "{answers:?}");
    for _ in 0..3 {
        app.worker.tick();
    }
    assert_eq!(order_status(&mut shopper, &order_id), "DEAL_DONE");
    let paid_events = count(
        &app,
        &format!(
            "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{order_id}' AND to_status = 'PAY_SUCCESS'"
        ),
    );
    assert_eq!(paid_events, 1);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM shipment"), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'delivery'"), 1);
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM alipay_notify"), 50);
}

fn twenty_concurrent_buys_make_one_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let token = app.browser_logged_in_as("o-twenty").cookies.clone();
    let before = stock(&app, GIFT);
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                let cookies = token.clone();
                let app = &app;
                s.spawn(move || {
                    let mut b = app.browser();
                    b.cookies = cookies;
                    order_id_of(&create_order(&mut b, GIFT))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(ids.iter().all(|id| id == &ids[0]), "{ids:?}");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM pay_order"), 1);
    assert_eq!(stock(&app, GIFT), before - 1);
}

fn stock_k_and_three_k_buyers_sell_exactly_k(backend: Backend) {
    let app = TestApp::spawn(backend);
    const K: i64 = 5;
    execute(&app, &format!("UPDATE product SET stock = {K} WHERE product_id = '{GIFT}'"));
    let buyers: Vec<Browser> = (0..3 * K).map(|i| app.browser_logged_in_as(&format!("o-rush-{i}"))).collect();
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
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM pay_order"), K);
    assert_eq!(stock(&app, GIFT), 0);
    let page = app.browser().get(&format!("/products/{GIFT}"));
    assert!(page.body.contains("Sold out"));
}

fn checkout_needs_no_gateway_and_loses_no_stock(backend: Backend) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
    let app = TestApp::spawn_with(backend, |s| s.alipay.gateway_url = format!("http://{dead}/gateway.do"));
    let before = stock(&app, GIFT);
    let mut shopper = app.browser_logged_in_as("o-dead-gateway");
    // The page-pay form is signed locally: the shopper gets it even while Alipay is down.
    let form = create_order(&mut shopper, GIFT);
    assert!(form.contains(&dead.to_string()));
    assert_eq!(stock(&app, GIFT), before - 1);
    let again = create_order(&mut shopper, GIFT);
    assert_eq!(order_id_of(&form), order_id_of(&again));
    assert_eq!(stock(&app, GIFT), before - 1, "asking again reserves nothing more");
}

fn someone_elses_order_is_not_found(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut owner = app.browser_logged_in_as("o-owner");
    let order_id = order_id_of(&create_order(&mut owner, GIFT));
    let mut other = app.browser_logged_in_as("o-other");
    assert_eq!(other.get(&format!("/api/v1/orders/{order_id}")).status, 404);
    assert_eq!(other.get(&format!("/orders/{order_id}")).status, 404);
    assert_eq!(other.get("/api/v1/orders").json()["data"].as_array().map(Vec::len), Some(0));
    let orders_page = owner.get("/orders");
    assert!(orders_page.body.contains(&order_id));
}

fn a_payment_for_a_closed_order_is_never_dropped(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-late");
    let honoured = order_id_of(&create_order(&mut shopper, GIFT));
    let refunded = order_id_of(&create_order(&mut shopper, "100010090095"));
    let close = |order_id: &str| {
        let mut conn = app.db.connect();
        assert!(
            paymall::services::order::close(&mut conn, order_id, "test", "closed for the test")
                .expect("close")
        );
    };
    close(&honoured);
    close(&refunded);
    {
        use diesel::RunQueryDsl;
        diesel::sql_query("UPDATE product SET stock = 0 WHERE product_id = '100010090095'")
            .execute(&mut *app.db.connect())
            .expect("sell out");
    }
    // The buyers pay at the cashier anyway (their forms were still open in a tab).
    let forms = [
        (honoured.as_str(), "1.68", "2026112222001400000001"),
        (refunded.as_str(), "89.00", "2026112222001400000002"),
    ];
    for (order_id, amount, trade_no) in forms {
        let params = signed_notify(
            &app,
            &[("out_trade_no", order_id), ("total_amount", amount), ("trade_no", trade_no)],
            false,
        );
        assert_eq!(post_notify(&app, &params), "success");
    }
    assert_eq!(order_status(&mut shopper, &honoured), "PAY_SUCCESS");
    assert_eq!(order_status(&mut shopper, &refunded), "REFUND_WAIT");
    // The refund goes to Alipay (the sandbox knows the trade once its cashier was opened).
    let outbox = count(
        &app,
        &format!("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'refund' AND order_id = '{refunded}'"),
    );
    assert_eq!(outbox, 1);
    let timeline = count(
        &app,
        &format!(
            "SELECT COUNT(*) AS n FROM order_event WHERE order_id = '{refunded}' AND detail LIKE '%sold out%'"
        ),
    );
    assert_eq!(timeline, 1);
}

/// More payments at once than the outbox handles in one batch (50 entries): one tick still
/// delivers them all.
fn a_burst_of_payments_is_delivered_in_one_tick(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.browser_logged_in_as("o-burst");
    let orders: Vec<String> = (0..30)
        .map(|n| {
            let order_id = order_id_of(&create_order(&mut shopper, GIFT));
            let (notify_id, trade_no) = (format!("burst-{n}"), format!("2026112222001450{n:06}"));
            let overrides =
                [("out_trade_no", order_id.as_str()), ("notify_id", &notify_id), ("trade_no", &trade_no)];
            assert_eq!(post_notify(&app, &signed_notify(&app, &overrides, false)), "success");
            order_id
        })
        .collect();
    let waiting = count(&app, "SELECT COUNT(*) AS n FROM outbox WHERE status = 'PENDING'");
    assert!(waiting > 50, "more than one batch waits: {waiting}");
    app.worker.tick();
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM outbox WHERE status <> 'DONE'"), 0);
    for order_id in &orders {
        assert_eq!(order_status(&mut shopper, order_id), "DEAL_DONE");
    }
}

both_backends!(
    login_buy_pay_deliver,
    buy_needs_login_and_a_csrf_token,
    asking_again_returns_the_same_open_order,
    an_open_order_whose_form_expired_or_is_gone_is_closed_and_replaced,
    order_numbers_come_in_blocks_that_instances_never_share,
    bad_notifications_fail_and_change_nothing,
    a_notify_that_cannot_be_processed_is_kept_and_answered_fail,
    fifty_concurrent_copies_of_one_notify_pay_once,
    twenty_concurrent_buys_make_one_order,
    stock_k_and_three_k_buyers_sell_exactly_k,
    checkout_needs_no_gateway_and_loses_no_stock,
    someone_elses_order_is_not_found,
    a_payment_for_a_closed_order_is_never_dropped,
    a_burst_of_payments_is_delivered_in_one_tick,
);
