//! The responsibility directory: which authority is responsible for a service in a region.
//!
//! An operator imports the directory as a whole (an XZuFi-like list of responsibilities:
//! LeiKa key, region, authority, form and payment policy); each import is one event
//! (`ResponsibilitiesImported`) in the stream `responsibilities-<nil uuid>`, in force from
//! its `valid_from` until the next import's, so "who was responsible on 3 March" is
//! answered by the import in force then ([`DirectoryState::responsible`]). An import takes
//! effect now or later, never in the past: what was answered once stays the answer.
//!
//! A place (an AGS or ARS) lies in several regions — Land, Kreis, Gemeindeverband,
//! Gemeinde; the most specific region with an entry for the service wins. Each (LeiKa,
//! region) has exactly one entry, else the import is refused naming every conflict; an AGS
//! and the ARS of the same municipality are the same region.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{instant, DirectoryId, FormId, Leika, Place, Region};
use crate::decider::decider;
use crate::event::{
    data_of, event_type_of, no_personal, parse_data, DomainEvent, EventParts, PartsError, SubjectId,
};
use crate::newtype::text;
use crate::record::timestamp;
use crate::stream::{AuthorityId, EventType, StreamId};

/// The most entries one import may hold; the import is one event, so its size is bounded
/// by the size of a record.
pub const MAX_ENTRIES: usize = 5_000;

text!(
    /// The public name of a service (`Wohngeld beantragen`), at most 100 characters as the
    /// status monitor (ZBP) shows it.
    ServiceName,
    "service name",
    100
);

/// When the applicant pays for a service. Recorded here and exposed as data; the domain
/// that requests fees acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentPolicy {
    /// The service is free of charge.
    None,
    /// The fee is paid before the application can be submitted.
    BeforeSubmission,
    /// The fee is charged with the decision.
    AfterDecision,
}

/// One responsibility: for the service `leika` in `region`, the authority `authority`
/// handles applications made with `form`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Responsibility {
    pub leika: Leika,
    pub region: Region,
    pub authority: AuthorityId,
    pub form: FormId,
    pub payment: PaymentPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<ServiceName>,
}

/// Two or more entries for one (LeiKa, region).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conflict {
    pub leika: Leika,
    /// The region as the first conflicting entry names it.
    pub region: Region,
    /// The authorities of the conflicting entries, in import order (the same authority may
    /// be named twice: two entries are a conflict even when they agree on it).
    pub authorities: Vec<AuthorityId>,
    /// The positions of the conflicting entries in the import, from 0.
    pub entries: Vec<usize>,
}

/// Import the whole directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Import {
    pub entries: Vec<Responsibility>,
    /// From when it is in force; not before `imported_at`.
    pub valid_from: DateTime<Utc>,
    pub imported_at: DateTime<Utc>,
}

/// `ResponsibilitiesImported`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponsibilitiesImported {
    pub directory_id: DirectoryId,
    /// The import's number, from 1.
    pub import: u32,
    #[serde(with = "timestamp")]
    pub valid_from: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub imported_at: DateTime<Utc>,
    pub entries: Vec<Responsibility>,
}

const IMPORTED: &str = "ResponsibilitiesImported";

/// The directory carries no personal data and concerns no data subject.
impl DomainEvent for ResponsibilitiesImported {
    fn event_type(&self) -> &'static str {
        IMPORTED
    }

    fn stream_id(&self) -> StreamId {
        self.directory_id.stream_id()
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        self.imported_at
    }

    fn data_subject(&self) -> Option<SubjectId> {
        None
    }

    fn carries_personal_data(_event_type: &str) -> bool {
        false
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        Ok(EventParts {
            event_type: event_type_of(IMPORTED)?,
            data: data_of(IMPORTED, self)?,
            personal: None,
        })
    }

    fn from_parts(
        event_type: &EventType,
        data: &serde_json::Value,
        personal: Option<&serde_json::Value>,
    ) -> Result<Self, PartsError> {
        if event_type.as_str() != IMPORTED {
            return Err(PartsError::UnknownEventType(event_type.as_str().to_owned()));
        }
        no_personal(IMPORTED, personal)?;
        parse_data(IMPORTED, data)
    }
}

