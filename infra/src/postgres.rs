//! The PostgreSQL event store: the production adapter.
//!
//! Appends go through the group-commit writer; each batch is one transaction that first
//! locks the single `log_head` row. That lock is held until commit, and PostgreSQL makes a
//! transaction's rows visible before it releases its locks, so the next batch — from this
//! process or any other on the same database — can only take positions after the previous
//! batch is visible. Positions are therefore gapless and commit-ordered without any reader
//! having to wait or filter by transaction ids. Each commit notifies the other processes
//! (`pg_notify`) so their subscriptions wake at once instead of at the next poll.
//!
//! Reads are the same SQL on both adapters (`reads`, through `db`). What is here is
//! PostgreSQL's own: connecting, LISTEN/NOTIFY, and the writer's append path, whose array
//! parameters (`unnest`, `= ANY`) and compare-and-set fast path have no SQLite form and make
//! a batch one round trip; it is the hot path and is written for this database alone.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amtsbuch_domain::{
    plan_batch_within, AppendError, AppendOutcome, AppendRequest, BatchContext, EventRecord,
    ExistingEvent, ExpectedVersion, PlannedRecord, RequestPlan, StreamId,
};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use tokio::sync::watch;
use uuid::Uuid;

use crate::db::Db;
use crate::lease::LeaseSession;
use crate::reads;
use crate::store::{to_hash, to_i64, to_u64, EventStore, Head, StoreError};
use crate::tail::LogTail;
use crate::writer::{Committer, Landing, WriterHandle, PROBE};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Event store on PostgreSQL. Cheap to clone; all clones share pools and the writer.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    /// `pool` for the statements written once for both databases (`db`).
    db: Db,
    /// The background pool (see `ConnectionBudget`): what follows the log reads and writes
    /// through it, so that requests never wait behind it for a connection.
    background: Db,
    /// The log's tail, started when first asked for; `None` after `without_tail`.
    tail: Option<Arc<OnceLock<LogTail>>>,
    /// Connections that only hold shared locks (`shared_lock`), opened when first needed.
    locks: PgPool,
    /// The session that holds this store's leases (`lease`), opened when first needed.
    leases: Arc<LeaseSession>,
    writer: WriterHandle,
    head: watch::Receiver<u64>,
    /// How the store connects, for `diagnose` (behind an `Arc`: the options are large, and
    /// every clone of the store would copy them).
    options: Arc<PgConnectOptions>,
}

/// How long a request waits for a pooled connection before it is answered "unavailable":
/// while the database is away, callers hear so within about a second instead of queueing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);

/// How long what follows the log waits for a connection of the background pool: a read
/// model's batch that waits is no request, and one that gives up fails and backs off, so
/// it waits longer than a request before it calls the database unavailable.
const BACKGROUND_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many PostgreSQL connections one store (one `amtsbuch` process) may hold at most,
/// and how it divides them:
///
/// - the group-commit writer: 1 (it writes one batch at a time);
/// - the session that holds every lease of the process (ledger, relay, read models, GDPR
///   sweeper): 1, opened when the first lease is tried;
/// - the background pool: what follows the log — the log's tail (`tail`), the read
///   models' batches, the relay's cursor and the ledger — `background` connections
///   (`DEFAULT_BACKGROUND` unless told otherwise), so that requests never wait behind
///   them; it gets at most what is left once the others have their least (below), and
///   with nothing left (a budget of `MIN`) they share the read pool;
/// - subject locks (`shared_lock`): a third of the rest, at least 1 — as many GDPR commands
///   as can run at once on this node;
/// - requests' reads and everything else (including the one connection that listens for
///   other processes' commits): the remainder, at least 3.
///
/// PgBouncer (or another pooler) in transaction mode cannot stand in front of these
/// connections: leases and subject locks are session-level advisory locks and `LISTEN` is
/// a session's, and both would be lost or leak to other clients when the pooler hands the
/// server connection on after each transaction. Session mode works, with a pool at least
/// this size per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionBudget {
    total: u32,
    background: u32,
}

