//! `amtsbuch verify --database-url URL`: walk the stored log and check every link.
//!
//! Opens the database read-only (`ReadOnlyLog`: no file is created, nothing migrated), reads
//! the log in position order, recomputes each leaf hash from the stored bytes and each
//! chain hash from its predecessor (`ChainVerifier`), and finally checks that the head row
//! agrees with the last entry. It reports the first bad position and why; everything after
//! it cannot be trusted. A database without a log, or with an empty one, is refused: there
//! is nothing to vouch for, and "ok" would suggest otherwise.
//!
//! The `verify` command's flags are here too; with `--export` it hands over to
//! [`super::offline`], with `--url` to [`super::remote`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;

use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::verify::{ChainVerifier, VerifyError};
use amtsbuch_infra::any::{redact, DEFAULT_DATABASE_URL};
use amtsbuch_infra::{
    AnyStore, EventStore, Head, PgStore, ReadOnlyLog, RecordedEvent, SqliteStore, StoreError,
};

// The flags of `verify`. (Plain comments on the flag groups: a doc comment would become
// the command's help text.)
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
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
}

// The flags of `verify-proof`.
#[derive(Debug, clap::Args)]
pub struct VerifyProofArgs {
    /// The receipt file.
    file: PathBuf,
    /// The log's verifier key file(s).
    #[arg(long = "key", value_name = "VKEY", required = true)]
    keys: Vec<PathBuf>,
    /// The record's stored bytes (GET /events/{id}/record), to check the record itself.
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
}

/// `amtsbuch verify`: a running server with `--url` (and `--state`), else an export with
/// `--export`, else the database. Returns the exit code.
pub async fn command(args: VerifyArgs) -> anyhow::Result<u8> {
    let code = match args {
        VerifyArgs {
            url: Some(url),
            keys,
            state: Some(state),
            token,
            ..
        } => {
            tokio::task::spawn_blocking(move || {
                super::remote::run(&url, &keys, &state, token.as_deref())
            })
            .await??
        }
        VerifyArgs {
            export: Some(export),
            keys,
            ..
        } => {
            tokio::task::spawn_blocking(move || super::offline::run_export_cli(&export, &keys))
                .await??
        }
        VerifyArgs { database_url, .. } => {
            let log = ReadOnlyLog::open(&database_url)
                .await
                .map_err(|e| match e {
                    // The reason alone: "unavailable" would be wrong for a missing file.
                    StoreError::Unavailable(reason) => anyhow::anyhow!(reason),
                    other => other.into(),
                })
                .with_context(|| format!("cannot verify the log at {}", redact(&database_url)))?;
            if log.head().await?.position == 0 && log.read_all(0, 1).await?.is_empty() {
                anyhow::bail!(
                    "the log at {} is empty: there is nothing to verify",
                    redact(&database_url)
                );
            }
            run(&log).await?
        }
    };
    Ok(super::exit_code(code))
}

/// `amtsbuch verify-proof`. Returns the exit code.
pub fn proof_command(args: VerifyProofArgs) -> anyhow::Result<u8> {
    let VerifyProofArgs { file, keys, record } = args;
    let code = super::offline::run_receipt_cli(&file, &keys, record.as_deref())?;
    Ok(super::exit_code(code))
}

const PAGE: usize = 5000;

/// The result of a walk over the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        events: u64,
        head: String,
    },
    Broken(VerifyError),
    /// The head row disagrees with the entries (e.g. entries were removed at the end).
    HeadMismatch {
        events: u64,
        head_position: u64,
        detail: String,
    },
}

/// What a walk over the log reads: the head row and the events in position order.
pub trait LogSource: Sync {
    fn head(&self) -> impl std::future::Future<Output = Result<Head, StoreError>> + Send;
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl std::future::Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;
}

/// A log opened read-only: what `amtsbuch verify` walks.
impl LogSource for ReadOnlyLog {
    async fn head(&self) -> Result<Head, StoreError> {
        ReadOnlyLog::head(self).await
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        ReadOnlyLog::read_all(self, after, limit).await
    }
}

/// The running stores, for checks of a log while it is written (tests do).
macro_rules! store_source {
    ($($store:ty),*) => {$(
        impl LogSource for $store {
            async fn head(&self) -> Result<Head, StoreError> {
                EventStore::head(self).await
            }

            async fn read_all(
                &self,
                after: u64,
                limit: usize,
            ) -> Result<Vec<RecordedEvent>, StoreError> {
                EventStore::read_all(self, after, limit).await
            }
        }
    )*};
}

store_source!(AnyStore, PgStore, SqliteStore);

/// Walk the whole log. `progress` is called with the number of events checked so far.
pub async fn verify_store<S: LogSource>(
    store: &S,
    mut progress: impl FnMut(u64, u64),
) -> Result<Verdict, StoreError> {
    let head = store.head().await?;
    let mut verifier = ChainVerifier::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, PAGE).await?;
        if page.is_empty() {
            break;
        }
        for e in &page {
            if let Err(err) = verifier.check(
                e.position,
                &e.bytes,
                Some(&e.leaf_hash),
                Some(&e.chain_hash),
            ) {
                return Ok(Verdict::Broken(err));
            }
            after = e.position;
        }
        progress(verifier.count(), head.position);
    }
    let events = verifier.count();
    // Appends that commit during the walk move the head past what we read; only a head
    // behind the entries, or a different chain at the same size, is a violation.
    if head.position > events {
        return Ok(Verdict::HeadMismatch {
            events,
            head_position: head.position,
            detail: format!("the head says {} events but only {events} are stored (entries at the end were removed)", head.position),
        });
    }
    if head.position == events && head.chain_hash != verifier.head() {
        return Ok(Verdict::HeadMismatch {
            events,
            head_position: head.position,
            detail: format!(
                "the head chain hash {} differs from the recomputed {}",
                to_hex(&head.chain_hash),
                to_hex(&verifier.head())
            ),
        });
    }
    Ok(Verdict::Intact {
        events,
        head: to_hex(&verifier.head()),
    })
}

/// The CLI command. Returns the process exit code.
pub async fn run<S: LogSource>(store: &S) -> Result<i32, StoreError> {
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let verdict = verify_store(store, |done, total| {
        if tty {
            let mut err = std::io::stderr();
            let _ = write!(err, "\rverifying: {done}/{total} events");
            let _ = err.flush();
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    let secs = started.elapsed().as_secs_f64();
    match verdict {
        Verdict::Intact { events, head } => {
            println!(
                "ok: {events} events verified, chain head {head} ({:.0} events/s)",
                events as f64 / secs.max(1e-9)
            );
            Ok(0)
        }
        Verdict::Broken(e) => {
            println!("FAILED at position {}: {}", e.position, e.violation);
            Ok(1)
        }
        Verdict::HeadMismatch {
            head_position,
            detail,
            ..
        } => {
            println!("FAILED at position {}: {detail}", head_position);
            Ok(1)
        }
    }
}
