use std::time::Instant;

use crate::helpers::{Backend, Browser, GIFT, MUG, TestApp, both_backends, hidden, order_id_of};

fn everything_needs_a_signed_in_admin(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut visitor = app.browser();
    for path in ["/admin", "/admin/orders/1", "/admin/outbox", "/admin/products", "/admin/orders.csv"] {
        let reply = visitor.get(path);
        assert_eq!(reply.status, 303, "{path}");
        assert!(reply.header("location").unwrap_or("").starts_with("/admin/login?next="), "{path}");
    }
    let edit =
        visitor.post_form("/admin/products/100010090091", &[("name", "x"), ("price", "1"), ("stock", "1")]);
    assert_eq!(edit.status, 303);
    // A shopper's session opens nothing here.
    let mut shopper = app.login("o-not-admin");
    assert_eq!(shopper.get("/admin").status, 303);
}

fn wrong_passwords_are_refused_slowed_and_locked_out(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut guesser = app.browser();
    let mut took = Vec::new();
    for _ in 0..paymall::services::admin::LOCK_AFTER {
        let started = Instant::now();
        let reply = app.admin_sign_in(&mut guesser, "guess");
        took.push(started.elapsed());
        assert_eq!(reply.status, 401);
        assert!(reply.body.contains("Wrong name or password."));
    }
    assert!(took[3] > took[0] + std::time::Duration::from_millis(200), "{took:?}");
    // Locked out now, even with the right password.
    let locked = app.admin_sign_in(&mut guesser, app.settings.admin.password.expose());
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed attempts"));
    // Without the form's CSRF token nothing is even checked.
    let forged = app.browser().post_form("/admin/login", &[("username", "admin"), ("password", "x")]);
    assert_eq!(forged.status, 403);
}

fn trusting_the_local_proxy(settings: &mut paymall::config::Settings) {
    settings.server.trusted_proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
}

/// A browser behind the local proxy, at `address` as the proxy says.
fn client_at(app: &TestApp, forwarded_for: &str) -> Browser {
    app.browser().with_header("X-Forwarded-For", forwarded_for)
}

fn a_guesser_locks_out_only_itself(backend: Backend) {
    let app = TestApp::spawn_with(backend, trusting_the_local_proxy);
    let password = app.settings.admin.password.expose();
    for attempt in 0..paymall::services::admin::LOCK_AFTER {
        // A hop the guesser writes itself, to the left of the one the proxy adds, changes nothing.
        let mut guesser = client_at(&app, &format!("10.6.6.{attempt}, 203.0.113.9"));
        assert_eq!(app.admin_sign_in(&mut guesser, "guess").status, 401);
    }
    let locked = app.admin_sign_in(&mut client_at(&app, "203.0.113.9"), password);
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed attempts"), "{}", locked.body);
    let mut admin = client_at(&app, "198.51.100.7");
    let signed_in = app.admin_sign_in(&mut admin, password);
    assert_eq!(signed_in.status, 303, "the admin elsewhere is not locked out: {}", signed_in.body);
    assert_eq!(admin.get("/admin").status, 200);
}

fn a_forwarded_for_from_an_untrusted_peer_is_ignored(backend: Backend) {
    let lock_after = paymall::services::admin::LOCK_AFTER;
    let app = TestApp::spawn_with(backend, |s| {
        s.limits.admin_sign_ins_per_minute = lock_after as u32 + 1;
    });
    let password = app.settings.admin.password.expose();
    for attempt in 0..lock_after {
        let mut guesser = client_at(&app, &format!("203.0.113.{attempt}"));
        assert_eq!(app.admin_sign_in(&mut guesser, "guess").status, 401);
    }
    // The lock-out and the rate limit are on the connection's own address.
    let locked = app.admin_sign_in(&mut client_at(&app, "198.51.100.7"), password);
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed attempts"), "{}", locked.body);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM admin_login_failure"), 1);
    assert_eq!(
        app.scalar("SELECT COUNT(*) AS n FROM admin_login_failure WHERE throttle_key LIKE '127.0.0.1 %'"),
        1
    );
    let limited = app.admin_sign_in(&mut client_at(&app, "198.51.100.8"), password);
    assert_eq!(limited.status, 429);
    assert!(limited.body.contains("请求过于频繁"), "{}", limited.body);
}

