//! § 10 SächsEGovG consents and the disclosures checked against them.
//!
//! A citizen gives, renews, narrows and withdraws its own consents — withdrawing takes no
//! more than giving did — and gets a consent receipt with a `tlog-proof` that its
//! `ConsentGiven` is in the log. A data protection officer can revoke a consent for the
//! controller. Authorities and Fachverfahren ask for a disclosure: the request is checked
//! against the subject's consents at the instant it is handled and recorded either way.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::gdpr::consent::{
    self, Consent, ConsentBasis, ConsentCommand, ConsentEvent, ConsentState, ControllerReason,
    GiveConsent, Initiator, NarrowConsentScope, Notice, RenewConsent, RevokeConsent, Scope,
    WithdrawConsent,
};
use amtsbuch_domain::gdpr::disclosure::{
    self, DisclosureEvent, DisclosureState, OtherLegalBasis, RequestDisclosure,
};
use amtsbuch_domain::gdpr::{
    AccountId, CategorySet, Channel, ConsentId, DisclosureId, PurposeId, Purposes, RecipientId,
    Recipients, Reference,
};
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::Decider;
use amtsbuch_domain::ExpectedVersion;
use amtsbuch_infra::EventStore;

use super::{account_id, act_for, shapes};
use crate::auth::Caller;
use crate::body;
use crate::command::{self, append, execute, lock_subject, refused, Meta, Stored};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// The provision consents under § 10 rest on, recorded with each.
pub const SECTION_10: &str = "§ 10 Abs. 1 Satz 2 SächsEGovG";

/// What a consent covers.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScopeBody {
    /// Any of `stammdaten`, `verfahrensdaten`, `kommunikationsdaten`, `elektronische_dokumente`,
    /// each once, in that order.
    #[schema(value_type = shapes::Categories)]
    pub categories: CategorySet,
    /// Processing purposes (register of processing activities), e.g. `antrag-vorbefuellung`.
    #[schema(value_type = Vec<shapes::Token>, min_items = 1)]
    pub purposes: Purposes,
    /// Receiving e-government services or public bodies, e.g. `lra-meissen`.
    #[schema(value_type = Vec<shapes::Token>, min_items = 1)]
    pub recipients: Recipients,
}

impl ScopeBody {
    fn scope(self) -> Result<Scope, Problem> {
        Scope::new(self.categories, self.purposes, self.recipients)
            .map_err(|e| Problem::bad_request("invalid-body", e.to_string()))
    }

    fn of(scope: &Scope) -> Self {
        Self {
            categories: scope.categories(),
            purposes: scope.purposes().clone(),
            recipients: scope.recipients().clone(),
        }
    }
}

/// The notice shown: version and SHA-256 of its exact text.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoticeBody {
    pub version: String,
    /// Hex SHA-256 of the notice text.
    pub sha256: String,
}

/// Give consent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GiveRequest {
    /// The data subject (account id); a citizen's token gives it for its own account.
    #[schema(value_type = Option<Uuid>, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    subject: Option<String>,
    scope: ScopeBody,
    /// `art6_1_a` (default) or `art9_2_a` (special categories).
    #[schema(value_type = Option<shapes::ConsentBasis>)]
    legal_basis: Option<ConsentBasis>,
    /// Default `§ 10 Abs. 1 Satz 2 SächsEGovG`.
    #[schema(value_type = Option<shapes::Reference>)]
    legal_reference: Option<Reference>,
    #[schema(value_type = shapes::Notice)]
    notice: Notice,
    /// `servicekonto_web`, `amt24`, `app` or `paper`.
    #[schema(value_type = shapes::Channel)]
    channel: Channel,
    /// Optional end of validity (RFC 3339).
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    expires_at: Option<DateTime<Utc>>,
    /// Only for paper forms (channel `paper`), and only from an operator, who enters the
    /// signed form: when it was signed, not in the future (default: now).
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    given_at: Option<DateTime<Utc>>,
}

