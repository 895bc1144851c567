//! Group buying (拼团, MARKETING.md §5) inside the shop: every step is a conditional statement in
//! the transaction of the order change it belongs to, so a seat, a payment and a refund can
//! never disagree with their order.
//!
//! - placing a group order opens a team or takes one of its seats, with the shopper's take
//!   ([`seat_rows`] and [`seat_guards`], in `services::order::place`);
//! - its payment is counted; the payment that fills the team completes it, and every member's
//!   order goes `PAY_SUCCESS -> MARKET` with its delivery enqueued ([`count_payment`], in
//!   `services::payment::record`); a payment too late for its team is refunded;
//! - an order closed unpaid gives its seat back ([`release_unpaid`]);
//! - an expired team first has its unpaid members closed at Alipay (one found paid still counts),
//!   then fails, and its paid members are refunded ([`expire`]); a paid member refunded leaves
//!   its seat ([`refund_seat`]).

use chrono::{Duration, NaiveDateTime};

use crate::config::Settings;
use crate::db::{DbConn, DbPool, Guard, Inserts, write_transaction};
use crate::error::{AppError, AppResult};
pub use crate::gateways::market::TeamNotice;
use crate::models::group_buy::{
    self, Activity, ActivityStatus, Member, MemberStatus, NewActivity, NewTeam, RefundType, Team, TeamStatus,
};
use crate::models::order::{Order, OrderStatus};
use crate::models::outbox::{Delivery, NewOutboxEntry, OutboxEntry};
use crate::models::product::Product;
use crate::models::user::AppUser;
use crate::models::{now, order_event};
use crate::services::payment;
use crate::services::pricing::{self, PricingChoices};
use crate::services::reconcile::{self, Reconciler};

/// How long one instance holds a team while it expires it.
const TEAM_LEASE_SECS: i64 = 120;

/// Why group buying refuses, with the original's code and text (GBM `ResponseCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GroupBuyRefusal {
    /// No such activity for the product (E0002).
    #[error("无拼团营销配置")]
    NoActivity,
    /// Group buying is switched off (E0003).
    #[error("拼团活动降级拦截")]
    Downgraded,
    /// The shopper already holds a seat in the team (E0005).
    #[error("拼团组队失败，记录更新为0")]
    AlreadyInTeam,
    /// The team is full, formed, failed, gone or about to expire (E0006).
    #[error("拼团组队完结，锁单量已达成")]
    TeamClosed,
    /// The shopper is outside the activity's crowd (E0007).
    #[error("拼团人群限定，不可参与")]
    OutsideCrowd,
    /// The activity is not effective (E0101).
    #[error("拼团活动未生效")]
    NotEffective,
    /// Outside the activity's window (E0102).
    #[error("不在拼团活动有效时间内")]
    OutsideWindow,
    /// The shopper holds as many seats as the activity allows (E0103).
    #[error("当前用户参与此拼团次数已达上限")]
    TakeLimit,
}

impl GroupBuyRefusal {
    pub fn code(self) -> &'static str {
        match self {
            GroupBuyRefusal::NoActivity => "E0002",
            GroupBuyRefusal::Downgraded => "E0003",
            GroupBuyRefusal::AlreadyInTeam => "E0005",
            GroupBuyRefusal::TeamClosed => "E0006",
            GroupBuyRefusal::OutsideCrowd => "E0007",
            GroupBuyRefusal::NotEffective => "E0101",
            GroupBuyRefusal::OutsideWindow => "E0102",
            GroupBuyRefusal::TakeLimit => "E0103",
        }
    }

    pub fn info(self) -> &'static str {
        match self {
            GroupBuyRefusal::NoActivity => "无拼团营销配置",
            GroupBuyRefusal::Downgraded => "拼团活动降级拦截",
            GroupBuyRefusal::AlreadyInTeam => "拼团组队失败，记录更新为0",
            GroupBuyRefusal::TeamClosed => "拼团组队完结，锁单量已达成",
            GroupBuyRefusal::OutsideCrowd => "拼团人群限定，不可参与",
            GroupBuyRefusal::NotEffective => "拼团活动未生效",
            GroupBuyRefusal::OutsideWindow => "不在拼团活动有效时间内",
            GroupBuyRefusal::TakeLimit => "当前用户参与此拼团次数已达上限",
        }
    }
}

