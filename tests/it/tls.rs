//! TLS on both sides: the traffic listener serving `tls: { cert, key }` (h2 and http/1.1 by
//! ALPN, TLS 1.2 and 1.3), and `https://` upstreams verified against the webpki roots plus
//! `ca_file`, with SNI and, for upstreams that ask, a client certificate.
//!
//! Certificates are generated at test time with rcgen; the PEM files the config names live in a
//! per-test temporary folder.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cryptr_gateway::body;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::{ProtocolVersion, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

use crate::support::{self, Gateway, TempDir};

/// The bound of every wait in this file: generous, only there so a hang fails the test.
const BOUND: Duration = Duration::from_secs(10);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A throwaway certificate authority.
struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate a [`Ca`] signed, with its key, as PEM (for config files) and DER (for rustls).
struct Leaf {
    cert_pem: String,
    key_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }

    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A certificate for `names` (DNS names or IP addresses) good for `usage`.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert: cert.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }

    fn server(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client(&self) -> Leaf {
        self.issue(&["gateway.test"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

// ---------------------------------------------------------------------------------------------
// The traffic listener over TLS

/// A config serving TLS with `cert.pem` and `key.pem` (read from the config's folder), with
/// `extra` top-level lines and one route to `upstream`.
fn tls_listener_config(upstream: &str, extra: &str) -> String {
    format!(
        "listen: 127.0.0.1:0\ntls: {{ cert: cert.pem, key: key.pem }}\n{extra}routes:\n  - name: r\n    match: {{ prefix: / }}\n    upstream: {upstream}\n    auth: none\n"
    )
}

/// A gateway serving TLS with a certificate for `localhost` and 127.0.0.1 that `ca` signed.
async fn tls_gateway(dir: &TempDir, ca: &Ca, upstream: &str, extra: &str) -> Gateway {
    let leaf = ca.server(&["localhost", "127.0.0.1"]);
    dir.write("cert.pem", &leaf.cert_pem);
    dir.write("key.pem", &leaf.key_pem);
    let plan = support::plan_in(dir.path(), &tls_listener_config(upstream, extra), &[])
        .unwrap_or_else(|e| panic!("test config does not compile:\n{e}"));
    Gateway::start_plan(plan).await
}

/// A client trusting `ca` only, offering `alpn` and speaking `versions` of TLS.
fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Opens a TLS connection to `addr` for the name `localhost`.
async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from("localhost").unwrap();
    tokio::time::timeout(BOUND, connector.connect(name, tcp))
        .await
        .expect("the TLS handshake neither completed nor failed in time")
}

/// `GET path` on `tls`, over HTTP/2 if ALPN chose `h2`, else HTTP/1.1.
async fn get(tls: TlsStream<TcpStream>, path: &str) -> (Version, StatusCode, Bytes) {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
    let io = TokioIo::new(tls);
    let res = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("https://localhost{path}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        tokio::time::timeout(BOUND, send.send_request(req)).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::get(path)
            .header(http::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .unwrap();
        tokio::time::timeout(BOUND, send.send_request(req)).await
    };
    let res = res.expect("no answer in time").unwrap();
    let (version, status) = (res.version(), res.status());
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (version, status, body)
}

#[tokio::test]
async fn listener_serves_tls_with_h2_and_http1_by_alpn() {
    let ca = Ca::new("listener CA");
    let dir = TempDir::new("alpn");
    let up = support::Upstream::recording().await;
    let gw = tls_gateway(&dir, &ca, &up.url(), "").await;
    let both: &[&'static SupportedProtocolVersion] =
        &[&rustls::version::TLS13, &rustls::version::TLS12];

    let tls = tls_connect(gw.addr, client_config(&ca.der(), both, &[b"h2"]))
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(b"h2".as_slice()));
    let (version, status, body) = get(tls, "/over-h2").await;
    assert_eq!((version, status), (Version::HTTP_2, StatusCode::OK));
    assert_eq!(body, "ok");

    let tls = tls_connect(gw.addr, client_config(&ca.der(), both, &[b"http/1.1"]))
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(b"http/1.1".as_slice())
    );
    let (version, status, body) = get(tls, "/over-h1").await;
    assert_eq!((version, status), (Version::HTTP_11, StatusCode::OK));
    assert_eq!(body, "ok");

    // Each protocol version on its own, both ALPN protocols offered: the server prefers h2.
    for (version, wire) in [
        (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let tls = tls_connect(
            gw.addr,
            client_config(&ca.der(), &[version], &[b"h2", b"http/1.1"]),
        )
        .await
        .unwrap_or_else(|e| panic!("{wire:?}: {e}"));
        assert_eq!(tls.get_ref().1.protocol_version(), Some(wire));
        let (http, status, _) = get(tls, &format!("/{wire:?}")).await;
        assert_eq!(
            (http, status),
            (Version::HTTP_2, StatusCode::OK),
            "{wire:?}"
        );
    }

    let seen = up.requests();
    let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
    assert_eq!(targets, ["/over-h2", "/over-h1", "/TLSv1_2", "/TLSv1_3"]);
    for r in &seen {
        assert_eq!(r.header("x-forwarded-proto"), Some("https"), "{}", r.target);
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("renewed CA");
    let dir = TempDir::new("renewal");
    let old = old_ca.server(&["localhost"]);
    dir.write("cert.pem", &old.cert_pem);
    dir.write("key.pem", &old.key_pem);
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        tls_listener_config("builtin:echo", "admin: { listen: 127.0.0.1:0 }\n"),
    )
    .unwrap();
    let gw = Gateway::start_file(&config).await;
    let trusting = |ca: &Ca| client_config(&ca.der(), &[&rustls::version::TLS13], &[b"http/1.1"]);
    let tls = tls_connect(gw.addr, trusting(&old_ca)).await.unwrap();
    assert_eq!(get(tls, "/old").await.1, StatusCode::OK);

    // A renewal as cert-manager or certbot does it: new files, the config untouched.
    let renewed = new_ca.server(&["localhost"]);
    dir.write("key.pem.new", &renewed.key_pem);
    dir.write("cert.pem.new", &renewed.cert_pem);
    std::fs::rename(dir.path().join("key.pem.new"), dir.path().join("key.pem")).unwrap();
    std::fs::rename(dir.path().join("cert.pem.new"), dir.path().join("cert.pem")).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(tls) = tls_connect(gw.addr, trusting(&new_ca)).await {
            assert_eq!(get(tls, "/renewed").await.1, StatusCode::OK);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the renewed certificate is not served after 10s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tls_connect(gw.addr, trusting(&old_ca)).await.is_err());
}

/// Sends `garbage` on a fresh TCP connection and reads until the gateway closes it.
async fn send_garbage(addr: SocketAddr, garbage: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The gateway may close before it has read everything: a failed write is fine too.
    let _ = stream.write_all(garbage).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(BOUND, stream.read_to_end(&mut answer)).await;
    // An error (a reset) is a close as well.
    assert!(
        read.is_ok(),
        "the gateway kept a connection that sent {garbage:?}"
    );
    answer
}

#[tokio::test]
async fn listener_refuses_a_bad_client_hello_and_keeps_serving() {
    let ca = Ca::new("listener CA");
    let dir = TempDir::new("garbage");
    let gw = tls_gateway(&dir, &ca, "builtin:echo", "").await;
    let good = || client_config(&ca.der(), &[&rustls::version::TLS13], &[b"http/1.1"]);

    for garbage in [
        b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".as_slice(),
        &[0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00],
        &[0xff; 64],
    ] {
        let answer = send_garbage(gw.addr, garbage).await;
        assert!(
            !answer.starts_with(b"HTTP/"),
            "a plain HTTP answer on the TLS port: {:?}",
            String::from_utf8_lossy(&answer)
        );
        // The listener is still there.
        let tls = tls_connect(gw.addr, good()).await.unwrap();
        let (_, status, _) = get(tls, "/after-garbage").await;
        assert_eq!(status, StatusCode::OK);
    }

    // A client that trusts another CA refuses the gateway's certificate...
    let stranger = Ca::new("some other CA");
    let err = tls_connect(
        gw.addr,
        client_config(&stranger.der(), &[&rustls::version::TLS13], &[]),
    )
    .await
    .expect_err("a client that does not trust the CA completed the handshake");
    assert!(err.to_string().contains("certificate"), "{err}");
    // ...and the next one is served.
    let tls = tls_connect(gw.addr, good()).await.unwrap();
    let (_, status, _) = get(tls, "/after-stranger").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_after_header_read_timeout() {
    let ca = Ca::new("listener CA");
    let dir = TempDir::new("stall");
    let gw = tls_gateway(
        &dir,
        &ca,
        "builtin:echo",
        "limits: { header_read_timeout: 300ms }\n",
    )
    .await;
    // Half a ClientHello record header, then nothing.
    let mut stalled = TcpStream::connect(gw.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    // Meanwhile others are served.
    let tls = tls_connect(
        gw.addr,
        client_config(&ca.der(), &[&rustls::version::TLS13], &[b"h2"]),
    )
    .await
    .unwrap();
    assert_eq!(get(tls, "/x").await.1, StatusCode::OK);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(BOUND, stalled.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "a client that never finished its handshake kept its connection"
    );
    assert!(!rest.starts_with(b"HTTP/"), "{rest:?}");
}

/// Compiles `yaml` in `dir` and returns its errors as printed.
fn config_errors(dir: &TempDir, yaml: &str) -> Vec<cryptr_gateway::config::ConfigError> {
    match support::plan_in(dir.path(), yaml, &[]) {
        Ok(_) => panic!("compiled, but should not have:\n{yaml}"),
        Err(e) => e.0,
    }
}

/// The one error at `path`, after checking its printed form names the file, place and field.
fn single_error_at(
    errors: &[cryptr_gateway::config::ConfigError],
    path: &str,
) -> cryptr_gateway::config::ConfigError {
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = errors[0].clone();
    assert_eq!(e.path, path, "{e}");
    assert!(e.line.is_some() && e.column.is_some(), "{e}");
    let printed = e.to_string();
    assert!(
        printed.starts_with("test.yaml:") && printed.contains(&format!(": {path}: ")),
        "{printed}"
    );
    e
}

#[test]
fn tls_config_errors_name_the_field() {
    let ca = Ca::new("listener CA");
    let leaf = ca.server(&["localhost"]);
    let other = ca.server(&["localhost"]);
    let yaml = tls_listener_config("builtin:echo", "");

    // No cert file.
    let dir = TempDir::new("cfg-missing");
    dir.write("key.pem", &leaf.key_pem);
    let e = single_error_at(&config_errors(&dir, &yaml), "tls");
    assert!(e.message.contains("cannot read tls.cert"), "{e}");
    assert!(e.message.contains("cert.pem"), "{e}");

    // A key that belongs to another certificate.
    let dir = TempDir::new("cfg-mismatch");
    dir.write("cert.pem", &leaf.cert_pem);
    dir.write("key.pem", &other.key_pem);
    let e = single_error_at(&config_errors(&dir, &yaml), "tls");
    assert!(e.message.contains("do not make a usable pair"), "{e}");

    // A cert file that is not PEM.
    let dir = TempDir::new("cfg-not-pem");
    dir.write("cert.pem", "this is not a certificate\n");
    dir.write("key.pem", &leaf.key_pem);
    let e = single_error_at(&config_errors(&dir, &yaml), "tls");
    assert!(e.message.contains("holds no certificate"), "{e}");

    // A key file that is not PEM (here: a certificate).
    let dir = TempDir::new("cfg-key-not-key");
    dir.write("cert.pem", &leaf.cert_pem);
    dir.write("key.pem", &leaf.cert_pem);
    let e = single_error_at(&config_errors(&dir, &yaml), "tls");
    assert!(e.message.contains("holds no usable private key"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// https upstreams

/// One completed handshake as an HTTPS upstream saw it.
#[derive(Debug, Clone)]
struct Handshake {
    sni: Option<String>,
    /// Certificates the client presented (0: none).
    client_certs: usize,
}

/// An HTTPS upstream answering `secure ok`: the handshakes it completed and how many failed.
struct TlsUpstream {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Handshake>>>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsUpstream {
    /// Serves HTTP/1.1 with `config`.
    async fn start(mut config: rustls::ServerConfig) -> TlsUpstream {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let failed = Arc::new(AtomicUsize::new(0));
        let (seen, refused) = (handshakes.clone(), failed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let (seen, refused) = (seen.clone(), refused.clone());
                tokio::spawn(async move {
                    let tls = match acceptor.accept(stream).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            refused.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                    let conn = tls.get_ref().1;
                    seen.lock().unwrap().push(Handshake {
                        sni: conn.server_name().map(str::to_string),
                        client_certs: conn.peer_certificates().map_or(0, <[_]>::len),
                    });
                    let svc = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(Response::new(body::full("secure ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        TlsUpstream {
            addr,
            handshakes,
            failed,
            task,
        }
    }

    /// Presents `leaf` and asks for no client certificate.
    async fn plain(leaf: &Leaf) -> TlsUpstream {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .unwrap();
        TlsUpstream::start(config).await
    }

    /// Presents `leaf` and requires a client certificate that `client_ca` signed.
    async fn mutual(
        leaf: &Leaf,
        client_ca: &CertificateDer<'static>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> TlsUpstream {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(client_ca.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![leaf.cert.clone()], leaf.key.clone_key())
            .unwrap();
        TlsUpstream::start(config).await
    }

    fn handshakes(&self) -> Vec<Handshake> {
        self.handshakes.lock().unwrap().clone()
    }

    fn failed(&self) -> usize {
        self.failed.load(Ordering::SeqCst)
    }
}

/// A config with one `auth: none` route to `upstream` (a URL or an inline mapping).
fn upstream_config(upstream: &str) -> String {
    support::config(&format!(
        "  - name: secure\n    match: {{ prefix: / }}\n    upstream: {upstream}\n    auth: none\n"
    ))
}

fn config(port: u16, ca_file: Option<&str>) -> String {
    upstream_config(&match ca_file {
        Some(ca) => format!("{{ url: https://localhost:{port}, ca_file: {ca} }}"),
        None => format!("https://localhost:{port}"),
    })
}

/// Sends `GET /x` through `gw` and returns the status and the JSON `code` (if any).
async fn through(gw: &Gateway) -> (u16, String) {
    let res = support::client().get(gw.url("/x")).send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    if status == 200 {
        return (status, text);
    }
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("a {status} that is not JSON ({e}): {text}"));
    (
        status,
        json["code"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn https_upstream_is_verified_with_ca_file_and_sent_sni() {
    let ca = Ca::new("upstream CA");
    let dir = TempDir::new("ca-file");
    dir.write("ca.pem", &ca.pem());
    let up = TlsUpstream::plain(&ca.server(&["localhost"])).await;
    // `ca.pem` is relative: it is read from the config file's folder.
    let plan = support::plan_in(dir.path(), &config(up.addr.port(), Some("ca.pem")), &[]).unwrap();
    let gw = Gateway::start_plan(plan).await;
    assert_eq!(through(&gw).await, (200, "secure ok".to_string()));
    let names: Vec<Option<String>> = up.handshakes().into_iter().map(|h| h.sni).collect();
    assert_eq!(names, [Some("localhost".to_string())]);
}

#[tokio::test]
async fn https_upstream_with_an_unknown_ca_is_502() {
    let ca = Ca::new("upstream CA");
    let up = TlsUpstream::plain(&ca.server(&["localhost"])).await;
    let gw = Gateway::start(&config(up.addr.port(), None)).await;
    assert_eq!(
        through(&gw).await,
        (502, "upstream_unavailable".to_string())
    );
}

#[tokio::test]
async fn upstream_tls_uses_the_url_host_for_sni_and_verification() {
    let ca = Ca::new("upstream CA");
    let dir = TempDir::new("sni");
    dir.write("ca.pem", &ca.pem());
    // Issued for the name `localhost` only, not for the address 127.0.0.1.
    let up = TlsUpstream::plain(&ca.server(&["localhost"])).await;
    let port = up.addr.port();

    let by_name = upstream_config(&format!(
        "{{ url: https://localhost:{port}, ca_file: ca.pem }}"
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &by_name, &[]).unwrap()).await;
    assert_eq!(through(&gw).await, (200, "secure ok".to_string()));
    let sni: Vec<Option<String>> = up.handshakes().into_iter().map(|h| h.sni).collect();
    assert_eq!(sni, [Some("localhost".to_string())]);

    // Same server, same CA, reached by address: the certificate does not name it.
    let by_address = upstream_config(&format!(
        "{{ url: https://127.0.0.1:{port}, ca_file: ca.pem }}"
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &by_address, &[]).unwrap()).await;
    assert_eq!(
        through(&gw).await,
        (502, "upstream_unavailable".to_string())
    );
    // No request reached it that way (and an IP address is never sent as SNI).
    assert_eq!(up.handshakes().len(), 1);
}

/// A folder with `ca.pem` (trusting `server_ca`) and `client.pem`/`client.key` (signed by
/// `client_ca`).
fn mtls_dir(server_ca: &Ca, client_ca: &Ca) -> TempDir {
    let dir = TempDir::new("mtls");
    let client = client_ca.client();
    dir.write("ca.pem", &server_ca.pem());
    dir.write("client.pem", &client.cert_pem);
    dir.write("client.key", &client.key_pem);
    dir
}

#[tokio::test]
async fn upstream_mtls_presents_the_client_certificate() {
    let server_ca = Ca::new("upstream CA");
    let client_ca = Ca::new("client CA");
    let dir = mtls_dir(&server_ca, &client_ca);
    let leaf = server_ca.server(&["localhost"]);
    let up = TlsUpstream::mutual(
        &leaf,
        &client_ca.der(),
        &[&rustls::version::TLS13, &rustls::version::TLS12],
    )
    .await;
    let port = up.addr.port();

    let with_cert = upstream_config(&format!(
        "{{ url: https://localhost:{port}, ca_file: ca.pem, client_cert: client.pem, client_key: client.key }}"
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &with_cert, &[]).unwrap()).await;
    assert_eq!(through(&gw).await, (200, "secure ok".to_string()));
    let seen = up.handshakes();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].client_certs, 1, "{seen:?}");
    assert_eq!(seen[0].sni.as_deref(), Some("localhost"));
    assert_eq!(up.failed(), 0);

    // Without a client certificate the upstream refuses the handshake. Over TLS 1.3 the
    // client's side of the handshake is over before the server reads the (empty) certificate,
    // so the refusal arrives as an alert in place of the answer; it is still a connection that
    // could not be made: `upstream_unavailable`, as over TLS 1.2.
    let without = upstream_config(&format!(
        "{{ url: https://localhost:{port}, ca_file: ca.pem }}"
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &without, &[]).unwrap()).await;
    assert_eq!(
        through(&gw).await,
        (502, "upstream_unavailable".to_string())
    );
    support::poll_until(BOUND, "the upstream to refuse the handshake", || {
        up.failed() == 1
    })
    .await;
    assert_eq!(up.handshakes().len(), 1, "no new handshake completed");

    // Over TLS 1.2 the refusal ends the handshake itself: `upstream_unavailable`.
    let up12 = TlsUpstream::mutual(&leaf, &client_ca.der(), &[&rustls::version::TLS12]).await;
    let without = upstream_config(&format!(
        "{{ url: https://localhost:{}, ca_file: ca.pem }}",
        up12.addr.port()
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &without, &[]).unwrap()).await;
    assert_eq!(
        through(&gw).await,
        (502, "upstream_unavailable".to_string())
    );
    support::poll_until(BOUND, "the TLS 1.2 upstream to refuse", || {
        up12.failed() == 1
    })
    .await;
    // ...and the same upstream serves a gateway that presents its certificate.
    let with_cert = upstream_config(&format!(
        "{{ url: https://localhost:{}, ca_file: ca.pem, client_cert: client.pem, client_key: client.key }}",
        up12.addr.port()
    ));
    let gw = Gateway::start_plan(support::plan_in(dir.path(), &with_cert, &[]).unwrap()).await;
    assert_eq!(through(&gw).await, (200, "secure ok".to_string()));
    assert_eq!(up12.handshakes()[0].client_certs, 1);
}

#[test]
fn client_cert_without_key_is_a_config_error() {
    let dir = mtls_dir(&Ca::new("upstream CA"), &Ca::new("client CA"));
    for half in ["client_cert: client.pem", "client_key: client.key"] {
        let yaml = upstream_config(&format!(
            "{{ url: https://localhost:8443, ca_file: ca.pem, {half} }}"
        ));
        let e = single_error_at(&config_errors(&dir, &yaml), "routes[0].upstream");
        assert_eq!(
            e.message, "`client_cert` and `client_key` go together: give both or neither",
            "{half}"
        );
    }
}

#[test]
fn client_cert_on_a_plain_http_upstream_is_a_config_error() {
    let dir = mtls_dir(&Ca::new("upstream CA"), &Ca::new("client CA"));
    for upstream in [
        "{ url: http://127.0.0.1:8080, client_cert: client.pem, client_key: client.key }",
        "{ url: http://127.0.0.1:8080, ca_file: ca.pem }",
        "{ url: 'builtin:echo', client_cert: client.pem, client_key: client.key }",
    ] {
        let e = single_error_at(
            &config_errors(&dir, &upstream_config(upstream)),
            "routes[0].upstream",
        );
        assert!(
            e.message.contains("apply to https upstreams only"),
            "{upstream}: {e}"
        );
    }
}

#[test]
fn unreadable_client_identity_is_a_config_error() {
    let dir = mtls_dir(&Ca::new("upstream CA"), &Ca::new("client CA"));
    let yaml = upstream_config(
        "{ url: https://localhost:8443, client_cert: nope.pem, client_key: client.key }",
    );
    let e = single_error_at(&config_errors(&dir, &yaml), "routes[0].upstream");
    assert!(e.message.contains("cannot read client_cert"), "{e}");
    let yaml = upstream_config(
        "{ url: https://localhost:8443, client_cert: client.pem, client_key: ca.pem }",
    );
    let e = single_error_at(&config_errors(&dir, &yaml), "routes[0].upstream");
    assert!(e.message.contains("client_key"), "{e}");
    assert!(e.message.contains("holds no usable private key"), "{e}");
}
