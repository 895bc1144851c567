//! The outside world (WeChat, Alipay): their protocols, and clients for their HTTP APIs. The
//! clients are blocking (ureq): call them from `web::block` or the background thread, never on
//! an async worker. Nothing here touches the database. The payment channels' gateways answer the
//! same calls ([`PaymentGateway`]), picked by an order's channel ([`Gateways::of`]).

mod addresses;
pub mod alipay;
pub mod channel;
pub mod market;
pub mod wechat_pay;
pub mod weixin;

use std::time::Duration;

pub use channel::{CloseOutcome, GatewayOp, Gateways, PaymentGateway, RefundRequest, TradeState};

use crate::error::AppError;

/// The hex HMAC-SHA256 of `body` under `key`.
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> Option<String> {
    use openssl::{hash::MessageDigest, pkey::PKey, sign::Signer};
    let key = PKey::hmac(key).ok()?;
    let mut signer = Signer::new(MessageDigest::sha256(), &key).ok()?;
    signer.update(body).ok()?;
    Some(crate::random::hex(&signer.sign_to_vec().ok()?))
}

/// Whether `signature` (hex, either case) is the HMAC-SHA256 of `body` under `key`, compared in
/// constant time.
pub fn hmac_matches(key: &[u8], body: &[u8], signature: &str) -> bool {
    let Some(expected) = hmac_sha256_hex(key, body) else { return false };
    expected.len() == signature.len()
        && openssl::memcmp::eq(expected.as_bytes(), signature.to_ascii_lowercase().as_bytes())
}

/// An HTTP agent with bounded waits; 4xx/5xx answers come back as responses to read.
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .tls_config(ureq::tls::TlsConfig::builder().provider(ureq::tls::TlsProvider::NativeTls).build())
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        // Connections kept open for the next call: a WeChat Pay checkout calls the same host on
        // every order, and a new connection costs a TLS handshake (ureq keeps 3 per host).
        .max_idle_connections(64)
        .max_idle_connections_per_host(32)
        .build();
    ureq::Agent::with_parts(
        config,
        ureq::unversioned::transport::DefaultConnector::new(),
        addresses::KeptAddresses::default(),
    )
}

/// Counts a call of `kind` in the metrics, failed when it is an error.
pub(crate) fn counted<T>(
    channel: Option<crate::models::order::Channel>,
    kind: &str,
    result: Result<T, GatewayError>,
) -> Result<T, GatewayError> {
    crate::metrics::gateway_call(channel, kind, result.is_err());
    result
}

/// Why a call to a platform failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No answer: refused, timed out, or cut off. The outcome at the platform is unknown.
    #[error("{platform} unreachable: {reason}")]
    Unreachable { platform: &'static str, reason: String },
    /// An answer we cannot trust or understand (bad signature, malformed body, HTTP error).
    #[error("{platform} answered badly: {reason}")]
    BadAnswer { platform: &'static str, reason: String },
    /// The platform answered with an error code.
    #[error("{platform} error {code}: {message}")]
    Refused { platform: &'static str, code: String, message: String },
}

/// A platform as Chinese shoppers name it.
fn chinese_name(platform: &str) -> &str {
    match platform {
        "Alipay" => "支付宝",
        "WeChat" => "微信",
        "WeChat Pay" => "微信支付",
        other => other,
    }
}

impl From<GatewayError> for AppError {
    fn from(e: GatewayError) -> Self {
        log::warn!("gateway: {e}");
        let cause = e.to_string();
        // The shoppers' words: the platform by its Chinese name, the rest in the log.
        let message = match e {
            GatewayError::Unreachable { platform, .. } => {
                format!("{}暂时无法访问，请稍后再试", chinese_name(platform))
            }
            GatewayError::BadAnswer { platform, .. } | GatewayError::Refused { platform, .. } => {
                format!("{}暂时无法处理该请求，请稍后再试", chinese_name(platform))
            }
        };
        AppError::Gateway { message, cause }
    }
}
