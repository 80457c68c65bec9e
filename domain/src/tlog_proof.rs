//! C2SP tlog proofs (`specs/tlog-proof.md`): the self-contained, offline-verifiable receipt
//! that a record is in the log.
//!
//! A proof bundles the leaf index, the RFC 6962 inclusion proof, optional unauthenticated
//! extra data and the signed checkpoint the proof leads to. A citizen's submission receipt
//! is one of these: anybody holding the log's public key can check it years later with any
//! C2SP implementation, without asking the log. Verification follows the specification's
//! steps: compute the leaf hash, open the checkpoint for the expected origin with the
//! log's keys, then check the inclusion proof against the checkpoint's root. Witness
//! cosignatures (step 3) are not checked yet; they are ignored as unknown signatures.

use crate::base64::{self, Base64Error};
use crate::checkpoint::{open_checkpoint, parse_decimal, Checkpoint, CheckpointError};
use crate::merkle::{self, Hash, MerkleError};
use crate::note::{KeyRef, Note, Verifier};

/// The first line of every proof in this version of the format.
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An inclusion proof in a tree of at most 2^64 - 1 leaves has at most 64 hashes; more
/// lines can only be an attack on the parser's memory.
pub const MAX_PROOF_HASHES: usize = 64;

const EXTRA_PREFIX: &str = "extra ";
const INDEX_PREFIX: &str = "index ";

/// Why a proof was rejected. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    /// Proofs are text.
    #[error("the proof is not valid UTF-8 (at byte offset {offset})")]
    NotUtf8 { offset: usize },
    /// The first line is not `c2sp.org/tlog-proof@v1`.
    #[error("the proof does not start with the line {HEADER:?}")]
    WrongHeader,
    /// The extra data is not valid base64.
    #[error("the extra data is not valid base64: {0}")]
    ExtraEncoding(Base64Error),
    /// The `index` line is missing.
    #[error("line {line}: expected the 'index' line")]
    MissingIndex { line: usize },
    /// The index is not a decimal u64 without leading zeros.
    #[error(
        "line {line}: the index is not a decimal number without leading zeros that fits 64 bits"
    )]
    InvalidIndex { line: usize },
    /// An inclusion proof line is not valid base64.
    #[error("line {line}: the proof hash is not valid base64: {error}")]
    ProofHashEncoding { line: usize, error: Base64Error },
    /// An inclusion proof line does not decode to a 32-byte hash.
    #[error("line {line}: a proof hash must be 32 bytes, got {actual}")]
    ProofHashLength { line: usize, actual: usize },
    /// More proof lines than any tree can need.
    #[error("the inclusion proof has more than {max} hashes")]
    TooManyProofHashes { max: usize },
    /// The proof ends before the blank line and the checkpoint.
    #[error("the proof has no blank line followed by a checkpoint")]
    MissingCheckpoint,
    /// The embedded checkpoint is malformed, untrusted or for another log.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The inclusion proof does not bind the leaf to the checkpoint's root.
    #[error("inclusion proof: {0}")]
    Inclusion(#[from] MerkleError),
}

/// A parsed tlog proof. Nothing in it is trusted until [`verify`] succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque application data from the `extra` line. It is not authenticated: use it
    /// only to find or rebuild the leaf, whose hash the proof then authenticates.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the leaf in the log.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up to the root's child.
    pub inclusion_proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim.
    pub checkpoint: String,
}

