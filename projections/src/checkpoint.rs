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

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::db::{DbError, Dialect, ReadDb, ReadTx, Value};

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

/// A move of one projection's checkpoint past a batch of events it does not apply: from
/// `from` (where its runner left it) to `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip<'a> {
    pub name: &'a str,
    pub from: u64,
    pub to: u64,
}

/// Most moves in one statement (three parameters each).
const MOVES_PER_STATEMENT: usize = 64;

/// Move the checkpoints of several projections in one statement, each only if it is still
/// where its runner left it (`from`): a compare-and-set per row, so a checkpoint that a
/// rebuild reset or another lease holder moved is left as it is. Returns the names that
/// moved; a name missing from the answer was not at its `from` (or has no checkpoint).
///
/// Like the projections' transactions, the statement does not wait for the flush to disk
/// on PostgreSQL: a read model is rebuilt from the log, and its checkpoint moves
/// atomically either way.
pub async fn skip_many(db: &ReadDb, moves: &[Skip<'_>]) -> Result<Vec<String>, DbError> {
    let mut moved = Vec::with_capacity(moves.len());
    let updated_at = now();
    for chunk in moves.chunks(MOVES_PER_STATEMENT) {
        let n = chunk.len();
        let mut cases = String::with_capacity(n * 24);
        let mut wheres = String::with_capacity(n * 40);
        let mut params: Vec<Value<'_>> = Vec::with_capacity(n * 3 + 1);
        for (i, skip) in chunk.iter().enumerate() {
            let (name, from, to) = (3 * i + 1, 3 * i + 2, 3 * i + 3);
            cases.push_str(&format!(" WHEN ${name} THEN ${to}"));
            if i > 0 {
                wheres.push_str(" OR ");
            }
            wheres.push_str(&format!("(name = ${name} AND position = ${from})"));
            params.extend([skip.name.into(), skip.from.into(), skip.to.into()]);
        }
        params.push(updated_at.as_str().into());
        let asynchronous = match db.dialect() {
            Dialect::Postgres => " AND set_config('synchronous_commit', 'off', true) IS NOT NULL",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE projection_checkpoints SET position = CASE name{cases} END, \
             updated_at = ${} WHERE ({wheres}){asynchronous} RETURNING name",
            3 * n + 1
        );
        for row in db.fetch_all(&sql, &params).await? {
            moved.push(row.get::<String>("name")?);
        }
    }
    Ok(moved)
}

/// Where the runner's projections ask for their checkpoints to be moved past batches they
/// do not apply. The projections of a runner wake for the same new events, and most of
/// them pass over most batches (an application's events concern a few read models of a
/// dozen): the moves asked for at about the same time go to the database together, in
/// one statement (`skip_many`), instead of a statement each. Each move is still a
/// compare-and-set of its own row, and each asker learns whether its own move happened.
#[derive(Debug, Clone)]
pub(crate) struct Skipper {
    db: ReadDb,
    /// The gathering task; `None` moves each checkpoint at once (a rebuild, alone).
    gather: Option<mpsc::UnboundedSender<Request>>,
}

#[derive(Debug)]
struct Request {
    name: &'static str,
    from: u64,
    to: u64,
    answer: oneshot::Sender<Result<bool, DbError>>,
}

impl Skipper {
    /// Each move in a statement of its own.
    pub(crate) fn direct(db: ReadDb) -> Self {
        Self { db, gather: None }
    }

    /// Moves gathered by a task of their own, which ends when the last clone is dropped.
    pub(crate) fn gathering(db: ReadDb) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(gather(db.clone(), rx));
        (
            Self {
                db,
                gather: Some(tx),
            },
            task,
        )
    }

    /// Move the checkpoint of `name` from `from` to `to`; false (and nothing changed) when
    /// the checkpoint is not at `from`.
    pub(crate) async fn skip(
        &self,
        name: &'static str,
        from: u64,
        to: u64,
    ) -> Result<bool, DbError> {
        if let Some(gather) = &self.gather {
            let (answer, answered) = oneshot::channel();
            let request = Request {
                name,
                from,
                to,
                answer,
            };
            if gather.send(request).is_ok() {
                if let Ok(result) = answered.await {
                    return result;
                }
            }
            // The gathering task is gone (the runner is stopping): move it alone.
        }
        let moved = skip_many(&self.db, &[Skip { name, from, to }]).await?;
        Ok(!moved.is_empty())
    }
}

/// The gathering task: takes the first move asked for, lets the other projections woken
/// by the same events ask too (they run on this runtime now, so a few yields suffice; no
/// timer is waited on), then moves everything asked so far in one statement. Moves asked
/// while a statement runs go into the next.
async fn gather(db: ReadDb, mut requests: mpsc::UnboundedReceiver<Request>) {
    const YIELDS: usize = 3;
    while let Some(first) = requests.recv().await {
        for _ in 0..YIELDS {
            tokio::task::yield_now().await;
        }
        let mut batch = vec![first];
        while let Ok(next) = requests.try_recv() {
            batch.push(next);
        }
        // One move per name: a projection asks again only after its answer.
        let moves: Vec<Skip<'_>> = batch
            .iter()
            .map(|r| Skip {
                name: r.name,
                from: r.from,
                to: r.to,
            })
            .collect();
        match skip_many(&db, &moves).await {
            Ok(moved) => {
                for request in batch {
                    let done = moved.iter().any(|m| m == request.name);
                    let _ = request.answer.send(Ok(done));
                }
            }
            Err(e) => {
                for request in batch {
                    let _ = request.answer.send(Err(e.clone()));
                }
            }
        }
    }
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
