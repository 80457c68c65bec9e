//! The GDPR read models and the data protection officer's queries.
//!
//! Six projections, each with its own tables (created by the GDPR migrations):
//!
//! - `consents` (`consents`): one row per consent, its status as of its last event, its
//!   current scope and term — the index from a subject to its consent streams, and the
//!   list of consents about to expire;
//! - `disclosures` (`disclosures`): one row per disclosure decision, granted or denied,
//!   indexed by subject and by the consent it was granted under;
//! - `processing_overview` (`overview`): the Art. 30 GDPR counts per purpose, data
//!   category, recipient, legal basis and kind, kept by upserts;
//! - `accounts` (`accounts`): accounts without master data, their identity links' levels
//!   and the erasures (`SubjectErased`);
//! - `retention_holds` (`retention`): the holds that forbid erasure;
//! - `subject_index` (`subjects`): every position of the log that concerns a subject, for
//!   the Art. 15 export.
//!
//! The replay of a subject's consents (`history`) is answered from the events themselves,
//! not from a read model: the read model only says which streams to read, and one query
//! fetches their stored records, which are folded with the domain's own `as_of`. So the
//! answer is exactly what the domain would decide, and it carries each event's position
//! and leaf hash, which an auditor can check against a signed checkpoint.
//!
//! Nothing here decrypts. Events are decoded without a key, so personal parts read as
//! `Personal::Erased`, and the tables hold only pseudonymous ids, categories, purposes,
//! recipients, legal bases, statuses and instants.
//!
//! A record in a GDPR stream that does not read as its event (a client can append anything
//! through the raw log API) is logged and skipped by the projections rather than refused
//! (`crate::projection::read_event`): a refusal would stop the projection at that event
//! for good. The replay of a subject's
//! consents, which reads the events itself, reports such a record in one of the subject's
//! consent streams as [`GdprQueryError::Unreadable`] instead of passing over it.
//!
//! The projections crate has no `serde` dependency of its own, so the result types cannot
//! derive `Serialize`; each has a `to_json` that gives its JSON form, with instants in the
//! record format and enumerations spelled as in the events.

use std::sync::Arc;

use amtsbuch_domain::event::decode;
use amtsbuch_domain::gdpr::consent::ConsentBasis;
use amtsbuch_domain::gdpr::disclosure::StatutoryBasis;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use serde_json::Value as Json;
use sqlx::types::chrono::{DateTime, Utc};

use crate::db::DbError;
use crate::projection::{Projection, ProjectionError};

/// The serde name of a unit enum value (`stammdaten`, `art6_1_a`, `withdrawn`): how the
/// events spell it and how the read models store it. A macro rather than a function
/// because this crate cannot name serde's `Serialize` in a bound.
macro_rules! name_of {
    ($value:expr) => {
        match serde_json::to_value(&$value) {
            Ok(serde_json::Value::String(name)) => Ok(name),
            Ok(other) => Err(format!("{other} is not a name")),
            Err(e) => Err(e.to_string()),
        }
    };
}

/// The JSON text of a value (sets of categories, purposes, recipients, key ids), in the
/// spelling the events use.
macro_rules! json_of {
    ($value:expr) => {
        serde_json::to_string(&$value).map_err(|e| e.to_string())
    };
}

/// Reads a stored serde name back as `$ty`.
macro_rules! parse_name {
    ($ty:ty, $column:expr, $text:expr) => {
        serde_json::from_value::<$ty>(serde_json::Value::String($text))
            .map_err(|e| $crate::gdpr::decode_error($column, e.to_string()))
    };
}

/// Reads stored JSON text back as `$ty`.
macro_rules! parse_json {
    ($ty:ty, $column:expr, $text:expr) => {
        serde_json::from_str::<$ty>(&$text)
            .map_err(|e| $crate::gdpr::decode_error($column, e.to_string()))
    };
}

/// A JSON value of a domain value; `null` if it had none (never, for the types used).
macro_rules! to_json {
    ($value:expr) => {
        serde_json::to_value(&$value).unwrap_or(serde_json::Value::Null)
    };
}

pub mod accounts;
pub mod consents;
pub mod disclosures;
pub mod history;
pub mod overview;
pub mod retention;
pub mod subjects;

pub use accounts::{account, accounts_due_for_erasure, erasure, AccountRow, Accounts, ErasureRow};
pub use consents::{consent, consents_of, expiring_consents, ConsentRow, Consents};
pub use disclosures::{
    disclosures_by_consent, disclosures_under_consent, Decision, DisclosureRow, Disclosures,
    DisclosuresOfSubject,
};
pub use history::{consent_history, current_consents, ConsentAsOf, LoggedEvent};
pub use overview::{processing_overview, OverviewRow, ProcessingKind, ProcessingOverview};
pub use retention::{active_holds, holds_of, HoldRow, RetentionHolds};
pub use subjects::{consents_due_for_expiry, subject_positions, SubjectIndex};

/// The GDPR projections, which the GDPR domain module registers with the service.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(Consents),
        Arc::new(Disclosures),
        Arc::new(ProcessingOverview),
        Arc::new(Accounts),
        Arc::new(RetentionHolds),
        Arc::new(SubjectIndex),
    ]
}

