//! The projection contract: written once, run against PostgreSQL and SQLite.
//!
//! Each `fn` below states one behaviour of the runner, the checkpoints, rebuild or the
//! stream catalogue that a user relies on; `on_both_adapters!` at the bottom runs every one
//! of them on a fresh PostgreSQL schema and on a fresh SQLite file.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amtsbuch_domain::{Category, StreamId};
use amtsbuch_infra::EventStore;
use amtsbuch_projections::streams::{self, get_stream, list_streams, StreamQuery, Streams};
use amtsbuch_projections::{
    checkpoint, rebuild, rebuild_among, runner, Projection, ProjectionError, ProjectionState,
    RebuildError, Replayer, RunnerConfig,
};
use amtsbuch_testkit::{with_test_db, Adapter};
use common::*;

fn streams_only() -> Vec<Arc<dyn Projection>> {
    vec![Arc::new(Streams)]
}

/// The catalogue equals a fold of the log, both for events that were there before the
/// runner started (catch-up) and for events appended concurrently while it runs (live);
/// every filter and page of the query API agrees with the fold.
async fn the_catalogue_matches_the_log_after_concurrent_appends(t: TestDb) {
    let store = t.store.clone();
    append_concurrently(&store, 4, 300, 40, 0).await;
    let handle = runner::spawn_with(store.clone(), streams_only(), quick(64));
    let mut applied = handle.applied(streams::NAME).expect("streams runs");
    append_concurrently(&store, 8, 600, 60, 300).await;
    reach(&mut applied, head(&store).await).await;

    let db = t.db();
    let expected = expected_catalogue(&store).await;
    assert_eq!(expected.len(), 60);
    let small_pages = StreamQuery {
        limit: 7,
        ..StreamQuery::default()
    };
    assert_eq!(listed_catalogue(&db, small_pages).await, expected);

    for category in ["consent", "application", "payment"] {
        let category = Category::parse(category).expect("category");
        let query = StreamQuery {
            category: Some(category.clone()),
            limit: 5,
            ..StreamQuery::default()
        };
        let want: Vec<_> = expected
            .iter()
            .filter(|s| s.category == category)
            .cloned()
            .collect();
        assert_eq!(listed_catalogue(&db, query).await, want);
    }
    let mut by_authority = 0;
    for i in 0..3 {
        for category in [None, Some(Category::parse("payment").expect("category"))] {
            let query = StreamQuery {
                authority: Some(authority(i)),
                category: category.clone(),
                limit: 3,
                ..StreamQuery::default()
            };
            let want: Vec<_> = expected
                .iter()
                .filter(|s| s.authority == Some(authority(i)))
                .filter(|s| category.as_ref().is_none_or(|c| s.category == *c))
                .cloned()
                .collect();
            by_authority += want.len();
            assert_eq!(listed_catalogue(&db, query).await, want);
        }
    }
    assert!(by_authority > 60, "the filters were tried on real matches");
    let one = &expected[17];
    assert_eq!(
        get_stream(&db, &one.stream_id).await.expect("get"),
        Some(one.clone())
    );
    let unknown = StreamId::parse("consent-nobody").expect("stream");
    assert_eq!(get_stream(&db, &unknown).await.expect("get"), None);
    let page = list_streams(
        &db,
        &StreamQuery {
            limit: 0,
            ..StreamQuery::default()
        },
    )
    .await
    .expect("list");
    assert_eq!(page.streams.len(), 1, "a limit of 0 still returns a page");
    handle.shutdown().await;
}

