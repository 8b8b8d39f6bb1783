//! Routes and how a request picks one: ordered, first match wins.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderMap, Method};

use crate::config::Plan;
use crate::error::GatewayError;
use crate::upstream::Upstream;

/// How a route matches the (normalised) request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    /// The path equals this, byte for byte.
    Exact(String),
    /// The path is this or continues it at a segment boundary: `/api` matches `/api` and
    /// `/api/x`, never `/apix`. `/` matches every path.
    Prefix(String),
}

impl PathMatch {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatch::Exact(p) => path == p,
            PathMatch::Prefix(p) => prefix_matches(p, path),
        }
    }

    /// True when every path that `other` matches, this matches too.
    pub fn covers(&self, other: &PathMatch) -> bool {
        match (self, other) {
            (PathMatch::Exact(a), PathMatch::Exact(b)) => a == b,
            (PathMatch::Exact(_), PathMatch::Prefix(_)) => false,
            (PathMatch::Prefix(a), PathMatch::Exact(b) | PathMatch::Prefix(b)) => {
                prefix_matches(a, b)
            }
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            PathMatch::Exact(p) | PathMatch::Prefix(p) => p,
        }
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/'),
        None => false,
    }
}

/// What auth a route requires.
#[derive(Debug)]
pub enum Auth {
    /// Public: no token is looked at.
    None,
    /// A token from one of the route's issuers.
    Token(Box<crate::auth::RouteAuth>),
}

/// One compiled route: read-only on the request path.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// `name`, for metrics.
    pub label: crate::metrics::RouteLabel,
    pub path: PathMatch,
    /// `None`: every method.
    pub methods: Option<Vec<Method>>,
    /// Lower-case host name without port; `None`: every host.
    pub host: Option<String>,
    pub upstream: Upstream,
    pub auth: Auth,
    /// `None`: the gateway does no CORS here (the upstream's own headers pass untouched).
    pub cors: Option<Arc<crate::cors::CorsPolicy>>,
    pub strip_prefix: bool,
    pub preserve_host: bool,
    /// How long the upstream may take to start answering, and to send each next piece.
    pub timeout: Duration,
    pub max_body: u64,
    /// Requests of this route in flight at once (from forwarding to the end of the response
    /// body). Default 1024; over it, 503 `route_overloaded`.
    pub concurrency: Concurrency,
}

impl Route {
    fn matches_target(&self, host: Option<&str>, path: &str) -> bool {
        self.path.matches(path)
            && match &self.host {
                None => true,
                Some(h) => host.is_some_and(|host| host.eq_ignore_ascii_case(h)),
            }
    }

    fn allows(&self, method: &Method) -> bool {
        match &self.methods {
            None => true,
            Some(methods) => methods.contains(method),
        }
    }

    /// True when this route catches every request `later` would, so `later` is never reached.
    pub fn shadows(&self, later: &Route) -> bool {
        let host = self.host.is_none() || self.host == later.host;
        let methods = match (&self.methods, &later.methods) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(a), Some(b)) => b.iter().all(|m| a.contains(m)),
        };
        host && methods && self.path.covers(&later.path)
    }

    /// The path to send upstream for the request path `path` (already matched).
    pub fn upstream_path<'p>(&self, path: &'p str) -> &'p str {
        match (&self.path, self.strip_prefix) {
            (PathMatch::Prefix(p), true) => {
                let rest = path.get(p.trim_end_matches('/').len()..).unwrap_or("");
                if rest.is_empty() {
                    "/"
                } else {
                    rest
                }
            }
            _ => path,
        }
    }
}

/// Picks the first route that matches; a path that routes match but none for this method is a
/// 405 naming the methods they take, so a caller learns more than "not found".
pub(crate) fn select<'a>(
    routes: &'a [Arc<Route>],
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Result<&'a Arc<Route>, GatewayError> {
    let route = first_match(routes, method, host, path)?;
    // Tomcat, Jetty and Spring drop a segment's `;parameters` before they route: a path that
    // would reach another route without them (`/api;x/secret` past a route for `/api`) is
    // refused, so that no upstream resolves it to a path another route guards.
    if let Some(bare) = crate::path::without_parameters(path) {
        if !first_match(routes, method, host, &bare).is_ok_and(|r| Arc::ptr_eq(r, route)) {
            return Err(GatewayError::InvalidPath(
                crate::path::PathError::ParametersChangeRoute,
            ));
        }
    }
    Ok(route)
}

