//! `ReadDb` and `ReadTx`: one way to read and write read models on PostgreSQL and SQLite.
//!
//! Read models live in the event store's own database, so a projection must run the same
//! statements on both adapters. Both accept `$1`-style numbered placeholders (sqlx-sqlite
//! binds `$n` by number, and a number may repeat), so one SQL text serves both as long as
//! the SQL itself is portable: plain `SELECT`/`INSERT`/`UPDATE`/`DELETE`, `INSERT … ON
//! CONFLICT … DO UPDATE` with `EXCLUDED`, `COALESCE`, `LIMIT`. This module is the small
//! layer that makes that convenient: typed parameters (`Value`), rows with typed getters
//! (`Row`), a pool (`ReadDb`) and a transaction (`ReadTx`). It is not an ORM.
//!
//! Conventions that keep a schema portable (see `migrations/*/20261129000001_projections.sql`):
//!
//! - integers are `BIGINT` on PostgreSQL and `INTEGER` on SQLite, read as `i64`;
//! - text is `TEXT`, binary data `BYTEA`/`BLOB`, truth values `BOOLEAN`/`INTEGER`;
//! - **timestamps are `TEXT` in RFC 3339 UTC with exactly six fractional digits**
//!   (`2026-11-22T13:31:00.000000Z`), the spelling event records use. The fixed width makes
//!   text order equal time order, so ranges and `ORDER BY` work on both databases, a value
//!   from a record passes through unchanged, and nothing depends on time zone settings.
//!   `Value::from(DateTime<Utc>)` writes that form and `Row::timestamp` reads it back.

use std::borrow::Cow;
use std::fmt;

use amtsbuch_domain::record::format_timestamp;
use amtsbuch_infra::AnyStore;
use sqlx::postgres::{PgArguments, PgPool, PgRow};
use sqlx::query::Query;
use sqlx::sqlite::{SqliteArguments, SqlitePool, SqliteRow};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{Postgres, Row as _, Sqlite, Transaction};

/// Why a statement failed or a column could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DbError {
    #[error("read-model database error: {0}")]
    Database(String),
    #[error("read-model column {column:?}: {reason}")]
    Decode { column: String, reason: String },
}

impl From<sqlx::Error> for DbError {
    fn from(e: sqlx::Error) -> Self {
        DbError::Database(e.to_string())
    }
}

/// Which SQL dialect a `ReadDb` speaks, for the rare statement that cannot be portable.
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
        decoded.map_err(|e| DbError::Decode {
            column: column.to_owned(),
            reason: e.to_string(),
        })
    }

    /// A non-negative integer column (positions, versions, counts).
    pub fn get_u64(&self, column: &str) -> Result<u64, DbError> {
        let v: i64 = self.get(column)?;
        u64::try_from(v).map_err(|_| DbError::Decode {
            column: column.to_owned(),
            reason: format!("{v} is negative"),
        })
    }

    /// A timestamp column in the RFC 3339 text form described in the module docs.
    pub fn timestamp(&self, column: &str) -> Result<DateTime<Utc>, DbError> {
        let text: String = self.get(column)?;
        parse_timestamp(column, &text)
    }

    /// A timestamp column that may be NULL.
    pub fn opt_timestamp(&self, column: &str) -> Result<Option<DateTime<Utc>>, DbError> {
        let text: Option<String> = self.get(column)?;
        text.map(|t| parse_timestamp(column, &t)).transpose()
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

fn pg_query<'q>(sql: &'q str, params: &'q [Value<'_>]) -> Query<'q, Postgres, PgArguments> {
    let mut q = sqlx::query(sql);
    for p in params {
        q = match p {
            Value::Null(Kind::Bool) => q.bind(None::<bool>),
            Value::Null(Kind::Int) => q.bind(None::<i64>),
            Value::Null(Kind::Text) => q.bind(None::<&str>),
            Value::Null(Kind::Bytes) => q.bind(None::<&[u8]>),
            Value::Bool(v) => q.bind(*v),
            Value::Int(v) => q.bind(*v),
            Value::Text(v) => q.bind(v.as_ref()),
            Value::Bytes(v) => q.bind(v.as_ref()),
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
        };
    }
    q
}

