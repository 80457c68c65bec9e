//! The projection runner: feeds every projection from the log, catch-up then live.
//!
//! Each projection has a task of its own, so one that fails cannot hold up the others. A
//! task first takes the projection's lease (`amtsbuch_infra::lease::Lease`, on PostgreSQL
//! an advisory lock per projection and schema); processes that cannot get it stand by,
//! follow the stored checkpoint for their lag metric, and try again every
//! `standby_retry`, so that one of them takes over when the holder dies.
//!
//! The holder reads the log after its position in batches of up to `batch_size` events and
//! applies each batch in one transaction that first locks and re-reads the checkpoint, then
//! applies the events, then moves the checkpoint. A crash at any point therefore leaves the
//! read model and its checkpoint consistent, and if the stored checkpoint is not where the
//! runner expected (a rebuild reset it, or a stale runner was fenced) nothing is applied
//! and the runner continues from the stored position.
//!
//! The projections of a process do not read the log each for itself: they take their
//! events from the store's tail (`amtsbuch_infra::tail`), the process's one reader of the
//! newest events, which reads each batch of new events once — at most one read every few
//! milliseconds under load, at once after a quiet spell — and hands the same rows to
//! every projection from memory. A projection behind the tail's window (catching up after
//! a start, a rebuild or a failure) reads the store itself until it reaches the window;
//! the tail never waits for a projection, so one that fails or lags holds up no other.
//! Once caught up a projection sleeps until the tail moves, which follows the store's
//! head watch: in-process appends set it at commit and other processes' appends through
//! PostgreSQL notifications, so new events are applied within a batch of their commit. A
//! slow safety poll re-reads the checkpoint while idle, which is how a rebuild started by
//! another process is noticed when no events arrive. Checkpoints and read models are
//! written through the store's background pool, beside the tail's reads, so that requests
//! never wait behind them for a connection.
//!
//! A batch that fails (an `apply` error, a database outage) is rolled back, logged once,
//! and retried with exponential backoff; the lease is released meanwhile so that a
//! healthy stand-by can try. The projection's `ProjectionState` says what it is doing.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amtsbuch_domain::EventRecord;
use amtsbuch_infra::lease::Lease;
use amtsbuch_infra::store::MAX_PAGE;
use amtsbuch_infra::{AnyStore, EventStore, LogTail, RecordedEvent, StoreError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::checkpoint;
use crate::db::ReadDb;
use crate::projection::{Projection, ProjectionError};

/// How the runner paces itself. `Default` is what `amtsbuch serve` uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Most events applied in one transaction (at most `amtsbuch_infra::store::MAX_PAGE`).
    pub batch_size: usize,
    /// While caught up, re-read the checkpoint this often (a rebuild by another process
    /// resets it) and look for events a lost wake-up would have hidden.
    pub poll: Duration,
    /// How often a stand-by tries to take a projection over.
    pub standby_retry: Duration,
    /// How often the holder confirms its lease is still held between batches. The check
    /// reads the lease's state, which the lease's own watch keeps current (see
    /// `amtsbuch_infra::lease`), so it costs nothing; while idle the runner also wakes
    /// as soon as the lease is lost.
    pub lease_check: Duration,
    /// First wait after a failed batch; doubled after each further failure.
    pub backoff_min: Duration,
    /// Longest wait between two attempts.
    pub backoff_max: Duration,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll: Duration::from_secs(1),
            standby_retry: Duration::from_secs(2),
            lease_check: Duration::from_millis(250),
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// What a projection's task is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionState {
    /// Trying to take the lease for the first time.
    Starting,
    /// Another process holds the lease and runs the projection; `applied` follows the
    /// stored checkpoint.
    Standby,
    /// This process applies events.
    Running,
    /// The last attempt failed; the next one starts after `retry_in`. `attempts` counts
    /// the failures in a row.
    Failed {
        error: ProjectionError,
        attempts: u32,
        retry_in: Duration,
    },
    /// The runner was shut down.
    Stopped,
}

