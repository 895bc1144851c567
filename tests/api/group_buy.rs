//! Group buying (拼团) through HTTP against the sandbox: teams opened and joined in the order's
//! placing transaction, the last seat raced, payments counted and the one that fills a team
//! delivering every member, teams that expire closing their unpaid members at Alipay and
//! refunding the paid ones (once, on two instances too), late payments refunded, the take limit,
//! and a shopper leaving a forming team.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Browser, GIFT, PaymentPath, TestApp, both_backends, every_payment_path, order_id_of,
};

/// The umbrella, ¥89.00, and its demo activity: 直减 20 -> ¥69.00, a team of 3, one seat each.
const UMBRELLA: &str = "100010090095";
const ACTIVITY: i64 = 100_123;
/// 直减5.
const ZJ_5: i64 = 9003;

/// `create_pay_order` for the umbrella in a group: a new team without `team_id`.
fn group_order(browser: &mut Browser, team_id: Option<&str>) -> Value {
    let mut body = json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY });
    if let Some(team_id) = team_id {
        body["teamId"] = json!(team_id);
    }
    browser.post_json("/api/v1/alipay/create_pay_order", &body).json()
}

/// The form of a group order placed as asked.
fn group_form(browser: &mut Browser, team_id: Option<&str>) -> String {
    let reply = group_order(browser, team_id);
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"].as_str().expect("form").to_owned()
}

/// The order's team, as its owner reads it.
fn team_of(browser: &mut Browser, order_id: &str) -> Value {
    let order = browser.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(order["code"], "0000", "{order}");
    order["data"].clone()
}

/// A team opened by a new shopper, and `members` more joined; the shoppers, their orders and
/// forms, leader first.
fn team(app: &TestApp, name: &str, members: usize) -> (String, Vec<(Browser, String)>) {
    let (team_id, shoppers) = team_with_forms(app, name, members);
    (team_id, shoppers.into_iter().map(|(browser, order_id, _)| (browser, order_id)).collect())
}

fn team_with_forms(app: &TestApp, name: &str, members: usize) -> (String, Vec<(Browser, String, String)>) {
    let mut leader = app.login(&format!("o-{name}-0"));
    let form = group_form(&mut leader, None);
    let order_id = order_id_of(&form);
    let team_id = team_of(&mut leader, &order_id)["teamId"].as_str().expect("teamId").to_owned();
    let mut shoppers = vec![(leader, order_id, form)];
    for i in 1..=members {
        let mut shopper = app.login(&format!("o-{name}-{i}"));
        let form = group_form(&mut shopper, Some(&team_id));
        shoppers.push((shopper, order_id_of(&form), form));
    }
    (team_id, shoppers)
}

/// Alipay's notification of the order's payment of ¥69.00 (trade number `trade`).
fn paid(app: &TestApp, order_id: &str, trade: &str, notify_id: &str) -> Vec<(String, String)> {
    app.signed_notify(
        &[
            ("out_trade_no", order_id),
            ("total_amount", "69.00"),
            ("trade_no", trade),
            ("notify_id", notify_id),
        ],
        false,
    )
}

fn pay(app: &TestApp, order_id: &str, n: usize) {
    let notification = paid(app, order_id, &format!("20261204220014000{n:05}"), &format!("gb-{order_id}"));
    assert_eq!(app.post_notify(&notification), "success");
}

