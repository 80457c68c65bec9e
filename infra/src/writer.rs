//! The group-commit writer.
//!
//! Callers hand their append to one task per store through a bounded channel. The task takes
//! whatever has queued up (up to a batch limit), hands it to the adapter's `Committer` as one
//! batch, and answers every caller with the decision for its own request. A multi-stream
//! append (`append_many`) is one job of several requests that always goes into one batch
//! whole, so its accepted requests share one transaction. Under load this
//! turns many small transactions, each paying for the head lock and a commit, into few
//! large ones; when idle a batch is a single append and nothing waits.
//!
//! A committer splits a batch into planning (`launch`, which may use what the adapter knows
//! of the log) and writing (the future it returns), and hears back how the write went
//! (`landed`), so the adapter can keep its view of the log consistent. Batches run one at a
//! time: commits on one database are serialized by the head lock anyway, and measurements
//! with two batches in flight showed no gain (see docs/PERFORMANCE.md). The bounded channel
//! gives back-pressure instead of unbounded memory.
//!
//! A batch that fails as a whole (the database is away, the disk is full) makes the writer
//! *faulty* until a write succeeds again; readiness reports it (`WriterHandle::fault`). A
//! faulty writer does not wait for the next append to find out: while idle it probes every
//! `PROBE_EVERY` with a small write that needs what an append needs (`Committer::probe`).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use amtsbuch_domain::{AppendError, AppendOutcome, AppendRequest, RequestPlan};
use chrono::{DateTime, Utc};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};

use crate::store::{Head, StoreError};

/// Most events one transaction carries. Large enough to amortize the commit, small enough
/// that one batch's insert stays well under the latency budget.
const MAX_BATCH_EVENTS: usize = 2048;
/// How often the writer yields to let answered callers queue their next append.
const MAX_GATHER_ROUNDS: usize = 8;
/// Pending appends beyond this make callers wait for room.
const QUEUE: usize = 8192;
/// How often an idle faulty writer probes whether it can write again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The probe: one row whose count changes, so that the write really writes (one text for
/// both databases; the table is in the migrations).
pub(crate) const PROBE: &str = "INSERT INTO writer_probe (id, probes) VALUES (1, 1) \
     ON CONFLICT (id) DO UPDATE SET probes = writer_probe.probes + 1";

/// Each request's decision and the head after the batch, or why the batch as a whole failed
/// (in which case nothing of it is known to be committed).
pub(crate) type Landing = Result<(Vec<RequestPlan>, Head), StoreError>;

