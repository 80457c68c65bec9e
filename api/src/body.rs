//! JSON request bodies: one parser for the body of every route of every domain, so that a
//! malformed body gets the same `invalid-body` problem everywhere.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Parse a body that axum has read (or failed to read) as `T`; `shape` describes what the
/// route takes, for the problem's detail.
pub fn json<T: DeserializeOwned>(
    raw: Result<Bytes, BytesRejection>,
    shape: &str,
) -> Result<T, Problem> {
    let raw = raw.map_err(|e| Problem::bad_request("invalid-body", e.body_text()))?;
    serde_json::from_slice(&raw).map_err(|e| {
        // The serde message names the field, never echoes a long value back.
        Problem::bad_request("invalid-body", format!("the body must be {shape}: {e}"))
    })
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
