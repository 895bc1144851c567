//! Orders with a coupon through HTTP: the discounted price charged and checked, the coupon's
//! lifecycle moved by the order's (placed, paid by notify or by query, cancelled, closed,
//! refunded), a coupon raced by orders placed at once, and the shopper's cancel and refund.

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Browser, GIFT, MUG, PaymentPath, TestApp, both_backends, every_payment_path, order_id_of,
};

/// The seeded green tea, ¥58.00.
const TEA: &str = "100010090092";
const NOTEBOOK: &str = "100010090094";
const UMBRELLA: &str = "100010090095";
/// 满50减10, 8折 at most 20 off (tea only), 直减5.
const MJ_50_10: i64 = 9001;
const ZJ_5: i64 = 9003;

fn claimed(browser: &mut Browser, template_id: i64) -> i64 {
    let reply = browser.post_json("/api/v1/coupons/claim", &json!({ "templateId": template_id })).json();
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"]["couponId"].as_i64().expect("couponId")
}

fn order_with_coupon(browser: &mut Browser, product_id: &str, coupon_id: i64) -> Value {
    browser
        .post_json(
            "/api/v1/alipay/create_pay_order",
            &json!({ "productId": product_id, "couponId": coupon_id }),
        )
        .json()
}

/// The form of an order placed with the coupon.
fn form_with_coupon(browser: &mut Browser, product_id: &str, coupon_id: i64) -> String {
    let reply = order_with_coupon(browser, product_id, coupon_id);
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"].as_str().expect("form").to_owned()
}

fn coupon_state(app: &TestApp, coupon_id: i64) -> (String, String) {
    let status = ["AVAILABLE", "LOCKED", "USED", "EXPIRED"]
        .into_iter()
        .find(|s| {
            app.scalar(&format!(
                "SELECT COUNT(*) AS n FROM user_coupon WHERE coupon_id = {coupon_id} AND status = '{s}'"
            )) == 1
        })
        .expect("a known status");
    let order_of = |column: &str| {
        let n = app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM user_coupon WHERE coupon_id = {coupon_id} AND {column} IS NOT NULL"
        ));
        if n == 1 { column.to_owned() } else { String::new() }
    };
    (status.to_owned(), [order_of("locked_order_id"), order_of("used_order_id")].concat())
}

fn refund_order(browser: &mut Browser, order_id: &str) -> Value {
    let reply = browser.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json();
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"].clone()
}

fn a_coupon_order_charges_the_discounted_price(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-coupon-pay");
    let coupon = claimed(&mut shopper, ZJ_5);
    let stock = app.stock(TEA);
    let form = form_with_coupon(&mut shopper, TEA, coupon);
    assert!(form.contains("&quot;total_amount&quot;:&quot;53.00&quot;") || form.contains("53.00"), "{form}");
    let order_id = order_id_of(&form);
    assert_eq!(app.stock(TEA), stock - 1);
    assert_eq!(coupon_state(&app, coupon), ("LOCKED".to_owned(), "locked_order_id".to_owned()));
    let order = shopper.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["data"]["totalAmount"], "53.00", "{order}");
    assert_eq!(order["data"]["originalAmount"], "58.00");
    assert_eq!(order["data"]["discountAmount"], "5.00");
    assert_eq!(order["data"]["discounts"][0]["refId"], coupon.to_string());

    app.pay_at_cashier(&mut shopper, &form);
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    assert_eq!(coupon_state(&app, coupon), ("USED".to_owned(), "used_order_id".to_owned()));
    assert_eq!(
        app.scalar(&format!("SELECT COUNT(*) AS n FROM user_coupon WHERE used_order_id = '{order_id}'")),
        1
    );
    // The coupon is spent: a second order with it is refused and makes nothing.
    let again = order_with_coupon(&mut shopper, MUG, coupon);
    assert_eq!(again["code"], "C0002", "{again}");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 1);
}

