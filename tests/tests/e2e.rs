//! End to end through the `amtsbuch` binary: serve on PostgreSQL and on the embedded
//! default, several processes on one database, tampering caught by `verify`, and the
//! database refusing to change the log.

use std::collections::HashMap;
use std::time::Duration;

use amtsbuch_infra::{PgStore, Subscription};
use amtsbuch_testkit::{run_cli, Server, TempDir, TestDatabase};
use serde_json::{json, Value};

fn one_event(n: u64) -> String {
    json!([{ "type": "ConsentGiven", "data": { "n": n, "categories": ["stammdaten"] } }])
        .to_string()
}

#[tokio::test]
async fn serves_on_the_embedded_default_without_any_flag_but_the_port() {
    let dir = TempDir::new();
    let server = Server::start(&[], &dir.0).await;
    let created = server
        .post_events("consent-1", "no-stream", &one_event(1))
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let read = server.get("/streams/consent-1/events").await;
    assert_eq!(read.json()["events"][0]["data"]["n"], 1);
    assert!(
        dir.0.join("data/amtsbuch.db").exists(),
        "the default store lives under ./data/"
    );
    server.kill().await;

    let (code, out, err) = run_cli(&[
        "verify",
        "--database-url",
        &format!("sqlite://{}/data/amtsbuch.db", dir.0.display()),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 events verified"), "{out}");
}

#[tokio::test]
async fn verify_names_the_position_of_a_changed_byte() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let server = Server::start(&["--database-url", &db.url], &dir.0).await;
    for i in 0..5 {
        let r = server
            .post_events(&format!("consent-{}", i % 2), "any", &one_event(i))
            .await;
        assert_eq!(r.status, 201);
    }
    server.kill().await;

    let (code, out, _) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("ok: 5 events verified, chain head "),
        "{out}"
    );

    // A superuser with plain SQL: the trigger must be switched off first, which is
    // itself what an audit would look for; the chain catches the change regardless.
    let mut conn = db.connect().await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_forbid_update_delete")
        .execute(&mut conn)
        .await
        .expect("disable trigger");
    sqlx::query("UPDATE events SET record = set_byte(record, 20, get_byte(record, 20) # 1) WHERE position = 3")
        .execute(&mut conn)
        .await
        .expect("tamper");
    let (code, out, _) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAILED at position 3:"), "{out}");
    assert!(out.contains("leaf hash"), "{out}");

    // Forging the leaf hash as well only moves the evidence to the chain.
    sqlx::query(
        "UPDATE events SET leaf_hash = sha256('\\x00'::bytea || record) WHERE position = 3",
    )
    .execute(&mut conn)
    .await
    .expect("forge leaf");
    let (code, out, _) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAILED at position 3:"), "{out}");
    assert!(out.contains("chain hash"), "{out}");
    drop(conn);
    db.drop_now().await;
}

#[tokio::test]
async fn the_database_refuses_to_change_or_delete_events() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let server = Server::start(&["--database-url", &db.url], &dir.0).await;
    assert_eq!(
        server
            .post_events("consent-1", "any", &one_event(1))
            .await
            .status,
        201
    );
    server.kill().await;
    let mut conn = db.connect().await;
    for statement in [
        "UPDATE events SET event_type = 'Forged'",
        "DELETE FROM events",
        "TRUNCATE events",
        "UPDATE log_head SET position = 0",
        "DELETE FROM log_head",
    ] {
        let err = sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect_err(statement);
        let msg = err.to_string();
        assert!(
            msg.contains("append-only") || msg.contains("only moves forward"),
            "{statement}: {msg}"
        );
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&mut conn)
        .await
        .expect("count");
    assert_eq!(count, 1);
    drop(conn);
    db.drop_now().await;
}

