//! Retention holds, which forbid erasing a subject, and the record that a subject was
//! erased.
//!
//! Art. 17 (3) (b) GDPR lets a legal obligation override the right to erasure. For the base
//! components those obligations are the retention periods of municipal cash and accounting
//! records (KomKVO: cash books ten years, vouchers six years) and procedures that are still
//! open. The service places a hold when such a duty starts — a payment is booked, a
//! procedure opens — and releases it when the duty ends early; a hold also ends by itself
//! at its `until` instant. While any hold of a subject is active, the subject is not
//! erased. Each hold is its own stream, `retention-<uuid>`.
//!
//! Erasure itself is crypto-shredding: the service destroys the subject's data keys and
//! then appends [`SubjectErased`] to the stream `erasure-<account uuid>`, naming the key
//! versions it destroyed, so that the log records when the personal data became
//! unreadable. No event here carries personal data.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{instant, AccountId};
use crate::decider::decider;
use crate::event::plain_events;
use crate::newtype::{id_of_stream, stream_of, uuid_id};
use crate::record::timestamp;
use crate::seal::KeyId;
use crate::stream::StreamId;

uuid_id!(
    /// One retention hold; each is its own stream `retention-<uuid>`.
    HoldId,
    stream = "retention"
);

/// The category of the streams that record erasures, one per subject.
pub const ERASURE_CATEGORY: &str = "erasure";

/// The stream `erasure-<account uuid>` that records the erasure of `subject`.
pub fn erasure_stream(subject: AccountId) -> StreamId {
    stream_of(ERASURE_CATEGORY, subject.0)
}

/// The subject whose erasure stream this is.
pub fn subject_of_erasure_stream(stream: &StreamId) -> Option<AccountId> {
    id_of_stream(ERASURE_CATEGORY, stream).map(AccountId)
}

/// Why a subject's data must be kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldReason {
    /// An entry in a cash book (Kassenbuch): kept ten years under the KomKVO.
    CashBook,
    /// An accounting voucher (Buchungsbeleg, e.g. a payment's receipt): kept six years.
    Voucher,
    /// A procedure the subject takes part in is still open.
    OpenProcedure,
}

impl HoldReason {
    /// The statutory retention period in years, where the reason has a fixed one. The
    /// service computes `until` from it (the period runs from the end of the budget year
    /// of the record); an open procedure has no fixed period and is released when it ends.
    pub fn statutory_years(self) -> Option<u32> {
        match self {
            Self::CashBook => Some(10),
            Self::Voucher => Some(6),
            Self::OpenProcedure => None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------------------

/// Place a hold on a subject's data.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceHold {
    pub hold_id: HoldId,
    pub subject: AccountId,
    pub reason: HoldReason,
    /// The stream whose record the duty attaches to (the payment, the procedure).
    pub source: StreamId,
    pub placed_at: DateTime<Utc>,
    /// The end of the duty: the hold is active for `placed_at ≤ t < until`.
    pub until: DateTime<Utc>,
}

/// End a hold before its `until` (the procedure closed, the payment was cancelled).
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseHold {
    pub released_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HoldCommand {
    Place(PlaceHold),
    Release(ReleaseHold),
}

// ---------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------

/// `RetentionHoldPlaced`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionHoldPlaced {
    pub hold_id: HoldId,
    pub subject: AccountId,
    pub reason: HoldReason,
    pub source: StreamId,
    #[serde(with = "timestamp")]
    pub placed_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub until: DateTime<Utc>,
}

/// `RetentionHoldReleased`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionHoldReleased {
    pub hold_id: HoldId,
    pub subject: AccountId,
    #[serde(with = "timestamp")]
    pub released_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RetentionEvent {
    Placed(RetentionHoldPlaced),
    Released(RetentionHoldReleased),
}

plain_events!(RetentionEvent {
    id: hold_id, subject: subject: AccountId,
    Placed(RetentionHoldPlaced) = "RetentionHoldPlaced", at placed_at;
    Released(RetentionHoldReleased) = "RetentionHoldReleased", at released_at;
});

impl RetentionEvent {
    pub fn hold_id(&self) -> HoldId {
        match self {
            Self::Placed(e) => e.hold_id,
            Self::Released(e) => e.hold_id,
        }
    }
}

/// `SubjectErased`: the subject's data keys `key_ids` were destroyed at `erased_at`, so
/// every sealed section of the subject is unreadable from then on. Appended by the service
/// after the keys are gone, to the stream `erasure-<account uuid>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectErased {
    pub subject: AccountId,
    #[serde(with = "timestamp")]
    pub erased_at: DateTime<Utc>,
    /// The versions of the subject's data key that were destroyed.
    pub key_ids: Vec<KeyId>,
}

plain_events!(SubjectErased = "SubjectErased", at erased_at,
    subject: subject: AccountId, stream: |e| erasure_stream(e.subject));

// ---------------------------------------------------------------------------------------
// State and decider
// ---------------------------------------------------------------------------------------

/// A placed hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub id: HoldId,
    pub subject: AccountId,
    pub reason: HoldReason,
    pub source: StreamId,
    pub placed_at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// The first release; later ones change nothing.
    pub released_at: Option<DateTime<Utc>>,
}

