//! The listeners: the traffic listener (HTTP/1.1 and HTTP/2, cleartext or TLS), the admin
//! listener, connection limits and timeouts, config reloads, and graceful shutdown with a
//! bounded drain.
//!
//! The plan is held in an [`ArcSwap`]: each request loads the plan serving at its start and
//! keeps it to its end, so a reload swaps the whole plan in one step and in-flight requests
//! finish on the one they started with.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use crate::auth::Refreshers;
use crate::body::Holding;
use crate::config::{self, Carry, ConfigErrors, Plan};
use crate::metrics::{InFlight, Metrics};
use crate::pipeline::{self, ConnInfo};

/// A bound, not yet serving, gateway.
pub struct Server {
    listener: TcpListener,
    admin: Option<TcpListener>,
    shared: Arc<Shared>,
    reload: Option<crate::reload::Triggers>,
}

/// What every connection, the admin listener and the reloader share.
pub struct Shared {
    plan: Arc<ArcSwap<Plan>>,
    pub metrics: Metrics,
    /// The file a reload reads (`None`: the plan came from elsewhere and cannot be reloaded).
    config_path: Option<PathBuf>,
    /// The key refreshers of the serving plan; one reload at a time.
    reload: tokio::sync::Mutex<Option<Refreshers>>,
    /// Set when shutdown begins: readiness turns 503 so load balancers stop sending.
    draining: std::sync::atomic::AtomicBool,
    /// When the last "connection limit reached" warning was logged (Unix seconds).
    limit_warned: AtomicU64,
    refused_since_warning: AtomicU64,
}

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

impl Server {
    /// Binds `plan.listen` and `plan.admin` (port 0 picks a free port; see
    /// [`Server::local_addr`] and [`Server::admin_addr`]).
    pub async fn bind(plan: Plan) -> Result<Server, BindError> {
        Server::bind_with_config(plan, None).await
    }

    /// [`Server::bind`] for a plan read from `path`: SIGHUP, a change of the file, or
    /// [`Shared::reload`] read it again.
    pub async fn bind_with_config(
        plan: Plan,
        config_path: Option<PathBuf>,
    ) -> Result<Server, BindError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| BindError { addr, source })
        };
        let listener = bind(plan.listen).await?;
        let admin = match plan.admin {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        // Before anyone can know the server is up: a SIGHUP from then on reloads, never kills.
        let reload = config_path
            .clone()
            .map(|path| crate::reload::Triggers::new(path, plan.tls.as_ref()));
        let plan = Arc::new(ArcSwap::from_pointee(plan));
        let shared = Arc::new(Shared {
            metrics: Metrics::new(plan.clone()),
            plan,
            config_path,
            reload: tokio::sync::Mutex::new(None),
            draining: std::sync::atomic::AtomicBool::new(false),
            limit_warned: AtomicU64::new(0),
            refused_since_warning: AtomicU64::new(0),
        });
        Ok(Server {
            listener,
            admin,
            shared,
            reload,
        })
    }

    /// The plan serving now (shared, read-only).
    pub fn plan(&self) -> Arc<Plan> {
        self.shared.plan()
    }

    /// What the listeners share: the plan, the metrics, reloads.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, unless `admin: { enabled: false }`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting and gives in-flight requests
    /// up to the drain timeout to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server {
            listener,
            admin,
            shared,
            reload,
        } = self;
        let plan = shared.plan();
        start_dev_issuer(&plan, None);
        // Issuers' keys are fetched (and kept fresh) from the start, not on the first request.
        *shared.reload.lock().await = Some(plan.auth.start_refreshers());
        let (stop_tx, stop_rx) = watch::channel(false);
        let tracker = TaskTracker::new();
        // The admin listener outlives the drain: probes and scrapes see it through.
        let (admin_stop, admin_stopped) = watch::channel(false);
        let admin_task = admin
            .map(|admin| tokio::spawn(crate::admin::serve(admin, shared.clone(), admin_stopped)));
        let _reloader = reload.map(|r| r.spawn(shared.clone(), stop_rx.clone()));
        let _tick = timer_tick();
        let builder = connection_builder();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, most likely: back off instead of
                            // spinning, and keep serving the connections we have.
                            tracing::error!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let plan = shared.plan();
                    if shared.metrics.open_connections() >= i64::try_from(plan.limits.max_connections).unwrap_or(i64::MAX) {
                        shared.refuse_connection(plan.limits.max_connections);
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let conn = Conn {
                        shared: shared.clone(),
                        builder: builder.clone(),
                        stop: stop_rx.clone(),
                        counted: shared.metrics.connection(),
                    };
                    tracker.spawn(conn.run(stream, peer, plan));
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        shared.draining.store(true, Ordering::Relaxed);
        let drain = shared.plan().limits.drain_timeout;
        tracing::info!(
            ?drain,
            "shutting down: no new connections, draining in-flight requests"
        );
        let _ = stop_tx.send(true);
        tracker.close();
        tokio::select! {
            () = tracker.wait() => tracing::info!("drained: all connections closed"),
            () = tokio::time::sleep(drain) => tracing::warn!(?drain, "drain timeout reached: closing the remaining connections"),
        }
        let _ = admin_stop.send(true);
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        shared.reload.lock().await.take();
    }
}

