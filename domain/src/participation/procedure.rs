//! A participation procedure: who runs it (its authority, recorded when it is drafted and
//! never changed), what it is (format, title, topics, region, geometry, survey), its
//! status, and its rounds.
//!
//! Status: draft → announced (Ankündigung) → evaluating → decided (Beschluss) → archived,
//! and cancelled (Abgesagt) from announced. *Active* (Aktiv) is an announced procedure
//! whose first round has started: the log records the announcement and the rounds with
//! their server-time periods, and the status shown at an instant follows from them
//! ([`Procedure::status_at`]), so nothing has to be recorded when a period begins.
//!
//! A round's period is half-open, `starts_at ≤ t < ends_at`, and its documents are fixed
//! when it is scheduled: a changed plan is a new round. A § 3 (2) display lasts at least
//! one month and at least 30 days and is announced before it starts.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

use super::events::{events, Shape};
use super::survey::{Survey, SurveyError};
use super::{
    instant, Ags, ContributionKind, DocumentError, DocumentRef, Format, Geometry, ProcedureId,
    PublicText, Reason, RoundId, Stage, Title, Topic,
};
use crate::decider::decider;
use crate::record::timestamp;
use crate::stream::AuthorityId;

/// How many reports hide a contribution unless the procedure says otherwise.
pub const DEFAULT_REPORT_THRESHOLD: u32 = 3;

/// The statuses as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Draft,
    Announced,
    Evaluating,
    Decided,
    Archived,
    Cancelled,
}

/// The statuses as shown: the recorded ones, with *active* for an announced procedure
/// whose first round has begun.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicStatus {
    Draft,
    Announced,
    Active,
    Evaluating,
    Decided,
    Archived,
    Cancelled,
}

impl PublicStatus {
    pub const ALL: [PublicStatus; 7] = [
        Self::Draft,
        Self::Announced,
        Self::Active,
        Self::Evaluating,
        Self::Decided,
        Self::Archived,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Announced => "announced",
            Self::Active => "active",
            Self::Evaluating => "evaluating",
            Self::Decided => "decided",
            Self::Archived => "archived",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// A round: its period, the documents on display, and whether late statements may be
/// disregarded (the preclusion notice given with the announcement).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Round {
    pub round_id: RoundId,
    /// The stage of a land-use plan the round is held under; none for other formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<Stage>,
    #[serde(with = "timestamp")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub ends_at: DateTime<Utc>,
    pub documents: Vec<DocumentRef>,
    pub preclusion_notice: bool,
}

impl Round {
    pub fn is_open_at(&self, t: DateTime<Utc>) -> bool {
        self.starts_at <= t && t < self.ends_at
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Draft a procedure for the organiser's authority.
#[derive(Debug, Clone, PartialEq)]
pub struct DraftProcedure {
    pub procedure_id: ProcedureId,
    pub authority: AuthorityId,
    pub format: Format,
    pub title: Title,
    pub topics: Vec<Topic>,
    pub region: Ags,
    pub geometry: Option<Geometry>,
    /// Whether contributions after a round's end are recorded as late instead of refused.
    pub accepts_late: bool,
    /// Reports that hide a contribution; [`DEFAULT_REPORT_THRESHOLD`] when not given.
    pub report_threshold: Option<u32>,
    /// The questions, for a survey (and only for one).
    pub survey: Option<Survey>,
    pub at: DateTime<Utc>,
}

/// Schedule a round with its documents.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRound {
    pub round_id: RoundId,
    pub stage: Option<Stage>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub documents: Vec<DocumentRef>,
    pub preclusion_notice: bool,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProcedureCommand {
    Draft(DraftProcedure),
    /// Publish the announcement (Ankündigung).
    Announce {
        at: DateTime<Utc>,
    },
    ScheduleRound(ScheduleRound),
    /// Close participation and weigh what came in.
    StartEvaluation {
        at: DateTime<Utc>,
    },
    /// Record the decision (Beschluss); publishes the weighing.
    Decide {
        summary: PublicText,
        at: DateTime<Utc>,
    },
    Archive {
        at: DateTime<Utc>,
    },
    Cancel {
        reason: Reason,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `ProcedureDrafted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureDrafted {
    pub procedure_id: ProcedureId,
    pub authority: AuthorityId,
    pub format: Format,
    pub title: Title,
    pub topics: Vec<Topic>,
    pub region: Ags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub geometry: Option<Geometry>,
    pub accepts_late: bool,
    pub report_threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survey: Option<Survey>,
    #[serde(with = "timestamp")]
    pub drafted_at: DateTime<Utc>,
}

/// `ProcedureAnnounced`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureAnnounced {
    pub procedure_id: ProcedureId,
    #[serde(with = "timestamp")]
    pub announced_at: DateTime<Utc>,
}

/// `RoundScheduled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoundScheduled {
    pub procedure_id: ProcedureId,
    pub round: Round,
    #[serde(with = "timestamp")]
    pub scheduled_at: DateTime<Utc>,
}

/// `EvaluationStarted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationStarted {
    pub procedure_id: ProcedureId,
    #[serde(with = "timestamp")]
    pub started_at: DateTime<Utc>,
}

/// `ProcedureDecided`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureDecided {
    pub procedure_id: ProcedureId,
    pub summary: PublicText,
    #[serde(with = "timestamp")]
    pub decided_at: DateTime<Utc>,
}

/// `ProcedureArchived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureArchived {
    pub procedure_id: ProcedureId,
    #[serde(with = "timestamp")]
    pub archived_at: DateTime<Utc>,
}

/// `ProcedureCancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureCancelled {
    pub procedure_id: ProcedureId,
    pub reason: Reason,
    #[serde(with = "timestamp")]
    pub cancelled_at: DateTime<Utc>,
}

macro_rules! shape {
    ($ty:ty = $name:literal, at $at:ident) => {
        impl Shape for $ty {
            const NAME: &'static str = $name;
            fn at(&self) -> DateTime<Utc> {
                self.$at
            }
        }
    };
}

shape!(ProcedureDrafted = "ProcedureDrafted", at drafted_at);
shape!(ProcedureAnnounced = "ProcedureAnnounced", at announced_at);
shape!(RoundScheduled = "RoundScheduled", at scheduled_at);
shape!(EvaluationStarted = "EvaluationStarted", at started_at);
shape!(ProcedureDecided = "ProcedureDecided", at decided_at);
shape!(ProcedureArchived = "ProcedureArchived", at archived_at);
shape!(ProcedureCancelled = "ProcedureCancelled", at cancelled_at);

#[derive(Debug, Clone, PartialEq)]
pub enum ProcedureEvent {
    Drafted(ProcedureDrafted),
    Announced(ProcedureAnnounced),
    RoundScheduled(RoundScheduled),
    EvaluationStarted(EvaluationStarted),
    Decided(ProcedureDecided),
    Archived(ProcedureArchived),
    Cancelled(ProcedureCancelled),
}

events!(
    ProcedureEvent,
    procedure_id,
    [
        Drafted(ProcedureDrafted),
        Announced(ProcedureAnnounced),
        RoundScheduled(RoundScheduled),
        EvaluationStarted(EvaluationStarted),
        Decided(ProcedureDecided),
        Archived(ProcedureArchived),
        Cancelled(ProcedureCancelled),
    ]
);

// ---------------------------------------------------------------------------------------
// State and decider
// ---------------------------------------------------------------------------------------

/// A drafted procedure, as its events describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct Procedure {
    pub id: ProcedureId,
    pub authority: AuthorityId,
    pub format: Format,
    pub title: Title,
    pub topics: Vec<Topic>,
    pub region: Ags,
    pub geometry: Option<Geometry>,
    pub accepts_late: bool,
    pub report_threshold: u32,
    pub survey: Option<Survey>,
    pub status: Status,
    pub drafted_at: DateTime<Utc>,
    pub announced_at: Option<DateTime<Utc>>,
    /// In the order scheduled, which is the order in time: each starts when or after the
    /// previous one ends.
    pub rounds: Vec<Round>,
    pub decision: Option<PublicText>,
    pub decided_at: Option<DateTime<Utc>>,
}

