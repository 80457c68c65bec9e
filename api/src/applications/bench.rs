//! `amtsbuch bench applications`: how fast the applications domain answers with a large
//! log — a submission (the data checked against a 200-field form version, the append, the
//! receipt), an authority's inbox page, and an application's way to its Fachverfahren on
//! NATS — each beside a baseline measured in the same run on the same store.
//!
//! The run sets up what a server has — the store (a scratch PostgreSQL schema or SQLite
//! file), the ledger signing checkpoints, the NATS relay (to a scratch stream), the read
//! models, the router with a sealer — and drives it through the router in this process, as
//! HTTP requests with bearer tokens. It publishes a form version with `--fields` fields,
//! imports a directory of four authorities and two services, submits one application
//! through the routes and fills the log with `--applications` submitted applications in
//! all (copies of that one's `ApplicationSubmitted` event for other ids, authorities,
//! services and instants, appended in parallel). Then, for `--submissions` drafts:
//!
//! 1. *baseline*: single-event appends (`POST /streams/{stream}/events`), open loop at
//!    `--rate` per second;
//! 2. *save + submit*, the two-step path of a portal: `PUT /applications/{id}/data` (the
//!    data checked against the form version, sealed, appended) and then `POST
//!    /applications/{id}/submission` (the append and the receipt), open loop at `--rate`
//!    per second (sends follow a timer and never wait for earlier answers), from the first
//!    send to the receipt, and each step apart;
//! 3. *submission*, what the goal measures — the validation against the form version plus
//!    the append: `POST /applications/{id}/submission` with the data (checked, sealed and
//!    appended with the submission in one append), the same way, from the send to the
//!    receipt;
//! 4. *to the Fachverfahren*: from the submission's send (phase 3) to the arrival of its
//!    `ApplicationSubmitted` at a NATS subscriber on the Fachverfahren's filter subject;
//! 5. *inbox*: `GET /applications` as an official of one authority (a quarter of the
//!    applications are its), first pages with and without filters and following pages,
//!    one after the other; its baseline is a page of the raw log (`GET
//!    /events?after=…&limit=50`).
//!
//! Goals: submission p99 ≤ 15 ms at 300/s, inbox page p99 ≤ 10 ms, to the Fachverfahren
//! p99 ≤ 50 ms. The figures are printed with their ratio to the goal and to the baseline,
//! never judged: they depend on the machine (docs/PERFORMANCE.md has this machine's).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use clap::{Args, FromArgMatches};
use futures_util::StreamExt;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tower::ServiceExt;
use uuid::Uuid;

use amtsbuch_domain::access::{RegionKey, Role};
use amtsbuch_domain::subject::SubjectPrefix;
use amtsbuch_domain::{
    AppendRequest, AuthorityId, ExpectedVersion, NewEvent, ServiceKey, StreamId,
};
use amtsbuch_infra::relay::{self, RelayConfig};
use amtsbuch_infra::{AnyStore, EventStore, PgStore, SqliteStore};

use crate::auth::{mint, AuthConfig, Authenticator, DevKey, TokenRequest};
use crate::module::Bench;
use crate::AppState;

/// `amtsbuch bench applications`, as the applications domain module offers it.
pub const BENCH: Bench = Bench {
    command: || {
        ApplicationsBench::augment_args(clap::Command::new("applications").about(
            "Submission, inbox and delivery latency with a large log (PostgreSQL or SQLite).",
        ))
    },
    run: |args| {
        Box::pin(async move {
            let bench = ApplicationsBench::from_arg_matches(&args)?;
            bench.run().await
        })
    },
};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ApplicationsBench {
    /// `postgres://…` (a scratch schema in that database) or `sqlite:` (a scratch file).
    #[arg(long, env = "AMTSBUCH_DATABASE_URL")]
    pub database_url: String,
    /// The NATS server with JetStream the relay publishes to (a scratch stream).
    #[arg(
        long,
        env = "AMTSBUCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    pub nats_url: String,
    /// Submitted applications in the log before measuring.
    #[arg(long, default_value_t = 100_000)]
    pub applications: usize,
    /// Measured submissions (and baseline appends).
    #[arg(long, default_value_t = 3_000)]
    pub submissions: usize,
    /// Offered submissions (and baseline appends) per second.
    #[arg(long, default_value_t = 300)]
    pub rate: u64,
    /// Fields of the form version.
    #[arg(long, default_value_t = 200)]
    pub fields: usize,
    /// Measured inbox pages (and baseline pages).
    #[arg(long, default_value_t = 2_000)]
    pub inbox_pages: usize,
    /// Run the service as it followed the log before the log's tail and the background
    /// pool: every read model, the relay and the ledger read the log themselves, through
    /// the requests' pool. For a comparison in the same conditions.
    #[arg(long)]
    pub followers_read_alone: bool,
}

/// Goals of the issue.
const SUBMISSION_GOAL: Duration = Duration::from_millis(15);
const INBOX_GOAL: Duration = Duration::from_millis(10);
const DELIVERY_GOAL: Duration = Duration::from_millis(50);

