//! Coupons for shoppers and the admin: claiming (race-safe against the quota and the per-user
//! limit), the shopper's coupons, the price trial, and templates.
//!
//! A claim is one write transaction: the template's `issued_count + 1` only while below its
//! quota (a conditional UPDATE; on PostgreSQL it also locks the template's row, so claims of one
//! template take turns, and on SQLite write transactions take turns anyway), then the shopper's
//! count of the template's coupons, read after that UPDATE and so seeing every claim before it,
//! then the coupon. A refusal rolls the whole back.

use chrono::NaiveDateTime;

use crate::config::Settings;
use crate::db::{DbConn, write_transaction};
use crate::error::{AppError, AppResult};
use crate::models::coupon::{
    self, CouponStatus, NewCoupon, NewTemplate, TemplateStatus, TemplateWithProducts, UserCouponWithTemplate,
};
use crate::models::now;
use crate::models::product::Product;
use crate::models::user::AppUser;
use crate::services::group_buy::{self, GroupBuyPick};
use crate::services::pricing::{self, Price, PricingChoices, Refusal};

/// Why a coupon is refused, with the code and text the API answers (the checkout answers the
/// same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CouponRefusal {
    /// Unknown, or not the shopper's (C0001).
    #[error("优惠券不存在")]
    Unknown,
    /// Not AVAILABLE: locked by an order, used, expired; or a template not open for claims
    /// (C0002).
    #[error("优惠券不可用")]
    NotAvailable,
    /// Outside its validity window (C0003).
    #[error("优惠券不在有效期内")]
    OutsideValidity,
    /// The price is below the 满减 threshold (C0004).
    #[error("未满足使用门槛")]
    BelowThreshold,
    /// The product is not in the coupon's scope (C0005).
    #[error("该商品不可用此券")]
    OutOfScope,
    /// The shopper holds as many of the template's coupons as one may (C0006).
    #[error("已达领取上限")]
    LimitReached,
    /// The template's quota is all issued (C0007).
    #[error("优惠券已领完")]
    SoldOut,
}