/// Whether and how a contribution is taken at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The round it is recorded under.
    pub round_id: RoundId,
    /// Submitted after that round's end, in a procedure that records late contributions.
    pub late: bool,
}

/// Why a contribution is not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Closed {
    #[error("this procedure takes no {0} contributions")]
    WrongKind(&'static str),
    #[error("the procedure is {0}, not open for contributions")]
    NotOpen(&'static str),
    #[error("no round of the procedure has started yet")]
    NotStarted,
    #[error("the round ended at {0}; this procedure does not take late contributions")]
    Ended(String),
}

impl Procedure {
    /// The status shown at `t`.
    pub fn status_at(&self, t: DateTime<Utc>) -> PublicStatus {
        match self.status {
            Status::Draft => PublicStatus::Draft,
            Status::Announced if self.rounds.first().is_some_and(|r| r.starts_at <= t) => {
                PublicStatus::Active
            }
            Status::Announced => PublicStatus::Announced,
            Status::Evaluating => PublicStatus::Evaluating,
            Status::Decided => PublicStatus::Decided,
            Status::Archived => PublicStatus::Archived,
            Status::Cancelled => PublicStatus::Cancelled,
        }
    }

    /// The stage shown: that of the last round begun by `t` (or the first, before any),
    /// and the decision once decided. Only land-use plans have stages.
    pub fn stage_at(&self, t: DateTime<Utc>) -> Option<Stage> {
        if self.format != Format::Bauleitplanung {
            return None;
        }
        if matches!(self.status, Status::Decided | Status::Archived) && self.decided_at.is_some() {
            return Some(Stage::Satzungsbeschluss);
        }
        self.rounds
            .iter()
            .rev()
            .find(|r| r.starts_at <= t)
            .or(self.rounds.first())
            .and_then(|r| r.stage)
    }

    /// Whether a contribution of `kind` is taken at `t`, and under which round: only in an
    /// announced procedure, only while a round is open — after a round's end only where
    /// the procedure records late contributions, until the next round begins.
    pub fn admits(&self, kind: ContributionKind, t: DateTime<Utc>) -> Result<Admission, Closed> {
        if self.format.contribution_kind() != Some(kind) {
            return Err(Closed::WrongKind(kind.as_str()));
        }
        if self.status != Status::Announced {
            return Err(Closed::NotOpen(self.status_at(t).as_str()));
        }
        let Some(round) = self.rounds.iter().rev().find(|r| r.starts_at <= t) else {
            return Err(Closed::NotStarted);
        };
        if t < round.ends_at {
            return Ok(Admission {
                round_id: round.round_id,
                late: false,
            });
        }
        if self.accepts_late {
            Ok(Admission {
                round_id: round.round_id,
                late: true,
            })
        } else {
            Err(Closed::Ended(crate::record::format_timestamp(
                &round.ends_at,
            )))
        }
    }

    pub fn round(&self, id: RoundId) -> Option<&Round> {
        self.rounds.iter().find(|r| r.round_id == id)
    }
}

/// The state of a procedure stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ProcedureState {
    #[default]
    None,
    Drafted(Box<Procedure>),
}

impl ProcedureState {
    pub fn procedure(&self) -> Option<&Procedure> {
        match self {
            Self::None => None,
            Self::Drafted(p) => Some(p),
        }
    }
}

