//! Connection-level bounds and request ids: slow heads, idle keep-alives, the connection limit,
//! `X-Request-Id`. Raw sockets where an ordinary client would hide what is tested.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, metric, poll_until, Gateway, Upstream};

const ECHO: &str =
    "  - name: e\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n";

fn yaml(limits: &str) -> String {
    format!("listen: 127.0.0.1:0\nlimits:\n{limits}routes:\n{ECHO}")
}

/// Reads until the peer closes (`Ok(bytes)`), bounded by `limit` (`Err` on timeout).
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Result<Vec<u8>, ()> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => Ok(out),
        Err(_) => Err(()),
    }
}

/// One keep-alive GET on `stream`; the answer's status.
async fn keep_alive_get(stream: &mut TcpStream, path: &str) -> u16 {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // The echo answer has a Content-Length: read the head, then exactly the body.
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = stream.read(&mut byte).await.unwrap();
        assert_eq!(n, 1, "closed mid-head: {}", String::from_utf8_lossy(&buf));
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.unwrap();
    support::raw_status(&head)
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_another_is_served() {
    let gw = Gateway::start(&yaml("  header_read_timeout: 500ms\n  idle_timeout: 30s\n")).await;
    let mut slow = TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // A byte at a time, each well within any per-read timeout, the head never complete.
    let dribble = tokio::spawn(async move {
        for _ in 0..40 {
            if slow.write_all(b"X-A: b\r\n").await.is_err() {
                return (slow, true);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (slow, false)
    });
    // Meanwhile, others are served.
    for _ in 0..3 {
        let answer = support::raw_get(gw.addr, "/other").await;
        assert_eq!(support::raw_status(&answer), 200);
    }
    let (mut slow, write_failed) = dribble.await.unwrap();
    if !write_failed {
        let rest = read_until_closed(&mut slow, Duration::from_secs(2)).await;
        assert!(rest.is_ok(), "the slow client is still connected after 4s");
    }
}

#[tokio::test]
async fn a_connection_that_says_nothing_is_closed_after_the_header_timeout() {
    let gw = Gateway::start(&yaml("  header_read_timeout: 300ms\n  idle_timeout: 30s\n")).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let closed = read_until_closed(&mut silent, Duration::from_secs(5)).await;
    assert_eq!(closed, Ok(Vec::new()), "closed without an answer");
}

#[tokio::test]
async fn an_idle_keep_alive_outlives_the_header_timeout_and_closes_after_idle_timeout() {
    let gw = Gateway::start(&yaml(
        "  header_read_timeout: 200ms\n  idle_timeout: 1500ms\n",
    ))
    .await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut conn, "/one").await, 200);
    // Idle for longer than the header timeout: still open, and still served.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(keep_alive_get(&mut conn, "/two").await, 200);
    // Then idle past idle_timeout: the gateway closes it, cleanly (no answer, EOF).
    let started = tokio::time::Instant::now();
    let closed = read_until_closed(&mut conn, Duration::from_secs(10)).await;
    assert_eq!(closed, Ok(Vec::new()));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "closed after {:?}, before idle_timeout",
        started.elapsed()
    );
}