/// How a budget's connections are divided (the writer and the lease session take one
/// each besides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Requests' reads, with the listener.
    pub reads: u32,
    /// Subject locks.
    pub locks: u32,
    /// The background pool; 0 when it shares `reads`.
    pub background: u32,
}

impl ConnectionBudget {
    /// What a node gets unless told otherwise.
    pub const DEFAULT: ConnectionBudget = ConnectionBudget {
        total: 16,
        background: Self::DEFAULT_BACKGROUND,
    };
    /// The least a store can work with: writer, lease session, one lock, the listener and
    /// two reads.
    pub const MIN: u32 = 6;
    /// The background pool's connections unless told otherwise.
    pub const DEFAULT_BACKGROUND: u32 = 4;

    /// A budget of `total` connections with the default background pool, refused with the
    /// reason below `MIN`.
    pub fn new(total: u32) -> Result<Self, String> {
        if total < Self::MIN {
            return Err(format!(
                "{total} PostgreSQL connections cannot cover what a node runs: the writer (1), \
                 the leases of the ledger, the relay, the read models and the GDPR sweeper \
                 (1, shared), subject locks (at least 1), and reads (at least 3, one of which \
                 listens for other nodes' commits); give at least {}",
                Self::MIN
            ));
        }
        Ok(Self {
            total,
            background: Self::DEFAULT_BACKGROUND,
        })
    }

    /// The same total, with `background` connections for the background pool (as many of
    /// them as the total leaves room for; 0 shares the read pool).
    pub fn with_background(self, background: u32) -> Self {
        Self { background, ..self }
    }

    /// The total.
    pub fn total(self) -> u32 {
        self.total
    }

    /// How the total is divided.
    pub fn split(self) -> Split {
        let rest = self.total.saturating_sub(2);
        // Requests keep at least three reads and one lock.
        let background = self.background.min(rest.saturating_sub(4));
        let shared = rest - background;
        let locks = (shared / 3).max(1);
        Split {
            reads: shared - locks,
            locks,
            background,
        }
    }
}

impl Default for ConnectionBudget {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl PgStore {
    /// Connect to a `postgres://` URL, run pending migrations, start the writer.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(parse_url(url)?).await
    }

