//! Servicekonto accounts: open (also as a temporary identification), link an identity,
//! change master data, ask for deletion, and read an account.
//!
//! The Servicekonto front end calls these as an operator; a citizen reads and changes its
//! own account. Master data and identity pseudonyms are personal data: they are sealed
//! under the account's own key before they reach the log, and answers show them decrypted
//! — or as erased once the account's key is destroyed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use amtsbuch_domain::gdpr::account::{
    self, AccountCommand, AccountKind, AccountState, ChangeMasterData, IdentityMethod,
    IdentityPseudonym, LinkIdentity, MasterData, OpenAccount, RequestAccountDeletion,
};
use amtsbuch_domain::gdpr::{AccountId, Channel, LinkId};
use amtsbuch_domain::record::format_timestamp;

use super::{account_id, act_for, shapes};
use crate::auth::Caller;
use crate::body;
use crate::command::{self, execute, personal_json, refused, Meta};
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::AppState;

/// Open an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAccountRequest {
    /// `personal`, `organisation` or `authority`.
    #[schema(value_type = shapes::AccountKind, example = "personal")]
    kind: AccountKind,
    /// Personal data, sealed: `{"type":"person","given_names","family_name","birth_date"?,"address"?,"email"?}` or `{"type":"organisation","name","address"?,"email"?}`.
    #[schema(value_type = shapes::MasterData)]
    master_data: MasterData,
    /// A temporary identification: erased automatically after this instant (RFC 3339).
    #[serde(default, deserialize_with = "crate::body::strict::opt_instant")]
    #[schema(pattern = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?Z$")]
    expires_at: Option<DateTime<Utc>>,
}

/// An account as its events made it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub account_id: Uuid,
    pub kind: String,
    /// `active`, `deletion_requested` or `deleted`.
    pub status: String,
    /// eIDAS level of assurance: the highest of its identity links (`low`, `substantial`, `high`).
    pub trust_level: Option<String>,
    pub opened_at: String,
    /// Set for a temporary identification.
    pub expires_at: Option<String>,
    /// Decrypted master data, or `{"erased": true}`.
    #[schema(value_type = Object)]
    pub master_data: Value,
    pub identity_links: Vec<IdentityLinkView>,
    pub deletion_requested_at: Option<String>,
    pub deleted_at: Option<String>,
    /// The stream's version: how many events the account has.
    pub version: u64,
}

/// One identity link (the pseudonym itself is not shown).
#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityLinkView {
    pub link_id: Uuid,
    /// `eid`, `elster`, `eidas_notified` or `password`.
    pub method: String,
    pub level: String,
    pub linked_at: String,
}

fn label<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub(crate) fn view_of(state: &AccountState, version: u64) -> Result<AccountView, Problem> {
    let a = state
        .account()
        .ok_or_else(|| Problem::not_found("no such account"))?;
    Ok(AccountView {
        account_id: a.id().0,
        kind: label(&a.kind()),
        status: label(&a.status()),
        trust_level: a.trust_level().map(|l| label(&l)),
        opened_at: format_timestamp(&a.opened_at()),
        expires_at: a.expires_at().as_ref().map(format_timestamp),
        master_data: personal_json(a.master_data()),
        identity_links: a
            .links()
            .iter()
            .map(|l| IdentityLinkView {
                link_id: l.link_id.0,
                method: serde_json::to_value(l.method)
                    .ok()
                    .and_then(|v| v["kind"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
                level: label(&l.level),
                linked_at: format_timestamp(&l.linked_at),
            })
            .collect(),
        deletion_requested_at: a.deletion_requested_at().as_ref().map(format_timestamp),
        deleted_at: a.deleted().map(|(at, _)| format_timestamp(&at)),
        version,
    })
}

fn account_refused(e: account::AccountError) -> Problem {
    match e {
        // Not a rule of the account: there is none.
        account::AccountError::NotOpened => Problem::not_found("no such account"),
        // Bad input, as a misspelt date is: nothing to do with the account's state.
        e @ account::AccountError::BirthDate => Problem::bad_request("invalid-body", e.to_string())
            .with("pointer", "/master_data/birth_date"),
        e => refused("account-refused", e),
    }
}

async fn run(
    state: &AppState,
    id: AccountId,
    command: AccountCommand,
    meta: &Meta,
) -> Result<(AccountView, u64), Problem> {
    command::sealer(state)?;
    let done =
        execute::<AccountState>(state, &id.stream_id(), &command, account_refused, meta).await?;
    let last = done.outcome.as_ref().map_or(0, |o| o.last_position);
    Ok((view_of(&done.state, done.version)?, last))
}

/// Open a Servicekonto account (with `expires_at`: a temporary identification).
#[utoipa::path(post, path = "/accounts", tag = "accounts",
    security(("bearer" = ["operator"])),
    request_body = OpenAccountRequest,
    responses(
        (status = 201, description = "Opened", body = AccountView),
        (status = 400, description = "Invalid input; nothing was stored", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused by a rule (e.g. master data of the wrong form)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn open_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let req: OpenAccountRequest = body::json(raw, "{\"kind\", \"master_data\", \"expires_at\"?}")?;
    let id = AccountId(Uuid::now_v7());
    let command = AccountCommand::Open(OpenAccount {
        account_id: id,
        kind: req.kind,
        master_data: req.master_data,
        opened_at: Utc::now(),
        expires_at: req.expires_at,
    });
    let (v, _) = run(&state, id, command, &Meta::of(&caller)).await?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::LOCATION, format!("/accounts/{id}"))],
        Json(v),
    )
        .into_response())
}