/// A consent as of an instant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsentView {
    pub consent_id: Uuid,
    pub subject: Uuid,
    /// The instant this view describes.
    pub as_of: String,
    /// `given`, `renewed`, `withdrawn`, `revoked`, `expired` (W3C DPV), or `not_given`.
    pub status: String,
    /// The DPV concept of the status, e.g. `dpv:ConsentWithdrawn`.
    pub dpv: Option<String>,
    /// Whether processing may rely on it at `as_of`.
    pub valid: bool,
    pub scope: Option<ScopeBodyView>,
    pub legal_basis: String,
    pub legal_reference: String,
    pub given_at: String,
    /// The term in force: its notice, channel and expiry.
    pub notice_version: Option<String>,
    pub notice_sha256: Option<String>,
    pub channel: Option<String>,
    pub expires_at: Option<String>,
    /// How it ended, if it ended by `as_of`.
    #[schema(value_type = Option<Object>)]
    pub ended: Option<Value>,
    /// Events of the consent folded so far.
    pub version: u64,
}

/// A scope in answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeBodyView {
    pub categories: Vec<String>,
    pub purposes: Vec<String>,
    pub recipients: Vec<String>,
}

fn text<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A consent as it stood at `t` (the consent must hold every event effective by `t`).
pub fn consent_view(c: &Consent, t: DateTime<Utc>) -> ConsentView {
    let status = c.status_at(t);
    let term = c.term_at(t).map(|(_, term)| term);
    let ended = c.ended().filter(|e| e.at() <= t).map(|e| match e {
        consent::Ending::Withdrawn { at, channel } => {
            json!({ "kind": "withdrawn", "at": format_timestamp(at), "channel": channel })
        }
        consent::Ending::Revoked {
            at,
            reason,
            reference,
        } => json!({ "kind": "revoked", "at": format_timestamp(at), "reason": reason, "reference": reference }),
    });
    ConsentView {
        consent_id: c.id().0,
        subject: c.subject().0,
        as_of: format_timestamp(&t),
        status: text(&status),
        dpv: status.dpv_concept().map(str::to_owned),
        valid: status.is_valid(),
        scope: c.scope_at(t).map(|s| {
            let b = ScopeBody::of(s);
            ScopeBodyView {
                categories: serde_json::to_value(b.categories)
                    .ok()
                    .and_then(|v| serde_json::from_value(v).ok())
                    .unwrap_or_default(),
                purposes: b.purposes.iter().map(ToString::to_string).collect(),
                recipients: b.recipients.iter().map(ToString::to_string).collect(),
            }
        }),
        legal_basis: text(&c.legal_basis()),
        legal_reference: c.legal_reference().as_str().to_owned(),
        given_at: format_timestamp(&c.given_at()),
        notice_version: term.map(|t| t.notice.version.to_string()),
        notice_sha256: term.map(|t| t.notice.sha256.to_hex()),
        channel: term.map(|t| text(&t.channel)),
        expires_at: term
            .and_then(|t| t.expires_at)
            .as_ref()
            .map(format_timestamp),
        ended,
        version: c.version(),
    }
}

fn consent_refused(e: consent::ConsentError) -> Problem {
    refused("consent-refused", e)
}

fn consent_id(raw: &str) -> Result<ConsentId, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .map(ConsentId)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-consent-id",
                "a consent id is a lowercase hyphenated UUID",
            )
        })
}

/// A consent as loaded for a caller who may act on it.
struct Loaded {
    consent: Consent,
    events: Vec<Stored<ConsentEvent>>,
    /// How a command of the caller on it is recorded.
    meta: Meta,
}

/// The consent's current state, checking the caller may act for its subject.
async fn load_consent(
    state: &AppState,
    caller: &Principal,
    id: ConsentId,
) -> Result<Loaded, Problem> {
    let (events, _) = command::load::<ConsentEvent>(state, &id.stream_id()).await?;
    let current = ConsentState::fold(events.iter().map(|e| &e.event));
    let ConsentState::Given(consent) = current else {
        return Err(Problem::not_found(format!("no consent {id}")));
    };
    let meta = act_for(caller, &consent.subject())?;
    Ok(Loaded {
        consent,
        events,
        meta,
    })
}