fn a_coupon_is_used_when_the_query_finds_the_payment(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_with(backend, |s| {
        path.apply(s);
        s.compensation.query_after_secs = 0;
    });
    app.faults(json!({ "drop_notify": true }));
    let mut shopper = app.login("o-coupon-query");
    let coupon = claimed(&mut shopper, MJ_50_10);
    let form = form_with_coupon(&mut shopper, TEA, coupon);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "no notification came");
    app.execute("UPDATE pay_order SET next_query_at = order_time");
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(coupon_state(&app, coupon).0, "USED");
    let order = shopper.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["data"]["totalAmount"], "48.00", "{order}");
}

/// A notification for a discounted order that carries the list price pays nothing; the
/// discounted amount then pays it.
fn the_list_price_does_not_pay_a_discounted_order(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-coupon-amount");
    let coupon = claimed(&mut shopper, ZJ_5);
    let order_id = order_id_of(&form_with_coupon(&mut shopper, TEA, coupon));
    let id = order_id.as_str();
    let list_price = app.signed_notify(&[("out_trade_no", id), ("total_amount", "58.00")], false);
    assert_eq!(app.post_notify(&list_price), "fail");
    assert_eq!(app.order_status(&mut shopper, id), "PAY_WAIT");
    assert_eq!(coupon_state(&app, coupon).0, "LOCKED");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox"), 0);
    let payable = app.signed_notify(&[("out_trade_no", id), ("total_amount", "53.00")], false);
    assert_eq!(app.post_notify(&payable), "success");
    assert_eq!(app.order_status(&mut shopper, id), "PAY_SUCCESS");
    assert_eq!(coupon_state(&app, coupon).0, "USED");
}

/// One coupon, orders for four products placed at once: exactly one order locks it; the others
/// are refused with C0002 and leave no order, stock or lock behind.
fn one_coupon_raced_by_orders_placed_at_once_locks_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-coupon-race");
    let coupon = claimed(&mut shopper, ZJ_5);
    let products = [TEA, MUG, NOTEBOOK, UMBRELLA];
    let stock_before: i64 = products.iter().map(|p| app.stock(p)).sum();
    let start = std::sync::Barrier::new(products.len());
    let replies: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = products
            .iter()
            .map(|product| {
                let (mut browser, start) = (app.browser(), &start);
                browser.cookies = shopper.cookies.clone();
                scope.spawn(move || {
                    start.wait();
                    order_with_coupon(&mut browser, product, coupon)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("buyer")).collect()
    });
    let codes: Vec<&str> = replies.iter().map(|r| r["code"].as_str().unwrap_or("?")).collect();
    assert_eq!(codes.iter().filter(|c| **c == "0000").count(), 1, "{replies:?}");
    assert!(codes.iter().all(|c| *c == "0000" || *c == "C0002"), "{replies:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 1);
    let stock_after: i64 = products.iter().map(|p| app.stock(p)).sum();
    assert_eq!(stock_after, stock_before - 1);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM order_discount"), 1);
    let order_id =
        order_id_of(replies.iter().find(|r| r["code"] == "0000").unwrap()["data"].as_str().unwrap());
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM user_coupon WHERE status = 'LOCKED' AND locked_order_id = '{order_id}'"
        )),
        1
    );
}

/// A coupon that does not apply is refused with its code, and nothing is made.
fn an_inapplicable_coupon_makes_no_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut owner = app.login("o-coupon-owner");
    let mut other = app.login("o-coupon-other");
    let below = claimed(&mut owner, MJ_50_10);
    let stock = app.stock(GIFT);
    assert_eq!(order_with_coupon(&mut owner, GIFT, below)["code"], "C0004", "¥1.68 is below 满50");
    assert_eq!(order_with_coupon(&mut other, TEA, below)["code"], "C0001", "not theirs");
    assert_eq!(order_with_coupon(&mut owner, TEA, 987_654)["code"], "C0001", "no such coupon");
    let tea_only = claimed(&mut owner, 9002);
    assert_eq!(order_with_coupon(&mut owner, MUG, tea_only)["code"], "C0005");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 0);
    assert_eq!(app.stock(GIFT), stock);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM user_coupon WHERE status <> 'AVAILABLE'"), 0);
}

