//! Orders paid with WeChat Pay through the shop, against the sandbox's API v3: Native (a code
//! scanned) and JSAPI (the WeChat browser's pay call), the notification recorded by the same rules
//! as Alipay's, a switch of channel closing the open order at its channel first.

use serde_json::{Value, json};

use paymall::sandbox::wechat_pay::scan_page_url;

use crate::helpers::{Backend, Browser, GIFT, TestApp, both_backends};

/// `POST /api/v1/wechat_pay/create_pay_order` for `product_id` as `trade_type`.
fn wechat_order(browser: &mut Browser, product_id: &str, trade_type: &str) -> Value {
    let body = json!({ "productId": product_id, "tradeType": trade_type });
    browser.post_json("/api/v1/wechat_pay/create_pay_order", &body).json()
}

/// Scans the order's code on the sandbox's page and pays as `openid`.
fn scan_and_pay(app: &TestApp, code_url: &str, openid: &str) {
    let scan = scan_page_url(&app.address, code_url).expect("a sandbox code_url");
    let paid = app.browser().post_form(&format!("{scan}/pay"), &[("openid", openid)]);
    assert_eq!(paid.status, 303, "{}", paid.body);
}

fn a_native_order_is_scanned_paid_and_delivered(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-native");
    let stock = app.stock(GIFT);
    let reply = wechat_order(&mut shopper, GIFT, "NATIVE");
    assert_eq!(reply["code"], "0000", "{reply}");
    let order_id = reply["data"]["orderId"].as_str().expect("orderId").to_owned();
    let code_url = reply["data"]["codeUrl"].as_str().expect("codeUrl").to_owned();
    assert_eq!(app.stock(GIFT), stock - 1);
    let again = wechat_order(&mut shopper, GIFT, "NATIVE");
    assert_eq!(again["data"], reply["data"], "the open order's code again");

    scan_and_pay(&app, &code_url, "o-wx-native");
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    app.worker.tick();
    app.wait_for_status(&mut shopper, &order_id, "DEAL_DONE");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}' AND channel = 'WECHAT_PAY' AND verified"
        )),
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM pay_order WHERE order_id = '{order_id}' AND channel = 'WECHAT_PAY'"
        )),
        1
    );
}

fn a_jsapi_order_is_paid_through_the_bridge(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-jsapi");
    let reply = wechat_order(&mut shopper, GIFT, "JSAPI");
    assert_eq!(reply["code"], "0000", "{reply}");
    let order_id = reply["data"]["orderId"].as_str().expect("orderId").to_owned();
    let params = reply["data"]["jsapi"].clone();
    assert_eq!(params["signType"], "RSA", "{reply}");
    assert!(params["package"].as_str().unwrap().starts_with("prepay_id="));
    let paid = app.browser().post_json("/sandbox/wechatpay/jsapi/pay", &params).json();
    assert_eq!(paid["err_msg"], "get_brand_wcpay_request:ok", "{paid}");
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
}

/// An open Alipay order, then WeChat Pay asked for: the Alipay trade is closed first, and the new
/// WeChat Pay order takes its place; back to Alipay closes the WeChat Pay one.
fn switching_channel_closes_the_open_order_at_its_channel_first(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-switch");
    let stock = app.stock(GIFT);
    let form = app.create_order(&mut shopper, GIFT);
    let alipay_order = crate::helpers::order_id_of(&form);
    app.open_cashier(&mut shopper, &form);
    let reply = wechat_order(&mut shopper, GIFT, "NATIVE");
    assert_eq!(reply["code"], "0000", "{reply}");
    let wechat_id = reply["data"]["orderId"].as_str().unwrap().to_owned();
    assert_ne!(wechat_id, alipay_order);
    assert_eq!(app.order_status(&mut shopper, &alipay_order), "CLOSE");
    assert_eq!(app.ledger()[&alipay_order]["status"], "TRADE_CLOSED", "closed at Alipay first");
    assert_eq!(app.stock(GIFT), stock - 1, "one unit held, by the new order");

    let back = app.create_order(&mut shopper, GIFT);
    assert_ne!(crate::helpers::order_id_of(&back), wechat_id);
    assert_eq!(app.order_status(&mut shopper, &wechat_id), "CLOSE");
    let closed = app.browser().get("/sandbox/wechatpay/ledger").json();
    let trade = closed["trades"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["out_trade_no"] == wechat_id.as_str())
        .cloned();
    assert_eq!(trade.expect("the WeChat Pay trade")["trade_state"], "CLOSED", "closed at WeChat Pay first");
}

both_backends!(
    a_native_order_is_scanned_paid_and_delivered,
    a_jsapi_order_is_paid_through_the_bridge,
    switching_channel_closes_the_open_order_at_its_channel_first
);
