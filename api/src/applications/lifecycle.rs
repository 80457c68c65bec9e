//! Applications over HTTP: a citizen drafts, fills in, submits and may withdraw an
//! application and answers information requests; the responsible authority (its officials
//! and its Fachverfahren) receives, asks, decides and closes it.
//!
//! Who reaches an application, each role by its own rule (a second role only adds what it
//! may do itself):
//!
//! - citizen: its own applications (the applicant is the token's account);
//! - authority: from the submission on, the applications addressed to its authority whose
//!   place lies in one of its regions;
//! - fachverfahren: from the submission on, those addressed to its authority for one of its
//!   services;
//! - dpo: who read an application (`/accesses`).
//!
//! A draft is the applicant's alone: to an authority it does not exist (`404`), and neither
//! does any application beyond a caller's scope (`404`, never a `403` that would tell it
//! exists, or is submitted). Every read
//! of an application's personal data by an authority or Fachverfahren is recorded as an
//! `ApplicationRead` event before the answer is given. Every event from the submission on
//! is routed to the responsible authority and service (the envelope's routing), so NATS
//! and the SSE stream deliver it to that authority's Fachverfahren only.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::applications::application::{
    Application, ApplicationCommand, ApplicationError, ApplicationEvent, ApplicationRead,
    ApplicationState, Dues, FileNumber, Message, Outcome, Pinned, ReadKind, ReaderLabel,
    Responsible,
};
use amtsbuch_domain::applications::directory::PaymentPolicy;
use amtsbuch_domain::applications::{ApplicationId, Personal, Sha256, SubjectId};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::ExpectedVersion;
use amtsbuch_infra::EventStore;
use amtsbuch_projections::applications::{InboxFilter, InboxScope};

use super::directory::{directory, leika_of, place_of};
use super::forms::form;
use super::{query_problem, unprocessable, uuid_param};
use crate::auth::Caller;
use crate::body;
use crate::command::{self, execute, personal_json, refused, Meta, Stored};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// A problem of data that does not satisfy its form version (`invalid-data`), or of an
/// attachment that is missing or has another hash (`attachment-missing`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DataProblemDoc {
    /// `urn:amtsbuch:problem:invalid-data` or `urn:amtsbuch:problem:attachment-missing`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Extension member of `invalid-data`: each violation (`pointer` into the data,
    /// `keyword`, `schema_path`), at most 100.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub violations: Option<Vec<Value>>,
}

/// The most applications one inbox page lists.
pub const MAX_INBOX_PAGE: usize = 200;

pub(super) fn application_id(raw: &str) -> Result<ApplicationId, Problem> {
    uuid_param(raw, "an application id").map(ApplicationId)
}

/// The applicant a citizen's token acts for: its account, a UUID.
fn applicant_of(caller: &Principal) -> Result<SubjectId, Problem> {
    caller
        .account()
        .and_then(|a| Uuid::parse_str(a).ok())
        .map(SubjectId)
        .ok_or_else(|| {
            Problem::forbidden(
                "an application is made for a Servicekonto account, whose id is a UUID",
            )
        })
}

/// How a caller reaches an application.
#[derive(Debug, Clone)]
pub(super) struct Reach {
    /// The role it acts in, and the envelope's metadata for that role.
    role: Role,
    meta: Meta,
}

/// Whether any role of the (narrowed) caller reaches `app`; see the module docs. Where no
/// role reaches it — a citizen on someone else's application, an official outside its
/// authority, regions or services, or on a draft — it is 404, exactly as if it did not
/// exist: a 403 would tell that it exists, and a 403 once submitted its status.
fn reach(caller: &Principal, app: &Application) -> Result<Reach, Problem> {
    let submitted = app.status.is_submitted();
    let own_authority = caller.authority() == Some(&app.responsible.authority);
    let passes = |role: Role| match role {
        Role::Citizen => caller
            .account()
            .is_some_and(|a| a == app.applicant.to_string()),
        Role::Authority => {
            submitted
                && own_authority
                && caller
                    .regions()
                    .iter()
                    .any(|r| r.covers(app.responsible.place.ags()))
        }
        Role::Fachverfahren => {
            submitted
                && own_authority
                && caller
                    .services()
                    .contains(&app.responsible.leika.service_key())
        }
        Role::Dpo | Role::Operator => true,
        Role::Auditor | Role::Cashier | Role::Moderator => false,
    };
    if let Some(role) = caller.roles().iter().copied().find(|&r| passes(r)) {
        return Ok(Reach {
            role,
            meta: Meta::acting_as(caller, role).routed(app.routing()),
        });
    }
    // Beyond the caller's scope an application does not exist for it: the same 404 as a
    // missing one, so that neither its existence nor its status shows.
    Err(Problem::not_found("no such application"))
}

pub(super) fn application_refused(e: ApplicationError) -> Problem {
    match e {
        ApplicationError::NotFound => Problem::not_found("no such application"),
        ApplicationError::NotYourApplication => {
            Problem::forbidden("a citizen acts only on its own applications")
        }
        ApplicationError::OtherAuthority => {
            Problem::forbidden("the application is addressed to another authority")
        }
        ApplicationError::DataInvalid(invalid) => unprocessable(
            "invalid-data",
            format!(
                "the data does not satisfy the form version the application is pinned to: {} violations, listed in `violations` by JSON pointer",
                invalid.count
            ),
        )
        .with(
            "violations",
            serde_json::to_value(&invalid.violations).unwrap_or_default(),
        ),
        e @ ApplicationError::NotCanonical => unprocessable("invalid-data", e.to_string()),
        e @ ApplicationError::DueTooLate => {
            Problem::bad_request("invalid-body", e.to_string()).with("pointer", "/due_at")
        }
        e @ (ApplicationError::MissingAttachment(_) | ApplicationError::AttachmentMismatch(_)) => {
            unprocessable("attachment-missing", e.to_string())
        }
        ApplicationError::PaymentOutstanding(dues) => {
            let detail = ApplicationError::PaymentOutstanding(dues.clone()).to_string();
            refused("payment-outstanding", detail).with(
                "obligations",
                dues.into_iter()
                    .map(|(reference, why)| serde_json::json!({"reference": reference, "detail": why}))
                    .collect::<Vec<_>>(),
            )
        }
        e => refused("application-refused", e),
    }
}

