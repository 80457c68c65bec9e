//! The payments read models, all kept by one projection (`payments_receivables`), since
//! each table is a view of the same receivable streams:
//!
//! - `payments_receivables`: one row per receivable as of its last event — Mandant,
//!   Bewirtschafter, Kassenzeichen (unique per Mandant: the lookup of reconciliation), the
//!   payer's pseudonymous id, status, gross amount, balance, due date, the day it was paid
//!   in full, the worklist count, the stream's version, and the folded state (JSON,
//!   without personal data) the next event is applied to;
//! - `payments_receivable_lines`: each receivable's lines (Haushaltsstelle, gross cents),
//!   for the list filter and the daily report;
//! - `payments_mismatches`: the worklist, one row per `ReconciliationMismatchDetected`;
//! - `payments_refunds`: which receivable each refund belongs to.
//!
//! Nothing here decrypts: events are decoded without a key, and the payer's name never
//! reaches a table.
//!
//! A second projection (`fees_due`) keeps each application whose fee is due under its
//! payment policy and not requested yet.

use std::sync::Arc;

use amtsbuch_domain::payments::receivable::{self, Receivable, ReceivableEvent, ReceivableState};
use amtsbuch_domain::payments::ReceivableId;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;

use crate::db::{DbError, ReadDb, ReadTx, Value};
use crate::projection::{read_event, Projection, ProjectionError};

pub mod fees_due;

/// The projection's name.
pub const NAME: &str = "payments_receivables";

/// The payments projections, which the payments domain module registers.
pub fn projections() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Receivables), Arc::new(fees_due::FeesDue)]
}

/// The receivables projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Receivables;

fn apply_error(position: u64, reason: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Apply {
        position,
        reason: reason.to_string(),
    }
}

async fn folded(tx: &mut ReadTx, id: ReceivableId) -> Result<Option<Receivable>, ProjectionError> {
    let row = tx
        .fetch_optional(
            "SELECT state FROM payments_receivables WHERE receivable_id = $1",
            &[id.to_string().into()],
        )
        .await?;
    match row {
        None => Ok(None),
        Some(row) => {
            let text: String = row.get("state")?;
            serde_json::from_str(&text).map(Some).map_err(|e| {
                ProjectionError::Db(DbError::Decode {
                    column: "state".into(),
                    reason: e.to_string(),
                })
            })
        }
    }
}

