//! `amtsbuch serve`: the HTTP service with everything that runs beside its routes — the
//! ledger task that signs checkpoints, the NATS relay, the read models of the core and of
//! every domain module, the modules' background jobs and the metrics gauges — started from
//! its flags (the modules add theirs, `crate::module::command_line`) and stopped on SIGINT
//! or SIGTERM.
//!
//! With no flags it runs the embedded SQLite store, which creates its own signing key and
//! key-encryption key beside its database file on first start, so a first run needs no
//! other service and no configuration.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use amtsbuch_domain::subject::SubjectPrefix;
use amtsbuch_infra::any::{redact, DEFAULT_DATABASE_URL};
use amtsbuch_infra::ledger::{self, LedgerConfig};
use amtsbuch_infra::postgres::ConnectionBudget;
use amtsbuch_infra::relay::{self, RelayConfig};
use amtsbuch_infra::sealer::Sealer;
use amtsbuch_infra::vault::KeyVault;
use amtsbuch_infra::AnyStore;
use amtsbuch_infra::EventStore;

use crate::auth::{AuthConfig, Authenticator, DevKey, KeySource};
use crate::keys;
use crate::state::{AppState, LedgerInfo, NatsLink};

// The flags of `serve`. (Plain comments on the flag groups: a doc comment would become
// the command's help text.)
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on: IP:PORT, or HOST:PORT (e.g. localhost:8080).
    #[arg(long, env = "AMTSBUCH_LISTEN", default_value = "127.0.0.1:8080")]
    listen: String,
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
    /// The most PostgreSQL connections this node holds (at least 6): the writer, one
    /// session for the leases of its once-per-database jobs, the background pool, subject
    /// locks and reads.
    #[arg(long, env = "AMTSBUCH_DB_CONNECTIONS", default_value_t = ConnectionBudget::DEFAULT.total())]
    db_connections: u32,
    /// Of `--db-connections`, those of the background pool (PostgreSQL): what follows the
    /// log — the read models, the NATS relay, the ledger — reads and writes through it, so
    /// that requests never wait behind it. It gets at most what the budget leaves once the
    /// others have their least; 0 (or a budget of 6) shares the read pool.
    #[arg(long, env = "AMTSBUCH_DB_BACKGROUND_CONNECTIONS", default_value_t = ConnectionBudget::DEFAULT_BACKGROUND)]
    db_background_connections: u32,
    // The domain modules add the flags of their background jobs.
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

