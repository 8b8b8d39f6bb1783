//! The floor of the gateway's stack, for the benchmark: hyper and Tokio passing HTTP/1.1
//! requests to one upstream and nothing else. No route, no token, no header removed, no
//! timeout, no pool (each client connection has one upstream connection of its own, the
//! cheapest pairing there is); the gateway's allocator, and its runtime with `--workers 1`.
//! Not a proxy anyone should run: a measure of what hyper and Tokio cost on this machine
//! before the gateway does any of its work.
//!
//! With `--headers` it also adds the headers the gateway adds to a request on a public route
//! (`X-Forwarded-For`, `-Proto`, `-Host`, `Via`, `X-Request-Id`, and `Host` set to the
//! upstream's) and to its answer (`Via`, `X-Request-Id`), with values made once per
//! connection: what those headers cost on the wire, in hyper, the upstream and the client,
//! apart from what the gateway spends deciding them.
//!
//! Usage: `floor-proxy [--headers] LISTEN UPSTREAM` (both `host:port`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, HOST, VIA};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let headers = args.first().is_some_and(|a| a == "--headers");
    if headers {
        args.remove(0);
    }
    let (Some(listen), Some(upstream), None) = (
        args.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        args.get(2),
    ) else {
        eprintln!("usage: floor-proxy [--headers] LISTEN UPSTREAM (both host:port)");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::bind(listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("floor-proxy: cannot listen on {listen}: {e}");
                return ExitCode::FAILURE;
            }
        };
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        tokio::spawn(serve(stream, peer, upstream, headers));
                    }
                    Err(e) => eprintln!("floor-proxy: accept: {e}"),
                }
            }
        });
        // Until SIGTERM, then a normal exit: a build instrumented for profile-guided
        // optimisation writes its counts at exit (bench/floor.sh).
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("floor-proxy: cannot wait for SIGTERM: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// One client connection, forwarded request by request over one upstream connection.
async fn serve(client: TcpStream, peer: SocketAddr, upstream: SocketAddr, headers: bool) {
    let _ = client.set_nodelay(true);
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = up.set_nodelay(true);
    let Ok((sender, connection)) = hyper::client::conn::http1::handshake(TokioIo::new(up)).await
    else {
        return;
    };
    tokio::spawn(connection);
    let added = headers.then(|| Added::new(peer, upstream)).map(Arc::new);
    // An HTTP/1.1 server connection serves one request at a time: the lock is never contended.
    let sender: Arc<Mutex<SendRequest<Incoming>>> = Arc::new(Mutex::new(sender));
    let service = service_fn(move |mut req: Request<Incoming>| {
        let sender = sender.clone();
        let added = added.clone();
        async move {
            if let Some(added) = &added {
                added.to_request(&mut req);
            }
            let answer = {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(req)
            };
            let mut res: Response<Incoming> = answer.await?;
            if let Some(added) = &added {
                added.to_response(&mut res);
            }
            Ok::<_, hyper::Error>(res)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}

/// The gateway's added headers, their values made once.
struct Added {
    client_ip: HeaderValue,
    upstream_host: HeaderValue,
    via: HeaderValue,
    request_id: HeaderValue,
}

impl Added {
    fn new(peer: SocketAddr, upstream: SocketAddr) -> Added {
        let value = |s: String| HeaderValue::from_str(&s).unwrap_or(HeaderValue::from_static("-"));
        Added {
            client_ip: value(peer.ip().to_string()),
            upstream_host: value(upstream.to_string()),
            via: HeaderValue::from_static("1.1 cryptr-gateway"),
            // The gateway's form: 16 hex digits of a random prefix, 16 of a counter.
            request_id: HeaderValue::from_static("3f9a0c4e7d21b6580000000000000001"),
        }
    }

    fn to_request<B>(&self, req: &mut Request<B>) {
        let h = req.headers_mut();
        h.insert(X_FORWARDED_FOR, self.client_ip.clone());
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        if let Some(host) = h.insert(HOST, self.upstream_host.clone()) {
            h.insert(X_FORWARDED_HOST, host);
        }
        h.insert(VIA, self.via.clone());
        h.insert(X_REQUEST_ID, self.request_id.clone());
    }

    fn to_response<B>(&self, res: &mut Response<B>) {
        let h = res.headers_mut();
        h.insert(VIA, self.via.clone());
        h.insert(X_REQUEST_ID, self.request_id.clone());
    }
}
