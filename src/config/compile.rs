//! Raw structs -> [`Plan`]: every value parsed into what the request path uses, every bad
//! combination reported with where it is.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use ipnet::IpNet;

use super::auth::{self as auth_config, Issuers};
use super::locate::Locations;
use super::raw::{RawConfig, RawCors, RawRoute};
use super::{Limits, Plan};
use crate::auth::cache::TokenCache;
use crate::auth::{AuthPlan, Clock, IdentityHeaders, KeyCache};
use crate::proxy::{ClientSettings, HttpUpstream};
use crate::route::{Auth, PathMatch, Route};
use crate::tls::UpstreamTls;
use crate::upstream::{Builtin, Upstream};

const DEFAULT_LISTEN: &str = "0.0.0.0:8081";
const DEFAULT_MAX_HEADER_SIZE: u64 = 32 * 1024;
const DEFAULT_MAX_HEADERS: usize = 100;
const MAX_MAX_HEADERS: usize = 1000;
const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_MAX_URI_LENGTH: u64 = 8 * 1024;
/// Per route, as Envoy's circuit breaker default: past it a route sheds load (503) instead of
/// queueing without bound in front of a struggling upstream.
const DEFAULT_MAX_CONCURRENT_REQUESTS: usize = 1024;
const DEFAULT_ADMIN: &str = "127.0.0.1:9901";
/// Memory for remembered verified tokens: some 12,000 Cryptr-sized tokens (about 5 KB each
/// with their claims and the cache's bookkeeping).
const TOKEN_CACHE_BYTES: u64 = 64 << 20;

/// The methods a route may name (an extension method is more likely a typo than intended).
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
];

pub(super) struct Context<'a> {
    /// The text after `${VAR}` interpolation.
    pub text: &'a str,
    /// Where relative file names are read from.
    pub dir: PathBuf,
    /// What a reload keeps of the running plan.
    pub carry: Option<&'a super::Carry>,
}

impl Context<'_> {
    /// An issuer's key state: the running plan's when a reload did not change where or how
    /// its keys are fetched (no refetch storm on reload), new otherwise.
    pub fn issuer_keys(
        &self,
        iss: &str,
        source: crate::auth::KeySource,
        settings: crate::auth::JwksSettings,
    ) -> Arc<crate::auth::IssuerKeys> {
        if let Some(old) = self.carry.and_then(|c| c.keys.get(iss)) {
            if old.source.same_remote(&source) && old.settings == settings {
                return old.clone();
            }
        }
        Arc::new(crate::auth::IssuerKeys::new(iss, source, settings))
    }
}

/// A problem, positioned in the interpolated text.
pub(super) struct Problem {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub path: String,
    pub message: String,
}

pub(super) struct Problems<'a> {
    pub list: Vec<Problem>,
    locations: &'a Locations,
}

impl Problems<'_> {
    pub fn at(&mut self, path: &str, message: impl Into<String>) {
        let message = message.into();
        // A shared setting (the top-level `cors:`) is checked once per route using it.
        if self
            .list
            .iter()
            .any(|p| p.path == path && p.message == message)
        {
            return;
        }
        let pos = self.locations.value(path);
        self.list.push(Problem {
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.column),
            path: path.to_string(),
            message,
        });
    }

    /// A deserialisation error below `prefix`, made friendlier: the misspelt field is pointed
    /// at and the closest valid name suggested.
    pub fn serde(&mut self, prefix: &str, err: serde_path_to_error::Error<serde_yaml::Error>) {
        let inner = err.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (_, ".") => prefix.to_string(),
            (true, p) => p.to_string(),
            (false, p) if p.starts_with('[') => format!("{prefix}{p}"),
            (false, p) => format!("{prefix}.{p}"),
        };
        let message = friendly(&err.into_inner().to_string());
        if let Some(field) = unknown_name(&message, "unknown field `") {
            // The path may or may not end with the unknown key itself.
            let key_path = if path.ends_with(&format!(".{field}")) || path == field {
                path.clone()
            } else if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            if let Some(pos) = self.locations.key(&key_path) {
                self.list.push(Problem {
                    line: Some(pos.line),
                    column: Some(pos.column),
                    path: key_path,
                    message,
                });
                return;
            }
        }
        self.at(&path, message);
    }
}

