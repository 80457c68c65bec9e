//! The NATS JetStream relay: everything committed to the log reaches a JetStream stream at
//! least once, in position order, de-duplicated by event id, across crashes of the server
//! and outages of NATS.
//!
//! One relay task per database is active (PostgreSQL: whoever holds the advisory lock
//! `<schema>.amtsbuch_relay.<stream>`; SQLite: the one process); the others stand by. The
//! active relay follows the log like any subscription (catch-up, then woken by new heads)
//! and publishes each event's stored bytes unchanged, on the subject `subject::subject`
//! gives it, with the event id as `Nats-Msg-Id`. Appends never wait for NATS: the relay
//! only reads the log.
//!
//! Order is enforced by JetStream itself, not only by the relay's care. The stream belongs
//! to the relay, which publishes each position exactly once per attempt, so the stream's
//! sequence numbers run parallel to log positions. Every message carries the stream
//! sequence its predecessor must have (`Nats-Expected-Last-Sequence`), and JetStream
//! refuses it otherwise. A message lost in flight (a dropped connection, a NATS crash that
//! lost its unsynced tail) therefore cannot be overtaken by its successors: they are all
//! refused, the relay reads where the stream really ends (the `Amtsbuch-Position` header
//! of its last message) and publishes again from there. A sequence alone does not say
//! *whose* message holds it: were a stranger's message stored where a refused one should
//! be, the publishes pipelined behind it would expect exactly that sequence and be stored
//! after it, one position short. So every message of a session after its first also
//! names its predecessor's event id (`Nats-Expected-Last-Msg-Id`): behind a refused
//! message all are refused, and the next session finds the stranger's message at the
//! stream's end and stops. (The first message of a session names none: after a NATS
//! restart the server knows the last message's id only within its duplicate window.) Republishing an event that did
//! arrive is answered `duplicate` within the duplicate window and refused as out of
//! sequence after it, so nothing is stored twice. Up to `max_in_flight` publishes are
//! pipelined; their acknowledgements are taken in order, and the published position moves
//! only over acknowledged events.
//!
//! The published position is also written to `relay_state` (at most every
//! `PERSIST_INTERVAL`), for monitoring and as the resume point when the stream cannot
//! tell, e.g. after its messages expired under a retention limit.
//!
//! A message can only be as long as the NATS server's `max_payload`, headers included, so
//! the relay tells the store how long a record may be (`max_record_bytes`; every node's
//! relay does, stand-bys included, and follows the server's value as it changes), and the
//! append path refuses longer records: whatever the log accepts, the relay can deliver.
//! Should the relay still meet a record it cannot publish (the server's `max_payload` was
//! lowered after the record was stored), it stops at that position, because every later
//! event must follow it, and says so loudly: an error log naming the position, and
//! `RelayHandle::blocked`, which the service reports as a metric and in `/readyz`. It
//! retries with backoff and goes on by itself once the server accepts the message.
//!
//! `ensure_consumer` sets up the durable pull consumer a Fachverfahren reads with.

use std::convert::Infallible;
use std::mem::Discriminant;
use std::time::{Duration, Instant};

use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::merkle::leaf_hash;
use amtsbuch_domain::subject::{subject_of, SubjectPrefix};
use amtsbuch_domain::{AuthorityId, EventType, ServiceKey, StreamId};
use async_nats::header::{
    HeaderMap, NATS_EXPECTED_LAST_MESSAGE_ID, NATS_EXPECTED_LAST_SEQUENCE, NATS_MESSAGE_ID,
};
use async_nats::jetstream::consumer::{self, pull, AckPolicy, DeliverPolicy, FromConsumer};
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self as js, ErrorCode};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesOrdered, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::lease::Lease;
use crate::store::{to_i64, EventStore, RecordedEvent, StoreError};
use crate::{AnyStore, Subscription};

/// The stream name used when none is configured.
pub const DEFAULT_STREAM: &str = "AMTSBUCH";
/// How long JetStream remembers event ids to drop a republished event (see `RelayConfig`).
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Publishes awaiting their acknowledgement, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;
/// How long the relay waits for an acknowledgement or a JetStream API answer, by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Header: the event's global log position.
pub const HEADER_POSITION: &str = "Amtsbuch-Position";
/// Header: the stream id (`<category>-<id>`) of the event.
pub const HEADER_STREAM: &str = "Amtsbuch-Stream";
/// Header: the event's version within its stream.
pub const HEADER_STREAM_VERSION: &str = "Amtsbuch-Stream-Version";
/// Header: the RFC 6962 leaf hash of the payload, in hex.
pub const HEADER_LEAF_HASH: &str = "Amtsbuch-Leaf-Hash";

/// NATS's `max_payload` unless its configuration says otherwise: 1 MiB. The store limits
/// records to what a server with this setting can carry until a relay learns better, and
/// without NATS for good, so that the log can be relayed later by a server with default
/// settings.
pub const NATS_DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// The longest header block the relay sends with a message, as NATS counts it against
/// `max_payload` (`NATS/1.0\r\n`, one `name: value\r\n` per header, `\r\n`), with every
/// value at its longest: a UUID, a stream id of `StreamId::MAX_LEN`, numbers of 20 digits
/// and a hex SHA-256.
pub const MAX_HEADER_BYTES: usize = "NATS/1.0\r\n".len()
    + header_bytes("Nats-Msg-Id", 36)
    + header_bytes("Nats-Expected-Last-Sequence", 20)
    + header_bytes("Nats-Expected-Last-Msg-Id", 36)
    + header_bytes(HEADER_POSITION, 20)
    + header_bytes(HEADER_STREAM, StreamId::MAX_LEN)
    + header_bytes(HEADER_STREAM_VERSION, 20)
    + header_bytes(HEADER_LEAF_HASH, 64)
    + "\r\n".len();

const fn header_bytes(name: &str, value: usize) -> usize {
    name.len() + ": ".len() + value + "\r\n".len()
}

