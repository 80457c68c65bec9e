//! Event distribution through the real binary: `amtsbuch serve` on PostgreSQL relaying to a
//! NATS JetStream server of the test's own, read the way a Fachverfahren reads it.
//!
//! What operators and Fachverfahren rely on, each checked against the stored log:
//!
//! - a server killed with SIGKILL in the middle of concurrent appends and restarted loses
//!   nothing and repeats nothing: the stream holds every committed event exactly once, in
//!   position order, with the stored bytes as payload; clients that lost an answer retry
//!   with the same event ids and get the original positions; the chain still verifies;
//! - while NATS is down, appends go on and stay fast; when it is back the relay catches up,
//!   again without loss, duplicates or reordering;
//! - a Fachverfahren sets up its durable consumer over HTTP with filters taken from its
//!   token, consumes exactly its authority's events of its service with the example
//!   consumer, resumes after the last acknowledged event, cannot take another authority's
//!   consumer, and sees the same events over Server-Sent Events, resuming with
//!   `Last-Event-ID`; an authority sees its events in its region.
//!
//! Figures (append latency during the outage, catch-up times) are printed, not asserted:
//! this machine is shared. Waiting is bounded by generous timeouts.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amtsbuch_testkit::{
    mint_token, run_cli, stream_messages, wait_relayed, wohngeld_token, Client, NatsServer, Server,
    TempDir, TestDatabase,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// The JetStream stream and subject prefix the servers in these tests publish to (each
/// test has a NATS server of its own, so fixed names do not collide).
const STREAM: &str = "E2E_EVENTS";
const PREFIX: &str = "e2e";

async fn serve(db: &TestDatabase, nats: &NatsServer, dir: &TempDir) -> Server {
    let url = nats.url();
    Server::start(
        &[
            "--database-url",
            &db.url,
            "--nats-url",
            &url,
            "--nats-stream",
            STREAM,
            "--nats-prefix",
            PREFIX,
        ],
        &dir.0,
    )
    .await
}

/// The stream holds every event of the log exactly once, in position order: positions
/// 1..=head at sequences 1..=head (nothing stored twice, nothing skipped), each with the
/// stored record bytes as payload and the event id as `Nats-Msg-Id`. Returns the head.
async fn assert_stream_holds_the_log(db: &TestDatabase, nats_url: &str) -> u64 {
    let log = db.events().await;
    let head = log.len() as u64;
    assert_eq!(
        log.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=head).collect::<Vec<_>>(),
        "the log itself is gapless"
    );
    assert_eq!(db.head().await, head, "log_head matches the events table");
    let messages = stream_messages(nats_url, STREAM).await;
    let positions: Vec<u64> = messages.iter().map(|m| m.position()).collect();
    if positions != (1..=head).collect::<Vec<_>>() {
        let mut seen = HashSet::new();
        let repeated: Vec<u64> = positions
            .iter()
            .copied()
            .filter(|p| !seen.insert(*p))
            .collect();
        let missing: Vec<u64> = (1..=head).filter(|p| !seen.contains(p)).collect();
        let disorder = positions.windows(2).position(|w| w[0] >= w[1]);
        panic!(
            "the stream must hold positions 1..={head} once each, in order; it holds {} messages, \
             repeated {repeated:?}, missing {missing:?}, first out of order at index {disorder:?}",
            messages.len()
        );
    }
    for (m, e) in messages.iter().zip(&log) {
        assert_eq!(
            m.sequence, e.position,
            "sequences run parallel to positions"
        );
        assert_eq!(
            m.payload, e.record,
            "the payload at position {} is the stored record",
            e.position
        );
        assert_eq!(
            m.header("Nats-Msg-Id"),
            Some(e.event_id.to_string().as_str()),
            "Nats-Msg-Id at position {}",
            e.position
        );
    }
    head
}

