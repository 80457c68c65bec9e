//! Domain events and the log envelope, for every domain module: what the log needs to know
//! about an event ([`DomainEvent`]), how an event splits into its non-personal `data` and
//! its personal part ([`EventParts`]), and how it is put into a record with the personal
//! part sealed under its data subject's key ([`encode`]) and read back ([`decode`]).
//!
//! Personal data is held only as [`Personal`], which says explicitly when the plaintext is
//! gone because the subject was erased (crypto-shredded), and never prints its value.
//! The data subject is a [`SubjectId`]: a pseudonymous UUID, which each domain derives
//! from its own ids (a Servicekonto account, say).
//!
//! A domain whose event enum carries no personal data implements [`DomainEvent`] with
//! [`plain_events!`](crate::event::plain_events) instead of writing the impl out.

use std::fmt;

use chrono::{DateTime, Utc};
use ring::rand::SecureRandom;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::append::NewEvent;
use crate::record::EventRecord;
use crate::seal::{self, DataKey, Envelope, KeyId, SealError};
use crate::stream::{AuthorityId, EventType, ServiceKey, StreamId};

/// The pseudonymous id of a data subject, whose key seals the personal part of the events
/// that concern it. It stays in plaintext in every sealed section, also after erasure, so
/// it is a UUID that says nothing about the person; written as the lowercase hyphenated
/// UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SubjectId(pub Uuid);

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Where an event is routed: the authority it is addressed to, the administrative service
/// (LeiKa key) and the tenant (an AGS). NATS subjects and who may read an event
/// (`access::Principal::may_see`) follow these members of the envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Routing {
    pub authority: Option<AuthorityId>,
    pub service: Option<ServiceKey>,
    pub tenant: Option<String>,
}

impl Routing {
    /// Each member of `self`, or where it has none, of `other`.
    pub fn or(self, other: &Routing) -> Routing {
        Routing {
            authority: self.authority.or_else(|| other.authority.clone()),
            service: self.service.or_else(|| other.service.clone()),
            tenant: self.tenant.or_else(|| other.tenant.clone()),
        }
    }
}

/// Personal data that may have been erased.
///
/// Events and states hold personal data only through this type. Written events always hold
/// `Available`; an event read back after the subject's key was destroyed holds `Erased`,
/// and every rule that does not need the plaintext keeps working. Its `Debug` output never
/// shows the value, so personal data cannot reach a log through a `{:?}`.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum Personal<T> {
    Available(T),
    /// The plaintext is gone: the subject was erased (crypto-shredded).
    #[default]
    Erased,
}

impl<T> Personal<T> {
    pub fn available(&self) -> Option<&T> {
        match self {
            Self::Available(value) => Some(value),
            Self::Erased => None,
        }
    }

    pub fn is_erased(&self) -> bool {
        matches!(self, Self::Erased)
    }

    /// The same personal data under another shape (`Erased` stays erased).
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Personal<U> {
        match self {
            Self::Available(value) => Personal::Available(f(value)),
            Self::Erased => Personal::Erased,
        }
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Available(_) => f.write_str("Available(<personal data>)"),
            Self::Erased => f.write_str("Erased"),
        }
    }
}

/// An event split the way the log stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventParts {
    pub event_type: EventType,
    /// Non-personal members only; goes to the record's `data`.
    pub data: Value,
    /// Plaintext personal data, if the event type carries any; must be sealed into the
    /// record's `sealed` section, never stored as it is. `Debug` shows it, so never log
    /// an `EventParts`.
    pub personal: Option<Value>,
}

