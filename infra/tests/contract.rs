//! The event-store contract: written once, run against every adapter.
//!
//! Each `fn` below states one guarantee of `EventStore` for any implementation; the
//! test kit's `on_both_adapters!` at the bottom runs every one of them on PostgreSQL and
//! on SQLite, each through the `AnyStore` the service uses. A new adapter passes when it
//! is added to the kit's `Adapter` and all of them pass.

use amtsbuch_testkit as common;

use std::collections::HashMap;
use std::time::Duration;

use amtsbuch_domain::jcs;
use amtsbuch_domain::{
    AppendError, AppendRequest, Category, EventType, ExpectedVersion, NewEvent, StreamId,
};
use amtsbuch_infra::{Direction, EventStore, StoreError, Subscription};
use chrono::TimeZone;
use serde_json::json;

fn stream(s: &str) -> StreamId {
    StreamId::parse(s).expect("stream id")
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(EventType::parse("Noted").expect("type"), json!({ "n": n }))
}

fn append_req(s: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream(s),
        expected,
        events,
    }
}

async fn append_one<S: EventStore>(store: &S, s: &str, n: u64) -> u64 {
    store
        .append(append_req(s, ExpectedVersion::Any, vec![event(n)]))
        .await
        .expect("append")
        .last_position
}

fn versions(events: &[amtsbuch_infra::RecordedEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.record().expect("record").stream_version)
        .collect()
}