pub(crate) async fn load(
    state: &AppState,
    id: ApplicationId,
) -> Result<(Vec<Stored<ApplicationEvent>>, ApplicationState, u64), Problem> {
    let (events, version) = command::load::<ApplicationEvent>(state, &id.stream_id()).await?;
    let folded = events.iter().fold(ApplicationState::default(), |s, e| {
        amtsbuch_domain::applications::application::evolve(s, &e.event)
    });
    Ok((events, folded, version))
}

/// The application and how the caller reaches it.
pub(super) async fn reached(
    state: &AppState,
    caller: &Principal,
    id: ApplicationId,
) -> Result<(Vec<Stored<ApplicationEvent>>, Application, Reach, u64), Problem> {
    let (events, folded, version) = load(state, id).await?;
    let app = folded
        .0
        .ok_or_else(|| Problem::not_found("no such application"))?;
    let reach = reach(caller, &app)?;
    Ok((events, app, reach, version))
}

/// An application as the caller sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApplicationView {
    pub application_id: Uuid,
    /// `draft`, `submitted`, `received`, `in_progress`, `information_requested`, `decided`,
    /// `closed`, `withdrawn`, `expired`.
    pub status: String,
    /// The federal status monitor's status (`INITIATED` … `COMPLETED`).
    pub zbp_status: String,
    pub zbp_status_details: Option<String>,
    pub applicant: Uuid,
    pub form: Uuid,
    pub form_version: u32,
    pub schema_hash: String,
    pub authority: String,
    pub leika: String,
    /// The applicant's place (ARS or AGS) and its AGS, the events' tenant.
    pub place: String,
    pub ags: String,
    /// `none`, `before_submission` or `after_decision`.
    pub payment: String,
    pub created_at: String,
    /// For a draft: when it expires (30 days after its last edit).
    pub expires_at: Option<String>,
    /// The form data (decrypted), `{"erased": true}`, or null before any was saved.
    pub data: Value,
    pub data_hash: Option<String>,
    /// Attachments: name → `{"sha256", "size"}`.
    #[schema(value_type = Object)]
    pub attachments: Value,
    pub submitted_at: Option<String>,
    pub file_number: Option<String>,
    pub information_requests: Vec<InformationView>,
    /// `granted`, `rejected` or `partly_granted`.
    pub outcome: Option<String>,
    pub decision_document_sha256: Option<String>,
    pub decided_at: Option<String>,
    /// When it was closed, withdrawn or expired.
    pub ended_at: Option<String>,
    /// The stream's version.
    pub version: u64,
}

/// One information request and its answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InformationView {
    pub request: u32,
    pub requested_at: String,
    pub due_at: Option<String>,
    /// The message (decrypted) or `{"erased": true}`.
    pub message: Value,
    pub answered_at: Option<String>,
    /// The answer (decrypted), `{"erased": true}`, or null while none was given.
    pub answer: Value,
}

fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn view(
    events: &[Stored<ApplicationEvent>],
    app: &Application,
    version: u64,
) -> ApplicationView {
    let mut data = Value::Null;
    let mut requests: Vec<InformationView> = Vec::new();
    let mut document = None;
    for e in events {
        match &e.event {
            ApplicationEvent::DataSaved(s) => {
                data = match &s.data {
                    Personal::Available(saved) => saved.data.clone(),
                    Personal::Erased => json!({ "erased": true }),
                }
            }
            ApplicationEvent::InformationRequested(r) => requests.push(InformationView {
                request: r.request,
                requested_at: format_timestamp(&r.at),
                due_at: r.due_at.as_ref().map(format_timestamp),
                message: personal_json(&r.message),
                answered_at: None,
                answer: Value::Null,
            }),
            ApplicationEvent::InformationProvided(p) => {
                if let Some(r) = requests.iter_mut().find(|r| r.request == p.request) {
                    r.answered_at = Some(format_timestamp(&p.at));
                    r.answer = personal_json(&p.message);
                }
            }
            ApplicationEvent::Decided(d) => document = Some(d.document_hash.to_string()),
            _ => {}
        }
    }
    let (zbp, details) = app.zbp();
    ApplicationView {
        application_id: app.id.0,
        status: app.status.as_str().to_owned(),
        zbp_status: label(&zbp),
        zbp_status_details: details.map(str::to_owned),
        applicant: app.applicant.0,
        form: app.pinned.form.0,
        form_version: app.pinned.version,
        schema_hash: app.pinned.schema_hash.to_string(),
        authority: app.responsible.authority.as_str().to_owned(),
        leika: app.responsible.leika.to_string(),
        place: app.responsible.place.as_str().to_owned(),
        ags: app.responsible.place.ags().to_owned(),
        payment: label(&app.responsible.payment),
        created_at: format_timestamp(&app.created_at),
        expires_at: app.expires_at().as_ref().map(format_timestamp),
        data,
        data_hash: app.data_hash.map(|h| h.to_string()),
        attachments: serde_json::to_value(&app.attachments).unwrap_or_default(),
        submitted_at: app.submitted_at.as_ref().map(format_timestamp),
        file_number: app.file_number.as_ref().map(|f| f.as_str().to_owned()),
        information_requests: requests,
        outcome: app.outcome.map(|o| label(&o)),
        decision_document_sha256: document,
        decided_at: app.decided_at.as_ref().map(format_timestamp),
        ended_at: app.ended_at.as_ref().map(format_timestamp),
        version,
    }
}

