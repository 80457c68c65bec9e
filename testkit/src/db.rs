//! Fresh databases: each PostgreSQL test runs in a schema of its own (or, for the binary,
//! a database of its own), each SQLite test in a file of its own, so tests run in parallel
//! and never see each other's events or read models. Every one is removed when the test
//! ends, also when it fails.

use std::future::Future;
use std::path::Path;

use amtsbuch_domain::verify::ChainVerifier;
use amtsbuch_infra::{AnyStore, EventStore, PgStore, SqliteStore};
use amtsbuch_projections::ReadDb;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::Connection;

use crate::dir::TempDir;

/// The PostgreSQL server the tests use (`AMTSBUCH_TEST_DATABASE_URL`; CI and the dev
/// machine provide one with trust authentication).
pub fn database_url() -> String {
    std::env::var("AMTSBUCH_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn base_options() -> PgConnectOptions {
    database_url().parse().expect("test database URL")
}

async fn admin() -> sqlx::PgConnection {
    sqlx::PgConnection::connect_with(&base_options())
        .await
        .expect("PostgreSQL must be running for the tests (AMTSBUCH_TEST_DATABASE_URL)")
}

/// The event store adapters every store test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    Postgres,
    Sqlite,
}

/// A fresh, empty PostgreSQL schema of the test database; dropped (with everything in
/// it) when this is dropped.
#[derive(Debug)]
pub struct PgSchema {
    name: String,
    options: PgConnectOptions,
}

impl PgSchema {
    pub async fn create() -> Self {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(&format!("CREATE SCHEMA {name}"))
            .execute(&mut admin().await)
            .await
            .expect("create schema");
        let options = base_options().options([("search_path", name.as_str())]);
        Self { name, options }
    }

    /// Connection options whose search path is this schema.
    pub fn options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A store on this schema (its migrations run on first connect).
    pub async fn store(&self) -> PgStore {
        PgStore::connect_with(self.options())
            .await
            .expect("connect")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        // From a thread of its own: drop cannot await, and it may run on a runtime's thread.
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    let Ok(mut admin) = sqlx::PgConnection::connect_with(&base_options()).await
                    else {
                        return;
                    };
                    // A session of an aborted task may still hold a lock for a moment;
                    // never hang on it.
                    let _ = sqlx::query("SET lock_timeout = '20s'")
                        .execute(&mut admin)
                        .await;
                    let _ = sqlx::query(&format!("DROP SCHEMA {name} CASCADE"))
                        .execute(&mut admin)
                        .await;
                });
            }
        })
        .join();
    }
}

/// Where a test's database lives.
#[derive(Debug)]
enum Place {
    Postgres(Box<PgSchema>),
    Sqlite(String),
}

/// A fresh database for one test on one adapter: the store on it, and a scratch
/// directory for the test's other files (KEK files, keys). Removed when dropped.
#[derive(Debug)]
pub struct TestDb {
    pub store: AnyStore,
    // After the store, so that its connections go before the schema or file does.
    place: Place,
    dir: TempDir,
}

impl TestDb {
    /// A fresh schema (PostgreSQL) or file (SQLite) with the store on it.
    pub async fn fresh(adapter: Adapter) -> Self {
        let dir = TempDir::new();
        match adapter {
            Adapter::Postgres => {
                let schema = PgSchema::create().await;
                let store = AnyStore::Postgres(schema.store().await);
                Self {
                    store,
                    place: Place::Postgres(Box::new(schema)),
                    dir,
                }
            }
            Adapter::Sqlite => {
                let url = format!("sqlite://{}", dir.0.join("events.db").display());
                let store = AnyStore::Sqlite(SqliteStore::open(&url).await.expect("open sqlite"));
                Self {
                    store,
                    place: Place::Sqlite(url),
                    dir,
                }
            }
        }
    }

