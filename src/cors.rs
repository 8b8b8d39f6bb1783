//! CORS at the gateway: preflights answered here, every answer to an allowed origin decorated,
//! so upstreams need no CORS code of their own.
//!
//! Written here rather than with tower-http's `CorsLayer`: that layer answers a preflight
//! before routing (we answer it for the route the *requested* method would reach), cannot
//! decorate answers produced outside its service (our own 401s, 404s and 502s), and keeps the
//! upstream's own CORS headers; the policy values are still precomputed the way it does.

use std::collections::HashSet;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, ACCESS_CONTROL_ALLOW_CREDENTIALS,
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body};

static REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
static ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// A serialised origin per the Fetch standard: scheme, host, port (always explicit here).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]`; `None` for `null`, paths, or anything else.
    pub fn parse(s: &str) -> Option<Origin> {
        let (scheme, rest) = s.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = if rest.starts_with('[') {
            let end = rest.find(']')?;
            let port = match &rest[end + 1..] {
                "" => default_port,
                p => p.strip_prefix(':')?.parse().ok()?,
            };
            (&rest[..=end], port)
        } else {
            match rest.rsplit_once(':') {
                Some((h, p)) => (h, p.parse().ok()?),
                None => (rest, default_port),
            }
        };
        if host.is_empty() {
            return None;
        }
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl std::fmt::Display for OriginPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://*{}:{}", self.scheme, self.suffix, self.port)
    }
}

/// `https://*.example.com[:port]`: exactly one label in place of `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPattern {
    scheme: String,
    /// `.example.com`
    suffix: String,
    port: u16,
}

impl OriginPattern {
    pub fn parse(s: &str) -> Option<OriginPattern> {
        let (scheme, rest) = s.split_once("://")?;
        let rest = rest.strip_prefix("*.")?;
        // Parse the rest as an origin to reuse the port and host rules.
        let o = Origin::parse(&format!("{scheme}://{rest}"))?;
        if o.host.starts_with('[') {
            return None;
        }
        Some(OriginPattern {
            scheme: o.scheme,
            suffix: format!(".{}", o.host),
            port: o.port,
        })
    }

    fn matches(&self, o: &Origin) -> bool {
        o.scheme == self.scheme
            && o.port == self.port
            && o.host
                .strip_suffix(&self.suffix)
                .is_some_and(|label| !label.is_empty() && !label.contains('.') && label != "*")
    }
}

/// Which origins a policy allows.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    pub any: bool,
    pub exact: HashSet<Origin>,
    pub patterns: Vec<OriginPattern>,
}

impl Origins {
    /// The Origin header allowed? `null` (sandboxed pages, file://) never is.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
            return false;
        };
        self.any || self.exact.contains(&origin) || self.patterns.iter().any(|p| p.matches(&origin))
    }
}

/// A compiled CORS policy: checks and ready header values, read only on the request path.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    pub origins: Origins,
    pub methods: Vec<Method>,
    /// Lower-case names; `any_header` stands for `*`, which never covers `authorization`.
    pub headers: HashSet<String>,
    pub any_header: bool,
    pub allow_credentials: bool,
    pub allow_private_network: bool,
    pub allow_methods: HeaderValue,
    pub allow_headers: Option<HeaderValue>,
    pub expose_headers: Option<HeaderValue>,
    pub max_age: Option<HeaderValue>,
}

/// A CORS preflight: OPTIONS with `Origin` and `Access-Control-Request-Method`.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    headers
        .get(ACCESS_CONTROL_REQUEST_METHOD)
        .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
}

