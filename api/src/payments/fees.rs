//! The fee schedule over HTTP: what a service costs at an authority and how it is booked
//! (`PUT /fee-schedules/{leika}/{authority}`), which the payment policy (`policy`) requests
//! as the receivable of an application. Set by the cash office's system (operator) or a
//! cashier for a Bewirtschafter its token names; read by them and auditors. Each schedule
//! is a stream of its own (`fee_schedule-<uuid>`), answered by folding it.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::payments::fees::{
    schedule_stream, FeeScheduleError, FeeScheduleSet, FeeScheduleState, SetFeeSchedule,
};
use amtsbuch_domain::payments::{Bewirtschafter, Cents, Line, Mandant};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::stream::{AuthorityId, ServiceKey};
use amtsbuch_domain::{AppendError, ExpectedVersion, StreamId};
use amtsbuch_infra::StoreError;

use super::routes::{LineDoc, LineView};
use super::service::rejected;
use crate::auth::Caller;
use crate::body;
use crate::command::{append, current, Meta, StoreOrProblem};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// A fee schedule to set.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleRequest {
    /// The Mandant the receivables are requested in.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._:-]{0,35}$")]
    pub mandant: Mandant,
    /// Their Bewirtschafter; a cashier sets schedules only for its own.
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9_-]{0,7}$")]
    pub bewirtschafter: Bewirtschafter,
    /// The fee in euro cents; the lines' gross amounts must sum to it.
    #[schema(value_type = i64, minimum = 1, maximum = 999999999999999.0)]
    pub gross_cents: Cents,
    /// 1 to 99 lines; each line's net plus tax is its gross amount.
    #[schema(min_items = 1, max_items = 99)]
    pub lines: Vec<LineDoc>,
    /// Days from the request to the due date (0 to 365).
    #[schema(minimum = 0, maximum = 365)]
    pub due_days: u32,
}

/// A fee schedule as set.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeeScheduleView {
    /// The service's LeiKa key.
    pub leika: String,
    pub authority: String,
    pub mandant: String,
    pub bewirtschafter: String,
    pub gross_cents: i64,
    pub lines: Vec<LineView>,
    pub due_days: u32,
    /// When it was set.
    pub set_at: String,
    /// The schedule's stream.
    pub stream: String,
}

fn view(s: &FeeScheduleSet) -> FeeScheduleView {
    FeeScheduleView {
        leika: s.service.as_str().to_owned(),
        authority: s.authority.as_str().to_owned(),
        mandant: s.mandant.as_str().to_owned(),
        bewirtschafter: s.bewirtschafter.as_str().to_owned(),
        gross_cents: s.gross_cents.get(),
        lines: s.lines.iter().map(LineView::from).collect(),
        due_days: s.due_days,
        set_at: format_timestamp(&s.set_at),
        stream: schedule_stream(&s.service, &s.authority).to_string(),
    }
}

/// The path's service (a LeiKa key of 14 digits) and authority.
fn key(leika: &str, authority: &str) -> Result<(ServiceKey, AuthorityId), Problem> {
    let service = Some(leika)
        .filter(|l| l.len() == 14 && l.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|l| ServiceKey::parse(l).ok())
        .ok_or_else(|| Problem::bad_request("invalid-leika", "a LeiKa key is 14 digits"))?;
    let authority = AuthorityId::parse(authority)
        .map_err(|e| Problem::bad_request("invalid-authority", format!("the authority: {e}")))?;
    Ok((service, authority))
}

fn refused(e: FeeScheduleError) -> Problem {
    match e {
        FeeScheduleError::Lines(e) => rejected(e),
        FeeScheduleError::DueDays(_) => Problem::bad_request("invalid-fee-schedule", e.to_string()),
    }
}

/// Whether `caller` may act on schedules of `bewirtschafter`: an operator on every one, a
/// cashier on those of the Bewirtschafter its token names (each role by its own rule).
fn may_act(caller: &Principal, bewirtschafter: &Bewirtschafter) -> Option<Role> {
    caller.roles().iter().copied().find(|role| match role {
        Role::Operator | Role::Auditor => true,
        Role::Cashier => caller
            .bewirtschafter()
            .iter()
            .any(|b| b.as_str() == bewirtschafter.as_str()),
        _ => false,
    })
}

