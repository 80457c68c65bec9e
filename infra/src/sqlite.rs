//! The embedded SQLite event store: the default for running Amtsbuch without services.
//!
//! The file is opened in WAL mode with `synchronous=FULL`, so an acknowledged append
//! survives a crash, and readers never block the writer. All appends of the process go
//! through the group-commit writer's single connection inside `BEGIN IMMEDIATE`, which
//! gives the same commit-ordered, gapless positions as the PostgreSQL adapter. One file
//! belongs to one `amtsbuch` process; several processes need PostgreSQL.
//!
//! Reads are the same SQL on both adapters (`reads`, through `db`). What is here is
//! SQLite's own: opening the file, and the writer's append path — `BEGIN IMMEDIATE` on its
//! single connection, lists passed as JSON arrays, multi-row inserts — which is the hot
//! path and is written for this database alone.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amtsbuch_domain::{
    plan_batch_within, AppendOutcome, AppendRequest, BatchContext, EventRecord, ExistingEvent,
    RequestPlan, StreamId,
};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite, SqliteConnection};
use tokio::sync::{watch, Mutex};

use crate::db::Db;
use crate::reads;
use crate::store::{to_hash, to_i64, to_u64, EventStore, Head, StoreError};
use crate::tail::LogTail;
use crate::writer::{Committer, Landing, WriterHandle, PROBE};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// Connections of the background pool: the log's tail, the read models' batches (which
/// write one at a time anyway, behind the write gate), the relay and the ledger.
const BACKGROUND_CONNECTIONS: u32 = 4;

/// Rows per insert statement: 11 parameters each, well under SQLite's 32766.
const INSERT_CHUNK: usize = 500;

/// Event store in a SQLite file. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// `pool` with `write_gate`, for the statements written once for both databases (`db`).
    db: Db,
    writer: WriterHandle,
    head: watch::Receiver<u64>,
    write_gate: Arc<Mutex<()>>,
    /// The background pool, with `write_gate`: what follows the log (read models, relay,
    /// ledger, the log's tail) reads and writes through it, so that requests never wait
    /// behind it for a connection.
    background: Db,
    /// The log's tail, started when first asked for; `None` after `without_tail`.
    tail: Option<Arc<OnceLock<LogTail>>>,
}

impl SqliteStore {
    /// Open (creating if needed) the store at a `sqlite:` URL or a plain file path.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Unavailable(format!("bad database URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let write_gate = Arc::new(Mutex::new(()));
        let db = Db::from_sqlite(pool.clone(), write_gate.clone());
        let background = Db::from_sqlite(
            SqlitePoolOptions::new()
                .max_connections(BACKGROUND_CONNECTIONS)
                .connect_lazy_with(options.clone()),
            write_gate.clone(),
        );
        let head = reads::head(&db).await?;
        let (head_tx, head_rx) = watch::channel(head.position);
        let conn = SqliteConnection::connect_with(&options).await?;
        let writer = WriterHandle::spawn(
            SqliteCommitter {
                conn: Some(conn),
                options,
                write_gate: write_gate.clone(),
            },
            head_tx,
        );
        Ok(Self {
            pool,
            db,
            writer,
            head: head_rx,
            write_gate,
            background,
            tail: Some(Arc::new(OnceLock::new())),
        })
    }

    /// Since when appends fail as a whole, if they do now (see `writer`).
    pub fn writer_fault(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.writer.fault()
    }

    /// Refuse appends whose records are longer than `limit` bytes; returns the limit before.
    pub fn set_max_record_bytes(&self, limit: usize) -> usize {
        self.writer.set_max_record_bytes(limit)
    }

    /// The connection pool, for tools that read the log directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The database, for statements written once for both adapters. Its writes hold
    /// `write_gate`.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// This store as it followed the log before it had a tail and a background pool: every
    /// follower reads the log itself, through the request pool. Only for comparisons
    /// (a benchmark's `--followers-read-alone`); a server never runs so.
    pub fn without_tail(mut self) -> Self {
        self.tail = None;
        self.background = self.db.clone();
        self
    }

    /// The background pool's database (see the field).
    pub fn background_db(&self) -> &Db {
        &self.background
    }

    /// Hold this around every write transaction on the file (the writer does; projections
    /// do). SQLite admits one writer at a time and makes the others retry from its busy
    /// handler, which sleeps 1, 2, 5, … up to 100 ms between attempts; under steady appends
    /// a second writer kept losing that race for hundreds of milliseconds. Writers that
    /// queue on this lock first take turns in arrival order instead, without sleeping.
    pub fn write_gate(&self) -> Arc<Mutex<()>> {
        self.write_gate.clone()
    }
}