/// Why a procedure command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcedureError {
    #[error("this procedure has already been drafted")]
    AlreadyDrafted,
    #[error("no procedure has been drafted under this id")]
    NotDrafted,
    #[error("a procedure has 0 to 20 topics, each once")]
    Topics,
    #[error("the report threshold is 1 to 1000")]
    ReportThreshold,
    #[error("a survey procedure has a survey, and no other format has one")]
    SurveyFormat,
    #[error(transparent)]
    Survey(#[from] SurveyError),
    #[error("the procedure is {0}; {1}")]
    Status(&'static str, &'static str),
    #[error("a round must end after it starts")]
    EmptyPeriod,
    #[error("a round cannot start in the past")]
    StartsInThePast,
    #[error("a round of a land-use plan names its stage (and the decision is no round); other formats name none")]
    Stage,
    #[error("a display under § 3 (2) BauGB lasts at least one month and at least 30 days; this one ends before {0}")]
    DisplayTooShort(String),
    #[error("a display under § 3 (2) BauGB is announced before it starts, and the announcement was at {0}")]
    AnnouncedTooLate(String),
    #[error("the announcement must come before every round starts; a round started at {0}")]
    LateAnnouncement(String),
    #[error("a round starts when or after the previous round ends, at {0}")]
    Overlap(String),
    #[error("round {0} has already been scheduled; a changed plan is a new round")]
    RoundExists(String),
    #[error("a display under § 3 (2) BauGB shows at least one document")]
    NoDocuments,
    #[error("a round shows at most 200 documents, each hash once")]
    Documents,
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error("participation cannot be closed before the last round ends, at {0}")]
    RoundsRunning(String),
    #[error("participation cannot be closed before a round was held")]
    NoRounds,
    #[error("a display under § 3 (2) BauGB starting at {0} would end beyond the last representable instant")]
    BeyondTime(String),
}

/// The earliest end of a § 3 (2) display starting at `start`: one month later, but at
/// least 30 days later; `None` where that lies beyond the last instant `chrono`
/// represents (a start in the year 262142).
pub fn minimum_display_end(start: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let thirty_days = start.checked_add_signed(chrono::Duration::days(30))?;
    let month = start.checked_add_months(Months::new(1))?;
    Some(month.max(thirty_days))
}

fn status_error(p: &Procedure, what: &'static str) -> ProcedureError {
    let status = match p.status {
        Status::Draft => "draft",
        Status::Announced => "announced",
        Status::Evaluating => "evaluating",
        Status::Decided => "decided",
        Status::Archived => "archived",
        Status::Cancelled => "cancelled",
    };
    ProcedureError::Status(status, what)
}

fn draft(c: &DraftProcedure) -> Result<ProcedureEvent, ProcedureError> {
    let mut topics = c.topics.clone();
    topics.sort();
    topics.dedup();
    if topics.len() != c.topics.len() || topics.len() > 20 {
        return Err(ProcedureError::Topics);
    }
    let report_threshold = c.report_threshold.unwrap_or(DEFAULT_REPORT_THRESHOLD);
    if !(1..=1000).contains(&report_threshold) {
        return Err(ProcedureError::ReportThreshold);
    }
    match (&c.survey, c.format) {
        (Some(survey), Format::Survey) => survey.check()?,
        (None, Format::Survey) | (Some(_), _) => return Err(ProcedureError::SurveyFormat),
        (None, _) => {}
    }
    Ok(ProcedureEvent::Drafted(ProcedureDrafted {
        procedure_id: c.procedure_id,
        authority: c.authority.clone(),
        format: c.format,
        title: c.title.clone(),
        topics: c.topics.clone(),
        region: c.region.clone(),
        geometry: c.geometry.clone(),
        accepts_late: c.accepts_late,
        report_threshold,
        survey: c.survey.clone(),
        drafted_at: instant(c.at),
    }))
}

fn schedule(p: &Procedure, c: &ScheduleRound) -> Result<ProcedureEvent, ProcedureError> {
    if !matches!(p.status, Status::Draft | Status::Announced) {
        return Err(status_error(
            p,
            "rounds are scheduled in a draft or announced procedure",
        ));
    }
    if p.round(c.round_id).is_some() {
        return Err(ProcedureError::RoundExists(c.round_id.to_string()));
    }
    let (at, starts_at, ends_at) = (instant(c.at), instant(c.starts_at), instant(c.ends_at));
    if ends_at <= starts_at {
        return Err(ProcedureError::EmptyPeriod);
    }
    if starts_at < at {
        return Err(ProcedureError::StartsInThePast);
    }
    let stage_fits = match (p.format, c.stage) {
        (Format::Bauleitplanung, Some(Stage::Satzungsbeschluss)) => false,
        (Format::Bauleitplanung, stage) => stage.is_some(),
        (_, stage) => stage.is_none(),
    };
    if !stage_fits {
        return Err(ProcedureError::Stage);
    }
    if let Some(last) = p.rounds.last() {
        if starts_at < last.ends_at {
            return Err(ProcedureError::Overlap(crate::record::format_timestamp(
                &last.ends_at,
            )));
        }
    }
    if c.documents.len() > 200 {
        return Err(ProcedureError::Documents);
    }
    let mut hashes: Vec<&str> = c.documents.iter().map(|d| d.sha256.as_str()).collect();
    hashes.sort_unstable();
    hashes.dedup();
    if hashes.len() != c.documents.len() {
        return Err(ProcedureError::Documents);
    }
    for d in &c.documents {
        d.check()?;
    }
    if c.stage == Some(Stage::Auslegung32) {
        let minimum = minimum_display_end(starts_at).ok_or_else(|| {
            ProcedureError::BeyondTime(crate::record::format_timestamp(&starts_at))
        })?;
        if ends_at < minimum {
            return Err(ProcedureError::DisplayTooShort(
                crate::record::format_timestamp(&minimum),
            ));
        }
        if c.documents.is_empty() {
            return Err(ProcedureError::NoDocuments);
        }
        if let Some(announced_at) = p.announced_at {
            if announced_at >= starts_at {
                return Err(ProcedureError::AnnouncedTooLate(
                    crate::record::format_timestamp(&announced_at),
                ));
            }
        }
    }
    Ok(ProcedureEvent::RoundScheduled(RoundScheduled {
        procedure_id: p.id,
        round: Round {
            round_id: c.round_id,
            stage: c.stage,
            starts_at,
            ends_at,
            documents: c.documents.clone(),
            preclusion_notice: c.preclusion_notice,
        },
        scheduled_at: at,
    }))
}