/// The authorities of the directory: id, region, ARS of a place in it.
const AUTHORITIES: [(&str, &str, &str); 4] = [
    ("lra-meissen", "14627", "146270000000"),
    ("lra-bautzen", "14625", "146250000000"),
    ("lra-goerlitz", "14626", "146260000000"),
    ("stadt-dresden", "14612", "146120000000"),
];
/// Wohngeld and a second service.
const SERVICES: [&str; 2] = ["99108001000000", "99050012104000"];

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
        let at = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Self {
            count: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<40} n {:>6}  p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms",
            self.count,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `p99 / goal` and `p99 / baseline p99`, as a line.
fn ratios(
    what: &str,
    measured: &Spread,
    goal: Duration,
    baseline: Option<(&str, &Spread)>,
) -> String {
    let mut line = format!(
        "{what:<40} p99 {:>7.3} ms = {:.2}× the goal of {} ms",
        ms(measured.p99),
        ms(measured.p99) / ms(goal),
        goal.as_millis()
    );
    if let Some((name, base)) = baseline {
        if !base.p99.is_zero() {
            line.push_str(&format!(
                ", {:.1}× the {name} p99 ({:.3} ms)",
                ms(measured.p99) / ms(base.p99),
                ms(base.p99)
            ));
        }
    }
    line
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Figures {
    pub store: &'static str,
    /// Whether every follower of the log read it itself (`--followers-read-alone`).
    pub followers_read_alone: bool,
    pub log_events: u64,
    pub fill_secs: f64,
    pub baseline_append: Spread,
    /// The submission the goal measures: `POST /applications/{id}/submission` with the
    /// data (checked, sealed, appended with the submission), from the send to the receipt.
    pub submission: Spread,
    pub submission_failed: usize,
    pub achieved_per_sec: f64,
    /// The two-step path: save (data checked and appended) then submit (append and
    /// receipt), from the save's send to the receipt.
    pub pair: Spread,
    /// `PUT /applications/{id}/data` of a pair alone.
    pub save: Spread,
    /// `POST /applications/{id}/submission` (without data) of a pair alone.
    pub submit: Spread,
    pub pair_failed: usize,
    pub pair_achieved_per_sec: f64,
    pub delivery: Spread,
    pub delivery_missing: usize,
    pub baseline_page: Spread,
    pub inbox: Spread,
    /// Applications the official's first unfiltered inbox page listed.
    pub inbox_first_page: usize,
    /// What the submission phase cost, per submission.
    pub costs: Option<Costs>,
    /// What the pairs' phase cost, per pair.
    pub pair_costs: Option<Costs>,
}

impl Figures {
    pub fn report(&self) -> String {
        [
            format!(
                "store: {}; log: {} events after filling in {:.1} s; followers of the log: {}",
                self.store,
                self.log_events,
                self.fill_secs,
                if self.followers_read_alone {
                    "each reads it alone, through the requests' pool (--followers-read-alone)"
                } else {
                    "one reader (the log's tail), the background pool"
                }
            ),
            self.baseline_append.line("baseline: single-event append"),
            self.pair.line("save + submit (two requests)"),
            self.save.line("  save: data checked, sealed, appended"),
            self.submit.line("  submit: append + receipt"),
            format!(
                "  achieved {:.0} pairs/s, {} failed",
                self.pair_achieved_per_sec, self.pair_failed
            ),
            self.submission
                .line("submission (data + submit, one request)"),
            format!(
                "  achieved {:.0} submissions/s, {} failed",
                self.achieved_per_sec, self.submission_failed
            ),
            self.delivery.line("submit sent → Fachverfahren (NATS)"),
            format!("  {} never arrived", self.delivery_missing),
            self.baseline_page.line("baseline: page of 50 raw events"),
            self.inbox.line("inbox page (50)"),
            format!("  first inbox page: {} applications", self.inbox_first_page),
            ratios(
                "submission (one request)",
                &self.submission,
                SUBMISSION_GOAL,
                Some(("single-event append", &self.baseline_append)),
            ),
            ratios(
                "save + submit (two requests)",
                &self.pair,
                SUBMISSION_GOAL,
                Some(("single-event append", &self.baseline_append)),
            ),
            ratios(
                "inbox page",
                &self.inbox,
                INBOX_GOAL,
                Some(("raw page", &self.baseline_page)),
            ),
            ratios(
                "to the Fachverfahren",
                &self.delivery,
                DELIVERY_GOAL,
                Some(("submission", &self.submission)),
            ),
        ]
        .into_iter()
        .chain(self.pair_costs.iter().map(Costs::report))
        .chain(self.costs.iter().map(Costs::report))
        .collect::<Vec<_>>()
        .join("\n")
    }
}

/// What one phase cost: CPU time of this process and of the PostgreSQL server's processes,
/// and the scratch schema's table statistics (scans and written rows), as differences
/// between two snapshots divided by the units (submissions or pairs) completed in between.
#[derive(Debug, Clone, Default)]
pub struct Costs {
    /// What one unit of the phase is ("submission", "save-and-submit pair").
    pub unit: &'static str,
    /// How many units the phase completed.
    pub count: usize,
    /// CPU seconds of this process (request handling, read models, relay, ledger).
    pub cpu_self: f64,
    /// CPU seconds of every PostgreSQL process on the machine (other clients included).
    pub cpu_postgres: f64,
    /// Per table of the scratch schema: (table, scans, rows inserted, updated, deleted).
    pub tables: Vec<(String, i64, i64, i64, i64)>,
}

/// How long PostgreSQL 15 may keep a session's table statistics before it reports them
/// (`PGSTAT_IDLE_INTERVAL`), waited before each snapshot so both cover the same statements.
const STATS_FLUSH: Duration = Duration::from_secs(11);

impl Costs {
    async fn take(store: &AnyStore) -> anyhow::Result<Self> {
        let mut tables = Vec::new();
        if let AnyStore::Postgres(pg) = store {
            tokio::time::sleep(STATS_FLUSH).await;
            let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
                "SELECT relname::text, COALESCE(seq_scan, 0) + COALESCE(idx_scan, 0), \
                 n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema()",
            )
            .fetch_all(pg.pool())
            .await?;
            tables = rows;
        }
        Ok(Self {
            unit: "",
            count: 0,
            cpu_self: cpu_self(),
            cpu_postgres: cpu_of_command("postgres"),
            tables,
        })
    }

    /// What happened from `before` to `self`, for `pairs` completed units of `unit`.
    fn since(self, before: &Costs, pairs: usize, unit: &'static str) -> Costs {
        let mut tables: Vec<_> = self
            .tables
            .into_iter()
            .map(|(name, scans, ins, upd, del)| {
                let b = before.tables.iter().find(|t| t.0 == name);
                let (s0, i0, u0, d0) = b.map_or((0, 0, 0, 0), |b| (b.1, b.2, b.3, b.4));
                (name, scans - s0, ins - i0, upd - u0, del - d0)
            })
            .filter(|t| t.1 + t.2 + t.3 + t.4 > 0)
            .collect();
        tables.sort_by_key(|t| std::cmp::Reverse(t.1 + t.2 + t.3 + t.4));
        Costs {
            unit,
            count: pairs,
            cpu_self: self.cpu_self - before.cpu_self,
            cpu_postgres: self.cpu_postgres - before.cpu_postgres,
            tables,
        }
    }

    fn report(&self) -> String {
        let per = |x: f64| x / self.count.max(1) as f64;
        let mut lines = vec![format!(
            "costs per {} ({} of them, the {} s of waiting for statistics included): \
             CPU {:.2} ms in this process, {:.2} ms in PostgreSQL (all its clients)",
            self.unit,
            self.count,
            STATS_FLUSH.as_secs(),
            per(self.cpu_self) * 1000.0,
            per(self.cpu_postgres) * 1000.0
        )];
        if !self.tables.is_empty() {
            let total: i64 = self.tables.iter().map(|t| t.1).sum();
            lines.push(format!(
                "  table scans per {}: {:.1} in all; by table (scans, rows inserted/updated/deleted):",
                self.unit,
                per(total as f64)
            ));
            for (name, scans, ins, upd, del) in self.tables.iter().take(12) {
                lines.push(format!(
                    "    {name:<36} {:>6.1}  {:>5.1} / {:>5.1} / {:>5.1}",
                    per(*scans as f64),
                    per(*ins as f64),
                    per(*upd as f64),
                    per(*del as f64)
                ));
            }
        }
        lines.join("\n")
    }
}

