//! JSON request bodies. Every JSON body the API reads — an append, a GDPR command, a
//! consumer's set-up — is parsed here, strictly: it must be I-JSON (RFC 7493; no repeated
//! member names, no number the log would store as another number), checked by
//! `amtsbuch_domain::ijson` before `serde_json` reads it. A refusal is an `invalid-body`
//! problem; one about I-JSON also carries the JSON pointer (RFC 6901) of the offending
//! value in its `pointer` member.
//!
//! Instants and calendar dates, in bodies and in queries alike, are read here too, in the
//! one spelling the record writes: [`instant`] and [`date`] (and their serde forms in
//! [`strict`]). Whatever another spelling means (an offset, a space for the `T`, a
//! seventh fractional digit, a year beyond 9999) would be stored changed or overflow the
//! domain's arithmetic later, so it is refused, naming the field and the form.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::de::DeserializeOwned;
use serde_json::Value;

use amtsbuch_domain::ijson::{self, StrictError};

use crate::problem::Problem;

/// Parse a body as `T`; `shape` describes what the route takes, for the problem's detail.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, Problem> {
    ijson::from_slice(bytes).map_err(|e| match e {
        // The serde message names the field, never echoes a long value back.
        StrictError::Json(e) => match misspelt_time(bytes, &e.to_string()) {
            // A refused instant or date: name the member by its pointer, like I-JSON's.
            Some(pointer) => Problem::bad_request(
                "invalid-body",
                format!("the body must be {shape}: {pointer}: {e}"),
            )
            .with("pointer", pointer),
            None => {
                Problem::bad_request("invalid-body", format!("the body must be {shape}: {e}"))
            }
        },
        StrictError::NotIJson(v) => Problem::bad_request(
            "invalid-body",
            format!("the body must be I-JSON (RFC 7493), so that the log stores exactly what was sent: {v}"),
        )
        .with("pointer", v.pointer),
    })
}

/// Parse a body that axum has read (or failed to read) as `T`.
pub fn json<T: DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Problem> {
    let raw = raw.map_err(|e| Problem::bad_request("invalid-body", e.body_text()))?;
    parse_json(&raw, shape)
}

/// [`json`] for a route whose body may be left out: an empty (or blank) body is
/// `T::default()`.
pub fn optional<T: DeserializeOwned + Default>(
    raw: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Problem> {
    match &raw {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(T::default()),
        _ => json(raw, shape),
    }
}

/// The one spelling of an instant the API reads, as a problem's detail names it.
pub const INSTANT_FORM: &str = "YYYY-MM-DDThh:mm:ss[.ffffff]Z: RFC 3339 in UTC (`Z`, no offset), a `T`, a year from 0000 to 9999, at most six fractional digits";

/// The one spelling of a calendar date the API reads.
pub const DATE_FORM: &str = "YYYY-MM-DD, a year from 0000 to 9999";

/// The OpenAPI pattern of [`INSTANT_FORM`] (attributes repeat it: they take literals only).
pub const INSTANT_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?Z$";

/// The OpenAPI pattern of [`DATE_FORM`].
pub const DATE_PATTERN: &str = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$";

/// The instant `raw` spells in [`INSTANT_FORM`], or `None` for any other text, or a day or
/// time that does not exist (a 30 February, a leap second `:60`). Never changed: whatever
/// it accepts, the record writes back as the same instant.
pub fn strict_instant(raw: &str) -> Option<DateTime<Utc>> {
    let b = raw.as_bytes();
    if b.len() < 20 || b.len() == 21 || b.len() > 27 || b[10] != b'T' || b[b.len() - 1] != b'Z' {
        return None;
    }
    let day = strict_date(raw.get(..10)?)?;
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let micros = match b.len() {
        20 => 0,
        n => {
            if b[19] != b'.' {
                return None;
            }
            number(20, n - 1)? * 10u32.pow(u32::try_from(27 - n).ok()?)
        }
    };
    let (hour, minute, second) = (number(11, 13)?, number(14, 16)?, number(17, 19)?);
    if second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_micro_opt(hour, minute, second, micros)?;
    Some(day.and_time(time).and_utc())
}

/// The date `raw` spells in [`DATE_FORM`], or `None`.
pub fn strict_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let number = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let year = i32::try_from(number(0, 4)?).ok()?;
    NaiveDate::from_ymd_opt(year, number(5, 7)?, number(8, 10)?)
}