/// serde names our raw types in its messages; users know the YAML, not the structs.
fn friendly(message: &str) -> String {
    let mut m = message.to_string();
    for (from, to) in [
        (
            "struct RawConfig",
            "a mapping with `listen`, `trusted_proxies`, `limits` and `routes`",
        ),
        (
            "struct RawRoute",
            "a route: a mapping with `name`, `match`, `upstream` and `auth`",
        ),
        (
            "struct RawMatch",
            "a mapping with `exact` or `prefix`, and optional `methods` and `host`",
        ),
        ("struct RawLimits", "a mapping of limits"),
        (
            "struct RawUpstreamMap",
            "a mapping with `url`, `ca_file`, `client_cert` and `client_key`",
        ),
    ] {
        m = m.replace(from, to);
    }
    if m.starts_with("missing field `auth`") {
        m.push_str(": every route says what auth it needs; write `auth: none` for a public route");
    }
    for prefix in ["unknown field `", "unknown variant `"] {
        if let Some(name) = unknown_name(&m, prefix) {
            if let Some(best) = closest(name, &expected_names(&m)) {
                m = format!("{m}; did you mean `{best}`?");
            }
        }
    }
    m
}

/// The name in "unknown field `x`, expected ...".
fn unknown_name<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next()
}

/// The backquoted names after "expected" in serde's message.
fn expected_names(message: &str) -> Vec<&str> {
    let Some((_, tail)) = message.split_once("expected") else {
        return Vec::new();
    };
    tail.split('`').skip(1).step_by(2).collect()
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo: an edit or
/// two (a transposition counts as one), or a long shared start.
pub(super) fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_ascii_lowercase();
    let budget = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| {
            let c_lower = c.to_ascii_lowercase();
            let edits = strsim::damerau_levenshtein(&word, &c_lower);
            let similar = strsim::jaro_winkler(&word, &c_lower) > 0.9;
            (edits, similar, *c)
        })
        .filter(|(edits, similar, _)| *edits <= budget || *similar)
        .min_by_key(|(edits, _, _)| *edits)
        .map(|(_, _, c)| c)
}

