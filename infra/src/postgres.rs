//! The PostgreSQL event store: the production adapter.
//!
//! Appends go through the group-commit writer; each batch is one transaction that first
//! locks the single `log_head` row. That lock is held until commit, and PostgreSQL makes a
//! transaction's rows visible before it releases its locks, so the next batch — from this
//! process or any other on the same database — can only take positions after the previous
//! batch is visible. Positions are therefore gapless and commit-ordered without any reader
//! having to wait or filter by transaction ids. Each commit notifies the other processes
//! (`pg_notify`) so their subscriptions wake at once instead of at the next poll.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use amtsbuch_domain::{
    plan_batch, AppendOutcome, AppendRequest, BatchContext, Category, EventRecord, ExistingEvent,
    RequestPlan, StreamId,
};
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use crate::store::{
    clamp_limit, to_hash, to_i64, to_u64, Direction, EventStore, Head, RecordedEvent, StoreError,
};
use crate::writer::{Committer, WriterHandle};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Event store on PostgreSQL. Cheap to clone; all clones share pools and the writer.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    writer: WriterHandle,
    head: watch::Receiver<u64>,
}

impl PgStore {
    /// Connect to a `postgres://` URL, run pending migrations, start the writer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e: sqlx::Error| StoreError::Unavailable(format!("bad database URL: {e}")))?;
        Self::connect_with(options).await
    }

    /// Connect with explicit options (tests use this to isolate each run in a schema).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let options = options.application_name("amtsbuch");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let channel = format!("amtsbuch_log_{schema}");

        let head = read_head(&pool).await?;
        let (head_tx, head_rx) = watch::channel(head.position);

        // The writer gets its own small pool so that readers can never starve it.
        let write_pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        tokio::spawn(listen(pool.clone(), channel.clone(), head_tx.clone()));
        let writer = WriterHandle::spawn(
            PgCommitter {
                pool: write_pool,
                channel,
            },
            head_tx,
        );
        Ok(Self {
            pool,
            writer,
            head: head_rx,
        })
    }

    /// The connection pool, for tools that read the log directly (verify, bench).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn read_head(pool: &PgPool) -> Result<Head, StoreError> {
    let row = sqlx::query("SELECT position, chain_hash FROM log_head")
        .fetch_one(pool)
        .await?;
    let position = to_u64(row.try_get("position")?);
    let chain: Vec<u8> = row.try_get("chain_hash")?;
    Ok(Head {
        position,
        chain_hash: to_hash(position, "head chain hash", &chain)?,
    })
}

