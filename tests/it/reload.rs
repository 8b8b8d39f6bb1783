//! Config reloads over real sockets: a file that changes (renamed over, rewritten in place, or
//! swapped the Kubernetes way) and SIGHUP to the binary. A valid file replaces the plan without
//! dropping a request, a broken one leaves the old plan serving, in-flight requests finish on
//! the plan they started with, and an issuer whose keys are fetched the same way keeps them.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cryptr_gateway::body;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::support::issuer::{edit, TestIssuer, AUDIENCE};
use crate::support::{self, metric, Gateway, KillOnDrop, Upstream};

/// How long a reload may take to show: the watcher's 250 ms debounce, a compile, and a slow
/// machine running the other tests.
const RELOAD_LIMIT: Duration = Duration::from_secs(15);

const RELOADS: &str = "cryptr_gateway_config_reloads_total";

/// A fresh folder under the system's temporary one, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("cgw-reload-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `gateway.yaml` in the folder and returns its path.
    fn config(&self, text: &str) -> PathBuf {
        let path = self.join("gateway.yaml");
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Saves `text` the way editors do: a new file next to `path`, renamed over it.
fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_file_name(".gateway.yaml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Rewrites `path` in place (same inode: truncated, then written).
fn save_in_place(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
    file.sync_all().unwrap();
}

/// A config with its own admin port (port 0: tests run side by side) and these routes.
fn file_config(routes: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nroutes:\n{}",
        routes.concat()
    )
}

/// An open route: `prefix` to `upstream`.
fn route(name: &str, prefix: &str, upstream: &str) -> String {
    format!("  - name: {name}\n    match: {{ prefix: {prefix} }}\n    upstream: {upstream}\n    auth: none\n")
}

/// The reload counter for `result` (`success`, `failure`) at the admin `metrics_url`; 0
/// before the first reload.
async fn reload_count(metrics_url: &str, result: &str) -> f64 {
    let text = support::client()
        .get(metrics_url)
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics body");
    metric(&text, RELOADS, &format!("result=\"{result}\"")).unwrap_or(0.0)
}

async fn reloads(gw: &Gateway, result: &str) -> f64 {
    reload_count(&gw.admin_url("/metrics"), result).await
}

async fn status(url: &str, token: Option<&str>) -> u16 {
    let mut req = support::client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let _ = res.bytes().await;
    status
}

/// Polls `GET url` every 20 ms until it answers `want`; panics after [`RELOAD_LIMIT`].
async fn wait_for_status(url: &str, token: Option<&str>, want: u16, what: &str) {
    let deadline = Instant::now() + RELOAD_LIMIT;
    while status(url, token).await != want {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the metrics every 20 ms until the reload counter for `result` reaches `at_least`.
async fn wait_for_reloads(metrics_url: &str, result: &str, at_least: f64) {
    let deadline = Instant::now() + RELOAD_LIMIT;
    while reload_count(metrics_url, result).await < at_least {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {at_least} reload(s) with result {result}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a stream of requests met.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    /// Answers other than 200, and transport errors, as text.
    failures: Mutex<Vec<String>>,
    /// Connections opened after the first one of each loop (a dropped keep-alive).
    reconnects: AtomicUsize,
}

impl Tally {
    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    fn failures(&self) -> Vec<String> {
        self.failures.lock().unwrap().clone()
    }
}

/// `loops` tasks, each sending `GET path` (with `token` as a bearer, if any) one after the
/// other over its own keep-alive connection until `stop`, counting into `tally`.
struct Stream {
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Stream {
    fn start(gw: &Gateway, loops: usize, path: &str, token: Option<String>) -> Stream {
        let tally = Arc::new(Tally::default());
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..loops)
            .map(|_| {
                let (tally, stop) = (tally.clone(), stop.clone());
                let (addr, path, token) = (gw.addr, path.to_string(), token.clone());
                tokio::spawn(async move {
                    let mut first = true;
                    'connections: while !stop.load(Ordering::SeqCst) {
                        if !first {
                            tally.reconnects.fetch_add(1, Ordering::SeqCst);
                        }
                        first = false;
                        let stream = match TcpStream::connect(addr).await {
                            Ok(s) => s,
                            Err(e) => {
                                tally.failures.lock().unwrap().push(format!("connect: {e}"));
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        };
                        let (mut sender, conn) =
                            match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
                            {
                                Ok(h) => h,
                                Err(e) => {
                                    tally
                                        .failures
                                        .lock()
                                        .unwrap()
                                        .push(format!("handshake: {e}"));
                                    continue;
                                }
                            };
                        tokio::spawn(conn);
                        while !stop.load(Ordering::SeqCst) {
                            let mut req = Request::get(path.as_str()).header("host", "t");
                            if let Some(t) = &token {
                                req = req.header("authorization", format!("Bearer {t}"));
                            }
                            let req = req.body(body::empty()).unwrap();
                            let res = match sender.send_request(req).await {
                                Ok(r) => r,
                                Err(e) => {
                                    tally.failures.lock().unwrap().push(format!("send: {e}"));
                                    continue 'connections;
                                }
                            };
                            let status = res.status();
                            match res.into_body().collect().await {
                                Ok(_) if status == 200 => {
                                    tally.ok.fetch_add(1, Ordering::SeqCst);
                                }
                                Ok(b) => tally.failures.lock().unwrap().push(format!(
                                    "{status}: {}",
                                    String::from_utf8_lossy(&b.to_bytes())
                                )),
                                Err(e) => {
                                    tally.failures.lock().unwrap().push(format!("body: {e}"));
                                    continue 'connections;
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Stream { tally, stop, tasks }
    }

    /// Waits until `more` further requests succeeded (or failures show up).
    async fn run_for(&self, more: usize, what: &str) {
        let target = self.tally.ok() + more;
        let tally = self.tally.clone();
        support::poll_until(Duration::from_secs(30), what, || {
            tally.ok() >= target || !tally.failures().is_empty()
        })
        .await;
    }

    async fn stop(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("a request loop did not stop")
                .unwrap();
        }
        self.tally
    }
}

fn assert_clean(tally: &Tally) {
    assert_eq!(tally.failures(), Vec::<String>::new(), "failed requests");
    assert_eq!(
        tally.reconnects.load(Ordering::SeqCst),
        0,
        "keep-alive connections were dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_change_takes_effect_without_dropping_a_concurrent_stream_of_requests() {
    let up = Upstream::recording().await;
    let dir = TempDir::new("stream");
    let a = route("a", "/a", &up.url());
    let path = dir.config(&file_config(std::slice::from_ref(&a)));
    let gw = Gateway::start_file(&path).await;
    assert_eq!(status(&gw.url("/a"), None).await, 200);
    assert_eq!(status(&gw.url("/b"), None).await, 404);

    let stream = Stream::start(&gw, 4, "/a/items", None);
    stream.run_for(50, "the stream to get going").await;

    save_by_rename(&path, &file_config(&[a, route("b", "/b", &up.url())]));
    wait_for_status(&gw.url("/b/items"), None, 200, "/b to answer 200").await;
    stream
        .run_for(200, "200 more requests after the change")
        .await;
    let tally = stream.stop().await;

    assert_clean(&tally);
    assert!(tally.ok() >= 250, "{} requests", tally.ok());
    assert_eq!(reloads(&gw, "success").await, 1.0);
    assert_eq!(reloads(&gw, "failure").await, 0.0);
    assert_eq!(gw.shared.plan().routes.len(), 2);
}

#[tokio::test]
async fn a_broken_file_keeps_the_old_routes_serving() {
    let up = Upstream::recording().await;
    let dir = TempDir::new("broken");
    let a = route("a", "/a", &up.url());
    let path = dir.config(&file_config(std::slice::from_ref(&a)));
    let gw = Gateway::start_file(&path).await;
    assert_eq!(status(&gw.url("/a"), None).await, 200);

    // A typo in a new route, written over the file in place.
    let typo = format!(
        "  - name: b\n    match: {{ prefix: /b }}\n    upstrem: {}\n    auth: none\n",
        up.url()
    );
    save_in_place(&path, &file_config(&[a.clone(), typo]));
    wait_for_reloads(&gw.admin_url("/metrics"), "failure", 1.0).await;
    assert_eq!(reloads(&gw, "failure").await, 1.0);
    assert_eq!(reloads(&gw, "success").await, 0.0);
    assert_eq!(status(&gw.url("/a"), None).await, 200);
    assert_eq!(status(&gw.url("/b"), None).await, 404);
    assert_eq!(gw.shared.plan().routes.len(), 1);

    // Fixed, and saved the way editors do.
    save_by_rename(&path, &file_config(&[a, route("b", "/b", &up.url())]));
    wait_for_status(&gw.url("/b"), None, 200, "the fixed file to take effect").await;
    assert_eq!(status(&gw.url("/a"), None).await, 200);
    assert_eq!(reloads(&gw, "success").await, 1.0);
    assert_eq!(reloads(&gw, "failure").await, 1.0);
}

/// A protected `/api` (the issuer `cryptr` at `issuer`, accepting `audiences`), and `extra`
/// routes.
fn issuer_config(issuer: &TestIssuer, audiences: &str, extra: &[String]) -> String {
    format!(
        "listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{audiences}]
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr] }}
{extra}",
        base = issuer.base_url(),
        extra = extra.concat()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_jwks_cache_of_an_unchanged_issuer() {
    const NEW_AUDIENCE: &str = "https://app.example.com";
    let issuer = TestIssuer::start().await;
    let dir = TempDir::new("jwks");
    let path = dir.config(&issuer_config(&issuer, AUDIENCE, &[]));
    let gw = Gateway::start_file(&path).await;
    let token = issuer.token(&issuer.claims("acme"));
    assert_eq!(status(&gw.url("/api"), Some(&token)).await, 200);
    let fetched = issuer.fetches();
    assert!(fetched >= 1, "no JWKS fetch before the first 200");

    // Something unrelated changes: the issuer is the same, and so are its keys.
    let public = route("public", "/public", "builtin:echo");
    save_by_rename(
        &path,
        &issuer_config(&issuer, AUDIENCE, std::slice::from_ref(&public)),
    );
    wait_for_status(&gw.url("/public"), None, 200, "the new route to serve").await;
    assert_eq!(status(&gw.url("/api"), Some(&token)).await, 200);
    assert_eq!(issuer.fetches(), fetched, "the reload refetched the JWKS");
    assert_eq!(reloads(&gw, "success").await, 1.0);

    // The issuer's audiences change: a new issuer, its keys fetched the same way. A token
    // good for both audiences keeps passing throughout.
    let both = issuer.token(&edit(issuer.claims("acme"), |c| {
        c.insert("aud".into(), json!([AUDIENCE, NEW_AUDIENCE]));
    }));
    let only_new = issuer.token(&edit(issuer.claims("acme"), |c| {
        c.insert("aud".into(), json!(NEW_AUDIENCE));
    }));
    assert_eq!(status(&gw.url("/api"), Some(&only_new)).await, 401);
    let stream = Stream::start(&gw, 4, "/api/courses", Some(both));
    stream.run_for(50, "the stream to get going").await;
    save_by_rename(&path, &issuer_config(&issuer, NEW_AUDIENCE, &[public]));
    wait_for_reloads(&gw.admin_url("/metrics"), "success", 2.0).await;
    stream
        .run_for(200, "200 more requests after the change")
        .await;
    let tally = stream.stop().await;
    assert_clean(&tally);
    assert_eq!(status(&gw.url("/api"), Some(&only_new)).await, 200);
    // The old audience's token passed moments ago: it must not pass any more.
    assert_eq!(status(&gw.url("/api"), Some(&token)).await, 401);
    assert_eq!(
        issuer.fetches(),
        fetched,
        "the JWKS was refetched although its source did not change"
    );
    assert_eq!(reloads(&gw, "success").await, 2.0);
    assert_eq!(reloads(&gw, "failure").await, 0.0);
}

#[tokio::test]
async fn in_flight_requests_finish_on_the_plan_they_started_with() {
    let (arrived_tx, mut arrived) = tokio::sync::mpsc::unbounded_channel::<String>();
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let up = Upstream::serve(move |req: Request<Incoming>| {
        let _ = arrived_tx.send(req.uri().path().to_string());
        let gate = gate.clone();
        async move {
            gate.acquire().await.unwrap().forget();
            Response::new(body::full("released"))
        }
    })
    .await;
    let dir = TempDir::new("in-flight");
    let stays = route("stays", "/stays", "builtin:echo");
    let path = dir.config(&file_config(&[
        route("held", "/held", &up.url()),
        stays.clone(),
    ]));
    let gw = Gateway::start_file(&path).await;
    assert_eq!(status(&gw.url("/stays"), None).await, 200);

    let url = gw.url("/held/slow");
    let in_flight = tokio::spawn(async move {
        let res = support::client().get(url).send().await?;
        let status = res.status().as_u16();
        Ok::<_, reqwest::Error>((status, res.text().await?))
    });
    let path_seen = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("the request did not reach the upstream")
        .unwrap();
    assert_eq!(path_seen, "/held/slow");

    // The route goes away while the request waits for its answer.
    save_in_place(&path, &file_config(&[stays]));
    wait_for_reloads(&gw.admin_url("/metrics"), "success", 1.0).await;
    assert_eq!(status(&gw.url("/held/new"), None).await, 404);
    assert_eq!(status(&gw.url("/stays"), None).await, 200);
    assert!(!in_flight.is_finished(), "the held request ended early");

    release.add_permits(1);
    let (code, text) = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .expect("the held request did not finish once released")
        .unwrap()
        .expect("the held request failed");
    assert_eq!(code, 200, "{text}");
    assert_eq!(text, "released");
    assert!(
        arrived.try_recv().is_err(),
        "the removed route still proxied"
    );
    assert_eq!(reloads(&gw, "success").await, 1.0);
}

/// The addresses in the binary's "cryptr-gateway listening" JSON log line.
fn listening_addresses(line: &str) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = if json["addr"].is_string() {
        &json
    } else {
        &json["fields"]
    };
    Some((
        fields["addr"].as_str()?.to_string(),
        fields["admin"].as_str()?.to_string(),
    ))
}

/// The binary, running `path`, once it logged where it listens.
struct Running {
    child: KillOnDrop,
    pid: String,
    addr: String,
    admin: String,
    /// Every log line so far (the pipe is drained, so the gateway never blocks on it).
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn start(path: &Path) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
            .env_remove("GATEWAY_CONFIG")
            .env_remove("GATEWAY_LISTEN")
            .env("RUST_LOG", "info")
            .args(["--log-format", "json", "run", "-c"])
            .arg(path)
            .stderr(Stdio::piped())
            .spawn()
            .map(KillOnDrop)
            .unwrap();
        let pid = child.0.id().to_string();
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let (found_tx, found) = std::sync::mpsc::channel();
        let stderr = child.0.stderr.take().unwrap();
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addrs) = listening_addresses(&line) {
                    let _ = found_tx.send(addrs);
                }
                lines.lock().unwrap().push(line);
            }
        });
        let (addr, admin) = found
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "no \"cryptr-gateway listening\" line:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        Running {
            child,
            pid,
            addr,
            admin,
            log,
        }
    }

    fn signal(&self, name: &str) {
        support::signal(&self.pid, name);
    }

    /// How the process ended, if it did.
    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.0.try_wait().unwrap()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

#[tokio::test]
async fn sighup_reloads_the_binary() {
    let dir = TempDir::new("sighup");
    let path = dir.config(&file_config(&[route(
        "courses",
        "/api/v1/courses",
        "builtin:courses",
    )]));
    let mut gw = Running::start(&path);
    let (addr, admin) = (gw.addr.clone(), gw.admin.clone());
    let courses = format!("http://{addr}/api/v1/courses");
    let metrics_url = format!("http://{admin}/metrics");
    assert_eq!(status(&courses, None).await, 200);
    assert_eq!(reload_count(&metrics_url, "success").await, 0.0);

    // The file did not change: the watcher has nothing to do, SIGHUP reloads all the same.
    for n in 1..=2 {
        gw.signal("-HUP");
        wait_for_reloads(&metrics_url, "success", f64::from(n)).await;
        assert_eq!(reload_count(&metrics_url, "success").await, f64::from(n));
        assert_eq!(gw.exited(), None, "the gateway exited on SIGHUP");
        assert_eq!(status(&courses, None).await, 200);
    }
    // Written by the log's own thread: a moment after the reload, at most.
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.log().matches("SIGHUP received").count() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logged = gw.log();
    assert_eq!(
        logged.matches("SIGHUP received").count(),
        2,
        "the log:\n{logged}"
    );

    // Still a healthy process: SIGTERM ends it with 0.
    gw.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = gw.exited() {
            break status.code();
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn the_watcher_follows_a_kubernetes_style_symlink_swap() {
    use std::os::unix::fs::symlink;
    let up = Upstream::recording().await;
    let dir = TempDir::new("k8s");
    let a = route("a", "/a", &up.url());
    // What the kubelet lays out for a mounted ConfigMap.
    std::fs::create_dir(dir.join("..v1")).unwrap();
    std::fs::write(
        dir.join("..v1/gateway.yaml"),
        file_config(std::slice::from_ref(&a)),
    )
    .unwrap();
    symlink("..v1", dir.join("..data")).unwrap();
    symlink("..data/gateway.yaml", dir.join("gateway.yaml")).unwrap();
    let gw = Gateway::start_file(&dir.join("gateway.yaml")).await;
    assert_eq!(status(&gw.url("/a"), None).await, 200);
    assert_eq!(status(&gw.url("/b"), None).await, 404);

    // An update: a new version folder, then `..data` swapped to it in one rename.
    std::fs::create_dir(dir.join("..v2")).unwrap();
    std::fs::write(
        dir.join("..v2/gateway.yaml"),
        file_config(&[a, route("b", "/b", &up.url())]),
    )
    .unwrap();
    symlink("..v2", dir.join("..data_tmp")).unwrap();
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
    std::fs::remove_dir_all(dir.join("..v1")).unwrap();

    wait_for_status(&gw.url("/b"), None, 200, "the swapped config to serve /b").await;
    assert_eq!(status(&gw.url("/a"), None).await, 200);
    assert_eq!(reloads(&gw, "success").await, 1.0);
    assert_eq!(reloads(&gw, "failure").await, 0.0);
}

#[tokio::test]
async fn sighup_right_after_the_listening_line_reloads_instead_of_killing_the_binary() {
    let dir = TempDir::new("early-sighup");
    let path = dir.config(&file_config(&[route(
        "courses",
        "/api/v1/courses",
        "builtin:courses",
    )]));
    // The window is short: several launches make a miss all but certain.
    for launch in 1..=10 {
        let mut gw = Running::start(&path);
        gw.signal("-HUP");
        let metrics_url = format!("http://{}/metrics", gw.admin);
        let deadline = Instant::now() + RELOAD_LIMIT;
        loop {
            if let Some(status) = gw.exited() {
                panic!(
                    "launch {launch}: SIGHUP sent once the gateway said it listens ended it ({status}):\n{}",
                    gw.log()
                );
            }
            if let Ok(res) = support::client().get(&metrics_url).send().await {
                let text = res.text().await.unwrap_or_default();
                if metric(&text, RELOADS, "result=\"success\"").unwrap_or(0.0) >= 1.0 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "launch {launch}: no reload");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn a_change_saved_while_the_gateway_starts_is_not_lost() {
    let up = Upstream::recording().await;
    let dir = TempDir::new("early-change");
    let a = route("a", "/a", &up.url());
    let path = dir.config(&file_config(std::slice::from_ref(&a)));
    let gw = Gateway::start_file(&path).await;
    // Saved before the gateway served anything: its serving task has not run yet.
    save_by_rename(&path, &file_config(&[a, route("b", "/b", &up.url())]));
    wait_for_status(&gw.url("/b"), None, 200, "the change to be loaded").await;
    assert_eq!(reloads(&gw, "success").await, 1.0);
}