/// The name of a projection's lease (and so of its advisory lock).
pub(crate) fn lease_name(projection: &str) -> String {
    format!("amtsbuch_projection.{projection}")
}

/// Start a task per projection with the default configuration.
///
/// # Panics
///
/// If two projections have the same name: they would share one checkpoint.
pub fn spawn(store: AnyStore, projections: Vec<Arc<dyn Projection>>) -> RunnerHandle {
    spawn_with(store, projections, RunnerConfig::default())
}

/// Start a task per projection.
///
/// # Panics
///
/// If two projections have the same name: they would share one checkpoint.
pub fn spawn_with(
    store: AnyStore,
    projections: Vec<Arc<dyn Projection>>,
    mut config: RunnerConfig,
) -> RunnerHandle {
    // A batch is one read of the log, which returns at most `MAX_PAGE` events; a larger
    // batch would never look full, and the runner would wait instead of reading on.
    config.batch_size = config.batch_size.clamp(1, MAX_PAGE);
    let mut names = HashSet::new();
    for p in &projections {
        assert!(
            names.insert(p.name()),
            "two projections are named {:?}; each needs a name of its own",
            p.name()
        );
    }
    let db = ReadDb::background(&store);
    let (skipper, gathering) = checkpoint::Skipper::gathering(db.clone());
    let tail = store.tail();
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tracked = Vec::with_capacity(projections.len());
    let mut tasks = Vec::with_capacity(projections.len());
    for projection in projections {
        let (applied_tx, applied_rx) = watch::channel(0);
        let (state_tx, state_rx) = watch::channel(ProjectionState::Starting);
        tracked.push(Tracked {
            name: projection.name(),
            applied: applied_rx,
            state: state_rx,
        });
        let task = Task {
            store: store.clone(),
            tail: tail.clone(),
            db: db.clone(),
            skipper: skipper.clone(),
            projection,
            config: config.clone(),
            applied: applied_tx,
            state: state_tx,
            stop: stop_rx.clone(),
        };
        tasks.push(tokio::spawn(task.run()));
    }
    // Last: it ends once every task (each holding a clone of the skipper) has ended.
    drop(skipper);
    tasks.push(gathering);
    RunnerHandle {
        tracked,
        stop: stop_tx,
        tasks,
    }
}

/// The running projections. Dropping the handle aborts every task at once (what a crash
/// would do: open transactions roll back); `shutdown` stops them after their current batch.
#[derive(Debug)]
pub struct RunnerHandle {
    tracked: Vec<Tracked>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Tracked {
    name: &'static str,
    applied: watch::Receiver<u64>,
    state: watch::Receiver<ProjectionState>,
}

impl RunnerHandle {
    /// The names of the projections this runner feeds.
    pub fn names(&self) -> Vec<&'static str> {
        self.tracked.iter().map(|t| t.name).collect()
    }

    /// The position up to which the projection's read model reflects the log: what this
    /// process applied, or on a stand-by the stored checkpoint as last read. Lag is
    /// `head − applied`. `None` for an unknown name.
    pub fn applied(&self, name: &str) -> Option<watch::Receiver<u64>> {
        self.find(name).map(|t| t.applied.clone())
    }

    /// What the projection's task is doing. `None` for an unknown name.
    pub fn state(&self, name: &str) -> Option<watch::Receiver<ProjectionState>> {
        self.find(name).map(|t| t.state.clone())
    }

    fn find(&self, name: &str) -> Option<&Tracked> {
        self.tracked.iter().find(|t| t.name == name)
    }

    /// Stop every task after its current batch, release the leases, and wait.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        for task in std::mem::take(&mut self.tasks) {
            let _ = task.await;
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How an attempt to run a projection ended, other than by a stop.
enum Failure {
    /// The lease's session is gone; someone else may hold it now.
    Lease(StoreError),
    Projection(ProjectionError),
}

impl<E: Into<ProjectionError>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Projection(e.into())
    }
}

