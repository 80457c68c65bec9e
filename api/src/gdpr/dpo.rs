//! The data protection officer's routes: replay a subject's consents as of any instant,
//! the disclosures made under each consent, the Art. 15 access export, Art. 17 erasure,
//! the Art. 30 overview, consents expiring soon — and retention holds, which an erasure
//! must respect.
//!
//! Replays and exports are answered from the events themselves (the read models only say
//! which streams and positions belong to a subject), and every event they show carries its
//! position and leaf hash, so the answer can be checked against the signed log.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::event::{Personal, SubjectId};
use amtsbuch_domain::gdpr::account::{AccountCommand, AccountState, DeleteAccount, DeletionReason};
use amtsbuch_domain::gdpr::consent::{
    ConsentCommand, ConsentState, ControllerReason, RevokeConsent,
};
use amtsbuch_domain::gdpr::retention::{
    self, HoldCommand, HoldId, HoldReason, HoldState, PlaceHold, ReleaseHold, RetentionEvent,
    SubjectErased,
};
use amtsbuch_domain::gdpr::AccountId;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::seal::KeyId;
use amtsbuch_domain::{AppendError, ExpectedVersion, StreamId};
use amtsbuch_infra::vault::SubjectStatus;
use amtsbuch_infra::{EventStore, StoreError};
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::gdpr as models;
use futures_util::future::BoxFuture;
use serde_json::Map;

use super::account_id;
use crate::auth::Caller;
use crate::body;
use crate::command::{
    self, append, execute, lock_subject, read_models_current, refused, Meta, StoreOrProblem,
};
use crate::domains::MODULES;
use crate::dto::ProblemDoc;
use crate::module::{ExportPart, ProcessingPart};
use crate::problem::Problem;
use crate::AppState;

