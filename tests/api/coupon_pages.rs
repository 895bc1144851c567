//! The shopper's pages with coupons: the product page's coupon picker (the best coupon
//! preselected, a visitor without one), buying with the picked coupon, and the 取消订单 /
//! 申请退款 buttons of the order and checkout pages (`POST /orders/{id}/cancel`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, Browser, GIFT, TestApp, both_backends, hidden};

/// The seeded green tea, ¥58.00: 满50减10 (9001) makes it ¥48.00, 直减5元 (9003) ¥53.00.
const TEA: &str = "100010090092";

/// Claims a coupon of the template and returns its id.
fn claimed(browser: &mut Browser, template_id: i64) -> i64 {
    let reply = browser.post_json("/api/v1/coupons/claim", &json!({ "templateId": template_id })).json();
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"]["couponId"].as_i64().expect("couponId")
}

/// The shopper's coupon as the API shows it.
fn coupon(browser: &mut Browser, coupon_id: i64) -> Value {
    let list = browser.get("/api/v1/coupons").json();
    list["data"].as_array().unwrap().iter().find(|c| c["couponId"] == coupon_id).expect("the coupon").clone()
}

/// The text of the element whose opening tag ends with `before`.
fn text_after(html: &str, before: &str) -> String {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} in {html}")) + before.len();
    let end = start + html[start..].find('<').expect("closing tag");
    html[start..end].trim().to_owned()
}

/// Buys `product_id` through the product page's form with the picked coupon (empty: none);
/// the checkout page.
fn buy(browser: &mut Browser, product_id: &str, coupon_id: &str) -> String {
    let csrf = browser.csrf(&format!("/products/{product_id}"));
    let page = browser
        .post_form(&format!("/products/{product_id}/buy"), &[("csrf", &csrf), ("coupon_id", coupon_id)]);
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

fn order_status(app: &TestApp, browser: &mut Browser, order_id: &str) -> String {
    app.order_status(browser, order_id)
}

fn the_product_page_preselects_the_best_coupon(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-picker");
    let mj = claimed(&mut shopper, 9001);
    let zj = claimed(&mut shopper, 9003);

    let page = shopper.get(&format!("/products/{TEA}")).body;
    assert!(page.contains("<select name=\"coupon_id\""), "{page}");
    assert!(page.contains("<option value=\"\">不使用优惠券 · ¥58.00</option>"), "{page}");
    assert!(
        page.contains(&format!("<option value=\"{mj}\" selected>满50减10 · 到手价 ¥48.00</option>")),
        "{page}"
    );
    assert!(page.contains(&format!("<option value=\"{zj}\">直减5 · 到手价 ¥53.00</option>")), "{page}");
    assert_eq!(page.matches(" selected").count(), 1, "{page}");
    assert!(page.find(&format!("value=\"{mj}\"")) < page.find(&format!("value=\"{zj}\"")), "the best first");
    assert_eq!(text_after(&page, "id=\"coupon-best\">用券到手价 <strong>"), "¥48.00");
    // The Buy button the walkthrough presses is still there, inside the form.
    assert!(page.contains("id=\"buy\">立即购买</button>"), "{page}");

    // Below 满50's threshold the coupon is shown with its reason and cannot be picked.
    let gift = shopper.get(&format!("/products/{GIFT}")).body;
    assert!(
        gift.contains(&format!("<option value=\"{zj}\" selected>直减5 · 到手价 ¥0.01</option>")),
        "{gift}"
    );
    assert!(
        gift.contains(&format!("<option value=\"{mj}\" disabled>满50减10 · 未满足使用门槛</option>")),
        "{gift}"
    );

    // A coupon locked by an order is not offered.
    let checkout = buy(&mut shopper, TEA, &mj.to_string());
    assert!(checkout.contains("¥48.00"), "{checkout}");
    let page = shopper.get(&format!("/products/{TEA}")).body;
    assert!(!page.contains(&format!("value=\"{mj}\"")), "{page}");
    assert!(
        page.contains(&format!("<option value=\"{zj}\" selected>直减5 · 到手价 ¥53.00</option>")),
        "{page}"
    );

    // A visitor, and a shopper without coupons, see the plain page.
    for page in [
        app.browser().get(&format!("/products/{TEA}")).body,
        app.login("o-none").get(&format!("/products/{TEA}")).body,
    ] {
        assert!(page.contains("¥58.00") && page.contains("id=\"buy\""), "{page}");
        assert!(!page.contains("coupon_id") && !page.contains("coupon-best"), "{page}");
    }
}

fn the_buy_form_with_a_coupon_places_a_discounted_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-buyer");
    let mj = claimed(&mut shopper, 9001);

    let checkout = buy(&mut shopper, TEA, &mj.to_string());
    for text in ["商品原价", "¥58.00", "优惠券", "-¥10.00", "实付", "¥48.00", "id=\"pay-alipay\""]
    {
        assert!(checkout.contains(text), "{text} in {checkout}");
    }
    assert!(!checkout.contains("id=\"cancel-order\""), "a new order goes on to the cashier: {checkout}");
    let order_id = text_after(&checkout, "class=\"order-id\">");
    assert_eq!(text_after(&checkout, "id=\"pay-amount\">"), "¥48.00");
    let order = shopper.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["data"]["totalAmount"], "48.00", "{order}");
    assert_eq!(coupon(&mut shopper, mj)["status"], "LOCKED");
    assert_eq!(coupon(&mut shopper, mj)["lockedOrderId"], order_id.as_str());

    // Buy again: the open order, offered to pay or cancel, not sent on by itself.
    let again = buy(&mut shopper, TEA, "");
    assert_eq!(text_after(&again, "class=\"order-id\">"), order_id);
    for text in ["id=\"open-order-notice\"", "Continue to Alipay", "id=\"cancel-order\"", "¥48.00"] {
        assert!(again.contains(text), "{text} in {again}");
    }
    assert!(again.contains(&format!("action=\"/orders/{order_id}/cancel\"")), "{again}");
    assert!(!again.contains("checkout.js"), "{again}");

    // A malformed coupon id is refused.
    let csrf = shopper.csrf(&format!("/products/{TEA}"));
    let bad = shopper.post_form(&format!("/products/{TEA}/buy"), &[("csrf", &csrf), ("coupon_id", "x")]);
    assert_eq!(bad.status, 400, "{}", bad.body);
}

