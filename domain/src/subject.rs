//! NATS subjects for the events of the log, and the filters Fachverfahren subscribe with.
//!
//! Every event is published on `<prefix>.<category>.<authority>.<event-type>.<service>`. The
//! first four tokens are the scheme authorities asked for; the fifth, the service (LeiKa
//! key), lets a Fachverfahren's consumer filter on the server by the services it handles
//! (`<prefix>.*.<authority>.*.<service>`), so it never receives events of other services.
//! An absent authority or service is written `_`, which no `AuthorityId` or `ServiceKey`
//! can be (neither may start with `_`). Event types may contain `.`, the NATS token
//! separator, so `.` is written `:`; an event type cannot contain `:`, so two event types
//! never share a token. Every other token is already restricted by its newtype to
//! characters that are safe in a subject, which is why `subject` cannot fail.
//!
//! This module only computes strings; the relay in `amtsbuch-infra` publishes on them.

use std::fmt;
use std::str::FromStr;

use crate::record::EventRecord;
use crate::stream::{AuthorityId, EventType, ServiceKey, StreamId};

/// The prefix used when none is configured.
pub const DEFAULT_PREFIX: &str = "amtsbuch";

/// The token that stands for an absent authority or service.
pub const ABSENT: &str = "_";

/// Longest prefix accepted; with the longest tokens the newtypes allow, a subject stays
/// well below the server's limits.
const MAX_PREFIX: usize = 100;

/// Why a subject prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("subject prefix {0:?} must be dot-separated tokens of lowercase letters, digits, '_' and '-', at most {MAX_PREFIX} characters")]
pub struct PrefixError(pub String);

/// The first token(s) of every subject the relay publishes, e.g. `amtsbuch` or
/// `amtsbuch.staging`. It exists only parsed: no empty token, no wildcard, no white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SubjectPrefix(String);

