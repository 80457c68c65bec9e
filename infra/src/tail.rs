//! The log's tail, read once per process for everything in it that follows the log.
//!
//! What follows the log inside one process — the read models, the NATS relay, the ledger,
//! the live feed — wants the same rows at the same moment: the newest events. Read by each
//! of them whenever an append commits, every commit cost one read of the same rows per
//! follower, each holding a pooled connection. Instead, one task per store reads each new
//! batch of the log once and keeps the newest events in memory, and followers take their
//! next events from there:
//!
//! - **One reader.** It wakes when the store's head watch moves (this process's commits,
//!   and other processes' through PostgreSQL's notifications) or every `POLL`, reads
//!   everything after the newest event it holds through the store's background pool (see
//!   `postgres::ConnectionBudget`), appends it to a window of the newest events and moves
//!   the tip (`watch`). Positions are gapless and commit-ordered, so "everything after the
//!   tip" never skips an event.
//! - **Coalesced under load.** The reader reads at most once per `COALESCE`: a wake-up
//!   sooner after the previous read waits for the rest of that interval, so under load
//!   the commits of a few milliseconds share one read and one wake-up of every follower.
//!   After a quiet spell the first commit is read at once: an idle server adds no latency.
//! - **Nobody waits for anybody.** `read(after, limit)` serves the events after `after`
//!   from the window when it holds `after + 1`, and nothing when `after` is the tip (the
//!   follower waits for `watch` to move). A follower anywhere else — catching up after a
//!   start, a rebuild or a failure, or so slow that the window moved past it — reads the
//!   store itself, as every follower did before. The window never waits for a follower,
//!   and it is bounded (`WINDOW_EVENTS`, `WINDOW_BYTES`; reads of `READ_PAGE`).
//!
//! What a follower does with the events — a read model's transaction and checkpoint, the
//! relay's acknowledgements, the ledger's tree — is its own, exactly as when it read the
//! store itself: the tail only hands out the same rows with fewer reads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::db::Db;
use crate::reads;
use crate::store::{RecordedEvent, StoreError, MAX_PAGE};

/// The shortest time between two reads of the reader under load.
pub const COALESCE: Duration = Duration::from_millis(5);
/// How often the reader looks for new events without being woken (a wake-up that never
/// came: another process's commit whose notification was lost, or a second store on the
/// same SQLite file).
pub const POLL: Duration = Duration::from_millis(500);
/// Most events the window keeps.
pub const WINDOW_EVENTS: usize = 10_000;
/// Most bytes of records the window keeps; only the newest event is kept even when it
/// alone is larger.
pub const WINDOW_BYTES: usize = 32 << 20;
/// Most events the reader reads at once (a follower's own page is 512). The page is held
/// in memory while it is read, so this, times the largest record the store accepts, bounds
/// a read; the reader reads again at once while its pages come back full.
pub const READ_PAGE: usize = 1_024;
/// Wait after a failed read before the next, doubled up to `BACKOFF_MAX`.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The tail of one store's log. Cheap to clone; the reader stops once every clone is gone.
#[derive(Debug, Clone)]
pub struct LogTail {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The background pool: the reader's reads and those of followers outside the window.
    db: Db,
    window: Mutex<Window>,
    tip: watch::Receiver<u64>,
    /// The reader's reads that found new events.
    batches: AtomicU64,
    /// Followers' reads served from the window.
    from_window: AtomicU64,
    /// Followers' reads that went to the store.
    from_store: AtomicU64,
}

/// How the tail has been read since it started: what an operator's metrics and the tests
/// compare.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TailStats {
    /// Reads of the log by the tail's reader that found new events.
    pub batches: u64,
    /// Followers' reads answered from memory (events or, at the tip, none).
    pub from_window: u64,
    /// Followers' reads that went to the store (they were behind the window or ahead of
    /// the tip).
    pub from_store: u64,
}