/// The catalogue's batch path (one row per stream and batch) gives exactly what applying
/// the events one by one gives, also when a stream has many events in one batch and its
/// authority and tenant come and go.
async fn batched_and_one_by_one_application_agree(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    let mut first = workload_event(0, 0);
    first.stream = StreamId::parse("consent-mixed").expect("stream");
    let mut events = vec![first.events.remove(0)];
    for n in 1..3 {
        let mut e = workload_event(0, n).events.remove(0);
        e.authority = None;
        e.tenant = None;
        events.push(e);
    }
    events[0].authority = Some(authority(0));
    events[0].tenant = Some("14612000".into());
    events[1].authority = Some(authority(1));
    first.events = events;
    store.append(first).await.expect("append");
    append_concurrently(&store, 4, 600, 8, 0).await;
    let total = head(&store).await;

    let handle = runner::spawn_with(store.clone(), streams_only(), quick(500));
    reach(&mut handle.applied(streams::NAME).expect("streams"), total).await;
    handle.shutdown().await;
    let batched = listed_catalogue(&db, StreamQuery::default()).await;
    assert_eq!(batched, expected_catalogue(&store).await);
    let mixed = get_stream(&db, &StreamId::parse("consent-mixed").expect("stream"))
        .await
        .expect("get")
        .expect("catalogued");
    assert_eq!(
        (mixed.version, mixed.first_position, mixed.last_position),
        (3, 1, 3)
    );
    assert_eq!(mixed.authority, Some(authority(1)));
    assert_eq!(mixed.tenant.as_deref(), Some("14612000"));

    let one_by_one: Vec<Arc<dyn Projection>> = vec![Arc::new(OneByOne)];
    rebuild_among(&store, &one_by_one, ONE_BY_ONE, |_| {})
        .await
        .expect("rebuild one by one");
    assert_eq!(listed_catalogue(&db, StreamQuery::default()).await, batched);
}

/// The catalogue applied strictly event by event (its `apply`, never its `apply_batch`).
struct OneByOne;

const ONE_BY_ONE: &str = "streams_one_by_one";
static STREAMS: Streams = Streams;

impl Projection for OneByOne {
    fn name(&self) -> &'static str {
        ONE_BY_ONE
    }

    fn tables(&self) -> &'static [&'static str] {
        STREAMS.tables()
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut amtsbuch_projections::ReadTx,
        event: &'a amtsbuch_infra::RecordedEvent,
        record: &'a amtsbuch_domain::EventRecord,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ProjectionError>> {
        STREAMS.apply(tx, event, record)
    }
}

/// A projection that fails in the middle of a batch leaves its read model and checkpoint
/// at the end of the previous batch; the other projections carry on; the failure shows on
/// the handle; once the cause is gone the runner retries by itself and the counts are
/// exactly a from-scratch fold.
async fn a_failing_batch_leaves_read_model_and_checkpoint_at_the_previous_batch(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    Counter::create_table(&db).await;
    append_concurrently(&store, 4, 1050, 30, 0).await;
    let total = head(&store).await;
    let counter = counter();
    counter.arm(750);
    let handle = runner::spawn_with(
        store.clone(),
        vec![counter.clone(), Arc::new(Streams)],
        RunnerConfig {
            backoff_min: Duration::from_secs(3600),
            backoff_max: Duration::from_secs(3600),
            ..quick(100)
        },
    );
    let mut state = handle.state(COUNTER).expect("counter runs");
    let failed = state_where(&mut state, |s| matches!(s, ProjectionState::Failed { .. })).await;
    assert_eq!(
        failed,
        ProjectionState::Failed {
            error: ProjectionError::Apply {
                position: 750,
                reason: "injected failure".into()
            },
            attempts: 1,
            retry_in: Duration::from_secs(3600),
        }
    );
    // Batches are 1–100, …, 601–700, 701–800: the failed one left nothing behind.
    assert_eq!(
        checkpoint::read(&db, COUNTER).await.expect("checkpoint"),
        Some(700)
    );
    assert_eq!(
        *handle.applied(COUNTER).expect("counter").borrow(),
        700,
        "the handle reports the stored checkpoint"
    );
    assert_eq!(stored_counts(&db).await, expected_counts(&store, 700).await);
    // The catalogue is not held up by the failing counter.
    reach(&mut handle.applied(streams::NAME).expect("streams"), total).await;

    // A crash now, then a restart once the cause is gone.
    drop(handle);
    counter.disarm();
    let handle = runner::spawn_with(store.clone(), vec![counter.clone()], quick(100));
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&store, total).await
    );
    assert_eq!(
        checkpoint::read(&db, COUNTER).await.expect("checkpoint"),
        Some(total)
    );

    // A transient failure while live: retried after the backoff by the same runner.
    counter.arm(total + 5);
    append_concurrently(&store, 2, 40, 30, 1050).await;
    let mut state = handle.state(COUNTER).expect("counter");
    state_where(&mut state, |s| matches!(s, ProjectionState::Failed { .. })).await;
    counter.disarm();
    let total = head(&store).await;
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    state_where(&mut state, |s| *s == ProjectionState::Running).await;
    assert_eq!(counter.refused(), 0, "no event out of order");
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&store, total).await
    );
    handle.shutdown().await;
}

