use paymall::gateways::weixin::portal::{parse, signature};
use paymall::gateways::weixin::safe_mode::SafeMode;

use crate::helpers::{Backend, TestApp, both_backends, event_xml, fresh_timestamp_and_nonce, hidden};

fn full_login_through_the_sandbox(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let page = browser.get("/login?next=/products/100010090091");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/sandbox/weixin/cgi-bin/showqrcode?ticket="), "{}", page.body);
    assert!(page.body.contains("/sandbox/weixin/phone?ticket="));
    let ticket = browser.login_ticket();
    let image = browser.get(&format!("/sandbox/weixin/cgi-bin/showqrcode?ticket={ticket}"));
    assert_eq!(image.header("content-type"), Some("image/svg+xml"));
    assert!(image.body.contains("<svg"));

    assert_eq!(browser.check_login(&ticket)["code"], "0003", "not scanned yet");
    let phone = app.scan(&ticket, "o-first-timer");
    assert!(phone.contains("you are now logged in"), "{phone}");
    let logged_in = browser.check_login(&ticket);
    assert_eq!(logged_in["code"], "0000");
    let token = logged_in["data"].as_str().expect("token").to_owned();
    assert_eq!(token.len(), 64);
    // The cookie works on pages, the bearer token on the API.
    assert!(browser.get("/").body.contains("o-first-timer"));
    let mut api_client = app.browser();
    let api = api_client.get_with_bearer("/api/v1/orders", &token);
    assert_eq!(api.json()["code"], "0000");
    // Without JavaScript, "I have scanned" does the same and goes back where the shopper was.
    let mut no_js = app.browser();
    let page = no_js.get("/login?next=/orders");
    let link_ticket = page
        .body
        .split("/login/done?ticket=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("link")
        .to_owned();
    assert_eq!(
        no_js.get(&format!("/login/done?ticket={link_ticket}&next=/orders")).header("location"),
        Some("/login?next=%2Forders")
    );
    app.scan(&link_ticket, "o-no-js");
    let done = no_js.get(&format!("/login/done?ticket={link_ticket}&next=/orders"));
    assert_eq!(done.header("location"), Some("/orders"));
    assert!(no_js.get("/orders").body.contains("o-no-js"));
    // A ticket logs in once.
    assert_eq!(browser.check_login(&ticket)["code"], "0003");
    // Logging out (the top bar's form, with the session's token) ends the session.
    let home = browser.get("/").body;
    let csrf = hidden(&home, "csrf").to_owned();
    assert_eq!(browser.post_form("/logout", &[("csrf", &csrf)]).status, 303);
    assert!(!browser.get("/").body.contains("o-first-timer"));
    assert_eq!(api_client.get_with_bearer("/api/v1/orders", &token).json()["code"], "0003");
}

fn first_time_and_existing_followers_both_log_in(backend: Backend) {
    let app = TestApp::spawn(backend);
    // The sandbox sends `subscribe` + `qrscene_` the first time, `SCAN` after.
    app.login_by_scan("o-follower");
    app.login_by_scan("o-follower");
    // The same two events sent directly.
    let mut browser = app.browser();
    let ticket = browser.login_ticket();
    let scene = app.scene_of(&ticket);
    let reply = app.push(&event_xml("o-new", "subscribe", &format!("qrscene_{scene}"), 1));
    assert!(reply.body.contains("<ToUserName><![CDATA[o-new]]></ToUserName>"), "{}", reply.body);
    assert!(reply.body.contains("<FromUserName><![CDATA[gh_sandbox000001]]></FromUserName>"));
    assert_eq!(browser.check_login(&ticket)["code"], "0000");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM app_user"), 2);
}

fn bad_or_missing_signatures_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let ticket = browser.login_ticket();
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let echo = browser.get(&format!("{}&echostr=hello%20there", app.signed_portal_path(&timestamp, &nonce)));
    assert_eq!((echo.status, echo.body.as_str()), (200, "hello there"));
    let bad = browser.get(&format!(
        "/api/v1/weixin/portal/receive?signature=abc&timestamp={timestamp}&nonce=n&echostr=hello"
    ));
    assert_eq!(bad.status, 401);
    assert!(!bad.body.contains("hello"));
    let xml = event_xml("o-forger", "SCAN", "whatever", 5);
    let forged = browser.post_raw(
        &format!("/api/v1/weixin/portal/receive?signature=0000&timestamp={timestamp}&nonce=n"),
        "text/xml",
        xml.as_bytes(),
    );
    assert_eq!(forged.status, 401);
    let unsigned = browser.post_raw("/api/v1/weixin/portal/receive", "text/xml", xml.as_bytes());
    assert_eq!(unsigned.status, 401);
    assert_eq!(browser.check_login(&ticket)["code"], "0003");
}

