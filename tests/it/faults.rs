//! Faults on either side of the gateway, and what they leave behind: an upstream that dies
//! mid-answer, answers garbage or closes early; a key endpoint that flaps under load; clients
//! that leave mid-upload, mid-download or mid-wait. Each ends in bounded time, the gateway
//! keeps serving, and nothing is left open: no request in flight, no connection counted, no
//! socket held.
//!
//! The simplest cases are in failures.rs (`upstream_dying_mid_response_fails_that_response_only`,
//! `upstream_answering_garbage_is_502_and_never_hangs`, `upstream_closing_without_an_answer_is_502`);
//! these add the reset, chunked framing, more kinds of garbage, time bounds and leak checks.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cryptr_gateway::body::{self, BoxError};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::issuer::{edit, Mode, SigningKey, TestIssuer, AUDIENCE};
use crate::support::BodyReport;
use crate::support::{self, config, metric, poll_until, raw_get, raw_status, Gateway, Upstream};

/// Long enough for anything that works; short enough that a hang fails the test, not CI.
const BOUND: Duration = Duration::from_secs(10);

/// This process's open file descriptors that are TCP sockets with an end on one of `ports`:
/// a listener, its accepted connections, and connections to it. Tests run side by side in one
/// process, so the raw count of `/proc/self/fd` moves with every other test's sockets;
/// counting only the sockets of one test's gateway and upstream (inodes matched through
/// `/proc/net/tcp`) makes "back to where it was" exact, with no tolerance.
fn sockets_on(ports: &[u16]) -> usize {
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 10 {
                continue;
            }
            let port = |addr: &str| {
                addr.rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
            };
            let ours = [fields[1], fields[2]]
                .iter()
                .any(|a| port(a).is_some_and(|p| ports.contains(&p)));
            match fields[9].parse::<u64>() {
                Ok(inode) if ours && inode != 0 => {
                    inodes.insert(inode);
                }
                _ => {}
            }
        }
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
                .is_some_and(|inode| inodes.contains(&inode))
        })
        .count()
}

/// Every descriptor of this process, for failure messages.
fn all_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// What is open before a fault, to come back to after it.
struct Baseline {
    ports: Vec<u16>,
    sockets: usize,
    connections: i64,
}

impl Baseline {
    fn take(gw: &Gateway, upstream: SocketAddr) -> Baseline {
        let ports = vec![gw.addr.port(), upstream.port()];
        assert_eq!(gw.shared.metrics.requests_in_flight(), 0);
        Baseline {
            sockets: sockets_on(&ports),
            connections: gw.shared.metrics.open_connections(),
            ports,
        }
    }

    /// Polls until no request is in flight, the connection gauge is back, and this test's
    /// gateway and upstream hold exactly the sockets they held before.
    async fn restored(&self, gw: &Gateway, what: &str) {
        let metrics = &gw.shared.metrics;
        poll_until(
            BOUND,
            &format!("{what}: requests_in_flight back to 0"),
            || metrics.requests_in_flight() == 0,
        )
        .await;
        poll_until(
            BOUND,
            &format!("{what}: connections_open back to {}", self.connections),
            || metrics.open_connections() == self.connections,
        )
        .await;
        let deadline = Instant::now() + BOUND;
        loop {
            let now = sockets_on(&self.ports);
            if now == self.sockets {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {now} sockets open on the gateway and upstream ports, {} before \
                 ({} descriptors in the process)",
                self.sockets,
                all_fds()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Reads a request head (up to its blank line); false if the peer closed first.
async fn read_head(s: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// EOF.
    Closed,
    /// The read failed (a reset).
    Reset,
    /// Nothing more within the bound, and the connection still open.
    Hung,
}

/// Reads what comes until the connection ends or `BOUND` passes.
async fn read_until_end(s: &mut TcpStream) -> (Vec<u8>, End) {
    let deadline = tokio::time::Instant::now() + BOUND;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut chunk)).await {
            Ok(Ok(0)) => return (out, End::Closed),
            Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            Ok(Err(_)) => return (out, End::Reset),
            Err(_) => return (out, End::Hung),
        }
    }
}

/// How an upstream's connection ends: FIN, or RST (`SO_LINGER` 0).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Close,
    Reset,
}

