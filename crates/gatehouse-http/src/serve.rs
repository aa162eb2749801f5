//! The accept loop. Not `axum::serve`: it sets no header-read timeout (slowloris), and we
//! want a bound on open connections, a bounded TLS handshake and a drain on shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::tls::TlsListener;

/// How a listener serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A client gets this long to send its request headers, on every request of a connection
    /// (and, on TLS, to finish its handshake).
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    /// How long in-flight requests may finish after shutdown begins.
    pub grace: Duration,
    /// TLS on this listener; `None`: plain HTTP.
    pub tls: Option<Arc<TlsListener>>,
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and lets
/// in-flight requests (including streams) finish for up to `grace`.
pub async fn serve(listener: TcpListener, app: Router, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(opts.header_read_timeout).keep_alive(true);
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // e.g. out of file descriptors: back off instead of spinning
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // small writes (SSE events) must not wait for Nagle
        let _ = stream.set_nodelay(true);
        // The peer address is available to handlers (the control plane audits it); the data
        // plane never logs or labels it.
        let svc = app.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req
        });
        let svc = TowerToHyperService::new(svc);
        let watcher = graceful.watcher();
        let Some(tls) = &opts.tls else {
            let conn = watcher.watch(http.serve_connection(TokioIo::new(stream), svc));
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
            });
            continue;
        };
        let (acceptor, plane, deadline) = (tls.acceptor(), tls.plane(), opts.header_read_timeout);
        // the connection is built after the handshake, in its task: it takes the settings along
        let http = http.clone();
        tokio::spawn(async move {
            // the handshake is bounded like the headers are: a silent client holds no slot
            let stream = match tokio::time::timeout(deadline, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    metrics::counter!("gatehouse_tls_handshake_failures_total", "plane" => plane).increment(1);
                    tracing::debug!(plane, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics::counter!("gatehouse_tls_handshake_failures_total", "plane" => plane).increment(1);
                    tracing::debug!(plane, "TLS handshake timed out");
                    return;
                }
            };
            if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let grace = opts.grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
}
