//! The stream catalogue: one row per stream of the log, and the queries on it.
//!
//! Every event upserts its stream's row: the current version, the first and last position,
//! the last event type, and the `recorded_at` of the first and last event. `authority` and
//! `tenant` are those of the latest event that names one, so a stream that routing hands to
//! another authority is listed under the new one. Streams are listed in the order they were
//! created (`first_position`, which no later event changes), with keyset pagination, so a
//! page boundary stays put while the catalogue grows.

use std::collections::HashMap;

use amtsbuch_domain::{AuthorityId, Category, EventRecord, EventType, StreamId};
use amtsbuch_infra::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::types::chrono::{DateTime, Utc};

use crate::db::{chunk_sizes, values_list, DbError, ReadDb, ReadTx, Row, Value};
use crate::projection::{Projection, ProjectionError};

/// The projection's name, as `rebuild` and the runner's handle know it.
pub const NAME: &str = "streams";
/// Page size when a query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Largest page a query returns.
pub const MAX_LIMIT: usize = 1000;

/// The stream-catalogue projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Streams;

/// Most rows per upsert statement: 2,560 parameters, well inside SQLite's 32,766.
const MAX_ROWS: usize = 256;

/// The upsert of `values_list(COLUMNS_PER_ROW, n)` rows. It merges a row that sums up
/// one or more consecutive events of a stream into what is stored: the first position and
/// creation time only on insert, authority and tenant only when the new row names one.
const UPSERT_HEAD: &str = "INSERT INTO streams (stream_id, category, version, first_position, \
        last_position, last_event_type, authority, tenant, created_at, updated_at) ";
const UPSERT_TAIL: &str = " ON CONFLICT (stream_id) DO UPDATE SET \
        version = EXCLUDED.version, \
        last_position = EXCLUDED.last_position, \
        last_event_type = EXCLUDED.last_event_type, \
        authority = COALESCE(EXCLUDED.authority, streams.authority), \
        tenant = COALESCE(EXCLUDED.tenant, streams.tenant), \
        updated_at = EXCLUDED.updated_at";
const COLUMNS_PER_ROW: usize = 10;

/// One or more consecutive events of one stream, summed up as the row they leave behind.
struct Pending<'a> {
    stream_id: &'a str,
    category: &'a str,
    version: u64,
    first_position: u64,
    last_position: u64,
    last_event_type: &'a str,
    authority: Option<&'a str>,
    tenant: Option<&'a str>,
    created_at: &'a DateTime<Utc>,
    updated_at: &'a DateTime<Utc>,
}

impl<'a> Pending<'a> {
    fn new(event: &'a RecordedEvent, record: &'a EventRecord) -> Self {
        Self {
            stream_id: record.stream_id.as_str(),
            category: record.stream_id.category(),
            version: record.stream_version,
            first_position: event.position,
            last_position: event.position,
            last_event_type: record.event_type.as_str(),
            authority: record.authority.as_ref().map(AuthorityId::as_str),
            tenant: record.tenant.as_deref(),
            created_at: &record.recorded_at,
            updated_at: &record.recorded_at,
        }
    }

    /// Fold in a later event of the same stream, with the upsert's own rules.
    fn then(&mut self, event: &'a RecordedEvent, record: &'a EventRecord) {
        let next = Pending::new(event, record);
        self.version = next.version;
        self.last_position = next.last_position;
        self.last_event_type = next.last_event_type;
        self.authority = next.authority.or(self.authority);
        self.tenant = next.tenant.or(self.tenant);
        self.updated_at = next.updated_at;
    }
}

async fn upsert(tx: &mut ReadTx, rows: &[Pending<'_>]) -> Result<(), DbError> {
    let mut rest = rows;
    for n in chunk_sizes(rows.len(), MAX_ROWS) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let sql = format!(
            "{UPSERT_HEAD}{}{UPSERT_TAIL}",
            values_list(COLUMNS_PER_ROW, n)
        );
        let mut params: Vec<Value<'_>> = Vec::with_capacity(n * COLUMNS_PER_ROW);
        for row in chunk {
            params.extend([
                row.stream_id.into(),
                row.category.into(),
                row.version.into(),
                row.first_position.into(),
                row.last_position.into(),
                row.last_event_type.into(),
                row.authority.into(),
                row.tenant.into(),
                row.created_at.into(),
                row.updated_at.into(),
            ]);
        }
        tx.execute(&sql, &params).await?;
    }
    Ok(())
}

