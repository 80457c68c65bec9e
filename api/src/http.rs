//! The HTTP API: routes, request parsing and response bodies.
//!
//! Bodies are taken as raw bytes and parsed here, not by axum's extractors, so that every
//! malformed input — bad JSON, unknown fields, oversize bodies, bad names — is answered with
//! an RFC 9457 problem that says what to fix, and nothing reaches the store unless the
//! whole request is valid. Until authentication arrives the server binds to loopback.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::{
    AppendRequest, AuthorityId, EventRecord, EventType, ExpectedVersion, NewEvent, ServiceKey,
    StreamId,
};
use amtsbuch_infra::{AnyStore, Direction, EventStore, RecordedEvent};

use crate::dto::{
    AppendResult, EventView, Health, LogPage, MetadataView, ProblemDoc, Ready, SealedView,
    StreamCatalogue, StreamPage, StreamSummaryView,
};
use crate::problem::Problem;
use crate::state::AppState;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default and largest page of a read.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "service", security(()),
    responses((status = 200, description = "The process is up", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// How long readiness waits for the store, then for a diagnosis of why it did not answer.
const READY_PING: Duration = Duration::from_millis(800);
const READY_DIAGNOSIS: Duration = Duration::from_millis(400);

/// Readiness: the event store answers, its writer can write, and the relay (if this
/// process runs it) is not stuck at an event it cannot publish. Answers within about a
/// second either way.
#[utoipa::path(get, path = "/readyz", tag = "service", security(()),
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: the store is unreachable (`unavailable`, the detail says why when it can tell: nothing listens at the address, or the server has no free connection), appends fail (`writer-failing`, since when), or the NATS relay cannot publish the event at a position (`relay-blocked`, naming it)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let unreachable = match tokio::time::timeout(READY_PING, state.store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("the store did not answer in time".to_owned()),
    };
    if let Some(error) = unreachable {
        let mut problem = Problem::unavailable(&error);
        // The route is public: the answer names the kind of failure only, and the log
        // has the address and the server's message.
        if let AnyStore::Postgres(pg) = &state.store {
            if let Ok(Some(why)) = tokio::time::timeout(READY_DIAGNOSIS, pg.diagnose()).await {
                tracing::warn!(diagnosis = %why.detail, "not ready: the database cannot be reached");
                problem.detail = why.class.to_owned();
            }
        }
        return problem.into_response();
    }
    if let Some(since) = state.store.writer_fault() {
        return not_ready(
            "writer-failing",
            format!("appends have failed since {}; the server log has the cause. The writer tries a write every second and is ready again once one succeeds", format_timestamp(&since)),
        )
        .into_response();
    }
    if let Some(blocked) = state.nats.as_ref().and_then(|n| n.blocked()) {
        // Why is in the server's log (the relay logs it as an error); NATS's own words
        // are not for a public route.
        return not_ready(
            "relay-blocked",
            format!("the NATS relay cannot publish the event at position {} and will not publish later ones before it; the server log says why", blocked.position),
        )
        .with("position", blocked.position)
        .into_response();
    }
    Json(Ready {
        status: "ready".into(),
        store: state.store.kind().into(),
    })
    .into_response()
}

fn not_ready(kind: &'static str, detail: String) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, kind, "Not ready", detail).with_header(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static(crate::problem::RETRY_AFTER_SECS),
    )
}

/// One event of an append body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// A UUIDv7 chosen by the client (makes retries idempotent); assigned when absent.
    #[schema(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-7[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    id: Option<Uuid>,
    /// Starts with a letter; letters, digits, `_`, `.`; at most 128 characters.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "ConsentGiven", pattern = "^[A-Za-z][A-Za-z0-9_.]{0,127}$")]
    event_type: EventType,
    /// The payload: any I-JSON value (RFC 7493), normally an object; no personal data.
    /// Member names occur once per object, and every number is stored exactly as sent:
    /// one that an IEEE double cannot hold so that it prints back as the same value
    /// (`1e-400`, `123456789012345678901234567890`) is refused, not rounded. `1.0`, `1e2`
    /// and `-0` are stored in their canonical form `1`, `100`, `0`.
    data: Value,
    #[serde(default)]
    metadata: MetadataInput,
    /// Personal data of one data subject. The server seals it (AES-256-GCM under the
    /// subject's key) into the record's `sealed` section; it is never stored, published or
    /// logged in plaintext, and erasing the subject makes it unreadable.
    personal: Option<PersonalInput>,
}

