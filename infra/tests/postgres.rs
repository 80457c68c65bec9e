//! PostgreSQL-specific behaviour beyond the shared contract: several stores (as several
//! processes would) on one database, where each writer's cached view of the log goes stale
//! and the compare-and-set on the head row must send it back to the database.

use amtsbuch_testkit as common;

use amtsbuch_domain::{AppendError, AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{EventStore, PgStore, StoreError};
use serde_json::json;

fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: StreamId::parse(stream).expect("stream"),
        expected,
        events,
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent::new(EventType::parse("Noted").expect("type"), json!({ "n": n }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_view_is_stale_defers_to_the_database() {
    common::with_pg(|a, options| async move {
        let b = PgStore::connect_with(options).await.expect("second store");
        let s = "consent-1";
        a.append(req(s, ExpectedVersion::NoStream, vec![event(1)]))
            .await
            .expect("a: v1");
        // Warm a's view: it now believes the stream is at version 2.
        a.append(req(s, ExpectedVersion::Exact(1), vec![event(2)]))
            .await
            .expect("a: v2");
        b.append(req(s, ExpectedVersion::Exact(2), vec![event(3)]))
            .await
            .expect("b: v3");

        // By a's view Exact(2) holds; by the database it does not.
        let stale = a
            .append(req(s, ExpectedVersion::Exact(2), vec![event(4)]))
            .await;
        assert_eq!(
            stale,
            Err(StoreError::Append(AppendError::WrongExpectedVersion {
                stream: StreamId::parse(s).expect("stream"),
                expected: ExpectedVersion::Exact(2),
                actual: 3
            }))
        );
        // By a's view Exact(3) is wrong; by the database it is right.
        let fresh = a
            .append(req(s, ExpectedVersion::Exact(3), vec![event(5)]))
            .await
            .expect("a: v4");
        assert_eq!((fresh.first_position, fresh.next_version), (4, 4));
        // `any` from the stale side lands after the other side's event, never on top of it.
        b.append(req(s, ExpectedVersion::Any, vec![event(6)]))
            .await
            .expect("b: v5");
        let any = a
            .append(req(s, ExpectedVersion::Any, vec![event(7)]))
            .await
            .expect("a: v6");
        assert_eq!((any.first_position, any.next_version), (6, 6));
        assert_eq!(a.head().await.expect("head").position, 6);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_through_the_fast_path_are_recognised() {
    common::with_pg(|store, _| async move {
        let events = vec![event(1), event(2)];
        store
            .append(req("doc-1", ExpectedVersion::Any, vec![event(0)]))
            .await
            .expect("warm");
        let first = store
            .append(req("doc-1", ExpectedVersion::Any, events.clone()))
            .await
            .expect("first");
        // `any` passes every version check, so only the unique index on event ids notices.
        let retry = store
            .append(req("doc-1", ExpectedVersion::Any, events))
            .await
            .expect("retry");
        assert!(retry.duplicate);
        assert_eq!(
            (retry.first_position, retry.last_position),
            (first.first_position, first.last_position)
        );
        // A stream assumed new that exists is caught by the (stream, version) index.
        let b = store
            .append(req("doc-1", ExpectedVersion::NoStream, vec![event(3)]))
            .await;
        assert!(matches!(
            b,
            Err(StoreError::Append(AppendError::WrongExpectedVersion {
                actual: 3,
                ..
            }))
        ));
        assert_eq!(store.head().await.expect("head").position, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interleaved_writers_on_two_stores_never_collide() {
    common::with_pg(|a, options| async move {
        let b = PgStore::connect_with(options).await.expect("second store");
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let store = if w % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    // Two writers per stream, one on each store, each retrying on conflict.
                    let stream = format!("shared-{}", w / 2);
                    loop {
                        let current = store
                            .read_stream(
                                &StreamId::parse(&stream).expect("stream"),
                                u64::MAX,
                                amtsbuch_infra::Direction::Backwards,
                                1,
                            )
                            .await
                            .expect("read")
                            .first()
                            .map_or(0, |e| e.record().expect("record").stream_version);
                        match store
                            .append(req(
                                &stream,
                                ExpectedVersion::Exact(current),
                                vec![event(w * 100 + i)],
                            ))
                            .await
                        {
                            Ok(_) => break,
                            Err(StoreError::Append(AppendError::WrongExpectedVersion {
                                ..
                            })) => continue,
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        assert_eq!(common::verified_chain(&a).await.count(), 16 * 25);
    })
    .await;
}

/// A shared lock excludes holders in other processes (two stores stand for two), waits
/// for them at most its patience, is released by dropping it, and stamps each grant with
/// the database's clock in grant order. Other keys and other schemas are not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_locks_exclude_other_processes_and_stamp_grants_in_order() {
    use amtsbuch_infra::shared_lock::SharedLock;
    use amtsbuch_infra::AnyStore;
    use std::time::{Duration, Instant};

    common::with_pg(|a, options| async move {
        let b = AnyStore::Postgres(PgStore::connect_with(options).await.expect("second store"));
        let a = AnyStore::Postgres(a);
        let patience = Duration::from_millis(300);
        let key = "subject:0193a1b2-0000-7000-8000-000000000001";

        let first = SharedLock::acquire(&a, key, patience)
            .await
            .expect("a locks");
        let started = Instant::now();
        let refused = SharedLock::acquire(&b, key, patience).await;
        assert!(
            matches!(&refused, Err(StoreError::Unavailable(m)) if m.contains("busy")),
            "{refused:?}"
        );
        assert!(started.elapsed() >= patience, "it waited its patience");
        // Another key is free meanwhile.
        let other = SharedLock::acquire(&b, "subject:other", patience)
            .await
            .expect("another key");
        drop(other);

        // A waiter gets the lock as soon as the holder lets go, stamped after the holder.
        let waiter = tokio::spawn({
            let b = b.clone();
            async move {
                SharedLock::acquire(&b, key, Duration::from_secs(10))
                    .await
                    .expect("b locks")
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiter.is_finished(), "b waits while a holds the key");
        let held_from = first.granted_at();
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("granted after the release")
            .expect("task");
        assert!(second.granted_at() > held_from);

        // Many rounds from both sides: grants never overlap and their stamps only grow.
        let inside = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stamps = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        drop(second);
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let (inside, stamps) = (inside.clone(), stamps.clone());
                tokio::spawn(async move {
                    for _ in 0..10 {
                        let lock = SharedLock::acquire(&store, key, Duration::from_secs(10))
                            .await
                            .expect("lock");
                        assert!(!inside.swap(true, std::sync::atomic::Ordering::SeqCst));
                        stamps.lock().expect("stamps").push(lock.granted_at());
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        inside.store(false, std::sync::atomic::Ordering::SeqCst);
                        drop(lock);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }
        let stamps = stamps.lock().expect("stamps").clone();
        assert_eq!(stamps.len(), 80);
        assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    })
    .await;
}