    pub fn adapter(&self) -> Adapter {
        match self.place {
            Place::Postgres(_) => Adapter::Postgres,
            Place::Sqlite(_) => Adapter::Sqlite,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.adapter() == Adapter::Postgres
    }

    /// The read side of the store.
    pub fn db(&self) -> ReadDb {
        ReadDb::new(&self.store)
    }

    /// A second store with connections of its own on the same database (on SQLite, on
    /// the same file), as a second handle in one process or another process opens it.
    pub async fn second_handle(&self) -> AnyStore {
        match &self.place {
            Place::Postgres(schema) => AnyStore::Postgres(schema.store().await),
            Place::Sqlite(url) => {
                AnyStore::Sqlite(SqliteStore::open(url).await.expect("second handle"))
            }
        }
    }

    /// Another connection to the same database, as another process would open it. On
    /// SQLite, where one file belongs to one process, it is the same store.
    pub async fn other_process(&self) -> AnyStore {
        match &self.place {
            Place::Postgres(schema) => AnyStore::Postgres(schema.store().await),
            Place::Sqlite(_) => self.store.clone(),
        }
    }

    /// The PostgreSQL connection options of the schema, `None` on SQLite.
    pub fn pg_options(&self) -> Option<PgConnectOptions> {
        match &self.place {
            Place::Postgres(schema) => Some(schema.options()),
            Place::Sqlite(_) => None,
        }
    }

    /// The scratch directory of the test (on SQLite, also the database file's).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// Every byte the database holds, as someone with a copy of it would find them:
    /// `pg_dump` of the test's schema (PostgreSQL), or the database file with its
    /// write-ahead log (SQLite). For tests that look for plaintext personal data.
    pub fn dump(&self) -> Vec<u8> {
        match &self.place {
            Place::Postgres(schema) => {
                let out = std::process::Command::new("pg_dump")
                    .arg("--dbname")
                    .arg(database_url())
                    .arg("--schema")
                    .arg(schema.name())
                    .output()
                    .expect("pg_dump must be installed (postgresql-client)");
                assert!(
                    out.status.success(),
                    "pg_dump failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                out.stdout
            }
            Place::Sqlite(_) => ["events.db", "events.db-wal"]
                .iter()
                .filter_map(|f| std::fs::read(self.dir.0.join(f)).ok())
                .flatten()
                .collect(),
        }
    }
}

/// Run `test` on a fresh database of `adapter`; the database is removed afterwards. The
/// runner of `on_both_adapters!` when none is named.
pub async fn with_test_db<F, Fut>(adapter: Adapter, test: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    test(TestDb::fresh(adapter).await).await;
}

/// Run `test` on the store of a fresh database of `adapter`.
pub async fn with_store<F, Fut>(adapter: Adapter, test: F)
where
    F: FnOnce(AnyStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::fresh(adapter).await;
    test(db.store.clone()).await;
    drop(db);
}

/// Run `test` against a fresh PostgreSQL store, with the options of its schema for more
/// connections; the schema is dropped afterwards.
pub async fn with_pg<F, Fut>(test: F)
where
    F: FnOnce(PgStore, PgConnectOptions) -> Fut,
    Fut: Future<Output = ()>,
{
    let schema = PgSchema::create().await;
    test(schema.store().await, schema.options()).await;
}

/// Run `test` against a fresh SQLite store, with the URL of its file for more handles;
/// the file is removed afterwards.
pub async fn with_sqlite<F, Fut>(test: F)
where
    F: FnOnce(SqliteStore, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = TempDir::new();
    let url = format!("sqlite://{}", dir.0.join("events.db").display());
    let store = SqliteStore::open(&url).await.expect("open sqlite");
    test(store, url).await;
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

/// A database created for one test and dropped when the test ends.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> Self {
        let server = database_url();
        let name = format!("amtsbuch_e2e_{}", uuid::Uuid::now_v7().simple());
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .expect("PostgreSQL must be running for the end-to-end tests");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create database");
        let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        Self { name, url }
    }

    pub async fn connect(&self) -> sqlx::PgConnection {
        sqlx::PgConnection::connect(&self.url)
            .await
            .expect("connect to test database")
    }

    /// The log as stored, in position order: what every copy elsewhere must match.
    pub async fn events(&self) -> Vec<StoredEvent> {
        let mut conn = self.connect().await;
        let rows: Vec<(i64, uuid::Uuid, Vec<u8>)> =
            sqlx::query_as("SELECT position, event_id, record FROM events ORDER BY position")
                .fetch_all(&mut conn)
                .await
                .expect("read the events table");
        rows.into_iter()
            .map(|(position, event_id, record)| StoredEvent {
                position: u64::try_from(position).expect("positions are positive"),
                event_id,
                json: serde_json::from_slice(&record).expect("records are JSON"),
                record,
            })
            .collect()
    }

    /// The position of the last committed event (0 for an empty log).
    pub async fn head(&self) -> u64 {
        let mut conn = self.connect().await;
        let head: i64 = sqlx::query_scalar("SELECT position FROM log_head")
            .fetch_one(&mut conn)
            .await
            .expect("read log_head");
        u64::try_from(head).expect("the head is not negative")
    }

    pub async fn drop_now(self) {
        if let Ok(mut admin) = sqlx::PgConnection::connect(&database_url()).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}

/// One row of the `events` table.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub position: u64,
    pub event_id: uuid::Uuid,
    /// The stored record bytes, exactly as hashed.
    pub record: Vec<u8>,
    /// The same record parsed, for picking out metadata.
    pub json: Value,
}
