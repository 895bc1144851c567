//! Stand-ins for WeChat's, WeChat Pay's and Alipay's servers, speaking their real wire protocols over HTTP.
//! Mounted under `/sandbox` when `sandbox.enabled` (the development default) and used by the
//! tests; the shop reaches them through the same gateway code it uses in production.

pub mod alipay;
pub mod wechat_pay;
pub mod weixin;

use actix_web::web;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::scope("/alipay").configure(alipay::routes))
        .service(web::scope("/weixin").configure(weixin::routes))
        .service(web::scope("/wechatpay").configure(wechat_pay::routes));
}
