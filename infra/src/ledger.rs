//! The verifiable ledger: the Merkle tree over the log, signed checkpoints, and proofs.
//!
//! One ledger task per database (PostgreSQL: whoever holds an advisory lock; SQLite: the one
//! process) follows the log in position order. It re-checks each stored leaf and chain hash,
//! adds the leaf to a compact range, and remembers the interior nodes the leaf completes.
//! Every `every_events` events or `interval`, whichever comes first, it signs a C2SP
//! checkpoint of the current tree and stores it together with the new nodes and the compact
//! range, in one transaction. The tree is never recomputed from scratch; after a restart the
//! task resumes from the stored compact range, after checking it reproduces the last signed
//! root. Sizes only grow, and each new checkpoint extends the tree the previous one signed,
//! so no two checkpoints of this log can be inconsistent.
//!
//! Proofs read stored nodes: levels that are multiples of 4 are kept (`merkle_nodes`), leaves
//! are the events' leaf hashes, and levels in between are folded from at most 8 of those.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amtsbuch_domain::chain::{chain_hash, to_hex, GENESIS_CHAIN};
use amtsbuch_domain::checkpoint::{sign_checkpoint, Checkpoint};
use amtsbuch_domain::merkle::{self, leaf_hash, node_hash, CompactRange, Hash, SubtreeSource};
use amtsbuch_domain::note::Signer;

use crate::db::{chunk_sizes, placeholders, values_list, Db, DbError, Row, Value};
use crate::lease::Lease;
use crate::store::{to_hash, to_i64, EventStore, StoreError};
use crate::tail::LogTail;
use crate::AnyStore;

/// Interior nodes are stored at levels that are multiples of this.
const STRIDE: u32 = 4;
/// Events read per page while following the log.
const PAGE: usize = 2000;
/// How often a stand-by tries to take the ledger over.
const STANDBY: Duration = Duration::from_secs(1);
/// Most leaves or nodes asked for in one statement, and most nodes inserted by one. A proof
/// names a few dozen subtrees, each folded from at most 8 stored hashes, so its leaves and
/// its nodes are one statement each.
const MAX_LIST: usize = 1024;

/// How the ledger task signs.
#[derive(Debug)]
pub struct LedgerConfig {
    /// The log's origin line, e.g. `amtsbuch.sachsen.de/log`; every signer's key name.
    pub origin: String,
    /// All keys that sign each checkpoint (more than one during a key rotation).
    pub signers: Vec<Signer>,
    /// Sign at the latest when this many events are not yet covered.
    pub every_events: u64,
    /// Sign at the latest this long after the first uncovered event was seen.
    pub interval: Duration,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub root: Hash,
    /// The signed note exactly as issued.
    pub note: String,
}

/// Why a ledger operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("tree size {requested} is not covered by a signed checkpoint yet (latest: {latest})")]
    NotCovered { requested: u64, latest: u64 },
    #[error("the stored log is inconsistent at position {position}: {reason}")]
    Corrupt { position: u64, reason: String },
}

impl From<DbError> for LedgerError {
    fn from(e: DbError) -> Self {
        LedgerError::Store(e.into())
    }
}

// ---------------------------------------------------------------------------------------
// Storage: the few statements the ledger needs, one text for both databases.

fn checkpoint(row: &Row) -> Result<StoredCheckpoint, StoreError> {
    let size = row.get_u64("size")?;
    Ok(StoredCheckpoint {
        size,
        root: to_hash(size, "checkpoint root", row.bytes("root")?)?,
        note: row.get("note")?,
    })
}

/// The latest signed checkpoint, if any.
pub async fn latest_checkpoint(store: &AnyStore) -> Result<Option<StoredCheckpoint>, StoreError> {
    let sql = "SELECT size, root, note FROM checkpoints ORDER BY size DESC LIMIT 1";
    let row = Db::new(store).fetch_optional(sql, &[]).await?;
    row.as_ref().map(checkpoint).transpose()
}

/// The checkpoint of exactly this size, if one was signed.
pub async fn checkpoint_at(
    store: &AnyStore,
    size: u64,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    Ok(checkpoints_between(store, size, size).await?.pop())
}

