//! An operator's first hour with the binary: a verifier that only reads what it checks and
//! refuses to vouch for a log that is not there, and a `serve` that checks its flags, the
//! files they name and its port before it creates anything, with error texts that say what
//! is wrong once.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use amtsbuch_testkit::{binary, free_port, PgServer, Server, TempDir, TestDatabase};
use sqlx::Connection;

/// Run `amtsbuch` in `cwd` to completion (at most 60 s); returns exit code, stdout, stderr.
async fn run_in(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    let child = tokio::process::Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env_remove("AMTSBUCH_NATS_URL")
        .env_remove("AMTSBUCH_LISTEN")
        .env_remove("AMTSBUCH_KEK")
        .env_remove("AMTSBUCH_SIGNING_KEY")
        .env_remove("AMTSBUCH_JWKS")
        .env_remove("AMTSBUCH_DEV")
        .env("AMTSBUCH_LOG", "info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start amtsbuch");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("amtsbuch {args:?} did not exit within 60 s"))
        .expect("run amtsbuch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The tables of a PostgreSQL database's public schema.
async fn tables(url: &str) -> Vec<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list tables")
}

/// A missing SQLite file is refused and not created, nor its directory.
#[tokio::test]
async fn verify_refuses_a_missing_database_file_and_creates_nothing() {
    let dir = TempDir::new();
    let (code, out, err) = run_in(
        &dir.0,
        &["verify", "--database-url", "sqlite://nothere/x.db"],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("ok:"), "{out}");
    assert!(
        err.contains("no database file") && err.contains("nothere/x.db"),
        "{err}"
    );
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));

    // The default URL, in a directory without data/: the same.
    let (code, out, err) = run_in(&dir.0, &["verify"]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("data/amtsbuch.db"), "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));
}

/// A PostgreSQL database without the log is refused and left without tables: the verifier
/// does not migrate it.
#[tokio::test]
async fn verify_does_not_migrate_an_empty_postgres_database() {
    let db = TestDatabase::create().await;
    let (code, out, err) = run_in(
        &std::env::temp_dir(),
        &["verify", "--database-url", &db.url],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(!out.contains("ok:"), "{out}");
    assert!(err.contains("holds no Amtsbuch log"), "{err}");
    assert_eq!(tables(&db.url).await, Vec::<String>::new());
    db.drop_now().await;
}

/// A log that exists but holds no event is refused too: "ok: 0 events" would vouch for
/// nothing. On SQLite the file is not written to.
#[tokio::test]
async fn verify_refuses_an_empty_log_on_both_stores() {
    let db = TestDatabase::create().await;
    let store = amtsbuch_infra::AnyStore::open(&db.url)
        .await
        .expect("migrate");
    drop(store);
    let (code, out, err) = run_in(
        &std::env::temp_dir(),
        &["verify", "--database-url", &db.url],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("is empty"), "{err}");
    db.drop_now().await;

    let dir = TempDir::new();
    let url = format!("sqlite://{}/log.db", dir.0.display());
    let store = amtsbuch_infra::AnyStore::open(&url).await.expect("create");
    drop(store);
    // Let the store's writer task finish closing its connection.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let file = dir.0.join("log.db");
    let before = std::fs::read(&file).expect("read the file");
    let (code, out, err) = run_in(&dir.0, &["verify", "--database-url", &url]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("is empty"), "{err}");
    assert_eq!(std::fs::read(&file).expect("read the file"), before);
}

/// A file that is not the log's database is refused with what was found, not verified as
/// an empty log.
#[tokio::test]
async fn verify_refuses_a_file_without_the_log() {
    let dir = TempDir::new();
    let file = dir.0.join("other.db");
    let url = format!("sqlite://{}", file.display());
    let mut conn = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
        .await
        .expect("create");
    sqlx::query("CREATE TABLE notes (id INTEGER)")
        .execute(&mut conn)
        .await
        .expect("create table");
    conn.close().await.expect("close");
    let (code, out, err) = run_in(&dir.0, &["verify", "--database-url", &url]).await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("holds no Amtsbuch log"), "{err}");
}

