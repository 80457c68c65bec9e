//! `Db` and `Tx`: one way to run SQL on PostgreSQL and SQLite.
//!
//! Everything beside the log lives in the event store's own database — read models, the
//! ledger's tree and checkpoints, the relay's cursor, the key vault — so the code that keeps
//! it must run the same statements on both adapters. Both accept `$1`-style numbered
//! placeholders (sqlx-sqlite binds `$n` by number, and a number may repeat), so one SQL text
//! serves both as long as the SQL itself is portable: plain `SELECT`/`INSERT`/`UPDATE`/
//! `DELETE`, `INSERT … ON CONFLICT … DO UPDATE` with `EXCLUDED`, `RETURNING`, `COALESCE`,
//! `LIMIT`, `TRUE`, row values compared with `(a, b) > ($1, $2)` or `IN (VALUES …)`. This
//! module is the small layer that makes that convenient: typed parameters (`Value`), rows
//! with typed getters (`Row`), a pool (`Db`) and a transaction (`Tx`). It is not an ORM.
//!
//! What cannot be one text stays dialect-specific, with a comment saying why, in one of
//! two forms. A statement whose SQL differs is chosen by `match db.dialect()` right beside
//! its portable neighbours: row locks (`FOR UPDATE`, which SQLite lacks because `BEGIN
//! IMMEDIATE` already locks the whole file), SQLite's `secure_delete`, a query plan one
//! database needs spelled out. A mechanism that needs an adapter's own handles matches on
//! `AnyStore` instead: leases and shared locks (advisory locks on a connection of their
//! own on PostgreSQL, nothing to lock across processes on SQLite), and the event store's
//! append path (`postgres.rs`, `sqlite.rs`), the performance-critical code whose array
//! parameters and single-statement fast path make appends fast on PostgreSQL.
//!
//! Conventions that keep a schema portable (see `migrations/*/20261129000001_projections.sql`):
//!
//! - integers are `BIGINT` on PostgreSQL and `INTEGER` on SQLite, read as `i64`;
//! - text is `TEXT`, binary data `BYTEA`/`BLOB`, truth values `BOOLEAN`/`INTEGER`;
//! - **read-model timestamps are `TEXT` in RFC 3339 UTC with exactly six fractional digits**
//!   (`2026-11-22T13:31:00.000000Z`), the spelling event records use. The fixed width makes
//!   text order equal time order, so ranges and `ORDER BY` work on both databases, a value
//!   from a record passes through unchanged, and nothing depends on time zone settings.
//!   `Value::from(DateTime<Utc>)` writes that form and `Row::timestamp` reads it back.
//! - The core's own tables (`events`, `log_head`, `relay_state`, `subject_keys`) predate
//!   that rule and keep `TIMESTAMPTZ` on PostgreSQL (the same text on SQLite); a value for
//!   them is `Value::Timestamptz`, and `Row::timestamp` reads both forms.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use amtsbuch_domain::record::format_timestamp;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Row as _, Sqlite, Transaction, ValueRef as _};
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::store::StoreError;
use crate::AnyStore;

/// Why a statement failed or a column could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Database(String),
    #[error("column {column:?}: {reason}")]
    Decode { column: String, reason: String },
}

/// The store's view: a failed statement is an outage, an undecodable column corrupt data.
impl From<DbError> for StoreError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Database(reason) => StoreError::Unavailable(reason),
            decode @ DbError::Decode { .. } => StoreError::Corrupt {
                position: 0,
                reason: decode.to_string(),
            },
        }
    }
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Database(e.to_string())
    }
}

/// Which SQL dialect a `Db` speaks, for the rare statement that cannot be portable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

/// The SQL type of a NULL. PostgreSQL needs it: a parameter's type is sent with it, and a
/// NULL typed as text cannot be stored in a `BIGINT` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Int,
    Text,
    Bytes,
    Uuid,
}

