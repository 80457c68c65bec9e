//! Events (Veranstaltungen) and appointment slots: a gathering with a capacity, and the
//! registrations for it.
//!
//! Never more registrations are confirmed than the capacity. That is a consequence of the
//! stream, not of a lock: every registration of a gathering is decided against the
//! gathering's whole state and appended with the stream's version as the expected
//! version, so two API nodes that decide on the same state cannot both append — the
//! second is decided again on the new state. An event keeps a waiting list; when a
//! confirmed registration is cancelled, the first on the list moves up in the same
//! append. An appointment slot has no waiting list: a full slot refuses.
//!
//! The registrant's contact data is personal data, sealed under the registrant's key.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::{events, Shape};
use super::{instant, GatheringId, ParticipantId, ProcedureId, Pseudonym, RegistrationId, Title};
use crate::decider::decider;
use crate::event::{parse_personal, personal_of, PartsError, Personal, SubjectId};
use crate::newtype::text;
use crate::record::timestamp;

/// The largest capacity of a gathering. Every registration is decided on the gathering's
/// whole stream, so the stream is kept small: a hall's worth of places ...
pub const MAX_CAPACITY: u32 = 2_000;

/// ... and at most this many on an event's waiting list; once it is full, a registration
/// is refused like one for a full slot.
pub const MAX_WAITING: usize = 500;

text!(
    /// A registrant's e-mail address or telephone number. Personal data: only sealed.
    Contact,
    "contact",
    254
);

/// How the organiser reaches a registrant: personal data, sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registrant {
    pub name: Pseudonym,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Contact>,
}

/// What kind of gathering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatheringKind {
    /// An event with a waiting list.
    Event,
    /// An appointment slot; full means full.
    Slot,
}

/// Where a registration stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Confirmed,
    Waiting,
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatheringCommand {
    Schedule {
        gathering_id: GatheringId,
        procedure_id: ProcedureId,
        kind: GatheringKind,
        title: Title,
        starts_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        capacity: u32,
        at: DateTime<Utc>,
    },
    Register {
        registration_id: RegistrationId,
        registrant: ParticipantId,
        data: Registrant,
        at: DateTime<Utc>,
    },
    /// Cancel a registration; `by` must be its registrant.
    Cancel {
        registration_id: RegistrationId,
        by: ParticipantId,
        at: DateTime<Utc>,
    },
}

/// `GatheringScheduled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatheringScheduled {
    pub gathering_id: GatheringId,
    pub procedure_id: ProcedureId,
    pub kind: GatheringKind,
    pub title: Title,
    #[serde(with = "timestamp")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub ends_at: DateTime<Utc>,
    pub capacity: u32,
    #[serde(with = "timestamp")]
    pub scheduled_at: DateTime<Utc>,
}

/// `RegistrationReceived`: confirmed or waiting; the registrant's data sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationReceived {
    pub gathering_id: GatheringId,
    pub registration_id: RegistrationId,
    pub registrant: ParticipantId,
    pub place: Place,
    #[serde(with = "timestamp")]
    pub registered_at: DateTime<Utc>,
    #[serde(skip)]
    pub data: Personal<Registrant>,
}

/// `RegistrationCancelled`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationCancelled {
    pub gathering_id: GatheringId,
    pub registration_id: RegistrationId,
    pub registrant: ParticipantId,
    #[serde(with = "timestamp")]
    pub cancelled_at: DateTime<Utc>,
}

/// `RegistrationConfirmed`: moved up from the waiting list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfirmed {
    pub gathering_id: GatheringId,
    pub registration_id: RegistrationId,
    pub registrant: ParticipantId,
    #[serde(with = "timestamp")]
    pub confirmed_at: DateTime<Utc>,
}

impl Shape for GatheringScheduled {
    const NAME: &'static str = "GatheringScheduled";
    fn at(&self) -> DateTime<Utc> {
        self.scheduled_at
    }
}

impl Shape for RegistrationReceived {
    const NAME: &'static str = "RegistrationReceived";
    const PERSONAL: bool = true;
    fn at(&self) -> DateTime<Utc> {
        self.registered_at
    }
    fn subject(&self) -> Option<SubjectId> {
        Some(self.registrant.into())
    }
    fn personal(&self) -> Result<Option<Value>, PartsError> {
        personal_of(Self::NAME, &self.data).map(Some)
    }
    fn with_personal(mut self, personal: Option<&Value>) -> Result<Self, PartsError> {
        self.data = parse_personal(Self::NAME, personal)?;
        Ok(self)
    }
}