fn cut(s: TcpStream, how: Cut) {
    if how == Cut::Reset {
        let _ = s.set_zero_linger();
    }
    drop(s);
}

/// Routes `/api` to `upstream` and `/ok` to the echo built-in.
fn api_and_ok(upstream: &str) -> String {
    config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {upstream}\n    auth: none\n  - name: ok\n    match: {{ prefix: /ok }}\n    upstream: builtin:echo\n    auth: none\n"
    ))
}

#[tokio::test]
async fn an_upstream_dying_mid_response_cuts_that_response_only_and_leaks_nothing() {
    const SIZED: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789";
    const CHUNKED: &[u8] =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n";
    for (head, how) in [
        (SIZED, Cut::Reset),
        (SIZED, Cut::Close),
        (CHUNKED, Cut::Reset),
        (CHUNKED, Cut::Close),
    ] {
        let chunked = head == CHUNKED;
        let case = format!("chunked {chunked}, {how:?}");
        let up = Upstream::raw(move |mut s| async move {
            if read_head(&mut s).await {
                let _ = s.write_all(head).await;
                // The head and the first bytes reach the client before the upstream dies.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cut(s, how);
        })
        .await;
        let gw = Gateway::start(&api_and_ok(&up.url())).await;
        let before = Baseline::take(&gw, up.addr);

        let mut client = TcpStream::connect(gw.addr).await.unwrap();
        // Keep-alive: the gateway, not the client, has to end this connection.
        client
            .write_all(b"GET /api HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let (answer, end) = read_until_end(&mut client).await;
        drop(client);
        let text = String::from_utf8_lossy(&answer).to_string();
        assert_ne!(
            end,
            End::Hung,
            "{case}: the client was left hanging: {text:?}"
        );
        assert_eq!(raw_status(&text), 200, "{case}: {text:?}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(body.contains("0123456789"), "{case}: {text:?}");
        if chunked {
            // A last chunk would make the cut answer look complete.
            assert!(
                !body.contains("\r\n0\r\n\r\n") && !body.starts_with("0\r\n"),
                "{case}: the cut answer was completed: {text:?}"
            );
        } else {
            assert!(
                head.to_ascii_lowercase().contains("content-length: 1000"),
                "{case}: {head}"
            );
            assert!(body.len() < 1000, "{case}: {} bytes", body.len());
        }

        // A new client is served.
        assert_eq!(raw_status(&raw_get(gw.addr, "/ok").await), 200, "{case}");
        before.restored(&gw, &case).await;
    }
}

/// A raw upstream's misbehaviour, once it has the request (or, for `ClosedAtOnce`, before).
#[derive(Debug, Clone, Copy)]
enum Garbage {
    /// Another protocol's greeting, and the connection held open.
    NotHttp,
    /// A TLS record, as an https server on an http URL would send.
    Tls,
    /// A status line, then a header hyper cannot read, held open.
    BadHeader,
    /// A head that never ends: header lines until the gateway gives up.
    EndlessHead,
    /// Closed before reading a byte.
    ClosedAtOnce,
    /// Half a status line, then closed.
    PartialStatus,
    /// A head without its blank line, then closed.
    UnfinishedHead,
    /// Reset once the request is in.
    Reset,
}

async fn misbehave(mut s: TcpStream, how: Garbage) {
    let hold = || tokio::time::sleep(Duration::from_secs(30));
    if let Garbage::ClosedAtOnce = how {
        return;
    }
    if !read_head(&mut s).await {
        return;
    }
    match how {
        Garbage::NotHttp => {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
            hold().await;
        }
        Garbage::Tls => {
            let _ = s
                .write_all(&[
                    0x16, 0x03, 0x03, 0x00, 0x31, 0x02, 0x00, 0x00, 0x2d, 0x03, 0x03,
                ])
                .await;
            hold().await;
        }
        Garbage::BadHeader => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")
                .await;
            hold().await;
        }
        Garbage::EndlessHead => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            let lines = b"X-Again: and again and again\r\n".repeat(1024);
            for _ in 0..256 {
                if s.write_all(&lines).await.is_err() {
                    return;
                }
            }
            hold().await;
        }
        Garbage::PartialStatus => {
            let _ = s.write_all(b"HTTP/1.1 20").await;
        }
        Garbage::UnfinishedHead => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
                .await;
        }
        Garbage::Reset => cut(s, Cut::Reset),
        Garbage::ClosedAtOnce => {}
    }
}

