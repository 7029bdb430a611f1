//! Request bodies that stall are cut off (slow-body attacks, "R.U.D.Y."): while a handler
//! waits for the next piece of a body, at most the body timeout may pass (as nginx's
//! `client_body_timeout`: between two reads, not for the whole body, so a large upload on a
//! slow link is fine as long as it moves). The handler then sees its body fail, and whatever it
//! answered is replaced by `408 request_timeout` with `Connection: close`, which also frees the
//! connection's slot of its address (transport.rs).
//!
//! **Boundary:** knows bodies and time, never routes or users; the services' code is unchanged
//! (a body that fails is an interrupted upload to them).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};
use syncsphere_protocol::{ApiError, ErrorCode};
use tokio::time::Sleep;

/// Default of `--body-timeout-secs`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// The error a stalled body fails with.
#[derive(Debug, thiserror::Error)]
#[error("no part of the request body arrived for {0:?}")]
pub struct Stalled(Duration);

/// A body that fails with [`Stalled`] when a wait for its next frame exceeds the timeout.
struct TimedBody {
    inner: Body,
    timeout: Duration,
    /// Armed while a frame is awaited; reset by every frame.
    sleep: Option<Pin<Box<Sleep>>>,
    stalled: Arc<AtomicBool>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.sleep = None;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let timeout = this.timeout;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.stalled.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(Stalled(timeout).into())))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: times every request body; a stalled one is answered `408 request_timeout`.
pub async fn cut_stalled_bodies(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    let stalled = Arc::new(AtomicBool::new(false));
    let request = request.map(|inner| {
        Body::new(TimedBody {
            inner,
            timeout,
            sleep: None,
            stalled: stalled.clone(),
        })
    });
    let response = next.run(request).await;
    if !stalled.load(Ordering::Relaxed) {
        return response;
    }
    tracing::info!(?timeout, "request body stalled; answered 408 and closed");
    let error = ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "no part of the request body arrived for {} s; send it again",
            timeout.as_secs()
        ),
    );
    let mut response = syncsphere_auth::api_error::respond(error);
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn timed(inner: Body, timeout: Duration) -> (TimedBody, Arc<AtomicBool>) {
        let stalled = Arc::new(AtomicBool::new(false));
        let body = TimedBody {
            inner,
            timeout,
            sleep: None,
            stalled: stalled.clone(),
        };
        (body, stalled)
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_keeps_moving_is_never_cut_and_one_that_stops_is() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        let stream = tokio_stream_of(rx);
        let (mut body, stalled) = timed(Body::from_stream(stream), Duration::from_secs(10));
        // Ten pieces 9 s apart: 90 s in all, never 10 s without a piece.
        let sender = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_secs(9)).await;
                tx.send(Ok(Bytes::from_static(b"x"))).await.unwrap();
            }
            tokio::time::sleep(Duration::from_secs(11)).await;
            drop(tx);
        });
        let mut got = 0;
        let error = loop {
            match body.frame().await {
                Some(Ok(_)) => got += 1,
                Some(Err(e)) => break e,
                None => panic!("the body ended instead of stalling"),
            }
        };
        assert_eq!(got, 10);
        assert!(error.is::<Stalled>(), "{error}");
        assert!(stalled.load(Ordering::Relaxed));
        sender.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_whole_body_is_read_as_it_was() {
        let (mut body, stalled) = timed(Body::from("hello"), Duration::from_secs(1));
        let data = (&mut body).collect().await.unwrap().to_bytes();
        assert_eq!(&data[..], b"hello");
        assert!(!stalled.load(Ordering::Relaxed));
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }
}
