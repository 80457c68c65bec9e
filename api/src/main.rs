//! The `amtsbuch` command: `serve`, `verify`, `bench`.
//!
//! Flags have environment fallbacks (`AMTSBUCH_*`) so the same binary runs from a shell,
//! a container or a systemd unit. With no flags, `serve` runs the embedded SQLite store
//! under `./data/` on 127.0.0.1:8080 and needs no other service.
//!
//! This file builds the command tree and dispatches; each command's flags and what it does
//! are in `amtsbuch_api::cli`.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use amtsbuch_api::cli::admin::{self, KekCommand, KeygenArgs, ProjectionsCommand, TokenArgs};
use amtsbuch_api::cli::bench::{self, BenchCommand};
use amtsbuch_api::cli::serve::{self, ServeArgs};
use amtsbuch_api::cli::verify::{self, VerifyArgs, VerifyProofArgs};
use amtsbuch_api::domains::MODULES;
use amtsbuch_api::module;

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
    /// Benchmarks that print figures (the domain modules add theirs).
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
    // The domain modules add their flags of `serve` and their `bench` subcommands.
    let matches = module::command_line(Cli::command(), MODULES).get_matches();
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
    let run = async {
        if let Some((bench, args)) = module::bench_asked(&matches, MODULES) {
            println!("{}", (bench.run)(args).await?);
            return Ok(0);
        }
        let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
        dispatch(cli.command, &matches).await
    };
    match runtime.block_on(run) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", amtsbuch_api::cli::error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; returns the process exit code. `matches` hold the domain modules'
/// flags too.
async fn dispatch(command: Command, matches: &clap::ArgMatches) -> anyhow::Result<u8> {
    match command {
        Command::Serve(args) => {
            let serve = matches
                .subcommand_matches("serve")
                .ok_or_else(|| anyhow::anyhow!("serve was called without its flags"))?;
            serve::run(args, serve).await
        }
        Command::Projections { which } => admin::projections(which).await,
        Command::Kek { which } => admin::kek(which).await,
        Command::Token(args) => admin::token(args),
        Command::Keygen(args) => admin::keygen(args),
        Command::Verify(args) => verify::command(args).await,
        Command::VerifyProof(args) => verify::proof_command(args),
        Command::Bench { which } => bench::command(which).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<clap::ArgMatches, clap::Error> {
        module::command_line(Cli::command(), MODULES).try_get_matches_from(args)
    }

    #[test]
    fn the_modules_flags_and_benches_fit_the_command_line() {
        // Clap's own consistency checks (no two flags with one name, …) on the command
        // line with every module's additions.
        module::command_line(Cli::command(), MODULES).debug_assert();
        let serve = parse(&["amtsbuch", "serve"]).expect("serve parses");
        assert!(matches!(
            Cli::from_arg_matches(&serve).map(|c| c.command),
            Ok(Command::Serve(_))
        ));
        let own = parse(&["amtsbuch", "bench", "append"]).expect("bench append parses");
        assert!(module::bench_asked(&own, MODULES).is_none());
        assert!(matches!(
            Cli::from_arg_matches(&own).map(|c| c.command),
            Ok(Command::Bench {
                which: bench::BenchCommand::Append { .. }
            })
        ));
    }
}