/// The body of one append: `count` events with ids chosen by the client, so that a retry
/// of the same body is recognised as the same append.
fn append_body(writer: u64, n: u64, count: u64) -> (String, Vec<Uuid>) {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let events: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(k, id)| {
            json!({
                "id": id,
                "type": "application.Submitted",
                "data": { "writer": writer, "n": n, "k": k },
                "metadata": { "authority": "lra-meissen", "service": "99108001000000", "tenant": "14627010" },
            })
        })
        .collect();
    (Value::Array(events).to_string(), ids)
}

/// Appends whose answers were received, and the one whose answer was lost (if any).
#[derive(Debug, Default)]
struct Appended {
    /// Event id → position, as acknowledged.
    acked: HashMap<Uuid, u64>,
    /// (stream, body) of an append sent but not answered.
    lost: Option<(String, String)>,
}

impl Appended {
    /// Take the ids and positions of a 200/201 answer.
    fn take_answer(&mut self, answer: &Value) {
        let ids = answer["event_ids"].as_array().expect("event_ids");
        let positions = answer["positions"].as_array().expect("positions");
        assert_eq!(ids.len(), positions.len(), "{answer}");
        for (id, p) in ids.iter().zip(positions) {
            let id: Uuid = id.as_str().and_then(|s| s.parse().ok()).expect("an id");
            self.acked.insert(id, p.as_u64().expect("a position"));
        }
    }
}

