//! Planning an append batch: the pure heart of the group-commit writer.
//!
//! An adapter locks the log head, loads the current versions of the streams a batch touches
//! and any stored events whose ids the batch reuses, and hands them here with the batch.
//! `plan_batch` decides each request on its own — expected-version check, idempotent retry,
//! or conflict — assigns the next gapless positions and stream versions to the accepted
//! ones, builds their canonical bytes and computes leaf and chain hashes. The adapter then
//! writes the planned rows in the same transaction. Keeping this pure means both adapters
//! share one implementation of every rule, and the rules are unit-tested without a database.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::chain::{chain_hash, Hash};
use crate::merkle::leaf_hash;
use crate::record::{EventRecord, RecordError, SealedSection};
use crate::stream::{AuthorityId, EventType, ExpectedVersion, ServiceKey, StreamId};

/// Most events a single append request may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 1000;

/// Most events all requests of one multi-stream append may carry together (see
/// [`validate_many`]): about what the writer commits in one transaction anyway, so that a
/// multi-stream append stays one ordinary batch.
pub const MAX_EVENTS_PER_APPEND_MANY: usize = 4096;

/// An event as a client hands it in, before the log has placed it.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: EventType,
    pub schema_version: u32,
    pub data: Value,
    pub tenant: Option<String>,
    pub actor: Option<String>,
    /// Defaults to the event's own id: an event without a correlation starts one.
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    /// The authority the event is addressed to, as routing decided.
    pub authority: Option<AuthorityId>,
    /// The administrative service (LeiKa key) the event belongs to.
    pub service: Option<ServiceKey>,
    /// Defaults to the time of recording.
    pub occurred_at: Option<DateTime<Utc>>,
    pub sealed: Option<SealedSection>,
}

impl NewEvent {
    /// A new event with a fresh UUIDv7 id and no metadata.
    pub fn new(event_type: EventType, data: Value) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type,
            schema_version: 1,
            data,
            tenant: None,
            actor: None,
            correlation_id: None,
            causation_id: None,
            authority: None,
            service: None,
            occurred_at: None,
            sealed: None,
        }
    }

    /// Whether a stored record is what this event would have produced: the test for an
    /// idempotent retry. `occurred_at` only counts when the client gave it, since otherwise
    /// the server chose it at the first attempt.
    fn matches(&self, stream: &StreamId, stored: &EventRecord) -> bool {
        stored.stream_id == *stream
            && stored.event_type == self.event_type
            && stored.schema_version == self.schema_version
            && stored.data == self.data
            && stored.tenant == self.tenant
            && stored.actor == self.actor
            && stored.correlation_id == Some(self.correlation_id.unwrap_or(self.event_id))
            && stored.causation_id == self.causation_id
            && stored.authority == self.authority
            && stored.service == self.service
            && self.occurred_at.is_none_or(|t| t == stored.occurred_at)
            && stored.sealed == self.sealed
    }
}

/// One append: events for one stream under one expected-version guard.
#[derive(Debug, Clone, PartialEq)]
pub struct AppendRequest {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// Where an append landed. Positions and versions of one append are contiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    pub stream: StreamId,
    pub first_position: u64,
    pub last_position: u64,
    /// The stream's version after this append (the version of its last event).
    pub next_version: u64,
    /// True when this was a retry of an append already in the log: nothing new was written.
    pub duplicate: bool,
}

/// Why an append was refused. Nothing of a refused append is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("stream {stream} is at version {actual}, but the append expected {expected}")]
    WrongExpectedVersion {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("event id {event_id} is already in the log with other content or in another place; an id can be used for one event only")]
    IdempotencyConflict { event_id: Uuid },
    #[error("{0}")]
    Invalid(String),
    /// The event's stored record would be larger than the log accepts: larger than what
    /// its distribution (a NATS message) can carry. Decided by the record's bytes alone.
    #[error("event {event_id} would be stored as a record of {size} bytes; this log stores records of at most {limit} bytes")]
    TooLarge {
        event_id: Uuid,
        size: usize,
        limit: usize,
    },
}

/// An event already in the log whose id a batch reuses.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingEvent {
    pub record: EventRecord,
}

