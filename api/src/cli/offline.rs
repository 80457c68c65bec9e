//! The auditor's offline verifier: `amtsbuch verify --export FILE --key VKEY…` and
//! `amtsbuch verify-proof FILE --key VKEY [--record FILE]`.
//!
//! An auditor holds an export (JSON Lines from `GET /ledger/export`) or a receipt (a C2SP
//! tlog-proof from `GET /events/{id}/receipt`) and the log's public key(s), and nothing
//! else: no database, no network, no trust in the server. [`verify_export`] recomputes every
//! leaf hash from the stored record bytes, the hash chain, the Merkle tree (incrementally,
//! with a [`CompactRange`]) and what each record says about itself (position, stream
//! version, event id), and checks every signed checkpoint in the export against the tree it
//! has rebuilt. [`verify_receipt`] checks one record's inclusion proof against a signed
//! checkpoint. Both stop at the first thing that is wrong and say exactly what and where,
//! because everything after a broken link is unverifiable.
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
//! given keys whose name is the export's (or receipt's) origin are trusted for it; other
//! signatures on a checkpoint, such as witness cosignatures, are ignored as the signed-note
//! specification requires, and a trusted key's signature that does not verify rejects the
//! checkpoint.
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
//! - with two or more CPUs, the calling thread reads, decodes and computes leaf hashes
//!   while a second thread chains, builds the tree and checks the records in order.
//!
//! Measured on the 2-vCPU development VM (AMD EPYC with SHA-NI), release build, 200,000
//! records of 512 bytes: about 1.0–1.1 million events per second from memory and 0.95–1.0
//! million from a file, against 1.4 million per second for the bare hashing (leaf, chain
//! and tree) on one core of the same machine; one thread alone does about 560,000. The
//! test `throughput_is_reported` in `api/tests/offline.rs` prints the rate.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use amtsbuch_domain::base64;
use amtsbuch_domain::chain::{chain_hash, to_hex, Hash, GENESIS_CHAIN};
use amtsbuch_domain::checkpoint::{Checkpoint, CheckpointError};
use amtsbuch_domain::merkle::{leaf_hash, CompactRange, MerkleError};
use amtsbuch_domain::note::{self, KeyRef, Note, NoteError, Verifier};
use amtsbuch_domain::record::{format_timestamp, EventRecord};
use amtsbuch_domain::tlog_proof::{self, Leaf, TlogProof, TlogProofError};
use amtsbuch_domain::{EventType, StreamId};
use anyhow::Context;
use serde::de::IgnoredAny;
use serde::Deserialize;
use uuid::Uuid;

/// The `kind` of the first line of every export.
pub const EXPORT_KIND: &str = "amtsbuch-export";

/// The export format version this verifier reads.
pub const EXPORT_VERSION: u64 = 1;

/// The longest line accepted. A record is at most an append body (1 MiB) and a checkpoint
/// at most 100 signature lines; a longer line can only be an attempt to exhaust memory.
pub const MAX_LINE_BYTES: u64 = 16 * 1024 * 1024;

/// Records handed from the reading to the checking thread at a time: enough to make the
/// hand-over cost vanish, small enough that the progress line moves.
const BATCH_RECORDS: usize = 4096;

/// Bytes of decoded records per batch, so that a run of large records stays bounded too.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The most event ids the id set is sized for before any are read.
const MAX_PRESIZED_IDS: usize = 1 << 22;

/// Batches in flight between the threads.
const PIPELINE_DEPTH: usize = 2;

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
    /// The last checkpoint, if any.
    pub last_checkpoint: Option<CheckpointMark>,
    /// Records after the last checkpoint (all of them if there is none). Their bytes and
    /// links are consistent, but no signature vouches for them yet: a warning, not a failure.
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

// ---------------------------------------------------------------------------------------
// Export verification
// ---------------------------------------------------------------------------------------

/// Verifies an export read from `input` against the log keys `verifiers`.
///
/// `progress` is called on the calling thread with the number of records verified so far,
/// every few thousand records and once at the end; a display should throttle itself.
pub fn verify_export(
    mut input: impl BufRead,
    verifiers: &[Verifier],
    mut progress: impl FnMut(u64),
) -> Result<ExportSummary, ExportFailure> {
    let started = Instant::now();
    let mut reader = LineReader::new(&mut input);
    let walk = Walk::begin(&mut reader, verifiers)?;
    let parallel = std::thread::available_parallelism().map_or(1, |n| n.get());
    let walk = if parallel >= 2 {
        run_pipelined(reader, walk, &mut progress)?
    } else {
        run_inline(reader, walk, &mut progress)?
    };
    let summary = walk.finish(started)?;
    progress(summary.events);
    Ok(summary)
}

/// One thread: read a batch, check it, repeat.
fn run_inline<R: BufRead>(
    mut reader: LineReader<R>,
    mut walk: Walk,
    progress: &mut impl FnMut(u64),
) -> Result<Walk, ExportFailure> {
    let mut batch = Batch::default();
    loop {
        let more = reader.fill(&mut batch);
        walk.check_batch(&batch)?;
        progress(walk.events());
        if !more {
            walk.last_line = reader.line;
            return Ok(walk);
        }
        batch.clear();
    }
}

/// Two threads: this one reads, decodes and hashes leaves (the input need not be `Send`);
/// a scoped thread checks batches in order. The result is the same as `run_inline`'s,
/// because every line's outcome, including a malformed line, travels through the batches
/// in order and the checker reports the first.
fn run_pipelined<R: BufRead>(
    mut reader: LineReader<R>,
    walk: Walk,
    progress: &mut impl FnMut(u64),
) -> Result<Walk, ExportFailure> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(PIPELINE_DEPTH);
    let (empty_tx, empty_rx) = mpsc::channel::<Batch>();
    let checked = AtomicU64::new(0);
    std::thread::scope(|scope| {
        let checker = scope.spawn(|| {
            let mut walk = walk;
            for mut batch in full_rx {
                walk.check_batch(&batch)?;
                checked.store(walk.events(), Ordering::Relaxed);
                batch.clear();
                // The reader may have finished already; then the batch is simply dropped.
                let _ = empty_tx.send(batch);
            }
            Ok(walk)
        });
        loop {
            let mut batch = empty_rx.try_recv().unwrap_or_default();
            let more = reader.fill(&mut batch);
            // A closed channel means the checker stopped at a failure, which `join` returns.
            if full_tx.send(batch).is_err() {
                break;
            }
            progress(checked.load(Ordering::Relaxed));
            if !more {
                break;
            }
        }
        drop(full_tx);
        let last_line = reader.line;
        match checker.join() {
            Ok(result) => result.map(|mut walk: Walk| {
                walk.last_line = last_line;
                walk
            }),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The header line's members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderLine {
    // Named here only so that `deny_unknown_fields` admits them: `parse_header` checks
    // them before this struct is read.
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    origin: String,
    from: u64,
    to: u64,
}

/// Every line kind but the header, for the general (slow) path.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
enum OtherLine {
    #[serde(rename = "amtsbuch-export")]
    Header(IgnoredAny),
    #[serde(rename = "start")]
    Start {
        size: u64,
        chain_hash: String,
        compact_range: Vec<String>,
    },
    #[serde(rename = "record")]
    Record {
        position: u64,
        record: String,
        leaf_hash: String,
        chain_hash: String,
    },
    #[serde(rename = "checkpoint")]
    Checkpoint { size: u64, note: String },
}

/// One line's outcome as the reader hands it to the checker.
#[derive(Debug)]
enum Entry {
    Record {
        line: u64,
        position: u64,
        stored_leaf: Hash,
        stored_chain: Hash,
        /// The leaf hash computed from the bytes (on the reading thread, in parallel).
        leaf: Hash,
        /// Where the decoded record bytes are in the batch's buffer.
        bytes: Range<usize>,
    },
    Checkpoint {
        line: u64,
        size: u64,
        note: String,
    },
    /// The line cannot be used; the reader stops after it.
    Bad {
        line: u64,
        position: Option<u64>,
        reason: ExportReason,
    },
}

/// Lines travel between the threads in batches, and batches are recycled, so that the
/// steady state allocates nothing per record.
#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    entries: Vec<Entry>,
}

impl Batch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }
}

