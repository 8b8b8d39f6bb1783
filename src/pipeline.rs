//! One request, one way through: route -> (CORS) -> authenticate -> rewrite -> forward ->
//! decorate -> finish. Each phase is a function; an early answer is an `Err` carried by `?`
//! to the one place that turns it into a response and logs it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, CONTENT_LENGTH, EXPECT, HOST, ORIGIN, TE};
use http::request::Parts;
use http::{Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::auth::{self, Identity};
use crate::body::{Body, Holding};
use crate::config::Plan;
use crate::cors;
use crate::error::GatewayError;
use crate::headers;
use crate::metrics::{Metrics, RequestOutcome, RouteLabel};
use crate::route::{self, Auth, Route};
use crate::upstream::Upstream;

/// Set on a request by the server when the connection's bytes broke HTTP/1.1 framing rules
/// (see the private `framing` module): the request is refused, whatever it asks.
#[derive(Debug, Clone, Copy)]
pub struct FramingViolation(pub crate::framing::Violation);

/// What the gateway knows of the connection a request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub proto: &'static str,
    /// The peer's address as a header value (for `X-Forwarded-For`), written once per
    /// connection rather than formatted for every request.
    peer_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(peer: SocketAddr, proto: &'static str) -> ConnInfo {
        let ip = peer.ip().to_canonical();
        ConnInfo {
            peer,
            proto,
            // An address's text is always a valid header value.
            peer_ip: HeaderValue::from_str(&ip.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        }
    }
}

/// Serves one request; never fails: every error becomes its HTTP answer here.
pub async fn handle(
    plan: &Plan,
    metrics: Option<&Metrics>,
    conn: &ConnInfo,
    mut req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let origin = req.headers().get(ORIGIN).cloned();
    // Kept when the client (or a proxy before us) sent a sane one, made up otherwise; the
    // upstream, the client and the access log all see the same.
    let request_id = crate::request_id::take_or_generate(req.headers_mut());
    let mut trace = Trace {
        request_id: request_id.clone(),
        route: None,
        identity: None,
        preflight: false,
        upstream_time: None,
    };
    let (mut res, error) = match flow(plan, conn, req, &mut trace).await {
        Ok(res) => (res, None),
        Err(e) => (e.to_response(), Some(e)),
    };
    res.headers_mut()
        .insert(crate::request_id::X_REQUEST_ID, request_id);
    if !trace.preflight {
        // Every answer to an allowed origin, our own errors included, so the app can read it.
        let policy = match &trace.route {
            Some(route) => route.cors.as_deref(),
            None => plan.cors.as_deref(),
        };
        if let Some(policy) = policy {
            policy.decorate(origin.as_ref(), res.headers_mut());
        }
    }
    finish(
        &method,
        &uri,
        &trace,
        &res,
        error.as_ref(),
        started,
        metrics,
    );
    res
}

/// What the finish phase logs of the phases a request went through.
struct Trace {
    request_id: HeaderValue,
    route: Option<Arc<Route>>,
    /// For the log's `sub` (shared, not copied).
    identity: Option<Arc<Identity>>,
    /// Answered as a CORS preflight: complete as it is.
    preflight: bool,
    /// From the request sent to the upstream's response head.
    upstream_time: Option<std::time::Duration>,
}

async fn flow(
    plan: &Plan,
    conn: &ConnInfo,
    req: Request<Incoming>,
    trace: &mut Trace,
) -> Result<Response<Body>, GatewayError> {
    if let Some(FramingViolation(why)) = req.extensions().get::<FramingViolation>() {
        return Err(GatewayError::BadFraming(why));
    }
    if let Some(why) = route::host_problem(req.version(), req.headers()) {
        return Err(GatewayError::InvalidHost(why));
    }
    check_header_limits(&req, plan)?;
    let (mut parts, body) = req.into_parts();
    // A cheap clone (shared bytes) so the normalised path can borrow it while `parts` changes.
    let uri = parts.uri.clone();
    let path = crate::path::normalize(uri.path()).map_err(GatewayError::InvalidPath)?;
    let host = route::request_host(&parts.uri, &parts.headers);
    // A preflight is answered for the route its requested method would reach, before any
    // token is asked for; on a route without a CORS policy it is an ordinary OPTIONS.
    if let Some(method) = cors::preflight_method(&parts.method, &parts.headers) {
        let target = route::preflight_target(&plan.routes, &method, host, &path);
        if let Some(policy) = target.and_then(|r| r.cors.as_deref()) {
            trace.preflight = true;
            return Ok(policy.preflight(&parts.headers, &method));
        }
    }
    let route = route::select(&plan.routes, &parts.method, host, &path)?;
    trace.route = Some(route.clone());
    let (method, headers, query) = (&parts.method, &parts.headers, parts.uri.query());
    route::check_method_override(plan, route, method, host, &path, headers, query)?;
    let identity = authenticate(plan, route, &parts).await?;
    trace.identity = identity.clone();
    let body = limit_body(&parts, body, route)?;
    rewrite_request(&mut parts, plan, conn, route, &path, &uri)?;
    rewrite_identity(&mut parts, plan, route, identity.as_deref());
    parts
        .headers
        .insert(crate::request_id::X_REQUEST_ID, trace.request_id.clone());
    // Taken last: a request refused before this point never counts against its route.
    let permit = route
        .concurrency
        .try_acquire()
        .ok_or(GatewayError::RouteOverloaded)?;
    let sent = Instant::now();
    let res = forward(route, Request::from_parts(parts, body)).await;
    trace.upstream_time = Some(sent.elapsed());
    // Held until the response body is done: a streaming answer still occupies the upstream.
    Ok(decorate(res?, route).map(|b| Holding::new(b, permit).boxed_unsync()))
}

/// The request target is bounded in length, headers in total size and count; hyper's own
/// limits sit above these so that a client over them gets our JSON answer, not a bare one.
fn check_header_limits(req: &Request<Incoming>, plan: &Plan) -> Result<(), GatewayError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > plan.limits.max_uri_length {
        return Err(GatewayError::UriTooLong);
    }
    let headers = req.headers();
    if headers.len() > plan.limits.max_headers {
        return Err(GatewayError::HeadersTooLarge);
    }
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len())
        .sum();
    if size > plan.limits.max_header_size {
        return Err(GatewayError::HeadersTooLarge);
    }
    Ok(())
}

