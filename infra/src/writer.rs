//! The group-commit writer.
//!
//! Callers hand their append to one task per store through a bounded channel. The task takes
//! whatever has queued up while the previous transaction ran (up to a batch limit), commits
//! it as one transaction through the adapter's `Committer`, and answers every caller with the
//! decision for its own request. Under load this turns many small transactions, each paying
//! for the head lock and a commit, into few large ones; when idle a batch is a single append
//! and nothing waits. The bounded channel gives back-pressure instead of unbounded memory.

use std::future::Future;

use amtsbuch_domain::{AppendOutcome, AppendRequest, RequestPlan};
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Head, StoreError};

/// Most events one transaction carries. Large enough to amortize the commit, small enough
/// that one batch's insert stays well under the latency budget.
const MAX_BATCH_EVENTS: usize = 2048;
/// Pending appends beyond this make callers wait for room.
const QUEUE: usize = 8192;

/// Commits one planned batch in one transaction: the adapter-specific half of the writer.
pub(crate) trait Committer: Send + 'static {
    /// Lock the head, plan `batch` with `amtsbuch_domain::plan_batch`, insert the accepted
    /// rows, move the head, commit. Returns each request's decision and the new head. An
    /// `Err` means nothing of the batch is known to be committed.
    fn commit(
        &mut self,
        batch: &[AppendRequest],
        recorded_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<(Vec<RequestPlan>, Head), StoreError>> + Send;
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
    let mut requests = Vec::new();
    let mut replies: Vec<Reply> = Vec::new();
    while let Some((first, reply)) = rx.recv().await {
        let mut events = first.events.len();
        requests.push(first);
        replies.push(reply);
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
        match committer.commit(&requests, recorded_at).await {
            Ok((plans, new_head)) => {
                head.send_if_modified(|h| {
                    let moved = new_head.position > *h;
                    if moved {
                        *h = new_head.position;
                    }
                    moved
                });
                for (reply, plan) in replies.drain(..).zip(plans) {
                    let _ = reply.send(plan.map_err(StoreError::from));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = requests.len(), "append batch failed");
                for reply in replies.drain(..) {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
        requests.clear();
        replies.clear();
    }
}