impl Shape for RegistrationCancelled {
    const NAME: &'static str = "RegistrationCancelled";
    fn at(&self) -> DateTime<Utc> {
        self.cancelled_at
    }
    fn subject(&self) -> Option<SubjectId> {
        Some(self.registrant.into())
    }
}

impl Shape for RegistrationConfirmed {
    const NAME: &'static str = "RegistrationConfirmed";
    fn at(&self) -> DateTime<Utc> {
        self.confirmed_at
    }
    fn subject(&self) -> Option<SubjectId> {
        Some(self.registrant.into())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum GatheringEvent {
    Scheduled(GatheringScheduled),
    Registered(RegistrationReceived),
    Cancelled(RegistrationCancelled),
    Confirmed(RegistrationConfirmed),
}

events!(
    GatheringEvent,
    gathering_id,
    [
        Scheduled(GatheringScheduled),
        Registered(RegistrationReceived),
        Cancelled(RegistrationCancelled),
        Confirmed(RegistrationConfirmed),
    ]
);

/// A live registration.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    pub id: RegistrationId,
    pub registrant: ParticipantId,
    pub place: Place,
}

/// A scheduled gathering and its live registrations, in the order they came.
#[derive(Debug, Clone, PartialEq)]
pub struct Gathering {
    pub id: GatheringId,
    pub procedure_id: ProcedureId,
    pub kind: GatheringKind,
    pub title: Title,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub capacity: u32,
    pub registrations: Vec<Registration>,
    /// Every registration id ever used, so that a cancelled one is not reused.
    pub used: Vec<RegistrationId>,
}

impl Gathering {
    pub fn confirmed(&self) -> usize {
        self.registrations
            .iter()
            .filter(|r| r.place == Place::Confirmed)
            .count()
    }