fn concurrent_wrong_passwords_are_all_counted(backend: Backend) {
    const TRIES: usize = 30;
    let app = TestApp::spawn_with(backend, |s| s.limits.admin_sign_ins_per_minute = 1000);
    let mut guesser = app.browser();
    let csrf = guesser.csrf("/admin/login");
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..TRIES)
            .map(|_| {
                let mut browser = app.browser();
                browser.cookies = guesser.cookies.clone();
                let (username, csrf) = (&app.settings.admin.username, &csrf);
                scope.spawn(move || {
                    let fields = [("username", username.as_str()), ("password", "guess"), ("csrf", csrf)];
                    browser.post_form("/admin/login", &fields).status
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().expect("a try")).collect()
    });
    let wrong = statuses.iter().filter(|s| **s == 401).count() as i64;
    assert!(statuses.iter().all(|s| [401, 429].contains(s)), "{statuses:?}");
    assert!(wrong >= i64::from(paymall::services::admin::LOCK_AFTER), "{statuses:?}");
    // Every password that was checked is counted.
    assert_eq!(app.scalar("SELECT CAST(SUM(failures) AS BIGINT) AS n FROM admin_login_failure"), wrong);
    let locked = app.admin_sign_in(&mut guesser, app.settings.admin.password.expose());
    assert_eq!(locked.status, 429);
}

fn sign_ins_over_the_limit_answer_429(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| {
        trusting_the_local_proxy(s);
        s.limits.admin_sign_ins_per_minute = 3;
    });
    let mut eager = client_at(&app, "203.0.113.9");
    for _ in 0..3 {
        assert_eq!(app.admin_sign_in(&mut eager, "guess").status, 401);
    }
    let limited = app.admin_sign_in(&mut eager, app.settings.admin.password.expose());
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("60"));
    assert!(limited.body.contains("请求过于频繁"), "{}", limited.body);
    // Another client has a limit of its own.
    assert_eq!(
        app.admin_sign_in(&mut client_at(&app, "198.51.100.7"), app.settings.admin.password.expose()).status,
        303
    );
}

fn signing_out_is_a_post_with_the_csrf_token(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut admin = app.admin();
    let csrf = admin.csrf("/admin");
    assert_ne!(admin.get("/admin/logout").status, 303);
    assert_eq!(admin.get("/admin").status, 200, "a GET (a link, an image) signs nobody out");
    assert_eq!(admin.post_form("/admin/logout", &[]).status, 403);
    assert_eq!(admin.post_form("/admin/logout", &[("csrf", "forged")]).status, 403);
    assert_eq!(admin.get("/admin").status, 200);
    let out = admin.post_form("/admin/logout", &[("csrf", &csrf)]);
    assert_eq!((out.status, out.header("location")), (303, Some("/admin/login")));
    assert_eq!(admin.get("/admin").status, 303);
}

fn a_phc_hash_works_as_the_password(backend: Backend) {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(b"paymall-test-salt").expect("salt");
    let hash = argon2::Argon2::default().hash_password(b"correct horse", &salt).expect("hash").to_string();
    let app = TestApp::spawn_with(backend, |s| s.admin.password = paymall::config::Secret::new(hash));
    let mut browser = app.browser();
    assert_eq!(app.admin_sign_in(&mut browser, "correct horse").status, 303);
    assert_eq!(browser.get("/admin").status, 200);
}

