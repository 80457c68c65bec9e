//! The application lifecycle, as one decider per application (`application-<uuid>`).
//!
//! ```text
//! draft ─submit→ submitted ─receive→ received ─start→ in progress ⇄ information requested
//!   │                 │                  │                 │                 │
//!   │                 └──────────────────┴──withdraw───────┴─────────────────┴→ withdrawn
//!   │                                    └──────────────decide──────────────→ decided ─close→ closed
//!   └─(30 days after the last edit, announced 7 days before)→ expired
//! ```
//!
//! - A draft is the applicant's alone: an authority never sees it (its events carry no
//!   routing). Its data is valid against the pinned form version whenever it is saved, and
//!   its attachments are the form's `upload` properties, referenced by SHA-256 and size.
//! - Submission requires a published (not retired) pinned version, saved data, and for every
//!   upload the data names, the attachment with exactly that hash. `ApplicationSubmitted`
//!   carries everything a receipt proves: the server's `submitted_at`, the form version and
//!   its hash, the data hash and the attachments' hashes, and the routing (authority,
//!   service, tenant) from which on every event of the application is delivered to the
//!   responsible authority and its Fachverfahren.
//! - The authority receives (with its file number, Aktenzeichen), may start processing,
//!   request information with a due date (the applicant answers), and decides (granted,
//!   rejected, partly granted, with the decision document's hash); then it closes the file.
//!   A decision needs the reception first. The applicant may withdraw from submission until
//!   the decision.
//! - The data hash is SHA-256(salt ‖ canonical JSON of the data) with 32 random bytes of
//!   salt kept in the sealed part: the applicant, who has data and salt, can recompute it,
//!   while the hash of erased data says nothing about it.
//!
//! The personal part of the events (form data, attachment file names, messages) is sealed
//! under the key of the data subject [`sealing_subject`]: the application's own id, so that
//! an expired draft is shredded alone, and erasing an applicant shreds the keys of all their
//! applications. The statuses map onto the federal status monitor (ZBP) by [`ZbpStatus`].

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::directory::{PaymentPolicy, ServiceName};
use super::form::{DataInvalid, FormSchema, VersionNo, VersionStatus};
use super::{instant, ApplicationId, FormId, Leika, Personal, Place, Sha256, SubjectId};
use crate::decider::decider;
use crate::event::{
    data_of, event_type_of, no_personal, parse_data, parse_personal, personal_of, DomainEvent,
    EventParts, PartsError, Routing,
};
use crate::newtype::{check_token, text};
use crate::record::timestamp;
use crate::stream::{AuthorityId, EventType, StreamId};

/// Drafts expire this long after their last edit (§ 9b EGovG by analogy).
pub const DRAFT_LIFETIME_DAYS: i64 = 30;
/// The applicant is told this long before a draft expires.
pub const EXPIRY_NOTICE_DAYS: i64 = 7;
/// The latest an information request may be due: this many days after the request. A
/// Nachforderung is answered within weeks (an "angemessene Frist"); a year bounds a typo
/// such as a year 2206, which would keep the application waiting for nothing.
pub const MAX_DUE_DAYS: i64 = 365;
/// The largest attachment accepted, in bytes (10 MiB).
pub const MAX_ATTACHMENT_BYTES: u64 = 10 * 1024 * 1024;

text!(
    /// A file number (Aktenzeichen) or a decision's reference. Stored in plaintext, so it
    /// must not name a person.
    FileNumber,
    "file number",
    50
);
text!(
    /// A message between authority and applicant (an information request, an answer).
    /// Personal data: held only as [`Personal`].
    Message,
    "message",
    4000
);
text!(
    /// An attachment's file name as the applicant uploaded it. Personal data.
    FileName,
    "file name",
    255
);

/// An attachment's media type, `type/subtype` in lowercase (`application/pdf`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MediaType(String);

impl MediaType {
    pub fn parse(s: &str) -> Result<Self, crate::newtype::TextError> {
        let ok = s.split_once('/').is_some_and(|(t, sub)| {
            check_token("media type", t, 60).is_ok()
                && check_token("media type", sub, 60).is_ok()
                && !sub.contains('/')
        }) && s.len() <= 127;
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(crate::newtype::TextError::Invalid {
                kind: "media type",
                max: 127,
                rule: "type/subtype in lowercase, e.g. application/pdf",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The data subject whose key seals the personal part of an application's events.
pub fn sealing_subject(application: ApplicationId) -> SubjectId {
    SubjectId(application.0)
}

/// The data hash: SHA-256(salt ‖ canonical JSON of `data`). `None` if the data is not
/// canonical JSON (a number beyond ±(2^53−1)).
pub fn data_hash(salt: &Sha256, data: &Value) -> Option<Sha256> {
    let canonical = crate::jcs::canonicalize(data).ok()?;
    Some(Sha256::of_parts(&[&salt.0, &canonical]))
}

/// Where the application goes: the responsible authority for the service at the
/// applicant's place, as the directory answered when the draft was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responsible {
    pub authority: AuthorityId,
    pub leika: Leika,
    pub place: Place,
    pub payment: PaymentPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<ServiceName>,
}

impl Responsible {
    /// The routing of the application's events from submission on.
    pub fn routing(&self) -> Routing {
        Routing {
            authority: Some(self.authority.clone()),
            service: Some(self.leika.service_key()),
            tenant: Some(self.place.ags().to_owned()),
        }
    }
}

/// The form version an application is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pinned {
    pub form: FormId,
    pub version: VersionNo,
    pub schema_hash: Sha256,
}

/// An attachment as the events reference it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentRef {
    pub sha256: Sha256,
    pub size: u64,
}

/// What an application owes before it may be submitted (the fee under the
/// [`PaymentPolicy::BeforeSubmission`] policy), as the service found it: settled, or still
/// outstanding, naming each obligation (a receivable's stream) with why. Under another
/// policy nothing is owed before the submission and this is not looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dues {
    Settled,
    /// Outstanding: each obligation's reference and why it is not settled. Empty when none
    /// has been established yet.
    Outstanding(Vec<(String, String)>),
}

/// How the authority decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Granted,
    Rejected,
    PartlyGranted,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// What is asked of an application, by whom. The applicant is named by its subject id, an
/// authority by its id; both are checked against the application.
#[derive(Debug, Clone, PartialEq)]
pub enum ApplicationCommand<'c> {
    /// Start a draft, pinned to a published form version and routed to `responsible`.
    Create {
        application_id: ApplicationId,
        applicant: SubjectId,
        pinned: Pinned,
        responsible: Responsible,
        at: DateTime<Utc>,
    },
    /// Replace the draft's data; `schema` is the pinned version's schema, `salt` 32 fresh
    /// random bytes.
    SaveData {
        applicant: SubjectId,
        data: Value,
        salt: Sha256,
        schema: &'c FormSchema,
        at: DateTime<Utc>,
    },
    /// Add (or replace) the attachment `name`, one of the form's uploads.
    AddAttachment {
        applicant: SubjectId,
        name: String,
        attachment: AttachmentRef,
        media_type: MediaType,
        file_name: FileName,
        schema: &'c FormSchema,
        at: DateTime<Utc>,
    },
    /// Submit the draft; `status` is the pinned version's status now, `dues` whether what
    /// the application owes before its submission is settled.
    Submit {
        applicant: SubjectId,
        schema: &'c FormSchema,
        status: VersionStatus,
        dues: Dues,
        at: DateTime<Utc>,
    },
    /// Save the draft's data and submit it at once: `SaveData` then `Submit`, decided on
    /// the state the save leaves, both events or neither. Refused like a submission when
    /// the application is not a draft any more, else like the save, else like the
    /// submission.
    SubmitWithData {
        applicant: SubjectId,
        data: Value,
        salt: Sha256,
        schema: &'c FormSchema,
        status: VersionStatus,
        dues: Dues,
        at: DateTime<Utc>,
    },
    Withdraw {
        applicant: SubjectId,
        at: DateTime<Utc>,
    },
    Receive {
        authority: AuthorityId,
        file_number: FileNumber,
        at: DateTime<Utc>,
    },
    StartProcessing {
        authority: AuthorityId,
        at: DateTime<Utc>,
    },
    RequestInformation {
        authority: AuthorityId,
        message: Message,
        due_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    ProvideInformation {
        applicant: SubjectId,
        request: u32,
        message: Message,
        at: DateTime<Utc>,
    },
    Decide {
        authority: AuthorityId,
        outcome: Outcome,
        document_hash: Sha256,
        at: DateTime<Utc>,
    },
    Close {
        authority: AuthorityId,
        at: DateTime<Utc>,
    },
    /// Tell the applicant that the draft expires (the service's sweeper, when due).
    AnnounceExpiry { at: DateTime<Utc> },
    /// Let the draft expire (the service's sweeper, when due); the service then shreds it.
    Expire { at: DateTime<Utc> },
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `ApplicationCreated`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationCreated {
    pub application_id: ApplicationId,
    pub applicant: SubjectId,
    pub pinned: Pinned,
    pub responsible: Responsible,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
}

/// `ApplicationDataSaved`; personal part `{"data": …, "salt": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationDataSaved {
    pub application_id: ApplicationId,
    pub data_hash: Sha256,
    /// The attachments the data names: each upload property's value, an attachment's
    /// SHA-256, which is no personal data beyond what `AttachmentAdded` shows.
    pub uploads: BTreeMap<String, Sha256>,
    #[serde(with = "timestamp")]
    pub saved_at: DateTime<Utc>,
    #[serde(skip)]
    pub data: Personal<SavedData>,
}

