//! Black-box tests: each spawns the real application on port 0 with a fresh database and talks
//! to it over HTTP. Every test runs on SQLite and on PostgreSQL (`both_backends!`); the
//! PostgreSQL variants need the server `PAYMALL_TEST_DATABASE_URL` names and are ignored unless
//! asked for (`scripts/test` does).

mod helpers;

mod admin;
mod catalogue;
mod compensation;
mod coupon;
mod coupon_orders;
mod coupon_pages;
mod crash;
mod export;
mod group_buy;
mod group_buy_pages;
mod hardening;
mod i18n;
mod login;
mod metrics;
mod notify_attacks;
mod operations;
mod order_views;
mod payment;
mod phone;
mod portal;
mod wechat_login;
mod wechat_pay;
mod wechat_pay_gateway;
mod wechat_pay_pages;