impl TlogProof {
    /// The proof in its text form.
    pub fn to_text(&self) -> String {
        let mut out = String::with_capacity(
            HEADER.len() + 64 + 45 * self.inclusion_proof.len() + self.checkpoint.len(),
        );
        out.push_str(HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str(EXTRA_PREFIX);
            out.push_str(&base64::encode(extra));
            out.push('\n');
        }
        out.push_str(INDEX_PREFIX);
        out.push_str(&self.index.to_string());
        out.push('\n');
        for hash in &self.inclusion_proof {
            out.push_str(&base64::encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a proof strictly, including the structure of the embedded checkpoint (but
    /// not its signatures; that is [`verify`]'s job).
    pub fn parse(proof: &[u8]) -> Result<Self, TlogProofError> {
        let text = std::str::from_utf8(proof).map_err(|e| TlogProofError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        let mut lines = Lines {
            rest: text,
            line: 0,
        };

        if lines.next() != Some(HEADER) {
            return Err(TlogProofError::WrongHeader);
        }
        let mut line = lines.next();
        let mut extra = None;
        if let Some(encoded) = line.and_then(|l| l.strip_prefix(EXTRA_PREFIX)) {
            extra = Some(base64::decode(encoded).map_err(TlogProofError::ExtraEncoding)?);
            line = lines.next();
        }
        let index = line
            .and_then(|l| l.strip_prefix(INDEX_PREFIX))
            .ok_or(TlogProofError::MissingIndex { line: lines.line })?;
        let index =
            parse_decimal(index).ok_or(TlogProofError::InvalidIndex { line: lines.line })?;

        let mut inclusion_proof = Vec::new();
        loop {
            match lines.next() {
                None => return Err(TlogProofError::MissingCheckpoint),
                Some("") => break,
                Some(_) if inclusion_proof.len() == MAX_PROOF_HASHES => {
                    return Err(TlogProofError::TooManyProofHashes {
                        max: MAX_PROOF_HASHES,
                    })
                }
                Some(encoded) => inclusion_proof.push(parse_hash(encoded, lines.line)?),
            }
        }

        let checkpoint = lines.rest;
        if checkpoint.is_empty() {
            return Err(TlogProofError::MissingCheckpoint);
        }
        // Reject a malformed checkpoint now rather than at verification, so that a proof
        // that parses is well-formed throughout.
        let note = Note::parse(checkpoint.as_bytes()).map_err(CheckpointError::from)?;
        Checkpoint::parse(&note.text)?;
        Ok(Self {
            extra,
            index,
            inclusion_proof,
            checkpoint: checkpoint.to_owned(),
        })
    }
}

/// Newline-terminated lines with their 1-based numbers; text after the last newline is
/// left in `rest`. `line` is the number of the line last asked for, even when it was
/// missing, so that errors point at the line that should have been there.
struct Lines<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Lines<'a> {
    fn next(&mut self) -> Option<&'a str> {
        self.line += 1;
        let (line, rest) = self.rest.split_once('\n')?;
        self.rest = rest;
        Some(line)
    }
}

fn parse_hash(encoded: &str, line: usize) -> Result<Hash, TlogProofError> {
    let bytes = base64::decode(encoded)
        .map_err(|error| TlogProofError::ProofHashEncoding { line, error })?;
    Hash::try_from(bytes.as_slice()).map_err(|_| TlogProofError::ProofHashLength {
        line,
        actual: bytes.len(),
    })
}

/// The leaf a proof is checked for: its RFC 6962 leaf hash, or the record bytes to hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf<'a> {
    /// A leaf hash computed by the application.
    Hash(Hash),
    /// The logged record bytes; the leaf hash is SHA-256(0x00 || bytes).
    Record(&'a [u8]),
}

impl Leaf<'_> {
    pub fn hash(&self) -> Hash {
        match self {
            Self::Hash(hash) => *hash,
            Self::Record(bytes) => merkle::leaf_hash(bytes),
        }
    }
}

/// What a successfully verified proof establishes: the leaf is at `index` in the tree the
/// log signed as `checkpoint`, with the keys `verified_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    pub index: u64,
    pub leaf_hash: Hash,
    pub checkpoint: Checkpoint,
    pub verified_by: Vec<KeyRef>,
}

/// Verifies `proof` for `leaf` against the log `origin` and its trusted keys.
pub fn verify(
    proof: &TlogProof,
    leaf: Leaf<'_>,
    verifiers: &[Verifier],
    origin: &str,
) -> Result<VerifiedReceipt, TlogProofError> {
    let leaf_hash = leaf.hash();
    let (checkpoint, verified_by) =
        open_checkpoint(proof.checkpoint.as_bytes(), verifiers, origin)?;
    merkle::verify_inclusion(
        proof.index,
        checkpoint.size,
        &leaf_hash,
        &proof.inclusion_proof,
        &checkpoint.root,
    )?;
    Ok(VerifiedReceipt {
        index: proof.index,
        leaf_hash,
        checkpoint,
        verified_by,
    })
}
