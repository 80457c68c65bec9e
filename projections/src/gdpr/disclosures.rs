//! Disclosures (projection `disclosures`): one row per decision, granted or denied, so a
//! data protection officer sees every use of a subject's data under each consent, every
//! use under another legal basis, and every refusal.
//!
//! A disclosure stream holds one decision; only its first event (stream version 1)
//! counts, as in the domain's `evolve`. A grant under consent records the consent, its
//! version when it was checked, and the consent's legal basis, read from the consent's
//! `ConsentGiven` in the log.

use std::collections::BTreeMap;

use amtsbuch_domain::gdpr::disclosure::{DenialReason, DisclosureEvent, GrantBasis};
use amtsbuch_domain::gdpr::{
    AccountId, CategorySet, ConsentId, DisclosureId, PurposeId, RecipientId, Reference,
};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};

use super::consents::uuid;
use super::{consent_basis, decode_error, parsed, ts, unwritable, LegalBasis};
use crate::db::{DbError, ReadDb, ReadTx, Row};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "disclosures";

/// The disclosures projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disclosures;

impl Projection for Disclosures {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_disclosures"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[DisclosureId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| DisclosureId::from_stream(s).is_some();
            if record.stream_version != 1 {
                return Ok(());
            }
            if let Some(e) = read_event::<DisclosureEvent>(NAME, ours, event, record) {
                insert(tx, event, &e).await?;
            }
            Ok(())
        })
    }
}

/// The columns a decision fills, apart from its common part.
struct Outcome {
    decision: &'static str,
    consent_id: Option<String>,
    consent_version: Option<u64>,
    legal_basis: Option<String>,
    legal_reference: Option<String>,
    reason: Option<DenialReason>,
}

async fn insert(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &DisclosureEvent,
) -> Result<(), ProjectionError> {
    let fail = |reason: String| unwritable(event, reason);
    let (id, subject, recipient, purpose, categories, at, outcome) = match e {
        DisclosureEvent::Granted(g) => {
            let outcome = match &g.basis {
                GrantBasis::Consent {
                    consent_id,
                    consent_version,
                } => Outcome {
                    decision: "granted",
                    consent_id: Some(consent_id.to_string()),
                    consent_version: Some(*consent_version),
                    legal_basis: Some(consent_basis(tx, &consent_id.stream_id()).await?.code()),
                    legal_reference: None,
                    reason: None,
                },
                GrantBasis::OtherLegalBasis {
                    legal_basis,
                    reference,
                    consent_check,
                } => Outcome {
                    decision: "granted",
                    consent_id: None,
                    consent_version: None,
                    legal_basis: Some(LegalBasis::Statutory(*legal_basis).code()),
                    legal_reference: Some(reference.as_str().to_owned()),
                    reason: Some(consent_check.clone()),
                },
            };
            let g = g.clone();
            (
                g.disclosure_id,
                g.subject,
                g.recipient,
                g.purpose,
                g.categories,
                g.at,
                outcome,
            )
        }
        DisclosureEvent::Denied(d) => {
            let d = d.clone();
            let outcome = Outcome {
                decision: "denied",
                consent_id: None,
                consent_version: None,
                legal_basis: None,
                legal_reference: None,
                reason: Some(d.reason.clone()),
            };
            (
                d.disclosure_id,
                d.subject,
                d.recipient,
                d.purpose,
                d.categories,
                d.at,
                outcome,
            )
        }
    };
    let (reason_code, reason) = match &outcome.reason {
        Some(r) => (
            Some(reason_code(r).map_err(fail)?),
            Some(json_of!(r).map_err(fail)?),
        ),
        None => (None, None),
    };
    tx.execute(
        "INSERT INTO gdpr_disclosures (disclosure_id, subject, recipient, purpose, categories, \
         occurred_at, decision, consent_id, consent_version, legal_basis, legal_reference, \
         reason_code, reason, position) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (disclosure_id) DO NOTHING",
        &[
            id.to_string().into(),
            subject.to_string().into(),
            recipient.as_str().into(),
            purpose.as_str().into(),
            json_of!(categories).map_err(fail)?.into(),
            at.into(),
            outcome.decision.into(),
            outcome.consent_id.into(),
            outcome.consent_version.into(),
            outcome.legal_basis.into(),
            outcome.legal_reference.into(),
            reason_code.into(),
            reason.into(),
            event.position.into(),
        ],
    )
    .await?;
    Ok(())
}

/// The `code` member of a denial reason.
fn reason_code(reason: &DenialReason) -> Result<String, String> {
    match serde_json::to_value(reason) {
        Ok(Json::Object(mut o)) => match o.remove("code") {
            Some(Json::String(code)) => Ok(code),
            _ => Err("a denial reason without a code".into()),
        },
        Ok(_) => Err("a denial reason that is not an object".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a disclosure was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Granted,
    Denied,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
        }
    }
}

/// One disclosure decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosureRow {
    pub disclosure_id: DisclosureId,
    pub subject: AccountId,
    pub recipient: RecipientId,
    pub purpose: PurposeId,
    pub categories: CategorySet,
    /// The instant of the use.
    pub at: DateTime<Utc>,
    pub decision: Decision,
    /// For a grant under consent: the consent and its version when it was checked.
    pub consent_id: Option<ConsentId>,
    pub consent_version: Option<u64>,
    /// For a grant: the consent's basis or the other basis it was granted under.
    pub legal_basis: Option<LegalBasis>,
    /// For a grant under another basis: the provision.
    pub legal_reference: Option<Reference>,
    /// For a denial, why; for a grant under another basis, why no consent covered it.
    pub reason: Option<DenialReason>,
    pub position: u64,
}

