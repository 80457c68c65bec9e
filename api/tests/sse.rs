//! `GET /events/stream` read the way a client reads it: frame by frame, through the router,
//! with the body polled only while the test reads, so that "a consumer that does not read"
//! is exactly that.
//!
//! What a Fachverfahren relies on: it catches up from any position and then gets new
//! events live, in position order, each once; it can resume from `Last-Event-ID` or
//! `?after=`; it sees only its own events; a consumer that falls behind is told so and
//! where to resume, and writers never wait for it; the server refuses subscriptions beyond
//! its limit and bad positions with problems.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::router;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{AnyStore, EventStore};

use amtsbuch_testkit_api as common;
use common::{Frame, Next, SseReader};

struct TestApp {
    app: Router,
    store: common::TempStore,
}

async fn app(limits: HubLimits) -> TestApp {
    let store = common::temp_store().await;
    let state = common::state_with(&store.store, None, limits).await;
    TestApp {
        app: router::router(state),
        store,
    }
}

impl TestApp {
    fn store(&self) -> &AnyStore {
        &self.store.store
    }

    /// Subscribe as `token` with extra headers and a query.
    async fn subscribe_with(
        &self,
        token: &str,
        query: &str,
        last_event_id: Option<&str>,
    ) -> axum::response::Response {
        let mut r = Request::get(format!("/events/stream{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(id) = last_event_id {
            r = r.header("last-event-id", id);
        }
        common::call(&self.app, r.body(Body::empty()).expect("request")).await
    }

    /// Subscribe as an operator, who sees every event.
    async fn subscribe(&self, query: &str, last_event_id: Option<&str>) -> SseReader {
        SseReader::new(
            self.subscribe_with(&common::token(Role::Operator), query, last_event_id)
                .await,
        )
    }
}

/// Append `n` events, one append each, to streams `consent-<i mod 5>`.
async fn append(store: &AnyStore, n: usize) {
    for i in 0..n {
        append_one(
            store,
            &format!("consent-{}", i % 5),
            json!({ "i": i }),
            None,
        )
        .await;
    }
}

async fn append_one(store: &AnyStore, stream: &str, data: Value, authority: Option<&str>) -> u64 {
    let mut event = NewEvent::new(EventType::parse("ConsentGiven").expect("type"), data);
    event.authority = authority.map(|a| amtsbuch_domain::AuthorityId::parse(a).expect("authority"));
    event.tenant = authority.map(|_| "14627010".to_owned());
    store
        .append(AppendRequest {
            stream: StreamId::parse(stream).expect("stream"),
            expected: ExpectedVersion::Any,
            events: vec![event],
        })
        .await
        .expect("append")
        .last_position
}

/// The positions of event frames, checking each is an `event: event` frame whose id is the
/// position of the event it carries.
fn positions(frames: &[Frame]) -> Vec<u64> {
    frames
        .iter()
        .map(|f| {
            assert_eq!(f.event.as_deref(), Some("event"), "{f:?}");
            let event = f.json();
            assert_eq!(event["position"], f.position(), "{f:?}");
            f.position()
        })
        .collect()
}

fn range(from: u64, to: u64) -> Vec<u64> {
    (from..=to).collect()
}

const QUIET: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_catches_up_then_follows_live_in_order_and_once() {
    let app = app(HubLimits::default()).await;
    append(app.store(), 5).await;
    let mut reader = app.subscribe("", None).await;

    // Catch-up from the start of the log.
    assert_eq!(positions(&reader.frames(5).await), range(1, 5));

    // Live: a writer appends while the subscriber reads, so catch-up, holes and the live
    // feed interleave.
    let store = app.store().clone();
    let writer = tokio::spawn(async move {
        for round in 0..40 {
            let events = (0..5)
                .map(|i| {
                    NewEvent::new(
                        EventType::parse("ConsentGiven").expect("type"),
                        json!({ "round": round, "i": i }),
                    )
                })
                .collect();
            store
                .append(AppendRequest {
                    stream: StreamId::parse(&format!("consent-{}", round % 3)).expect("stream"),
                    expected: ExpectedVersion::Any,
                    events,
                })
                .await
                .expect("append");
        }
    });
    let live = reader.frames(200).await;
    writer.await.expect("writer");
    assert_eq!(positions(&live), range(6, 205));
    // The frames carry the events as stored.
    let stored = app.store().read_all(5, 1).await.expect("read");
    let first = live[0].json();
    assert_eq!(
        first["id"],
        stored[0].record().expect("record").event_id.to_string()
    );
    assert_eq!(first["data"], json!({ "round": 0, "i": 0 }));
    reader.assert_quiet(QUIET).await;
}

#[tokio::test]
async fn a_subscriber_resumes_from_last_event_id_or_after() {
    let app = app(HubLimits::default()).await;
    append(app.store(), 10).await;

    let mut from_header = app.subscribe("", Some("4")).await;
    assert_eq!(positions(&from_header.frames(6).await), range(5, 10));
    from_header.assert_quiet(QUIET).await;

    let mut from_query = app.subscribe("?after=7", None).await;
    assert_eq!(positions(&from_query.frames(3).await), range(8, 10));
    from_query.assert_quiet(QUIET).await;

    // The header is what EventSource sends on reconnect, so it wins over the query the
    // client first connected with.
    let mut both = app.subscribe("?after=2", Some("8")).await;
    assert_eq!(positions(&both.frames(2).await), range(9, 10));
    both.assert_quiet(QUIET).await;

    // Resuming at the head waits for the next event.
    let mut at_head = app.subscribe("", Some("10")).await;
    at_head.assert_quiet(QUIET).await;
    append(app.store(), 1).await;
    assert_eq!(positions(&at_head.frames(1).await), vec![11]);
    // The earlier subscribers get it too, once.
    for reader in [&mut from_header, &mut from_query, &mut both] {
        assert_eq!(positions(&reader.frames(1).await), vec![11]);
        reader.assert_quiet(QUIET).await;
    }
}

#[tokio::test]
async fn an_authority_is_sent_only_its_events_and_resumes_past_the_others() {
    let app = app(HubLimits::default()).await;
    let mut own = Vec::new();
    for i in 0..6 {
        let p = append_one(
            app.store(),
            &format!("application-{i}"),
            json!({ "i": i }),
            Some(if i % 2 == 0 {
                "lra-meissen"
            } else {
                "lra-bautzen"
            }),
        )
        .await;
        if i % 2 == 0 {
            own.push(p);
        }
    }
    let official = common::official("lra-meissen", &["14627"]);
    let mut reader = SseReader::new(app.subscribe_with(&official, "", None).await);
    let seen = positions(&reader.frames(own.len()).await);
    assert_eq!(seen, own);
    for frame_position in &seen {
        assert!(own.contains(frame_position));
    }
    reader.assert_quiet(QUIET).await;

    // Live, another authority's event is skipped and the next own one arrives.
    append_one(app.store(), "application-7", json!({}), Some("lra-bautzen")).await;
    let next_own = append_one(app.store(), "application-8", json!({}), Some("lra-meissen")).await;
    let frame = reader.frame().await;
    assert_eq!(frame.position(), next_own);
    assert_eq!(frame.json()["metadata"]["authority"], "lra-meissen");
    reader.assert_quiet(QUIET).await;

    // Resuming from the first own event gives the later own events, nothing else.
    let mut resumed = SseReader::new(
        app.subscribe_with(&official, "", Some(&own[0].to_string()))
            .await,
    );
    let mut expected: Vec<u64> = own[1..].to_vec();
    expected.push(next_own);
    assert_eq!(positions(&resumed.frames(expected.len()).await), expected);
    resumed.assert_quiet(QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_is_disconnected_without_slowing_writers_and_resumes_exactly_once() {
    let app = app(HubLimits {
        buffer: 8,
        max_clients: 10,
    })
    .await;
    append(app.store(), 3).await;
    let mut slow = app.subscribe("", None).await;
    assert_eq!(positions(&slow.frames(3).await), range(1, 3));

    // The subscriber stops reading; the writers go on, far beyond its buffer, and each
    // append completes on its own.
    let started = Instant::now();
    for i in 0..100 {
        tokio::time::timeout(
            Duration::from_secs(5),
            append_one(app.store(), "consent-9", json!({ "i": i }), None),
        )
        .await
        .expect("an append waited for a subscriber that does not read");
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(20), "appends took {took:?}");
    // Let the live feed hand everything out before the subscriber looks again.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // It is told that it was too slow, and from where to resume.
    let mut delivered = vec![1, 2, 3];
    let disconnect = loop {
        let frame = slow.frame().await;
        if frame.event.as_deref() == Some("disconnect") {
            break frame;
        }
        delivered.extend(positions(std::slice::from_ref(&frame)));
    };
    let last = *delivered.last().expect("delivered");
    assert_eq!(delivered, range(1, last), "delivered before the disconnect");
    let body = disconnect.json();
    assert_eq!(body["reason"], "slow-consumer", "{body}");
    assert_eq!(body["last_event_id"], last, "{body}");
    assert_eq!(disconnect.id.as_deref(), Some(last.to_string().as_str()));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(
        last < 103,
        "the subscriber was sent everything; it was never behind"
    );
    assert_eq!(slow.next(Duration::from_secs(5)).await, Next::End);
    drop(slow);

    // Resuming from there delivers the rest, each event once.
    let mut resumed = app.subscribe("", Some(&last.to_string())).await;
    assert_eq!(
        positions(&resumed.frames((103 - last) as usize).await),
        range(last + 1, 103)
    );
    resumed.assert_quiet(QUIET).await;

    // Operators can see it happen.
    let metrics = common::send(
        &app.app,
        common::request("GET", "/metrics", None, Body::empty()),
    )
    .await;
    let text = String::from_utf8_lossy(&metrics.bytes);
    assert!(
        text.lines()
            .any(|l| l.starts_with("amtsbuch_sse_disconnects_total{reason=\"slow-consumer\"} 1")),
        "{text}"
    );
}

fn assert_problem(response: &common::Reply, status: StatusCode, kind: &str) {
    assert_eq!(response.status, status, "{}", response.json());
    assert_eq!(response.media_type(), "application/problem+json");
    assert_eq!(
        response.json()["type"],
        format!("urn:amtsbuch:problem:{kind}")
    );
    assert!(response.json()["detail"].is_string());
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_get_503_until_one_ends() {
    let app = app(HubLimits {
        buffer: 64,
        max_clients: 2,
    })
    .await;
    append(app.store(), 2).await;
    let mut first = app.subscribe("", None).await;
    let second = app.subscribe("", None).await;
    let token = common::token(Role::Operator);
    let refused = common::send(
        &app.app,
        common::request("GET", "/events/stream", Some(&token), Body::empty()),
    )
    .await;
    assert_problem(
        &refused,
        StatusCode::SERVICE_UNAVAILABLE,
        "too-many-subscriptions",
    );
    // The open subscriptions are unaffected.
    assert_eq!(positions(&first.frames(2).await), range(1, 2));

    // When one ends, its place is free again.
    drop(second);
    let mut third = app.subscribe("", None).await;
    assert_eq!(positions(&third.frames(2).await), range(1, 2));
    let refused = common::send(
        &app.app,
        common::request("GET", "/events/stream", Some(&token), Body::empty()),
    )
    .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn bad_positions_get_400_and_take_no_place() {
    let app = app(HubLimits {
        buffer: 64,
        max_clients: 1,
    })
    .await;
    append(app.store(), 1).await;
    let token = common::token(Role::Operator);
    for (query, last_event_id) in [
        ("", Some(HeaderValue::from_static("abc"))),
        ("", Some(HeaderValue::from_static("-1"))),
        ("", Some(HeaderValue::from_static("1.5"))),
        ("", Some(HeaderValue::from_static(""))),
        ("", Some(HeaderValue::from_static("18446744073709551616"))),
        ("", Some(HeaderValue::from_bytes(b"\xff1").expect("header"))),
        ("?after=x", None),
        ("?after=-3", None),
        ("?after=", None),
        ("?colour=red", None),
        // A bad header is refused even when the query is fine, and a bad query even when
        // the header wins.
        ("?after=0", Some(HeaderValue::from_static("x"))),
        ("?after=x", Some(HeaderValue::from_static("0"))),
    ] {
        let mut r = Request::get(format!("/events/stream{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(v) = last_event_id.clone() {
            r = r.header("last-event-id", v);
        }
        let reply = common::send(&app.app, r.body(Body::empty()).expect("request")).await;
        let what = format!("{query:?} with Last-Event-ID {last_event_id:?}");
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{what}");
        assert_problem(&reply, StatusCode::BAD_REQUEST, "invalid-query");
    }
    // Positions this log has not reached: the client's position is from another log, and
    // waiting for this one to grow past it would skip every event up to it. Well-formed,
    // but in conflict with this log.
    for (query, last_event_id) in [("", Some("2")), ("?after=5", None)] {
        let mut r = Request::get(format!("/events/stream{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(v) = last_event_id {
            r = r.header("last-event-id", v);
        }
        let reply = common::send(&app.app, r.body(Body::empty()).expect("request")).await;
        assert_problem(&reply, StatusCode::CONFLICT, "beyond-the-log");
    }
    // None of them held on to the one place this server has.
    let mut reader = app.subscribe("", None).await;
    assert_eq!(positions(&reader.frames(1).await), vec![1]);
}

/// A subscription is authorized once, when it starts, so it must not outlive the token
/// that authorized it: at the token's `exp` the server ends it with a `disconnect` that
/// says so and where to resume, and sends nothing after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_token_expires() {
    let app = app(HubLimits::default()).await;
    append(app.store(), 2).await;
    let mut request = common::request_for(Role::Operator, "lra-meissen", &[]);
    request.ttl = Duration::from_secs(2);
    let token = common::signed(&request);
    let mut reader = SseReader::new(app.subscribe_with(&token, "", None).await);
    assert_eq!(positions(&reader.frames(2).await), range(1, 2));

    let Next::Frame(frame) = reader.next(Duration::from_secs(5)).await else {
        panic!("the subscription went on past its token's expiry");
    };
    assert_eq!(frame.event.as_deref(), Some("disconnect"), "{frame:?}");
    let body = frame.json();
    assert_eq!(body["reason"], "token-expired", "{body}");
    assert_eq!(body["last_event_id"], 2, "{body}");
    append(app.store(), 1).await;
    assert!(
        matches!(reader.next(Duration::from_secs(2)).await, Next::End),
        "an event was sent after the token expired"
    );
}