/// Runners killed at arbitrary moments while events keep arriving neither lose nor repeat
/// an event: after the last restart the counts equal a from-scratch fold (the counter
/// itself refuses any event that is not the next one of its stream).
async fn a_crash_during_live_appends_loses_and_repeats_nothing(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    Counter::create_table(&db).await;
    let counter = counter();
    let writers = {
        let store = store.clone();
        tokio::spawn(async move { append_concurrently(&store, 6, 1500, 25, 0).await })
    };
    for round in 0..4u64 {
        let handle = runner::spawn_with(store.clone(), vec![counter.clone()], quick(50));
        tokio::time::sleep(Duration::from_millis(40 + 35 * round)).await;
        drop(handle);
    }
    writers.await.expect("writers");
    let handle = runner::spawn_with(store.clone(), vec![counter.clone()], quick(50));
    let total = head(&store).await;
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    assert_eq!(counter.refused(), 0, "no event out of order");
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&store, total).await
    );
    handle.shutdown().await;
}

/// A rebuild clears the read model and replays it to the same content, reporting progress
/// up to the head; with a runner holding the projection, the runner replays and the
/// rebuild watches. An unknown name is refused with the known names.
async fn rebuild_yields_the_same_read_model_and_reports_progress(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    append_concurrently(&store, 4, 2500, 90, 0).await;
    let total = head(&store).await;
    let handle = runner::spawn_with(store.clone(), streams_only(), quick(500));
    reach(&mut handle.applied(streams::NAME).expect("streams"), total).await;
    handle.shutdown().await;
    let before = listed_catalogue(&db, StreamQuery::default()).await;
    assert_eq!(before, expected_catalogue(&store).await);

    // Nobody holds the projection: this process replays.
    let mut reports = Vec::new();
    let last = rebuild(&store, streams::NAME, |p| reports.push(p))
        .await
        .expect("rebuild");
    assert_eq!((last.done, last.total), (total, total));
    assert_eq!(last.replayer, Replayer::ThisProcess);
    assert!(last.events_per_sec > 0.0);
    assert_eq!(reports.first().map(|p| p.done), Some(0));
    assert!(reports.windows(2).all(|w| w[0].done <= w[1].done));
    assert!(
        reports.len() >= 4,
        "one report per batch of 1000: {reports:?}"
    );
    assert_eq!(listed_catalogue(&db, StreamQuery::default()).await, before);

    // A runner holds the projection: the rebuild resets, the runner replays.
    let handle = runner::spawn_with(store.clone(), streams_only(), quick(500));
    let mut state = handle.state(streams::NAME).expect("streams");
    state_where(&mut state, |s| *s == ProjectionState::Running).await;
    let mut reports = Vec::new();
    let last = rebuild(&store, streams::NAME, |p| reports.push(p))
        .await
        .expect("rebuild");
    assert_eq!((last.done, last.total), (total, total));
    assert_eq!(last.replayer, Replayer::LeaseHolder);
    assert!(reports.iter().all(|p| p.replayer == Replayer::LeaseHolder));
    assert_eq!(listed_catalogue(&db, StreamQuery::default()).await, before);
    handle.shutdown().await;

    let unknown = rebuild(&store, "stream", |_| {}).await;
    assert_eq!(
        unknown,
        Err(RebuildError::Unknown {
            name: "stream".into(),
            known: amtsbuch_projections::all()
                .iter()
                .map(|p| p.name())
                .collect()
        })
    );
    let message = unknown.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("known projections: streams"), "{message}");
}

