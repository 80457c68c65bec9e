//! The Servicekonto: an account of a person, an organisation or an authority, its identity
//! links with their eIDAS trust levels, its master data, and its deletion.
//!
//! An account's master data and the pseudonyms of its identity links are personal data:
//! they travel only in the personal part of the events (sealed under the account's data
//! key) and are held as [`Personal`], so an account folded after erasure still knows its
//! kind, its links and levels and its deletion, just not who it was.
//!
//! A temporary identification (§ 6 SächsEGovGDVO) is a personal account opened with an
//! expiry instant; from that instant on it accepts no changes and is due for erasure, which
//! a sweeper performs with [`DeleteAccount`] and [`DeletionReason::TemporaryExpired`]
//! ([`Account::erasure_due_at`] tells it which accounts to pick).

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{instant, AccountId, Channel, LinkId, Personal};
use crate::decider::decider;
use crate::event::{
    data_of, event_type_of, no_personal, parse_data, parse_personal, personal_of, DomainEvent,
    EventParts, PartsError, SubjectId,
};
use crate::newtype::{text, TextError};
use crate::record::{opt_timestamp, timestamp};
use crate::stream::{EventType, StreamId};

/// The three kinds of Servicekonto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// A natural person's account (persönliches Servicekonto).
    Personal,
    /// A company's or association's account (Organisationskonto).
    Organisation,
    /// A public authority's account (Behördenkonto).
    Authority,
}

/// eIDAS levels of assurance (Regulation (EU) 910/2014, Art. 8), ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    Low,
    Substantial,
    High,
}

/// How an identity was proven when it was linked to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum IdentityMethod {
    /// The online function of the German identity card, eID residence permit or EU card
    /// (notified at level high).
    Eid,
    /// An ELSTER certificate (level substantial).
    Elster,
    /// Another member state's notified eID scheme, at the level it was notified with.
    EidasNotified { level: TrustLevel },
    /// Registration with user name and password only (level low).
    Password,
}

impl IdentityMethod {
    /// The level of assurance this method gives.
    pub fn level(self) -> TrustLevel {
        match self {
            Self::Eid => TrustLevel::High,
            Self::Elster => TrustLevel::Substantial,
            Self::EidasNotified { level } => level,
            Self::Password => TrustLevel::Low,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Eid => "eid",
            Self::Elster => "elster",
            Self::EidasNotified { .. } => "eidas_notified",
            Self::Password => "password",
        }
    }
}

text!(
    /// A short personal text: a name, a street, a locality (at most 200 characters).
    Text,
    "text",
    200
);

text!(
    /// The pseudonym an identity provider gives for the person (for the eID, the
    /// sector-specific "restricted identification"). Personal data: it identifies the
    /// person across every visit.
    IdentityPseudonym,
    "identity pseudonym",
    512
);

/// An e-mail address; checked for shape only (one `@`, non-empty local part and domain,
/// no white space), since only a confirmation mail proves it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        let ok = s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && matches!(s.split_once('@'), Some((local, domain))
                if !local.is_empty() && !domain.is_empty() && !domain.contains('@'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(TextError::Invalid {
                kind: "e-mail address",
                max: 254,
                rule: "local-part@domain without white space",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An ISO 3166-1 alpha-2 country code (`DE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    pub fn parse(s: &str) -> Result<Self, TextError> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(TextError::Invalid {
                kind: "country code",
                max: 2,
                rule: "two uppercase letters (ISO 3166-1 alpha-2)",
            }),
        }
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> Self {
        c.0.iter().map(|b| char::from(*b)).collect()
    }
}

impl<'de> Deserialize<'de> for CountryCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A postal address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostalAddress {
    /// Street and house number.
    pub street: Text,
    pub postal_code: Text,
    pub locality: Text,
    pub country: CountryCode,
}

/// Master data of a natural person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonData {
    pub given_names: Text,
    pub family_name: Text,
    /// `YYYY-MM-DD`, read only in the spelling the record writes; from
    /// [`EARLIEST_BIRTH_YEAR`] to the day of the command (checked by the decider).
    #[serde(
        default,
        deserialize_with = "canonical_date",
        skip_serializing_if = "Option::is_none"
    )]
    pub birth_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// The earliest year a birth date may lie in: nobody older holds an account.
pub const EARLIEST_BIRTH_YEAR: i32 = 1900;

/// A date only in the spelling the record writes it (`1990-05-07`, never `1990-5-7` or
/// with spaces): whatever else a lenient parser reads is refused, so what was sent is what
/// is stored. Every recorded date reads back, being written in that spelling.
fn canonical_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    let Some(raw) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    raw.parse::<NaiveDate>()
        .ok()
        .filter(|date| date.to_string() == raw)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("birth_date: a date written YYYY-MM-DD expected"))
}

impl MasterData {
    /// Whether the birth date, if any, lies from [`EARLIEST_BIRTH_YEAR`] to the day of
    /// `at` (UTC): a later one is no birth, an earlier one a typo.
    fn birth_date_plausible(&self, at: DateTime<Utc>) -> bool {
        match self {
            Self::Person(PersonData {
                birth_date: Some(born),
                ..
            }) => chrono::Datelike::year(born) >= EARLIEST_BIRTH_YEAR && *born <= at.date_naive(),
            _ => true,
        }
    }
}

/// Master data of an organisation or authority. Sealed like a person's: the name of a sole
/// trader is a person's name, and contact addresses often name people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganisationData {
    pub name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<PostalAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// An account's master data (Stammdaten); its form follows the account kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MasterData {
    Person(PersonData),
    Organisation(OrganisationData),
}

impl MasterData {
    /// Whether this form of master data belongs to accounts of `kind`.
    pub fn fits(&self, kind: AccountKind) -> bool {
        matches!(
            (self, kind),
            (Self::Person(_), AccountKind::Personal)
                | (
                    Self::Organisation(_),
                    AccountKind::Organisation | AccountKind::Authority
                )
        )
    }
}

/// Why an account is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionReason {
    /// The subject asked for it (Art. 17 GDPR); needs a recorded deletion request.
    SubjectRequest,
    /// A temporary identification reached its expiry.
    TemporaryExpired,
    /// The controller decided it, e.g. after the retention period of an inactive account.
    ControllerDecision,
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Open an account. With `expires_at` it is a temporary identification.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAccount {
    pub account_id: AccountId,
    pub kind: AccountKind,
    pub master_data: MasterData,
    pub opened_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Link a proven identity to the account.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkIdentity {
    pub link_id: LinkId,
    pub method: IdentityMethod,
    pub pseudonym: IdentityPseudonym,
    pub linked_at: DateTime<Utc>,
}

/// Remove an identity link (e.g. an ID card that was replaced).
#[derive(Debug, Clone, PartialEq)]
pub struct UnlinkIdentity {
    pub link_id: LinkId,
    pub unlinked_at: DateTime<Utc>,
}

/// Replace the account's master data.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeMasterData {
    pub master_data: MasterData,
    pub changed_at: DateTime<Utc>,
}

/// The subject asks for the account to be deleted (Art. 17 GDPR).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestAccountDeletion {
    pub channel: Channel,
    pub requested_at: DateTime<Utc>,
}

/// Delete the account. The service appends the resulting event and then destroys the
/// subject's data keys.
#[derive(Debug, Clone, PartialEq)]
pub struct DeleteAccount {
    pub reason: DeletionReason,
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountCommand {
    Open(OpenAccount),
    LinkIdentity(LinkIdentity),
    UnlinkIdentity(UnlinkIdentity),
    ChangeMasterData(ChangeMasterData),
    RequestDeletion(RequestAccountDeletion),
    Delete(DeleteAccount),
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `AccountOpened`; personal part `{"master_data": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOpened {
    pub account_id: AccountId,
    pub kind: AccountKind,
    #[serde(with = "timestamp")]
    pub opened_at: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_timestamp"
    )]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(skip)]
    pub master_data: Personal<MasterData>,
}

/// `IdentityLinked`; personal part `{"pseudonym": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityLinked {
    pub account_id: AccountId,
    pub link_id: LinkId,
    pub method: IdentityMethod,
    /// The level the link gives, recorded so readers need not know the method table.
    pub level: TrustLevel,
    #[serde(with = "timestamp")]
    pub linked_at: DateTime<Utc>,
    #[serde(skip)]
    pub pseudonym: Personal<IdentityPseudonym>,
}

/// `IdentityUnlinked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityUnlinked {
    pub account_id: AccountId,
    pub link_id: LinkId,
    #[serde(with = "timestamp")]
    pub unlinked_at: DateTime<Utc>,
}

