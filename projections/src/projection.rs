//! The `Projection` trait: what a read model implements to be fed by the runner.
//!
//! The trait is shaped so that a projection is correct by construction:
//!
//! - `apply` gets the runner's transaction and nothing else to write with, and the runner
//!   commits that transaction together with the projection's checkpoint. Every effect of
//!   an event therefore lands exactly once, or not at all, whatever crashes when.
//! - `apply` takes `&self`: a projection keeps no state in memory, only in its tables,
//!   because memory would not roll back with a failed batch or survive a restart.
//! - `tables` names what the projection owns, and the default `reset` clears exactly
//!   those, so a rebuild cannot forget a table. Each table belongs to one projection: the
//!   runner serializes writes per projection (through its checkpoint row), not per table.
//!
//! A projection's tables come from the migrations in `migrations/postgres/` and
//! `migrations/sqlite/`, written in the portable subset `amtsbuch_infra::db` describes.

use amtsbuch_domain::event::{decode, DomainEvent};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::{RecordedEvent, StoreError};
use futures_util::future::BoxFuture;

use crate::db::{DbError, ReadTx};

/// A read model fed from the log, one event at a time, in position order.
///
/// Object-safe: the runner holds `Arc<dyn Projection>`. Implementations write their async
/// bodies as `Box::pin(async move { … })`.
pub trait Projection: Send + Sync + 'static {
    /// A stable name: the key of the projection's checkpoint and lease, and what
    /// `rebuild` is asked for. Renaming a projection makes it start from position 0.
    fn name(&self) -> &'static str;

    /// The tables this projection owns.
    fn tables(&self) -> &'static [&'static str];

    /// Clear the read model for a rebuild, inside the rebuild's transaction (which also sets
    /// the checkpoint to 0). By default deletes every row of every table in `tables`.
    fn reset<'a>(&'a self, tx: &'a mut ReadTx) -> BoxFuture<'a, Result<(), DbError>> {
        Box::pin(async move {
            for table in self.tables() {
                tx.execute(&format!("DELETE FROM {table}"), &[]).await?;
            }
            Ok(())
        })
    }

    /// The stream categories (`consent` of `consent-…`) whose events this projection reads,
    /// or `None` (the default) for every event. The runner does not even parse the events
    /// of other categories — it only moves the checkpoint past them — so a projection that
    /// names its categories must name every one `apply` looks at.
    fn categories(&self) -> Option<&'static [&'static str]> {
        None
    }

    /// With [`categories`](Self::categories): whether the projection also reads every
    /// event that carries sealed personal data, whatever its category.
    fn sealed_too(&self) -> bool {
        false
    }

    /// Apply one event inside the runner's transaction. `record` is `event`'s parsed bytes.
    /// Events the projection does not care about are ignored (return `Ok`). An error rolls
    /// back the whole batch; the runner retries it later.
    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>>;

    /// Apply a batch of consecutive events inside the runner's transaction. The default
    /// applies them one by one with `apply`. Override it only to save round trips on a hot
    /// read model (one statement for the batch instead of one per event, as `streams`
    /// does); the result must equal applying the events one by one.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        batch: &'a [(RecordedEvent, EventRecord)],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for (event, record) in batch {
                self.apply(tx, event, record).await?;
            }
            Ok(())
        })
    }
}

/// The domain event of type `E` that `record` holds, if its stream is one of `E`'s
/// (`is_ours` decides, quietly, so that other streams of the category pass without a
/// word). Events are decoded without a key: personal parts read as `Personal::Erased`, so
/// nothing a projection stores can be personal data.
///
/// A record in such a stream that does not read as an `E` — a client can append anything
/// through the raw log API — is logged and skipped rather than refused: a refusal would
/// stop the projection at that event for good.
pub fn read_event<E: DomainEvent>(
    projection: &'static str,
    is_ours: impl Fn(&StreamId) -> bool,
    event: &RecordedEvent,
    record: &EventRecord,
) -> Option<E> {
    if !is_ours(&record.stream_id) {
        return None;
    }
    match decode::<E>(record, None) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::warn!(
                projection,
                position = event.position,
                stream = %record.stream_id,
                event_type = %record.event_type,
                error = %e,
                "skipping a record that does not read as its domain event"
            );
            None
        }
    }
}

/// Why a projection could not advance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProjectionError {
    /// The projection refused an event.
    #[error("event at position {position} could not be applied: {reason}")]
    Apply { position: u64, reason: String },
    /// A statement on the read model or the checkpoint failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The projection's checkpoint row vanished while it ran (someone deleted it). The
    /// runner's next start treats the projection as new: it clears the tables and replays.
    #[error("the checkpoint of projection {0} has disappeared")]
    CheckpointMissing(String),
    /// The log handed back something a projection cannot be fed with.
    #[error("the log is unreadable at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
}
