//! The inbox (projection `applications_inbox`): one row per application from its
//! submission on, as of its last event.

use amtsbuch_domain::applications::application::{ApplicationEvent, Status};
use amtsbuch_domain::applications::ApplicationId;
use amtsbuch_domain::{EventRecord, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

use crate::db::{DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{read_event, Projection, ProjectionError};

/// The projection's name.
pub const NAME: &str = "applications_inbox";

/// The inbox projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Inbox;

impl Projection for Inbox {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["applications_inbox"]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&[ApplicationId::CATEGORY])
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let ours = |s: &StreamId| ApplicationId::from_stream(s).is_some();
            if let Some(e) = read_event::<ApplicationEvent>(NAME, ours, event, record) {
                apply(tx, event.position, &e).await?;
            }
            Ok(())
        })
    }
}

async fn set_status(
    tx: &mut ReadTx,
    id: ApplicationId,
    status: Status,
    position: u64,
) -> Result<(), DbError> {
    tx.execute(
        "UPDATE applications_inbox SET status = $2, due_at = NULL, last_position = $3 \
         WHERE application_id = $1",
        &[
            id.to_string().into(),
            status.as_str().into(),
            position.into(),
        ],
    )
    .await
    .map(|_| ())
}

/// Each event changes the row as the domain's `evolve` changes the state; a row exists
/// only from the submission on.
async fn apply(tx: &mut ReadTx, position: u64, e: &ApplicationEvent) -> Result<(), DbError> {
    use ApplicationEvent as Ev;
    let id = e.application_id();
    match e {
        Ev::Submitted(s) => {
            tx.execute(
                "INSERT INTO applications_inbox (application_id, authority, leika, tenant, \
                 status, submitted_at, due_at, file_number, last_position) \
                 VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, $7) \
                 ON CONFLICT (application_id) DO NOTHING",
                &[
                    id.to_string().into(),
                    s.authority.as_str().into(),
                    s.leika.as_str().into(),
                    s.tenant.as_str().into(),
                    Status::Submitted.as_str().into(),
                    s.submitted_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        Ev::Received(r) => {
            tx.execute(
                "UPDATE applications_inbox SET status = $2, file_number = $3, last_position = $4 \
                 WHERE application_id = $1 AND status = 'submitted'",
                &[
                    id.to_string().into(),
                    Status::Received.as_str().into(),
                    r.file_number.as_str().into(),
                    position.into(),
                ],
            )
            .await?;
        }
        Ev::ProcessingStarted(_) | Ev::InformationProvided(_) => {
            set_status(tx, id, Status::InProgress, position).await?
        }
        Ev::InformationRequested(r) => {
            tx.execute(
                "UPDATE applications_inbox SET status = $2, due_at = $3, last_position = $4 \
                 WHERE application_id = $1",
                &[
                    id.to_string().into(),
                    Status::InformationRequested.as_str().into(),
                    r.due_at.into(),
                    position.into(),
                ],
            )
            .await?;
        }
        Ev::Decided(_) => set_status(tx, id, Status::Decided, position).await?,
        Ev::Closed(_) => set_status(tx, id, Status::Closed, position).await?,
        Ev::Withdrawn(_) => set_status(tx, id, Status::Withdrawn, position).await?,
        _ => {}
    }
    Ok(())
}

/// One application in an inbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub application_id: ApplicationId,
    pub authority: String,
    pub leika: String,
    pub tenant: String,
    pub status: Status,
    pub submitted_at: DateTime<Utc>,
    pub due_at: Option<DateTime<Utc>>,
    pub file_number: Option<String>,
    pub last_position: u64,
}

/// Whose inbox: an authority's official sees its authority's applications in its regions
/// (AGS prefixes), a Fachverfahren its authority's applications for its services. A caller
/// with both roles sees what either sees.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxScope {
    pub authority: String,
    /// Set for an official: the tenant must start with one of them.
    pub regions: Option<Vec<String>>,
    /// Set for a Fachverfahren: the service must be one of them.
    pub services: Option<Vec<String>>,
}

/// The filters of an inbox page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboxFilter {
    pub status: Option<Status>,
    pub leika: Option<String>,
    /// A tenant prefix (an AGS or a shorter prefix of one).
    pub tenant_prefix: Option<String>,
    pub submitted_from: Option<DateTime<Utc>>,
    pub submitted_to: Option<DateTime<Utc>>,
    /// Only requests past their due date at this instant.
    pub overdue_at: Option<DateTime<Utc>>,
    /// Page after this (submitted_at, application_id).
    pub after: Option<(DateTime<Utc>, ApplicationId)>,
    pub limit: usize,
}