/// Why a query that folds events failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GdprQueryError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// A stored record in one of the subject's consent streams does not read as a consent
    /// event. The replay refuses to answer rather than leave it out.
    #[error("the event at position {position} in a consent stream of this subject cannot be read: {reason}")]
    Unreadable { position: u64, reason: String },
}

/// The legal basis of a processing, as the events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegalBasis {
    /// The consent's own basis (`art6_1_a`, `art9_2_a`).
    Consent(ConsentBasis),
    /// Another basis a disclosure was granted under (`art6_1_b` … `art6_1_e`).
    Statutory(StatutoryBasis),
    /// A disclosure granted under a consent whose `ConsentGiven` could not be read from
    /// the log (`consent_unreadable`); only a log written around the service has that.
    ConsentUnreadable,
}

const CONSENT_UNREADABLE: &str = "consent_unreadable";

impl LegalBasis {
    /// The code stored and shown: the serde name of the basis.
    pub fn code(&self) -> String {
        let named = match self {
            Self::Consent(b) => name_of!(b),
            Self::Statutory(b) => name_of!(b),
            Self::ConsentUnreadable => return CONSENT_UNREADABLE.to_owned(),
        };
        // Unit variants always serialize to their names; the fallback is never taken.
        named.unwrap_or_else(|_| CONSENT_UNREADABLE.to_owned())
    }

    /// Reads a stored code.
    pub fn parse(column: &str, code: &str) -> Result<Self, DbError> {
        if code == CONSENT_UNREADABLE {
            return Ok(Self::ConsentUnreadable);
        }
        let text = Json::String(code.to_owned());
        if let Ok(b) = serde_json::from_value::<ConsentBasis>(text.clone()) {
            return Ok(Self::Consent(b));
        }
        serde_json::from_value::<StatutoryBasis>(text)
            .map(Self::Statutory)
            .map_err(|_| decode_error(column, format!("{code:?} is not a legal basis")))
    }
}

pub(crate) fn decode_error(column: &str, reason: impl Into<String>) -> DbError {
    DbError::Decode {
        column: column.to_owned(),
        reason: reason.into(),
    }
}

/// A value that failed to parse from a column.
pub(crate) fn parsed<T, E: std::fmt::Display>(
    column: &str,
    value: Result<T, E>,
) -> Result<T, DbError> {
    value.map_err(|e| decode_error(column, e.to_string()))
}

/// The error for an event whose values could not be written.
pub(crate) fn unwritable(event: &RecordedEvent, reason: String) -> ProjectionError {
    ProjectionError::Apply {
        position: event.position,
        reason,
    }
}

/// The legal basis of the consent `stream`, from its first event in the log, which
/// `ConsentGiven` always is. Reading the log rather than the `consents` read model keeps
/// a projection independent of how far another projection has got, so a rebuild yields
/// the same rows.
pub(crate) async fn consent_basis(
    tx: &mut crate::db::ReadTx,
    stream: &StreamId,
) -> Result<LegalBasis, DbError> {
    use amtsbuch_domain::gdpr::consent::ConsentEvent;
    let row = tx
        .fetch_optional(
            "SELECT record FROM events WHERE stream_id = $1 AND stream_version = 1",
            &[stream.as_str().into()],
        )
        .await?;
    let basis = row
        .map(|r| r.get::<Vec<u8>>("record"))
        .transpose()?
        .and_then(|bytes| EventRecord::from_bytes(&bytes).ok())
        .and_then(|record| decode::<ConsentEvent>(&record, None).ok())
        .and_then(|event| match event {
            ConsentEvent::Given(g) => Some(LegalBasis::Consent(g.legal_basis)),
            _ => None,
        });
    Ok(basis.unwrap_or_else(|| {
        tracing::warn!(stream = %stream, "a disclosure names a consent whose ConsentGiven cannot be read");
        LegalBasis::ConsentUnreadable
    }))
}

/// The latest instant whose record-format text still sorts as time does (four-digit
/// years); later instants, and an overflow (`None`), are clamped to it.
pub(crate) fn capped(t: Option<DateTime<Utc>>) -> DateTime<Utc> {
    let last = DateTime::<Utc>::from_timestamp(253_402_300_799, 999_999_000)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    t.map_or(last, |t| t.min(last))
}

/// An instant in the record format, for JSON.
pub(crate) fn ts(t: &DateTime<Utc>) -> Json {
    Json::String(format_timestamp(t))
}

/// An optional instant in the record format, for JSON (`null` when absent).
pub(crate) fn opt_ts(t: &Option<DateTime<Utc>>) -> Json {
    t.as_ref().map_or(Json::Null, ts)
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legal_bases_read_back_from_their_codes() {
        for basis in [
            LegalBasis::Consent(ConsentBasis::Consent),
            LegalBasis::Consent(ConsentBasis::ExplicitConsent),
            LegalBasis::Statutory(StatutoryBasis::Contract),
            LegalBasis::Statutory(StatutoryBasis::LegalObligation),
            LegalBasis::Statutory(StatutoryBasis::VitalInterests),
            LegalBasis::Statutory(StatutoryBasis::PublicTask),
            LegalBasis::ConsentUnreadable,
        ] {
            assert_eq!(LegalBasis::parse("b", &basis.code()), Ok(basis));
        }
        assert_eq!(
            LegalBasis::Consent(ConsentBasis::ExplicitConsent).code(),
            "art9_2_a"
        );
        assert!(LegalBasis::parse("b", "art6_1_f").is_err());
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }
}