/// Pays the shopper's order at the sandbox's cashier (so Alipay holds the money it may refund)
/// and waits until its notification has been handled.
fn pay_at_cashier(app: &TestApp, shopper: &mut (Browser, String, String)) {
    let (browser, order_id, form) = shopper;
    app.pay_at_cashier(browser, form);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while app.order_status(browser, order_id) == "PAY_WAIT" {
        assert!(std::time::Instant::now() < deadline, "order {order_id} was not notified");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn count(app: &TestApp, sql: &str) -> i64 {
    app.scalar(&format!("SELECT COUNT(*) AS n FROM {sql}"))
}

fn team_row(app: &TestApp, team_id: &str, column: &str) -> i64 {
    app.scalar(&format!(
        "SELECT CAST({column} AS BIGINT) AS n FROM group_buy_team WHERE team_id = '{team_id}'"
    ))
}

fn team_status(app: &TestApp, team_id: &str) -> &'static str {
    ["PROGRESS", "COMPLETE", "FAIL", "COMPLETE_FAIL"]
        .into_iter()
        .find(|s| count(app, &format!("group_buy_team WHERE team_id = '{team_id}' AND status = '{s}'")) == 1)
        .expect("a team status")
}

/// Moves the team's expiry (and its orders' payment windows) into the past.
fn expire_now(app: &TestApp, team_id: &str) {
    app.execute(&format!(
        "UPDATE group_buy_team SET expires_at = '2026-01-01 00:00:00' WHERE team_id = '{team_id}'"
    ));
}

/// The product page's config for a visitor and a shopper; the group price; E0002 without an
/// activity; the countdown never wraps at a day.
fn the_market_config_shows_the_group_price_and_open_teams(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut visitor = app.browser();
    let config = visitor
        .post_json("/api/v1/gbm/index/query_group_buy_market_config", &json!({ "goodsId": UMBRELLA }))
        .json();
    assert_eq!(config["code"], "0000", "{config}");
    assert_eq!(config["data"]["activityId"], ACTIVITY);
    assert_eq!(
        config["data"]["goods"],
        json!({ "goodsId": UMBRELLA, "originalPrice": "89.00", "deductionPrice": "20.00", "payPrice": "69.00" })
    );
    assert_eq!(config["data"]["teamList"], json!([]));

    let (team_id, _) = team(&app, "config", 1);
    let config = visitor
        .post_json("/api/v1/gbm/index/query_group_buy_market_config", &json!({ "goodsId": UMBRELLA }))
        .json();
    let listed = &config["data"]["teamList"][0];
    assert_eq!(listed["teamId"], team_id.as_str(), "{config}");
    assert_eq!(listed["leader"], "o-c****");
    assert_eq!((listed["targetCount"].as_i64(), listed["lockCount"].as_i64()), (Some(3), Some(2)));
    let countdown = listed["validTimeCountdown"].as_str().unwrap();
    assert!(countdown.starts_with("00:29:") || countdown == "00:30:00", "{countdown}");
    assert_eq!(config["data"]["teamStatistic"]["allTeamUserCount"], 2);

    let none = visitor
        .post_json("/api/v1/gbm/index/query_group_buy_market_config", &json!({ "goodsId": "100010090092" }))
        .json();
    assert_eq!(none["code"], "E0002", "{none}");

    let mut shopper = app.login("o-config-trial");
    let trial = shopper
        .post_json(
            "/api/v1/price/trial",
            &json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY, "teamId": team_id }),
        )
        .json();
    assert_eq!(trial["data"]["payableAmount"], "69.00", "{trial}");
    assert_eq!(trial["data"]["appliedDiscounts"][0]["type"], "GROUP_BUY");
}

/// A team of three fills: two payments are counted and deliver nothing; the third forms the
/// team in its transaction, every order MARKET and then delivered, once.
fn a_team_forms_on_its_last_payment_and_delivers_every_member(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let stock = app.stock(UMBRELLA);
    let (team_id, mut shoppers) = team(&app, "forms", 2);
    assert_eq!(app.stock(UMBRELLA), stock - 3);
    assert_eq!((team_row(&app, &team_id, "lock_count"), team_row(&app, &team_id, "paid_count")), (3, 0));
    let (leader, leader_order) = &mut shoppers[0];
    let form_total = team_of(leader, leader_order);
    assert_eq!(form_total["totalAmount"], "69.00");
    assert_eq!(form_total["marketType"], 1);
    assert_eq!(form_total["marketDeductionAmount"], "20.00");

    for (n, (_, order_id)) in shoppers.iter().take(2).enumerate() {
        pay(&app, order_id, n);
    }
    app.worker.tick();
    for (browser, order_id) in shoppers.iter_mut().take(2) {
        let view = team_of(browser, order_id);
        assert_eq!(view["status"], "PAY_SUCCESS", "not delivered while the team forms: {view}");
        assert_eq!(view["teamStatus"], "PROGRESS");
    }
    assert_eq!(count(&app, "shipment"), 0);
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 0, "compensation enqueues no delivery");

    pay(&app, &shoppers[2].1, 2);
    assert_eq!(team_status(&app, &team_id), "COMPLETE");
    assert_eq!(count(&app, "pay_order WHERE status = 'MARKET'"), 3);
    assert_eq!(count(&app, "order_event WHERE to_status = 'MARKET'"), 3);
    app.worker.tick();
    for (browser, order_id) in &mut shoppers {
        let view = team_of(browser, order_id);
        assert_eq!(view["status"], "DEAL_DONE", "{view}");
        assert_eq!(view["teamStatus"], "COMPLETE");
    }
    assert_eq!(count(&app, "shipment"), 3);
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 3);

    // Formed and delivered: the shopper's refund goes through the customer service.
    let (browser, order_id) = &mut shoppers[0];
    let refund = browser.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json();
    assert_eq!(refund["data"]["message"], "请联系客服退款", "{refund}");
    let list = browser.post_json("/api/v1/alipay/query_user_order_list", &json!({ "pageSize": 5 })).json();
    let item = &list["data"]["orderList"][0];
    assert_eq!(
        (&item["marketType"], &item["teamId"], &item["teamStatus"], &item["marketDeductionAmount"]),
        (&json!(1), &json!(team_id), &json!("COMPLETE"), &json!("20.00")),
        "{list}"
    );
}