fn replayed_events_act_once_and_bad_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let xml = event_xml("o-replay", "subscribe", "", 42);
    let first = app.push(&xml);
    assert!(first.body.contains("Welcome"), "{}", first.body);
    let second = app.push(&xml);
    assert_eq!((second.status, second.body.as_str()), (200, "success"));
    let text = app.push(
        "<xml><ToUserName>gh</ToUserName><FromUserName>o-t</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi ]]> there</Content><MsgId>77</MsgId></xml>",
    );
    assert!(text.body.contains("scan its QR code"), "{}", text.body);
    let malformed = app.push("<xml><ToUserName>gh</ToUser");
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["info"], "malformed XML", "no parser detail: {}", malformed.body);
    let unknown = app.push(
        "<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>hologram</MsgType></xml>",
    );
    assert_eq!(unknown.status, 400);
    assert!(!unknown.body.contains("hologram"), "the sender's text is not echoed: {}", unknown.body);
    let huge = format!("<xml><FromUserName>o</FromUserName><Content>{}</Content></xml>", "x".repeat(70_000));
    assert_eq!(app.push(&huge).status, 413);
}

fn expired_tickets_and_other_browsers_never_log_in(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut owner = app.browser();
    let ticket = owner.login_ticket();
    app.scan(&ticket, "o-victim");
    let mut thief = app.browser();
    let _ = thief.login_ticket();
    assert_eq!(thief.check_login(&ticket)["code"], "0003", "another browser's cookie");
    assert_eq!(
        app.browser().get(&format!("/api/v1/login/check_login?ticket={ticket}")).json()["code"],
        "0003"
    );

    let mut late = app.browser();
    let expired = late.login_ticket();
    expire_ticket_in(&app, &expired, chrono::Duration::minutes(-1));
    assert!(app.scan(&expired, "o-late").contains("expired"));
    assert_eq!(late.check_login(&expired)["code"], "0003");
    assert_eq!(owner.check_login(&ticket)["code"], "0000", "the owner still can");
}

/// Moves the ticket's expiry to `from_now` away (behind the shop's back).
fn expire_ticket_in(app: &TestApp, ticket: &str, from_now: chrono::Duration) {
    use diesel::prelude::*;
    use paymall::db::schema::login_ticket::dsl;
    diesel::update(dsl::login_ticket.filter(dsl::ticket.eq(ticket)))
        .set(dsl::expires_at.eq(chrono::Utc::now().naive_utc() + from_now))
        .execute(&mut *app.db.connect())
        .expect("move the expiry");
}

fn tickets(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) AS n FROM login_ticket")
}

fn a_browser_asking_again_gets_the_ticket_it_holds(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let ticket = browser.login_ticket();
    assert_eq!(browser.login_ticket(), ticket);
    let page = browser.get("/login").body;
    assert!(page.contains(&format!("data-ticket=\"{ticket}\"")), "{page}");
    assert_eq!(tickets(&app), 1, "one row, one call to WeChat");
    let other = app.browser().login_ticket();
    assert_ne!(other, ticket, "another browser gets its own");
    assert_eq!(tickets(&app), 2);
    // A ticket about to expire is not handed out again: there would be no time to scan it.
    expire_ticket_in(&app, &ticket, chrono::Duration::seconds(20));
    let fresh = browser.login_ticket();
    assert_ne!(fresh, ticket);
    // Once used to log in, a ticket is not handed out again either.
    app.scan(&fresh, "o-again");
    assert_eq!(browser.check_login(&fresh)["code"], "0000");
    assert_ne!(browser.login_ticket(), fresh);
    assert_eq!(tickets(&app), 4);
}

fn ticket_requests_over_the_limit_answer_429(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.limits.login_tickets_per_minute = 3);
    let mut first = app.browser();
    let held = first.login_ticket();
    for _ in 0..2 {
        app.browser().login_ticket();
    }
    let refused = app.browser().get("/api/v1/login/weixin_qrcode_ticket");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(refused.json()["code"], "0001");
    assert_eq!(app.browser().get("/login").status, 429);
    assert_eq!(tickets(&app), 3);
    // Showing a held ticket again creates nothing and is not limited.
    assert_eq!(first.login_ticket(), held);
}

/// However many addresses ask, new tickets (each a call against WeChat's daily quota) stay within
/// `limits.all_login_tickets_per_minute`.
fn new_tickets_of_all_clients_together_are_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".parse().expect("address")];
        s.limits.all_login_tickets_per_minute = 2;
    });
    let from = |address: &str| app.browser().with_header("X-Forwarded-For", address);
    assert_eq!(from("198.51.100.1").get("/api/v1/login/weixin_qrcode_ticket").status, 200);
    assert_eq!(from("198.51.100.2").get("/api/v1/login/weixin_qrcode_ticket").status, 200);
    assert_eq!(from("198.51.100.3").get("/api/v1/login/weixin_qrcode_ticket").status, 429);
    assert_eq!(tickets(&app), 2);
}

