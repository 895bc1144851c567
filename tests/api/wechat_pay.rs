//! Orders paid with WeChat Pay through the shop, against the sandbox's API v3: Native (a code
//! scanned) and JSAPI (the WeChat browser's pay call), the notification recorded by the same rules
//! as Alipay's, a switch of channel closing the open order at its channel first; forged
//! notifications, duplicates, a dropped one, close at timeout, refunds, coupons and group buys.

use std::time::{Duration, Instant};

use paymall::gateways::wechat_pay::SignedHeaders;
use serde_json::{Value, json};

use crate::helpers::{Backend, Browser, GIFT, MUG, TestApp, both_backends};

/// `POST /api/v1/wechat_pay/create_pay_order` for `product_id` as `trade_type`.
fn wechat_order(app: &TestApp, browser: &mut Browser, product_id: &str, trade_type: &str) -> Value {
    app.wechat_order(browser, &json!({ "productId": product_id, "tradeType": trade_type }))
}

fn a_native_order_is_scanned_paid_and_delivered(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-native");
    let stock = app.stock(GIFT);
    let reply = wechat_order(&app, &mut shopper, GIFT, "NATIVE");
    assert_eq!(reply["code"], "0000", "{reply}");
    let order_id = reply["data"]["orderId"].as_str().expect("orderId").to_owned();
    let code_url = reply["data"]["codeUrl"].as_str().expect("codeUrl").to_owned();
    assert_eq!(app.stock(GIFT), stock - 1);
    let again = wechat_order(&app, &mut shopper, GIFT, "NATIVE");
    assert_eq!(again["data"], reply["data"], "the open order's code again");

    app.scan_and_pay(&code_url, "o-wx-native");
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
    let reply = wechat_order(&app, &mut shopper, GIFT, "JSAPI");
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
    let reply = wechat_order(&app, &mut shopper, GIFT, "NATIVE");
    assert_eq!(reply["code"], "0000", "{reply}");
    let wechat_id = reply["data"]["orderId"].as_str().unwrap().to_owned();
    assert_ne!(wechat_id, alipay_order);
    assert_eq!(app.order_status(&mut shopper, &alipay_order), "CLOSE");
    assert_eq!(app.ledger()[&alipay_order]["status"], "TRADE_CLOSED", "closed at Alipay first");
    assert_eq!(app.stock(GIFT), stock - 1, "one unit held, by the new order");

    let back = app.create_order(&mut shopper, GIFT);
    assert_ne!(crate::helpers::order_id_of(&back), wechat_id);
    assert_eq!(app.order_status(&mut shopper, &wechat_id), "CLOSE");
    assert_eq!(app.wechat_trade(&wechat_id)["trade_state"], "CLOSED", "closed at WeChat Pay first");
}

fn total_cents(app: &TestApp, order_id: &str) -> i64 {
    app.scalar(&format!("SELECT total_cents AS n FROM pay_order WHERE order_id = '{order_id}'"))
}

fn count(app: &TestApp, sql: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) AS n FROM {sql}"))
}

