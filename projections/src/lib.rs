//! Read models of Amtsbuch and the runner that feeds them from the event log.
//!
//! A read model is a `Projection`: a name, the tables it owns, and an `apply` that folds
//! one event into those tables inside a transaction the runner gives it. The runner
//! (`runner::spawn`) feeds every projection from the global log in position order,
//! catch-up then live, and commits each batch of events together with the projection's
//! checkpoint, so that read model and checkpoint never disagree, whatever crashes when.
//! Across processes on one PostgreSQL database each projection runs in one process at a
//! time (an advisory lock per projection); the others stand by. `rebuild` clears a read
//! model and replays the log into it.
//!
//! Read models live in the event store's database and are written in SQL that runs on
//! both PostgreSQL and SQLite, through `amtsbuch_infra::db` (re-exported here as `db`:
//! `ReadDb`, `ReadTx`, `Value`, `Row`); query handlers use the same layer. Each read model
//! is a module: `streams` is the stream catalogue, the core's only read model (`all`). A
//! business domain keeps its read models in a folder of its own here (`<domain>/`), their
//! tables in migrations named after the domain (`…_<domain>_read_models.sql`), and its
//! domain module in the service registers them; the service runs the core's and every
//! registered module's.

use std::sync::Arc;

pub mod applications;
pub mod checkpoint;
pub mod db;
pub mod gdpr;
pub mod participation;
pub mod payments;
pub mod projection;
pub mod rebuild;
pub mod runner;
pub mod streams;

pub use db::{DbError, Dialect, ReadDb, ReadTx, Row, Value};
pub use projection::{read_event, Projection, ProjectionError};
pub use rebuild::{rebuild, rebuild_among, Progress, RebuildError, Replayer};
pub use runner::{spawn, spawn_with, ProjectionState, RunnerConfig, RunnerHandle};

/// The read models of the core, which every service runs and `rebuild` knows; the
/// domains' read models come with their domain modules.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(streams::Streams)]
}
