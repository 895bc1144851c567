//! The checkout page's choice of channel: on a computer Alipay's form and 微信支付 side by side,
//! `POST /orders/{id}/pay-with` switching the order to WeChat Pay (its QR code, paid through the
//! sandbox's scan page) or back; inside WeChat, WeChat Pay's JSAPI button by default.

use paymall::sandbox::wechat_pay::scan_page_url;

use crate::helpers::{Backend, GIFT, TestApp, attribute, both_backends, text_after, unescape};

fn a_desktop_checkout_offers_both_channels(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-choose");
    let checkout = app.buy(&mut shopper, GIFT);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    for text in ["id=\"pay-alipay\"", "form=\"alipay-form\"", "支付宝支付", "id=\"pay-wechat\"", "微信支付"]
    {
        assert!(checkout.body.contains(text), "{text} in {}", checkout.body);
    }
    assert!(checkout.body.contains("name=\"channel\" value=\"WECHAT_PAY\""), "{}", checkout.body);
    assert!(!checkout.body.contains("checkout.js"), "no auto-submit on a computer");
}

fn pay_with_wechat_shows_the_qr_code_and_closes_the_alipay_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-scan-page");
    let checkout = app.buy(&mut shopper, GIFT).body;
    let alipay_order = text_after(&checkout, "class=\"order-id\">").to_owned();

    let page = app.pay_with(&mut shopper, &checkout, "WECHAT_PAY");
    assert_eq!(page.status, 200, "{}", page.body);
    let wechat_order = text_after(&page.body, "class=\"order-id\">").to_owned();
    assert_ne!(wechat_order, alipay_order);
    for text in [
        "<svg",
        "请使用微信扫一扫完成支付",
        "在沙箱中扫码支付",
        "wechat-pay.js",
        "value=\"ALIPAY\"",
        "改用支付宝",
    ] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    assert_eq!(app.order_status(&mut shopper, &alipay_order), "CLOSE");

    // The tester scans in the sandbox and pays: the order is paid.
    let scan = unescape(attribute(&page.body, "id=\"wechat-sandbox-scan\" href=\""));
    let sandbox_scans = scan_page_url(&app.address, "weixin://wxpay/bizpayurl?pr=").expect("the scan pages");
    assert!(scan.starts_with(&sandbox_scans), "{scan}");
    assert_eq!(app.browser().get(&scan).status, 200);
    let paid = app.browser().post_form(&format!("{scan}/pay"), &[("openid", "o-scan-page")]);
    assert_eq!(paid.status, 303, "{}", paid.body);
    app.wait_for_status(&mut shopper, &wechat_order, "PAY_SUCCESS");

    // A paid order's choice goes to its page.
    let again = app.pay_with(&mut shopper, &page.body, "ALIPAY");
    assert_eq!(
        (again.status, again.header("location")),
        (303, Some(format!("/orders/{wechat_order}").as_str()))
    );
}

fn back_to_alipay_closes_the_wechat_pay_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-back");
    let checkout = app.buy(&mut shopper, GIFT).body;
    let wechat = app.pay_with(&mut shopper, &checkout, "WECHAT_PAY").body;
    let wechat_order = text_after(&wechat, "class=\"order-id\">").to_owned();
    let alipay = app.pay_with(&mut shopper, &wechat, "ALIPAY");
    assert_eq!(alipay.status, 200, "{}", alipay.body);
    assert!(alipay.body.contains("id=\"pay-alipay\""), "{}", alipay.body);
    assert_eq!(app.order_status(&mut shopper, &wechat_order), "CLOSE");
}

fn inside_wechat_buy_gives_the_jsapi_page(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut wechat = app.login_in_wechat("o-jsapi-page");
    let checkout = app.buy(&mut wechat, GIFT);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    let order_id = text_after(&checkout.body, "class=\"order-id\">").to_owned();
    for text in ["id=\"pay-wechat-jsapi\"", "data-sandbox=\"1\"", "wechat-pay.js", "使用支付宝支付"] {
        assert!(checkout.body.contains(text), "{text} in {}", checkout.body);
    }
    assert!(!checkout.body.contains("punchout_form"), "{}", checkout.body);
    let params = serde_json::json!({
        "appId": unescape(attribute(&checkout.body, "data-app-id=\"")),
        "timeStamp": unescape(attribute(&checkout.body, "data-time-stamp=\"")),
        "nonceStr": unescape(attribute(&checkout.body, "data-nonce-str=\"")),
        "package": unescape(attribute(&checkout.body, "data-package=\"")),
        "signType": unescape(attribute(&checkout.body, "data-sign-type=\"")),
        "paySign": unescape(attribute(&checkout.body, "data-pay-sign=\"")),
    });
    assert!(params["package"].as_str().unwrap().starts_with("prepay_id="), "{params}");
    let paid = app.browser().post_json("/sandbox/wechatpay/jsapi/pay", &params).json();
    assert_eq!(paid["err_msg"], "get_brand_wcpay_request:ok", "{paid}");
    app.wait_for_status(&mut wechat, &order_id, "PAY_SUCCESS");
}

fn inside_wechat_alipay_gives_the_guide(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut wechat = app.login_in_wechat("o-jsapi-alipay");
    let checkout = app.buy(&mut wechat, GIFT).body;
    let page = app.pay_with(&mut wechat, &checkout, "ALIPAY");
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("id=\"wechat-guide\""), "{}", page.body);
    assert!(!page.body.contains("wechat-pay.js"), "{}", page.body);
}

fn pay_with_needs_the_csrf_token_and_the_shoppers_own_order(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-owner");
    let checkout = app.buy(&mut shopper, GIFT).body;
    let order_id = text_after(&checkout, "class=\"order-id\">").to_owned();
    let path = format!("/orders/{order_id}/pay-with");

    let forged = shopper.post_form(&path, &[("channel", "WECHAT_PAY")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "nothing changed");

    let mut other = app.login("o-other");
    let csrf = other.csrf(&format!("/products/{GIFT}"));
    let theirs = other.post_form(&path, &[("csrf", &csrf), ("channel", "WECHAT_PAY")]);
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "nothing changed");
}

both_backends!(
    a_desktop_checkout_offers_both_channels,
    pay_with_wechat_shows_the_qr_code_and_closes_the_alipay_order,
    back_to_alipay_closes_the_wechat_pay_order,
    inside_wechat_buy_gives_the_jsapi_page,
    inside_wechat_alipay_gives_the_guide,
    pay_with_needs_the_csrf_token_and_the_shoppers_own_order,
);
