//! Short exclusive locks on a key, shared by every process on one database: commands that
//! must not interleave for one key (the commands of one data subject) hold one while they
//! read, decide and append, also when several API nodes serve one PostgreSQL database.
//!
//! On PostgreSQL a lock is a session-level advisory lock in the two-key space
//! (`hashtext(current_schema())`, `hashtext(key)`), which the one-key leases of the relay,
//! the ledger and the projections never use, so a key can never collide with a lease that is
//! held for hours. It is held on a connection of a small pool of its own — holders never take
//! connections the commands themselves need — in one round trip that also sets the wait
//! limit and reads the database's clock. Dropping the lock returns the connection to its
//! pool, which releases every advisory lock of the session before anyone else can use it
//! (`after_release`); a connection that cannot is closed, which releases them too, as does
//! the death of the process. Two keys whose hashes collide merely wait for each other.
//!
//! On SQLite a database file belongs to one process, whose own locks already serialize the
//! commands, so the lock is granted at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use crate::any::AnyStore;
use crate::store::StoreError;

/// Sets the session's wait limit ($2, e.g. `10000ms`), then waits for the lock on `key`
/// ($1) in the current schema, then reads the database's clock. Volatile subqueries in FROM
/// are not flattened: they run innermost first.
const LOCK: &str = "SELECT clock_timestamp() FROM \
     (SELECT pg_advisory_lock(hashtext(current_schema()), hashtext($1)) FROM \
       (SELECT set_config('lock_timeout', $2, false)) AS patience) AS granted";

/// Releases every advisory lock of the session; run whenever a lock connection goes back to
/// its pool.
pub(crate) const UNLOCK_ALL: &str = "SELECT pg_advisory_unlock_all()";

/// An exclusive lock on one key, held until dropped.
#[derive(Debug)]
pub struct SharedLock {
    _held: Option<PoolConnection<Postgres>>,
    granted_at: DateTime<Utc>,
}

impl SharedLock {
    /// Wait until no other holder in any process holds `key`, at most `patience`; then hold
    /// it until the returned value is dropped. Gives up with `StoreError::Unavailable` when
    /// the wait is longer.
    pub async fn acquire(
        store: &AnyStore,
        key: &str,
        patience: Duration,
    ) -> Result<SharedLock, StoreError> {
        let AnyStore::Postgres(store) = store else {
            return Ok(SharedLock {
                _held: None,
                granted_at: Utc::now(),
            });
        };
        let pool = store.lock_pool().clone();
        let key = key.to_owned();
        // In a task of its own, so that it runs to the end even if the caller is cancelled
        // half-way: a lock granted to nobody is then dropped with the task's answer, instead
        // of staying on a connection whose query was abandoned.
        tokio::spawn(async move {
            let mut conn = tokio::time::timeout(patience, pool.acquire())
                .await
                .map_err(|_| busy(&key, patience))??;
            let millis = patience.as_millis().clamp(1, i32::MAX as u128);
            match sqlx::query_scalar(LOCK)
                .bind(&key)
                .bind(format!("{millis}ms"))
                .fetch_one(&mut *conn)
                .await
            {
                Ok(granted_at) => Ok(SharedLock {
                    _held: Some(conn),
                    granted_at,
                }),
                // 55P03 lock_not_available: the holder kept it longer than our patience.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
                    Err(busy(&key, patience))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("lock attempt failed: {e}")))?
    }
}

impl SharedLock {
    /// When the lock was granted: by the database's clock on PostgreSQL, so that holders in
    /// different processes read one clock, in the order they held the lock.
    pub fn granted_at(&self) -> DateTime<Utc> {
        self.granted_at
    }
}

fn busy(key: &str, patience: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "{key} is busy: another command held it for more than {} ms; retry",
        patience.as_millis()
    ))
}
