//! TLS on both sides, rustls on aws-lc-rs.
//!
//! - Client side (upstreams and JWKS fetches): the webpki roots built in (so a container needs
//!   no CA bundle), plus any extra CA a user names, and a client certificate for upstreams
//!   that ask for one.
//! - Server side (the traffic listener): a certificate chain and key, TLS 1.2 and 1.3, ALPN
//!   `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What an upstream connection's TLS trusts and presents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct UpstreamTls {
    /// Extra CA certificates (PEM), trusted with the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain and key (PEM), for upstreams that require mTLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
}

impl UpstreamTls {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_identity.is_none()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} `{}` is not PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} `{}` holds no certificate", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| {
        format!(
            "{what} `{}` holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}",
            path.display()
        )
    })
}

/// A client config trusting the webpki roots and the certificates of `tls.ca_file`, and
/// presenting `tls.client_identity` when the server asks.
pub(crate) fn client_config(tls: &UpstreamTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &tls.ca_file {
        for cert in read_certs(path, "ca_file")? {
            roots
                .add(cert)
                .map_err(|e| format!("ca_file `{}`: {e}", path.display()))?;
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    match &tls.client_identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = read_certs(cert, "client_cert")?;
            let key = read_key(key, "client_key")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client_cert and client_key do not make a pair: {e}"))
        }
    }
}

/// The traffic listener's TLS: built from `cert` and `key` at start and at every reload.
#[derive(Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The files' bytes as loaded, so a reload can tell a renewed certificate.
    loaded: Vec<u8>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads and checks the pair; errors are sentences for `check` to print.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<ServerTls, String> {
        let loaded = ServerTls::read_files(&cert, &key);
        let chain = read_certs(&cert, "tls.cert")?;
        let private = read_key(&key, "tls.key")?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| format!("tls.cert and tls.key do not make a usable pair: {e}"))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ServerTls {
            cert,
            key,
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            loaded,
        })
    }

    fn read_files(cert: &Path, key: &Path) -> Vec<u8> {
        let mut bytes = std::fs::read(cert).unwrap_or_default();
        bytes.extend(std::fs::read(key).unwrap_or_default());
        bytes
    }

    /// True when the certificate or key files no longer hold what was loaded (a renewal).
    pub fn files_changed(&self) -> bool {
        ServerTls::read_files(&self.cert, &self.key) != self.loaded
    }
}
