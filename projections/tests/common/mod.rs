//! Test projections for the projection tests, their workload, and the folds the read
//! models are checked against. The fresh databases they run on (a schema or a file per
//! test) come from the test kit, re-exported here.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amtsbuch_domain::{
    AppendRequest, AuthorityId, Category, EventRecord, EventType, ExpectedVersion, NewEvent,
    StreamId,
};
use amtsbuch_infra::{AnyStore, EventStore, RecordedEvent};
use amtsbuch_projections::streams::{list_streams, StreamQuery, StreamSummary};
use amtsbuch_projections::{
    Projection, ProjectionError, ProjectionState, ReadDb, ReadTx, RunnerConfig,
};
use futures_util::future::BoxFuture;
use serde_json::json;
use tokio::sync::watch;

pub use amtsbuch_testkit::{on_both_adapters, TestDb};

/// How long any wait in these tests may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A runner configuration that retries and takes over quickly, so tests do not wait long.
pub fn quick(batch_size: usize) -> RunnerConfig {
    RunnerConfig {
        batch_size,
        poll: Duration::from_millis(200),
        standby_retry: Duration::from_millis(100),
        lease_check: Duration::from_millis(500),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

pub fn authority(i: usize) -> AuthorityId {
    AuthorityId::parse(["lra-meissen", "stadt-dresden", "lds-chemnitz"][i % 3]).expect("authority")
}

/// One event of the test workload. Streams spread over three categories; most events name
/// an authority and a tenant, some name none, and a stream's authority can change.
pub fn workload_event(stream: usize, n: usize) -> AppendRequest {
    let categories = ["consent", "application", "payment"];
    let id = StreamId::parse(&format!("{}-{stream}", categories[stream % 3])).expect("stream");
    let mut event = NewEvent::new(
        EventType::parse(["Given", "Changed", "Noted"][n % 3]).expect("type"),
        json!({ "n": n }),
    );
    if n % 5 != 4 {
        event.authority = Some(authority(stream + n / 2));
        event.tenant = Some(format!("1461{:04}", stream % 10));
    }
    AppendRequest {
        stream: id,
        expected: ExpectedVersion::Any,
        events: vec![event],
    }
}

/// Append `count` events of the workload from `writers` concurrent tasks, over `streams`
/// streams; `offset` makes the event numbers of successive calls distinct.
pub async fn append_concurrently(
    store: &AnyStore,
    writers: usize,
    count: usize,
    streams: usize,
    offset: usize,
) {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = offset + w;
            while n < offset + count {
                store
                    .append(workload_event(n % streams, n))
                    .await
                    .expect("append");
                n += writers;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
}

/// Every event of the log, in order.
pub async fn whole_log(store: &AnyStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let page = store.read_all(after, 10_000).await.expect("read");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

pub async fn head(store: &AnyStore) -> u64 {
    store.head().await.expect("head").position
}

/// The stream catalogue as a from-scratch fold over the log.
pub async fn expected_catalogue(store: &AnyStore) -> Vec<StreamSummary> {
    let mut streams: BTreeMap<u64, StreamSummary> = BTreeMap::new();
    let mut first: BTreeMap<StreamId, u64> = BTreeMap::new();
    for e in whole_log(store).await {
        let r: EventRecord = e.record().expect("record");
        let key = *first.entry(r.stream_id.clone()).or_insert(e.position);
        let s = streams.entry(key).or_insert_with(|| StreamSummary {
            stream_id: r.stream_id.clone(),
            category: Category::parse(r.stream_id.category()).expect("category"),
            version: 0,
            first_position: e.position,
            last_position: e.position,
            last_event_type: r.event_type.clone(),
            authority: None,
            tenant: None,
            created_at: r.recorded_at,
            updated_at: r.recorded_at,
        });
        s.version = r.stream_version;
        s.last_position = e.position;
        s.last_event_type = r.event_type.clone();
        if r.authority.is_some() {
            s.authority = r.authority.clone();
        }
        if r.tenant.is_some() {
            s.tenant = r.tenant.clone();
        }
        s.updated_at = r.recorded_at;
    }
    streams.into_values().collect()
}

/// The whole catalogue, read page by page through the query API.
pub async fn listed_catalogue(db: &ReadDb, query: StreamQuery) -> Vec<StreamSummary> {
    let mut all = Vec::new();
    let mut query = query;
    loop {
        let page = list_streams(db, &query).await.expect("list");
        assert!(page.streams.len() <= query.limit);
        all.extend(page.streams);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return all,
        }
    }
}

/// Wait until the watched position reaches `target`; returns it.
pub async fn reach(rx: &mut watch::Receiver<u64>, target: u64) -> u64 {
    let waited = tokio::time::timeout(PATIENCE, rx.wait_for(|p| *p >= target))
        .await
        .map(|r| r.map(|p| *p));
    match waited {
        Ok(reached) => reached.expect("runner alive"),
        Err(_) => panic!("position {target} not reached; at {}", *rx.borrow()),
    }
}

/// Wait until the projection's state satisfies `ok`; returns it.
pub async fn state_where(
    rx: &mut watch::Receiver<ProjectionState>,
    ok: impl FnMut(&ProjectionState) -> bool,
) -> ProjectionState {
    let waited = tokio::time::timeout(PATIENCE, rx.wait_for(ok))
        .await
        .map(|r| r.map(|s| s.clone()));
    match waited {
        Ok(state) => state.expect("runner alive"),
        Err(_) => panic!("state not reached; now {:?}", *rx.borrow()),
    }
}

/// A test projection that counts the events of each stream and refuses any event that
/// is not the next one of its stream, so an event applied twice, skipped or reordered
/// stops it instead of going unnoticed (and is counted in `refused`, since the runner's
/// retry would otherwise hide it). It can be told to fail at one position, and it counts
/// how often `apply` was called in this process.
#[derive(Debug, Default)]
pub struct Counter {
    pub fail_at: AtomicU64,
    pub calls: AtomicU64,
    pub refused: AtomicU64,
}

pub const COUNTER: &str = "test_counter";

impl Counter {
    /// Create the counter's table (tests cannot add migrations).
    pub async fn create_table(db: &ReadDb) {
        db.execute(
            "CREATE TABLE IF NOT EXISTS test_counts (stream_id TEXT PRIMARY KEY, \
             n BIGINT NOT NULL, last_version BIGINT NOT NULL, last_position BIGINT NOT NULL)",
            &[],
        )
        .await
        .expect("create test_counts");
    }

    pub fn arm(&self, position: u64) {
        self.fail_at.store(position, Ordering::SeqCst);
    }

    pub fn disarm(&self) {
        self.fail_at.store(0, Ordering::SeqCst);
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Events refused because they were not the next of their stream.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Projection for Counter {
    fn name(&self) -> &'static str {
        COUNTER
    }

    fn tables(&self) -> &'static [&'static str] {
        &["test_counts"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail_at.load(Ordering::SeqCst) == event.position {
                return Err(ProjectionError::Apply {
                    position: event.position,
                    reason: "injected failure".into(),
                });
            }
            let row = tx
                .fetch_optional(
                    "SELECT n, last_version, last_position FROM test_counts WHERE stream_id = $1",
                    &[record.stream_id.as_str().into()],
                )
                .await?;
            let (n, version, position) = match row {
                Some(r) => (
                    r.get_u64("n")?,
                    r.get_u64("last_version")?,
                    r.get_u64("last_position")?,
                ),
                None => (0, 0, 0),
            };
            if record.stream_version != version + 1 || event.position <= position {
                self.refused.fetch_add(1, Ordering::SeqCst);
                return Err(ProjectionError::Apply {
                    position: event.position,
                    reason: format!(
                        "version {} after {version} (position {} after {position})",
                        record.stream_version, event.position
                    ),
                });
            }
            tx.execute(
                "INSERT INTO test_counts (stream_id, n, last_version, last_position) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (stream_id) DO UPDATE SET \
                 n = EXCLUDED.n, last_version = EXCLUDED.last_version, \
                 last_position = EXCLUDED.last_position",
                &[
                    record.stream_id.as_str().into(),
                    (n + 1).into(),
                    record.stream_version.into(),
                    event.position.into(),
                ],
            )
            .await?;
            Ok(())
        })
    }
}

/// The counts as stored: stream → events counted.
pub async fn stored_counts(db: &ReadDb) -> BTreeMap<String, u64> {
    db.fetch_all("SELECT stream_id, n FROM test_counts", &[])
        .await
        .expect("counts")
        .iter()
        .map(|r| {
            (
                r.get::<String>("stream_id").expect("stream_id"),
                r.get_u64("n").expect("n"),
            )
        })
        .collect()
}

/// The counts a from-scratch fold of the log up to `upto` gives.
pub async fn expected_counts(store: &AnyStore, upto: u64) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for e in whole_log(store).await {
        if e.position > upto {
            break;
        }
        let r = e.record().expect("record");
        *counts.entry(r.stream_id.as_str().to_owned()).or_insert(0) += 1;
    }
    counts
}

pub fn counter() -> Arc<Counter> {
    Arc::new(Counter::default())
}

/// The `q` quantile (0.0 to 1.0) of durations sorted in ascending order; zero for none.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "an index into a short list"
    )]
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}