fn product_edits_need_the_csrf_token_and_valid_values(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut admin = app.admin();
    let csrf = admin.csrf("/admin/products");
    let fields = |csrf: &str, price: &str| {
        vec![
            ("csrf".to_owned(), csrf.to_owned()),
            ("name".to_owned(), "Gift, renamed".to_owned()),
            ("description".to_owned(), "New text".to_owned()),
            ("price".to_owned(), price.to_owned()),
            ("stock".to_owned(), "7".to_owned()),
            ("stock_seen".to_owned(), "1000".to_owned()),
            ("on_sale".to_owned(), "1".to_owned()),
        ]
    };
    let post = |admin: &mut Browser, fields: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        admin.post_form("/admin/products/100010090091", &pairs)
    };
    assert_eq!(post(&mut admin, fields("wrong", "2.50")).status, 403);
    assert_eq!(post(&mut admin, fields("", "2.50")).status, 403);
    assert!(app.browser().get("/products/100010090091").body.contains("¥1.68"), "unchanged");
    let invalid = post(&mut admin, fields(&csrf, "2.505"));
    assert_eq!(invalid.status, 400);
    assert!(invalid.body.contains("is not an amount"));
    // An order reserves a unit while the admin edits: the stale form is refused, not applied.
    app.create_order(&mut app.login("o-meanwhile"), GIFT);
    let stale = post(&mut admin, fields(&csrf, "2.50"));
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(stale.body.contains("changed to 999"));
    let fresh = |csrf: &str| {
        let mut f = fields(csrf, "2.50");
        f.retain(|(k, _)| k != "stock_seen");
        f.push(("stock_seen".to_owned(), "999".to_owned()));
        f
    };
    assert_eq!(post(&mut admin, fresh(&csrf)).status, 303);
    let page = app.browser().get("/products/100010090091").body;
    assert!(page.contains("Gift, renamed") && page.contains("¥2.50") && page.contains("库存 7 件"), "{page}");
}

fn orders_filter_page_and_export(backend: Backend) {
    let app = TestApp::spawn(backend);
    for i in 0..3 {
        let mut shopper = app.login(&format!("o-list-{i}"));
        app.create_order(&mut shopper, GIFT);
        app.create_order(&mut shopper, "100010090092");
    }
    let mut admin = app.admin();
    let all = admin.get("/admin").body;
    assert_eq!(all.matches("class=\"order-row\"").count(), 6);
    assert!(all.contains("class=\"count-PAY_WAIT\">6<"), "{all}");
    let one = admin.get("/admin?openid=o-list-1&product_id=100010090092").body;
    assert_eq!(one.matches("class=\"order-row\"").count(), 1);
    let none = admin.get("/admin?status=DEAL_DONE").body;
    assert_eq!(none.matches("class=\"order-row\"").count(), 0);
    let today = chrono::Utc::now().naive_utc() + chrono::Duration::hours(8);
    let dated =
        admin.get(&format!("/admin?from={}&to={}", today.format("%Y-%m-%d"), today.format("%Y-%m-%d"))).body;
    assert_eq!(dated.matches("class=\"order-row\"").count(), 6);
    assert_eq!(admin.get("/admin?from=yesterday").status, 400);
    let csv = admin.get("/admin/orders.csv?product_id=100010090091");
    assert_eq!(csv.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", csv.body);
    let page = admin.get("/admin?product_id=100010090091").body;
    for line in &lines[1..] {
        let order_id = line.split(',').next().unwrap().trim_matches('"');
        assert!(page.contains(order_id), "the CSV matches the page");
    }
}

fn orders_are_paged_newest_first(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut newest = String::new();
    for i in 0..52 {
        let mut shopper = app.login(&format!("o-page-{i}"));
        newest = order_id_of(&app.create_order(&mut shopper, "100010090094"));
    }
    let mut admin = app.admin();
    let first = admin.get("/admin?product_id=100010090094").body;
    assert_eq!(first.matches("class=\"order-row\"").count(), 50);
    assert!(first.find(&newest).expect("newest on page 1") < first.find("o-page-0").unwrap_or(usize::MAX));
    assert!(first.contains("id=\"older\"") && !first.contains("id=\"newer\""));
    let second = admin.get(&link(&first, "older")).body;
    assert_eq!(second.matches("class=\"order-row\"").count(), 2);
    assert!(second.contains("o-page-0") && !second.contains("id=\"older\""));
    let back = admin.get(&link(&second, "newer")).body;
    assert_eq!(back.matches("class=\"order-row\"").count(), 50);
    assert!(back.contains(&newest) && !back.contains("id=\"newer\""));
}

/// The href of the pager's link `id` ("older" or "newer").
fn link(page: &str, id: &str) -> String {
    let at = page.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id} link: {page}"));
    let start = page[..at].rfind("href=\"").expect("href") + "href=\"".len();
    page[start..].split('"').next().expect("href").replace("&#38;", "&").replace("&amp;", "&")
}

