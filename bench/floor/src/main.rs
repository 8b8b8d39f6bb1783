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
//! With `--rsa PUBLIC_KEY_PEM` it also checks the RS256 signature of each request's bearer
//! token with that key, with aws-lc as the gateway does, and nothing else of the token (no
//! header, claim, issuer or cache): the least any proxy on this stack pays for a token it has
//! not seen. A token that fails ends the connection without an answer (the benchmark sends
//! good ones only).
//!
//! Usage: `floor-proxy [--headers] [--rsa PUBLIC_KEY_PEM] LISTEN UPSTREAM` (both `host:port`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use aws_lc_rs::signature::{ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue, AUTHORIZATION, HOST, VIA};
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

const USAGE: &str =
    "usage: floor-proxy [--headers] [--rsa PUBLIC_KEY_PEM] LISTEN UPSTREAM (both host:port)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut headers, mut rsa, mut addrs) = (false, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--headers" => headers = true,
            "--rsa" => match args.next().map(|path| Rsa::load(&path)) {
                Some(Ok(key)) => rsa = Some(Arc::new(key)),
                Some(Err(e)) => {
                    eprintln!("floor-proxy: {e}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => addrs.push(arg),
        }
    }
    let (Some(listen), Some(upstream), None) = (
        addrs.first().and_then(|a| a.parse::<SocketAddr>().ok()),
        addrs.get(1).and_then(|a| a.parse::<SocketAddr>().ok()),
        addrs.get(2),
    ) else {
        eprintln!("{USAGE}");
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
                        tokio::spawn(serve(stream, peer, upstream, headers, rsa.clone()));
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
async fn serve(
    client: TcpStream,
    peer: SocketAddr,
    upstream: SocketAddr,
    headers: bool,
    rsa: Option<Arc<Rsa>>,
) {
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
        let rsa = rsa.clone();
        async move {
            if rsa.as_ref().is_some_and(|rsa| !rsa.accepts(&req)) {
                return Err(Refused::BadToken);
            }
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
            Ok::<_, Refused>(res)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(client), service)
        .await;
}

/// Why a request got no answer.
#[derive(Debug)]
enum Refused {
    Upstream(hyper::Error),
    BadToken,
}

impl From<hyper::Error> for Refused {
    fn from(e: hyper::Error) -> Refused {
        Refused::Upstream(e)
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Upstream(e) => write!(f, "upstream: {e}"),
            Refused::BadToken => f.write_str("the token's signature does not verify"),
        }
    }
}

impl std::error::Error for Refused {}

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

/// `--rsa`: the public key each bearer token's RS256 signature is checked with.
struct Rsa(ParsedPublicKey);

impl Rsa {
    /// The key from a PEM file (`SubjectPublicKeyInfo`, as `openssl pkey -pubout` writes it).
    fn load(path: &str) -> Result<Rsa, String> {
        let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD
            .decode(base64.trim())
            .map_err(|e| format!("{path}: not a PEM file: {e}"))?;
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(Rsa)
            .map_err(|e| format!("{path}: not an RSA public key: {e}"))
    }

    /// Whether the request's bearer token is signed by this key (RS256): the signature over
    /// everything before its last dot, decoded on the stack as the gateway does.
    fn accepts<B>(&self, req: &Request<B>) -> bool {
        let Some(token) = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        else {
            return false;
        };
        let Some(dot) = token.iter().rposition(|&b| b == b'.') else {
            return false;
        };
        let (input, signature) = (&token[..dot], &token[dot + 1..]);
        let mut buf = [0u8; 1024];
        match URL_SAFE_NO_PAD.decode_slice(signature, &mut buf) {
            Ok(n) => buf
                .get(..n)
                .is_some_and(|sig| self.0.verify_sig(input, sig).is_ok()),
            Err(_) => false,
        }
    }
}