impl DisclosureRow {
    pub fn to_json(&self) -> Json {
        json!({
            "disclosure_id": self.disclosure_id.to_string(),
            "subject": self.subject.to_string(),
            "recipient": self.recipient.as_str(),
            "purpose": self.purpose.as_str(),
            "categories": to_json!(self.categories),
            "at": ts(&self.at),
            "decision": self.decision.as_str(),
            "consent_id": self.consent_id.map(|c| c.to_string()),
            "consent_version": self.consent_version,
            "legal_basis": self.legal_basis.map(|b| b.code()),
            "legal_reference": self.legal_reference.as_ref().map(|r| r.as_str()),
            "reason": to_json!(self.reason),
            "position": self.position,
        })
    }
}

/// A subject's disclosures, sorted by what they rest on; each list in log order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DisclosuresOfSubject {
    /// Granted under each consent.
    pub under_consent: BTreeMap<ConsentId, Vec<DisclosureRow>>,
    /// Granted under another legal basis.
    pub other_basis: Vec<DisclosureRow>,
    pub denied: Vec<DisclosureRow>,
}

impl DisclosuresOfSubject {
    pub fn to_json(&self) -> Json {
        let rows =
            |list: &[DisclosureRow]| list.iter().map(DisclosureRow::to_json).collect::<Vec<_>>();
        let under: serde_json::Map<String, Json> = self
            .under_consent
            .iter()
            .map(|(id, list)| (id.to_string(), Json::Array(rows(list))))
            .collect();
        json!({
            "under_consent": under,
            "other_basis": rows(&self.other_basis),
            "denied": rows(&self.denied),
        })
    }
}

const COLUMNS: &str = "disclosure_id, subject, recipient, purpose, categories, occurred_at, \
     decision, consent_id, consent_version, legal_basis, legal_reference, reason, position";

fn disclosure_row(row: &Row) -> Result<DisclosureRow, DbError> {
    let decision = match row.get::<String>("decision")?.as_str() {
        "granted" => Decision::Granted,
        "denied" => Decision::Denied,
        other => {
            return Err(decode_error(
                "decision",
                format!("{other:?} is not a decision"),
            ))
        }
    };
    let consent_id: Option<String> = row.get("consent_id")?;
    let consent_version: Option<i64> = row.get("consent_version")?;
    let legal_basis: Option<String> = row.get("legal_basis")?;
    let legal_reference: Option<String> = row.get("legal_reference")?;
    let reason: Option<String> = row.get("reason")?;
    Ok(DisclosureRow {
        disclosure_id: DisclosureId(uuid("disclosure_id", row)?),
        subject: AccountId(uuid("subject", row)?),
        recipient: parsed(
            "recipient",
            RecipientId::parse(&row.get::<String>("recipient")?),
        )?,
        purpose: parsed("purpose", PurposeId::parse(&row.get::<String>("purpose")?))?,
        categories: parse_json!(CategorySet, "categories", row.get::<String>("categories")?)?,
        at: row.timestamp("occurred_at")?,
        decision,
        consent_id: consent_id
            .map(|c| parsed("consent_id", sqlx::types::Uuid::parse_str(&c)).map(ConsentId))
            .transpose()?,
        consent_version: consent_version
            .map(|v| parsed("consent_version", u64::try_from(v)))
            .transpose()?,
        legal_basis: legal_basis
            .map(|b| LegalBasis::parse("legal_basis", &b))
            .transpose()?,
        legal_reference: legal_reference
            .map(|r| parsed("legal_reference", Reference::parse(&r)))
            .transpose()?,
        reason: reason
            .map(|r| parse_json!(DenialReason, "reason", r))
            .transpose()?,
        position: row.get_u64("position")?,
    })
}

/// Every disclosure decision about `subject`: granted under each consent, granted under
/// another legal basis, and denied.
pub async fn disclosures_by_consent(
    db: &ReadDb,
    subject: AccountId,
) -> Result<DisclosuresOfSubject, DbError> {
    let rows = db
        .fetch_all(
            &format!("SELECT {COLUMNS} FROM gdpr_disclosures WHERE subject = $1 ORDER BY position"),
            &[subject.to_string().into()],
        )
        .await?;
    let mut result = DisclosuresOfSubject::default();
    for row in &rows {
        let d = disclosure_row(row)?;
        match (d.decision, d.consent_id) {
            (Decision::Denied, _) => result.denied.push(d),
            (Decision::Granted, Some(consent)) => {
                result.under_consent.entry(consent).or_default().push(d)
            }
            (Decision::Granted, None) => result.other_basis.push(d),
        }
    }
    Ok(result)
}

/// The disclosures granted under one consent, in log order.
pub async fn disclosures_under_consent(
    db: &ReadDb,
    consent: ConsentId,
) -> Result<Vec<DisclosureRow>, DbError> {
    db.fetch_all(
        &format!("SELECT {COLUMNS} FROM gdpr_disclosures WHERE consent_id = $1 ORDER BY position"),
        &[consent.to_string().into()],
    )
    .await?
    .iter()
    .map(disclosure_row)
    .collect()
}
