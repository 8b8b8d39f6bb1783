//! `cors:` (top level) and a route's `cors:` compiled into policies.

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method};

use super::compile::{closest, Problems};
use super::raw::{RawCors, RawRouteCors};
use crate::cors::{CorsPolicy, Origin, OriginPattern, Origins};

const DEFAULT_METHODS: [Method; 6] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];
const METHOD_NAMES: [&str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// The policy of a route: the top level's, with the route's fields over it; `None` when
/// neither says anything or the route says `cors: false`.
pub(super) fn compile(
    top: Option<&RawCors>,
    route: Option<(&str, &RawRouteCors)>,
    route_methods: Option<&[Method]>,
    problems: &mut Problems<'_>,
) -> Option<Arc<CorsPolicy>> {
    let own = match route {
        Some((_, RawRouteCors::Off)) => return None,
        Some((path, RawRouteCors::Override(r))) => Some((path, r)),
        None => None,
    };
    if top.is_none() && own.is_none() {
        return None;
    }
    let base = top.cloned().unwrap_or_default();
    let over = own.map(|(_, r)| r.clone()).unwrap_or_default();
    // Each problem is reported where the value was written.
    let at = |field: &str, overridden: bool| match own {
        Some((path, _)) if overridden => format!("{path}.{field}"),
        _ => format!("cors.{field}"),
    };
    let before = problems.list.len();

    let origins_raw = over
        .allowed_origins
        .as_ref()
        .or(base.allowed_origins.as_ref());
    let origins_path = at("allowed_origins", over.allowed_origins.is_some());
    let mut origins = Origins::default();
    match origins_raw {
        None => problems.at(
            &origins_path,
            "missing: list the origins allowed to call, such as `http://localhost:8080`",
        ),
        Some(list) if list.is_empty() => problems.at(
            &origins_path,
            "is empty: no origin could call; write `cors: false` to turn CORS off",
        ),
        Some(list) => {
            for (i, o) in list.iter().enumerate() {
                let p = format!("{origins_path}[{i}]");
                if o == "*" {
                    origins.any = true;
                } else if !o.is_ascii() {
                    // Browsers send an IDN origin in punycode: a Unicode spelling never matches.
                    problems.at(&p, format!("`{o}` is not ASCII: browsers send international domain names in punycode (`xn--...`); write it that way"));
                } else if o.eq_ignore_ascii_case("null") {
                    problems.at(&p, "`null` is sent by sandboxed pages and file:// documents, which anyone can make: it is never allowed");
                } else if o.contains('*') {
                    match OriginPattern::parse(o) {
                        Some(pattern) => origins.patterns.push(pattern),
                        None => problems.at(&p, format!("`{o}` is not an origin pattern: write `https://*.example.com`, where `*` is one label")),
                    }
                } else {
                    match Origin::parse(o) {
                        Some(origin) => {
                            origins.exact.insert(origin);
                        }
                        None => problems.at(&p, format!("`{o}` is not an origin: write scheme, host and port only, as `https://app.example.com` or `http://localhost:8080`")),
                    }
                }
            }
        }
    }
    let allow_credentials = over
        .allow_credentials
        .or(base.allow_credentials)
        .unwrap_or(false);
    if allow_credentials && origins.any {
        problems.at(
            &origins_path,
            "`*` with `allow_credentials: true` would let any site act with your users' credentials: list the origins",
        );
    }

    let methods_path = at("allowed_methods", over.allowed_methods.is_some());
    let methods: Vec<Method> = match over
        .allowed_methods
        .as_ref()
        .or(base.allowed_methods.as_ref())
    {
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                let upper = m.to_ascii_uppercase();
                if METHOD_NAMES.contains(&upper.as_str()) {
                    upper.parse().ok()
                } else {
                    let hint = closest(&upper, &METHOD_NAMES)
                        .map(|b| format!("; did you mean `{b}`?"))
                        .unwrap_or_default();
                    problems.at(
                        &format!("{methods_path}[{i}]"),
                        format!("`{m}` is not an HTTP method{hint}"),
                    );
                    None
                }
            })
            .collect(),
        None => route_methods.map_or_else(|| DEFAULT_METHODS.to_vec(), <[Method]>::to_vec),
    };

    let headers_path = at("allowed_headers", over.allowed_headers.is_some());
    let mut headers = HashSet::new();
    let mut any_header = false;
    let header_list = over
        .allowed_headers
        .clone()
        .or(base.allowed_headers.clone())
        .unwrap_or_else(|| vec!["Authorization".into(), "Content-Type".into()]);
    for (i, h) in header_list.iter().enumerate() {
        if h == "*" {
            any_header = true;
        } else if HeaderName::from_bytes(h.as_bytes()).is_ok() {
            headers.insert(h.to_ascii_lowercase());
        } else {
            problems.at(
                &format!("{headers_path}[{i}]"),
                format!("`{h}` is not a header name"),
            );
        }
    }
    let expose_path = at("expose_headers", over.expose_headers.is_some());
    let expose = over
        .expose_headers
        .as_ref()
        .or(base.expose_headers.as_ref());
    for (i, h) in expose.into_iter().flatten().enumerate() {
        if h != "*" && HeaderName::from_bytes(h.as_bytes()).is_err() {
            problems.at(
                &format!("{expose_path}[{i}]"),
                format!("`{h}` is not a header name"),
            );
        }
    }
    if problems.list.len() != before {
        return None;
    }

    let join = |items: Vec<String>| HeaderValue::from_str(&items.join(", ")).ok();
    let mut allow_headers: Vec<String> = headers.iter().cloned().collect();
    allow_headers.sort();
    Some(Arc::new(CorsPolicy {
        allow_methods: join(methods.iter().map(|m| m.to_string()).collect())
            .unwrap_or(HeaderValue::from_static("GET")),
        allow_headers: if allow_headers.is_empty() {
            None
        } else {
            join(allow_headers)
        },
        expose_headers: expose
            .filter(|e| !e.is_empty())
            .and_then(|e| join(e.clone())),
        max_age: over
            .max_age
            .or(base.max_age)
            .map(|d| HeaderValue::from(d.0.as_secs())),
        origins,
        methods,
        headers,
        any_header,
        allow_credentials,
        allow_private_network: over
            .allow_private_network
            .or(base.allow_private_network)
            .unwrap_or(false),
    }))
}
