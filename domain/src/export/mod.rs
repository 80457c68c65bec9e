//! The ledger export (JSON Lines from `GET /ledger/export`) and its offline verification:
//! everything an auditor's verifier does with an export but reading the file, using
//! threads and looking at the clock, which `amtsbuch verify --export` adds.
//!
//! An auditor holds an export and the log's public key(s), and nothing else: no database,
//! no network, no trust in the server. [`ExportReader`] takes the export apart line by
//! line into [`Batch`]es, and [`ExportWalk`] checks them in order: it recomputes every
//! leaf hash from the stored record bytes, the hash chain, the Merkle tree (incrementally,
//! with a `CompactRange`) and what each record says about itself (position, stream
//! version, event id), and checks every signed checkpoint in the export against the tree
//! it has rebuilt. It stops at the first thing that is wrong and says exactly what and
//! where ([`ExportFailure`]), because everything after a broken link is unverifiable.
//! Reading and checking are apart so that a caller can run them on two threads. Receipts,
//! the other thing an auditor checks offline, are `crate::receipt`'s.
//!
//! # Export format (version 1)
//!
//! One JSON object per line:
//!
//! 1. the header `{"kind":"amtsbuch-export","version":1,"origin":…,"from":F,"to":T}`;
//! 2. if F > 1, `{"kind":"start","size":F-1,"chain_hash":hex,"compact_range":[b64…]}`, the
//!    Merkle compact range and chain hash after position F − 1;
//! 3. records in position order, `{"kind":"record","position":p,"record":b64,
//!    "leaf_hash":hex,"chain_hash":hex}`, where `record` holds the stored canonical bytes;
//! 4. after the record at position n, any checkpoint of tree size n,
//!    `{"kind":"checkpoint","size":n,"note":"<signed note>"}` (a checkpoint of size F − 1 may
//!    follow the start line).
//!
//! Member order within a line is free (the server writes them sorted).
//!
//! # Keys
//!
//! The log signs with keys named after its origin (`sign_checkpoint` insists), so only the
//! given keys whose name is the export's origin are trusted for it; other signatures on a
//! checkpoint, such as witness cosignatures, are ignored as the signed-note specification
//! requires, and a trusted key's signature that does not verify rejects the checkpoint.
//!
//! # What a partial export (F > 1) can and cannot show
//!
//! The start line is unauthenticated until a checkpoint's root, computed on top of its
//! compact range, matches; an export without any checkpoint proves nothing about the log,
//! and the summary counts such events as uncovered. The start chain hash is never covered
//! by a checkpoint (checkpoints sign Merkle roots, not the chain), so in a partial export the
//! chain is only checked for internal consistency. Streams that began before F are picked
//! up at whatever version they first show, and an event id is only compared with the ids in
//! the export.
//!
//! # Speed
//!
//! The target is a million events per second on two cores, close to what the hashing alone
//! costs (a leaf, a chain link and on average one tree node per event). So nothing on the
//! path of a record line allocates or parses more than it must:
//!
//! - a record line is taken apart where it lies in the input's buffer by a scanner that
//!   accepts only the plain shape the server writes, decoding the base64 straight into a
//!   reused buffer as it finds the string's end (`base64::decode_json_string`; anything
//!   else goes to `serde_json` and the strict decoders, which also word the error);
//! - the record bytes are checked by a walk over the one canonical layout
//!   `EventRecord::to_bytes` writes, which borrows what the checks need and validates the
//!   rest, and falls back to `EventRecord::from_bytes` for anything else, so that exactly
//!   the records `ChainVerifier` accepts are accepted;
//! - the reader computes each record's leaf hash, so that with the reader and the walk on
//!   two threads, the hashing is shared between them.

mod facts;
mod lines;
mod scan;
mod walk;

use std::fmt;
use std::time::Duration;

use uuid::Uuid;

use crate::chain::Hash;
use crate::checkpoint::Checkpoint;
use crate::note::{self, KeyRef, Note, NoteError, Verifier};

pub use lines::{Batch, ExportReader};
pub(crate) use scan::hex_hash;
pub use walk::ExportWalk;

/// The `kind` of the first line of every export.
pub const EXPORT_KIND: &str = "amtsbuch-export";

/// The export format version this verifier reads.
pub const EXPORT_VERSION: u64 = 1;

