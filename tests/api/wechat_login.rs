//! Login inside WeChat (网页授权, `snsapi_base`): `/login` sends WeChat's browser to the
//! authorize page with a state bound to it; the callback exchanges the code for the openid and
//! logs the shopper in as a scan does. Replayed, forged or other browsers' states, refused codes
//! and an unreachable WeChat log nobody in.

use std::collections::HashMap;

use crate::helpers::{Backend, Browser, DESKTOP_UA, TestApp, WECHAT_UA, both_backends};

/// The sessions opened so far.
fn sessions(app: &TestApp) -> i64 {
    app.scalar("SELECT COUNT(*) AS n FROM user_session")
}

/// `url`'s query string, decoded.
fn query_of(url: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(url.split_once('?').expect("a query").1).expect("query")
}

/// Asserts that `browser` is not logged in: a protected page sends it to log in.
fn assert_logged_out(browser: &mut Browser) {
    let orders = browser.get("/orders");
    assert_eq!(orders.status, 303, "{}", orders.body);
    assert!(orders.header("location").is_some_and(|l| l.starts_with("/login")));
}

fn inside_wechat_login_redirects_to_the_authorisation_page(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser().with_header("User-Agent", WECHAT_UA);
    let redirect = browser.get("/login?next=/orders");
    assert_eq!(redirect.status, 302, "{}", redirect.body);
    let location = redirect.header("location").expect("location");
    let authorize = format!("{}/sandbox/weixin/connect/oauth2/authorize?", app.address);
    assert!(location.starts_with(&authorize), "{location}");
    assert!(location.ends_with("#wechat_redirect"), "{location}");
    let callback = format!("{}/login/oauth/callback", app.address);
    let in_order = format!(
        "?appid={}&redirect_uri={}&response_type=code&scope=snsapi_base&state=",
        app.settings.weixin.app_id,
        serde_urlencoded::to_string([("", &callback)]).expect("encoded")[1..].to_owned()
    );
    assert!(location.contains(&in_order), "{location}");
    let query = query_of(location.trim_end_matches("#wechat_redirect"));
    assert_eq!(query["redirect_uri"], callback);
    assert!(query["state"].len() == 32 && query["state"].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(browser.cookies.contains_key("paymall_login"), "the state is bound to this browser's nonce");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM login_ticket"), 0, "no QR ticket inside WeChat");

    // Outside WeChat the QR login stays.
    let qr = app.browser().with_header("User-Agent", DESKTOP_UA).get("/login");
    assert_eq!(qr.status, 200);
    assert!(qr.body.contains("data-ticket="), "{}", qr.body);

    // `next` never leaves the site.
    let (mut wandering, authorize_url) = app.start_login_in_wechat("//evil.example");
    let back = wandering.get(&app.approve_in_wechat(&authorize_url, "o-wanderer"));
    assert_eq!((back.status, back.header("location")), (303, Some("/")));
}

fn the_callback_logs_in_as_a_scan_does(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (mut browser, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-inside");
    let back = browser.get(&callback);
    assert_eq!((back.status, back.header("location")), (303, Some("/orders")), "{}", back.body);
    let cookie = back.header("set-cookie").expect("the session cookie");
    assert!(cookie.starts_with("paymall_session=") && cookie.contains("HttpOnly"), "{cookie}");
    let orders = browser.get("/orders");
    assert_eq!(orders.status, 200, "{}", orders.body);
    assert!(orders.body.contains("o-inside"));

    // The same user row as a scan of the same openid, and the same "login succeeded" message.
    app.login_by_scan("o-inside");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM app_user WHERE openid = 'o-inside'"), 1);
    let state = &query_of(&callback)["state"];
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM outbox WHERE kind = 'wx_template' AND dedupe_key = 'login-{state}'"
        )),
        1
    );
    app.worker.tick();
    let messages: Vec<_> = app.inbox().into_iter().filter(|m| m["touser"] == "o-inside").collect();
    assert_eq!(messages.len(), 2, "one per login: {messages:?}");
    assert!(messages.iter().all(|m| m["template_id"] == "login-succeeded"), "{messages:?}");
}