/// An account: status, level of assurance, and its master data decrypted (or erased).
#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts",
    security(("bearer" = ["citizen", "dpo", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The account id (UUID)")),
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 400, description = "The id is not an account id", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn get_account(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, Problem> {
    let id = account_id(&id)?;
    act_for(&caller, &id)?;
    let (current, version) = command::current::<AccountState>(&state, &id.stream_id()).await?;
    Ok(Json(view_of(&current, version)?))
}

/// Replace an account's master data.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MasterDataRequest {
    /// The complete new master data (personal data, sealed).
    #[schema(value_type = shapes::MasterData)]
    master_data: MasterData,
}

/// Replace the master data (a repeat with equal data changes nothing).
#[utoipa::path(put, path = "/accounts/{id}/master-data", tag = "accounts",
    security(("bearer" = ["citizen", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The account id")),
    request_body = MasterDataRequest,
    responses(
        (status = 200, description = "The account after the change", body = AccountView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused (deleted, deletion pending, expired, wrong form)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn change_master_data(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<AccountView>, Problem> {
    let id = account_id(&id)?;
    let meta = act_for(&caller, &id)?;
    let req: MasterDataRequest = body::json(raw, "{\"master_data\"}")?;
    let command = AccountCommand::ChangeMasterData(ChangeMasterData {
        master_data: req.master_data,
        changed_at: Utc::now(),
    });
    Ok(Json(run(&state, id, command, &meta).await?.0))
}

/// Link a proven identity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// `{"kind":"eid"}`, `{"kind":"elster"}`, `{"kind":"eidas_notified","level":"high"}` or `{"kind":"password"}`.
    #[schema(value_type = shapes::IdentityMethod)]
    method: IdentityMethod,
    /// The identity provider's pseudonym for the person (personal data, sealed).
    #[schema(value_type = shapes::IdentityPseudonym)]
    pseudonym: IdentityPseudonym,
}

/// Link an identity proven with eID, ELSTER, a notified eIDAS scheme or a password; the
/// account's level of assurance becomes the highest of its links.
#[utoipa::path(post, path = "/accounts/{id}/identity-links", tag = "accounts",
    security(("bearer" = ["operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The account id")),
    request_body = LinkRequest,
    responses(
        (status = 201, description = "Linked; the account after it", body = AccountView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "Refused (already linked, eID on a non-personal account …)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn link_identity(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let id = account_id(&id)?;
    let req: LinkRequest = body::json(raw, "{\"method\", \"pseudonym\"}")?;
    let command = AccountCommand::LinkIdentity(LinkIdentity {
        link_id: LinkId(Uuid::now_v7()),
        method: req.method,
        pseudonym: req.pseudonym,
        linked_at: Utc::now(),
    });
    let (v, _) = run(&state, id, command, &Meta::of(&caller)).await?;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Ask for deletion.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletionRequest {
    /// Where the subject asked: `servicekonto_web` (default), `amt24`, `app`, `paper`.
    #[schema(value_type = Option<shapes::Channel>)]
    channel: Option<Channel>,
}

/// The subject asks for its account to be deleted (Art. 17 GDPR); a data protection
/// officer carries out the erasure. Asking again changes nothing.
#[utoipa::path(post, path = "/accounts/{id}/deletion-request", tag = "accounts",
    security(("bearer" = ["citizen", "operator"])),
    params(("id" = Uuid, Path, pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", description = "The account id")),
    request_body(content = Option<DeletionRequest>),
    responses(
        (status = 200, description = "Recorded; the account after it", body = AccountView),
        (status = 400, description = "Invalid input", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "A citizen's token for another account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The account is deleted", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "No key-encryption key configured", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn request_deletion(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Json<AccountView>, Problem> {
    let id = account_id(&id)?;
    let meta = act_for(&caller, &id)?;
    let req: DeletionRequest = body::optional(raw, "{\"channel\"?}")?;
    let command = AccountCommand::RequestDeletion(RequestAccountDeletion {
        channel: req.channel.unwrap_or(Channel::ServicekontoWeb),
        requested_at: Utc::now(),
    });
    Ok(Json(run(&state, id, command, &meta).await?.0))
}