/// A rebuild of the counter yields exactly the fold too, also when it resets the counter
/// under a runner that is busy applying new events: the runner's next batch finds the
/// checkpoint moved and starts over instead of adding to the cleared table.
async fn rebuild_of_a_counting_projection_counts_each_event_once(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    Counter::create_table(&db).await;
    append_concurrently(&store, 4, 700, 20, 0).await;
    let total = head(&store).await;
    let counter = counter();
    let projections: Vec<Arc<dyn Projection>> = vec![counter.clone(), Arc::new(Streams)];
    let handle = runner::spawn_with(store.clone(), projections.clone(), quick(100));
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    handle.shutdown().await;
    let last = rebuild_among(&store, &projections, COUNTER, |_| {})
        .await
        .expect("rebuild");
    assert_eq!((last.done, last.replayer), (total, Replayer::ThisProcess));
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&store, total).await
    );

    let handle = runner::spawn_with(store.clone(), projections.clone(), quick(20));
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    let writers = {
        let store = store.clone();
        tokio::spawn(async move { append_concurrently(&store, 4, 3000, 20, 700).await })
    };
    // Reset while the runner is busy with the new events.
    reach(&mut handle.applied(COUNTER).expect("counter"), total + 300).await;
    let last = rebuild_among(&store, &projections, COUNTER, |_| {})
        .await
        .expect("rebuild");
    assert_eq!(last.replayer, Replayer::LeaseHolder);
    writers.await.expect("writers");
    let total = head(&store).await;
    reach(&mut handle.applied(COUNTER).expect("counter"), total).await;
    assert_eq!(counter.refused(), 0, "no event out of order");
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&store, total).await
    );
    handle.shutdown().await;
}

/// The applied-position watch reaches the head after every burst of appends, so lag
/// (`head − applied`) returns to zero.
async fn the_applied_position_reaches_the_head(t: TestDb) {
    let store = t.store.clone();
    let handle = runner::spawn_with(store.clone(), streams_only(), quick(500));
    let mut applied = handle.applied(streams::NAME).expect("streams");
    assert_eq!(handle.names(), vec![streams::NAME]);
    assert!(handle.applied("nothing").is_none());
    for burst in 0..3 {
        append_concurrently(&store, 3, 50, 10, burst * 50).await;
        let h = head(&store).await;
        assert_eq!(reach(&mut applied, h).await, h, "lag back to zero");
    }
    let mut state = handle.state(streams::NAME).expect("streams");
    state_where(&mut state, |s| *s == ProjectionState::Running).await;
    handle.shutdown().await;
    assert_eq!(*state.borrow(), ProjectionState::Stopped);
}

/// Two runners on one database (on PostgreSQL: two processes): only one applies, the other
/// stands by with its applied position following the checkpoint, and it takes over when
/// the first goes away. The counts stay exact throughout.
async fn two_runners_take_turns(t: TestDb) {
    let db = t.db();
    Counter::create_table(&db).await;
    let first_store = t.store.clone();
    let second_store = t.other_process().await;
    let (a, b) = (counter(), counter());
    let first = runner::spawn_with(first_store.clone(), vec![a.clone()], quick(50));
    state_where(&mut first.state(COUNTER).expect("a"), |s| {
        *s == ProjectionState::Running
    })
    .await;
    let second = runner::spawn_with(second_store.clone(), vec![b.clone()], quick(50));
    state_where(&mut second.state(COUNTER).expect("b"), |s| {
        *s == ProjectionState::Standby
    })
    .await;

    // Appends through both stores, as two servers would take them.
    let (one, two) = tokio::join!(
        append_concurrently(&first_store, 3, 300, 20, 0),
        append_concurrently(&second_store, 3, 300, 20, 300),
    );
    let ((), ()) = (one, two);
    let total = head(&first_store).await;
    reach(&mut first.applied(COUNTER).expect("a"), total).await;
    reach(&mut second.applied(COUNTER).expect("b"), total).await;
    assert_eq!(b.calls(), 0, "the stand-by applied nothing");
    assert_eq!(
        *second.state(COUNTER).expect("b").borrow(),
        ProjectionState::Standby
    );
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&first_store, total).await
    );

    // The first runner dies; the second takes over and follows new events.
    drop(first);
    append_concurrently(&second_store, 3, 200, 20, 600).await;
    let total = head(&second_store).await;
    state_where(&mut second.state(COUNTER).expect("b"), |s| {
        *s == ProjectionState::Running
    })
    .await;
    reach(&mut second.applied(COUNTER).expect("b"), total).await;
    assert!(b.calls() > 0);
    assert_eq!(a.refused() + b.refused(), 0, "no event out of order");
    assert_eq!(
        stored_counts(&db).await,
        expected_counts(&second_store, total).await
    );
    second.shutdown().await;
}

