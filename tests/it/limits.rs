//! Each limit, crossed, gets its documented answer. Only what the other modules leave out is
//! here: defaults that are on without a word in the config, the `limits:` values that every
//! route inherits, per-issuer token sizes, the upstream connect bound, and key sets that grow
//! or dribble as they stream. Where a limit is already covered elsewhere, its test is named
//! in the note of the nearest test below.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cryptr_gateway::body::{self, BoxError};
use futures_util::StreamExt;
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::support::issuer::{edit, SigningKey, TestIssuer, AUDIENCE};
use crate::support::{
    self, metric, poll_until, raw_get, raw_json, raw_request, raw_status,
    request_with_header_lines, BodyReport, Gateway, Upstream,
};

/// One route entry of a `routes:` block, `auth: none`; `extra` lines are indented by four.
fn route(name: &str, prefix: &str, upstream: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    match: {{ prefix: {prefix} }}\n    upstream: {upstream}\n    auth: none\n{extra}"
    )
}

/// A config with `limits` (a flow map, `{ ... }`) and the given routes.
fn with_limits(limits: &str, routes: &str) -> String {
    format!("listen: 127.0.0.1:0\nlimits: {limits}\nroutes:\n{routes}")
}

fn channel_stream<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|x| (x, rx)) })
}

/// `n` pieces of `size` bytes, `pause` apart, as a streamed (chunked) request body.
/// `n` pieces of 1 KiB, `pause` apart, posted to a route `upload` with `timeout` whose
/// upstream reads the whole body and answers its length.
async fn paced_upload(
    timeout: &str,
    n: usize,
    pause: Duration,
) -> (Upstream, Gateway, reqwest::Response) {
    let up = Upstream::serve(support::count_body).await;
    let gw = Gateway::start(&with_limits(
        &format!("{{ timeout: {timeout} }}"),
        &route("upload", "/upload", &up.url(), ""),
    ))
    .await;
    let res = support::client()
        .post(gw.url("/upload"))
        .body(paced_body(n, 1024, pause))
        .send()
        .await
        .unwrap();
    (up, gw, res)
}

fn paced_body(n: usize, size: usize, pause: Duration) -> reqwest::Body {
    let pieces = futures_util::stream::iter(0..n).then(move |i| async move {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))
    });
    reqwest::Body::wrap_stream(pieces)
}

async fn json(res: reqwest::Response) -> Value {
    res.json().await.unwrap_or(Value::Null)
}

/// Defaults for the limits configured elsewhere: `max_header_size` (a 40 KiB header) and
/// `max_headers` in failures.rs `oversized_or_too_many_headers_are_431`, `max_token_size` in
/// auth.rs `oversized_tokens_are_refused_before_parsing`.
#[tokio::test]
async fn a_config_without_limits_still_refuses_a_9_kib_target_and_a_body_over_10_mib() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&support::config(&route("api", "/api", &up.url(), ""))).await;

    // 8 KiB of path and query pass; 9 KiB is 414.
    let at_limit = format!("/api?{}", "q".repeat(8 * 1024 - "/api?".len()));
    let answer = raw_get(gw.addr, &at_limit).await;
    assert_eq!(
        raw_status(&answer),
        200,
        "{}",
        &answer[..answer.len().min(300)]
    );
    let answer = raw_get(gw.addr, &format!("/api?{}", "q".repeat(9 * 1024))).await;
    assert_eq!(raw_status(&answer), 414);
    assert_eq!(raw_json(&answer)["code"], "uri_too_long");
    assert_eq!(up.count(), 1);

    // 10 MiB of body pass; one byte more, declared, is 413 before a byte is read or sent on.
    const TEN_MIB: usize = 10 * 1024 * 1024;
    let res = support::client()
        .post(gw.url("/api/upload"))
        .body(vec![b'x'; TEN_MIB])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(up.last().body.len(), TEN_MIB);
    let answer = raw_request(
        gw.addr,
        format!(
            "POST /api/upload HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            TEN_MIB + 1
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 413, "{answer}");
    assert_eq!(raw_json(&answer)["code"], "body_too_large");
    assert_eq!(up.count(), 2);

    // Streamed without a length, it is cut where it crosses 10 MiB.
    let res = support::client()
        .post(gw.url("/api/upload"))
        .body(paced_body(11, 1024 * 1024, Duration::ZERO))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["code"], "body_too_large");
}

