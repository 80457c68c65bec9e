//! The guides as tests: the `sh` blocks of docs/APPLICANT.md (a portal's calls, from the
//! form to the receipt checked offline with `amtsbuch verify-proof` and the log's public
//! key, and the data hash recomputed from the data), and those of section 8 of
//! docs/FACHVERFAHREN.md (the example Fachverfahren receiving the application over NATS
//! and answering it with reception and decision), run with bash, in order, against a real
//! `amtsbuch serve` — on its embedded SQLite store and on PostgreSQL. Blocks with another
//! info string (`sh server`, `sh build`, `sh by hand`) are what a reader runs elsewhere or
//! may run; the test starts the server itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::common;
use common::{run_cli_in, sh_blocks, NatsServer, Server, TempDir, TestDatabase};

/// The text of `docs/<name>`.
fn guide(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The part of `text` from the heading `from` (inclusive) to the heading `to` (exclusive,
/// or the end).
fn section<'a>(text: &'a str, from: &str, to: Option<&str>) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("the guide has a heading {from:?}"));
    let rest = &text[start..];
    match to {
        Some(to) => &rest[..rest.find(to).unwrap_or(rest.len())],
        None => rest,
    }
}

/// Run `script` with bash in `cwd` (`set -euo pipefail`), with `amtsbuch` and the example
/// programs on the PATH; its standard output. Fails the test if a command fails.
async fn bash(script: &str, cwd: &Path, env: &[(&str, String)]) -> String {
    let bin_dir = common::binary().parent().expect("binary dir").to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin_dir.display(),
        bin_dir.join("examples").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = tokio::process::Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(cwd)
        .env("PATH", path)
        .env("AMTSBUCH_LOG", "warn")
        .env_remove("AMTSBUCH_DEV_KEY")
        .env_remove("AMTSBUCH_DATABASE_URL")
        .env_remove("AMTSBUCH_TOKEN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        cmd.spawn().expect("run bash").wait_with_output(),
    )
    .await
    .expect("the guide's commands finish within 3 minutes")
    .expect("bash output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "a command of the guide failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn assert_lines(out: &str, expected: &[&str]) {
    for e in expected {
        assert!(
            out.lines().any(|l| l.trim() == *e),
            "expected the line {e:?} in:\n{out}"
        );
    }
}

/// A server as the guide's first section starts it, on `adapter`'s store (the embedded
/// SQLite store under `./data/`, or a PostgreSQL database of its own with keys made by
/// `amtsbuch keygen` and `amtsbuch kek generate`), relaying to `nats` if given.
async fn server(
    adapter: common::Adapter,
    cwd: &Path,
    nats: Option<&NatsServer>,
) -> (Server, Option<TestDatabase>) {
    let mut args: Vec<String> = Vec::new();
    let db = match adapter {
        common::Adapter::Sqlite => None,
        common::Adapter::Postgres => {
            let db = TestDatabase::create().await;
            for cli in [
                &["keygen", "--origin", "portal.example/log", "--out", "keys"][..],
                &["kek", "generate", "--out", "keys/kek"][..],
            ] {
                let (code, _, err) = run_cli_in(cwd, cli).await;
                assert_eq!(code, 0, "amtsbuch {cli:?}: {err}");
            }
            args.extend(
                [
                    "--database-url",
                    &db.url,
                    "--origin",
                    "portal.example/log",
                    "--signing-key",
                    "keys/amtsbuch-signing.pk8",
                    "--kek",
                    "keys/kek",
                ]
                .map(str::to_owned),
            );
            Some(db)
        }
    };
    if let Some(nats) = nats {
        args.extend(["--nats-url".to_owned(), nats.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args, cwd).await, db)
}

/// docs/APPLICANT.md, every `sh` block in order: the application is submitted, its receipt
/// verifies offline and names the data, the authority's request is answered, the reads are
/// listed, the application is withdrawn.
async fn the_applicant_guide_works(adapter: common::Adapter) {
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    let (server, db) = server(adapter, &cwd, None).await;
    let script = sh_blocks(&guide("APPLICANT.md"));
    let out = bash(&script, &cwd, &[("API", format!("http://{}", server.addr))]).await;
    assert_lines(
        &out,
        &[
            "form version 1: published",
            "directory import 1: 1 entries",
            "responsible: lra-meissen, payment: none",
            r#"["familienname","geburtsdatum"]"#,
            "saved: draft (INITIATED)",
            "again: 409",
            "data hash: matches the record",
            "withdrawn: withdrawn (COMPLETED)",
            "in one request: 422 urn:amtsbuch:problem:invalid-data",
        ],
    );
    // Due at midnight in 30 days, as the guide asked.
    let due = (chrono::Utc::now() + chrono::Duration::days(30)).date_naive();
    assert!(
        out.lines().any(|l| {
            let l = l.trim();
            [due, due.pred_opt().unwrap_or(due)].iter().any(|d| {
                l == format!("status: ACTION_REQUIRED, file AZ 42/2026, due {d}T00:00:00.000000Z")
            })
        }),
        "{out}"
    );
    // The data and the submission in one request: a receipt with a 64-digit data hash.
    assert!(
        out.lines()
            .any(|l| l.starts_with("in one request: submitted at ")
                && l.ends_with(", data hash 64 hex digits")),
        "{out}"
    );
    // The invalid data was refused with pointers to both faults.
    assert!(
        out.lines()
            .any(|l| l.starts_with("422 urn:amtsbuch:problem:invalid-data: ")
                && l.contains("/familienname")
                && l.contains("/geburtsdatum")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok: event ") && l.contains(" is at position ")),
        "verify-proof accepted the receipt:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("read by authority:") && l.ends_with("of lra-meissen")),
        "the official's read is listed:\n{out}"
    );
    server.kill().await;
    if let Some(db) = db {
        db.drop_now().await;
    }
}

/// docs/APPLICANT.md up to the submission, then section 8 of docs/FACHVERFAHREN.md: the
/// example Fachverfahren receives the application over NATS, answers it with reception and
/// decision, and the file is closed.
async fn the_fachverfahren_guide_works(adapter: common::Adapter) {
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    let nats = NatsServer::start().await;
    let (server, db) = server(adapter, &cwd, Some(&nats)).await;
    let applicant = guide("APPLICANT.md");
    let submitted = sh_blocks(section(&applicant, "# Applying", Some("## 3. The receipt")));
    let fachverfahren = guide("FACHVERFAHREN.md");
    let answering = sh_blocks(section(&fachverfahren, "## 8. Applications", None));
    let out = bash(
        &format!("{submitted}\n{answering}"),
        &cwd,
        &[
            ("API", format!("http://{}", server.addr)),
            ("NATS_URL", nats.url()),
        ],
    )
    .await;
    // What the consumer received: the application from its submission on, with the events
    // of the answer and the reads the service recorded; nothing of the draft, the form or
    // the directory.
    let handled: Vec<(u64, &str)> = out
        .lines()
        .skip_while(|l| !l.starts_with(r#"["amtsbuch."#))
        .skip(1)
        .map_while(|l| {
            let (position, rest) = l.split_once(' ')?;
            Some((position.parse().ok()?, rest))
        })
        .collect();
    let (submitted_at, first) = handled.first().copied().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        first,
        format!("ApplicationSubmitted -> AZ {submitted_at}, COMPLETED"),
        "{out}"
    );
    let answers: Vec<&str> = handled
        .iter()
        .map(|(_, what)| *what)
        .filter(|what| *what != "ApplicationRead")
        .collect();
    assert_eq!(
        answers[1..],
        ["ApplicationReceived", "DecisionIssued"],
        "{out}"
    );
    assert!(
        handled.windows(2).all(|w| w[0].0 < w[1].0),
        "in log order: {out}"
    );
    assert_lines(
        &out,
        &[
            r#"["amtsbuch.*.lra-meissen.*.99108001000000"]"#,
            &format!("status: decided (COMPLETED), file AZ {submitted_at}"),
            "closed: closed",
        ],
    );
    server.kill().await;
    if let Some(db) = db {
        db.drop_now().await;
    }
}

async fn run(adapter: common::Adapter, test: impl AsyncFnOnce(common::Adapter)) {
    test(adapter).await;
}

common::on_both_adapters!(using run; the_applicant_guide_works, the_fachverfahren_guide_works);
