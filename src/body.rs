//! The one body type that flows through the gateway, in both directions.

use bytes::Bytes;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streaming body: an upstream's, a client's, or one the gateway wrote itself.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A body that keeps `T` alive until the body is done or dropped: a request counted in
/// flight, a route's concurrency permit.
pub struct Holding<T> {
    inner: Body,
    _held: T,
}

impl<T> Holding<T> {
    pub fn new(inner: Body, held: T) -> Holding<T> {
        Holding { inner, _held: held }
    }
}

impl<T: Unpin> http_body::Body for Holding<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A body that fails when no frame comes within `timeout` of asking for one.
///
/// Like tower-http's `TimeoutBody`, except that the timer is armed only once the inner body
/// has nothing ready: that one arms a timer (a clock read, a timer-wheel insert and removal)
/// for every frame, even one already in hand, which is most answers of an API (their whole
/// body arrives with the head). Measured at about 800 instructions a request.
pub struct GapTimeout<B> {
    inner: B,
    timeout: std::time::Duration,
    /// Armed while the inner body keeps us waiting; disarmed by every frame.
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<B> GapTimeout<B> {
    pub fn new(inner: B, timeout: std::time::Duration) -> GapTimeout<B> {
        GapTimeout {
            inner,
            timeout,
            sleep: None,
        }
    }
}

/// No frame came within the bound: the peer stalled mid-body.
#[derive(Debug, thiserror::Error)]
#[error("no data for {0:?} in the middle of a body")]
pub struct GapTimeoutError(pub std::time::Duration);

impl<B> http_body::Body for GapTimeout<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        use std::future::Future;
        use std::task::Poll;
        let this = &mut *self;
        if let Poll::Ready(frame) = std::pin::Pin::new(&mut this.inner).poll_frame(cx) {
            this.sleep = None;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let timeout = this.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(GapTimeoutError(timeout).into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;
    use std::time::Duration;

    /// A body whose frames come after the given pauses.
    fn paced(pauses: Vec<u64>) -> impl http_body::Body<Data = Bytes, Error = BoxError> + Unpin {
        let frames = futures_util::stream::unfold(pauses.into_iter(), |mut pauses| async move {
            let pause = pauses.next()?;
            tokio::time::sleep(Duration::from_millis(pause)).await;
            Some((
                Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"x"))),
                pauses,
            ))
        });
        StreamBody::new(Box::pin(frames))
    }

    #[tokio::test(start_paused = true)]
    async fn a_frame_already_there_arms_no_timer() {
        let mut body = GapTimeout::new(full("ok"), Duration::from_millis(10));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "ok");
        assert!(body.sleep.is_none());
        assert!(body.frame().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn each_frame_restarts_the_clock_and_a_longer_silence_fails() {
        // Gaps of 400 ms pass a 500 ms bound however long the body lasts in all.
        let mut body = GapTimeout::new(paced(vec![400, 400, 400, 600]), Duration::from_millis(500));
        for _ in 0..3 {
            assert!(body.frame().await.unwrap().is_ok());
        }
        let started = tokio::time::Instant::now();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(err.is::<GapTimeoutError>(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_millis(500));
    }
}
