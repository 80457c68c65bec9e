//! The organiser's routes: an authority drafts a procedure for itself, announces it,
//! schedules its rounds, answers contributions, starts the evaluation, weighs the
//! statements and records the decision. The procedure's authority is recorded when it is drafted — the
//! authority of the token that drafted it — and every later command on the procedure is
//! refused to a token of another authority (`403`): ownership is that recorded fact,
//! never a name. An official acts only within its regions: the token's regions must cover
//! the procedure's region (its AGS) to draft it and for every later command (`403`). A
//! draft is not public, so to any other token it does not exist (`404`, as for an
//! unknown id), whichever of the two refusals applies.
//!
//! Refusals: a rule of the domain that the request breaks is `422` (a § 3 (2) display of
//! 29 days, an announcement after a round's start, a geometry outside Saxony); a command
//! the procedure's state does not allow is `409`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::participation::contribution::{
    AnswerState, ContributionCommand, ContributionState, Weighing,
};
use amtsbuch_domain::participation::procedure::{
    DraftProcedure, Procedure, ProcedureCommand, ProcedureError, ProcedureState, ScheduleRound,
    Status,
};
use amtsbuch_domain::participation::survey::Survey;
use amtsbuch_domain::participation::{
    Ags, ContributionId, DocumentRef, Format, Geometry, ProcedureId, PublicText, Reason, RoundId,
    Stage, Title, Topic,
};
use amtsbuch_domain::{AuthorityId, Routing};

