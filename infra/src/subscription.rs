//! Catch-up-then-live subscriptions to the global log.
//!
//! A subscription pages through `read_all` from its position and, once it has caught up,
//! waits for the head watch to move before reading again. Because positions are gapless
//! and commit-ordered, "read everything after the last position I delivered" can never
//! skip an event or deliver one twice, no matter how appends interleave; there is no
//! separate live path that could disagree with the catch-up path. A periodic re-read guards
//! against missed wake-ups from other processes.
//!
//! Where the store has a tail (`tail::LogTail`, the process's one reader of the newest
//! events), the subscription reads through it: the newest events come from memory, older
//! ones from the store, and it waits for the tail to move instead of the head.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{EventStore, RecordedEvent, StoreError};
use crate::tail::LogTail;

const PAGE: usize = 512;
const POLL: Duration = Duration::from_millis(500);

/// A live subscription; dropping it stops the reader task.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Result<RecordedEvent, StoreError>>,
}

impl Subscription {
    /// Start delivering every event with position greater than `after`, in order.
    pub fn start<S: EventStore>(store: S, after: u64) -> Self {
        let (tx, rx) = mpsc::channel(PAGE * 2);
        tokio::spawn(run(store, after, tx));
        Self { rx }
    }

    /// The next event; `None` once the store has shut down. An error is delivered once and
    /// ends the subscription; resume from the last position seen.
    pub async fn next(&mut self) -> Option<Result<RecordedEvent, StoreError>> {
        self.rx.recv().await
    }
}

async fn run<S: EventStore>(
    store: S,
    mut after: u64,
    tx: mpsc::Sender<Result<RecordedEvent, StoreError>>,
) {
    if let Some(tail) = store.tail() {
        return run_on_tail(tail, after, tx).await;
    }
    let mut head = store.head_watch();
    loop {
        // Mark the current head as seen before reading, so an append that lands while we
        // read wakes us again instead of being noticed only at the next poll.
        head.borrow_and_update();
        let page = match store.read_all(after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = page.len() == PAGE;
        for event in page {
            after = event.position;
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            changed = head.changed() => {
                if changed.is_err() {
                    // The store is gone; one last read would race with its shutdown.
                    return;
                }
            }
            _ = tokio::time::sleep(POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

/// `run` through the store's tail, which polls the log itself.
async fn run_on_tail(
    tail: LogTail,
    mut after: u64,
    tx: mpsc::Sender<Result<RecordedEvent, StoreError>>,
) {
    let mut moved = tail.watch();
    loop {
        moved.borrow_and_update();
        let page = match tail.read(after, PAGE).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let full = page.len() == PAGE;
        for event in page {
            after = event.position;
            if tx.send(Ok(Arc::unwrap_or_clone(event))).await.is_err() {
                return;
            }
        }
        if full {
            continue;
        }
        tokio::select! {
            changed = moved.changed() => {
                if changed.is_err() {
                    // The store is gone.
                    return;
                }
            }
            _ = tx.closed() => return,
        }
    }
}
