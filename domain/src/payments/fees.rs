//! The fee schedule: what a service costs at an authority, and how it is booked.
//!
//! The responsibility directory says *when* an applicant pays for a service (nothing,
//! before the submission, with the decision); the fee schedule says *what*: per (service,
//! authority) the Mandant and Bewirtschafter a receivable is requested under, its lines
//! (Haushaltsstelle, Buchungstext, gross = net + tax cents) whose gross amounts sum to the
//! fee, and in how many days it is due. Each (service, authority) has a stream of its own,
//! `fee_schedule-<uuid>`, whose UUID is derived from the pair (SHA-256, shaped as a UUID of
//! version 8), so that the schedule in force is one fold of one stream. Setting the same
//! schedule again records nothing. No event here carries personal data.
//!
//! The receivable a payment policy requests for an application is derived from the
//! application's id ([`ReceivableId::for_application`]): whoever requests it — the policy's
//! process manager, a second node running it too, a rerun after a crash — names the same
//! stream, which can be created once.

use chrono::{DateTime, Utc};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::receivable::{check_lines, ReceivableError};
use super::{instant, Bewirtschafter, Cents, Line, Mandant, ReceivableId};
use crate::decider::decider;
use crate::event::{plain_from_parts, plain_parts, DomainEvent, EventParts, PartsError, SubjectId};
use crate::newtype::stream_of;
use crate::record::timestamp;
use crate::stream::{AuthorityId, EventType, ServiceKey, StreamId};

/// The stream category of fee schedules.
pub const FEE_SCHEDULE_CATEGORY: &str = "fee_schedule";

const SET: &str = "FeeScheduleSet";

/// The longest time to pay a schedule may give, in days.
pub const MAX_DUE_DAYS: u32 = 365;

/// A 16-byte SHA-256 prefix of `parts` under `domain`, shaped as a UUID of version 8.
fn derived(domain: &[u8], parts: &[&[u8]]) -> Uuid {
    let mut input = Vec::with_capacity(128);
    input.extend_from_slice(domain);
    for part in parts {
        input.push(0);
        input.extend_from_slice(part);
    }
    let hash = digest::digest(&digest::SHA256, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// The stream of the fee schedule of `service` at `authority`.
pub fn schedule_stream(service: &ServiceKey, authority: &AuthorityId) -> StreamId {
    stream_of(
        FEE_SCHEDULE_CATEGORY,
        derived(
            b"amtsbuch:fee-schedule",
            &[service.as_str().as_bytes(), authority.as_str().as_bytes()],
        ),
    )
}

impl ReceivableId {
    /// The receivable a payment policy requests for the application `application`: derived
    /// from its id (SHA-256, shaped as a UUID of version 8), so that every attempt to
    /// request it — a rerun, a second node — names the same stream.
    pub fn for_application(application: Uuid) -> ReceivableId {
        ReceivableId(derived(
            b"amtsbuch:receivable:application",
            &[application.as_bytes()],
        ))
    }
}

/// Set the fee schedule of a service at an authority (replacing the one before).
#[derive(Debug, Clone, PartialEq)]
pub struct SetFeeSchedule {
    pub service: ServiceKey,
    pub authority: AuthorityId,
    pub mandant: Mandant,
    pub bewirtschafter: Bewirtschafter,
    pub gross_cents: Cents,
    pub lines: Vec<Line>,
    /// Days from the request to the due date.
    pub due_days: u32,
    pub set_at: DateTime<Utc>,
}

/// `FeeScheduleSet`: the fee in force from `set_at` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeeScheduleSet {
    pub service: ServiceKey,
    pub authority: AuthorityId,
    pub mandant: Mandant,
    pub bewirtschafter: Bewirtschafter,
    pub gross_cents: Cents,
    pub lines: Vec<Line>,
    pub due_days: u32,
    #[serde(with = "timestamp")]
    pub set_at: DateTime<Utc>,
}

impl DomainEvent for FeeScheduleSet {
    fn event_type(&self) -> &'static str {
        SET
    }

    fn stream_id(&self) -> StreamId {
        schedule_stream(&self.service, &self.authority)
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        self.set_at
    }

    fn data_subject(&self) -> Option<SubjectId> {
        None
    }

    fn carries_personal_data(_event_type: &str) -> bool {
        false
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        plain_parts(SET, self)
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        if event_type.as_str() != SET {
            return Err(PartsError::UnknownEventType(event_type.as_str().to_owned()));
        }
        plain_from_parts(SET, data, personal)
    }
}

/// The schedule in force: the last one set, if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FeeScheduleState(pub Option<FeeScheduleSet>);

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeeScheduleError {
    #[error("{0}")]
    Lines(ReceivableError),
    #[error("a fee is due 0 to {MAX_DUE_DAYS} days after it is requested; {0} is not")]
    DueDays(u32),
}

