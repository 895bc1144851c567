#![allow(dead_code)] // shared by every test module; not each module uses every helper
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::ServerHandle;
pub use paymall::both_backends;
use paymall::config::{Secret, Settings};
pub use paymall::db::Backend;
use paymall::jobs::Worker;
use paymall::startup::Application;
pub use paymall::test_support::TestDatabase;

pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// The shipped defaults, untouched by the environment of the test process.
pub fn default_settings() -> Settings {
    Settings::load_from(&config_dir(), None, Some(HashMap::new())).expect("config/default.toml loads")
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
    pub fn spawn_with(backend: Backend, customize: impl FnOnce(&mut Settings)) -> TestApp {
        let _ = env_logger::builder().is_test(true).try_init();
        let db = TestDatabase::new(backend);
        let mut settings = default_settings();
        settings.server.bind = "127.0.0.1:0".into();
        settings.database.url = Secret::new(db.url.clone());
        settings.database.pool_size = 4;
        // Tests run the background tasks by hand (`app.worker.tick()`); the thread still ticks
        // once at start-up.
        settings.compensation.interval_secs = 3600;
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

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.address)
    }

    /// A browser already logged in as `openid`, through a session opened directly in the
    /// database (the login flow itself is tested in `login`).
    pub fn browser_logged_in_as(&self, openid: &str) -> Browser {
        let (_, token) = paymall::services::session::start(&mut self.db.connect(), openid).expect("session");
        let mut browser = self.browser();
        browser.cookies.insert(paymall::services::session::SESSION_COOKIE.to_owned(), token);
        browser
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
}
