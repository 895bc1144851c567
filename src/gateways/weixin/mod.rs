//! WeChat Official Account: the API we call (access tokens, scene QR tickets, template
//! messages, the 网页授权 link and its code exchange), and in [`portal`] and [`safe_mode`] the
//! protocol of the pushes WeChat sends us.
//! Facts: shared/PROTOCOLS.md.

pub mod portal;
pub mod safe_mode;

use std::time::Duration;

use serde::Deserialize;

use super::{GatewayError, http_agent};
use crate::config::Settings;
use crate::error::AppError;

const PLATFORM: &str = "WeChat";

/// Error codes that mean "this access token is no longer good": refresh and retry once.
pub const TOKEN_INVALID: [i64; 3] = [40001, 40014, 42001];

/// Error codes of `sns/oauth2/access_token` that mean the code is no good: invalid (40029) or
/// already used (40163).
pub const CODE_INVALID: [i64; 2] = [40029, 40163];

#[derive(Debug, thiserror::Error)]
pub enum WeixinError {
    #[error("the access token was refused (errcode {0})")]
    TokenInvalid(i64),
    #[error("the authorisation code was refused (errcode {0})")]
    CodeInvalid(i64),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

impl From<WeixinError> for AppError {
    fn from(e: WeixinError) -> Self {
        match e {
            WeixinError::Gateway(g) => g.into(),
            token @ WeixinError::TokenInvalid(_) => AppError::Gateway {
                message: "WeChat refused our credentials.".into(),
                cause: token.to_string(),
            },
            WeixinError::CodeInvalid(code) => {
                log::info!("weixin: an authorisation code was refused (errcode {code})");
                AppError::BadRequest("微信登录未完成：授权码无效或已使用，请重新登录。".into())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
    access_token: Option<String>,
    expires_in: Option<i64>,
    ticket: Option<String>,
    openid: Option<String>,
}

pub struct QrTicket {
    pub ticket: String,
    pub expire_seconds: i64,
}

pub struct WeixinClient {
    app_id: String,
    app_secret: String,
    api_base_url: String,
    oauth_authorize_url: String,
    agent: ureq::Agent,
}

impl WeixinClient {
    pub fn from_settings(settings: &Settings) -> WeixinClient {
        WeixinClient {
            app_id: settings.weixin.app_id.clone(),
            app_secret: settings.weixin.app_secret.expose().to_owned(),
            api_base_url: settings.weixin.api_base_url.trim_end_matches('/').to_owned(),
            oauth_authorize_url: settings.weixin.oauth_authorize_url.clone(),
            agent: http_agent(Duration::from_secs(5)),
        }
    }

    fn read(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, WeixinError> {
        let unreachable =
            |e: ureq::Error| GatewayError::Unreachable { platform: PLATFORM, reason: e.to_string() };
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().map_err(unreachable)?;
        let bad = |reason: String| GatewayError::BadAnswer { platform: PLATFORM, reason };
        if status != 200 {
            return Err(bad(format!("HTTP {status}")).into());
        }
        let answer: Answer = serde_json::from_str(&body).map_err(|e| bad(format!("malformed JSON: {e}")))?;
        match answer.errcode {
            0 => Ok(answer),
            code if TOKEN_INVALID.contains(&code) => Err(WeixinError::TokenInvalid(code)),
            code if CODE_INVALID.contains(&code) => Err(WeixinError::CodeInvalid(code)),
            code => Err(GatewayError::Refused {
                platform: PLATFORM,
                code: code.to_string(),
                message: answer.errmsg,
            }
            .into()),
        }
    }

    /// `GET /cgi-bin/token`: a new access token and its lifetime in seconds.
    pub fn fetch_token(&self) -> Result<(String, i64), WeixinError> {
        counted("weixin.token", self.token())
    }

    fn token(&self) -> Result<(String, i64), WeixinError> {
        let url = format!("{}/cgi-bin/token", self.api_base_url);
        let request = self
            .agent
            .get(&url)
            .query("grant_type", "client_credential")
            .query("appid", &self.app_id)
            .query("secret", &self.app_secret);
        let answer = self.read(request.call())?;
        match (answer.access_token, answer.expires_in) {
            (Some(token), Some(expires_in)) if !token.is_empty() => Ok((token, expires_in)),
            _ => Err(GatewayError::BadAnswer {
                platform: PLATFORM,
                reason: "no access_token in the answer".into(),
            }
            .into()),
        }
    }

    /// The 网页授权 link (`snsapi_base`: the openid, without asking the shopper) that sends the
    /// browser back to `redirect_uri` with a code and `state`. WeChat wants the parameters in
    /// this order and the `#wechat_redirect` fragment.
    pub fn oauth_authorize_url(&self, redirect_uri: &str, state: &str) -> String {
        let query = serde_urlencoded::to_string([
            ("appid", self.app_id.as_str()),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "snsapi_base"),
            ("state", state),
        ])
        .unwrap_or_default();
        format!("{}?{query}#wechat_redirect", self.oauth_authorize_url)
    }

    /// `GET /sns/oauth2/access_token`: the openid of the shopper a 网页授权 code was given to.
    /// The code is good once, for five minutes ([`WeixinError::CodeInvalid`] otherwise).
    pub fn openid_for_code(&self, code: &str) -> Result<String, WeixinError> {
        counted("weixin.oauth2.access_token", self.oauth_openid(code))
    }

    fn oauth_openid(&self, code: &str) -> Result<String, WeixinError> {
        let url = format!("{}/sns/oauth2/access_token", self.api_base_url);
        let request = self
            .agent
            .get(&url)
            .query("appid", &self.app_id)
            .query("secret", &self.app_secret)
            .query("code", code)
            .query("grant_type", "authorization_code");
        let answer = self.read(request.call())?;
        answer.openid.filter(|openid| !openid.is_empty()).ok_or_else(|| {
            GatewayError::BadAnswer { platform: PLATFORM, reason: "no openid in the answer".into() }.into()
        })
    }

    /// `POST /cgi-bin/qrcode/create`: a temporary `QR_STR_SCENE` ticket.
    pub fn create_qr_ticket(
        &self,
        token: &str,
        scene: &str,
        expire_seconds: i64,
    ) -> Result<QrTicket, WeixinError> {
        counted("weixin.qrcode.create", self.qr_ticket(token, scene, expire_seconds))
    }

    fn qr_ticket(&self, token: &str, scene: &str, expire_seconds: i64) -> Result<QrTicket, WeixinError> {
        let url = format!("{}/cgi-bin/qrcode/create", self.api_base_url);
        let body = serde_json::json!({
            "expire_seconds": expire_seconds,
            "action_name": "QR_STR_SCENE",
            "action_info": { "scene": { "scene_str": scene } },
        });
        let answer = self.post_json(&url, token, &body)?;
        let ticket = answer.ticket.ok_or_else(|| GatewayError::BadAnswer {
            platform: PLATFORM,
            reason: "no ticket in the answer".into(),
        })?;
        Ok(QrTicket { ticket, expire_seconds })
    }

    /// `POST /cgi-bin/message/template/send` with a prepared body.
    pub fn send_template(&self, token: &str, body: &serde_json::Value) -> Result<(), WeixinError> {
        let url = format!("{}/cgi-bin/message/template/send", self.api_base_url);
        counted("weixin.template.send", self.post_json(&url, token, body).map(|_| ()))
    }

    fn post_json(&self, url: &str, token: &str, body: &serde_json::Value) -> Result<Answer, WeixinError> {
        self.read(
            self.agent
                .post(url)
                .query("access_token", token)
                .content_type("application/json")
                .send(body.to_string()),
        )
    }
}

/// Counts a call of `kind` in the metrics, failed when it is an error.
fn counted<T>(kind: &str, result: Result<T, WeixinError>) -> Result<T, WeixinError> {
    crate::metrics::gateway_call(None, kind, result.is_err());
    result
}
