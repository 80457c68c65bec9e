//! The per-process fan-out of new events behind `GET /events/stream` (`crate::sse`).
//!
//! One `Hub` per process follows the log (a single `Subscription`) and fans each new event
//! out over a bounded `broadcast` channel, so a hundred subscribers cost one reader of the
//! database, not a hundred. Sending never waits: the hub never blocks on a slow
//! connection; a receiver that falls too far behind finds out itself. The hub also counts
//! the connections a process serves and refuses more than its limit.
//!
//! It lives apart from the SSE route because the handlers' shared state
//! (`crate::state::AppState`) holds it, and the route reads that state.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use amtsbuch_domain::EventRecord;
use amtsbuch_infra::{AnyStore, EventStore, RecordedEvent, Subscription};

use crate::metrics::Metrics;

/// An event as the hub hands it out: stored form and parsed record, shared by every
/// connection.
#[derive(Debug)]
pub struct LiveEvent {
    pub event: RecordedEvent,
    pub record: EventRecord,
}

/// The per-process fan-out of new events.
#[derive(Clone)]
pub struct Hub {
    store: AnyStore,
    tx: broadcast::Sender<Arc<LiveEvent>>,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
    metrics: Metrics,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("clients", &self.clients.load(Ordering::Relaxed))
            .field("max_clients", &self.max_clients)
            .finish_non_exhaustive()
    }
}

/// How many events a connection may fall behind the live feed, and how many connections
/// a process serves.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub buffer: usize,
    pub max_clients: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            buffer: 8192,
            max_clients: 1000,
        }
    }
}

impl Hub {
    /// Start following the log from its current head.
    pub async fn spawn(
        store: AnyStore,
        limits: HubLimits,
        metrics: Metrics,
    ) -> Result<Self, amtsbuch_infra::StoreError> {
        let (tx, _) = broadcast::channel(limits.buffer.max(1));
        let head = store.head().await?.position;
        let hub = Self {
            store: store.clone(),
            tx: tx.clone(),
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients: limits.max_clients,
            metrics,
        };
        let clients = hub.clients.clone();
        hub.metrics.gauge_fn(
            "amtsbuch_sse_clients",
            "Open Server-Sent-Events subscriptions.",
            move || vec![(vec![], clients.load(Ordering::Relaxed) as f64)],
        );
        tokio::spawn(follow(store, head, tx));
        Ok(hub)
    }

    /// Reserve a connection slot, or `None` when the process serves its maximum.
    pub fn admit(&self) -> Option<ClientSlot> {
        let n = self.clients.fetch_add(1, Ordering::AcqRel);
        if n >= self.max_clients {
            self.clients.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(ClientSlot {
            clients: self.clients.clone(),
        })
    }

    /// The store a new connection catches up from.
    pub(crate) fn store(&self) -> &AnyStore {
        &self.store
    }

    /// A receiver of the live feed from now on.
    pub(crate) fn live(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.tx.subscribe()
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// Holds one of the hub's connection slots until the connection ends.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<AtomicUsize>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Follow the log and broadcast each event. Sending never waits: a receiver that is too far
/// behind finds out itself (`RecvError::Lagged`).
async fn follow(store: AnyStore, head: u64, tx: broadcast::Sender<Arc<LiveEvent>>) {
    let mut after = head;
    loop {
        let mut sub = Subscription::start(store.clone(), after);
        while let Some(next) = sub.next().await {
            match next {
                Ok(event) => {
                    after = event.position;
                    match event.record() {
                        Ok(record) => {
                            // No receivers is fine: nobody is subscribed right now.
                            let _ = tx.send(Arc::new(LiveEvent { event, record }));
                        }
                        Err(e) => {
                            tracing::error!(position = after, error = %e, "unreadable record; subscribers will skip it");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the live feed lost the store; resuming");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
