//! The GDPR domain core: Servicekonto accounts, § 10 SächsEGovG consents and the
//! disclosures made under them, as pure deciders.
//!
//! § 10 (1) sentence 2 SächsEGovG lets the base components process master, procedural and
//! communication data and electronic documents for use in and by other e-government
//! services of public bodies — only with the user's consent. Data protection officers
//! must be able to replay, for any data subject and any instant, which consents were in
//! force and which disclosures happened under them, and the log must stay verifiable after
//! a subject has been erased. So:
//!
//! - every aggregate is a decider ([`crate::decider::Decider`]: `decide(&Command, &State)`,
//!   `evolve(State, &Event)`), pure and synchronous, with time, ids and outside facts
//!   carried in the command;
//! - every event splits into non-personal `data` (pseudonymous UUIDs are fine) and an
//!   optional `personal` part that the service seals under the subject's data key
//!   ([`crate::seal`]) before append. Read back after erasure, the personal part is gone,
//!   which the types say explicitly with [`Personal::Erased`]; evolve never needs it;
//! - every instant an event carries is its *effective* instant, which also becomes the
//!   envelope's `occurred_at`. Validity intervals are half-open: a consent given at g,
//!   withdrawn at w, is valid for g ≤ t < w.
//!
//! This module holds what the aggregates share — ids, data categories, recipients,
//! purposes, channels. The envelope, [`Personal`] and the newtype macros are the core's
//! (`crate::event`, `crate::newtype`), shared with every other domain; an [`AccountId`]
//! is the data subject ([`SubjectId`]) of the events that concern it.

pub mod account;
pub mod consent;
pub mod disclosure;
pub mod retention;

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::event::Personal;
use crate::event::SubjectId;
use crate::newtype::{text, token, uuid_id};
use crate::record::truncate_micros;

uuid_id!(
    /// A Servicekonto. Its id is also the pseudonymous id of the data subject in consents,
    /// disclosures and sealed sections: nothing personal can be read from it, and once the
    /// account's key is destroyed nothing links it to a person any more.
    AccountId,
    stream = "account"
);
uuid_id!(
    /// One consent; each consent is its own stream `consent-<uuid>`.
    ConsentId,
    stream = "consent"
);
uuid_id!(
    /// One disclosure decision; each is its own stream `disclosure-<uuid>`.
    DisclosureId,
    stream = "disclosure"
);
uuid_id!(
    /// One identity link of an account (an eID, an ELSTER certificate …).
    LinkId
);

/// An account is the data subject of the events that concern it: its key seals their
/// personal part.
impl From<AccountId> for SubjectId {
    fn from(id: AccountId) -> Self {
        SubjectId(id.0)
    }
}

/// The data categories of § 10 (1) sentence 2 SächsEGovG.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataCategory {
    /// Master data (name, address, date of birth …).
    Stammdaten,
    /// Procedural data (Anträge, their states and decisions).
    Verfahrensdaten,
    /// Communication data (e-mail address, telephone, mailbox messages).
    Kommunikationsdaten,
    /// Electronic documents (uploads, notices, certificates).
    ElektronischeDokumente,
}

impl DataCategory {
    pub const ALL: [DataCategory; 4] = [
        Self::Stammdaten,
        Self::Verfahrensdaten,
        Self::Kommunikationsdaten,
        Self::ElektronischeDokumente,
    ];

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of data categories. A bit set, because the coverage check runs on every
/// disclosure request; serialized as an array of names in the declaration order of
/// [`DataCategory`], so a set has exactly one JSON spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CategorySet(u8);

impl CategorySet {
    pub const EMPTY: CategorySet = CategorySet(0);

    pub fn contains(self, category: DataCategory) -> bool {
        self.0 & category.bit() != 0
    }

