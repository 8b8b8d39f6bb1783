//! Upstream HTTP/1.1 connections, pooled per upstream and driven by the request that uses them.
//!
//! hyper-util's pooled client spawns one task per upstream connection: every request then
//! hands its head to that task over a channel, and the answer and each piece of its body come
//! back over two more, with a task wake-up for each hop (often across worker threads). Here a
//! connection's I/O is polled by the task of the request that holds it, while it waits for the
//! answer and while the answer's body streams; between two requests it rests in the pool,
//! polled by nobody. No crate drives a client connection in its caller's task (pingora has its
//! own HTTP/1 client for the same reason), hence this module; hyper's `client::conn::http1`
//! still does all the HTTP.
//!
//! A connection that the upstream closed while it rested is noticed when it is taken (its EOF
//! is read before the request is written) and dropped; a request that a stale connection
//! could not send is sent again on another, as hyper-util's client does.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::TrySendError;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tower_service::Service;

use crate::body::{Body, BoxError};

type Io = MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;
pub(super) type Connector = HttpsConnector<HttpConnector>;

/// A connection unused for this long is closed (nginx keeps an idle keep-alive 75 s, so we
/// let go first, and a request rarely meets a connection the upstream is closing).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Idle connections kept per upstream; more are closed as they come back. Far above what one
/// replica keeps busy towards one upstream, and it bounds the memory and sockets of a burst.
const MAX_IDLE: usize = 1024;

/// How far a connection's read buffer grows (hyper's default is about 400 KiB). While a large
/// answer streams, this is what its connection holds: 64 connections each streaming 1 MiB
/// answers peaked at 20 MiB of RSS, against 62 to 87 MiB with hyper's default. Read in more
/// pieces, such an answer costs 15 to 25% more CPU (an A/B of the two, 1 MiB answers; still
/// over twice nginx's requests/s there). A response head must fit too: hyper stops reading one
/// that has filled the buffer (502).
const READ_BUFFER: usize = 64 * 1024;

/// One upstream's connections at rest, and how to open more.
pub(super) struct Pool {
    connector: Connector,
    /// Scheme and authority: what the connector dials.
    target: Uri,
    /// Bounds the whole connect: TCP, TLS handshake and all.
    connect_timeout: Duration,
    /// Most recently used at the back: taken first, while the oldest age out at the front.
    idle: Mutex<VecDeque<Idle>>,
    /// Set once the task that closes connections idle too long has been started.
    reaping: AtomicBool,
    /// [`IDLE_TIMEOUT`] and [`MAX_IDLE`], smaller in tests.
    idle_timeout: Duration,
    max_idle: usize,
}

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// An HTTP/1.1 connection to the upstream: the side that sends requests, and the side that
/// does the I/O (`None` once it has ended). Always boxed: with its buffers and TLS state it
/// is kilobytes, and it moves between the pool, the request and the answer's body.
pub(super) struct Conn {
    sender: SendRequest<Body>,
    driver: Option<http1::Connection<Io, Body>>,
    /// What the connection is polled with: see [`Gate`].
    gate: Arc<Gate>,
    waker: Waker,
}

/// The waker a connection is polled with, in front of the task's.
///
/// hyper's connection takes requests and gives answer bodies over channels, and each
/// hand-over wakes the waker the other side last saw. Here that is the very task that made
/// the hand-over, still running: tokio then polled the whole client connection once more
/// for nothing, twice a request (a request put in the queue; a body piece taken), 3.3 polls
/// a request instead of 2 and 1.4k instructions. While `held`, a wake is only noted, which
/// is sound because the connection is polled right after (see [`Gate::quietly`]'s callers).
struct Gate {
    task: futures_util::task::AtomicWaker,
    held: AtomicBool,
    missed: AtomicBool,
}

impl Gate {
    /// Runs `f`, which hands something to the connection or takes something from it, with
    /// the connection's wakes held back; true if one came meanwhile. The caller then polls
    /// the connection, as the wake asked.
    fn quietly<T>(&self, f: impl FnOnce() -> T) -> (T, bool) {
        self.held.store(true, Ordering::SeqCst);
        let out = f();
        self.held.store(false, Ordering::SeqCst);
        (out, self.missed.swap(false, Ordering::SeqCst))
    }
}

impl std::task::Wake for Gate {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // A wake from another thread may meet the end of the hold: it is then either seen
        // by `quietly`'s caller (noted before the hold ended) or passed on (after). SeqCst
        // orders the four accesses so that it cannot fall between the two.
        if self.held.load(Ordering::SeqCst) {
            self.missed.store(true, Ordering::SeqCst);
            if self.held.load(Ordering::SeqCst) {
                return;
            }
        }
        self.task.wake();
    }
}

