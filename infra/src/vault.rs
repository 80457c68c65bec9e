//! The key vault for crypto-shredding: each data subject's data keys, stored wrapped under
//! the configured KEKs in the table `subject_keys`, beside the event log in the same
//! database.
//!
//! Personal data enters the log only sealed under its subject's data key. Erasing a subject
//! (Art. 17 GDPR) calls [`KeyVault::destroy`], which removes the wrapped key material and
//! leaves a tombstone `(subject, key_id, destroyed_at)`. The log, its hashes and its proofs
//! stay exactly as they were; the sealed sections simply can no longer be opened, and the
//! tombstone lets readers say "erased" instead of "no key" — and refuses the subject a new
//! key, so nothing personal can be sealed for it again.
//!
//! Rules this module keeps:
//!
//! - A subject gets its first key on first use, by *insert-if-absent*: the one insert the
//!   database keeps uses its own key, every other racer reads that row back, so any number
//!   of tasks and processes racing for the first key end up using the one row the database
//!   kept. Erasing a subject without a key inserts the tombstone in the same slot,
//!   so a first use racing with an erasure either is destroyed by it or sees it.
//! - No plaintext data key is cached across calls. Another process may destroy a key at any
//!   moment, and a cache would go on opening and sealing personal data of an erased subject
//!   for as long as it lives; a cache would also keep key material in memory far longer than
//!   one operation needs. Every call reads the row and unwraps (one indexed read and one
//!   AES-GCM decryption of 32 bytes).
//! - On PostgreSQL a new key's row commits without waiting for the flush of the WAL to
//!   disk (`synchronous_commit` off for that one statement), which is a whole disk flush
//!   (about 5 ms on the test machine) less on a subject's first use. Nothing is lost by it:
//!   whatever is sealed under the key is stored in the same database after the key's row
//!   was committed, and the WAL is flushed in order, so whatever of it is durable (an
//!   event's append waits for its flush) has the key's row durable before it; a standby
//!   receives the WAL in the same order. A crash can only lose a key that nothing durable
//!   was sealed under yet, and the next use creates one again. Destroying a key and the
//!   tombstone of an erasure always wait for the flush.
//! - A key that exists but does not unwrap is an [`VaultError::Integrity`] failure (wrong or
//!   missing KEK, tampering), never mistaken for erasure.
//! - Only the first KEK of the [`Keyring`] wraps; every configured KEK unwraps. Rotating a
//!   KEK: configure the new one first, run [`KeyVault::rewrap_all`], and once it reports no
//!   keys remaining under other KEKs, drop the old KEK and destroy its file. Copies of
//!   wrapped keys that outlive a destroy (PostgreSQL's dead row versions until VACUUM,
//!   SQLite's WAL, every backup) are then unreadable too.

use std::fmt;
use std::sync::Arc;

use amtsbuch_domain::record::truncate_micros;
use amtsbuch_domain::seal::{self, DataKey, KeyId, SealError, SystemRandom, WrappedKey};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::db::{Db, DbError, Dialect, Row, Value};
use crate::kek::Keyring;
use crate::store::{to_i64, StoreError};
use crate::AnyStore;

/// The version a subject's first (and so far only) data key gets.
pub const FIRST_KEY_ID: &str = "k1";

/// Keys re-wrapped per transaction by [`KeyVault::rewrap_all`].
const REWRAP_PAGE: usize = 256;

/// At most this many failures are listed in a [`RewrapReport`]; all are counted.
const MAX_LISTED_FAILURES: usize = 100;

/// The pseudonymous id of a data subject ([`amtsbuch_domain::SubjectId`]) as lowercase
/// hyphenated UUID text, exactly as sealed sections name it.
///
/// Only that form is accepted. The subject stays in plaintext in every sealed section of
/// the log, also after erasure, so it must be an id that says nothing about the person; a
/// UUID cannot be an e-mail address or a name by mistake. One spelling per subject also
/// keeps one subject from having two key slots.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(String);

/// A subject id was not a UUID in its one spelling. The refused text is not quoted: a caller that
/// got this wrong may have passed personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a subject id must be an account UUID in lowercase hyphenated form (36 characters)")]
pub struct SubjectIdError;