/// A failed read-model query: the database's failure is the core's (`503` when it is
/// unreachable), an unreadable consent record an internal error.
pub(crate) fn query_error(e: impl Into<models::GdprQueryError>) -> Problem {
    match e.into() {
        models::GdprQueryError::Db(db) => db.into(),
        unreadable => Problem::internal(&unreadable),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AsOfQuery {
    as_of: Option<String>,
}

fn instant(raw: Option<&str>) -> Result<DateTime<Utc>, Problem> {
    match raw {
        None => Ok(Utc::now()),
        Some(s) => crate::body::instant("as_of", s),
    }
}

/// A subject's consents as they stood at an instant.
#[utoipa::path(get, path = "/dpo/subjects/{subject}/consents", tag = "dpo",
    security(("bearer" = ["dpo"])),
    params(
        ("subject" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The data subject (account id)"),
        ("as_of" = Option<String>, Query, format = DateTime, pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$", description = "RFC 3339 instant (default: now)")),
    responses(
        (status = 200, description = "Each consent given by then: status (W3C DPV), scope and term in force, how it ended, and the events effective by then with positions and leaf hashes", body = Object),
        (status = 400, description = "Invalid subject or instant", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn consent_history(
    State(state): State<AppState>,
    Path(subject): Path<String>,
    query: Result<Query<AsOfQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let subject = account_id(&subject)?;
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let as_of = instant(q.as_of.as_deref())?;
    let db = ReadDb::new(&state.store);
    let history = models::consent_history(&db, subject, as_of)
        .await
        .map_err(query_error)?;
    Ok(Json(json!({
        "subject": subject.to_string(),
        "as_of": format_timestamp(&as_of),
        "consents": history.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
    })))
}

/// The disclosures of a subject's data: granted under each consent, under another legal
/// basis, and denied.
#[utoipa::path(get, path = "/dpo/subjects/{subject}/disclosures", tag = "dpo",
    security(("bearer" = ["dpo"])),
    params(("subject" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The data subject (account id)")),
    responses(
        (status = 200, description = "`under_consent` (by consent id), `other_basis`, `denied`; each in log order with its position", body = Object),
        (status = 400, description = "Invalid subject", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not catch up with the log in time (`read-models-behind`); retry", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn disclosures(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Json<Value>, Problem> {
    let subject = account_id(&subject)?;
    read_models_current(&state, &[models::disclosures::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let found = models::disclosures_by_consent(&db, subject)
        .await
        .map_err(query_error)?;
    let mut out = found.to_json();
    if let Some(o) = out.as_object_mut() {
        o.insert("subject".into(), json!(subject.to_string()));
    }
    Ok(Json(out))
}

/// Art. 15: everything the log holds about a subject, personal data decrypted (or marked
/// erased), each event with its position and leaf hash.
#[utoipa::path(get, path = "/dpo/subjects/{subject}/export", tag = "dpo",
    security(("bearer" = ["dpo"])),
    params(("subject" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The data subject (account id)")),
    responses(
        (status = 200, description = "The access export (JSON)", body = Object),
        (status = 400, description = "Invalid subject", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured, or the read models did not catch up with the log in time (`read-models-behind`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn export(
    State(state): State<AppState>,
    Path(subject): Path<String>,
) -> Result<Json<Value>, Problem> {
    let subject = account_id(&subject)?;
    command::sealer(&state)?;
    Ok(Json(
        crate::module::subject_export(&state, MODULES, subject.into()).await?,
    ))
}

/// The GDPR domain's part of the Art. 15 export: the account, its consents now, the
/// disclosures and retention holds, when it was erased, and every event that concerns the
/// subject, with its personal data decrypted (or marked erased), its position and its
/// leaf hash.
pub const EXPORT: ExportPart = ExportPart {
    read_models: &[
        models::subjects::NAME,
        models::disclosures::NAME,
        models::retention::NAME,
        models::accounts::NAME,
    ],
    build: export_part,
};

fn export_part(
    state: &AppState,
    subject: SubjectId,
    now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Map<String, Value>, Problem>> {
    Box::pin(async move {
        let subject = AccountId(subject.0);
        let sealer = command::sealer(state)?;
        let db = ReadDb::new(&state.store);
        let positions = models::subject_positions(&db, subject)
            .await
            .map_err(query_error)?;
        let mut events = Vec::with_capacity(positions.len());
        for p in positions {
            let Some(e) = state.store.read_all(p - 1, 1).await?.pop() else {
                continue;
            };
            let record = e.record().map_err(|err| Problem::internal(&err))?;
            let personal = match sealer.open_section(&record).await {
                Ok(None) => None,
                Ok(Some(Personal::Available(v))) => Some(v),
                Ok(Some(Personal::Erased)) => Some(json!({ "erased": true })),
                Err(err) => return Err(command::sealer_problem(err)),
            };
            let mut item = json!({
                "position": e.position,
                "event_id": record.event_id,
                "stream": record.stream_id.as_str(),
                "version": record.stream_version,
                "type": record.event_type.as_str(),
                "occurred_at": format_timestamp(&record.occurred_at),
                "recorded_at": format_timestamp(&record.recorded_at),
                "data": record.data,
                "leaf_hash": amtsbuch_domain::chain::to_hex(&e.leaf_hash),
            });
            if let (Some(p), Some(o)) = (personal, item.as_object_mut()) {
                o.insert("personal".into(), p);
            }
            events.push(item);
        }
        let (account_state, version) =
            command::current::<AccountState>(state, &subject.stream_id()).await?;
        let account = match account_state.account() {
            Some(_) => serde_json::to_value(super::accounts::view_of(&account_state, version)?)
                .unwrap_or(Value::Null),
            None => Value::Null,
        };
        let consents = super::consents::subject_consents(state, &subject).await?;
        let erasure = models::erasure(&db, subject).await.map_err(query_error)?;
        let part = json!({
            "account": account,
            "consents": consents.iter().map(|c| super::consents::consent_view(c, now)).collect::<Vec<_>>(),
            "disclosures": models::disclosures_by_consent(&db, subject).await.map_err(query_error)?.to_json(),
            "retention_holds": models::holds_of(&db, subject).await.map_err(query_error)?.iter().map(|h| h.to_json()).collect::<Vec<_>>(),
            "erased_at": erasure.map(|e| format_timestamp(&e.erased_at)),
            "events": events,
        });
        match part {
            Value::Object(members) => Ok(members),
            _ => Err(Problem::internal(&"the export part is not an object")),
        }
    })
}

/// Art. 17: erase a subject — unless a retention duty forbids it.
#[utoipa::path(post, path = "/dpo/subjects/{subject}/erasure", tag = "dpo",
    security(("bearer" = ["dpo"])),
    params(("subject" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The data subject (account id)")),
    responses(
        (status = 200, description = "Erased (or erased before): consents revoked, account deleted, keys destroyed, `SubjectErased` appended", body = Object),
        (status = 400, description = "Invalid subject", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The service never knew the subject (no account, consent or sealed data); nothing was erased", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A retention hold forbids erasure now (`retention-hold`); `holds` lists each with its end date", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured, or the read models did not catch up with the log in time (`read-models-behind`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn erase(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(subject): Path<String>,
) -> Result<Json<Value>, Problem> {
    let subject = account_id(&subject)?;
    let outcome = erase_subject(&state, subject, Erasure::Requested, &Meta::of(&caller)).await?;
    Ok(Json(outcome))
}

/// Why a subject is erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erasure {
    /// A data protection officer carries out an erasure (the subject's request, or the
    /// controller's decision).
    Requested,
    /// A temporary identification expired.
    TemporaryExpired,
}

/// Erase a subject: check the retention holds, end its consents, delete its account, destroy
/// its data keys, and record `SubjectErased`. Every step is safe to repeat, so an erasure
/// interrupted half-way is completed by running it again.
pub async fn erase_subject(
    state: &AppState,
    subject: AccountId,
    why: Erasure,
    meta: &Meta,
) -> Result<Value, Problem> {
    let sealer = command::sealer(state)?;
    // Under the subject's lock no consent of it changes and no hold is placed meanwhile,
    // and every instant recorded below is later than what was committed before.
    let guard = lock_subject(state, subject.into()).await?;
    // A hold placed, or an erasure finished, a moment ago must be seen.
    read_models_current(state, &[models::retention::NAME, models::accounts::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let now = guard.now();
    if let Some(done) = models::erasure(&db, subject).await.map_err(query_error)? {
        return Ok(json!({
            "subject": subject.to_string(),
            "erased_at": format_timestamp(&done.erased_at),
            "already_erased": true,
        }));
    }
    let holds = models::active_holds(&db, subject, now)
        .await
        .map_err(query_error)?;
    // The duties of every module (an open procedure, a record kept for a period) count
    // as much as the holds placed through `/retention-holds`.
    let module_holds = crate::module::subject_holds(state, MODULES, subject.into(), now).await?;
    if !holds.is_empty() || !module_holds.is_empty() {
        return Err(retention_problem(subject, &holds, &module_holds));
    }

    let consents = super::consents::subject_consents(state, &subject).await?;
    let (current, version) = command::current::<AccountState>(state, &subject.stream_id()).await?;
    let keys = sealer
        .vault()
        .status(&super::vault_subject(subject))
        .await
        .map_err(|e| command::sealer_problem(e.into()))?;
    // An id the service never knew — no account, no consent, no sealed data: nothing to
    // erase, and a mistyped id must not leave a tombstone and a `SubjectErased` behind.
    if consents.is_empty()
        && version == 0
        && keys == SubjectStatus::None
        && !crate::module::subject_known(state, MODULES, subject.into()).await?
    {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-subject",
            "Unknown data subject",
            format!("subject {subject} has no account, no consent and no sealed data here; nothing was erased"),
        ));
    }

    // End every consent still running: processing may not rely on it any more.
    let mut revoked = Vec::new();
    for c in consents {
        if c.ended().is_some() {
            continue;
        }
        let command = ConsentCommand::Revoke(RevokeConsent {
            reason: ControllerReason::AccountDeleted,
            reference: None,
            revoked_at: now,
        });
        execute::<ConsentState>(
            state,
            &c.id().stream_id(),
            &command,
            |e| refused("consent-refused", e),
            meta,
        )
        .await?;
        revoked.push(c.id().to_string());
    }

    // Delete the account (if there is one and it is not deleted already).
    let mut account_deleted = false;
    if let Some(a) = current.account() {
        if a.deleted().is_none() {
            let reason = match (why, a.deletion_requested_at()) {
                (Erasure::TemporaryExpired, _) => DeletionReason::TemporaryExpired,
                (Erasure::Requested, Some(_)) => DeletionReason::SubjectRequest,
                (Erasure::Requested, None) => DeletionReason::ControllerDecision,
            };
            let command = AccountCommand::Delete(DeleteAccount {
                reason,
                deleted_at: now,
            });
            execute::<AccountState>(
                state,
                &subject.stream_id(),
                &command,
                |e| refused("account-refused", e),
                meta,
            )
            .await?;
            account_deleted = true;
        }
    }

    // What modules sealed under keys of their own that belong to the subject (an
    // application's) is shredded first, so that a run interrupted after it is repeated
    // in full.
    let shredded = crate::module::shred_subject(state, MODULES, subject.into(), now).await?;

    // Destroy the keys: from here on every sealed section of the subject is unreadable.
    let destroyed = sealer
        .vault()
        .destroy(&super::vault_subject(subject))
        .await
        .map_err(|e| command::sealer_problem(e.into()))?;
    // Every key the subject had, also those an interrupted earlier run destroyed already.
    let key_ids: Vec<KeyId> = destroyed
        .held
        .iter()
        .filter_map(|k| KeyId::parse(k).ok())
        .collect();
    let erased = SubjectErased {
        subject,
        erased_at: amtsbuch_domain::record::truncate_micros(destroyed.at),
        key_ids,
    };
    let stream = erased_stream(subject);
    let position = match append(
        state,
        &stream,
        std::slice::from_ref(&erased),
        ExpectedVersion::NoStream,
        meta,
    )
    .await
    {
        Ok(o) => Some(o.last_position),
        // Recorded by a concurrent erasure of the same subject: the keys are gone either way.
        Err(StoreOrProblem::Store(StoreError::Append(AppendError::WrongExpectedVersion {
            ..
        }))) => None,
        Err(e) => return Err(e.into()),
    };
    state.metrics.count(
        "amtsbuch_erasures_total",
        "Subjects erased (their data keys destroyed), by cause.",
        &[(
            "cause",
            match why {
                Erasure::Requested => "requested",
                Erasure::TemporaryExpired => "temporary_expired",
            },
        )],
        1,
    );
    let mut answer = json!({
        "subject": subject.to_string(),
        "erased_at": format_timestamp(&erased.erased_at),
        "key_ids": destroyed.held,
        "consents_revoked": revoked,
        "account_deleted": account_deleted,
        "position": position,
        "already_erased": false,
    });
    if !shredded.is_empty() {
        answer["shredded"] = Value::Object(shredded);
    }
    Ok(answer)
}

/// The `409 retention-hold` problem: every active hold, the one ending last first (an
/// open-ended one before all), and when the subject can be erased if every hold has an end.
fn retention_problem(
    subject: AccountId,
    holds: &[models::HoldRow],
    module_holds: &[crate::module::Hold],
) -> Problem {
    let name = |reason: HoldReason| {
        serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    // (end, reason, reference, member of `holds`); `None` is open-ended.
    let mut all: Vec<(Option<DateTime<Utc>>, String, String, Value)> = holds
        .iter()
        .map(|h| {
            (
                Some(h.until),
                name(h.reason),
                h.source.to_string(),
                h.to_json(),
            )
        })
        .chain(
            module_holds
                .iter()
                .map(|h| (h.until, h.reason.clone(), h.reference.clone(), h.to_json())),
        )
        .collect();
    all.sort_by(|a, b| match (a.0, b.0) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    });
    let Some((end, reason, reference, _)) = all.first().cloned() else {
        return Problem::internal(&"a retention problem without a hold");
    };
    let detail = match end {
        Some(until) => format!(
            "subject {subject} must be kept until {} ({} hold(s); the last to end: {reason} for {reference}); erase it after that date",
            format_timestamp(&until),
            all.len(),
        ),
        None => format!(
            "subject {subject} must be kept while {reference} is open ({} hold(s); {reason} has no end yet); erase it once every hold has ended",
            all.len(),
        ),
    };
    let problem = Problem::new(
        StatusCode::CONFLICT,
        "retention-hold",
        "A retention duty forbids erasure",
        detail,
    )
    .with(
        "holds",
        Value::Array(all.into_iter().map(|(_, _, _, json)| json).collect()),
    );
    match end {
        Some(until) => problem.with("erasable_from", format_timestamp(&until)),
        None => problem,
    }
}

fn erased_stream(subject: AccountId) -> StreamId {
    retention::erasure_stream(subject)
}

/// The Art. 30 overview.
#[utoipa::path(get, path = "/dpo/processing", tag = "dpo",
    security(("bearer" = ["dpo"])),
    responses(
        (status = 200, description = "Counts per purpose × category × recipient × legal basis, for consents given and disclosures granted and denied", body = Object),
        (status = 503, description = "The read model did not catch up with the log in time (`read-models-behind`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn processing(State(state): State<AppState>) -> Result<Json<Value>, Problem> {
    // Counts that include everything committed before the request.
    let rows = crate::module::processing_overview(&state, MODULES).await?;
    Ok(Json(json!({ "rows": rows })))
}

/// The GDPR domain's rows of the Art. 30 overview: consents given and disclosures granted
/// and denied, per purpose, category, recipient and legal basis.
pub const PROCESSING: ProcessingPart = ProcessingPart {
    read_models: &[models::overview::NAME],
    rows: processing_rows,
};

fn processing_rows(state: &AppState) -> BoxFuture<'_, Result<Vec<Value>, Problem>> {
    Box::pin(async move {
        let db = ReadDb::new(&state.store);
        let rows = models::processing_overview(&db)
            .await
            .map_err(query_error)?;
        Ok(rows.iter().map(|r| r.to_json()).collect())
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpiringQuery {
    within_days: Option<String>,
}

/// Consents valid now that expire within a number of days.
#[utoipa::path(get, path = "/dpo/consents/expiring", tag = "dpo",
    security(("bearer" = ["dpo"])),
    params(("within_days" = Option<u32>, Query, minimum = 1, maximum = 3660, description = "1 to 3660 (default 30)")),
    responses(
        (status = 200, description = "The consents, soonest first", body = Object),
        (status = 400, description = "Invalid query", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The read model did not catch up with the log in time (`read-models-behind`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn expiring(
    State(state): State<AppState>,
    query: Result<Query<ExpiringQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let Query(q) = query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let days = match q.within_days.as_deref() {
        None => 30,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=3660).contains(d))
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid-query",
                    "within_days must be an integer from 1 to 3660",
                )
            })?,
    };
    // A consent renewed or withdrawn a moment ago must not be listed as expiring.
    read_models_current(&state, &[models::consents::NAME]).await?;
    let db = ReadDb::new(&state.store);
    let now = Utc::now();
    let rows =
        models::expiring_consents(&db, now, Duration::days(days).to_std().unwrap_or_default())
            .await
            .map_err(query_error)?;
    Ok(Json(json!({
        "now": format_timestamp(&now),
        "within_days": days,
        "consents": rows.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
    })))
}

/// Place a retention hold.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    /// The data subject (account id).
    #[schema(value_type = Uuid, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    subject: String,
    /// `cash_book` (10 years), `voucher` (6 years) or `open_procedure` (until released).
    #[schema(value_type = super::shapes::HoldReason)]
    reason: HoldReason,
    /// The stream the duty attaches to (the payment, the procedure): a stream id.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,63}-[A-Za-z0-9._:-]{1,200}$")]
    source: String,
    /// The end of the duty; default: the end of the statutory period, counted from the end
    /// of the current year (KomKVO). Required for `open_procedure`. RFC 3339 in UTC (`Z`)
    /// with at most six fractional digits, stored exactly as given.
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    until: Option<DateTime<Utc>>,
}

/// Place a retention hold: while it is active, the subject cannot be erased.
#[utoipa::path(post, path = "/retention-holds", tag = "dpo",
    security(("bearer" = ["dpo", "operator"])),
    request_body = HoldRequest,
    responses(
        (status = 201, description = "Placed", body = Object),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused: `until` does not lie after now (`hold-refused`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn place_hold(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: HoldRequest = body::json(raw, "{\"subject\", \"reason\", \"source\", \"until\"?}")?;
    let subject = account_id(&req.subject)?;
    let source = StreamId::parse(&req.source)
        .map_err(|e| Problem::bad_request("invalid-body", e.to_string()))?;
    // An erasure of the subject that has checked the holds finishes first.
    let guard = lock_subject(&state, subject.into()).await?;
    let now = guard.now();
    let until =
        match (req.until, req.reason.statutory_years()) {
            (Some(u), _) => u,
            (None, Some(years)) => end_of_year_plus(now, years)?,
            (None, None) => return Err(Problem::bad_request(
                "invalid-body",
                "an open_procedure hold needs \"until\" (it is released when the procedure closes)",
            )),
        };
    let id = HoldId(Uuid::now_v7());
    let command = HoldCommand::Place(PlaceHold {
        hold_id: id,
        subject,
        reason: req.reason,
        source,
        placed_at: now,
        until,
    });
    let done = execute::<HoldState>(
        &state,
        &id.stream_id(),
        &command,
        |e| refused("hold-refused", e),
        &Meta::of(&caller),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "hold_id": id.to_string(),
            "subject": subject.to_string(),
            "until": format_timestamp(&until),
            "position": done.outcome.map(|o| o.last_position),
        })),
    )
        .into_response())
}

/// The end of the year `now` falls in, plus `years` years: statutory retention periods run
/// from the end of the budget year of the record.
fn end_of_year_plus(now: DateTime<Utc>, years: u32) -> Result<DateTime<Utc>, Problem> {
    use chrono::{Datelike, TimeZone};
    Utc.with_ymd_and_hms(now.year() + 1 + years as i32, 1, 1, 0, 0, 0)
        .single()
        .ok_or_else(|| Problem::internal(&"year out of range"))
}

/// Release a retention hold before its end (the procedure closed).
#[utoipa::path(post, path = "/retention-holds/{id}/release", tag = "dpo",
    security(("bearer" = ["dpo", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The hold id")),
    responses(
        (status = 200, description = "Released", body = Object),
        (status = 400, description = "The id is not a hold id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such hold", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn release_hold(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let id = Uuid::parse_str(&id)
        .ok()
        .filter(|u| id == u.hyphenated().to_string())
        .map(HoldId)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-hold-id",
                "a hold id is a lowercase hyphenated UUID",
            )
        })?;
    let (events, _) = command::load::<RetentionEvent>(&state, &id.stream_id()).await?;
    if events.is_empty() {
        return Err(Problem::not_found(format!("no retention hold {id}")));
    }
    let command = HoldCommand::Release(ReleaseHold {
        released_at: Utc::now(),
    });
    let done = execute::<HoldState>(
        &state,
        &id.stream_id(),
        &command,
        |e| refused("hold-refused", e),
        &Meta::of(&caller),
    )
    .await?;
    Ok(Json(json!({
        "hold_id": id.to_string(),
        "released": true,
        "position": done.outcome.map(|o| o.last_position),
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Hold;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("instant")
    }

    fn voucher(until: &str) -> models::HoldRow {
        models::HoldRow {
            hold_id: HoldId(Uuid::nil()),
            subject: AccountId(Uuid::nil()),
            reason: HoldReason::Voucher,
            source: StreamId::parse("payment-1").expect("stream"),
            placed_at: at("2026-01-01T00:00:00Z"),
            until: at(until),
            released_at: None,
            last_position: 1,
        }
    }

    fn module_hold(until: Option<&str>) -> Hold {
        Hold {
            module: "procedures",
            reason: "open_procedure".into(),
            until: until.map(at),
            reference: "procedure-7".into(),
        }
    }

    #[test]
    fn a_modules_open_ended_hold_comes_first_and_leaves_no_erasable_date() {
        let subject = AccountId(Uuid::nil());
        let p = retention_problem(
            subject,
            &[voucher("2032-12-31T00:00:00Z")],
            &[module_hold(None)],
        );
        assert_eq!(p.status, StatusCode::CONFLICT);
        assert_eq!(p.kind, "retention-hold");
        assert!(
            p.detail.contains("while procedure-7 is open"),
            "{}",
            p.detail
        );
        assert!(p.detail.contains("2 hold(s)"), "{}", p.detail);
        let holds = p
            .extra
            .get("holds")
            .and_then(Value::as_array)
            .expect("holds");
        assert_eq!(
            holds[0],
            json!({"module": "procedures", "reason": "open_procedure", "until": null, "reference": "procedure-7"})
        );
        assert_eq!(holds[1]["reason"], "voucher");
        assert!(!p.extra.contains_key("erasable_from"));
    }

    #[test]
    fn the_hold_ending_last_names_the_erasable_date() {
        let subject = AccountId(Uuid::nil());
        let p = retention_problem(
            subject,
            &[voucher("2030-01-01T00:00:00Z")],
            &[module_hold(Some("2031-06-01T00:00:00Z"))],
        );
        assert_eq!(
            p.extra.get("erasable_from"),
            Some(&json!("2031-06-01T00:00:00.000000Z"))
        );
        assert!(
            p.detail.contains("open_procedure for procedure-7"),
            "{}",
            p.detail
        );
        let holds = p
            .extra
            .get("holds")
            .and_then(Value::as_array)
            .expect("holds");
        assert_eq!(holds[0]["module"], "procedures");
        assert_eq!(holds[1]["reason"], "voucher");
    }
}
