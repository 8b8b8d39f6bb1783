//! CORS: origin parsing and matching (`cors::Origin::parse`, `OriginPattern::parse`,
//! `Origins::allows`), and the gateway's preflight answers and decoration of actual answers
//! for the policies of `plans::CORS` (compiled from config, as the gateway gets them).
//!
//! Input: lines `policy` (its first byte picks the route), `Origin`, `pattern`, `exact
//! origin`, `Access-Control-Request-Method`, `Access-Control-Request-Headers`,
//! `Access-Control-Request-Private-Network`.
//!
//! Invariants: no panic; parsing is case-insensitive and its printed form parses back to the
//! same origin or pattern; an exact origin allows exactly the origins equal to it; a pattern
//! allows exactly one more DNS label on the same scheme and port; a preflight is a 204 that
//! carries `Access-Control-Allow-*` only for an allowed origin, method, headers and private
//! network request, echoes the origin (never `*` or `null`), never lets `*` stand for
//! Authorization; a decorated answer carries the upstream's CORS headers never, ours only
//! for an allowed origin.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use cryptr_gateway::cors::{preflight_method, CorsPolicy, Origin, OriginPattern, Origins};
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;

fn policies() -> &'static Vec<Arc<CorsPolicy>> {
    static P: OnceLock<Vec<Arc<CorsPolicy>>> = OnceLock::new();
    P.get_or_init(|| {
        let plan = common::plan(common::plans::CORS);
        plan.routes
            .iter()
            .map(|r| r.cors.clone().expect("every CORS route has a policy"))
            .collect()
    })
}

/// `scheme://host:port` of a printed origin or pattern.
fn split(printed: &str) -> (&str, &str, &str) {
    let (scheme, rest) = printed.split_once("://").unwrap();
    let (host, port) = rest.rsplit_once(':').unwrap();
    (scheme, host, port)
}

fn private_network() -> HeaderName {
    HeaderName::from_static("access-control-request-private-network")
}

