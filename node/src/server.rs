//! The HTTP server loop: the router on hyper, one task per connection, with a deadline on
//! request headers.
//!
//! It is axum's own `serve` loop (accept, a hyper connection with upgrades per socket, graceful
//! shutdown: stop accepting, let in-flight requests finish) with one thing axum's lacks: hyper's
//! header read timeout. Without it a client that sends its headers a byte at a time holds a
//! connection and a task for as long as it likes (slowloris); bodies have their own deadline
//! (`BODY_READ_TIMEOUT_MS`, in `http`).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use futures::FutureExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// How long a client may take to send a request's headers (each request on a kept-alive
/// connection too): a real client sends them at once.
pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and waits for
/// the connections' in-flight requests (upgraded WebSockets watch the node's drain signal and
/// close themselves).
pub async fn serve<L>(mut listener: L, app: Router, shutdown: impl Future<Output = ()> + Send + 'static)
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let (io, addr) = tokio::select! {
            conn = listener.accept() => conn,
            _ = signal_tx.closed() => break,
        };
        let router = app.clone();
        // The same connect-info axum's `into_make_service_with_connect_info` gives: the rate
        // limiter and the WebSocket caps key on it.
        let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            router.clone().oneshot(req.map(axum::body::Body::new))
        });
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(Duration::from_millis(HEADER_READ_TIMEOUT_MS));
            let mut conn = pin!(builder.serve_connection_with_upgrades(TokioIo::new(io), service));
            let mut signalled = pin!(signal_tx.closed().fuse());
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(%addr, error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = &mut signalled => conn.as_mut().graceful_shutdown(),
                }
            }
            drop(close_rx);
        });
    }
    drop(close_rx);
    drop(listener);
    close_tx.closed().await;
}