impl EventStore for SqliteStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.writer.append(request).await
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<RequestPlan>, StoreError> {
        self.writer.append_many(requests).await
    }

    reads::shared_reads!();

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }

    fn tail(&self) -> Option<LogTail> {
        let tail = self.tail.as_ref()?;
        Some(
            tail.get_or_init(|| LogTail::start(self.background.clone(), self.head.clone()))
                .clone(),
        )
    }
}

/// The head as the committer reads it, on its own connection inside its transaction.
const HEAD_SQL: &str = "SELECT position, chain_hash FROM log_head WHERE id = 1";

fn head_from(row: &SqliteRow) -> Result<Head, StoreError> {
    let position = to_u64(row.try_get("position")?);
    let chain: Vec<u8> = row.try_get("chain_hash")?;
    Ok(Head {
        position,
        chain_hash: to_hash(position, "head chain hash", &chain)?,
    })
}

struct SqliteCommitter {
    /// The writer's connection; `None` after a failure until the next batch opens a new one.
    conn: Option<SqliteConnection>,
    options: SqliteConnectOptions,
    write_gate: Arc<Mutex<()>>,
}

impl SqliteCommitter {
    /// The writer's connection, opened afresh if the last one was given up.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        if self.conn.is_none() {
            self.conn = Some(SqliteConnection::connect_with(&self.options).await?);
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the writer has no connection".into()))
    }

    /// Give up the connection after a failure. A failed statement or commit can leave it
    /// inside a transaction that sqlx still counts although SQLite already ended it (a full
    /// disk rolls the transaction back by itself); every later `BEGIN IMMEDIATE` on it would
    /// be refused ("non-zero transaction depth") until a restart. Closing it rolls back
    /// whatever it still had open, and the next batch starts on a clean connection.
    async fn discard(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Dropping it on a timeout closes it just the same, on its worker thread.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close()).await;
        }
    }

    async fn commit_inner(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: DateTime<Utc>,
        max_record_bytes: usize,
    ) -> Result<(Vec<RequestPlan>, Head), StoreError> {
        let gate = self.write_gate.clone();
        let _turn = gate.lock().await;
        // IMMEDIATE takes the write lock up front, so the head read below cannot be stale.
        let mut tx = self
            .connection()
            .await?
            .begin_with("BEGIN IMMEDIATE")
            .await?;
        let head = head_from(&sqlx::query(HEAD_SQL).fetch_one(&mut *tx).await?)?;
        // Versions and reused ids with one statement each, the lists passed as JSON arrays,
        // rather than one statement per stream and per event: every statement is a round
        // trip to the connection's worker thread.
        let mut streams: Vec<&str> = batch.iter().map(|r| r.stream.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        let streams_json = serde_json::to_string(&streams)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode stream ids: {e}")))?;
        let rows = sqlx::query(
            "SELECT j.value AS stream_id, \
                    (SELECT max(e.stream_version) FROM events e WHERE e.stream_id = j.value) AS version \
             FROM json_each(?1) AS j",
        )
        .bind(&streams_json)
        .fetch_all(&mut *tx)
        .await?;
        let mut versions = HashMap::with_capacity(streams.len());
        for row in &rows {
            let stream: String = row.try_get("stream_id")?;
            let version: Option<i64> = row.try_get("version")?;
            if let Ok(stream) = StreamId::parse(&stream) {
                versions.insert(stream, version.map_or(0, to_u64));
            }
        }
        let ids: Vec<String> = batch
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.event_id.simple().to_string()))
            .collect();
        let ids_json = serde_json::to_string(&ids)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode event ids: {e}")))?;
        let rows = sqlx::query(
            "SELECT record FROM events WHERE event_id IN (SELECT unhex(value) FROM json_each(?1))",
        )
        .bind(&ids_json)
        .fetch_all(&mut *tx)
        .await?;
        let mut existing = HashMap::new();
        for row in &rows {
            let bytes: Vec<u8> = row.try_get("record")?;
            let record = EventRecord::from_bytes(&bytes).map_err(|err| StoreError::Corrupt {
                position: 0,
                reason: format!("stored record of a reused event id: {err}"),
            })?;
            existing.insert(record.event_id, ExistingEvent { record });
        }
        let mut ctx = BatchContext {
            head_position: head.position,
            head_chain: head.chain_hash,
            versions,
            existing,
            recorded_at,
        };
        let (plans, planned) = plan_batch_within(&mut ctx, batch, max_record_bytes);
        let recorded_at = amtsbuch_domain::record::format_timestamp(&recorded_at);
        // Multi-row inserts: one statement per chunk instead of one per event.
        for chunk in planned.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO events (position, event_id, stream_id, category, stream_version, \
                 event_type, tenant, recorded_at, record, leaf_hash, chain_hash) ",
            );
            q.push_values(chunk, |mut row, p| {
                row.push_bind(to_i64(p.record.position))
                    .push_bind(p.record.event_id)
                    .push_bind(p.record.stream_id.as_str())
                    .push_bind(p.record.stream_id.category())
                    .push_bind(to_i64(p.record.stream_version))
                    .push_bind(p.record.event_type.as_str())
                    .push_bind(p.record.tenant.as_deref())
                    .push_bind(recorded_at.as_str())
                    .push_bind(p.bytes.as_slice())
                    .push_bind(p.leaf_hash.as_slice())
                    .push_bind(p.chain_hash.as_slice());
            });
            q.build().persistent(false).execute(&mut *tx).await?;
        }
        let new_head = Head {
            position: ctx.head_position,
            chain_hash: ctx.head_chain,
        };
        if !planned.is_empty() {
            sqlx::query("UPDATE log_head SET position = ?1, chain_hash = ?2 WHERE id = 1")
                .bind(to_i64(new_head.position))
                .bind(new_head.chain_hash.as_slice())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((plans, new_head))
    }
}

impl Committer for SqliteCommitter {
    type Output = Landing;

    async fn launch(
        &mut self,
        batch: Vec<AppendRequest>,
        recorded_at: DateTime<Utc>,
        max_record_bytes: usize,
    ) -> BoxFuture<'static, Landing> {
        // A dropped transaction rolls back, so an error anywhere leaves nothing behind; the
        // connection it ran on is given up as well, in case it still thinks otherwise.
        let landing = self
            .commit_inner(&batch, recorded_at, max_record_bytes)
            .await;
        if landing.is_err() {
            self.discard().await;
        }
        Box::pin(std::future::ready(landing))
    }

    fn landed(&mut self, output: Landing) -> Landing {
        output
    }

    async fn probe(&mut self) -> Result<(), StoreError> {
        let gate = self.write_gate.clone();
        let _turn = gate.lock().await;
        let done = sqlx::query(PROBE)
            .execute(&mut *self.connection().await?)
            .await;
        if done.is_err() {
            self.discard().await;
        }
        done.map(|_| ()).map_err(StoreError::from)
    }
}
