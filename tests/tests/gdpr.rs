//! The GDPR core end to end, as a data protection officer meets it: the `sh` blocks of
//! docs/DPO.md run, in order, against a real `amtsbuch serve` on PostgreSQL that relays to
//! NATS — so the guide works as written. Half-way, before the erasure, the test looks for
//! the plaintext personal data the guide used in a dump of the whole database, in every
//! message of the NATS stream, and in the server's logs (at debug level), and finds it in
//! none of them. After the erasure the log still verifies.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use amtsbuch_testkit::{
    binary, mint_token, nats_url, run_cli_in, sh_blocks, wohngeld_token, Server, TempDir,
    TestDatabase,
};
use tokio::process::Command;

/// The personal data docs/DPO.md enters for Erika; none of it may appear in plaintext in the
/// database, on NATS or in logs.
const PLAINTEXT: [&str; 3] = ["Erika", "Mustermann", "erika.mustermann@example.org"];

/// The `sh` blocks of the guide, split at the erasure section: (before, from erasure on).
fn guide_scripts() -> (String, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DPO.md");
    let text = std::fs::read_to_string(&path).expect("docs/DPO.md");
    let (before, after) = text
        .split_once("## 5. Erasure")
        .expect("docs/DPO.md has a section '## 5. Erasure'");
    (sh_blocks(before), sh_blocks(after))
}

