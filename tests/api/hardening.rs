//! Issue 22's web-layer findings, tried as an attacker would: redirects off the site, bodies that
//! trickle in, framing and inline script, oversized page numbers and parser detail, a database
//! that is gone, logout by link, a foreign page opening the live status, a public sandbox.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::SimpleConnection;
use paymall::config::Settings;
use paymall::startup::Application;

use crate::helpers::{
    Backend, Browser, GIFT, TestApp, attribute, both_backends, config_dir, default_settings, environment,
    hidden, order_id_of,
};

/// `next` values that lead off the site, as they appear in a query string.
const FOREIGN_NEXTS: [&str; 12] = [
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d%0aSet-Cookie:%20x=1",
    "/%5Cevil.example",
    "/%5C%5Cevil.example",
    "%5C%5Cevil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%252F%252Fevil.example",
    "//evil.example",
    "https://evil.example",
    "/%E2%80%AE/evil.example",
];

fn spawn(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, |s| s.limits.login_tickets_per_minute = 1000)
}

fn next_never_leaves_the_site(backend: Backend) {
    let app = spawn(backend);
    let mut shopper = app.login("o-next");
    for next in FOREIGN_NEXTS {
        let mut visitor = app.browser();
        let page = visitor.get(&format!("/login?next={next}"));
        assert_eq!(page.status, 200, "{next}: {}", page.body);
        assert_eq!(attribute(&page.body, "data-next=\""), "/", "{next}");
        assert!(!page.body.contains("evil"), "{next}: no link keeps it");
        let done = visitor.get(&format!("/login/done?ticket=nope&next={next}"));
        assert_eq!(done.header("location"), Some("/login?next=%2F"), "{next}");
        let logged_in = shopper.get(&format!("/login?next={next}"));
        assert_eq!((logged_in.status, logged_in.header("location")), (303, Some("/")), "{next}");
    }
    // Scanned, `/login/done` logs in and still goes home.
    let mut visitor = app.browser();
    let page = visitor.get("/login?next=/%09/evil.example");
    let ticket = attribute(&page.body, "data-ticket=\"").to_owned();
    app.scan(&ticket, "o-next-done");
    let done = visitor.get(&format!("/login/done?ticket={ticket}&next=/%09/evil.example"));
    assert_eq!((done.status, done.header("location")), (303, Some("/")));
    assert!(visitor.get("/").body.contains("o-next-done"));
    // A local path is kept.
    let kept = shopper.get("/login?next=/orders%3Fpage%3D2");
    assert_eq!(kept.header("location"), Some("/orders?page=2"));
}

fn port_of(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

fn slow_bodies_are_cut_off_while_the_shop_answers(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.server.body_timeout_secs = 2);
    // Asking for an upgrade on a POST does not lift the body's deadline either.
    for upgrade in ["", "Connection: Upgrade\r\nUpgrade: websocket\r\n"] {
        let mut slow = TcpStream::connect(port_of(&app)).expect("connect");
        let head = format!(
            "POST /api/v1/alipay/create_pay_order HTTP/1.1\r\nHost: shop\r\n{upgrade}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
        );
        slow.write_all(head.as_bytes()).expect("head");
        let started = Instant::now();
        let mut trickle = slow.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            for _ in 0..15 {
                std::thread::sleep(Duration::from_secs(1));
                if trickle.write_all(b" ").is_err() {
                    return;
                }
            }
        });
        // Meanwhile the shop answers others.
        let mut other = app.browser();
        for _ in 0..3 {
            assert_eq!(other.get("/").status, 200);
            std::thread::sleep(Duration::from_millis(300));
        }
        slow.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        let closed = loop {
            match slow.read(&mut chunk) {
                Ok(0) => break true,
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break false;
                }
                Err(_) => break true,
            }
        };
        let elapsed = started.elapsed();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "{upgrade:?}: {answer}");
        assert!(closed, "the connection is closed after the 408");
        assert!(elapsed < Duration::from_secs(6), "{upgrade:?}: cut off after {elapsed:?}");
        let _ = sender.join();
        assert_eq!(other.get("/").status, 200);
    }
}