struct Task {
    store: AnyStore,
    /// Where new events come from; without one (a store that has none), the store.
    tail: Option<LogTail>,
    db: ReadDb,
    /// Moves the checkpoint past batches the projection does not apply, together with the
    /// other projections' moves.
    skipper: checkpoint::Skipper,
    projection: Arc<dyn Projection>,
    config: RunnerConfig,
    applied: watch::Sender<u64>,
    state: watch::Sender<ProjectionState>,
    stop: watch::Receiver<bool>,
}

impl Task {
    async fn run(mut self) {
        let name = self.projection.name();
        let mut attempts = 0u32;
        let mut last_error: Option<ProjectionError> = None;
        while let Some(mut lease) = self.acquire().await {
            // A retry after a failure is not news.
            if !matches!(*self.state.borrow(), ProjectionState::Failed { .. }) {
                tracing::info!(projection = name, "this process runs the projection");
            }
            let mut progressed = false;
            let result = self.follow(&mut lease, &mut progressed).await;
            if progressed {
                attempts = 0;
                last_error = None;
            }
            match result {
                Ok(()) => {
                    lease.release().await;
                    break;
                }
                Err(Failure::Lease(e)) => {
                    tracing::warn!(projection = name, error = %e, "lost the projection's lease; standing by");
                    drop(lease);
                    self.state.send_replace(ProjectionState::Standby);
                }
                Err(Failure::Projection(e)) => {
                    // Let a healthy stand-by try while this process waits.
                    lease.release().await;
                    attempts = attempts.saturating_add(1);
                    let retry_in = self.backoff(attempts);
                    // Log once: a failure that repeats is already known to the operator,
                    // and the state on the handle keeps saying so.
                    if last_error.as_ref() != Some(&e) {
                        tracing::error!(projection = name, error = %e, ?retry_in, "projection stopped; will retry");
                    } else {
                        tracing::debug!(projection = name, error = %e, attempts, "projection failed again");
                    }
                    last_error = Some(e.clone());
                    self.state.send_replace(ProjectionState::Failed {
                        error: e,
                        attempts,
                        retry_in,
                    });
                    if self.sleep_or_stop(retry_in).await {
                        break;
                    }
                }
            }
        }
        self.state.send_replace(ProjectionState::Stopped);
    }

    fn backoff(&self, attempts: u32) -> Duration {
        let factor = 1u32 << attempts.saturating_sub(1).min(16);
        self.config
            .backoff_min
            .saturating_mul(factor)
            .min(self.config.backoff_max)
    }