fuzz_target!(|data: &[u8]| {
    let lines = common::lines(data);
    let field = |i: usize| lines.get(i).copied().unwrap_or(b"");
    let text = |i: usize| std::str::from_utf8(field(i)).ok();

    // Parsing.
    let origin = text(1).and_then(Origin::parse);
    if let (Some(o), Some(s)) = (&origin, text(1)) {
        let printed = o.to_string();
        assert_eq!(
            Origin::parse(&printed).as_ref(),
            Some(o),
            "{s:?} printed {printed:?}"
        );
        assert_eq!(
            Origin::parse(&s.to_ascii_uppercase()).as_ref(),
            Some(o),
            "{s:?}"
        );
    }
    let pattern = text(2).and_then(OriginPattern::parse);
    if let Some(p) = &pattern {
        let printed = p.to_string();
        assert_eq!(
            OriginPattern::parse(&printed).as_ref(),
            Some(p),
            "printed {printed:?}"
        );
    }
    let exact = text(3).and_then(Origin::parse);

    let Ok(origin_value) = HeaderValue::from_bytes(field(1)) else {
        return;
    };
    // Matching. An Origin header is read as ASCII text: one with other bytes is never
    // allowed, whatever `Origin::parse` makes of the same characters.
    let origin = origin_value.to_str().ok().and_then(Origin::parse);
    if let Some(e) = &exact {
        let only = Origins {
            exact: [e.clone()].into_iter().collect(),
            ..Origins::default()
        };
        assert_eq!(only.allows(&origin_value), origin.as_ref() == Some(e));
    }
    if let Some(p) = &pattern {
        let only = Origins {
            patterns: vec![p.clone()],
            ..Origins::default()
        };
        if only.allows(&origin_value) {
            let o = origin
                .as_ref()
                .expect("a pattern allowed an unparsable origin")
                .to_string();
            let (os, oh, op) = split(&o);
            let printed = p.to_string();
            let (ps, ph, pp) = split(&printed);
            let suffix = ph.strip_prefix('*').unwrap();
            assert_eq!((os, op), (ps, pp), "{o} allowed by {printed}");
            let label = oh
                .strip_suffix(suffix)
                .expect("host outside the pattern's domain");
            assert!(
                !label.is_empty() && !label.contains('.') && label != "*",
                "{o} by {printed}"
            );
        }
    }
    assert!(!Origins::default().allows(&origin_value));

    // A preflight, and an actual answer, for one policy.
    let policy = &policies()[field(0).first().copied().unwrap_or(0) as usize % policies().len()];
    let mut headers = HeaderMap::new();
    headers.insert(ORIGIN, origin_value.clone());
    for (i, name) in [
        (4, ACCESS_CONTROL_REQUEST_METHOD),
        (5, ACCESS_CONTROL_REQUEST_HEADERS),
        (6, private_network()),
    ] {
        if !field(i).is_empty() {
            if let Ok(v) = HeaderValue::from_bytes(field(i)) {
                headers.insert(name, v);
            }
        }
    }
    let allowed_origin = policy.origins.allows(&origin_value);
    if let Some(method) = preflight_method(&Method::OPTIONS, &headers) {
        let res = policy.preflight(&headers, &method);
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let out = res.headers();
        assert!(out.contains_key(VARY));
        match out.get(ACCESS_CONTROL_ALLOW_ORIGIN) {
            None => {
                for h in [
                    ACCESS_CONTROL_ALLOW_METHODS,
                    ACCESS_CONTROL_ALLOW_HEADERS,
                    ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    ACCESS_CONTROL_MAX_AGE,
                ] {
                    assert!(!out.contains_key(&h), "{h} without an allowed origin");
                }
            }
            Some(acao) => {
                assert_eq!(acao, &origin_value);
                assert!(
                    allowed_origin,
                    "preflight allowed an origin the policy refuses"
                );
                assert!(acao != "*" && acao != "null", "ACAO {acao:?}");
                assert!(policy.methods.contains(&method), "method {method} allowed");
                if headers
                    .get(private_network())
                    .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
                {
                    assert!(policy.allow_private_network);
                }
                if let Some(acah) = out.get(ACCESS_CONTROL_ALLOW_HEADERS) {
                    let listed = acah.to_str().unwrap().to_ascii_lowercase();
                    if listed.split(',').any(|h| h.trim() == "authorization") {
                        assert!(
                            policy.headers.contains("authorization"),
                            "`*` stood for Authorization"
                        );
                    }
                }
                let requested = headers
                    .get(ACCESS_CONTROL_REQUEST_HEADERS)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                for h in requested.split(',').map(|h| h.trim().to_ascii_lowercase()) {
                    if h == "authorization" {
                        assert!(policy.headers.contains("authorization"));
                    }
                }
                assert_eq!(
                    out.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS),
                    policy.allow_credentials
                );
            }
        }
    }
    let mut answer = HeaderMap::new();
    answer.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    answer.insert(
        ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    answer.insert(
        ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("x-secret"),
    );
    answer.insert(VARY, HeaderValue::from_static("accept-encoding"));
    policy.decorate(Some(&origin_value), &mut answer);
    match answer.get(ACCESS_CONTROL_ALLOW_ORIGIN) {
        Some(v) => {
            assert!(allowed_origin, "decorated for an origin the policy refuses");
            assert_eq!(v, &origin_value);
        }
        None => assert!(!allowed_origin, "an allowed origin got no ACAO"),
    }
    assert_eq!(
        answer.contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS),
        allowed_origin && policy.allow_credentials,
        "the upstream's credentials header survived"
    );
    if let Some(v) = answer.get(ACCESS_CONTROL_EXPOSE_HEADERS) {
        assert_ne!(v, "x-secret", "the upstream's expose list survived");
    }
    assert!(answer.get_all(VARY).iter().any(|v| v
        .to_str()
        .unwrap_or("")
        .to_ascii_lowercase()
        .contains("origin")));
});