pub(super) fn compile(cx: &Context<'_>) -> Result<Plan, Vec<Problem>> {
    let value: serde_yaml::Value = serde_yaml::from_str(cx.text).map_err(|e| {
        let loc = e.location();
        vec![Problem {
            line: loc.as_ref().map(|l| l.line()),
            column: loc.as_ref().map(|l| l.column()),
            path: String::new(),
            message: format!("not valid YAML: {}", strip_location(&e.to_string())),
        }]
    })?;
    let locations = Locations::index(cx.text);
    let mut problems = Problems {
        list: Vec::new(),
        locations: &locations,
    };
    if value.is_null() {
        problems.at("", "the file is empty: it needs at least `routes:`");
        return Err(problems.list);
    }
    let raw: RawConfig = match serde_path_to_error::deserialize(value) {
        Ok(raw) => raw,
        Err(e) => {
            problems.serde("", e);
            return Err(problems.list);
        }
    };

    let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
    let listen: Option<SocketAddr> = match listen.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.at(
                "listen",
                format!("`{listen}` is not an address: expected IP:port, such as `0.0.0.0:8081` or `127.0.0.1:8000`"),
            );
            None
        }
    };

    let mut trusted_proxies = Vec::new();
    for (i, t) in raw.trusted_proxies.iter().enumerate() {
        match t
            .parse::<IpNet>()
            .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
        {
            Ok(net) => trusted_proxies.push(net),
            Err(_) => problems.at(
                &format!("trusted_proxies[{i}]"),
                format!("`{t}` is not an IP address or CIDR range such as `10.0.0.0/8`"),
            ),
        }
    }

    let l = &raw.limits;
    let max_header_size = l.max_header_size.map_or(DEFAULT_MAX_HEADER_SIZE, |s| s.0);
    if max_header_size < 1024 {
        problems.at("limits.max_header_size", "must be at least 1KiB");
    }
    let max_headers = l.max_headers.unwrap_or(DEFAULT_MAX_HEADERS);
    if max_headers == 0 {
        problems.at("limits.max_headers", "must be at least 1");
    }
    // hyper allocates room for twice this many header lines for every request head (64 bytes
    // a line, server::hyper_max_headers): 1,000 makes that 128 KB a request.
    if max_headers > MAX_MAX_HEADERS {
        problems.at(
            "limits.max_headers",
            format!(
                "must be at most {MAX_MAX_HEADERS}: room for them is set aside for every request"
            ),
        );
    }
    let limits = Limits {
        max_header_size: usize::try_from(max_header_size).unwrap_or(usize::MAX),
        max_headers,
        header_read_timeout: positive(
            &mut problems,
            "limits.header_read_timeout",
            l.header_read_timeout.map(|d| d.0),
            DEFAULT_HEADER_READ_TIMEOUT,
        ),
        idle_timeout: positive(
            &mut problems,
            "limits.idle_timeout",
            l.idle_timeout.map(|d| d.0),
            DEFAULT_IDLE_TIMEOUT,
        ),
        drain_timeout: l.drain_timeout.map_or(DEFAULT_DRAIN_TIMEOUT, |d| d.0),
        max_connections: l.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
        max_uri_length: usize::try_from(l.max_uri_length.map_or(DEFAULT_MAX_URI_LENGTH, |s| s.0))
            .unwrap_or(usize::MAX),
    };
    if limits.max_uri_length < 64 {
        problems.at("limits.max_uri_length", "must be at least 64 bytes");
    }
    if l.max_concurrent_requests == Some(0) {
        problems.at("limits.max_concurrent_requests", "must be at least 1");
    }
    if limits.max_connections == 0 {
        problems.at("limits.max_connections", "must be at least 1");
    }

    let tls = raw.tls.as_ref().and_then(|t| {
        match crate::tls::ServerTls::load(cx.dir.join(&t.cert), cx.dir.join(&t.key)) {
            Ok(tls) => Some(tls),
            Err(e) => {
                problems.at("tls", e);
                None
            }
        }
    });
    let admin = match &raw.admin {
        Some(a) if a.enabled == Some(false) => None,
        a => {
            let text = a
                .as_ref()
                .and_then(|a| a.listen.as_deref())
                .unwrap_or(DEFAULT_ADMIN);
            match text.parse::<SocketAddr>() {
                Ok(addr) => {
                    if listen.is_some_and(|l| l.port() == addr.port() && addr.port() != 0) {
                        problems.at(
                            "admin.listen",
                            format!("`{text}` shares its port with `listen`: the admin endpoints never sit on the traffic port"),
                        );
                    }
                    Some(addr)
                }
                Err(_) => {
                    problems.at(
                        "admin.listen",
                        format!("`{text}` is not an address: expected IP:port, such as `127.0.0.1:9901`"),
                    );
                    None
                }
            }
        }
    };
    let defaults = RouteDefaults {
        max_concurrent_requests: l
            .max_concurrent_requests
            .unwrap_or(DEFAULT_MAX_CONCURRENT_REQUESTS),
        max_body: l.max_body.map_or(DEFAULT_MAX_BODY, |s| s.0),
        timeout: positive(
            &mut problems,
            "limits.timeout",
            l.timeout.map(|d| d.0),
            DEFAULT_TIMEOUT,
        ),
        client: ClientSettings {
            connect_timeout: positive(
                &mut problems,
                "limits.connect_timeout",
                l.connect_timeout.map(|d| d.0),
                DEFAULT_CONNECT_TIMEOUT,
            ),
        },
    };

    let mut issuers = raw
        .issuers
        .map(|m| auth_config::compile_issuers(m, cx, &mut problems))
        .unwrap_or_default();
    let dev_issuer = if raw.dev_issuer == Some(true) {
        auth_config::dev_issuer(cx, &mut issuers, &mut problems)
    } else {
        None
    };

    let token_cache = raw.token_cache.is_none_or(|t| t.0);
    let top_cors = raw.cors;
    let plan_cors = super::cors::compile(top_cors.as_ref(), None, None, &mut problems);

    let mut routes: Vec<(usize, Route)> = Vec::new();
    let mut clients = HashMap::new();
    let raw_routes = raw.routes.unwrap_or_default();
    if raw_routes.is_empty() {
        problems.at(
            "routes",
            "no routes: list at least one under `routes:`, or every request would be a 404",
        );
    }
    for (i, value) in raw_routes.into_iter().enumerate() {
        let prefix = format!("routes[{i}]");
        match serde_path_to_error::deserialize::<_, RawRoute>(value) {
            Ok(r) => {
                let shared = Shared {
                    cx,
                    defaults: &defaults,
                    issuers: &issuers,
                    top_cors: top_cors.as_ref(),
                };
                if let Some(route) = compile_route(&prefix, r, &shared, &mut clients, &mut problems)
                {
                    routes.push((i, route));
                }
            }
            Err(e) => problems.serde(&prefix, e),
        }
    }
    check_route_set(&routes, &mut problems);
    // One key cache for the life of the process: a reload keeps every set it holds.
    let cache = match cx.carry.map(|c| c.key_cache.clone()) {
        Some(c) => Some(c),
        None => match KeyCache::new() {
            Ok(c) => Some(Arc::new(c)),
            Err(e) => {
                problems.at("issuers", e);
                None
            }
        },
    };

    match (listen, cache) {
        (Some(listen), Some(cache)) if problems.list.is_empty() => {
            let identity_headers = identity_headers(&issuers, &routes);
            let mut all_issuers: Vec<_> = issuers.into_values().flatten().collect();
            all_issuers.sort_by(|a, b| a.iss.cmp(&b.iss));
            let routes_by_method = routes.iter().any(|(_, r)| r.methods.is_some());
            Ok(Plan {
                listen,
                tls,
                admin,
                trusted_proxies,
                limits,
                routes: routes.into_iter().map(|(_, r)| Arc::new(r)).collect(),
                routes_by_method,
                cors: plan_cors,
                dev_issuer,
                source_text: None,
                auth: AuthPlan {
                    clock: Clock::system(),
                    cache,
                    issuers: all_issuers,
                    identity_headers,
                    token_cache: token_cache.then(|| TokenCache::new(TOKEN_CACHE_BYTES)),
                },
            })
        }
        _ => Err(problems.list),
    }
}