/// An instant from the query parameter `field`: [`strict_instant`], or an `invalid-query`
/// problem that names the field and the form.
pub fn instant(field: &str, raw: &str) -> Result<DateTime<Utc>, Problem> {
    strict_instant(raw).ok_or_else(|| {
        Problem::bad_request(
            "invalid-query",
            format!("{field} must be an instant written {INSTANT_FORM}, such as 2026-11-29T10:00:00Z; got {}", shown(raw)),
        )
    })
}

/// A date from the query parameter `field`: [`strict_date`], or an `invalid-query` problem.
pub fn date(field: &str, raw: &str) -> Result<NaiveDate, Problem> {
    strict_date(raw).ok_or_else(|| {
        Problem::bad_request(
            "invalid-query",
            format!(
                "{field} must be a date written {DATE_FORM}, such as 2026-11-29; got {}",
                shown(raw)
            ),
        )
    })
}

/// A refused text as a detail quotes it: short texts in full, long ones by their length
/// (a detail never echoes much of what was sent).
fn shown(raw: &str) -> String {
    if raw.chars().count() <= 40 {
        format!("{raw:?}")
    } else {
        format!("a text of {} characters", raw.chars().count())
    }
}

/// The marker that starts the serde message of a refused instant or date, so that
/// [`parse_json`] can name the member.
const MISSPELT: &str = "not written ";

/// The pointer of the first string in `bytes` that [`strict`] refused with `message`.
fn misspelt_time(bytes: &[u8], message: &str) -> Option<String> {
    fn find(v: &Value, at: &mut String, hit: &dyn Fn(&str) -> bool) -> bool {
        let len = at.len();
        let found = match v {
            Value::String(s) => hit(s),
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                at.truncate(len);
                at.push_str(&format!("/{i}"));
                find(item, at, hit)
            }),
            Value::Object(members) => members.iter().any(|(name, item)| {
                at.truncate(len);
                at.push('/');
                at.push_str(&name.replace('~', "~0").replace('/', "~1"));
                find(item, at, hit)
            }),
            _ => false,
        };
        if !found {
            at.truncate(len);
        }
        found
    }
    if !message.starts_with(MISSPELT) {
        return None;
    }
    let instant = message.starts_with(&format!("{MISSPELT}as an instant"));
    let value: Value = serde_json::from_slice(bytes).ok()?;
    let hit = |s: &str| {
        let refused = if instant {
            strict_instant(s).is_none()
        } else {
            strict_date(s).is_none()
        };
        refused && message.contains(&format!("got {}", shown(s)))
    };
    let mut at = String::new();
    find(&value, &mut at, &hit).then_some(at)
}

/// Serde forms of [`strict_instant`] and [`strict_date`], for request members:
/// `#[serde(deserialize_with = "crate::body::strict::instant")]`, and `opt_instant` (with
/// `#[serde(default)]`), `date`, `opt_date`. A refusal becomes an `invalid-body` problem
/// whose `pointer` names the member (or, in a query, an `invalid-query` one).
pub mod strict {
    use chrono::{DateTime, NaiveDate, Utc};
    use serde::{de::Error, Deserialize, Deserializer};

    use super::{shown, DATE_FORM, INSTANT_FORM, MISSPELT};