impl From<GroupBuyRefusal> for AppError {
    fn from(refusal: GroupBuyRefusal) -> Self {
        AppError::Refused { code: refusal.code(), info: refusal.info() }
    }
}

/// The shopper's group-buy choice: the activity, and the team to join (none: open one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupBuyPick {
    pub activity_id: i64,
    pub team_id: Option<String>,
}

/// Which team a group order takes its seat in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamSeat {
    /// A new team, its id the leader's order number, expiring then.
    Open {
        expires_at: NaiveDateTime,
    },
    Join {
        team_id: String,
        expires_at: NaiveDateTime,
    },
}

/// A group purchase checked for the shopper: the activity as read, whether the shopper is in its
/// crowd, and the seat to take.
#[derive(Debug, Clone)]
pub struct GroupBuyDraft {
    pub activity: Activity,
    pub in_crowd: bool,
    pub seat: TeamSeat,
}

impl GroupBuyDraft {
    /// When the team expires; the order's payment window ends by then.
    pub fn team_expires_at(&self) -> NaiveDateTime {
        match &self.seat {
            TeamSeat::Open { expires_at } | TeamSeat::Join { expires_at, .. } => *expires_at,
        }
    }

    /// The team the order `order_id` belongs to: the one joined, or the one it opens.
    pub fn team_id(&self, order_id: &str) -> String {
        match &self.seat {
            TeamSeat::Open { .. } => team_id_of_leader(order_id),
            TeamSeat::Join { team_id, .. } => team_id.clone(),
        }
    }

    /// Whether the activity's discount applies to this shopper.
    pub fn discount_applies(&self) -> bool {
        !self.activity.discount_tag_only || self.in_crowd
    }
}

/// A team's id: its leader's order number (the order id without its date).
fn team_id_of_leader(order_id: &str) -> String {
    order_id.get(6..).unwrap_or(order_id).to_owned()
}

/// The earliest expiry a team may have to take a new member at `at`.
fn joinable_until(settings: &Settings, at: NaiveDateTime) -> NaiveDateTime {
    at + Duration::seconds(settings.group_buy.min_join_window_secs as i64)
}