impl Hold {
    /// Whether the hold forbids erasure at `t`: placed by then, not yet at its `until`,
    /// and not released by then. Like consents, a hold's intervals are half-open.
    pub fn is_active_at(&self, t: DateTime<Utc>) -> bool {
        self.placed_at <= t && t < self.until && self.released_at.is_none_or(|r| t < r)
    }
}

/// The state of a hold stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HoldState {
    #[default]
    NotPlaced,
    Placed(Hold),
}

impl HoldState {
    pub fn hold(&self) -> Option<&Hold> {
        match self {
            Self::NotPlaced => None,
            Self::Placed(h) => Some(h),
        }
    }
}

/// Why a hold command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    #[error("this hold has already been placed; another hold is another stream")]
    AlreadyPlaced,
    #[error("no hold has been placed")]
    NotPlaced,
    #[error("a hold must end after it is placed")]
    UntilNotAfterPlacing,
    #[error("a hold cannot be released before it was placed")]
    BeforePlacing,
}

/// Decides a hold command. A hold is placed once and must end after it starts; releasing
/// it again records nothing, so a retried release is harmless.
pub fn decide(command: &HoldCommand, state: &HoldState) -> Result<Vec<RetentionEvent>, HoldError> {
    match (command, state) {
        (HoldCommand::Place(c), HoldState::NotPlaced) => {
            let (placed_at, until) = (instant(c.placed_at), instant(c.until));
            if until <= placed_at {
                return Err(HoldError::UntilNotAfterPlacing);
            }
            Ok(vec![RetentionEvent::Placed(RetentionHoldPlaced {
                hold_id: c.hold_id,
                subject: c.subject,
                reason: c.reason,
                source: c.source.clone(),
                placed_at,
                until,
            })])
        }
        (HoldCommand::Place(_), HoldState::Placed(_)) => Err(HoldError::AlreadyPlaced),
        (HoldCommand::Release(_), HoldState::NotPlaced) => Err(HoldError::NotPlaced),
        (HoldCommand::Release(c), HoldState::Placed(hold)) => {
            if hold.released_at.is_some() {
                return Ok(vec![]);
            }
            let released_at = instant(c.released_at);
            if released_at < hold.placed_at {
                return Err(HoldError::BeforePlacing);
            }
            Ok(vec![RetentionEvent::Released(RetentionHoldReleased {
                hold_id: hold.id,
                subject: hold.subject,
                released_at,
            })])
        }
    }
}

/// Applies an event; combinations `decide` never produces (a release before the placing,
/// a second placing) leave the state as it is, and the first release is the one that counts.
pub fn evolve(state: HoldState, event: &RetentionEvent) -> HoldState {
    match (state, event) {
        (HoldState::NotPlaced, RetentionEvent::Placed(e)) => HoldState::Placed(Hold {
            id: e.hold_id,
            subject: e.subject,
            reason: e.reason,
            source: e.source.clone(),
            placed_at: e.placed_at,
            until: e.until,
            released_at: None,
        }),
        (HoldState::Placed(mut hold), RetentionEvent::Released(e)) => {
            hold.released_at.get_or_insert(e.released_at);
            HoldState::Placed(hold)
        }
        (state, _) => state,
    }
}

