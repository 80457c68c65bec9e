//! The `amtsbuch` command: `serve`, `verify`, `bench`.
//!
//! Flags have environment fallbacks (`AMTSBUCH_*`) so the same binary runs from a shell,
//! a container or a systemd unit. With no flags, `serve` runs the embedded SQLite store
//! under `./data/` on 127.0.0.1:8080 and needs no other service.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use amtsbuch_api::bench::AppendBench;
use amtsbuch_infra::any::{redact, DEFAULT_DATABASE_URL};
use amtsbuch_infra::AnyStore;

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
        /// Address to listen on. Authentication is not yet in place, so keep it on loopback.
        #[arg(long, env = "AMTSBUCH_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// postgres://… for PostgreSQL, sqlite://PATH for the embedded store.
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        /// NATS server for event distribution (unset: no NATS).
        #[arg(long, env = "AMTSBUCH_NATS_URL")]
        nats_url: Option<String>,
    },
    /// Walk the stored log and check every leaf and chain hash.
    Verify {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        which: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Concurrent single-event appends with version checks, against the raw insert limit.
    Append {
        #[arg(long, env = "AMTSBUCH_DATABASE_URL", default_value = DEFAULT_DATABASE_URL)]
        database_url: String,
        #[arg(long, default_value_t = 64)]
        writers: usize,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
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
        Command::Serve {
            listen,
            database_url,
            nats_url,
        } => {
            if let Some(url) = nats_url {
                anyhow::bail!(
                    "--nats-url {url}: event distribution over NATS is not part of this build yet; start without it"
                );
            }
            let store = AnyStore::open(&database_url).await.with_context(|| {
                format!("cannot open the event store at {}", redact(&database_url))
            })?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let local = listener.local_addr()?;
            tracing::info!(store = store.kind(), database = %redact(&database_url), listen = %local, "amtsbuch serving");
            amtsbuch_api::run(listener, store, shutdown_signal()).await?;
            tracing::info!("amtsbuch stopped");
            Ok(0)
        }
        Command::Verify { database_url } => {
            let store = AnyStore::open(&database_url).await.with_context(|| {
                format!("cannot open the event store at {}", redact(&database_url))
            })?;
            let code = amtsbuch_api::verify::run(&store).await?;
            Ok(u8::try_from(code).unwrap_or(1))
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
    }
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
