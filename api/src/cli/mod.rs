//! The commands of the `amtsbuch` binary: `serve`, which starts the HTTP service and what
//! runs beside it; the verifiers (`verify` of a database, of an export or of a running
//! server; `verify-proof`); the operator's `keygen`, `token`, `kek` and `projections`; the
//! benchmarks; and the progress display of long commands.
//!
//! Each module holds its command's flags (clap `Args`) beside what the command does, so
//! that `main.rs` only builds the command tree and dispatches. The verifiers and
//! benchmarks share nothing with the request path but the core crates: a verifier reads a
//! file or a server's public routes, a benchmark drives a store directly.

pub mod admin;
pub mod bench;
pub mod offline;
pub mod progress;
pub mod remote;
pub mod serve;
pub mod verify;

use anyhow::Context;

use amtsbuch_infra::any::redact;
use amtsbuch_infra::postgres::ConnectionBudget;
use amtsbuch_infra::AnyStore;

async fn open_store(database_url: &str) -> anyhow::Result<AnyStore> {
    open_store_within(database_url, ConnectionBudget::DEFAULT).await
}

/// `open_store`, holding at most `budget` PostgreSQL connections.
async fn open_store_within(
    database_url: &str,
    budget: ConnectionBudget,
) -> anyhow::Result<AnyStore> {
    AnyStore::open_within(database_url, budget)
        .await
        .with_context(|| format!("cannot open the event store at {}", redact(database_url)))
}

/// A verdict's exit code as the process returns it; anything out of range is a failure.
fn exit_code(code: i32) -> u8 {
    u8::try_from(code).unwrap_or(1)
}