/// The adapter-specific half of the writer.
pub(crate) trait Committer: Send + 'static {
    /// What a flight reports back; turned into a `Landing` by `landed`.
    type Output: Send + 'static;

    /// Plan `batch` (refusing records longer than `max_record_bytes`) and start writing it.
    /// The returned future completes the write and owns everything it needs.
    fn launch(
        &mut self,
        batch: Vec<AppendRequest>,
        recorded_at: DateTime<Utc>,
        max_record_bytes: usize,
    ) -> impl Future<Output = BoxFuture<'static, Self::Output>> + Send;

    /// The write finished.
    fn landed(&mut self, output: Self::Output) -> Landing;

    /// Write `PROBE` the way appends write, to learn whether writing works again after a
    /// failed batch.
    fn probe(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where a caller waits for its answer: the decision for its one request, or the
/// decisions for each request of a multi-stream append, in order.
#[derive(Debug)]
enum Reply {
    One(oneshot::Sender<Result<AppendOutcome, StoreError>>),
    Many(oneshot::Sender<Result<Vec<RequestPlan>, StoreError>>),
}

/// What a caller queues: its requests, which the writer puts into one batch together, and
/// where to answer.
type Job = (Vec<AppendRequest>, Reply);

/// The handle appenders use; cloning it is cheap.
#[derive(Debug, Clone)]
pub(crate) struct WriterHandle {
    tx: mpsc::Sender<Job>,
    fault: watch::Receiver<Option<DateTime<Utc>>>,
    max_record_bytes: Arc<AtomicUsize>,
}

impl WriterHandle {
    /// Start the writer task. `head` is told every new committed position.
    pub(crate) fn spawn<C: Committer>(committer: C, head: watch::Sender<u64>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (fault_tx, fault) = watch::channel(None);
        let max_record_bytes = Arc::new(AtomicUsize::new(crate::relay::max_record_bytes(
            crate::relay::NATS_DEFAULT_MAX_PAYLOAD,
        )));
        tokio::spawn(run(committer, rx, head, fault_tx, max_record_bytes.clone()));
        Self {
            tx,
            fault,
            max_record_bytes,
        }
    }

    /// Refuse records longer than `limit` bytes from the next batch on; returns the limit
    /// before. Starts at what a NATS server with default settings can carry.
    pub(crate) fn set_max_record_bytes(&self, limit: usize) -> usize {
        self.max_record_bytes.swap(limit, Ordering::Relaxed)
    }

    /// Since when appends fail as a whole, if they do now: the first failed batch after
    /// the last successful write (a batch or a probe). The errors themselves are logged.
    pub(crate) fn fault(&self) -> Option<DateTime<Utc>> {
        *self.fault.borrow()
    }

    pub(crate) async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        amtsbuch_domain::append::validate_request(&request)?;
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((vec![request], Reply::One(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queue `requests` as one job: the writer never splits a job across batches, so the
    /// accepted requests are committed in one transaction, at consecutive positions in
    /// request order. Each request is decided on its own when the batch is planned.
    pub(crate) async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<RequestPlan>, StoreError> {
        amtsbuch_domain::append::validate_many(&requests)?;
        if requests.is_empty() {
            return Ok(vec![]);
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((requests, Reply::Many(reply)))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

async fn run<C: Committer>(
    mut committer: C,
    mut rx: mpsc::Receiver<Job>,
    head: watch::Sender<u64>,
    fault: watch::Sender<Option<DateTime<Utc>>>,
    max_record_bytes: Arc<AtomicUsize>,
) {
    loop {
        let next = if fault.borrow().is_some() {
            match tokio::time::timeout(PROBE_EVERY, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    let probed = committer.probe().await;
                    if let Err(e) = &probed {
                        tracing::debug!(error = %e, "the writer still cannot write");
                    }
                    settle(&fault, probed.is_ok());
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(job) = next else {
            return;
        };
        let mut batch = Gathered::default();
        batch.take(job);
        // Gather what is queued. Callers answered by the last batch are typically about to
        // send their next append; yielding lets them run first, so they join this batch
        // instead of trailing behind it in a batch of their own that costs a whole commit.
        // Stop as soon as a yield brings nothing new.
        let mut rounds = 0;
        loop {
            let before = batch.replies.len();
            while batch.events < MAX_BATCH_EVENTS {
                match rx.try_recv() {
                    Ok(job) => batch.take(job),
                    Err(_) => break,
                }
            }
            rounds += 1;
            if batch.events >= MAX_BATCH_EVENTS
                || rounds > MAX_GATHER_ROUNDS
                || (rounds > 1 && batch.replies.len() == before)
            {
                break;
            }
            tokio::task::yield_now().await;
        }
        let recorded_at = amtsbuch_domain::record::truncate_micros(Utc::now());
        let limit = max_record_bytes.load(Ordering::Relaxed);
        let output = committer
            .launch(batch.requests, recorded_at, limit)
            .await
            .await;
        let landing = committer.landed(output);
        settle(&fault, landing.is_ok());
        deliver(landing, batch.replies, &head);
    }
}

/// The jobs taken into one batch.
#[derive(Default)]
struct Gathered {
    events: usize,
    requests: Vec<AppendRequest>,
    /// Each reply with how many of the batch's requests, in order, are its.
    replies: Vec<(Reply, usize)>,
}

impl Gathered {
    fn take(&mut self, (requests, reply): Job) {
        self.events += requests.iter().map(|r| r.events.len()).sum::<usize>();
        self.replies.push((reply, requests.len()));
        self.requests.extend(requests);
    }
}

/// Record whether the last write worked: a fault starts with the first failure and ends
/// with the next success.
fn settle(fault: &watch::Sender<Option<DateTime<Utc>>>, wrote: bool) {
    fault.send_if_modified(|since| match (since.is_some(), wrote) {
        (false, false) => {
            *since = Some(Utc::now());
            true
        }
        (true, true) => {
            tracing::info!("the writer can write again");
            *since = None;
            true
        }
        _ => false,
    });
}

fn deliver(landing: Landing, replies: Vec<(Reply, usize)>, head: &watch::Sender<u64>) {
    match landing {
        Ok((plans, new_head)) => {
            head.send_if_modified(|h| {
                let moved = new_head.position > *h;
                if moved {
                    *h = new_head.position;
                }
                moved
            });
            let mut plans = plans.into_iter();
            for (reply, count) in replies {
                match reply {
                    Reply::One(reply) => {
                        let plan = plans.next().unwrap_or_else(|| {
                            Err(AppendError::Invalid("the batch lost a request".into()))
                        });
                        let _ = reply.send(plan.map_err(StoreError::from));
                    }
                    Reply::Many(reply) => {
                        let _ = reply.send(Ok(plans.by_ref().take(count).collect()));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, appends = replies.len(), "append batch failed");
            for (reply, _) in replies {
                match reply {
                    Reply::One(reply) => {
                        let _ = reply.send(Err(e.clone()));
                    }
                    Reply::Many(reply) => {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
        }
    }
}
