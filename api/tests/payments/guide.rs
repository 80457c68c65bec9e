//! docs/PAYMENTS.md as a test: the `sh` blocks of its walk-through ("A fee from request to
//! settlement") run with bash, in order, against a real `amtsbuch serve` pointed at the
//! provider simulator running as a process of its own — on the embedded SQLite store and on
//! PostgreSQL. A fee is requested, checked out, left open by a spoofed return, paid at the
//! simulator whose callbacks come three times, confirmed by the bank's camt.054 (twice, the
//! second booking nothing), settled by the HKR, summed in the daily report, refunded under
//! four eyes; an application's fee requested by the payment policy blocks its submission
//! until it is paid; and the log verifies. Blocks with another info string (`sh server`) are
//! what a reader runs in other terminals; the test starts both processes itself.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::{self, free_port, run_cli_in, sh_blocks, Server, TempDir, TestDatabase};
use crate::simulator::{Simulator, SECRET, TOKEN};

/// The walk-through's `sh` blocks, as one script.
fn walkthrough() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PAYMENTS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text
        .find("## A fee from request to settlement")
        .expect("the guide's walk-through");
    let rest = &text[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    sh_blocks(&rest[..end])
}

/// Run `script` with bash in `cwd` (`set -euo pipefail`), with `amtsbuch` on the PATH; its
/// standard output. Fails the test if a command fails.
async fn bash(script: &str, cwd: &Path, env: &[(&str, String)]) -> String {
    let bin_dir = common::binary().parent().expect("binary dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
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
        .env_remove("DATABASE_URL")
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
        "a command of docs/PAYMENTS.md failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

async fn the_payments_guide_works(adapter: common::Adapter) {
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    let sim = Simulator::start();
    let addr = format!("127.0.0.1:{}", free_port());
    let api = format!("http://{addr}");
    let mut args: Vec<String> = [
        "--payment-provider-url",
        &sim.url,
        "--payment-provider-name",
        "sim",
        "--payment-provider-token",
        TOKEN,
        "--payment-callback-secret",
        SECRET,
        "--payment-notify-base",
        &api,
        "--payment-endpoint-id",
        "14612000",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut env = vec![("API", api.clone()), ("SIM", sim.url.clone())];
    let db = match adapter {
        common::Adapter::Sqlite => None,
        common::Adapter::Postgres => {
            let db = TestDatabase::create().await;
            for cli in [
                &["keygen", "--origin", "kasse.example/log", "--out", "keys"][..],
                &["kek", "generate", "--out", "keys/kek"][..],
            ] {
                let (code, _, err) = run_cli_in(&cwd, cli).await;
                assert_eq!(code, 0, "amtsbuch {cli:?}: {err}");
            }
            args.extend(
                [
                    "--database-url",
                    &db.url,
                    "--origin",
                    "kasse.example/log",
                    "--signing-key",
                    "keys/amtsbuch-signing.pk8",
                    "--kek",
                    "keys/kek",
                ]
                .map(str::to_owned),
            );
            env.push(("DATABASE_URL", db.url.clone()));
            Some(db)
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_at(&addr, &args, &cwd).await;
    let out = bash(&walkthrough(), &cwd, &env).await;
    for expected in [
        "requested: open, 2500 cents owed, Kassenzeichen of 12 digits",
        "lines that do not add up: 400",
        "the return: received; the status is being checked",
        "after the return: open",
        "[200,200,200]",
        "status: paid, balance 0, may be submitted: true",
        "a forged callback: 401",
        "camt.054, first: 1 lines, 1 booked, 0 already booked",
        "camt.054, again: 1 lines, 0 booked, 1 already booked",
        "hkr: 1 booked, 0 mismatches",
        "status: settled",
        "worklist: 0 entries",
        "1100.100: 2000",
        "1100.200: 500",
        "total: 2500",
        "approved by its requester: 409 urn:amtsbuch:problem:four-eyes",
        "refunded: 2500 cents, status refunded",
        "fee schedule: 2500 cents in 2 lines, due in 14 days",
        "submitted before paying: 409 urn:amtsbuch:problem:payment-outstanding",
        "the fee: open, 2500 cents owed",
        "the fee: paid, balance 0",
        "submitted after paying: to lra-meissen",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == expected),
            "expected the line {expected:?} in:\n{out}"
        );
    }
    assert!(
        out.lines().any(|l| l.starts_with("pay at: http")),
        "the checkout names the provider's page:\n{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("ok: ")),
        "the log verifies:\n{out}"
    );
    server.kill().await;
    drop(sim);
    if let Some(db) = db {
        db.drop_now().await;
    }
}

async fn run(adapter: common::Adapter, test: impl AsyncFnOnce(common::Adapter)) {
    test(adapter).await;
}

common::on_both_adapters!(using run; the_payments_guide_works);
