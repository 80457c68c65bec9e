//! Accounts (projection `accounts`): every Servicekonto's kind, level of assurance, life
//! cycle and erasure — never its master data or identity pseudonyms, which stay sealed in
//! the events.
//!
//! The account row follows the domain's `evolve`: `AccountOpened` creates it (a second one
//! changes nothing), links and unlinks keep `gdpr_account_links` (method and level only),
//! from which the row's trust level is the highest; a deletion request is kept once, and a
//! deletion marks the account deleted. `SubjectErased`, which the service appends once it
//! has destroyed the subject's keys, goes to `gdpr_erasures`; the first one counts.

use amtsbuch_domain::gdpr::account::{
    AccountEvent, AccountKind, AccountStatus, DeletionReason, IdentityMethod, TrustLevel,
};
use amtsbuch_domain::gdpr::retention::{subject_of_erasure_stream, SubjectErased};
use amtsbuch_domain::gdpr::AccountId;
use amtsbuch_domain::seal::KeyId;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use serde_json::{json, Value as Json};
use sqlx::types::chrono::{DateTime, Utc};

use super::consents::uuid;
use super::{opt_ts, ts, unwritable};
use crate::db::{DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "accounts";

/// The accounts projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Accounts;

impl Projection for Accounts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gdpr_accounts", "gdpr_account_links", "gdpr_erasures"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[
            AccountId::CATEGORY,
            amtsbuch_domain::gdpr::retention::ERASURE_CATEGORY,
        ])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let account = |s: &StreamId| AccountId::from_stream(s).is_some();
            let erasure = |s: &StreamId| subject_of_erasure_stream(s).is_some();
            if let Some(e) = read_event::<AccountEvent>(NAME, account, event, record) {
                apply(tx, event, &e).await?;
            } else if let Some(e) = read_event::<SubjectErased>(NAME, erasure, event, record) {
                let key_ids = json_of!(e.key_ids).map_err(|r| unwritable(event, r))?;
                tx.execute(
                    "INSERT INTO gdpr_erasures (subject, erased_at, key_ids, position) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (subject) DO NOTHING",
                    &[
                        e.subject.to_string().into(),
                        e.erased_at.into(),
                        key_ids.into(),
                        event.position.into(),
                    ],
                )
                .await?;
            }
            Ok(())
        })
    }
}

/// The order of the levels, so that the highest is an `ORDER BY` away.
fn rank(level: TrustLevel) -> i64 {
    match level {
        TrustLevel::Low => 1,
        TrustLevel::Substantial => 2,
        TrustLevel::High => 3,
    }
}

/// The kind of identity method, without the level it carries.
fn method_name(method: IdentityMethod) -> &'static str {
    match method {
        IdentityMethod::Eid => "eid",
        IdentityMethod::Elster => "elster",
        IdentityMethod::EidasNotified { .. } => "eidas_notified",
        IdentityMethod::Password => "password",
    }
}

/// Sets the account's trust level to the highest of its links (NULL without links).
const REFRESH_LEVEL: &str = "UPDATE gdpr_accounts SET trust_level = \
     (SELECT l.level FROM gdpr_account_links l WHERE l.account_id = $1 \
      ORDER BY l.level_rank DESC LIMIT 1), last_position = $2 WHERE account_id = $1";

