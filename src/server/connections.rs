//! Accepting connections within bounds: how many at once, how many from
//! one peer, and how long a request may take to arrive.
//!
//! `axum::serve` arms no timers and accepts without limit, so a client that
//! opens connections and sends half a request holds them forever. Here
//! every HTTP/1.1 connection has a header-read deadline (which also closes
//! an idle keep-alive connection), request bodies have a read deadline, the
//! total is capped (beyond it, new connections wait in the kernel's queue)
//! and so is each peer's share (beyond it, its new connections are closed).

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::config::LimitsConfig;

/// How long a graceful shutdown waits for requests in progress.
const DRAIN: Duration = Duration::from_secs(10);

/// Open connections per peer address.
#[derive(Default)]
struct PeerCounts(Mutex<HashMap<IpAddr, usize>>);

/// A peer's place among the open connections, given back on drop.
struct PeerSlot {
    counts: Arc<PeerCounts>,
    peer: IpAddr,
}

impl PeerCounts {
    fn take(self: &Arc<Self>, peer: IpAddr, max: usize) -> Option<PeerSlot> {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(peer).or_default();
        if *count >= max {
            return None;
        }
        *count = count.saturating_add(1);
        Some(PeerSlot {
            counts: self.clone(),
            peer,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets
/// requests in progress finish (up to a deadline).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &LimitsConfig,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(RequestBodyTimeoutLayer::new(Duration::from_millis(
        limits.body_read_timeout_ms,
    )));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .keep_alive(true);
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let peers = Arc::new(PeerCounts::default());
    let graceful = GracefulShutdown::new();
    // A flood of connections must not become a flood of log lines.
    let mut refusals = Throttle::new(REPORT_EVERY);
    let mut accept_failures = Throttle::new(REPORT_EVERY);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors, most likely: wait for some to close
                    // rather than spin.
                    if let Some(times) = accept_failures.hit() {
                        tracing::warn!(error = %e, times, "accept failed");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = peers.take(peer.ip(), limits.max_connections_per_peer) else {
            if let Some(times) = refusals.hit() {
                tracing::warn!(
                    peer = %peer.ip(),
                    times,
                    "connections refused: too many from one peer"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request
            // line): hyper has answered or closed already.
            let _ = connection.await;
            drop((slot, permit));
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in progress after {DRAIN:?}; closing them");
    }
}

/// How often a repeated connection problem is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// Lets a repeated event through to the log at most once per period, with
/// how many times it happened since it last got through.
struct Throttle {
    every: Duration,
    last: Option<std::time::Instant>,
    times: u64,
}

impl Throttle {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            times: 0,
        }
    }

    /// Counts one event; `Some(count)` when it should be logged now.
    fn hit(&mut self) -> Option<u64> {
        self.times = self.times.saturating_add(1);
        if self.last.is_some_and(|t| t.elapsed() < self.every) {
            return None;
        }
        self.last = Some(std::time::Instant::now());
        Some(std::mem::take(&mut self.times))
    }
}
