//! The portal's guard against replays: a timestamp window, nonces remembered in the shared
//! database, safe mode refusing plain messages, and a limit on requests that fail verification.

use paymall::config::Secret;
use paymall::gateways::weixin::portal::signature;
use paymall::gateways::weixin::safe_mode::SafeMode;

use crate::helpers::{Backend, Reply, TestApp, both_backends, event_xml, fresh_timestamp_and_nonce};

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A push in safe mode (`encrypt_type=aes`), signed and encrypted as WeChat does.
fn safe_push(app: &TestApp, xml: &str) -> Reply {
    let safe = SafeMode::new(AES_KEY, &app.settings.weixin.app_id).expect("key");
    let encrypted = safe.encrypt(xml).expect("encrypt");
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let msg_signature = signature(&[app.settings.weixin.token.expose(), &timestamp, &nonce, &encrypted]);
    let path = format!(
        "{}&encrypt_type=aes&msg_signature={msg_signature}",
        app.signed_portal_path(&timestamp, &nonce)
    );
    app.post_xml(&path, &format!("<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"))
}

fn nonces_remembered(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) AS n FROM weixin_push_nonce")
}

fn pushes_signed_too_long_ago_or_ahead_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let ticket = browser.login_ticket();
    let scan_event = event_xml("o-late", "SCAN", &app.scene_of(&ticket), 1);
    // A few seconds past the window each way: the shop reads its clock a moment after the test.
    for timestamp in [now_secs() - 305, now_secs() + 305, now_secs() - 3600] {
        let path = app.signed_portal_path(&timestamp.to_string(), &paymall::random::token_hex(8));
        assert_eq!(app.post_xml(&path, &scan_event).status, 401, "timestamp {timestamp}");
        let url_check = app.browser().get(&format!("{path}&echostr=hi"));
        assert_eq!(url_check.status, 401);
        assert_ne!(url_check.body, "hi");
    }
    let not_a_number = app.signed_portal_path("soon", "n1");
    assert_eq!(app.post_xml(&not_a_number, &scan_event).status, 401);
    assert_eq!(browser.check_login(&ticket)["code"], "0003", "nobody logged in");
    // Inside the window, either way, the same push logs in.
    let path = app.signed_portal_path(&(now_secs() - 250).to_string(), "n2");
    assert!(app.post_xml(&path, &scan_event).body.contains("you are now logged in"));
    assert_eq!(browser.check_login(&ticket)["code"], "0000");
}

fn a_signed_push_replayed_is_refused_on_any_instance(backend: Backend) {
    let app = TestApp::spawn(backend);
    let sibling = app.spawn_sibling();
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let path = app.signed_portal_path(&timestamp, &nonce);
    let mut shopper = app.browser();
    let ticket = shopper.login_ticket();
    let genuine = app.post_xml(&path, &event_xml("o-shopper", "SCAN", &app.scene_of(&ticket), 1));
    assert!(genuine.body.contains("you are now logged in"), "{}", genuine.body);
    // The same signature with a forged scan of the victim's ticket, here and on the sibling.
    let mut victim = app.browser();
    let victim_ticket = victim.login_ticket();
    let forged = event_xml("o-attacker", "SCAN", &app.scene_of(&victim_ticket), 2);
    assert_eq!(app.post_xml(&path, &forged).status, 401);
    assert_eq!(sibling.post_xml(&path, &forged).status, 401);
    assert_eq!(victim.check_login(&victim_ticket)["code"], "0003");
    // A URL check's signature is spent too, and is no push's either.
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let url_check = format!("{}&echostr=hello", app.signed_portal_path(&timestamp, &nonce));
    assert_eq!(sibling.browser().get(&url_check).body, "hello");
    assert_eq!(app.browser().get(&url_check).status, 401);
    assert_eq!(app.post_xml(&app.signed_portal_path(&timestamp, &nonce), &forged).status, 401);
    assert_eq!(victim.check_login(&victim_ticket)["code"], "0003");
    // A push signed afresh still works.
    assert!(app.push(&forged).body.contains("you are now logged in"));
    assert_eq!(victim.check_login(&victim_ticket)["code"], "0000");
}

