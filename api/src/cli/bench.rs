//! `amtsbuch bench append`: throughput and latency of the append path, measured against the
//! raw insert limit of the same database in the same run; and `amtsbuch bench pipeline`:
//! how soon an acknowledged append reaches NATS and the read model at a fixed offered load
//! (`PipelineBench`, below).
//!
//! Many concurrent writers each append single events to their own stream with exact
//! expected versions — the shape of real traffic, where every command is checked against
//! its aggregate's version. The baseline then inserts the same rows (same columns, same
//! indexes, same batch size as the writer count) with plain multi-row INSERTs: no version
//! checks, no idempotency lookups, no hashing, no head lock. The ratio between the two is
//! the price of the guarantees. The run uses a scratch schema (PostgreSQL) or a temporary
//! file (SQLite) and removes it afterwards, so it never touches a production log.
//!
//! `BenchCommand` holds the flags of the core's `bench` subcommands; the domain modules add
//! theirs (`crate::module::Bench`).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Connection;

use amtsbuch_domain::subject::SubjectPrefix;
use amtsbuch_domain::{
    AppendRequest, AuthorityId, EventType, ExpectedVersion, NewEvent, ServiceKey, StreamId,
};
use amtsbuch_infra::any::DEFAULT_DATABASE_URL;
use amtsbuch_infra::relay::{self, RelayConfig};
use amtsbuch_infra::{AnyStore, EventStore, PgStore, SqliteStore, Subscription};
use futures_util::StreamExt;
use tokio::sync::watch;

/// The core's benchmarks of `amtsbuch bench`.
#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Concurrent single-event appends with version checks, against the raw insert limit.
    Append {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// Open-loop appends at a fixed rate with the relay and the read models running:
    /// append latency, and how soon each event reaches NATS and the read model.
    Pipeline {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(
            long,
            env = "AMTSBUCH_NATS_URL",
            default_value = "nats://127.0.0.1:4222"
        )]
        nats_url: String,
        /// Offered load, events per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Measured seconds.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds of load before measuring.
        #[arg(long, default_value_t = 3)]
        warmup_seconds: u64,
        /// Streams the events are spread over.
        #[arg(long, default_value_t = 1000)]
        streams: usize,
    },
}

/// `amtsbuch bench …`: runs one benchmark and prints its figures.
pub async fn command(which: BenchCommand) -> anyhow::Result<u8> {
    match which {
        BenchCommand::Append {
            database_url,
            writers,
            events,
        } => {
            let bench = AppendBench {
                database_url,
                writers,
                events,
            };
            let figures = bench.run().await?;
            println!("{}", figures.report(writers));
        }
        BenchCommand::Pipeline {
            database_url,
            nats_url,
            rate,
            seconds,
            warmup_seconds,
            streams,
        } => {
            let bench = PipelineBench {
                database_url,
                nats_url,
                rate,
                duration: Duration::from_secs(seconds),
                warmup: Duration::from_secs(warmup_seconds),
                streams,
            };
            println!("{}", bench.run().await?.report());
        }
    }
    Ok(0)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct AppendBench {
    pub database_url: String,
    pub writers: usize,
    pub events: usize,
}

/// Figures of one run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub events: usize,
    pub events_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    pub raw_events_per_sec: f64,
}

fn payload(writer: usize, i: usize) -> serde_json::Value {
    json!({
        "consent": format!("consent-{writer:04}-{i:08}"),
        "categories": ["stammdaten", "verfahrensdaten"],
        "purposes": ["antragsbearbeitung"],
        "recipients": ["urn:de:sn:behoerde:14612000"],
        "notice": { "version": "2026-01", "sha256": "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b" },
        "channel": "amt24",
        "n": i,
    })
}