/// Why an event could not be split into, or rebuilt from, its stored parts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartsError {
    #[error("event type {0:?} does not belong to this aggregate")]
    UnknownEventType(String),
    #[error("data of {event_type} is malformed: {message}")]
    Data {
        event_type: &'static str,
        message: String,
    },
    #[error("personal part of {event_type} is malformed")]
    Personal { event_type: &'static str },
    #[error("{event_type} carries no personal data, but a personal part was given")]
    UnexpectedPersonal { event_type: &'static str },
    /// An event whose personal data is erased cannot be written again.
    #[error("{event_type} holds erased personal data and cannot be stored")]
    Erased { event_type: &'static str },
}

/// What the log needs to know about an event of a domain module.
pub trait DomainEvent: Sized {
    /// The event type name, e.g. `ConsentGiven`.
    fn event_type(&self) -> &'static str;
    /// The version of the event type's `data` shape; the envelope's `schema_version`.
    fn schema_version(&self) -> u32 {
        1
    }
    /// The stream the event belongs to.
    fn stream_id(&self) -> StreamId;
    /// The effective instant; it becomes the envelope's `occurred_at`.
    fn occurred_at(&self) -> DateTime<Utc>;
    /// Where the event is routed, as far as the event itself knows; what it leaves open
    /// the command's metadata may fill in.
    fn routing(&self) -> Routing {
        Routing::default()
    }
    /// The data subject whose key seals the event's personal part, if the event concerns
    /// one. An event with a personal part must name its subject.
    fn data_subject(&self) -> Option<SubjectId>;
    /// Whether events of this type carry a personal part.
    fn carries_personal_data(event_type: &str) -> bool;
    fn to_parts(&self) -> Result<EventParts, PartsError>;
    /// Rebuilds an event; `personal` is `None` when the personal part is unavailable
    /// because the subject was erased, and the event then holds [`Personal::Erased`].
    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError>;
}

/// The event type `name` of an implementation, which must be a valid event type name.
pub fn event_type_of(name: &'static str) -> Result<EventType, PartsError> {
    EventType::parse(name).map_err(|_| PartsError::UnknownEventType(name.to_owned()))
}

/// Serializes the non-personal members of an event.
pub fn data_of<T: Serialize>(event_type: &'static str, data: &T) -> Result<Value, PartsError> {
    serde_json::to_value(data).map_err(|e| PartsError::Data {
        event_type,
        message: e.to_string(),
    })
}

/// Parses the non-personal members of an event.
pub fn parse_data<T: DeserializeOwned>(
    event_type: &'static str,
    data: &Value,
) -> Result<T, PartsError> {
    T::deserialize(data).map_err(|e| PartsError::Data {
        event_type,
        message: e.to_string(),
    })
}

/// Serializes a personal part; erased data cannot be written.
pub fn personal_of<T: Serialize>(
    event_type: &'static str,
    personal: &Personal<T>,
) -> Result<Value, PartsError> {
    match personal {
        Personal::Available(value) => {
            serde_json::to_value(value).map_err(|_| PartsError::Personal { event_type })
        }
        Personal::Erased => Err(PartsError::Erased { event_type }),
    }
}

/// Parses a personal part, or marks it erased when it is unavailable. The error never
/// quotes the value, since it is personal data.
pub fn parse_personal<T: DeserializeOwned>(
    event_type: &'static str,
    personal: Option<&Value>,
) -> Result<Personal<T>, PartsError> {
    match personal {
        Some(value) => T::deserialize(value)
            .map(Personal::Available)
            .map_err(|_| PartsError::Personal { event_type }),
        None => Ok(Personal::Erased),
    }
}

/// Refuses a personal part for an event type that has none.
pub fn no_personal(event_type: &'static str, personal: Option<&Value>) -> Result<(), PartsError> {
    match personal {
        None => Ok(()),
        Some(_) => Err(PartsError::UnexpectedPersonal { event_type }),
    }
}

/// The parts of an event of type `name` without personal data.
pub fn plain_parts<T: Serialize>(name: &'static str, data: &T) -> Result<EventParts, PartsError> {
    Ok(EventParts {
        event_type: event_type_of(name)?,
        data: data_of(name, data)?,
        personal: None,
    })
}

/// An event of type `name` without personal data, from its parts.
pub fn plain_from_parts<T: DeserializeOwned>(
    name: &'static str,
    data: &Value,
    personal: Option<&Value>,
) -> Result<T, PartsError> {
    no_personal(name, personal)?;
    parse_data(name, data)
}

/// Implements [`DomainEvent`] for events that carry no personal data, so that no domain
/// writes the same impl again.
///
/// For an enum whose variants each wrap one event struct:
///
/// ```text
/// plain_events!(HoldEvent {
///     id: hold_id, subject: subject: AccountId,
///     Placed(HoldPlaced) = "HoldPlaced", at placed_at;
///     Released(HoldReleased) = "HoldReleased", at released_at;
/// });
/// ```
///
/// Every struct has the field `id` (whose `stream_id()` is the event's stream) and the
/// field `subject` (the data subject, of a type that converts into [`SubjectId`]); each
/// variant names its event type and the field with its effective instant. The enum also
/// gets `subject()`, the subject in the domain's own type. For a single event struct:
///
/// ```text
/// plain_events!(SubjectErased = "SubjectErased", at erased_at,
///     subject: subject: AccountId, stream: |e| erasure_stream(e.subject));
/// ```
macro_rules! plain_events {
    ($enum:ident {
        id: $id:ident, subject: $subject:ident : $subject_ty:ty,
        $($variant:ident($ty:ty) = $name:literal, at $at:ident;)+
    }) => {
        impl $enum {
            /// The data subject the event concerns.
            pub fn subject(&self) -> $subject_ty {
                match self {
                    $(Self::$variant(e) => e.$subject,)+
                }
            }
        }

        impl $crate::event::DomainEvent for $enum {
            fn event_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => $name,)+
                }
            }

            fn stream_id(&self) -> $crate::stream::StreamId {
                match self {
                    $(Self::$variant(e) => e.$id.stream_id(),)+
                }
            }

            fn occurred_at(&self) -> ::chrono::DateTime<::chrono::Utc> {
                match self {
                    $(Self::$variant(e) => e.$at,)+
                }
            }

            fn data_subject(&self) -> Option<$crate::event::SubjectId> {
                Some(self.subject().into())
            }

            fn carries_personal_data(_event_type: &str) -> bool {
                false
            }

            fn to_parts(&self) -> Result<$crate::event::EventParts, $crate::event::PartsError> {
                match self {
                    $(Self::$variant(e) => $crate::event::plain_parts($name, e),)+
                }
            }

            fn from_parts(
                event_type: &$crate::stream::EventType,
                data: &::serde_json::Value,
                personal: Option<&::serde_json::Value>,
            ) -> Result<Self, $crate::event::PartsError> {
                $(
                    if event_type.as_str() == $name {
                        return $crate::event::plain_from_parts($name, data, personal)
                            .map(Self::$variant);
                    }
                )+
                Err($crate::event::PartsError::UnknownEventType(
                    event_type.as_str().to_owned(),
                ))
            }
        }
    };
    ($ty:ty = $name:literal, at $at:ident, subject: $subject:ident : $subject_ty:ty,
     stream: |$e:ident| $stream:expr) => {
        impl $crate::event::DomainEvent for $ty {
            fn event_type(&self) -> &'static str {
                $name
            }

            fn stream_id(&self) -> $crate::stream::StreamId {
                let $e = self;
                $stream
            }

            fn occurred_at(&self) -> ::chrono::DateTime<::chrono::Utc> {
                self.$at
            }

            fn data_subject(&self) -> Option<$crate::event::SubjectId> {
                let subject: $subject_ty = self.$subject;
                Some(subject.into())
            }

            fn carries_personal_data(_event_type: &str) -> bool {
                false
            }

            fn to_parts(&self) -> Result<$crate::event::EventParts, $crate::event::PartsError> {
                $crate::event::plain_parts($name, self)
            }

            fn from_parts(
                event_type: &$crate::stream::EventType,
                data: &::serde_json::Value,
                personal: Option<&::serde_json::Value>,
            ) -> Result<Self, $crate::event::PartsError> {
                if event_type.as_str() != $name {
                    return Err($crate::event::PartsError::UnknownEventType(
                        event_type.as_str().to_owned(),
                    ));
                }
                $crate::event::plain_from_parts($name, data, personal)
            }
        }
    };
}
pub(crate) use plain_events;

