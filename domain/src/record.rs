//! The event record: the envelope every event is stored in, and its canonical bytes.
//!
//! A record is serialized once, at append, as RFC 8785 canonical JSON; those bytes are
//! stored verbatim and are what the leaf hash, the chain and every proof cover. Readers parse
//! the stored bytes; nothing ever re-serializes a stored record, so a verifier can hash
//! exactly what the database holds. Fields that are absent are omitted rather than `null`,
//! so adding an optional field later leaves every existing record's bytes unchanged.
//!
//! Personal data never goes into `data` in plaintext: it goes into `sealed`, encrypted under
//! the data subject's key (the slot is defined here so the record format stays stable).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::jcs::{self, CanonicalError};
use crate::stream::{AuthorityId, EventType, ServiceKey, StreamId};

/// The largest integer an I-JSON number (and so a canonical record) can carry exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Limits on the free-text envelope fields; they carry identifiers, not prose.
pub const MAX_LABEL_LEN: usize = 200;

/// Why a record could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("event data is not canonicalizable JSON: {0}")]
    Canonical(#[from] CanonicalError),
    #[error("stored record is not a valid Amtsbuch record: {0}")]
    Malformed(String),
}

/// The sealed personal-data section of a record: ciphertext under a per-subject data key.
/// Erasing the subject destroys the key; the ciphertext (and so every hash) stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSection {
    /// Pseudonymous reference of the data subject whose key sealed this section.
    pub subject: String,
    /// Which version of the subject's data key was used.
    pub key_id: String,
    /// Algorithm identifier, e.g. `A256GCM`.
    pub alg: String,
    /// Base64 nonce.
    pub nonce: String,
    /// Base64 ciphertext including the authentication tag.
    pub ciphertext: String,
}

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: Uuid,
    pub stream_id: StreamId,
    /// 1-based version of the event within its stream.
    pub stream_version: u64,
    /// 1-based global position; the event is leaf `position - 1` of the Merkle tree.
    pub position: u64,
    pub event_type: EventType,
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Pseudonymous id of who caused the event (an account id or a system name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The authority the event is addressed to (routing); decides who may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<AuthorityId>,
    /// The administrative service (LeiKa key) the event belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceKey>,
    #[serde(with = "timestamp")]
    pub occurred_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub recorded_at: DateTime<Utc>,
    pub data: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedSection>,
}

impl EventRecord {
    /// The canonical bytes of this record: what is stored and hashed.
    ///
    /// The envelope's keys are fixed, so they are written directly in RFC 8785 order
    /// (all ASCII, so UTF-16 order is byte order) instead of going through a generic JSON
    /// value; only `data` goes through the general canonicalizer. This runs for every
    /// event under the head lock, so it matters. A test pins it to the generic path.
    pub fn to_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut out = Vec::with_capacity(320);
        let mut w = Members::new(&mut out);
        if let Some(actor) = &self.actor {
            w.key("actor");
            jcs::write_string(actor, w.out);
        }
        if let Some(authority) = &self.authority {
            w.key("authority");
            jcs::write_string(authority.as_str(), w.out);
        }
        if let Some(id) = self.causation_id {
            w.key("causation_id");
            write_uuid(&id, w.out);
        }
        if let Some(id) = self.correlation_id {
            w.key("correlation_id");
            write_uuid(&id, w.out);
        }
        w.key("data");
        jcs::canonicalize_into(&self.data, w.out)?;
        w.key("event_id");
        write_uuid(&self.event_id, w.out);
        w.key("event_type");
        jcs::write_string(self.event_type.as_str(), w.out);
        w.key("occurred_at");
        jcs::write_string(&format_timestamp(&self.occurred_at), w.out);
        w.key("position");
        write_integer(self.position, w.out)?;
        w.key("recorded_at");
        jcs::write_string(&format_timestamp(&self.recorded_at), w.out);
        w.key("schema_version");
        write_integer(u64::from(self.schema_version), w.out)?;
        if let Some(sealed) = &self.sealed {
            w.key("sealed");
            let mut s = Members::new(w.out);
            for (k, v) in [
                ("alg", &sealed.alg),
                ("ciphertext", &sealed.ciphertext),
                ("key_id", &sealed.key_id),
                ("nonce", &sealed.nonce),
                ("subject", &sealed.subject),
            ] {
                s.key(k);
                jcs::write_string(v, s.out);
            }
            s.close();
        }
        if let Some(service) = &self.service {
            w.key("service");
            jcs::write_string(service.as_str(), w.out);
        }
        w.key("stream_id");
        jcs::write_string(self.stream_id.as_str(), w.out);
        w.key("stream_version");
        write_integer(self.stream_version, w.out)?;
        if let Some(tenant) = &self.tenant {
            w.key("tenant");
            jcs::write_string(tenant, w.out);
        }
        w.close();
        Ok(out)
    }

    /// Parse stored bytes. This does not re-check canonical form; hashes cover the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))
    }
}

