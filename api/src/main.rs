//! The `amtsbuch` command: `serve`, `verify`, `bench`.
//!
//! Flags have environment fallbacks (`AMTSBUCH_*`) so the same binary runs from a shell,
//! a container or a systemd unit. With no flags, `serve` runs the embedded SQLite store
//! under `./data/` on 127.0.0.1:8080 and needs no other service.
//!
//! This file builds the command tree and dispatches; each command's flags and what it does
//! are in `amtsbuch_api::cli`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use amtsbuch_api::cli::admin::{self, KekCommand, KeygenArgs, ProjectionsCommand, TokenArgs};
use amtsbuch_api::cli::bench::{self, BenchCommand};
use amtsbuch_api::cli::serve::{self, ServeArgs};
use amtsbuch_api::cli::verify::{self, VerifyArgs, VerifyProofArgs};

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
    Serve(ServeArgs),
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
    Token(TokenArgs),
    /// Create a signing key for the log: a PKCS#8 private key (mode 0600) and its C2SP vkey.
    Keygen(KeygenArgs),
    /// Verify the log: the stored log in a database (every leaf and chain hash), an export
    /// offline (also every checkpoint's root and signature), or a running server against
    /// the last checkpoint you trusted (rollback and fork detection).
    Verify(VerifyArgs),
    /// Verify a receipt (C2SP tlog-proof from GET /events/{id}/receipt) offline.
    VerifyProof(VerifyProofArgs),
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
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

/// Runs the command; returns the process exit code.
async fn dispatch(command: Command) -> anyhow::Result<u8> {
    match command {
        Command::Serve(args) => serve::run(args).await,
        Command::Projections { which } => admin::projections(which).await,
        Command::Kek { which } => admin::kek(which).await,
        Command::Token(args) => admin::token(args),
        Command::Keygen(args) => admin::keygen(args),
        Command::Verify(args) => verify::command(args).await,
        Command::VerifyProof(args) => verify::proof_command(args),
        Command::Bench { which } => bench::command(which).await,
    }
}
