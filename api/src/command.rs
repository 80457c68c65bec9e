//! The one path every command of every domain takes: load the aggregate's stream, fold it
//! with the decider's `evolve`, `decide` the command, and append the decided events with
//! the stream's version as the expected version, so two concurrent commands on one
//! aggregate cannot both be decided on the same state (the loser is decided again on the
//! new state, `execute`). Events that carry personal data are sealed under their data
//! subject's key on the way in (`Sealer`), and opened on the way out; after erasure they
//! read as `Personal::Erased`. Each envelope carries the command's metadata (`Meta`): who
//! acted, the correlation, and where the event is routed — the authority, service and
//! tenant that NATS subjects and `Principal::may_see` follow.
//!
//! Commands that must be ordered with everything else concerning one data subject take the
//! subject's lock (`lock_subject`) and only then read the clock: under the lock, every
//! instant taken is later than every change already committed for the subject and earlier
//! than every change still to come. The lock holds across processes: on PostgreSQL it is
//! an advisory lock of the database, and the instant comes from the database's clock.
//!
//! Answers that must not miss anything committed before the request, but come from read
//! models that follow the log a moment behind, first wait until those read models have
//! reached the log's head (`read_models_current`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::event::{DomainEvent, EnvelopeError, Personal, Routing, SubjectId};
use amtsbuch_domain::{AppendError, AppendOutcome, AppendRequest, Decider, ExpectedVersion};
use amtsbuch_domain::{Hash, StreamId};
use amtsbuch_infra::sealer::{Sealer, SealerError};
use amtsbuch_infra::shared_lock::SharedLock;
use amtsbuch_infra::store::MAX_PAGE;
use amtsbuch_infra::{AnyStore, Direction, EventStore, RecordedEvent, StoreError};

use crate::problem::Problem;
use crate::AppState;

/// How often a command is decided again when another one changed its aggregate first.
const ATTEMPTS: usize = 3;

/// How long an answer waits for the read models it relies on to reach the log's head
/// before it gives up with `503 read-models-behind`.
const READ_MODEL_PATIENCE: Duration = Duration::from_secs(10);

/// The subjects some task of this process is acting for, each with its lock. Entries
/// nobody holds or waits for any more are dropped whenever a new subject is added.
static SUBJECT_LOCKS: LazyLock<Mutex<HashMap<SubjectId, Weak<tokio::sync::Mutex<()>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long a command waits for another command of the same subject, on another node.
const SUBJECT_PATIENCE: Duration = Duration::from_secs(10);

/// The right to act for one data subject, and the instant the command acts at.
#[derive(Debug)]
pub struct SubjectGuard {
    _local: tokio::sync::OwnedMutexGuard<()>,
    shared: SharedLock,
}

impl SubjectGuard {
    /// The command's instant: when the lock was granted, by the database's clock on
    /// PostgreSQL, so that the commands of one subject are stamped in the order they hold
    /// the lock even when they run on API nodes whose clocks differ.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.granted_at()
    }
}

/// Wait until no other command acts for `subject` — in this process, or in any other
/// process on the same PostgreSQL database — and act for it until the guard is dropped.
/// Take the command's instant from the guard ([`SubjectGuard::now`]).
///
/// Tasks of this process queue on a mutex first, so only one of them at a time holds a
/// database connection for the shared lock. A command that waits longer than 10 s for
/// another node's command of the same subject gets `503`.
pub async fn lock_subject(state: &AppState, subject: SubjectId) -> Result<SubjectGuard, Problem> {
    let lock = {
        let mut locks = SUBJECT_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        match locks.get(&subject).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                locks.retain(|_, lock| lock.strong_count() > 0);
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(subject, Arc::downgrade(&lock));
                lock
            }
        }
    };
    let local = lock.lock_owned().await;
    let shared = shared_subject_lock(&state.store, subject).await?;
    Ok(SubjectGuard {
        _local: local,
        shared,
    })
}

/// The part of the subject's lock that other processes see: its key in the database,
/// `subject:<uuid>` (every node must spell it the same), and how long to wait for it.
pub async fn shared_subject_lock(
    store: &AnyStore,
    subject: SubjectId,
) -> Result<SharedLock, StoreError> {
    SharedLock::acquire(store, &format!("subject:{subject}"), SUBJECT_PATIENCE).await
}

