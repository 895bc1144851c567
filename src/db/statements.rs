//! The shop's hand-written SQL, fenced here. The rule: plain diesel everywhere else, and here only
//! a statement on a hot path named in docs/PERFORMANCE.md, or one that diesel's MultiConnection
//! cannot build. Table and column names come from diesel's schema. What is here, why, and every
//! call site:
//!
//! - [`InsertRows`] / [`Inserts`]: the inserts of one change (timeline, outbox, the raw
//!   notification) run together. On PostgreSQL a statement costs a round trip, so they go as one
//!   statement, a chain of data-modifying CTEs, and the usual payment goes with its UPDATE in that
//!   same statement ([`Inserts::run_if_changed`]): one round trip and no `BEGIN`/`COMMIT`, where it
//!   took four. SQLite, where a statement costs no round trip, runs them one by one. Both run on
//!   the backend's own connection: through the MultiConnection a statement has its SQL written
//!   three times per run and every bind converted ("Inserts chained into one statement").
//!   Rows from `Order::insert`, `models::order_event::row`, `models::alipay_notify::row`,
//!   `OutboxEntry::insert`, `models::order_discount::rows` and `models::group_buy` (`team_row`,
//!   `member_row`); gathered by `services::order::place` (run by
//!   `models::product::reserve_at_price`) and `services::payment::record` (with `settle`, `add_payment_rows` and
//!   `handle_verified`'s audit row; run by `Order::pay_waiting` or [`Inserts::run`]); run alone
//!   by `order_event::record`, `alipay_notify::store`, `OutboxEntry::enqueue_all` and
//!   `services::payment::handle_verified`.
//! - [`KeepPrepared`]: UPDATEs kept in the prepared-statement cache ("Statements kept prepared"):
//!   `Order` (`transition`, `mark_paid`, `pay_waiting`, `set_trade_no`, `lease`, `release`),
//!   `OutboxEntry` (`claim`, `complete`, `fail`, `retry_now`), `models::product` (`reserve_one`,
//!   `reserve_at_price`, `release_one`, `update`), `models::login` (`record_scan`, `consume`,
//!   `lease`, `store_and_release`), `AppUser::record_login`, `models::group_buy` (`count_payment`,
//!   `member_paid`, `complete`: a payment that counts or forms a team), and as [`Guard`]s of the checkout's
//!   reservation (`Inserts::run_if_guarded`, their own CTEs on PostgreSQL) `models::coupon::lock`
//!   and `models::group_buy` (`take_seat`, `take`, an upsert, and `still_effective`, a read).
//! - [`find_natively!`] and [`load_natively`] for reads: the checkout's reads, which run on
//!   SQLite's one writer ("Statements kept prepared"): `Order::checkout_start`,
//!   `models::coupon` (`find_coupon`, `with_scope`), `models::group_buy` (`find_activity`,
//!   `find_team`, `held_seat`).
//! - [`StatusIn`]: order statuses written into the SQL ("Statements kept prepared"): `Order`
//!   (`checkout_start`, `transition`, `mark_paid`, `pay_waiting`, `due`).
//! - [`StatusNotIn`]: the condition of the partial index `pay_order_by_settled_status`, repeated
//!   word for word so that SQLite uses it ("Admin pages at any size"): `OrderFilter`'s status.
//! - [`Stamp`]: timestamps bound without chrono's format string ("Timestamps without a format
//!   string"): every [`Value::at`] of the rows above, and `Order::mark_paid` and `pay_waiting`. It
//!   stays: diesel's own binding formats through chrono, 4 to 7% of a notification's instructions.
//! - [`InsertOrSkip`]: `INSERT ... ON CONFLICT DO NOTHING`, which the MultiConnection does not
//!   build: `models::shipment::insert`, `models::orphan::insert`, `models::weixin_nonce::remember`.
//! - [`load_natively`] also for the upserts (`ON CONFLICT ... DO UPDATE ... RETURNING`)
//!   `models::admin::record_failure` and `models::group_buy::take`. The MultiConnection's backend
//!   declares no ON CONFLICT clause (its `SqlDialect::OnConflictClause` is
//!   `DoesNotSupportOnConflictClause`), so diesel builds that statement only for a backend's own
//!   connection.

use std::marker::PhantomData;

use chrono::{Datelike, NaiveDateTime, Timelike};
use diesel::backend::Backend;
use diesel::dsl::{Returning, sql};
use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, SqlLiteral, ValidGrouping, is_aggregate,
};
use diesel::internal::table_macro::{Identifier, StaticQueryFragment};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId, UpdateStatement};
use diesel::query_dsl::LoadQuery;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Bool, HasSqlType, Integer, Nullable, Text, Timestamp};
use diesel::sqlite::Sqlite;
use diesel::{AsExpression, Column, PgConnection, QueryResult, RunQueryDsl, SqliteConnection, Table};

use super::schema::pay_order;
use super::{DbConn, MultiBackend, in_transaction, isolated_write_transaction, write_transaction};
use crate::models::order::OrderStatus;

/// A column's value in [`InsertRows`], bound as a parameter.
pub enum Value {
    Text(String),
    OptionalText(Option<String>),
    Integer(i32),
    BigInt(i64),
    Bool(bool),
    Timestamp(Stamp),
}

impl Value {
    pub fn at(at: NaiveDateTime) -> Value {
        Value::Timestamp(Stamp(at))
    }
}

/// A timestamp bound as diesel binds one (on SQLite the text `%F %T%.f`), written there without
/// chrono's format string, which is parsed again for every value (docs/PERFORMANCE.md,
/// "Timestamps without a format string"). Also an expression, for the timestamps that a
/// payment's UPDATE sets.
#[derive(Debug, AsExpression)]
#[diesel(sql_type = Timestamp)]
pub struct Stamp(pub NaiveDateTime);

impl ToSql<Timestamp, Sqlite> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        out.set_value(sqlite_text(self.0));
        Ok(IsNull::No)
    }
}

impl ToSql<Timestamp, Pg> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        ToSql::<Timestamp, Pg>::to_sql(&self.0, out)
    }
}

/// In a statement built for either backend, such as an UPDATE's `set`: bound as the backend's own.
impl ToSql<Timestamp, MultiBackend> for Stamp {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
        out.set_value((Timestamp, self));
        Ok(IsNull::No)
    }
}

