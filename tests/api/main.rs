//! Black-box tests: each spawns the real application on port 0 with a fresh database and talks
//! to it over HTTP. Every test runs on SQLite and, when `PAYMALL_TEST_DATABASE_URL` names a
//! PostgreSQL server, on PostgreSQL too (`PAYMALL_REQUIRE_PG=1` turns a missing server into a
//! failure).

mod helpers;

mod admin;
mod catalogue;
mod compensation;
mod crash;
mod hardening;
mod login;
mod notify_attacks;
mod operations;
mod payment;
mod portal;
