//! The `EventStore` interface and the types that cross it.

use std::future::Future;

use amtsbuch_domain::{
    AppendError, AppendOutcome, AppendRequest, Category, EventRecord, Hash, RecordError,
    RequestPlan, StreamId,
};
use tokio::sync::watch;
use uuid::Uuid;

use crate::tail::LogTail;

/// Largest page any read returns, whatever the caller asks for.
pub const MAX_PAGE: usize = 10_000;

/// An event as read back from the log: the stored bytes and the hashes kept beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: u64,
    /// The RFC 8785 canonical bytes exactly as stored.
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

impl RecordedEvent {
    /// Parse the stored bytes.
    pub fn record(&self) -> Result<EventRecord, RecordError> {
        EventRecord::from_bytes(&self.bytes)
    }
}

/// The last entry of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Position of the last event; 0 for an empty log. Equals the Merkle tree size.
    pub position: u64,
    pub chain_hash: Hash,
}

/// Which way a stream is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Versions `from, from+1, …`.
    Forwards,
    /// Versions `from, from-1, …`; `u64::MAX` starts at the newest event.
    Backwards,
}

/// Errors of the store. Append refusals keep their domain type so callers can tell a
/// version conflict from an outage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error("the event store is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("the event store has shut down")]
    Closed,
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// The audit-proof event store.
///
/// Implementations guarantee: positions are 1-based, gapless and commit-ordered (a reader
/// that saw position N has seen everything below N, now and later); each append is atomic
/// and checked against its expected version (a multi-stream append: each of its requests); a retried append with the same event ids and
/// content returns the original positions; every row carries its leaf and chain hash,
/// computed in the transaction that inserts it.
pub trait EventStore: Clone + Send + Sync + 'static {
    /// Append events to one stream.
    fn append(
        &self,
        request: AppendRequest,
    ) -> impl Future<Output = Result<AppendOutcome, StoreError>> + Send;

    /// Append to many streams in one transaction, each request under its own expected
    /// version. Each request is decided on its own, in order, exactly as if it were
    /// appended alone at that point (a later request sees the versions an earlier accepted
    /// one left; a refused one writes nothing and does not affect the others), and the
    /// answer holds each request's decision in request order. The accepted requests are
    /// committed together, at consecutive positions in request order: all of them, or
    /// (on a `StoreError`) none. A retry of the same requests answers the original
    /// positions as duplicates. Refused as a whole (`AppendError::Invalid`) above
    /// `MAX_EVENTS_PER_APPEND_MANY` events in all; no requests, no decisions.
    ///
    /// For work that books many aggregates at once (an import): one request through the
    /// writer, one transaction, instead of one append per aggregate.
    fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> impl Future<Output = Result<Vec<RequestPlan>, StoreError>> + Send;

    /// Read up to `limit` events of a stream starting at version `from` (inclusive).
    fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Read up to `limit` events of the global log with position greater than `after`.
    fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// Read up to `limit` events of a category with position greater than `after`.
    fn read_category(
        &self,
        category: &Category,
        after: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordedEvent>, StoreError>> + Send;

    /// The event with this id, if any.
    fn event_by_id(
        &self,
        id: Uuid,
    ) -> impl Future<Output = Result<Option<RecordedEvent>, StoreError>> + Send;

    /// The current head of the log, read from the database.
    fn head(&self) -> impl Future<Output = Result<Head, StoreError>> + Send;

    /// A cheap round trip to the database, for readiness checks.
    fn ping(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Receives the highest position known to be committed, whenever it grows (by this
    /// process or, where the adapter can tell, by others). Subscriptions wait on it.
    fn head_watch(&self) -> watch::Receiver<u64>;

    /// The process's one reader of the log's newest events (`tail`), for everything that
    /// follows the log; `None` (the default) where the store has none, and followers read
    /// the store themselves.
    fn tail(&self) -> Option<LogTail> {
        None
    }
}

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(crate) fn to_hash(position: u64, what: &str, bytes: &[u8]) -> Result<Hash, StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt {
        position,
        reason: format!("{what} has {} bytes, expected 32", bytes.len()),
    })
}

pub(crate) fn clamp_limit(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE)
}
