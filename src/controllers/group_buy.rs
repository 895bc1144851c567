//! Group buying's API: the product's group-buy configuration for its page
//! (`query_group_buy_market_config`, the original's), the views of teams that order views share,
//! and the original's inbound `group_buy_notify` for an outside market service.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};

use super::identity::MaybeShopper;
use crate::china_time;
use crate::error::{AppError, Envelope};
use crate::models::group_buy::{Team, TeamStatus};
use crate::models::now;
use crate::models::order::OrderStatus;
use crate::money::format_yuan;
use crate::services::group_buy::{self as groups, MarketConfig, TeamNotice};
use crate::state::AppState;

pub fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/gbm/index/query_group_buy_market_config", web::post().to(market_config))
        .route("/v1/alipay/group_buy_notify", web::post().to(group_buy_notify));
}

/// Time left until `end` as `HH:mm:ss`, the hours not wrapped at a day (`49:00:00`), and never
/// below `00:00:00`.
pub fn countdown(end: NaiveDateTime, at: NaiveDateTime) -> String {
    let secs = (end - at).num_seconds().max(0);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A team as the product page and an order show it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamView {
    pub team_id: String,
    pub activity_id: i64,
    /// The leader, masked.
    pub leader: String,
    pub target_count: i32,
    pub lock_count: i32,
    /// Members paid (the original's name).
    pub complete_count: i32,
    pub status: TeamStatus,
    pub valid_start_time: String,
    pub valid_end_time: String,
    pub valid_time_countdown: String,
    /// Seconds left, for pages that tick the countdown.
    pub valid_secs_left: i64,
}

impl TeamView {
    pub fn new(team: &Team, leader: &str, at: NaiveDateTime) -> Self {
        TeamView {
            team_id: team.team_id.clone(),
            activity_id: team.activity_id,
            leader: mask(leader),
            target_count: team.target_count,
            lock_count: team.lock_count,
            complete_count: team.paid_count,
            status: team.status,
            valid_start_time: china_time::format(team.opened_at),
            valid_end_time: china_time::format(team.expires_at),
            valid_time_countdown: countdown(team.expires_at, at),
            valid_secs_left: (team.expires_at - at).num_seconds().max(0),
        }
    }

    /// Whether the team is still forming (its countdown runs).
    pub fn forming(&self) -> bool {
        self.status == TeamStatus::Progress
    }

    /// Seats still free (组队仅剩 N 人).
    pub fn seats_left(&self) -> i32 {
        self.target_count - self.lock_count
    }
}

/// The teams open to join, as the page and the API show them.
fn team_views(config: &MarketConfig, at: NaiveDateTime) -> Vec<TeamView> {
    config.teams.iter().map(|(team, leader)| TeamView::new(team, leader, at)).collect()
}

/// The states a shopper reads a group order's team in (`team-state-…` messages): 拼团中,
/// 已成团, 拼团失败·退款中, and 已退款 once a failed team's refund landed.
pub const TEAM_STATES: [&str; 4] = ["PROGRESS", "COMPLETE", "FAIL", "REFUNDED"];

/// The order's team state, one of [`TEAM_STATES`].
pub fn team_state(team: TeamStatus, order: OrderStatus) -> &'static str {
    match team {
        TeamStatus::Progress => "PROGRESS",
        TeamStatus::Complete | TeamStatus::CompleteFail => "COMPLETE",
        TeamStatus::Fail if order == OrderStatus::Refunded => "REFUNDED",
        TeamStatus::Fail => "FAIL",
    }
}

/// The product page's group buy: the prices, whether the viewer may take part, and the teams
/// open to join (the viewer's own flagged).
pub struct GroupBuyBox {
    pub activity_id: i64,
    pub original_cents: i64,
    pub pay_cents: i64,
    /// 直降: what the group price takes off the list price.
    pub off_cents: i64,
    pub may_join: bool,
    pub teams: Vec<TeamView>,
    pub my_team: Option<String>,
    /// Seats held across the activity's teams (N人再抢).
    pub seats: i64,
}