    /// Connect with explicit options (tests use this to isolate each run in a schema),
    /// within the default connection budget.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        Self::connect_within(options, ConnectionBudget::DEFAULT).await
    }

    /// Connect holding at most `budget` connections.
    pub async fn connect_within(
        options: PgConnectOptions,
        budget: ConnectionBudget,
    ) -> Result<Self, StoreError> {
        // JIT compilation pays off for long analytical queries, never for this service's
        // short ones: it once added 10–20 ms to a 0.1 ms index lookup whose row estimate
        // crossed the JIT threshold. Every session of the service runs without it.
        let options = options
            .application_name("amtsbuch")
            .options([("jit", "off")]);
        // One connection of our own first: a pool that cannot connect only says it timed
        // out, which hides whether nothing listens there or the server is full.
        let first = options
            .connect()
            .await
            .map_err(|e| StoreError::Unavailable(describe_connect_error(&options, &e)))?;
        let Split {
            reads,
            locks: lock_connections,
            background,
        } = budget.split();
        let pool = PgPoolOptions::new()
            .max_connections(reads)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        drop(first);
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))?;
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&pool)
            .await?;
        let channel = format!("amtsbuch_log_{schema}");

        let db = Db::from_postgres(pool.clone());
        let background = if background == 0 {
            db.clone()
        } else {
            Db::from_postgres(
                PgPoolOptions::new()
                    .max_connections(background)
                    .acquire_timeout(BACKGROUND_ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options.clone()),
            )
        };
        let head = reads::head(&db).await?;
        let (head_tx, head_rx) = watch::channel(head.position);

        // The writer gets its own pool so that readers can never starve it.
        let write_pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options.clone());
        // Lock holders wait in a pool of their own: a command holding its subject's lock
        // must never wait for a connection that another lock holder occupies.
        let locks = PgPoolOptions::new()
            .max_connections(lock_connections)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // No ping before each use: the lock statement is the only use, and if the
            // connection died it fails at once and the command answers 503.
            .test_before_acquire(false)
            // A connection goes back to the pool only without any lock of its holder.
            .after_release(|conn, _| {
                Box::pin(async move {
                    sqlx::query(crate::shared_lock::UNLOCK_ALL)
                        .execute(&mut *conn)
                        .await?;
                    Ok(true)
                })
            })
            .connect_lazy_with(options.clone());
        let leases = LeaseSession::new(options.clone());
        tokio::spawn(listen(pool.clone(), channel.clone(), head_tx.clone()));
        let (committed, own) = watch::channel(head.position);
        tokio::spawn(notify_others(pool.clone(), channel, own));
        let writer = WriterHandle::spawn(
            PgCommitter {
                pool: write_pool.clone(),
                committed,
                cache: None,
            },
            head_tx,
        );
        Ok(Self {
            pool,
            db,
            background,
            tail: Some(Arc::new(OnceLock::new())),
            locks,
            leases,
            writer,
            head: head_rx,
            options: Arc::new(options),
        })
    }

    /// Why the database cannot be reached now, found by opening one connection directly:
    /// a pool that times out does not say whether nothing listens at the address or the
    /// server refuses more clients. `None` if a connection opens.
    pub async fn diagnose(&self) -> Option<Diagnosis> {
        match tokio::time::timeout(DIAGNOSE_TIMEOUT, self.options.connect()).await {
            Ok(Ok(conn)) => {
                drop(conn);
                None
            }
            Ok(Err(e)) => Some(Diagnosis {
                class: connect_error_class(&e),
                detail: describe_connect_error(&self.options, &e),
            }),
            Err(_) => Some(Diagnosis {
                class: "the database did not answer a new connection in time",
                detail: format!(
                    "PostgreSQL at {} did not answer a new connection within {} ms",
                    address(&self.options),
                    DIAGNOSE_TIMEOUT.as_millis()
                ),
            }),
        }
    }

    /// The connection pool, for tools that read the log directly (verify, bench).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The database, for statements written once for both adapters.
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

    /// The background pool's database (see `ConnectionBudget`).
    pub fn background_db(&self) -> &Db {
        &self.background
    }

    /// Since when appends fail as a whole, if they do now (see `writer`).
    pub fn writer_fault(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.writer.fault()
    }

    /// Refuse appends whose records are longer than `limit` bytes; returns the limit before.
    pub fn set_max_record_bytes(&self, limit: usize) -> usize {
        self.writer.set_max_record_bytes(limit)
    }

    /// The pool whose connections hold shared locks.
    pub(crate) fn lock_pool(&self) -> &PgPool {
        &self.locks
    }

    /// The session that holds leases.
    pub(crate) fn leases(&self) -> &Arc<LeaseSession> {
        &self.leases
    }
}

/// Why a connection could not be opened, in two forms: `class`, a fixed sentence that
/// names the kind of failure and nothing of the set-up, fit for anybody who asks (the
/// public `/readyz`); and `detail`, for the operator's log, with the address and the
/// server's own message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub class: &'static str,
    pub detail: String,
}

/// The kind of a failed connection attempt, as `Diagnosis::class` states it.
fn connect_error_class(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "nothing accepts connections at the database's address (connection refused)"
        }
        sqlx::Error::Io(_) => "the database cannot be reached",
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53300") => {
            "the database refuses more clients (too many clients)"
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57P03") => {
            "the database does not accept connections yet"
        }
        _ => "the database refuses the connection",
    }
}