    pub fn waiting(&self) -> usize {
        self.registrations.len() - self.confirmed()
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum GatheringState {
    #[default]
    None,
    Scheduled(Box<Gathering>),
}

impl GatheringState {
    pub fn gathering(&self) -> Option<&Gathering> {
        match self {
            Self::None => None,
            Self::Scheduled(g) => Some(g),
        }
    }
}

/// Why a gathering command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatheringError {
    #[error("this gathering has already been scheduled")]
    AlreadyScheduled,
    #[error("no gathering has been scheduled under this id")]
    NotScheduled,
    #[error("a gathering ends after it starts, and starts after it is scheduled")]
    Period,
    #[error("a capacity is 1 to {MAX_CAPACITY}")]
    Capacity,
    #[error("registration closed when the gathering started")]
    Started,
    #[error("this participant is already registered")]
    AlreadyRegistered,
    #[error("this registration id has been used")]
    RegistrationExists,
    #[error("the appointment slot is fully booked")]
    Full,
    #[error("the event and its waiting list ({MAX_WAITING} places) are fully booked")]
    WaitingListFull,
    #[error("no such registration")]
    NoRegistration,
    #[error("only its registrant cancels a registration")]
    NotTheRegistrant,
}

/// Decides a gathering command.
pub fn decide(
    command: &GatheringCommand,
    state: &GatheringState,
) -> Result<Vec<GatheringEvent>, GatheringError> {
    use GatheringCommand as C;
    use GatheringError as E;
    let g = match (command, state) {
        (
            C::Schedule {
                gathering_id,
                procedure_id,
                kind,
                title,
                starts_at,
                ends_at,
                capacity,
                at,
            },
            GatheringState::None,
        ) => {
            let (at, starts_at, ends_at) = (instant(*at), instant(*starts_at), instant(*ends_at));
            if ends_at <= starts_at || starts_at < at {
                return Err(E::Period);
            }
            if !(1..=MAX_CAPACITY).contains(capacity) {
                return Err(E::Capacity);
            }
            return Ok(vec![GatheringEvent::Scheduled(GatheringScheduled {
                gathering_id: *gathering_id,
                procedure_id: *procedure_id,
                kind: *kind,
                title: title.clone(),
                starts_at,
                ends_at,
                capacity: *capacity,
                scheduled_at: at,
            })]);
        }
        (C::Schedule { .. }, GatheringState::Scheduled(_)) => return Err(E::AlreadyScheduled),
        (_, GatheringState::None) => return Err(E::NotScheduled),
        (_, GatheringState::Scheduled(g)) => g,
    };
    match command {
        C::Schedule { .. } => Err(E::AlreadyScheduled),
        C::Register {
            registration_id,
            registrant,
            data,
            at,
        } => {
            let at = instant(*at);
            if g.used.contains(registration_id) {
                return Err(E::RegistrationExists);
            }
            if g.registrations.iter().any(|r| r.registrant == *registrant) {
                return Err(E::AlreadyRegistered);
            }
            if at >= g.starts_at {
                return Err(E::Started);
            }
            let free = g.confirmed() < g.capacity as usize;
            let place = match (free, g.kind) {
                (true, _) => Place::Confirmed,
                (false, GatheringKind::Event) if g.waiting() < MAX_WAITING => Place::Waiting,
                (false, GatheringKind::Event) => return Err(E::WaitingListFull),
                (false, GatheringKind::Slot) => return Err(E::Full),
            };
            Ok(vec![GatheringEvent::Registered(RegistrationReceived {
                gathering_id: g.id,
                registration_id: *registration_id,
                registrant: *registrant,
                place,
                registered_at: at,
                data: Personal::Available(data.clone()),
            })])
        }
        C::Cancel {
            registration_id,
            by,
            at,
        } => {
            let Some(registration) = g.registrations.iter().find(|r| r.id == *registration_id)
            else {
                return if g.used.contains(registration_id) {
                    Ok(vec![])
                } else {
                    Err(E::NoRegistration)
                };
            };
            if registration.registrant != *by {
                return Err(E::NotTheRegistrant);
            }
            let at = instant(*at);
            let mut events = vec![GatheringEvent::Cancelled(RegistrationCancelled {
                gathering_id: g.id,
                registration_id: *registration_id,
                registrant: registration.registrant,
                cancelled_at: at,
            })];
            if registration.place == Place::Confirmed {
                if let Some(next) = g.registrations.iter().find(|r| r.place == Place::Waiting) {
                    events.push(GatheringEvent::Confirmed(RegistrationConfirmed {
                        gathering_id: g.id,
                        registration_id: next.id,
                        registrant: next.registrant,
                        confirmed_at: at,
                    }));
                }
            }
            Ok(events)
        }
    }
}

/// Applies an event; combinations `decide` never produces leave the state as it is.
pub fn evolve(state: GatheringState, event: &GatheringEvent) -> GatheringState {
    match (state, event) {
        (GatheringState::None, GatheringEvent::Scheduled(e)) => {
            GatheringState::Scheduled(Box::new(Gathering {
                id: e.gathering_id,
                procedure_id: e.procedure_id,
                kind: e.kind,
                title: e.title.clone(),
                starts_at: e.starts_at,
                ends_at: e.ends_at,
                capacity: e.capacity,
                registrations: Vec::new(),
                used: Vec::new(),
            }))
        }
        (GatheringState::Scheduled(mut g), event) => {
            match event {
                GatheringEvent::Scheduled(_) => {}
                GatheringEvent::Registered(e) => {
                    g.used.push(e.registration_id);
                    g.registrations.push(Registration {
                        id: e.registration_id,
                        registrant: e.registrant,
                        place: e.place,
                    });
                }
                GatheringEvent::Cancelled(e) => {
                    g.registrations.retain(|r| r.id != e.registration_id);
                }
                GatheringEvent::Confirmed(e) => {
                    if let Some(r) = g
                        .registrations
                        .iter_mut()
                        .find(|r| r.id == e.registration_id)
                    {
                        r.place = Place::Confirmed;
                    }
                }
            }
            GatheringState::Scheduled(g)
        }
        (state, _) => state,
    }
}

decider!(GatheringState: GatheringCommand => GatheringEvent, GatheringError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{decode, encode, stored, DomainEvent, Sealing};
    use crate::participation::testing::*;
    use crate::seal::{DataKey, KeyId};
    use ring::rand::SystemRandom;

    const T0: &str = "2026-05-01T09:00:00Z";
    const STARTS: &str = "2026-06-10T18:00:00Z";

    fn gathering_id() -> GatheringId {
        GatheringId(uuid(0x30))
    }

    fn person(n: u128) -> ParticipantId {
        ParticipantId(uuid(0xc00 + n))
    }

    fn registration(n: u128) -> RegistrationId {
        RegistrationId(uuid(0xd00 + n))
    }

    fn data() -> Registrant {
        Registrant {
            name: Pseudonym::parse("Erika Mustermann").expect("name"),
            contact: Some(Contact::parse("erika@example.org").expect("contact")),
        }
    }

    fn scheduled(kind: GatheringKind, capacity: u32) -> GatheringEvent {
        GatheringEvent::Scheduled(GatheringScheduled {
            gathering_id: gathering_id(),
            procedure_id: ProcedureId(uuid(0x10)),
            kind,
            title: Title::parse("Seminar Bürgerbeteiligung (begrenzt auf 18 Teilnehmende)")
                .expect("title"),
            starts_at: at(STARTS),
            ends_at: at(STARTS) + chrono::Duration::hours(3),
            capacity,
            scheduled_at: at(T0),
        })
    }

    fn register(n: u128) -> GatheringCommand {
        GatheringCommand::Register {
            registration_id: registration(n),
            registrant: person(n),
            data: data(),
            at: at(T0),
        }
    }

    fn received(n: u128, place: Place) -> GatheringEvent {
        GatheringEvent::Registered(RegistrationReceived {
            gathering_id: gathering_id(),
            registration_id: registration(n),
            registrant: person(n),
            place,
            registered_at: at(T0),
            data: Personal::Available(data()),
        })
    }

    fn fold(events: &[GatheringEvent]) -> GatheringState {
        events.iter().fold(GatheringState::None, evolve)
    }

    /// Registers `n` participants one after another, each decided on the state the
    /// previous ones left, as the command path does.
    fn run(
        kind: GatheringKind,
        capacity: u32,
        n: u128,
    ) -> (Vec<GatheringEvent>, Vec<GatheringError>) {
        let mut events = vec![scheduled(kind, capacity)];
        let mut refused = vec![];
        for i in 0..n {
            match decide(&register(i), &fold(&events)) {
                Ok(new) => events.extend(new),
                Err(e) => refused.push(e),
            }
        }
        (events, refused)
    }

    #[test]
    fn scheduling_checks_period_and_capacity() {
        let schedule = |starts: &str, hours: i64, capacity| GatheringCommand::Schedule {
            gathering_id: gathering_id(),
            procedure_id: ProcedureId(uuid(0x10)),
            kind: GatheringKind::Event,
            title: Title::parse("Seminar Bürgerbeteiligung (begrenzt auf 18 Teilnehmende)")
                .expect("title"),
            starts_at: at(starts),
            ends_at: at(starts) + chrono::Duration::hours(hours),
            capacity,
            at: at(T0),
        };
        assert_eq!(
            decide(&schedule(STARTS, 3, 18), &GatheringState::None),
            Ok(vec![scheduled(GatheringKind::Event, 18)])
        );
        assert_eq!(
            decide(&schedule(STARTS, 0, 18), &GatheringState::None),
            Err(GatheringError::Period)
        );
        assert_eq!(
            decide(
                &schedule("2026-04-01T00:00:00Z", 3, 18),
                &GatheringState::None
            ),
            Err(GatheringError::Period)
        );
        assert_eq!(
            decide(&schedule(STARTS, 3, 0), &GatheringState::None),
            Err(GatheringError::Capacity)
        );
        assert_eq!(
            decide(
                &schedule(STARTS, 3, MAX_CAPACITY + 1),
                &GatheringState::None
            ),
            Err(GatheringError::Capacity)
        );
        assert_eq!(
            decide(
                &schedule(STARTS, 3, 18),
                &fold(&[scheduled(GatheringKind::Event, 18)])
            ),
            Err(GatheringError::AlreadyScheduled)
        );
        assert_eq!(
            decide(&register(1), &GatheringState::None),
            Err(GatheringError::NotScheduled)
        );
    }

    /// An event's waiting list is bounded: once it holds `MAX_WAITING`, further
    /// registrations are refused and nothing is recorded for them.
    #[test]
    fn the_waiting_list_is_bounded() {
        let (events, refused) = run(GatheringKind::Event, 2, 2 + MAX_WAITING as u128 + 3);
        assert_eq!(refused, vec![GatheringError::WaitingListFull; 3]);
        let state = fold(&events);
        let g = state.gathering().expect("scheduled");
        assert_eq!((g.confirmed(), g.waiting()), (2, MAX_WAITING));
    }

    /// B6 (the rule): 50 registrations for 18 places: 18 confirmed, 32 waiting; a
    /// cancellation confirms the first waiting.
    #[test]
    fn never_more_confirmed_than_the_capacity() {
        let (events, refused) = run(GatheringKind::Event, 18, 50);
        assert!(refused.is_empty());
        let state = fold(&events);
        let g = state.gathering().expect("scheduled");
        assert_eq!((g.confirmed(), g.waiting()), (18, 32));
        assert_eq!(events[18], received(17, Place::Confirmed));
        assert_eq!(events[19], received(18, Place::Waiting));

        let cancel = GatheringCommand::Cancel {
            registration_id: registration(3),
            by: person(3),
            at: at(T0),
        };
        let moved = decide(&cancel, &state).expect("cancelled");
        assert_eq!(
            moved,
            vec![
                GatheringEvent::Cancelled(RegistrationCancelled {
                    gathering_id: gathering_id(),
                    registration_id: registration(3),
                    registrant: person(3),
                    cancelled_at: at(T0)
                }),
                GatheringEvent::Confirmed(RegistrationConfirmed {
                    gathering_id: gathering_id(),
                    registration_id: registration(18),
                    registrant: person(18),
                    confirmed_at: at(T0)
                }),
            ]
        );
        let mut after = events.clone();
        after.extend(moved);
        let state = fold(&after);
        let g = state.gathering().expect("scheduled");
        assert_eq!((g.confirmed(), g.waiting()), (18, 31));
        // Cancelling again changes nothing; a waiting registration's cancellation moves nobody.
        assert_eq!(decide(&cancel, &state), Ok(vec![]));
        let waiting = GatheringCommand::Cancel {
            registration_id: registration(40),
            by: person(40),
            at: at(T0),
        };
        assert_eq!(decide(&waiting, &state).map(|e| e.len()), Ok(1));
    }

    #[test]
    fn registrations_are_one_per_participant_until_the_start() {
        let given = fold(&[
            scheduled(GatheringKind::Event, 18),
            received(1, Place::Confirmed),
        ]);
        assert_eq!(
            decide(&register(1), &given),
            Err(GatheringError::RegistrationExists)
        );
        let again = GatheringCommand::Register {
            registration_id: registration(2),
            registrant: person(1),
            data: data(),
            at: at(T0),
        };
        assert_eq!(
            decide(&again, &given),
            Err(GatheringError::AlreadyRegistered)
        );
        let late = GatheringCommand::Register {
            registration_id: registration(2),
            registrant: person(2),
            data: data(),
            at: at(STARTS),
        };
        assert_eq!(decide(&late, &given), Err(GatheringError::Started));
        let foreign = GatheringCommand::Cancel {
            registration_id: registration(1),
            by: person(2),
            at: at(T0),
        };
        assert_eq!(
            decide(&foreign, &given),
            Err(GatheringError::NotTheRegistrant)
        );
        let unknown = GatheringCommand::Cancel {
            registration_id: registration(9),
            by: person(9),
            at: at(T0),
        };
        assert_eq!(
            decide(&unknown, &given),
            Err(GatheringError::NoRegistration)
        );
    }

    #[test]
    fn a_full_slot_refuses() {
        let (events, refused) = run(GatheringKind::Slot, 2, 3);
        assert_eq!(refused, vec![GatheringError::Full]);
        assert_eq!(fold(&events).gathering().map(Gathering::confirmed), Some(2));
    }

    #[test]
    fn the_registrant_is_sealed() {
        let key = DataKey::from_bytes([9; 32]);
        let key_id = KeyId::parse("k1").expect("key id");
        let record = stored(
            encode(
                &received(1, Place::Confirmed),
                uuid(0x98),
                Some(Sealing {
                    key_id: &key_id,
                    key: &key,
                }),
                &SystemRandom::new(),
            )
            .expect("encode"),
        );
        let bytes = String::from_utf8(record.to_bytes().expect("bytes")).expect("utf8");
        assert!(
            !bytes.contains("Mustermann") && !bytes.contains("example.org"),
            "{bytes}"
        );
        assert_eq!(
            decode::<GatheringEvent>(&record, Some(&key)),
            Ok(received(1, Place::Confirmed))
        );
        let GatheringEvent::Registered(mut erased) = received(1, Place::Confirmed) else {
            unreachable!()
        };
        erased.data = Personal::Erased;
        assert_eq!(
            decode::<GatheringEvent>(&record, None),
            Ok(GatheringEvent::Registered(erased))
        );
        snapshot(
            &received(1, Place::Waiting),
            "RegistrationReceived",
            r#"{"gathering_id":"0193a1b2-0000-7000-8000-000000000030","place":"waiting","registered_at":"2026-05-01T09:00:00.000000Z","registrant":"0193a1b2-0000-7000-8000-000000000c01","registration_id":"0193a1b2-0000-7000-8000-000000000d01"}"#,
            Some(r#"{"contact":"erika@example.org","name":"Erika Mustermann"}"#),
        );
        assert_eq!(
            received(1, Place::Waiting).stream_id(),
            gathering_id().stream_id()
        );
    }
}