fn security_headers_are_on_every_answer(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let pages = ["/", "/login", "/api/v1/orders", "/public/css/app.css", "/no-such-page", "/products/nope"];
    for path in pages {
        let reply = browser.get(path);
        let policy = reply.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        let script_src = policy.split(';').find(|d| d.trim().starts_with("script-src")).expect("script-src");
        assert!(!script_src.contains("unsafe-inline"), "{path}: {policy}");
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy}");
        assert!(policy.contains("frame-ancestors 'none'"), "{policy}");
        let gateway = paymall::config::url_origin(&app.settings.alipay.gateway_url).expect("gateway origin");
        assert!(policy.contains(&format!("form-action 'self' {gateway}")), "{policy}");
        let websocket = app.address.replacen("http", "ws", 1);
        assert!(policy.contains(&format!("connect-src 'self' {websocket}")), "{policy}");
        assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(reply.header("referrer-policy"), Some("strict-origin-when-cross-origin"), "{path}");
        assert_eq!(reply.header("strict-transport-security"), None, "{path}: not over http");
        let cache = reply.header("cache-control");
        if path.starts_with("/public/") {
            assert_eq!(cache, Some("public, max-age=3600"), "{path}");
            assert!(reply.header("set-cookie").is_none(), "{path}: a static file sets no cookie");
        } else {
            assert_eq!(cache, Some("no-store"), "{path}: no shared cache keeps an answer");
            assert_eq!(reply.header("vary"), Some("Cookie, Accept-Language"), "{path}");
        }
    }
    assert!(browser.get("/public/css/app.css?lang=en").header("set-cookie").is_none());
    // No page carries inline script, the payment form included.
    let mut shopper = app.login("o-headers");
    let form = app.create_order(&mut shopper, GIFT);
    assert!(!form.contains("<script"), "{form}");
    for path in ["/", "/login", "/orders", "/products/100010090091"] {
        let body = browser.get(path).body;
        assert!(
            body.matches("<script").count() == body.matches("<script src=\"/public/js/").count(),
            "{body}"
        );
    }
}

fn bad_arguments_get_a_400_without_parser_detail(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-pages");
    let huge = "9223372036854775807";
    let api = shopper.get(&format!("/api/v1/orders?page={huge}"));
    assert_eq!((api.status, api.json()["code"].as_str()), (400, Some("0002")), "{}", api.body);
    assert_eq!(shopper.get(&format!("/orders?lastId={huge}0")).status, 400);
    assert_eq!(shopper.get(&format!("/orders?lastId={huge}")).status, 200);
    let mut admin = app.admin();
    assert_eq!(admin.get(&format!("/admin?before={huge}0")).status, 400);
    assert_eq!(admin.get(&format!("/admin?before={huge}")).status, 200);

    let json = shopper.post_raw("/api/v1/alipay/create_pay_order", "application/json", b"{\"productId\": ");
    assert_eq!(json.status, 400);
    assert_eq!(json.json()["info"], "非法参数：JSON 格式错误", "{}", json.body);
    let query = shopper.get("/api/v1/orders?page=many");
    assert_eq!(query.status, 400);
    assert_eq!(query.json()["info"], "非法参数：查询参数格式错误", "{}", query.body);
}

fn an_unreachable_database_answers_503_with_retry_after(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-db-down");
    let mut outage = app.db.connect();
    match backend {
        // Every connection of the shop is cut and no new one is let in.
        Backend::Postgres => {
            let server =
                std::env::var(paymall::test_support::SERVER_VARIABLE).expect("the PostgreSQL server");
            let name = app.db.url.rsplit('/').next().expect("database name").split('?').next().unwrap_or("");
            diesel::PgConnection::establish(&server).expect("connect to the server").batch_execute(&format!(
                "ALTER DATABASE {name} ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';"
            ))
        }
        // Another process keeps the write lock past every busy wait.
        Backend::Sqlite => outage.batch_execute("BEGIN EXCLUSIVE"),
    }
    .expect("take the database away");
    let reply = shopper
        .post_json("/api/v1/alipay/create_pay_order", &serde_json::json!({"productId": "100010090091"}));
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.header("retry-after").is_some_and(|s| s.parse::<u32>().is_ok()), "{:?}", reply.headers);
    assert_eq!(reply.json()["code"], "0001");
    if backend == Backend::Sqlite {
        outage.batch_execute("ROLLBACK").expect("give the database back");
    }
}