    /// Wait for `d` unless stopped first; true if stopped.
    async fn sleep_or_stop(&mut self, d: Duration) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            _ = self.stop.changed() => true,
        }
    }

    fn publish(&self, position: u64) {
        self.applied.send_if_modified(|p| {
            let moved = *p != position;
            *p = position;
            moved
        });
    }

    fn set_running(&self) {
        let name = self.projection.name();
        self.state.send_if_modified(|s| match s {
            ProjectionState::Running => false,
            ProjectionState::Failed { .. } => {
                tracing::info!(projection = name, "projection recovered");
                *s = ProjectionState::Running;
                true
            }
            _ => {
                *s = ProjectionState::Running;
                true
            }
        });
    }

    /// Take the projection's lease, standing by while another process holds it. `None`
    /// when stopped.
    async fn acquire(&mut self) -> Option<Lease> {
        let name = self.projection.name();
        let lease = lease_name(name);
        let mut announced = false;
        let mut warned = false;
        loop {
            if *self.stop.borrow() {
                return None;
            }
            match Lease::try_acquire(&self.store, &lease).await {
                Ok(Some(held)) => return Some(held),
                Ok(None) => {
                    if !announced {
                        tracing::info!(
                            projection = name,
                            "another process runs the projection; standing by"
                        );
                        announced = true;
                    }
                    self.state.send_if_modified(|s| {
                        let change = !matches!(s, ProjectionState::Standby);
                        *s = ProjectionState::Standby;
                        change
                    });
                    // Keep the lag metric of a stand-by meaningful.
                    if let Ok(Some(stored)) = checkpoint::read(&self.db, name).await {
                        self.publish(stored);
                    }
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(projection = name, error = %e, "cannot take the projection's lease; retrying");
                        warned = true;
                    }
                }
            }
            if self.sleep_or_stop(self.config.standby_retry).await {
                return None;
            }
        }
    }

    /// Apply the log while holding the lease. `Ok` when stopped.
    async fn follow(&mut self, lease: &mut Lease, progressed: &mut bool) -> Result<(), Failure> {
        let projection = Arc::clone(&self.projection);
        let name = projection.name();
        let mut position = start_position(&self.db, &*projection).await?;
        self.publish(position);
        let mut head = self
            .tail
            .as_ref()
            .map_or_else(|| self.store.head_watch(), LogTail::watch);
        let mut lease_checked = Instant::now();
        loop {
            if *self.stop.borrow() {
                return Ok(());
            }
            if lease_checked.elapsed() >= self.config.lease_check {
                lease.check().await.map_err(Failure::Lease)?;
                lease_checked = Instant::now();
            }
            // Mark the head as seen before reading, so an append that commits while this
            // batch runs wakes the wait below at once.
            head.borrow_and_update();
            let events = match &self.tail {
                Some(tail) => tail.read(position, self.config.batch_size).await?,
                None => self
                    .store
                    .read_all(position, self.config.batch_size)
                    .await?
                    .into_iter()
                    .map(Arc::new)
                    .collect(),
            };
            if !events.is_empty() {
                let full = events.len() >= self.config.batch_size;
                match apply_batch(&self.db, &self.skipper, &*projection, position, events).await? {
                    Batch::Applied(p) => {
                        position = p;
                        *progressed = true;
                        self.publish(position);
                        self.set_running();
                        if full {
                            continue;
                        }
                    }
                    Batch::Overtaken(stored) => {
                        tracing::info!(
                            projection = name,
                            expected = position,
                            stored,
                            "checkpoint moved under this runner; continuing from the stored position"
                        );
                        position = stored;
                        self.publish(position);
                        continue;
                    }
                }
            } else {
                *progressed = true;
                self.set_running();
            }
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        // The store has shut down.
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(self.config.poll) => {
                    match checkpoint::read(&self.db, name).await? {
                        Some(stored) if stored != position => {
                            tracing::info!(
                                projection = name,
                                expected = position,
                                stored,
                                "checkpoint moved while idle; continuing from the stored position"
                            );
                            position = stored;
                            self.publish(position);
                        }
                        Some(_) => {}
                        None => return Err(ProjectionError::CheckpointMissing(name.to_owned()).into()),
                    }
                }
                _ = self.stop.changed() => return Ok(()),
                reason = lease.lost() => {
                    return Err(Failure::Lease(StoreError::Unavailable(reason)));
                }
            }
        }
    }
}

/// Where a projection starts: its stored checkpoint, or, if it has none, 0 with its tables
/// cleared in the same transaction. Clearing makes a missing checkpoint safe whatever
/// the tables hold: a checkpoint and its read model only ever appear together.
pub(crate) async fn start_position(
    db: &ReadDb,
    projection: &dyn Projection,
) -> Result<u64, ProjectionError> {
    match checkpoint::read(db, projection.name()).await? {
        Some(position) => Ok(position),
        None => {
            restart(db, projection).await?;
            Ok(0)
        }
    }
}

