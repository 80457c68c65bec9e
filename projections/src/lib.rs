//! Read models of Amtsbuch and the runner that feeds them from the event log.
//!
//! A projection consumes the global log in position order through
//! `amtsbuch_infra::Subscription` and keeps its read model up to date. The runner with
//! durable checkpoints arrives with the service-API work; this crate holds the interface
//! every read model implements so that domain modules can add their own.

use amtsbuch_infra::RecordedEvent;

/// A read model fed from the log, one event at a time, in position order.
pub trait Projection: Send + 'static {
    /// A stable name: the key of the projection's checkpoint.
    fn name(&self) -> &'static str;

    /// Apply one event. Events the projection does not care about are ignored.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError>;
}

/// Why a projection could not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("event at position {position} could not be applied: {reason}")]
    Apply { position: u64, reason: String },
}
