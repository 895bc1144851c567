//! `next` after login: whatever the link says, the answer is a same-site path in visible ASCII,
//! still one after another round of decoding, and sanitising it again changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paymall::controllers::next::safe_next;

fuzz_target!(|next: &str| {
    let answer = safe_next(Some(next));
    assert!(answer.starts_with('/'));
    assert!(answer.bytes().all(|b| (0x21..=0x7e).contains(&b)));
    assert!(!answer.contains("//") && !answer.contains('\\'));
    let decoded = percent_encoding::percent_decode_str(&answer).decode_utf8_lossy().into_owned();
    assert!(!decoded.contains("//") && !decoded.contains('\\'));
    assert_eq!(safe_next(Some(&answer)), answer);
});
