//! Recovery after faults, through the binary: two servers on one PostgreSQL database that
//! is restarted the hard way (`pg_ctl stop -m immediate`) keep one leader per job at a time.
//! Each test that stops a database runs a PostgreSQL server of its own (`PgServer`), never
//! the machine's shared one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use amtsbuch_testkit::{keygen, run_cli, wait_relayed, NatsServer, PgServer, Server, TempDir};
use serde_json::json;
use sqlx::Connection;

/// Appends from both servers, one after the other, until `stop` is set; failures (while the
/// database is away) are expected and ignored.
fn keep_appending(
    servers: Vec<amtsbuch_testkit::Client>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut accepted = 0;
        let mut n = 0u64;
        while !stop.load(Ordering::SeqCst) {
            let client = &servers[(n % servers.len() as u64) as usize];
            let body = json!([{ "type": "Noted", "data": { "n": n } }]).to_string();
            let stream = format!("application-{}", n % 7);
            if let Ok(r) = client
                .request(
                    "POST",
                    &format!("/streams/{stream}/events"),
                    &[("Expected-Version", "any")],
                    &body,
                )
                .await
            {
                if r.status == 201 {
                    accepted += 1;
                }
            }
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        accepted
    })
}

/// When a server held a role, from its log: one `(from, until)` per tenure, the times as
/// the log writes them (RFC 3339 UTC of one width, so that text order is time order);
/// `until` is `None` for a tenure that lasted to the end of the log.
fn tenures(log: &str, starts: &str, ends: &[&str]) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for line in log.lines() {
        let Some(time) = line.split_whitespace().next() else {
            continue;
        };
        let open = out.last().is_some_and(|(_, until)| until.is_none());
        if line.contains(starts) && !open {
            out.push((time.to_owned(), None));
        } else if open && ends.iter().any(|e| line.contains(e)) {
            if let Some(last) = out.last_mut() {
                last.1 = Some(time.to_owned());
            }
        }
    }
    out
}

/// Panics if a tenure of one server overlaps one of the other's.
fn assert_one_at_a_time(
    role: &str,
    a: &[(String, Option<String>)],
    b: &[(String, Option<String>)],
) {
    let ends_before =
        |until: &Option<String>, from: &String| until.as_ref().is_some_and(|u| u <= from);
    for x in a {
        for y in b {
            assert!(
                ends_before(&x.1, &y.0) || ends_before(&y.1, &x.0),
                "two servers held the {role} at once: {x:?} on one and {y:?} on the other"
            );
        }
    }
}

async fn head(url: &str) -> u64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
        .fetch_one(&mut conn)
        .await
        .expect("head");
    u64::try_from(head).expect("not negative")
}