/// The text of diesel's SQLite timestamps, `%F %T%.f`: the fraction as 3, 6 or 9 digits, the
/// fewest that hold it, or none.
fn sqlite_text(at: NaiveDateTime) -> String {
    let nanos = at.nanosecond();
    if !(0..=9999).contains(&at.year()) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: rare enough for the format string.
        return at.format("%F %T%.f").to_string();
    }
    let mut text = String::with_capacity(29);
    push_digits(&mut text, at.year().unsigned_abs(), 4);
    text.push('-');
    push_digits(&mut text, at.month(), 2);
    text.push('-');
    push_digits(&mut text, at.day(), 2);
    text.push(' ');
    push_digits(&mut text, at.hour(), 2);
    text.push(':');
    push_digits(&mut text, at.minute(), 2);
    text.push(':');
    push_digits(&mut text, at.second(), 2);
    match nanos {
        0 => {}
        n if n % 1_000_000 == 0 => push_fraction(&mut text, n / 1_000_000, 3),
        n if n % 1_000 == 0 => push_fraction(&mut text, n / 1_000, 6),
        n => push_fraction(&mut text, n, 9),
    }
    text
}

fn push_fraction(text: &mut String, value: u32, width: u32) {
    text.push('.');
    push_digits(text, value, width);
}

/// `value` in decimal, zero-padded to `width` digits (`value < 10^width`).
fn push_digits(text: &mut String, value: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = value / 10u32.pow(place) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// A backend that binds every kind of [`Value`]: SQLite and PostgreSQL.
pub trait BindValue: Backend {
    fn bind_value<'b>(value: &'b Value, out: &mut AstPass<'_, 'b, Self>) -> QueryResult<()>;
}

impl<DB> BindValue for DB
where
    DB: Backend
        + HasSqlType<Text>
        + HasSqlType<Integer>
        + HasSqlType<BigInt>
        + HasSqlType<Bool>
        + HasSqlType<Timestamp>,
    String: ToSql<Text, DB>,
    Option<String>: ToSql<Nullable<Text>, DB>,
    i32: ToSql<Integer, DB>,
    i64: ToSql<BigInt, DB>,
    bool: ToSql<Bool, DB>,
    Stamp: ToSql<Timestamp, DB>,
{
    fn bind_value<'b>(value: &'b Value, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        match value {
            Value::Text(text) => out.push_bind_param::<Text, _>(text),
            Value::OptionalText(text) => out.push_bind_param::<Nullable<Text>, _>(text),
            Value::Integer(n) => out.push_bind_param::<Integer, _>(n),
            Value::BigInt(n) => out.push_bind_param::<BigInt, _>(n),
            Value::Bool(b) => out.push_bind_param::<Bool, _>(b),
            Value::Timestamp(at) => out.push_bind_param::<Timestamp, _>(at),
        }
    }
}

/// Columns of one table `T`, `N` of them, in the order of a row's values: a tuple of diesel's
/// columns, such as `(pay_form::order_id, pay_form::form)` (up to 16).
pub trait ColumnsOf<T, const N: usize> {
    /// `table (column, ...)`, unquoted, written once when the program is compiled.
    const INTO: &'static str;
}

/// The [`Joined`] text behind [`ColumnsOf::INTO`].
trait Join<T> {
    const JOINED: Joined;
}

macro_rules! columns_of {
    ($($n:literal: $($column:ident)+;)+) => {
        $(impl<T, $($column),+> Join<T> for ($($column,)+)
        where
            T: Table + StaticQueryFragment<Component = Identifier<'static>>,
            $($column: Column<Table = T>),+
        {
            const JOINED: Joined = Joined::of(T::STATIC_COMPONENT.0, &[$($column::NAME),+]);
        }

        impl<T, $($column),+> ColumnsOf<T, $n> for ($($column,)+)
        where
            T: Table + StaticQueryFragment<Component = Identifier<'static>>,
            $($column: Column<Table = T>),+
        {
            const INTO: &'static str = <Self as Join<T>>::JOINED.text();
        })+
    };
}

columns_of! {
    1: A;
    2: A B;
    3: A B C;
    4: A B C D;
    5: A B C D E;
    6: A B C D E F;
    7: A B C D E F G;
    8: A B C D E F G H;
    9: A B C D E F G H I;
    10: A B C D E F G H I J;
    11: A B C D E F G H I J K;
    12: A B C D E F G H I J K L;
    13: A B C D E F G H I J K L M;
    14: A B C D E F G H I J K L M N;
    15: A B C D E F G H I J K L M N O;
    16: A B C D E F G H I J K L M N O P;
}

/// `table (column, ...)` joined by the compiler (longer than 512 bytes, it does not compile), so
/// that every run of an insert writes it into its SQL in one piece, as it would a literal, and not
/// name by name on the notification's path.
struct Joined {
    bytes: [u8; 512],
    len: usize,
}

impl Joined {
    const fn of(table: &str, columns: &[&str]) -> Joined {
        let mut joined = Joined { bytes: [0; 512], len: 0 };
        joined.push(table);
        let mut i = 0;
        while i < columns.len() {
            joined.push(if i == 0 { " (" } else { ", " });
            joined.push(columns[i]);
            i += 1;
        }
        joined.push(")");
        joined
    }

    const fn push(&mut self, text: &str) {
        let mut i = 0;
        while i < text.len() {
            self.bytes[self.len] = text.as_bytes()[i];
            self.len += 1;
            i += 1;
        }
    }

    const fn text(&self) -> &str {
        match std::str::from_utf8(self.bytes.split_at(self.len).0) {
            Ok(text) => text,
            Err(_) => panic!("names are text"),
        }
    }
}

/// `INSERT INTO table (columns) VALUES (..), (..)`, written by hand rather than by diesel so
/// that a chain on PostgreSQL can also write it as `INSERT ... SELECT` that adds its rows only
/// if the chain's UPDATE changed a row. Table and columns are diesel's, written unquoted.
pub struct InsertRows {
    /// `table (column, ...)`
    into: &'static str,
    /// The rows' values one after another, `width` to a row.
    values: Vec<Value>,
    width: usize,
    skip_conflicts: bool,
}

impl InsertRows {
    /// The rows into `columns` of `table`, each with one value per column, in their order. A row
    /// of another length, or a column of another table, does not compile.
    pub fn new<T, C, const N: usize>(_table: T, _columns: C, rows: Vec<[Value; N]>) -> Self
    where
        T: Table,
        C: ColumnsOf<T, N>,
    {
        InsertRows { into: C::INTO, values: rows.into_flattened(), width: N, skip_conflicts: false }
    }

    /// Adds `ON CONFLICT DO NOTHING` (both backends speak it): a row that would break a unique
    /// constraint is left out, and the row count says how many were new. Unlike catching the
    /// unique violation, this needs no savepoint: on PostgreSQL a violation aborts the whole
    /// transaction.
    pub fn skipping_conflicts(mut self) -> Self {
        self.skip_conflicts = true;
        self
    }

    /// Runs the insert alone, on the backend's own connection; returns how many rows it added.
    pub fn execute(&self, conn: &mut DbConn) -> QueryResult<usize> {
        match conn {
            DbConn::Sqlite(c) => RunQueryDsl::execute(self, c),
            DbConn::Pg(c) => RunQueryDsl::execute(self, c),
        }
    }