/// Wait until the read models `names` have applied the log up to its head as it is now,
/// so that an answer built from them misses nothing committed before the request.
pub async fn read_models_current(state: &AppState, names: &[&str]) -> Result<(), Problem> {
    let head = state.store.head().await?.position;
    let db = amtsbuch_projections::db::ReadDb::new(&state.store);
    let deadline = tokio::time::Instant::now() + READ_MODEL_PATIENCE;
    loop {
        // A database that fails here is an outage to retry (503), like any other.
        let applied = amtsbuch_projections::checkpoint::all(&db).await?;
        let behind: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| {
                !applied
                    .iter()
                    .any(|(n, position)| n == name && *position >= head)
            })
            .collect();
        if behind.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(behind = ?behind, head, "read models lag behind the log");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "read-models-behind",
                "The read models lag behind the log",
                format!(
                    "the read models {} have not reached position {head} of the log within {} s, so the answer could miss recent events; retry later",
                    behind.join(", "),
                    READ_MODEL_PATIENCE.as_secs()
                ),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5")));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An event of an aggregate as read back, with where it sits in the log.
#[derive(Debug, Clone)]
pub struct Stored<E> {
    pub event: E,
    pub event_id: Uuid,
    pub position: u64,
    pub leaf_hash: Hash,
    pub recorded_at: DateTime<Utc>,
}

/// What a command did.
#[derive(Debug)]
pub struct Executed<S, E> {
    /// The aggregate after the command.
    pub state: S,
    /// The events the command decided (none for a command that changed nothing).
    pub events: Vec<E>,
    /// Where they landed.
    pub outcome: Option<AppendOutcome>,
    /// The stream's version after the command.
    pub version: u64,
}

/// What a command's envelopes record besides the events: who acted (`actor`,
/// pseudonymous), the correlation, and where the events are routed. An event's own
/// routing ([`DomainEvent::routing`]) wins; `routing` fills what the event leaves open.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub actor: Option<String>,
    pub correlation_id: Option<Uuid>,
    pub routing: Routing,
}

impl Meta {
    /// The caller acting in the first of its roles (the guard has narrowed it to the
    /// route's roles); see `acting_as`.
    pub fn of(caller: &Principal) -> Self {
        match caller.roles().iter().next() {
            Some(&role) => Self::acting_as(caller, role),
            None => Self::default(),
        }
    }

    /// The caller acting in `role`: a citizen acts as its account; everybody else under
    /// its token's subject, which the identity provider must keep pseudonymous
    /// (docs/DPO.md).
    pub fn acting_as(caller: &Principal, role: Role) -> Self {
        let actor = match (role, caller.account()) {
            (Role::Citizen, Some(account)) => format!("account:{account}"),
            _ => format!("{role}:{}", caller.subject()),
        };
        Self {
            actor: Some(
                actor
                    .chars()
                    .take(amtsbuch_domain::record::MAX_LABEL_LEN)
                    .collect(),
            ),
            ..Self::default()
        }
    }

    /// A command the server runs on its own (sweepers).
    pub fn system(what: &str) -> Self {
        Self {
            actor: Some(format!("system:{what}")),
            ..Self::default()
        }
    }

    /// The same, with the events routed to `routing` where they do not say otherwise.
    pub fn routed(self, routing: Routing) -> Self {
        Self { routing, ..self }
    }
}

/// The sealer, or why personal data cannot be handled.
pub fn sealer(state: &AppState) -> Result<&Sealer, Problem> {
    state.sealer.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "personal-data-disabled",
            "Personal data cannot be handled",
            "this server has no key-encryption key (--kek), so it neither seals nor opens personal data",
        )
    })
}

/// A failure of the sealing layer as a problem. An erased subject is an expected answer, a
/// database that cannot be reached (or whose pool has no connection free in time) is the
/// store's `503` with `Retry-After`; everything else is a fault of ours or of the stored
/// data.
pub fn sealer_problem(e: SealerError) -> Problem {
    use amtsbuch_infra::vault::VaultError;
    match e {
        SealerError::Vault(VaultError::Erased { subject, at }) => Problem::new(
            StatusCode::CONFLICT,
            "subject-erased",
            "The data subject is erased",
            format!(
                "subject {subject} was erased at {}; no personal data is stored for it any more",
                amtsbuch_domain::record::format_timestamp(&at)
            ),
        ),
        SealerError::Vault(VaultError::Store(e)) => Problem::from(e),
        other => Problem::internal(&other),
    }
}