/// Where frameworks read a method that replaces the request's own: Express's method-override
/// and Symfony (`X-HTTP-Method-Override`), OData (`X-HTTP-Method`), others (`X-Method-Override`);
/// with their names as the error says them. `None`: no such header.
fn method_override_header(name: &HeaderName) -> Option<&'static str> {
    // Called for each of the request's few headers. Callgrind, release build: the whole check
    // took about 200 instructions a request this way, about 900 with a hashed lookup of each
    // of these names and the query always scanned.
    match name.as_str() {
        "x-http-method-override" => Some("X-HTTP-Method-Override header"),
        "x-http-method" => Some("X-HTTP-Method header"),
        "x-method-override" => Some("X-Method-Override header"),
        _ => None,
    }
}

/// The query parameter Express (`methodOverride('_method')`), Symfony and Laravel read.
const METHOD_OVERRIDE_PARAMETER: &str = "_method query parameter";

/// The request's own method, when it has lower-case letters.
const LOWER_CASE_METHOD: &str = "lower-case method";

/// An upstream that honours a method override serves the request as the method it names: a
/// `POST` that routes match for a public route would reach its upstream as the `DELETE` a later
/// route guards. Where routes match on methods, a request whose every override would reach the
/// route it reached is forwarded as it is; one whose override would be routed elsewhere, or
/// nowhere, is refused, and so is an override that names no method (what an upstream makes of it
/// cannot be known). An override in a form body (Rails, Laravel) is beyond a gateway that does
/// not read bodies: README says so. Django, Flask (Werkzeug) and Symfony read the request's own
/// method in upper case, so `delete` is their `DELETE` though not the routes' (methods are
/// case-sensitive, RFC 9110 section 9.1): a method with lower-case letters is held to the
/// same rule. Where no route matches on methods (`Plan::routes_by_method`), no method can
/// change the route, and nothing is looked for.
pub(crate) fn check_method_override(
    plan: &Plan,
    route: &Arc<Route>,
    method: &Method,
    host: Option<&str>,
    path: &str,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<(), GatewayError> {
    if !plan.routes_by_method {
        return Ok(());
    }
    let routes = &plan.routes;
    let own = method.as_str();
    let upper = own.bytes().any(|b| b.is_ascii_lowercase()).then(|| {
        let upper = Method::from_bytes(own.to_ascii_uppercase().as_bytes()).ok();
        (LOWER_CASE_METHOD, upper)
    });
    for (source, method) in upper.into_iter().chain(method_overrides(headers, query)) {
        let same = method
            .is_some_and(|m| select(routes, &m, host, path).is_ok_and(|r| Arc::ptr_eq(r, route)));
        if !same {
            return Err(GatewayError::MethodOverride(source));
        }
    }
    Ok(())
}

/// Every method the request's override headers and `_method` query parameters name, each with
/// where it was found; `None` for a name that is no method. A value is a comma-separated list
/// (Node joins repeated headers with commas and takes the first; PHP takes the last: all are
/// read), each read as frameworks read it: trimmed, in upper case. Empty ones name nothing.
fn method_overrides(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Vec<(&'static str, Option<Method>)> {
    let mut found = Vec::new();
    let mut read = |source: &'static str, value: &[u8]| {
        for one in value.split(|b| *b == b',') {
            let one = one.trim_ascii();
            if !one.is_empty() {
                found.push((source, Method::from_bytes(&one.to_ascii_uppercase()).ok()));
            }
        }
    };
    for (name, value) in headers {
        if let Some(source) = method_override_header(name) {
            read(source, value.as_bytes());
        }
    }
    // `_method`, spelt in plain letters or percent-encoded: no query without either holds it.
    let query = query.filter(|q| q.contains("method") || q.contains('%'));
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // As PHP names it: decoded, leading spaces dropped, then `.` and ` ` read as `_`
        // (so `.method` is `_method`).
        let key = form_decode(key);
        let start = key.iter().position(|b| *b != b' ').unwrap_or(key.len());
        let key = &key[start..];
        let named = key.len() == b"_method".len()
            && key
                .iter()
                .zip(b"_method")
                .all(|(k, m)| k == m || (*m == b'_' && *k == b'.'));
        if named {
            read(METHOD_OVERRIDE_PARAMETER, &form_decode(value));
        }
    }
    found
}