    fn walk_values<'b, DB: BindValue>(&'b self, out: &mut AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("VALUES ");
        for (i, row) in self.values.chunks(self.width).enumerate() {
            out.push_sql(if i == 0 { "(" } else { ", (" });
            for (j, value) in row.iter().enumerate() {
                if j > 0 {
                    out.push_sql(", ");
                }
                DB::bind_value(value, out)?;
            }
            out.push_sql(")");
        }
        Ok(())
    }

    fn walk_tail<DB: Backend>(&self, out: &mut AstPass<'_, '_, DB>) {
        if self.skip_conflicts {
            out.push_sql(" ON CONFLICT DO NOTHING");
        }
    }

    /// The rows only if the chain's `changed` CTE returned one.
    fn walk_guarded<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_sql(self.into);
        out.push_sql(" SELECT * FROM (");
        self.walk_values(&mut out)?;
        out.push_sql(") AS v WHERE EXISTS (SELECT FROM changed)");
        self.walk_tail(&mut out);
        Ok(())
    }
}

impl<DB: BindValue> QueryFragment<DB> for InsertRows {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("INSERT INTO ");
        out.push_sql(self.into);
        out.push_sql(" ");
        self.walk_values(&mut out)?;
        self.walk_tail(&mut out);
        Ok(())
    }
}

/// Kept prepared under its SQL text, which comes in a few fixed shapes.
impl QueryId for InsertRows {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<C> RunQueryDsl<C> for &InsertRows {}

/// The inserts of one change, which read nothing the others write.
#[derive(Default)]
pub struct Inserts {
    statements: Vec<InsertRows>,
}

impl Inserts {
    pub fn add(&mut self, statement: InsertRows) {
        self.statements.push(statement);
    }

    pub fn run(&self, conn: &mut DbConn) -> QueryResult<()> {
        match conn {
            DbConn::Pg(_) if self.statements.is_empty() => Ok(()),
            DbConn::Pg(c) => {
                Chain { changed: None, guards: &[], inserts: &self.statements, ending: Ending::Applied }
                    .execute(c)
                    .map(drop)
            }
            DbConn::Sqlite(c) => {
                for statement in &self.statements {
                    RunQueryDsl::execute(statement, c)?;
                }
                Ok(())
            }
        }
    }

    /// Runs `update` and, only if it changed a row, the inserts, all or nothing; returns whether
    /// it changed one. On PostgreSQL that is one statement (see the module), atomic by itself,
    /// so it needs no transaction around it. On SQLite, inside a caller's transaction, an error
    /// that the caller handles ([`Failure::Handled`]) takes a savepoint, so that a failing insert
    /// also undoes the UPDATE; one that reaches the transaction undoes everything anyway.
    pub fn run_if_changed<'q, T: Table, U, V>(
        &self,
        conn: &mut DbConn,
        update: KeepPrepared<UpdateStatement<T, U, V>>,
        failure: Failure,
    ) -> QueryResult<bool>
    where
        Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>: Query + QueryFragment<Pg>,
        KeepPrepared<Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>>:
            LoadQuery<'q, SqliteConnection, i32> + LoadQuery<'q, PgConnection, i32>,
    {
        Ok(self.run_if_guarded(conn, update, failure, Vec::new())? == Guarded::Changed)
    }

    /// [`Inserts::run_if_changed`] with `guards`, the other changes that must apply with the
    /// UPDATE, all or nothing: by a refusal nothing stays. On PostgreSQL outside a transaction
    /// they are CTEs of the UPDATE's one statement, which fails unless everything applied (see
    /// [`Chain`]), so that PostgreSQL undoes all of it with no `BEGIN`/`COMMIT`; only then, to
    /// say what did not apply, the statement runs again in a transaction (or a savepoint) that
    /// keeps it only if it all applied now. SQLite, and PostgreSQL inside a transaction, take
    /// that second way at once; on SQLite the guards run after the inserts, in their order,
    /// until one does not apply.
    pub fn run_if_guarded<'q, T: Table, U, V>(
        &self,
        conn: &mut DbConn,
        update: KeepPrepared<UpdateStatement<T, U, V>>,
        failure: Failure,
        guards: Vec<Guard<'_>>,
    ) -> QueryResult<Guarded>
    where
        Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>: Query + QueryFragment<Pg>,
        KeepPrepared<Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>>:
            LoadQuery<'q, SqliteConnection, i32> + LoadQuery<'q, PgConnection, i32>,
    {
        let unguarded = guards.is_empty();
        let in_a_transaction = in_transaction(conn)?;
        if let DbConn::Pg(c) = conn {
            let counted = update.0.returning(sql::<Integer>("1"));
            let chain = |ending| Chain {
                changed: Some(&counted),
                guards: &guards,
                inserts: &self.statements,
                ending,
            };
            if unguarded {
                let applied = chain(Ending::Applied).load::<i32>(c)?;
                return Ok(if applied.is_empty() { Guarded::Unchanged } else { Guarded::Changed });
            }
            if !in_a_transaction {
                match chain(Ending::AllOrFail).load::<i32>(c) {
                    Ok(_) => return Ok(Guarded::Changed),
                    Err(e) if !is_not_all_applied(&e) => return Err(e),
                    Err(_) => {}
                }
            }
            // A transaction, or a savepoint inside the caller's.
            return kept(diesel::Connection::transaction(c, |c| {
                let applied = chain(Ending::Applied).load::<i32>(c)?;
                let refused = (1..=guards.len()).find(|&i| !applied.iter().any(|&a| a as usize == i));
                keep_if_changed(match refused {
                    _ if !applied.contains(&0) => Guarded::Unchanged,
                    Some(i) => Guarded::Refused(i - 1),
                    None => Guarded::Changed,
                })
            }));
        }
        let work = move |c: &mut DbConn| {
            if update.execute(c)? == 0 {
                return Ok(Guarded::Unchanged);
            }
            self.run(c)?;
            for (i, guard) in guards.into_iter().enumerate() {
                if !guard.apply(c)? {
                    return Ok(Guarded::Refused(i));
                }
            }
            Ok(Guarded::Changed)
        };
        match failure {
            _ if !unguarded => kept(isolated_write_transaction(conn, |c| keep_if_changed(work(c)?))),
            Failure::Propagated => write_transaction(conn, work),
            Failure::Handled => isolated_write_transaction(conn, work),
        }
    }
}

/// Why a transaction of [`Inserts::run_if_guarded`] was undone.
enum Undone {
    /// Not everything applied.
    Because(Guarded),
    Failed(diesel::result::Error),
}

impl From<diesel::result::Error> for Undone {
    fn from(e: diesel::result::Error) -> Self {
        Undone::Failed(e)
    }
}

/// Keeps the transaction only when everything applied.
fn keep_if_changed(guarded: Guarded) -> Result<Guarded, Undone> {
    match guarded {
        Guarded::Changed => Ok(Guarded::Changed),
        other => Err(Undone::Because(other)),
    }
}