/// The order ids of a page of the orders list, top to bottom.
fn order_ids(page: &str) -> Vec<String> {
    page.split("<a href=\"/admin/orders/")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .collect()
}

/// Orders of a few shoppers and products in several states: 30 orders, 10 paid, 5 closed.
fn thirty_orders(app: &TestApp) -> Vec<(String, Browser)> {
    let products = [GIFT, MUG, "100010090092"];
    let mut placed = Vec::new();
    for i in 0..30 {
        let mut shopper = app.login(&format!("o-mix-{}", i % 10));
        let form = app.create_order(&mut shopper, products[i / 10]);
        let order_id = if i % 3 == 0 { app.pay_at_cashier(&mut shopper, &form) } else { order_id_of(&form) };
        placed.push((order_id, shopper));
    }
    for (i, (order_id, shopper)) in placed.iter_mut().enumerate() {
        if i % 3 == 0 {
            app.wait_for_status(shopper, order_id, "PAY_SUCCESS");
        }
    }
    let mut admin = app.admin();
    let csrf = admin.csrf("/admin");
    for (order_id, shopper) in placed.iter_mut().filter(|_| true).skip(1).step_by(6) {
        let closed = admin.post_form(&format!("/admin/orders/{order_id}/close"), &[("csrf", &csrf)]);
        assert_eq!(closed.status, 303);
        assert_eq!(app.order_status(shopper, order_id), "CLOSE");
    }
    placed
}

fn cursors_page_through_every_filter_without_gaps_or_repeats(backend: Backend) {
    let app = TestApp::spawn(backend);
    let placed = thirty_orders(&app);
    let today = (chrono::Utc::now().naive_utc() + chrono::Duration::hours(8)).format("%Y-%m-%d").to_string();
    let filters = [
        (String::new(), "1 = 1".to_owned()),
        ("status=PAY_WAIT".to_owned(), "status = 'PAY_WAIT'".to_owned()),
        ("status=CLOSE".to_owned(), "status = 'CLOSE'".to_owned()),
        (format!("product_id={MUG}"), format!("product_id = '{MUG}'")),
        ("openid=o-mix-3".to_owned(), "openid = 'o-mix-3'".to_owned()),
        (format!("from={today}&to={today}"), "1 = 1".to_owned()),
        (
            format!("status=PAY_SUCCESS&product_id={GIFT}"),
            format!("status = 'PAY_SUCCESS' AND product_id = '{GIFT}'"),
        ),
    ];
    let mut admin = app.admin();
    for (query, condition) in &filters {
        let expected = app.scalar(&format!("SELECT COUNT(*) AS n FROM pay_order WHERE {condition}"));
        assert!(expected > 0, "{query}");
        // Older, page after page, from the newest.
        let mut pages = Vec::new();
        let mut page = admin.get(&format!("/admin?{query}&per_page=4")).body;
        assert!(!page.contains("id=\"newer\""), "{query}: the first page has nothing newer");
        loop {
            pages.push(order_ids(&page));
            if !page.contains("id=\"older\"") {
                break;
            }
            page = admin.get(&link(&page, "older")).body;
            assert!(page.contains("id=\"newer\""), "{query}: an older page links back");
        }
        let seen: Vec<&String> = pages.iter().flatten().collect();
        let unique: std::collections::BTreeSet<&&String> = seen.iter().collect();
        assert_eq!(seen.len() as i64, expected, "{query}: every order once: {pages:?}");
        assert_eq!(unique.len(), seen.len(), "{query}: no order twice: {pages:?}");
        for order_id in &seen {
            assert!(placed.iter().any(|(id, _)| id == *order_id));
        }
        // Newest first: the order numbers fall.
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(sorted, seen, "{query}");
        // And newer, page after page, back to the first, through the same pages.
        let mut back = vec![order_ids(&page)];
        while page.contains("id=\"newer\"") {
            page = admin.get(&link(&page, "newer")).body;
            back.push(order_ids(&page));
        }
        back.reverse();
        assert_eq!(back, pages, "{query}");
    }
    assert_eq!(admin.get("/admin?before=5&after=3").status, 400);
    assert_eq!(admin.get("/admin?per_page=0").status, 400);
    let beyond = admin.get("/admin?before=1").body;
    assert_eq!(order_ids(&beyond).len(), 0);
    assert!(beyond.contains("id=\"newer\""), "{beyond}");
}

