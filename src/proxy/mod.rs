//! Forwarding to HTTP(S) upstreams: one connection pool per upstream (the private `pool`
//! module), bounded waits, and the mapping of what can go wrong on the way to a
//! [`GatewayError`].

mod pool;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::uri::Scheme;
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, LengthLimitError};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::body::{Body, BoxError};
use crate::error::GatewayError;
use crate::tls::UpstreamTls;

use pool::{Pool, PooledBody, SendError};

/// An `http://` or `https://` upstream: where it is, and its own connection pool.
pub struct HttpUpstream {
    url: String,
    /// The URL's path without its trailing `/` (`""` for none): prefixed to every request path.
    base_path: String,
    /// `Host` sent upstream unless the route has `preserve_host`.
    host_header: HeaderValue,
    pool: Arc<Pool>,
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstream")
            .field("url", &self.url)
            .finish()
    }
}

/// Settings shared by every upstream's connections.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub connect_timeout: Duration,
}

impl HttpUpstream {
    /// Parses `url` and sets up its connection pool; errors are sentences for `check` to print.
    pub fn new(url: &str, tls: &UpstreamTls, settings: &ClientSettings) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL ({e}); expected `http://host:port[/path]`, `https://...` or `builtin:NAME`"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => {
                return Err(format!(
                    "`{url}` has no http or https scheme; expected `http://host:port[/path]`, `https://...` or `builtin:{}`",
                    crate::upstream::Builtin::NAMES.join("|")
                ))
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .filter(|a| !a.host().is_empty())
            .ok_or_else(|| format!("`{url}` names no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}` carries credentials; put them in a header instead"
            ));
        }
        if uri.query().is_some() {
            return Err(format!(
                "`{url}` has a query string; an upstream URL may only have a path"
            ));
        }
        if !tls.is_empty() && scheme != Scheme::HTTPS {
            return Err(
                "`ca_file`, `client_cert` and `client_key` apply to https upstreams only".into(),
            );
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| format!("`{url}` has a host that cannot be a Host header"))?;
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| format!("`{url}` is not a URL ({e})"))?;
        Ok(HttpUpstream {
            url: url.to_string(),
            base_path,
            host_header,
            pool: Arc::new(Pool::new(
                build_connector(tls, settings)?,
                target,
                settings.connect_timeout,
            )),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    /// The request target sent upstream: base path, then `path`, then the query. When that
    /// is the client's own target (`original`), its bytes are shared, not parsed again (a
    /// new target is validated byte by byte: 700 instructions a request).
    pub(crate) fn uri_for(
        &self,
        original: &Uri,
        path: &str,
        query: Option<&str>,
    ) -> Result<Uri, GatewayError> {
        if let Some(pq) = original.path_and_query() {
            if self.base_path.is_empty() && pq.path() == path && pq.query() == query {
                return Ok(Uri::from(pq.clone()));
            }
        }
        origin_form(&self.base_path, path, query)
            .map_err(|e| GatewayError::UpstreamProtocol(e.into()))
    }

    /// Sends `req` and, once its body is sent, waits at most `timeout` for the answer to
    /// start; the answer's body then streams with the same `timeout` between two pieces.
    /// While the client's body is still coming, the body's own bound between pieces applies,
    /// not this one: a long, steady upload is not the upstream being slow. `max_body` says
    /// which limit a body that grew too large crossed.
    pub(crate) async fn forward(
        &self,
        req: Request<Body>,
        timeout: Duration,
        max_body: u64,
    ) -> Result<Response<Body>, GatewayError> {
        let (req, sent) = if http_body::Body::is_end_stream(req.body()) {
            (req, None)
        } else {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            (req.map(|b| SignalEnd::new(b, tx).boxed_unsync()), Some(rx))
        };
        let answer = self.pool.send(req);
        tokio::pin!(answer);
        if let Some(sent) = sent {
            tokio::select! {
                // The upstream may answer before the body is all sent (an early 413, say).
                early = &mut answer => return self.finish(early, timeout, max_body),
                // Sent, or dropped by hyper on a failure: either way the clock starts now.
                _ = sent => {}
            }
        }
        match tokio::time::timeout(timeout, answer).await {
            Err(_) => Err(GatewayError::UpstreamTimeout),
            Ok(res) => self.finish(res, timeout, max_body),
        }
    }

    /// The upstream's answer, or why there is none; its body bounded between pieces, and
    /// driving the connection it arrives on.
    fn finish(
        &self,
        res: Result<(Response<hyper::body::Incoming>, Box<pool::Conn>), SendError>,
        timeout: Duration,
        max_body: u64,
    ) -> Result<Response<Body>, GatewayError> {
        let (res, conn) = res.map_err(|e| classify(e, max_body))?;
        Ok(res.map(|b| {
            crate::body::GapTimeout::new(PooledBody::new(b, conn, self.pool.clone()), timeout)
                .boxed_unsync()
        }))
    }
}

/// A request body that says when it has been sent in full (or dropped).
struct SignalEnd {
    inner: Body,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl SignalEnd {
    fn new(inner: Body, done: tokio::sync::oneshot::Sender<()>) -> SignalEnd {
        SignalEnd {
            inner,
            done: Some(done),
        }
    }
}

impl http_body::Body for SignalEnd {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, BoxError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        if let std::task::Poll::Ready(None) = polled {
            if let Some(done) = self.done.take() {
                let _ = done.send(());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request target in origin form: `prefix`, then `path`, then the query byte for byte.
pub(crate) fn origin_form(
    prefix: &str,
    path: &str,
    query: Option<&str>,
) -> Result<Uri, http::Error> {
    let mut pq = String::with_capacity(prefix.len() + path.len() + 1 + query.map_or(0, str::len));
    pq.push_str(prefix);
    pq.push_str(path);
    if let Some(q) = query {
        pq.push('?');
        pq.push_str(q);
    }
    Uri::builder().path_and_query(pq).build()
}

fn build_connector(
    tls: &UpstreamTls,
    settings: &ClientSettings,
) -> Result<pool::Connector, String> {
    // SNI and certificate checks use the upstream URL's host (hyper-rustls does both).
    let tls = crate::tls::client_config(tls)?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(settings.connect_timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Which side failed, read from the error's chain: our limit on the client's body, the client's
/// body itself, the connection to the upstream, or the upstream's answer.
fn classify(err: SendError, max_body: u64) -> GatewayError {
    let err = match err {
        SendError::Connect(e) => return GatewayError::UpstreamUnavailable(e),
        SendError::Exchange(e) => e,
    };
    if tls_refused(&err) {
        return GatewayError::UpstreamUnavailable(err.into());
    }
    match body_fault(&err) {
        Some(BodyFault::TooLarge) => GatewayError::BodyTooLarge { limit: max_body },
        Some(BodyFault::Client) => GatewayError::ClientBody(err.into()),
        None => GatewayError::UpstreamProtocol(err.into()),
    }
}

/// The upstream's TLS refused us with an alert. In TLS 1.3 a server checks a client
/// certificate after the client's side of the handshake is done, so a refused (or missing)
/// client certificate arrives as the first read: it is still a connection that could not be
/// made, not an answer that went wrong.
fn tls_refused(err: &(dyn StdError + 'static)) -> bool {
    chain(err).any(|e| {
        let tls = e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        matches!(tls, Some(rustls::Error::AlertReceived(_)))
    })
}

/// Maps an error read from a client's body (in a built-in upstream) to its answer.
pub(crate) fn client_body_error(err: BoxError, max_body: u64) -> GatewayError {
    match body_fault(err.as_ref()) {
        Some(BodyFault::TooLarge) => GatewayError::BodyTooLarge { limit: max_body },
        _ => GatewayError::ClientBody(err),
    }
}

enum BodyFault {
    TooLarge,
    Client,
}

fn body_fault(err: &(dyn StdError + 'static)) -> Option<BodyFault> {
    // Our limit sits below hyper's "user body" error in the chain, so look for it first.
    if chain(err).any(|e| e.is::<LengthLimitError>()) {
        return Some(BodyFault::TooLarge);
    }
    // hyper reports a failing request body as a user error: the fault is the client's.
    chain(err)
        .any(|e| {
            e.downcast_ref::<hyper::Error>()
                .is_some_and(hyper::Error::is_user)
        })
        .then_some(BodyFault::Client)
}

fn chain<'e>(
    err: &'e (dyn StdError + 'static),
) -> impl Iterator<Item = &'e (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |e: &&'e (dyn StdError + 'static)| (*e).source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_sent_upstream_is_the_same_whether_shared_or_rebuilt() {
        let settings = ClientSettings {
            connect_timeout: Duration::from_secs(1),
        };
        let tls = UpstreamTls::default();
        let bare = HttpUpstream::new("http://up:8080", &tls, &settings).unwrap();
        let based = HttpUpstream::new("http://up:8080/v2/", &tls, &settings).unwrap();
        let cases: [(&str, &str, &str); 5] = [
            // client's target, path after normalising/stripping, expected with /v2 base
            ("/a/b?x=1&y", "/a/b", "/v2/a/b?x=1&y"),
            ("/a/b", "/a/b", "/v2/a/b"),
            ("/a/./b?q", "/a/b", "/v2/a/b?q"),
            ("/api/items", "/items", "/v2/items"),
            ("http://elsewhere/a?z", "/a", "/v2/a?z"),
        ];
        for (target, path, with_base) in cases {
            let original: Uri = target.parse().unwrap();
            let query = original.query();
            let expected = origin_form("", path, query).unwrap();
            assert_eq!(
                bare.uri_for(&original, path, query).unwrap(),
                expected,
                "{target}"
            );
            assert_eq!(
                based.uri_for(&original, path, query).unwrap().to_string(),
                with_base,
                "{target}"
            );
        }
    }
}
