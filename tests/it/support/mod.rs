//! The harness: a real gateway on port 0, real upstreams that record what they receive, and a
//! raw-socket client for requests an ordinary client would tidy up before sending.

#![allow(dead_code)]

pub mod issuer;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cryptr_gateway::body::{self, Body};
use cryptr_gateway::config::{self, ConfigErrors, Plan};
use cryptr_gateway::server::{Server, Shared};
use http::{HeaderMap, Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Compiles a test config; `${VAR}` is looked up in `env` pairs only.
pub fn plan_with_env(yaml: &str, env: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    plan_in(Path::new("."), yaml, env)
}

/// Compiles a test config whose relative file names are read under `dir`.
pub fn plan_in(dir: &Path, yaml: &str, env: &[(&str, &str)]) -> Result<Plan, ConfigErrors> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    config::load_str(yaml, "test.yaml", dir, &move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

pub fn plan(yaml: &str) -> Plan {
    match plan_with_env(yaml, &[]) {
        Ok(p) => p,
        Err(e) => panic!("test config does not compile:\n{e}\n---\n{yaml}"),
    }
}

/// The repository's gateway.yaml, its Cryptr issuer pointed at a local JWKS server (tenant
/// `acme`, so the tests never reach a public host), listening on port 0.
pub async fn tutorial_gateway() -> (issuer::TestIssuer, Gateway) {
    let issuer = issuer::TestIssuer::start().await;
    let base = issuer.base_url();
    let plan = plan_with_env(
        include_str!("../../../gateway.yaml"),
        &[
            ("GATEWAY_LISTEN", "127.0.0.1:0"),
            ("CRYPTR_BASE_URL", &base),
            ("CRYPTR_TENANT_DOMAIN", "acme"),
        ],
    )
    .unwrap();
    (issuer, Gateway::start_plan(plan).await)
}

const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// A gateway serving `yaml` (which should say `listen: 127.0.0.1:0`).
pub struct Gateway {
    pub addr: SocketAddr,
    /// The admin listener (on a free port unless the config names one).
    pub admin: Option<SocketAddr>,
    /// The plan it served at start, to read its counters (`shared.plan()` after a reload).
    pub plan: Arc<Plan>,
    /// Plan holder, metrics and reloads.
    pub shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Gateway {
    pub async fn start(yaml: &str) -> Gateway {
        Gateway::start_plan(plan(yaml)).await
    }

    pub async fn start_plan(plan: Plan) -> Gateway {
        Gateway::start_with(plan, None).await
    }

    /// A gateway serving the config file at `path`, which it reloads on change.
    pub async fn start_file(path: &Path) -> Gateway {
        let plan = match config::load_file(path) {
            Ok(p) => p,
            Err(e) => panic!("test config does not compile:\n{e}"),
        };
        Gateway::start_with(plan, Some(path.to_path_buf())).await
    }

    async fn start_with(mut plan: Plan, file: Option<std::path::PathBuf>) -> Gateway {
        // Tests run side by side: the default admin port would be taken by the first.
        if plan.admin == Some(DEFAULT_ADMIN.parse().unwrap()) {
            plan.admin = Some("127.0.0.1:0".parse().unwrap());
        }
        let server = Server::bind_with_config(plan, file)
            .await
            .expect("bind the gateway");
        let addr = server.local_addr().expect("local addr");
        let admin = server.admin_addr();
        let plan = server.plan();
        let shared = server.shared();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = rx.await;
        }));
        Gateway {
            addr,
            admin,
            plan,
            shared,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("the admin listener is on"),
            path
        )
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// Sends the shutdown signal and returns the serving task, which ends once drained.
    pub fn begin_shutdown(&mut self) -> JoinHandle<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.task.take().expect("shut down twice")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The standard test config: `listen` on port 0 and the given `routes:` block.
pub fn config(routes: &str) -> String {
    format!("listen: 127.0.0.1:0\nroutes:\n{routes}")
}

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target, exactly as sent on the wire (path and query).
    pub target: String,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP upstream on port 0; `Upstream::recording()` keeps every request it receives.
pub struct Upstream {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers 200 `ok` (with `x-upstream: yes`) and records each request with its body.
    pub async fn recording() -> Upstream {
        Upstream::recording_with(|_| {
            let mut res = Response::new(body::full("ok"));
            res.headers_mut()
                .insert("x-upstream", http::HeaderValue::from_static("yes"));
            res
        })
        .await
    }

    /// Records each request, then answers with `answer(&recorded)`.
    pub async fn recording_with(
        answer: impl Fn(&Recorded) -> Response<Body> + Send + Sync + 'static,
    ) -> Upstream {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let answer = Arc::new(answer);
        let mut up = Upstream::serve(move |req: Request<Incoming>| {
            let log = log.clone();
            let answer = answer.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let recorded = Recorded {
                    method: parts.method.to_string(),
                    target: parts
                        .uri
                        .path_and_query()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default(),
                    version: parts.version,
                    headers: parts.headers,
                    body,
                };
                let res = answer(&recorded);
                log.lock().unwrap().push(recorded);
                res
            }
        })
        .await;
        up.requests = requests;
        up
    }

    /// Serves each request with `handler` (HTTP/1.1 and h2c).
    pub async fn serve<F, Fut>(handler: F) -> Upstream
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Body>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler = Arc::new(handler);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let handler = handler.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let handler = handler.clone();
                        async move { Ok::<_, Infallible>(handler(req).await) }
                    });
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    // Room for all the header lines a gateway allows and adds to them (hyper's
                    // default is 100).
                    builder.http1().max_headers(400);
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Upstream {
            addr,
            requests: Arc::new(Mutex::new(Vec::new())),
            connections,
            task,
        }
    }

    /// A TCP upstream that runs `script` on every connection: for answers no HTTP server
    /// would give (garbage, early close, reset).
    pub async fn raw<F, Fut>(script: F) -> Upstream
    where
        F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let script = Arc::new(script);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted = connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(script(stream));
            }
        });
        Upstream {
            addr,
            requests: Arc::new(Mutex::new(Vec::new())),
            connections,
            task,
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    pub fn last(&self) -> Recorded {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("the upstream received no request")
    }
}

