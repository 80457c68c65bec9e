//! Forms and their versions: operators (the form editor's back end) create forms, draft,
//! revise, publish and retire versions; anybody reads them, since a portal renders the
//! published schema and every form is a public document.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::applications::form::{
    FormCommand, FormError, FormSchema, FormState, FormTitle, FormVersion, SchemaError, VersionNo,
};
use amtsbuch_domain::applications::FormId;
use amtsbuch_domain::record::format_timestamp;

use super::{unprocessable, uuid_param};
use crate::auth::Caller;
use crate::body;
use crate::command::{self, execute, refused, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// Create a form.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFormRequest {
    /// The form's title, at most 200 characters.
    #[schema(value_type = String, example = "Antrag auf Wohngeld")]
    title: FormTitle,
}

/// A version's schema.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRequest {
    /// A JSON Schema 2020-12 document whose root is an object schema; see docs/APPLICANT.md
    /// for `x-fim-id`, `x-editor` and `x-layout`.
    #[schema(value_type = Object)]
    schema: Value,
}

/// A form with its versions (without their schemas).
#[derive(Debug, Serialize, ToSchema)]
pub struct FormView {
    pub form_id: Uuid,
    pub title: String,
    pub created_at: String,
    pub versions: Vec<VersionSummary>,
    /// The version new applications are drafted under: the highest published one.
    pub current_version: Option<u32>,
    /// The stream's version.
    pub version: u64,
}

/// One version, without its schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: u32,
    /// `editing`, `published` or `retired`.
    pub status: String,
    /// SHA-256 of the schema's canonical JSON (RFC 8785).
    pub schema_hash: String,
    pub published_at: Option<String>,
    pub retired_at: Option<String>,
}

/// One version with its schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionView {
    pub form_id: Uuid,
    pub version: u32,
    /// `editing`, `published` or `retired`.
    pub status: String,
    pub schema_hash: String,
    /// The schema as given.
    #[schema(value_type = Object)]
    pub schema: Value,
    /// The attachments the form declares (its `upload` properties): name → required.
    #[schema(value_type = Object)]
    pub uploads: Value,
    pub published_at: Option<String>,
    pub retired_at: Option<String>,
}