/// The read-model database: the event store's database, through its read pool. Query
/// handlers use it directly; projections get a `ReadTx` from the runner.
#[derive(Debug, Clone)]
pub enum ReadDb {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl ReadDb {
    /// The database of `store`, sharing its read pool.
    pub fn new(store: &AnyStore) -> Self {
        match store {
            AnyStore::Postgres(s) => ReadDb::Postgres(s.pool().clone()),
            AnyStore::Sqlite(s) => ReadDb::Sqlite(s.pool().clone()),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            ReadDb::Postgres(_) => Dialect::Postgres,
            ReadDb::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Begin a transaction that will write. On SQLite it starts with `BEGIN IMMEDIATE`,
    /// taking the database's write lock at once: a deferred transaction that reads first
    /// and writes later fails with "database is locked" instead of waiting if another
    /// writer (the event store's) got in between.
    pub async fn begin(&self) -> Result<ReadTx, DbError> {
        Ok(match self {
            ReadDb::Postgres(p) => ReadTx::Postgres(p.begin().await?),
            ReadDb::Sqlite(p) => ReadTx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
        })
    }

    /// Run a statement; returns the number of rows it changed.
    pub async fn execute(&self, sql: &str, params: &[Value<'_>]) -> Result<u64, DbError> {
        Ok(match self {
            ReadDb::Postgres(p) => pg_query(sql, params).execute(p).await?.rows_affected(),
            ReadDb::Sqlite(p) => sqlite_query(sql, params).execute(p).await?.rows_affected(),
        })
    }

    pub async fn fetch_all(&self, sql: &str, params: &[Value<'_>]) -> Result<Vec<Row>, DbError> {
        Ok(match self {
            ReadDb::Postgres(p) => pg_query(sql, params)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            ReadDb::Sqlite(p) => sqlite_query(sql, params)
                .fetch_all(p)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect(),
        })
    }

    pub async fn fetch_optional(
        &self,
        sql: &str,
        params: &[Value<'_>],
    ) -> Result<Option<Row>, DbError> {
        Ok(match self {
            ReadDb::Postgres(p) => pg_query(sql, params)
                .fetch_optional(p)
                .await?
                .map(Row::Postgres),
            ReadDb::Sqlite(p) => sqlite_query(sql, params)
                .fetch_optional(p)
                .await?
                .map(Row::Sqlite),
        })
    }
}

/// A transaction on the read-model database. Dropping it without `commit` rolls it back.
pub enum ReadTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl fmt::Debug for ReadTx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTx")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl ReadTx {
    pub fn dialect(&self) -> Dialect {
        match self {
            ReadTx::Postgres(_) => Dialect::Postgres,
            ReadTx::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Run a statement; returns the number of rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64, DbError> {
        Ok(match self {
            ReadTx::Postgres(t) => pg_query(sql, params)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            ReadTx::Sqlite(t) => sqlite_query(sql, params)
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
        Ok(match self {
            ReadTx::Postgres(t) => pg_query(sql, params)
                .fetch_all(&mut **t)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect(),
            ReadTx::Sqlite(t) => sqlite_query(sql, params)
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
        Ok(match self {
            ReadTx::Postgres(t) => pg_query(sql, params)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Postgres),
            ReadTx::Sqlite(t) => sqlite_query(sql, params)
                .fetch_optional(&mut **t)
                .await?
                .map(Row::Sqlite),
        })
    }

    pub async fn commit(self) -> Result<(), DbError> {
        match self {
            ReadTx::Postgres(t) => t.commit().await?,
            ReadTx::Sqlite(t) => t.commit().await?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<(), DbError> {
        match self {
            ReadTx::Postgres(t) => t.rollback().await?,
            ReadTx::Sqlite(t) => t.rollback().await?,
        }
        Ok(())
    }
}
