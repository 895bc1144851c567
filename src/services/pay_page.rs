//! The order's pay page (`/orders/{id}/pay`, and `/orders/{id}/pay-with` a chosen channel) and
//! what a checkout page shows of an order ([`checkout_view`]). The pay page is the link the
//! guide inside WeChat gives the shopper to open in the phone's browser, where Alipay's cashier
//! opens. An open order goes through the
//! checkout again ([`order::checkout`]): its signed form while it is valid, or, once expired, a
//! new order for the same product, coupon and team that replaces it.
//!
//! The phone's browser shares no cookies with WeChat, so the link the guide gives is signed
//! ([`PayLinks`]): it opens the order's stored form without a session, until the form expires.

use chrono::{Duration, NaiveDateTime};

use crate::engine::Engine;
use crate::error::{AppError, AppResult};
use crate::gateways::wechat_pay::JsapiPayParams;
use crate::gateways::{hmac_matches, hmac_sha256_hex};
use crate::models::now;
use crate::models::order::{Channel, Order, OrderAtCheckout};
use crate::models::order_discount::DiscountType;
use crate::models::user::AppUser;
use crate::sandbox::wechat_pay::scan_page_url;
use crate::services::group_buy::GroupBuyPick;
use crate::services::order::{self, FORM_MARGIN_SECS, OrderToPay, PayMethod, Purchase, Shop, WechatPayment};
use crate::services::order_history::Breakdown;
use crate::services::{order_history, qr, session};

/// What the pay page shows.
pub enum PayPage {
    /// The order (or the one that replaced it) with its form.
    Pay(AppUser, OrderToPay),
    /// The order's stored form, opened by its signed link without a session.
    Form(OrderToPay),
    /// The order is no longer waiting for a payment: its own page says what it is.
    Settled,
}

/// The pay page of the order `order_id` of the shopper behind the session `token` (anybody
/// else's order is "not found"; [`AppError::NotLoggedIn`] without a live session). A new form is
/// made for `method`; a valid stored form of the same channel is handed out as it was made, and
/// an order of another channel is closed there first and replaced ([`order::checkout`]).
pub async fn open(shop: &Shop<'_>, token: String, order_id: String, method: PayMethod) -> AppResult<PayPage> {
    let lookup = token.clone();
    let priced = shop
        .engine
        .run(move |conn| {
            let user = session::user_for_token(conn, &lookup)?.ok_or(AppError::NotLoggedIn)?;
            order_history::of_shopper(conn, &user, &order_id)
        })
        .await?;
    if !priced.order.status.is_open() {
        return Ok(PayPage::Settled);
    }
    let coupon_id = priced
        .breakdown
        .discounts
        .iter()
        .find(|d| d.discount_type == DiscountType::Coupon)
        .and_then(|d| d.ref_id.parse().ok());
    // A group order keeps its team, unless it was the team's only seat: the close that replaces
    // it fails that team, and the new order opens another.
    let group_buy = priced.team.map(|team| GroupBuyPick {
        activity_id: team.activity_id,
        team_id: (team.lock_count > 1).then_some(team.team_id),
    });
    let purchase = Purchase { product_id: priced.order.product_id, coupon_id, group_buy, method };
    let (user, to_pay) = order::checkout(shop, token, purchase).await?;
    Ok(PayPage::Pay(user, to_pay))
}

/// Signs and checks the guide's pay links: `until` (the form's expiry, Unix seconds) and `sig`,
/// the HMAC-SHA256 of `<order_id>|<until>` under a secret derived from the merchant key (the
/// same on every instance). A link opens that order's stored form and nothing else.
pub struct PayLinks {
    secret: [u8; 32],
}

impl PayLinks {
    pub fn new(secret: [u8; 32]) -> Self {
        PayLinks { secret }
    }

    /// The query string (`until=…&sig=…`) of the order's pay link, valid until `until`.
    pub fn query(&self, order_id: &str, until: NaiveDateTime) -> String {
        let until = until.and_utc().timestamp();
        let sig = hmac_sha256_hex(&self.secret, format!("{order_id}|{until}").as_bytes()).unwrap_or_default();
        format!("until={until}&sig={sig}")
    }

    /// Whether `sig` signs the order's link until `until`, and `until` is still ahead of `at`.
    pub fn verify(&self, order_id: &str, until: i64, sig: &str, at: NaiveDateTime) -> bool {
        until > at.and_utc().timestamp()
            && hmac_matches(&self.secret, format!("{order_id}|{until}").as_bytes(), sig)
    }
}

