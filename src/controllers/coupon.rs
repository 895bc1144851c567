//! Coupons for shoppers: the 领券中心 page, claiming (page form and JSON API), the shopper's
//! coupons, and the price trial.

use actix_web::{HttpResponse, web};
use askama::Template;
use serde::{Deserialize, Serialize};

use super::identity::{MaybeShopper, Shopper};
use super::{Nav, csrf, render, see_other};
use crate::china_time;
use crate::error::{AppError, Envelope};
use crate::i18n::Lang;
use crate::models::coupon::{CouponKind, CouponStatus, TemplateWithProducts, UserCouponWithTemplate};
use crate::models::now;
use crate::money::format_yuan;
use crate::services::coupon::{self as coupons, CouponRefusal};
use crate::services::pricing::Price;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/coupons", web::get().to(centre)).route("/coupons/claim", web::post().to(claim_by_form));
}

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/coupons", web::get().to(api_my_coupons))
        .route("/v1/coupons/claim", web::post().to(api_claim))
        .route("/v1/price/trial", web::post().to(api_trial));
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimBody {
    template_id: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimedView {
    coupon_id: i64,
    code: String,
    status: &'static str,
}

async fn api_claim(
    state: web::Data<AppState>,
    shopper: Shopper,
    body: web::Json<ClaimBody>,
) -> Result<HttpResponse, AppError> {
    let (user_id, template_id) = (shopper.user.user_id, body.template_id);
    let claimed = state.engine.run(move |conn| coupons::claim(conn, user_id, template_id, now())).await?;
    Ok(Envelope::ok(ClaimedView {
        coupon_id: claimed.coupon_id,
        code: claimed.code,
        status: claimed.status.as_str(),
    }))
}

/// A shopper's coupon as the JSON API shows it; amounts in yuan with two decimals, `rate` the
/// share left to pay (`0.80` for 8折).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CouponView {
    coupon_id: i64,
    code: String,
    template_id: i64,
    name: String,
    #[serde(rename = "type")]
    kind: &'static str,
    rule: String,
    threshold: String,
    off: Option<String>,
    rate: Option<String>,
    max_off: Option<String>,
    scope: &'static str,
    product_ids: Vec<String>,
    valid_from: String,
    valid_until: String,
    status: &'static str,
    locked_order_id: Option<String>,
    used_order_id: Option<String>,
}

/// Basis points as a share: 8000 -> `0.80`, 8850 -> `0.885`.
fn share(rate_bp: i32) -> String {
    let text = format!("0.{rate_bp:04}");
    let trimmed = text.trim_end_matches('0');
    if trimmed.len() < 4 { format!("{trimmed:0<4}") } else { trimmed.to_owned() }
}

impl CouponView {
    fn new(c: &UserCouponWithTemplate, at: chrono::NaiveDateTime) -> CouponView {
        let t = &c.template.template;
        CouponView {
            coupon_id: c.coupon.coupon_id,
            code: c.coupon.code.clone(),
            template_id: t.template_id,
            name: t.name.clone(),
            kind: t.kind.as_str(),
            rule: t.rule_in_words(),
            threshold: format_yuan(t.threshold_cents),
            off: (t.kind != CouponKind::Zk).then(|| format_yuan(t.off_cents)),
            rate: (t.kind == CouponKind::Zk).then(|| share(t.rate_bp)),
            max_off: t.max_off_cents.map(format_yuan),
            scope: t.scope.as_str(),
            product_ids: c.template.product_ids.clone(),
            valid_from: china_time::format(c.coupon.valid_from),
            valid_until: china_time::format(c.coupon.valid_until),
            status: c.coupon.status_at(at).as_str(),
            locked_order_id: c.coupon.locked_order_id.clone(),
            used_order_id: c.coupon.used_order_id.clone(),
        }
    }
}

#[derive(Deserialize)]
struct StatusQuery {
    status: Option<String>,
}