/// Why an event could not be put into, or read from, a log envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(transparent)]
    Parts(#[from] PartsError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("{0} carries personal data but no data key was given to seal it")]
    KeyRequired(&'static str),
    #[error("{0} carries personal data but names no data subject whose key would seal it")]
    NoSubject(&'static str),
    #[error("event type {0:?} carries personal data but the record has no sealed section")]
    MissingSealedSection(String),
    #[error("event type {0:?} carries no personal data but the record has a sealed section")]
    UnexpectedSealedSection(String),
    #[error("the record is in stream {found}, but its event belongs to {expected}")]
    StreamMismatch { expected: String, found: String },
    #[error("the sealed section names subject {found:?}, but the event's subject is {expected}")]
    SubjectMismatch { expected: String, found: String },
}

/// The data key to seal an event's personal part with: version `key_id` of the subject's
/// key.
#[derive(Debug, Clone, Copy)]
pub struct Sealing<'a> {
    pub key_id: &'a KeyId,
    pub key: &'a DataKey,
}

/// An event ready to append: the stream it goes to and the envelope content.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub stream_id: StreamId,
    pub event: NewEvent,
}

/// Puts an event into a log envelope, sealing its personal part (if any) under the
/// subject's key for exactly this event id, stream and type. `occurred_at` is the event's
/// effective instant, and the routing is the event's own. Actor and correlation are left
/// for the caller.
pub fn encode<E: DomainEvent>(
    event: &E,
    event_id: Uuid,
    sealing: Option<Sealing<'_>>,
    rng: &dyn SecureRandom,
) -> Result<Encoded, EnvelopeError> {
    let parts = event.to_parts()?;
    let stream_id = event.stream_id();
    let sealed = match (parts.personal, sealing) {
        (None, _) => None,
        (Some(_), None) => return Err(EnvelopeError::KeyRequired(event.event_type())),
        (Some(personal), Some(sealing)) => {
            let subject = event
                .data_subject()
                .ok_or(EnvelopeError::NoSubject(event.event_type()))?;
            let envelope = Envelope {
                event_id,
                stream_id: &stream_id,
                event_type: &parts.event_type,
            };
            Some(seal::seal_random(
                &personal,
                sealing.key,
                sealing.key_id,
                &subject.to_string(),
                &envelope,
                rng,
            )?)
        }
    };
    let routing = event.routing();
    Ok(Encoded {
        stream_id,
        event: NewEvent {
            event_id,
            event_type: parts.event_type,
            schema_version: event.schema_version(),
            data: parts.data,
            tenant: routing.tenant,
            actor: None,
            correlation_id: None,
            causation_id: None,
            authority: routing.authority,
            service: routing.service,
            occurred_at: Some(event.occurred_at()),
            sealed,
        },
    })
}