/// The longest line accepted. A record is at most an append body (1 MiB) and a checkpoint
/// at most 100 signature lines; a longer line can only be an attempt to exhaust memory.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

/// A checkpoint as the summary reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMark {
    /// The tree size the checkpoint signs.
    pub size: u64,
    /// Its root hash, base64 as in the note.
    pub root_b64: String,
}

/// What a successfully verified export establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The log the export is of (the header's origin, which every checkpoint matched).
    pub origin: String,
    /// The first position in the export.
    pub from: u64,
    /// Records verified.
    pub events: u64,
    /// Checkpoints verified.
    pub checkpoints: u64,
    /// The position of the last record, which is also the tree size.
    pub head_position: u64,
    /// The chain hash after the last record.
    pub head_chain_hash: Hash,
    /// The Merkle root of the tree after the last record. It is signed only if
    /// `uncovered_events` is zero.
    pub head_root: Hash,
    /// The last checkpoint (a verified export always has one that covers a record of it).
    pub last_checkpoint: Option<CheckpointMark>,
    /// Records after the last checkpoint. Their bytes and links are consistent, but no
    /// signature vouches for them yet: a warning, not a failure. An export without any
    /// checkpoint over its records fails (`ExportReason::Unsigned`).
    pub uncovered_events: u64,
    /// Wall-clock time of the verification.
    pub elapsed: Duration,
}

impl ExportSummary {
    /// Verification speed.
    pub fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The first thing wrong with an export, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ExportFailure {
    /// The log position concerned: the record's, or for a checkpoint line the tree size at
    /// that point. `None` for the header and start lines.
    pub position: Option<u64>,
    /// The 1-based line number (one past the last line for a truncated export).
    pub line: u64,
    pub reason: ExportReason,
}

impl fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(
                f,
                "at position {position} (line {}): {}",
                self.line, self.reason
            ),
            None => write!(f, "at line {}: {}", self.line, self.reason),
        }
    }
}

/// Why an export failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportReason {
    // Each message starts with the words the auditor's guide (docs/AUDITOR.md) lists, so a
    // failure can be looked up there.
    #[error("read error: the export could not be read: {0}")]
    Read(String),
    #[error("malformed line: {0}")]
    MalformedLine(String),
    #[error("header missing: the export does not start with an {EXPORT_KIND:?} line: {found}")]
    HeaderMissing { found: String },
    #[error("unsupported version: export format version {version} (this verifier reads version {EXPORT_VERSION})")]
    UnsupportedVersion { version: u64 },
    #[error("invalid header: {0}")]
    HeaderInvalid(String),
    #[error("no trusted key: none of the keys is named after the export's origin {origin:?} (keys given: {trusted})")]
    OriginNotTrusted { origin: String, trusted: String },
    #[error("start line missing: the export starts at position {from}, so line 2 must hold the tree state after position {}", from - 1)]
    StartMissing { from: u64 },
    #[error("invalid start line: {0}")]
    StartInvalid(String),
    #[error("position gap: expected position {expected} next, found {found} (entries are missing or out of order)")]
    PositionGap { expected: u64, found: u64 },
    #[error("position out of order: expected position {expected} next, found {found} (entries are out of order or repeated)")]
    PositionReorder { expected: u64, found: u64 },
    #[error("leaf hash mismatch: the export says {stored}, the record hashes to {computed} (the record or its leaf hash was changed)")]
    LeafMismatch { stored: String, computed: String },
    #[error("chain hash mismatch: the export says {stored}, the recomputed chain is {computed} (an earlier entry was changed, dropped or reordered, or the chain hash was changed)")]
    ChainMismatch { stored: String, computed: String },
    #[error("unparseable record: not a valid Amtsbuch record: {0}")]
    RecordUnparseable(String),
    #[error("duplicate event id: {event_id} occurs a second time (an event was appended again)")]
    DuplicateEventId { event_id: Uuid },
    #[error("position field mismatch: the record says position {in_record}, but it is at position {stored}")]
    PositionField { in_record: u64, stored: u64 },
    #[error(
        "stream version gap: stream {stream} expected version {expected}, the record says {found}"
    )]
    StreamVersion {
        stream: String,
        expected: u64,
        found: u64,
    },
    #[error("checkpoint size mismatch: the line says size {line_size}, the signed checkpoint says {note_size}")]
    CheckpointSizeField { line_size: u64, note_size: u64 },
    #[error("checkpoint size mismatch: a checkpoint of size {checkpoint_size} where the tree has {tree_size} leaves (a checkpoint must follow the record at its size)")]
    CheckpointSizeMismatch {
        tree_size: u64,
        checkpoint_size: u64,
    },
    #[error("checkpoint signature: {0}")]
    CheckpointSignature(SignatureFailure),
    #[error("malformed checkpoint: {0}")]
    CheckpointMalformed(String),
    #[error(
        "origin mismatch: the checkpoint is for origin {found:?}, the export for {expected:?}"
    )]
    OriginMismatch { expected: String, found: String },
    #[error("root mismatch at checkpoint {size}: the signed root is {signed}, the records give {computed} (records were changed and rehashed, or the start line is false)")]
    RootMismatch {
        size: u64,
        signed: String,
        computed: String,
    },
    #[error("fork: two validly signed checkpoints of size {size} have different roots; the log showed different histories. First (line {first_line}):\n{first_note}Second:\n{second_note}")]
    Fork {
        size: u64,
        first_line: u64,
        first_note: String,
        second_note: String,
    },
    #[error("rollback: a checkpoint of size {size} after one of size {previous_size}; a log never shrinks")]
    Rollback { previous_size: u64, size: u64 },
    #[error("duplicate checkpoint: the checkpoint of size {size} appears twice")]
    DuplicateCheckpoint { size: u64 },
    #[error(
        "truncated: the export ends after position {last}, but its header says it runs to {to}"
    )]
    Truncated { to: u64, last: u64 },
    #[error("trailing data: a record after position {to}, where the header says the export ends")]
    TrailingData { to: u64 },
    #[error("no signed checkpoint: none covers the export's {events} events, so nothing vouches for them (export a range that reaches a checkpoint; by default the export ends at the latest one)")]
    Unsigned { events: u64 },
}

