use std::sync::Arc;

use actix_web::{HttpResponse, web};
use askama::Template;

use super::group_buy::GroupBuyBox;
use super::identity::MaybeShopper;
use super::{Nav, filters, render};
use crate::error::AppError;
use crate::i18n::Lang;
use crate::models::now;
use crate::models::product::Product;
use crate::money::format_yuan;
use crate::services::catalogue::{self, ProductWithOffers};
use crate::services::coupon::CouponOffer;
use crate::services::group_buy as groups;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(list)).route("/products/{product_id}", web::get().to(detail));
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    lang: Lang,
    nav: Nav,
    products: Arc<[Product]>,
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    lang: Lang,
    nav: Nav,
    product: Product,
    /// The Buy form's token, for a logged-in shopper.
    csrf: Option<String>,
    /// The coupon picker's choices after "不使用优惠券" (empty: no picker).
    coupons: Vec<CouponChoice>,
    /// The best price a coupon gives, when one applies.
    best_cents: Option<i64>,
    /// The product's group buy (开团购买, the teams to join), when it has one.
    group_buy: Option<GroupBuyBox>,
}

/// One of the shopper's coupons in the Buy form's picker: its rule in words with the price it
/// gives, or with why it does not apply (then it cannot be picked).
struct CouponChoice {
    coupon_id: i64,
    label: String,
    selected: bool,
    disabled: bool,
}

impl CouponChoice {
    /// The choices in the offers' order (the best first, which is preselected).
    fn list(offers: &[CouponOffer], lang: Lang) -> Vec<CouponChoice> {
        offers
            .iter()
            .enumerate()
            .map(|(i, offer)| {
                let rule = offer.coupon.template.template.rule_in_words();
                let (label, disabled) = match &offer.price {
                    Ok(price) => {
                        let payable = format_yuan(price.payable_cents);
                        (format!("{rule} · {} ¥{payable}", lang.t("product-coupon-price")), false)
                    }
                    Err(refusal) => (format!("{rule} · {}", lang.keyed("refusal", refusal.code())), true),
                };
                CouponChoice {
                    coupon_id: offer.coupon.coupon.coupon_id,
                    label,
                    selected: i == 0 && !disabled,
                    disabled,
                }
            })
            .collect()
    }
}

async fn list(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
) -> Result<HttpResponse, AppError> {
    let products = state.shop_window.products(|| state.engine.run(catalogue::products_on_sale)).await?;
    render(&ProductsPage { lang, nav: shopper.nav(), products })
}

async fn detail(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    lang: Lang,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let product_id = path.into_inner();
    let user = shopper.0.as_ref().map(|s| s.user.clone());
    let settings = state.settings.clone();
    let at = now();
    let (ProductWithOffers { product, offers }, market) = state
        .engine
        .run(move |conn| {
            let page = catalogue::product_with_offers(conn, user.as_ref(), &product_id, at)?;
            let market = groups::market_config(conn, &settings, &product_id, user.as_ref(), at)?;
            Ok((page, market))
        })
        .await?;
    let group_buy = market.as_ref().map(|config| GroupBuyBox::new(config, at));
    let csrf = shopper.0.as_ref().map(|s| super::csrf::token_for(&s.token));
    let best_cents = offers.first().and_then(CouponOffer::payable_cents);
    let coupons = CouponChoice::list(&offers, lang);
    render(&ProductPage { lang, nav: shopper.nav(), product, csrf, coupons, best_cents, group_buy })
}
