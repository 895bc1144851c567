//! Notifications an attacker sends: repeated fields, a trade reused for a second order, junk in
//! bulk; and the payments no order takes (orphans), refunded once.

use std::time::{Duration, Instant};

use crate::helpers::{
    Backend, GIFT, PaymentPath, TestApp, both_backends, every_payment_path, hidden, order_id_of,
};

fn encoded(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).expect("form")
}

fn amount_of(app: &TestApp, order_id: &str) -> String {
    let cents = app.scalar(&format!("SELECT total_cents AS n FROM pay_order WHERE order_id = '{order_id}'"));
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// The attacks of the finding: a notification Alipay once signed (for another order, for a
/// trade still waiting, for another merchant) with the victim's fields put before it. The
/// signature covered one reading of the form and the payment acted on another.
fn repeated_fields_pay_nothing(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut victim = app.login("o-victim");
    let target = order_id_of(&app.create_order(&mut victim, GIFT));
    let mut other = app.login("o-other");
    let others = order_id_of(&app.create_order(&mut other, GIFT));
    let amount = amount_of(&app, &target);
    let ours = format!("out_trade_no={target}&total_amount={amount}&trade_status=TRADE_SUCCESS");
    let another_order = app.signed_notify(&[("out_trade_no", &others), ("total_amount", &amount)], false);
    let still_waiting = app.signed_notify(
        &[("out_trade_no", &target), ("total_amount", &amount), ("trade_status", "WAIT_BUYER_PAY")],
        false,
    );
    let merchant =
        format!("app_id={}&seller_id={}", app.settings.alipay.app_id, app.settings.alipay.seller_id);
    let another_merchant = app.signed_notify(
        &[
            ("out_trade_no", &others),
            ("total_amount", &amount),
            ("app_id", "2021999"),
            ("seller_id", "2088999"),
        ],
        false,
    );
    let attacks = [
        format!("{ours}&{}", encoded(&another_order)),
        format!("{ours}&{}", encoded(&still_waiting)),
        format!("{merchant}&{ours}&{}", encoded(&another_merchant)),
        format!("{}&out_trade_no={others}", encoded(&still_waiting)),
    ];
    for body in &attacks {
        let reply = app.post_notify_body(body.as_bytes());
        assert_eq!((reply.status, reply.body.as_str()), (200, "fail"), "{body}");
        assert_eq!(app.order_status(&mut victim, &target), "PAY_WAIT", "{body}");
        assert_eq!(app.order_status(&mut other, &others), "PAY_WAIT", "{body}");
    }
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) AS n FROM alipay_notify WHERE verified = FALSE AND outcome LIKE 'field % repeated'"
        ),
        attacks.len() as i64
    );
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox"), 0);
    // The same notifications sent as signed pay as they should.
    assert_eq!(app.post_notify(&another_order), "success");
    assert_eq!(app.order_status(&mut other, &others), "PAY_SUCCESS");
}