/// Append one to three events at a time to `stream` until `stop` is set or a request
/// fails (the server died): then that request's answer is lost, and it is kept for a retry.
async fn append_until_failure(
    client: Client,
    writer: u64,
    stop: Arc<AtomicBool>,
    pause: Duration,
) -> Appended {
    let stream = format!("application-w{writer}");
    let mut out = Appended::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let (body, _) = append_body(writer, n, 1 + n % 3);
        n += 1;
        let path = format!("/streams/{stream}/events");
        let sent = client.request("POST", &path, &[("Expected-Version", "any")], &body);
        match tokio::time::timeout(Duration::from_secs(30), sent).await {
            Ok(Ok(r)) if r.status == 201 => out.take_answer(&r.json()),
            Ok(Ok(r)) => panic!(
                "append answered {}: {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ),
            Ok(Err(_)) | Err(_) => {
                out.lost = Some((stream, body));
                return out;
            }
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    out
}

async fn wait_for_head(db: &TestDatabase, at_least: u64, within: Duration) {
    let deadline = Instant::now() + within;
    while db.head().await < at_least {
        assert!(
            Instant::now() < deadline,
            "the log did not reach {at_least} events within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Retry appends whose answers were lost, with the same bodies (and so the same event
/// ids): each is stored once, and the answer says whether it had been stored before.
/// Returns how many had been.
async fn retry_lost(
    client: &Client,
    lost: &[(String, String)],
    acked: &mut HashMap<Uuid, u64>,
) -> usize {
    let mut stored_before = 0;
    for (stream, body) in lost {
        let r = client.post_events(stream, "any", body).await;
        assert!(
            r.status == 200 || r.status == 201,
            "a retried append is stored once: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        assert_eq!(r.json()["duplicate"], r.status == 200);
        if r.status == 200 {
            stored_before += 1;
        }
        let mut answer = Appended::default();
        answer.take_answer(&r.json());
        acked.extend(answer.acked);
    }
    stored_before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_load_loses_and_repeats_nothing() {
    let started = Instant::now();
    let db = TestDatabase::create().await;
    let nats = NatsServer::start().await;
    let dir = TempDir::new();
    let mut acked = HashMap::new();
    let mut lost: Vec<(String, String)> = Vec::new();
    let (mut lost_total, mut stored_before) = (0, 0);
    let mut kills = Vec::new();

    // Three times: start the server, let the clients retry what they did not hear back
    // about, then append from eight clients at once until the server is killed under them.
    for round in 0..3u64 {
        let server = serve(&db, &nats, &dir).await;
        stored_before += retry_lost(&server.client(), &lost, &mut acked).await;
        let target = db.head().await + 300;
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..8)
            .map(|w| {
                tokio::spawn(append_until_failure(
                    server.client(),
                    round * 100 + w,
                    stop.clone(),
                    Duration::ZERO,
                ))
            })
            .collect();
        wait_for_head(&db, target, Duration::from_secs(60)).await;
        server.kill().await;
        let relayed = amtsbuch_testkit::stream_last_position(
            &amtsbuch_testkit::jetstream(&nats.url()).await,
            STREAM,
        )
        .await
        .unwrap_or(0);
        kills.push((db.head().await, relayed));
        lost.clear();
        for w in writers {
            let outcome = tokio::time::timeout(Duration::from_secs(60), w)
                .await
                .expect("every writer notices the dead server")
                .expect("writer");
            acked.extend(outcome.acked);
            lost.extend(outcome.lost);
        }
        assert!(
            !lost.is_empty(),
            "the server was killed while appends were in flight, so some answers were lost"
        );
        lost_total += lost.len();
    }

    // Restarted once more: the last retries, and life goes on.
    let server = serve(&db, &nats, &dir).await;
    let client = server.client();
    stored_before += retry_lost(&client, &lost, &mut acked).await;
    let target = db.head().await + 200;
    let stop = Arc::new(AtomicBool::new(false));
    let more: Vec<_> = (900..904)
        .map(|w| {
            tokio::spawn(append_until_failure(
                client.clone(),
                w,
                stop.clone(),
                Duration::ZERO,
            ))
        })
        .collect();
    wait_for_head(&db, target, Duration::from_secs(60)).await;
    stop.store(true, Ordering::Relaxed);
    for w in more {
        let outcome = w.await.expect("writer");
        assert!(outcome.lost.is_none(), "no append fails after the restart");
        acked.extend(outcome.acked);
    }

    let head = db.head().await;
    let waited = Instant::now();
    wait_relayed(&nats.url(), STREAM, head, Duration::from_secs(90)).await;
    let caught_up = waited.elapsed();
    assert_eq!(assert_stream_holds_the_log(&db, &nats.url()).await, head);

    // Every acknowledged append is in the log at the position it was acknowledged with,
    // and every event in the log was acknowledged to somebody (nothing was stored that
    // its client does not know about once the retries are done).
    let log: HashMap<Uuid, u64> = db
        .events()
        .await
        .into_iter()
        .map(|e| (e.event_id, e.position))
        .collect();
    for (id, position) in &acked {
        assert_eq!(
            log.get(id),
            Some(position),
            "acknowledged event {id} is in the log at {position}"
        );
    }
    assert_eq!(
        log.len(),
        acked.len(),
        "the log holds only acknowledged events"
    );

    let (code, out, err) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("ok: {head} events verified")),
        "{out}"
    );
    println!(
        "crash: killed at (head, stream end) {kills:?}; {lost_total} answers lost, {stored_before} \
         of them stored before the kill; head {head}; relay caught up {caught_up:?} after the \
         last append; test took {:?}",
        started.elapsed()
    );
    server.kill().await;
    db.drop_now().await;
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// `amtsbuch_relay_lag_events` from `GET /metrics`.
async fn relay_lag(client: &Client) -> Option<f64> {
    let r = client.request("GET", "/metrics", &[], "").await.ok()?;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix("amtsbuch_relay_lag_events "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_holds_up_no_append_and_loses_nothing() {
    let started = Instant::now();
    let db = TestDatabase::create().await;
    let mut nats = NatsServer::start().await;
    let dir = TempDir::new();
    let server = serve(&db, &nats, &dir).await;
    let client = server.client();

    // Four clients append single events continuously, noting each append's status and
    // when it started and ended.
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (client, stop) = (client.clone(), stop.clone());
            tokio::spawn(async move {
                let mut log = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (body, _) = append_body(w, n, 1);
                    n += 1;
                    let begun = Instant::now();
                    let r = client
                        .post_events(&format!("payment-w{w}"), "any", &body)
                        .await;
                    log.push((begun, Instant::now(), r.status));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                log
            })
        })
        .collect();
    wait_for_head(&db, 50, Duration::from_secs(60)).await;
    wait_relayed(&nats.url(), STREAM, 50, Duration::from_secs(60)).await;

    // NATS dies; appends go on while the relay cannot publish.
    nats.kill();
    let down = Instant::now();
    let head_at_kill = db.head().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lag_during = relay_lag(&client).await.expect("the relay lag metric");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        lag_during > 0.0,
        "the relay lag metric shows the events NATS has not got"
    );
    nats.restart().await;
    let up = Instant::now();
    let head_at_restart = db.head().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let mut appends = Vec::new();
    for w in writers {
        appends.extend(w.await.expect("writer"));
    }

    let refused: Vec<u16> = appends
        .iter()
        .map(|(_, _, s)| *s)
        .filter(|s| *s != 201)
        .collect();
    assert!(refused.is_empty(), "every append succeeds: {refused:?}");
    let mut during: Vec<Duration> = appends
        .iter()
        .filter(|(b, e, _)| *b >= down && *e <= up)
        .map(|(b, e, _)| e.saturating_duration_since(*b))
        .collect();
    let mut outside: Vec<Duration> = appends
        .iter()
        .filter(|(b, e, _)| *e < down || *b > up)
        .map(|(b, e, _)| e.saturating_duration_since(*b))
        .collect();
    // Appends never wait for NATS: while it was down for seconds, many appends were made
    // and answered, start to finish.
    assert!(
        during.len() >= 20 && head_at_restart >= head_at_kill + 20,
        "appends went on while NATS was down: {} appends, head {head_at_kill} → {head_at_restart}",
        during.len()
    );
    during.sort_unstable();
    outside.sort_unstable();

    let head = db.head().await;
    let waited = Instant::now();
    wait_relayed(&nats.url(), STREAM, head, Duration::from_secs(90)).await;
    let caught_up = waited.elapsed();
    assert_eq!(assert_stream_holds_the_log(&db, &nats.url()).await, head);
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay_lag(&client).await != Some(0.0) {
        assert!(
            Instant::now() < deadline,
            "the relay lag metric returns to 0"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "outage: NATS down {:?}; {} appends during it, all 201: p50 {:?}, p99 {:?}, max {:?} \
         (outside it: {} appends, p50 {:?}, p99 {:?}, max {:?}); relay lag {lag_during} after 2 s; \
         caught up to {head} {caught_up:?} after the last append; test took {:?}",
        up - down,
        during.len(),
        percentile(&during, 0.5),
        percentile(&during, 0.99),
        during.last().copied().unwrap_or_default(),
        outside.len(),
        percentile(&outside, 0.5),
        percentile(&outside, 0.99),
        outside.last().copied().unwrap_or_default(),
        started.elapsed()
    );
    server.kill().await;
    db.drop_now().await;
}

// ---------------------------------------------------------------------------------------
// A Fachverfahren.

const AUTHORITIES: [Option<&str>; 3] = [Some("lra-meissen"), Some("lra-bautzen"), None];
const SERVICES: [Option<&str>; 3] = [Some("99108001000000"), Some("99108002000000"), None];
const TENANTS: [Option<&str>; 3] = [Some("14627010"), Some("14625020"), None];
const KINDS: [(&str, &str); 3] = [
    ("application", "application.Submitted"),
    ("payment", "payment.Settled"),
    ("consent", "ConsentGiven"),
];

/// Append event `n`: authority, service, tenant and kind vary with `n` so that every
/// combination occurs.
async fn append_routed(client: &Client, n: usize) {
    let (category, event_type) = KINDS[n % 3];
    let mut metadata = serde_json::Map::new();
    for (key, value) in [
        ("authority", AUTHORITIES[(n / 3) % 3]),
        ("service", SERVICES[(n / 9) % 3]),
        ("tenant", TENANTS[(n / 27) % 3]),
    ] {
        if let Some(v) = value {
            metadata.insert(key.into(), v.into());
        }
    }
    let body = json!([{ "id": Uuid::now_v7(), "type": event_type, "data": { "n": n }, "metadata": metadata }]);
    let r = client
        .post_events(&format!("{category}-{}", n % 4), "any", &body.to_string())
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

/// Positions of the stored events `keep` selects by their record, after `after`.
async fn positions_where(db: &TestDatabase, after: u64, keep: impl Fn(&Value) -> bool) -> Vec<u64> {
    db.events()
        .await
        .into_iter()
        .filter(|e| e.position > after && keep(&e.json))
        .map(|e| e.position)
        .collect()
}

fn for_wohngeld(record: &Value) -> bool {
    record["authority"] == "lra-meissen" && record["service"] == "99108001000000"
}

fn for_meissen_region(record: &Value) -> bool {
    record["authority"] == "lra-meissen"
        && record["tenant"]
            .as_str()
            .is_none_or(|tenant| tenant.starts_with("14627"))
}

/// Run the example consumer until it has been idle for three seconds; its output lines.
async fn run_fachverfahren(nats_url: &str, consumer: &str) -> Vec<Value> {
    let run = tokio::process::Command::new(amtsbuch_testkit::example("fachverfahren"))
        .args([
            "--consumer",
            consumer,
            "--stream",
            STREAM,
            "--nats-url",
            nats_url,
        ])
        .args(["--idle-exit", "3"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the example consumer ends when idle")
        .expect("run the example consumer");
    assert!(
        out.status.success(),
        "the example consumer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// The consumer printed exactly `expected`, in order, each checked against its leaf hash
/// and the log.
async fn assert_consumed(db: &TestDatabase, lines: &[Value], expected: &[u64]) {
    let printed: Vec<u64> = lines
        .iter()
        .map(|l| l["position"].as_u64().expect("position"))
        .collect();
    assert_eq!(printed, expected, "exactly its events, in order");
    let log: HashMap<u64, amtsbuch_testkit::StoredEvent> = db
        .events()
        .await
        .into_iter()
        .map(|e| (e.position, e))
        .collect();
    for line in lines {
        let e = &log[&line["position"].as_u64().expect("position")];
        assert_eq!(line["leaf_hash_ok"], true, "{line}");
        assert_eq!(line["event_id"], e.event_id.to_string(), "{line}");
        let stream = e.json["stream_id"].as_str().expect("stream_id");
        let category = stream.split_once('-').map_or(stream, |(c, _)| c);
        let event_type = e.json["event_type"].as_str().expect("event_type");
        assert_eq!(
            line["subject"],
            format!(
                "{PREFIX}.{category}.lra-meissen.{}.99108001000000",
                event_type.replace('.', ":")
            ),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fachverfahren_gets_exactly_its_events_over_nats_and_sse() {
    let started = Instant::now();
    let db = TestDatabase::create().await;
    let nats = NatsServer::start().await;
    let dir = TempDir::new();
    let server = serve(&db, &nats, &dir).await;
    let operator = server.client();
    for n in 0..81 {
        append_routed(&operator, n).await;
    }
    let first_head = db.head().await;
    wait_relayed(&nats.url(), STREAM, first_head, Duration::from_secs(60)).await;

    // The Fachverfahren sets up its consumer; the filter comes from its token.
    let fv = wohngeld_token(&dir.0).await;
    let fv_auth = format!("Bearer {fv}");
    let put = |name: &'static str, body: &'static str| {
        let (operator, auth) = (operator.clone(), fv_auth.clone());
        async move {
            operator
                .request(
                    "PUT",
                    &format!("/subscriptions/nats/{name}"),
                    &[("Authorization", auth.as_str())],
                    body,
                )
                .await
                .expect("put consumer")
        }
    };
    let expected = positions_where(&db, 0, for_wohngeld).await;
    assert!(expected.len() >= 6, "the workload has events for it");
    let r = put("lra-meissen-wohngeld", "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let view = r.json();
    assert_eq!(
        view["filter_subjects"],
        json!([format!("{PREFIX}.*.lra-meissen.*.99108001000000")])
    );
    assert_eq!(view["stream"], STREAM);
    assert_eq!(view["consumer"], "lra-meissen-wohngeld");
    assert_eq!(view["pending"], expected.len());

    let lines = run_fachverfahren(&nats.url(), "lra-meissen-wohngeld").await;
    assert_consumed(&db, &lines, &expected).await;

    // More events, the last one visible to everybody below (a marker to read up to).
    for n in 81..108 {
        append_routed(&operator, n).await;
    }
    let marker = json!([{ "id": Uuid::now_v7(), "type": "application.Decided", "data": {},
        "metadata": { "authority": "lra-meissen", "service": "99108001000000", "tenant": "14627010" } }]);
    let r = operator
        .post_events("application-marker", "any", &marker.to_string())
        .await;
    assert_eq!(r.status, 201);
    let head = db.head().await;
    wait_relayed(&nats.url(), STREAM, head, Duration::from_secs(60)).await;

    // Started again, it resumes after the last event it acknowledged.
    let newer = positions_where(&db, first_head, for_wohngeld).await;
    assert!(newer.len() >= 2);
    let lines = run_fachverfahren(&nats.url(), "lra-meissen-wohngeld").await;
    assert_consumed(&db, &lines, &newer).await;

    // Another authority's consumer, or filters of its own choosing, are not its to set up.
    let r = put("lra-bautzen-wohngeld", "").await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let r = put("lra-meissen-alles", r#"{"filter_subjects":["e2e.>"]}"#).await;
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));

    // Over Server-Sent Events it sees the same events, and resumes with Last-Event-ID.
    let all = positions_where(&db, 0, for_wohngeld).await;
    assert_eq!(all.last(), Some(&head), "the marker is the last event");
    let mut sse = server.subscribe(&fv, None).await;
    let frames = sse.events_until(head, Duration::from_secs(30)).await;
    let got: Vec<u64> = frames.iter().map(|f| f.position()).collect();
    assert_eq!(got, all, "SSE delivers exactly the Fachverfahren's events");
    for f in &frames {
        let event = f.json();
        assert_eq!(event["position"], f.position());
        assert_eq!(event["metadata"]["authority"], "lra-meissen");
        assert_eq!(event["metadata"]["service"], "99108001000000");
    }
    drop(sse);
    let resume_at = all[2];
    let mut sse = server.subscribe(&fv, Some(resume_at)).await;
    let frames = sse.events_until(head, Duration::from_secs(30)).await;
    let got: Vec<u64> = frames.iter().map(|f| f.position()).collect();
    assert_eq!(got, all[3..], "a reconnect resumes after Last-Event-ID");
    drop(sse);

    // An authority sees its events in its region (and its events without a tenant).
    let authority = mint_token(
        &dir.0,
        &[
            "--role",
            "authority",
            "--subject",
            "sb-meissen",
            "--authority",
            "lra-meissen",
            "--region",
            "14627",
        ],
    )
    .await;
    let in_region = positions_where(&db, 0, for_meissen_region).await;
    assert!(in_region.len() > all.len());
    let mut sse = server.subscribe(&authority, None).await;
    let frames = sse.events_until(head, Duration::from_secs(30)).await;
    let got: Vec<u64> = frames.iter().map(|f| f.position()).collect();
    assert_eq!(got, in_region, "an authority sees its region's events");
    drop(sse);

    println!(
        "fachverfahren: {} of {head} events for lra-meissen/99108001000000, {} in the authority's region; test took {:?}",
        all.len(),
        in_region.len(),
        started.elapsed()
    );
    server.kill().await;
    db.drop_now().await;
}
