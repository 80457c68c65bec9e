//! `amtsbuch bench participation`: how fast the public search over participation
//! procedures answers and how fast a contribution is taken, with 10,000 procedures and
//! 1,000,000 contributions in the log — on PostgreSQL and on SQLite.
//!
//! The run seeds a scratch database — the procedures through the domain's own command path
//! (every procedure drafted, scheduled and announced, some decided, archived or
//! cancelled), the contributions to the open ones decided by the domain's decider, sealed
//! under their authors' keys (taken from the vault once per author) and appended directly,
//! at instants of their rounds — many at once so that the store's writer commits them in
//! batches, while the read model follows; it prints its progress. Then, through the service's router
//! (authentication, routing, handlers), it times:
//!
//! - the public search with filters and full text (`GET /participations?…`), closed loop;
//!   baseline: one procedure by its id (`GET /participations/{id}`) on the same stack;
//! - a contribution's submission (`POST /participations/{id}/contributions`) offered at a
//!   fixed rate (300/s by default), open loop, each latency measured from the instant the
//!   request was due (so a backlog counts); baseline: a bare append of one event to a new
//!   stream at the same rate, which is what every submission costs at least.
//!
//! Targets: search p99 ≤ 20 ms, submission p99 ≤ 15 ms at 300/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use clap::{Args, FromArgMatches};
use tokio::task::JoinSet;
use tower::ServiceExt;
use uuid::Uuid;

use amtsbuch_domain::access::Role;
use amtsbuch_domain::participation::contribution::{
    Content, ContributionCommand, ContributionState, Submit,
};
use amtsbuch_domain::participation::procedure::{
    DraftProcedure, Procedure, ProcedureCommand, ProcedureState, ScheduleRound,
};
use amtsbuch_domain::participation::{
    Ags, ContributionId, ContributionKind, ContributionText, DocumentRef, Format, Geometry,
    ParticipantId, Position, ProcedureId, Pseudonym, PublicText, Reason, RoundId, Sha256Hex, Stage,
    Title, Topic,
};
use amtsbuch_domain::{AppendRequest, AuthorityId, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{AnyStore, EventStore};

use crate::auth::{mint, AuthConfig, Authenticator, DevKey, TokenRequest};
use crate::command::{execute, refused, Meta};
use crate::module::Bench;
use crate::AppState;

/// `amtsbuch bench participation`, as the participation domain module offers it.
pub const BENCH: Bench = Bench {
    command: || {
        ParticipationBench::augment_args(clap::Command::new("participation").about(
            "Public search and contribution latency with many procedures and contributions (PostgreSQL and SQLite).",
        ))
    },
    run: |args| {
        Box::pin(async move {
            let bench = ParticipationBench::from_arg_matches(&args)?;
            bench.run().await
        })
    },
};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ParticipationBench {
    /// PostgreSQL to run on (a scratch schema, dropped afterwards); without it only SQLite.
    #[arg(long, env = "AMTSBUCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Which adapters: postgres, sqlite or both.
    #[arg(long, default_value = "both", value_parser = ["postgres", "sqlite", "both"])]
    pub adapter: String,
    /// Procedures to seed.
    #[arg(long, default_value_t = 10_000)]
    pub procedures: usize,
    /// Contributions to seed.
    #[arg(long, default_value_t = 1_000_000)]
    pub contributions: usize,
    /// Timed searches (and as many baseline reads).
    #[arg(long, default_value_t = 2_000)]
    pub searches: usize,
    /// Submissions offered per second.
    #[arg(long, default_value_t = 300)]
    pub rate: u32,
    /// How long submissions are offered, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Commands in flight while seeding.
    #[arg(long, default_value_t = 32)]
    pub writers: usize,
    /// Keep the filled scratch database (the PostgreSQL schema, the SQLite file's
    /// directory) after the run, so that `--reuse` can time it again without filling.
    #[arg(long)]
    pub keep: bool,
    /// Time a scratch database an earlier `--keep` run filled (the schema's name, or the
    /// SQLite directory it printed) instead of filling a new one; it is kept afterwards.
    /// Needs `--adapter postgres` or `--adapter sqlite`.
    #[arg(long, value_name = "SCHEMA_OR_DIR")]
    pub reuse: Option<String>,
}

/// Latency percentiles.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    n: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |p: f64| {
            if samples.is_empty() {
                return Duration::ZERO;
            }
            let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i]
        };
        Self {
            n: samples.len(),
            p50: at(0.5),
            p99: at(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what:<44} n {:>6}  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn ratio(a: Duration, b: Duration) -> f64 {
    if b.is_zero() {
        0.0
    } else {
        a.as_secs_f64() / b.as_secs_f64()
    }
}

/// A small deterministic generator (xorshift64*).
struct Pick(u64);

impl Pick {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below.max(1)
    }
}

