//! Money is integer cents everywhere inside the shop; these helpers convert at the edges
//! (pages, the JSON API and Alipay's "1.68" strings).

use bigdecimal::{BigDecimal, ToPrimitive};

/// `168` -> `"1.68"`, the format Alipay and the original API use.
pub fn format_yuan(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// Parses an amount in yuan exactly (`"1.68"`, `"1.6"`, `"2"`) into cents; `None` when it is not
/// a number or has more than two decimals.
pub fn parse_yuan(text: &str) -> Option<i64> {
    let value: BigDecimal = text.trim().parse().ok()?;
    let cents = value * BigDecimal::from(100);
    if !cents.is_integer() {
        return None;
    }
    cents.to_i64()
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
    }
}