/// Record that an official or Fachverfahren read the application's personal data.
async fn record_read(
    state: &AppState,
    caller: &Principal,
    app: &Application,
    reach: &Reach,
    what: ReadKind,
) -> Result<(), Problem> {
    if !matches!(reach.role, Role::Authority | Role::Fachverfahren) {
        return Ok(());
    }
    let reader = reach
        .meta
        .actor
        .as_deref()
        .and_then(|a| ReaderLabel::parse(a).ok())
        .ok_or_else(|| Problem::internal(&"a reader without a label"))?;
    let authority = caller
        .authority()
        .cloned()
        .ok_or_else(|| Problem::internal(&"an official without an authority"))?;
    let event = ApplicationEvent::Read(ApplicationRead {
        application_id: app.id,
        reader,
        authority,
        what,
        read_at: amtsbuch_domain::record::truncate_micros(Utc::now()),
    });
    command::append(
        state,
        &app.id.stream_id(),
        &[event],
        ExpectedVersion::Any,
        &reach.meta,
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The applicant's routes
// ---------------------------------------------------------------------------------------

/// Start an application.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    /// The service's LeiKa key (14 digits).
    #[schema(pattern = "^[0-9]{14}$")]
    leika: String,
    /// The applicant's place: its regional key (ARS, 12 digits) …
    #[schema(pattern = "^[0-9]{12}$")]
    ars: Option<String>,
    /// … or its municipality key (AGS, 8 digits); exactly one of the two.
    #[schema(pattern = "^[0-9]{8}$")]
    ags: Option<String>,
}

/// Start a draft for a service at the applicant's place: routed to the authority the
/// directory names now, pinned to the current published version of the form it names.
#[utoipa::path(post, path = "/applications", tag = "applications",
    security(("bearer" = ["citizen"])),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The draft", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "Nobody is responsible, or the form has no published version", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: CreateRequest = body::json(raw, "{\"leika\", \"ars\" or \"ags\"}")?;
    let applicant = applicant_of(&caller)?;
    let leika = leika_of(Some(&req.leika))?;
    let place = place_of(req.ars.as_deref(), req.ags.as_deref())?;
    let now = Utc::now();
    let directory = directory(&state).await?;
    let entry = directory
        .responsible(&leika, &place, now)
        .cloned()
        .ok_or_else(|| {
            Problem::new(
                StatusCode::NOT_FOUND,
                "no-responsible-authority",
                "Nobody is responsible",
                format!(
                    "the directory names no authority for service {leika} at {}",
                    place.as_str()
                ),
            )
        })?;
    let (form_state, _) = form(&state, entry.form).await?;
    let current = form_state.current().ok_or_else(|| {
        Problem::not_found(format!("form {} has no published version", entry.form))
    })?;
    let id = ApplicationId(Uuid::now_v7());
    let command = ApplicationCommand::Create {
        application_id: id,
        applicant,
        pinned: Pinned {
            form: entry.form,
            version: current.version,
            schema_hash: current.schema.hash(),
        },
        responsible: Responsible {
            authority: entry.authority.clone(),
            leika,
            place,
            payment: entry.payment,
            service_name: entry.service_name.clone(),
        },
        at: now,
    };
    let done = execute::<ApplicationState>(
        &state,
        &id.stream_id(),
        &command,
        application_refused,
        &Meta::of(&caller),
    )
    .await?;
    let app = done
        .state
        .0
        .as_ref()
        .ok_or_else(|| Problem::internal(&"a created application is missing"))?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/applications/{id}"))],
        Json(view(&[], app, done.version)),
    )
        .into_response())
}