/// Polls `done` for up to 20 seconds, ticking the worker between looks.
fn tick_until(app: &TestApp, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        app.worker.tick();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Notifications that do not come from WeChat Pay for this order as placed: each is answered
/// non-2xx with `{"code":"FAIL"}`, stored bounded as refused, and pays nothing; the genuine one
/// still pays.
fn forged_notifications_change_nothing(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-forged");
    let (order_id, _) = app.wechat_native(&mut shopper, json!({ "productId": GIFT }));
    let paid = app.wx_transaction(&order_id, total_cents(&app, &order_id));
    let now = chrono::Utc::now().timestamp();
    let body = app.wx_notification(&paid);
    let signed = |body: &str| app.wx_signed(body, now);
    let altered = |field: &str, value: Value| {
        let mut transaction = paid.clone();
        transaction[field] = value;
        let body = app.wx_notification(&transaction);
        (signed(&body), body)
    };
    let bad_signature = SignedHeaders { signature: signed("another body").signature, ..signed(&body) };
    let unknown_serial = SignedHeaders {
        serial: "PUB_KEY_ID_0000000000000000000000000000000000000001".into(),
        ..signed(&body)
    };
    let mut envelope: Value = serde_json::from_str(&body).unwrap();
    let ciphertext = envelope["resource"]["ciphertext"].as_str().unwrap().to_owned();
    let flipped = if ciphertext.starts_with('A') { "B" } else { "A" };
    envelope["resource"]["ciphertext"] = json!(format!("{flipped}{}", &ciphertext[1..]));
    let tampered = envelope.to_string();
    let attacks = [
        ("bad signature", bad_signature, body.clone()),
        ("stale timestamp", app.wx_signed(&body, now - 600), body.clone()),
        ("unknown serial", unknown_serial, body.clone()),
        ("tampered ciphertext", signed(&tampered), tampered),
    ];
    let attacks = attacks.into_iter().map(|(what, headers, body)| (what, (headers, body))).chain([
        ("another mchid", altered("mchid", json!("1900009999"))),
        ("another appid", altered("appid", json!("wx0000000000000000"))),
        ("another amount", altered("amount", json!({ "total": 1, "payer_total": 1, "currency": "CNY" }))),
    ]);
    let mut refused = 0;
    for (what, (headers, body)) in attacks {
        let reply = app.post_wx_notify(&headers, &body);
        assert!(!(200..300).contains(&reply.status), "{what}: {} {}", reply.status, reply.body);
        assert_eq!(reply.json()["code"], "FAIL", "{what}");
        assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "{what}");
        refused += 1;
        assert_eq!(
            count(&app, "alipay_notify WHERE channel = 'WECHAT_PAY' AND NOT verified"),
            refused,
            "{what} stored as refused"
        );
    }
    let not_utf8 = app.browser().post_raw("/api/v1/wechat_pay/notify", "application/json", b"{\xff}");
    assert_eq!((not_utf8.status, &not_utf8.json()["code"]), (400, &json!("FAIL")), "{}", not_utf8.body);
    let longest = app.scalar("SELECT CAST(MAX(LENGTH(raw)) AS BIGINT) AS n FROM alipay_notify");
    assert!(
        longest <= paymall::services::payment::UNVERIFIED_PREFIX_BYTES as i64,
        "stored bounded: {longest}"
    );
    assert_eq!(count(&app, "outbox"), 0);

    assert_eq!(app.wx_notify(&paid).status, 204, "the genuine notification pays");
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_SUCCESS");
}

/// One WeChat Pay transaction pays one order: the same `transaction_id` claimed for a second order
/// pays nothing and is held for the admin, as for Alipay.
fn a_transaction_pays_one_order_only(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (mut first, mut second) = (app.login("o-wx-one"), app.login("o-wx-other"));
    let (one, _) = app.wechat_native(&mut first, json!({ "productId": GIFT }));
    let (other, _) = app.wechat_native(&mut second, json!({ "productId": GIFT }));
    let paid = app.wx_transaction(&one, total_cents(&app, &one));
    assert_eq!(app.wx_notify(&paid).status, 204);
    let mut claimed = app.wx_transaction(&other, total_cents(&app, &other));
    claimed["transaction_id"] = paid["transaction_id"].clone();
    let reply = app.wx_notify(&claimed);
    assert_eq!((reply.status, &reply.json()["code"]), (400, &json!("FAIL")), "{}", reply.body);
    assert_eq!(app.order_status(&mut second, &other), "PAY_WAIT");
    assert_eq!(count(&app, "orphan_payment WHERE kind = 'TRADE_NO_REUSED' AND channel = 'WECHAT_PAY'"), 1);
}

fn fifty_concurrent_copies_of_a_notification_pay_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-fifty");
    let (order_id, _) = app.wechat_native(&mut shopper, json!({ "productId": GIFT }));
    let body = app.wx_notification(&app.wx_transaction(&order_id, total_cents(&app, &order_id)));
    let headers = app.wx_signed(&body, chrono::Utc::now().timestamp());
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..50).map(|_| s.spawn(|| app.post_wx_notify(&headers, &body).status)).collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(statuses.iter().all(|s| *s == 204), "{statuses:?}");
    for _ in 0..3 {
        app.worker.tick();
    }
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(
        count(&app, &format!("order_event WHERE order_id = '{order_id}' AND to_status = 'PAY_SUCCESS'")),
        1
    );
    assert_eq!(count(&app, "shipment"), 1);
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 1);
}

/// A payment whose notification WeChat Pay never sends is found by the background query.
fn a_dropped_notification_is_found_by_the_query(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.query_after_secs = 0);
    app.wechat_faults(json!({ "drop_notify": true }));
    let mut shopper = app.login("o-wx-dropped");
    let (order_id, code_url) = app.wechat_native(&mut shopper, json!({ "productId": GIFT }));
    app.scan_and_pay(&code_url, "o-wx-dropped");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_WAIT", "no notification came");
    app.execute("UPDATE pay_order SET next_query_at = order_time");
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(count(&app, &format!("order_event WHERE order_id = '{order_id}' AND cause = 'query'")), 1);
    assert_eq!(count(&app, "shipment"), 1);
}