/// One Alipay trade pays one order: a second order naming a trade that paid another is refused,
/// changes nothing and is held for the admin, however often it comes.
fn a_trade_pays_one_order_only(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut first = app.login("o-first");
    let paid = order_id_of(&app.create_order(&mut first, GIFT));
    let mut second = app.login("o-second");
    let claiming = order_id_of(&app.create_order(&mut second, GIFT));
    let trade = [("trade_no", "2026120422001400000777")];
    let pays = app.signed_notify(
        &[("out_trade_no", &paid), trade[0], ("total_amount", &amount_of(&app, &paid))],
        false,
    );
    assert_eq!(app.post_notify(&pays), "success");
    let claims = app.signed_notify(
        &[
            ("out_trade_no", &claiming),
            trade[0],
            ("total_amount", &amount_of(&app, &claiming)),
            ("notify_id", "n2"),
        ],
        false,
    );
    for _ in 0..2 {
        assert_eq!(app.post_notify(&claims), "fail");
    }
    assert_eq!(app.order_status(&mut first, &paid), "PAY_SUCCESS");
    assert_eq!(app.order_status(&mut second, &claiming), "PAY_WAIT");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM orphan_payment WHERE kind = 'TRADE_NO_REUSED' \
             AND out_trade_no = '{claiming}' AND status = 'OPEN'"
        )),
        1
    );
    // Nor does an order the shop does not know: no orphan to refund out of another order's money.
    let unknown = app.signed_notify(
        &[("out_trade_no", "2612049999999999"), trade[0], ("total_amount", "1.68"), ("notify_id", "n3")],
        false,
    );
    assert_eq!(app.post_notify(&unknown), "fail");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM orphan_payment WHERE kind = 'UNKNOWN_ORDER'"), 0);
    let page = app.admin().get("/admin/orphans").body;
    assert!(page.contains(&claiming) && page.contains("TRADE_NO_REUSED"), "{page}");
    assert!(!page.contains("/refund\""), "a reused trade is never offered for refund: {page}");
    app.worker.tick();
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'orphan_refund'"), 0);
}

/// Alipay signs `k=v&...` unescaped, so a signed notification's text can be split into other
/// fields: `out_trade_no` swallowing the field after it (`receipt_amount`) keeps the signature.
/// Such a value is refused before anything reads it.
fn a_signed_text_split_another_way_pays_nothing(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-split");
    let paid = order_id_of(&app.create_order(&mut shopper, GIFT));
    let amount = amount_of(&app, &paid);
    let signed = app.signed_notify(
        &[("out_trade_no", &paid), ("total_amount", &amount), ("receipt_amount", &amount)],
        false,
    );
    assert_eq!(app.post_notify(&signed), "success");
    let mut split: Vec<(String, String)> =
        signed.into_iter().filter(|(k, _)| k != "out_trade_no" && k != "receipt_amount").collect();
    split.push(("out_trade_no".into(), format!("{paid}&receipt_amount={amount}")));
    assert_eq!(app.post_notify(&split), "fail");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM orphan_payment"), 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM alipay_notify WHERE outcome LIKE 'field out_trade_no holds%'"),
        1
    );
}

/// Unsigned junk keeps a bounded prefix and a hash: 200 bodies of 60 KB store a few hundred KB.
fn junk_notifications_are_stored_bounded(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.limits.unverified_notifications_per_minute = 1000);
    let junk =
        format!("notify_id=junk&out_trade_no={}&sign=Zm9yZ2Vk&pad={}", "9".repeat(5000), "a".repeat(55_000));
    for _ in 0..200 {
        let reply = app.post_notify_body(junk.as_bytes());
        assert_eq!((reply.status, reply.body.as_str()), (200, "fail"));
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify WHERE raw_sha256 IS NOT NULL"), 200);
    let stored = app.scalar("SELECT CAST(SUM(LENGTH(raw) + LENGTH(raw_sha256) + LENGTH(outcome) + LENGTH(COALESCE(out_trade_no, '')) \
         + LENGTH(COALESCE(notify_id, ''))) AS BIGINT) AS n FROM alipay_notify",
    );
    assert!(stored < 200 * 1024, "{stored} bytes stored for 200 junk notifications");
}

/// A client whose notifications fail verification is slowed down; a verified notification from
/// the same address is never refused for it.
fn failing_notifications_are_rate_limited_and_verified_ones_never(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.limits.unverified_notifications_per_minute = 5);
    let mut shopper = app.login("o-limited");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    for _ in 0..5 {
        assert_eq!(app.post_notify_body(b"notify_id=x&sign=Zm9yZ2Vk").status, 200);
    }
    let limited = app.post_notify_body(b"notify_id=x&sign=Zm9yZ2Vk");
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify"), 5, "nothing stored over the limit");
    let pays = app
        .signed_notify(&[("out_trade_no", &order_id), ("total_amount", &amount_of(&app, &order_id))], false);
    assert_eq!(app.post_notify(&pays), "success");
    assert_eq!(app.order_status(&mut shopper, &order_id), "PAY_SUCCESS");
}

