//! The applications domain core: versioned forms, the responsibility directory and the
//! application lifecycle, as pure deciders.
//!
//! A citizen or an organisation fills in an online form (a [`form`] version: a JSON Schema
//! 2020-12 document with FIM field ids and form editor elements), the [`directory`] says
//! which authority is responsible for the service (LeiKa key) in the applicant's region
//! (AGS / ARS), and the [`application`] goes from draft through submission, reception,
//! processing, information requests and the decision to its closure, compatible with
//! FIT-Connect's submission states and the federal status monitor (ZBP).
//!
//! As in every domain module, time, ids and outside facts (the pinned form version, the
//! responsible authority) are carried in the commands; the personal part of an event (the
//! form data, attachment file names, messages) is [`Personal`] and sealed under the
//! applicant's key, so erasing the applicant shreds it. The applicant is a pseudonymous
//! [`SubjectId`] (the UUID of the Servicekonto account).

pub mod application;
pub mod directory;
pub mod form;

use std::fmt;

use chrono::{DateTime, Utc};
use ring::digest;
use serde::{Deserialize, Serialize};

pub use crate::event::{Personal, SubjectId};
use crate::newtype::uuid_id;
use crate::record::truncate_micros;
use crate::stream::ServiceKey;

uuid_id!(
    /// One application; each is its own stream `application-<uuid>`.
    ApplicationId,
    stream = "application"
);
uuid_id!(
    /// One form with its numbered versions; each is its own stream `form-<uuid>`.
    FormId,
    stream = "form"
);
uuid_id!(
    /// The responsibility directory; there is one, the stream
    /// `responsibilities-00000000-0000-0000-0000-000000000000` ([`DirectoryId::MAIN`]).
    DirectoryId,
    stream = "responsibilities"
);

impl DirectoryId {
    /// The service's one directory.
    pub const MAIN: DirectoryId = DirectoryId(uuid::Uuid::nil());
}

/// Why a key, code or hash given from outside was refused. Never quotes the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a LeiKa key is 14 digits")]
    Leika,
    #[error(
        "a region is an ARS prefix of 2, 3, 5, 9 or 12 digits (Land, Regierungsbezirk, Kreis, \
         Gemeindeverband, Gemeinde) or an AGS of 8 digits"
    )]
    Region,
    #[error("a place is an AGS of 8 digits or an ARS of 12 digits")]
    Place,
    #[error("a SHA-256 hash is 64 lowercase hexadecimal digits")]
    Sha256,
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit())
}

/// A service key of the Leistungskatalog (LeiKa): 14 digits, e.g. `99108001000000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Leika(String);

impl Leika {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if s.len() == 14 && all_digits(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError::Leika)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The routing label of the service: events are routed to the Fachverfahren that
    /// handle it.
    pub fn service_key(&self) -> ServiceKey {
        // Fourteen digits always satisfy the service key grammar; tested below.
        ServiceKey::parse(&self.0).expect("14 digits are a service key")
    }
}

impl fmt::Display for Leika {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Leika {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A region of the responsibility directory.
///
/// The official regional key (ARS, 12 digits) is Land (2), Regierungsbezirk (1), Kreis (2),
/// Gemeindeverband (4), Gemeinde (3); the municipality key (AGS, 8 digits) is the same
/// without the Gemeindeverband. A region is an ARS prefix at one of those levels (2, 3, 5,
/// 9 or 12 digits) or a municipality's AGS (8 digits). Prefixes of up to 5 digits are the
/// same in both keys; an AGS and the ARS of the same municipality name the same region.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Region(String);

impl Region {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        if matches!(s.len(), 2 | 3 | 5 | 8 | 9 | 12) && all_digits(s) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError::Region)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// How specific the region is; a more specific region beats a less specific one. A
    /// municipality counts the same whether named by its AGS or its ARS.
    pub fn specificity(&self) -> usize {
        match self.0.len() {
            8 => 12,
            n => n,
        }
    }

