//! The `amtsbuch` command: `serve`, `verify`, `bench`.
//!
//! Flags have environment fallbacks (`AMTSBUCH_*`) so the same binary runs from a shell,
//! a container or a systemd unit. With no flags, `serve` runs the embedded SQLite store
//! under `./data/` on 127.0.0.1:8080 and needs no other service.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use std::sync::Arc;

use amtsbuch_api::auth::{mint, AuthConfig, Authenticator, DevKey, KeySource, TokenRequest};
use amtsbuch_api::cli::bench::AppendBench;
use amtsbuch_api::cli::progress::ProgressLine;
use amtsbuch_api::keys;
use amtsbuch_api::ledger_http::LedgerInfo;
use amtsbuch_api::nats_http::NatsLink;
use amtsbuch_api::AppState;
use amtsbuch_domain::access::{RegionKey, Role};
use amtsbuch_domain::subject::SubjectPrefix;
use amtsbuch_domain::{AuthorityId, ServiceKey};
use amtsbuch_infra::any::{redact, DEFAULT_DATABASE_URL};
use amtsbuch_infra::ledger::{self, LedgerConfig};
use amtsbuch_infra::relay::{self, RelayConfig};
use amtsbuch_infra::sealer::Sealer;
use amtsbuch_infra::vault::KeyVault;
use amtsbuch_infra::AnyStore;
use amtsbuch_infra::EventStore;