/// What a transaction of [`keep_if_changed`] came to.
fn kept(transaction: Result<Guarded, Undone>) -> QueryResult<Guarded> {
    match transaction {
        Ok(changed) => Ok(changed),
        Err(Undone::Because(other)) => Ok(other),
        Err(Undone::Failed(e)) => Err(e),
    }
}

/// The text that fails a chain ending in [`Ending::AllOrFail`] (PostgreSQL cannot read it as an
/// integer, and says so with the text in its message).
const NOT_ALL_APPLIED: &str = "paymall: not all applied";

fn is_not_all_applied(e: &diesel::result::Error) -> bool {
    matches!(e, diesel::result::Error::DatabaseError(_, info) if info.message().contains(NOT_ALL_APPLIED))
}

/// What came of [`Inserts::run_if_guarded`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarded {
    /// The UPDATE changed no row; no insert ran.
    Unchanged,
    /// The UPDATE, the inserts and every guard applied.
    Changed,
    /// The UPDATE changed its row but the guard at this index did not apply.
    Refused(usize),
}

/// A change that must apply with an UPDATE ([`Inserts::run_if_guarded`]): a team's seat, a
/// shopper's take, a coupon's lock. A statement whose RETURNING gives a row when it applied; on
/// PostgreSQL it goes into the UPDATE's statement as one more CTE, with no round trip of its own.
pub struct Guard<'a>(Box<dyn Guarding<'a> + 'a>);

trait Guarding<'a> {
    fn walk_pg<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
    fn apply(self: Box<Self>, conn: &mut DbConn) -> QueryResult<bool>;
}

impl<'a, Q> Guarding<'a> for KeepPrepared<Q>
where
    Q: QueryFragment<Pg>,
    KeepPrepared<Q>: LoadQuery<'a, SqliteConnection, i32> + LoadQuery<'a, PgConnection, i32>,
{
    fn walk_pg<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }

    fn apply(self: Box<Self>, conn: &mut DbConn) -> QueryResult<bool> {
        Ok(!load_natively::<_, i32>(conn, *self)?.is_empty())
    }
}

impl<'a> Guard<'a> {
    /// An UPDATE, which applies when it changes a row.
    pub fn update<T: Table + 'a, U: 'a, V: 'a>(update: KeepPrepared<UpdateStatement<T, U, V>>) -> Guard<'a>
    where
        Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>: Query + QueryFragment<Pg> + 'a,
        KeepPrepared<Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>>:
            LoadQuery<'a, SqliteConnection, i32> + LoadQuery<'a, PgConnection, i32>,
    {
        Guard(Box::new(KeepPrepared(update.0.returning(sql::<Integer>("1")))))
    }

    /// A statement that returns an integer for each row it changed (an upsert), which applies
    /// when it returns one.
    pub fn returning<Q>(statement: KeepPrepared<Q>) -> Guard<'a>
    where
        Q: QueryFragment<Pg> + 'a,
        KeepPrepared<Q>: LoadQuery<'a, SqliteConnection, i32> + LoadQuery<'a, PgConnection, i32>,
    {
        Guard(Box::new(statement))
    }

    /// Runs the guard's statement alone, on the backend's own connection; whether it applied.
    pub fn apply(self, conn: &mut DbConn) -> QueryResult<bool> {
        self.0.apply(conn)
    }
}

/// What the caller of [`Inserts::run_if_changed`] does with its error.
pub enum Failure {
    /// Returns it, and its transaction rolls back.
    Propagated,
    /// Handles it and carries on.
    Handled,
}

/// `WITH s0 AS (first), s1 AS (second) last`: each runs once whether referenced or not. With
/// `changed` (an UPDATE ... RETURNING 1): `WITH changed AS (update), g0 AS (guard), ...,
/// s0 AS (first, guarded), ...` and its [`Ending`], where every insert adds its rows only if the
/// UPDATE returned one.
struct Chain<'s, 'g> {
    changed: Option<&'s dyn QueryFragment<Pg>>,
    guards: &'s [Guard<'g>],
    inserts: &'s [InsertRows],
    ending: Ending,
}

/// What a [`Chain`] with `changed` ends in.
#[derive(Clone, Copy)]
enum Ending {
    /// `SELECT 0 FROM changed UNION ALL SELECT 1 FROM g0 ...`: the numbers say what applied.
    Applied,
    /// One row, or the statement fails with [`NOT_ALL_APPLIED`] unless the UPDATE and every
    /// guard applied. A statement is atomic: PostgreSQL then undoes every part of it. (A CASE
    /// whose condition reads the CTEs is evaluated after them, and only then is its text cast.)
    AllOrFail,
}

impl QueryFragment<Pg> for Chain<'_, '_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if let Some(update) = self.changed {
            out.push_sql("WITH changed AS (");
            update.walk_ast(out.reborrow())?;
            out.push_sql(")");
            for (i, guard) in self.guards.iter().enumerate() {
                out.push_sql(&format!(", g{i} AS ("));
                guard.0.walk_pg(out.reborrow())?;
                out.push_sql(")");
            }
            for (i, statement) in self.inserts.iter().enumerate() {
                out.push_sql(&format!(", s{i} AS ("));
                statement.walk_guarded(out.reborrow())?;
                out.push_sql(")");
            }
            match self.ending {
                Ending::Applied => {
                    out.push_sql(" SELECT 0 FROM changed");
                    for i in 0..self.guards.len() {
                        out.push_sql(&format!(" UNION ALL SELECT {} FROM g{i}", i + 1));
                    }
                }
                Ending::AllOrFail => {
                    out.push_sql(" SELECT CAST(CASE WHEN EXISTS (SELECT FROM changed)");
                    for i in 0..self.guards.len() {
                        out.push_sql(&format!(" AND EXISTS (SELECT FROM g{i})"));
                    }
                    out.push_sql(&format!(" THEN '0' ELSE '{NOT_ALL_APPLIED}' END AS integer)"));
                }
            }
            return Ok(());
        }
        let Some((last, earlier)) = self.inserts.split_last() else { return Ok(()) };
        for (i, statement) in earlier.iter().enumerate() {
            out.push_sql(if i == 0 { "WITH " } else { ", " });
            out.push_sql(&format!("s{i} AS ("));
            QueryFragment::<Pg>::walk_ast(statement, out.reborrow())?;
            out.push_sql(")");
        }
        if !earlier.is_empty() {
            out.push_sql(" ");
        }
        QueryFragment::<Pg>::walk_ast(last, out.reborrow())
    }

    /// Kept prepared under its SQL text: diesel would not keep the UPDATE (see [`KeepPrepared`]).
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl Query for Chain<'_, '_> {
    type SqlType = Integer;
}

impl QueryId for Chain<'_, '_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl RunQueryDsl<PgConnection> for Chain<'_, '_> {}