/// Reads the export and turns its lines into entries.
struct LineReader<R> {
    input: R,
    /// The current line, on the slow path.
    buf: Vec<u8>,
    /// The number of the line last read (1-based).
    line: u64,
    /// Set after a bad line or the end of input: nothing more is read.
    done: bool,
}

impl<R: BufRead> LineReader<R> {
    fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::with_capacity(4096),
            line: 0,
            done: false,
        }
    }

    /// The next line without its newline, `Ok(None)` at the end of the input.
    fn next_line(&mut self) -> Result<Option<&[u8]>, ExportReason> {
        self.buf.clear();
        let read = (&mut self.input)
            .take(MAX_LINE_BYTES + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| ExportReason::Read(e.to_string()))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
        } else if self.buf.len() as u64 > MAX_LINE_BYTES {
            return Err(ExportReason::MalformedLine(format!(
                "the line is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(Some(&self.buf))
    }

    /// Adds entries to `batch` until it is full; returns whether there may be more.
    fn fill(&mut self, batch: &mut Batch) -> bool {
        while !self.done {
            if batch.entries.len() >= BATCH_RECORDS || batch.bytes.len() >= BATCH_BYTES {
                return true;
            }
            let line_no = self.line + 1;
            if let Some(entry) = self.buffered_record(line_no, &mut batch.bytes) {
                self.line = line_no;
                batch.entries.push(entry);
                continue;
            }
            let entry = match self.next_line() {
                Ok(Some(line)) => parse_entry(line, line_no, &mut batch.bytes),
                Ok(None) => {
                    self.done = true;
                    break;
                }
                Err(reason) => Entry::Bad {
                    line: line_no,
                    position: None,
                    reason,
                },
            };
            if matches!(entry, Entry::Bad { .. }) {
                self.done = true;
            }
            batch.entries.push(entry);
        }
        false
    }

    /// The fast path: a plain record line that lies whole in the input's buffer is taken
    /// from there, without copying the line or searching it for its end first. Anything
    /// else (other kinds of lines, a line across the buffer's end, read errors, the end of
    /// the input) is left to the slow path.
    fn buffered_record(&mut self, line_no: u64, bytes: &mut Vec<u8>) -> Option<Entry> {
        let buf = self.input.fill_buf().ok()?;
        let start = bytes.len();
        let (scanned, end) = scan_record(buf, bytes)?;
        if buf.get(end) != Some(&b'\n') || end as u64 > MAX_LINE_BYTES {
            bytes.truncate(start);
            return None;
        }
        self.input.consume(end + 1);
        Some(scanned.entry(line_no, bytes, start))
    }
}

/// Parses a line after the header and start lines (the slow path). Record bytes are
/// appended to `bytes`.
fn parse_entry(line: &[u8], line_no: u64, bytes: &mut Vec<u8>) -> Entry {
    let bad = |position, reason| Entry::Bad {
        line: line_no,
        position,
        reason,
    };
    let start = bytes.len();
    if let Some((scanned, end)) = scan_record(line, bytes) {
        if end == line.len() {
            return scanned.entry(line_no, bytes, start);
        }
        bytes.truncate(start);
    }
    match serde_json::from_slice::<OtherLine>(line) {
        Ok(OtherLine::Record {
            position,
            record,
            leaf_hash,
            chain_hash,
        }) => {
            let malformed = |what: String| bad(Some(position), ExportReason::MalformedLine(what));
            let Some(stored_leaf) = hex_hash(leaf_hash.as_bytes()) else {
                return malformed("leaf_hash is not 64 lowercase hex digits".into());
            };
            let Some(stored_chain) = hex_hash(chain_hash.as_bytes()) else {
                return malformed("chain_hash is not 64 lowercase hex digits".into());
            };
            match base64::decode(&record) {
                Ok(decoded) => bytes.extend_from_slice(&decoded),
                Err(e) => return malformed(format!("record is not canonical base64: {e}")),
            }
            ScannedRecord {
                position,
                stored_leaf,
                stored_chain,
            }
            .entry(line_no, bytes, start)
        }
        Ok(OtherLine::Checkpoint { size, note }) => Entry::Checkpoint {
            line: line_no,
            size,
            note,
        },
        Ok(OtherLine::Header(_)) => bad(
            None,
            ExportReason::MalformedLine("a second header line".into()),
        ),
        Ok(OtherLine::Start { .. }) => bad(
            None,
            ExportReason::MalformedLine(
                "a start line may only come right after the header of an export that starts after position 1".into(),
            ),
        ),
        Err(e) => bad(None, ExportReason::MalformedLine(e.to_string())),
    }
}

/// A record line taken apart; its record bytes are in the batch's buffer.
#[derive(Debug, Clone, Copy)]
struct ScannedRecord {
    position: u64,
    stored_leaf: Hash,
    stored_chain: Hash,
}

impl ScannedRecord {
    /// The entry for the checker, with the leaf hash of `bytes[start..]` computed here, on
    /// the reading thread, so that the two threads share the hashing.
    fn entry(self, line: u64, bytes: &[u8], start: usize) -> Entry {
        Entry::Record {
            line,
            position: self.position,
            stored_leaf: self.stored_leaf,
            stored_chain: self.stored_chain,
            leaf: leaf_hash(bytes.get(start..).unwrap_or_default()),
            bytes: start..bytes.len(),
        }
    }
}

/// Takes apart a record line at the start of `text`: an object of exactly the members
/// `kind` (`"record"`), `position`, `record`, `leaf_hash` and `chain_hash`, in any order,
/// without white space or escapes, with a plain decimal position, canonical base64 and
/// 64 lowercase hex digits. The record bytes are decoded straight into `out`. Returns the
/// index just after the closing brace.
///
/// Anything else returns `None`, leaving `out` as it was, and goes to `serde_json` and
/// the strict decoders, which decide and explain: this accepts a subset of what the slow
/// path accepts, with the same result, and never refuses a line itself.
fn scan_record(text: &[u8], out: &mut Vec<u8>) -> Option<(ScannedRecord, usize)> {
    let start = out.len();
    let scanned = scan_record_members(text, out);
    if scanned.is_none() {
        out.truncate(start);
    }
    scanned
}

fn scan_record_members(text: &[u8], out: &mut Vec<u8>) -> Option<(ScannedRecord, usize)> {
    let mut s = Scanner { bytes: text, at: 0 };
    s.byte(b'{')?;
    let mut kind = false;
    let mut record = false;
    let mut position = None;
    let mut leaf = None;
    let mut chain = None;
    loop {
        match s.key()? {
            b"kind" if !kind => {
                s.literal(b"\"record\"")?;
                kind = true;
            }
            b"position" if position.is_none() => position = Some(s.integer()?),
            b"record" if !record => {
                s.byte(b'"')?;
                s.at += base64::decode_json_string(s.rest(), out)? + 1;
                record = true;
            }
            b"leaf_hash" if leaf.is_none() => leaf = Some(s.hex_hash()?),
            b"chain_hash" if chain.is_none() => chain = Some(s.hex_hash()?),
            _ => return None,
        }
        match s.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    if !(kind && record) {
        return None;
    }
    let scanned = ScannedRecord {
        position: position?,
        stored_leaf: leaf?,
        stored_chain: chain?,
    };
    Some((scanned, s.at))
}

/// Lowercase hex digit values; 0xff marks everything else.
const HEX: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Lowercase hex of exactly 32 bytes.
fn hex_hash(text: &[u8]) -> Option<Hash> {
    if text.len() != 64 {
        return None;
    }
    let mut hash = [0u8; 32];
    let mut invalid = 0;
    for (out, pair) in hash.iter_mut().zip(text.chunks_exact(2)) {
        let (high, low) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        invalid |= high | low;
        *out = high << 4 | (low & 0x0f);
    }
    // Valid digits are below 16, so one test at the end covers all 64.
    (invalid & 0xf0 == 0).then_some(hash)
}

/// A cursor over JSON text for the fast paths. Every method returns `None` as soon as the
/// text is not of the one plain form it expects.
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.at..).unwrap_or_default()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn byte(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    /// Consumes `want` if the text continues with it.
    fn eat(&mut self, want: &[u8]) -> bool {
        let found = self.rest().starts_with(want);
        if found {
            self.at += want.len();
        }
        found
    }

    fn literal(&mut self, want: &[u8]) -> Option<()> {
        self.eat(want).then_some(())
    }

    /// A member name of lowercase letters and `_` (every name in an export or a record
    /// envelope), and the colon after it.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.byte(b'"')?;
        let rest = self.rest();
        let len = rest
            .iter()
            .take(32)
            .position(|&b| !(b.is_ascii_lowercase() || b == b'_'))?;
        if rest.get(len..len + 2)? != b"\":" {
            return None;
        }
        self.at += len + 2;
        Some(&rest[..len])
    }

    /// A JSON integer without sign, fraction or exponent that fits a u64.
    fn integer(&mut self) -> Option<u64> {
        let start = self.at;
        let mut n: u64 = 0;
        while let Some(b) = self.peek().filter(u8::is_ascii_digit) {
            n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            self.at += 1;
        }
        let digits = self.at - start;
        // JSON forbids leading zeros; "0" itself is fine.
        if digits == 0 || (digits > 1 && self.bytes[start] == b'0') {
            return None;
        }
        Some(n)
    }

    /// A string of exactly 64 lowercase hex digits.
    fn hex_hash(&mut self) -> Option<Hash> {
        self.byte(b'"')?;
        let rest = self.rest();
        if rest.get(64) != Some(&b'"') {
            return None;
        }
        let hash = hex_hash(rest.get(..64)?)?;
        self.at += 65;
        Some(hash)
    }

    /// A string without escapes or control characters; where its contents are.
    fn plain_range(&mut self) -> Option<Range<usize>> {
        self.byte(b'"')?;
        let start = self.at;
        let len = find_string_special(self.rest())?;
        self.at += len;
        self.byte(b'"')?;
        Some(start..start + len)
    }

    fn plain(&mut self) -> Option<()> {
        self.plain_range().map(|_| ())
    }

    /// A UUID in its hyphenated form, as the record writer spells it.
    fn uuid(&mut self) -> Option<Uuid> {
        self.byte(b'"')?;
        let rest = self.rest();
        if rest.get(36) != Some(&b'"') {
            return None;
        }
        // The same parser the record's serde implementation uses.
        let id = Uuid::try_parse_ascii(rest.get(..36)?).ok()?;
        self.at += 37;
        Some(id)
    }

    /// Any JSON value that `serde_json` reads into a `Value` without error, as far as the
    /// plain forms canonical JSON uses go. Escapes that could be unpaired surrogates,
    /// exponents (which could overflow) and deep nesting are left to `serde_json`.
    fn value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_FAST_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.json_string(),
            b'{' => {
                self.at += 1;
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.json_string()?;
                    self.byte(b':')?;
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    match self.next()? {
                        b',' => {}
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.json_number(),
            _ => None,
        }
    }

    fn json_string(&mut self) -> Option<()> {
        self.byte(b'"')?;
        loop {
            let rest = self.rest();
            let i = find_string_special(rest)?;
            self.at += i + 1;
            match rest[i] {
                b'"' => return Some(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        let digits = self.bytes.get(self.at..self.at + 4)?;
                        let code =
                            u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?;
                        if !digits.iter().all(u8::is_ascii_hexdigit)
                            || (0xd800..=0xdfff).contains(&code)
                        {
                            return None;
                        }
                        self.at += 4;
                    }
                    _ => return None,
                },
                // A control character, which JSON strings may not hold raw.
                _ => return None,
            }
        }
    }

    fn json_number(&mut self) -> Option<()> {
        let start = self.at;
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.peek().filter(u8::is_ascii_digit)?;
            self.digits();
        }
        // Without an exponent, a number this short is always a finite f64.
        let plain = !matches!(self.peek(), Some(b'e' | b'E')) && self.at - start <= 100;
        plain.then_some(())
    }

    fn digits(&mut self) {
        while self.peek().filter(u8::is_ascii_digit).is_some() {
            self.at += 1;
        }
    }
}