/// The default (32 KiB) is in failures.rs `oversized_or_too_many_headers_are_431`.
#[tokio::test]
async fn limits_max_header_size_bounds_header_names_and_values_together_at_its_configured_value() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&with_limits(
        "{ max_header_size: 1KiB }",
        &route("api", "/api", &up.url(), ""),
    ))
    .await;
    // `host` + `t`, `x-pad` + pad, `connection` + `close`: 1024 bytes with a pad of 999.
    let request = |pad: usize| {
        format!(
            "GET /api HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\nConnection: close\r\n\r\n",
            "p".repeat(pad)
        )
    };
    let answer = raw_request(gw.addr, request(999).as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let answer = raw_request(gw.addr, request(1000).as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert_eq!(raw_json(&answer)["code"], "headers_too_large");
    // Far over, past hyper's own buffer: still a 431, never a 400 or a hang.
    let answer = raw_request(gw.addr, request(20 * 1024).as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert_eq!(up.count(), 1);

    // HTTP/2 counts the same headers (no Host: the authority is a pseudo-header). Past twice
    // the limit h2 answers 431 itself; past eight times it ends the connection
    // (ENHANCE_YOUR_CALM): an abuser's, not an answer. Neither ever hangs.
    let h2 = || async {
        let stream = TcpStream::connect(gw.addr).await.unwrap();
        let (sender, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        sender
    };
    let mut sender = h2().await;
    // Status 0: a 431 or the connection ended.
    for (pad, status) in [(900, 200), (1100, 431), (3 * 1024, 431), (16 * 1024, 0)] {
        let req = Request::get(format!("http://{}/api/h2", gw.addr))
            .header("x-pad", "p".repeat(pad))
            .body(body::empty())
            .unwrap();
        let res = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
            .await
            .unwrap_or_else(|_| panic!("h2, pad {pad}: no answer"));
        match res {
            Ok(res) => {
                let expected = if status == 0 { 431 } else { status };
                assert_eq!(res.status(), expected, "h2, pad {pad}");
                if pad == 1100 {
                    let bytes = res.into_body().collect().await.unwrap().to_bytes();
                    let body: Value = serde_json::from_slice(&bytes).unwrap();
                    assert_eq!(body["code"], "headers_too_large");
                }
            }
            Err(e) => assert_eq!(status, 0, "h2, pad {pad}: {e}"),
        }
    }
    // A new connection is served.
    let req = Request::get(format!("http://{}/api/h2", gw.addr))
        .body(body::empty())
        .unwrap();
    assert_eq!(h2().await.send_request(req).await.unwrap().status(), 200);
}

/// The default (100) is in failures.rs `oversized_or_too_many_headers_are_431`. Over hyper's
/// default of 100 lines too (150), the configured count holds both ways: hyper is told to allow
/// more, and the gateway still answers its JSON 431 one line over.
#[tokio::test]
async fn limits_max_headers_bounds_the_number_of_header_lines_at_its_configured_value() {
    for limit in [10, 150] {
        let up = Upstream::recording().await;
        let gw = Gateway::start(&with_limits(
            &format!("{{ max_headers: {limit} }}"),
            &route("api", "/api", &up.url(), ""),
        ))
        .await;
        // Host and Connection are two of the lines.
        let answer = raw_request(gw.addr, request_with_header_lines(limit - 2).as_bytes()).await;
        assert_eq!(raw_status(&answer), 200, "{limit}: {answer}");
        let answer = raw_request(gw.addr, request_with_header_lines(limit - 1).as_bytes()).await;
        assert_eq!(raw_status(&answer), 431, "{limit}: {answer}");
        assert_eq!(raw_json(&answer)["code"], "headers_too_large");
        // Far over (past hyper's own count): still 431.
        let answer = raw_request(gw.addr, request_with_header_lines(limit * 10).as_bytes()).await;
        assert_eq!(raw_status(&answer), 431, "{limit}: {answer}");
        assert_eq!(up.count(), 1);
    }
}

/// A route's own `max_body` is in failures.rs `body_over_max_body_is_413_before_anything_is_sent`
/// and `chunked_body_growing_over_max_body_is_413`.
#[tokio::test]
async fn limits_max_body_is_the_bound_of_every_route_without_its_own() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&with_limits(
        "{ max_body: 1KiB }",
        &format!(
            "{}{}",
            route("a", "/a", &up.url(), ""),
            route("b", "/b", &up.url(), "    max_body: 4KiB\n")
        ),
    ))
    .await;
    let c = support::client();
    let post = |path: &str, len: usize| c.post(gw.url(path)).body(vec![b'x'; len]).send();
    assert_eq!(post("/a", 1024).await.unwrap().status(), 200);
    let res = post("/a", 1025).await.unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["code"], "body_too_large");
    assert_eq!(up.count(), 1);
    // The route's own bound wins over the server-wide one, both ways.
    assert_eq!(post("/b", 4096).await.unwrap().status(), 200);
    assert_eq!(post("/b", 4097).await.unwrap().status(), 413);
    // Streamed, without a length: cut where it crosses the server-wide bound.
    let res = c
        .post(gw.url("/a"))
        .body(paced_body(4, 512, Duration::ZERO))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["code"], "body_too_large");
}

