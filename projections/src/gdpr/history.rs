//! A subject's consents answered from the events: the DPO's replay as of any instant
//! (`consent_history`) and the current states a disclosure is checked against
//! (`current_consents`).
//!
//! One query reads everything: the stored records of every consent stream the `consents`
//! index lists for the subject, plus every consent stream with an event after the index's
//! checkpoint — the streams the index may not know yet. It joins on `events`'s unique
//! `(stream_id, stream_version)` index, so its cost grows with the subject's own events,
//! not with the log. The records are then parsed and folded with the domain's `as_of` and
//! `evolve`. Because the events come from the log and not from the read model, the answer
//! does not lag behind the log: a withdrawal counts the moment it is committed, and a
//! consent given a moment ago is there although the index has not caught up.
//!
//! A stream belongs to the subject its `ConsentGiven` names. In such a stream every record
//! must read as a consent event; one that does not is reported
//! ([`GdprQueryError::Unreadable`]) rather than left out, since leaving out a withdrawal
//! would make a consent look valid.

use std::collections::HashMap;

use amtsbuch_domain::event::{decode, DomainEvent};
use amtsbuch_domain::gdpr::consent::{
    self, Consent, ConsentEvent, ConsentState, ConsentStatus, Ending,
};
use amtsbuch_domain::gdpr::{AccountId, ConsentId};
use amtsbuch_domain::{EventRecord, EventType, Hash, StreamId};
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

use super::{hex, opt_ts, ts, GdprQueryError};
use crate::db::{Dialect, ReadDb, Value};

/// One stored event of a consent stream, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedEvent {
    pub position: u64,
    pub event_id: Uuid,
    pub stream_version: u64,
    pub event_type: EventType,
    /// The effective instant.
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    /// The RFC 6962 leaf hash of the stored record, for an inclusion proof.
    pub leaf_hash: Hash,
}

impl LoggedEvent {
    pub fn leaf_hash_hex(&self) -> String {
        hex(&self.leaf_hash)
    }

    pub fn to_json(&self) -> Json {
        json!({
            "position": self.position,
            "event_id": self.event_id.hyphenated().to_string(),
            "stream_version": self.stream_version,
            "event_type": self.event_type.as_str(),
            "occurred_at": ts(&self.occurred_at),
            "recorded_at": ts(&self.recorded_at),
            "leaf_hash": self.leaf_hash_hex(),
        })
    }
}

/// One consent of a subject as it stood at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentAsOf {
    pub consent_id: ConsentId,
    pub stream_id: StreamId,
    /// The instant asked about.
    pub as_of: DateTime<Utc>,
    /// The status at `as_of`.
    pub status: ConsentStatus,
    /// The consent folded from exactly the events effective at or before `as_of`; its
    /// `scope_at(as_of)` and `term_at(as_of)` are the scope and term in force then.
    pub consent: Consent,
    /// Those events in stream order.
    pub events: Vec<LoggedEvent>,
}

