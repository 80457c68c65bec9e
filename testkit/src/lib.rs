//! What every Amtsbuch test sets up, written once: a fresh PostgreSQL schema or SQLite
//! file per test (`TestDb`, `with_pg`, `with_sqlite`) and the macro that runs a test on
//! both adapters (`on_both_adapters!`); a fresh PostgreSQL database per test for the
//! binary (`TestDatabase`); a private `nats-server` (`NatsServer`) and a stream of its
//! own on the shared one (`TestNats`); a private PostgreSQL server (`PgServer`); the
//! `amtsbuch` binary on a free port (`Server`) with a client for it; scratch directories.
//!
//! A dev-dependency of test targets only; it names no business domain. The parts that
//! need the API crate (tokens, the router in process, the domain modules' samples) are
//! in `amtsbuch-testkit-api`, so that the adapters' and read models' tests do not build
//! the service.

mod db;
mod dir;
mod guide;
mod nats;
mod pg_server;
mod sealing;
mod service;

pub use db::*;
pub use dir::*;
pub use guide::*;
pub use nats::*;
pub use pg_server::*;
pub use sealing::*;
pub use service::*;

/// Run each named test function on PostgreSQL (a fresh schema) and on SQLite (a fresh
/// file), as `postgres::<name>` and `sqlite::<name>`, each a multi-threaded tokio test.
///
/// `on_both_adapters!(a, b)` calls `async fn a(t: TestDb)` with a fresh database of each
/// adapter (`with_test_db`). `on_both_adapters!(using run; a, b)` calls
/// `run(adapter, a).await` instead, for tests that take something else: `run` is any
/// function of an `Adapter` and the test (`with_store`, or one of the test file's own that
/// builds an environment on a `TestDb`); names of the test file are in scope.
#[macro_export]
macro_rules! on_both_adapters {
    (@module $module:ident, $adapter:ident, $run:path, $($name:ident),+) => {
        mod $module {
            #[allow(
                unused_imports,
                reason = "the runner may be a name of the test file; not every runner is"
            )]
            use super::*;
            $(
                #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $run($crate::Adapter::$adapter, super::$name).await;
                }
            )+
        }
    };
    (using $run:path; $($name:ident),+ $(,)?) => {
        $crate::on_both_adapters!(@module postgres, Postgres, $run, $($name),+);
        $crate::on_both_adapters!(@module sqlite, Sqlite, $run, $($name),+);
    };
    ($($name:ident),+ $(,)?) => {
        $crate::on_both_adapters!(using $crate::with_test_db; $($name),+);
    };
}