/// Three `amtsbuch` processes on one database, many concurrent clients on each, and a
/// subscriber reading alongside: every event exactly once, gapless, in commit order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_on_one_database_keep_positions_gapless() {
    const CLIENTS_PER_SERVER: u64 = 12;
    const APPENDS: u64 = 15;
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let mut servers = Vec::new();
    for _ in 0..3 {
        servers.push(std::sync::Arc::new(
            Server::start(&["--database-url", &db.url], &dir.0).await,
        ));
    }
    let total = servers.len() as u64 * CLIENTS_PER_SERVER * APPENDS;

    let store = PgStore::connect(&db.url).await.expect("subscriber store");
    let mut sub = Subscription::start(store.clone(), 0);
    let reader = tokio::spawn(async move {
        let mut next = 1;
        let mut versions: HashMap<String, u64> = HashMap::new();
        while next <= total {
            let e = tokio::time::timeout(Duration::from_secs(60), sub.next())
                .await
                .expect("subscriber stalled")
                .expect("open")
                .expect("event");
            assert_eq!(e.position, next, "gap or duplicate");
            let r = e.record().expect("record");
            let v = versions.entry(r.stream_id.as_str().to_owned()).or_insert(0);
            assert_eq!(r.stream_version, *v + 1);
            *v += 1;
            next += 1;
        }
    });

    let mut clients = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        for c in 0..CLIENTS_PER_SERVER {
            let server = server.clone();
            clients.push(tokio::spawn(async move {
                // Clients of different servers share streams, so expected versions race
                // across processes; a conflict is retried with the version it reports.
                let stream = format!("shared-{c}");
                let mut done = 0;
                while done < APPENDS {
                    let r = server
                        .post_events(&stream, "any", &one_event(s as u64 * 1000 + done))
                        .await;
                    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
                    done += 1;
                }
            }));
        }
    }
    for c in clients {
        c.await.expect("client");
    }
    tokio::time::timeout(Duration::from_secs(90), reader)
        .await
        .expect("reader finished")
        .expect("reader");

    let log = servers[0]
        .get(&format!("/events?after={}&limit=10", total - 1))
        .await
        .json();
    assert_eq!(log["events"].as_array().map(Vec::len), Some(1));
    let (code, out, _) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(&format!("ok: {total} events verified")),
        "{out}"
    );
    for s in servers {
        if let Ok(s) = std::sync::Arc::try_unwrap(s) {
            s.kill().await;
        }
    }
    drop(store);
    db.drop_now().await;
}

#[tokio::test]
async fn exact_expected_versions_race_safely_across_processes() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let a = Server::start(&["--database-url", &db.url], &dir.0).await;
    let b = Server::start(&["--database-url", &db.url], &dir.0).await;
    // Both processes try to append version 1 of the same stream at once: one wins.
    let (first, second) = (one_event(1), one_event(2));
    let (ra, rb) = tokio::join!(
        a.post_events("consent-x", "no-stream", &first),
        b.post_events("consent-x", "no-stream", &second)
    );
    let mut statuses = [ra.status, rb.status];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let loser: Value = if ra.status == 409 {
        ra.json()
    } else {
        rb.json()
    };
    assert_eq!(loser["actual_version"], 1);
    // Each process sees the other's append in its own version checks.
    assert_eq!(
        a.post_events("consent-x", "1", &one_event(3)).await.status,
        201
    );
    assert_eq!(
        b.post_events("consent-x", "2", &one_event(4)).await.status,
        201
    );
    assert_eq!(
        a.post_events("consent-x", "2", &one_event(5)).await.status,
        409
    );
    a.kill().await;
    b.kill().await;
    db.drop_now().await;
}

#[tokio::test]
async fn bad_flags_and_unreachable_databases_fail_clearly() {
    let dir = TempDir::new();
    let dev_key = dir.0.join("dev.pk8");
    let dev_key = dev_key.to_str().expect("path");
    let (code, _, err) = run_cli(&[
        "serve",
        "--database-url",
        "mysql://localhost/x",
        "--listen",
        "127.0.0.1:0",
        "--dev",
        "--dev-key",
        dev_key,
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("unsupported database URL"), "{err}");
    // Without any way to check tokens, the server would refuse every caller: it does not
    // start, and says what to configure.
    let (code, _, err) = run_cli(&["serve", "--listen", "127.0.0.1:0"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no token keys configured"), "{err}");
    // Development tokens are for loopback only.
    let (code, _, err) = run_cli(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--dev",
        "--dev-key",
        dev_key,
    ])
    .await;
    assert_ne!(code, 0);
    assert!(err.contains("--dev"), "{err}");
    let (code, _, err) = run_cli(&[
        "verify",
        "--database-url",
        "postgres://nobody:secret@127.0.0.1:1/none",
    ])
    .await;
    assert_ne!(code, 0);
    assert!(
        !err.contains("secret"),
        "the password leaked into the error: {err}"
    );
    let (code, _, err) = run_cli(&["serve", "--listen", "not-an-address"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("--listen"), "{err}");
}