async fn apply(
    tx: &mut ReadTx,
    event: &RecordedEvent,
    e: &AccountEvent,
) -> Result<(), ProjectionError> {
    let fail = |reason: String| unwritable(event, reason);
    let position = event.position;
    match e {
        AccountEvent::Opened(o) => {
            tx.execute(
                "INSERT INTO gdpr_accounts (account_id, kind, trust_level, status, opened_at, \
                 expires_at, deletion_requested_at, deleted_at, deletion_reason, last_position) \
                 VALUES ($1, $2, NULL, 'active', $3, $4, NULL, NULL, NULL, $5) \
                 ON CONFLICT (account_id) DO NOTHING",
                &[
                    o.account_id.to_string().into(),
                    name_of!(o.kind).map_err(fail)?.into(),
                    o.opened_at.into(),
                    o.expires_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        AccountEvent::IdentityLinked(l) => {
            let id = l.account_id.to_string();
            // A link joins only an opened account, as in `evolve`.
            tx.execute(
                "INSERT INTO gdpr_account_links (account_id, link_id, method, level, \
                 level_rank, linked_at) SELECT $1, $2, $3, $4, $5, $6 \
                 WHERE EXISTS (SELECT 1 FROM gdpr_accounts WHERE account_id = $1) \
                 ON CONFLICT (account_id, link_id) DO NOTHING",
                &[
                    id.as_str().into(),
                    l.link_id.to_string().into(),
                    method_name(l.method).into(),
                    name_of!(l.level).map_err(fail)?.into(),
                    rank(l.level).into(),
                    l.linked_at.into(),
                ],
            )
            .await?;
            tx.execute(REFRESH_LEVEL, &[id.as_str().into(), position.into()])
                .await?;
        }
        AccountEvent::IdentityUnlinked(u) => {
            let id = u.account_id.to_string();
            tx.execute(
                "DELETE FROM gdpr_account_links WHERE account_id = $1 AND link_id = $2",
                &[id.as_str().into(), u.link_id.to_string().into()],
            )
            .await?;
            tx.execute(REFRESH_LEVEL, &[id.as_str().into(), position.into()])
                .await?;
        }
        AccountEvent::MasterDataChanged(m) => {
            // Nothing but personal data changed; only the position moves.
            tx.execute(
                "UPDATE gdpr_accounts SET last_position = $2 WHERE account_id = $1",
                &[m.account_id.to_string().into(), position.into()],
            )
            .await?;
        }
        AccountEvent::DeletionRequested(r) => {
            tx.execute(
                "UPDATE gdpr_accounts SET \
                 deletion_requested_at = COALESCE(deletion_requested_at, $2), \
                 status = CASE WHEN deleted_at IS NULL THEN 'deletion_requested' ELSE status END, \
                 last_position = $3 WHERE account_id = $1",
                &[
                    r.account_id.to_string().into(),
                    r.requested_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        AccountEvent::Deleted(d) => {
            tx.execute(
                "UPDATE gdpr_accounts SET status = 'deleted', deleted_at = $2, \
                 deletion_reason = $3, last_position = $4 WHERE account_id = $1",
                &[
                    d.account_id.to_string().into(),
                    d.deleted_at.into(),
                    name_of!(d.reason).map_err(fail)?.into(),
                    position.into(),
                ],
            )
            .await?;
        }
    }
    Ok(())
}

/// One account, without master data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub account_id: AccountId,
    pub kind: AccountKind,
    /// The highest level of the account's current identity links.
    pub trust_level: Option<TrustLevel>,
    pub status: AccountStatus,
    pub opened_at: DateTime<Utc>,
    /// The expiry of a temporary identification.
    pub expires_at: Option<DateTime<Utc>>,
    pub deletion_requested_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deletion_reason: Option<DeletionReason>,
    /// When the subject's keys were destroyed (`SubjectErased`).
    pub erased_at: Option<DateTime<Utc>>,
    pub last_position: u64,
}

impl AccountRow {
    pub fn to_json(&self) -> Json {
        json!({
            "account_id": self.account_id.to_string(),
            "kind": to_json!(self.kind),
            "trust_level": to_json!(self.trust_level),
            "status": to_json!(self.status),
            "opened_at": ts(&self.opened_at),
            "expires_at": opt_ts(&self.expires_at),
            "deletion_requested_at": opt_ts(&self.deletion_requested_at),
            "deleted_at": opt_ts(&self.deleted_at),
            "deletion_reason": to_json!(self.deletion_reason),
            "erased_at": opt_ts(&self.erased_at),
            "last_position": self.last_position,
        })
    }
}

/// The erasure of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureRow {
    pub subject: AccountId,
    pub erased_at: DateTime<Utc>,
    /// The destroyed versions of the subject's data key.
    pub key_ids: Vec<KeyId>,
    /// Where `SubjectErased` is in the log.
    pub position: u64,
}

impl ErasureRow {
    pub fn to_json(&self) -> Json {
        json!({
            "subject": self.subject.to_string(),
            "erased_at": ts(&self.erased_at),
            "key_ids": to_json!(self.key_ids),
            "position": self.position,
        })
    }
}

fn account_row(row: &Row) -> Result<AccountRow, DbError> {
    let level: Option<String> = row.get("trust_level")?;
    let reason: Option<String> = row.get("deletion_reason")?;
    Ok(AccountRow {
        account_id: AccountId(uuid("account_id", row)?),
        kind: parse_name!(AccountKind, "kind", row.get::<String>("kind")?)?,
        trust_level: level
            .map(|l| parse_name!(TrustLevel, "trust_level", l))
            .transpose()?,
        status: parse_name!(AccountStatus, "status", row.get::<String>("status")?)?,
        opened_at: row.timestamp("opened_at")?,
        expires_at: row.opt_timestamp("expires_at")?,
        deletion_requested_at: row.opt_timestamp("deletion_requested_at")?,
        deleted_at: row.opt_timestamp("deleted_at")?,
        deletion_reason: reason
            .map(|r| parse_name!(DeletionReason, "deletion_reason", r))
            .transpose()?,
        erased_at: row.opt_timestamp("erased_at")?,
        last_position: row.get_u64("last_position")?,
    })
}

/// One account, with the instant of its erasure if it was erased.
pub async fn account(db: &ReadDb, id: AccountId) -> Result<Option<AccountRow>, DbError> {
    db.fetch_optional(
        "SELECT a.account_id, a.kind, a.trust_level, a.status, a.opened_at, a.expires_at, \
         a.deletion_requested_at, a.deleted_at, a.deletion_reason, e.erased_at, a.last_position \
         FROM gdpr_accounts a LEFT JOIN gdpr_erasures e ON e.subject = a.account_id \
         WHERE a.account_id = $1",
        &[id.to_string().into()],
    )
    .await?
    .as_ref()
    .map(account_row)
    .transpose()
}

/// The erasure of `subject`, if it has been erased.
pub async fn erasure(db: &ReadDb, subject: AccountId) -> Result<Option<ErasureRow>, DbError> {
    let Some(row) = db
        .fetch_optional(
            "SELECT subject, erased_at, key_ids, position FROM gdpr_erasures WHERE subject = $1",
            &[subject.to_string().into()],
        )
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(ErasureRow {
        subject: AccountId(uuid("subject", &row)?),
        erased_at: row.timestamp("erased_at")?,
        key_ids: parse_json!(Vec<KeyId>, "key_ids", row.get::<String>("key_ids")?)?,
        position: row.get_u64("position")?,
    }))
}

/// Temporary identifications expired at `now` (expiry inclusive, as the domain's
/// `is_expired_at`) whose subject has not been erased, earliest expiry first: what the
/// erasure sweeper works through. An account already deleted but not yet erased is
/// listed, since its keys still have to be destroyed; whether a retention hold forbids
/// the erasure is asked separately (`active_holds`).
pub async fn accounts_due_for_erasure(
    db: &ReadDb,
    now: DateTime<Utc>,
) -> Result<Vec<AccountId>, DbError> {
    let params: [Value<'_>; 1] = [now.into()];
    db.fetch_all(
        "SELECT a.account_id FROM gdpr_accounts a \
         WHERE a.expires_at IS NOT NULL AND a.expires_at <= $1 \
         AND NOT EXISTS (SELECT 1 FROM gdpr_erasures e WHERE e.subject = a.account_id) \
         ORDER BY a.expires_at, a.account_id",
        &params,
    )
    .await?
    .iter()
    .map(|row| uuid("account_id", row).map(AccountId))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_rank_in_their_order() {
        let levels = [TrustLevel::Low, TrustLevel::Substantial, TrustLevel::High];
        assert!(levels.windows(2).all(|w| rank(w[0]) < rank(w[1])));
        assert_eq!(
            method_name(IdentityMethod::EidasNotified {
                level: TrustLevel::Low
            }),
            "eidas_notified"
        );
    }
}