/// Sends header lines one by one, each well within any per-read bound; returns whether the
/// gateway hung up meanwhile.
async fn dribble(conn: &mut TcpStream, lines: usize) -> bool {
    for _ in 0..lines {
        if conn.write_all(b"X-A: b\r\n").await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn a_second_head_dribbled_on_a_keep_alive_connection_is_cut_off_at_the_header_timeout() {
    let gw = Gateway::start(&yaml("  header_read_timeout: 300ms\n  idle_timeout: 30s\n")).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut conn, "/one").await, 200);
    // Idle past the header timeout first: the gateway's watchdog then waits towards the idle
    // bound, and must still judge the head that begins now by its own.
    tokio::time::sleep(Duration::from_millis(500)).await;
    conn.write_all(b"GET /two HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    if !dribble(&mut conn, 30).await {
        let rest = read_until_closed(&mut conn, Duration::from_secs(2)).await;
        assert!(
            rest.is_ok(),
            "still connected after {:?}",
            started.elapsed()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_partial_head_pipelined_behind_a_request_is_cut_off_once_that_request_is_answered() {
    let gw = Gateway::start(&yaml("  header_read_timeout: 300ms\n  idle_timeout: 30s\n")).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    // The second head's first bytes come in the same packet as the first request, and no
    // more after them: read (and buffered) before the first request is even served.
    conn.write_all(b"GET /one HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    // The first is answered; then, well before idle_timeout, the connection is closed.
    let rest = read_until_closed(&mut conn, Duration::from_secs(4)).await;
    let rest = rest.unwrap_or_else(|()| panic!("still connected after {:?}", started.elapsed()));
    let answered = String::from_utf8_lossy(&rest);
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    assert_eq!(answered.matches("HTTP/1.1 ").count(), 1, "{answered}");
}

#[tokio::test]
async fn a_long_request_is_not_idle() {
    // The upstream takes longer than idle_timeout to answer: the request still completes.
    let upstream = Upstream::serve(|_req| async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        http::Response::new(cryptr_gateway::body::full("late"))
    })
    .await;
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0\nlimits:\n  header_read_timeout: 200ms\n  idle_timeout: 400ms\nroutes:\n  - name: slow\n    match: {{ prefix: / }}\n    upstream: {}\n    auth: none\n",
        upstream.url()
    ))
    .await;
    let res = support::client().get(gw.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "late");
}

#[tokio::test]
async fn connections_over_the_limit_are_closed_at_once_and_counted() {
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0\nadmin: {{ listen: 127.0.0.1:0 }}\nlimits:\n  max_connections: 2\n  idle_timeout: 30s\nroutes:\n{ECHO}"
    ))
    .await;
    let mut a = TcpStream::connect(gw.addr).await.unwrap();
    let mut b = TcpStream::connect(gw.addr).await.unwrap();
    assert_eq!(keep_alive_get(&mut a, "/a").await, 200);
    assert_eq!(keep_alive_get(&mut b, "/b").await, 200);
    let shared = gw.shared.clone();
    poll_until(Duration::from_secs(5), "two open connections", || {
        shared.metrics.open_connections() == 2
    })
    .await;

    let mut third = TcpStream::connect(gw.addr).await.unwrap();
    let _ = third.write_all(b"GET /c HTTP/1.1\r\nHost: t\r\n\r\n").await;
    let answer = read_until_closed(&mut third, Duration::from_secs(5)).await;
    // Closed without an answer (a reset shows as an empty read here too).
    assert_eq!(answer.map(|b| b.len()), Ok(0));
    let text = gw.metrics().await;
    assert_eq!(
        metric(&text, "cryptr_gateway_connections_refused_total", ""),
        Some(1.0),
        "{text}"
    );

    // One closes: a new connection is served again.
    drop(a);
    poll_until(Duration::from_secs(5), "one connection left", || {
        shared.metrics.open_connections() == 1
    })
    .await;
    let answer = support::raw_get(gw.addr, "/d").await;
    assert_eq!(support::raw_status(&answer), 200);
    assert_eq!(keep_alive_get(&mut b, "/b2").await, 200);
}