impl GroupBuyBox {
    pub fn new(config: &MarketConfig, at: NaiveDateTime) -> Self {
        GroupBuyBox {
            activity_id: config.activity.activity_id,
            original_cents: config.original_cents,
            pay_cents: config.pay_cents,
            off_cents: config.original_cents - config.pay_cents,
            may_join: config.may_join,
            teams: team_views(config, at),
            my_team: config.my_team.clone(),
            seats: config.statistic.2,
        }
    }

    pub fn is_mine(&self, team: &TeamView) -> bool {
        self.my_team.as_deref() == Some(team.team_id.as_str())
    }
}

/// An openid as others may see it: its first three characters and `****`.
fn mask(openid: &str) -> String {
    let shown: String = openid.chars().take(3).collect();
    format!("{shown}****")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GoodsView {
    goods_id: String,
    original_price: String,
    deduction_price: String,
    pay_price: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TeamStatisticView {
    all_team_count: i64,
    all_team_complete_count: i64,
    all_team_user_count: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MarketConfigView {
    activity_id: i64,
    goods: GoodsView,
    team_list: Vec<TeamView>,
    team_statistic: TeamStatisticView,
}

impl MarketConfigView {
    fn new(config: &MarketConfig, at: NaiveDateTime) -> Self {
        let (all_team_count, all_team_complete_count, all_team_user_count) = config.statistic;
        MarketConfigView {
            activity_id: config.activity.activity_id,
            goods: GoodsView {
                goods_id: config.activity.product_id.clone(),
                original_price: format_yuan(config.original_cents),
                deduction_price: format_yuan(config.original_cents - config.pay_cents),
                pay_price: format_yuan(config.pay_cents),
            },
            team_list: team_views(config, at),
            team_statistic: TeamStatisticView {
                all_team_count,
                all_team_complete_count,
                all_team_user_count,
            },
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarketConfigQuery {
    goods_id: String,
}

/// The product's group buy as the session's shopper (or a visitor) sees it; E0002 when it has
/// none.
async fn market_config(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    body: web::Json<MarketConfigQuery>,
) -> Result<HttpResponse, AppError> {
    let goods_id = body.into_inner().goods_id;
    let user = shopper.0.map(|s| s.user);
    let settings = state.settings.clone();
    let at = now();
    let config = state
        .engine
        .run(move |conn| groups::market_config(conn, &settings, goods_id.trim(), user.as_ref(), at))
        .await?
        .ok_or(groups::GroupBuyRefusal::NoActivity)?;
    Ok(Envelope::ok(MarketConfigView::new(&config, at)))
}

/// The original's `group_buy_notify` from an outside market service, routed only when
/// `group_buy.inbound_notify_secret` is set: the body must carry its HMAC-SHA256 in
/// `X-Paymall-Signature` (hex). Answers `success` when the team's orders are all formed here (so
/// nothing is left to change), else `error`.
async fn group_buy_notify(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, AppError> {
    let secret = &state.settings.group_buy.inbound_notify_secret;
    if secret.is_empty() {
        return Err(AppError::NotFound("not found".into()));
    }
    let signature = req.headers().get("X-Paymall-Signature").and_then(|v| v.to_str().ok()).unwrap_or("");
    let Ok(notice) = TeamNotice::verify(secret.expose(), &body, signature) else {
        return Ok(HttpResponse::Ok().content_type("text/plain").body("error"));
    };
    let formed = state.engine.run(move |conn| groups::confirm_formed(conn, &notice)).await?;
    Ok(HttpResponse::Ok().content_type("text/plain").body(if formed { "success" } else { "error" }))
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, NaiveDate};

    use super::{countdown, mask};

    #[test]
    fn the_countdown_counts_hours_past_a_day_and_never_below_zero() {
        let at = NaiveDate::from_ymd_opt(2026, 12, 4).unwrap().and_hms_opt(12, 0, 0).unwrap();
        assert_eq!(countdown(at + Duration::hours(49), at), "49:00:00");
        assert_eq!(countdown(at + Duration::seconds(3723), at), "01:02:03");
        assert_eq!(countdown(at - Duration::seconds(5), at), "00:00:00");
    }

    #[test]
    fn a_leader_shows_three_characters() {
        assert_eq!(mask("oTest123"), "oTe****");
        assert_eq!(mask("微信用户"), "微信用****");
    }
}
