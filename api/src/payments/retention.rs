//! The payments part of an erasure (Art. 17 (3) (b) GDPR): a receivable's cash records
//! must be kept — books ten years from the 1 January after the annual accounts of the year
//! of its last booking (`Receivable::retention_until`) — and with them its payer's data.
//! So every receivable of a payer on which money was booked (paid, reversed, refunded, or
//! a provider fee) holds the payer's erasure until that end; the hold names the receivable
//! and its end. A receivable that never saw money (open or cancelled unpaid) is no cash
//! record and holds nothing.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;

use amtsbuch_domain::event::SubjectId;
use amtsbuch_projections::db::ReadDb;
use amtsbuch_projections::payments as read;

use crate::module::{Hold, RetentionPart};
use crate::problem::Problem;
use crate::AppState;

/// The annual accounts are adopted in the year after the booking year (the usual lag);
/// the retention counts from the 1 January after that.
pub const ACCOUNTS_LAG_YEARS: i32 = 1;

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
        let receivables =
            read::receivables_of_payer(&ReadDb::new(&state.store), &subject.to_string())
                .await
                .map_err(|e| Problem::internal(&e))?;
        Ok(receivables
            .into_iter()
            .filter(|r| {
                !(r.paid.is_zero() && r.refunded.is_zero() && r.fees.is_zero() && !r.reopened)
            })
            .filter_map(|r| {
                let until = r.retention_until(ACCOUNTS_LAG_YEARS)?;
                (until > now).then(|| Hold {
                    module: "",
                    reason: "cash_records".into(),
                    until: Some(until),
                    reference: r.id.stream_id().to_string(),
                })
            })
            .collect())
    })
}
