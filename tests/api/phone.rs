//! Paying on a phone: Alipay's phone cashier (手机网站支付, `alipay.trade.wap.pay`) for a phone's
//! browser, the PC cashier for a computer, and inside WeChat a guide to the phone's browser with
//! the order's pay link.

use paymall::gateways::alipay::{append_sign, load_private_key};

use crate::helpers::{
    Backend, Browser, DESKTOP_UA, GIFT, IPHONE_UA, MUG, TestApp, attribute, both_backends, order_id_of,
    unescape,
};

/// The payment form in a checkout page (after the top bar's Log out form).
fn form_in(page: &str) -> &str {
    &page[page.find("<form name=\"punchout_form\"").unwrap_or_else(|| panic!("no payment form: {page}"))..]
}

/// A browser logged in as `openid` whose user agent is `user_agent`.
fn shopper(app: &TestApp, openid: &str, user_agent: &str) -> Browser {
    app.login(openid).with_header("User-Agent", user_agent)
}

fn a_phone_gets_the_wap_form_and_a_computer_the_page_form(backend: Backend) {
    let app = TestApp::spawn(backend);
    let alipay = &app.settings.alipay;

    let mut phone = shopper(&app, "o-phone", IPHONE_UA);
    let checkout = app.buy(&mut phone, GIFT);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    assert!(checkout.body.contains("checkout.js"), "the phone goes on to the cashier by itself");
    let (params, biz) = app.verified_form(form_in(&checkout.body));
    assert_eq!(params["method"], "alipay.trade.wap.pay");
    assert_eq!(biz["product_code"], "QUICK_WAP_WAY");
    assert_eq!(biz["quit_url"], format!("{}/products/{GIFT}", app.address));
    assert_eq!(biz["total_amount"], "1.68");
    assert!(biz["time_expire"].as_str().is_some_and(|t| t.len() == 19), "{biz}");
    assert_eq!(params["notify_url"], alipay.notify_url);
    assert_eq!(params["return_url"], alipay.return_url);

    let mut computer = shopper(&app, "o-computer", DESKTOP_UA);
    let form = app.create_order(&mut computer, GIFT);
    let (params, biz) = app.verified_form(&form);
    assert_eq!(params["method"], "alipay.trade.page.pay");
    assert_eq!(biz["product_code"], "FAST_INSTANT_TRADE_PAY");
    assert!(biz.get("quit_url").is_none(), "{biz}");
    assert_eq!(params["notify_url"], alipay.notify_url);
    assert_eq!(params["return_url"], alipay.return_url);

    // An open order keeps the form it was signed with, on whatever device the shopper returns.
    let mut same_shopper_on_a_computer = Browser::new(&app.address).with_header("User-Agent", DESKTOP_UA);
    same_shopper_on_a_computer.cookies = phone.cookies.clone();
    let again = app.create_order(&mut same_shopper_on_a_computer, GIFT);
    assert_eq!(app.verified_form(&again).0["method"], "alipay.trade.wap.pay");
}

