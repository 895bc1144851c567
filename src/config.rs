//! Settings, layered: `config/default.toml`, then `config/$PAYMALL_ENV.toml` if it exists,
//! then `PAYMALL__<SECTION>__<KEY>` environment variables. Every key is documented in the
//! README; an unknown, missing or malformed key stops start-up with a message naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub weixin: WeixinSettings,
    pub alipay: AlipaySettings,
    pub wechat_pay: WechatPaySettings,
    pub sandbox: SandboxSettings,
    pub compensation: CompensationSettings,
    pub catalogue: CatalogueSettings,
    pub admin: AdminSettings,
    pub limits: LimitSettings,
    pub retention: RetentionSettings,
    pub metrics: MetricsSettings,
    pub group_buy: GroupBuySettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// `host:port`; port 0 picks a free port (the log says which).
    pub bind: String,
    /// The URL shoppers and the platforms reach us at; empty means `http://<bound address>`.
    pub public_url: String,
    /// Peers (reverse proxies) whose `X-Forwarded-For` is believed; the client is then the
    /// last hop they did not add. Empty: the client is the socket's peer.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long a client may take to send a request's head (line and headers).
    pub head_timeout_secs: u64,
    /// How long a client may take to send a request's body, counted from its head; a body
    /// still arriving then is refused (408) and the connection closed.
    pub body_timeout_secs: u64,
    /// How long a request may take from its head to the answer; past it, 503.
    pub request_timeout_secs: u64,
    /// How long an idle kept-alive connection stays open.
    pub keep_alive_secs: u64,
    /// How long a closing connection waits for the client to go.
    pub disconnect_timeout_secs: u64,
    /// Connections each worker serves at once; more wait to be accepted.
    pub max_connections_per_worker: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    pub pool_size: u32,
    /// SQLite: the checkpointer readies the WAL's next stretch for the writer (allocated and
    /// mapped ahead), for hosts whose file system stalls appends.
    pub sqlite_wal_ahead: bool,
    /// SQLite: the checkpointer reads the pages a payment will write every this many seconds,
    /// for hosts that reclaim file pages nobody read for a while; 0 never.
    pub sqlite_read_open_orders_secs: u64,
    /// The usual payment (an order waiting for exactly the amount, nothing else to settle) in
    /// one statement; off, every payment is recorded by the general rules in a transaction.
    pub payment_in_one_statement: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeixinSettings {
    pub app_id: String,
    pub app_secret: Secret,
    pub token: Secret,
    pub original_id: String,
    pub encoding_aes_key: Secret,
    /// With `encoding_aes_key` set, whether plain (not `encrypt_type=aes`) messages are still
    /// accepted: WeChat's compatible mode. Otherwise they are refused.
    pub accept_plain_messages: bool,
    pub api_base_url: String,
    pub qrcode_show_url: String,
    /// WeChat's 网页授权 page, where `/login` sends a shopper inside WeChat.
    pub oauth_authorize_url: String,
    pub login_template_id: String,
    pub paid_template_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlipaySettings {
    pub app_id: String,
    pub seller_id: String,
    pub gateway_url: String,
    pub merchant_private_key_path: PathBuf,
    pub alipay_public_key_path: PathBuf,
    pub notify_url: String,
    pub return_url: String,
    pub pay_timeout_minutes: u32,
    /// A validly signed payment for an order the shop does not know is refunded after this long
    /// unless the admin refunded it sooner.
    pub orphan_refund_after_hours: u32,
}

/// WeChat Pay API v3 (直连商户, public-key mode).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatPaySettings {
    /// 商户号.
    pub mch_id: String,
    /// The Official Account the payments are made in; empty means `weixin.app_id`.
    pub app_id: String,
    /// The APIv3 key (32 bytes) that notifications are encrypted with; with the sandbox on, an
    /// empty one is generated into the key folder on first start.
    pub api_v3_key: Secret,
    /// The merchant API key (PEM); empty means `wechat_pay_merchant_private_key.pem` next to
    /// `alipay.merchant_private_key_path`.
    pub merchant_private_key_path: PathBuf,
    /// The serial number of the merchant API certificate, sent in every request's signature.
    pub merchant_serial_no: String,
    /// WeChat Pay's public key (PEM); empty means `wechat_pay_platform_public_key.pem` next to
    /// `alipay.alipay_public_key_path`.
    pub platform_public_key_path: PathBuf,
    /// The public key's id (`PUB_KEY_ID_...`): the `Wechatpay-Serial` its signatures carry.
    pub platform_public_key_id: String,
    /// `https://api.mch.weixin.qq.com`; empty means the sandbox's, with the sandbox on.
    pub api_base_url: String,
    /// Where payment and refund notifications go; empty means our own route.
    pub notify_url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    pub enabled: bool,
    /// Whether the sandbox may run on an address other hosts reach (it pays any order).
    pub allow_public: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompensationSettings {
    pub interval_secs: u64,
    pub query_after_secs: u64,
    pub close_after_minutes: u64,
    /// A payment's delivery is drained as soon as the payment commits (the background thread is
    /// woken); false leaves it to the next tick.
    pub drain_on_payment: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueSettings {
    /// How old the product list page's snapshot of the products on sale may be; 0 reads them
    /// for every page.
    pub list_max_age_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSettings {
    pub username: String,
    pub password: Secret,
    /// How many orders the orders page counts for a filter's total at most; past it the page
    /// says "at least" this many. A status alone, and no filter, are counted exactly at any size.
    pub filter_total_cap: u32,
}

/// Per-client rate limits, in requests per minute with a burst of as many: ticket creation and
/// admin sign-in always; notifications and portal pushes only when they fail verification, so a
/// busy platform is never throttled.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    pub login_tickets_per_minute: u32,
    /// New login tickets of all clients together (each a call against WeChat's daily quota).
    pub all_login_tickets_per_minute: u32,
    pub admin_sign_ins_per_minute: u32,
    pub unverified_notifications_per_minute: u32,
    pub unverified_portal_pushes_per_minute: u32,
}

/// How long the background thread keeps audit rows, in days: payment evidence long, junk briefly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Notifications kept whole: those signed by Alipay for us, whatever came of them.
    pub verified_notification_days: u32,
    /// Notifications that failed verification (their bounded prefix and hash).
    pub unverified_notification_days: u32,
    /// The record of every call to Alipay (query, close, refund).
    pub gateway_call_days: u32,
    /// WeChat pushes seen (their dedupe keys).
    pub weixin_event_days: u32,
    /// Admin sign-in failure counters, counted from the last failure.
    pub admin_failure_days: u32,
}

/// `/metrics`: with a token, scrapers must send it as `Authorization: Bearer <token>`; without
/// one the endpoint is open (keep it off the public network then).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    pub token: Secret,
}