fn cancelling_an_unpaid_order_returns_its_stock_and_coupon(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-canceller");
    let mj = claimed(&mut shopper, 9001);
    let stock = app.stock(TEA);
    let checkout = buy(&mut shopper, TEA, &mj.to_string());
    let order_id = text_after(&checkout, "class=\"order-id\">");
    assert_eq!(app.stock(TEA), stock - 1);

    let page = shopper.get(&format!("/orders/{order_id}")).body;
    assert!(page.contains("id=\"cancel-order\">取消订单</button>"), "{page}");
    assert!(page.contains(&format!("<form method=\"post\" action=\"/orders/{order_id}/cancel\" class=\"inline\" data-statuses=\"CREATE PAY_WAIT\">")), "{page}");
    assert!(
        page.contains("data-statuses=\"PAY_SUCCESS DEAL_DONE\" hidden>"),
        "申请退款 waits for a payment: {page}"
    );
    let csrf = hidden(&page, "csrf").to_owned();
    let cancel = format!("/orders/{order_id}/cancel");

    // A forged or missing token, a visitor and another shopper change nothing.
    assert_eq!(shopper.post_form(&cancel, &[("csrf", "forged")]).status, 403);
    assert_eq!(shopper.post_form(&cancel, &[]).status, 403);
    let visitor = app.browser().post_form(&cancel, &[("csrf", &csrf)]);
    assert_eq!(visitor.status, 303);
    assert!(visitor.header("location").unwrap().starts_with("/login?next="), "{:?}", visitor.headers);
    let mut other = app.login("o-someone-else");
    let other_csrf = other.csrf("/orders");
    assert_eq!(other.post_form(&cancel, &[("csrf", &other_csrf)]).status, 404);
    assert_eq!(other.post_form(&cancel, &[("csrf", &csrf)]).status, 403, "another session's token");
    assert!(["CREATE", "PAY_WAIT"].contains(&order_status(&app, &mut shopper, &order_id).as_str()));
    assert_eq!(coupon(&mut shopper, mj)["status"], "LOCKED");
    assert_eq!(app.stock(TEA), stock - 1);

    let cancelled = shopper.post_form(&cancel, &[("csrf", &csrf)]);
    assert_eq!(cancelled.status, 303, "{}", cancelled.body);
    let location = cancelled.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/orders/{order_id}?notice=cancelled"));
    assert_eq!(order_status(&app, &mut shopper, &order_id), "CLOSE");
    assert_eq!(app.stock(TEA), stock);
    let released = coupon(&mut shopper, mj);
    assert_eq!(released["status"], "AVAILABLE", "{released}");
    assert!(released["lockedOrderId"].is_null(), "{released}");
    let page = shopper.get(&location).body;
    assert_eq!(text_after(&page, "id=\"order-notice\">"), "订单已取消");
    assert!(page.contains("data-statuses=\"CREATE PAY_WAIT\" hidden>"), "{page}");

    // Again: already closed, nothing moves.
    let again = shopper.post_form(&cancel, &[("csrf", &csrf)]);
    assert_eq!(again.header("location").unwrap(), format!("/orders/{order_id}?notice=closed"));
    assert_eq!(
        text_after(&shopper.get(&format!("/orders/{order_id}?notice=closed")).body, "id=\"order-notice\">"),
        "订单已关闭"
    );
    assert_eq!(app.stock(TEA), stock);

    // Only known notices are shown; a link cannot put words on the page.
    let page = shopper.get(&format!("/orders/{order_id}?notice=%3Cb%3Ehello%3C%2Fb%3E")).body;
    assert!(!page.contains("order-notice") && !page.contains("hello"), "{page}");

    // The coupon is back in the picker, and an unknown order is not found.
    let product = shopper.get(&format!("/products/{TEA}")).body;
    assert!(product.contains(&format!("<option value=\"{mj}\" selected>")), "{product}");
    assert_eq!(shopper.post_form("/orders/2612019999999999/cancel", &[("csrf", &csrf)]).status, 404);
}