/// An order the shop lost (here deleted) and then paid at the cashier: the signed notification
/// is an orphan payment, answered `success`, and refunded exactly once however often it is
/// asked for.
fn lose_an_order_then_pay_it(app: &TestApp, openid: &str) -> String {
    let mut shopper = app.login(openid);
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = order_id_of(&form);
    for table in ["pay_form", "order_event", "pay_order"] {
        app.execute(&format!("DELETE FROM {table} WHERE order_id = '{order_id}'"));
    }
    app.pay_at_cashier(&mut shopper, &form);
    let deadline = Instant::now() + Duration::from_secs(20);
    let orphan = format!("SELECT COUNT(*) AS n FROM orphan_payment WHERE out_trade_no = '{order_id}'");
    while app.scalar(&orphan) == 0 {
        assert!(Instant::now() < deadline, "no orphan payment for {order_id}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM alipay_notify WHERE out_trade_no = '{order_id}' AND verified = TRUE \
             AND outcome LIKE 'orphan payment%'"
        )),
        1,
        "answered success once: Alipay stops resending"
    );
    order_id
}

fn orphan_status(app: &TestApp, order_id: &str, status: &str) -> i64 {
    app.scalar(&format!(
        "SELECT COUNT(*) AS n FROM orphan_payment WHERE out_trade_no = '{order_id}' AND status = '{status}'"
    ))
}

fn an_orphan_payment_is_refunded_once_from_the_console(backend: Backend) {
    let app = TestApp::spawn(backend);
    let order_id = lose_an_order_then_pay_it(&app, "o-orphan");
    assert_eq!(orphan_status(&app, &order_id, "OPEN"), 1);
    app.worker.tick();
    assert_eq!(orphan_status(&app, &order_id, "OPEN"), 1, "not due for 24 hours");
    let mut console = app.admin();
    let page = console.get("/admin/orphans").body;
    assert!(page.contains(&order_id) && page.contains("UNKNOWN_ORDER"), "{page}");
    let csrf = hidden(&page, "csrf");
    let id = app.scalar(&format!("SELECT id AS n FROM orphan_payment WHERE out_trade_no = '{order_id}'"));
    assert_eq!(console.post_form(&format!("/admin/orphans/{id}/refund"), &[]).status, 403, "needs the token");
    for _ in 0..2 {
        assert_eq!(console.post_form(&format!("/admin/orphans/{id}/refund"), &[("csrf", csrf)]).status, 303);
    }
    app.worker.tick();
    app.worker.tick();
    assert_eq!(orphan_status(&app, &order_id, "REFUNDED"), 1);
    assert_eq!(app.refunds_at_alipay(&order_id), 1);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'orphan_refund'"), 1);
    assert!(console.get("/admin/orphans").body.contains("REFUNDED"));
}

/// An order that holds an orphan's number by the time it would be refunded (a number reused after
/// a restore) may own that money: the orphan is held, from the console and when due alike, and
/// nothing is refunded.
fn an_orphan_whose_number_an_order_now_holds_is_held(backend: Backend) {
    let app = TestApp::spawn(backend);
    let order_id = lose_an_order_then_pay_it(&app, "o-orphan-reused");
    app.execute(&format!(
        "INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status, \
         order_time, expire_at, next_query_at, updated_at) SELECT '{order_id}', user_id, openid, '{GIFT}', \
         'Gift', 168, 'DEAL_DONE', '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00', \
         '2026-01-01 00:00:00' FROM app_user WHERE openid = 'o-orphan-reused'"
    ));
    let mut console = app.admin();
    let csrf = console.csrf("/admin/orphans");
    let id = app.scalar(&format!("SELECT id AS n FROM orphan_payment WHERE out_trade_no = '{order_id}'"));
    assert_eq!(console.post_form(&format!("/admin/orphans/{id}/refund"), &[("csrf", &csrf)]).status, 303);
    app.worker.tick();
    assert_eq!(orphan_status(&app, &order_id, "HELD"), 1);
    assert_eq!(app.refunds_at_alipay(&order_id), 0);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE kind = 'orphan_refund'"), 0);
    assert!(console.get("/admin/orphans").body.contains("HELD"));
}

