//! Leader election among processes on one PostgreSQL database, by session advisory lock.
//!
//! Some background tasks must run once per database however many `amtsbuch` processes
//! share it: the ledger signer and the NATS relay. Each such task holds a session-level
//! advisory lock, keyed by the schema and the task's name, on a connection of its own that
//! is detached from the pool, so that no other query ever borrows it and the pool never
//! recycles it. The lock lives exactly as long as that connection: when the process ends or
//! the connection breaks, PostgreSQL releases it and a standby takes over. SQLite needs none
//! of this, since one file belongs to one process.

use std::time::Duration;

use sqlx::postgres::{PgConnection, PgPool};

/// The longest a liveness check of the lock's connection may take before the lock counts
/// as lost; a half-open TCP connection would otherwise keep a task believing it leads.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// A held advisory lock. Dropping it closes its connection, which releases the lock.
#[derive(Debug)]
pub(crate) struct AdvisoryLock {
    conn: PgConnection,
}

impl AdvisoryLock {
    /// Wait until this process holds the lock `name` of the current schema, trying again
    /// every `standby` while another process holds it.
    pub(crate) async fn acquire(
        pool: &PgPool,
        name: &str,
        standby: Duration,
    ) -> Result<Self, sqlx::Error> {
        let mut conn = pool.acquire().await?.detach();
        loop {
            let got: bool = sqlx::query_scalar(
                "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.' || $1))",
            )
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
            if got {
                return Ok(Self { conn });
            }
            tokio::time::sleep(standby).await;
        }
    }

    /// Whether the lock is still held: its connection still answers. When it does not,
    /// PostgreSQL has released (or is about to release) the lock to someone else.
    pub(crate) async fn check(&mut self) -> Result<(), String> {
        match tokio::time::timeout(
            CHECK_TIMEOUT,
            sqlx::query("SELECT 1").execute(&mut self.conn),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "the lock's connection did not answer within {CHECK_TIMEOUT:?}"
            )),
        }
    }
}
