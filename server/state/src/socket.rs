//! One upgraded WebSocket as the server holds it: every write bounded in time, every close a
//! handshake bounded in time, after which the TCP connection is dropped; a frame over the size
//! limit is answered with 1009. It counts itself in the `sockets` gauge until it is gone.
//!
//! **Boundary:** knows frames, not the protocol — what the messages mean is `ws.rs`'s business.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::future::{BoxFuture, FutureExt};
use prometheus_client::metrics::gauge::Gauge;
use syncsphere_protocol::ws::{CLOSE_MESSAGE_TOO_BIG, ServerMessage};
use tokio::time::{Instant, timeout, timeout_at};

/// How long the server waits on a WebSocket peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsTimeouts {
    /// A frame not written within this means the peer stopped reading (its kernel buffers are
    /// full): the connection is told to `resync` and closed with 4000.
    pub write: Duration,
    /// Our closing frames plus the peer's close frame, at most this long; then the TCP
    /// connection is dropped whatever state the handshake is in. Below the 5 s shutdown drain.
    pub close: Duration,
    /// How often the server pings a connection after `welcome`.
    pub ping: Duration,
    /// A peer that answers no ping and sends nothing for this long is gone (or not reading):
    /// the connection is dropped. Checked at each ping, so it ends within one `ping` after.
    pub silence: Duration,
}

impl Default for WsTimeouts {
    fn default() -> Self {
        WsTimeouts {
            write: Duration::from_secs(10),
            close: Duration::from_secs(2),
            ping: Duration::from_secs(20),
            silence: Duration::from_secs(60),
        }
    }
}

/// Why a write failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WriteError {
    /// Not written within [`WsTimeouts::write`]: the peer is not reading.
    Stalled,
    /// The connection is gone.
    Gone,
}

/// What the peer sent next.
pub(crate) enum Incoming {
    Text(Utf8Bytes),
    /// A ping, pong or binary frame: a sign of life, nothing to act on.
    Other,
    /// The peer's close frame: answer it with [`Socket::answer_close`].
    Close,
    /// A frame or message over the size limit: end with [`Socket::close_too_big`].
    TooBig,
    /// End of stream, reset or protocol error.
    Gone,
}

pub(crate) struct Socket {
    ws: WebSocket,
    timeouts: WsTimeouts,
    open: Gauge,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Socket {
    /// Takes `ws` and counts it in `open` until dropped.
    pub(crate) fn new(ws: WebSocket, timeouts: WsTimeouts, open: Gauge) -> Self {
        open.inc();
        Socket { ws, timeouts, open }
    }

    async fn write(&mut self, msg: Message) -> Result<(), WriteError> {
        // Cancelling a send leaves tungstenite's buffer whole: a frame is queued entirely or
        // not at all, so a close frame can still follow.
        match timeout(self.timeouts.write, self.ws.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Gone),
            Err(_) => Err(WriteError::Stalled),
        }
    }

    pub(crate) async fn send(&mut self, msg: &ServerMessage) -> Result<(), WriteError> {
        let text = serde_json::to_string(msg).expect("server messages serialise");
        self.write(Message::Text(text.into())).await
    }

    pub(crate) async fn ping(&mut self) -> Result<(), WriteError> {
        self.write(Message::Ping(Default::default())).await
    }

    pub(crate) async fn recv(&mut self) -> Incoming {
        match self.ws.recv().await {
            Some(Ok(Message::Text(text))) => Incoming::Text(text),
            Some(Ok(Message::Close(_))) => Incoming::Close,
            Some(Ok(_)) => Incoming::Other,
            Some(Err(e)) if is_too_big(&e) => Incoming::TooBig,
            Some(Err(_)) | None => Incoming::Gone,
        }
    }

    // The close path's futures are boxed: a connection's task is as large as the largest
    // future it may await, and these (tungstenite's write state, timers) would add ~0.6 KiB to
    // every idle connection for a path that runs once, at its end (BENCHMARKS.md, 2026-12-04).

    /// Sends `before` (if any) and our close frame, together at most [`WsTimeouts::close`].
    /// Returns the deadline by which the peer must answer ([`Socket::finish_close`]).
    pub(crate) fn start_close<'a>(
        &'a mut self,
        before: Option<&'a ServerMessage>,
        code: u16,
        reason: &'static str,
    ) -> BoxFuture<'a, Instant> {
        async move { self.start_close_inner(before, code, reason).await }.boxed()
    }

    async fn start_close_inner(
        &mut self,
        before: Option<&ServerMessage>,
        code: u16,
        reason: &'static str,
    ) -> Instant {
        let deadline = Instant::now() + self.timeouts.close;
        let frames = async {
            if let Some(msg) = before {
                let text = serde_json::to_string(msg).expect("server messages serialise");
                self.ws.send(Message::Text(text.into())).await?;
            }
            self.ws
                .send(Message::Close(Some(CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                })))
                .await
        };
        if !matches!(timeout_at(deadline, frames).await, Ok(Ok(()))) {
            tracing::debug!(
                code,
                "close frame not written in time; dropping the connection"
            );
        }
        deadline
    }

    /// Reads (and drops) what the peer still sends until its close frame, at most until
    /// `deadline`; then the TCP connection is dropped with `self`.
    pub(crate) fn finish_close(mut self, deadline: Instant) -> BoxFuture<'static, ()> {
        async move {
            let _ = timeout_at(deadline, async {
                while let Some(Ok(_)) = self.ws.recv().await {}
            })
            .await;
        }
        .boxed()
    }

    /// Our close frame, then the peer's, within [`WsTimeouts::close`].
    pub(crate) fn close(mut self, code: u16, reason: &'static str) -> BoxFuture<'static, ()> {
        async move {
            let deadline = self.start_close_inner(None, code, reason).await;
            self.finish_close(deadline).await;
        }
        .boxed()
    }

    /// After the peer's close frame: writes the echo tungstenite queued, then ends.
    pub(crate) fn answer_close(mut self) -> BoxFuture<'static, ()> {
        async move {
            // The next read flushes the queued reply and then reports the end of the stream.
            let _ = timeout(self.timeouts.close, self.ws.recv()).await;
        }
        .boxed()
    }

    /// After a frame over the limit: closes with 1009 without reading on (the rest of the
    /// oversized frame would be buffered).
    pub(crate) fn close_too_big(mut self) -> BoxFuture<'static, ()> {
        async move {
            self.start_close_inner(None, CLOSE_MESSAGE_TOO_BIG, "message too big")
                .await;
        }
        .boxed()
    }
}

/// Whether a read error is tungstenite's size limit (frame or message).
fn is_too_big(e: &axum::Error) -> bool {
    matches!(
        std::error::Error::source(e).and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}