/// Why no answer came: the connection could not be made, or the exchange on it failed.
pub(super) enum SendError {
    Connect(BoxError),
    Exchange(hyper::Error),
}

impl Pool {
    pub(super) fn new(connector: Connector, target: Uri, connect_timeout: Duration) -> Pool {
        Pool {
            connector,
            target,
            connect_timeout,
            idle: Mutex::new(VecDeque::new()),
            reaping: AtomicBool::new(false),
            idle_timeout: IDLE_TIMEOUT,
            max_idle: MAX_IDLE,
        }
    }

    /// Sends `req` on a pooled connection, or on a new one, and waits for the answer's head.
    /// The connection comes back with the answer: its body streams through it.
    pub(super) async fn send(
        self: &Arc<Self>,
        mut req: Request<Body>,
    ) -> Result<(Response<Incoming>, Box<Conn>), SendError> {
        loop {
            let (mut conn, reused) = match self.take() {
                Some(conn) => (conn, true),
                // Boxed: a connect's future (TLS handshake included) is large and rare; kept
                // inline it would grow every request's future, which is moved as a whole.
                None => (
                    Box::pin(self.connect()).await.map_err(SendError::Connect)?,
                    false,
                ),
            };
            // A pooled connection's EOF, if the upstream closed it while it rested, is read by
            // the exchange's first poll, before anything is written to it: hyper reads before
            // it writes, and a client connection closed for reading writes no head. The
            // request then comes back unsent and goes out on another connection. (A poll of
            // its own here cost 2.8k instructions a request.)
            match conn.exchange(req).await {
                Ok(res) => return Ok((res, conn)),
                Err(mut err) => match err.take_message() {
                    // Never written: the connection was stale. Another one gets it.
                    Some(unsent) if reused => req = unsent,
                    _ => return Err(SendError::Exchange(err.into_error())),
                },
            }
        }
    }

    /// A new connection, within the connect timeout: the connector's own bounds the TCP
    /// connect only, and an upstream that accepts but never finishes its TLS handshake must
    /// not hold a request longer.
    async fn connect(&self) -> Result<Box<Conn>, BoxError> {
        let connect = async {
            let mut connector = self.connector.clone();
            std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
            let io = connector.call(self.target.clone()).await?;
            let (sender, driver) = http1::Builder::new()
                .max_buf_size(READ_BUFFER)
                .handshake(io)
                .await?;
            let gate = Arc::new(Gate {
                task: futures_util::task::AtomicWaker::new(),
                held: AtomicBool::new(false),
                missed: AtomicBool::new(false),
            });
            Ok::<_, BoxError>(Box::new(Conn {
                sender,
                driver: Some(driver),
                waker: Waker::from(gate.clone()),
                gate,
            }))
        };
        match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(conn) => conn,
            Err(_) => Err(format!(
                "no connection within the connect timeout ({:?})",
                self.connect_timeout
            )
            .into()),
        }
    }

    fn take(&self) -> Option<Box<Conn>> {
        let mut idle = lock(&self.idle);
        while let Some(entry) = idle.pop_back() {
            if entry.since.elapsed() >= self.idle_timeout {
                // Every entry before it is older still.
                let expired = std::mem::take(&mut *idle);
                drop(idle);
                drop((entry, expired));
                return None;
            }
            if !entry.conn.sender.is_closed() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn put(self: &Arc<Self>, conn: Box<Conn>) {
        let mut idle = lock(&self.idle);
        let evicted = if idle.len() >= self.max_idle {
            idle.pop_front()
        } else {
            None
        };
        idle.push_back(Idle {
            conn,
            since: Instant::now(),
        });
        drop(idle);
        drop(evicted);
        // Marked started only once it is: a put outside a runtime leaves it to the next one.
        if !self.reaping.load(Ordering::Relaxed) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                if !self.reaping.swap(true, Ordering::Relaxed) {
                    runtime.spawn(reap(Arc::downgrade(self), self.idle_timeout));
                }
            }
        }
    }

    /// Closes the connections idle for longer than the idle timeout.
    fn evict_expired(&self) {
        let mut idle = lock(&self.idle);
        let keep_from = idle
            .iter()
            .position(|e| e.since.elapsed() < self.idle_timeout)
            .unwrap_or(idle.len());
        let expired: Vec<Idle> = idle.drain(..keep_from).collect();
        drop(idle);
        drop(expired);
    }
}

