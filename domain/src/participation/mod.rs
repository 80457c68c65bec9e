//! The participation domain core: procedures of Saxony's Beteiligungsportal (land-use
//! plans under BauGB §§ 3, 4, 4a, dialogs, surveys, defect reports, events and appointment
//! booking), their rounds, the contributions made in them with their moderation, answers
//! and weighing, and the registrations for events and appointment slots, as pure deciders.
//!
//! Three kinds of stream, one aggregate each:
//!
//! - `participation-<uuid>`, a [`procedure`]: its authority (the organiser and the data
//!   controller, a recorded fact), format, region, geometry, status, rounds and survey;
//! - `contribution-<uuid>`, a [`contribution`]: what a participant submitted, and what
//!   happened to it since — reports, hiding, supports, the answer, the weighing. Its
//!   author and personal content are sealed under the author's key;
//! - `gathering-<uuid>`, a [`gathering`]: an event or an appointment slot with a
//!   capacity, and its registrations. All registrations of one gathering are decided in
//!   its one stream with the stream's version as the expected version, so that no two
//!   API nodes can confirm more places than there are.
//!
//! Time is always the server's, carried in the commands; instants are kept to the
//! microsecond the record format keeps.

pub mod contribution;
mod events;
pub mod gathering;
pub mod procedure;
pub mod survey;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::SubjectId;
use crate::newtype::{text, token, uuid_id};
use crate::record::truncate_micros;

uuid_id!(
    /// A participation procedure; its stream is `participation-<uuid>`.
    ProcedureId,
    stream = "participation"
);
uuid_id!(
    /// A contribution (statement, comment, survey answer, defect report); its stream is
    /// `contribution-<uuid>`.
    ContributionId,
    stream = "contribution"
);
uuid_id!(
    /// An event or appointment slot with a capacity; its stream is `gathering-<uuid>`.
    GatheringId,
    stream = "gathering"
);
uuid_id!(
    /// One round of a procedure (a display period, a dialog phase).
    RoundId
);
uuid_id!(
    /// One registration for a gathering.
    RegistrationId
);
uuid_id!(
    /// A participant: the pseudonymous account of a citizen or an organisation. It is the
    /// data subject whose key seals what the participant wrote.
    ParticipantId
);

impl From<ParticipantId> for SubjectId {
    fn from(id: ParticipantId) -> Self {
        SubjectId(id.0)
    }
}

/// The portal's solutions a procedure is run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Land-use planning (Bauleitplanung) under BauGB §§ 3, 4, 4a: formal statements.
    Bauleitplanung,
    /// A dialog: public comments under a pseudonym.
    Dialog,
    /// A survey: questions with single or multiple choice or free text.
    Survey,
    /// A defect reporter (Meldeverfahren): reports at points of interest.
    Meldeverfahren,
    /// Event management: events with a capacity and a waiting list.
    EventManagement,
    /// Appointment booking: slots with a capacity.
    AppointmentBooking,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Self::Bauleitplanung,
        Self::Dialog,
        Self::Survey,
        Self::Meldeverfahren,
        Self::EventManagement,
        Self::AppointmentBooking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bauleitplanung => "bauleitplanung",
            Self::Dialog => "dialog",
            Self::Survey => "survey",
            Self::Meldeverfahren => "meldeverfahren",
            Self::EventManagement => "event_management",
            Self::AppointmentBooking => "appointment_booking",
        }
    }

    pub fn parse(s: &str) -> Option<Format> {
        Self::ALL.into_iter().find(|f| f.as_str() == s)
    }

    /// The kind of contribution the format takes, if it takes contributions at all
    /// (events and appointments take registrations instead).
    pub fn contribution_kind(self) -> Option<ContributionKind> {
        match self {
            Self::Bauleitplanung => Some(ContributionKind::Statement),
            Self::Dialog => Some(ContributionKind::Comment),
            Self::Survey => Some(ContributionKind::SurveyAnswer),
            Self::Meldeverfahren => Some(ContributionKind::DefectReport),
            Self::EventManagement | Self::AppointmentBooking => None,
        }
    }
}