#[tokio::test]
async fn a_streamed_body_cut_at_max_body_never_reaches_the_upstream_as_a_complete_one() {
    let started = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(Mutex::new(Vec::new()));
    let (s, e) = (started.clone(), ended.clone());
    let up = Upstream::serve(move |req: Request<Incoming>| {
        s.fetch_add(1, Ordering::SeqCst);
        BodyReport::new(e.clone(), Arc::default()).read(req)
    })
    .await;
    let gw = Gateway::start(&with_limits(
        "{ max_body: 64KiB }",
        &route("api", "/api", &up.url(), ""),
    ))
    .await;
    // Paced so the first pieces are on their way upstream before the bound is crossed.
    let res = support::client()
        .post(gw.url("/api"))
        .body(paced_body(16, 8 * 1024, Duration::from_millis(20)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["code"], "body_too_large");
    assert_eq!(started.load(Ordering::SeqCst), 1, "nothing was streamed");
    poll_until(
        Duration::from_secs(10),
        "the upstream's request to end",
        || ended.lock().unwrap().len() == 1,
    )
    .await;
    let (complete, bytes) = ended.lock().unwrap()[0];
    assert!(
        !complete,
        "the upstream received a truncated body ({bytes} bytes) as a complete request"
    );
    assert!(
        bytes > 0 && bytes <= 64 * 1024,
        "{bytes} bytes reached the upstream"
    );
}

/// The default (8 KiB, same for every issuer) is in auth.rs
/// `oversized_tokens_are_refused_before_parsing`.
#[tokio::test]
async fn a_token_over_its_issuers_max_token_size_is_invalid_token_even_where_another_issuer_takes_that_size(
) {
    let issuer = TestIssuer::start().await;
    let base = issuer.base_url();
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0
issuers:
  small:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{AUDIENCE}]
    max_token_size: 2KiB
  big:
    cryptr: {{ base_url: {base}, tenants: [globex] }}
    audiences: [{AUDIENCE}]
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [small, big] }}
"
    ))
    .await;
    let padded = |tenant: &str, pad: usize| {
        issuer.token(&edit(issuer.claims(tenant), |c| {
            c.insert("pad".into(), json!("x".repeat(pad)));
        }))
    };
    // The largest token within 2 KiB, and the smallest over it.
    let base_len = padded("acme", 0).len();
    assert!(
        base_len < 2048,
        "an unpadded token is already {base_len} bytes"
    );
    let mut pad = ((2048 - base_len) * 3 / 4).saturating_sub(8);
    let mut within = padded("acme", pad);
    loop {
        let next = padded("acme", pad + 1);
        if next.len() > 2048 {
            break;
        }
        (pad, within) = (pad + 1, next);
    }
    let over = padded("acme", pad + 1);
    assert!(within.len() <= 2048 && over.len() > 2048);

    let c = support::client();
    let res = c
        .get(gw.url("/api"))
        .bearer_auth(&within)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{} bytes", within.len());
    let res = c
        .get(gw.url("/api"))
        .bearer_auth(&over)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "{} bytes", over.len());
    let challenge = res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let body = json(res).await;
    assert_eq!(body["code"], "invalid_token");
    assert!(
        body["description"].as_str().unwrap().contains("larger"),
        "{body}"
    );
    // The same size from the issuer that allows it passes on the same route.
    let res = c
        .get(gw.url("/api"))
        .bearer_auth(padded("globex", pad + 1))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// A route's own `max_concurrent_requests` is in connections.rs