fn safe_mode_messages_are_accepted_and_answered(backend: Backend) {
    let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let app = TestApp::spawn_with(backend, |s| s.weixin.encoding_aes_key = paymall::config::Secret::new(key));
    let safe = SafeMode::new(key, &app.settings.weixin.app_id).expect("key");
    let token = app.settings.weixin.token.expose();
    let encrypted = safe.encrypt(&event_xml("o-safe", "subscribe", "", 9)).expect("encrypt");
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let (timestamp, nonce) = (timestamp.as_str(), nonce.as_str());
    let msg_signature = signature(&[token, timestamp, nonce, &encrypted]);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_sandbox000001]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    );
    let path = format!(
        "/api/v1/weixin/portal/receive?signature={}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={msg_signature}",
        signature(&[token, timestamp, nonce])
    );
    let reply = app.browser().post_raw(&path, "text/xml", body.as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let sealed = parse(&reply.body).expect("reply XML").encrypt;
    let opened = safe.decrypt(&sealed).expect("decrypt the reply");
    assert!(opened.contains("Welcome") && opened.contains("o-safe"), "{opened}");
    let tampered = path.replace(&msg_signature, "0123");
    assert_eq!(app.browser().post_raw(&tampered, "text/xml", body.as_bytes()).status, 401);
    let wrong_app = SafeMode::new(key, "wxsomeoneelse")
        .expect("key")
        .encrypt(&event_xml("o-x", "subscribe", "", 10))
        .expect("e");
    let wrong_sig = signature(&[token, timestamp, nonce, &wrong_app]);
    let wrong_path = format!(
        "/api/v1/weixin/portal/receive?signature={}&timestamp={timestamp}&nonce={nonce}&encrypt_type=aes&msg_signature={wrong_sig}",
        signature(&[token, timestamp, nonce])
    );
    let body = format!("<xml><Encrypt><![CDATA[{wrong_app}]]></Encrypt></xml>");
    assert_eq!(app.browser().post_raw(&wrong_path, "text/xml", body.as_bytes()).status, 400);
}

fn a_stale_token_is_refreshed_and_the_call_retried(backend: Backend) {
    let app = TestApp::spawn(backend);
    // A new browser each time: a browser that asks again gets the ticket it holds, calling nobody.
    app.browser().login_ticket();
    let issued = |app: &TestApp| {
        app.browser().get("/sandbox/weixin/stats.json").json()["tokens_issued"].as_i64().unwrap_or(0)
    };
    assert_eq!(issued(&app), 1);
    app.browser().login_ticket();
    assert_eq!(issued(&app), 1, "the stored token is reused");
    assert_eq!(app.browser().post_raw("/sandbox/weixin/expire_tokens", "text/plain", b"").status, 204);
    app.browser().login_ticket();
    assert_eq!(issued(&app), 2, "40001 -> one refresh -> the retry succeeded");
}

fn the_login_message_reaches_the_inbox_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.login_by_scan("o-inbox");
    for _ in 0..3 {
        app.worker.tick();
    }
    let messages: Vec<_> = app.inbox().into_iter().filter(|m| m["touser"] == "o-inbox").collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["template_id"], "login-succeeded");
}

both_backends!(
    the_sandbox_inbox_keeps_the_latest_messages,
    full_login_through_the_sandbox,
    first_time_and_existing_followers_both_log_in,
    bad_or_missing_signatures_are_refused,
    replayed_events_act_once_and_bad_bodies_are_refused,
    expired_tickets_and_other_browsers_never_log_in,
    safe_mode_messages_are_accepted_and_answered,
    a_stale_token_is_refreshed_and_the_call_retried,
    a_browser_asking_again_gets_the_ticket_it_holds,
    ticket_requests_over_the_limit_answer_429,
    new_tickets_of_all_clients_together_are_limited,
    the_login_message_reaches_the_inbox_once,
);

/// The in-process sandbox keeps the latest 1,000 template messages, not every one since start:
/// a benchmark sends tens of thousands.
fn the_sandbox_inbox_keeps_the_latest_messages(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut wechat = app.browser();
    let weixin = &app.settings.weixin;
    let token = wechat
        .get(&format!(
            "/sandbox/weixin/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            weixin.app_id,
            weixin.app_secret.expose()
        ))
        .json()["access_token"]
        .as_str()
        .expect("a sandbox token")
        .to_owned();
    let mut last = serde_json::Value::Null;
    for n in 0..1005 {
        let message = serde_json::json!({ "touser": format!("o-{n}"), "template_id": "t", "data": {} });
        last = wechat
            .post_json(
                &format!("/sandbox/weixin/cgi-bin/message/template/send?access_token={token}"),
                &message,
            )
            .json();
    }
    assert_eq!(last["msgid"], 1005, "{last}");
    let inbox = app.inbox();
    assert_eq!(inbox.len(), 1000);
    assert_eq!(inbox[0]["touser"], "o-5");
    assert_eq!(inbox[999]["touser"], "o-1004");
}