/// The last two members pay at the same moment, each notification five times, while the
/// compensation query finds the same payments: the team forms once, three orders are delivered
/// once each.
fn the_last_payers_at_once_form_the_team_once(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_with(backend, |s| {
        path.apply(s);
        s.compensation.query_after_secs = 0;
    });
    app.faults(json!({ "drop_notify": true }));
    let (team_id, mut shoppers) = team_with_forms(&app, "race-pay", 2);
    pay(&app, &shoppers[0].1, 0);
    // Both paid at the cashier (their notifications dropped), so the query finds them too.
    for (browser, _, form) in shoppers.iter_mut().skip(1) {
        app.pay_at_cashier(browser, form);
    }
    let forms: Vec<String> = shoppers.iter().skip(1).map(|(_, order_id, _)| order_id.clone()).collect();
    app.execute("UPDATE pay_order SET next_query_at = order_time");
    let start = std::sync::Barrier::new(forms.len() * 5 + 1);
    std::thread::scope(|scope| {
        for (n, order_id) in forms.iter().enumerate() {
            let notification =
                paid(&app, order_id, &format!("202612042200140001{n:04}"), &format!("race-{n}"));
            for _ in 0..5 {
                let (notification, start, app) = (notification.clone(), &start, &app);
                scope.spawn(move || {
                    start.wait();
                    assert_eq!(app.post_notify(&notification), "success");
                });
            }
        }
        let (start, app) = (&start, &app);
        scope.spawn(move || {
            start.wait();
            app.worker.tick();
        });
    });
    app.worker.tick();
    assert_eq!(team_status(&app, &team_id), "COMPLETE");
    assert_eq!(team_row(&app, &team_id, "paid_count"), 3);
    assert_eq!(count(&app, "order_event WHERE to_status = 'MARKET'"), 3, "formed once");
    assert_eq!(count(&app, "pay_order WHERE status = 'DEAL_DONE'"), 3);
    assert_eq!(count(&app, "shipment"), 3);
}

/// The last member paid just before the team expired, but the notification was dropped: the
/// expiry's close at Alipay finds the payment, counts it, and the team forms; nobody is refunded.
fn a_payment_the_expiry_finds_at_alipay_still_forms_the_team(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let (team_id, mut shoppers) = team_with_forms(&app, "found", 2);
    pay(&app, &shoppers[0].1, 0);
    pay(&app, &shoppers[1].1, 1);
    app.faults(json!({ "drop_notify": true }));
    let (browser, order_id, form) = &mut shoppers[2];
    app.pay_at_cashier(browser, form);
    assert_eq!(app.order_status(browser, order_id), "PAY_WAIT", "no notification came");
    // The team expires now, after the payment.
    let now = chrono::Utc::now().naive_utc().format("%Y-%m-%d %H:%M:%S%.6f");
    app.execute(&format!("UPDATE group_buy_team SET expires_at = '{now}' WHERE team_id = '{team_id}'"));
    app.worker.tick();
    assert_eq!(team_status(&app, &team_id), "COMPLETE", "the payment before the expiry counts");
    app.worker.tick();
    assert_eq!(count(&app, "pay_order WHERE status = 'DEAL_DONE'"), 3);
    assert_eq!(count(&app, "pay_order WHERE status = 'REFUND_WAIT' OR status = 'REFUNDED'"), 0);
}

/// Twenty shoppers race for a team's last seat: one order, nineteen E0006 with nothing made.
fn twenty_shoppers_race_for_the_last_seat(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (team_id, _) = team(&app, "seat", 1);
    let stock = app.stock(UMBRELLA);
    let orders = count(&app, "pay_order");
    let racers: Vec<Browser> = (0..20).map(|i| app.login(&format!("o-seat-racer-{i}"))).collect();
    let start = std::sync::Barrier::new(racers.len());
    let replies: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = racers
            .into_iter()
            .map(|mut browser| {
                let (start, team_id) = (&start, team_id.as_str());
                scope.spawn(move || {
                    start.wait();
                    group_order(&mut browser, Some(team_id))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("racer")).collect()
    });
    let codes: Vec<&str> = replies.iter().map(|r| r["code"].as_str().unwrap_or("?")).collect();
    assert_eq!(codes.iter().filter(|c| **c == "0000").count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == "E0006").count(), 19, "{codes:?}");
    assert_eq!(count(&app, "pay_order"), orders + 1);
    assert_eq!(app.stock(UMBRELLA), stock - 1);
    assert_eq!(team_row(&app, &team_id, "lock_count"), 3);
    assert_eq!(count(&app, &format!("group_buy_member WHERE team_id = '{team_id}'")), 3);
    assert_eq!(app.scalar("SELECT CAST(SUM(held) AS BIGINT) AS n FROM group_buy_take"), 3);
}