impl Projection for Receivables {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "payments_receivables",
            "payments_receivable_lines",
            "payments_mismatches",
            "payments_refunds",
        ]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[ReceivableId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| ReceivableId::from_stream(s).is_some();
            let Some(e) = read_event::<ReceivableEvent>(NAME, ours, event, record) else {
                return Ok(());
            };
            let id = e.receivable_id();
            let before = match folded(tx, id).await? {
                Some(r) => ReceivableState::Requested(Box::new(r)),
                None => ReceivableState::NotRequested,
            };
            let after = receivable::evolve(before, &e);
            let Some(r) = after.receivable() else {
                return Ok(());
            };
            let state = serde_json::to_string(r).map_err(|err| apply_error(event.position, err))?;
            let status = r.status().as_str();
            let paid_on = r.paid_on.map(|d| d.to_string());
            match &e {
                ReceivableEvent::Requested(q) => {
                    tx.execute(
                        "INSERT INTO payments_receivables (receivable_id, mandant, bewirtschafter, \
                         kassenzeichen, payer, application_id, status, gross_cents, balance_cents, \
                         due_date, paid_on, mismatches, version, requested_at, state, last_position) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
                         ON CONFLICT (receivable_id) DO NOTHING",
                        &[
                            id.to_string().into(),
                            r.mandant.as_str().to_owned().into(),
                            r.bewirtschafter.as_str().to_owned().into(),
                            r.kassenzeichen.as_str().to_owned().into(),
                            r.payer.to_string().into(),
                            r.application_id.map(|a| a.to_string()).into(),
                            status.into(),
                            r.gross.get().into(),
                            r.balance().get().into(),
                            r.due_date.to_string().into(),
                            paid_on.into(),
                            r.mismatches.into(),
                            record.stream_version.into(),
                            q.requested_at.into(),
                            state.into(),
                            event.position.into(),
                        ],
                    )
                    .await?;
                    for (n, line) in r.lines.iter().enumerate() {
                        tx.execute(
                            "INSERT INTO payments_receivable_lines (receivable_id, line_no, \
                             haushaltsstelle, gross_cents) VALUES ($1, $2, $3, $4) \
                             ON CONFLICT (receivable_id, line_no) DO NOTHING",
                            &[
                                id.to_string().into(),
                                (n as i64 + 1).into(),
                                line.haushaltsstelle.as_str().to_owned().into(),
                                line.gross_cents.get().into(),
                            ],
                        )
                        .await?;
                    }
                    return Ok(());
                }
                ReceivableEvent::Mismatch(m) => {
                    tx.execute(
                        "INSERT INTO payments_mismatches (position, receivable_id, mandant, \
                         bewirtschafter, kassenzeichen, entry, source, kind, expected_cents, \
                         found_cents, booking_date, detected_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                         ON CONFLICT (position) DO NOTHING",
                        &[
                            event.position.into(),
                            id.to_string().into(),
                            r.mandant.as_str().to_owned().into(),
                            r.bewirtschafter.as_str().to_owned().into(),
                            r.kassenzeichen.as_str().to_owned().into(),
                            m.entry.as_str().to_owned().into(),
                            label(&m.source).into(),
                            label(&m.kind).into(),
                            m.expected_cents.get().into(),
                            m.found_cents.get().into(),
                            m.booking_date.to_string().into(),
                            m.detected_at.into(),
                        ],
                    )
                    .await?;
                }
                ReceivableEvent::RefundRequested(q) => {
                    tx.execute(
                        "INSERT INTO payments_refunds (refund_id, receivable_id) VALUES ($1, $2) \
                         ON CONFLICT (refund_id) DO NOTHING",
                        &[q.refund_id.to_string().into(), id.to_string().into()],
                    )
                    .await?;
                }
                _ => {}
            }
            tx.execute(
                "UPDATE payments_receivables SET status = $2, balance_cents = $3, paid_on = $4, \
                 mismatches = $5, version = $6, state = $7, last_position = $8 \
                 WHERE receivable_id = $1",
                &[
                    id.to_string().into(),
                    status.into(),
                    r.balance().get().into(),
                    paid_on.into(),
                    r.mismatches.into(),
                    record.stream_version.into(),
                    state.into(),
                    event.position.into(),
                ],
            )
            .await?;
            Ok(())
        })
    }
}

/// A unit enum's serde name.
fn label<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Who asks for a list: the rows it may see. Each part is a rule of one role; a row is
/// listed when any part admits it (a second role only adds).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Every receivable (auditors, operators).
    pub all: bool,
    /// The receivables of this payer (a citizen's account).
    pub payer: Option<String>,
    /// The receivables of these Bewirtschafter (a cashier's).
    pub bewirtschafter: Vec<String>,
}

impl Scope {
    /// The SQL condition of the scope, its parameters appended to `params` (numbered from
    /// `params.len() + 1`).
    fn condition(&self, column_prefix: &str, params: &mut Vec<Value<'static>>) -> String {
        if self.all {
            return "TRUE".into();
        }
        let mut parts = Vec::new();
        if let Some(payer) = &self.payer {
            params.push(payer.clone().into());
            parts.push(format!("{column_prefix}payer = ${}", params.len()));
        }
        for b in &self.bewirtschafter {
            params.push(b.clone().into());
            parts.push(format!("{column_prefix}bewirtschafter = ${}", params.len()));
        }
        if parts.is_empty() {
            "FALSE".into()
        } else {
            format!("({})", parts.join(" OR "))
        }
    }
}