async fn appends_and_reads_a_stream<S: EventStore>(store: S) {
    let out = store
        .append(append_req(
            "order-1",
            ExpectedVersion::NoStream,
            vec![event(1), event(2), event(3)],
        ))
        .await
        .expect("append");
    assert_eq!(
        (
            out.first_position,
            out.last_position,
            out.next_version,
            out.duplicate
        ),
        (1, 3, 3, false)
    );

    let forwards = store
        .read_stream(&stream("order-1"), 1, Direction::Forwards, 10)
        .await
        .expect("read");
    assert_eq!(versions(&forwards), vec![1, 2, 3]);
    assert_eq!(
        forwards.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let record = forwards[1].record().expect("record");
    assert_eq!(record.data, json!({ "n": 2 }));
    assert_eq!(record.stream_id, stream("order-1"));

    let from_two = store
        .read_stream(&stream("order-1"), 2, Direction::Forwards, 1)
        .await
        .expect("read");
    assert_eq!(versions(&from_two), vec![2]);
    let backwards = store
        .read_stream(&stream("order-1"), u64::MAX, Direction::Backwards, 2)
        .await
        .expect("read");
    assert_eq!(versions(&backwards), vec![3, 2]);
    let missing = store
        .read_stream(&stream("order-2"), 1, Direction::Forwards, 10)
        .await
        .expect("read");
    assert!(missing.is_empty());
}

async fn checks_expected_versions<S: EventStore>(store: S) {
    let s = "cart-7";
    store
        .append(append_req(s, ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .expect("first");
    let conflict = store
        .append(append_req(s, ExpectedVersion::NoStream, vec![event(2)]))
        .await;
    assert_eq!(
        conflict,
        Err(StoreError::Append(AppendError::WrongExpectedVersion {
            stream: stream(s),
            expected: ExpectedVersion::NoStream,
            actual: 1
        }))
    );
    let stale = store
        .append(append_req(s, ExpectedVersion::Exact(0), vec![event(2)]))
        .await;
    assert!(matches!(
        stale,
        Err(StoreError::Append(AppendError::WrongExpectedVersion {
            actual: 1,
            ..
        }))
    ));
    let ahead = store
        .append(append_req(s, ExpectedVersion::Exact(5), vec![event(2)]))
        .await;
    assert!(matches!(
        ahead,
        Err(StoreError::Append(AppendError::WrongExpectedVersion {
            actual: 1,
            ..
        }))
    ));
    let ok = store
        .append(append_req(s, ExpectedVersion::Exact(1), vec![event(2)]))
        .await
        .expect("exact");
    assert_eq!(ok.next_version, 2);
    let any = store
        .append(append_req(s, ExpectedVersion::Any, vec![event(3)]))
        .await
        .expect("any");
    assert_eq!(any.next_version, 3);
    // Refused appends left nothing behind.
    assert_eq!(store.head().await.expect("head").position, 3);
    assert_eq!(
        versions(
            &store
                .read_stream(&stream(s), 1, Direction::Forwards, 10)
                .await
                .expect("read")
        ),
        vec![1, 2, 3]
    );
}

async fn retries_are_idempotent<S: EventStore>(store: S) {
    append_one(&store, "other-1", 0).await;
    let events = vec![event(1), event(2)];
    let first = store
        .append(append_req(
            "doc-1",
            ExpectedVersion::NoStream,
            events.clone(),
        ))
        .await
        .expect("first");
    append_one(&store, "other-1", 9).await;
    // The retry's expected version no longer holds, yet it returns the original positions.
    let retry = store
        .append(append_req(
            "doc-1",
            ExpectedVersion::NoStream,
            events.clone(),
        ))
        .await
        .expect("retry");
    assert_eq!(retry.first_position, first.first_position);
    assert_eq!(retry.last_position, first.last_position);
    assert_eq!(retry.next_version, 2);
    assert!(retry.duplicate);
    assert_eq!(store.head().await.expect("head").position, 4);

    let mut changed = events[0].clone();
    changed.data = json!({ "n": 100 });
    let conflict = store
        .append(append_req("doc-1", ExpectedVersion::Any, vec![changed]))
        .await;
    assert_eq!(
        conflict,
        Err(StoreError::Append(AppendError::IdempotencyConflict {
            event_id: events[0].event_id
        }))
    );
    let elsewhere = store
        .append(append_req(
            "doc-2",
            ExpectedVersion::Any,
            vec![events[1].clone()],
        ))
        .await;
    assert!(matches!(
        elsewhere,
        Err(StoreError::Append(AppendError::IdempotencyConflict { .. }))
    ));
    let partly = store
        .append(append_req(
            "doc-1",
            ExpectedVersion::Any,
            vec![events[0].clone(), event(3)],
        ))
        .await;
    assert!(matches!(
        partly,
        Err(StoreError::Append(AppendError::IdempotencyConflict { .. }))
    ));
    assert_eq!(store.head().await.expect("head").position, 4);
}

async fn concurrent_retries_write_once<S: EventStore>(store: S) {
    let events = vec![event(1)];
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let events = events.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append(append_req("dup-1", ExpectedVersion::Any, events))
                .await
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        positions.push(t.await.expect("task").expect("append").first_position);
    }
    assert!(positions.iter().all(|p| *p == 1), "{positions:?}");
    assert_eq!(store.head().await.expect("head").position, 1);
}

async fn reads_the_global_log_in_pages<S: EventStore>(store: S) {
    for i in 0..25 {
        append_one(&store, &format!("page-{}", i % 4), i).await;
    }
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10).await.expect("page");
        assert!(page.len() <= 10);
        let Some(last) = page.last() else { break };
        after = last.position;
        seen.extend(page.iter().map(|e| e.position));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    assert!(store.read_all(25, 10).await.expect("end").is_empty());
}

async fn reads_a_category<S: EventStore>(store: S) {
    append_one(&store, "consent-a", 1).await;
    append_one(&store, "payment-a", 2).await;
    append_one(&store, "consent-b", 3).await;
    append_one(&store, "consentx-c", 4).await;
    let category = Category::parse("consent").expect("category");
    let events = store.read_category(&category, 0, 10).await.expect("read");
    assert_eq!(
        events.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![1, 3]
    );
    let later = store.read_category(&category, 1, 10).await.expect("read");
    assert_eq!(
        later.iter().map(|e| e.position).collect::<Vec<_>>(),
        vec![3]
    );
}

async fn finds_events_by_id<S: EventStore>(store: S) {
    let e = event(1);
    let id = e.event_id;
    store
        .append(append_req("find-1", ExpectedVersion::Any, vec![e]))
        .await
        .expect("append");
    let found = store
        .event_by_id(id)
        .await
        .expect("lookup")
        .expect("present");
    assert_eq!(found.record().expect("record").event_id, id);
    assert_eq!(
        store
            .event_by_id(uuid::Uuid::now_v7())
            .await
            .expect("lookup"),
        None
    );
}

async fn keeps_metadata_and_canonical_bytes<S: EventStore>(store: S) {
    let occurred = chrono::Utc
        .with_ymd_and_hms(2026, 3, 1, 8, 30, 0)
        .single()
        .expect("date");
    let correlation = uuid::Uuid::now_v7();
    let mut e = NewEvent::new(
        EventType::parse("ApplicationSubmitted").expect("type"),
        json!({ "z": [1, 2.5, "ü"], "a": { "c": null, "b": true }, "€": 1e21 }),
    );
    e.tenant = Some("14612000".into());
    e.actor = Some("account-0190".into());
    e.correlation_id = Some(correlation);
    e.causation_id = Some(correlation);
    e.occurred_at = Some(occurred);
    e.schema_version = 3;
    store
        .append(append_req("application-1", ExpectedVersion::Any, vec![e]))
        .await
        .expect("append");
    let stored = store.read_all(0, 1).await.expect("read").remove(0);
    let r = stored.record().expect("record");
    assert_eq!(r.tenant.as_deref(), Some("14612000"));
    assert_eq!(r.actor.as_deref(), Some("account-0190"));
    assert_eq!(
        (r.correlation_id, r.causation_id),
        (Some(correlation), Some(correlation))
    );
    assert_eq!(r.occurred_at, occurred);
    assert_eq!(r.schema_version, 3);
    // What is stored is canonical JSON, byte for byte.
    let reparsed: serde_json::Value = serde_json::from_slice(&stored.bytes).expect("json");
    assert_eq!(
        jcs::canonicalize(&reparsed).expect("canonical"),
        stored.bytes
    );
}

async fn chains_every_event<S: EventStore>(store: S) {
    for i in 0..20 {
        let n = if i % 3 == 0 { 2 } else { 1 };
        store
            .append(append_req(
                &format!("chain-{}", i % 5),
                ExpectedVersion::Any,
                (0..n).map(|k| event(i * 10 + k)).collect(),
            ))
            .await
            .expect("append");
    }
    let verifier = common::verified_chain(&store).await;
    let head = store.head().await.expect("head");
    assert_eq!(head.position, verifier.count());
    assert_eq!(head.chain_hash, verifier.head());
    assert_eq!(head.position, 27);
}

async fn refuses_invalid_appends_without_change<S: EventStore>(store: S) {
    append_one(&store, "valid-1", 1).await;
    let empty = store
        .append(append_req("valid-1", ExpectedVersion::Any, vec![]))
        .await;
    assert!(matches!(
        empty,
        Err(StoreError::Append(AppendError::Invalid(_)))
    ));
    let mut huge = event(1);
    huge.data = json!({ "n": 18014398509481984u64 });
    let not_ijson = store
        .append(append_req(
            "valid-1",
            ExpectedVersion::Any,
            vec![event(2), huge],
        ))
        .await;
    assert!(matches!(
        not_ijson,
        Err(StoreError::Append(AppendError::Invalid(_)))
    ));
    let e = event(3);
    let twice = store
        .append(append_req(
            "valid-1",
            ExpectedVersion::Any,
            vec![e.clone(), e],
        ))
        .await;
    assert!(matches!(
        twice,
        Err(StoreError::Append(AppendError::Invalid(_)))
    ));
    assert_eq!(store.head().await.expect("head").position, 1);
}

async fn subscribes_with_catch_up_then_live<S: EventStore>(store: S) {
    for i in 0..5 {
        append_one(&store, "sub-1", i).await;
    }
    let mut sub = Subscription::start(store.clone(), 2);
    for expected in 3..=5 {
        let e = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("catch-up")
            .expect("open")
            .expect("event");
        assert_eq!(e.position, expected);
    }
    for i in 5..8 {
        append_one(&store, "sub-2", i).await;
    }
    for expected in 6..=8 {
        let e = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("live")
            .expect("open")
            .expect("event");
        assert_eq!(e.position, expected);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), sub.next())
            .await
            .is_err(),
        "nothing more"
    );
}

