//! The participation read models and their public queries.
//!
//! One projection, `participation`, owns every participation table (created by the
//! participation migrations): procedures (with the columns the public search filters on
//! and its full-text index), their topics and rounds, contributions with their moderation
//! state, the public moderation log, gatherings and registrations. One projection rather
//! than several, because a contribution's events change its procedure's public count and
//! a registration's its gathering's places, and each table belongs to one projection.
//!
//! Nothing here decrypts: events are decoded without a key, so what participants wrote
//! reads as `Personal::Erased` and never reaches a table. A comment's public text is
//! opened from the log by the service when it is shown (the row keeps the position of
//! its `ContributionSubmitted`), so an erased author's text is gone everywhere at once.
//! Reporters are not stored at all; authors and registrants only by their pseudonymous
//! participant ids, which no public query returns.
//!
//! Positions are stored in micro-degrees (WGS84 × 10^6), since read models hold no
//! floating point: a geometry's box is rounded outwards, so a bounding-box search never
//! misses what it touches.

pub mod queries;

use std::sync::Arc;

use amtsbuch_domain::participation::contribution::ContributionEvent;
use amtsbuch_domain::participation::gathering::{GatheringEvent, Place};
use amtsbuch_domain::participation::procedure::ProcedureEvent;
use amtsbuch_domain::participation::{
    BoundingBox, ContributionId, Format, GatheringId, ProcedureId,
};
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;

use crate::db::{DbError, ReadTx, Value};
use crate::projection::{read_event, Projection, ProjectionError};

pub use queries::*;

/// The projection's name.
pub const NAME: &str = "participation";

/// The participation read model.
#[derive(Debug, Clone, Copy, Default)]
pub struct Participation;

/// The participation projections, which the participation domain module registers.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Participation)]
}

/// The serde name of a unit enum value, as the events spell it.
fn name<T: serde::Serialize>(value: &T) -> Result<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => Ok(name),
        Ok(other) => Err(format!("{other} is not a name")),
        Err(e) => Err(e.to_string()),
    }
}

/// The JSON text of a value, as the events spell it.
fn json<T: serde::Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| e.to_string())
}

/// A longitude or latitude in micro-degrees, rounded down (`floor`) or up.
pub fn micro(v: f64, floor: bool) -> i64 {
    let scaled = v * 1_000_000.0;
    // Coordinates are at most 180 degrees, so the scaled value fits an i64 exactly.
    #[allow(
        clippy::cast_possible_truncation,
        reason = "|v| ≤ 180, checked when parsed"
    )]
    let rounded = if floor { scaled.floor() } else { scaled.ceil() } as i64;
    rounded
}

/// A bounding box in micro-degrees, rounded outwards: `[min_lon, min_lat, max_lon, max_lat]`.
pub fn micro_box(b: &BoundingBox) -> [i64; 4] {
    [
        micro(b.min_lon, true),
        micro(b.min_lat, true),
        micro(b.max_lon, false),
        micro(b.max_lat, false),
    ]
}

fn failed(event: &RecordedEvent, reason: String) -> ProjectionError {
    ProjectionError::Apply {
        position: event.position,
        reason,
    }
}

impl Projection for Participation {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "participation_procedures",
            "participation_topics",
            "participation_rounds",
            "participation_contributions",
            "participation_moderation_log",
            "participation_gatherings",
            "participation_registrations",
        ]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[
            ProcedureId::CATEGORY,
            ContributionId::CATEGORY,
            GatheringId::CATEGORY,
        ])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let procedure = |s: &StreamId| ProcedureId::from_stream(s).is_some();
            let contribution = |s: &StreamId| ContributionId::from_stream(s).is_some();
            let gathering = |s: &StreamId| GatheringId::from_stream(s).is_some();
            if let Some(e) = read_event::<ProcedureEvent>(NAME, procedure, event, record) {
                apply_procedure(tx, event, &e).await
            } else if let Some(e) =
                read_event::<ContributionEvent>(NAME, contribution, event, record)
            {
                apply_contribution(tx, event, &e).await
            } else if let Some(e) = read_event::<GatheringEvent>(NAME, gathering, event, record) {
                apply_gathering(tx, event, &e).await
            } else {
                Ok(())
            }
        })
    }
}

async fn set_status(
    tx: &mut ReadTx,
    id: ProcedureId,
    status: &str,
    position: u64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE participation_procedures SET status = $2, last_position = $3 \
         WHERE procedure_id = $1",
        &[id.to_string().into(), status.into(), position.into()],
    )
    .await
    .map(drop)
}