/// One import as the state keeps it, indexed by service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InForce {
    pub import: u32,
    pub valid_from: DateTime<Utc>,
    pub entries: Vec<Responsibility>,
    by_leika: BTreeMap<Leika, Vec<usize>>,
}

impl InForce {
    fn new(e: &ResponsibilitiesImported) -> Self {
        let mut by_leika: BTreeMap<Leika, Vec<usize>> = BTreeMap::new();
        for (i, entry) in e.entries.iter().enumerate() {
            by_leika.entry(entry.leika.clone()).or_default().push(i);
        }
        Self {
            import: e.import,
            valid_from: e.valid_from,
            entries: e.entries.clone(),
            by_leika,
        }
    }

    /// The entry for `leika` whose region covers `place` most specifically.
    pub fn responsible(&self, leika: &Leika, place: &Place) -> Option<&Responsibility> {
        self.by_leika
            .get(leika)?
            .iter()
            .map(|&i| &self.entries[i])
            .filter(|e| e.region.covers(place))
            .max_by_key(|e| e.region.specificity())
    }
}

/// The directory: every import, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DirectoryState {
    pub imports: Vec<InForce>,
}

impl DirectoryState {
    /// The import in force at `at`: the last one whose `valid_from` is not after `at`.
    pub fn in_force(&self, at: DateTime<Utc>) -> Option<&InForce> {
        self.imports.iter().rev().find(|i| i.valid_from <= at)
    }

    /// Who was (or is, or will be) responsible for `leika` at `place` at the instant `at`.
    pub fn responsible(
        &self,
        leika: &Leika,
        place: &Place,
        at: DateTime<Utc>,
    ) -> Option<&Responsibility> {
        self.in_force(at)?.responsible(leika, place)
    }
}

/// Why an import was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("an import names at least one responsibility")]
    Empty,
    #[error("an import holds at most {MAX_ENTRIES} responsibilities; this one holds {0}")]
    TooLarge(usize),
    #[error("{} (LeiKa, region) pairs have more than one entry", .0.len())]
    Conflicts(Vec<Conflict>),
    #[error("an import takes effect when it is made or later, not before")]
    Retroactive,
    #[error("an import cannot take effect before the import in force from {0}")]
    BeforePrevious(String),
}

/// Every (LeiKa, region) with more than one entry.
pub fn conflicts(entries: &[Responsibility]) -> Vec<Conflict> {
    let mut groups: BTreeMap<(&Leika, String), Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        groups
            .entry((&e.leika, e.region.canonical()))
            .or_default()
            .push(i);
    }
    let mut found: Vec<Conflict> = groups
        .into_values()
        .filter(|group| group.len() > 1)
        .map(|group| Conflict {
            leika: entries[group[0]].leika.clone(),
            region: entries[group[0]].region.clone(),
            authorities: group
                .iter()
                .map(|&i| entries[i].authority.clone())
                .collect(),
            entries: group,
        })
        .collect();
    found.sort_by_key(|c| c.entries[0]);
    found
}

pub fn decide(
    command: &Import,
    state: &DirectoryState,
) -> Result<Vec<ResponsibilitiesImported>, DirectoryError> {
    if command.entries.is_empty() {
        return Err(DirectoryError::Empty);
    }
    if command.entries.len() > MAX_ENTRIES {
        return Err(DirectoryError::TooLarge(command.entries.len()));
    }
    let found = conflicts(&command.entries);
    if !found.is_empty() {
        return Err(DirectoryError::Conflicts(found));
    }
    let (valid_from, imported_at) = (instant(command.valid_from), instant(command.imported_at));
    if valid_from < imported_at {
        return Err(DirectoryError::Retroactive);
    }
    if let Some(last) = state.imports.last() {
        if valid_from < last.valid_from {
            return Err(DirectoryError::BeforePrevious(
                crate::record::format_timestamp(&last.valid_from),
            ));
        }
    }
    Ok(vec![ResponsibilitiesImported {
        directory_id: DirectoryId::MAIN,
        import: state.imports.last().map_or(1, |i| i.import + 1),
        valid_from,
        imported_at,
        entries: command.entries.clone(),
    }])
}

