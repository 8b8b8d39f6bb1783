//! `https://` upstreams: verified against the webpki roots plus `ca_file`, with SNI.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use cryptr_gateway::body;
use http::Response;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use crate::support::{self, Gateway};

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A throwaway CA and a `localhost` certificate it signed.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cryptr-gateway test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: leaf.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    }
}

/// An HTTPS upstream that answers `secure ok` and remembers the SNI of each handshake.
async fn tls_upstream(pki: &Pki) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let names = Arc::new(Mutex::new(Vec::new()));
    let seen = names.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                if let Some(name) = tls.get_ref().1.server_name() {
                    seen.lock().unwrap().push(name.to_string());
                }
                let svc = service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(Response::new(body::full("secure ok")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, names)
}

fn config(port: u16, ca_file: Option<&str>) -> String {
    let upstream = match ca_file {
        Some(ca) => format!("{{ url: https://localhost:{port}, ca_file: {ca} }}"),
        None => format!("https://localhost:{port}"),
    };
    support::config(&format!(
        "  - name: secure\n    match: {{ prefix: / }}\n    upstream: {upstream}\n    auth: none\n"
    ))
}

#[tokio::test]
async fn https_upstream_is_verified_with_ca_file_and_sent_sni() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("cryptr-gateway-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
    let (addr, names) = tls_upstream(&pki).await;
    // `ca.pem` is relative: it is read from the config file's folder.
    let plan = support::plan_in(&dir, &config(addr.port(), Some("ca.pem")), &[]).unwrap();
    let gw = Gateway::start_plan(plan).await;
    let res = support::client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "secure ok");
    assert_eq!(names.lock().unwrap().as_slice(), ["localhost"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn https_upstream_with_an_unknown_ca_is_502() {
    let pki = pki();
    let (addr, _) = tls_upstream(&pki).await;
    let gw = Gateway::start(&config(addr.port(), None)).await;
    let res = support::client().get(gw.url("/x")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["code"], "upstream_unavailable");
}
