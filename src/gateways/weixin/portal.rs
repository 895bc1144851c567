//! The pushes WeChat sends to our portal: their signature, the message XML, and the passive
//! text reply. Safe mode's envelope is in [`super::safe_mode`].

use serde::Deserialize;

use crate::error::AppError;

/// `sha1(sort(parts).join(""))` in lowercase hex: WeChat's signature of a push.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    crate::random::hex(&openssl::sha::sha1(sorted.concat().as_bytes()))
}

/// Whether `given` is `expected`, compared in constant time.
pub fn signature_matches(expected: &str, given: &str) -> bool {
    given.len() == expected.len() && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes())
}

/// A pushed message; WeChat adds fields over time, so unknown ones are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WxMessage {
    #[serde(rename = "ToUserName")]
    pub to_user: String,
    #[serde(rename = "FromUserName")]
    pub from_user: String,
    #[serde(rename = "CreateTime")]
    pub create_time: String,
    #[serde(rename = "MsgType")]
    pub msg_type: String,
    #[serde(rename = "Event")]
    pub event: String,
    #[serde(rename = "EventKey")]
    pub event_key: String,
    #[serde(rename = "Ticket")]
    pub ticket: String,
    #[serde(rename = "Content")]
    pub content: String,
    #[serde(rename = "MsgId")]
    pub msg_id: String,
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
}

/// A push body that is not a message's XML.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML")]
pub struct MalformedXml(#[from] quick_xml::DeError);

/// A malformed push is the sender's fault (400); the parser's account goes to the log only.
impl From<MalformedXml> for AppError {
    fn from(e: MalformedXml) -> Self {
        log::info!("weixin portal: {e}: {}", crate::log_escape::Untrusted(&e.0.to_string()));
        AppError::BadRequest(e.to_string())
    }
}

pub fn parse(xml: &str) -> Result<WxMessage, MalformedXml> {
    Ok(quick_xml::de::from_str(xml)?)
}

/// The passive text reply, with the names swapped.
pub fn text_reply(message: &WxMessage, content: &str, now_secs: i64) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{now_secs}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content></xml>",
        cdata(&message.from_user),
        cdata(&message.to_user),
        cdata(content)
    )
}

/// CDATA that survives a `]]>` inside the text.
pub fn cdata(text: &str) -> String {
    format!("<![CDATA[{}]]>", text.replace("]]>", "]]]]><![CDATA[>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_sorts_before_hashing() {
        assert_eq!(signature(&["b", "a", "c"]), signature(&["c", "b", "a"]));
        assert_eq!(signature(&["abc"]), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }

    #[test]
    fn cdata_splits_its_terminator() {
        assert_eq!(cdata("a]]>b"), "<![CDATA[a]]]]><![CDATA[>b]]>");
    }

    #[test]
    fn parses_a_scan_event_and_ignores_unknown_fields() {
        let xml = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName><CreateTime>123</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[qrscene_abc]]></EventKey><Ticket><![CDATA[t]]></Ticket><New>1</New></xml>";
        let m = parse(xml).unwrap();
        assert_eq!(
            (m.from_user.as_str(), m.event_key.as_str(), m.create_time.as_str()),
            ("o1", "qrscene_abc", "123")
        );
        assert!(parse("<xml><ToUserName>").is_err());
    }

    proptest::proptest! {
        /// Whatever WeChat or an attacker sends: the parser answers, it never panics.
        #[test]
        fn any_body_parses_or_is_refused(xml in "\\PC{0,80}") {
            let _ = parse(&xml);
        }

        /// A reply carries any text, `]]>` included, back out unchanged.
        #[test]
        fn a_reply_reads_back_as_written(openid in "[a-zA-Z0-9_-]{1,28}", content in "\\PC{0,40}") {
            let message = WxMessage { from_user: openid.clone(), to_user: "gh_1".into(), ..WxMessage::default() };
            let reply = parse(&text_reply(&message, &content, 1)).unwrap();
            proptest::prop_assert_eq!((reply.to_user, reply.content), (openid, content));
        }
    }
}
