//! The shop's languages: Chinese (`zh-CN`, the default) and English. Every text a page shows
//! comes from the message files `templates/locales/<lang>.ftl` (Fluent), compiled into the
//! binary; templates look texts up by key through [`Lang::t`]. API `info` texts are not
//! translated: they stay the original's Chinese constants whatever the page language.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;

use chrono::NaiveDateTime;
use fluent_templates::fluent_bundle::FluentValue;
use fluent_templates::{LanguageIdentifier, Loader, langid};

use crate::models::order::{Order, OrderStatus};

fluent_templates::static_loader! {
    static MESSAGES = {
        locales: "./templates/locales",
        fallback_language: "zh-CN",
        // Texts go into HTML and plain text: no bidirectional isolation marks around values.
        customise: |bundle| bundle.set_use_isolating(false),
    };
}

static ZH_CN: LanguageIdentifier = langid!("zh-CN");
static EN: LanguageIdentifier = langid!("en");

/// The cookie that keeps a shopper's choice of language.
pub const LANG_COOKIE: &str = "lang";

/// A language the pages are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    #[default]
    ZhCn,
    En,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The language tag, as `<html lang>`, the `lang` cookie and `?lang=` spell it.
    pub fn code(self) -> &'static str {
        match self {
            Lang::ZhCn => "zh-CN",
            Lang::En => "en",
        }
    }

    /// A `lang` cookie or `?lang=` value: `zh-CN` or `en` (any case), else nothing.
    pub fn parse(text: &str) -> Option<Lang> {
        Lang::ALL.into_iter().find(|lang| lang.code().eq_ignore_ascii_case(text))
    }

    /// The language an `Accept-Language` header asks for: English only when it prefers some `en`
    /// over every `zh` (a higher weight, or the same weight listed first), else Chinese.
    pub fn from_accept_language(header: &str) -> Lang {
        let mut best: Option<(f32, Lang)> = None;
        for entry in header.split(',') {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or("").trim();
            let primary = tag.split(['-', '_']).next().unwrap_or("");
            let lang = if primary.eq_ignore_ascii_case("en") {
                Lang::En
            } else if primary.eq_ignore_ascii_case("zh") {
                Lang::ZhCn
            } else {
                continue;
            };
            let weight = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if weight > 0.0 && best.is_none_or(|(top, _)| weight > top) {
                best = Some((weight, lang));
            }
        }
        best.map_or(Lang::ZhCn, |(_, lang)| lang)
    }

    fn id(self) -> &'static LanguageIdentifier {
        match self {
            Lang::ZhCn => &ZH_CN,
            Lang::En => &EN,
        }
    }

    /// The message `key` in this language.
    pub fn t(&self, key: &str) -> String {
        MESSAGES.lookup(self.id(), key)
    }

    /// The message `key` with its one variable `name` (`{ $name }` in the message) set to `value`.
    pub fn tv(&self, key: &str, name: &'static str, value: impl std::fmt::Display) -> String {
        let args = HashMap::from([(Cow::Borrowed(name), FluentValue::from(value.to_string()))]);
        MESSAGES.lookup_with_args(self.id(), key, &args)
    }

    /// The message of one value of a coded set: `keyed("status", "DEAL_DONE")` is the message
    /// `status-DEAL_DONE`.
    pub fn keyed(&self, prefix: &str, code: impl std::fmt::Display) -> String {
        self.t(&format!("{prefix}-{code}"))
    }

    /// An order status in the shopper's words (待支付, 已发货, ...).
    pub fn status(&self, status: impl Borrow<OrderStatus>) -> String {
        self.keyed("status", status.borrow())
    }

    /// What an order of this status waits for or has come to, a sentence for the order page.
    pub fn status_detail(&self, status: impl Borrow<OrderStatus>) -> String {
        self.keyed("status-detail", status.borrow())
    }

    /// The order's status in the shopper's words: a paid group order waiting for its team reads
    /// 待成团 (`status-TEAM_WAIT`).
    pub fn order_status(&self, order: &Order) -> String {
        self.keyed("status", order.status_words())
    }

    /// [`Lang::status_detail`] of the order, as [`Lang::order_status`] reads it.
    pub fn order_status_detail(&self, order: &Order) -> String {
        self.keyed("status-detail", order.status_words())
    }

    /// A UTC timestamp as a shopper reads it, in China time: `Y年M月D日 HH:MM` (the month and day
    /// without a leading zero), or `YYYY-MM-DD HH:MM` in English.
    pub fn time(&self, utc: impl Borrow<NaiveDateTime>) -> String {
        let china = crate::china_time::to_china(*utc.borrow());
        match self {
            Lang::ZhCn => china.format("%Y年%-m月%-d日 %H:%M").to_string(),
            Lang::En => china.format("%Y-%m-%d %H:%M").to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The message keys a Fluent file defines: each line that starts a message (`key = ...`).
    fn keys(lang: Lang) -> BTreeSet<String> {
        let path = format!("{}/templates/locales/{}.ftl", env!("CARGO_MANIFEST_DIR"), lang.code());
        let text = std::fs::read_to_string(&path).expect("message file");
        text.lines()
            .filter(|line| line.starts_with(|c: char| c.is_ascii_alphabetic()))
            .filter_map(|line| line.split_once('=').map(|(key, _)| key.trim().to_owned()))
            .collect()
    }

    #[test]
    fn every_message_exists_in_both_languages() {
        let chinese = keys(Lang::ZhCn);
        let english = keys(Lang::En);
        assert!(chinese.len() > 50, "{} keys", chinese.len());
        let only_chinese: Vec<_> = chinese.difference(&english).collect();
        let only_english: Vec<_> = english.difference(&chinese).collect();
        assert!(only_chinese.is_empty(), "missing in en.ftl: {only_chinese:?}");
        assert!(only_english.is_empty(), "missing in zh-CN.ftl: {only_english:?}");
        // Every variable the messages use, so that each message can be formatted.
        let variables: HashMap<Cow<'static, str>, FluentValue> =
            ["id", "count", "code", "time", "days", "ids", "amount", "orders", "hours", "who", "n", "scope"]
                .into_iter()
                .map(|name| (Cow::Borrowed(name), FluentValue::from("1")))
                .collect();
        for lang in Lang::ALL {
            for key in &chinese {
                let text = MESSAGES.lookup_with_args(lang.id(), key, &variables);
                assert!(!text.starts_with("Unknown localization key"), "{key} in {lang:?}: {text}");
            }
        }
    }

    #[test]
    fn every_order_status_has_words() {
        for status in crate::models::order::OrderStatus::ALL {
            for lang in Lang::ALL {
                let words = lang.status(status);
                assert!(!words.starts_with("Unknown") && !words.is_empty(), "{status} in {lang:?}");
            }
        }
        assert_eq!(Lang::ZhCn.status(crate::models::order::OrderStatus::DealDone), "已发货");
    }

    #[test]
    fn accept_language_prefers_chinese_unless_english_comes_first() {
        assert_eq!(Lang::from_accept_language(""), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("fr-FR,de;q=0.8"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("en"), Lang::En);
        assert_eq!(Lang::from_accept_language("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En);
        assert_eq!(Lang::from_accept_language("zh-CN,zh;q=0.9,en;q=0.8"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("zh;q=0.5, en;q=0.7"), Lang::En);
        assert_eq!(Lang::from_accept_language("zh, en"), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("en;q=0, zh;q=0.1"), Lang::ZhCn);
    }

    #[test]
    fn shopper_times_are_china_time_in_words() {
        let utc = NaiveDateTime::parse_from_str("2026-12-04 13:05:09", "%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(Lang::ZhCn.time(utc), "2026年12月4日 21:05");
        assert_eq!(Lang::En.time(utc), "2026-12-04 21:05");
    }

    #[test]
    fn only_known_tags_parse() {
        assert_eq!(Lang::parse("en"), Some(Lang::En));
        assert_eq!(Lang::parse("zh-cn"), Some(Lang::ZhCn));
        assert_eq!(Lang::parse("fr"), None);
    }
}