fn the_sandbox_cashier_checks_the_product_code_against_the_method(backend: Backend) {
    let app = TestApp::spawn(backend);
    let key = load_private_key(&app.settings.alipay.merchant_private_key_path).expect("merchant key");
    let open = |method: &str, product_code: &str, order_id: &str| {
        let biz = serde_json::json!({
            "out_trade_no": order_id, "total_amount": "1.68", "subject": "x", "product_code": product_code,
        });
        let mut params: Vec<(String, String)> = [
            ("app_id", app.settings.alipay.app_id.as_str()),
            ("method", method),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("timestamp", "2026-12-04 10:00:00"),
            ("version", "1.0"),
            ("biz_content", &biz.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        append_sign(&key, &mut params, &[]);
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        app.browser().post_form("/sandbox/alipay/gateway.do", &pairs)
    };
    for (method, product_code) in
        [("alipay.trade.wap.pay", "FAST_INSTANT_TRADE_PAY"), ("alipay.trade.page.pay", "QUICK_WAP_WAY")]
    {
        let refused = open(method, product_code, "2612040000000001");
        let answer = refused.json();
        let inner = &answer[format!("{}_response", method.replace('.', "_"))];
        assert_eq!(inner["code"], "40004", "{}", refused.body);
        assert_eq!(inner["sub_code"], "ACQ.PRODUCT_CODE_NOT_MATCH");
    }
    assert!(app.ledger().is_empty(), "a refused request opens no trade");
    let cashier = open("alipay.trade.wap.pay", "QUICK_WAP_WAY", "2612040000000002");
    assert!(cashier.body.contains("data-method=\"alipay.trade.wap.pay\""), "{}", cashier.body);
    assert_eq!(app.ledger()["2612040000000002"]["method"], "alipay.trade.wap.pay");
}

fn a_wap_order_pays_end_to_end(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut phone = shopper(&app, "o-wap-buyer", IPHONE_UA);
    let form = app.create_order(&mut phone, MUG);
    let order_id = app.pay_at_cashier(&mut phone, &form);
    assert_eq!(app.ledger()[&order_id]["method"], "alipay.trade.wap.pay");
    app.wait_for_status(&mut phone, &order_id, "PAY_SUCCESS");
    app.worker.tick();
    app.wait_for_status(&mut phone, &order_id, "DEAL_DONE");
    let page = phone.get(&format!("/orders/{order_id}"));
    assert!(page.body.contains("data-status=\"DEAL_DONE\""), "{}", page.body);
}

fn inside_wechat_the_checkout_shows_the_guide_and_the_pay_link(backend: Backend) {
    // Without WeChat Pay, Buy inside WeChat is an Alipay order (with it, see `wechat_pay_pages`).
    let app = TestApp::spawn_with(backend, |s| s.wechat_pay.mch_id.clear());
    let mut wechat = app.login_in_wechat("o-in-wechat");
    let checkout = app.buy(&mut wechat, GIFT);
    assert_eq!(checkout.status, 200, "{}", checkout.body);
    assert!(checkout.body.contains("点击右上角 ··· 选择在浏览器打开"), "{}", checkout.body);
    assert!(!checkout.body.contains("punchout_form"), "no cashier form inside WeChat");
    assert!(!checkout.body.contains("checkout.js"));
    let order_id = checkout.body.split("class=\"order-id\">").nth(1).and_then(|r| r.split('<').next());
    let order_id = order_id.expect("the order id").to_owned();
    let link = unescape(attribute(&checkout.body, "id=\"pay-link\" type=\"text\" value=\""));
    let plain = format!("{}/orders/{order_id}/pay", app.address);
    assert!(link.starts_with(&format!("{plain}?until=")) && link.contains("&sig="), "a signed link: {link}");

    // The phone's browser shares no cookies with WeChat: the signed link opens the order's form
    // with no session, and goes on to the phone cashier.
    let mut browser = Browser::new(&app.address).with_header("User-Agent", IPHONE_UA);
    let pay = browser.get(&link);
    assert_eq!(pay.status, 200, "{}", pay.body);
    assert!(pay.body.contains("checkout.js"), "it goes on to the cashier by itself");
    let form = form_in(&pay.body);
    assert_eq!(order_id_of(form), order_id, "the same order");
    let (params, biz) = app.verified_form(form);
    assert_eq!(
        (params["method"].as_str(), &biz["product_code"]),
        ("alipay.trade.wap.pay", &"QUICK_WAP_WAY".into()),
        "the form as it was signed inside WeChat"
    );
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM pay_order"), 1, "the same signed form, no new order");

    // A link whose signature, order or time was changed opens nothing.
    let (base, sig) = link.split_once("&sig=").unwrap();
    let forged = format!(
        "{base}&sig={}",
        if sig.starts_with('0') { sig.replacen('0', "1", 1) } else { format!("0{}", &sig[1..]) }
    );
    assert_eq!(browser.get(&forged).status, 403);
    let until: i64 = base.rsplit('=').next().unwrap().parse().unwrap();
    assert_eq!(
        browser.get(&link.replace(&format!("until={until}"), &format!("until={}", until + 3600))).status,
        403
    );
    assert_eq!(browser.get(&link.replace(&order_id, "2612040000009999")).status, 403);
    // Without a signature the pay page is the shopper's own: a visitor logs in first.
    let visitor = browser.get(&plain);
    assert_eq!(visitor.status, 303);
    assert_eq!(
        visitor.header("location"),
        Some(format!("/login?next=%2Forders%2F{order_id}%2Fpay").as_str()),
        "a visitor logs in first and comes back"
    );

    // Once its form expired, the signed link opens nothing; the shopper's own pay page signs a
    // new order that replaces it.
    app.execute(&format!("UPDATE pay_order SET expire_at = order_time WHERE order_id = '{order_id}'"));
    let expired = browser.get(&link);
    assert_eq!(expired.status, 409, "{}", expired.body);
    browser.cookies = wechat.cookies.clone();
    let fresh = browser.get(&plain);
    assert_eq!(fresh.status, 200, "{}", fresh.body);
    let new_id = order_id_of(form_in(&fresh.body));
    assert_ne!(new_id, order_id);
    app.verified_form(form_in(&fresh.body));
    assert_eq!(app.order_status(&mut browser, &order_id), "CLOSE");

    // A paid (or closed) order's link shows the order.
    let closed = browser.get(&plain);
    assert_eq!(closed.header("location"), Some(format!("/orders/{order_id}").as_str()));
    // Somebody else's order is not found.
    let stranger = shopper(&app, "o-stranger", IPHONE_UA).get(&format!("/orders/{new_id}/pay"));
    assert_eq!(stranger.status, 404);
}

both_backends!(
    a_phone_gets_the_wap_form_and_a_computer_the_page_form,
    the_sandbox_cashier_checks_the_product_code_against_the_method,
    a_wap_order_pays_end_to_end,
    inside_wechat_the_checkout_shows_the_guide_and_the_pay_link,
);