/// Checkpoints with sizes in `[from, to]`, ascending (for exports).
pub async fn checkpoints_between(
    store: &AnyStore,
    from: u64,
    to: u64,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let rows = Db::new(store)
        .fetch_all(
            "SELECT size, root, note FROM checkpoints WHERE size BETWEEN $1 AND $2 ORDER BY size",
            &[to_i64(from).into(), to_i64(to).into()],
        )
        .await?;
    rows.iter().map(checkpoint).collect()
}

/// `list` cut into statements of at most `MAX_LIST` items, each padded to a power of two
/// by repeating its last item. Repeats change nothing in an `IN (…)`, and the statements
/// come in a handful of shapes that stay prepared, instead of one shape per length.
fn padded<T: Copy>(list: &[T]) -> impl Iterator<Item = Vec<T>> + '_ {
    list.chunks(MAX_LIST).map(|chunk| {
        let mut padded = chunk.to_vec();
        if let Some(last) = chunk.last() {
            padded.resize(chunk.len().next_power_of_two(), *last);
        }
        padded
    })
}

/// Leaf hashes by 0-based leaf index, and stored nodes by (level, index).
async fn fetch(
    store: &AnyStore,
    leaves: &[u64],
    nodes: &[(u64, u64)],
) -> Result<(HashMap<u64, Hash>, HashMap<(u64, u64), Hash>), StoreError> {
    let db = Db::new(store);
    let mut leaf_map = HashMap::with_capacity(leaves.len());
    let mut node_map = HashMap::with_capacity(nodes.len());
    for list in padded(leaves) {
        let sql = format!(
            "SELECT position, leaf_hash FROM events WHERE position IN ({})",
            placeholders(1, list.len())
        );
        let params: Vec<Value> = list.iter().map(|i| to_i64(i + 1).into()).collect();
        for r in db.fetch_all(&sql, &params).await? {
            let p = r.get_u64("position")?;
            leaf_map.insert(p - 1, to_hash(p, "leaf hash", r.bytes("leaf_hash")?)?);
        }
    }
    for list in padded(nodes) {
        // SQLite compares a row value with a list only in the form `IN (subquery)`.
        let sql = format!(
            "SELECT level, idx, hash FROM merkle_nodes WHERE (level, idx) IN ({})",
            values_list(2, list.len())
        );
        let params: Vec<Value> = list
            .iter()
            .flat_map(|(level, idx)| [to_i64(*level).into(), to_i64(*idx).into()])
            .collect();
        for r in db.fetch_all(&sql, &params).await? {
            let key = (r.get_u64("level")?, r.get_u64("idx")?);
            node_map.insert(key, to_hash(0, "merkle node", r.bytes("hash")?)?);
        }
    }
    Ok((leaf_map, node_map))
}

// ---------------------------------------------------------------------------------------
// Proofs: the shape of a proof does not depend on hash values, so a first pass records
// which subtrees it needs, one round trip fetches them, and a second pass computes it.

/// Records the subtrees a proof asks for.
#[derive(Debug, Default)]
struct Recorder(Vec<(u64, u64)>);

impl SubtreeSource for Recorder {
    type Error = std::convert::Infallible;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, Self::Error> {
        self.0.push((start, end));
        Ok([0; 32])
    }
}

/// What must be read to know the root of the perfect subtree `[start, end)`.
fn needs(start: u64, end: u64, leaves: &mut Vec<u64>, nodes: &mut Vec<(u64, u64)>) {
    let level = u64::from((end - start).trailing_zeros());
    let base = level - level % u64::from(STRIDE);
    for j in 0..(1u64 << (level - base)) {
        if base == 0 {
            leaves.push(start + j);
        } else {
            nodes.push((base, (start >> base) + j));
        }
    }
}

/// Answers subtree roots from fetched leaves and nodes.
struct Fetched {
    leaves: HashMap<u64, Hash>,
    nodes: HashMap<(u64, u64), Hash>,
}

