//! The ledger through the binary, as an auditor meets it: keygen, a server on PostgreSQL
//! signing with that key, an export verified offline with only the vkey — and a database
//! superuser who rewrites a record and every hash after it, which `verify --database-url`
//! cannot see but the signed checkpoints in the export can.

use std::time::Duration;

use amtsbuch_domain::chain::{chain_hash, GENESIS_CHAIN};
use amtsbuch_domain::merkle::leaf_hash;
use amtsbuch_testkit::{run_cli, Server, TempDir, TestDatabase};
use serde_json::json;
use sqlx::Row;

async fn wait_for_checkpoint(server: &Server, size: u64) {
    for _ in 0..200 {
        let r = server.get("/ledger/checkpoint").await;
        if r.status == 200 {
            let text = String::from_utf8_lossy(&r.body).into_owned();
            if text
                .lines()
                .nth(1)
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|s| s >= size)
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no checkpoint of size {size}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_history_fails_against_the_signed_checkpoints() {
    let db = TestDatabase::create().await;
    let dir = TempDir::new();
    let keys = dir.0.join("keys");
    let (code, out, err) = run_cli(&[
        "keygen",
        "--origin",
        "e2e.amtsbuch/log",
        "--out",
        keys.to_str().expect("path"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("amtsbuch-signing.pk8"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the private key must be readable by its owner only"
        );
    }
    let key = keys.join("amtsbuch-signing.pk8");
    let vkey = keys.join("amtsbuch.vkey");
    let server = Server::start(
        &[
            "--database-url",
            &db.url,
            "--origin",
            "e2e.amtsbuch/log",
            "--signing-key",
            key.to_str().expect("path"),
            "--checkpoint-every",
            "10",
        ],
        &dir.0,
    )
    .await;
    for i in 0..30u64 {
        let body = json!([{ "type": "ConsentGiven", "data": { "i": i } }]).to_string();
        assert_eq!(
            server
                .post_events(&format!("consent-{}", i % 4), "any", &body)
                .await
                .status,
            201
        );
    }
    wait_for_checkpoint(&server, 30).await;
    let served_key = server.get("/ledger/key").await;
    assert_eq!(
        String::from_utf8_lossy(&served_key.body).trim(),
        std::fs::read_to_string(&vkey).expect("vkey").trim()
    );

    let export = server.get("/ledger/export").await;
    assert_eq!(export.status, 200);
    let before = dir.0.join("before.jsonl");
    std::fs::write(&before, &export.body).expect("write export");
    let (code, out, err) = run_cli(&[
        "verify",
        "--export",
        before.to_str().expect("path"),
        "--key",
        vkey.to_str().expect("path"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 30 events"), "{out}");

    // The superuser rewrites position 12 and recomputes every leaf and chain hash after it,
    // so the database's own chain is consistent again.
    let mut conn = db.connect().await;
    sqlx::query("ALTER TABLE events DISABLE TRIGGER events_forbid_update_delete")
        .execute(&mut conn)
        .await
        .expect("disable");
    let rows = sqlx::query("SELECT position, record FROM events ORDER BY position")
        .fetch_all(&mut conn)
        .await
        .expect("rows");
    let mut chain = GENESIS_CHAIN;
    for row in rows {
        let position: i64 = row.get("position");
        let mut record: Vec<u8> = row.get("record");
        if position == 12 {
            let text = String::from_utf8(record)
                .expect("utf8")
                .replace("\"i\":11", "\"i\":99");
            record = text.into_bytes();
        }
        let leaf = leaf_hash(&record);
        chain = chain_hash(&chain, &leaf);
        sqlx::query(
            "UPDATE events SET record = $1, leaf_hash = $2, chain_hash = $3 WHERE position = $4",
        )
        .bind(&record)
        .bind(leaf.as_slice())
        .bind(chain.as_slice())
        .bind(position)
        .execute(&mut conn)
        .await
        .expect("rewrite");
    }
    sqlx::query("UPDATE log_head SET chain_hash = $1")
        .bind(chain.as_slice())
        .execute(&mut conn)
        .await
        .expect("head");
    drop(conn);

    // The database alone cannot tell.
    let (code, out, _) = run_cli(&["verify", "--database-url", &db.url]).await;
    assert_eq!(code, 0, "the rewrite is self-consistent: {out}");
    // The export, checked against signatures made before the rewrite, can.
    let after = dir.0.join("after.jsonl");
    std::fs::write(&after, &server.get("/ledger/export").await.body).expect("write export");
    let (code, out, _) = run_cli(&[
        "verify",
        "--export",
        after.to_str().expect("path"),
        "--key",
        vkey.to_str().expect("path"),
    ])
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("FAILED"), "{out}");
    assert!(
        out.to_lowercase().contains("root"),
        "the first checkpoint after the rewrite must fail on its root: {out}"
    );
    server.kill().await;
    db.drop_now().await;
}
