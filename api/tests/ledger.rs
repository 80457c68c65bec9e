//! The ledger end to end in one process: the ledger task signs checkpoints as events are
//! appended, and everything the HTTP routes serve — checkpoints, inclusion and consistency
//! proofs, receipts, record bytes — verifies with nothing but the published key, on both
//! adapters.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use tower::ServiceExt;

use amtsbuch_api::state::LedgerInfo;
use amtsbuch_api::{router, AppState};
use amtsbuch_domain::access::Role;

use amtsbuch_domain::checkpoint::open_checkpoint;
use amtsbuch_domain::merkle::{
    leaf_hash, root_from_leaves, verify_consistency, verify_inclusion, Hash,
};
use amtsbuch_domain::note::{Signer, Verifier};
use amtsbuch_domain::tlog_proof::{self, Leaf, TlogProof};
use amtsbuch_domain::{base64, AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::ledger::{self, LedgerConfig};
use amtsbuch_infra::{AnyStore, EventStore};
use amtsbuch_testkit_api as common;

const ORIGIN: &str = "test.amtsbuch/log";

fn signer() -> Signer {
    Signer::from_seed(ORIGIN, &[7u8; 32]).expect("signer")
}

async fn append(store: &AnyStore, n: u64) {
    for i in 0..n {
        store
            .append(AppendRequest {
                stream: StreamId::parse(&format!("consent-{}", i % 7)).expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::new(
                    EventType::parse("ConsentGiven").expect("type"),
                    json!({ "i": i }),
                )],
            })
            .await
            .expect("append");
    }
}

async fn wait_for_checkpoint(store: &AnyStore, size: u64) -> ledger::StoredCheckpoint {
    for _ in 0..200 {
        if let Some(c) = ledger::latest_checkpoint(store).await.expect("read") {
            if c.size >= size {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no checkpoint of size {size} within 5 s");
}

async fn get(app: &axum::Router, uri: &str) -> (StatusCode, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(
            Request::get(uri)
                .header(header::AUTHORIZATION, common::bearer(Role::Auditor))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    (status, body.to_vec())
}

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|h| {
            base64::decode(h.as_str().expect("string"))
                .expect("b64")
                .try_into()
                .expect("32 bytes")
        })
        .collect()
}

async fn the_ledger_signs_and_proves(store: AnyStore) {
    let verifier: Verifier = signer().verifier();
    ledger::spawn(
        store.clone(),
        LedgerConfig {
            origin: ORIGIN.into(),
            signers: vec![signer()],
            every_events: 40,
            interval: Duration::from_millis(50),
        },
    );
    let app = router(
        AppState::new(
            store.clone(),
            Some(LedgerInfo {
                origin: ORIGIN.into(),
                vkeys: vec![signer().vkey()],
            }),
            common::authenticator(),
        )
        .await
        .expect("state"),
    );

    append(&store, 37).await;
    let first = wait_for_checkpoint(&store, 37).await;
    append(&store, 100).await;
    let latest = wait_for_checkpoint(&store, 137).await;
    assert_eq!(latest.size, 137);

    // The latest checkpoint is a signed note over the root of all leaves.
    let (status, note) = get(&app, "/ledger/checkpoint").await;
    assert_eq!(status, StatusCode::OK);
    let (checkpoint, signed_by) =
        open_checkpoint(&note, std::slice::from_ref(&verifier), ORIGIN).expect("valid checkpoint");
    assert_eq!(signed_by.len(), 1);
    let events = store.read_all(0, 1000).await.expect("read");
    let leaves: Vec<Hash> = events.iter().map(|e| leaf_hash(&e.bytes)).collect();
    assert_eq!(checkpoint.size, 137);
    assert_eq!(checkpoint.root, root_from_leaves(&leaves));

    // Every leaf's inclusion proof verifies against it.
    for index in [0u64, 1, 15, 16, 36, 63, 64, 100, 136] {
        let (status, body) = get(
            &app,
            &format!("/ledger/proof/inclusion?index={index}&size=137"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let v: Value = serde_json::from_slice(&body).expect("json");
        verify_inclusion(
            index,
            137,
            &leaves[index as usize],
            &hashes(&v["proof"]),
            &checkpoint.root,
        )
        .expect("inclusion");
    }
    // Consistency from the first checkpoint to the latest.
    let (status, body) = get(
        &app,
        &format!("/ledger/proof/consistency?from={}&to=137", first.size),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let v: Value = serde_json::from_slice(&body).expect("json");
    verify_consistency(
        first.size,
        137,
        &first.root,
        &checkpoint.root,
        &hashes(&v["proof"]),
    )
    .expect("consistency");

    // The record route returns the hashed bytes; the receipt proves them.
    let event = &events[41];
    let id = event.record().expect("record").event_id;
    let (status, bytes) = get(&app, &format!("/events/{id}/record")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, event.bytes);
    let (status, receipt) = get(&app, &format!("/events/{id}/receipt")).await;
    assert_eq!(status, StatusCode::OK);
    let proof = TlogProof::parse(&receipt).expect("tlog-proof");
    assert_eq!(proof.index, 41);
    tlog_proof::verify(
        &proof,
        Leaf::Record(&bytes),
        std::slice::from_ref(&verifier),
        ORIGIN,
    )
    .expect("receipt verifies");
    let mut forged = bytes.clone();
    forged[10] ^= 1;
    assert!(tlog_proof::verify(&proof, Leaf::Record(&forged), &[verifier], ORIGIN).is_err());

    // Sizes beyond the latest checkpoint are refused, not guessed.
    let (status, _) = get(&app, "/ledger/proof/inclusion?index=0&size=100000").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = get(&app, "/ledger/proof/inclusion?index=200&size=137").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = get(&app, "/ledger/checkpoints/12345").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = get(&app, &format!("/ledger/checkpoints/{}", first.size)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, first.note.clone().into_bytes())
    );

    // The export holds every record and the checkpoints, in order.
    let (status, body) = get(&app, "/ledger/export").await;
    assert_eq!(status, StatusCode::OK);
    let lines: Vec<Value> = body
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("json line"))
        .collect();
    assert_eq!(lines[0]["kind"], "amtsbuch-export");
    assert_eq!(lines.iter().filter(|l| l["kind"] == "record").count(), 137);
    let sizes: Vec<u64> = lines
        .iter()
        .filter(|l| l["kind"] == "checkpoint")
        .map(|l| l["size"].as_u64().expect("size"))
        .collect();
    assert!(
        sizes.windows(2).all(|w| w[0] < w[1]) && sizes.last() == Some(&137),
        "{sizes:?}"
    );

    // Proofs are built from stored nodes (the tree is kept incrementally).
    let range = ledger::compact_range_at(&store, 137).await.expect("range");
    assert_eq!(range.root(), checkpoint.root);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ledger_signs_and_proves() {
    let db = common::TestDb::fresh(common::Adapter::Sqlite).await;
    the_ledger_signs_and_proves(db.store.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_ledger_signs_and_proves() {
    let db = common::TestDb::fresh(common::Adapter::Postgres).await;
    let store = db.store.clone();
    // A second process on the same database stands by instead of signing too.
    let other = db.second_handle().await;
    ledger::spawn(
        other,
        LedgerConfig {
            origin: ORIGIN.into(),
            signers: vec![signer()],
            every_events: 40,
            interval: Duration::from_millis(50),
        },
    );
    the_ledger_signs_and_proves(store).await;
}
