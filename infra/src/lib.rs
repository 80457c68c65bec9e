//! Adapters of Amtsbuch: the event stores and what drives them.
//!
//! `EventStore` is the one interface the service uses; `PgStore` (production) and
//! `SqliteStore` (embedded default) implement it and pass one shared contract suite
//! (`tests/contract.rs`). Both hand appends to a group-commit `writer` that batches
//! concurrent appends into one transaction under the log-head lock, and both plan batches
//! with the same pure code in `amtsbuch-domain`. `AnyStore` picks an adapter from a URL.
//!
//! Everything else that keeps tables in the store's database (the ledger, the relay's
//! cursor, the key vault, and the read models in `amtsbuch-projections`) writes its SQL once
//! for both databases through `db` (`Db`, `Tx`, `Value`, `Row`).

pub mod any;
pub mod db;
pub mod kek;
pub mod lease;
pub mod ledger;
pub mod postgres;
pub mod read_only;
mod reads;
pub mod relay;
pub mod sealer;
pub mod shared_lock;
pub mod sqlite;
pub mod store;
pub mod subscription;
pub mod tail;
pub mod vault;
mod writer;

pub use any::AnyStore;
pub use db::{Db, DbError, Dialect, Row, Tx, Value};
pub use postgres::PgStore;
pub use read_only::ReadOnlyLog;
pub use sqlite::SqliteStore;
pub use store::{Direction, EventStore, Head, RecordedEvent, StoreError};
pub use subscription::Subscription;
pub use tail::{LogTail, TailStats};
