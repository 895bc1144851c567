//! Group buying (拼团): activities (`group_buy_activity`), their crowds (`crowd_tag`,
//! `crowd_tag_member`), teams (`group_buy_team`), seats (`group_buy_member`, one per order) and
//! the seats a shopper holds per activity (`group_buy_take`).
//!
//! Every change is one conditional UPDATE that moves a row only from the state it expects and
//! says whether it did; each runs inside the transaction of the order change it belongs to
//! (`services::group_buy`). A team's counts follow its members while it is PROGRESS:
//! `lock_count` = LOCKED + PAID members, `paid_count` = PAID members.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::now;
use crate::db::schema::{
    crowd_tag_member, group_buy_activity, group_buy_member, group_buy_take, group_buy_team,
};
use crate::db::{
    Checked, ConditionText, DbConn, Guard, IndexCondition, InsertRows, KeepPrepared, KeepPreparedDsl, Stamp,
    Value, find_natively,
};

/// How an activity prices the product for a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// 直减: `off_cents` off.
    Zj,
    /// 满减: `off_cents` off from a price of `threshold_cents` on.
    Mj,
    /// 折扣: the price times `rate_bp` / 10000, rounded down to the cent.
    Zk,
    /// N元购: `n_price_cents`, never above the price.
    N,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityStatus {
    Create,
    Effective,
    Overdue,
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TeamStatus {
    /// 拼团中: seats open until `expires_at`.
    Progress,
    /// 已成团: every seat paid in time.
    Complete,
    /// 拼团失败: expired short of its target; paid members are refunded.
    Fail,
    /// 已成团, then a member refunded by the admin.
    CompleteFail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberStatus {
    /// The order holds the seat, unpaid.
    Locked,
    Paid,
    /// The order closed unpaid; the seat went back.
    Released,
    Refunding,
    Refunded,
}

/// Why a member left its team (the original's refund types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefundType {
    UnpaidUnlock,
    PaidUnformed,
    PaidFormed,
}

text_enum!(Plan { Zj = "ZJ", Mj = "MJ", Zk = "ZK", N = "N" });
text_enum!(ActivityStatus {
    Create = "CREATE",
    Effective = "EFFECTIVE",
    Overdue = "OVERDUE",
    Abandoned = "ABANDONED",
});
text_enum!(TeamStatus { Progress = "PROGRESS", Complete = "COMPLETE", Fail = "FAIL", CompleteFail = "COMPLETE_FAIL" });
text_enum!(MemberStatus {
    Locked = "LOCKED",
    Paid = "PAID",
    Released = "RELEASED",
    Refunding = "REFUNDING",
    Refunded = "REFUNDED",
});
text_enum!(RefundType {
    UnpaidUnlock = "unpaid_unlock",
    PaidUnformed = "paid_unformed",
    PaidFormed = "paid_formed",
});

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = group_buy_activity)]
pub struct Activity {
    pub activity_id: i64,
    pub name: String,
    pub product_id: String,
    #[diesel(deserialize_as = String)]
    pub plan: Plan,
    pub off_cents: i64,
    pub threshold_cents: i64,
    pub rate_bp: i32,
    pub n_price_cents: i64,
    pub target_count: i32,
    pub valid_minutes: i32,
    pub take_limit: i32,
    #[diesel(deserialize_as = String)]
    pub status: ActivityStatus,
    pub start_at: NaiveDateTime,
    pub end_at: NaiveDateTime,
    /// The crowd the three limits below refer to.
    pub tag_id: Option<i64>,
    /// Only the crowd sees the activity.
    pub tag_limits_visibility: bool,
    /// Only the crowd may open or join a team.
    pub tag_limits_joining: bool,
    /// Only the crowd gets the discount; others buy in teams at the list price.
    pub discount_tag_only: bool,
    pub created_at: NaiveDateTime,
}

impl Activity {
    /// Effective, and `at` inside its window.
    pub fn is_on_at(&self, at: NaiveDateTime) -> bool {
        self.status == ActivityStatus::Effective && self.start_at <= at && at < self.end_at
    }