/// Decides a procedure command.
pub fn decide(
    command: &ProcedureCommand,
    state: &ProcedureState,
) -> Result<Vec<ProcedureEvent>, ProcedureError> {
    let p = match (command, state) {
        (ProcedureCommand::Draft(c), ProcedureState::None) => return Ok(vec![draft(c)?]),
        (ProcedureCommand::Draft(_), ProcedureState::Drafted(_)) => {
            return Err(ProcedureError::AlreadyDrafted)
        }
        (_, ProcedureState::None) => return Err(ProcedureError::NotDrafted),
        (_, ProcedureState::Drafted(p)) => p,
    };
    let event = match command {
        ProcedureCommand::Draft(_) => return Err(ProcedureError::AlreadyDrafted),
        ProcedureCommand::Announce { at } => {
            // A repeated announcement changes nothing.
            if p.announced_at.is_some() {
                return Ok(vec![]);
            }
            if p.status != Status::Draft {
                return Err(status_error(p, "only a draft is announced"));
            }
            let at = instant(*at);
            if let Some(started) = p.rounds.iter().find(|r| r.starts_at <= at) {
                return Err(ProcedureError::LateAnnouncement(
                    crate::record::format_timestamp(&started.starts_at),
                ));
            }
            ProcedureEvent::Announced(ProcedureAnnounced {
                procedure_id: p.id,
                announced_at: at,
            })
        }
        ProcedureCommand::ScheduleRound(c) => schedule(p, c)?,
        ProcedureCommand::StartEvaluation { at } => {
            if p.status != Status::Announced {
                return Err(status_error(p, "only an announced procedure is evaluated"));
            }
            let at = instant(*at);
            let last = p.rounds.last().ok_or(ProcedureError::NoRounds)?;
            if at < last.ends_at {
                return Err(ProcedureError::RoundsRunning(
                    crate::record::format_timestamp(&last.ends_at),
                ));
            }
            ProcedureEvent::EvaluationStarted(EvaluationStarted {
                procedure_id: p.id,
                started_at: at,
            })
        }
        ProcedureCommand::Decide { summary, at } => {
            if p.status != Status::Evaluating {
                return Err(status_error(
                    p,
                    "only a procedure under evaluation is decided",
                ));
            }
            ProcedureEvent::Decided(ProcedureDecided {
                procedure_id: p.id,
                summary: summary.clone(),
                decided_at: instant(*at),
            })
        }
        ProcedureCommand::Archive { at } => match p.status {
            Status::Decided | Status::Cancelled => ProcedureEvent::Archived(ProcedureArchived {
                procedure_id: p.id,
                archived_at: instant(*at),
            }),
            Status::Archived => return Ok(vec![]),
            _ => {
                return Err(status_error(
                    p,
                    "only a decided or cancelled procedure is archived",
                ))
            }
        },
        ProcedureCommand::Cancel { reason, at } => match p.status {
            Status::Announced => ProcedureEvent::Cancelled(ProcedureCancelled {
                procedure_id: p.id,
                reason: reason.clone(),
                cancelled_at: instant(*at),
            }),
            Status::Cancelled => return Ok(vec![]),
            _ => {
                return Err(status_error(
                    p,
                    "only an announced or active procedure is cancelled",
                ))
            }
        },
    };
    Ok(vec![event])
}

/// Applies an event; combinations `decide` never produces leave the state as it is.
pub fn evolve(state: ProcedureState, event: &ProcedureEvent) -> ProcedureState {
    match (state, event) {
        (ProcedureState::None, ProcedureEvent::Drafted(e)) => {
            ProcedureState::Drafted(Box::new(Procedure {
                id: e.procedure_id,
                authority: e.authority.clone(),
                format: e.format,
                title: e.title.clone(),
                topics: e.topics.clone(),
                region: e.region.clone(),
                geometry: e.geometry.clone(),
                accepts_late: e.accepts_late,
                report_threshold: e.report_threshold,
                survey: e.survey.clone(),
                status: Status::Draft,
                drafted_at: e.drafted_at,
                announced_at: None,
                rounds: Vec::new(),
                decision: None,
                decided_at: None,
            }))
        }
        (ProcedureState::Drafted(mut p), event) => {
            match event {
                ProcedureEvent::Drafted(_) => {}
                ProcedureEvent::Announced(e) => {
                    p.status = Status::Announced;
                    p.announced_at = Some(e.announced_at);
                }
                ProcedureEvent::RoundScheduled(e) => p.rounds.push(e.round.clone()),
                ProcedureEvent::EvaluationStarted(_) => p.status = Status::Evaluating,
                ProcedureEvent::Decided(e) => {
                    p.status = Status::Decided;
                    p.decision = Some(e.summary.clone());
                    p.decided_at = Some(e.decided_at);
                }
                ProcedureEvent::Archived(_) => p.status = Status::Archived,
                ProcedureEvent::Cancelled(_) => p.status = Status::Cancelled,
            }
            ProcedureState::Drafted(p)
        }
        (state, _) => state,
    }
}