pub fn evolve(mut state: DirectoryState, event: &ResponsibilitiesImported) -> DirectoryState {
    state.imports.push(InForce::new(event));
    state
}

decider!(DirectoryState: Import => ResponsibilitiesImported, DirectoryError);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::applications::testing::*;
    use crate::decider::Decider;

    fn leika(s: &str) -> Leika {
        Leika::parse(s).expect("leika")
    }

    fn entry(l: &str, region: &str, authority: &str) -> Responsibility {
        Responsibility {
            leika: leika(l),
            region: Region::parse(region).expect("region"),
            authority: AuthorityId::parse(authority).expect("authority"),
            form: FormId(uuid(0xf)),
            payment: PaymentPolicy::None,
            service_name: None,
        }
    }

    const WOHNGELD: &str = "99108001000000";
    const HUND: &str = "99099002067003";

    fn import(entries: Vec<Responsibility>, valid_from: &str) -> Import {
        Import {
            entries,
            valid_from: at(valid_from),
            imported_at: at("2026-01-01T00:00:00Z"),
        }
    }

    fn place(s: &str) -> Place {
        Place::parse(s).expect("place")
    }

    fn authority_of<'a>(
        state: &'a DirectoryState,
        l: &str,
        p: &str,
        when: &str,
    ) -> Option<&'a str> {
        state
            .responsible(&leika(l), &place(p), at(when))
            .map(|r| r.authority.as_str())
    }

    fn imported(state: &DirectoryState, command: &Import) -> DirectoryState {
        let events = decide(command, state).expect("import");
        assert_eq!(events.len(), 1);
        round_trip(&events[0]);
        DirectoryState::evolve(state.clone(), &events[0])
    }

    #[test]
    fn the_longest_region_wins() {
        let state = imported(
            &DirectoryState::default(),
            &import(
                vec![
                    entry(WOHNGELD, "14", "sms"),
                    entry(WOHNGELD, "14612", "lra-meissen"),
                    entry(WOHNGELD, "146120000000", "stadt-meissen"),
                    entry(HUND, "146270000", "vg-radeburg"),
                ],
                "2026-01-01T00:00:00Z",
            ),
        );
        let when = "2026-02-01T00:00:00Z";
        assert_eq!(
            authority_of(&state, WOHNGELD, "14612000", when),
            Some("stadt-meissen")
        );
        assert_eq!(
            authority_of(&state, WOHNGELD, "146120000000", when),
            Some("stadt-meissen")
        );
        assert_eq!(
            authority_of(&state, WOHNGELD, "14612100", when),
            Some("lra-meissen")
        );
        assert_eq!(
            authority_of(&state, WOHNGELD, "14713000", when),
            Some("sms")
        );
        assert_eq!(authority_of(&state, WOHNGELD, "09162000", when), None);
        assert_eq!(
            authority_of(&state, HUND, "146270000123", when),
            Some("vg-radeburg")
        );
        // Without the ARS the Gemeindeverband is unknown.
        assert_eq!(authority_of(&state, HUND, "14627123", when), None);
        assert_eq!(
            authority_of(&state, "99000000000000", "14612000", when),
            None
        );
    }

    #[test]
    fn payment_policy_and_names_are_data() {
        let mut e = entry(WOHNGELD, "14", "sms");
        e.payment = PaymentPolicy::BeforeSubmission;
        e.service_name = Some(ServiceName::parse("Wohngeld beantragen").expect("name"));
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["payment"], "before_submission");
        assert_eq!(serde_json::from_value::<Responsibility>(json).ok(), Some(e));
        for bad in [
            serde_json::json!({"leika": "1", "region": "14", "authority": "a", "form": uuid(1), "payment": "none"}),
            serde_json::json!({"leika": WOHNGELD, "region": "1461", "authority": "a", "form": uuid(1), "payment": "none"}),
            serde_json::json!({"leika": WOHNGELD, "region": "14", "authority": "A", "form": uuid(1), "payment": "none"}),
            serde_json::json!({"leika": WOHNGELD, "region": "14", "authority": "a", "form": uuid(1), "payment": "later"}),
            serde_json::json!({"leika": WOHNGELD, "region": "14", "authority": "a", "form": uuid(1), "payment": "none", "x": 1}),
        ] {
            assert!(
                serde_json::from_value::<Responsibility>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn who_was_responsible_at_an_instant() {
        let first = imported(
            &DirectoryState::default(),
            &import(
                vec![entry(WOHNGELD, "14612", "lra-meissen")],
                "2026-01-01T00:00:00Z",
            ),
        );
        let second = imported(
            &first,
            &import(
                vec![entry(WOHNGELD, "14612", "lra-neu")],
                "2026-03-15T00:00:00Z",
            ),
        );
        assert_eq!(
            authority_of(&second, WOHNGELD, "14612000", "2025-12-31T23:59:59Z"),
            None
        );
        assert_eq!(
            authority_of(&second, WOHNGELD, "14612000", "2026-03-03T12:00:00Z"),
            Some("lra-meissen")
        );
        assert_eq!(
            authority_of(&second, WOHNGELD, "14612000", "2026-03-15T00:00:00Z"),
            Some("lra-neu")
        );
        assert_eq!(second.imports.last().map(|i| i.import), Some(2));
    }

    #[test]
    fn conflicts_are_refused_naming_them() {
        let command = import(
            vec![
                entry(WOHNGELD, "14612", "lra-meissen"),
                entry(HUND, "14612", "lra-meissen"),
                entry(WOHNGELD, "14612", "stadt-meissen"),
                entry(HUND, "14612000", "stadt-meissen"),
                entry(HUND, "146120000000", "vg-meissen"),
                entry(WOHNGELD, "14", "sms"),
            ],
            "2026-01-01T00:00:00Z",
        );
        let Err(DirectoryError::Conflicts(found)) = decide(&command, &DirectoryState::default())
        else {
            panic!("conflicts expected")
        };
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].leika.as_str(), WOHNGELD);
        assert_eq!(found[0].region.as_str(), "14612");
        assert_eq!(found[0].entries, vec![0, 2]);
        assert_eq!(
            found[0]
                .authorities
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>(),
            vec!["lra-meissen", "stadt-meissen"]
        );
        // An AGS and the ARS of the same municipality are the same region.
        assert_eq!(found[1].leika.as_str(), HUND);
        assert_eq!(found[1].entries, vec![3, 4]);
        // Twice the same authority is still two entries for one pair.
        let twice = import(
            vec![entry(HUND, "14", "sms"), entry(HUND, "14", "sms")],
            "2026-01-01T00:00:00Z",
        );
        assert!(matches!(
            decide(&twice, &DirectoryState::default()),
            Err(DirectoryError::Conflicts(c)) if c.len() == 1
        ));
    }

    #[test]
    fn imports_are_not_empty_not_too_large_and_not_retroactive() {
        let none = DirectoryState::default();
        assert_eq!(
            decide(&import(vec![], "2026-01-01T00:00:00Z"), &none),
            Err(DirectoryError::Empty)
        );
        let many: Vec<_> = (0..=MAX_ENTRIES)
            .map(|i| entry(&format!("{:014}", i), "14", "sms"))
            .collect();
        assert_eq!(
            decide(&import(many, "2026-01-01T00:00:00Z"), &none),
            Err(DirectoryError::TooLarge(MAX_ENTRIES + 1))
        );
        assert_eq!(
            decide(
                &import(vec![entry(HUND, "14", "sms")], "2025-12-31T00:00:00Z"),
                &none
            ),
            Err(DirectoryError::Retroactive)
        );
        let state = imported(
            &none,
            &import(vec![entry(HUND, "14", "sms")], "2026-06-01T00:00:00Z"),
        );
        assert!(matches!(
            decide(
                &import(vec![entry(HUND, "14", "sms")], "2026-05-01T00:00:00Z"),
                &state
            ),
            Err(DirectoryError::BeforePrevious(_))
        ));
    }
}
