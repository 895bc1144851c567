//! The group-buy pages: the product page's group price, 开团购买 and the open teams with
//! 参与拼团; the order page's team; my orders' 待成团; the admin's activities (create, activate,
//! end), an activity's teams with their members, and expiring a team now.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Backend, Browser, MUG, TestApp, both_backends, hidden, order_id_of};

/// The umbrella, ¥89.00; the demo activity 100123 makes it ¥69.00 in a team of 3.
const UMBRELLA: &str = "100010090095";
const ACTIVITY: i64 = 100123;

/// The text of the element whose opening tag ends with `before`.
fn text_after(html: &str, before: &str) -> String {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} in {html}")) + before.len();
    let end = start + html[start..].find('<').expect("closing tag");
    html[start..end].trim().to_owned()
}

/// Presses a group-buy button of the umbrella's page: 开团购买 (no team) or 参与拼团; the
/// checkout page.
fn buy_in_team(browser: &mut Browser, team_id: Option<&str>) -> String {
    let csrf = browser.csrf(&format!("/products/{UMBRELLA}"));
    let activity = ACTIVITY.to_string();
    let mut fields = vec![("csrf", csrf.as_str()), ("activity_id", activity.as_str())];
    if let Some(team_id) = team_id {
        fields.push(("team_id", team_id));
    }
    let page = browser.post_form(&format!("/products/{UMBRELLA}/buy"), &fields);
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
}

/// A group order through the API (`teamId` none: open a team); its page-pay form.
fn group_order(browser: &mut Browser, team_id: Option<&str>) -> String {
    let reply = browser
        .post_json(
            "/api/v1/alipay/create_pay_order",
            &json!({ "productId": UMBRELLA, "marketType": 1, "activityId": ACTIVITY, "teamId": team_id }),
        )
        .json();
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"].as_str().expect("form").to_owned()
}

fn team_of(browser: &mut Browser, order_id: &str) -> String {
    let order = browser.get(&format!("/api/v1/orders/{order_id}")).json();
    order["data"]["teamId"].as_str().expect("teamId").to_owned()
}

