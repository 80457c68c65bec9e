//! The auditor's offline check of a receipt (a C2SP tlog-proof from
//! `GET /events/{id}/receipt`): one record's inclusion proof against a signed checkpoint,
//! and, when the record's stored bytes are given, that they are the proven leaf.
//!
//! Only the given keys named after the checkpoint's origin are trusted for it; other
//! signatures, such as witness cosignatures, are ignored as the signed-note specification
//! requires, and a trusted key's signature that does not verify rejects the checkpoint.
//! [`verify_receipt`] stops at the first thing that is wrong and says what.

use serde::Deserialize;
use uuid::Uuid;

use crate::chain::{to_hex, Hash};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::export::{hex_hash, key_list, signature_failure, SignatureFailure};
use crate::merkle::{leaf_hash, MerkleError};
use crate::note::{KeyRef, Note, Verifier};
use crate::record::EventRecord;
use crate::tlog_proof::{self, Leaf, TlogProof, TlogProofError};

/// What a verified receipt establishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptSummary {
    /// The log, from the checkpoint (and equal to the trusted keys' name).
    pub origin: String,
    /// The leaf index the proof is for; the record's position is `index + 1`.
    pub index: u64,
    /// The event: from the record when one was given, otherwise from the receipt's
    /// unauthenticated extra data.
    pub event_id: Option<Uuid>,
    /// The leaf hash the proof binds to the signed root.
    pub leaf_hash: Hash,
    /// Whether a record was given and its bytes are the proven leaf. Without one, only
    /// the leaf hash is proven; what record it belongs to is the receipt's word.
    pub record_checked: bool,
    /// The checkpoint the proof leads to.
    pub checkpoint_size: u64,
    pub checkpoint_root: Hash,
    /// The trusted keys whose signatures on the checkpoint verified.
    pub verified_by: Vec<KeyRef>,
}

impl ReceiptSummary {
    /// The record's global position.
    pub fn position(&self) -> u64 {
        self.index + 1
    }
}

/// Why a receipt failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptFailure {
    #[error("not a valid tlog-proof: {0}")]
    Malformed(TlogProofError),
    #[error("the receipt has no extra line naming the leaf hash; pass the record to check it")]
    MissingExtra,
    #[error("the receipt's extra data is not {{\"event_id\",\"leaf_hash\"}} JSON: {0}")]
    MalformedExtra(String),
    #[error("the record is not a valid Amtsbuch record: {0}")]
    RecordUnparseable(String),
    #[error("the record is event {record}, but the receipt is for event {receipt}")]
    EventIdMismatch { receipt: Uuid, record: Uuid },
    #[error("the record is at position {position}, but the receipt proves leaf index {index} (position {})", index + 1)]
    IndexMismatch { index: u64, position: u64 },
    #[error("leaf hash mismatch: the record hashes to {record}, the receipt names {receipt} (the record was changed)")]
    LeafMismatch { receipt: String, record: String },
    #[error("no trusted key: none of the keys is named after the checkpoint's origin {origin:?} (keys given: {trusted})")]
    OriginNotTrusted { origin: String, trusted: String },
    #[error("checkpoint signature: {0}")]
    CheckpointSignature(SignatureFailure),
    #[error("malformed checkpoint: {0}")]
    CheckpointMalformed(String),
    #[error("inclusion proof: the proof does not bind the leaf to the signed root: {0}")]
    Inclusion(MerkleError),
}

/// The receipt's `extra`: which event, and its leaf hash. Unauthenticated; the proof
/// authenticates the leaf hash.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptExtra {
    event_id: Uuid,
    leaf_hash: String,
}

/// Verifies a receipt (a C2SP tlog-proof) against the log keys `verifiers`, for `record`
/// (its stored bytes) if given, otherwise for the leaf hash the receipt names.
pub fn verify_receipt(
    proof_text: &[u8],
    record: Option<&[u8]>,
    verifiers: &[Verifier],
) -> Result<ReceiptSummary, ReceiptFailure> {
    let proof = TlogProof::parse(proof_text).map_err(ReceiptFailure::Malformed)?;
    let extra = proof
        .extra
        .as_deref()
        .map(|bytes| {
            let extra: ReceiptExtra = serde_json::from_slice(bytes)
                .map_err(|e| ReceiptFailure::MalformedExtra(e.to_string()))?;
            let leaf = hex_hash(extra.leaf_hash.as_bytes()).ok_or_else(|| {
                ReceiptFailure::MalformedExtra("leaf_hash is not 64 lowercase hex digits".into())
            })?;
            Ok((extra.event_id, leaf))
        })
        .transpose()?;

    let (leaf, event_id) = match record {
        Some(bytes) => {
            let parsed = EventRecord::from_bytes(bytes)
                .map_err(|e| ReceiptFailure::RecordUnparseable(e.to_string()))?;
            let leaf = leaf_hash(bytes);
            if let Some((receipt_id, receipt_leaf)) = extra {
                if receipt_id != parsed.event_id {
                    return Err(ReceiptFailure::EventIdMismatch {
                        receipt: receipt_id,
                        record: parsed.event_id,
                    });
                }
                if receipt_leaf != leaf {
                    return Err(ReceiptFailure::LeafMismatch {
                        receipt: to_hex(&receipt_leaf),
                        record: to_hex(&leaf),
                    });
                }
            }
            if parsed.position.checked_sub(1) != Some(proof.index) {
                return Err(ReceiptFailure::IndexMismatch {
                    index: proof.index,
                    position: parsed.position,
                });
            }
            (leaf, Some(parsed.event_id))
        }
        None => {
            let (event_id, leaf) = extra.ok_or(ReceiptFailure::MissingExtra)?;
            (leaf, Some(event_id))
        }
    };

    // The origin is read from the unverified checkpoint only to pick the keys; verification
    // then requires that origin, so a checkpoint of another log cannot pass with its keys.
    let origin = Note::parse(proof.checkpoint.as_bytes())
        .map_err(|e| ReceiptFailure::CheckpointSignature(SignatureFailure::Malformed(e)))
        .and_then(|n| {
            Checkpoint::parse(&n.text)
                .map_err(|e| ReceiptFailure::CheckpointMalformed(e.to_string()))
        })?
        .origin;
    let trusted: Vec<Verifier> = verifiers
        .iter()
        .filter(|v| v.name() == origin)
        .cloned()
        .collect();
    if trusted.is_empty() {
        return Err(ReceiptFailure::OriginNotTrusted {
            origin,
            trusted: key_list(verifiers.iter().map(Verifier::key_ref)),
        });
    }
    let verified =
        tlog_proof::verify(&proof, Leaf::Hash(leaf), &trusted, &origin).map_err(|e| match e {
            TlogProofError::Checkpoint(CheckpointError::Note(e)) => {
                ReceiptFailure::CheckpointSignature(signature_failure(
                    e,
                    &proof.checkpoint,
                    &trusted,
                ))
            }
            TlogProofError::Checkpoint(e) => ReceiptFailure::CheckpointMalformed(e.to_string()),
            TlogProofError::Inclusion(e) => ReceiptFailure::Inclusion(e),
            other => ReceiptFailure::Malformed(other),
        })?;
    Ok(ReceiptSummary {
        origin,
        index: verified.index,
        event_id,
        leaf_hash: verified.leaf_hash,
        record_checked: record.is_some(),
        checkpoint_size: verified.checkpoint.size,
        checkpoint_root: verified.checkpoint.root,
        verified_by: verified.verified_by,
    })
}