impl SubjectPrefix {
    pub fn parse(s: &str) -> Result<Self, PrefixError> {
        let token_ok = |t: &str| {
            !t.is_empty()
                && t.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        };
        if s.len() <= MAX_PREFIX && s.split('.').all(token_ok) {
            Ok(Self(s.to_owned()))
        } else {
            Err(PrefixError(s.chars().take(MAX_PREFIX + 20).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>.>`: every subject under this prefix, the subjects of the relay's stream.
    pub fn wildcard(&self) -> String {
        format!("{}.>", self.0)
    }
}

impl Default for SubjectPrefix {
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

impl fmt::Display for SubjectPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SubjectPrefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The subject token of an event type: `.` written as `:`.
pub fn event_type_token(event_type: &EventType) -> String {
    event_type.as_str().replace('.', ":")
}

/// The subject an event is published on.
pub fn subject(prefix: &SubjectPrefix, record: &EventRecord) -> String {
    subject_of(
        prefix,
        &record.stream_id,
        &record.event_type,
        record.authority.as_ref(),
        record.service.as_ref(),
    )
}

/// [`subject`] from the members of a record it depends on.
pub fn subject_of(
    prefix: &SubjectPrefix,
    stream: &StreamId,
    event_type: &EventType,
    authority: Option<&AuthorityId>,
    service: Option<&ServiceKey>,
) -> String {
    let authority = authority.map_or(ABSENT, AuthorityId::as_str);
    let service = service.map_or(ABSENT, ServiceKey::as_str);
    format!(
        "{prefix}.{}.{authority}.{}.{service}",
        stream.category(),
        event_type_token(event_type)
    )
}

/// The filters of a Fachverfahren that handles `services` for `authority`: one
/// `<prefix>.*.<authority>.*.<service>` per service, in the order given.
pub fn fachverfahren_filters(
    prefix: &SubjectPrefix,
    authority: &AuthorityId,
    services: &[ServiceKey],
) -> Vec<String> {
    services
        .iter()
        .map(|service| format!("{prefix}.*.{authority}.*.{service}"))
        .collect()
}

/// `<prefix>.*.<authority>.>`: every event addressed to `authority`, whatever its service.
pub fn authority_filter(prefix: &SubjectPrefix, authority: &AuthorityId) -> String {
    format!("{prefix}.*.{authority}.>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::StreamId;
    use chrono::{TimeZone, Utc};
    use serde_json::json;
    use uuid::Uuid;

    fn record(
        stream: &str,
        event_type: &str,
        authority: Option<&str>,
        service: Option<&str>,
    ) -> EventRecord {
        let at = Utc
            .with_ymd_and_hms(2026, 11, 29, 10, 0, 0)
            .single()
            .expect("time");
        EventRecord {
            event_id: Uuid::nil(),
            stream_id: StreamId::parse(stream).expect("stream"),
            stream_version: 1,
            position: 1,
            event_type: EventType::parse(event_type).expect("event type"),
            schema_version: 1,
            tenant: None,
            actor: None,
            correlation_id: None,
            causation_id: None,
            authority: authority.map(|a| AuthorityId::parse(a).expect("authority")),
            service: service.map(|s| ServiceKey::parse(s).expect("service")),
            occurred_at: at,
            recorded_at: at,
            data: json!({}),
            sealed: None,
        }
    }

    /// NATS subject matching: `*` matches one token, `>` one or more trailing tokens.
    fn matches(filter: &str, subject: &str) -> bool {
        let f: Vec<&str> = filter.split('.').collect();
        let s: Vec<&str> = subject.split('.').collect();
        for (i, token) in f.iter().enumerate() {
            match *token {
                ">" => return s.len() > i,
                "*" if i < s.len() => {}
                t if i < s.len() && s[i] == t => {}
                _ => return false,
            }
        }
        f.len() == s.len()
    }

    fn prefix(s: &str) -> SubjectPrefix {
        SubjectPrefix::parse(s).expect("prefix")
    }

    #[test]
    fn subjects_follow_the_scheme() {
        let p = SubjectPrefix::default();
        let full = record(
            "application-1",
            "payment.Settled",
            Some("lra-meissen"),
            Some("99108001000000"),
        );
        assert_eq!(
            subject(&p, &full),
            "amtsbuch.application.lra-meissen.payment:Settled.99108001000000"
        );
        let bare = record("consent-42", "ConsentGiven", None, None);
        assert_eq!(subject(&p, &bare), "amtsbuch.consent._.ConsentGiven._");
        let only_service = record("consent-42", "ConsentGiven", None, Some("Wohngeld_2"));
        assert_eq!(
            subject(&prefix("amtsbuch.staging"), &only_service),
            "amtsbuch.staging.consent._.ConsentGiven.Wohngeld_2"
        );
    }

    #[test]
    fn the_event_type_mapping_is_injective() {
        // `.` becomes `:`; this is only safe because no event type contains `:`.
        assert!(EventType::parse("payment:Settled").is_err());
        assert_eq!(
            event_type_token(&EventType::parse("a.b_c.d").expect("type")),
            "a:b_c:d"
        );
        // The absent marker cannot be confused with a real authority or service.
        assert!(AuthorityId::parse(ABSENT).is_err());
        assert!(ServiceKey::parse(ABSENT).is_err());
    }

    #[test]
    fn no_record_yields_an_empty_token_or_a_wildcard() {
        let prefixes = ["amtsbuch", "a.b-c.d_1", "x"];
        let streams = ["consent-1", "a-b", "payment_2-KZ.2026:17", "x9_y-..."];
        let types = ["A", "a.b", "a..b", "a.", "Payment.Settled_v2.x", "z_"];
        let authorities = [None, Some("lra-meissen"), Some("1"), Some("a_")];
        let services = [None, Some("99108001000000"), Some("Z"), Some("a-_b")];
        for p in prefixes {
            let p = prefix(p);
            let prefix_tokens = p.as_str().split('.').count();
            for s in streams {
                for t in types {
                    for a in authorities {
                        for v in services {
                            let subj = subject(&p, &record(s, t, a, v));
                            let tokens: Vec<&str> = subj.split('.').collect();
                            assert_eq!(tokens.len(), prefix_tokens + 4, "{subj}");
                            for token in tokens {
                                assert!(!token.is_empty(), "{subj}");
                                assert!(token != "*" && token != ">", "{subj}");
                                assert!(
                                    token
                                        .bytes()
                                        .all(|c| c.is_ascii_graphic() && c != b'*' && c != b'>'),
                                    "{subj}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn fachverfahren_filters_select_their_authority_and_services() {
        let p = prefix("amtsbuch.test");
        let meissen = AuthorityId::parse("lra-meissen").expect("authority");
        let services = [
            ServiceKey::parse("99108001000000").expect("service"),
            ServiceKey::parse("99108002000000").expect("service"),
        ];
        let filters = fachverfahren_filters(&p, &meissen, &services);
        assert_eq!(
            filters,
            [
                "amtsbuch.test.*.lra-meissen.*.99108001000000",
                "amtsbuch.test.*.lra-meissen.*.99108002000000"
            ]
        );
        let sees = |r: &EventRecord| filters.iter().any(|f| matches(f, &subject(&p, r)));
        assert!(sees(&record(
            "application-1",
            "a.b.c",
            Some("lra-meissen"),
            Some("99108001000000")
        )));
        assert!(sees(&record(
            "payment-1",
            "Paid",
            Some("lra-meissen"),
            Some("99108002000000")
        )));
        assert!(!sees(&record(
            "application-1",
            "X",
            Some("lra-meissen"),
            Some("99108003000000")
        )));
        assert!(!sees(&record(
            "application-1",
            "X",
            Some("lra-meissen"),
            None
        )));
        assert!(!sees(&record(
            "application-1",
            "X",
            Some("lra-bautzen"),
            Some("99108001000000")
        )));
        assert!(!sees(&record(
            "application-1",
            "X",
            None,
            Some("99108001000000")
        )));
        // The same subjects under another prefix are not seen.
        let other = prefix("amtsbuch");
        let r = record(
            "application-1",
            "X",
            Some("lra-meissen"),
            Some("99108001000000"),
        );
        assert!(!filters.iter().any(|f| matches(f, &subject(&other, &r))));

        let all = authority_filter(&p, &meissen);
        assert_eq!(all, "amtsbuch.test.*.lra-meissen.>");
        assert!(matches(
            &all,
            &subject(&p, &record("a-1", "X", Some("lra-meissen"), None))
        ));
        assert!(!matches(
            &all,
            &subject(&p, &record("a-1", "X", Some("lra-bautzen"), None))
        ));
        assert!(matches(&p.wildcard(), &subject(&p, &r)));
        assert!(fachverfahren_filters(&p, &meissen, &[]).is_empty());
    }

    #[test]
    fn prefixes_are_validated() {
        assert_eq!(SubjectPrefix::default().as_str(), "amtsbuch");
        for good in ["amtsbuch", "amtsbuch.staging", "a-b.c_d.9"] {
            assert_eq!(prefix(good).as_str(), good);
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a.*",
            "a.>",
            ">",
            "A",
            "a b",
            "a/b",
            "ä",
            &"a".repeat(MAX_PREFIX + 1),
        ] {
            assert!(SubjectPrefix::parse(bad).is_err(), "{bad:?}");
        }
    }
}