/// Writes the members of one JSON object; keys must be given in canonical order.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Members<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        Self { out, first: true }
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn close(self) {
        self.out.push(b'}');
    }
}

fn write_uuid(id: &Uuid, out: &mut Vec<u8>) {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push(b'"');
    out.extend_from_slice(id.hyphenated().encode_lower(&mut buf).as_bytes());
    out.push(b'"');
}

fn write_integer(n: u64, out: &mut Vec<u8>) -> Result<(), RecordError> {
    if n > MAX_SAFE_INTEGER {
        return Err(RecordError::Canonical(CanonicalError::NumberOutOfRange(
            n.to_string(),
        )));
    }
    // Integers up to 2^53 print as plain digits in ECMAScript, which RFC 8785 follows.
    out.extend_from_slice(n.to_string().as_bytes());
    Ok(())
}

/// Truncate to the microsecond precision that PostgreSQL and the record format keep, so a
/// timestamp read back equals the one written.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    t - chrono::Duration::nanoseconds(i64::from(nanos % 1000))
}

/// RFC 3339 timestamps in UTC with exactly six fractional digits, e.g.
/// `2026-11-22T13:31:00.123456Z`: one spelling per instant, as canonical bytes need.
pub mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// [`timestamp`] for optional instants; absent members are omitted (with
/// `skip_serializing_if = "Option::is_none"`).
pub mod opt_timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::timestamp::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::timestamp")] DateTime<Utc>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
    }
}

/// Format a timestamp the way records do.
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample() -> EventRecord {
        let t = Utc
            .with_ymd_and_hms(2026, 11, 22, 13, 31, 0)
            .single()
            .expect("valid date");
        EventRecord {
            event_id: Uuid::parse_str("01936b2e-1e00-7000-8000-000000000001").expect("uuid"),
            stream_id: StreamId::parse("consent-42").expect("stream"),
            stream_version: 1,
            position: 7,
            event_type: EventType::parse("ConsentGiven").expect("type"),
            schema_version: 1,
            tenant: Some("14612000".into()),
            actor: None,
            correlation_id: None,
            causation_id: None,
            authority: None,
            service: None,
            occurred_at: t,
            recorded_at: t + chrono::Duration::microseconds(1500),
            data: serde_json::json!({"z": 1, "a": [true, null, 1.5], "ä": "x"}),
            sealed: None,
        }
    }

    #[test]
    fn canonical_bytes_are_stable() {
        // The serialized form is a compatibility boundary: every stored hash depends on it.
        let bytes = sample().to_bytes().expect("canonical");
        assert_eq!(
            String::from_utf8(bytes).expect("utf8"),
            r#"{"data":{"a":[true,null,1.5],"z":1,"ä":"x"},"event_id":"01936b2e-1e00-7000-8000-000000000001","event_type":"ConsentGiven","occurred_at":"2026-11-22T13:31:00.000000Z","position":7,"recorded_at":"2026-11-22T13:31:00.001500Z","schema_version":1,"stream_id":"consent-42","stream_version":1,"tenant":"14612000"}"#
        );
    }

    #[test]
    fn the_direct_writer_matches_the_generic_canonicalizer() {
        let mut full = sample();
        full.actor = Some("account-\u{7f}\"x\"".into());
        full.correlation_id = Some(full.event_id);
        full.causation_id = Some(Uuid::nil());
        full.authority = Some(AuthorityId::parse("lra-meissen").expect("authority"));
        full.service = Some(ServiceKey::parse("99108001000000").expect("service"));
        full.sealed = Some(SealedSection {
            subject: "subject-1".into(),
            key_id: "k1".into(),
            alg: "A256GCM".into(),
            nonce: "bm9uY2U=".into(),
            ciphertext: "Y2lwaGVy".into(),
        });
        for r in [sample(), full] {
            let generic =
                jcs::canonicalize(&serde_json::to_value(&r).expect("value")).expect("jcs");
            assert_eq!(r.to_bytes().expect("direct"), generic);
        }
    }

    #[test]
    fn round_trip() {
        let r = sample();
        let bytes = r.to_bytes().expect("canonical");
        assert_eq!(EventRecord::from_bytes(&bytes), Ok(r));
    }

    #[test]
    fn big_integers_are_refused() {
        let mut r = sample();
        r.data = serde_json::json!({"n": 9007199254740993u64});
        assert!(matches!(r.to_bytes(), Err(RecordError::Canonical(_))));
    }

    #[test]
    fn truncation_keeps_micros() {
        let t = Utc
            .timestamp_opt(1_700_000_000, 123_456_789)
            .single()
            .expect("ts");
        assert_eq!(truncate_micros(t).timestamp_subsec_nanos(), 123_456_000);
    }
}
