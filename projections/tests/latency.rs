//! How soon an appended event shows in a read model, at a fixed arrival rate, and how fast
//! a rebuild replays: on PostgreSQL and SQLite.
//!
//! Open-loop writers append single events at a steady rate while the runner (default
//! configuration) feeds the stream catalogue; an observer notes when the applied position
//! passes each event. The test asserts that every event becomes visible and prints the
//! latency percentiles and the rebuild rate (`--nocapture`); like `amtsbuch bench`, it
//! does not fail on timings, which depend on the machine. By default it runs briefly at
//! 1,000 events/s; with `AMTSBUCH_SLOW_TESTS=1` at 5,000 events/s for 10 s.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amtsbuch_infra::EventStore;
use amtsbuch_projections::streams::{self, Streams};
use amtsbuch_projections::{rebuild, runner, ProjectionState};
use common::*;

/// Writers in the open loop; each appends one event per `WRITERS / rate` seconds.
const WRITERS: usize = 100;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn visible_soon_after_append_at_a_fixed_rate(t: TestDb) {
    let slow = std::env::var("AMTSBUCH_SLOW_TESTS").as_deref() == Ok("1");
    let (rate, seconds) = if slow { (5000, 10) } else { (1000, 1) };
    let per_writer = rate * seconds / WRITERS;
    let store = t.store.clone();
    let handle = runner::spawn(store.clone(), vec![Arc::new(Streams)]);
    let mut state = handle.state(streams::NAME).expect("streams");
    state_where(&mut state, |s| *s == ProjectionState::Running).await;

    // The observer: (applied position, when it was seen).
    let seen: Arc<Mutex<Vec<(u64, Instant)>>> = Arc::default();
    let observer = {
        let mut applied = handle.applied(streams::NAME).expect("streams");
        let seen = seen.clone();
        tokio::spawn(async move {
            while applied.changed().await.is_ok() {
                let p = *applied.borrow_and_update();
                if let Ok(mut seen) = seen.lock() {
                    seen.push((p, Instant::now()));
                }
            }
        })
    };

    let started = Instant::now();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(WRITERS as f64 / rate as f64);
            // Spread the writers over one period so arrivals are even, not in bursts.
            let offset = period.mul_f64(w as f64 / WRITERS as f64);
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            let mut acks = Vec::with_capacity(per_writer);
            for n in 0..per_writer {
                tick.tick().await;
                let submitted = Instant::now();
                let out = store
                    .append(workload_event((w * 7 + n) % 1000, n))
                    .await
                    .expect("append");
                acks.push((out.last_position, submitted, Instant::now()));
            }
            acks
        }));
    }
    let mut acks = Vec::new();
    for w in writers {
        acks.extend(w.await.expect("writer"));
    }
    let appending = started.elapsed();
    let total = head(&store).await;
    reach(&mut handle.applied(streams::NAME).expect("streams"), total).await;
    // The observer may be a moment behind the watch it observes.
    let caught_up = || {
        seen.lock()
            .map(|s| s.last().is_some_and(|(p, _)| *p >= total))
            .unwrap_or(false)
    };
    while !caught_up() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    observer.abort();
    handle.shutdown().await;

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut after_ack = Vec::with_capacity(acks.len());
    let mut after_submit = Vec::with_capacity(acks.len());
    for (position, submitted, acked) in &acks {
        let i = seen.partition_point(|(p, _)| p < position);
        let (_, visible) = seen
            .get(i)
            .unwrap_or_else(|| panic!("position {position} never became visible"));
        after_ack.push(visible.saturating_duration_since(*acked));
        after_submit.push(visible.saturating_duration_since(*submitted));
    }
    after_ack.sort_unstable();
    after_submit.sort_unstable();
    assert_eq!(after_ack.len(), rate * seconds / WRITERS * WRITERS);
    println!(
        "{}: {} events in {:.2} s ({:.0}/s); append acknowledged → visible: p50 {}, p99 {}, max {}; \
         submitted → visible: p50 {}, p99 {}, max {}",
        if t.is_postgres() { "postgresql" } else { "sqlite" },
        acks.len(),
        appending.as_secs_f64(),
        acks.len() as f64 / appending.as_secs_f64(),
        ms(percentile(&after_ack, 0.5)),
        ms(percentile(&after_ack, 0.99)),
        ms(percentile(&after_ack, 1.0)),
        ms(percentile(&after_submit, 0.5)),
        ms(percentile(&after_submit, 0.99)),
        ms(percentile(&after_submit, 1.0)),
    );

    let last = rebuild(&store, streams::NAME, |_| {})
        .await
        .expect("rebuild");
    assert_eq!(last.done, total);
    println!(
        "{}: rebuild of {} events at {:.0} events/s",
        if t.is_postgres() {
            "postgresql"
        } else {
            "sqlite"
        },
        last.done,
        last.events_per_sec
    );
}

on_both_adapters!(visible_soon_after_append_at_a_fixed_rate);