/// The command name and CPU seconds (user and system) in a `/proc/<pid>/stat` text.
fn cpu_of(stat: &str) -> Option<(&str, f64)> {
    // Linux reports these times in clock ticks of USER_HZ, which is 100.
    const TICKS: f64 = 100.0;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut fields = stat.get(close + 2..)?.split(' ');
    // After the command: utime is field 14 and stime field 15 of the line.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((comm, (utime + stime) / TICKS))
}

/// CPU seconds of this process; 0 where `/proc` cannot be read.
fn cpu_self() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| cpu_of(&s).map(|(_, t)| t))
        .unwrap_or(0.0)
}

/// CPU seconds of every process named `command`; 0 where `/proc` cannot be read.
fn cpu_of_command(command: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|s| cpu_of(&s).filter(|(c, _)| *c == command).map(|(_, t)| t))
        .sum()
}

impl ApplicationsBench {
    pub async fn run(&self) -> anyhow::Result<String> {
        Ok(self.figures().await?.report())
    }

    /// Run on a scratch store and stream; the figures.
    pub async fn figures(&self) -> anyhow::Result<Figures> {
        anyhow::ensure!(
            self.applications > 0
                && self.submissions > 0
                && self.rate > 0
                && self.fields > 0
                && self.inbox_pages > 0,
            "--applications, --submissions, --rate, --fields and --inbox-pages must be positive"
        );
        let id = Uuid::now_v7().simple().to_string();
        let mut config = RelayConfig::new(self.nats_url.clone());
        config.stream = format!("AMTSBUCH_BENCH_{id}");
        config.prefix = SubjectPrefix::parse(&format!("bench.a{id}"))?;
        config.validate()?;
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
            self.postgres(&config).await
        } else if self.database_url.starts_with("sqlite:") {
            self.sqlite(&config).await
        } else {
            Err(anyhow::anyhow!(
                "unsupported database URL: use postgres://… or sqlite:"
            ))
        };
        let _ = jetstream.delete_stream(&config.stream).await;
        result
    }

    async fn postgres(&self, config: &RelayConfig) -> anyhow::Result<Figures> {
        let base: PgConnectOptions = self.database_url.parse().context("bad database URL")?;
        let schema = format!("amtsbuch_bench_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect_with(&base)
            .await
            .context("cannot connect")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await?;
        println!("store: postgresql, scratch schema {schema} (dropped afterwards)");
        let dir = scratch_dir()?;
        let result = async {
            let options = base.clone().options([("search_path", schema.as_str())]);
            let store = PgStore::connect_with(options).await?;
            self.measure(AnyStore::Postgres(store), "postgresql", config, &dir)
                .await
        }
        .await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await?;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn sqlite(&self, config: &RelayConfig) -> anyhow::Result<Figures> {
        let dir = scratch_dir()?;
        let path = dir.join("bench.db");
        println!(
            "store: sqlite, scratch file {} (removed afterwards)",
            path.display()
        );
        let result = async {
            let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await?;
            self.measure(AnyStore::Sqlite(store), "sqlite", config, &dir)
                .await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn measure(
        &self,
        store: AnyStore,
        name: &'static str,
        config: &RelayConfig,
        dir: &std::path::Path,
    ) -> anyhow::Result<Figures> {
        let store = if self.followers_read_alone {
            store.without_tail()
        } else {
            store
        };
        let server = Server::start(store.clone(), config, dir).await?;
        server.setup(self.fields).await?;

        // The log: one application through the routes, the rest its copies.
        let started = Instant::now();
        let template = server.submitted_template(self.fields).await?;
        fill(&store, &template, self.applications.saturating_sub(1)).await?;
        let head = store.head().await?.position;
        server.caught_up(head).await?;
        let fill_secs = started.elapsed().as_secs_f64();
        println!("filled: {head} events in {fill_secs:.1} s, read models and relay caught up");
        if let Some(note) = crate::cli::bench::as_autovacuum_would(
            &store,
            &[
                "applications_inbox",
                "applications_drafts",
                "applications_applicants",
            ],
            &[],
        )
        .await?
        {
            println!("{note}");
        }

        // The Fachverfahren listens before the drafts exist.
        let client = async_nats::ConnectOptions::new()
            .subscription_capacity(1 << 16)
            .connect(&self.nats_url)
            .await?;
        let subject = format!(
            "{}.application.{}.ApplicationSubmitted.{}",
            config.prefix, AUTHORITIES[0].0, SERVICES[0]
        );
        let mut subscription = client.subscribe(subject).await?;
        client.flush().await?;
        let (stop_tx, mut stop) = tokio::sync::watch::channel(false);
        let arrivals = tokio::spawn(async move {
            let mut seen: HashMap<String, Instant> = HashMap::new();
            loop {
                tokio::select! {
                    _ = stop.changed() => return seen,
                    message = subscription.next() => {
                        let Some(message) = message else { return seen };
                        let now = Instant::now();
                        if let Some(stream) = message
                            .headers
                            .as_ref()
                            .and_then(|h| h.get(relay::HEADER_STREAM))
                        {
                            seen.insert(stream.as_str().to_owned(), now);
                        }
                    }
                }
            }
        });

        // Warm-up: connections, caches, the first checkpoints; both ways of submitting.
        let warmup = 20.min(self.submissions);
        let drafts = server.drafts(2 * self.submissions + 2 * warmup).await?;
        let (warm, drafts) = drafts.split_at(2 * warmup);
        for (n, id) in warm.iter().enumerate() {
            if n % 2 == 0 {
                server.save_and_submit(id, self.fields, n).await?;
            } else {
                server.submit_with_data(id, self.fields, n).await?;
            }
        }
        let (pair_drafts, one_drafts) = drafts.split_at(self.submissions);

        let period = Duration::from_secs_f64(1.0 / self.rate as f64);
        let baseline_append = open_loop(self.submissions, period, |i| {
            let server = server.clone();
            async move { server.bare_append(i).await }
        })
        .await;
        let fields = self.fields;

        // The two-step path first: save, then submit.
        let costs_before = Costs::take(&store).await?;
        let begun = Instant::now();
        let pairs = open_loop(self.submissions, period, |i| {
            let server = server.clone();
            let id = pair_drafts[i].clone();
            async move { server.save_and_submit(&id, fields, 2 * warmup + i).await }
        })
        .await;
        let pair_achieved_per_sec =
            pairs.iter().filter(|s| s.ok).count() as f64 / begun.elapsed().as_secs_f64();
        server.caught_up(store.head().await?.position).await?;
        let done = pairs.iter().filter(|s| s.ok).count();
        let pair_costs =
            Costs::take(&store)
                .await?
                .since(&costs_before, done, "save-and-submit pair");

        // Then the submission as the goal measures it: the data and the submission in one
        // request. The Fachverfahren's arrivals are taken from this phase.
        let costs_before = Costs::take(&store).await?;
        let begun = Instant::now();
        let submissions = open_loop(self.submissions, period, |i| {
            let server = server.clone();
            let id = one_drafts[i].clone();
            let n = 2 * warmup + self.submissions + i;
            async move { server.submit_with_data(&id, fields, n).await }
        })
        .await;
        let achieved_per_sec =
            submissions.iter().filter(|s| s.ok).count() as f64 / begun.elapsed().as_secs_f64();

        // Every submission's arrival at the Fachverfahren, measured from its send.
        server.relayed(store.head().await?.position).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = stop_tx.send(true);
        let seen = arrivals.await?;
        drop(client);
        server.caught_up(store.head().await?.position).await?;
        let done = submissions.iter().filter(|s| s.ok).count();
        let costs = Costs::take(&store)
            .await?
            .since(&costs_before, done, "submission");
        let mut delivery = Vec::new();
        let mut delivery_missing = 0;
        for (i, s) in submissions.iter().enumerate() {
            let stream = format!("application-{}", one_drafts[i]);
            match (seen.get(&stream), &s.value) {
                (Some(at), Some(steps)) => {
                    delivery.push(at.saturating_duration_since(steps.submit_sent));
                }
                _ => delivery_missing += 1,
            }
        }

        // The inbox of the first authority, beside raw pages of the log.
        server.caught_up(store.head().await?.position).await?;
        let (inbox, inbox_first_page) = server.inbox_pages(self.inbox_pages).await?;
        let baseline_page = server.raw_pages(self.inbox_pages).await?;
        let log_events = store.head().await?.position;
        server.stop().await;
        let failed = submissions.iter().filter(|s| !s.ok).count();
        if let Some(e) = submissions.iter().find_map(|s| s.error.clone()) {
            println!("first failed submission: {e}");
        }
        if let Some(e) = pairs.iter().find_map(|s| s.error.clone()) {
            println!("first failed pair: {e}");
        }
        Ok(Figures {
            store: name,
            followers_read_alone: self.followers_read_alone,
            log_events,
            fill_secs,
            baseline_append: Spread::of(baseline_append.iter().map(|s| s.took).collect()),
            submission: Spread::of(
                submissions
                    .iter()
                    .filter(|s| s.ok)
                    .map(|s| s.took)
                    .collect(),
            ),
            submission_failed: failed,
            achieved_per_sec,
            pair: Spread::of(pairs.iter().filter(|s| s.ok).map(|s| s.took).collect()),
            save: Spread::of(
                pairs
                    .iter()
                    .filter_map(|s| s.value.as_ref().map(|v| v.save))
                    .collect(),
            ),
            submit: Spread::of(
                pairs
                    .iter()
                    .filter_map(|s| s.value.as_ref().map(|v| v.submit))
                    .collect(),
            ),
            pair_failed: pairs.iter().filter(|s| !s.ok).count(),
            pair_achieved_per_sec,
            delivery: Spread::of(delivery),
            delivery_missing,
            baseline_page: Spread::of(baseline_page),
            inbox: Spread::of(inbox),
            inbox_first_page,
            costs: Some(costs),
            pair_costs: Some(pair_costs),
        })
    }
}

fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("amtsbuch-bench-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// One request of an open loop, with what it returned.
#[derive(Debug, Clone)]
struct Sent<T> {
    took: Duration,
    ok: bool,
    value: Option<T>,
    error: Option<String>,
}

/// The two steps of a submission as a portal makes it.
#[derive(Debug, Clone, Copy)]
struct Steps {
    /// `PUT /applications/{id}/data`: the data checked against the form version, sealed,
    /// appended.
    save: Duration,
    /// When the submission was sent.
    submit_sent: Instant,
    /// `POST /applications/{id}/submission`: the append and the receipt.
    submit: Duration,
}

/// Send `n` requests, the i-th at `i × period` from the start whether or not earlier ones
/// have been answered, as independent clients would; each answer's time from its send.
async fn open_loop<T, F, Fut>(n: usize, period: Duration, make: F) -> Vec<Sent<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let start = tokio::time::Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        tokio::time::sleep_until(start + period * i as u32).await;
        let request = make(i);
        tasks.spawn(async move {
            let sent = Instant::now();
            let outcome = request.await;
            let took = sent.elapsed();
            let (ok, value, error) = match outcome {
                Ok(v) => (true, Some(v), None),
                Err(e) => (false, None, Some(format!("{e:#}"))),
            };
            (
                i,
                Sent {
                    took,
                    ok,
                    value,
                    error,
                },
            )
        });
    }
    let mut out: Vec<Option<Sent<T>>> = (0..n).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        if let Ok((i, s)) = done {
            out[i] = Some(s);
        }
    }
    out.into_iter().flatten().collect()
}

/// The service as `serve` runs it, in this process, reached through its router.
#[derive(Clone)]
struct Server {
    app: Router,
    store: AnyStore,
    relay: Arc<tokio::sync::Mutex<Option<relay::RelayHandle>>>,
    runner: Arc<tokio::sync::Mutex<Option<amtsbuch_projections::RunnerHandle>>>,
    ledger: Arc<tokio::task::JoinHandle<()>>,
    operator: String,
    citizen: String,
    official: String,
}

impl Server {
    async fn start(
        store: AnyStore,
        config: &RelayConfig,
        dir: &std::path::Path,
    ) -> anyhow::Result<Self> {
        let key = DevKey::generate()?;
        let auth = Authenticator::new(AuthConfig {
            dev_key: Some(key.clone()),
            ..AuthConfig::default()
        })?;
        let origin = "bench.amtsbuch/log";
        let signer = amtsbuch_domain::note::Signer::from_pkcs8(
            origin,
            &amtsbuch_domain::note::Signer::generate_pkcs8()?,
        )?;
        let info = crate::state::LedgerInfo {
            origin: origin.into(),
            vkeys: vec![signer.vkey()],
        };
        // As `serve` does by default: a checkpoint every 1000 events or a second.
        let ledger = amtsbuch_infra::ledger::spawn(
            store.clone(),
            amtsbuch_infra::ledger::LedgerConfig {
                origin: origin.into(),
                signers: vec![signer],
                every_events: 1000,
                interval: Duration::from_secs(1),
            },
        );
        let kek = dir.join("kek");
        amtsbuch_infra::kek::generate_kek_file(
            &kek,
            &amtsbuch_domain::seal::KeyId::parse("kek-bench")?,
        )?;
        let keyring = amtsbuch_infra::kek::load_keyring(&[kek])?;
        let relay = relay::spawn(store.clone(), config.clone())?;
        let mut state = AppState::new(store.clone(), Some(info), Arc::new(auth)).await?;
        state.sealer = Some(amtsbuch_infra::sealer::Sealer::new(
            amtsbuch_infra::vault::KeyVault::new(store.clone(), keyring),
        ));
        state.nats = Some(Arc::new(
            crate::state::NatsLink::new(config.clone()).watching(&relay),
        ));
        let runner = amtsbuch_projections::spawn(store.clone(), crate::domains::projections());
        let token = |role: Role, f: &dyn Fn(&mut TokenRequest)| -> anyhow::Result<String> {
            let mut request = TokenRequest::new(format!("bench-{role}"), [role]);
            request.ttl = Duration::from_secs(24 * 3600);
            f(&mut request);
            Ok(mint(&key, &request, Utc::now())?)
        };
        let (authority, region, _) = AUTHORITIES[0];
        Ok(Self {
            app: crate::router(state),
            store,
            relay: Arc::new(tokio::sync::Mutex::new(Some(relay))),
            runner: Arc::new(tokio::sync::Mutex::new(Some(runner))),
            ledger: Arc::new(ledger),
            operator: token(Role::Operator, &|_| {})?,
            citizen: token(Role::Citizen, &|r| {
                r.account = Some(Uuid::now_v7().to_string());
            })?,
            official: token(Role::Authority, &|r| {
                r.authority = AuthorityId::parse(authority).ok();
                r.regions = RegionKey::parse(region).into_iter().collect();
            })?,
        })
    }

    async fn stop(&self) {
        self.ledger.abort();
        if let Some(relay) = self.relay.lock().await.take() {
            relay.stop().await;
        }
        if let Some(runner) = self.runner.lock().await.take() {
            runner.shutdown().await;
        }
    }

    /// One request through the router; the status and the body.
    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<String>,
    ) -> anyhow::Result<(StatusCode, Vec<u8>)> {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(body.map_or_else(Body::empty, Body::from))?;
        let response = self.app.clone().oneshot(request).await?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await?;
        Ok((status, bytes.to_vec()))
    }

    /// `call`, which must answer `expected`; the body as JSON.
    async fn expect(
        &self,
        expected: StatusCode,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, bytes) = self
            .call(method, uri, token, body.map(|b| b.to_string()))
            .await?;
        anyhow::ensure!(
            status == expected,
            "{method} {uri}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// A published form version with `fields` fields, and the directory.
    async fn setup(&self, fields: usize) -> anyhow::Result<()> {
        let op = &self.operator;
        let form = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/forms",
                op,
                Some(json!({"title": "Antrag auf Wohngeld (Bench)"})),
            )
            .await?["form_id"]
            .as_str()
            .context("form id")?
            .to_owned();
        self.expect(
            StatusCode::CREATED,
            "POST",
            &format!("/forms/{form}/versions"),
            op,
            Some(json!({ "schema": schema(fields) })),
        )
        .await?;
        self.expect(
            StatusCode::OK,
            "POST",
            &format!("/forms/{form}/versions/1/publication"),
            op,
            None,
        )
        .await?;
        let entries: Vec<Value> = AUTHORITIES
            .iter()
            .flat_map(|(authority, region, _)| {
                let form = form.clone();
                SERVICES.iter().map(move |leika| {
                    json!({ "leika": leika, "region": region, "authority": authority,
                            "form": form, "payment": "none" })
                })
            })
            .collect();
        self.expect(
            StatusCode::OK,
            "PUT",
            "/responsibilities",
            op,
            Some(json!({ "entries": entries })),
        )
        .await?;
        Ok(())
    }

    /// A draft without data; its id.
    async fn draft(&self) -> anyhow::Result<String> {
        let (_, _, ars) = AUTHORITIES[0];
        let id = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/applications",
                &self.citizen,
                Some(json!({ "leika": SERVICES[0], "ars": ars })),
            )
            .await?["application_id"]
            .as_str()
            .context("application id")?
            .to_owned();
        Ok(id)
    }

    /// Save the data of draft `id` (`data(fields, n)`) and submit it, as a portal does
    /// when the citizen sends the form; the steps' durations.
    async fn save_and_submit(&self, id: &str, fields: usize, n: usize) -> anyhow::Result<Steps> {
        Ok(self.save_and_submit_receipt(id, fields, n).await?.1)
    }

    /// `save_and_submit`, with the receipt.
    async fn save_and_submit_receipt(
        &self,
        id: &str,
        fields: usize,
        n: usize,
    ) -> anyhow::Result<(Value, Steps)> {
        let started = Instant::now();
        self.expect(
            StatusCode::OK,
            "PUT",
            &format!("/applications/{id}/data"),
            &self.citizen,
            Some(json!({ "data": data(fields, n) })),
        )
        .await?;
        let submit_sent = Instant::now();
        let receipt = self
            .expect(
                StatusCode::CREATED,
                "POST",
                &format!("/applications/{id}/submission"),
                &self.citizen,
                None,
            )
            .await?;
        Ok((
            receipt,
            Steps {
                save: submit_sent - started,
                submit_sent,
                submit: submit_sent.elapsed(),
            },
        ))
    }

    /// Submit draft `id` with its data (`data(fields, n)`) in one request, as a portal
    /// that holds the filled-in form does; the request's duration as `submit`.
    async fn submit_with_data(&self, id: &str, fields: usize, n: usize) -> anyhow::Result<Steps> {
        let submit_sent = Instant::now();
        self.expect(
            StatusCode::CREATED,
            "POST",
            &format!("/applications/{id}/submission"),
            &self.citizen,
            Some(json!({ "data": data(fields, n) })),
        )
        .await?;
        Ok(Steps {
            save: Duration::ZERO,
            submit_sent,
            submit: submit_sent.elapsed(),
        })
    }

    /// `n` drafts, made eight at a time, with progress.
    async fn drafts(&self, n: usize) -> anyhow::Result<Vec<String>> {
        let limit = Arc::new(Semaphore::new(8));
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let (server, limit) = (self.clone(), limit.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await?;
                Ok::<_, anyhow::Error>((i, server.draft().await?))
            });
        }
        let mut ids = vec![String::new(); n];
        let mut done = 0;
        while let Some(joined) = tasks.join_next().await {
            let (i, id) = joined??;
            ids[i] = id;
            done += 1;
            if done % 1000 == 0 || done == n {
                println!("drafts: {done}/{n}");
            }
        }
        Ok(ids)
    }

    /// One application through the routes; its stored `ApplicationSubmitted` record.
    async fn submitted_template(&self, fields: usize) -> anyhow::Result<Value> {
        let id = self.draft().await?;
        let (receipt, _) = self.save_and_submit_receipt(&id, fields, 0).await?;
        let record = receipt["record"].as_str().context("the receipt's record")?;
        Ok(serde_json::from_str(record)?)
    }

    /// A plain event appended through the raw route, as the baseline of a submission.
    async fn bare_append(&self, i: usize) -> anyhow::Result<()> {
        let body = json!([{ "type": "BenchRecorded", "data": { "i": i } }]);
        self.expect(
            StatusCode::CREATED,
            "POST",
            &format!("/streams/benchbase-{i}/events"),
            &self.operator,
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// Wait until the read models and the relay have reached `head`.
    async fn caught_up(&self, head: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(3600);
        let runner = self.runner.lock().await;
        let runner = runner.as_ref().context("runner stopped")?;
        let mut last_print = Instant::now();
        for name in [
            amtsbuch_projections::applications::inbox::NAME,
            amtsbuch_projections::applications::applicants::NAME,
        ] {
            let mut applied = runner.applied(name).context("a read model is missing")?;
            loop {
                let at = *applied.borrow();
                if at >= head {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "{name} did not catch up");
                if last_print.elapsed() > Duration::from_secs(5) {
                    println!("{name}: {at}/{head}");
                    last_print = Instant::now();
                }
                let _ = tokio::time::timeout(Duration::from_secs(1), applied.changed()).await;
            }
        }
        self.relayed(head).await;
        Ok(())
    }

    /// Wait (up to a minute) until the relay has published up to `head`.
    async fn relayed(&self, head: u64) {
        let relay = self.relay.lock().await;
        if let Some(relay) = relay.as_ref() {
            let mut published = relay.published();
            let _ =
                tokio::time::timeout(Duration::from_secs(60), published.wait_for(|p| *p >= head))
                    .await;
        }
    }

    /// Inbox pages as the official of the first authority: first pages without and with
    /// filters, and following pages; their durations and the first page's length.
    async fn inbox_pages(&self, n: usize) -> anyhow::Result<(Vec<Duration>, usize)> {
        let first = self
            .expect(StatusCode::OK, "GET", "/applications", &self.official, None)
            .await?;
        let first_len = first["applications"].as_array().map_or(0, Vec::len);
        let mut next: Option<String> = None;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let uri = match (i % 5, &next) {
                (0, Some(after)) => format!("/applications?after={after}"),
                (1, _) => format!("/applications?leika={}", SERVICES[i / 5 % 2]),
                (2, _) => "/applications?status=submitted".to_owned(),
                (3, _) => format!(
                    "/applications?submitted_from={}&submitted_to={}",
                    instant(i % 365),
                    instant(i % 365 + 30)
                ),
                _ => "/applications".to_owned(),
            };
            let t = Instant::now();
            let page = self
                .expect(StatusCode::OK, "GET", &uri, &self.official, None)
                .await?;
            out.push(t.elapsed());
            if i % 5 == 0 || i % 5 == 4 {
                next = page["next_after"].as_str().map(urlencode);
            }
        }
        Ok((out, first_len))
    }

    /// Pages of 50 raw events from random places in the log, as the operator.
    async fn raw_pages(&self, n: usize) -> anyhow::Result<Vec<Duration>> {
        let head = self.store.head().await?.position;
        let mut out = Vec::with_capacity(n);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let after = x % head.saturating_sub(50).max(1);
            let t = Instant::now();
            self.expect(
                StatusCode::OK,
                "GET",
                &format!("/events?after={after}&limit=50"),
                &self.operator,
                None,
            )
            .await?;
            out.push(t.elapsed());
        }
        Ok(out)
    }
}