/// The activity for `product_id` as the shopper (`None`: a visitor) may see it, from its row and
/// whether the shopper is in its crowd tag: E0002 when it is not the product's or is hidden from
/// them, E0007 when they may not join.
fn activity_for(
    settings: &Settings,
    activity: Option<Activity>,
    tagged: bool,
    product_id: &str,
    shopper: Option<&AppUser>,
) -> AppResult<(Activity, bool)> {
    if !settings.group_buy.enabled {
        return Err(GroupBuyRefusal::Downgraded.into());
    }
    let activity = activity.filter(|a| a.product_id == product_id).ok_or(GroupBuyRefusal::NoActivity)?;
    let in_crowd = match (activity.tag_id, shopper) {
        (Some(_), Some(_)) => tagged,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if activity.tag_limits_visibility && !in_crowd {
        return Err(GroupBuyRefusal::NoActivity.into());
    }
    if activity.tag_limits_joining && !in_crowd {
        return Err(GroupBuyRefusal::OutsideCrowd.into());
    }
    Ok((activity, in_crowd))
}

/// Checks a group purchase before it is priced, from its rows as the shopper finds them
/// ([`group_buy::purchase_rows`], one statement): the activity (E0002, E0003, E0007), and the
/// team to join, which must take members now (E0006) and not hold the shopper already (E0005),
/// but for the seat of the order this one `replaces` (closed as it is placed). Whether the
/// activity is on is the price's to say ([`crate::services::pricing::price`]).
pub fn prepare(
    conn: &mut DbConn,
    settings: &Settings,
    pick: &GroupBuyPick,
    product_id: &str,
    shopper: Option<&AppUser>,
    replaces: Option<&str>,
    at: NaiveDateTime,
) -> AppResult<GroupBuyDraft> {
    let user_id = shopper.map(|u| u.user_id);
    let rows = group_buy::purchase_rows(conn, pick.activity_id, pick.team_id.as_deref(), user_id)?;
    let (activity, in_crowd) = activity_for(settings, rows.activity, rows.tagged, product_id, shopper)?;
    let seat = match &pick.team_id {
        None => TeamSeat::Open { expires_at: activity.team_expiry(at) },
        Some(_) => {
            let team = rows
                .team
                .filter(|t| t.activity_id == activity.activity_id)
                .filter(|t| is_joinable(t, joinable_until(settings, at)))
                .ok_or(GroupBuyRefusal::TeamClosed)?;
            if rows.held_seat.is_some_and(|held| Some(held.as_str()) != replaces) {
                return Err(GroupBuyRefusal::AlreadyInTeam.into());
            }
            TeamSeat::Join { team_id: team.team_id, expires_at: team.expires_at }
        }
    };
    Ok(GroupBuyDraft { activity, in_crowd, seat })
}

fn is_joinable(team: &Team, joinable_until: NaiveDateTime) -> bool {
    team.status == TeamStatus::Progress
        && team.lock_count < team.target_count
        && team.expires_at > joinable_until
}

/// The rows of the order's seat, for the inserts that place the order: a new team's row when it
/// opens one, and the order's member row. A second held seat of the shopper in the team (another
/// order racing this one past [`prepare`]'s check) breaks a unique index there, and the checkout
/// starts again and finds it.
pub fn seat_rows(
    draft: &GroupBuyDraft,
    shopper: &AppUser,
    order_id: &str,
    at: NaiveDateTime,
    rows: &mut Inserts,
) {
    let team_id = draft.team_id(order_id);
    let activity = &draft.activity;
    if let TeamSeat::Open { expires_at } = &draft.seat {
        let new = NewTeam {
            team_id: &team_id,
            activity,
            leader_user_id: shopper.user_id,
            opened_at: at,
            expires_at: *expires_at,
        };
        rows.add(group_buy::team_row(&new));
    }
    rows.add(group_buy::member_row(&team_id, activity.activity_id, shopper.user_id, order_id, at));
}

/// What the order's seat needs besides its rows ([`seat_rows`]), as guards of the reservation
/// that places it, each with the refusal it gives: the activity is still EFFECTIVE (E0101: it
/// was ended since it was priced); joining takes the last free seat in one conditional UPDATE
/// (E0006 when none is left, or the team ends within `group_buy.min_join_window_secs`; a new
/// team opened with its leader's seat taken); the shopper's take counts the seat (E0103 at the
/// activity's limit).
pub fn seat_guards<'a>(
    settings: &Settings,
    draft: &'a GroupBuyDraft,
    shopper: &AppUser,
    at: NaiveDateTime,
) -> AppResult<Vec<(Guard<'a>, AppError)>> {
    let activity = &draft.activity;
    if activity.take_limit < 1 {
        return Err(GroupBuyRefusal::TakeLimit.into());
    }
    let mut guards = Vec::with_capacity(3);
    guards.push((group_buy::still_effective(activity.activity_id), GroupBuyRefusal::NotEffective.into()));
    if let TeamSeat::Join { team_id, .. } = &draft.seat {
        guards.push((
            group_buy::take_seat(team_id, joinable_until(settings, at)),
            GroupBuyRefusal::TeamClosed.into(),
        ));
    }
    guards.push((
        group_buy::take(activity.activity_id, shopper.user_id, activity.take_limit),
        GroupBuyRefusal::TakeLimit.into(),
    ));
    Ok(guards)
}

