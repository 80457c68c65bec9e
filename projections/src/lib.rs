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
//! `ReadDb`, `ReadTx`, `Value`, `Row`); query handlers use the same layer. Each read model is a module: `streams` is
//! the stream catalogue. A new read model is one more module, its tables in a migration
//! for each database (a domain's named after it, `…_gdpr_read_models.sql`), and one more
//! entry in `all`.

use std::sync::Arc;

pub mod checkpoint;
pub mod db;
pub mod gdpr;
pub mod projection;
pub mod rebuild;
pub mod runner;
pub mod streams;

pub use db::{DbError, Dialect, ReadDb, ReadTx, Row, Value};
pub use projection::{Projection, ProjectionError};
pub use rebuild::{rebuild, rebuild_among, Progress, RebuildError, Replayer};
pub use runner::{spawn, spawn_with, ProjectionState, RunnerConfig, RunnerHandle};

/// Every read model of Amtsbuch: what `amtsbuch serve` runs and `rebuild` knows.
pub fn all() -> Vec<Arc<dyn Projection>> {
    let mut all: Vec<Arc<dyn Projection>> = vec![Arc::new(streams::Streams)];
    all.extend(gdpr::projections());
    all
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    #[test]
    fn every_projection_has_a_name_of_its_own() {
        let all = super::all();
        let names: HashSet<_> = all.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