    pub fn insert(&mut self, category: DataCategory) {
        self.0 |= category.bit();
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn is_subset(self, other: CategorySet) -> bool {
        self.0 & !other.0 == 0
    }

    /// The categories of `self` that `other` lacks.
    pub fn difference(self, other: CategorySet) -> CategorySet {
        CategorySet(self.0 & !other.0)
    }

    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    pub fn iter(self) -> impl Iterator<Item = DataCategory> {
        DataCategory::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl FromIterator<DataCategory> for CategorySet {
    fn from_iter<I: IntoIterator<Item = DataCategory>>(iter: I) -> Self {
        let mut set = Self::EMPTY;
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl<const N: usize> From<[DataCategory; N]> for CategorySet {
    fn from(categories: [DataCategory; N]) -> Self {
        categories.into_iter().collect()
    }
}

impl fmt::Debug for CategorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for CategorySet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for CategorySet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let list = Vec::<DataCategory>::deserialize(d)?;
        let set: CategorySet = list.iter().copied().collect();
        // One spelling per set: no repetitions, canonical order.
        if !set.iter().eq(list.iter().copied()) {
            return Err(serde::de::Error::custom(
                "data categories must be listed once each, in the order stammdaten, \
                 verfahrensdaten, kommunikationsdaten, elektronische_dokumente",
            ));
        }
        Ok(set)
    }
}

token!(
    /// An e-government application or public body that receives personal data
    /// (`amt24`, `lra-meissen:wohngeld`, `fv.kita-portal`), as the register of recipients
    /// names it.
    RecipientId,
    "recipient",
    128
);
token!(
    /// A processing purpose from the register of processing activities (Art. 30 GDPR),
    /// e.g. `antrag-vorbefuellung` (prefilling Anträge).
    PurposeId,
    "purpose",
    128
);
token!(
    /// The version of a consent notice text (`2026-01`, `v3`).
    NoticeVersion,
    "notice version",
    64
);

text!(
    /// A non-personal reference: a legal provision (`§ 10 Abs. 1 Satz 2 SächsEGovG`), a
    /// file number or a decision number. It is stored in plaintext, so it must never name
    /// a person; the service only fills it from configuration or controller input.
    Reference,
    "reference",
    200
);

/// The channel through which the subject acted (gave, renewed, narrowed or withdrew
/// consent, asked for deletion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The Servicekonto web front end.
    ServicekontoWeb,
    /// The Amt24 portal.
    Amt24,
    /// A mobile app.
    App,
    /// A signed paper form or letter, entered by staff.
    Paper,
}

/// A set of recipients, as the events carry it.
pub type Recipients = BTreeSet<RecipientId>;

/// A set of purposes, as the events carry it.
pub type Purposes = BTreeSet<PurposeId>;

/// Truncates an instant to the microseconds the record format keeps, so an event decided
/// in memory equals the same event read back from the log.
fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the tests of the aggregates.

    use serde_json::Value;
    use uuid::Uuid;

    use super::*;
    use crate::event::DomainEvent;

    /// An instant from RFC 3339 text.
    pub fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    pub fn ms(n: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(n)
    }

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0000 | n)
    }

    pub fn recipient(s: &str) -> RecipientId {
        RecipientId::parse(s).expect("recipient")
    }

    pub fn purpose(s: &str) -> PurposeId {
        PurposeId::parse(s).expect("purpose")
    }

    /// Checks an event's stored form: type, canonical `data` and `personal`, and that it
    /// reads back as the same event. `data` and `personal` are compared as canonical JSON
    /// text, so the snapshot is the exact spelling that is stored (and hashed).
    pub fn snapshot<E: DomainEvent + PartialEq + fmt::Debug>(
        event: &E,
        event_type: &str,
        data: &str,
        personal: Option<&str>,
    ) {
        let parts = event.to_parts().expect("parts");
        assert_eq!(parts.event_type.as_str(), event_type);
        assert_eq!(event.event_type(), event_type);
        let canonical =
            |v: &Value| String::from_utf8(crate::jcs::canonicalize(v).expect("jcs")).expect("utf8");
        assert_eq!(canonical(&parts.data), data, "data of {event_type}");
        assert_eq!(
            parts.personal.as_ref().map(canonical).as_deref(),
            personal,
            "personal part of {event_type}"
        );
        assert_eq!(
            E::carries_personal_data(event_type),
            personal.is_some(),
            "carries_personal_data({event_type})"
        );
        let back = E::from_parts(&parts.event_type, &parts.data, parts.personal.as_ref())
            .expect("from parts");
        assert_eq!(&back, event, "{event_type} reads back unchanged");
    }
}

