//! Attachments of an application: uploaded to the draft, one per upload element of the
//! form, at most [`MAX_ATTACHMENT_BYTES`] (10 MiB) each and
//! [`MAX_APPLICATION_ATTACHMENT_BYTES`] (25 MiB) together.
//!
//! The content never enters the log: it is sealed (AES-256-GCM) under the application's
//! key — the key its form data and messages are sealed under — and kept in the table
//! `applications_attachment_contents`, one row per application and SHA-256. The log holds
//! `AttachmentAdded` with the attachment's SHA-256, size and media type (the file name
//! sealed), and the submission names every attachment by hash and size. Destroying the
//! application's key (an expired draft, the applicant's erasure) makes the content
//! unreadable; the rows are deleted then too.
//!
//! Only the content an element names is kept: a replaced content's row is deleted once the
//! replacement is appended (unless another element names the same content), and a row
//! stored for an upload the append refuses (`409`, `412`) is deleted again.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde_json::Value;
use uuid::Uuid;

use amtsbuch_domain::applications::application::{
    sealing_subject, ApplicationCommand, AttachmentRef, FileName, MediaType, MAX_ATTACHMENT_BYTES,
};
use amtsbuch_domain::applications::{ApplicationId, Sha256};
use amtsbuch_domain::seal::Envelope;
use amtsbuch_domain::{EventType, StreamId};
use amtsbuch_projections::db::ReadDb;

use super::forms::form;
use super::lifecycle::{application_id, check_version, reached, run, ApplicationView};
use crate::auth::Caller;
use crate::command;
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// The envelope the content of an attachment is sealed for: the application's stream, an
/// id derived from the content's hash, and a type of its own, so that the sealed content
/// opens for this application and this hash only.
fn content_envelope<'a>(
    stream: &'a StreamId,
    sha256: &Sha256,
    event_type: &'a EventType,
) -> Envelope<'a> {
    let mut id = [0u8; 16];
    id.copy_from_slice(&sha256.0[..16]);
    Envelope {
        event_id: Uuid::from_bytes(id),
        stream_id: stream,
        event_type,
    }
}

/// The most the attachments an application names may hold together, in bytes (25 MiB).
pub const MAX_APPLICATION_ATTACHMENT_BYTES: u64 = 25 * 1024 * 1024;

fn db_problem(e: impl std::fmt::Display) -> Problem {
    Problem::internal(&e)
}

/// Seals and keeps an attachment's content, unless it is kept already; whether this call
/// stored it.
async fn store_content(
    state: &AppState,
    id: ApplicationId,
    sha256: &Sha256,
    content: &[u8],
) -> Result<bool, Problem> {
    let sealer = command::sealer(state)?;
    let stream = id.stream_id();
    let event_type = EventType::parse("AttachmentContent").map_err(|e| Problem::internal(&e))?;
    let envelope = content_envelope(&stream, sha256, &event_type);
    let section = sealer
        .seal_value(
            &sealing_subject(id).into(),
            &envelope,
            &Value::String(amtsbuch_domain::base64::encode(content)),
        )
        .await
        .map_err(command::sealer_problem)?;
    let sealed = serde_json::to_string(&section).map_err(|e| Problem::internal(&e))?;
    let stored = ReadDb::new(&state.store)
        .execute(
            "INSERT INTO applications_attachment_contents (application_id, sha256, size, sealed, \
             stored_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (application_id, sha256) DO NOTHING",
            &[
                id.to_string().into(),
                sha256.to_string().into(),
                (content.len() as i64).into(),
                sealed.into(),
                Utc::now().into(),
            ],
        )
        .await
        .map_err(db_problem)?;
    Ok(stored > 0)
}

/// Deletes the sealed content `sha256` of an application.
async fn delete_content(
    state: &AppState,
    id: ApplicationId,
    sha256: &Sha256,
) -> Result<(), Problem> {
    ReadDb::new(&state.store)
        .execute(
            "DELETE FROM applications_attachment_contents WHERE application_id = $1 AND sha256 = $2",
            &[id.to_string().into(), sha256.to_string().into()],
        )
        .await
        .map_err(db_problem)?;
    Ok(())
}

/// Deletes the sealed content of every attachment of an application.
pub(crate) async fn delete_all(state: &AppState, id: ApplicationId) -> Result<(), Problem> {
    ReadDb::new(&state.store)
        .execute(
            "DELETE FROM applications_attachment_contents WHERE application_id = $1",
            &[id.to_string().into()],
        )
        .await
        .map_err(db_problem)?;
    Ok(())
}

/// The media type of the upload: `Content-Type` without its parameters, in lowercase;
/// `application/octet-stream` when none is given.
fn media_type(headers: &HeaderMap) -> Result<MediaType, Problem> {
    let Some(raw) = headers.get(header::CONTENT_TYPE) else {
        return MediaType::parse("application/octet-stream").map_err(|e| Problem::internal(&e));
    };
    let text = raw
        .to_str()
        .ok()
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    MediaType::parse(&text).map_err(|e| Problem::bad_request("invalid-media-type", e.to_string()))
}

/// The file name the upload gives in `Content-Disposition` (`attachment; filename="…"`),
/// else the element's name.
fn file_name(headers: &HeaderMap, name: &str) -> Result<FileName, Problem> {
    let given = headers
        .get(header::CONTENT_DISPOSITION)
        .map(|v| {
            v.to_str()
                .map_err(|_| {
                    Problem::bad_request(
                        "invalid-file-name",
                        "Content-Disposition must be visible ASCII: attachment; filename=\"name.pdf\"",
                    )
                })
                .map(|v| {
                    v.split(';')
                        .map(str::trim)
                        .find_map(|p| p.strip_prefix("filename="))
                        .map(|f| f.trim_matches('"').to_owned())
                })
        })
        .transpose()?
        .flatten();
    let chosen = given.unwrap_or_else(|| name.to_owned());
    FileName::parse(&chosen).map_err(|e| Problem::bad_request("invalid-file-name", e.to_string()))
}

