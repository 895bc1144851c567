use paymall::services::weixin_portal::{SafeMode, signature};

use crate::helpers::{Backend, Browser, TestApp, both_backends};

pub fn ticket_for(browser: &mut Browser) -> String {
    let reply = browser.get("/api/v1/login/weixin_qrcode_ticket");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["code"], "0000");
    reply.json()["data"].as_str().expect("ticket").to_owned()
}

/// The sandbox phone scans the ticket; returns the shop's reply as the phone shows it.
pub fn scan(app: &TestApp, ticket: &str, openid: &str) -> String {
    let reply =
        app.browser().post_form("/sandbox/weixin/phone/scan", &[("ticket", ticket), ("openid", openid)]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

pub fn check(browser: &mut Browser, ticket: &str) -> serde_json::Value {
    let reply = browser
        .get(&format!("/api/v1/login/check_login?ticket={}", paymall::controllers::url_encode(ticket)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// A browser logged in through the whole WeChat flow.
pub fn log_in(app: &TestApp, openid: &str) -> Browser {
    let mut browser = app.browser();
    let ticket = ticket_for(&mut browser);
    scan(app, &ticket, openid);
    assert_eq!(check(&mut browser, &ticket)["code"], "0000");
    browser
}

fn inbox(app: &TestApp) -> Vec<serde_json::Value> {
    app.browser().get("/sandbox/weixin/inbox.json").json().as_array().cloned().unwrap_or_default()
}

/// A fresh timestamp and nonce, as WeChat signs each request with.
pub fn fresh_timestamp_and_nonce() -> (String, String) {
    (chrono::Utc::now().timestamp().to_string(), paymall::random::token_hex(8))
}

/// The portal's path with WeChat's signature over `timestamp` and `nonce`.
pub fn signed_path(app: &TestApp, timestamp: &str, nonce: &str) -> String {
    let token = app.settings.weixin.token.expose();
    format!(
        "/api/v1/weixin/portal/receive?signature={}&timestamp={timestamp}&nonce={nonce}&openid=o1",
        signature(&[token, timestamp, nonce])
    )
}

/// A signed push to the portal, as WeChat sends it.
pub fn push(app: &TestApp, xml: &str) -> crate::helpers::Reply {
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    app.browser().post_raw(&signed_path(app, &timestamp, &nonce), "text/xml", xml.as_bytes())
}

/// The scene of a ticket, as WeChat's scan event carries it.
pub fn scene_of(app: &TestApp, ticket: &str) -> String {
    use diesel::prelude::*;
    use paymall::db::schema::login_ticket::dsl;
    dsl::login_ticket
        .filter(dsl::ticket.eq(ticket))
        .select(dsl::scene)
        .first::<String>(&mut *app.db.connect())
        .expect("scene")
}

pub fn event_xml(openid: &str, event: &str, key: &str, create_time: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_sandbox000001]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}

fn full_login_through_the_sandbox(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let page = browser.get("/login?next=/products/100010090091");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/sandbox/weixin/cgi-bin/showqrcode?ticket="), "{}", page.body);
    assert!(page.body.contains("/sandbox/weixin/phone?ticket="));
    let ticket = ticket_for(&mut browser);
    let image = browser.get(&format!("/sandbox/weixin/cgi-bin/showqrcode?ticket={ticket}"));
    assert_eq!(image.header("content-type"), Some("image/svg+xml"));
    assert!(image.body.contains("<svg"));

    assert_eq!(check(&mut browser, &ticket)["code"], "0003", "not scanned yet");
    let phone = scan(&app, &ticket, "o-first-timer");
    assert!(phone.contains("you are now logged in"), "{phone}");
    let logged_in = check(&mut browser, &ticket);
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
    scan(&app, &link_ticket, "o-no-js");
    let done = no_js.get(&format!("/login/done?ticket={link_ticket}&next=/orders"));
    assert_eq!(done.header("location"), Some("/orders"));
    assert!(no_js.get("/orders").body.contains("o-no-js"));
    // A ticket logs in once.
    assert_eq!(check(&mut browser, &ticket)["code"], "0003");
    // Logging out (the top bar's form, with the session's token) ends the session.
    let home = browser.get("/").body;
    let csrf = crate::payment::attribute(&home, "name=\"csrf\" value=\"").to_owned();
    assert_eq!(browser.post_form("/logout", &[("csrf", &csrf)]).status, 303);
    assert!(!browser.get("/").body.contains("o-first-timer"));
    assert_eq!(api_client.get_with_bearer("/api/v1/orders", &token).json()["code"], "0003");
}

fn first_time_and_existing_followers_both_log_in(backend: Backend) {
    let app = TestApp::spawn(backend);
    // The sandbox sends `subscribe` + `qrscene_` the first time, `SCAN` after.
    log_in(&app, "o-follower");
    log_in(&app, "o-follower");
    // The same two events sent directly.
    let mut browser = app.browser();
    let ticket = ticket_for(&mut browser);
    let scene = scene_of(&app, &ticket);
    let reply = push(&app, &event_xml("o-new", "subscribe", &format!("qrscene_{scene}"), 1));
    assert!(reply.body.contains("<ToUserName><![CDATA[o-new]]></ToUserName>"), "{}", reply.body);
    assert!(reply.body.contains("<FromUserName><![CDATA[gh_sandbox000001]]></FromUserName>"));
    assert_eq!(check(&mut browser, &ticket)["code"], "0000");
    let count = {
        use diesel::prelude::*;
        use paymall::db::schema::app_user::dsl;
        dsl::app_user.count().get_result::<i64>(&mut *app.db.connect()).expect("count")
    };
    assert_eq!(count, 2);
}

fn bad_or_missing_signatures_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let ticket = ticket_for(&mut browser);
    let (timestamp, nonce) = fresh_timestamp_and_nonce();
    let echo = browser.get(&format!("{}&echostr=hello%20there", signed_path(&app, &timestamp, &nonce)));
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
    assert_eq!(check(&mut browser, &ticket)["code"], "0003");
}

fn replayed_events_act_once_and_bad_bodies_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let xml = event_xml("o-replay", "subscribe", "", 42);
    let first = push(&app, &xml);
    assert!(first.body.contains("Welcome"), "{}", first.body);
    let second = push(&app, &xml);
    assert_eq!((second.status, second.body.as_str()), (200, "success"));
    let text = push(
        &app,
        "<xml><ToUserName>gh</ToUserName><FromUserName>o-t</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType><Content>hi ]]> there</Content><MsgId>77</MsgId></xml>",
    );
    assert!(text.body.contains("scan its QR code"), "{}", text.body);
    let malformed = push(&app, "<xml><ToUserName>gh</ToUser");
    assert_eq!(malformed.status, 400);
    let unknown = push(
        &app,
        "<xml><FromUserName>o</FromUserName><CreateTime>1</CreateTime><MsgType>hologram</MsgType></xml>",
    );
    assert_eq!(unknown.status, 400);
    let huge = format!("<xml><FromUserName>o</FromUserName><Content>{}</Content></xml>", "x".repeat(70_000));
    assert_eq!(push(&app, &huge).status, 413);
}

fn expired_tickets_and_other_browsers_never_log_in(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut owner = app.browser();
    let ticket = ticket_for(&mut owner);
    scan(&app, &ticket, "o-victim");
    let mut thief = app.browser();
    let _ = ticket_for(&mut thief);
    assert_eq!(check(&mut thief, &ticket)["code"], "0003", "another browser's cookie");
    assert_eq!(
        app.browser().get(&format!("/api/v1/login/check_login?ticket={ticket}")).json()["code"],
        "0003"
    );

    let mut late = app.browser();
    let expired = ticket_for(&mut late);
    {
        use diesel::prelude::*;
        use paymall::db::schema::login_ticket::dsl;
        diesel::update(dsl::login_ticket.filter(dsl::ticket.eq(&expired)))
            .set(dsl::expires_at.eq(chrono::Utc::now().naive_utc() - chrono::Duration::minutes(1)))
            .execute(&mut *app.db.connect())
            .expect("expire");
    }
    assert!(scan(&app, &expired, "o-late").contains("expired"));
    assert_eq!(check(&mut late, &expired)["code"], "0003");
    assert_eq!(check(&mut owner, &ticket)["code"], "0000", "the owner still can");
}

fn tickets(app: &TestApp) -> i64 {
    use diesel::prelude::*;
    use paymall::db::schema::login_ticket::dsl;
    dsl::login_ticket.count().get_result::<i64>(&mut *app.db.connect()).expect("count")
}

fn a_browser_asking_again_gets_the_ticket_it_holds(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let ticket = ticket_for(&mut browser);
    assert_eq!(ticket_for(&mut browser), ticket);
    let page = browser.get("/login").body;
    assert!(page.contains(&format!("data-ticket=\"{ticket}\"")), "{page}");
    assert_eq!(tickets(&app), 1, "one row, one call to WeChat");
    let other = ticket_for(&mut app.browser());
    assert_ne!(other, ticket, "another browser gets its own");
    assert_eq!(tickets(&app), 2);
    // A ticket about to expire is not handed out again: there would be no time to scan it.
    {
        use diesel::prelude::*;
        use paymall::db::schema::login_ticket::dsl;
        diesel::update(dsl::login_ticket.filter(dsl::ticket.eq(&ticket)))
            .set(dsl::expires_at.eq(chrono::Utc::now().naive_utc() + chrono::Duration::seconds(20)))
            .execute(&mut *app.db.connect())
            .expect("nearly expire");
    }
    let fresh = ticket_for(&mut browser);
    assert_ne!(fresh, ticket);
    // Once used to log in, a ticket is not handed out again either.
    scan(&app, &fresh, "o-again");
    assert_eq!(check(&mut browser, &fresh)["code"], "0000");
    assert_ne!(ticket_for(&mut browser), fresh);
    assert_eq!(tickets(&app), 4);
}

fn ticket_requests_over_the_limit_answer_429(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.limits.login_tickets_per_minute = 3);
    let mut first = app.browser();
    let held = ticket_for(&mut first);
    for _ in 0..2 {
        ticket_for(&mut app.browser());
    }
    let refused = app.browser().get("/api/v1/login/weixin_qrcode_ticket");
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(refused.json()["code"], "0001");
    assert_eq!(app.browser().get("/login").status, 429);
    assert_eq!(tickets(&app), 3);
    // Showing a held ticket again creates nothing and is not limited.
    assert_eq!(ticket_for(&mut first), held);
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
    let sealed = paymall::services::weixin_portal::parse(&reply.body).expect("reply XML").encrypt;
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
    ticket_for(&mut app.browser());
    let issued = |app: &TestApp| {
        app.browser().get("/sandbox/weixin/stats.json").json()["tokens_issued"].as_i64().unwrap_or(0)
    };
    assert_eq!(issued(&app), 1);
    ticket_for(&mut app.browser());
    assert_eq!(issued(&app), 1, "the stored token is reused");
    assert_eq!(app.browser().post_raw("/sandbox/weixin/expire_tokens", "text/plain", b"").status, 204);
    ticket_for(&mut app.browser());
    assert_eq!(issued(&app), 2, "40001 -> one refresh -> the retry succeeded");
}

fn the_login_message_reaches_the_inbox_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    log_in(&app, "o-inbox");
    for _ in 0..3 {
        app.worker.tick();
    }
    let messages: Vec<_> = inbox(&app).into_iter().filter(|m| m["touser"] == "o-inbox").collect();
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
    let inbox = app.browser().get("/sandbox/weixin/inbox.json").json();
    let inbox = inbox.as_array().expect("inbox");
    assert_eq!(inbox.len(), 1000);
    assert_eq!(inbox[0]["touser"], "o-5");
    assert_eq!(inbox[999]["touser"], "o-1004");
}