/// How long `diagnose` waits for a connection of its own.
const DIAGNOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// The options a `postgres://` URL names.
pub(crate) fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    url.parse()
        .map_err(|e: sqlx::Error| StoreError::Unavailable(format!("bad database URL: {e}")))
}

/// Where the options point, for messages (never with the password).
fn address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", options.get_host(), options.get_port()),
    }
}

/// A failed connection attempt in words an operator can act on; above all, a wrong address
/// and a full server must not read alike.
pub(crate) fn describe_connect_error(options: &PgConnectOptions, e: &sqlx::Error) -> String {
    let at = address(options);
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {at} (connection refused): is PostgreSQL running there, and are host and port right?"
        ),
        sqlx::Error::Io(io) => format!("cannot reach PostgreSQL at {at}: {io}"),
        // 53300 too_many_connections: the server is up but every connection slot is taken.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("53300") => format!(
            "PostgreSQL at {at} refuses more clients ({}): all of its max_connections are in use; \
             free some, raise max_connections, or give the nodes fewer (--db-connections)",
            db.message()
        ),
        // 57P03 cannot_connect_now: starting up, shutting down or in recovery.
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57P03") => format!(
            "PostgreSQL at {at} does not accept connections yet ({})",
            db.message()
        ),
        other => format!("cannot connect to PostgreSQL at {at}: {other}"),
    }
}

/// Shortest gap between two notifications this process sends.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(5);

/// Tell other processes on the database that this one committed, so their subscriptions
/// wake without waiting for their poll. Notifying inside every append transaction would
/// serialize commits on PostgreSQL's notification queue; instead this task sends the
/// latest position at most every `NOTIFY_INTERVAL`, so a burst of commits costs one
/// notification and other processes hear of it within a few milliseconds.
async fn notify_others(pool: PgPool, channel: String, mut own: watch::Receiver<u64>) {
    while own.changed().await.is_ok() {
        let position = *own.borrow_and_update();
        if let Err(e) = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&channel)
            .bind(position.to_string())
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "cannot notify other processes of new events; they will poll");
        }
        tokio::time::sleep(NOTIFY_INTERVAL).await;
    }
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

impl EventStore for PgStore {
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

/// Most stream versions the writer remembers before it starts afresh.
const MAX_CACHED_STREAMS: usize = 100_000;

struct PgCommitter {
    pool: PgPool,
    /// Told every position this writer commits, for `notify_others`.
    committed: watch::Sender<u64>,
    /// What this writer knows of the log as of its own last commit. It is only trusted
    /// through the compare-and-set on the head row in `commit_fast`: if the head is still
    /// where this writer left it, nobody else has appended since, so every cached version
    /// is current.
    cache: Option<Cache>,
}

struct Cache {
    head: Head,
    versions: HashMap<StreamId, u64>,
}

/// The rows of a planned batch as column arrays, for one `unnest` insert.
struct Columns<'a> {
    positions: Vec<i64>,
    event_ids: Vec<Uuid>,
    stream_ids: Vec<&'a str>,
    categories: Vec<&'a str>,
    versions: Vec<i64>,
    types: Vec<&'a str>,
    tenants: Vec<Option<&'a str>>,
    records: Vec<&'a [u8]>,
    leaves: Vec<&'a [u8]>,
    chains: Vec<&'a [u8]>,
}