/// What a group order's payment came to in its team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TeamPayment {
    /// Counted; the team waits for more.
    Counted,
    /// Counted, and it filled the team: these orders (this one among them) went to MARKET with
    /// their deliveries.
    Completed(Vec<String>),
    /// Too late: the team failed or expired before the payment. The order is being refunded.
    TooLate,
}

/// Inside the transaction that recorded the payment of the group order `order` (now
/// `PAY_SUCCESS`): its seat PAID and counted while the team is PROGRESS and `paid_at` is before
/// it expires. The payment that fills the team completes it: every paid member's order
/// `PAY_SUCCESS -> MARKET`, with its timeline row and delivery in `rows`. A payment too late is
/// refunded: `PAY_SUCCESS -> REFUND_WAIT`, the seat and take given back, the refund enqueued.
pub fn count_payment(
    conn: &mut DbConn,
    order: &Order,
    team_id: &str,
    paid_at: NaiveDateTime,
    cause: &str,
    rows: &mut Inserts,
) -> AppResult<TeamPayment> {
    let order_id = order.order_id.as_str();
    if let Some(member) = group_buy::member_of_order(conn, order_id)?
        && member.status == MemberStatus::Locked
    {
        if let Some((paid, target)) = group_buy::count_payment(conn, team_id, paid_at)? {
            group_buy::member_paid(conn, order_id, paid_at)?;
            if paid < target || !group_buy::complete(conn, team_id)? {
                return Ok(TeamPayment::Counted);
            }
            return complete(conn, team_id, cause, rows).map(TeamPayment::Completed);
        }
        leave_unpaid_seat(conn, &member, MemberStatus::Refunding, RefundType::PaidUnformed)?;
    }
    let detail = "paid after its team closed; refunding";
    Order::transition(conn, order_id, &[OrderStatus::PaySuccess], OrderStatus::RefundWait)?;
    rows.add(order_event::row(
        order_id,
        Some(OrderStatus::PaySuccess),
        OrderStatus::RefundWait,
        cause,
        detail,
    ));
    payment::enqueue_refund(conn, order, "拼团未成团，退款", true)?;
    Ok(TeamPayment::TooLate)
}

/// The team just completed: its paid members' orders `PAY_SUCCESS -> MARKET`, each with its
/// timeline row and delivery (unique per order) in `rows`; the orders moved.
fn complete(conn: &mut DbConn, team_id: &str, cause: &str, rows: &mut Inserts) -> AppResult<Vec<String>> {
    let mut formed = Vec::new();
    for member in group_buy::members(conn, team_id)?.into_iter().filter(|m| m.status == MemberStatus::Paid) {
        let order_id = member.order_id;
        if Order::transition(conn, &order_id, &[OrderStatus::PaySuccess], OrderStatus::Market)? {
            let detail = format!("team {team_id} formed");
            rows.add(order_event::row(
                &order_id,
                Some(OrderStatus::PaySuccess),
                OrderStatus::Market,
                cause,
                &detail,
            ));
            formed.push(order_id);
        }
    }
    if !formed.is_empty() {
        rows.add(OutboxEntry::insert(
            formed.iter().map(|order_id| NewOutboxEntry::of(&Delivery { order_id: order_id.clone() })),
        ));
    }
    log::info!("team {team_id} formed: orders {}", formed.join(", "));
    Ok(formed)
}

/// A LOCKED seat goes back: the member RELEASED, the team's seat and the shopper's take freed
/// (a PROGRESS team left with no seat fails).
fn release_seat(conn: &mut DbConn, member: &Member) -> AppResult<bool> {
    leave_unpaid_seat(conn, member, MemberStatus::Released, RefundType::UnpaidUnlock)
}