#[cfg(test)]
mod tests {
    use super::account::{
        AccountEvent, AccountKind, AccountOpened, MasterData, MasterDataChanged, PersonData,
    };
    use super::consent::{ConsentEvent, ConsentWithdrawn};
    use super::testing::*;
    use super::*;
    use crate::event::{decode, encode, stored, EnvelopeError, PartsError, Sealing};
    use crate::seal::{DataKey, KeyId, SealError};
    use ring::rand::SystemRandom;

    fn account() -> AccountId {
        AccountId(uuid(1))
    }

    fn changed() -> AccountEvent {
        AccountEvent::MasterDataChanged(MasterDataChanged {
            account_id: account(),
            changed_at: at("2026-03-01T10:00:00Z"),
            master_data: Personal::Available(MasterData::Person(PersonData {
                given_names: account::Text::parse("Anna").expect("text"),
                family_name: account::Text::parse("Müller").expect("text"),
                birth_date: None,
                address: None,
                email: None,
            })),
        })
    }

    #[test]
    fn ids_and_streams() {
        let id = ConsentId(uuid(7));
        let stream = id.stream_id();
        assert_eq!(
            stream.as_str(),
            "consent-0193a1b2-0000-7000-8000-000000000007"
        );
        assert_eq!(ConsentId::from_stream(&stream), Some(id));
        assert_eq!(AccountId::from_stream(&stream), None);
        assert_eq!(
            DisclosureId(uuid(7)).stream_id().as_str(),
            "disclosure-0193a1b2-0000-7000-8000-000000000007"
        );
        assert_eq!(account().stream_id().category(), "account");
    }