/// A team expires with two members paid (one with a coupon) and one not: the unpaid order is
/// closed at Alipay and its seat released; the team fails; the paid orders are refunded once
/// each, their stock and coupon back. Running the expiry again changes nothing.
fn an_expired_team_closes_the_unpaid_and_refunds_the_paid(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let stock = app.stock(UMBRELLA);
    let mut leader = app.login("o-expire-0");
    let claimed = leader.post_json("/api/v1/coupons/claim", &json!({ "templateId": ZJ_5 })).json();
    let coupon_id = claimed["data"]["couponId"].as_i64().expect("coupon");
    let reply = leader
        .post_json(
            "/api/v1/alipay/create_pay_order",
            &json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY, "couponId": coupon_id }),
        )
        .json();
    assert_eq!(reply["code"], "0000", "{reply}");
    let form = reply["data"].as_str().unwrap();
    assert!(form.contains("64.00"), "group price less the coupon: {form}");
    let leader_order = order_id_of(form);
    let team_id = team_of(&mut leader, &leader_order)["teamId"].as_str().unwrap().to_owned();
    let mut leader = (leader, leader_order.clone(), form.to_owned());
    let mut second = app.login("o-expire-1");
    let second_form = group_form(&mut second, Some(&team_id));
    let second_order = order_id_of(&second_form);
    let mut second = (second, second_order.clone(), second_form);
    let mut unpaid = app.login("o-expire-2");
    let unpaid_form = group_form(&mut unpaid, Some(&team_id));
    let unpaid_order = order_id_of(&unpaid_form);
    app.open_cashier(&mut unpaid, &unpaid_form);

    pay_at_cashier(&app, &mut leader);
    pay_at_cashier(&app, &mut second);
    assert_eq!(team_row(&app, &team_id, "paid_count"), 2);

    expire_now(&app, &team_id);
    app.worker.tick();
    assert_eq!(team_status(&app, &team_id), "FAIL");
    assert_eq!(app.order_status(&mut unpaid, &unpaid_order), "CLOSE");
    assert_eq!(app.ledger()[&unpaid_order]["status"], "TRADE_CLOSED", "closed at Alipay first");
    assert_eq!(
        count(&app, &format!("group_buy_member WHERE order_id = '{unpaid_order}' AND status = 'RELEASED'")),
        1
    );
    for (browser, order_id, _) in [&mut leader, &mut second] {
        assert_eq!(app.order_status(browser, order_id), "REFUNDED");
        assert_eq!(app.refunds_at_alipay(order_id), 1);
        assert_eq!(team_of(browser, order_id)["teamStatus"], "FAIL");
    }
    assert_eq!(count(&app, "group_buy_member WHERE status = 'REFUNDED'"), 2);
    assert_eq!(app.stock(UMBRELLA), stock, "every unit back");
    assert_eq!(
        count(&app, &format!("user_coupon WHERE coupon_id = {coupon_id} AND status = 'AVAILABLE'")),
        1
    );
    assert_eq!(app.scalar("SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) AS n FROM group_buy_take"), 0);

    app.worker.tick();
    for order_id in [&leader_order, &second_order] {
        assert_eq!(app.refunds_at_alipay(order_id), 1, "refunded once");
    }
    assert_eq!(count(&app, "order_event WHERE to_status = 'REFUND_WAIT'"), 2);
}

/// A payment for a team that has expired is refunded, not counted; so is one that arrives
/// after the team failed and the order was closed.
fn a_payment_too_late_for_its_team_is_refunded(backend: Backend, path: PaymentPath) {
    let app = TestApp::spawn_paying(backend, path);
    let stock = app.stock(UMBRELLA);
    let (team_id, mut shoppers) = team_with_forms(&app, "late", 1);
    // The cashier pays now, after this expiry.
    expire_now(&app, &team_id);
    pay_at_cashier(&app, &mut shoppers[0]);
    let (browser, order_id, _) = &mut shoppers[0];
    assert_eq!(app.order_status(browser, order_id), "REFUND_WAIT");
    assert_eq!(team_row(&app, &team_id, "paid_count"), 0);
    assert_eq!(team_row(&app, &team_id, "lock_count"), 1);

    app.worker.tick();
    assert_eq!(app.order_status(browser, order_id), "REFUNDED");
    assert_eq!(app.refunds_at_alipay(order_id), 1);
    assert_eq!(
        count(&app, &format!("group_buy_member WHERE order_id = '{order_id}' AND status = 'REFUNDED'")),
        1
    );
    assert_eq!(team_status(&app, &team_id), "FAIL");
    let (browser, order_id, _) = &mut shoppers[1];
    assert_eq!(app.order_status(browser, order_id), "CLOSE", "the unpaid member closed");
    pay(&app, order_id, 1);
    assert_eq!(
        app.order_status(browser, order_id),
        "REFUND_WAIT",
        "paid after close: refunded, not honoured"
    );
    assert_eq!(app.stock(UMBRELLA), stock, "the close put its unit back; the refund takes none");
}