impl Shared {
    /// The plan serving now.
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.load_full()
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// The plan's holder, for what reads it at its own pace (the metrics collector).
    pub fn plan_handle(&self) -> Arc<ArcSwap<Plan>> {
        self.plan.clone()
    }

    /// Reads the config file again: a plan that compiles replaces the serving one in one
    /// step (issuers whose keys are fetched the same way keep them); one that does not
    /// leaves the serving plan alone, and every problem is logged.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let Some(path) = self.config_path.clone() else {
            return Err(ReloadError::NoFile);
        };
        let mut refreshers = self.reload.lock().await;
        let old = self.plan();
        let carry = Carry::from_plan(&old);
        // Compiling reads files and may take a moment: off the async threads.
        let compiled =
            tokio::task::spawn_blocking(move || config::load_file_with(&path, Some(&carry)))
                .await
                .map_err(|e| ReloadError::Internal(e.to_string()))?;
        let plan = match compiled {
            Ok(plan) => plan,
            Err(errors) => {
                self.metrics.reload(false);
                for e in &errors.0 {
                    tracing::error!(problem = %e, "config reload refused: the running config keeps serving");
                }
                return Err(ReloadError::Invalid(errors));
            }
        };
        if plan.listen != old.listen {
            tracing::warn!(old = %old.listen, new = %plan.listen, "`listen` changed: the listener keeps its address until a restart");
        }
        if plan.admin != old.admin {
            tracing::warn!("`admin` changed: the admin listener keeps its address until a restart");
        }
        start_dev_issuer(&plan, old.dev_issuer.as_ref());
        let new_refreshers = plan.auth.start_refreshers();
        let routes = plan.routes.len();
        self.plan.store(Arc::new(plan));
        // The old refreshers stop only now: an issuer kept across the reload is never without one.
        *refreshers = Some(new_refreshers);
        self.metrics.reload(true);
        tracing::info!(routes, "config reloaded");
        Ok(())
    }

    fn refuse_connection(&self, limit: usize) {
        self.metrics.connection_refused();
        let refused = self.refused_since_warning.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.limit_warned.load(Ordering::Relaxed);
        // One line per 10 seconds at most: a flood must not become a flood of logs.
        if now >= last + 10
            && self
                .limit_warned
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.refused_since_warning.store(0, Ordering::Relaxed);
            tracing::warn!(
                limit,
                refused,
                "connection limit reached (limits.max_connections): new connections are closed at once"
            );
        }
    }
}

/// Why a reload did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the plan was not read from a file")]
    NoFile,
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("reload failed: {0}")]
    Internal(String),
}