fn the_checkout_cancels_an_open_order_from_an_earlier_buy(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-changed-mind");
    let zj = claimed(&mut shopper, 9003);
    let first = buy(&mut shopper, TEA, &zj.to_string());
    let order_id = text_after(&first, "class=\"order-id\">");
    let again = buy(&mut shopper, TEA, &zj.to_string());
    assert_eq!(text_after(&again, "class=\"order-id\">"), order_id);
    let csrf = hidden(&again, "csrf").to_owned();
    let cancelled = shopper.post_form(&format!("/orders/{order_id}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(cancelled.header("location").unwrap(), format!("/orders/{order_id}?notice=cancelled"));
    assert_eq!(coupon(&mut shopper, zj)["status"], "AVAILABLE");

    // The next Buy makes a new order.
    let next = buy(&mut shopper, TEA, &zj.to_string());
    assert_ne!(text_after(&next, "class=\"order-id\">"), order_id);
    assert!(!next.contains("id=\"cancel-order\""), "{next}");
    assert!(next.contains("¥53.00"), "{next}");
}

fn a_refund_of_a_paid_order_asks_for_the_customer_service(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-paid-refund");
    let zj = claimed(&mut shopper, 9003);
    let form = shopper
        .post_json("/api/v1/alipay/create_pay_order", &json!({ "productId": TEA, "couponId": zj }))
        .json()["data"]
        .as_str()
        .expect("form")
        .to_owned();
    let order_id = app.pay_at_cashier(&mut shopper, &form);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !["PAY_SUCCESS", "DEAL_DONE"].contains(&order_status(&app, &mut shopper, &order_id).as_str()) {
        assert!(Instant::now() < deadline, "the order stayed unpaid");
        std::thread::sleep(Duration::from_millis(50));
    }
    let page = shopper.get(&format!("/orders/{order_id}")).body;
    assert!(page.contains("data-statuses=\"PAY_SUCCESS DEAL_DONE\">"), "申请退款 shows: {page}");
    assert!(page.contains("id=\"refund-order\">申请退款</button>"), "{page}");
    assert!(page.contains("data-statuses=\"CREATE PAY_WAIT\" hidden>"), "{page}");
    assert!(page.contains("¥53.00"), "{page}");

    let csrf = hidden(&page, "csrf").to_owned();
    let asked = shopper.post_form(&format!("/orders/{order_id}/cancel"), &[("csrf", &csrf)]);
    assert_eq!(asked.header("location").unwrap(), format!("/orders/{order_id}?notice=contact"));
    let page = shopper.get(asked.header("location").unwrap()).body;
    assert_eq!(text_after(&page, "id=\"order-notice\">"), "请联系客服退款");
    assert!(["PAY_SUCCESS", "DEAL_DONE"].contains(&order_status(&app, &mut shopper, &order_id).as_str()));
    assert_eq!(coupon(&mut shopper, zj)["status"], "USED");
    assert_eq!(app.refunds_at_alipay(&order_id), 0);
}

both_backends!(
    the_product_page_preselects_the_best_coupon,
    the_buy_form_with_a_coupon_places_a_discounted_order,
    cancelling_an_unpaid_order_returns_its_stock_and_coupon,
    the_checkout_cancels_an_open_order_from_an_earlier_buy,
    a_refund_of_a_paid_order_asks_for_the_customer_service,
);
