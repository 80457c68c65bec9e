//! `amtsbuch bench gdpr`: how fast a data protection officer's consent replay and a
//! disclosure check answer with a million events in the log.
//!
//! The run fills a scratch schema with a realistic mix — every subject with a few consents
//! (some withdrawn, some renewed) and a disclosure, and bulk events of other categories up
//! to the requested size — lets the consent index catch up, and then times, for random
//! subjects, (1) the replay of the subject's consents as of a random instant
//! (`consent_history`, answered from the events), (2) the disclosure check (the subject's
//! lock shared by all nodes, which also gives the instant, the subject's consents now, and
//! the domain's decision), and (3) the check together with recording the
//! decision in the log. Targets: replay p99 ≤ 5 ms, check p99 ≤ 2 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use clap::{Args, FromArgMatches};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;
use tokio::task::JoinSet;
use uuid::Uuid;

use amtsbuch_domain::event::DomainEvent;
use amtsbuch_domain::gdpr::consent::{
    ConsentBasis, ConsentEvent, ConsentGiven, ConsentRenewed, ConsentWithdrawn, Notice, Scope,
    Sha256Digest,
};
use amtsbuch_domain::gdpr::disclosure::{self, DisclosureState, RequestDisclosure};
use amtsbuch_domain::gdpr::{
    AccountId, CategorySet, Channel, ConsentId, DataCategory, DisclosureId, NoticeVersion,
    PurposeId, RecipientId, Reference,
};
use amtsbuch_domain::seal::SystemRandom;
use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{AnyStore, EventStore, PgStore};
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::gdpr as models;

use crate::module::Bench;

/// `amtsbuch bench gdpr`, as the GDPR domain module offers it.
pub const BENCH: Bench =
    Bench {
        command: || {
            GdprBench::augment_args(clap::Command::new("gdpr").about(
                "Consent replay and disclosure-check latency with a large log (PostgreSQL).",
            ))
        },
        run: |args| {
            Box::pin(async move {
                let bench = GdprBench::from_arg_matches(&args)?;
                bench.run().await
            })
        },
    };

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct GdprBench {
    #[arg(long, env = "AMTSBUCH_DATABASE_URL")]
    pub database_url: String,
    /// Events in the log (at least).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Data subjects with consents.
    #[arg(long, default_value_t = 20_000)]
    pub subjects: usize,
    /// Timed queries of each kind.
    #[arg(long, default_value_t = 2_000)]
    pub samples: usize,
}

/// Latency percentiles of one kind of query.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
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
            p50: at(0.5),
            p99: at(0.99),
            p999: at(0.999),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    fn line(&self, what: &str, target: Duration) -> String {
        format!(
            "{what:<34} p50 {:>7.3} ms  p99 {:>7.3} ms  p99.9 {:>7.3} ms  max {:>7.3} ms  (target p99 ≤ {} ms: {:.2}× of target)",
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            target.as_millis(),
            ms(self.p99) / ms(target)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A small deterministic generator for picking subjects and instants (xorshift64*).
struct Pick(u64);

impl Pick {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % below.max(1)
    }
}

fn subject(i: usize) -> AccountId {
    AccountId(Uuid::from_u128(
        0x0193_0000_0000_7000_8000_0000_0000_0000 | i as u128,
    ))
}

fn consent_id(i: usize, k: u128) -> ConsentId {
    ConsentId(Uuid::from_u128(
        0x0194_0000_0000_7000_8000_0000_0000_0000 | (k << 40) | i as u128,
    ))
}

/// The instant the history of subject `i` starts; subjects are spread over a year.
fn start(i: usize) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
        + chrono::Duration::seconds((i as i64 * 1571) % (365 * 86_400))
}

fn set<T: Ord>(items: impl IntoIterator<Item = T>) -> std::collections::BTreeSet<T> {
    items.into_iter().collect()
}