/// Closes idle connections while the pool lives (a plan replaced by a reload drops its pools,
/// and this task ends at its next tick). Without it, connections that the upstream closed
/// would hold their sockets until traffic came back.
async fn reap(pool: Weak<Pool>, idle_timeout: Duration) {
    let mut tick = tokio::time::interval(idle_timeout / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match pool.upgrade() {
            Some(pool) => pool.evict_expired(),
            None => return,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The queue is consistent between any two statements: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Conn {
    /// Polls the connection's I/O; false once it has ended (closed by the upstream, or failed).
    fn alive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(driver) = &mut self.driver {
            self.gate.task.register(cx.waker());
            if Pin::new(driver)
                .poll(&mut Context::from_waker(&self.waker))
                .is_ready()
            {
                // Dropping it fails whatever was still queued on it, with the request handed
                // back if it was never written.
                self.driver = None;
            }
        }
        self.driver.is_some() && !self.sender.is_closed()
    }

    /// Sends `req` and drives the connection until the answer's head is in.
    async fn exchange(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, TrySendError<Request<Body>>> {
        // Polled first thing below, whether the queue woke it or not.
        let (answer, _) = self.gate.quietly(|| self.sender.try_send_request(req));
        let mut answer = std::pin::pin!(answer);
        std::future::poll_fn(|cx| {
            self.alive(cx);
            // Only the connection, polled just above, can settle the answer, and it is looked
            // at after every such poll: it needs no waker of its own. With ours, the
            // connection handing it over would wake this task while it runs, for one more
            // poll of the whole client connection for nothing.
            answer
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()))
        })
        .await
    }
}

/// An upstream's answer body: it drives the connection it arrives on, and hands the
/// connection back to the pool once read to its end.
pub(super) struct PooledBody {
    inner: Incoming,
    conn: Option<Box<Conn>>,
    pool: Arc<Pool>,
    ended: bool,
}

impl PooledBody {
    pub(super) fn new(inner: Incoming, conn: Box<Conn>, pool: Arc<Pool>) -> PooledBody {
        PooledBody {
            inner,
            conn: Some(conn),
            pool,
            ended: false,
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        // As in `exchange`: the body is fed only by the connection this poll drives, and is
        // looked at again after it, so it gets no waker that the connection would wake us
        // with while we run. The connection gets ours, for the upstream's next bytes.
        let quiet = &mut Context::from_waker(Waker::noop());
        let mut polled = match &this.conn {
            Some(conn) => {
                let (polled, woke) = conn
                    .gate
                    .quietly(|| Pin::new(&mut this.inner).poll_frame(quiet));
                if woke && polled.is_ready() {
                    // Taking a piece made room for the next: let the connection go on now,
                    // as the held wake asked. (hyper's server would poll this body again
                    // anyway, but a held wake is always followed by a poll: that keeps the
                    // reasoning here.)
                    if let Some(conn) = &mut this.conn {
                        conn.alive(cx);
                    }
                }
                polled
            }
            None => Pin::new(&mut this.inner).poll_frame(cx),
        };
        if polled.is_pending() {
            // Nothing buffered: read more from the upstream, then look again.
            polled = match &mut this.conn {
                Some(conn) => {
                    conn.alive(cx);
                    Pin::new(&mut this.inner).poll_frame(quiet)
                }
                None => Pin::new(&mut this.inner).poll_frame(cx),
            };
        }
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        // A body left unread (the client went away) leaves the connection mid-answer: it is
        // closed, never reused.
        if !(self.ended || self.inner.is_end_stream()) {
            return;
        }
        // Ready for the next request: usually already so, since the poll that delivered the
        // body's end went on to idle and ask for more. Otherwise one more poll lets the
        // connection see its exchange done (700 instructions, hence only when needed). Nobody
        // waits on it now, hence no waker; whoever takes it next polls it with theirs.
        if conn.sender.is_ready()
            || (conn.alive(&mut Context::from_waker(Waker::noop())) && conn.sender.is_ready())
        {
            self.pool.put(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A pool towards a local upstream that answers `ok` to every request on a connection and
    /// reports when a connection is closed by the gateway.
    async fn pool_and_upstream(
        idle_timeout: Duration,
        max_idle: usize,
    ) -> (Arc<Pool>, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if s.write_all(answer).await.is_err() {
                            break;
                        }
                    }
                    let _ = closed_tx.send(());
                });
            }
        });
        let settings = super::super::ClientSettings {
            connect_timeout: Duration::from_secs(1),
        };
        let connector =
            super::super::build_connector(&crate::tls::UpstreamTls::default(), &settings).unwrap();
        let target: Uri = format!("http://{addr}/").parse().unwrap();
        let mut pool = Pool::new(connector, target, settings.connect_timeout);
        pool.idle_timeout = idle_timeout;
        pool.max_idle = max_idle;
        (Arc::new(pool), closed)
    }

    /// One request through the pool: its answer's body, still holding the connection.
    async fn answer(pool: &Arc<Pool>) -> PooledBody {
        let req = Request::get("/")
            .header("host", "up")
            .body(crate::body::empty())
            .unwrap();
        let Ok((res, conn)) = pool.send(req).await else {
            panic!("no answer");
        };
        PooledBody::new(res.into_body(), conn, pool.clone())
    }

    /// One request through the pool, its answer read to the end.
    async fn get(pool: &Arc<Pool>) {
        let bytes = http_body_util::BodyExt::collect(answer(pool).await)
            .await
            .unwrap();
        assert_eq!(bytes.to_bytes(), "ok");
    }

    fn idle(pool: &Pool) -> usize {
        lock(&pool.idle).len()
    }

    /// Counts the wakes that reach the task.
    struct Counted(std::sync::atomic::AtomicUsize);

    impl std::task::Wake for Counted {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_gate_holds_back_wakes_only_while_held_and_says_so() {
        let task = Arc::new(Counted(std::sync::atomic::AtomicUsize::new(0)));
        let gate = Arc::new(Gate {
            task: futures_util::task::AtomicWaker::new(),
            held: AtomicBool::new(false),
            missed: AtomicBool::new(false),
        });
        let waker = Waker::from(gate.clone());
        let reached = || task.0.load(Ordering::SeqCst);
        gate.task.register(&Waker::from(task.clone()));
        // Held: noted, not passed on.
        let ((), woke) = gate.quietly(|| waker.wake_by_ref());
        assert!(woke);
        assert_eq!(reached(), 0);
        // Nothing came: nothing said.
        let ((), woke) = gate.quietly(|| {});
        assert!(!woke);
        // Not held: passed on to the task.
        waker.wake_by_ref();
        assert_eq!(reached(), 1);
    }

    #[tokio::test]
    async fn a_connection_read_to_the_end_is_reused() {
        let (pool, _closed) = pool_and_upstream(IDLE_TIMEOUT, MAX_IDLE).await;
        get(&pool).await;
        assert_eq!(idle(&pool), 1);
        get(&pool).await;
        assert_eq!(idle(&pool), 1, "a second connection was opened");
    }

    #[tokio::test]
    async fn connections_idle_too_long_are_closed_even_without_traffic() {
        let (pool, mut closed) = pool_and_upstream(Duration::from_millis(200), MAX_IDLE).await;
        get(&pool).await;
        assert_eq!(idle(&pool), 1);
        // No request comes: the reaper alone must close it.
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the idle connection was never closed");
        assert_eq!(idle(&pool), 0);
    }

    #[tokio::test]
    async fn a_connection_given_back_outside_a_runtime_still_gets_a_reaper_later() {
        let (pool, mut closed) = pool_and_upstream(Duration::from_millis(200), MAX_IDLE).await;
        // Read to the end here, dropped (so given back) on a thread with no runtime.
        let mut body = answer(&pool).await;
        while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
            frame.unwrap();
        }
        std::thread::spawn(move || drop(body)).join().unwrap();
        assert_eq!(idle(&pool), 1);
        // The next give-back, in a runtime, starts the reaper, which closes it in time.
        get(&pool).await;
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("no reaper ever started");
    }

    #[tokio::test]
    async fn a_connection_idle_too_long_is_not_taken() {
        let (pool, mut closed) = pool_and_upstream(Duration::from_millis(100), MAX_IDLE).await;
        get(&pool).await;
        // Taken after its timeout but before the reaper's tick: closed, and a new one used.
        std::thread::sleep(Duration::from_millis(120));
        assert!(pool.take().is_none());
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the expired connection was never closed");
    }

    #[tokio::test]
    async fn the_pool_keeps_at_most_max_idle_connections() {
        let (pool, mut closed) = pool_and_upstream(IDLE_TIMEOUT, 3).await;
        // Hold 4 connections at once, then give them all back: the oldest is closed.
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(answer(&pool).await);
        }
        for body in held {
            http_body_util::BodyExt::collect(body).await.unwrap();
        }
        assert_eq!(idle(&pool), 3);
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the connection over the bound was never closed");
    }
}
