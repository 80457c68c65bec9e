//! The public routes of the participation domain, open without a token: the search over
//! procedures, one procedure with its rounds, its published contributions, its moderation
//! log, the calendar, and a survey's results.
//!
//! Everything comes from the read model except the public texts of comments and defect
//! reports, which stay sealed under their authors' keys in the log and are opened here
//! when they are shown: an erased author's text reads as removed, everywhere at once.
//! Formal statements and survey answers are never listed; their count is public.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_domain::participation::contribution::ContributionEvent;
use amtsbuch_domain::participation::procedure::PublicStatus;
use amtsbuch_domain::participation::survey::{tally, Choices, Survey};
use amtsbuch_domain::participation::{
    Ags, BoundingBox, ContributionId, Format, ProcedureId, Topic,
};
use amtsbuch_domain::{AuthorityId, Personal};
use amtsbuch_infra::{Direction, EventStore};
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::participation::{self as rm, ContributionRow, ProcedureRow, SearchQuery};

use crate::command;
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// The longest full-text query.
const MAX_QUERY_CHARS: usize = 200;

/// The calendar's window when no end is given.
const DEFAULT_CALENDAR_DAYS: i64 = 90;

/// The longest calendar window.
const MAX_CALENDAR_DAYS: i64 = 400;

fn invalid(detail: impl Into<String>) -> Problem {
    Problem::bad_request("invalid-query", detail)
}

fn query_problem(e: QueryRejection) -> Problem {
    invalid(e.body_text())
}

/// An RFC 3339 instant from a query parameter.
fn instant(name: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    crate::body::instant(name, raw)
}

/// A procedure id from the path; a malformed one is a 404 like an unknown one.
pub fn procedure_id(raw: &str) -> Result<ProcedureId, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .map(ProcedureId)
        .ok_or_else(|| Problem::not_found("no such participation procedure"))
}

/// A procedure the public may see: any but a draft.
pub async fn public_procedure(db: &ReadDb, id: ProcedureId) -> Result<ProcedureRow, Problem> {
    rm::procedure(db, &id.to_string())
        .await?
        .filter(|p| p.status != "draft")
        .ok_or_else(|| Problem::not_found("no such participation procedure"))
}

/// The search's query parameters.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    status: Option<String>,
    format: Option<String>,
    topic: Option<String>,
    authority: Option<String>,
    ags: Option<String>,
    from: Option<String>,
    to: Option<String>,
    q: Option<String>,
    bbox: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

impl SearchParams {
    fn parse(self) -> Result<SearchQuery, Problem> {
        let status = match self.status.as_deref() {
            None => None,
            Some("draft") => return Err(invalid("drafts are not public")),
            Some(s) => Some(PublicStatus::parse(s).ok_or_else(|| {
                invalid("status is announced, active, evaluating, decided, archived or cancelled")
            })?),
        };
        let format = self
            .format
            .as_deref()
            .map(|f| {
                Format::parse(f).ok_or_else(|| {
                    invalid("format is bauleitplanung, dialog, survey, meldeverfahren, event_management or appointment_booking")
                })
            })
            .transpose()?;
        let topic = self
            .topic
            .as_deref()
            .map(|t| Topic::parse(t).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        let authority = self
            .authority
            .as_deref()
            .map(|a| AuthorityId::parse(a).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        let ags = self
            .ags
            .as_deref()
            .map(|a| Ags::parse(a).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        let from = self
            .from
            .as_deref()
            .map(|t| instant("from", t))
            .transpose()?;
        let to = self.to.as_deref().map(|t| instant("to", t)).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if to < from {
                return Err(invalid("to lies before from"));
            }
        }
        let bbox = self
            .bbox
            .as_deref()
            .map(|b| BoundingBox::parse(b).map_err(|e| invalid(e.to_string())))
            .transpose()?;
        if let Some(q) = &self.q {
            if q.chars().count() > MAX_QUERY_CHARS || q.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "q is up to {MAX_QUERY_CHARS} characters of text without control characters"
                )));
            }
        }
        let limit = self.limit.unwrap_or(20);
        if !(1..=rm::MAX_LIMIT).contains(&limit) {
            return Err(invalid(format!("limit is 1 to {}", rm::MAX_LIMIT)));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 100_000 {
            return Err(invalid("offset is at most 100000"));
        }
        Ok(SearchQuery {
            status,
            format,
            topic,
            authority,
            ags,
            from,
            to,
            text: self.q,
            bbox,
            limit,
            offset,
        })
    }
}

