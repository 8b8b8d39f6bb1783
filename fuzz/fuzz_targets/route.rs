//! Route matching: an arbitrary method, `Host` header and request target against the fixed
//! routes of `plans::ROUTES`, as the pipeline does it (`path::normalize`, `request_host`,
//! `route::select`, `preflight_target`, `upstream_path`); then `PathMatch::covers` against
//! the path for two fuzzed path rules.
//!
//! Input: lines `method`, `host`, `target`, `rule a`, `rule b` (a rule is a prefix, or
//! `=path` for an exact match).
//!
//! Invariants: no panic; a normalised path is canonical (absolute, no `//`, no dot segment,
//! no `\` or encoded separator, a fixed point of `normalize`) and means the same bytes once
//! decoded; `select` answers what a plain first-match scan answers (405 only when a route
//! matches the target, listing methods other than the request's), but refuses a path whose
//! `;parameters` take it to another route than the one it reaches without them (what Tomcat,
//! Jetty and Spring route on); `upstream_path` is an absolute tail of the path; when `a`
//! covers `b`, every path `b` matches, `a` matches.
#![no_main]

mod common;

use std::sync::OnceLock;

use cryptr_gateway::config::Plan;
use cryptr_gateway::error::GatewayError;
use cryptr_gateway::fuzzing;
use cryptr_gateway::path::{normalize, PathError};
use cryptr_gateway::route::{PathMatch, Route};
use http::{HeaderMap, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fn plan() -> &'static Plan {
    static PLAN: OnceLock<Plan> = OnceLock::new();
    PLAN.get_or_init(|| common::plan(common::plans::ROUTES))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Every `%XX` decoded (the input is known to be well-formed).
fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn merge_slashes(b: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    for &c in b {
        if !(c == b'/' && out.last() == Some(&b'/')) {
            out.push(c);
        }
    }
    out
}

/// A rule as the config accepts one: canonical, and no trailing `/` but for `/` itself.
fn rule(line: &[u8]) -> Option<PathMatch> {
    let s = std::str::from_utf8(line).ok()?;
    let (exact, p) = match s.strip_prefix('=') {
        Some(p) => (true, p),
        None => (false, s),
    };
    if normalize(p).ok()? != p || (!exact && p.len() > 1 && p.ends_with('/')) {
        return None;
    }
    Some(if exact {
        PathMatch::Exact(p.to_string())
    } else {
        PathMatch::Prefix(p.to_string())
    })
}

/// `path` with each segment cut at its first `;`, literal or encoded (`%3B`): the path that
/// Tomcat, Jetty and Spring route on.
fn without_parameters(path: &str) -> String {
    path.split('/')
        .map(|s| {
            let lower = s.to_ascii_lowercase();
            let cut = [s.find(';'), lower.find("%3b")].into_iter().flatten().min();
            &s[..cut.unwrap_or(s.len())]
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn target_matches(r: &Route, host: Option<&str>, path: &str) -> bool {
    r.path.matches(path)
        && match &r.host {
            None => true,
            Some(h) => host.is_some_and(|x| x.eq_ignore_ascii_case(h)),
        }
}

fn allows(r: &Route, m: &Method) -> bool {
    r.methods.as_ref().is_none_or(|ms| ms.contains(m))
}

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let field = |i: usize| lines.get(i).copied().unwrap_or(b"");
    let Ok(method) = Method::from_bytes(field(0)) else {
        return;
    };
    let Ok(uri) = Uri::try_from(field(2)) else {
        return;
    };
    let mut headers = HeaderMap::new();
    if !field(1).is_empty() {
        match HeaderValue::from_bytes(field(1)) {
            Ok(v) => drop(headers.insert(http::header::HOST, v)),
            Err(_) => return,
        }
    }

    let raw = uri.path();
    let Ok(path) = normalize(raw) else {
        return;
    };
    let path: &str = &path;
    // Canonical form.
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains("//"), "{path:?}");
    assert!(!path.contains('\\'), "{path:?}");
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "dot segment in {path:?} from {raw:?}"
    );
    let lower = path.to_ascii_lowercase();
    for bad in ["%2f", "%5c", "%00"] {
        assert!(!lower.contains(bad), "{bad} in {path:?}");
    }
    let again = normalize(path).expect("a normalised path normalises");
    assert_eq!(again, path, "normalize is not idempotent on {raw:?}");
    // Same meaning: decoding the canonical path gives the decoded raw path, slashes merged.
    assert_eq!(
        decode(path),
        merge_slashes(&decode(raw)),
        "{raw:?} became {path:?}"
    );

    let routes = &plan().routes;
    let host = fuzzing::request_host(&uri, &headers);
    if let Some(h) = host {
        assert!(
            h.starts_with('[') || (!h.contains(':') && !h.ends_with('.')),
            "host {h:?}"
        );
    }
    let scan = |p: &str| {
        routes
            .iter()
            .find(|r| target_matches(r, host, p) && allows(r, &method))
    };
    let reference = scan(path);
    // A route found for a path with `;parameters` must be the one found without them.
    let moved_by_parameters = reference.is_some_and(|r| {
        let bare = without_parameters(path);
        bare != path && !scan(&bare).is_some_and(|b| std::sync::Arc::ptr_eq(b, r))
    });
    match fuzzing::select_route(routes, &method, host, path) {
        Ok(r) => {
            assert!(
                !moved_by_parameters,
                "{path:?} reached {} though it is another route's without its parameters",
                r.name
            );
            let expected = reference.expect("select found a route the scan does not");
            assert!(
                std::sync::Arc::ptr_eq(r, expected),
                "select chose {} not {}",
                r.name,
                expected.name
            );
            let up = r.upstream_path(path);
            assert!(up.starts_with('/'), "upstream path {up:?} for {path:?}");
            assert!(
                path.ends_with(up) || up == "/",
                "upstream path {up:?} for {path:?}"
            );
            if !r.strip_prefix {
                assert_eq!(up, path);
            }
        }
        Err(GatewayError::MethodNotAllowed(allowed)) => {
            assert!(
                reference.is_none(),
                "405 where {} takes it",
                reference.unwrap().name
            );
            assert!(!allowed.is_empty());
            assert!(!allowed.contains(&method), "405 for {method} listing it");
            assert!(routes.iter().any(|r| target_matches(r, host, path)));
        }
        Err(GatewayError::InvalidPath(PathError::ParametersChangeRoute)) => {
            assert!(
                moved_by_parameters,
                "{path:?} refused for parameters that change no route"
            );
        }
        Err(GatewayError::RouteNotFound) => {
            assert!(
                !routes.iter().any(|r| target_matches(r, host, path)),
                "404 where a route matches"
            );
        }
        Err(e) => panic!("select answered {e:?}"),
    }
    if let Some(r) = fuzzing::preflight_target(routes, &method, host, path) {
        assert!(target_matches(r, host, path));
    }

    // covers() agrees with matches().
    if let (Some(a), Some(b)) = (rule(field(3)), rule(field(4))) {
        if a.covers(&b) && b.matches(path) {
            assert!(a.matches(path), "{a:?} covers {b:?} but not {path:?}");
        }
    }
});
