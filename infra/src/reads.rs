//! Reading the log: the statements behind `EventStore`'s reads, written once for both
//! adapters.
//!
//! Reads take no lock and never wait for the writer (positions are commit-ordered, so a
//! plain `WHERE position > $1 ORDER BY position` is enough), so nothing in them depends on
//! the database: each adapter hands its `Db` to these functions. Only appends differ per
//! adapter (`postgres.rs`, `sqlite.rs`).

use amtsbuch_domain::{Category, StreamId};
use uuid::Uuid;

use crate::db::{Db, Row};
use crate::store::{clamp_limit, to_hash, to_i64, Direction, Head, RecordedEvent, StoreError};

/// The reads of `EventStore` for an adapter whose field `db` is its `Db`, expanded into
/// each adapter's `impl EventStore`, so that both run the functions below.
macro_rules! shared_reads {
    () => {
        async fn read_stream(
            &self,
            stream: &amtsbuch_domain::StreamId,
            from: u64,
            direction: $crate::store::Direction,
            limit: usize,
        ) -> Result<Vec<$crate::store::RecordedEvent>, $crate::store::StoreError> {
            $crate::reads::read_stream(&self.db, stream, from, direction, limit).await
        }

        async fn read_all(
            &self,
            after: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::RecordedEvent>, $crate::store::StoreError> {
            $crate::reads::read_all(&self.db, after, limit).await
        }

        async fn read_category(
            &self,
            category: &amtsbuch_domain::Category,
            after: u64,
            limit: usize,
        ) -> Result<Vec<$crate::store::RecordedEvent>, $crate::store::StoreError> {
            $crate::reads::read_category(&self.db, category, after, limit).await
        }

        async fn event_by_id(
            &self,
            id: uuid::Uuid,
        ) -> Result<Option<$crate::store::RecordedEvent>, $crate::store::StoreError> {
            $crate::reads::event_by_id(&self.db, id).await
        }

        async fn head(&self) -> Result<$crate::store::Head, $crate::store::StoreError> {
            $crate::reads::head(&self.db).await
        }

        async fn ping(&self) -> Result<(), $crate::store::StoreError> {
            $crate::reads::ping(&self.db).await
        }
    };
}
pub(crate) use shared_reads;

/// `SELECT` of a `RecordedEvent`'s columns from `events`, followed by `$tail`.
macro_rules! events {
    ($tail:literal $(,)?) => {
        concat!(
            "SELECT position, record, leaf_hash, chain_hash FROM events ",
            $tail
        )
    };
}

fn limit(limit: usize) -> i64 {
    to_i64(clamp_limit(limit) as u64)
}

fn recorded(row: &Row) -> Result<RecordedEvent, StoreError> {
    let position = row.get_u64("position")?;
    Ok(RecordedEvent {
        position,
        bytes: row.get("record")?,
        leaf_hash: to_hash(position, "leaf hash", row.bytes("leaf_hash")?)?,
        chain_hash: to_hash(position, "chain hash", row.bytes("chain_hash")?)?,
    })
}

fn all_recorded(rows: Vec<Row>) -> Result<Vec<RecordedEvent>, StoreError> {
    rows.iter().map(recorded).collect()
}

pub(crate) async fn read_stream(
    db: &Db,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let sql = match direction {
        Direction::Forwards => events!(
            "WHERE stream_id = $1 AND stream_version >= $2 ORDER BY stream_version LIMIT $3",
        ),
        Direction::Backwards => events!(
            "WHERE stream_id = $1 AND stream_version <= $2 ORDER BY stream_version DESC LIMIT $3",
        ),
    };
    let rows = db
        .fetch_all(
            sql,
            &[
                stream.as_str().into(),
                to_i64(from).into(),
                limit(max).into(),
            ],
        )
        .await?;
    all_recorded(rows)
}

pub(crate) async fn read_all(
    db: &Db,
    after: u64,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = db
        .fetch_all(
            events!("WHERE position > $1 ORDER BY position LIMIT $2"),
            &[to_i64(after).into(), limit(max).into()],
        )
        .await?;
    all_recorded(rows)
}

pub(crate) async fn read_category(
    db: &Db,
    category: &Category,
    after: u64,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = db
        .fetch_all(
            events!("WHERE category = $1 AND position > $2 ORDER BY position LIMIT $3"),
            &[
                category.as_str().into(),
                to_i64(after).into(),
                limit(max).into(),
            ],
        )
        .await?;
    all_recorded(rows)
}

pub(crate) async fn event_by_id(db: &Db, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
    let row = db
        .fetch_optional(events!("WHERE event_id = $1"), &[id.into()])
        .await?;
    row.as_ref().map(recorded).transpose()
}

/// The head row (`log_head` has exactly one row in both schemas).
pub(crate) async fn head(db: &Db) -> Result<Head, StoreError> {
    let row = db
        .fetch_optional("SELECT position, chain_hash FROM log_head", &[])
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            position: 0,
            reason: "the log_head row is missing".into(),
        })?;
    let position = row.get_u64("position")?;
    Ok(Head {
        position,
        chain_hash: to_hash(position, "head chain hash", row.bytes("chain_hash")?)?,
    })
}

pub(crate) async fn ping(db: &Db) -> Result<(), StoreError> {
    db.fetch_optional("SELECT 1", &[]).await?;
    Ok(())
}