/// The newest events, consecutive, ending at the tip.
#[derive(Debug)]
struct Window {
    events: VecDeque<Arc<RecordedEvent>>,
    bytes: usize,
    /// The position of the newest event read (or where the reader started).
    tip: u64,
}

impl Window {
    /// The position of the oldest event held, if any.
    fn first(&self) -> Option<u64> {
        self.events.front().map(|e| e.position)
    }

    /// Append a page of consecutive events and drop the oldest until the window is
    /// within its bounds again, always keeping the newest event. A follower that needed a
    /// dropped event reads it from the store, so dropping never loses anything.
    fn push(&mut self, page: Vec<RecordedEvent>) {
        for event in page {
            self.tip = event.position;
            self.bytes += event.bytes.len();
            self.events.push_back(Arc::new(event));
        }
        while self.events.len() > 1
            && (self.events.len() > WINDOW_EVENTS || self.bytes > WINDOW_BYTES)
        {
            if let Some(old) = self.events.pop_front() {
                self.bytes -= old.bytes.len();
            }
        }
    }
}

/// Where a follower's next events come from.
enum Source {
    Window(Vec<Arc<RecordedEvent>>),
    Nothing,
    Store,
}

impl LogTail {
    /// Start the reader at `head` (the store's head watch; its value is where the window
    /// begins) reading through `db`.
    pub(crate) fn start(db: Db, head: watch::Receiver<u64>) -> Self {
        let start = *head.borrow();
        let (tip_tx, tip) = watch::channel(start);
        let inner = Arc::new(Inner {
            db: db.clone(),
            window: Mutex::new(Window {
                events: VecDeque::new(),
                bytes: 0,
                tip: start,
            }),
            tip,
            batches: AtomicU64::new(0),
            from_window: AtomicU64::new(0),
            from_store: AtomicU64::new(0),
        });
        tokio::spawn(follow(Arc::downgrade(&inner), db, head, tip_tx));
        Self { inner }
    }

    /// Receives the position of the newest event the tail holds whenever it grows. Wait on
    /// it after `read` returned fewer events than asked for; it fails once the store has
    /// shut down.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.inner.tip.clone()
    }

    /// Up to `limit` events with position greater than `after`, in order: from memory
    /// when the window holds `after + 1`, none when `after` is the tip, otherwise read
    /// from the store.
    pub async fn read(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Arc<RecordedEvent>>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let source = self.source(after, limit);
        let counter = match source {
            Source::Window(_) | Source::Nothing => &self.inner.from_window,
            Source::Store => &self.inner.from_store,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        match source {
            Source::Window(events) => Ok(events),
            Source::Nothing => Ok(Vec::new()),
            Source::Store => Ok(reads::read_all(&self.inner.db, after, limit)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect()),
        }
    }

    /// How the tail has been read so far.
    pub fn stats(&self) -> TailStats {
        TailStats {
            batches: self.inner.batches.load(Ordering::Relaxed),
            from_window: self.inner.from_window.load(Ordering::Relaxed),
            from_store: self.inner.from_store.load(Ordering::Relaxed),
        }
    }

    fn source(&self, after: u64, limit: usize) -> Source {
        let window = self
            .inner
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if after == window.tip {
            return Source::Nothing;
        }
        match window.first() {
            Some(first) if first <= after.saturating_add(1) && after < window.tip => {
                let skip = usize::try_from(after + 1 - first).unwrap_or(usize::MAX);
                Source::Window(
                    window
                        .events
                        .iter()
                        .skip(skip)
                        .take(limit)
                        .cloned()
                        .collect(),
                )
            }
            _ => Source::Store,
        }
    }
}

