use crate::helpers::{Backend, MUG, TestApp, both_backends};

fn product_list_shows_the_seeded_catalogue(backend: Backend) {
    let app = TestApp::spawn(backend);
    let page = app.browser().get("/");
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(page.body.contains("测试商品"), "{}", page.body);
    assert!(page.body.contains("¥1.68"));
    assert!(page.body.contains("/products/100010090091"));
    assert!(page.body.contains("龙井绿茶 250g"));
}

fn sell_out(app: &TestApp, product_id: &str) {
    app.execute(&format!("UPDATE product SET stock = 0 WHERE product_id = '{product_id}'"));
}

fn sold_out_labels(app: &TestApp) -> usize {
    app.browser().get("/").body.matches("已售罄").count()
}

fn product_list_is_a_snapshot_that_follows_the_catalogue_within_its_max_age(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.catalogue.list_max_age_ms = 1500);
    let before = sold_out_labels(&app);
    sell_out(&app, MUG);
    let taken = std::time::Instant::now();
    assert_eq!(sold_out_labels(&app), before, "the list is served from its snapshot");
    assert!(app.browser().get("/products/100010090093").body.contains("已售罄"), "the product page reads it");
    while sold_out_labels(&app) == before {
        assert!(taken.elapsed() < std::time::Duration::from_secs(10), "the snapshot never reloaded");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(sold_out_labels(&app), before + 1);
}

fn with_no_max_age_the_product_list_reads_every_page(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.catalogue.list_max_age_ms = 0);
    let before = sold_out_labels(&app);
    sell_out(&app, MUG);
    assert_eq!(sold_out_labels(&app), before + 1);
}

fn product_page_shows_price_stock_and_buy(backend: Backend) {
    let app = TestApp::spawn(backend);
    let page = app.browser().get("/products/100010090093");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("青瓷马克杯"));
    assert!(page.body.contains("¥39.99"));
    assert!(page.body.contains("库存 40 件"));
    assert!(page.body.contains(">立即购买<"));
}

fn unknown_product_is_the_404_page(backend: Backend) {
    let app = TestApp::spawn(backend);
    let page = app.browser().get("/products/999999999999");
    assert_eq!(page.status, 404);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.body.contains("商品 999999999999 不存在"));
    assert!(page.body.contains("返回商城"));
}

fn unknown_path_is_a_404_page_and_under_api_an_envelope(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let page = browser.get("/no/such/page");
    assert_eq!(page.status, 404);
    assert!(page.body.contains("404"));
    let api = browser.get("/api/v1/no_such_call");
    assert_eq!(api.status, 404);
    assert_eq!(api.json()["code"], "0001");
    assert!(api.json()["data"].is_null());
}

fn static_files_are_served_with_cache_headers(backend: Backend) {
    let app = TestApp::spawn(backend);
    let css = app.browser().get("/public/css/app.css");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert_eq!(css.header("cache-control"), Some("public, max-age=3600"));
    assert!(css.body.contains(".topbar"));
}

both_backends!(
    product_list_shows_the_seeded_catalogue,
    product_list_is_a_snapshot_that_follows_the_catalogue_within_its_max_age,
    with_no_max_age_the_product_list_reads_every_page,
    product_page_shows_price_stock_and_buy,
    unknown_product_is_the_404_page,
    unknown_path_is_a_404_page_and_under_api_an_envelope,
    static_files_are_served_with_cache_headers,
);