/// The longest record the relay can publish to a server with this `max_payload`.
pub fn max_record_bytes(max_payload: usize) -> usize {
    max_payload.saturating_sub(MAX_HEADER_BYTES)
}

/// How often a standby asks for the lock.
const STANDBY: Duration = Duration::from_secs(1);
/// Shortest gap between two writes of `relay_state`.
const PERSIST_INTERVAL: Duration = Duration::from_millis(250);
/// Sessions in a row whose publish of the same position JetStream refuses before the
/// relay reports itself blocked there (`RelayHandle::blocked`, `/readyz`).
const REFUSALS_UNTIL_BLOCKED: u32 = 3;
/// First and longest pause between attempts after a failure.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Where and how the relay publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    /// NATS server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// Name of the JetStream stream the relay feeds (and owns). Also the key of its row in
    /// `relay_state` and of its advisory lock, so several streams could be fed at once.
    pub stream: String,
    /// First token(s) of every subject; the stream takes `<prefix>.>`.
    pub prefix: SubjectPrefix,
    /// How long JetStream remembers event ids. Within the window a republished event is
    /// answered `duplicate` and dropped; the relay republishes only events whose
    /// acknowledgement it did not get, and only within seconds, so the default of two
    /// minutes covers every retry with a wide margin. A longer window costs JetStream
    /// memory for one id per event published within it (about 600,000 ids at 5,000
    /// events/s over two minutes); a shorter one is still safe, because the expected
    /// sequence on every message refuses an event that is already stored even when the
    /// window has forgotten it.
    pub duplicate_window: Duration,
    /// Keep messages at most this long; `None` (the default) keeps them forever. There are
    /// no message or byte limits: a Fachverfahren must be able to catch up from any point.
    pub max_age: Option<Duration>,
    /// Replicas of the stream in a clustered JetStream.
    pub replicas: usize,
    /// Publishes sent before the oldest is acknowledged (at least 1).
    pub max_in_flight: usize,
    /// How long to wait for an acknowledgement or a JetStream API answer before counting
    /// NATS as unavailable and starting again from the first unacknowledged position.
    pub ack_timeout: Duration,
}

