//! Coupons: templates (`coupon_template`, scoped by `coupon_template_product`) and the coupons
//! shoppers hold (`user_coupon`).
//!
//! A coupon's life is AVAILABLE -> LOCKED (an order placed with it) -> USED (the order's payment
//! recorded), or LOCKED -> AVAILABLE, or EXPIRED past its `valid_until`, when the order closes.
//! Every step is one conditional UPDATE ([`lock`], [`mark_used`], [`release`],
//! [`restore_used`]) that changes a row only from the state it expects; each returns whether it
//! did, and runs inside the caller's transaction, with the order change it belongs to. The lock
//! has no clock of its own: it lives as long as the order's payment window, and the order's
//! close releases it.

use chrono::{Duration, NaiveDateTime};
use diesel::dsl::case_when;
use diesel::prelude::*;

use crate::db::schema::{coupon_template, coupon_template_product, user_coupon};
use crate::db::{
    ConditionText, DbConn, Guard, IndexCondition, KeepPreparedDsl, Stamp, find_natively, load_natively,
};
use crate::money::{short_yuan, zhe};

/// What a coupon takes off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponKind {
    /// 直减: `off_cents`, whatever the price.
    Zj,
    /// 满减: `off_cents` from a price of `threshold_cents` on.
    Mj,
    /// 折扣: the price times `rate_bp` / 10000 (8000 = 8折), at most `max_off_cents` off.
    Zk,
}

/// Which products a template applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CouponScope {
    All,
    /// Those listed in `coupon_template_product`.
    Products,
}

/// Whether shoppers may claim a template; issued coupons stay usable either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateStatus {
    Active,
    Stopped,
}

/// Where a shopper's coupon stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CouponStatus {
    /// 待使用
    Available,
    /// 已锁定: an order waiting for its payment holds it.
    Locked,
    /// 已使用
    Used,
    /// 已过期
    Expired,
}

text_enum!(CouponKind { Zj = "ZJ", Mj = "MJ", Zk = "ZK" });
text_enum!(CouponScope { All = "ALL", Products = "PRODUCTS" });
text_enum!(TemplateStatus { Active = "ACTIVE", Stopped = "STOPPED" });
text_enum!(CouponStatus { Available = "AVAILABLE", Locked = "LOCKED", Used = "USED", Expired = "EXPIRED" });

impl CouponStatus {
    pub const ALL: [CouponStatus; 4] =
        [CouponStatus::Available, CouponStatus::Locked, CouponStatus::Used, CouponStatus::Expired];

    /// The status as shoppers read it.
    pub fn label(self) -> &'static str {
        match self {
            CouponStatus::Available => "待使用",
            CouponStatus::Locked => "已锁定",
            CouponStatus::Used => "已使用",
            CouponStatus::Expired => "已过期",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = coupon_template)]
pub struct CouponTemplate {
    pub template_id: i64,
    pub name: String,
    #[diesel(deserialize_as = String)]
    pub kind: CouponKind,
    pub threshold_cents: i64,
    pub off_cents: i64,
    pub rate_bp: i32,
    pub max_off_cents: Option<i64>,
    #[diesel(deserialize_as = String)]
    pub scope: CouponScope,
    pub valid_from: Option<NaiveDateTime>,
    pub valid_until: Option<NaiveDateTime>,
    pub valid_days: Option<i32>,
    pub total_quota: i64,
    pub issued_count: i64,
    pub per_user_limit: i32,
    #[diesel(deserialize_as = String)]
    pub status: TemplateStatus,
    pub created_at: NaiveDateTime,
}

impl CouponTemplate {
    /// The rule as shoppers read it: `满50减10`, `8折 最多减20`, `直减5`.
    pub fn rule_in_words(&self) -> String {
        match self.kind {
            CouponKind::Zj => format!("直减{}", short_yuan(self.off_cents)),
            CouponKind::Mj => {
                format!("满{}减{}", short_yuan(self.threshold_cents), short_yuan(self.off_cents))
            }
            CouponKind::Zk => match self.max_off_cents {
                Some(cap) => format!("{}折 最多减{}", zhe(self.rate_bp), short_yuan(cap)),
                None => format!("{}折", zhe(self.rate_bp)),
            },
        }
    }

