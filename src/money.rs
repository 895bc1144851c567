//! Money is integer cents everywhere inside the shop; these helpers convert at the edges
//! (pages, the JSON API and Alipay's "1.68" strings).

use bigdecimal::{BigDecimal, ToPrimitive};

/// `168` -> `"1.68"`, the format Alipay and the original API use.
pub fn format_yuan(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// An amount in yuan as few characters say it: `5000` -> `50`, `1050` -> `10.5`.
pub fn short_yuan(cents: i64) -> String {
    let text = format_yuan(cents);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A rate in basis points as 折: 8000 -> `8`, 8500 -> `8.5`, 8850 -> `8.85`.
pub fn zhe(rate_bp: i32) -> String {
    let text = format!("{}.{:03}", rate_bp / 1000, rate_bp % 1000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Parses an amount in yuan exactly (`"1.68"`, `"1.6"`, `"2"`) into cents. Only
/// `^\d{1,10}(\.\d{1,2})?$` is an amount: no sign, spaces, exponent, leading `.` or third
/// decimal, so every reader of an amount (notifications, query answers, admin forms) agrees on
/// what a string means before the decimal is parsed.
pub fn parse_yuan(text: &str) -> Option<i64> {
    if !is_amount(text) {
        return None;
    }
    let value: BigDecimal = text.parse().ok()?;
    (value * BigDecimal::from(100)).to_i64()
}

/// `^\d{1,10}(\.\d{1,2})?$`, checked by hand.
fn is_amount(text: &str) -> bool {
    let (whole, decimals) = match text.split_once('.') {
        Some((whole, decimals)) => (whole, Some(decimals)),
        None => (text, None),
    };
    let digits =
        |part: &str, max: usize| (1..=max).contains(&part.len()) && part.bytes().all(|b| b.is_ascii_digit());
    digits(whole, 10) && decimals.is_none_or(|d| digits(d, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_cents_as_yuan() {
        assert_eq!(format_yuan(168), "1.68");
        assert_eq!(format_yuan(5), "0.05");
        assert_eq!(format_yuan(5800), "58.00");
        assert_eq!(format_yuan(-120), "-1.20");
    }

    #[test]
    fn parses_yuan_exactly() {
        assert_eq!(parse_yuan("1.68"), Some(168));
        assert_eq!(parse_yuan("1.6"), Some(160));
        assert_eq!(parse_yuan("2"), Some(200));
        assert_eq!(parse_yuan("0.01"), Some(1));
        assert_eq!(parse_yuan("1.681"), None);
        assert_eq!(parse_yuan("abc"), None);
        assert_eq!(parse_yuan(""), None);
        assert_eq!(parse_yuan("9999999999.99"), Some(999_999_999_999));
    }

    #[test]
    fn refuses_every_other_spelling_of_a_number() {
        for text in [
            "12.500",
            "012.500",
            "12.5e0",
            "1e2",
            " 12.50",
            "12.50 ",
            "+1.00",
            "-1.00",
            ".5",
            "5.",
            "1..2",
            "1.2.3",
            "12345678901",
            "1_000",
            "１２",
            "0x10",
            "NaN",
            "inf",
            "1,00",
        ] {
            assert_eq!(parse_yuan(text), None, "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn every_amount_reads_back_as_written(cents in 0i64..1_000_000_000_000) {
            proptest::prop_assert_eq!(parse_yuan(&format_yuan(cents)), Some(cents));
        }

        #[test]
        fn only_the_amount_pattern_parses(text in "\\PC{0,16}") {
            let pattern = text.split_once('.').map_or((text.as_str(), None), |(w, d)| (w, Some(d)));
            let digits = |part: &str, max: usize| (1..=max).contains(&part.len()) && part.chars().all(|c| c.is_ascii_digit());
            let expected = digits(pattern.0, 10) && pattern.1.is_none_or(|d| digits(d, 2));
            proptest::prop_assert_eq!(parse_yuan(&text).is_some(), expected);
        }
    }
}