/// `INSERT ... ON CONFLICT DO NOTHING` (SQLite and PostgreSQL both speak it; diesel offers it
/// per backend but not on a MultiConnection). The row count says whether the row was new. Unlike
/// catching the unique violation, this needs no savepoint: on PostgreSQL a violation would abort
/// the whole transaction.
#[derive(Debug, Clone, Copy)]
pub struct InsertOrSkip<I>(pub I);

impl<I, DB> QueryFragment<DB> for InsertOrSkip<I>
where
    I: QueryFragment<DB>,
    DB: Backend,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(" ON CONFLICT DO NOTHING");
        Ok(())
    }
}

impl<I: QueryId> QueryId for InsertOrSkip<I> {
    type QueryId = InsertOrSkip<I::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = I::HAS_STATIC_QUERY_ID;
}

impl<I, Conn> RunQueryDsl<Conn> for InsertOrSkip<I> {}

/// A condition checked on the row a statement finds by its unique key, and never used to find it:
/// written `(condition) IS TRUE`, which no index answers. A status is the usual case. PostgreSQL,
/// its statistics taken before a burst of rows in one status (a group-buy sale's orders turning
/// MARKET, their deliveries PENDING), finds that status rare and reads every row in it through
/// the index led by the status rather than the one row through the key (docs/PERFORMANCE.md,
/// "States checked, rows found by their key").
#[derive(Debug, Clone, Copy)]
pub struct Checked<E>(pub E);

impl<E: Expression<SqlType = Bool>> Expression for Checked<E> {
    type SqlType = Bool;
}

impl<E: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for Checked<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") IS TRUE");
        Ok(())
    }
}

impl<E: QueryId> QueryId for Checked<E> {
    type QueryId = Checked<E::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = E::HAS_STATIC_QUERY_ID;
}

impl<E: AppearsOnTable<QS>, QS> AppearsOnTable<QS> for Checked<E> where Checked<E>: Expression {}
impl<E: SelectableExpression<QS>, QS> SelectableExpression<QS> for Checked<E> where
    Checked<E>: AppearsOnTable<QS>
{
}
impl<E: ValidGrouping<GroupBy>, GroupBy> ValidGrouping<GroupBy> for Checked<E> {
    type IsAggregate = E::IsAggregate;
}

/// `pay_order.status IN ('A', 'B')` with the statuses written into the SQL (docs/PERFORMANCE.md,
/// "Statements kept prepared"). Bound as parameters, SQLite would compare their values with the
/// condition of the partial index `pay_order_one_open` and plan the statement again on every run,
/// and diesel does not cache a bound IN list at all. The statuses are `OrderStatus` constants
/// (`&'static`), never input.
#[derive(Debug, Clone, Copy)]
pub struct StatusIn(pub &'static [OrderStatus]);

impl Expression for StatusIn {
    type SqlType = Bool;
}

impl<DB: Backend> QueryFragment<DB> for StatusIn {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("pay_order.status IN (");
        for (i, status) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "'" } else { ", '" });
            out.push_sql(status.as_str());
            out.push_sql("'");
        }
        out.push_sql(")");
        Ok(())
    }
}

impl QueryId for StatusIn {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS> AppearsOnTable<QS> for StatusIn where pay_order::status: AppearsOnTable<QS> {}
impl<QS> SelectableExpression<QS> for StatusIn where pay_order::status: SelectableExpression<QS> {}
impl<GroupBy> ValidGrouping<GroupBy> for StatusIn {
    type IsAggregate = is_aggregate::Never;
}

/// `pay_order.status <> 'A' AND pay_order.status <> 'B' ...`, written into the SQL as
/// [`StatusIn`] is: the condition of the partial index `pay_order_by_settled_status`, which a
/// query repeats word for word for SQLite to use the index.
#[derive(Debug, Clone, Copy)]
pub struct StatusNotIn(pub &'static [OrderStatus]);

impl Expression for StatusNotIn {
    type SqlType = Bool;
}

impl<DB: Backend> QueryFragment<DB> for StatusNotIn {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for (i, status) in self.0.iter().enumerate() {
            out.push_sql(if i == 0 { "pay_order.status <> '" } else { " AND pay_order.status <> '" });
            out.push_sql(status.as_str());
            out.push_sql("'");
        }
        Ok(())
    }
}

impl QueryId for StatusNotIn {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<QS> AppearsOnTable<QS> for StatusNotIn where pay_order::status: AppearsOnTable<QS> {}
impl<QS> SelectableExpression<QS> for StatusNotIn where pay_order::status: SelectableExpression<QS> {}
impl<GroupBy> ValidGrouping<GroupBy> for StatusNotIn {
    type IsAggregate = is_aggregate::Never;
}

/// A condition written into the SQL as it stands: a partial index's condition, which a query
/// repeats word for word for SQLite to use the index (bound values would not match it). Its text
/// is its type's ([`ConditionText`]), a constant, never input; so, unlike `diesel::dsl::sql`, a
/// query with one keeps a static query id, and diesel finds the query's prepared statement by its
/// type without writing its SQL again (docs/PERFORMANCE.md, "Statements kept prepared").
pub struct IndexCondition<C>(PhantomData<C>);

/// The text of an [`IndexCondition`].
pub trait ConditionText: 'static {
    const SQL: &'static str;
}

impl<C> IndexCondition<C> {
    pub const fn new() -> Self {
        IndexCondition(PhantomData)
    }
}

impl<C> Default for IndexCondition<C> {
    fn default() -> Self {
        Self::new()
    }
}

impl<C> Clone for IndexCondition<C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for IndexCondition<C> {}

impl<C> std::fmt::Debug for IndexCondition<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexCondition")
    }
}

impl<C> Expression for IndexCondition<C> {
    type SqlType = Bool;
}

impl<C: ConditionText, DB: Backend> QueryFragment<DB> for IndexCondition<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql(C::SQL);
        Ok(())
    }
}

impl<C: ConditionText> QueryId for IndexCondition<C> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<C, QS> AppearsOnTable<QS> for IndexCondition<C> {}
impl<C, QS> SelectableExpression<QS> for IndexCondition<C> {}
impl<C, GroupBy> ValidGrouping<GroupBy> for IndexCondition<C> {
    type IsAggregate = is_aggregate::Never;
}

/// Loads a query's rows on the backend's own connection, past the MultiConnection: for a read on
/// the checkout's path, or a statement that only a backend's own connection builds, an upsert
/// (see the module).
pub fn load_natively<'q, Q, U>(conn: &mut DbConn, query: Q) -> QueryResult<Vec<U>>
where
    Q: LoadQuery<'q, SqliteConnection, U> + LoadQuery<'q, PgConnection, U>,
{
    match conn {
        DbConn::Sqlite(c) => query.load(c),
        DbConn::Pg(c) => query.load(c),
    }
}

