//! The one place a price comes from: the product page, the price trial and the checkout all ask
//! [`price`]. It is pure (no database, no clock): the caller loads the product and the
//! shopper's choices and passes the time, so the same inputs always give the same price.
//!
//! Money is integer cents. The payable amount is never below [`MIN_PAYABLE_CENTS`], and the
//! applied discounts always add up to `total - payable`. A discount that would take nothing off
//! (a product already at the minimum) is left out of `applied`.
//!
//! A group buy (拼团) comes first and gives the base a coupon applies to; the activity must be
//! effective and `at` inside its window (E0101, E0102), and a discount for its crowd only leaves
//! others the list price:
//! - 直减 (ZJ) pays `price − off_cents`;
//! - 满减 (MJ) pays `price − off_cents` from a price of `threshold_cents` on, else the price;
//! - 折扣 (ZK) pays `floor(price × rate_bp / 10000)`, rounded down to the cent;
//! - N元购 (N) pays `n_price_cents`, never more than the price;
//!
//! and never less than [`MIN_PAYABLE_CENTS`].
//!
//! A coupon applies to the base (the list price, or the group price) when the product is in its
//! scope:
//! - 直减 (ZJ) takes off `off_cents`;
//! - 满减 (MJ) takes off `off_cents` from a base of `threshold_cents` on;
//! - 折扣 (ZK) makes the payable `floor(base × rate_bp / 10000)`, rounded down to the cent, so
//!   it takes off `base − floor(base × rate_bp / 10000)` (99.99 at 8折 pays 79.99), at most
//!   `max_off_cents`.
//!
//! Then no discount takes more than `base − 1`.

use chrono::NaiveDateTime;

use crate::error::AppError;
use crate::models::coupon::{CouponKind, CouponStatus, UserCouponWithTemplate};
use crate::models::group_buy::{ActivityStatus, Plan};
use crate::models::order_discount::{DiscountType, NewOrderDiscount};
use crate::models::product::Product;
use crate::models::user::AppUser;
use crate::services::coupon::CouponRefusal;
use crate::services::group_buy::{GroupBuyDraft, GroupBuyRefusal};

/// The least an order may cost: Alipay takes nothing below one cent.
pub const MIN_PAYABLE_CENTS: i64 = 1;

/// The shopper's marketing choices for one purchase.
#[derive(Debug, Clone, Copy, Default)]
pub struct PricingChoices<'a> {
    /// The coupon to apply (at most one per order).
    pub coupon: Option<&'a UserCouponWithTemplate>,
    /// The group buy to price with (`services::group_buy::prepare`).
    pub group_buy: Option<&'a GroupBuyDraft>,
}

/// Why a choice does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Coupon(CouponRefusal),
    GroupBuy(GroupBuyRefusal),
}

impl From<CouponRefusal> for Refusal {
    fn from(refusal: CouponRefusal) -> Self {
        Refusal::Coupon(refusal)
    }
}

impl From<GroupBuyRefusal> for Refusal {
    fn from(refusal: GroupBuyRefusal) -> Self {
        Refusal::GroupBuy(refusal)
    }
}

impl Refusal {
    /// The code the API answers (`C0004`, `E0101`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Refusal::Coupon(r) => r.code(),
            Refusal::GroupBuy(r) => r.code(),
        }
    }

    /// The shopper-facing text.
    pub fn info(self) -> &'static str {
        match self {
            Refusal::Coupon(r) => r.info(),
            Refusal::GroupBuy(r) => r.info(),
        }
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Coupon(r) => r.into(),
            Refusal::GroupBuy(r) => r.into(),
        }
    }
}

/// One discount as applied: what it is, which rule gave it, how much it took off, and the rule
/// as applied (JSON) for the order's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedDiscount {
    pub discount_type: DiscountType,
    /// The coupon's id for a coupon, the activity's for a group buy.
    pub ref_id: String,
    pub name: String,
    pub amount_cents: i64,
    pub rule: String,
}

impl AppliedDiscount {
    /// The row [`crate::models::order_discount::rows`] stores.
    pub fn as_new(&self) -> NewOrderDiscount<'_> {
        NewOrderDiscount {
            discount_type: self.discount_type,
            ref_id: &self.ref_id,
            name: &self.name,
            amount_cents: self.amount_cents,
            rule: &self.rule,
        }
    }
}

