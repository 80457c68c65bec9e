//! The offline verifier as an auditor uses it: an export file or a receipt, the log's public
//! key, nothing else.
//!
//! A generator builds a realistic log with `plan_batch` (the code that writes every real
//! record), signs a checkpoint every few events with a test key and writes the export
//! exactly as `GET /ledger/export` does (`serde_json::json!` lines, members sorted). The
//! untouched export is the control and must pass; each tampered copy must fail closed with
//! its own specific reason, at the right position and line. Receipts are built the way
//! `GET /events/{id}/receipt` builds them and go through the same kind of matrix.

use std::collections::HashMap;

use amtsbuch_api::cli::offline::{
    export_ok_line, export_warning, receipt_note, receipt_ok_line, run_export_cli, run_receipt_cli,
    verify_export, verify_export_on,
};
use amtsbuch_domain::chain::{chain_hash, to_hex};
use amtsbuch_domain::checkpoint::{sign_checkpoint, Checkpoint};
use amtsbuch_domain::export::{ExportFailure, ExportReason, ExportSummary, SignatureFailure};
use amtsbuch_domain::merkle::{inclusion_proof, leaf_hash, CompactRange, Hash, MemoryLeaves};
use amtsbuch_domain::note::{self, Signer, Verifier};
use amtsbuch_domain::receipt::{verify_receipt, ReceiptFailure};
use amtsbuch_domain::tlog_proof::TlogProof;
use amtsbuch_domain::{
    base64, jcs, plan_batch, AppendRequest, BatchContext, EventType, ExpectedVersion, NewEvent,
    PlannedRecord, StreamId, GENESIS_CHAIN,
};
use amtsbuch_testkit_api::TempDir;
use serde_json::{json, Value};

const ORIGIN: &str = "test.amtsbuch/log";

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, &[7u8; 32]).expect("signer")
}

/// A key with the log's name that the auditor does not trust.
fn impostor() -> Signer {
    Signer::from_seed(ORIGIN, &[8u8; 32]).expect("signer")
}

fn verifiers() -> Vec<Verifier> {
    vec![signer().verifier()]
}

/// A log of `n` events over a handful of streams, as `plan_batch` writes them. `pad` bytes
/// of text in each event's data set the record size. With `skip_version_at`, the stream of
/// that (0-based) event jumps one version ahead just before it, as a buggy or forged writer
/// would.
fn build_log(n: usize, pad: usize, skip_version_at: Option<usize>) -> Vec<PlannedRecord> {
    let mut ctx = BatchContext {
        head_position: 0,
        head_chain: GENESIS_CHAIN,
        versions: HashMap::new(),
        existing: HashMap::new(),
        recorded_at: amtsbuch_domain::record::truncate_micros(chrono::Utc::now()),
    };
    let text = "x".repeat(pad);
    let request = |i: usize| {
        let mut event = NewEvent::new(
            EventType::parse(if i.is_multiple_of(3) {
                "ConsentGiven"
            } else {
                "ApplicationSubmitted"
            })
            .expect("type"),
            json!({ "i": i, "text": text, "nested": { "event_id": "not-this-one" } }),
        );
        if i.is_multiple_of(4) {
            event.tenant = Some("14612000".into());
        }
        AppendRequest {
            stream: StreamId::parse(&format!("consent-{}", i % 7)).expect("stream"),
            expected: ExpectedVersion::Any,
            events: vec![event],
        }
    };
    let mut records = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let mut end = (i + 1000).min(n);
        if let Some(skip) = skip_version_at {
            if i == skip {
                let stream = request(i).stream;
                let current = ctx.versions.get(&stream).copied().unwrap_or(0);
                ctx.versions.insert(stream, current + 1);
                end = i + 1;
            } else if i < skip && skip < end {
                end = skip;
            }
        }
        let requests: Vec<AppendRequest> = (i..end).map(request).collect();
        let (plans, rows) = plan_batch(&mut ctx, &requests);
        assert!(plans.iter().all(Result::is_ok), "planning failed");
        records.extend(rows);
        i = end;
    }
    records
}

fn leaves(records: &[PlannedRecord]) -> Vec<Hash> {
    records.iter().map(|r| r.leaf_hash).collect()
}

fn range_at(records: &[PlannedRecord], size: usize) -> CompactRange {
    let mut range = CompactRange::new();
    for r in &records[..size] {
        range.push(r.leaf_hash);
    }
    range
}

fn signed_note(origin: &str, size: u64, root: Hash, signers: &[&Signer]) -> String {
    let checkpoint = Checkpoint {
        origin: origin.into(),
        size,
        root,
        extensions: vec![],
    };
    // `note::sign` rather than `sign_checkpoint`, so tests can also sign what a log never
    // would (another origin's body with this log's key).
    note::sign(&checkpoint.to_body(), signers).expect("sign")
}

fn checkpoint_note(records: &[PlannedRecord], size: usize) -> String {
    let checkpoint = Checkpoint {
        origin: ORIGIN.into(),
        size: size as u64,
        root: range_at(records, size).root(),
        extensions: vec![],
    };
    sign_checkpoint(&checkpoint, &[&signer()]).expect("sign")
}

fn record_line(r: &PlannedRecord) -> String {
    json!({ "kind": "record", "position": r.record.position, "record": base64::encode(&r.bytes), "leaf_hash": to_hex(&r.leaf_hash), "chain_hash": to_hex(&r.chain_hash) }).to_string()
}

fn checkpoint_line(size: u64, note: &str) -> String {
    json!({ "kind": "checkpoint", "size": size, "note": note }).to_string()
}

