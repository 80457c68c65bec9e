//! Leases: which process does a job that must run at most once per database.
//!
//! Some background work (the ledger task, the relay, each projection, the GDPR sweeper) must
//! run in exactly one process of those sharing a database, with stand-by processes taking
//! over when the holder dies. On PostgreSQL a lease is a session-level advisory lock. All
//! leases of one store share one session of their own, outside every pool (`LeaseSession`):
//! a lock lives exactly as long as that session, so when the holding process dies or loses
//! its connection the server releases every lease it held and a stand-by can take them.
//! Nothing has to expire or be renewed, and a node spends one connection on all its leases
//! however many jobs it runs. On SQLite one file belongs to one process, so a lease only
//! has to keep two tasks of this process apart; a process-wide registry of held names per
//! file does that (the PostgreSQL session keeps such a registry too, because a session
//! re-enters its own advisory locks).
//!
//! A holder must stop before anybody else can start. The server releases the locks the
//! moment the session ends (a restart, a terminated backend), so the holder has to notice
//! that quickly: the session is pinged every `CHECK_EVERY` while it holds a lease, and a
//! ping that fails or takes longer than `PING_TIMEOUT` ends the session (closing it, so the
//! server lets go of its locks too) and marks every lease of it lost. Jobs watch
//! `Lease::lost` beside their work and check `Lease::is_held` before each step that others
//! would see. A new holder, in turn, waits `TAKEOVER_GRACE` after the lock is granted —
//! longer than a previous holder can take to notice — before it reports the lease as taken,
//! whenever a previous holder may still be at work: when this process saw the lock held by
//! another session (it takes the lease over), or when the server started less than the
//! grace ago (a restart ended every session, the holder's too). A lease taken on a server
//! that has been up for a while and was free at the first attempt — a node starting — is
//! used at once. So two holders never work at once as long as a process is not frozen for
//! longer than the grace (and a holder's backend is not terminated by hand at the moment
//! another node starts); the work guarded by a lease must still be safe if that happens (the
//! ledger's forward-only state update, the relay's expected stream sequence, the
//! projections' checkpoint re-read under a row lock).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::watch;

use crate::store::StoreError;
use crate::AnyStore;

/// How often a session that holds leases is pinged.
const CHECK_EVERY: Duration = Duration::from_millis(250);
/// A ping (or a lock statement, or opening the session) that takes longer counts as a lost
/// session.
const PING_TIMEOUT: Duration = Duration::from_millis(750);
/// How long a holder can take at most to notice that its session is gone.
pub const NOTICE_WITHIN: Duration = Duration::from_millis(250 + 750);
/// How long a new holder waits after its lock was granted before it starts: a previous
/// holder whose session ended has noticed by then, with half a second to spare for
/// stopping what it was doing.
pub const TAKEOVER_GRACE: Duration = Duration::from_millis(250 + 750 + 500);

/// Names held by this process, per SQLite file.
static HELD: LazyLock<Mutex<HashSet<(PathBuf, String)>>> =
    LazyLock::new(|| Mutex::new(HashSet::new()));

