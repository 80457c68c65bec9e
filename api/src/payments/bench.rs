//! `amtsbuch bench payments`: how long a push callback takes to become a verified status
//! in the log (signature check, status pull from the provider, append), against the
//! provider simulator running as a process of its own, and how fast a bank statement is
//! reconciled against receivables (with progress) — each beside a baseline measured in the
//! same run on the same store: a status read and a single-event append per callback, and
//! as many single-event appends to new streams as the statement has lines. Goals: callback
//! p99 ≤ 30 ms; 100,000 lines in ≤ 10 s. The figures are printed with their ratios, never
//! judged (docs/PERFORMANCE.md has this machine's). The tests use the same functions with
//! small counts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use futures_util::{stream, StreamExt};
use uuid::Uuid;

use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::payments::receivable::RequestReceivable;
use amtsbuch_domain::payments::{
    Bewirtschafter, Buchungstext, Cents, Haushaltsstelle, Kassenzeichen, Line, Mandant, PayerName,
    ReceivableId, TransactionId,
};

use anyhow::Context;
use clap::{Args, FromArgMatches};

use amtsbuch_infra::AnyStore;

use super::provider::Provider;
use super::service::{self, Format, ImportReport};
use crate::command::Meta;
use crate::module::Bench;
use crate::problem::Problem;
use crate::AppState;

/// Durations in milliseconds at the quantiles 0.5 and 0.99, and the largest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantiles {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Quantiles {
    pub fn of(mut samples: Vec<Duration>) -> Option<Quantiles> {
        if samples.is_empty() {
            return None;
        }
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
            samples[i].as_secs_f64() * 1000.0
        };
        Some(Quantiles {
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        })
    }
}

/// A receivable of 25.00 EUR in two lines for the figures.
pub fn sample_fee(id: ReceivableId, mandant: &Mandant) -> Result<RequestReceivable, Problem> {
    let text = |e: amtsbuch_domain::newtype::TextError| Problem::internal(&e);
    let line = |hst: &str, cents: i64| -> Result<Line, Problem> {
        let c = Cents::new(cents).map_err(|e| Problem::internal(&e))?;
        Ok(Line {
            haushaltsstelle: Haushaltsstelle::parse(hst).map_err(text)?,
            objektnummer: None,
            href: None,
            buchungstext: Buchungstext::parse("GEBÜHR").map_err(text)?,
            gross_cents: c,
            net_cents: c,
            tax_cents: Cents::ZERO,
        })
    };
    Ok(RequestReceivable {
        receivable_id: id,
        mandant: mandant.clone(),
        bewirtschafter: Bewirtschafter::parse("b100").map_err(text)?,
        kassenzeichen: Kassenzeichen::parse("XX").map_err(text)?,
        assigned: false,
        gross_cents: Cents::new(2500).map_err(|e| Problem::internal(&e))?,
        due_date: Utc::now().date_naive(),
        lines: vec![line("1100.100", 2000)?, line("1100.200", 500)?],
        application_id: None,
        payer: SubjectId(Uuid::now_v7()),
        payer_name: PayerName::parse("Bench Payer").map_err(text)?,
        requested_at: Utc::now(),
    })
}

/// How many receivables the bench appends in one multi-stream append while filling the
/// store, and how many of those are in flight at once.
const FILL_CHUNK: usize = 1000;
const FILL_IN_FLIGHT: usize = 2;

type Timings = Arc<Mutex<Vec<Duration>>>;

#[derive(serde::Deserialize)]
struct Which {
    receivable: Uuid,
}

async fn timed_callback(
    State((state, provider, timings)): State<(AppState, Provider, Timings)>,
    Query(which): Query<Which>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let started = Instant::now();
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    let outcome = service::callback(
        &state,
        &provider,
        ReceivableId(which.receivable),
        &body,
        signature,
    )
    .await;
    timings
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(started.elapsed());
    match outcome {
        Ok(_) => StatusCode::OK,
        Err(p) => p.status,
    }
}

/// What [`callback_latency`] measured, and the transactions it paid.
#[derive(Debug, Clone)]
pub struct Callbacks {
    pub latency: Quantiles,
    pub transactions: Vec<TransactionId>,
}

