//! HTTP routes of the verifiable ledger: signed checkpoints, proofs, the stored bytes of a
//! record, receipts, the export, and the log's public keys.
//!
//! Everything served here is meant to be checked by someone who does not trust this server:
//! checkpoints are C2SP signed notes, receipts are C2SP tlog-proofs, proofs are RFC 9162
//! hash lists (base64), and `/events/{id}/record` returns exactly the stored bytes so that
//! anybody can hash them. Proofs are only served for tree sizes a checkpoint covers.

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use amtsbuch_domain::base64;
use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::merkle::Hash;
use amtsbuch_domain::tlog_proof::TlogProof;
use amtsbuch_infra::ledger::{self, LedgerError, StoredCheckpoint};
use amtsbuch_infra::{EventStore, RecordedEvent};

use crate::dto::{ConsistencyProof, InclusionProof, ProblemDoc};
use crate::problem::Problem;
use crate::state::{AppState, LedgerInfo};

/// Records per page while streaming an export.
const EXPORT_PAGE: usize = 2000;

fn ledger_info(state: &AppState) -> Result<&LedgerInfo, Problem> {
    state.ledger.as_ref().ok_or_else(|| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger-disabled",
            "The ledger is not signing",
            "this server was started without a signing key (--signing-key or AMTSBUCH_SIGNING_KEY), so it issues no checkpoints",
        )
    })
}

impl From<LedgerError> for Problem {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(s) => s.into(),
            LedgerError::Invalid(detail) => Problem::bad_request("invalid-proof-request", detail),
            LedgerError::NotCovered { requested, latest } => {
                not_yet_checkpointed(requested, latest)
            }
            LedgerError::Corrupt { .. } => Problem::internal(&e),
        }
    }
}

fn note_response(c: &StoredCheckpoint) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        c.note.clone(),
    )
        .into_response()
}

fn b64_list(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| base64::encode(h)).collect()
}

/// The documented 409 of the routes that need a checkpoint.
const NOT_YET_CHECKPOINTED: &str = "Not covered by a checkpoint yet (`not-yet-checkpointed`, with `latest_checkpoint_size`, 0 before the first checkpoint); retry after `Retry-After` seconds";

fn no_checkpoint() -> Problem {
    Problem::not_found("no checkpoint has been signed yet; append an event and retry in a second")
}

/// A proof or receipt asked for a tree size that no signed checkpoint covers yet (`latest`
/// is 0 before the first): the answer comes once the ledger task signs the next
/// checkpoint, which it does every second or so, so the caller is told to retry then.
fn not_yet_checkpointed(requested: u64, latest: u64) -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "not-yet-checkpointed",
        "Not covered by a checkpoint yet",
        format!("tree size {requested} is not covered by a signed checkpoint yet (latest: {latest}); checkpoints are issued every second or so, retry shortly"),
    )
    .with("latest_checkpoint_size", latest)
    .with_header(
        header::RETRY_AFTER,
        HeaderValue::from_static(crate::problem::RETRY_AFTER_SECS),
    )
}

/// The latest checkpoint's size, or the not-yet-checkpointed answer for `requested` before
/// the first checkpoint.
async fn latest_size(state: &AppState, requested: u64) -> Result<u64, Problem> {
    ledger::latest_checkpoint(&state.store)
        .await?
        .map(|c| c.size)
        .ok_or_else(|| not_yet_checkpointed(requested, 0))
}

/// The latest signed checkpoint (a C2SP signed note).
#[utoipa::path(get, path = "/ledger/checkpoint", tag = "ledger", security(("bearer" = ["citizen", "authority", "fachverfahren", "dpo", "auditor", "operator", "cashier", "moderator"])),
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = 404, description = "No checkpoint signed yet", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn latest_checkpoint(State(state): State<AppState>) -> Result<Response, Problem> {
    ledger_info(&state)?;
    let c = ledger::latest_checkpoint(&state.store)
        .await?
        .ok_or_else(no_checkpoint)?;
    Ok(note_response(&c))
}