/// Every header name any claim mapping targets, as stripping compares them.
fn identity_headers(issuers: &Issuers, routes: &[(usize, Route)]) -> IdentityHeaders {
    let from_issuers = issuers.values().flatten().flat_map(|i| {
        i.claims_to_headers
            .iter()
            .map(|(_, h)| h)
            .chain(i.claims_header.iter())
    });
    let from_routes = routes.iter().filter_map(|(_, r)| match &r.auth {
        Auth::Token(a) => Some(a),
        Auth::None => None,
    });
    let from_routes = from_routes.flat_map(|a| {
        a.claims_to_headers
            .iter()
            .map(|(_, h)| h)
            .chain(a.claims_header.iter())
    });
    let mut names: Vec<String> = from_issuers
        .chain(from_routes)
        .map(auth_config::normalize)
        .collect();
    names.sort();
    names.dedup();
    IdentityHeaders::new(names)
}

pub(super) fn positive(
    problems: &mut Problems<'_>,
    path: &str,
    value: Option<Duration>,
    default: Duration,
) -> Duration {
    match value {
        Some(d) if d.is_zero() => {
            problems.at(path, "must be longer than zero");
            default
        }
        Some(d) => d,
        None => default,
    }
}

struct RouteDefaults {
    max_concurrent_requests: usize,
    max_body: u64,
    timeout: Duration,
    client: ClientSettings,
}

/// What every route's compilation reads.
struct Shared<'a> {
    cx: &'a Context<'a>,
    defaults: &'a RouteDefaults,
    issuers: &'a Issuers,
    top_cors: Option<&'a RawCors>,
}