/// Every status's count and amount, as a full `GROUP BY` counts them.
fn full_count(app: &TestApp) -> Vec<(String, i64, i64)> {
    paymall::models::order::OrderStatus::ALL
        .iter()
        .map(|s| {
            let condition = format!("FROM pay_order WHERE status = '{s}'");
            let n = app.scalar(&format!("SELECT COUNT(*) AS n {condition}"));
            let cents =
                app.scalar(&format!("SELECT CAST(COALESCE(SUM(total_cents), 0) AS BIGINT) AS n {condition}"));
            (s.to_string(), n, cents)
        })
        .collect()
}

/// The admin page's totals, the totals as read for it, and the folded table (when `folded`)
/// all equal a full count.
fn assert_totals_exact(app: &TestApp, admin: &mut Browser, folded: bool) {
    let expected = full_count(app);
    let page = admin.get("/admin").body;
    let read = paymall::models::order_total::current(&mut app.db.connect()).expect("totals");
    for (status, n, cents) in &expected {
        let shown = page
            .split(&format!("class=\"count-{status}\">"))
            .nth(1)
            .map_or(0, |rest| rest.split('<').next().unwrap().parse::<i64>().unwrap());
        assert_eq!(shown, *n, "{status} on the page: {page}");
        let row = read.iter().find(|t| &t.status == status).expect("every status has a row");
        assert_eq!((row.orders, row.cents), (*n, *cents), "{status} as read");
        if folded {
            let table = |column: &str| {
                app.scalar(&format!("SELECT {column} AS n FROM order_status_total WHERE status = '{status}'"))
            };
            assert_eq!((table("orders"), table("cents")), (*n, *cents), "{status} folded");
        }
    }
}

/// Ticks until the checkpoint reaches the last event (PostgreSQL folds a tick after its barrier).
fn fold_everything(app: &TestApp) {
    for _ in 0..6 {
        app.worker.tick();
        let last = app.scalar("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) AS n FROM order_event");
        if app.scalar("SELECT folded_through AS n FROM order_total_checkpoint") == last {
            return;
        }
    }
    panic!("the totals were not folded to the last event");
}

fn totals_per_status_equal_a_full_count_through_changes_and_folds(backend: Backend) {
    let app = TestApp::spawn(backend);
    let mut admin = app.admin();
    assert_totals_exact(&app, &mut admin, false);
    let placed = thirty_orders(&app);
    assert_totals_exact(&app, &mut admin, false);
    fold_everything(&app);
    // Delivered by the tick: PAY_SUCCESS -> DEAL_DONE, folded.
    assert!(full_count(&app).iter().any(|(s, n, _)| s == "DEAL_DONE" && *n == 10));
    assert_totals_exact(&app, &mut admin, true);
    // Refunds and a placement after the fold: counted from the events until the next one.
    let csrf = admin.csrf("/admin");
    for (order_id, _) in placed.iter().step_by(3).take(4) {
        assert_eq!(
            admin.post_form(&format!("/admin/orders/{order_id}/refund"), &[("csrf", &csrf)]).status,
            303
        );
    }
    app.create_order(&mut app.login("o-late"), GIFT);
    assert_totals_exact(&app, &mut admin, false);
    app.worker.tick();
    assert_totals_exact(&app, &mut admin, false);
    fold_everything(&app);
    assert!(full_count(&app).iter().any(|(s, n, _)| s == "REFUNDED" && *n == 4));
    assert_totals_exact(&app, &mut admin, true);
}