/// `a_route_at_its_concurrency_limit_sheds_load_with_503_and_recovers`.
#[tokio::test]
async fn limits_max_concurrent_requests_applies_to_each_route_and_holds_until_the_body_ends() {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(1);
    let rx = Arc::new(Mutex::new(Some(rx)));
    let up = Upstream::serve(move |_req: Request<Incoming>| {
        let rx = rx.lock().unwrap().take();
        async move {
            match rx {
                Some(rx) => Response::new(StreamBody::new(channel_stream(rx)).boxed_unsync()),
                None => Response::new(body::full("next")),
            }
        }
    })
    .await;
    let gw = Gateway::start(&with_limits(
        "{ max_concurrent_requests: 1 }",
        &format!(
            "{}{}",
            route("stream", "/stream", &up.url(), ""),
            route("other", "/other", "builtin:echo", "")
        ),
    ))
    .await;
    tx.send(Ok(Frame::data(Bytes::from_static(b"first piece"))))
        .await
        .unwrap();
    let c = support::client();
    let mut first = c.get(gw.url("/stream")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.chunk().await.unwrap().unwrap(), "first piece");

    // The answer has begun but its body has not ended: the route is still at its limit.
    let res = c.get(gw.url("/stream")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    assert_eq!(json(res).await["code"], "route_overloaded");
    // Each route has its own count.
    assert_eq!(raw_status(&raw_get(gw.addr, "/other").await), 200);

    drop(tx);
    assert_eq!(first.chunk().await.unwrap(), None);
    let shared = gw.shared.clone();
    poll_until(Duration::from_secs(5), "the first request to end", || {
        shared.metrics.requests_in_flight() == 0
    })
    .await;
    let res = c.get(gw.url("/stream")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "next");
}

/// A route's own `timeout` is in failures.rs `slow_upstream_is_504_upstream_timeout` and
/// `upstream_stalling_mid_body_is_cut_off`.
#[tokio::test]
async fn limits_timeout_bounds_every_route_without_its_own() {
    let up = Upstream::serve(|req: Request<Incoming>| async move {
        if req.uri().path().ends_with("/stall") {
            let frames = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(
                Bytes::from_static(b"start"),
            ))])
            .chain(futures_util::stream::pending());
            return Response::new(StreamBody::new(frames).boxed_unsync());
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Response::new(body::full("late"))
    })
    .await;
    let gw = Gateway::start(&with_limits(
        "{ timeout: 300ms }",
        &format!(
            "{}{}",
            route("short", "/short", &up.url(), ""),
            route("long", "/long", &up.url(), "    timeout: 10s\n")
        ),
    ))
    .await;
    let c = support::client();
    let started = Instant::now();
    let res = c.get(gw.url("/short/x")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(json(res).await["code"], "upstream_timeout");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "answered after {:?}: the upstream's own pace, not the limit",
        started.elapsed()
    );
    let res = c.get(gw.url("/long/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "late");
    // A pause longer than the limit mid-body cuts the answer.
    let res = c.get(gw.url("/short/stall")).send().await.unwrap();
    support::assert_cut_after(res, "start").await;
}

/// README: `timeout` is the upstream's time to start answering, and the longest pause
/// between two pieces of a body. An upload that never pauses that long, to an upstream that
/// answers as soon as it has it all, must get that answer however long the upload takes.
#[tokio::test]
async fn a_steady_upload_longer_than_timeout_still_gets_the_upstreams_answer() {
    // 2 seconds of upload, a piece every 200 ms.
    let (_up, _gw, res) = paced_upload("500ms", 11, Duration::from_millis(200)).await;
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    assert_eq!(text, (11 * 1024).to_string());
}

#[tokio::test]
async fn a_client_pausing_mid_upload_longer_than_timeout_is_400_not_the_upstreams_fault() {
    // Two pieces 1.5 s apart: the pause, not the upstream, is over the bound.
    let (_up, gw, res) = paced_upload("300ms", 2, Duration::from_millis(1500)).await;
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["code"], "bad_request_body");
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "cryptr_gateway_upstream_errors_total",
            r#"route="upload",kind="timeout""#
        ),
        None,
        "counted against the upstream:\n{text}"
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// neither succeeds nor fails (the loopback stand-in for an unroutable address). The returned
/// streams hold the queue full; `None` if this kernel would not let it fill.
async fn unaccepting_listener() -> Option<(tokio::net::TcpListener, Vec<TcpStream>)> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    for _ in 0..64 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            Ok(Err(e)) => panic!("connect to the filling listener failed: {e}"),
            Err(_) => return Some((listener, queued)),
        }
    }
    None
}

/// A gateway whose route `/api` goes to `upstream` with `connect_timeout: 300ms` (and a
/// `timeout` of 20 s, far longer).
async fn connect_timeout_gateway(upstream: &str) -> Gateway {
    Gateway::start(&with_limits(
        "{ connect_timeout: 300ms, timeout: 20s }",
        &route("api", "/api", upstream, ""),
    ))
    .await
}

