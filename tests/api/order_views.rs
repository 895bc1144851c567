//! The read side of orders through HTTP: the original project's keyset list
//! (`query_user_order_list`), one order's price breakdown in the API, the shopper's pages and
//! the admin's order page.

use serde_json::{Value, json};

use crate::helpers::{Backend, Browser, GIFT, TestApp, both_backends, hidden, order_id_of};

const LIST: &str = "/api/v1/alipay/query_user_order_list";

fn user_id(app: &TestApp, openid: &str) -> i64 {
    app.scalar(&format!("SELECT user_id AS n FROM app_user WHERE openid = '{openid}'"))
}

/// Inserts a closed order behind the shop's back (SQL both backends read alike): the list price
/// `original` (`None`: no snapshot) and the payable `total`.
fn insert_order(app: &TestApp, order_id: &str, openid: &str, original: Option<i64>, total: i64) {
    let user = user_id(app, openid);
    let (original, discount) = match original {
        Some(cents) => (cents.to_string(), cents - total),
        None => ("NULL".to_owned(), 0),
    };
    app.execute(&format!(
        "INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, \
         original_cents, discount_cents, status, order_time, expire_at, next_query_at, updated_at) \
         VALUES ('{order_id}', {user}, '{openid}', '{GIFT}', '测试商品', {total}, {original}, {discount}, \
         'CLOSE', '2026-12-01 10:00:00', '2026-12-01 10:30:00', '2026-12-01 10:30:00', '2026-12-01 10:30:00')"
    ));
}

fn insert_coupon_discount(app: &TestApp, order_id: &str, amount: i64) {
    app.execute(&format!(
        "INSERT INTO order_discount (order_id, discount_type, ref_id, name, amount_cents, rule, created_at) \
         VALUES ('{order_id}', 'COUPON', '7', '新人满减券', {amount}, \
         '{{\"kind\":\"MJ\",\"words\":\"满50减10\"}}', '2026-12-01 10:00:00')"
    ));
}

fn list(browser: &mut Browser, body: &Value) -> Value {
    browser.post_json(LIST, body).json()
}

fn order_ids(reply: &Value) -> Vec<String> {
    reply["data"]["orderList"]
        .as_array()
        .expect("orderList")
        .iter()
        .map(|o| o["orderId"].as_str().expect("orderId").to_owned())
        .collect()
}

fn the_order_list_pages_by_keyset_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-lister");
    let _other = app.login("o-neighbour");
    let mut mine = Vec::new();
    for i in 0..12 {
        let order_id = format!("26120100000000{i:02}");
        insert_order(&app, &order_id, "o-lister", Some(1000 + i), 1000 + i);
        mine.push(order_id);
        if i % 3 == 0 {
            insert_order(&app, &format!("26120199999999{i:02}"), "o-neighbour", None, 500);
        }
    }
    mine.reverse();

    let mut seen = Vec::new();
    let mut last_id = Value::Null;
    for (expected_len, expected_more) in [(5, true), (5, true), (2, false)] {
        let reply = list(&mut shopper, &json!({ "lastId": last_id, "pageSize": 5 }));
        assert_eq!(reply["code"], "0000", "{reply}");
        let page = order_ids(&reply);
        assert_eq!(page.len(), expected_len, "{reply}");
        assert_eq!(reply["data"]["hasMore"], expected_more, "{reply}");
        let ids: Vec<i64> = reply["data"]["orderList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
        assert_eq!(reply["data"]["lastId"], *ids.last().unwrap());
        last_id = reply["data"]["lastId"].clone();
        seen.extend(page);
    }
    assert_eq!(seen, mine, "every order of mine once, newest first, nobody else's");

    let first = &list(&mut shopper, &json!({ "pageSize": 1 }))["data"]["orderList"][0];
    assert_eq!(first["orderId"], mine[0].as_str());
    assert_eq!(first["userId"], user_id(&app, "o-lister"));
    assert_eq!(first["productId"], GIFT);
    assert_eq!(first["productName"], "测试商品");
    assert_eq!((first["totalAmount"].as_str(), first["payAmount"].as_str()), (Some("10.11"), Some("10.11")));
    assert_eq!(first["couponDeductionAmount"], "0.00");
    assert_eq!(first["status"], "CLOSE");
    assert!(first["payTime"].is_null());
    assert_eq!(first["orderTime"], "2026-12-01 18:00:00", "China time");
    assert_eq!(first["payUrl"], format!("/orders/{}", mine[0]));

    // Defaults: no body fields is the first page of 10; a string of digits is a number.
    let default = list(&mut shopper, &json!({}));
    assert_eq!((order_ids(&default).len(), &default["data"]["hasMore"]), (10, &json!(true)));
    let as_text = list(&mut shopper, &json!({ "lastId": last_id.to_string(), "pageSize": "5" }));
    assert_eq!((order_ids(&as_text).len(), &as_text["data"]["hasMore"]), (0, &json!(false)));
    assert!(as_text["data"]["lastId"].is_null(), "{as_text}");

    // A page size outside 1..=50, or not a whole number, is refused with 0002 (not clamped).
    for bad in [json!(0), json!(51), json!(-3), json!("many"), json!(2.5), json!(true)] {
        let reply = shopper.post_json(LIST, &json!({ "pageSize": bad }));
        assert_eq!(
            (reply.status, reply.json()["code"].as_str()),
            (400, Some("0002")),
            "{bad}: {}",
            reply.body
        );
        assert!(reply.json()["info"].as_str().unwrap().contains("pageSize"), "{}", reply.body);
    }
    let reply = shopper.post_json(LIST, &json!({ "lastId": -1 }));
    assert_eq!((reply.status, reply.json()["code"].as_str()), (400, Some("0002")), "{}", reply.body);
    let reply = shopper.post_raw(LIST, "application/json", b"{\"pageSize\": ");
    assert_eq!((reply.status, reply.json()["info"].as_str()), (400, Some("非法参数：JSON 格式错误")));

    // Identity is the session's: a userId in the body changes nothing, and no session is 0003.
    let theirs = list(&mut shopper, &json!({ "userId": user_id(&app, "o-neighbour"), "pageSize": 50 }));
    assert_eq!(order_ids(&theirs), mine);
    let reply = app.browser().post_json(LIST, &json!({ "pageSize": 5 }));
    assert_eq!((reply.status, reply.json()["code"].as_str()), (401, Some("0003")), "{}", reply.body);
}