fn an_event_committed_late_with_a_lower_id_is_still_counted(backend: Backend) {
    use diesel::RunQueryDsl;
    use diesel::connection::Connection;
    if backend == Backend::Sqlite {
        // SQLite's writers take turns: an id is taken and committed inside one write lock.
        return;
    }
    let app = TestApp::spawn(backend);
    let mut admin = app.admin();
    let late = order_id_of(&app.create_order(&mut app.login("o-slow"), GIFT));
    fold_everything(&app);
    let mut slow = app.db.connect();
    slow.transaction::<_, diesel::result::Error, _>(|c| {
        // A close whose event takes its id now and commits after later events.
        diesel::sql_query(format!("UPDATE pay_order SET status = 'CLOSE' WHERE order_id = '{late}'"))
            .execute(c)?;
        diesel::sql_query(format!(
            "INSERT INTO order_event (order_id, from_status, to_status, cause, detail, created_at) \
             VALUES ('{late}', 'PAY_WAIT', 'CLOSE', 'test', 'slow', now())"
        ))
        .execute(c)?;
        app.create_order(&mut app.login("o-fast"), MUG);
        for _ in 0..3 {
            app.worker.tick();
        }
        let held = app.scalar(&format!("SELECT MAX(id) AS n FROM order_event WHERE order_id <> '{late}'"));
        let checkpoint = app.scalar("SELECT folded_through AS n FROM order_total_checkpoint");
        assert!(checkpoint < held, "the fold waits for the transaction still holding a lower id");
        Ok(())
    })
    .expect("the slow transaction commits");
    assert_totals_exact(&app, &mut admin, false);
    fold_everything(&app);
    assert_totals_exact(&app, &mut admin, true);
}

fn a_filters_total_says_at_least_past_its_cap(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.admin.filter_total_cap = 3);
    for i in 0..5 {
        app.create_order(&mut app.login(&format!("o-cap-{i}")), GIFT);
    }
    app.create_order(&mut app.login("o-cap-0"), MUG);
    let mut admin = app.admin();
    let many = admin.get(&format!("/admin?product_id={GIFT}")).body;
    assert!(many.contains("当前筛选：至少 3 笔"), "{many}");
    let few = admin.get(&format!("/admin?product_id={MUG}")).body;
    assert!(few.contains("当前筛选：共 1 笔, ¥"), "{few}");
    let one_shopper = admin.get("/admin?openid=o-cap-0").body;
    assert!(one_shopper.contains("当前筛选：共 2 笔"), "{one_shopper}");
    // A status alone is counted exactly at any size, from the totals per status.
    let status = admin.get("/admin?status=PAY_WAIT").body;
    assert!(status.contains("当前筛选：共 6 笔"), "{status}");
    // Without a filter the page has the shop's totals only.
    let all = admin.get("/admin").body;
    assert!(!all.contains("This filter") && all.contains("class=\"count-PAY_WAIT\">6<"), "{all}");
}

