//! Who is asking: the shopper behind the session cookie or the `Authorization: Bearer` token.
//! Identity never comes from a request body.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::error::AppError;
use crate::models::user::AppUser;
use crate::services::session::{self, SESSION_COOKIE};
use crate::state::AppState;

/// A logged-in shopper; extracting it fails with `NotLoggedIn` otherwise.
#[derive(Debug, Clone)]
pub struct Shopper {
    pub user: AppUser,
    pub token: String,
}

/// The shopper if logged in, for pages that also serve visitors.
#[derive(Debug, Clone)]
pub struct MaybeShopper(pub Option<Shopper>);

impl MaybeShopper {
    pub fn nav(&self) -> super::Nav {
        super::Nav {
            openid: self.0.as_ref().map(|s| s.user.openid.clone()),
            csrf: self.0.as_ref().map(|s| super::csrf::token_for(&s.token)).unwrap_or_default(),
        }
    }
}

pub fn session_token(req: &HttpRequest) -> Option<String> {
    let bearer = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned());
    bearer.or_else(|| req.cookie(SESSION_COOKIE).map(|c| c.value().to_owned())).filter(|t| !t.is_empty())
}

async fn lookup(req: HttpRequest) -> Result<Option<Shopper>, AppError> {
    let Some(token) = session_token(&req) else { return Ok(None) };
    let state =
        req.app_data::<web::Data<AppState>>().ok_or_else(|| AppError::internal("no app state"))?.clone();
    let lookup_token = token.clone();
    let user = state.engine.run(move |conn| session::user_for_token(conn, &lookup_token)).await?;
    Ok(user.map(|user| Shopper { user, token }))
}

impl FromRequest for MaybeShopper {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { lookup(req).await.map(MaybeShopper) })
    }
}

impl FromRequest for Shopper {
    type Error = AppError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, AppError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { lookup(req).await?.ok_or(AppError::NotLoggedIn) })
    }
}
