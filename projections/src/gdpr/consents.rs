//! The consent index (projection `consents`): one row per consent, as of its last event.
//!
//! A row follows the domain's `evolve` statement by statement: `ConsentGiven` creates it
//! (a second one changes nothing), a renewal opens a new term, a narrowing replaces the
//! scope, and the first withdrawal or revocation ends it for good. `status` is the status
//! the last event gave (`given`, `renewed`, `withdrawn`, `revoked`, `expired`); since expiry
//! is a matter of time and the sweeper records it only afterwards, questions about a given
//! instant compare `expires_at` too. The row is the index from a subject to its consent
//! streams; what a consent said at an instant is answered from the events (`history`).

use std::time::Duration;

use amtsbuch_domain::gdpr::consent::{ConsentBasis, ConsentEvent, ConsentStatus, ControllerReason};
use amtsbuch_domain::gdpr::{
    AccountId, CategorySet, ConsentId, NoticeVersion, Purposes, Recipients, Reference,
};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

use super::{opt_ts, parsed, ts, unwritable};
use crate::db::{DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "consents";

/// The consent-index projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Consents;

impl Projection for Consents {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_consents"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[ConsentId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| ConsentId::from_stream(s).is_some();
            if let Some(e) = read_event::<ConsentEvent>(NAME, ours, event, record) {
                apply(tx, event, record, &e).await?;
            }
            Ok(())
        })
    }
}

