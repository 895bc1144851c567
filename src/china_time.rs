//! China time (UTC+8): the zone of Alipay's timestamps and of the shop's display, whatever the
//! server's zone. The database keeps UTC.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};

/// A UTC timestamp in China time.
pub fn to_china(utc: NaiveDateTime) -> DateTime<FixedOffset> {
    let china = FixedOffset::east_opt(8 * 3600).expect("UTC+8");
    Utc.from_utc_datetime(&utc).with_timezone(&china)
}

/// A UTC timestamp as China time, `YYYY-MM-DD HH:MM:SS` (Alipay's format).
pub fn format(utc: NaiveDateTime) -> String {
    to_china(utc).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// China-time text as [`format`] writes it, back to UTC.
pub fn parse(text: &str) -> Option<NaiveDateTime> {
    let local = NaiveDateTime::parse_from_str(text.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
    Some(local - chrono::Duration::hours(8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn china_time_is_utc_plus_eight() {
        let utc = NaiveDateTime::parse_from_str("2026-11-22 20:30:00", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(format(utc), "2026-11-23 04:30:00");
        assert_eq!(parse("2026-11-23 04:30:00"), Some(utc));
    }
}