/// `MasterDataChanged`; personal part `{"master_data": …}` (the complete new data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MasterDataChanged {
    pub account_id: AccountId,
    #[serde(with = "timestamp")]
    pub changed_at: DateTime<Utc>,
    #[serde(skip)]
    pub master_data: Personal<MasterData>,
}

/// `AccountDeletionRequested`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountDeletionRequested {
    pub account_id: AccountId,
    pub channel: Channel,
    #[serde(with = "timestamp")]
    pub requested_at: DateTime<Utc>,
}

/// `AccountDeleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountDeleted {
    pub account_id: AccountId,
    pub reason: DeletionReason,
    #[serde(with = "timestamp")]
    pub deleted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AccountEvent {
    Opened(AccountOpened),
    IdentityLinked(IdentityLinked),
    IdentityUnlinked(IdentityUnlinked),
    MasterDataChanged(MasterDataChanged),
    DeletionRequested(AccountDeletionRequested),
    Deleted(AccountDeleted),
}

/// The personal part of `AccountOpened` and `MasterDataChanged`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterDataPart {
    master_data: MasterData,
}

/// The personal part of `IdentityLinked`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PseudonymPart {
    pseudonym: IdentityPseudonym,
}

const OPENED: &str = "AccountOpened";
const LINKED: &str = "IdentityLinked";
const UNLINKED: &str = "IdentityUnlinked";
const CHANGED: &str = "MasterDataChanged";
const DELETION_REQUESTED: &str = "AccountDeletionRequested";
const DELETED: &str = "AccountDeleted";

fn master_data_part(md: &Personal<MasterData>) -> Personal<MasterDataPart> {
    md.clone().map(|master_data| MasterDataPart { master_data })
}

impl AccountEvent {
    /// The account the event belongs to.
    pub fn subject(&self) -> AccountId {
        match self {
            Self::Opened(e) => e.account_id,
            Self::IdentityLinked(e) => e.account_id,
            Self::IdentityUnlinked(e) => e.account_id,
            Self::MasterDataChanged(e) => e.account_id,
            Self::DeletionRequested(e) => e.account_id,
            Self::Deleted(e) => e.account_id,
        }
    }
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened(_) => OPENED,
            Self::IdentityLinked(_) => LINKED,
            Self::IdentityUnlinked(_) => UNLINKED,
            Self::MasterDataChanged(_) => CHANGED,
            Self::DeletionRequested(_) => DELETION_REQUESTED,
            Self::Deleted(_) => DELETED,
        }
    }

    fn stream_id(&self) -> StreamId {
        self.subject().stream_id()
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            Self::Opened(e) => e.opened_at,
            Self::IdentityLinked(e) => e.linked_at,
            Self::IdentityUnlinked(e) => e.unlinked_at,
            Self::MasterDataChanged(e) => e.changed_at,
            Self::DeletionRequested(e) => e.requested_at,
            Self::Deleted(e) => e.deleted_at,
        }
    }

    fn data_subject(&self) -> Option<SubjectId> {
        Some(self.subject().into())
    }

    fn carries_personal_data(event_type: &str) -> bool {
        matches!(event_type, OPENED | LINKED | CHANGED)
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        let name = self.event_type();
        let (data, personal) = match self {
            Self::Opened(e) => (
                data_of(name, e)?,
                Some(personal_of(name, &master_data_part(&e.master_data))?),
            ),
            Self::IdentityLinked(e) => {
                let part = e
                    .pseudonym
                    .clone()
                    .map(|pseudonym| PseudonymPart { pseudonym });
                (data_of(name, e)?, Some(personal_of(name, &part)?))
            }
            Self::IdentityUnlinked(e) => (data_of(name, e)?, None),
            Self::MasterDataChanged(e) => (
                data_of(name, e)?,
                Some(personal_of(name, &master_data_part(&e.master_data))?),
            ),
            Self::DeletionRequested(e) => (data_of(name, e)?, None),
            Self::Deleted(e) => (data_of(name, e)?, None),
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
        Ok(match event_type.as_str() {
            OPENED => {
                let mut e: AccountOpened = parse_data(OPENED, data)?;
                e.master_data =
                    parse_personal::<MasterDataPart>(OPENED, personal)?.map(|p| p.master_data);
                Self::Opened(e)
            }
            LINKED => {
                let mut e: IdentityLinked = parse_data(LINKED, data)?;
                e.pseudonym =
                    parse_personal::<PseudonymPart>(LINKED, personal)?.map(|p| p.pseudonym);
                Self::IdentityLinked(e)
            }
            UNLINKED => {
                no_personal(UNLINKED, personal)?;
                Self::IdentityUnlinked(parse_data(UNLINKED, data)?)
            }
            CHANGED => {
                let mut e: MasterDataChanged = parse_data(CHANGED, data)?;
                e.master_data =
                    parse_personal::<MasterDataPart>(CHANGED, personal)?.map(|p| p.master_data);
                Self::MasterDataChanged(e)
            }
            DELETION_REQUESTED => {
                no_personal(DELETION_REQUESTED, personal)?;
                Self::DeletionRequested(parse_data(DELETION_REQUESTED, data)?)
            }
            DELETED => {
                no_personal(DELETED, personal)?;
                Self::Deleted(parse_data(DELETED, data)?)
            }
            other => return Err(PartsError::UnknownEventType(other.to_owned())),
        })
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// One identity link of an account.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityLink {
    pub link_id: LinkId,
    pub method: IdentityMethod,
    pub level: TrustLevel,
    pub linked_at: DateTime<Utc>,
    pub pseudonym: Personal<IdentityPseudonym>,
}

/// Where an account stands in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    DeletionRequested,
    Deleted,
}

