use std::sync::Arc;

use actix_web::{HttpResponse, web};
use askama::Template;

use super::identity::MaybeShopper;
use super::{Nav, filters, render};
use crate::error::AppError;
use crate::models::product::Product;
use crate::services::catalogue;
use crate::state::AppState;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(list)).route("/products/{product_id}", web::get().to(detail));
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    nav: Nav,
    products: Arc<[Product]>,
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    nav: Nav,
    product: Product,
    /// The Buy form's token, for a logged-in shopper.
    csrf: Option<String>,
}

async fn list(state: web::Data<AppState>, shopper: MaybeShopper) -> Result<HttpResponse, AppError> {
    let products = state.shop_window.products(|| state.engine.run(catalogue::products_on_sale)).await?;
    render(&ProductsPage { nav: shopper.nav(), products })
}

async fn detail(
    state: web::Data<AppState>,
    shopper: MaybeShopper,
    path: web::Path<String>,
) -> Result<HttpResponse, AppError> {
    let product_id = path.into_inner();
    let product = state.engine.run(move |conn| catalogue::product(conn, &product_id)).await?;
    let csrf = shopper.0.as_ref().map(|s| super::csrf::token_for(&s.token));
    render(&ProductPage { nav: shopper.nav(), product, csrf })
}