impl SubtreeSource for Fetched {
    type Error = String;
    fn subtree_root(&mut self, start: u64, end: u64) -> Result<Hash, String> {
        let level = u64::from((end - start).trailing_zeros());
        let base = level - level % u64::from(STRIDE);
        let mut layer = Vec::with_capacity(1 << (level - base));
        for j in 0..(1u64 << (level - base)) {
            let hash = if base == 0 {
                self.leaves.get(&(start + j)).copied()
            } else {
                self.nodes.get(&(base, (start >> base) + j)).copied()
            };
            layer.push(hash.ok_or_else(|| {
                format!(
                    "missing tree node at level {base}, leaves from {}",
                    start + (j << base)
                )
            })?);
        }
        while layer.len() > 1 {
            layer = layer.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
        }
        layer
            .first()
            .copied()
            .ok_or_else(|| "empty subtree".to_owned())
    }
}

async fn source_for(store: &AnyStore, wanted: &[(u64, u64)]) -> Result<Fetched, LedgerError> {
    let mut leaves = Vec::new();
    let mut nodes = Vec::new();
    for (s, e) in wanted {
        needs(*s, *e, &mut leaves, &mut nodes);
    }
    let (leaves, nodes) = fetch(store, &leaves, &nodes).await?;
    Ok(Fetched { leaves, nodes })
}

async fn covered_size(store: &AnyStore, size: u64) -> Result<(), LedgerError> {
    let latest = latest_checkpoint(store).await?.map_or(0, |c| c.size);
    if size > latest {
        return Err(LedgerError::NotCovered {
            requested: size,
            latest,
        });
    }
    Ok(())
}