/// The reader: follows the head watch and fills the window until the store shuts down or
/// the last `LogTail` is dropped.
async fn follow(
    inner: Weak<Inner>,
    db: Db,
    mut head: watch::Receiver<u64>,
    tip: watch::Sender<u64>,
) {
    let mut last_read: Option<Instant> = None;
    let mut failures = 0u32;
    loop {
        // Under load, the commits of the rest of the interval join this read.
        if let Some(next) = last_read.map(|at| at + COALESCE) {
            if Instant::now() < next {
                tokio::time::sleep_until(next).await;
            }
        }
        let Some(shared) = inner.upgrade() else {
            return;
        };
        let after = shared
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tip;
        // Mark the head as seen before reading, so a commit during the read wakes us again.
        head.borrow_and_update();
        last_read = Some(Instant::now());
        let full = match reads::read_all(&db, after, READ_PAGE).await {
            Ok(page) => {
                if failures > 0 {
                    tracing::info!("the log's tail reads again");
                    failures = 0;
                }
                let full = page.len() >= READ_PAGE;
                if let Some(newest) = page.last().map(|e| e.position) {
                    let consecutive = page
                        .iter()
                        .zip(after + 1..)
                        .all(|(e, expected)| e.position == expected);
                    let mut window = shared
                        .window
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if !consecutive {
                        // Followers that reach this place read it from the store themselves
                        // and report the gap; the window only ever holds consecutive events.
                        tracing::error!(
                            after,
                            "the log is not gapless after this position; the tail starts afresh after it"
                        );
                        window.events.clear();
                        window.bytes = 0;
                        window.tip = newest;
                    } else {
                        window.push(page);
                    }
                    drop(window);
                    shared.batches.fetch_add(1, Ordering::Relaxed);
                    tip.send_replace(newest);
                }
                full
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = BACKOFF_MIN
                    .saturating_mul(1 << failures.min(6))
                    .min(BACKOFF_MAX);
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot read the log's tail; retrying");
                }
                drop(shared);
                tokio::time::sleep(wait).await;
                last_read = None;
                continue;
            }
        };
        drop(shared);
        if full {
            continue;
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    // The store has shut down; dropping `tip` tells the followers.
                    return;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(position: u64, size: usize) -> RecordedEvent {
        RecordedEvent {
            position,
            bytes: vec![b' '; size],
            leaf_hash: Default::default(),
            chain_hash: Default::default(),
        }
    }

    fn window() -> Window {
        Window {
            events: VecDeque::new(),
            bytes: 0,
            tip: 0,
        }
    }

    #[test]
    fn a_page_of_large_records_is_held_to_the_byte_bound() {
        let mut window = window();
        let size = 1 << 20;
        window.push((1..=100).map(|p| event(p, size)).collect());
        assert_eq!(window.tip, 100);
        assert!(window.bytes <= WINDOW_BYTES, "{} bytes kept", window.bytes);
        assert_eq!(window.bytes, window.events.len() * size);
        // What is kept is the newest events, consecutive, ending at the tip.
        let positions: Vec<u64> = window.events.iter().map(|e| e.position).collect();
        assert_eq!(positions.last(), Some(&100));
        assert!(positions.windows(2).all(|w| w[1] == w[0] + 1));
        assert_eq!(positions.len(), WINDOW_BYTES / size);
    }

    #[test]
    fn the_newest_event_is_kept_even_when_it_alone_exceeds_the_bound() {
        let mut window = window();
        window.push(vec![event(1, 10), event(2, WINDOW_BYTES + 1)]);
        assert_eq!(window.first(), Some(2));
        assert_eq!(window.tip, 2);
        assert_eq!(window.bytes, WINDOW_BYTES + 1);
        window.push(vec![event(3, 10)]);
        assert_eq!(window.first(), Some(3));
        assert_eq!(window.bytes, 10);
    }

    #[test]
    fn the_window_keeps_at_most_its_count_of_events() {
        let mut window = window();
        let mut next = 1;
        for _ in 0..(WINDOW_EVENTS / READ_PAGE + 3) {
            window.push(
                (next..next + READ_PAGE as u64)
                    .map(|p| event(p, 8))
                    .collect(),
            );
            next += READ_PAGE as u64;
        }
        assert_eq!(window.events.len(), WINDOW_EVENTS);
        assert_eq!(window.tip, next - 1);
        assert_eq!(window.first(), Some(next - WINDOW_EVENTS as u64));
    }
}
