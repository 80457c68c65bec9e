//! Each application whose fee is due under its payment policy but not requested yet
//! (projection `payments_fees_due`, table `payments_fees_due`): what the payment policy
//! requests once a fee schedule for the service at the authority is set, and what an
//! operator sees waiting for one (`amtsbuch_payment_fees_waiting` on `/metrics`).
//!
//! It reads the application events by their published form (the event type and the
//! members of `data` it needs), as the payment policy's process manager does, and the
//! receivables' first events:
//!
//! - `ApplicationCreated` under `before_submission` or `after_decision`: a row, at stage
//!   `due` (before the submission: due from the draft on) or `drafted` (after the
//!   decision: not due yet);
//! - `DecisionIssued` of a row under `after_decision`: stage `due`, due from the decision;
//! - `ApplicationSubmitted`, `ApplicationWithdrawn` or `DraftExpired`: the row goes for a
//!   draft under `before_submission` (nothing is due before a submission any more) and for
//!   an undecided application under `after_decision` (no decision will come);
//! - `ReceivableRequested` of the application's fee: the row goes (the fee is requested).
//!
//! Nothing here is personal data: the applicant is named by their pseudonymous subject id.

use amtsbuch_domain::payments::receivable::ReceivableEvent;
use amtsbuch_domain::payments::ReceivableId;
use amtsbuch_domain::record::timestamp;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

use crate::db::{DbError, ReadDb, ReadTx};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "payments_fees_due";

/// The stream category of the aggregates a payment policy applies to.
const APPLICATION: &str = "application";

/// The projection of the fees due.
#[derive(Debug, Clone, Copy, Default)]
pub struct FeesDue;

#[derive(Deserialize)]
struct Created {
    application_id: Uuid,
    applicant: Uuid,
    responsible: Responsible,
    #[serde(with = "timestamp")]
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Responsible {
    authority: String,
    leika: String,
    payment: String,
}

#[derive(Deserialize)]
struct Decided {
    #[serde(with = "timestamp")]
    decided_at: DateTime<Utc>,
}

const BEFORE_SUBMISSION: &str = "before_submission";
const AFTER_DECISION: &str = "after_decision";

fn apply_error(position: u64, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Apply {
        position,
        reason: reason.to_string(),
    }
}

impl Projection for FeesDue {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["payments_fees_due"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[APPLICATION, ReceivableId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if record.stream_id.category() == ReceivableId::CATEGORY {
                let ours = |s: &StreamId| ReceivableId::from_stream(s).is_some();
                if let Some(ReceivableEvent::Requested(q)) =
                    read_event::<ReceivableEvent>(NAME, ours, event, record)
                {
                    if let Some(application) = q.application_id {
                        tx.execute(
                            "DELETE FROM payments_fees_due WHERE application_id = $1",
                            &[application.to_string().into()],
                        )
                        .await?;
                    }
                }
                return Ok(());
            }
            let Some(application) = record
                .stream_id
                .as_str()
                .strip_prefix("application-")
                .and_then(|id| Uuid::parse_str(id).ok())
            else {
                return Ok(());
            };
            let id = application.to_string();
            match record.event_type.as_str() {
                "ApplicationCreated" => {
                    let created: Created = serde_json::from_value(record.data.clone())
                        .map_err(|e| apply_error(event.position, e))?;
                    let stage = match created.responsible.payment.as_str() {
                        BEFORE_SUBMISSION => "due",
                        AFTER_DECISION => "drafted",
                        _ => return Ok(()),
                    };
                    tx.execute(
                        "INSERT INTO payments_fees_due (application_id, applicant, leika, \
                         authority, policy, stage, created_at, due_from, last_position) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                         ON CONFLICT (application_id) DO NOTHING",
                        &[
                            created.application_id.to_string().into(),
                            created.applicant.to_string().into(),
                            created.responsible.leika.into(),
                            created.responsible.authority.into(),
                            created.responsible.payment.into(),
                            stage.into(),
                            created.created_at.into(),
                            (stage == "due").then_some(created.created_at).into(),
                            event.position.into(),
                        ],
                    )
                    .await?;
                }
                "DecisionIssued" => {
                    let decided: Decided = serde_json::from_value(record.data.clone())
                        .map_err(|e| apply_error(event.position, e))?;
                    tx.execute(
                        "UPDATE payments_fees_due SET stage = 'due', due_from = $2, \
                         last_position = $3 \
                         WHERE application_id = $1 AND policy = 'after_decision' \
                         AND stage = 'drafted'",
                        &[id.into(), decided.decided_at.into(), event.position.into()],
                    )
                    .await?;
                }
                "ApplicationSubmitted" | "ApplicationWithdrawn" | "DraftExpired" => {
                    tx.execute(
                        "DELETE FROM payments_fees_due WHERE application_id = $1 \
                         AND (policy = 'before_submission' OR stage = 'drafted')",
                        &[id.into()],
                    )
                    .await?;
                }
                _ => {}
            }
            Ok(())
        })
    }
}

/// An application whose fee is due and not requested yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeeDue {
    pub application_id: Uuid,
    /// The applicant's pseudonymous subject id.
    pub applicant: Uuid,
    pub leika: String,
    pub authority: String,
    /// `before_submission` or `after_decision`.
    pub policy: String,
    pub created_at: DateTime<Utc>,
    /// From when the fee is due: the draft's creation or the decision.
    pub due_from: DateTime<Utc>,
    /// The log position of that event.
    pub position: u64,
}

fn uuid(row: &crate::db::Row, column: &str) -> Result<Uuid, DbError> {
    let text: String = row.get(column)?;
    Uuid::parse_str(&text).map_err(|e| DbError::Decode {
        column: column.into(),
        reason: e.to_string(),
    })
}

/// The fees due and not requested for service `leika` at `authority`,
/// oldest first, at most `limit`.
pub async fn due(
    db: &ReadDb,
    leika: &str,
    authority: &str,
    limit: i64,
) -> Result<Vec<FeeDue>, DbError> {
    db.fetch_all(
        "SELECT application_id, applicant, leika, authority, policy, created_at, due_from, \
         last_position FROM payments_fees_due WHERE leika = $1 AND authority = $2 AND stage = 'due' \
         ORDER BY last_position LIMIT $3",
        &[
            leika.to_owned().into(),
            authority.to_owned().into(),
            limit.into(),
        ],
    )
    .await?
    .iter()
    .map(|row| {
        Ok(FeeDue {
            application_id: uuid(row, "application_id")?,
            applicant: uuid(row, "applicant")?,
            leika: row.get("leika")?,
            authority: row.get("authority")?,
            policy: row.get("policy")?,
            created_at: row.timestamp("created_at")?,
            due_from: row.timestamp("due_from")?,
            position: row.get_u64("last_position")?,
        })
    })
    .collect()
}

/// Per service and authority with fees due and not requested: how many, oldest first by
/// service and authority.
pub async fn waiting(db: &ReadDb) -> Result<Vec<(String, String, i64)>, DbError> {
    db.fetch_all(
        "SELECT leika, authority, COUNT(*) AS fees FROM payments_fees_due \
         WHERE stage = 'due' GROUP BY leika, authority ORDER BY leika, authority",
        &[],
    )
    .await?
    .iter()
    .map(|row| Ok((row.get("leika")?, row.get("authority")?, row.get("fees")?)))
    .collect()
}
