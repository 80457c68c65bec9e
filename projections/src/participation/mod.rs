//! The participation read models and their public queries.
//!
//! One projection, `participation`, owns every participation table (created by the
//! participation migrations): procedures (with the columns the public search filters on
//! and its full-text index), their topics and rounds, contributions with their moderation
//! state, the public moderation log, gatherings and registrations. One projection rather
//! than several, because a contribution's events change its procedure's public count and
//! a registration's its gathering's places, and each table belongs to one projection.
//!
//! The public count of a procedure — its contributions that are neither hidden nor
//! withdrawn — lives in `participation_counts`, apart from the procedure's row, and moves
//! by the difference each event makes: +1 for a submission, −1 when a counted
//! contribution is hidden or withdrawn, +1 when a hidden one that was not withdrawn is
//! shown again. Nothing recounts, and the procedure's row (which the search reads, with
//! its full-text index) is written only when the procedure changes. A batch of events is
//! applied with its submissions inserted many rows at a time and its count changes summed
//! per procedure and written once, at its end; the result is that of the events one by
//! one (the rebuild test compares them). A gathering's confirmed and waiting places move
//! the same way, by the place a registration leaves and the place it takes.
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

use std::collections::BTreeMap;
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

use crate::db::{chunk_sizes, values_list, DbError, ReadTx, Value};
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
            "participation_counts",
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
            let mut batch = Batch::default();
            batch.apply(tx, event, record).await?;
            batch.finish(tx).await
        })
    }

    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        events: &'a [(RecordedEvent, EventRecord)],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut batch = Batch::default();
            for (event, record) in events {
                batch.apply(tx, event, record).await?;
            }
            batch.finish(tx).await
        })
    }
}

/// A submission waiting to be inserted with the others of its batch.
struct NewContribution {
    contribution_id: String,
    procedure_id: String,
    round_id: String,
    kind: String,
    author: String,
    late: bool,
    submitted_at: sqlx::types::chrono::DateTime<sqlx::types::chrono::Utc>,
    position: u64,
    choices: Option<String>,
}

fn new_contribution(
    event: &RecordedEvent,
    s: &amtsbuch_domain::participation::contribution::ContributionSubmitted,
) -> Result<NewContribution, ProjectionError> {
    let choices = if s.choices.is_empty() {
        None
    } else {
        Some(json(&s.choices).map_err(|r| failed(event, r))?)
    };
    Ok(NewContribution {
        contribution_id: s.contribution_id.to_string(),
        procedure_id: s.procedure_id.to_string(),
        round_id: s.round_id.to_string(),
        kind: name(&s.kind).map_err(|r| failed(event, r))?,
        author: s.author.to_string(),
        late: s.late,
        submitted_at: s.submitted_at,
        position: event.position,
        choices,
    })
}

/// Submissions are inserted this many rows to a statement at most (10 parameters each).
const INSERT_ROWS: usize = 64;

/// What a batch has not written yet: its latest submissions, and the change of every
/// procedure's public count. Submissions are inserted before any other contribution event
/// is applied (it may be about one of them), and the counts at the end of the batch, so
/// the tables end as if every event had been applied by itself.
#[derive(Default)]
struct Batch {
    submitted: Vec<NewContribution>,
    counts: BTreeMap<String, i64>,
}

impl Batch {
    async fn apply(
        &mut self,
        tx: &mut ReadTx,
        event: &RecordedEvent,
        record: &EventRecord,
    ) -> Result<(), ProjectionError> {
        let procedure = |s: &StreamId| ProcedureId::from_stream(s).is_some();
        let contribution = |s: &StreamId| ContributionId::from_stream(s).is_some();
        let gathering = |s: &StreamId| GatheringId::from_stream(s).is_some();
        if let Some(e) = read_event::<ProcedureEvent>(NAME, procedure, event, record) {
            apply_procedure(tx, event, &e).await
        } else if let Some(e) = read_event::<ContributionEvent>(NAME, contribution, event, record) {
            match &e {
                ContributionEvent::Submitted(s) => {
                    self.submitted.push(new_contribution(event, s)?);
                    Ok(())
                }
                // A draft is not public.
                ContributionEvent::AnswerDrafted(_) => Ok(()),
                // Any other event may be about a submission of this batch: those are
                // inserted first.
                other => {
                    self.insert_submitted(tx).await?;
                    apply_contribution(tx, event, other, &mut self.counts).await
                }
            }
        } else if let Some(e) = read_event::<GatheringEvent>(NAME, gathering, event, record) {
            apply_gathering(tx, event, &e).await
        } else {
            Ok(())
        }
    }

