//! The HTTP API: routes, request parsing and response bodies.
//!
//! Bodies are taken as raw bytes and parsed here, not by axum's extractors, so that every
//! malformed input — bad JSON, unknown fields, oversize bodies, bad names — is answered with
//! an RFC 9457 problem that says what to fix, and nothing reaches the store unless the
//! whole request is valid. Until authentication arrives the server binds to loopback.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::{
    AppendRequest, AuthorityId, EventType, ExpectedVersion, NewEvent, ServiceKey, StreamId,
};
use amtsbuch_infra::{AnyStore, Direction, EventStore, RecordedEvent};

use crate::ledger_http;
use crate::problem::Problem;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default and largest page of a read.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: AnyStore,
    /// The signing configuration, when this server signs checkpoints.
    pub ledger: Option<crate::ledger_http::LedgerInfo>,
}

/// The router with every route of this API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/streams/{stream}/events", get(read_stream).post(append))
        .route("/events", get(read_all))
        .route("/events/{id}/record", get(ledger_http::record))
        .route("/events/{id}/receipt", get(ledger_http::receipt))
        .route("/ledger/checkpoint", get(ledger_http::latest_checkpoint))
        .route(
            "/ledger/checkpoints/{size}",
            get(ledger_http::checkpoint_at),
        )
        .route("/ledger/proof/inclusion", get(ledger_http::inclusion))
        .route("/ledger/proof/consistency", get(ledger_http::consistency))
        .route("/ledger/export", get(ledger_http::export))
        .route("/ledger/key", get(ledger_http::keys))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn not_found() -> Problem {
    Problem::not_found("no such resource; see README.md for the routes of this API")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this resource does not support that method; events are appended with POST and never changed or deleted",
    )
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(Duration::from_secs(2), state.store.ping()).await {
        Ok(Ok(())) => {
            Json(json!({ "status": "ready", "store": state.store.kind() })).into_response()
        }
        Ok(Err(e)) => Problem::unavailable(&e).into_response(),
        Err(_) => Problem::unavailable(&"store ping timed out").into_response(),
    }
}

/// One event of an append body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventInput {
    id: Option<Uuid>,
    #[serde(rename = "type")]
    event_type: EventType,
    data: Value,
    #[serde(default)]
    metadata: MetadataInput,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataInput {
    tenant: Option<String>,
    actor: Option<String>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    authority: Option<AuthorityId>,
    service: Option<ServiceKey>,
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

fn parse_events(body: &[u8]) -> Result<Vec<NewEvent>, Problem> {
    let inputs: Vec<EventInput> = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(
            "invalid-body",
            format!("the body must be a JSON array of events {{\"id\"?, \"type\", \"data\", \"metadata\"?}}: {e}"),
        )
    })?;
    if inputs.is_empty() {
        return Err(Problem::bad_request(
            "invalid-body",
            "the body must contain at least one event",
        ));
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
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
        .collect()
}

async fn append(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let stream = parse_stream(&stream)?;
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
    let events = parse_events(&body)?;
    let event_ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
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
    let positions: Vec<u64> = (outcome.first_position..=outcome.last_position).collect();
    let body = json!({
        "stream": stream.as_str(),
        "first_position": outcome.first_position,
        "last_position": outcome.last_position,
        "positions": positions,
        "event_ids": event_ids,
        "next_expected_version": outcome.next_version,
        "duplicate": outcome.duplicate,
    });
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
struct StreamQuery {
    from: Option<String>,
    limit: Option<String>,
    direction: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AllQuery {
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
    let n = parse_number("limit", raw, DEFAULT_LIMIT as u64, MAX_LIMIT as u64)?;
    if n == 0 {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("limit must be from 1 to {MAX_LIMIT}"),
        ));
    }
    Ok(n as usize)
}

fn query_problem(e: axum::extract::rejection::QueryRejection) -> Problem {
    Problem::bad_request("invalid-query", e.body_text())
}

/// The JSON form of a stored event, as read endpoints return it.
pub fn event_json(e: &RecordedEvent) -> Result<Value, Problem> {
    let r = e
        .record()
        .map_err(|err| Problem::internal(&format!("position {}: {err}", e.position)))?;
    let mut metadata = serde_json::Map::new();
    metadata.insert("schema_version".into(), json!(r.schema_version));
    if let Some(t) = &r.tenant {
        metadata.insert("tenant".into(), json!(t));
    }
    if let Some(a) = &r.actor {
        metadata.insert("actor".into(), json!(a));
    }
    if let Some(c) = r.correlation_id {
        metadata.insert("correlation_id".into(), json!(c));
    }
    if let Some(c) = r.causation_id {
        metadata.insert("causation_id".into(), json!(c));
    }
    if let Some(a) = &r.authority {
        metadata.insert("authority".into(), json!(a));
    }
    if let Some(s) = &r.service {
        metadata.insert("service".into(), json!(s));
    }
    metadata.insert(
        "occurred_at".into(),
        json!(format_timestamp(&r.occurred_at)),
    );
    metadata.insert(
        "recorded_at".into(),
        json!(format_timestamp(&r.recorded_at)),
    );
    let mut out = json!({
        "position": e.position,
        "id": r.event_id,
        "stream": r.stream_id.as_str(),
        "version": r.stream_version,
        "type": r.event_type.as_str(),
        "data": r.data,
        "metadata": metadata,
        "leaf_hash": to_hex(&e.leaf_hash),
        "chain_hash": to_hex(&e.chain_hash),
    });
    if let (Some(sealed), Some(obj)) = (&r.sealed, out.as_object_mut()) {
        obj.insert("sealed".into(), json!(sealed));
    }
    Ok(out)
}

fn events_json(events: &[RecordedEvent]) -> Result<Vec<Value>, Problem> {
    events.iter().map(event_json).collect()
}

async fn read_stream(
    State(state): State<AppState>,
    Path(stream): Path<String>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
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
    Ok(Json(json!({
        "stream": stream.as_str(),
        "events": events_json(&events)?,
        "next_from": next,
    })))
}

async fn read_all(
    State(state): State<AppState>,
    query: Result<Query<AllQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, Problem> {
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
    Ok(Json(json!({
        "events": events_json(&events)?,
        "next_after": next_after,
    })))
}