fn start_dev_issuer(plan: &Plan, running: Option<&Arc<crate::demo::DevIssuer>>) {
    let Some(dev) = &plan.dev_issuer else {
        return;
    };
    if running.is_some_and(|r| Arc::ptr_eq(r, dev)) {
        return;
    }
    match dev.serve() {
        Ok(()) => tracing::warn!(
            issuer = %dev.iss(),
            token = %format!("curl -X POST {}/token", dev.base_url()),
            "dev_issuer: true: the embedded dev issuer is active (loopback only); never use it in production"
        ),
        Err(e) => tracing::error!(error = %e, "the dev issuer could not start"),
    }
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

/// How many header lines hyper itself lets through, for the gateway's `max_headers`.
///
/// hyper parses a request head into two arrays of header slots (32 bytes a slot). Up to 100
/// slots, its default, they sit on the stack; past 100 they are two heap arrays allocated and
/// freed for every request, large enough to take malloc's slow path: with 200 slots, 1,240
/// more instructions a request under callgrind. So for a `max_headers` up to 100 hyper's
/// bound is twice ours but at most 100: a request between the two gets the gateway's JSON
/// 431, and one past 100 lines hyper's own 431, which has no body. Only a `max_headers` over
/// 100 pays for heap arrays (twice it, as room for the JSON answer).
fn hyper_max_headers(ours: usize) -> usize {
    const HYPER_ON_STACK: usize = 100;
    if ours <= HYPER_ON_STACK {
        (ours * 2).min(HYPER_ON_STACK)
    } else {
        // At most 2,000: the config allows no more than 1,000.
        ours.saturating_mul(2)
    }
}

/// One client connection, from accept to close.
struct Conn {
    shared: Arc<Shared>,
    builder: auto::Builder<TokioExecutor>,
    stop: watch::Receiver<bool>,
    /// Counted in `connections_open` while it lives.
    counted: InFlight,
}

/// How a connection ends early.
enum Verdict {
    /// The request head did not arrive in time: closed at once.
    HeadTimeout,
    /// No request for `idle_timeout`: closed gracefully.
    Idle,
}

impl Conn {
    async fn run(self, stream: TcpStream, peer: SocketAddr, plan: Arc<Plan>) {
        let limits = plan.limits.clone();
        let watch = Arc::new(Activity::new());
        match &plan.tls {
            None => {
                let io = Watched::new(stream, watch.clone());
                self.serve(io, peer, "http", limits, watch).await;
            }
            Some(tls) => {
                // The handshake is part of the request head's time budget.
                let handshake = tls.acceptor.accept(stream);
                let stream = match tokio::time::timeout(limits.header_read_timeout, handshake).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "TLS handshake timed out");
                        return;
                    }
                };
                let io = Watched::new(stream, watch.clone());
                self.serve(io, peer, "https", limits, watch).await;
            }
        }
    }

    async fn serve<I>(
        self,
        io: I,
        peer: SocketAddr,
        proto: &'static str,
        limits: config::Limits,
        activity: Arc<Activity>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            shared,
            mut builder,
            mut stop,
            counted: _counted,
        } = self;
        let info = ConnInfo::new(peer, proto);
        // hyper's HTTP/1 header timer is off: the watchdog below bounds both a head (from its
        // first byte) and an idle keep-alive, and hyper's would re-arm a timer for every
        // request head (a `now()` and a timer-wheel update each).
        builder
            .http1()
            .header_read_timeout(None)
            .max_buf_size(limits.max_header_size.saturating_mul(2).max(16 * 1024))
            .max_headers(hyper_max_headers(limits.max_headers));
        // hyper's own bounds sit above ours (pipeline::check_header_limits) so that requests
        // between the two get the gateway's JSON 431; only grossly oversized ones get hyper's
        // bare answer. (For the count of header lines, "above" stops at 100: see
        // `hyper_max_headers`.)
        builder.http2().max_header_list_size(
            u32::try_from(limits.max_header_size.saturating_mul(2)).unwrap_or(u32::MAX),
        );
        let service = {
            let activity = activity.clone();
            let shared = shared.clone();
            service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                let guard = activity.request_started(req.version() == http::Version::HTTP_2);
                if let Some(why) = activity.violation.get() {
                    // The pipeline refuses it before anything is forwarded.
                    req.extensions_mut().insert(pipeline::FramingViolation(why));
                }
                let shared = shared.clone();
                let info = info.clone();
                async move {
                    let in_flight = shared.metrics.in_flight();
                    let plan = shared.plan();
                    let res = pipeline::handle(&plan, Some(&shared.metrics), &info, req).await;
                    // The request stays counted (on the connection and in the in-flight
                    // gauge) until its response body is done.
                    Ok::<_, Infallible>(res.map(|body| Holding::new(body, (guard, in_flight))))
                }
            })
        };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                // In this order: the watchdog then judges what the connection just read.
                biased;
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.changed(), if !closing => {
                    connection.as_mut().graceful_shutdown();
                    closing = true;
                }
                verdict = activity.watchdog(limits.header_read_timeout, limits.idle_timeout), if !closing => {
                    match verdict {
                        Verdict::HeadTimeout => {
                            tracing::info!(%peer, timeout = ?limits.header_read_timeout, "request head not received in time (limits.header_read_timeout): connection closed");
                            return;
                        }
                        Verdict::Idle => {
                            tracing::debug!(%peer, "idle keep-alive connection closed");
                            connection.as_mut().graceful_shutdown();
                            closing = true;
                        }
                    }
                }
            }
        }
    }
}