/// A query component as form decoding reads it: `+` is a space, then percent-decoded.
fn form_decode(text: &str) -> Cow<'_, [u8]> {
    if !text.bytes().any(|b| b == b'+' || b == b'%') {
        return Cow::Borrowed(text.as_bytes());
    }
    let spaced = text.replace('+', " ");
    Cow::Owned(percent_encoding::percent_decode_str(&spaced).collect())
}

/// The first route for this method, host and path, as the path is written.
fn first_match<'a>(
    routes: &'a [Arc<Route>],
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Result<&'a Arc<Route>, GatewayError> {
    let mut allowed: Vec<Method> = Vec::new();
    for route in routes {
        if !route.matches_target(host, path) {
            continue;
        }
        if route.allows(method) {
            return Ok(route);
        }
        for m in route.methods.iter().flatten() {
            if !allowed.contains(m) {
                allowed.push(m.clone());
            }
        }
    }
    if allowed.is_empty() {
        Err(GatewayError::RouteNotFound)
    } else {
        Err(GatewayError::MethodNotAllowed(allowed))
    }
}

/// The route whose CORS policy answers a preflight asking for `method`: the one that method
/// would reach, or else the first for this host and path (a method no route takes is then
/// answered without any `Access-Control-Allow-*`).
pub(crate) fn preflight_target<'a>(
    routes: &'a [Arc<Route>],
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Option<&'a Arc<Route>> {
    select(routes, method, host, path)
        .ok()
        .or_else(|| routes.iter().find(|r| r.matches_target(host, path)))
}

/// What is wrong with the request's `Host`, if anything (RFC 9112 section 3.2): an HTTP/1.1
/// request carries exactly one, and a `Host` is a host with an optional port. Routes match on
/// it and a `preserve_host` upstream sees it, so a request that could be read as addressed to
/// two hosts, or to none, is refused, as nginx, HAProxy and Envoy refuse it. HTTP/1.0 may omit
/// it; HTTP/2 carries `:authority`, which hyper has already checked.
pub(crate) fn host_problem(
    version: http::Version,
    headers: &http::HeaderMap,
) -> Option<&'static str> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) if version == http::Version::HTTP_11 => {
            Some("an HTTP/1.1 request must carry a Host header")
        }
        (Some(_), Some(_)) => Some("the request carries more than one Host header"),
        (Some(host), None) if !valid_host(host.as_bytes()) => {
            Some("the Host header is not a host with an optional port")
        }
        _ => None,
    }
}

/// `uri-host [ ":" port ]` of RFC 3986: a registered name (percent-encoding allowed), an IPv4
/// address or a bracketed IP literal, then digits. Empty is valid too (RFC 9110 section 7.2).
/// By hand: `http::uri::Authority` copies the value on every parse and accepts userinfo
/// (`user@host`), which a `Host` must not carry.
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = if let Some(literal) = host.strip_prefix(b"[") {
        let Some(end) = literal.iter().position(|b| *b == b']') else {
            return false;
        };
        let (inside, rest) = literal.split_at(end);
        let ip_chars = |b: &u8| b.is_ascii_hexdigit() || b":.".contains(b);
        let future_chars = |b: &u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:".contains(b);
        let ip_literal = !inside.is_empty()
            && (inside.iter().all(ip_chars)
                || (inside[0].eq_ignore_ascii_case(&b'v') && inside.iter().all(future_chars)));
        if !ip_literal {
            return false;
        }
        // Past the `]`: nothing, or a port.
        match &rest[1..] {
            [] => return true,
            [b':', port @ ..] => (&[][..], port),
            _ => return false,
        }
    } else {
        match host.iter().position(|b| *b == b':') {
            Some(colon) => (&host[..colon], &host[colon + 1..]),
            None => (host, &[][..]),
        }
    };
    let name_char = |b: &u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(b);
    name.iter().all(name_char) && port.iter().all(u8::is_ascii_digit)
}

