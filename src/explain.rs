//! `cryptr-gateway explain`: what the gateway would decide for one request, step by step, and
//! why. It runs the same phases as the request path (the same route selection, CORS policy and
//! verification code, told to report what it sees), without forwarding anything.

use http::{HeaderMap, HeaderValue, Method, Uri};

use crate::auth::{self, Check, Notes};
use crate::config::Plan;
use crate::cors;
use crate::error::GatewayError;
use crate::route::{self, Auth, PathMatch};

/// The request to explain.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: Method,
    /// Path and query, as sent.
    pub target: String,
    /// Headers as the client would send them (Authorization, Origin, Host, ...).
    pub headers: HeaderMap,
}

/// The steps, and whether the request would reach the upstream.
#[derive(Debug, Default)]
pub struct Explanation {
    pub steps: Vec<(&'static str, String)>,
    pub pass: bool,
    pub verdict: String,
}

impl Explanation {
    fn step(&mut self, label: &'static str, detail: impl Into<String>) {
        self.steps.push((label, detail.into()));
    }

    fn refuse(mut self, e: &GatewayError) -> Explanation {
        self.pass = false;
        self.verdict = format!(
            "REFUSED: {} {}: {}",
            e.status().as_u16(),
            e.code(),
            e.description()
        );
        self
    }

    /// Aligned `label  detail` lines, then the verdict.
    pub fn render(&self) -> String {
        let width = self.steps.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (label, detail) in &self.steps {
            out.push_str(&format!("{label:width$}  {detail}\n"));
        }
        out.push_str(&format!("verdict: {}\n", self.verdict));
        out
    }
}

pub async fn explain(plan: &Plan, req: &Request, check: &Check) -> Explanation {
    let mut x = Explanation::default();
    x.step("request", format!("{} {}", req.method, req.target));
    let uri: Uri = match req.target.parse() {
        Ok(u) => u,
        Err(e) => {
            x.verdict = format!(
                "REFUSED: 400: `{}` is not a request target: {e}",
                req.target
            );
            return x;
        }
    };
    let path = match crate::path::normalize(uri.path()) {
        Ok(p) => p,
        Err(e) => return x.refuse(&GatewayError::InvalidPath(e)),
    };
    if path != uri.path() {
        x.step("path", format!("{path} (canonical form of {})", uri.path()));
    }
    let host = route::request_host(&uri, &req.headers);
    let origin = req.headers.get(http::header::ORIGIN);

    if let Some(method) = cors::preflight_method(&req.method, &req.headers) {
        let target = route::preflight_target(&plan.routes, &method, host, &path);
        if let Some((r, policy)) = target.and_then(|r| r.cors.as_deref().map(|p| (r, p))) {
            x.step("route", describe(r));
            let res = policy.preflight(&req.headers, &method);
            let allowed = res
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN);
            x.step("preflight", format!("for {method}: answered 204 by the gateway, {}", if allowed { "allowed" } else { "NOT allowed (no Access-Control-Allow-* headers: the browser blocks the call)" }));
            for (name, value) in res.headers() {
                x.step(
                    "  header",
                    format!("{name}: {}", String::from_utf8_lossy(value.as_bytes())),
                );
            }
            x.pass = allowed;
            x.verdict = if allowed {
                "PASS: preflight allowed".into()
            } else {
                "REFUSED: preflight not allowed".into()
            };
            return x;
        }
    }

    let r = match route::select(&plan.routes, &req.method, host, &path) {
        Ok(r) => r,
        Err(e) => {
            x.step(
                "route",
                "none matches (routes are tried in order; the first match wins)",
            );
            return x.refuse(&e);
        }
    };
    x.step("route", describe(r));
    let (method, headers, query) = (&req.method, &req.headers, uri.query());
    if let Err(e) = route::check_method_override(plan, r, method, host, &path, headers, query) {
        return x.refuse(&e);
    }
    match (origin, &r.cors) {
        (None, _) => {}
        (Some(o), None) => x.step(
            "cors",
            format!(
                "origin {}: the route does no CORS (the upstream's headers pass)",
                lossy(o)
            ),
        ),
        (Some(o), Some(policy)) => x.step(
            "cors",
            format!(
                "origin {}: {}",
                lossy(o),
                if policy.origins.allows(o) {
                    "allowed: answers carry Access-Control-Allow-Origin"
                } else {
                    "NOT allowed: answers carry no CORS headers, the browser blocks them"
                }
            ),
        ),
    }

    let rules = match &r.auth {
        Auth::None => {
            x.step("auth", "none: a public route");
            x.pass = true;
            x.verdict = format!("PASS: forwarded to {}", r.upstream);
            return x;
        }
        Auth::Token(rules) => rules,
    };
    let names: Vec<&str> = rules.issuers.iter().map(|i| i.iss.as_str()).collect();
    x.step("auth", format!("a token from {}", names.join(", ")));
    let mut steps: Vec<(&'static str, String)> = Vec::new();
    let mut sink = |label: &'static str, detail: String| steps.push((label, detail));
    let result = auth::verify(
        &plan.auth,
        rules,
        &req.headers,
        uri.query(),
        check,
        &mut Notes::to(&mut sink),
    )
    .await;
    for (label, detail) in steps {
        x.step(label, detail);
    }
    match result {
        Err(e) => x.refuse(&e),
        Ok(identity) => {
            if let Some(identity) = &identity {
                for (name, value) in rules.injected_headers(identity) {
                    x.step("upstream gets", format!("{name}: {}", lossy(&value)));
                }
            }
            if !rules.forward_authorization {
                x.step(
                    "upstream gets",
                    "no Authorization header (forward_authorization: false)",
                );
            }
            x.pass = true;
            x.verdict = format!("PASS: forwarded to {}", r.upstream);
            x
        }
    }
}

fn describe(r: &route::Route) -> String {
    let (kind, p) = match &r.path {
        PathMatch::Exact(p) => ("exact", p),
        PathMatch::Prefix(p) => ("prefix", p),
    };
    let methods = r.methods.as_ref().map_or("*".to_string(), |m| {
        m.iter().map(Method::as_str).collect::<Vec<_>>().join(",")
    });
    format!("{} ({kind} {p} [{methods}]) -> {}", r.name, r.upstream)
}

fn lossy(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}
