//! Events and appointment slots: an authority schedules them in its procedures, citizens
//! register for them and cancel their own registrations.
//!
//! Never more registrations are confirmed than a gathering has places, also when many
//! arrive at once on several API nodes: every registration is decided in the gathering's
//! one stream and appended with the stream's version as the expected version, so a
//! registration decided on a state another node has already moved past is refused by the
//! store and decided again. Registrations crowd one stream by nature, so they are decided
//! again more often than the command path's default before the caller hears `409`.
//!
//! Deciding opens nobody's data: the gathering is folded from the plain parts of its
//! events (who holds which place, by pseudonymous id), the registrants' sealed names and
//! contacts left closed; only a new registrant's data is sealed, as it is appended.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::participation::gathering::{
    Contact, GatheringCommand, GatheringError, GatheringEvent, GatheringKind, GatheringState,
    Place, Registrant,
};
use amtsbuch_domain::participation::{
    GatheringId, ParticipantId, Pseudonym, RegistrationId, Title,
};
use amtsbuch_domain::{AppendError, Decider, ExpectedVersion};
use amtsbuch_infra::StoreError;
use amtsbuch_projections::db::ReadDb;

use super::public::procedure_id;
use crate::auth::Caller;
use crate::body;
use crate::command::{append, read_models_current, Executed, Meta, StoreOrProblem};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// How often a registration is decided again when other registrations got there first.
const CONTENDED_ATTEMPTS: usize = 60;

fn gathering_problem(e: GatheringError) -> Problem {
    use GatheringError as E;
    let status = match &e {
        E::NotScheduled | E::NoRegistration => return Problem::not_found(e.to_string()),
        // Another participant's registration does not exist for the caller (404, as a
        // missing one), so that a refusal tells nobody who registered for what.
        E::NotTheRegistrant => return Problem::not_found("no such registration"),
        E::Period | E::Capacity => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::CONFLICT,
    };
    Problem::new(
        status,
        "registration-refused",
        "The gathering does not allow this",
        e.to_string(),
    )
}

/// The gathering's state and its stream's version, folded without opening anything
/// sealed: the registrants' names and contacts read as erased. Places, the waiting list
/// and who may cancel what depend only on the events' plain parts (registration ids,
/// pseudonymous registrant ids, places), so the decision is the one a fold with every
/// registrant opened would give — without reading every registrant's key from the vault
/// and decrypting every registrant's data for each registration.
async fn closed_fold(state: &AppState, id: GatheringId) -> Result<(GatheringState, u64), Problem> {
    crate::command::current_unopened(state, &id.stream_id()).await
}

/// Runs a command on a gathering, decided on its state folded without opening anything
/// sealed ([`closed_fold`]) and appended with the stream's version as the expected version;
/// decided again (after a short random pause) as long as other commands on the same
/// gathering keep getting there first. A new registrant's data is sealed as the command
/// path seals it.
async fn execute_contended(
    state: &AppState,
    id: GatheringId,
    command: &GatheringCommand,
    meta: &Meta,
) -> Result<Executed<GatheringState, GatheringEvent>, Problem> {
    let stream = id.stream_id();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (current, version) = closed_fold(state, id).await?;
        let events = GatheringState::decide(command, &current).map_err(gathering_problem)?;
        if events.is_empty() {
            return Ok(Executed {
                state: current,
                events,
                outcome: None,
                version,
            });
        }
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        match append(state, &stream, &events, expected, meta).await {
            Ok(outcome) => {
                let after = events.iter().fold(current, GatheringState::evolve);
                return Ok(Executed {
                    state: after,
                    events,
                    version: outcome.next_version,
                    outcome: Some(outcome),
                });
            }
            Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
                ..
            }))) if attempt < CONTENDED_ATTEMPTS => {
                let jitter = u64::from(Uuid::now_v7().as_bytes()[15] % 16);
                tokio::time::sleep(Duration::from_millis(1 + jitter)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn participant(caller: &Principal) -> Result<ParticipantId, Problem> {
    caller
        .account()
        .filter(|_| caller.has(Role::Citizen))
        .and_then(|a| Uuid::parse_str(a).ok())
        .map(ParticipantId)
        .ok_or_else(|| Problem::forbidden("only a participant's own account registers"))
}

/// Schedule an event or an appointment slot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatheringRequest {
    /// event (with a waiting list) or slot (full means full)
    #[schema(value_type = String)]
    kind: GatheringKind,
    #[schema(value_type = String)]
    title: Title,
    #[serde(deserialize_with = "crate::body::strict::instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    starts_at: DateTime<Utc>,
    #[serde(deserialize_with = "crate::body::strict::instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    ends_at: DateTime<Utc>,
    capacity: u32,
}

/// Schedule an event or appointment slot in one of the authority's procedures.
#[utoipa::path(post, path = "/participations/{id}/gatherings", tag = "participation",
    security(("bearer" = ["authority"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = GatheringRequest,
    responses(
        (status = 201, description = "Scheduled; `gathering_id` names it", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Another authority's procedure, or one outside the caller's regions", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such procedure, or a draft the caller does not organise", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "A period in the past or empty, or a capacity outside 1 to 2000", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn schedule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let pid = procedure_id(&id)?;
    let req: GatheringRequest = body::json(
        raw,
        "{\"kind\", \"title\", \"starts_at\", \"ends_at\", \"capacity\"}",
    )?;
    if !caller.has(Role::Authority) {
        return Err(Problem::forbidden("only an authority schedules gatherings"));
    }
    let (found, _) = super::folded::procedure(&state, pid).await?;
    let procedure = found
        .procedure()
        .ok_or_else(|| Problem::not_found("no such participation procedure"))?;
    let meta = super::organiser::organising(&caller, procedure)?;
    let gid = GatheringId(Uuid::now_v7());
    let command = GatheringCommand::Schedule {
        gathering_id: gid,
        procedure_id: pid,
        kind: req.kind,
        title: req.title,
        starts_at: req.starts_at,
        ends_at: req.ends_at,
        capacity: req.capacity,
        at: Utc::now(),
    };
    execute_contended(&state, gid, &command, &meta).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "procedure_id": pid.to_string(), "gathering_id": gid.to_string() })),
    )
        .into_response())
}