#[derive(Debug, Parser)]
#[command(
    name = "amtsbuch",
    version,
    about = "Audit-proof event records for Saxony's e-government base components"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve {
        /// Address to listen on.
        #[arg(long, env = "AMTSBUCH_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// postgres://… for PostgreSQL, sqlite://PATH for the embedded store.
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        ledger: LedgerArgs,
        #[command(flatten)]
        auth: AuthArgs,
        /// Key-encryption key file(s) for sealed personal data; the first wraps new data
        /// keys, all unwrap (a rotation). Without one, the embedded store creates
        /// data/amtsbuch-kek beside its database, and a PostgreSQL server refuses personal
        /// data. Create one with `amtsbuch kek generate`.
        #[arg(long = "kek", env = "AMTSBUCH_KEK", value_delimiter = ',')]
        kek: Vec<PathBuf>,
        /// How often expired temporary accounts are erased and expired consents recorded.
        #[arg(long, env = "AMTSBUCH_SWEEP_INTERVAL_SECS", default_value_t = 60)]
        sweep_interval_secs: u64,
    },
    /// Read models: rebuild one from the log, or show how far each has read it.
    Projections {
        #[command(subcommand)]
        which: ProjectionsCommand,
    },
    /// Key-encryption keys for sealed personal data.
    Kek {
        #[command(subcommand)]
        which: KekCommand,
    },
    /// Mint a bearer token with the local development key, for a server started with
    /// --dev. Production tokens come from the OIDC provider.
    Token {
        /// A role: citizen, authority, fachverfahren, dpo, auditor, operator (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// The caller's id (`sub`).
        #[arg(long)]
        subject: String,
        /// citizen: the Servicekonto account the token acts for.
        #[arg(long)]
        account: Option<String>,
        /// authority, fachverfahren: the authority id, e.g. lra-meissen.
        #[arg(long)]
        authority: Option<String>,
        /// authority: a region key (AGS prefix, 2 to 8 digits); repeatable.
        #[arg(long = "region")]
        regions: Vec<String>,
        /// fachverfahren: a service key (LeiKa) it handles; repeatable.
        #[arg(long = "service")]
        services: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// The development key (created if missing); `serve --dev` uses the same file.
        #[arg(
            long,
            env = "AMTSBUCH_DEV_KEY",
            default_value = "data/amtsbuch-dev-token.pk8"
        )]
        dev_key: PathBuf,
    },
    /// Create a signing key for the log: a PKCS#8 private key (mode 0600) and its C2SP vkey.
    Keygen {
        /// The log's origin line, e.g. amtsbuch.sachsen.de/log; it names the key.
        #[arg(long)]
        origin: String,
        /// Directory to write amtsbuch-signing.pk8 and amtsbuch.vkey to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify the log: the stored log in a database (every leaf and chain hash), an export
    /// offline (also every checkpoint's root and signature), or a running server against
    /// the last checkpoint you trusted (rollback and fork detection).
    Verify {
        /// Walk the stored log in this database (the default when no --export or --url).
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// Verify an export file (from GET /ledger/export) offline.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// Check a running server's latest checkpoint against --state.
        #[arg(long, value_name = "URL", requires = "state")]
        url: Option<String>,
        /// The log's verifier key file(s) (vkey per line); needed with --export and --url.
        #[arg(long = "key", value_name = "VKEY")]
        keys: Vec<PathBuf>,
        /// With --url: the file holding the last trusted checkpoint (created on first use).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// With --url: the auditor's bearer token.
        #[arg(long, env = "AMTSBUCH_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Verify a receipt (C2SP tlog-proof from GET /events/{id}/receipt) offline.
    VerifyProof {
        /// The receipt file.
        file: PathBuf,
        /// The log's verifier key file(s).
        #[arg(long = "key", value_name = "VKEY", required = true)]
        keys: Vec<PathBuf>,
        /// The record's stored bytes (GET /events/{id}/record), to check the record itself.
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, clap::Args)]
struct LedgerArgs {
    /// The log's origin line in checkpoints; must match the signing keys' name.
    #[arg(long, env = "AMTSBUCH_ORIGIN", default_value = "localhost/amtsbuch")]
    origin: String,
    /// PKCS#8 signing key file(s); several sign each checkpoint during a key rotation.
    /// Without one, the embedded store creates a key beside its database file, and a
    /// PostgreSQL server issues no checkpoints.
    #[arg(long, env = "AMTSBUCH_SIGNING_KEY", value_delimiter = ',')]
    signing_key: Vec<PathBuf>,
    /// Sign a checkpoint at the latest after this many new events.
    #[arg(long, env = "AMTSBUCH_CHECKPOINT_EVERY", default_value_t = 1000)]
    checkpoint_every: u64,
    /// Sign a checkpoint at the latest this many milliseconds after a new event.
    #[arg(long, env = "AMTSBUCH_CHECKPOINT_INTERVAL_MS", default_value_t = 1000)]
    checkpoint_interval_ms: u64,
}

#[derive(Debug, clap::Args)]
struct NatsArgs {
    /// NATS server(s) with JetStream to publish every committed event to (unset: no NATS).
    #[arg(long, env = "AMTSBUCH_NATS_URL")]
    nats_url: Option<String>,
    /// The JetStream stream the relay creates and feeds.
    #[arg(long, env = "AMTSBUCH_NATS_STREAM", default_value = "AMTSBUCH")]
    nats_stream: String,
    /// First subject token(s): events go to <prefix>.<category>.<authority>.<event-type>.<service>.
    #[arg(long, env = "AMTSBUCH_NATS_PREFIX", default_value = "amtsbuch")]
    nats_prefix: String,
    /// How long JetStream de-duplicates by event id, in seconds.
    #[arg(
        long,
        env = "AMTSBUCH_NATS_DUPLICATE_WINDOW_SECS",
        default_value_t = 120
    )]
    nats_duplicate_window_secs: u64,
}

impl NatsArgs {
    fn relay_config(&self) -> anyhow::Result<Option<RelayConfig>> {
        let Some(url) = &self.nats_url else {
            return Ok(None);
        };
        let mut config = RelayConfig::new(url.clone());
        config.stream = self.nats_stream.clone();
        config.prefix = SubjectPrefix::parse(&self.nats_prefix)?;
        config.duplicate_window = Duration::from_secs(self.nats_duplicate_window_secs.max(1));
        config.validate()?;
        Ok(Some(config))
    }
}

