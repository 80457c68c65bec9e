//! Consent under § 10 (1) sentence 2 SächsEGovG: what the subject agreed to (data
//! categories, purposes, recipients), on which notice and through which channel, and how
//! the consent was renewed, narrowed, withdrawn, revoked or expired — with the statuses of
//! the W3C Data Privacy Vocabulary.
//!
//! Each consent is its own stream, `consent-<uuid>`. A consent's history is kept in its
//! state (the terms opened by giving and renewing, the scopes after each narrowing, the
//! end), so [`Consent::status_at`] and [`Consent::scope_at`] answer for any instant, not
//! just for now. [`as_of`] folds only the events effective at or before an instant: the
//! consent exactly as it stood then, which is what a data protection officer replays.
//!
//! Validity is half-open: a consent given at g and withdrawn, revoked or expiring at e is
//! valid for g ≤ t < e. A withdrawal effective at w therefore already denies a disclosure
//! at t = w, and a consent is valid again only through a new consent, never by a later
//! event of this one (withdrawn and revoked are terminal).
//!
//! Withdrawing must be as easy as giving (Art. 7 (3) GDPR). So [`WithdrawConsent`] asks for
//! nothing but the channel and the instant — less than giving did — and is accepted through
//! any channel: the channel is recorded, never checked against the one used for giving. A
//! withdrawal is never refused for its instant, and withdrawing an ended consent again
//! succeeds with no new event instead of failing. Narrowing the scope is a partial
//! withdrawal and follows the same spirit; widening needs a new consent, since the subject
//! must be shown, and agree to, what is added.

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    instant, AccountId, CategorySet, Channel, ConsentId, DataCategory, NoticeVersion, PurposeId,
    Purposes, RecipientId, Recipients, Reference,
};
use crate::decider::decider;
use crate::event::{plain_events, DomainEvent};
use crate::record::{opt_timestamp, timestamp};

/// The legal basis a consent gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsentBasis {
    /// Art. 6 (1) (a) GDPR.
    #[serde(rename = "art6_1_a")]
    Consent,
    /// Art. 9 (2) (a) GDPR: explicit consent for special categories of data.
    #[serde(rename = "art9_2_a")]
    ExplicitConsent,
}

/// A SHA-256 digest, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest of a notice text as shown (its exact bytes).
    pub fn of(text: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, text);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    /// Accepts exactly 64 lowercase hex digits, so each digest has one spelling.
    pub fn parse_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            bytes[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Some(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

impl Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_hex(&s)
            .ok_or_else(|| serde::de::Error::custom("a SHA-256 digest is 64 lowercase hex digits"))
    }
}

/// The notice (information text) the subject was shown: its version and the SHA-256 of
/// its exact text, so the text a consent rests on can be proven later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notice {
    pub version: NoticeVersion,
    pub sha256: Sha256Digest,
}

/// What a consent covers. Never empty in any dimension: a consent to nothing is a
/// withdrawal, and widening is not possible, so every scope is a subset of the first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ScopeRepr")]
pub struct Scope {
    categories: CategorySet,
    purposes: Purposes,
    recipients: Recipients,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeRepr {
    categories: CategorySet,
    purposes: Purposes,
    recipients: Recipients,
}

impl TryFrom<ScopeRepr> for Scope {
    type Error = ConsentError;
    fn try_from(r: ScopeRepr) -> Result<Self, Self::Error> {
        Scope::new(r.categories, r.purposes, r.recipients)
    }
}

impl Scope {
    pub fn new(
        categories: CategorySet,
        purposes: Purposes,
        recipients: Recipients,
    ) -> Result<Self, ConsentError> {
        if categories.is_empty() || purposes.is_empty() || recipients.is_empty() {
            return Err(ConsentError::EmptyScope);
        }
        Ok(Self {
            categories,
            purposes,
            recipients,
        })
    }

    pub fn categories(&self) -> CategorySet {
        self.categories
    }

    pub fn purposes(&self) -> &BTreeSet<PurposeId> {
        &self.purposes
    }

    pub fn recipients(&self) -> &BTreeSet<RecipientId> {
        &self.recipients
    }

    pub fn has_recipient(&self, recipient: &RecipientId) -> bool {
        self.recipients.contains(recipient)
    }

    pub fn has_purpose(&self, purpose: &PurposeId) -> bool {
        self.purposes.contains(purpose)
    }

    pub fn has_category(&self, category: DataCategory) -> bool {
        self.categories.contains(category)
    }

    /// Whether every category, purpose and recipient of `self` is also in `other`.
    pub fn is_within(&self, other: &Scope) -> bool {
        self.categories.is_subset(other.categories)
            && self.purposes.is_subset(&other.purposes)
            && self.recipients.is_subset(&other.recipients)
    }
}

/// Why the controller ends or narrows a consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControllerReason {
    /// The purpose has been achieved or no longer exists.
    PurposeFulfilled,
    /// The recipient application or body no longer exists or no longer takes part.
    RecipientDiscontinued,
    /// The notice shown was defective, so the consent was not informed.
    NoticeDefective,
    /// The subject's account was deleted.
    AccountDeleted,
    /// A change of law removed the need or the permission.
    LegalChange,
    /// The supervisory authority ordered it.
    SupervisoryOrder,
}