/// Waits up to 20 seconds for the order to reach one of `wanted`.
fn wait_for_any(app: &TestApp, browser: &mut Browser, order_id: &str, wanted: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = app.order_status(browser, order_id);
        if wanted.contains(&status.as_str()) {
            return status;
        }
        assert!(Instant::now() < deadline, "order {order_id} stayed {status}, wanted {wanted:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// China time `minutes` from now as the admin form takes it.
fn china_minute(minutes: i64) -> String {
    (chrono::Utc::now().naive_utc() + chrono::Duration::hours(8) + chrono::Duration::minutes(minutes))
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

fn the_product_page_shows_the_group_price_and_the_open_teams(backend: Backend) {
    let app = TestApp::spawn(backend);
    let visitor = app.browser().get(&format!("/products/{UMBRELLA}")).body;
    assert!(visitor.contains("<s class=\"list-price\" id=\"list-price\">¥89.00</s>"), "{visitor}");
    assert_eq!(text_after(&visitor, "id=\"group-price\">"), "¥69.00");
    assert_eq!(text_after(&visitor, "id=\"group-off\">"), "直降 ¥20.00");
    assert!(visitor.contains(">单独购买(¥89.00)</a>"), "{visitor}");
    assert!(visitor.contains(">开团购买(¥69.00)</a>"), "{visitor}");
    assert!(visitor.contains("id=\"no-teams\">小伙伴，赶紧去开团吧</li>"), "{visitor}");
    assert!(visitor.contains("<script src=\"/public/js/countdown.js\"></script>"), "{visitor}");

    let mut leader = app.login("o-gb-leader");
    let page = leader.get(&format!("/products/{UMBRELLA}")).body;
    assert!(page.contains(&format!("name=\"activity_id\" value=\"{ACTIVITY}\"")), "{page}");
    assert!(page.contains("id=\"buy\">单独购买(¥89.00)</button>"), "{page}");
    assert!(page.contains("id=\"open-team\">开团购买(¥69.00)</button>"), "{page}");
    let checkout = buy_in_team(&mut leader, None);
    assert!(checkout.contains("¥69.00"), "{checkout}");
    let order_id = text_after(&checkout, "class=\"order-id\">");
    let team_id = team_of(&mut leader, &order_id);

    // Another shopper sees the team with its seats left, its countdown and 参与拼团.
    let mut joiner = app.login("o-gb-joiner");
    let page = joiner.get(&format!("/products/{UMBRELLA}")).body;
    assert!(!page.contains("小伙伴，赶紧去开团吧"), "{page}");
    assert!(
        page.contains(&format!(
            "id=\"team-{team_id}\" data-team-id=\"{team_id}\" data-team-status=\"PROGRESS\">"
        )),
        "{page}"
    );
    assert!(page.contains("<span class=\"leader\">o-g****</span>"), "{page}");
    assert!(page.contains("<span>组队仅剩2人</span>"), "{page}");
    let secs: i64 = crate::helpers::attribute(&page, "data-secs-left=\"").parse().expect("seconds");
    assert!((29 * 60..=30 * 60).contains(&secs), "{secs}");
    assert!(page.contains(&format!("name=\"team_id\" value=\"{team_id}\"")), "{page}");
    assert!(page.contains(">参与拼团</button>"), "{page}");

    // The leader's own team has no 参与拼团.
    let mine = leader.get(&format!("/products/{UMBRELLA}")).body;
    assert!(
        mine.contains(&format!(
            "data-team-id=\"{team_id}\" data-team-status=\"PROGRESS\" data-mine=\"true\">"
        )),
        "{mine}"
    );
    assert!(!mine.contains("参与拼团"), "{mine}");

    // 参与拼团 places the joiner's order in the team.
    let joined = buy_in_team(&mut joiner, Some(&team_id));
    assert!(joined.contains("¥69.00"), "{joined}");
    let joined_id = text_after(&joined, "class=\"order-id\">");
    assert_eq!(team_of(&mut joiner, &joined_id), team_id);
    let page = app.login("o-gb-third").get(&format!("/products/{UMBRELLA}")).body;
    assert!(page.contains("<span>组队仅剩1人</span>"), "{page}");

    // A product without a group buy keeps its plain Buy.
    let mug = leader.get(&format!("/products/{MUG}")).body;
    assert!(mug.contains("id=\"buy\">立即购买</button>"), "{mug}");
    assert!(!mug.contains("group-buy"), "{mug}");
}

fn the_order_page_shows_the_team_until_it_forms(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut leader = app.login("o-gb-order-1");
    let form = group_order(&mut leader, None);
    let order_id = order_id_of(&form);
    let team_id = team_of(&mut leader, &order_id);

    let page = leader.get(&format!("/orders/{order_id}")).body;
    assert!(
        page.contains(&format!("id=\"team\" data-team-id=\"{team_id}\" data-team-status=\"PROGRESS\">")),
        "{page}"
    );
    assert_eq!(text_after(&page, "id=\"team-paid\">"), "0");
    assert_eq!(text_after(&page, "id=\"team-target\">"), "3");
    assert_eq!(text_after(&page, "id=\"team-state\">"), "拼团中");
    assert!(page.contains("id=\"team-countdown\" class=\"countdown\" data-secs-left=\""), "{page}");

    app.pay_at_cashier(&mut leader, &form);
    app.wait_for_status(&mut leader, &order_id, "PAY_SUCCESS");
    let page = leader.get(&format!("/orders/{order_id}")).body;
    assert_eq!(text_after(&page, "id=\"team-paid\">"), "1");
    assert_eq!(text_after(&page, "data-status=\"PAY_SUCCESS\">"), "待成团");
    let orders = leader.get("/orders").body;
    assert!(
        orders
            .contains("<span class=\"status status-PAY_SUCCESS\" data-status=\"PAY_SUCCESS\">待成团</span>"),
        "{orders}"
    );
    let api = leader.get(&format!("/api/v1/orders/{order_id}")).json();
    assert_eq!(api["data"]["teamState"], "PROGRESS", "{api}");

    for openid in ["o-gb-order-2", "o-gb-order-3"] {
        let mut member = app.login(openid);
        let form = group_order(&mut member, Some(&team_id));
        app.pay_at_cashier(&mut member, &form);
    }
    wait_for_any(&app, &mut leader, &order_id, &["MARKET", "DEAL_DONE"]);
    let page = leader.get(&format!("/orders/{order_id}")).body;
    assert!(page.contains("data-team-status=\"COMPLETE\">"), "{page}");
    assert_eq!(text_after(&page, "id=\"team-paid\">"), "3");
    assert_eq!(text_after(&page, "id=\"team-state\">"), "已成团");
    assert!(page.contains("id=\"team-countdown-line\" hidden>"), "{page}");
}

fn a_shopper_outside_the_crowd_sees_the_buttons_disabled(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut leader = app.login("o-gb-crowd-leader");
    buy_in_team(&mut leader, None);
    app.execute("INSERT INTO crowd_tag (tag_id, name, created_at) VALUES (7, 'vip', CURRENT_TIMESTAMP)");
    app.execute(&format!(
        "UPDATE group_buy_activity SET tag_id = 7, tag_limits_joining = TRUE WHERE activity_id = {ACTIVITY}"
    ));
    let page = app.login("o-gb-outsider").get(&format!("/products/{UMBRELLA}")).body;
    assert!(page.contains("id=\"group-buy-limited\">拼团人群限定，不可参与</p>"), "{page}");
    assert!(page.contains("id=\"open-team\" disabled>开团购买(¥69.00)</button>"), "{page}");
    assert!(page.contains("type=\"submit\" disabled>参与拼团</button>"), "{page}");
    assert!(page.contains("id=\"buy\">单独购买(¥89.00)</button>"), "buying alone stays: {page}");
}

/// The activity form's fields for the mug, ¥5.00 off in teams of 2.
fn mug_activity<'a>(csrf: &'a str, name: &'a str, start: &'a str, end: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("csrf", csrf),
        ("name", name),
        ("product_id", MUG),
        ("plan", "ZJ"),
        ("off", "5"),
        ("target_count", "2"),
        ("valid_minutes", "10"),
        ("take_limit", "1"),
        ("start_at", start),
        ("end_at", end),
    ]
}

/// The message the admin's group-buy page shows after a redirect.
fn message(admin: &mut Browser, location: &str) -> String {
    text_after(&admin.get(location).body, "id=\"group-buy-message\">")
}

fn the_admin_creates_activates_and_ends_activities(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut admin = app.admin();
    let list = admin.get("/admin/group-buy");
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.body.contains("<a href=\"/admin/group-buy\">拼团</a>"), "{}", list.body);
    assert!(
        list.body.contains(&format!("id=\"activity-{ACTIVITY}\" data-status=\"EFFECTIVE\">")),
        "{}",
        list.body
    );
    let csrf = hidden(&list.body, "csrf").to_owned();
    let (start, end) = (china_minute(-1), china_minute(60 * 24));

    // Refused forms say why, and create nothing.
    let mut bad = mug_activity(&csrf, "杯子拼团", &start, &end);
    bad[3] = ("plan", "XX");
    let refused = admin.post_form("/admin/group-buy", &bad);
    assert_eq!(refused.status, 400);
    assert_eq!(text_after(&refused.body, "id=\"group-buy-message\">"), "The plan must be ZJ, MJ, ZK or N.");
    let refused = admin.post_form("/admin/group-buy", &mug_activity(&csrf, "杯子拼团", &start, "tomorrow"));
    assert_eq!(refused.status, 400);
    let refused = admin.post_form("/admin/group-buy", &mug_activity(&csrf, "杯子拼团", &end, &start));
    assert_eq!(
        text_after(&refused.body, "id=\"group-buy-message\">"),
        "The activity must start before it ends."
    );
    let forged = admin.post_form("/admin/group-buy", &mug_activity("forged", "杯子拼团", &start, &end));
    assert_eq!(forged.status, 403);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM group_buy_activity"), 1);

    let created = admin.post_form("/admin/group-buy", &mug_activity(&csrf, "杯子拼团", &start, &end));
    assert_eq!(created.status, 303, "{}", created.body);
    let first = app.scalar("SELECT MAX(activity_id) AS n FROM group_buy_activity");
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(message(&mut admin, &location), format!("Activity {first} created."));
    let second = {
        admin.post_form("/admin/group-buy", &mug_activity(&csrf, "杯子拼团二", &start, &end));
        app.scalar("SELECT MAX(activity_id) AS n FROM group_buy_activity")
    };
    assert_ne!(first, second);

    let activate = |admin: &mut Browser, id: i64, action: &str| {
        let reply = admin.post_form(&format!("/admin/group-buy/{id}/{action}"), &[("csrf", &csrf)]);
        assert_eq!(reply.status, 303, "{}", reply.body);
        message(admin, reply.header("location").unwrap())
    };
    assert_eq!(activate(&mut admin, first, "activate"), format!("Activity {first} is EFFECTIVE."));
    assert!(
        activate(&mut admin, second, "activate").contains("The product has an effective activity already"),
        "one effective activity per product"
    );
    let shopper_page = app.browser().get(&format!("/products/{MUG}")).body;
    assert_eq!(text_after(&shopper_page, "id=\"group-off\">"), "直降 ¥5.00");

    assert_eq!(activate(&mut admin, first, "end"), format!("Activity {first} is ABANDONED."));
    let list = admin.get("/admin/group-buy").body;
    assert!(list.contains(&format!("id=\"activity-{first}\" data-status=\"ABANDONED\">")), "{list}");
    assert!(list.contains(&format!("id=\"activity-{second}\" data-status=\"CREATE\">")), "{list}");
    assert!(!app.browser().get(&format!("/products/{MUG}")).body.contains("group-buy"));
    let forged = admin.post_form(&format!("/admin/group-buy/{second}/activate"), &[("csrf", "forged")]);
    assert_eq!(forged.status, 403);
}