/// Municipalities of Saxony the procedures are spread over: (AGS, longitude, latitude).
const PLACES: [(&str, f64, f64); 8] = [
    ("14612000", 13.7373, 51.0504),
    ("14713000", 12.3731, 51.3397),
    ("14511000", 12.9214, 50.8278),
    ("14627210", 13.6700, 51.1100),
    ("14625020", 14.4241, 51.1814),
    ("14626110", 14.9872, 51.1526),
    ("14522080", 13.3415, 50.9169),
    ("14523020", 12.1374, 50.4951),
];

/// Words titles are made of: searching for one finds some of the procedures.
const WORDS: [&str; 16] = [
    "Wohngebiet",
    "Radweg",
    "Gewerbepark",
    "Schulcampus",
    "Elbufer",
    "Kita",
    "Sportplatz",
    "Lärmaktionsplan",
    "Innenstadt",
    "Friedhof",
    "Hochwasserschutz",
    "Spielplatz",
    "Bahnhofsumfeld",
    "Parkhaus",
    "Windpark",
    "Marktplatz",
];

const TOPICS: [&str; 5] = ["wohnen", "verkehr", "umwelt", "bildung", "wirtschaft"];

/// What became of seeded procedure `i`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Open now: its round runs from 20 days ago for 40 days.
    Active,
    /// Its round starts in 10 days.
    Upcoming,
    /// Its round ran 200 to 160 days ago; evaluated and decided.
    Decided,
    /// Decided, then archived.
    Archived,
    /// Announced, then cancelled.
    Cancelled,
}

fn fate(i: usize) -> Fate {
    match i % 20 {
        0..=11 => Fate::Active,
        12..=14 => Fate::Upcoming,
        15 | 16 => Fate::Decided,
        17 | 18 => Fate::Archived,
        _ => Fate::Cancelled,
    }
}

fn format_of(i: usize) -> Format {
    match i % 3 {
        0 => Format::Dialog,
        1 => Format::Bauleitplanung,
        _ => Format::Meldeverfahren,
    }
}

fn procedure_id(i: usize) -> ProcedureId {
    ProcedureId(Uuid::from_u128(
        0x0195_0000_0000_7000_8000_0000_0000_0000 | i as u128,
    ))
}

fn authority_of(i: usize) -> AuthorityId {
    AuthorityId::parse(&format!("behoerde-{}", i % 40)).unwrap_or_else(|_| unreachable!())
}

fn participant(k: u64) -> ParticipantId {
    ParticipantId(Uuid::from_u128(
        0x0196_0000_0000_7000_8000_0000_0000_0000 | u128::from(k),
    ))
}

/// The round of procedure `i` relative to `now`: (start, end).
fn round_of(i: usize, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let days = chrono::Duration::days;
    let start = match fate(i) {
        Fate::Active => now - days(20),
        Fate::Upcoming | Fate::Cancelled => now + days(10),
        Fate::Decided | Fate::Archived => now - days(200),
    };
    (start, start + days(40))
}

/// The commands that make procedure `i`, each with its instant.
fn procedure_commands(i: usize, now: DateTime<Utc>) -> anyhow::Result<Vec<ProcedureCommand>> {
    let days = chrono::Duration::days;
    let (start, end) = round_of(i, now);
    let (ags, lon, lat) = PLACES[i % PLACES.len()];
    let format = format_of(i);
    let kind = match format {
        Format::Bauleitplanung => "Bebauungsplan",
        Format::Meldeverfahren => "Mängelmelder",
        _ => "Bürgerdialog",
    };
    let title = format!(
        "{kind} {} {} Nr. {i}",
        WORDS[i % WORDS.len()],
        WORDS[(i / 7 + 3) % WORDS.len()]
    );
    let drafted = start - days(30);
    let mut commands = vec![
        ProcedureCommand::Draft(DraftProcedure {
            procedure_id: procedure_id(i),
            authority: authority_of(i),
            format,
            title: Title::parse(&title)?,
            topics: vec![
                Topic::parse(TOPICS[i % TOPICS.len()])?,
                Topic::parse(TOPICS[(i + 1 + (i / 5) % 4) % TOPICS.len()])?,
            ],
            region: Ags::parse(ags)?,
            geometry: Some(Geometry::Point {
                coordinates: Position::new(
                    lon + (i % 100) as f64 * 0.0005,
                    lat + (i % 37) as f64 * 0.0005,
                )?,
            }),
            accepts_late: false,
            report_threshold: None,
            survey: None,
            at: drafted,
        }),
        ProcedureCommand::ScheduleRound(ScheduleRound {
            round_id: RoundId(Uuid::from_u128(
                0x0197_0000_0000_7000_8000_0000_0000_0000 | i as u128,
            )),
            stage: (format == Format::Bauleitplanung).then_some(Stage::Auslegung32),
            starts_at: start,
            ends_at: end,
            documents: vec![DocumentRef {
                sha256: Sha256Hex::parse(&format!("{:064x}", i + 1))?,
                size: 1_000_000 + i as u64,
                title: Title::parse("Planzeichnung")?,
            }],
            preclusion_notice: true,
            at: drafted,
        }),
        ProcedureCommand::Announce {
            at: (start - days(7)).min(now - chrono::Duration::hours(1)),
        },
    ];
    match fate(i) {
        Fate::Decided | Fate::Archived => {
            commands.push(ProcedureCommand::StartEvaluation { at: end });
            commands.push(ProcedureCommand::Decide {
                summary: PublicText::parse("Satzungsbeschluss des Stadtrats")?,
                at: end + days(20),
            });
            if fate(i) == Fate::Archived {
                commands.push(ProcedureCommand::Archive { at: end + days(60) });
            }
        }
        Fate::Cancelled => commands.push(ProcedureCommand::Cancel {
            reason: Reason::parse("Das Vorhaben entfällt")?,
            at: now - chrono::Duration::minutes(30),
        }),
        Fate::Active | Fate::Upcoming => {}
    }
    Ok(commands)
}