#[tokio::test]
async fn a_sane_request_id_is_kept_end_to_end_and_others_are_replaced() {
    let upstream = Upstream::recording().await;
    let gw = Gateway::start(&support::config(&format!(
        "  - name: r\n    match: {{ prefix: / }}\n    upstream: {}\n    auth: none\n",
        upstream.url()
    )))
    .await;
    let client = support::client();

    let res = client
        .get(gw.url("/kept"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "client-id-42");
    assert_eq!(upstream.last().header("x-request-id"), Some("client-id-42"));

    let res = client.get(gw.url("/made")).send().await.unwrap();
    let made = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(made.len(), 32, "{made}");
    assert_eq!(upstream.last().header("x-request-id"), Some(made.as_str()));

    let res = client
        .get(gw.url("/replaced"))
        .header("x-request-id", "bad id; with spaces")
        .send()
        .await
        .unwrap();
    let replaced = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(replaced, "bad id; with spaces");
    assert_ne!(replaced, made);
    assert_eq!(
        upstream.last().header("x-request-id"),
        Some(replaced.as_str())
    );
}

#[tokio::test]
async fn the_gateways_own_errors_carry_the_request_id() {
    let gw = Gateway::start(&support::config(
        "  - name: e\n    match: { prefix: /api }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let res = support::client()
        .get(gw.url("/nowhere"))
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-request-id"], "trace-me");
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_idle_timeout() {
    // HTTP/2 has no head to wait for between requests: idleness alone ends it, with GOAWAY.
    let gw = Gateway::start(&yaml("  header_read_timeout: 200ms\n  idle_timeout: 1s\n")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let driver = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/h2", gw.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.version(), http::Version::HTTP_2);
    drop(res);
    let idle_from = tokio::time::Instant::now();
    // The gateway sends GOAWAY and closes: the client's connection task ends.
    let ended = tokio::time::timeout(Duration::from_secs(10), driver).await;
    assert!(
        ended.is_ok(),
        "the idle h2 connection is still open after 10s"
    );
    assert!(
        idle_from.elapsed() >= Duration::from_millis(700),
        "closed after {:?}, before idle_timeout",
        idle_from.elapsed()
    );
}

#[tokio::test]
async fn a_request_target_over_max_uri_length_is_414() {
    let gw = Gateway::start(&yaml("  max_uri_length: 100\n")).await;
    let long = format!("/{}", "a".repeat(120));
    let answer = support::raw_get(gw.addr, &long).await;
    assert_eq!(support::raw_status(&answer), 414);
    assert_eq!(support::raw_json(&answer)["code"], "uri_too_long");
    // The query counts too.
    let answer = support::raw_get(gw.addr, &format!("/a?{}", "q".repeat(120))).await;
    assert_eq!(support::raw_status(&answer), 414);
    let answer = support::raw_get(gw.addr, "/short?q=1").await;
    assert_eq!(support::raw_status(&answer), 200);
}

#[tokio::test]
async fn a_route_at_its_concurrency_limit_sheds_load_with_503_and_recovers() {
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    let upstream = Upstream::serve(move |_req| {
        let gate = gate.clone();
        async move {
            let _ = gate.acquire().await.map(|p| p.forget());
            http::Response::new(cryptr_gateway::body::full("done"))
        }
    })
    .await;
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0\nroutes:\n  - name: slow\n    match: {{ prefix: /slow }}\n    upstream: {}\n    auth: none\n    max_concurrent_requests: 2\n{ECHO}",
        upstream.url()
    ))
    .await;
    let held: Vec<_> = (0..2)
        .map(|i| {
            let url = gw.url(&format!("/slow/{i}"));
            tokio::spawn(async move { support::client().get(url).send().await.unwrap().status() })
        })
        .collect();
    let shared = gw.shared.clone();
    poll_until(Duration::from_secs(5), "two requests in flight", || {
        shared.metrics.requests_in_flight() == 2
    })
    .await;
    let res = support::client()
        .get(gw.url("/slow/3"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["retry-after"], "1");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["code"], "route_overloaded");
    // Other routes are not held up.
    let answer = support::raw_get(gw.addr, "/elsewhere").await;
    assert_eq!(support::raw_status(&answer), 200);

    release.add_permits(2);
    for h in held {
        assert_eq!(h.await.unwrap(), 200);
    }
    release.add_permits(1);
    let res = support::client()
        .get(gw.url("/slow/4"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
