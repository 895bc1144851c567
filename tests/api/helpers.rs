//! What the API tests share: `TestApp` (the shop on port 0 with a fresh database) and its
//! helpers for logging in, ordering, paying, notifying, reading the database and the sandbox;
//! `Browser`, a cookie-keeping HTTP client; and readers of the pages they get.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use diesel::RunQueryDsl;
use paymall::config::{Secret, Settings};
pub use paymall::db::Backend;
use paymall::gateways::alipay::{
    VerifyingKey, append_sign, load_private_key, load_public_key, sign_notification, verify_request,
};
use paymall::gateways::wechat_pay::{AEAD_ALGORITHM, ApiV3Key, SignedHeaders, format_time};
use paymall::gateways::weixin::portal::signature;
use paymall::jobs::Worker;
use paymall::sandbox::alipay::sandbox_key_paths;
use paymall::sandbox::wechat_pay::scan_page_url;
use paymall::services::session::SESSION_COOKIE;
use paymall::startup::Application;
pub use paymall::test_support::PaymentPath;
pub use paymall::test_support::TestDatabase;
pub use paymall::{both_backends, every_payment_path};

/// The seeded gift, ¥1.68, a thousand in stock.
pub const GIFT: &str = "100010090091";
/// The seeded mug, ¥39.99, forty in stock.
pub const MUG: &str = "100010090093";

/// WeChat's built-in browser on an iPhone.
pub const WECHAT_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";
/// Safari on an iPhone.
pub const IPHONE_UA: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
/// Chrome on a computer.
pub const DESKTOP_UA: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The shipped defaults, untouched by the environment of the test process.
pub fn default_settings() -> Settings {
    Settings::load_from(&config_dir(), None, Some(HashMap::new())).expect("config/default.toml loads")
}