/// At the payment window's end an order is closed at WeChat Pay before it closes here: the
/// unpaid one closes at both (its code can no longer be paid), the one paid there without a
/// notification is refused the close and ends paid.
fn an_unpaid_order_closes_at_wechat_pay_then_locally(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.compensation.close_after_minutes = 0;
        s.compensation.query_after_secs = 3600;
    });
    let stock = app.stock(MUG);
    let mut shopper = app.login("o-wx-never-pays");
    let (unpaid, code_url) = app.wechat_native(&mut shopper, json!({ "productId": MUG }));
    app.wechat_faults(json!({ "drop_notify": true }));
    let mut payer = app.login("o-wx-pays-late");
    let (paid, paid_code) = app.wechat_native(&mut payer, json!({ "productId": GIFT }));
    app.scan_and_pay(&paid_code, "o-wx-pays-late");
    assert_eq!(app.order_status(&mut payer, &paid), "PAY_WAIT", "no notification came");
    app.worker.tick();
    assert_eq!(app.wechat_trade(&unpaid)["trade_state"], "CLOSED", "closed at WeChat Pay");
    assert_eq!(app.order_status(&mut shopper, &unpaid), "CLOSE");
    assert_eq!(app.stock(MUG), stock, "stock is back");
    let scan = paymall::sandbox::wechat_pay::scan_page_url(&app.address, &code_url).unwrap();
    let refused = app.browser().post_form(&format!("{scan}/pay"), &[("openid", "o-wx-never-pays")]);
    assert_ne!(refused.status, 303, "the closed trade cannot be paid");

    assert_eq!(app.wechat_trade(&paid)["trade_state"], "SUCCESS");
    app.worker.tick();
    let status = app.order_status(&mut payer, &paid);
    assert!(status == "PAY_SUCCESS" || status == "DEAL_DONE", "paid at WeChat Pay, so not closed: {status}");
}

/// A WeChat Pay Native order of the gift, paid by `openid` at the sandbox and delivered.
fn delivered_order(app: &TestApp, shopper: &mut Browser, openid: &str) -> String {
    let (order_id, code_url) = app.wechat_native(shopper, json!({ "productId": GIFT }));
    app.scan_and_pay(&code_url, openid);
    app.wait_for_status(shopper, &order_id, "PAY_SUCCESS");
    app.worker.tick();
    app.wait_for_status(shopper, &order_id, "DEAL_DONE");
    order_id
}

/// The admin's Refund pressed twice: one refund at WeChat Pay (answered PROCESSING, then
/// notified SUCCESS), the order REFUNDED and its stock back.
fn a_refund_asked_twice_is_made_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-refund");
    let order_id = delivered_order(&app, &mut shopper, "o-wx-refund");
    let stock = app.stock(GIFT);
    let mut admin = app.admin();
    let csrf = admin.csrf(&format!("/admin/orders/{order_id}"));
    for _ in 0..2 {
        let reply = admin.post_form(&format!("/admin/orders/{order_id}/refund"), &[("csrf", &csrf)]);
        assert_eq!(reply.status, 303, "{}", reply.body);
    }
    assert_eq!(app.order_status(&mut shopper, &order_id), "REFUND_WAIT");
    tick_until(&app, "the order was not refunded", || {
        app.order_status(&mut shopper, &order_id) == "REFUNDED"
    });
    let refunds = app.wechat_refunds(&order_id);
    assert_eq!(refunds.len(), 1, "refunded once: {refunds:?}");
    assert_eq!(refunds[0]["status"], "SUCCESS");
    assert_eq!(app.wechat_trade(&order_id)["refunded"], total_cents(&app, &order_id));
    assert_eq!(app.stock(GIFT), stock + 1);
}