/// Clear the projection's tables and set its checkpoint to 0, in one transaction. The
/// checkpoint statement comes first: it waits for and then blocks the projection's
/// batches, so no batch can write between the reset and the new checkpoint.
pub(crate) async fn restart(
    db: &ReadDb,
    projection: &dyn Projection,
) -> Result<(), ProjectionError> {
    let mut tx = db.begin().await?;
    checkpoint::restart(&mut tx, projection.name()).await?;
    projection.reset(&mut tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The two members of a record the runner reads to pass over events a projection does not
/// want: read without building the rest (`data` is skipped, not parsed into values).
#[derive(serde::Deserialize)]
struct RecordHead<'a> {
    position: u64,
    #[serde(borrow)]
    stream_id: std::borrow::Cow<'a, str>,
    #[serde(default)]
    sealed: Option<serde::de::IgnoredAny>,
}

impl RecordHead<'_> {
    /// Whether `projection` wants `event` — its stream is of one of the projection's
    /// `categories`, or it is sealed and the projection reads sealed events too — after
    /// checking the record's position.
    fn wanted_by(
        event: &RecordedEvent,
        categories: &[&str],
        projection: &dyn Projection,
    ) -> Result<bool, ProjectionError> {
        let corrupt = |reason: String| ProjectionError::Corrupt {
            position: event.position,
            reason,
        };
        let head: RecordHead<'_> =
            serde_json::from_slice(&event.bytes).map_err(|e| corrupt(e.to_string()))?;
        if head.position != event.position {
            return Err(corrupt(format!(
                "the record says position {}",
                head.position
            )));
        }
        let category = amtsbuch_domain::stream::category_of(&head.stream_id);
        Ok(categories.contains(&category) || (head.sealed.is_some() && projection.sealed_too()))
    }
}

/// The outcome of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// Applied; the checkpoint is now at this position.
    Applied(u64),
    /// Nothing applied: the stored checkpoint was here, not where the caller expected.
    Overtaken(u64),
}

/// Apply `events`, which must follow `expected` without a gap, in one transaction that
/// locks the checkpoint, checks it is still at `expected`, and moves it past the batch.
pub(crate) async fn apply_batch(
    db: &ReadDb,
    skipper: &checkpoint::Skipper,
    projection: &dyn Projection,
    expected: u64,
    events: Vec<Arc<RecordedEvent>>,
) -> Result<Batch, ProjectionError> {
    let name = projection.name();
    let Some(last) = events.last().map(|e| e.position) else {
        return Ok(Batch::Applied(expected));
    };
    // Parse before the transaction begins, to keep it (and SQLite's write lock) short.
    let wanted = projection.categories();
    let mut batch: Vec<(RecordedEvent, EventRecord)> = Vec::with_capacity(events.len());
    for (next, event) in (expected.saturating_add(1)..).zip(events) {
        if event.position != next {
            return Err(ProjectionError::Corrupt {
                position: event.position,
                reason: format!("expected position {next}, the log is not gapless"),
            });
        }
        if let Some(wanted) = wanted {
            if !RecordHead::wanted_by(&event, wanted, projection)? {
                continue;
            }
        }
        let record = event.record().map_err(|e| ProjectionError::Corrupt {
            position: event.position,
            reason: e.to_string(),
        })?;
        if record.position != event.position {
            return Err(ProjectionError::Corrupt {
                position: event.position,
                reason: format!("the record says position {}", record.position),
            });
        }
        // The tail shares its events among the projections: a copy of each one applied.
        batch.push((Arc::unwrap_or_clone(event), record));
    }

    if batch.is_empty() {
        // Nothing to apply (the batch is of other categories): only the checkpoint moves,
        // in one statement that moves it only from where this runner left it — the same
        // check as below, without a transaction's four round trips — and that moves the
        // checkpoints of the runner's other projections passing over the same events too.
        if skipper.skip(name, expected, last).await? {
            return Ok(Batch::Applied(last));
        }
        return match checkpoint::read(db, name).await? {
            Some(stored) => Ok(Batch::Overtaken(stored)),
            None => Err(ProjectionError::CheckpointMissing(name.to_owned())),
        };
    }
    let mut tx = db.begin().await?;
    let stored = checkpoint::lock(&mut tx, name)
        .await?
        .ok_or_else(|| ProjectionError::CheckpointMissing(name.to_owned()))?;
    if stored != expected {
        tx.rollback().await?;
        return Ok(Batch::Overtaken(stored));
    }
    projection.apply_batch(&mut tx, &batch).await?;
    checkpoint::advance(&mut tx, name, last).await?;
    tx.commit().await?;
    Ok(Batch::Applied(last))
}