/// RFC 9162 inclusion proof of leaf `index` (0-based; position `index + 1`) in the tree of
/// `size`, which must be covered by a checkpoint.
pub async fn inclusion_proof(
    store: &AnyStore,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if index >= size {
        return Err(LedgerError::Invalid(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    covered_size(store, size).await?;
    let mut recorder = Recorder::default();
    merkle::inclusion_proof(index, size, &mut recorder)
        .map_err(|e| LedgerError::Invalid(e.to_string()))?;
    let mut source = source_for(store, &recorder.0).await?;
    merkle::inclusion_proof(index, size, &mut source).map_err(|e| LedgerError::Corrupt {
        position: index + 1,
        reason: e.to_string(),
    })
}

/// RFC 9162 consistency proof between tree sizes `from` and `to` (both covered).
pub async fn consistency_proof(
    store: &AnyStore,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if from == 0 || from > to {
        return Err(LedgerError::Invalid(format!(
            "a consistency proof needs 0 < from <= to, got from={from} to={to}"
        )));
    }
    covered_size(store, to).await?;
    let mut recorder = Recorder::default();
    merkle::consistency_proof(from, to, &mut recorder)
        .map_err(|e| LedgerError::Invalid(e.to_string()))?;
    let mut source = source_for(store, &recorder.0).await?;
    merkle::consistency_proof(from, to, &mut source).map_err(|e| LedgerError::Corrupt {
        position: to,
        reason: e.to_string(),
    })
}

/// The compact range of the tree of `size` (covered), rebuilt from stored nodes: what an
/// export starting after position `size` hands the verifier to continue from.
pub async fn compact_range_at(store: &AnyStore, size: u64) -> Result<CompactRange, LedgerError> {
    covered_size(store, size).await?;
    // The range is one perfect subtree per set bit of `size`, largest first.
    let mut wanted = Vec::new();
    let mut start = 0;
    for bit in (0..64).rev() {
        if size & (1 << bit) != 0 {
            wanted.push((start, start + (1 << bit)));
            start += 1 << bit;
        }
    }
    let mut source = source_for(store, &wanted).await?;
    let nodes = wanted
        .iter()
        .map(|(s, e)| source.subtree_root(*s, *e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|reason| LedgerError::Corrupt {
            position: size,
            reason,
        })?;
    CompactRange::from_parts(size, nodes).map_err(|e| LedgerError::Corrupt {
        position: size,
        reason: e.to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// The ledger task.

/// Start the ledger task for `store`. It runs until the process ends; errors are logged and
/// retried, and it never signs anything it could not check.
pub fn spawn(store: AnyStore, config: LedgerConfig) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match lead(&store, &config).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(error = %e, "ledger stopped signing; retrying in 5 s");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    })
}

/// Hold the ledger lock (PostgreSQL) for as long as this process signs.
async fn lead(store: &AnyStore, config: &LedgerConfig) -> Result<(), LedgerError> {
    match store {
        AnyStore::Postgres(_) => loop {
            // While another process signs for this database, or the database is away,
            // stand by.
            let lease = match Lease::acquire(store, "amtsbuch_ledger", STANDBY).await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot take the ledger lease; retrying");
                    tokio::time::sleep(STANDBY).await;
                    continue;
                }
            };
            tracing::info!("this process signs the ledger");
            let result = follow(store, config, Some(&lease)).await;
            if result.is_err() && !lease.is_held() {
                tracing::warn!("lost the ledger lease; standing by");
                continue;
            }
            lease.release().await;
            return result;
        },
        AnyStore::Sqlite(_) => follow(store, config, None).await,
    }
}

/// Resume from the stored state and follow the log, signing as configured, for as long as
/// `lease` (if any) is held.
async fn follow(
    store: &AnyStore,
    config: &LedgerConfig,
    lease: Option<&Lease>,
) -> Result<(), LedgerError> {
    // Another process may sign once this one's lease is lost: stop at once, and never sign
    // without it.
    let held = || match lease {
        Some(lease) if !lease.is_held() => Err(LedgerError::Store(StoreError::Unavailable(
            "the ledger lease is lost".into(),
        ))),
        _ => Ok(()),
    };
    let lost = async {
        match lease {
            Some(lease) => lease.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    let mut range = load_state(store).await?;
    let last = latest_checkpoint(store).await?;
    match &last {
        Some(c) if c.size != range.size() || c.root != range.root() => {
            return Err(LedgerError::Corrupt {
                position: c.size,
                reason: format!(
                    "the stored tree state (size {}) does not reproduce the latest signed root (size {}); refusing to sign",
                    range.size(),
                    c.size
                ),
            })
        }
        None if range.size() != 0 => {
            return Err(LedgerError::Corrupt { position: range.size(), reason: "tree state without a checkpoint".into() })
        }
        _ => {}
    }
    let mut chain = match range.size() {
        0 => GENESIS_CHAIN,
        n => store
            .read_all(n - 1, 1)
            .await?
            .first()
            .map(|e| e.chain_hash)
            .ok_or_else(|| LedgerError::Corrupt {
                position: n,
                reason: "a signed event is missing".into(),
            })?,
    };
    let mut signed_size = range.size();
    let mut pending: Vec<(u64, u64, Hash)> = Vec::new();
    let mut uncovered_since: Option<Instant> = None;
    // The process's one reader of the newest events, if the store has one.
    let tail = store.tail();
    let mut head = tail
        .as_ref()
        .map_or_else(|| store.head_watch(), LogTail::watch);
    loop {
        head.borrow_and_update();
        let page = match &tail {
            Some(tail) => tail.read(range.size(), PAGE).await?,
            None => store
                .read_all(range.size(), PAGE)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect(),
        };
        let full = page.len() == PAGE;
        for e in &page {
            let leaf = leaf_hash(&e.bytes);
            if leaf != e.leaf_hash {
                return Err(LedgerError::Corrupt {
                    position: e.position,
                    reason: format!(
                        "stored leaf hash {} differs from the record's hash {}",
                        to_hex(&e.leaf_hash),
                        to_hex(&leaf)
                    ),
                });
            }
            chain = chain_hash(&chain, &leaf);
            if chain != e.chain_hash {
                return Err(LedgerError::Corrupt {
                    position: e.position,
                    reason: "chain hash does not link to its predecessor".into(),
                });
            }
            range.push_reporting(leaf, |level, index, hash| {
                if level % STRIDE == 0 {
                    pending.push((u64::from(level), index, *hash));
                }
            });
        }
        if range.size() > signed_size {
            let since = *uncovered_since.get_or_insert_with(Instant::now);
            if range.size() - signed_size >= config.every_events
                || since.elapsed() >= config.interval
            {
                held()?;
                sign_and_store(store, config, &range, &pending).await?;
                signed_size = range.size();
                pending.clear();
                uncovered_since = None;
            }
        }
        if full {
            continue;
        }
        let wait = match uncovered_since {
            Some(since) => config.interval.saturating_sub(since.elapsed()),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            changed = head.changed() => if changed.is_err() { return Ok(()) },
            _ = tokio::time::sleep(wait.max(Duration::from_millis(1))) => {}
            reason = &mut lost => return Err(LedgerError::Store(StoreError::Unavailable(reason))),
        }
    }
}

async fn load_state(store: &AnyStore) -> Result<CompactRange, LedgerError> {
    let row = Db::background(store)
        .fetch_optional("SELECT size, compact_range FROM ledger_state", &[])
        .await?;
    let Some(row) = row else {
        return Ok(CompactRange::new());
    };
    let size = row.get_u64("size")?;
    let bytes = row.bytes("compact_range")?;
    let nodes = bytes
        .chunks(32)
        .map(|c| to_hash(size, "compact range node", c))
        .collect::<Result<Vec<_>, _>>()?;
    CompactRange::from_parts(size, nodes).map_err(|e| LedgerError::Corrupt {
        position: size,
        reason: e.to_string(),
    })
}

async fn sign_and_store(
    store: &AnyStore,
    config: &LedgerConfig,
    range: &CompactRange,
    pending: &[(u64, u64, Hash)],
) -> Result<(), LedgerError> {
    let checkpoint = Checkpoint {
        origin: config.origin.clone(),
        size: range.size(),
        root: range.root(),
        extensions: Vec::new(),
    };
    let signers: Vec<&Signer> = config.signers.iter().collect();
    let note = sign_checkpoint(&checkpoint, &signers)
        .map_err(|e| LedgerError::Invalid(format!("cannot sign: {e}")))?;
    let compact: Vec<u8> = range.nodes().iter().flatten().copied().collect();
    let moved = persist(
        &Db::background(store),
        range.size(),
        &compact,
        pending,
        &checkpoint.root,
        &note,
    )
    .await?;
    if !moved {
        return Err(LedgerError::Invalid(
            "another process advanced the ledger; resuming from its state".into(),
        ));
    }
    tracing::debug!(size = range.size(), "checkpoint signed");
    Ok(())
}

/// Store a signed checkpoint with the nodes it completed and the new tree state, in one
/// transaction; `false` (and nothing stored) if the stored state is not older.
async fn persist(
    db: &Db,
    size: u64,
    compact: &[u8],
    pending: &[(u64, u64, Hash)],
    root: &Hash,
    note: &str,
) -> Result<bool, StoreError> {
    let mut tx = db.begin().await?;
    let mut rest = pending;
    for n in chunk_sizes(pending.len(), MAX_LIST) {
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let sql = format!(
            "INSERT INTO merkle_nodes (level, idx, hash) {} ON CONFLICT DO NOTHING",
            values_list(3, n)
        );
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(level, idx, hash)| {
                [
                    to_i64(*level).into(),
                    to_i64(*idx).into(),
                    hash.as_slice().into(),
                ]
            })
            .collect();
        tx.execute(&sql, &params).await?;
    }
    // The state only moves forward: a second signer that lost the lock cannot go back.
    // (`TRUE` is the one id on PostgreSQL's BOOLEAN key and 1 on SQLite's INTEGER key.)
    let moved = tx
        .execute(
            "INSERT INTO ledger_state (id, size, compact_range) VALUES (TRUE, $1, $2) \
             ON CONFLICT (id) DO UPDATE \
             SET size = EXCLUDED.size, compact_range = EXCLUDED.compact_range \
             WHERE ledger_state.size < EXCLUDED.size",
            &[to_i64(size).into(), compact.into()],
        )
        .await?;
    if moved != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(
        "INSERT INTO checkpoints (size, root, note) VALUES ($1, $2, $3)",
        &[to_i64(size).into(), root.as_slice().into(), note.into()],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}
