//! Names and versions that address the log: stream ids, categories, event types and the
//! expected-version guard of an append.
//!
//! These are newtypes that can only exist parsed, so every adapter and handler can rely on
//! a `StreamId` being well-formed without checking again. The grammar is deliberately
//! narrow (ASCII, bounded length) because stream ids appear in URLs, NATS subjects and SQL.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a name or version given from outside was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("stream id {0:?} must have the form <category>-<id>: a category of lowercase letters, digits and '_' starting with a letter (at most 64), a '-', and an id of letters, digits and '-', '_', '.', ':' (at most 200)")]
    StreamId(String),
    #[error("category {0:?} must be lowercase letters, digits and '_', starting with a letter, at most 64 characters")]
    Category(String),
    #[error("event type {0:?} must start with a letter and contain only letters, digits, '_' and '.', at most 128 characters")]
    EventType(String),
    #[error("expected version {0:?} must be 'any', 'no-stream' or a non-negative integer")]
    ExpectedVersion(String),
    #[error("authority {0:?} must be lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 64 characters")]
    Authority(String),
    #[error("service key {0:?} must be letters, digits, '-' and '_' (a LeiKa key is 14 digits), at most 64 characters")]
    Service(String),
}

const MAX_CATEGORY: usize = 64;
const MAX_ID: usize = 200;
const MAX_EVENT_TYPE: usize = 128;

fn is_category(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_CATEGORY
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// A category such as `consent`: the part of a stream id before the first `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if is_category(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::Category(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream id `<category>-<id>`, e.g. `consent-0190f1d2-...`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamId(String);

impl StreamId {
    /// The longest stream id: a category of 64 bytes, `-`, an id of 200.
    pub const MAX_LEN: usize = MAX_CATEGORY + 1 + MAX_ID;

    pub fn parse(s: &str) -> Result<Self, NameError> {
        let err = || NameError::StreamId(s.chars().take(300).collect());
        let (category, id) = s.split_once('-').ok_or_else(err)?;
        if !is_category(category) || id.is_empty() || id.len() > MAX_ID {
            return Err(err());
        }
        let id_ok = id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'));
        if !id_ok {
            return Err(err());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: everything before the first `-`.
    pub fn category(&self) -> &str {
        category_of(&self.0)
    }
}

/// The category of a stream id given as text: everything before the first `-` (for
/// readers that have the id without parsing it).
pub fn category_of(stream_id: &str) -> &str {
    stream_id.split_once('-').map_or(stream_id, |(c, _)| c)
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StreamId {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An event type such as `ConsentGiven` or `payment.Settled`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= MAX_EVENT_TYPE
            && b[0].is_ascii_alphabetic()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(NameError::EventType(s.chars().take(200).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A routing label: a newtype over a short ASCII token that is safe in URLs, SQL and as one
/// token of a NATS subject (no '.', '*', '>' or white space).
macro_rules! routing_label {
    ($(#[$doc:meta])* $name:ident, $error:ident, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, NameError> {
                let allowed: fn(u8) -> bool = $allowed;
                let b = s.as_bytes();
                if !b.is_empty() && b.len() <= MAX_LABEL && b[0] != b'-' && b[0] != b'_'
                    && b.iter().all(|c| allowed(*c))
                {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(NameError::$error(s.chars().take(100).collect()))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

const MAX_LABEL: usize = 64;

routing_label!(
    /// The authority an event is addressed to (`lra-meissen`, `14612000-ordnungsamt`): the
    /// responsible authority chosen by routing. It decides which authorities and
    /// Fachverfahren may see the event, and is a token of the event's NATS subject.
    AuthorityId,
    Authority,
    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_'
);

routing_label!(
    /// The administrative service an event belongs to, normally its LeiKa key
    /// (`99108001000000`). A Fachverfahren sees the events of the services it handles.
    ServiceKey,
    Service,
    |c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
);

/// The optimistic-concurrency guard of an append. Stream versions count events: a stream
/// that does not exist has version 0, its first event has version 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must be at exactly this version (0 means: does not exist).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` (0 = absent) satisfies this guard.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(n) => current == n,
        }
    }
}

impl FromStr for ExpectedVersion {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "any" => Ok(Self::Any),
            "no-stream" => Ok(Self::NoStream),
            n if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => n
                .parse::<u64>()
                .ok()
                .filter(|v| *v <= crate::record::MAX_SAFE_INTEGER)
                .map(Self::Exact)
                .ok_or_else(|| NameError::ExpectedVersion(s.to_owned())),
            _ => Err(NameError::ExpectedVersion(s.chars().take(100).collect())),
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no-stream"),
            Self::Exact(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_stream(s: &str, ok: bool) {
        assert_eq!(StreamId::parse(s).is_ok(), ok, "{s:?}");
    }

    #[test]
    fn stream_ids() {
        check_stream("consent-0190f1d2-7c1a-7000-8000-000000000000", true);
        check_stream("payment-KZ.2026:17", true);
        check_stream("a-b", true);
        check_stream("consent", false);
        check_stream("-x", false);
        check_stream("Consent-x", false);
        check_stream("consent-", false);
        check_stream("consent-a b", false);
        check_stream("consent-ä", false);
        check_stream("consent-a/b", false);
        check_stream(&format!("c-{}", "x".repeat(201)), false);
        assert_eq!(
            StreamId::parse("consent-a-b").map(|s| s.category().to_owned()),
            Ok("consent".to_owned())
        );
    }

    #[test]
    fn expected_versions() {
        assert_eq!("any".parse(), Ok(ExpectedVersion::Any));
        assert_eq!("no-stream".parse(), Ok(ExpectedVersion::NoStream));
        assert_eq!("17".parse(), Ok(ExpectedVersion::Exact(17)));
        assert!("-1".parse::<ExpectedVersion>().is_err());
        assert!("1e3".parse::<ExpectedVersion>().is_err());
        assert!("".parse::<ExpectedVersion>().is_err());
        assert!("99999999999999999999".parse::<ExpectedVersion>().is_err());
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(0).admits(0));
        assert!(!ExpectedVersion::Exact(2).admits(3));
    }

    #[test]
    fn routing_labels() {
        assert!(AuthorityId::parse("lra-meissen").is_ok());
        assert!(AuthorityId::parse("14612000-ordnungsamt").is_ok());
        for bad in [
            "",
            "LRA",
            "a.b",
            "a*",
            "a>",
            "a b",
            "-a",
            "_a",
            &"a".repeat(65),
        ] {
            assert!(AuthorityId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ServiceKey::parse("99108001000000").is_ok());
        assert!(ServiceKey::parse("Wohngeld_2").is_ok());
        for bad in ["", "a.b", "a b", "a>", "-1"] {
            assert!(ServiceKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn event_types() {
        assert!(EventType::parse("ConsentGiven").is_ok());
        assert!(EventType::parse("payment.Settled_v2").is_ok());
        assert!(EventType::parse("1x").is_err());
        assert!(EventType::parse("a b").is_err());
        assert!(EventType::parse("").is_err());
    }
}