/// The instant `day` days into 2026, RFC 3339, for `submitted_from`/`submitted_to`.
fn instant(day: usize) -> String {
    let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default();
    (start + chrono::Duration::days(day as i64))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A query value with the characters a `next_after` may hold escaped.
fn urlencode(s: &str) -> String {
    s.replace('%', "%25")
        .replace('+', "%2B")
        .replace(':', "%3A")
        .replace(' ', "%20")
}

/// A form version with `fields` fields of the kinds forms have: texts, numbers, dates,
/// choices and yes/no; every field carries a FIM id and an editor element, the first half
/// are required.
fn schema(fields: usize) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for i in 0..fields {
        let name = format!("feld{i:03}");
        let fim = format!("F{:08}", 60_000_000 + i);
        let property = match i % 5 {
            0 => json!({"type": "string", "minLength": 1, "maxLength": 200,
                        "x-fim-id": fim, "x-editor": {"element": "input"}}),
            1 => json!({"type": "integer", "minimum": 0, "maximum": 1_000_000,
                        "x-fim-id": fim, "x-editor": {"element": "input"}}),
            2 => json!({"type": "string", "format": "date",
                        "x-fim-id": fim, "x-editor": {"element": "input"}}),
            3 => {
                json!({"type": "string", "enum": ["ledig", "verheiratet", "geschieden", "verwitwet"],
                        "x-fim-id": fim, "x-editor": {"element": "select"}})
            }
            _ => json!({"type": "boolean", "x-fim-id": fim, "x-editor": {"element": "checkbox"}}),
        };
        properties.insert(name.clone(), property);
        if i < fields.div_ceil(2) {
            required.push(Value::String(name));
        }
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": false,
        "required": required,
        "properties": properties,
    })
}