fn status_name(v: &FormVersion) -> String {
    serde_json::to_value(v.status)
        .ok()
        .and_then(|s| s.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn summary(v: &FormVersion) -> VersionSummary {
    VersionSummary {
        version: v.version,
        status: status_name(v),
        schema_hash: v.schema.hash().to_string(),
        published_at: v.published_at.as_ref().map(format_timestamp),
        retired_at: v.retired_at.as_ref().map(format_timestamp),
    }
}

fn version_view(form_id: FormId, v: &FormVersion) -> VersionView {
    VersionView {
        form_id: form_id.0,
        version: v.version,
        status: status_name(v),
        schema_hash: v.schema.hash().to_string(),
        schema: v.schema.value().clone(),
        uploads: serde_json::to_value(v.schema.uploads()).unwrap_or_default(),
        published_at: v.published_at.as_ref().map(format_timestamp),
        retired_at: v.retired_at.as_ref().map(format_timestamp),
    }
}

fn form_view(state: &FormState, version: u64) -> Result<FormView, Problem> {
    let form = state
        .form
        .as_ref()
        .ok_or_else(|| Problem::not_found("no such form"))?;
    Ok(FormView {
        form_id: form.form_id.0,
        title: form.title.as_str().to_owned(),
        created_at: format_timestamp(&form.created_at),
        versions: state.versions.values().map(summary).collect(),
        current_version: state.current().map(|v| v.version),
        version,
    })
}

fn form_refused(e: FormError) -> Problem {
    match e {
        FormError::NoForm => Problem::not_found("no such form"),
        FormError::NoVersion(v) => Problem::not_found(format!("the form has no version {v}")),
        e => refused("form-refused", e),
    }
}

/// A schema that is no form schema: `422`, with the JSON pointer into the schema where
/// the refusal names one.
pub fn schema_problem(e: SchemaError) -> Problem {
    let pointer = match &e {
        SchemaError::Annotation { pointer, .. } => Some(pointer.clone()),
        _ => None,
    };
    let problem = unprocessable("invalid-schema", e.to_string());
    match pointer {
        Some(p) => problem.with("pointer", p),
        None => problem,
    }
}

fn form_id_of(raw: &str) -> Result<FormId, Problem> {
    uuid_param(raw, "a form id").map(FormId)
}

fn version_of(raw: &str) -> Result<VersionNo, Problem> {
    raw.parse::<VersionNo>()
        .ok()
        .filter(|v| *v >= 1 && raw == v.to_string())
        .ok_or_else(|| Problem::bad_request("invalid-version", "a version is a number from 1"))
}

async fn run(
    state: &AppState,
    id: FormId,
    command: FormCommand,
    meta: &Meta,
) -> Result<(FormState, u64), Problem> {
    let done = execute::<FormState>(state, &id.stream_id(), &command, form_refused, meta).await?;
    Ok((done.state, done.version))
}

/// The current state of a form.
pub async fn form(state: &AppState, id: FormId) -> Result<(FormState, u64), Problem> {
    // Kept folded between requests (a form carries no personal data): every save and
    // submission reads its form, whose versions' schemas would otherwise be decoded and
    // compiled again each time.
    command::Kept::<FormState>::of(state)
        .current(state, &id.stream_id())
        .await
}

/// Create a form; its versions follow.
#[utoipa::path(post, path = "/forms", tag = "forms",
    security(("bearer" = ["operator"])),
    request_body = CreateFormRequest,
    responses(
        (status = 201, description = "Created", body = FormView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: CreateFormRequest = body::json(raw, "{\"title\"}")?;
    let id = FormId(Uuid::now_v7());
    let command = FormCommand::Create {
        form_id: id,
        title: req.title,
        at: Utc::now(),
    };
    let (form, version) = run(&state, id, command, &Meta::of(&caller)).await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/forms/{id}"))],
        Json(form_view(&form, version)?),
    )
        .into_response())
}

/// A form and its versions.
#[utoipa::path(get, path = "/forms/{form}", tag = "forms",
    security(()),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)")),
    responses(
        (status = 200, description = "The form", body = FormView),
        (status = 400, description = "Not a form id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get_form(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<FormView>, Problem> {
    let id = form_id_of(&raw)?;
    let (form, version) = form(&state, id).await?;
    Ok(Json(form_view(&form, version)?))
}

/// Draft the form's next version with a schema.
#[utoipa::path(post, path = "/forms/{form}/versions", tag = "forms",
    security(("bearer" = ["operator"])),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)")),
    request_body = SchemaRequest,
    responses(
        (status = 201, description = "Drafted", body = VersionView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a form schema (with `pointer` into the schema where one is named)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn draft_version(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = form_id_of(&raw)?;
    let req: SchemaRequest = body::json(body, "{\"schema\": {...}}")?;
    let schema = FormSchema::parse(req.schema).map_err(schema_problem)?;
    let command = FormCommand::DraftVersion {
        schema,
        at: Utc::now(),
    };
    let (form, _) = run(&state, id, command, &Meta::of(&caller)).await?;
    let v = form
        .versions
        .values()
        .next_back()
        .ok_or_else(|| Problem::internal(&"a drafted version is missing"))?;
    Ok((
        StatusCode::CREATED,
        [(
            axum::http::header::LOCATION,
            format!("/forms/{id}/versions/{}", v.version),
        )],
        Json(version_view(id, v)),
    )
        .into_response())
}

async fn step(
    state: &AppState,
    caller: &amtsbuch_domain::access::Principal,
    raw: &str,
    raw_version: &str,
    command: impl FnOnce(VersionNo) -> FormCommand,
) -> Result<Json<VersionView>, Problem> {
    let id = form_id_of(raw)?;
    let number = version_of(raw_version)?;
    let (form, _) = run(state, id, command(number), &Meta::of(caller)).await?;
    let v = form
        .version(number)
        .ok_or_else(|| Problem::not_found(format!("the form has no version {number}")))?;
    Ok(Json(version_view(id, v)))
}

/// Runs `command` on the form only while it is at version `expected` (`412` otherwise), so
/// that two editors revising one version do not overwrite each other unseen.
async fn revise_at(
    state: &AppState,
    id: FormId,
    command: &FormCommand,
    expected: u64,
    meta: &Meta,
) -> Result<FormState, Problem> {
    use amtsbuch_domain::decider::Decider;
    let stream = id.stream_id();
    let (current, version) = command::current::<FormState>(state, &stream).await?;
    if current.form.is_none() {
        return Err(Problem::not_found("no such form"));
    }
    if version != expected {
        return Err(super::lifecycle::changed("form", expected, version));
    }
    let events = FormState::decide(command, &current).map_err(form_refused)?;
    if events.is_empty() {
        return Ok(current);
    }
    match command::append(
        state,
        &stream,
        &events,
        amtsbuch_domain::ExpectedVersion::Exact(expected),
        meta,
    )
    .await
    {
        Ok(_) => Ok(events.iter().fold(current, FormState::evolve)),
        Err(command::StoreOrProblem::Store(amtsbuch_infra::StoreError::Append(
            amtsbuch_domain::AppendError::WrongExpectedVersion { .. },
        ))) => {
            let (_, now) = command::current::<FormState>(state, &stream).await?;
            Err(super::lifecycle::changed("form", expected, now))
        }
        Err(e) => Err(e.into()),
    }
}

/// Replace the schema of a version that is still being edited.
#[utoipa::path(put, path = "/forms/{form}/versions/{v}", tag = "forms",
    security(("bearer" = ["operator"])),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)"),
           ("v" = u32, Path, minimum = 1, description = "The version number, from 1"),
           ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The form's `version` (`GET /forms/{form}`) as an entity tag (`\"3\"`); the revision is refused with `412` when the form changed since"),
           ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The form's `version` as a number, as `If-Match`")),
    request_body = SchemaRequest,
    responses(
        (status = 200, description = "Revised", body = VersionView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The version is published or retired and never changes", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The form changed since the version `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "Not a form schema", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn revise_version(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((raw, raw_version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<VersionView>, Problem> {
    let req: SchemaRequest = body::json(body, "{\"schema\": {...}}")?;
    let schema = FormSchema::parse(req.schema).map_err(schema_problem)?;
    if let Some(expected) = super::lifecycle::expected_version(&headers)? {
        let id = form_id_of(&raw)?;
        let number = version_of(&raw_version)?;
        let command = FormCommand::ReviseVersion {
            version: number,
            schema,
            at: Utc::now(),
        };
        let form = revise_at(&state, id, &command, expected, &Meta::of(&caller)).await?;
        let v = form
            .version(number)
            .ok_or_else(|| Problem::not_found(format!("the form has no version {number}")))?;
        return Ok(Json(version_view(id, v)));
    }
    step(&state, &caller, &raw, &raw_version, |version| {
        FormCommand::ReviseVersion {
            version,
            schema,
            at: Utc::now(),
        }
    })
    .await
}

/// Publish a version: from now on it never changes, and applications are drafted under it.
#[utoipa::path(post, path = "/forms/{form}/versions/{v}/publication", tag = "forms",
    security(("bearer" = ["operator"])),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)"),
           ("v" = u32, Path, minimum = 1, description = "The version number, from 1")),
    responses(
        (status = 200, description = "Published (publishing again changes nothing)", body = VersionView),
        (status = 400, description = "Invalid id or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The version is retired", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn publish(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((raw, raw_version)): Path<(String, String)>,
) -> Result<Json<VersionView>, Problem> {
    step(&state, &caller, &raw, &raw_version, |version| {
        FormCommand::Publish {
            version,
            at: Utc::now(),
        }
    })
    .await
}

/// Retire a published version: drafts made under it can no longer be submitted.
#[utoipa::path(post, path = "/forms/{form}/versions/{v}/retirement", tag = "forms",
    security(("bearer" = ["operator"])),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)"),
           ("v" = u32, Path, minimum = 1, description = "The version number, from 1")),
    responses(
        (status = 200, description = "Retired (retiring again changes nothing)", body = VersionView),
        (status = 400, description = "Invalid id or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The version is not published", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn retire(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((raw, raw_version)): Path<(String, String)>,
) -> Result<Json<VersionView>, Problem> {
    step(&state, &caller, &raw, &raw_version, |version| {
        FormCommand::Retire {
            version,
            at: Utc::now(),
        }
    })
    .await
}

/// One version of a form with its schema, as a portal renders it.
#[utoipa::path(get, path = "/forms/{form}/versions/{v}", tag = "forms",
    security(()),
    params(("form" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The form id (a lowercase UUID)"),
           ("v" = u32, Path, minimum = 1, description = "The version number, from 1")),
    responses(
        (status = 200, description = "The version", body = VersionView),
        (status = 400, description = "Invalid id or version", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such form or version", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get_version(
    State(state): State<AppState>,
    Path((raw, raw_version)): Path<(String, String)>,
) -> Result<Json<VersionView>, Problem> {
    let id = form_id_of(&raw)?;
    let number = version_of(&raw_version)?;
    let (form, _) = form(&state, id).await?;
    if form.form.is_none() {
        return Err(Problem::not_found("no such form"));
    }
    let v = form
        .version(number)
        .ok_or_else(|| Problem::not_found(format!("the form has no version {number}")))?;
    Ok(Json(version_view(id, v)))
}
