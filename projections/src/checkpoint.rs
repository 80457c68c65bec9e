//! Checkpoints: how far each projection has applied the log, stored beside its read model.
//!
//! A checkpoint row (`projection_checkpoints`) is written in the same transaction as the
//! read-model changes it covers, so the two can never disagree. The row is also the
//! projection's write lock: every batch first locks it (`FOR UPDATE` on PostgreSQL; on
//! SQLite the batch's `BEGIN IMMEDIATE` holds the database write lock) and re-reads it, and
//! a rebuild resets it under the same lock. A runner whose remembered position differs from
//! the stored one has been overtaken (by a rebuild, or by another runner that thought it
//! held the lease) and continues from the stored position instead of applying anything.

use amtsbuch_domain::record::{format_timestamp, truncate_micros};
use sqlx::types::chrono::Utc;

use crate::db::{DbError, Dialect, ReadDb, ReadTx};

fn now() -> String {
    format_timestamp(&truncate_micros(Utc::now()))
}

/// The stored position of `name`, read without a lock; `None` if it has no checkpoint.
pub async fn read(db: &ReadDb, name: &str) -> Result<Option<u64>, DbError> {
    db.fetch_optional(
        "SELECT position FROM projection_checkpoints WHERE name = $1",
        &[name.into()],
    )
    .await?
    .map(|row| row.get_u64("position"))
    .transpose()
}

/// Every stored checkpoint, by name: what an operator's lag metric compares with the head.
pub async fn all(db: &ReadDb) -> Result<Vec<(String, u64)>, DbError> {
    db.fetch_all(
        "SELECT name, position FROM projection_checkpoints ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(|row| Ok((row.get("name")?, row.get_u64("position")?)))
    .collect()
}

/// Lock the checkpoint of `name` for the rest of `tx` and return its position: the first
/// statement of every batch.
///
/// On PostgreSQL the same statement switches the batch to asynchronous commit. A read
/// model is derived data and its checkpoint commits with it, so a crash of the server
/// can only lose the latest batches as a whole, and the runner applies them again from
/// the checkpoint that survived; in exchange a batch does not wait for a WAL flush, which
/// is most of its latency.
pub(crate) async fn lock(tx: &mut ReadTx, name: &str) -> Result<Option<u64>, DbError> {
    let sql = match tx.dialect() {
        Dialect::Postgres => {
            "SELECT position, set_config('synchronous_commit', 'off', true) AS async \
             FROM projection_checkpoints WHERE name = $1 FOR UPDATE"
        }
        // The transaction began IMMEDIATE: it already holds the database's write lock.
        Dialect::Sqlite => "SELECT position FROM projection_checkpoints WHERE name = $1",
    };
    tx.fetch_optional(sql, &[name.into()])
        .await?
        .map(|row| row.get_u64("position"))
        .transpose()
}

/// Move the checkpoint of `name` (locked by `lock`) to `position`.
pub(crate) async fn advance(tx: &mut ReadTx, name: &str, position: u64) -> Result<(), DbError> {
    tx.execute(
        "UPDATE projection_checkpoints SET position = $2, updated_at = $3 WHERE name = $1",
        &[name.into(), position.into(), now().into()],
    )
    .await?;
    Ok(())
}

/// Move the checkpoint from `from` to `to` in one statement of its own, for a batch of
/// events the projection does not apply; false (and nothing changed) when the checkpoint
/// is not at `from`. Like the projection's transactions, it does not wait for the flush to
/// disk on PostgreSQL: a read model is rebuilt from the log, and its checkpoint moves
/// atomically either way.
pub(crate) async fn skip(db: &ReadDb, name: &str, from: u64, to: u64) -> Result<bool, DbError> {
    let sql = match db.dialect() {
        Dialect::Postgres => {
            "UPDATE projection_checkpoints SET position = $3, updated_at = $4 \
             WHERE name = $1 AND position = $2 \
             AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
        }
        Dialect::Sqlite => {
            "UPDATE projection_checkpoints SET position = $3, updated_at = $4 \
             WHERE name = $1 AND position = $2"
        }
    };
    let changed = db
        .execute(sql, &[name.into(), from.into(), to.into(), now().into()])
        .await?;
    Ok(changed == 1)
}

/// Set the checkpoint of `name` to 0, creating it if needed, and keep it locked for the
/// rest of `tx`: the first statement of a rebuild's reset.
pub(crate) async fn restart(tx: &mut ReadTx, name: &str) -> Result<(), DbError> {
    tx.execute(
        "INSERT INTO projection_checkpoints (name, position, updated_at) VALUES ($1, 0, $2) \
         ON CONFLICT (name) DO UPDATE SET position = 0, updated_at = EXCLUDED.updated_at",
        &[name.into(), now().into()],
    )
    .await?;
    Ok(())
}