/// An environment of just these variables, for `Settings::load_from`.
pub fn environment(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The application running on its own thread and runtime, on port 0, with a fresh database.
pub struct TestApp {
    pub address: String,
    pub settings: Arc<Settings>,
    pub db: TestDatabase,
    /// The background tasks; `worker.tick()` runs them now instead of waiting for the thread.
    pub worker: Arc<Worker>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestApp {
    pub fn spawn(backend: Backend) -> TestApp {
        TestApp::spawn_with(backend, |_| {})
    }

    /// Spawns with the test defaults, after `customize` has had its say.
    /// An app that records payments through `path`.
    pub fn spawn_paying(backend: Backend, path: PaymentPath) -> TestApp {
        TestApp::spawn_with(backend, |s| path.apply(s))
    }

    pub fn spawn_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> TestApp {
        let _ = env_logger::builder().is_test(true).try_init();
        let db = TestDatabase::new(backend);
        let mut settings = default_settings();
        settings.server.bind = "127.0.0.1:0".into();
        settings.database.url = Secret::new(db.url.clone());
        settings.database.pool_size = 4;
        // Tests run the background tasks by hand (`app.worker.tick()`); the thread still ticks
        // once at start-up, and is not woken by payments unless a test turns that back on.
        settings.compensation.interval_secs = 3600;
        settings.compensation.drain_on_payment = false;
        settings.alipay.merchant_private_key_path = db.dir().join("keys/merchant_private_key.pem");
        settings.alipay.alipay_public_key_path = db.dir().join("keys/alipay_public_key.pem");
        customize(&mut settings);
        TestApp::start(settings, db)
    }

    /// A second instance on the same database, with the sandbox off and this instance's
    /// sandbox as its WeChat and Alipay.
    pub fn spawn_sibling(&self) -> TestApp {
        let mut settings = (*self.settings).clone();
        settings.server.bind = "127.0.0.1:0".into();
        settings.server.public_url = String::new();
        settings.alipay.notify_url = String::new();
        settings.alipay.return_url = String::new();
        settings.sandbox.enabled = false;
        settings.admin.password = Secret::new("sibling-admin");
        TestApp::start(settings, self.db.shared())
    }

    fn start(settings: Settings, db: TestDatabase) -> TestApp {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await.expect("application builds");
                tx.send((app.settings(), app.handle(), app.worker())).expect("test waits");
                app.run_until_stopped().await.expect("server runs");
            })
        });
        let (settings, handle, worker) =
            rx.recv_timeout(Duration::from_secs(60)).expect("application started");
        TestApp {
            address: settings.server.public_url.clone(),
            settings,
            db,
            worker,
            handle,
            thread: Some(thread),
        }
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.address)
    }

    /// A browser logged in as `openid`, through a session opened directly in the database (the
    /// login flow itself is tested in `login`).
    pub fn login(&self, openid: &str) -> Browser {
        self.login_at(&self.address, openid)
    }

    /// A browser at `base` (another instance on this database) logged in as `openid`.
    pub fn login_at(&self, base: &str, openid: &str) -> Browser {
        let (_, token) = paymall::services::session::start(&mut self.db.connect(), openid).expect("session");
        let mut browser = Browser::new(base);
        browser.cookies.insert(SESSION_COOKIE.to_owned(), token);
        browser
    }

    /// A browser logged in through the whole WeChat flow: a ticket, the sandbox phone's scan,
    /// the check.
    pub fn login_by_scan(&self, openid: &str) -> Browser {
        let mut browser = self.browser();
        let ticket = browser.login_ticket();
        self.scan(&ticket, openid);
        assert_eq!(browser.check_login(&ticket)["code"], "0000");
        browser
    }

    /// The sandbox phone scans the ticket; returns the shop's reply as the phone shows it.
    pub fn scan(&self, ticket: &str, openid: &str) -> String {
        let reply =
            self.browser().post_form("/sandbox/weixin/phone/scan", &[("ticket", ticket), ("openid", openid)]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// A browser inside WeChat (its user agent) that has asked `/login?next=` and was sent to
    /// WeChat's 网页授权 page; returns the browser and that page's URL (without its fragment).
    pub fn start_login_in_wechat(&self, next: &str) -> (Browser, String) {
        let mut browser = self.browser().with_header("User-Agent", WECHAT_UA);
        let redirect = browser.get(&format!("/login?next={}", paymall::controllers::url_encode(next)));
        assert_eq!(redirect.status, 302, "{}", redirect.body);
        let location = redirect.header("location").expect("the authorize URL");
        let url = location.strip_suffix("#wechat_redirect").expect("the #wechat_redirect fragment");
        (browser, url.to_owned())
    }

    /// The sandbox's authorize page approved as `openid`: the shop's callback URL, with a fresh
    /// code and the state of `authorize_url`.
    pub fn approve_in_wechat(&self, authorize_url: &str, openid: &str) -> String {
        let mut wechat = self.browser();
        let page = wechat.get(authorize_url);
        assert_eq!(page.status, 200, "{}", page.body);
        let (redirect_uri, state) = (hidden(&page.body, "redirect_uri"), hidden(&page.body, "state"));
        let fields = [("redirect_uri", unescape(redirect_uri)), ("state", unescape(state))];
        let approved = wechat.post_form(
            "/sandbox/weixin/connect/oauth2/approve",
            &[("redirect_uri", &fields[0].1), ("state", &fields[1].1), ("openid", openid)],
        );
        assert_eq!(approved.status, 302, "{}", approved.body);
        approved.header("location").expect("the callback URL").to_owned()
    }

    /// A browser inside WeChat logged in as `openid` through 网页授权 and the sandbox.
    pub fn login_in_wechat(&self, openid: &str) -> Browser {
        let (mut browser, authorize_url) = self.start_login_in_wechat("/orders");
        let callback = self.approve_in_wechat(&authorize_url, openid);
        let back = browser.get(&callback);
        assert_eq!((back.status, back.header("location")), (303, Some("/orders")), "{}", back.body);
        browser
    }

    /// The scene of a ticket, as WeChat's scan event carries it.
    pub fn scene_of(&self, ticket: &str) -> String {
        use diesel::prelude::*;
        use paymall::db::schema::login_ticket::dsl;
        dsl::login_ticket
            .filter(dsl::ticket.eq(ticket))
            .select(dsl::scene)
            .first::<String>(&mut *self.db.connect())
            .expect("scene")
    }

    /// The portal's path with WeChat's signature over `timestamp` and `nonce`.
    pub fn signed_portal_path(&self, timestamp: &str, nonce: &str) -> String {
        let token = self.settings.weixin.token.expose();
        format!(
            "/api/v1/weixin/portal/receive?signature={}&timestamp={timestamp}&nonce={nonce}&openid=o1",
            signature(&[token, timestamp, nonce])
        )
    }

    /// `xml` posted to `path` (the portal's, signed or not) from a fresh browser.
    pub fn post_xml(&self, path: &str, xml: &str) -> Reply {
        self.browser().post_raw(path, "text/xml", xml.as_bytes())
    }

    /// A signed push to the portal, as WeChat sends it.
    pub fn push(&self, xml: &str) -> Reply {
        let (timestamp, nonce) = fresh_timestamp_and_nonce();
        self.post_xml(&self.signed_portal_path(&timestamp, &nonce), xml)
    }

    /// The template messages the sandbox's WeChat has received, oldest first.
    pub fn inbox(&self) -> Vec<serde_json::Value> {
        self.browser().get("/sandbox/weixin/inbox.json").json().as_array().cloned().expect("inbox")
    }

    /// A browser signed in to the admin console.
    pub fn admin(&self) -> Browser {
        let mut browser = self.browser();
        let reply = self.admin_sign_in(&mut browser, self.settings.admin.password.expose());
        assert_eq!(reply.status, 303, "{}", reply.body);
        assert_eq!(reply.header("location"), Some("/admin/products"));
        browser
    }

    /// One try at the admin console's sign-in form, as the admin with `password`.
    pub fn admin_sign_in(&self, browser: &mut Browser, password: &str) -> Reply {
        let csrf = browser.csrf("/admin/login?next=/admin/products");
        browser.post_form(
            "/admin/login",
            &[
                ("username", &self.settings.admin.username),
                ("password", password),
                ("csrf", &csrf),
                ("next", "/admin/products"),
            ],
        )
    }

    /// Asks for a page-pay form for `product_id` through the API, as `browser`'s shopper.
    pub fn create_order(&self, browser: &mut Browser, product_id: &str) -> String {
        let reply = browser
            .post_json("/api/v1/alipay/create_pay_order", &serde_json::json!({ "productId": product_id }));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["code"], "0000");
        reply.json()["data"].as_str().expect("form").to_owned()
    }

    /// Buy on the product page, as `browser`'s shopper: the checkout page.
    pub fn buy(&self, browser: &mut Browser, product_id: &str) -> Reply {
        let csrf = browser.csrf(&format!("/products/{product_id}"));
        browser.post_form(&format!("/products/{product_id}/buy"), &[("csrf", &csrf)])
    }

    /// The checkout page's choice of `channel` (`ALIPAY` or `WECHAT_PAY`) for the order on
    /// `checkout` (a checkout page, which holds the order id and the form's CSRF token).
    pub fn pay_with(&self, browser: &mut Browser, checkout: &str, channel: &str) -> Reply {
        let order_id = text_after(checkout, "class=\"order-id\">");
        let csrf = hidden(checkout, "csrf").to_owned();
        browser.post_form(&format!("/orders/{order_id}/pay-with"), &[("csrf", &csrf), ("channel", channel)])
    }

    /// The payment form's parameters (the action's query and `biz_content`) once their signature
    /// is verified with the merchant's public key, and `biz_content` read as JSON.
    pub fn verified_form(&self, form: &str) -> (HashMap<String, String>, serde_json::Value) {
        let action = unescape(attribute(form, "action=\""));
        let query = action.split_once('?').expect("the action's query").1;
        let mut params: Vec<(String, String)> = serde_urlencoded::from_str(query).expect("query");
        params.push(("biz_content".to_owned(), unescape(hidden(form, "biz_content"))));
        let (merchant_public, _) = sandbox_key_paths(&self.settings);
        let key = VerifyingKey::new(load_public_key(&merchant_public).expect("merchant public key"));
        assert!(verify_request(&key, &params), "the form's signature: {form}");
        let params: HashMap<String, String> = params.into_iter().collect();
        let biz = serde_json::from_str(&params["biz_content"]).expect("biz_content JSON");
        (params, biz)
    }

    /// Submits the page-pay form the way the browser does: the sandbox's cashier opens.
    pub fn open_cashier(&self, browser: &mut Browser, form: &str) {
        let action = unescape(attribute(form, "action=\""));
        let biz = unescape(attribute(form, "name=\"biz_content\" value=\""));
        let cashier = browser.post_form(&action, &[("biz_content", &biz)]);
        assert_eq!(cashier.status, 200, "{}", cashier.body);
        assert!(cashier.body.contains("class=\"card cashier\""), "{}", cashier.body);
    }

    /// Opens the cashier for the form and presses Pay; returns the order's id.
    pub fn pay_at_cashier(&self, browser: &mut Browser, form: &str) -> String {
        self.open_cashier(browser, form);
        let order_id = order_id_of(form);
        let action = unescape(attribute(form, "action=\""));
        let sandbox = &action[..action.find("gateway.do").expect("gateway URL")];
        let paid = browser.post_form(&format!("{sandbox}cashier/{order_id}/pay"), &[]);
        assert_eq!(paid.status, 303, "{}", paid.body);
        let back = paid.header("location").expect("return_url").to_owned();
        assert!(back.contains("/orders/return?") && back.contains("sign="), "{back}");
        order_id
    }

    /// A shopper `openid` who paid for `product_id` at the cashier while the sandbox drops
    /// Alipay's notifications: the order stays `PAY_WAIT` until someone asks Alipay. The
    /// shopper and the order's id.
    pub fn paid_unnotified(&self, openid: &str, product_id: &str) -> (Browser, String) {
        self.faults(serde_json::json!({ "drop_notify": true }));
        let mut shopper = self.login(openid);
        let form = self.create_order(&mut shopper, product_id);
        let order_id = self.pay_at_cashier(&mut shopper, &form);
        (shopper, order_id)
    }

    /// The order's status, as its owner `browser` reads it through the API.
    pub fn order_status(&self, browser: &mut Browser, order_id: &str) -> String {
        let reply = browser.get(&format!("/api/v1/orders/{order_id}"));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["data"]["status"].as_str().expect("status").to_owned()
    }

    /// Waits up to 20 seconds for the order to reach `wanted`.
    pub fn wait_for_status(&self, browser: &mut Browser, order_id: &str, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.order_status(browser, order_id);
            if status == wanted {
                return;
            }
            assert!(Instant::now() < deadline, "order {order_id} stayed {status}, wanted {wanted}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A notification signed with the sandbox's Alipay key, as Alipay would send it: a payment
    /// of ¥1.68, with `overrides` replacing fields (an empty value leaves the field out).
    pub fn signed_notify(
        &self,
        overrides: &[(&str, &str)],
        sign_with_sign_type: bool,
    ) -> Vec<(String, String)> {
        let mut params: Vec<(String, String)> = vec![
            ("notify_time", "2026-11-22 20:00:00"),
            ("notify_type", "trade_status_sync"),
            ("notify_id", "test-notify-1"),
            ("app_id", self.settings.alipay.app_id.as_str()),
            ("charset", "utf-8"),
            ("version", "1.0"),
            ("trade_no", "2026112222001400000001"),
            ("seller_id", self.settings.alipay.seller_id.as_str()),
            ("trade_status", "TRADE_SUCCESS"),
            ("total_amount", "1.68"),
            ("gmt_payment", "2026-11-22 19:59:30"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in overrides {
            params.retain(|(key, _)| key != k);
            if !v.is_empty() {
                params.push((k.to_string(), v.to_string()));
            }
        }
        let (_, alipay_private) = sandbox_key_paths(&self.settings);
        let key = load_private_key(&alipay_private).expect("sandbox key");
        if sign_with_sign_type {
            params.push(("sign_type".to_owned(), "RSA2".to_owned()));
            append_sign(&key, &mut params, &[]);
        } else {
            sign_notification(&key, &mut params);
        }
        params
    }

    /// Posts the notification's fields, form-encoded; returns the shop's answer (`success` or
    /// `fail`).
    pub fn post_notify(&self, params: &[(String, String)]) -> String {
        let body = serde_urlencoded::to_string(params).expect("form");
        let reply = self.post_notify_body(body.as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// Posts `body` to the notify URL as a form, whatever it holds.
    pub fn post_notify_body(&self, body: &[u8]) -> Reply {
        self.browser().post_raw("/api/v1/alipay/alipay_notify_url", "application/x-www-form-urlencoded", body)
    }

    /// Sets the sandbox Alipay's faults (`drop_notify`, `query_system_error`, ...).
    pub fn faults(&self, faults: serde_json::Value) {
        let reply = self.browser().post_json("/sandbox/alipay/faults", &faults);
        assert_eq!(reply.status, 204, "{}", reply.body);
    }

    /// The sandbox Alipay's trades by order id: `status`, `refunds`, ...
    pub fn ledger(&self) -> HashMap<String, serde_json::Value> {
        let trades = self.browser().get("/sandbox/alipay/ledger").json();
        let trades = trades.as_array().expect("ledger");
        trades.iter().map(|t| (t["out_trade_no"].as_str().unwrap_or("").to_owned(), t.clone())).collect()
    }

    /// How many refunds the sandbox Alipay has made of the order's trade.
    pub fn refunds_at_alipay(&self, order_id: &str) -> usize {
        let trade = self.ledger().remove(order_id).expect("trade");
        trade["refunds"].as_object().map_or(0, |r| r.len())
    }

    /// `POST /api/v1/wechat_pay/create_pay_order` with `body` (`productId`, `tradeType`, ...),
    /// as `browser`'s shopper: the envelope.
    pub fn wechat_order(&self, browser: &mut Browser, body: &serde_json::Value) -> serde_json::Value {
        browser.post_json("/api/v1/wechat_pay/create_pay_order", body).json()
    }

    /// A Native WeChat Pay order placed as `body` asks (`tradeType` NATIVE is added): its id and
    /// `code_url`.
    pub fn wechat_native(&self, browser: &mut Browser, body: serde_json::Value) -> (String, String) {
        let mut body = body;
        body["tradeType"] = "NATIVE".into();
        let reply = self.wechat_order(browser, &body);
        assert_eq!(reply["code"], "0000", "{reply}");
        let field =
            |name: &str| reply["data"][name].as_str().unwrap_or_else(|| panic!("{name}: {reply}")).to_owned();
        (field("orderId"), field("codeUrl"))
    }

    /// Scans the order's code on the sandbox's page and pays as `openid`.
    pub fn scan_and_pay(&self, code_url: &str, openid: &str) {
        let scan = scan_page_url(&self.address, code_url).expect("a sandbox code_url");
        let paid = self.browser().post_form(&format!("{scan}/pay"), &[("openid", openid)]);
        assert_eq!(paid.status, 303, "{}", paid.body);
    }

    /// Sets the sandbox WeChat Pay's faults (`drop_notify`, `query_system_error`, ...).
    pub fn wechat_faults(&self, faults: serde_json::Value) {
        let reply = self.browser().post_json("/sandbox/wechatpay/faults", &faults);
        assert_eq!(reply.status, 204, "{}", reply.body);
    }

    /// The sandbox WeChat Pay's trade of the order (`trade_state`, `refunded`, ...).
    pub fn wechat_trade(&self, order_id: &str) -> serde_json::Value {
        let ledger = self.browser().get("/sandbox/wechatpay/ledger").json();
        let trades = ledger["trades"].as_array().expect("trades");
        trades.iter().find(|t| t["out_trade_no"] == order_id).cloned().expect("the WeChat Pay trade")
    }

    /// The sandbox WeChat Pay's refunds of the order's trade.
    pub fn wechat_refunds(&self, order_id: &str) -> Vec<serde_json::Value> {
        let ledger = self.browser().get("/sandbox/wechatpay/ledger").json();
        let refunds = ledger["refunds"].as_array().expect("refunds");
        refunds.iter().filter(|r| r["out_trade_no"] == order_id).cloned().collect()
    }

    /// A paid transaction of `total` fen for the order, as WeChat Pay notifies it for this
    /// shop's merchant and Official Account.
    pub fn wx_transaction(&self, order_id: &str, total: i64) -> serde_json::Value {
        let wx = &self.settings.wechat_pay;
        serde_json::json!({
            "mchid": wx.mch_id, "appid": wx.app_id, "out_trade_no": order_id,
            "transaction_id": format!("42000{order_id}"), "trade_type": "NATIVE",
            "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
            "success_time": format_time(paymall::models::now()),
            "amount": { "total": total, "payer_total": total, "currency": "CNY" },
            "payer": { "openid": "o-wx-notified" },
        })
    }

    /// A `TRANSACTION.SUCCESS` notification of `transaction`, its resource encrypted under the
    /// sandbox's APIv3 key.
    pub fn wx_notification(&self, transaction: &serde_json::Value) -> String {
        self.wx_notification_of("TRANSACTION.SUCCESS", "transaction", transaction)
    }

    /// A notification of `event_type` whose resource, of `original_type`, is `resource`,
    /// encrypted under the sandbox's APIv3 key.
    pub fn wx_notification_of(
        &self,
        event_type: &str,
        original_type: &str,
        resource: &serde_json::Value,
    ) -> String {
        let key = ApiV3Key::new(self.settings.wechat_pay.api_v3_key.expose().as_bytes()).expect("APIv3 key");
        let nonce = paymall::random::token_hex(6);
        let ciphertext =
            key.encrypt(&nonce, original_type, resource.to_string().as_bytes()).expect("encryption");
        serde_json::json!({
            "id": format!("test-{}", paymall::random::token_hex(8)),
            "create_time": format_time(paymall::models::now()),
            "resource_type": "encrypt-resource", "event_type": event_type, "summary": "通知",
            "resource": {
                "original_type": original_type, "algorithm": AEAD_ALGORITHM,
                "ciphertext": ciphertext, "associated_data": original_type, "nonce": nonce,
            },
        })
        .to_string()
    }

    /// The `Wechatpay-*` headers over `body`, signed with the sandbox's platform key at
    /// `timestamp` (Unix seconds) under the configured key id.
    pub fn wx_signed(&self, body: &str, timestamp: i64) -> SignedHeaders {
        let (_, platform_private, _) = paymall::sandbox::wechat_pay::sandbox_key_paths(&self.settings);
        let key = load_private_key(&platform_private).expect("sandbox platform key");
        let serial = &self.settings.wechat_pay.platform_public_key_id;
        SignedHeaders::sign(&key, serial, timestamp, &paymall::random::token_hex(16), body)
    }

    /// Posts `body` with `headers` to the WeChat Pay notify URL.
    pub fn post_wx_notify(&self, headers: &SignedHeaders, body: &str) -> Reply {
        let mut browser =
            headers.pairs().into_iter().fold(self.browser(), |b, (name, value)| b.with_header(name, value));
        browser.post_raw("/api/v1/wechat_pay/notify", "application/json", body.as_bytes())
    }

    /// The notification of `transaction`, signed now and posted, as WeChat Pay sends it.
    pub fn wx_notify(&self, transaction: &serde_json::Value) -> Reply {
        let body = self.wx_notification(transaction);
        self.post_wx_notify(&self.wx_signed(&body, chrono::Utc::now().timestamp()), &body)
    }

    /// The BIGINT column `n` of the query's first row: a count, a sum, an id.
    pub fn scalar(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Row> = diesel::sql_query(sql).load(&mut *self.db.connect()).expect(sql);
        rows[0].n
    }

    /// Runs `sql` behind the shop's back.
    pub fn execute(&self, sql: &str) {
        diesel::sql_query(sql).execute(&mut *self.db.connect()).expect(sql);
    }

    pub fn stock(&self, product_id: &str) -> i64 {
        self.scalar(&format!("SELECT stock AS n FROM product WHERE product_id = '{product_id}'"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        actix_web::rt::System::new().block_on(self.handle.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A plain HTTP client that keeps cookies like a browser and never follows redirects.
pub struct Browser {
    base: String,
    agent: ureq::Agent,
    pub cookies: HashMap<String, String>,
    /// Sent with every request but the bearer one (see [`Browser::with_header`]).
    headers: Vec<(String, String)>,
}

pub struct Reply {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .new_agent();
        Browser { base: base.to_owned(), agent, cookies: HashMap::new(), headers: Vec::new() }
    }

    /// The same browser, each request of which carries `name: value` too (say, the
    /// `X-Forwarded-For` a proxy would add).
    pub fn with_header(mut self, name: &str, value: &str) -> Browser {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The request with this browser's cookies and headers.
    fn dressed<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let request = request.header("Cookie", self.cookie_header());
        self.headers.iter().fold(request, |request, (name, value)| request.header(name, value))
    }

    fn full(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn finish(&mut self, result: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
        let mut response = result.expect("HTTP request");
        let mut headers = HashMap::new();
        for (name, value) in response.headers() {
            let value = value.to_str().unwrap_or("").to_owned();
            if name.as_str() == "set-cookie" {
                let pair = value.split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    if v.is_empty() {
                        self.cookies.remove(k.trim());
                    } else {
                        self.cookies.insert(k.trim().to_owned(), v.to_owned());
                    }
                }
            }
            headers.insert(name.as_str().to_owned(), value);
        }
        let status = response.status().as_u16();
        let body =
            response.body_mut().with_config().limit(20 * 1024 * 1024).read_to_string().unwrap_or_default();
        Reply { status, headers, body }
    }

    /// The status of a GET, or `None` when nothing answers.
    pub fn get_status(&self, path: &str) -> Option<u16> {
        self.agent.get(self.full(path)).call().ok().map(|r| r.status().as_u16())
    }

    pub fn get(&mut self, path: &str) -> Reply {
        let result = self.dressed(self.agent.get(self.full(path))).call();
        self.finish(result)
    }

    pub fn get_with_bearer(&mut self, path: &str, token: &str) -> Reply {
        let result =
            self.agent.get(self.full(path)).header("Authorization", format!("Bearer {token}")).call();
        self.finish(result)
    }

    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let result = self.dressed(self.agent.post(self.full(path))).send_form(fields.iter().copied());
        self.finish(result)
    }

    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> Reply {
        self.post_raw(path, "application/json", body.to_string().as_bytes())
    }

    pub fn post_raw(&mut self, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let result =
            self.dressed(self.agent.post(self.full(path))).header("Content-Type", content_type).send(body);
        self.finish(result)
    }

    /// The CSRF token of the form on the page at `path`.
    pub fn csrf(&mut self, path: &str) -> String {
        hidden(&self.get(path).body, "csrf").to_owned()
    }

    /// A login ticket for this browser (the one it holds, while it is fresh).
    pub fn login_ticket(&mut self) -> String {
        let reply = self.get("/api/v1/login/weixin_qrcode_ticket");
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json()["code"], "0000");
        reply.json()["data"].as_str().expect("ticket").to_owned()
    }

    /// The shop's answer to this browser's poll for `ticket`: `code` 0000 and a token once logged in.
    pub fn check_login(&mut self, ticket: &str) -> serde_json::Value {
        let reply = self
            .get(&format!("/api/v1/login/check_login?ticket={}", paymall::controllers::url_encode(ticket)));
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()
    }
}

/// The value that follows `before` in a page, up to the next quote: an attribute's, say.
pub fn attribute<'a>(html: &'a str, before: &str) -> &'a str {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} not in {html}")) + before.len();
    let end = start + html[start..].find('"').expect("closing quote");
    &html[start..end]
}

/// The value of the form field `name` in a page (the first such field).
pub fn hidden<'a>(html: &'a str, name: &str) -> &'a str {
    attribute(html, &format!("name=\"{name}\" value=\""))
}

/// Text of an HTML attribute or page, its entities decoded.
pub fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

/// The text that follows `before` in a page, up to the next tag.
pub fn text_after<'a>(html: &'a str, before: &str) -> &'a str {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} not in {html}")) + before.len();
    let end = start + html[start..].find('<').expect("the next tag");
    &html[start..end]
}

/// The order id inside a page-pay form.
pub fn order_id_of(form: &str) -> String {
    let biz = unescape(hidden(form, "biz_content"));
    let biz: serde_json::Value = serde_json::from_str(&biz).expect("biz_content JSON");
    biz["out_trade_no"].as_str().expect("out_trade_no").to_owned()
}

/// A fresh timestamp and nonce, as WeChat signs each request with.
pub fn fresh_timestamp_and_nonce() -> (String, String) {
    (chrono::Utc::now().timestamp().to_string(), paymall::random::token_hex(8))
}

/// A WeChat event push from `openid`.
pub fn event_xml(openid: &str, event: &str, key: &str, create_time: u64) -> String {
    format!(
        "<xml><ToUserName><![CDATA[gh_sandbox000001]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )
}