impl SubjectId {
    pub fn parse(s: &str) -> Result<Self, SubjectIdError> {
        match Uuid::try_parse(s) {
            Ok(uuid) if s.len() == 36 && uuid.hyphenated().to_string() == s => {
                Ok(Self(s.to_owned()))
            }
            _ => Err(SubjectIdError),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<amtsbuch_domain::SubjectId> for SubjectId {
    fn from(id: amtsbuch_domain::SubjectId) -> Self {
        Self(id.to_string())
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a vault operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The subject was erased: its keys are destroyed and it gets no new one.
    #[error("subject {subject} was erased at {at}; its keys are destroyed")]
    Erased {
        subject: SubjectId,
        at: DateTime<Utc>,
    },
    /// The vault never had this key version of the subject (a record naming it was forged,
    /// or the vault was restored from a backup older than the key).
    #[error("the vault has no key {key_id} of subject {subject}")]
    NoKey { subject: SubjectId, key_id: KeyId },
    /// A stored key exists but cannot be used: it does not unwrap under the configured KEK
    /// (a wrong KEK, a KEK that is not configured, a changed row), or its row is malformed.
    #[error("key {key_id} of subject {subject} is unusable: {reason}")]
    Integrity {
        subject: String,
        key_id: String,
        reason: String,
    },
    /// The random source or the cipher failed while making a key.
    #[error("cannot make a data key: {0}")]
    Crypto(SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<DbError> for VaultError {
    fn from(e: DbError) -> Self {
        VaultError::Store(e.into())
    }
}

/// What the vault knows about a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectStatus {
    /// The subject never had a key and was never erased.
    None,
    /// The subject has a live key; `key_id` is the one new seals use.
    Active {
        key_id: KeyId,
        created_at: DateTime<Utc>,
    },
    /// The subject was erased at `at`.
    Erased { at: DateTime<Utc> },
}

/// The outcome of [`KeyVault::destroy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destroyed {
    /// The key versions this call destroyed (none when the subject was already erased or
    /// never had a key).
    pub key_ids: Vec<String>,
    /// When the subject's erasure took effect: now, or the time of an earlier destroy.
    pub at: DateTime<Utc>,
    /// Whether this call found live key material and destroyed it.
    pub was_present: bool,
    /// Every key version the subject ever held, all destroyed now — by this call or by an
    /// earlier one that was interrupted before its erasure was recorded. The tombstone
    /// written for a subject that never had a key is not one of them.
    pub held: Vec<String>,
}

/// A key [`KeyVault::rewrap_all`] could not re-wrap; it stays under its old KEK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapFailure {
    pub subject: String,
    pub key_id: String,
    pub reason: String,
}

/// Counts of a re-wrap run, handed to the progress callback after every page and returned
/// at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// The KEK every key is being wrapped under.
    pub kek_id: KeyId,
    /// Live keys under other KEKs when the run started.
    pub to_do: u64,
    /// Live keys already under `kek_id` when the run started.
    pub already_current: u64,
    /// Keys this run re-wrapped.
    pub rewrapped: u64,
    /// Keys destroyed or re-wrapped by someone else while this run worked on them.
    pub skipped: u64,
    /// Keys that did not unwrap (see `failures`).
    pub failed: u64,
    /// The first failures, at most 100.
    pub failures: Vec<RewrapFailure>,
    /// Live keys under other KEKs when the run ended (0 in the progress reports). Old KEKs
    /// may be destroyed once this is 0.
    pub remaining: u64,
}

/// The key vault over one store's database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct KeyVault {
    db: Db,
    keyring: Arc<Keyring>,
    rng: SystemRandom,
}

/// One row of `subject_keys`, as stored.
struct KeyRow {
    subject: String,
    key_id: String,
    wrapping: Option<StoredWrap>,
    created_at: DateTime<Utc>,
    destroyed_at: Option<DateTime<Utc>>,
}

/// The wrapping columns of a live row.
struct StoredWrap {
    kek_id: String,
    alg: String,
    nonce: String,
    wrapped_key: String,
}

const ROWS: &str = "SELECT subject, key_id, kek_id, alg, nonce, wrapped_key, created_at, \
     destroyed_at FROM subject_keys WHERE subject = $1";

const INSERT: &str = "INSERT INTO subject_keys \
     (subject, key_id, kek_id, alg, nonce, wrapped_key, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (subject, key_id) DO NOTHING";

/// [`INSERT`] on PostgreSQL: the same row, committed without waiting for the WAL flush
/// (see the module's rules on why a new key may).
const INSERT_ASYNC: &str = "INSERT INTO subject_keys \
     (subject, key_id, kek_id, alg, nonce, wrapped_key, created_at) \
     SELECT $1, $2, $3, $4, $5, $6, $7 \
     WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL \
     ON CONFLICT (subject, key_id) DO NOTHING";

const TOMBSTONE: &str = "INSERT INTO subject_keys (subject, key_id, created_at, destroyed_at) \
     VALUES ($1, $2, $3, $3) ON CONFLICT (subject, key_id) DO NOTHING";

const DESTROY: &str = "UPDATE subject_keys \
     SET kek_id = NULL, alg = NULL, nonce = NULL, wrapped_key = NULL, destroyed_at = $2 \
     WHERE subject = $1 AND destroyed_at IS NULL RETURNING key_id";

const COUNT_UNDER: &str =
    "SELECT COUNT(*) AS n FROM subject_keys WHERE destroyed_at IS NULL AND kek_id = $1";
const COUNT_OTHER: &str =
    "SELECT COUNT(*) AS n FROM subject_keys WHERE destroyed_at IS NULL AND kek_id <> $1";

/// Live keys under other KEKs after `(subject, key_id)`, in key order.
const OLD_PAGE: &str = "SELECT subject, key_id, kek_id, alg, nonce, wrapped_key, \
     created_at, destroyed_at FROM subject_keys \
     WHERE destroyed_at IS NULL AND kek_id <> $1 AND (subject, key_id) > ($2, $3) \
     ORDER BY subject, key_id LIMIT $4";

/// Replaces a wrapping only if the row still holds the one that was read: a key destroyed
/// or re-wrapped in the meantime is left alone.
const REWRAP: &str = "UPDATE subject_keys \
     SET kek_id = $1, alg = $2, nonce = $3, wrapped_key = $4 \
     WHERE subject = $5 AND key_id = $6 AND destroyed_at IS NULL \
       AND kek_id = $7 AND nonce = $8 AND wrapped_key = $9";

/// The present instant at the precision both databases keep.
fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

fn wrapping(
    kek_id: Option<String>,
    alg: Option<String>,
    nonce: Option<String>,
    wrapped_key: Option<String>,
) -> Option<StoredWrap> {
    Some(StoredWrap {
        kek_id: kek_id?,
        alg: alg?,
        nonce: nonce?,
        wrapped_key: wrapped_key?,
    })
}

fn key_row(r: &Row) -> Result<KeyRow, VaultError> {
    let subject: String = r.get("subject")?;
    let key_id: String = r.get("key_id")?;
    // A stored time that does not parse (only possible in SQLite's text) makes this key
    // unusable, like any other malformed part of its row.
    let unusable = |e: DbError| VaultError::Integrity {
        subject: subject.clone(),
        key_id: key_id.clone(),
        reason: e.to_string(),
    };
    let created_at = r.timestamp("created_at").map_err(unusable)?;
    let destroyed_at = r.opt_timestamp("destroyed_at").map_err(unusable)?;
    Ok(KeyRow {
        wrapping: wrapping(
            r.get("kek_id")?,
            r.get("alg")?,
            r.get("nonce")?,
            r.get("wrapped_key")?,
        ),
        subject,
        key_id,
        created_at,
        destroyed_at,
    })
}

fn key_rows(rows: &[Row]) -> Result<Vec<KeyRow>, VaultError> {
    rows.iter().map(key_row).collect()
}

/// When the subject was erased, if it was: the earliest destruction among its keys.
fn erased_at(rows: &[KeyRow]) -> Option<DateTime<Utc>> {
    rows.iter().filter_map(|r| r.destroyed_at).min()
}

/// The destroyed key versions that once held material, oldest first: those `destroyed` just now,
/// and earlier ones (created before they were destroyed; a bare tombstone is written with
/// its creation and destruction at the same instant).
fn held_keys(rows: &[KeyRow], destroyed: &[String]) -> Vec<String> {
    let mut held: Vec<&KeyRow> = rows
        .iter()
        .filter(|r| {
            destroyed.contains(&r.key_id) || r.destroyed_at.is_some_and(|at| r.created_at < at)
        })
        .collect();
    held.sort_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)));
    held.into_iter().map(|r| r.key_id.clone()).collect()
}