/// The stage of a land-use plan (Verfahrensschritt), which each of its rounds is held
/// under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Early public participation, § 3 (1) BauGB.
    Fruehzeitig31,
    /// Public display, § 3 (2) BauGB: at least one month and at least 30 days,
    /// announced before it starts.
    Auslegung32,
    /// Participation of the authorities and other public bodies, § 4 (2) BauGB.
    Toeb42,
    /// Renewed participation after a change of the draft, § 4a (3) BauGB.
    Erneut4a3,
    /// The decision (Satzungsbeschluss); no round is held under it.
    Satzungsbeschluss,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Self::Fruehzeitig31,
        Self::Auslegung32,
        Self::Toeb42,
        Self::Erneut4a3,
        Self::Satzungsbeschluss,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fruehzeitig31 => "fruehzeitig31",
            Self::Auslegung32 => "auslegung32",
            Self::Toeb42 => "toeb42",
            Self::Erneut4a3 => "erneut4a3",
            Self::Satzungsbeschluss => "satzungsbeschluss",
        }
    }
}

/// What a participant contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContributionKind {
    /// A formal statement (Stellungnahme) on a land-use plan: only its count is public.
    Statement,
    /// A dialog comment: public under a pseudonym.
    Comment,
    /// Answers to a survey: public only as the survey's results.
    SurveyAnswer,
    /// A defect report at a point: public under a pseudonym.
    DefectReport,
}

impl ContributionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Statement => "statement",
            Self::Comment => "comment",
            Self::SurveyAnswer => "survey_answer",
            Self::DefectReport => "defect_report",
        }
    }

    /// Whether the contribution's text is shown publicly (under its pseudonym).
    pub fn text_is_public(self) -> bool {
        matches!(self, Self::Comment | Self::DefectReport)
    }
}

/// The Amtlicher Gemeindeschlüssel of a region of Saxony: eight digits beginning with
/// `14`, Saxony's Land key (`14000000` is the Land itself, `14612000` Dresden).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Ags(String);

impl Ags {
    pub fn parse(s: &str) -> Result<Self, GeoError> {
        if s.len() == 8 && s.starts_with("14") && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(GeoError::Ags)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Ags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Why a region, a position, a geometry or a bounding box was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GeoError {
    #[error("a region is an AGS of Saxony: eight digits beginning with 14")]
    Ags,
    #[error("a position is [longitude, latitude] in WGS84 within Saxony (longitude {min_lon} to {max_lon}, latitude {min_lat} to {max_lat})", min_lon = SAXONY.min_lon, max_lon = SAXONY.max_lon, min_lat = SAXONY.min_lat, max_lat = SAXONY.max_lat)]
    OutsideSaxony,
    #[error("a polygon has one to 16 rings, each closed (its last position equals its first) with 4 to 1000 positions")]
    Polygon,
    #[error("a bounding box is min_lon,min_lat,max_lon,max_lat with longitudes in -180..180, latitudes in -90..90, and each minimum at most its maximum")]
    BoundingBox,
}

/// A rectangle of WGS84 longitudes and latitudes, bounds included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoundingBox {
    pub min_lon: f64,
    pub min_lat: f64,
    pub max_lon: f64,
    pub max_lat: f64,
}

/// A rectangle around the Free State of Saxony (its extreme points lie at about 11.87°
/// to 15.04° east and 50.17° to 51.69° north), with a small margin.
pub const SAXONY: BoundingBox = BoundingBox {
    min_lon: 11.8,
    min_lat: 50.1,
    max_lon: 15.1,
    max_lat: 51.7,
};

impl BoundingBox {
    /// Parses `min_lon,min_lat,max_lon,max_lat` (the `bbox` query parameter).
    pub fn parse(s: &str) -> Result<Self, GeoError> {
        let parts: Vec<f64> = s
            .split(',')
            .map(|p| p.trim().parse::<f64>().map_err(|_| GeoError::BoundingBox))
            .collect::<Result<_, _>>()?;
        let [min_lon, min_lat, max_lon, max_lat] = parts[..] else {
            return Err(GeoError::BoundingBox);
        };
        let lon = |v: f64| v.is_finite() && (-180.0..=180.0).contains(&v);
        let lat = |v: f64| v.is_finite() && (-90.0..=90.0).contains(&v);
        if lon(min_lon)
            && lon(max_lon)
            && lat(min_lat)
            && lat(max_lat)
            && min_lon <= max_lon
            && min_lat <= max_lat
        {
            Ok(Self {
                min_lon,
                min_lat,
                max_lon,
                max_lat,
            })
        } else {
            Err(GeoError::BoundingBox)
        }
    }