/// Personal data to seal under a data subject's key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonalInput {
    /// The data subject: its Servicekonto account id (a lowercase UUID).
    #[schema(value_type = Uuid, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    subject: String,
    /// The personal data, any I-JSON value (as `data`).
    data: Value,
}

/// Envelope metadata an append may set.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataInput {
    /// E.g. an AGS (`14612000`); 1 to 200 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    tenant: Option<String>,
    /// Pseudonymous id of who caused the event; 1 to 200 characters, no control characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"
    )]
    actor: Option<String>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    /// The responsible authority: lowercase letters, digits, `-`, `_` (at most 64).
    #[schema(value_type = Option<String>, example = "lra-meissen", pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    authority: Option<AuthorityId>,
    /// The administrative service, normally a 14-digit LeiKa key.
    #[schema(value_type = Option<String>, example = "99108001000000", pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")]
    service: Option<ServiceKey>,
    /// RFC 3339; defaults to the time of recording.
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    occurred_at: Option<DateTime<Utc>>,
    schema_version: Option<u32>,
}

fn parse_stream(raw: &str) -> Result<StreamId, Problem> {
    StreamId::parse(raw).map_err(|e| Problem::bad_request("invalid-stream-id", e.to_string()))
}

fn parse_expected(headers: &HeaderMap) -> Result<ExpectedVersion, Problem> {
    match headers.get("expected-version") {
        None => Ok(ExpectedVersion::Any),
        Some(v) => {
            let s = v.to_str().map_err(|_| {
                Problem::bad_request(
                    "invalid-expected-version",
                    "Expected-Version must be ASCII: 'any', 'no-stream' or a version number",
                )
            })?;
            s.parse().map_err(|e: amtsbuch_domain::NameError| {
                Problem::bad_request(
                    "invalid-expected-version",
                    format!("Expected-Version header: {e}"),
                )
            })
        }
    }
}

/// Personal data of the event at an index of the append, to be sealed before it is stored.
struct ToSeal {
    index: usize,
    subject: amtsbuch_infra::vault::SubjectId,
    data: Value,
}

fn parse_events(body: &[u8]) -> Result<(Vec<NewEvent>, Vec<ToSeal>), Problem> {
    let inputs: Vec<EventInput> = crate::body::parse_json(
        body,
        "a JSON array of events {\"id\"?, \"type\", \"data\", \"metadata\"?}",
    )?;
    if inputs.is_empty() {
        return Err(Problem::bad_request(
            "invalid-body",
            "the body must contain at least one event",
        ));
    }
    let mut to_seal = Vec::new();
    let events = inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            if let Some(p) = input.personal {
                let subject = amtsbuch_infra::vault::SubjectId::parse(&p.subject).map_err(|_| {
                    Problem::bad_request(
                        "invalid-subject",
                        format!("event {i}: personal.subject must be the subject's account id, a lowercase UUID"),
                    )
                })?;
                to_seal.push(ToSeal {
                    index: i,
                    subject,
                    data: p.data,
                });
            }
            let event_id = match input.id {
                Some(id) if id.get_version_num() == 7 => id,
                Some(id) => {
                    return Err(Problem::bad_request(
                        "invalid-event-id",
                        format!(
                        "event {i}: id {id} is not a UUIDv7; omit it to let the server assign one"
                    ),
                    ))
                }
                None => Uuid::now_v7(),
            };
            let m = input.metadata;
            Ok(NewEvent {
                event_id,
                event_type: input.event_type,
                schema_version: m.schema_version.unwrap_or(1),
                data: input.data,
                tenant: m.tenant,
                actor: m.actor,
                correlation_id: m.correlation_id,
                causation_id: m.causation_id,
                authority: m.authority,
                service: m.service,
                occurred_at: m.occurred_at,
                sealed: None,
            })
        })
        .collect::<Result<Vec<_>, Problem>>()?;
    Ok((events, to_seal))
}

