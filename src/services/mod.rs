//! Business rules. Services take a database connection (and gateways where they need the
//! outside world); they never see HTTP types.

pub mod admin;
pub mod catalogue;
pub mod coupon;
pub mod fulfilment;
pub mod group_buy;
pub mod login;
pub mod operations;
pub mod order;
pub mod order_export;
pub mod order_history;
pub mod orphan;
pub mod pay_page;
pub mod payment;
pub mod pricing;
pub mod qr;
pub mod reconcile;
pub mod retention;
pub mod session;
pub mod weixin_portal;
pub mod weixin_token;