    pub fn contains(&self, p: Position) -> bool {
        (self.min_lon..=self.max_lon).contains(&p.lon())
            && (self.min_lat..=self.max_lat).contains(&p.lat())
    }

    /// Whether the two rectangles share a point.
    pub fn intersects(&self, other: &BoundingBox) -> bool {
        self.min_lon <= other.max_lon
            && other.min_lon <= self.max_lon
            && self.min_lat <= other.max_lat
            && other.min_lat <= self.max_lat
    }
}

/// A WGS84 position `[longitude, latitude]` within Saxony, as GeoJSON writes it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "[f64; 2]", into = "[f64; 2]")]
pub struct Position([f64; 2]);

impl Position {
    pub fn new(lon: f64, lat: f64) -> Result<Self, GeoError> {
        let p = Self([lon, lat]);
        if lon.is_finite() && lat.is_finite() && SAXONY.contains(p) {
            Ok(p)
        } else {
            Err(GeoError::OutsideSaxony)
        }
    }

    pub fn lon(self) -> f64 {
        self.0[0]
    }

    pub fn lat(self) -> f64 {
        self.0[1]
    }
}

impl TryFrom<[f64; 2]> for Position {
    type Error = GeoError;
    fn try_from([lon, lat]: [f64; 2]) -> Result<Self, GeoError> {
        Self::new(lon, lat)
    }
}

impl From<Position> for [f64; 2] {
    fn from(p: Position) -> Self {
        p.0
    }
}

/// Where a procedure or a defect report lies: a GeoJSON point or polygon in WGS84, every
/// position within Saxony.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", try_from = "RawGeometry")]
pub enum Geometry {
    Point { coordinates: Position },
    Polygon { coordinates: Vec<Vec<Position>> },
}

/// A geometry as read, before the polygon's rings are checked.
#[derive(Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
enum RawGeometry {
    Point { coordinates: Position },
    Polygon { coordinates: Vec<Vec<Position>> },
}

impl TryFrom<RawGeometry> for Geometry {
    type Error = GeoError;
    fn try_from(raw: RawGeometry) -> Result<Self, GeoError> {
        match raw {
            RawGeometry::Point { coordinates } => Ok(Self::Point { coordinates }),
            RawGeometry::Polygon { coordinates } => {
                let ring_ok = |ring: &Vec<Position>| {
                    (4..=1000).contains(&ring.len()) && ring.first() == ring.last()
                };
                if (1..=16).contains(&coordinates.len()) && coordinates.iter().all(ring_ok) {
                    Ok(Self::Polygon { coordinates })
                } else {
                    Err(GeoError::Polygon)
                }
            }
        }
    }
}

impl Geometry {
    /// The smallest rectangle around the geometry, for map searches.
    pub fn bounds(&self) -> BoundingBox {
        let positions: Vec<Position> = match self {
            Self::Point { coordinates } => vec![*coordinates],
            Self::Polygon { coordinates } => coordinates.iter().flatten().copied().collect(),
        };
        let mut b = BoundingBox {
            min_lon: f64::INFINITY,
            min_lat: f64::INFINITY,
            max_lon: f64::NEG_INFINITY,
            max_lat: f64::NEG_INFINITY,
        };
        for p in positions {
            b.min_lon = b.min_lon.min(p.lon());
            b.min_lat = b.min_lat.min(p.lat());
            b.max_lon = b.max_lon.max(p.lon());
            b.max_lat = b.max_lat.max(p.lat());
        }
        b
    }
}

/// The SHA-256 of a document: 64 lowercase hexadecimal digits, the one spelling of a hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Sha256Hex(String);

/// Why a document reference was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("a document hash is its SHA-256 as 64 lowercase hexadecimal digits")]
    Hash,
    #[error("a document's size is 1 to 9007199254740991 bytes")]
    Size,
}

impl Sha256Hex {
    pub fn parse(s: &str) -> Result<Self, DocumentError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(DocumentError::Hash)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The largest size a document reference may give: the largest integer JSON carries
/// exactly.
pub const MAX_DOCUMENT_SIZE: u64 = (1 << 53) - 1;

/// A document by its content: hash and size, and what it is called. The file itself is
/// kept elsewhere; the hash proves which file it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentRef {
    pub sha256: Sha256Hex,
    pub size: u64,
    pub title: Title,
}

