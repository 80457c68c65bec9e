//! A contribution — a statement, a comment, a survey answer or a defect report — and
//! everything that happens to it afterwards: withdrawal, reports and hiding (moderation
//! never deletes), supports, the organiser's answer (drafted, then published), and the
//! weighing of a statement.
//!
//! What a participant wrote (text, pseudonym, location, free-text answers) is personal
//! data: it travels only in the personal part of `ContributionSubmitted`, sealed under the
//! author's key, and is [`Personal::Erased`] once the author is erased. The rest — kind,
//! round, chosen survey options, attachment hashes, reports, supports — is plain, with
//! participants named only by their pseudonymous ids, so the counts and the survey results
//! stay recomputable from the log after any erasure.
//!
//! Whether a contribution is taken at all is the procedure's rule ([`Procedure::admits`]),
//! decided against the procedure's state the command carries.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{events, Shape};
use super::procedure::{Closed, Procedure};
use super::survey::{Choices, QuestionKey, SurveyError};
use super::{
    instant, Attachment, ContributionId, ContributionKind, ContributionText, DocumentError,
    Geometry, ParticipantId, ProcedureId, Pseudonym, PublicText, Reason, RoundId,
};
use crate::decider::decider;
use crate::event::{parse_personal, personal_of, PartsError, Personal, SubjectId};
use crate::record::timestamp;

/// What a participant wrote: personal data, sealed under the author's key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Content {
    /// The name shown beside a public text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudonym: Option<Pseudonym>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<ContributionText>,
    /// Where a defect report (or a statement, optionally) is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Geometry>,
    /// The free-text answers of a survey answer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub free_texts: BTreeMap<QuestionKey, ContributionText>,
}

/// Why a participant reports a contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    Spam,
    Offensive,
    DoesNotBelong,
}

impl ReportReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spam => "spam",
            Self::Offensive => "offensive",
            Self::DoesNotBelong => "does_not_belong",
        }
    }
}

/// What hid a contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HidingTrigger {
    /// The procedure's report threshold was reached.
    Threshold,
    /// A moderator.
    Moderator,
}

/// The state an answer gives a contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerState {
    Evaluating,
    Accepted,
    Rejected,
}

/// The answer state shown publicly: only what has been published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublicAnswer {
    NotAnswered,
    Evaluating,
    Accepted,
    Rejected,
}

impl From<AnswerState> for PublicAnswer {
    fn from(s: AnswerState) -> Self {
        match s {
            AnswerState::Evaluating => Self::Evaluating,
            AnswerState::Accepted => Self::Accepted,
            AnswerState::Rejected => Self::Rejected,
        }
    }
}

/// The result of weighing a statement (Abwägung).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighing {
    Considered,
    PartlyConsidered,
    NotConsidered,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Submit a contribution to a procedure; `procedure` is its state now.
#[derive(Debug, Clone)]
pub struct Submit<'c> {
    pub contribution_id: ContributionId,
    pub procedure: &'c Procedure,
    pub kind: ContributionKind,
    pub author: ParticipantId,
    pub content: Content,
    pub attachments: Vec<Attachment>,
    pub choices: Choices,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub enum ContributionCommand<'c> {
    Submit(Submit<'c>),
    Withdraw {
        by: ParticipantId,
        at: DateTime<Utc>,
    },
    /// A participant's report; `threshold` is the procedure's.
    Report {
        reporter: ParticipantId,
        reason: ReportReason,
        threshold: u32,
        at: DateTime<Utc>,
    },
    Hide {
        reason: Reason,
        at: DateTime<Utc>,
    },
    Unhide {
        reason: Reason,
        at: DateTime<Utc>,
    },
    Support {
        supporter: ParticipantId,
        at: DateTime<Utc>,
    },
    WithdrawSupport {
        supporter: ParticipantId,
        at: DateTime<Utc>,
    },
    DraftAnswer {
        state: AnswerState,
        text: Option<PublicText>,
        at: DateTime<Utc>,
    },
    PublishAnswer {
        at: DateTime<Utc>,
    },
    /// Weigh a statement; `decided` tells whether the procedure has been decided, after
    /// which the weighing stands.
    Weigh {
        result: Weighing,
        decided: bool,
        at: DateTime<Utc>,
    },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `ContributionSubmitted`; its `content` is the sealed personal part.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionSubmitted {
    pub contribution_id: ContributionId,
    pub procedure_id: ProcedureId,
    pub round_id: RoundId,
    pub kind: ContributionKind,
    pub author: ParticipantId,
    pub late: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub choices: Choices,
    #[serde(with = "timestamp")]
    pub submitted_at: DateTime<Utc>,
    #[serde(skip)]
    pub content: Personal<Content>,
}

/// `ContributionWithdrawn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionWithdrawn {
    pub contribution_id: ContributionId,
    pub author: ParticipantId,
    #[serde(with = "timestamp")]
    pub withdrawn_at: DateTime<Utc>,
}

/// `ContributionReported`. The reporter is recorded so that nobody reports twice; read
/// models never show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionReported {
    pub contribution_id: ContributionId,
    pub reporter: ParticipantId,
    pub reason: ReportReason,
    #[serde(with = "timestamp")]
    pub reported_at: DateTime<Utc>,
}

/// `ContributionHidden`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionHidden {
    pub contribution_id: ContributionId,
    pub trigger: HidingTrigger,
    /// A moderator's reason; none for the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    #[serde(with = "timestamp")]
    pub hidden_at: DateTime<Utc>,
}

/// `ContributionUnhidden`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContributionUnhidden {
    pub contribution_id: ContributionId,
    pub reason: Reason,
    #[serde(with = "timestamp")]
    pub unhidden_at: DateTime<Utc>,
}

