//! Fresh stores for tests: each PostgreSQL test runs in a schema of its own, each SQLite
//! test in a file of its own, so tests run in parallel and never see each other's events.

#![allow(
    dead_code,
    reason = "each test binary uses a different subset of these helpers"
)]

use std::future::Future;

use amtsbuch_domain::verify::ChainVerifier;
use amtsbuch_infra::{EventStore, PgStore, SqliteStore};
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

/// The PostgreSQL server tests use; CI and the dev machine provide one with trust auth.
pub fn database_url() -> String {
    std::env::var("AMTSBUCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// Connection options for a fresh, empty schema (created here).
pub async fn fresh_schema() -> (PgConnectOptions, String) {
    let base: PgConnectOptions = database_url().parse().expect("test database URL");
    let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect_with(&base)
        .await
        .expect("PostgreSQL must be running for the tests (AMTSBUCH_TEST_DATABASE_URL)");
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut admin)
        .await
        .expect("create schema");
    (base.options([("search_path", schema.as_str())]), schema)
}

pub async fn drop_schema(schema: &str) {
    let base: PgConnectOptions = database_url().parse().expect("test database URL");
    if let Ok(mut admin) = sqlx::PgConnection::connect_with(&base).await {
        let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
            .execute(&mut admin)
            .await;
    }
}

/// Run `test` against a fresh PostgreSQL store and remove its schema afterwards.
pub async fn with_pg<F, Fut>(test: F)
where
    F: FnOnce(PgStore, PgConnectOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    let (options, schema) = fresh_schema().await;
    let store = PgStore::connect_with(options.clone())
        .await
        .expect("connect");
    test(store, options).await;
    drop_schema(&schema).await;
}

/// Run `test` against a fresh SQLite store in a temporary file.
pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(SqliteStore, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = std::env::temp_dir().join(format!("amtsbuch-test-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}", dir.join("events.db").display());
    let store = SqliteStore::open(&url).await.expect("open sqlite");
    test(store, url).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Walk the whole log (up to 10,000 events) through a `ChainVerifier`; panics on the first
/// broken link and returns the verifier for further checks.
pub async fn verified_chain<S: EventStore>(store: &S) -> ChainVerifier {
    let mut verifier = ChainVerifier::new();
    for e in &store.read_all(0, 10_000).await.expect("read") {
        verifier
            .check(
                e.position,
                &e.bytes,
                Some(&e.leaf_hash),
                Some(&e.chain_hash),
            )
            .expect("intact chain");
    }
    verifier
}