/// The export of positions `from..=to` with the checkpoints at every multiple of `every`
/// in `from - 1..=to`, line for line as the server writes it.
fn export(records: &[PlannedRecord], from: usize, to: usize, every: usize) -> Vec<String> {
    let mut lines = vec![json!({ "kind": "amtsbuch-export", "version": 1, "origin": ORIGIN, "from": from, "to": to }).to_string()];
    let checkpoint_at = |size: usize| size > 0 && size.is_multiple_of(every);
    if from > 1 {
        let range = range_at(records, from - 1);
        let nodes: Vec<String> = range.nodes().iter().map(|h| base64::encode(h)).collect();
        lines.push(json!({ "kind": "start", "size": from - 1, "chain_hash": to_hex(&records[from - 2].chain_hash), "compact_range": nodes }).to_string());
        if checkpoint_at(from - 1) {
            lines.push(checkpoint_line(
                (from - 1) as u64,
                &checkpoint_note(records, from - 1),
            ));
        }
    }
    let mut range = range_at(records, from - 1);
    for r in &records[from - 1..to] {
        lines.push(record_line(r));
        range.push(r.leaf_hash);
        let size = r.record.position as usize;
        if checkpoint_at(size) {
            let note = sign_checkpoint(
                &Checkpoint {
                    origin: ORIGIN.into(),
                    size: size as u64,
                    root: range.root(),
                    extensions: vec![],
                },
                &[&signer()],
            )
            .expect("sign");
            lines.push(checkpoint_line(size as u64, &note));
        }
    }
    lines
}

fn text(lines: &[String]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn verify(lines: &[String]) -> Result<ExportSummary, ExportFailure> {
    verify_export(text(lines).as_bytes(), &verifiers(), |_| {})
}

fn fails(lines: &[String]) -> ExportFailure {
    match verify(lines) {
        Ok(summary) => panic!("a tampered export passed: {summary:?}"),
        Err(failure) => failure,
    }
}

/// Index in `lines` of the record line of `position`.
fn line_of(lines: &[String], position: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["kind"] == "record" && v["position"] == position
        })
        .expect("record line")
}

/// Index in `lines` of the checkpoint line of `size`.
fn checkpoint_index(lines: &[String], size: u64) -> usize {
    lines
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_str(l).expect("json line");
            v["kind"] == "checkpoint" && v["size"] == size
        })
        .expect("checkpoint line")
}

/// Changes one JSON member of a line, re-serialized as the server would.
fn edit(line: &str, f: impl FnOnce(&mut Value)) -> String {
    let mut v: Value = serde_json::from_str(line).expect("json line");
    f(&mut v);
    v.to_string()
}

/// Changes the hex digit at `at` (to `0`, or to `1` if it was `0`).
fn flip_hex(hex: &str, at: usize) -> String {
    let digit = hex.as_bytes()[at];
    let flipped = if digit == b'0' { '1' } else { '0' };
    let mut s = hex.to_owned();
    s.replace_range(at..=at, &flipped.to_string());
    s
}

fn note_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).expect("json line");
    v["note"].as_str().expect("note").to_owned()
}

fn with_note(line: &str, note: &str) -> String {
    edit(line, |v| v["note"] = json!(note))
}

/// Positions are 1-based, line numbers too: the line number of `lines[index]`.
fn line_no(index: usize) -> u64 {
    index as u64 + 1
}

const N: usize = 60;
const EVERY: usize = 10;

// ----------------------------------------------------------------------------------------
// Controls
// ----------------------------------------------------------------------------------------

#[test]
fn an_untouched_export_verifies() {
    let records = build_log(N, 20, None);
    let summary = verify(&export(&records, 1, N, EVERY)).expect("control");
    assert_eq!(summary.origin, ORIGIN);
    assert_eq!(summary.from, 1);
    assert_eq!(summary.events, N as u64);
    assert_eq!(summary.checkpoints, (N / EVERY) as u64);
    assert_eq!(summary.head_position, N as u64);
    assert_eq!(summary.head_chain_hash, records[N - 1].chain_hash);
    assert_eq!(summary.head_root, range_at(&records, N).root());
    let last = summary.last_checkpoint.as_ref().expect("last checkpoint");
    assert_eq!(last.size, N as u64);
    assert_eq!(last.root_b64, base64::encode(&range_at(&records, N).root()));
    assert_eq!(summary.uncovered_events, 0);
    assert_eq!(export_warning(&summary), None);
    let line = export_ok_line(&summary);
    let expected = format!("ok: 60 events, 6 checkpoints, head 60 {}, ", last.root_b64);
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.ends_with(" events/s"), "{line}");
}

#[test]
fn partial_exports_verify_from_their_start_line() {
    let records = build_log(N, 20, None);
    // From just after a checkpoint (which then follows the start line), and from the middle
    // of a checkpoint interval, where the first checkpoint authenticates the start line.
    for from in [11, 17, 2, N] {
        let lines = export(&records, from, N, EVERY);
        let summary = verify(&lines).unwrap_or_else(|e| panic!("from {from}: {e}"));
        assert_eq!(summary.from, from as u64);
        assert_eq!(summary.events, (N - from + 1) as u64, "from {from}");
        assert_eq!(summary.head_chain_hash, records[N - 1].chain_hash);
        assert_eq!(summary.uncovered_events, 0, "from {from}");
    }
    // The checkpoint right after the start line counts too.
    let summary = verify(&export(&records, 11, N, EVERY)).expect("from 11");
    assert_eq!(summary.checkpoints, 6);
}

#[test]
fn events_after_the_last_checkpoint_pass_with_a_warning() {
    let records = build_log(N, 20, None);
    let summary = verify(&export(&records, 1, N - 3, EVERY)).expect("uncovered tail");
    assert_eq!(summary.events, (N - 3) as u64);
    assert_eq!(summary.uncovered_events, 7);
    assert_eq!(summary.last_checkpoint.as_ref().map(|c| c.size), Some(50));
    let warning = export_warning(&summary).expect("warning");
    assert!(
        warning.contains("7 events after the last checkpoint"),
        "{warning}"
    );
}

/// Leaf and chain hashes anyone can compute: an export that no signature covers is not
/// verified, whether it never had a checkpoint or its checkpoints were cut out (and its
/// records then changed and rehashed at will).
#[test]
fn an_export_without_a_signed_checkpoint_fails() {
    let records = build_log(N, 20, None);
    let failure = fails(&export(&records, 1, 9, EVERY));
    assert_eq!(failure.reason, ExportReason::Unsigned { events: 9 });
    assert_eq!(failure.position, None);

    let stripped: Vec<String> = export(&records, 1, N, EVERY)
        .into_iter()
        .filter(|l| !l.contains("\"kind\":\"checkpoint\""))
        .collect();
    assert_eq!(
        fails(&stripped).reason,
        ExportReason::Unsigned { events: N as u64 }
    );
    // A range whose only checkpoint is the one before its first record (it vouches for
    // the start line, not for a record of the range) is not covered either.
    let failure = fails(&export(&records, 11, 19, EVERY));
    assert_eq!(failure.reason, ExportReason::Unsigned { events: 9 });

    // The command says FAILED and exits 1.
    let dir = TempDir::new();
    let key = dir.join("log.vkey");
    std::fs::write(&key, format!("{}\n", signer().vkey())).expect("key");
    let file = dir.join("stripped.jsonl");
    std::fs::write(&file, text(&stripped)).expect("export");
    assert_eq!(run_export_cli(&file, &[key]).expect("run"), 1);
}