/// Nesting depth up to which the fast path checks `data` itself; deeper values go to
/// `serde_json`, whose own limit (128) is well above.
const MAX_FAST_DEPTH: u32 = 64;

/// The index of the first `"`, `\` or ASCII control character in `bytes`: where a JSON
/// string ends or needs a closer look.
///
/// Strings are most of a record's bytes, so this runs eight bytes at a time (word-wide
/// byte tests) instead of one.
fn find_string_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const SPACES: u64 = u64::from_ne_bytes([0x20; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // Marks the bytes of `word` below `n` (for n <= 0x80; bytes of 0x80 and above are
    // never marked). Bytes above a true match may be marked too (borrows), but the lowest
    // marked byte is always a true match, which is all this needs.
    let below = |word: u64, n: u64| word.wrapping_sub(n) & !word & HIGHS;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Little-endian, so that the lowest set bit belongs to the first byte.
        let word = u64::from_le_bytes(word);
        let found =
            below(word ^ QUOTES, ONES) | below(word ^ BACKSLASHES, ONES) | below(word, SPACES);
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

/// Whether `t` is a timestamp as records spell it, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, of a
/// real instant from 1970 on. Such a text is always one that the record's own parser
/// (`DateTime::parse_from_rfc3339`) accepts; anything else (other spellings, leap
/// seconds, earlier years) is left to that parser. This is only a shortcut: it costs a
/// fraction of the general parser, twice per record.
fn is_canonical_timestamp(t: &str) -> bool {
    let b = t.as_bytes();
    let number = |range: Range<usize>| {
        b.get(range)?.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let separators = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (26, b'Z'),
    ];
    if b.len() != 27 || separators.iter().any(|&(i, c)| b[i] != c) || number(20..26).is_none() {
        return false;
    }
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0..4),
        number(5..7),
        number(8..10),
        number(11..13),
        number(14..16),
        number(17..19),
    ) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    year >= 1970 && (1..=days).contains(&day) && hour < 24 && minute < 60 && second < 60
}