/// A statement parameter. Build one with `From` (`42_i64.into()`, `"x".into()`,
/// `Some(t).into()`, `None::<&str>.into()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Null(Kind),
    Bool(bool),
    Int(i64),
    Text(Cow<'a, str>),
    Bytes(Cow<'a, [u8]>),
    Uuid(Uuid),
    /// An instant for a column of the core's tables: `TIMESTAMPTZ` on PostgreSQL, the RFC
    /// 3339 text of the module docs on SQLite. Read models store `Value::from(DateTime)`.
    Timestamptz(DateTime<Utc>),
}

/// Rust types with a parameter form; gives `Option<T>` its typed NULL.
pub trait ToValue {
    const KIND: Kind;
}

macro_rules! value_from {
    ($kind:ident, $($t:ty => |$v:ident| $e:expr),+ $(,)?) => {$(
        impl<'a> From<$t> for Value<'a> {
            fn from($v: $t) -> Self {
                $e
            }
        }
        impl<'a> ToValue for $t {
            const KIND: Kind = Kind::$kind;
        }
    )+};
}

value_from!(Bool, bool => |v| Value::Bool(v));
value_from!(
    Int,
    i64 => |v| Value::Int(v),
    i32 => |v| Value::Int(i64::from(v)),
    u32 => |v| Value::Int(i64::from(v)),
    // SQL has no unsigned 64-bit type. Positions and versions never come near i64::MAX
    // (record integers stop at 2^53), so saturating is only a guard against nonsense.
    u64 => |v| Value::Int(i64::try_from(v).unwrap_or(i64::MAX)),
);
value_from!(
    Text,
    &'a str => |v| Value::Text(Cow::Borrowed(v)),
    &'a String => |v| Value::Text(Cow::Borrowed(v.as_str())),
    String => |v| Value::Text(Cow::Owned(v)),
    DateTime<Utc> => |v| Value::Text(Cow::Owned(format_timestamp(&v))),
    &'a DateTime<Utc> => |v| Value::Text(Cow::Owned(format_timestamp(v))),
);
value_from!(
    Bytes,
    &'a [u8] => |v| Value::Bytes(Cow::Borrowed(v)),
    Vec<u8> => |v| Value::Bytes(Cow::Owned(v)),
);
value_from!(Uuid, Uuid => |v| Value::Uuid(v));

impl<'a, T: ToValue + Into<Value<'a>>> From<Option<T>> for Value<'a> {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null(T::KIND), Into::into)
    }
}

/// Types a `Row` can decode from both databases.
pub trait Column:
    for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
{
}

impl<T> Column for T where
    T: for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
{
}

/// A result row of either database.
pub enum Row {
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dialect, columns) = match self {
            Row::Postgres(r) => ("postgres", r.len()),
            Row::Sqlite(r) => ("sqlite", r.len()),
        };
        f.debug_struct("Row")
            .field("dialect", &dialect)
            .field("columns", &columns)
            .finish()
    }
}

impl Row {
    /// The value of `column`; `Option<T>` for a column that may be NULL.
    pub fn get<T: Column>(&self, column: &str) -> Result<T, DbError> {
        let decoded = match self {
            Row::Postgres(r) => r.try_get::<T, _>(column),
            Row::Sqlite(r) => r.try_get::<T, _>(column),
        };
        decoded.map_err(|e| decode_error(column, e))
    }

    /// A non-negative integer column (positions, versions, counts).
    pub fn get_u64(&self, column: &str) -> Result<u64, DbError> {
        let v: i64 = self.get(column)?;
        u64::try_from(v).map_err(|_| DbError::Decode {
            column: column.to_owned(),
            reason: format!("{v} is negative"),
        })
    }

    /// A binary column, borrowed from the row.
    pub fn bytes(&self, column: &str) -> Result<&[u8], DbError> {
        let decoded = match self {
            Row::Postgres(r) => r.try_get::<&[u8], _>(column),
            Row::Sqlite(r) => r.try_get::<&[u8], _>(column),
        };
        decoded.map_err(|e| decode_error(column, e))
    }