/// An address on which nothing listens (bound, then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

pub fn client() -> reqwest::Client {
    // reqwest's rustls has no built-in crypto provider in this build: use the gateway's.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET /api` with `Host`, `Connection: close` and `extra` more header lines: `extra + 2` in all.
pub fn request_with_header_lines(extra: usize) -> String {
    let lines: String = (0..extra).map(|i| format!("X-H{i}: v\r\n")).collect();
    format!("GET /api HTTP/1.1\r\nHost: t\r\n{lines}Connection: close\r\n\r\n")
}

/// Sends `request` as raw bytes and reads the whole answer (the request should close the
/// connection). Bounded: gives up after 10 seconds.
pub async fn raw_request(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    assert!(
        read.is_ok(),
        "the gateway did not close the connection in time"
    );
    String::from_utf8_lossy(&out).into_owned()
}

/// `GET target` sent exactly as written (no client-side normalisation), on its own connection.
pub async fn raw_get(addr: SocketAddr, target: &str) -> String {
    raw_request(
        addr,
        format!("GET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
}

/// The status code of a raw HTTP/1.1 answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"))
}

/// The JSON body of a raw HTTP/1.1 answer with a `Content-Length`.
pub fn raw_json(answer: &str) -> serde_json::Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {answer:?}"))
}

/// Polls `check` every 10 ms until it is true; panics after `limit`.
pub async fn poll_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + limit;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A child process that is killed if the test ends (or panics) before it exits.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl KillOnDrop {
    /// Sends it signal `name` (`-TERM`, `-HUP`) with `kill`, as an operator would.
    pub fn signal(&self, name: &str) {
        signal(&self.0.id().to_string(), name);
    }
}

/// Sends process `pid` signal `name` (`-TERM`, `-HUP`) with `kill`.
pub fn signal(pid: &str, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([name, pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {name} {pid}");
}

/// The value of the sample `name{labels}` in Prometheus text, where `labels` is the exact
/// label text (`route="r",status="200"`), or `None` when absent; `labels` empty for none.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let wanted = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        (key == wanted).then(|| value.parse().ok()).flatten()
    })
}

/// The repository's root (the crate's manifest folder).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A file's text; panics naming the file.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What an upstream made of one request body: dropped (by the handler's end, or by the
/// connection going away mid-way), it records whether the body came whole, and its size.
pub struct BodyReport {
    pub ended: Arc<Mutex<Vec<(bool, usize)>>>,
    /// Bytes received so far, for a test waiting on progress.
    pub seen: Arc<std::sync::atomic::AtomicUsize>,
    pub complete: bool,
    pub bytes: usize,
}

impl BodyReport {
    pub fn new(
        ended: Arc<Mutex<Vec<(bool, usize)>>>,
        seen: Arc<std::sync::atomic::AtomicUsize>,
    ) -> BodyReport {
        BodyReport {
            ended,
            seen,
            complete: false,
            bytes: 0,
        }
    }

    /// An upstream answer that reads the request body, keeping count in the report (and in
    /// `seen` as it goes); `cut` when the body broke off, its length when it was whole. The
    /// report is dropped with the request, whatever ends it: its drop is the news.
    pub async fn read(mut self, req: Request<Incoming>) -> Response<Body> {
        let mut body = req.into_body();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return Response::new(body::full("cut"));
            };
            self.bytes += frame.data_ref().map_or(0, Bytes::len);
            self.seen
                .store(self.bytes, std::sync::atomic::Ordering::SeqCst);
        }
        self.complete = true;
        Response::new(body::full(self.bytes.to_string()))
    }
}

impl Drop for BodyReport {
    fn drop(&mut self) {
        self.ended.lock().unwrap().push((self.complete, self.bytes));
    }
}

/// An upstream answer: reads the whole request body and answers with its length in bytes,
/// or `error: ...` when the body broke off.
pub async fn count_body(req: Request<Incoming>) -> Response<Body> {
    let mut body = req.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => total += f.data_ref().map_or(0, Bytes::len),
            Err(e) => return Response::new(body::full(format!("error: {e}"))),
        }
    }
    Response::new(body::full(total.to_string()))
}

/// Asserts that an answer began with `first` and was then cut (its upstream stalled past
/// the route's timeout), within 10 s.
pub async fn assert_cut_after(mut res: reqwest::Response, first: &str) {
    assert_eq!(res.status(), 200);
    assert_eq!(res.chunk().await.unwrap().unwrap(), first);
    let rest = tokio::time::timeout(Duration::from_secs(10), res.chunk()).await;
    assert!(
        matches!(rest, Ok(Err(_))),
        "a stalled body was not cut: {rest:?}"
    );
}

/// A folder of its own under the system temp dir (named by `tag`, the process and a counter,
/// so never shared by two tests), removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cryptr-gateway-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.0.join(name), contents).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
