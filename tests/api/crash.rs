//! `kill -9` of an instance while notifications pour in, then a restart: afterwards the database
//! agrees with the sandbox's ledger for every order, nothing lost and nothing doubled.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::helpers::{Backend, Browser, GIFT, TestApp, both_backends};

/// The real binary as a second instance on the same database, with the in-process app's
/// sandbox as its WeChat and Alipay.
fn start_instance(platform: &TestApp, port: u16) -> Child {
    let s = &platform.settings;
    let dir = platform.db.dir();
    let mut command = Command::new(env!("CARGO_BIN_EXE_paymall"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PAYMALL")) {
        command.env_remove(key);
    }
    command
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_LOG", "warn")
        .env("PAYMALL__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("PAYMALL__DATABASE__URL", &platform.db.url)
        .env("PAYMALL__DATABASE__POOL_SIZE", "4")
        .env("PAYMALL__SANDBOX__ENABLED", "false")
        .env("PAYMALL__WEIXIN__APP_SECRET", s.weixin.app_secret.expose())
        .env("PAYMALL__WEIXIN__TOKEN", s.weixin.token.expose())
        .env("PAYMALL__WEIXIN__API_BASE_URL", &s.weixin.api_base_url)
        .env("PAYMALL__WEIXIN__QRCODE_SHOW_URL", &s.weixin.qrcode_show_url)
        .env("PAYMALL__WEIXIN__OAUTH_AUTHORIZE_URL", &s.weixin.oauth_authorize_url)
        .env("PAYMALL__ALIPAY__GATEWAY_URL", &s.alipay.gateway_url)
        // Alipay alone: WeChat Pay off (its merchant unset).
        .env("PAYMALL__WECHAT_PAY__MCH_ID", "")
        .env("PAYMALL__ALIPAY__MERCHANT_PRIVATE_KEY_PATH", &s.alipay.merchant_private_key_path)
        .env("PAYMALL__ALIPAY__ALIPAY_PUBLIC_KEY_PATH", &s.alipay.alipay_public_key_path)
        .env("PAYMALL__ADMIN__PASSWORD", "crash-test")
        .env("PAYMALL__COMPENSATION__INTERVAL_SECS", "1")
        .env("PAYMALL__COMPENSATION__QUERY_AFTER_SECS", "2")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("instance-{port}.log"))).expect("log file"));
    let mut child = command.spawn().expect("start paymall");
    let ready = Instant::now() + Duration::from_secs(30);
    while Browser::new(&format!("http://127.0.0.1:{port}")).get_status("/readyz") != Some(200) {
        if Instant::now() > ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the second instance did not become ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

fn kill_nine_during_notifies_loses_and_doubles_nothing(backend: Backend) {
    let platform = TestApp::spawn_with(backend, |s| s.compensation.interval_secs = 3600);
    platform.execute("UPDATE product SET stock = 100000");
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let mut instance = start_instance(&platform, port);
    let base = format!("http://127.0.0.1:{port}");

    const ORDERS: usize = 60;
    let mut forms = Vec::new();
    for i in 0..ORDERS {
        let mut shopper = platform.login_at(&base, &format!("o-crash-{i}"));
        forms.push((platform.create_order(&mut shopper, GIFT), shopper));
    }
    // Every buyer pays; the sandbox starts notifying the instance, which dies a third of the way
    // through (the rest of the notifications find it dead and are resent).
    let paying = std::sync::atomic::AtomicUsize::new(0);
    let paid: Vec<String> = std::thread::scope(|s| {
        let payer = s.spawn(|| {
            let mut ids = Vec::new();
            for (form, shopper) in forms.iter_mut() {
                ids.push(platform.pay_at_cashier(shopper, form));
                paying.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            ids
        });
        while paying.load(std::sync::atomic::Ordering::SeqCst) < ORDERS / 3 {
            std::thread::sleep(Duration::from_millis(5));
        }
        instance.kill().expect("kill -9");
        let _ = instance.wait();
        payer.join().expect("payer")
    });
    let settled_before =
        platform.scalar("SELECT COUNT(*) AS n FROM pay_order WHERE status IN ('PAY_SUCCESS', 'DEAL_DONE')");
    assert!((settled_before as usize) < ORDERS, "the kill came while notifications were still arriving");

    let mut restarted = start_instance(&platform, port);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let done = platform.scalar("SELECT COUNT(*) AS n FROM pay_order WHERE status = 'DEAL_DONE'");
        if done as usize == ORDERS || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = restarted.kill();
    let _ = restarted.wait();

    let ledger = platform.ledger();
    for order_id in &paid {
        assert_eq!(ledger[order_id]["status"], "TRADE_SUCCESS");
        let status = platform.scalar(&format!(
            "SELECT CAST(CASE status WHEN 'DEAL_DONE' THEN 1 ELSE 0 END AS BIGINT) AS n FROM pay_order \
             WHERE order_id = '{order_id}'"
        ));
        assert_eq!(status, 1, "order {order_id} is paid at Alipay and must be delivered");
    }
    assert_eq!(
        platform.scalar("SELECT COUNT(*) AS n FROM shipment"),
        ORDERS as i64,
        "each delivered exactly once"
    );
    assert_eq!(
        platform.scalar("SELECT COUNT(*) AS n FROM order_event WHERE to_status = 'PAY_SUCCESS'"),
        ORDERS as i64
    );
}

both_backends!(kill_nine_during_notifies_loses_and_doubles_nothing);