impl ConsentAsOf {
    /// The JSON form: status (with its DPV concept), scope and term in force, the end if
    /// there was one by then, and the events with their positions and leaf hashes.
    pub fn to_json(&self) -> Json {
        let c = &self.consent;
        let term = c.term_at(self.as_of).map(|(_, term)| {
            json!({
                "from": ts(&term.from),
                "expires_at": opt_ts(&term.expires_at),
                "notice": to_json!(term.notice),
                "channel": to_json!(term.channel),
            })
        });
        let ended = c.ended().map(|ending| match ending {
            Ending::Withdrawn { at, channel } => json!({
                "kind": "withdrawn", "at": ts(at), "channel": to_json!(channel),
            }),
            Ending::Revoked {
                at,
                reason,
                reference,
            } => json!({
                "kind": "revoked", "at": ts(at), "reason": to_json!(reason),
                "reference": reference.as_ref().map(|r| r.as_str()),
            }),
        });
        json!({
            "consent_id": self.consent_id.to_string(),
            "stream_id": self.stream_id.as_str(),
            "subject": c.subject().to_string(),
            "as_of": ts(&self.as_of),
            "status": to_json!(self.status),
            "dpv": self.status.dpv_concept(),
            "valid": self.status.is_valid(),
            "legal_basis": to_json!(c.legal_basis()),
            "legal_reference": c.legal_reference().as_str(),
            "given_at": ts(&c.given_at()),
            "scope": to_json!(c.scope_at(self.as_of)),
            "term": term,
            "ended": ended,
            "version": c.version(),
            "events": self.events.iter().map(LoggedEvent::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Every record of the subject's consent streams and of the streams the index may not
/// know yet, in log order. The checkpoint and the index rows are read in the same
/// statement, hence from the same snapshot, so together they miss no stream.
///
/// On PostgreSQL the stream ids come from the function `gdpr_subject_consent_streams`
/// (migration `20261129000004`), whose comment says why it is a function, and each stream
/// is read through a lateral subquery that `OFFSET 0` keeps from being flattened into a
/// join: a subject's few streams are then always looked up by the `(stream_id,
/// stream_version)` index, even where the statistics make a scan of `events` look cheaper
/// (a small log, or one with few long streams). SQLite has no `LATERAL` and probes that
/// index for `IN (…)` by itself.
const SUBJECT_CONSENT_RECORDS_PG: &str = "SELECT e.position, e.stream_id, e.record, e.leaf_hash \
     FROM gdpr_subject_consent_streams($1, $2) AS s (stream_id) \
     CROSS JOIN LATERAL (SELECT x.position, x.stream_id, x.record, x.leaf_hash FROM events x \
                         WHERE x.stream_id = s.stream_id OFFSET 0) e \
     ORDER BY e.position";
const SUBJECT_CONSENT_RECORDS_SQLITE: &str = "SELECT e.position, e.stream_id, e.record, \
     e.leaf_hash FROM events e WHERE e.stream_id IN ( \
         SELECT c.stream_id FROM gdpr_consents c WHERE c.subject = $1 \
         UNION \
         SELECT t.stream_id FROM events t WHERE t.category = 'consent' AND t.position > \
             COALESCE((SELECT p.position FROM projection_checkpoints p WHERE p.name = $2), 0)) \
     ORDER BY e.position";

/// The statement of [`SUBJECT_CONSENT_RECORDS_PG`] or its SQLite form, for `dialect`.
pub fn subject_consent_records(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Postgres => SUBJECT_CONSENT_RECORDS_PG,
        Dialect::Sqlite => SUBJECT_CONSENT_RECORDS_SQLITE,
    }
}

/// One consent stream of the subject, with its events decoded.
struct SubjectStream {
    consent_id: ConsentId,
    stream_id: StreamId,
    events: Vec<(LoggedEvent, ConsentEvent)>,
}

/// A stored record of a consent stream, parsed as far as it goes.
struct Stored {
    position: u64,
    leaf_hash: Hash,
    parsed: Result<(EventRecord, ConsentEvent), String>,
}

async fn subject_streams(
    db: &ReadDb,
    subject: AccountId,
) -> Result<Vec<SubjectStream>, GdprQueryError> {
    let params: [Value<'_>; 2] = [subject.to_string().into(), super::consents::NAME.into()];
    let rows = db
        .fetch_all(subject_consent_records(db.dialect()), &params)
        .await?;
    // Streams in the order of their first event, each with its records in log order.
    let mut order: Vec<String> = Vec::new();
    let mut streams: HashMap<String, Vec<Stored>> = HashMap::new();
    for row in &rows {
        let position = row.get_u64("position")?;
        let stream: String = row.get("stream_id")?;
        let bytes: Vec<u8> = row.get("record")?;
        let leaf: Vec<u8> = row.get("leaf_hash")?;
        let leaf_hash: Hash = leaf.try_into().map_err(|_| GdprQueryError::Unreadable {
            position,
            reason: "the leaf hash is not 32 bytes".into(),
        })?;
        let parsed = EventRecord::from_bytes(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|record| {
                decode::<ConsentEvent>(&record, None)
                    .map(|event| (record, event))
                    .map_err(|e| e.to_string())
            });
        let stored = Stored {
            position,
            leaf_hash,
            parsed,
        };
        match streams.get_mut(&stream) {
            Some(list) => list.push(stored),
            None => {
                order.push(stream.clone());
                streams.insert(stream, vec![stored]);
            }
        }
    }
    let mut result = Vec::new();
    for stream in order {
        let Some(records) = streams.remove(&stream) else {
            continue;
        };
        // The owner is the subject the stream's ConsentGiven names, as in `evolve`, where
        // the first giving creates the consent.
        let given = records.iter().find_map(|s| match &s.parsed {
            Ok((_, ConsentEvent::Given(g))) => Some(g),
            _ => None,
        });
        let Some(given) = given else { continue };
        if given.subject != subject {
            continue;
        }
        let (consent_id, stream_id) = (given.consent_id, given.consent_id.stream_id());
        let mut events = Vec::with_capacity(records.len());
        for stored in records {
            let (record, event) = stored.parsed.map_err(|reason| GdprQueryError::Unreadable {
                position: stored.position,
                reason,
            })?;
            let logged = LoggedEvent {
                position: stored.position,
                event_id: record.event_id,
                stream_version: record.stream_version,
                event_type: record.event_type,
                occurred_at: record.occurred_at,
                recorded_at: record.recorded_at,
                leaf_hash: stored.leaf_hash,
            };
            events.push((logged, event));
        }
        result.push(SubjectStream {
            consent_id,
            stream_id,
            events,
        });
    }
    Ok(result)
}

/// The subject's consents as they stood at `as_of`, in the order they were first
/// recorded; consents not yet given then are left out. Each is the fold of exactly the
/// events effective at or before `as_of` (the domain's `consent::as_of`), with those events
/// and their leaf hashes.
pub async fn consent_history(
    db: &ReadDb,
    subject: AccountId,
    as_of: DateTime<Utc>,
) -> Result<Vec<ConsentAsOf>, GdprQueryError> {
    let streams = subject_streams(db, subject).await?;
    let mut history = Vec::with_capacity(streams.len());
    for stream in streams {
        let state = consent::as_of(stream.events.iter().map(|(_, e)| e), as_of);
        let ConsentState::Given(consent) = state else {
            continue;
        };
        let events = stream
            .events
            .into_iter()
            .filter(|(_, e)| DomainEvent::occurred_at(e) <= as_of)
            .map(|(logged, _)| logged)
            .collect();
        history.push(ConsentAsOf {
            consent_id: stream.consent_id,
            stream_id: stream.stream_id,
            as_of,
            status: consent.status_at(as_of),
            consent,
            events,
        });
    }
    Ok(history)
}

/// The subject's consents as their whole histories make them (the fold of every event),
/// in the order they were first recorded: what a disclosure at any instant is checked
/// against (`disclosure::decide` judges each at the instant of the use).
pub async fn current_consents(
    db: &ReadDb,
    subject: AccountId,
) -> Result<Vec<Consent>, GdprQueryError> {
    let streams = subject_streams(db, subject).await?;
    Ok(streams
        .into_iter()
        .filter_map(|stream| {
            match stream
                .events
                .iter()
                .map(|(_, e)| e)
                .fold(ConsentState::NotGiven, consent::evolve)
            {
                ConsentState::Given(c) => Some(c),
                ConsentState::NotGiven => None,
            }
        })
        .collect())
}
