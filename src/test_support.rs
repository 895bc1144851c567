//! Fresh databases for tests, shared by the unit tests in `src/` and the API tests in
//! `tests/api`. Compiled for `cfg(test)` and with the `test-support` feature (which the
//! package's own dev-dependency turns on); the shop never uses it.
//!
//! A PostgreSQL test needs a server: `PAYMALL_TEST_DATABASE_URL` names it. [`crate::both_backends!`]
//! builds the PostgreSQL variants to run when `PAYMALL_TEST_POSTGRES=1` was set for the build
//! (`scripts/test` sets it with the server it starts); otherwise `cargo test` lists each as
//! ignored, with the reason.

use std::path::Path;

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};

use crate::db::{Backend, DatabaseLocation, DbConn, PooledConn};

/// The variable naming the PostgreSQL server the tests create their databases on.
pub const SERVER_VARIABLE: &str = "PAYMALL_TEST_DATABASE_URL";

/// Declares each listed test function `fn name(backend: Backend)` once per backend:
/// `sqlite::name`, and `postgres::name`, which runs when built with `PAYMALL_TEST_POSTGRES=1`
/// (see the module's documentation).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::db::Backend::Sqlite) } )*
        }
        mod postgres {
            $(
                #[test]
                #[cfg_attr(not(paymall_postgres_tests), ignore = "needs PostgreSQL: scripts/test runs it")]
                fn $name() { super::$name($crate::db::Backend::Postgres) }
            )*
        }
    };
}

/// The two ways a payment is recorded ([`crate::services::payment::record`]): the usual one in
/// one statement, and everything by the general rules in a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentPath {
    OneStatement,
    Transaction,
}

impl PaymentPath {
    /// Sets `database.payment_in_one_statement` to take this path.
    pub fn apply(self, settings: &mut crate::config::Settings) {
        settings.database.payment_in_one_statement = self == PaymentPath::OneStatement;
    }
}

/// Declares each listed test function `fn name(backend: Backend, path: PaymentPath)` four
/// times: through each [`PaymentPath`], on each backend as [`crate::both_backends!`] does.
#[macro_export]
macro_rules! every_payment_path {
    ($($name:ident),* $(,)?) => {
        $crate::every_payment_path!(@path one_statement, OneStatement; $($name),*);
        $crate::every_payment_path!(@path in_transaction, Transaction; $($name),*);
    };
    (@path $module:ident, $path:ident; $($name:ident),*) => {
        mod $module {
            mod sqlite {
                $(
                    #[test]
                    fn $name() {
                        super::super::$name(
                            $crate::db::Backend::Sqlite,
                            $crate::test_support::PaymentPath::$path,
                        )
                    }
                )*
            }
            mod postgres {
                $(
                    #[test]
                    #[cfg_attr(not(paymall_postgres_tests), ignore = "needs PostgreSQL: scripts/test runs it")]
                    fn $name() {
                        super::super::$name(
                            $crate::db::Backend::Postgres,
                            $crate::test_support::PaymentPath::$path,
                        )
                    }
                )*
            }
        }
    };
}

/// A fresh, empty database (no migrations applied): a SQLite file in a temporary directory, or
/// a new database on the server `PAYMALL_TEST_DATABASE_URL` names, dropped with this value.
pub struct TestDatabase {
    pub url: String,
    /// The server and the database's name, for the one handle that drops it.
    drop_from: Option<(String, String)>,
    dir: tempfile::TempDir,
}

impl TestDatabase {
    /// Panics for PostgreSQL when `PAYMALL_TEST_DATABASE_URL` is not set: a test that asks for
    /// PostgreSQL fails without it rather than passing untried.
    pub fn new(backend: Backend) -> TestDatabase {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("paymall.db").display());
                TestDatabase { url, drop_from: None, dir }
            }
            Backend::Postgres => {
                let server = std::env::var(SERVER_VARIABLE)
                    .ok()
                    .filter(|url| !url.is_empty())
                    .unwrap_or_else(|| panic!("{SERVER_VARIABLE} is not set: scripts/test starts a server"));
                let name = format!("paymall_test_{}", crate::random::token_hex(8));
                PgConnection::establish(&server)
                    .unwrap_or_else(|e| panic!("connect to {SERVER_VARIABLE}: {e}"))
                    .batch_execute(&format!("CREATE DATABASE {name}"))
                    .expect("create the test database");
                let url = replace_database_name(&server, &name);
                TestDatabase { url, drop_from: Some((server, name)), dir }
            }
        }
    }

    /// A fresh database with the shop's migrations applied, through the shop's own set-up.
    pub fn migrated(backend: Backend) -> TestDatabase {
        let database = TestDatabase::new(backend);
        crate::db::prepare(&database.location()).expect("migrations");
        database
    }

    /// Another handle on the same database (which it does not drop), with a directory of its
    /// own, for a second instance.
    pub fn shared(&self) -> TestDatabase {
        TestDatabase { url: self.url.clone(), drop_from: None, dir: tempfile::tempdir().expect("temp dir") }
    }

    /// A temporary directory that lives as long as this value (the SQLite file is in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn location(&self) -> DatabaseLocation {
        DatabaseLocation::parse(&self.url)
    }

    /// A direct connection, configured as the shop's are, for looking behind its back.
    pub fn connect(&self) -> PooledConn {
        crate::db::build_pool(&self.location(), 1).expect("pool").get().expect("connection")
    }
}

/// The steps of the plan the backend makes for `statement`: SQLite's `EXPLAIN QUERY PLAN`, one
/// step a row; PostgreSQL's `EXPLAIN`, one line a row.
pub fn query_plan(conn: &mut DbConn, statement: &str) -> Vec<String> {
    use diesel::RunQueryDsl;
    use diesel::sql_types::Text;

    #[derive(diesel::QueryableByName)]
    struct SqliteStep {
        #[diesel(sql_type = Text)]
        detail: String,
    }
    #[derive(diesel::QueryableByName)]
    struct PgStep {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        detail: String,
    }
    match conn {
        DbConn::Sqlite(c) => diesel::sql_query(format!("EXPLAIN QUERY PLAN {statement}"))
            .load::<SqliteStep>(c)
            .expect("a plan")
            .into_iter()
            .map(|step| step.detail)
            .collect(),
        DbConn::Pg(c) => diesel::sql_query(format!("EXPLAIN {statement}"))
            .load::<PgStep>(c)
            .expect("a plan")
            .into_iter()
            .map(|step| step.detail)
            .collect(),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, name)) = self.drop_from.take()
            && let Ok(mut admin) = PgConnection::establish(&server)
        {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// `url` with its database name replaced by `name`, the query string kept.
fn replace_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}