    /// A timestamp column: the RFC 3339 text described in the module docs, or a PostgreSQL
    /// `TIMESTAMPTZ` of the core's tables.
    pub fn timestamp(&self, column: &str) -> Result<DateTime<Utc>, DbError> {
        if self.is_timestamptz(column)? {
            return self.get(column);
        }
        let text: String = self.get(column)?;
        parse_timestamp(column, &text)
    }

    /// A timestamp column that may be NULL.
    pub fn opt_timestamp(&self, column: &str) -> Result<Option<DateTime<Utc>>, DbError> {
        if self.is_timestamptz(column)? {
            return self.get(column);
        }
        let text: Option<String> = self.get(column)?;
        text.map(|t| parse_timestamp(column, &t)).transpose()
    }

    fn is_timestamptz(&self, column: &str) -> Result<bool, DbError> {
        Ok(match self {
            Row::Postgres(r) => {
                let raw = r.try_get_raw(column).map_err(|e| decode_error(column, e))?;
                <DateTime<Utc> as sqlx::Type<Postgres>>::compatible(&raw.type_info())
            }
            Row::Sqlite(_) => false,
        })
    }
}

fn decode_error(column: &str, e: sqlx::Error) -> DbError {
    DbError::Decode {
        column: column.to_owned(),
        reason: e.to_string(),
    }
}

fn parse_timestamp(column: &str, text: &str) -> Result<DateTime<Utc>, DbError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| DbError::Decode {
            column: column.to_owned(),
            reason: format!("{text:?} is not an RFC 3339 timestamp: {e}"),
        })
}

/// `VALUES ($1, …, $c), ($c+1, …), …`: the placeholders of a multi-row `INSERT` of `rows`
/// rows with `columns` parameters each, numbered row by row. Also the right side of a
/// portable `(a, b) IN (VALUES …)` (SQLite accepts row values only against a subquery).
pub fn values_list(columns: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(8 + rows * columns * 5);
    sql.push_str("VALUES ");
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        sql.push_str(&placeholders(r * columns + 1, columns));
        sql.push(')');
    }
    sql
}

/// `$first, $first+1, …`, `n` of them: the list of a portable `IN (…)`. PostgreSQL's
/// `= ANY($1)` with an array, or SQLite's `json_each`, would be one statement for any
/// length but not one text for both.
pub fn placeholders(first: usize, n: usize) -> String {
    let mut sql = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push('$');
        sql.push_str(&(first + i).to_string());
    }
    sql
}

/// Sizes to split `n` rows into for multi-row statements: powers of two, at most `max`,
/// largest first. A batch then needs a handful of statements of a handful of shapes, which
/// the per-connection prepared-statement caches keep, instead of a new shape (and a new
/// prepare) for every batch size.
pub fn chunk_sizes(n: usize, max: usize) -> impl Iterator<Item = usize> {
    let cap = if max == 0 { 1 } else { 1 << max.ilog2() };
    let mut rest = n;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let size = if rest >= cap { cap } else { 1 << rest.ilog2() };
        rest -= size;
        Some(size)
    })
}

fn pg_query<'q>(sql: &'q str, params: &'q [Value<'_>]) -> Query<'q, Postgres, PgArguments> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Value::Null(Kind::Bool) => q.bind(None::<bool>),
            Value::Null(Kind::Int) => q.bind(None::<i64>),
            Value::Null(Kind::Text) => q.bind(None::<&str>),
            Value::Null(Kind::Bytes) => q.bind(None::<&[u8]>),
            Value::Null(Kind::Uuid) => q.bind(None::<Uuid>),
            Value::Bool(v) => q.bind(*v),
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_ref()),
            Value::Bytes(v) => q.bind(v.as_ref()),
            Value::Uuid(v) => q.bind(*v),
            Value::Timestamptz(v) => q.bind(*v),
        };
    }
    q
}

fn sqlite_query<'q>(
    sql: &'q str,
    params: &'q [Value<'_>],
) -> Query<'q, Sqlite, SqliteArguments<'q>> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Value::Null(_) => q.bind(None::<i64>),
            Value::Bool(v) => q.bind(*v),
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_ref()),
            Value::Bytes(v) => q.bind(v.as_ref()),
            // A 16-byte BLOB, as the event store writes event ids.
            Value::Uuid(v) => q.bind(*v),
            Value::Timestamptz(v) => q.bind(format_timestamp(v)),
        };
    }
    q
}

