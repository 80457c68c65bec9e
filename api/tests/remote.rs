//! `verify --url`: a stub server presents checkpoints of its choosing, and the auditor's
//! check must accept only those proven to extend the checkpoint it trusted before —
//! catching rollbacks, forks and foreign signatures.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use amtsbuch_domain::base64;
use amtsbuch_domain::checkpoint::{sign_checkpoint, Checkpoint};
use amtsbuch_domain::merkle::{consistency_proof, leaf_hash, root_from_leaves, Hash, MemoryLeaves};
use amtsbuch_domain::note::Signer;
use amtsbuch_testkit_api as common;

const ORIGIN: &str = "stub.amtsbuch/log";

#[derive(Clone, Default)]
struct Presented {
    note: Arc<Mutex<String>>,
    leaves: Arc<Mutex<Vec<Hash>>>,
}

fn leaves(n: u8, salt: u8) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&[i, salt])).collect()
}

fn note(signer: &Signer, leaves: &[Hash]) -> String {
    let c = Checkpoint {
        origin: ORIGIN.into(),
        size: leaves.len() as u64,
        root: root_from_leaves(leaves),
        extensions: vec![],
    };
    sign_checkpoint(&c, &[signer]).expect("sign")
}

async fn checkpoint(State(p): State<Presented>) -> String {
    p.note.lock().expect("lock").clone()
}

async fn consistency(
    State(p): State<Presented>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, u64>>,
) -> Json<serde_json::Value> {
    let leaves = p.leaves.lock().expect("lock").clone();
    let proof =
        consistency_proof(q["from"], q["to"], &mut MemoryLeaves::new(&leaves)).unwrap_or_default();
    Json(json!({ "proof": proof.iter().map(|h| base64::encode(h)).collect::<Vec<_>>() }))
}

async fn check(url: String, key: std::path::PathBuf, state: std::path::PathBuf) -> i32 {
    tokio::task::spawn_blocking(move || amtsbuch_api::cli::remote::run(&url, &[key], &state, None))
        .await
        .expect("task")
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_consistent_growth_is_accepted() {
    let signer = Signer::from_seed(ORIGIN, &[3u8; 32]).expect("signer");
    let stranger = Signer::from_seed(ORIGIN, &[4u8; 32]).expect("signer");
    let presented = Presented::default();
    let app = Router::new()
        .route("/ledger/checkpoint", get(checkpoint))
        .route("/ledger/proof/consistency", get(consistency))
        .with_state(presented.clone());
    let url = common::serve_router(app).await;

    let dir = common::TempDir::new();
    let key = dir.join("log.vkey");
    std::fs::write(&key, format!("# the log's key\n{}\n", signer.vkey())).expect("key");
    let state = dir.join("trusted.checkpoint");
    let present = |l: &[Hash], by: &Signer| {
        *presented.note.lock().expect("lock") = note(by, l);
        *presented.leaves.lock().expect("lock") = l.to_vec();
    };

    let log = leaves(20, 0);
    present(&log[..7], &signer);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        0,
        "first contact"
    );
    present(&log[..20], &signer);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        0,
        "consistent growth"
    );
    let trusted = std::fs::read_to_string(&state).expect("state");
    assert_eq!(trusted, note(&signer, &log));

    // Rollback: an older, smaller checkpoint after a newer one.
    present(&log[..12], &signer);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        1,
        "rollback"
    );
    // Fork: same size, other root, validly signed.
    present(&leaves(20, 1), &signer);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        1,
        "fork at equal size"
    );
    // Fork: a bigger tree that does not extend the trusted one.
    present(&leaves(30, 2), &signer);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        1,
        "fork by growth"
    );
    // Someone else's key.
    let mut longer = log.clone();
    longer.extend(leaves(5, 9));
    present(&longer, &stranger);
    assert_eq!(
        check(url.clone(), key.clone(), state.clone()).await,
        1,
        "foreign signature"
    );
    // None of the failures moved the trusted checkpoint.
    assert_eq!(std::fs::read_to_string(&state).expect("state"), trusted);
    // The honest extension is still accepted afterwards.
    present(&longer, &signer);
    assert_eq!(check(url, key, state.clone()).await, 0);
}