fn compile_route(
    prefix: &str,
    raw: RawRoute,
    shared: &Shared<'_>,
    clients: &mut HashMap<(String, UpstreamTls), Arc<HttpUpstream>>,
    problems: &mut Problems<'_>,
) -> Option<Route> {
    let Shared {
        cx,
        defaults,
        issuers,
        top_cors,
    } = *shared;
    let before = problems.list.len();
    let field = |name: &str| format!("{prefix}.{name}");

    if raw.name.is_empty()
        || !raw
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        problems.at(
            &field("name"),
            format!("`{}` is not a route name: use letters, digits, `-`, `_` and `.` (it appears in logs and metrics)", raw.name),
        );
    }

    let m = &raw.matcher;
    let path = match (&m.exact, &m.prefix) {
        (Some(p), None) => {
            check_match_path(&field("match.exact"), p, problems).map(PathMatch::Exact)
        }
        (None, Some(p)) => {
            check_match_path(&field("match.prefix"), p, problems).map(PathMatch::Prefix)
        }
        (Some(_), Some(_)) => {
            problems.at(&field("match"), "give either `exact` or `prefix`, not both");
            None
        }
        (None, None) => {
            problems.at(
                &field("match"),
                "needs a path: `exact: /path` or `prefix: /path`",
            );
            None
        }
    };

    let methods = match &m.methods {
        None => None,
        Some(list) if list.is_empty() => {
            problems.at(
                &field("match.methods"),
                "is empty, so the route could never match; leave it out to match every method",
            );
            None
        }
        Some(list) => {
            let mut out = Vec::new();
            for (j, name) in list.iter().enumerate() {
                let upper = name.to_ascii_uppercase();
                match METHODS.iter().find(|m| **m == upper) {
                    Some(known) => {
                        if let Ok(method) = known.parse::<Method>() {
                            if !out.contains(&method) {
                                out.push(method);
                            }
                        }
                    }
                    None => {
                        let hint = closest(&upper, &METHODS)
                            .map(|b| format!("; did you mean `{b}`?"))
                            .unwrap_or_default();
                        problems.at(
                            &format!("{prefix}.match.methods[{j}]"),
                            format!(
                                "`{name}` is not an HTTP method (expected one of {}){hint}",
                                METHODS.join(", ")
                            ),
                        );
                    }
                }
            }
            Some(out)
        }
    };

    let host = match &m.host {
        None => None,
        Some(h) => {
            let host = h.trim_end_matches('.').to_ascii_lowercase();
            if host.is_empty() || host.contains(['/', ':', ' ']) && !host.starts_with('[') {
                problems.at(&field("match.host"), format!("`{h}` is not a host name: write it without scheme or port, as `api.example.com`"));
            }
            Some(host)
        }
    };

    let upstream = compile_upstream(
        &field("upstream"),
        &raw.upstream,
        cx,
        defaults,
        clients,
        problems,
    );

    if raw.strip_prefix && !matches!(path, Some(PathMatch::Prefix(_)) | None) {
        problems.at(&field("strip_prefix"), "applies to `prefix` matches only");
    }
    let timeout = positive(
        problems,
        &field("timeout"),
        raw.timeout.map(|d| d.0),
        defaults.timeout,
    );
    let auth = auth_config::compile_route_auth(prefix, raw.auth, issuers, problems);
    let cors_path = field("cors");
    let cors = super::cors::compile(
        top_cors,
        raw.cors.as_ref().map(|c| (cors_path.as_str(), c)),
        methods.as_deref(),
        problems,
    );

    if problems.list.len() != before {
        return None;
    }
    let max_concurrent = raw
        .max_concurrent_requests
        .unwrap_or(defaults.max_concurrent_requests);
    if max_concurrent == 0 {
        problems.at(&field("max_concurrent_requests"), "must be at least 1");
    }
    Some(Route {
        label: crate::metrics::RouteLabel::new(&raw.name),
        name: raw.name,
        path: path?,
        methods,
        host,
        upstream: upstream?,
        auth: auth?,
        cors,
        strip_prefix: raw.strip_prefix,
        preserve_host: raw.preserve_host,
        timeout,
        max_body: raw.max_body.map_or(defaults.max_body, |s| s.0),
        concurrency: crate::route::Concurrency::new(max_concurrent),
    })
}

/// A match path must be in the canonical form requests are matched in, or it never matches.
fn check_match_path(path: &str, p: &str, problems: &mut Problems<'_>) -> Option<String> {
    if p.contains(['?', '#']) {
        problems.at(
            path,
            format!("`{p}` holds a query or fragment; routes match on the path only"),
        );
        return None;
    }
    match crate::path::normalize(p) {
        Ok(n) if n == p => {}
        Ok(n) => {
            problems.at(
                path,
                format!("`{p}` is not in canonical form; requests are matched as `{n}`"),
            );
            return None;
        }
        Err(e) => {
            problems.at(path, format!("`{p}` can never match: {}", e.describe()));
            return None;
        }
    }
    if crate::path::without_parameters(p).is_some() {
        problems.at(
            path,
            format!(
                "`{p}` can never match: {}",
                crate::path::PathError::ParametersChangeRoute.describe()
            ),
        );
        return None;
    }
    if p.len() > 1 && p.ends_with('/') && path.ends_with("prefix") {
        let trimmed = p.trim_end_matches('/');
        problems.at(
            path,
            format!("write `{trimmed}`: a prefix matches on segment boundaries, so `{trimmed}` already matches `{trimmed}/...` (and `{trimmed}` itself)"),
        );
        return None;
    }
    Some(p.to_string())
}