/// The one row a query finds, if any, read on the backend's own connection, past the
/// MultiConnection (see the module). A macro: the query is built once per backend, since
/// `as_select()` fixes the backend of its type.
macro_rules! find_natively {
    ($conn:expr, $query:expr) => {{
        use diesel::{OptionalExtension, RunQueryDsl};
        match $conn {
            $crate::db::DbConn::Sqlite(c) => $query.get_result(c).optional(),
            $crate::db::DbConn::Pg(c) => $query.get_result(c).optional(),
        }
    }};
}
pub(crate) use find_natively;

/// Keeps a statement prepared that diesel would prepare again on every run: any UPDATE, since a
/// changeset of `Option`s can change its SQL while its type stays the same. Kept under its SQL
/// text and bind types (it has no static query id), so another text is another entry; for the
/// statements of this shop, whose texts come in a few fixed shapes (docs/PERFORMANCE.md,
/// "Statements kept prepared"). It runs on the backend's own connection, like [`Inserts`].
#[derive(Debug, Clone, Copy)]
pub struct KeepPrepared<Q>(Q);

pub trait KeepPreparedDsl: Sized {
    fn keep_prepared(self) -> KeepPrepared<Self> {
        KeepPrepared(self)
    }
}

impl<Q: QueryFragment<MultiBackend>> KeepPreparedDsl for Q {}

impl<Q: QueryFragment<DB>, DB: Backend> QueryFragment<DB> for KeepPrepared<Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &DB) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for KeepPrepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for KeepPrepared<Q> {
    type SqlType = Q::SqlType;
}

impl<Q, C> RunQueryDsl<C> for KeepPrepared<Q> {}

impl<Q> KeepPrepared<Q> {
    /// Kept prepared, for a statement that only a backend's own connection builds (an upsert),
    /// which [`load_natively`] runs; the others take `.keep_prepared()`.
    pub fn native(query: Q) -> Self {
        KeepPrepared(query)
    }

    /// The statement's one row.
    pub fn get_result<'q, U>(self, conn: &mut DbConn) -> QueryResult<U>
    where
        Self: LoadQuery<'q, SqliteConnection, U> + LoadQuery<'q, PgConnection, U>,
    {
        match conn {
            DbConn::Sqlite(c) => RunQueryDsl::get_result(self, c),
            DbConn::Pg(c) => RunQueryDsl::get_result(self, c),
        }
    }
}

impl<T: Table, U, V> KeepPrepared<UpdateStatement<T, U, V>> {
    /// Runs the UPDATE and returns how many rows it changed, counted from `RETURNING 1`: diesel's
    /// own `execute` hands a statement on by reference, and the check a reference gets walks the
    /// UPDATE again and finds it uncacheable; loading hands it on whole.
    pub fn execute<'q>(self, conn: &mut DbConn) -> QueryResult<usize>
    where
        Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>: Query,
        KeepPrepared<Returning<UpdateStatement<T, U, V>, SqlLiteral<Integer>>>:
            LoadQuery<'q, SqliteConnection, i32> + LoadQuery<'q, PgConnection, i32>,
    {
        let counted = KeepPrepared(self.0.returning(sql::<Integer>("1")));
        match conn {
            DbConn::Sqlite(c) => counted.load::<i32>(c).map(|rows| rows.len()),
            DbConn::Pg(c) => counted.load::<i32>(c).map(|rows| rows.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use diesel::connection::{Connection, InstrumentationEvent};
    use diesel::prelude::*;

    use super::{Chain, Ending, Failure, Guard, Guarded, InsertRows, Inserts, sqlite_text};
    use crate::db::schema::{order_event, outbox, product};
    use crate::db::{Backend, DbConn, KeepPreparedDsl};
    use crate::models::outbox::{NewOutboxEntry, OutboxEntry, WxTemplate};
    use crate::models::{order, order_event as timeline};
    use crate::test_support::TestDatabase;

    /// The statements `conn` sends from now on, and "BEGIN" for each transaction it begins.
    fn record_statements(conn: &mut DbConn) -> Arc<Mutex<Vec<String>>> {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let seen = sent.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| match event {
            InstrumentationEvent::StartQuery { query, .. } => seen.lock().unwrap().push(query.to_string()),
            InstrumentationEvent::BeginTransaction { .. } => seen.lock().unwrap().push("BEGIN".into()),
            _ => {}
        });
        sent
    }

    /// `run_if_changed` with an UPDATE of the product `product_id`: whether it changed a row, and
    /// the statements it sent.
    fn restock_with_rows(conn: &mut DbConn, product_id: &str) -> (bool, Vec<String>) {
        let sent = record_statements(conn);
        let mut inserts = Inserts::default();
        inserts.add(timeline::row(
            "0000000000000001",
            Some(order::OrderStatus::Close),
            order::OrderStatus::PayWait,
            "test",
            "restocked",
        ));
        let entry = WxTemplate { client_msg_id: "restock".into(), body: Default::default() };
        inserts.add(OutboxEntry::insert([NewOutboxEntry::of(&entry)]));
        let update = diesel::update(product::table.filter(product::product_id.eq(product_id)))
            .set(product::stock.eq(product::stock + 1))
            .keep_prepared();
        let changed = inserts.run_if_changed(conn, update, Failure::Propagated).unwrap();
        let sent = sent.lock().unwrap().clone();
        (changed, sent)
    }

    fn rows(conn: &mut DbConn) -> (i64, i64) {
        let events = order_event::table.count().get_result(conn).unwrap();
        let entries =
            outbox::table.filter(outbox::dedupe_key.eq("restock")).count().get_result(conn).unwrap();
        (events, entries)
    }

    fn rows_are_added_only_with_a_change_and_on_postgresql_in_its_statement(backend: Backend) {
        let database = TestDatabase::migrated(backend);
        let conn = &mut database.location().establish().unwrap();
        let (changed, _) = restock_with_rows(conn, "no such product");
        assert!(!changed);
        assert_eq!(rows(conn), (0, 0), "nothing added without a change");

        let (changed, sent) = restock_with_rows(conn, "100010090091");
        assert!(changed);
        assert_eq!(rows(conn), (1, 1));
        if backend == Backend::Postgres {
            assert_eq!(sent.len(), 1, "the UPDATE and its rows in one statement: {sent:?}");
            assert!(sent[0].starts_with("WITH changed AS (UPDATE"), "{sent:?}");
        }

        // A conflicting outbox row is left out; the rest of the change still happens.
        let (changed, _) = restock_with_rows(conn, "100010090091");
        assert!(changed);
        assert_eq!(rows(conn), (2, 1));
    }

    /// A stock UPDATE of the product `product_id` that applies while its stock is `stock`.
    fn stock_guard(product_id: &str, stock: i64) -> Guard<'_> {
        Guard::update(
            diesel::update(
                product::table.filter(product::product_id.eq(product_id)).filter(product::stock.eq(stock)),
            )
            .set(product::stock.eq(product::stock + 1))
            .keep_prepared(),
        )
    }

    fn guards_apply_all_or_nothing_say_which_did_not_and_on_postgresql_go_in_the_statement(backend: Backend) {
        let database = TestDatabase::migrated(backend);
        let conn = &mut database.location().establish().unwrap();
        let stock = |conn: &mut DbConn, id: &str| -> i64 {
            product::table.filter(product::product_id.eq(id)).select(product::stock).get_result(conn).unwrap()
        };
        let (first, second) = (stock(conn, "100010090091"), stock(conn, "100010090092"));
        let stocks = |conn: &mut DbConn| (stock(conn, "100010090091"), stock(conn, "100010090092"));
        let run = |conn: &mut DbConn, product_id: &str, guards: Vec<Guard<'_>>| {
            let update = diesel::update(product::table.filter(product::product_id.eq(product_id)))
                .set(product::stock.eq(product::stock - 1))
                .keep_prepared();
            Inserts::default().run_if_guarded(conn, update, Failure::Propagated, guards).unwrap()
        };
        let unchanged = run(conn, "no such product", vec![stock_guard("100010090092", second)]);
        assert_eq!(unchanged, Guarded::Unchanged);
        assert_eq!(stocks(conn), (first, second), "the guard that applied is undone");

        let both = || vec![stock_guard("100010090092", second), stock_guard("100010090093", -1)];
        assert_eq!(run(conn, "100010090091", both()), Guarded::Refused(1), "the second guard did not apply");
        assert_eq!(stocks(conn), (first, second), "the UPDATE and the first guard are undone");

        // Inside a caller's transaction, a savepoint: the refusal undoes only its own changes, and
        // the transaction goes on (on PostgreSQL a failed statement would have ended it).
        conn.transaction::<_, diesel::result::Error, _>(|c| {
            diesel::update(product::table.filter(product::product_id.eq("100010090094")))
                .set(product::stock.eq(product::stock + 1))
                .execute(c)?;
            assert_eq!(run(c, "100010090091", both()), Guarded::Refused(1));
            assert_eq!(stocks(c), (first, second));
            Ok(())
        })
        .unwrap();

        let sent = record_statements(conn);
        let applied = run(conn, "100010090091", vec![stock_guard("100010090092", second)]);
        assert_eq!(applied, Guarded::Changed);
        let sent = sent.lock().unwrap().clone();
        assert_eq!(stocks(conn), (first - 1, second + 1));
        if backend == Backend::Postgres {
            assert_eq!(sent.len(), 1, "the UPDATE and its guard in one statement, no BEGIN: {sent:?}");
        }
    }