/// A LOCKED seat leaves for `to` (RELEASED: the order closed unpaid; REFUNDING: paid too late),
/// the team's seat and the shopper's take freed.
fn leave_unpaid_seat(
    conn: &mut DbConn,
    member: &Member,
    to: MemberStatus,
    why: RefundType,
) -> AppResult<bool> {
    let released = group_buy::leave(conn, &member.order_id, MemberStatus::Locked, to, why)?;
    if released {
        group_buy::give_seat_back(conn, &member.team_id, false)?;
        group_buy::untake(conn, member.activity_id, member.user_id)?;
    }
    Ok(released)
}

/// Inside the transaction that closes the unpaid order `order_id`: its seat, if it has one,
/// goes back.
pub fn release_unpaid(conn: &mut DbConn, order_id: &str) -> AppResult<()> {
    if let Some(member) = group_buy::member_of_order(conn, order_id)? {
        release_seat(conn, &member)?;
    }
    Ok(())
}

/// Inside the transaction that moves the paid order `order_id` to `REFUND_WAIT`: its seat, if
/// it has one, leaves with the money. An open team frees the seat for someone else
/// (`paid_unformed`); a formed team turns COMPLETE_FAIL, or FAIL without paid members left
/// (`paid_formed`); a failed team only marks it. The shopper's take goes back.
pub fn refund_seat(conn: &mut DbConn, order_id: &str) -> AppResult<()> {
    let Some(member) = group_buy::member_of_order(conn, order_id)? else { return Ok(()) };
    let Some(team) = group_buy::find_team(conn, &member.team_id)? else { return Ok(()) };
    let why = match team.status {
        TeamStatus::Complete | TeamStatus::CompleteFail => RefundType::PaidFormed,
        TeamStatus::Progress | TeamStatus::Fail => RefundType::PaidUnformed,
    };
    if group_buy::leave(conn, order_id, MemberStatus::Paid, MemberStatus::Refunding, why)? {
        match team.status {
            TeamStatus::Progress => {
                group_buy::give_seat_back(conn, &team.team_id, true)?;
            }
            TeamStatus::Complete | TeamStatus::CompleteFail => {
                group_buy::lose_formed_member(conn, &team.team_id)?;
            }
            TeamStatus::Fail => {}
        }
        group_buy::untake(conn, member.activity_id, member.user_id)?;
    }
    Ok(())
}

/// Inside the transaction that moves `order_id` to `REFUNDED`: its seat, if refunding, too.
pub fn seat_refunded(conn: &mut DbConn, order_id: &str) -> AppResult<()> {
    group_buy::member_refunded(conn, order_id)?;
    Ok(())
}

/// Inside a transaction that is about to change the group order `order` and then its team (a
/// refund): the team's row locked first, as a payment locks it before the members' orders; the
/// team's status, `None` for an order without a team.
pub fn lock_team_of(conn: &mut DbConn, order: &Order) -> AppResult<Option<TeamStatus>> {
    match &order.team_id {
        Some(team_id) => Ok(group_buy::lock_team(conn, team_id)?),
        None => Ok(None),
    }
}

/// The shopper leaves a forming team they paid for (MARKETING.md §5.8): `PAY_SUCCESS ->
/// REFUND_WAIT`, the seat freed for someone else, the refund enqueued. Whether this call did it.
pub fn leave_forming_team(conn: &mut DbConn, order: &Order) -> AppResult<bool> {
    write_transaction(conn, |c| {
        if lock_team_of(c, order)? != Some(TeamStatus::Progress) {
            return Ok(false);
        }
        let order_id = order.order_id.as_str();
        if !Order::transition(c, order_id, &[OrderStatus::PaySuccess], OrderStatus::RefundWait)? {
            return Ok(false);
        }
        refund_seat(c, order_id)?;
        order_event::record(
            c,
            order_id,
            Some(OrderStatus::PaySuccess),
            OrderStatus::RefundWait,
            "shopper",
            "left the team before it formed; refunding",
        )?;
        payment::enqueue_refund(c, order, "退出拼团，退款", true)?;
        Ok(true)
    })
}