#[tokio::test]
async fn an_upstream_answering_garbage_or_closing_early_is_a_prompt_502_upstream_error() {
    for how in [
        Garbage::NotHttp,
        Garbage::Tls,
        Garbage::BadHeader,
        Garbage::EndlessHead,
        Garbage::ClosedAtOnce,
        Garbage::PartialStatus,
        Garbage::UnfinishedHead,
        Garbage::Reset,
    ] {
        let up = Upstream::raw(move |s| misbehave(s, how)).await;
        // The default 30 s timeout: an answer within BOUND is the fault seen, not waited out.
        let gw = Gateway::start(&api_and_ok(&up.url())).await;
        let started = Instant::now();
        let res = tokio::time::timeout(BOUND, support::client().get(gw.url("/api")).send())
            .await
            .unwrap_or_else(|_| panic!("{how:?}: no answer within {BOUND:?}"))
            .unwrap();
        assert_eq!(res.status(), 502, "{how:?}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["code"], "upstream_error", "{how:?}");
        assert!(
            !body.to_string().contains(&up.addr.port().to_string()),
            "{how:?}: {body}"
        );
        assert!(started.elapsed() < BOUND, "{how:?}");
        let text = gw.metrics().await;
        assert_eq!(
            metric(
                &text,
                "cryptr_gateway_upstream_errors_total",
                r#"route="api",kind="reset""#
            ),
            Some(1.0),
            "{how:?}"
        );
        assert_eq!(raw_status(&raw_get(gw.addr, "/ok").await), 200, "{how:?}");
    }
}

#[tokio::test]
async fn an_upstream_closing_its_idle_keep_alive_connections_causes_no_502() {
    // Answers one request per connection without `Connection: close`, then closes: the
    // gateway's pool holds a connection the upstream has already ended.
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let up = Upstream::raw(move |mut s| {
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            if read_head(&mut s).await {
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    let gw = Gateway::start(&api_and_ok(&up.url())).await;
    for i in 0..10 {
        let answer = raw_get(gw.addr, "/api").await;
        assert_eq!(raw_status(&answer), 200, "request {i}: {answer}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
}

/// The gateway for the key flap: short freshness so refreshes run all along, a fetch bound
/// shorter than the slow mode, and unknown kids allowed to refetch every 100 ms.
fn flapping_yaml(issuer: &TestIssuer) -> String {
    format!(
        "listen: 127.0.0.1:0
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{AUDIENCE}]
    jwks: {{ ttl: 500ms, min_ttl: 100ms, timeout: 300ms, min_refresh_interval: 100ms }}
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr] }}
",
        base = issuer.base_url()
    )
}

#[tokio::test]
async fn valid_requests_never_fail_while_the_jwks_endpoint_flaps() {
    let issuer = Arc::new(TestIssuer::start().await);
    let gw = Gateway::start(&flapping_yaml(&issuer)).await;
    let token = issuer.token(&issuer.claims("acme"));
    let res = support::client()
        .get(gw.url("/api"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "the keys never loaded");
    let keys = gw.plan.auth.issuers[0].keys.clone();
    let cache = gw.plan.auth.cache.clone();
    let failed_before = cache.status(&keys).failures;
    let fetched_before = issuer.fetches();

    let phase = Arc::new(Mutex::new(String::from("up")));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    // Four loops of valid requests: two send one token again and again (the token cache),
    // two a new token each time (a key lookup each time).
    let loops: Vec<_> = (0..4)
        .map(|i| {
            let (issuer, url, token) = (issuer.clone(), gw.url("/api"), token.clone());
            let (phase, stop, served, failures) = (
                phase.clone(),
                stop.clone(),
                served.clone(),
                failures.clone(),
            );
            tokio::spawn(async move {
                let client = support::client();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let token = if i % 2 == 0 {
                        issuer.token(&edit(issuer.claims("acme"), |c| {
                            c.insert("jti".into(), json!(format!("loop-{i}-{n}")));
                        }))
                    } else {
                        token.clone()
                    };
                    let status = match client.get(&url).bearer_auth(token).send().await {
                        Ok(res) => res.status().to_string(),
                        Err(e) => e.to_string(),
                    };
                    if status.starts_with("200") {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        let during = phase.lock().unwrap().clone();
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("loop {i}, during {during}: {status}"));
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    // And a stream of unknown kids: each may force a refetch (every 100 ms at most), whatever
    // the endpoint is doing; they are refused, never let through.
    let prober = {
        let (issuer, url, stop) = (issuer.clone(), gw.url("/api"), stop.clone());
        tokio::spawn(async move {
            let client = support::client();
            let mut statuses = HashSet::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let key = SigningKey::rsa_a().with_kid(&format!("unknown-{n}"));
                let token = issuer.token_with(&key, &issuer.claims("acme"));
                let res = client.get(&url).bearer_auth(token).send().await.unwrap();
                statuses.insert(res.status().as_u16());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            statuses
        })
    };

    let phases = [
        Mode::Down,
        Mode::Garbage,
        Mode::Slow(Duration::from_secs(2)),
        Mode::Up,
    ];
    for cycle in 0..3 {
        for mode in &phases {
            *phase.lock().unwrap() = format!("cycle {cycle}, {mode:?}");
            issuer.set_mode(mode.clone());
            let fetched = issuer.fetches();
            poll_until(BOUND, &format!("a fetch in {mode:?}"), || {
                issuer.fetches() > fetched
            })
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let probed = prober.await.unwrap();

    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} valid requests failed ({} served): {failures:#?}",
        failures.len(),
        served.load(Ordering::Relaxed)
    );
    assert!(
        served.load(Ordering::Relaxed) >= 100,
        "too few requests to judge"
    );
    assert_eq!(probed, HashSet::from([401]), "unknown kids");
    // The flap was seen: fetches during it, and at least one failed in each bad phase.
    assert!(
        issuer.fetches() >= fetched_before + 12,
        "{} fetches",
        issuer.fetches()
    );
    poll_until(BOUND, "three failed fetches per cycle", || {
        cache.status(&keys).failures >= failed_before + 9
    })
    .await;
}

#[tokio::test]
async fn a_client_gone_mid_upload_cancels_the_upstream_request_and_leaks_nothing() {
    for how in [Cut::Close, Cut::Reset] {
        let ended = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::new(AtomicUsize::new(0));
        let (e, s) = (ended.clone(), seen.clone());
        let up = Upstream::serve(move |req: Request<Incoming>| {
            BodyReport::new(e.clone(), s.clone()).read(req)
        })
        .await;
        let gw = Gateway::start(&api_and_ok(&up.url())).await;
        let before = Baseline::take(&gw, up.addr);

        let mut client = TcpStream::connect(gw.addr).await.unwrap();
        client
            .write_all(b"POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
            .await
            .unwrap();
        client.write_all(&[b'x'; 10 * 1024]).await.unwrap();
        poll_until(BOUND, "the first 10 KiB at the upstream", || {
            seen.load(Ordering::SeqCst) == 10 * 1024
        })
        .await;
        cut(client, how);

        poll_until(
            BOUND,
            &format!("{how:?}: the upstream's request to end"),
            || ended.lock().unwrap().len() == 1,
        )
        .await;
        let (complete, bytes) = ended.lock().unwrap()[0];
        assert!(
            !complete,
            "{how:?}: the upstream took {bytes} bytes of 1000000 for a whole body"
        );
        assert_eq!(bytes, 10 * 1024, "{how:?}");
        before.restored(&gw, &format!("{how:?}")).await;
        assert_eq!(raw_status(&raw_get(gw.addr, "/ok").await), 200);
    }
}

#[tokio::test]
async fn a_client_gone_mid_download_cancels_the_upstream_response_and_leaks_nothing() {
    // A slow endless answer (a piece every 10 ms), and a fast one (as fast as it is read).
    for pace in [Some(Duration::from_millis(10)), None] {
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let up = Upstream::serve(move |_req: Request<Incoming>| {
            let flag = flag.clone();
            async move {
                let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
                let piece = Bytes::from(vec![b'd'; 16 * 1024]);
                tokio::spawn(async move {
                    loop {
                        if let Some(pause) = pace {
                            tokio::time::sleep(pause).await;
                        }
                        if tx.send(Ok(Frame::data(piece.clone()))).await.is_err() {
                            flag.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                });
                let frames = futures_util::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|x| (x, rx))
                });
                Response::new(StreamBody::new(frames).boxed_unsync())
            }
        })
        .await;
        // One request at a time on the route: the next one is served only if this one's slot
        // was given back.
        let gw = Gateway::start(&config(&format!(
            "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n    max_concurrent_requests: 1\n",
            up.url()
        )))
        .await;
        let before = Baseline::take(&gw, up.addr);

        let mut client = TcpStream::connect(gw.addr).await.unwrap();
        client
            .write_all(b"GET /api/download HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut got = 0;
        let mut buf = [0u8; 16 * 1024];
        while got < 64 * 1024 {
            let n = tokio::time::timeout(BOUND, client.read(&mut buf))
                .await
                .expect("the download stalled")
                .unwrap();
            assert!(n > 0, "closed after {got} bytes");
            got += n;
        }
        drop(client);

        poll_until(
            BOUND,
            &format!("{pace:?}: the upstream's body to be cancelled"),
            || cancelled.load(Ordering::SeqCst),
        )
        .await;
        before.restored(&gw, &format!("{pace:?}")).await;
        // The route's slot is free again.
        let mut next = TcpStream::connect(gw.addr).await.unwrap();
        next.write_all(b"GET /api/download HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let n = tokio::time::timeout(BOUND, next.read(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert_eq!(raw_status(&String::from_utf8_lossy(&buf[..n])), 200);
    }
}

/// Sets its flag when dropped before `done`: a handler cancelled mid-way.
struct Cancelled(Arc<AtomicBool>, bool);

impl Drop for Cancelled {
    fn drop(&mut self) {
        if !self.1 {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test]
async fn a_client_gone_while_the_upstream_thinks_cancels_the_upstream_request() {
    let started = Arc::new(AtomicUsize::new(0));
    let cancelled = Arc::new(AtomicBool::new(false));
    let (s, c) = (started.clone(), cancelled.clone());
    let up = Upstream::serve(move |_req: Request<Incoming>| {
        s.fetch_add(1, Ordering::SeqCst);
        let guard = Cancelled(c.clone(), false);
        async move {
            // The whole guard moves in, not just the flag set below.
            let mut guard = guard;
            tokio::time::sleep(Duration::from_secs(30)).await;
            guard.1 = true;
            Response::new(body::full("too late"))
        }
    })
    .await;
    let gw = Gateway::start(&api_and_ok(&up.url())).await;
    let before = Baseline::take(&gw, up.addr);
    let mut client = TcpStream::connect(gw.addr).await.unwrap();
    client
        .write_all(b"GET /api/think HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    poll_until(BOUND, "the request at the upstream", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;
    drop(client);
    poll_until(BOUND, "the upstream's request to be cancelled", || {
        cancelled.load(Ordering::SeqCst)
    })
    .await;
    before.restored(&gw, "gone while waiting").await;
}
