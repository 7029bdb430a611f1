//! The HTTP/1.1 listener in front of the routers (what `axum::serve` did, with limits): a
//! request's headers must arrive within a timeout (slowloris), an address holds at most so many
//! open connections — upgraded WebSockets included, until their socket closes — and is refused
//! past it with `429 too_many_connections`; on shutdown it stops accepting, lets requests in
//! flight finish and closes idle connections.
//!
//! **Boundary:** knows sockets and HTTP framing, never routes, users or tokens.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use syncsphere_protocol::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Default of [`Transport::header_read_timeout`]: hyper's own default once it has a timer.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`Transport::max_connections_per_address`]: a household or small office behind
/// one NAT (a device holds one push socket and up to ~9 HTTP connections while it syncs).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
/// A refused connection gets this long to send its request before it is dropped.
const REFUSAL_HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// Limits of the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// A request's headers must be complete this long after the server starts waiting for
    /// them; an idle keep-alive connection is closed after it too.
    pub header_read_timeout: Duration,
    /// Open connections per client address (an IPv4 address, an IPv6 /64); 0 is unlimited.
    pub max_connections_per_address: usize,
}

impl Default for Transport {
    fn default() -> Self {
        Transport {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then until every connection that
/// is not upgraded has finished its request.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send,
) {
    let open = Arc::new(OpenConnections::default());
    // `stop` tells connections to finish; every connection holds a `done` receiver, so the
    // sender's `closed()` is when the last one ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: give connections time to close.
                    tracing::error!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        // Responses are written as headers, then body frames: with Nagle's algorithm a small
        // frame waits for the ACK of the one before, which the client delays (~40 ms on Linux).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let address = address_key(peer.ip());
        let Some(counted) = open.admit(address, transport.max_connections_per_address) else {
            tracing::debug!(%peer, "connection refused: too many from its address");
            tokio::spawn(refuse(stream));
            continue;
        };
        let stream = CountedStream {
            inner: stream,
            _counted: counted,
        };
        let (router, mut stop, done) = (router.clone(), stop_rx.clone(), done_rx.clone());
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(transport.header_read_timeout);
            // Handlers may ask who is on the other end (the sign-in throttle does).
            let router = router.map_request(move |mut req: axum::extract::Request<_>| {
                req.extensions_mut()
                    .insert(syncsphere_auth::ClientAddress(peer.ip()));
                req
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(router))
                .with_upgrades();
            let mut conn = pin!(conn);
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stop| *stop) => conn.as_mut().graceful_shutdown(),
                }
            }
            drop(done);
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    drop(done_rx);
    done_tx.closed().await;
}

/// Answers one request with `429 too_many_connections`, then closes.
async fn refuse(stream: TcpStream) {
    let service = hyper::service::service_fn(|_request| async {
        let error = ApiError::new(
            ErrorCode::TooManyConnections,
            "too many open connections from your address; close some and retry",
        );
        let mut response = syncsphere_auth::api_error::respond(error);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
        Ok::<_, std::convert::Infallible>(response)
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(REFUSAL_HEADER_TIMEOUT)
        .keep_alive(false);
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Errors of one connection that do not affect the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// What the per-address limit counts by: an IPv4 address (IPv4-mapped IPv6 included) or an
/// IPv6 /64, the block one subscriber usually holds.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

/// Open connections per address.
#[derive(Default)]
struct OpenConnections {
    by_address: Mutex<HashMap<IpAddr, usize>>,
}

impl OpenConnections {
    /// Counts a new connection of `address`, unless it already has `limit` (0: no limit).
    fn admit(self: &Arc<Self>, address: IpAddr, limit: usize) -> Option<Counted> {
        let mut by_address = self.by_address.lock().expect("connection counts lock");
        let open = by_address.entry(address).or_default();
        if limit > 0 && *open >= limit {
            return None;
        }
        *open += 1;
        if *open == limit {
            tracing::warn!(%address, limit, "address reached its connection limit; more are refused");
        }
        Some(Counted {
            open: self.clone(),
            address,
        })
    }
}

/// One counted connection; uncounted when dropped.
struct Counted {
    open: Arc<OpenConnections>,
    address: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut by_address = self.open.by_address.lock().expect("connection counts lock");
        if let Some(open) = by_address.get_mut(&self.address) {
            *open -= 1;
            if *open == 0 {
                by_address.remove(&self.address);
            }
        }
    }
}

/// A TCP stream that counts against its address as long as it exists — through hyper and, for
/// a WebSocket, through the upgrade to the socket's end.
struct CountedStream {
    inner: TcpStream,
    _counted: Counted,
}

impl AsyncRead for CountedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CountedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_ipv4_address_or_ipv6_64() {
        let key = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(key("192.0.2.7"), "192.0.2.7");
        assert_eq!(key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
        assert_eq!(key("::1"), "::");
    }

    #[test]
    fn a_connection_counts_until_dropped() {
        let open = Arc::new(OpenConnections::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = open.admit(a, 2).unwrap();
        let _second = open.admit(a, 2).unwrap();
        assert!(open.admit(a, 2).is_none());
        assert!(open.admit(b, 2).is_some(), "the limit is per address");
        drop(first);
        assert!(open.admit(a, 2).is_some());
        assert!(open.admit(a, 0).is_some(), "0 is unlimited");
    }
}