fn compile_upstream(
    path: &str,
    raw: &super::raw::RawUpstream,
    cx: &Context<'_>,
    defaults: &RouteDefaults,
    clients: &mut HashMap<(String, UpstreamTls), Arc<HttpUpstream>>,
    problems: &mut Problems<'_>,
) -> Option<Upstream> {
    let url = raw.url.as_str();
    let tls = UpstreamTls {
        ca_file: raw.ca_file.as_ref().map(|f| cx.dir.join(f)),
        client_identity: match (&raw.client_cert, &raw.client_key) {
            (Some(c), Some(k)) => Some((cx.dir.join(c), cx.dir.join(k))),
            (None, None) => None,
            _ => {
                problems.at(
                    path,
                    "`client_cert` and `client_key` go together: give both or neither",
                );
                None
            }
        },
    };
    if let Some(name) = url.strip_prefix("builtin:") {
        if !tls.is_empty() {
            problems.at(
                path,
                "`ca_file`, `client_cert` and `client_key` apply to https upstreams only",
            );
        }
        return match Builtin::from_name(name) {
            Some(b) => Some(Upstream::Builtin(b)),
            None => {
                let hint = closest(name, &Builtin::NAMES)
                    .map(|b| format!("; did you mean `builtin:{b}`?"))
                    .unwrap_or_default();
                problems.at(
                    path,
                    format!(
                        "unknown built-in upstream `{name}`, expected one of {}{hint}",
                        Builtin::NAMES.map(|n| format!("`builtin:{n}`")).join(", ")
                    ),
                );
                None
            }
        };
    }
    let key = (url.to_string(), tls);
    if let Some(existing) = clients.get(&key) {
        return Some(Upstream::Http(existing.clone()));
    }
    match HttpUpstream::new(url, &key.1, &defaults.client) {
        Ok(u) => {
            let u = Arc::new(u);
            clients.insert(key, u.clone());
            Some(Upstream::Http(u))
        }
        Err(message) => {
            problems.at(path, message);
            None
        }
    }
}

/// Checks across routes: unique names, and no route hidden behind an earlier one.
fn check_route_set(routes: &[(usize, Route)], problems: &mut Problems<'_>) {
    for (n, (i, route)) in routes.iter().enumerate() {
        for (j, earlier) in &routes[..n] {
            if earlier.name == route.name {
                problems.at(
                    &format!("routes[{i}].name"),
                    format!("route name `{}` is already used by routes[{j}]", route.name),
                );
            } else if earlier.shadows(route) {
                problems.at(
                    &format!("routes[{i}].match"),
                    format!(
                        "route `{}` is never reached: `{}` (routes[{j}]) comes first and matches every request it would; put the more specific route first",
                        route.name, earlier.name
                    ),
                );
            }
        }
    }
}

/// serde_yaml ends messages with " at line L column C"; we print the position ourselves.
fn strip_location(message: &str) -> &str {
    match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_plausible_typos_only() {
        assert_eq!(
            closest("prefx", &["exact", "prefix", "methods", "host"]),
            Some("prefix")
        );
        assert_eq!(
            closest("upstrem", &["name", "match", "upstream", "auth"]),
            Some("upstream")
        );
        assert_eq!(closest("GTE", &METHODS), Some("GET"));
        assert_eq!(closest("curses", &["courses", "echo"]), Some("courses"));
        assert_eq!(closest("zzz", &["exact", "prefix"]), None);
        assert_eq!(closest("auth", &["name", "match"]), None);
    }

    #[test]
    fn expected_names_are_read_from_serdes_message() {
        let m = "unknown field `prefx`, expected one of `exact`, `prefix`, `methods`, `host`";
        assert_eq!(expected_names(m), ["exact", "prefix", "methods", "host"]);
        assert_eq!(unknown_name(m, "unknown field `"), Some("prefx"));
    }
}