/// `SupportGiven`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportGiven {
    pub contribution_id: ContributionId,
    pub supporter: ParticipantId,
    #[serde(with = "timestamp")]
    pub given_at: DateTime<Utc>,
}

/// `SupportWithdrawn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupportWithdrawn {
    pub contribution_id: ContributionId,
    pub supporter: ParticipantId,
    #[serde(with = "timestamp")]
    pub withdrawn_at: DateTime<Utc>,
}

/// `AnswerDrafted`: not public until published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerDrafted {
    pub contribution_id: ContributionId,
    pub state: AnswerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<PublicText>,
    #[serde(with = "timestamp")]
    pub drafted_at: DateTime<Utc>,
}

/// `AnswerPublished`: the draft as it was published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerPublished {
    pub contribution_id: ContributionId,
    pub state: AnswerState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<PublicText>,
    #[serde(with = "timestamp")]
    pub published_at: DateTime<Utc>,
}

/// `StatementWeighed`: public once the procedure is decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementWeighed {
    pub contribution_id: ContributionId,
    pub result: Weighing,
    #[serde(with = "timestamp")]
    pub weighed_at: DateTime<Utc>,
}

impl Shape for ContributionSubmitted {
    const NAME: &'static str = "ContributionSubmitted";
    const PERSONAL: bool = true;
    fn at(&self) -> DateTime<Utc> {
        self.submitted_at
    }
    fn subject(&self) -> Option<SubjectId> {
        Some(self.author.into())
    }
    fn personal(&self) -> Result<Option<Value>, PartsError> {
        personal_of(Self::NAME, &self.content).map(Some)
    }
    fn with_personal(mut self, personal: Option<&Value>) -> Result<Self, PartsError> {
        self.content = parse_personal(Self::NAME, personal)?;
        Ok(self)
    }
}

macro_rules! shape {
    ($ty:ty = $name:literal, at $at:ident $(, subject $subject:ident)?) => {
        impl Shape for $ty {
            const NAME: &'static str = $name;
            fn at(&self) -> DateTime<Utc> {
                self.$at
            }
            $(fn subject(&self) -> Option<SubjectId> {
                Some(self.$subject.into())
            })?
        }
    };
}

shape!(ContributionWithdrawn = "ContributionWithdrawn", at withdrawn_at, subject author);
shape!(ContributionReported = "ContributionReported", at reported_at, subject reporter);
shape!(ContributionHidden = "ContributionHidden", at hidden_at);
shape!(ContributionUnhidden = "ContributionUnhidden", at unhidden_at);
shape!(SupportGiven = "SupportGiven", at given_at, subject supporter);
shape!(SupportWithdrawn = "SupportWithdrawn", at withdrawn_at, subject supporter);
shape!(AnswerDrafted = "AnswerDrafted", at drafted_at);
shape!(AnswerPublished = "AnswerPublished", at published_at);
shape!(StatementWeighed = "StatementWeighed", at weighed_at);

#[derive(Debug, Clone, PartialEq)]
pub enum ContributionEvent {
    Submitted(ContributionSubmitted),
    Withdrawn(ContributionWithdrawn),
    Reported(ContributionReported),
    Hidden(ContributionHidden),
    Unhidden(ContributionUnhidden),
    SupportGiven(SupportGiven),
    SupportWithdrawn(SupportWithdrawn),
    AnswerDrafted(AnswerDrafted),
    AnswerPublished(AnswerPublished),
    Weighed(StatementWeighed),
}

events!(
    ContributionEvent,
    contribution_id,
    [
        Submitted(ContributionSubmitted),
        Withdrawn(ContributionWithdrawn),
        Reported(ContributionReported),
        Hidden(ContributionHidden),
        Unhidden(ContributionUnhidden),
        SupportGiven(SupportGiven),
        SupportWithdrawn(SupportWithdrawn),
        AnswerDrafted(AnswerDrafted),
        AnswerPublished(AnswerPublished),
        Weighed(StatementWeighed),
    ]
);

// ---------------------------------------------------------------------------------------
// State and decider
// ---------------------------------------------------------------------------------------

/// A submitted contribution.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub id: ContributionId,
    pub procedure_id: ProcedureId,
    pub round_id: RoundId,
    pub kind: ContributionKind,
    pub author: ParticipantId,
    pub late: bool,
    pub submitted_at: DateTime<Utc>,
    pub content: Personal<Content>,
    pub withdrawn_at: Option<DateTime<Utc>>,
    /// Everybody who ever reported it: each only once.
    pub reporters: BTreeSet<ParticipantId>,
    /// Reports since it was last unhidden, which count towards the threshold.
    pub open_reports: u32,
    pub hidden: bool,
    pub supporters: BTreeSet<ParticipantId>,
    pub draft_answer: Option<(AnswerState, Option<PublicText>)>,
    pub published_answer: Option<(AnswerState, Option<PublicText>)>,
    pub weighing: Option<Weighing>,
}

impl Contribution {
    /// The answer as the public sees it: only a published one.
    pub fn public_answer(&self) -> PublicAnswer {
        self.published_answer
            .as_ref()
            .map_or(PublicAnswer::NotAnswered, |(state, _)| (*state).into())
    }
}

/// The state of a contribution stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ContributionState {
    #[default]
    None,
    Submitted(Box<Contribution>),
}

impl ContributionState {
    pub fn contribution(&self) -> Option<&Contribution> {
        match self {
            Self::None => None,
            Self::Submitted(c) => Some(c),
        }
    }
}

