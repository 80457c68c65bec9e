//! Leases: which process does a job that must run at most once per database.
//!
//! Some background work (the ledger task, each projection) must run in exactly one process
//! of those sharing a database, with stand-by processes taking over when the holder dies.
//! On PostgreSQL a lease is a session-level advisory lock held on a connection of its own,
//! outside every pool: the lock lives exactly as long as that session, so when the holding
//! process dies or loses its connection the server releases it and a stand-by can take it.
//! Nothing has to expire or be renewed. On SQLite one file belongs to one process, so a
//! lease only has to keep two tasks of this process apart; a process-wide registry of held
//! names per file does that.
//!
//! A lease decides who *should* do the work; it is not a fence. A holder that has lost its
//! session may not notice before its next `check`, so work guarded by a lease must also be
//! safe if, for a moment, two processes do it (the ledger's forward-only state update, the
//! projections' checkpoint re-read under a row lock).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use sqlx::{Connection, PgConnection};

use crate::store::StoreError;
use crate::AnyStore;

/// Names held by this process, per SQLite file.
static HELD: LazyLock<Mutex<HashSet<(PathBuf, String)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// A held lease; dropping it releases it (on PostgreSQL by closing its session).
#[derive(Debug)]
pub struct Lease {
    name: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Postgres(PgConnection),
    /// Held only for its `Drop`, which leaves the registry.
    Sqlite {
        _entry: Registered,
    },
}

/// An entry in `HELD`, removed when dropped.
#[derive(Debug)]
struct Registered(PathBuf, String);

impl Drop for Registered {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        held.remove(&(std::mem::take(&mut self.0), std::mem::take(&mut self.1)));
    }
}

/// The advisory lock key of `name`: one 64-bit key (from `hashtext`) in the current
/// schema, so that tests and tenants in separate schemas do not contend. The ledger's
/// `amtsbuch_ledger` key has this form.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.' || $1))";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext(current_schema() || '.' || $1))";

impl Lease {
    /// Take the lease `name` if nobody holds it; `None` if another session (PostgreSQL) or
    /// another task of this process (SQLite) does.
    pub async fn try_acquire(store: &AnyStore, name: &str) -> Result<Option<Lease>, StoreError> {
        match store {
            AnyStore::Postgres(s) => {
                // In a task of its own, so that it runs to the end even if the caller is
                // cancelled: a lock taken on a pooled connection whose answer nobody
                // received would stay with that connection in the pool, held by nobody.
                // A lease nobody receives is dropped, which closes its session.
                let pool = s.pool().clone();
                let name = name.to_owned();
                tokio::spawn(async move {
                    let mut conn = pool.acquire().await?;
                    let got: bool = sqlx::query_scalar(TRY_LOCK)
                        .bind(&name)
                        .fetch_one(&mut *conn)
                        .await?;
                    if !got {
                        // Nothing is held on the connection, so it can go back to the pool:
                        // stand-bys that retry every few seconds cost no new connections.
                        return Ok(None);
                    }
                    // Detached: the connection never returns to the pool, so the lock
                    // cannot leak to another user of the pool, and dropping it ends the
                    // session.
                    Ok(Some(Lease {
                        name,
                        inner: Inner::Postgres(conn.detach()),
                    }))
                })
                .await
                .map_err(|e| StoreError::Unavailable(format!("lease attempt failed: {e}")))?
            }
            AnyStore::Sqlite(s) => {
                let options = s.pool().connect_options();
                let file = options.get_filename();
                let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
                let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
                if !held.insert((file.clone(), name.to_owned())) {
                    return Ok(None);
                }
                Ok(Some(Lease {
                    name: name.to_owned(),
                    inner: Inner::Sqlite {
                        _entry: Registered(file, name.to_owned()),
                    },
                }))
            }
        }
    }

    /// Wait until this process holds the lease `name`, trying again every `standby` while
    /// another holds it.
    pub async fn acquire(
        store: &AnyStore,
        name: &str,
        standby: std::time::Duration,
    ) -> Result<Lease, StoreError> {
        loop {
            if let Some(lease) = Self::try_acquire(store, name).await? {
                return Ok(lease);
            }
            tokio::time::sleep(standby).await;
        }
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Confirm the lease is still held. On PostgreSQL a session lock can only be lost
    /// together with its session, so a round trip on the lease's own connection is proof;
    /// a detached connection never reconnects behind our back.
    pub async fn check(&mut self) -> Result<(), StoreError> {
        match &mut self.inner {
            Inner::Postgres(conn) => conn
                .ping()
                .await
                .map_err(|e| StoreError::Unavailable(format!("lease {} lost: {e}", self.name))),
            Inner::Sqlite { .. } => Ok(()),
        }
    }

    /// Release the lease at once. Dropping it releases it too, but on PostgreSQL only once
    /// the server notices the closed connection; this unlocks and closes explicitly.
    pub async fn release(self) {
        if let Inner::Postgres(mut conn) = self.inner {
            let _ = sqlx::query(UNLOCK)
                .bind(&self.name)
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    }
}