/// Reads an event back from a stored record. `key` is the subject's data key of the
/// version the sealed section names, or `None` when that key has been destroyed (the
/// subject was erased): the event then holds [`Personal::Erased`].
///
/// Pass `None` only for a destroyed key. A key that exists but does not open the section
/// is an integrity failure and is reported as one, never as erasure.
pub fn decode<E: DomainEvent>(
    record: &EventRecord,
    key: Option<&DataKey>,
) -> Result<E, EnvelopeError> {
    let personal = match (
        &record.sealed,
        E::carries_personal_data(record.event_type.as_str()),
    ) {
        (None, false) => None,
        (None, true) => {
            return Err(EnvelopeError::MissingSealedSection(
                record.event_type.as_str().to_owned(),
            ))
        }
        (Some(_), false) => {
            return Err(EnvelopeError::UnexpectedSealedSection(
                record.event_type.as_str().to_owned(),
            ))
        }
        (Some(_), true) if key.is_none() => None,
        (Some(section), true) => {
            let envelope = Envelope {
                event_id: record.event_id,
                stream_id: &record.stream_id,
                event_type: &record.event_type,
            };
            key.map(|k| seal::open(section, k, &envelope)).transpose()?
        }
    };
    let event = E::from_parts(&record.event_type, &record.data, personal.as_ref())?;
    let expected = event.stream_id();
    if expected != record.stream_id {
        return Err(EnvelopeError::StreamMismatch {
            expected: expected.to_string(),
            found: record.stream_id.to_string(),
        });
    }
    if let Some(section) = &record.sealed {
        let subject = event
            .data_subject()
            .map(|s| s.to_string())
            .unwrap_or_default();
        if section.subject != subject {
            return Err(EnvelopeError::SubjectMismatch {
                expected: subject,
                found: section.subject.chars().take(100).collect(),
            });
        }
    }
    Ok(event)
}

/// Places an encoded event in the log the way the writer does and returns the record,
/// for the envelope tests of every domain.
#[cfg(test)]
pub(crate) fn stored(encoded: Encoded) -> EventRecord {
    use crate::append::{plan_batch, AppendRequest, BatchContext};
    let mut ctx = BatchContext {
        head_position: 0,
        head_chain: crate::GENESIS_CHAIN,
        versions: std::collections::HashMap::new(),
        existing: std::collections::HashMap::new(),
        recorded_at: DateTime::parse_from_rfc3339("2026-03-01T10:00:01Z")
            .expect("instant")
            .with_timezone(&Utc),
    };
    let request = AppendRequest {
        stream: encoded.stream_id,
        expected: crate::stream::ExpectedVersion::Any,
        events: vec![encoded.event],
    };
    let (plans, rows) = plan_batch(&mut ctx, &[request]);
    assert!(plans[0].is_ok(), "{:?}", plans[0]);
    rows.into_iter().next().expect("one row").record
}