/// Who narrowed a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "party", rename_all = "snake_case")]
pub enum Initiator {
    /// The subject, through a channel (a partial withdrawal).
    Subject { channel: Channel },
    /// The controller, for a reason (a partial revocation).
    Controller {
        reason: ControllerReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<Reference>,
    },
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// The subject gives consent.
#[derive(Debug, Clone, PartialEq)]
pub struct GiveConsent {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub scope: Scope,
    pub legal_basis: ConsentBasis,
    /// The provision the processing rests on, e.g. `§ 10 Abs. 1 Satz 2 SächsEGovG`.
    pub legal_reference: Reference,
    pub notice: Notice,
    pub channel: Channel,
    /// When consent was given; for a paper form, when it was signed.
    pub given_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The subject confirms the consent again, possibly on a newer notice and with a new
/// expiry (`None`: no expiry). Also possible after expiry; the scope stays.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewConsent {
    pub notice: Notice,
    pub channel: Channel,
    pub renewed_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Reduce the scope to `scope`, which must lie within the current one.
#[derive(Debug, Clone, PartialEq)]
pub struct NarrowConsentScope {
    pub scope: Scope,
    pub by: Initiator,
    pub narrowed_at: DateTime<Utc>,
}

/// The subject withdraws the consent: the channel and the instant, nothing more.
#[derive(Debug, Clone, PartialEq)]
pub struct WithdrawConsent {
    pub channel: Channel,
    /// When the withdrawal reached the controller; the service stamps the time of receipt.
    pub withdrawn_at: DateTime<Utc>,
}

/// The controller ends the consent, for a reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RevokeConsent {
    pub reason: ControllerReason,
    pub reference: Option<Reference>,
    pub revoked_at: DateTime<Utc>,
}

/// The sweeper records that the consent's current term has expired by `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordConsentExpiry {
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConsentCommand {
    Give(GiveConsent),
    Renew(RenewConsent),
    Narrow(NarrowConsentScope),
    Withdraw(WithdrawConsent),
    Revoke(RevokeConsent),
    RecordExpiry(RecordConsentExpiry),
}

// ---------------------------------------------------------------------------------------
// Events (none carries personal data: the subject is the pseudonymous account id)
// ---------------------------------------------------------------------------------------

/// `ConsentGiven`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentGiven {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub scope: Scope,
    pub legal_basis: ConsentBasis,
    pub legal_reference: Reference,
    pub notice: Notice,
    pub channel: Channel,
    #[serde(with = "timestamp")]
    pub given_at: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_timestamp"
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `ConsentRenewed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRenewed {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub notice: Notice,
    pub channel: Channel,
    #[serde(with = "timestamp")]
    pub renewed_at: DateTime<Utc>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "opt_timestamp"
    )]
    pub expires_at: Option<DateTime<Utc>>,
}

/// `ConsentScopeNarrowed`; `scope` is the complete new scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentScopeNarrowed {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub scope: Scope,
    pub narrowed_by: Initiator,
    #[serde(with = "timestamp")]
    pub narrowed_at: DateTime<Utc>,
}

/// `ConsentWithdrawn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentWithdrawn {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub channel: Channel,
    #[serde(with = "timestamp")]
    pub withdrawn_at: DateTime<Utc>,
}

/// `ConsentRevoked`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentRevoked {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    pub reason: ControllerReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<Reference>,
    #[serde(with = "timestamp")]
    pub revoked_at: DateTime<Utc>,
}

/// `ConsentExpired`: informational, effective at the expiry instant itself. Validity never
/// depends on it — expiry is a function of time — but projections and subscribers learn
/// of the change of status through it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentExpired {
    pub consent_id: ConsentId,
    pub subject: AccountId,
    #[serde(with = "timestamp")]
    pub expired_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConsentEvent {
    Given(ConsentGiven),
    Renewed(ConsentRenewed),
    ScopeNarrowed(ConsentScopeNarrowed),
    Withdrawn(ConsentWithdrawn),
    Revoked(ConsentRevoked),
    Expired(ConsentExpired),
}

plain_events!(ConsentEvent {
    id: consent_id, subject: subject: AccountId,
    Given(ConsentGiven) = "ConsentGiven", at given_at;
    Renewed(ConsentRenewed) = "ConsentRenewed", at renewed_at;
    ScopeNarrowed(ConsentScopeNarrowed) = "ConsentScopeNarrowed", at narrowed_at;
    Withdrawn(ConsentWithdrawn) = "ConsentWithdrawn", at withdrawn_at;
    Revoked(ConsentRevoked) = "ConsentRevoked", at revoked_at;
    Expired(ConsentExpired) = "ConsentExpired", at expired_at;
});

impl ConsentEvent {
    pub fn consent_id(&self) -> ConsentId {
        match self {
            Self::Given(e) => e.consent_id,
            Self::Renewed(e) => e.consent_id,
            Self::ScopeNarrowed(e) => e.consent_id,
            Self::Withdrawn(e) => e.consent_id,
            Self::Revoked(e) => e.consent_id,
            Self::Expired(e) => e.consent_id,
        }
    }
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// The status of a consent at an instant, after the W3C Data Privacy Vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentStatus {
    /// Not (yet) given at that instant.
    NotGiven,
    Given,
    Renewed,
    Withdrawn,
    Revoked,
    Expired,
}

impl ConsentStatus {
    /// Whether processing may rely on a consent in this status.
    pub fn is_valid(self) -> bool {
        matches!(self, Self::Given | Self::Renewed)
    }

    /// The DPV concept (`https://w3id.org/dpv#…`) for this status.
    pub fn dpv_concept(self) -> Option<&'static str> {
        match self {
            Self::NotGiven => None,
            Self::Given => Some("dpv:ConsentGiven"),
            Self::Renewed => Some("dpv:RenewedConsentGiven"),
            Self::Withdrawn => Some("dpv:ConsentWithdrawn"),
            Self::Revoked => Some("dpv:ConsentRevoked"),
            Self::Expired => Some("dpv:ConsentExpired"),
        }
    }
}

/// A period of validity, opened by giving or renewing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    pub from: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub notice: Notice,
    pub channel: Channel,
}

/// How a consent ended; both are terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    Withdrawn {
        at: DateTime<Utc>,
        channel: Channel,
    },
    Revoked {
        at: DateTime<Utc>,
        reason: ControllerReason,
        reference: Option<Reference>,
    },
}

impl Ending {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            Self::Withdrawn { at, .. } | Self::Revoked { at, .. } => *at,
        }
    }
}

/// A given consent with its history.
#[derive(Debug, Clone, PartialEq)]
pub struct Consent {
    id: ConsentId,
    subject: AccountId,
    legal_basis: ConsentBasis,
    legal_reference: Reference,
    /// Never empty; `terms[0].from` is the instant of giving; `from` never decreases.
    terms: Vec<Term>,
    /// Never empty; the first scope is from the instant of giving; instants never decrease.
    scopes: Vec<(DateTime<Utc>, Scope)>,
    ended: Option<Ending>,
    /// The expiry instant the last `ConsentExpired` recorded.
    expiry_recorded: Option<DateTime<Utc>>,
    /// Events folded into this state; the stream version when folded from the start.
    version: u64,
}

impl Consent {
    pub fn id(&self) -> ConsentId {
        self.id
    }

    pub fn subject(&self) -> AccountId {
        self.subject
    }

    pub fn legal_basis(&self) -> ConsentBasis {
        self.legal_basis
    }

    pub fn legal_reference(&self) -> &Reference {
        &self.legal_reference
    }

