//! A store's log opened for reading only, for tools that check what is stored.
//!
//! Opening an `AnyStore` prepares a database for the service: it creates a missing SQLite
//! file (and its directory), runs the migrations and starts the writer. A verifier must do
//! none of that — whatever it checks has to be exactly what it found — so `ReadOnlyLog`
//! opens the database as it is: a SQLite file only if it exists and then read-only, a
//! PostgreSQL database in sessions whose transactions are read-only, never migrating. A
//! database without the log's tables is refused with what was found there, not reported as
//! a log of no events.

use std::path::PathBuf;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::ConnectOptions;

use crate::any::redact;
use crate::db::Db;
use crate::reads;
use crate::store::{Head, RecordedEvent, StoreError};

/// The log of a database, read-only. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReadOnlyLog {
    db: Db,
}

impl ReadOnlyLog {
    /// Open the log a database URL names (`postgres://…`, `sqlite://PATH`), refusing a
    /// missing SQLite file and a database without the log's tables.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            open_postgres(crate::postgres::parse_url(url)?).await?
        } else if url.starts_with("sqlite:") {
            open_sqlite(url).await?
        } else {
            return Err(StoreError::Unavailable(format!(
                "unsupported database URL {:?}: use postgres://… or sqlite://PATH",
                redact(url)
            )));
        };
        let log = Self { db };
        log.require_tables().await?;
        Ok(log)
    }

    /// The head row.
    pub async fn head(&self) -> Result<Head, StoreError> {
        reads::head(&self.db).await
    }

    /// Up to `limit` events with a position greater than `after`, in position order.
    pub async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        reads::read_all(&self.db, after, limit).await
    }

    /// Each read model's checkpoint (its name and the position it has applied), in name
    /// order; none where no read model ever ran.
    pub async fn checkpoints(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let exists = match self.db.dialect() {
            crate::Dialect::Postgres => {
                "SELECT COUNT(*) AS n WHERE to_regclass('projection_checkpoints') IS NOT NULL"
            }
            crate::Dialect::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master \
                 WHERE type = 'table' AND name = 'projection_checkpoints'"
            }
        };
        let found = self
            .db
            .fetch_optional(exists, &[])
            .await?
            .map(|row| row.get_u64("n"))
            .transpose()?
            .unwrap_or(0);
        if found == 0 {
            return Ok(Vec::new());
        }
        self.db
            .fetch_all(
                "SELECT name, position FROM projection_checkpoints ORDER BY name",
                &[],
            )
            .await?
            .iter()
            .map(|row| Ok((row.get::<String>("name")?, row.get_u64("position")?)))
            .collect()
    }

    /// Refuse a database that does not hold the log's tables (never migrated, or another
    /// application's database).
    async fn require_tables(&self) -> Result<(), StoreError> {
        let sql = match self.db.dialect() {
            crate::Dialect::Postgres => {
                "SELECT COUNT(*) AS n FROM (VALUES ('events'), ('log_head')) AS t(name) \
                 WHERE to_regclass(t.name) IS NOT NULL"
            }
            crate::Dialect::Sqlite => {
                "SELECT COUNT(*) AS n FROM sqlite_master \
                 WHERE type = 'table' AND name IN ('events', 'log_head')"
            }
        };
        let found = self
            .db
            .fetch_optional(sql, &[])
            .await?
            .map(|row| row.get_u64("n"))
            .transpose()?
            .unwrap_or(0);
        if found < 2 {
            return Err(StoreError::Unavailable(
                "the database holds no Amtsbuch log (its tables events and log_head are \
                 missing): is this the right database, and has amtsbuch serve ever run on it?"
                    .to_owned(),
            ));
        }
        Ok(())
    }
}

async fn open_postgres(options: PgConnectOptions) -> Result<Db, StoreError> {
    let options = options
        .application_name("amtsbuch-verify")
        .options([("default_transaction_read_only", "on"), ("jit", "off")]);
    // One connection of our own first, for an error that says why it failed (a pool only
    // says it timed out).
    let first = options.connect().await.map_err(|e| {
        StoreError::Unavailable(crate::postgres::describe_connect_error(&options, &e))
    })?;
    drop(first);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_lazy_with(options);
    Ok(Db::from_postgres(pool))
}

async fn open_sqlite(url: &str) -> Result<Db, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?
        .create_if_missing(false)
        .read_only(true);
    let file: PathBuf = options.get_filename().to_path_buf();
    if !file.is_file() {
        return Err(StoreError::Unavailable(format!(
            "there is no database file {}: give the path of an existing log (--database-url sqlite://PATH)",
            file.display()
        )));
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", file.display())))?;
    Ok(Db::from_sqlite(pool, Default::default()))
}
