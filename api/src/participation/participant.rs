//! The participant's routes: a citizen (or an organisation's account) contributes to a
//! procedure, gets a receipt with a `c2sp.org/tlog-proof` that proves offline that and
//! when the contribution was submitted, and reports contributions of others.
//!
//! The participant is the token's account, recorded as the author's pseudonymous id; what
//! it writes is sealed under that account's key. Whether a contribution is taken is the
//! procedure's rule at the server's instant: after a round's end `409`, or recorded as
//! late where the procedure allows it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::participation::contribution::{
    Content, ContributionCommand, ContributionError, ContributionEvent, ContributionState,
    ReportReason, Submit,
};
use amtsbuch_domain::participation::survey::{Choices, QuestionKey};
use amtsbuch_domain::participation::{
    Attachment, ContributionId, ContributionKind, ContributionText, Geometry, ParticipantId,
    Pseudonym,
};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::{Decider, ExpectedVersion, Routing};
use amtsbuch_infra::EventStore;

use super::folded;
use super::public::procedure_id;
use crate::auth::Caller;
use crate::body;
use crate::command::{append, current, execute, load, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// A refused contribution command as a problem: `409` for what the state does not allow
/// (a closed round, a repeated report), `422` for a contribution that breaks a rule.
pub fn contribution_problem(e: ContributionError) -> Problem {
    use ContributionError as E;
    let status = match &e {
        E::NotSubmitted => return Problem::not_found("no such contribution"),
        // Another participant's contribution does not exist for the caller: the same 404
        // as a missing one, so that a refusal tells nothing of a contribution not public.
        E::NotTheAuthor => return Problem::not_found("no such contribution"),
        // A contribution never shown publicly is reported by nobody, and exists for nobody
        // but its author: the same 404.
        E::NotReportable(_) => return Problem::not_found("no such contribution"),
        E::Missing(..)
        | E::Unexpected(..)
        | E::NotAPoint
        | E::Survey(_)
        | E::Attachments
        | E::Attachment(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::CONFLICT,
    };
    Problem::new(
        status,
        "contribution-refused",
        "The contribution does not allow this",
        e.to_string(),
    )
}

/// The participant the caller is: its own account.
fn participant(caller: &Principal) -> Result<ParticipantId, Problem> {
    caller
        .account()
        .filter(|_| caller.has(Role::Citizen))
        .and_then(|a| Uuid::parse_str(a).ok())
        .map(ParticipantId)
        .ok_or_else(|| Problem::forbidden("only a participant's own account contributes"))
}

fn contribution_id(raw: &str) -> Result<ContributionId, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .map(ContributionId)
        .ok_or_else(|| Problem::not_found("no such contribution"))
}

/// A contribution.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContributeRequest {
    /// statement, comment, survey_answer or defect_report; by default the one the
    /// procedure's format takes.
    #[schema(value_type = Option<String>)]
    kind: Option<ContributionKind>,
    #[schema(value_type = Option<String>)]
    text: Option<ContributionText>,
    /// The name shown beside a comment or defect report.
    #[schema(value_type = Option<String>)]
    pseudonym: Option<Pseudonym>,
    /// A GeoJSON point (a defect report's) within Saxony.
    #[schema(value_type = Option<Object>)]
    location: Option<Geometry>,
    /// `{sha256, size}` each.
    #[schema(value_type = Option<Vec<Object>>)]
    attachments: Option<Vec<Attachment>>,
    /// A survey answer's choices: question key → option keys.
    #[schema(value_type = Option<Object>)]
    choices: Option<Choices>,
    /// A survey answer's free texts: question key → text.
    #[schema(value_type = Option<Object>)]
    free_texts: Option<std::collections::BTreeMap<QuestionKey, ContributionText>>,
}