/// The personal part of [`ApplicationDataSaved`]. Its `Debug` shows neither member.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedData {
    pub data: Value,
    pub salt: Sha256,
}

impl std::fmt::Debug for SavedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SavedData(<personal data>)")
    }
}

/// `AttachmentAdded`; personal part `{"file_name": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachmentAdded {
    pub application_id: ApplicationId,
    pub name: String,
    pub attachment: AttachmentRef,
    pub media_type: MediaType,
    #[serde(with = "timestamp")]
    pub added_at: DateTime<Utc>,
    #[serde(skip)]
    pub file_name: Personal<FileName>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNamePart {
    file_name: FileName,
}

/// `ApplicationSubmitted`: what the receipt proves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSubmitted {
    pub application_id: ApplicationId,
    #[serde(with = "timestamp")]
    pub submitted_at: DateTime<Utc>,
    pub pinned: Pinned,
    pub data_hash: Sha256,
    pub attachments: BTreeMap<String, AttachmentRef>,
    pub authority: AuthorityId,
    pub leika: Leika,
    /// The AGS of the applicant's place: the events' tenant.
    pub tenant: String,
}

/// `ApplicationWithdrawn`, `ApplicationClosed`, `ProcessingStarted`, `DraftExpired`: a
/// step with nothing but its instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub application_id: ApplicationId,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
}

/// `ApplicationReceived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationReceived {
    pub application_id: ApplicationId,
    pub file_number: FileNumber,
    #[serde(with = "timestamp")]
    pub received_at: DateTime<Utc>,
}

/// `InformationRequested` and `InformationProvided`; personal part `{"message": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InformationMessage {
    pub application_id: ApplicationId,
    /// The request's number, from 1; the answer names the request it answers.
    pub request: u32,
    /// The due date of a request; absent on an answer.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::record::opt_timestamp"
    )]
    pub due_at: Option<DateTime<Utc>>,
    #[serde(with = "timestamp")]
    pub at: DateTime<Utc>,
    #[serde(skip)]
    pub message: Personal<Message>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MessagePart {
    message: Message,
}

/// `DecisionIssued`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionIssued {
    pub application_id: ApplicationId,
    pub outcome: Outcome,
    pub document_hash: Sha256,
    #[serde(with = "timestamp")]
    pub decided_at: DateTime<Utc>,
}

/// `DraftExpiryAnnounced`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftExpiryAnnounced {
    pub application_id: ApplicationId,
    #[serde(with = "timestamp")]
    pub announced_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub expires_at: DateTime<Utc>,
}

/// `ApplicationRead`: an authority's official or Fachverfahren read the application's
/// personal data. Recorded by the service on every such read, so that the applicant and
/// the data protection officer can list who read it and when. A fact, not a decision: no
/// command decides it, and it changes nothing of the application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationRead {
    pub application_id: ApplicationId,
    /// Who read, as the envelope's actor names callers (`authority:<sub>`), pseudonymous.
    pub reader: ReaderLabel,
    /// The authority the reader works for.
    pub authority: AuthorityId,
    /// What was read: `application` (data, attachments' names, messages).
    pub what: ReadKind,
    #[serde(with = "timestamp")]
    pub read_at: DateTime<Utc>,
}

text!(
    /// A pseudonymous label of a reader (`authority:7f3a…`).
    ReaderLabel,
    "reader",
    255
);

/// What a recorded read showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadKind {
    /// The application with its data and messages.
    Application,
    /// One attachment's content.
    Attachment,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApplicationEvent {
    Created(ApplicationCreated),
    DataSaved(ApplicationDataSaved),
    AttachmentAdded(AttachmentAdded),
    Submitted(ApplicationSubmitted),
    Withdrawn(Step),
    Received(ApplicationReceived),
    ProcessingStarted(Step),
    InformationRequested(InformationMessage),
    InformationProvided(InformationMessage),
    Decided(DecisionIssued),
    Closed(Step),
    ExpiryAnnounced(DraftExpiryAnnounced),
    Expired(Step),
    Read(ApplicationRead),
}

const CREATED: &str = "ApplicationCreated";
const DATA_SAVED: &str = "ApplicationDataSaved";
const ATTACHMENT_ADDED: &str = "AttachmentAdded";
const SUBMITTED: &str = "ApplicationSubmitted";
const WITHDRAWN: &str = "ApplicationWithdrawn";
const RECEIVED: &str = "ApplicationReceived";
const PROCESSING: &str = "ProcessingStarted";
const INFO_REQUESTED: &str = "InformationRequested";
const INFO_PROVIDED: &str = "InformationProvided";
const DECIDED: &str = "DecisionIssued";
const CLOSED: &str = "ApplicationClosed";
const EXPIRY_ANNOUNCED: &str = "DraftExpiryAnnounced";
const EXPIRED: &str = "DraftExpired";
const READ: &str = "ApplicationRead";

/// Every event type of an application, in lifecycle order.
pub const EVENT_TYPES: [&str; 14] = [
    CREATED,
    DATA_SAVED,
    ATTACHMENT_ADDED,
    SUBMITTED,
    WITHDRAWN,
    RECEIVED,
    PROCESSING,
    INFO_REQUESTED,
    INFO_PROVIDED,
    DECIDED,
    CLOSED,
    EXPIRY_ANNOUNCED,
    EXPIRED,
    READ,
];

impl ApplicationEvent {
    pub fn application_id(&self) -> ApplicationId {
        match self {
            Self::Created(e) => e.application_id,
            Self::DataSaved(e) => e.application_id,
            Self::AttachmentAdded(e) => e.application_id,
            Self::Submitted(e) => e.application_id,
            Self::Withdrawn(e)
            | Self::ProcessingStarted(e)
            | Self::Closed(e)
            | Self::Expired(e) => e.application_id,
            Self::Received(e) => e.application_id,
            Self::InformationRequested(e) | Self::InformationProvided(e) => e.application_id,
            Self::Decided(e) => e.application_id,
            Self::ExpiryAnnounced(e) => e.application_id,
            Self::Read(e) => e.application_id,
        }
    }
}

impl DomainEvent for ApplicationEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => CREATED,
            Self::DataSaved(_) => DATA_SAVED,
            Self::AttachmentAdded(_) => ATTACHMENT_ADDED,
            Self::Submitted(_) => SUBMITTED,
            Self::Withdrawn(_) => WITHDRAWN,
            Self::Received(_) => RECEIVED,
            Self::ProcessingStarted(_) => PROCESSING,
            Self::InformationRequested(_) => INFO_REQUESTED,
            Self::InformationProvided(_) => INFO_PROVIDED,
            Self::Decided(_) => DECIDED,
            Self::Closed(_) => CLOSED,
            Self::ExpiryAnnounced(_) => EXPIRY_ANNOUNCED,
            Self::Expired(_) => EXPIRED,
            Self::Read(_) => READ,
        }
    }

    fn stream_id(&self) -> StreamId {
        self.application_id().stream_id()
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            Self::Created(e) => e.created_at,
            Self::DataSaved(e) => e.saved_at,
            Self::AttachmentAdded(e) => e.added_at,
            Self::Submitted(e) => e.submitted_at,
            Self::Withdrawn(e)
            | Self::ProcessingStarted(e)
            | Self::Closed(e)
            | Self::Expired(e) => e.at,
            Self::Received(e) => e.received_at,
            Self::InformationRequested(e) | Self::InformationProvided(e) => e.at,
            Self::Decided(e) => e.decided_at,
            Self::ExpiryAnnounced(e) => e.announced_at,
            Self::Read(e) => e.read_at,
        }
    }

    /// The submission names its routing; the events after it get theirs from the state
    /// ([`ApplicationState::routing`]) through the command's metadata. Drafts have none,
    /// so no authority ever sees them.
    fn routing(&self) -> Routing {
        match self {
            Self::Submitted(e) => Routing {
                authority: Some(e.authority.clone()),
                service: Some(e.leika.service_key()),
                tenant: Some(e.tenant.clone()),
            },
            _ => Routing::default(),
        }
    }

    fn data_subject(&self) -> Option<SubjectId> {
        Some(sealing_subject(self.application_id()))
    }

    fn carries_personal_data(event_type: &str) -> bool {
        matches!(
            event_type,
            DATA_SAVED | ATTACHMENT_ADDED | INFO_REQUESTED | INFO_PROVIDED
        )
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        let name = self.event_type();
        let (data, personal) = match self {
            Self::Created(e) => (data_of(name, e)?, None),
            Self::DataSaved(e) => (data_of(name, e)?, Some(personal_of(name, &e.data)?)),
            Self::AttachmentAdded(e) => {
                let part = e
                    .file_name
                    .clone()
                    .map(|file_name| FileNamePart { file_name });
                (data_of(name, e)?, Some(personal_of(name, &part)?))
            }
            Self::Submitted(e) => (data_of(name, e)?, None),
            Self::Withdrawn(e)
            | Self::ProcessingStarted(e)
            | Self::Closed(e)
            | Self::Expired(e) => (data_of(name, e)?, None),
            Self::Received(e) => (data_of(name, e)?, None),
            Self::InformationRequested(e) | Self::InformationProvided(e) => {
                let part = e.message.clone().map(|message| MessagePart { message });
                (data_of(name, e)?, Some(personal_of(name, &part)?))
            }
            Self::Decided(e) => (data_of(name, e)?, None),
            Self::ExpiryAnnounced(e) => (data_of(name, e)?, None),
            Self::Read(e) => (data_of(name, e)?, None),
        };
        Ok(EventParts {
            event_type: event_type_of(name)?,
            data,
            personal,
        })
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        let name = EVENT_TYPES
            .into_iter()
            .find(|n| *n == event_type.as_str())
            .ok_or_else(|| PartsError::UnknownEventType(event_type.as_str().to_owned()))?;
        if !Self::carries_personal_data(name) {
            no_personal(name, personal)?;
        }
        let message = |data: &Value| -> Result<InformationMessage, PartsError> {
            let mut e: InformationMessage = parse_data(name, data)?;
            e.message = parse_personal::<MessagePart>(name, personal)?.map(|p| p.message);
            Ok(e)
        };
        Ok(match name {
            CREATED => Self::Created(parse_data(name, data)?),
            DATA_SAVED => {
                let mut e: ApplicationDataSaved = parse_data(name, data)?;
                e.data = parse_personal(name, personal)?;
                Self::DataSaved(e)
            }
            ATTACHMENT_ADDED => {
                let mut e: AttachmentAdded = parse_data(name, data)?;
                e.file_name = parse_personal::<FileNamePart>(name, personal)?.map(|p| p.file_name);
                Self::AttachmentAdded(e)
            }
            SUBMITTED => Self::Submitted(parse_data(name, data)?),
            WITHDRAWN => Self::Withdrawn(parse_data(name, data)?),
            RECEIVED => Self::Received(parse_data(name, data)?),
            PROCESSING => Self::ProcessingStarted(parse_data(name, data)?),
            INFO_REQUESTED => Self::InformationRequested(message(data)?),
            INFO_PROVIDED => Self::InformationProvided(message(data)?),
            DECIDED => Self::Decided(parse_data(name, data)?),
            CLOSED => Self::Closed(parse_data(name, data)?),
            EXPIRY_ANNOUNCED => Self::ExpiryAnnounced(parse_data(name, data)?),
            READ => Self::Read(parse_data(name, data)?),
            _ => Self::Expired(parse_data(name, data)?),
        })
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// Where an application is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Submitted,
    Received,
    InProgress,
    InformationRequested,
    Decided,
    Closed,
    Withdrawn,
    Expired,
}

