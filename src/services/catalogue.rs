use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chrono::NaiveDateTime;

use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::product::Product;
use crate::models::user::AppUser;
use crate::services::coupon::{self, CouponOffer};

pub fn products_on_sale(conn: &mut DbConn) -> AppResult<Vec<Product>> {
    Ok(Product::list_on_sale(conn)?)
}

/// A product a shopper may look at (on sale or not, so old links still explain themselves).
pub fn product(conn: &mut DbConn, product_id: &str) -> AppResult<Product> {
    Product::find(conn, product_id)?.ok_or_else(|| AppError::NotFound(format!("商品 {product_id} 不存在")))
}

/// A product as its page shows it: for a shopper, also each of their AVAILABLE coupons priced
/// for it ([`coupon::offers`], the best first); a visitor's list is empty.
pub struct ProductWithOffers {
    pub product: Product,
    pub offers: Vec<CouponOffer>,
}

/// The product page's product, priced with the shopper's coupons as of `at`.
pub fn product_with_offers(
    conn: &mut DbConn,
    shopper: Option<&AppUser>,
    product_id: &str,
    at: NaiveDateTime,
) -> AppResult<ProductWithOffers> {
    let product = product(conn, product_id)?;
    let offers = match shopper {
        Some(shopper) => coupon::offers(conn, shopper, &product, at)?,
        None => Vec::new(),
    };
    Ok(ProductWithOffers { product, offers })
}

/// The products on sale as the product list page shows them: a snapshot at most `max_age` old,
/// so a page view costs no database round trip (on PostgreSQL that was half of a page's CPU).
/// Nothing that counts reads it: the product page reads the product itself, and an order
/// reserves its unit at the price its payment form was signed with.
pub struct ShopWindow {
    max_age: Duration,
    latest: RwLock<Option<Snapshot>>,
    /// One request reloads a stale snapshot; the others meanwhile show the one they found.
    reloading: AtomicBool,
}

struct Snapshot {
    taken: Instant,
    products: Arc<[Product]>,
}

impl ShopWindow {
    pub fn new(max_age: Duration) -> ShopWindow {
        ShopWindow { max_age, latest: RwLock::new(None), reloading: AtomicBool::new(false) }
    }

    /// The products on sale, from the snapshot if it is young enough, else from `load`.
    pub async fn products<F>(&self, load: impl FnOnce() -> F) -> AppResult<Arc<[Product]>>
    where
        F: Future<Output = AppResult<Vec<Product>>>,
    {
        if self.max_age.is_zero() {
            return Ok(load().await?.into());
        }
        let found = self.latest.read().unwrap_or_else(PoisonError::into_inner).as_ref().map(|s| {
            let fresh = s.taken.elapsed() < self.max_age;
            (fresh, s.products.clone())
        });
        if let Some((true, products)) = &found {
            return Ok(products.clone());
        }
        let reload = Reload::claim(&self.reloading);
        if let (Some((_, products)), None) = (found, &reload) {
            return Ok(products);
        }
        // Taken before the load starts, so a snapshot is never younger than it says.
        let taken = Instant::now();
        let products: Arc<[Product]> = load().await?.into();
        let mut latest = self.latest.write().unwrap_or_else(PoisonError::into_inner);
        // Loads race only while there is no snapshot yet; the one that started last wins.
        if latest.as_ref().is_none_or(|s| s.taken < taken) {
            *latest = Some(Snapshot { taken, products: products.clone() });
        }
        Ok(products)
    }
}

/// The right to reload, held until the load ends (or its request is dropped).
struct Reload<'a>(&'a AtomicBool);

impl<'a> Reload<'a> {
    fn claim(flag: &'a AtomicBool) -> Option<Reload<'a>> {
        (!flag.swap(true, Ordering::AcqRel)).then_some(Reload(flag))
    }
}

impl Drop for Reload<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
