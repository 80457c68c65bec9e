//! The moderator's routes: the queue of reported and hidden contributions, and hiding and
//! unhiding a contribution with a reason. Moderation never deletes: both are events of the
//! contribution's stream, shown in the procedure's public moderation log with their
//! reasons (never who reported, never which moderator acted).
//!
//! A moderator is scoped by its token's `moderates` (ADR 0006): each entry is a
//! procedure's id (it moderates that procedure) or an authority's id (it moderates every
//! procedure that authority runs). Outside that scope a contribution is refused with
//! `403`, whatever other roles the token holds: the route grants the moderator role only,
//! and the guard narrows the caller to it.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::participation::contribution::{ContributionCommand, ContributionState};
use amtsbuch_domain::participation::procedure::Procedure;
use amtsbuch_domain::participation::{ContributionId, Reason};
use amtsbuch_domain::Routing;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::participation as rm;

use super::participant::contribution_problem;
use crate::auth::Caller;
use crate::body;
use crate::command::{current, execute, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// Whether the moderator `caller` moderates `procedure`: its id or its authority's id is
/// among the token's `moderates`. Asked of the moderator role alone.
pub fn moderates(caller: &Principal, procedure: &Procedure) -> bool {
    let id = procedure.id.to_string();
    caller.has(Role::Moderator)
        && caller
            .moderates()
            .iter()
            .any(|scope| scope.as_str() == id || scope.as_str() == procedure.authority.as_str())
}

fn contribution_id(raw: &str) -> Result<ContributionId, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .map(ContributionId)
        .ok_or_else(|| Problem::not_found("no such contribution"))
}

/// The queue's page.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueParams {
    limit: Option<u32>,
}

/// The contributions the caller moderates that were reported or are hidden, the most
/// reported first.
#[utoipa::path(get, path = "/moderation/queue", tag = "participation",
    security(("bearer" = ["moderator"])),
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "At most this many (default 50)")),
    responses(
        (status = 200, description = "Reported or hidden contributions of the moderated procedures: reports, hidden, and a comment's or defect report's public text", body = Object),
        (status = 400, description = "An invalid limit", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn queue(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<QueueParams>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=rm::MAX_LIMIT).contains(&limit) {
        return Err(Problem::bad_request(
            "invalid-query",
            format!("limit is 1 to {}", rm::MAX_LIMIT),
        ));
    }
    if !caller.has(Role::Moderator) {
        return Err(Problem::forbidden(
            "only a moderator has a moderation queue",
        ));
    }
    // A scope that reads as a UUID names a procedure, any other an authority.
    let (procedures, authorities): (Vec<String>, Vec<String>) = caller
        .moderates()
        .iter()
        .map(|s| s.as_str().to_owned())
        .partition(|s| Uuid::parse_str(s).is_ok());
    let db = ReadDb::new(&state.store);
    let rows = rm::moderation_queue(&db, &procedures, &authorities, limit).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut item = if matches!(row.kind.as_str(), "comment" | "defect_report") {
            super::public::public_contribution(&state, row, false).await?
        } else {
            json!({ "id": row.contribution_id, "kind": row.kind, "submitted_at": row.submitted_at })
        };
        item["procedure_id"] = json!(row.procedure_id);
        item["reports"] = json!(row.reports);
        item["hidden"] = json!(row.hidden);
        item["withdrawn"] = json!(row.withdrawn);
        items.push(item);
    }
    Ok(Json(json!({ "items": items })))
}

/// A moderator's reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// Shown in the procedure's public moderation log.
    #[schema(value_type = String)]
    reason: Reason,
}

/// Hides or unhides, after checking the scope.
async fn moderate(
    state: &AppState,
    caller: &Principal,
    id: &str,
    raw: Result<Bytes, BytesRejection>,
    hide: bool,
) -> Result<Json<Value>, Problem> {
    let cid = contribution_id(id)?;
    let req: ModerationRequest = body::json(raw, "{\"reason\"}")?;
    let (found, _) = current::<ContributionState>(state, &cid.stream_id()).await?;
    let contribution = found
        .contribution()
        .ok_or_else(|| Problem::not_found("no such contribution"))?;
    let (procedure, _) = super::folded::procedure(state, contribution.procedure_id).await?;
    let procedure = procedure
        .procedure()
        .ok_or_else(|| Problem::internal(&"a contribution to no procedure"))?;
    if !moderates(caller, procedure) {
        return Err(Problem::forbidden(
            "the token does not moderate this contribution's procedure (`moderates` names neither it nor its authority)",
        ));
    }
    let meta = Meta::acting_as(caller, Role::Moderator).routed(Routing {
        authority: Some(procedure.authority.clone()),
        service: None,
        tenant: Some(procedure.region.as_str().to_owned()),
    });
    let at = Utc::now();
    let command = if hide {
        ContributionCommand::Hide {
            reason: req.reason,
            at,
        }
    } else {
        ContributionCommand::Unhide {
            reason: req.reason,
            at,
        }
    };
    let done = execute::<ContributionState>(
        state,
        &cid.stream_id(),
        &command,
        contribution_problem,
        &meta,
    )
    .await?;
    let hidden = done.state.contribution().is_some_and(|c| c.hidden);
    Ok(Json(json!({
        "contribution_id": cid.to_string(),
        "procedure_id": procedure.id.to_string(),
        "hidden": hidden,
    })))
}

/// Hide a contribution with a reason: it leaves the lists and the count, and stays in the
/// log.
#[utoipa::path(post, path = "/contributions/{id}/hiding", tag = "participation",
    security(("bearer" = ["moderator"])),
    params(("id" = String, Path, description = "The contribution id")),
    request_body = ModerationRequest,
    responses(
        (status = 200, description = "Hidden", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A procedure the token does not moderate", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such contribution", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already hidden, or withdrawn", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn hide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    moderate(&state, &caller, &id, raw, true).await
}

/// Unhide a hidden contribution with a reason; only reports after this count towards
/// hiding it again.
#[utoipa::path(post, path = "/contributions/{id}/unhiding", tag = "participation",
    security(("bearer" = ["moderator"])),
    params(("id" = String, Path, description = "The contribution id")),
    request_body = ModerationRequest,
    responses(
        (status = 200, description = "Shown again", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A procedure the token does not moderate", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such contribution", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not hidden", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn unhide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    moderate(&state, &caller, &id, raw, false).await
}