/// Upload (or replace) the attachment of the draft's upload element `name`. The body is the
/// file itself (at most 10 MiB), its media type in `Content-Type`, its file name in
/// `Content-Disposition` (`attachment; filename="nachweis.pdf"`). The content is sealed
/// under the application's key; the log records its SHA-256 and size. To be submitted, the
/// data must name the attachment by that SHA-256 in the element's property.
#[utoipa::path(put, path = "/applications/{id}/attachments/{name}", tag = "applications",
    security(("bearer" = ["citizen"])),
    params(
        ("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The application id (a lowercase UUID)"),
        ("name" = String, Path, description = "The upload element's property name in the pinned form version"),
        ("If-Match" = Option<String>, Header, pattern = "^(\\*|(W/)?\"[0-9]{1,15}\")$", description = "The application's version as an entity tag (`\"3\"`: its `version`, the `ETag` of `GET /applications/{id}`); the upload is refused with `412` when the application is at another version"),
        ("Expected-Version" = Option<String>, Header, pattern = "^(any|[0-9]{1,15})$", description = "The application's version as a number, as `If-Match`")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file, 1 byte to 10 MiB, and the application's attachments at most 25 MiB together (this one counted instead of the one it replaces); any media type, named in `Content-Type`"),
    responses(
        (status = 200, description = "Stored; the application with the attachment's SHA-256 and size", body = ApplicationView),
        (status = 400, description = "Invalid id, media type or file name", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such application (or someone else's), or the form declares no upload element of that name (`unknown-attachment`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not a draft any more", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 412, description = "The application is not at the version `If-Match` or `Expected-Version` names (`version-mismatch`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 10 MiB (`attachment-too-large`), or the application's attachments would hold more than 25 MiB together (`attachments-too-large`); nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 422, description = "An empty file (`empty-attachment`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((raw, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ApplicationView>, Problem> {
    let id = application_id(&raw)?;
    let content = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Problem::bad_request("invalid-body", e.body_text())
        }
    })?;
    if content.len() as u64 > MAX_ATTACHMENT_BYTES {
        return Err(too_large());
    }
    if content.is_empty() {
        return Err(super::unprocessable(
            "empty-attachment",
            "an attachment has at least one byte",
        ));
    }
    let media_type = media_type(&headers)?;
    let file_name = file_name(&headers, &name)?;
    command::sealer(&state)?;
    let (events, app, reach, version) = reached(&state, &caller, id).await?;
    let expected = check_version(&headers, &events, version)?;
    let (form_state, _) = form(&state, app.pinned.form).await?;
    let pinned = form_state
        .version(app.pinned.version)
        .ok_or_else(|| Problem::internal(&"the pinned form version is missing"))?;
    if !pinned.schema.uploads().contains_key(&name) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-attachment",
            "No such upload element",
            format!(
                "the form version the application is pinned to declares no upload element {name:?}"
            ),
        ));
    }
    let attachment = AttachmentRef {
        sha256: Sha256::of(&content),
        size: content.len() as u64,
    };
    // The other elements' contents and this one together stay within the cap.
    let others: u64 = app
        .attachments
        .iter()
        .filter(|(element, _)| **element != name)
        .map(|(_, a)| a.size)
        .sum();
    if others + attachment.size > MAX_APPLICATION_ATTACHMENT_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "attachments-too-large",
            "The attachments are too large together",
            format!(
                "an application's attachments hold at most {MAX_APPLICATION_ATTACHMENT_BYTES} bytes (25 MiB) together; its other attachments hold {others}, this one {}",
                attachment.size
            ),
        ));
    }
    // The content this upload replaces, unless another element names it too.
    let replaced = app
        .attachments
        .get(&name)
        .map(|a| a.sha256)
        .filter(|old| *old != attachment.sha256)
        .filter(|old| {
            !app.attachments
                .iter()
                .any(|(element, a)| *element != name && a.sha256 == *old)
        });
    let command = ApplicationCommand::AddAttachment {
        applicant: app.applicant,
        name,
        attachment: attachment.clone(),
        media_type,
        file_name,
        schema: &pinned.schema,
        at: Utc::now(),
    };
    // Decide first, so that nothing is kept for an upload the rules refuse; the content
    // is stored before the event that references it is appended.
    amtsbuch_domain::applications::application::decide(
        &command,
        &amtsbuch_domain::applications::application::ApplicationState(Some(app.clone())),
    )
    .map_err(super::lifecycle::application_refused)?;
    let stored = store_content(&state, id, &attachment.sha256, &content).await?;
    match run(&state, &app, &reach, command, expected, events, version).await {
        Ok((view, _)) => {
            if let Some(old) = replaced {
                delete_content(&state, id, &old).await?;
            }
            Ok(Json(view))
        }
        Err(refused) => {
            // A refusal (4xx) appended nothing, so what this upload stored goes again; after
            // a 5xx the append may have happened, and the row stays.
            if stored && refused.status.is_client_error() {
                delete_content(&state, id, &attachment.sha256).await?;
            }
            Err(refused)
        }
    }
}

fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "attachment-too-large",
        "The attachment is too large",
        format!("an attachment is at most {MAX_ATTACHMENT_BYTES} bytes (10 MiB)"),
    )
}