/// An application with its personal data. A read by an official or a Fachverfahren is
/// recorded first.
#[utoipa::path(get, path = "/applications/{id}", tag = "applications",
    security(("bearer" = ["citizen", "authority", "fachverfahren"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)")),
    responses(
        (status = 200, description = "The application", body = ApplicationView,
            headers(("ETag" = String, description = "The application's `version` as an entity tag (`\"3\"`), for `If-Match` on the next write"))),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application, or another authority's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application (a draft, to an authority)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Response, Problem> {
    let id = application_id(&raw)?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    record_read(&state, &caller, &app, &reach, ReadKind::Application).await?;
    Ok((
        [(axum::http::header::ETAG, format!("\"{version}\""))],
        Json(view(&events, &app, version)),
    )
        .into_response())
}

/// The status, as the federal status monitor (ZBP) shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    pub application_id: Uuid,
    pub status: String,
    /// `INITIATED`, `SUBMITTED`, `RECEIVED`, `PROCESSING`, `ACTION_REQUIRED`, `COMPLETED`.
    pub zbp_status: String,
    /// For `COMPLETED`: how (at most 50 characters).
    pub zbp_status_details: Option<String>,
    /// The public service name (at most 100 characters), if the directory names one.
    pub public_service_name: Option<String>,
    pub file_number: Option<String>,
    /// The due date of an open information request.
    pub due_at: Option<String>,
    pub version: u64,
}

/// The status of an application (no personal data).
#[utoipa::path(get, path = "/applications/{id}/status", tag = "applications",
    security(("bearer" = ["citizen", "authority", "fachverfahren"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)")),
    responses(
        (status = 200, description = "The status", body = StatusView),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application, or another authority's", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Json<StatusView>, Problem> {
    let id = application_id(&raw)?;
    let (_, app, _, version) = reached(&state, &caller, id).await?;
    let (zbp, details) = app.zbp();
    Ok(Json(StatusView {
        application_id: id.0,
        status: app.status.as_str().to_owned(),
        zbp_status: label(&zbp),
        zbp_status_details: details.map(str::to_owned),
        public_service_name: app
            .responsible
            .service_name
            .as_ref()
            .map(|n| n.as_str().to_owned()),
        file_number: app.file_number.as_ref().map(|f| f.as_str().to_owned()),
        due_at: app
            .open_request
            .as_ref()
            .map(|r| format_timestamp(&r.due_at)),
        version,
    }))
}

/// The version a write is made against, from `If-Match` (the entity tag `"<version>"`, the
/// `version` of the application as read, or `*`) or `Expected-Version` (the version as a
/// number); `None` when the caller names none. Both given must agree.
pub(super) fn expected_version(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let text = |name: &'static str| -> Result<Option<&str>, Problem> {
        headers
            .get(name)
            .map(|v| {
                v.to_str().map_err(|_| {
                    Problem::bad_request(
                        "invalid-version",
                        format!("{name} must be ASCII: the version read"),
                    )
                })
            })
            .transpose()
    };
    let invalid = |name: &str| {
        Problem::bad_request(
            "invalid-version",
            format!("{name} names the version read: If-Match: \"3\" (the `version` in quotes) or Expected-Version: 3"),
        )
    };
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 15 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    let if_match = match text("if-match")?.map(str::trim) {
        None | Some("*") => None,
        Some(tag) => Some(
            tag.strip_prefix("W/")
                .unwrap_or(tag)
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .and_then(number)
                .ok_or_else(|| invalid("If-Match"))?,
        ),
    };
    let expected = match text("expected-version")?.map(str::trim) {
        None | Some("any") => None,
        Some(v) => Some(number(v).ok_or_else(|| invalid("Expected-Version"))?),
    };
    match (if_match, expected) {
        (Some(a), Some(b)) if a != b => Err(Problem::bad_request(
            "invalid-version",
            "If-Match and Expected-Version name different versions",
        )),
        (a, b) => Ok(a.or(b)),
    }
}

/// The `412` problem of a write made against another version than the application's.
pub(super) fn version_mismatch(expected: u64, actual: u64) -> Problem {
    changed("application", expected, actual)
}

/// The `412` problem of a write made against another version of `what` than its own.
pub(super) fn changed(what: &str, expected: u64, actual: u64) -> Problem {
    Problem::new(
        StatusCode::PRECONDITION_FAILED,
        "version-mismatch",
        "Changed since it was read",
        format!("the {what} is at version {actual}, but the request was made against version {expected}; read it again and retry with If-Match: \"{actual}\""),
    )
    .with("expected_version", expected.to_string())
    .with("actual_version", actual)
}

/// The version of the application's last change: a recorded read (`ApplicationRead`) is
/// appended to the application's stream but changes nothing of it, so a write made against
/// the version before it still fits.
fn last_change(events: &[Stored<ApplicationEvent>]) -> u64 {
    events
        .iter()
        .rposition(|e| !matches!(e.event, ApplicationEvent::Read(_)))
        .map_or(0, |i| i as u64 + 1)
}

/// Whether a write made against version `expected` fits the application at `version`:
/// nothing but reads were recorded since.
fn fits(events: &[Stored<ApplicationEvent>], version: u64, expected: u64) -> bool {
    last_change(events) <= expected && expected <= version
}

/// Refuses a write against a version the application has changed since, if the caller
/// named one; the version named.
pub(super) fn check_version(
    headers: &HeaderMap,
    events: &[Stored<ApplicationEvent>],
    version: u64,
) -> Result<Option<u64>, Problem> {
    match expected_version(headers)? {
        Some(expected) if !fits(events, version, expected) => {
            Err(version_mismatch(expected, version))
        }
        expected => Ok(expected),
    }
}

/// Run a command on a reached application; the view after it. With `expected`, the
/// command is decided only while the application has not changed since that version
/// (`412` otherwise); without, it is decided again when another command got there first.
/// `events` and `version` are the stream as `reached` read it: the command is decided on
/// them first and appended with that version as the expected version, so the stream is
/// read again only when another command changed it meanwhile.
pub(super) async fn run(
    state: &AppState,
    app: &Application,
    reach: &Reach,
    command: ApplicationCommand<'_>,
    expected: Option<u64>,
    events: Vec<Stored<ApplicationEvent>>,
    version: u64,
) -> Result<(ApplicationView, Option<u64>), Problem> {
    let ran = run_stored(state, app, reach, &command, expected, events, version).await?;
    Ok((ran.view, ran.position))
}

/// What [`run_stored`] did.
struct Ran {
    view: ApplicationView,
    /// The position of the last event appended, if any.
    position: Option<u64>,
    /// The stream after the command: what was read, and the appended events as decided.
    events: Vec<Stored<ApplicationEvent>>,
    /// The stored records of the appended events.
    records: Vec<amtsbuch_infra::RecordedEvent>,
}

/// [`run`], with the stream after the command and the records it appended. The appended
/// events are not read back and opened: they are taken as decided, with where the log
/// placed them (`command::append_stored`).
async fn run_stored(
    state: &AppState,
    app: &Application,
    reach: &Reach,
    command: &ApplicationCommand<'_>,
    expected: Option<u64>,
    mut events: Vec<Stored<ApplicationEvent>>,
    mut version: u64,
) -> Result<Ran, Problem> {
    use amtsbuch_domain::applications::application::{decide, evolve};
    let stream = app.id.stream_id();
    // Decided again when another command changed the application first: as often as the
    // command path does, or, against a named version, while only reads came in between.
    let attempts = if expected.is_some() { 5 } else { 3 };
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > 1 {
            (events, _, version) = load(state, app.id).await?;
        }
        if let Some(expected) = expected {
            if !fits(&events, version, expected) {
                return Err(version_mismatch(expected, version));
            }
        }
        let current = events
            .iter()
            .fold(ApplicationState::default(), |s, e| evolve(s, &e.event));
        let decided = decide(command, &current).map_err(application_refused)?;
        if decided.is_empty() {
            let now = current
                .0
                .ok_or_else(|| Problem::internal(&"an application vanished"))?;
            return Ok(Ran {
                view: view(&events, &now, version),
                position: None,
                events,
                records: Vec::new(),
            });
        }
        match command::append_stored(state, &stream, &decided, version, &reach.meta).await {
            Ok((outcome, appended)) => {
                let after = decided
                    .iter()
                    .fold(current, evolve)
                    .0
                    .ok_or_else(|| Problem::internal(&"an application vanished"))?;
                let mut records = Vec::with_capacity(appended.len());
                for a in appended {
                    events.push(a.stored);
                    records.push(a.recorded);
                }
                return Ok(Ran {
                    view: view(&events, &after, outcome.next_version),
                    position: Some(outcome.last_position),
                    events,
                    records,
                });
            }
            Err(command::StoreOrProblem::Store(amtsbuch_infra::StoreError::Append(
                amtsbuch_domain::AppendError::WrongExpectedVersion { .. },
            ))) if attempt < attempts => continue,
            Err(command::StoreOrProblem::Store(amtsbuch_infra::StoreError::Append(
                amtsbuch_domain::AppendError::WrongExpectedVersion { .. },
            ))) if expected.is_some() => {
                return Err(refused(
                    "application-busy",
                    "the application was written to by others at every attempt; try again",
                ))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The form data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataRequest {
    /// The complete data, valid against the pinned form version (personal data, sealed).
    #[schema(value_type = Object)]
    data: Value,
}

/// Replace a draft's data. Invalid data is refused with `422` listing every violation by
/// its JSON pointer into the data (`violations`).
#[utoipa::path(put, path = "/applications/{id}/data", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body = DataRequest,
    responses(
        (status = 200, description = "Saved", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft any more", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "The data violates the pinned form version (`violations`: pointer, keyword, schema_path)", body = DataProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn save_data(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    let req: DataRequest = body::json(body, "{\"data\": {...}}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let (form_state, _) = form(&state, app.pinned.form).await?;
    let pinned = form_state
        .version(app.pinned.version)
        .ok_or_else(|| Problem::internal(&"the pinned form version is missing"))?;
    let command = ApplicationCommand::SaveData {
        applicant: app.applicant,
        data: req.data,
        salt: fresh_salt()?,
        schema: &pinned.schema,
        at: Utc::now(),
    };
    Ok(Json(
        run(&state, &app, &reach, command, expected, events, version)
            .await?
            .0,
    ))
}

/// 32 fresh random bytes: the salt of a data hash.
fn fresh_salt() -> Result<Sha256, Problem> {
    use amtsbuch_domain::seal::SecureRandom;
    let mut salt = [0u8; 32];
    amtsbuch_domain::seal::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| Problem::internal(&"no randomness"))?;
    Ok(Sha256(salt))
}

/// A submission's optional body: the form data to save with it, in the same append.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionRequest {
    /// The complete data, valid against the pinned form version (personal data, sealed),
    /// saved and submitted at once, as `PUT /applications/{id}/data` then this route would;
    /// left out, the data saved before is submitted.
    #[schema(value_type = Option<Object>)]
    data: Option<Value>,
}

/// What a submission receipt proves.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiptView {
    pub application_id: Uuid,
    /// The server's instant of the submission.
    pub submitted_at: String,
    pub form: Uuid,
    pub form_version: u32,
    /// SHA-256 of the form version's canonical JSON.
    pub schema_hash: String,
    /// SHA-256(salt ‖ canonical JSON of the data).
    pub data_hash: String,
    /// The salt of the data hash (hex); the applicant's to keep, since it is erased with
    /// the data.
    pub data_salt: Option<String>,
    /// Attachments: name → `{"sha256", "size"}`.
    #[schema(value_type = Object)]
    pub attachments: Value,
    pub authority: String,
    pub leika: String,
    /// The `ApplicationSubmitted` event: its id, position in the log and leaf hash
    /// (SHA-256(0x00 ‖ record)).
    pub event_id: Uuid,
    pub position: u64,
    pub leaf_hash: String,
    /// The stored record of the event (its exact bytes, as text).
    pub record: String,
    /// A `c2sp.org/tlog-proof` of the event against a signed checkpoint, once one covers
    /// it (null until then; ask again).
    pub tlog_proof: Option<String>,
}

/// The receipt of the submission among `events`; its stored record is taken from
/// `records` (the records a command just appended) or read from the log.
async fn receipt_of(
    state: &AppState,
    events: &[Stored<ApplicationEvent>],
    records: &[amtsbuch_infra::RecordedEvent],
) -> Result<ReceiptView, Problem> {
    let mut salt = None;
    let mut submitted = None;
    for e in events {
        match &e.event {
            ApplicationEvent::DataSaved(s) => {
                salt = s.data.available().map(|d| d.salt.to_string());
            }
            ApplicationEvent::Submitted(s) => submitted = Some((e, s)),
            _ => {}
        }
    }
    let (stored, s) = submitted.ok_or_else(|| {
        refused(
            "application-refused",
            "the application has not been submitted, so there is no receipt",
        )
    })?;
    let recorded = match records.iter().find(|r| r.position == stored.position) {
        Some(recorded) => recorded.clone(),
        None => state
            .store
            .event_by_id(stored.event_id)
            .await?
            .ok_or_else(|| Problem::internal(&"a submission event is missing"))?,
    };
    let tlog_proof = crate::ledger_http::tlog_proof_text(state, &recorded)
        .await
        .ok();
    Ok(ReceiptView {
        application_id: s.application_id.0,
        submitted_at: format_timestamp(&s.submitted_at),
        form: s.pinned.form.0,
        form_version: s.pinned.version,
        schema_hash: s.pinned.schema_hash.to_string(),
        data_hash: s.data_hash.to_string(),
        data_salt: salt,
        attachments: serde_json::to_value(&s.attachments).unwrap_or_default(),
        authority: s.authority.as_str().to_owned(),
        leika: s.leika.to_string(),
        event_id: stored.event_id,
        position: stored.position,
        leaf_hash: amtsbuch_domain::chain::to_hex(&stored.leaf_hash),
        record: String::from_utf8_lossy(&recorded.bytes).into_owned(),
        tlog_proof,
    })
}

/// Submit a draft: its pinned version must be published (not retired), its data saved,
/// every attachment the data names uploaded with that hash, and under the payment policy
/// `before_submission` its fee paid. The answer is the receipt.
///
/// A portal that holds the filled-in form can send it with the submission (`data`): it
/// is checked against the pinned version and sealed exactly as `PUT
/// /applications/{id}/data` does, and saved and submitted in one append — both events or
/// neither; invalid data is refused with `422` and changes nothing.
#[utoipa::path(post, path = "/applications/{id}/submission", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body(content = Option<SubmissionRequest>, description = "Optional: the form data to save and submit at once"),
    responses(
        (status = 201, description = "Submitted; the receipt", body = ReceiptView),
        (status = 400, description = "Not an application id, or a body that is not `{\"data\": {...}}`; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already submitted, no data yet, the form version is retired, or (`payment-outstanding`) the fee due before the submission is not paid yet: `obligations` names each (`reference`: the receivable's stream, to pay through `POST /receivables/{id}/checkout`; `detail`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An attachment is missing or has another hash, or the data sent violates the pinned form version (`violations`: pointer, keyword, schema_path); nothing was stored", body = DataProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn submit(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = application_id(&raw)?;
    let req: SubmissionRequest = body::optional(body, "{\"data\"?: {...}}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let (form_state, _) = form(&state, app.pinned.form).await?;
    let pinned = form_state
        .version(app.pinned.version)
        .ok_or_else(|| Problem::internal(&"the pinned form version is missing"))?;
    let dues = dues(&state, &app).await?;
    let command = match req.data {
        None => ApplicationCommand::Submit {
            applicant: app.applicant,
            schema: &pinned.schema,
            status: pinned.status,
            dues,
            at: Utc::now(),
        },
        Some(data) => ApplicationCommand::SubmitWithData {
            applicant: app.applicant,
            data,
            salt: fresh_salt()?,
            schema: &pinned.schema,
            status: pinned.status,
            dues,
            at: Utc::now(),
        },
    };
    let ran = run_stored(&state, &app, &reach, &command, expected, events, version).await?;
    Ok((
        StatusCode::CREATED,
        Json(receipt_of(&state, &ran.events, &ran.records).await?),
    )
        .into_response())
}

/// What the application owes before its submission: under the `before_submission` policy
/// the obligations the registered modules hold against it (its fee), each settled or not;
/// under another policy nothing. A policy that asks for a fee no module holds leaves the
/// application outstanding.
async fn dues(state: &AppState, app: &Application) -> Result<Dues, Problem> {
    // Only a draft is submitted; the decider refuses anything else on its own.
    if app.responsible.payment != PaymentPolicy::BeforeSubmission
        || app.status != amtsbuch_domain::applications::application::Status::Draft
    {
        return Ok(Dues::Settled);
    }
    let held =
        crate::module::stream_obligations(state, crate::domains::MODULES, &app.id.stream_id())
            .await?;
    let outstanding: Vec<(String, String)> = held
        .iter()
        .filter(|o| !o.settled)
        .map(|o| (o.reference.clone(), o.detail.clone()))
        .collect();
    Ok(if held.is_empty() || !outstanding.is_empty() {
        Dues::Outstanding(outstanding)
    } else {
        Dues::Settled
    })
}

/// The submission receipt, with its tlog-proof once a checkpoint covers the submission.
#[utoipa::path(get, path = "/applications/{id}/receipt", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)")),
    responses(
        (status = 200, description = "The receipt", body = ReceiptView),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not submitted", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn receipt(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Json<ReceiptView>, Problem> {
    let id = application_id(&raw)?;
    command::sealer(&state)?;
    let (events, _, _, _) = reached(&state, &caller, id).await?;
    Ok(Json(receipt_of(&state, &events, &[]).await?))
}

/// Withdraw a submitted application, until it is decided.
#[utoipa::path(post, path = "/applications/{id}/withdrawal", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    responses(
        (status = 200, description = "Withdrawn (withdrawing again changes nothing)", body = ApplicationView),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not submitted, or already decided", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn withdraw(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::Withdraw {
        applicant: app.applicant,
        at: Utc::now(),
    };
    Ok(Json(
        run(&state, &app, &reach, command, expected, events, version)
            .await?
            .0,
    ))
}

/// The applicant's answer to an information request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InformationRequest {
    /// The number of the request answered.
    request: u32,
    /// The answer (personal data, sealed), at most 4000 characters.
    #[schema(value_type = String, min_length = 1, max_length = 4000)]
    message: Message,
}

/// Answer the open information request.
#[utoipa::path(post, path = "/applications/{id}/information", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body = InformationRequest,
    responses(
        (status = 200, description = "Answered", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "No such open request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn provide_information(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    let req: InformationRequest = body::json(body, "{\"request\", \"message\"}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::ProvideInformation {
        applicant: app.applicant,
        request: req.request,
        message: req.message,
        at: Utc::now(),
    };
    Ok(Json(
        run(&state, &app, &reach, command, expected, events, version)
            .await?
            .0,
    ))
}

// ---------------------------------------------------------------------------------------
// The authority's routes
// ---------------------------------------------------------------------------------------

/// The authority acting on the application: its own authority id.
fn official(caller: &Principal) -> Result<amtsbuch_domain::AuthorityId, Problem> {
    caller.authority().cloned().ok_or_else(|| {
        Problem::forbidden("only an authority's official or Fachverfahren acts here")
    })
}

/// The authority's confirmation of receipt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceptionRequest {
    /// The file number (Aktenzeichen), at most 50 characters; no personal data.
    #[schema(value_type = String, example = "AZ 42/2026")]
    file_number: FileNumber,
}

/// Confirm receipt of a submitted application, with the authority's file number.
#[utoipa::path(post, path = "/applications/{id}/reception", tag = "applications",
    security(("bearer" = ["authority", "fachverfahren"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body = ReceptionRequest,
    responses(
        (status = 200, description = "Received (again with the same number: no change)", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Received with another number, or finished", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn receive(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    let req: ReceptionRequest = body::json(body, "{\"file_number\"}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::Receive {
        authority: official(&caller)?,
        file_number: req.file_number,
        at: Utc::now(),
    };
    let (view, _) = run(&state, &app, &reach, command, expected, events, version).await?;
    record_read(&state, &caller, &app, &reach, ReadKind::Application).await?;
    Ok(Json(view))
}

/// An information request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InformationRequestRequest {
    /// What the applicant is asked (personal data, sealed), at most 4000 characters.
    #[schema(value_type = String, min_length = 1, max_length = 4000)]
    message: Message,
    /// Until when: after now, and at most 365 days after it.
    #[serde(deserialize_with = "crate::body::strict::instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    due_at: DateTime<Utc>,
}

/// Ask the applicant for information, with a due date.
#[utoipa::path(post, path = "/applications/{id}/information-requests", tag = "applications",
    security(("bearer" = ["authority", "fachverfahren"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body = InformationRequestRequest,
    responses(
        (status = 201, description = "Requested", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not received yet, a request is open, or finished", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn request_information(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = application_id(&raw)?;
    let req: InformationRequestRequest = body::json(body, "{\"message\", \"due_at\"}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::RequestInformation {
        authority: official(&caller)?,
        message: req.message,
        due_at: req.due_at,
        at: Utc::now(),
    };
    let (view, _) = run(&state, &app, &reach, command, expected, events, version).await?;
    record_read(&state, &caller, &app, &reach, ReadKind::Application).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A decision.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `granted`, `rejected` or `partly_granted`.
    #[schema(value_type = String)]
    outcome: Outcome,
    /// SHA-256 (hex) of the decision document (Bescheid).
    #[schema(value_type = String)]
    document_sha256: Sha256,
}

/// Decide a received application.
#[utoipa::path(post, path = "/applications/{id}/decision", tag = "applications",
    security(("bearer" = ["authority", "fachverfahren"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body = DecisionRequest,
    responses(
        (status = 200, description = "Decided", body = ApplicationView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not received yet, or already decided, withdrawn or closed", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn decide(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    let req: DecisionRequest = body::json(body, "{\"outcome\", \"document_sha256\"}")?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::Decide {
        authority: official(&caller)?,
        outcome: req.outcome,
        document_hash: req.document_sha256,
        at: Utc::now(),
    };
    let (view, _) = run(&state, &app, &reach, command, expected, events, version).await?;
    record_read(&state, &caller, &app, &reach, ReadKind::Application).await?;
    Ok(Json(view))
}

/// Close a decided application.
#[utoipa::path(post, path = "/applications/{id}/closure", tag = "applications",
    security(("bearer" = ["authority", "fachverfahren"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the write is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    responses(
        (status = 200, description = "Closed (closing again changes nothing)", body = ApplicationView),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not decided yet, or withdrawn", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is at another version than `If-Match` or `Expected-Version` names (`version-mismatch`, with `actual_version`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn close(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
    headers: HeaderMap,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let command = ApplicationCommand::Close {
        authority: official(&caller)?,
        at: Utc::now(),
    };
    let (view, _) = run(&state, &app, &reach, command, expected, events, version).await?;
    record_read(&state, &caller, &app, &reach, ReadKind::Application).await?;
    Ok(Json(view))
}

/// One recorded read of an application's personal data.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessView {
    /// Who read, pseudonymous (`authority:<sub>`, `fachverfahren:<sub>`).
    pub reader: String,
    pub authority: String,
    /// `application` or `attachment`.
    pub what: String,
    pub read_at: String,
    /// Where the record of the read is in the log.
    pub position: u64,
    pub event_id: Uuid,
}

/// Who read the application's personal data, and when: for the applicant and the data
/// protection officer.
#[utoipa::path(get, path = "/applications/{id}/accesses", tag = "applications",
    security(("bearer" = ["citizen", "dpo"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)")),
    responses(
        (status = 200, description = "The reads, oldest first", body = Vec<AccessView>),
        (status = 400, description = "Not an application id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Someone else's application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn accesses(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(raw): Path<String>,
) -> Result<Json<Vec<AccessView>>, Problem> {
    let id = application_id(&raw)?;
    command::sealer(&state)?;
    let (events, _, _, _) = reached(&state, &caller, id).await?;
    Ok(Json(
        events
            .iter()
            .filter_map(|e| match &e.event {
                ApplicationEvent::Read(r) => Some(AccessView {
                    reader: r.reader.as_str().to_owned(),
                    authority: r.authority.as_str().to_owned(),
                    what: label(&r.what),
                    read_at: format_timestamp(&r.read_at),
                    position: e.position,
                    event_id: e.event_id,
                }),
                _ => None,
            })
            .collect(),
    ))
}

// ---------------------------------------------------------------------------------------
// The inbox
// ---------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    status: Option<String>,
    leika: Option<String>,
    ars: Option<String>,
    ags: Option<String>,
    submitted_from: Option<String>,
    submitted_to: Option<String>,
    overdue: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

/// One application of an inbox (no personal data).
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxItem {
    pub application_id: Uuid,
    pub status: String,
    pub leika: String,
    /// The applicant's municipality key.
    pub ags: String,
    pub submitted_at: String,
    pub due_at: Option<String>,
    pub file_number: Option<String>,
}

/// A page of an inbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub applications: Vec<InboxItem>,
    /// Pass as `after` for the next page; null on the last.
    pub next_after: Option<String>,
}

fn instant(name: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    raw.map(|s| crate::body::instant(name, s)).transpose()
}

/// An authority's inbox: its applications from their submission on (never a draft),
/// oldest first, filtered. Follows the log a moment behind.
#[utoipa::path(get, path = "/applications", tag = "applications",
    security(("bearer" = ["authority", "fachverfahren"])),
    params(
        ("status" = Option<String>, Query, description = "`submitted`, `received`, `in_progress`, `information_requested`, `decided`, `closed`, `withdrawn`"),
        ("leika" = Option<String>, Query, description = "A LeiKa key"),
        ("ars" = Option<String>, Query, description = "A place's ARS (12 digits)"),
        ("ags" = Option<String>, Query, description = "An AGS or a prefix of one (2 to 8 digits)"),
        ("submitted_from" = Option<String>, Query, format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339; submitted at or after"),
        ("submitted_to" = Option<String>, Query, format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339; submitted before"),
        ("overdue" = Option<bool>, Query, description = "`true`: only information requests past their due date"),
        ("after" = Option<String>, Query, description = "The `next_after` of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 200 (default 50)")),
    responses(
        (status = 200, description = "A page of the inbox", body = InboxPage),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn inbox(
    State(state): State<AppState>,
    Caller(caller): Caller,
    query: Result<Query<InboxQuery>, QueryRejection>,
) -> Result<Json<InboxPage>, Problem> {
    let Query(q) = query.map_err(query_problem)?;
    let bad = |detail: &str| Problem::bad_request("invalid-query", detail.to_owned());
    let authority = official(&caller)?;
    let scope = InboxScope {
        authority: authority.as_str().to_owned(),
        regions: caller.has(Role::Authority).then(|| {
            caller
                .regions()
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect()
        }),
        services: caller.has(Role::Fachverfahren).then(|| {
            caller
                .services()
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect()
        }),
    };
    let status = q
        .status
        .as_deref()
        .map(|s| {
            amtsbuch_domain::applications::application::Status::parse(s)
                .ok_or_else(|| bad("status is one of the statuses of a submitted application"))
        })
        .transpose()?;
    let leika = q.leika.as_deref().map(|l| leika_of(Some(l))).transpose()?;
    let tenant_prefix = match (q.ars.as_deref(), q.ags.as_deref()) {
        (None, None) => None,
        (Some(ars), None) => Some(place_of(Some(ars), None)?.ags().to_owned()),
        (None, Some(ags))
            if (2..=8).contains(&ags.len()) && ags.bytes().all(|c| c.is_ascii_digit()) =>
        {
            Some(ags.to_owned())
        }
        (None, Some(_)) => return Err(bad("ags is an AGS or a prefix of one, 2 to 8 digits")),
        _ => return Err(bad("filter the place by at most one of ars and ags")),
    };
    let overdue = match q.overdue.as_deref() {
        None | Some("false") => None,
        Some("true") => Some(Utc::now()),
        Some(_) => return Err(bad("overdue is true or false")),
    };
    let after = q
        .after
        .as_deref()
        .map(|a| {
            let (at, id) = a
                .split_once('|')
                .ok_or_else(|| bad("after is the next_after of a page"))?;
            let at = instant("after", Some(at))?
                .ok_or_else(|| bad("after is the next_after of a page"))?;
            let id = Uuid::parse_str(id).map_err(|_| bad("after is the next_after of a page"))?;
            Ok::<_, Problem>((at, ApplicationId(id)))
        })
        .transpose()?;
    let limit = match q.limit.as_deref() {
        None => 50,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_INBOX_PAGE).contains(n))
            .ok_or_else(|| bad("limit is 1 to 200"))?,
    };
    let filter = InboxFilter {
        status,
        leika: leika.map(|l| l.to_string()),
        tenant_prefix,
        submitted_from: instant("submitted_from", q.submitted_from.as_deref())?,
        submitted_to: instant("submitted_to", q.submitted_to.as_deref())?,
        overdue_at: overdue,
        after,
        limit,
    };
    let db = amtsbuch_projections::db::ReadDb::new(&state.store);
    let rows = amtsbuch_projections::applications::inbox(&db, &scope, &filter)
        .await
        .map_err(|e| Problem::internal(&e))?;
    let next_after = (rows.len() == limit)
        .then(|| {
            rows.last()
                .map(|r| format!("{}|{}", format_timestamp(&r.submitted_at), r.application_id))
        })
        .flatten();
    Ok(Json(InboxPage {
        applications: rows
            .into_iter()
            .map(|r| InboxItem {
                application_id: r.application_id.0,
                status: r.status.as_str().to_owned(),
                leika: r.leika,
                ags: r.tenant,
                submitted_at: format_timestamp(&r.submitted_at),
                due_at: r.due_at.as_ref().map(format_timestamp),
                file_number: r.file_number,
            })
            .collect(),
        next_after,
    }))
}