async fn apply_procedure(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &ProcedureEvent,
) -> Result<(), ProjectionError> {
    let position = event.position;
    match e {
        ProcedureEvent::Drafted(d) => {
            let bounds = d.geometry.as_ref().map(|g| micro_box(&g.bounds()));
            let geometry = d
                .geometry
                .as_ref()
                .map(json)
                .transpose()
                .map_err(|r| failed(event, r))?;
            let survey = d
                .survey
                .as_ref()
                .map(json)
                .transpose()
                .map_err(|r| failed(event, r))?;
            let topics = json(&d.topics).map_err(|r| failed(event, r))?;
            let format = name(&d.format).map_err(|r| failed(event, r))?;
            let inserted = tx
                .execute(
                    "INSERT INTO participation_procedures (procedure_id, authority, format, \
                     title, topics, region, status, geometry, min_lon, min_lat, max_lon, \
                     max_lat, accepts_late, report_threshold, survey, drafted_at, \
                     contributions, last_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9, $10, $11, $12, $13, \
                     $14, $15, 0, $16) ON CONFLICT (procedure_id) DO NOTHING",
                    &[
                        d.procedure_id.to_string().into(),
                        d.authority.as_str().into(),
                        format.into(),
                        d.title.as_str().into(),
                        topics.into(),
                        d.region.as_str().into(),
                        geometry.into(),
                        bounds.map(|b| b[0]).into(),
                        bounds.map(|b| b[1]).into(),
                        bounds.map(|b| b[2]).into(),
                        bounds.map(|b| b[3]).into(),
                        d.accepts_late.into(),
                        d.report_threshold.into(),
                        survey.into(),
                        d.drafted_at.into(),
                        position.into(),
                    ],
                )
                .await?;
            if inserted == 1 {
                for topic in &d.topics {
                    tx.execute(
                        "INSERT INTO participation_topics (procedure_id, topic) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                        &[d.procedure_id.to_string().into(), topic.as_str().into()],
                    )
                    .await?;
                }
            }
        }
        ProcedureEvent::Announced(a) => {
            tx.execute(
                "UPDATE participation_procedures SET status = 'announced', announced_at = $2, \
                 last_position = $3 WHERE procedure_id = $1",
                &[
                    a.procedure_id.to_string().into(),
                    a.announced_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ProcedureEvent::RoundScheduled(s) => {
            let r = &s.round;
            let stage = r
                .stage
                .as_ref()
                .map(name)
                .transpose()
                .map_err(|e| failed(event, e))?;
            let documents = json(&r.documents).map_err(|e| failed(event, e))?;
            tx.execute(
                "INSERT INTO participation_rounds (round_id, procedure_id, stage, starts_at, \
                 ends_at, documents, preclusion_notice, position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (round_id) DO NOTHING",
                &[
                    r.round_id.to_string().into(),
                    s.procedure_id.to_string().into(),
                    stage.clone().into(),
                    r.starts_at.into(),
                    r.ends_at.into(),
                    documents.into(),
                    r.preclusion_notice.into(),
                    position.into(),
                ],
            )
            .await?;
            // Rounds follow each other, so the latest ends last.
            tx.execute(
                "UPDATE participation_procedures SET opens_at = COALESCE(opens_at, $2), \
                 closes_at = $3, stage = COALESCE($4, stage), last_position = $5 \
                 WHERE procedure_id = $1",
                &[
                    s.procedure_id.to_string().into(),
                    r.starts_at.into(),
                    r.ends_at.into(),
                    stage.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ProcedureEvent::EvaluationStarted(s) => {
            set_status(tx, s.procedure_id, "evaluating", position).await?;
        }
        ProcedureEvent::Decided(d) => {
            let format = name(&Format::Bauleitplanung).map_err(|r| failed(event, r))?;
            tx.execute(
                "UPDATE participation_procedures SET status = 'decided', decided_at = $2, \
                 decision = $3, stage = CASE WHEN format = $4 THEN 'satzungsbeschluss' \
                 ELSE stage END, last_position = $5 WHERE procedure_id = $1",
                &[
                    d.procedure_id.to_string().into(),
                    d.decided_at.into(),
                    d.summary.as_str().into(),
                    format.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        ProcedureEvent::Archived(a) => {
            set_status(tx, a.procedure_id, "archived", position).await?;
        }
        ProcedureEvent::Cancelled(c) => {
            tx.execute(
                "UPDATE participation_procedures SET status = 'cancelled', cancelled_at = $2, \
                 cancel_reason = $3, last_position = $4 WHERE procedure_id = $1",
                &[
                    c.procedure_id.to_string().into(),
                    c.cancelled_at.into(),
                    c.reason.as_str().into(),
                    position.into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// Sets the public count of the procedure of `contribution`: its contributions that are
/// neither hidden nor withdrawn.
async fn recount_procedure(
    tx: &mut ReadTx,
    contribution: ContributionId,
    position: u64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE participation_procedures SET contributions = (SELECT COUNT(*) \
         FROM participation_contributions c \
         WHERE c.procedure_id = participation_procedures.procedure_id \
         AND c.hidden = FALSE AND c.withdrawn = FALSE), last_position = $2 \
         WHERE procedure_id = (SELECT procedure_id FROM participation_contributions \
         WHERE contribution_id = $1)",
        &[contribution.to_string().into(), position.into()],
    )
    .await
    .map(drop)
}

async fn update_contribution(
    tx: &mut ReadTx,
    id: ContributionId,
    set: &str,
    params: &[Value<'_>],
) -> Result<(), DbError> {
    // `set` is one of this module's literals; the parameters follow $1 (the id).
    let mut all: Vec<Value<'_>> = vec![id.to_string().into()];
    all.extend(params.iter().cloned());
    tx.execute(
        &format!("UPDATE participation_contributions SET {set} WHERE contribution_id = $1"),
        &all,
    )
    .await
    .map(drop)
}

async fn log_moderation(
    tx: &mut ReadTx,
    position: u64,
    id: ContributionId,
    action: &str,
    reason: Option<&str>,
    trigger: Option<String>,
    at: &sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO participation_moderation_log (position, procedure_id, contribution_id, \
         action, reason, trigger, at) \
         SELECT $1, procedure_id, contribution_id, $3, $4, $5, $6 \
         FROM participation_contributions WHERE contribution_id = $2 \
         ON CONFLICT (position) DO NOTHING",
        &[
            position.into(),
            id.to_string().into(),
            action.into(),
            reason.into(),
            trigger.into(),
            at.into(),
        ],
    )
    .await
    .map(drop)
}

async fn apply_contribution(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &ContributionEvent,
) -> Result<(), ProjectionError> {
    let p = event.position;
    match e {
        ContributionEvent::Submitted(s) => {
            let kind = name(&s.kind).map_err(|r| failed(event, r))?;
            let choices = if s.choices.is_empty() {
                None
            } else {
                Some(json(&s.choices).map_err(|r| failed(event, r))?)
            };
            tx.execute(
                "INSERT INTO participation_contributions (contribution_id, procedure_id, \
                 round_id, kind, author, late, submitted_at, position, choices, hidden, \
                 withdrawn, reports, supports, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, FALSE, FALSE, 0, 0, $8) \
                 ON CONFLICT (contribution_id) DO NOTHING",
                &[
                    s.contribution_id.to_string().into(),
                    s.procedure_id.to_string().into(),
                    s.round_id.to_string().into(),
                    kind.into(),
                    s.author.to_string().into(),
                    s.late.into(),
                    s.submitted_at.into(),
                    p.into(),
                    choices.into(),
                ],
            )
            .await?;
            recount_procedure(tx, s.contribution_id, p).await?;
        }
        ContributionEvent::Withdrawn(w) => {
            update_contribution(
                tx,
                w.contribution_id,
                "withdrawn = TRUE, last_position = $2",
                &[p.into()],
            )
            .await?;
            recount_procedure(tx, w.contribution_id, p).await?;
        }
        ContributionEvent::Reported(r) => {
            update_contribution(
                tx,
                r.contribution_id,
                "reports = reports + 1, last_position = $2",
                &[p.into()],
            )
            .await?;
            let reason = name(&r.reason).map_err(|e| failed(event, e))?;
            log_moderation(
                tx,
                p,
                r.contribution_id,
                "reported",
                Some(&reason),
                None,
                &r.reported_at,
            )
            .await?;
        }
        ContributionEvent::Hidden(h) => {
            update_contribution(
                tx,
                h.contribution_id,
                "hidden = TRUE, last_position = $2",
                &[p.into()],
            )
            .await?;
            let trigger = name(&h.trigger).map_err(|e| failed(event, e))?;
            let reason = h.reason.as_ref().map(|r| r.as_str());
            log_moderation(
                tx,
                p,
                h.contribution_id,
                "hidden",
                reason,
                Some(trigger),
                &h.hidden_at,
            )
            .await?;
            recount_procedure(tx, h.contribution_id, p).await?;
        }
        ContributionEvent::Unhidden(u) => {
            update_contribution(
                tx,
                u.contribution_id,
                "hidden = FALSE, last_position = $2",
                &[p.into()],
            )
            .await?;
            log_moderation(
                tx,
                p,
                u.contribution_id,
                "unhidden",
                Some(u.reason.as_str()),
                None,
                &u.unhidden_at,
            )
            .await?;
            recount_procedure(tx, u.contribution_id, p).await?;
        }
        ContributionEvent::SupportGiven(s) => {
            update_contribution(
                tx,
                s.contribution_id,
                "supports = supports + 1, last_position = $2",
                &[p.into()],
            )
            .await?;
        }
        ContributionEvent::SupportWithdrawn(s) => {
            update_contribution(
                tx,
                s.contribution_id,
                "supports = supports - 1, last_position = $2",
                &[p.into()],
            )
            .await?;
        }
        // A draft is not public.
        ContributionEvent::AnswerDrafted(_) => {}
        ContributionEvent::AnswerPublished(a) => {
            let state = name(&a.state).map_err(|e| failed(event, e))?;
            let text = a.text.as_ref().map(|t| t.as_str().to_owned());
            update_contribution(
                tx,
                a.contribution_id,
                "answer_state = $2, answer_text = $3, last_position = $4",
                &[state.into(), text.into(), p.into()],
            )
            .await?;
        }
        ContributionEvent::Weighed(w) => {
            let result = name(&w.result).map_err(|e| failed(event, e))?;
            update_contribution(
                tx,
                w.contribution_id,
                "weighing = $2, last_position = $3",
                &[result.into(), p.into()],
            )
            .await?;
        }
    }
    Ok(())
}

async fn recount_gathering(tx: &mut ReadTx, id: GatheringId, position: u64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE participation_gatherings SET \
         confirmed = (SELECT COUNT(*) FROM participation_registrations r \
           WHERE r.gathering_id = $1 AND r.place = 'confirmed'), \
         waiting = (SELECT COUNT(*) FROM participation_registrations r \
           WHERE r.gathering_id = $1 AND r.place = 'waiting'), \
         last_position = $2 WHERE gathering_id = $1",
        &[id.to_string().into(), position.into()],
    )
    .await
    .map(drop)
}

async fn set_place(
    tx: &mut ReadTx,
    registration: &str,
    place: &str,
    position: u64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE participation_registrations SET place = $2, last_position = $3 \
         WHERE registration_id = $1",
        &[registration.into(), place.into(), position.into()],
    )
    .await
    .map(drop)
}

async fn apply_gathering(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &GatheringEvent,
) -> Result<(), ProjectionError> {
    let p = event.position;
    match e {
        GatheringEvent::Scheduled(s) => {
            let kind = name(&s.kind).map_err(|r| failed(event, r))?;
            tx.execute(
                "INSERT INTO participation_gatherings (gathering_id, procedure_id, kind, \
                 title, starts_at, ends_at, capacity, confirmed, waiting, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8) \
                 ON CONFLICT (gathering_id) DO NOTHING",
                &[
                    s.gathering_id.to_string().into(),
                    s.procedure_id.to_string().into(),
                    kind.into(),
                    s.title.as_str().into(),
                    s.starts_at.into(),
                    s.ends_at.into(),
                    s.capacity.into(),
                    p.into(),
                ],
            )
            .await?;
        }
        GatheringEvent::Registered(r) => {
            let place = name(&r.place).map_err(|e| failed(event, e))?;
            tx.execute(
                "INSERT INTO participation_registrations (registration_id, gathering_id, \
                 registrant, place, registered_at, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (registration_id) DO NOTHING",
                &[
                    r.registration_id.to_string().into(),
                    r.gathering_id.to_string().into(),
                    r.registrant.to_string().into(),
                    place.into(),
                    r.registered_at.into(),
                    p.into(),
                ],
            )
            .await?;
            recount_gathering(tx, r.gathering_id, p).await?;
        }
        GatheringEvent::Cancelled(c) => {
            set_place(tx, &c.registration_id.to_string(), "cancelled", p).await?;
            recount_gathering(tx, c.gathering_id, p).await?;
        }
        GatheringEvent::Confirmed(c) => {
            let place = name(&Place::Confirmed).map_err(|e| failed(event, e))?;
            set_place(tx, &c.registration_id.to_string(), &place, p).await?;
            recount_gathering(tx, c.gathering_id, p).await?;
        }
    }
    Ok(())
}