#[derive(Debug, clap::Args)]
struct AuthArgs {
    /// Accept tokens minted by `amtsbuch token` with the local development key. For local
    /// use only: refused unless the server listens on a loopback address.
    #[arg(long, env = "AMTSBUCH_DEV")]
    dev: bool,
    /// The development key file (created if missing).
    #[arg(
        long,
        env = "AMTSBUCH_DEV_KEY",
        default_value = "data/amtsbuch-dev-token.pk8"
    )]
    dev_key: PathBuf,
    /// A JSON Web Key Set file with the OIDC provider's token signing keys (repeatable).
    #[arg(long = "jwks", env = "AMTSBUCH_JWKS", value_delimiter = ',')]
    jwks: Vec<PathBuf>,
    /// A PEM public key (SPKI) of the token issuer: RSA, P-256/P-384 or Ed25519 (repeatable).
    #[arg(long = "jwt-key", env = "AMTSBUCH_JWT_KEY", value_delimiter = ',')]
    jwt_keys: Vec<PathBuf>,
    /// The required `iss` of provider tokens (unset: not checked).
    #[arg(long, env = "AMTSBUCH_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The required `aud` of tokens.
    #[arg(long, env = "AMTSBUCH_JWT_AUDIENCE", default_value = "amtsbuch")]
    jwt_audience: String,
}