/// Valid data for every field of `schema(fields)`, varied by `n`.
fn data(fields: usize, n: usize) -> Value {
    let mut out = serde_json::Map::new();
    for i in 0..fields {
        let value = match i % 5 {
            0 => json!(format!("Wert {n} für Feld {i}")),
            1 => json!((n * 31 + i) % 1_000_000),
            2 => json!(format!(
                "19{:02}-0{}-1{}",
                50 + (n + i) % 50,
                1 + i % 9,
                i % 10
            )),
            3 => json!(["ledig", "verheiratet", "geschieden", "verwitwet"][(n + i) % 4]),
            _ => json!((n + i).is_multiple_of(2)),
        };
        out.insert(format!("feld{i:03}"), value);
    }
    Value::Object(out)
}

/// Append `n` copies of the template `ApplicationSubmitted` record, each for a new
/// application of one of the authorities and services, submitted over the past year, from
/// 32 concurrent writers, with progress.
async fn fill(store: &AnyStore, template: &Value, n: usize) -> anyhow::Result<()> {
    let writers = 32usize;
    let event_type = amtsbuch_domain::EventType::parse("ApplicationSubmitted")?;
    let data = template["data"].clone();
    let now = Utc::now();
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    for w in 0..writers {
        let (store, event_type, data, done) = (
            store.clone(),
            event_type.clone(),
            data.clone(),
            done.clone(),
        );
        tasks.spawn(async move {
            for i in (w..n).step_by(writers) {
                let (authority, _, ars) = AUTHORITIES[i % AUTHORITIES.len()];
                let leika = SERVICES[i / AUTHORITIES.len() % SERVICES.len()];
                let id = Uuid::now_v7();
                let at = now - chrono::Duration::seconds(((i as i64) * 7919) % (365 * 86_400));
                let at_text = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                let mut data = data.clone();
                data["application_id"] = json!(id.to_string());
                data["submitted_at"] = json!(at_text);
                data["authority"] = json!(authority);
                data["leika"] = json!(leika);
                data["tenant"] = json!(&ars[..8]);
                let event = NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: event_type.clone(),
                    schema_version: 1,
                    data,
                    tenant: Some(ars[..8].to_owned()),
                    actor: None,
                    correlation_id: None,
                    causation_id: None,
                    authority: Some(AuthorityId::parse(authority)?),
                    service: Some(ServiceKey::parse(leika)?),
                    occurred_at: Some(at),
                    sealed: None,
                };
                store
                    .append(AppendRequest {
                        stream: StreamId::parse(&format!("application-{id}"))?,
                        expected: ExpectedVersion::NoStream,
                        events: vec![event],
                    })
                    .await?;
                let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                if d % 10_000 == 0 {
                    println!(
                        "filling: {d}/{n} applications ({:.0}/s)",
                        d as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
            Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(())
}
