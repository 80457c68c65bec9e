//! The NATS relay against a real JetStream and real stores: every committed event reaches
//! the stream exactly once and in position order — with concurrent writers, across relay
//! restarts (also when the persisted position lags the stream), through a NATS crash, and
//! with two relays on one database — and Fachverfahren consumers see exactly their events.
//!
//! Each test uses a stream name and subject prefix of its own on the shared NATS server
//! (`AMTSBUCH_TEST_NATS_URL`, default `nats://127.0.0.1:4222`) and deletes its stream at
//! the end, also when it fails. The outage test runs a private `nats-server`.

use amtsbuch_testkit as common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::merkle::leaf_hash;
use amtsbuch_domain::subject::{authority_filter, fachverfahren_filters, subject, SubjectPrefix};
use amtsbuch_domain::{
    AppendRequest, AuthorityId, EventType, ExpectedVersion, NewEvent, SealedSection, ServiceKey,
    StreamId,
};
use amtsbuch_infra::relay::{
    self, ConsumerName, DeliverFrom, RelayConfig, RelayError, RelayHandle, HEADER_LEAF_HASH,
    HEADER_POSITION, HEADER_STREAM, HEADER_STREAM_VERSION,
};
use amtsbuch_infra::{AnyStore, EventStore, PgStore, RecordedEvent};
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::{self, stream};
use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::watch;

/// A stream name and subject prefix no other test uses; deletes the stream when dropped,
/// so a failing test leaves nothing behind on the shared server.
struct Scope {
    url: String,
    stream: String,
    prefix: SubjectPrefix,
}

impl Scope {
    fn new(url: &str) -> Self {
        let id = uuid::Uuid::now_v7().simple().to_string();
        Self {
            url: url.to_owned(),
            stream: format!("TEST_RELAY_{id}"),
            prefix: SubjectPrefix::parse(&format!("test.r{id}")).expect("prefix"),
        }
    }

    fn config(&self) -> RelayConfig {
        RelayConfig {
            stream: self.stream.clone(),
            prefix: self.prefix.clone(),
            ack_timeout: Duration::from_secs(2),
            ..RelayConfig::new(self.url.clone())
        }
    }

    async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(&self.url)
            .await
            .expect("NATS must be running for the relay tests (AMTSBUCH_TEST_NATS_URL)");
        jetstream::new(client)
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Drop cannot await, and may run while a test unwinds: delete on a runtime of its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(2))
                    .connect(url);
                if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), connect).await
                {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
    }
}

const AUTHORITIES: [Option<&str>; 3] = [Some("lra-meissen"), Some("lra-bautzen"), None];
const SERVICES: [Option<&str>; 3] = [Some("99108001000000"), Some("99108002000000"), None];
const TYPES: [&str; 3] = ["application.Submitted", "ConsentGiven", "payment.Settled"];

/// The `n`-th test event: routing and type vary with `n`, so every subject shape occurs.
fn event(n: u64) -> NewEvent {
    let i = usize::try_from(n).expect("small");
    let mut e = NewEvent::new(
        EventType::parse(TYPES[i % 3]).expect("type"),
        json!({ "n": n }),
    );
    e.authority = AUTHORITIES[(i / 3) % 3].map(|a| AuthorityId::parse(a).expect("authority"));
    e.service = SERVICES[(i / 9) % 3].map(|s| ServiceKey::parse(s).expect("service"));
    if n.is_multiple_of(7) {
        e.sealed = Some(SealedSection {
            subject: "subject-1".into(),
            key_id: "k1".into(),
            alg: "A256GCM".into(),
            nonce: "bm9uY2Vub25jZQ==".into(),
            ciphertext: "c2VjcmV0LXBlcnNvbmFsLWRhdGE=".into(),
        });
    }
    e
}

/// Append `batches` appends of 1–3 events to `stream`; returns how many events.
async fn append_some(store: &AnyStore, stream: &str, first: u64, batches: u64) -> u64 {
    let mut n = first;
    for b in 0..batches {
        let events: Vec<NewEvent> = (0..=(b % 3)).map(|k| event(n + k)).collect();
        n += events.len() as u64;
        store
            .append(AppendRequest {
                stream: StreamId::parse(stream).expect("stream"),
                expected: ExpectedVersion::Any,
                events,
            })
            .await
            .expect("append");
    }
    n - first
}

/// `writers` concurrent writers, each appending `batches` times to streams of its own;
/// returns how many events they appended.
async fn append_concurrently(store: &AnyStore, writers: u64, batches: u64) -> u64 {
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                append_some(&store, &format!("application-w{w}"), w * 1000, batches).await
            })
        })
        .collect();
    let mut n = 0;
    for t in tasks {
        n += t.await.expect("writer");
    }
    n
}

