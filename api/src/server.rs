//! Serving HTTP/1.1 connections with hyper, until a shutdown signal, then gracefully.
//!
//! `axum::serve` takes no configuration, and one setting matters here: hyper refuses a
//! request with more header fields than its limit (100 by default) by itself, with a bare
//! `431` without body or correlation id, before any layer of the router could answer with
//! a problem. So the parser's limit is set well above the service's own
//! (`router::MAX_HEADERS`), which `router::observe` enforces with a problem like every other
//! refusal. What the parser still refuses on its own — a head it cannot parse, more than
//! `PARSER_MAX_HEADERS` fields, a head beyond hyper's buffer (about 400 KiB), a URI beyond
//! 64 KiB — never reaches the service: such a request gets the parser's bare status and a
//! closed connection.
//!
//! Shutdown is `axum::serve`'s: stop accepting, let each connection finish the request it
//! is serving, and return once every connection has closed.

use std::future::Future;
use std::pin::pin;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The parser's own header limit: ten times `router::MAX_HEADERS`, so that a client with
/// too many headers learns so from a problem. Above 100, hyper keeps its header table on
/// the heap: an uninitialised allocation of some 64 KiB per request head, freed at once.
pub const PARSER_MAX_HEADERS: usize = 10 * crate::router::MAX_HEADERS;

/// Serve `app` on `listener` until `shutdown` completes, then finish open requests.
pub async fn serve(
    mut listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_headers(PARSER_MAX_HEADERS);

    // The signal: its receiver is dropped when `shutdown` completes, which every
    // connection notices through `closed()` on its sender.
    let (signal, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection holds a receiver of `open`; the last one dropped ends the wait.
    let (open, open_rx) = watch::channel(());

    loop {
        let (stream, _peer) = tokio::select! {
            // axum's `Listener` retries after an accept error, pausing when it is not
            // about one connection (e.g. out of file descriptors).
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = signal.closed() => break,
        };
        let connection = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
            .with_upgrades();
        let signal = signal.clone();
        let open_rx = open_rx.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = signal.closed(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open_rx);
        });
    }
    drop(open_rx);
    drop(listener);
    open.closed().await;
    Ok(())
}