/// The consent events of subject `i`: a consent to prefill Anträge at the
/// Landratsamt (withdrawn for every third subject), and one for communication through
/// Amt24 (renewed for every fifth).
fn consent_events(i: usize) -> anyhow::Result<Vec<Vec<ConsentEvent>>> {
    let s = subject(i);
    let t = start(i);
    let notice = Notice {
        version: NoticeVersion::parse("2026-01")?,
        sha256: Sha256Digest::of(b"Einwilligung nach SaechsEGovG"),
    };
    let reference = Reference::parse("§ 10 Abs. 1 Satz 2 SächsEGovG")?;
    let a = consent_id(i, 1);
    let mut first = vec![ConsentEvent::Given(ConsentGiven {
        consent_id: a,
        subject: s,
        scope: Scope::new(
            CategorySet::from([DataCategory::Stammdaten, DataCategory::Kommunikationsdaten]),
            set([PurposeId::parse("antrag-vorbefuellung")?]),
            set([RecipientId::parse("lra-meissen")?]),
        )?,
        legal_basis: ConsentBasis::Consent,
        legal_reference: reference.clone(),
        notice: notice.clone(),
        channel: Channel::ServicekontoWeb,
        given_at: t,
        expires_at: None,
    })];
    if i.is_multiple_of(3) {
        first.push(ConsentEvent::Withdrawn(ConsentWithdrawn {
            consent_id: a,
            subject: s,
            channel: Channel::ServicekontoWeb,
            withdrawn_at: t + chrono::Duration::days(30),
        }));
    }
    let b = consent_id(i, 2);
    let mut second = vec![ConsentEvent::Given(ConsentGiven {
        consent_id: b,
        subject: s,
        scope: Scope::new(
            CategorySet::from([DataCategory::Kommunikationsdaten]),
            set([PurposeId::parse("benachrichtigung")?]),
            set([RecipientId::parse("amt24")?]),
        )?,
        legal_basis: ConsentBasis::Consent,
        legal_reference: reference,
        notice: notice.clone(),
        channel: Channel::Amt24,
        given_at: t + chrono::Duration::hours(1),
        expires_at: Some(t + chrono::Duration::days(365)),
    })];
    if i.is_multiple_of(5) {
        second.push(ConsentEvent::Renewed(ConsentRenewed {
            consent_id: b,
            subject: s,
            notice,
            channel: Channel::Amt24,
            renewed_at: t + chrono::Duration::days(200),
            expires_at: Some(t + chrono::Duration::days(900)),
        }));
    }
    Ok(vec![first, second])
}

fn encoded<E: DomainEvent>(events: &[E]) -> anyhow::Result<(StreamId, Vec<NewEvent>)> {
    let rng = SystemRandom::new();
    let mut stream = None;
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let enc = amtsbuch_domain::event::encode(e, Uuid::now_v7(), None, &rng)?;
        stream = Some(enc.stream_id);
        out.push(enc.event);
    }
    Ok((stream.context("no events")?, out))
}

impl GdprBench {
    pub async fn run(&self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.database_url.starts_with("postgres://")
                || self.database_url.starts_with("postgresql://"),
            "bench gdpr runs on PostgreSQL (give --database-url postgres://…)"
        );
        anyhow::ensure!(
            self.subjects > 0 && self.samples > 0,
            "--subjects and --samples must be positive"
        );
        let base: PgConnectOptions = self.database_url.parse().context("bad database URL")?;
        let schema = format!("amtsbuch_bench_{}", Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect_with(&base)
            .await
            .context("cannot connect")?;
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await?;
        println!("store: postgresql, scratch schema {schema} (dropped afterwards)");
        let result = self
            .run_in(base.options([("search_path", schema.as_str())]))
            .await;
        // AMTSBUCH_BENCH_KEEP keeps the filled schema, to study query plans afterwards.
        if std::env::var_os("AMTSBUCH_BENCH_KEEP").is_none() {
            sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
                .execute(&mut admin)
                .await?;
        } else {
            println!("kept schema {schema}");
        }
        result
    }