/// Two projections with one name would share a checkpoint; the runner refuses them.
#[tokio::test]
async fn duplicate_names_are_refused() {
    with_test_db(Adapter::Sqlite, |t| async move {
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runner::spawn(t.store.clone(), vec![Arc::new(Streams), Arc::new(Streams)])
        }));
        let message = refused
            .err()
            .and_then(|p| p.downcast::<String>().ok())
            .expect("refused with a message");
        assert!(
            message.contains("two projections are named \"streams\""),
            "{message}"
        );
    })
    .await;
}

on_both_adapters!(
    the_catalogue_matches_the_log_after_concurrent_appends,
    batched_and_one_by_one_application_agree,
    a_failing_batch_leaves_read_model_and_checkpoint_at_the_previous_batch,
    a_crash_during_live_appends_loses_and_repeats_nothing,
    rebuild_yields_the_same_read_model_and_reports_progress,
    rebuild_of_a_counting_projection_counts_each_event_once,
    the_applied_position_reaches_the_head,
    two_runners_take_turns,
    a_projection_gets_only_the_categories_it_names,
    projections_share_one_reader_of_the_log,
    a_batched_checkpoint_move_changes_only_the_rows_still_where_their_runner_left_them,
    projections_that_pass_over_the_same_events_move_their_checkpoints_together,
);

/// The read models a batch does not concern move their checkpoints in one statement, but
/// each row only if it is still where its runner left it: a checkpoint that a rebuild
/// reset, or that another lease holder moved on, is never overwritten, and the answer
/// names exactly the rows that moved.
async fn a_batched_checkpoint_move_changes_only_the_rows_still_where_their_runner_left_them(
    t: TestDb,
) {
    let db = t.db();
    for (name, position) in [
        ("test_skip_a", 10_u64),
        ("test_skip_rebuilt", 0),
        ("test_skip_taken_over", 30),
        ("test_skip_b", 10),
    ] {
        db.execute(
            "INSERT INTO projection_checkpoints (name, position, updated_at) \
             VALUES ($1, $2, '2026-12-07T00:00:00Z')",
            &[name.into(), position.into()],
        )
        .await
        .expect("checkpoint");
    }
    let skip = |name, from, to| checkpoint::Skip { name, from, to };
    let mut moved = checkpoint::skip_many(
        &db,
        &[
            skip("test_skip_a", 10, 20),
            // A rebuild reset it to 0 after its runner had read it at 10.
            skip("test_skip_rebuilt", 10, 20),
            // Another process took the lease over and moved it to 30.
            skip("test_skip_taken_over", 10, 20),
            skip("test_skip_b", 10, 25),
            // No checkpoint at all.
            skip("test_skip_missing", 10, 20),
        ],
    )
    .await
    .expect("skip");
    moved.sort();
    assert_eq!(moved, ["test_skip_a", "test_skip_b"]);
    for (name, position) in [
        ("test_skip_a", 20),
        ("test_skip_rebuilt", 0),
        ("test_skip_taken_over", 30),
        ("test_skip_b", 25),
    ] {
        assert_eq!(
            checkpoint::read(&db, name).await.expect("read"),
            Some(position),
            "{name}"
        );
    }
    assert_eq!(
        checkpoint::read(&db, "test_skip_missing")
            .await
            .expect("read"),
        None
    );
    assert!(checkpoint::skip_many(&db, &[])
        .await
        .expect("nothing")
        .is_empty());
}

/// Several projections that want none of the log's events follow it live through the
/// runner's shared checkpoint moves; each reaches the head with its own checkpoint, and
/// one of them rebuilt while the runner holds it (its checkpoint reset under the runner)
/// starts over from the reset and reaches the head again.
async fn projections_that_pass_over_the_same_events_move_their_checkpoints_together(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    append_concurrently(&store, 2, 100, 10, 0).await;
    let projections = || -> Vec<Arc<dyn Projection>> {
        PASSING
            .iter()
            .map(|name| Arc::new(PassesOver(name)) as Arc<dyn Projection>)
            .collect()
    };
    let handle = runner::spawn_with(store.clone(), projections(), quick(16));
    append_concurrently(&store, 4, 300, 20, 100).await;
    let total = head(&store).await;
    for name in PASSING {
        reach(&mut handle.applied(name).expect("runs"), total).await;
        assert_eq!(
            checkpoint::read(&db, name).await.expect("read"),
            Some(total)
        );
    }

    rebuild_among(&store, &projections(), PASSING[1], |_| {})
        .await
        .expect("rebuild");
    append_concurrently(&store, 2, 50, 5, 400).await;
    let total = head(&store).await;
    for name in PASSING {
        reach(&mut handle.applied(name).expect("runs"), total).await;
    }
    handle.shutdown().await;
    for name in PASSING {
        assert_eq!(
            checkpoint::read(&db, name).await.expect("read"),
            Some(total),
            "{name}"
        );
    }
}

