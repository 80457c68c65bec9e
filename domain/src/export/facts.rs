//! What the export walk needs from a record's bytes, read without building the record.
//!
//! Stored records are canonical JSON, so nearly all of them are read by a walk over the
//! one canonical layout `EventRecord::to_bytes` writes, which borrows what the checks need
//! and validates the rest. Everything else is parsed in full by `EventRecord::from_bytes`,
//! so that exactly the records `ChainVerifier` accepts are accepted.

use std::borrow::Cow;
use std::ops::Range;

use uuid::Uuid;

use super::scan::Scanner;
use crate::record::{format_timestamp, EventRecord};

/// Whether `t` is a timestamp as records spell it, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, of a
/// real instant from 1970 on. Such a text is always one that the record's own parser
/// (`DateTime::parse_from_rfc3339`) accepts; anything else (other spellings, leap
/// seconds, earlier years) is left to that parser. This is only a shortcut: it costs a
/// fraction of the general parser, twice per record.
pub(super) fn is_canonical_timestamp(t: &str) -> bool {
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
pub(super) struct RecordFacts<'a> {
    pub(super) event_id: Uuid,
    pub(super) stream_id: Cow<'a, str>,
    pub(super) stream_version: u64,
    pub(super) position: u64,
    pub(super) event_type: Cow<'a, str>,
    pub(super) occurred_at: Cow<'a, str>,
    pub(super) recorded_at: Cow<'a, str>,
}

/// Reads a record's facts, accepting exactly what `EventRecord::from_bytes` (and so
/// `ChainVerifier`) accepts; names and timestamps are checked by the caller.
///
/// Stored records are canonical JSON, so nearly all of them are read by
/// [`canonical_facts`], which walks the one canonical layout without building anything.
/// The rest (escapes in names, members the fast path does not know, exponents, …) are
/// parsed in full, which also gives the error message.
pub(super) fn record_facts(bytes: &[u8]) -> Result<RecordFacts<'_>, String> {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::record::SealedSection;
    use crate::test_rng::Rng;
    use crate::{
        plan_batch, AppendRequest, BatchContext, EventType, ExpectedVersion, NewEvent, StreamId,
        GENESIS_CHAIN,
    };

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
}
