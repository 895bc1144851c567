//! A WeChat push: the XML parses or is refused, never panics; a reply to a parsed message
//! carries any text back as written (line ends read as XML reads them: `\r` becomes `\n`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paymall::gateways::weixin::portal::{parse, text_reply};

fuzz_target!(|xml: &str| {
    if let Ok(message) = parse(xml) {
        let reply = parse(&text_reply(&message, xml, 1)).expect("our own reply parses");
        assert_eq!(reply.content, xml.replace("\r\n", "\n").replace('\r', "\n"));
    }
});
