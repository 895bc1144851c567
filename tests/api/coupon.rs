//! Coupons through HTTP: claiming (quota and per-user limit, also under concurrency), the
//! shopper's list, the price trial and its refusals, the lifecycle's conditional steps, the
//! 领券中心 page and the admin's templates.

use paymall::models::coupon;
use paymall::models::now;
use serde_json::{Value, json};

use crate::helpers::{Backend, Browser, GIFT, MUG, TestApp, both_backends, hidden};

/// The seeded green tea, ¥58.00, the only product in the scope of template 9002.
const TEA: &str = "100010090092";
/// The seeded umbrella, ¥89.00.
const UMBRELLA: &str = "100010090095";

fn claim(browser: &mut Browser, template_id: i64) -> Value {
    browser.post_json("/api/v1/coupons/claim", &json!({ "templateId": template_id })).json()
}

/// Claims a coupon of the template and returns its id.
fn claimed(browser: &mut Browser, template_id: i64) -> i64 {
    let reply = claim(browser, template_id);
    assert_eq!(reply["code"], "0000", "{reply}");
    reply["data"]["couponId"].as_i64().expect("couponId")
}

fn trial(browser: &mut Browser, product_id: &str, coupon_id: Option<i64>) -> Value {
    let mut body = json!({ "productId": product_id });
    if let Some(id) = coupon_id {
        body["couponId"] = json!(id);
    }
    browser.post_json("/api/v1/price/trial", &body).json()
}

fn refused_with(reply: &Value, code: &str, info: &str) {
    assert_eq!(reply["code"], code, "{reply}");
    assert_eq!(reply["info"], info, "{reply}");
    assert!(reply["data"].is_null(), "{reply}");
}

fn claims_keep_to_the_per_user_limit(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-claimer");

    let first = claim(&mut shopper, 9001);
    assert_eq!(first["code"], "0000", "{first}");
    assert_eq!(first["data"]["status"], "AVAILABLE");
    assert!(!first["data"]["code"].as_str().unwrap().is_empty());
    let again = shopper.post_json("/api/v1/coupons/claim", &json!({ "templateId": 9001 }));
    assert_eq!(again.status, 409);
    refused_with(&again.json(), "C0006", "已达领取上限");

    for _ in 0..3 {
        claimed(&mut shopper, 9003);
    }
    refused_with(&claim(&mut shopper, 9003), "C0006", "已达领取上限");
    refused_with(&claim(&mut shopper, 424242), "C0001", "优惠券不存在");
    assert_eq!(app.scalar("SELECT issued_count AS n FROM coupon_template WHERE template_id = 9003"), 3);
    assert_eq!(app.scalar("SELECT issued_count AS n FROM coupon_template WHERE template_id = 9001"), 1);

    // Another shopper has a limit of their own.
    claimed(&mut app.login("o-other"), 9001);

    // Identity comes from the session only.
    assert_eq!(claim(&mut app.browser(), 9001)["code"], "0003");
    assert_eq!(app.browser().get("/api/v1/coupons").json()["code"], "0003");

    let list = shopper.get("/api/v1/coupons").json();
    assert_eq!(list["code"], "0000");
    let coupons = list["data"].as_array().unwrap();
    assert_eq!(coupons.len(), 4);
    let mj = coupons.iter().find(|c| c["templateId"] == 9001).unwrap();
    assert_eq!(mj["couponId"], first["data"]["couponId"]);
    assert_eq!(mj["code"], first["data"]["code"]);
    assert_eq!(mj["name"], "满50减10");
    assert_eq!(mj["type"], "MJ");
    assert_eq!(mj["rule"], "满50减10");
    assert_eq!(mj["threshold"], "50.00");
    assert_eq!(mj["off"], "10.00");
    assert!(mj["rate"].is_null());
    assert_eq!(mj["scope"], "ALL");
    assert_eq!(mj["status"], "AVAILABLE");
    assert!(mj["lockedOrderId"].is_null() && mj["usedOrderId"].is_null());
    assert!(mj["validUntil"].as_str().unwrap() > mj["validFrom"].as_str().unwrap());

    let zk_id = claimed(&mut shopper, 9002);
    let list = shopper.get("/api/v1/coupons?status=AVAILABLE").json();
    let zk = list["data"].as_array().unwrap().iter().find(|c| c["couponId"] == zk_id).unwrap().clone();
    assert_eq!(
        (zk["type"].as_str(), zk["rate"].as_str(), zk["maxOff"].as_str()),
        (Some("ZK"), Some("0.80"), Some("20.00"))
    );
    assert_eq!(zk["rule"], "8折 最多减20");
    assert_eq!(zk["scope"], "PRODUCTS");
    assert_eq!(zk["productIds"], json!([TEA]));
    assert_eq!(shopper.get("/api/v1/coupons?status=USED").json()["data"], json!([]));
}