async fn drive<S: EventStore>(
    store: &S,
    writers: usize,
    events: usize,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let per_writer = events.div_ceil(writers);
    let event_type = EventType::parse("ConsentGiven")?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let store = store.clone();
        let event_type = event_type.clone();
        let stream = StreamId::parse(&format!("bench-{run}-{w}"))?;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let request = AppendRequest {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(i as u64),
                    events: vec![NewEvent::new(event_type.clone(), payload(w, i))],
                };
                let t = Instant::now();
                store.append(request).await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, amtsbuch_infra::StoreError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(per_writer * writers);
    for t in tasks {
        latencies.extend(t.await.context("writer task panicked")??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((latencies.len() as f64 / secs, latencies))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Rows for the raw baseline: the stored bytes of real records, so sizes match.
async fn sample_rows<S: EventStore>(store: &S, n: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut rows = Vec::with_capacity(n);
    let mut after = 0;
    while rows.len() < n {
        let page = store.read_all(after, 5000).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        rows.extend(page.into_iter().map(|e| e.bytes));
    }
    anyhow::ensure!(!rows.is_empty(), "no rows to copy for the raw baseline");
    Ok(rows)
}

impl AppendBench {
    pub async fn run(&self) -> anyhow::Result<Figures> {
        anyhow::ensure!(
            self.writers > 0 && self.events > 0,
            "--writers and --events must be positive"
        );
        if self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
        {
            self.run_postgres().await
        } else if self.database_url.starts_with("sqlite:") {
            self.run_sqlite().await
        } else {
            anyhow::bail!("unsupported database URL: use postgres://… or sqlite://PATH")
        }
    }

    async fn run_postgres(&self) -> anyhow::Result<Figures> {
        let base: PgConnectOptions = self.database_url.parse().context("bad database URL")?;
        let schema = format!("amtsbuch_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect_with(&base)
            .await
            .context("cannot connect")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await?;
        println!("store: postgresql, scratch schema {schema} (dropped afterwards)");
        let result = self.postgres_in(&base, &schema).await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await?;
        result
    }

    async fn postgres_in(&self, base: &PgConnectOptions, schema: &str) -> anyhow::Result<Figures> {
        let options = base.clone().options([("search_path", schema)]);
        let store = PgStore::connect_with(options.clone()).await?;
        let (eps, latencies) = drive(&store, self.writers, self.events).await?;
        let rows = sample_rows(&store, self.events).await?;
        store.pool().close().await;
        drop(store);

        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        sqlx::query("CREATE TABLE raw_events (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES)")
            .execute(&pool)
            .await?;
        let hash = vec![0u8; 32];
        let started = Instant::now();
        let mut position = 0i64;
        for chunk in rows.chunks(self.writers) {
            let n = chunk.len();
            let positions: Vec<i64> = (position + 1..=position + n as i64).collect();
            position += n as i64;
            let ids: Vec<uuid::Uuid> = (0..n).map(|_| uuid::Uuid::now_v7()).collect();
            let streams: Vec<String> = positions.iter().map(|p| format!("bench-raw-{p}")).collect();
            sqlx::query(
                "INSERT INTO raw_events (position, event_id, stream_id, category, stream_version, \
                 event_type, tenant, recorded_at, record, leaf_hash, chain_hash) \
                 SELECT p, i, s, 'bench', 1, 'ConsentGiven', NULL, now(), r, $5, $5 \
                 FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::bytea[]) AS u(p, i, s, r)",
            )
            .bind(&positions)
            .bind(&ids)
            .bind(&streams)
            .bind(chunk)
            .bind(&hash)
            .execute(&pool)
            .await?;
        }
        let raw = rows.len() as f64 / started.elapsed().as_secs_f64();
        pool.close().await;
        Ok(figures(eps, latencies, raw))
    }

    async fn run_sqlite(&self) -> anyhow::Result<Figures> {
        let dir =
            std::env::temp_dir().join(format!("amtsbuch-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("bench.db");
        println!(
            "store: sqlite, scratch file {} (removed afterwards)",
            path.display()
        );
        let result = self.sqlite_in(&path).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn sqlite_in(&self, path: &std::path::Path) -> anyhow::Result<Figures> {
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::open(&url).await?;
        let (eps, latencies) = drive(&store, self.writers, self.events).await?;
        let rows = sample_rows(&store, self.events).await?;
        let pool = store.pool().clone();
        sqlx::query("CREATE TABLE raw_events AS SELECT * FROM events WHERE 0")
            .execute(&pool)
            .await?;
        for index in [
            "CREATE UNIQUE INDEX raw_events_id ON raw_events (event_id)",
            "CREATE UNIQUE INDEX raw_events_stream ON raw_events (stream_id, stream_version)",
            "CREATE INDEX raw_events_category ON raw_events (category, position)",
        ] {
            sqlx::query(index).execute(&pool).await?;
        }
        let hash = vec![0u8; 32];
        let mut conn = pool.acquire().await?;
        let started = Instant::now();
        let mut position = 0i64;
        for chunk in rows.chunks(self.writers) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "INSERT INTO raw_events (position, event_id, stream_id, category, stream_version, \
                 event_type, tenant, recorded_at, record, leaf_hash, chain_hash) ",
            );
            q.push_values(chunk, |mut row, r| {
                position += 1;
                row.push_bind(position)
                    .push_bind(uuid::Uuid::now_v7())
                    .push_bind(format!("bench-raw-{position}"))
                    .push_bind("bench")
                    .push_bind(1i64)
                    .push_bind("ConsentGiven")
                    .push_bind(None::<String>)
                    .push_bind("2026-01-01T00:00:00.000000Z")
                    .push_bind(r.as_slice())
                    .push_bind(hash.as_slice())
                    .push_bind(hash.as_slice());
            });
            q.build().persistent(false).execute(&mut *conn).await?;
        }
        let raw = rows.len() as f64 / started.elapsed().as_secs_f64();
        drop(conn);
        pool.close().await;
        Ok(figures(eps, latencies, raw))
    }
}

fn figures(events_per_sec: f64, mut latencies: Vec<Duration>, raw: f64) -> Figures {
    latencies.sort_unstable();
    Figures {
        events: latencies.len(),
        events_per_sec,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        p999: percentile(&latencies, 0.999),
        max: latencies.last().copied().unwrap_or_default(),
        raw_events_per_sec: raw,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

impl Figures {
    /// The report the CLI prints.
    pub fn report(&self, writers: usize) -> String {
        format!(
            "appends: {writers} writers, {} single-event appends with exact expected versions\n\
             \x20 throughput: {:.0} events/s\n\
             \x20 latency: p50 {}, p99 {}, p99.9 {}, max {}\n\
             raw limit: multi-row INSERT of {writers} equivalent rows per transaction, no checks, no hashing\n\
             \x20 throughput: {:.0} events/s\n\
             ratio: {:.2} x raw",
            self.events,
            self.events_per_sec,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.raw_events_per_sec,
            self.events_per_sec / self.raw_events_per_sec.max(1e-9),
        )
    }
}

// ---------------------------------------------------------------------------------------
// `amtsbuch bench pipeline`

/// The whole pipeline at a fixed offered load: how soon an acknowledged append reaches a
/// NATS subscriber and the read model.
///
/// One process opens the store (a scratch schema or file), runs the relay (to a scratch
/// JetStream stream and subject prefix, deleted afterwards) and the projection runner, and
/// appends single events to many streams in an open loop: sends are scheduled by a timer
/// at `rate` per second and never wait for earlier answers, as independent clients would.
/// A core NATS subscription on the relay's subjects notes when each position arrives, and
/// a watch of the `streams` projection's applied position notes when the read model has
/// it. Both lags are measured from the moment the event's append was acknowledged; the
/// first `warmup` of the run is not measured. Two more observers tell where time goes on a
/// busy machine: a plain log follower (the wake-up and read that the relay and the runner
/// both start with), and a task that only sleeps a millisecond at a time and notes how late
/// it wakes. The figures are printed, never judged: they depend on the machine.
#[derive(Debug, Clone)]
pub struct PipelineBench {
    pub database_url: String,
    pub nats_url: String,
    /// Offered load, events per second.
    pub rate: u64,
    /// How long the measured part runs.
    pub duration: Duration,
    /// How long the load runs before measuring starts (connections, caches, the stream).
    pub warmup: Duration,
    /// How many streams the events are spread over, round robin.
    pub streams: usize,
}

/// The target both lags are compared with: p99 at most this.
pub const PIPELINE_TARGET_P99: Duration = Duration::from_millis(50);

/// Percentiles of one measured quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spread {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Spread {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self {
            count: samples.len(),
            p50: percentile(&samples, 0.50),
            p99: percentile(&samples, 0.99),
            p999: percentile(&samples, 0.999),
            max: samples.last().copied().unwrap_or_default(),
        }
    }
}

/// Figures of one pipeline run.
#[derive(Debug, Clone)]
pub struct PipelineFigures {
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub streams: usize,
    /// Measured appends acknowledged per second of the measured part.
    pub achieved_per_sec: f64,
    /// Measured appends that failed.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Sent → acknowledged.
    pub append: Spread,
    /// Acknowledged → arrived at the NATS subscriber.
    pub nats: Spread,
    /// Measured events that never arrived at the subscriber.
    pub nats_missing: usize,
    /// Acknowledged → applied by the `streams` projection.
    pub read_model: Spread,
    pub read_model_missing: usize,
    /// How far behind the offered schedule the sender fell at worst (the machine's share
    /// of the open loop: above a millisecond or two, the load generator itself lagged).
    pub max_send_delay: Duration,
    /// Acknowledged → read by a plain log follower (`Subscription`): the shared first
    /// step of the relay and the runner.
    pub follower: Spread,
    /// How late a task of this process woke from a 1 ms sleep, over the whole run: the
    /// machine's share of every lag (up to a millisecond of it is the timer's granularity).
    pub wake_up: Spread,
}

/// One append as the load generator saw it.
struct Sample {
    measured: bool,
    sent: Instant,
    acked: Instant,
    outcome: Result<u64, String>,
}

impl PipelineBench {
    pub async fn run(&self) -> anyhow::Result<PipelineFigures> {
        anyhow::ensure!(
            self.rate > 0 && !self.duration.is_zero() && self.streams > 0,
            "--rate, --seconds and --streams must be positive"
        );
        let id = uuid::Uuid::now_v7().simple().to_string();
        let mut config = RelayConfig::new(self.nats_url.clone());
        config.stream = format!("AMTSBUCH_BENCH_{id}");
        config.prefix = SubjectPrefix::parse(&format!("bench.p{id}"))?;
        config.validate()?;
        // Connect before creating anything, so that a wrong URL fails fast and clean.
        let jetstream = relay::connect(&config)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.nats_url))?;
        println!(
            "nats: scratch stream {} on subjects {} (deleted afterwards)",
            config.stream,
            config.prefix.wildcard()
        );
        let result = if self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
        {
            self.run_postgres(&config).await
        } else if self.database_url.starts_with("sqlite:") {
            self.run_sqlite(&config).await
        } else {
            Err(anyhow::anyhow!(
                "unsupported database URL: use postgres://… or sqlite://PATH"
            ))
        };
        // The relay created the stream (unless it never got that far).
        let _ = jetstream.delete_stream(&config.stream).await;
        result
    }

    async fn run_postgres(&self, config: &RelayConfig) -> anyhow::Result<PipelineFigures> {
        let base: PgConnectOptions = self.database_url.parse().context("bad database URL")?;
        let schema = format!("amtsbuch_bench_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect_with(&base)
            .await
            .context("cannot connect")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await?;
        println!("store: postgresql, scratch schema {schema} (dropped afterwards)");
        // The store is dropped, not closed, before the schema goes: its background tasks
        // end once the last handle is gone, while closing the pool under them would only
        // make them complain.
        let result = async {
            let options = base.clone().options([("search_path", schema.as_str())]);
            let store = PgStore::connect_with(options).await?;
            self.measure(AnyStore::Postgres(store), config).await
        }
        .await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await?;
        result
    }

    async fn run_sqlite(&self, config: &RelayConfig) -> anyhow::Result<PipelineFigures> {
        let dir =
            std::env::temp_dir().join(format!("amtsbuch-bench-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("bench.db");
        println!(
            "store: sqlite, scratch file {} (removed afterwards)",
            path.display()
        );
        let result = async {
            let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await?;
            self.measure(AnyStore::Sqlite(store), config).await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn measure(
        &self,
        store: AnyStore,
        config: &RelayConfig,
    ) -> anyhow::Result<PipelineFigures> {
        // The subscriber is in place before the relay publishes anything.
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 20)
            .connect(&self.nats_url)
            .await
            .with_context(|| format!("cannot connect to NATS at {}", self.nats_url))?;
        let mut subscription = client.subscribe(config.prefix.wildcard()).await?;
        client.flush().await?;
        let relay = relay::spawn(store.clone(), config.clone())?;
        let runner = amtsbuch_projections::spawn(store.clone(), crate::domains::projections());
        let applied = runner
            .applied(amtsbuch_projections::streams::NAME)
            .context("the streams projection is not among the read models")?;

        // Observers: each position's first arrival on NATS, and the applied position's
        // every move, with the instant they were seen.
        let (stop_tx, stop) = watch::channel(false);
        let (arrived_tx, mut arrived_up_to) = watch::channel(0u64);
        let nats_observer = {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return seen,
                        message = subscription.next() => {
                            let Some(message) = message else { return seen };
                            let now = Instant::now();
                            let position = message
                                .headers
                                .as_ref()
                                .and_then(|h| h.get(relay::HEADER_POSITION))
                                .and_then(|v| v.as_str().parse::<u64>().ok());
                            if let Some(p) = position {
                                seen.push((p, now));
                                arrived_tx.send_if_modified(|max| {
                                    let newer = p > *max;
                                    *max = (*max).max(p);
                                    newer
                                });
                            }
                        }
                    }
                }
            })
        };
        // The observers say how far they have recorded, so that the run ends only after
        // they have seen the last event, not merely after it happened.
        let (applied_tx, mut applied_up_to) = watch::channel(0u64);
        let model_observer = {
            let mut stop = stop.clone();
            let mut applied = applied.clone();
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return seen,
                        changed = applied.changed() => {
                            if changed.is_err() {
                                return seen;
                            }
                            let p = *applied.borrow_and_update();
                            seen.push((p, Instant::now()));
                            applied_tx.send_replace(p);
                        }
                    }
                }
            })
        };

        // A plain follower of the log (what the relay and the runner each start from: a
        // wake-up by the head watch and a read of the new events). Its lag is the part of
        // the NATS and read-model lags that is not the relay's or the projection's own.
        let (followed_tx, mut followed_up_to) = watch::channel(0u64);
        let follower = {
            let mut stop = stop.clone();
            let mut log = Subscription::start(store.clone(), 0);
            tokio::spawn(async move {
                let mut seen: Vec<(u64, Instant)> = Vec::new();
                loop {
                    tokio::select! {
                        _ = stop.changed() => return seen,
                        next = log.next() => match next {
                            Some(Ok(event)) => {
                                seen.push((event.position, Instant::now()));
                                followed_tx.send_replace(event.position);
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "the benchmark's log follower stopped");
                                return seen;
                            }
                            None => return seen,
                        }
                    }
                }
            })
        };

        // How late this process's tasks run: a task that sleeps a millisecond at a time
        // and notes by how much each wake-up overshoots. Every stage of the pipeline waits
        // for wake-ups like these, so on a busy machine this is the floor of every lag.
        let probe = {
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let mut late = Vec::new();
                loop {
                    let before = Instant::now();
                    tokio::select! {
                        _ = stop.changed() => return late,
                        () = tokio::time::sleep(Duration::from_millis(1)) => {
                            late.push(before.elapsed().saturating_sub(Duration::from_millis(1)));
                        }
                    }
                }
            })
        };

        let (samples, max_send_delay, measured_from) = self.offer_load(&store).await?;
        let head = samples
            .iter()
            .filter_map(|s| s.outcome.as_ref().ok().copied())
            .max()
            .unwrap_or(0);
        // Generous: the figures say how long it took, this only bounds a broken run.
        let settle = Duration::from_secs(60);
        let _ = tokio::time::timeout(settle, arrived_up_to.wait_for(|p| *p >= head)).await;
        let _ = tokio::time::timeout(settle, applied_up_to.wait_for(|p| *p >= head)).await;
        let _ = tokio::time::timeout(settle, followed_up_to.wait_for(|p| *p >= head)).await;
        stop_tx.send_replace(true);
        let arrivals = nats_observer.await.context("NATS observer")?;
        let applied = model_observer.await.context("read model observer")?;
        let wake_up = Spread::of(probe.await.context("wake-up probe")?);
        let followed: std::collections::HashMap<u64, Instant> = follower
            .await
            .context("log follower")?
            .into_iter()
            .collect();
        relay.stop().await;
        runner.shutdown().await;

        // First arrival per position (the relay republishes after a failure).
        let mut first_arrival: std::collections::HashMap<u64, Instant> =
            std::collections::HashMap::with_capacity(arrivals.len());
        for (p, t) in arrivals {
            first_arrival.entry(p).or_insert(t);
        }
        let mut append = Vec::new();
        let mut nats = Vec::new();
        let mut model = Vec::new();
        let mut follow = Vec::new();
        let (mut failed, mut first_error, mut nats_missing, mut model_missing) = (0, None, 0, 0);
        let mut last_ack = measured_from;
        for s in samples.iter().filter(|s| s.measured) {
            let position = match &s.outcome {
                Ok(p) => *p,
                Err(e) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| e.clone());
                    continue;
                }
            };
            last_ack = last_ack.max(s.acked);
            append.push(s.acked.saturating_duration_since(s.sent));
            match first_arrival.get(&position) {
                Some(t) => nats.push(t.saturating_duration_since(s.acked)),
                None => nats_missing += 1,
            }
            if let Some(t) = followed.get(&position) {
                follow.push(t.saturating_duration_since(s.acked));
            }
            let i = applied.partition_point(|(p, _)| *p < position);
            match applied.get(i) {
                Some((_, t)) => model.push(t.saturating_duration_since(s.acked)),
                None => model_missing += 1,
            }
        }
        let ok = append.len();
        let measured_secs = last_ack
            .saturating_duration_since(measured_from)
            .as_secs_f64()
            .max(1e-9);
        Ok(PipelineFigures {
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            streams: self.streams,
            achieved_per_sec: ok as f64 / measured_secs,
            failed,
            first_error,
            append: Spread::of(append),
            nats: Spread::of(nats),
            nats_missing,
            read_model: Spread::of(model),
            read_model_missing: model_missing,
            follower: Spread::of(follow),
            max_send_delay,
            wake_up,
        })
    }

    /// Append at the offered rate for warm-up plus duration, without waiting for answers.
    /// Returns every append's sample, how late the worst send was against its schedule,
    /// and when the measured part began.
    async fn offer_load(
        &self,
        store: &AnyStore,
    ) -> anyhow::Result<(Vec<Sample>, Duration, Instant)> {
        let event_type = EventType::parse("application.Submitted")?;
        let authority = AuthorityId::parse("lra-meissen")?;
        let service = ServiceKey::parse("99108001000000")?;
        let run = uuid::Uuid::now_v7().simple().to_string();
        let streams: Vec<StreamId> = (0..self.streams)
            .map(|i| StreamId::parse(&format!("application-{run}-{i}")))
            .collect::<Result<_, _>>()?;
        let warmup_events = (self.warmup.as_secs_f64() * self.rate as f64) as u64;
        let total = warmup_events + (self.duration.as_secs_f64() * self.rate as f64) as u64;
        let per_event = Duration::from_secs_f64(1.0 / self.rate as f64);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
        let start = Instant::now();
        let measured_from = start + per_event.mul_f64(warmup_events as f64);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut sent = 0u64;
        let mut max_send_delay = Duration::ZERO;
        while sent < total {
            tick.tick().await;
            let now = Instant::now();
            let due = ((now.duration_since(start).as_secs_f64() * self.rate as f64) as u64 + 1)
                .min(total);
            while sent < due {
                let scheduled = start + per_event.mul_f64(sent as f64);
                max_send_delay = max_send_delay.max(now.saturating_duration_since(scheduled));
                let mut event = NewEvent::new(event_type.clone(), payload(0, sent as usize));
                event.authority = Some(authority.clone());
                event.service = Some(service.clone());
                event.tenant = Some("14627010".to_owned());
                let request = AppendRequest {
                    stream: streams[sent as usize % streams.len()].clone(),
                    expected: ExpectedVersion::Any,
                    events: vec![event],
                };
                let (store, tx) = (store.clone(), tx.clone());
                let measured = sent >= warmup_events;
                tokio::spawn(async move {
                    let sent = Instant::now();
                    let outcome = store.append(request).await;
                    let acked = Instant::now();
                    let _ = tx.send(Sample {
                        measured,
                        sent,
                        acked,
                        outcome: outcome.map(|o| o.first_position).map_err(|e| e.to_string()),
                    });
                });
                sent += 1;
            }
        }
        drop(tx);
        let mut samples = Vec::with_capacity(total as usize);
        while let Some(s) = rx.recv().await {
            samples.push(s);
        }
        Ok((samples, max_send_delay, measured_from))
    }
}