    /// Inserts the pending submissions, many rows to a statement; each that was new counts.
    async fn insert_submitted(&mut self, tx: &mut ReadTx) -> Result<(), DbError> {
        let pending = std::mem::take(&mut self.submitted);
        let mut rest = pending.as_slice();
        for size in chunk_sizes(pending.len(), INSERT_ROWS) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let mut params: Vec<Value<'_>> = Vec::with_capacity(size * 10);
            for c in chunk {
                params.extend([
                    c.contribution_id.as_str().into(),
                    c.procedure_id.as_str().into(),
                    c.round_id.as_str().into(),
                    c.kind.as_str().into(),
                    c.author.as_str().into(),
                    c.late.into(),
                    c.submitted_at.into(),
                    c.position.into(),
                    c.choices.as_deref().into(),
                    c.position.into(),
                ]);
            }
            let inserted = tx
                .fetch_all(
                    &format!(
                        "INSERT INTO participation_contributions (contribution_id, \
                         procedure_id, round_id, kind, author, late, submitted_at, position, \
                         choices, last_position) {} \
                         ON CONFLICT (contribution_id) DO NOTHING RETURNING procedure_id",
                        values_list(10, size)
                    ),
                    &params,
                )
                .await?;
            for row in &inserted {
                *self.counts.entry(row.get("procedure_id")?).or_default() += 1;
            }
        }
        Ok(())
    }

    /// Writes what is pending: the submissions, then every count that changed.
    async fn finish(mut self, tx: &mut ReadTx) -> Result<(), ProjectionError> {
        self.insert_submitted(tx).await?;
        let changed: Vec<(String, i64)> =
            self.counts.into_iter().filter(|(_, d)| *d != 0).collect();
        let mut rest = changed.as_slice();
        for size in chunk_sizes(changed.len(), INSERT_ROWS) {
            let (chunk, after) = rest.split_at(size);
            rest = after;
            let params: Vec<Value<'_>> = chunk
                .iter()
                .flat_map(|(id, delta)| [id.as_str().into(), (*delta).into()])
                .collect();
            tx.execute(
                &format!(
                    "INSERT INTO participation_counts (procedure_id, contributions) {} \
                     ON CONFLICT (procedure_id) DO UPDATE \
                     SET contributions = participation_counts.contributions + EXCLUDED.contributions",
                    values_list(2, size)
                ),
                &params,
            )
            .await?;
        }
        Ok(())
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
                     last_position) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9, $10, $11, $12, $13, \
                     $14, $15, $16) ON CONFLICT (procedure_id) DO NOTHING",
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
                tx.execute(
                    "INSERT INTO participation_counts (procedure_id, contributions) \
                     VALUES ($1, 0) ON CONFLICT (procedure_id) DO NOTHING",
                    &[d.procedure_id.to_string().into()],
                )
                .await?;
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

/// The two states that take a contribution out of its procedure's public count.
#[derive(Debug, Clone, Copy)]
enum Flag {
    Hidden,
    Withdrawn,
}