/// What [`expire`] came to for one team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expiry {
    /// Another instance holds the team.
    Busy,
    /// Not expired, or settled already (formed, failed).
    NotDue,
    /// Unpaid members remain whom Alipay could not close yet; tried again later.
    Later,
    /// The team formed after all (a member found paid filled it).
    Formed,
    /// The team failed; this many paid members are being refunded.
    Failed(usize),
}

/// Expires the team `team_id` if it is PROGRESS and past `expires_at`, under the team's lease
/// (several instances are safe): first each unpaid member's order is closed at its channel,
/// through the same close as an unpaid order's timeout (a member found paid is counted and may
/// still complete the team); once no member is unpaid, the team fails and every paid member's
/// order goes `PAY_SUCCESS -> REFUND_WAIT` with its refund enqueued (stock, seat and coupon come
/// back with the refund). Running it again changes nothing.
pub fn expire(reconciler: &Reconciler, pool: &DbPool, team_id: &str, cause: &str) -> AppResult<Expiry> {
    let owner = reconciler.owner;
    {
        let conn = &mut *pool.get()?;
        if !group_buy::lease_team(conn, team_id, owner, now() + Duration::seconds(TEAM_LEASE_SECS))? {
            return Ok(Expiry::Busy);
        }
    }
    let expiry = expire_leased(reconciler, pool, team_id, cause);
    group_buy::release_team(&mut *pool.get()?, team_id, owner)?;
    let expiry = expiry?;
    log::info!("team {team_id} ({cause}): {expiry:?}");
    Ok(expiry)
}

/// The admin expires a forming team now: its expiry moves to now (so no one joins it and a later
/// payment is refunded), then [`expire`] runs.
pub fn expire_now(reconciler: &Reconciler, pool: &DbPool, team_id: &str, cause: &str) -> AppResult<Expiry> {
    group_buy::cut_short(&mut *pool.get()?, team_id, now())?;
    expire(reconciler, pool, team_id, cause)
}

fn expire_leased(reconciler: &Reconciler, pool: &DbPool, team_id: &str, cause: &str) -> AppResult<Expiry> {
    let at = now();
    let team = group_buy::find_team(&mut *pool.get()?, team_id)?;
    if !team.is_some_and(|t| t.status == TeamStatus::Progress && t.expires_at <= at) {
        return Ok(Expiry::NotDue);
    }
    let members = group_buy::members(&mut *pool.get()?, team_id)?;
    for member in members.iter().filter(|m| m.status == MemberStatus::Locked) {
        reconciler.under_lease(pool, &member.order_id, cause, reconcile::close)?;
    }
    let conn = &mut *pool.get()?;
    write_transaction(conn, |c| {
        let members = group_buy::members(c, team_id)?;
        if members.iter().any(|m| m.status == MemberStatus::Locked) {
            return Ok(Expiry::Later);
        }
        if !group_buy::fail_expired(c, team_id, at)? {
            let formed = group_buy::find_team(c, team_id)?.is_some_and(|t| t.status == TeamStatus::Complete);
            return Ok(if formed { Expiry::Formed } else { Expiry::NotDue });
        }
        let mut refunding = 0;
        for member in members.iter().filter(|m| m.status == MemberStatus::Paid) {
            let order_id = member.order_id.as_str();
            let Some(order) = Order::find(c, order_id)? else { continue };
            if !Order::transition(c, order_id, &[OrderStatus::PaySuccess], OrderStatus::RefundWait)? {
                continue;
            }
            refund_seat(c, order_id)?;
            order_event::record(
                c,
                order_id,
                Some(OrderStatus::PaySuccess),
                OrderStatus::RefundWait,
                cause,
                &format!("team {team_id} expired short of its target; refunding"),
            )?;
            payment::enqueue_refund(c, &order, "拼团未成团，退款", true)?;
            refunding += 1;
        }
        Ok(Expiry::Failed(refunding))
    })
}

