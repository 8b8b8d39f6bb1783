//! What crosses the gateway: method, target, headers and bodies both ways, hop-by-hop removal,
//! the forwarding headers, Host, trailers and protocol versions.

use std::time::Duration;

use bytes::Bytes;
use cryptr_gateway::body::{self, Body};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{self, config, raw_get, raw_request, raw_status, Gateway, Upstream};

fn route_to(upstream: &Upstream, extra: &str) -> String {
    config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n{extra}",
        upstream.url()
    ))
}

#[tokio::test]
async fn method_target_headers_and_body_arrive_intact() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let res = support::client()
        .patch(gw.url("/api/items/7?x=1"))
        .header("x-custom", "a")
        .header("content-type", "application/json")
        .body(r#"{"k":"v"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got = up.last();
    assert_eq!(got.method, "PATCH");
    assert_eq!(got.target, "/api/items/7?x=1");
    assert_eq!(got.header("x-custom"), Some("a"));
    assert_eq!(got.header("content-type"), Some("application/json"));
    assert_eq!(got.header("content-length"), Some("9"));
    assert_eq!(got.body, r#"{"k":"v"}"#);
}

#[tokio::test]
async fn query_strings_pass_byte_for_byte() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    for query in [
        "a=%2F%2f&b=%E2%82%AC&c=a+b&&d=&e",
        "x=%zz%&y=%",
        "q=caf%C3%A9&q=%3Cscript%3E&sort=-name,+date",
        "=&==&a=b=c",
        "/path/like?query",
        "",
    ] {
        let answer = raw_get(gw.addr, &format!("/api/q?{query}")).await;
        assert_eq!(raw_status(&answer), 200, "{query}: {answer}");
        assert_eq!(up.last().target, format!("/api/q?{query}"));
    }
}