    /// An order's transition finds it by its order id, and only checks its status ([`Checked`]):
    /// with statistics taken before a burst of orders in one status, PostgreSQL would otherwise
    /// read every order in that status through `pay_order_by_status` to change one.
    fn a_transition_finds_its_order_by_its_key_whatever_the_statistics(backend: Backend) {
        use diesel::connection::SimpleConnection;

        let database = TestDatabase::migrated(backend);
        let conn = &mut database.location().establish().unwrap();
        let orders = |prefix: &str, status: &str, count: u32| {
            format!(
                "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {count}) \
                 INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, total_cents, status, \
                     order_time, expire_at, next_query_at, updated_at) \
                 SELECT '{prefix}' || CAST(i AS TEXT), u.user_id, 'o-stats', 'p', 'Tea', 100, '{status}', \
                     '2026-12-05 00:00:00', '2026-12-05 00:00:00', '2026-12-05 00:00:00', '2026-12-05 00:00:00' \
                 FROM n, app_user u WHERE u.openid = 'o-stats';"
            )
        };
        conn.batch_execute(&format!(
            "INSERT INTO app_user (openid) VALUES ('o-stats'); {}",
            orders("D", "DEAL_DONE", 500)
        ))
        .unwrap();
        conn.batch_execute(&format!("ANALYZE; {}", orders("M", "MARKET", 3000))).unwrap();

        let sent = record_statements(conn);
        assert!(
            order::Order::transition(conn, "M7", &[order::OrderStatus::Market], order::OrderStatus::DealDone)
                .unwrap()
        );
        let update = sent.lock().unwrap().iter().find(|sql| sql.starts_with("UPDATE")).cloned().unwrap();
        let update = update.split(" -- binds:").next().unwrap();
        assert!(update.contains(") IS TRUE"), "{update}");
        let statement = match conn {
            DbConn::Sqlite(_) => update.to_owned(),
            DbConn::Pg(c) => {
                c.batch_execute(&format!("PREPARE change (text, timestamp, text) AS {update}")).unwrap();
                "EXECUTE change ('DEAL_DONE', '2026-12-05 00:00:00', 'M8')".to_owned()
            }
        };
        let plan = crate::test_support::query_plan(conn, &statement);
        let by_key =
            if backend == Backend::Sqlite { "sqlite_autoindex_pay_order" } else { "pay_order_order_id_key" };
        assert!(plan.iter().any(|step| step.contains(by_key)), "{plan:#?}");
    }

    /// A coupon is found by the order that locked it through the partial index
    /// `user_coupon_locked_order` in a plan made for any order: the status is written into the
    /// statement as the index's condition. Bound, PostgreSQL planned it again on every payment.
    fn a_coupon_is_found_by_its_locking_order_in_a_plan_for_any_order(backend: Backend) {
        use diesel::connection::SimpleConnection;

        let database = TestDatabase::migrated(backend);
        let conn = &mut database.location().establish().unwrap();
        let sent = record_statements(conn);
        assert!(!crate::models::coupon::mark_used(conn, "no such order").unwrap());
        let update = sent.lock().unwrap().iter().find(|sql| sql.starts_with("UPDATE")).cloned().unwrap();
        let update = update.split(" -- binds:").next().unwrap();
        let statement = match conn {
            DbConn::Sqlite(_) => update.to_owned(),
            DbConn::Pg(c) => {
                c.batch_execute(&format!(
                    "SET plan_cache_mode = force_generic_plan; \
                     PREPARE used (text, text, timestamp, text, timestamp, text) AS {update}"
                ))
                .unwrap();
                "EXECUTE used ('USED', 'o', '2026-12-05 00:00:00', NULL, '2026-12-05 00:00:00', 'o')"
                    .to_owned()
            }
        };
        let plan = crate::test_support::query_plan(conn, &statement);
        assert!(plan.iter().any(|step| step.contains("user_coupon_locked_order")), "{plan:#?}");
    }

    crate::both_backends!(
        a_coupon_is_found_by_its_locking_order_in_a_plan_for_any_order,
        rows_are_added_only_with_a_change_and_on_postgresql_in_its_statement,
        guards_apply_all_or_nothing_say_which_did_not_and_on_postgresql_go_in_the_statement,
        a_transition_finds_its_order_by_its_key_whatever_the_statistics,
    );