fn fifty_shoppers_claiming_the_last_ten_get_exactly_ten(backend: Backend) {
    let app = TestApp::spawn(backend);
    app.execute("UPDATE coupon_template SET issued_count = total_quota - 10 WHERE template_id = 9003");
    let shoppers: Vec<Browser> = (0..50).map(|i| app.login(&format!("o-race-{i}"))).collect();
    let codes: Vec<String> = std::thread::scope(|scope| {
        let claims: Vec<_> = shoppers
            .into_iter()
            .map(|mut shopper| {
                scope.spawn(move || claim(&mut shopper, 9003)["code"].as_str().unwrap().to_owned())
            })
            .collect();
        claims.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| *c == "0000").count(), 10, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "C0007").count(), 40, "{codes:?}");
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM user_coupon WHERE template_id = 9003"), 10);
    assert_eq!(
        app.scalar("SELECT total_quota - issued_count AS n FROM coupon_template WHERE template_id = 9003"),
        0
    );
    refused_with(&claim(&mut app.login("o-late"), 9003), "C0007", "优惠券已领完");
}

fn one_shopper_claiming_at_once_keeps_to_the_limit(backend: Backend) {
    let app = TestApp::spawn(backend);
    let codes: Vec<String> = std::thread::scope(|scope| {
        let claims: Vec<_> = (0..12)
            .map(|_| {
                let mut tab = app.login("o-eager");
                scope.spawn(move || claim(&mut tab, 9003)["code"].as_str().unwrap().to_owned())
            })
            .collect();
        claims.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert_eq!(codes.iter().filter(|c| *c == "0000").count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| *c == "C0006").count(), 9, "{codes:?}");
    assert_eq!(app.scalar("SELECT issued_count AS n FROM coupon_template WHERE template_id = 9003"), 3);
}

fn the_trial_prices_with_a_coupon_or_says_why_not(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-trial");

    // Without a coupon, for anyone.
    let plain = trial(&mut app.browser(), GIFT, None);
    assert_eq!(plain["code"], "0000", "{plain}");
    assert_eq!(
        plain["data"],
        json!({"totalAmount": "1.68", "discountAmount": "0.00", "payableAmount": "1.68", "appliedDiscounts": []})
    );
    assert_eq!(trial(&mut app.browser(), "nope", None)["code"], "0001");
    // A coupon needs the session.
    assert_eq!(trial(&mut app.browser(), UMBRELLA, Some(1))["code"], "0003");

    let mj = claimed(&mut shopper, 9001);
    let priced = trial(&mut shopper, UMBRELLA, Some(mj));
    assert_eq!(priced["code"], "0000", "{priced}");
    assert_eq!(
        priced["data"],
        json!({"totalAmount": "89.00", "discountAmount": "10.00", "payableAmount": "79.00",
               "appliedDiscounts": [{"type": "COUPON", "refId": mj.to_string(), "name": "满50减10", "amount": "10.00"}]})
    );
    let zk = claimed(&mut shopper, 9002);
    let tea = trial(&mut shopper, TEA, Some(zk));
    assert_eq!(
        (tea["data"]["discountAmount"].as_str(), tea["data"]["payableAmount"].as_str()),
        (Some("11.60"), Some("46.40"))
    );
    let zj = claimed(&mut shopper, 9003);
    let gift = trial(&mut shopper, GIFT, Some(zj));
    assert_eq!(
        (gift["data"]["discountAmount"].as_str(), gift["data"]["payableAmount"].as_str()),
        (Some("1.67"), Some("0.01"))
    );

    refused_with(&trial(&mut shopper, UMBRELLA, Some(999_999)), "C0001", "优惠券不存在");
    refused_with(&trial(&mut app.login("o-not-mine"), UMBRELLA, Some(mj)), "C0001", "优惠券不存在");
    refused_with(&trial(&mut shopper, MUG, Some(mj)), "C0004", "未满足使用门槛");
    refused_with(&trial(&mut shopper, MUG, Some(zk)), "C0005", "该商品不可用此券");

    app.execute(&format!(
        "UPDATE user_coupon SET valid_until = '2020-01-01 00:00:00' WHERE coupon_id = {zj}"
    ));
    refused_with(&trial(&mut shopper, GIFT, Some(zj)), "C0003", "优惠券不在有效期内");
    let expired = shopper.get("/api/v1/coupons?status=EXPIRED").json();
    assert_eq!(expired["data"][0]["couponId"], zj, "an available coupon past its window reads as expired");

    assert!(coupon::lock(mj, user_id(&app, "o-trial"), "O-1", now()).apply(&mut app.db.connect()).unwrap());
    let reply = shopper.post_json("/api/v1/price/trial", &json!({"productId": UMBRELLA, "couponId": mj}));
    assert_eq!(reply.status, 409);
    refused_with(&reply.json(), "C0002", "优惠券不可用");
}

fn user_id(app: &TestApp, openid: &str) -> i64 {
    app.scalar(&format!("SELECT user_id AS n FROM app_user WHERE openid = '{openid}'"))
}

fn status_of(app: &TestApp, coupon_id: i64) -> String {
    let found = coupon::find_coupon(&mut app.db.connect(), coupon_id).unwrap().unwrap();
    found.coupon.status.to_string()
}

fn a_coupon_locks_for_one_order_and_is_used_or_released_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-life");
    let me = user_id(&app, "o-life");
    let (first, second) = (claimed(&mut shopper, 9003), claimed(&mut shopper, 9003));
    let mut conn = app.db.connect();

    assert!(!coupon::lock(first, me + 1, "O-1", now()).apply(&mut conn).unwrap(), "not someone else's");
    assert!(coupon::lock(first, me, "O-1", now()).apply(&mut conn).unwrap());
    assert!(!coupon::lock(first, me, "O-2", now()).apply(&mut conn).unwrap(), "locked once");
    assert!(coupon::lock(second, me, "O-1", now()).apply(&mut conn).is_err(), "one coupon per order");
    let list = shopper.get("/api/v1/coupons?status=LOCKED").json();
    assert_eq!(list["data"][0]["lockedOrderId"], "O-1");

    // Closed unpaid: back to AVAILABLE, once.
    assert!(coupon::release(&mut conn, "O-1", now()).unwrap());
    assert!(!coupon::release(&mut conn, "O-1", now()).unwrap());
    assert_eq!(status_of(&app, first), "AVAILABLE");

    // Paid: USED, once; a release for the order then changes nothing.
    assert!(coupon::lock(first, me, "O-3", now()).apply(&mut conn).unwrap());
    assert!(coupon::mark_used(&mut conn, "O-3").unwrap());
    assert!(!coupon::mark_used(&mut conn, "O-3").unwrap());
    assert!(!coupon::release(&mut conn, "O-3", now()).unwrap());
    let used = shopper.get("/api/v1/coupons?status=USED").json();
    assert_eq!(used["data"][0]["usedOrderId"], "O-3");
    assert!(used["data"][0]["lockedOrderId"].is_null());
    // Refunded before delivery: it comes back.
    assert!(coupon::restore_used(&mut conn, "O-3", now()).unwrap());
    assert!(!coupon::restore_used(&mut conn, "O-3", now()).unwrap());
    assert_eq!(status_of(&app, first), "AVAILABLE");

    // Closed after its window ended: EXPIRED, and it cannot be locked again.
    assert!(coupon::lock(second, me, "O-4", now()).apply(&mut conn).unwrap());
    let later = now() + chrono::Duration::days(31);
    assert!(coupon::release(&mut conn, "O-4", later).unwrap());
    assert_eq!(status_of(&app, second), "EXPIRED");
    assert!(!coupon::lock(first, me, "O-5", later).apply(&mut conn).unwrap(), "past its window");
}