/// A take limit of one: five joins at once by one shopper give one seat; with it paid, another
/// team is refused E0103; after a release the shopper may join again.
fn the_take_limit_holds_against_joins_at_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let teams: Vec<String> = (0..5).map(|i| team(&app, &format!("take{i}"), 0).0).collect();
    let shopper = app.login("o-take");
    let start = std::sync::Barrier::new(teams.len());
    let replies: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = teams
            .iter()
            .map(|team_id| {
                let (mut browser, start) = (app.browser(), &start);
                browser.cookies = shopper.cookies.clone();
                scope.spawn(move || {
                    start.wait();
                    group_order(&mut browser, Some(team_id))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("joiner")).collect()
    });
    // Each join makes the seat, or finds the shopper's one open order for the umbrella.
    assert!(replies.iter().all(|r| r["code"] == "0000"), "{replies:?}");
    let user = "(SELECT user_id FROM app_user WHERE openid = 'o-take')";
    assert_eq!(count(&app, &format!("group_buy_member WHERE user_id = {user}")), 1);
    assert_eq!(
        app.scalar(&format!("SELECT CAST(held AS BIGINT) AS n FROM group_buy_take WHERE user_id = {user}")),
        1
    );
    let order_id = order_id_of(replies[0]["data"].as_str().unwrap());
    pay(&app, &order_id, 0);
    let mut shopper = shopper;
    let joined = team_of(&mut shopper, &order_id)["teamId"].as_str().unwrap().to_owned();
    let other = teams.iter().find(|t| **t != joined).unwrap();
    assert_eq!(group_order(&mut shopper, Some(other))["code"], "E0103");

    // Leaving the team (refunded) gives the take back.
    let left = shopper.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json();
    assert_eq!(left["data"]["message"], "退款中", "{left}");
    assert_eq!(group_order(&mut shopper, Some(other))["code"], "0000");
}

/// A paid member leaves a forming team: refunded once, the seat free for another shopper.
fn a_member_leaving_a_forming_team_frees_the_seat(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (team_id, mut shoppers) = team_with_forms(&app, "leave", 2);
    pay(&app, &shoppers[0].1, 0);
    pay_at_cashier(&app, &mut shoppers[1]);
    assert_eq!(group_order(&mut app.login("o-leave-full"), Some(&team_id))["code"], "E0006");

    let (browser, order_id, _) = &mut shoppers[1];
    let left = browser.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json();
    assert_eq!(left["data"], json!({ "success": true, "message": "退款中", "orderId": order_id }));
    assert_eq!((team_row(&app, &team_id, "lock_count"), team_row(&app, &team_id, "paid_count")), (2, 1));
    // Asked again, at once from several tabs: the same answer, and still one refund.
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..5)
            .map(|_| {
                let mut tab = app.browser();
                tab.cookies = browser.cookies.clone();
                let order_id = order_id.clone();
                scope.spawn(move || {
                    tab.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("tab")).collect()
    });
    assert!(answers.iter().all(|a| a["data"]["message"] == "退款中"), "{answers:?}");
    app.worker.tick();
    assert_eq!(app.order_status(browser, order_id), "REFUNDED");
    assert_eq!(app.refunds_at_alipay(order_id), 1);

    let mut newcomer = app.login("o-leave-new");
    let joined = order_id_of(&group_form(&mut newcomer, Some(&team_id)));
    pay(&app, &joined, 2);
    pay(&app, &shoppers[2].1, 3);
    assert_eq!(team_status(&app, &team_id), "COMPLETE");
    assert_eq!(count(&app, "pay_order WHERE status = 'MARKET'"), 3);
}

/// Two instances expire the same teams at once: each paid member is refunded once.
fn two_instances_expiring_at_once_refund_each_member_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let sibling = app.spawn_sibling();
    let mut paid_orders = Vec::new();
    let mut team_ids = Vec::new();
    for t in 0..3 {
        let (team_id, shoppers) = team_with_forms(&app, &format!("two{t}"), 1);
        for mut shopper in shoppers {
            pay_at_cashier(&app, &mut shopper);
            paid_orders.push(shopper.1);
        }
        expire_now(&app, &team_id);
        team_ids.push(team_id);
    }
    std::thread::scope(|scope| {
        scope.spawn(|| app.worker.tick());
        scope.spawn(|| sibling.worker.tick());
    });
    app.worker.tick();
    sibling.worker.tick();
    for team_id in &team_ids {
        assert_eq!(team_status(&app, team_id), "FAIL");
    }
    for order_id in &paid_orders {
        assert_eq!(app.refunds_at_alipay(order_id), 1, "{order_id} refunded once");
    }
    assert_eq!(count(&app, "pay_order WHERE status = 'REFUNDED'"), paid_orders.len() as i64);
}

