//! Walking the log and checking every link: the shared core of `amtsbuch verify`.
//!
//! A `ChainVerifier` is fed the stored rows in position order and recomputes, for each,
//! the leaf hash from the stored bytes and the chain hash from its predecessor. It also
//! checks what the bytes say about themselves against where they were found: the position
//! field, the stream version sequence, and that no event id occurs twice. It stops at the
//! first violation, because everything after a broken link is unverifiable by definition.

use std::collections::{HashMap, HashSet};

use uuid::Uuid;

use crate::chain::{chain_hash, to_hex, Hash, GENESIS_CHAIN};
use crate::merkle::leaf_hash;
use crate::record::EventRecord;

/// What is wrong at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error(
        "expected position {expected} next, found {found} (an entry is missing or out of order)"
    )]
    PositionOutOfSequence { expected: u64, found: u64 },
    #[error("the stored leaf hash {stored} does not match the hash of the stored record {computed} (the record or its leaf hash was changed)")]
    LeafMismatch { stored: String, computed: String },
    #[error("the stored chain hash {stored} does not match the recomputed chain {computed} (an earlier entry was changed, dropped or reordered)")]
    ChainMismatch { stored: String, computed: String },
    #[error("the stored record is not a valid record: {0}")]
    Unparseable(String),
    #[error("the record says position {in_record}, but it is stored at position {stored}")]
    PositionField { in_record: u64, stored: u64 },
    #[error("stream {stream}: expected version {expected}, the record says {found}")]
    StreamVersion {
        stream: String,
        expected: u64,
        found: u64,
    },
    #[error("event id {0} occurs a second time")]
    DuplicateEventId(Uuid),
}

/// The first violation found, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("position {position}: {violation}")]
pub struct VerifyError {
    pub position: u64,
    pub violation: Violation,
}

/// Incremental verifier of the hash chain and record sequence.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_position: u64,
    chain: Hash,
    versions: HashMap<String, u64>,
    ids: HashSet<Uuid>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    pub fn new() -> Self {
        Self {
            next_position: 1,
            chain: GENESIS_CHAIN,
            versions: HashMap::new(),
            ids: HashSet::new(),
        }
    }

    /// Number of entries verified so far.
    pub fn count(&self) -> u64 {
        self.next_position - 1
    }

    /// The chain hash of the last verified entry.
    pub fn head(&self) -> Hash {
        self.chain
    }

    /// Check the next stored entry. `stored_leaf`/`stored_chain` are the hashes the store
    /// kept beside the bytes, where it keeps them.
    pub fn check(
        &mut self,
        position: u64,
        bytes: &[u8],
        stored_leaf: Option<&[u8]>,
        stored_chain: Option<&[u8]>,
    ) -> Result<Hash, VerifyError> {
        let fail = |violation| {
            Err(VerifyError {
                position,
                violation,
            })
        };
        if position != self.next_position {
            return fail(Violation::PositionOutOfSequence {
                expected: self.next_position,
                found: position,
            });
        }
        let leaf = leaf_hash(bytes);
        if let Some(stored) = stored_leaf {
            if stored != leaf.as_slice() {
                return fail(Violation::LeafMismatch {
                    stored: to_hex(stored),
                    computed: to_hex(&leaf),
                });
            }
        }
        let chain = chain_hash(&self.chain, &leaf);
        if let Some(stored) = stored_chain {
            if stored != chain.as_slice() {
                return fail(Violation::ChainMismatch {
                    stored: to_hex(stored),
                    computed: to_hex(&chain),
                });
            }
        }
        let record = match EventRecord::from_bytes(bytes) {
            Ok(r) => r,
            Err(e) => return fail(Violation::Unparseable(e.to_string())),
        };
        if record.position != position {
            return fail(Violation::PositionField {
                in_record: record.position,
                stored: position,
            });
        }
        if !self.ids.insert(record.event_id) {
            return fail(Violation::DuplicateEventId(record.event_id));
        }
        let version = self
            .versions
            .entry(record.stream_id.as_str().to_owned())
            .or_insert(0);
        if record.stream_version != *version + 1 {
            return fail(Violation::StreamVersion {
                stream: record.stream_id.as_str().to_owned(),
                expected: *version + 1,
                found: record.stream_version,
            });
        }
        *version += 1;
        self.chain = chain;
        self.next_position += 1;
        Ok(leaf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::append::{plan_batch, AppendRequest, BatchContext, NewEvent, PlannedRecord};
    use crate::stream::{EventType, ExpectedVersion, StreamId};
    use chrono::Utc;

    fn log(n: usize) -> Vec<PlannedRecord> {
        let mut ctx = BatchContext {
            head_position: 0,
            head_chain: GENESIS_CHAIN,
            versions: HashMap::new(),
            existing: HashMap::new(),
            recorded_at: crate::record::truncate_micros(Utc::now()),
        };
        let reqs: Vec<_> = (0..n)
            .map(|i| AppendRequest {
                stream: StreamId::parse(&format!("s-{}", i % 3)).expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::new(
                    EventType::parse("Noted").expect("type"),
                    serde_json::json!({ "i": i }),
                )],
            })
            .collect();
        plan_batch(&mut ctx, &reqs).1
    }

    fn run(rows: &[(u64, Vec<u8>, Hash, Hash)]) -> Result<u64, VerifyError> {
        let mut v = ChainVerifier::new();
        for (p, b, l, c) in rows {
            v.check(*p, b, Some(l), Some(c))?;
        }
        Ok(v.count())
    }

    fn rows(n: usize) -> Vec<(u64, Vec<u8>, Hash, Hash)> {
        log(n)
            .into_iter()
            .map(|r| (r.record.position, r.bytes, r.leaf_hash, r.chain_hash))
            .collect()
    }

    #[test]
    fn an_untouched_log_verifies() {
        assert_eq!(run(&rows(10)), Ok(10));
    }

    #[test]
    fn a_changed_byte_is_found_at_its_position() {
        let mut r = rows(10);
        let i = r[4].1.iter().position(|b| *b == b'{').expect("json");
        r[4].1[i + 1] ^= 1;
        assert!(matches!(
            run(&r),
            Err(VerifyError {
                position: 5,
                violation: Violation::LeafMismatch { .. }
            })
        ));
    }

    #[test]
    fn a_dropped_entry_is_found() {
        let mut r = rows(10);
        r.remove(3);
        assert!(matches!(
            run(&r),
            Err(VerifyError {
                position: 5,
                violation: Violation::PositionOutOfSequence {
                    expected: 4,
                    found: 5
                }
            })
        ));
    }

    #[test]
    fn swapped_entries_are_found() {
        let mut r = rows(10);
        r.swap(2, 3);
        // Positions renumbered as a forger would: the chain still gives it away.
        r[2].0 = 3;
        r[3].0 = 4;
        assert!(matches!(
            run(&r),
            Err(VerifyError {
                position: 3,
                violation: Violation::ChainMismatch { .. }
            })
        ));
    }

    #[test]
    fn a_rehashed_forgery_is_found_by_the_chain_of_its_successor() {
        // Changing a record and its leaf hash together still breaks the chain.
        let mut r = rows(5);
        r[1].1 = r[1].1.clone();
        let forged = r[1].1.iter().position(|b| *b == b'1').unwrap_or(0);
        r[1].1[forged] = b'2';
        r[1].2 = leaf_hash(&r[1].1);
        assert!(matches!(
            run(&r),
            Err(VerifyError {
                position: 2,
                violation: Violation::ChainMismatch { .. }
            })
        ));
    }
}