impl<'a> Columns<'a> {
    fn new(planned: &'a [PlannedRecord]) -> Self {
        let n = planned.len();
        let mut c = Columns {
            positions: Vec::with_capacity(n),
            event_ids: Vec::with_capacity(n),
            stream_ids: Vec::with_capacity(n),
            categories: Vec::with_capacity(n),
            versions: Vec::with_capacity(n),
            types: Vec::with_capacity(n),
            tenants: Vec::with_capacity(n),
            records: Vec::with_capacity(n),
            leaves: Vec::with_capacity(n),
            chains: Vec::with_capacity(n),
        };
        for p in planned {
            c.positions.push(to_i64(p.record.position));
            c.event_ids.push(p.record.event_id);
            c.stream_ids.push(p.record.stream_id.as_str());
            c.categories.push(p.record.stream_id.category());
            c.versions.push(to_i64(p.record.stream_version));
            c.types.push(p.record.event_type.as_str());
            c.tenants.push(p.record.tenant.as_deref());
            c.records.push(p.bytes.as_slice());
            c.leaves.push(p.leaf_hash.as_slice());
            c.chains.push(p.chain_hash.as_slice());
        }
        c
    }

    /// Bind as $1..$10 of `INSERT_ROWS`.
    fn bind<'q>(
        &'q self,
        q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        q.bind(&self.positions)
            .bind(&self.event_ids)
            .bind(&self.stream_ids)
            .bind(&self.categories)
            .bind(&self.versions)
            .bind(&self.types)
            .bind(&self.tenants)
            .bind(&self.records)
            .bind(&self.leaves)
            .bind(&self.chains)
    }
}

/// Insert the rows bound by `Columns::bind` ($1..$10, recorded_at $11).
macro_rules! insert_rows {
    ($guard:literal) => {
        concat!(
            "INSERT INTO events (position, event_id, stream_id, category, stream_version, \
                                 event_type, tenant, recorded_at, record, leaf_hash, chain_hash) \
             SELECT p, i, s, c, v, t, tn, $11, r, l, h \
             FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::text[], $5::int8[], \
                         $6::text[], $7::text[], $8::bytea[], $9::bytea[], $10::bytea[]) \
                  AS u(p, i, s, c, v, t, tn, r, l, h) ",
            $guard,
            " RETURNING 1"
        )
    };
}

/// The fast path in one statement, run outside an explicit transaction so that the
/// statement, its commit and the notification cost a single round trip. The head row is
/// moved only if it is still where this writer left it ($12, $13); the insert runs only
/// if the head moved. The row lock taken by the UPDATE is held until the statement's
/// commit, exactly as in the locked path, so positions stay commit-ordered.
const FAST_APPEND: &str = concat!(
    "WITH moved AS ( \
        UPDATE log_head SET position = $14, chain_hash = $15, updated_at = now() \
        WHERE position = $12 AND chain_hash = $13 \
        RETURNING position \
     ), inserted AS (",
    insert_rows!("WHERE EXISTS (SELECT 1 FROM moved)"),
    ") SELECT (SELECT count(*) FROM inserted) AS n FROM moved"
);

/// The insert of the locked path, together with moving the head and notifying.
const LOCKED_APPEND: &str = concat!(
    "WITH inserted AS (",
    insert_rows!(""),
    "), moved AS ( \
        UPDATE log_head SET position = $12, chain_hash = $13, updated_at = now() \
        RETURNING position \
     ) \
     SELECT (SELECT count(*) FROM inserted) AS n FROM moved"
);

/// Each request's decision, the head after the batch, and the stream versions read under
/// the lock as the batch left them.
type Decided = (Vec<RequestPlan>, Head, HashMap<StreamId, u64>);

/// What a flight reports back to the writer.
enum Flight {
    /// Written by the fast path; the cache already reflects it.
    Fast(Landing),
    /// Decided by the locked path, with the versions it read under the lock.
    Locked(Result<Decided, StoreError>),
}

