//! The drafts (projection `applications_drafts`): every draft with the instant of its last
//! edit and the expiry already announced, so that the draft sweeper finds the drafts due for
//! an expiry notice or for expiry without folding every application. A draft leaves the
//! table when it is submitted or expires.

use amtsbuch_domain::applications::application::ApplicationEvent;
use amtsbuch_domain::applications::ApplicationId;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

use crate::db::{DbError, ReadDb, ReadTx};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "applications_drafts";

/// The drafts projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Drafts;

impl Projection for Drafts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["applications_drafts"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[ApplicationId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| ApplicationId::from_stream(s).is_some();
            let Some(e) = read_event::<ApplicationEvent>(NAME, ours, event, record) else {
                return Ok(());
            };
            let id = e.application_id().to_string();
            let edited = |at: DateTime<Utc>| {
                (
                    "UPDATE applications_drafts SET last_edit_at = $2, last_position = $3 \
                     WHERE application_id = $1",
                    at,
                )
            };
            let (sql, at) = match &e {
                ApplicationEvent::Created(c) => {
                    tx.execute(
                        "INSERT INTO applications_drafts (application_id, last_edit_at, \
                         announced_expiry_at, last_position) VALUES ($1, $2, NULL, $3) \
                         ON CONFLICT (application_id) DO NOTHING",
                        &[id.into(), c.created_at.into(), event.position.into()],
                    )
                    .await?;
                    return Ok(());
                }
                ApplicationEvent::DataSaved(s) => edited(s.saved_at),
                ApplicationEvent::AttachmentAdded(a) => edited(a.added_at),
                ApplicationEvent::ExpiryAnnounced(a) => (
                    "UPDATE applications_drafts SET announced_expiry_at = $2, last_position = $3 \
                     WHERE application_id = $1",
                    a.expires_at,
                ),
                ApplicationEvent::Submitted(_) | ApplicationEvent::Expired(_) => {
                    tx.execute(
                        "DELETE FROM applications_drafts WHERE application_id = $1",
                        &[id.into()],
                    )
                    .await?;
                    return Ok(());
                }
                _ => return Ok(()),
            };
            tx.execute(sql, &[id.into(), at.into(), event.position.into()])
                .await?;
            Ok(())
        })
    }
}

/// A draft as the sweeper needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftRow {
    pub application_id: ApplicationId,
    pub last_edit_at: DateTime<Utc>,
    /// The expiry already announced, if any.
    pub announced_expiry_at: Option<DateTime<Utc>>,
}

/// The drafts last edited at or before `edited_by`, oldest first, at most `limit`.
pub async fn drafts_edited_by(
    db: &ReadDb,
    edited_by: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DraftRow>, DbError> {
    db.fetch_all(
        "SELECT application_id, last_edit_at, announced_expiry_at FROM applications_drafts \
         WHERE last_edit_at <= $1 ORDER BY last_edit_at, application_id LIMIT $2",
        &[edited_by.into(), i64::from(limit).into()],
    )
    .await?
    .iter()
    .map(|row| {
        let id: String = row.get("application_id")?;
        Ok(DraftRow {
            application_id: Uuid::parse_str(&id).map(ApplicationId).map_err(|e| {
                DbError::Decode {
                    column: "application_id".into(),
                    reason: e.to_string(),
                }
            })?,
            last_edit_at: row.timestamp("last_edit_at")?,
            announced_expiry_at: row.opt_timestamp("announced_expiry_at")?,
        })
    })
    .collect()
}