    /// When a team opened at `at` expires: its validity, but never past the activity's end.
    pub fn team_expiry(&self, opened_at: NaiveDateTime) -> NaiveDateTime {
        (opened_at + chrono::Duration::minutes(i64::from(self.valid_minutes))).min(self.end_at)
    }

    /// The plan in a shopper's words: 直减20, 满100减10, 8折, 9.9元购.
    pub fn rule_in_words(&self) -> String {
        use crate::money::{short_yuan as yuan, zhe};
        match self.plan {
            Plan::Zj => format!("直减{}", yuan(self.off_cents)),
            Plan::Mj => format!("满{}减{}", yuan(self.threshold_cents), yuan(self.off_cents)),
            Plan::Zk => format!("{}折", zhe(self.rate_bp)),
            Plan::N => format!("{}元购", yuan(self.n_price_cents)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = group_buy_team)]
pub struct Team {
    pub team_id: String,
    pub activity_id: i64,
    pub product_id: String,
    pub leader_user_id: i64,
    pub target_count: i32,
    pub lock_count: i32,
    pub paid_count: i32,
    #[diesel(deserialize_as = String)]
    pub status: TeamStatus,
    pub opened_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub completed_at: Option<NaiveDateTime>,
    pub failed_at: Option<NaiveDateTime>,
}

impl Team {
    /// Still taking members and payments (拼团中).
    pub fn is_forming(&self) -> bool {
        self.status == TeamStatus::Progress
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = group_buy_member)]
pub struct Member {
    pub id: i64,
    pub team_id: String,
    pub activity_id: i64,
    pub user_id: i64,
    pub order_id: String,
    #[diesel(deserialize_as = String)]
    pub status: MemberStatus,
    pub locked_at: NaiveDateTime,
    pub paid_at: Option<NaiveDateTime>,
}

/// What the admin enters for a new activity (born CREATE).
pub struct NewActivity<'a> {
    pub name: &'a str,
    pub product_id: &'a str,
    pub plan: Plan,
    pub off_cents: i64,
    pub threshold_cents: i64,
    pub rate_bp: i32,
    pub n_price_cents: i64,
    pub target_count: i32,
    pub valid_minutes: i32,
    pub take_limit: i32,
    pub start_at: NaiveDateTime,
    pub end_at: NaiveDateTime,
}

pub fn insert_activity(conn: &mut DbConn, new: &NewActivity) -> QueryResult<i64> {
    diesel::insert_into(group_buy_activity::table)
        .values((
            group_buy_activity::name.eq(new.name),
            group_buy_activity::product_id.eq(new.product_id),
            group_buy_activity::plan.eq(new.plan.as_str()),
            group_buy_activity::off_cents.eq(new.off_cents),
            group_buy_activity::threshold_cents.eq(new.threshold_cents),
            group_buy_activity::rate_bp.eq(new.rate_bp),
            group_buy_activity::n_price_cents.eq(new.n_price_cents),
            group_buy_activity::target_count.eq(new.target_count),
            group_buy_activity::valid_minutes.eq(new.valid_minutes),
            group_buy_activity::take_limit.eq(new.take_limit),
            group_buy_activity::status.eq(ActivityStatus::Create.as_str()),
            group_buy_activity::start_at.eq(new.start_at),
            group_buy_activity::end_at.eq(new.end_at),
            group_buy_activity::created_at.eq(now()),
        ))
        .returning(group_buy_activity::activity_id)
        .get_result(conn)
}

pub fn find_activity(conn: &mut DbConn, activity_id: i64) -> QueryResult<Option<Activity>> {
    find_natively!(
        conn,
        group_buy_activity::table
            .filter(group_buy_activity::activity_id.eq(activity_id))
            .select(Activity::as_select())
    )
}

/// The product's effective activity (one at most, by a unique index).
pub fn effective_for_product(conn: &mut DbConn, product_id: &str) -> QueryResult<Option<Activity>> {
    group_buy_activity::table
        .filter(group_buy_activity::product_id.eq(product_id))
        .filter(group_buy_activity::status.eq(ActivityStatus::Effective.as_str()))
        .select(Activity::as_select())
        .get_result(conn)
        .optional()
}

pub fn all_activities(conn: &mut DbConn) -> QueryResult<Vec<Activity>> {
    group_buy_activity::table
        .order(group_buy_activity::activity_id.desc())
        .select(Activity::as_select())
        .load(conn)
}

/// The activity from one of `from` to `to`; whether this call moved it. A second EFFECTIVE
/// activity for a product is refused by the unique index (an error).
pub fn set_activity_status(
    conn: &mut DbConn,
    activity_id: i64,
    from: &[ActivityStatus],
    to: ActivityStatus,
) -> QueryResult<bool> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    diesel::update(
        group_buy_activity::table
            .filter(group_buy_activity::activity_id.eq(activity_id))
            .filter(group_buy_activity::status.eq_any(from)),
    )
    .set(group_buy_activity::status.eq(to.as_str()))
    .execute(conn)
    .map(|n| n == 1)
}

