//! The group-commit writer.
//!
//! Callers hand their append to one task per store through a bounded channel. The task takes
//! whatever has queued up (up to a batch limit), hands it to the adapter's `Committer` as one
//! batch, and answers every caller with the decision for its own request. Under load this
//! turns many small transactions, each paying for the head lock and a commit, into few
//! large ones; when idle a batch is a single append and nothing waits.
//!
//! A committer may keep more than one batch in flight (the PostgreSQL adapter plans the next
//! batch on top of the previous one while that one commits); the writer asks it before each
//! launch and delivers landings to it in launch order, so the adapter can keep its view of
//! the log consistent. The bounded channel gives back-pressure instead of unbounded memory.

use std::future::Future;

use amtsbuch_domain::{AppendOutcome, AppendRequest, RequestPlan};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Head, StoreError};

/// Most events one transaction carries. Large enough to amortize the commit, small enough
/// that one batch's insert stays well under the latency budget.
const MAX_BATCH_EVENTS: usize = 2048;
/// Pending appends beyond this make callers wait for room.
const QUEUE: usize = 8192;

/// Each request's decision and the head after the batch, or why the batch as a whole failed
/// (in which case nothing of it is known to be committed).
pub(crate) type Landing = Result<(Vec<RequestPlan>, Head), StoreError>;

/// The adapter-specific half of the writer.
pub(crate) trait Committer: Send + 'static {
    /// What a flight reports back; turned into a `Landing` by `landed`.
    type Output: Send + 'static;

    /// Whether another batch may be launched while `in_flight` batches are unfinished.
    fn ready(&self, in_flight: usize) -> bool;

    /// Plan `batch` and start writing it. The returned future completes the write; it runs
    /// as a task of its own, so it must own everything it needs.
    fn launch(
        &mut self,
        batch: Vec<AppendRequest>,
        recorded_at: DateTime<Utc>,
    ) -> impl Future<Output = BoxFuture<'static, Self::Output>> + Send;

    /// A flight finished; called in launch order. `in_flight` counts the flights still
    /// unfinished after this one.
    fn landed(&mut self, output: Self::Output, in_flight: usize) -> Landing;
}

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// The handle appenders use; cloning it is cheap.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<(AppendRequest, Reply)>,
}

impl WriterHandle {
    /// Start the writer task. `head` is told every new committed position.
    pub(crate) fn spawn<C: Committer>(committer: C, head: watch::Sender<u64>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(committer, rx, head));
        Self { tx }
    }

    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        amtsbuch_domain::append::validate_request(&request)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((request, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<C: Committer>(
    mut committer: C,
    mut rx: mpsc::Receiver<(AppendRequest, Reply)>,
    head: watch::Sender<u64>,
) {
    let mut flights = FuturesOrdered::new();
    let mut open = true;
    while open || !flights.is_empty() {
        tokio::select! {
            // Landings first: they answer callers and update the committer's view of the
            // log before it plans the next batch.
            biased;
            Some((output, replies)) = flights.next(), if !flights.is_empty() => {
                let output = match output {
                    Ok(output) => committer.landed(output, flights.len()),
                    Err(join) => {
                        tracing::error!(error = %join, "append flight panicked");
                        Err(StoreError::Unavailable("the append failed unexpectedly".into()))
                    }
                };
                deliver(output, replies, &head);
            }
            first = rx.recv(), if open && committer.ready(flights.len()) => {
                let Some((request, reply)) = first else {
                    open = false;
                    continue;
                };
                let mut events = request.events.len();
                let mut requests = vec![request];
                let mut replies = vec![reply];
                while events < MAX_BATCH_EVENTS {
                    match rx.try_recv() {
                        Ok((request, reply)) => {
                            events += request.events.len();
                            requests.push(request);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                let recorded_at = amtsbuch_domain::record::truncate_micros(Utc::now());
                let flight = tokio::spawn(committer.launch(requests, recorded_at).await);
                flights.push_back(async move { (flight.await, replies) });
            }
        }
    }
}

fn deliver(landing: Landing, replies: Vec<Reply>, head: &watch::Sender<u64>) {
    match landing {
        Ok((plans, new_head)) => {
            head.send_if_modified(|h| {
                let moved = new_head.position > *h;
                if moved {
                    *h = new_head.position;
                }
                moved
            });
            for (reply, plan) in replies.into_iter().zip(plans) {
                let _ = reply.send(plan.map_err(StoreError::from));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, appends = replies.len(), "append batch failed");
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}