#[cfg(test)]
mod tests {
    //! The envelope with a small domain of its own: a note whose text is personal data,
    //! routed to an authority. The GDPR events' own envelope tests are in their domain's
    //! folder.

    use super::*;
    use ring::rand::SystemRandom;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Noted {
        note: Uuid,
        subject: SubjectId,
        #[serde(skip)]
        text: Personal<String>,
    }

    #[derive(Serialize, Deserialize)]
    struct TextPart {
        text: String,
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-03-01T10:00:00Z")
            .expect("instant")
            .with_timezone(&Utc)
    }

    impl DomainEvent for Noted {
        fn event_type(&self) -> &'static str {
            "Noted"
        }
        fn schema_version(&self) -> u32 {
            2
        }
        fn stream_id(&self) -> StreamId {
            crate::newtype::stream_of("note", self.note)
        }
        fn occurred_at(&self) -> DateTime<Utc> {
            at()
        }
        fn routing(&self) -> Routing {
            Routing {
                authority: AuthorityId::parse("lra-meissen").ok(),
                ..Routing::default()
            }
        }
        fn data_subject(&self) -> Option<SubjectId> {
            Some(self.subject)
        }
        fn carries_personal_data(_event_type: &str) -> bool {
            true
        }
        fn to_parts(&self) -> Result<EventParts, PartsError> {
            let part = self.text.clone().map(|text| TextPart { text });
            Ok(EventParts {
                event_type: event_type_of("Noted")?,
                data: data_of("Noted", self)?,
                personal: Some(personal_of("Noted", &part)?),
            })
        }
        fn from_parts(
            _event_type: &EventType,
            data: &Value,
            personal: Option<&Value>,
        ) -> Result<Self, PartsError> {
            let mut e: Noted = parse_data("Noted", data)?;
            e.text = parse_personal::<TextPart>("Noted", personal)?.map(|p| p.text);
            Ok(e)
        }
    }

    fn noted() -> Noted {
        Noted {
            note: Uuid::from_u128(1),
            subject: SubjectId(Uuid::from_u128(2)),
            text: Personal::Available("Erika Mustermann".into()),
        }
    }

    #[test]
    fn the_envelope_carries_routing_version_and_the_sealed_subject() {
        let key = DataKey::from_bytes([4; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        let encoded = encode(
            &noted(),
            Uuid::from_u128(9),
            Some(sealing),
            &SystemRandom::new(),
        )
        .expect("encode");
        assert_eq!(encoded.event.schema_version, 2);
        assert_eq!(
            encoded.event.authority.as_ref().map(AuthorityId::as_str),
            Some("lra-meissen")
        );
        assert_eq!(encoded.event.service, None);
        let record = stored(encoded);
        let bytes = String::from_utf8(record.to_bytes().expect("bytes")).expect("utf8");
        assert!(!bytes.contains("Mustermann"), "{bytes}");
        assert_eq!(
            record.sealed.as_ref().map(|s| s.subject.as_str()),
            Some("00000000-0000-0000-0000-000000000002")
        );
        assert_eq!(decode::<Noted>(&record, Some(&key)), Ok(noted()));
        let mut erased = noted();
        erased.text = Personal::Erased;
        assert_eq!(decode::<Noted>(&record, None), Ok(erased));
    }

    #[test]
    fn routing_fills_only_what_the_event_leaves_open() {
        let event = Routing {
            authority: AuthorityId::parse("lra-meissen").ok(),
            service: None,
            tenant: None,
        };
        let meta = Routing {
            authority: AuthorityId::parse("lra-bautzen").ok(),
            service: ServiceKey::parse("99108001000000").ok(),
            tenant: Some("14627010".into()),
        };
        let both = event.or(&meta);
        assert_eq!(both.authority, AuthorityId::parse("lra-meissen").ok());
        assert_eq!(both.service, meta.service);
        assert_eq!(both.tenant, meta.tenant);
    }
}
