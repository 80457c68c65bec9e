//! The payments part of an erasure (Art. 17 (3) (b) GDPR): a receivable is a cash record
//! and names its payer, so every receivable of a payer holds the payer's erasure.
//!
//! - While the receivable is not finished (open, partly or fully paid but not yet settled
//!   with the HKR, reopened, overpaid, a refund pending), money may still be booked,
//!   reversed or owed back: the hold is open-ended (reason `open_receivable`).
//! - Once finished (settled, refunded in full, or cancelled before anything was paid,
//!   `Receivable::is_finished`), its records are kept as the cash book's: ten years from
//!   the 1 January after the annual accounts of the year of its last booking (the request
//!   when nothing was booked; `Receivable::retention_until`), the accounts adopted
//!   [`ACCOUNTS_LAG_YEARS`] after that year. The hold names that end (reason
//!   `cash_records`) and lapses at it.
//!
//! Each hold names the receivable's stream.

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use amtsbuch_domain::event::SubjectId;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments as read;

use crate::module::{Hold, RetentionPart};
use crate::problem::Problem;
use crate::AppState;

/// The annual accounts are adopted in the year after the booking year (the usual lag);
/// the retention counts from the 1 January after that.
pub const ACCOUNTS_LAG_YEARS: i32 = 1;

/// Payers whose receivables hold nothing. Set only by the samples of the service's own
/// tests (`super::samples`), where the sample erasure of the citizen is one of the
/// operations that must succeed while the citizen's sample receivable is still open to
/// check out. Empty in a server: nothing else sets it.
static EXEMPT_SAMPLE_PAYERS: Mutex<Vec<Uuid>> = Mutex::new(Vec::new());

/// Exempts the samples' payer `payer` from the holds; see [`EXEMPT_SAMPLE_PAYERS`].
pub(crate) fn exempt_sample_payer(payer: SubjectId) {
    let mut exempt = EXEMPT_SAMPLE_PAYERS
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if !exempt.contains(&payer.0) {
        exempt.push(payer.0);
    }
}

fn exempt(payer: SubjectId) -> bool {
    EXEMPT_SAMPLE_PAYERS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&payer.0)
}

/// The retention part: the holds of the payer's receivables.
pub const RETENTION: RetentionPart = RetentionPart {
    read_models: &[read::NAME],
    holds,
};

fn holds(
    state: &AppState,
    subject: SubjectId,
    now: DateTime<Utc>,
) -> BoxFuture<'_, Result<Vec<Hold>, Problem>> {
    Box::pin(async move {
        if exempt(subject) {
            return Ok(vec![]);
        }
        let receivables =
            read::receivables_of_payer(&ReadDb::new(&state.store), &subject.to_string()).await?;
        Ok(receivables
            .into_iter()
            .filter_map(|r| {
                let reference = r.id.stream_id().to_string();
                if !r.is_finished() {
                    return Some(Hold {
                        module: "",
                        reason: "open_receivable".into(),
                        until: None,
                        reference,
                    });
                }
                // A date chrono cannot represent is no end: the hold stays open-ended.
                let until = r.retention_until(ACCOUNTS_LAG_YEARS);
                until.is_none_or(|until| until > now).then_some(Hold {
                    module: "",
                    reason: "cash_records".into(),
                    until,
                    reference,
                })
            })
            .collect())
    })
}