#[test]
fn a_witness_cosignature_from_an_unknown_key_is_ignored() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 20);
    let witness = Signer::from_seed("witness.example", &[9u8; 32]).expect("witness");
    let cosigned = signed_note(
        ORIGIN,
        20,
        range_at(&records, 20).root(),
        &[&signer(), &witness],
    );
    lines[i] = with_note(&lines[i], &cosigned);
    verify(&lines).expect("cosigned checkpoint");
}

#[test]
fn lines_may_come_with_their_members_in_any_order_and_spacing() {
    // The fast path takes the server's sorted form; anything else takes the general path
    // and must reach the same verdict.
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    for r in &records[..5] {
        let i = line_of(&lines, r.record.position);
        lines[i] = format!(
            "{{ \"position\": {}, \"kind\": \"record\", \"leaf_hash\": \"{}\", \"record\": \"{}\", \"chain_hash\": \"{}\" }}",
            r.record.position,
            to_hex(&r.leaf_hash),
            base64::encode(&r.bytes),
            to_hex(&r.chain_hash)
        );
    }
    assert_eq!(verify(&lines).expect("respaced").events, N as u64);
}

// ----------------------------------------------------------------------------------------
// Tamper matrix: records
// ----------------------------------------------------------------------------------------

#[test]
fn a_changed_record_byte_is_found_at_its_position() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 23);
    lines[i] = edit(&lines[i], |v| {
        let mut bytes = base64::decode(v["record"].as_str().expect("record")).expect("b64");
        let at = bytes.iter().position(|b| *b == b'x').expect("padding byte");
        bytes[at] = b'y';
        v["record"] = json!(base64::encode(&bytes));
    });
    let failure = fails(&lines);
    assert_eq!(failure.position, Some(23));
    assert_eq!(failure.line, line_no(i));
    assert!(
        matches!(failure.reason, ExportReason::LeafMismatch { .. }),
        "{failure}"
    );
    // Messages start with the words the auditor's guide lists.
    assert!(
        failure.to_string().starts_with(&format!(
            "at position 23 (line {}): leaf hash mismatch: ",
            line_no(i)
        )),
        "{failure}"
    );
}

#[test]
fn a_changed_leaf_hash_is_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 7);
    lines[i] = edit(&lines[i], |v| {
        v["leaf_hash"] = json!(flip_hex(v["leaf_hash"].as_str().expect("hex"), 10));
    });
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(7), line_no(i)));
    assert!(
        matches!(failure.reason, ExportReason::LeafMismatch { ref stored, .. } if *stored != to_hex(&records[6].leaf_hash)),
        "{failure}"
    );
}

#[test]
fn a_changed_chain_hash_is_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 31);
    lines[i] = edit(&lines[i], |v| {
        v["chain_hash"] = json!(flip_hex(v["chain_hash"].as_str().expect("hex"), 63));
    });
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(31), line_no(i)));
    assert!(
        matches!(failure.reason, ExportReason::ChainMismatch { ref computed, .. } if *computed == to_hex(&records[30].chain_hash)),
        "{failure}"
    );
}

#[test]
fn a_dropped_entry_is_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 14);
    lines.remove(i);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(15), line_no(i)));
    assert_eq!(
        failure.reason,
        ExportReason::PositionGap {
            expected: 14,
            found: 15
        }
    );
    assert!(failure.to_string().contains("position gap"), "{failure}");
}

#[test]
fn swapped_entries_are_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let (a, b) = (line_of(&lines, 4), line_of(&lines, 5));
    lines.swap(a, b);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(5), line_no(a)));
    assert_eq!(
        failure.reason,
        ExportReason::PositionGap {
            expected: 4,
            found: 5
        }
    );

    // A forger who also renumbers the lines is caught by the chain.
    let mut lines = export(&records, 1, N, EVERY);
    lines.swap(a, b);
    lines[a] = edit(&lines[a], |v| v["position"] = json!(4));
    lines[b] = edit(&lines[b], |v| v["position"] = json!(5));
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(4), line_no(a)));
    assert!(
        matches!(failure.reason, ExportReason::ChainMismatch { .. }),
        "{failure}"
    );
}

#[test]
fn a_repeated_line_is_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 12);
    let copy = lines[i].clone();
    lines.insert(i + 1, copy);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(12), line_no(i + 1)));
    assert_eq!(
        failure.reason,
        ExportReason::PositionReorder {
            expected: 13,
            found: 12
        }
    );
}

#[test]
fn a_truncated_export_is_found() {
    let records = build_log(N, 20, None);
    let lines = export(&records, 1, N, EVERY);
    // Cut after the record at 45: the header still promises 60.
    let keep = line_of(&lines, 45) + 1;
    let failure = fails(&lines[..keep]);
    assert_eq!(failure.position, Some(46));
    assert_eq!(failure.line, line_no(keep));
    assert_eq!(failure.reason, ExportReason::Truncated { to: 60, last: 45 });
    assert!(failure.to_string().contains("truncated"), "{failure}");

    // With only the last checkpoint cut off, every promised record is there, but the
    // last ones are no longer covered by a signature: the summary says so.
    let summary = verify(&lines[..lines.len() - 1]).expect("records complete");
    assert_eq!(summary.uncovered_events, 10);
    assert!(export_warning(&summary).is_some());
}

#[test]
fn data_after_the_promised_end_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    lines[0] = edit(&lines[0], |v| v["to"] = json!(50));
    let i = line_of(&lines, 51);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(51), line_no(i)));
    assert_eq!(failure.reason, ExportReason::TrailingData { to: 50 });
}