impl CorsPolicy {
    /// The gateway's answer to a preflight: 204, with the `Access-Control-Allow-*` headers only
    /// when origin, method and headers are all allowed, so the browser blocks anything else.
    pub fn preflight(&self, headers: &HeaderMap, method: &Method) -> Response<Body> {
        let mut res = Response::new(body::empty());
        *res.status_mut() = StatusCode::NO_CONTENT;
        let out = res.headers_mut();
        merge_vary(
            out,
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        );
        let Some(origin) = headers.get(ORIGIN).filter(|o| self.origins.allows(o)) else {
            return res;
        };
        if !self.methods.contains(method) {
            return res;
        }
        let requested: Vec<String> = headers
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        let header_ok =
            |h: &String| self.headers.contains(h) || (self.any_header && h != "authorization");
        if !requested.iter().all(header_ok) {
            return res;
        }
        let wants_private = headers
            .get(&REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
        if wants_private && !self.allow_private_network {
            return res;
        }
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        match (&self.allow_headers, self.any_header) {
            // With `*`, name exactly what was asked: a literal `*` is not honoured with
            // credentials, and never stands for Authorization.
            (_, true) if !requested.is_empty() => {
                if let Ok(v) = HeaderValue::from_str(&requested.join(", ")) {
                    out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
                }
            }
            (Some(v), _) => {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
            }
            _ => {}
        }
        if let Some(v) = &self.max_age {
            out.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        if self.allow_credentials {
            out.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if wants_private {
            out.insert(
                ALLOW_PRIVATE_NETWORK.clone(),
                HeaderValue::from_static("true"),
            );
        }
        res
    }

    /// Decorates an actual answer for a request from `origin`: the upstream's CORS headers are
    /// replaced by ours when the origin is allowed, removed when it is not.
    pub fn decorate(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        strip_cors(headers);
        let Some(origin) = origin else { return };
        merge_vary(headers, "Origin");
        if !self.origins.allows(origin) {
            return;
        }
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.allow_credentials {
            headers.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose_headers {
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

fn strip_cors(headers: &mut HeaderMap) {
    for name in [
        &ACCESS_CONTROL_ALLOW_ORIGIN,
        &ACCESS_CONTROL_ALLOW_CREDENTIALS,
        &ACCESS_CONTROL_EXPOSE_HEADERS,
        &ACCESS_CONTROL_ALLOW_METHODS,
        &ACCESS_CONTROL_ALLOW_HEADERS,
        &ACCESS_CONTROL_MAX_AGE,
        &ALLOW_PRIVATE_NETWORK,
    ] {
        headers.remove(name);
    }
}

/// Adds each of `names` (comma-separated) to `Vary` unless it is there already or `Vary: *`.
fn merge_vary(headers: &mut HeaderMap, names: &str) {
    let existing: Vec<String> = headers
        .get_all(VARY)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    if existing.iter().any(|t| t == "*") {
        return;
    }
    let mut merged = existing.clone();
    for name in names.split(',').map(str::trim) {
        if !merged.iter().any(|t| t.eq_ignore_ascii_case(name)) {
            merged.push(name.to_string());
        }
    }
    if merged.len() != existing.len() {
        if let Ok(v) = HeaderValue::from_str(&merged.join(", ")) {
            headers.insert(VARY, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    fn origins(exact: &[&str], patterns: &[&str]) -> Origins {
        Origins {
            any: false,
            exact: exact.iter().map(|o| Origin::parse(o).unwrap()).collect(),
            patterns: patterns
                .iter()
                .map(|p| OriginPattern::parse(p).unwrap())
                .collect(),
        }
    }

    #[test]
    fn origins_compare_by_scheme_host_and_port() {
        let o = origins(&["http://localhost:8080", "https://app.example.com"], &[]);
        assert!(o.allows(&origin("http://localhost:8080")));
        assert!(o.allows(&origin("HTTP://LOCALHOST:8080")));
        assert!(o.allows(&origin("https://app.example.com:443")));
        assert!(!o.allows(&origin("http://localhost:8081")));
        assert!(!o.allows(&origin("https://localhost:8080")));
        assert!(!o.allows(&origin("http://app.example.com")));
        assert!(!o.allows(&origin("null")));
        assert!(!o.allows(&origin("http://localhost:8080/path")));
    }

    #[test]
    fn patterns_take_exactly_one_label_and_no_suffix_tricks() {
        let o = origins(&[], &["https://*.example.com"]);
        assert!(o.allows(&origin("https://app.example.com")));
        assert!(o.allows(&origin("https://a-b.example.com:443")));
        assert!(!o.allows(&origin("https://example.com")));
        assert!(!o.allows(&origin("https://a.b.example.com")));
        assert!(!o.allows(&origin("https://evil-example.com")));
        assert!(!o.allows(&origin("https://evilexample.com")));
        assert!(!o.allows(&origin("https://app.example.com.evil.io")));
        assert!(!o.allows(&origin("http://app.example.com")));
        assert!(!o.allows(&origin("https://app.example.com:8443")));
        assert!(!o.allows(&origin("null")));
        let ported = origins(&[], &["http://*.localhost:3000"]);
        assert!(ported.allows(&origin("http://app.localhost:3000")));
    }

    #[test]
    fn vary_is_merged_not_replaced() {
        let mut h = HeaderMap::new();
        h.insert(VARY, origin("Accept-Encoding"));
        merge_vary(&mut h, "Origin");
        assert_eq!(h[VARY], "Accept-Encoding, Origin");
        merge_vary(&mut h, "origin");
        assert_eq!(h[VARY], "Accept-Encoding, Origin");
        let mut star = HeaderMap::new();
        star.insert(VARY, origin("*"));
        merge_vary(&mut star, "Origin");
        assert_eq!(star[VARY], "*");
    }
}