    #[test]
    fn personal_events_are_sealed_into_the_record_and_open_again() {
        let rng = SystemRandom::new();
        let key = DataKey::from_bytes([4; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        let encoded = encode(&changed(), uuid(99), Some(sealing), &rng).expect("encode");
        assert_eq!(encoded.stream_id, account().stream_id());
        assert_eq!(encoded.event.occurred_at, Some(at("2026-03-01T10:00:00Z")));
        let record = stored(encoded);
        let bytes = String::from_utf8(record.to_bytes().expect("bytes")).expect("utf8");
        assert!(
            !bytes.contains("Müller"),
            "no plaintext in the record: {bytes}"
        );
        let sealed = record.sealed.as_ref().expect("sealed");
        assert_eq!(sealed.subject, account().to_string());
        assert_eq!(sealed.key_id, "k1");

        assert_eq!(decode::<AccountEvent>(&record, Some(&key)), Ok(changed()));
    }

    #[test]
    fn after_erasure_the_event_reads_back_with_its_personal_data_erased() {
        let rng = SystemRandom::new();
        let key = DataKey::from_bytes([4; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        let record = stored(encode(&changed(), uuid(99), Some(sealing), &rng).expect("encode"));
        let AccountEvent::MasterDataChanged(mut expected) = changed() else {
            unreachable!()
        };
        expected.master_data = Personal::Erased;
        assert_eq!(
            decode::<AccountEvent>(&record, None),
            Ok(AccountEvent::MasterDataChanged(expected))
        );
        // A key that exists but does not fit is an integrity failure, not an erasure.
        assert_eq!(
            decode::<AccountEvent>(&record, Some(&DataKey::from_bytes([5; 32]))),
            Err(EnvelopeError::Seal(SealError::Authentication))
        );
    }

    #[test]
    fn events_without_personal_data_need_no_key_and_have_no_sealed_section() {
        let withdrawn = ConsentEvent::Withdrawn(ConsentWithdrawn {
            consent_id: ConsentId(uuid(3)),
            subject: account(),
            channel: Channel::App,
            withdrawn_at: at("2026-03-01T10:00:00Z"),
        });
        let record =
            stored(encode(&withdrawn, uuid(98), None, &SystemRandom::new()).expect("encode"));
        assert_eq!(record.sealed, None);
        assert_eq!(record.stream_id, ConsentId(uuid(3)).stream_id());
        assert_eq!(decode::<ConsentEvent>(&record, None), Ok(withdrawn));
    }

    #[test]
    fn a_personal_event_cannot_be_written_without_a_key_or_after_erasure() {
        let rng = SystemRandom::new();
        assert_eq!(
            encode(&changed(), uuid(99), None, &rng),
            Err(EnvelopeError::KeyRequired("MasterDataChanged"))
        );
        let erased = AccountEvent::Opened(AccountOpened {
            account_id: account(),
            kind: AccountKind::Personal,
            opened_at: at("2026-03-01T10:00:00Z"),
            expires_at: None,
            master_data: Personal::Erased,
        });
        let key = DataKey::from_bytes([4; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        assert_eq!(
            encode(&erased, uuid(99), Some(sealing), &rng),
            Err(EnvelopeError::Parts(PartsError::Erased {
                event_type: "AccountOpened"
            }))
        );
    }

    #[test]
    fn records_that_do_not_fit_their_event_are_refused() {
        let rng = SystemRandom::new();
        let key = DataKey::from_bytes([4; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        let record = stored(encode(&changed(), uuid(99), Some(sealing), &rng).expect("encode"));

        let mut unsealed = record.clone();
        unsealed.sealed = None;
        assert_eq!(
            decode::<AccountEvent>(&unsealed, None),
            Err(EnvelopeError::MissingSealedSection(
                "MasterDataChanged".into()
            ))
        );

        let mut moved = record.clone();
        moved.stream_id = AccountId(uuid(2)).stream_id();
        // Moved to another stream, the section no longer opens (its stream is in the AAD);
        // without a key, the stream check still catches it.
        assert_eq!(
            decode::<AccountEvent>(&moved, Some(&key)),
            Err(EnvelopeError::Seal(SealError::Authentication))
        );
        assert!(matches!(
            decode::<AccountEvent>(&moved, None),
            Err(EnvelopeError::StreamMismatch { .. })
        ));

        let mut other_subject = record;
        if let Some(s) = other_subject.sealed.as_mut() {
            s.subject = AccountId(uuid(2)).to_string();
        }
        assert!(matches!(
            decode::<AccountEvent>(&other_subject, None),
            Err(EnvelopeError::SubjectMismatch { .. })
        ));
    }

    #[test]
    fn category_sets_have_one_spelling() {
        let set = CategorySet::from([
            DataCategory::ElektronischeDokumente,
            DataCategory::Stammdaten,
        ]);
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"["stammdaten","elektronische_dokumente"]"#
        );
        assert_eq!(
            serde_json::from_str::<CategorySet>(r#"["stammdaten","elektronische_dokumente"]"#)
                .expect("parse"),
            set
        );
        for bad in [
            r#"["elektronische_dokumente","stammdaten"]"#,
            r#"["stammdaten","stammdaten"]"#,
            r#"["meldedaten"]"#,
        ] {
            assert!(serde_json::from_str::<CategorySet>(bad).is_err(), "{bad}");
        }
        assert!(CategorySet::from([DataCategory::Stammdaten]).is_subset(set));
        assert!(!set.is_subset(CategorySet::from([DataCategory::Stammdaten])));
        assert_eq!(
            set.difference(CategorySet::from([DataCategory::Stammdaten])),
            CategorySet::from([DataCategory::ElektronischeDokumente])
        );
    }

    #[test]
    fn names_and_references_are_checked() {
        for good in [
            "amt24",
            "lra-meissen:wohngeld",
            "fv.kita_portal",
            "14612000",
        ] {
            assert!(RecipientId::parse(good).is_ok(), "{good}");
        }
        for bad in ["", "Amt24", "-x", "a b", "ä", &"a".repeat(129)] {
            assert!(RecipientId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Reference::parse("§ 10 Abs. 1 Satz 2 SächsEGovG").is_ok());
        for bad in ["", " x", "x ", "a\nb", &"x".repeat(201)] {
            assert!(Reference::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn personal_data_is_never_printed() {
        let text = format!("{:?}", changed());
        assert!(!text.contains("Müller"), "{text}");
        assert!(text.contains("Available(<personal data>)"), "{text}");
    }
}
