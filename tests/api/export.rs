//! The admin's CSV export: streamed in chunks, every matching order once, newest first.

use crate::helpers::{Backend, GIFT, MUG, TestApp, both_backends};

/// `n` orders of one shopper inserted in one statement: order `i` (1-based) is
/// `2601011` followed by `i` in 9 digits, `DEAL_DONE` for every fifth and the mug for every
/// seventh, `CLOSE` and the gift otherwise.
fn insert_orders(app: &TestApp, n: i64) {
    app.execute("INSERT INTO app_user (openid) VALUES ('o-export')");
    app.execute(&format!(
        "INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
             order_time, expire_at, next_query_at, updated_at)
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         SELECT '260101' || CAST(1000000000 + i AS TEXT),
             (SELECT user_id FROM app_user WHERE openid = 'o-export'), 'o-export',
             CASE WHEN i % 7 = 0 THEN '{MUG}' ELSE '{GIFT}' END, '=cmd|'' /C calc''!A0', 168,
             CASE WHEN i % 5 = 0 THEN 'DEAL_DONE' ELSE 'CLOSE' END,
             CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP
         FROM n"
    ));
}

fn order_id(i: i64) -> String {
    format!("2601011{i:09}")
}

fn exported_ids(body: &str) -> Vec<String> {
    body.lines().skip(1).map(|line| line.split(',').next().unwrap().trim_matches('"').to_owned()).collect()
}

fn the_export_streams_every_matching_order_once_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend);
    let n = 2_500;
    insert_orders(&app, n);
    let mut admin = app.admin();

    let all = admin.get("/admin/orders.csv");
    assert_eq!(all.status, 200);
    assert_eq!(all.header("content-type"), Some("text/csv; charset=utf-8"));
    assert_eq!(all.header("content-disposition"), Some("attachment; filename=\"orders.csv\""));
    assert!(all.header("content-length").is_none(), "streamed, not buffered");
    assert_eq!(
        all.body.lines().next(),
        Some(
            "order_id,status,openid,product_id,product_name,total_amount,order_time,pay_time,trade_no,channel"
        )
    );
    let expected: Vec<String> = (1..=n).rev().map(order_id).collect();
    assert_eq!(exported_ids(&all.body), expected, "every order once, newest first");
    let first = all.body.lines().nth(1).unwrap();
    assert!(first.contains(",\"'=cmd|' /C calc'!A0\","), "a formula stays text: {first}");

    let filtered = admin.get(&format!("/admin/orders.csv?status=DEAL_DONE&product_id={MUG}"));
    assert_eq!(
        filtered.header("content-disposition"),
        Some(format!("attachment; filename=\"orders_status-DEAL_DONE_product-{MUG}.csv\"").as_str())
    );
    let expected: Vec<String> = (1..=n).rev().filter(|i| i % 35 == 0).map(order_id).collect();
    assert_eq!(exported_ids(&filtered.body), expected);

    let none = admin.get("/admin/orders.csv?openid=nobody%22%0D%0A");
    assert_eq!(
        none.header("content-disposition"),
        Some("attachment; filename=\"orders_openid-nobody_.csv\"")
    );
    assert_eq!(none.body.lines().count(), 1, "only the header: {}", none.body);
    assert_eq!(admin.get("/admin/orders.csv?status=TEAM_DONE").status, 400);
}

both_backends!(the_export_streams_every_matching_order_once_newest_first);