/// Run a command on an existing consent the caller may act on. `command` is given the
/// instant of the command, taken once the subject's lock is held (see the module docs of
/// `gdpr`).
async fn change(
    state: &AppState,
    caller: &Principal,
    id: ConsentId,
    command: impl FnOnce(DateTime<Utc>) -> ConsentCommand,
) -> Result<ConsentView, Problem> {
    let loaded = load_consent(state, caller, id).await?;
    let guard = lock_subject(state, loaded.consent.subject().into()).await?;
    let command = command(guard.now());
    decide_and_append(state, &loaded.meta, id, &command).await
}

async fn decide_and_append(
    state: &AppState,
    meta: &Meta,
    id: ConsentId,
    command: &ConsentCommand,
) -> Result<ConsentView, Problem> {
    let done =
        execute::<ConsentState>(state, &id.stream_id(), command, consent_refused, meta).await?;
    let ConsentState::Given(c) = &done.state else {
        return Err(Problem::internal(&"a consent command left no consent"));
    };
    Ok(consent_view(c, Utc::now()))
}

/// A consent is given by the holder of an account that exists and whose subject has not
/// been erased.
async fn require_account(state: &AppState, subject: &AccountId) -> Result<(), Problem> {
    let opened = state
        .store
        .read_stream(
            &subject.stream_id(),
            1,
            amtsbuch_infra::Direction::Forwards,
            1,
        )
        .await?;
    if opened.is_empty() {
        return Err(Problem::not_found(format!(
            "no account {subject}; a consent is given by the holder of a Servicekonto"
        )));
    }
    if let Some(sealer) = &state.sealer {
        let status = sealer
            .vault()
            .status(&super::vault_subject(*subject))
            .await
            .map_err(|e| command::sealer_problem(e.into()))?;
        if let amtsbuch_infra::vault::SubjectStatus::Erased { at } = status {
            return Err(command::sealer_problem(
                amtsbuch_infra::vault::VaultError::Erased {
                    subject: super::vault_subject(*subject),
                    at,
                }
                .into(),
            ));
        }
    }
    Ok(())
}