fn the_admin_expires_a_team_now_and_its_paid_member_is_refunded(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut leader = app.login("o-gb-expire-1");
    let form = group_order(&mut leader, None);
    let paid_id = app.pay_at_cashier(&mut leader, &form);
    app.wait_for_status(&mut leader, &paid_id, "PAY_SUCCESS");
    let team_id = team_of(&mut leader, &paid_id);
    let mut joiner = app.login("o-gb-expire-2");
    let unpaid_id = order_id_of(&group_order(&mut joiner, Some(&team_id)));

    let mut admin = app.admin();
    let page = admin.get(&format!("/admin/group-buy/{ACTIVITY}"));
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(&format!("id=\"team-{team_id}\" data-team-status=\"PROGRESS\">")),
        "{}",
        page.body
    );
    for (order_id, status) in [(&paid_id, "PAID"), (&unpaid_id, "LOCKED")] {
        assert!(
            page.body.contains(&format!("<a href=\"/admin/orders/{order_id}\">{order_id}</a>")),
            "{}",
            page.body
        );
        assert!(page.body.contains(&format!("<td class=\"member-status\">{status}</td>")), "{}", page.body);
    }
    let expire = format!("/admin/group-buy/teams/{team_id}/expire");
    assert!(page.body.contains(&format!("action=\"{expire}\"")), "{}", page.body);
    let csrf = hidden(&page.body, "csrf").to_owned();

    // Neither a forged form nor a visitor expires it.
    assert_eq!(admin.post_form(&expire, &[("csrf", "forged")]).status, 403);
    let visitor = app.browser().post_form(&expire, &[("csrf", &csrf)]);
    assert_eq!(visitor.status, 303);
    assert!(
        visitor.header("location").unwrap().starts_with("/admin/login"),
        "{:?}",
        visitor.header("location")
    );
    assert_eq!(app.order_status(&mut leader, &paid_id), "PAY_SUCCESS");

    let activity = ACTIVITY.to_string();
    let done = admin.post_form(&expire, &[("csrf", &csrf), ("activity_id", &activity)]);
    assert_eq!(done.status, 303, "{}", done.body);
    let location = done.header("location").unwrap().to_owned();
    assert!(location.starts_with(&format!("/admin/group-buy/{ACTIVITY}?done=")), "{location}");
    let page = admin.get(&location).body;
    assert_eq!(
        text_after(&page, "id=\"group-buy-message\">"),
        format!("Team {team_id} failed; 1 paid member(s) being refunded.")
    );
    assert!(page.contains(&format!("id=\"team-{team_id}\" data-team-status=\"FAIL\">")), "{page}");
    assert!(!page.contains(&format!("action=\"{expire}\"")), "no expire form on a failed team: {page}");

    assert_eq!(app.order_status(&mut leader, &paid_id), "REFUND_WAIT");
    assert_eq!(app.order_status(&mut joiner, &unpaid_id), "CLOSE");
    let page = leader.get(&format!("/orders/{paid_id}")).body;
    assert_eq!(text_after(&page, "id=\"team-state\">"), "拼团失败·退款中");
    let umbrellas = app.stock(UMBRELLA);
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut leader, &paid_id), "REFUNDED");
    assert_eq!(app.stock(UMBRELLA), umbrellas + 1);
    assert_eq!(app.refunds_at_alipay(&paid_id), 1);
    let order_page = leader.get(&format!("/orders/{paid_id}")).body;
    assert!(order_page.contains("data-team-status=\"FAIL\">"), "{order_page}");
    assert_eq!(text_after(&order_page, "id=\"team-state\">"), "已退款");

    // Again: nothing more to do.
    let again = admin.post_form(&expire, &[("csrf", &csrf), ("activity_id", &activity)]);
    assert_eq!(
        message(&mut admin, again.header("location").unwrap()),
        format!("Team {team_id} is not forming: nothing to expire.")
    );
    assert_eq!(app.refunds_at_alipay(&paid_id), 1);
}

both_backends!(
    the_product_page_shows_the_group_price_and_the_open_teams,
    the_order_page_shows_the_team_until_it_forms,
    a_shopper_outside_the_crowd_sees_the_buttons_disabled,
    the_admin_creates_activates_and_ends_activities,
    the_admin_expires_a_team_now_and_its_paid_member_is_refunded,
);