/// An opened account as its events made it.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    id: AccountId,
    kind: AccountKind,
    opened_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    master_data: Personal<MasterData>,
    links: Vec<IdentityLink>,
    deletion_requested_at: Option<DateTime<Utc>>,
    deleted: Option<(DateTime<Utc>, DeletionReason)>,
}

impl Account {
    pub fn id(&self) -> AccountId {
        self.id
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    pub fn opened_at(&self) -> DateTime<Utc> {
        self.opened_at
    }

    /// The expiry of a temporary identification; `None` for a permanent account.
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.expires_at
    }

    pub fn is_temporary(&self) -> bool {
        self.expires_at.is_some()
    }

    /// Whether a temporary identification has expired at `t` (expiry inclusive).
    pub fn is_expired_at(&self, t: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= t)
    }

    /// What the sweeper asks: is this account expired at `t` and not yet deleted?
    pub fn erasure_due_at(&self, t: DateTime<Utc>) -> bool {
        self.is_expired_at(t) && self.deleted.is_none()
    }

    /// The master data; erased after deletion or once the key is destroyed.
    pub fn master_data(&self) -> &Personal<MasterData> {
        &self.master_data
    }

    pub fn links(&self) -> &[IdentityLink] {
        &self.links
    }

    /// The account's level of assurance: the highest of its links, `None` without links.
    pub fn trust_level(&self) -> Option<TrustLevel> {
        self.links.iter().map(|l| l.level).max()
    }

    pub fn status(&self) -> AccountStatus {
        match (self.deleted, self.deletion_requested_at) {
            (Some(_), _) => AccountStatus::Deleted,
            (None, Some(_)) => AccountStatus::DeletionRequested,
            (None, None) => AccountStatus::Active,
        }
    }

    pub fn deletion_requested_at(&self) -> Option<DateTime<Utc>> {
        self.deletion_requested_at
    }

    pub fn deleted(&self) -> Option<(DateTime<Utc>, DeletionReason)> {
        self.deleted
    }
}

/// The state of an account stream. The account is boxed because it is large beside the
/// empty variant.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum AccountState {
    #[default]
    NotOpened,
    Opened(Box<Account>),
}

impl AccountState {
    pub fn account(&self) -> Option<&Account> {
        match self {
            Self::NotOpened => None,
            Self::Opened(a) => Some(a.as_ref()),
        }
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("the account is already open")]
    AlreadyOpened,
    #[error("the account does not exist")]
    NotOpened,
    #[error("the account is deleted")]
    Deleted,
    #[error("the account's deletion has been requested; it accepts no changes")]
    DeletionRequested,
    #[error("the temporary identification has expired")]
    Expired,
    #[error("master data of this form does not belong to a {0:?} account")]
    MasterDataDoesNotFitKind(AccountKind),
    #[error("only personal accounts can be temporary identifications")]
    TemporaryOnlyForPersons,
    #[error("the expiry must be after the opening")]
    ExpiryNotAfterOpening,
    #[error("the instant is before the account was opened")]
    BeforeOpening,
    #[error("identity method {method} cannot be linked to a {kind:?} account")]
    MethodNotAllowed {
        method: &'static str,
        kind: AccountKind,
    },
    #[error("link id {0} is already used")]
    LinkIdTaken(LinkId),
    #[error("this identity is already linked to the account")]
    AlreadyLinked,
    #[error("no identity link {0}")]
    UnknownLink(LinkId),
    #[error("deletion at the subject's request needs a recorded deletion request")]
    DeletionNotRequested,
    #[error("the account is not a temporary identification that has expired")]
    NotExpired,
    #[error("a birth date lies from {EARLIEST_BIRTH_YEAR}-01-01 to today")]
    BirthDate,
}

// ---------------------------------------------------------------------------------------
// Decider
// ---------------------------------------------------------------------------------------