#[test]
fn an_event_appended_again_is_found() {
    // The same record bytes once more at the next position, with hashes a forger
    // recomputed: every hash checks out, the event id does not.
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let again = &records[41];
    let leaf = leaf_hash(&again.bytes);
    let chain = chain_hash(&records[N - 1].chain_hash, &leaf);
    lines.push(json!({ "kind": "record", "position": N + 1, "record": base64::encode(&again.bytes), "leaf_hash": to_hex(&leaf), "chain_hash": to_hex(&chain) }).to_string());
    lines[0] = edit(&lines[0], |v| v["to"] = json!(N + 1));
    let failure = fails(&lines);
    assert_eq!(failure.position, Some(N as u64 + 1));
    assert_eq!(failure.line, lines.len() as u64);
    assert_eq!(
        failure.reason,
        ExportReason::DuplicateEventId {
            event_id: again.record.event_id
        }
    );
}

/// Replaces the records from position `first` on with `forged` and recomputes their
/// hashes, as a forger with write access to the export (but not the key) would.
fn rehash_from(lines: &mut [String], records: &[PlannedRecord], forged: &[Vec<u8>], first: u64) {
    let mut chain = if first == 1 {
        GENESIS_CHAIN
    } else {
        records[first as usize - 2].chain_hash
    };
    for (k, bytes) in forged.iter().enumerate() {
        let position = first + k as u64;
        let i = line_of(lines, position);
        let leaf = leaf_hash(bytes);
        chain = chain_hash(&chain, &leaf);
        lines[i] = json!({ "kind": "record", "position": position, "record": base64::encode(bytes), "leaf_hash": to_hex(&leaf), "chain_hash": to_hex(&chain) }).to_string();
    }
}

#[test]
fn a_rehashed_forgery_is_caught_by_the_next_signed_root() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let mut forged: Vec<Vec<u8>> = records[24..].iter().map(|r| r.bytes.clone()).collect();
    let at = forged[0]
        .iter()
        .position(|b| *b == b'x')
        .expect("padding byte");
    forged[0][at] = b'y';
    rehash_from(&mut lines, &records, &forged, 25);
    let cp = checkpoint_index(&lines, 30);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(30), line_no(cp)));
    assert!(
        failure
            .to_string()
            .contains("root mismatch at checkpoint 30"),
        "{failure}"
    );
    match failure.reason {
        ExportReason::RootMismatch {
            size,
            signed,
            computed,
        } => {
            assert_eq!(size, 30);
            assert_eq!(signed, base64::encode(&range_at(&records, 30).root()));
            assert_ne!(signed, computed);
        }
        other => panic!("expected a root mismatch, got {other}"),
    }
}

#[test]
fn a_dropped_and_rehashed_entry_is_found_by_the_position_in_the_record() {
    let records = build_log(N, 20, None);
    let lines = export(&records, 1, N, EVERY);
    // Drop position 33 and renumber everything after it, with fresh hashes.
    let mut forged_lines = lines.clone();
    forged_lines.remove(line_of(&forged_lines, 33));
    for p in 34..=N as u64 {
        let i = line_of(&forged_lines, p);
        forged_lines[i] = edit(&forged_lines[i], |v| v["position"] = json!(p - 1));
    }
    let forged: Vec<Vec<u8>> = records[33..].iter().map(|r| r.bytes.clone()).collect();
    rehash_from(&mut forged_lines, &records, &forged, 33);
    let failure = fails(&forged_lines);
    assert_eq!(failure.position, Some(33));
    assert_eq!(
        failure.reason,
        ExportReason::PositionField {
            in_record: 34,
            stored: 33
        }
    );
}

#[test]
fn a_stream_version_gap_is_found() {
    let records = build_log(N, 20, Some(36));
    let failure = fails(&export(&records, 1, N, EVERY));
    assert_eq!(failure.position, Some(37));
    let stream = records[36].record.stream_id.as_str().to_owned();
    let found = records[36].record.stream_version;
    assert_eq!(
        failure.reason,
        ExportReason::StreamVersion {
            stream,
            expected: found - 1,
            found
        }
    );
}

#[test]
fn an_unparseable_record_is_found_even_with_correct_hashes() {
    let records = build_log(N, 20, None);
    for bad in [
        b"not json".to_vec(),
        String::from_utf8(records[4].bytes.clone())
            .expect("utf8")
            .replace("consent-4", "Consent-4")
            .into_bytes(),
        String::from_utf8(records[4].bytes.clone())
            .expect("utf8")
            .replace("\"occurred_at\":\"", "\"occurred_at\":\"x")
            .into_bytes(),
    ] {
        let mut lines = export(&records, 1, N, EVERY);
        let mut forged: Vec<Vec<u8>> = records[4..].iter().map(|r| r.bytes.clone()).collect();
        forged[0] = bad;
        rehash_from(&mut lines, &records, &forged, 5);
        let failure = fails(&lines);
        assert_eq!(failure.position, Some(5));
        assert!(
            matches!(failure.reason, ExportReason::RecordUnparseable(_)),
            "{failure}"
        );
    }
}

#[test]
fn malformed_lines_are_named_by_line_number() {
    let records = build_log(N, 20, None);
    let lines = export(&records, 1, N, EVERY);
    let i = line_of(&lines, 9);
    let cases: Vec<(String, Option<u64>)> = vec![
        ("garbage".into(), None),
        (String::new(), None),
        (
            lines[i].replace("\"kind\":\"record\"", "\"kind\":\"recrod\""),
            None,
        ),
        (
            edit(&lines[i], |v| {
                v["leaf_hash"] = json!(v["leaf_hash"].as_str().expect("hex").to_uppercase())
            }),
            Some(9),
        ),
        (
            edit(&lines[i], |v| v["record"] = json!("not base64!")),
            Some(9),
        ),
        (edit(&lines[i], |v| v["extra"] = json!(1)), None),
        (lines[0].clone(), None),
    ];
    for (line, position) in cases {
        let mut tampered = lines.clone();
        tampered[i] = line.clone();
        let failure = fails(&tampered);
        assert_eq!(failure.line, line_no(i), "{line}");
        assert_eq!(failure.position, position, "{line}");
        assert!(
            matches!(failure.reason, ExportReason::MalformedLine(_)),
            "{line}: {failure}"
        );
    }
}

// ----------------------------------------------------------------------------------------
// Tamper matrix: header and start line
// ----------------------------------------------------------------------------------------

