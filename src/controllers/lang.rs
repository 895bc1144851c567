//! The page language of a request: `?lang=` (which also sets the `lang` cookie, see
//! [`remember_choice`]), else the `lang` cookie, else `Accept-Language`, else Chinese.

use std::future::{Ready, ready};

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{ACCEPT_LANGUAGE, HeaderValue, SET_COOKIE};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpRequest};

use crate::error::AppError;
use crate::i18n::{LANG_COOKIE, Lang};

/// How long a shopper's choice of language is kept.
const CHOICE_DAYS: i64 = 365;

/// The language `?lang=` picks, when the query names a known one.
fn chosen(query: &str) -> Option<Lang> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .ok()?
        .into_iter()
        .find_map(|(name, value)| (name == "lang").then(|| Lang::parse(&value)).flatten())
}

/// The page language of `req`.
pub fn of_request(req: &HttpRequest) -> Lang {
    chosen(req.query_string())
        .or_else(|| req.cookie(LANG_COOKIE).and_then(|c| Lang::parse(c.value())))
        .or_else(|| {
            let header = req.headers().get(ACCEPT_LANGUAGE)?.to_str().ok()?;
            Some(Lang::from_accept_language(header))
        })
        .unwrap_or_default()
}

impl FromRequest for Lang {
    type Error = AppError;
    type Future = Ready<Result<Lang, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(of_request(req)))
    }
}

/// Middleware for the pages: a request with `?lang=en` or `?lang=zh-CN` keeps the choice in the
/// `lang` cookie. The API and the static files are left alone (their answers do not change with
/// the language).
pub async fn remember_choice(
    req: ServiceRequest,
    next: Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let path = req.path();
    let choice =
        if path.starts_with("/api/") || path.starts_with("/public/") || !req.query_string().contains("lang=")
        {
            None
        } else {
            chosen(req.query_string())
        };
    let mut res = next.call(req).await?;
    if let Some(lang) = choice {
        let cookie = Cookie::build(LANG_COOKIE, lang.code())
            .path("/")
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::days(CHOICE_DAYS))
            .finish();
        if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
            res.headers_mut().append(SET_COOKIE, value);
        }
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_query_wins_then_the_cookie_then_the_header() {
        let header = || (ACCEPT_LANGUAGE, "en-US,en;q=0.9");
        assert_eq!(of_request(&TestRequest::default().to_http_request()), Lang::ZhCn);
        assert_eq!(of_request(&TestRequest::default().insert_header(header()).to_http_request()), Lang::En);
        let cookie = Cookie::new(LANG_COOKIE, "zh-CN");
        let with_cookie = TestRequest::default().insert_header(header()).cookie(cookie.clone());
        assert_eq!(of_request(&with_cookie.to_http_request()), Lang::ZhCn);
        let with_query = TestRequest::with_uri("/?a=1&lang=en").cookie(cookie);
        assert_eq!(of_request(&with_query.to_http_request()), Lang::En);
        let unknown = TestRequest::with_uri("/?lang=fr").insert_header(header());
        assert_eq!(of_request(&unknown.to_http_request()), Lang::En);
    }
}
