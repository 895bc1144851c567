//! An amount in yuan: only `^\d{1,10}(\.\d{1,2})?$` parses, and it reads back as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paymall::money::{format_yuan, parse_yuan};

fuzz_target!(|text: &str| {
    if let Some(cents) = parse_yuan(text) {
        let (whole, decimals) = text.split_once('.').map_or((text, None), |(w, d)| (w, Some(d)));
        assert!((1..=10).contains(&whole.len()) && whole.bytes().all(|b| b.is_ascii_digit()));
        assert!(decimals.is_none_or(|d| (1..=2).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit())));
        assert_eq!(parse_yuan(&format_yuan(cents)), Some(cents));
    }
});
