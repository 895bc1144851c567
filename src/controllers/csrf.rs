//! CSRF protection for forms: the token is derived from the session token (which lives in an
//! HttpOnly cookie another site can neither read nor guess), so it needs no storage and works
//! on any instance. Shopper and admin forms both use it.

use crate::error::AppError;

/// The token a form must carry for this session.
pub fn token_for(session_token: &str) -> String {
    crate::random::hex(&openssl::sha::sha256(format!("paymall-csrf|{session_token}").as_bytes()))
}

/// Refuses (403) a form whose token does not belong to this session.
pub fn verify(session_token: &str, submitted: Option<&str>) -> Result<(), AppError> {
    let expected = token_for(session_token);
    match submitted {
        Some(given)
            if given.len() == expected.len()
                && openssl::memcmp::eq(given.as_bytes(), expected.as_bytes()) =>
        {
            Ok(())
        }
        _ => Err(AppError::Forbidden(
            "The form has expired or did not come from this site; please try again.".into(),
        )),
    }
}
