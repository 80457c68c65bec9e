//! JSON request bodies. Every JSON body the API reads — an append, a GDPR command, a
//! consumer's set-up — is parsed here, strictly: it must be I-JSON (RFC 7493; no repeated
//! member names, no number the log would store as another number), checked by
//! `amtsbuch_domain::ijson` before `serde_json` reads it. A refusal is an `invalid-body`
//! problem; one about I-JSON also carries the JSON pointer (RFC 6901) of the offending
//! value in its `pointer` member.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;

use amtsbuch_domain::ijson::{self, StrictError};

use crate::problem::Problem;

/// Parse a body as `T`; `shape` describes what the route takes, for the problem's detail.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, Problem> {
    ijson::from_slice(bytes).map_err(|e| match e {
        // The serde message names the field, never echoes a long value back.
        StrictError::Json(e) => {
            Problem::bad_request("invalid-body", format!("the body must be {shape}: {e}"))
        }
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