    pub fn given_at(&self) -> DateTime<Utc> {
        self.terms[0].from
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// The latest term.
    pub fn term(&self) -> &Term {
        &self.terms[self.terms.len() - 1]
    }

    /// The latest scope.
    pub fn scope(&self) -> &Scope {
        &self.scopes[self.scopes.len() - 1].1
    }

    pub fn ended(&self) -> Option<&Ending> {
        self.ended.as_ref()
    }

    /// The term in force at `t`; `None` before the consent was given.
    pub fn term_at(&self, t: DateTime<Utc>) -> Option<(usize, &Term)> {
        self.terms
            .iter()
            .enumerate()
            .rev()
            .find(|(_, term)| term.from <= t)
    }

    /// The scope at `t`; `None` before the consent was given.
    pub fn scope_at(&self, t: DateTime<Utc>) -> Option<&Scope> {
        self.scopes
            .iter()
            .rev()
            .find(|(from, _)| *from <= t)
            .map(|(_, scope)| scope)
    }

    /// The status at `t`. An end at e counts from e on; expiry at x counts from x on.
    pub fn status_at(&self, t: DateTime<Utc>) -> ConsentStatus {
        let Some((index, term)) = self.term_at(t) else {
            return ConsentStatus::NotGiven;
        };
        match &self.ended {
            Some(Ending::Withdrawn { at, .. }) if *at <= t => return ConsentStatus::Withdrawn,
            Some(Ending::Revoked { at, .. }) if *at <= t => return ConsentStatus::Revoked,
            _ => {}
        }
        if term.expires_at.is_some_and(|x| x <= t) {
            ConsentStatus::Expired
        } else if index == 0 {
            ConsentStatus::Given
        } else {
            ConsentStatus::Renewed
        }
    }

    pub fn is_valid_at(&self, t: DateTime<Utc>) -> bool {
        self.status_at(t).is_valid()
    }

    /// Whether the sweeper should record the expiry of the current term by `now`.
    pub fn expiry_due_at(&self, now: DateTime<Utc>) -> bool {
        self.ended.is_none()
            && self
                .term()
                .expires_at
                .is_some_and(|x| x <= now && self.expiry_recorded != Some(x))
    }

    /// The latest instant a renewal or narrowing took effect; later ones may not precede it.
    fn last_change(&self) -> DateTime<Utc> {
        self.term().from.max(self.scopes[self.scopes.len() - 1].0)
    }
}

/// The state of a consent stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum ConsentState {
    #[default]
    NotGiven,
    Given(Consent),
}

impl ConsentState {
    pub fn consent(&self) -> Option<&Consent> {
        match self {
            Self::NotGiven => None,
            Self::Given(c) => Some(c),
        }
    }

    pub fn status_at(&self, t: DateTime<Utc>) -> ConsentStatus {
        self.consent()
            .map_or(ConsentStatus::NotGiven, |c| c.status_at(t))
    }

    pub fn is_valid_at(&self, t: DateTime<Utc>) -> bool {
        self.status_at(t).is_valid()
    }
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("this consent has already been given; a new consent is a new stream")]
    AlreadyGiven,
    #[error("no consent has been given")]
    NotGiven,
    #[error("the consent has been withdrawn or revoked; a new consent is needed")]
    Ended,
    #[error("a consent must name at least one data category, purpose and recipient")]
    EmptyScope,
    #[error("the scope can only be narrowed; widening it needs a new consent")]
    WideningNeedsNewConsent,
    #[error("the expiry must lie after the instant the term starts")]
    ExpiryNotAfterStart,
    #[error("the instant lies before the consent's last change")]
    BeforeLastChange,
    #[error("the consent's current term has not expired")]
    NotExpired,
}

// ---------------------------------------------------------------------------------------
// Decider
// ---------------------------------------------------------------------------------------

/// Decides a command against the current state. The rules are in the module docs; in
/// short: give once; renew and narrow only while not ended and not before the last change;
/// narrow only to a non-empty subset; withdraw always (a repeat is a no-op); revoke only
/// what has not ended; record an expiry only once it has happened.
pub fn decide(
    command: &ConsentCommand,
    state: &ConsentState,
) -> Result<Vec<ConsentEvent>, ConsentError> {
    let consent = match (command, state) {
        (ConsentCommand::Give(c), ConsentState::NotGiven) => return give(c),
        (ConsentCommand::Give(_), ConsentState::Given(_)) => {
            return Err(ConsentError::AlreadyGiven)
        }
        (_, ConsentState::NotGiven) => return Err(ConsentError::NotGiven),
        (_, ConsentState::Given(c)) => c,
    };
    let (consent_id, subject) = (consent.id, consent.subject);
    match command {
        ConsentCommand::Give(_) => Err(ConsentError::AlreadyGiven),
        ConsentCommand::Withdraw(c) => {
            if consent.ended.is_some() {
                return Ok(vec![]);
            }
            Ok(vec![ConsentEvent::Withdrawn(ConsentWithdrawn {
                consent_id,
                subject,
                channel: c.channel,
                withdrawn_at: instant(c.withdrawn_at),
            })])
        }
        _ if consent.ended.is_some() => Err(ConsentError::Ended),
        ConsentCommand::Renew(c) => {
            let renewed_at = instant(c.renewed_at);
            if renewed_at < consent.last_change() {
                return Err(ConsentError::BeforeLastChange);
            }
            let expires_at = c.expires_at.map(instant);
            if expires_at.is_some_and(|x| x <= renewed_at) {
                return Err(ConsentError::ExpiryNotAfterStart);
            }
            Ok(vec![ConsentEvent::Renewed(ConsentRenewed {
                consent_id,
                subject,
                notice: c.notice.clone(),
                channel: c.channel,
                renewed_at,
                expires_at,
            })])
        }
        ConsentCommand::Narrow(c) => {
            let narrowed_at = instant(c.narrowed_at);
            if narrowed_at < consent.last_change() {
                return Err(ConsentError::BeforeLastChange);
            }
            if !c.scope.is_within(consent.scope()) {
                return Err(ConsentError::WideningNeedsNewConsent);
            }
            if c.scope == *consent.scope() {
                return Ok(vec![]);
            }
            Ok(vec![ConsentEvent::ScopeNarrowed(ConsentScopeNarrowed {
                consent_id,
                subject,
                scope: c.scope.clone(),
                narrowed_by: c.by.clone(),
                narrowed_at,
            })])
        }
        ConsentCommand::Revoke(c) => {
            let revoked_at = instant(c.revoked_at);
            if revoked_at < consent.given_at() {
                return Err(ConsentError::BeforeLastChange);
            }
            Ok(vec![ConsentEvent::Revoked(ConsentRevoked {
                consent_id,
                subject,
                reason: c.reason,
                reference: c.reference.clone(),
                revoked_at,
            })])
        }
        ConsentCommand::RecordExpiry(c) => {
            let Some(expired_at) = consent.term().expires_at.filter(|x| *x <= c.now) else {
                return Err(ConsentError::NotExpired);
            };
            if consent.expiry_recorded == Some(expired_at) {
                return Ok(vec![]);
            }
            Ok(vec![ConsentEvent::Expired(ConsentExpired {
                consent_id,
                subject,
                expired_at,
            })])
        }
    }
}

