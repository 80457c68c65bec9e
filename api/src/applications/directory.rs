//! The responsibility directory: an operator imports it as a whole (`PUT
//! /responsibilities`), and anybody asks who is responsible for a service at a place
//! (`GET /services?leika=&ars=`), now or at an instant.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::applications::directory::{
    DirectoryError, DirectoryState, Import, Responsibility,
};
use amtsbuch_domain::applications::{DirectoryId, Leika, Place};
use amtsbuch_domain::record::format_timestamp;

use super::{query_problem, unprocessable};
use crate::auth::Caller;
use crate::body;
use crate::command::{self, execute, refused, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// The whole directory, replacing the one in force from `valid_from` on.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Each `{"leika", "region", "authority", "form", "payment", "service_name"?}`: LeiKa key
    /// (14 digits), region (an ARS prefix of 2, 3, 5, 9 or 12 digits, or an AGS of 8),
    /// authority id, form id (UUID), payment policy (`none`, `before_submission`,
    /// `after_decision`), public service name (at most 100 characters).
    #[schema(value_type = Vec<ResponsibilityDoc>, min_items = 1)]
    entries: Vec<Responsibility>,
    /// From when the import is in force (RFC 3339; default now, never earlier).
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    valid_from: Option<DateTime<Utc>>,
}

/// One responsibility of an import, as the document describes it (the handler reads
/// `Responsibility` of the domain, which checks the same grammar).
#[derive(Debug, ToSchema)]
#[allow(
    dead_code,
    reason = "describes the request body in the API document only"
)]
pub struct ResponsibilityDoc {
    /// The service's LeiKa key.
    #[schema(pattern = "^[0-9]{14}$")]
    leika: String,
    /// An ARS prefix of 2, 3, 5, 9 or 12 digits, or an AGS of 8 digits.
    #[schema(pattern = "^([0-9]{2}|[0-9]{3}|[0-9]{5}|[0-9]{8}|[0-9]{9}|[0-9]{12})$")]
    region: String,
    /// The responsible authority's id.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    authority: String,
    /// The form to apply with (a lowercase UUID).
    #[schema(pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    form: String,
    /// `none`, `before_submission` or `after_decision`.
    payment: PaymentPolicyDoc,
    /// The public name of the service, at most 100 characters.
    #[schema(max_length = 100)]
    service_name: Option<String>,
}

/// When a fee is due.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(
    dead_code,
    reason = "describes the request body in the API document only"
)]
pub enum PaymentPolicyDoc {
    None,
    BeforeSubmission,
    AfterDecision,
}

/// An import as recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportView {
    /// The import's number, from 1.
    pub import: u32,
    pub valid_from: String,
    pub imported_at: String,
    /// How many responsibilities it holds.
    pub entries: usize,
    /// Where the event landed in the log.
    pub position: Option<u64>,
}

/// A refused import: `responsibility-conflicts` names every conflict, `invalid-directory`
/// says why else.
#[derive(Debug, Serialize, ToSchema)]
pub struct DirectoryProblemDoc {
    /// `urn:amtsbuch:problem:responsibility-conflicts` or
    /// `urn:amtsbuch:problem:invalid-directory`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Extension member of `responsibility-conflicts`: each (LeiKa, region) with more than
    /// one entry (`leika`, `region`, `authorities`, `entries`: their positions from 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub conflicts: Option<Vec<serde_json::Value>>,
}

