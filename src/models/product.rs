use diesel::prelude::*;

use crate::db::schema::product;
use crate::db::{DbConn, Failure, Guard, Guarded, Inserts, KeepPreparedDsl};

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
        product::table.find(product_id).select(Product::as_select()).get_result(conn).optional()
    }
}

/// Reserves one unit; returns the product's name and price, or `None` when it is unknown, sold
/// out or not on sale (stock never goes below zero).
pub fn reserve_one(conn: &mut DbConn, product_id: &str) -> QueryResult<Option<(String, i64)>> {
    diesel::update(
        product::table
            .filter(product::product_id.eq(product_id))
            .filter(product::stock.gt(0))
            .filter(product::on_sale.eq(true)),
    )
    .set(product::stock.eq(product::stock - 1))
    .returning((product::name, product::price_cents))
    .keep_prepared()
    .get_result(conn)
    .optional()
}

/// Reserves one unit at `price_cents` (the price a payment form was signed with) and, only
/// then, runs `with` (the order and its timeline row) and `guards` (a marketing order's seat,
/// take and coupon lock), all or nothing; `Unchanged` when the product is unknown, sold out, not
/// on sale or priced otherwise now. An insert that fails (the shopper's open order, made
/// meanwhile) undoes the reservation too; with guards, only inside a transaction that the
/// caller rolls back unless this returns `Changed` ([`Inserts::run_if_guarded`]).
pub fn reserve_at_price(
    conn: &mut DbConn,
    product_id: &str,
    price_cents: i64,
    with: &Inserts,
    guards: Vec<Guard<'_>>,
) -> QueryResult<Guarded> {
    let update = diesel::update(
        product::table
            .filter(product::product_id.eq(product_id))
            .filter(product::stock.gt(0))
            .filter(product::on_sale.eq(true))
            .filter(product::price_cents.eq(price_cents)),
    )
    .set(product::stock.eq(product::stock - 1))
    .keep_prepared();
    with.run_if_guarded(conn, update, Failure::Handled, guards)
}

/// Puts one unit back (a closed order's reservation).
pub fn release_one(conn: &mut DbConn, product_id: &str) -> QueryResult<usize> {
    diesel::update(product::table.filter(product::product_id.eq(product_id)))
        .set(product::stock.eq(product::stock + 1))
        .keep_prepared()
        .execute(conn)
}

/// A product's editable fields, already validated.
pub struct ProductEdit {
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i64,
    /// The stock the form showed; the edit applies only if it is unchanged.
    pub stock_seen: i64,
    pub on_sale: bool,
}

/// Saves an edit, only if the stock is still what the editor saw: orders reserve and release
/// units meanwhile, and an edit must not overwrite them.
pub fn update(conn: &mut DbConn, product_id: &str, edit: &ProductEdit) -> QueryResult<bool> {
    diesel::update(
        product::table.filter(product::product_id.eq(product_id)).filter(product::stock.eq(edit.stock_seen)),
    )
    .set((
        product::name.eq(edit.name.trim()),
        product::description.eq(edit.description.trim()),
        product::price_cents.eq(edit.price_cents),
        product::stock.eq(edit.stock),
        product::on_sale.eq(edit.on_sale),
        product::updated_at.eq(crate::models::now()),
    ))
    .keep_prepared()
    .execute(conn)
    .map(|n| n == 1)
}