fn give(c: &GiveConsent) -> Result<Vec<ConsentEvent>, ConsentError> {
    let given_at = instant(c.given_at);
    let expires_at = c.expires_at.map(instant);
    if expires_at.is_some_and(|x| x <= given_at) {
        return Err(ConsentError::ExpiryNotAfterStart);
    }
    Ok(vec![ConsentEvent::Given(ConsentGiven {
        consent_id: c.consent_id,
        subject: c.subject,
        scope: c.scope.clone(),
        legal_basis: c.legal_basis,
        legal_reference: c.legal_reference.clone(),
        notice: c.notice.clone(),
        channel: c.channel,
        given_at,
        expires_at,
    })])
}

/// Applies an event. Events come from `decide`; combinations it never produces (an event
/// before `ConsentGiven`, a second giving) leave the state as it is. An end is kept once:
/// the first withdrawal or revocation is the one that counts.
pub fn evolve(state: ConsentState, event: &ConsentEvent) -> ConsentState {
    let mut consent = match (state, event) {
        (ConsentState::NotGiven, ConsentEvent::Given(e)) => {
            return ConsentState::Given(Consent {
                id: e.consent_id,
                subject: e.subject,
                legal_basis: e.legal_basis,
                legal_reference: e.legal_reference.clone(),
                terms: vec![Term {
                    from: e.given_at,
                    expires_at: e.expires_at,
                    notice: e.notice.clone(),
                    channel: e.channel,
                }],
                scopes: vec![(e.given_at, e.scope.clone())],
                ended: None,
                expiry_recorded: None,
                version: 1,
            })
        }
        (ConsentState::Given(c), ConsentEvent::Given(_)) => return ConsentState::Given(c),
        (ConsentState::Given(c), _) => c,
        (state, _) => return state,
    };
    match event {
        ConsentEvent::Given(_) => {}
        ConsentEvent::Renewed(e) => consent.terms.push(Term {
            from: e.renewed_at,
            expires_at: e.expires_at,
            notice: e.notice.clone(),
            channel: e.channel,
        }),
        ConsentEvent::ScopeNarrowed(e) => consent.scopes.push((e.narrowed_at, e.scope.clone())),
        ConsentEvent::Withdrawn(e) => {
            consent.ended.get_or_insert(Ending::Withdrawn {
                at: e.withdrawn_at,
                channel: e.channel,
            });
        }
        ConsentEvent::Revoked(e) => {
            consent.ended.get_or_insert(Ending::Revoked {
                at: e.revoked_at,
                reason: e.reason,
                reference: e.reference.clone(),
            });
        }
        ConsentEvent::Expired(e) => consent.expiry_recorded = Some(e.expired_at),
    }
    consent.version += 1;
    ConsentState::Given(consent)
}

/// The consent as it stood at `t`: the fold of exactly the events effective at or before
/// `t`, in stream order. Events effective later are ignored, so a renewal or narrowing
/// recorded after `t` does not change the answer about `t`.
pub fn as_of<'a>(
    events: impl IntoIterator<Item = &'a ConsentEvent>,
    t: DateTime<Utc>,
) -> ConsentState {
    events
        .into_iter()
        .filter(|e| e.occurred_at() <= t)
        .fold(ConsentState::NotGiven, evolve)
}

/// A subject's consents as they stood at `t`, from the event lists of their consent
/// streams; consents not yet given at `t` are left out. This is what a disclosure at `t`
/// is checked against, and what a data protection officer's replay shows.
pub fn subject_consents_as_of<'a>(
    streams: impl IntoIterator<Item = &'a [ConsentEvent]>,
    t: DateTime<Utc>,
) -> Vec<Consent> {
    streams
        .into_iter()
        .filter_map(|events| match as_of(events, t) {
            ConsentState::Given(c) => Some(c),
            ConsentState::NotGiven => None,
        })
        .collect()
}

