//! The applications' part of an erasure (Art. 17 GDPR): the retention duty an application
//! places on its applicant, and the shredding of the applicant's applications.
//!
//! An application that was submitted and is not yet closed (or withdrawn) holds its
//! applicant open-ended (`open_procedure`); once it is closed the file is kept for the
//! retention period after the closure (`closed_procedure`), by default
//! [`DEFAULT_RETENTION_DAYS`] days, set by `serve --application-retention-days`. Drafts hold
//! nothing. An application's personal data is sealed under the application's own key, so
//! that one expired draft can be shredded alone; erasing the applicant destroys the keys of
//! all their applications and deletes their attachments' sealed content.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, Utc};
use futures_util::future::BoxFuture;

use amtsbuch_domain::applications::application::{sealing_subject, Retention};
use amtsbuch_domain::applications::{ApplicationId, SubjectId};
use amtsbuch_projections::applications::applicants;
use amtsbuch_projections::db::ReadDb;

use super::lifecycle::load;
use crate::command;
use crate::module::{ErasurePart, Hold, RetentionPart};
use crate::problem::Problem;
use crate::AppState;

/// How long a closed application's file is kept by default, in days (six years, as the
/// accounting vouchers of a procedure are).
pub const DEFAULT_RETENTION_DAYS: i64 = 6 * 365;

/// The retention period in seconds: set once by `serve` from its flag (tests set it too).
static RETENTION_SECS: AtomicI64 = AtomicI64::new(DEFAULT_RETENTION_DAYS * 86_400);

/// Sets the retention period after an application's closure.
pub fn set_retention_period(period: Duration) {
    RETENTION_SECS.store(period.num_seconds().max(0), Ordering::Relaxed);
}

/// The retention period after an application's closure.
pub fn retention_period() -> Duration {
    Duration::seconds(RETENTION_SECS.load(Ordering::Relaxed))
}

/// The retention part: the holds of the applicant's applications.
pub const RETENTION: RetentionPart = RetentionPart {
    read_models: &[applicants::NAME],
    holds,
};

/// The erasure part: the applicant's applications are shredded with them.
pub const ERASURE: ErasurePart = ErasurePart {
    read_models: &[applicants::NAME],
    knows,
    shred,
};

async fn applications_of(
    state: &AppState,
    subject: SubjectId,
) -> Result<Vec<ApplicationId>, Problem> {
    let db = ReadDb::new(&state.store);
    amtsbuch_projections::applications::applications_of(&db, subject)
        .await
        .map_err(|e| Problem::internal(&e))
}

fn holds(
    state: &AppState,
    subject: SubjectId,
    now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Vec<Hold>, Problem>> {
    Box::pin(async move {
        let period = retention_period();
        let mut holds = Vec::new();
        for id in applications_of(state, subject).await? {
            let (_, folded, _) = load(state, id).await?;
            let Some(app) = folded.0 else { continue };
            let (reason, until) = match app.retention(period) {
                Retention::None => continue,
                Retention::Open => ("open_procedure", None),
                Retention::Until(until) if until > now => ("closed_procedure", Some(until)),
                Retention::Until(_) => continue,
            };
            holds.push(Hold {
                module: "",
                reason: reason.into(),
                until,
                reference: id.stream_id().to_string(),
            });
        }
        Ok(holds)
    })
}

fn knows(state: &AppState, subject: SubjectId) -> BoxFuture<'_, Result<bool, Problem>> {
    Box::pin(async move { Ok(!applications_of(state, subject).await?.is_empty()) })
}

fn shred(
    state: &AppState,
    subject: SubjectId,
    _at: DateTime<Utc>,
) -> BoxFuture<'_, Result<Vec<String>, Problem>> {
    Box::pin(async move {
        let ids = applications_of(state, subject).await?;
        let mut shredded = Vec::with_capacity(ids.len());
        for id in ids {
            shred_application(state, id).await?;
            shredded.push(id.stream_id().to_string());
        }
        Ok(shredded)
    })
}

/// Shreds one application's personal data: its key is destroyed (every sealed section of
/// its events becomes unreadable) and its attachments' sealed content deleted. Safe to
/// repeat.
pub(crate) async fn shred_application(state: &AppState, id: ApplicationId) -> Result<(), Problem> {
    let sealer = command::sealer(state)?;
    super::attachments::delete_all(state, id).await?;
    sealer
        .vault()
        .destroy(&sealing_subject(id).into())
        .await
        .map_err(|e| command::sealer_problem(e.into()))?;
    Ok(())
}