/// The filters of the receivable list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub mandant: Option<String>,
    pub kassenzeichen: Option<String>,
    pub status: Option<String>,
    /// Due strictly before this day (`YYYY-MM-DD`).
    pub due_before: Option<String>,
    pub haushaltsstelle: Option<String>,
    /// `Some(true)`: only receivables with mismatches; `Some(false)`: only without.
    pub mismatch: Option<bool>,
}

/// One receivable as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListRow {
    pub receivable_id: String,
    pub mandant: String,
    pub bewirtschafter: String,
    pub kassenzeichen: String,
    pub payer: String,
    pub status: String,
    pub gross_cents: i64,
    pub balance_cents: i64,
    pub due_date: String,
    pub paid_on: Option<String>,
    pub mismatches: i64,
}

/// The most rows one list answers.
pub const MAX_LIST: i64 = 500;

/// The receivables `scope` may see that pass `filter`, by due date, at most [`MAX_LIST`].
pub async fn list(
    db: &ReadDb,
    scope: &Scope,
    filter: &ListFilter,
) -> Result<Vec<ListRow>, DbError> {
    let mut params: Vec<Value<'static>> = Vec::new();
    let mut conditions = vec![scope.condition("r.", &mut params)];
    let mut add =
        |column: &str, op: &str, value: &Option<String>, params: &mut Vec<Value<'static>>| {
            if let Some(v) = value {
                params.push(v.clone().into());
                conditions.push(format!("{column} {op} ${}", params.len()));
            }
        };
    add("r.mandant", "=", &filter.mandant, &mut params);
    add("r.kassenzeichen", "=", &filter.kassenzeichen, &mut params);
    add("r.status", "=", &filter.status, &mut params);
    add("r.due_date", "<", &filter.due_before, &mut params);
    if let Some(h) = &filter.haushaltsstelle {
        params.push(h.clone().into());
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM payments_receivable_lines l WHERE l.receivable_id = r.receivable_id AND l.haushaltsstelle = ${})",
            params.len()
        ));
    }
    match filter.mismatch {
        Some(true) => conditions.push("r.mismatches > 0".into()),
        Some(false) => conditions.push("r.mismatches = 0".into()),
        None => {}
    }
    params.push(MAX_LIST.into());
    let sql = format!(
        "SELECT r.receivable_id, r.mandant, r.bewirtschafter, r.kassenzeichen, r.payer, r.status, \
         r.gross_cents, r.balance_cents, r.due_date, r.paid_on, r.mismatches \
         FROM payments_receivables r WHERE {} ORDER BY r.due_date, r.receivable_id LIMIT ${}",
        conditions.join(" AND "),
        params.len()
    );
    db.fetch_all(&sql, &params)
        .await?
        .iter()
        .map(|row| {
            Ok(ListRow {
                receivable_id: row.get("receivable_id")?,
                mandant: row.get("mandant")?,
                bewirtschafter: row.get("bewirtschafter")?,
                kassenzeichen: row.get("kassenzeichen")?,
                payer: row.get("payer")?,
                status: row.get("status")?,
                gross_cents: row.get("gross_cents")?,
                balance_cents: row.get("balance_cents")?,
                due_date: row.get("due_date")?,
                paid_on: row.get("paid_on")?,
                mismatches: row.get("mismatches")?,
            })
        })
        .collect()
}

/// One entry of the worklist.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MismatchRow {
    pub position: i64,
    pub receivable_id: String,
    pub mandant: String,
    pub bewirtschafter: String,
    pub kassenzeichen: String,
    pub entry: String,
    pub source: String,
    pub kind: String,
    pub expected_cents: i64,
    pub found_cents: i64,
    pub booking_date: String,
    pub detected_at: String,
}