async fn wait_published(handle: &RelayHandle, target: u64, within: Duration) {
    let mut published = handle.published();
    let reached = tokio::time::timeout(within, published.wait_for(|p| *p >= target))
        .await
        .is_ok_and(|r| r.is_ok());
    assert!(
        reached,
        "the relay published up to {} within {within:?}, expected {target}",
        *published.borrow()
    );
}

async fn wait_active(active: &mut watch::Receiver<bool>, within: Duration) {
    let became = tokio::time::timeout(within, active.wait_for(|a| *a)).await;
    assert!(
        matches!(became, Ok(Ok(_))),
        "no relay became active within {within:?}"
    );
}

/// Every message of the stream, in sequence order.
async fn stream_messages(js: &jetstream::Context, name: &str) -> Vec<StreamMessage> {
    let stream = js.get_stream(name).await.expect("stream exists");
    let state = stream.get_info().await.expect("stream info").state;
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        out.push(stream.get_raw_message(seq).await.expect("message"));
    }
    out
}

fn header<'a>(m: &'a StreamMessage, name: &str) -> &'a str {
    m.headers
        .get(name)
        .map(|v| v.as_str())
        .unwrap_or_else(|| panic!("message {} lacks header {name}", m.sequence))
}

async fn whole_log(store: &AnyStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let page = store.read_all(after, 5000).await.expect("read");
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// The stream holds every event of the log exactly once, in position order, each with the
/// scheme's subject, the stored bytes as payload and the documented headers — and nothing
/// else, in particular no personal data, in headers.
async fn assert_stream_mirrors_log(scope: &Scope, store: &AnyStore) {
    let log = whole_log(store).await;
    let messages = stream_messages(&scope.jetstream().await, &scope.stream).await;
    let positions: Vec<&str> = messages
        .iter()
        .map(|m| header(m, HEADER_POSITION))
        .collect();
    assert_eq!(
        messages.len(),
        log.len(),
        "the stream must hold each of the {} events once; it holds positions {positions:?}",
        log.len()
    );
    let allowed: HashSet<&str> = [
        "Nats-Msg-Id",
        "Nats-Expected-Last-Sequence",
        "Nats-Expected-Last-Msg-Id",
        HEADER_POSITION,
        HEADER_STREAM,
        HEADER_STREAM_VERSION,
        HEADER_LEAF_HASH,
    ]
    .into();
    for (m, e) in messages.iter().zip(&log) {
        let record = e.record().expect("record");
        assert_eq!(header(m, HEADER_POSITION), e.position.to_string(), "order");
        assert_eq!(
            m.payload.as_ref(),
            e.bytes.as_slice(),
            "payload of {}",
            e.position
        );
        assert_eq!(m.subject.as_str(), subject(&scope.prefix, &record));
        assert_eq!(header(m, "Nats-Msg-Id"), record.event_id.to_string());
        assert_eq!(header(m, HEADER_STREAM), record.stream_id.as_str());
        assert_eq!(
            header(m, HEADER_STREAM_VERSION),
            record.stream_version.to_string()
        );
        // A consumer can check the payload against the leaf hash it is given.
        assert_eq!(header(m, HEADER_LEAF_HASH), to_hex(&leaf_hash(&m.payload)));
        assert_eq!(header(m, HEADER_LEAF_HASH), to_hex(&e.leaf_hash));
        let names: HashSet<&str> = m.headers.iter().map(|(n, _)| n.as_ref()).collect();
        assert!(names.is_subset(&allowed), "unexpected headers {names:?}");
        if let Some(sealed) = &record.sealed {
            for (_, values) in m.headers.iter() {
                for v in values {
                    assert!(!v.as_str().contains(&sealed.ciphertext));
                    assert!(!v.as_str().contains(&sealed.subject));
                }
            }
        }
    }
}

async fn relay_position(store: &AnyStore, name: &str) -> Option<i64> {
    match store {
        AnyStore::Postgres(s) => {
            sqlx::query_scalar("SELECT position FROM relay_state WHERE name = $1")
                .bind(name)
                .fetch_optional(s.pool())
                .await
        }
        AnyStore::Sqlite(s) => {
            sqlx::query_scalar("SELECT position FROM relay_state WHERE name = ?1")
                .bind(name)
                .fetch_optional(s.pool())
                .await
        }
    }
    .expect("read relay_state")
}

async fn set_relay_position(store: &AnyStore, name: &str, position: i64) {
    let rows = match store {
        AnyStore::Postgres(s) => {
            sqlx::query("UPDATE relay_state SET position = $2 WHERE name = $1")
                .bind(name)
                .bind(position)
                .execute(s.pool())
                .await
                .map(|r| r.rows_affected())
        }
        AnyStore::Sqlite(s) => sqlx::query("UPDATE relay_state SET position = ?2 WHERE name = ?1")
            .bind(name)
            .bind(position)
            .execute(s.pool())
            .await
            .map(|r| r.rows_affected()),
    }
    .expect("write relay_state");
    assert_eq!(rows, 1, "relay_state has a row for the stream");
}

async fn wait_persisted(store: &AnyStore, name: &str, target: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = relay_position(store, name).await;
        if got == Some(target) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "relay_state says {got:?}, expected {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Concurrent appends.

async fn concurrent_appends_reach_the_stream_once_in_order(store: AnyStore) {
    let scope = Scope::new(&common::nats_url());
    let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
    let appended = append_concurrently(&store, 8, 25).await;
    let head = store.head().await.expect("head").position;
    assert_eq!(head, appended);
    wait_published(&handle, head, Duration::from_secs(30)).await;
    assert_stream_mirrors_log(&scope, &store).await;
    assert!(handle.is_active());
    wait_persisted(&store, &scope.stream, i64::try_from(head).expect("head")).await;

    // The stream is configured as the relay needs it.
    let info = scope
        .jetstream()
        .await
        .get_stream(&scope.stream)
        .await
        .expect("stream")
        .cached_info()
        .config
        .clone();
    assert_eq!(info.subjects, vec![scope.prefix.wildcard()]);
    assert_eq!(info.storage, stream::StorageType::File);
    assert_eq!(info.duplicate_window, Duration::from_secs(120));
    assert!(info.deny_delete && info.deny_purge);
    assert_eq!((info.max_messages, info.max_bytes), (-1, -1));
    assert_eq!(info.max_age, Duration::ZERO);
    handle.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_appends_reach_the_stream_once_in_order() {
    common::with_pg(|store, _| async move {
        concurrent_appends_reach_the_stream_once_in_order(AnyStore::Postgres(store)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_concurrent_appends_reach_the_stream_once_in_order() {
    common::with_sqlite(|store, _| async move {
        concurrent_appends_reach_the_stream_once_in_order(AnyStore::Sqlite(store)).await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 2. Restarts.

async fn a_restarted_relay_neither_repeats_nor_skips(store: AnyStore) {
    let scope = Scope::new(&common::nats_url());
    // A short duplicate window, so that the last part shows that resuming from the
    // stream, not de-duplication, is what prevents a second copy.
    let config = RelayConfig {
        duplicate_window: Duration::from_millis(500),
        ..scope.config()
    };
    let first = relay::spawn(store.clone(), config.clone()).expect("spawn");
    let mut n = append_some(&store, "consent-a", 0, 40).await;
    wait_published(&first, n, Duration::from_secs(20)).await;
    // Stop while appends go on: the next relay starts somewhere in the middle of them.
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { append_some(&store, "consent-b", 10_000, 60).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    first.stop().await;
    n += writer.await.expect("writer");
    n += append_some(&store, "consent-c", 20_000, 10).await;

    let second = relay::spawn(store.clone(), config.clone()).expect("spawn");
    wait_published(&second, n, Duration::from_secs(20)).await;
    second.stop().await;
    assert_stream_mirrors_log(&scope, &store).await;
    let persisted = relay_position(&store, &scope.stream).await;
    assert_eq!(persisted, Some(i64::try_from(n).expect("n")));

    // A crash between JetStream's acknowledgement and persisting the position: the stored
    // position lags far behind the stream, and the duplicate window has long passed.
    set_relay_position(&store, &scope.stream, 3).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let third = relay::spawn(store.clone(), config).expect("spawn");
    n += append_some(&store, "consent-d", 30_000, 15).await;
    wait_published(&third, n, Duration::from_secs(20)).await;
    assert_stream_mirrors_log(&scope, &store).await;
    wait_persisted(&store, &scope.stream, i64::try_from(n).expect("n")).await;
    third.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_restarted_relay_neither_repeats_nor_skips() {
    common::with_pg(|store, _| async move {
        a_restarted_relay_neither_repeats_nor_skips(AnyStore::Postgres(store)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_restarted_relay_neither_repeats_nor_skips() {
    common::with_sqlite(|store, _| async move {
        a_restarted_relay_neither_repeats_nor_skips(AnyStore::Sqlite(store)).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_recreated_and_refilled() {
    common::with_sqlite(|store, _| async move {
        let store = AnyStore::Sqlite(store);
        let scope = Scope::new(&common::nats_url());
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        let n = append_some(&store, "consent-a", 0, 20).await;
        wait_published(&handle, n, Duration::from_secs(20)).await;
        wait_persisted(&store, &scope.stream, i64::try_from(n).expect("n")).await;
        // The stream is gone (an operator deleted it, or NATS lost its storage) although
        // relay_state says all was acknowledged: the events must be published again.
        scope
            .jetstream()
            .await
            .delete_stream(&scope.stream)
            .await
            .expect("delete");
        let m = n + append_some(&store, "consent-b", 1000, 5).await;
        wait_published(&handle, m, Duration::from_secs(20)).await;
        assert_stream_mirrors_log(&scope, &store).await;
        handle.stop().await;
    })
    .await;
}

/// A stream whose `max_message_size` an operator set below the server's `max_payload` would
/// refuse records the log accepted (the append path follows `max_payload` only), and stop
/// the relay at the first of them for good. The relay owns that setting as it owns the
/// other limits: the record is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_limit_on_the_stream_does_not_stop_the_relay() {
    common::with_sqlite(|store, _| async move {
        let store = AnyStore::Sqlite(store);
        let scope = Scope::new(&common::nats_url());
        let js = scope.jetstream().await;
        js.create_stream(stream::Config {
            name: scope.stream.clone(),
            subjects: vec![scope.prefix.wildcard()],
            max_message_size: 2048,
            ..Default::default()
        })
        .await
        .expect("create");
        let mut large = event(1);
        large.data = json!({ "text": "x".repeat(4096) });
        store
            .append(AppendRequest {
                stream: StreamId::parse("consent-large").expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![event(0), large, event(2)],
            })
            .await
            .expect("a record the server's max_payload carries is accepted");
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        wait_published(&handle, 3, Duration::from_secs(20)).await;
        assert_eq!(*handle.blocked().borrow(), None);
        assert_stream_mirrors_log(&scope, &store).await;
        let info = js.get_stream(&scope.stream).await.expect("stream");
        assert_eq!(info.cached_info().config.max_message_size, -1);
        handle.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_message_stops_the_relay_rather_than_break_the_order() {
    common::with_sqlite(|store, _| async move {
        let store = AnyStore::Sqlite(store);
        let scope = Scope::new(&common::nats_url());
        let js = scope.jetstream().await;
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        let n = append_some(&store, "consent-a", 0, 10).await;
        wait_published(&handle, n, Duration::from_secs(20)).await;
        // Someone else publishes into the relay's stream: the sequence the relay expects is
        // taken, so JetStream refuses the relay's next message instead of storing it after
        // a stranger, and the relay, finding a message it did not write at the end of the
        // stream, stops rather than guess.
        js.publish(
            format!("{}.intruder._.Forged._", scope.prefix),
            "forged".into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored");
        append_some(&store, "consent-b", 1000, 10).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*handle.published().borrow(), n);
        let messages = stream_messages(&js, &scope.stream).await;
        assert_eq!(messages.len() as u64, n + 1);
        assert!(messages[messages.len() - 1]
            .headers
            .get(HEADER_POSITION)
            .is_none());
        handle.stop().await;
    })
    .await;
}

/// A new database pointed at a stream another log fed: the relay publishes nothing and
/// says why, instead of taking the stream's end for its own progress — which would skip
/// this log's first events and mix the two logs after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_another_log_is_refused() {
    log::install();
    let scope = Scope::new(&common::nats_url());
    let js = scope.jetstream().await;
    let (scope, js) = (&scope, &js);
    let old = 5;
    common::with_sqlite(|store, _| async move {
        let store = AnyStore::Sqlite(store);
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        let n = append_some(&store, "consent-a", 0, 3).await;
        wait_published(&handle, n, Duration::from_secs(20)).await;
        handle.stop().await;
    })
    .await;
    let before = stream_messages(js, &scope.stream).await.len();
    assert!(before >= old, "the first log was relayed");

    // A fresh database, shorter and then longer than the stream: neither is relayed.
    common::with_sqlite(|store, _| async move {
        let store = AnyStore::Sqlite(store);
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        append_some(&store, "consent-b", 100, 1).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        append_some(&store, "consent-b", 200, 10).await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*handle.published().borrow(), 0);
        assert_eq!(stream_messages(js, &scope.stream).await.len(), before);
        assert!(
            log::lines(&scope.stream)
                .iter()
                .any(|(_, m)| m.contains("of another log")),
            "the relay says why it stopped"
        );
        handle.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 3. A NATS outage.

/// What the relay logged, per stream, as (level, message): installed once for the whole
/// test binary, since a global subscriber can be set only once; each test reads only the
/// lines of its own stream.
mod log {
    use std::collections::HashMap;
    use std::fmt::Debug;
    use std::sync::{Mutex, OnceLock};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Level, Metadata, Subscriber};

    /// Per stream, each line's level and message.
    type Lines = HashMap<String, Vec<(Level, String)>>;

    static LINES: Mutex<Option<Lines>> = Mutex::new(None);

    pub fn install() {
        static ONCE: OnceLock<()> = OnceLock::new();
        ONCE.get_or_init(|| {
            let _ = tracing::subscriber::set_global_default(Recorder);
        });
    }

    pub fn lines(stream: &str) -> Vec<(Level, String)> {
        LINES
            .lock()
            .expect("log lock")
            .as_ref()
            .and_then(|m| m.get(stream).cloned())
            .unwrap_or_default()
    }

    struct Recorder;

    /// The event's stream, and its message followed by its `error` field, if any.
    #[derive(Default)]
    struct Fields {
        stream: Option<String>,
        message: String,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "stream" => self.stream = Some(value.to_owned()),
                "message" => self.message.insert_str(0, value),
                "error" => self.message.push_str(&format!(" (error: {value})")),
                _ => {}
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.record_str(field, &format!("{value:?}"));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, metadata: &Metadata<'_>) -> bool {
            metadata.target().starts_with("amtsbuch_infra")
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if let Some(stream) = fields.stream {
                let mut lines = LINES.lock().expect("log lock");
                lines
                    .get_or_insert_with(HashMap::new)
                    .entry(stream)
                    .or_default()
                    .push((*event.metadata().level(), fields.message));
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_loses_and_reorders_nothing() {
    log::install();
    common::with_pg(|store, _| async move {
        let store = AnyStore::Postgres(store);
        let mut server = common::NatsServer::start().await;
        let url = server.url();
        let scope = Scope::new(&url);
        let config = RelayConfig {
            ack_timeout: Duration::from_secs(1),
            ..scope.config()
        };
        let handle = relay::spawn(store.clone(), config).expect("spawn");

        // A steady stream of appends during the whole test, before, during and after the
        // outage.
        let writer = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut n = 0;
                for round in 0..300u64 {
                    n += append_some(
                        &store,
                        &format!("application-{}", round % 5),
                        round * 100,
                        4,
                    )
                    .await;
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                n
            })
        };
        wait_published(&handle, 60, Duration::from_secs(20)).await;

        // Crash NATS while publishes are in flight; appends go on, unhindered.
        server.kill();
        let started = Instant::now();
        append_some(&store, "consent-outage", 50_000, 20).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "appends must not wait for NATS"
        );
        // Long enough for several attempts to fail (one second each).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let published_early = *handle.published().borrow();
        tokio::time::sleep(Duration::from_millis(3500)).await;
        let published_late = *handle.published().borrow();
        assert_eq!(
            published_early, published_late,
            "nothing is published without NATS"
        );
        assert!(!writer.is_finished(), "appends must still be going on");

        server.restart().await;
        let appended = writer.await.expect("writer");
        let head = store.head().await.expect("head").position;
        assert!(head >= appended && published_late < head);
        wait_published(&handle, head, Duration::from_secs(60)).await;
        assert_stream_mirrors_log(&scope, &store).await;
        handle.stop().await;

        // One warning for the outage and one line for the recovery, however many attempts
        // failed in between.
        let lines = log::lines(&scope.stream);
        let count = |level: tracing::Level| lines.iter().filter(|(l, _)| *l == level).count();
        assert_eq!(count(tracing::Level::WARN), 1, "{lines:#?}");
        assert_eq!(count(tracing::Level::ERROR), 0, "{lines:#?}");
        assert!(
            count(tracing::Level::DEBUG) >= 1,
            "several attempts failed: {lines:#?}"
        );
        assert!(
            lines
                .iter()
                .any(|(l, m)| *l == tracing::Level::INFO && m.contains("publishing again")),
            "{lines:#?}"
        );
        // Delete the stream while the private server still runs.
        drop(scope);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 4. Two relays on one database.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_one_database_take_turns() {
    log::install();
    common::with_pg(|a, options| async move {
        let b = PgStore::connect_with(options)
            .await
            .expect("second process");
        let (a, b) = (AnyStore::Postgres(a), AnyStore::Postgres(b));
        let scope = Scope::new(&common::nats_url());
        let first = relay::spawn(a.clone(), scope.config()).expect("spawn a");
        wait_active(&mut first.active(), Duration::from_secs(10)).await;
        let second = relay::spawn(b.clone(), scope.config()).expect("spawn b");

        let mut n = append_some(&a, "consent-a", 0, 30).await;
        n += append_some(&b, "consent-b", 1000, 30).await;
        wait_published(&first, n, Duration::from_secs(20)).await;
        // Give the standby every chance to misbehave.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(first.is_active());
        assert!(!second.is_active(), "only one relay may be active");
        assert_eq!(
            *second.published().borrow(),
            0,
            "the standby must not publish"
        );

        // The active process goes away; the standby takes over where the stream ends.
        first.stop().await;
        n += append_some(&b, "consent-c", 2000, 30).await;
        wait_active(&mut second.active(), Duration::from_secs(10)).await;
        wait_published(&second, n, Duration::from_secs(20)).await;
        assert_stream_mirrors_log(&scope, &b).await;

        // The connection holding the lock breaks (here: an administrator ends it). The
        // relay notices, stands by, and — nobody else being there — leads again.
        let AnyStore::Postgres(pg) = &b else {
            unreachable!("b is PostgreSQL")
        };
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND objid::int8 = (hashtext(current_schema() || '.amtsbuch_relay.' || $1)::int8 & 4294967295)",
        )
        .bind(&scope.stream)
        .fetch_all(pg.pool())
        .await
        .expect("terminate the lock's connection");
        assert_eq!(ended, [true], "exactly one connection held the relay lock");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !log::lines(&scope.stream)
            .iter()
            .any(|(_, m)| m.contains("lost the relay lock"))
        {
            assert!(Instant::now() < deadline, "the relay did not notice it lost its lock");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += append_some(&b, "consent-d", 3000, 10).await;
        wait_published(&second, n, Duration::from_secs(20)).await;
        assert!(second.is_active());
        assert_stream_mirrors_log(&scope, &b).await;
        second.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// 5. Consumers for Fachverfahren.

/// The positions a durable consumer delivers, acknowledging each, until `count` arrived and
/// nothing more comes for a moment.
async fn consume(js: &jetstream::Context, stream: &str, name: &str, count: usize) -> Vec<u64> {
    let consumer: PullConsumer = js
        .get_stream(stream)
        .await
        .expect("stream")
        .get_consumer(name)
        .await
        .expect("consumer");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(200)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .expect("fetch");
        let before = got.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let headers = message.headers.as_ref().expect("headers");
            let position = headers.get(HEADER_POSITION).expect("position").as_str();
            got.push(position.parse().expect("number"));
            message.ack().await.expect("ack");
        }
        if got.len() >= count && got.len() == before {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "consumer {name} got {} of {count}",
            got.len()
        );
    }
}

/// Positions of the log's events for which `keep(authority, service)` holds.
async fn positions_where(
    store: &AnyStore,
    after: u64,
    keep: impl Fn(Option<&str>, Option<&str>) -> bool,
) -> Vec<u64> {
    whole_log(store)
        .await
        .iter()
        .filter(|e| e.position > after)
        .filter(|e| {
            let r = e.record().expect("record");
            keep(
                r.authority.as_ref().map(AuthorityId::as_str),
                r.service.as_ref().map(ServiceKey::as_str),
            )
        })
        .map(|e| e.position)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fachverfahren_consumers_get_exactly_their_events_in_order() {
    common::with_pg(|store, _| async move {
        let store = AnyStore::Postgres(store);
        let scope = Scope::new(&common::nats_url());
        let js = scope.jetstream().await;
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        append_concurrently(&store, 4, 30).await;
        let head = store.head().await.expect("head").position;
        wait_published(&handle, head, Duration::from_secs(20)).await;

        let meissen = AuthorityId::parse("lra-meissen").expect("authority");
        let s1 = ServiceKey::parse("99108001000000").expect("service");
        let s2 = ServiceKey::parse("99108002000000").expect("service");

        // One service: every server version filters it.
        let name = ConsumerName::parse("fv-meissen-s1").expect("name");
        let filters = fachverfahren_filters(&scope.prefix, &meissen, std::slice::from_ref(&s1));
        let info = relay::ensure_consumer(&js, &scope.stream, &name, &filters, DeliverFrom::All)
            .await
            .expect("consumer");
        assert_eq!(info.config.durable_name.as_deref(), Some("fv-meissen-s1"));
        assert_eq!(
            info.config.ack_policy,
            jetstream::consumer::AckPolicy::Explicit
        );
        let want = positions_where(&store, 0, |a, s| {
            a == Some("lra-meissen") && s == Some("99108001000000")
        })
        .await;
        assert!(!want.is_empty());
        let first = consume(&js, &scope.stream, name.as_str(), want.len()).await;
        assert_eq!(first, want);

        // Starting after a position maps it to the right stream sequence.
        let middle = head / 2;
        let name = ConsumerName::parse("fv-bautzen-after").expect("name");
        let bautzen = AuthorityId::parse("lra-bautzen").expect("authority");
        let filter = vec![authority_filter(&scope.prefix, &bautzen)];
        relay::ensure_consumer(
            &js,
            &scope.stream,
            &name,
            &filter,
            DeliverFrom::After(middle),
        )
        .await
        .expect("consumer");
        let want = positions_where(&store, middle, |a, _| a == Some("lra-bautzen")).await;
        assert_eq!(
            consume(&js, &scope.stream, name.as_str(), want.len()).await,
            want
        );

        // Only new events.
        let name = ConsumerName::parse("fv-meissen-new").expect("name");
        relay::ensure_consumer(&js, &scope.stream, &name, &filters, DeliverFrom::New)
            .await
            .expect("consumer");
        append_concurrently(&store, 2, 20).await;
        let head2 = store.head().await.expect("head").position;
        wait_published(&handle, head2, Duration::from_secs(20)).await;
        let want = positions_where(&store, head, |a, s| {
            a == Some("lra-meissen") && s == Some("99108001000000")
        })
        .await;
        assert_eq!(
            consume(&js, &scope.stream, name.as_str(), want.len()).await,
            want
        );

        // The Fachverfahren now handles every service of its authority: its consumer gets
        // the wider filter and goes on from where it was, whatever start is asked for.
        let name = ConsumerName::parse("fv-meissen-s1").expect("name");
        let wider = vec![authority_filter(&scope.prefix, &meissen)];
        let info = relay::ensure_consumer(&js, &scope.stream, &name, &wider, DeliverFrom::New)
            .await
            .expect("updated consumer");
        assert_eq!(info.config.filter_subject, wider[0]);
        let last_seen = *first.last().expect("some");
        let want = positions_where(&store, last_seen, |a, _| a == Some("lra-meissen")).await;
        assert_eq!(
            consume(&js, &scope.stream, name.as_str(), want.len()).await,
            want
        );

        // Several services in one consumer need NATS 2.10; older servers would silently
        // deliver everything, so they are refused.
        let both = fachverfahren_filters(&scope.prefix, &meissen, &[s1.clone(), s2.clone()]);
        let name = ConsumerName::parse("fv-meissen-both").expect("name");
        let version = js.client().server_info().version;
        let supports = {
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 10)
        };
        let result =
            relay::ensure_consumer(&js, &scope.stream, &name, &both, DeliverFrom::All).await;
        if supports {
            result.expect("consumer with two filters");
            let want = positions_where(&store, 0, |a, s| {
                a == Some("lra-meissen") && matches!(s, Some("99108001000000" | "99108002000000"))
            })
            .await;
            assert_eq!(
                consume(&js, &scope.stream, name.as_str(), want.len()).await,
                want
            );
        } else {
            assert!(
                matches!(&result, Err(RelayError::Unsupported(m)) if m.contains("2.10")),
                "{result:?}"
            );
            let stream = js.get_stream(&scope.stream).await.expect("stream");
            assert!(
                stream.consumer_info(name.as_str()).await.is_err(),
                "nothing was created"
            );
        }

        // Bad names and filters never reach the server.
        assert!(ConsumerName::parse("fv.meissen").is_err());
        let name = ConsumerName::parse("fv-x").expect("name");
        for bad in [vec![], vec!["a..b".to_owned()], vec!["a.>.b".to_owned()]] {
            assert!(matches!(
                relay::ensure_consumer(&js, &scope.stream, &name, &bad, DeliverFrom::All).await,
                Err(RelayError::Filter(_))
            ));
        }
        handle.stop().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// The stream's configuration.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_is_updated_or_clearly_refused() {
    let scope = Scope::new(&common::nats_url());
    let js = scope.jetstream().await;
    let config = scope.config();

    // Updatable settings are brought in line.
    js.create_stream(stream::Config {
        name: scope.stream.clone(),
        subjects: vec![format!("{}.old.>", scope.prefix)],
        duplicate_window: Duration::from_secs(10),
        max_messages: 1000,
        ..Default::default()
    })
    .await
    .expect("create");
    let stream = relay::ensure_stream(&js, &config).await.expect("updated");
    let c = &stream.cached_info().config;
    assert_eq!(c.subjects, vec![scope.prefix.wildcard()]);
    assert_eq!(c.duplicate_window, config.duplicate_window);
    assert_eq!(c.max_messages, -1);
    assert!(c.deny_delete && c.deny_purge);

    // The storage type cannot be changed: refused, and the stream is left alone.
    js.delete_stream(&scope.stream).await.expect("delete");
    js.create_stream(stream::Config {
        name: scope.stream.clone(),
        subjects: vec![scope.prefix.wildcard()],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .expect("create");
    let refused = relay::ensure_stream(&js, &config).await;
    assert!(
        matches!(&refused, Err(RelayError::Stream { reason, .. }) if reason.contains("file storage")),
        "{refused:?}"
    );
    let kept = js.get_stream(&scope.stream).await.expect("stream");
    assert_eq!(
        kept.cached_info().config.storage,
        stream::StorageType::Memory
    );
}

// ---------------------------------------------------------------------------------------
// Latency, gated: `AMTSBUCH_RELAY_BENCH=1` (release build recommended).

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_latency_at_5000_events_per_second() {
    if std::env::var("AMTSBUCH_RELAY_BENCH").is_err() {
        return;
    }
    common::with_pg(|store, _| async move {
        let store = AnyStore::Postgres(store);
        let scope = Scope::new(&common::nats_url());
        let client = async_nats::connect(&scope.url).await.expect("nats");
        let mut live = client
            .subscribe(scope.prefix.wildcard())
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let handle = relay::spawn(store.clone(), scope.config()).expect("spawn");
        // Warm up: the stream exists and the relay follows the log before timing starts.
        let warm = append_some(&store, "warmup-1", 0, 1).await;
        wait_published(&handle, warm, Duration::from_secs(10)).await;
        for _ in 0..warm {
            live.next().await.expect("warm-up message");
        }

        // 5,000 events/s for 6 s as 50 appends of one event every 10 ms (one per stream).
        let rate_per_tick = 50u64;
        let ticks = 600u64;
        let sent = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let producer = {
            let (store, sent) = (store.clone(), sent.clone());
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(Duration::from_millis(10));
                let mut tasks = Vec::new();
                for tick in 0..ticks {
                    interval.tick().await;
                    for k in 0..rate_per_tick {
                        let (store, sent) = (store.clone(), sent.clone());
                        tasks.push(tokio::spawn(async move {
                            let started = Instant::now();
                            let outcome = store
                                .append(AppendRequest {
                                    stream: StreamId::parse(&format!("bench-{k}")).expect("stream"),
                                    expected: ExpectedVersion::Any,
                                    events: vec![event(tick * rate_per_tick + k)],
                                })
                                .await
                                .expect("append");
                            sent.lock()
                                .expect("lock")
                                .insert(outcome.first_position, (started, Instant::now()));
                        }));
                    }
                }
                for t in tasks {
                    t.await.expect("append task");
                }
            })
        };
        let total = usize::try_from(ticks * rate_per_tick).expect("small");
        let mut latencies = Vec::with_capacity(total);
        let mut appends = Vec::with_capacity(total);
        let mut relayed = Vec::with_capacity(total);
        let started = Instant::now();
        while latencies.len() < total {
            let message = tokio::time::timeout(Duration::from_secs(30), live.next())
                .await
                .expect("messages keep coming")
                .expect("subscription open");
            let arrived = Instant::now();
            let position: u64 = message
                .headers
                .as_ref()
                .and_then(|h| h.get(HEADER_POSITION))
                .expect("position")
                .as_str()
                .parse()
                .expect("number");
            // The append may not have returned yet; then its start is not known yet either.
            let (begun, returned) = loop {
                if let Some(t) = sent.lock().expect("lock").get(&position) {
                    break *t;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            latencies.push(arrived.saturating_duration_since(begun));
            appends.push(returned.saturating_duration_since(begun));
            // After the append returned: a lower bound of the relay's own share.
            relayed.push(arrived.saturating_duration_since(returned));
        }
        let elapsed = started.elapsed();
        producer.await.expect("producer");
        fn pct(v: &mut [Duration], p: usize) -> Duration {
            v.sort();
            v[(v.len() * p / 100).min(v.len() - 1)]
        }
        println!(
            "relay: {total} events in {elapsed:?} ({:.0}/s); append→NATS p50 {:?} p90 {:?} p99 {:?} max {:?}; \
             the append itself p50 {:?} p99 {:?}; append returned→NATS p50 {:?} p99 {:?}",
            total as f64 / elapsed.as_secs_f64(),
            pct(&mut latencies, 50),
            pct(&mut latencies, 90),
            pct(&mut latencies, 99),
            pct(&mut latencies, 100),
            pct(&mut appends, 50),
            pct(&mut appends, 99),
            pct(&mut relayed, 50),
            pct(&mut relayed, 99),
        );
        handle.stop().await;

        // Catch-up throughput: a second relay feeds a new stream the whole log.
        let head = store.head().await.expect("head").position;
        let fresh = Scope::new(&common::nats_url());
        let started = Instant::now();
        let catch_up = relay::spawn(store.clone(), fresh.config()).expect("spawn");
        wait_published(&catch_up, head, Duration::from_secs(120)).await;
        let took = started.elapsed();
        println!(
            "relay catch-up: {head} events in {took:?} ({:.0}/s)",
            head as f64 / took.as_secs_f64()
        );
        catch_up.stop().await;

        let p99 = pct(&mut latencies, 99);
        assert!(p99 <= Duration::from_millis(50), "p99 {p99:?} above 50 ms");
    })
    .await;
}
