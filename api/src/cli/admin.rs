//! The operator's commands around the service: `keygen` (the log's signing key), `token`
//! (development tokens), `kek` (key-encryption keys: generate, re-wrap) and `projections`
//! (rebuild a read model, show how far each has read).
//!
//! Each prints what it did, and where a file holds a secret, how to keep it; none of them
//! needs a running server.

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use amtsbuch_domain::access::{BewirtschafterCode, ModerationScope, RegionKey, Role};
use amtsbuch_domain::{AuthorityId, ServiceKey};
use amtsbuch_infra::any::DEFAULT_DATABASE_URL;

use super::open_existing_store;
use super::progress::ProgressLine;
use crate::auth::{mint, DevKey, TokenRequest};
use crate::keys;

// The flags of `keygen`. (Plain comments on the flag groups: a doc comment would become
// the command's help text.)
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// The log's origin line, e.g. amtsbuch.sachsen.de/log; it names the key.
    #[arg(long)]
    origin: String,
    /// Directory to write amtsbuch-signing.pk8 and amtsbuch.vkey to.
    #[arg(long)]
    out: PathBuf,
}

/// `amtsbuch keygen`.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<u8> {
    let KeygenArgs { origin, out } = args;
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

// The flags of `token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// A role: citizen, authority, fachverfahren, dpo, auditor, operator, cashier, moderator
    /// (repeatable).
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
    /// cashier: a Bewirtschafter code it works for; repeatable.
    #[arg(long = "bewirtschafter")]
    bewirtschafter: Vec<String>,
    /// moderator: what it moderates (an id the moderated domain understands, such as a
    /// procedure's or an authority's); repeatable.
    #[arg(long = "moderates")]
    moderates: Vec<String>,
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
}

/// `amtsbuch token`: prints the token on standard output.
pub fn token(args: TokenArgs) -> anyhow::Result<u8> {
    let TokenArgs {
        roles,
        subject,
        account,
        authority,
        regions,
        services,
        bewirtschafter,
        moderates,
        ttl,
        dev_key,
    } = args;
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
        bewirtschafter: bewirtschafter
            .iter()
            .map(|s| BewirtschafterCode::parse(s))
            .collect::<Result<_, _>>()?,
        moderates: moderates
            .iter()
            .map(|s| ModerationScope::parse(s))
            .collect::<Result<_, _>>()?,
        ttl: Duration::from_secs(ttl),
        audience: crate::auth::DEFAULT_AUDIENCE.to_owned(),
    };
    // A request the server would refuse is refused before the key is created: a stand-in
    // key checks it.
    mint(&DevKey::generate()?, &request, chrono::Utc::now())?;
    let (key, created) = DevKey::load_or_create(&dev_key)?;
    if created {
        eprintln!(
            "created the development token key {}; `amtsbuch serve --dev` run from this directory accepts its tokens",
            dev_key.display()
        );
    }
    println!("{}", mint(&key, &request, chrono::Utc::now())?);
    Ok(0)
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Clear a read model and replay the whole log into it, showing progress. Safe while
    /// servers run: the server that runs the projection replays it, and this follows.
    Rebuild {
        /// The projection, e.g. `streams` (`amtsbuch projections status` lists them).
        name: String,
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Each projection's checkpoint and how many events it trails the log by. Reads only:
    /// the database is opened read-only and nothing is created or migrated.
    Status {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
}

/// `amtsbuch projections rebuild|status`.
pub async fn projections(which: ProjectionsCommand) -> anyhow::Result<u8> {
    match which {
        ProjectionsCommand::Rebuild { name, database_url } => {
            // Every input is checked before the database is touched.
            let known = crate::domains::projections();
            if !known.iter().any(|p| p.name() == name) {
                anyhow::bail!(amtsbuch_projections::RebuildError::Unknown {
                    name,
                    known: known.iter().map(|p| p.name()).collect(),
                });
            }
            let store = open_existing_store(&database_url).await?;
            let mut line = ProgressLine::new(format!("rebuilding {name}"));
            let done = amtsbuch_projections::rebuild_among(&store, &known, &name, |p| {
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
        ProjectionsCommand::Status { database_url } => {
            // Only looks: opened read-only, nothing created or migrated.
            let log = amtsbuch_infra::ReadOnlyLog::open(&database_url).await?;
            let head = log.head().await?.position;
            let stored: std::collections::HashMap<String, u64> =
                log.checkpoints().await?.into_iter().collect();
            println!("log head: {head}");
            for p in crate::domains::projections() {
                let at = stored.get(p.name()).copied().unwrap_or(0);
                println!(
                    "{:<24} at {at:>12}  behind by {}",
                    p.name(),
                    head.saturating_sub(at)
                );
            }
            Ok(0)
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KekCommand {
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

/// `amtsbuch kek generate|rewrap`. A re-wrap that leaves keys under other keys exits 1.
pub async fn kek(which: KekCommand) -> anyhow::Result<u8> {
    match which {
        KekCommand::Generate { out, id } => {
            let id = amtsbuch_domain::seal::KeyId::parse(&id)?;
            amtsbuch_infra::kek::generate_kek_file(&out, &id)?;
            println!(
                "key-encryption key {id} written to {} (mode 0600). Keep it secret and backed up apart from the database: without it no personal data can be read.",
                out.display()
            );
            Ok(0)
        }
        KekCommand::Rewrap { database_url, kek } => {
            // The key file is checked before the database is touched.
            let keyring = amtsbuch_infra::kek::load_keyring(&kek)?;
            let store = open_existing_store(&database_url).await?;
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
    }
}