/// Serve until SIGINT or SIGTERM, then finish open requests and stop the read models.
/// `matches` are the flags `serve` was given, the domain modules' included.
///
/// Everything that can be wrong with the flags and the files they name is found before
/// anything is created: first the flags themselves, then the given key files are read,
/// then the port is bound, and only then do the development key, the database and the
/// embedded store's own keys come into being. A start that fails leaves nothing behind,
/// and "serving" is logged only once the server serves.
pub async fn run(args: ServeArgs, matches: &clap::ArgMatches) -> anyhow::Result<u8> {
    let ServeArgs {
        listen,
        database_url,
        nats,
        ledger: ledger_args,
        auth: auth_args,
        kek,
        db_connections,
        db_background_connections,
    } = args;
    // The flags, and the files they name, read but never written.
    let addresses = resolve_listen(&listen).await?;
    check_auth(&auth_args, &listen, &addresses)?;
    let relay_config = nats.relay_config()?;
    let budget = connection_budget(
        db_connections,
        &database_url,
        &ledger_args,
        relay_config.is_some(),
    )?
    .with_background(db_background_connections);
    check_database_url(&database_url)?;
    if !amtsbuch_domain::note::is_valid_key_name(&ledger_args.origin) {
        anyhow::bail!(
            "--origin {:?} cannot name the log and its keys: it must be non-empty and contain neither white space nor '+'",
            ledger_args.origin
        );
    }
    let given_keyring = if kek.is_empty() {
        None
    } else {
        Some(amtsbuch_infra::kek::load_keyring(&kek)?)
    };
    let given_signers = ledger_args
        .signing_key
        .iter()
        .map(|p| keys::load(&ledger_args.origin, p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // The port.
    let listener = bind(&listen, &addresses).await?;
    let local = listener.local_addr()?;
    // What the server creates for itself.
    let store = super::open_store_within(&database_url, budget).await?;
    let auth = Arc::new(authenticator(&auth_args)?);
    let signers = if given_signers.is_empty() {
        embedded_signers(&ledger_args, &store, &database_url)?
    } else {
        given_signers
    };
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
    let mut state = AppState::new(store.clone(), ledger, auth).await?;
    state.sealer = sealer(given_keyring, &store, &database_url)?;
    if state.sealer.is_none() {
        tracing::warn!(
            "no key-encryption key configured (--kek): this server refuses personal data"
        );
    }
    let runner = amtsbuch_projections::spawn(store.clone(), crate::domains::projections());
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
    if let Some(tail) = store.tail() {
        state.metrics.gauge_fn(
            "amtsbuch_log_tail_reads",
            "Reads of the log's newest events since start: by the one reader that follows the log for this process (reader), and by the read models, the relay and the ledger, answered from its memory (window) or, when they were behind it, from the database (store).",
            move || {
                let s = tail.stats();
                vec![
                    (vec![("source", "reader".to_owned())], s.batches as f64),
                    (vec![("source", "window".to_owned())], s.from_window as f64),
                    (vec![("source", "store".to_owned())], s.from_store as f64),
                ]
            },
        );
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
            let blocked = handle.blocked();
            state.metrics.gauge_fn(
                "amtsbuch_relay_blocked_position",
                "The log position of an event this node's relay cannot publish (NATS refuses it, e.g. above its max_payload) and is stuck at; 0 while it is not stuck.",
                move || {
                    let at = blocked.borrow().as_ref().map_or(0, |b| b.position);
                    vec![(vec![], at as f64)]
                },
            );
            tracing::info!(stream = %config.stream, prefix = %config.prefix, "relaying events to NATS JetStream");
            state.nats = Some(Arc::new(NatsLink::new(config).watching(&handle)));
            Some(handle)
        }
        None => None,
    };
    let jobs = crate::module::spawn_jobs(&state, crate::domains::MODULES, matches)?;
    tracing::info!(store = store.kind(), database = %redact(&database_url), listen = %local, "amtsbuch serving");
    crate::run(listener, state, shutdown_signal()).await?;
    for job in jobs {
        job.abort();
    }
    runner.shutdown().await;
    tracing::info!("amtsbuch stopped");
    Ok(0)
}

/// The node's PostgreSQL connection budget, refused with what it must cover when too small.
/// The embedded store needs none: its connections are file handles.
fn connection_budget(
    total: u32,
    database_url: &str,
    ledger: &LedgerArgs,
    relays: bool,
) -> anyhow::Result<ConnectionBudget> {
    if !database_url.starts_with("postgres") {
        return Ok(ConnectionBudget::DEFAULT);
    }
    ConnectionBudget::new(total).map_err(|_| {
        let mut jobs = Vec::new();
        if !ledger.signing_key.is_empty() {
            jobs.push("the ledger signer".to_owned());
        }
        if relays {
            jobs.push("the NATS relay".to_owned());
        }
        jobs.push(format!(
            "{} read models",
            crate::domains::projections().len()
        ));
        jobs.push("the domain modules' background jobs".to_owned());
        anyhow::anyhow!(
            "--db-connections {total} cannot cover what this node runs on PostgreSQL: the writer (1), \
             one session for the leases of {} (1), subject locks for domain commands (at least 1) \
             and reads (at least 3, one of which listens for other nodes' commits); give at least {}",
            jobs.join(", "),
            ConnectionBudget::MIN
        )
    })
}

/// The addresses `--listen` names: an IP address with a port, or a host name with a port
/// (`localhost:8080`), resolved; IPv4 first, so that `localhost` serves 127.0.0.1 as the
/// examples use it.
async fn resolve_listen(listen: &str) -> anyhow::Result<Vec<SocketAddr>> {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    let refused = |why: String| {
        anyhow::anyhow!(
            "--listen {listen:?}: {why}; give HOST:PORT, e.g. 127.0.0.1:8080, [::1]:8080 or localhost:8080"
        )
    };
    let Some((host, port)) = listen.rsplit_once(':') else {
        return Err(refused("no port".to_owned()));
    };
    if host.is_empty() {
        return Err(refused("no host".to_owned()));
    }
    if port.parse::<u16>().is_err() {
        return Err(refused(format!("{port:?} is not a port number")));
    }
    let mut addresses: Vec<SocketAddr> = tokio::net::lookup_host(listen)
        .await
        .map_err(|e| refused(format!("cannot resolve {host:?} ({e})")))?
        .collect();
    if addresses.is_empty() {
        return Err(refused(format!("{host:?} resolves to no address")));
    }
    addresses.sort_by_key(|a| (a.is_ipv6(), a.to_string()));
    addresses.dedup();
    Ok(addresses)
}

/// Listen on the first of `addresses` that can be bound.
async fn bind(listen: &str, addresses: &[SocketAddr]) -> anyhow::Result<tokio::net::TcpListener> {
    let mut last = None;
    for addr in addresses {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some((addr, e)),
        }
    }
    match last {
        Some((addr, e)) if e.kind() == std::io::ErrorKind::AddrInUse => Err(anyhow::anyhow!(
            "cannot listen on {addr} (--listen {listen}): the port is taken by another process; stop it or choose another port"
        )),
        Some((addr, e)) => Err(anyhow::Error::new(e)
            .context(format!("cannot listen on {addr} (--listen {listen})"))),
        None => Err(anyhow::anyhow!("--listen {listen} names no address")),
    }
}