/// The subject gives consent under § 10 (1) sentence 2 SächsEGovG.
#[utoipa::path(post, path = "/consents", tag = "consents",
    security(("bearer" = ["citizen", "operator"])),
    request_body = GiveRequest,
    responses(
        (status = 201, description = "Given", body = ConsentView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen giving consent for another account, or dating a paper form (`given_at` is entered by operators only)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "The subject has no account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused by a rule (an expiry before the giving), or the subject is erased (`subject-erased`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn give(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: GiveRequest = body::json(
        raw,
        "{\"subject\"?, \"scope\": {\"categories\", \"purposes\", \"recipients\"}, \"notice\": {\"version\", \"sha256\"}, \"channel\", \"expires_at\"?}",
    )?;
    let subject = match (req.subject.as_deref(), caller.account()) {
        (Some(s), _) => account_id(s)?,
        (None, Some(own)) if caller.has(Role::Citizen) => account_id(own)?,
        (None, _) => {
            return Err(Problem::bad_request(
                "invalid-body",
                "name the data subject: \"subject\" (its account id)",
            ))
        }
    };
    let mut meta = act_for(&caller, &subject)?;
    let scope = req.scope.scope()?;
    let legal_reference = match req.legal_reference {
        Some(r) => r,
        None => Reference::parse(SECTION_10).map_err(|e| Problem::internal(&e))?,
    };
    // Only a signed paper form has a date of its own, which staff enter later; online, the
    // consent is given when it arrives. Accepting an earlier instant otherwise would let a
    // consent appear in the replay as in force before it was ever recorded.
    if req.given_at.is_some() && req.channel != Channel::Paper {
        return Err(Problem::bad_request(
            "invalid-body",
            "\"given_at\" is only for paper forms (channel \"paper\"): the date they were signed",
        ));
    }
    // Entering a signed form is the staff's act, and so is vouching for its date: a
    // subject choosing when its own consent took effect would make the replay worthless
    // as evidence. The record names the operator as the one who entered it, even for a
    // token that is the subject's citizen too.
    if req.given_at.is_some() {
        if !caller.has(Role::Operator) {
            return Err(Problem::forbidden(
                "a paper form's date (\"given_at\") is entered by staff (an operator); leave it out to give consent now",
            ));
        }
        meta = Meta::acting_as(&caller, Role::Operator);
    }
    if req.given_at.is_some_and(|t| t > Utc::now()) {
        return Err(Problem::bad_request(
            "invalid-body",
            "\"given_at\", the date a paper form was signed, cannot lie in the future",
        ));
    }
    let guard = lock_subject(&state, subject.into()).await?;
    // Under the lock, so that an erasure cannot run between the check and the append.
    require_account(&state, &subject).await?;
    let now = guard.now();
    let id = ConsentId(Uuid::now_v7());
    let command = ConsentCommand::Give(GiveConsent {
        consent_id: id,
        subject,
        scope,
        legal_basis: req.legal_basis.unwrap_or(ConsentBasis::Consent),
        legal_reference,
        notice: req.notice,
        channel: req.channel,
        given_at: req.given_at.unwrap_or(now),
        expires_at: req.expires_at,
    });
    let view = decide_and_append(&state, &meta, id, &command).await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/consents/{id}"))],
        Json(view),
    )
        .into_response())
}

