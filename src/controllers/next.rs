//! Where to go after logging in (`next`): only a path on this site, whatever a link put there.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

/// Written percent-encoded in the answer: everything outside visible ASCII, and the characters
/// that may not stand bare in a URL or an HTML attribute.
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'<').add(b'>').add(b'`').add(b'\'');

/// `next` as a same-site path, else `/`. Accepted: a value starting with a single `/`, without
/// `//`, `\` or a control character (ASCII or Unicode, formatting marks included), neither as
/// given nor after percent-decoding it once more (the value may have been encoded twice). The
/// answer has every byte outside visible ASCII percent-encoded, so it is safe in a `Location`
/// header and in HTML.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path) if is_local_path(path) && is_local_path(&percent_decode_str(path).decode_utf8_lossy()) => {
            utf8_percent_encode(path, ENCODED).to_string()
        }
        _ => "/".to_owned(),
    }
}

fn is_local_path(path: &str) -> bool {
    path.starts_with('/') && !path.contains("//") && !path.contains('\\') && !path.chars().any(is_control)
}

/// C0, DEL and C1 controls, and the invisible marks that change how text reads: zero-width
/// characters, direction overrides and isolates, line and paragraph separators, the BOM.
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_local_path_stays() {
        assert_eq!(safe_next(Some("/products/1")), "/products/1");
        assert_eq!(safe_next(Some("/orders?page=2&x=%2F")), "/orders?page=2&x=%2F");
        assert_eq!(safe_next(Some("/")), "/");
    }

    #[test]
    fn anything_that_can_leave_the_site_becomes_the_home_page() {
        for bad in [
            "//evil.example",
            "https://evil.example",
            "evil.example",
            "",
            "/\t/evil.example",
            "/%09/evil.example",
            "/\n/evil.example",
            "/\r\nSet-Cookie: x=1",
            "/\\evil.example",
            "\\/evil.example",
            "/%5Cevil.example",
            "/%2F/evil.example",
            "/%2F%2Fevil.example",
            "%2F%2Fevil.example",
            "/x/..//evil.example",
            "/\u{7f}/evil.example",
            "/\u{85}/evil.example",
            "/\u{2028}/evil.example",
            "/\u{202e}/evil.example",
            "/%E2%80%AE/evil.example",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn the_answer_is_visible_ascii() {
        assert_eq!(safe_next(Some("/订单 1")), "/%E8%AE%A2%E5%8D%95%201");
        assert_eq!(safe_next(Some("/\"><script>")), "/%22%3E%3Cscript%3E");
    }

    proptest::proptest! {
        /// Whatever the link says, the answer is a same-site path in visible ASCII that stays one
        /// after another round of decoding, and sanitising it again changes nothing.
        #[test]
        fn the_answer_never_leaves_the_site(next in "(/|%2F|%5C|\\\\|\\PC){0,12}") {
            let answer = safe_next(Some(&next));
            proptest::prop_assert!(answer.starts_with('/'));
            proptest::prop_assert!(answer.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{answer:?}");
            proptest::prop_assert!(!answer.contains("//") && !answer.contains('\\'));
            let decoded = percent_encoding::percent_decode_str(&answer).decode_utf8_lossy().into_owned();
            proptest::prop_assert!(!decoded.contains("//") && !decoded.contains('\\'), "{decoded:?}");
            proptest::prop_assert_eq!(safe_next(Some(&answer)), answer);
        }
    }
}