/// Search the participation procedures.
#[utoipa::path(get, path = "/participations", tag = "participation", security(()),
    params(
        ("status" = Option<String>, Query, pattern = "^(announced|active|evaluating|decided|archived|cancelled)$", description = "announced, active, evaluating, decided, archived or cancelled; without it every public procedure but the archived"),
        ("format" = Option<String>, Query, pattern = "^(bauleitplanung|dialog|survey|meldeverfahren|event_management|appointment_booking)$", description = "bauleitplanung, dialog, survey, meldeverfahren, event_management, appointment_booking"),
        ("topic" = Option<String>, Query, description = "A topic"),
        ("authority" = Option<String>, Query, pattern = "^[a-z0-9][a-z0-9_-]{0,63}$", description = "The organising authority"),
        ("ags" = Option<String>, Query, pattern = "^14[0-9]{6}$", description = "The region's AGS (eight digits, 14…)"),
        ("from" = Option<DateTime<Utc>>, Query, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339: participation period ends at or after"),
        ("to" = Option<DateTime<Utc>>, Query, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339: participation period starts at or before"),
        ("q" = Option<String>, Query, description = "Full text over title and topics (German)"),
        ("bbox" = Option<String>, Query, description = "min_lon,min_lat,max_lon,max_lat (WGS84)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)"),
        ("offset" = Option<u32>, Query, maximum = 100000, description = "Procedures to skip, at most 100000")),
    responses(
        (status = 200, description = "The page of procedures, most recently opened first", body = Object),
        (status = 400, description = "A filter that does not parse", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn search(
    State(state): State<AppState>,
    query: Result<Query<SearchParams>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(params) = query.map_err(query_problem)?;
    let q = params.parse()?;
    let now = Utc::now();
    let db = ReadDb::new(&state.store);
    let rows = rm::search(&db, &q, now).await?;
    Ok(Json(json!({
        "as_of": amtsbuch_domain::record::format_timestamp(&now),
        "limit": q.limit,
        "offset": q.offset,
        "items": rows.iter().map(|r| r.to_json(&now)).collect::<Vec<_>>(),
    })))
}

/// One procedure with its rounds and their documents.
#[utoipa::path(get, path = "/participations/{id}", tag = "participation", security(()),
    params(("id" = String, Path, description = "The procedure id")),
    responses(
        (status = 200, description = "The procedure, its status now, its rounds", body = Object),
        (status = 404, description = "No such public procedure", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let db = ReadDb::new(&state.store);
    let row = public_procedure(&db, id).await?;
    let now = Utc::now();
    let mut view = row.to_json(&now);
    view["rounds"] = Value::Array(rm::rounds(&db, &row.procedure_id).await?);
    // The weighing is published with the decision: how many statements were considered,
    // partly considered, not considered.
    if row.decided_at.is_some() {
        view["weighing"] = rm::weighing_counts(&db, &row.procedure_id).await?;
    }
    Ok(Json(view))
}

/// A survey's results: per choice question, how often each option was chosen by the
/// answers that count (neither hidden nor withdrawn). Tallied from the chosen options,
/// which are plain in the log, so anybody recomputes them from the log without an
/// identity; free texts stay sealed and are not part of them.
#[utoipa::path(get, path = "/participations/{id}/results", tag = "participation", security(()),
    params(("id" = String, Path, description = "The procedure id")),
    responses(
        (status = 200, description = "`answers` and `counts` per question and option; `survey` is null for a procedure that is no survey", body = Object),
        (status = 404, description = "No such public procedure", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let db = ReadDb::new(&state.store);
    let row = public_procedure(&db, id).await?;
    let Some(survey) = row.survey.clone() else {
        return Ok(Json(json!({
            "procedure_id": row.procedure_id,
            "survey": null,
            "answers": 0,
            "counts": {},
        })));
    };
    let questions: Survey =
        serde_json::from_value(survey.clone()).map_err(|e| Problem::internal(&e))?;
    let answers: Vec<Choices> = rm::survey_choices(&db, &row.procedure_id)
        .await?
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(|e| Problem::internal(&e))?;
    let results = tally(&questions, &answers);
    Ok(Json(json!({
        "procedure_id": row.procedure_id,
        "survey": survey,
        "answers": results.answers,
        "counts": results.counts,
    })))
}

/// The contributions query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    after: Option<u64>,
    limit: Option<u32>,
}

/// A published contribution as the public sees it; its text opened from the log.
pub(super) async fn public_contribution(
    state: &AppState,
    row: &ContributionRow,
    decided: bool,
) -> Result<Value, Problem> {
    let mut view = json!({
        "id": row.contribution_id,
        "kind": row.kind,
        "submitted_at": row.submitted_at,
        "late": row.late,
        "supports": row.supports,
        "answer": row.answer_state.as_deref().unwrap_or("not_answered"),
        "answer_text": row.answer_text,
    });
    if decided {
        view["weighing"] = json!(row.weighing);
    }
    let id = Uuid::parse_str(&row.contribution_id)
        .map(ContributionId)
        .map_err(|e| Problem::internal(&e))?;
    let first = state
        .store
        .read_stream(&id.stream_id(), 1, Direction::Forwards, 1)
        .await?;
    let Some(recorded) = first.first() else {
        return Err(Problem::internal(&"a listed contribution has no events"));
    };
    let content = match command::sealer(state) {
        Ok(_) => match command::open::<ContributionEvent>(state, recorded)
            .await?
            .event
        {
            ContributionEvent::Submitted(s) => s.content,
            _ => {
                return Err(Problem::internal(
                    &"a contribution stream begins with another event",
                ))
            }
        },
        // Without a key-encryption key nothing sealed can be shown.
        Err(_) => Personal::Erased,
    };
    match content {
        Personal::Available(c) => {
            view["pseudonym"] = json!(c.pseudonym);
            view["text"] = json!(c.text);
            view["location"] = json!(c.location);
            view["removed"] = json!(false);
        }
        Personal::Erased => {
            view["pseudonym"] = Value::Null;
            view["text"] = Value::Null;
            view["removed"] = json!(true);
        }
    }
    Ok(view)
}

/// The published contributions of a procedure: comments and defect reports that are
/// neither hidden nor withdrawn, under their pseudonyms. Statements and survey answers
/// are counted, never listed.
#[utoipa::path(get, path = "/participations/{id}/contributions", tag = "participation", security(()),
    params(
        ("id" = String, Path, description = "The procedure id"),
        ("after" = Option<u64>, Query, description = "Continue after this log position (the previous page's `next`)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)")),
    responses(
        (status = 200, description = "The published contributions in the order submitted; `removed` where the author was erased", body = Object),
        (status = 400, description = "Invalid paging", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such public procedure", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn contributions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(page) = query.map_err(query_problem)?;
    let limit = page.limit.unwrap_or(20);
    if !(1..=rm::MAX_LIMIT).contains(&limit) {
        return Err(invalid(format!("limit is 1 to {}", rm::MAX_LIMIT)));
    }
    let id = procedure_id(&id)?;
    let db = ReadDb::new(&state.store);
    let procedure = public_procedure(&db, id).await?;
    let decided = matches!(procedure.status.as_str(), "decided" | "archived");
    let rows =
        rm::published_contributions(&db, &procedure.procedure_id, page.after.unwrap_or(0), limit)
            .await?;
    let mut items = Vec::new();
    for row in rows
        .iter()
        .filter(|r| matches!(r.kind.as_str(), "comment" | "defect_report"))
    {
        items.push(public_contribution(&state, row, decided).await?);
    }
    let next = (rows.len() == limit as usize)
        .then(|| rows.last().map(|r| r.position))
        .flatten();
    Ok(Json(json!({
        "procedure_id": procedure.procedure_id,
        "count": procedure.contributions,
        "items": items,
        "next": next,
    })))
}

/// The public moderation log of a procedure.
#[utoipa::path(get, path = "/participations/{id}/moderation-log", tag = "participation", security(()),
    params(("id" = String, Path, description = "The procedure id")),
    responses(
        (status = 200, description = "Every report (its reason, never who), hiding and unhiding, with counts", body = Object),
        (status = 404, description = "No such public procedure", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn moderation_log(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = procedure_id(&id)?;
    let db = ReadDb::new(&state.store);
    let procedure = public_procedure(&db, id).await?;
    let log = rm::moderation_log(&db, &procedure.procedure_id).await?;
    Ok(Json(log))
}

/// The calendar window.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarParams {
    from: Option<String>,
    to: Option<String>,
}

/// Rounds, events and appointment slots between two instants.
#[utoipa::path(get, path = "/participations/calendar", tag = "participation", security(()),
    params(
        ("from" = Option<DateTime<Utc>>, Query, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339 start of the window (default: now)"),
        ("to" = Option<DateTime<Utc>>, Query, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339 end of the window, at most 400 days later (default: 90 days after from)")),
    responses(
        (status = 200, description = "What runs in the window, by start", body = Object),
        (status = 400, description = "A malformed, reversed or too long window", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn calendar(
    State(state): State<AppState>,
    query: Result<Query<CalendarParams>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let from = match q.from.as_deref() {
        Some(t) => instant("from", t)?,
        None => Utc::now(),
    };
    let to = match q.to.as_deref() {
        Some(t) => instant("to", t)?,
        None => from + chrono::Duration::days(DEFAULT_CALENDAR_DAYS),
    };
    if to < from || to - from > chrono::Duration::days(MAX_CALENDAR_DAYS) {
        return Err(invalid(format!(
            "to lies after from, at most {MAX_CALENDAR_DAYS} days later"
        )));
    }
    let db = ReadDb::new(&state.store);
    let items = rm::calendar(&db, from, to).await?;
    Ok(Json(json!({
        "from": amtsbuch_domain::record::format_timestamp(&from),
        "to": amtsbuch_domain::record::format_timestamp(&to),
        "items": items,
    })))
}
