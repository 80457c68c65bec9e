//! The JSON bodies the API answers with, as types, so that handlers and the OpenAPI
//! document (`/openapi.json`) are derived from the same definitions and cannot drift apart.
//!
//! Requests are parsed by hand in the handlers (see `http.rs` for why); their documented
//! shapes live next to the parsers. Domain newtypes (`StreamId`, `AuthorityId`, …) appear
//! here as strings with the grammar in the description, since the pure domain crate does not
//! depend on the documentation generator.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// Envelope metadata of a stored event.
#[derive(Debug, Serialize, ToSchema)]
pub struct MetadataView {
    pub schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The authority the event is addressed to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    /// The administrative service (LeiKa key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// RFC 3339, UTC, microseconds.
    pub occurred_at: String,
    /// RFC 3339, UTC, microseconds.
    pub recorded_at: String,
}

/// Personal data, encrypted under the data subject's key.
#[derive(Debug, Serialize, ToSchema)]
pub struct SealedView {
    pub subject: String,
    pub key_id: String,
    pub alg: String,
    pub nonce: String,
    pub ciphertext: String,
}

/// A stored event as read endpoints and subscriptions show it. The exact stored bytes are
/// at `/events/{id}/record`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// Global position, 1-based, gapless.
    pub position: u64,
    pub id: Uuid,
    pub stream: String,
    /// Version within the stream, 1-based.
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's payload (canonical JSON). Usually an object, but the log stores any
    /// JSON value it was given, so readers must expect any.
    pub data: Value,
    pub metadata: MetadataView,
    /// Hex SHA-256 RFC 6962 leaf hash of the stored bytes.
    pub leaf_hash: String,
    /// Hex hash-chain value after this event.
    pub chain_hash: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedView>,
}

/// Where an append landed.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppendResult {
    pub stream: String,
    pub first_position: u64,
    pub last_position: u64,
    pub positions: Vec<u64>,
    pub event_ids: Vec<Uuid>,
    /// The stream's version after the append: use it as the next `Expected-Version`.
    pub next_expected_version: u64,
    /// True for a retry of an append already stored: nothing new was written.
    pub duplicate: bool,
}

/// A page of one stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamPage {
    pub stream: String,
    pub events: Vec<EventView>,
    /// The `from` of the next page, absent at the end.
    pub next_from: Option<u64>,
}

/// A page of the global log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub events: Vec<EventView>,
    /// The `after` of the next page.
    pub next_after: u64,
}

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// Readiness: the store answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    pub status: String,
    /// `postgresql` or `sqlite`.
    pub store: String,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    /// 0-based leaf index (= position − 1).
    pub index: u64,
    pub position: u64,
    /// The tree size the proof is against (a signed checkpoint's size).
    pub size: u64,
    /// Base64 leaf hash.
    pub leaf_hash: String,
    /// Base64 hashes, leaf to root.
    pub proof: Vec<String>,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    /// Base64 hashes.
    pub proof: Vec<String>,
}

/// An RFC 9457 problem: every error of this API. The extension members some problem types
/// add are listed as optional properties, so clients can find them here.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProblemDoc {
    /// `urn:amtsbuch:problem:<kind>`, e.g. `urn:amtsbuch:problem:wrong-expected-version`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    /// What happened and what to change.
    pub detail: String,
    /// Extension member of `invalid-body` when the body is JSON but not I-JSON (RFC 7493):
    /// the JSON pointer (RFC 6901) of the offending value — a member whose name occurs
    /// twice in its object, or a number the log would store as another number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pointer: Option<String>,
    /// Extension member of `wrong-expected-version`: the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// Extension member of `wrong-expected-version`: the `Expected-Version` sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<String>,
    /// Extension member of `wrong-expected-version`: the stream's actual version, to retry
    /// with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_version: Option<u64>,
    /// Extension member of `event-id-conflict`: the event id already in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<Uuid>,
    /// Extension member of `not-yet-checkpointed`: the size of the latest checkpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_checkpoint_size: Option<u64>,
    /// Extension member of `retention-hold`: each active hold on the subject
    /// (`hold_id`, `reason`, `source`, `placed_at`, `until`, …), the one ending last first.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub holds: Option<Vec<Value>>,
    /// Extension member of `retention-hold`: when the last of the holds ends (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erasable_from: Option<String>,
    /// Extension member of a refusal that waits for obligations another module holds
    /// (`module::Obligation`): each one not yet settled, `{reference, detail}`, its
    /// `reference` a stream of the holding module's to act on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub obligations: Option<Vec<Value>>,
}

/// One stream of the catalogue (a read model, fed by the `streams` projection).
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamSummaryView {
    pub stream: String,
    pub category: String,
    /// The stream's current version: its number of events.
    pub version: u64,
    pub first_position: u64,
    pub last_position: u64,
    pub last_event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// RFC 3339: when the first event was recorded.
    pub created_at: String,
    /// RFC 3339: when the latest event was recorded.
    pub updated_at: String,
}

/// A page of the stream catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamCatalogue {
    pub streams: Vec<StreamSummaryView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
    /// How far the catalogue has read the log (it may trail the log by a few events).
    pub as_of_position: u64,
}