/// The event store's database, through its read pool: read models (query handlers use it
/// directly; projections get a `Tx` from the runner), the ledger, the relay's cursor, the
/// key vault, and the log's reads. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Db(Pool);

#[derive(Debug, Clone)]
enum Pool {
    Postgres(PgPool),
    /// With the store's write gate (`SqliteStore::write_gate`), which every write
    /// transaction on the file holds so that writers take turns instead of sleeping in
    /// SQLite's busy handler.
    Sqlite(SqlitePool, Arc<Mutex<()>>),
}

impl Db {
    /// The database of `store`, sharing its read pool.
    pub fn new(store: &AnyStore) -> Self {
        match store {
            AnyStore::Postgres(s) => s.db().clone(),
            AnyStore::Sqlite(s) => s.db().clone(),
        }
    }

    /// The database of `store` through its background pool: for what follows the log (the
    /// read models' runner, the relay, the ledger), so that requests never wait behind it
    /// for a connection (see `postgres::ConnectionBudget`).
    pub fn background(store: &AnyStore) -> Self {
        match store {
            AnyStore::Postgres(s) => s.background_db().clone(),
            AnyStore::Sqlite(s) => s.background_db().clone(),
        }
    }

    pub(crate) fn from_postgres(pool: PgPool) -> Self {
        Db(Pool::Postgres(pool))
    }

    pub(crate) fn from_sqlite(pool: SqlitePool, write_gate: Arc<Mutex<()>>) -> Self {
        Db(Pool::Sqlite(pool, write_gate))
    }

    pub fn dialect(&self) -> Dialect {
        match &self.0 {
            Pool::Postgres(_) => Dialect::Postgres,
            Pool::Sqlite(..) => Dialect::Sqlite,
        }
    }

    /// The PostgreSQL pool, for the rare statement this layer cannot express.
    pub fn postgres(&self) -> Option<&PgPool> {
        match &self.0 {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(..) => None,
        }
    }