/// What the checks need from a record's bytes.
#[derive(Debug)]
struct RecordFacts<'a> {
    event_id: Uuid,
    stream_id: Cow<'a, str>,
    stream_version: u64,
    position: u64,
    event_type: Cow<'a, str>,
    occurred_at: Cow<'a, str>,
    recorded_at: Cow<'a, str>,
}

/// Reads a record's facts, accepting exactly what `EventRecord::from_bytes` (and so
/// `ChainVerifier`) accepts; names and timestamps are checked by the caller.
///
/// Stored records are canonical JSON, so nearly all of them are read by
/// [`canonical_facts`], which walks the one canonical layout without building anything.
/// The rest (escapes in names, members the fast path does not know, exponents, …) are
/// parsed in full, which also gives the error message.
fn record_facts(bytes: &[u8]) -> Result<RecordFacts<'_>, String> {
    if let Some(facts) = canonical_facts(bytes) {
        return Ok(facts);
    }
    let record = EventRecord::from_bytes(bytes).map_err(|e| e.to_string())?;
    Ok(RecordFacts {
        event_id: record.event_id,
        stream_id: Cow::Owned(record.stream_id.as_str().to_owned()),
        stream_version: record.stream_version,
        position: record.position,
        event_type: Cow::Owned(record.event_type.as_str().to_owned()),
        occurred_at: Cow::Owned(format_timestamp(&record.occurred_at)),
        recorded_at: Cow::Owned(format_timestamp(&record.recorded_at)),
    })
}

/// The facts of a record in the canonical layout `EventRecord::to_bytes` writes: members
/// in their fixed order, optional ones only where they belong, no white space, envelope
/// strings without escapes. `None` for anything else.
fn canonical_facts(bytes: &[u8]) -> Option<RecordFacts<'_>> {
    // Checking UTF-8 once up front makes every string inside valid, as serde requires.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { bytes, at: 0 };
    // Quotes are ASCII, so a string's contents start and end on character boundaries.
    let plain = |s: &mut Scanner<'_>| s.plain_range().and_then(|r| text.get(r)).map(Cow::Borrowed);
    s.byte(b'{')?;
    if s.eat(b"\"actor\":") {
        s.plain()?;
        s.byte(b',')?;
    }
    if s.eat(b"\"causation_id\":") {
        s.uuid()?;
        s.byte(b',')?;
    }
    if s.eat(b"\"correlation_id\":") {
        s.uuid()?;
        s.byte(b',')?;
    }
    s.literal(b"\"data\":")?;
    s.value(2)?;
    s.literal(b",\"event_id\":")?;
    let event_id = s.uuid()?;
    s.literal(b",\"event_type\":")?;
    let event_type = plain(&mut s)?;
    s.literal(b",\"occurred_at\":")?;
    let occurred_at = plain(&mut s)?;
    s.literal(b",\"position\":")?;
    let position = s.integer()?;
    s.literal(b",\"recorded_at\":")?;
    let recorded_at = plain(&mut s)?;
    s.literal(b",\"schema_version\":")?;
    u32::try_from(s.integer()?).ok()?;
    if s.eat(b",\"sealed\":{") {
        for member in [
            &b"\"alg\":"[..],
            b",\"ciphertext\":",
            b",\"key_id\":",
            b",\"nonce\":",
            b",\"subject\":",
        ] {
            s.literal(member)?;
            s.plain()?;
        }
        s.byte(b'}')?;
    }
    s.literal(b",\"stream_id\":")?;
    let stream_id = plain(&mut s)?;
    s.literal(b",\"stream_version\":")?;
    let stream_version = s.integer()?;
    if s.eat(b",\"tenant\":") {
        s.plain()?;
    }
    s.byte(b'}')?;
    (s.at == bytes.len()).then_some(())?;
    Some(RecordFacts {
        event_id,
        stream_id,
        stream_version,
        position,
        event_type,
        occurred_at,
        recorded_at,
    })
}

/// A checkpoint already verified in this export.
#[derive(Debug)]
struct SeenCheckpoint {
    size: u64,
    root: Hash,
    note: String,
    line: u64,
}

/// The verifier's state while walking an export.
#[derive(Debug)]
struct Walk {
    origin: String,
    from: u64,
    to: u64,
    /// The trusted keys named after the origin; others are ignored like unknown keys.
    trusted: Vec<Verifier>,
    next: u64,
    chain: Hash,
    tree: CompactRange,
    /// Every event id seen, as a number: 16 bytes each, hashed once per record.
    ids: HashSet<u128>,
    /// The last version of each stream seen.
    versions: HashMap<String, u64>,
    /// Event type names already found valid; there are few, so each is parsed once.
    event_types: HashSet<String>,
    checkpoints: Vec<SeenCheckpoint>,
    /// The last line read, for a truncation report.
    last_line: u64,
}

impl Walk {
    /// Reads and checks the header and, for a partial export, the start line.
    fn begin<R: BufRead>(
        reader: &mut LineReader<R>,
        verifiers: &[Verifier],
    ) -> Result<Self, ExportFailure> {
        let at_line = |line, reason| ExportFailure {
            position: None,
            line,
            reason,
        };
        let header = match reader.next_line() {
            Ok(Some(line)) => parse_header(line),
            Ok(None) => Err(ExportReason::HeaderMissing {
                found: "the export is empty".into(),
            }),
            Err(reason) => Err(reason),
        }
        .map_err(|reason| at_line(1, reason))?;
        let trusted: Vec<Verifier> = verifiers
            .iter()
            .filter(|v| v.name() == header.origin)
            .cloned()
            .collect();
        if trusted.is_empty() {
            return Err(at_line(
                1,
                ExportReason::OriginNotTrusted {
                    origin: header.origin,
                    trusted: key_list(verifiers.iter().map(Verifier::key_ref)),
                },
            ));
        }
        let mut walk = Self {
            origin: header.origin,
            from: header.from,
            to: header.to,
            trusted,
            next: header.from,
            chain: GENESIS_CHAIN,
            tree: CompactRange::new(),
            // Sized for the promised events up front (within reason: the header is not yet
            // verified), so that the set does not rehash its way up.
            ids: HashSet::with_capacity(
                usize::try_from(header.to - header.from + 1)
                    .map_or(MAX_PRESIZED_IDS, |n| n.min(MAX_PRESIZED_IDS)),
            ),
            versions: HashMap::new(),
            event_types: HashSet::new(),
            checkpoints: Vec::new(),
            last_line: 1,
        };
        if header.from > 1 {
            let start = match reader.next_line() {
                Ok(Some(line)) => parse_start(line, header.from),
                Ok(None) => Err(ExportReason::StartMissing { from: header.from }),
                Err(reason) => Err(reason),
            }
            .map_err(|reason| at_line(2, reason))?;
            walk.chain = start.0;
            walk.tree = start.1;
        }
        Ok(walk)
    }

    fn events(&self) -> u64 {
        self.next - self.from
    }