impl CouponRefusal {
    pub fn code(self) -> &'static str {
        match self {
            CouponRefusal::Unknown => "C0001",
            CouponRefusal::NotAvailable => "C0002",
            CouponRefusal::OutsideValidity => "C0003",
            CouponRefusal::BelowThreshold => "C0004",
            CouponRefusal::OutOfScope => "C0005",
            CouponRefusal::LimitReached => "C0006",
            CouponRefusal::SoldOut => "C0007",
        }
    }

    pub fn info(self) -> &'static str {
        match self {
            CouponRefusal::Unknown => "优惠券不存在",
            CouponRefusal::NotAvailable => "优惠券不可用",
            CouponRefusal::OutsideValidity => "优惠券不在有效期内",
            CouponRefusal::BelowThreshold => "未满足使用门槛",
            CouponRefusal::OutOfScope => "该商品不可用此券",
            CouponRefusal::LimitReached => "已达领取上限",
            CouponRefusal::SoldOut => "优惠券已领完",
        }
    }

    /// The refusal of this code (for pages that carry one in a link).
    pub fn from_code(code: &str) -> Option<CouponRefusal> {
        [
            CouponRefusal::Unknown,
            CouponRefusal::NotAvailable,
            CouponRefusal::OutsideValidity,
            CouponRefusal::BelowThreshold,
            CouponRefusal::OutOfScope,
            CouponRefusal::LimitReached,
            CouponRefusal::SoldOut,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

impl From<CouponRefusal> for AppError {
    fn from(refusal: CouponRefusal) -> Self {
        AppError::Refused { code: refusal.code(), info: refusal.info() }
    }
}

/// A coupon just issued.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub coupon_id: i64,
    pub code: String,
    pub status: CouponStatus,
}

/// Issues one coupon of the template to the shopper, within the quota and the per-user limit:
/// C0001 for an unknown template, C0002 for a stopped one, C0003 for one whose fixed window has
/// ended, C0007 when the quota is issued, C0006 at the shopper's limit.
pub fn claim(conn: &mut DbConn, user_id: i64, template_id: i64, at: NaiveDateTime) -> AppResult<Claimed> {
    write_transaction(conn, |conn| {
        let template = coupon::find_template(conn, template_id)?.ok_or(CouponRefusal::Unknown)?.template;
        if template.status != TemplateStatus::Active {
            return Err(CouponRefusal::NotAvailable.into());
        }
        if !template.claimable_at(at) {
            return Err(CouponRefusal::OutsideValidity.into());
        }
        if !coupon::take_from_quota(conn, template_id)? {
            return Err(CouponRefusal::SoldOut.into());
        }
        if coupon::claimed_by(conn, template_id, user_id)? >= i64::from(template.per_user_limit) {
            return Err(CouponRefusal::LimitReached.into());
        }
        let (valid_from, valid_until) = template.window_from(at);
        let code = crate::random::token_hex(8).to_uppercase();
        let new = NewCoupon { code: &code, template_id, user_id, valid_from, valid_until };
        let coupon_id = coupon::insert_coupon(conn, &new, at)?;
        Ok(Claimed { coupon_id, code, status: CouponStatus::Available })
    })
}

/// The admin issues a coupon of the template to a shopper named by openid or user id, under the
/// same rules as a claim.
pub fn issue(conn: &mut DbConn, template_id: i64, shopper: &str, at: NaiveDateTime) -> AppResult<Claimed> {
    let shopper = shopper.trim();
    let user = match AppUser::find_by_openid(conn, shopper)? {
        Some(user) => Some(user),
        None => match shopper.parse::<i64>() {
            Ok(user_id) => AppUser::find(conn, user_id)?,
            Err(_) => None,
        },
    };
    let user =
        user.ok_or_else(|| AppError::NotFound(format!("No shopper has the openid or id {shopper:?}.")))?;
    claim(conn, user.user_id, template_id, at)
}

/// The shopper's coupons, newest first.
pub fn of_shopper(conn: &mut DbConn, user_id: i64) -> AppResult<Vec<UserCouponWithTemplate>> {
    Ok(coupon::of_user(conn, user_id)?)
}

/// What the shopper would pay for the product with the coupon and the group buy (if any), as of
/// `at`. A coupon needs a logged-in shopper; a visitor gets the plain or group price.
pub fn trial(
    conn: &mut DbConn,
    settings: &Settings,
    shopper: Option<&AppUser>,
    product_id: &str,
    coupon_id: Option<i64>,
    group: Option<&GroupBuyPick>,
    at: NaiveDateTime,
) -> AppResult<Price> {
    let product = Product::find(conn, product_id)?.ok_or_else(|| AppError::NotFound("商品不存在".into()))?;
    let coupon = match coupon_id {
        None => None,
        Some(_) if shopper.is_none() => return Err(AppError::NotLoggedIn),
        Some(id) => Some(coupon::find_coupon(conn, id)?.ok_or(CouponRefusal::Unknown)?),
    };
    let group = match group {
        Some(pick) => Some(group_buy::prepare(conn, settings, pick, product_id, shopper, None, at)?),
        None => None,
    };
    let choices = PricingChoices { coupon: coupon.as_ref(), group_buy: group.as_ref() };
    Ok(pricing::price(&product, shopper, &choices, at)?)
}

/// One of the shopper's AVAILABLE coupons priced for a product: the price it gives, or why it
/// does not apply.
#[derive(Debug, Clone)]
pub struct CouponOffer {
    pub coupon: UserCouponWithTemplate,
    pub price: Result<Price, Refusal>,
}

impl CouponOffer {
    /// What the shopper pays with this coupon, when it applies.
    pub fn payable_cents(&self) -> Option<i64> {
        self.price.as_ref().ok().map(|p| p.payable_cents)
    }
}

/// The shopper's coupons as they apply to `product`: each one AVAILABLE as of `at` priced by
/// [`pricing::price`], the applicable ones first, cheapest first (of equal prices the one that
/// expires first), then the refused ones with their reason. The first offer with a price is the
/// best one.
pub fn offers(
    conn: &mut DbConn,
    shopper: &AppUser,
    product: &Product,
    at: NaiveDateTime,
) -> AppResult<Vec<CouponOffer>> {
    let mut offers: Vec<CouponOffer> = coupon::of_user(conn, shopper.user_id)?
        .into_iter()
        .filter(|c| c.coupon.status_at(at) == CouponStatus::Available)
        .map(|coupon| {
            let choices = PricingChoices { coupon: Some(&coupon), group_buy: None };
            let price = pricing::price(product, Some(shopper), &choices, at);
            CouponOffer { coupon, price }
        })
        .collect();
    offers.sort_by_key(|o| (o.payable_cents().is_none(), o.payable_cents(), o.coupon.coupon.valid_until));
    Ok(offers)
}

/// The templates open for claims now, and, for a shopper, their coupons.
pub fn centre(
    conn: &mut DbConn,
    user_id: Option<i64>,
    at: NaiveDateTime,
) -> AppResult<(Vec<TemplateWithProducts>, Vec<UserCouponWithTemplate>)> {
    let mut open = coupon::active_templates(conn)?;
    open.retain(|t| t.template.claimable_at(at));
    let mine = match user_id {
        Some(user_id) => coupon::of_user(conn, user_id)?,
        None => Vec::new(),
    };
    Ok((open, mine))
}

/// Every template, newest first, for the admin.
pub fn templates(conn: &mut DbConn) -> AppResult<Vec<TemplateWithProducts>> {
    Ok(coupon::all_templates(conn)?)
}

/// Creates a template; its id. Products named in its scope must exist.
pub fn create_template(conn: &mut DbConn, new: &NewTemplate, at: NaiveDateTime) -> AppResult<i64> {
    write_transaction(conn, |conn| {
        for product_id in &new.product_ids {
            if Product::find(conn, product_id)?.is_none() {
                return Err(AppError::BadRequest(format!("There is no product {product_id}.")));
            }
        }
        Ok(coupon::insert_template(conn, new, at)?)
    })
}

/// Marks the AVAILABLE coupons past their validity EXPIRED (reads count them expired already).
pub fn expire_due(conn: &mut DbConn) -> AppResult<usize> {
    Ok(coupon::expire_due(conn, now())?)
}