/// The background thread's pass: every expired PROGRESS team not leased by another instance;
/// how many it settled (formed or failed).
pub fn expire_due(reconciler: &Reconciler, pool: &DbPool, batch: i64) -> AppResult<usize> {
    let due = group_buy::expired_teams(&mut *pool.get()?, now(), batch)?;
    let mut settled = 0;
    for team_id in &due {
        if matches!(expire(reconciler, pool, team_id, "team expiry")?, Expiry::Formed | Expiry::Failed(_)) {
            settled += 1;
        }
    }
    Ok(settled)
}

/// The product page's and API's view of a product's group buy.
#[derive(Debug, Clone)]
pub struct MarketConfig {
    pub activity: Activity,
    /// The list price, and what the viewer pays in a team.
    pub original_cents: i64,
    pub pay_cents: i64,
    /// Whether the viewer may open or join a team.
    pub may_join: bool,
    /// Teams one may join now, each with its leader's openid: the viewer's own first (at most
    /// one), then up to two others.
    pub teams: Vec<(Team, String)>,
    /// The viewer's own open team, if any.
    pub my_team: Option<String>,
    /// All teams of the activity, the formed ones, and their seats held.
    pub statistic: (i64, i64, i64),
}

/// The product's effective activity as the viewer (`None`: a visitor) sees it, or `None` when
/// there is none (or it is switched off, or hidden from them).
pub fn market_config(
    conn: &mut DbConn,
    settings: &Settings,
    product_id: &str,
    viewer: Option<&AppUser>,
    at: NaiveDateTime,
) -> AppResult<Option<MarketConfig>> {
    let Some(activity) = group_buy::effective_for_product(conn, product_id)? else { return Ok(None) };
    let Some(product) = Product::find(conn, product_id)? else { return Ok(None) };
    if !activity.is_on_at(at) {
        return Ok(None);
    }
    let tagged = match viewer {
        Some(user) => group_buy::in_tag(conn, &activity, user.user_id)?,
        None => false,
    };
    let (activity, in_crowd, may_join) =
        match activity_for(settings, Some(activity.clone()), tagged, product_id, viewer) {
            Ok((activity, in_crowd)) => (activity, in_crowd, true),
            Err(AppError::Refused { code: "E0007", .. }) => (activity, false, false),
            Err(AppError::Refused { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
    let draft =
        GroupBuyDraft { seat: TeamSeat::Open { expires_at: activity.team_expiry(at) }, activity, in_crowd };
    let choices = PricingChoices { coupon: None, group_buy: Some(&draft) };
    let Ok(price) = pricing::price(&product, viewer, &choices, at) else { return Ok(None) };
    let activity = draft.activity;
    let joinable = group_buy::joinable_teams(conn, activity.activity_id, joinable_until(settings, at), 50)?;
    let mut mine = None;
    if let Some(user) = viewer {
        for team in &joinable {
            if group_buy::held_seat(conn, &team.team_id, user.user_id)?.is_some() {
                mine = Some(team.team_id.clone());
                break;
            }
        }
    }
    let mut shown: Vec<Team> =
        joinable.iter().filter(|t| Some(&t.team_id) == mine.as_ref()).cloned().collect();
    shown.extend(joinable.into_iter().filter(|t| Some(&t.team_id) != mine.as_ref()).take(2));
    let mut teams = Vec::with_capacity(shown.len());
    for team in shown {
        let leader = AppUser::find(conn, team.leader_user_id)?.map(|u| u.openid).unwrap_or_default();
        teams.push((team, leader));
    }
    let statistic = group_buy::statistic(conn, activity.activity_id)?;
    Ok(Some(MarketConfig {
        activity,
        original_cents: price.total_cents,
        pay_cents: price.payable_cents,
        may_join,
        teams,
        my_team: mine,
        statistic,
    }))
}

/// An outside market service says the team formed: whether it has, here, with every order it
/// names among its members (then nothing is left to change). A formed team's paid members are
/// all MARKET or further already, since the payment that filled it moved them.
pub fn confirm_formed(conn: &mut DbConn, notice: &TeamNotice) -> AppResult<bool> {
    let Some(team) = group_buy::find_team(conn, &notice.team_id)? else { return Ok(false) };
    if !matches!(team.status, TeamStatus::Complete | TeamStatus::CompleteFail) {
        return Ok(false);
    }
    let members = group_buy::members(conn, &team.team_id)?;
    Ok(notice.out_trade_no_list.iter().all(|id| members.iter().any(|m| &m.order_id == id)))
}

/// A group order's team as its pages show it.
pub fn team_of(conn: &mut DbConn, order: &Order) -> AppResult<Option<Team>> {
    match &order.team_id {
        Some(team_id) => Ok(group_buy::find_team(conn, team_id)?),
        None => Ok(None),
    }
}

/// Every activity, newest first, for the admin.
pub fn activities(conn: &mut DbConn) -> AppResult<Vec<Activity>> {
    Ok(group_buy::all_activities(conn)?)
}

/// Teams, each with its members.
pub type TeamsWithMembers = Vec<(Team, Vec<Member>)>;

/// An activity and its latest teams with their members, for the admin.
pub fn activity_detail(conn: &mut DbConn, activity_id: i64) -> AppResult<(Activity, TeamsWithMembers)> {
    let activity = group_buy::find_activity(conn, activity_id)?
        .ok_or_else(|| AppError::NotFound(format!("There is no activity {activity_id}.")))?;
    let mut teams = Vec::new();
    for team in group_buy::teams_of_activity(conn, activity_id, 100)? {
        let members = group_buy::members(conn, &team.team_id)?;
        teams.push((team, members));
    }
    Ok((activity, teams))
}

/// The admin creates an activity (born CREATE); its id. The product must exist, and a team must
/// stay open longer than `group_buy.min_join_window_secs`, or no one could ever join it.
pub fn create_activity(conn: &mut DbConn, settings: &Settings, new: &NewActivity) -> AppResult<i64> {
    if i64::from(new.valid_minutes) * 60 <= settings.group_buy.min_join_window_secs as i64 {
        return Err(AppError::BadRequest(format!(
            "A team must stay open longer than {} seconds, or no one could join it.",
            settings.group_buy.min_join_window_secs
        )));
    }
    if crate::models::product::Product::find(conn, new.product_id)?.is_none() {
        return Err(AppError::BadRequest(format!("There is no product {}.", new.product_id)));
    }
    if new.start_at >= new.end_at {
        return Err(AppError::BadRequest("The activity must start before it ends.".into()));
    }
    Ok(group_buy::insert_activity(conn, new)?)
}

/// The admin activates an activity (CREATE -> EFFECTIVE; one per product) or ends one
/// (CREATE|EFFECTIVE -> ABANDONED; its open teams still complete or expire).
pub fn set_activity_status(conn: &mut DbConn, activity_id: i64, to: ActivityStatus) -> AppResult<bool> {
    let from: &[ActivityStatus] = match to {
        ActivityStatus::Effective => &[ActivityStatus::Create],
        _ => &[ActivityStatus::Create, ActivityStatus::Effective],
    };
    match group_buy::set_activity_status(conn, activity_id, from, to) {
        Err(e) if crate::models::is_unique_violation(&e) => {
            Err(AppError::Conflict("The product has an effective activity already; end it first.".into()))
        }
        other => Ok(other?),
    }
}