/// GET /api answers 502 `upstream_unavailable` after about the connect timeout (`what` did
/// not finish in time); returns the answer's body.
async fn bounded_by_connect_timeout(gw: &Gateway, what: &str) -> Value {
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(15),
        support::client().get(gw.url("/api")).send(),
    )
    .await
    .unwrap_or_else(|_| panic!("no answer: {what} was not bounded"))
    .unwrap();
    let took = started.elapsed();
    assert_eq!(res.status(), 502);
    let body = json(res).await;
    assert_eq!(body["code"], "upstream_unavailable");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(5),
        "answered after {took:?}, not after connect_timeout"
    );
    body
}

#[tokio::test]
async fn limits_connect_timeout_bounds_an_upstream_that_never_accepts() {
    let Some((listener, _queued)) = unaccepting_listener().await else {
        panic!("could not fill a listener's accept queue: no upstream that never accepts");
    };
    let addr = listener.local_addr().unwrap();
    let gw = connect_timeout_gateway(&format!("http://{addr}")).await;
    let body = bounded_by_connect_timeout(&gw, "the connect").await;
    assert!(
        !body.to_string().contains(&addr.port().to_string()),
        "{body}"
    );
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "cryptr_gateway_upstream_errors_total",
            r#"route="api",kind="connect""#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn limits_connect_timeout_bounds_a_tls_handshake_that_never_ends() {
    // The TCP connect succeeds at once; the upstream then never answers the ClientHello.
    let up = Upstream::raw(|s| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(s);
    })
    .await;
    let gw = connect_timeout_gateway(&format!("https://{}", up.addr)).await;
    bounded_by_connect_timeout(&gw, "the TLS handshake").await;
    assert_eq!(up.connections(), 1);
}

/// A JWKS endpoint that streams its document without a length: the key, `pad` bytes of JSON
/// whitespace, then the closing brace after `stall`.
async fn streaming_jwks(pad: usize, stall: Duration) -> Upstream {
    let jwk = SigningKey::rsa_a().jwk();
    Upstream::serve(move |_req: Request<Incoming>| {
        let head = format!("{{\"keys\":[{jwk}]");
        async move {
            let pieces = std::iter::once(head.into_bytes())
                .chain((0..pad / 1024).map(|_| vec![b' '; 1024]))
                .map(|b| Ok::<_, BoxError>(Frame::data(Bytes::from(b))));
            let tail = futures_util::stream::once(async move {
                tokio::time::sleep(stall).await;
                Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"}")))
            });
            let frames = futures_util::stream::iter(pieces).chain(tail);
            Response::new(StreamBody::new(frames).boxed_unsync())
        }
    })
    .await
}

/// The Content-Length case of `jwks.max_size` is auth.rs `a_jwks_over_its_size_bound_is_not_read`;
/// a fetch slower than `jwks.timeout` to start answering is auth.rs
/// `jwks_unreachable_at_start_is_503_then_recovers`.
#[tokio::test]
async fn a_jwks_streamed_past_max_size_or_dribbled_past_its_timeout_is_refused_with_503() {
    let signer = TestIssuer::start().await;
    let iss = signer.iss("partner");
    let token = signer.token(&signer.claims("partner"));
    for (pad, stall, status) in [
        (1024, Duration::ZERO, 200),
        (16 * 1024, Duration::ZERO, 503),
        (0, Duration::from_secs(5), 503),
    ] {
        let jwks = streaming_jwks(pad, stall).await;
        let gw = Gateway::start(&format!(
            "listen: 127.0.0.1:0
issuers:
  partner:
    issuer: {iss}
    jwks_uri: {}/jwks
    audiences: [{AUDIENCE}]
    jwks: {{ max_size: 8KiB, timeout: 500ms }}
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [partner] }}
",
            jwks.url()
        ))
        .await;
        let started = Instant::now();
        let res = support::client()
            .get(gw.url("/api"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        let case = format!("pad {pad}, stall {stall:?}");
        assert_eq!(res.status(), status, "{case}");
        if status == 503 {
            assert!(res.headers().contains_key("retry-after"), "{case}");
            assert_eq!(json(res).await["code"], "jwks_unavailable", "{case}");
            assert!(
                took < Duration::from_secs(4),
                "{case}: answered after {took:?}"
            );
        }
    }
}
