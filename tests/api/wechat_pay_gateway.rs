//! The WeChat Pay client against the sandbox over real HTTP: Native and JSAPI orders paid, the
//! encrypted notifications received and verified, close, refund with its notification, and
//! answers the client must not trust. The notifications go to a listener of the test's own (the
//! shop's notify route is not this test's subject).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

use paymall::gateways::GatewayError;
use paymall::gateways::wechat_pay::{
    CloseOutcome, RefundStatus, SignedHeaders, WechatPayClient, WxNotice, WxTradeState,
};
use paymall::sandbox::wechat_pay::scan_page_url;

use crate::helpers::{Backend, TestApp};

/// A notification as received: the `Wechatpay-*` headers and the raw body.
type Received = (SignedHeaders, String);

/// Listens for notifications, answers each 204, and hands them over.
fn notification_listener() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("listener");
    let url = format!("http://{}/wechat_pay/notify", listener.local_addr().expect("address"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("stream"));
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
                }
            }
            let header = |name: &str| {
                headers.iter().find(|(n, _)| n == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
            };
            let length = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            let signed = SignedHeaders::read(header);
            let _ = stream
                .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send((signed, String::from_utf8(body).expect("UTF-8"))).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

fn in_fifteen_minutes() -> chrono::NaiveDateTime {
    chrono::Utc::now().naive_utc() + chrono::Duration::minutes(15)
}

fn received(rx: &mpsc::Receiver<Received>) -> Received {
    rx.recv_timeout(Duration::from_secs(10)).expect("a notification")
}

#[test]
fn native_and_jsapi_payments_close_and_refund_through_the_sandbox() {
    let (notify_url, notifications) = notification_listener();
    let app = TestApp::spawn_with(Backend::Sqlite, |s| s.wechat_pay.notify_url = notify_url);
    let client = WechatPayClient::from_settings(&app.settings).expect("client");
    let mut browser = app.browser();

    // Native: the code_url is scanned and paid on the sandbox's page.
    let code_url = client.native_order("WX2612050001", "测试礼物", 168, in_fifteen_minutes()).expect("order");
    assert!(code_url.starts_with("weixin://wxpay/bizpayurl?pr="), "{code_url}");
    let again = client.native_order("WX2612050001", "测试礼物", 168, in_fifteen_minutes()).expect("again");
    assert_eq!(again, code_url, "the same order answers the same code_url");
    assert_eq!(client.query("WX2612050001").expect("query"), WxTradeState::NotPay);
    let scan = scan_page_url(&app.address, &code_url).expect("a sandbox code_url");
    let page = browser.get(&scan);
    assert!(page.body.contains("WX2612050001") && page.body.contains("¥1.68"), "{}", page.body);
    let paid = browser.post_form(&format!("{scan}/pay"), &[("openid", "o-sandbox-shopper")]);
    assert_eq!(paid.status, 303, "{}", paid.body);

    let (headers, body) = received(&notifications);
    let verified = client.verify_notification(&headers, &body).expect("a verified notification");
    let WxNotice::Transaction(trade) = verified.notice else { panic!("a transaction") };
    assert_eq!((trade.out_trade_no.as_str(), trade.amount.total), ("WX2612050001", 168));
    assert_eq!(trade.payer.expect("payer").openid, "o-sandbox-shopper");
    let WxTradeState::Paid { transaction_id, total_fen, success_time } =
        client.query("WX2612050001").expect("query")
    else {
        panic!("paid")
    };
    assert_eq!((transaction_id.as_str(), total_fen), (trade.transaction_id.as_str(), 168));
    assert!(success_time.is_some());
    assert_eq!(client.close("WX2612050001").expect("close"), CloseOutcome::AlreadyPaid);

    // A refund, asked twice with the same number, is made once and notified.
    let refund = client
        .refund("WX2612050001", Some(&transaction_id), "RWX2612050001", 100, 168, "测试")
        .expect("refund");
    assert_eq!((refund.status, refund.refund_fen), (RefundStatus::Processing, 100));
    let twice = client.refund("WX2612050001", None, "RWX2612050001", 100, 168, "测试").expect("refund again");
    assert_eq!(twice.refund_id, refund.refund_id);
    let (headers, body) = received(&notifications);
    let WxNotice::Refund(notice) = client.verify_notification(&headers, &body).expect("verified").notice
    else {
        panic!("a refund")
    };
    assert_eq!((notice.out_refund_no.as_str(), notice.refund_status.as_str()), ("RWX2612050001", "SUCCESS"));
    let queried = client.refund_query("RWX2612050001").expect("refund query").expect("a refund");
    assert_eq!(queried.status, RefundStatus::Success);
    assert_eq!(client.refund_query("RWX-none").expect("refund query"), None);
    assert!(
        client.refund("WX2612050001", None, "RWX2612050002", 100, 168, "测试").is_err(),
        "more than is left"
    );
    let ledger = browser.get("/sandbox/wechatpay/ledger").json();
    assert_eq!(ledger["trades"][0]["trade_state"], "REFUND");
    assert_eq!(ledger["trades"][0]["refunded"], 100);
    assert_eq!(ledger["refunds"].as_array().map(Vec::len), Some(1));

    // JSAPI: the page's parameters, checked and paid by the bridge's stand-in.
    let prepay_id = client
        .jsapi_order("WX2612050002", "测试礼物", 3999, in_fifteen_minutes(), "o-sandbox-friend")
        .expect("jsapi order");
    let mut params = client.jsapi_pay_params(&prepay_id);
    params.nonce_str.push('x');
    let forged = browser.post_json("/sandbox/wechatpay/jsapi/pay", &serde_json::to_value(&params).unwrap());
    assert_eq!(forged.json()["err_msg"], "get_brand_wcpay_request:fail");
    let params = client.jsapi_pay_params(&prepay_id);
    let paid = browser.post_json("/sandbox/wechatpay/jsapi/pay", &serde_json::to_value(&params).unwrap());
    assert_eq!(paid.json()["err_msg"], "get_brand_wcpay_request:ok");
    let (headers, body) = received(&notifications);
    let WxNotice::Transaction(trade) = client.verify_notification(&headers, &body).expect("verified").notice
    else {
        panic!("a transaction")
    };
    assert_eq!(trade.payer.expect("payer").openid, "o-sandbox-friend");
    assert!(matches!(client.query("WX2612050002"), Ok(WxTradeState::Paid { total_fen: 3999, .. })));

    // Close, and what the client does not trust.
    client.native_order("WX2612050003", "测试礼物", 168, in_fifteen_minutes()).expect("order");
    assert_eq!(client.close("WX2612050003").expect("close"), CloseOutcome::Closed);
    assert_eq!(client.query("WX2612050003").expect("query"), WxTradeState::Closed);
    assert_eq!(client.close("WX-none").expect("close"), CloseOutcome::NotExist);
    assert_eq!(client.query("WX-none").expect("query"), WxTradeState::NotExist);
    let faults = |faults: serde_json::Value| {
        let reply = app.browser().post_json("/sandbox/wechatpay/faults", &faults);
        assert_eq!(reply.status, 204);
    };
    faults(serde_json::json!({ "bad_answer_signature": true }));
    assert!(
        matches!(client.query("WX2612050003"), Err(GatewayError::BadAnswer { .. })),
        "a 2xx answer badly signed"
    );
    assert!(matches!(client.query("WX-none"), Err(GatewayError::Refused { .. })), "not a NotExist to act on");
    faults(serde_json::json!({ "query_system_error": true }));
    assert!(matches!(client.query("WX2612050003"), Err(GatewayError::Refused { .. })));
    faults(serde_json::json!({}));
}