/// Run a script with bash in `cwd`, `amtsbuch` on the PATH.
fn bash(script: &str, cwd: &Path, env: &[(&str, String)]) -> tokio::process::Child {
    let bin_dir = binary().parent().expect("binary dir").to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(cwd)
        .env("PATH", path)
        .env("AMTSBUCH_LOG", "warn")
        .env_remove("AMTSBUCH_DEV_KEY")
        .env_remove("AMTSBUCH_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("run bash")
}

/// Wait for the script to end; returns its standard output.
async fn finished(child: tokio::process::Child) -> String {
    let out = tokio::time::timeout(Duration::from_secs(240), child.wait_with_output())
        .await
        .expect("the guide's commands finish within 4 minutes")
        .expect("bash output");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "a command of docs/DPO.md failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Wait until the script has created `file` (or ended, which is a failure).
async fn reached(child: &mut tokio::process::Child, file: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !file.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the guide's commands ended before the erasure section: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the guide's commands did not reach the erasure section"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn cli(args: &[&str], cwd: &Path) {
    let (code, _, err) = run_cli_in(cwd, args).await;
    assert!(code == 0, "amtsbuch {args:?}: {err}");
}

/// Every message payload of a JetStream stream, in order.
async fn stream_payloads(stream: &str) -> Vec<Vec<u8>> {
    let client = async_nats::connect(nats_url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let mut handle = js.get_stream(stream).await.expect("stream");
    let last = handle.info().await.expect("info").state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=last {
        if let Ok(m) = handle.get_raw_message(seq).await {
            out.push(m.payload.to_vec());
        }
    }
    out
}

async fn wait_relayed(stream: &str, at_least: u64) {
    let client = async_nats::connect(nats_url()).await.expect("NATS");
    let js = async_nats::jetstream::new(client);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = js.get_stream(stream).await {
            if s.info().await.map(|i| i.state.messages).unwrap_or(0) >= at_least {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the relay did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn pg_dump(db: &TestDatabase, out: &Path) {
    let status = std::process::Command::new("pg_dump")
        .arg("--dbname")
        .arg(&db.url)
        .arg("--file")
        .arg(out)
        .status()
        .expect("pg_dump must be installed (postgresql-client)");
    assert!(status.success(), "pg_dump failed");
}

fn assert_no_plaintext(what: &str, haystack: &[u8]) {
    for needle in PLAINTEXT {
        let found = haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes());
        assert!(!found, "plaintext personal data {needle:?} found in {what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dpo_guide_works_and_personal_data_never_appears_in_plaintext() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let stream = format!("DPO_{tag}");
    let prefix = format!("dpo{tag}");

    cli(
        &[
            "keygen",
            "--origin",
            "dpo.example.sachsen.de/log",
            "--out",
            "keys",
        ],
        &cwd,
    )
    .await;
    cli(&["kek", "generate", "--out", "keys/kek"], &cwd).await;
    let log = cwd.join("server.log");
    let server = Server::start_logging(
        &[
            "--database-url",
            &db.url,
            "--origin",
            "dpo.example.sachsen.de/log",
            "--signing-key",
            "keys/amtsbuch-signing.pk8",
            "--kek",
            "keys/kek",
            "--nats-url",
            &nats_url(),
            "--nats-stream",
            &stream,
            "--nats-prefix",
            &prefix,
        ],
        &cwd,
        "debug",
        Some(&log),
    )
    .await;
    let env = [
        ("API", format!("http://{}", server.addr)),
        ("DATABASE_URL", db.url.clone()),
    ];
    // One shell for the whole guide, as a reader has, paused before the erasure section
    // while the test looks for plaintext.
    let (before, after) = guide_scripts();
    let halfway = cwd.join("halfway");
    let resume = cwd.join("resume");
    let script = format!(
        "{before}\necho \"$SUBJECT\" > halfway\nwhile [ ! -e resume ]; do sleep 0.1; done\n{after}"
    );
    let mut shell = bash(&script, &cwd, &env);
    reached(&mut shell, &halfway).await;

    // Personal data was entered, sealed, relayed and logged about: look for it everywhere.
    let head = server.get("/events?after=0&limit=1000").await.json()["next_after"]
        .as_u64()
        .expect("head");
    wait_relayed(&stream, head).await;
    let dump = cwd.join("dump.sql");
    pg_dump(&db, &dump);
    let dump_bytes = std::fs::read(&dump).expect("dump");
    assert!(
        dump_bytes.len() > 10_000,
        "the dump holds the database ({} bytes)",
        dump_bytes.len()
    );
    assert_no_plaintext("the PostgreSQL dump", &dump_bytes);
    let payloads = stream_payloads(&stream).await;
    assert!(payloads.len() as u64 >= head, "every event is on NATS");
    for p in &payloads {
        assert_no_plaintext("a NATS message", p);
    }
    // The stored record of the opened account holds the sealed section, not the name.
    assert!(payloads
        .iter()
        .any(|p| String::from_utf8_lossy(p).contains("\"sealed\":{\"alg\":\"A256GCM\"")));
    let logs = std::fs::read(&log).expect("server log");
    assert!(!logs.is_empty(), "the server logged at debug level");
    assert_no_plaintext("the server's logs", &logs);

    // Erasure, and the proof that the log is intact afterwards.
    std::fs::write(&resume, b"").expect("resume");
    let out = finished(shell).await;
    for expected in [
        "first disclosure: granted",
        "second disclosure: denied (consent_withdrawn)",
        "as of first:  given",
        "as of second: withdrawn",
        "granted under the consent: 1, denied: 1",
        "name: Erika",
        "{\"erased\":true}",
    ] {
        assert!(out.contains(expected), "expected {expected:?} in:\n{out}");
    }
    let receipts = out.lines().filter(|l| l.starts_with("ok: leaf")).count();
    assert_eq!(
        receipts, 2,
        "the consent receipt verifies before and after erasure:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok:") && l.contains("events verified")),
        "verify (database) passes after erasure:\n{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("ok:") && l.contains("checkpoints, head")),
        "verify (export) passes after erasure:\n{out}"
    );

    // After erasure the database still holds no plaintext, and the logs none either.
    pg_dump(&db, &dump);
    assert_no_plaintext(
        "the PostgreSQL dump after erasure",
        &std::fs::read(&dump).expect("dump"),
    );
    assert_no_plaintext(
        "the server's logs",
        &std::fs::read(&log).expect("server log"),
    );

    server.kill().await;
    if let Ok(client) = async_nats::connect(nats_url()).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(&stream)
            .await;
    }
    db.drop_now().await;
}

/// Two API nodes on one database: disclosures judged by one while the subject withdraws
/// through the other still agree with the replay — every grant is stamped before the
/// withdrawal, every denial at or after it. (The subject's lock is the database's, and the
/// instants come from its clock, so the nodes cannot interleave a subject's commands.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_judge_disclosures_in_the_order_of_a_withdrawal() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let cwd: PathBuf = dir.0.clone();
    cli(&["kek", "generate", "--out", "keys/kek"], &cwd).await;
    let args = ["--database-url", db.url.as_str(), "--kek", "keys/kek"];
    let (a, b) = (
        Server::start(&args, &cwd).await,
        Server::start(&args, &cwd).await,
    );

    let opened = a
        .request(
            "POST",
            "/accounts",
            &[],
            r#"{"kind":"personal","master_data":{"type":"person","given_names":"Erika","family_name":"Mustermann"}}"#,
        )
        .await
        .expect("open account");
    assert_eq!(opened.status, 201, "{}", opened.json());
    let subject = opened.json()["account_id"]
        .as_str()
        .expect("account id")
        .to_owned();
    let citizen = format!(
        "Bearer {}",
        mint_token(
            &cwd,
            &[
                "--role",
                "citizen",
                "--subject",
                &subject,
                "--account",
                &subject
            ]
        )
        .await
    );
    let fv = format!("Bearer {}", wohngeld_token(&cwd).await);
    let given = b
        .request(
            "POST",
            "/consents",
            &[("Authorization", &citizen)],
            r#"{"scope":{"categories":["stammdaten"],"purposes":["antrag-vorbefuellung"],"recipients":["lra-meissen"]},
                "notice":{"version":"2026-01","sha256":"0000000000000000000000000000000000000000000000000000000000000000"},
                "channel":"servicekonto_web"}"#,
        )
        .await
        .expect("give consent");
    assert_eq!(given.status, 201, "{}", given.json());
    let consent = given.json()["consent_id"]
        .as_str()
        .expect("consent id")
        .to_owned();

    // Disclosures keep arriving at node a, a little apart, before, while and after node b
    // handles the withdrawal.
    let ask = format!(
        r#"{{"subject":"{subject}","categories":["stammdaten"],"purpose":"antrag-vorbefuellung"}}"#
    );
    let mut disclosures = Vec::new();
    let mut withdrawal = None;
    let mut after = 0;
    while after < 20 {
        if disclosures.len() == 20 && withdrawal.is_none() {
            let (client, citizen, uri) = (
                b.client(),
                citizen.clone(),
                format!("/consents/{consent}/withdrawal"),
            );
            withdrawal = Some(tokio::spawn(async move {
                client
                    .request("POST", &uri, &[("Authorization", &citizen)], "")
                    .await
                    .expect("withdraw")
            }));
        }
        let (client, fv, ask) = (a.client(), fv.clone(), ask.clone());
        disclosures.push(tokio::spawn(async move {
            client
                .request("POST", "/disclosures", &[("Authorization", &fv)], &ask)
                .await
                .expect("disclosure")
        }));
        if withdrawal.as_ref().is_some_and(|w| w.is_finished()) {
            after += 1;
        }
        assert!(disclosures.len() < 5000, "the withdrawal does not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let withdrawn = withdrawal
        .expect("withdrawal sent")
        .await
        .expect("withdrawal task");
    assert_eq!(withdrawn.status, 200, "{}", withdrawn.json());
    let withdrawn_at = withdrawn.json()["ended"]["at"]
        .as_str()
        .expect("withdrawal instant")
        .to_owned();
    let mut granted = 0;
    let total = disclosures.len();
    for d in disclosures {
        let d = d.await.expect("disclosure task");
        assert_eq!(d.status, 201, "{}", d.json());
        let d = d.json();
        let at = d["at"].as_str().expect("instant").to_owned();
        // Instants are RFC 3339 in UTC with six fraction digits: they order as text.
        if d["decision"] == "granted" {
            granted += 1;
            assert!(
                at < withdrawn_at,
                "granted at {at}, withdrawn at {withdrawn_at}"
            );
        } else {
            assert_eq!(d["reason"]["code"], "consent_withdrawn", "{d}");
            assert!(
                at >= withdrawn_at,
                "denied at {at}, withdrawn at {withdrawn_at}"
            );
        }
    }
    assert!(
        granted > 0 && granted < total,
        "the withdrawal fell among the disclosures: {granted} of {total} granted"
    );
    a.kill().await;
    b.kill().await;
    db.drop_now().await;
}