fn the_coupon_centre_shows_claims_and_my_coupons(backend: Backend) {
    let app = TestApp::spawn(backend);
    let visitor = app.browser().get("/coupons");
    assert_eq!(visitor.status, 200);
    assert!(visitor.body.contains("领券中心") && visitor.body.contains("满50减10"), "{}", visitor.body);
    assert!(visitor.body.contains("8折 最多减20") && visitor.body.contains("直减5"));
    assert!(visitor.body.contains("登录后领取"));

    let mut shopper = app.login("o-page");
    let page = shopper.get("/coupons");
    let csrf = hidden(&page.body, "csrf").to_owned();
    let forged = shopper.post_form("/coupons/claim", &[("template_id", "9001")]);
    assert_eq!(forged.status, 403);
    let done = shopper.post_form("/coupons/claim", &[("csrf", &csrf), ("template_id", "9001")]);
    assert_eq!(done.status, 303);
    assert!(done.header("location").unwrap().starts_with("/coupons?claimed="));
    let again = shopper.post_form("/coupons/claim", &[("csrf", &csrf), ("template_id", "9001")]);
    assert_eq!(again.header("location"), Some("/coupons?refused=C0006"));
    let refused = shopper.get("/coupons?refused=C0006");
    assert!(refused.body.contains("已达领取上限"));

    let mine = shopper.get("/coupons").body;
    let available = &mine[mine.find("id=\"mine-AVAILABLE\"").expect("available group")..];
    let available = &available[..available.find("</section>").unwrap()];
    assert!(available.contains("待使用 (1)") && available.contains("满50减10"), "{available}");
    assert!(mine.contains("已使用 (0)"));
}