/// One consent, now.
#[utoipa::path(get, path = "/consents/{id}", tag = "consents",
    security(("bearer" = ["citizen", "dpo"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    responses(
        (status = 200, description = "The consent", body = ConsentView),
        (status = 400, description = "The id is not a consent id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account's consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<ConsentView>, Problem> {
    let loaded = load_consent(&state, &caller, consent_id(&id)?).await?;
    Ok(Json(consent_view(&loaded.consent, Utc::now())))
}

/// Withdraw: nothing but the channel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    /// Where the subject withdrew (default `servicekonto_web`); recorded, never checked.
    #[schema(value_type = Option<shapes::Channel>)]
    channel: Option<Channel>,
}

/// Withdraw a consent (Art. 7 (3) GDPR): as easy as giving it, effective at once; a
/// repeat changes nothing.
#[utoipa::path(post, path = "/consents/{id}/withdrawal", tag = "consents",
    security(("bearer" = ["citizen", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    request_body(content = Option<WithdrawRequest>),
    responses(
        (status = 200, description = "Withdrawn; the consent now", body = ConsentView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account's consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn withdraw(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsentView>, Problem> {
    let id = consent_id(&id)?;
    let req: WithdrawRequest = body::optional(raw, "{\"channel\"?}")?;
    let channel = req.channel.unwrap_or(Channel::ServicekontoWeb);
    let view = change(&state, &caller, id, |now| {
        ConsentCommand::Withdraw(WithdrawConsent {
            channel,
            withdrawn_at: now,
        })
    })
    .await?;
    Ok(Json(view))
}

/// Renew.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    #[schema(value_type = shapes::Notice)]
    notice: Notice,
    #[schema(value_type = shapes::Channel)]
    channel: Channel,
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    expires_at: Option<DateTime<Utc>>,
}

/// Renew a consent (also after it expired): a new term, possibly on a newer notice.
#[utoipa::path(post, path = "/consents/{id}/renewal", tag = "consents",
    security(("bearer" = ["citizen", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    request_body = RenewRequest,
    responses(
        (status = 200, description = "Renewed", body = ConsentView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account's consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Ended consents cannot be renewed; the expiry must lie ahead", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn renew(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsentView>, Problem> {
    let id = consent_id(&id)?;
    let req: RenewRequest = body::json(raw, "{\"notice\", \"channel\", \"expires_at\"?}")?;
    let view = change(&state, &caller, id, |now| {
        ConsentCommand::Renew(RenewConsent {
            notice: req.notice,
            channel: req.channel,
            renewed_at: now,
            expires_at: req.expires_at,
        })
    })
    .await?;
    Ok(Json(view))
}

/// Narrow.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NarrowRequest {
    scope: ScopeBody,
    #[schema(value_type = Option<shapes::Channel>)]
    channel: Option<Channel>,
}

/// Narrow a consent's scope (a partial withdrawal); widening needs a new consent.
#[utoipa::path(post, path = "/consents/{id}/scope", tag = "consents",
    security(("bearer" = ["citizen", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    request_body = NarrowRequest,
    responses(
        (status = 200, description = "Narrowed", body = ConsentView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account's consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Widening, or an ended consent", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn narrow(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsentView>, Problem> {
    let id = consent_id(&id)?;
    let req: NarrowRequest = body::json(raw, "{\"scope\", \"channel\"?}")?;
    let scope = req.scope.scope()?;
    let by = Initiator::Subject {
        channel: req.channel.unwrap_or(Channel::ServicekontoWeb),
    };
    let view = change(&state, &caller, id, |now| {
        ConsentCommand::Narrow(NarrowConsentScope {
            scope,
            by,
            narrowed_at: now,
        })
    })
    .await?;
    Ok(Json(view))
}

/// Revoke for the controller.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// `purpose_fulfilled`, `recipient_discontinued`, `notice_defective`, `account_deleted`, `legal_change`, `supervisory_order`.
    #[schema(value_type = shapes::ControllerReason)]
    reason: ControllerReason,
    /// A file or decision number (never a person's name).
    #[schema(value_type = Option<shapes::Reference>)]
    reference: Option<Reference>,
}

/// Revoke a consent for the controller, with a reason.
#[utoipa::path(post, path = "/consents/{id}/revocation", tag = "consents",
    security(("bearer" = ["dpo"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "Revoked", body = ConsentView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Already ended", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsentView>, Problem> {
    let id = consent_id(&id)?;
    let req: RevokeRequest = body::json(raw, "{\"reason\", \"reference\"?}")?;
    let view = change(&state, &caller, id, |now| {
        ConsentCommand::Revoke(RevokeConsent {
            reason: req.reason,
            reference: req.reference,
            revoked_at: now,
        })
    })
    .await?;
    Ok(Json(view))
}

/// A consent receipt after the Kantara Initiative's Consent Receipt Specification (v1.1),
/// with the `tlog-proof` that the `ConsentGiven` event is in the log.
#[utoipa::path(get, path = "/consents/{id}/receipt", tag = "consents",
    security(("bearer" = ["citizen", "dpo"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The consent id")),
    responses(
        (status = 200, description = "The receipt (JSON); `amtsbuch.tlog_proof` verifies offline with `amtsbuch verify-proof`", body = Object),
        (status = 400, description = "The id is not a consent id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account's consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such consent", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Not covered by a checkpoint yet (`not-yet-checkpointed`, also before the first checkpoint); retry after `Retry-After` seconds", body = ProblemDoc, content_type = "application/problem+json",
            headers(("Retry-After" = u32, description = "Seconds until a new checkpoint is likely"))),
        (status = 503, description = "This server does not sign checkpoints", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn receipt(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let Loaded {
        consent: c, events, ..
    } = load_consent(&state, &caller, consent_id(&id)?).await?;
    let given = events
        .first()
        .ok_or_else(|| Problem::internal(&"a given consent without events"))?;
    let stored = state
        .store
        .event_by_id(given.event_id)
        .await?
        .ok_or_else(|| Problem::internal(&"the ConsentGiven event is missing"))?;
    let proof = crate::ledger_http::tlog_proof_text(&state, &stored).await?;
    let first = &c.terms()[0];
    let scope = c.scope_at(c.given_at()).unwrap_or(c.scope());
    let categories: Vec<String> = serde_json::to_value(scope.categories())
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let services: Vec<Value> = scope
        .recipients()
        .iter()
        .map(|recipient| {
            json!({
                "service": recipient.as_str(),
                "purposes": scope.purposes().iter().map(|p| json!({
                    "purpose": p.as_str(),
                    "purposeCategory": [p.as_str()],
                    "consentType": "EXPLICIT",
                    "piiCategory": categories,
                    "primaryPurpose": true,
                    "termination": first.expires_at.as_ref().map_or_else(
                        || "until withdrawn (Art. 7 (3) GDPR: at any time, as easily as given)".to_owned(),
                        |x| format!("until {} or withdrawn (Art. 7 (3) GDPR: at any time, as easily as given)", format_timestamp(x))),
                    "thirdPartyDisclosure": true,
                    "thirdPartyName": recipient.as_str(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let vkey = state
        .ledger
        .as_ref()
        .and_then(|l| l.vkeys.first().cloned())
        .unwrap_or_default();
    Ok(Json(json!({
        "version": "KI-CR-v1.1.0",
        "jurisdiction": "DE-SN",
        "consentTimestamp": c.given_at().timestamp(),
        "collectionMethod": text(&first.channel),
        "consentReceiptID": c.id().to_string(),
        "publicKey": vkey,
        "language": "de",
        "piiPrincipalId": c.subject().to_string(),
        "piiControllers": [{
            "piiController": "Freistaat Sachsen, Sächsische Staatskanzlei (Basiskomponenten)",
            "onBehalf": false,
        }],
        "policyUrl": format!("urn:amtsbuch:notice:{}", first.notice.version),
        "services": services,
        "sensitive": matches!(c.legal_basis(), ConsentBasis::ExplicitConsent),
        "spiCat": [],
        "amtsbuch": {
            "status": consent_view(&c, Utc::now()).status,
            "legal_basis": text(&c.legal_basis()),
            "legal_reference": c.legal_reference().as_str(),
            "notice": { "version": first.notice.version.as_str(), "sha256": first.notice.sha256.to_hex() },
            "event_id": given.event_id,
            "position": given.position,
            "leaf_hash": amtsbuch_domain::chain::to_hex(&given.leaf_hash),
            "tlog_proof": proof,
        },
    })))
}

/// A disclosure request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisclosureRequest {
    /// The data subject (account id).
    subject: String,
    #[schema(value_type = Vec<String>)]
    categories: CategorySet,
    #[schema(value_type = String)]
    purpose: PurposeId,
    /// A legal basis other than consent the recipient is registered for:
    /// `{"legal_basis": "art6_1_c"|"art6_1_e"|…, "reference": "§ … "}`.
    #[schema(value_type = Option<Object>)]
    other_basis: Option<OtherLegalBasis>,
}

/// The decision on a disclosure.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisclosureView {
    pub disclosure_id: Uuid,
    /// `granted` or `denied`.
    pub decision: String,
    pub subject: Uuid,
    pub recipient: String,
    pub purpose: String,
    /// The instant the request was judged at.
    pub at: String,
    /// Granted: what it rests on (`{"kind":"consent","consent_id",…}` or another legal basis).
    #[schema(value_type = Option<Object>)]
    pub basis: Option<Value>,
    /// Denied: why (`{"code":"consent_withdrawn","consent_id":…}`, …).
    #[schema(value_type = Option<Object>)]
    pub reason: Option<Value>,
    /// The position of the recorded decision in the log.
    pub position: u64,
}

/// Ask to use categories of a subject's data for a purpose, now. The caller's authority is
/// the recipient. Granted only under a consent valid now that covers every category, the
/// purpose and the recipient (or a named other legal basis); recorded either way.
#[utoipa::path(post, path = "/disclosures", tag = "consents",
    security(("bearer" = ["authority", "fachverfahren"])),
    request_body = DisclosureRequest,
    responses(
        (status = 201, description = "Decided and recorded (granted or denied)", body = DisclosureView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot be used right now (`unavailable`, with `Retry-After`); nothing was decided", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn disclose(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: DisclosureRequest = body::json(
        raw,
        "{\"subject\", \"categories\", \"purpose\", \"other_basis\"?}",
    )?;
    let subject = account_id(&req.subject)?;
    let authority = caller
        .authority()
        .ok_or_else(|| Problem::forbidden("the token names no authority to disclose to"))?;
    let recipient = RecipientId::parse(authority.as_str())
        .map_err(|e| Problem::bad_request("invalid-recipient", e.to_string()))?;
    // The instant is taken under the subject's lock, so no change of its consents is
    // stamped before it and committed after the consents are read.
    let guard = lock_subject(&state, subject.into()).await?;
    let at = guard.now();
    let consents = subject_consents(&state, &subject).await?;
    let id = DisclosureId(Uuid::now_v7());
    let command = RequestDisclosure {
        disclosure_id: id,
        subject,
        recipient,
        purpose: req.purpose,
        categories: req.categories,
        at,
        consents: &consents,
        other_basis: req.other_basis,
    };
    let events =
        disclosure::decide(&command, &DisclosureState::Undecided).map_err(|e| match e {
            disclosure::DisclosureError::NoCategories => {
                Problem::bad_request("invalid-body", e.to_string())
            }
            other => Problem::internal(&other),
        })?;
    let outcome = append(
        &state,
        &id.stream_id(),
        &events,
        ExpectedVersion::NoStream,
        &Meta::of(&caller),
    )
    .await?;
    let Some(decided) = events.first() else {
        return Err(Problem::internal(&"a disclosure decision without an event"));
    };
    let granted = decided.is_granted();
    state.metrics.count(
        "amtsbuch_disclosures_total",
        "Disclosure requests decided, by decision.",
        &[("decision", if granted { "granted" } else { "denied" })],
        1,
    );
    let view = match decided {
        DisclosureEvent::Granted(g) => DisclosureView {
            disclosure_id: id.0,
            decision: "granted".into(),
            subject: g.subject.0,
            recipient: g.recipient.to_string(),
            purpose: g.purpose.to_string(),
            at: format_timestamp(&g.at),
            basis: serde_json::to_value(&g.basis).ok(),
            reason: None,
            position: outcome.last_position,
        },
        DisclosureEvent::Denied(d) => DisclosureView {
            disclosure_id: id.0,
            decision: "denied".into(),
            subject: d.subject.0,
            recipient: d.recipient.to_string(),
            purpose: d.purpose.to_string(),
            at: format_timestamp(&d.at),
            basis: None,
            reason: serde_json::to_value(&d.reason).ok(),
            position: outcome.last_position,
        },
    };
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// The subject's consents now, from the consent index and the consent streams in the log.
pub async fn subject_consents(
    state: &AppState,
    subject: &AccountId,
) -> Result<Vec<Consent>, Problem> {
    let db = amtsbuch_projections::db::ReadDb::new(&state.store);
    amtsbuch_projections::gdpr::current_consents(&db, *subject)
        .await
        .map_err(super::dpo::query_error)
}

/// The caller's own consents, now (a citizen sees and withdraws its consents here).
#[utoipa::path(get, path = "/consents", tag = "consents",
    security(("bearer" = ["citizen"])),
    responses(
        (status = 200, description = "The consents of the token's account, in the order given", body = Vec<ConsentView>),
        (status = 400, description = "The token's account is not an account id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "The database cannot be used right now (`unavailable`, with `Retry-After`)", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn list_own(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<ConsentView>>, Problem> {
    let own = caller
        .account()
        .ok_or_else(|| Problem::forbidden("the token names no account"))?;
    let subject = account_id(own)?;
    let now = Utc::now();
    Ok(Json(
        subject_consents(&state, &subject)
            .await?
            .iter()
            .map(|c| consent_view(c, now))
            .collect(),
    ))
}