async fn apply(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    record: &EventRecord,
    e: &ConsentEvent,
) -> Result<(), ProjectionError> {
    let fail = |reason: String| unwritable(event, reason);
    let id = e.consent_id().to_string();
    let position = event.position;
    match e {
        ConsentEvent::Given(g) => {
            tx.execute(
                "INSERT INTO gdpr_consents (consent_id, subject, stream_id, status, categories, \
                 purposes, recipients, legal_basis, legal_reference, notice_version, given_at, \
                 term_from, expires_at, ended_at, end_reason, version, last_position) \
                 VALUES ($1, $2, $3, 'given', $4, $5, $6, $7, $8, $9, $10, $10, $11, NULL, NULL, \
                 1, $12) ON CONFLICT (consent_id) DO NOTHING",
                &[
                    id.into(),
                    g.subject.to_string().into(),
                    record.stream_id.as_str().into(),
                    json_of!(g.scope.categories()).map_err(fail)?.into(),
                    json_of!(g.scope.purposes()).map_err(fail)?.into(),
                    json_of!(g.scope.recipients()).map_err(fail)?.into(),
                    name_of!(g.legal_basis).map_err(fail)?.into(),
                    g.legal_reference.as_str().into(),
                    g.notice.version.as_str().into(),
                    g.given_at.into(),
                    g.expires_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ConsentEvent::Renewed(r) => {
            tx.execute(
                "UPDATE gdpr_consents SET \
                 status = CASE WHEN ended_at IS NULL THEN 'renewed' ELSE status END, \
                 notice_version = $2, term_from = $3, expires_at = $4, \
                 version = version + 1, last_position = $5 WHERE consent_id = $1",
                &[
                    id.into(),
                    r.notice.version.as_str().into(),
                    r.renewed_at.into(),
                    r.expires_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ConsentEvent::ScopeNarrowed(n) => {
            tx.execute(
                "UPDATE gdpr_consents SET categories = $2, purposes = $3, recipients = $4, \
                 version = version + 1, last_position = $5 WHERE consent_id = $1",
                &[
                    id.into(),
                    json_of!(n.scope.categories()).map_err(fail)?.into(),
                    json_of!(n.scope.purposes()).map_err(fail)?.into(),
                    json_of!(n.scope.recipients()).map_err(fail)?.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ConsentEvent::Withdrawn(w) => {
            end(tx, &id, "withdrawn", &w.withdrawn_at, None, position).await?
        }
        ConsentEvent::Revoked(r) => {
            let reason = name_of!(r.reason).map_err(fail)?;
            end(tx, &id, "revoked", &r.revoked_at, Some(&reason), position).await?;
        }
        ConsentEvent::Expired(_) => {
            tx.execute(
                "UPDATE gdpr_consents SET \
                 status = CASE WHEN ended_at IS NULL THEN 'expired' ELSE status END, \
                 version = version + 1, last_position = $2 WHERE consent_id = $1",
                &[id.into(), position.into()],
            )
            .await?;
        }
    }
    Ok(())
}

/// A withdrawal or revocation; the first end is the one that counts, as in `evolve`.
async fn end(
    tx: &mut ReadTx,
    id: &str,
    status: &str,
    at: &DateTime<Utc>,
    reason: Option<&str>,
    position: u64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE gdpr_consents SET \
         status = CASE WHEN ended_at IS NULL THEN $2 ELSE status END, \
         end_reason = CASE WHEN ended_at IS NULL THEN $4 ELSE end_reason END, \
         ended_at = COALESCE(ended_at, $3), \
         version = version + 1, last_position = $5 WHERE consent_id = $1",
        &[
            id.into(),
            status.into(),
            at.into(),
            reason.into(),
            position.into(),
        ],
    )
    .await?;
    Ok(())
}

/// One consent as the index holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRow {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub stream_id: StreamId,
    /// The status the last event gave; see the module docs about expiry.
    pub status: ConsentStatus,
    /// The current scope.
    pub categories: CategorySet,
    pub purposes: Purposes,
    pub recipients: Recipients,
    pub legal_basis: ConsentBasis,
    pub legal_reference: Reference,
    /// The notice version of the current term.
    pub notice_version: NoticeVersion,
    pub given_at: DateTime<Utc>,
    /// Start and expiry of the current term.
    pub term_from: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// When the consent was withdrawn or revoked.
    pub ended_at: Option<DateTime<Utc>>,
    /// The controller's reason, for a revocation.
    pub end_reason: Option<ControllerReason>,
    /// Events applied: the stream version when the stream is well-formed.
    pub version: u64,
    pub last_position: u64,
}

impl ConsentRow {
    /// The row as JSON, with the DPV concept of its status.
    pub fn to_json(&self) -> Json {
        json!({
            "consent_id": self.consent_id.to_string(),
            "subject": self.subject.to_string(),
            "stream_id": self.stream_id.as_str(),
            "status": to_json!(self.status),
            "dpv": self.status.dpv_concept(),
            "categories": to_json!(self.categories),
            "purposes": to_json!(self.purposes),
            "recipients": to_json!(self.recipients),
            "legal_basis": to_json!(self.legal_basis),
            "legal_reference": self.legal_reference.as_str(),
            "notice_version": self.notice_version.as_str(),
            "given_at": ts(&self.given_at),
            "term_from": ts(&self.term_from),
            "expires_at": opt_ts(&self.expires_at),
            "ended_at": opt_ts(&self.ended_at),
            "end_reason": to_json!(self.end_reason),
            "version": self.version,
            "last_position": self.last_position,
        })
    }
}

const COLUMNS: &str = "consent_id, subject, stream_id, status, categories, purposes, recipients, \
     legal_basis, legal_reference, notice_version, given_at, term_from, expires_at, ended_at, \
     end_reason, version, last_position";

pub(crate) fn uuid(column: &str, row: &Row) -> Result<Uuid, DbError> {
    parsed(column, Uuid::parse_str(&row.get::<String>(column)?))
}

fn consent_row(row: &Row) -> Result<ConsentRow, DbError> {
    let end_reason: Option<String> = row.get("end_reason")?;
    Ok(ConsentRow {
        consent_id: ConsentId(uuid("consent_id", row)?),
        subject: AccountId(uuid("subject", row)?),
        stream_id: parsed(
            "stream_id",
            StreamId::parse(&row.get::<String>("stream_id")?),
        )?,
        status: parse_name!(ConsentStatus, "status", row.get::<String>("status")?)?,
        categories: parse_json!(CategorySet, "categories", row.get::<String>("categories")?)?,
        purposes: parse_json!(Purposes, "purposes", row.get::<String>("purposes")?)?,
        recipients: parse_json!(Recipients, "recipients", row.get::<String>("recipients")?)?,
        legal_basis: parse_name!(
            ConsentBasis,
            "legal_basis",
            row.get::<String>("legal_basis")?
        )?,
        legal_reference: parsed(
            "legal_reference",
            Reference::parse(&row.get::<String>("legal_reference")?),
        )?,
        notice_version: parsed(
            "notice_version",
            NoticeVersion::parse(&row.get::<String>("notice_version")?),
        )?,
        given_at: row.timestamp("given_at")?,
        term_from: row.timestamp("term_from")?,
        expires_at: row.opt_timestamp("expires_at")?,
        ended_at: row.opt_timestamp("ended_at")?,
        end_reason: end_reason
            .map(|r| parse_name!(ControllerReason, "end_reason", r))
            .transpose()?,
        version: row.get_u64("version")?,
        last_position: row.get_u64("last_position")?,
    })
}

/// A subject's consents, in the order they were given.
pub async fn consents_of(db: &ReadDb, subject: AccountId) -> Result<Vec<ConsentRow>, DbError> {
    db.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM gdpr_consents WHERE subject = $1 ORDER BY given_at, consent_id"
        ),
        &[subject.to_string().into()],
    )
    .await?
    .iter()
    .map(consent_row)
    .collect()
}

/// One consent, if the index has it.
pub async fn consent(db: &ReadDb, id: ConsentId) -> Result<Option<ConsentRow>, DbError> {
    db.fetch_optional(
        &format!("SELECT {COLUMNS} FROM gdpr_consents WHERE consent_id = $1"),
        &[id.to_string().into()],
    )
    .await?
    .as_ref()
    .map(consent_row)
    .transpose()
}

/// Consents valid at `now` whose current term expires within `within` after it
/// (`now < expires_at ≤ now + within`), soonest first: whom to ask for a renewal. Validity
/// is decided by the instants, not by `status`, so a withdrawal that takes effect only
/// later leaves the consent in the list until then. A consent whose latest renewal only
/// starts after `now` is left out.
pub async fn expiring_consents(
    db: &ReadDb,
    now: DateTime<Utc>,
    within: Duration,
) -> Result<Vec<ConsentRow>, DbError> {
    let within = i64::try_from(within.as_micros()).unwrap_or(i64::MAX);
    let until = super::capped(DateTime::<Utc>::from_timestamp_micros(
        now.timestamp_micros().saturating_add(within),
    ));
    let params: [Value<'_>; 2] = [now.into(), until.into()];
    db.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM gdpr_consents WHERE expires_at > $1 AND expires_at <= $2 \
             AND term_from <= $1 AND (ended_at IS NULL OR ended_at > $1) \
             ORDER BY expires_at, consent_id"
        ),
        &params,
    )
    .await?
    .iter()
    .map(consent_row)
    .collect()
}