    pub fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let raw = String::deserialize(d)?;
        super::strict_instant(&raw).ok_or_else(|| {
            D::Error::custom(format!(
                "{MISSPELT}as an instant is written, {INSTANT_FORM}; got {}",
                shown(&raw)
            ))
        })
    }

    pub fn opt_instant<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "instant")] DateTime<Utc>);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
    }

    pub fn date<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
        let raw = String::deserialize(d)?;
        super::strict_date(&raw).ok_or_else(|| {
            D::Error::custom(format!(
                "{MISSPELT}as a date is written, {DATE_FORM}; got {}",
                shown(&raw)
            ))
        })
    }

    pub fn opt_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(deserialize_with = "date")] NaiveDate);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(t)| t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_records_spelling_of_an_instant_is_read() {
        for (raw, kept) in [
            ("2026-11-29T10:00:00Z", "2026-11-29T10:00:00.000000Z"),
            ("2026-11-29T10:00:00.5Z", "2026-11-29T10:00:00.500000Z"),
            ("2026-11-29T10:00:00.123456Z", "2026-11-29T10:00:00.123456Z"),
            ("0000-01-01T00:00:00Z", "0000-01-01T00:00:00.000000Z"),
            ("9999-12-31T23:59:59.999999Z", "9999-12-31T23:59:59.999999Z"),
            ("2024-02-29T00:00:00Z", "2024-02-29T00:00:00.000000Z"),
        ] {
            let t = strict_instant(raw).unwrap_or_else(|| panic!("{raw} refused"));
            assert_eq!(amtsbuch_domain::record::format_timestamp(&t), kept);
        }
        for raw in [
            "+262142-12-15T00:00:00Z",
            "-0001-01-01T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2026-11-29 10:00:00Z",
            "2026-11-29t10:00:00Z",
            "2026-11-29T10:00:00z",
            "2026-11-29T10:00:00+02:00",
            "2026-11-29T10:00:00+00:00",
            "2026-11-29T10:00:00-00:00",
            "2026-11-29T10:00:00",
            "2026-11-29T10:00Z",
            "2026-11-29T10:00:00.Z",
            "2026-11-29T10:00:00.1234567Z",
            "2026-11-29T10:00:60Z",
            "2026-11-29T24:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-13-01T10:00:00Z",
            "2026-1-29T10:00:00Z",
            "2026-11-29T1:00:00.00Z",
            "２026-11-29T10:00:00Z",
            "2026-11-29T10:00:0+Z",
            "",
            "yesterday",
        ] {
            assert_eq!(strict_instant(raw), None, "{raw} accepted");
        }
    }

    #[test]
    fn only_four_digit_calendar_dates_are_read() {
        assert_eq!(
            strict_date("2026-12-31"),
            NaiveDate::from_ymd_opt(2026, 12, 31)
        );
        assert_eq!(strict_date("0000-01-01"), NaiveDate::from_ymd_opt(0, 1, 1));
        for raw in [
            "+12345-01-01",
            "12345-01-01",
            "2026-2-01",
            "2026-02-30",
            "2026-02-01T00:00:00Z",
            " 2026-02-01",
            "2026/02/01",
            "+026-02-01",
        ] {
            assert_eq!(strict_date(raw), None, "{raw} accepted");
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        #[serde(default, deserialize_with = "strict::opt_instant")]
        at: Option<DateTime<Utc>>,
        #[serde(default)]
        inner: Vec<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[serde(deserialize_with = "strict::date")]
        day: NaiveDate,
        #[serde(default)]
        note: String,
    }

    #[test]
    fn a_misspelt_instant_or_date_in_a_body_is_named_by_its_pointer() {
        let ok: Shape = parse_json(
            br#"{"at":"2026-11-29T10:00:00Z","inner":[{"day":"2026-11-29"}]}"#,
            "a shape",
        )
        .expect("strict forms");
        assert!(ok.at.is_some() && ok.inner.len() == 1);
        assert_eq!(
            ok.inner[0].day,
            NaiveDate::from_ymd_opt(2026, 11, 29).expect("day")
        );
        assert!(ok.inner[0].note.is_empty());
        let absent: Shape = parse_json(br#"{"at":null}"#, "a shape").expect("null");
        assert!(absent.at.is_none());
        for (body, pointer) in [
            (r#"{"at":"2026-11-29T12:00:00+02:00"}"#, "/at"),
            (r#"{"at":"+262142-12-15T00:00:00Z"}"#, "/at"),
            (
                r#"{"inner":[{"day":"2026-11-29","note":"x"},{"note":"2026-1-1","day":"2026-1-1"}]}"#,
                "/inner/1/day",
            ),
        ] {
            let p = parse_json::<Shape>(body.as_bytes(), "a shape").expect_err(body);
            assert_eq!(p.extra["pointer"], pointer, "{body}: {p:?}");
            assert_eq!((p.status.as_u16(), p.kind), (400, "invalid-body"));
            assert!(p.detail.contains("a year from 0000 to 9999"), "{p:?}");
        }
        let q = instant("from", "2026-11-29T12:00:00+02:00").expect_err("offset");
        assert_eq!(q.kind, "invalid-query");
        assert!(
            q.detail.starts_with("from must be an instant written YYYY"),
            "{q:?}"
        );
    }
}
