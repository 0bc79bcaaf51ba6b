//! The accept loop of `pe serve`: HTTP/1.1 connections (with upgrades) served by hyper, with the
//! limits a public server needs and `axum::serve` does not set:
//!
//! 1. A header read timeout: a request's head must arrive within it. hyper starts the timer
//!    whenever a connection waits for a head, so it also ends idle keep-alive connections
//!    (slow-loris sockets and forgotten ones alike).
//! 2. A cap on open connections per client (the TCP peer; IPv6 by /64). Connections from a
//!    trusted proxy are not capped: it carries many clients.
//! 3. Graceful shutdown: on the signal, stop accepting, let running requests finish, close idle
//!    connections.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use shared::error::chain;

use crate::client::TrustedProxies;
use crate::ratelimit::ClientKey;

/// Connection limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    /// Time for a request's head to arrive, and for an idle keep-alive connection to send one.
    pub header_timeout: Duration,
    /// Open connections per client.
    pub per_client: usize,
    /// Peers exempt from the per-client cap.
    pub trusted_proxies: TrustedProxies,
}

/// Open things (connections, live runs) per client.
#[derive(Debug, Default)]
pub struct Open(Mutex<HashMap<ClientKey, usize>>);

/// One open thing of a client; gives its place back when dropped.
#[derive(Debug)]
pub struct Slot {
    open: Arc<Open>,
    key: ClientKey,
}

impl Open {
    /// A place for one more of `key`'s, unless it has `max` already.
    pub fn take(self: &Arc<Self>, key: ClientKey, max: usize) -> Option<Slot> {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = map.entry(key).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { open: self.clone(), key })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.open.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for running requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    let builder = Arc::new(builder);
    let open = Arc::new(Open::default());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tracing::warn!(error = %chain(&err), "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = if limits.trusted_proxies.contains(peer.ip()) {
            None
        } else {
            match open.take(ClientKey::from(peer.ip()), limits.per_client) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%peer, "too many connections from this client: closed");
                    drop(stream);
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                app.clone().oneshot(req.map(axum::body::Body::new))
            },
        ));
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %chain(&*err), "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_at_most_its_share_of_connections_and_slots_come_back() {
        let open = Arc::new(Open::default());
        let key = ClientKey::from("192.0.2.1".parse::<std::net::IpAddr>().unwrap());
        let slots: Vec<Slot> = (0..3).map(|_| open.take(key, 3).unwrap()).collect();
        assert!(open.take(key, 3).is_none());
        let other = ClientKey::from("192.0.2.2".parse::<std::net::IpAddr>().unwrap());
        assert!(open.take(other, 3).is_some(), "another client is not affected");
        drop(slots);
        assert!(open.take(key, 3).is_some());
        assert!(open.0.lock().unwrap().len() <= 1, "forgotten clients leave no entry");
    }
}