/// Whether the shopper is in the activity's crowd tag (false without one).
pub fn in_tag(conn: &mut DbConn, activity: &Activity, user_id: i64) -> QueryResult<bool> {
    let Some(tag_id) = activity.tag_id else { return Ok(false) };
    diesel::select(diesel::dsl::exists(
        crowd_tag_member::table
            .filter(crowd_tag_member::tag_id.eq(tag_id))
            .filter(crowd_tag_member::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

pub fn find_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Option<Team>> {
    find_natively!(
        conn,
        group_buy_team::table.filter(group_buy_team::team_id.eq(team_id)).select(Team::as_select())
    )
}

/// The teams of `team_ids` (orders' teams, for their views).
pub fn teams(conn: &mut DbConn, team_ids: &[&str]) -> QueryResult<Vec<Team>> {
    group_buy_team::table
        .filter(group_buy_team::team_id.eq_any(team_ids))
        .select(Team::as_select())
        .load(conn)
}

/// The activity's teams one may still join at `at`: PROGRESS, a seat free, and open past
/// `joinable_until`; those expiring first come first.
pub fn joinable_teams(
    conn: &mut DbConn,
    activity_id: i64,
    joinable_until: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Team>> {
    group_buy_team::table
        .filter(group_buy_team::activity_id.eq(activity_id))
        .filter(group_buy_team::status.eq(TeamStatus::Progress.as_str()))
        .filter(group_buy_team::expires_at.gt(joinable_until))
        .filter(group_buy_team::lock_count.lt(group_buy_team::target_count))
        .order(group_buy_team::expires_at.asc())
        .limit(limit)
        .select(Team::as_select())
        .load(conn)
}

/// The activity's teams, newest first (the admin's view).
pub fn teams_of_activity(conn: &mut DbConn, activity_id: i64, limit: i64) -> QueryResult<Vec<Team>> {
    group_buy_team::table
        .filter(group_buy_team::activity_id.eq(activity_id))
        .order(group_buy_team::opened_at.desc())
        .limit(limit)
        .select(Team::as_select())
        .load(conn)
}

/// The activity's teams, the completed ones, and the seats they hold: `(teams, complete, seats)`.
pub fn statistic(conn: &mut DbConn, activity_id: i64) -> QueryResult<(i64, i64, i64)> {
    use diesel::dsl::{count_star, sum};
    let (teams, seats): (i64, Option<i64>) = group_buy_team::table
        .filter(group_buy_team::activity_id.eq(activity_id))
        .select((count_star(), sum(group_buy_team::lock_count)))
        .get_result(conn)?;
    let complete: i64 = group_buy_team::table
        .filter(group_buy_team::activity_id.eq(activity_id))
        .filter(group_buy_team::status.eq(TeamStatus::Complete.as_str()))
        .count()
        .get_result(conn)?;
    Ok((teams, complete, seats.unwrap_or(0)))
}

/// A team opened by its leader's order, with the leader's seat taken.
pub struct NewTeam<'a> {
    pub team_id: &'a str,
    pub activity: &'a Activity,
    pub leader_user_id: i64,
    pub opened_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
}

/// The new team's row, for the inserts that place its leader's order.
pub fn team_row(new: &NewTeam) -> InsertRows {
    InsertRows::new(
        group_buy_team::table,
        (
            group_buy_team::team_id,
            group_buy_team::activity_id,
            group_buy_team::product_id,
            group_buy_team::leader_user_id,
            group_buy_team::target_count,
            group_buy_team::lock_count,
            group_buy_team::paid_count,
            group_buy_team::status,
            group_buy_team::opened_at,
            group_buy_team::expires_at,
            group_buy_team::updated_at,
        ),
        vec![[
            Value::Text(new.team_id.to_owned()),
            Value::BigInt(new.activity.activity_id),
            Value::Text(new.activity.product_id.clone()),
            Value::BigInt(new.leader_user_id),
            Value::Integer(new.activity.target_count),
            Value::Integer(1),
            Value::Integer(0),
            Value::Text(TeamStatus::Progress.as_str().to_owned()),
            Value::at(new.opened_at),
            Value::at(new.expires_at),
            Value::at(new.opened_at),
        ]],
    )
}

/// The activity is EFFECTIVE: a read, which applies when it finds the row. (Only its status is
/// ever changed once it is made.)
pub fn still_effective<'a>(activity_id: i64) -> Guard<'a> {
    Guard::returning(
        group_buy_activity::table
            .filter(group_buy_activity::activity_id.eq(activity_id))
            .filter(group_buy_activity::status.eq(ActivityStatus::Effective.as_str()))
            .select(group_buy_activity::take_limit)
            .keep_prepared(),
    )
}

/// Takes a seat: `lock_count + 1` while the team is PROGRESS, below its target and open past
/// `joinable_until`; it applies when a seat was taken (the last seat goes to one caller only).
pub fn take_seat(team_id: &str, joinable_until: NaiveDateTime) -> Guard<'_> {
    Guard::update(
        diesel::update(
            group_buy_team::table
                .filter(group_buy_team::team_id.eq(team_id))
                .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
                .filter(group_buy_team::lock_count.lt(group_buy_team::target_count))
                .filter(group_buy_team::expires_at.gt(Stamp(joinable_until))),
        )
        .set((
            group_buy_team::lock_count.eq(group_buy_team::lock_count + 1),
            group_buy_team::updated_at.eq(Stamp(now())),
        ))
        .keep_prepared(),
    )
}

/// A seat of a PROGRESS team given back: `lock_count - 1`, and `paid_count - 1` for a paid
/// one; a team left with no seat held fails. Whether the team was PROGRESS.
pub fn give_seat_back(conn: &mut DbConn, team_id: &str, paid: bool) -> QueryResult<bool> {
    let at = now();
    let paid_back = i32::from(paid);
    let changed = diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::paid_count.ge(paid_back)),
    )
    .set((
        group_buy_team::lock_count.eq(group_buy_team::lock_count - 1),
        group_buy_team::paid_count.eq(group_buy_team::paid_count - paid_back),
        group_buy_team::updated_at.eq(at),
    ))
    .execute(conn)?;
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::lock_count.eq(0)),
    )
    .set((
        group_buy_team::status.eq(TeamStatus::Fail.as_str()),
        group_buy_team::failed_at.eq(at),
        group_buy_team::updated_at.eq(at),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// A payment counted: `paid_count + 1` while the team is PROGRESS and `paid_at` before it
/// expires. The counts after it, `(paid_count, target_count)`, or `None` when it did not count.
pub fn count_payment(
    conn: &mut DbConn,
    team_id: &str,
    paid_at: NaiveDateTime,
) -> QueryResult<Option<(i32, i32)>> {
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::paid_count.lt(group_buy_team::lock_count))
            .filter(group_buy_team::expires_at.gt(paid_at)),
    )
    .set((
        group_buy_team::paid_count.eq(group_buy_team::paid_count + 1),
        group_buy_team::updated_at.eq(now()),
    ))
    .returning((group_buy_team::paid_count, group_buy_team::target_count))
    .keep_prepared()
    .get_result(conn)
    .optional()
}