/// A signed notification replayed with fields of empty value added (Alipay's signature leaves
/// them out) changes nothing and stores nothing more; a text Alipay signed that is not a
/// notification (no `notify_type`, as a return_url's parameters) is refused like junk.
fn replays_padded_with_empty_fields_store_nothing_more(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let mut shopper = app.login("o-padded");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let pays = app.signed_notify(&[("out_trade_no", &order_id)], false);
    assert_eq!(app.post_notify(&pays), "success");
    for i in 0..20 {
        let mut padded = pays.clone();
        padded.push((format!("{}{i}", "p".repeat(5000)), String::new()));
        assert_eq!(app.post_notify(&padded), "success");
    }
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify"), 2, "the payment and one duplicate");
    let not_a_notification = app.signed_notify(&[("out_trade_no", &order_id), ("notify_type", "")], false);
    assert_eq!(app.post_notify(&not_a_notification), "fail");
    assert_eq!(
        app.scalar(
            "SELECT COUNT(*) AS n FROM alipay_notify WHERE outcome = 'not an asynchronous notification' \
             AND raw_sha256 IS NOT NULL"
        ),
        1
    );
}

fn an_orphan_payment_is_refunded_once_when_due(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.alipay.orphan_refund_after_hours = 0);
    let order_id = lose_an_order_then_pay_it(&app, "o-orphan-due");
    for _ in 0..3 {
        app.worker.tick();
    }
    assert_eq!(orphan_status(&app, &order_id, "REFUNDED"), 1);
    assert_eq!(app.refunds_at_alipay(&order_id), 1);
}

/// The background thread deletes junk after `retention.unverified_notification_days` and keeps
/// the evidence of payments for `retention.verified_notification_days`.
fn retention_drops_old_junk_and_keeps_payment_evidence(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-retention");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let pays = app
        .signed_notify(&[("out_trade_no", &order_id), ("total_amount", &amount_of(&app, &order_id))], false);
    assert_eq!(app.post_notify(&pays), "success");
    for _ in 0..3 {
        assert_eq!(app.post_notify_body(b"notify_id=junk&sign=Zm9yZ2Vk").body, "fail");
    }
    let days_ago = |days| (chrono::Utc::now() - chrono::Duration::days(days)).format("%Y-%m-%d %H:%M:%S");
    app.execute(&format!("UPDATE alipay_notify SET received_at = '{}'", days_ago(30)));
    app.worker.tick();
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify WHERE raw_sha256 IS NOT NULL"), 0);
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM alipay_notify WHERE raw_sha256 IS NULL"),
        1,
        "a week later"
    );
    app.execute(&format!("UPDATE alipay_notify SET received_at = '{}'", days_ago(1100)));
    app.worker.tick();
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM alipay_notify"), 0, "past three years");
}

both_backends!(
    an_orphan_whose_number_an_order_now_holds_is_held,
    a_signed_text_split_another_way_pays_nothing,
    retention_drops_old_junk_and_keeps_payment_evidence,
    junk_notifications_are_stored_bounded,
    failing_notifications_are_rate_limited_and_verified_ones_never,
    an_orphan_payment_is_refunded_once_from_the_console,
    an_orphan_payment_is_refunded_once_when_due,
);

// The payment rules, through both ways a payment is recorded.
every_payment_path!(
    repeated_fields_pay_nothing,
    a_trade_pays_one_order_only,
    replays_padded_with_empty_fields_store_nothing_more,
);