/// Seal each event's personal data under its subject's key.
async fn seal_personal(
    state: &AppState,
    stream: &StreamId,
    events: &mut [NewEvent],
    to_seal: Vec<ToSeal>,
) -> Result<(), Problem> {
    if to_seal.is_empty() {
        return Ok(());
    }
    let sealer = state.sealer.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "personal-data-disabled",
            "Personal data cannot be sealed",
            "this server has no key-encryption key (--kek), so it accepts no personal data",
        )
    })?;
    for item in to_seal {
        let Some(event) = events.get_mut(item.index) else {
            continue;
        };
        let envelope = amtsbuch_domain::seal::Envelope {
            event_id: event.event_id,
            stream_id: stream,
            event_type: &event.event_type,
        };
        let sealed = sealer
            .seal_value(&item.subject, &envelope, &item.data)
            .await
            .map_err(|e| sealing_problem(e, item.index))?;
        event.sealed = Some(sealed);
    }
    Ok(())
}

/// The problem for a failed seal: an erased subject is the caller's to know; the rest is
/// ours.
pub fn sealing_problem(e: amtsbuch_infra::sealer::SealerError, index: usize) -> Problem {
    use amtsbuch_infra::sealer::SealerError;
    use amtsbuch_infra::vault::VaultError;
    match e {
        SealerError::Vault(VaultError::Erased { subject, at }) => Problem::new(
            StatusCode::CONFLICT,
            "subject-erased",
            "The data subject is erased",
            format!("event {index}: subject {subject} was erased at {}; no new personal data is stored for it", format_timestamp(&at)),
        ),
        SealerError::Seal(amtsbuch_domain::seal::SealError::Plaintext(reason)) => {
            Problem::bad_request("invalid-body", format!("event {index}: personal.data: {reason}"))
        }
        // The key vault's database failing is an outage to retry, as in `command`.
        SealerError::Vault(VaultError::Store(e)) => Problem::from(e),
        other => Problem::internal(&other),
    }
}

/// Append events to one stream.
#[utoipa::path(post, path = "/streams/{stream}/events", tag = "streams",
    security(("bearer" = ["operator"])),
    params(
        ("stream" = String, Path, pattern = "^[a-z][a-z0-9_]{0,63}-[A-Za-z0-9._:-]{1,200}$", description = "`<category>-<id>`, e.g. `consent-0193a1b2`: a category (a lowercase letter, then up to 63 lowercase letters, digits or `_`), `-`, and an id of 1 to 200 letters, digits, `-`, `_`, `.`, `:`"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|no-stream|[0-9]{1,15})$", description = "`any` (default), `no-stream`, or the stream's current version (0 to 2^53 − 1)")),
    request_body(content = Vec<EventInput>, description = "1 to 1000 events, at most 1 MiB"),
    responses(
        (status = 201, description = "Appended", body = AppendResult),
        (status = 200, description = "A retry of an append already stored: the original positions", body = AppendResult),
        (status = 400, description = "Invalid input; nothing was written", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "The token's roles may not use this route, or the stream belongs to a domain module (`reserved-stream`), whose own routes alone write it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Expected version or event id conflict, or the personal data's subject is erased (`subject-erased`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "The body is larger than 1 MiB (`body-too-large`), or an event's stored record would be larger than one NATS message can carry (`record-too-large`, with `max_record_bytes`); nothing was written", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The store is unreachable (with `Retry-After`; the append may be retried with the same event ids), or personal data was sent to a server without a key-encryption key", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn append(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let stream = parse_stream(&stream)?;
    // A stream a domain module writes only through its own routes, which check its rules.
    crate::module::refuse_reserved(crate::domains::MODULES, &stream)?;
    let expected = parse_expected(&headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                "The request body is too large",
                format!("an append body may be at most {MAX_BODY_BYTES} bytes; split the events over several appends"),
            )
        } else {
            Problem::bad_request("invalid-body", e.body_text())
        }
    })?;
    let (mut events, to_seal) = parse_events(&body)?;
    seal_personal(&state, &stream, &mut events, to_seal).await?;
    let event_ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let outcome = state
        .store
        .append(AppendRequest {
            stream: stream.clone(),
            expected,
            events,
        })
        .await?;
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let body = AppendResult {
        stream: stream.to_string(),
        first_position: outcome.first_position,
        last_position: outcome.last_position,
        positions: (outcome.first_position..=outcome.last_position).collect(),
        event_ids,
        next_expected_version: outcome.next_version,
        duplicate: outcome.duplicate,
    };
    Ok((
        status,
        [(
            axum::http::header::LOCATION,
            format!("/streams/{stream}/events"),
        )],
        Json(body),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    from: Option<String>,
    limit: Option<String>,
    direction: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllQuery {
    after: Option<String>,
    limit: Option<String>,
}

fn parse_number(name: &str, raw: Option<&str>, default: u64, max: u64) -> Result<u64, Problem> {
    match raw {
        None => Ok(default),
        Some(s) => s.parse::<u64>().ok().filter(|v| *v <= max).ok_or_else(|| {
            Problem::bad_request(
                "invalid-query",
                format!("{name} must be an integer from 0 to {max}, got {s:?}"),
            )
        }),
    }
}

fn parse_limit(raw: Option<&str>) -> Result<usize, Problem> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid-query",
                    format!("limit must be an integer from 1 to {MAX_LIMIT}, got {s:?}"),
                )
            }),
    }
}