impl PipelineFigures {
    /// The report the CLI prints.
    pub fn report(&self) -> String {
        let line = |name: &str, s: &Spread| {
            format!(
                "{name}: p50 {}, p99 {}, p99.9 {}, max {} ({} events)",
                ms(s.p50),
                ms(s.p99),
                ms(s.p999),
                ms(s.max),
                s.count
            )
        };
        let target = |s: &Spread| {
            format!(
                "p99 is {:.2} x the {} target",
                s.p99.as_secs_f64() / PIPELINE_TARGET_P99.as_secs_f64(),
                ms(PIPELINE_TARGET_P99)
            )
        };
        let mut out = format!(
            "pipeline: single-event appends on {} streams, open loop, {:.0} s measured after {:.0} s warm-up\n\
             \x20 offered: {} events/s; achieved: {:.0} events/s; failed: {}; sender at worst {} behind schedule\n\
             \x20 {}\n\
             \x20 {}; {}{}\n\
             \x20 {}; {}{}\n\
             \x20 {}\n\
             \x20 {}",
            self.streams,
            self.duration.as_secs_f64(),
            self.warmup.as_secs_f64(),
            self.rate,
            self.achieved_per_sec,
            self.failed,
            ms(self.max_send_delay),
            line("append (sent → acknowledged)", &self.append),
            line("acknowledged → NATS subscriber", &self.nats),
            target(&self.nats),
            missing(self.nats_missing),
            line("acknowledged → read model (streams)", &self.read_model),
            target(&self.read_model),
            missing(self.read_model_missing),
            line("acknowledged → read by a log follower", &self.follower),
            line("wake-up delay of a task in this process", &self.wake_up),
        );
        if let Some(e) = &self.first_error {
            out.push_str(&format!("\n  first failure: {e}"));
        }
        out
    }
}