async fn authenticate(
    plan: &Plan,
    route: &Route,
    parts: &Parts,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    match &route.auth {
        Auth::None => Ok(None),
        Auth::Token(rules) => {
            auth::authenticate(&plan.auth, rules, &parts.headers, parts.uri.query()).await
        }
    }
}

/// Identity headers belong to the gateway: every client copy of one (whatever its case, and
/// with `_` for `-`) is dropped on every route, public ones included; then the verified
/// claims of this request are set.
fn rewrite_identity(parts: &mut Parts, plan: &Plan, route: &Route, identity: Option<&Identity>) {
    // Checked first so that the common request, which forges nothing, allocates nothing.
    if parts
        .headers
        .keys()
        .any(|n| plan.auth.is_identity_header(n))
    {
        let forged: Vec<http::HeaderName> = parts
            .headers
            .keys()
            .filter(|n| plan.auth.is_identity_header(n))
            .cloned()
            .collect();
        for name in forged {
            parts.headers.remove(name);
        }
    }
    let Auth::Token(rules) = &route.auth else {
        return;
    };
    if !rules.forward_authorization {
        parts.headers.remove(http::header::AUTHORIZATION);
    }
    let Some(identity) = identity else {
        return;
    };
    rules.inject(identity, &mut parts.headers);
}

/// Refuses a declared length over the route's limit before anything is sent upstream, and
/// bounds the rest as it streams: a chunked body that grows past the limit fails mid-way and
/// the request ends in a 413. Between two pieces the client may pause at most the route's
/// timeout.
fn limit_body(parts: &Parts, body: Incoming, route: &Route) -> Result<Body, GatewayError> {
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > route.max_body) {
        return Err(GatewayError::BodyTooLarge {
            limit: route.max_body,
        });
    }
    // Most API calls carry no body: skip the wrappers (and their timer) for those.
    if body.is_end_stream() {
        return Ok(crate::body::empty());
    }
    let limit = usize::try_from(route.max_body).unwrap_or(usize::MAX);
    Ok(
        crate::body::GapTimeout::new(Limited::new(body, limit), route.timeout)
            .map_frame(without_trailers)
            .boxed_unsync(),
    )
}

/// A request's trailer fields are not forwarded (nginx does not forward them either): the
/// gateway decides some fields of the header section (the identity and forwarding headers),
/// and an upstream that merges trailer fields into it would take a client's copies from there.
/// An empty trailer section still ends the body.
fn without_trailers<D>(frame: http_body::Frame<D>) -> http_body::Frame<D> {
    match frame.into_trailers() {
        Ok(_) => http_body::Frame::trailers(http::HeaderMap::new()),
        Err(frame) => frame,
    }
}

