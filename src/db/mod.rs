//! The database: one connection type over SQLite and PostgreSQL, chosen by the URL, an r2d2
//! pool, and the migrations of each backend embedded in the binary.

mod checkpointer;
pub mod schema;
mod statements;

pub use checkpointer::Checkpointer;
pub(crate) use statements::find_natively;
pub use statements::{
    Checked, ConditionText, Failure, Guard, Guarded, IndexCondition, InsertOrSkip, InsertRows, Inserts,
    KeepPrepared, KeepPreparedDsl, Stamp, StatusIn, StatusNotIn, Value, load_natively,
};

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{CustomizeConnection, ManageConnection, Pool, PooledConnection, R2D2Connection};
use diesel::{Connection, ConnectionError, PgConnection, QueryResult, SqliteConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// The PostgreSQL advisory lock that serialises migrations ("paymall" in ASCII, shortened).
const MIGRATION_LOCK_KEY: i64 = 0x7061_796d_616c;

/// Per-connection SQLite settings; WAL is set once on the file before the pool exists. The
/// [`Checkpointer`] checkpoints, so no connection does it automatically after a commit. Savepoints
/// and statements that may have to undo themselves keep the pages they change in a journal of
/// their own: in memory, not in a temporary file (docs/PERFORMANCE.md, "SQLite's settings"). Every
/// commit is synced (`FULL`) before anyone hears of it: an order
/// or a payment that was answered survives a power loss (the writer's group commit makes that
/// one sync per batch).
pub(crate) const SQLITE_CONNECTION_PRAGMAS: &str = "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON; \
     PRAGMA synchronous = FULL; PRAGMA wal_autocheckpoint = 0; PRAGMA temp_store = MEMORY;";

/// SQLite has one writer at a time. The writers of this process queue on this lock, so each is
/// woken the moment the previous one commits; SQLite's busy handler (which writers of other
/// processes still meet) sleeps and polls instead, 1 ms, 2 ms, 5 ms, 10 ms ...
pub(crate) static SQLITE_WRITER: Mutex<()> = Mutex::new(());

#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
}

pub type DbPool = Pool<DbManager>;
pub type PooledConn = PooledConnection<DbManager>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot open the {backend} database {location}: {source}")]
    Connect { backend: Backend, location: String, source: ConnectionError },
    #[error("cannot prepare the database {location}: {reason}")]
    Prepare { location: String, reason: String },
    #[error("cannot build the connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
}

/// Where the data lives, parsed from `database.url`: `postgres://...`, `postgresql://...`,
/// `sqlite://PATH` or a plain path.
#[derive(Clone)]
pub struct DatabaseLocation {
    pub backend: Backend,
    target: String,
}

impl DatabaseLocation {
    pub fn parse(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DatabaseLocation { backend: Backend::Postgres, target: url.to_owned() }
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            DatabaseLocation { backend: Backend::Sqlite, target: path.to_owned() }
        }
    }

    /// The location with any password removed, fit for logs and error messages.
    pub fn redacted(&self) -> String {
        match self.backend {
            Backend::Sqlite => self.target.clone(),
            Backend::Postgres => match (self.target.find("://"), self.target.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &self.target[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or("");
                    format!("{}{user}:***{}", &self.target[..scheme_end + 3], &self.target[at..])
                }
                _ => self.target.clone(),
            },
        }
    }

    pub(crate) fn establish(&self) -> Result<DbConn, DbError> {
        let connected = match self.backend {
            Backend::Postgres => PgConnection::establish(&self.target).map(DbConn::Pg),
            Backend::Sqlite => {
                configure_sqlite();
                SqliteConnection::establish(&self.target).map(DbConn::Sqlite)
            }
        };
        connected.map_err(|source| DbError::Connect {
            backend: self.backend,
            location: self.redacted(),
            source,
        })
    }
}