/// Read an aggregate's events, opening sealed personal data (erased subjects read as
/// `Personal::Erased`); with the stream's version.
pub async fn load<E: DomainEvent>(
    state: &AppState,
    stream: &StreamId,
) -> Result<(Vec<Stored<E>>, u64), Problem> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let page = state
            .store
            .read_stream(stream, from, Direction::Forwards, MAX_PAGE)
            .await?;
        let full = page.len() == MAX_PAGE;
        for e in &page {
            out.push(open::<E>(state, e).await?);
        }
        if !full {
            break;
        }
        from += page.len() as u64;
    }
    let version = out.len() as u64;
    Ok((out, version))
}

/// An aggregate's current state, folded from its stream; with the stream's version.
pub async fn current<D>(state: &AppState, stream: &StreamId) -> Result<(D, u64), Problem>
where
    D: Decider,
    D::Event: DomainEvent,
{
    let (events, version) = load::<D::Event>(state, stream).await?;
    Ok((D::fold(events.iter().map(|e| &e.event)), version))
}

/// An aggregate's current state folded without opening anything sealed (personal data
/// reads as erased, and the key vault is not asked); with the stream's version. For
/// decisions that depend only on the events' plain parts.
pub async fn current_unopened<D>(state: &AppState, stream: &StreamId) -> Result<(D, u64), Problem>
where
    D: Decider,
    D::Event: DomainEvent,
{
    let mut folded = D::default();
    let mut version = 0u64;
    loop {
        let page = state
            .store
            .read_stream(stream, version + 1, Direction::Forwards, MAX_PAGE)
            .await?;
        for e in &page {
            let record = e.record().map_err(|err| Problem::internal(&err))?;
            let event = amtsbuch_domain::event::decode::<D::Event>(&record, None)
                .map_err(|err| Problem::internal(&format!("position {}: {err}", e.position)))?;
            folded = D::evolve(folded, &event);
        }
        version += page.len() as u64;
        if page.len() < MAX_PAGE {
            return Ok((folded, version));
        }
    }
}

/// One stored event of an aggregate, opened.
pub async fn open<E: DomainEvent>(
    state: &AppState,
    e: &RecordedEvent,
) -> Result<Stored<E>, Problem> {
    let record = e.record().map_err(|err| Problem::internal(&err))?;
    let event = match (&record.sealed, state.sealer.as_ref()) {
        (None, _) => amtsbuch_domain::event::decode::<E>(&record, None)
            .map_err(|err| Problem::internal(&format!("position {}: {err}", e.position)))?,
        (Some(_), Some(sealer)) => sealer
            .open_record::<E>(&record)
            .await
            .map_err(sealer_problem)?,
        (Some(_), None) => {
            return Err(sealer(state)
                .err()
                .unwrap_or_else(|| Problem::internal(&"no sealer")))
        }
    };
    Ok(Stored {
        event,
        event_id: record.event_id,
        position: e.position,
        leaf_hash: e.leaf_hash,
        recorded_at: record.recorded_at,
    })
}

/// Append decided events of one aggregate under `expected`.
pub async fn append<E: DomainEvent>(
    state: &AppState,
    stream: &StreamId,
    events: &[E],
    expected: ExpectedVersion,
    meta: &Meta,
) -> Result<AppendOutcome, StoreOrProblem> {
    let request = request_for(state, stream, events, expected, meta).await?;
    Ok(state.store.append(request).await?)
}

/// The append request of decided events of one aggregate under `expected`, as [`append`]
/// sends it: each event in its envelope, personal data sealed, `meta` recorded. For
/// callers that send many aggregates' requests at once (`EventStore::append_many`).
pub async fn request_for<E: DomainEvent>(
    state: &AppState,
    stream: &StreamId,
    events: &[E],
    expected: ExpectedVersion,
    meta: &Meta,
) -> Result<AppendRequest, Problem> {
    let mut new_events = Vec::with_capacity(events.len());
    for event in events {
        let id = Uuid::now_v7();
        let encoded = match state.sealer.as_ref() {
            Some(sealer) => sealer.seal_event(event, id).await.map_err(sealer_problem)?,
            None => amtsbuch_domain::event::encode(
                event,
                id,
                None,
                &amtsbuch_domain::seal::SystemRandom::new(),
            )
            .map_err(|e| match e {
                EnvelopeError::KeyRequired(_) => {
                    sealer(state).err().unwrap_or_else(|| Problem::internal(&e))
                }
                other => Problem::internal(&other),
            })?,
        };
        if encoded.stream_id != *stream {
            return Err(Problem::internal(&format!(
                "an event of {} was decided for {stream}",
                encoded.stream_id
            )));
        }
        let mut event = encoded.event;
        event.actor = meta.actor.clone();
        event.correlation_id = meta.correlation_id;
        let routing = Routing {
            authority: event.authority.take(),
            service: event.service.take(),
            tenant: event.tenant.take(),
        }
        .or(&meta.routing);
        event.authority = routing.authority;
        event.service = routing.service;
        event.tenant = routing.tenant;
        new_events.push(event);
    }
    Ok(AppendRequest {
        stream: stream.clone(),
        expected,
        events: new_events,
    })
}