/// The pay page of a signed link (checked by the caller): the order's stored form while it is
/// valid; an order no longer waiting is [`PayPage::Settled`]; a form past its time is refused
/// (the shopper opens the order again inside WeChat for a new link).
pub async fn by_link(engine: &Engine, order_id: String) -> AppResult<PayPage> {
    engine
        .run(move |conn| {
            let order =
                Order::find(conn, &order_id)?.ok_or_else(|| AppError::NotFound("订单不存在".into()))?;
            if !order.status.is_open() {
                return Ok(PayPage::Settled);
            }
            let form = Order::form_of(conn, &order_id)?
                .filter(|_| order.expire_at - Duration::seconds(FORM_MARGIN_SECS) > now());
            let Some(pay_form) = form else {
                return Err(AppError::Conflict("付款链接已过期，请回到微信重新打开订单".into()));
            };
            let order = OrderAtCheckout {
                order_id: order.order_id,
                product_name: order.product_name,
                total_cents: order.total_cents,
                expire_at: order.expire_at,
                channel: order.channel,
            };
            Ok(PayPage::Form(OrderToPay { order, pay_form, existing: false }))
        })
        .await
}

/// How the checkout page has the shopper pay an order, by the channel of its form.
pub enum Payment {
    /// Alipay's signed form (HTML), submitted to its cashier.
    Alipay { form: String },
    /// WeChat Pay's code to scan with WeChat: its QR code (inline SVG), and with the sandbox on
    /// the sandbox's page where a tester scans and pays it.
    WechatNative { qr_svg: String, sandbox_scan: Option<String> },
    /// The WeChat browser's pay call's parameters; `sandbox` says the sandbox's stand-in for
    /// the bridge may take them where WeChat's own is missing.
    WechatJsapi { params: JsapiPayParams, sandbox: bool },
}

/// An Alipay form as the page's 支付宝支付 button submits it (`#alipay-form`): a form stored before
/// the form carried its id gets it (the tag's attributes are not signed; its fields are).
fn with_form_id(form: String) -> String {
    const TAG: &str = "<form name=\"punchout_form\" ";
    if form.contains("id=\"alipay-form\"") || !form.starts_with(TAG) {
        return form;
    }
    form.replacen(TAG, "<form name=\"punchout_form\" id=\"alipay-form\" ", 1)
}

/// What the checkout page shows of an order to pay: its price breakdown and how to pay it.
pub struct CheckoutView {
    pub breakdown: Breakdown,
    pub payment: Payment,
}

/// The checkout page's view of the order and its form (`pay_form`, of the order's channel). A
/// WeChat Pay order's JSAPI parameters are signed now; without WeChat Pay configured its form
/// cannot be shown ([`AppError::Unavailable`]).
pub async fn checkout_view(
    shop: &Shop<'_>,
    order: &OrderAtCheckout,
    pay_form: String,
) -> AppResult<CheckoutView> {
    let (order_id, payable_cents, channel) = (order.order_id.clone(), order.total_cents, order.channel);
    let wechat_pay = shop.gateways.wechat_pay.clone();
    let sandbox = shop.settings.sandbox.enabled;
    let public_url = shop.settings.server.public_url.clone();
    shop.engine
        .run(move |conn| {
            let breakdown = order_history::at_checkout(conn, &order_id, payable_cents)?;
            let payment = match channel {
                Channel::Alipay => Payment::Alipay { form: with_form_id(pay_form) },
                Channel::WechatPay => {
                    let client =
                        wechat_pay.ok_or_else(|| AppError::Unavailable("暂不支持微信支付".into()))?;
                    match order::wechat_payment(&client, &pay_form) {
                        WechatPayment::Native { code_url } => Payment::WechatNative {
                            qr_svg: qr::svg(&code_url, 240)
                                .ok_or_else(|| AppError::Internal("微信支付二维码无法生成".into()))?,
                            sandbox_scan: sandbox.then(|| scan_page_url(&public_url, &code_url)).flatten(),
                        },
                        WechatPayment::Jsapi(params) => Payment::WechatJsapi { params, sandbox },
                    }
                }
            };
            Ok(CheckoutView { breakdown, payment })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::with_form_id;

    #[test]
    fn an_alipay_form_stored_without_its_id_gets_it_once() {
        let old = "<form name=\"punchout_form\" method=\"post\" action=\"https://gw\">…</form>".to_owned();
        let fixed = with_form_id(old);
        assert!(
            fixed.starts_with("<form name=\"punchout_form\" id=\"alipay-form\" method=\"post\""),
            "{fixed}"
        );
        assert_eq!(with_form_id(fixed.clone()), fixed);
        assert_eq!(with_form_id("weixin://wxpay/bizpayurl?pr=x".into()), "weixin://wxpay/bizpayurl?pr=x");
    }
}