async fn signed_size(url: &str) -> u64 {
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else {
        return 0;
    };
    let size: Option<i64> = sqlx::query_scalar("SELECT max(size) FROM checkpoints")
        .fetch_one(&mut conn)
        .await
        .unwrap_or(None);
    size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0)
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Two servers share a database, a signing key and a NATS stream. The database is killed
/// (`-m immediate`) and started again while both append. Afterwards the ledger signer and
/// the relay changed hands at most cleanly: no server started a job while the other still
/// held it, nobody saw a conflict that only two leaders cause, the ledger signs again and
/// the stream holds every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_across_a_postgresql_restart() {
    let pg = PgServer::start().await;
    let url = pg.create_database("amtsbuch").await;
    let nats = NatsServer::start().await;
    let dir = TempDir::new();
    let key = keygen(&dir.0, "e2e.amtsbuch/failover").await;
    let nats_url = nats.url();
    let args = [
        "--database-url",
        url.as_str(),
        "--nats-url",
        nats_url.as_str(),
        "--signing-key",
        key.as_str(),
        "--origin",
        "e2e.amtsbuch/failover",
        "--checkpoint-interval-ms",
        "100",
    ];
    let logs = [dir.0.join("a.log"), dir.0.join("b.log")];
    let filter = "info,amtsbuch_infra::ledger=debug";
    let a = Server::start_logging(&args, &dir.0, filter, Some(&logs[0])).await;
    let b = Server::start_logging(&args, &dir.0, filter, Some(&logs[1])).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = keep_appending(vec![a.client(), b.client()], stop.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while signed_size(&url).await == 0 {
        assert!(
            Instant::now() < deadline,
            "no checkpoint before the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    pg.stop_immediately();
    tokio::time::sleep(Duration::from_millis(300)).await;
    pg.start_again().await;
    let restarted = head(&url).await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::SeqCst);
    let accepted = load.await.expect("load");
    let last = head(&url).await;
    assert!(
        last > restarted,
        "appends went on after the restart ({accepted} accepted)"
    );

    // Both jobs carry on after the restart.
    wait_relayed(&nats_url, "AMTSBUCH", last, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while signed_size(&url).await < last {
        assert!(
            Instant::now() < deadline,
            "the ledger does not sign again after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.kill().await;
    b.kill().await;

    let (log_a, log_b) = (read_log(&logs[0]), read_log(&logs[1]));
    let ledger_ends = ["lost the ledger lease", "ledger stopped signing"];
    assert_one_at_a_time(
        "ledger",
        &tenures(&log_a, "this process signs the ledger", &ledger_ends),
        &tenures(&log_b, "this process signs the ledger", &ledger_ends),
    );
    let relay_ends = ["lost the relay lock"];
    assert_one_at_a_time(
        "relay",
        &tenures(&log_a, "this process relays the log to NATS", &relay_ends),
        &tenures(&log_b, "this process relays the log to NATS", &relay_ends),
    );
    for (name, log) in [("a", &log_a), ("b", &log_b)] {
        for alarm in [
            "lacks events it had acknowledged",
            "another process advanced the ledger",
        ] {
            assert!(
                !log.contains(alarm),
                "server {name} logged {alarm:?}, which only two leaders cause:\n{log}"
            );
        }
    }
    let messages = amtsbuch_testkit::stream_messages(&nats_url, "AMTSBUCH").await;
    let positions: Vec<u64> = messages.iter().map(|m| m.position()).collect();
    assert_eq!(positions, (1..=last).collect::<Vec<_>>());
}

/// One event whose `data.text` has `n` bytes.
fn sized_event(n: usize) -> String {
    json!([{ "type": "Noted", "data": { "text": "x".repeat(n) } }]).to_string()
}

/// The length of an event's stored record.
async fn record_len(server: &Server, event_id: &str) -> usize {
    let r = server.get(&format!("/events/{event_id}/record")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    r.body.len()
}

/// With NATS configured, the log takes exactly the records its server can carry: a record
/// of `max_payload` minus the relay's headers is accepted and delivered, one byte more is
/// refused with a 413 problem and nothing is stored. (A 1 MiB body on a server with the
/// default `max_payload` used to be accepted and stop the relay for good.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_accepts_only_records_its_nats_server_can_carry() {
    let max_payload = 64 * 1024;
    let nats = NatsServer::start_with_max_payload(Some(max_payload)).await;
    let dir = TempDir::new();
    let server = Server::start(&["--nats-url", &nats.url()], &dir.0).await;
    // Once its first event is in the stream, the relay has told the store the limit.
    let first = server
        .post_events("application-1", "any", &sized_event(1000))
        .await;
    assert_eq!(
        first.status,
        201,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    wait_relayed(&nats.url(), "AMTSBUCH", 1, Duration::from_secs(30)).await;
    let limit = max_payload - amtsbuch_infra::relay::MAX_HEADER_BYTES;

    // The same event with `grow` more bytes of data makes a record of exactly the limit.
    let id = first.json()["event_ids"][0]
        .as_str()
        .expect("id")
        .to_owned();
    let grow = limit - record_len(&server, &id).await;
    let too_large = server
        .post_events("application-1", "any", &sized_event(1000 + grow + 1))
        .await;
    assert_eq!(
        too_large.status,
        413,
        "{}",
        String::from_utf8_lossy(&too_large.body)
    );
    let problem = too_large.json();
    assert_eq!(problem["type"], "urn:amtsbuch:problem:record-too-large");
    assert_eq!(problem["max_record_bytes"], limit);
    assert_eq!(problem["record_bytes"], limit + 1);
    let stream = server.get("/streams/application-1/events").await.json();
    assert_eq!(
        stream["events"].as_array().map(Vec::len),
        Some(1),
        "nothing was stored"
    );

    let fits = server
        .post_events("application-1", "any", &sized_event(1000 + grow))
        .await;
    assert_eq!(fits.status, 201, "{}", String::from_utf8_lossy(&fits.body));
    let id = fits.json()["event_ids"][0].as_str().expect("id").to_owned();
    assert_eq!(record_len(&server, &id).await, limit);
    wait_relayed(&nats.url(), "AMTSBUCH", 2, Duration::from_secs(30)).await;
    server.kill().await;

    // Without NATS the limit is what a server with default settings carries (1 MiB): an
    // append of exactly 1 MiB, the largest body taken, is refused.
    let server = Server::start(&[], &dir.0).await;
    let body = sized_event(1024 * 1024 - sized_event(0).len());
    assert_eq!(body.len(), 1024 * 1024);
    let default = server.post_events("application-1", "any", &body).await;
    assert_eq!(
        default.status,
        413,
        "{}",
        String::from_utf8_lossy(&default.body)
    );
    assert_eq!(
        default.json()["max_record_bytes"],
        1024 * 1024 - amtsbuch_infra::relay::MAX_HEADER_BYTES
    );
    server.kill().await;
}

/// A record the relay cannot publish (stored before the server's `max_payload` was lowered)
/// stops the relay at its position, since every later event must follow it. That is not
/// silent: the error log names the position, `/readyz` answers 503 `relay-blocked` with it,
/// and once the operator raises `max_payload` the relay goes on by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_publish_an_event_says_where_and_goes_on_once_it_can() {
    let dir = TempDir::new();
    // Stored without NATS, under the default limit of 1 MiB.
    let server = Server::start(&[], &dir.0).await;
    for body in [sized_event(10), sized_event(100_000), sized_event(10)] {
        let r = server.post_events("application-1", "any", &body).await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    server.kill().await;

    let mut nats = NatsServer::start_with_max_payload(Some(64 * 1024)).await;
    let log = dir.0.join("serve.log");
    let server = Server::start_live(&["--nats-url", &nats.url()], &dir.0, "info", Some(&log)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let problem = loop {
        let r = server.get("/readyz").await;
        if r.status == 503 && r.json()["type"] == "urn:amtsbuch:problem:relay-blocked" {
            assert!(r.header("retry-after").is_some());
            break r.json();
        }
        assert!(
            Instant::now() < deadline,
            "readiness never reported the stuck relay: {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(problem["position"], 2, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("position 2")),
        "{problem}"
    );
    wait_relayed(&nats.url(), "AMTSBUCH", 1, Duration::from_secs(10)).await;
    let logged = read_log(&log);
    assert!(
        logged
            .lines()
            .any(|l| l.contains("ERROR") && l.contains("position 2")),
        "no error names the position:\n{logged}"
    );
    let metrics = String::from_utf8_lossy(&server.get("/metrics").await.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == "amtsbuch_relay_blocked_position 2"),
        "{metrics}"
    );

    nats.restart_with_max_payload(None).await;
    wait_relayed(&nats.url(), "AMTSBUCH", 3, Duration::from_secs(60)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "readiness did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = String::from_utf8_lossy(&server.get("/metrics").await.body).into_owned();
    assert!(
        metrics
            .lines()
            .any(|l| l == "amtsbuch_relay_blocked_position 0"),
        "{metrics}"
    );
    server.kill().await;
}

/// A tmpfs of its own, mounted for one test (which must run as root, as CI does) and
/// unmounted when dropped.
struct SmallDisk {
    dir: TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        assert!(
            amtsbuch_testkit::running_as_root(),
            "this test mounts a small tmpfs to fill it up, which needs root (CI runs as root)"
        );
        let dir = TempDir::new();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.0)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {}",
            dir.0.display()
        );
        Self { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir.0)
            .status();
    }
}

/// The embedded store on a disk that fills up: appends answer 503 and readiness says the
/// writer cannot write; once space is freed, the writer recovers by itself — no restart —
/// and the log verifies. (The writer's connection used to stay inside a transaction after
/// the first "database or disk is full", every later append answered 503 until a restart,
/// and `/readyz` stayed 200.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_store_recovers_by_itself_after_a_full_disk() {
    let disk = SmallDisk::mount("24m");
    let dir = TempDir::new();
    let url = format!("sqlite://{}/amtsbuch.db", disk.dir.0.display());
    let server = Server::start(&["--database-url", &url], &dir.0).await;
    let r = server
        .post_events("application-1", "any", &sized_event(10))
        .await;
    assert_eq!(r.status, 201);

    // Leave about 2 MiB free, then append until the disk is full.
    let ballast = disk.dir.0.join("ballast");
    let free = {
        let out = std::process::Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&disk.dir.0)
            .output()
            .expect("df");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .and_then(|l| l.trim().parse::<usize>().ok())
            .expect("free bytes")
    };
    std::fs::write(&ballast, vec![0u8; free.saturating_sub(2 << 20)]).expect("ballast");
    let mut accepted = 1;
    let failed = loop {
        let r = server
            .post_events("application-1", "any", &sized_event(200_000))
            .await;
        match r.status {
            201 => accepted += 1,
            503 => break r,
            other => panic!(
                "append answered {other}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
        assert!(accepted < 200, "the disk never filled up");
    };
    assert!(failed.header("retry-after").is_some());
    let ready = server.get("/readyz").await;
    assert_eq!(
        ready.status,
        503,
        "{}",
        String::from_utf8_lossy(&ready.body)
    );
    assert_eq!(ready.json()["type"], "urn:amtsbuch:problem:writer-failing");

    std::fs::remove_file(&ballast).expect("free the space");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get("/readyz").await.status != 200 {
        assert!(
            Instant::now() < deadline,
            "readiness did not recover after space was freed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..3 {
        let r = server
            .post_events("application-1", "any", &sized_event(200_000))
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        accepted += 1;
    }
    server.kill().await;
    let (code, out, err) = run_cli(&["verify", "--database-url", &url]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("ok: {accepted} events verified")),
        "{out}"
    );
}

/// While PostgreSQL is away, an append and `/readyz` answer 503 within about a second, the
/// append with `Retry-After`, readiness saying why (nothing accepts connections). The
/// same append retried once the database is back is stored once. (An append used to wait
/// 10 s for a pool connection, `/readyz` 2 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_fail_fast_while_the_database_is_away() {
    let pg = PgServer::start().await;
    let url = pg.create_database("amtsbuch").await;
    let dir = TempDir::new();
    let server = Server::start(&["--database-url", &url], &dir.0).await;
    let r = server
        .post_events("application-1", "any", &sized_event(10))
        .await;
    assert_eq!(r.status, 201);

    pg.stop_immediately();
    let address = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("host:port");
    let body = json!([{ "id": uuid::Uuid::now_v7(), "type": "Noted", "data": {} }]).to_string();
    for _ in 0..3 {
        let started = Instant::now();
        let r = server.post_events("application-1", "any", &body).await;
        let took = started.elapsed();
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.header("retry-after"), Some("1"));
        assert!(
            took < Duration::from_millis(1800),
            "the append took {took:?}"
        );

        let started = Instant::now();
        let r = server.get("/readyz").await;
        let took = started.elapsed();
        assert_eq!(r.status, 503);
        assert!(
            took < Duration::from_millis(1800),
            "readiness took {took:?}"
        );
        let detail = r.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("connection refused"), "{detail}");
        // The route is public: it names the kind of failure, never where the database
        // is (that is in the server's log).
        let port = address.rsplit(':').next().expect("port");
        assert!(
            !detail.contains(address) && !detail.contains(port) && !detail.contains("127.0.0.1"),
            "{detail}"
        );
    }

    pg.start_again().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let stored = loop {
        let r = server.post_events("application-1", "any", &body).await;
        if r.status == 201 {
            break r;
        }
        assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
        assert!(Instant::now() < deadline, "appends did not work again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let again = server.post_events("application-1", "any", &body).await;
    assert_eq!(again.status, 200, "a retry returns the original position");
    assert_eq!(
        again.json()["first_position"],
        stored.json()["first_position"]
    );
    assert_eq!(head(&url).await, 2);
    server.kill().await;
}

/// The connections the database sees from this node's application.
async fn connections_of(url: &str, database: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'amtsbuch'",
    )
    .bind(database)
    .fetch_one(&mut conn)
    .await
    .expect("count connections")
}

/// A node running everything (ledger, relay, read models, GDPR sweeper) under load holds
/// no more PostgreSQL connections than its budget, 16 by default (4 of them the background
/// pool's). (Each node used to hold about 27, and two nodes and a benchmark exhausted
/// `max_connections = 100`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_stays_within_its_connection_budget() {
    let pg = PgServer::start().await;
    let url = pg.create_database("amtsbuch").await;
    let nats = NatsServer::start().await;
    let dir = TempDir::new();
    let key = keygen(&dir.0, "e2e.amtsbuch/budget").await;
    let nats_url = nats.url();
    let server = Server::start(
        &[
            "--database-url",
            &url,
            "--nats-url",
            &nats_url,
            "--signing-key",
            &key,
            "--origin",
            "e2e.amtsbuch/budget",
        ],
        &dir.0,
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients = (0..8).map(|_| server.client()).collect();
    let load = keep_appending(clients, stop.clone());
    let mut most = 0;
    for _ in 0..40 {
        // Reads and appends at once, so that every pool is in use.
        let reads: Vec<_> = (0..8)
            .map(|_| {
                let c = server.client();
                tokio::spawn(async move { c.get("/events?after=0&limit=100").await.status })
            })
            .collect();
        most = most.max(connections_of(&pg.url("postgres"), "amtsbuch").await);
        for r in reads {
            assert_eq!(r.await.expect("read"), 200);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    load.await.expect("load");
    assert!(most <= 16, "the node held {most} connections");
    server.kill().await;
}

/// A server that cannot connect says why: nothing listening at the address, or a server
/// that refuses more clients — not "pool timed out" for both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_port_and_a_full_server_read_differently() {
    let dir = TempDir::new();
    let closed = format!(
        "postgres://postgres@127.0.0.1:{}/amtsbuch",
        amtsbuch_testkit::free_port()
    );
    let (code, out, err) = run_cli(&["verify", "--database-url", &closed]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");

    let pg = PgServer::start().await;
    let url = pg.create_database("amtsbuch").await;
    let mut admin = sqlx::PgConnection::connect(&pg.url("postgres"))
        .await
        .expect("connect");
    sqlx::query("ALTER SYSTEM SET max_connections = 8")
        .execute(&mut admin)
        .await
        .expect("limit connections");
    drop(admin);
    pg.stop_immediately();
    pg.start_again().await;
    let mut held = Vec::new();
    while let Ok(c) = sqlx::PgConnection::connect(&url).await {
        held.push(c);
        assert!(held.len() <= 8, "max_connections is not in force");
    }
    let (code, out, err) = run_cli(&["verify", "--database-url", &url]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("too many clients"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    drop(held);
    drop(dir);
}

/// `--db-connections` sets the node's budget: below what a node must cover it refuses to
/// start and says what the connections are for; at the minimum it serves within it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_budget_is_one_setting_and_too_small_a_one_is_refused() {
    let pg = PgServer::start().await;
    let url = pg.create_database("amtsbuch").await;
    let dir = TempDir::new();
    let out = tokio::process::Command::new(amtsbuch_testkit::binary())
        .args([
            "serve",
            "--dev",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &url,
        ])
        .args(["--db-connections", "5"])
        .current_dir(&dir.0)
        .env_remove("AMTSBUCH_DB_CONNECTIONS")
        .output()
        .await
        .expect("run serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--db-connections 5 cannot cover"), "{err}");
    assert!(
        err.contains("read models") && err.contains("at least 6"),
        "{err}"
    );

    let server = Server::start(&["--database-url", &url, "--db-connections", "6"], &dir.0).await;
    for n in 0..20 {
        let r = server
            .post_events("application-1", "any", &sized_event(n))
            .await;
        assert_eq!(r.status, 201);
        assert_eq!(server.get("/events?after=0&limit=100").await.status, 200);
    }
    let held = connections_of(&pg.url("postgres"), "amtsbuch").await;
    assert!(held <= 6, "the node held {held} connections");
    server.kill().await;
}