fn query_problem(e: axum::extract::rejection::QueryRejection) -> Problem {
    Problem::bad_request("invalid-query", e.body_text())
}

/// The JSON form of a stored event, as read endpoints return it.
pub fn event_json(e: &RecordedEvent) -> Result<EventView, Problem> {
    let r = e
        .record()
        .map_err(|err| Problem::internal(&format!("position {}: {err}", e.position)))?;
    Ok(record_json(e, &r))
}

/// The JSON form of a stored event whose record is parsed already.
pub fn record_json(e: &RecordedEvent, r: &EventRecord) -> EventView {
    EventView {
        position: e.position,
        id: r.event_id,
        stream: r.stream_id.to_string(),
        version: r.stream_version,
        event_type: r.event_type.to_string(),
        data: r.data.clone(),
        metadata: MetadataView {
            schema_version: r.schema_version,
            tenant: r.tenant.clone(),
            actor: r.actor.clone(),
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            authority: r.authority.as_ref().map(ToString::to_string),
            service: r.service.as_ref().map(ToString::to_string),
            occurred_at: format_timestamp(&r.occurred_at),
            recorded_at: format_timestamp(&r.recorded_at),
        },
        leaf_hash: to_hex(&e.leaf_hash),
        chain_hash: to_hex(&e.chain_hash),
        sealed: r.sealed.as_ref().map(|s| SealedView {
            subject: s.subject.clone(),
            key_id: s.key_id.clone(),
            alg: s.alg.clone(),
            nonce: s.nonce.clone(),
            ciphertext: s.ciphertext.clone(),
        }),
    }
}

fn events_json(events: &[RecordedEvent]) -> Result<Vec<EventView>, Problem> {
    events.iter().map(event_json).collect()
}