    /// The region with a municipality named by its AGS, so that an AGS and the ARS of the
    /// same municipality compare equal.
    pub fn canonical(&self) -> String {
        match self.0.len() {
            12 => ags_of_ars(&self.0),
            _ => self.0.clone(),
        }
    }

    /// Whether `place` lies within this region.
    pub fn covers(&self, place: &Place) -> bool {
        match self.0.len() {
            8 => place.ags == self.0,
            9 | 12 => {
                place
                    .ars
                    .as_deref()
                    .is_some_and(|ars| ars.starts_with(&self.0))
                    || (self.0.len() == 12 && place.ags == ags_of_ars(&self.0))
            }
            _ => place.ags.starts_with(&self.0),
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The AGS of the municipality an ARS of 12 digits names.
fn ags_of_ars(ars: &str) -> String {
    format!("{}{}", &ars[..5], &ars[9..])
}

/// Where an applicant is: a municipality named by its AGS (8 digits) or ARS (12 digits).
/// Its AGS is the tenant of the application's events, which an authority's regions (AGS
/// prefixes) cover.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Place {
    ags: String,
    ars: Option<String>,
}

impl Place {
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        match s.len() {
            8 if all_digits(s) => Ok(Self {
                ags: s.to_owned(),
                ars: None,
            }),
            12 if all_digits(s) => Ok(Self {
                ags: ags_of_ars(s),
                ars: Some(s.to_owned()),
            }),
            _ => Err(KeyError::Place),
        }
    }

    /// The municipality key (8 digits).
    pub fn ags(&self) -> &str {
        &self.ags
    }

    /// The regional key, if the place was named by one.
    pub fn ars(&self) -> Option<&str> {
        self.ars.as_deref()
    }

    /// The key the place was named by.
    pub fn as_str(&self) -> &str {
        self.ars.as_deref().unwrap_or(&self.ags)
    }
}

impl TryFrom<String> for Place {
    type Error = KeyError;
    fn try_from(s: String) -> Result<Self, KeyError> {
        Self::parse(&s)
    }
}

impl From<Place> for String {
    fn from(p: Place) -> String {
        p.as_str().to_owned()
    }
}

/// A SHA-256 digest, written as 64 lowercase hexadecimal digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::of_parts(&[bytes])
    }