/// Group buying (拼团).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupBuySettings {
    /// Off: no group buying is offered or placed (the original's downgrade switch, E0003); teams
    /// already open still complete, expire and refund.
    pub enabled: bool,
    /// A team is not joined when it has less than this left before it expires (E0006): the
    /// joiner needs time to pay.
    pub min_join_window_secs: u64,
    /// When set, `POST /api/v1/alipay/group_buy_notify` is routed for an outside market service,
    /// signed with this key (HMAC-SHA256 of the body in `X-Paymall-Signature`).
    pub inbound_notify_secret: Secret,
}

/// A value that must never reach a log: `Debug` prints a placeholder.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"***\"" })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: key `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Which environment file to layer over the defaults (`PAYMALL_ENV`, e.g. `prod`).
pub fn environment_name() -> Option<String> {
    std::env::var("PAYMALL_ENV").ok().filter(|v| !v.is_empty())
}

/// Where the config files are: `PAYMALL_CONFIG_DIR`, else `./config`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("PAYMALL_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("config"))
}

impl Settings {
    /// Reads the process's own configuration (files and environment).
    pub fn load() -> Result<Settings, ConfigError> {
        Settings::load_from(&config_dir(), environment_name().as_deref(), None)
    }

    /// Reads `dir/default.toml`, then `dir/{environment}.toml`, then the environment variables
    /// (`env_vars` replaces the process environment, for tests).
    pub fn load_from(
        dir: &Path,
        environment: Option<&str>,
        env_vars: Option<HashMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let mut builder =
            config::Config::builder().add_source(config::File::from(dir.join("default.toml")).required(true));
        if let Some(name) = environment {
            builder =
                builder.add_source(config::File::from(dir.join(format!("{name}.toml"))).required(false));
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("PAYMALL")
                    .prefix_separator("__")
                    .separator("__")
                    .try_parsing(true)
                    // Lists come comma-separated: PAYMALL__SERVER__TRUSTED_PROXIES=10.0.0.2,10.0.0.3
                    .list_separator(",")
                    .with_list_parse_key("server.trusted_proxies")
                    .source(env_vars),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        if environment == Some("prod") && settings.admin.password.is_empty() {
            return Err(ConfigError::Invalid {
                key: "admin.password",
                reason: "must be set when PAYMALL_ENV=prod".into(),
            });
        }
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.to_owned() });
        if self.server.bind.parse::<std::net::SocketAddr>().is_err() {
            return invalid("server.bind", "expected host:port, e.g. 127.0.0.1:8080");
        }
        if !self.server.public_url.is_empty() && !is_http_url(&self.server.public_url) {
            return invalid("server.public_url", "expected an http:// or https:// URL, or empty");
        }
        let timeouts = [
            ("server.head_timeout_secs", self.server.head_timeout_secs),
            ("server.body_timeout_secs", self.server.body_timeout_secs),
            ("server.request_timeout_secs", self.server.request_timeout_secs),
            ("server.max_connections_per_worker", self.server.max_connections_per_worker as u64),
        ];
        if let Some((key, _)) = timeouts.into_iter().find(|(_, value)| *value == 0) {
            return invalid(key, "must be at least 1");
        }
        self.check_sandbox_exposure()?;
        if self.database.url.is_empty() {
            return invalid("database.url", "must not be empty");
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        if self.alipay.pay_timeout_minutes == 0 {
            return invalid("alipay.pay_timeout_minutes", "must be at least 1");
        }
        let api_v3_key = self.wechat_pay.api_v3_key.expose().len();
        if api_v3_key != 0 && api_v3_key != 32 {
            return invalid("wechat_pay.api_v3_key", "must be 32 bytes");
        }
        if self.compensation.interval_secs == 0 {
            return invalid("compensation.interval_secs", "must be at least 1");
        }
        let limits = [
            ("limits.login_tickets_per_minute", self.limits.login_tickets_per_minute),
            ("limits.all_login_tickets_per_minute", self.limits.all_login_tickets_per_minute),
            ("limits.admin_sign_ins_per_minute", self.limits.admin_sign_ins_per_minute),
            ("limits.unverified_notifications_per_minute", self.limits.unverified_notifications_per_minute),
            ("limits.unverified_portal_pushes_per_minute", self.limits.unverified_portal_pushes_per_minute),
        ];
        if let Some((key, _)) = limits.into_iter().find(|(_, per_minute)| *per_minute == 0) {
            return invalid(key, "must be at least 1");
        }
        if !self.sandbox.enabled {
            let required = [
                ("weixin.app_id", self.weixin.app_id.is_empty()),
                ("weixin.app_secret", self.weixin.app_secret.is_empty()),
                ("weixin.token", self.weixin.token.is_empty()),
                ("weixin.api_base_url", self.weixin.api_base_url.is_empty()),
                ("weixin.qrcode_show_url", self.weixin.qrcode_show_url.is_empty()),
                ("weixin.oauth_authorize_url", self.weixin.oauth_authorize_url.is_empty()),
                ("alipay.app_id", self.alipay.app_id.is_empty()),
                ("alipay.seller_id", self.alipay.seller_id.is_empty()),
                ("alipay.gateway_url", self.alipay.gateway_url.is_empty()),
                ("admin.password", self.admin.password.is_empty()),
            ];
            if let Some((key, _)) = required.into_iter().find(|(_, missing)| *missing) {
                return invalid(key, "must be set when the sandbox is off");
            }
        }
        Ok(())
    }
}

