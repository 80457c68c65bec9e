//! The participation guide end to end: the `sh` blocks of docs/PARTICIPATION.md run, in
//! order, in one shell against a real `amtsbuch serve --dev` — on its embedded SQLite
//! store under `./data/` and on PostgreSQL — a land-use plan from its draft through a
//! refused 29-day display, the announcement, a statement with a receipt that verifies
//! offline, a refused late statement, the evaluation and weighing to the decision, so the
//! guide works as written. The statement's text is then looked for in every byte the
//! database holds (a `pg_dump`, or the SQLite file with its write-ahead log), and found
//! nowhere, while the plan's public title is found there.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use amtsbuch_testkit::{
    binary, on_both_adapters, run_cli_in, sh_blocks, Adapter, Server, TempDir, TestDatabase,
};
use tokio::process::Command;

/// What the guide's citizen writes; sealed, so never in the database in plaintext.
const STATEMENT: &str = "Meißner Straße ist für den neuen Verkehr zu schmal";

/// The plan's title, public, so in the database in plaintext: the search for the statement
/// looks where it would be found.
const TITLE: &str = "Bebauungsplan Nr. 57 Radebeul-Ost";

async fn cli(args: &[&str], cwd: &Path) {
    let (code, _, err) = run_cli_in(cwd, args).await;
    assert!(code == 0, "amtsbuch {args:?}: {err}");
}

/// The server as the guide starts it: `amtsbuch serve --dev` with its embedded SQLite store
/// under `./data/`, or on a PostgreSQL database of its own with keys made by
/// `amtsbuch keygen` and `amtsbuch kek generate`.
async fn server(adapter: Adapter, cwd: &Path) -> (Server, Option<TestDatabase>) {
    match adapter {
        Adapter::Sqlite => (Server::start(&[], cwd).await, None),
        Adapter::Postgres => {
            let db = TestDatabase::create().await;
            cli(
                &[
                    "keygen",
                    "--origin",
                    "beteiligung.example.sachsen.de/log",
                    "--out",
                    "keys",
                ],
                cwd,
            )
            .await;
            cli(&["kek", "generate", "--out", "keys/kek"], cwd).await;
            let server = Server::start(
                &[
                    "--database-url",
                    &db.url,
                    "--origin",
                    "beteiligung.example.sachsen.de/log",
                    "--signing-key",
                    "keys/amtsbuch-signing.pk8",
                    "--kek",
                    "keys/kek",
                ],
                cwd,
            )
            .await;
            (server, Some(db))
        }
    }
}

/// Every byte the server's database holds: a `pg_dump` of it, or the files under `./data/`
/// (the SQLite database with its write-ahead log).
fn every_byte(db: Option<&TestDatabase>, cwd: &Path) -> Vec<u8> {
    match db {
        Some(db) => {
            let dump = cwd.join("dump.sql");
            let status = std::process::Command::new("pg_dump")
                .arg("--dbname")
                .arg(&db.url)
                .arg("--file")
                .arg(&dump)
                .status()
                .expect("pg_dump must be installed (postgresql-client)");
            assert!(status.success(), "pg_dump failed");
            std::fs::read(&dump).expect("dump")
        }
        None => {
            let mut bytes = Vec::new();
            let mut files = 0;
            for entry in std::fs::read_dir(cwd.join("data")).expect("./data/") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    bytes.extend(std::fs::read(&path).expect("a file of ./data/"));
                    files += 1;
                }
            }
            assert!(files > 0, "the SQLite store is under ./data/");
            bytes
        }
    }
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn the_land_use_plan_guide_runs_as_written(adapter: Adapter) {
    let guide = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PARTICIPATION.md");
    let text = std::fs::read_to_string(&guide).expect("docs/PARTICIPATION.md");
    let script = sh_blocks(&text);
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    let (server, db) = server(adapter, &cwd).await;

    let bin_dir = binary().parent().expect("binary dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(&cwd)
        .env("PATH", path)
        .env("API", format!("http://{}", server.addr))
        .env("AMTSBUCH_LOG", "warn")
        .env_remove("AMTSBUCH_DEV_KEY")
        .env_remove("AMTSBUCH_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run bash");
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the guide's commands finish within 3 minutes")
        .expect("bash output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "a command of docs/PARTICIPATION.md failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "a display of 29 days: 422",
        "status: announced",
        "{\"contributions\":1,\"status\":\"active\"}",
        "listed: 0 of 1",
        "a statement after the end: 409",
        "status: evaluating",
        "weighed: partly_considered",
        "status: decided",
        "\"partly_considered\":1",
    ] {
        assert!(
            stdout.contains(expected),
            "expected {expected:?} in:\n{stdout}"
        );
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("ok: leaf")),
        "the receipt verifies offline:\n{stdout}"
    );

    // The statement's text is sealed: nothing the database holds has it in plaintext,
    // although the plan's public title is there.
    server.kill().await;
    let bytes = every_byte(db.as_ref(), &cwd);
    assert!(holds(&bytes, TITLE), "the copy holds the database");
    assert!(
        !holds(&bytes, STATEMENT),
        "the statement's text is in the database in plaintext"
    );
    if let Some(db) = db {
        db.drop_now().await;
    }
}

async fn run(adapter: Adapter, test: impl AsyncFnOnce(Adapter)) {
    test(adapter).await;
}

on_both_adapters!(using run; the_land_use_plan_guide_runs_as_written);