decider!(ProcedureState: ProcedureCommand => ProcedureEvent, ProcedureError);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{DomainEvent, PartsError};
    use crate::participation::survey::tests::survey;
    use crate::participation::testing::*;
    use crate::participation::Sha256Hex;

    pub const T0: &str = "2026-03-02T08:00:00Z";

    pub fn procedure_id() -> ProcedureId {
        ProcedureId(uuid(0x10))
    }

    pub fn round_id(n: u128) -> RoundId {
        RoundId(uuid(0x100 + n))
    }

    pub fn authority() -> AuthorityId {
        AuthorityId::parse("stadt-dresden").expect("authority")
    }

    pub fn draft_command(format: Format) -> DraftProcedure {
        DraftProcedure {
            procedure_id: procedure_id(),
            authority: authority(),
            format,
            title: Title::parse("Bebauungsplan Nr. 357 Dresden-Johannstadt").expect("title"),
            topics: vec![Topic::parse("wohnen").expect("topic")],
            region: Ags::parse("14612000").expect("ags"),
            geometry: Some(Geometry::Point {
                coordinates: super::super::Position::new(13.7373, 51.0504).expect("position"),
            }),
            accepts_late: false,
            report_threshold: None,
            survey: (format == Format::Survey).then(survey),
            at: at(T0),
        }
    }

    pub fn drafted(format: Format) -> ProcedureEvent {
        match draft(&draft_command(format)) {
            Ok(e) => e,
            Err(e) => panic!("draft: {e}"),
        }
    }

    pub fn document(c: char) -> DocumentRef {
        DocumentRef {
            sha256: hash(c),
            size: 1_234_567,
            title: Title::parse("Planzeichnung").expect("title"),
        }
    }

    pub fn schedule_command(
        n: u128,
        stage: Option<Stage>,
        starts: &str,
        len: chrono::Duration,
    ) -> ScheduleRound {
        ScheduleRound {
            round_id: round_id(n),
            stage,
            starts_at: at(starts),
            ends_at: at(starts) + len,
            documents: vec![document('a')],
            preclusion_notice: true,
            at: at(T0),
        }
    }

    pub fn scheduled(
        n: u128,
        stage: Option<Stage>,
        starts: &str,
        len: chrono::Duration,
    ) -> ProcedureEvent {
        let c = schedule_command(n, stage, starts, len);
        ProcedureEvent::RoundScheduled(RoundScheduled {
            procedure_id: procedure_id(),
            round: Round {
                round_id: c.round_id,
                stage: c.stage,
                starts_at: c.starts_at,
                ends_at: c.ends_at,
                documents: c.documents,
                preclusion_notice: true,
            },
            scheduled_at: at(T0),
        })
    }

    pub fn announced(when: &str) -> ProcedureEvent {
        ProcedureEvent::Announced(ProcedureAnnounced {
            procedure_id: procedure_id(),
            announced_at: at(when),
        })
    }

    pub fn fold(events: &[ProcedureEvent]) -> ProcedureState {
        events.iter().fold(ProcedureState::None, evolve)
    }

    fn check(
        given: &[ProcedureEvent],
        when: ProcedureCommand,
        then: Result<Vec<ProcedureEvent>, ProcedureError>,
    ) {
        assert_eq!(decide(&when, &fold(given)), then);
    }

    fn schedule(c: ScheduleRound) -> ProcedureCommand {
        ProcedureCommand::ScheduleRound(c)
    }

    const DISPLAY: Option<Stage> = Some(Stage::Auslegung32);

    #[test]
    fn a_procedure_is_drafted_once_with_its_facts_checked() {
        let bplan = Format::Bauleitplanung;
        check(
            &[],
            ProcedureCommand::Draft(draft_command(bplan)),
            Ok(vec![drafted(bplan)]),
        );
        check(
            &[drafted(bplan)],
            ProcedureCommand::Draft(draft_command(bplan)),
            Err(ProcedureError::AlreadyDrafted),
        );
        check(
            &[],
            ProcedureCommand::Announce { at: at(T0) },
            Err(ProcedureError::NotDrafted),
        );
        let mut twice = draft_command(bplan);
        twice.topics.push(twice.topics[0].clone());
        check(
            &[],
            ProcedureCommand::Draft(twice),
            Err(ProcedureError::Topics),
        );
        let mut threshold = draft_command(bplan);
        threshold.report_threshold = Some(0);
        check(
            &[],
            ProcedureCommand::Draft(threshold),
            Err(ProcedureError::ReportThreshold),
        );
        let mut no_survey = draft_command(Format::Survey);
        no_survey.survey = None;
        check(
            &[],
            ProcedureCommand::Draft(no_survey),
            Err(ProcedureError::SurveyFormat),
        );
        let mut stray_survey = draft_command(Format::Dialog);
        stray_survey.survey = Some(survey());
        check(
            &[],
            ProcedureCommand::Draft(stray_survey),
            Err(ProcedureError::SurveyFormat),
        );
        let ProcedureEvent::Drafted(d) = drafted(bplan) else {
            unreachable!()
        };
        assert_eq!(d.report_threshold, DEFAULT_REPORT_THRESHOLD);
        assert_eq!(
            fold(&[drafted(bplan)]).procedure().map(|p| p.status),
            Some(Status::Draft)
        );
    }

    /// B1: a § 3 (2) display of 29 days is refused, one of 31 days taken.
    #[test]
    fn a_display_lasts_at_least_a_month_and_30_days() {
        let bplan = Format::Bauleitplanung;
        let start = "2026-04-01T00:00:00Z";
        check(
            &[drafted(bplan)],
            schedule(schedule_command(1, DISPLAY, start, days(29))),
            Err(ProcedureError::DisplayTooShort(
                "2026-05-01T00:00:00.000000Z".into(),
            )),
        );
        check(
            &[drafted(bplan)],
            schedule(schedule_command(1, DISPLAY, start, days(31))),
            Ok(vec![scheduled(1, DISPLAY, start, days(31))]),
        );
        // April has 30 days: one month is 30 days, so 30 days suffice ...
        check(
            &[drafted(bplan)],
            schedule(schedule_command(1, DISPLAY, start, days(30))),
            Ok(vec![scheduled(1, DISPLAY, start, days(30))]),
        );
        // ... but not from 1 March, where the month has 31 days.
        let march = "2026-03-10T00:00:00Z";
        check(
            &[drafted(bplan)],
            schedule(schedule_command(1, DISPLAY, march, days(30))),
            Err(ProcedureError::DisplayTooShort(
                "2026-04-10T00:00:00.000000Z".into(),
            )),
        );
        // February is shorter than 30 days: then the 30 days count.
        assert_eq!(
            minimum_display_end(at("2026-02-01T00:00:00Z")),
            Some(at("2026-03-03T00:00:00Z"))
        );
        assert_eq!(
            minimum_display_end(at("2026-01-31T00:00:00Z")),
            Some(at("2026-03-02T00:00:00Z"))
        );
        // A display starting within 30 days of the last instant chrono represents has no
        // minimum end: refused, never an overflow.
        let last = DateTime::<Utc>::MAX_UTC;
        let mut late = schedule_command(1, DISPLAY, march, days(31));
        late.starts_at = last - days(10);
        late.ends_at = last;
        let starts_at = crate::record::format_timestamp(&instant(late.starts_at));
        check(
            &[drafted(bplan)],
            schedule(late),
            Err(ProcedureError::BeyondTime(starts_at)),
        );
        assert_eq!(minimum_display_end(last - days(29)), None);
        assert_eq!(minimum_display_end(last - days(40)), Some(last - days(10)));
        // Other stages have no minimum.
        check(
            &[drafted(bplan)],
            schedule(schedule_command(
                1,
                Some(Stage::Fruehzeitig31),
                start,
                days(14),
            )),
            Ok(vec![scheduled(
                1,
                Some(Stage::Fruehzeitig31),
                start,
                days(14),
            )]),
        );
    }

    /// B1: the announcement comes before the display starts.
    #[test]
    fn a_display_is_announced_before_it_starts() {
        let bplan = Format::Bauleitplanung;
        let start = "2026-04-01T00:00:00Z";
        let given = [drafted(bplan), scheduled(1, DISPLAY, start, days(31))];
        check(
            &given,
            ProcedureCommand::Announce {
                at: at("2026-03-20T00:00:00Z"),
            },
            Ok(vec![announced("2026-03-20T00:00:00Z")]),
        );
        check(
            &given,
            ProcedureCommand::Announce { at: at(start) },
            Err(ProcedureError::LateAnnouncement(
                "2026-04-01T00:00:00.000000Z".into(),
            )),
        );
        check(
            &given,
            ProcedureCommand::Announce {
                at: at("2026-04-02T00:00:00Z"),
            },
            Err(ProcedureError::LateAnnouncement(
                "2026-04-01T00:00:00.000000Z".into(),
            )),
        );
        // Scheduled after the announcement: it starts after it (and not in the past).
        let mut now = schedule_command(1, DISPLAY, "2026-03-20T00:00:00Z", days(31));
        now.at = at("2026-03-20T00:00:00Z");
        check(
            &[drafted(bplan), announced("2026-03-20T00:00:00Z")],
            schedule(now),
            Err(ProcedureError::AnnouncedTooLate(
                "2026-03-20T00:00:00.000000Z".into(),
            )),
        );
        let mut past = schedule_command(1, DISPLAY, start, days(31));
        past.at = at("2026-04-01T00:00:01Z");
        check(
            &[drafted(bplan)],
            schedule(past),
            Err(ProcedureError::StartsInThePast),
        );
        check(
            &[drafted(bplan), announced("2026-03-20T00:00:00Z")],
            ProcedureCommand::Announce {
                at: at("2026-03-21T00:00:00Z"),
            },
            Ok(vec![]),
        );
    }

    #[test]
    fn rounds_follow_each_other_with_fixed_documents() {
        let bplan = Format::Bauleitplanung;
        let given = [
            drafted(bplan),
            scheduled(1, DISPLAY, "2026-04-01T00:00:00Z", days(31)),
        ];
        check(
            &given,
            schedule(schedule_command(
                1,
                Some(Stage::Erneut4a3),
                "2026-06-01T00:00:00Z",
                days(14),
            )),
            Err(ProcedureError::RoundExists(round_id(1).to_string())),
        );
        check(
            &given,
            schedule(schedule_command(
                2,
                Some(Stage::Erneut4a3),
                "2026-05-01T00:00:00Z",
                days(14),
            )),
            Err(ProcedureError::Overlap(
                "2026-05-02T00:00:00.000000Z".into(),
            )),
        );
        check(
            &given,
            schedule(schedule_command(
                2,
                Some(Stage::Erneut4a3),
                "2026-05-02T00:00:00Z",
                days(14),
            )),
            Ok(vec![scheduled(
                2,
                Some(Stage::Erneut4a3),
                "2026-05-02T00:00:00Z",
                days(14),
            )]),
        );
        let mut same = schedule_command(2, Some(Stage::Toeb42), "2026-06-01T00:00:00Z", days(14));
        same.documents = vec![document('a'), document('a')];
        check(&given, schedule(same), Err(ProcedureError::Documents));
        let mut empty = schedule_command(2, Some(Stage::Toeb42), "2026-06-01T00:00:00Z", days(0));
        empty.documents = vec![document('b')];
        check(&given, schedule(empty), Err(ProcedureError::EmptyPeriod));
        let mut zero = schedule_command(2, Some(Stage::Toeb42), "2026-06-01T00:00:00Z", days(14));
        zero.documents[0].size = 0;
        check(
            &given,
            schedule(zero),
            Err(ProcedureError::Document(DocumentError::Size)),
        );
        let mut bare = schedule_command(2, DISPLAY, "2026-06-01T00:00:00Z", days(31));
        bare.documents.clear();
        check(&given, schedule(bare), Err(ProcedureError::NoDocuments));
        check(
            &given,
            schedule(schedule_command(2, None, "2026-06-01T00:00:00Z", days(14))),
            Err(ProcedureError::Stage),
        );
        check(
            &given,
            schedule(schedule_command(
                2,
                Some(Stage::Satzungsbeschluss),
                "2026-06-01T00:00:00Z",
                days(14),
            )),
            Err(ProcedureError::Stage),
        );
        check(
            &[drafted(Format::Dialog)],
            schedule(schedule_command(
                2,
                Some(Stage::Toeb42),
                "2026-06-01T00:00:00Z",
                days(14),
            )),
            Err(ProcedureError::Stage),
        );
        // A hash of another length never gets this far: it does not parse.
        assert!(Sha256Hex::parse("abc").is_err());
    }

    #[test]
    fn the_shown_status_turns_active_when_the_first_round_begins() {
        let bplan = Format::Bauleitplanung;
        let start = "2026-04-01T00:00:00Z";
        let state = fold(&[
            drafted(bplan),
            scheduled(1, Some(Stage::Fruehzeitig31), start, days(14)),
            announced("2026-03-20T00:00:00Z"),
            scheduled(2, DISPLAY, "2026-05-01T00:00:00Z", days(31)),
        ]);
        let p = state.procedure().expect("drafted");
        assert_eq!(p.status_at(at(start) - secs(1)), PublicStatus::Announced);
        assert_eq!(p.status_at(at(start)), PublicStatus::Active);
        assert_eq!(
            p.status_at(at("2026-06-30T00:00:00Z")),
            PublicStatus::Active
        );
        assert_eq!(p.stage_at(at(start) - secs(1)), Some(Stage::Fruehzeitig31));
        assert_eq!(
            p.stage_at(at("2026-05-01T00:00:00Z")),
            Some(Stage::Auslegung32)
        );
        for s in PublicStatus::ALL {
            assert_eq!(PublicStatus::parse(s.as_str()), Some(s));
        }
    }

    /// B2 (the rule): contributions only while a round is open, by server time; after its
    /// end refused, or late where the procedure takes late contributions.
    #[test]
    fn contributions_are_taken_only_while_a_round_is_open() {
        let bplan = Format::Bauleitplanung;
        let start = "2026-04-01T00:00:00Z";
        let end = at(start) + days(31);
        let draft_only = fold(&[drafted(bplan), scheduled(1, DISPLAY, start, days(31))]);
        let p = draft_only.procedure().expect("drafted");
        let statement = ContributionKind::Statement;
        assert_eq!(
            p.admits(statement, at(start)),
            Err(Closed::NotOpen("draft"))
        );
        let state = fold(&[
            drafted(bplan),
            scheduled(1, DISPLAY, start, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ]);
        let p = state.procedure().expect("drafted");
        assert_eq!(
            p.admits(statement, at(start) - secs(1)),
            Err(Closed::NotStarted)
        );
        let open = Admission {
            round_id: round_id(1),
            late: false,
        };
        assert_eq!(p.admits(statement, at(start)), Ok(open));
        assert_eq!(
            p.admits(statement, end - chrono::Duration::microseconds(1)),
            Ok(open)
        );
        assert_eq!(
            p.admits(statement, end + secs(1)),
            Err(Closed::Ended("2026-05-02T00:00:00.000000Z".into()))
        );
        assert_eq!(
            p.admits(ContributionKind::Comment, at(start)),
            Err(Closed::WrongKind("comment"))
        );

        let mut late = draft_command(bplan);
        late.accepts_late = true;
        let late_state = fold(&[
            draft(&late).expect("draft"),
            scheduled(1, DISPLAY, start, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ]);
        let p = late_state.procedure().expect("drafted");
        assert_eq!(
            p.admits(statement, end + secs(1)),
            Ok(Admission {
                round_id: round_id(1),
                late: true
            })
        );

        let evaluating = fold(&[
            drafted(bplan),
            scheduled(1, DISPLAY, start, days(31)),
            announced("2026-03-20T00:00:00Z"),
            ProcedureEvent::EvaluationStarted(EvaluationStarted {
                procedure_id: procedure_id(),
                started_at: end,
            }),
        ]);
        let p = evaluating.procedure().expect("drafted");
        assert_eq!(p.admits(statement, end), Err(Closed::NotOpen("evaluating")));
    }

    #[test]
    fn the_status_machine() {
        let bplan = Format::Bauleitplanung;
        let start = "2026-04-01T00:00:00Z";
        let end = at(start) + days(31);
        let running = [
            drafted(bplan),
            scheduled(1, DISPLAY, start, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ];
        check(
            &running,
            ProcedureCommand::StartEvaluation { at: end - secs(1) },
            Err(ProcedureError::RoundsRunning(
                "2026-05-02T00:00:00.000000Z".into(),
            )),
        );
        check(
            &[drafted(bplan), announced("2026-03-20T00:00:00Z")],
            ProcedureCommand::StartEvaluation { at: end },
            Err(ProcedureError::NoRounds),
        );
        let evaluation = ProcedureEvent::EvaluationStarted(EvaluationStarted {
            procedure_id: procedure_id(),
            started_at: end,
        });
        check(
            &running,
            ProcedureCommand::StartEvaluation { at: end },
            Ok(vec![evaluation.clone()]),
        );
        let summary =
            PublicText::parse("Der Stadtrat hat den Bebauungsplan als Satzung beschlossen.")
                .expect("text");
        check(
            &running,
            ProcedureCommand::Decide {
                summary: summary.clone(),
                at: end,
            },
            Err(ProcedureError::Status(
                "announced",
                "only a procedure under evaluation is decided",
            )),
        );
        let decided = ProcedureEvent::Decided(ProcedureDecided {
            procedure_id: procedure_id(),
            summary: summary.clone(),
            decided_at: end + days(1),
        });
        let mut evaluating = running.to_vec();
        evaluating.push(evaluation);
        check(
            &evaluating,
            ProcedureCommand::Decide {
                summary,
                at: end + days(1),
            },
            Ok(vec![decided.clone()]),
        );
        let mut done = evaluating.clone();
        done.push(decided);
        let p = fold(&done);
        let p = p.procedure().expect("drafted");
        assert_eq!(p.status_at(end + days(2)), PublicStatus::Decided);
        assert_eq!(p.stage_at(end + days(2)), Some(Stage::Satzungsbeschluss));
        let reason = Reason::parse("Planungsziel entfallen").expect("reason");
        check(
            &done,
            ProcedureCommand::Cancel {
                reason: reason.clone(),
                at: end + days(2),
            },
            Err(ProcedureError::Status(
                "decided",
                "only an announced or active procedure is cancelled",
            )),
        );
        let archived = ProcedureEvent::Archived(ProcedureArchived {
            procedure_id: procedure_id(),
            archived_at: end + days(3),
        });
        check(
            &done,
            ProcedureCommand::Archive { at: end + days(3) },
            Ok(vec![archived.clone()]),
        );
        let mut archived_all = done.clone();
        archived_all.push(archived);
        check(
            &archived_all,
            ProcedureCommand::Archive { at: end + days(4) },
            Ok(vec![]),
        );
        check(
            &running,
            ProcedureCommand::Archive { at: end },
            Err(ProcedureError::Status(
                "announced",
                "only a decided or cancelled procedure is archived",
            )),
        );
        // Cancelled from announced or active, not from a draft.
        let cancelled = ProcedureEvent::Cancelled(ProcedureCancelled {
            procedure_id: procedure_id(),
            reason: reason.clone(),
            cancelled_at: at(start) + days(1),
        });
        check(
            &running,
            ProcedureCommand::Cancel {
                reason: reason.clone(),
                at: at(start) + days(1),
            },
            Ok(vec![cancelled.clone()]),
        );
        check(
            &[drafted(bplan)],
            ProcedureCommand::Cancel {
                reason: reason.clone(),
                at: at(start),
            },
            Err(ProcedureError::Status(
                "draft",
                "only an announced or active procedure is cancelled",
            )),
        );
        let mut gone = running.to_vec();
        gone.push(cancelled);
        check(
            &gone,
            ProcedureCommand::Cancel {
                reason,
                at: at(start) + days(2),
            },
            Ok(vec![]),
        );
        check(
            &gone,
            schedule(schedule_command(
                2,
                Some(Stage::Erneut4a3),
                "2026-06-01T00:00:00Z",
                days(14),
            )),
            Err(ProcedureError::Status(
                "cancelled",
                "rounds are scheduled in a draft or announced procedure",
            )),
        );
        assert_eq!(
            fold(&gone)
                .procedure()
                .map(|p| p.status_at(at(start) + days(3))),
            Some(PublicStatus::Cancelled)
        );
    }

    #[test]
    fn event_json_snapshots() {
        let id = r#""procedure_id":"0193a1b2-0000-7000-8000-000000000010""#;
        snapshot(
            &drafted(Format::Bauleitplanung),
            "ProcedureDrafted",
            &format!(
                r#"{{"accepts_late":false,"authority":"stadt-dresden","drafted_at":"2026-03-02T08:00:00.000000Z","format":"bauleitplanung","geometry":{{"coordinates":[13.7373,51.0504],"type":"Point"}},{id},"region":"14612000","report_threshold":3,"title":"Bebauungsplan Nr. 357 Dresden-Johannstadt","topics":["wohnen"]}}"#
            ),
            None,
        );
        snapshot(
            &scheduled(1, DISPLAY, "2026-04-01T00:00:00Z", days(31)),
            "RoundScheduled",
            &format!(
                r#"{{{id},"round":{{"documents":[{{"sha256":"{a}","size":1234567,"title":"Planzeichnung"}}],"ends_at":"2026-05-02T00:00:00.000000Z","preclusion_notice":true,"round_id":"0193a1b2-0000-7000-8000-000000000101","stage":"auslegung32","starts_at":"2026-04-01T00:00:00.000000Z"}},"scheduled_at":"2026-03-02T08:00:00.000000Z"}}"#,
                a = "a".repeat(64)
            ),
            None,
        );
        snapshot(
            &announced("2026-03-20T00:00:00Z"),
            "ProcedureAnnounced",
            &format!(r#"{{"announced_at":"2026-03-20T00:00:00.000000Z",{id}}}"#),
            None,
        );
        snapshot(
            &ProcedureEvent::Cancelled(ProcedureCancelled {
                procedure_id: procedure_id(),
                reason: Reason::parse("Planungsziel entfallen").expect("reason"),
                cancelled_at: at("2026-04-02T00:00:00Z"),
            }),
            "ProcedureCancelled",
            &format!(
                r#"{{"cancelled_at":"2026-04-02T00:00:00.000000Z",{id},"reason":"Planungsziel entfallen"}}"#
            ),
            None,
        );
        let parts = drafted(Format::Dialog).to_parts().expect("parts");
        let mut extra = parts.data.clone();
        extra["owner"] = serde_json::json!("x");
        assert!(matches!(
            ProcedureEvent::from_parts(&parts.event_type, &extra, None),
            Err(PartsError::Data { .. })
        ));
        assert_eq!(
            ProcedureEvent::from_parts(
                &parts.event_type,
                &parts.data,
                Some(&serde_json::json!({}))
            ),
            Err(PartsError::UnexpectedPersonal {
                event_type: "ProcedureDrafted"
            })
        );
        assert_eq!(drafted(Format::Dialog).data_subject(), None);
        assert_eq!(
            drafted(Format::Dialog).stream_id(),
            procedure_id().stream_id()
        );
    }
}