fn logout_takes_a_post_with_the_token(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-logout");
    let token = shopper.cookies[paymall::services::session::SESSION_COOKIE].clone();
    let logged_in =
        |shopper: &mut Browser| shopper.get_with_bearer("/api/v1/orders", &token).json()["code"] == "0000";
    let page = shopper.get("/logout");
    assert_eq!(page.status, 200, "an old link shows the button instead");
    assert!(logged_in(&mut shopper));
    assert_eq!(shopper.post_form("/logout", &[]).status, 403);
    assert_eq!(shopper.post_form("/logout", &[("csrf", "forged")]).status, 403);
    assert!(logged_in(&mut shopper));
    let csrf = hidden(&page.body, "csrf").to_owned();
    assert_eq!(shopper.post_form("/logout", &[("csrf", &csrf)]).status, 303);
    assert!(!logged_in(&mut shopper));
}

/// The status line the live-status WebSocket handshake gets with `origin`.
fn websocket_handshake(app: &TestApp, order_id: &str, session: &str, origin: Option<&str>) -> String {
    let mut stream = TcpStream::connect(port_of(app)).expect("connect");
    let origin = origin.map(|o| format!("Origin: {o}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /orders/{order_id}/live HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{origin}\
         Cookie: {}={session}\r\n\r\n",
        port_of(app),
        paymall::services::session::SESSION_COOKIE,
    );
    stream.write_all(request.as_bytes()).expect("handshake");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).expect("answer");
    String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or("").to_owned()
}

fn the_live_status_refuses_a_foreign_origin(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-live");
    let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
    let session = shopper.cookies[paymall::services::session::SESSION_COOKIE].clone();
    let status = |origin| websocket_handshake(&app, &order_id, &session, origin);
    assert_eq!(status(Some("https://evil.example")), "HTTP/1.1 403 Forbidden");
    assert_eq!(status(None), "HTTP/1.1 403 Forbidden");
    assert_eq!(status(Some(&app.address)), "HTTP/1.1 101 Switching Protocols");
}

both_backends!(
    next_never_leaves_the_site,
    slow_bodies_are_cut_off_while_the_shop_answers,
    security_headers_are_on_every_answer,
    bad_arguments_get_a_400_without_parser_detail,
    an_unreachable_database_answers_503_with_retry_after,
    logout_takes_a_post_with_the_token,
    the_live_status_refuses_a_foreign_origin,
);

#[test]
fn the_sandbox_is_not_served_on_a_public_address_unless_allowed() {
    let public = ("PAYMALL__SERVER__BIND", "0.0.0.0:0");
    let err = Settings::load_from(&config_dir(), None, environment(&[public])).expect_err("refused");
    assert!(err.to_string().contains("sandbox.allow_public"), "{err}");
    let allowed = environment(&[public, ("PAYMALL__SANDBOX__ALLOW_PUBLIC", "true")]);
    assert!(Settings::load_from(&config_dir(), None, allowed).is_ok());
    assert!(
        Settings::load_from(&config_dir(), None, environment(&[("PAYMALL__SERVER__BIND", "[::1]:0")]))
            .is_ok()
    );

    let mut settings = default_settings();
    settings.server.bind = "0.0.0.0:0".into();
    let built = actix_web::rt::System::new().block_on(Application::build(settings));
    let err = built.err().expect("the application refuses to start");
    assert!(err.to_string().contains("sandbox.allow_public"), "{err}");
}