#[test]
fn the_header_must_come_first_and_be_understood() {
    let records = build_log(N, 20, None);
    let lines = export(&records, 1, N, EVERY);

    let failure = verify_export(&b""[..], &verifiers(), |_| {}).expect_err("empty");
    assert_eq!(failure.line, 1);
    assert!(matches!(failure.reason, ExportReason::HeaderMissing { .. }));

    let failure = fails(&lines[1..]);
    assert_eq!((failure.position, failure.line), (None, 1));
    assert!(matches!(failure.reason, ExportReason::HeaderMissing { .. }));

    let mut newer = lines.clone();
    newer[0] = edit(&newer[0], |v| {
        v["version"] = json!(2);
        v["compression"] = json!("zstd");
    });
    assert_eq!(
        fails(&newer).reason,
        ExportReason::UnsupportedVersion { version: 2 }
    );

    for bad in [json!({ "from": 0 }), json!({ "from": 61, "to": 60 })] {
        let mut range = lines.clone();
        range[0] = edit(&range[0], |v| {
            for (k, x) in bad.as_object().expect("object") {
                v[k] = x.clone();
            }
        });
        assert!(
            matches!(fails(&range).reason, ExportReason::HeaderInvalid(_)),
            "{bad}"
        );
    }
}

#[test]
fn an_export_of_another_origin_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    lines[0] = edit(&lines[0], |v| v["origin"] = json!("other.example/log"));
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (None, 1));
    assert!(
        matches!(failure.reason, ExportReason::OriginNotTrusted { ref origin, .. } if origin == "other.example/log"),
        "{failure}"
    );
}

#[test]
fn a_checkpoint_of_another_origin_is_refused() {
    // Validly signed by the trusted key, but for another log's origin.
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 20);
    let note = signed_note(
        "other.example/log",
        20,
        range_at(&records, 20).root(),
        &[&signer()],
    );
    lines[i] = with_note(&lines[i], &note);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(20), line_no(i)));
    assert_eq!(
        failure.reason,
        ExportReason::OriginMismatch {
            expected: ORIGIN.into(),
            found: "other.example/log".into()
        }
    );
}

#[test]
fn a_partial_export_needs_its_start_line() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 17, N, EVERY);
    lines.remove(1);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (None, 2));
    assert_eq!(failure.reason, ExportReason::StartMissing { from: 17 });

    let mut lines = export(&records, 17, N, EVERY);
    lines[1] = edit(&lines[1], |v| v["size"] = json!(15));
    assert!(matches!(
        fails(&lines).reason,
        ExportReason::StartInvalid(_)
    ));

    // A start line in a full export is out of place.
    let mut lines = export(&records, 1, N, EVERY);
    let start = export(&records, 17, N, EVERY)[1].clone();
    lines.insert(1, start);
    let failure = fails(&lines);
    assert_eq!(failure.line, 2);
    assert!(matches!(failure.reason, ExportReason::MalformedLine(_)));
}

#[test]
fn a_false_start_line_is_caught_by_the_first_signed_root() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 17, N, EVERY);
    lines[1] = edit(&lines[1], |v| {
        let first = v["compact_range"][0].as_str().expect("node").to_owned();
        let mut node = base64::decode(&first).expect("b64");
        node[0] ^= 1;
        v["compact_range"][0] = json!(base64::encode(&node));
    });
    let cp = checkpoint_index(&lines, 20);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(20), line_no(cp)));
    assert!(
        matches!(failure.reason, ExportReason::RootMismatch { size: 20, .. }),
        "{failure}"
    );
}

// ----------------------------------------------------------------------------------------
// Tamper matrix: checkpoints
// ----------------------------------------------------------------------------------------

/// Replaces the text line `line` (0-based: origin, size, root) of the checkpoint note in
/// `lines[i]`, keeping the signature.
fn edit_note_text(lines: &mut [String], i: usize, line: usize, f: impl FnOnce(&str) -> String) {
    let note = note_of(&lines[i]);
    let (text, signatures) = note.split_once("\n\n").expect("note");
    let mut text_lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    text_lines[line] = f(&text_lines[line]);
    let changed = format!("{}\n\n{}", text_lines.join("\n"), signatures);
    lines[i] = with_note(&lines[i], &changed);
}

/// Replaces the signature bytes (after the 4-byte key ID) of the note in `lines[i]`.
fn edit_signature(lines: &mut [String], i: usize, f: impl FnOnce(&mut Vec<u8>)) {
    let note = note_of(&lines[i]);
    let (text, sig_line) = note.split_once("\n\n").expect("note");
    let (prefix, b64) = sig_line
        .trim_end()
        .rsplit_once(' ')
        .expect("signature line");
    let mut raw = base64::decode(b64).expect("b64");
    f(&mut raw);
    let changed = format!("{text}\n\n{prefix} {}\n", base64::encode(&raw));
    lines[i] = with_note(&lines[i], &changed);
}

fn assert_bad_signature(failure: &ExportFailure) {
    match &failure.reason {
        ExportReason::CheckpointSignature(SignatureFailure::BadSignature { key }) => {
            assert_eq!(*key, signer().key_ref());
        }
        other => panic!("expected a bad signature, got {other}"),
    }
}

#[test]
fn a_changed_checkpoint_root_line_breaks_the_signature() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 40);
    edit_note_text(&mut lines, i, 2, |root| {
        let mut hash = base64::decode(root).expect("b64");
        hash[5] ^= 1;
        base64::encode(&hash)
    });
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(40), line_no(i)));
    assert_bad_signature(&failure);
}

#[test]
fn a_changed_checkpoint_size_line_breaks_the_signature() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 40);
    edit_note_text(&mut lines, i, 1, |_| "41".into());
    let failure = fails(&lines);
    assert_eq!(failure.line, line_no(i));
    assert_bad_signature(&failure);

    // The line's own size member must agree with the signed one.
    let mut lines = export(&records, 1, N, EVERY);
    lines[i] = edit(&lines[i], |v| v["size"] = json!(41));
    let failure = fails(&lines);
    assert_eq!(failure.line, line_no(i));
    assert_eq!(
        failure.reason,
        ExportReason::CheckpointSizeField {
            line_size: 41,
            note_size: 40
        }
    );
}