/// Set the fee of a service at an authority: what the payment policy requests as an
/// application's receivable from now on (receivables already requested keep theirs). The
/// fees that waited for a schedule (of a draft under `before_submission`, of a decided
/// application under `after_decision`) are requested with it. Setting the same
/// schedule again records nothing new for the schedule.
#[utoipa::path(put, path = "/fee-schedules/{leika}/{authority}", tag = "payments",
    security(("bearer" = ["operator", "cashier"])),
    params(
        ("leika" = String, Path, pattern = "^[0-9]{14}$", description = "The service's LeiKa key"),
        ("authority" = String, Path, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$", description = "The responsible authority's id")),
    request_body = FeeScheduleRequest,
    responses(
        (status = 200, description = "The schedule in force", body = FeeScheduleView),
        (status = 409, description = "The schedule was set by someone else while the request was decided (`fee-schedule-changed`): who may change it depends on it, so nothing was stored; read it and set it again", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 400, description = "Invalid input (lines that do not sum up, a bad amount or term); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another Bewirtschafter's schedule, or a cashier's first schedule of the service at the authority (an operator sets that)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn set(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((leika, authority)): Path<(String, String)>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (service, authority) = key(&leika, &authority)?;
    let req: FeeScheduleRequest = body::json(
        raw,
        "{\"mandant\", \"bewirtschafter\", \"gross_cents\", \"lines\", \"due_days\"}",
    )?;
    let stream = schedule_stream(&service, &authority);
    // A cashier changes only its own Bewirtschafter's schedules, the one in force too. The
    // first schedule of a service at an authority binds a Bewirtschafter to that authority,
    // which no cashier's token does (a cashier is bound to Bewirtschafter, not to an
    // authority): only an operator sets it, else any cashier could claim another
    // authority's fee first and lock that authority's cashiers out.
    let (before, _) = current::<FeeScheduleState>(&state, &stream).await?;
    let role = match before.0.as_ref() {
        Some(b) => may_act(&caller, &req.bewirtschafter)
            .filter(|_| may_act(&caller, &b.bewirtschafter).is_some()),
        None => caller.has(Role::Operator).then_some(Role::Operator),
    }
    .ok_or_else(|| {
            Problem::forbidden(
                "a cashier sets fee schedules only for the Bewirtschafter its token names, and only where an operator has set the first one",
            )
        })?;
    let command = SetFeeSchedule {
        service,
        authority,
        mandant: req.mandant,
        bewirtschafter: req.bewirtschafter,
        gross_cents: req.gross_cents,
        lines: req
            .lines
            .into_iter()
            .map(|l| Line {
                haushaltsstelle: l.haushaltsstelle,
                objektnummer: l.objektnummer,
                href: l.href,
                buchungstext: l.buchungstext,
                gross_cents: l.gross_cents,
                net_cents: l.net_cents,
                tax_cents: l.tax_cents,
            })
            .collect(),
        due_days: req.due_days,
        set_at: Utc::now(),
    };
    let done = set_as_authorized(
        &state,
        &stream,
        &before,
        &command,
        &Meta::acting_as(&caller, role),
    )
    .await?;
    let set = done
        .0
        .as_ref()
        .ok_or_else(|| Problem::internal(&"a schedule set without state"))?;
    // The fees that waited for this schedule are requested now; the payment policy's
    // manager does the same when it reaches the schedule in the log, so a failure here
    // delays them and loses nothing.
    match super::policy::request_due(&state, &set.service, &set.authority, None, set.set_at).await {
        Ok(0) => {}
        Ok(requested) => {
            tracing::info!(service = %set.service, authority = %set.authority, requested,
                "the fees waiting for the schedule are requested")
        }
        Err(e) => {
            tracing::warn!(service = %set.service, authority = %set.authority, status = e.status.as_u16(), detail = %e.detail,
                "the fees waiting for the schedule are left to the payment policy")
        }
    }
    Ok((StatusCode::OK, Json(view(set))).into_response())
}

/// Sets the schedule the caller was authorized for: decides `command` on `authorized` — the
/// schedule the caller's authorization was decided on — and appends it expecting the
/// stream to hold that schedule still. Who may change a schedule depends on the schedule
/// (its Bewirtschafter, or none yet), so a schedule set or moved to another Bewirtschafter
/// between that read and the append is answered `409 fee-schedule-changed` and nothing is
/// stored; it is never decided again on the new schedule, which the caller may not be
/// allowed to change (as a retrying `execute` would).
pub async fn set_as_authorized(
    state: &AppState,
    stream: &StreamId,
    authorized: &FeeScheduleState,
    command: &SetFeeSchedule,
    meta: &Meta,
) -> Result<FeeScheduleState, Problem> {
    let (now, version) = current::<FeeScheduleState>(state, stream).await?;
    let events = amtsbuch_domain::payments::fees::decide(command, &now).map_err(refused)?;
    if now != *authorized {
        return Err(changed());
    }
    if events.is_empty() {
        return Ok(now);
    }
    let expected = if version == 0 {
        ExpectedVersion::NoStream
    } else {
        ExpectedVersion::Exact(version)
    };
    match append(state, stream, &events, expected, meta).await {
        Ok(_) => Ok(events
            .iter()
            .fold(now, amtsbuch_domain::payments::fees::evolve)),
        Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
            ..
        }))) => Err(changed()),
        Err(e) => Err(e.into()),
    }
}

fn changed() -> Problem {
    Problem::new(
        StatusCode::CONFLICT,
        "fee-schedule-changed",
        "The fee schedule changed meanwhile",
        "the fee schedule of the service at the authority was set by someone else while this request was decided; nothing was stored: read it and set it again if you still may",
    )
}

/// The fee schedule of a service at an authority.
#[utoipa::path(get, path = "/fee-schedules/{leika}/{authority}", tag = "payments",
    security(("bearer" = ["operator", "cashier", "auditor"])),
    params(
        ("leika" = String, Path, pattern = "^[0-9]{14}$", description = "The service's LeiKa key"),
        ("authority" = String, Path, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$", description = "The responsible authority's id")),
    responses(
        (status = 200, description = "The schedule in force", body = FeeScheduleView),
        (status = 400, description = "Invalid LeiKa key or authority", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No schedule, or another Bewirtschafter's", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((leika, authority)): Path<(String, String)>,
) -> Result<Json<FeeScheduleView>, Problem> {
    let (service, authority) = key(&leika, &authority)?;
    let (schedule, _) =
        current::<FeeScheduleState>(&state, &schedule_stream(&service, &authority)).await?;
    let set = schedule
        .0
        .filter(|s| may_act(&caller, &s.bewirtschafter).is_some())
        .ok_or_else(|| Problem::not_found("no fee schedule for the service at the authority"))?;
    Ok(Json(view(&set)))
}