fn sync_close_and_refund_move_orders_through_the_sandbox(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    let (mut shopper, paid) = app.paid_unnotified("o-admin-actions", GIFT);
    let unpaid = order_id_of(&app.create_order(&mut shopper, MUG));
    let mug_stock = app.stock(MUG);
    let mut admin = app.admin();

    let csrf = admin.csrf(&format!("/admin/orders/{paid}"));
    assert_eq!(admin.post_form(&format!("/admin/orders/{paid}/sync"), &[("csrf", "forged")]).status, 403);
    assert_eq!(app.order_status(&mut shopper, &paid), "PAY_WAIT");
    let synced = admin.post_form(&format!("/admin/orders/{paid}/sync"), &[("csrf", &csrf)]);
    assert_eq!(synced.status, 303);
    assert_eq!(app.order_status(&mut shopper, &paid), "PAY_SUCCESS");
    app.worker.tick();
    app.wait_for_status(&mut shopper, &paid, "DEAL_DONE");

    assert_eq!(admin.post_form(&format!("/admin/orders/{unpaid}/close"), &[("csrf", &csrf)]).status, 303);
    assert_eq!(app.order_status(&mut shopper, &unpaid), "CLOSE");
    assert_eq!(app.stock(MUG), mug_stock + 1);

    let gift_stock = app.stock(GIFT);
    for _ in 0..2 {
        assert_eq!(admin.post_form(&format!("/admin/orders/{paid}/refund"), &[("csrf", &csrf)]).status, 303);
    }
    assert_eq!(app.order_status(&mut shopper, &paid), "REFUND_WAIT");
    app.worker.tick();
    app.worker.tick();
    assert_eq!(app.order_status(&mut shopper, &paid), "REFUNDED");
    assert_eq!(app.stock(GIFT), gift_stock + 1);
    assert_eq!(app.refunds_at_alipay(&paid), 1, "refunded once");
    let story = admin.get(&format!("/admin/orders/{paid}")).body;
    assert!(
        story.contains("admin admin")
            && story.contains("alipay.trade.query")
            && story.contains("alipay.trade.refund"),
        "{story}"
    );
    assert!(story.contains("REFUNDED"));
}

fn the_outbox_page_shows_dead_entries_and_retries_them(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    // An entry of a kind this build has no consumer for (as a newer instance might enqueue).
    app.execute(
        "INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, \
         created_at, updated_at) VALUES ('no_such_kind', 'k1', NULL, '{}', 'PENDING', 0, \
         '2026-01-01 00:00:00', '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
    );
    // Tick until the entry has used up its attempts (the background thread's first tick at
    // start-up may take one of them).
    for _ in 0..3 * paymall::jobs::MAX_OUTBOX_ATTEMPTS {
        app.worker.tick();
        if app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE status = 'DEAD'") == 1 {
            break;
        }
        app.execute("UPDATE outbox SET next_attempt_at = created_at");
    }
    let mut admin = app.admin();
    let page = admin.get("/admin/outbox").body;
    assert!(
        page.contains("no_such_kind") && page.contains(">DEAD<") && page.contains("no consumer"),
        "{page}"
    );
    let csrf = hidden(&page, "csrf").to_owned();
    let id = app.scalar("SELECT outbox_id AS n FROM outbox");
    assert_eq!(admin.post_form(&format!("/admin/outbox/{id}/retry"), &[("csrf", &csrf)]).status, 303);
    assert_eq!(app.scalar("SELECT COUNT(*) AS n FROM outbox WHERE status = 'PENDING'"), 1);
    // Signing out ends the admin session.
    assert_eq!(admin.post_form("/admin/logout", &[("csrf", &csrf)]).status, 303);
    assert_eq!(admin.get("/admin").status, 303);
}