impl DocumentRef {
    pub fn check(&self) -> Result<(), DocumentError> {
        if (1..=MAX_DOCUMENT_SIZE).contains(&self.size) {
            Ok(())
        } else {
            Err(DocumentError::Size)
        }
    }
}

/// An attachment of a contribution, by its content only (its name could be personal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    pub sha256: Sha256Hex,
    pub size: u64,
}

impl Attachment {
    pub fn check(&self) -> Result<(), DocumentError> {
        if (1..=MAX_DOCUMENT_SIZE).contains(&self.size) {
            Ok(())
        } else {
            Err(DocumentError::Size)
        }
    }
}

text!(
    /// The title of a procedure, round document or gathering; public.
    Title,
    "title",
    300
);
text!(
    /// A reason given by an organiser or moderator (a cancellation, a hiding); public.
    Reason,
    "reason",
    1000
);
text!(
    /// An organiser's public text: an answer, a decision's summary.
    PublicText,
    "public text",
    20000
);
text!(
    /// A participant's text (a statement, a comment). Personal data: only sealed.
    ContributionText,
    "contribution text",
    20000
);
text!(
    /// The name a participant shows publicly beside a comment. Personal data: only
    /// sealed, and gone after erasure.
    Pseudonym,
    "pseudonym",
    60
);
token!(
    /// A topic a procedure is filed under (`verkehr`, `umwelt`, `wohnen`).
    Topic,
    "topic",
    64
);