/// A database URL `serve` can open, checked before anything is created.
fn check_database_url(database_url: &str) -> anyhow::Result<()> {
    if database_url.starts_with("postgres://")
        || database_url.starts_with("postgresql://")
        || database_url.starts_with("sqlite:")
    {
        return Ok(());
    }
    anyhow::bail!(
        "unsupported database URL {:?} (--database-url): use postgres://… or sqlite://PATH",
        redact(database_url)
    )
}

/// What can be wrong with the token flags, found without creating anything: `--dev` off
/// loopback, no keys at all, key files that cannot be read or used.
fn check_auth(args: &AuthArgs, listen: &str, addresses: &[SocketAddr]) -> anyhow::Result<()> {
    if args.dev {
        if let Some(open) = addresses.iter().find(|a| !a.ip().is_loopback()) {
            anyhow::bail!("--dev accepts tokens anyone with the development key can mint; it is refused on {open} (--listen {listen}), listen on a loopback address or configure --jwks/--jwt-key");
        }
    } else if args.jwks.is_empty() && args.jwt_keys.is_empty() {
        anyhow::bail!("no token keys configured: give the OIDC provider's keys with --jwks FILE or --jwt-key FILE, or start with --dev for local use (tokens from `amtsbuch token`)");
    }
    // An existing development key must be one; a missing one is created after the bind,
    // and a key in memory stands in for it here.
    let dev_key = match args.dev {
        true if args.dev_key.exists() => Some(DevKey::load_or_create(&args.dev_key)?.0),
        true => Some(DevKey::generate()?),
        false => None,
    };
    // Reads the key files; the authenticator that serves is built after the bind.
    Authenticator::new(auth_config(args, dev_key))?;
    Ok(())
}

fn auth_config(args: &AuthArgs, dev_key: Option<DevKey>) -> AuthConfig {
    let mut keys: Vec<KeySource> = args.jwks.iter().cloned().map(KeySource::JwksFile).collect();
    keys.extend(args.jwt_keys.iter().cloned().map(KeySource::PemFile));
    AuthConfig {
        keys,
        issuer: args.jwt_issuer.clone(),
        audience: args.jwt_audience.clone(),
        dev_key,
        ..AuthConfig::default()
    }
}

/// The token verifier `serve` uses: the provider's keys, and with `--dev` the local
/// development key (created if missing). `check_auth` has vetted the flags.
fn authenticator(args: &AuthArgs) -> anyhow::Result<Authenticator> {
    let dev_key = if args.dev {
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
    Ok(Authenticator::new(auth_config(args, dev_key))?)
}

/// The sealer for personal data: the configured key-encryption keys, or on the embedded
/// store a key of its own beside the database file, created on first start.
fn sealer(
    given: Option<amtsbuch_infra::kek::Keyring>,
    store: &AnyStore,
    database_url: &str,
) -> anyhow::Result<Option<Sealer>> {
    let keyring = if let Some(keyring) = given {
        keyring
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

/// Without configured signing keys: on the embedded store a key of its own beside the
/// database file, created (and its vkey printed) on first start; on PostgreSQL none.
fn embedded_signers(
    args: &LedgerArgs,
    store: &AnyStore,
    database_url: &str,
) -> anyhow::Result<Vec<amtsbuch_domain::note::Signer>> {
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
