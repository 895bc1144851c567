use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::db::DbConn;
use crate::db::schema::product;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = product)]
pub struct Product {
    pub product_id: String,
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i64,
    pub on_sale: bool,
    pub image_url: String,
    pub sort_order: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

impl Product {
    /// What the shop window shows: products on sale, in the shop's order.
    pub fn list_on_sale(conn: &mut DbConn) -> QueryResult<Vec<Product>> {
        product::table
            .filter(product::on_sale.eq(true))
            .order((product::sort_order.asc(), product::product_id.asc()))
            .select(Product::as_select())
            .load(conn)
    }

    pub fn all(conn: &mut DbConn) -> QueryResult<Vec<Product>> {
        product::table
            .order((product::sort_order.asc(), product::product_id.asc()))
            .select(Product::as_select())
            .load(conn)
    }

    pub fn find(conn: &mut DbConn, product_id: &str) -> QueryResult<Option<Product>> {
        product::table.find(product_id).select(Product::as_select()).first(conn).optional()
    }
}

/// Reserves one unit; false when sold out or not on sale (stock never goes below zero).
pub fn reserve_one(conn: &mut DbConn, product_id: &str) -> QueryResult<bool> {
    diesel::update(
        product::table
            .filter(product::product_id.eq(product_id))
            .filter(product::stock.gt(0))
            .filter(product::on_sale.eq(true)),
    )
    .set(product::stock.eq(product::stock - 1))
    .execute(conn)
    .map(|n| n == 1)
}

/// Puts one unit back (a closed order's reservation).
pub fn release_one(conn: &mut DbConn, product_id: &str) -> QueryResult<usize> {
    diesel::update(product::table.filter(product::product_id.eq(product_id)))
        .set(product::stock.eq(product::stock + 1))
        .execute(conn)
}

pub fn update(
    conn: &mut DbConn,
    product_id: &str,
    name: &str,
    description: &str,
    price_cents: i64,
    stock: i64,
    on_sale: bool,
) -> QueryResult<bool> {
    diesel::update(product::table.filter(product::product_id.eq(product_id)))
        .set((
            product::name.eq(name),
            product::description.eq(description),
            product::price_cents.eq(price_cents),
            product::stock.eq(stock),
            product::on_sale.eq(on_sale),
            product::updated_at.eq(crate::models::now()),
        ))
        .execute(conn)
        .map(|n| n == 1)
}