/// The compatible `group_buy_notify` is not routed without its key; with it, only a signed
/// notice of a team formed here is `success`.
fn the_outside_team_notice_needs_its_key_and_a_formed_team(backend: Backend) {
    let unrouted = TestApp::spawn(backend);
    let reply = unrouted.browser().post_raw("/api/v1/alipay/group_buy_notify", "application/json", b"{}");
    assert_eq!(reply.status, 404);

    let app = TestApp::spawn_with(backend, |s| {
        s.group_buy.inbound_notify_secret = paymall::config::Secret::new("market-key");
    });
    let (team_id, shoppers) = team(&app, "notice", 2);
    let ids: Vec<&str> = shoppers.iter().map(|(_, id)| id.as_str()).collect();
    let body = json!({ "teamId": team_id, "outTradeNoList": ids }).to_string();
    let signature = paymall::gateways::market::hmac_sha256_hex(b"market-key", body.as_bytes()).unwrap();
    let notify = |signature: &str| {
        app.browser()
            .with_header("X-Paymall-Signature", signature)
            .post_raw("/api/v1/alipay/group_buy_notify", "application/json", body.as_bytes())
            .body
    };
    assert_eq!(notify("00"), "error", "a wrong signature");
    assert_eq!(notify(&signature), "error", "the team has not formed");
    for (n, order_id) in ids.iter().enumerate() {
        pay(&app, order_id, n);
    }
    assert_eq!(notify(&signature), "success");
    assert_eq!(count(&app, "pay_order WHERE status = 'MARKET'"), 3, "nothing more changed");
}

/// A member who cancels before paying gives the seat and the take back and may join again; a
/// team whose last seat is given back fails.
fn a_cancelled_member_frees_the_seat_and_may_join_again(backend: Backend) {
    let app = TestApp::spawn(backend);
    let stock = app.stock(UMBRELLA);
    let (team_id, mut shoppers) = team(&app, "cancel", 1);
    let (browser, order_id) = &mut shoppers[1];
    let cancelled = browser.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": order_id })).json();
    assert_eq!(cancelled["data"]["message"], "订单已取消", "{cancelled}");
    assert_eq!(team_row(&app, &team_id, "lock_count"), 1);
    assert_eq!(count(&app, "group_buy_member WHERE status = 'RELEASED'"), 1);
    let again = group_order(browser, Some(&team_id));
    assert_eq!(again["code"], "0000", "the take came back: {again}");
    assert_eq!(team_row(&app, &team_id, "lock_count"), 2);

    let (leader, leader_order) = &mut shoppers[0];
    leader.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": leader_order }));
    let (browser, _) = &mut shoppers[1];
    let second = order_id_of(again["data"].as_str().unwrap());
    browser.post_json("/api/v1/alipay/refund_order", &json!({ "orderId": second }));
    assert_eq!(team_status(&app, &team_id), "FAIL", "no seat held");
    assert_eq!(app.stock(UMBRELLA), stock);
    assert_eq!(app.scalar("SELECT CAST(COALESCE(SUM(held), 0) AS BIGINT) AS n FROM group_buy_take"), 0);
}

/// A team about to expire takes no one (E0006); a shopper already in a team may not join it
/// again (E0005); a team of another activity or none is refused; `marketType` 1 needs its
/// activity.
fn a_team_is_joined_only_while_it_may_be(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (team_id, shoppers) = team(&app, "join", 0);
    pay(&app, &shoppers[0].1, 0);
    let mut leader = app.login("o-join-0");
    assert_eq!(group_order(&mut leader, Some(&team_id))["code"], "E0005");
    let mut stranger = app.login("o-join-stranger");
    assert_eq!(group_order(&mut stranger, Some("0000000000"))["code"], "E0006");
    let no_activity = stranger
        .post_json(
            "/api/v1/alipay/create_pay_order",
            &json!({ "productId": "100010090092", "marketType": 1, "activityId": ACTIVITY }),
        )
        .json();
    assert_eq!(no_activity["code"], "E0002");
    let missing = stranger
        .post_json("/api/v1/alipay/create_pay_order", &json!({ "productId": UMBRELLA, "marketType": 1 }))
        .json();
    assert_eq!(missing["code"], "0002");
    app.execute(&format!("UPDATE group_buy_team SET expires_at = opened_at WHERE team_id = '{team_id}'"));
    assert_eq!(group_order(&mut stranger, Some(&team_id))["code"], "E0006", "ending: no time to pay");
    assert_eq!(count(&app, "pay_order"), 1, "nothing placed");
}

