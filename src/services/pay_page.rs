//! The order's pay page (`/orders/{id}/pay`): the link the guide inside WeChat gives the shopper
//! to open in the phone's browser, where Alipay's cashier opens. An open order goes through the
//! checkout again ([`order::checkout`]): its signed form while it is valid, or, once expired, a
//! new order for the same product, coupon and team that replaces it.

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Engine;
use crate::error::{AppError, AppResult};
use crate::gateways::alipay::{AlipayClient, Cashier};
use crate::models::order_discount::DiscountType;
use crate::models::user::AppUser;
use crate::services::group_buy::GroupBuyPick;
use crate::services::order::{self, OrderNumbers, OrderToPay, Purchase};
use crate::services::{order_history, session};

/// What the pay page shows.
pub enum PayPage {
    /// The order (or the one that replaced it) with its form.
    Pay(AppUser, OrderToPay),
    /// The order is no longer waiting for a payment: its own page says what it is.
    Settled,
}

/// The pay page of the order `order_id` of the shopper behind the session `token` (anybody
/// else's order is "not found"; [`AppError::NotLoggedIn`] without a live session). A new form is
/// signed for `cashier`; a valid stored form is handed out as it was signed.
pub async fn open(
    engine: &Engine,
    settings: &Arc<Settings>,
    alipay: &Arc<AlipayClient>,
    numbers: &OrderNumbers,
    token: String,
    order_id: String,
    cashier: Cashier,
) -> AppResult<PayPage> {
    let lookup = token.clone();
    let priced = engine
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
    let purchase = Purchase { product_id: priced.order.product_id, coupon_id, group_buy, cashier };
    let (user, to_pay) = order::checkout(engine, settings, alipay, numbers, token, purchase).await?;
    Ok(PayPage::Pay(user, to_pay))
}