/// The checkpoint of one tree size.
#[utoipa::path(get, path = "/ledger/checkpoints/{size}", tag = "ledger", security(("bearer" = ["citizen", "authority", "fachverfahren", "dpo", "auditor", "operator", "cashier", "moderator"])),
    params(("size" = u64, Path, minimum = 0, description = "Tree size")),
    responses(
        (status = 200, description = "The signed note", body = String, content_type = "text/plain"),
        (status = 400, description = "Invalid size", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No checkpoint of that size", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn checkpoint_at(
    State(state): State<AppState>,
    Path(size): Path<String>,
) -> Result<Response, Problem> {
    ledger_info(&state)?;
    let size: u64 = size.parse().map_err(|_| {
        Problem::bad_request(
            "invalid-query",
            format!("tree size must be a non-negative integer, got {size:?}"),
        )
    })?;
    let c = ledger::checkpoint_at(&state.store, size)
        .await?
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no checkpoint of size {size} was signed; GET /ledger/checkpoint gives the latest"
            ))
        })?;
    Ok(note_response(&c))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    index: Option<String>,
    event_id: Option<String>,
    size: Option<String>,
}

fn number(name: &str, raw: &str) -> Result<u64, Problem> {
    raw.parse().map_err(|_| {
        Problem::bad_request(
            "invalid-query",
            format!("{name} must be a non-negative integer, got {raw:?}"),
        )
    })
}

async fn event_by_id(state: &AppState, raw: &str) -> Result<RecordedEvent, Problem> {
    let id = Uuid::parse_str(raw)
        .map_err(|_| Problem::bad_request("invalid-event-id", format!("{raw:?} is not a UUID")))?;
    state
        .store
        .event_by_id(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no event with id {id}")))
}

/// The size to prove against: the one asked for, or the latest checkpoint's. `needs` is
/// the smallest tree the proof is about, named when no checkpoint exists yet.
async fn proof_size(state: &AppState, raw: Option<&str>, needs: u64) -> Result<u64, Problem> {
    match raw {
        Some(s) => number("size", s),
        None => latest_size(state, needs).await,
    }
}

/// An RFC 9162 inclusion proof for one leaf.
#[utoipa::path(get, path = "/ledger/proof/inclusion", tag = "ledger", security(("bearer" = ["auditor", "operator"])),
    params(
        ("index" = Option<u64>, Query, minimum = 0, description = "0-based leaf index (position − 1); give exactly one of index and event_id"),
        ("event_id" = Option<Uuid>, Query, description = "The event's id; give exactly one of index and event_id"),
        ("size" = Option<u64>, Query, minimum = 1, description = "Tree size (a checkpoint's), greater than the leaf index; default the latest checkpoint's")),
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, description = "Invalid query: neither or both of index and event_id, or an index not below the size", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = NOT_YET_CHECKPOINTED, body = ProblemDoc, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until a new checkpoint is likely"))),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn inclusion(
    State(state): State<AppState>,
    query: Result<Query<InclusionQuery>, QueryRejection>,
) -> Result<Json<InclusionProof>, Problem> {
    ledger_info(&state)?;
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let (index, leaf) = match (&q.index, &q.event_id) {
        (Some(i), None) => (number("index", i)?, None),
        (None, Some(id)) => {
            let e = event_by_id(&state, id).await?;
            (e.position - 1, Some(e.leaf_hash))
        }
        _ => {
            return Err(Problem::bad_request(
                "invalid-query",
                "give exactly one of index (0-based leaf index = position - 1) or event_id",
            ))
        }
    };
    let size = proof_size(&state, q.size.as_deref(), index.saturating_add(1)).await?;
    if q.size.is_none() && index >= size {
        // No size was asked for: the leaf is only not covered by a checkpoint yet.
        return Err(not_yet_checkpointed(index.saturating_add(1), size));
    }
    let proof = ledger::inclusion_proof(&state.store, index, size).await?;
    let leaf = match leaf {
        Some(l) => l,
        None => state
            .store
            .read_all(index, 1)
            .await?
            .first()
            .map(|e| e.leaf_hash)
            .ok_or_else(|| Problem::not_found(format!("no event at index {index}")))?,
    };
    Ok(Json(InclusionProof {
        index,
        position: index + 1,
        size,
        leaf_hash: base64::encode(&leaf),
        proof: b64_list(&proof),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    from: String,
    to: Option<String>,
}

/// An RFC 9162 consistency proof between two tree sizes.
#[utoipa::path(get, path = "/ledger/proof/consistency", tag = "ledger", security(("bearer" = ["auditor", "operator"])),
    params(
        ("from" = u64, Query, minimum = 1, description = "The older tree size"),
        ("to" = Option<u64>, Query, minimum = 1, description = "The newer tree size, at least `from`; default the latest checkpoint's")),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "Invalid query, or `from` greater than `to`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = NOT_YET_CHECKPOINTED, body = ProblemDoc, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until a new checkpoint is likely"))),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn consistency(
    State(state): State<AppState>,
    query: Result<Query<ConsistencyQuery>, QueryRejection>,
) -> Result<Json<ConsistencyProof>, Problem> {
    ledger_info(&state)?;
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let from = number("from", &q.from)?;
    let to = proof_size(&state, q.to.as_deref(), from).await?;
    if q.to.is_none() && from > to {
        return Err(not_yet_checkpointed(from, to));
    }
    let proof = ledger::consistency_proof(&state.store, from, to).await?;
    Ok(Json(ConsistencyProof {
        from,
        to,
        proof: b64_list(&proof),
    }))
}