impl RelayConfig {
    /// The defaults: stream `AMTSBUCH`, prefix `amtsbuch`, two-minute duplicate window,
    /// no limits, one replica, 256 publishes in flight, five-second acknowledgement timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: DEFAULT_STREAM.to_owned(),
            prefix: SubjectPrefix::default(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: None,
            replicas: 1,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    /// Refuse a configuration the relay could never run with.
    pub fn validate(&self) -> Result<(), RelayError> {
        validate_stream_name(&self.stream)?;
        parse_urls(&self.url)?;
        if self.duplicate_window.is_zero() {
            return Err(RelayError::Config(
                "the duplicate window must be longer than zero".into(),
            ));
        }
        if self.max_age.is_some_and(|age| age < self.duplicate_window) {
            return Err(RelayError::Config(
                "the maximum age must not be shorter than the duplicate window".into(),
            ));
        }
        if self.replicas == 0 || self.max_in_flight == 0 || self.ack_timeout.is_zero() {
            return Err(RelayError::Config(
                "replicas, publishes in flight and the acknowledgement timeout must be above zero"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Why the relay, or setting up a consumer, failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("invalid relay configuration: {0}")]
    Config(String),
    #[error("consumer name {0:?} must be 1 to 64 ASCII letters, digits, '-' and '_'")]
    ConsumerName(String),
    #[error("filter subject {0:?} is not a valid NATS subject filter")]
    Filter(String),
    #[error("NATS is unavailable: {0}")]
    Nats(String),
    #[error("JetStream stream {stream:?} cannot be used: {reason}")]
    Stream { stream: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("the event at position {position} cannot be published: {reason}")]
    Undeliverable { position: u64, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where the relay is stuck: a stored event it cannot publish, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub position: u64,
    pub reason: String,
}

fn nats(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

fn stream_error(stream: &str, reason: impl Into<String>) -> RelayError {
    RelayError::Stream {
        stream: stream.to_owned(),
        reason: reason.into(),
    }
}

/// A running relay. Dropping the handle stops the relay (and releases its lock); `stop`
/// does the same and also waits for it.
#[derive(Debug)]
pub struct RelayHandle {
    published: watch::Receiver<u64>,
    active: watch::Receiver<bool>,
    blocked: watch::Receiver<Option<Blocked>>,
    task: JoinHandle<()>,
    /// Writes `relay_state`; it ends by itself, after a last write, once `task` has ended.
    persister: JoinHandle<()>,
}

impl RelayHandle {
    /// The highest position up to which JetStream acknowledged every event, as far as this
    /// process knows. It moves only while this process is the active relay (a standby keeps
    /// the last value it had); relay lag is `head - published` on the active one.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.clone()
    }

    /// Whether this process is the active relay, as a watch.
    pub fn active(&self) -> watch::Receiver<bool> {
        self.active.clone()
    }

    /// Whether this process is the active relay now.
    pub fn is_active(&self) -> bool {
        *self.active.borrow()
    }

    /// The event this process's relay cannot publish, while it cannot.
    pub fn blocked(&self) -> watch::Receiver<Option<Blocked>> {
        self.blocked.clone()
    }

    /// Stop the relay and wait until it has let go of its lock and NATS connection and
    /// has recorded the last acknowledged position in `relay_state`.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
        let _ = (&mut self.persister).await;
    }
}

impl Drop for RelayHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the relay for `store`. It runs until the handle is dropped or the store shuts
/// down; NATS and database failures are logged once per outage and retried with backoff.
pub fn spawn(store: AnyStore, config: RelayConfig) -> Result<RelayHandle, RelayError> {
    config.validate()?;
    let (published_tx, published) = watch::channel(0);
    let (active_tx, active) = watch::channel(false);
    let (blocked_tx, blocked) = watch::channel(None);
    let persister = tokio::spawn(persist(
        store.clone(),
        config.stream.clone(),
        published_tx.subscribe(),
    ));
    let task = tokio::spawn(run(
        store,
        config,
        Watches {
            published: published_tx,
            active: active_tx,
            blocked: blocked_tx,
        },
    ));
    Ok(RelayHandle {
        published,
        active,
        blocked,
        task,
        persister,
    })
}

// ---------------------------------------------------------------------------------------
// The relay task.

/// Why a relay session ended.
#[derive(Debug)]
enum End {
    /// The store shut down: the relay ends.
    Closed,
    /// This process no longer holds the lock: stand by again.
    LockLost(String),
    /// NATS, the database or the stream failed: try again after a pause.
    Failed(RelayError),
    /// JetStream answered the publish of `position` with an error of its own (not a lost
    /// connection, a timeout or an out-of-sequence refusal): try again after a pause. The
    /// same refusal at the same position again and again means the relay is stuck there.
    Refused { position: u64, reason: String },
}

impl From<RelayError> for End {
    fn from(e: RelayError) -> Self {
        End::Failed(e)
    }
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> Self {
        End::Failed(e.into())
    }
}

/// Logs a failure once per outage, not once per attempt, and the recovery once.
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
    logged: Option<Discriminant<RelayError>>,
}

impl Outage {
    fn failed(&mut self, stream: &str, e: &RelayError) {
        let since = *self.since.get_or_insert_with(Instant::now);
        // A different kind of failure within the same outage is worth one more line.
        let kind = std::mem::discriminant(e);
        if self.logged == Some(kind) {
            tracing::debug!(stream, error = %e, "NATS relay still interrupted");
            return;
        }
        self.logged = Some(kind);
        match e {
            RelayError::Stream { .. }
            | RelayError::Undeliverable { .. }
            | RelayError::Store(StoreError::Corrupt { .. }) => {
                tracing::error!(stream, error = %e, down_for = ?since.elapsed(), "NATS relay stopped; retrying until this is fixed")
            }
            _ => {
                tracing::warn!(stream, error = %e, down_for = ?since.elapsed(), "NATS relay interrupted; retrying with backoff")
            }
        }
    }

    fn recovered(&mut self, stream: &str) {
        if let Some(since) = self.since.take() {
            self.logged = None;
            tracing::info!(stream, after = ?since.elapsed(), "NATS relay publishing again");
        }
    }
}

/// The watches a relay task reports through.
struct Watches {
    published: watch::Sender<u64>,
    active: watch::Sender<bool>,
    blocked: watch::Sender<Option<Blocked>>,
}

async fn run(store: AnyStore, config: RelayConfig, watches: Watches) {
    let lock_name = format!("amtsbuch_relay.{}", config.stream);
    let mut outage = Outage::default();
    let mut backoff = BACKOFF_MIN;
    // NATS first, on every node, stand-bys included: the append path's record limit
    // follows the server's `max_payload`. The client reconnects by itself after an outage,
    // so only this first connect needs retrying.
    let context = loop {
        match connect(&config).await {
            Ok(c) => break c,
            Err(e) => {
                outage.failed(&config.stream, &e);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    };
    // The position JetStream last refused, and in how many sessions in a row.
    let mut refused: Option<(u64, u32)> = None;
    loop {
        let lock = match &store {
            AnyStore::Postgres(_) => match standby(&store, &lock_name, &context).await {
                Ok(lock) => Some(lock),
                Err(e) => {
                    outage.failed(&config.stream, &e.into());
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            },
            AnyStore::Sqlite(_) => None,
        };
        watches.active.send_replace(true);
        tracing::info!(stream = %config.stream, "this process relays the log to NATS");
        loop {
            let mut progressed = false;
            let end = match lock.as_ref() {
                // A relay whose lease is gone must not start again: another may have it.
                Some(lock) if !lock.is_held() => End::LockLost(lock.lost().await),
                _ => match session(
                    &store,
                    &config,
                    &context,
                    lock.as_ref(),
                    &watches,
                    &mut outage,
                    &mut progressed,
                )
                .await
                {
                    Ok(never) => match never {},
                    Err(end) => end,
                },
            };
            if progressed {
                backoff = BACKOFF_MIN;
                refused = None;
            }
            let e = match end {
                End::Closed => {
                    watches.active.send_replace(false);
                    return;
                }
                End::LockLost(reason) => {
                    tracing::warn!(stream = %config.stream, reason, "lost the relay lock; standing by");
                    break;
                }
                End::Failed(e) => e,
                End::Refused { position, reason } => {
                    let times = match refused {
                        Some((at, times)) if at == position => times + 1,
                        _ => 1,
                    };
                    refused = Some((position, times));
                    if times >= REFUSALS_UNTIL_BLOCKED {
                        RelayError::Undeliverable {
                            position,
                            reason: format!(
                                "JetStream refused it {times} times in a row: {reason}"
                            ),
                        }
                    } else {
                        nats(format!("JetStream refused position {position}: {reason}"))
                    }
                }
            };
            if let RelayError::Undeliverable { position, reason } = &e {
                watches.blocked.send_replace(Some(Blocked {
                    position: *position,
                    reason: reason.clone(),
                }));
            }
            outage.failed(&config.stream, &e);
            // The pause ends early if the lease is lost meanwhile; the check at the top of
            // the loop then stands by.
            match lock.as_ref() {
                Some(lock) => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        _ = lock.lost() => {}
                    }
                }
                None => tokio::time::sleep(backoff).await,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        watches.active.send_replace(false);
        // Only the active relay knows whether it is stuck.
        watches.blocked.send_replace(None);
        drop(lock);
    }
}

/// Wait until this process holds the relay's lease, following the server's `max_payload`
/// meanwhile.
async fn standby(store: &AnyStore, name: &str, context: &js::Context) -> Result<Lease, StoreError> {
    loop {
        follow_max_payload(store, context);
        if let Some(lease) = Lease::try_acquire(store, name).await? {
            return Ok(lease);
        }
        tokio::time::sleep(STANDBY).await;
    }
}

/// Limit the records the store accepts to what the connected server can carry (its
/// `max_payload` as it last announced it, minus the relay's headers).
fn follow_max_payload(store: &AnyStore, context: &js::Context) {
    let max_payload = context.client().max_payload();
    if max_payload == 0 {
        return;
    }
    let limit = max_record_bytes(max_payload);
    if store.set_max_record_bytes(limit) != limit {
        tracing::info!(
            max_payload,
            max_record_bytes = limit,
            "appends take records up to what the NATS server can carry"
        );
    }
}

/// Connect to the NATS server(s) of `config`, with the relay's timeouts. The relay keeps
/// one connection for its lifetime; it reconnects by itself after an outage, so only the
/// first connect needs retrying. Also for tools that set up consumers (`ensure_consumer`).
pub async fn connect(config: &RelayConfig) -> Result<js::Context, RelayError> {
    let client = async_nats::ConnectOptions::new()
        .name("amtsbuch-relay")
        .connection_timeout(config.ack_timeout)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100u64.saturating_mul(1 << attempts.min(5))).min(BACKOFF_MAX)
        })
        .connect(parse_urls(&config.url)?)
        .await
        .map_err(nats)?;
    Ok(js::context::ContextBuilder::new()
        .timeout(config.ack_timeout)
        .ack_timeout(config.ack_timeout)
        // Publishes dropped when a session ends keep their permit until they time out;
        // leave room for a few sessions' worth.
        .max_ack_inflight(config.max_in_flight.saturating_mul(8).max(1024))
        .backpressure_on_inflight(true)
        .build(client))
}

fn parse_urls(url: &str) -> Result<Vec<async_nats::ServerAddr>, RelayError> {
    let addrs = url
        .split(',')
        .map(|u| u.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| RelayError::Config(format!("bad NATS URL {url:?}: {e}")))?;
    if addrs.is_empty() {
        return Err(RelayError::Config("no NATS URL given".into()));
    }
    Ok(addrs)
}

/// Publish from where the stream ends until something fails. Never returns `Ok`.
async fn session(
    store: &AnyStore,
    config: &RelayConfig,
    context: &js::Context,
    lock: Option<&Lease>,
    watches: &Watches,
    outage: &mut Outage,
    progressed: &mut bool,
) -> Result<Infallible, End> {
    let published = &watches.published;
    follow_max_payload(store, context);
    // What was persisted is read before the stream's end: every position persisted was in
    // the stream by then, so the stream can only end below it if it lost messages, even if
    // a relay that has not yet noticed losing its lease still persists a later position.
    let persisted = load_position(store, &config.stream).await?;
    let stream = ensure_stream(context, config).await?;
    let end = stream_end(&stream, &config.stream).await?;
    same_log(store, &config.stream, &end).await?;
    let resume = resume_after(&end, persisted);
    if resume < persisted {
        tracing::warn!(
            stream = %config.stream,
            stream_ends_at = resume,
            acknowledged_before = persisted,
            "the JetStream stream lacks events it had acknowledged (recreated, or its storage lost them); publishing them again"
        );
    }
    published.send_replace(resume);

    // The sequence the last message sent (or found) has; the next must follow it.
    let mut last_sequence = end.last_sequence;
    // The event id of the message sent last in this session; none before the first.
    let mut last_event_id: Option<uuid::Uuid> = None;
    let mut events = Subscription::start(store.clone(), resume);
    let mut acks: FuturesOrdered<BoxFuture<'static, Acked>> = FuturesOrdered::new();
    // The lease is watched beside publishing, never in its way.
    let lost = async move {
        match lock {
            Some(lock) => lock.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(lost);
    let mut limit_check = tokio::time::interval(STANDBY);
    loop {
        tokio::select! {
            biased;
            reason = &mut lost => return Err(End::LockLost(reason)),
            _ = limit_check.tick() => follow_max_payload(store, context),
            Some(acked) = acks.next(), if !acks.is_empty() => {
                let ack = match acked.result {
                    Ok(ack) => ack,
                    Err((
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId,
                        text,
                    )) => {
                        return Err(End::Failed(nats(format!(
                            "JetStream refused position {} out of sequence ({text}); resuming where the stream ends",
                            acked.position
                        ))))
                    }
                    // JetStream's own answer: it may refuse this message whenever it is sent.
                    Err((PublishErrorKind::Other, text)) => {
                        return Err(End::Refused {
                            position: acked.position,
                            reason: text,
                        })
                    }
                    Err((_, text)) => {
                        return Err(End::Failed(nats(format!(
                            "no acknowledgement for position {}: {text}",
                            acked.position
                        ))))
                    }
                };
                if ack.sequence != acked.sequence || ack.stream != config.stream {
                    return Err(End::Failed(stream_error(
                        &config.stream,
                        format!(
                            "position {} was stored at sequence {} of {:?}, expected sequence {}; resuming where the stream ends",
                            acked.position, ack.sequence, ack.stream, acked.sequence
                        ),
                    )));
                }
                published.send_replace(acked.position);
                *progressed = true;
                outage.recovered(&config.stream);
                watches.blocked.send_if_modified(|b| {
                    let passed = b.as_ref().is_some_and(|b| acked.position >= b.position);
                    if passed {
                        tracing::info!(stream = %config.stream, position = acked.position, "NATS relay published the event it was stuck at");
                        *b = None;
                    }
                    passed
                });
            }
            event = events.next(), if acks.len() < config.max_in_flight => {
                let event = match event {
                    None => return Err(End::Closed),
                    Some(Err(e)) => return Err(e.into()),
                    Some(Ok(event)) => event,
                };
                let position = event.position;
                let (subject, message, event_id) =
                    outgoing(&config.prefix, event, last_sequence, last_event_id)?;
                let pending = context
                    .send_publish(subject, message)
                    .await
                    .map_err(|e| match e.kind() {
                        // It stays too large however often it is retried: name it, and what
                        // the operator can do.
                        PublishErrorKind::MaxPayloadExceeded => RelayError::Undeliverable {
                            position,
                            reason: format!(
                                "{e}; raise the NATS server's max_payload and reload it, the relay goes on by itself"
                            ),
                        },
                        _ => nats(format!("cannot publish position {position}: {e}")),
                    })?;
                last_sequence += 1;
                last_event_id = Some(event_id);
                let sequence = last_sequence;
                acks.push_back(Box::pin(async move {
                    let result = pending
                        .await
                        .map_err(|e| (e.kind(), e.to_string()));
                    Acked { position, sequence, result }
                }));
            }
        }
    }
}

/// The outcome of one publish, in the order sent.
struct Acked {
    position: u64,
    sequence: u64,
    result: Result<PublishAck, (PublishErrorKind, String)>,
}

/// The subject and message for one stored event: its bytes unchanged as the payload, and
/// only identifiers and hashes in headers (personal data stays sealed inside the record).
fn outgoing(
    prefix: &SubjectPrefix,
    event: RecordedEvent,
    expected_last_sequence: u64,
    expected_last_event: Option<uuid::Uuid>,
) -> Result<(String, PublishMessage, uuid::Uuid), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        position: event.position,
        reason,
    };
    // Only the members the subject and the headers need: `data` is skipped, not parsed.
    let record: OutgoingHead =
        serde_json::from_slice(&event.bytes).map_err(|e| corrupt(e.to_string()))?;
    if record.position != event.position {
        return Err(corrupt(format!(
            "the record says position {}",
            record.position
        )));
    }
    // The leaf hash travels as a header a consumer checks the payload against; never
    // hand on one that does not match.
    if leaf_hash(&event.bytes) != event.leaf_hash {
        return Err(corrupt(
            "the stored leaf hash does not match the record".into(),
        ));
    }
    let headers = headers(
        &record,
        &event.leaf_hash,
        expected_last_sequence,
        expected_last_event,
    );
    let message = PublishMessage::build()
        .payload(event.bytes.into())
        .headers(headers);
    let subject = subject_of(
        prefix,
        &record.stream_id,
        &record.event_type,
        record.authority.as_ref(),
        record.service.as_ref(),
    );
    Ok((subject, message, record.event_id))
}

/// The headers of a record's message. `MAX_HEADER_BYTES` bounds their length.
fn headers(
    record: &OutgoingHead,
    leaf_hash: &amtsbuch_domain::Hash,
    expected_last_sequence: u64,
    expected_last_event: Option<uuid::Uuid>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, record.event_id.to_string());
    headers.insert(
        NATS_EXPECTED_LAST_SEQUENCE,
        expected_last_sequence.to_string(),
    );
    if let Some(id) = expected_last_event {
        headers.insert(NATS_EXPECTED_LAST_MESSAGE_ID, id.to_string());
    }
    headers.insert(HEADER_POSITION, record.position.to_string());
    headers.insert(HEADER_STREAM, record.stream_id.as_str());
    headers.insert(HEADER_STREAM_VERSION, record.stream_version.to_string());
    headers.insert(HEADER_LEAF_HASH, to_hex(leaf_hash));
    headers
}

/// The members of a stored record that its NATS message is addressed and labelled by.
#[derive(serde::Deserialize)]
struct OutgoingHead {
    event_id: uuid::Uuid,
    stream_id: StreamId,
    stream_version: u64,
    position: u64,
    event_type: EventType,
    #[serde(default)]
    authority: Option<AuthorityId>,
    #[serde(default)]
    service: Option<ServiceKey>,
}

// ---------------------------------------------------------------------------------------
// The stream.

/// Create the stream, or bring an existing one to the relay's settings. Settings NATS
/// cannot change on an existing stream (storage type, retention policy, mirroring,
/// sealing) are refused with a message that says so instead of being worked around. The
/// relay calls this at the start of every session; a service may call it once at start-up
/// to fail fast on a stream it cannot use.
pub async fn ensure_stream(
    context: &js::Context,
    config: &RelayConfig,
) -> Result<stream::Stream, RelayError> {
    let name = &config.stream;
    match context.get_stream(name).await {
        Ok(stream) => {
            let current = stream.cached_info().config.clone();
            if current.storage != StorageType::File {
                return Err(stream_error(
                    name,
                    "it keeps messages in memory; the relay needs file storage, which NATS cannot change on an existing stream (recreate it)",
                ));
            }
            if current.retention != RetentionPolicy::Limits {
                return Err(stream_error(
                    name,
                    "its retention policy removes consumed messages; the relay needs the limits policy, which NATS cannot change on an existing stream (recreate it)",
                ));
            }
            if current.mirror.is_some() || current.sealed {
                return Err(stream_error(
                    name,
                    "it is a mirror or sealed, so it cannot take published messages",
                ));
            }
            let mut wanted = current.clone();
            apply_settings(&mut wanted, config);
            if wanted == current {
                return Ok(stream);
            }
            context
                .update_stream(wanted)
                .await
                .map_err(|e| stream_error(name, format!("cannot update its configuration: {e}")))?;
            tracing::info!(stream = %name, "updated the JetStream stream's configuration");
            context.get_stream(name).await.map_err(nats)
        }
        Err(e) => match e.kind() {
            js::context::GetStreamErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                let mut wanted = stream::Config {
                    name: name.clone(),
                    storage: StorageType::File,
                    retention: RetentionPolicy::Limits,
                    discard: DiscardPolicy::Old,
                    description: Some("Amtsbuch event log, published by the relay".into()),
                    ..Default::default()
                };
                apply_settings(&mut wanted, config);
                context
                    .create_stream(wanted)
                    .await
                    .map_err(|e| stream_error(name, format!("cannot create it: {e}")))?;
                tracing::info!(stream = %name, "created the JetStream stream");
                context.get_stream(name).await.map_err(nats)
            }
            _ => Err(nats(e)),
        },
    }
}

/// The settings the relay owns on its stream; everything else is left as the operator set it.
fn apply_settings(c: &mut stream::Config, config: &RelayConfig) {
    c.subjects = vec![config.prefix.wildcard()];
    c.duplicate_window = config.duplicate_window;
    c.deny_delete = true;
    c.deny_purge = true;
    c.allow_rollup = false;
    c.max_messages = -1;
    c.max_bytes = -1;
    c.max_messages_per_subject = -1;
    // What a message may carry is the server's `max_payload`, which the append path
    // follows (`follow_max_payload`); a smaller limit on the stream would refuse records
    // the log has already accepted, and stop the relay at the first of them.
    c.max_message_size = -1;
    c.max_age = config.max_age.unwrap_or(Duration::ZERO);
    c.num_replicas = config.replicas;
}

/// Where the stream ends: its last sequence and, if it still holds a message, that
/// message's log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StreamEnd {
    last_sequence: u64,
    position: Option<u64>,
    /// The event id of that message (its `Nats-Msg-Id`).
    event_id: Option<uuid::Uuid>,
}