async fn api_my_coupons(
    state: web::Data<AppState>,
    shopper: Shopper,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, AppError> {
    let wanted: Option<CouponStatus> = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| AppError::BadRequest("非法参数：未知的优惠券状态".into()))?),
    };
    let user_id = shopper.user.user_id;
    let mine = state.engine.run(move |conn| coupons::of_shopper(conn, user_id)).await?;
    let at = now();
    let views: Vec<CouponView> = mine
        .iter()
        .filter(|c| wanted.is_none_or(|w| c.coupon.status_at(at) == w))
        .map(|c| CouponView::new(c, at))
        .collect();
    Ok(Envelope::ok(views))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TrialBody {
    product_id: String,
    coupon_id: Option<i64>,
    #[serde(flatten)]
    market: super::order::MarketChoice,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AppliedView {
    #[serde(rename = "type")]
    kind: &'static str,
    ref_id: String,
    name: String,
    amount: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TrialView {
    total_amount: String,
    discount_amount: String,
    payable_amount: String,
    applied_discounts: Vec<AppliedView>,
}

impl From<Price> for TrialView {
    fn from(p: Price) -> Self {
        TrialView {
            total_amount: format_yuan(p.total_cents),
            discount_amount: format_yuan(p.discount_cents),
            payable_amount: format_yuan(p.payable_cents),
            applied_discounts: p
                .applied
                .into_iter()
                .map(|d| AppliedView {
                    kind: d.discount_type.as_str(),
                    ref_id: d.ref_id,
                    name: d.name,
                    amount: format_yuan(d.amount_cents),
                })
                .collect(),
        }
    }
}

/// The price of a product with a coupon, for anyone; a coupon needs the shopper's session.
async fn api_trial(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    body: web::Json<TrialBody>,
) -> Result<HttpResponse, AppError> {
    let TrialBody { product_id, coupon_id, market } = body.into_inner();
    if product_id.trim().is_empty() {
        return Err(AppError::BadRequest("非法参数：缺少 productId".into()));
    }
    let group = market.pick()?;
    let user = shopper.0.map(|s| s.user);
    let settings = state.settings.clone();
    let price = state
        .engine
        .run(move |conn| {
            let product_id = product_id.trim();
            coupons::trial(conn, &settings, user.as_ref(), product_id, coupon_id, group.as_ref(), now())
        })
        .await?;
    Ok(Envelope::ok(TrialView::from(price)))
}

/// A template as the page shows it.
struct OpenTemplate {
    template_id: i64,
    name: String,
    rule: String,
    scope: String,
    validity: String,
    remaining: i64,
}

impl OpenTemplate {
    fn new(t: &TemplateWithProducts, lang: Lang) -> Self {
        OpenTemplate {
            template_id: t.template.template_id,
            name: t.template.name.clone(),
            rule: t.template.rule_in_words(),
            scope: scope_in_words(t, lang),
            validity: match (t.template.valid_days, t.template.valid_until) {
                (Some(days), _) => lang.tv("coupons-valid-days", "days", days),
                (None, Some(until)) => lang.tv("coupons-valid-until", "time", lang.time(until)),
                (None, None) => String::new(),
            },
            remaining: t.template.remaining(),
        }
    }
}

fn scope_in_words(t: &TemplateWithProducts, lang: Lang) -> String {
    if t.product_ids.is_empty() {
        lang.t("coupons-scope-all")
    } else {
        lang.tv("coupons-scope-products", "ids", t.product_ids.join("、"))
    }
}

/// A shopper's coupon as the page shows it.
struct HeldCoupon {
    name: String,
    rule: String,
    scope: String,
    code: String,
    valid_until: chrono::NaiveDateTime,
}

/// The shopper's coupons of one status.
struct CouponGroup {
    status: &'static str,
    coupons: Vec<HeldCoupon>,
}

#[derive(Template)]
#[template(path = "coupons.html")]
struct CentrePage {
    lang: Lang,
    nav: Nav,
    logged_in: bool,
    open: Vec<OpenTemplate>,
    groups: Vec<CouponGroup>,
    notice: Option<String>,
}

#[derive(Deserialize)]
struct CentreQuery {
    claimed: Option<String>,
    refused: Option<String>,
}

async fn centre(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
    query: web::Query<CentreQuery>,
) -> Result<HttpResponse, AppError> {
    let user_id = shopper.0.as_ref().map(|s| s.user.user_id);
    let at = now();
    let (open, mine) = state.engine.run(move |conn| coupons::centre(conn, user_id, at)).await?;
    let groups = CouponStatus::ALL
        .into_iter()
        .map(|status| CouponGroup {
            status: status.as_str(),
            coupons: mine
                .iter()
                .filter(|c| c.coupon.status_at(at) == status)
                .map(|c| HeldCoupon {
                    name: c.template.template.name.clone(),
                    rule: c.template.template.rule_in_words(),
                    scope: scope_in_words(&c.template, lang),
                    code: c.coupon.code.clone(),
                    valid_until: c.coupon.valid_until,
                })
                .collect(),
        })
        .collect();
    // Only known texts are shown: a link cannot put words on the page.
    let notice = match (&query.claimed, query.refused.as_deref().and_then(CouponRefusal::from_code)) {
        (_, Some(refusal)) => Some(lang.keyed("refusal", refusal.code())),
        (Some(_), None) => Some(lang.t("coupons-claimed")),
        (None, None) => None,
    };
    render(&CentrePage {
        lang,
        nav: shopper.nav(),
        logged_in: user_id.is_some(),
        open: open.iter().map(|t| OpenTemplate::new(t, lang)).collect(),
        groups,
        notice,
    })
}

#[derive(Deserialize)]
struct ClaimForm {
    csrf: Option<String>,
    template_id: i64,
}

/// The page's 领取 button: back to the page, saying how it went.
async fn claim_by_form(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    form: web::Form<ClaimForm>,
) -> Result<HttpResponse, AppError> {
    let Some(shopper) = shopper.0 else { return Ok(see_other("/login?next=/coupons")) };
    csrf::verify(&shopper.token, form.csrf.as_deref())?;
    let (user_id, template_id) = (shopper.user.user_id, form.template_id);
    match state.engine.run(move |conn| coupons::claim(conn, user_id, template_id, now())).await {
        Ok(claimed) => Ok(see_other(&format!("/coupons?claimed={}", claimed.coupon_id))),
        Err(AppError::Refused { code, .. }) => Ok(see_other(&format!("/coupons?refused={code}"))),
        Err(other) => Err(other),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rates_read_as_the_share_left_to_pay() {
        assert_eq!(super::share(8000), "0.80");
        assert_eq!(super::share(8850), "0.885");
        assert_eq!(super::share(8855), "0.8855");
        assert_eq!(super::share(500), "0.05");
        assert_eq!(super::share(1), "0.0001");
    }
}
