//! The pure core of Amtsbuch.
//!
//! Everything here is deterministic computation without I/O: the event record and its
//! canonical bytes (RFC 8785), stream names and expected versions, the hash chain, the
//! planning of an append batch, and the ledger maths (RFC 6962 Merkle trees). Adapters in
//! `amtsbuch-infra` call into this crate; it never calls out. Time and ids are passed in.

pub mod access;
pub mod append;
pub mod applications;
pub mod base64;
pub mod chain;
pub mod checkpoint;
pub mod decider;
pub mod event;
pub mod export;
pub mod gdpr;
pub mod ijson;
pub mod jcs;
pub mod merkle;
pub mod newtype;
pub mod note;
pub mod payments;
pub mod participation;
pub mod receipt;
pub mod record;
pub mod seal;
pub mod stream;
pub mod subject;
#[cfg(test)]
mod test_rng;
pub mod tlog_proof;
pub mod verify;

pub use append::{
    plan_batch, plan_batch_within, AppendError, AppendOutcome, AppendRequest, BatchContext,
    ExistingEvent, NewEvent, PlannedRecord, RequestPlan,
};
pub use chain::{chain_hash, Hash, GENESIS_CHAIN};
pub use decider::Decider;
pub use event::{DomainEvent, Personal, Routing, SubjectId};
pub use record::{EventRecord, RecordError, SealedSection};
pub use stream::{
    AuthorityId, Category, EventType, ExpectedVersion, NameError, ServiceKey, StreamId,
};
