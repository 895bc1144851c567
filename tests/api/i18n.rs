//! Chinese first: the pages' language (`?lang=`, the `lang` cookie, `Accept-Language`), the
//! statuses in words, and the API's Chinese `info` whatever the page language.

use crate::helpers::{Backend, GIFT, TestApp, both_backends};

fn html_lang(body: &str) -> &str {
    let start = body.find("<html lang=\"").expect("<html lang>") + "<html lang=\"".len();
    &body[start..start + body[start..].find('"').expect("closing quote")]
}

fn pages_are_chinese_by_default(backend: Backend) {
    let app = TestApp::spawn(backend);
    let page = app.browser().get("/");
    assert_eq!(html_lang(&page.body), "zh-CN");
    assert!(page.body.contains("<title>全部商品 - paymall 商城</title>"), "{}", page.body);
    assert!(page.body.contains(">登录<") && page.body.contains("href=\"?lang=en\""), "{}", page.body);
    let product = app.browser().get(&format!("/products/{GIFT}"));
    assert!(product.body.contains("<title>测试商品 - paymall 商城</title>"), "{}", product.body);
    assert!(product.body.contains(">立即购买<") && product.body.contains("库存 1000 件"), "{}", product.body);
    let admin = app.browser().get("/admin/login");
    assert!(admin.body.contains(">管理员登录<"), "the console too: {}", admin.body);
    let sandbox = app.browser().get("/sandbox/weixin/phone?ticket=x");
    assert!(sandbox.body.contains("微信 · 扫一扫"), "and the sandbox: {}", sandbox.body);
}

fn accept_language_english_gives_english(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut english = app.browser().with_header("Accept-Language", "en-GB,en;q=0.9,zh-CN;q=0.5");
    let page = english.get(&format!("/products/{GIFT}"));
    assert_eq!(html_lang(&page.body), "en");
    assert!(page.body.contains(">Buy<") && page.body.contains("1000 in stock"), "{}", page.body);
    assert!(page.body.contains("<title>测试商品 - paymall shop</title>"), "{}", page.body);
    let mut chinese_first = app.browser().with_header("Accept-Language", "zh-CN,zh;q=0.9,en;q=0.8");
    assert_eq!(html_lang(&chinese_first.get("/").body), "zh-CN");
}

fn the_cookie_wins_over_the_header(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser().with_header("Accept-Language", "en");
    browser.cookies.insert("lang".into(), "zh-CN".into());
    let page = browser.get("/");
    assert_eq!(html_lang(&page.body), "zh-CN");
    assert!(page.body.contains("全部商品"), "{}", page.body);
}

fn the_query_sets_the_cookie(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut browser = app.browser();
    let switched = browser.get("/?lang=en");
    assert_eq!(html_lang(&switched.body), "en", "the page itself is in the language picked");
    let cookie = switched.header("set-cookie").expect("the choice is kept");
    assert!(cookie.starts_with("lang=en;") && cookie.contains("Path=/"), "{cookie}");
    assert_eq!(browser.cookies.get("lang").map(String::as_str), Some("en"));
    assert_eq!(html_lang(&browser.get("/coupons").body), "en", "later pages keep it");
    browser.get("/?lang=zh-CN");
    assert_eq!(html_lang(&browser.get("/coupons").body), "zh-CN");
    let unknown = app.browser().get("/?lang=fr");
    assert!(unknown.header("set-cookie").is_none() && html_lang(&unknown.body) == "zh-CN");
}

fn the_order_page_says_the_status_in_words(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut shopper = app.login("o-words");
    let form = app.create_order(&mut shopper, GIFT);
    let order_id = crate::helpers::order_id_of(&form);
    let page = shopper.get(&format!("/orders/{order_id}"));
    assert!(page.body.contains("data-status=\"PAY_WAIT\">待支付</span>"), "{}", page.body);
    app.pay_at_cashier(&mut shopper, &form);
    app.wait_for_status(&mut shopper, &order_id, "PAY_SUCCESS");
    app.worker.tick();
    app.wait_for_status(&mut shopper, &order_id, "DEAL_DONE");
    let page = shopper.get(&format!("/orders/{order_id}"));
    assert!(page.body.contains("data-status=\"DEAL_DONE\">已发货</span>"), "{}", page.body);
    assert!(!page.body.contains(">DEAL_DONE<"), "no raw code for the shopper: {}", page.body);
    assert!(page.body.contains("年") && page.body.contains("¥1.68"), "{}", page.body);
    let list = shopper.get("/orders");
    assert!(list.body.contains(">已发货</span>"), "{}", list.body);
    shopper.cookies.insert("lang".into(), "en".into());
    let english = shopper.get(&format!("/orders/{order_id}"));
    assert!(english.body.contains("data-status=\"DEAL_DONE\">Shipped</span>"), "{}", english.body);
    let api = shopper.get(&format!("/api/v1/orders/{order_id}?lang=en")).json();
    assert_eq!((api["code"].as_str(), api["info"].as_str()), (Some("0000"), Some("调用成功")));
}

fn api_info_stays_chinese_in_english(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut visitor = app.browser().with_header("Accept-Language", "en");
    visitor.cookies.insert("lang".into(), "en".into());
    let reply = visitor.post_json("/api/v1/alipay/query_user_order_list", &serde_json::json!({}));
    assert_eq!(reply.status, 401);
    assert_eq!(
        (reply.json()["code"].as_str(), reply.json()["info"].as_str()),
        (Some("0003"), Some("未登录"))
    );
    let missing = visitor.get("/api/v1/no-such-thing").json();
    assert_eq!((missing["code"].as_str(), missing["info"].as_str()), (Some("0001"), Some("页面不存在")));
}

fn the_favicon_is_served(backend: Backend) {
    let app = TestApp::spawn(backend);
    let icon = app.browser().get("/favicon.ico");
    assert_eq!(icon.status, 200);
    let kind = icon.header("content-type").unwrap_or("");
    assert!(kind.starts_with("image/"), "{kind}");
    let page = app.browser().get("/");
    assert!(page.body.contains("rel=\"icon\""), "{}", page.body);
    let picture = app.browser().get("/public/img/products/umbrella.svg");
    assert_eq!(picture.status, 200);
    assert!(!picture.body.contains("<text"), "a drawing, not a glyph: {}", picture.body);
    let images: i64 =
        app.scalar("SELECT COUNT(*) AS n FROM product WHERE image_url LIKE '/public/img/products/%.svg'");
    assert_eq!(images, 5, "the demo products show the drawings");
}

both_backends!(
    pages_are_chinese_by_default,
    accept_language_english_gives_english,
    the_cookie_wins_over_the_header,
    the_query_sets_the_cookie,
    the_order_page_says_the_status_in_words,
    api_info_stays_chinese_in_english,
    the_favicon_is_served,
);
