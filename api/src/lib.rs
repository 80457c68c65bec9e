//! The Amtsbuch service: HTTP API, and the commands of the `amtsbuch` binary.
//!
//! `run` serves the API on a listener until a shutdown future completes; tests call it on
//! port 0. The binary (`main.rs`) parses flags and runs the commands in `cli`.

pub mod applications;
pub mod auth;
pub mod body;
pub mod cli;
pub mod command;
pub mod domains;
pub mod dto;
pub mod gdpr;
pub mod http;
pub mod hub;
pub mod keys;
pub mod ledger_http;
pub mod metrics;
pub mod module;
pub mod nats_http;
pub mod participation;
pub mod problem;
pub mod router;
pub mod server;
pub mod sse;
pub mod state;

use std::future::Future;

use tokio::net::TcpListener;

pub use router::router;
pub use state::AppState;

/// Serve the API on `listener` until `shutdown` completes, then finish open requests.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::serve(listener, router(state), shutdown).await
}