/// Payments, cancels and placements from several shoppers at once, with the background thread
/// folding meanwhile: the totals equal a full count; and a walk through the older pages that
/// starts before the new orders arrive sees every order that was there once, and nothing twice.
fn totals_and_paging_hold_while_orders_change_at_once(backend: Backend) {
    let app = TestApp::spawn(backend);
    let placed = thirty_orders(&app);
    let mut admin = app.admin();
    let first = admin.get("/admin?per_page=4").body;
    let before: std::collections::BTreeSet<String> = placed.iter().map(|(id, _)| id.clone()).collect();
    std::thread::scope(|scope| {
        for i in 0..6 {
            let app = &app;
            scope.spawn(move || {
                let mut shopper = app.login(&format!("o-busy-{i}"));
                let order_id = order_id_of(&app.create_order(&mut shopper, GIFT));
                if i % 2 == 0 {
                    let trade = format!("20261204220014{i:08}");
                    let notify_id = format!("busy-{i}");
                    let paid = app.signed_notify(
                        &[("out_trade_no", &order_id), ("trade_no", &trade), ("notify_id", &notify_id)],
                        false,
                    );
                    assert_eq!(app.post_notify(&paid), "success");
                } else {
                    let reply = shopper.post_json(
                        "/api/v1/alipay/refund_order",
                        &serde_json::json!({ "orderId": order_id }),
                    );
                    assert_eq!(reply.json()["data"]["message"], "订单已取消", "{}", reply.body);
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..4 {
                app.worker.tick();
            }
        });
        // The walk, while the orders above arrive.
        let mut seen = order_ids(&first);
        let mut page = first.clone();
        while page.contains("id=\"older\"") {
            page = admin.get(&link(&page, "older")).body;
            seen.extend(order_ids(&page));
        }
        let unique: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no order twice: {seen:?}");
        assert_eq!(unique, before, "every order that was there, once");
    });
    assert_totals_exact(&app, &mut admin, false);
    fold_everything(&app);
    assert_totals_exact(&app, &mut admin, true);
}

/// The admin's order list and detail show the order's channel, and Sync asks the gateway of that
/// channel (WeChat Pay has no trade of this number: the order is left as it is, and Alipay is not
/// asked).
fn the_admin_shows_the_channel_and_syncs_through_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    let (mut shopper, paid) = app.paid_unnotified("o-admin-channel", GIFT);
    let mut admin = app.admin();
    let detail = admin.get(&format!("/admin/orders/{paid}")).body;
    assert!(detail.contains("<td id=\"admin-channel\">ALIPAY</td>"), "{detail}");
    assert!(admin.get("/admin").body.contains("<td class=\"channel\">ALIPAY</td>"));

    app.execute(&format!("UPDATE pay_order SET channel = 'WECHAT_PAY' WHERE order_id = '{paid}'"));
    let csrf = admin.csrf(&format!("/admin/orders/{paid}"));
    let synced = admin.post_form(&format!("/admin/orders/{paid}/sync"), &[("csrf", &csrf)]);
    assert_eq!(synced.status, 303);
    let back = admin.get(synced.header("location").expect("back to the order")).body;
    assert!(back.contains("WeChat Pay: the buyer has not opened the cashier"), "{back}");
    assert_eq!(
        app.scalar(&format!(
            "SELECT COUNT(*) AS n FROM gateway_call WHERE order_id = '{paid}' AND call = 'wechat_pay.query'"
        )),
        1
    );
    assert!(back.contains("<td id=\"admin-channel\">WECHAT_PAY</td>"), "{back}");
    assert_eq!(app.order_status(&mut shopper, &paid), "PAY_WAIT", "Alipay was not asked");
}

both_backends!(
    everything_needs_a_signed_in_admin,
    wrong_passwords_are_refused_slowed_and_locked_out,
    a_guesser_locks_out_only_itself,
    a_forwarded_for_from_an_untrusted_peer_is_ignored,
    concurrent_wrong_passwords_are_all_counted,
    sign_ins_over_the_limit_answer_429,
    signing_out_is_a_post_with_the_csrf_token,
    a_phc_hash_works_as_the_password,
    product_edits_need_the_csrf_token_and_valid_values,
    orders_filter_page_and_export,
    orders_are_paged_newest_first,
    cursors_page_through_every_filter_without_gaps_or_repeats,
    totals_per_status_equal_a_full_count_through_changes_and_folds,
    an_event_committed_late_with_a_lower_id_is_still_counted,
    totals_and_paging_hold_while_orders_change_at_once,
    a_filters_total_says_at_least_past_its_cap,
    sync_close_and_refund_move_orders_through_the_sandbox,
    the_admin_shows_the_channel_and_syncs_through_it,
    the_outbox_page_shows_dead_entries_and_retries_them,
);