impl PgCommitter {
    /// Plan from the cache. Returns `None` when the
    /// cache cannot decide the batch: any refusal other than invalid input is computed from
    /// state that may be stale, and only the locked path may report it.
    async fn plan_fast(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: DateTime<Utc>,
        max_record_bytes: usize,
    ) -> Result<Option<(Vec<RequestPlan>, Vec<PlannedRecord>, Head, Head)>, StoreError> {
        let Some(cache) = &self.cache else {
            return Ok(None);
        };
        let mut versions = HashMap::with_capacity(batch.len());
        let mut unknown: Vec<&str> = Vec::new();
        for r in batch {
            if versions.contains_key(&r.stream) {
                continue;
            }
            match cache.versions.get(&r.stream) {
                Some(v) => {
                    versions.insert(r.stream.clone(), *v);
                }
                // A stream that must be new can be assumed new: the unique index on
                // (stream_id, stream_version) refuses version 1 if it exists.
                None if matches!(
                    r.expected,
                    ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
                ) =>
                {
                    versions.insert(r.stream.clone(), 0);
                }
                None => unknown.push(r.stream.as_str()),
            }
        }
        if !unknown.is_empty() {
            unknown.sort_unstable();
            unknown.dedup();
            // Read without a lock: the compare-and-set proves nothing was appended since.
            let rows = sqlx::query(LOOKUP_VERSIONS)
                .bind(&unknown)
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                let stream: String = row.try_get("stream_id")?;
                if let Ok(stream) = StreamId::parse(&stream) {
                    versions.insert(stream, to_u64(row.try_get("version")?));
                }
            }
        }
        let Some(cache) = &mut self.cache else {
            return Ok(None);
        };
        let old = cache.head;
        let mut ctx = BatchContext {
            head_position: old.position,
            head_chain: old.chain_hash,
            versions,
            existing: HashMap::new(),
            recorded_at,
        };
        let (plans, planned) = plan_batch_within(&mut ctx, batch, max_record_bytes);
        // A record too large here is too large at the real head as well: the cached head
        // is never ahead of it, and a later position only makes the record longer.
        let doubtful = plans.iter().any(|p| {
            matches!(p, Err(e) if !matches!(e, AppendError::Invalid(_) | AppendError::TooLarge { .. }))
        });
        if doubtful {
            return Ok(None);
        }
        let new = Head {
            position: ctx.head_position,
            chain_hash: ctx.head_chain,
        };
        cache.head = new;
        cache.versions.extend(ctx.versions);
        if cache.versions.len() > MAX_CACHED_STREAMS {
            cache.versions.clear();
        }
        Ok(Some((plans, planned, old, new)))
    }
}

