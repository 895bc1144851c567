//! WeChat's safe-mode envelope: any ciphertext is opened or refused without a panic, and what
//! the shop seals opens to the same text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paymall::gateways::weixin::safe_mode::SafeMode;

fuzz_target!(|data: &[u8]| {
    let safe = SafeMode::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx123").expect("key");
    let _ = safe.decrypt(&String::from_utf8_lossy(data));
    let text = String::from_utf8_lossy(data);
    assert_eq!(safe.decrypt(&safe.encrypt(&text).expect("seal")).expect("open"), text);
});
