//! RFC 9457 problem details: the one shape every HTTP error of Amtsbuch takes.
//!
//! Expected rejections (bad input, version conflicts) carry a specific `type`, a `detail`
//! that tells the caller what to change, and extension members where a program needs them
//! (e.g. the actual stream version). Unexpected failures are logged once, here, with the
//! full error, and answered with an opaque 5xx body so nothing internal leaks.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use amtsbuch_domain::AppendError;
use amtsbuch_infra::db::DbError;
use amtsbuch_infra::StoreError;

/// What a 503 asks the caller to wait, in seconds: the store answers within about a second
/// whether it works, and probes its own writer every second.
pub const RETRY_AFTER_SECS: &str = "1";

/// A problem details response.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    pub extra: Map<String, Value>,
    /// Response headers the problem needs besides its content type, e.g. the
    /// `WWW-Authenticate` challenge of a 401.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            kind,
            title,
            detail: detail.into(),
            extra: Map::new(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            kind,
            "The request is invalid",
            detail,
        )
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// The caller is authenticated but none of its roles may do this.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden", detail)
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_owned(), value.into());
        self
    }

    /// Add a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// An unexpected failure: logged here, answered opaquely.
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
            "the request could not be completed; the error has been logged",
        )
    }

    /// The store cannot be used now: logged here, answered opaquely, with `Retry-After`.
    pub fn unavailable(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "store unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Service unavailable",
            "the event store is not reachable; retry later (appends with the same event ids are safe to retry)",
        )
        .with_header(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS))
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:amtsbuch:problem:{}", self.kind)),
        );
        body.insert("title".into(), json!(self.title));
        body.insert("status".into(), json!(self.status.as_u16()));
        body.insert("detail".into(), json!(self.detail));
        body.extend(self.extra);
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Value::Object(body).to_string(),
        )
            .into_response();
        response.headers_mut().extend(self.headers);
        response
    }
}

/// A read model's failure is the store's: a statement that failed (the database is down, the
/// pool timed out under load) is an outage the caller may retry (`503` with `Retry-After`),
/// an undecodable column corrupt data (`500`). Handlers answer `?` on a read-model query.
impl From<DbError> for Problem {
    fn from(e: DbError) -> Self {
        StoreError::from(e).into()
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Append(AppendError::WrongExpectedVersion {
                stream,
                expected,
                actual,
            }) => Problem::new(
                StatusCode::CONFLICT,
                "wrong-expected-version",
                "The stream is not at the expected version",
                format!("stream {stream} is at version {actual}, but Expected-Version was {expected}; read the stream and retry with Expected-Version: {actual}"),
            )
            .with("stream", stream.as_str())
            .with("expected_version", expected.to_string())
            .with("actual_version", actual),
            StoreError::Append(AppendError::IdempotencyConflict { event_id }) => Problem::new(
                StatusCode::CONFLICT,
                "event-id-conflict",
                "The event id is already used",
                format!("event id {event_id} is already in the log with other content or in another append; a retry must repeat the original append exactly, a new event needs a new id"),
            )
            .with("event_id", event_id.to_string()),
            StoreError::Append(AppendError::Invalid(detail)) => {
                Problem::bad_request("invalid-events", detail)
            }
            StoreError::Append(AppendError::TooLarge {
                event_id,
                size,
                limit,
            }) => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "record-too-large",
                "An event is too large to be distributed",
                format!("event {event_id} would be stored as a record of {size} bytes, but this log stores records of at most {limit} bytes: every record must fit into one NATS message; make its data smaller or split it over several events"),
            )
            .with("event_id", event_id.to_string())
            .with("record_bytes", size)
            .with("max_record_bytes", limit),
            StoreError::Unavailable(_) | StoreError::Closed => Problem::unavailable(&e),
            StoreError::Corrupt { .. } => Problem::internal(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_read_model_is_an_outage_to_retry() {
        let p = Problem::from(DbError::Database(
            "pool timed out while waiting for an open connection".into(),
        ));
        assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(p
            .headers
            .iter()
            .any(|(name, _)| name == header::RETRY_AFTER));
        let corrupt = Problem::from(DbError::Decode {
            column: "status".into(),
            reason: "not a status".into(),
        });
        assert_eq!(corrupt.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !corrupt.detail.contains("not a status"),
            "{}",
            corrupt.detail
        );
    }
}
