//! The claim of a Kassenzeichen in a Mandant, which makes it unique there.
//!
//! Each (Mandant, Kassenzeichen) pair has a stream of its own, `kassenzeichen-<uuid>`, whose
//! UUID is derived from the pair (SHA-256, shaped as a UUID of version 8). The service
//! claims it in the same append as the receivable's first events, expecting the stream not
//! to exist: whoever comes second finds it claimed by another receivable and is refused.
//! No event here carries personal data.

use chrono::{DateTime, Utc};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{instant, Kassenzeichen, Mandant, ReceivableId};
use crate::decider::decider;
use crate::event::{plain_from_parts, plain_parts, DomainEvent, EventParts, PartsError, SubjectId};
use crate::newtype::stream_of;
use crate::record::timestamp;
use crate::stream::{EventType, StreamId};

/// The category of the claim streams.
pub const CLAIM_CATEGORY: &str = "kassenzeichen";

const CLAIMED: &str = "KassenzeichenClaimed";

/// The stream that holds the claim of `kassenzeichen` in `mandant`.
pub fn claim_stream(mandant: &Mandant, kassenzeichen: &Kassenzeichen) -> StreamId {
    let mut input = Vec::with_capacity(80);
    input.extend_from_slice(b"amtsbuch:kassenzeichen\0");
    input.extend_from_slice(mandant.as_str().as_bytes());
    input.push(0);
    input.extend_from_slice(kassenzeichen.as_str().as_bytes());
    let hash = digest::digest(&digest::SHA256, &input);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&hash.as_ref()[..16]);
    stream_of(
        CLAIM_CATEGORY,
        uuid::Builder::from_custom_bytes(bytes).into_uuid(),
    )
}

/// Claim a Kassenzeichen for a receivable.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub mandant: Mandant,
    pub kassenzeichen: Kassenzeichen,
    pub receivable_id: ReceivableId,
    pub claimed_at: DateTime<Utc>,
}

/// `KassenzeichenClaimed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KassenzeichenClaimed {
    pub mandant: Mandant,
    pub kassenzeichen: Kassenzeichen,
    pub receivable_id: ReceivableId,
    #[serde(with = "timestamp")]
    pub claimed_at: DateTime<Utc>,
}

impl DomainEvent for KassenzeichenClaimed {
    fn event_type(&self) -> &'static str {
        CLAIMED
    }

    fn stream_id(&self) -> StreamId {
        claim_stream(&self.mandant, &self.kassenzeichen)
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        self.claimed_at
    }

    fn data_subject(&self) -> Option<SubjectId> {
        None
    }

    fn carries_personal_data(_event_type: &str) -> bool {
        false
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        plain_parts(CLAIMED, self)
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        if event_type.as_str() != CLAIMED {
            return Err(PartsError::UnknownEventType(event_type.as_str().to_owned()));
        }
        plain_from_parts(CLAIMED, data, personal)
    }
}

/// The state of a claim stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClaimState {
    #[default]
    Free,
    Claimed(ReceivableId),
}

/// Why a claim was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("the Kassenzeichen is already used by another receivable of the Mandant")]
    Taken,
}

/// A free Kassenzeichen is claimed; claimed again for the same receivable nothing happens
/// (a retried request); for another receivable it is refused.
pub fn decide(
    command: &Claim,
    state: &ClaimState,
) -> Result<Vec<KassenzeichenClaimed>, ClaimError> {
    match state {
        ClaimState::Free => Ok(vec![KassenzeichenClaimed {
            mandant: command.mandant.clone(),
            kassenzeichen: command.kassenzeichen.clone(),
            receivable_id: command.receivable_id,
            claimed_at: instant(command.claimed_at),
        }]),
        ClaimState::Claimed(by) if *by == command.receivable_id => Ok(vec![]),
        ClaimState::Claimed(_) => Err(ClaimError::Taken),
    }
}

/// The first claim counts.
pub fn evolve(state: ClaimState, event: &KassenzeichenClaimed) -> ClaimState {
    match state {
        ClaimState::Free => ClaimState::Claimed(event.receivable_id),
        claimed => claimed,
    }
}

decider!(ClaimState: Claim => KassenzeichenClaimed, ClaimError);

/// The UUID of a claim stream, for tests that compare streams.
pub fn claim_uuid(stream: &StreamId) -> Option<Uuid> {
    crate::newtype::id_of_stream(CLAIM_CATEGORY, stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decider::Decider;
    use crate::payments::testing::*;

    fn claim(mandant: &str, kz: &str, receivable: u128) -> Claim {
        Claim {
            mandant: Mandant::parse(mandant).expect("mandant"),
            kassenzeichen: Kassenzeichen::parse(kz).expect("kz"),
            receivable_id: ReceivableId(uuid(receivable)),
            claimed_at: at("2026-03-01T10:00:00.0000009Z"),
        }
    }

    #[test]
    fn a_kassenzeichen_is_claimed_once_per_mandant() {
        let first = decide(&claim("14612000", "K1", 1), &ClaimState::Free).expect("claimed");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].claimed_at, at("2026-03-01T10:00:00Z"));
        let state = ClaimState::fold(&first);
        assert_eq!(state, ClaimState::Claimed(ReceivableId(uuid(1))));
        assert_eq!(decide(&claim("14612000", "K1", 1), &state), Ok(vec![]));
        assert_eq!(
            decide(&claim("14612000", "K1", 2), &state),
            Err(ClaimError::Taken)
        );
    }

    #[test]
    fn the_stream_is_the_pair_of_mandant_and_kassenzeichen() {
        let m = |s: &str| Mandant::parse(s).expect("mandant");
        let k = |s: &str| Kassenzeichen::parse(s).expect("kz");
        let a = claim_stream(&m("14612000"), &k("K1"));
        assert_eq!(a, claim_stream(&m("14612000"), &k("K1")));
        assert_ne!(a, claim_stream(&m("14612001"), &k("K1")));
        assert_ne!(a, claim_stream(&m("14612000"), &k("K2")));
        // No concatenation ambiguity: "1" + "4K1" is another pair than "14" + "K1".
        assert_ne!(
            claim_stream(&m("1"), &k("4K1")),
            claim_stream(&m("14"), &k("K1"))
        );
        assert!(a.as_str().starts_with("kassenzeichen-"));
        assert_eq!(claim_uuid(&a).map(|u| u.get_version_num()), Some(8));
    }

    #[test]
    fn event_json_snapshot() {
        let event = decide(&claim("14612000", "K1", 1), &ClaimState::Free)
            .expect("claimed")
            .remove(0);
        snapshot(
            &event,
            "KassenzeichenClaimed",
            r#"{"claimed_at":"2026-03-01T10:00:00.000000Z","kassenzeichen":"K1","mandant":"14612000","receivable_id":"0193a1b2-0000-7000-8000-000000000001"}"#,
            None,
        );
        assert_eq!(
            event.stream_id(),
            claim_stream(&event.mandant, &event.kassenzeichen)
        );
    }
}