    fn check_batch(&mut self, batch: &Batch) -> Result<(), ExportFailure> {
        for entry in &batch.entries {
            match entry {
                Entry::Record {
                    line,
                    position,
                    stored_leaf,
                    stored_chain,
                    leaf,
                    bytes,
                } => self
                    .check_record(
                        *position,
                        stored_leaf,
                        stored_chain,
                        leaf,
                        batch.bytes.get(bytes.clone()).unwrap_or_default(),
                    )
                    .map_err(|reason| ExportFailure {
                        position: Some(*position),
                        line: *line,
                        reason,
                    })?,
                Entry::Checkpoint { line, size, note } => self
                    .check_checkpoint(*line, *size, note)
                    .map_err(|reason| ExportFailure {
                        position: Some(self.tree.size()),
                        line: *line,
                        reason,
                    })?,
                Entry::Bad {
                    line,
                    position,
                    reason,
                } => {
                    return Err(ExportFailure {
                        position: *position,
                        line: *line,
                        reason: reason.clone(),
                    })
                }
            }
        }
        Ok(())
    }

    /// The checks of `ChainVerifier::check`, resumable at any position, plus the leaf's
    /// place in the Merkle tree.
    fn check_record(
        &mut self,
        position: u64,
        stored_leaf: &Hash,
        stored_chain: &Hash,
        leaf: &Hash,
        bytes: &[u8],
    ) -> Result<(), ExportReason> {
        if self.next > self.to {
            return Err(ExportReason::TrailingData { to: self.to });
        }
        if position != self.next {
            let (expected, found) = (self.next, position);
            return Err(if found > expected {
                ExportReason::PositionGap { expected, found }
            } else {
                ExportReason::PositionReorder { expected, found }
            });
        }
        if stored_leaf != leaf {
            return Err(ExportReason::LeafMismatch {
                stored: to_hex(stored_leaf),
                computed: to_hex(leaf),
            });
        }
        let chain = chain_hash(&self.chain, leaf);
        if &chain != stored_chain {
            return Err(ExportReason::ChainMismatch {
                stored: to_hex(stored_chain),
                computed: to_hex(&chain),
            });
        }
        let view = record_facts(bytes).map_err(ExportReason::RecordUnparseable)?;
        self.check_names(&view)?;
        // Before the position field: an event appended a second time says its old
        // position, and "the same event again" is what the auditor needs to hear.
        if !self.ids.insert(view.event_id.as_u128()) {
            return Err(ExportReason::DuplicateEventId {
                event_id: view.event_id,
            });
        }
        if view.position != position {
            return Err(ExportReason::PositionField {
                in_record: view.position,
                stored: position,
            });
        }
        self.check_stream_version(&view)?;
        self.tree.push(*leaf);
        self.chain = chain;
        self.next += 1;
        Ok(())
    }

    /// The parts of `EventRecord::from_bytes` that [`canonical_facts`] leaves to its
    /// caller: the event type grammar and the timestamps. (The stream id grammar is
    /// checked when a stream is first seen, in `check_stream_version`.)
    fn check_names(&mut self, view: &RecordFacts<'_>) -> Result<(), ExportReason> {
        let unparseable = |e: &dyn fmt::Display| ExportReason::RecordUnparseable(e.to_string());
        if !self.event_types.contains(view.event_type.as_ref()) {
            EventType::parse(&view.event_type).map_err(|e| unparseable(&e))?;
            self.event_types
                .insert(view.event_type.clone().into_owned());
        }
        for (name, value) in [
            ("occurred_at", &view.occurred_at),
            ("recorded_at", &view.recorded_at),
        ] {
            if !is_canonical_timestamp(value) {
                chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|e| unparseable(&format_args!("{name} {value:?}: {e}")))?;
            }
        }
        Ok(())
    }

    fn check_stream_version(&mut self, view: &RecordFacts<'_>) -> Result<(), ExportReason> {
        let found = view.stream_version;
        let mismatch = |expected| ExportReason::StreamVersion {
            stream: view.stream_id.clone().into_owned(),
            expected,
            found,
        };
        match self.versions.get_mut(view.stream_id.as_ref()) {
            Some(version) => {
                if found != *version + 1 {
                    return Err(mismatch(*version + 1));
                }
                *version = found;
            }
            None => {
                StreamId::parse(&view.stream_id)
                    .map_err(|e| ExportReason::RecordUnparseable(e.to_string()))?;
                // A full export sees every stream begin. A partial one may meet a stream
                // in the middle, and only knows versions are 1-based.
                if found == 0 || (self.from == 1 && found != 1) {
                    return Err(mismatch(1));
                }
                self.versions
                    .insert(view.stream_id.clone().into_owned(), found);
            }
        }
        Ok(())
    }

    fn check_checkpoint(&mut self, line: u64, size: u64, text: &str) -> Result<(), ExportReason> {
        // Authenticate first: an unsigned claim of a fork or a rollback is no evidence.
        let checkpoint = open_trusted(text, &self.trusted).map_err(|e| match e {
            Opened::Signature(failure) => ExportReason::CheckpointSignature(failure),
            Opened::Malformed(detail) => ExportReason::CheckpointMalformed(detail),
        })?;
        if checkpoint.origin != self.origin {
            return Err(ExportReason::OriginMismatch {
                expected: self.origin.clone(),
                found: checkpoint.origin,
            });
        }
        if checkpoint.size != size {
            return Err(ExportReason::CheckpointSizeField {
                line_size: size,
                note_size: checkpoint.size,
            });
        }
        if let Some(last) = self.checkpoints.last() {
            if checkpoint.size <= last.size {
                let same_size = self
                    .checkpoints
                    .binary_search_by_key(&checkpoint.size, |c| c.size)
                    .ok()
                    .and_then(|i| self.checkpoints.get(i));
                return Err(match same_size {
                    Some(earlier) if earlier.root != checkpoint.root => ExportReason::Fork {
                        size: checkpoint.size,
                        first_line: earlier.line,
                        first_note: earlier.note.clone(),
                        second_note: text.to_owned(),
                    },
                    _ if checkpoint.size == last.size => ExportReason::DuplicateCheckpoint {
                        size: checkpoint.size,
                    },
                    _ => ExportReason::Rollback {
                        previous_size: last.size,
                        size: checkpoint.size,
                    },
                });
            }
        }
        if checkpoint.size != self.tree.size() {
            return Err(ExportReason::CheckpointSizeMismatch {
                tree_size: self.tree.size(),
                checkpoint_size: checkpoint.size,
            });
        }
        let computed = self.tree.root();
        if computed != checkpoint.root {
            return Err(ExportReason::RootMismatch {
                size: checkpoint.size,
                signed: base64::encode(&checkpoint.root),
                computed: base64::encode(&computed),
            });
        }
        self.checkpoints.push(SeenCheckpoint {
            size: checkpoint.size,
            root: checkpoint.root,
            note: text.to_owned(),
            line,
        });
        Ok(())
    }

    /// The end of the input: everything the header promised must have come.
    fn finish(self, started: Instant) -> Result<ExportSummary, ExportFailure> {
        let last = self.next - 1;
        if last < self.to {
            return Err(ExportFailure {
                position: Some(self.next),
                line: self.last_line + 1,
                reason: ExportReason::Truncated { to: self.to, last },
            });
        }
        let last_checkpoint = self.checkpoints.last();
        Ok(ExportSummary {
            events: self.events(),
            checkpoints: self.checkpoints.len() as u64,
            head_position: last,
            head_chain_hash: self.chain,
            head_root: self.tree.root(),
            uncovered_events: last - last_checkpoint.map_or(self.from - 1, |c| c.size),
            last_checkpoint: last_checkpoint.map(|c| CheckpointMark {
                size: c.size,
                root_b64: base64::encode(&c.root),
            }),
            origin: self.origin,
            from: self.from,
            elapsed: started.elapsed(),
        })
    }
}