/// Takes the team's row lock (PostgreSQL; SQLite's writers take turns anyway) and reads its
/// status, so that a change of a member's order that also changes the team locks the team first,
/// as a payment does: two such changes never wait on each other in opposite order.
pub fn lock_team(conn: &mut DbConn, team_id: &str) -> QueryResult<Option<TeamStatus>> {
    let status: Option<String> =
        diesel::update(group_buy_team::table.filter(group_buy_team::team_id.eq(team_id)))
            .set(group_buy_team::updated_at.eq(now()))
            .returning(group_buy_team::status)
            .get_result(conn)
            .optional()?;
    Ok(status.and_then(|s| s.parse().ok()))
}

/// PROGRESS -> COMPLETE once every seat of the target is paid; only one caller gets it.
pub fn complete(conn: &mut DbConn, team_id: &str) -> QueryResult<bool> {
    let at = now();
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::paid_count.eq(group_buy_team::target_count)),
    )
    .set((
        group_buy_team::status.eq(TeamStatus::Complete.as_str()),
        group_buy_team::completed_at.eq(at),
        group_buy_team::updated_at.eq(at),
    ))
    .keep_prepared()
    .execute(conn)
    .map(|n| n == 1)
}

/// Moves a forming team's expiry to `at` if it is later (the admin's "expire now"); whether it
/// moved.
pub fn cut_short(conn: &mut DbConn, team_id: &str, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::expires_at.gt(at)),
    )
    .set((group_buy_team::expires_at.eq(at), group_buy_team::updated_at.eq(at)))
    .execute(conn)
    .map(|n| n == 1)
}