/// Refuse a stream that another log fed — a new or restored database pointed at an old
/// stream: the event the stream's last message carries must be the event at that
/// position in this log. Otherwise the relay would take the stream's end for its own
/// progress, skip this log's events up to it, and mix the two logs after it.
async fn same_log(store: &AnyStore, name: &str, end: &StreamEnd) -> Result<(), End> {
    let Some(position) = end.position else {
        return Ok(());
    };
    let ours = match end.event_id {
        Some(id) => store.event_by_id(id).await?.map(|e| e.position),
        None => None,
    };
    if ours == Some(position) {
        return Ok(());
    }
    let head = store.head().await?.position;
    Err(stream_error(
        name,
        format!(
            "its last message is position {position} (event {}) of another log: this log {}; \
             give this database a stream of its own (--nats-stream) or remove the old stream",
            end.event_id
                .map_or_else(|| "without an id".to_owned(), |id| id.to_string()),
            if head < position {
                format!("ends at position {head}")
            } else {
                "holds a different event there".to_owned()
            }
        ),
    )
    .into())
}

async fn stream_end(stream: &stream::Stream, name: &str) -> Result<StreamEnd, RelayError> {
    let info = stream.get_info().await.map_err(nats)?;
    if info.state.messages == 0 {
        return Ok(StreamEnd {
            last_sequence: info.state.last_sequence,
            position: None,
            event_id: None,
        });
    }
    let message = stream
        .get_raw_message(info.state.last_sequence)
        .await
        .map_err(nats)?;
    let position = header_position(&message.headers).ok_or_else(|| {
        stream_error(
            name,
            format!(
                "its message at sequence {} has no {HEADER_POSITION} header; the stream must be fed by the relay alone",
                message.sequence
            ),
        )
    })?;
    Ok(StreamEnd {
        last_sequence: message.sequence,
        position: Some(position),
        event_id: message
            .headers
            .get(NATS_MESSAGE_ID)
            .and_then(|v| uuid::Uuid::parse_str(v.as_str()).ok()),
    })
}