/// Dozens of concurrent writers and a subscriber running alongside them: the subscriber must
/// see every committed event exactly once, in position order, and each stream's versions
/// in order — the property that breaks in stores that take positions before commit.
async fn concurrent_writers_and_a_subscriber_see_everything_once<S: EventStore>(store: S) {
    const WRITERS: u64 = 48;
    const PER_WRITER: u64 = 40;
    let total = WRITERS * PER_WRITER;
    let mut sub = Subscription::start(store.clone(), 0);
    let reader = tokio::spawn(async move {
        let mut next = 1;
        let mut stream_versions: HashMap<String, u64> = HashMap::new();
        while next <= total {
            let e = tokio::time::timeout(Duration::from_secs(30), sub.next())
                .await
                .expect("subscriber stalled")
                .expect("subscription open")
                .expect("event");
            assert_eq!(e.position, next, "gap or duplicate in the subscription");
            let r = e.record().expect("record");
            let v = stream_versions
                .entry(r.stream_id.as_str().to_owned())
                .or_insert(0);
            assert_eq!(r.stream_version, *v + 1, "stream versions out of order");
            *v += 1;
            next += 1;
        }
        next - 1
    });
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = format!("conc-{w}");
            for i in 0..PER_WRITER {
                // Half the writers guard with exact versions, half with multi-event `any`.
                let expected = if w % 2 == 0 {
                    ExpectedVersion::Exact(i)
                } else {
                    ExpectedVersion::Any
                };
                store
                    .append(append_req(&s, expected, vec![event(i)]))
                    .await
                    .expect("append");
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(reader.await.expect("reader"), total);
    assert_eq!(store.head().await.expect("head").position, total);
}

/// The log's tail — the one reader of the newest events that a process's followers share —
/// hands out exactly the log's rows wherever a follower stands: behind its window (read
/// from the store), inside it (from memory), at its tip (nothing until it moves, which its
/// watch announces), and never more than asked for.
async fn the_tail_hands_out_the_logs_own_rows<S: EventStore>(store: S) {
    for i in 0..5 {
        append_one(&store, "tail-1", i).await;
    }
    // It starts at the head: what is in the log now lies behind its window.
    let tail = store.tail().expect("the adapter has a tail");
    let mut moved = tail.watch();
    for i in 5..40 {
        append_one(&store, "tail-2", i).await;
    }
    tokio::time::timeout(Duration::from_secs(10), moved.wait_for(|tip| *tip >= 40))
        .await
        .expect("the tail follows appends")
        .expect("the store is open");
    let log = store.read_all(0, 100).await.expect("log");
    assert_eq!(log.len(), 40);
    for after in [0_u64, 3, 5, 6, 20, 39] {
        let read: Vec<_> = tail
            .read(after, 100)
            .await
            .expect("read")
            .into_iter()
            .map(|e| (*e).clone())
            .collect();
        assert_eq!(read, log[after as usize..], "after {after}");
    }
    let some = tail.read(10, 7).await.expect("read");
    assert_eq!(
        some.iter().map(|e| e.position).collect::<Vec<_>>(),
        (11..=17).collect::<Vec<_>>()
    );
    assert!(
        tail.read(40, 100).await.expect("read").is_empty(),
        "nothing after the tip"
    );
    let stats = tail.stats();
    assert!(stats.batches >= 1, "{stats:?}");
    assert!(stats.from_store >= 1, "reads behind the window: {stats:?}");
    assert!(stats.from_window >= 5, "reads inside the window: {stats:?}");
    // A follower ahead of the tip (it read the store itself) is answered from the store.
    assert!(tail.read(1000, 10).await.expect("read").is_empty());
}

/// A multi-stream append decides each request on its own, in order, and commits the
/// accepted ones together at consecutive positions in request order; a refused request
/// writes nothing and does not hold back the others.
async fn appends_to_many_streams_at_once<S: EventStore>(store: S) {
    append_one(&store, "many-a", 0).await;
    let requests = vec![
        append_req(
            "many-a",
            ExpectedVersion::Exact(1),
            vec![event(1), event(2)],
        ),
        // Stale: many-a is at version 1.
        append_req("many-b", ExpectedVersion::Exact(3), vec![event(3)]),
        append_req("many-c", ExpectedVersion::NoStream, vec![event(4)]),
        // Sees the version the first request left.
        append_req("many-a", ExpectedVersion::Exact(3), vec![event(5)]),
        // Invalid on its own: refused alone.
        append_req("many-d", ExpectedVersion::Any, vec![]),
    ];
    let plans = store
        .append_many(requests.clone())
        .await
        .expect("append many");
    assert_eq!(plans.len(), 5);
    let ok = |i: usize| plans[i].clone().expect("accepted");
    assert_eq!(
        (
            ok(0).first_position,
            ok(0).last_position,
            ok(0).next_version
        ),
        (2, 3, 3)
    );
    assert_eq!(
        plans[1],
        Err(AppendError::WrongExpectedVersion {
            stream: stream("many-b"),
            expected: ExpectedVersion::Exact(3),
            actual: 0
        })
    );
    assert_eq!((ok(2).first_position, ok(2).next_version), (4, 1));
    assert_eq!((ok(3).first_position, ok(3).next_version), (5, 4));
    assert!(matches!(plans[4], Err(AppendError::Invalid(_))));
    assert_eq!(store.head().await.expect("head").position, 5);
    assert!(store
        .read_stream(&stream("many-b"), 1, Direction::Forwards, 10)
        .await
        .expect("read")
        .is_empty());
    let all = store.read_all(0, 10).await.expect("read");
    let order: Vec<(String, u64)> = all
        .iter()
        .map(|e| {
            let r = e.record().expect("record");
            (r.stream_id.as_str().to_owned(), r.stream_version)
        })
        .collect();
    assert_eq!(
        order,
        [
            ("many-a", 1),
            ("many-a", 2),
            ("many-a", 3),
            ("many-c", 1),
            ("many-a", 4)
        ]
        .map(|(s, v)| (s.to_owned(), v))
    );

    // The same requests again: the accepted ones are retries answered with their original
    // positions, nothing is written twice.
    let again = store.append_many(requests).await.expect("again");
    for i in [0, 2, 3] {
        let retry = again[i].clone().expect("retry");
        assert!(retry.duplicate, "request {i}");
        assert_eq!(retry.first_position, ok(i).first_position);
        assert_eq!(retry.last_position, ok(i).last_position);
    }
    assert_eq!(store.head().await.expect("head").position, 5);
    let verifier = common::verified_chain(&store).await;
    assert_eq!(verifier.count(), 5);
    assert_eq!(
        verifier.head(),
        store.head().await.expect("head").chain_hash
    );

    // No requests, no decisions; too many events in all is refused whole.
    assert_eq!(store.append_many(vec![]).await.expect("none"), vec![]);
    let limit = amtsbuch_domain::append::MAX_EVENTS_PER_APPEND_MANY;
    let too_many: Vec<AppendRequest> = (0..=limit / 1000)
        .map(|i| {
            append_req(
                &format!("many-big-{i}"),
                ExpectedVersion::NoStream,
                (0..1000).map(|n| event(n as u64)).collect(),
            )
        })
        .collect();
    assert!(too_many.iter().map(|r| r.events.len()).sum::<usize>() > limit);
    assert!(matches!(
        store.append_many(too_many).await,
        Err(StoreError::Append(AppendError::Invalid(_)))
    ));
    assert_eq!(store.head().await.expect("head").position, 5);
}

/// Multi-stream appends racing with single appends on the same streams: every accepted
/// request of one multi-stream append lands at consecutive positions, each stream's
/// versions stay gapless, and the chain verifies.
async fn many_stream_appends_interleave_with_single_appends<S: EventStore>(store: S) {
    const ROUNDS: u64 = 20;
    const STREAMS: u64 = 30;
    let many = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut landed = Vec::new();
            for round in 0..ROUNDS {
                let requests = (0..STREAMS)
                    .map(|s| {
                        append_req(
                            &format!("race-{s}"),
                            ExpectedVersion::Any,
                            vec![event(round * 100 + s)],
                        )
                    })
                    .collect();
                let plans = store.append_many(requests).await.expect("append many");
                let positions: Vec<u64> = plans
                    .into_iter()
                    .map(|p| p.expect("accepted").first_position)
                    .collect();
                landed.push(positions);
            }
            landed
        })
    };
    let mut singles = Vec::new();
    for w in 0..8u64 {
        let store = store.clone();
        singles.push(tokio::spawn(async move {
            for i in 0..ROUNDS {
                // Exact versions on the streams the multi-stream appends use too: a
                // conflict is possible and retried, a lost or doubled event is not.
                let s = format!("race-{}", (w * 7 + i) % STREAMS);
                loop {
                    let head = store
                        .read_stream(&stream(&s), u64::MAX, Direction::Backwards, 1)
                        .await
                        .expect("read");
                    let version = head
                        .first()
                        .map_or(0, |e| e.record().expect("record").stream_version);
                    match store
                        .append(append_req(
                            &s,
                            ExpectedVersion::Exact(version),
                            vec![event(i)],
                        ))
                        .await
                    {
                        Ok(_) => break,
                        Err(StoreError::Append(AppendError::WrongExpectedVersion { .. })) => {}
                        Err(e) => panic!("append: {e}"),
                    }
                }
            }
        }));
    }
    for single in singles {
        single.await.expect("single");
    }
    for positions in many.await.expect("many") {
        assert!(
            positions.windows(2).all(|w| w[1] == w[0] + 1),
            "a multi-stream append was split: {positions:?}"
        );
    }
    let total = ROUNDS * STREAMS + 8 * ROUNDS;
    assert_eq!(store.head().await.expect("head").position, total);
    for s in 0..STREAMS {
        let events = store
            .read_stream(&stream(&format!("race-{s}")), 1, Direction::Forwards, 1000)
            .await
            .expect("read");
        assert_eq!(
            versions(&events),
            (1..=events.len() as u64).collect::<Vec<_>>()
        );
    }
    let verifier = common::verified_chain(&store).await;
    assert_eq!(verifier.count(), total);
}

common::on_both_adapters!(
    using common::with_store;
    appends_and_reads_a_stream,
    checks_expected_versions,
    retries_are_idempotent,
    concurrent_retries_write_once,
    reads_the_global_log_in_pages,
    reads_a_category,
    finds_events_by_id,
    keeps_metadata_and_canonical_bytes,
    chains_every_event,
    refuses_invalid_appends_without_change,
    subscribes_with_catch_up_then_live,
    concurrent_writers_and_a_subscriber_see_everything_once,
    the_tail_hands_out_the_logs_own_rows,
    appends_to_many_streams_at_once,
    many_stream_appends_interleave_with_single_appends,
);