/// Read one stream forwards or backwards.
#[utoipa::path(get, path = "/streams/{stream}/events", tag = "streams",
    security(("bearer" = ["operator"])),
    params(
        ("stream" = String, Path, pattern = "^[a-z][a-z0-9_]{0,63}-[A-Za-z0-9._:-]{1,200}$", description = "`<category>-<id>`"),
        ("from" = Option<u64>, Query, minimum = 0, maximum = 9007199254740991_i64, description = "First version to read (default 1, or the newest when backwards)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000 (default 100)"),
        ("direction" = Option<String>, Query, pattern = "^(forwards|backwards)$", description = "`forwards` (default) or `backwards`")),
    responses(
        (status = 200, description = "A page of the stream", body = StreamPage),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn read_stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StreamPage>, Problem> {
    let stream = parse_stream(&stream)?;
    let Query(q) = query.map_err(query_problem)?;
    let direction = match q.direction.as_deref() {
        None | Some("forwards") => Direction::Forwards,
        Some("backwards") => Direction::Backwards,
        Some(other) => {
            return Err(Problem::bad_request(
                "invalid-query",
                format!("direction must be 'forwards' or 'backwards', got {other:?}"),
            ))
        }
    };
    let default_from = match direction {
        Direction::Forwards => 1,
        Direction::Backwards => amtsbuch_domain::record::MAX_SAFE_INTEGER,
    };
    let from = parse_number(
        "from",
        q.from.as_deref(),
        default_from,
        amtsbuch_domain::record::MAX_SAFE_INTEGER,
    )?;
    let limit = parse_limit(q.limit.as_deref())?;
    let events = state
        .store
        .read_stream(&stream, from, direction, limit)
        .await?;
    let next = match (direction, events.last()) {
        (_, None) => None,
        (_, Some(_)) if events.len() < limit => None,
        (Direction::Forwards, Some(last)) => last.record().ok().map(|r| r.stream_version + 1),
        (Direction::Backwards, Some(last)) => last
            .record()
            .ok()
            .and_then(|r| r.stream_version.checked_sub(1))
            .filter(|v| *v > 0),
    };
    Ok(Json(StreamPage {
        stream: stream.to_string(),
        events: events_json(&events)?,
        next_from: next,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogueQuery {
    category: Option<String>,
    authority: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// List streams from the catalogue read model, in creation order.
#[utoipa::path(get, path = "/streams", tag = "streams",
    security(("bearer" = ["operator"])),
    params(
        ("category" = Option<String>, Query, pattern = "^[a-z][a-z0-9_]{0,63}$", description = "Only streams of this category"),
        ("authority" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$", description = "Only streams addressed to this authority"),
        ("after" = Option<u64>, Query, minimum = 0, maximum = 9007199254740991_i64, description = "The `next_after` of the previous page"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000 (default 100)")),
    responses(
        (status = 200, description = "A page of the catalogue", body = StreamCatalogue),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot be used right now (`unavailable`, with `Retry-After`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list_streams(
    State(state): State<AppState>,
    query: Result<Query<CatalogueQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<StreamCatalogue>, Problem> {
    use amtsbuch_projections::streams;
    let Query(q) = query.map_err(query_problem)?;
    let invalid =
        |e: amtsbuch_domain::NameError| Problem::bad_request("invalid-query", e.to_string());
    let query = streams::StreamQuery {
        category: q
            .category
            .as_deref()
            .map(amtsbuch_domain::Category::parse)
            .transpose()
            .map_err(invalid)?,
        authority: q
            .authority
            .as_deref()
            .map(AuthorityId::parse)
            .transpose()
            .map_err(invalid)?,
        after: q
            .after
            .as_deref()
            .map(|a| {
                parse_number(
                    "after",
                    Some(a),
                    0,
                    amtsbuch_domain::record::MAX_SAFE_INTEGER,
                )
            })
            .transpose()?,
        limit: parse_limit(q.limit.as_deref())?,
    };
    let db = amtsbuch_projections::db::ReadDb::new(&state.store);
    // A failing database is an outage to retry (503), not a bug (500).
    let as_of_position = amtsbuch_projections::checkpoint::read(&db, streams::NAME)
        .await?
        .unwrap_or(0);
    let page = streams::list_streams(&db, &query).await?;
    Ok(Json(StreamCatalogue {
        streams: page
            .streams
            .into_iter()
            .map(|s| StreamSummaryView {
                stream: s.stream_id.to_string(),
                category: s.category.to_string(),
                version: s.version,
                first_position: s.first_position,
                last_position: s.last_position,
                last_event_type: s.last_event_type.to_string(),
                authority: s.authority.map(|a| a.to_string()),
                tenant: s.tenant,
                created_at: format_timestamp(&s.created_at),
                updated_at: format_timestamp(&s.updated_at),
            })
            .collect(),
        next_after: page.next,
        as_of_position,
    }))
}

/// Read the global log after a position.
#[utoipa::path(get, path = "/events", tag = "streams",
    security(("bearer" = ["operator"])),
    params(
        ("after" = Option<u64>, Query, minimum = 0, maximum = 9007199254740991_i64, description = "Read events with a greater position (default 0)"),
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 1000, description = "1 to 1000 (default 100)")),
    responses(
        (status = 200, description = "A page of the log", body = LogPage),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn read_all(
    State(state): State<AppState>,
    query: Result<Query<AllQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<LogPage>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let after = parse_number(
        "after",
        q.after.as_deref(),
        0,
        amtsbuch_domain::record::MAX_SAFE_INTEGER,
    )?;
    let limit = parse_limit(q.limit.as_deref())?;
    let events = state.store.read_all(after, limit).await?;
    let next_after = events.last().map_or(after, |e| e.position);
    Ok(Json(LogPage {
        events: events_json(&events)?,
        next_after,
    }))
}