/// Contribute to a procedure while one of its rounds is open.
#[utoipa::path(post, path = "/participations/{id}/contributions", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = ContributeRequest,
    responses(
        (status = 201, description = "Submitted; `receipt` is where its tlog-proof receipt is fetched", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No round is open (not yet started, or ended in a procedure without late contributions)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The contribution lacks what its kind needs", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn contribute(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let pid = procedure_id(&id)?;
    let author = participant(&caller)?;
    let req: ContributeRequest = body::json(
        raw,
        "{\"kind\"?, \"text\"?, \"pseudonym\"?, \"location\"?, \"attachments\"?, \"choices\"?, \"free_texts\"?}",
    )?;
    let (found, _) = folded::procedure(&state, pid).await?;
    let procedure = found
        .procedure()
        .filter(|p| p.announced_at.is_some())
        .ok_or_else(|| Problem::not_found("no such participation procedure"))?;
    let kind = match req.kind.or(procedure.format.contribution_kind()) {
        Some(kind) => kind,
        None => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "contribution-refused",
                "The procedure does not take contributions",
                format!(
                    "a {} procedure takes registrations, not contributions",
                    procedure.format
                ),
            ))
        }
    };
    let cid = ContributionId(Uuid::now_v7());
    let meta = Meta::acting_as(&caller, Role::Citizen).routed(Routing {
        authority: Some(procedure.authority.clone()),
        service: None,
        tenant: Some(procedure.region.as_str().to_owned()),
    });
    let command = ContributionCommand::Submit(Submit {
        contribution_id: cid,
        procedure,
        kind,
        author,
        content: Content {
            pseudonym: req.pseudonym,
            text: req.text,
            location: req.location,
            free_texts: req.free_texts.unwrap_or_default(),
        },
        attachments: req.attachments.unwrap_or_default(),
        choices: req.choices.unwrap_or_default(),
        at: Utc::now(),
    });
    // The contribution's stream is new (its id was made just now), so it is decided on the
    // empty state without reading it, and appended only if it still does not exist.
    let events = ContributionState::decide(&command, &ContributionState::default())
        .map_err(contribution_problem)?;
    let outcome = append(
        &state,
        &cid.stream_id(),
        &events,
        ExpectedVersion::NoStream,
        &meta,
    )
    .await?;
    let after = events
        .iter()
        .fold(ContributionState::default(), ContributionState::evolve);
    let c = after
        .contribution()
        .ok_or_else(|| Problem::internal(&"a submitted contribution without state"))?;
    let position = Some(outcome.last_position);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/contributions/{cid}/receipt"))],
        Json(json!({
            "id": cid.to_string(),
            "procedure_id": pid.to_string(),
            "round_id": c.round_id.to_string(),
            "kind": kind.as_str(),
            "late": c.late,
            "submitted_at": format_timestamp(&c.submitted_at),
            "position": position,
            "receipt": format!("/contributions/{cid}/receipt"),
        })),
    )
        .into_response())
}