/// Crowds: a joining limit refuses outsiders (E0007), a visibility limit hides the activity, a
/// crowd-only discount leaves outsiders the list price.
fn a_crowd_limits_who_joins_sees_or_saves(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut insider = app.login("o-crowd-in");
    let mut outsider = app.login("o-crowd-out");
    app.execute("INSERT INTO crowd_tag (tag_id, name, created_at) VALUES (7, 'VIP', '2026-01-01 00:00:00')");
    app.execute(
        "INSERT INTO crowd_tag_member (tag_id, user_id) SELECT 7, user_id FROM app_user WHERE openid = 'o-crowd-in'",
    );
    let config = |browser: &mut Browser| {
        browser
            .post_json("/api/v1/gbm/index/query_group_buy_market_config", &json!({ "goodsId": UMBRELLA }))
            .json()
    };
    let trial = |browser: &mut Browser| {
        let body = json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY });
        browser.post_json("/api/v1/price/trial", &body).json()
    };

    app.execute(&format!(
        "UPDATE group_buy_activity SET tag_id = 7, tag_limits_joining = TRUE WHERE activity_id = {ACTIVITY}"
    ));
    assert_eq!(group_order(&mut outsider, None)["code"], "E0007");
    assert_eq!(config(&mut outsider)["code"], "0000", "still seen");
    assert_eq!(group_order(&mut insider, None)["code"], "0000");

    app.execute(&format!(
        "UPDATE group_buy_activity SET tag_limits_joining = FALSE, tag_limits_visibility = TRUE WHERE activity_id = {ACTIVITY}"
    ));
    assert_eq!(config(&mut outsider)["code"], "E0002");
    assert_eq!(config(&mut app.browser())["code"], "E0002", "a visitor is outside every crowd");
    assert_eq!(config(&mut insider)["code"], "0000");

    app.execute(&format!(
        "UPDATE group_buy_activity SET tag_limits_visibility = FALSE, discount_tag_only = TRUE WHERE activity_id = {ACTIVITY}"
    ));
    assert_eq!(trial(&mut outsider)["data"]["payableAmount"], "89.00");
    assert_eq!(trial(&mut insider)["data"]["payableAmount"], "69.00");
}

/// The admin refunds a member of a formed team: the team turns COMPLETE_FAIL, and FAIL once no
/// paid member is left.
fn an_admin_refund_after_forming_marks_the_team(backend: Backend) {
    let app = TestApp::spawn(backend);
    let (team_id, mut shoppers) = team_with_forms(&app, "admin", 2);
    for shopper in &mut shoppers {
        pay_at_cashier(&app, shopper);
    }
    app.worker.tick();
    assert_eq!(count(&app, "pay_order WHERE status = 'DEAL_DONE'"), 3);
    let mut admin = app.admin();
    let csrf = admin.csrf("/admin");
    let refund = |admin: &mut Browser, order_id: &str| {
        assert_eq!(
            admin.post_form(&format!("/admin/orders/{order_id}/refund"), &[("csrf", &csrf)]).status,
            303
        );
    };
    refund(&mut admin, &shoppers[0].1);
    assert_eq!(team_status(&app, &team_id), "COMPLETE_FAIL");
    assert_eq!(team_row(&app, &team_id, "paid_count"), 2);
    refund(&mut admin, &shoppers[1].1);
    refund(&mut admin, &shoppers[2].1);
    assert_eq!(team_status(&app, &team_id), "FAIL", "no paid member left");
    app.worker.tick();
    assert_eq!(count(&app, "pay_order WHERE status = 'REFUNDED'"), 3);
    assert_eq!(count(&app, "group_buy_member WHERE status = 'REFUNDED' AND refund_type = 'paid_formed'"), 3);
}

/// A coupon that takes nothing off the group price (already one cent) is not spent.
/// The admin ends the activity while a group order is being opened at WeChat Pay (which answers
/// slowly): the order, priced while the activity was on, is refused when it is placed (E0101),
/// and nothing of it stays: no order, team, seat or take, the stock as it was.
fn an_activity_ended_while_its_order_is_opened_places_nothing(backend: Backend) {
    let app = TestApp::spawn(backend);
    let stock = app.stock(UMBRELLA);
    app.wechat_faults(json!({ "order_delay_ms": 1500 }));
    let mut shopper = app.login("o-gb-ended");
    let body =
        json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY, "tradeType": "NATIVE" });
    let reply = std::thread::scope(|s| {
        let ordering = s.spawn(|| app.wechat_order(&mut shopper, &body));
        let deadline = Instant::now() + Duration::from_secs(20);
        while app.browser().get("/sandbox/wechatpay/ledger").json()["trades"].as_array().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the order was not opened at WeChat Pay");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut admin = app.admin();
        let csrf = admin.csrf("/admin/group-buy");
        let ended = admin.post_form(&format!("/admin/group-buy/{ACTIVITY}/end"), &[("csrf", &csrf)]);
        assert_eq!(ended.status, 303, "{}", ended.body);
        ordering.join().unwrap()
    });
    assert_eq!(reply["code"], "E0101", "{reply}");
    assert_eq!(count(&app, "pay_order"), 0);
    assert_eq!(count(&app, "group_buy_team"), 0);
    assert_eq!(count(&app, "group_buy_member"), 0);
    assert_eq!(count(&app, "group_buy_take WHERE held > 0"), 0);
    assert_eq!(app.stock(UMBRELLA), stock);
}

