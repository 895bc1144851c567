//! What kind of browser asks, from its `User-Agent`: WeChat's built-in browser, a phone's
//! browser, or a computer's. It picks the login (WeChat's 网页授权 inside WeChat, the QR code
//! elsewhere) and the Alipay cashier (the phone's on a phone; inside WeChat, which does not open
//! Alipay's pages, a guide to the phone's browser).

use std::future::{Ready, ready};

use actix_web::http::header::USER_AGENT;
use actix_web::{FromRequest, HttpRequest, dev::Payload};

use crate::error::AppError;
use crate::gateways::alipay::Cashier;
use crate::services::order::PayMethod;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    /// The user agent names `MicroMessenger`.
    WeChat,
    /// Any other browser naming `Mobile`, `iPhone` or `Android`.
    Phone,
    Desktop,
}

impl Device {
    pub fn of_user_agent(user_agent: &str) -> Device {
        if user_agent.contains("MicroMessenger") {
            Device::WeChat
        } else if ["Mobile", "iPhone", "Android"].iter().any(|word| user_agent.contains(word)) {
            Device::Phone
        } else {
            Device::Desktop
        }
    }

    /// The cashier a new order's form opens. Inside WeChat it is the phone's: the shopper pays
    /// in the phone's browser the guide sends them to.
    pub fn cashier(self) -> Cashier {
        match self {
            Device::WeChat | Device::Phone => Cashier::Wap,
            Device::Desktop => Cashier::Page,
        }
    }
}

impl Device {
    /// How WeChat Pay is paid here: inside WeChat by its own pay call (JSAPI), elsewhere by
    /// scanning the order's code (Native).
    pub fn wechat_pay_method(self) -> PayMethod {
        match self {
            Device::WeChat => PayMethod::WechatJsapi,
            Device::Phone | Device::Desktop => PayMethod::WechatNative,
        }
    }
}

impl FromRequest for Device {
    type Error = AppError;
    type Future = Ready<Result<Device, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let user_agent = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("");
        ready(Ok(Device::of_user_agent(user_agent)))
    }
}

#[cfg(test)]
mod tests {
    use super::Device;
    use crate::gateways::alipay::Cashier;

    #[test]
    fn the_user_agent_tells_wechat_from_phones_and_computers() {
        let wechat = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.47(0x18002f2c) NetType/WIFI Language/zh_CN";
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36";
        let desktop = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36";
        assert_eq!(Device::of_user_agent(wechat), Device::WeChat);
        assert_eq!(Device::of_user_agent(safari), Device::Phone);
        assert_eq!(Device::of_user_agent(android), Device::Phone);
        assert_eq!(Device::of_user_agent(desktop), Device::Desktop);
        assert_eq!(Device::of_user_agent(""), Device::Desktop);
        assert_eq!(Device::WeChat.cashier(), Cashier::Wap);
        assert_eq!(Device::Desktop.cashier(), Cashier::Page);
    }
}