fn missing(n: usize) -> String {
    if n == 0 {
        String::new()
    } else {
        format!("; {n} never arrived")
    }
}

/// PostgreSQL keeps a table's statistics (and clears its dead rows) by autovacuum; on a
/// server where autovacuum is off, as on the test machine's, the planner would plan a
/// bench's timed reads on a new table's default estimates, which no production server
/// does. There the tables the timed reads use are vacuumed and analyzed (`vacuum`) or only
/// analyzed (`analyze`: large tables written once) after a bench's fill, as autovacuum
/// would have done during it, and what was done is returned for the bench to print.
/// Nothing is done on SQLite or where autovacuum runs.
pub async fn as_autovacuum_would(
    store: &AnyStore,
    vacuum: &[&str],
    analyze: &[&str],
) -> anyhow::Result<Option<String>> {
    let db = amtsbuch_projections::ReadDb::new(store);
    if db.dialect() != amtsbuch_projections::Dialect::Postgres {
        return Ok(None);
    }
    let setting = db
        .fetch_optional("SELECT current_setting('autovacuum') AS setting", &[])
        .await?
        .map(|row| row.get::<String>("setting"))
        .transpose()?;
    if setting.as_deref() != Some("off") {
        return Ok(None);
    }
    let started = Instant::now();
    if !vacuum.is_empty() {
        db.execute(&format!("VACUUM (ANALYZE) {}", vacuum.join(", ")), &[])
            .await?;
    }
    if !analyze.is_empty() {
        db.execute(&format!("ANALYZE {}", analyze.join(", ")), &[])
            .await?;
    }
    Ok(Some(format!(
        "autovacuum is off on this server: the read models' tables vacuumed and analyzed once, as it would have done ({:.1} s)",
        started.elapsed().as_secs_f64()
    )))
}