/// A price: the list price, what the discounts take off and what is left to pay, with the
/// discounts one by one (`discount_cents` is their sum, `payable_cents = total_cents −
/// discount_cents ≥ MIN_PAYABLE_CENTS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Price {
    pub total_cents: i64,
    pub discount_cents: i64,
    pub payable_cents: i64,
    pub applied: Vec<AppliedDiscount>,
}

/// Prices one unit of `product` for `shopper` (`None`: a visitor) with `choices`, as of `at`;
/// a choice that does not apply is refused with its reason (C0001 to C0005, E0101, E0102).
pub fn price(
    product: &Product,
    shopper: Option<&AppUser>,
    choices: &PricingChoices,
    at: NaiveDateTime,
) -> Result<Price, Refusal> {
    let total_cents = product.price_cents;
    let mut applied = Vec::new();
    let mut base = total_cents;
    if let Some(group) = choices.group_buy {
        let pay = group_price(group, total_cents, at)?;
        if pay < total_cents {
            applied.push(AppliedDiscount {
                discount_type: DiscountType::GroupBuy,
                ref_id: group.activity.activity_id.to_string(),
                name: group.activity.name.clone(),
                amount_cents: total_cents - pay,
                rule: group_rule(group),
            });
        }
        base = pay;
    }
    if let Some(coupon) = choices.coupon {
        let amount_cents = coupon_deduction(coupon, &product.product_id, base, shopper, at)?;
        if amount_cents > 0 {
            applied.push(AppliedDiscount {
                discount_type: DiscountType::Coupon,
                ref_id: coupon.coupon.coupon_id.to_string(),
                name: coupon.template.template.name.clone(),
                amount_cents,
                rule: coupon_rule(coupon),
            });
        }
    }
    let discount_cents: i64 = applied.iter().map(|d| d.amount_cents).sum();
    Ok(Price { total_cents, discount_cents, payable_cents: total_cents - discount_cents, applied })
}

/// What one pays for `price` in the group buy, or why it is not on at `at`.
fn group_price(group: &GroupBuyDraft, price: i64, at: NaiveDateTime) -> Result<i64, GroupBuyRefusal> {
    let activity = &group.activity;
    if activity.status != ActivityStatus::Effective {
        return Err(GroupBuyRefusal::NotEffective);
    }
    if !activity.is_on_at(at) {
        return Err(GroupBuyRefusal::OutsideWindow);
    }
    if !group.discount_applies() {
        return Ok(price);
    }
    let pay = match activity.plan {
        Plan::Zj => price - activity.off_cents,
        Plan::Mj if price < activity.threshold_cents => price,
        Plan::Mj => price - activity.off_cents,
        Plan::Zk => price * i64::from(activity.rate_bp) / 10_000,
        Plan::N => activity.n_price_cents.min(price),
    };
    Ok(pay.max(MIN_PAYABLE_CENTS).min(price))
}

/// The group buy's rule as applied, for the order's snapshot.
fn group_rule(group: &GroupBuyDraft) -> String {
    let a = &group.activity;
    serde_json::json!({
        "activityId": a.activity_id,
        "plan": a.plan.as_str(),
        "offCents": a.off_cents,
        "thresholdCents": a.threshold_cents,
        "rateBp": a.rate_bp,
        "nPriceCents": a.n_price_cents,
        "targetCount": a.target_count,
        "words": a.rule_in_words(),
    })
    .to_string()
}

/// What the coupon takes off `base` for `product_id`, or why it does not apply.
fn coupon_deduction(
    coupon: &UserCouponWithTemplate,
    product_id: &str,
    base: i64,
    shopper: Option<&AppUser>,
    at: NaiveDateTime,
) -> Result<i64, CouponRefusal> {
    let held = &coupon.coupon;
    let template = &coupon.template.template;
    if shopper.is_none_or(|s| s.user_id != held.user_id) {
        return Err(CouponRefusal::Unknown);
    }
    if held.status != CouponStatus::Available {
        return Err(CouponRefusal::NotAvailable);
    }
    if !held.is_valid_at(at) {
        return Err(CouponRefusal::OutsideValidity);
    }
    if !coupon.template.applies_to(product_id) {
        return Err(CouponRefusal::OutOfScope);
    }
    let raw = match template.kind {
        CouponKind::Zj => template.off_cents,
        CouponKind::Mj if base < template.threshold_cents => return Err(CouponRefusal::BelowThreshold),
        CouponKind::Mj => template.off_cents,
        CouponKind::Zk => {
            let payable = base * i64::from(template.rate_bp) / 10_000;
            let off = base - payable;
            template.max_off_cents.map_or(off, |cap| off.min(cap))
        }
    };
    Ok(raw.min(base - MIN_PAYABLE_CENTS).max(0))
}