/// The shopper cancels an unpaid order: closed at Alipay and here, its stock and coupon back.
fn cancel_returns_stock_and_coupon(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-coupon-cancel");
    let coupon = claimed(&mut shopper, ZJ_5);
    let stock = app.stock(TEA);
    let order_id = order_id_of(&form_with_coupon(&mut shopper, TEA, coupon));
    assert_eq!(app.stock(TEA), stock - 1);

    let reply = refund_order(&mut shopper, &order_id);
    assert_eq!(reply, json!({ "success": true, "message": "订单已取消", "orderId": order_id }));
    assert_eq!(app.order_status(&mut shopper, &order_id), "CLOSE");
    assert_eq!(app.stock(TEA), stock);
    assert_eq!(coupon_state(&app, coupon), ("AVAILABLE".to_owned(), String::new()));
    let again = refund_order(&mut shopper, &order_id);
    assert_eq!(again["success"], false);
    assert_eq!(again["message"], "订单已关闭");
    // The coupon buys again.
    form_with_coupon(&mut shopper, TEA, coupon);
    let mut stranger = app.login("o-coupon-stranger");
    let theirs = stranger.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id }));
    assert_eq!(theirs.status, 404, "{}", theirs.body);
}

/// A coupon that expires while its order waits: USED if the order is paid, EXPIRED if it closes.
fn a_coupon_expiring_while_locked(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-coupon-expiring");
    let (paid_coupon, closed_coupon) = (claimed(&mut shopper, ZJ_5), claimed(&mut shopper, ZJ_5));
    let paid_form = form_with_coupon(&mut shopper, TEA, paid_coupon);
    let closed_order = order_id_of(&form_with_coupon(&mut shopper, MUG, closed_coupon));
    app.execute("UPDATE user_coupon SET valid_until = valid_from");

    let paid_order = app.pay_at_cashier(&mut shopper, &paid_form);
    app.wait_for_status(&mut shopper, &paid_order, "PAY_SUCCESS");
    assert_eq!(coupon_state(&app, paid_coupon).0, "USED");
    assert_eq!(refund_order(&mut shopper, &closed_order)["message"], "订单已取消");
    assert_eq!(coupon_state(&app, closed_coupon).0, "EXPIRED");
}

/// What the shopper's refund request answers for each state of a paid order; a refund before
/// delivery gives the coupon back, and the order never ships.
fn refund_order_follows_the_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-coupon-refund");
    let coupon = claimed(&mut shopper, ZJ_5);
    let form = form_with_coupon(&mut shopper, TEA, coupon);
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    let paid = refund_order(&mut shopper, &order_id);
    assert_eq!(paid["success"], false);
    assert_eq!(paid["message"], "请联系客服退款");

    let mut admin = app.admin();
    let csrf = admin.csrf(&format!("/admin/orders/{order_id}"));
    let asked = admin.post_form(&format!("/admin/orders/{order_id}/refund"), &[("csrf", &csrf)]);
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(refund_order(&mut shopper, &order_id)["message"], "退款中");
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "REFUNDED");
    let done = refund_order(&mut shopper, &order_id);
    assert_eq!((done["success"].clone(), done["message"].clone()), (json!(true), json!("已退款")));
    assert_eq!(app.refunds_at_alipay(&order_id), 1);
    assert_eq!(app.scalar(&format!("SELECT COUNT(*) AS n FROM shipment WHERE order_id = '{order_id}'")), 0);
    assert_eq!(coupon_state(&app, coupon), ("AVAILABLE".to_owned(), String::new()));
}

both_backends!(
    one_coupon_raced_by_orders_placed_at_once_locks_once,
    an_inapplicable_coupon_makes_no_order,
    cancel_returns_stock_and_coupon,
    refund_order_follows_the_order,
);

// The payment rules for discounted orders, through both ways a payment is recorded.
every_payment_path!(
    a_coupon_order_charges_the_discounted_price,
    a_coupon_is_used_when_the_query_finds_the_payment,
    the_list_price_does_not_pay_a_discounted_order,
    a_coupon_expiring_while_locked,
);