/// A held lease; dropping it releases it.
#[derive(Debug)]
pub struct Lease {
    name: String,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Postgres {
        session: Arc<LeaseSession>,
        /// The session the lock was granted on; the lease is lost once it ends.
        generation: u64,
        ended: watch::Receiver<Ended>,
        /// Set once `release` unlocked it, so that `Drop` has nothing left to do.
        released: bool,
    },
    /// Held only for its `Drop`, which leaves the registry.
    Sqlite { _entry: Registered },
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
/// Also says whether the server started less than $2 seconds ago.
const TRY_LOCK: &str = "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.' || $1)), \
     clock_timestamp() - pg_postmaster_start_time() < make_interval(secs => $2)";
const UNLOCK: &str = "SELECT pg_advisory_unlock(hashtext(current_schema() || '.' || $1))";

impl Lease {
    /// Take the lease `name` if nobody holds it; `None` if another session (PostgreSQL) or
    /// another task of this process holds it. On PostgreSQL this takes `TAKEOVER_GRACE`
    /// when a previous holder may still be at work (see the module's documentation).
    pub async fn try_acquire(store: &AnyStore, name: &str) -> Result<Option<Lease>, StoreError> {
        match store {
            AnyStore::Postgres(s) => {
                // In a task of its own, so that it runs to the end even if the caller is
                // cancelled: a lock granted to nobody is then dropped with the task's
                // answer, which releases it, instead of staying with the session.
                let session = s.leases().clone();
                let name = name.to_owned();
                tokio::spawn(async move {
                    let Some((generation, ended, takeover)) = session.try_lock(&name).await? else {
                        return Ok(None);
                    };
                    let lease = Lease {
                        name,
                        inner: Inner::Postgres {
                            session,
                            generation,
                            ended,
                            released: false,
                        },
                    };
                    if takeover {
                        tokio::time::sleep(TAKEOVER_GRACE).await;
                        lease.check_held()?;
                    }
                    Ok(Some(lease))
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
        standby: Duration,
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

    /// Whether the lease is still held, as far as the last check of its session (at most
    /// `NOTICE_WITHIN` ago) knows. Costs nothing; check it before each step others see.
    pub fn is_held(&self) -> bool {
        match &self.inner {
            Inner::Postgres {
                generation, ended, ..
            } => ended.borrow().generation < *generation,
            Inner::Sqlite { .. } => true,
        }
    }

    /// `is_held` as a result, with the reason the session ended.
    fn check_held(&self) -> Result<(), StoreError> {
        match &self.inner {
            Inner::Postgres { ended, .. } if !self.is_held() => Err(StoreError::Unavailable(
                format!("lease {} lost: {}", self.name, ended.borrow().reason),
            )),
            _ => Ok(()),
        }
    }

    /// Confirm the lease is still held (`is_held`, with the reason when it is not).
    pub async fn check(&mut self) -> Result<(), StoreError> {
        self.check_held()
    }

    /// Completes once the lease is lost, with the reason; never on SQLite. Select on it
    /// beside the work the lease guards.
    pub async fn lost(&self) -> String {
        match &self.inner {
            Inner::Postgres {
                generation, ended, ..
            } => {
                let mut ended = ended.clone();
                let reason = match ended.wait_for(|e| e.generation >= *generation).await {
                    Ok(e) => e.reason.clone(),
                    Err(_) => "the lease session is gone".to_owned(),
                };
                format!("lease {} lost: {reason}", self.name)
            }
            Inner::Sqlite { .. } => std::future::pending().await,
        }
    }

    /// Release the lease at once.
    pub async fn release(mut self) {
        if let Inner::Postgres {
            session,
            generation,
            released,
            ..
        } = &mut self.inner
        {
            session.unlock(&self.name, *generation).await;
            *released = true;
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Inner::Postgres {
            session,
            generation,
            released: false,
            ..
        } = &self.inner
        {
            // Unlocking needs a round trip; without a runtime (the process is ending) the
            // session ends with it, which releases the lock as well.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let (session, name, generation) =
                    (session.clone(), std::mem::take(&mut self.name), *generation);
                runtime.spawn(async move { session.unlock(&name, generation).await });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The PostgreSQL session that holds a store's leases.

/// The end of a session: every lease granted on `generation` or an earlier one is lost.
#[derive(Debug, Clone)]
struct Ended {
    generation: u64,
    reason: String,
}

/// A granted lock: the session's generation, the watch of ended sessions, and whether a
/// previous holder may still be at work (`TAKEOVER_GRACE` applies).
type Granted = (u64, watch::Receiver<Ended>, bool);

/// The one connection that holds every lease of a `PgStore`, opened when first needed and
/// again after it ended.
#[derive(Debug)]
pub(crate) struct LeaseSession {
    options: PgConnectOptions,
    state: tokio::sync::Mutex<SessionState>,
    ended: watch::Sender<Ended>,
}

#[derive(Debug, Default)]
struct SessionState {
    conn: Option<PgConnection>,
    /// Counts the sessions opened; the current one if `conn` is set.
    generation: u64,
    /// Names locked on the current session.
    held: HashSet<String>,
    /// Names this store found locked by another session at its last attempt.
    seen_held: HashSet<String>,
}

impl LeaseSession {
    /// A session for the database `options` name; it is watched by a task that ends with
    /// the last reference.
    pub(crate) fn new(options: PgConnectOptions) -> Arc<Self> {
        let (ended, _) = watch::channel(Ended {
            generation: 0,
            reason: String::new(),
        });
        let session = Arc::new(Self {
            options,
            state: tokio::sync::Mutex::new(SessionState::default()),
            ended,
        });
        tokio::spawn(watch_session(Arc::downgrade(&session)));
        session
    }

    /// Lock `name` on the session (opening it if needed): its generation, the watch of
    /// ended sessions and whether a previous holder may still be at work if granted, `None`
    /// if another session or a lease of this one holds it.
    async fn try_lock(&self, name: &str) -> Result<Option<Granted>, StoreError> {
        let mut state = self.state.lock().await;
        if state.held.contains(name) {
            return Ok(None);
        }
        if state.conn.is_none() {
            let conn = tokio::time::timeout(PING_TIMEOUT, self.options.connect())
                .await
                .map_err(|_| unavailable("opening the lease session timed out"))??;
            state.conn = Some(conn);
            state.generation += 1;
        }
        let Some(conn) = state.conn.as_mut() else {
            return Err(unavailable("the lease session is not open"));
        };
        let granted = tokio::time::timeout(
            PING_TIMEOUT,
            sqlx::query_as::<_, (bool, bool)>(TRY_LOCK)
                .bind(name)
                .bind(TAKEOVER_GRACE.as_secs_f64())
                .fetch_one(&mut *conn),
        )
        .await;
        match granted {
            Ok(Ok((true, restarted))) => {
                state.held.insert(name.to_owned());
                let seen = state.seen_held.remove(name);
                Ok(Some((
                    state.generation,
                    self.ended.subscribe(),
                    seen || restarted,
                )))
            }
            Ok(Ok((false, _))) => {
                state.seen_held.insert(name.to_owned());
                Ok(None)
            }
            Ok(Err(e)) => {
                let reason = e.to_string();
                self.end(&mut state, &reason);
                Err(unavailable(&reason))
            }
            Err(_) => {
                self.end(&mut state, "the lock statement timed out");
                Err(unavailable("the lock statement timed out"))
            }
        }
    }

    /// Unlock `name` if it is still held on the session of `generation`.
    async fn unlock(&self, name: &str, generation: u64) {
        let mut state = self.state.lock().await;
        if state.generation != generation || !state.held.remove(name) {
            return;
        }
        let Some(conn) = state.conn.as_mut() else {
            return;
        };
        let done =
            tokio::time::timeout(PING_TIMEOUT, sqlx::query(UNLOCK).bind(name).execute(conn)).await;
        if !matches!(done, Ok(Ok(_))) {
            // A lock that may still be held must not outlive its lease: end the session.
            self.end(&mut state, "a lease could not be unlocked");
        }
    }

    /// End the current session: close it, so the server releases its locks at once, and
    /// mark every lease granted on it lost.
    fn end(&self, state: &mut SessionState, reason: &str) {
        state.conn = None;
        state.held.clear();
        let generation = state.generation;
        self.ended.send_if_modified(|e| {
            let newer = e.generation < generation;
            if newer {
                *e = Ended {
                    generation,
                    reason: reason.to_owned(),
                };
            }
            newer
        });
    }
}

/// Ping the session every `CHECK_EVERY` while it holds leases; end it when a ping fails.
async fn watch_session(session: Weak<LeaseSession>) {
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let Some(session) = session.upgrade() else {
            return;
        };
        let mut state = session.state.lock().await;
        if state.held.is_empty() {
            continue;
        }
        let Some(conn) = state.conn.as_mut() else {
            continue;
        };
        let reason = match tokio::time::timeout(PING_TIMEOUT, conn.ping()).await {
            Ok(Ok(())) => continue,
            Ok(Err(e)) => format!("the database session ended: {e}"),
            Err(_) => format!(
                "the database did not answer within {} ms",
                PING_TIMEOUT.as_millis()
            ),
        };
        tracing::warn!(
            leases = ?state.held,
            reason,
            "the session holding this process's leases is gone; their jobs stop"
        );
        session.end(&mut state, &reason);
    }
}

fn unavailable(reason: &str) -> StoreError {
    StoreError::Unavailable(format!("lease session: {reason}"))
}