/// The log position a relay message carries.
fn header_position(headers: &HeaderMap) -> Option<u64> {
    headers.get(HEADER_POSITION)?.as_str().parse().ok()
}

/// The position to publish after. The stream knows best what it holds, so its last
/// message decides: everything up to it is there (positions run parallel to sequences),
/// nothing after it is. That is never below what a restarted relay last persisted unless
/// the stream lost events, and then they must be published again. Only when the stream
/// holds no message although it had some (they expired) does the persisted position
/// decide; a stream that never had a message is filled from the start.
fn resume_after(end: &StreamEnd, persisted: u64) -> u64 {
    match end.position {
        Some(position) => position,
        None if end.last_sequence == 0 => 0,
        None => persisted,
    }
}

// ---------------------------------------------------------------------------------------
// The durable position.

async fn load_position(store: &AnyStore, name: &str) -> Result<u64, StoreError> {
    let row = Db::background(store)
        .fetch_optional(
            "SELECT position FROM relay_state WHERE name = $1",
            &[name.into()],
        )
        .await?;
    Ok(match row {
        Some(row) => row.get_u64("position")?,
        None => 0,
    })
}

/// Move the stored position forward (never back: a relay that lost its lock may still
/// report an older position). `updated_at` takes its column default, the database's clock
/// in each dialect's own form, which `EXCLUDED` carries into an update as well.
async fn save_position(store: &AnyStore, name: &str, position: u64) -> Result<(), StoreError> {
    Db::background(store)
        .execute(
            "INSERT INTO relay_state (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE \
             SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at \
             WHERE relay_state.position < EXCLUDED.position",
            &[name.into(), to_i64(position).into()],
        )
        .await?;
    Ok(())
}