/// The contribution kind a procedure of `format` takes, and its content.
fn content_for(
    format: Format,
    k: u64,
    at: (f64, f64),
) -> anyhow::Result<(ContributionKind, Content)> {
    let text = ContributionText::parse(&format!(
        "Hinweis {k}: {} bitte mit mehr Grün und sicheren Wegen planen.",
        WORDS[(k % 16) as usize]
    ))?;
    Ok(match format {
        Format::Bauleitplanung => (
            ContributionKind::Statement,
            Content {
                text: Some(text),
                ..Content::default()
            },
        ),
        Format::Meldeverfahren => (
            ContributionKind::DefectReport,
            Content {
                pseudonym: Some(Pseudonym::parse("Anwohner")?),
                text: Some(text),
                location: Some(Geometry::Point {
                    coordinates: Position::new(at.0, at.1)?,
                }),
                ..Content::default()
            },
        ),
        _ => (
            ContributionKind::Comment,
            Content {
                pseudonym: Some(Pseudonym::parse("Anwohnerin")?),
                text: Some(text),
                ..Content::default()
            },
        ),
    })
}

/// Prints `done` of `total` at every tenth, with the rate so far.
struct Progress {
    what: &'static str,
    total: usize,
    started: Instant,
    next: usize,
}

impl Progress {
    fn new(what: &'static str, total: usize) -> Self {
        Self {
            what,
            total,
            started: Instant::now(),
            next: total.div_ceil(10).max(1),
        }
    }

    fn at(&mut self, done: usize) {
        if done >= self.next || done == self.total {
            let secs = self.started.elapsed().as_secs_f64();
            println!(
                "  {} {done}/{} ({:.0}/s)",
                self.what,
                self.total,
                done as f64 / secs.max(1e-9)
            );
            self.next = done + self.total.div_ceil(10).max(1);
        }
    }
}

/// A scratch database of one adapter, removed when the run ends.
enum Scratch {
    Postgres {
        admin: sqlx::PgConnection,
        schema: String,
    },
    Sqlite {
        dir: std::path::PathBuf,
    },
}