impl Status {
    pub const ALL: [Status; 9] = [
        Status::Draft,
        Status::Submitted,
        Status::Received,
        Status::InProgress,
        Status::InformationRequested,
        Status::Decided,
        Status::Closed,
        Status::Withdrawn,
        Status::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Submitted => "submitted",
            Status::Received => "received",
            Status::InProgress => "in_progress",
            Status::InformationRequested => "information_requested",
            Status::Decided => "decided",
            Status::Closed => "closed",
            Status::Withdrawn => "withdrawn",
            Status::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|status| status.as_str() == s)
    }

    /// Whether an authority may see the application: from submission on.
    pub fn is_submitted(self) -> bool {
        !matches!(self, Status::Draft | Status::Expired)
    }

    /// Whether the application is still open at the authority (submitted, not yet decided,
    /// withdrawn or closed).
    pub fn is_pending(self) -> bool {
        matches!(
            self,
            Status::Submitted
                | Status::Received
                | Status::InProgress
                | Status::InformationRequested
        )
    }
}

/// The status of the federal status monitor (ZBP) and FIT-Connect's submission states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ZbpStatus {
    Initiated,
    Submitted,
    Received,
    Processing,
    ActionRequired,
    Completed,
}

/// An open information request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRequest {
    pub request: u32,
    pub due_at: DateTime<Utc>,
}

/// What the state knows of an application (never its personal data: evolve needs none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: ApplicationId,
    pub applicant: SubjectId,
    pub pinned: Pinned,
    pub responsible: Responsible,
    pub status: Status,
    pub created_at: DateTime<Utc>,
    /// The last edit of the draft (creation, data, attachment).
    pub last_edit: DateTime<Utc>,
    /// The expiry the applicant was told of, for the draft as last edited.
    pub expiry_announced: Option<DateTime<Utc>>,
    pub data_hash: Option<Sha256>,
    /// The attachments the saved data names, by their hashes.
    pub named_uploads: BTreeMap<String, Sha256>,
    pub attachments: BTreeMap<String, AttachmentRef>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub file_number: Option<FileNumber>,
    pub requests: u32,
    pub open_request: Option<OpenRequest>,
    pub outcome: Option<Outcome>,
    pub decided_at: Option<DateTime<Utc>>,
    /// When it was closed, withdrawn or expired.
    pub ended_at: Option<DateTime<Utc>>,
}

/// What an application's retention duty is (Art. 17 (3) (b) GDPR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retention {
    /// Nothing to keep: a draft or an expired draft.
    None,
    /// The procedure is open: keep everything until it ends.
    Open,
    /// Keep until then (the end of the procedure plus the retention period).
    Until(DateTime<Utc>),
}

impl Application {
    /// The ZBP status and, for a completed application, its details (at most 50
    /// characters, as the status monitor allows).
    pub fn zbp(&self) -> (ZbpStatus, Option<&'static str>) {
        match self.status {
            Status::Draft => (ZbpStatus::Initiated, None),
            Status::Submitted => (ZbpStatus::Submitted, None),
            Status::Received => (ZbpStatus::Received, None),
            Status::InProgress => (ZbpStatus::Processing, None),
            Status::InformationRequested => (ZbpStatus::ActionRequired, None),
            Status::Decided | Status::Closed => (
                ZbpStatus::Completed,
                Some(match self.outcome {
                    Some(Outcome::Granted) => "bewilligt",
                    Some(Outcome::Rejected) => "abgelehnt",
                    Some(Outcome::PartlyGranted) | None => "teilweise bewilligt",
                }),
            ),
            Status::Withdrawn => (ZbpStatus::Completed, Some("zurückgenommen")),
            Status::Expired => (ZbpStatus::Completed, Some("Entwurf gelöscht")),
        }
    }

    /// The routing of the application's events from submission on; none for a draft.
    pub fn routing(&self) -> Routing {
        if self.status.is_submitted() {
            self.responsible.routing()
        } else {
            Routing::default()
        }
    }

    /// When the draft expires: 30 days after its last edit.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        (self.status == Status::Draft).then(|| self.last_edit + Duration::days(DRAFT_LIFETIME_DAYS))
    }

    /// When the applicant is to be told: 7 days before the expiry.
    pub fn announce_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at()
            .map(|e| e - Duration::days(EXPIRY_NOTICE_DAYS))
    }

    /// Whether an information request is past its due date at `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.status == Status::InformationRequested
            && self.open_request.as_ref().is_some_and(|r| r.due_at < now)
    }

    /// The retention duty with a retention period of `period` after the procedure ends.
    pub fn retention(&self, period: Duration) -> Retention {
        match self.status {
            Status::Draft | Status::Expired => Retention::None,
            Status::Closed | Status::Withdrawn => {
                Retention::Until(self.ended_at.unwrap_or(self.created_at) + period)
            }
            _ => Retention::Open,
        }
    }
}

/// The state of an application stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplicationState(pub Option<Application>);