fn a_coupon_that_takes_nothing_off_stays_available(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.execute(&format!(
        "UPDATE group_buy_activity SET plan = 'N', n_price_cents = 1 WHERE activity_id = {ACTIVITY}"
    ));
    let mut shopper = app.login("o-cent");
    let claimed = shopper.post_json("/api/v1/coupons/claim", &json!({ "templateId": ZJ_5 })).json();
    let coupon_id = claimed["data"]["couponId"].as_i64().expect("coupon");
    let reply = shopper
        .post_json(
            "/api/v1/alipay/create_pay_order",
            &json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY, "couponId": coupon_id }),
        )
        .json();
    assert_eq!(reply["code"], "0000", "{reply}");
    let order_id = order_id_of(reply["data"].as_str().unwrap());
    assert_eq!(team_of(&mut shopper, &order_id)["totalAmount"], "0.01");
    assert_eq!(
        count(&app, &format!("user_coupon WHERE coupon_id = {coupon_id} AND status = 'AVAILABLE'")),
        1
    );
    assert_eq!(count(&app, "order_discount WHERE discount_type = 'COUPON'"), 0);
}

/// A paid order whose delivery was never enqueued (a step lost) gets one from the background
/// thread and is delivered, bought alone or in a team that formed; a paid member of a team still
/// forming gets none: it waits for its team.
fn a_paid_order_left_without_its_delivery_gets_one_and_a_forming_team_waits(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut alone = app.login("o-stranded-alone");
    let alone_order = order_id_of(&app.create_order(&mut alone, GIFT));
    let notification = app.signed_notify(&[("out_trade_no", &alone_order), ("notify_id", "stranded")], false);
    assert_eq!(app.post_notify(&notification), "success");
    let (_, mut formed) = team(&app, "stranded-formed", 2);
    for (n, (_, order_id)) in formed.iter().enumerate() {
        pay(&app, order_id, n);
    }
    let (forming_team, forming) = team(&app, "stranded-forming", 2);
    pay(&app, &forming[0].1, 3);
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 4);

    app.execute("DELETE FROM outbox WHERE kind = 'delivery'");
    app.worker.tick();
    assert_eq!(app.order_status(&mut alone, &alone_order), "DEAL_DONE");
    for (browser, order_id) in &mut formed {
        assert_eq!(app.order_status(browser, order_id), "DEAL_DONE");
    }
    assert_eq!(count(&app, "shipment"), 4);
    assert_eq!(count(&app, "outbox WHERE kind = 'delivery'"), 4, "one each, enqueued again");
    assert_eq!(
        count(&app, &format!("pay_order WHERE order_id = '{}' AND status = 'PAY_SUCCESS'", forming[0].1)),
        1
    );
    assert_eq!(team_status(&app, &forming_team), "PROGRESS");
    app.worker.tick();
    assert_eq!(count(&app, "shipment"), 4, "delivered once");
}

both_backends!(
    a_paid_order_left_without_its_delivery_gets_one_and_a_forming_team_waits,
    a_coupon_that_takes_nothing_off_stays_available,
    an_activity_ended_while_its_order_is_opened_places_nothing,
    a_cancelled_member_frees_the_seat_and_may_join_again,
    a_team_is_joined_only_while_it_may_be,
    a_crowd_limits_who_joins_sees_or_saves,
    an_admin_refund_after_forming_marks_the_team,
    the_market_config_shows_the_group_price_and_open_teams,
    twenty_shoppers_race_for_the_last_seat,
    the_take_limit_holds_against_joins_at_once,
    a_member_leaving_a_forming_team_frees_the_seat,
    two_instances_expiring_at_once_refund_each_member_once,
    the_outside_team_notice_needs_its_key_and_a_formed_team
);
every_payment_path!(
    a_team_forms_on_its_last_payment_and_delivers_every_member,
    a_payment_the_expiry_finds_at_alipay_still_forms_the_team,
    the_last_payers_at_once_form_the_team_once,
    an_expired_team_closes_the_unpaid_and_refunds_the_paid,
    a_payment_too_late_for_its_team_is_refunded
);