/// Exactly the stored bytes of a record, so that anyone can hash them.
#[utoipa::path(get, path = "/events/{id}/record", tag = "ledger", security(("bearer" = ["auditor", "operator"])),
    params(("id" = Uuid, Path, description = "The event id")),
    responses(
        (status = 200, description = "The stored RFC 8785 bytes", body = Object),
        (status = 400, description = "Not a UUID", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn record(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let e = event_by_id(&state, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Bytes::from(e.bytes),
    )
        .into_response())
}

/// A C2SP tlog-proof that the event is in the log, against the latest checkpoint.
#[utoipa::path(get, path = "/events/{id}/receipt", tag = "ledger", security(("bearer" = ["auditor", "operator"])),
    params(("id" = Uuid, Path, description = "The event id")),
    responses(
        (status = 200, description = "The receipt (C2SP tlog-proof)", body = String, content_type = "text/plain"),
        (status = 400, description = "Not a UUID", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such event", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = NOT_YET_CHECKPOINTED, body = ProblemDoc, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until a new checkpoint is likely"))),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn receipt(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    ledger_info(&state)?;
    let e = event_by_id(&state, &id).await?;
    let receipt = tlog_proof_text(&state, &e).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"receipt.tlog-proof\"",
            ),
        ],
        receipt,
    )
        .into_response())
}

/// A C2SP tlog-proof that `e` is in the log, against the latest checkpoint; its `extra` is
/// `{"event_id","leaf_hash"}`.
pub async fn tlog_proof_text(state: &AppState, e: &RecordedEvent) -> Result<String, Problem> {
    ledger_info(state)?;
    let checkpoint = ledger::latest_checkpoint(&state.store)
        .await?
        .ok_or_else(|| not_yet_checkpointed(e.position, 0))?;
    if checkpoint.size < e.position {
        return Err(LedgerError::NotCovered {
            requested: e.position,
            latest: checkpoint.size,
        }
        .into());
    }
    let index = e.position - 1;
    let proof = ledger::inclusion_proof(&state.store, index, checkpoint.size).await?;
    let record = e.record().map_err(|err| Problem::internal(&err))?;
    let extra = json!({ "event_id": record.event_id, "leaf_hash": to_hex(&e.leaf_hash) });
    let receipt = TlogProof {
        extra: Some(
            amtsbuch_domain::jcs::canonicalize(&extra).map_err(|err| Problem::internal(&err))?,
        ),
        index,
        inclusion_proof: proof,
        checkpoint: checkpoint.note,
    };
    Ok(receipt.to_text())
}

