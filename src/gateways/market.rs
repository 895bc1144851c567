//! The original's outside market service: its "team formed" notice (`group_buy_notify`),
//! signed with a shared key.

use serde::Deserialize;

pub use super::hmac_sha256_hex;

/// A verified "team formed" notice: the team and its orders (out_trade_no = our order id).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeamNotice {
    pub team_id: String,
    pub out_trade_no_list: Vec<String>,
}

/// Why a notice is refused: a wrong or missing signature, or a body that is not the notice.
#[derive(Debug, thiserror::Error)]
#[error("group_buy_notify refused: {0}")]
pub struct NoticeRefused(&'static str);

impl TeamNotice {
    /// The notice in `body` if `signature` is the hex HMAC-SHA256 of the body under `key`
    /// (compared in constant time), before the body is read.
    pub fn verify(key: &str, body: &[u8], signature: &str) -> Result<TeamNotice, NoticeRefused> {
        if !super::hmac_matches(key.as_bytes(), body, signature) {
            return Err(NoticeRefused("bad signature"));
        }
        serde_json::from_slice(body).map_err(|_| NoticeRefused("not a team notice"))
    }
}

#[cfg(test)]
mod tests {
    use super::{TeamNotice, hmac_sha256_hex};

    #[test]
    fn a_notice_is_read_only_under_its_signature() {
        // RFC 4231 test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let body = br#"{"teamId":"0000000101","outTradeNoList":["2612040000000101"]}"#;
        let signature = hmac_sha256_hex(b"k", body).unwrap();
        let notice = TeamNotice::verify("k", body, &signature).unwrap();
        assert_eq!(notice.team_id, "0000000101");
        assert!(TeamNotice::verify("other", body, &signature).is_err());
        assert!(TeamNotice::verify("k", body, "").is_err());
        assert!(TeamNotice::verify("k", b"{}", &hmac_sha256_hex(b"k", b"{}").unwrap()).is_err());
    }
}