/// PROGRESS -> FAIL once expired at `at`; only one caller gets it.
pub fn fail_expired(conn: &mut DbConn, team_id: &str, at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq(TeamStatus::Progress.as_str())))
            .filter(group_buy_team::expires_at.le(at)),
    )
    .set((
        group_buy_team::status.eq(TeamStatus::Fail.as_str()),
        group_buy_team::failed_at.eq(at),
        group_buy_team::updated_at.eq(at),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// A formed team loses a paid member to the admin's refund: `lock_count - 1`, `paid_count - 1`,
/// COMPLETE_FAIL, or FAIL when it was the last paid member. Whether the team was formed.
pub fn lose_formed_member(conn: &mut DbConn, team_id: &str) -> QueryResult<bool> {
    use diesel::dsl::case_when;
    let formed = [TeamStatus::Complete.as_str(), TeamStatus::CompleteFail.as_str()];
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(Checked(group_buy_team::status.eq_any(formed)))
            .filter(group_buy_team::paid_count.gt(0)),
    )
    .set((
        group_buy_team::status.eq(case_when::<_, _, diesel::sql_types::Text>(
            group_buy_team::paid_count.eq(1),
            TeamStatus::Fail.as_str(),
        )
        .otherwise(TeamStatus::CompleteFail.as_str())),
        group_buy_team::lock_count.eq(group_buy_team::lock_count - 1),
        group_buy_team::paid_count.eq(group_buy_team::paid_count - 1),
        group_buy_team::updated_at.eq(now()),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// PROGRESS teams expired at `at`, not leased by another instance.
pub fn expired_teams(conn: &mut DbConn, at: NaiveDateTime, limit: i64) -> QueryResult<Vec<String>> {
    group_buy_team::table
        .filter(group_buy_team::status.eq(TeamStatus::Progress.as_str()))
        .filter(group_buy_team::expires_at.le(at))
        .filter(group_buy_team::lease_until.is_null().or(group_buy_team::lease_until.lt(at)))
        .order(group_buy_team::expires_at.asc())
        .limit(limit)
        .select(group_buy_team::team_id)
        .load(conn)
}

/// Takes the team's lease for `owner` until `until`; false when another instance holds it.
pub fn lease_team(conn: &mut DbConn, team_id: &str, owner: &str, until: NaiveDateTime) -> QueryResult<bool> {
    let at = now();
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(group_buy_team::lease_until.is_null().or(group_buy_team::lease_until.lt(at))),
    )
    .set((group_buy_team::lease_owner.eq(owner), group_buy_team::lease_until.eq(until)))
    .execute(conn)
    .map(|n| n == 1)
}

/// Gives `owner`'s lease of the team back.
pub fn release_team(conn: &mut DbConn, team_id: &str, owner: &str) -> QueryResult<usize> {
    diesel::update(
        group_buy_team::table
            .filter(group_buy_team::team_id.eq(team_id))
            .filter(group_buy_team::lease_owner.eq(owner)),
    )
    .set((
        group_buy_team::lease_owner.eq(None::<String>),
        group_buy_team::lease_until.eq(None::<NaiveDateTime>),
    ))
    .execute(conn)
}

/// The row of a seat taken by an order, LOCKED, for the inserts that place the order. A second
/// held seat of the shopper in the team breaks the unique index `group_buy_member_one_seat`.
pub fn member_row(
    team_id: &str,
    activity_id: i64,
    user_id: i64,
    order_id: &str,
    at: NaiveDateTime,
) -> InsertRows {
    InsertRows::new(
        group_buy_member::table,
        (
            group_buy_member::team_id,
            group_buy_member::activity_id,
            group_buy_member::user_id,
            group_buy_member::order_id,
            group_buy_member::status,
            group_buy_member::locked_at,
            group_buy_member::updated_at,
        ),
        vec![[
            Value::Text(team_id.to_owned()),
            Value::BigInt(activity_id),
            Value::BigInt(user_id),
            Value::Text(order_id.to_owned()),
            Value::Text(MemberStatus::Locked.as_str().to_owned()),
            Value::at(at),
            Value::at(at),
        ]],
    )
}

/// The condition of the partial unique index `group_buy_member_one_seat` (a held seat), as the
/// migrations write it.
pub const SEAT_HELD: IndexCondition<SeatHeld> = IndexCondition::new();

/// The text of [`SEAT_HELD`].
pub struct SeatHeld;

impl ConditionText for SeatHeld {
    const SQL: &'static str = "(group_buy_member.status = 'LOCKED' OR group_buy_member.status = 'PAID')";
}

/// The order of the seat (LOCKED or PAID) the shopper holds in the team, if any (one at most):
/// one probe of the index `group_buy_member_one_seat`, however many members the team has had.
pub fn held_seat(conn: &mut DbConn, team_id: &str, user_id: i64) -> QueryResult<Option<String>> {
    find_natively!(
        conn,
        group_buy_member::table
            .filter(group_buy_member::team_id.eq(team_id))
            .filter(group_buy_member::user_id.eq(user_id))
            .filter(SEAT_HELD)
            .select(group_buy_member::order_id)
    )
}

/// What the checks of a group purchase read ([`purchase_rows`]): the activity named, whether the
/// shopper is in its crowd tag, the team named and the order of the shopper's seat in it.
#[derive(Debug, Clone, Default)]
pub struct PurchaseRows {
    pub activity: Option<Activity>,
    pub tagged: bool,
    pub team: Option<Team>,
    pub held_seat: Option<String>,
}

/// The activity, the crowd member's user id, the team and the held seat's order.
type PurchaseRow = (Activity, Option<i64>, Option<Team>, Option<String>);

/// [`PurchaseRows`] for the activity and team named, as `user_id` (`None`: a visitor) finds them:
/// one statement on the backend's own connection (on the checkout's path), the team and seat
/// joined to the activity (nothing without it). The seat is one probe of the partial index
/// `group_buy_member_one_seat`, however many members the team has had.
pub fn purchase_rows(
    conn: &mut DbConn,
    activity_id: i64,
    team_id: Option<&str>,
    user_id: Option<i64>,
) -> QueryResult<PurchaseRows> {
    let found: Option<PurchaseRow> = find_natively!(
        conn,
        group_buy_activity::table
            .left_join(
                crowd_tag_member::table.on(crowd_tag_member::tag_id
                    .nullable()
                    .eq(group_buy_activity::tag_id)
                    .and(crowd_tag_member::user_id.nullable().eq(user_id))),
            )
            .left_join(
                group_buy_team::table.on(group_buy_team::team_id.nullable().eq(team_id.map(str::to_owned)))
            )
            .left_join(
                group_buy_member::table.on(group_buy_member::team_id
                    .eq(group_buy_team::team_id)
                    .and(group_buy_member::user_id.nullable().eq(user_id))
                    .and(SEAT_HELD)),
            )
            .filter(group_buy_activity::activity_id.eq(activity_id))
            .select((
                Activity::as_select(),
                crowd_tag_member::user_id.nullable(),
                Option::<Team>::as_select(),
                group_buy_member::order_id.nullable(),
            ))
    )?;
    Ok(found.map_or_else(PurchaseRows::default, |(activity, tagged, team, held_seat)| PurchaseRows {
        activity: Some(activity),
        tagged: tagged.is_some(),
        team,
        held_seat,
    }))
}

pub fn member_of_order(conn: &mut DbConn, order_id: &str) -> QueryResult<Option<Member>> {
    group_buy_member::table
        .filter(group_buy_member::order_id.eq(order_id))
        .select(Member::as_select())
        .get_result(conn)
        .optional()
}

/// The team's members, in the order they joined.
pub fn members(conn: &mut DbConn, team_id: &str) -> QueryResult<Vec<Member>> {
    group_buy_member::table
        .filter(group_buy_member::team_id.eq(team_id))
        .order(group_buy_member::id.asc())
        .select(Member::as_select())
        .load(conn)
}

/// The order's seat leaves its team, `from` -> `to` (RELEASED or REFUNDING), marked with why;
/// whether this call moved it.
pub fn leave(
    conn: &mut DbConn,
    order_id: &str,
    from: MemberStatus,
    to: MemberStatus,
    why: RefundType,
) -> QueryResult<bool> {
    diesel::update(
        group_buy_member::table
            .filter(group_buy_member::order_id.eq(order_id))
            .filter(group_buy_member::status.eq(from.as_str())),
    )
    .set((
        group_buy_member::status.eq(to.as_str()),
        group_buy_member::refund_type.eq(why.as_str()),
        group_buy_member::updated_at.eq(now()),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// The order's REFUNDING seat -> REFUNDED, once the money is back; whether it was REFUNDING.
pub fn member_refunded(conn: &mut DbConn, order_id: &str) -> QueryResult<bool> {
    diesel::update(
        group_buy_member::table
            .filter(group_buy_member::order_id.eq(order_id))
            .filter(group_buy_member::status.eq(MemberStatus::Refunding.as_str())),
    )
    .set((
        group_buy_member::status.eq(MemberStatus::Refunded.as_str()),
        group_buy_member::updated_at.eq(now()),
    ))
    .execute(conn)
    .map(|n| n == 1)
}

/// The order's LOCKED seat -> PAID at `paid_at`; whether it was LOCKED.
pub fn member_paid(conn: &mut DbConn, order_id: &str, paid_at: NaiveDateTime) -> QueryResult<bool> {
    diesel::update(
        group_buy_member::table
            .filter(group_buy_member::order_id.eq(order_id))
            .filter(group_buy_member::status.eq(MemberStatus::Locked.as_str())),
    )
    .set((
        group_buy_member::status.eq(MemberStatus::Paid.as_str()),
        group_buy_member::paid_at.eq(paid_at),
        group_buy_member::updated_at.eq(now()),
    ))
    .keep_prepared()
    .execute(conn)
    .map(|n| n == 1)
}

/// One more seat held by the shopper in the activity, while below `take_limit`; it applies when
/// the seat was taken. One statement, an upsert (`ON CONFLICT ... DO UPDATE ... WHERE`), on the
/// backend's own connection: the MultiConnection builds no ON CONFLICT clause.
pub fn take<'a>(activity_id: i64, user_id: i64, take_limit: i32) -> Guard<'a> {
    let upsert = diesel::insert_into(group_buy_take::table)
        .values((
            group_buy_take::activity_id.eq(activity_id),
            group_buy_take::user_id.eq(user_id),
            group_buy_take::held.eq(1),
        ))
        .on_conflict((group_buy_take::activity_id, group_buy_take::user_id))
        .do_update()
        .set(group_buy_take::held.eq(group_buy_take::held + 1));
    // The DO UPDATE's own WHERE (diesel's `FilterDsl` on an upsert).
    let below_limit =
        diesel::query_dsl::methods::FilterDsl::filter(upsert, group_buy_take::held.lt(take_limit));
    Guard::returning(KeepPrepared::native(below_limit.returning(group_buy_take::held)))
}

/// One seat fewer held by the shopper in the activity (its seat was released or refunded).
pub fn untake(conn: &mut DbConn, activity_id: i64, user_id: i64) -> QueryResult<bool> {
    diesel::update(
        group_buy_take::table
            .filter(group_buy_take::activity_id.eq(activity_id))
            .filter(group_buy_take::user_id.eq(user_id))
            .filter(group_buy_take::held.gt(0)),
    )
    .set(group_buy_take::held.eq(group_buy_take::held - 1))
    .execute(conn)
    .map(|n| n == 1)
}

#[cfg(test)]
impl Activity {
    /// An effective activity of `plan` around `at` (a day either side), 直减1 for ZJ, a team of
    /// 3 within 30 minutes: the tests' starting point.
    pub fn sample(plan: Plan, at: NaiveDateTime) -> Activity {
        Activity {
            activity_id: 100_123,
            name: "团".into(),
            product_id: "100010090092".into(),
            plan,
            off_cents: 100,
            threshold_cents: 0,
            rate_bp: 0,
            n_price_cents: 0,
            target_count: 3,
            valid_minutes: 30,
            take_limit: 1,
            status: ActivityStatus::Effective,
            start_at: at - chrono::Duration::days(1),
            end_at: at + chrono::Duration::days(1),
            tag_id: None,
            tag_limits_visibility: false,
            tag_limits_joining: false,
            discount_tag_only: false,
            created_at: at,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use chrono::{Duration, NaiveDate};
    use diesel::connection::{Connection, InstrumentationEvent};

    use super::{Activity, NewTeam, Plan};
    use crate::db::Backend;
    use crate::models::now;
    use crate::test_support::TestDatabase;

    /// The reads and writes of placing a group order, as the writer runs them over and over:
    /// each is prepared once and reused (docs/PERFORMANCE.md, "Statements kept prepared").
    #[test]
    fn a_seats_statements_are_prepared_once_per_connection() {
        let database = TestDatabase::migrated(Backend::Sqlite);
        let mut conn = database.location().establish().unwrap();
        let prepared = Arc::new(Mutex::new(Vec::new()));
        let seen = prepared.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock().unwrap().push(sql.to_owned());
            }
        });
        let activity =
            Activity { target_count: 10, ..super::find_activity(&mut conn, 100_123).unwrap().unwrap() };
        let at = now();
        let new = NewTeam {
            team_id: "T1",
            activity: &activity,
            leader_user_id: 1,
            opened_at: at,
            expires_at: at + Duration::minutes(30),
        };
        super::team_row(&new).execute(&mut conn).unwrap();
        for user_id in 2..5 {
            assert!(super::find_activity(&mut conn, 100_123).unwrap().is_some());
            assert!(super::find_team(&mut conn, "T1").unwrap().is_some());
            assert_eq!(super::held_seat(&mut conn, "T1", user_id).unwrap(), None);
            assert!(super::still_effective(100_123).apply(&mut conn).unwrap());
            assert!(super::take_seat("T1", at).apply(&mut conn).unwrap());
            assert!(super::take(100_123, user_id, 1).apply(&mut conn).unwrap());
            assert!(!super::take(100_123, user_id, 1).apply(&mut conn).unwrap(), "the limit");
        }
        let prepared = prepared.lock().unwrap();
        assert_eq!(prepared.len(), 7, "each statement prepared once, then reused: {prepared:#?}");
    }

    #[test]
    fn a_team_expires_after_its_validity_but_never_past_the_activity() {
        let at = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap().and_hms_opt(12, 0, 0).unwrap();
        let activity = Activity { end_at: at + Duration::minutes(45), ..Activity::sample(Plan::Zj, at) };
        assert_eq!(activity.team_expiry(at), at + Duration::minutes(30));
        assert_eq!(
            activity.team_expiry(at + Duration::minutes(20)),
            at + Duration::minutes(45),
            "the activity ends first"
        );
        assert!(activity.is_on_at(at) && !activity.is_on_at(at + Duration::minutes(45)));
        assert_eq!(activity.rule_in_words(), "直减1");
    }
}