/// What an adapter must load, under the head lock, before planning a batch.
#[derive(Debug, Clone)]
pub struct BatchContext {
    /// Position of the last event in the log (0 for an empty log).
    pub head_position: u64,
    /// Chain hash of the last event ([`crate::GENESIS_CHAIN`] for an empty log).
    pub head_chain: Hash,
    /// Current version of every stream the batch touches; absent streams may be missing.
    pub versions: HashMap<StreamId, u64>,
    /// Stored events whose ids occur in the batch.
    pub existing: HashMap<Uuid, ExistingEvent>,
    /// The recording time of the whole batch, already truncated to microseconds.
    pub recorded_at: DateTime<Utc>,
}

/// A record ready to be inserted.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRecord {
    pub record: EventRecord,
    pub bytes: Vec<u8>,
    pub leaf_hash: Hash,
    pub chain_hash: Hash,
}

/// The decision for one request of a batch.
pub type RequestPlan = Result<AppendOutcome, AppendError>;

/// Check a request on its own, independent of the log's state.
pub fn validate_request(req: &AppendRequest) -> Result<(), AppendError> {
    if req.events.is_empty() {
        return Err(AppendError::Invalid(
            "an append must contain at least one event".into(),
        ));
    }
    if req.events.len() > MAX_EVENTS_PER_APPEND {
        return Err(AppendError::Invalid(format!(
            "an append may contain at most {MAX_EVENTS_PER_APPEND} events, got {}",
            req.events.len()
        )));
    }
    // Most appends carry one event; only build the set when there can be a duplicate.
    let mut seen = std::collections::HashSet::new();
    for e in &req.events {
        if req.events.len() > 1 && !seen.insert(e.event_id) {
            return Err(AppendError::Invalid(format!(
                "event id {} occurs twice in one append",
                e.event_id
            )));
        }
        if e.event_id.is_nil() || e.event_id.is_max() {
            return Err(AppendError::Invalid(format!(
                "event id {} is reserved",
                e.event_id
            )));
        }
        for (name, value) in [("tenant", &e.tenant), ("actor", &e.actor)] {
            if let Some(v) = value {
                if v.is_empty()
                    || v.chars().count() > crate::record::MAX_LABEL_LEN
                    || v.chars().any(char::is_control)
                {
                    return Err(AppendError::Invalid(format!(
                        "{name} must be 1 to {} characters without control characters",
                        crate::record::MAX_LABEL_LEN
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Check a multi-stream append as a whole: at most [`MAX_EVENTS_PER_APPEND_MANY`] events
/// in all. Each request is checked on its own when it is planned (`validate_request`), so
/// that one bad request is refused alone.
pub fn validate_many(requests: &[AppendRequest]) -> Result<(), AppendError> {
    let events: usize = requests.iter().map(|r| r.events.len()).sum();
    if events > MAX_EVENTS_PER_APPEND_MANY {
        return Err(AppendError::Invalid(format!(
            "a multi-stream append may contain at most {MAX_EVENTS_PER_APPEND_MANY} events in all, got {events}"
        )));
    }
    Ok(())
}

/// Decide every request of a batch in order and plan the rows to insert.
///
/// Requests are independent: a refused request does not affect the others, and later
/// requests see the versions left by earlier accepted ones. On return `ctx` holds the new
/// head, so an adapter can update the head row from it.
pub fn plan_batch(
    ctx: &mut BatchContext,
    requests: &[AppendRequest],
) -> (Vec<RequestPlan>, Vec<PlannedRecord>) {
    plan_batch_within(ctx, requests, usize::MAX)
}

/// `plan_batch`, refusing a request with `AppendError::TooLarge` if one of its records
/// would be longer than `max_record_bytes`.
pub fn plan_batch_within(
    ctx: &mut BatchContext,
    requests: &[AppendRequest],
    max_record_bytes: usize,
) -> (Vec<RequestPlan>, Vec<PlannedRecord>) {
    let mut plans = Vec::with_capacity(requests.len());
    let mut rows: Vec<PlannedRecord> = Vec::with_capacity(requests.len());
    // Ids placed earlier in this batch, by row, so that a retry inside one batch is
    // recognised like one against the stored log, without copying records around.
    let mut placed: HashMap<Uuid, usize> = HashMap::new();
    for req in requests {
        let plan = plan_one(ctx, req, &mut rows, &mut placed, max_record_bytes);
        plans.push(plan);
    }
    (plans, rows)
}

fn plan_one(
    ctx: &mut BatchContext,
    req: &AppendRequest,
    rows: &mut Vec<PlannedRecord>,
    placed: &mut HashMap<Uuid, usize>,
    max_record_bytes: usize,
) -> RequestPlan {
    validate_request(req)?;

    // Idempotency first: a retry of an append that already landed succeeds with its
    // original positions even though its expected version no longer holds.
    let lookup = |id: &Uuid| -> Option<&EventRecord> {
        ctx.existing
            .get(id)
            .map(|x| &x.record)
            .or_else(|| placed.get(id).map(|i| &rows[*i].record))
    };
    let known = req
        .events
        .iter()
        .filter(|e| lookup(&e.event_id).is_some())
        .count();
    if known > 0 {
        return retried(lookup, req, known);
    }

    let current = ctx.versions.get(&req.stream).copied().unwrap_or(0);
    if !req.expected.admits(current) {
        return Err(AppendError::WrongExpectedVersion {
            stream: req.stream.clone(),
            expected: req.expected,
            actual: current,
        });
    }

    // Build into a scratch list first: if an event fails to canonicalize, nothing of this
    // request may have touched the head.
    let mut position = ctx.head_position;
    let mut chain = ctx.head_chain;
    let mut planned = Vec::with_capacity(req.events.len());
    for (i, e) in req.events.iter().enumerate() {
        position += 1;
        let record = EventRecord {
            event_id: e.event_id,
            stream_id: req.stream.clone(),
            stream_version: current + 1 + i as u64,
            position,
            event_type: e.event_type.clone(),
            schema_version: e.schema_version,
            tenant: e.tenant.clone(),
            actor: e.actor.clone(),
            correlation_id: Some(e.correlation_id.unwrap_or(e.event_id)),
            causation_id: e.causation_id,
            authority: e.authority.clone(),
            service: e.service.clone(),
            occurred_at: e
                .occurred_at
                .map_or(ctx.recorded_at, crate::record::truncate_micros),
            recorded_at: ctx.recorded_at,
            data: e.data.clone(),
            sealed: e.sealed.clone(),
        };
        let bytes = record.to_bytes().map_err(|err| match err {
            RecordError::Canonical(c) => {
                AppendError::Invalid(format!("event {} data: {c}", e.event_id))
            }
            RecordError::Malformed(m) => AppendError::Invalid(m),
        })?;
        if bytes.len() > max_record_bytes {
            return Err(AppendError::TooLarge {
                event_id: e.event_id,
                size: bytes.len(),
                limit: max_record_bytes,
            });
        }
        let leaf = leaf_hash(&bytes);
        chain = chain_hash(&chain, &leaf);
        planned.push(PlannedRecord {
            record,
            bytes,
            leaf_hash: leaf,
            chain_hash: chain,
        });
    }

    let outcome = AppendOutcome {
        stream: req.stream.clone(),
        first_position: ctx.head_position + 1,
        last_position: position,
        next_version: current + req.events.len() as u64,
        duplicate: false,
    };
    ctx.head_position = position;
    ctx.head_chain = chain;
    ctx.versions
        .insert(req.stream.clone(), outcome.next_version);
    for p in &planned {
        ctx.existing.insert(
            p.record.event_id,
            ExistingEvent {
                record: p.record.clone(),
            },
        );
    }
    rows.extend(planned);
    Ok(outcome)
}

/// A request some of whose ids are already in the log: either an exact retry, or a conflict.
fn retried<'a>(
    lookup: impl Fn(&Uuid) -> Option<&'a EventRecord>,
    req: &AppendRequest,
    known: usize,
) -> RequestPlan {
    let conflict = |event_id| Err(AppendError::IdempotencyConflict { event_id });
    if known != req.events.len() {
        let first_new = req
            .events
            .iter()
            .find(|e| lookup(&e.event_id).is_some())
            .map_or(Uuid::nil(), |e| e.event_id);
        return conflict(first_new);
    }
    let mut first: Option<&EventRecord> = None;
    let mut previous: Option<&EventRecord> = None;
    for e in &req.events {
        let Some(stored) = lookup(&e.event_id) else {
            return conflict(e.event_id);
        };
        if !e.matches(&req.stream, stored) {
            return conflict(e.event_id);
        }
        // The retry must be the same append: the same events in the same contiguous order.
        if let Some(prev) = previous {
            if stored.position != prev.position + 1
                || stored.stream_version != prev.stream_version + 1
            {
                return conflict(e.event_id);
            }
        }
        first.get_or_insert(stored);
        previous = Some(stored);
    }
    match (first, previous) {
        (Some(first), Some(last)) => Ok(AppendOutcome {
            stream: req.stream.clone(),
            first_position: first.position,
            last_position: last.position,
            next_version: last.stream_version,
            duplicate: true,
        }),
        _ => Err(AppendError::Invalid(
            "an append must contain at least one event".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::GENESIS_CHAIN;
    use chrono::TimeZone;
    use serde_json::json;

    fn ctx() -> BatchContext {
        BatchContext {
            head_position: 0,
            head_chain: GENESIS_CHAIN,
            versions: HashMap::new(),
            existing: HashMap::new(),
            recorded_at: Utc
                .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
                .single()
                .expect("date"),
        }
    }

    fn stream(s: &str) -> StreamId {
        StreamId::parse(s).expect("stream")
    }

    fn event(n: i64) -> NewEvent {
        NewEvent::new(EventType::parse("Noted").expect("type"), json!({ "n": n }))
    }

    fn req(s: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
        AppendRequest {
            stream: stream(s),
            expected,
            events,
        }
    }

    #[test]
    fn accepted_requests_get_gapless_positions_and_versions() {
        let mut c = ctx();
        c.versions.insert(stream("a-1"), 4);
        c.head_position = 10;
        let (plans, rows) = plan_batch(
            &mut c,
            &[
                req("a-1", ExpectedVersion::Exact(4), vec![event(1), event(2)]),
                req("b-1", ExpectedVersion::NoStream, vec![event(3)]),
                req("a-1", ExpectedVersion::Exact(6), vec![event(4)]),
            ],
        );
        let positions: Vec<_> = plans
            .iter()
            .map(|p| {
                p.as_ref()
                    .map(|o| (o.first_position, o.last_position, o.next_version))
            })
            .collect();
        assert_eq!(
            positions,
            vec![Ok((11, 12, 6)), Ok((13, 13, 1)), Ok((14, 14, 7))]
        );
        assert_eq!(
            rows.iter().map(|r| r.record.position).collect::<Vec<_>>(),
            vec![11, 12, 13, 14]
        );
        assert_eq!(c.head_position, 14);
        assert_eq!(c.head_chain, rows[3].chain_hash);
    }

    /// A record longer than the limit refuses its whole request and nothing of it moves the
    /// head; a record of exactly the limit and the other requests of the batch go through.
    #[test]
    fn a_record_over_the_limit_refuses_only_its_request() {
        let big = |n: usize| {
            NewEvent::new(
                EventType::parse("Noted").expect("type"),
                json!({ "text": "x".repeat(n) }),
            )
        };
        // How long the record of `big(1000)` as the first event of the log is.
        let (_, rows) = plan_batch(
            &mut ctx(),
            &[req("a-1", ExpectedVersion::Any, vec![big(1000)])],
        );
        let limit = rows[0].bytes.len();

        let mut c = ctx();
        let (plans, rows) = plan_batch_within(
            &mut c,
            &[
                req("a-1", ExpectedVersion::Any, vec![big(1000)]),
                req("b-1", ExpectedVersion::Any, vec![event(1), big(1001)]),
                req("c-1", ExpectedVersion::Any, vec![event(2)]),
            ],
            limit,
        );
        assert!(plans[0].is_ok(), "{:?}", plans[0]);
        assert!(
            matches!(&plans[1], Err(AppendError::TooLarge { size, limit: l, .. }) if *size > limit && *l == limit),
            "{:?}",
            plans[1]
        );
        assert_eq!(plans[2].as_ref().map(|o| o.first_position), Ok(2));
        assert_eq!(
            rows.iter()
                .map(|r| r.record.stream_id.as_str())
                .collect::<Vec<_>>(),
            ["a-1", "c-1"]
        );
        assert_eq!(c.head_position, 2);
        assert!(!c.versions.contains_key(&stream("b-1")));
    }

    #[test]
    fn a_wrong_expected_version_refuses_only_that_request() {
        let mut c = ctx();
        c.versions.insert(stream("a-1"), 2);
        let (plans, rows) = plan_batch(
            &mut c,
            &[
                req("a-1", ExpectedVersion::Exact(1), vec![event(1)]),
                req("a-1", ExpectedVersion::NoStream, vec![event(2)]),
                req("a-1", ExpectedVersion::Exact(2), vec![event(3)]),
            ],
        );
        assert_eq!(
            plans[0],
            Err(AppendError::WrongExpectedVersion {
                stream: stream("a-1"),
                expected: ExpectedVersion::Exact(1),
                actual: 2
            })
        );
        assert!(matches!(
            plans[1],
            Err(AppendError::WrongExpectedVersion { actual: 2, .. })
        ));
        assert_eq!(plans[2].as_ref().map(|o| o.first_position), Ok(1));
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn the_chain_links_each_leaf_to_its_predecessor() {
        let mut c = ctx();
        let (_, rows) = plan_batch(
            &mut c,
            &[req("a-1", ExpectedVersion::Any, vec![event(1), event(2)])],
        );
        assert_eq!(rows[0].leaf_hash, leaf_hash(&rows[0].bytes));
        assert_eq!(
            rows[0].chain_hash,
            chain_hash(&GENESIS_CHAIN, &rows[0].leaf_hash)
        );
        assert_eq!(
            rows[1].chain_hash,
            chain_hash(&rows[0].chain_hash, &rows[1].leaf_hash)
        );
        assert_eq!(
            EventRecord::from_bytes(&rows[1].bytes).as_ref(),
            Ok(&rows[1].record)
        );
    }

    #[test]
    fn a_retry_returns_the_original_positions() {
        let mut c = ctx();
        let first = req("a-1", ExpectedVersion::NoStream, vec![event(1), event(2)]);
        let (plans, rows) = plan_batch(&mut c, std::slice::from_ref(&first));
        let original = plans[0].clone().expect("accepted");

        // A later batch, as the adapter would load it from the database.
        let mut later = ctx();
        later.head_position = c.head_position;
        later.versions.insert(stream("a-1"), 2);
        for r in &rows {
            later.existing.insert(
                r.record.event_id,
                ExistingEvent {
                    record: r.record.clone(),
                },
            );
        }
        let (plans, new_rows) = plan_batch(&mut later, &[first]);
        assert!(new_rows.is_empty());
        assert_eq!(
            plans[0],
            Ok(AppendOutcome {
                duplicate: true,
                ..original
            })
        );
    }

    #[test]
    fn the_same_id_with_other_content_is_a_conflict() {
        let mut c = ctx();
        let e = event(1);
        let (_, _) = plan_batch(&mut c, &[req("a-1", ExpectedVersion::Any, vec![e.clone()])]);
        let mut changed = e.clone();
        changed.data = json!({"n": 2});
        let (plans, rows) = plan_batch(
            &mut c,
            &[
                req("a-1", ExpectedVersion::Any, vec![changed]),
                req("b-1", ExpectedVersion::Any, vec![e.clone()]),
                req("a-1", ExpectedVersion::Any, vec![e.clone(), event(9)]),
            ],
        );
        assert!(rows.is_empty());
        for p in plans {
            assert_eq!(
                p,
                Err(AppendError::IdempotencyConflict {
                    event_id: e.event_id
                })
            );
        }
    }

    #[test]
    fn invalid_requests_are_refused_without_moving_the_head() {
        let mut c = ctx();
        let mut big = event(1);
        big.data = json!({"n": 9007199254740993u64});
        let dup = event(2);
        let (plans, rows) = plan_batch(
            &mut c,
            &[
                req("a-1", ExpectedVersion::Any, vec![event(0), big]),
                req("a-1", ExpectedVersion::Any, vec![]),
                req("a-1", ExpectedVersion::Any, vec![dup.clone(), dup]),
                req("a-1", ExpectedVersion::NoStream, vec![event(3)]),
            ],
        );
        assert!(matches!(plans[0], Err(AppendError::Invalid(_))));
        assert!(matches!(plans[1], Err(AppendError::Invalid(_))));
        assert!(matches!(plans[2], Err(AppendError::Invalid(_))));
        assert_eq!(plans[3].as_ref().map(|o| o.first_position), Ok(1));
        assert_eq!(rows.len(), 1);
    }
}