/// Whether `name` is a schema this bench creates: `amtsbuch_bench_` and 32 hex digits.
fn is_scratch_schema(name: &str) -> bool {
    name.strip_prefix("amtsbuch_bench_").is_some_and(|id| {
        id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

impl ParticipationBench {
    pub async fn run(&self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.procedures >= 20 && self.searches > 0 && self.rate > 0 && self.seconds > 0,
            "--procedures must be at least 20; --searches, --rate and --seconds positive"
        );
        anyhow::ensure!(
            self.reuse.is_none() || self.adapter != "both",
            "--reuse needs --adapter postgres or --adapter sqlite"
        );
        let mut report = Vec::new();
        if matches!(self.adapter.as_str(), "sqlite" | "both") {
            let part = self.on_scratch(false).await?;
            println!("{part}");
            report.push(part);
        }
        if matches!(self.adapter.as_str(), "postgres" | "both") {
            match &self.database_url {
                Some(url) if url.starts_with("postgres") => {
                    report.push(self.on_scratch(true).await?);
                }
                _ if self.adapter == "postgres" => {
                    anyhow::bail!("--adapter postgres needs --database-url postgres://…")
                }
                _ => report.push("postgresql: skipped (no --database-url postgres://…)".into()),
            }
        }
        Ok(report.join("\n\n"))
    }

    async fn on_scratch(&self, postgres: bool) -> anyhow::Result<String> {
        use sqlx::Connection;
        let reuse = self.reuse.as_deref();
        let (store, scratch) = if postgres {
            let url = self.database_url.clone().unwrap_or_default();
            let base: sqlx::postgres::PgConnectOptions = url.parse().context("bad database URL")?;
            let mut admin = sqlx::PgConnection::connect_with(&base)
                .await
                .context("cannot connect")?;
            let schema = match reuse {
                Some(schema) => {
                    anyhow::ensure!(
                        is_scratch_schema(schema),
                        "--reuse {schema:?}: a scratch schema is named amtsbuch_bench_ and 32 hex digits"
                    );
                    let exists: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                    )
                    .bind(schema)
                    .fetch_one(&mut admin)
                    .await?;
                    anyhow::ensure!(exists, "--reuse {schema}: no such schema");
                    schema.to_owned()
                }
                None => {
                    let schema = format!("amtsbuch_bench_{}", Uuid::now_v7().simple());
                    sqlx::query(&format!("CREATE SCHEMA {schema}"))
                        .execute(&mut admin)
                        .await?;
                    schema
                }
            };
            let store = amtsbuch_infra::PgStore::connect_with(
                base.options([("search_path", schema.as_str())]),
            )
            .await;
            (
                store.map(AnyStore::Postgres),
                Scratch::Postgres { admin, schema },
            )
        } else {
            let dir = match reuse {
                Some(dir) => {
                    let dir = std::path::PathBuf::from(dir);
                    anyhow::ensure!(
                        dir.join("bench.db").is_file(),
                        "--reuse {}: no bench.db in it",
                        dir.display()
                    );
                    dir
                }
                None => {
                    let dir = std::env::temp_dir()
                        .join(format!("amtsbuch-bench-{}", Uuid::now_v7().simple()));
                    std::fs::create_dir_all(&dir)?;
                    dir
                }
            };
            let url = format!("sqlite://{}", dir.join("bench.db").display());
            (AnyStore::open(&url).await, Scratch::Sqlite { dir })
        };
        let result = match store {
            Ok(store) => self.run_on(store, &scratch).await,
            Err(e) => Err(e.into()),
        };
        // AMTSBUCH_BENCH_KEEP keeps it too, as `--keep` does.
        let keep =
            self.keep || reuse.is_some() || std::env::var_os("AMTSBUCH_BENCH_KEEP").is_some();
        match scratch {
            Scratch::Postgres { mut admin, schema } => {
                if !keep {
                    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                        .execute(&mut admin)
                        .await?;
                }
            }
            Scratch::Sqlite { dir } => {
                if !keep {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
        result
    }

    async fn run_on(&self, store: AnyStore, scratch: &Scratch) -> anyhow::Result<String> {
        let kind = store.kind();
        let afterwards = if self.keep || self.reuse.is_some() {
            "kept afterwards: time it again with --reuse"
        } else {
            "removed afterwards"
        };
        let reused = if self.reuse.is_some() {
            ", filled by an earlier run"
        } else {
            ""
        };
        match scratch {
            Scratch::Postgres { schema, .. } => {
                println!("{kind}: scratch schema {schema}{reused} ({afterwards})")
            }
            Scratch::Sqlite { dir } => {
                println!(
                    "{kind}: scratch directory {}{reused} ({afterwards})",
                    dir.display()
                )
            }
        }
        let key_dir =
            std::env::temp_dir().join(format!("amtsbuch-bench-kek-{}", Uuid::now_v7().simple()));
        std::fs::create_dir_all(&key_dir)?;
        let kek = key_dir.join("kek");
        amtsbuch_infra::kek::generate_kek_file(
            &kek,
            &amtsbuch_domain::seal::KeyId::parse("kek-bench")?,
        )?;
        let keyring = amtsbuch_infra::kek::load_keyring(&[&kek])?;
        let _ = std::fs::remove_dir_all(&key_dir);
        let dev = DevKey::generate()?;
        let auth = Arc::new(Authenticator::new(AuthConfig {
            dev_key: Some(dev.clone()),
            ..AuthConfig::default()
        })?);
        let mut state = AppState::new(store.clone(), None, auth).await?;
        state.sealer = Some(amtsbuch_infra::sealer::Sealer::new(
            amtsbuch_infra::vault::KeyVault::new(store.clone(), keyring),
        ));
        let app = crate::router(state.clone());
        let runner = amtsbuch_projections::spawn(
            store.clone(),
            amtsbuch_projections::participation::projections(),
        );
        let now = Utc::now();

        let seeded = Instant::now();
        let seeded_counts = if self.reuse.is_some() {
            None
        } else {
            let procedures = self.seed_procedures(&state, now).await?;
            let contributions = self.seed_contributions(&state, &procedures, now).await?;
            Some((procedures.len(), contributions))
        };
        let head = store.head().await?.position;
        if let Some((procedures, contributions)) = seeded_counts {
            println!(
                "  seeded {procedures} procedures and {contributions} contributions ({head} events) in {:.1} s",
                seeded.elapsed().as_secs_f64()
            );
        }
        let caught = Instant::now();
        let mut applied = runner
            .applied(amtsbuch_projections::participation::NAME)
            .context("the participation projection is not running")?;
        let at_end = *applied.borrow();
        // A reused database's read model resumes from its checkpoint, which the runner has
        // not necessarily read yet: there is no fill to measure its pace against.
        let reused = seeded_counts.is_none();
        if !reused {
            println!("  read model at {at_end} of {head} events when seeding ended");
        }
        // Its progress every ten seconds, with the rate since seeding ended.
        while *applied.borrow() < head {
            let reached = tokio::time::timeout(Duration::from_secs(10), async {
                applied.wait_for(|p| *p >= head).await.map(drop)
            })
            .await;
            if let Ok(outcome) = reached {
                outcome?;
                break;
            }
            let now_at = *applied.borrow();
            if reused {
                println!("  read model at {now_at} of {head} events");
            } else {
                println!(
                    "  read model at {now_at} of {head} events ({:.0} events/s)",
                    now_at.saturating_sub(at_end) as f64 / caught.elapsed().as_secs_f64()
                );
            }
        }
        let catch_up = caught.elapsed().as_secs_f64();
        if reused {
            println!("  read model at the log's head {catch_up:.1} s after the start");
        } else {
            println!(
                "  read model caught up {catch_up:.1} s after seeding ended ({:.0} events/s)",
                head.saturating_sub(at_end) as f64 / catch_up.max(1e-9)
            );
        }

        let (procedures, contributions) = match seeded_counts {
            Some(counts) => counts,
            None => {
                // What the earlier run filled (and earlier runs submitted), as the read
                // model holds it now that it has caught up.
                let (procedures, contributions) = filled_before(&store).await?;
                anyhow::ensure!(
                    procedures == self.procedures,
                    "the reused database holds {procedures} procedures, not --procedures {}",
                    self.procedures
                );
                println!("  reused: {procedures} procedures, {contributions} contributions");
                (procedures, contributions)
            }
        };

        if let Some(note) = crate::cli::bench::as_autovacuum_would(
            &store,
            &[
                "participation_procedures",
                "participation_topics",
                "participation_counts",
                "participation_rounds",
            ],
            &["participation_contributions"],
        )
        .await?
        {
            println!("  {note}");
        }

        let active: Vec<usize> = (0..self.procedures)
            .filter(|&i| fate(i) == Fate::Active)
            .collect();
        let searches = self.time_searches(&app).await?;
        let (submitted, baseline_append, not_taken, cpu) = self
            .time_submissions(&app, &state, &dev, &active, head)
            .await?;
        runner.shutdown().await;

        let (search, by_id, filters) = searches;
        let mut out = vec![
            format!(
                "{kind}: {procedures} procedures, {contributions} contributions, {head} events in the log"
            ),
            search.line("search (filters + full text)"),
            by_id.line("baseline: one procedure by id"),
            submitted.line(&format!("submission at {}/s offered", self.rate)),
            baseline_append.line(&format!("baseline: bare append at {}/s", self.rate)),
            format!(
                "  search p99 {:.3} ms = {:.2}× the 20 ms target, {:.1}× the baseline; filters used: {filters}",
                ms(search.p99),
                ratio(search.p99, Duration::from_millis(20)),
                ratio(search.p99, by_id.p99)
            ),
            format!(
                "  submission p99 {:.3} ms = {:.2}× the 15 ms target, {:.1}× the baseline; {not_taken} of {} not taken (no 201)",
                ms(submitted.p99),
                ratio(submitted.p99, Duration::from_millis(15)),
                ratio(submitted.p99, baseline_append.p99),
                submitted.n
            ),
        ];
        out.push(cpu);
        if self.keep || self.reuse.is_some() {
            let name = match scratch {
                Scratch::Postgres { schema, .. } => schema.clone(),
                Scratch::Sqlite { dir } => dir.display().to_string(),
            };
            out.push(format!("  kept: time it again with --reuse {name}"));
        }
        if search.p99 > Duration::from_millis(20)
            || submitted.p99 > Duration::from_millis(15)
            || not_taken > 0
        {
            out.push("  a target is missed".into());
        }
        Ok(out.join("\n"))
    }

    /// Every procedure through its commands, `writers` at once; the procedures' states.
    async fn seed_procedures(
        &self,
        state: &AppState,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Vec<Procedure>> {
        let mut progress = Progress::new("procedures", self.procedures);
        let mut tasks: JoinSet<anyhow::Result<(usize, Procedure)>> = JoinSet::new();
        let mut out: Vec<Option<Procedure>> = vec![None; self.procedures];
        let mut next = 0usize;
        let mut done = 0usize;
        loop {
            while tasks.len() < self.writers && next < self.procedures {
                let i = next;
                next += 1;
                let state = state.clone();
                tasks.spawn(async move {
                    let meta = Meta::system("bench");
                    let stream = procedure_id(i).stream_id();
                    let mut last = ProcedureState::default();
                    for command in procedure_commands(i, now)? {
                        last = execute::<ProcedureState>(
                            &state,
                            &stream,
                            &command,
                            |e| refused("procedure-refused", e),
                            &meta,
                        )
                        .await
                        .map_err(|p| anyhow::anyhow!("procedure {i}: {}", p.detail))?
                        .state;
                    }
                    let p = last.procedure().cloned().context("no procedure")?;
                    Ok((i, p))
                });
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            let (i, p) = joined??;
            out[i] = Some(p);
            done += 1;
            progress.at(done);
        }
        out.into_iter()
            .map(|p| p.context("a procedure was not seeded"))
            .collect()
    }

    /// The contributions, spread over the procedures open now, each at an instant of its
    /// round so far, `writers` appends at once. Each is decided by the domain's decider on
    /// the procedure's state and sealed under its author's key, as the command path does;
    /// what the fill leaves out is the command path's reads (the contribution's empty
    /// stream, the author's key on every submission): the 5,000 authors' keys are taken
    /// from the vault once, before the fill, so that a million contributions are appended
    /// at the store's pace rather than at the pace of a million key look-ups.
    async fn seed_contributions(
        &self,
        state: &AppState,
        procedures: &[Procedure],
        now: DateTime<Utc>,
    ) -> anyhow::Result<usize> {
        const AUTHORS: u64 = 5_000;
        let open: Arc<Vec<(usize, Procedure)>> = Arc::new(
            procedures
                .iter()
                .enumerate()
                .filter(|(i, _)| fate(*i) == Fate::Active)
                .map(|(i, p)| (i, p.clone()))
                .collect(),
        );
        anyhow::ensure!(
            !open.is_empty() || self.contributions == 0,
            "no open procedure"
        );
        let sealer = state
            .sealer
            .clone()
            .context("the bench's state has a sealer")?;
        let authors = AUTHORS.min(self.contributions as u64).max(1);
        let mut keys = Vec::with_capacity(authors as usize);
        for k in 0..authors {
            let subject = amtsbuch_infra::vault::SubjectId::from(amtsbuch_domain::SubjectId(
                participant(k).0,
            ));
            keys.push(sealer.vault().key_for_sealing(&subject).await?);
        }
        let keys = Arc::new(keys);
        let total = self.contributions;
        let writers = self.writers.max(1);
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let progress = Arc::new(std::sync::Mutex::new(Progress::new("contributions", total)));
        let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
        for w in 0..writers {
            let (store, open, keys, done, progress) = (
                state.store.clone(),
                open.clone(),
                keys.clone(),
                done.clone(),
                progress.clone(),
            );
            tasks.spawn(async move {
                let rng = amtsbuch_domain::seal::SystemRandom::new();
                let actor = "system:bench".to_owned();
                for k in (w..total).step_by(writers) {
                    let k = k as u64;
                    let mut pick = Pick(0x9E37_79B9_7F4A_7C15 ^ (k + 1).wrapping_mul(0x1000_0001));
                    let (i, procedure) = &open[pick.next(open.len() as u64) as usize];
                    let (start, end) = round_of(*i, now);
                    let span = (end.min(now) - start).num_seconds().max(2) as u64;
                    let at = start + chrono::Duration::seconds(1 + pick.next(span - 1) as i64);
                    let (_, lon, lat) = PLACES[i % PLACES.len()];
                    let (kind, content) = content_for(procedure.format, k, (lon, lat))?;
                    let cid = ContributionId(Uuid::now_v7());
                    let author = k % authors;
                    let command = ContributionCommand::Submit(Submit {
                        contribution_id: cid,
                        procedure,
                        kind,
                        author: participant(author),
                        content,
                        attachments: vec![],
                        choices: Default::default(),
                        at,
                    });
                    let decided = <ContributionState as amtsbuch_domain::Decider>::decide(
                        &command,
                        &ContributionState::default(),
                    )
                    .map_err(|e| anyhow::anyhow!("contribution {k}: {e}"))?;
                    let (key_id, key) = &keys[author as usize];
                    let mut events = Vec::with_capacity(decided.len());
                    for event in &decided {
                        let mut encoded = amtsbuch_domain::event::encode(
                            event,
                            Uuid::now_v7(),
                            Some(amtsbuch_domain::event::Sealing { key_id, key }),
                            &rng,
                        )?
                        .event;
                        // Routed as the submission route routes it.
                        encoded.actor = Some(actor.clone());
                        encoded.authority = encoded
                            .authority
                            .take()
                            .or_else(|| Some(procedure.authority.clone()));
                        encoded.tenant = encoded
                            .tenant
                            .take()
                            .or_else(|| Some(procedure.region.as_str().to_owned()));
                        events.push(encoded);
                    }
                    store
                        .append(AppendRequest {
                            stream: cid.stream_id(),
                            expected: ExpectedVersion::NoStream,
                            events,
                        })
                        .await?;
                    let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    progress
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .at(d);
                }
                Ok(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok(done.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// The search with a mix of filters and full text, and the baseline read by id,
    /// alternating; (search, baseline, a description of the filters).
    async fn time_searches(&self, app: &Router) -> anyhow::Result<(Latency, Latency, String)> {
        let mut pick = Pick(0x2545_F491_4F6C_DD1D);
        let mut searches = Vec::with_capacity(self.searches);
        let mut by_id = Vec::with_capacity(self.searches);
        let mut found = 0usize;
        // Warm the pools and caches a running server would have warm.
        for n in 0..50 {
            get(
                app,
                &format!("/participations/{}", procedure_id(n % self.procedures)),
            )
            .await?;
            get(app, "/participations?q=Radweg&limit=20").await?;
        }
        for n in 0..self.searches {
            let word = WORDS[pick.next(WORDS.len() as u64) as usize];
            let (ags, lon, lat) = PLACES[pick.next(PLACES.len() as u64) as usize];
            let uri = match n % 4 {
                0 => format!("/participations?q={word}&status=active&limit=20"),
                1 => format!("/participations?q={word}&format=bauleitplanung&ags={ags}&limit=20"),
                2 => format!(
                    "/participations?q={word}&from={}&to={}&limit=20",
                    ts(Utc::now() - chrono::Duration::days(30)),
                    ts(Utc::now() + chrono::Duration::days(30))
                ),
                _ => format!(
                    "/participations?q={word}&topic={}&bbox={},{},{},{}&limit=20",
                    TOPICS[pick.next(TOPICS.len() as u64) as usize],
                    lon - 0.05,
                    lat - 0.05,
                    lon + 0.1,
                    lat + 0.1
                ),
            };
            let t = Instant::now();
            let body = get(app, &uri).await?;
            searches.push(t.elapsed());
            found += body["items"].as_array().map_or(0, Vec::len);
            let id = procedure_id(pick.next(self.procedures as u64) as usize);
            let t = Instant::now();
            get(app, &format!("/participations/{id}")).await?;
            by_id.push(t.elapsed());
        }
        Ok((
            Latency::of(searches),
            Latency::of(by_id),
            format!(
                "q with status / format+ags / period / topic+bbox in turn, {found} hits in {} searches",
                self.searches
            ),
        ))
    }

    /// Submissions offered at `rate` for `seconds`, each by one of 1,000 participants to
    /// an active procedure (numbered after the log's `head`), then the bare appends at the same rate; open loop, each
    /// latency from the instant its request was due.
    async fn time_submissions(
        &self,
        app: &Router,
        state: &AppState,
        dev: &DevKey,
        active: &[usize],
        head: u64,
    ) -> anyhow::Result<(Latency, Latency, usize, String)> {
        anyhow::ensure!(!active.is_empty(), "no active procedure to contribute to");
        let tokens: Vec<String> = (0..1_000u64)
            .map(|k| {
                let mut request = TokenRequest::new(format!("bench-{k}"), [Role::Citizen]);
                // Participants new to the vault in every run, also on a reused database
                // (each run adds more events than participants): their first submission
                // creates their key, as in a fresh run.
                request.account = Some(participant(100_000 + head + k).0.to_string());
                mint(dev, &request, Utc::now()).map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<_>>()?;
        let total = self.rate as u64 * self.seconds;
        let interval = Duration::from_secs_f64(1.0 / f64::from(self.rate));

        let mut pick = Pick(0x5851_F42D_4C95_7F2D);
        println!("  offering {total} submissions at {}/s", self.rate);
        let cpu_before = cpu_seconds();
        let started = tokio::time::Instant::now();
        let mut tasks: JoinSet<anyhow::Result<(bool, Duration)>> = JoinSet::new();
        for n in 0..total {
            let due = started + interval * n as u32;
            tokio::time::sleep_until(due).await;
            let i = active[pick.next(active.len() as u64) as usize];
            let (kind, body) = match format_of(i) {
                Format::Bauleitplanung => (
                    "statement",
                    serde_json::json!({ "text": "Bitte den Baumbestand erhalten." }),
                ),
                Format::Meldeverfahren => (
                    "defect_report",
                    serde_json::json!({
                        "text": "Schlagloch vor dem Haus", "pseudonym": "Anwohner",
                        "location": { "type": "Point", "coordinates": [PLACES[i % PLACES.len()].1, PLACES[i % PLACES.len()].2] }
                    }),
                ),
                _ => (
                    "comment",
                    serde_json::json!({ "text": "Mehr Bänke am Ufer", "pseudonym": "Anwohnerin" }),
                ),
            };
            let mut body = body;
            body["kind"] = kind.into();
            let request =
                Request::post(format!("/participations/{}/contributions", procedure_id(i)))
                    .header(
                        header::AUTHORIZATION,
                        format!("Bearer {}", tokens[(n % 1_000) as usize]),
                    )
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(body.to_string()))?;
            let app = app.clone();
            tasks.spawn(async move {
                let reply = app.oneshot(request).await?;
                Ok((reply.status() == StatusCode::CREATED, due.elapsed()))
            });
        }
        let mut submitted = Vec::with_capacity(total as usize);
        let mut not_taken = 0usize;
        while let Some(done) = tasks.join_next().await {
            let (created, took) = done??;
            not_taken += usize::from(!created);
            submitted.push(took);
        }

        let cpu_submissions = cpu_seconds().since(cpu_before);
        let event_type = EventType::parse("BenchProbe")?;
        println!("  offering {total} bare appends at {}/s", self.rate);
        let cpu_before = cpu_seconds();
        let started = tokio::time::Instant::now();
        let mut tasks: JoinSet<anyhow::Result<Duration>> = JoinSet::new();
        for n in 0..total {
            let due = started + interval * n as u32;
            tokio::time::sleep_until(due).await;
            let store = state.store.clone();
            let event = NewEvent::new(event_type.clone(), serde_json::json!({ "n": n }));
            let stream = StreamId::parse(&format!("benchprobe-{}", Uuid::now_v7().simple()))?;
            tasks.spawn(async move {
                store
                    .append(AppendRequest {
                        stream,
                        expected: ExpectedVersion::NoStream,
                        events: vec![event],
                    })
                    .await?;
                Ok(due.elapsed())
            });
        }
        let mut appended = Vec::with_capacity(total as usize);
        while let Some(done) = tasks.join_next().await {
            appended.push(done??);
        }
        let cpu_appends = cpu_seconds().since(cpu_before);
        let per = |cpu: Cpu| {
            format!(
                "{:.2} ms this process, {:.2} ms the postgres processes",
                cpu.own * 1000.0 / total as f64,
                cpu.database * 1000.0 / total as f64
            )
        };
        let cpu = format!(
            "  CPU per submission: {}; per bare append: {} (the postgres processes of the machine, whoever they serve)",
            per(cpu_submissions),
            per(cpu_appends)
        );
        Ok((
            Latency::of(submitted),
            Latency::of(appended),
            not_taken,
            cpu,
        ))
    }
}

/// The procedures and contributions a reused scratch database holds, from its read model.
async fn filled_before(store: &AnyStore) -> anyhow::Result<(usize, usize)> {
    let db = amtsbuch_projections::ReadDb::new(store);
    let mut counts = [0usize; 2];
    for (n, table) in ["participation_procedures", "participation_contributions"]
        .iter()
        .enumerate()
    {
        let count = db
            .fetch_optional(&format!("SELECT COUNT(*) AS n FROM {table}"), &[])
            .await?
            .map(|row| row.get::<i64>("n"))
            .transpose()?
            .context("COUNT(*) gave no row")?;
        counts[n] = usize::try_from(count)?;
    }
    Ok((counts[0], counts[1]))
}

/// CPU time used so far, in seconds.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    /// By this process (the service, its read models and the bench's clients).
    own: f64,
    /// By every `postgres` process of the machine.
    database: f64,
}

impl Cpu {
    fn since(self, before: Self) -> Self {
        Self {
            own: self.own - before.own,
            database: self.database - before.database,
        }
    }
}

/// The CPU time used so far by this process and by the machine's `postgres` processes,
/// from `/proc` (Linux; zero elsewhere), in the kernel's 100 ticks per second.
fn cpu_seconds() -> Cpu {
    fn ticks(path: &std::path::Path) -> u64 {
        let Ok(stat) = std::fs::read_to_string(path) else {
            return 0;
        };
        // After "pid (comm) ": state, ppid, …, utime (12th), stime (13th).
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return 0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        field(11).unwrap_or(0) + field(12).unwrap_or(0)
    }
    let own = ticks(std::path::Path::new("/proc/self/stat"));
    let mut database = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let path = entry.path();
        if std::fs::read_to_string(path.join("comm")).is_ok_and(|c| c.trim() == "postgres") {
            database += ticks(&path.join("stat"));
        }
    }
    Cpu {
        own: own as f64 / 100.0,
        database: database as f64 / 100.0,
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `GET uri` through the router; must answer 200; its JSON.
async fn get(app: &Router, uri: &str) -> anyhow::Result<serde_json::Value> {
    let reply = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty())?)
        .await?;
    let status = reply.status();
    let bytes = axum::body::to_bytes(reply.into_body(), 1 << 20).await?;
    anyhow::ensure!(
        status == StatusCode::OK,
        "GET {uri}: {status} {}",
        String::from_utf8_lossy(&bytes)
    );
    Ok(serde_json::from_slice(&bytes)?)
}
