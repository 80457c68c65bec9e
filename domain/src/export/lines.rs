//! Reading an export: lines into entries, in batches.
//!
//! A record line that lies whole in the input's buffer, in the plain shape the server
//! writes, is taken apart where it lies (`scan_record`); every other line goes through
//! `serde_json` and the strict decoders, which accept a superset with the same result and
//! word the error. Each record's bytes are decoded into the batch's buffer and hashed here,
//! so that a reader on one thread and an [`ExportWalk`](super::ExportWalk) on another
//! share the work.

use std::io::{BufRead, Read};
use std::ops::Range;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::scan::{hex_hash, Scanner};
use super::{ExportReason, EXPORT_KIND, EXPORT_VERSION, MAX_LINE_BYTES};
use crate::base64;
use crate::chain::Hash;
use crate::merkle::{leaf_hash, CompactRange, MerkleError};

/// Records handed from the reading to the checking thread at a time: enough to make the
/// hand-over cost vanish, small enough that the progress line moves.
const BATCH_RECORDS: usize = 4096;

/// Bytes of decoded records per batch, so that a run of large records stays bounded too.
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// The header line's members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HeaderLine {
    // Named here only so that `deny_unknown_fields` admits them: `parse_header` checks
    // them before this struct is read.
    #[serde(rename = "kind")]
    _kind: IgnoredAny,
    #[serde(rename = "version")]
    _version: IgnoredAny,
    pub(super) origin: String,
    pub(super) from: u64,
    pub(super) to: u64,
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
pub(super) enum Entry {
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
pub struct Batch {
    pub(super) bytes: Vec<u8>,
    pub(super) entries: Vec<Entry>,
}

impl Batch {
    /// Empties the batch for reuse, keeping its buffers.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.entries.clear();
    }
}

/// Reads the export and turns its lines into entries.
#[derive(Debug)]
pub struct ExportReader<R> {
    input: R,
    /// The current line, on the slow path.
    buf: Vec<u8>,
    /// The number of the line last read (1-based).
    line: u64,
    /// Set after a bad line or the end of input: nothing more is read.
    done: bool,
}

impl<R: BufRead> ExportReader<R> {
    pub fn new(input: R) -> Self {
        Self {
            input,
            buf: Vec::with_capacity(4096),
            line: 0,
            done: false,
        }
    }

    /// The number of the last line read (1-based), for a report of a truncated export.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// The next line without its newline, `Ok(None)` at the end of the input.
    pub(super) fn next_line(&mut self) -> Result<Option<&[u8]>, ExportReason> {
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

    /// Adds entries to `batch` until it is full; returns whether there may be more. After
    /// a line that cannot be used, nothing more is read.
    pub fn fill(&mut self, batch: &mut Batch) -> bool {
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

pub(super) fn parse_header(line: &[u8]) -> Result<HeaderLine, ExportReason> {
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
pub(super) fn parse_start(line: &[u8], from: u64) -> Result<(Hash, CompactRange), ExportReason> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