decider!(ConsentState: ConsentCommand => ConsentEvent, ConsentError);

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::event::{DomainEvent, PartsError};
    use crate::gdpr::testing::*;
    use crate::gdpr::DataCategory::*;

    pub const GIVEN_AT: &str = "2026-01-10T10:00:00Z";

    pub fn consent_id() -> ConsentId {
        ConsentId(uuid(0xc1))
    }

    pub fn subject() -> AccountId {
        AccountId(uuid(0xa))
    }

    pub fn notice(version: &str) -> Notice {
        Notice {
            version: NoticeVersion::parse(version).expect("version"),
            sha256: Sha256Digest::of(format!("Hinweistext {version}").as_bytes()),
        }
    }

    pub fn scope(categories: &[DataCategory], purposes: &[&str], recipients: &[&str]) -> Scope {
        Scope::new(
            categories.iter().copied().collect(),
            purposes.iter().map(|p| purpose(p)).collect(),
            recipients.iter().map(|r| recipient(r)).collect(),
        )
        .expect("scope")
    }

    /// Stammdaten and Kommunikationsdaten for prefilling, to the Wohngeld office and Amt24.
    pub fn wide() -> Scope {
        scope(
            &[Stammdaten, Kommunikationsdaten],
            &["antrag-vorbefuellung"],
            &["amt24", "lra-meissen:wohngeld"],
        )
    }

    pub fn reference() -> Reference {
        Reference::parse("§ 10 Abs. 1 Satz 2 SächsEGovG").expect("reference")
    }

    pub fn given_with(id: ConsentId, scope: Scope, expires_at: Option<&str>) -> ConsentEvent {
        ConsentEvent::Given(ConsentGiven {
            consent_id: id,
            subject: subject(),
            scope,
            legal_basis: ConsentBasis::Consent,
            legal_reference: reference(),
            notice: notice("2026-01"),
            channel: Channel::ServicekontoWeb,
            given_at: at(GIVEN_AT),
            expires_at: expires_at.map(at),
        })
    }

    pub fn given(expires_at: Option<&str>) -> ConsentEvent {
        given_with(consent_id(), wide(), expires_at)
    }

    pub fn withdrawn_at(id: ConsentId, when: DateTime<Utc>, channel: Channel) -> ConsentEvent {
        ConsentEvent::Withdrawn(ConsentWithdrawn {
            consent_id: id,
            subject: subject(),
            channel,
            withdrawn_at: when,
        })
    }

    fn renewed(when: &str, expires_at: Option<&str>) -> ConsentEvent {
        ConsentEvent::Renewed(ConsentRenewed {
            consent_id: consent_id(),
            subject: subject(),
            notice: notice("2026-07"),
            channel: Channel::App,
            renewed_at: at(when),
            expires_at: expires_at.map(at),
        })
    }

    fn renew(when: &str, expires_at: Option<&str>) -> ConsentCommand {
        ConsentCommand::Renew(RenewConsent {
            notice: notice("2026-07"),
            channel: Channel::App,
            renewed_at: at(when),
            expires_at: expires_at.map(at),
        })
    }

    fn narrow(to: Scope, when: &str) -> ConsentCommand {
        ConsentCommand::Narrow(NarrowConsentScope {
            scope: to,
            by: Initiator::Subject {
                channel: Channel::Amt24,
            },
            narrowed_at: at(when),
        })
    }

    fn narrowed(to: Scope, when: &str) -> ConsentEvent {
        ConsentEvent::ScopeNarrowed(ConsentScopeNarrowed {
            consent_id: consent_id(),
            subject: subject(),
            scope: to,
            narrowed_by: Initiator::Subject {
                channel: Channel::Amt24,
            },
            narrowed_at: at(when),
        })
    }

    fn withdraw(when: DateTime<Utc>, channel: Channel) -> ConsentCommand {
        ConsentCommand::Withdraw(WithdrawConsent {
            channel,
            withdrawn_at: when,
        })
    }

    fn revoked(when: &str) -> ConsentEvent {
        ConsentEvent::Revoked(ConsentRevoked {
            consent_id: consent_id(),
            subject: subject(),
            reason: ControllerReason::RecipientDiscontinued,
            reference: Some(Reference::parse("Az. 2026-0815").expect("reference")),
            revoked_at: at(when),
        })
    }

    fn fold(given: &[ConsentEvent]) -> ConsentState {
        given.iter().fold(ConsentState::NotGiven, evolve)
    }

    /// Given these events, when this command is decided, then this is the outcome.
    fn check(
        given: &[ConsentEvent],
        when: ConsentCommand,
        then: Result<Vec<ConsentEvent>, ConsentError>,
    ) {
        assert_eq!(decide(&when, &fold(given)), then);
    }

    fn give(expires_at: Option<&str>) -> ConsentCommand {
        ConsentCommand::Give(GiveConsent {
            consent_id: consent_id(),
            subject: subject(),
            scope: wide(),
            legal_basis: ConsentBasis::Consent,
            legal_reference: reference(),
            notice: notice("2026-01"),
            channel: Channel::ServicekontoWeb,
            given_at: at(GIVEN_AT),
            expires_at: expires_at.map(at),
        })
    }

    #[test]
    fn a_subject_gives_consent() {
        check(&[], give(None), Ok(vec![given(None)]));
        check(
            &[],
            give(Some("2027-01-10T10:00:00Z")),
            Ok(vec![given(Some("2027-01-10T10:00:00Z"))]),
        );
        let state = fold(&[given(None)]);
        assert_eq!(state.status_at(at(GIVEN_AT)), ConsentStatus::Given);
        assert_eq!(
            state.status_at(at(GIVEN_AT) - ms(1)),
            ConsentStatus::NotGiven
        );
    }

    #[test]
    fn a_consent_is_given_once() {
        check(&[given(None)], give(None), Err(ConsentError::AlreadyGiven));
    }

    #[test]
    fn an_expiry_must_lie_after_giving() {
        check(
            &[],
            give(Some(GIVEN_AT)),
            Err(ConsentError::ExpiryNotAfterStart),
        );
    }

    #[test]
    fn a_consent_needs_something_to_consent_to() {
        assert_eq!(
            Scope::new(
                CategorySet::EMPTY,
                [purpose("p")].into(),
                [recipient("r")].into()
            ),
            Err(ConsentError::EmptyScope)
        );
        assert_eq!(
            Scope::new(
                Stammdaten.into_set(),
                BTreeSet::new(),
                [recipient("r")].into()
            ),
            Err(ConsentError::EmptyScope)
        );
        assert_eq!(
            Scope::new(
                Stammdaten.into_set(),
                [purpose("p")].into(),
                BTreeSet::new()
            ),
            Err(ConsentError::EmptyScope)
        );
        assert!(serde_json::from_str::<Scope>(
            r#"{"categories":[],"purposes":["p"],"recipients":["r"]}"#
        )
        .is_err());
    }

    trait IntoSet {
        fn into_set(self) -> CategorySet;
    }

    impl IntoSet for DataCategory {
        fn into_set(self) -> CategorySet {
            CategorySet::from([self])
        }
    }

    #[test]
    fn a_withdrawal_ends_validity_at_its_own_instant() {
        let w = at("2026-03-01T12:00:00Z");
        let state = fold(&[given(None), withdrawn_at(consent_id(), w, Channel::App)]);
        assert!(state.is_valid_at(w - ms(1)));
        assert!(!state.is_valid_at(w));
        assert!(!state.is_valid_at(w + ms(1)));
        assert_eq!(state.status_at(w), ConsentStatus::Withdrawn);
        assert_eq!(state.status_at(w - ms(1)), ConsentStatus::Given);
    }

    #[test]
    fn withdrawal_is_accepted_through_any_channel_and_asks_for_nothing_more() {
        // Given on the web, withdrawn on paper: accepted, and the channel is recorded.
        let w = at("2026-03-01T12:00:00Z");
        for channel in [
            Channel::ServicekontoWeb,
            Channel::Amt24,
            Channel::App,
            Channel::Paper,
        ] {
            check(
                &[given(None)],
                withdraw(w, channel),
                Ok(vec![withdrawn_at(consent_id(), w, channel)]),
            );
        }
    }

    #[test]
    fn withdrawing_an_ended_consent_again_is_not_an_error() {
        let w = at("2026-03-01T12:00:00Z");
        check(
            &[given(None), withdrawn_at(consent_id(), w, Channel::App)],
            withdraw(w + ms(5), Channel::Paper),
            Ok(vec![]),
        );
        check(
            &[given(None), revoked("2026-02-01T00:00:00Z")],
            withdraw(w, Channel::App),
            Ok(vec![]),
        );
        // Also an expired consent can be withdrawn, so it can never be renewed.
        let expired_then_withdrawn = [given(Some("2026-02-01T00:00:00Z"))];
        check(
            &expired_then_withdrawn,
            withdraw(w, Channel::App),
            Ok(vec![withdrawn_at(consent_id(), w, Channel::App)]),
        );
        check(&[], withdraw(w, Channel::App), Err(ConsentError::NotGiven));
    }

    #[test]
    fn withdrawn_and_revoked_are_terminal() {
        let w = at("2026-03-01T12:00:00Z");
        for end in [
            withdrawn_at(consent_id(), w, Channel::App),
            revoked("2026-03-01T12:00:00Z"),
        ] {
            let given_and_ended = [given(None), end];
            check(
                &given_and_ended,
                renew("2026-04-01T00:00:00Z", None),
                Err(ConsentError::Ended),
            );
            check(
                &given_and_ended,
                narrow(
                    scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]),
                    "2026-04-01T00:00:00Z",
                ),
                Err(ConsentError::Ended),
            );
            check(
                &given_and_ended,
                ConsentCommand::Revoke(RevokeConsent {
                    reason: ControllerReason::LegalChange,
                    reference: None,
                    revoked_at: at("2026-04-01T00:00:00Z"),
                }),
                Err(ConsentError::Ended),
            );
            let state = fold(&given_and_ended);
            assert!(!state.is_valid_at(at("2030-01-01T00:00:00Z")));
        }
    }

    #[test]
    fn the_controller_revokes_with_a_reason() {
        check(
            &[given(None)],
            ConsentCommand::Revoke(RevokeConsent {
                reason: ControllerReason::RecipientDiscontinued,
                reference: Some(Reference::parse("Az. 2026-0815").expect("reference")),
                revoked_at: at("2026-05-01T00:00:00Z"),
            }),
            Ok(vec![revoked("2026-05-01T00:00:00Z")]),
        );
        let state = fold(&[given(None), revoked("2026-05-01T00:00:00Z")]);
        assert_eq!(
            state.status_at(at("2026-05-01T00:00:00Z")),
            ConsentStatus::Revoked
        );
        check(
            &[given(None)],
            ConsentCommand::Revoke(RevokeConsent {
                reason: ControllerReason::LegalChange,
                reference: None,
                revoked_at: at(GIVEN_AT) - ms(1),
            }),
            Err(ConsentError::BeforeLastChange),
        );
    }

    #[test]
    fn expiry_is_a_function_of_time() {
        let x = at("2026-06-01T00:00:00Z");
        let state = fold(&[given(Some("2026-06-01T00:00:00Z"))]);
        assert_eq!(state.status_at(x - ms(1)), ConsentStatus::Given);
        assert_eq!(state.status_at(x), ConsentStatus::Expired);
        assert!(!state.is_valid_at(x));
    }

    #[test]
    fn the_sweeper_records_an_expiry_once_it_has_happened() {
        let expiring = [given(Some("2026-06-01T00:00:00Z"))];
        let sweep = |now: &str| ConsentCommand::RecordExpiry(RecordConsentExpiry { now: at(now) });
        let expired = ConsentEvent::Expired(ConsentExpired {
            consent_id: consent_id(),
            subject: subject(),
            expired_at: at("2026-06-01T00:00:00Z"),
        });
        check(
            &expiring,
            sweep("2026-05-31T23:59:59Z"),
            Err(ConsentError::NotExpired),
        );
        check(
            &expiring,
            sweep("2026-06-02T03:00:00Z"),
            Ok(vec![expired.clone()]),
        );
        // It takes effect at the expiry itself, not when the sweeper ran.
        assert_eq!(expired.occurred_at(), at("2026-06-01T00:00:00Z"));
        let recorded = [expiring[0].clone(), expired];
        check(&recorded, sweep("2026-06-03T00:00:00Z"), Ok(vec![]));
        assert!(!fold(&recorded)
            .consent()
            .expect("given")
            .expiry_due_at(at("2026-06-03T00:00:00Z")));
        assert!(fold(&expiring)
            .consent()
            .expect("given")
            .expiry_due_at(at("2026-06-01T00:00:00Z")));
        check(
            &[given(None)],
            sweep("2030-01-01T00:00:00Z"),
            Err(ConsentError::NotExpired),
        );
    }

    #[test]
    fn a_renewal_opens_a_new_term_also_after_expiry() {
        let expiring = given(Some("2026-06-01T00:00:00Z"));
        check(
            std::slice::from_ref(&expiring),
            renew("2026-07-01T00:00:00Z", Some("2027-07-01T00:00:00Z")),
            Ok(vec![renewed(
                "2026-07-01T00:00:00Z",
                Some("2027-07-01T00:00:00Z"),
            )]),
        );
        let state = fold(&[
            expiring,
            renewed("2026-07-01T00:00:00Z", Some("2027-07-01T00:00:00Z")),
        ]);
        // Between the old expiry and the renewal the consent was expired; the renewal does
        // not reach back.
        assert_eq!(
            state.status_at(at("2026-05-31T00:00:00Z")),
            ConsentStatus::Given
        );
        assert_eq!(
            state.status_at(at("2026-06-15T00:00:00Z")),
            ConsentStatus::Expired
        );
        assert_eq!(
            state.status_at(at("2026-07-01T00:00:00Z")),
            ConsentStatus::Renewed
        );
        assert_eq!(
            state.status_at(at("2027-07-01T00:00:00Z")),
            ConsentStatus::Expired
        );
        let c = state.consent().expect("given");
        assert_eq!(c.term().notice, notice("2026-07"));
        assert_eq!(
            c.term_at(at("2026-02-01T00:00:00Z"))
                .map(|(_, t)| &t.notice),
            Some(&notice("2026-01"))
        );
    }

    #[test]
    fn a_renewal_cannot_precede_the_last_change_or_expire_before_it_starts() {
        check(
            &[given(None)],
            renew("2026-01-10T09:59:59Z", None),
            Err(ConsentError::BeforeLastChange),
        );
        check(
            &[given(None)],
            renew("2026-02-01T00:00:00Z", Some("2026-02-01T00:00:00Z")),
            Err(ConsentError::ExpiryNotAfterStart),
        );
    }

    #[test]
    fn the_scope_can_be_narrowed_but_never_widened() {
        let smaller = scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]);
        check(
            &[given(None)],
            narrow(smaller.clone(), "2026-02-01T00:00:00Z"),
            Ok(vec![narrowed(smaller.clone(), "2026-02-01T00:00:00Z")]),
        );
        let more_categories = scope(
            &[Stammdaten, Verfahrensdaten],
            &["antrag-vorbefuellung"],
            &["amt24"],
        );
        let other_purpose = scope(&[Stammdaten], &["statistik"], &["amt24"]);
        let other_recipient = scope(&[Stammdaten], &["antrag-vorbefuellung"], &["fv.elster"]);
        for wider in [more_categories, other_purpose, other_recipient] {
            check(
                &[given(None)],
                narrow(wider, "2026-02-01T00:00:00Z"),
                Err(ConsentError::WideningNeedsNewConsent),
            );
        }
        // Narrowing to the same scope changes nothing and records nothing.
        check(
            &[given(None)],
            narrow(wide(), "2026-02-01T00:00:00Z"),
            Ok(vec![]),
        );
        // After a narrowing, the removed part cannot come back.
        check(
            &[given(None), narrowed(smaller, "2026-02-01T00:00:00Z")],
            narrow(wide(), "2026-03-01T00:00:00Z"),
            Err(ConsentError::WideningNeedsNewConsent),
        );
    }

    #[test]
    fn the_controller_can_narrow_too() {
        let smaller = scope(
            &[Stammdaten, Kommunikationsdaten],
            &["antrag-vorbefuellung"],
            &["amt24"],
        );
        let by = Initiator::Controller {
            reason: ControllerReason::RecipientDiscontinued,
            reference: None,
        };
        check(
            &[given(None)],
            ConsentCommand::Narrow(NarrowConsentScope {
                scope: smaller.clone(),
                by: by.clone(),
                narrowed_at: at("2026-02-01T00:00:00Z"),
            }),
            Ok(vec![ConsentEvent::ScopeNarrowed(ConsentScopeNarrowed {
                consent_id: consent_id(),
                subject: subject(),
                scope: smaller,
                narrowed_by: by,
                narrowed_at: at("2026-02-01T00:00:00Z"),
            })]),
        );
    }

    #[test]
    fn the_scope_is_known_for_every_instant() {
        let smaller = scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]);
        let state = fold(&[
            given(None),
            narrowed(smaller.clone(), "2026-02-01T00:00:00Z"),
        ]);
        let c = state.consent().expect("given");
        assert_eq!(
            c.scope_at(at("2026-02-01T00:00:00Z") - ms(1)),
            Some(&wide())
        );
        assert_eq!(c.scope_at(at("2026-02-01T00:00:00Z")), Some(&smaller));
        assert_eq!(c.scope_at(at(GIVEN_AT) - ms(1)), None);
        assert_eq!(c.scope(), &smaller);
    }

    #[test]
    fn replay_as_of_an_instant_ignores_later_events() {
        let w = at("2026-03-01T12:00:00Z");
        let smaller = scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]);
        let history = [
            given(Some("2026-06-01T00:00:00Z")),
            narrowed(smaller.clone(), "2026-02-01T00:00:00Z"),
            withdrawn_at(consent_id(), w, Channel::Paper),
        ];
        let before = as_of(&history, at(GIVEN_AT) - ms(1));
        assert_eq!(before, ConsentState::NotGiven);

        let january = as_of(&history, at("2026-01-20T00:00:00Z"));
        let c = january.consent().expect("given");
        assert_eq!(c.scope(), &wide());
        assert_eq!(c.version(), 1);
        assert_eq!(c.ended(), None);

        // The withdrawal boundary: valid 1 ms before, invalid at and after.
        assert_eq!(
            as_of(&history, w - ms(1)).status_at(w - ms(1)),
            ConsentStatus::Given
        );
        assert_eq!(as_of(&history, w).status_at(w), ConsentStatus::Withdrawn);
        assert_eq!(
            as_of(&history, w + ms(1)).status_at(w + ms(1)),
            ConsentStatus::Withdrawn
        );
        let c = as_of(&history, w).consent().cloned().expect("given");
        assert_eq!(c.scope(), &smaller);
        assert_eq!(c.version(), 3);
        assert_eq!(
            c.ended(),
            Some(&Ending::Withdrawn {
                at: w,
                channel: Channel::Paper
            })
        );
        // Expiry is evaluated at the instant asked about.
        let mut expiring = history.to_vec();
        expiring.pop();
        let x = at("2026-06-01T00:00:00Z");
        assert_eq!(as_of(&expiring, x).status_at(x), ConsentStatus::Expired);
    }

    #[test]
    fn the_full_state_and_the_replay_agree_at_every_instant() {
        // status_at on the current state must answer about the past exactly as the replay.
        let history = [
            given(Some("2026-06-01T00:00:00Z")),
            narrowed(
                scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]),
                "2026-02-01T00:00:00Z",
            ),
            renewed("2026-07-01T00:00:00Z", Some("2027-01-01T00:00:00Z")),
            withdrawn_at(consent_id(), at("2026-09-01T00:00:00Z"), Channel::App),
        ];
        let now = fold(&history);
        let mut t = at("2026-01-01T00:00:00Z");
        while t < at("2027-02-01T00:00:00Z") {
            let then = as_of(&history, t);
            assert_eq!(now.status_at(t), then.status_at(t), "at {t}");
            assert_eq!(
                now.consent().and_then(|c| c.scope_at(t)),
                then.consent().map(Consent::scope),
                "at {t}"
            );
            t += chrono::Duration::hours(11);
        }
    }

    #[test]
    fn a_subjects_consents_as_of_an_instant() {
        let later = ConsentId(uuid(0xc2));
        let mut second = given_with(later, wide(), None);
        if let ConsentEvent::Given(e) = &mut second {
            e.given_at = at("2026-04-01T00:00:00Z");
        }
        let first = [given(None)];
        let second = [second];
        let streams: [&[ConsentEvent]; 2] = [&first, &second];
        let march = subject_consents_as_of(streams, at("2026-03-01T00:00:00Z"));
        assert_eq!(
            march.iter().map(Consent::id).collect::<Vec<_>>(),
            vec![consent_id()]
        );
        let may = subject_consents_as_of(streams, at("2026-05-01T00:00:00Z"));
        assert_eq!(may.len(), 2);
    }

    #[test]
    fn instants_are_kept_to_the_microsecond() {
        let events = decide(
            &withdraw(at("2026-03-01T12:00:00.000000999Z"), Channel::App),
            &fold(&[given(None)]),
        )
        .expect("withdrawn");
        assert_eq!(events[0].occurred_at(), at("2026-03-01T12:00:00Z"));
    }

    #[test]
    fn statuses_map_to_dpv() {
        assert_eq!(
            ConsentStatus::Renewed.dpv_concept(),
            Some("dpv:RenewedConsentGiven")
        );
        assert_eq!(
            ConsentStatus::Withdrawn.dpv_concept(),
            Some("dpv:ConsentWithdrawn")
        );
        assert_eq!(ConsentStatus::NotGiven.dpv_concept(), None);
    }

    #[test]
    fn notice_digests_have_one_spelling() {
        let d = Sha256Digest::of(b"abc");
        assert_eq!(
            d.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256Digest::parse_hex(&d.to_hex()), Some(d));
        assert_eq!(Sha256Digest::parse_hex(&d.to_hex().to_uppercase()), None);
        assert_eq!(Sha256Digest::parse_hex("ab"), None);
    }

    const NOTICE_2026_01: &str = r#"{"sha256":"NOTICE","version":"2026-01"}"#;

    fn notice_json(version: &str) -> String {
        NOTICE_2026_01
            .replace("NOTICE", &notice(version).sha256.to_hex())
            .replace("2026-01", version)
    }

    #[test]
    fn event_json_snapshots() {
        let ids = r#""consent_id":"0193a1b2-0000-7000-8000-0000000000c1""#;
        let subject = r#""subject":"0193a1b2-0000-7000-8000-00000000000a""#;
        let wide_json = r#"{"categories":["stammdaten","kommunikationsdaten"],"purposes":["antrag-vorbefuellung"],"recipients":["amt24","lra-meissen:wohngeld"]}"#;
        snapshot(
            &given(Some("2027-01-10T10:00:00Z")),
            "ConsentGiven",
            &format!(
                r#"{{"channel":"servicekonto_web",{ids},"expires_at":"2027-01-10T10:00:00.000000Z","given_at":"2026-01-10T10:00:00.000000Z","legal_basis":"art6_1_a","legal_reference":"§ 10 Abs. 1 Satz 2 SächsEGovG","notice":{},"scope":{wide_json},{subject}}}"#,
                notice_json("2026-01")
            ),
            None,
        );
        let mut explicit = given(None);
        if let ConsentEvent::Given(e) = &mut explicit {
            e.legal_basis = ConsentBasis::ExplicitConsent;
        }
        snapshot(
            &explicit,
            "ConsentGiven",
            &format!(
                r#"{{"channel":"servicekonto_web",{ids},"given_at":"2026-01-10T10:00:00.000000Z","legal_basis":"art9_2_a","legal_reference":"§ 10 Abs. 1 Satz 2 SächsEGovG","notice":{},"scope":{wide_json},{subject}}}"#,
                notice_json("2026-01")
            ),
            None,
        );
        snapshot(
            &renewed("2026-07-01T00:00:00Z", Some("2027-07-01T00:00:00Z")),
            "ConsentRenewed",
            &format!(
                r#"{{"channel":"app",{ids},"expires_at":"2027-07-01T00:00:00.000000Z","notice":{},"renewed_at":"2026-07-01T00:00:00.000000Z",{subject}}}"#,
                notice_json("2026-07")
            ),
            None,
        );
        snapshot(
            &narrowed(
                scope(&[Stammdaten], &["antrag-vorbefuellung"], &["amt24"]),
                "2026-02-01T00:00:00Z",
            ),
            "ConsentScopeNarrowed",
            &format!(
                r#"{{{ids},"narrowed_at":"2026-02-01T00:00:00.000000Z","narrowed_by":{{"channel":"amt24","party":"subject"}},"scope":{{"categories":["stammdaten"],"purposes":["antrag-vorbefuellung"],"recipients":["amt24"]}},{subject}}}"#
            ),
            None,
        );
        snapshot(
            &ConsentEvent::ScopeNarrowed(ConsentScopeNarrowed {
                consent_id: consent_id(),
                subject: self::subject(),
                scope: scope(&[ElektronischeDokumente], &["p"], &["r"]),
                narrowed_by: Initiator::Controller {
                    reason: ControllerReason::PurposeFulfilled,
                    reference: Some(Reference::parse("Az. 1").expect("reference")),
                },
                narrowed_at: at("2026-02-01T00:00:00Z"),
            }),
            "ConsentScopeNarrowed",
            &format!(
                r#"{{{ids},"narrowed_at":"2026-02-01T00:00:00.000000Z","narrowed_by":{{"party":"controller","reason":"purpose_fulfilled","reference":"Az. 1"}},"scope":{{"categories":["elektronische_dokumente"],"purposes":["p"],"recipients":["r"]}},{subject}}}"#
            ),
            None,
        );
        snapshot(
            &withdrawn_at(consent_id(), at("2026-03-01T12:00:00Z"), Channel::Paper),
            "ConsentWithdrawn",
            &format!(
                r#"{{"channel":"paper",{ids},{subject},"withdrawn_at":"2026-03-01T12:00:00.000000Z"}}"#
            ),
            None,
        );
        snapshot(
            &revoked("2026-05-01T00:00:00Z"),
            "ConsentRevoked",
            &format!(
                r#"{{{ids},"reason":"recipient_discontinued","reference":"Az. 2026-0815","revoked_at":"2026-05-01T00:00:00.000000Z",{subject}}}"#
            ),
            None,
        );
        for (reason, name) in [
            (ControllerReason::NoticeDefective, "notice_defective"),
            (ControllerReason::AccountDeleted, "account_deleted"),
            (ControllerReason::LegalChange, "legal_change"),
            (ControllerReason::SupervisoryOrder, "supervisory_order"),
        ] {
            snapshot(
                &ConsentEvent::Revoked(ConsentRevoked {
                    consent_id: consent_id(),
                    subject: self::subject(),
                    reason,
                    reference: None,
                    revoked_at: at("2026-05-01T00:00:00Z"),
                }),
                "ConsentRevoked",
                &format!(
                    r#"{{{ids},"reason":"{name}","revoked_at":"2026-05-01T00:00:00.000000Z",{subject}}}"#
                ),
                None,
            );
        }
        snapshot(
            &ConsentEvent::Expired(ConsentExpired {
                consent_id: consent_id(),
                subject: self::subject(),
                expired_at: at("2026-06-01T00:00:00Z"),
            }),
            "ConsentExpired",
            &format!(r#"{{{ids},"expired_at":"2026-06-01T00:00:00.000000Z",{subject}}}"#),
            None,
        );
    }

    #[test]
    fn stored_forms_are_read_strictly() {
        let parts = given(None).to_parts().expect("parts");
        let mut extra = parts.data.clone();
        extra["note"] = serde_json::json!("x");
        assert!(matches!(
            ConsentEvent::from_parts(&parts.event_type, &extra, None),
            Err(PartsError::Data { .. })
        ));
        assert_eq!(
            ConsentEvent::from_parts(&parts.event_type, &parts.data, Some(&serde_json::json!({}))),
            Err(PartsError::UnexpectedPersonal {
                event_type: "ConsentGiven"
            })
        );
        let mut widened = parts.data;
        widened["scope"]["recipients"] = serde_json::json!([]);
        assert!(ConsentEvent::from_parts(&parts.event_type, &widened, None).is_err());
    }
}
