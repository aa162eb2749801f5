//! The accept loop. Not `axum::serve`: it sets no header-read timeout (slowloris), and we
//! want a bound on open connections, a bounded TLS handshake and a drain on shutdown.
//! HTTP/1.1 everywhere; HTTP/2 only on a TLS listener that offers it (ALPN `h2`), so the
//! HTTP/1.1 path is the same code either way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::tls::TlsListener;

/// Requests one HTTP/2 connection may have in flight at once (HTTP/1: one per connection);
/// `max_connections` times this bounds a listener's requests in flight.
pub const H2_MAX_STREAMS: u32 = 100;

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
    let h2 = http2_builder();
    // HTTP/2 connections close themselves on this (see `serve_h2`)
    let (stopping, stop) = tokio::sync::watch::channel(false);
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
        let (http, h2, stop) = (http.clone(), h2.clone(), stop.clone());
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
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                // the drain waits for this connection as long as its watcher lives
                let _draining = watcher;
                serve_h2(&h2, TokioIo::new(stream), svc, deadline, stop).await;
            } else if let Err(e) = watcher.watch(http.serve_connection(TokioIo::new(stream), svc)).await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let grace = opts.grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(grace) => tracing::warn!(grace_ms = grace.as_millis() as u64, "grace period over; closing remaining connections"),
    }
}

/// HTTP/2's bounds: streams in flight per connection, header size, and hyper's limits on
/// streams a client resets or makes us reset (the "rapid reset" floods); pings find dead peers.
fn http2_builder() -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_STREAMS)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(Some(20))
        .max_local_error_reset_streams(Some(1024))
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// One HTTP/2 connection until it ends. It is closed gracefully (GOAWAY: streams in flight
/// finish, no new ones start) when the listener shuts down, or when no request started on it
/// for `idle`, the header-read timeout: as an idle HTTP/1 keep-alive connection is, so an idle
/// client does not hold one of the listener's connections forever.
async fn serve_h2<I, S, B>(
    builder: &hyper::server::conn::http2::Builder<TokioExecutor>,
    io: I,
    svc: S,
    idle: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::Service<http::Request<hyper::body::Incoming>, Response = http::Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let started = Arc::new(AtomicU64::new(0));
    let counting = {
        let started = started.clone();
        hyper::service::service_fn(move |req| {
            started.fetch_add(1, Ordering::Relaxed);
            svc.call(req)
        })
    };
    let conn = builder.serve_connection(io, counting);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut seen, mut closing) = (0, false);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => {
                let now = started.load(Ordering::Relaxed);
                if now == seen {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                seen = now;
            }
        }
    }
}
