//! `amtsbuch bench append`: throughput and latency of the append path, measured against the
//! raw insert limit of the same database in the same run.
//!
//! Many concurrent writers each append single events to their own stream with exact
//! expected versions — the shape of real traffic, where every command is checked against
//! its aggregate's version. The baseline then inserts the same rows (same columns, same
//! indexes, same batch size as the writer count) with plain multi-row INSERTs: no version
//! checks, no idempotency lookups, no hashing, no head lock. The ratio between the two is
//! the price of the guarantees. The run uses a scratch schema (PostgreSQL) or a temporary
//! file (SQLite) and removes it afterwards, so it never touches a production log.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Connection;

use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{EventStore, PgStore, SqliteStore};

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