/// The host a request is addressed to, without port: the URI's authority (HTTP/2, absolute
/// form) or else the `Host` header.
pub(crate) fn request_host<'a>(
    uri: &'a http::Uri,
    headers: &'a http::HeaderMap,
) -> Option<&'a str> {
    let raw = match uri.host() {
        Some(h) => h,
        None => headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = if raw.starts_with('[') {
        // An IPv6 literal keeps its brackets and loses its port.
        raw.split_inclusive(']').next().unwrap_or(raw)
    } else {
        raw.split(':').next().unwrap_or(raw)
    };
    Some(host.trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_matches_on_segment_boundaries_only() {
        let p = PathMatch::Prefix("/api".into());
        assert!(p.matches("/api"));
        assert!(p.matches("/api/"));
        assert!(p.matches("/api/x/y"));
        assert!(!p.matches("/apix"));
        assert!(!p.matches("/ap"));
        assert!(!p.matches("/"));
        let root = PathMatch::Prefix("/".into());
        assert!(root.matches("/"));
        assert!(root.matches("/anything"));
    }

    #[test]
    fn covers_follows_matching() {
        let api = PathMatch::Prefix("/api".into());
        assert!(api.covers(&PathMatch::Prefix("/api/v1".into())));
        assert!(api.covers(&PathMatch::Exact("/api".into())));
        assert!(!api.covers(&PathMatch::Prefix("/apix".into())));
        assert!(PathMatch::Prefix("/".into()).covers(&api));
        assert!(!PathMatch::Exact("/api".into()).covers(&api));
    }

    #[test]
    fn method_overrides_are_read_where_and_as_frameworks_read_them() {
        let read = |headers: &[(&str, &str)], query: Option<&str>| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    value.parse().unwrap(),
                );
            }
            method_overrides(&map, query)
                .into_iter()
                .map(|(source, m)| (source, m.map(|m| m.to_string())))
                .collect::<Vec<_>>()
        };
        let some = |m: &str| Some(m.to_string());
        assert!(read(
            &[("x-forwarded-method", "DELETE")],
            Some("method=PUT&x_method=PUT")
        )
        .is_empty());
        assert_eq!(
            read(
                &[
                    ("X-HTTP-Method-Override", "delete"),
                    ("x-http-method", " PUT , patch,"),
                    ("X-Method-Override", ""),
                    ("x-method-override", "GET"),
                ],
                None
            ),
            [
                ("X-HTTP-Method-Override header", some("DELETE")),
                ("X-HTTP-Method header", some("PUT")),
                ("X-HTTP-Method header", some("PATCH")),
                ("X-Method-Override header", some("GET")),
            ]
        );
        // Decoded as a form is, and named as PHP names it: every spelling reads `_method`.
        for query in [
            "_method=DELETE",
            "a=1&_method=delete",
            "%5Fmethod=DELETE",
            "_method=DEL%45TE",
            ".method=DELETE",
            "+_method=DELETE",
            "%2Emethod=DELETE",
            "%20_method=DELETE",
            "_method=+DELETE+",
        ] {
            assert_eq!(
                read(&[], Some(query)),
                [(METHOD_OVERRIDE_PARAMETER, some("DELETE"))],
                "{query}"
            );
        }
        // A name that is no method is reported as such (and refused), an empty one skipped.
        assert_eq!(
            read(&[("x-http-method", "DE LETE")], None),
            [("X-HTTP-Method header", None)]
        );
        assert_eq!(
            read(&[], Some("_method=%FF")),
            [(METHOD_OVERRIDE_PARAMETER, None)]
        );
        assert!(read(&[], Some("_method=&_method")).is_empty());
        assert!(read(&[], Some("_methods=PUT&my_method=PUT&_method[]=PUT")).is_empty());
    }

    fn host_of(uri: &str, host: Option<&str>) -> Option<String> {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        let req = b.body(()).unwrap();
        request_host(req.uri(), req.headers()).map(str::to_string)
    }

    #[test]
    fn a_host_is_a_name_or_address_with_an_optional_port() {
        for good in [
            "api.example.com",
            "api.example.com:8081",
            "API.Example.COM.",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8081",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "host:",
            "",
        ] {
            assert!(valid_host(good.as_bytes()), "{good:?} refused");
        }
        for bad in [
            "a b",
            "user@host",
            "host:80:81",
            "host:8o",
            "host/path",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:80x",
            "[zz::1]",
            "host\t",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad:?} accepted");
        }
    }

    #[test]
    fn http11_needs_exactly_one_host_and_http10_may_have_none() {
        let headers = |hosts: &[&str]| {
            let mut h = http::HeaderMap::new();
            for host in hosts {
                h.append(
                    http::header::HOST,
                    http::HeaderValue::from_str(host).unwrap(),
                );
            }
            h
        };
        use http::Version;
        assert_eq!(host_problem(Version::HTTP_11, &headers(&["a"])), None);
        assert_eq!(host_problem(Version::HTTP_10, &headers(&[])), None);
        assert_eq!(host_problem(Version::HTTP_2, &headers(&[])), None);
        assert!(host_problem(Version::HTTP_11, &headers(&[]))
            .is_some_and(|why| why.contains("must carry")));
        assert!(host_problem(Version::HTTP_10, &headers(&["a", "a"]))
            .is_some_and(|why| why.contains("more than one")));
        assert!(host_problem(Version::HTTP_11, &headers(&["a b"]))
            .is_some_and(|why| why.contains("not a host")));
    }

    #[test]
    fn request_host_drops_the_port() {
        assert_eq!(
            host_of("/", Some("api.example.com:8081")).as_deref(),
            Some("api.example.com")
        );
        assert_eq!(host_of("/", Some("[::1]:8081")).as_deref(), Some("[::1]"));
        assert_eq!(
            host_of("http://h2.example/x", None).as_deref(),
            Some("h2.example")
        );
        assert_eq!(
            host_of("/", Some("example.com.")).as_deref(),
            Some("example.com")
        );
        assert_eq!(host_of("/", None), None);
    }

    #[test]
    fn concurrency_refuses_at_its_limit_and_frees_a_slot_on_drop() {
        let c = Concurrency::new(2);
        let a = c.try_acquire().expect("first");
        let b = c.try_acquire().expect("second");
        assert!(c.try_acquire().is_none(), "a third went over the limit");
        drop(a);
        let again = c.try_acquire().expect("a slot given back is taken again");
        assert!(c.try_acquire().is_none());
        drop((b, again));
        assert_eq!(c.in_use.load(Ordering::Relaxed), 0);
        assert!(Concurrency::new(0).try_acquire().is_none());
    }
}

/// A route's bound on requests in flight to its upstream.
#[derive(Debug)]
pub struct Concurrency {
    pub limit: usize,
    in_use: Arc<AtomicUsize>,
}

impl Concurrency {
    pub fn new(limit: usize) -> Concurrency {
        Concurrency {
            limit,
            in_use: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A permit while the route is under its limit; `None` at it (the request is refused,
    /// never queued). By hand rather than tokio's `Semaphore`: nothing ever waits here, and
    /// the semaphore takes its waiters' mutex on every release, a lock that every request on
    /// every thread went through.
    pub fn try_acquire(&self) -> Option<Permit> {
        let taken = self
            .in_use
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            });
        taken.ok().map(|_| Permit(self.in_use.clone()))
    }
}

/// One request counted against its route's limit until dropped.
#[derive(Debug)]
pub struct Permit(Arc<AtomicUsize>);

impl Drop for Permit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}