/// A connection's activity, as its IO and its requests report it: what the watchdog judges.
/// Hand-written because hyper has one HTTP/1 timer for "waiting for a head", idle time
/// included, and none for HTTP/2: a slow head and an idle keep-alive need different bounds.
struct Activity {
    start: tokio::time::Instant,
    /// When the last request ended (milliseconds since `start`; 0 before the first). Idleness
    /// is counted from here, not from the last byte: HTTP/2 pings (ours every 30 s) and their
    /// answers are not use.
    last_done: AtomicU64,
    /// When the head now arriving began (or, for the first, when the connection did);
    /// `u64::MAX`: none is.
    head_started: AtomicU64,
    /// The framing guard follows the client's bytes, so it says where heads begin and end;
    /// false once it stops (HTTP/2, a fault), and the first byte after a request then counts.
    followed: std::sync::atomic::AtomicBool,
    /// Requests open (from head to the end of the response body).
    open: std::sync::atomic::AtomicUsize,
    /// HTTP/2: frames (pings, window updates) arrive between requests; only idleness counts.
    h2: std::sync::atomic::AtomicBool,
    /// What the framing guard found wrong in the client's bytes, if anything.
    violation: std::sync::OnceLock<crate::framing::Violation>,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Activity {
        Activity {
            start: tokio::time::Instant::now(),
            last_done: AtomicU64::new(0),
            // A connection that says nothing is a head that does not arrive.
            head_started: AtomicU64::new(0),
            followed: std::sync::atomic::AtomicBool::new(true),
            open: std::sync::atomic::AtomicUsize::new(0),
            h2: std::sync::atomic::AtomicBool::new(false),
            violation: std::sync::OnceLock::new(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    /// Bytes arrived; `head_pending` is the framing guard's word on whether they end inside
    /// a head. It sees a head that begins while a request is still open too (pipelined, or
    /// sent before the previous answer's end was noticed here), whose clock then starts no
    /// earlier than that request's end (`head_due`).
    fn read(&self, head_pending: Option<bool>) {
        let begun = match head_pending {
            Some(true) => true,
            Some(false) => {
                if self.head_started.load(Ordering::Relaxed) != NONE {
                    self.head_started.store(NONE, Ordering::Relaxed);
                }
                false
            }
            None => {
                self.followed.store(false, Ordering::Relaxed);
                self.open.load(Ordering::Relaxed) == 0
            }
        };
        // One load on most reads: only the first byte of a head is timed.
        if begun && self.head_started.load(Ordering::Relaxed) == NONE {
            let _ = self.head_started.compare_exchange(
                NONE,
                self.now(),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn request_started(self: &Arc<Self>, h2: bool) -> RequestGuard {
        if h2 {
            self.h2.store(true, Ordering::Relaxed);
        }
        self.open.fetch_add(1, Ordering::Relaxed);
        // Followed, the guard has already said where this head ended and whether another
        // began behind it.
        if !self.followed.load(Ordering::Relaxed) {
            self.head_started.store(NONE, Ordering::Relaxed);
        }
        RequestGuard(self.clone())
    }

    /// Completes when the connection must end: its head is late, or it has been idle too long.
    ///
    /// Polled whenever the connection's task is (after the connection itself): a head that
    /// began since the timer was set may be due sooner than it, and the timer is then moved.
    /// That look is a few loads; the clock is read only when the timer fires.
    async fn watchdog(&self, head: Duration, idle: Duration) -> Verdict {
        let head_ms = u64::try_from(head.as_millis()).unwrap_or(NONE / 2);
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(NONE / 2);
        // Due at once: the first poll judges the connection as it starts.
        let timer = tokio::time::sleep_until(self.start);
        tokio::pin!(timer);
        let mut armed = 0;
        std::future::poll_fn(|cx| loop {
            if let Some(due) = self.head_due(head_ms) {
                if due < armed {
                    armed = due;
                    timer
                        .as_mut()
                        .reset(self.start + Duration::from_millis(due));
                }
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            match self.judge(self.now(), head_ms, idle_ms) {
                Ok(verdict) => return Poll::Ready(verdict),
                Err(wake_at) => {
                    armed = wake_at;
                    timer
                        .as_mut()
                        .reset(self.start + Duration::from_millis(wake_at));
                }
            }
        })
        .await
    }

    /// When the head being read is due, if one is and no request is open. A head that began
    /// while a request was open is timed from that request's end.
    fn head_due(&self, head_ms: u64) -> Option<u64> {
        if self.open.load(Ordering::Relaxed) > 0 || self.h2.load(Ordering::Relaxed) {
            return None;
        }
        let started = self.head_started.load(Ordering::Relaxed);
        (started != NONE).then(|| started.max(self.last_done.load(Ordering::Relaxed)) + head_ms)
    }

    /// The verdict at `now`, or when to look again.
    fn judge(&self, now: u64, head_ms: u64, idle_ms: u64) -> Result<Verdict, u64> {
        if self.open.load(Ordering::Relaxed) > 0 {
            // A request runs: its own timeouts bound it; look again later.
            return Err(now + idle_ms);
        }
        if let Some(due) = self.head_due(head_ms) {
            return if now >= due {
                Ok(Verdict::HeadTimeout)
            } else {
                Err(due)
            };
        }
        let due = self.last_done.load(Ordering::Relaxed) + idle_ms;
        if now >= due {
            Ok(Verdict::Idle)
        } else {
            Err(due)
        }
    }
}

/// Marks a request open until its response body is done (or dropped).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.last_done.store(self.0.now(), Ordering::Relaxed);
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The client's IO, reporting the first byte of each request head, and watched by the
/// framing guard.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
    framing: crate::framing::FramingGuard,
}

impl<T> Watched<T> {
    fn new(inner: T, activity: Arc<Activity>) -> Watched<T> {
        Watched {
            inner,
            activity,
            framing: crate::framing::FramingGuard::new(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let res = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            // Seen before hyper parses them: a fault is known when its request is served.
            this.framing.feed(&buf.filled()[before..]);
            this.activity.read(this.framing.head_pending());
            if let Some(why) = this.framing.violation() {
                let _ = this.activity.violation.set(why);
            }
        }
        res
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
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

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}

/// Keeps a timer due within half a second at all times, for the whole serve loop; stops
/// when the returned handle is dropped.
///
/// Each proxied request arms a timer (its upstream timeout, 30 s by default). When that timer
/// is due sooner than every other one, tokio's time driver wakes the I/O driver to re-arm,
/// even when a worker is busy: an eventfd write and one more `epoll_wait` for every request
/// (seen with `strace` at one connection: 8 syscalls a proxied request instead of 6). With a
/// timer always due within half a second, a request's timer is never the soonest, and the
/// cost is two wake-ups a second. tokio has no setting for this, hence by hand.
fn timer_tick() -> AbortOnDropHandle<()> {
    AbortOnDropHandle::new(tokio::spawn(async {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::hyper_max_headers;

    #[test]
    fn hyper_counts_header_lines_on_the_stack_unless_the_config_asks_for_more_than_100() {
        // Room above ours for the JSON 431, within hyper's 100 stack slots.
        assert_eq!(hyper_max_headers(10), 20);
        assert_eq!(hyper_max_headers(50), 100);
        assert_eq!(hyper_max_headers(80), 100);
        // The default: hyper's own bound is ours.
        assert_eq!(hyper_max_headers(100), 100);
        // Never below ours: a configured 150 lets 150 lines through.
        assert_eq!(hyper_max_headers(101), 202);
        assert_eq!(hyper_max_headers(150), 300);
    }
}