use super::participant::contribution_problem;
use super::public::procedure_id;
use crate::auth::Caller;
use crate::body;
use crate::command::{current, execute, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// A refused procedure command as a problem: `422` for a broken rule, `409` for a state
/// that does not allow the command.
pub fn procedure_problem(e: ProcedureError) -> Problem {
    use ProcedureError as E;
    let status = match &e {
        E::NotDrafted => return Problem::not_found("no such participation procedure"),
        E::AlreadyDrafted
        | E::Status(..)
        | E::RoundExists(_)
        | E::Overlap(_)
        | E::RoundsRunning(_)
        | E::NoRounds => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Problem::new(
        status,
        "procedure-refused",
        "The procedure does not allow this",
        e.to_string(),
    )
}

/// The caller's authority, which the guard has narrowed to the organiser's role.
fn organiser(caller: &Principal) -> Result<&AuthorityId, Problem> {
    caller
        .authority()
        .filter(|_| caller.has(Role::Authority))
        .ok_or_else(|| Problem::forbidden("only an authority organises participation procedures"))
}

/// Whether one of the caller's regions covers `region`: an official acts only where it is
/// responsible, as it does on an application.
fn covers(caller: &Principal, region: &Ags) -> bool {
    caller.regions().iter().any(|r| r.covers(region.as_str()))
}

/// The command's metadata if the caller organises `procedure`: an authority token of the
/// procedure's authority whose regions cover the procedure's region (`403` otherwise). A
/// draft is not public: to anybody else it is answered as if it did not exist (`404`),
/// so that a refusal does not tell that it does.
pub(super) fn organising(caller: &Principal, procedure: &Procedure) -> Result<Meta, Problem> {
    let authority = organiser(caller)?;
    let own = procedure.authority == *authority;
    let within = covers(caller, &procedure.region);
    if !(own && within) && procedure.status == Status::Draft {
        return Err(Problem::not_found("no such participation procedure"));
    }
    if !own {
        return Err(Problem::forbidden(
            "the procedure is run by another authority; only its own authority acts on it",
        ));
    }
    if !within {
        return Err(Problem::forbidden(
            "the procedure's region is outside the caller's regions",
        ));
    }
    Ok(Meta::acting_as(caller, Role::Authority).routed(Routing {
        authority: Some(procedure.authority.clone()),
        service: None,
        tenant: Some(procedure.region.as_str().to_owned()),
    }))
}

/// The procedure `id`, if the caller organises it; with the command's metadata.
async fn own_procedure(
    state: &AppState,
    caller: &Principal,
    id: ProcedureId,
) -> Result<(Procedure, Meta), Problem> {
    organiser(caller)?;
    let (found, _) = current::<ProcedureState>(state, &id.stream_id()).await?;
    let procedure = found
        .procedure()
        .cloned()
        .ok_or_else(|| Problem::not_found("no such participation procedure"))?;
    let meta = organising(caller, &procedure)?;
    Ok((procedure, meta))
}

/// Draft a procedure.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftRequest {
    /// bauleitplanung, dialog, survey, meldeverfahren, event_management, appointment_booking
    #[schema(value_type = String)]
    format: Format,
    #[schema(value_type = String)]
    title: Title,
    #[schema(value_type = Option<Vec<String>>)]
    topics: Option<Vec<Topic>>,
    /// The region's AGS (eight digits, 14…).
    #[schema(value_type = String)]
    region: Ags,
    /// A GeoJSON point or polygon (WGS84) within Saxony.
    #[schema(value_type = Option<Object>)]
    geometry: Option<Geometry>,
    /// Record contributions after a round's end as late instead of refusing them.
    accepts_late: Option<bool>,
    /// Reports that hide a contribution (default 3).
    report_threshold: Option<u32>,
    /// The questions, for a survey.
    #[schema(value_type = Option<Object>)]
    survey: Option<Survey>,
}

/// Draft a participation procedure for the caller's authority.
#[utoipa::path(post, path = "/participations", tag = "participation",
    security(("bearer" = ["authority"])),
    request_body = DraftRequest,
    responses(
        (status = 201, description = "Drafted; `id` names it", body = Object),
        (status = 400, description = "A malformed body (a geometry outside Saxony, an AGS of another Land)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not an authority, or a region outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule of the procedure broken", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn draft(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let authority = organiser(&caller)?.clone();
    let req: DraftRequest = body::json(
        raw,
        "{\"format\", \"title\", \"region\", \"topics\"?, \"geometry\"?, \"accepts_late\"?, \"report_threshold\"?, \"survey\"?}",
    )?;
    if !covers(&caller, &req.region) {
        return Err(Problem::forbidden(
            "the region is outside the caller's regions; an authority drafts only where it is responsible",
        ));
    }
    let id = ProcedureId(Uuid::now_v7());
    let meta = Meta::acting_as(&caller, Role::Authority).routed(Routing {
        authority: Some(authority.clone()),
        service: None,
        tenant: Some(req.region.as_str().to_owned()),
    });
    let command = ProcedureCommand::Draft(DraftProcedure {
        procedure_id: id,
        authority,
        format: req.format,
        title: req.title,
        topics: req.topics.unwrap_or_default(),
        region: req.region,
        geometry: req.geometry,
        accepts_late: req.accepts_late.unwrap_or(false),
        report_threshold: req.report_threshold,
        survey: req.survey,
        at: Utc::now(),
    });
    execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/participations/{id}"))],
        Json(json!({ "id": id.to_string(), "status": "draft" })),
    )
        .into_response())
}

/// Nothing to say with an announcement.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnnounceRequest {}

/// Announce a drafted procedure (Ankündigung), before any of its rounds starts.
#[utoipa::path(post, path = "/participations/{id}/announcement", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body(content = Option<AnnounceRequest>),
    responses(
        (status = 200, description = "Announced", body = Object),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A round has already started", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn announce(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let _: AnnounceRequest = body::optional(raw, "{}")?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let command = ProcedureCommand::Announce { at: Utc::now() };
    let done =
        execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta)
            .await?;
    let announced_at = done
        .state
        .procedure()
        .and_then(|p| p.announced_at)
        .map(|t| amtsbuch_domain::record::format_timestamp(&t));
    Ok(Json(
        json!({ "id": id.to_string(), "status": "announced", "announced_at": announced_at }),
    ))
}