/// Why a signed note (a checkpoint) is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureFailure {
    #[error("the signature of trusted key {key} does not verify (the checkpoint or its signature was changed)")]
    BadSignature { key: KeyRef },
    #[error("no trusted key: no signature from a trusted key (signed by: {signers}; trusted: {trusted})")]
    NoTrustedKey { signers: String, trusted: String },
    #[error("the signed note is malformed: {0}")]
    Malformed(NoteError),
}

/// Why a checkpoint note could not be opened.
pub(crate) enum Opened {
    Signature(SignatureFailure),
    Malformed(String),
}

/// Opens a signed checkpoint with `trusted` (the keys named after the log's origin):
/// unknown keys are ignored, a trusted key's bad signature rejects the note, and at least
/// one trusted signature must verify (C2SP signed-note rules, as in `note::open`).
pub(crate) fn open_trusted(text: &str, trusted: &[Verifier]) -> Result<Checkpoint, Opened> {
    let verified = note::open(text.as_bytes(), trusted)
        .map_err(|e| Opened::Signature(signature_failure(e, text, trusted)))?;
    Checkpoint::parse(verified.text()).map_err(|e| Opened::Malformed(e.to_string()))
}

/// What went wrong with a note's signatures, naming who signed it and who is trusted.
pub(crate) fn signature_failure(
    error: NoteError,
    text: &str,
    trusted: &[Verifier],
) -> SignatureFailure {
    match error {
        NoteError::BadSignature { name, key_id } => SignatureFailure::BadSignature {
            key: KeyRef { name, key_id },
        },
        NoteError::NoVerifiedSignature => SignatureFailure::NoTrustedKey {
            // The note parsed, or `open` would have said so; list who did sign it.
            signers: Note::parse(text.as_bytes()).map_or_else(
                |_| "?".into(),
                |n| key_list(n.signatures.iter().map(|s| s.key_ref())),
            ),
            trusted: key_list(trusted.iter().map(Verifier::key_ref)),
        },
        other => SignatureFailure::Malformed(other),
    }
}

/// Keys as the verdicts name them (`<name>+<key id>`, comma-separated), or `none`.
pub fn key_list(keys: impl Iterator<Item = KeyRef>) -> String {
    let keys: Vec<String> = keys.map(|k| k.to_string()).collect();
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}