const PASSING: [&str; 4] = [
    "test_passes_over_a",
    "test_passes_over_b",
    "test_passes_over_c",
    "test_passes_over_d",
];

/// Wants a category the workload never writes: passes over every batch.
struct PassesOver(&'static str);

impl Projection for PassesOver {
    fn name(&self) -> &'static str {
        self.0
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["nothing"])
    }

    fn apply<'a>(
        &'a self,
        _tx: &'a mut amtsbuch_projections::ReadTx,
        event: &'a amtsbuch_infra::RecordedEvent,
        _record: &'a amtsbuch_domain::EventRecord,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            Err(ProjectionError::Corrupt {
                position: event.position,
                reason: "a projection that wants nothing was given an event".into(),
            })
        })
    }
}

/// The projections of a process follow the log through one reader (the store's tail):
/// while they keep up none of them reads the log itself; each applies every event exactly
/// once (a second application of a position would break `Seen`'s primary key and stop
/// it); one that fails holds up no other, and catches up by itself once the cause is
/// gone; after a crash each resumes from its own checkpoint.
async fn projections_share_one_reader_of_the_log(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    Seen::create_table(&db).await;
    let seen: Vec<Arc<Seen>> = SEEN.iter().map(|name| Arc::new(Seen::new(name))).collect();
    let projections = || -> Vec<Arc<dyn Projection>> {
        seen.iter()
            .map(|s| Arc::clone(s) as Arc<dyn Projection>)
            .collect()
    };
    let reach_all = |handle: &runner::RunnerHandle, target: u64| {
        let watches: Vec<_> = SEEN
            .iter()
            .map(|name| handle.applied(name).expect("runs"))
            .collect();
        async move {
            for mut w in watches {
                reach(&mut w, target).await;
            }
        }
    };

    // Catch-up: the events before the runner started lie behind the tail's window.
    append_concurrently(&store, 4, 200, 20, 0).await;
    let handle = runner::spawn_with(store.clone(), projections(), quick(64));
    reach_all(&handle, head(&store).await).await;
    let tail = store.tail().expect("the store has a tail");
    let caught_up = tail.stats();
    assert!(caught_up.from_store >= 1, "{caught_up:?}");

    // Live: every projection takes the new events from memory.
    append_concurrently(&store, 4, 400, 20, 200).await;
    let total = head(&store).await;
    reach_all(&handle, total).await;
    let live = tail.stats();
    assert_eq!(
        live.from_store, caught_up.from_store,
        "no projection read the log itself while keeping up: {live:?}"
    );
    assert!(live.batches > caught_up.batches && live.from_window > caught_up.from_window);
    for s in &seen {
        assert_eq!(s.rows(&db).await, (total, total), "{}", s.name);
    }

    // One fails; the others go on, and it catches up by itself once the cause is gone.
    let failing = &seen[1];
    failing.fail_at.store(total + 30, Ordering::SeqCst);
    append_concurrently(&store, 2, 100, 20, 600).await;
    let total = head(&store).await;
    let mut state = handle.state(failing.name).expect("runs");
    state_where(&mut state, |s| matches!(s, ProjectionState::Failed { .. })).await;
    for s in seen.iter().filter(|s| s.name != failing.name) {
        reach(&mut handle.applied(s.name).expect("runs"), total).await;
    }
    assert!(*handle.applied(failing.name).expect("runs").borrow() < total);
    failing.fail_at.store(0, Ordering::SeqCst);
    reach_all(&handle, total).await;

    // A crash, more events, a restart: each resumes from its own checkpoint.
    drop(handle);
    append_concurrently(&store, 2, 100, 20, 700).await;
    let handle = runner::spawn_with(store.clone(), projections(), quick(64));
    let total = head(&store).await;
    reach_all(&handle, total).await;
    handle.shutdown().await;
    for s in &seen {
        assert_eq!(s.rows(&db).await, (total, total), "{}", s.name);
    }
}