/// SQLite's process-wide settings, before it opens its first connection (later, SQLite refuses
/// them and keeps its defaults). Every connection here is used by one thread at a time (diesel's
/// connections are not `Sync`; the pool and the writer hand each to one thread), so SQLite need
/// not lock a connection's mutex around each of its calls ("multi-thread" mode instead of
/// "serialized"). Nor does it need to count the memory it allocates under a global lock. Together
/// that was about 430 mutex round trips per notification.
fn configure_sqlite() {
    static CONFIGURED: std::sync::Once = std::sync::Once::new();
    CONFIGURED.call_once(|| {
        use libsqlite3_sys::{SQLITE_CONFIG_MEMSTATUS, SQLITE_CONFIG_MULTITHREAD, SQLITE_OK, sqlite3_config};
        // SAFETY: sqlite3_config is called before any connection exists (this runs before the
        // first open, once), with the argument each option documents.
        let results = unsafe {
            [sqlite3_config(SQLITE_CONFIG_MULTITHREAD), sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0)]
        };
        if results.iter().any(|&r| r != SQLITE_OK) {
            log::warn!("SQLite kept its default threading settings (sqlite3_config: {results:?})");
        }
    });
}

/// Opens connections of the one backend the URL names, so a failure reports the backend's own
/// reason (diesel's generic MultiConnection manager would only say "invalid connection url").
pub struct DbManager {
    location: DatabaseLocation,
}

impl ManageConnection for DbManager {
    type Connection = DbConn;
    type Error = DbError;

    fn connect(&self) -> Result<DbConn, DbError> {
        self.location.establish()
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), DbError> {
        conn.ping()
            .map_err(|e| DbError::Prepare { location: self.location.redacted(), reason: e.to_string() })
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        conn.is_broken()
    }
}

#[derive(Debug)]
struct SqlitePragmas;

impl CustomizeConnection<DbConn, DbError> for SqlitePragmas {
    fn on_acquire(&self, conn: &mut DbConn) -> Result<(), DbError> {
        if let DbConn::Sqlite(c) = conn {
            c.batch_execute(SQLITE_CONNECTION_PRAGMAS)
                .map_err(|e| DbError::Prepare { location: "sqlite".into(), reason: e.to_string() })?;
        }
        Ok(())
    }
}

/// Opens the database once (creating a SQLite file and its folder if needed), switches SQLite
/// to WAL, runs pending migrations, and returns how many ran.
pub fn prepare(location: &DatabaseLocation) -> Result<usize, DbError> {
    let prepare_error = |reason: String| DbError::Prepare { location: location.redacted(), reason };
    if location.backend == Backend::Sqlite
        && let Some(parent) = Path::new(&location.target).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|e| prepare_error(e.to_string()))?;
    }
    let mut conn = location.establish()?;
    // Instances starting together must not migrate at the same time: PostgreSQL serialises them
    // with an advisory lock, SQLite with an exclusive lock on a file next to the database.
    let applied = match &mut conn {
        DbConn::Sqlite(c) => {
            let lock = std::fs::File::create(format!("{}.migrate-lock", location.target))
                .map_err(|e| prepare_error(format!("migration lock: {e}")))?;
            lock.lock().map_err(|e| prepare_error(format!("migration lock: {e}")))?;
            // 1 KiB pages for a new file (an existing one keeps its own): a commit writes each page
            // it changed to the WAL whole, and a payment changes a row or an index entry in a dozen
            // b-trees (docs/PERFORMANCE.md, "1 KiB pages").
            c.batch_execute(
                "PRAGMA busy_timeout = 10000; PRAGMA page_size = 1024; PRAGMA journal_mode = WAL;",
            )
            .map_err(|e| prepare_error(e.to_string()))?;
            c.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len())
        }
        DbConn::Pg(c) => {
            c.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})"))
                .map_err(|e| prepare_error(format!("migration lock: {e}")))?;
            let applied = c.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len());
            c.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})"))
                .map_err(|e| prepare_error(format!("migration unlock: {e}")))?;
            applied
        }
    };
    applied.map_err(|e| prepare_error(format!("migration failed: {e}")))
}