    /// The SQLite pool, for the rare statement this layer cannot express. Writes through
    /// it should hold `SqliteStore::write_gate`.
    pub fn sqlite(&self) -> Option<&SqlitePool> {
        match &self.0 {
            Pool::Sqlite(p, _) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// Begin a transaction that will write. On SQLite it first waits its turn at the
    /// store's write gate and then starts with `BEGIN IMMEDIATE`, taking the database's
    /// write lock at once: a deferred transaction that reads first and writes later fails
    /// with "database is locked" instead of waiting if another writer got in between.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        Ok(Tx(match &self.0 {
            Pool::Postgres(p) => Transact::Postgres(p.begin().await?),
            Pool::Sqlite(p, gate) => {
                let turn = gate.clone().lock_owned().await;
                // sqlx's `begin_with` awaits once more after a custom BEGIN took effect and
                // before the `Transaction` exists. A task cancelled there (a runner dropped
                // mid-batch) would leave the pooled connection inside a transaction that
                // holds the write lock for good. A spawned task always runs to the end, and
                // the transaction it returns rolls back if nobody takes it.
                let pool = p.clone();
                let tx = tokio::spawn(async move { pool.begin_with("BEGIN IMMEDIATE").await })
                    .await
                    .map_err(|e| DbError::Database(format!("cannot begin a transaction: {e}")))??;
                Transact::Sqlite(tx, turn)
            }
        }))
    }

    /// Run a statement in a transaction of its own; returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, DbError> {
        Ok(match &self.0 {
            Pool::Postgres(p) => pg_query(sql, params).execute(p).await?.rows_affected(),
            Pool::Sqlite(p, gate) => {
                let _turn = gate.lock().await;
                sqlite_query(sql, params).execute(p).await?.rows_affected()
            }
        })
    }

    pub async fn fetch_all(&self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, DbError> {
        Ok(match &self.0 {
            Pool::Postgres(p) => pg_query(sql, params)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            Pool::Sqlite(p, _) => sqlite_query(sql, params)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    /// As [`Db::fetch_all`], but planned for the values of its parameters at every call.
    /// PostgreSQL otherwise switches a prepared statement to one generic plan after five
    /// executions, made without the values; where the best plan depends on them — a
    /// full-text word that matches a few rows or half the table — that plan may read and
    /// sort every match where the custom plan stops after a page. Here the statement is
    /// sent unnamed, so it is planned with its values each time (one round trip more, and
    /// the planning). SQLite plans as it always does.
    pub async fn fetch_all_planned(
        &self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<Row>, DbError> {
        match &self.0 {
            Pool::Postgres(p) => Ok(pg_query(sql, params)
                .persistent(false)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect()),
            Pool::Sqlite(..) => self.fetch_all(sql, params).await,
        }
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<Row>, DbError> {
        Ok(match &self.0 {
            Pool::Postgres(p) => pg_query(sql, params)
                .fetch_optional(p)
                .await?
                .map(Row::Postgres),
            Pool::Sqlite(p, _) => sqlite_query(sql, params)
                .fetch_optional(p)
                .await?
                .map(Row::Sqlite),
        })
    }
}

/// A transaction on the store's database. Dropping it without `commit` rolls it back.
pub struct Tx(Transact);

enum Transact {
    Postgres(Transaction<'static, Postgres>),
    /// The guard is the turn at the write gate; it is released after the transaction
    /// (fields drop in order).
    Sqlite(Transaction<'static, Sqlite>, OwnedMutexGuard<()>),
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Tx {
    pub fn dialect(&self) -> Dialect {
        match &self.0 {
            Transact::Postgres(_) => Dialect::Postgres,
            Transact::Sqlite(..) => Dialect::Sqlite,
        }
    }

    /// Run a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, DbError> {
        Ok(match &mut self.0 {
            Transact::Postgres(t) => pg_query(sql, params)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Transact::Sqlite(t, _) => sqlite_query(sql, params)
                .execute(&mut **t)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Vec<Row>, DbError> {
        Ok(match &mut self.0 {
            Transact::Postgres(t) => pg_query(sql, params)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            Transact::Sqlite(t, _) => sqlite_query(sql, params)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<Row>, DbError> {
        Ok(match &mut self.0 {
            Transact::Postgres(t) => pg_query(sql, params)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Postgres),
            Transact::Sqlite(t, _) => sqlite_query(sql, params)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Sqlite),
        })
    }

    pub async fn commit(self) -> Result<(), DbError> {
        match self.0 {
            Transact::Postgres(t) => t.commit().await?,
            Transact::Sqlite(t, _turn) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self.0 {
            Transact::Postgres(t) => t.rollback().await?,
            Transact::Sqlite(t, _turn) => t.rollback().await?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{chunk_sizes, placeholders, values_list};

    #[test]
    fn values_lists_number_row_by_row() {
        assert_eq!(values_list(2, 1), "VALUES ($1, $2)");
        assert_eq!(values_list(3, 2), "VALUES ($1, $2, $3), ($4, $5, $6)");
    }

    #[test]
    fn placeholder_lists_count_on_from_the_first() {
        assert_eq!(placeholders(1, 1), "$1");
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn chunks_are_powers_of_two_that_add_up() {
        assert_eq!(chunk_sizes(0, 256).collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(chunk_sizes(1, 256).collect::<Vec<_>>(), vec![1]);
        assert_eq!(chunk_sizes(13, 256).collect::<Vec<_>>(), vec![8, 4, 1]);
        assert_eq!(
            chunk_sizes(600, 200).collect::<Vec<_>>(),
            vec![128, 128, 128, 128, 64, 16, 8]
        );
        for n in 0..1100 {
            let sizes: Vec<_> = chunk_sizes(n, 256).collect();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            assert!(sizes.iter().all(|s| s.is_power_of_two() && *s <= 256));
        }
    }
}