/// The worklist `scope` may see (payers see none), of `mandant` if given, oldest first, at
/// most [`MAX_LIST`].
pub async fn mismatches(
    db: &ReadDb,
    scope: &Scope,
    mandant: Option<&str>,
) -> Result<Vec<MismatchRow>, DbError> {
    let staff = Scope {
        payer: None,
        ..scope.clone()
    };
    let mut params: Vec<Value<'static>> = Vec::new();
    let mut conditions = vec![staff.condition("", &mut params)];
    if let Some(m) = mandant {
        params.push(m.to_owned().into());
        conditions.push(format!("mandant = ${}", params.len()));
    }
    params.push(MAX_LIST.into());
    let sql = format!(
        "SELECT position, receivable_id, mandant, bewirtschafter, kassenzeichen, entry, source, \
         kind, expected_cents, found_cents, booking_date, detected_at FROM payments_mismatches \
         WHERE {} ORDER BY position LIMIT ${}",
        conditions.join(" AND "),
        params.len()
    );
    db.fetch_all(&sql, &params)
        .await?
        .iter()
        .map(|row| {
            Ok(MismatchRow {
                position: row.get("position")?,
                receivable_id: row.get("receivable_id")?,
                mandant: row.get("mandant")?,
                bewirtschafter: row.get("bewirtschafter")?,
                kassenzeichen: row.get("kassenzeichen")?,
                entry: row.get("entry")?,
                source: row.get("source")?,
                kind: row.get("kind")?,
                expected_cents: row.get("expected_cents")?,
                found_cents: row.get("found_cents")?,
                booking_date: row.get("booking_date")?,
                detected_at: row.get("detected_at")?,
            })
        })
        .collect()
}

/// The daily report: per Haushaltsstelle, the gross amounts of the lines of the
/// receivables of `mandant` that `scope` may see (payers see none) and that were paid in
/// full on `date` (`YYYY-MM-DD`), with how many receivables each sum covers.
pub async fn daily(
    db: &ReadDb,
    scope: &Scope,
    mandant: &str,
    date: &str,
) -> Result<Vec<(String, i64, i64)>, DbError> {
    let staff = Scope {
        payer: None,
        ..scope.clone()
    };
    let mut params: Vec<Value<'static>> = vec![mandant.to_owned().into(), date.to_owned().into()];
    let condition = staff.condition("r.", &mut params);
    let sql = format!(
        "SELECT l.haushaltsstelle, CAST(SUM(l.gross_cents) AS BIGINT) AS gross_cents, \
         COUNT(DISTINCT r.receivable_id) AS receivables \
         FROM payments_receivables r JOIN payments_receivable_lines l \
         ON l.receivable_id = r.receivable_id \
         WHERE r.mandant = $1 AND r.paid_on = $2 AND {condition} \
         GROUP BY l.haushaltsstelle ORDER BY l.haushaltsstelle"
    );
    db.fetch_all(&sql, &params)
        .await?
        .iter()
        .map(|row| {
            Ok((
                row.get("haushaltsstelle")?,
                row.get("gross_cents")?,
                row.get("receivables")?,
            ))
        })
        .collect()
}

/// The receivable a refund belongs to.
pub async fn refund_owner(db: &ReadDb, refund: &str) -> Result<Option<ReceivableId>, DbError> {
    let row = db
        .fetch_optional(
            "SELECT receivable_id FROM payments_refunds WHERE refund_id = $1",
            &[refund.to_owned().into()],
        )
        .await?;
    row.map(|row| {
        let id: String = row.get("receivable_id")?;
        sqlx::types::Uuid::parse_str(&id)
            .map(ReceivableId)
            .map_err(|e| DbError::Decode {
                column: "receivable_id".into(),
                reason: e.to_string(),
            })
    })
    .transpose()
}