/// A failed append: a conflict the caller may retry, or a problem to answer with.
#[derive(Debug)]
pub enum StoreOrProblem {
    Store(StoreError),
    Problem(Problem),
}

impl From<StoreError> for StoreOrProblem {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<Problem> for StoreOrProblem {
    fn from(p: Problem) -> Self {
        Self::Problem(p)
    }
}

impl From<StoreOrProblem> for Problem {
    fn from(e: StoreOrProblem) -> Self {
        match e {
            StoreOrProblem::Store(s) => s.into(),
            StoreOrProblem::Problem(p) => p,
        }
    }
}

/// Run `command` on the aggregate `D` in `stream`: load, fold, decide, append with the
/// stream's version as the expected version; decided again when another command got there
/// first. A rejection becomes the problem `rejected` makes of it.
pub async fn execute<D>(
    state: &AppState,
    stream: &StreamId,
    command: &D::Command<'_>,
    rejected: impl Fn(D::Rejection) -> Problem,
    meta: &Meta,
) -> Result<Executed<D, D::Event>, Problem>
where
    D: Decider,
    D::Event: DomainEvent,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, version) = current::<D>(state, stream).await?;
        let events = D::decide(command, &current).map_err(&rejected)?;
        if events.is_empty() {
            return Ok(Executed {
                state: current,
                events,
                outcome: None,
                version,
            });
        }
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        match append(state, stream, &events, expected, meta).await {
            Ok(outcome) => {
                let state_after = events.iter().fold(current, D::evolve);
                return Ok(Executed {
                    state: state_after,
                    events,
                    version: outcome.next_version,
                    outcome: Some(outcome),
                });
            }
            Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
                ..
            }))) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// An event a command appended: as decided (not read back and opened), with where the log
/// placed it, and its stored record (the exact bytes, for a receipt).
#[derive(Debug, Clone)]
pub struct Appended<E> {
    pub stored: Stored<E>,
    pub recorded: RecordedEvent,
}

/// Append events decided on the stream at `version` (expected: exactly that version), and
/// return them as stored. Only the new rows are read back — one read, nothing opened: the
/// events are the ones decided, so their personal data needs no key — which gives each
/// its id, position, leaf hash and instant. With an exact expected version the rows after
/// `version` are this append's; that each is the event it should be is checked anyway.
pub async fn append_stored<E: DomainEvent + Clone>(
    state: &AppState,
    stream: &StreamId,
    events: &[E],
    version: u64,
    meta: &Meta,
) -> Result<(AppendOutcome, Vec<Appended<E>>), StoreOrProblem> {
    let expected = if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    };
    let outcome = append(state, stream, events, expected, meta).await?;
    let rows = state
        .store
        .read_stream(stream, version + 1, Direction::Forwards, events.len())
        .await?;
    if rows.len() != events.len() {
        return Err(Problem::internal(&format!(
            "{stream}: {} events appended after version {version}, {} read back",
            events.len(),
            rows.len()
        ))
        .into());
    }
    let mut appended = Vec::with_capacity(events.len());
    for (i, (event, recorded)) in events.iter().zip(rows).enumerate() {
        let record = recorded.record().map_err(|e| Problem::internal(&e))?;
        let placed = record.stream_version == version + 1 + i as u64
            && record.event_type.as_str() == event.event_type()
            && (outcome.first_position..=outcome.last_position).contains(&recorded.position);
        if !placed {
            return Err(Problem::internal(&format!(
                "{stream}: the event read back at position {} is not the one appended",
                recorded.position
            ))
            .into());
        }
        appended.push(Appended {
            stored: Stored {
                event: event.clone(),
                event_id: record.event_id,
                position: recorded.position,
                leaf_hash: recorded.leaf_hash,
                recorded_at: record.recorded_at,
            },
            recorded,
        });
    }
    Ok((outcome, appended))
}

