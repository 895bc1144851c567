//! paymall: a web shop with WeChat QR login and Alipay page payment.

pub mod china_time;
pub mod config;
pub mod controllers;
pub mod db;
pub mod engine;
pub mod error;
pub mod gateways;
pub mod i18n;
pub mod jobs;
pub mod log_escape;
pub mod metrics;
pub mod models;
pub mod money;
pub mod random;
pub mod rate_limit;
pub mod sandbox;
pub mod services;
pub mod startup;
pub mod state;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