const SEEN: [&str; 4] = ["test_seen_a", "test_seen_b", "test_seen_c", "test_seen_d"];

/// Writes one row per position it is given under its name; the primary key refuses a
/// position applied twice. It can be told to fail at one position.
struct Seen {
    name: &'static str,
    fail_at: AtomicU64,
}

impl Seen {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            fail_at: AtomicU64::new(0),
        }
    }

    async fn create_table(db: &amtsbuch_projections::ReadDb) {
        db.execute(
            "CREATE TABLE IF NOT EXISTS test_seen (name TEXT NOT NULL, position BIGINT NOT NULL, \
             PRIMARY KEY (name, position))",
            &[],
        )
        .await
        .expect("create test_seen");
    }

    /// Its rows, and the highest position among them.
    async fn rows(&self, db: &amtsbuch_projections::ReadDb) -> (u64, u64) {
        let row = db
            .fetch_optional(
                "SELECT COUNT(*) AS n, COALESCE(MAX(position), 0) AS last FROM test_seen \
                 WHERE name = $1",
                &[self.name.into()],
            )
            .await
            .expect("rows")
            .expect("a row");
        (
            row.get_u64("n").expect("n"),
            row.get_u64("last").expect("last"),
        )
    }
}

impl Projection for Seen {
    fn name(&self) -> &'static str {
        self.name
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn apply<'a>(
        &'a self,
        tx: &'a mut amtsbuch_projections::ReadTx,
        event: &'a amtsbuch_infra::RecordedEvent,
        _record: &'a amtsbuch_domain::EventRecord,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            if self.fail_at.load(Ordering::SeqCst) == event.position {
                return Err(ProjectionError::Apply {
                    position: event.position,
                    reason: "injected failure".into(),
                });
            }
            tx.execute(
                "INSERT INTO test_seen (name, position) VALUES ($1, $2)",
                &[self.name.into(), event.position.into()],
            )
            .await?;
            Ok(())
        })
    }
}

/// A projection that names its categories is handed exactly the events of those
/// categories, in order, and its checkpoint still moves past all the others to the head.
async fn a_projection_gets_only_the_categories_it_names(t: TestDb) {
    let store = t.store.clone();
    append_concurrently(&store, 3, 300, 10, 0).await;
    let total = head(&store).await;
    let seen = Arc::new(ConsentsAndPayments::default());
    let projections: Vec<Arc<dyn Projection>> = vec![seen.clone()];
    let handle = runner::spawn_with(store.clone(), projections, quick(64));
    reach(&mut handle.applied(SELECTIVE).expect("selective"), total).await;
    handle.shutdown().await;

    let mut expected = Vec::new();
    for event in store.read_all(0, 10_000).await.expect("log") {
        let record = event.record().expect("record");
        if ["consent", "payment"].contains(&record.stream_id.category()) {
            expected.push(event.position);
        }
    }
    assert!(!expected.is_empty() && (expected.len() as u64) < total);
    assert_eq!(*seen.positions.lock().expect("seen"), expected);
    assert_eq!(
        checkpoint::read(&t.db(), SELECTIVE)
            .await
            .expect("checkpoint"),
        Some(total)
    );
}

const SELECTIVE: &str = "test_consents_and_payments";

/// Notes the positions it is given; wants `consent` and `payment` streams only.
#[derive(Default)]
struct ConsentsAndPayments {
    positions: std::sync::Mutex<Vec<u64>>,
}

impl Projection for ConsentsAndPayments {
    fn name(&self) -> &'static str {
        SELECTIVE
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn categories(&self) -> Option<&'static [&'static str]> {
        Some(&["consent", "payment"])
    }

    fn apply<'a>(
        &'a self,
        _tx: &'a mut amtsbuch_projections::ReadTx,
        event: &'a amtsbuch_infra::RecordedEvent,
        record: &'a amtsbuch_domain::EventRecord,
    ) -> futures_util::future::BoxFuture<'a, Result<(), ProjectionError>> {
        Box::pin(async move {
            assert_eq!(record.position, event.position);
            self.positions.lock().expect("seen").push(event.position);
            Ok(())
        })
    }
}