/// Why a contribution command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContributionError {
    #[error("this contribution has already been submitted")]
    AlreadySubmitted,
    #[error("no contribution has been submitted under this id")]
    NotSubmitted,
    #[error(transparent)]
    Closed(#[from] Closed),
    #[error("a {0} needs {1}")]
    Missing(&'static str, &'static str),
    #[error("a {0} has no {1}")]
    Unexpected(&'static str, &'static str),
    #[error("a defect report is made at a point")]
    NotAPoint,
    #[error(transparent)]
    Survey(#[from] SurveyError),
    #[error("a contribution has at most 20 attachments, each hash once")]
    Attachments,
    #[error(transparent)]
    Attachment(#[from] DocumentError),
    #[error("only its author withdraws a contribution")]
    NotTheAuthor,
    #[error("the contribution has {0} supports and cannot be withdrawn")]
    Supported(usize),
    #[error("the contribution has been withdrawn")]
    Withdrawn,
    #[error("this participant has already reported the contribution")]
    AlreadyReported,
    #[error("a {0} is not shown publicly and is not reported")]
    NotReportable(&'static str),
    #[error("a participant does not report its own contribution; it may withdraw it")]
    OwnContribution,
    #[error("the contribution is already hidden")]
    AlreadyHidden,
    #[error("the contribution is not hidden")]
    NotHidden,
    #[error("a {0} takes no supports")]
    NotSupportable(&'static str),
    #[error("a hidden contribution takes no supports")]
    HiddenNoSupport,
    #[error("a {0} is not answered; statements are weighed")]
    NotAnswerable(&'static str),
    #[error("the answer has been published and can no longer change")]
    AnswerPublished,
    #[error("no answer has been drafted")]
    NoDraft,
    #[error("only statements are weighed")]
    NotAStatement,
    #[error("the procedure has been decided; its weighing stands")]
    Decided,
}

fn submit(c: &Submit<'_>) -> Result<ContributionEvent, ContributionError> {
    use ContributionKind as K;
    let at = instant(c.at);
    let admission = c.procedure.admits(c.kind, at)?;
    let name = c.kind.as_str();
    let content = &c.content;
    match c.kind {
        K::Statement | K::Comment | K::DefectReport => {
            if content.text.is_none() {
                return Err(ContributionError::Missing(name, "a text"));
            }
            if !content.free_texts.is_empty() || !c.choices.is_empty() {
                return Err(ContributionError::Unexpected(name, "survey answers"));
            }
        }
        K::SurveyAnswer => {
            if content.text.is_some() || content.location.is_some() {
                return Err(ContributionError::Unexpected(
                    name,
                    "text or location besides its answers",
                ));
            }
            let survey = c
                .procedure
                .survey
                .as_ref()
                .ok_or(ContributionError::Closed(Closed::WrongKind(name)))?;
            survey.check_answer(&c.choices, content.free_texts.keys())?;
        }
    }
    if c.kind.text_is_public() && content.pseudonym.is_none() {
        return Err(ContributionError::Missing(
            name,
            "a pseudonym to be shown under",
        ));
    }
    if !c.kind.text_is_public() && content.pseudonym.is_some() {
        return Err(ContributionError::Unexpected(
            name,
            "pseudonym: it is not shown publicly",
        ));
    }
    if c.kind == K::DefectReport {
        match content.location {
            Some(Geometry::Point { .. }) => {}
            Some(_) => return Err(ContributionError::NotAPoint),
            None => return Err(ContributionError::Missing(name, "a location")),
        }
    }
    let hashes: BTreeSet<&str> = c.attachments.iter().map(|a| a.sha256.as_str()).collect();
    if c.attachments.len() > 20 || hashes.len() != c.attachments.len() {
        return Err(ContributionError::Attachments);
    }
    for a in &c.attachments {
        a.check()?;
    }
    Ok(ContributionEvent::Submitted(ContributionSubmitted {
        contribution_id: c.contribution_id,
        procedure_id: c.procedure.id,
        round_id: admission.round_id,
        kind: c.kind,
        author: c.author,
        late: admission.late,
        attachments: c.attachments.clone(),
        choices: c.choices.clone(),
        submitted_at: at,
        content: Personal::Available(c.content.clone()),
    }))
}

/// Decides a contribution command.
pub fn decide(
    command: &ContributionCommand<'_>,
    state: &ContributionState,
) -> Result<Vec<ContributionEvent>, ContributionError> {
    use ContributionCommand as C;
    use ContributionError as E;
    let c = match (command, state) {
        (C::Submit(s), ContributionState::None) => return Ok(vec![submit(s)?]),
        (C::Submit(_), ContributionState::Submitted(_)) => return Err(E::AlreadySubmitted),
        (_, ContributionState::None) => return Err(E::NotSubmitted),
        (_, ContributionState::Submitted(c)) => c,
    };
    let id = c.id;
    let events = match command {
        C::Submit(_) => return Err(E::AlreadySubmitted),
        C::Withdraw { by, at } => {
            if *by != c.author {
                return Err(E::NotTheAuthor);
            }
            if c.withdrawn_at.is_some() {
                return Ok(vec![]);
            }
            if !c.supporters.is_empty() {
                return Err(E::Supported(c.supporters.len()));
            }
            vec![ContributionEvent::Withdrawn(ContributionWithdrawn {
                contribution_id: id,
                author: c.author,
                withdrawn_at: instant(*at),
            })]
        }
        C::Report {
            reporter,
            reason,
            threshold,
            at,
        } => {
            // Only what the public is shown is reported: a statement is never public, and
            // reports on it would tell a stranger it exists and let three accounts take it
            // out of the public count.
            if !c.kind.text_is_public() {
                return Err(E::NotReportable(c.kind.as_str()));
            }
            if *reporter == c.author {
                return Err(E::OwnContribution);
            }
            if c.withdrawn_at.is_some() {
                return Err(E::Withdrawn);
            }
            if c.reporters.contains(reporter) {
                return Err(E::AlreadyReported);
            }
            let at = instant(*at);
            let mut events = vec![ContributionEvent::Reported(ContributionReported {
                contribution_id: id,
                reporter: *reporter,
                reason: *reason,
                reported_at: at,
            })];
            if !c.hidden && c.open_reports + 1 >= *threshold {
                events.push(ContributionEvent::Hidden(ContributionHidden {
                    contribution_id: id,
                    trigger: HidingTrigger::Threshold,
                    reason: None,
                    hidden_at: at,
                }));
            }
            events
        }
        C::Hide { reason, at } => {
            if c.hidden {
                return Err(E::AlreadyHidden);
            }
            vec![ContributionEvent::Hidden(ContributionHidden {
                contribution_id: id,
                trigger: HidingTrigger::Moderator,
                reason: Some(reason.clone()),
                hidden_at: instant(*at),
            })]
        }
        C::Unhide { reason, at } => {
            if !c.hidden {
                return Err(E::NotHidden);
            }
            vec![ContributionEvent::Unhidden(ContributionUnhidden {
                contribution_id: id,
                reason: reason.clone(),
                unhidden_at: instant(*at),
            })]
        }
        C::Support { supporter, at } => {
            if !c.kind.text_is_public() {
                return Err(E::NotSupportable(c.kind.as_str()));
            }
            if c.withdrawn_at.is_some() {
                return Err(E::Withdrawn);
            }
            if c.supporters.contains(supporter) {
                return Ok(vec![]);
            }
            if c.hidden {
                return Err(E::HiddenNoSupport);
            }
            vec![ContributionEvent::SupportGiven(SupportGiven {
                contribution_id: id,
                supporter: *supporter,
                given_at: instant(*at),
            })]
        }
        C::WithdrawSupport { supporter, at } => {
            if !c.supporters.contains(supporter) {
                return Ok(vec![]);
            }
            vec![ContributionEvent::SupportWithdrawn(SupportWithdrawn {
                contribution_id: id,
                supporter: *supporter,
                withdrawn_at: instant(*at),
            })]
        }
        C::DraftAnswer { state, text, at } => {
            if !c.kind.text_is_public() {
                return Err(E::NotAnswerable(c.kind.as_str()));
            }
            if c.published_answer.is_some() {
                return Err(E::AnswerPublished);
            }
            vec![ContributionEvent::AnswerDrafted(AnswerDrafted {
                contribution_id: id,
                state: *state,
                text: text.clone(),
                drafted_at: instant(*at),
            })]
        }
        C::PublishAnswer { at } => {
            if c.published_answer.is_some() {
                return Ok(vec![]);
            }
            let (state, text) = c.draft_answer.clone().ok_or(E::NoDraft)?;
            vec![ContributionEvent::AnswerPublished(AnswerPublished {
                contribution_id: id,
                state,
                text,
                published_at: instant(*at),
            })]
        }
        C::Weigh {
            result,
            decided,
            at,
        } => {
            if c.kind != ContributionKind::Statement {
                return Err(E::NotAStatement);
            }
            if c.withdrawn_at.is_some() {
                return Err(E::Withdrawn);
            }
            if *decided {
                return Err(E::Decided);
            }
            if c.weighing == Some(*result) {
                return Ok(vec![]);
            }
            vec![ContributionEvent::Weighed(StatementWeighed {
                contribution_id: id,
                result: *result,
                weighed_at: instant(*at),
            })]
        }
    };
    Ok(events)
}

/// Applies an event; combinations `decide` never produces leave the state as it is.
pub fn evolve(state: ContributionState, event: &ContributionEvent) -> ContributionState {
    use ContributionEvent as Ev;
    match (state, event) {
        (ContributionState::None, Ev::Submitted(e)) => {
            ContributionState::Submitted(Box::new(Contribution {
                id: e.contribution_id,
                procedure_id: e.procedure_id,
                round_id: e.round_id,
                kind: e.kind,
                author: e.author,
                late: e.late,
                submitted_at: e.submitted_at,
                content: e.content.clone(),
                withdrawn_at: None,
                reporters: BTreeSet::new(),
                open_reports: 0,
                hidden: false,
                supporters: BTreeSet::new(),
                draft_answer: None,
                published_answer: None,
                weighing: None,
            }))
        }
        (ContributionState::Submitted(mut c), event) => {
            match event {
                Ev::Submitted(_) => {}
                Ev::Withdrawn(e) => {
                    c.withdrawn_at.get_or_insert(e.withdrawn_at);
                }
                Ev::Reported(e) => {
                    if c.reporters.insert(e.reporter) {
                        c.open_reports += 1;
                    }
                }
                Ev::Hidden(_) => c.hidden = true,
                Ev::Unhidden(_) => {
                    c.hidden = false;
                    c.open_reports = 0;
                }
                Ev::SupportGiven(e) => {
                    c.supporters.insert(e.supporter);
                }
                Ev::SupportWithdrawn(e) => {
                    c.supporters.remove(&e.supporter);
                }
                Ev::AnswerDrafted(e) => c.draft_answer = Some((e.state, e.text.clone())),
                Ev::AnswerPublished(e) => c.published_answer = Some((e.state, e.text.clone())),
                Ev::Weighed(e) => c.weighing = Some(e.result),
            }
            ContributionState::Submitted(c)
        }
        (state, _) => state,
    }
}

decider!(ContributionState: ContributionCommand<'c> => ContributionEvent, ContributionError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, encode, stored, DomainEvent, Sealing};
    use crate::participation::procedure::tests::{
        announced, draft_command, drafted, fold as fold_procedure, round_id, scheduled,
    };
    use crate::participation::procedure::{ProcedureEvent, ProcedureState};
    use crate::participation::survey::tests::{choices, q};
    use crate::participation::testing::*;
    use crate::participation::{Format, Position, Stage};
    use crate::seal::{DataKey, KeyId};
    use ring::rand::SystemRandom;

    const START: &str = "2026-04-01T00:00:00Z";

    fn open_procedure(format: Format) -> ProcedureState {
        let stage = (format == Format::Bauleitplanung).then_some(Stage::Auslegung32);
        fold_procedure(&[
            drafted(format),
            scheduled(1, stage, START, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ])
    }

    fn contribution_id() -> ContributionId {
        ContributionId(uuid(0x20))
    }

    fn author() -> ParticipantId {
        ParticipantId(uuid(0xa0))
    }

    fn user(n: u128) -> ParticipantId {
        ParticipantId(uuid(0xb0 + n))
    }

    fn text(s: &str) -> Option<ContributionText> {
        Some(ContributionText::parse(s).expect("text"))
    }

    fn statement_content() -> Content {
        Content {
            text: text("Die geplante Bebauung verschattet unser Grundstück."),
            ..Content::default()
        }
    }

    fn comment_content() -> Content {
        Content {
            pseudonym: Some(Pseudonym::parse("Radlerin").expect("pseudonym")),
            text: text("Bitte einen Radweg entlang der Elbe."),
            ..Content::default()
        }
    }

    fn submit_command<'c>(
        procedure: &'c ProcedureState,
        kind: ContributionKind,
        content: Content,
        when: DateTime<Utc>,
    ) -> ContributionCommand<'c> {
        ContributionCommand::Submit(Submit {
            contribution_id: contribution_id(),
            procedure: procedure.procedure().expect("drafted"),
            kind,
            author: author(),
            content,
            attachments: vec![],
            choices: Choices::new(),
            at: when,
        })
    }

    fn submitted(
        kind: ContributionKind,
        content: Content,
        late: bool,
        when: DateTime<Utc>,
    ) -> ContributionEvent {
        ContributionEvent::Submitted(ContributionSubmitted {
            contribution_id: contribution_id(),
            procedure_id: crate::participation::procedure::tests::procedure_id(),
            round_id: round_id(1),
            kind,
            author: author(),
            late,
            attachments: vec![],
            choices: Choices::new(),
            submitted_at: when,
            content: Personal::Available(content),
        })
    }

    fn comment() -> ContributionEvent {
        submitted(
            ContributionKind::Comment,
            comment_content(),
            false,
            at(START),
        )
    }

    fn statement() -> ContributionEvent {
        submitted(
            ContributionKind::Statement,
            statement_content(),
            false,
            at(START),
        )
    }

    fn fold(events: &[ContributionEvent]) -> ContributionState {
        events.iter().fold(ContributionState::None, evolve)
    }

    fn check(
        given: &[ContributionEvent],
        when: ContributionCommand<'_>,
        then: Result<Vec<ContributionEvent>, ContributionError>,
    ) {
        assert_eq!(decide(&when, &fold(given)), then);
    }

    fn report(n: u128, when: DateTime<Utc>) -> ContributionCommand<'static> {
        ContributionCommand::Report {
            reporter: user(n),
            reason: ReportReason::Offensive,
            threshold: 3,
            at: when,
        }
    }

    fn reported(n: u128, when: DateTime<Utc>) -> ContributionEvent {
        ContributionEvent::Reported(ContributionReported {
            contribution_id: contribution_id(),
            reporter: user(n),
            reason: ReportReason::Offensive,
            reported_at: when,
        })
    }

    fn hidden_by_threshold(when: DateTime<Utc>) -> ContributionEvent {
        ContributionEvent::Hidden(ContributionHidden {
            contribution_id: contribution_id(),
            trigger: HidingTrigger::Threshold,
            reason: None,
            hidden_at: when,
        })
    }

    fn reason(s: &str) -> Reason {
        Reason::parse(s).expect("reason")
    }

    /// B2: a statement during the display is taken; one second after its end it is not.
    #[test]
    fn statements_are_taken_during_the_display_only() {
        let p = open_procedure(Format::Bauleitplanung);
        let k = ContributionKind::Statement;
        check(
            &[],
            submit_command(&p, k, statement_content(), at(START)),
            Ok(vec![statement()]),
        );
        let end = at(START) + days(31);
        check(
            &[],
            submit_command(&p, k, statement_content(), end + secs(1)),
            Err(ContributionError::Closed(Closed::Ended(
                "2026-05-02T00:00:00.000000Z".into(),
            ))),
        );
        check(
            &[],
            submit_command(&p, k, statement_content(), at(START) - secs(1)),
            Err(ContributionError::Closed(Closed::NotStarted)),
        );
        check(
            &[statement()],
            submit_command(&p, k, statement_content(), at(START)),
            Err(ContributionError::AlreadySubmitted),
        );

        // Where the procedure takes late statements, they are recorded as late.
        let mut late = draft_command(Format::Bauleitplanung);
        late.accepts_late = true;
        let late_p = fold_procedure(&[
            ProcedureEvent::Drafted(match decide_draft(&late) {
                Ok(e) => e,
                Err(e) => panic!("{e}"),
            }),
            scheduled(1, Some(Stage::Auslegung32), START, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ]);
        check(
            &[],
            submit_command(&late_p, k, statement_content(), end + secs(1)),
            Ok(vec![submitted(k, statement_content(), true, end + secs(1))]),
        );

        // Announced, not yet started: refused.
        let upcoming = fold_procedure(&[
            drafted(Format::Bauleitplanung),
            scheduled(1, Some(Stage::Auslegung32), START, days(31)),
            announced("2026-03-20T00:00:00Z"),
        ]);
        check(
            &[],
            submit_command(
                &upcoming,
                k,
                statement_content(),
                at("2026-03-25T00:00:00Z"),
            ),
            Err(ContributionError::Closed(Closed::NotStarted)),
        );
    }

    fn decide_draft(
        c: &crate::participation::procedure::DraftProcedure,
    ) -> Result<
        crate::participation::procedure::ProcedureDrafted,
        crate::participation::procedure::ProcedureError,
    > {
        match crate::participation::procedure::decide(
            &crate::participation::procedure::ProcedureCommand::Draft(c.clone()),
            &ProcedureState::None,
        )?
        .pop()
        {
            Some(ProcedureEvent::Drafted(d)) => Ok(d),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_kind_carries_what_it_needs() {
        let bplan = open_procedure(Format::Bauleitplanung);
        let dialog = open_procedure(Format::Dialog);
        let reports = open_procedure(Format::Meldeverfahren);
        let k = ContributionKind::Statement;
        check(
            &[],
            submit_command(&bplan, k, Content::default(), at(START)),
            Err(ContributionError::Missing("statement", "a text")),
        );
        check(
            &[],
            submit_command(&bplan, k, comment_content(), at(START)),
            Err(ContributionError::Unexpected(
                "statement",
                "pseudonym: it is not shown publicly",
            )),
        );
        check(
            &[],
            submit_command(
                &bplan,
                ContributionKind::Comment,
                comment_content(),
                at(START),
            ),
            Err(ContributionError::Closed(Closed::WrongKind("comment"))),
        );
        let mut anonymous = comment_content();
        anonymous.pseudonym = None;
        check(
            &[],
            submit_command(&dialog, ContributionKind::Comment, anonymous, at(START)),
            Err(ContributionError::Missing(
                "comment",
                "a pseudonym to be shown under",
            )),
        );
        check(
            &[],
            submit_command(
                &dialog,
                ContributionKind::Comment,
                comment_content(),
                at(START),
            ),
            Ok(vec![comment()]),
        );
        let d = ContributionKind::DefectReport;
        check(
            &[],
            submit_command(&reports, d, comment_content(), at(START)),
            Err(ContributionError::Missing("defect_report", "a location")),
        );
        let mut at_point = comment_content();
        at_point.location = Some(Geometry::Point {
            coordinates: Position::new(13.74, 51.05).expect("position"),
        });
        assert!(decide(
            &submit_command(&reports, d, at_point, at(START)),
            &ContributionState::None
        )
        .is_ok());
        let mut in_area = comment_content();
        in_area.location = Some(
            serde_json::from_str(r#"{"type":"Polygon","coordinates":[[[13.7,51.0],[13.8,51.0],[13.8,51.1],[13.7,51.0]]]}"#)
                .expect("polygon"),
        );
        check(
            &[],
            submit_command(&reports, d, in_area, at(START)),
            Err(ContributionError::NotAPoint),
        );

        let ContributionCommand::Submit(mut many) =
            submit_command(&bplan, k, statement_content(), at(START))
        else {
            unreachable!()
        };
        many.attachments = vec![
            Attachment {
                sha256: hash('a'),
                size: 10,
            },
            Attachment {
                sha256: hash('a'),
                size: 10,
            },
        ];
        check(
            &[],
            ContributionCommand::Submit(many.clone()),
            Err(ContributionError::Attachments),
        );
        many.attachments = vec![Attachment {
            sha256: hash('a'),
            size: 0,
        }];
        check(
            &[],
            ContributionCommand::Submit(many),
            Err(ContributionError::Attachment(DocumentError::Size)),
        );
    }

    #[test]
    fn survey_answers_are_checked_against_the_survey() {
        let survey = open_procedure(Format::Survey);
        let k = ContributionKind::SurveyAnswer;
        let ContributionCommand::Submit(mut answer) =
            submit_command(&survey, k, Content::default(), at(START))
        else {
            unreachable!()
        };
        answer.choices = choices(&[("radweg", &["ja"])]);
        answer.content.free_texts.insert(
            q("hinweise"),
            ContributionText::parse("Mehr Bäume").expect("text"),
        );
        let events = decide(
            &ContributionCommand::Submit(answer.clone()),
            &ContributionState::None,
        )
        .expect("taken");
        let ContributionEvent::Submitted(e) = &events[0] else {
            unreachable!()
        };
        assert_eq!(e.choices, choices(&[("radweg", &["ja"])]));
        let mut wrong = answer.clone();
        wrong.choices = choices(&[("radweg", &["ja", "nein"])]);
        check(
            &[],
            ContributionCommand::Submit(wrong),
            Err(ContributionError::Survey(SurveyError::SingleChoice(
                "radweg".into(),
            ))),
        );
        let mut with_text = answer;
        with_text.content.text = text("Freitext");
        check(
            &[],
            ContributionCommand::Submit(with_text),
            Err(ContributionError::Unexpected(
                "survey_answer",
                "text or location besides its answers",
            )),
        );
    }

    /// B3 (the rule): three reports hide a comment, a repeat report is refused, a
    /// moderator unhides it, and only fresh reports count towards hiding it again.
    #[test]
    fn only_public_contributions_of_others_are_reported() {
        let t = at(START);
        check(
            &[statement()],
            report(1, t),
            Err(ContributionError::NotReportable("statement")),
        );
        check(
            &[comment()],
            ContributionCommand::Report {
                reporter: author(),
                reason: ReportReason::Spam,
                threshold: 3,
                at: t,
            },
            Err(ContributionError::OwnContribution),
        );
    }

    #[test]
    fn reports_hide_at_the_threshold_once_per_user() {
        let t = at(START) + days(1);
        check(&[comment()], report(1, t), Ok(vec![reported(1, t)]));
        check(
            &[comment(), reported(1, t)],
            report(1, t),
            Err(ContributionError::AlreadyReported),
        );
        check(
            &[comment(), reported(1, t)],
            report(2, t),
            Ok(vec![reported(2, t)]),
        );
        let two = [comment(), reported(1, t), reported(2, t)];
        check(
            &two,
            report(3, t),
            Ok(vec![reported(3, t), hidden_by_threshold(t)]),
        );
        let mut hidden = two.to_vec();
        hidden.extend([reported(3, t), hidden_by_threshold(t)]);
        assert!(fold(&hidden).contribution().expect("submitted").hidden);
        // A fourth report of a hidden comment is recorded, nothing more.
        check(&hidden, report(4, t), Ok(vec![reported(4, t)]));
        check(
            &hidden,
            ContributionCommand::Hide {
                reason: reason("x"),
                at: t,
            },
            Err(ContributionError::AlreadyHidden),
        );
        let unhidden = ContributionEvent::Unhidden(ContributionUnhidden {
            contribution_id: contribution_id(),
            reason: reason("Kritik ist zulässig"),
            unhidden_at: t + secs(1),
        });
        check(
            &hidden,
            ContributionCommand::Unhide {
                reason: reason("Kritik ist zulässig"),
                at: t + secs(1),
            },
            Ok(vec![unhidden.clone()]),
        );
        let mut restored = hidden.clone();
        restored.push(unhidden);
        let c = fold(&restored);
        assert!(!c.contribution().expect("submitted").hidden);
        check(
            &restored,
            ContributionCommand::Unhide {
                reason: reason("x"),
                at: t,
            },
            Err(ContributionError::NotHidden),
        );
        check(
            &restored,
            report(1, t),
            Err(ContributionError::AlreadyReported),
        );
        check(&restored, report(4, t), Ok(vec![reported(4, t)]));
        // A moderator hides with a reason; a threshold of 1 hides at the first report.
        let by_moderator = ContributionEvent::Hidden(ContributionHidden {
            contribution_id: contribution_id(),
            trigger: HidingTrigger::Moderator,
            reason: Some(reason("Beleidigung")),
            hidden_at: t,
        });
        check(
            &[comment()],
            ContributionCommand::Hide {
                reason: reason("Beleidigung"),
                at: t,
            },
            Ok(vec![by_moderator]),
        );
        check(
            &[comment()],
            ContributionCommand::Report {
                reporter: user(1),
                reason: ReportReason::Spam,
                threshold: 1,
                at: t,
            },
            Ok(vec![
                ContributionEvent::Reported(ContributionReported {
                    contribution_id: contribution_id(),
                    reporter: user(1),
                    reason: ReportReason::Spam,
                    reported_at: t,
                }),
                hidden_by_threshold(t),
            ]),
        );
        check(&[], report(1, t), Err(ContributionError::NotSubmitted));
    }

    fn supported(n: u128, when: DateTime<Utc>) -> ContributionEvent {
        ContributionEvent::SupportGiven(SupportGiven {
            contribution_id: contribution_id(),
            supporter: user(n),
            given_at: when,
        })
    }

    #[test]
    fn supports_are_one_per_user_and_block_withdrawal() {
        let t = at(START) + days(1);
        let support = |n| ContributionCommand::Support {
            supporter: user(n),
            at: t,
        };
        check(&[comment()], support(1), Ok(vec![supported(1, t)]));
        check(&[comment(), supported(1, t)], support(1), Ok(vec![]));
        let withdraw = ContributionCommand::Withdraw {
            by: author(),
            at: t,
        };
        check(
            &[comment(), supported(1, t)],
            withdraw.clone(),
            Err(ContributionError::Supported(1)),
        );
        let unsupported = ContributionEvent::SupportWithdrawn(SupportWithdrawn {
            contribution_id: contribution_id(),
            supporter: user(1),
            withdrawn_at: t,
        });
        check(
            &[comment(), supported(1, t)],
            ContributionCommand::WithdrawSupport {
                supporter: user(1),
                at: t,
            },
            Ok(vec![unsupported.clone()]),
        );
        check(
            &[comment()],
            ContributionCommand::WithdrawSupport {
                supporter: user(1),
                at: t,
            },
            Ok(vec![]),
        );
        let withdrawn = ContributionEvent::Withdrawn(ContributionWithdrawn {
            contribution_id: contribution_id(),
            author: author(),
            withdrawn_at: t,
        });
        check(
            &[comment(), supported(1, t), unsupported],
            withdraw.clone(),
            Ok(vec![withdrawn.clone()]),
        );
        check(
            &[comment()],
            ContributionCommand::Withdraw { by: user(1), at: t },
            Err(ContributionError::NotTheAuthor),
        );
        check(&[comment(), withdrawn.clone()], withdraw, Ok(vec![]));
        check(
            &[comment(), withdrawn.clone()],
            support(2),
            Err(ContributionError::Withdrawn),
        );
        check(
            &[comment(), withdrawn],
            report(2, t),
            Err(ContributionError::Withdrawn),
        );
        check(
            &[statement()],
            support(2),
            Err(ContributionError::NotSupportable("statement")),
        );
        check(
            &[
                comment(),
                ContributionEvent::Hidden(ContributionHidden {
                    contribution_id: contribution_id(),
                    trigger: HidingTrigger::Moderator,
                    reason: Some(reason("x")),
                    hidden_at: t,
                }),
            ],
            support(2),
            Err(ContributionError::HiddenNoSupport),
        );
    }

    /// B5 (the rule): an unpublished "accepted" answer shows as not answered.
    #[test]
    fn answers_show_publicly_only_once_published() {
        let t = at(START) + days(1);
        let drafted = ContributionEvent::AnswerDrafted(AnswerDrafted {
            contribution_id: contribution_id(),
            state: AnswerState::Accepted,
            text: None,
            drafted_at: t,
        });
        check(
            &[comment()],
            ContributionCommand::DraftAnswer {
                state: AnswerState::Accepted,
                text: None,
                at: t,
            },
            Ok(vec![drafted.clone()]),
        );
        let draft_only = fold(&[comment(), drafted.clone()]);
        assert_eq!(
            draft_only.contribution().expect("c").public_answer(),
            PublicAnswer::NotAnswered
        );
        check(
            &[comment()],
            ContributionCommand::PublishAnswer { at: t },
            Err(ContributionError::NoDraft),
        );
        let published = ContributionEvent::AnswerPublished(AnswerPublished {
            contribution_id: contribution_id(),
            state: AnswerState::Accepted,
            text: None,
            published_at: t + secs(1),
        });
        check(
            &[comment(), drafted.clone()],
            ContributionCommand::PublishAnswer { at: t + secs(1) },
            Ok(vec![published.clone()]),
        );
        let done = [comment(), drafted, published];
        assert_eq!(
            fold(&done).contribution().expect("c").public_answer(),
            PublicAnswer::Accepted
        );
        check(
            &done,
            ContributionCommand::PublishAnswer { at: t },
            Ok(vec![]),
        );
        check(
            &done,
            ContributionCommand::DraftAnswer {
                state: AnswerState::Rejected,
                text: None,
                at: t,
            },
            Err(ContributionError::AnswerPublished),
        );
        check(
            &[statement()],
            ContributionCommand::DraftAnswer {
                state: AnswerState::Rejected,
                text: None,
                at: t,
            },
            Err(ContributionError::NotAnswerable("statement")),
        );
    }

    #[test]
    fn statements_are_weighed_until_the_decision() {
        let t = at(START) + days(40);
        let weighed = ContributionEvent::Weighed(StatementWeighed {
            contribution_id: contribution_id(),
            result: Weighing::PartlyConsidered,
            weighed_at: t,
        });
        let weigh = |decided| ContributionCommand::Weigh {
            result: Weighing::PartlyConsidered,
            decided,
            at: t,
        };
        check(&[statement()], weigh(false), Ok(vec![weighed.clone()]));
        check(&[statement(), weighed.clone()], weigh(false), Ok(vec![]));
        check(&[statement()], weigh(true), Err(ContributionError::Decided));
        check(
            &[comment()],
            weigh(false),
            Err(ContributionError::NotAStatement),
        );
        assert_eq!(
            fold(&[statement(), weighed])
                .contribution()
                .expect("c")
                .weighing,
            Some(Weighing::PartlyConsidered)
        );
    }

    #[test]
    fn the_content_is_sealed_and_erasure_leaves_the_rest() {
        let rng = SystemRandom::new();
        let key = DataKey::from_bytes([7; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let record = stored(
            encode(
                &comment(),
                uuid(0x99),
                Some(Sealing {
                    key_id: &key_id,
                    key: &key,
                }),
                &rng,
            )
            .expect("encode"),
        );
        let bytes = String::from_utf8(record.to_bytes().expect("bytes")).expect("utf8");
        assert!(
            !bytes.contains("Radweg") && !bytes.contains("Radlerin"),
            "{bytes}"
        );
        assert_eq!(
            record.sealed.as_ref().map(|s| s.subject.clone()),
            Some(author().to_string())
        );
        assert_eq!(
            decode::<ContributionEvent>(&record, Some(&key)),
            Ok(comment())
        );
        let ContributionEvent::Submitted(mut erased) = comment() else {
            unreachable!()
        };
        erased.content = Personal::Erased;
        let erased = ContributionEvent::Submitted(erased);
        assert_eq!(
            decode::<ContributionEvent>(&record, None),
            Ok(erased.clone())
        );
        // The erased contribution still counts, can still be moderated, but not rewritten.
        let state = fold(std::slice::from_ref(&erased));
        assert!(state.contribution().expect("c").content.is_erased());
        assert!(decide(&report(1, at(START)), &state).is_ok());
        assert_eq!(
            erased.to_parts(),
            Err(PartsError::Erased {
                event_type: "ContributionSubmitted"
            })
        );
    }

    #[test]
    fn event_json_snapshots() {
        let id = r#""contribution_id":"0193a1b2-0000-7000-8000-000000000020""#;
        snapshot(
            &comment(),
            "ContributionSubmitted",
            &format!(
                r#"{{"author":"0193a1b2-0000-7000-8000-0000000000a0",{id},"kind":"comment","late":false,"procedure_id":"0193a1b2-0000-7000-8000-000000000010","round_id":"0193a1b2-0000-7000-8000-000000000101","submitted_at":"2026-04-01T00:00:00.000000Z"}}"#
            ),
            Some(r#"{"pseudonym":"Radlerin","text":"Bitte einen Radweg entlang der Elbe."}"#),
        );
        let t = at(START);
        snapshot(
            &reported(1, t),
            "ContributionReported",
            &format!(
                r#"{{{id},"reason":"offensive","reported_at":"2026-04-01T00:00:00.000000Z","reporter":"0193a1b2-0000-7000-8000-0000000000b1"}}"#
            ),
            None,
        );
        snapshot(
            &hidden_by_threshold(t),
            "ContributionHidden",
            &format!(r#"{{{id},"hidden_at":"2026-04-01T00:00:00.000000Z","trigger":"threshold"}}"#),
            None,
        );
        snapshot(
            &supported(2, t),
            "SupportGiven",
            &format!(
                r#"{{{id},"given_at":"2026-04-01T00:00:00.000000Z","supporter":"0193a1b2-0000-7000-8000-0000000000b2"}}"#
            ),
            None,
        );
        snapshot(
            &ContributionEvent::Weighed(StatementWeighed {
                contribution_id: contribution_id(),
                result: Weighing::NotConsidered,
                weighed_at: t,
            }),
            "StatementWeighed",
            &format!(
                r#"{{{id},"result":"not_considered","weighed_at":"2026-04-01T00:00:00.000000Z"}}"#
            ),
            None,
        );
        assert_eq!(comment().data_subject(), Some(author().into()));
        assert_eq!(hidden_by_threshold(t).data_subject(), None);
        assert_eq!(reported(1, t).data_subject(), Some(user(1).into()));
        assert!(ContributionEvent::carries_personal_data(
            "ContributionSubmitted"
        ));
        assert!(!ContributionEvent::carries_personal_data(
            "ContributionReported"
        ));
    }
}