/// The coupon's rule as applied, for the order's snapshot.
fn coupon_rule(coupon: &UserCouponWithTemplate) -> String {
    let t = &coupon.template.template;
    serde_json::json!({
        "couponId": coupon.coupon.coupon_id,
        "code": coupon.coupon.code,
        "templateId": t.template_id,
        "kind": t.kind.as_str(),
        "thresholdCents": t.threshold_cents,
        "offCents": t.off_cents,
        "rateBp": t.rate_bp,
        "maxOffCents": t.max_off_cents,
        "scope": t.scope.as_str(),
        "productIds": coupon.template.product_ids,
        "words": t.rule_in_words(),
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate};

    use super::*;
    use crate::models::coupon::{
        CouponScope, CouponTemplate, TemplateStatus, TemplateWithProducts, UserCoupon,
    };

    fn at() -> NaiveDateTime {
        NaiveDate::from_ymd_opt(2026, 12, 4).unwrap().and_hms_opt(12, 0, 0).unwrap()
    }

    fn product(price_cents: i64) -> Product {
        Product {
            product_id: "100010090092".into(),
            name: "龙井绿茶".into(),
            description: String::new(),
            price_cents,
            stock: 10,
            on_sale: true,
            image_url: String::new(),
            sort_order: 1,
        }
    }

    fn shopper(user_id: i64) -> AppUser {
        AppUser { user_id, openid: format!("o{user_id}"), created_at: at(), last_login_at: at() }
    }

    fn template(kind: CouponKind) -> CouponTemplate {
        CouponTemplate {
            template_id: 1,
            name: "券".into(),
            kind,
            threshold_cents: 0,
            off_cents: 0,
            rate_bp: 0,
            max_off_cents: None,
            scope: CouponScope::All,
            valid_from: None,
            valid_until: None,
            valid_days: Some(30),
            total_quota: 10,
            issued_count: 1,
            per_user_limit: 1,
            status: TemplateStatus::Active,
            created_at: at(),
        }
    }

    fn coupon(template: CouponTemplate) -> UserCouponWithTemplate {
        UserCouponWithTemplate {
            coupon: UserCoupon {
                coupon_id: 7,
                code: "C7".into(),
                template_id: template.template_id,
                user_id: 1,
                status: CouponStatus::Available,
                valid_from: at() - Duration::days(1),
                valid_until: at() + Duration::days(1),
                locked_order_id: None,
                locked_at: None,
                used_order_id: None,
                used_at: None,
                issued_at: at(),
                updated_at: at(),
            },
            template: TemplateWithProducts { template, product_ids: Vec::new() },
        }
    }

    fn zj(off: i64) -> UserCouponWithTemplate {
        coupon(CouponTemplate { off_cents: off, ..template(CouponKind::Zj) })
    }

    fn mj(threshold: i64, off: i64) -> UserCouponWithTemplate {
        coupon(CouponTemplate { threshold_cents: threshold, off_cents: off, ..template(CouponKind::Mj) })
    }

    fn zk(rate_bp: i32, cap: Option<i64>) -> UserCouponWithTemplate {
        coupon(CouponTemplate { rate_bp, max_off_cents: cap, ..template(CouponKind::Zk) })
    }

    fn with(price_cents: i64, coupon: &UserCouponWithTemplate) -> Result<Price, Refusal> {
        let choices = PricingChoices { coupon: Some(coupon), group_buy: None };
        price(&product(price_cents), Some(&shopper(1)), &choices, at())
    }

    /// (total, discount, payable), checking that the applied discounts add up.
    fn amounts(price: Price) -> (i64, i64, i64) {
        assert_eq!(
            price.applied.iter().map(|d| d.amount_cents).sum::<i64>(),
            price.total_cents - price.payable_cents
        );
        assert_eq!(price.discount_cents, price.total_cents - price.payable_cents);
        assert!(price.payable_cents >= MIN_PAYABLE_CENTS);
        (price.total_cents, price.discount_cents, price.payable_cents)
    }

    #[test]
    fn without_choices_the_list_price_is_payable() {
        let plain = price(&product(5800), None, &PricingChoices::default(), at()).unwrap();
        assert_eq!(amounts(plain.clone()), (5800, 0, 5800));
        assert!(plain.applied.is_empty());
    }

    #[test]
    fn zj_takes_its_amount_off_and_never_below_one_cent() {
        assert_eq!(amounts(with(5800, &zj(500)).unwrap()), (5800, 500, 5300));
        assert_eq!(amounts(with(300, &zj(500)).unwrap()), (300, 299, 1));
        assert_eq!(amounts(with(500, &zj(500)).unwrap()), (500, 499, 1));
        let one_cent = with(1, &zj(500)).unwrap();
        assert!(one_cent.applied.is_empty(), "nothing to take off a cent");
        assert_eq!(amounts(one_cent), (1, 0, 1));
    }

    #[test]
    fn mj_applies_from_its_threshold_on() {
        assert_eq!(with(4999, &mj(5000, 1000)), Err(CouponRefusal::BelowThreshold.into()));
        assert_eq!(amounts(with(5000, &mj(5000, 1000)).unwrap()), (5000, 1000, 4000));
        assert_eq!(amounts(with(5001, &mj(5000, 1000)).unwrap()), (5001, 1000, 4001));
        assert_eq!(amounts(with(1000, &mj(1000, 1000)).unwrap()), (1000, 999, 1));
    }

    #[test]
    fn zk_rounds_the_payable_down_to_the_cent_and_keeps_to_its_cap() {
        assert_eq!(amounts(with(9999, &zk(8000, None)).unwrap()), (9999, 2000, 7999));
        assert_eq!(amounts(with(5800, &zk(8000, Some(2000))).unwrap()), (5800, 1160, 4640));
        assert_eq!(amounts(with(13_333, &zk(8000, Some(2000))).unwrap()), (13_333, 2000, 11_333));
        assert_eq!(amounts(with(3, &zk(5000, None)).unwrap()), (3, 2, 1));
        assert_eq!(amounts(with(1, &zk(1, None)).unwrap()), (1, 0, 1));
        assert_eq!(amounts(with(168, &zk(8850, None)).unwrap()), (168, 20, 148));
    }

    #[test]
    fn the_applied_coupon_carries_its_rule() {
        let price = with(5800, &zk(8000, Some(2000))).unwrap();
        let applied = &price.applied[0];
        assert_eq!(applied.discount_type, DiscountType::Coupon);
        assert_eq!(applied.ref_id, "7");
        let rule: serde_json::Value = serde_json::from_str(&applied.rule).unwrap();
        assert_eq!(rule["rateBp"], 8000);
        assert_eq!(rule["words"], "8折 最多减20");
    }

    #[test]
    fn a_coupon_that_does_not_apply_is_refused_with_its_reason() {
        let mine = zj(500);
        let choices = PricingChoices { coupon: Some(&mine), group_buy: None };
        let visitor = price(&product(5800), None, &choices, at());
        assert_eq!(visitor, Err(CouponRefusal::Unknown.into()));
        let someone_else = price(&product(5800), Some(&shopper(2)), &choices, at());
        assert_eq!(someone_else, Err(CouponRefusal::Unknown.into()));

        for status in [CouponStatus::Locked, CouponStatus::Used, CouponStatus::Expired] {
            let mut held = zj(500);
            held.coupon.status = status;
            assert_eq!(with(5800, &held), Err(CouponRefusal::NotAvailable.into()), "{status}");
        }

        let mut late = zj(500);
        late.coupon.valid_until = at();
        assert_eq!(with(5800, &late), Err(CouponRefusal::OutsideValidity.into()));
        let mut early = zj(500);
        early.coupon.valid_from = at() + Duration::seconds(1);
        assert_eq!(with(5800, &early), Err(CouponRefusal::OutsideValidity.into()));

        let mut scoped = zj(500);
        scoped.template.template.scope = CouponScope::Products;
        scoped.template.product_ids = vec!["100010090093".into()];
        assert_eq!(with(5800, &scoped), Err(CouponRefusal::OutOfScope.into()));
        scoped.template.product_ids.push("100010090092".into());
        assert_eq!(amounts(with(5800, &scoped).unwrap()), (5800, 500, 5300));
    }

    fn activity(plan: Plan) -> GroupBuyDraft {
        use crate::models::group_buy::Activity;
        use crate::services::group_buy::TeamSeat;
        let activity = Activity { off_cents: 0, ..Activity::sample(plan, at()) };
        GroupBuyDraft { activity, in_crowd: true, seat: TeamSeat::Open { expires_at: at() } }
    }

    fn grouped(price_cents: i64, group: &GroupBuyDraft, coupon: Option<&UserCouponWithTemplate>) -> Price {
        let choices = PricingChoices { coupon, group_buy: Some(group) };
        price(&product(price_cents), Some(&shopper(1)), &choices, at()).unwrap()
    }

    #[test]
    fn group_plans_price_from_the_list_price_and_never_below_one_cent() {
        let mut direct = activity(Plan::Zj);
        direct.activity.off_cents = 2000;
        assert_eq!(amounts(grouped(8900, &direct, None)), (8900, 2000, 6900));
        assert_eq!(amounts(grouped(1500, &direct, None)), (1500, 1499, 1), "more off than the price");
        let mut mj = activity(Plan::Mj);
        (mj.activity.threshold_cents, mj.activity.off_cents) = (10_000, 1000);
        assert_eq!(amounts(grouped(9999, &mj, None)), (9999, 0, 9999), "below the threshold");
        assert_eq!(amounts(grouped(10_000, &mj, None)), (10_000, 1000, 9000));
        let mut zk = activity(Plan::Zk);
        zk.activity.rate_bp = 8000;
        assert_eq!(amounts(grouped(9999, &zk, None)), (9999, 2000, 7999), "rounded down to the cent");
        let mut n = activity(Plan::N);
        n.activity.n_price_cents = 9900;
        assert_eq!(amounts(grouped(8900, &n, None)), (8900, 0, 8900), "N above the price");
        n.activity.n_price_cents = 0;
        assert_eq!(amounts(grouped(8900, &n, None)), (8900, 8899, 1));
        let applied = &grouped(8900, &direct, None).applied[0];
        assert_eq!((applied.discount_type, applied.ref_id.as_str()), (DiscountType::GroupBuy, "100123"));
    }

    #[test]
    fn a_coupon_applies_to_the_group_price_and_never_below_one_cent() {
        let mut direct = activity(Plan::Zj);
        direct.activity.off_cents = 2000;
        let with_coupon = grouped(8900, &direct, Some(&zj(500)));
        assert_eq!(amounts(with_coupon.clone()), (8900, 2500, 6400));
        assert_eq!(with_coupon.applied.len(), 2);
        assert_eq!(amounts(grouped(2100, &direct, Some(&zj(500)))), (2100, 2099, 1));
        let below = PricingChoices { coupon: Some(&mj(8000, 1000)), group_buy: Some(&direct) };
        let refused = price(&product(8900), Some(&shopper(1)), &below, at());
        assert_eq!(refused, Err(CouponRefusal::BelowThreshold.into()), "69.00 is below 满80");
    }

    #[test]
    fn a_group_buy_off_or_outside_its_window_is_refused_and_a_crowd_discount_is_the_crowds() {
        let mut direct = activity(Plan::Zj);
        direct.activity.off_cents = 2000;
        let refused = |group: &GroupBuyDraft| {
            price(&product(8900), None, &PricingChoices { coupon: None, group_buy: Some(group) }, at())
        };
        let mut ended = direct.clone();
        ended.activity.status = ActivityStatus::Abandoned;
        assert_eq!(refused(&ended), Err(GroupBuyRefusal::NotEffective.into()));
        let mut later = direct.clone();
        later.activity.start_at = at() + Duration::seconds(1);
        assert_eq!(refused(&later), Err(GroupBuyRefusal::OutsideWindow.into()));
        let mut crowd_only = direct.clone();
        crowd_only.activity.tag_id = Some(1);
        crowd_only.activity.discount_tag_only = true;
        crowd_only.in_crowd = false;
        assert_eq!(amounts(grouped(8900, &crowd_only, None)), (8900, 0, 8900));
        crowd_only.in_crowd = true;
        assert_eq!(amounts(grouped(8900, &crowd_only, None)), (8900, 2000, 6900));
    }

    #[test]
    fn rules_read_as_shoppers_say_them() {
        assert_eq!(mj(5000, 1000).template.template.rule_in_words(), "满50减10");
        assert_eq!(zk(8000, Some(2000)).template.template.rule_in_words(), "8折 最多减20");
        assert_eq!(zk(8500, None).template.template.rule_in_words(), "8.5折");
        assert_eq!(zj(500).template.template.rule_in_words(), "直减5");
        assert_eq!(zj(550).template.template.rule_in_words(), "直减5.5");
    }
}
