//! An Alipay notification body: it parses to unique fields or is refused, never panics, and
//! the content Alipay signs never includes `sign` or `sign_type`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paymall::gateways::alipay::NotifyForm;

fuzz_target!(|body: &str| {
    if let Ok(form) = NotifyForm::parse(body) {
        let content = form.signing_content();
        assert!(!content.split('&').any(|pair| pair.starts_with("sign=") || pair.starts_with("sign_type=")));
        assert_eq!(content, form.signing_content());
    }
});