/// Why an application command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplicationError {
    #[error("this application already exists")]
    AlreadyCreated,
    #[error("no such application")]
    NotFound,
    #[error("this application is someone else's")]
    NotYourApplication,
    #[error("this application is addressed to another authority")]
    OtherAuthority,
    #[error("the schema given is not the one of the pinned form version")]
    WrongSchema,
    #[error("{0}")]
    DataInvalid(DataInvalid),
    #[error("the data holds a number beyond ±(2^53−1), which has no canonical JSON form")]
    NotCanonical,
    #[error("the form declares no attachment {0:?}")]
    UnknownAttachment(String),
    #[error("an attachment is 1 to {MAX_ATTACHMENT_BYTES} bytes; this one has {0}")]
    AttachmentSize(u64),
    #[error("the application is {}; only a draft can be changed or submitted", .0.as_str())]
    NotADraft(Status),
    #[error("the application has already been submitted")]
    AlreadySubmitted,
    #[error("the form version the draft was made with is retired; start a new application")]
    VersionRetired,
    #[error("the form version the draft was made with is not published")]
    VersionNotPublished,
    #[error("no data has been saved yet")]
    NoData,
    #[error("the data names attachment {0:?}, which has not been uploaded")]
    MissingAttachment(String),
    #[error("the data names attachment {0:?} with another hash than the uploaded one")]
    AttachmentMismatch(String),
    #[error("the application has not been submitted")]
    NotSubmitted,
    #[error("the application is {}; this is not possible any more", .0.as_str())]
    Finished(Status),
    #[error("the application is {}; this needs {}", .status.as_str(), .needs)]
    WrongStatus { status: Status, needs: &'static str },
    #[error("the application has been received with another file number")]
    OtherFileNumber,
    #[error("a due date lies after the request")]
    DueNotAfterRequest,
    #[error("a due date lies at most {MAX_DUE_DAYS} days after the request")]
    DueTooLate,
    #[error("information request {0} is not the open one")]
    NotTheOpenRequest(u32),
    #[error("{}", outstanding(.0))]
    PaymentOutstanding(Vec<(String, String)>),
    #[error("the draft is not due: {0}")]
    NotDue(&'static str),
}

fn outstanding(dues: &[(String, String)]) -> String {
    if dues.is_empty() {
        return "the fee must be paid before the submission, and none has been requested yet"
            .into();
    }
    let each: Vec<String> = dues.iter().map(|(r, why)| format!("{r}: {why}")).collect();
    format!(
        "the fee must be paid before the submission: {}",
        each.join("; ")
    )
}

fn instants_ok(at: DateTime<Utc>) -> DateTime<Utc> {
    instant(at)
}

/// The attachments `data` names: the value of each upload property, which must be the
/// SHA-256 of the attachment.
fn uploads_named(
    schema: &FormSchema,
    data: &Value,
) -> Result<BTreeMap<String, Sha256>, ApplicationError> {
    let mut named = BTreeMap::new();
    let mut violations = Vec::new();
    for name in schema.uploads().keys() {
        let Some(value) = data.get(name) else {
            continue;
        };
        match value.as_str().map(Sha256::parse) {
            Some(Ok(hash)) => {
                named.insert(name.clone(), hash);
            }
            _ => violations.push(super::form::Violation {
                pointer: format!("/{}", super::form::pointer_token(name)),
                keyword: "x-editor".into(),
                schema_path: format!("/properties/{}/x-editor", super::form::pointer_token(name)),
            }),
        }
    }
    if violations.is_empty() {
        Ok(named)
    } else {
        Err(ApplicationError::DataInvalid(DataInvalid {
            count: violations.len(),
            violations,
        }))
    }
}

/// Decides an application command.
pub fn decide(
    command: &ApplicationCommand<'_>,
    state: &ApplicationState,
) -> Result<Vec<ApplicationEvent>, ApplicationError> {
    use ApplicationCommand as C;
    use ApplicationError as E;
    let app = match (command, &state.0) {
        (
            C::Create {
                application_id,
                applicant,
                pinned,
                responsible,
                at,
            },
            None,
        ) => {
            return Ok(vec![ApplicationEvent::Created(ApplicationCreated {
                application_id: *application_id,
                applicant: *applicant,
                pinned: pinned.clone(),
                responsible: responsible.clone(),
                created_at: instants_ok(*at),
            })]);
        }
        (C::Create { .. }, Some(_)) => return Err(E::AlreadyCreated),
        (_, None) => return Err(E::NotFound),
        (_, Some(app)) => app,
    };
    let id = app.id;
    let own = |applicant: &SubjectId| {
        if *applicant == app.applicant {
            Ok(())
        } else {
            Err(E::NotYourApplication)
        }
    };
    let addressed = |authority: &AuthorityId| {
        if *authority == app.responsible.authority && app.status.is_submitted() {
            Ok(())
        } else if app.status.is_submitted() {
            Err(E::OtherAuthority)
        } else {
            // A draft is not the authority's to know of.
            Err(E::NotFound)
        }
    };
    let draft = || match app.status {
        Status::Draft => Ok(()),
        status => Err(E::NotADraft(status)),
    };
    let pinned_schema = |schema: &FormSchema| {
        if schema.hash() == app.pinned.schema_hash {
            Ok(())
        } else {
            Err(E::WrongSchema)
        }
    };
    match command {
        C::Create { .. } => unreachable!("handled above"),
        C::SaveData {
            applicant,
            data,
            salt,
            schema,
            at,
        } => {
            own(applicant)?;
            draft()?;
            pinned_schema(schema)?;
            schema.check(data).map_err(E::DataInvalid)?;
            let uploads = uploads_named(schema, data)?;
            let data_hash = data_hash(salt, data).ok_or(E::NotCanonical)?;
            Ok(vec![ApplicationEvent::DataSaved(ApplicationDataSaved {
                application_id: id,
                data_hash,
                uploads,
                saved_at: instant(*at),
                data: Personal::Available(SavedData {
                    data: data.clone(),
                    salt: *salt,
                }),
            })])
        }
        C::AddAttachment {
            applicant,
            name,
            attachment,
            media_type,
            file_name,
            schema,
            at,
        } => {
            own(applicant)?;
            draft()?;
            pinned_schema(schema)?;
            if !schema.uploads().contains_key(name) {
                return Err(E::UnknownAttachment(name.clone()));
            }
            if attachment.size == 0 || attachment.size > MAX_ATTACHMENT_BYTES {
                return Err(E::AttachmentSize(attachment.size));
            }
            Ok(vec![ApplicationEvent::AttachmentAdded(AttachmentAdded {
                application_id: id,
                name: name.clone(),
                attachment: attachment.clone(),
                media_type: media_type.clone(),
                added_at: instant(*at),
                file_name: Personal::Available(file_name.clone()),
            })])
        }
        C::SubmitWithData {
            applicant,
            data,
            salt,
            schema,
            status,
            dues,
            at,
        } => {
            own(applicant)?;
            match app.status {
                Status::Draft => {}
                Status::Expired => return Err(E::NotADraft(Status::Expired)),
                _ => return Err(E::AlreadySubmitted),
            }
            let save = C::SaveData {
                applicant: *applicant,
                data: data.clone(),
                salt: *salt,
                schema,
                at: *at,
            };
            let mut events = decide(&save, state)?;
            let saved = events.iter().fold(state.clone(), evolve);
            let submit = C::Submit {
                applicant: *applicant,
                schema,
                status: *status,
                dues: dues.clone(),
                at: *at,
            };
            events.extend(decide(&submit, &saved)?);
            Ok(events)
        }
        C::Submit {
            applicant,
            schema,
            status,
            dues,
            at,
        } => {
            own(applicant)?;
            match app.status {
                Status::Draft => {}
                Status::Expired => return Err(E::NotADraft(Status::Expired)),
                _ => return Err(E::AlreadySubmitted),
            }
            pinned_schema(schema)?;
            match status {
                VersionStatus::Published => {}
                VersionStatus::Retired => return Err(E::VersionRetired),
                VersionStatus::Editing => return Err(E::VersionNotPublished),
            }
            // The data was valid when saved against this very schema, and a published
            // schema never changes, so it is still valid.
            let data_hash = app.data_hash.ok_or(E::NoData)?;
            if app.responsible.payment == PaymentPolicy::BeforeSubmission {
                if let Dues::Outstanding(outstanding) = dues {
                    return Err(E::PaymentOutstanding(outstanding.clone()));
                }
            }
            let mut attachments = BTreeMap::new();
            for (name, hash) in &app.named_uploads {
                let uploaded = app
                    .attachments
                    .get(name)
                    .ok_or_else(|| E::MissingAttachment(name.clone()))?;
                if uploaded.sha256 != *hash {
                    return Err(E::AttachmentMismatch(name.clone()));
                }
                attachments.insert(name.clone(), uploaded.clone());
            }
            Ok(vec![ApplicationEvent::Submitted(ApplicationSubmitted {
                application_id: id,
                submitted_at: instant(*at),
                pinned: app.pinned.clone(),
                data_hash,
                attachments,
                authority: app.responsible.authority.clone(),
                leika: app.responsible.leika.clone(),
                tenant: app.responsible.place.ags().to_owned(),
            })])
        }
        C::Withdraw { applicant, at } => {
            own(applicant)?;
            match app.status {
                Status::Draft | Status::Expired => Err(E::NotSubmitted),
                Status::Withdrawn => Ok(vec![]),
                s if s.is_pending() => Ok(vec![ApplicationEvent::Withdrawn(Step {
                    application_id: id,
                    at: instant(*at),
                })]),
                s => Err(E::Finished(s)),
            }
        }
        C::Receive {
            authority,
            file_number,
            at,
        } => {
            addressed(authority)?;
            match app.status {
                Status::Submitted => Ok(vec![ApplicationEvent::Received(ApplicationReceived {
                    application_id: id,
                    file_number: file_number.clone(),
                    received_at: instant(*at),
                })]),
                _ if app.file_number.as_ref() == Some(file_number) => Ok(vec![]),
                Status::Received | Status::InProgress | Status::InformationRequested => {
                    Err(E::OtherFileNumber)
                }
                s => Err(E::Finished(s)),
            }
        }
        C::StartProcessing { authority, at } => {
            addressed(authority)?;
            match app.status {
                Status::Received => Ok(vec![ApplicationEvent::ProcessingStarted(Step {
                    application_id: id,
                    at: instant(*at),
                })]),
                Status::InProgress | Status::InformationRequested => Ok(vec![]),
                Status::Submitted => Err(E::WrongStatus {
                    status: app.status,
                    needs: "the reception first",
                }),
                s => Err(E::Finished(s)),
            }
        }
        C::RequestInformation {
            authority,
            message,
            due_at,
            at,
        } => {
            addressed(authority)?;
            let (at, due_at) = (instant(*at), instant(*due_at));
            match app.status {
                Status::Received | Status::InProgress => {}
                Status::Submitted => {
                    return Err(E::WrongStatus {
                        status: app.status,
                        needs: "the reception first",
                    })
                }
                Status::InformationRequested => {
                    return Err(E::WrongStatus {
                        status: app.status,
                        needs: "the open request answered first",
                    })
                }
                s => return Err(E::Finished(s)),
            }
            if due_at <= at {
                return Err(E::DueNotAfterRequest);
            }
            if at
                .checked_add_signed(Duration::days(MAX_DUE_DAYS))
                .is_none_or(|latest| due_at > latest)
            {
                return Err(E::DueTooLate);
            }
            Ok(vec![ApplicationEvent::InformationRequested(
                InformationMessage {
                    application_id: id,
                    request: app.requests + 1,
                    due_at: Some(due_at),
                    at,
                    message: Personal::Available(message.clone()),
                },
            )])
        }
        C::ProvideInformation {
            applicant,
            request,
            message,
            at,
        } => {
            own(applicant)?;
            match (&app.open_request, app.status) {
                (Some(open), Status::InformationRequested) if open.request == *request => {
                    Ok(vec![ApplicationEvent::InformationProvided(
                        InformationMessage {
                            application_id: id,
                            request: *request,
                            due_at: None,
                            at: instant(*at),
                            message: Personal::Available(message.clone()),
                        },
                    )])
                }
                (_, Status::InformationRequested) => Err(E::NotTheOpenRequest(*request)),
                (_, s) if s.is_pending() => Err(E::NotTheOpenRequest(*request)),
                (_, Status::Draft) => Err(E::NotSubmitted),
                (_, s) => Err(E::Finished(s)),
            }
        }
        C::Decide {
            authority,
            outcome,
            document_hash,
            at,
        } => {
            addressed(authority)?;
            match app.status {
                Status::Received | Status::InProgress | Status::InformationRequested => {
                    Ok(vec![ApplicationEvent::Decided(DecisionIssued {
                        application_id: id,
                        outcome: *outcome,
                        document_hash: *document_hash,
                        decided_at: instant(*at),
                    })])
                }
                Status::Submitted => Err(E::WrongStatus {
                    status: app.status,
                    needs: "the reception first",
                }),
                s => Err(E::Finished(s)),
            }
        }
        C::Close { authority, at } => {
            addressed(authority)?;
            match app.status {
                Status::Decided => Ok(vec![ApplicationEvent::Closed(Step {
                    application_id: id,
                    at: instant(*at),
                })]),
                Status::Closed => Ok(vec![]),
                s if s.is_pending() => Err(E::WrongStatus {
                    status: s,
                    needs: "the decision first",
                }),
                s => Err(E::Finished(s)),
            }
        }
        C::AnnounceExpiry { at } => {
            draft()?;
            let at = instant(*at);
            let (announce_at, expires_at) = match (app.announce_at(), app.expires_at()) {
                (Some(a), Some(e)) => (a, e),
                _ => return Err(E::NotADraft(app.status)),
            };
            if app.expiry_announced == Some(expires_at) {
                return Ok(vec![]);
            }
            if at < announce_at {
                return Err(E::NotDue("its expiry is announced 7 days before"));
            }
            Ok(vec![ApplicationEvent::ExpiryAnnounced(
                DraftExpiryAnnounced {
                    application_id: id,
                    announced_at: at,
                    expires_at,
                },
            )])
        }
        C::Expire { at } => {
            if app.status == Status::Expired {
                return Ok(vec![]);
            }
            draft()?;
            let at = instant(*at);
            let expires_at = app.expires_at().ok_or(E::NotADraft(app.status))?;
            if at < expires_at {
                return Err(E::NotDue("a draft expires 30 days after its last edit"));
            }
            if app.expiry_announced != Some(expires_at) {
                return Err(E::NotDue("its expiry has not been announced"));
            }
            Ok(vec![ApplicationEvent::Expired(Step {
                application_id: id,
                at,
            })])
        }
    }
}

/// Applies an event; events `decide` never produces in a state leave it as it is.
pub fn evolve(state: ApplicationState, event: &ApplicationEvent) -> ApplicationState {
    use ApplicationEvent as Ev;
    let Some(mut app) = state.0 else {
        return match event {
            Ev::Created(e) => ApplicationState(Some(Application {
                id: e.application_id,
                applicant: e.applicant,
                pinned: e.pinned.clone(),
                responsible: e.responsible.clone(),
                status: Status::Draft,
                created_at: e.created_at,
                last_edit: e.created_at,
                expiry_announced: None,
                data_hash: None,
                named_uploads: BTreeMap::new(),
                attachments: BTreeMap::new(),
                submitted_at: None,
                file_number: None,
                requests: 0,
                open_request: None,
                outcome: None,
                decided_at: None,
                ended_at: None,
            })),
            _ => ApplicationState(None),
        };
    };
    match (app.status, event) {
        (Status::Draft, Ev::DataSaved(e)) => {
            app.data_hash = Some(e.data_hash);
            app.named_uploads = e.uploads.clone();
            app.last_edit = e.saved_at;
            app.expiry_announced = None;
        }
        (Status::Draft, Ev::AttachmentAdded(e)) => {
            app.attachments.insert(e.name.clone(), e.attachment.clone());
            app.last_edit = e.added_at;
            app.expiry_announced = None;
        }
        (Status::Draft, Ev::ExpiryAnnounced(e)) => app.expiry_announced = Some(e.expires_at),
        (Status::Draft, Ev::Expired(e)) => {
            app.status = Status::Expired;
            app.ended_at = Some(e.at);
        }
        (Status::Draft, Ev::Submitted(e)) => {
            app.status = Status::Submitted;
            app.submitted_at = Some(e.submitted_at);
            app.attachments = e.attachments.clone();
            app.data_hash = Some(e.data_hash);
        }
        (s, Ev::Withdrawn(e)) if s.is_pending() => {
            app.status = Status::Withdrawn;
            app.open_request = None;
            app.ended_at = Some(e.at);
        }
        (Status::Submitted, Ev::Received(e)) => {
            app.status = Status::Received;
            app.file_number = Some(e.file_number.clone());
        }
        (Status::Received, Ev::ProcessingStarted(_)) => app.status = Status::InProgress,
        (Status::Received | Status::InProgress, Ev::InformationRequested(e)) => {
            app.status = Status::InformationRequested;
            app.requests = e.request;
            app.open_request = e.due_at.map(|due_at| OpenRequest {
                request: e.request,
                due_at,
            });
        }
        (Status::InformationRequested, Ev::InformationProvided(_)) => {
            app.status = Status::InProgress;
            app.open_request = None;
        }
        (Status::Received | Status::InProgress | Status::InformationRequested, Ev::Decided(e)) => {
            app.status = Status::Decided;
            app.outcome = Some(e.outcome);
            app.decided_at = Some(e.decided_at);
            app.open_request = None;
        }
        (Status::Decided, Ev::Closed(e)) => {
            app.status = Status::Closed;
            app.ended_at = Some(e.at);
        }
        _ => {}
    }
    ApplicationState(Some(app))
}

decider!(ApplicationState: ApplicationCommand<'c> => ApplicationEvent, ApplicationError);

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::applications::form::tests::schema;
    use crate::applications::testing::*;

    fn id() -> ApplicationId {
        ApplicationId(uuid(0xa1))
    }

    fn applicant() -> SubjectId {
        SubjectId(uuid(0xc1))
    }

    fn stranger() -> SubjectId {
        SubjectId(uuid(0xc2))
    }

    fn authority() -> AuthorityId {
        AuthorityId::parse("lra-meissen").expect("authority")
    }

    fn other_authority() -> AuthorityId {
        AuthorityId::parse("lra-bautzen").expect("authority")
    }

    fn responsible() -> Responsible {
        Responsible {
            authority: authority(),
            leika: Leika::parse("99108001000000").expect("leika"),
            place: Place::parse("146120000000").expect("place"),
            payment: PaymentPolicy::AfterDecision,
            service_name: None,
        }
    }

    fn pinned() -> Pinned {
        Pinned {
            form: FormId(uuid(0xf)),
            version: 1,
            schema_hash: schema().hash(),
        }
    }

    fn pdf() -> AttachmentRef {
        AttachmentRef {
            sha256: Sha256::of(b"%PDF nachweis"),
            size: 13,
        }
    }

    fn salt() -> Sha256 {
        Sha256([7; 32])
    }

    fn data() -> Value {
        json!({
            "familienname": "Müller", "geburtsdatum": "1990-02-03",
            "nachweis": pdf().sha256.to_string()
        })
    }

    fn run(
        state: &ApplicationState,
        command: &ApplicationCommand<'_>,
    ) -> Result<ApplicationState, ApplicationError> {
        let events = decide(command, state)?;
        for e in &events {
            round_trip(e);
        }
        Ok(events.iter().fold(state.clone(), evolve))
    }

    fn app(state: &ApplicationState) -> &Application {
        state.0.as_ref().expect("application")
    }

    fn created() -> ApplicationState {
        run(
            &ApplicationState::default(),
            &ApplicationCommand::Create {
                application_id: id(),
                applicant: applicant(),
                pinned: pinned(),
                responsible: responsible(),
                at: at("2026-03-01T10:00:00Z"),
            },
        )
        .expect("create")
    }

    fn save(
        state: &ApplicationState,
        data: Value,
        when: &str,
    ) -> Result<ApplicationState, ApplicationError> {
        let schema = schema();
        run(
            state,
            &ApplicationCommand::SaveData {
                applicant: applicant(),
                data,
                salt: salt(),
                schema: &schema,
                at: at(when),
            },
        )
    }

    fn attach(
        state: &ApplicationState,
        name: &str,
        a: AttachmentRef,
    ) -> Result<ApplicationState, ApplicationError> {
        let schema = schema();
        run(
            state,
            &ApplicationCommand::AddAttachment {
                applicant: applicant(),
                name: name.into(),
                attachment: a,
                media_type: MediaType::parse("application/pdf").expect("media type"),
                file_name: FileName::parse("Nachweis Müller.pdf").expect("file name"),
                schema: &schema,
                at: at("2026-03-01T10:05:00Z"),
            },
        )
    }

    fn submit_as(
        state: &ApplicationState,
        who: SubjectId,
        status: VersionStatus,
    ) -> Result<ApplicationState, ApplicationError> {
        let schema = schema();
        run(
            state,
            &ApplicationCommand::Submit {
                applicant: who,
                schema: &schema,
                status,
                dues: Dues::Settled,
                at: at("2026-03-01T10:10:00.1234567Z"),
            },
        )
    }

    fn ready() -> ApplicationState {
        let s = save(&created(), data(), "2026-03-01T10:01:00Z").expect("save");
        attach(&s, "nachweis", pdf()).expect("attach")
    }

    /// `state` as if it had been drafted under `policy`.
    fn under(state: &ApplicationState, policy: PaymentPolicy) -> ApplicationState {
        let mut app = state.0.clone().expect("application");
        app.responsible.payment = policy;
        ApplicationState(Some(app))
    }

    fn submit_with(
        state: &ApplicationState,
        dues: Dues,
    ) -> Result<ApplicationState, ApplicationError> {
        let schema = schema();
        run(
            state,
            &ApplicationCommand::Submit {
                applicant: applicant(),
                schema: &schema,
                status: VersionStatus::Published,
                dues,
                at: at("2026-03-01T10:10:00Z"),
            },
        )
    }

    #[test]
    fn a_fee_due_before_submission_must_be_settled_first() {
        let owed = Dues::Outstanding(vec![(
            "receivable-0193a1b2-0000-7000-8000-000000000001".into(),
            "open, 2500 cents owed".into(),
        )]);
        let before = under(&ready(), PaymentPolicy::BeforeSubmission);
        let refused = submit_with(&before, owed.clone()).expect_err("refused");
        assert_eq!(
            refused.to_string(),
            "the fee must be paid before the submission: receivable-0193a1b2-0000-7000-8000-000000000001: open, 2500 cents owed"
        );
        assert!(matches!(
            submit_with(&before, Dues::Outstanding(vec![])),
            Err(ApplicationError::PaymentOutstanding(v)) if v.is_empty()
        ));
        let done = submit_with(&before, Dues::Settled).expect("paid, then submitted");
        assert_eq!(done.0.expect("app").status, Status::Submitted);
        // Under the other policies nothing is owed before the submission.
        for policy in [PaymentPolicy::AfterDecision, PaymentPolicy::None] {
            submit_with(&under(&ready(), policy), owed.clone()).expect("submitted");
        }
    }

    fn submitted() -> ApplicationState {
        submit_as(&ready(), applicant(), VersionStatus::Published).expect("submit")
    }

    fn by(
        authority: AuthorityId,
        command: impl Fn(AuthorityId) -> ApplicationCommand<'static>,
    ) -> ApplicationCommand<'static> {
        command(authority)
    }

    fn receive(a: AuthorityId, number: &str) -> ApplicationCommand<'static> {
        ApplicationCommand::Receive {
            authority: a,
            file_number: FileNumber::parse(number).expect("file number"),
            at: at("2026-03-02T08:00:00Z"),
        }
    }

    fn received() -> ApplicationState {
        run(&submitted(), &receive(authority(), "AZ 42/2026")).expect("receive")
    }

    fn request(a: AuthorityId, due: &str) -> ApplicationCommand<'static> {
        ApplicationCommand::RequestInformation {
            authority: a,
            message: Message::parse("Bitte reichen Sie den Mietvertrag nach.").expect("message"),
            due_at: at(due),
            at: at("2026-03-03T08:00:00Z"),
        }
    }

    fn answer(who: SubjectId, n: u32) -> ApplicationCommand<'static> {
        ApplicationCommand::ProvideInformation {
            applicant: who,
            request: n,
            message: Message::parse("Anbei der Mietvertrag.").expect("message"),
            at: at("2026-03-05T08:00:00Z"),
        }
    }

    fn decision(a: AuthorityId) -> ApplicationCommand<'static> {
        ApplicationCommand::Decide {
            authority: a,
            outcome: Outcome::Granted,
            document_hash: Sha256::of(b"Bescheid"),
            at: at("2026-03-10T08:00:00Z"),
        }
    }

    fn close(a: AuthorityId) -> ApplicationCommand<'static> {
        ApplicationCommand::Close {
            authority: a,
            at: at("2026-03-11T08:00:00Z"),
        }
    }

    fn withdraw(who: SubjectId) -> ApplicationCommand<'static> {
        ApplicationCommand::Withdraw {
            applicant: who,
            at: at("2026-03-04T08:00:00Z"),
        }
    }

    #[test]
    fn a_draft_is_pinned_routed_nowhere_and_initiated() {
        let s = created();
        let a = app(&s);
        assert_eq!(a.status, Status::Draft);
        assert_eq!(a.pinned, pinned());
        assert_eq!(a.routing(), Routing::default());
        assert_eq!(a.zbp(), (ZbpStatus::Initiated, None));
        let event = decide(
            &ApplicationCommand::Create {
                application_id: id(),
                applicant: applicant(),
                pinned: pinned(),
                responsible: responsible(),
                at: at("2026-03-01T10:00:00Z"),
            },
            &ApplicationState::default(),
        )
        .expect("create");
        assert_eq!(
            event[0].routing(),
            Routing::default(),
            "an authority never sees a draft"
        );
        assert_eq!(event[0].data_subject(), Some(sealing_subject(id())));
        assert_eq!(
            decide(
                &ApplicationCommand::Create {
                    application_id: id(),
                    applicant: applicant(),
                    pinned: pinned(),
                    responsible: responsible(),
                    at: at("2026-03-01T10:00:00Z"),
                },
                &s
            ),
            Err(ApplicationError::AlreadyCreated)
        );
        assert_eq!(
            decide(&withdraw(applicant()), &ApplicationState::default()),
            Err(ApplicationError::NotFound)
        );
    }

    #[test]
    fn data_is_validated_against_the_pinned_version_and_hashed_with_salt() {
        let s = save(&created(), data(), "2026-03-01T10:01:00Z").expect("save");
        let expected = data_hash(&salt(), &data()).expect("hash");
        assert_eq!(app(&s).data_hash, Some(expected));
        assert_eq!(
            expected,
            Sha256::of_parts(&[&[7; 32], &crate::jcs::canonicalize(&data()).expect("jcs")])
        );
        assert_eq!(
            app(&s).named_uploads,
            BTreeMap::from([("nachweis".to_owned(), pdf().sha256)])
        );
        let Err(ApplicationError::DataInvalid(invalid)) = save(
            &created(),
            json!({"familienname": 3}),
            "2026-03-01T10:01:00Z",
        ) else {
            panic!("invalid data expected")
        };
        let pointers: Vec<&str> = invalid
            .violations
            .iter()
            .map(|v| v.pointer.as_str())
            .collect();
        for p in ["/familienname", "/geburtsdatum", "/nachweis"] {
            assert!(pointers.contains(&p), "{p} in {pointers:?}");
        }
        // An upload's value must be an attachment hash.
        let mut bad = data();
        bad["nachweis"] = json!("nachweis.pdf");
        let Err(ApplicationError::DataInvalid(invalid)) =
            save(&created(), bad, "2026-03-01T10:01:00Z")
        else {
            panic!("invalid upload reference expected")
        };
        assert_eq!(invalid.violations[0].pointer, "/nachweis");
        // A number without a canonical form cannot be hashed.
        let mut big = data();
        big["kinder"] = json!(9_007_199_254_740_993u64);
        assert_eq!(
            save(&created(), big, "2026-03-01T10:01:00Z"),
            Err(ApplicationError::NotCanonical)
        );
    }

    #[test]
    fn only_the_applicant_edits_and_only_with_the_pinned_schema() {
        let other = crate::applications::form::FormSchema::parse(
            json!({"type": "object", "properties": {}}),
        )
        .expect("schema");
        assert_eq!(
            decide(
                &ApplicationCommand::SaveData {
                    applicant: applicant(),
                    data: json!({}),
                    salt: salt(),
                    schema: &other,
                    at: at("2026-03-01T10:01:00Z"),
                },
                &created()
            ),
            Err(ApplicationError::WrongSchema)
        );
        let schema = schema();
        assert_eq!(
            decide(
                &ApplicationCommand::SaveData {
                    applicant: stranger(),
                    data: data(),
                    salt: salt(),
                    schema: &schema,
                    at: at("2026-03-01T10:01:00Z"),
                },
                &created()
            ),
            Err(ApplicationError::NotYourApplication)
        );
        assert_eq!(
            submit_as(&ready(), stranger(), VersionStatus::Published),
            Err(ApplicationError::NotYourApplication)
        );
        assert_eq!(
            run(&submitted(), &withdraw(stranger())),
            Err(ApplicationError::NotYourApplication)
        );
    }

    #[test]
    fn attachments_are_declared_and_bounded() {
        let s = created();
        assert_eq!(
            attach(&s, "lebenslauf", pdf()),
            Err(ApplicationError::UnknownAttachment("lebenslauf".into()))
        );
        for size in [0, MAX_ATTACHMENT_BYTES + 1] {
            assert_eq!(
                attach(&s, "nachweis", AttachmentRef { size, ..pdf() }),
                Err(ApplicationError::AttachmentSize(size))
            );
        }
        let max = AttachmentRef {
            size: MAX_ATTACHMENT_BYTES,
            ..pdf()
        };
        let s = attach(&s, "nachweis", max).expect("largest");
        let s = attach(&s, "nachweis", pdf()).expect("replaced");
        assert_eq!(app(&s).attachments["nachweis"], pdf());
        for bad in [
            "",
            "pdf",
            "application/",
            "Application/pdf",
            "a/b/c",
            "text/plain; charset=utf-8",
        ] {
            assert!(MediaType::parse(bad).is_err(), "{bad:?}");
        }
        assert!(MediaType::parse("image/svg+xml").is_err(), "no + in tokens");
        assert!(MediaType::parse("application/vnd.oasis.opendocument.text").is_ok());
    }

    #[test]
    fn submission_needs_data_attachments_with_matching_hashes_and_a_live_version() {
        assert_eq!(
            submit_as(&created(), applicant(), VersionStatus::Published),
            Err(ApplicationError::NoData)
        );
        let saved = save(&created(), data(), "2026-03-01T10:01:00Z").expect("save");
        assert_eq!(
            submit_as(&saved, applicant(), VersionStatus::Published),
            Err(ApplicationError::MissingAttachment("nachweis".into()))
        );
        let other = AttachmentRef {
            sha256: Sha256::of(b"another file"),
            size: 12,
        };
        let wrong = attach(&saved, "nachweis", other).expect("attach");
        assert_eq!(
            submit_as(&wrong, applicant(), VersionStatus::Published),
            Err(ApplicationError::AttachmentMismatch("nachweis".into()))
        );
        assert_eq!(
            submit_as(&ready(), applicant(), VersionStatus::Retired),
            Err(ApplicationError::VersionRetired)
        );
        assert_eq!(
            submit_as(&ready(), applicant(), VersionStatus::Editing),
            Err(ApplicationError::VersionNotPublished)
        );
    }

    fn submit_with_data(
        state: &ApplicationState,
        who: SubjectId,
        data: Value,
        status: VersionStatus,
    ) -> Result<Vec<ApplicationEvent>, ApplicationError> {
        let schema = schema();
        decide(
            &ApplicationCommand::SubmitWithData {
                applicant: who,
                data,
                salt: salt(),
                schema: &schema,
                status,
                dues: Dues::Settled,
                at: at("2026-03-01T10:10:00.1234567Z"),
            },
            state,
        )
    }

    /// Data and submission in one command: the same two events the save and the
    /// submission decide one after the other, or a refusal and no event at all.
    #[test]
    fn a_submission_with_its_data_saves_and_submits_at_once() {
        let attached = attach(&created(), "nachweis", pdf()).expect("attach");
        let events = submit_with_data(&attached, applicant(), data(), VersionStatus::Published)
            .expect("submitted");
        let schema = schema();
        let one_by_one = {
            let save = ApplicationCommand::SaveData {
                applicant: applicant(),
                data: data(),
                salt: salt(),
                schema: &schema,
                at: at("2026-03-01T10:10:00.1234567Z"),
            };
            let mut events = decide(&save, &attached).expect("save");
            let saved = events.iter().fold(attached.clone(), evolve);
            let submit = ApplicationCommand::Submit {
                applicant: applicant(),
                schema: &schema,
                status: VersionStatus::Published,
                dues: Dues::Settled,
                at: at("2026-03-01T10:10:00.1234567Z"),
            };
            events.extend(decide(&submit, &saved).expect("submit"));
            events
        };
        assert_eq!(events, one_by_one);
        assert!(matches!(
            events.as_slice(),
            [
                ApplicationEvent::DataSaved(_),
                ApplicationEvent::Submitted(_)
            ]
        ));
        let after = events.iter().fold(attached.clone(), evolve);
        assert_eq!(app(&after).status, Status::Submitted);

        // Invalid data: refused as the save refuses it.
        assert!(matches!(
            submit_with_data(
                &attached,
                applicant(),
                json!({"familienname": 3}),
                VersionStatus::Published
            ),
            Err(ApplicationError::DataInvalid(_))
        ));
        // Valid data, but the attachment it names is missing.
        assert_eq!(
            submit_with_data(&created(), applicant(), data(), VersionStatus::Published),
            Err(ApplicationError::MissingAttachment("nachweis".into()))
        );
        assert_eq!(
            submit_with_data(&attached, applicant(), data(), VersionStatus::Retired),
            Err(ApplicationError::VersionRetired)
        );
        assert_eq!(
            submit_with_data(&attached, stranger(), data(), VersionStatus::Published),
            Err(ApplicationError::NotYourApplication)
        );
        // A second submission, with or without data, is refused as a submission.
        assert_eq!(
            submit_with_data(&after, applicant(), data(), VersionStatus::Published),
            Err(ApplicationError::AlreadySubmitted)
        );
        assert_eq!(
            submit_with_data(&after, applicant(), json!({}), VersionStatus::Published),
            Err(ApplicationError::AlreadySubmitted)
        );
    }

    #[test]
    fn the_submission_carries_what_the_receipt_proves() {
        let schema = schema();
        let events = decide(
            &ApplicationCommand::Submit {
                applicant: applicant(),
                schema: &schema,
                status: VersionStatus::Published,
                dues: Dues::Settled,
                at: at("2026-03-01T10:10:00.1234567Z"),
            },
            &ready(),
        )
        .expect("submit");
        let ApplicationEvent::Submitted(e) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            e.submitted_at,
            at("2026-03-01T10:10:00.123456Z"),
            "microseconds"
        );
        assert_eq!(e.pinned, pinned());
        assert_eq!(e.data_hash, data_hash(&salt(), &data()).expect("hash"));
        assert_eq!(
            e.attachments,
            BTreeMap::from([("nachweis".to_owned(), pdf())])
        );
        assert_eq!(
            events[0].routing(),
            Routing {
                authority: Some(authority()),
                service: Some(Leika::parse("99108001000000").expect("leika").service_key()),
                tenant: Some("14612000".into()),
            }
        );
        let (stored, personal) = round_trip(&events[0]);
        assert_eq!(personal, None);
        assert!(stored.contains("\"tenant\":\"14612000\""), "{stored}");
        let s = submitted();
        assert_eq!(app(&s).zbp(), (ZbpStatus::Submitted, None));
        assert_eq!(app(&s).routing(), responsible().routing());
        assert_eq!(
            submit_as(&s, applicant(), VersionStatus::Published),
            Err(ApplicationError::AlreadySubmitted)
        );
        assert_eq!(
            save(&s, data(), "2026-03-01T11:00:00Z"),
            Err(ApplicationError::NotADraft(Status::Submitted))
        );
        assert_eq!(
            attach(&s, "nachweis", pdf()),
            Err(ApplicationError::NotADraft(Status::Submitted))
        );
    }

    #[test]
    fn the_authority_receives_processes_asks_and_decides() {
        let s = received();
        assert_eq!(app(&s).zbp(), (ZbpStatus::Received, None));
        assert_eq!(
            app(&s).file_number.as_ref().map(|f| f.as_str()),
            Some("AZ 42/2026")
        );
        assert_eq!(decide(&receive(authority(), "AZ 42/2026"), &s), Ok(vec![]));
        assert_eq!(
            decide(&receive(authority(), "AZ 43/2026"), &s),
            Err(ApplicationError::OtherFileNumber)
        );
        let s = run(
            &s,
            &ApplicationCommand::StartProcessing {
                authority: authority(),
                at: at("2026-03-02T09:00:00Z"),
            },
        )
        .expect("start");
        assert_eq!(app(&s).zbp(), (ZbpStatus::Processing, None));
        let s = run(&s, &request(authority(), "2026-03-17T00:00:00Z")).expect("request");
        assert_eq!(app(&s).zbp(), (ZbpStatus::ActionRequired, None));
        assert_eq!(
            app(&s).open_request,
            Some(OpenRequest {
                request: 1,
                due_at: at("2026-03-17T00:00:00Z")
            })
        );
        assert!(!app(&s).is_overdue(at("2026-03-17T00:00:00Z")));
        assert!(app(&s).is_overdue(at("2026-03-17T00:00:01Z")));
        assert!(matches!(
            decide(&request(authority(), "2026-03-20T00:00:00Z"), &s),
            Err(ApplicationError::WrongStatus { .. })
        ));
        assert_eq!(
            run(&s, &answer(applicant(), 2)),
            Err(ApplicationError::NotTheOpenRequest(2))
        );
        assert_eq!(
            run(&s, &answer(stranger(), 1)),
            Err(ApplicationError::NotYourApplication)
        );
        let s = run(&s, &answer(applicant(), 1)).expect("answer");
        assert_eq!(app(&s).status, Status::InProgress);
        assert!(!app(&s).is_overdue(at("2027-01-01T00:00:00Z")));
        assert_eq!(
            run(&s, &answer(applicant(), 1)),
            Err(ApplicationError::NotTheOpenRequest(1))
        );
        let s = run(&s, &request(authority(), "2026-03-30T00:00:00Z")).expect("second request");
        assert_eq!(app(&s).open_request.as_ref().map(|r| r.request), Some(2));
        let s = run(&s, &decision(authority())).expect("decide");
        assert_eq!(app(&s).zbp(), (ZbpStatus::Completed, Some("bewilligt")));
        assert_eq!(app(&s).open_request, None);
        assert!(matches!(
            decide(&request(authority(), "2026-04-30T00:00:00Z"), &s),
            Err(ApplicationError::Finished(Status::Decided))
        ));
        let s = run(&s, &close(authority())).expect("close");
        assert_eq!(app(&s).status, Status::Closed);
        assert_eq!(app(&s).zbp(), (ZbpStatus::Completed, Some("bewilligt")));
        assert_eq!(decide(&close(authority()), &s), Ok(vec![]));
    }

    #[test]
    fn a_due_date_lies_after_the_request() {
        for due in ["2026-03-03T08:00:00Z", "2026-03-01T00:00:00Z"] {
            assert_eq!(
                run(&received(), &request(authority(), due)),
                Err(ApplicationError::DueNotAfterRequest)
            );
        }
    }

    #[test]
    fn a_due_date_lies_within_a_year_of_the_request() {
        // The request is made at 2026-03-03T08:00:00Z.
        run(&received(), &request(authority(), "2027-03-03T08:00:00Z")).expect("a year");
        for due in ["2027-03-03T08:00:00.000001Z", "9999-12-31T23:59:59Z"] {
            assert_eq!(
                run(&received(), &request(authority(), due)),
                Err(ApplicationError::DueTooLate)
            );
        }
    }

    #[test]
    fn a_decision_needs_the_reception_and_a_closure_the_decision() {
        assert!(matches!(
            run(&submitted(), &decision(authority())),
            Err(ApplicationError::WrongStatus {
                status: Status::Submitted,
                ..
            })
        ));
        assert!(matches!(
            run(&submitted(), &request(authority(), "2026-04-01T00:00:00Z")),
            Err(ApplicationError::WrongStatus {
                status: Status::Submitted,
                ..
            })
        ));
        assert!(matches!(
            run(
                &submitted(),
                &ApplicationCommand::StartProcessing {
                    authority: authority(),
                    at: at("2026-03-02T09:00:00Z")
                }
            ),
            Err(ApplicationError::WrongStatus { .. })
        ));
        assert!(matches!(
            run(&received(), &close(authority())),
            Err(ApplicationError::WrongStatus { .. })
        ));
        let decided = run(&received(), &decision(authority())).expect("decide from received");
        assert!(matches!(
            run(&decided, &decision(authority())),
            Err(ApplicationError::Finished(Status::Decided))
        ));
    }

    #[test]
    fn another_authority_acts_on_nothing_and_no_authority_sees_a_draft() {
        for command in [
            by(other_authority(), |a| receive(a, "AZ 1")),
            by(other_authority(), |a| request(a, "2026-04-01T00:00:00Z")),
            by(other_authority(), decision),
            by(other_authority(), close),
        ] {
            assert_eq!(
                run(&received(), &command),
                Err(ApplicationError::OtherAuthority)
            );
            assert_eq!(
                run(&submitted(), &command),
                Err(ApplicationError::OtherAuthority)
            );
        }
        for command in [
            receive(authority(), "AZ 1"),
            decision(authority()),
            close(authority()),
        ] {
            assert_eq!(run(&ready(), &command), Err(ApplicationError::NotFound));
        }
    }

    #[test]
    fn withdrawal_is_possible_from_submission_until_the_decision() {
        assert_eq!(
            run(&ready(), &withdraw(applicant())),
            Err(ApplicationError::NotSubmitted)
        );
        let asked = run(&received(), &request(authority(), "2026-04-01T00:00:00Z")).expect("ask");
        for s in [submitted(), received(), asked] {
            let w = run(&s, &withdraw(applicant())).expect("withdraw");
            assert_eq!(app(&w).status, Status::Withdrawn);
            assert_eq!(
                app(&w).zbp(),
                (ZbpStatus::Completed, Some("zurückgenommen"))
            );
            assert_eq!(app(&w).open_request, None);
            assert_eq!(
                decide(&withdraw(applicant()), &w),
                Ok(vec![]),
                "a harmless repeat"
            );
            assert!(matches!(
                run(&w, &decision(authority())),
                Err(ApplicationError::Finished(Status::Withdrawn))
            ));
            assert!(matches!(
                run(&w, &answer(applicant(), 1)),
                Err(ApplicationError::Finished(Status::Withdrawn))
            ));
        }
        let decided = run(&received(), &decision(authority())).expect("decide");
        assert_eq!(
            run(&decided, &withdraw(applicant())),
            Err(ApplicationError::Finished(Status::Decided))
        );
        let closed = run(&decided, &close(authority())).expect("close");
        assert_eq!(
            run(&closed, &withdraw(applicant())),
            Err(ApplicationError::Finished(Status::Closed))
        );
    }

    #[test]
    fn drafts_expire_thirty_days_after_the_last_edit_announced_a_week_before() {
        let s = ready();
        let last_edit = at("2026-03-01T10:05:00Z");
        assert_eq!(app(&s).expires_at(), Some(last_edit + Duration::days(30)));
        let announce = |s: &ApplicationState, when: &str| {
            run(s, &ApplicationCommand::AnnounceExpiry { at: at(when) })
        };
        let expire =
            |s: &ApplicationState, when: &str| run(s, &ApplicationCommand::Expire { at: at(when) });
        assert!(matches!(
            announce(&s, "2026-03-24T10:04:59Z"),
            Err(ApplicationError::NotDue(_))
        ));
        assert!(
            matches!(
                expire(&s, "2026-04-01T00:00:00Z"),
                Err(ApplicationError::NotDue(_))
            ),
            "not without the announcement"
        );
        let announced = announce(&s, "2026-03-24T10:05:00Z").expect("announce");
        assert_eq!(
            decide(
                &ApplicationCommand::AnnounceExpiry {
                    at: at("2026-03-25T00:00:00Z")
                },
                &announced
            ),
            Ok(vec![])
        );
        assert!(matches!(
            expire(&announced, "2026-03-31T10:04:59Z"),
            Err(ApplicationError::NotDue(_))
        ));
        // An edit after the announcement starts the 30 days again.
        let edited = save(&announced, data(), "2026-03-30T00:00:00Z").expect("edit");
        assert_eq!(app(&edited).expiry_announced, None);
        assert!(matches!(
            expire(&edited, "2026-03-31T10:05:00Z"),
            Err(ApplicationError::NotDue(_))
        ));
        let expired = expire(&announced, "2026-03-31T10:05:00Z").expect("expire");
        assert_eq!(app(&expired).status, Status::Expired);
        assert_eq!(
            app(&expired).zbp(),
            (ZbpStatus::Completed, Some("Entwurf gelöscht"))
        );
        assert_eq!(
            decide(
                &ApplicationCommand::Expire {
                    at: at("2026-04-02T00:00:00Z")
                },
                &expired
            ),
            Ok(vec![])
        );
        assert_eq!(
            submit_as(&expired, applicant(), VersionStatus::Published),
            Err(ApplicationError::NotADraft(Status::Expired))
        );
        // Submitted applications do not expire.
        assert!(matches!(
            expire(&submitted(), "2027-01-01T00:00:00Z"),
            Err(ApplicationError::NotADraft(Status::Submitted))
        ));
    }

    #[test]
    fn the_retention_duty_follows_the_procedure() {
        let period = Duration::days(365 * 6);
        assert_eq!(app(&ready()).retention(period), Retention::None);
        assert_eq!(app(&submitted()).retention(period), Retention::Open);
        let decided = run(&received(), &decision(authority())).expect("decide");
        assert_eq!(app(&decided).retention(period), Retention::Open);
        let closed = run(&decided, &close(authority())).expect("close");
        assert_eq!(
            app(&closed).retention(period),
            Retention::Until(at("2026-03-11T08:00:00Z") + period)
        );
        let withdrawn = run(&submitted(), &withdraw(applicant())).expect("withdraw");
        assert_eq!(
            app(&withdrawn).retention(period),
            Retention::Until(at("2026-03-04T08:00:00Z") + period)
        );
    }

    #[test]
    fn personal_parts_are_sealed_never_printed_and_may_be_erased() {
        let schema = schema();
        let events = decide(
            &ApplicationCommand::SaveData {
                applicant: applicant(),
                data: data(),
                salt: salt(),
                schema: &schema,
                at: at("2026-03-01T10:01:00Z"),
            },
            &created(),
        )
        .expect("save");
        let (stored, personal) = round_trip(&events[0]);
        assert!(!stored.contains("Müller"), "{stored}");
        assert!(personal.as_deref().is_some_and(|p| p.contains("Müller")));
        assert!(!format!("{events:?}").contains("Müller"));
        let parts = events[0].to_parts().expect("parts");
        let erased =
            ApplicationEvent::from_parts(&parts.event_type, &parts.data, None).expect("erased");
        let ApplicationEvent::DataSaved(e) = &erased else {
            panic!()
        };
        assert!(e.data.is_erased());
        // Evolve needs no personal data: the erased event folds to the same state.
        assert_eq!(evolve(created(), &erased), evolve(created(), &events[0]));
        let events =
            decide(&request(authority(), "2026-04-01T00:00:00Z"), &received()).expect("request");
        let (stored, personal) = round_trip(&events[0]);
        assert!(!stored.contains("Mietvertrag"), "{stored}");
        assert!(personal.is_some());
        let attached = decide(
            &ApplicationCommand::AddAttachment {
                applicant: applicant(),
                name: "nachweis".into(),
                attachment: pdf(),
                media_type: MediaType::parse("application/pdf").expect("media type"),
                file_name: FileName::parse("Nachweis Müller.pdf").expect("file name"),
                schema: &schema,
                at: at("2026-03-01T10:05:00Z"),
            },
            &created(),
        )
        .expect("attach");
        let (stored, _) = round_trip(&attached[0]);
        assert!(!stored.contains("Müller"), "{stored}");
        assert!(!ApplicationEvent::carries_personal_data(
            "ApplicationSubmitted"
        ));
        let parts = attached[0].to_parts().expect("parts");
        assert!(
            ApplicationEvent::from_parts(
                &EventType::parse("ApplicationSubmitted").expect("type"),
                &parts.data,
                parts.personal.as_ref()
            )
            .is_err(),
            "a personal part where none belongs is refused"
        );
    }

    #[test]
    fn every_status_has_a_name_and_a_zbp_status() {
        for status in Status::ALL {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("pending"), None);
        assert_eq!(
            serde_json::to_value(ZbpStatus::ActionRequired).expect("json"),
            json!("ACTION_REQUIRED")
        );
        assert_eq!(EVENT_TYPES.len(), 14);
        let read = ApplicationEvent::Read(ApplicationRead {
            application_id: id(),
            reader: ReaderLabel::parse("authority:official-7").expect("label"),
            authority: authority(),
            what: ReadKind::Application,
            read_at: at("2026-03-02T08:30:00Z"),
        });
        let (data, personal) = round_trip(&read);
        assert_eq!(personal, None);
        assert!(data.contains("\"what\":\"application\""), "{data}");
        // A read changes nothing of the application.
        assert_eq!(evolve(received(), &read), received());
    }
}