impl Projection for Streams {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["streams"]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        event: &'a RecordedEvent,
        record: &'a EventRecord,
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            upsert(tx, &[Pending::new(event, record)]).await?;
            Ok(())
        })
    }

    /// One row per stream the batch touches, in a few multi-row statements: the catalogue
    /// is updated by every event of the log, and one statement per event was the limit
    /// of the runner's throughput on PostgreSQL.
    fn apply_batch<'a>(
        &'a self,
        tx: &'a mut ReadTx,
        batch: &'a [(RecordedEvent, EventRecord)],
    ) -> BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            let mut rows: Vec<Pending<'a>> = Vec::new();
            let mut index: HashMap<&'a str, usize> = HashMap::new();
            for (event, record) in batch {
                match index.get(record.stream_id.as_str()) {
                    Some(&i) => rows[i].then(event, record),
                    None => {
                        index.insert(record.stream_id.as_str(), rows.len());
                        rows.push(Pending::new(event, record));
                    }
                }
            }
            upsert(tx, &rows).await?;
            Ok(())
        })
    }
}

/// One stream of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    pub stream_id: StreamId,
    pub category: Category,
    /// The stream's current version: its number of events.
    pub version: u64,
    /// Position of the stream's first event.
    pub first_position: u64,
    /// Position of the stream's latest event.
    pub last_position: u64,
    pub last_event_type: EventType,
    /// The authority of the latest event that names one.
    pub authority: Option<AuthorityId>,
    /// The tenant of the latest event that names one.
    pub tenant: Option<String>,
    /// `recorded_at` of the first event.
    pub created_at: DateTime<Utc>,
    /// `recorded_at` of the latest event.
    pub updated_at: DateTime<Utc>,
}

/// Which streams to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamQuery {
    pub category: Option<Category>,
    pub authority: Option<AuthorityId>,
    /// The `next` cursor of the previous page; `None` for the first page.
    pub after: Option<u64>,
    /// Streams per page, clamped to `1..=MAX_LIMIT`.
    pub limit: usize,
}

impl Default for StreamQuery {
    fn default() -> Self {
        Self {
            category: None,
            authority: None,
            after: None,
            limit: DEFAULT_LIMIT,
        }
    }
}

/// A page of streams, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPage {
    pub streams: Vec<StreamSummary>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<u64>,
}

const COLUMNS: &str = "stream_id, category, version, first_position, last_position, \
     last_event_type, authority, tenant, created_at, updated_at";

/// List streams, filtered by category and/or authority, in creation order.
pub async fn list_streams(db: &ReadDb, query: &StreamQuery) -> Result<StreamPage, DbError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let mut params: Vec<Value<'_>> = Vec::with_capacity(4);
    let mut conditions = Vec::with_capacity(3);
    // Only the filters given become SQL, so each combination gets a plan that uses its
    // index instead of one generic plan full of `$n IS NULL OR …`.
    if let Some(category) = &query.category {
        params.push(category.as_str().into());
        conditions.push(format!("category = ${}", params.len()));
    }
    if let Some(authority) = &query.authority {
        params.push(authority.as_str().into());
        conditions.push(format!("authority = ${}", params.len()));
    }
    if let Some(after) = query.after {
        params.push(after.into());
        conditions.push(format!("first_position > ${}", params.len()));
    }
    // One more than asked tells whether there is a next page.
    params.push(Value::from(i64::try_from(limit + 1).unwrap_or(i64::MAX)));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM streams{filter} ORDER BY first_position LIMIT ${}",
        params.len()
    );
    let rows = db.fetch_all(&sql, &params).await?;
    let mut streams = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    let next = if streams.len() > limit {
        streams.truncate(limit);
        streams.last().map(|s| s.first_position)
    } else {
        None
    };
    Ok(StreamPage { streams, next })
}

/// One stream, if the catalogue has it.
pub async fn get_stream(db: &ReadDb, stream: &StreamId) -> Result<Option<StreamSummary>, DbError> {
    db.fetch_optional(
        &format!("SELECT {COLUMNS} FROM streams WHERE stream_id = $1"),
        &[stream.as_str().into()],
    )
    .await?
    .as_ref()
    .map(summary)
    .transpose()
}

fn parsed<T, E: std::fmt::Display>(column: &str, value: Result<T, E>) -> Result<T, DbError> {
    value.map_err(|e| DbError::Decode {
        column: column.to_owned(),
        reason: e.to_string(),
    })
}

fn summary(row: &Row) -> Result<StreamSummary, DbError> {
    let authority: Option<String> = row.get("authority")?;
    Ok(StreamSummary {
        stream_id: parsed(
            "stream_id",
            StreamId::parse(&row.get::<String>("stream_id")?),
        )?,
        category: parsed("category", Category::parse(&row.get::<String>("category")?))?,
        version: row.get_u64("version")?,
        first_position: row.get_u64("first_position")?,
        last_position: row.get_u64("last_position")?,
        last_event_type: parsed(
            "last_event_type",
            EventType::parse(&row.get::<String>("last_event_type")?),
        )?,
        authority: authority
            .map(|a| parsed("authority", AuthorityId::parse(&a)))
            .transpose()?,
        tenant: row.get("tenant")?,
        created_at: row.timestamp("created_at")?,
        updated_at: row.timestamp("updated_at")?,
    })
}