fn directory_refused(e: DirectoryError) -> Problem {
    match e {
        DirectoryError::Conflicts(conflicts) => unprocessable(
            "responsibility-conflicts",
            format!(
                "each (LeiKa, region) must have exactly one entry; {} have more: {}",
                conflicts.len(),
                conflicts
                    .iter()
                    .take(20)
                    .map(|c| format!(
                        "{} in {} ({})",
                        c.leika,
                        c.region,
                        c.authorities
                            .iter()
                            .map(|a| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        )
        .with(
            "conflicts",
            serde_json::to_value(&conflicts).unwrap_or_default(),
        ),
        e @ (DirectoryError::Empty | DirectoryError::TooLarge(_)) => {
            unprocessable("invalid-directory", e.to_string())
        }
        e => refused("directory-refused", e),
    }
}

/// Import the responsibility directory as a whole. Refused, naming them, when a (LeiKa,
/// region) has more than one entry; each import is one event, so who was responsible at
/// any instant stays answerable.
#[utoipa::path(put, path = "/responsibilities", tag = "responsibilities",
    security(("bearer" = ["operator"])),
    request_body = ImportRequest,
    responses(
        (status = 200, description = "Imported", body = ImportView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused: valid_from lies in the past or before the import in force", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Conflicting entries (named in `conflicts`), none, or too many", body = DirectoryProblemDoc, content_type = "application/problem+json")))]
pub async fn import(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportView>, Problem> {
    let req: ImportRequest = body::json(raw, "{\"entries\": [...], \"valid_from\"?}")?;
    let now = Utc::now();
    let command = Import {
        entries: req.entries,
        valid_from: req.valid_from.unwrap_or(now),
        imported_at: now,
    };
    let done = execute::<DirectoryState>(
        &state,
        &DirectoryId::MAIN.stream_id(),
        &command,
        directory_refused,
        &Meta::of(&caller),
    )
    .await?;
    let event = done
        .events
        .first()
        .ok_or_else(|| Problem::internal(&"an import decided no event"))?;
    Ok(Json(ImportView {
        import: event.import,
        valid_from: format_timestamp(&event.valid_from),
        imported_at: format_timestamp(&event.imported_at),
        entries: event.entries.len(),
        position: done.outcome.map(|o| o.last_position),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceQuery {
    leika: Option<String>,
    ars: Option<String>,
    ags: Option<String>,
    at: Option<String>,
}

/// Who is responsible.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub leika: String,
    /// The place asked about, as given.
    pub place: String,
    /// Its municipality key.
    pub ags: String,
    /// The directory's region that matched (the most specific one).
    pub region: String,
    pub authority: String,
    pub form: Uuid,
    /// `none`, `before_submission` or `after_decision`.
    pub payment: String,
    pub service_name: Option<String>,
    /// The import that answered, and from when it is in force.
    pub import: u32,
    pub valid_from: String,
}

fn bad_query(detail: impl Into<String>) -> Problem {
    Problem::bad_request("invalid-query", detail)
}

/// Parse the place of a query: exactly one of `ars` and `ags`.
pub fn place_of(ars: Option<&str>, ags: Option<&str>) -> Result<Place, Problem> {
    match (ars, ags) {
        (Some(ars), None) if ars.len() == 12 => {
            Place::parse(ars).map_err(|_| bad_query("ars is the regional key, 12 digits"))
        }
        (None, Some(ags)) if ags.len() == 8 => {
            Place::parse(ags).map_err(|_| bad_query("ags is the municipality key, 8 digits"))
        }
        (Some(_), None) => Err(bad_query("ars is the regional key, 12 digits")),
        (None, Some(_)) => Err(bad_query("ags is the municipality key, 8 digits")),
        _ => Err(bad_query("name the place by exactly one of ars and ags")),
    }
}

/// Parse a LeiKa key of a query.
pub fn leika_of(raw: Option<&str>) -> Result<Leika, Problem> {
    raw.ok_or_else(|| bad_query("leika (14 digits) is required"))
        .and_then(|l| Leika::parse(l).map_err(|e| bad_query(format!("leika: {e}"))))
}

/// The directory as imported so far.
pub async fn directory(state: &AppState) -> Result<DirectoryState, Problem> {
    // Kept folded between requests (the directory carries no personal data), so that a
    // new draft does not decode every import again.
    Ok(command::Kept::<DirectoryState>::of(state)
        .current(state, &DirectoryId::MAIN.stream_id())
        .await?
        .0)
}

fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Who is (or was, with `at`) responsible for a service at a place: the authority, the form
/// to apply with and the payment policy. `404` if nobody is.
#[utoipa::path(get, path = "/services", tag = "responsibilities",
    security(()),
    params(
        ("leika" = String, Query, pattern = "^[0-9]{14}$", description = "The service's LeiKa key (14 digits)"),
        ("ars" = Option<String>, Query, pattern = "^[0-9]{12}$", description = "The place's regional key (ARS, 12 digits); exactly one of `ars` and `ags` (else 400)"),
        ("ags" = Option<String>, Query, pattern = "^[0-9]{8}$", description = "Or its municipality key (AGS, 8 digits)"),
        ("at" = Option<DateTime<Utc>>, Query, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "The instant asked about (RFC 3339; default now)")),
    responses(
        (status = 200, description = "The responsible authority", body = ServiceView),
        (status = 400, description = "A missing or malformed parameter", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Nobody is responsible for the service there (then)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn responsible(
    State(state): State<AppState>,
    query: Result<Query<ServiceQuery>, QueryRejection>,
) -> Result<Json<ServiceView>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let leika = leika_of(q.leika.as_deref())?;
    let place = place_of(q.ars.as_deref(), q.ags.as_deref())?;
    let at = match q.at.as_deref() {
        None => Utc::now(),
        Some(s) => crate::body::instant("at", s)?,
    };
    let directory = directory(&state).await?;
    let in_force = directory.in_force(at);
    let found = in_force.and_then(|i| i.responsible(&leika, &place));
    match (in_force, found) {
        (Some(i), Some(r)) => Ok(Json(ServiceView {
            leika: leika.to_string(),
            place: place.as_str().to_owned(),
            ags: place.ags().to_owned(),
            region: r.region.to_string(),
            authority: r.authority.as_str().to_owned(),
            form: r.form.0,
            payment: label(&r.payment),
            service_name: r.service_name.as_ref().map(|n| n.as_str().to_owned()),
            import: i.import,
            valid_from: format_timestamp(&i.valid_from),
        })),
        _ => Err(Problem::new(
            axum::http::StatusCode::NOT_FOUND,
            "no-responsible-authority",
            "Nobody is responsible",
            format!(
                "the directory names no authority for service {leika} at {}{}",
                place.as_str(),
                q.at.as_deref()
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default()
            ),
        )),
    }
}