/// Wake local subscribers when another process commits. Reconnects forever; while it is
/// down, subscriptions still poll.
async fn listen(pool: PgPool, channel: String, head: watch::Sender<u64>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for log notifications; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(&channel).await {
            tracing::warn!(error = %e, "cannot listen for log notifications; retrying");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        loop {
            tokio::select! {
                _ = head.closed() => return,
                n = listener.recv() => match n {
                    Ok(n) => {
                        if let Ok(p) = n.payload().parse::<u64>() {
                            head.send_if_modified(|h| {
                                let moved = p > *h;
                                if moved { *h = p; }
                                moved
                            });
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "log notifications interrupted; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

fn recorded(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position = to_u64(row.try_get("position")?);
    let leaf: &[u8] = row.try_get("leaf_hash")?;
    let chain: &[u8] = row.try_get("chain_hash")?;
    Ok(RecordedEvent {
        position,
        bytes: row.try_get("record")?,
        leaf_hash: to_hash(position, "leaf hash", leaf)?,
        chain_hash: to_hash(position, "chain hash", chain)?,
    })
}

fn all_recorded(rows: Vec<PgRow>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(recorded).collect()
}

impl EventStore for PgStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.writer.append(request).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let sql = match direction {
            Direction::Forwards => {
                "SELECT position, record, leaf_hash, chain_hash FROM events \
                 WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3"
            }
            Direction::Backwards => {
                "SELECT position, record, leaf_hash, chain_hash FROM events \
                 WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version DESC LIMIT $3"
            }
        };
        let rows = sqlx::query(sql)
            .bind(stream.as_str())
            .bind(to_i64(from))
            .bind(to_i64(clamp_limit(limit) as u64))
            .fetch_all(&self.pool)
            .await?;
        all_recorded(rows)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, record, leaf_hash, chain_hash FROM events \
             WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(to_i64(after))
        .bind(to_i64(clamp_limit(limit) as u64))
        .fetch_all(&self.pool)
        .await?;
        all_recorded(rows)
    }

    async fn read_category(
        &self,
        category: &Category,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, record, leaf_hash, chain_hash FROM events \
             WHERE category = $1 AND position > $2 ORDER BY position LIMIT $3",
        )
        .bind(category.as_str())
        .bind(to_i64(after))
        .bind(to_i64(clamp_limit(limit) as u64))
        .fetch_all(&self.pool)
        .await?;
        all_recorded(rows)
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        let row = sqlx::query(
            "SELECT position, record, leaf_hash, chain_hash FROM events WHERE event_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recorded).transpose()
    }

    async fn head(&self) -> Result<Head, StoreError> {
        read_head(&self.pool).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        self.head.clone()
    }
}

struct PgCommitter {
    pool: PgPool,
    channel: String,
}

impl Committer for PgCommitter {
    async fn commit(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: DateTime<Utc>,
    ) -> Result<(Vec<RequestPlan>, Head), StoreError> {
        let mut tx = self.pool.begin().await?;

        // The head lock: serializes every appending transaction on this database.
        let row = sqlx::query("SELECT position, chain_hash FROM log_head FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let head_position = to_u64(row.try_get("position")?);
        let head_chain = to_hash(head_position, "head chain hash", row.try_get("chain_hash")?)?;

        let streams: Vec<&str> = batch
            .iter()
            .map(|r| r.stream.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let ids: Vec<Uuid> = batch
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.event_id))
            .collect();

        // Current versions and reused ids in one round trip. The version lookup is one
        // backward index probe per stream on (stream_id, stream_version).
        let rows = sqlx::query(
            "SELECT s.stream_id, \
                    COALESCE((SELECT e.stream_version FROM events e WHERE e.stream_id = s.stream_id \
                              ORDER BY e.stream_version DESC LIMIT 1), 0) AS version, \
                    NULL::bytea AS record \
             FROM unnest($1::text[]) AS s(stream_id) \
             UNION ALL \
             SELECT NULL, NULL, record FROM events WHERE event_id = ANY($2)",
        )
        .bind(&streams)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let mut versions = HashMap::with_capacity(streams.len());
        let mut existing = HashMap::new();
        for row in &rows {
            let record: Option<Vec<u8>> = row.try_get("record")?;
            match record {
                None => {
                    let stream: String = row.try_get("stream_id")?;
                    let version = to_u64(row.try_get("version")?);
                    if let Ok(stream) = StreamId::parse(&stream) {
                        versions.insert(stream, version);
                    }
                }
                Some(bytes) => {
                    let record =
                        EventRecord::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                            position: 0,
                            reason: format!("stored record of a reused event id: {e}"),
                        })?;
                    existing.insert(record.event_id, ExistingEvent { record });
                }
            }
        }

        let mut ctx = BatchContext {
            head_position,
            head_chain,
            versions,
            existing,
            recorded_at,
        };
        let (plans, planned) = plan_batch(&mut ctx, batch);
        let head = Head {
            position: ctx.head_position,
            chain_hash: ctx.head_chain,
        };
        if planned.is_empty() {
            tx.rollback().await?;
            return Ok((plans, head));
        }

        let n = planned.len();
        let mut positions = Vec::with_capacity(n);
        let mut event_ids = Vec::with_capacity(n);
        let mut stream_ids = Vec::with_capacity(n);
        let mut categories = Vec::with_capacity(n);
        let mut versions = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        let mut tenants = Vec::with_capacity(n);
        let mut records = Vec::with_capacity(n);
        let mut leaves = Vec::with_capacity(n);
        let mut chains = Vec::with_capacity(n);
        for p in &planned {
            positions.push(to_i64(p.record.position));
            event_ids.push(p.record.event_id);
            stream_ids.push(p.record.stream_id.as_str());
            categories.push(p.record.stream_id.category());
            versions.push(to_i64(p.record.stream_version));
            types.push(p.record.event_type.as_str());
            tenants.push(p.record.tenant.as_deref());
            records.push(p.bytes.as_slice());
            leaves.push(p.leaf_hash.as_slice());
            chains.push(p.chain_hash.as_slice());
        }
        // Insert, move the head and notify in one statement: one round trip under the lock.
        sqlx::query(
            "WITH inserted AS ( \
                INSERT INTO events (position, event_id, stream_id, category, stream_version, \
                                    event_type, tenant, recorded_at, record, leaf_hash, chain_hash) \
                SELECT p, i, s, c, v, t, tn, $11, r, l, h \
                FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::text[], $5::int8[], \
                            $6::text[], $7::text[], $8::bytea[], $9::bytea[], $10::bytea[]) \
                     AS u(p, i, s, c, v, t, tn, r, l, h) \
                RETURNING 1 \
             ), moved AS ( \
                UPDATE log_head SET position = $12, chain_hash = $13, updated_at = now() \
                RETURNING position \
             ) \
             SELECT (SELECT count(*) FROM inserted) AS n, pg_notify($14, position::text) FROM moved",
        )
        .bind(&positions)
        .bind(&event_ids)
        .bind(&stream_ids)
        .bind(&categories)
        .bind(&versions)
        .bind(&types)
        .bind(&tenants)
        .bind(&records)
        .bind(&leaves)
        .bind(&chains)
        .bind(recorded_at)
        .bind(to_i64(head.position))
        .bind(head.chain_hash.as_slice())
        .bind(&self.channel)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((plans, head))
    }
}
