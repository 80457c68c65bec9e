//! The subject index (projection `subject_index`): every position of the log that concerns a
//! data subject, for the Art. 15 access export.
//!
//! An event concerns a subject when it carries personal data sealed under the subject's key
//! (`sealed.subject`, whatever its stream — raw appends with personal data included), when
//! it belongs to the subject's account stream, or when it is a consent, disclosure,
//! retention or erasure event naming the subject. The index holds pairs of pseudonymous
//! account id and position, nothing else; the export reads the events themselves.

use amtsbuch_domain::gdpr::consent::ConsentEvent;
use amtsbuch_domain::gdpr::disclosure::DisclosureEvent;
use amtsbuch_domain::gdpr::retention::{RetentionEvent, SubjectErased};
use amtsbuch_domain::gdpr::{AccountId, ConsentId, DisclosureId};
use amtsbuch_domain::EventRecord;
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::types::Uuid;

use crate::db::{DbError, ReadDb, ReadTx};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "subject_index";

/// The subject-index projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct SubjectIndex;

/// The subjects an event concerns (at most a few).
fn subjects_of(event: &RecordedEvent, record: &EventRecord) -> Vec<AccountId> {
    let mut found = Vec::with_capacity(2);
    if let Some(sealed) = &record.sealed {
        if let Ok(id) = Uuid::parse_str(&sealed.subject) {
            found.push(AccountId(id));
        }
    }
    if let Some(id) = AccountId::from_stream(&record.stream_id) {
        found.push(id);
    } else if ConsentId::from_stream(&record.stream_id).is_some() {
        let ours = |s: &_| ConsentId::from_stream(s).is_some();
        found.extend(read_event::<ConsentEvent>(NAME, ours, event, record).map(|e| e.subject()));
    } else if DisclosureId::from_stream(&record.stream_id).is_some() {
        let ours = |s: &_| DisclosureId::from_stream(s).is_some();
        found.extend(read_event::<DisclosureEvent>(NAME, ours, event, record).map(|e| e.subject()));
    } else if amtsbuch_domain::gdpr::retention::subject_of_erasure_stream(&record.stream_id)
        .is_some()
    {
        let ours = |s: &_| amtsbuch_domain::gdpr::retention::subject_of_erasure_stream(s).is_some();
        found.extend(read_event::<SubjectErased>(NAME, ours, event, record).map(|e| e.subject));
    } else if amtsbuch_domain::gdpr::retention::HoldId::from_stream(&record.stream_id).is_some() {
        let ours = |s: &_| amtsbuch_domain::gdpr::retention::HoldId::from_stream(s).is_some();
        found.extend(read_event::<RetentionEvent>(NAME, ours, event, record).map(|e| e.subject()));
    }
    found.sort();
    found.dedup();
    found
}

impl Projection for SubjectIndex {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_subject_events"]
    }

    // Events of the GDPR streams, and sealed events of any stream (`subjects_of`).
    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[
            AccountId::CATEGORY,
            ConsentId::CATEGORY,
            DisclosureId::CATEGORY,
            amtsbuch_domain::gdpr::retention::ERASURE_CATEGORY,
            amtsbuch_domain::gdpr::retention::HoldId::CATEGORY,
        ])
    }

    fn sealed_too(&self) -> bool {
        true
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            for subject in subjects_of(event, record) {
                tx.execute(
                    "INSERT INTO gdpr_subject_events (subject, position) VALUES ($1, $2) \
                     ON CONFLICT (subject, position) DO NOTHING",
                    &[subject.to_string().into(), event.position.into()],
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// Every position that concerns `subject`, in log order.
pub async fn subject_positions(db: &ReadDb, subject: AccountId) -> Result<Vec<u64>, DbError> {
    db.fetch_all(
        "SELECT position FROM gdpr_subject_events WHERE subject = $1 ORDER BY position",
        &[subject.to_string().into()],
    )
    .await?
    .iter()
    .map(|row| row.get_u64("position"))
    .collect()
}

/// Consents whose current term has expired by `now` without the log saying so yet: what
/// the sweeper records `ConsentExpired` for.
pub async fn consents_due_for_expiry(
    db: &ReadDb,
    now: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
) -> Result<Vec<ConsentId>, DbError> {
    db.fetch_all(
        "SELECT consent_id FROM gdpr_consents WHERE expires_at IS NOT NULL \
         AND expires_at <= $1 AND ended_at IS NULL AND status <> 'expired' \
         ORDER BY expires_at, consent_id",
        &[now.into()],
    )
    .await?
    .iter()
    .map(|row| {
        let text: String = row.get("consent_id")?;
        Uuid::parse_str(&text)
            .map(ConsentId)
            .map_err(|e| super::decode_error("consent_id", e.to_string()))
    })
    .collect()
}
