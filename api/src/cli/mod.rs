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

/// `open_store` for a command that works on a log that must exist already: the database is
/// first looked at read-only (a SQLite file must exist, and the log's tables must be
/// there), so that a mistyped URL creates or migrates nothing.
async fn open_existing_store(database_url: &str) -> anyhow::Result<AnyStore> {
    amtsbuch_infra::ReadOnlyLog::open(database_url)
        .await
        .with_context(|| format!("no event store at {}", redact(database_url)))?;
    open_store(database_url).await
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

/// An error as the command line prints it: the message and each cause after a colon, except
/// a cause whose text the message already carries (an error that shows its source in its
/// own text, `thiserror`'s `"…: {0}"` with `#[from]`, would otherwise print it twice).
pub fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_text;

    #[derive(Debug, thiserror::Error)]
    #[error("the token would be refused: {0}")]
    struct Outer(#[from] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("role citizen requires `account`")]
    struct Inner;

    #[test]
    fn a_cause_the_message_already_shows_is_printed_once() {
        let e = anyhow::Error::new(Outer(Inner)).context("cannot mint");
        assert_eq!(
            error_text(&e),
            "cannot mint: the token would be refused: role citizen requires `account`"
        );
    }

    #[test]
    fn causes_the_message_does_not_show_follow_it() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io).context("cannot read /x");
        assert_eq!(error_text(&e), "cannot read /x: no such file");
    }
}
