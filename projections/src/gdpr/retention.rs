//! Retention holds (projection `retention_holds`): the duties that forbid erasing a
//! subject, one row per hold, released or not.
//!
//! A hold is active at `t` when it was placed by then, its `until` lies after `t`, and it
//! was not released by then — the domain's `Hold::is_active_at`, in SQL.

use amtsbuch_domain::gdpr::retention::{HoldId, HoldReason, RetentionEvent};
use amtsbuch_domain::gdpr::AccountId;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};

use super::consents::uuid;
use super::{opt_ts, parsed, ts, unwritable};
use crate::db::{DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "retention_holds";

/// The retention-holds projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct RetentionHolds;

impl Projection for RetentionHolds {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_retention_holds"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[HoldId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| HoldId::from_stream(s).is_some();
            match read_event::<RetentionEvent>(NAME, ours, event, record) {
                Some(RetentionEvent::Placed(p)) => {
                    let reason = name_of!(p.reason).map_err(|r| unwritable(event, r))?;
                    tx.execute(
                        "INSERT INTO gdpr_retention_holds (hold_id, subject, reason, source, \
                         placed_at, ends_at, released_at, last_position) \
                         VALUES ($1, $2, $3, $4, $5, $6, NULL, $7) \
                         ON CONFLICT (hold_id) DO NOTHING",
                        &[
                            p.hold_id.to_string().into(),
                            p.subject.to_string().into(),
                            reason.into(),
                            p.source.as_str().into(),
                            p.placed_at.into(),
                            p.until.into(),
                            event.position.into(),
                        ],
                    )
                    .await?;
                }
                Some(RetentionEvent::Released(r)) => {
                    tx.execute(
                        "UPDATE gdpr_retention_holds SET \
                         released_at = COALESCE(released_at, $2), last_position = $3 \
                         WHERE hold_id = $1",
                        &[
                            r.hold_id.to_string().into(),
                            r.released_at.into(),
                            event.position.into(),
                        ],
                    )
                    .await?;
                }
                None => {}
            }
            Ok(())
        })
    }
}

/// One retention hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    pub hold_id: HoldId,
    pub subject: AccountId,
    pub reason: HoldReason,
    /// The stream the duty attaches to.
    pub source: StreamId,
    pub placed_at: DateTime<Utc>,
    /// The end of the duty.
    pub until: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
    pub last_position: u64,
}

impl HoldRow {
    pub fn to_json(&self) -> Json {
        json!({
            "hold_id": self.hold_id.to_string(),
            "subject": self.subject.to_string(),
            "reason": to_json!(self.reason),
            "source": self.source.as_str(),
            "placed_at": ts(&self.placed_at),
            "until": ts(&self.until),
            "released_at": opt_ts(&self.released_at),
            "last_position": self.last_position,
        })
    }
}

const COLUMNS: &str =
    "hold_id, subject, reason, source, placed_at, ends_at, released_at, last_position";

fn hold_row(row: &Row) -> Result<HoldRow, DbError> {
    Ok(HoldRow {
        hold_id: HoldId(uuid("hold_id", row)?),
        subject: AccountId(uuid("subject", row)?),
        reason: parse_name!(HoldReason, "reason", row.get::<String>("reason")?)?,
        source: parsed("source", StreamId::parse(&row.get::<String>("source")?))?,
        placed_at: row.timestamp("placed_at")?,
        until: row.timestamp("ends_at")?,
        released_at: row.opt_timestamp("released_at")?,
        last_position: row.get_u64("last_position")?,
    })
}

/// The holds on `subject` that are active at `now`, the one ending last first: while
/// there is one, the subject must not be erased.
pub async fn active_holds(
    db: &ReadDb,
    subject: AccountId,
    now: DateTime<Utc>,
) -> Result<Vec<HoldRow>, DbError> {
    let params: [Value<'_>; 2] = [subject.to_string().into(), now.into()];
    db.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM gdpr_retention_holds WHERE subject = $1 \
             AND placed_at <= $2 AND ends_at > $2 AND (released_at IS NULL OR released_at > $2) \
             ORDER BY ends_at DESC, hold_id"
        ),
        &params,
    )
    .await?
    .iter()
    .map(hold_row)
    .collect()
}

/// Every hold ever placed on `subject`, in the order they were placed.
pub async fn holds_of(db: &ReadDb, subject: AccountId) -> Result<Vec<HoldRow>, DbError> {
    db.fetch_all(
        &format!(
            "SELECT {COLUMNS} FROM gdpr_retention_holds WHERE subject = $1 \
             ORDER BY placed_at, hold_id"
        ),
        &[subject.to_string().into()],
    )
    .await?
    .iter()
    .map(hold_row)
    .collect()
}