    async fn run_in(&self, options: PgConnectOptions) -> anyhow::Result<String> {
        let store = AnyStore::Postgres(PgStore::connect_with(options).await?);
        let filled = Instant::now();
        self.fill(&store).await?;
        let head = store.head().await?.position;
        println!(
            "filled: {head} events in {:.1} s ({} subjects with two consents each)",
            filled.elapsed().as_secs_f64(),
            self.subjects
        );

        // The consent index must have read the log, as it would have in a running server.
        let caught_up = Instant::now();
        let runner = amtsbuch_projections::spawn(
            store.clone(),
            vec![Arc::new(models::Consents) as Arc<dyn amtsbuch_projections::Projection>],
        );
        let mut applied = runner
            .applied(models::consents::NAME)
            .context("the consents projection is not running")?;
        applied.wait_for(|p| *p >= head).await?;
        println!(
            "consent index caught up with {head} events in {:.1} s",
            caught_up.elapsed().as_secs_f64()
        );

        let db = ReadDb::new(&store);
        let mut pick = Pick(0x9E37_79B9_7F4A_7C15 ^ head);
        // Warm the connection pool and the caches a running server would have warm.
        for i in 0..50 {
            models::consent_history(&db, subject(i % self.subjects), start(i)).await?;
        }

        let mut replay = Vec::with_capacity(self.samples);
        let mut found = 0usize;
        for _ in 0..self.samples {
            let i = pick.next(self.subjects as u64) as usize;
            let as_of = start(i) + chrono::Duration::days(pick.next(400) as i64);
            let t = Instant::now();
            let history = models::consent_history(&db, subject(i), as_of).await?;
            replay.push(t.elapsed());
            found += history.len();
        }

        let recipient = RecipientId::parse("lra-meissen")?;
        let purpose = PurposeId::parse("antrag-vorbefuellung")?;
        let categories = CategorySet::from([DataCategory::Stammdaten]);
        let mut check = Vec::with_capacity(self.samples);
        let mut record = Vec::with_capacity(self.samples);
        let mut granted = 0usize;
        for n in 0..self.samples {
            let i = pick.next(self.subjects as u64) as usize;
            let started = Instant::now();
            // As the service judges a disclosure: under the subject's lock, at its instant.
            let lock = crate::command::shared_subject_lock(&store, subject(i).into()).await?;
            let consents = models::current_consents(&db, subject(i)).await?;
            let id = DisclosureId(Uuid::now_v7());
            let events = disclosure::decide(
                &RequestDisclosure {
                    disclosure_id: id,
                    subject: subject(i),
                    recipient: recipient.clone(),
                    purpose: purpose.clone(),
                    categories,
                    at: lock.granted_at(),
                    consents: &consents,
                    other_basis: None,
                },
                &DisclosureState::Undecided,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            check.push(started.elapsed());
            granted += usize::from(events.first().is_some_and(|e| e.is_granted()));
            // Every tenth decision is also recorded, as the service does with all of them.
            if n % 10 == 0 {
                let (stream, new_events) = encoded(&events)?;
                store
                    .append(AppendRequest {
                        stream,
                        expected: ExpectedVersion::NoStream,
                        events: new_events,
                    })
                    .await?;
                record.push(started.elapsed());
            }
            drop(lock);
        }
        runner.shutdown().await;
        let replay = Latency::of(replay);
        let check = Latency::of(check);
        let record = Latency::of(record);
        Ok(format!(
            "log: {head} events; {} replays found {found} consents, {} checks granted {granted}\n{}\n{}\n{}",
            self.samples,
            self.samples,
            replay.line("consent replay as of an instant", Duration::from_millis(5)),
            check.line("disclosure check", Duration::from_millis(2)),
            record.line("disclosure check + record in log", Duration::from_millis(2)),
        ))
    }

    /// Append the subjects' consents and disclosures, then bulk events of other
    /// categories up to the requested size, from 32 concurrent writers.
    async fn fill(&self, store: &AnyStore) -> anyhow::Result<()> {
        let mut tasks: JoinSet<anyhow::Result<u64>> = JoinSet::new();
        let writers = 32usize;
        let subjects = self.subjects;
        for w in 0..writers {
            let store = store.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                for i in (w..subjects).step_by(writers) {
                    for events in consent_events(i)? {
                        let (stream, new_events) = encoded(&events)?;
                        n += new_events.len() as u64;
                        store
                            .append(AppendRequest {
                                stream,
                                expected: ExpectedVersion::NoStream,
                                events: new_events,
                            })
                            .await?;
                    }
                }
                Ok(n)
            });
        }
        let mut total = 0u64;
        while let Some(done) = tasks.join_next().await {
            total += done??;
        }
        let noise = self.events.saturating_sub(total as usize);
        let batch = amtsbuch_domain::append::MAX_EVENTS_PER_APPEND;
        let event_type = EventType::parse("ApplicationStepRecorded")?;
        let batches = noise.div_ceil(batch);
        for w in 0..writers {
            let store = store.clone();
            let event_type = event_type.clone();
            tasks.spawn(async move {
                let mut n = 0u64;
                for b in (w..batches).step_by(writers) {
                    let size = batch.min(noise - b * batch);
                    let events = (0..size)
                        .map(|k| {
                            NewEvent::new(
                                event_type.clone(),
                                serde_json::json!({ "step": k, "form": "wohngeld-2026" }),
                            )
                        })
                        .collect::<Vec<_>>();
                    n += events.len() as u64;
                    store
                        .append(AppendRequest {
                            stream: StreamId::parse(&format!("application-bench{b}"))?,
                            expected: ExpectedVersion::NoStream,
                            events,
                        })
                        .await?;
                }
                Ok(n)
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
        Ok(())
    }
}