/// Decides a command against the current state.
///
/// Rules: an account opens once; master data must fit the kind; only personal accounts can
/// be temporary, and their expiry lies after the opening. An eID links only to a personal
/// account (the eID identifies a natural person). Nothing changes a deleted account; while
/// a deletion is pending, and after a temporary identification expired, links and master
/// data no longer change. A repeated deletion request, or master data equal to the
/// current, decides no events rather than failing, so retries are harmless.
pub fn decide(
    command: &AccountCommand,
    state: &AccountState,
) -> Result<Vec<AccountEvent>, AccountError> {
    let account = match (command, state) {
        (AccountCommand::Open(c), AccountState::NotOpened) => return open(c),
        (AccountCommand::Open(_), AccountState::Opened(_)) => {
            return Err(AccountError::AlreadyOpened)
        }
        (_, AccountState::NotOpened) => return Err(AccountError::NotOpened),
        (_, AccountState::Opened(a)) => a,
    };
    if account.deleted.is_some() {
        return Err(AccountError::Deleted);
    }
    match command {
        AccountCommand::Open(_) => Err(AccountError::AlreadyOpened),
        AccountCommand::LinkIdentity(c) => link(c, account),
        AccountCommand::UnlinkIdentity(c) => {
            changeable(account, c.unlinked_at)?;
            if !account.links.iter().any(|l| l.link_id == c.link_id) {
                return Err(AccountError::UnknownLink(c.link_id));
            }
            Ok(vec![AccountEvent::IdentityUnlinked(IdentityUnlinked {
                account_id: account.id,
                link_id: c.link_id,
                unlinked_at: instant(c.unlinked_at),
            })])
        }
        AccountCommand::ChangeMasterData(c) => {
            changeable(account, c.changed_at)?;
            if !c.master_data.fits(account.kind) {
                return Err(AccountError::MasterDataDoesNotFitKind(account.kind));
            }
            if !c.master_data.birth_date_plausible(c.changed_at) {
                return Err(AccountError::BirthDate);
            }
            if account.master_data.available() == Some(&c.master_data) {
                return Ok(vec![]);
            }
            Ok(vec![AccountEvent::MasterDataChanged(MasterDataChanged {
                account_id: account.id,
                changed_at: instant(c.changed_at),
                master_data: Personal::Available(c.master_data.clone()),
            })])
        }
        AccountCommand::RequestDeletion(c) => {
            // Asking for erasure is never refused for timing or expiry; a repeat is a no-op.
            if account.deletion_requested_at.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![AccountEvent::DeletionRequested(
                AccountDeletionRequested {
                    account_id: account.id,
                    channel: c.channel,
                    requested_at: instant(c.requested_at),
                },
            )])
        }
        AccountCommand::Delete(c) => {
            match c.reason {
                DeletionReason::SubjectRequest if account.deletion_requested_at.is_none() => {
                    return Err(AccountError::DeletionNotRequested)
                }
                DeletionReason::TemporaryExpired if !account.is_expired_at(c.deleted_at) => {
                    return Err(AccountError::NotExpired)
                }
                _ => {}
            }
            Ok(vec![AccountEvent::Deleted(AccountDeleted {
                account_id: account.id,
                reason: c.reason,
                deleted_at: instant(c.deleted_at),
            })])
        }
    }
}

fn open(c: &OpenAccount) -> Result<Vec<AccountEvent>, AccountError> {
    if !c.master_data.fits(c.kind) {
        return Err(AccountError::MasterDataDoesNotFitKind(c.kind));
    }
    if !c.master_data.birth_date_plausible(c.opened_at) {
        return Err(AccountError::BirthDate);
    }
    if let Some(expires_at) = c.expires_at {
        if c.kind != AccountKind::Personal {
            return Err(AccountError::TemporaryOnlyForPersons);
        }
        if instant(expires_at) <= instant(c.opened_at) {
            return Err(AccountError::ExpiryNotAfterOpening);
        }
    }
    Ok(vec![AccountEvent::Opened(AccountOpened {
        account_id: c.account_id,
        kind: c.kind,
        opened_at: instant(c.opened_at),
        expires_at: c.expires_at.map(instant),
        master_data: Personal::Available(c.master_data.clone()),
    })])
}

fn link(c: &LinkIdentity, account: &Account) -> Result<Vec<AccountEvent>, AccountError> {
    changeable(account, c.linked_at)?;
    if c.method == IdentityMethod::Eid && account.kind != AccountKind::Personal {
        return Err(AccountError::MethodNotAllowed {
            method: c.method.name(),
            kind: account.kind,
        });
    }
    if account.links.iter().any(|l| l.link_id == c.link_id) {
        return Err(AccountError::LinkIdTaken(c.link_id));
    }
    let same_identity = account.links.iter().any(|l| {
        l.method.name() == c.method.name() && l.pseudonym.available() == Some(&c.pseudonym)
    });
    if same_identity {
        return Err(AccountError::AlreadyLinked);
    }
    Ok(vec![AccountEvent::IdentityLinked(IdentityLinked {
        account_id: account.id,
        link_id: c.link_id,
        method: c.method,
        level: c.method.level(),
        linked_at: instant(c.linked_at),
        pseudonym: Personal::Available(c.pseudonym.clone()),
    })])
}

/// Links and master data change only on an active, unexpired account, not before it opened.
fn changeable(account: &Account, at: DateTime<Utc>) -> Result<(), AccountError> {
    if account.deletion_requested_at.is_some() {
        return Err(AccountError::DeletionRequested);
    }
    if account.is_expired_at(at) {
        return Err(AccountError::Expired);
    }
    if instant(at) < account.opened_at {
        return Err(AccountError::BeforeOpening);
    }
    Ok(())
}

/// Applies an event. Events come from `decide`, so combinations it never produces (an
/// event before `AccountOpened`, a second opening) leave the state as it is.
pub fn evolve(state: AccountState, event: &AccountEvent) -> AccountState {
    let mut account = match (state, event) {
        (AccountState::NotOpened, AccountEvent::Opened(e)) => {
            return AccountState::Opened(Box::new(Account {
                id: e.account_id,
                kind: e.kind,
                opened_at: e.opened_at,
                expires_at: e.expires_at,
                master_data: e.master_data.clone(),
                links: Vec::new(),
                deletion_requested_at: None,
                deleted: None,
            }))
        }
        (AccountState::Opened(a), _) => a,
        (state, _) => return state,
    };
    match event {
        AccountEvent::Opened(_) => {}
        AccountEvent::IdentityLinked(e) => account.links.push(IdentityLink {
            link_id: e.link_id,
            method: e.method,
            level: e.level,
            linked_at: e.linked_at,
            pseudonym: e.pseudonym.clone(),
        }),
        AccountEvent::IdentityUnlinked(e) => account.links.retain(|l| l.link_id != e.link_id),
        AccountEvent::MasterDataChanged(e) => account.master_data = e.master_data.clone(),
        AccountEvent::DeletionRequested(e) => {
            account.deletion_requested_at.get_or_insert(e.requested_at);
        }
        AccountEvent::Deleted(e) => {
            account.deleted = Some((e.deleted_at, e.reason));
            // A deleted account's personal data is gone even while its key still exists
            // (between this event and the key's destruction): no reader of the state may
            // see it again.
            account.master_data = Personal::Erased;
            for link in &mut account.links {
                link.pseudonym = Personal::Erased;
            }
        }
    }
    AccountState::Opened(account)
}