/// Schedule a round.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoundRequest {
    /// For a land-use plan: fruehzeitig31, auslegung32, toeb42, erneut4a3.
    #[schema(value_type = Option<String>)]
    stage: Option<Stage>,
    #[serde(deserialize_with = "crate::body::strict::instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    starts_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::body::strict::instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    ends_at: DateTime<Utc>,
    /// The documents on display: `{sha256, size, title}` each.
    #[schema(value_type = Vec<Object>)]
    documents: Vec<DocumentRef>,
    /// Whether late statements may be disregarded (the preclusion notice was given).
    preclusion_notice: Option<bool>,
}

/// Schedule a round with its documents; they never change (a changed plan is a new round).
#[utoipa::path(post, path = "/participations/{id}/rounds", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = RoundRequest,
    responses(
        (status = 201, description = "Scheduled; `round_id` names it", body = Object),
        (status = 400, description = "A malformed body (a hash that is not 64 hex digits)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The procedure's state does not allow it, or it overlaps the previous round", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A rule broken: a § 3 (2) display shorter than a month and 30 days, announced too late, a start in the past", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn schedule_round(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = procedure_id(&id)?;
    let req: RoundRequest = body::json(
        raw,
        "{\"starts_at\", \"ends_at\", \"documents\", \"stage\"?, \"preclusion_notice\"?}",
    )?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let round_id = RoundId(Uuid::now_v7());
    let command = ProcedureCommand::ScheduleRound(ScheduleRound {
        round_id,
        stage: req.stage,
        starts_at: req.starts_at,
        ends_at: req.ends_at,
        documents: req.documents,
        preclusion_notice: req.preclusion_notice.unwrap_or(false),
        at: Utc::now(),
    });
    execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id.to_string(), "round_id": round_id.to_string() })),
    )
        .into_response())
}

/// Cancel with a reason.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[schema(value_type = String)]
    reason: Reason,
}

/// Cancel an announced or active procedure (Abgesagt); a repeat changes nothing.
#[utoipa::path(post, path = "/participations/{id}/cancellation", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = CancelRequest,
    responses(
        (status = 200, description = "Cancelled", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Neither announced nor active", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let req: CancelRequest = body::json(raw, "{\"reason\"}")?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let command = ProcedureCommand::Cancel {
        reason: req.reason,
        at: Utc::now(),
    };
    execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta).await?;
    Ok(Json(json!({ "id": id.to_string(), "status": "cancelled" })))
}

/// An answer to a contribution.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerRequest {
    contribution_id: Uuid,
    /// evaluating, accepted or rejected
    #[schema(value_type = String)]
    state: AnswerState,
    #[schema(value_type = Option<String>)]
    text: Option<PublicText>,
    /// Publish it now; until published, the public sees the contribution as not answered.
    publish: Option<bool>,
}

/// Draft an answer to a contribution of the procedure, and publish it if asked to; once
/// published it no longer changes.
#[utoipa::path(post, path = "/participations/{id}/answers", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = AnswerRequest,
    responses(
        (status = 200, description = "Drafted (and published); `public` is what the public sees", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure (or a draft the caller does not organise), or no such contribution in it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already published, or a kind that is weighed instead", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn answer(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let req: AnswerRequest = body::json(
        raw,
        "{\"contribution_id\", \"state\", \"text\"?, \"publish\"?}",
    )?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let cid = ContributionId(req.contribution_id);
    let (found, _) = current::<ContributionState>(&state, &cid.stream_id()).await?;
    if found.contribution().is_none_or(|c| c.procedure_id != id) {
        return Err(Problem::not_found("no such contribution in this procedure"));
    }
    let drafted = ContributionCommand::DraftAnswer {
        state: req.state,
        text: req.text,
        at: Utc::now(),
    };
    let mut done = execute::<ContributionState>(
        &state,
        &cid.stream_id(),
        &drafted,
        contribution_problem,
        &meta,
    )
    .await?;
    if req.publish.unwrap_or(false) {
        let publish = ContributionCommand::PublishAnswer { at: Utc::now() };
        done = execute::<ContributionState>(
            &state,
            &cid.stream_id(),
            &publish,
            contribution_problem,
            &meta,
        )
        .await?;
    }
    let public = done
        .state
        .contribution()
        .map(|c| c.public_answer())
        .ok_or_else(|| Problem::internal(&"a contribution without state"))?;
    Ok(Json(json!({
        "contribution_id": cid.to_string(),
        "public": serde_json::to_value(public).unwrap_or(Value::Null),
    })))
}