/// The subject's current key: the newest live one.
fn current(rows: &[KeyRow]) -> Option<&KeyRow> {
    rows.iter()
        .filter(|r| r.destroyed_at.is_none())
        .max_by(|a, b| (a.created_at, &a.key_id).cmp(&(b.created_at, &b.key_id)))
}

impl KeyVault {
    /// A vault over the database of `store` (its migrations create `subject_keys`), wrapping
    /// new keys under the keyring's first KEK.
    pub fn new(store: AnyStore, keyring: Keyring) -> Self {
        Self {
            db: Db::new(&store),
            keyring: Arc::new(keyring),
            rng: SystemRandom::new(),
        }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The subject's current key, to seal new personal data with; created and stored
    /// wrapped on first use. Refused with [`VaultError::Erased`] once the subject is erased.
    pub async fn key_for_sealing(
        &self,
        subject: &SubjectId,
    ) -> Result<(KeyId, DataKey), VaultError> {
        let rows = self.rows(subject).await?;
        if let Some(found) = self.sealing_key(subject, &rows)? {
            return Ok(found);
        }
        // FIRST_KEY_ID is a valid key id (a test says so); the error path is never taken.
        let key_id = KeyId::parse(FIRST_KEY_ID).map_err(VaultError::Crypto)?;
        let key = DataKey::generate(&self.rng).map_err(VaultError::Crypto)?;
        let wrapped = seal::wrap_random(
            &key,
            self.keyring.current(),
            subject.as_str(),
            &key_id,
            &self.rng,
        )
        .map_err(VaultError::Crypto)?;
        if self.insert_if_absent(subject, &key_id, &wrapped).await? {
            // The slot was free, so this key is the subject's key now: no need to read it
            // back.
            return Ok((key_id, key));
        }
        drop(key);
        // Someone else inserted first: their row is the subject's key now (or the
        // tombstone of an erasure that got in first).
        let rows = self.rows(subject).await?;
        self.sealing_key(subject, &rows)?.ok_or_else(|| {
            VaultError::Store(StoreError::Unavailable(format!(
                "the key of subject {subject} is not there right after it was stored"
            )))
        })
    }

    /// Version `key_id` of the subject's key, to open a sealed section with; `None` when that
    /// key has been destroyed (the subject was erased).
    pub async fn key(
        &self,
        subject: &SubjectId,
        key_id: &KeyId,
    ) -> Result<Option<DataKey>, VaultError> {
        let rows = self.rows(subject).await?;
        match rows.iter().find(|r| r.key_id == key_id.as_str()) {
            None => Err(VaultError::NoKey {
                subject: subject.clone(),
                key_id: key_id.clone(),
            }),
            Some(row) if row.destroyed_at.is_some() => Ok(None),
            Some(row) => self.unwrap_row(row).map(Some),
        }
    }

    /// Destroys every key version of the subject, keeping tombstones; idempotent. A subject
    /// without a key gets a tombstone too, so the erasure is remembered and a first use
    /// racing with it cannot create a key afterwards.
    pub async fn destroy(&self, subject: &SubjectId) -> Result<Destroyed, VaultError> {
        let at = now();
        let subject_param = Value::from(subject.as_str());
        let mut tx = self.db.begin().await?;
        if tx.dialect() == Dialect::Sqlite {
            // Overwrite the freed bytes of the old row in the database file instead of
            // leaving them in free space (best effort: the WAL keeps older page images
            // until it is checkpointed and reused). PostgreSQL has no such setting; its
            // old row versions stay until VACUUM (see the migration).
            tx.execute("PRAGMA secure_delete = ON", &[]).await?;
        }
        // The tombstone goes in first: after it, no first key can be inserted, so the
        // update below sees every live key there will ever be.
        tx.execute(
            TOMBSTONE,
            &[
                subject_param.clone(),
                FIRST_KEY_ID.into(),
                Value::Timestamptz(at),
            ],
        )
        .await?;
        let destroyed = tx
            .fetch_all(DESTROY, &[subject_param.clone(), Value::Timestamptz(at)])
            .await?
            .iter()
            .map(|r| r.get::<String>("key_id"))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = key_rows(&tx.fetch_all(ROWS, &[subject_param]).await?)?;
        tx.commit().await?;
        let outcome = Destroyed {
            was_present: !destroyed.is_empty(),
            held: held_keys(&rows, &destroyed),
            key_ids: destroyed,
            at: erased_at(&rows).unwrap_or(at),
        };
        tracing::info!(
            %subject,
            key_ids = ?outcome.key_ids,
            at = %outcome.at,
            "subject keys destroyed"
        );
        Ok(outcome)
    }

    /// Whether the subject has a live key, was erased, or neither.
    pub async fn status(&self, subject: &SubjectId) -> Result<SubjectStatus, VaultError> {
        let rows = self.rows(subject).await?;
        if let Some(at) = erased_at(&rows) {
            return Ok(SubjectStatus::Erased { at });
        }
        match current(&rows) {
            None => Ok(SubjectStatus::None),
            Some(row) => Ok(SubjectStatus::Active {
                key_id: KeyId::parse(&row.key_id).map_err(|e| integrity(row, e))?,
                created_at: row.created_at,
            }),
        }
    }

    /// Re-wraps every live key that is not yet under the keyring's current KEK, a page at
    /// a time (one transaction each), calling `progress` after each page. A key that does
    /// not unwrap is counted and listed, left as it is, and the run goes on; a key destroyed
    /// meanwhile is skipped. Safe to run again, and alongside the service.
    pub async fn rewrap_all(
        &self,
        mut progress: impl FnMut(&RewrapReport),
    ) -> Result<RewrapReport, VaultError> {
        let kek = self.keyring.current();
        let mut report = RewrapReport {
            kek_id: kek.id().clone(),
            to_do: self.count(COUNT_OTHER).await?,
            already_current: self.count(COUNT_UNDER).await?,
            rewrapped: 0,
            skipped: 0,
            failed: 0,
            failures: Vec::new(),
            remaining: 0,
        };
        let mut after = (String::new(), String::new());
        loop {
            let page = self.old_page(&after).await?;
            let Some(last) = page.last() else { break };
            after = (last.subject.clone(), last.key_id.clone());
            let mut updates = Vec::with_capacity(page.len());
            for row in &page {
                match self.rewrapped(row) {
                    Ok(new) => updates.push((row, new)),
                    Err(e) => {
                        report.failed += 1;
                        if report.failures.len() < MAX_LISTED_FAILURES {
                            report.failures.push(RewrapFailure {
                                subject: row.subject.clone(),
                                key_id: row.key_id.clone(),
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            let changed = self.store_rewrapped(&updates).await?;
            report.rewrapped += changed;
            report.skipped += updates.len() as u64 - changed;
            progress(&report);
        }
        report.remaining = self.count(COUNT_OTHER).await?;
        tracing::info!(
            kek_id = %report.kek_id,
            rewrapped = report.rewrapped,
            skipped = report.skipped,
            failed = report.failed,
            remaining = report.remaining,
            "re-wrap of subject keys finished"
        );
        Ok(report)
    }

    // -----------------------------------------------------------------------------------
    // Storage and unwrapping.

    async fn rows(&self, subject: &SubjectId) -> Result<Vec<KeyRow>, VaultError> {
        key_rows(&self.db.fetch_all(ROWS, &[subject.as_str().into()]).await?)
    }

    /// The key to seal with from the subject's rows: refused after erasure, `None` when the
    /// subject has no key yet.
    fn sealing_key(
        &self,
        subject: &SubjectId,
        rows: &[KeyRow],
    ) -> Result<Option<(KeyId, DataKey)>, VaultError> {
        if let Some(at) = erased_at(rows) {
            return Err(VaultError::Erased {
                subject: subject.clone(),
                at,
            });
        }
        let Some(row) = current(rows) else {
            return Ok(None);
        };
        let key_id = KeyId::parse(&row.key_id).map_err(|e| integrity(row, e))?;
        Ok(Some((key_id, self.unwrap_row(row)?)))
    }

    async fn insert_if_absent(
        &self,
        subject: &SubjectId,
        key_id: &KeyId,
        wrapped: &WrappedKey,
    ) -> Result<bool, VaultError> {
        let insert = match self.db.dialect() {
            Dialect::Postgres => INSERT_ASYNC,
            Dialect::Sqlite => INSERT,
        };
        let inserted = self
            .db
            .execute(
                insert,
                &[
                    subject.as_str().into(),
                    key_id.as_str().into(),
                    wrapped.kek_id.as_str().into(),
                    wrapped.alg.as_str().into(),
                    wrapped.nonce.as_str().into(),
                    wrapped.ciphertext.as_str().into(),
                    Value::Timestamptz(now()),
                ],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Unwraps a live row with the KEK it names.
    fn unwrap_row(&self, row: &KeyRow) -> Result<DataKey, VaultError> {
        let (wrapped, key_id) = self.parse_wrapping(row)?;
        let kek = self.keyring.get(&wrapped.kek_id).ok_or_else(|| {
            let configured: Vec<&str> = self.keyring.ids().map(KeyId::as_str).collect();
            integrity(
                row,
                format!(
                    "it is wrapped under KEK {}, which is not configured (configured: {})",
                    wrapped.kek_id,
                    configured.join(", ")
                ),
            )
        })?;
        seal::unwrap(&wrapped, kek, &row.subject, &key_id).map_err(|e| integrity(row, e))
    }

    fn parse_wrapping(&self, row: &KeyRow) -> Result<(WrappedKey, KeyId), VaultError> {
        let w = row
            .wrapping
            .as_ref()
            .ok_or_else(|| integrity(row, "a live key row holds no wrapped key"))?;
        let key_id = KeyId::parse(&row.key_id).map_err(|e| integrity(row, e))?;
        let kek_id = KeyId::parse(&w.kek_id).map_err(|e| integrity(row, e))?;
        let wrapped = WrappedKey {
            kek_id,
            alg: w.alg.clone(),
            nonce: w.nonce.clone(),
            ciphertext: w.wrapped_key.clone(),
        };
        Ok((wrapped, key_id))
    }

    /// The row's key wrapped anew under the current KEK.
    fn rewrapped(&self, row: &KeyRow) -> Result<WrappedKey, VaultError> {
        let key = self.unwrap_row(row)?;
        let key_id = KeyId::parse(&row.key_id).map_err(|e| integrity(row, e))?;
        seal::wrap_random(
            &key,
            self.keyring.current(),
            &row.subject,
            &key_id,
            &self.rng,
        )
        .map_err(VaultError::Crypto)
    }

    async fn count(&self, sql: &str) -> Result<u64, VaultError> {
        let kek_id = self.keyring.current().id().as_str();
        let row = self.db.fetch_optional(sql, &[kek_id.into()]).await?;
        Ok(match row {
            Some(row) => row.get_u64("n")?,
            None => 0,
        })
    }

    async fn old_page(&self, after: &(String, String)) -> Result<Vec<KeyRow>, VaultError> {
        let kek_id = self.keyring.current().id().as_str();
        let params = [
            kek_id.into(),
            after.0.as_str().into(),
            after.1.as_str().into(),
            to_i64(REWRAP_PAGE as u64).into(),
        ];
        key_rows(&self.db.fetch_all(OLD_PAGE, &params).await?)
    }

    /// Stores new wrappings in one transaction; returns how many rows took them.
    async fn store_rewrapped(&self, updates: &[(&KeyRow, WrappedKey)]) -> Result<u64, VaultError> {
        if updates.is_empty() {
            return Ok(0);
        }
        let mut changed = 0;
        let mut tx = self.db.begin().await?;
        for (row, new) in updates {
            let Some(old) = &row.wrapping else { continue };
            let params = [
                new.kek_id.as_str().into(),
                new.alg.as_str().into(),
                new.nonce.as_str().into(),
                new.ciphertext.as_str().into(),
                row.subject.as_str().into(),
                row.key_id.as_str().into(),
                old.kek_id.as_str().into(),
                old.nonce.as_str().into(),
                old.wrapped_key.as_str().into(),
            ];
            changed += tx.execute(REWRAP, &params).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

fn integrity(row: &KeyRow, reason: impl fmt::Display) -> VaultError {
    VaultError::Integrity {
        subject: row.subject.clone(),
        key_id: row.key_id.clone(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_ids_are_lowercase_hyphenated_uuids() {
        let id = "0193a1b2-0000-7000-8000-00000000000a";
        assert_eq!(SubjectId::parse(id).map(|s| s.to_string()), Ok(id.into()));
        assert_eq!(
            SubjectId::from(amtsbuch_domain::SubjectId(
                Uuid::parse_str(id).expect("uuid")
            ))
            .as_str(),
            id
        );
        for bad in [
            "",
            "0193A1B2-0000-7000-8000-00000000000A",
            "0193a1b2000070008000000000000000a",
            "{0193a1b2-0000-7000-8000-00000000000a}",
            "urn:uuid:0193a1b2-0000-7000-8000-00000000000a",
            "anna.mueller@example.org",
            "0193a1b2-0000-7000-8000-00000000000a ",
        ] {
            assert_eq!(SubjectId::parse(bad), Err(SubjectIdError), "{bad:?}");
        }
    }

    #[test]
    fn the_first_key_version_is_a_valid_key_id() {
        assert_eq!(
            KeyId::parse(FIRST_KEY_ID).map(|k| k.to_string()),
            Ok("k1".into())
        );
    }
}