/// Register for a gathering.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    gathering_id: Uuid,
    /// The registrant's name (sealed).
    #[schema(value_type = String)]
    name: Pseudonym,
    /// An e-mail address or telephone number (sealed).
    #[schema(value_type = Option<String>)]
    contact: Option<Contact>,
}

/// Register for an event or appointment slot of a procedure: confirmed while places are
/// free, then on the waiting list (an event) or refused (a slot).
#[utoipa::path(post, path = "/participations/{id}/registrations", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The procedure id")),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered; `place` is confirmed or waiting", body = Object),
        (status = 400, description = "A malformed body", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such gathering in this procedure", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already registered, started, a full slot, an event whose waiting list (500) is full, or a procedure that is not announced (a draft, evaluated, decided, archived or cancelled)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured: the registrant's data cannot be sealed", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn register(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let pid = procedure_id(&id)?;
    let registrant = participant(&caller)?;
    let req: RegisterRequest = body::json(raw, "{\"gathering_id\", \"name\", \"contact\"?}")?;
    let gid = GatheringId(req.gathering_id);
    let (found, _) = closed_fold(&state, gid).await?;
    if found.gathering().is_none_or(|g| g.procedure_id != pid) {
        return Err(Problem::not_found("no such gathering in this procedure"));
    }
    // A gathering takes registrations only while its procedure is announced (or active):
    // not while a draft nobody has been told of, nor once it is evaluated, decided,
    // archived or cancelled.
    let (procedure, _) = super::folded::procedure(&state, pid).await?;
    let status = procedure.procedure().map(|p| p.status);
    if status != Some(amtsbuch_domain::participation::procedure::Status::Announced) {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "registration-refused",
            "The gathering takes no registrations",
            "a gathering takes registrations only while its procedure is announced",
        ));
    }
    let registration_id = RegistrationId(Uuid::now_v7());
    let command = GatheringCommand::Register {
        registration_id,
        registrant,
        data: Registrant {
            name: req.name,
            contact: req.contact,
        },
        at: Utc::now(),
    };
    let meta = Meta::acting_as(&caller, Role::Citizen);
    let done = execute_contended(&state, gid, &command, &meta).await?;
    let place = done
        .state
        .gathering()
        .and_then(|g| g.registrations.iter().find(|r| r.id == registration_id))
        .map(|r| r.place)
        .ok_or_else(|| Problem::internal(&"a registration without a place"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "registration_id": registration_id.to_string(),
            "gathering_id": gid.to_string(),
            "place": if place == Place::Confirmed { "confirmed" } else { "waiting" },
        })),
    )
        .into_response())
}

/// Cancel one's own registration; the first on the waiting list moves up.
#[utoipa::path(delete, path = "/registrations/{id}", tag = "participation",
    security(("bearer" = ["citizen"])),
    params(("id" = String, Path, description = "The registration id")),
    responses(
        (status = 200, description = "Cancelled; `confirmed` names the registration that moved up, if any", body = Object),
        (status = 403, description = "Not a participant's account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such registration, or another participant's", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn cancel(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let registrant = participant(&caller)?;
    let registration_id = Uuid::parse_str(&id)
        .ok()
        .filter(|u| id == u.hyphenated().to_string())
        .map(RegistrationId)
        .ok_or_else(|| Problem::not_found("no such registration"))?;
    read_models_current(&state, &[amtsbuch_projections::participation::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let row = amtsbuch_projections::participation::registration(&db, &registration_id.to_string())
        .await?
        .ok_or_else(|| Problem::not_found("no such registration"))?;
    let gid = Uuid::parse_str(&row.gathering_id)
        .map(GatheringId)
        .map_err(|e| Problem::internal(&e))?;
    let command = GatheringCommand::Cancel {
        registration_id,
        by: registrant,
        at: Utc::now(),
    };
    let meta = Meta::acting_as(&caller, Role::Citizen);
    let done = execute_contended(&state, gid, &command, &meta).await?;
    let confirmed = done.events.iter().find_map(|e| match e {
        GatheringEvent::Confirmed(c) => Some(c.registration_id.to_string()),
        _ => None,
    });
    Ok(Json(json!({
        "registration_id": registration_id.to_string(),
        "cancelled": true,
        "confirmed": confirmed,
    })))
}