#[test]
fn a_changed_signature_byte_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 10);
    edit_signature(&mut lines, i, |raw| raw[20] ^= 0x40);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(10), line_no(i)));
    assert_bad_signature(&failure);
}

#[test]
fn a_changed_key_id_leaves_no_trusted_signature() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 10);
    edit_signature(&mut lines, i, |raw| raw[0] ^= 1);
    let failure = fails(&lines);
    assert_eq!(failure.line, line_no(i));
    assert!(
        matches!(
            failure.reason,
            ExportReason::CheckpointSignature(SignatureFailure::NoTrustedKey { .. })
        ),
        "{failure}"
    );
}

#[test]
fn a_checkpoint_signed_only_by_an_unknown_key_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 30);
    let note = signed_note(ORIGIN, 30, range_at(&records, 30).root(), &[&impostor()]);
    lines[i] = with_note(&lines[i], &note);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(30), line_no(i)));
    match failure.reason {
        ExportReason::CheckpointSignature(SignatureFailure::NoTrustedKey { signers, trusted }) => {
            assert_eq!(signers, impostor().key_ref().to_string());
            assert_eq!(trusted, signer().key_ref().to_string());
        }
        other => panic!("expected no trusted signature, got {other}"),
    }
}

#[test]
fn a_known_key_with_a_bad_signature_rejects_the_checkpoint_despite_a_good_one() {
    // An impostor's signature presented under the trusted key's name and ID, beside a
    // valid signature: one bad signature from a known key rejects the note.
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 30);
    let root = range_at(&records, 30).root();
    let good = signed_note(ORIGIN, 30, root, &[&signer()]);
    let forged = signed_note(ORIGIN, 30, root, &[&impostor()]);
    let forged_sig = forged.split_once("\n\n").expect("note").1;
    let (prefix, b64) = forged_sig.trim_end().rsplit_once(' ').expect("sig line");
    let mut raw = base64::decode(b64).expect("b64");
    raw[..4].copy_from_slice(&signer().key_id().to_be_bytes());
    let note = format!("{good}{prefix} {}\n", base64::encode(&raw));
    lines[i] = with_note(&lines[i], &note);
    let failure = fails(&lines);
    assert_eq!(failure.line, line_no(i));
    assert_bad_signature(&failure);
}

#[test]
fn a_rollback_to_an_older_checkpoint_is_found() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let old = lines[checkpoint_index(&lines, 20)].clone();
    let i = checkpoint_index(&lines, 40) + 1;
    lines.insert(i, old);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(40), line_no(i)));
    assert_eq!(
        failure.reason,
        ExportReason::Rollback {
            previous_size: 40,
            size: 20
        }
    );
}

#[test]
fn a_fork_is_reported_with_both_signed_notes() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let first = checkpoint_index(&lines, 20);
    let honest = note_of(&lines[first]);
    // A second history: the same size, another root, validly signed by the log's key.
    let mut other: Vec<PlannedRecord> = records[..20].to_vec();
    other[19].leaf_hash = leaf_hash(b"another history");
    let forked = checkpoint_note(&other, 20);
    lines.insert(first + 1, checkpoint_line(20, &forked));
    let failure = fails(&lines);
    assert_eq!(
        (failure.position, failure.line),
        (Some(20), line_no(first + 1))
    );
    match &failure.reason {
        ExportReason::Fork {
            size,
            first_line,
            first_note,
            second_note,
        } => {
            assert_eq!(*size, 20);
            assert_eq!(*first_line, line_no(first));
            assert_eq!(*first_note, honest);
            assert_eq!(*second_note, forked);
        }
        other => panic!("expected a fork, got {other}"),
    }
    let shown = failure.to_string();
    assert!(
        shown.contains(&honest) && shown.contains(&forked),
        "{shown}"
    );

    // The fork also shows when the other history's checkpoint comes later.
    let mut lines = export(&records, 1, N, EVERY);
    let later = checkpoint_index(&lines, 30) + 1;
    lines.insert(later, checkpoint_line(20, &forked));
    assert!(matches!(
        fails(&lines).reason,
        ExportReason::Fork { size: 20, .. }
    ));
}

#[test]
fn the_same_checkpoint_twice_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 50);
    let copy = lines[i].clone();
    lines.insert(i + 1, copy);
    assert_eq!(
        fails(&lines).reason,
        ExportReason::DuplicateCheckpoint { size: 50 }
    );
}

#[test]
fn a_checkpoint_in_the_wrong_place_is_refused() {
    let records = build_log(N, 20, None);
    let mut lines = export(&records, 1, N, EVERY);
    let i = checkpoint_index(&lines, 20);
    let moved = lines.remove(i);
    let after = line_of(&lines, 22) + 1;
    lines.insert(after, moved);
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(22), line_no(after)));
    assert_eq!(
        failure.reason,
        ExportReason::CheckpointSizeMismatch {
            tree_size: 22,
            checkpoint_size: 20
        }
    );
}

// ----------------------------------------------------------------------------------------
// Larger logs: batches, progress, throughput
// ----------------------------------------------------------------------------------------

#[test]
fn tampering_deep_in_a_large_export_is_found_at_its_position() {
    // Several reading batches long, so the failure crosses the hand-over between threads.
    let n = 10_000;
    let records = build_log(n, 20, None);
    let mut lines = export(&records, 1, n, 1000);
    let i = line_of(&lines, 9_001);
    lines[i] = edit(&lines[i], |v| {
        v["chain_hash"] = json!(flip_hex(v["chain_hash"].as_str().expect("hex"), 0));
    });
    let failure = fails(&lines);
    assert_eq!((failure.position, failure.line), (Some(9_001), line_no(i)));
    assert!(matches!(failure.reason, ExportReason::ChainMismatch { .. }));
}

