//! Rebuilding a read model from the whole log.
//!
//! A rebuild clears the projection's tables and sets its checkpoint to 0 in one
//! transaction; from then on the read model is consistent again (empty, at position 0) and
//! only has to catch up. Who replays depends on the projection's lease: if this process
//! can take it, it replays up to the head as of the start itself, in batches, through the
//! same fenced batch function the runner uses. If a server holds the lease, that server
//! replays: its next batch re-reads the checkpoint under the row lock (or its idle poll
//! does), finds 0 and starts over. The rebuild then only watches the checkpoint and reports
//! progress. While watching it keeps trying the lease, so if the server dies or gives the
//! projection up after a failure, the rebuild carries on by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use amtsbuch_infra::lease::Lease;
use amtsbuch_infra::{AnyStore, EventStore};

use crate::checkpoint;
use crate::db::ReadDb;
use crate::projection::{Projection, ProjectionError};
use crate::runner::{apply_batch, lease_name, restart, Batch};

/// Events per transaction while replaying: larger than the live runner's batches, since a
/// rebuild is about throughput, but small enough that SQLite's write lock is never held
/// for long while the event store wants it.
const REPLAY_BATCH: usize = 1000;
/// How often a rebuild that watches another process reads the checkpoint.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);
/// How often a watching rebuild tries to take the replay over.
const LEASE_RETRY: Duration = Duration::from_secs(2);

/// Who replays the log for a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayer {
    /// The process that called `rebuild`.
    ThisProcess,
    /// The process holding the projection's lease (a running server).
    LeaseHolder,
}

/// How far a rebuild is. Reported after the reset, after every batch (or checkpoint
/// change, when watching), and at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The projection's checkpoint: events of the log applied so far.
    pub done: u64,
    /// The head of the log when the rebuild started; the rebuild ends when `done` reaches it.
    pub total: u64,
    /// Average since the rebuild started.
    pub events_per_sec: f64,
    pub replayer: Replayer,
}

/// Why a rebuild failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebuildError {
    #[error("there is no projection named {name:?}; known projections: {}", known.join(", "))]
    Unknown {
        name: String,
        known: Vec<&'static str>,
    },
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl From<amtsbuch_infra::StoreError> for RebuildError {
    fn from(e: amtsbuch_infra::StoreError) -> Self {
        RebuildError::Projection(e.into())
    }
}

impl From<crate::db::DbError> for RebuildError {
    fn from(e: crate::db::DbError) -> Self {
        RebuildError::Projection(e.into())
    }
}

/// Rebuild the core projection `name` (one of `crate::all()`), reporting progress.
/// Returns the final progress. A domain's projection is rebuilt with [`rebuild_among`].
pub async fn rebuild(
    store: &AnyStore,
    name: &str,
    progress: impl FnMut(Progress) + Send,
) -> Result<Progress, RebuildError> {
    rebuild_among(store, &crate::all(), name, progress).await
}

/// Rebuild `name`, one of `projections`.
pub async fn rebuild_among(
    store: &AnyStore,
    projections: &[Arc<dyn Projection>],
    name: &str,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Progress, RebuildError> {
    let Some(projection) = projections.iter().find(|p| p.name() == name) else {
        return Err(RebuildError::Unknown {
            name: name.to_owned(),
            known: projections.iter().map(|p| p.name()).collect(),
        });
    };
    let projection = &**projection;
    let db = ReadDb::new(store);
    let total = store.head().await?.position;
    let started = Instant::now();
    restart(&db, projection).await?;
    tracing::info!(projection = name, total, "read model cleared; replaying");

    let mut report = |done: u64, replayer: Replayer| {
        let secs = started.elapsed().as_secs_f64();
        #[allow(
            clippy::cast_precision_loss,
            reason = "a rate for people to read; 2^53 events are far away"
        )]
        let events_per_sec = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let p = Progress {
            done,
            total,
            events_per_sec,
            replayer,
        };
        progress(p);
        p
    };

    let lease = lease_name(name);
    let mut held = Lease::try_acquire(store, &lease).await?;
    let mut last_try = Instant::now();
    let mut last_seen = None;
    loop {
        if let Some(lease) = held.take() {
            let result = replay(store, &db, projection, total, &mut report).await;
            lease.release().await;
            return result;
        }
        let done = checkpoint::read(&db, name).await?.unwrap_or(0);
        if last_seen != Some(done) || done >= total {
            last_seen = Some(done);
            let p = report(done, Replayer::LeaseHolder);
            if done >= total {
                return Ok(p);
            }
        }
        tokio::time::sleep(WATCH_INTERVAL).await;
        if last_try.elapsed() >= LEASE_RETRY {
            held = Lease::try_acquire(store, &lease).await?;
            last_try = Instant::now();
        }
    }
}

/// Replay from the stored checkpoint to `total` while holding the lease.
async fn replay(
    store: &AnyStore,
    db: &ReadDb,
    projection: &dyn Projection,
    total: u64,
    report: &mut impl FnMut(u64, Replayer) -> Progress,
) -> Result<Progress, RebuildError> {
    let mut position = checkpoint::read(db, projection.name())
        .await?
        .ok_or_else(|| ProjectionError::CheckpointMissing(projection.name().to_owned()))?;
    let mut last = report(position, Replayer::ThisProcess);
    let skipper = checkpoint::Skipper::direct(db.clone());
    while position < total {
        let events = store.read_all(position, REPLAY_BATCH).await?;
        if events.is_empty() {
            // The head was read before; an empty read below it means the log shrank.
            return Err(ProjectionError::Corrupt {
                position: position + 1,
                reason: format!("the log ends at {position}, below its head {total}"),
            }
            .into());
        }
        let events = events.into_iter().map(Arc::new).collect();
        position = match apply_batch(db, &skipper, projection, position, events).await? {
            Batch::Applied(p) | Batch::Overtaken(p) => p,
        };
        last = report(position, Replayer::ThisProcess);
    }
    Ok(last)
}