/// A log with events still verifies, read-only, while a server writes it.
#[tokio::test]
async fn verify_reads_a_live_embedded_log() {
    let dir = TempDir::new();
    let server = Server::start(&[], &dir.0).await;
    let r = server
        .post_events(
            "application-1",
            "no-stream",
            r#"[{"type":"Noted","data":{"n":1}}]"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let (code, out, err) = run_in(&dir.0, &["verify"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 events verified"), "{out}");
    server.kill().await;
}

/// `projections status` only looks: it refuses a missing file or a database without the
/// log and creates or migrates nothing, and on a live log it lists every read model.
#[tokio::test]
async fn projections_status_reads_only() {
    let dir = TempDir::new();
    let (code, out, err) = run_in(
        &dir.0,
        &[
            "projections",
            "status",
            "--database-url",
            "sqlite://nothere/x.db",
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("no database file"), "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));

    let db = TestDatabase::create().await;
    let (code, out, err) = run_in(
        &std::env::temp_dir(),
        &["projections", "status", "--database-url", &db.url],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("holds no Amtsbuch log"), "{err}");
    assert_eq!(tables(&db.url).await, Vec::<String>::new());
    db.drop_now().await;

    let server = Server::start(&[], &dir.0).await;
    let r = server
        .post_events(
            "notes-1",
            "no-stream",
            r#"[{"type":"Noted","data":{"n":1}}]"#,
        )
        .await;
    assert_eq!(r.status, 201);
    let (code, out, err) = run_in(&dir.0, &["projections", "status"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("log head: 1"), "{out}");
    assert!(out.contains("streams"), "{out}");
    server.kill().await;
}

/// Each flag that names a file whose content is wrong or missing stops `serve` before it
/// creates a database, a key or a directory, and before it says it serves.
#[tokio::test]
async fn serve_checks_the_files_it_is_given_before_it_creates_anything() {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let cases: [(&[&str], &str); 5] = [
        (&["--dev", "--origin", "bad origin"], "--origin"),
        (&["--dev", "--kek", "/nonexistent/kek"], "/nonexistent/kek"),
        (
            &["--dev", "--signing-key", "/nonexistent/signing.pk8"],
            "/nonexistent/signing.pk8",
        ),
        (
            &["--jwks", "/nonexistent/jwks.json"],
            "/nonexistent/jwks.json",
        ),
        (
            &["--dev", "--database-url", "mysql://localhost/amtsbuch"],
            "unsupported database URL",
        ),
    ];
    for (flags, says) in cases {
        let dir = TempDir::new();
        let mut args = vec!["serve", "--listen", &listen];
        args.extend_from_slice(flags);
        let (code, out, err) = run_in(&dir.0, &args).await;
        assert_ne!(code, 0, "{flags:?}: {out}{err}");
        assert!(err.contains(says), "{flags:?}: {err}");
        assert!(!err.contains("serving"), "{flags:?}: {err}");
        assert!(
            listing(&dir.0).is_empty(),
            "{flags:?} left {:?} behind",
            listing(&dir.0)
        );
    }
}

/// A port that is taken is found before anything is written, and said so.
#[tokio::test]
async fn serve_binds_its_port_before_it_writes_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let dir = TempDir::new();
    let (code, out, err) = run_in(&dir.0, &["serve", "--dev", "--listen", &addr]).await;
    assert_ne!(code, 0, "{out}{err}");
    assert!(err.contains(&addr) && err.contains("taken"), "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));
    drop(taken);
}

/// `--listen` takes a host name, and `--dev` still only on loopback.
#[tokio::test]
async fn serve_listens_on_a_host_name_and_keeps_dev_on_loopback() {
    let dir = TempDir::new();
    let port = free_port();
    let listen = format!("localhost:{port}");
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--dev", "--listen", &listen])
        .current_dir(&dir.0)
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env_remove("AMTSBUCH_NATS_URL")
        .env("AMTSBUCH_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start amtsbuch");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve --listen {listen} exited: {status}");
        }
        assert!(std::time::Instant::now() < deadline, "serve did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill().await;

    let dir = TempDir::new();
    let listen = format!("0.0.0.0:{}", free_port());
    let (code, _, err) = run_in(&dir.0, &["serve", "--dev", "--listen", &listen]).await;
    assert_ne!(code, 0);
    assert!(err.contains("--dev") && err.contains("refused"), "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));

    let (code, _, err) = run_in(&dir.0, &["serve", "--dev", "--listen", "localhost"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("no port"), "{err}");
}

/// An error whose text already carries its cause is printed once.
#[tokio::test]
async fn errors_are_printed_once() {
    let dir = TempDir::new();
    let (code, out, err) =
        run_in(&dir.0, &["token", "--role", "citizen", "--subject", "c-1"]).await;
    assert_ne!(code, 0, "{out}");
    assert_eq!(err.matches("requires").count(), 1, "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));
}

/// A wrong PostgreSQL port and a server that is full read differently when `serve`
/// starts, and neither as "pool timed out"; and nothing is written to the working
/// directory either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_says_whether_postgres_is_absent_or_full() {
    let dir = TempDir::new();
    let closed = format!("postgres://postgres@127.0.0.1:{}/amtsbuch", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let (code, out, err) = run_in(
        &dir.0,
        &[
            "serve",
            "--dev",
            "--listen",
            &listen,
            "--database-url",
            &closed,
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("connection refused"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    assert!(listing(&dir.0).is_empty(), "{:?}", listing(&dir.0));

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
    let (code, out, err) = run_in(
        &dir.0,
        &[
            "serve",
            "--dev",
            "--listen",
            &listen,
            "--database-url",
            &url,
        ],
    )
    .await;
    assert_ne!(code, 0, "{out}");
    assert!(err.contains("too many clients"), "{err}");
    assert!(!err.contains("pool timed out"), "{err}");
    drop(held);
}

/// The compose setup's sample key set (compose/try): a server that trusts it as a provider's
/// keys — without `--dev` — accepts the tokens `amtsbuch token` mints with the published
/// sample key, and refuses those of any other key.
#[tokio::test]
async fn the_sample_key_set_accepts_the_token_helpers_tokens_without_dev() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("compose")
        .join("try");
    let jwks = sample.join("jwks.json").display().to_string();
    let key = sample.join("token-key.pk8").display().to_string();
    let dir = TempDir::new();
    let port = free_port();
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--jwks", &jwks, "--jwt-issuer", "amtsbuch-dev"])
        .current_dir(&dir.0)
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env_remove("AMTSBUCH_NATS_URL")
        .env_remove("AMTSBUCH_DEV")
        .env("AMTSBUCH_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start amtsbuch");
    let (code, token, err) = run_in(
        &dir.0,
        &[
            "token",
            "--dev-key",
            &key,
            "--role",
            "operator",
            "--subject",
            "ops-1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (code, other, err) = run_in(
        &dir.0,
        &[
            "token",
            "--dev-key",
            "other.pk8",
            "--role",
            "operator",
            "--subject",
            "ops-1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let client = |token: &str| amtsbuch_testkit::Client {
        addr: format!("127.0.0.1:{port}"),
        token: token.trim().to_owned(),
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client(&token).request("GET", "/readyz", &[], "").await {
            if r.status == 200 {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("serve with the sample key set exited: {status}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        client(&token).get("/events?after=0&limit=1").await.status,
        200
    );
    assert_eq!(
        client(&other).get("/events?after=0&limit=1").await.status,
        401
    );
    let _ = child.kill().await;
}