fn nonces_are_forgotten_once_their_window_is_over(backend: Backend) {
    let app = TestApp::spawn(backend);
    assert!(app.push(&event_xml("o-1", "subscribe", "", 1)).body.contains("Welcome"));
    assert_eq!(nonces_remembered(&app), 1);
    app.worker.tick();
    assert_eq!(nonces_remembered(&app), 1, "still inside its window");
    {
        use diesel::prelude::*;
        use paymall::db::schema::weixin_push_nonce::dsl;
        let long_ago = chrono::Utc::now().naive_utc() - chrono::Duration::minutes(11);
        diesel::update(dsl::weixin_push_nonce)
            .set(dsl::expires_at.eq(long_ago))
            .execute(&mut *app.db.connect())
            .expect("age the nonce");
    }
    app.worker.tick();
    assert_eq!(nonces_remembered(&app), 0);
}

fn safe_mode_refuses_plain_pushes_unless_compatible(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.weixin.encoding_aes_key = Secret::new(AES_KEY));
    let mut browser = app.browser();
    let ticket = browser.login_ticket();
    let scan_event = event_xml("o-plain", "SCAN", &app.scene_of(&ticket), 1);
    assert_eq!(app.push(&scan_event).status, 401);
    assert_eq!(browser.check_login(&ticket)["code"], "0003", "nobody logged in");
    let reply = safe_push(&app, &scan_event);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(browser.check_login(&ticket)["code"], "0000");
    // The sandbox's phone pushes in safe mode too, and shows the reply opened.
    let mut phone_user = app.browser();
    let phone_ticket = phone_user.login_ticket();
    let phone = app.scan(&phone_ticket, "o-phone");
    assert!(phone.contains("you are now logged in"), "{phone}");
    assert_eq!(phone_user.check_login(&phone_ticket)["code"], "0000");

    let compatible = TestApp::spawn_with(backend, |s| {
        s.weixin.encoding_aes_key = Secret::new(AES_KEY);
        s.weixin.accept_plain_messages = true;
    });
    assert!(compatible.push(&event_xml("o-plain", "subscribe", "", 1)).body.contains("Welcome"));
    let reply = safe_push(&compatible, &event_xml("o-safe", "subscribe", "", 1));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.body.contains("<Encrypt>"), "{}", reply.body);
}

fn unverified_pushes_are_limited_and_verified_ones_never(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.limits.unverified_portal_pushes_per_minute = 3);
    let xml = event_xml("o-limited", "subscribe", "", 1);
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let bad = format!("/api/v1/weixin/portal/receive?signature=00&timestamp={timestamp}&nonce={nonce}");
    for _ in 0..3 {
        assert_eq!(app.post_xml(&bad, &xml).status, 401);
    }
    assert_eq!(app.post_xml(&bad, &xml).status, 429);
    assert_eq!(app.browser().get(&format!("{bad}&echostr=x")).status, 429);
    let stale = app.signed_portal_path(&(now_secs() - 900).to_string(), "n1");
    assert_eq!(app.post_xml(&stale, &xml).status, 429);
    // Verified pushes from the same client are neither refused nor counted.
    for n in 0..5 {
        let reply = app.push(&event_xml("o-limited", "subscribe", "", n));
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let verified = app.signed_portal_path(&timestamp, &nonce);
    assert_eq!(app.post_xml(&verified, &xml).status, 200);
    // Its replay is unverified again.
    assert_eq!(app.post_xml(&verified, &xml).status, 429);
}

both_backends!(
    pushes_signed_too_long_ago_or_ahead_are_refused,
    a_signed_push_replayed_is_refused_on_any_instance,
    nonces_are_forgotten_once_their_window_is_over,
    safe_mode_refuses_plain_pushes_unless_compatible,
    unverified_pushes_are_limited_and_verified_ones_never,
);