impl Settings {
    /// The sandbox pays any order and logs anyone in: it listens only on a loopback address
    /// unless `sandbox.allow_public` says otherwise.
    pub fn check_sandbox_exposure(&self) -> Result<(), ConfigError> {
        let public_bind =
            self.server.bind.parse::<std::net::SocketAddr>().is_ok_and(|address| !address.ip().is_loopback());
        if self.sandbox.enabled && !self.sandbox.allow_public && public_bind {
            return Err(ConfigError::Invalid {
                key: "sandbox.allow_public",
                reason: format!(
                    "the sandbox is on and server.bind ({}) is not a loopback address; set it to true to allow that, or turn the sandbox off",
                    self.server.bind
                ),
            });
        }
        Ok(())
    }
}

/// The origin (`scheme://host[:port]`, lower case, without a default port) of an http(s) URL,
/// as a browser writes it in an `Origin` header or a content security policy.
pub fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host).to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    Some(format!("{scheme}://{}", host.strip_suffix(default_port).unwrap_or(&host)))
}

fn is_http_url(value: &str) -> bool {
    value.starts_with("http://") || value.starts_with("https://")
}

impl Settings {
    /// Fills the values that depend on where we listen or that the sandbox provides: an empty
    /// `server.public_url` becomes `http://<bound address>`, empty callback URLs point at our
    /// own routes, and with the sandbox on, empty gateway URLs and credentials point at it.
    pub fn resolve(mut self, bound: std::net::SocketAddr) -> Settings {
        if self.server.public_url.is_empty() {
            let host =
                if bound.ip().is_unspecified() { "127.0.0.1".to_owned() } else { bound.ip().to_string() };
            self.server.public_url = format!("http://{host}:{}", bound.port());
        }
        let public = self.server.public_url.trim_end_matches('/').to_owned();
        self.server.public_url = public.clone();
        fill(&mut self.alipay.notify_url, || format!("{public}/api/v1/alipay/alipay_notify_url"));
        fill(&mut self.alipay.return_url, || format!("{public}/orders/return"));
        let wechat_pay = &mut self.wechat_pay;
        fill(&mut wechat_pay.notify_url, || format!("{public}/api/v1/wechat_pay/notify"));
        fill(&mut wechat_pay.app_id, || self.weixin.app_id.clone());
        if wechat_pay.merchant_private_key_path.as_os_str().is_empty() {
            wechat_pay.merchant_private_key_path =
                self.alipay.merchant_private_key_path.with_file_name("wechat_pay_merchant_private_key.pem");
        }
        if wechat_pay.platform_public_key_path.as_os_str().is_empty() {
            wechat_pay.platform_public_key_path =
                self.alipay.alipay_public_key_path.with_file_name("wechat_pay_platform_public_key.pem");
        }
        if self.admin.password.is_empty() {
            // Development only: production refuses to start without a password.
            self.admin.password = Secret::new(crate::random::token_hex(8));
        }
        if self.sandbox.enabled {
            fill(&mut self.weixin.api_base_url, || format!("{public}/sandbox/weixin"));
            fill(&mut self.weixin.qrcode_show_url, || format!("{public}/sandbox/weixin/cgi-bin/showqrcode"));
            fill(&mut self.weixin.oauth_authorize_url, || {
                format!("{public}/sandbox/weixin/connect/oauth2/authorize")
            });
            fill(&mut self.alipay.gateway_url, || format!("{public}/sandbox/alipay/gateway.do"));
            fill(&mut self.wechat_pay.api_base_url, || format!("{public}/sandbox/wechatpay"));
            if self.weixin.app_secret.is_empty() {
                self.weixin.app_secret = Secret::new(crate::random::token_hex(16));
            }
            if self.weixin.token.is_empty() {
                self.weixin.token = Secret::new(crate::random::token_hex(16));
            }
        }
        self
    }
}

fn fill(value: &mut String, default: impl FnOnce() -> String) {
    if value.is_empty() {
        *value = default();
    }
}

#[cfg(test)]
mod tests {
    use super::url_origin;

    #[test]
    fn an_origin_is_scheme_host_and_port_as_a_browser_writes_it() {
        assert_eq!(
            url_origin("http://127.0.0.1:8080/sandbox/x?y=1").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(url_origin("HTTPS://Shop.Example:443/").as_deref(), Some("https://shop.example"));
        assert_eq!(
            url_origin("https://openapi.alipay.com/gateway.do").as_deref(),
            Some("https://openapi.alipay.com")
        );
        assert_eq!(url_origin("http://user:pw@host"), Some("http://host".to_owned()));
        assert_eq!(url_origin("ftp://host"), None);
        assert_eq!(url_origin("null"), None);
    }
}