fn the_admin_creates_templates_and_issues_coupons(backend: Backend) {
    let app = TestApp::spawn(backend);
    assert_eq!(app.browser().get("/admin/coupons").status, 303);
    let mut admin = app.admin();
    let page = admin.get("/admin/coupons");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("满50减10") && page.body.contains("0 / 10000"), "{}", page.body);
    let csrf = hidden(&page.body, "csrf").to_owned();

    let post = |admin: &mut Browser, csrf: &str, zhe: &str| {
        admin.post_form(
            "/admin/coupons",
            &[
                ("csrf", csrf),
                ("name", "杯子9折"),
                ("kind", "ZK"),
                ("zhe", zhe),
                ("max_off", "3"),
                ("products", MUG),
                ("valid_days", "7"),
                ("total_quota", "2"),
                ("per_user_limit", "1"),
            ],
        )
    };
    assert_eq!(post(&mut admin, "forged", "9").status, 403);
    let invalid = post(&mut admin, &csrf, "12");
    assert_eq!(invalid.status, 400);
    assert!(invalid.body.contains("is not a 折"), "{}", invalid.body);

    let created = post(&mut admin, &csrf, "9");
    assert_eq!(created.status, 303, "{}", created.body);
    let listed = admin.get(created.header("location").unwrap());
    assert!(listed.body.contains("created"), "{}", listed.body);
    assert!(listed.body.contains("9折 最多减3") && listed.body.contains(MUG));
    let template_id = app.scalar("SELECT MAX(template_id) AS n FROM coupon_template");
    assert!(template_id > 9003);

    // Issued by openid and by user id, within the quota.
    let mut shopper = app.login("o-gifted");
    app.login("o-gifted-2");
    let issue = |admin: &mut Browser, who: &str| {
        let reply = admin.post_form(
            "/admin/coupons/issue",
            &[("csrf", &csrf), ("template_id", &template_id.to_string()), ("shopper", who)],
        );
        assert_eq!(reply.status, 303, "{}", reply.body);
        admin.get(reply.header("location").unwrap()).body
    };
    assert!(issue(&mut admin, "o-gifted").contains("issued to o-gifted"));
    assert!(issue(&mut admin, "o-gifted").contains("Not issued: 已达领取上限"));
    assert!(issue(&mut admin, &user_id(&app, "o-gifted-2").to_string()).contains("issued to"));
    assert!(issue(&mut admin, "o-nobody").contains("Not issued: No shopper"));
    app.login("o-gifted-3");
    assert!(issue(&mut admin, "o-gifted-3").contains("Not issued: 优惠券已领完"));
    assert!(admin.get("/admin/coupons").body.contains("2 / 2"));

    let mine = shopper.get("/api/v1/coupons").json();
    let gift = &mine["data"][0];
    assert_eq!(gift["templateId"], template_id);
    assert_eq!(gift["rate"], "0.90");
    let priced = trial(&mut shopper, MUG, gift["couponId"].as_i64());
    assert_eq!(priced["data"]["discountAmount"], "3.00", "{priced}");
    assert_eq!(priced["data"]["payableAmount"], "36.99");
}