/// Callback → pull → event: requests and checks out `count` receivables, lets the
/// simulator at `simulator_url` (its control interface) pay each with one signed
/// callback, and measures each callback's handling until its status event is appended.
pub async fn callback_latency(
    state: &AppState,
    provider: &Provider,
    simulator_url: &str,
    count: usize,
) -> anyhow::Result<Callbacks> {
    let mut transactions = Vec::with_capacity(count);
    let timings: Timings = Arc::default();
    let app = axum::Router::new()
        .route(
            "/callbacks/payments/{provider}",
            axum::routing::post(timed_callback),
        )
        .with_state((state.clone(), provider.clone(), timings.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let meta = Meta::system("payments-bench");
    let mandant = Mandant::parse("14612000")?;
    for _ in 0..count {
        let id = ReceivableId(Uuid::now_v7());
        service::request(
            state,
            sample_fee(id, &mandant).map_err(|p| anyhow::anyhow!("{}", p.detail))?,
            None,
            &meta,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let checkout = service::checkout(
            state,
            provider,
            id,
            "http://127.0.0.1/return".into(),
            &base,
            Utc::now(),
            &meta,
        )
        .await
        .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
        let url = format!(
            "{}/control/transactions/{}",
            simulator_url.trim_end_matches('/'),
            checkout.transaction_id
        );
        transactions.push(TransactionId::parse(&checkout.transaction_id)?);
        let answer = tokio::task::spawn_blocking(move || {
            ureq::post(&url)
                .header("content-type", "application/json")
                .send(br#"{"outcome":"paid","callbacks":1}"#.as_slice())
                .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
        })
        .await??;
        if !answer.contains("200") {
            anyhow::bail!("a callback was not accepted: {answer}");
        }
    }
    server.abort();
    let samples = std::mem::take(&mut *timings.lock().unwrap_or_else(|e| e.into_inner()));
    let latency =
        Quantiles::of(samples).ok_or_else(|| anyhow::anyhow!("no callback was measured"))?;
    Ok(Callbacks {
        latency,
        transactions,
    })
}

/// The baseline of the callback path, what it cannot do without: for each of
/// `transactions`, one status read at the provider and one single-event append to a new
/// stream, one after the other.
pub async fn pull_and_append(
    state: &AppState,
    provider: &Provider,
    transactions: &[TransactionId],
) -> anyhow::Result<Quantiles> {
    let mut samples = Vec::with_capacity(transactions.len());
    for tx in transactions {
        let started = Instant::now();
        provider
            .status(tx)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        bare_append(state).await?;
        samples.push(started.elapsed());
    }
    Quantiles::of(samples).ok_or_else(|| anyhow::anyhow!("no baseline was measured"))
}

/// One event on a new stream of its own, as the raw append route writes it.
async fn bare_append(state: &AppState) -> anyhow::Result<()> {
    use amtsbuch_infra::EventStore;
    state.store.append(bare_request()?).await?;
    Ok(())
}

/// The request of [`bare_append`].
fn bare_request() -> anyhow::Result<amtsbuch_domain::AppendRequest> {
    let event = amtsbuch_domain::NewEvent::new(
        amtsbuch_domain::EventType::parse("BenchRecorded")?,
        serde_json::json!({ "n": 1 }),
    );
    Ok(amtsbuch_domain::AppendRequest {
        stream: amtsbuch_domain::StreamId::parse(&format!(
            "benchbase-{}",
            Uuid::now_v7().simple()
        ))?,
        expected: amtsbuch_domain::ExpectedVersion::NoStream,
        events: vec![event],
    })
}

/// A baseline of reconciliation: `count` single-event appends to `count` new streams, 256
/// at once, each an append of its own (how the import booked before it had multi-stream
/// appends); how long they took.
pub async fn appends(state: &AppState, count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut done = stream::iter(0..count)
        .map(|_| bare_append(state))
        .buffer_unordered(SINGLE_APPENDS_AT_ONCE);
    while let Some(r) = done.next().await {
        r?;
    }
    Ok(started.elapsed())
}

/// Single appends in flight at once in [`appends`].
const SINGLE_APPENDS_AT_ONCE: usize = 256;

/// The floor of reconciliation, what the import cannot do without: `count` single-event
/// requests to `count` new streams, written as the import writes (as many requests per
/// multi-stream append as the import puts in one, as many of those in flight); how long
/// they took.
pub async fn appends_many(state: &AppState, count: usize) -> anyhow::Result<Duration> {
    use amtsbuch_infra::EventStore;
    let started = Instant::now();
    let chunks: Vec<usize> = (0..count)
        .step_by(service::IMPORT_CHUNK_LINES)
        .map(|start| service::IMPORT_CHUNK_LINES.min(count - start))
        .collect();
    let mut done = stream::iter(chunks)
        .map(|n| async move {
            let mut requests = Vec::with_capacity(n);
            for _ in 0..n {
                requests.push(bare_request()?);
            }
            for plan in state.store.append_many(requests).await? {
                plan?;
            }
            anyhow::Ok(())
        })
        .buffered(service::IMPORT_IN_FLIGHT);
    while let Some(r) = done.next().await {
        r?;
    }
    Ok(started.elapsed())
}

/// Receivables with the Kassenzeichen `B<n>` for `n` in `0..count`, each claimed and
/// requested as `service::request` does, but appended directly: the claims and then the
/// requests of `FILL_CHUNK` receivables in one multi-stream append each, all for one payer
/// (one data key). The fill is not what the bench measures; requesting 100,000 receivables
/// one by one through the service took minutes and, 64 at once, ran out of pooled
/// connections on a loaded machine.
pub async fn fill(
    state: &AppState,
    mandant: &Mandant,
    count: usize,
    mut filling: impl FnMut(usize, usize),
) -> anyhow::Result<()> {
    let meta = Meta::system("payments-bench");
    let payer = SubjectId(Uuid::now_v7());
    let chunks: Vec<std::ops::Range<usize>> = (0..count)
        .step_by(FILL_CHUNK)
        .map(|start| start..(start + FILL_CHUNK).min(count))
        .collect();
    let mut filled = stream::iter(chunks)
        .map(|range| fill_chunk(state, mandant, range, payer, &meta))
        .buffered(FILL_IN_FLIGHT);
    let mut done = 0;
    while let Some(n) = filled.next().await {
        done += n?;
        filling(done, count);
    }
    Ok(())
}

async fn fill_chunk(
    state: &AppState,
    mandant: &Mandant,
    range: std::ops::Range<usize>,
    payer: SubjectId,
    meta: &Meta,
) -> anyhow::Result<usize> {
    use amtsbuch_domain::payments::claim::{self, claim_stream, Claim, ClaimState};
    use amtsbuch_domain::payments::receivable::{self, ReceivableCommand, ReceivableState};
    use amtsbuch_domain::ExpectedVersion;
    use amtsbuch_infra::EventStore;
    let problem = |p: Problem| anyhow::anyhow!("{}", p.detail);
    let now = Utc::now();
    let mut claims = Vec::with_capacity(range.len());
    let mut requests = Vec::with_capacity(range.len());
    for n in range.clone() {
        let kassenzeichen = Kassenzeichen::parse(&format!("B{n:09}"))?;
        let id = ReceivableId(Uuid::now_v7());
        let claimed = claim::decide(
            &Claim {
                mandant: mandant.clone(),
                kassenzeichen: kassenzeichen.clone(),
                receivable_id: id,
                claimed_at: now,
            },
            &ClaimState::Free,
        )?;
        let stream = claim_stream(mandant, &kassenzeichen);
        claims.push(
            crate::command::request_for(state, &stream, &claimed, ExpectedVersion::NoStream, meta)
                .await
                .map_err(problem)?,
        );
        let mut command = sample_fee(id, mandant).map_err(problem)?;
        command.kassenzeichen = kassenzeichen;
        command.payer = payer;
        let requested = receivable::decide(
            &ReceivableCommand::Request(command),
            &ReceivableState::NotRequested,
        )?;
        requests.push(
            crate::command::request_for(
                state,
                &id.stream_id(),
                &requested,
                ExpectedVersion::NoStream,
                meta,
            )
            .await
            .map_err(problem)?,
        );
    }
    // The claims first, as `service::request` claims before it requests.
    for batch in [claims, requests] {
        for plan in state.store.append_many(batch).await? {
            plan?;
        }
    }
    Ok(range.len())
}

/// Reconciliation: requests `count` receivables with the Kassenzeichen `B<n>`, writes a
/// camt.053 with one credit for each, imports it and answers the import's duration and
/// report.
pub async fn reconciliation(
    state: &AppState,
    count: usize,
) -> anyhow::Result<(Duration, ImportReport)> {
    reconciliation_with(state, count, |_, _| {}, |_, _| {}).await
}

/// [`reconciliation`], telling `filling` how many receivables were requested so far and
/// `progress` how many lines the import has done.
pub async fn reconciliation_with(
    state: &AppState,
    count: usize,
    mut filling: impl FnMut(usize, usize),
    progress: impl FnMut(usize, usize),
) -> anyhow::Result<(Duration, ImportReport)> {
    let meta = Meta::system("payments-bench");
    let mandant = Mandant::parse("14612000")?;
    fill(state, &mandant, count, &mut filling).await?;
    let mut entries = String::with_capacity(count * 400);
    for n in 0..count {
        let kz = format!("B{n:09}");
        entries.push_str(&format!(
            "<Ntry><Amt Ccy=\"EUR\">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>\
             <BookgDt><Dt>2026-03-03</Dt></BookgDt><AcctSvcrRef>E{n}</AcctSvcrRef>\
             <NtryDtls><TxDtls><RmtInf><Ustrd>{kz}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>\n"
        ));
    }
    let xml = format!(
        "<Document><BkToCstmrStmt><GrpHdr><MsgId>BENCH</MsgId></GrpHdr><Stmt>\n{entries}\
         </Stmt></BkToCstmrStmt></Document>"
    );
    // The receivables were requested long before their statement in a real office: the
    // read models and the ledger had caught up with them. The fill writes them all at once,
    // so the bench waits for everything that follows the log (every read model, the
    // ledger's checkpoint) to catch up with the fill before the import is timed; otherwise
    // the figure grows with the backlog the fill left, not with the import. Read models
    // still follow the import's own events during the import, as in a real office.
    settle(state).await?;
    let started = Instant::now();
    let report = service::import(
        state,
        &mandant,
        Format::Camt,
        xml.as_bytes(),
        Utc::now(),
        &meta,
        progress,
    )
    .await
    .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
    Ok((started.elapsed(), report))
}

/// Waits until every read model this process runs and, if it signs, the ledger's signed
/// checkpoint have reached the log's head (at most half an hour), and logs how long that
/// took.
async fn settle(state: &AppState) -> anyhow::Result<()> {
    use amtsbuch_infra::EventStore;
    let head = state.store.head().await?.position;
    let db = amtsbuch_projections::db::ReadDb::new(&state.store);
    let names: Vec<&'static str> = crate::domains::projections()
        .iter()
        .map(|p| p.name())
        .collect();
    let started = Instant::now();
    let patience = started + Duration::from_secs(1800);
    loop {
        let applied = amtsbuch_projections::checkpoint::all(&db).await?;
        // The read models this process runs (each has a checkpoint once it started).
        let behind: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| applied.iter().any(|(a, at)| a == n && *at < head))
            .collect();
        // The ledger, if this process signs (the bench does; the tests' states do not).
        let signed = match state.ledger {
            Some(_) => amtsbuch_infra::ledger::latest_checkpoint(&state.store)
                .await?
                .map_or(0, |c| c.size),
            None => head,
        };
        if behind.is_empty() && signed >= head {
            tracing::info!(
                head,
                waited_ms = started.elapsed().as_millis() as u64,
                "the read models and the ledger caught up with the fill"
            );
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < patience,
            "the read models {behind:?} or the ledger (at {signed}) did not reach {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `amtsbuch bench payments`, as the payments domain module offers it.
pub const BENCH: Bench = Bench {
    command: || {
        PaymentsBench::augment_args(clap::Command::new("payments").about(
            "Callback → status pull → event latency against the provider simulator, and reconciliation of a large bank statement (PostgreSQL or SQLite).",
        ))
    },
    run: |args| {
        Box::pin(async move {
            let bench = PaymentsBench::from_arg_matches(&args)?;
            bench.run().await
        })
    },
};

/// Goals of the issue.
const CALLBACK_GOAL_MS: f64 = 30.0;
const RECONCILIATION_GOAL: Duration = Duration::from_secs(10);
const RECONCILIATION_GOAL_LINES: usize = 100_000;

/// What to run: `--callbacks` callbacks, each measured from its arrival to its verified
/// status in the log, beside a status read and a single-event append each; and the
/// reconciliation of a camt.053 of `--lines` credits against as many receivables, beside
/// as many single-event appends to new streams, as many at once as the import books.
#[derive(Debug, Clone, clap::Args)]
pub struct PaymentsBench {
    /// `postgres://…` (a scratch schema in that database) or `sqlite:` (a scratch file).
    #[arg(long, env = "AMTSBUCH_DATABASE_URL")]
    pub database_url: String,
    /// A running provider simulator; without it the bench starts
    /// `xbezahldienste-simulator` from the directory of `amtsbuch` as a process of its own.
    #[arg(long)]
    pub simulator_url: Option<String>,
    /// The bearer token the simulator requires.
    #[arg(long, default_value = "bench-token")]
    pub simulator_token: String,
    /// The secret the simulator signs callbacks with.
    #[arg(long, default_value = "bench-secret")]
    pub simulator_secret: String,
    /// Measured callbacks (and baseline status reads and appends).
    #[arg(long, default_value_t = 1_000)]
    pub callbacks: usize,
    /// Bank statement lines reconciled, against as many receivables.
    #[arg(long, default_value_t = 100_000)]
    pub lines: usize,
}

impl PaymentsBench {
    pub async fn run(&self) -> anyhow::Result<String> {
        anyhow::ensure!(
            self.callbacks > 0 && self.lines > 0,
            "--callbacks and --lines must be positive"
        );
        let (simulator, url) = match &self.simulator_url {
            Some(url) => (None, url.clone()),
            None => {
                let (child, url) = self.start_simulator().await?;
                (Some(child), url)
            }
        };
        println!("provider: the simulator at {url}");
        let result = if self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://")
        {
            self.postgres(&url).await
        } else if self.database_url.starts_with("sqlite:") {
            self.sqlite(&url).await
        } else {
            Err(anyhow::anyhow!(
                "unsupported database URL: use postgres://… or sqlite:"
            ))
        };
        if let Some(mut child) = simulator {
            let _ = child.kill().await;
        }
        result
    }

    /// `xbezahldienste-simulator` from beside this binary, on a free port; the process
    /// and its URL.
    async fn start_simulator(&self) -> anyhow::Result<(tokio::process::Child, String)> {
        use tokio::io::AsyncBufReadExt;
        let binary = std::env::current_exe()?.with_file_name("xbezahldienste-simulator");
        let mut child = tokio::process::Command::new(&binary)
            .args([
                "--token",
                &self.simulator_token,
                "--callback-secret",
                &self.simulator_secret,
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (build it with the service, or give --simulator-url)",
                    binary.display()
                )
            })?;
        let stdout = child.stdout.take().context("the simulator's output")?;
        let mut first = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut first)
            .await?;
        let url = first
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the simulator said {first:?}"))?
            .to_owned();
        Ok((child, url))
    }

    async fn postgres(&self, simulator: &str) -> anyhow::Result<String> {
        use sqlx::Connection;
        let base: sqlx::postgres::PgConnectOptions =
            self.database_url.parse().context("bad database URL")?;
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
            let store = amtsbuch_infra::PgStore::connect_with(options).await?;
            self.measure(AnyStore::Postgres(store), "postgresql", simulator, &dir)
                .await
        }
        .await;
        sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await?;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn sqlite(&self, simulator: &str) -> anyhow::Result<String> {
        let dir = scratch_dir()?;
        let path = dir.join("bench.db");
        println!(
            "store: sqlite, scratch file {} (removed afterwards)",
            path.display()
        );
        let result = async {
            let store =
                amtsbuch_infra::SqliteStore::open(&format!("sqlite://{}", path.display())).await?;
            self.measure(AnyStore::Sqlite(store), "sqlite", simulator, &dir)
                .await
        }
        .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    /// The service as `serve` runs it (ledger, read models, sealer, provider), in this
    /// process; the figures as the report to print.
    async fn measure(
        &self,
        store: AnyStore,
        name: &str,
        simulator: &str,
        dir: &std::path::Path,
    ) -> anyhow::Result<String> {
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
        let auth = crate::auth::Authenticator::new(crate::auth::AuthConfig {
            dev_key: Some(crate::auth::DevKey::generate()?),
            ..crate::auth::AuthConfig::default()
        })?;
        let mut state = AppState::new(store.clone(), Some(info), Arc::new(auth)).await?;
        state.sealer = Some(amtsbuch_infra::sealer::Sealer::new(
            amtsbuch_infra::vault::KeyVault::new(store.clone(), keyring),
        ));
        let runner = amtsbuch_projections::spawn(store.clone(), crate::domains::projections());
        let provider = Provider::new(super::provider::ProviderConfig {
            name: "sim".into(),
            base_url: simulator.to_owned(),
            originator_id: "amtsbuch".into(),
            endpoint_id: "14612000".into(),
            auth: super::provider::Auth::Bearer(self.simulator_token.clone()),
            callback_secret: self.simulator_secret.as_bytes().to_vec(),
            ca_pem: None,
            timeout: Duration::from_secs(10),
        })?;
        let result = self.figures(&state, &provider, simulator, name).await;
        runner.shutdown().await;
        ledger.abort();
        result
    }

    async fn figures(
        &self,
        state: &AppState,
        provider: &Provider,
        simulator: &str,
        store: &str,
    ) -> anyhow::Result<String> {
        // Warm-up: connections, the key vault, the first checkpoints.
        callback_latency(state, provider, simulator, 20.min(self.callbacks)).await?;
        let callbacks = callback_latency(state, provider, simulator, self.callbacks).await?;
        let baseline = pull_and_append(state, provider, &callbacks.transactions).await?;
        println!("callbacks measured; requesting {} receivables", self.lines);

        let filling_started = Instant::now();
        let mut filling = crate::cli::progress::ProgressLine::new("requesting receivables");
        let mut importing = crate::cli::progress::ProgressLine::new("reconciling lines");
        let mut import_started: Option<Instant> = None;
        let (took, report) = reconciliation_with(
            state,
            self.lines,
            |done, total| {
                let rate = done as f64 / filling_started.elapsed().as_secs_f64().max(1e-9);
                filling.show(done as u64, total as u64, rate);
            },
            |done, total| {
                let started = *import_started.get_or_insert_with(Instant::now);
                let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                importing.show(done as u64, total as u64, rate);
            },
        )
        .await?;
        filling.finish();
        importing.finish();
        anyhow::ensure!(
            report.booked == self.lines,
            "the import booked {} of {} lines: {:?}",
            report.booked,
            self.lines,
            report.unmatched.first()
        );
        let floor = appends_many(state, self.lines).await?;
        let appended = appends(state, self.lines).await?;

        let line = |what: &str, q: &Quantiles, n: usize| {
            format!(
                "{what:<48} n {n:>6}  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                q.p50_ms, q.p99_ms, q.max_ms
            )
        };
        let per_sec = |d: Duration| self.lines as f64 / d.as_secs_f64().max(1e-9);
        let goal_secs = RECONCILIATION_GOAL.as_secs_f64() * self.lines as f64
            / RECONCILIATION_GOAL_LINES as f64;
        Ok([
            format!("store: {store}; provider: the simulator, a separate process"),
            line(
                "callback → status pull → event",
                &callbacks.latency,
                self.callbacks,
            ),
            line(
                "baseline: status read + single-event append",
                &baseline,
                self.callbacks,
            ),
            format!(
                "callback p99 {:.2} ms = {:.2}× the goal of {CALLBACK_GOAL_MS} ms, {:.2}× the baseline p99",
                callbacks.latency.p99_ms,
                callbacks.latency.p99_ms / CALLBACK_GOAL_MS,
                callbacks.latency.p99_ms / baseline.p99_ms.max(1e-9)
            ),
            format!(
                "reconciliation: {} lines against {} receivables in {:.2} s ({:.0} lines/s)",
                self.lines,
                self.lines,
                took.as_secs_f64(),
                per_sec(took)
            ),
            format!(
                "baseline: {} single-event requests to new streams, {} per multi-stream append, {} of those at once: {:.2} s ({:.0}/s)",
                self.lines,
                service::IMPORT_CHUNK_LINES,
                service::IMPORT_IN_FLIGHT,
                floor.as_secs_f64(),
                per_sec(floor)
            ),
            format!(
                "reference: {} single-event appends to new streams, each on its own, {SINGLE_APPENDS_AT_ONCE} at once: {:.2} s ({:.0}/s)",
                self.lines,
                appended.as_secs_f64(),
                per_sec(appended)
            ),
            format!(
                "reconciliation {:.2} s = {:.2}× the goal of {goal_secs:.1} s for {} lines (100,000 in 10 s), {:.2}× the baseline, {:.2}× the single appends",
                took.as_secs_f64(),
                took.as_secs_f64() / goal_secs,
                self.lines,
                took.as_secs_f64() / floor.as_secs_f64().max(1e-9),
                took.as_secs_f64() / appended.as_secs_f64().max(1e-9)
            ),
        ]
        .join("\n"))
    }
}

fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("amtsbuch-bench-{}", Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