fn like_prefix(p: &str) -> String {
    // Prefixes are digits only (checked by the caller), so no LIKE escapes are needed.
    format!("{p}%")
}

/// A page of the inbox of `scope`, oldest submission first.
pub async fn inbox(
    db: &ReadDb,
    scope: &InboxScope,
    filter: &InboxFilter,
) -> Result<Vec<InboxRow>, DbError> {
    let mut sql = String::from(
        "SELECT application_id, authority, leika, tenant, status, submitted_at, due_at, \
         file_number, last_position FROM applications_inbox WHERE authority = $1",
    );
    let mut params: Vec<Value<'static>> = vec![scope.authority.clone().into()];
    fn next(
        sql: &mut String,
        clause: &str,
        value: Value<'static>,
        params: &mut Vec<Value<'static>>,
    ) {
        params.push(value);
        sql.push_str(&clause.replace('?', &format!("${}", params.len())));
    }
    // The scope: what any of the caller's roles sees.
    let mut ors = Vec::new();
    if let Some(regions) = &scope.regions {
        let mut any = Vec::new();
        for r in regions {
            params.push(like_prefix(r).into());
            any.push(format!("tenant LIKE ${}", params.len()));
        }
        ors.push(if any.is_empty() {
            "FALSE".to_owned()
        } else {
            any.join(" OR ")
        });
    }
    if let Some(services) = &scope.services {
        let mut any = Vec::new();
        for s in services {
            params.push(s.clone().into());
            any.push(format!("leika = ${}", params.len()));
        }
        ors.push(if any.is_empty() {
            "FALSE".to_owned()
        } else {
            any.join(" OR ")
        });
    }
    if ors.is_empty() {
        return Ok(Vec::new());
    }
    sql.push_str(&format!(" AND (({}))", ors.join(") OR (")));
    if let Some(status) = filter.status {
        next(
            &mut sql,
            " AND status = ?",
            status.as_str().into(),
            &mut params,
        );
    }
    if let Some(leika) = &filter.leika {
        next(
            &mut sql,
            " AND leika = ?",
            leika.clone().into(),
            &mut params,
        );
    }
    if let Some(prefix) = &filter.tenant_prefix {
        next(
            &mut sql,
            " AND tenant LIKE ?",
            like_prefix(prefix).into(),
            &mut params,
        );
    }
    if let Some(from) = filter.submitted_from {
        next(&mut sql, " AND submitted_at >= ?", from.into(), &mut params);
    }
    if let Some(to) = filter.submitted_to {
        next(&mut sql, " AND submitted_at < ?", to.into(), &mut params);
    }
    if let Some(now) = filter.overdue_at {
        next(
            &mut sql,
            " AND status = 'information_requested' AND due_at < ?",
            now.into(),
            &mut params,
        );
    }
    if let Some((at, id)) = filter.after {
        params.push(at.into());
        let n = params.len();
        params.push(id.to_string().into());
        sql.push_str(&format!(
            " AND (submitted_at > ${n} OR (submitted_at = ${n} AND application_id > ${}))",
            n + 1
        ));
    }
    params.push((filter.limit as i64).into());
    sql.push_str(&format!(
        " ORDER BY submitted_at, application_id LIMIT ${}",
        params.len()
    ));
    db.fetch_all(&sql, &params)
        .await?
        .iter()
        .map(row_of)
        .collect()
}

fn row_of(row: &Row) -> Result<InboxRow, DbError> {
    let decode = |column: &str, reason: String| DbError::Decode {
        column: column.to_owned(),
        reason,
    };
    let id: String = row.get("application_id")?;
    let status: String = row.get("status")?;
    Ok(InboxRow {
        application_id: ApplicationId(
            Uuid::parse_str(&id).map_err(|e| decode("application_id", e.to_string()))?,
        ),
        authority: row.get("authority")?,
        leika: row.get("leika")?,
        tenant: row.get("tenant")?,
        status: Status::parse(&status)
            .ok_or_else(|| decode("status", format!("unknown status {status:?}")))?,
        submitted_at: row.timestamp("submitted_at")?,
        due_at: row.opt_timestamp("due_at")?,
        file_number: row.get("file_number")?,
        last_position: row.get_u64("last_position")?,
    })
}