#[derive(Debug, Subcommand)]
enum ProjectionsCommand {
    /// Clear a read model and replay the whole log into it, showing progress. Safe while
    /// servers run: the server that runs the projection replays it, and this follows.
    Rebuild {
        /// The projection, e.g. `streams` (`amtsbuch projections status` lists them).
        name: String,
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Each projection's checkpoint and how many events it trails the log by.
    Status {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum KekCommand {
    /// Write a new key-encryption key file (mode 0600; never overwrites).
    Generate {
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
        /// The key's id, stored with every data key it wraps (e.g. kek-2026).
        #[arg(long, default_value = "kek-1")]
        id: String,
    },
    /// Re-wrap every live data key under the first --kek (after adding a new key in
    /// front of the old one); afterwards the old key can be destroyed.
    Rewrap {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// The new key first, then the old one(s).
        #[arg(
            long = "kek",
            env = "AMTSBUCH_KEK",
            value_delimiter = ',',
            required = true
        )]
        kek: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Consent replay and disclosure-check latency with a large log (PostgreSQL).
    Gdpr {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL")]
        database_url: String,
        /// Events in the log.
        #[arg(long, default_value_t = 1_000_000)]
        events: usize,
        /// Data subjects with consents.
        #[arg(long, default_value_t = 20_000)]
        subjects: usize,
        /// Timed queries of each kind.
        #[arg(long, default_value_t = 2_000)]
        samples: usize,
    },
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("AMTSBUCH_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Keygen { origin, out } => {
            let (key, vkey_path, vkey) = keys::generate(&origin, &out)?;
            println!(
                "private key: {} (mode 0600; keep it secret, back it up)",
                key.display()
            );
            println!(
                "verifier key: {} (publish it; auditors verify with it)",
                vkey_path.display()
            );
            println!("{vkey}");
            Ok(0)
        }
        Command::Token {
            roles,
            subject,
            account,
            authority,
            regions,
            services,
            ttl,
            dev_key,
        } => {
            let (key, created) = DevKey::load_or_create(&dev_key)?;
            if created {
                eprintln!(
                    "created the development token key {}; `amtsbuch serve --dev` run from this directory accepts its tokens",
                    dev_key.display()
                );
            }
            let request = TokenRequest {
                subject,
                roles: roles
                    .iter()
                    .map(|r| r.parse::<Role>())
                    .collect::<Result<_, _>>()?,
                account,
                authority: authority.as_deref().map(AuthorityId::parse).transpose()?,
                regions: regions
                    .iter()
                    .map(|r| RegionKey::parse(r))
                    .collect::<Result<_, _>>()?,
                services: services
                    .iter()
                    .map(|s| ServiceKey::parse(s))
                    .collect::<Result<_, _>>()?,
                ttl: Duration::from_secs(ttl),
                audience: amtsbuch_api::auth::DEFAULT_AUDIENCE.to_owned(),
            };
            println!("{}", mint(&key, &request, chrono::Utc::now())?);
            Ok(0)
        }
        Command::Serve {
            listen,
            database_url,
            nats,
            ledger: ledger_args,
            auth: auth_args,
            kek,
            sweep_interval_secs,
        } => {
            let auth = Arc::new(authenticator(&auth_args, listen)?);
            let relay_config = nats.relay_config()?;
            let store = AnyStore::open(&database_url).await.with_context(|| {
                format!("cannot open the event store at {}", redact(&database_url))
            })?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let local = listener.local_addr()?;
            let signers = signers(&ledger_args, &store, &database_url)?;
            let ledger = if signers.is_empty() {
                tracing::warn!("no signing key configured (--signing-key): this server issues no checkpoints, receipts or proofs");
                None
            } else {
                let info = LedgerInfo {
                    origin: ledger_args.origin.clone(),
                    vkeys: signers.iter().map(|s| s.vkey()).collect(),
                };
                ledger::spawn(
                    store.clone(),
                    LedgerConfig {
                        origin: ledger_args.origin.clone(),
                        signers,
                        every_events: ledger_args.checkpoint_every.max(1),
                        interval: Duration::from_millis(ledger_args.checkpoint_interval_ms.max(1)),
                    },
                );
                Some(info)
            };
            tracing::info!(store = store.kind(), database = %redact(&database_url), listen = %local, "amtsbuch serving");
            let mut state = AppState::new(store.clone(), ledger, auth).await?;
            state.sealer = sealer(&kek, &store, &database_url)?;
            if state.sealer.is_none() {
                tracing::warn!(
                    "no key-encryption key configured (--kek): this server refuses personal data"
                );
            }
            let runner = amtsbuch_projections::spawn(store.clone(), amtsbuch_projections::all());
            for name in runner.names() {
                if let Some(applied) = runner.applied(name) {
                    let head = store.head_watch();
                    state.metrics.gauge_fn(
                        "amtsbuch_projection_lag_events",
                        "Events of the log a read model has not applied yet, by projection.",
                        move || {
                            let lag = head.borrow().saturating_sub(*applied.borrow());
                            vec![(vec![("projection", name.to_owned())], lag as f64)]
                        },
                    );
                }
            }
            let head = store.head_watch();
            state.metrics.gauge_fn(
                "amtsbuch_log_head_position",
                "Position of the last committed event known to this process.",
                move || vec![(vec![], *head.borrow() as f64)],
            );
            // Kept until shutdown: dropping the handle stops the relay.
            let _relay = match relay_config {
                Some(config) => {
                    let handle = relay::spawn(store.clone(), config.clone())?;
                    let (head, published) = (store.head_watch(), handle.published());
                    let active = handle.active();
                    state.metrics.gauge_fn(
                        "amtsbuch_relay_lag_events",
                        "Committed events not yet acknowledged by NATS JetStream (on the active relay; 0 on standbys).",
                        move || {
                            let lag = if *active.borrow() {
                                head.borrow().saturating_sub(*published.borrow())
                            } else {
                                0
                            };
                            vec![(vec![], lag as f64)]
                        },
                    );
                    tracing::info!(stream = %config.stream, prefix = %config.prefix, "relaying events to NATS JetStream");
                    state.nats = Some(Arc::new(NatsLink::new(config)));
                    Some(handle)
                }
                None => None,
            };
            let sweeper = amtsbuch_api::gdpr::sweeper::spawn(
                state.clone(),
                Duration::from_secs(sweep_interval_secs.max(1)),
            );
            amtsbuch_api::run(listener, state, shutdown_signal()).await?;
            sweeper.abort();
            runner.shutdown().await;
            tracing::info!("amtsbuch stopped");
            Ok(0)
        }
        Command::Projections {
            which: ProjectionsCommand::Rebuild { name, database_url },
        } => {
            let store = open_store(&database_url).await?;
            let mut line = ProgressLine::new(format!("rebuilding {name}"));
            let done = amtsbuch_projections::rebuild(&store, &name, |p| {
                line.show(p.done, p.total, p.events_per_sec)
            })
            .await?;
            line.finish();
            println!(
                "ok: {name} rebuilt from {} events ({:.0} events/s)",
                done.total, done.events_per_sec
            );
            Ok(0)
        }
        Command::Projections {
            which: ProjectionsCommand::Status { database_url },
        } => {
            let store = open_store(&database_url).await?;
            let head = store.head().await?.position;
            let db = amtsbuch_projections::db::ReadDb::new(&store);
            let stored: std::collections::HashMap<String, u64> =
                amtsbuch_projections::checkpoint::all(&db)
                    .await?
                    .into_iter()
                    .collect();
            println!("log head: {head}");
            for p in amtsbuch_projections::all() {
                let at = stored.get(p.name()).copied().unwrap_or(0);
                println!(
                    "{:<24} at {at:>12}  behind by {}",
                    p.name(),
                    head.saturating_sub(at)
                );
            }
            Ok(0)
        }
        Command::Kek {
            which: KekCommand::Generate { out, id },
        } => {
            let id = amtsbuch_domain::seal::KeyId::parse(&id)?;
            amtsbuch_infra::kek::generate_kek_file(&out, &id)?;
            println!(
                "key-encryption key {id} written to {} (mode 0600). Keep it secret and backed up apart from the database: without it no personal data can be read.",
                out.display()
            );
            Ok(0)
        }
        Command::Kek {
            which: KekCommand::Rewrap { database_url, kek },
        } => {
            let store = open_store(&database_url).await?;
            let keyring = amtsbuch_infra::kek::load_keyring(&kek)?;
            let vault = amtsbuch_infra::vault::KeyVault::new(store, keyring);
            let started = std::time::Instant::now();
            let mut line = ProgressLine::new("re-wrapping data keys");
            let report = vault
                .rewrap_all(|r| {
                    let done = r.rewrapped + r.skipped + r.failed + r.already_current;
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
                    line.show(done, r.to_do.max(done), rate)
                })
                .await?;
            line.finish();
            println!(
                "{} keys re-wrapped under {}, {} already were, {} failed; {} live keys remain under other keys",
                report.rewrapped, report.kek_id, report.already_current, report.failed, report.remaining
            );
            Ok(if report.failed == 0 && report.remaining == 0 {
                0
            } else {
                1
            })
        }
        Command::Verify {
            url: Some(url),
            keys,
            state: Some(state),
            token,
            ..
        } => {
            let code = tokio::task::spawn_blocking(move || {
                amtsbuch_api::cli::remote::run(&url, &keys, &state, token.as_deref())
            })
            .await??;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Verify {
            export: Some(export),
            keys,
            ..
        } => {
            let code = tokio::task::spawn_blocking(move || {
                amtsbuch_api::cli::offline::run_export_cli(&export, &keys)
            })
            .await??;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::VerifyProof { file, keys, record } => {
            let code =
                amtsbuch_api::cli::offline::run_receipt_cli(&file, &keys, record.as_deref())?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Verify { database_url, .. } => {
            let store = AnyStore::open(&database_url).await.with_context(|| {
                format!("cannot open the event store at {}", redact(&database_url))
            })?;
            let code = amtsbuch_api::cli::verify::run(&store).await?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Bench {
            which:
                BenchCommand::Gdpr {
                    database_url,
                    events,
                    subjects,
                    samples,
                },
        } => {
            let report = amtsbuch_api::bench_gdpr::GdprBench {
                database_url,
                events,
                subjects,
                samples,
            }
            .run()
            .await?;
            println!("{report}");
            Ok(0)
        }
        Command::Bench {
            which:
                BenchCommand::Append {
                    database_url,
                    writers,
                    events,
                },
        } => {
            let bench = AppendBench {
                database_url,
                writers,
                events,
            };
            let figures = bench.run().await?;
            println!("{}", figures.report(writers));
            Ok(0)
        }
        Command::Bench {
            which:
                BenchCommand::Pipeline {
                    database_url,
                    nats_url,
                    rate,
                    seconds,
                    warmup_seconds,
                    streams,
                },
        } => {
            let bench = amtsbuch_api::cli::bench::PipelineBench {
                database_url,
                nats_url,
                rate,
                duration: Duration::from_secs(seconds),
                warmup: Duration::from_secs(warmup_seconds),
                streams,
            };
            println!("{}", bench.run().await?.report());
            Ok(0)
        }
    }
}

/// The token verifier `serve` uses: the provider's keys, and with `--dev` the local
/// development key.
fn authenticator(args: &AuthArgs, listen: SocketAddr) -> anyhow::Result<Authenticator> {
    let mut keys: Vec<KeySource> = args.jwks.iter().cloned().map(KeySource::JwksFile).collect();
    keys.extend(args.jwt_keys.iter().cloned().map(KeySource::PemFile));
    let dev_key = if args.dev {
        if !listen.ip().is_loopback() {
            anyhow::bail!("--dev accepts tokens anyone with the development key can mint; it is refused on {listen}, listen on a loopback address or configure --jwks/--jwt-key");
        }
        let (key, created) = DevKey::load_or_create(&args.dev_key)?;
        if created {
            println!(
                "created the development token key {}; mint tokens with `amtsbuch token --role … --subject …`",
                args.dev_key.display()
            );
        }
        tracing::warn!("development mode: tokens from `amtsbuch token` are accepted");
        Some(key)
    } else {
        None
    };
    if keys.is_empty() && dev_key.is_none() {
        anyhow::bail!("no token keys configured: give the OIDC provider's keys with --jwks FILE or --jwt-key FILE, or start with --dev for local use (tokens from `amtsbuch token`)");
    }
    Ok(Authenticator::new(AuthConfig {
        keys,
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        dev_key,
        ..AuthConfig::default()
    })?)
}

async fn open_store(database_url: &str) -> anyhow::Result<AnyStore> {
    AnyStore::open(database_url)
        .await
        .with_context(|| format!("cannot open the event store at {}", redact(database_url)))
}

/// The sealer for personal data: the configured key-encryption keys, or on the embedded
/// store a key of its own beside the database file, created on first start.
fn sealer(kek: &[PathBuf], store: &AnyStore, database_url: &str) -> anyhow::Result<Option<Sealer>> {
    let keyring = if !kek.is_empty() {
        amtsbuch_infra::kek::load_keyring(kek)?
    } else if let AnyStore::Sqlite(_) = store {
        let path = embedded_dir(database_url).join("amtsbuch-kek");
        if !path.exists() {
            let id = amtsbuch_domain::seal::KeyId::parse("kek-1")?;
            amtsbuch_infra::kek::generate_kek_file(&path, &id)?;
            println!(
                "created a key-encryption key for personal data: {} (back it up apart from the database)",
                path.display()
            );
        }
        amtsbuch_infra::kek::load_keyring(&[path])?
    } else {
        return Ok(None);
    };
    Ok(Some(Sealer::new(KeyVault::new(store.clone(), keyring))))
}

/// The directory of the embedded store's database file.
fn embedded_dir(database_url: &str) -> PathBuf {
    let file = database_url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    Path::new(file)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// The signing keys `serve` uses: the configured files, or on the embedded store a key of
/// its own beside the database file, created (and its vkey printed) on first start.
fn signers(
    args: &LedgerArgs,
    store: &AnyStore,
    database_url: &str,
) -> anyhow::Result<Vec<amtsbuch_domain::note::Signer>> {
    if !args.signing_key.is_empty() {
        return args
            .signing_key
            .iter()
            .map(|p| keys::load(&args.origin, p))
            .collect();
    }
    let AnyStore::Sqlite(_) = store else {
        return Ok(Vec::new());
    };
    let dir = embedded_dir(database_url);
    let dir = dir.as_path();
    let (signer, created) = keys::embedded(&args.origin, dir)?;
    if created {
        println!(
            "created a signing key for origin {} in {}; its verifier key is:",
            args.origin,
            dir.display()
        );
        println!("{}", signer.vkey());
    }
    Ok(vec![signer])
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
