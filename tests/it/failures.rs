//! Every failure has a clear answer in bounded time, and the gateway keeps serving.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cryptr_gateway::body::{self, BoxError};
use http::{Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{self, config, raw_get, raw_json, raw_request, raw_status, Gateway, Upstream};

fn route(url: &str, extra: &str) -> String {
    config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {url}\n    auth: none\n{extra}"
    ))
}

async fn json(res: reqwest::Response) -> serde_json::Value {
    res.json().await.unwrap()
}

#[tokio::test]
async fn closed_upstream_port_is_502_upstream_unavailable() {
    let port = support::closed_port().await;
    let gw = Gateway::start(&route(&format!("http://{port}"), "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let body = json(res).await;
    assert_eq!(body["code"], "upstream_unavailable");
    // What went wrong inside stays in the log, not in the answer.
    assert!(
        !body.to_string().contains(&port.port().to_string()),
        "{body}"
    );
}

#[tokio::test]
async fn slow_upstream_is_504_upstream_timeout() {
    let up = Upstream::serve(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(body::full("too late"))
    })
    .await;
    let gw = Gateway::start(&route(&up.url(), "    timeout: 300ms\n")).await;
    let started = Instant::now();
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 504);
    assert_eq!(json(res).await["code"], "upstream_timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn upstream_stalling_mid_body_is_cut_off() {
    let up = Upstream::serve(|_req: Request<Incoming>| async {
        let frames = futures_util::stream::iter([Ok::<_, BoxError>(Frame::data(
            Bytes::from_static(b"start"),
        ))])
        .chain(futures_util::stream::pending());
        Response::new(StreamBody::new(frames).boxed_unsync())
    })
    .await;
    let gw = Gateway::start(&route(&up.url(), "    timeout: 300ms\n")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    support::assert_cut_after(res, "start").await;
}

use futures_util::StreamExt;

#[tokio::test]
async fn body_over_max_body_is_413_before_anything_is_sent() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route(&up.url(), "    max_body: 1KiB\n")).await;
    let res = support::client()
        .post(gw.url("/api"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(json(res).await["code"], "body_too_large");
    assert_eq!(up.count(), 0);
    // At the limit is fine.
    let res = support::client()
        .post(gw.url("/api"))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn chunked_body_growing_over_max_body_is_413() {
    for upstream in [
        "builtin:echo".to_string(),
        Upstream::recording().await.url(),
    ] {
        let gw = Gateway::start(&route(&upstream, "    max_body: 1KiB\n")).await;
        let chunks = futures_util::stream::iter(
            (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 512]))),
        );
        let res = support::client()
            .post(gw.url("/api"))
            .body(reqwest::Body::wrap_stream(chunks))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 413, "{upstream}");
        assert_eq!(json(res).await["code"], "body_too_large");
    }
}

#[tokio::test]
async fn oversized_or_too_many_headers_are_431() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    let big = "a".repeat(40 * 1024);
    let answer = raw_request(
        gw.addr,
        format!("GET /api HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(
        raw_status(&answer),
        431,
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_eq!(raw_json(&answer)["code"], "headers_too_large");
    // The default `max_headers` (100) is also hyper's bound, so that hyper keeps its header
    // slots on the stack: one line over it gets hyper's own 431, which has no JSON body. The
    // gateway's JSON 431 for a count is in limits.rs
    // `limits_max_headers_bounds_the_number_of_header_lines_at_its_configured_value`.
    let answer = raw_request(gw.addr, support::request_with_header_lines(99).as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    let answer = raw_request(gw.addr, support::request_with_header_lines(150).as_bytes()).await;
    assert_eq!(raw_status(&answer), 431, "{answer}");
    assert_eq!(up.count(), 0);
    let answer = raw_request(gw.addr, support::request_with_header_lines(98).as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn upstream_answering_garbage_is_502_and_never_hangs() {
    let up = Upstream::raw(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"this is not http at all\r\n\r\n").await;
    })
    .await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(json(res).await["code"], "upstream_error");
}

/// An upstream whose answer has one header line of `size` bytes, and a short body.
async fn upstream_with_a_header_of(size: usize) -> Upstream {
    Upstream::raw(move |mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 2\r\n\r\nok",
            "a".repeat(size)
        );
        let _ = s.write_all(head.as_bytes()).await;
        let _ = s.read(&mut buf).await;
    })
    .await
}

// The upstream's read buffer is bounded (64 KiB, what a connection streaming a large answer
// holds): a response head far over it is a 502, never a hang (hyper's default buffer, 400 KiB,
// took this one); one that fits passes whole.
#[tokio::test]
async fn upstream_head_over_the_read_buffer_is_502_and_one_under_it_passes() {
    let up = upstream_with_a_header_of(200 * 1024).await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(json(res).await["code"], "upstream_error");

    let up = upstream_with_a_header_of(40 * 1024).await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-big"].len(), 40 * 1024);
    assert_eq!(res.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn upstream_closing_without_an_answer_is_502() {
    let up = Upstream::raw(|mut s| async move {
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).await;
        drop(s);
    })
    .await;
    let gw = Gateway::start(&route(&up.url(), "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 502);
}

#[tokio::test]
async fn upstream_dying_mid_response_fails_that_response_only() {
    let up = Upstream::raw(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
            .await;
        drop(s);
    })
    .await;
    let gw = Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n  - name: ok\n    match: {{ prefix: /ok }}\n    upstream: builtin:echo\n    auth: none\n",
        up.url()
    )))
    .await;
    let c = support::client();
    // The head is passed on as soon as it arrives, so the failure shows in the body; unless
    // the upstream's death is read before the head was flushed, and then the head is never
    // sent. Either way, the client must see a failure, never a complete answer.
    match c.get(gw.url("/api")).send().await {
        Ok(res) => {
            assert_eq!(res.status(), 200);
            assert!(
                res.bytes().await.is_err(),
                "a truncated body looked complete"
            );
        }
        Err(e) => assert!(!e.is_timeout(), "{e}"),
    }
    assert_eq!(c.get(gw.url("/ok")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn unknown_route_and_malformed_requests_get_clear_answers() {
    let gw = Gateway::start(&route("builtin:echo", "")).await;
    let answer = raw_get(gw.addr, "/nope").await;
    assert_eq!(raw_status(&answer), 404);
    assert_eq!(raw_json(&answer)["code"], "route_not_found");
    let answer = raw_request(
        gw.addr,
        b"OPTIONS * HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
    let answer = raw_request(gw.addr, b"NOT HTTP\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 400, "{answer}");
}

#[tokio::test]
async fn client_too_slow_to_send_its_head_is_disconnected() {
    let gw = Gateway::start(&format!(
        "limits: {{ header_read_timeout: 300ms }}\n{}",
        route("builtin:echo", "")
    ))
    .await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET /api HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    // Meanwhile others are served.
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a client that never finished its head kept its connection"
    );
}