fn an_orders_discounts_are_stored_with_it(backend: Backend) {
    use paymall::models::order_discount::{self, DiscountType, NewOrderDiscount};
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-snapshot");
    let order_id = crate::helpers::order_id_of(&app.create_order(&mut shopper, GIFT));
    // An order placed without a discount: nothing off, and no discount rows.
    assert_eq!(app.scalar("SELECT discount_cents AS n FROM pay_order"), 0);
    let mut conn = app.db.connect();
    assert!(order_discount::for_order(&mut conn, &order_id).unwrap().is_empty());

    let coupon = NewOrderDiscount {
        discount_type: DiscountType::Coupon,
        ref_id: "7",
        name: "满50减10",
        amount_cents: 1000,
        rule: r#"{"kind":"MJ"}"#,
    };
    let rows = |discounts: &[NewOrderDiscount]| order_discount::rows(&order_id, discounts, now());
    assert!(rows(&[]).is_none(), "no discount, no row");
    assert_eq!(rows(std::slice::from_ref(&coupon)).unwrap().execute(&mut conn).unwrap(), 1);
    assert!(rows(&[coupon]).unwrap().execute(&mut conn).is_err(), "one coupon per order");
    let stored = order_discount::for_order(&mut conn, &order_id).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].discount_type, stored[0].amount_cents), (DiscountType::Coupon, 1000));
    assert_eq!((stored[0].ref_id.as_str(), stored[0].rule.as_str()), ("7", r#"{"kind":"MJ"}"#));
}

both_backends!(
    claims_keep_to_the_per_user_limit,
    fifty_shoppers_claiming_the_last_ten_get_exactly_ten,
    one_shopper_claiming_at_once_keeps_to_the_limit,
    the_trial_prices_with_a_coupon_or_says_why_not,
    a_coupon_locks_for_one_order_and_is_used_or_released_once,
    the_coupon_centre_shows_claims_and_my_coupons,
    the_admin_creates_templates_and_issues_coupons,
    an_orders_discounts_are_stored_with_it,
);
