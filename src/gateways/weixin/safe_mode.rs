//! Safe mode (`encrypt_type=aes`): the encrypted envelope of pushes and replies.

use openssl::error::ErrorStack;
use openssl::symm::{Cipher, Crypter, Mode};

use super::portal::{cdata, signature};
use crate::error::AppError;

/// Why safe mode cannot be set up, or a message cannot be opened or sealed.
#[derive(Debug, thiserror::Error)]
pub enum SafeModeError {
    #[error("weixin.encoding_aes_key is not a 43-character EncodingAESKey")]
    BadKey,
    /// A message that does not open to one for our appid: what is wrong with it.
    #[error("safe-mode message refused: {0}")]
    Refused(&'static str),
    #[error("cannot seal the message")]
    Seal(#[source] ErrorStack),
}

/// A refused message is the sender's fault (400, why in the log only); the rest are ours (500).
impl From<SafeModeError> for AppError {
    fn from(e: SafeModeError) -> Self {
        match e {
            SafeModeError::Refused(_) => {
                log::info!("weixin portal: {e}");
                AppError::BadRequest("safe-mode message refused".into())
            }
            SafeModeError::BadKey => AppError::internal(e),
            SafeModeError::Seal(ref source) => AppError::Internal(format!("{e}: {source}")),
        }
    }
}

/// AES-256-CBC, key = base64(EncodingAESKey + "="), IV = the key's first 16 bytes, PKCS#7
/// padding to 32-byte blocks; plaintext = 16 random bytes | u32 BE length | message | appid.
pub struct SafeMode {
    key: Vec<u8>,
    app_id: String,
}

impl SafeMode {
    pub fn new(encoding_aes_key: &str, app_id: &str) -> Result<SafeMode, SafeModeError> {
        let key = openssl::base64::decode_block(&format!("{encoding_aes_key}="))
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or(SafeModeError::BadKey)?;
        Ok(SafeMode { key, app_id: app_id.to_owned() })
    }

    fn crypt(&self, mode: Mode, data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        let cipher = Cipher::aes_256_cbc();
        let mut crypter = Crypter::new(cipher, mode, &self.key, Some(&self.key[..16]))?;
        crypter.pad(false);
        let mut out = vec![0; data.len() + cipher.block_size()];
        let mut n = crypter.update(data, &mut out)?;
        n += crypter.finalize(&mut out[n..])?;
        out.truncate(n);
        Ok(out)
    }

    pub fn decrypt(&self, encrypted_b64: &str) -> Result<String, SafeModeError> {
        let refuse = SafeModeError::Refused;
        let data = openssl::base64::decode_block(encrypted_b64.trim()).map_err(|_| refuse("not Base64"))?;
        if data.is_empty() || data.len() % 32 != 0 {
            return Err(refuse("bad length"));
        }
        let plain = self.crypt(Mode::Decrypt, &data).map_err(|_| refuse("cannot decrypt"))?;
        let pad = *plain.last().unwrap_or(&0) as usize;
        if !(1..=32).contains(&pad) || pad > plain.len() || plain.len() < 20 + pad {
            return Err(refuse("bad padding"));
        }
        let body = &plain[16..plain.len() - pad];
        let length = u32::from_be_bytes([body[0], body[1], body[2], body[3]]) as usize;
        if body.len() < 4 + length {
            return Err(refuse("bad message length"));
        }
        let (message, app_id) = body[4..].split_at(length);
        if app_id != self.app_id.as_bytes() {
            return Err(refuse("it is for another appid"));
        }
        String::from_utf8(message.to_vec()).map_err(|_| refuse("not UTF-8"))
    }

    pub fn encrypt(&self, message: &str) -> Result<String, SafeModeError> {
        let mut plain = vec![0u8; 16];
        openssl::rand::rand_bytes(&mut plain).map_err(SafeModeError::Seal)?;
        plain.extend_from_slice(&(message.len() as u32).to_be_bytes());
        plain.extend_from_slice(message.as_bytes());
        plain.extend_from_slice(self.app_id.as_bytes());
        let pad = 32 - plain.len() % 32;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let encrypted = self.crypt(Mode::Encrypt, &plain).map_err(SafeModeError::Seal)?;
        Ok(openssl::base64::encode_block(&encrypted))
    }

    /// The encrypted reply envelope, signed with `msg_signature`.
    pub fn wrap_reply(
        &self,
        token: &str,
        reply_xml: &str,
        timestamp: &str,
        nonce: &str,
    ) -> Result<String, SafeModeError> {
        let encrypted = self.encrypt(reply_xml)?;
        let msg_signature = signature(&[token, timestamp, nonce, &encrypted]);
        Ok(format!(
            "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{timestamp}</TimeStamp><Nonce>{}</Nonce></xml>",
            cdata(&encrypted),
            cdata(&msg_signature),
            cdata(nonce)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_mode_round_trips_and_checks_the_appid() {
        let key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
        let ours = SafeMode::new(key, "wx123").unwrap();
        let theirs = SafeMode::new(key, "wx999").unwrap();
        let sealed = ours.encrypt("<xml>hi</xml>").unwrap();
        assert_eq!(ours.decrypt(&sealed).unwrap(), "<xml>hi</xml>");
        assert!(theirs.decrypt(&sealed).is_err());
    }

    proptest::proptest! {
        /// Safe mode opens what it sealed and refuses anything else without a panic.
        #[test]
        fn safe_mode_round_trips_and_refuses_junk(message in "\\PC{0,64}", junk in proptest::collection::vec(proptest::num::u8::ANY, 0..96)) {
            let safe = SafeMode::new("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "wx123").unwrap();
            proptest::prop_assert_eq!(safe.decrypt(&safe.encrypt(&message).unwrap()).unwrap(), message);
            let _ = safe.decrypt(&openssl::base64::encode_block(&junk));
        }
    }
}