fn parse_header(line: &[u8]) -> Result<HeaderLine, ExportReason> {
    let value: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| ExportReason::HeaderMissing {
            found: format!("not JSON: {e}"),
        })?;
    // Kind and version first, so that a newer export is named as such rather than
    // refused for the members it added.
    match value.get("kind").and_then(|k| k.as_str()) {
        Some(EXPORT_KIND) => {}
        Some(kind) => {
            return Err(ExportReason::HeaderMissing {
                found: format!("a line of kind {kind:?}"),
            })
        }
        None => {
            return Err(ExportReason::HeaderMissing {
                found: "a line without a string \"kind\"".into(),
            })
        }
    }
    match value.get("version").and_then(|v| v.as_u64()) {
        Some(EXPORT_VERSION) => {}
        Some(version) => return Err(ExportReason::UnsupportedVersion { version }),
        None => {
            return Err(ExportReason::HeaderInvalid(
                "\"version\" is missing or not a number".into(),
            ))
        }
    }
    let header: HeaderLine =
        serde_json::from_value(value).map_err(|e| ExportReason::HeaderInvalid(e.to_string()))?;
    if header.origin.is_empty() {
        return Err(ExportReason::HeaderInvalid("the origin is empty".into()));
    }
    if header.from == 0 || header.from > header.to {
        return Err(ExportReason::HeaderInvalid(format!(
            "from {} and to {} are not a range 1 <= from <= to",
            header.from, header.to
        )));
    }
    Ok(header)
}

/// The chain hash and the Merkle compact range after position `from - 1`.
fn parse_start(line: &[u8], from: u64) -> Result<(Hash, CompactRange), ExportReason> {
    let (size, chain_hash, compact_range) = match serde_json::from_slice::<OtherLine>(line) {
        Ok(OtherLine::Start {
            size,
            chain_hash,
            compact_range,
        }) => (size, chain_hash, compact_range),
        Ok(_) => return Err(ExportReason::StartMissing { from }),
        Err(e) => return Err(ExportReason::MalformedLine(e.to_string())),
    };
    if size != from - 1 {
        return Err(ExportReason::StartInvalid(format!(
            "size {size}, but the export starts at position {from}"
        )));
    }
    let chain = hex_hash(chain_hash.as_bytes()).ok_or_else(|| {
        ExportReason::StartInvalid("chain_hash is not 64 lowercase hex digits".into())
    })?;
    let nodes = compact_range
        .iter()
        .enumerate()
        .map(|(i, node)| {
            base64::decode(node)
                .ok()
                .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
                .ok_or_else(|| {
                    ExportReason::StartInvalid(format!(
                        "compact_range[{i}] is not a base64 32-byte hash"
                    ))
                })
        })
        .collect::<Result<Vec<Hash>, _>>()?;
    let range = CompactRange::from_parts(size, nodes)
        .map_err(|e: MerkleError| ExportReason::StartInvalid(e.to_string()))?;
    Ok((chain, range))
}

/// Why a checkpoint note could not be opened.
enum Opened {
    Signature(SignatureFailure),
    Malformed(String),
}

/// Opens a signed checkpoint with `trusted` (the keys named after the log's origin):
/// unknown keys are ignored, a trusted key's bad signature rejects the note, and at least
/// one trusted signature must verify (C2SP signed-note rules, as in `note::open`).
fn open_trusted(text: &str, trusted: &[Verifier]) -> Result<Checkpoint, Opened> {
    let verified = note::open(text.as_bytes(), trusted)
        .map_err(|e| Opened::Signature(signature_failure(e, text, trusted)))?;
    Checkpoint::parse(verified.text()).map_err(|e| Opened::Malformed(e.to_string()))
}