/// Write the acknowledged position at most every `PERSIST_INTERVAL`, and once more when
/// the relay stops. The position only ever comes from acknowledgements (or from the stream
/// itself), so whatever is written JetStream really holds.
async fn persist(store: AnyStore, name: String, mut acked: watch::Receiver<u64>) {
    let mut written = 0;
    let mut failing = false;
    loop {
        let stopped = acked.changed().await.is_err();
        let position = *acked.borrow_and_update();
        if position > written {
            match save_position(&store, &name, position).await {
                Ok(()) => {
                    written = position;
                    failing = false;
                }
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(stream = %name, error = %e, "cannot record the relay's position; it is retried");
                }
                Err(_) => {}
            }
        }
        if stopped {
            return;
        }
        tokio::time::sleep(PERSIST_INTERVAL).await;
    }
}

// ---------------------------------------------------------------------------------------
// Consumers for Fachverfahren.

/// Where a new consumer starts. An existing consumer keeps its own progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverFrom {
    /// Every event the stream holds.
    All,
    /// Events with a position greater than this one, e.g. the last one a Fachverfahren
    /// processed before it moved to this consumer.
    After(u64),
    /// Only events published after the consumer is created.
    New,
}

/// A durable consumer's name: 1 to 64 ASCII letters, digits, `-` and `_` (NATS forbids
/// `.`, `*`, `>` and white space; the narrower set also keeps it safe in paths and logs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerName(String);