    /// The validity window of a coupon claimed at `at`: `valid_days` from then, or the
    /// template's fixed window.
    pub fn window_from(&self, at: NaiveDateTime) -> (NaiveDateTime, NaiveDateTime) {
        match (self.valid_days, self.valid_from, self.valid_until) {
            (Some(days), _, _) => (at, at + Duration::days(i64::from(days))),
            (None, Some(from), Some(until)) => (from, until),
            // The schema's CHECK allows no other combination.
            _ => (at, at),
        }
    }

    /// Whether a coupon claimed at `at` would ever be valid: a fixed window that has not ended.
    pub fn claimable_at(&self, at: NaiveDateTime) -> bool {
        self.valid_until.is_none_or(|until| until > at)
    }

    pub fn remaining(&self) -> i64 {
        (self.total_quota - self.issued_count).max(0)
    }
}

/// A template with the products of its scope (empty for [`CouponScope::All`]).
#[derive(Debug, Clone)]
pub struct TemplateWithProducts {
    pub template: CouponTemplate,
    pub product_ids: Vec<String>,
}

impl TemplateWithProducts {
    pub fn applies_to(&self, product_id: &str) -> bool {
        match self.template.scope {
            CouponScope::All => true,
            CouponScope::Products => self.product_ids.iter().any(|p| p == product_id),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = user_coupon)]
pub struct UserCoupon {
    pub coupon_id: i64,
    pub code: String,
    pub template_id: i64,
    pub user_id: i64,
    #[diesel(deserialize_as = String)]
    pub status: CouponStatus,
    pub valid_from: NaiveDateTime,
    pub valid_until: NaiveDateTime,
    pub locked_order_id: Option<String>,
    pub locked_at: Option<NaiveDateTime>,
    pub used_order_id: Option<String>,
    pub used_at: Option<NaiveDateTime>,
    pub issued_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl UserCoupon {
    /// The status as of `at`: an AVAILABLE coupon past its `valid_until` is EXPIRED, whether or
    /// not a sweep has written it yet.
    pub fn status_at(&self, at: NaiveDateTime) -> CouponStatus {
        match self.status {
            CouponStatus::Available if self.valid_until <= at => CouponStatus::Expired,
            status => status,
        }
    }

    pub fn is_valid_at(&self, at: NaiveDateTime) -> bool {
        self.valid_from <= at && at < self.valid_until
    }
}

/// A shopper's coupon with its template and the template's scope: everything pricing needs.
#[derive(Debug, Clone)]
pub struct UserCouponWithTemplate {
    pub coupon: UserCoupon,
    pub template: TemplateWithProducts,
}

/// A template as the admin creates it, already validated (the schema's CHECKs hold).
pub struct NewTemplate {
    pub name: String,
    pub kind: CouponKind,
    pub threshold_cents: i64,
    pub off_cents: i64,
    pub rate_bp: i32,
    pub max_off_cents: Option<i64>,
    pub product_ids: Vec<String>,
    pub valid_from: Option<NaiveDateTime>,
    pub valid_until: Option<NaiveDateTime>,
    pub valid_days: Option<i32>,
    pub total_quota: i64,
    pub per_user_limit: i32,
}

/// Creates a template with its scope (PRODUCTS when `product_ids` is not empty); its id.
pub fn insert_template(conn: &mut DbConn, new: &NewTemplate, at: NaiveDateTime) -> QueryResult<i64> {
    let scope = if new.product_ids.is_empty() { CouponScope::All } else { CouponScope::Products };
    let template_id: i64 = diesel::insert_into(coupon_template::table)
        .values((
            coupon_template::name.eq(&new.name),
            coupon_template::kind.eq(new.kind.as_str()),
            coupon_template::threshold_cents.eq(new.threshold_cents),
            coupon_template::off_cents.eq(new.off_cents),
            coupon_template::rate_bp.eq(new.rate_bp),
            coupon_template::max_off_cents.eq(new.max_off_cents),
            coupon_template::scope.eq(scope.as_str()),
            coupon_template::valid_from.eq(new.valid_from),
            coupon_template::valid_until.eq(new.valid_until),
            coupon_template::valid_days.eq(new.valid_days),
            coupon_template::total_quota.eq(new.total_quota),
            coupon_template::per_user_limit.eq(new.per_user_limit),
            coupon_template::status.eq(TemplateStatus::Active.as_str()),
            coupon_template::created_at.eq(at),
        ))
        .returning(coupon_template::template_id)
        .get_result(conn)?;
    for product_id in &new.product_ids {
        diesel::insert_into(coupon_template_product::table)
            .values((
                coupon_template_product::template_id.eq(template_id),
                coupon_template_product::product_id.eq(product_id),
            ))
            .execute(conn)?;
    }
    Ok(template_id)
}

/// The templates with these ids, with their products.
fn with_products(
    conn: &mut DbConn,
    templates: Vec<CouponTemplate>,
) -> QueryResult<Vec<TemplateWithProducts>> {
    let ids: Vec<i64> = templates.iter().map(|t| t.template_id).collect();
    let scoped: Vec<(i64, String)> = coupon_template_product::table
        .filter(coupon_template_product::template_id.eq_any(&ids))
        .order((coupon_template_product::template_id.asc(), coupon_template_product::product_id.asc()))
        .select((coupon_template_product::template_id, coupon_template_product::product_id))
        .load(conn)?;
    Ok(templates
        .into_iter()
        .map(|template| {
            let product_ids =
                scoped.iter().filter(|(id, _)| *id == template.template_id).map(|(_, p)| p.clone()).collect();
            TemplateWithProducts { template, product_ids }
        })
        .collect())
}

pub fn find_template(conn: &mut DbConn, template_id: i64) -> QueryResult<Option<TemplateWithProducts>> {
    let found = coupon_template::table
        .find(template_id)
        .select(CouponTemplate::as_select())
        .get_result(conn)
        .optional()?;
    Ok(with_products(conn, found.into_iter().collect())?.pop())
}

/// Every template, newest first.
pub fn all_templates(conn: &mut DbConn) -> QueryResult<Vec<TemplateWithProducts>> {
    let templates = coupon_template::table
        .order(coupon_template::template_id.desc())
        .select(CouponTemplate::as_select())
        .load(conn)?;
    with_products(conn, templates)
}

/// Active templates with coupons left, in the order they were made.
pub fn active_templates(conn: &mut DbConn) -> QueryResult<Vec<TemplateWithProducts>> {
    let templates = coupon_template::table
        .filter(coupon_template::status.eq(TemplateStatus::Active.as_str()))
        .filter(coupon_template::issued_count.lt(coupon_template::total_quota))
        .order(coupon_template::template_id.asc())
        .select(CouponTemplate::as_select())
        .load(conn)?;
    with_products(conn, templates)
}

/// Takes one coupon from an active template's quota: `issued_count + 1` only while it is below
/// `total_quota`; whether one was left. On PostgreSQL the row stays locked until the caller's
/// transaction ends, so claims of one template queue behind each other.
pub fn take_from_quota(conn: &mut DbConn, template_id: i64) -> QueryResult<bool> {
    diesel::update(
        coupon_template::table
            .filter(coupon_template::template_id.eq(template_id))
            .filter(coupon_template::status.eq(TemplateStatus::Active.as_str()))
            .filter(coupon_template::issued_count.lt(coupon_template::total_quota)),
    )
    .set(coupon_template::issued_count.eq(coupon_template::issued_count + 1))
    .execute(conn)
    .map(|n| n == 1)
}

/// How many coupons of the template the shopper holds (in any status).
pub fn claimed_by(conn: &mut DbConn, template_id: i64, user_id: i64) -> QueryResult<i64> {
    user_coupon::table
        .filter(user_coupon::template_id.eq(template_id))
        .filter(user_coupon::user_id.eq(user_id))
        .count()
        .get_result(conn)
}

/// A coupon as it is issued: AVAILABLE in its window.
pub struct NewCoupon<'a> {
    pub code: &'a str,
    pub template_id: i64,
    pub user_id: i64,
    pub valid_from: NaiveDateTime,
    pub valid_until: NaiveDateTime,
}

/// Issues the coupon; its id.
pub fn insert_coupon(conn: &mut DbConn, new: &NewCoupon, at: NaiveDateTime) -> QueryResult<i64> {
    diesel::insert_into(user_coupon::table)
        .values((
            user_coupon::code.eq(new.code),
            user_coupon::template_id.eq(new.template_id),
            user_coupon::user_id.eq(new.user_id),
            user_coupon::status.eq(CouponStatus::Available.as_str()),
            user_coupon::valid_from.eq(new.valid_from),
            user_coupon::valid_until.eq(new.valid_until),
            user_coupon::issued_at.eq(at),
            user_coupon::updated_at.eq(at),
        ))
        .returning(user_coupon::coupon_id)
        .get_result(conn)
}

fn with_templates(conn: &mut DbConn, coupons: Vec<UserCoupon>) -> QueryResult<Vec<UserCouponWithTemplate>> {
    let mut ids: Vec<i64> = coupons.iter().map(|c| c.template_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let templates = coupon_template::table
        .filter(coupon_template::template_id.eq_any(&ids))
        .select(CouponTemplate::as_select())
        .load(conn)?;
    let templates = with_products(conn, templates)?;
    coupons
        .into_iter()
        .map(|coupon| {
            let template = templates
                .iter()
                .find(|t| t.template.template_id == coupon.template_id)
                .cloned()
                .ok_or(diesel::result::Error::NotFound)?;
            Ok(UserCouponWithTemplate { coupon, template })
        })
        .collect()
}

/// The coupon with its template and scope, read on the backend's own connection: it is on the
/// checkout's path (docs/PERFORMANCE.md, "Statements kept prepared"). The products of the scope
/// are read only when it names some.
pub fn find_coupon(conn: &mut DbConn, coupon_id: i64) -> QueryResult<Option<UserCouponWithTemplate>> {
    let found: Option<(UserCoupon, CouponTemplate)> = find_natively!(
        conn,
        user_coupon::table
            .inner_join(coupon_template::table)
            .filter(user_coupon::coupon_id.eq(coupon_id))
            .select((UserCoupon::as_select(), CouponTemplate::as_select()))
    )?;
    let Some((coupon, template)) = found else { return Ok(None) };
    let product_ids = match template.scope {
        CouponScope::All => Vec::new(),
        CouponScope::Products => load_natively(
            conn,
            coupon_template_product::table
                .filter(coupon_template_product::template_id.eq(template.template_id))
                .order(coupon_template_product::product_id.asc())
                .select(coupon_template_product::product_id),
        )?,
    };
    Ok(Some(UserCouponWithTemplate { coupon, template: TemplateWithProducts { template, product_ids } }))
}

/// The shopper's coupons, newest first.
pub fn of_user(conn: &mut DbConn, user_id: i64) -> QueryResult<Vec<UserCouponWithTemplate>> {
    let coupons = user_coupon::table
        .filter(user_coupon::user_id.eq(user_id))
        .order(user_coupon::coupon_id.desc())
        .select(UserCoupon::as_select())
        .load(conn)?;
    with_templates(conn, coupons)
}

/// AVAILABLE -> LOCKED for `order_id`: only the shopper's own coupon, available and valid at
/// `at`, and only if no other coupon is locked for the order (the unique index
/// `user_coupon_locked_order` refuses a second; that is an error, not a refusal). It applies
/// when this caller locked it.
pub fn lock(coupon_id: i64, user_id: i64, order_id: &str, at: NaiveDateTime) -> Guard<'_> {
    Guard::update(
        diesel::update(
            user_coupon::table
                .filter(user_coupon::coupon_id.eq(coupon_id))
                .filter(user_coupon::user_id.eq(user_id))
                .filter(user_coupon::status.eq(CouponStatus::Available.as_str()))
                .filter(user_coupon::valid_from.le(Stamp(at)))
                .filter(user_coupon::valid_until.gt(Stamp(at))),
        )
        .set((
            user_coupon::status.eq(CouponStatus::Locked.as_str()),
            user_coupon::locked_order_id.eq(order_id),
            user_coupon::locked_at.eq(Stamp(at)),
            user_coupon::updated_at.eq(Stamp(at)),
        ))
        .keep_prepared(),
    )
}

/// The condition of the partial unique index `user_coupon_locked_order` (a locked coupon), as the
/// migrations write it. A statement that finds a coupon by the order that locked it repeats it, so
/// that PostgreSQL's plan for any order can use the index: with the status bound, only a plan
/// made for the value could, and PostgreSQL planned the statement again on every payment.
const LOCKED: IndexCondition<Locked> = IndexCondition::new();

/// The text of [`LOCKED`].
struct Locked;

impl ConditionText for Locked {
    const SQL: &'static str = "user_coupon.status = 'LOCKED'";
}

/// LOCKED for `order_id` -> USED by it, once its payment is recorded (also past `valid_until`:
/// the order was placed in time). Whether a coupon was locked for the order.
pub fn mark_used(conn: &mut DbConn, order_id: &str) -> QueryResult<bool> {
    let at = super::now();
    diesel::update(user_coupon::table.filter(LOCKED).filter(user_coupon::locked_order_id.eq(order_id)))
        .set((
            user_coupon::status.eq(CouponStatus::Used.as_str()),
            user_coupon::used_order_id.eq(order_id),
            user_coupon::used_at.eq(at),
            user_coupon::locked_order_id.eq(None::<String>),
            user_coupon::updated_at.eq(at),
        ))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
}

/// LOCKED for `order_id` -> AVAILABLE, or EXPIRED past `valid_until`, when the order closes
/// unpaid (timeout, cancel, replaced). Whether a coupon was locked for the order.
pub fn release(conn: &mut DbConn, order_id: &str, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(user_coupon::table.filter(LOCKED).filter(user_coupon::locked_order_id.eq(order_id)))
        .set((
            // Back to AVAILABLE inside its window, EXPIRED past it.
            user_coupon::status.eq(case_when::<_, _, diesel::sql_types::Text>(
                user_coupon::valid_until.gt(at),
                CouponStatus::Available.as_str(),
            )
            .otherwise(CouponStatus::Expired.as_str())),
            user_coupon::locked_order_id.eq(None::<String>),
            user_coupon::locked_at.eq(None::<NaiveDateTime>),
            user_coupon::updated_at.eq(at),
        ))
        .keep_prepared()
        .execute(conn)
        .map(|n| n == 1)
}

/// USED by `order_id` -> AVAILABLE, or EXPIRED past `valid_until`: the coupon comes back when
/// the order is refunded before delivery. The caller decides that; a refund after delivery keeps
/// the coupon USED and does not call this. Whether a coupon was used by the order.
pub fn restore_used(conn: &mut DbConn, order_id: &str, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        user_coupon::table
            .filter(user_coupon::status.eq(CouponStatus::Used.as_str()))
            .filter(user_coupon::used_order_id.eq(order_id)),
    )
    .set((
        // Back to AVAILABLE inside its window, EXPIRED past it.
        user_coupon::status.eq(case_when::<_, _, diesel::sql_types::Text>(
            user_coupon::valid_until.gt(at),
            CouponStatus::Available.as_str(),
        )
        .otherwise(CouponStatus::Expired.as_str())),
        user_coupon::used_order_id.eq(None::<String>),
        user_coupon::used_at.eq(None::<NaiveDateTime>),
        user_coupon::updated_at.eq(at),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// AVAILABLE coupons past their `valid_until` -> EXPIRED; how many. Reads treat such coupons as
/// expired already ([`UserCoupon::status_at`]); this keeps the stored status in step.
pub fn expire_due(conn: &mut DbConn, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        user_coupon::table
            .filter(user_coupon::status.eq(CouponStatus::Available.as_str()))
            .filter(user_coupon::valid_until.le(at)),
    )
    .set((user_coupon::status.eq(CouponStatus::Expired.as_str()), user_coupon::updated_at.eq(at)))
    .execute(conn)
}
