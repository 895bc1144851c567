use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::product::Product;

pub fn products_on_sale(conn: &mut DbConn) -> AppResult<Vec<Product>> {
    Ok(Product::list_on_sale(conn)?)
}

/// A product a shopper may look at (on sale or not, so old links still explain themselves).
pub fn product(conn: &mut DbConn, product_id: &str) -> AppResult<Product> {
    Product::find(conn, product_id)?
        .ok_or_else(|| AppError::NotFound(format!("There is no product {product_id}.")))
}