fn an_order_shows_its_price_breakdown(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-breakdown");
    insert_order(&app, "2612010000000101", "o-breakdown", Some(5999), 4999);
    insert_coupon_discount(&app, "2612010000000101", 1000);
    insert_order(&app, "2612010000000102", "o-breakdown", None, 3999);

    let discounted = shopper.get("/api/v1/orders/2612010000000101").json();
    let d = &discounted["data"];
    assert_eq!(discounted["code"], "0000", "{discounted}");
    assert_eq!(
        (&d["totalAmount"], &d["originalAmount"], &d["discountAmount"], &d["payAmount"]),
        (&json!("49.99"), &json!("59.99"), &json!("10.00"), &json!("49.99")),
        "{d}"
    );
    assert_eq!(
        d["discounts"],
        json!([{ "type": "COUPON", "refId": "7", "name": "新人满减券", "amount": "10.00" }])
    );

    let old = shopper.get("/api/v1/orders/2612010000000102").json();
    let o = &old["data"];
    assert_eq!(
        (&o["totalAmount"], &o["originalAmount"], &o["discountAmount"], &o["payAmount"]),
        (&json!("39.99"), &json!("39.99"), &json!("0.00"), &json!("39.99")),
        "{o}"
    );
    assert_eq!(o["discounts"], json!([]));

    // An order placed through the shop reads the same way.
    let placed = order_id_of(&app.create_order(&mut shopper, GIFT));
    let p = &shopper.get(&format!("/api/v1/orders/{placed}")).json()["data"];
    assert_eq!(
        (&p["originalAmount"], &p["payAmount"], &p["totalAmount"]),
        (&json!("1.68"), &json!("1.68"), &json!("1.68"))
    );

    // The lists carry it too.
    let all = shopper.get("/api/v1/orders").json();
    let listed = all["data"].as_array().unwrap().iter().find(|o| o["orderId"] == "2612010000000101").cloned();
    assert_eq!(listed.expect("listed")["discountAmount"], "10.00");
    let keyset = list(&mut shopper, &json!({ "pageSize": 50 }));
    let item = keyset["data"]["orderList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["orderId"] == "2612010000000101")
        .cloned()
        .expect("listed");
    assert_eq!(
        (
            &item["totalAmount"],
            &item["couponDeductionAmount"],
            &item["marketDeductionAmount"],
            &item["payAmount"]
        ),
        (&json!("59.99"), &json!("10.00"), &json!("0.00"), &json!("49.99")),
        "{item}"
    );

    // Nobody else sees it.
    let mut other = app.login("o-nosy");
    assert_eq!(other.get("/api/v1/orders/2612010000000101").status, 404);
}

fn the_pages_show_the_breakdown_and_page_by_keyset(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-pages-view");
    insert_order(&app, "2612010000000201", "o-pages-view", Some(5999), 4999);
    insert_coupon_discount(&app, "2612010000000201", 1000);
    insert_order(&app, "2612010000000202", "o-pages-view", None, 3999);

    let page = shopper.get("/orders/2612010000000201");
    assert_eq!(page.status, 200, "{}", page.body);
    for text in
        ["商品原价", "¥59.99", "优惠券", "-¥10.00", "新人满减券", "实付", "¥49.99", "id=\"order-status\""]
    {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    let plain = shopper.get("/orders/2612010000000202").body;
    assert!(plain.contains("实付") && plain.contains("¥39.99"), "{plain}");
    assert!(!plain.contains("商品原价") && !plain.contains("优惠券"), "{plain}");

    // My orders: newest first, ten a page, the next page below the last order shown.
    for i in 0..10 {
        insert_order(&app, &format!("26120100000003{i:02}"), "o-pages-view", None, 100);
    }
    let first = shopper.get("/orders").body;
    assert!(first.contains("我的订单"), "{first}");
    assert!(first.contains("2612010000000309") && !first.contains("2612010000000201"), "{first}");
    let more = next_page_link(&first);
    assert!(more.starts_with("/orders?lastId="), "{more}");
    let second = shopper.get(&more).body;
    for text in ["2612010000000201", "2612010000000202", "商品原价", "¥59.99", "-¥10.00", "实付", "¥49.99"]
    {
        assert!(second.contains(text), "{text} in {second}");
    }
    assert!(!second.contains("2612010000000300") && !second.contains("id=\"orders-more\""), "{second}");
    assert_eq!(shopper.get("/orders?lastId=-1").status, 400);
    assert_eq!(shopper.get("/orders?lastId=many").status, 400);

    // The checkout page shows the breakdown of the order it hands out.
    let csrf = hidden(&shopper.get(&format!("/products/{GIFT}")).body, "csrf").to_owned();
    let checkout = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", &csrf)]);
    assert!(checkout.body.contains("实付") && checkout.body.contains("¥1.68"), "{}", checkout.body);
    assert!(!checkout.body.contains("商品原价"), "{}", checkout.body);
    let open = attribute_after(&checkout.body, "class=\"order-id\">");
    app.execute(&format!(
        "UPDATE pay_order SET original_cents = total_cents + 32, discount_cents = 32 WHERE order_id = '{open}'"
    ));
    insert_coupon_discount(&app, &open, 32);
    let again = shopper.post_form(&format!("/products/{GIFT}/buy"), &[("csrf", &csrf)]);
    assert!(again.body.contains(&open), "the open order again: {}", again.body);
    for text in ["商品原价", "¥2.00", "优惠券", "-¥0.32", "实付", "¥1.68", "Continue to Alipay"] {
        assert!(again.body.contains(text), "{text} in {}", again.body);
    }
}

fn the_admin_order_page_shows_the_discounts(backend: Backend) {
    let app = TestApp::spawn(backend);
    let _shopper = app.login("o-admin-view");
    insert_order(&app, "2612010000000401", "o-admin-view", Some(5999), 4999);
    insert_coupon_discount(&app, "2612010000000401", 1000);
    insert_order(&app, "2612010000000402", "o-admin-view", None, 3999);
    let mut admin = app.admin();

    let page = admin.get("/admin/orders/2612010000000401");
    assert_eq!(page.status, 200, "{}", page.body);
    for text in ["¥59.99", "-¥10.00", "¥49.99", "COUPON", "新人满减券", "满50减10", "kind", "MJ"] {
        assert!(page.body.contains(text), "{text} in {}", page.body);
    }
    let plain = admin.get("/admin/orders/2612010000000402").body;
    assert!(plain.contains("¥39.99") && plain.contains("无：按原价支付。"), "{plain}");
}

/// The `href` of the "more" link on the orders page.
fn next_page_link(html: &str) -> String {
    let at = html.find("id=\"orders-more\"").expect("a link to the next page");
    let start = html[..at].rfind("href=\"").expect("href") + "href=\"".len();
    let end = start + html[start..].find('"').expect("closing quote");
    html[start..end].replace("&amp;", "&")
}

fn attribute_after(html: &str, before: &str) -> String {
    let start = html.find(before).unwrap_or_else(|| panic!("{before} in {html}")) + before.len();
    let end = start + html[start..].find('<').expect("closing tag");
    html[start..end].trim().to_owned()
}

both_backends!(
    the_order_list_pages_by_keyset_newest_first,
    an_order_shows_its_price_breakdown,
    the_pages_show_the_breakdown_and_page_by_keyset,
    the_admin_order_page_shows_the_discounts,
);