/// The receivable of `mandant` holding `kassenzeichen`, and its stream version as the
/// read model last saw it.
pub async fn by_kassenzeichen(
    db: &ReadDb,
    mandant: &str,
    kassenzeichen: &str,
) -> Result<Option<(ReceivableId, u64)>, DbError> {
    let row = db
        .fetch_optional(
            "SELECT receivable_id, version FROM payments_receivables \
             WHERE mandant = $1 AND kassenzeichen = $2",
            &[mandant.to_owned().into(), kassenzeichen.to_owned().into()],
        )
        .await?;
    row.map(|row| {
        let id: String = row.get("receivable_id")?;
        let version = row.get_u64("version")?;
        sqlx::types::Uuid::parse_str(&id)
            .map(|u| (ReceivableId(u), version))
            .map_err(|e| DbError::Decode {
                column: "receivable_id".into(),
                reason: e.to_string(),
            })
    })
    .transpose()
}

/// The receivables whose payer is `payer` (a pseudonymous subject id), folded as the read
/// model last saw them, oldest first.
pub async fn receivables_of_payer(db: &ReadDb, payer: &str) -> Result<Vec<Receivable>, DbError> {
    db.fetch_all(
        "SELECT state FROM payments_receivables WHERE payer = $1 \
         ORDER BY requested_at, receivable_id",
        &[payer.to_owned().into()],
    )
    .await?
    .iter()
    .map(|row| {
        let text: String = row.get("state")?;
        serde_json::from_str(&text).map_err(|e| DbError::Decode {
            column: "state".into(),
            reason: e.to_string(),
        })
    })
    .collect()
}

/// The receivables of `mandant` holding any of `kassenzeichen`: for each found, its
/// Kassenzeichen, its id, its stream version and its folded state as the read model last
/// saw them. Reconciliation looks a whole file's lines up with this, reading nothing from
/// the log.
pub async fn by_kassenzeichen_many(
    db: &ReadDb,
    mandant: &str,
    kassenzeichen: &[String],
) -> Result<Vec<(String, u64, Receivable)>, DbError> {
    let mut found = Vec::with_capacity(kassenzeichen.len());
    let mut at = 0;
    for size in crate::db::chunk_sizes(kassenzeichen.len(), 512) {
        let chunk = &kassenzeichen[at..at + size];
        at += size;
        // PostgreSQL: each (Mandant, Kassenzeichen) pair probes the unique index. Written
        // as `kassenzeichen IN (…)` beside `mandant = $1`, the planner without statistics
        // (a read model filled in a burst, before autovacuum analyzed it) scanned the
        // whole Mandant through the index for every chunk: quadratic in the file's lines.
        // SQLite probes the index with either form.
        let (sql, params) = match db.dialect() {
            crate::db::Dialect::Postgres => (
                format!(
                    "SELECT kassenzeichen, version, state FROM payments_receivables \
                     WHERE (mandant, kassenzeichen) IN ({})",
                    crate::db::values_list(2, size)
                ),
                chunk
                    .iter()
                    .flat_map(|k| [Value::from(mandant), Value::from(k.as_str())])
                    .collect::<Vec<_>>(),
            ),
            crate::db::Dialect::Sqlite => (
                format!(
                    "SELECT kassenzeichen, version, state FROM payments_receivables \
                     WHERE mandant = $1 AND kassenzeichen IN ({})",
                    crate::db::placeholders(2, size)
                ),
                std::iter::once(Value::from(mandant))
                    .chain(chunk.iter().map(|k| Value::from(k.as_str())))
                    .collect::<Vec<_>>(),
            ),
        };
        for row in db.fetch_all(&sql, &params).await? {
            let text: String = row.get("state")?;
            let r: Receivable = serde_json::from_str(&text).map_err(|e| DbError::Decode {
                column: "state".into(),
                reason: e.to_string(),
            })?;
            found.push((row.get("kassenzeichen")?, row.get_u64("version")?, r));
        }
    }
    Ok(found)
}