/// Decides a schedule: its lines sum to the fee (as a receivable's must), it is due within
/// a year; the same schedule again records nothing.
pub fn decide(
    command: &SetFeeSchedule,
    state: &FeeScheduleState,
) -> Result<Vec<FeeScheduleSet>, FeeScheduleError> {
    check_lines(command.gross_cents, &command.lines).map_err(FeeScheduleError::Lines)?;
    if command.due_days > MAX_DUE_DAYS {
        return Err(FeeScheduleError::DueDays(command.due_days));
    }
    let event = FeeScheduleSet {
        service: command.service.clone(),
        authority: command.authority.clone(),
        mandant: command.mandant.clone(),
        bewirtschafter: command.bewirtschafter.clone(),
        gross_cents: command.gross_cents,
        lines: command.lines.clone(),
        due_days: command.due_days,
        set_at: instant(command.set_at),
    };
    let same = state.0.as_ref().is_some_and(|s| {
        FeeScheduleSet {
            set_at: event.set_at,
            ..s.clone()
        } == event
    });
    Ok(if same { vec![] } else { vec![event] })
}

pub fn evolve(_state: FeeScheduleState, event: &FeeScheduleSet) -> FeeScheduleState {
    FeeScheduleState(Some(event.clone()))
}

decider!(FeeScheduleState: SetFeeSchedule => FeeScheduleSet, FeeScheduleError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::Decider;
    use crate::payments::testing::*;

    fn line(gross: i64) -> Line {
        serde_json::from_value(serde_json::json!({
            "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR",
            "gross_cents": gross, "net_cents": gross, "tax_cents": 0
        }))
        .expect("line")
    }

    fn set(gross: i64, lines: &[i64], due_days: u32) -> SetFeeSchedule {
        SetFeeSchedule {
            service: ServiceKey::parse("99108001000000").expect("service"),
            authority: AuthorityId::parse("lra-meissen").expect("authority"),
            mandant: Mandant::parse("14612000").expect("mandant"),
            bewirtschafter: Bewirtschafter::parse("b100").expect("bewirtschafter"),
            gross_cents: Cents::new(gross).expect("cents"),
            lines: lines.iter().map(|&g| line(g)).collect(),
            due_days,
            set_at: at("2026-03-01T10:00:00.0000009Z"),
        }
    }

    #[test]
    fn a_schedule_is_set_once_and_again_only_when_it_changes() {
        let first =
            decide(&set(2500, &[2000, 500], 14), &FeeScheduleState::default()).expect("set");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].set_at, at("2026-03-01T10:00:00Z"));
        let state = FeeScheduleState::fold(&first);
        let mut again = set(2500, &[2000, 500], 14);
        again.set_at = at("2026-03-02T10:00:00Z");
        assert_eq!(decide(&again, &state), Ok(vec![]));
        assert_eq!(
            decide(&set(3000, &[2500, 500], 14), &state)
                .expect("changed")
                .len(),
            1
        );
    }

    #[test]
    fn lines_that_do_not_sum_and_long_terms_are_refused() {
        let empty = FeeScheduleState::default();
        assert!(matches!(
            decide(&set(2500, &[2000, 400], 14), &empty),
            Err(FeeScheduleError::Lines(
                ReceivableError::LinesDoNotSum { .. }
            ))
        ));
        assert!(matches!(
            decide(&set(0, &[0], 14), &empty),
            Err(FeeScheduleError::Lines(ReceivableError::ZeroAmount))
        ));
        assert_eq!(
            decide(&set(2500, &[2500], 366), &empty),
            Err(FeeScheduleError::DueDays(366))
        );
    }

    #[test]
    fn streams_and_receivables_are_derived() {
        let s = |k: &str| ServiceKey::parse(k).expect("service");
        let a = |k: &str| AuthorityId::parse(k).expect("authority");
        let one = schedule_stream(&s("99108001000000"), &a("lra-meissen"));
        assert_eq!(
            one,
            schedule_stream(&s("99108001000000"), &a("lra-meissen"))
        );
        assert_ne!(
            one,
            schedule_stream(&s("99108001000000"), &a("lra-bautzen"))
        );
        assert!(one.as_str().starts_with("fee_schedule-"));
        let app = uuid(7);
        assert_eq!(
            ReceivableId::for_application(app),
            ReceivableId::for_application(app)
        );
        assert_ne!(
            ReceivableId::for_application(app),
            ReceivableId::for_application(uuid(8))
        );
        assert_eq!(ReceivableId::for_application(app).0.get_version_num(), 8);
    }

    #[test]
    fn event_json_snapshot() {
        let event = decide(&set(2500, &[2500], 14), &FeeScheduleState::default())
            .expect("set")
            .remove(0);
        snapshot(
            &event,
            "FeeScheduleSet",
            r#"{"authority":"lra-meissen","bewirtschafter":"b100","due_days":14,"gross_cents":2500,"lines":[{"buchungstext":"GEBÜHR","gross_cents":2500,"haushaltsstelle":"1100.100","net_cents":2500,"tax_cents":0}],"mandant":"14612000","service":"99108001000000","set_at":"2026-03-01T10:00:00.000000Z"}"#,
            None,
        );
    }
}