/// Sets `flag` of a contribution to `value`, and moves its procedure's count by the
/// difference: a contribution counts while it is neither hidden nor withdrawn.
async fn set_flag(
    tx: &mut ReadTx,
    id: ContributionId,
    flag: Flag,
    value: bool,
    position: u64,
    changes: &mut BTreeMap<String, i64>,
) -> Result<(), DbError> {
    let before = tx
        .fetch_optional(
            "SELECT procedure_id, hidden, withdrawn FROM participation_contributions \
             WHERE contribution_id = $1",
            &[id.to_string().into()],
        )
        .await?;
    let set = match flag {
        Flag::Hidden => "hidden = $2, last_position = $3",
        Flag::Withdrawn => "withdrawn = $2, last_position = $3",
    };
    update_contribution(tx, id, set, &[value.into(), position.into()]).await?;
    if let Some(row) = before {
        let (hidden, withdrawn): (bool, bool) = (row.get("hidden")?, row.get("withdrawn")?);
        let (hidden_after, withdrawn_after) = match flag {
            Flag::Hidden => (value, withdrawn),
            Flag::Withdrawn => (hidden, value),
        };
        let delta = i64::from(!hidden_after && !withdrawn_after) - i64::from(!hidden && !withdrawn);
        if delta != 0 {
            *changes.entry(row.get("procedure_id")?).or_default() += delta;
        }
    }
    Ok(())
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

/// Applies a contribution event to a contribution the read model holds (submissions and
/// answer drafts are the batch's); the changes of the public counts are added to
/// `changes`.
async fn apply_contribution(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &ContributionEvent,
    changes: &mut BTreeMap<String, i64>,
) -> Result<(), ProjectionError> {
    let p = event.position;
    match e {
        // Inserted by the batch; a draft is not public.
        ContributionEvent::Submitted(_) | ContributionEvent::AnswerDrafted(_) => {}
        ContributionEvent::Withdrawn(w) => {
            set_flag(tx, w.contribution_id, Flag::Withdrawn, true, p, changes).await?;
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
            set_flag(tx, h.contribution_id, Flag::Hidden, true, p, changes).await?;
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
        }
        ContributionEvent::Unhidden(u) => {
            set_flag(tx, u.contribution_id, Flag::Hidden, false, p, changes).await?;
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

/// Moves a registration of gathering `id` from the place `from` to the place `to` (either
/// none: a new registration, or a registration the read model does not know), and the
/// gathering's confirmed and waiting places with it.
async fn move_place(
    tx: &mut ReadTx,
    id: GatheringId,
    from: Option<&str>,
    to: Option<&str>,
    position: u64,
) -> Result<(), DbError> {
    let delta = |place: &str| i64::from(to == Some(place)) - i64::from(from == Some(place));
    let (confirmed, waiting) = (delta("confirmed"), delta("waiting"));
    if confirmed == 0 && waiting == 0 {
        return Ok(());
    }
    tx.execute(
        "UPDATE participation_gatherings SET confirmed = confirmed + $2, \
         waiting = waiting + $3, last_position = $4 WHERE gathering_id = $1",
        &[
            id.to_string().into(),
            confirmed.into(),
            waiting.into(),
            position.into(),
        ],
    )
    .await
    .map(drop)
}

/// Sets the place of a registration; the place it had, if the read model knows it.
async fn set_place(
    tx: &mut ReadTx,
    registration: &str,
    place: &str,
    position: u64,
) -> Result<Option<String>, DbError> {
    let before = tx
        .fetch_optional(
            "SELECT place FROM participation_registrations WHERE registration_id = $1",
            &[registration.into()],
        )
        .await?
        .map(|row| row.get::<String>("place"))
        .transpose()?;
    tx.execute(
        "UPDATE participation_registrations SET place = $2, last_position = $3 \
         WHERE registration_id = $1",
        &[registration.into(), place.into(), position.into()],
    )
    .await?;
    Ok(before)
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
            let inserted = tx
                .execute(
                    "INSERT INTO participation_registrations (registration_id, gathering_id, \
                 registrant, place, registered_at, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (registration_id) DO NOTHING",
                    &[
                        r.registration_id.to_string().into(),
                        r.gathering_id.to_string().into(),
                        r.registrant.to_string().into(),
                        place.as_str().into(),
                        r.registered_at.into(),
                        p.into(),
                    ],
                )
                .await?;
            if inserted == 1 {
                move_place(tx, r.gathering_id, None, Some(&place), p).await?;
            }
        }
        GatheringEvent::Cancelled(c) => {
            let from = set_place(tx, &c.registration_id.to_string(), "cancelled", p).await?;
            move_place(tx, c.gathering_id, from.as_deref(), Some("cancelled"), p).await?;
        }
        GatheringEvent::Confirmed(c) => {
            let place = name(&Place::Confirmed).map_err(|e| failed(event, e))?;
            let from = set_place(tx, &c.registration_id.to_string(), &place, p).await?;
            move_place(tx, c.gathering_id, from.as_deref(), Some(&place), p).await?;
        }
    }
    Ok(())
}