/// Folded aggregates of one type whose events carry no personal data (a form, say), kept
/// in this process between commands. Each use brings the kept state up to date with the
/// events appended since — by this node or any other — in one read of the stream's new
/// rows (usually none), instead of reading and decoding the whole stream again, so a kept
/// state is never older than the log. Cheap to clone; a domain module keeps one in the
/// state's `ModuleValues`.
pub struct Kept<D>(Arc<Mutex<HashMap<StreamId, (D, u64)>>>);

impl<D> std::fmt::Debug for Kept<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kept")
    }
}

impl<D> Clone for Kept<D> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<D> Default for Kept<D> {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }
}

/// The most aggregates a [`Kept`] holds; beyond, it starts afresh.
const MAX_KEPT: usize = 1024;

impl<D> Kept<D>
where
    D: Decider + Clone + Send + Sync + 'static,
    D::Event: DomainEvent,
{
    /// The one kept in `state` for aggregates of type `D` (made on first use).
    pub fn of(state: &AppState) -> Self {
        if let Some(kept) = state.modules.get::<Self>() {
            return kept;
        }
        let kept = Self::default();
        state.modules.insert(kept.clone());
        kept
    }

    /// The aggregate's current state, as [`current`] gives it. A stream with sealed events
    /// is read as [`current`] does and not kept: personal data stays only as long as one
    /// command needs it.
    pub async fn current(&self, state: &AppState, stream: &StreamId) -> Result<(D, u64), Problem> {
        let kept = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .cloned();
        let (mut folded, mut version) = kept.unwrap_or_default();
        loop {
            let page = state
                .store
                .read_stream(stream, version + 1, Direction::Forwards, MAX_PAGE)
                .await?;
            for e in &page {
                let record = e.record().map_err(|err| Problem::internal(&err))?;
                if record.sealed.is_some() {
                    return current::<D>(state, stream).await;
                }
                if record.stream_version != version + 1 {
                    return Err(Problem::internal(&format!(
                        "{stream}: version {} follows version {version}",
                        record.stream_version
                    )));
                }
                let event = amtsbuch_domain::event::decode::<D::Event>(&record, None)
                    .map_err(|err| Problem::internal(&format!("position {}: {err}", e.position)))?;
                folded = D::evolve(folded, &event);
                version += 1;
            }
            if page.len() < MAX_PAGE {
                break;
            }
        }
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if kept.len() >= MAX_KEPT && !kept.contains_key(stream) {
            kept.clear();
        }
        match kept.get(stream) {
            // Another task brought it further meanwhile.
            Some((_, newer)) if *newer >= version => {}
            _ => {
                kept.insert(stream.clone(), (folded.clone(), version));
            }
        }
        Ok((folded, version))
    }
}

/// A domain refusal as a `409` problem of type `kind`, with the rule that refused it.
pub fn refused(kind: &'static str, e: impl std::fmt::Display) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        kind,
        "The command is not possible in the current state",
        e.to_string(),
    )
}

/// Render personal data for an answer: the value, or that it was erased.
pub fn personal_json<T: serde::Serialize>(p: &Personal<T>) -> serde_json::Value {
    match p {
        Personal::Available(v) => serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
        Personal::Erased => serde_json::json!({ "erased": true }),
    }
}

#[cfg(test)]
mod tests {
    use amtsbuch_infra::vault::VaultError;
    use amtsbuch_infra::StoreError;
    use axum::http::StatusCode;

    use super::{sealer_problem, SealerError};

    /// A vault that cannot reach its database (a pool without a free connection in time,
    /// under load) is an outage to retry, not a fault of ours.
    #[test]
    fn an_unreachable_vault_is_unavailable_not_internal() {
        let e = SealerError::Vault(VaultError::Store(StoreError::Unavailable(
            "pool timed out while waiting for an open connection".to_owned(),
        )));
        let problem = sealer_problem(e);
        assert_eq!(problem.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(problem
            .headers
            .iter()
            .any(|(name, _)| name == axum::http::header::RETRY_AFTER));
    }
}