#[tokio::test]
async fn response_status_headers_and_body_come_back_intact() {
    let up = Upstream::recording_with(|_| {
        let mut res = Response::new(body::full("short and stout"));
        *res.status_mut() = StatusCode::IM_A_TEAPOT;
        let h = res.headers_mut();
        h.append("set-cookie", "a=1; Path=/".parse().unwrap());
        h.append("set-cookie", "b=2; HttpOnly".parse().unwrap());
        h.insert("x-response", "yes".parse().unwrap());
        h.insert("content-type", "text/plain".parse().unwrap());
        res
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 418);
    let cookies: Vec<_> = res.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);
    assert_eq!(res.headers()["x-response"], "yes");
    assert_eq!(res.headers()["content-type"], "text/plain");
    assert_eq!(res.headers()["via"], "1.1 cryptr-gateway");
    assert_eq!(res.text().await.unwrap(), "short and stout");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_from_the_request() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let answer = raw_request(
        gw.addr,
        b"GET /api HTTP/1.1\r\nHost: t\r\nConnection: close, X-Hop-One\r\nconnection: x-hop-TWO\r\n\
          X-HOP-ONE: 1\r\nx-hop-two: 2\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          TE: gzip\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eDp5\r\nX-End-To-End: kept\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    let got = up.last();
    for name in [
        "x-hop-one",
        "x-hop-two",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authorization",
    ] {
        assert_eq!(got.header(name), None, "{name} was forwarded");
    }
    // The upstream connection is the gateway's own (keep-alive): the client's `close` is not
    // passed on.
    assert_ne!(got.header("connection"), Some("close"));
    assert_eq!(got.header("x-end-to-end"), Some("kept"));
}

#[tokio::test]
async fn expect_continue_is_answered_by_the_gateway_not_passed_on() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let answer = raw_request(
        gw.addr,
        b"POST /api HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody",
    )
    .await;
    assert!(answer.contains("HTTP/1.1 200 OK"), "{answer}");
    let got = up.last();
    assert_eq!(got.header("expect"), None);
    assert_eq!(got.body, "body");
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_from_the_response() {
    let up = Upstream::recording_with(|_| {
        let mut res = Response::new(body::full("ok"));
        let h = res.headers_mut();
        h.insert("connection", "X-Resp-Hop".parse().unwrap());
        h.insert("x-resp-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authenticate", "Basic".parse().unwrap());
        h.insert("x-resp-kept", "yes".parse().unwrap());
        res
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    for name in ["x-resp-hop", "keep-alive", "proxy-authenticate"] {
        assert!(res.headers().get(name).is_none(), "{name} came back");
    }
    assert_eq!(res.headers()["x-resp-kept"], "yes");
}

#[tokio::test]
async fn untrusted_client_cannot_forge_its_forwarding_chain() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    support::client()
        .get(gw.url("/api"))
        .header("x-forwarded-for", "6.6.6.6")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "bank.example")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        // CGI-style servers (`HTTP_X_FORWARDED_FOR`) read these as the ones above.
        .header("x_forwarded_for", "6.6.6.6")
        .header("x_real_ip", "6.6.6.6")
        // IIS-fronted apps and old Symfony serve the path these name, not the routed one.
        .header("x-original-url", "/admin")
        .header("x-rewrite-url", "/admin")
        .send()
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(got.header("x_forwarded_for"), None);
    assert_eq!(got.header("x_real_ip"), None);
    assert_eq!(got.header("x-original-url"), None);
    assert_eq!(got.header("x-rewrite-url"), None);
    assert_eq!(got.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(got.header("x-forwarded-proto"), Some("http"));
    assert_eq!(
        got.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
    assert_eq!(got.header("forwarded"), None);
    assert_eq!(got.header("x-real-ip"), None);
    assert_eq!(got.header("via"), Some("1.1 cryptr-gateway"));
}

#[tokio::test]
async fn trusted_proxy_chain_is_appended_to() {
    let up = Upstream::recording().await;
    let yaml = route_to(&up, "").replace("routes:", "trusted_proxies: [127.0.0.0/8]\nroutes:");
    let gw = Gateway::start(&yaml).await;
    support::client()
        .get(gw.url("/api"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "api.example.com")
        .header("via", "1.1 edge")
        .header("x-original-url", "/admin")
        .send()
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(
        got.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(got.header("x-original-url"), None);
    assert_eq!(got.header("x-forwarded-proto"), Some("https"));
    assert_eq!(got.header("x-forwarded-host"), Some("api.example.com"));
    assert_eq!(got.header("via"), Some("1.1 edge, 1.1 cryptr-gateway"));
}

#[tokio::test]
async fn host_is_the_upstreams_unless_preserve_host() {
    let up = Upstream::recording().await;
    let yaml = config(&format!(
        "  - name: a\n    match: {{ prefix: /a }}\n    upstream: {u}\n    auth: none\n  - name: b\n    match: {{ prefix: /b }}\n    upstream: {u}\n    preserve_host: true\n    auth: none\n",
        u = up.url()
    ));
    let gw = Gateway::start(&yaml).await;
    let c = support::client();
    c.get(gw.url("/a"))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    let got = up.last();
    assert_eq!(got.header("host"), Some(up.addr.to_string().as_str()));
    assert_eq!(got.header("x-forwarded-host"), Some("api.example.com"));
    c.get(gw.url("/b"))
        .header("host", "api.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(up.last().header("host"), Some("api.example.com"));
    // An HTTP/1.0 client may send no Host: the upstream still gets one, its own.
    let answer = raw_request(gw.addr, b"GET /b HTTP/1.0\r\n\r\n").await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().header("host"), Some(up.addr.to_string().as_str()));
}

/// RFC 9112 section 3.2.2: with an absolute-form target, a proxy ignores the received `Host`
/// and forwards the target's host. Routes match on the target's host, so the upstream must see
/// that one too: a `Host` naming another virtual host must not ride along.
#[tokio::test]
async fn an_absolute_form_target_host_is_the_one_routed_on_and_forwarded() {
    let guarded = Upstream::recording().await;
    let public = Upstream::recording().await;
    let yaml = config(&format!(
        "  - name: admin\n    match: {{ host: admin.test, prefix: / }}\n    upstream: {}\n    auth: none\n  - name: www\n    match: {{ host: www.test, prefix: / }}\n    upstream: {}\n    preserve_host: true\n    auth: none\n",
        guarded.url(),
        public.url()
    ));
    let gw = Gateway::start(&yaml).await;
    let answer = raw_request(
        gw.addr,
        b"GET http://www.test:8080/x HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(guarded.count(), 0);
    let got = public.last();
    assert_eq!(got.target, "/x");
    assert_eq!(got.header("host"), Some("www.test:8080"));
    assert_eq!(got.header("x-forwarded-host"), Some("www.test:8080"));
    // A user in the target is no part of the host (RFC 9110 section 4.2.4).
    let answer = raw_request(
        gw.addr,
        b"GET http://u@www.test/y HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(public.last().header("host"), Some("www.test"));
    assert_eq!(guarded.count(), 0);
}

#[tokio::test]
async fn http2_prior_knowledge_clients_are_served_and_forwarded_as_http1() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let c = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let res = c
        .post(gw.url("/api/h2?z=1"))
        .body("over h2")
        .send()
        .await
        .unwrap();
    assert_eq!(res.version(), reqwest::Version::HTTP_2);
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok");
    let got = up.last();
    assert_eq!(got.version, http::Version::HTTP_11);
    assert_eq!(got.target, "/api/h2?z=1");
    assert_eq!(got.body, "over h2");
    assert_eq!(got.header("via"), Some("2 cryptr-gateway"));
    assert_eq!(
        got.header("x-forwarded-host"),
        Some(gw.addr.to_string().as_str())
    );
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    for i in 0..5 {
        let req = Request::get(format!("/api/{i}"))
            .header("host", "t")
            .body(body::empty())
            .unwrap();
        let res = sender.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap();
    }
    assert_eq!(up.count(), 5);
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_shared_by_routes_to_one_upstream() {
    let up = Upstream::recording().await;
    let yaml = config(&format!(
        "  - name: a\n    match: {{ prefix: /a }}\n    upstream: {u}\n    auth: none\n  - name: b\n    match: {{ prefix: /b }}\n    upstream: {u}\n    auth: none\n",
        u = up.url()
    ));
    let gw = Gateway::start(&yaml).await;
    // A new client connection each time: the gateway's side must still reuse its own.
    for i in 0..10 {
        let path = if i % 2 == 0 { "/a" } else { "/b" };
        let answer = raw_get(gw.addr, path).await;
        assert_eq!(raw_status(&answer), 200);
    }
    assert_eq!(up.count(), 10);
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn response_trailers_reach_a_client_that_asks_for_them() {
    let up = Upstream::serve(|req: Request<hyper::body::Incoming>| async move {
        // The gateway passes the client's `TE: trailers` on, and only then do trailers flow.
        let asked = req.headers().get("te").is_some_and(|v| v == "trailers");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-checksum", "abc123".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, cryptr_gateway::body::BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"payload"))),
            Ok(Frame::trailers(trailers)),
        ];
        let body: Body = StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync();
        let mut res = Response::new(body);
        res.headers_mut()
            .insert("trailer", "x-checksum".parse().unwrap());
        res.headers_mut()
            .insert("x-asked-for-trailers", asked.to_string().parse().unwrap());
        res
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/api/t")
        .header("host", "t")
        .header("te", "trailers")
        .body(body::empty())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.headers()["x-asked-for-trailers"], "true");
    let collected = res.into_body().collect().await.unwrap();
    let trailers = collected
        .trailers()
        .cloned()
        .expect("no trailers came through");
    assert_eq!(trailers["x-checksum"], "abc123");
    assert_eq!(collected.to_bytes(), "payload");
}

/// An upstream that reads one request per connection, writes `answer`, and hangs up
/// `linger` later; each hang-up is reported on the returned channel.
async fn one_answer_per_connection(
    answer: &'static [u8],
    linger: Duration,
) -> (Upstream, tokio::sync::mpsc::UnboundedReceiver<()>) {
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    let up = Upstream::raw(move |mut s| {
        let closed_tx = closed_tx.clone();
        async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(answer).await;
            tokio::time::sleep(linger).await;
            drop(s);
            let _ = closed_tx.send(());
        }
    })
    .await;
    (up, closed)
}

#[tokio::test]
async fn an_upstream_closing_an_idle_connection_costs_no_request() {
    // An answer in keep-alive form, then the upstream hangs up while the connection rests in
    // the gateway's pool: the gateway must notice when it next takes that connection, not
    // fail the next request with it.
    let (up, mut closed) = one_answer_per_connection(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        Duration::from_millis(30),
    )
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    for _ in 0..5 {
        let answer = raw_get(gw.addr, "/api").await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
        // The next request comes once the upstream has hung up on the pooled connection.
        tokio::time::timeout(Duration::from_secs(5), closed.recv())
            .await
            .expect("the upstream never hung up");
    }
    assert_eq!(up.connections(), 5);
}

#[tokio::test]
async fn answers_without_a_body_leave_the_connection_reusable() {
    let up = Upstream::serve(|req: Request<hyper::body::Incoming>| async move {
        let mut res = Response::new(body::empty());
        if req.method() != http::Method::HEAD {
            *res.status_mut() = StatusCode::NO_CONTENT;
        }
        res
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    for i in 0..6 {
        let method = if i % 2 == 0 { "HEAD" } else { "DELETE" };
        let answer = raw_request(
            gw.addr,
            format!("{method} /api HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(matches!(raw_status(&answer), 200 | 204), "{answer}");
    }
    assert_eq!(up.connections(), 1);
}

#[tokio::test]
async fn a_client_leaving_mid_body_never_leaves_a_half_read_connection_for_the_next() {
    // A long answer that the first client abandons: whatever of it was not read must not be
    // taken by the next request as its own answer.
    let up = Upstream::serve(|req: Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/api/long" {
            // Endless: it cannot have been read to its end by the time the client leaves.
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, cryptr_gateway::body::BoxError>(Frame::data(Bytes::from(vec![
                    b'x';
                    16 * 1024
                ])))
            });
            Response::new(StreamBody::new(chunks).boxed_unsync())
        } else {
            Response::new(body::full("short"))
        }
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let c = support::client();
    let res = c.get(gw.url("/api/long")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    drop(res);
    for _ in 0..3 {
        let res = c.get(gw.url("/api/short")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.text().await.unwrap(), "short");
    }
    assert_eq!(up.connections(), 2, "the abandoned connection was reused");
}

#[tokio::test]
async fn an_upstream_answering_connection_close_is_never_asked_again_on_that_connection() {
    // Every answer says `Connection: close`, and the upstream then waits a moment before it
    // hangs up: a connection put back in the pool would be written to before the close.
    let (up, _closed) = one_answer_per_connection(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        Duration::from_millis(200),
    )
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    for _ in 0..3 {
        let answer = raw_get(gw.addr, "/api").await;
        assert_eq!(raw_status(&answer), 200, "{answer}");
    }
    assert_eq!(up.connections(), 3);
}

#[tokio::test]
async fn a_body_streamed_in_many_pieces_arrives_whole_both_at_once_and_with_pauses() {
    // The upstream's pieces cross to the client's side over hyper's body channel, which
    // holds one piece at a time: each piece taken must let the connection read the next,
    // whether the pieces pour in or trickle. A lost wake-up would stall the answer until the
    // route's timeout (1 s here) cut it short.
    let up = Upstream::serve(|req: Request<hyper::body::Incoming>| async move {
        let pause = if req.uri().path() == "/api/trickle" {
            Duration::from_millis(3)
        } else {
            Duration::ZERO
        };
        let pieces = futures_util::stream::iter(0..200u32).then(move |i| async move {
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            Ok::<_, cryptr_gateway::body::BoxError>(Frame::data(Bytes::from(vec![
                b'a' + (i % 26)
                    as u8;
                1000 + i as usize
            ])))
        });
        Response::new(StreamBody::new(pieces).boxed_unsync())
    })
    .await;
    let expected: Vec<u8> = (0..200u32)
        .flat_map(|i| std::iter::repeat_n(b'a' + (i % 26) as u8, 1000 + i as usize))
        .collect();
    let gw = Gateway::start(&route_to(&up, "    timeout: 1s\n")).await;
    let c = support::client();
    for path in ["/api/pour", "/api/trickle", "/api/pour", "/api/trickle"] {
        let res = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let got = tokio::time::timeout(Duration::from_secs(10), res.bytes())
            .await
            .expect("the answer stalled")
            .unwrap_or_else(|e| panic!("{path}: cut short: {e}"));
        assert!(
            got[..] == expected[..],
            "{path}: {} bytes of {}",
            got.len(),
            expected.len()
        );
    }
    assert_eq!(up.connections(), 1, "the connection was not reused");
}

/// A client's trailer fields are not forwarded: an upstream that merges them into the header
/// section would take forged identity or forwarding headers from there. The body is intact.
#[tokio::test]
async fn request_trailers_are_not_forwarded() {
    let up = Upstream::serve(|req: Request<hyper::body::Incoming>| async move {
        let collected = req.into_body().collect().await.unwrap();
        let trailers = collected.trailers().map_or(0, http::HeaderMap::len);
        let mut res = Response::new(body::full(collected.to_bytes()));
        res.headers_mut()
            .insert("x-trailers", trailers.to_string().parse().unwrap());
        res
    })
    .await;
    let gw = Gateway::start(&route_to(&up, "")).await;
    let answer = raw_request(
        gw.addr,
        b"POST /api/t HTTP/1.1\r\nHost: t\r\nTrailer: X-Forwarded-For, X-User-Id\r\n\
Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\
X-Forwarded-For: 6.6.6.6\r\nX-User-Id: admin\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert!(answer.contains("x-trailers: 0"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
}