/// The author's receipt for a contribution.
#[utoipa::path(get, path = "/contributions/{id}/receipt", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The contribution id")),
    responses(
        (status = 200, description = "What was submitted when, with the `tlog_proof` (c2sp.org/tlog-proof) of its `ContributionSubmitted`; verifies offline with `amtsbuch verify-proof`", body = Object),
        (status = 403, description = "Not a participant's account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such contribution, or another participant's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not covered by a checkpoint yet; retry in a second", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "This server does not sign checkpoints", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn receipt(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let cid = contribution_id(&id)?;
    let me = participant(&caller)?;
    let (events, _) = load::<ContributionEvent>(&state, &cid.stream_id()).await?;
    let Some(first) = events.first() else {
        return Err(Problem::not_found("no such contribution"));
    };
    let ContributionEvent::Submitted(submitted) = &first.event else {
        return Err(Problem::internal(
            &"a contribution stream begins with another event",
        ));
    };
    if submitted.author != me {
        // The same 404 as for a missing contribution: a formal statement is never public,
        // and a refusal would tell that it exists.
        return Err(Problem::not_found("no such contribution"));
    }
    let stored = state
        .store
        .event_by_id(first.event_id)
        .await?
        .ok_or_else(|| Problem::internal(&"the ContributionSubmitted event is missing"))?;
    let proof = crate::ledger_http::tlog_proof_text(&state, &stored).await?;
    Ok(Json(json!({
        "contribution_id": cid.to_string(),
        "procedure_id": submitted.procedure_id.to_string(),
        "round_id": submitted.round_id.to_string(),
        "kind": submitted.kind.as_str(),
        "late": submitted.late,
        "submitted_at": format_timestamp(&submitted.submitted_at),
        "event_id": first.event_id.to_string(),
        "position": first.position,
        "leaf_hash": amtsbuch_domain::chain::to_hex(&first.leaf_hash),
        "record": format!("/events/{}/record", first.event_id),
        "tlog_proof": proof,
    })))
}

/// A report.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// spam, offensive or does_not_belong
    #[schema(value_type = String)]
    reason: ReportReason,
}

/// Report a publicly shown contribution (a comment, a defect report); at the procedure's
/// threshold it is hidden. Once per participant, never the participant's own.
#[utoipa::path(post, path = "/contributions/{id}/reports", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The contribution id")),
    request_body = ReportRequest,
    responses(
        (status = 201, description = "Reported; `hidden` says whether it is hidden now", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such contribution, or one never shown publicly (a statement)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already reported by this participant, the participant's own, or withdrawn", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn report(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let cid = contribution_id(&id)?;
    let reporter = participant(&caller)?;
    let req: ReportRequest = body::json(raw, "{\"reason\"}")?;
    let (found, _) = current::<ContributionState>(&state, &cid.stream_id()).await?;
    let contribution = found
        .contribution()
        .ok_or_else(|| Problem::not_found("no such contribution"))?;
    let (procedure, _) = folded::procedure(&state, contribution.procedure_id).await?;
    let procedure = procedure
        .procedure()
        .ok_or_else(|| Problem::internal(&"a contribution to no procedure"))?;
    let meta = Meta::acting_as(&caller, Role::Citizen).routed(Routing {
        authority: Some(procedure.authority.clone()),
        service: None,
        tenant: Some(procedure.region.as_str().to_owned()),
    });
    let command = ContributionCommand::Report {
        reporter,
        reason: req.reason,
        threshold: procedure.report_threshold,
        at: Utc::now(),
    };
    let done = execute::<ContributionState>(
        &state,
        &cid.stream_id(),
        &command,
        contribution_problem,
        &meta,
    )
    .await?;
    let hidden = done.state.contribution().is_some_and(|c| c.hidden);
    Ok((
        StatusCode::CREATED,
        Json(json!({ "contribution_id": cid.to_string(), "hidden": hidden })),
    )
        .into_response())
}

/// Runs a command on the caller's view of a contribution, routed to its procedure.
async fn on_contribution(
    state: &AppState,
    caller: &Principal,
    cid: ContributionId,
    command: impl FnOnce(ParticipantId) -> ContributionCommand<'static>,
) -> Result<amtsbuch_domain::participation::contribution::Contribution, Problem> {
    let me = participant(caller)?;
    let (found, _) = current::<ContributionState>(state, &cid.stream_id()).await?;
    let contribution = found
        .contribution()
        .ok_or_else(|| Problem::not_found("no such contribution"))?;
    let (procedure, _) = folded::procedure(state, contribution.procedure_id).await?;
    let procedure = procedure
        .procedure()
        .ok_or_else(|| Problem::internal(&"a contribution to no procedure"))?;
    let meta = Meta::acting_as(caller, Role::Citizen).routed(Routing {
        authority: Some(procedure.authority.clone()),
        service: None,
        tenant: Some(procedure.region.as_str().to_owned()),
    });
    let done = execute::<ContributionState>(
        state,
        &cid.stream_id(),
        &command(me),
        contribution_problem,
        &meta,
    )
    .await?;
    done.state
        .contribution()
        .cloned()
        .ok_or_else(|| Problem::internal(&"a contribution without state"))
}

/// Withdraw one's own contribution; refused while it has supports.
#[utoipa::path(post, path = "/contributions/{id}/withdrawal", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The contribution id")),
    responses(
        (status = 200, description = "Withdrawn (a repeat changes nothing)", body = Object),
        (status = 403, description = "Not a participant's account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such contribution, or another participant's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "It has supports", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn withdraw(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let cid = contribution_id(&id)?;
    let c = on_contribution(&state, &caller, cid, |me| ContributionCommand::Withdraw {
        by: me,
        at: Utc::now(),
    })
    .await?;
    Ok(Json(
        json!({ "contribution_id": cid.to_string(), "withdrawn": c.withdrawn_at.is_some() }),
    ))
}

/// Support a contribution, once per participant (a repeat changes nothing).
#[utoipa::path(put, path = "/contributions/{id}/support", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The contribution id")),
    responses(
        (status = 200, description = "Supported; the number of supports", body = Object),
        (status = 404, description = "No such contribution", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A statement, a withdrawn or a hidden contribution", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn support(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let cid = contribution_id(&id)?;
    let c = on_contribution(&state, &caller, cid, |me| ContributionCommand::Support {
        supporter: me,
        at: Utc::now(),
    })
    .await?;
    Ok(Json(
        json!({ "contribution_id": cid.to_string(), "supports": c.supporters.len() }),
    ))
}

/// Withdraw one's support (a repeat changes nothing).
#[utoipa::path(delete, path = "/contributions/{id}/support", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The contribution id")),
    responses(
        (status = 200, description = "Not supported by the caller any more; the number of supports", body = Object),
        (status = 404, description = "No such contribution", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn unsupport(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let cid = contribution_id(&id)?;
    let c = on_contribution(&state, &caller, cid, |me| {
        ContributionCommand::WithdrawSupport {
            supporter: me,
            at: Utc::now(),
        }
    })
    .await?;
    Ok(Json(
        json!({ "contribution_id": cid.to_string(), "supports": c.supporters.len() }),
    ))
}