/// Write a batch planned by the fast path: one autocommitted statement. `Ok(false)` means
/// the compare-and-set found the head moved, or a unique index refused a row (a reused
/// event id, or a stream assumed new that exists); nothing was written then.
async fn write_fast(
    pool: &PgPool,
    planned: &[PlannedRecord],
    old: Head,
    new: Head,
    recorded_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let columns = Columns::new(planned);
    let result = columns
        .bind(sqlx::query(FAST_APPEND))
        .bind(recorded_at)
        .bind(to_i64(old.position))
        .bind(old.chain_hash.as_slice())
        .bind(to_i64(new.position))
        .bind(new.chain_hash.as_slice())
        .fetch_optional(pool)
        .await;
    match result {
        Ok(moved) => Ok(moved.is_some()),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The authoritative path: lock the head, read what the batch needs, plan, write. Returns
/// the versions read under the lock (updated by the batch), which are current as of its
/// commit.
async fn commit_locked(
    pool: &PgPool,
    batch: &[AppendRequest],
    recorded_at: DateTime<Utc>,
    max_record_bytes: usize,
) -> Result<Decided, StoreError> {
    let mut tx = pool.begin().await?;

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

    // Current versions and reused ids in one round trip.
    let rows = sqlx::query(LOOKUP_VERSIONS_AND_IDS)
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
                let record = EventRecord::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
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
    let (plans, planned) = plan_batch_within(&mut ctx, batch, max_record_bytes);
    let head = Head {
        position: ctx.head_position,
        chain_hash: ctx.head_chain,
    };
    if planned.is_empty() {
        tx.rollback().await?;
    } else {
        let columns = Columns::new(&planned);
        columns
            .bind(sqlx::query(LOCKED_APPEND))
            .bind(recorded_at)
            .bind(to_i64(head.position))
            .bind(head.chain_hash.as_slice())
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok((plans, head, ctx.versions))
}

/// Current version of each stream in $1 (0 if absent): one backward probe per stream on
/// the (stream_id, stream_version) index.
const LOOKUP_VERSIONS: &str = "SELECT s.stream_id, \
        COALESCE((SELECT e.stream_version FROM events e WHERE e.stream_id = s.stream_id \
                  ORDER BY e.stream_version DESC LIMIT 1), 0) AS version \
     FROM unnest($1::text[]) AS s(stream_id)";

/// `LOOKUP_VERSIONS` plus the stored records of the event ids in $2.
const LOOKUP_VERSIONS_AND_IDS: &str = "SELECT s.stream_id, \
        COALESCE((SELECT e.stream_version FROM events e WHERE e.stream_id = s.stream_id \
                  ORDER BY e.stream_version DESC LIMIT 1), 0) AS version, \
        NULL::bytea AS record \
     FROM unnest($1::text[]) AS s(stream_id) \
     UNION ALL \
     SELECT NULL, NULL, record FROM events WHERE event_id = ANY($2)";

impl Committer for PgCommitter {
    type Output = Flight;

    async fn launch(
        &mut self,
        batch: Vec<AppendRequest>,
        recorded_at: DateTime<Utc>,
        max_record_bytes: usize,
    ) -> BoxFuture<'static, Flight> {
        let pool = self.pool.clone();
        match self.plan_fast(&batch, recorded_at, max_record_bytes).await {
            Ok(Some((plans, planned, old, new))) => {
                if planned.is_empty() {
                    // Only invalid requests: refused whatever the log holds, nothing to write.
                    return Box::pin(std::future::ready(Flight::Fast(Ok((plans, old)))));
                }
                Box::pin(async move {
                    match write_fast(&pool, &planned, old, new, recorded_at).await {
                        Ok(true) => Flight::Fast(Ok((plans, new))),
                        Ok(false) => Flight::Locked(
                            commit_locked(&pool, &batch, recorded_at, max_record_bytes).await,
                        ),
                        Err(e) => Flight::Fast(Err(e)),
                    }
                })
            }
            Ok(None) => {
                // The next batch must not build on a cache the database may contradict.
                self.cache = None;
                Box::pin(async move {
                    Flight::Locked(
                        commit_locked(&pool, &batch, recorded_at, max_record_bytes).await,
                    )
                })
            }
            Err(e) => {
                self.cache = None;
                Box::pin(std::future::ready(Flight::Fast(Err(e))))
            }
        }
    }

    async fn probe(&mut self) -> Result<(), StoreError> {
        sqlx::query(PROBE).execute(&self.pool).await?;
        Ok(())
    }

    fn landed(&mut self, output: Flight) -> Landing {
        let landing = self.settle(output);
        if let Ok((_, head)) = &landing {
            self.committed.send_if_modified(|p| {
                let moved = head.position > *p;
                if moved {
                    *p = head.position;
                }
                moved
            });
        }
        landing
    }
}

impl PgCommitter {
    /// Update the cache from a finished write.
    fn settle(&mut self, output: Flight) -> Landing {
        match output {
            Flight::Fast(Ok(landing)) => Ok(landing),
            Flight::Fast(Err(e)) => {
                // The statement may or may not have committed; start afresh from the
                // database. Callers retry with the same event ids, which is safe.
                self.cache = None;
                Err(e)
            }
            Flight::Locked(Ok((plans, head, versions))) => {
                // Read under the lock by the only batch this writer runs: current.
                self.cache = Some(Cache { head, versions });
                Ok((plans, head))
            }
            Flight::Locked(Err(e)) => {
                self.cache = None;
                Err(e)
            }
        }
    }
}