/// Headers as the upstream must see them: hop-by-hop gone, forwarding chain set, `Host` and
/// target pointing at the upstream.
fn rewrite_request(
    parts: &mut Parts,
    plan: &Plan,
    conn: &ConnInfo,
    route: &Route,
    path: &str,
    original: &Uri,
) -> Result<(), GatewayError> {
    let query = original.query();
    // The host the client addressed, as routing read it (`route::request_host`): the target's
    // when it has one (absolute form, HTTP/2's `:authority`), whose `Host` a proxy ignores
    // (RFC 9112 section 3.2.2), less any user (RFC 9110 section 4.2.4); else the `Host`.
    let client_host = match parts.uri.authority() {
        Some(a) => {
            let host = a.as_str().rsplit_once('@').map_or(a.as_str(), |(_, h)| h);
            HeaderValue::from_str(host).ok()
        }
        None => parts.headers.get(HOST).cloned(),
    };
    let wants_trailers = headers::strip_hop_by_hop(&mut parts.headers);
    let ip = conn.peer.ip().to_canonical();
    headers::set_forwarding(
        &mut parts.headers,
        &headers::Client {
            ip,
            ip_text: &conn.peer_ip,
            trusted: plan.is_trusted(ip),
            proto: conn.proto,
            host: client_host.as_ref(),
        },
    );
    headers::add_via(&mut parts.headers, parts.version);
    if wants_trailers {
        parts
            .headers
            .insert(TE, HeaderValue::from_static("trailers"));
    }
    // The client's `Expect: 100-continue` was answered by our own server when we began to read
    // the body; the upstream gets the body straight away and must not be asked again.
    parts.headers.remove(EXPECT);
    let path = route.upstream_path(path);
    match &route.upstream {
        Upstream::Http(u) => {
            parts.uri = u.uri_for(original, path, query)?;
            // HTTP/1.1 needs one: a `preserve_host` route whose client sent none (HTTP/1.0)
            // sends the upstream's.
            let host = match client_host {
                Some(host) if route.preserve_host => host,
                _ => u.host_header().clone(),
            };
            parts.headers.insert(HOST, host);
        }
        Upstream::Builtin(_) => {
            parts.uri = crate::proxy::origin_form("", path, query)
                .map_err(|e| GatewayError::ClientBody(e.into()))?;
        }
    }
    // Upstreams are spoken to in HTTP/1.1, whatever the client used.
    parts.version = Version::HTTP_11;
    Ok(())
}

async fn forward(route: &Route, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
    match &route.upstream {
        Upstream::Http(u) => u.forward(req, route.timeout, route.max_body).await,
        Upstream::Builtin(b) => b.serve(req, route.max_body).await,
    }
}

/// The upstream's answer as the client must see it: hop-by-hop gone, our `Via` added.
fn decorate(mut res: Response<Body>, route: &Route) -> Response<Body> {
    if let Upstream::Http(_) = route.upstream {
        headers::strip_hop_by_hop(res.headers_mut());
        let version = res.version();
        headers::add_via(res.headers_mut(), version);
    }
    res
}

/// The one access-log line of every request, whatever path it took, and its metrics. Client
/// faults are quiet (info), ours and our upstreams' loud (warn).
fn finish(
    method: &http::Method,
    uri: &http::Uri,
    trace: &Trace,
    res: &Response<Body>,
    error: Option<&GatewayError>,
    started: Instant,
    metrics: Option<&Metrics>,
) {
    let route = trace.route.as_deref();
    let sub = trace.identity.as_ref().map_or("-", |i| i.sub.as_str());
    let status = res.status().as_u16();
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    let route_name = route.map_or("-", |r| r.name.as_str());
    let upstream = route.map_or("-", |r| r.upstream.label());
    let upstream_ms = trace.upstream_time.map(|d| d.as_secs_f64() * 1000.0);
    let code = error.map_or("-", GatewayError::code);
    let auth_failure = error.and_then(GatewayError::auth_failure);
    let auth = match (auth_failure, route.map(|r| &r.auth), &trace.identity) {
        (Some(code), _, _) => code,
        (None, _, Some(_)) => "ok",
        (None, Some(Auth::Token(_)), None) if trace.route.is_some() && error.is_none() => {
            "anonymous"
        }
        _ => "-",
    };
    let request_id = trace.request_id.to_str().unwrap_or("-");
    let path = uri.path();
    if let Some(metrics) = metrics {
        metrics.record(&RequestOutcome {
            route: route.map_or(RouteLabel::none(), |r| &r.label),
            method,
            status,
            duration: elapsed,
            auth_failure,
            upstream_error: error.and_then(GatewayError::upstream_kind),
        });
    }
    match error {
        Some(e) if e.is_server_fault() => tracing::warn!(
            target: crate::logging::ACCESS_LOG,
            request_id, %method, path, route = route_name, status, duration_ms,
            upstream, upstream_ms, auth, sub, error = code, cause = %e,
            "request"
        ),
        _ => tracing::info!(
            target: crate::logging::ACCESS_LOG,
            request_id, %method, path, route = route_name, status, duration_ms,
            upstream, upstream_ms, auth, sub, error = code,
            "request"
        ),
    }
}