/// Nothing to say when the evaluation starts.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {}

/// Close participation and start weighing what came in (status *evaluating*), once the
/// last round has ended.
#[utoipa::path(post, path = "/participations/{id}/evaluation", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body(content = Option<EvaluateRequest>),
    responses(
        (status = 200, description = "Under evaluation", body = Object),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not announced, no rounds, or a round still running", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn evaluate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let _: EvaluateRequest = body::optional(raw, "{}")?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let command = ProcedureCommand::StartEvaluation { at: Utc::now() };
    execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta).await?;
    Ok(Json(
        json!({ "id": id.to_string(), "status": "evaluating" }),
    ))
}

/// The weighing of one statement.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WeighingRequest {
    contribution_id: Uuid,
    /// considered, partly_considered or not_considered
    #[schema(value_type = String)]
    result: Weighing,
}

/// Weigh a statement of the procedure (Abwägung); it may be weighed again until the
/// decision, with which the weighing is published.
#[utoipa::path(post, path = "/participations/{id}/weighing", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = WeighingRequest,
    responses(
        (status = 200, description = "Weighed (a repeat changes nothing)", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure (or a draft the caller does not organise), or no such contribution in it", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not a statement, withdrawn, or the procedure is decided", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn weigh(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let req: WeighingRequest = body::json(raw, "{\"contribution_id\", \"result\"}")?;
    let (procedure, meta) = own_procedure(&state, &caller, id).await?;
    let cid = ContributionId(req.contribution_id);
    let (found, _) = current::<ContributionState>(&state, &cid.stream_id()).await?;
    if found.contribution().is_none_or(|c| c.procedure_id != id) {
        return Err(Problem::not_found("no such contribution in this procedure"));
    }
    let command = ContributionCommand::Weigh {
        result: req.result,
        decided: procedure.decided_at.is_some(),
        at: Utc::now(),
    };
    execute::<ContributionState>(
        &state,
        &cid.stream_id(),
        &command,
        contribution_problem,
        &meta,
    )
    .await?;
    Ok(Json(json!({
        "contribution_id": cid.to_string(),
        "weighing": serde_json::to_value(req.result).unwrap_or(Value::Null),
    })))
}

/// The decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The decision as published (e.g. the Satzungsbeschluss and where it is announced).
    #[schema(value_type = String)]
    summary: PublicText,
}

/// Record the decision (Beschluss) of a procedure under evaluation; from now on the
/// weighing is public and stands.
#[utoipa::path(post, path = "/participations/{id}/decision", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Decided", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not under evaluation", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn decide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let req: DecisionRequest = body::json(raw, "{\"summary\"}")?;
    let (_, meta) = own_procedure(&state, &caller, id).await?;
    let command = ProcedureCommand::Decide {
        summary: req.summary,
        at: Utc::now(),
    };
    let done =
        execute::<ProcedureState>(&state, &id.stream_id(), &command, procedure_problem, &meta)
            .await?;
    let decided_at = done
        .state
        .procedure()
        .and_then(|p| p.decided_at)
        .map(|t| amtsbuch_domain::record::format_timestamp(&t));
    Ok(Json(
        json!({ "id": id.to_string(), "status": "decided", "decided_at": decided_at }),
    ))
}