/// The log's verifier keys (C2SP vkeys), one per line.
#[utoipa::path(get, path = "/ledger/key", tag = "ledger", security(("bearer" = ["citizen", "authority", "fachverfahren", "dpo", "auditor", "operator", "cashier", "moderator"])),
    responses(
        (status = 200, description = "The vkeys", body = String, content_type = "text/plain"),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn keys(State(state): State<AppState>) -> Result<Response, Problem> {
    let info = ledger_info(&state)?;
    let mut body = info.vkeys.join("\n");
    body.push('\n');
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    from: Option<String>,
    to: Option<String>,
}

/// JSON Lines: a header, the state before `from` (if > 1), every record from `from` to
/// `to`, and each checkpoint right after the record it ends at. `to` defaults to the latest
/// checkpoint, so that everything exported is covered by a signature.
#[utoipa::path(get, path = "/ledger/export", tag = "ledger", security(("bearer" = ["auditor", "operator"])),
    params(
        ("from" = Option<u64>, Query, minimum = 1, description = "First position (default 1)"),
        ("to" = Option<u64>, Query, minimum = 1, description = "Last position, at least `from` (default the latest checkpoint's size)")),
    responses(
        (status = 200, description = "JSON Lines: header, records and checkpoints", body = String, content_type = "application/jsonl"),
        (status = 400, description = "Invalid range: `from` greater than `to`", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "`to` beyond the end of the log (`beyond-the-log`), or, without `to`, a `from` no checkpoint covers yet (`not-yet-checkpointed`, with `Retry-After`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "This server does not sign", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn export(
    State(state): State<AppState>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let info = ledger_info(&state)?.clone();
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let from = q
        .from
        .as_deref()
        .map(|s| number("from", s))
        .transpose()?
        .unwrap_or(1);
    let latest = ledger::latest_checkpoint(&state.store)
        .await?
        .map_or(0, |c| c.size);
    let to = match q.to.as_deref() {
        Some(s) => number("to", s)?,
        None => latest,
    };
    if q.to.is_none() && from > to {
        // The default end is the latest checkpoint, which has not reached `from` yet.
        return Err(not_yet_checkpointed(from, latest));
    }
    if from == 0 || from > to {
        return Err(Problem::bad_request("invalid-query", format!("an export needs 1 <= from <= to; got from={from}, to={to} (latest checkpoint: {latest})")));
    }
    let head = state.store.head().await?.position;
    if to > head {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "beyond-the-log",
            "The range is beyond the end of the log",
            format!("to={to} is beyond the end of the log ({head})"),
        ));
    }
    let mut preamble = vec![json!({ "kind": "amtsbuch-export", "version": 1, "origin": info.origin, "from": from, "to": to }).to_string()];
    if from > 1 {
        let range = ledger::compact_range_at(&state.store, from - 1).await?;
        let before = state.store.read_all(from - 2, 1).await?;
        let chain = before
            .first()
            .map(|e| to_hex(&e.chain_hash))
            .unwrap_or_default();
        preamble.push(json!({ "kind": "start", "size": from - 1, "chain_hash": chain, "compact_range": b64_list(range.nodes()) }).to_string());
    }
    let checkpoints = ledger::checkpoints_between(&state.store, from - 1, to).await?;
    let store = state.store.clone();
    let mut pending = checkpoints.into_iter().peekable();
    let mut lines: Vec<String> = preamble;
    while let Some(c) = pending.next_if(|c| c.size == from - 1) {
        lines.push(checkpoint_line(&c));
    }
    let start = futures_util::stream::iter(
        lines
            .into_iter()
            .map(|l| Ok::<_, std::io::Error>(Bytes::from(l + "\n"))),
    );
    let body = stream::unfold(
        (from - 1, pending, store),
        move |(after, mut pending, store)| async move {
            if after >= to {
                return None;
            }
            let page = match store
                .read_all(after, EXPORT_PAGE.min((to - after) as usize))
                .await
            {
                Ok(p) if !p.is_empty() => p,
                Ok(_) => return None,
                Err(e) => {
                    tracing::error!(error = %e, "export interrupted");
                    return Some((
                        Err(std::io::Error::other("export interrupted")),
                        (to, pending, store),
                    ));
                }
            };
            let mut chunk = String::with_capacity(page.len() * 1100);
            let mut last = after;
            for e in &page {
                chunk.push_str(&json!({ "kind": "record", "position": e.position, "record": base64::encode(&e.bytes), "leaf_hash": to_hex(&e.leaf_hash), "chain_hash": to_hex(&e.chain_hash) }).to_string());
                chunk.push('\n');
                last = e.position;
                while let Some(c) = pending.next_if(|c| c.size == e.position) {
                    chunk.push_str(&checkpoint_line(&c));
                    chunk.push('\n');
                }
            }
            Some((Ok(Bytes::from(chunk)), (last, pending, store)))
        },
    );
    use futures_util::StreamExt;
    Ok((
        [(header::CONTENT_TYPE, "application/jsonl")],
        Body::from_stream(start.chain(body)),
    )
        .into_response())
}

fn checkpoint_line(c: &StoredCheckpoint) -> String {
    json!({ "kind": "checkpoint", "size": c.size, "note": c.note }).to_string()
}