fn a_replayed_or_forged_state_logs_nobody_in(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (mut browser, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-once");
    assert_eq!(browser.get(&callback).status, 303);
    let opened = sessions(&app);
    // The state was used: a new code under it (a replayed authorisation) is refused.
    let replay = app.approve_in_wechat(&authorize_url, "o-once");
    let mut replayer = app.browser().with_header("User-Agent", WECHAT_UA);
    replayer.cookies = browser.cookies.clone();
    replayer.cookies.remove("paymall_session");
    let refused = replayer.get(&replay);
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("请重新登录"), "{}", refused.body);
    assert!(refused.header("set-cookie").is_none_or(|c| !c.starts_with("paymall_session")));
    // A state WeChat never saw.
    let forged = replay.replace(&query_of(&replay)["state"], &"0".repeat(32));
    assert_eq!(replayer.get(&forged).status, 403);
    assert_logged_out(&mut replayer);
    assert_eq!(sessions(&app), opened);
}

fn a_state_from_another_browser_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (mut owner, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-victim");
    // Another browser, with a nonce of its own, or none at all.
    let (mut other, _) = app.start_login_in_wechat("/");
    assert_eq!(other.get(&callback).status, 403);
    assert_logged_out(&mut other);
    let mut cookieless = app.browser().with_header("User-Agent", WECHAT_UA);
    assert_eq!(cookieless.get(&callback).status, 403);
    assert_logged_out(&mut cookieless);
    assert_eq!(sessions(&app), 0);
    // The owner still can.
    assert_eq!(owner.get(&callback).status, 303);
    assert_eq!(owner.get("/orders").status, 200);
}

fn a_code_wechat_refuses_gives_no_session(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (mut browser, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-bad-code");
    let bogus = callback.replace(&query_of(&callback)["code"], "not-a-code");
    let refused = browser.get(&bogus);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("授权码无效"), "{}", refused.body);
    assert_logged_out(&mut browser);

    // A code already exchanged (40163) is refused too.
    let (mut second, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-bad-code");
    let weixin = &app.settings.weixin;
    let exchanged = app
        .browser()
        .get(&format!(
            "/sandbox/weixin/sns/oauth2/access_token?appid={}&secret={}&code={}&grant_type=authorization_code",
            weixin.app_id,
            weixin.app_secret.expose(),
            query_of(&callback)["code"]
        ))
        .json();
    assert_eq!(exchanged["openid"], "o-bad-code", "{exchanged}");
    assert_eq!(exchanged["scope"], "snsapi_base");
    let used = second.get(&callback);
    assert_eq!(used.status, 400, "{}", used.body);
    assert_logged_out(&mut second);
    assert_eq!(sessions(&app), 0);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM app_user"), 0);
}

fn an_unreachable_wechat_gives_a_clear_page_and_no_session(backend: Backend) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let dead = format!("http://{}", closed.local_addr().expect("address"));
    drop(closed);
    let app = TestApp::spawn_with(backend, |s| s.weixin.api_base_url = dead);
    let (mut browser, authorize_url) = app.start_login_in_wechat("/orders");
    let callback = app.approve_in_wechat(&authorize_url, "o-unlucky");
    let page = browser.get(&callback);
    assert_eq!(page.status, 502, "{}", page.body);
    assert!(page.body.contains("微信暂时无法访问"), "{}", page.body);
    assert!(!page.body.contains(app.settings.weixin.app_secret.expose()));
    assert_logged_out(&mut browser);
    assert_eq!(sessions(&app), 0);
}

both_backends!(
    inside_wechat_login_redirects_to_the_authorisation_page,
    the_callback_logs_in_as_a_scan_does,
    a_replayed_or_forged_state_logs_nobody_in,
    a_state_from_another_browser_is_refused,
    a_code_wechat_refuses_gives_no_session,
    an_unreachable_wechat_gives_a_clear_page_and_no_session,
);