    /// One insert of each call site.
    fn every_kind_of_insert() -> Vec<InsertRows> {
        use crate::models::alipay_notify::{self, NewNotify};
        use crate::models::order::{NewOrder, Order};
        let at = crate::models::now();
        let order = NewOrder {
            order_id: "0000000000000001",
            user_id: 1,
            openid: "o1",
            product_id: "p",
            product_name: "Tea",
            original_cents: 100,
            discount_cents: 0,
            total_cents: 100,
            pay_form: "<form/>",
            team_id: None,
            channel: order::Channel::Alipay,
            order_time: at,
            expire_at: at,
            next_query_at: at,
        };
        let [row, form] = Order::insert(&order);
        let notify = NewNotify {
            notify_id: Some("n"),
            out_trade_no: None,
            trade_status: None,
            raw: "raw",
            raw_sha256: None,
            verified: true,
            outcome: "paid",
            channel: order::Channel::Alipay,
        };
        let entry = |key: &str| {
            NewOutboxEntry::of(&WxTemplate { client_msg_id: key.into(), body: Default::default() })
        };
        vec![
            row,
            form,
            timeline::row("0000000000000001", None, order::OrderStatus::PayWait, "c", "d"),
            alipay_notify::row(&notify),
            OutboxEntry::insert([entry("a"), entry("b")]),
        ]
    }

    /// The statements' text on both backends, alone, chained and guarded: the columns named by
    /// diesel, written as they are named, unquoted.
    #[test]
    fn inserts_are_written_with_their_columns() {
        use diesel::query_builder::{QueryBuilder, QueryFragment};
        use diesel::{pg::Pg, sqlite::Sqlite};
        let inserts = every_kind_of_insert();
        let sqlite: Vec<String> = inserts
            .iter()
            .map(|insert| {
                let mut sql = diesel::sqlite::SqliteQueryBuilder::new();
                QueryFragment::<Sqlite>::to_sql(insert, &mut sql, &Sqlite).unwrap();
                sql.finish()
            })
            .collect();
        assert_eq!(
            sqlite,
            [
                "INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, original_cents, discount_cents, total_cents, status, order_time, expire_at, next_query_at, query_attempts, updated_at, team_id, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                "INSERT INTO pay_form (order_id, form) VALUES (?, ?)",
                "INSERT INTO order_event (order_id, from_status, to_status, cause, detail, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                "INSERT INTO alipay_notify (notify_id, out_trade_no, trade_status, raw, raw_sha256, verified, outcome, received_at, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                "INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            ]
        );
        let update = diesel::dsl::sql::<diesel::sql_types::Integer>("UPDATE t SET c = 1 RETURNING 1");
        let pg = |changed| {
            let mut sql = diesel::pg::PgQueryBuilder::default();
            QueryFragment::<Pg>::to_sql(
                &Chain { changed, guards: &[], inserts: &inserts, ending: Ending::Applied },
                &mut sql,
                &Pg,
            )
            .unwrap();
            sql.finish()
        };
        assert_eq!(
            pg(None),
            "WITH s0 AS (INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, original_cents, discount_cents, total_cents, status, order_time, expire_at, next_query_at, query_attempts, updated_at, team_id, channel) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)), s1 AS (INSERT INTO pay_form (order_id, form) VALUES ($17, $18)), s2 AS (INSERT INTO order_event (order_id, from_status, to_status, cause, detail, created_at) VALUES ($19, $20, $21, $22, $23, $24)), s3 AS (INSERT INTO alipay_notify (notify_id, out_trade_no, trade_status, raw, raw_sha256, verified, outcome, received_at, channel) VALUES ($25, $26, $27, $28, $29, $30, $31, $32, $33) ON CONFLICT DO NOTHING) INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, created_at, updated_at) VALUES ($34, $35, $36, $37, $38, $39, $40, $41, $42), ($43, $44, $45, $46, $47, $48, $49, $50, $51) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            pg(Some(&update)),
            "WITH changed AS (UPDATE t SET c = 1 RETURNING 1), s0 AS (INSERT INTO pay_order (order_id, user_id, openid, product_id, product_name, original_cents, discount_cents, total_cents, status, order_time, expire_at, next_query_at, query_attempts, updated_at, team_id, channel) SELECT * FROM (VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)) AS v WHERE EXISTS (SELECT FROM changed)), s1 AS (INSERT INTO pay_form (order_id, form) SELECT * FROM (VALUES ($17, $18)) AS v WHERE EXISTS (SELECT FROM changed)), s2 AS (INSERT INTO order_event (order_id, from_status, to_status, cause, detail, created_at) SELECT * FROM (VALUES ($19, $20, $21, $22, $23, $24)) AS v WHERE EXISTS (SELECT FROM changed)), s3 AS (INSERT INTO alipay_notify (notify_id, out_trade_no, trade_status, raw, raw_sha256, verified, outcome, received_at, channel) SELECT * FROM (VALUES ($25, $26, $27, $28, $29, $30, $31, $32, $33)) AS v WHERE EXISTS (SELECT FROM changed) ON CONFLICT DO NOTHING), s4 AS (INSERT INTO outbox (kind, dedupe_key, order_id, payload, status, attempts, next_attempt_at, created_at, updated_at) SELECT * FROM (VALUES ($34, $35, $36, $37, $38, $39, $40, $41, $42), ($43, $44, $45, $46, $47, $48, $49, $50, $51)) AS v WHERE EXISTS (SELECT FROM changed) ON CONFLICT DO NOTHING) SELECT 0 FROM changed"
        );
    }

    #[test]
    fn sqlite_timestamps_are_written_as_diesel_writes_them() {
        let day = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        for (h, m, sec, nanos) in [
            (0, 0, 0, 0),
            (9, 5, 7, 120_000_000),
            (23, 59, 59, 123_456_000),
            (12, 0, 1, 1),
            (1, 2, 3, 999_999_999),
        ] {
            let at = day.and_hms_nano_opt(h, m, sec, nanos).unwrap();
            assert_eq!(sqlite_text(at), at.format("%F %T%.f").to_string());
        }
        let now = crate::models::now();
        assert_eq!(sqlite_text(now), now.format("%F %T%.f").to_string());
        let leap = day.and_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
        assert_eq!(sqlite_text(leap), leap.format("%F %T%.f").to_string());
        let early = chrono::NaiveDate::from_ymd_opt(42, 3, 4).unwrap().and_hms_opt(5, 6, 7).unwrap();
        assert_eq!(sqlite_text(early), early.format("%F %T%.f").to_string());
        let far = chrono::NaiveDate::from_ymd_opt(12026, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        assert_eq!(sqlite_text(far), far.format("%F %T%.f").to_string());
    }
}
