//! Unpredictable values (tokens, scenes, nonces) from OpenSSL's CSPRNG.

/// `bytes` random bytes as lowercase hex.
pub fn token_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut buf).expect("the OpenSSL random generator failed");
    hex(&buf)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