    /// The digest of the concatenation of `parts`.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut ctx = digest::Context::new(&digest::SHA256);
        for part in parts {
            ctx.update(part);
        }
        let mut out = [0; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Self(out)
    }

    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return Err(KeyError::Sha256);
        }
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(KeyError::Sha256),
        };
        let mut out = [0; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

impl Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Truncates an instant to the microseconds the record format keeps, so an event decided
/// in memory equals the same event read back from the log.
fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers shared by the tests of the aggregates.

    use std::fmt;

    use chrono::{DateTime, Utc};
    use serde_json::Value;
    use uuid::Uuid;

    use crate::event::DomainEvent;

    /// An instant from RFC 3339 text.
    pub fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("RFC 3339")
            .with_timezone(&Utc)
    }

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0000 | n)
    }

    /// Checks that an event reads back from its stored parts as the same event, that its
    /// personal part is there exactly when its type says so, and returns the parts' data
    /// and personal part as canonical JSON text.
    pub fn round_trip<E: DomainEvent + PartialEq + fmt::Debug>(
        event: &E,
    ) -> (String, Option<String>) {
        let parts = event.to_parts().expect("parts");
        assert_eq!(parts.event_type.as_str(), event.event_type());
        let canonical =
            |v: &Value| String::from_utf8(crate::jcs::canonicalize(v).expect("jcs")).expect("utf8");
        assert_eq!(
            E::carries_personal_data(event.event_type()),
            parts.personal.is_some(),
            "carries_personal_data({})",
            event.event_type()
        );
        let back = E::from_parts(&parts.event_type, &parts.data, parts.personal.as_ref())
            .expect("from parts");
        assert_eq!(&back, event, "{} reads back unchanged", event.event_type());
        (
            canonical(&parts.data),
            parts.personal.as_ref().map(canonical),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leika_keys_are_fourteen_digits_and_route_as_services() {
        let leika = Leika::parse("99108001000000").expect("leika");
        assert_eq!(leika.service_key().as_str(), "99108001000000");
        for bad in [
            "",
            "9910800100000",
            "991080010000000",
            "9910800100000a",
            " 9910800100000",
        ] {
            assert_eq!(Leika::parse(bad), Err(KeyError::Leika), "{bad:?}");
        }
        assert!(serde_json::from_str::<Leika>("\"123\"").is_err());
    }

    #[test]
    fn regions_are_ars_levels_or_an_ags() {
        for good in [
            "14",
            "146",
            "14612",
            "14612000",
            "146120000",
            "146120000000",
        ] {
            assert!(Region::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1",
            "1461",
            "146120",
            "1461200",
            "1461200000",
            "14612000000",
            "1461200000000",
            "1461200a",
        ] {
            assert_eq!(Region::parse(bad), Err(KeyError::Region), "{bad:?}");
        }
    }

    #[test]
    fn places_know_their_municipality_key() {
        let by_ars = Place::parse("146120000000").expect("ars");
        assert_eq!(by_ars.ags(), "14612000");
        assert_eq!(by_ars.ars(), Some("146120000000"));
        let by_ags = Place::parse("14612000").expect("ags");
        assert_eq!(by_ags.ars(), None);
        for bad in ["", "1461200", "146120000", "1461200000000", "x4612000"] {
            assert_eq!(Place::parse(bad), Err(KeyError::Place), "{bad:?}");
        }
        // Verbandsgemeinde 0014, Gemeinde 014, as in FIT-Connect's example ARS.
        let p = Place::parse("064350014014").expect("ars");
        assert_eq!(p.ags(), "06435014");
        assert_eq!(serde_json::to_string(&p).expect("json"), "\"064350014014\"");
    }

    #[test]
    fn regions_cover_places_at_every_level() {
        let ars = Place::parse("064350014014").expect("ars");
        let ags = Place::parse("06435014").expect("ags");
        let region = |s: &str| Region::parse(s).expect("region");
        for r in ["06", "064", "06435", "06435014", "064350014014"] {
            assert!(region(r).covers(&ars), "{r} covers the ARS");
            assert!(region(r).covers(&ags), "{r} covers the AGS");
        }
        // The Gemeindeverband is only known from an ARS.
        assert!(region("064350014").covers(&ars));
        assert!(!region("064350014").covers(&ags));
        for r in [
            "07",
            "065",
            "06436",
            "06435015",
            "064350015",
            "064350014015",
        ] {
            assert!(!region(r).covers(&ars), "{r}");
            assert!(!region(r).covers(&ags), "{r}");
        }
        assert_eq!(region("064350014014").canonical(), "06435014");
        assert_eq!(
            region("064350014014").specificity(),
            region("06435014").specificity()
        );
        assert!(region("064350014").specificity() > region("06435").specificity());
    }

    #[test]
    fn sha256_is_lowercase_hex() {
        let h = Sha256::of(b"abc");
        let text = h.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Sha256::parse(&text), Ok(h));
        assert_eq!(Sha256::of_parts(&[b"a", b"bc"]), h);
        for bad in [
            &text.to_uppercase(),
            &text[1..],
            &format!("{text}0"),
            &text.replace('b', "g"),
        ] {
            assert_eq!(Sha256::parse(bad), Err(KeyError::Sha256), "{bad}");
        }
        assert_eq!(
            serde_json::from_value::<Sha256>(serde_json::to_value(h).expect("json")).ok(),
            Some(h)
        );
    }

    #[test]
    fn ids_name_their_streams() {
        assert_eq!(
            DirectoryId::MAIN.stream_id().as_str(),
            "responsibilities-00000000-0000-0000-0000-000000000000"
        );
        let id = ApplicationId(testing::uuid(1));
        assert_eq!(ApplicationId::from_stream(&id.stream_id()), Some(id));
        assert_eq!(FormId::from_stream(&id.stream_id()), None);
    }
}