/// A refund notification settles nothing by itself: a forged one is refused like a forged
/// payment, and a genuine one for an order nobody asked to refund only makes the refunds due
/// now, of which there are none: the delivered order, its stock and WeChat Pay's trade stay
/// as they were.
fn a_refund_notification_moves_no_money_by_itself(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-refund-notice");
    let order_id = delivered_order(&app, &mut shopper, "o-wx-refund-notice");
    let stock = app.stock(GIFT);
    let total = total_cents(&app, &order_id);
    let refund = json!({
        "mchid": app.settings.wechat_pay.mch_id, "out_trade_no": order_id,
        "transaction_id": format!("42000{order_id}"), "out_refund_no": format!("R{order_id}"),
        "refund_id": "50300000000000000001", "refund_status": "SUCCESS",
        "user_received_account": "支付用户零钱",
        "amount": { "total": total, "refund": total, "payer_total": total, "payer_refund": total },
    });
    let body = app.wx_notification_of("REFUND.SUCCESS", "refund", &refund);
    let now = chrono::Utc::now().timestamp();
    let forged = SignedHeaders {
        signature: app.wx_signed("another body", now).signature,
        ..app.wx_signed(&body, now)
    };
    let reply = app.post_wx_notify(&forged, &body);
    assert!(!(200..300).contains(&reply.status), "forged: {} {}", reply.status, reply.body);
    assert_eq!(reply.json()["code"], "FAIL");
    assert_eq!(
        count(&app, "alipay_notify WHERE channel = 'WECHAT_PAY' AND NOT verified"),
        1,
        "stored as refused"
    );

    let reply = app.post_wx_notify(&app.wx_signed(&body, now), &body);
    assert!((200..300).contains(&reply.status), "genuine: {} {}", reply.status, reply.body);
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &order_id), "DEAL_DONE");
    assert_eq!(app.stock(GIFT), stock);
    assert!(app.wechat_refunds(&order_id).is_empty(), "nothing refunded at WeChat Pay");
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 1, "the delivery's entry, and only it");
    assert_eq!(count(&app, "outbox WHERE kind = 'refund'"), 0, "no refund enqueued");
}

/// 直减5 on the tea: WeChat Pay is asked for the discounted total, and the payment uses the coupon.
fn a_coupon_order_is_paid_with_wechat_pay(backend: Backend) {
    const TEA: &str = "100010090092";
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-wx-coupon");
    let claim = shopper.post_json("/api/v1/coupons/claim", &json!({ "templateId": 9003 })).json();
    let coupon = claim["data"]["couponId"].as_i64().unwrap_or_else(|| panic!("{claim}"));
    let (order_id, code_url) =
        app.wechat_native(&mut shopper, json!({ "productId": TEA, "couponId": coupon }));
    assert_eq!(app.wechat_trade(&order_id)["total"], 5300, "¥58.00 less ¥5.00");
    app.scan_and_pay(&code_url, "o-wx-coupon");
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    assert_eq!(
        count(
            &app,
            &format!(
                "user_coupon WHERE coupon_id = {coupon} AND status = 'USED' AND used_order_id = '{order_id}'"
            )
        ),
        1
    );
}

/// A team of three for the umbrella, each member paying with WeChat Pay: the third payment
/// forms it and every member is delivered once.
fn a_group_buy_team_forms_with_wechat_pay(backend: Backend) {
    let app = TestApp::spawn(backend);
    let group = json!({ "productId": "100010090095", "marketType": 1, "activityId": 100_123 });
    let mut shoppers = Vec::new();
    let mut team_id = Value::Null;
    for i in 0..3 {
        let openid = format!("o-wx-team-{i}");
        let mut shopper = app.login(&openid);
        let mut body = group.clone();
        if i > 0 {
            body["teamId"] = team_id.clone();
        }
        let (order_id, code_url) = app.wechat_native(&mut shopper, body);
        if i == 0 {
            team_id = shopper.get(&format!("/api/v1/orders/{order_id}")).json()["data"]["teamId"].clone();
            assert!(team_id.is_string(), "{team_id}");
        }
        assert_eq!(app.wechat_trade(&order_id)["total"], 6900);
        shoppers.push((shopper, order_id, code_url, openid));
    }
    for (shopper, order_id, code_url, openid) in &mut shoppers {
        app.scan_and_pay(code_url, openid);
        tick_until(&app, "the payment was not recorded", || {
            app.order_status(shopper, order_id) != "PAY_WAIT"
        });
    }
    let team = team_id.as_str().unwrap();
    assert_eq!(count(&app, &format!("group_buy_team WHERE team_id = '{team}' AND status = 'COMPLETE'")), 1);
    app.worker.tick();
    for (shopper, order_id, ..) in &mut shoppers {
        app.wait_for_status(shopper, order_id, "DEAL_DONE");
    }
    assert_eq!(count(&app, "shipment"), 3);
}

both_backends!(
    a_transaction_pays_one_order_only,
    a_native_order_is_scanned_paid_and_delivered,
    a_jsapi_order_is_paid_through_the_bridge,
    switching_channel_closes_the_open_order_at_its_channel_first,
    forged_notifications_change_nothing,
    fifty_concurrent_copies_of_a_notification_pay_once,
    a_dropped_notification_is_found_by_the_query,
    an_unpaid_order_closes_at_wechat_pay_then_locally,
    a_refund_asked_twice_is_made_once,
    a_refund_notification_moves_no_money_by_itself,
    a_coupon_order_is_paid_with_wechat_pay,
    a_group_buy_team_forms_with_wechat_pay
);