impl ConsumerName {
    pub fn parse(s: &str) -> Result<Self, RelayError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(RelayError::ConsumerName(s.chars().take(100).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Create, or update, the durable pull consumer `name` on `stream` with explicit
/// acknowledgement and these filter subjects (e.g. from `subject::fachverfahren_filters`).
///
/// A new consumer starts as `start` says. An existing consumer keeps its progress and its
/// start (NATS cannot change either) and gets the new filters; its other settings stay as
/// they are. More than one filter needs NATS 2.10 or later: older servers silently ignore
/// the list and would deliver every event, so they are refused here.
pub async fn ensure_consumer(
    context: &js::Context,
    stream: &str,
    name: &ConsumerName,
    filter_subjects: &[String],
    start: DeliverFrom,
) -> Result<consumer::Info, RelayError> {
    if filter_subjects.is_empty() {
        return Err(RelayError::Filter(String::new()));
    }
    if let Some(bad) = filter_subjects.iter().find(|f| !is_filter(f)) {
        return Err(RelayError::Filter(bad.clone()));
    }
    let version = context.client().server_info().version;
    if filter_subjects.len() > 1 && !at_least(&version, 2, 10) {
        return Err(RelayError::Unsupported(format!(
            "NATS server {version} supports one filter subject per consumer; {} filters need NATS 2.10 or later",
            filter_subjects.len()
        )));
    }
    let handle = context
        .get_stream(stream)
        .await
        .map_err(|e| match e.kind() {
            js::context::GetStreamErrorKind::JetStream(err)
                if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                stream_error(stream, "it does not exist (has the relay run yet?)")
            }
            _ => nats(e),
        })?;
    let mut config = match handle.consumer_info(name.as_str()).await {
        Ok(info) => {
            let existing = pull::Config::try_from_consumer_config(info.config).map_err(|e| {
                stream_error(
                    stream,
                    format!("consumer {:?} is not a pull consumer: {e}", name.as_str()),
                )
            })?;
            if existing.ack_policy != AckPolicy::Explicit {
                return Err(stream_error(
                    stream,
                    format!(
                        "consumer {:?} exists without explicit acknowledgement, which NATS cannot change; delete it first",
                        name.as_str()
                    ),
                ));
            }
            existing
        }
        Err(e) if e.kind() == js::context::ConsumerInfoErrorKind::NotFound => pull::Config {
            durable_name: Some(name.as_str().to_owned()),
            description: Some("Amtsbuch events for a Fachverfahren".into()),
            ack_policy: AckPolicy::Explicit,
            deliver_policy: deliver_policy(&handle, start).await?,
            ..Default::default()
        },
        Err(e) => return Err(nats(e)),
    };
    // One filter goes into `filter_subject`, which every server version understands.
    match filter_subjects {
        [one] => {
            config.filter_subject = one.clone();
            config.filter_subjects = Vec::new();
        }
        many => {
            config.filter_subject = String::new();
            config.filter_subjects = many.to_vec();
        }
    }
    let consumer = handle.create_consumer(config).await.map_err(|e| {
        stream_error(
            stream,
            format!("cannot set up consumer {:?}: {e}", name.as_str()),
        )
    })?;
    Ok(consumer.cached_info().clone())
}

/// Whether the durable consumer `name` exists on `stream` (a stream that does not exist has
/// none).
pub async fn consumer_exists(
    context: &js::Context,
    stream: &str,
    name: &ConsumerName,
) -> Result<bool, RelayError> {
    let handle = match context.get_stream(stream).await {
        Ok(handle) => handle,
        Err(e) => {
            return match e.kind() {
                js::context::GetStreamErrorKind::JetStream(err)
                    if err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                {
                    Ok(false)
                }
                _ => Err(nats(e)),
            }
        }
    };
    match handle.consumer_info(name.as_str()).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == js::context::ConsumerInfoErrorKind::NotFound => Ok(false),
        Err(e) => Err(nats(e)),
    }
}

async fn deliver_policy(
    stream: &stream::Stream,
    start: DeliverFrom,
) -> Result<DeliverPolicy, RelayError> {
    Ok(match start {
        DeliverFrom::All => DeliverPolicy::All,
        DeliverFrom::New => DeliverPolicy::New,
        DeliverFrom::After(position) => DeliverPolicy::ByStartSequence {
            start_sequence: first_sequence_after(stream, position).await?,
        },
    })
}

/// The stream sequence of the first message with a log position greater than `after`, or
/// the next sequence to be used if there is none yet. Positions grow with sequences, so a
/// binary search over the messages' headers finds it in a few dozen reads at most.
async fn first_sequence_after(stream: &stream::Stream, after: u64) -> Result<u64, RelayError> {
    let info = stream.get_info().await.map_err(nats)?;
    let state = &info.state;
    if state.messages == 0 {
        return Ok(state.last_sequence + 1);
    }
    let (mut low, mut high) = (state.first_sequence, state.last_sequence + 1);
    while low < high {
        let middle = low + (high - low) / 2;
        let message = stream.get_raw_message(middle).await.map_err(nats)?;
        let position = header_position(&message.headers).ok_or_else(|| {
            stream_error(
                &info.config.name,
                format!("its message at sequence {middle} has no {HEADER_POSITION} header"),
            )
        })?;
        if position > after {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(low)
}

/// Whether `s` is a NATS subject or filter: non-empty tokens without white space, with
/// `*` and `>` only as whole tokens and `>` only last.
fn is_filter(s: &str) -> bool {
    let tokens: Vec<&str> = s.split('.').collect();
    tokens.iter().enumerate().all(|(i, t)| {
        !t.is_empty()
            && t.bytes().all(|c| c.is_ascii_graphic())
            && (*t == "*" || *t == ">" || !t.contains(['*', '>']))
            && (*t != ">" || i + 1 == tokens.len())
    })
}

/// Whether a server version string such as `2.9.10` is at least `major.minor`.
fn at_least(version: &str, major: u64, minor: u64) -> bool {
    let mut parts = version.split('.').map(|p| {
        p.bytes().take_while(u8::is_ascii_digit).fold(0u64, |n, d| {
            n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
        })
    });
    let (got_major, got_minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (got_major, got_minor) >= (major, minor)
}

/// NATS stream names: 1 to 64 ASCII letters, digits, `-` and `_`.
fn validate_stream_name(name: &str) -> Result<(), RelayError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_');
    if ok {
        Ok(())
    } else {
        Err(RelayError::Config(format!(
            "stream name {:?} must be 1 to 64 ASCII letters, digits, '-' and '_'",
            name.chars().take(100).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_decides_where_to_resume() {
        let at = |last_sequence, position| StreamEnd {
            last_sequence,
            position,
            event_id: None,
        };
        // Normal restart: the stream is ahead of the persisted position (crash between
        // acknowledgement and persisting), so nothing is published twice.
        assert_eq!(resume_after(&at(120, Some(120)), 100), 120);
        // The stream lost its tail (or was recreated): publish the missing events again.
        assert_eq!(resume_after(&at(90, Some(90)), 100), 90);
        assert_eq!(resume_after(&at(0, None), 100), 0);
        // Every message expired: only the persisted position knows.
        assert_eq!(resume_after(&at(500, None), 480), 480);
    }

    #[test]
    fn configuration_is_checked() {
        let good = RelayConfig::new("nats://127.0.0.1:4222");
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(good.stream, "AMTSBUCH");
        assert_eq!(good.prefix.as_str(), "amtsbuch");
        assert_eq!(good.duplicate_window, Duration::from_secs(120));
        let bad = [
            RelayConfig {
                stream: "A.B".into(),
                ..good.clone()
            },
            RelayConfig {
                stream: String::new(),
                ..good.clone()
            },
            RelayConfig {
                url: "nats://[::1".into(),
                ..good.clone()
            },
            RelayConfig {
                duplicate_window: Duration::ZERO,
                ..good.clone()
            },
            RelayConfig {
                max_age: Some(Duration::from_secs(60)),
                ..good.clone()
            },
            RelayConfig {
                max_in_flight: 0,
                ..good.clone()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
        assert!(RelayConfig::new("nats://a:4222, nats://b:4222")
            .validate()
            .is_ok());
    }

    #[test]
    fn consumer_names_and_filters_are_checked() {
        assert!(ConsumerName::parse("fv-meissen_1").is_ok());
        for bad in ["", "a.b", "a b", "a*", "a>", "ä", &"a".repeat(65)] {
            assert!(ConsumerName::parse(bad).is_err(), "{bad:?}");
        }
        for good in [
            "a.b",
            "a.*.c.>",
            ">",
            "amtsbuch.*.lra-meissen.*.99108001000000",
        ] {
            assert!(is_filter(good), "{good:?}");
        }
        for bad in ["", "a..b", "a.>.b", "a.b*", "a. b", "a.", ".a"] {
            assert!(!is_filter(bad), "{bad:?}");
        }
    }

    /// The header budget the append path reserves is exactly the longest header block the
    /// relay sends, counted as NATS counts it against `max_payload`.
    #[test]
    fn the_header_budget_covers_the_longest_headers() {
        let wire = |h: &HeaderMap| {
            "NATS/1.0\r\n".len()
                + h.iter()
                    .flat_map(|(name, values)| {
                        values.iter().map(move |v| {
                            AsRef::<[u8]>::as_ref(name).len() + 2 + v.as_str().len() + 2
                        })
                    })
                    .sum::<usize>()
                + 2
        };
        let stream_id = format!("{}-{}", "c".repeat(64), "i".repeat(200));
        assert_eq!(stream_id.len(), StreamId::MAX_LEN);
        let longest = OutgoingHead {
            event_id: uuid::Uuid::max(),
            stream_id: StreamId::parse(&stream_id).expect("longest stream id"),
            stream_version: u64::MAX,
            position: u64::MAX,
            event_type: EventType::parse("Noted").expect("type"),
            authority: None,
            service: None,
        };
        assert_eq!(
            wire(&headers(
                &longest,
                &[0xab; 32],
                u64::MAX,
                Some(uuid::Uuid::max())
            )),
            MAX_HEADER_BYTES
        );
        let short = OutgoingHead {
            stream_id: StreamId::parse("consent-1").expect("stream id"),
            stream_version: 1,
            position: 1,
            ..longest
        };
        assert!(wire(&headers(&short, &[0; 32], 0, None)) < MAX_HEADER_BYTES);
        assert_eq!(
            max_record_bytes(NATS_DEFAULT_MAX_PAYLOAD),
            1024 * 1024 - MAX_HEADER_BYTES
        );
        assert_eq!(max_record_bytes(100), 0);
    }

    #[test]
    fn server_versions_compare() {
        assert!(!at_least("2.9.10", 2, 10));
        assert!(at_least("2.10.0", 2, 10));
        assert!(at_least("2.10.0-beta.1", 2, 10));
        assert!(at_least("3.0.0", 2, 10));
        assert!(!at_least("", 2, 10));
    }
}