/// Truncates an instant to the microseconds the record format keeps, so an event decided
/// in memory equals the same event read back from the log.
fn instant(t: DateTime<Utc>) -> DateTime<Utc> {
    truncate_micros(t)
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

    /// Checks an event's stored form: type, canonical `data` and `personal`, and that it
    /// reads back as the same event — the exact spelling that is stored and hashed.
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

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0000 | n)
    }

    pub fn days(n: i64) -> chrono::Duration {
        chrono::Duration::days(n)
    }

    pub fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    pub fn hash(c: char) -> super::Sha256Hex {
        super::Sha256Hex::parse(&c.to_string().repeat(64)).expect("hash")
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn streams_of_the_three_aggregates() {
        assert_eq!(
            ProcedureId(uuid(1)).stream_id().as_str(),
            "participation-0193a1b2-0000-7000-8000-000000000001"
        );
        assert_eq!(
            ContributionId(uuid(2)).stream_id().as_str(),
            "contribution-0193a1b2-0000-7000-8000-000000000002"
        );
        assert_eq!(
            GatheringId(uuid(3)).stream_id().as_str(),
            "gathering-0193a1b2-0000-7000-8000-000000000003"
        );
        assert_eq!(
            ProcedureId::from_stream(&ContributionId(uuid(2)).stream_id()),
            None
        );
    }

    #[test]
    fn regions_are_saxon_ags() {
        for good in ["14000000", "14612000", "14627010"] {
            assert_eq!(
                Ags::parse(good).map(|a| a.as_str().to_owned()),
                Ok(good.to_owned())
            );
        }
        for bad in [
            "",
            "1461200",
            "146120000",
            "15612000",
            "1461200a",
            " 14612000",
        ] {
            assert_eq!(Ags::parse(bad), Err(GeoError::Ags), "{bad:?}");
            assert!(serde_json::from_value::<Ags>(bad.into()).is_err());
        }
    }

    #[test]
    fn positions_lie_within_saxony() {
        // Dresden, Leipzig, Görlitz, Plauen.
        for (lon, lat) in [
            (13.7373, 51.0504),
            (12.3731, 51.3397),
            (14.9872, 51.1528),
            (12.1374, 50.4952),
        ] {
            assert!(Position::new(lon, lat).is_ok(), "{lon},{lat}");
        }
        // Berlin, Prague, swapped coordinates, off the globe.
        for (lon, lat) in [
            (13.405, 52.52),
            (14.4378, 50.0755),
            (51.05, 13.73),
            (200.0, 51.0),
        ] {
            assert_eq!(
                Position::new(lon, lat),
                Err(GeoError::OutsideSaxony),
                "{lon},{lat}"
            );
        }
        assert_eq!(Position::new(f64::NAN, 51.0), Err(GeoError::OutsideSaxony));
    }

    #[test]
    fn geometries_are_geojson_points_and_closed_polygons_in_saxony() {
        let point: Geometry =
            serde_json::from_str(r#"{"type":"Point","coordinates":[13.7373,51.0504]}"#)
                .expect("point");
        assert_eq!(
            serde_json::to_string(&point).expect("json"),
            r#"{"type":"Point","coordinates":[13.7373,51.0504]}"#
        );
        let square = r#"{"type":"Polygon","coordinates":[[[13.7,51.0],[13.8,51.0],[13.8,51.1],[13.7,51.1],[13.7,51.0]]]}"#;
        let polygon: Geometry = serde_json::from_str(square).expect("polygon");
        assert_eq!(
            polygon.bounds(),
            BoundingBox {
                min_lon: 13.7,
                min_lat: 51.0,
                max_lon: 13.8,
                max_lat: 51.1
            }
        );
        for bad in [
            r#"{"type":"Point","coordinates":[13.4,52.5]}"#,
            r#"{"type":"Point","coordinates":[13.7]}"#,
            r#"{"type":"Point","coordinates":[13.7,51.0],"crs":"x"}"#,
            r#"{"type":"Line","coordinates":[13.7,51.0]}"#,
            r#"{"type":"Polygon","coordinates":[[[13.7,51.0],[13.8,51.0],[13.8,51.1],[13.7,51.1]]]}"#,
            r#"{"type":"Polygon","coordinates":[[[13.7,51.0],[13.8,51.0],[13.7,51.0]]]}"#,
            r#"{"type":"Polygon","coordinates":[]}"#,
        ] {
            assert!(serde_json::from_str::<Geometry>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounding_boxes_are_checked() {
        let b = BoundingBox::parse("13.6,50.9,13.9,51.2").expect("bbox");
        assert!(b.contains(Position::new(13.7373, 51.0504).expect("p")));
        assert!(!b.contains(Position::new(12.3731, 51.3397).expect("p")));
        assert!(b.intersects(&SAXONY));
        assert!(!b.intersects(&BoundingBox::parse("0,0,1,1").expect("bbox")));
        for bad in [
            "",
            "1,2,3",
            "1,2,3,4,5",
            "x,1,2,3",
            "-181,0,0,0",
            "0,-91,0,0",
            "0,0,181,0",
            "0,0,0,91",
            "14,50,13,51",
            "13,52,14,51",
            "NaN,0,1,1",
            "inf,0,1,1",
        ] {
            assert_eq!(
                BoundingBox::parse(bad),
                Err(GeoError::BoundingBox),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn document_hashes_are_64_lowercase_hex_digits() {
        let good = "ab".repeat(32);
        assert!(Sha256Hex::parse(&good).is_ok());
        for bad in [
            "",
            &"ab".repeat(31),
            &"AB".repeat(32),
            &format!("{}g", "a".repeat(63)),
            &"a".repeat(65),
        ] {
            assert_eq!(Sha256Hex::parse(bad), Err(DocumentError::Hash), "{bad:?}");
            assert!(serde_json::from_value::<Sha256Hex>(bad.into()).is_err());
        }
        let doc = |size| DocumentRef {
            sha256: hash('a'),
            size,
            title: Title::parse("Planzeichnung").expect("title"),
        };
        assert_eq!(doc(1).check(), Ok(()));
        assert_eq!(doc(MAX_DOCUMENT_SIZE).check(), Ok(()));
        assert_eq!(doc(0).check(), Err(DocumentError::Size));
        assert_eq!(doc(MAX_DOCUMENT_SIZE + 1).check(), Err(DocumentError::Size));
    }

    #[test]
    fn formats_name_their_contributions() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.as_str()), Some(f));
            assert_eq!(serde_json::to_value(f).expect("json"), f.as_str());
        }
        assert_eq!(Format::parse("Dialog"), None);
        assert_eq!(
            Format::Bauleitplanung.contribution_kind(),
            Some(ContributionKind::Statement)
        );
        assert_eq!(Format::EventManagement.contribution_kind(), None);
        for s in Stage::ALL {
            assert_eq!(serde_json::to_value(s).expect("json"), s.as_str());
        }
        assert!(!ContributionKind::Statement.text_is_public());
        assert!(ContributionKind::Comment.text_is_public());
    }
}