decider!(AccountState: AccountCommand => AccountEvent, AccountError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DomainEvent, PartsError};
    use crate::gdpr::testing::*;
    use crate::stream::EventType;

    const OPENED_AT: &str = "2026-02-01T09:00:00Z";

    fn id() -> AccountId {
        AccountId(uuid(0xa))
    }

    fn text(s: &str) -> Text {
        Text::parse(s).expect("text")
    }

    fn anna() -> MasterData {
        MasterData::Person(PersonData {
            given_names: text("Anna"),
            family_name: text("Müller"),
            birth_date: NaiveDate::from_ymd_opt(1990, 5, 17),
            address: Some(PostalAddress {
                street: text("Glacisstraße 3"),
                postal_code: text("01099"),
                locality: text("Dresden"),
                country: CountryCode::parse("DE").expect("country"),
            }),
            email: Some(EmailAddress::parse("anna@example.org").expect("email")),
        })
    }

    fn firm() -> MasterData {
        MasterData::Organisation(OrganisationData {
            name: text("Muster GmbH"),
            address: None,
            email: None,
        })
    }

    fn opened(
        kind: AccountKind,
        master_data: MasterData,
        expires_at: Option<&str>,
    ) -> AccountEvent {
        AccountEvent::Opened(AccountOpened {
            account_id: id(),
            kind,
            opened_at: at(OPENED_AT),
            expires_at: expires_at.map(at),
            master_data: Personal::Available(master_data),
        })
    }

    fn person() -> AccountEvent {
        opened(AccountKind::Personal, anna(), None)
    }

    fn pseudonym(s: &str) -> IdentityPseudonym {
        IdentityPseudonym::parse(s).expect("pseudonym")
    }

    fn linked(n: u128, method: IdentityMethod, p: &str) -> AccountEvent {
        AccountEvent::IdentityLinked(IdentityLinked {
            account_id: id(),
            link_id: LinkId(uuid(n)),
            method,
            level: method.level(),
            linked_at: at("2026-02-01T09:05:00Z"),
            pseudonym: Personal::Available(pseudonym(p)),
        })
    }

    fn link(n: u128, method: IdentityMethod, p: &str) -> AccountCommand {
        AccountCommand::LinkIdentity(LinkIdentity {
            link_id: LinkId(uuid(n)),
            method,
            pseudonym: pseudonym(p),
            linked_at: at("2026-02-01T09:05:00Z"),
        })
    }

    fn requested() -> AccountEvent {
        AccountEvent::DeletionRequested(AccountDeletionRequested {
            account_id: id(),
            channel: Channel::ServicekontoWeb,
            requested_at: at("2026-03-01T08:00:00Z"),
        })
    }

    fn delete(reason: DeletionReason, when: &str) -> AccountCommand {
        AccountCommand::Delete(DeleteAccount {
            reason,
            deleted_at: at(when),
        })
    }

    fn deleted(reason: DeletionReason, when: &str) -> AccountEvent {
        AccountEvent::Deleted(AccountDeleted {
            account_id: id(),
            reason,
            deleted_at: at(when),
        })
    }

    fn fold(given: &[AccountEvent]) -> AccountState {
        given.iter().fold(AccountState::NotOpened, evolve)
    }

    /// Given these events, when this command is decided, then this is the outcome.
    fn check(
        given: &[AccountEvent],
        when: AccountCommand,
        then: Result<Vec<AccountEvent>, AccountError>,
    ) {
        assert_eq!(decide(&when, &fold(given)), then);
    }

    #[test]
    fn a_person_opens_an_account() {
        check(
            &[],
            AccountCommand::Open(OpenAccount {
                account_id: id(),
                kind: AccountKind::Personal,
                master_data: anna(),
                opened_at: at(OPENED_AT),
                expires_at: None,
            }),
            Ok(vec![person()]),
        );
    }

    #[test]
    fn a_birth_date_lies_from_1900_to_the_day_of_the_command() {
        let born = |date: NaiveDate| {
            let mut data = anna();
            if let MasterData::Person(p) = &mut data {
                p.birth_date = Some(date);
            }
            data
        };
        let open = |date: NaiveDate| {
            AccountCommand::Open(OpenAccount {
                account_id: id(),
                kind: AccountKind::Personal,
                master_data: born(date),
                opened_at: at(OPENED_AT),
                expires_at: None,
            })
        };
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("day");
        for ok in [day(1900, 1, 1), day(2026, 2, 1)] {
            assert!(decide(&open(ok), &AccountState::NotOpened).is_ok(), "{ok}");
        }
        for bad in [
            day(1899, 12, 31),
            day(2026, 2, 2),
            day(12345, 1, 1),
            day(-44, 3, 15),
        ] {
            check(&[], open(bad), Err(AccountError::BirthDate));
            check(
                &[person()],
                AccountCommand::ChangeMasterData(ChangeMasterData {
                    master_data: born(bad),
                    changed_at: at("2026-02-01T10:00:00Z"),
                }),
                Err(AccountError::BirthDate),
            );
        }
    }

    #[test]
    fn a_birth_date_is_read_only_as_the_record_writes_it() {
        let person = |date: &str| {
            serde_json::from_value::<MasterData>(serde_json::json!({
                "type": "person", "given_names": "Anna", "family_name": "Müller",
                "birth_date": date
            }))
        };
        assert!(person("1990-05-07").is_ok());
        for bad in [
            "1990-5-7",
            " 1990-05-07",
            "1990-05-07 ",
            "+12345-01-01x",
            "07.05.1990",
        ] {
            assert!(person(bad).is_err(), "{bad}");
        }
        // Whatever a date serialises to reads back, years beyond four digits too, so that
        // no recorded master data becomes unreadable.
        for date in ["+12345-01-01", "-0044-03-15", "0000-01-01"] {
            let read = person(date).expect(date);
            assert_eq!(
                serde_json::to_value(&read).expect("json")["birth_date"],
                date
            );
        }
    }

    #[test]
    fn an_account_opens_once() {
        check(
            &[person()],
            AccountCommand::Open(OpenAccount {
                account_id: id(),
                kind: AccountKind::Personal,
                master_data: anna(),
                opened_at: at(OPENED_AT),
                expires_at: None,
            }),
            Err(AccountError::AlreadyOpened),
        );
    }

    #[test]
    fn master_data_must_fit_the_kind_of_account() {
        let open = |kind, md| {
            AccountCommand::Open(OpenAccount {
                account_id: id(),
                kind,
                master_data: md,
                opened_at: at(OPENED_AT),
                expires_at: None,
            })
        };
        check(
            &[],
            open(AccountKind::Personal, firm()),
            Err(AccountError::MasterDataDoesNotFitKind(
                AccountKind::Personal,
            )),
        );
        check(
            &[],
            open(AccountKind::Authority, anna()),
            Err(AccountError::MasterDataDoesNotFitKind(
                AccountKind::Authority,
            )),
        );
        check(
            &[],
            open(AccountKind::Organisation, firm()),
            Ok(vec![opened(AccountKind::Organisation, firm(), None)]),
        );
        check(
            &[person()],
            AccountCommand::ChangeMasterData(ChangeMasterData {
                master_data: firm(),
                changed_at: at("2026-02-02T00:00:00Z"),
            }),
            Err(AccountError::MasterDataDoesNotFitKind(
                AccountKind::Personal,
            )),
        );
    }

    #[test]
    fn a_temporary_identification_is_a_personal_account_with_a_later_expiry() {
        let open = |kind, md, expires: &str| {
            AccountCommand::Open(OpenAccount {
                account_id: id(),
                kind,
                master_data: md,
                opened_at: at(OPENED_AT),
                expires_at: Some(at(expires)),
            })
        };
        check(
            &[],
            open(AccountKind::Personal, anna(), "2026-02-01T10:00:00Z"),
            Ok(vec![opened(
                AccountKind::Personal,
                anna(),
                Some("2026-02-01T10:00:00Z"),
            )]),
        );
        check(
            &[],
            open(AccountKind::Organisation, firm(), "2026-02-01T10:00:00Z"),
            Err(AccountError::TemporaryOnlyForPersons),
        );
        check(
            &[],
            open(AccountKind::Personal, anna(), OPENED_AT),
            Err(AccountError::ExpiryNotAfterOpening),
        );
    }

    #[test]
    fn linking_an_eid_raises_the_account_to_high() {
        let state = fold(&[person(), linked(1, IdentityMethod::Password, "user-7")]);
        assert_eq!(
            state.account().and_then(Account::trust_level),
            Some(TrustLevel::Low)
        );
        let events = decide(&link(2, IdentityMethod::Eid, "ri-4f2a"), &state).expect("linked");
        assert_eq!(events, vec![linked(2, IdentityMethod::Eid, "ri-4f2a")]);
        let state = events.iter().fold(state, evolve);
        assert_eq!(
            state.account().and_then(Account::trust_level),
            Some(TrustLevel::High)
        );
    }

    #[test]
    fn the_level_is_the_highest_of_the_remaining_links() {
        let substantial = IdentityMethod::EidasNotified {
            level: TrustLevel::Substantial,
        };
        let state = fold(&[
            person(),
            linked(1, substantial, "at-123"),
            linked(2, IdentityMethod::Eid, "ri-4f2a"),
        ]);
        assert_eq!(
            state.account().and_then(Account::trust_level),
            Some(TrustLevel::High)
        );
        let unlink = AccountCommand::UnlinkIdentity(UnlinkIdentity {
            link_id: LinkId(uuid(2)),
            unlinked_at: at("2026-02-03T00:00:00Z"),
        });
        let state = decide(&unlink, &state)
            .expect("unlinked")
            .iter()
            .fold(state, evolve);
        assert_eq!(
            state.account().and_then(Account::trust_level),
            Some(TrustLevel::Substantial)
        );
        assert_eq!(
            fold(&[person()]).account().and_then(Account::trust_level),
            None
        );
    }

    #[test]
    fn an_eid_links_only_to_a_personal_account() {
        check(
            &[opened(AccountKind::Authority, firm(), None)],
            link(1, IdentityMethod::Eid, "ri-1"),
            Err(AccountError::MethodNotAllowed {
                method: "eid",
                kind: AccountKind::Authority,
            }),
        );
        check(
            &[opened(AccountKind::Organisation, firm(), None)],
            link(1, IdentityMethod::Elster, "elster-9"),
            Ok(vec![linked(1, IdentityMethod::Elster, "elster-9")]),
        );
    }

    #[test]
    fn the_same_identity_or_link_id_is_not_linked_twice() {
        let given = [person(), linked(1, IdentityMethod::Eid, "ri-1")];
        check(
            &given,
            link(2, IdentityMethod::Eid, "ri-1"),
            Err(AccountError::AlreadyLinked),
        );
        check(
            &given,
            link(1, IdentityMethod::Eid, "ri-2"),
            Err(AccountError::LinkIdTaken(LinkId(uuid(1)))),
        );
        // A replaced ID card has a new pseudonym and links next to the old one.
        check(
            &given,
            link(2, IdentityMethod::Eid, "ri-2"),
            Ok(vec![linked(2, IdentityMethod::Eid, "ri-2")]),
        );
    }

    #[test]
    fn unlinking_needs_an_existing_link() {
        check(
            &[person()],
            AccountCommand::UnlinkIdentity(UnlinkIdentity {
                link_id: LinkId(uuid(5)),
                unlinked_at: at("2026-02-03T00:00:00Z"),
            }),
            Err(AccountError::UnknownLink(LinkId(uuid(5)))),
        );
    }

    #[test]
    fn master_data_changes_are_recorded_complete_and_unchanged_data_records_nothing() {
        let mut moved = anna();
        if let MasterData::Person(p) = &mut moved {
            p.address = None;
        }
        let change = |md| {
            AccountCommand::ChangeMasterData(ChangeMasterData {
                master_data: md,
                changed_at: at("2026-02-10T12:00:00Z"),
            })
        };
        check(
            &[person()],
            change(moved.clone()),
            Ok(vec![AccountEvent::MasterDataChanged(MasterDataChanged {
                account_id: id(),
                changed_at: at("2026-02-10T12:00:00Z"),
                master_data: Personal::Available(moved),
            })]),
        );
        check(&[person()], change(anna()), Ok(vec![]));
    }

    #[test]
    fn nothing_changes_before_the_opening() {
        check(
            &[person()],
            AccountCommand::ChangeMasterData(ChangeMasterData {
                master_data: anna(),
                changed_at: at("2026-01-31T00:00:00Z"),
            }),
            Err(AccountError::BeforeOpening),
        );
    }

    #[test]
    fn an_expired_temporary_identification_accepts_no_changes() {
        let temporary = opened(AccountKind::Personal, anna(), Some("2026-02-01T09:30:00Z"));
        let link_at = |when: &str| {
            AccountCommand::LinkIdentity(LinkIdentity {
                link_id: LinkId(uuid(1)),
                method: IdentityMethod::Eid,
                pseudonym: pseudonym("ri-1"),
                linked_at: at(when),
            })
        };
        assert!(decide(
            &link_at("2026-02-01T09:29:59.999Z"),
            &fold(std::slice::from_ref(&temporary))
        )
        .is_ok());
        check(
            &[temporary],
            link_at("2026-02-01T09:30:00Z"),
            Err(AccountError::Expired),
        );
    }

    #[test]
    fn the_sweeper_erases_an_expired_temporary_identification() {
        let temporary = opened(AccountKind::Personal, anna(), Some("2026-02-01T09:30:00Z"));
        let state = fold(std::slice::from_ref(&temporary));
        let account = state.account().expect("opened");
        assert!(!account.erasure_due_at(at("2026-02-01T09:29:59.999Z")));
        assert!(account.erasure_due_at(at("2026-02-01T09:30:00Z")));
        check(
            std::slice::from_ref(&temporary),
            delete(DeletionReason::TemporaryExpired, "2026-02-01T09:29:59Z"),
            Err(AccountError::NotExpired),
        );
        check(
            std::slice::from_ref(&temporary),
            delete(DeletionReason::TemporaryExpired, "2026-02-01T09:31:00Z"),
            Ok(vec![deleted(
                DeletionReason::TemporaryExpired,
                "2026-02-01T09:31:00Z",
            )]),
        );
        let after = fold(&[
            temporary,
            deleted(DeletionReason::TemporaryExpired, "2026-02-01T09:31:00Z"),
        ]);
        assert!(!after
            .account()
            .expect("opened")
            .erasure_due_at(at("2026-02-02T00:00:00Z")));
        check(
            &[person()],
            delete(DeletionReason::TemporaryExpired, "2030-01-01T00:00:00Z"),
            Err(AccountError::NotExpired),
        );
    }

    #[test]
    fn deletion_at_the_subjects_request_needs_the_request_first() {
        check(
            &[person()],
            delete(DeletionReason::SubjectRequest, "2026-03-02T00:00:00Z"),
            Err(AccountError::DeletionNotRequested),
        );
        check(
            &[person(), requested()],
            delete(DeletionReason::SubjectRequest, "2026-03-02T00:00:00Z"),
            Ok(vec![deleted(
                DeletionReason::SubjectRequest,
                "2026-03-02T00:00:00Z",
            )]),
        );
        check(
            &[person()],
            delete(DeletionReason::ControllerDecision, "2026-03-02T00:00:00Z"),
            Ok(vec![deleted(
                DeletionReason::ControllerDecision,
                "2026-03-02T00:00:00Z",
            )]),
        );
    }

    #[test]
    fn a_repeated_deletion_request_records_nothing_and_a_pending_one_freezes_the_account() {
        let request = AccountCommand::RequestDeletion(RequestAccountDeletion {
            channel: Channel::ServicekontoWeb,
            requested_at: at("2026-03-01T08:00:00Z"),
        });
        check(&[person()], request.clone(), Ok(vec![requested()]));
        check(&[person(), requested()], request, Ok(vec![]));
        check(
            &[person(), requested()],
            link(1, IdentityMethod::Eid, "ri-1"),
            Err(AccountError::DeletionRequested),
        );
        assert_eq!(
            fold(&[person(), requested()])
                .account()
                .map(Account::status),
            Some(AccountStatus::DeletionRequested)
        );
    }

    #[test]
    fn a_deleted_account_changes_no_more_and_holds_no_personal_data() {
        let given = [
            person(),
            linked(1, IdentityMethod::Eid, "ri-1"),
            deleted(DeletionReason::ControllerDecision, "2026-03-02T00:00:00Z"),
        ];
        for command in [
            link(2, IdentityMethod::Elster, "e-1"),
            AccountCommand::RequestDeletion(RequestAccountDeletion {
                channel: Channel::App,
                requested_at: at("2026-03-03T00:00:00Z"),
            }),
            delete(DeletionReason::ControllerDecision, "2026-03-03T00:00:00Z"),
        ] {
            check(&given, command, Err(AccountError::Deleted));
        }
        let state = fold(&given);
        let account = state.account().expect("opened");
        assert_eq!(account.status(), AccountStatus::Deleted);
        assert!(account.master_data().is_erased());
        assert!(account.links().iter().all(|l| l.pseudonym.is_erased()));
        // Levels survive: they are not personal.
        assert_eq!(account.trust_level(), Some(TrustLevel::High));
    }

    #[test]
    fn commands_need_an_opened_account() {
        check(
            &[],
            link(1, IdentityMethod::Eid, "ri-1"),
            Err(AccountError::NotOpened),
        );
    }

    #[test]
    fn an_account_folds_without_its_personal_data() {
        let erase = |e: AccountEvent| {
            let parts = e.to_parts().expect("parts");
            AccountEvent::from_parts(&parts.event_type, &parts.data, None).expect("from parts")
        };
        let state = fold(&[
            erase(person()),
            erase(linked(1, IdentityMethod::Eid, "ri-1")),
        ]);
        let account = state.account().expect("opened");
        assert!(account.master_data().is_erased());
        assert_eq!(account.trust_level(), Some(TrustLevel::High));
        // Rules that need no plaintext still hold.
        assert_eq!(
            decide(&link(1, IdentityMethod::Elster, "e-1"), &state),
            Err(AccountError::LinkIdTaken(LinkId(uuid(1))))
        );
    }

    #[test]
    fn instants_are_kept_to_the_microsecond() {
        let events = decide(
            &AccountCommand::RequestDeletion(RequestAccountDeletion {
                channel: Channel::Paper,
                requested_at: at("2026-03-01T08:00:00.123456789Z"),
            }),
            &fold(&[person()]),
        )
        .expect("requested");
        assert_eq!(events[0].occurred_at(), at("2026-03-01T08:00:00.123456Z"));
    }

    #[test]
    fn event_json_snapshots() {
        let data_prefix = r#"{"account_id":"0193a1b2-0000-7000-8000-00000000000a","#;
        snapshot(
            &person(),
            "AccountOpened",
            &format!(
                r#"{data_prefix}"kind":"personal","opened_at":"2026-02-01T09:00:00.000000Z"}}"#
            ),
            Some(
                r#"{"master_data":{"address":{"country":"DE","locality":"Dresden","postal_code":"01099","street":"Glacisstraße 3"},"birth_date":"1990-05-17","email":"anna@example.org","family_name":"Müller","given_names":"Anna","type":"person"}}"#,
            ),
        );
        snapshot(
            &opened(AccountKind::Authority, firm(), None),
            "AccountOpened",
            &format!(
                r#"{data_prefix}"kind":"authority","opened_at":"2026-02-01T09:00:00.000000Z"}}"#
            ),
            Some(r#"{"master_data":{"name":"Muster GmbH","type":"organisation"}}"#),
        );
        snapshot(
            &opened(AccountKind::Personal, anna(), Some("2026-02-01T10:00:00Z")),
            "AccountOpened",
            &format!(
                r#"{data_prefix}"expires_at":"2026-02-01T10:00:00.000000Z","kind":"personal","opened_at":"2026-02-01T09:00:00.000000Z"}}"#
            ),
            Some(
                r#"{"master_data":{"address":{"country":"DE","locality":"Dresden","postal_code":"01099","street":"Glacisstraße 3"},"birth_date":"1990-05-17","email":"anna@example.org","family_name":"Müller","given_names":"Anna","type":"person"}}"#,
            ),
        );
        snapshot(
            &linked(1, IdentityMethod::Eid, "ri-4f2a"),
            "IdentityLinked",
            &format!(
                r#"{data_prefix}"level":"high","link_id":"0193a1b2-0000-7000-8000-000000000001","linked_at":"2026-02-01T09:05:00.000000Z","method":{{"kind":"eid"}}}}"#
            ),
            Some(r#"{"pseudonym":"ri-4f2a"}"#),
        );
        snapshot(
            &linked(
                2,
                IdentityMethod::EidasNotified {
                    level: TrustLevel::Substantial,
                },
                "AT/DE/123",
            ),
            "IdentityLinked",
            &format!(
                r#"{data_prefix}"level":"substantial","link_id":"0193a1b2-0000-7000-8000-000000000002","linked_at":"2026-02-01T09:05:00.000000Z","method":{{"kind":"eidas_notified","level":"substantial"}}}}"#
            ),
            Some(r#"{"pseudonym":"AT/DE/123"}"#),
        );
        snapshot(
            &AccountEvent::IdentityUnlinked(IdentityUnlinked {
                account_id: id(),
                link_id: LinkId(uuid(1)),
                unlinked_at: at("2026-02-03T00:00:00Z"),
            }),
            "IdentityUnlinked",
            &format!(
                r#"{data_prefix}"link_id":"0193a1b2-0000-7000-8000-000000000001","unlinked_at":"2026-02-03T00:00:00.000000Z"}}"#
            ),
            None,
        );
        snapshot(
            &AccountEvent::MasterDataChanged(MasterDataChanged {
                account_id: id(),
                changed_at: at("2026-02-10T12:00:00Z"),
                master_data: Personal::Available(firm()),
            }),
            "MasterDataChanged",
            &format!(r#"{data_prefix}"changed_at":"2026-02-10T12:00:00.000000Z"}}"#),
            Some(r#"{"master_data":{"name":"Muster GmbH","type":"organisation"}}"#),
        );
        snapshot(
            &requested(),
            "AccountDeletionRequested",
            &format!(
                r#"{data_prefix}"channel":"servicekonto_web","requested_at":"2026-03-01T08:00:00.000000Z"}}"#
            ),
            None,
        );
        for (reason, name) in [
            (DeletionReason::SubjectRequest, "subject_request"),
            (DeletionReason::TemporaryExpired, "temporary_expired"),
            (DeletionReason::ControllerDecision, "controller_decision"),
        ] {
            snapshot(
                &deleted(reason, "2026-03-02T00:00:00Z"),
                "AccountDeleted",
                &format!(
                    r#"{data_prefix}"deleted_at":"2026-03-02T00:00:00.000000Z","reason":"{name}"}}"#
                ),
                None,
            );
        }
    }

    #[test]
    fn stored_forms_are_read_strictly() {
        let ty = |s: &str| EventType::parse(s).expect("type");
        let data = serde_json::json!({
            "account_id": id(), "kind": "personal",
            "opened_at": "2026-02-01T09:00:00.000000Z", "extra": 1
        });
        assert!(matches!(
            AccountEvent::from_parts(&ty("AccountOpened"), &data, None),
            Err(PartsError::Data { .. })
        ));
        let data = serde_json::json!({
            "account_id": id(), "channel": "app", "requested_at": "2026-03-01T08:00:00.000000Z"
        });
        assert_eq!(
            AccountEvent::from_parts(
                &ty("AccountDeletionRequested"),
                &data,
                Some(&serde_json::json!({}))
            ),
            Err(PartsError::UnexpectedPersonal {
                event_type: "AccountDeletionRequested"
            })
        );
        let bad_personal = serde_json::json!({"master_data": {"type": "person", "name": "x"}});
        let data = serde_json::json!({
            "account_id": id(), "changed_at": "2026-03-01T08:00:00.000000Z"
        });
        assert_eq!(
            AccountEvent::from_parts(&ty("MasterDataChanged"), &data, Some(&bad_personal)),
            Err(PartsError::Personal {
                event_type: "MasterDataChanged"
            })
        );
        assert_eq!(
            AccountEvent::from_parts(&ty("ConsentGiven"), &data, None),
            Err(PartsError::UnknownEventType("ConsentGiven".into()))
        );
    }
}
