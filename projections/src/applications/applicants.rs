//! The applicants (projection `applications_applicants`): which applications each applicant
//! made, drafts included, for the Art. 15 access export.

use amtsbuch_domain::applications::application::ApplicationEvent;
use amtsbuch_domain::applications::{ApplicationId, SubjectId};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::types::Uuid;

use crate::db::{DbError, ReadDb, ReadTx};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "applications_applicants";

/// The applicants projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applicants;

impl Projection for Applicants {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["applications_applicants"]
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
            if let Some(ApplicationEvent::Created(c)) =
                read_event::<ApplicationEvent>(NAME, ours, event, record)
            {
                tx.execute(
                    "INSERT INTO applications_applicants (application_id, applicant, created_at, \
                     last_position) VALUES ($1, $2, $3, $4) ON CONFLICT (application_id) DO NOTHING",
                    &[
                        c.application_id.to_string().into(),
                        c.applicant.to_string().into(),
                        c.created_at.into(),
                        event.position.into(),
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// The applications `applicant` made, oldest first.
pub async fn applications_of(
    db: &ReadDb,
    applicant: SubjectId,
) -> Result<Vec<ApplicationId>, DbError> {
    db.fetch_all(
        "SELECT application_id FROM applications_applicants WHERE applicant = $1 \
         ORDER BY created_at, application_id",
        &[applicant.to_string().into()],
    )
    .await?
    .iter()
    .map(|row| {
        let id: String = row.get("application_id")?;
        Uuid::parse_str(&id)
            .map(ApplicationId)
            .map_err(|e| DbError::Decode {
                column: "application_id".into(),
                reason: e.to_string(),
            })
    })
    .collect()
}
