//! A whole connection through the gateway: the fuzz bytes are what a client sends on one
//! connection, served by hyper (the server's own builder settings: HTTP/1.1, or HTTP/2 with
//! prior knowledge) calling `pipeline::handle` over a `tokio::io::duplex` pair, on a
//! current-thread runtime made once. The plan (`plans::pipeline`) has a public `builtin:echo`
//! route, token-protected routes whose issuers read their keys from files, CORS, and a real
//! HTTP upstream on loopback served by this process.
//!
//! The client half-closes after its bytes (the builder allows half-closed connections, so
//! the requests sent are all answered), and everything the gateway writes back is read.
//!
//! Invariants: no panic; the connection ends within 10 s of the client's last byte; the
//! gateway's own 5xx answers are only the documented upstream faults (`upstream_*`,
//! `route_overloaded`), never `jwks_unavailable` (keys come from files) nor anything caused
//! by client input; the public `/echo` upstream never sees an identity header, and the
//! `/whoami` upstream (`forward_authorization: false`) never sees an Authorization header.
#![no_main]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use cryptr_gateway::body::{self, Body};
use cryptr_gateway::config::Plan;
use cryptr_gateway::metrics::Metrics;
use cryptr_gateway::pipeline::{self, ConnInfo};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct State {
    rt: tokio::runtime::Runtime,
    plan: Arc<ArcSwap<Plan>>,
    metrics: Metrics,
}

/// The upstream behind `/up` and `acme.test`: reads the whole request, answers 200 with CORS
/// and hop-by-hop headers of its own (which the gateway must replace or drop).
async fn upstream(
    req: Request<Incoming>,
) -> Result<Response<http_body_util::Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let len = body
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    let text = format!("{} {} {len}", parts.method, parts.uri);
    let res = Response::builder()
        .header("content-type", "text/plain")
        .header("access-control-allow-origin", "*")
        .header("access-control-allow-credentials", "true")
        .header("keep-alive", "timeout=5")
        .header("x-upstream", "1")
        .body(http_body_util::Full::new(Bytes::from(text)))
        .unwrap();
    Ok(res)
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind the upstream");
        let port = listener.local_addr().unwrap().port();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(upstream))
                        .await;
                });
            }
        });
        let plan = {
            let _guard = rt.enter();
            common::plan(&common::plans::pipeline(port))
        };
        let plan = Arc::new(ArcSwap::from_pointee(plan));
        State {
            rt,
            metrics: Metrics::new(plan.clone()),
            plan,
        }
    })
}

/// The traffic listener's builder, as `server::connection_builder` and `Conn::serve` set it,
/// plus half-closed connections (see the module doc).
fn builder(plan: &Plan) -> auto::Builder<TokioExecutor> {
    let limits = &plan.limits;
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout.max(limits.header_read_timeout))
        .max_buf_size((limits.max_header_size * 2).max(16 * 1024))
        .max_headers(limits.max_headers * 2)
        .half_close(true);
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30))
        .max_header_list_size(u32::try_from(limits.max_header_size * 2).unwrap_or(u32::MAX));
    b
}

/// A 5xx the gateway itself answered, with its body.
type Faults = Arc<Mutex<Vec<(u16, String)>>>;

/// Checks an `/echo` or `/whoami` answer: what the built-in upstream saw.
fn check_echo(plan: &Plan, path: &str, json: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return;
    };
    let Some(headers) = v["headers"].as_object() else {
        return;
    };
    for name in headers.keys() {
        if path == "/echo" || path.starts_with("/echo/") {
            // `contains` reads `_` as `-` itself; the names came out of a header map, so they
            // parse as header names.
            let header = http::HeaderName::from_bytes(name.as_bytes());
            assert!(
                !header.is_ok_and(|h| plan.auth.identity_headers.contains(&h)),
                "the public echo upstream saw the identity header {name}"
            );
        }
        if path == "/whoami" {
            assert!(
                !name.eq_ignore_ascii_case("authorization"),
                "/whoami forwarded the token"
            );
        }
    }
}

async fn serve(st: &'static State, data: &[u8]) -> Vec<u8> {
    let plan = st.plan.load_full();
    let (client, server) = tokio::io::duplex(64 * 1024);
    let faults: Faults = Arc::default();
    let peer: SocketAddr = if data.len() % 2 == 0 {
        "127.0.0.1:40000".parse().unwrap() // a trusted proxy
    } else {
        "192.0.2.7:40000".parse().unwrap()
    };
    let info = ConnInfo::new(peer, "http");
    let service = {
        let plan = plan.clone();
        let faults = faults.clone();
        service_fn(move |req: Request<Incoming>| {
            let plan = plan.clone();
            let faults = faults.clone();
            let info = info.clone();
            async move {
                let path = cryptr_gateway::path::normalize(req.uri().path())
                    .map(|p| p.into_owned())
                    .ok();
                let res = pipeline::handle(&plan, Some(&st.metrics), &info, req).await;
                let status = res.status();
                let echoed = status.is_success()
                    && path
                        .as_deref()
                        .is_some_and(|p| p == "/echo" || p.starts_with("/echo/") || p == "/whoami");
                if !status.is_server_error() && !echoed {
                    return Ok::<Response<Body>, Infallible>(res);
                }
                let (parts, b) = res.into_parts();
                let bytes = b.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                if status.is_server_error() {
                    faults.lock().unwrap().push((
                        status.as_u16(),
                        String::from_utf8_lossy(&bytes).into_owned(),
                    ));
                } else {
                    check_echo(&plan, path.as_deref().unwrap_or(""), &bytes);
                }
                Ok(Response::from_parts(parts, body::full(bytes)))
            }
        })
    };
    let builder = builder(&plan);
    let conn = tokio::spawn(async move {
        let _ = builder
            .serve_connection(TokioIo::new(server), service)
            .await;
    });
    let (mut rd, mut wr) = tokio::io::split(client);
    let write = async {
        let _ = wr.write_all(data).await;
        let _ = wr.shutdown().await;
    };
    let mut out = Vec::new();
    let read = async {
        let _ = rd.read_to_end(&mut out).await;
    };
    let done = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(write, read);
        let _ = conn.await;
    })
    .await;
    assert!(
        done.is_ok(),
        "the connection did not end within 10 s of the client's last byte ({} bytes answered)",
        out.len()
    );
    for (status, body) in faults.lock().unwrap().iter() {
        let code = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["code"].as_str().map(str::to_string))
            .unwrap_or_default();
        assert!(
            matches!(
                code.as_str(),
                "upstream_unavailable" | "upstream_timeout" | "upstream_error" | "route_overloaded"
            ),
            "the gateway answered {status} {body}"
        );
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let st = state();
    let out = st.rt.block_on(serve(st, data));
    // `FUZZ_PRINT=1 .../pipeline artifact` shows what the gateway answered.
    if std::env::var_os("FUZZ_PRINT").is_some() {
        eprintln!("---- answered:\n{}\n----", String::from_utf8_lossy(&out));
    }
});