pub fn build_pool(location: &DatabaseLocation, max_size: u32) -> Result<DbPool, DbError> {
    let pool = Pool::builder()
        .max_size(max_size)
        .min_idle(Some(1))
        // A broken connection is noticed when it is returned (`has_broken`); pinging on every
        // checkout would cost a round trip per request.
        .test_on_check_out(false)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(SqlitePragmas))
        .build(DbManager { location: location.clone() })?;
    Ok(pool)
}

/// A transaction that writes. On SQLite it begins `IMMEDIATE`, taking the write lock at once, so
/// concurrent writers wait for the busy timeout instead of failing with SQLITE_BUSY when a read
/// snapshot would have to be upgraded to a write. Called inside a transaction, it simply runs
/// `work` there: the outer transaction commits or rolls back the whole, and a savepoint would cost
/// two more statements. So its error must reach the outer transaction; a failure that is handled
/// and followed by more work takes [`isolated_write_transaction`].
pub fn write_transaction<T, E>(
    conn: &mut DbConn,
    work: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::TransactionManager;
    type Manager = <DbConn as Connection>::TransactionManager;
    if in_transaction(conn)? {
        return work(conn);
    }
    let _writer = matches!(conn, DbConn::Sqlite(_))
        .then(|| SQLITE_WRITER.lock().unwrap_or_else(PoisonError::into_inner));
    begin_write(conn)?;
    match work(conn) {
        Ok(value) => {
            Manager::commit_transaction(conn)?;
            Ok(value)
        }
        Err(failure) => match Manager::rollback_transaction(conn) {
            Ok(()) | Err(diesel::result::Error::BrokenTransactionManager) => Err(failure),
            Err(rollback) => Err(rollback.into()),
        },
    }
}

/// Begins a transaction that writes: `IMMEDIATE` on SQLite (see [`write_transaction`]).
pub(crate) fn begin_write(conn: &mut DbConn) -> QueryResult<()> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConn::Pg(_) => <DbConn as Connection>::TransactionManager::begin_transaction(conn),
    }
}

/// A write whose failure the caller handles and then carries on: its changes are undone alone.
/// Inside a transaction (a batch of the [`crate::engine::writer::Writer`]) that takes a savepoint; otherwise it
/// is a [`write_transaction`] of its own and costs nothing more.
pub fn isolated_write_transaction<T, E>(
    conn: &mut DbConn,
    work: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    if in_transaction(conn)? { conn.transaction(work) } else { write_transaction(conn, work) }
}

