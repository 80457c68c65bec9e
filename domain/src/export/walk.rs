//! The checks of an export, in order: positions, leaf and chain hashes, what each record
//! says about itself, stream versions, event ids, and every signed checkpoint against the
//! tree rebuilt so far.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::BufRead;
use std::time::Duration;

use super::facts::{is_canonical_timestamp, record_facts, RecordFacts};
use super::lines::{parse_header, parse_start, Batch, Entry, ExportReader};
use super::{
    key_list, open_trusted, CheckpointMark, ExportFailure, ExportReason, ExportSummary, Opened,
};
use crate::base64;
use crate::chain::{chain_hash, to_hex, Hash, GENESIS_CHAIN};
use crate::merkle::CompactRange;
use crate::note::Verifier;
use crate::{EventType, StreamId};

/// The most event ids the id set is sized for before any are read.
const MAX_PRESIZED_IDS: usize = 1 << 22;

/// A checkpoint already verified in this export.
#[derive(Debug)]
struct SeenCheckpoint {
    size: u64,
    root: Hash,
    note: String,
    line: u64,
}

/// The verifier's state while walking an export: feed it the batches of an
/// [`ExportReader`] in order, then [`finish`](Self::finish) it.
#[derive(Debug)]
pub struct ExportWalk {
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
}

impl ExportWalk {
    /// Reads and checks the header and, for a partial export, the start line.
    pub fn begin<R: BufRead>(
        reader: &mut ExportReader<R>,
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

    /// Records verified so far.
    pub fn events(&self) -> u64 {
        self.next - self.from
    }

    /// Checks a batch's entries in order; the first failure ends the walk.
    pub fn check_batch(&mut self, batch: &Batch) -> Result<(), ExportFailure> {
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

    /// The parts of `EventRecord::from_bytes` that `facts::canonical_facts` leaves to its
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

    /// The end of the input: everything the header promised must have come. `last_line` is
    /// the reader's last line, `elapsed` the time the verification took.
    pub fn finish(self, last_line: u64, elapsed: Duration) -> Result<ExportSummary, ExportFailure> {
        let last = self.next - 1;
        if last < self.to {
            return Err(ExportFailure {
                position: Some(self.next),
                line: last_line + 1,
                reason: ExportReason::Truncated { to: self.to, last },
            });
        }
        // Hashes anyone can compute prove nothing by themselves: only a signature says the
        // records are what the log holds, so an export none of whose records a checkpoint
        // covers is not verified (a checkpoint at the start of a range covers only the
        // tree before it). A signed prefix followed by a few unsigned records passes, and
        // the summary counts the uncovered ones.
        let covering = self.checkpoints.last().filter(|c| c.size >= self.from);
        let Some(last_checkpoint) = covering else {
            return Err(ExportFailure {
                position: None,
                line: last_line + 1,
                reason: ExportReason::Unsigned {
                    events: self.events(),
                },
            });
        };
        Ok(ExportSummary {
            events: self.events(),
            checkpoints: self.checkpoints.len() as u64,
            head_position: last,
            head_chain_hash: self.chain,
            head_root: self.tree.root(),
            uncovered_events: last - last_checkpoint.size,
            last_checkpoint: Some(CheckpointMark {
                size: last_checkpoint.size,
                root_b64: base64::encode(&last_checkpoint.root),
            }),
            origin: self.origin,
            from: self.from,
            elapsed,
        })
    }
}