decider!(HoldState: HoldCommand => RetentionEvent, HoldError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DomainEvent, PartsError};
    use crate::gdpr::testing::*;
    use crate::stream::EventType;

    fn hold_id() -> HoldId {
        HoldId(uuid(0x40))
    }

    fn subject() -> AccountId {
        AccountId(uuid(0xa))
    }

    fn source() -> StreamId {
        StreamId::parse("payment-0193a1b2-0000-7000-8000-000000000050").expect("stream")
    }

    fn place(placed_at: &str, until: &str) -> HoldCommand {
        HoldCommand::Place(PlaceHold {
            hold_id: hold_id(),
            subject: subject(),
            reason: HoldReason::Voucher,
            source: source(),
            placed_at: at(placed_at),
            until: at(until),
        })
    }

    fn placed() -> RetentionEvent {
        RetentionEvent::Placed(RetentionHoldPlaced {
            hold_id: hold_id(),
            subject: subject(),
            reason: HoldReason::Voucher,
            source: source(),
            placed_at: at("2026-03-01T10:00:00Z"),
            until: at("2033-01-01T00:00:00Z"),
        })
    }

    fn released(when: &str) -> RetentionEvent {
        RetentionEvent::Released(RetentionHoldReleased {
            hold_id: hold_id(),
            subject: subject(),
            released_at: at(when),
        })
    }

    fn release(when: &str) -> HoldCommand {
        HoldCommand::Release(ReleaseHold {
            released_at: at(when),
        })
    }

    fn fold(events: &[RetentionEvent]) -> HoldState {
        events.iter().fold(HoldState::NotPlaced, evolve)
    }

    /// Given these events, when this command is decided, then this is the outcome.
    fn check(
        given: &[RetentionEvent],
        when: HoldCommand,
        then: Result<Vec<RetentionEvent>, HoldError>,
    ) {
        assert_eq!(decide(&when, &fold(given)), then);
    }

    #[test]
    fn a_hold_is_placed_once_and_must_end_after_it_starts() {
        check(
            &[],
            place("2026-03-01T10:00:00Z", "2033-01-01T00:00:00Z"),
            Ok(vec![placed()]),
        );
        check(
            &[placed()],
            place("2026-03-01T10:00:00Z", "2033-01-01T00:00:00Z"),
            Err(HoldError::AlreadyPlaced),
        );
        check(
            &[],
            place("2026-03-01T10:00:00Z", "2026-03-01T10:00:00Z"),
            Err(HoldError::UntilNotAfterPlacing),
        );
    }

    #[test]
    fn a_release_counts_once_and_not_before_the_placing() {
        check(
            &[placed()],
            release("2027-01-01T00:00:00Z"),
            Ok(vec![released("2027-01-01T00:00:00Z")]),
        );
        check(
            &[placed(), released("2027-01-01T00:00:00Z")],
            release("2028-01-01T00:00:00Z"),
            Ok(vec![]),
        );
        check(
            &[placed()],
            release("2026-03-01T09:59:59Z"),
            Err(HoldError::BeforePlacing),
        );
        check(
            &[],
            release("2027-01-01T00:00:00Z"),
            Err(HoldError::NotPlaced),
        );
    }

    #[test]
    fn a_hold_is_active_from_its_placing_until_its_end_or_release() {
        let open = fold(&[placed()]);
        let hold = open.hold().expect("placed");
        assert!(!hold.is_active_at(at("2026-03-01T10:00:00Z") - ms(1)));
        assert!(hold.is_active_at(at("2026-03-01T10:00:00Z")));
        assert!(hold.is_active_at(at("2033-01-01T00:00:00Z") - ms(1)));
        assert!(!hold.is_active_at(at("2033-01-01T00:00:00Z")));

        let ended = fold(&[
            placed(),
            released("2027-01-01T00:00:00Z"),
            released("2028-01-01T00:00:00Z"),
        ]);
        let hold = ended.hold().expect("placed");
        assert_eq!(hold.released_at, Some(at("2027-01-01T00:00:00Z")));
        assert!(hold.is_active_at(at("2027-01-01T00:00:00Z") - ms(1)));
        assert!(!hold.is_active_at(at("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn statutory_periods_follow_the_komkvo() {
        assert_eq!(HoldReason::CashBook.statutory_years(), Some(10));
        assert_eq!(HoldReason::Voucher.statutory_years(), Some(6));
        assert_eq!(HoldReason::OpenProcedure.statutory_years(), None);
    }

    #[test]
    fn streams_of_holds_and_erasures() {
        assert_eq!(
            hold_id().stream_id().as_str(),
            "retention-0193a1b2-0000-7000-8000-000000000040"
        );
        assert_eq!(HoldId::from_stream(&hold_id().stream_id()), Some(hold_id()));
        assert_eq!(HoldId::from_stream(&subject().stream_id()), None);
        let erasure = erasure_stream(subject());
        assert_eq!(
            erasure.as_str(),
            "erasure-0193a1b2-0000-7000-8000-00000000000a"
        );
        assert_eq!(subject_of_erasure_stream(&erasure), Some(subject()));
        assert_eq!(placed().stream_id(), hold_id().stream_id());
    }

    #[test]
    fn instants_are_kept_to_the_microsecond() {
        let events = decide(
            &place("2026-03-01T10:00:00.000000999Z", "2033-01-01T00:00:00Z"),
            &HoldState::NotPlaced,
        )
        .expect("placed");
        assert_eq!(events, vec![placed()]);
    }

    #[test]
    fn event_json_snapshots() {
        let ids = r#""hold_id":"0193a1b2-0000-7000-8000-000000000040""#;
        let subject = r#""subject":"0193a1b2-0000-7000-8000-00000000000a""#;
        snapshot(
            &placed(),
            "RetentionHoldPlaced",
            &format!(
                r#"{{{ids},"placed_at":"2026-03-01T10:00:00.000000Z","reason":"voucher","source":"payment-0193a1b2-0000-7000-8000-000000000050",{subject},"until":"2033-01-01T00:00:00.000000Z"}}"#
            ),
            None,
        );
        for (reason, name) in [
            (HoldReason::CashBook, "cash_book"),
            (HoldReason::OpenProcedure, "open_procedure"),
        ] {
            let RetentionEvent::Placed(mut e) = placed() else {
                unreachable!()
            };
            e.reason = reason;
            snapshot(
                &RetentionEvent::Placed(e),
                "RetentionHoldPlaced",
                &format!(
                    r#"{{{ids},"placed_at":"2026-03-01T10:00:00.000000Z","reason":"{name}","source":"payment-0193a1b2-0000-7000-8000-000000000050",{subject},"until":"2033-01-01T00:00:00.000000Z"}}"#
                ),
                None,
            );
        }
        snapshot(
            &released("2027-01-01T00:00:00Z"),
            "RetentionHoldReleased",
            &format!(r#"{{{ids},"released_at":"2027-01-01T00:00:00.000000Z",{subject}}}"#),
            None,
        );
        snapshot(
            &SubjectErased {
                subject: AccountId(uuid(0xa)),
                erased_at: at("2026-04-01T12:00:00Z"),
                key_ids: vec![
                    KeyId::parse("k1").expect("key id"),
                    KeyId::parse("k2").expect("key id"),
                ],
            },
            "SubjectErased",
            &format!(
                r#"{{"erased_at":"2026-04-01T12:00:00.000000Z","key_ids":["k1","k2"],{subject}}}"#
            ),
            None,
        );
    }

    #[test]
    fn stored_forms_are_read_strictly() {
        let parts = placed().to_parts().expect("parts");
        let mut extra = parts.data.clone();
        extra["note"] = serde_json::json!("x");
        assert!(matches!(
            RetentionEvent::from_parts(&parts.event_type, &extra, None),
            Err(PartsError::Data { .. })
        ));
        let mut bad_reason = parts.data.clone();
        bad_reason["reason"] = serde_json::json!("tax");
        assert!(RetentionEvent::from_parts(&parts.event_type, &bad_reason, None).is_err());
        assert_eq!(
            RetentionEvent::from_parts(
                &parts.event_type,
                &parts.data,
                Some(&serde_json::json!({}))
            ),
            Err(PartsError::UnexpectedPersonal {
                event_type: "RetentionHoldPlaced"
            })
        );
        let erased = EventType::parse("SubjectErased").expect("type");
        let data = serde_json::json!({
            "subject": subject(), "erased_at": "2026-04-01T12:00:00.000000Z", "key_ids": ["k 1"]
        });
        assert!(SubjectErased::from_parts(&erased, &data, None).is_err());
        assert_eq!(
            SubjectErased::from_parts(&parts.event_type, &data, None),
            Err(PartsError::UnknownEventType("RetentionHoldPlaced".into()))
        );
    }
}