/// Whether `conn` is inside a transaction: a caller's, or a batch of the writer.
pub(crate) fn in_transaction(conn: &mut DbConn) -> QueryResult<bool> {
    use diesel::connection::TransactionManager;
    let status = <DbConn as Connection>::TransactionManager::transaction_manager_status_mut(conn);
    Ok(status.transaction_depth()?.is_some())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Connection, InstrumentationEvent};

    use super::{Backend, Inserts};
    use crate::models::outbox::{NewOutboxEntry, OutboxEntry, WxTemplate};
    use crate::models::product;
    use crate::test_support::TestDatabase;

    #[test]
    fn updates_and_inserts_are_prepared_once_per_connection() {
        let database = TestDatabase::migrated(Backend::Sqlite);
        let location = database.location();
        let mut conn = location.establish().unwrap();
        let prepared = Arc::new(Mutex::new(Vec::new()));
        let seen = prepared.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock().unwrap().push(sql.to_owned());
            }
        });
        for _ in 0..3 {
            assert_eq!(product::release_one(&mut conn, "100010090091").unwrap(), 1);
            let mut inserts = Inserts::default();
            let entry = WxTemplate { client_msg_id: "once".into(), body: Default::default() };
            inserts.add(OutboxEntry::insert([NewOutboxEntry::of(&entry)]));
            inserts.run(&mut conn).unwrap();
        }
        let prepared = prepared.lock().unwrap();
        assert_eq!(prepared.len(), 2, "each statement prepared once, then reused: {prepared:?}");
        assert!(
            prepared[0].starts_with("UPDATE `product`") && prepared[0].ends_with("RETURNING 1"),
            "{prepared:?}"
        );
        assert!(prepared[1].starts_with("INSERT INTO outbox"), "{prepared:?}");
    }

    #[test]
    fn sqlite_is_configured_before_its_first_connection() {
        let _database = TestDatabase::migrated(Backend::Sqlite);
        let (mut used, mut peak) = (0, 0);
        // SAFETY: both pointers are valid for the call; the status counters are global.
        let status = unsafe {
            libsqlite3_sys::sqlite3_status64(
                libsqlite3_sys::SQLITE_STATUS_MEMORY_USED,
                &mut used,
                &mut peak,
                0,
            )
        };
        assert_eq!(status, libsqlite3_sys::SQLITE_OK);
        // Counting is off: with SQLite's defaults an open connection has allocated memory.
        assert_eq!((used, peak), (0, 0), "sqlite3_config ran too late and SQLite kept its defaults");
    }

    #[test]
    fn a_new_sqlite_file_gets_small_pages_in_wal_mode() {
        use diesel::RunQueryDsl;

        #[derive(diesel::QueryableByName)]
        struct Setting {
            #[diesel(sql_type = diesel::sql_types::Text)]
            value: String,
        }
        let database = TestDatabase::migrated(Backend::Sqlite);
        let location = database.location();
        let mut conn = location.establish().unwrap();
        let setting = |conn: &mut super::DbConn, pragma: &str| {
            diesel::sql_query(format!("SELECT CAST({pragma} AS TEXT) AS value FROM pragma_{pragma}"))
                .get_result::<Setting>(conn)
                .unwrap()
                .value
        };
        // Set after the file had tables, the page size would be ignored without an error.
        assert_eq!(setting(&mut conn, "page_size"), "1024");
        assert_eq!(setting(&mut conn, "journal_mode"), "wal");
        let mut pooled = super::build_pool(&location, 1).unwrap().get().unwrap();
        assert_eq!(
            setting(&mut pooled, "synchronous"),
            "2",
            "FULL: a commit is synced before it is answered"
        );
    }

    /// A row of a test's query: a name and a number.
    #[derive(diesel::QueryableByName, Debug, PartialEq)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    /// A fresh SQLite database (foreign keys on) migrated up to and including `version`, to
    /// test the next migration against rows written before it.
    fn sqlite_migrated_to(version: &str) -> (TestDatabase, diesel::SqliteConnection) {
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;

        // Configured first, as the shop does: a connection before it would keep SQLite's defaults
        // and fail `sqlite_is_configured_before_its_first_connection`, which runs alongside.
        super::configure_sqlite();
        let database = TestDatabase::new(Backend::Sqlite);
        let mut conn = diesel::SqliteConnection::establish(&database.url).unwrap();
        conn.batch_execute("PRAGMA foreign_keys = ON").unwrap();
        while !conn.applied_migrations().unwrap().iter().any(|v| v.to_string() == version) {
            conn.run_next_migration(super::SQLITE_MIGRATIONS).unwrap();
        }
        (database, conn)
    }

    /// The migration that rebuilds `pay_order` and `outbox` for their status checks keeps every
    /// row and the ids to come, and the checks still refuse an unknown status; the next one
    /// moves the forms out of `pay_order` and keeps its rows.
    #[test]
    fn the_pay_order_rebuilds_keep_rows_ids_forms_and_checks() {
        use diesel::RunQueryDsl;
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;

        let (_database, mut conn) = sqlite_migrated_to("20261122000030");
        conn.batch_execute(
            "INSERT INTO app_user (openid) VALUES ('o1');
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 pay_form, order_time, expire_at, next_query_at, updated_at)
             VALUES ('A', 1, 'o1', 'p', 'Tea', 100, 'PAY_WAIT', '<form/>', 't', 't', 't', 't'),
                    ('B', 1, 'o1', 'q', 'Cake', 200, 'CLOSE', NULL, 't', 't', 't', 't'),
                    ('C', 1, 'o1', 'r', 'Gone', 300, 'CLOSE', NULL, 't', 't', 't', 't');
             DELETE FROM pay_order WHERE order_id = 'C';
             INSERT INTO outbox (kind, dedupe_key, order_id, payload, next_attempt_at, created_at, updated_at)
             VALUES ('delivery', 'A', 'A', '{}', 't', 't', 't');",
        )
        .unwrap();
        conn.run_next_migration(super::SQLITE_MIGRATIONS).unwrap();
        let rows = |conn: &mut diesel::SqliteConnection, sql: &str| {
            diesel::sql_query(sql).load::<Row>(conn).unwrap()
        };
        assert_eq!(
            rows(
                &mut conn,
                "SELECT order_id || ' ' || status || ' ' || coalesce(pay_form, '-') AS name, id AS n FROM pay_order ORDER BY id"
            ),
            [Row { name: "A PAY_WAIT <form/>".into(), n: 1 }, Row { name: "B CLOSE -".into(), n: 2 }]
        );
        assert_eq!(
            rows(
                &mut conn,
                "SELECT name, seq AS n FROM sqlite_sequence WHERE name IN ('pay_order', 'outbox') ORDER BY name"
            ),
            [Row { name: "outbox".into(), n: 1 }, Row { name: "pay_order".into(), n: 3 }]
        );
        conn.batch_execute(
            "INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 order_time, expire_at, next_query_at, updated_at)
             VALUES ('D', 1, 'o1', 's', 'New', 400, 'CREATE', 't', 't', 't', 't')",
        )
        .unwrap();
        assert_eq!(
            rows(&mut conn, "SELECT order_id AS name, id AS n FROM pay_order WHERE order_id = 'D'")[0].n,
            4
        );
        let refused =
            conn.batch_execute("UPDATE pay_order SET status = 'LOST' WHERE order_id = 'A'").unwrap_err();
        assert!(refused.to_string().contains("CHECK constraint failed"), "{refused}");
        let refused = conn.batch_execute("UPDATE outbox SET status = 'LOST'").unwrap_err();
        assert!(refused.to_string().contains("CHECK constraint failed"), "{refused}");
        let refused = conn
            .batch_execute("UPDATE pay_order SET status = 'PAY_WAIT', product_id = 'p' WHERE order_id = 'B'")
            .unwrap_err();
        assert!(
            refused.to_string().contains("UNIQUE constraint failed"),
            "the open-order index is back: {refused}"
        );

        // The next one moves the forms into a table of their own.
        conn.run_next_migration(super::SQLITE_MIGRATIONS).unwrap();
        assert_eq!(
            rows(
                &mut conn,
                "SELECT order_id || ' ' || form AS name, length(form) AS n FROM pay_form ORDER BY order_id"
            ),
            [Row { name: "A <form/>".into(), n: 7 }]
        );
        assert_eq!(
            rows(
                &mut conn,
                "SELECT group_concat(order_id || ' ' || status, ', ') AS name, count(*) AS n FROM pay_order"
            ),
            [Row { name: "A PAY_WAIT, B CLOSE, D CREATE".into(), n: 3 }]
        );
    }

    /// The price snapshot's migration: every order placed before it has its amount as its list
    /// price and nothing off, and the snapshot must add up from then on.
    #[test]
    fn the_price_snapshot_backfills_old_orders() {
        use diesel::RunQueryDsl;
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;

        let (_database, mut conn) = sqlite_migrated_to("20261204000070");
        conn.batch_execute(
            "INSERT INTO app_user (openid) VALUES ('o1');
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 order_time, expire_at, next_query_at, updated_at)
             VALUES ('A', 1, 'o1', 'p', 'Tea', 5800, 'DEAL_DONE', 't', 't', 't', 't'),
                    ('B', 1, 'o1', 'q', 'Cake', 168, 'CLOSE', 't', 't', 't', 't');",
        )
        .unwrap();
        conn.run_next_migration(super::SQLITE_MIGRATIONS).unwrap();
        let rows = diesel::sql_query(
            "SELECT order_id || ' ' || discount_cents AS name, original_cents AS n FROM pay_order ORDER BY id",
        )
        .load::<Row>(&mut conn)
        .unwrap();
        assert_eq!(rows, [Row { name: "A 0".into(), n: 5800 }, Row { name: "B 0".into(), n: 168 }]);
        let refused = conn
            .batch_execute(
                "UPDATE pay_order SET original_cents = 6000, discount_cents = 100 WHERE order_id = 'A'",
            )
            .unwrap_err();
        assert!(refused.to_string().contains("CHECK constraint failed"), "{refused}");
        conn.batch_execute(
            "UPDATE pay_order SET original_cents = 6000, discount_cents = 200 WHERE order_id = 'A'",
        )
        .unwrap();
    }

    /// The payment channel's migration: every order, orphan payment and notification written
    /// before it is Alipay's, an order reads so through the model, and the checks refuse a
    /// channel the shop does not know.
    #[test]
    fn the_payment_channel_backfills_alipay() {
        use diesel::RunQueryDsl;
        use diesel::connection::SimpleConnection;
        use diesel_migrations::MigrationHarness;

        use crate::models::order::{Channel, Order};

        let (_database, mut conn) = sqlite_migrated_to("20261205000121");
        conn.batch_execute(
            "INSERT INTO app_user (openid) VALUES ('o1');
             INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status,
                 order_time, expire_at, next_query_at, updated_at)
             VALUES ('A', 1, 'o1', 'p', 'Tea', 5800, 'DEAL_DONE', '2026-12-01 10:00:00',
                 '2026-12-01 10:15:00', '2026-12-01 10:00:30', '2026-12-01 10:00:00');
             INSERT INTO orphan_payment (kind, out_trade_no, trade_no, amount_cents, status, detail,
                 received_at, updated_at)
             VALUES ('UNKNOWN_ORDER', 'Z', 'T1', 168, 'OPEN', 'd', 't', 't');
             INSERT INTO alipay_notify (notify_id, out_trade_no, raw, verified, outcome, received_at)
             VALUES ('n1', 'A', 'raw', TRUE, 'paid', 't');",
        )
        .unwrap();
        conn.run_next_migration(super::SQLITE_MIGRATIONS).unwrap();
        let rows = diesel::sql_query(
            "SELECT 'pay_order ' || channel AS name, count(*) AS n FROM pay_order GROUP BY channel
             UNION ALL SELECT 'orphan_payment ' || channel, count(*) FROM orphan_payment GROUP BY channel
             UNION ALL SELECT 'alipay_notify ' || channel, count(*) FROM alipay_notify GROUP BY channel",
        )
        .load::<Row>(&mut conn)
        .unwrap();
        assert_eq!(
            rows,
            [
                Row { name: "pay_order ALIPAY".into(), n: 1 },
                Row { name: "orphan_payment ALIPAY".into(), n: 1 },
                Row { name: "alipay_notify ALIPAY".into(), n: 1 },
            ]
        );
        let mut shop = super::DbConn::Sqlite(conn);
        assert_eq!(Order::find(&mut shop, "A").unwrap().expect("order A").channel, Channel::Alipay);
        let super::DbConn::Sqlite(mut conn) = shop else { unreachable!() };
        for table in ["pay_order", "orphan_payment", "alipay_notify"] {
            let refused = conn.batch_execute(&format!("UPDATE {table} SET channel = 'PAYPAL'")).unwrap_err();
            assert!(refused.to_string().contains("CHECK constraint failed"), "{table}: {refused}");
        }
        conn.batch_execute("UPDATE pay_order SET channel = 'WECHAT_PAY'").unwrap();
    }
}