fn signature_failure(error: NoteError, text: &str, trusted: &[Verifier]) -> SignatureFailure {
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

fn key_list(keys: impl Iterator<Item = KeyRef>) -> String {
    let keys: Vec<String> = keys.map(|k| k.to_string()).collect();
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

// ---------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------

/// `amtsbuch verify --export FILE --key VKEY…`. Prints the verdict on stdout and returns
/// the exit code: 0 verified, 1 failed. Errors are for unusable arguments (unreadable
/// files, bad keys), not for a bad export.
pub fn run_export_cli(path: &Path, keys: &[PathBuf]) -> anyhow::Result<i32> {
    let verifiers = crate::cli::remote::read_vkeys(keys)?;
    let file =
        File::open(path).with_context(|| format!("cannot open export {}", path.display()))?;
    let input = BufReader::with_capacity(1 << 20, file);
    let tty = std::io::stderr().is_terminal();
    let mut drawn = Instant::now();
    let result = verify_export(input, &verifiers, |events| {
        if tty && drawn.elapsed() >= Duration::from_millis(200) {
            drawn = Instant::now();
            let mut err = std::io::stderr();
            let _ = write!(err, "\rverifying export: {events} events");
            let _ = err.flush();
        }
    });
    if tty {
        // Clear the progress line so the verdict stands alone.
        eprint!("\r\x1b[K");
    }
    match result {
        Ok(summary) => {
            println!("{}", export_ok_line(&summary));
            if let Some(warning) = export_warning(&summary) {
                println!("{warning}");
            }
            Ok(0)
        }
        Err(failure) => {
            println!("FAILED {failure}");
            Ok(1)
        }
    }
}

/// The one-line verdict for a verified export.
pub fn export_ok_line(summary: &ExportSummary) -> String {
    format!(
        "ok: {} events, {} checkpoints, head {} {}, {:.0} events/s",
        summary.events,
        summary.checkpoints,
        summary.head_position,
        base64::encode(&summary.head_root),
        summary.events_per_second()
    )
}

/// The warning for records no checkpoint covers, if there are any.
pub fn export_warning(summary: &ExportSummary) -> Option<String> {
    if summary.uncovered_events == 0 {
        return None;
    }
    Some(match &summary.last_checkpoint {
        Some(c) => format!(
            "warning: {} events after the last checkpoint (size {}) are not covered by a signature",
            summary.uncovered_events, c.size
        ),
        None => format!(
            "warning: the export has no checkpoint, so no signature covers its {} events",
            summary.uncovered_events
        ),
    })
}

/// `amtsbuch verify-proof FILE --key VKEY [--record FILE]`. Prints the verdict on stdout
/// and returns the exit code: 0 verified, 1 failed.
pub fn run_receipt_cli(
    path: &Path,
    keys: &[PathBuf],
    record: Option<&Path>,
) -> anyhow::Result<i32> {
    let verifiers = crate::cli::remote::read_vkeys(keys)?;
    let proof =
        fs::read(path).with_context(|| format!("cannot read receipt {}", path.display()))?;
    let record = record
        .map(|p| fs::read(p).with_context(|| format!("cannot read record {}", p.display())))
        .transpose()?;
    match verify_receipt(&proof, record.as_deref(), &verifiers) {
        Ok(summary) => {
            println!("{}", receipt_ok_line(&summary));
            if let Some(note) = receipt_note(&summary) {
                println!("{note}");
            }
            Ok(0)
        }
        Err(failure) => {
            println!("FAILED: {failure}");
            Ok(1)
        }
    }
}

/// The one-line verdict for a verified receipt. Without the record, the event id is only
/// the receipt's word, so the line names the proven leaf and not the event.
pub fn receipt_ok_line(summary: &ReceiptSummary) -> String {
    let subject = match summary.event_id {
        Some(id) if summary.record_checked => {
            format!("event {id} (leaf {})", to_hex(&summary.leaf_hash))
        }
        _ => format!("leaf {}", to_hex(&summary.leaf_hash)),
    };
    format!(
        "ok: {subject} is at position {} of {}, in the checkpoint of size {} with root {}, signed by {}",
        summary.position(),
        summary.origin,
        summary.checkpoint_size,
        base64::encode(&summary.checkpoint_root),
        key_list(summary.verified_by.iter().cloned())
    )
}

/// What a receipt verified without its record leaves open, if anything.
pub fn receipt_note(summary: &ReceiptSummary) -> Option<String> {
    if summary.record_checked {
        return None;
    }
    let named = summary.event_id.map_or_else(String::new, |id| {
        format!(" (the receipt says it is event {id})")
    });
    Some(format!(
        "note: the record itself was not checked, only the leaf hash the receipt names{named}; pass --record FILE to check the record"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amtsbuch_domain::record::SealedSection;
    use amtsbuch_domain::{plan_batch, AppendRequest, BatchContext, ExpectedVersion, NewEvent};

    /// A small deterministic generator (xorshift), so that the property checks below see
    /// the same inputs on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    #[test]
    fn the_record_scanner_takes_only_the_plain_shape() {
        let leaf = "ab".repeat(32);
        let chain = "cd".repeat(32);
        let plain = format!(
            r#"{{"chain_hash":"{chain}","kind":"record","leaf_hash":"{leaf}","position":7,"record":"AAEC"}}"#
        );
        let mut out = vec![9];
        let (scanned, end) = scan_record(plain.as_bytes(), &mut out).expect("plain line");
        assert_eq!(end, plain.len());
        assert_eq!(scanned.position, 7);
        assert_eq!(scanned.stored_leaf, [0xab; 32]);
        assert_eq!(scanned.stored_chain, [0xcd; 32]);
        assert_eq!(out, [9, 0, 1, 2]);
        // Member order is free.
        let reordered = format!(
            r#"{{"kind":"record","position":7,"record":"AAEC","leaf_hash":"{leaf}","chain_hash":"{chain}"}}"#
        );
        assert!(scan_record(reordered.as_bytes(), &mut Vec::new()).is_some());
        // Everything else is left to serde_json and the strict decoders, which decide and
        // explain; the output buffer is left as it was.
        let variants = [
            plain.replace(r#","position":7"#, ""),
            plain.replace(":7,", ":07,"),
            plain.replace(":7,", ":7.0,"),
            plain.replace(":7,", ":-7,"),
            plain.replace(":7,", ":18446744073709551616,"),
            plain.replace("AAEC", r"A\u0041EC"),
            plain.replace("AAEC", "AAF="),
            plain.replace("AAEC", "AAE"),
            plain.replace("}", r#","extra":1}"#),
            plain.replace(r#""kind":"record""#, r#""kind":"checkpoint""#),
            plain.replace(r#""kind":"record","#, r#""kind":"record","kind":"record","#),
            plain.replace("abab", "ABAB"),
            plain.replace(":", ": "),
            format!(" {plain}"),
            plain.replace("}", ""),
        ];
        for variant in variants {
            let mut out = vec![9];
            assert!(
                scan_record(variant.as_bytes(), &mut out).is_none(),
                "{variant}"
            );
            assert_eq!(out, [9], "{variant}");
        }
    }

    #[test]
    fn the_word_wide_string_search_finds_the_first_special_byte() {
        let mut rng = Rng(0xfeed);
        let specials = [b'"', b'\\', 0x00, 0x1f, b'\n'];
        let ordinary = [
            b'a', b' ', b'~', 0x7f, 0x80, 0xc3, 0xff, b'!', b'#', b']', b'[',
        ];
        for _ in 0..5000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.below(12) == 0 {
                        specials[rng.below(specials.len())]
                    } else {
                        ordinary[rng.below(ordinary.len())]
                    }
                })
                .collect();
            let naive = bytes
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            assert_eq!(find_string_special(&bytes), naive, "{bytes:?}");
        }
    }

    /// Records as `plan_batch` writes them, with every optional member somewhere.
    fn records() -> Vec<Vec<u8>> {
        let mut ctx = BatchContext {
            head_position: 0,
            head_chain: GENESIS_CHAIN,
            versions: HashMap::new(),
            existing: HashMap::new(),
            recorded_at: chrono::Utc::now(),
        };
        let data = [
            serde_json::json!({ "a": [true, false, null, 1.5, -0.25, 0, -7, 9007199254740991_u64], "ä": "x\"y\\z\n\u{1}", "o": {}, "e": [] }),
            serde_json::json!("just a string with \u{2028} and \u{1F600}"),
            serde_json::json!(1e300),
            serde_json::json!([[[[{"deep": [1, [2, [3]]]}]]]]),
            serde_json::json!({ "event_id": "not-this-one", "position": 99 }),
        ];
        let requests: Vec<AppendRequest> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut event =
                    NewEvent::new(EventType::parse("ConsentGiven").expect("type"), d.clone());
                if i % 2 == 0 {
                    event.actor = Some("account-7".into());
                    event.tenant = Some("14612000".into());
                    event.causation_id = Some(Uuid::now_v7());
                }
                if i == 1 {
                    event.sealed = Some(SealedSection {
                        subject: "subject-1".into(),
                        key_id: "k1".into(),
                        alg: "A256GCM".into(),
                        nonce: "bm9uY2U=".into(),
                        ciphertext: "Y2lwaGVy".into(),
                    });
                }
                AppendRequest {
                    stream: StreamId::parse(&format!("consent-{i}")).expect("stream"),
                    expected: ExpectedVersion::Any,
                    events: vec![event],
                }
            })
            .collect();
        let (plans, rows) = plan_batch(&mut ctx, &requests);
        assert!(plans.iter().all(Result::is_ok));
        rows.into_iter().map(|r| r.bytes).collect()
    }

    fn facts_of(record: &EventRecord) -> (Uuid, String, u64, u64, String, String, String) {
        (
            record.event_id,
            record.stream_id.as_str().to_owned(),
            record.stream_version,
            record.position,
            record.event_type.as_str().to_owned(),
            format_timestamp(&record.occurred_at),
            format_timestamp(&record.recorded_at),
        )
    }

    fn facts_tuple(f: &RecordFacts<'_>) -> (Uuid, String, u64, u64, String, String, String) {
        (
            f.event_id,
            f.stream_id.to_string(),
            f.stream_version,
            f.position,
            f.event_type.to_string(),
            f.occurred_at.to_string(),
            f.recorded_at.to_string(),
        )
    }

    #[test]
    fn canonical_records_are_read_on_the_fast_path_with_the_full_parsers_result() {
        let records = records();
        let exponent = records
            .iter()
            .position(|r| r.windows(4).any(|w| w == b"e+30"))
            .expect("a record with an exponent");
        for (i, bytes) in records.iter().enumerate() {
            let full = EventRecord::from_bytes(bytes).expect("a valid record");
            let fast = canonical_facts(bytes);
            // Exponents are left to the full parser, which checks their range.
            assert_eq!(
                fast.is_none(),
                i == exponent,
                "{}",
                String::from_utf8_lossy(bytes)
            );
            let facts = record_facts(bytes).expect("facts");
            assert_eq!(facts_tuple(&facts), facts_of(&full));
        }
    }

    #[test]
    fn records_off_the_canonical_layout_are_decided_by_the_full_parser() {
        let bytes = records().swap_remove(0);
        let text = String::from_utf8(bytes).expect("utf8");
        let cases = [
            // Still valid records, just not in canonical form.
            text.replacen("{", "{\"zzz\":1,", 1),
            text.replacen("\"data\":", "\"data\": ", 1),
            text.replace("\"a\":[", "\"a\":[1E2,"),
            text.replace("\"o\":{}", "\"o\":\"\\ud83d\\ude00\""),
            text.replacen(
                "\"stream_id\":\"consent-0\"",
                "\"stream_id\":\"consent\\u002d0\"",
                1,
            ),
            // Not records at all, and not JSON that serde reads into a record.
            text.replace("\"o\":{}", "\"o\":\"\\ud83d\""),
            text.replace("\"o\":{}", "\"o\":1e999"),
            text.replace("\"o\":{}", "\"o\":tru"),
            text.replace("\"o\":{}", "\"o\":01"),
            text.replace("\"o\":{}", "\"o\":\"\u{1}\""),
            text.replacen("\"position\":", "\"position\":-", 1),
            text.replacen("\"schema_version\":1", "\"schema_version\":4294967296", 1),
            text.replacen("\"event_id\":\"", "\"event_id\":\"x", 1),
            text.replacen("}", "}}", 1),
            format!("{text} "),
            format!("{}{}", "[".repeat(200), "]".repeat(200)),
        ];
        for case in cases {
            let full = EventRecord::from_bytes(case.as_bytes());
            let fast = canonical_facts(case.as_bytes());
            assert!(fast.is_none(), "the fast path must not take {case}");
            match (record_facts(case.as_bytes()), full) {
                (Ok(facts), Ok(record)) => assert_eq!(facts_tuple(&facts), facts_of(&record)),
                (Err(_), Err(_)) => {}
                (ours, theirs) => panic!("{case}: {ours:?} but EventRecord says {theirs:?}"),
            }
        }
    }

    #[test]
    fn the_timestamp_shortcut_accepts_only_what_the_record_parser_accepts() {
        for t in [
            "2026-11-22T13:31:00.000000Z",
            "1970-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2000-02-29T12:00:00.123456Z",
            "9999-12-31T23:59:59.999999Z",
        ] {
            assert!(is_canonical_timestamp(t), "{t}");
        }
        // Not canonical, though some of these are valid RFC 3339: the general parser
        // decides those.
        for t in [
            "2023-02-29T00:00:00.000000Z",
            "1900-02-29T00:00:00.000000Z",
            "2026-04-31T00:00:00.000000Z",
            "2026-13-01T00:00:00.000000Z",
            "2026-00-01T00:00:00.000000Z",
            "2026-01-00T00:00:00.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T00:60:00.000000Z",
            "2016-12-31T23:59:60.000000Z",
            "1969-12-31T23:59:59.999999Z",
            "2026-01-01T00:00:00.00000Z",
            "2026-01-01T00:00:00.000000+00:00",
            "2026-01-01t00:00:00.000000Z",
            "2026-01-01T00:00:00Z",
            "2026-1-01T00:00:00.0000000Z",
            "+026-01-01T00:00:00.000000Z",
        ] {
            assert!(!is_canonical_timestamp(t), "{t}");
        }
        // Every text of the canonical shape: the shortcut never accepts one that chrono
        // refuses, and accepts every valid one from 1970 on without a leap second.
        let mut rng = Rng(0x7157);
        for _ in 0..20_000 {
            let mut digit = |n: usize| rng.below(n);
            let t = format!(
                "{}{:03}-{}{}-{}{}T{}{}:{}{}:{}{}.{:06}Z",
                [1, 2, 9][digit(3)],
                digit(1000),
                digit(2),
                digit(10),
                digit(4),
                digit(10),
                digit(3),
                digit(10),
                digit(7),
                digit(10),
                digit(7),
                digit(10),
                digit(1_000_000)
            );
            let chrono = chrono::DateTime::parse_from_rfc3339(&t).is_ok();
            let in_range = t.as_str() >= "1970" && &t[17..19] < "60";
            assert_eq!(is_canonical_timestamp(&t), chrono && in_range, "{t}");
        }
    }

    #[test]
    fn hex_hashes_are_64_lowercase_digits() {
        let hex = "00".repeat(31) + "ff";
        let mut expected = [0u8; 32];
        expected[31] = 0xff;
        assert_eq!(hex_hash(hex.as_bytes()), Some(expected));
        assert_eq!(hex_hash(("00".repeat(31) + "FF").as_bytes()), None);
        assert_eq!(hex_hash("00".repeat(31).as_bytes()), None);
        assert_eq!(hex_hash(("00".repeat(31) + "0g").as_bytes()), None);
        assert_eq!(hex_hash(("00".repeat(31) + "0:").as_bytes()), None);
    }

    #[test]
    fn one_thread_and_two_threads_reach_the_same_verdicts() {
        let signer = note::Signer::from_seed("t.example/log", &[3; 32]).expect("signer");
        let verifiers = [signer.verifier()];
        let records = records();
        let mut range = CompactRange::new();
        let mut chain = GENESIS_CHAIN;
        let mut lines = vec![serde_json::json!({ "kind": EXPORT_KIND, "version": 1, "origin": "t.example/log", "from": 1, "to": records.len() }).to_string()];
        for (i, bytes) in records.iter().enumerate() {
            let leaf = leaf_hash(bytes);
            chain = chain_hash(&chain, &leaf);
            range.push(leaf);
            lines.push(serde_json::json!({ "kind": "record", "position": i + 1, "record": base64::encode(bytes), "leaf_hash": to_hex(&leaf), "chain_hash": to_hex(&chain) }).to_string());
        }
        let checkpoint = Checkpoint {
            origin: "t.example/log".into(),
            size: records.len() as u64,
            root: range.root(),
            extensions: vec![],
        };
        let note =
            amtsbuch_domain::checkpoint::sign_checkpoint(&checkpoint, &[&signer]).expect("sign");
        lines.push(
            serde_json::json!({ "kind": "checkpoint", "size": records.len(), "note": note })
                .to_string(),
        );
        let good = lines.join("\n") + "\n";
        let mut bad_lines = lines.clone();
        bad_lines.swap(2, 3);
        let bad = bad_lines.join("\n") + "\n";

        let run = |text: &str, threads: usize| {
            let mut reader = LineReader::new(text.as_bytes());
            let walk = Walk::begin(&mut reader, &verifiers)?;
            let walk = if threads == 1 {
                run_inline(reader, walk, &mut |_| {})?
            } else {
                run_pipelined(reader, walk, &mut |_| {})?
            };
            walk.finish(Instant::now()).map(|mut s| {
                s.elapsed = Duration::ZERO;
                s
            })
        };
        let one = run(&good, 1).expect("verified");
        assert_eq!(one.events, records.len() as u64);
        assert_eq!(one.uncovered_events, 0);
        assert_eq!(run(&good, 2), Ok(one));
        let failure = run(&bad, 1).expect_err("swapped");
        assert_eq!(failure.line, 3);
        assert_eq!(run(&bad, 2), Err(failure));
    }
}
