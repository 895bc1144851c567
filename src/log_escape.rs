//! Untrusted values in log lines: control characters (a newline that would start a forged log
//! line, a tab, an escape sequence) are written escaped, so one value stays on its own line.

use std::fmt;

/// `{}` of an untrusted value, for a log line: `\n`, `\t`, `\u{1b}` and the like escaped, at
/// most [`MAX_CHARS`] characters.
pub struct Untrusted<'a>(pub &'a str);

/// Longer values are cut, with `…` saying so.
pub const MAX_CHARS: usize = 200;

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (count, ch) in self.0.chars().enumerate() {
            if count == MAX_CHARS {
                return f.write_str("…");
            }
            if ch.is_control() || ch == '\\' {
                write!(f, "{}", ch.escape_default())?;
            } else {
                fmt::Write::write_char(f, ch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Untrusted;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        assert_eq!(Untrusted("26120100\n2026 INFO forged").to_string(), "26120100\\n2026 INFO forged");
        assert_eq!(Untrusted("a\tb\u{1b}[31m\\").to_string(), "a\\tb\\u{1b}[31m\\\\");
        assert_eq!(Untrusted("订单").to_string(), "订单");
        assert_eq!(Untrusted(&"x".repeat(300)).to_string().chars().count(), 201);
    }
}