/// The verifier reads on one thread and checks on another where there are two CPUs; the
/// verdicts must not depend on it.
#[test]
fn one_thread_and_two_threads_reach_the_same_verdicts() {
    let records = build_log(5, 20, None);
    let lines = export(&records, 1, 5, 5);
    let good = text(&lines);
    let mut bad_lines = lines.clone();
    bad_lines.swap(2, 3);
    let bad = text(&bad_lines);

    let run = |text: &str, threads: usize| {
        verify_export_on(text.as_bytes(), &verifiers(), |_| {}, threads).map(|mut s| {
            s.elapsed = std::time::Duration::ZERO;
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

#[test]
fn throughput_is_reported() {
    // 20,000 records of 512 bytes by default, 200,000 with AMTSBUCH_SLOW_TESTS=1. The rate
    // is printed, not asserted: it depends on the machine and the build profile. On the
    // 2-vCPU development VM (AMD EPYC, SHA-NI), 200,000 records: about 1.0-1.1 million
    // events/s in a release build (`cargo test --release`), about 60,000 in the default
    // debug build of the test profile.
    let n = if std::env::var("AMTSBUCH_SLOW_TESTS").as_deref() == Ok("1") {
        200_000
    } else {
        20_000
    };
    let records = build_log(n, 130, None);
    let export_text = text(&export(&records, 1, n, 1000));
    let mut calls = 0u64;
    let mut last = 0;
    let summary = verify_export(export_text.as_bytes(), &verifiers(), |done| {
        assert!(done >= last, "progress went backwards");
        last = done;
        calls += 1;
    })
    .expect("control");
    assert_eq!(summary.events, n as u64);
    assert_eq!(summary.checkpoints, (n / 1000) as u64);
    assert_eq!(last, n as u64, "the last progress call reports every event");
    assert!(calls >= 2);
    let avg = records.iter().map(|r| r.bytes.len()).sum::<usize>() / n;
    println!(
        "offline verifier: {} events ({} bytes per record, {} MB export) in {:.3} s = {:.0} events/s",
        summary.events,
        avg,
        export_text.len() / 1_000_000,
        summary.elapsed.as_secs_f64(),
        summary.events_per_second()
    );
}

// ----------------------------------------------------------------------------------------
// Receipts
// ----------------------------------------------------------------------------------------

/// A receipt for the record at `position` against the checkpoint of `size`, as the server
/// builds it.
fn receipt(records: &[PlannedRecord], position: usize, size: usize, signer: &Signer) -> TlogProof {
    let index = position as u64 - 1;
    let leaves = leaves(&records[..size]);
    let proof =
        inclusion_proof(index, size as u64, &mut MemoryLeaves::new(&leaves)).expect("proof");
    let r = &records[position - 1];
    let extra = json!({ "event_id": r.record.event_id, "leaf_hash": to_hex(&r.leaf_hash) });
    TlogProof {
        extra: Some(jcs::canonicalize(&extra).expect("canonical")),
        index,
        inclusion_proof: proof,
        checkpoint: signed_note(
            ORIGIN,
            size as u64,
            range_at(records, size).root(),
            &[signer],
        ),
    }
}

#[test]
fn a_valid_receipt_verifies_with_and_without_the_record() {
    let records = build_log(N, 20, None);
    let proof = receipt(&records, 23, 50, &signer()).to_text();
    let r = &records[22];

    let summary = verify_receipt(proof.as_bytes(), Some(&r.bytes), &verifiers()).expect("receipt");
    assert!(summary.record_checked);
    assert_eq!(summary.position(), 23);
    assert_eq!(summary.event_id, Some(r.record.event_id));
    assert_eq!(summary.leaf_hash, r.leaf_hash);
    assert_eq!(summary.checkpoint_size, 50);
    assert_eq!(summary.checkpoint_root, range_at(&records, 50).root());
    assert_eq!(summary.verified_by, vec![signer().key_ref()]);
    assert_eq!(summary.origin, ORIGIN);

    let line = receipt_ok_line(&summary);
    assert!(
        line.starts_with(&format!("ok: event {} (leaf ", r.record.event_id)),
        "{line}"
    );
    assert!(
        line.contains("is at position 23 of test.amtsbuch/log"),
        "{line}"
    );
    assert_eq!(receipt_note(&summary), None);

    let summary = verify_receipt(proof.as_bytes(), None, &verifiers()).expect("receipt");
    assert!(!summary.record_checked);
    assert_eq!(summary.leaf_hash, r.leaf_hash);
    assert_eq!(summary.event_id, Some(r.record.event_id));
    // Without the record, the event id is only the receipt's word.
    let line = receipt_ok_line(&summary);
    assert!(
        line.starts_with(&format!(
            "ok: leaf {} is at position 23",
            to_hex(&r.leaf_hash)
        )),
        "{line}"
    );
    let note = receipt_note(&summary).expect("note");
    assert!(note.contains("not checked"), "{note}");
    assert!(note.contains(&r.record.event_id.to_string()), "{note}");
}

#[test]
fn a_flipped_proof_hash_is_refused() {
    let records = build_log(N, 20, None);
    let mut proof = receipt(&records, 23, 50, &signer());
    proof.inclusion_proof[2][7] ^= 1;
    for record in [None, Some(records[22].bytes.as_slice())] {
        assert_eq!(
            verify_receipt(proof.to_text().as_bytes(), record, &verifiers()),
            Err(ReceiptFailure::Inclusion(
                amtsbuch_domain::merkle::MerkleError::RootMismatch
            ))
        );
    }
}

#[test]
fn a_wrong_index_is_refused() {
    let records = build_log(N, 20, None);
    let mut proof = receipt(&records, 23, 50, &signer());
    proof.index = 21;
    let text = proof.to_text();
    assert!(matches!(
        verify_receipt(text.as_bytes(), None, &verifiers()),
        Err(ReceiptFailure::Inclusion(_))
    ));
    assert_eq!(
        verify_receipt(text.as_bytes(), Some(&records[22].bytes), &verifiers()),
        Err(ReceiptFailure::IndexMismatch {
            index: 21,
            position: 23
        })
    );
}

#[test]
fn a_record_that_does_not_match_the_receipt_is_refused() {
    let records = build_log(N, 20, None);
    let proof = receipt(&records, 23, 50, &signer()).to_text();

    // Another event's record.
    assert_eq!(
        verify_receipt(proof.as_bytes(), Some(&records[24].bytes), &verifiers()),
        Err(ReceiptFailure::EventIdMismatch {
            receipt: records[22].record.event_id,
            record: records[24].record.event_id
        })
    );

    // The right event with a changed byte.
    let mut changed = records[22].bytes.clone();
    let at = changed.iter().position(|b| *b == b'x').expect("padding");
    changed[at] = b'y';
    assert!(matches!(
        verify_receipt(proof.as_bytes(), Some(&changed), &verifiers()),
        Err(ReceiptFailure::LeafMismatch { .. })
    ));

    // The changed record against a receipt without extra: the proof itself refuses it.
    let mut bare = receipt(&records, 23, 50, &signer());
    bare.extra = None;
    assert_eq!(
        verify_receipt(bare.to_text().as_bytes(), Some(&changed), &verifiers()),
        Err(ReceiptFailure::Inclusion(
            amtsbuch_domain::merkle::MerkleError::RootMismatch
        ))
    );
    assert_eq!(
        verify_receipt(bare.to_text().as_bytes(), None, &verifiers()),
        Err(ReceiptFailure::MissingExtra)
    );
    assert!(verify_receipt(
        bare.to_text().as_bytes(),
        Some(&records[22].bytes),
        &verifiers()
    )
    .is_ok());

    assert!(matches!(
        verify_receipt(proof.as_bytes(), Some(b"not a record"), &verifiers()),
        Err(ReceiptFailure::RecordUnparseable(_))
    ));
}

#[test]
fn a_receipt_signed_by_an_unknown_key_is_refused() {
    let records = build_log(N, 20, None);
    let proof = receipt(&records, 23, 50, &impostor()).to_text();
    assert!(matches!(
        verify_receipt(proof.as_bytes(), Some(&records[22].bytes), &verifiers()),
        Err(ReceiptFailure::CheckpointSignature(
            SignatureFailure::NoTrustedKey { .. }
        ))
    ));

    // A checkpoint of a log whose name no trusted key bears.
    let mut proof = receipt(&records, 23, 50, &signer());
    let other = Signer::from_seed("other.example/log", &[7u8; 32]).expect("signer");
    proof.checkpoint = signed_note(
        "other.example/log",
        50,
        range_at(&records, 50).root(),
        &[&other],
    );
    assert!(matches!(
        verify_receipt(proof.to_text().as_bytes(), None, &verifiers()),
        Err(ReceiptFailure::OriginNotTrusted { .. })
    ));
}

#[test]
fn a_receipt_with_a_changed_checkpoint_is_refused() {
    let records = build_log(N, 20, None);
    let proof = receipt(&records, 23, 50, &signer()).to_text();
    let tampered = proof.replacen("\n50\n", "\n51\n", 1);
    assert_ne!(tampered, proof);
    assert!(matches!(
        verify_receipt(tampered.as_bytes(), None, &verifiers()),
        Err(ReceiptFailure::CheckpointSignature(
            SignatureFailure::BadSignature { .. }
        ))
    ));
}

// ----------------------------------------------------------------------------------------
// Command line
// ----------------------------------------------------------------------------------------

#[test]
fn the_export_command_exits_0_for_a_good_export_and_1_for_a_bad_one() {
    let dir = TempDir::new();
    let key = dir.join("log.vkey");
    std::fs::write(&key, format!("# the log's key\n\n{}\n", signer().vkey())).expect("key");
    let keys = [key];
    let records = build_log(N, 20, None);
    let good = dir.join("good.jsonl");
    let lines = export(&records, 1, N, EVERY);
    std::fs::write(&good, text(&lines)).expect("export");
    assert_eq!(run_export_cli(&good, &keys).expect("run"), 0);

    let mut tampered = lines.clone();
    tampered.remove(line_of(&tampered, 3));
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, text(&tampered)).expect("export");
    assert_eq!(run_export_cli(&bad, &keys).expect("run"), 1);

    // Unusable arguments are errors, not verdicts.
    assert!(run_export_cli(&dir.join("missing.jsonl"), &keys).is_err());
    let empty_key = dir.join("empty.vkey");
    std::fs::write(&empty_key, "# nothing\n").expect("key");
    assert!(run_export_cli(&good, &[empty_key]).is_err());
}

#[test]
fn the_receipt_command_exits_0_for_a_good_receipt_and_1_for_a_bad_one() {
    let dir = TempDir::new();
    let key = dir.join("log.vkey");
    std::fs::write(&key, format!("{}\n", signer().vkey())).expect("key");
    let keys = [key];
    let records = build_log(N, 20, None);
    let proof = dir.join("receipt.tlog-proof");
    std::fs::write(&proof, receipt(&records, 5, 20, &signer()).to_text()).expect("proof");
    let record = dir.join("record.json");
    std::fs::write(&record, &records[4].bytes).expect("record");
    let other = dir.join("other.json");
    std::fs::write(&other, &records[5].bytes).expect("record");

    assert_eq!(run_receipt_cli(&proof, &keys, None).expect("run"), 0);
    assert_eq!(
        run_receipt_cli(&proof, &keys, Some(&record)).expect("run"),
        0
    );
    assert_eq!(
        run_receipt_cli(&proof, &keys, Some(&other)).expect("run"),
        1
    );
}

/// A command checks every input before it creates anything: a mistyped projection name, a
/// missing key-encryption key file or a bad origin leaves no database, schema or directory
/// behind, and a database URL that names no event store is not created or migrated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_check_their_inputs_before_they_create_anything() {
    use amtsbuch_api::cli::admin::{kek, projections, KekCommand, ProjectionsCommand};
    let dir = TempDir::new();
    let url = |name: &str| format!("sqlite://{}", dir.join(name).join("x.db").display());

    let unknown = projections(ProjectionsCommand::Rebuild {
        name: "nope".into(),
        database_url: url("typo"),
    })
    .await;
    assert!(unknown.is_err_and(|e| e.to_string().contains("no projection named")));
    assert!(!dir.join("typo").exists(), "a database was created");

    let no_store = projections(ProjectionsCommand::Rebuild {
        name: "streams".into(),
        database_url: url("nowhere"),
    })
    .await;
    assert!(no_store.is_err());
    assert!(!dir.join("nowhere").exists(), "a database was created");

    let missing_kek = kek(KekCommand::Rewrap {
        database_url: url("rewrap"),
        kek: vec![dir.join("missing.kek")],
    })
    .await;
    assert!(missing_kek.is_err());
    assert!(!dir.join("rewrap").exists(), "a database was created");

    let keys = dir.join("keys");
    assert!(amtsbuch_api::keys::generate("bad origin\n", &keys).is_err());
    assert!(!keys.exists(), "a key directory was created");
}
