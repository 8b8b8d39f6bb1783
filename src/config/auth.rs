//! `issuers:` and a route's `auth:` compiled into verifiers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use jsonwebtoken::Algorithm;

use super::compile::{closest, positive, Context, Problems};
use super::raw::{RawAuth, RawIssuer, RawRouteAuth};
use crate::auth::keys::parse_jwks;
use crate::auth::{Issuer, JwksSettings, KeySource, RouteAuth, ScopeRule, TokenSources};
use crate::route::Auth;

const DEFAULT_JWKS_PATH: &str = "/.well-known";
/// Cryptr's Ruby SDK reads keys here; tried when the default path answers without keys.
const FALLBACK_JWKS_PATH: &str = "/.well-known/jwks";
const DEFAULT_MAX_TOKEN_SIZE: u64 = 8 * 1024;
const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// Compiled issuers by their `issuers:` name (a Cryptr entry gives one per tenant).
pub(super) type Issuers = HashMap<String, Vec<Arc<Issuer>>>;

/// Headers the gateway owns: a claim mapping may not name them.
const RESERVED_HEADERS: [&str; 13] = [
    "host",
    "authorization",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "via",
    "forwarded",
    "x-forwarded-for",
    "x-request-id",
];

pub(super) fn compile_issuers(
    raw: BTreeMap<String, serde_yaml::Value>,
    cx: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Issuers {
    let mut out = Issuers::new();
    let mut seen_iss: HashMap<String, String> = HashMap::new();
    for (name, value) in raw {
        let prefix = format!("issuers.{name}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.at(
                &prefix,
                format!("`{name}` is not an issuer name: use letters, digits, `-`, `_` and `.`"),
            );
            continue;
        }
        let raw: RawIssuer = match serde_path_to_error::deserialize(value) {
            Ok(r) => r,
            Err(e) => {
                problems.serde(&prefix, e);
                continue;
            }
        };
        let before = problems.list.len();
        let issuers = compile_issuer(&name, &prefix, raw, cx, problems);
        for issuer in &issuers {
            if let Some(other) = seen_iss.insert(issuer.iss.clone(), name.clone()) {
                problems.at(
                    &prefix,
                    format!(
                        "issuer `{}` is also declared by `issuers.{other}`",
                        issuer.iss
                    ),
                );
            }
        }
        if problems.list.len() == before {
            out.insert(name, issuers);
        }
    }
    out
}

fn compile_issuer(
    name: &str,
    prefix: &str,
    raw: RawIssuer,
    cx: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Vec<Arc<Issuer>> {
    let field = |f: &str| format!("{prefix}.{f}");
    let settings = jwks_settings(&field("jwks"), &raw, problems);

    // Which issuer strings, and where each one's keys come from.
    let file_keys = raw.jwks_file.as_ref().and_then(|f| {
        let path = cx.dir.join(f);
        match std::fs::read(&path)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
            .and_then(|b| parse_jwks(&b).map_err(|e| format!("`{}`: {e}", path.display())))
        {
            Ok((set, _)) if set.is_empty() => {
                problems.at(
                    &field("jwks_file"),
                    format!("`{}` holds no usable signing key", path.display()),
                );
                None
            }
            Ok((set, _)) => Some(Arc::new(set)),
            Err(e) => {
                problems.at(&field("jwks_file"), e);
                None
            }
        }
    });
    if raw.jwks_file.is_some() && raw.jwks_uri.is_some() {
        problems.at(
            &field("jwks_uri"),
            "give either `jwks_uri` or `jwks_file`, not both",
        );
    }
    let targets: Vec<(String, KeySource)> = match (&raw.cryptr, &raw.issuer) {
        (Some(_), Some(_)) => {
            problems.at(
                prefix,
                "give either `cryptr` (a Cryptr base URL and tenants) or `issuer`, not both",
            );
            return Vec::new();
        }
        (None, None) => {
            problems.at(prefix, "needs `cryptr: { base_url, tenants }` or `issuer:`");
            return Vec::new();
        }
        (Some(c), None) => {
            if raw.jwks_uri.is_some() {
                problems.at(
                    &field("jwks_uri"),
                    "a Cryptr issuer's keys are at `<issuer><jwks_path>`; set `jwks_path` instead",
                );
            }
            let base = c.base_url.trim_end_matches('/');
            if let Err(e) = check_url(base, false) {
                problems.at(&field("cryptr.base_url"), e);
            }
            let path = raw.jwks_path.as_deref().unwrap_or(DEFAULT_JWKS_PATH);
            if !path.starts_with('/') {
                problems.at(&field("jwks_path"), format!("`{path}` must start with `/`"));
            }
            if c.tenants.is_empty() {
                problems.at(
                    &field("cryptr.tenants"),
                    "list at least one tenant (its domain, as in `<base_url>/t/<tenant>`)",
                );
            }
            c.tenants
                .iter()
                .enumerate()
                .filter_map(|(i, tenant)| {
                    if tenant.is_empty()
                        || !tenant
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                    {
                        problems.at(
                            &format!("{prefix}.cryptr.tenants[{i}]"),
                            format!("`{tenant}` is not a tenant domain"),
                        );
                        return None;
                    }
                    let iss = format!("{base}/t/{tenant}");
                    let source = match &file_keys {
                        Some(keys) => KeySource::Static(keys.clone()),
                        None => KeySource::Url {
                            url: format!("{iss}{path}"),
                            fallback: raw
                                .jwks_path
                                .is_none()
                                .then(|| format!("{iss}{FALLBACK_JWKS_PATH}")),
                        },
                    };
                    Some((iss, source))
                })
                .collect()
        }
        (None, Some(iss)) => {
            if raw.jwks_path.is_some() {
                problems.at(&field("jwks_path"), "applies to `cryptr` issuers; a generic issuer takes `jwks_uri` (or OIDC discovery without it)");
            }
            if iss.is_empty() {
                problems.at(&field("issuer"), "is empty");
            }
            let source = match (&file_keys, &raw.jwks_uri) {
                (Some(keys), _) => KeySource::Static(keys.clone()),
                (None, Some(uri)) => {
                    if let Err(e) = check_url(uri, true) {
                        problems.at(&field("jwks_uri"), e);
                    }
                    KeySource::Url {
                        url: uri.clone(),
                        fallback: None,
                    }
                }
                (None, None) => {
                    if let Err(e) = check_url(iss, true) {
                        problems.at(&field("issuer"), format!("{e} (without `jwks_uri` or `jwks_file`, keys are found by OIDC discovery from the issuer URL)"));
                    }
                    KeySource::Discovery {
                        issuer: iss.clone(),
                    }
                }
            };
            vec![(iss.clone(), source)]
        }
    };

    if raw.audiences.is_empty() && raw.client_ids.is_empty() {
        problems.at(
            prefix,
            "set `audiences` (what the token's `aud` must hold: for Cryptr, your front-end app's URL) or `client_ids`, or both",
        );
    }
    let algorithms = algorithms(&field("algorithms"), raw.algorithms.as_deref(), problems);
    let leeway = raw.leeway.map_or(DEFAULT_LEEWAY, |d| d.0);
    let max_token_size = raw.max_token_size.map_or(DEFAULT_MAX_TOKEN_SIZE, |s| s.0);
    if max_token_size < 512 {
        problems.at(&field("max_token_size"), "must be at least 512 bytes");
    }
    let (claims_to_headers, claims_header) = claim_headers(
        &field(""),
        &raw.claims_to_headers,
        raw.claims_header.as_deref(),
        problems,
    );

    targets
        .into_iter()
        .map(|(iss, source)| {
            Arc::new(Issuer {
                name: name.to_string(),
                keys: cx.issuer_keys(&iss, source, settings.clone()),
                iss,
                audiences: raw.audiences.clone(),
                client_ids: raw.client_ids.clone(),
                algorithms: algorithms.clone(),
                leeway: leeway.as_secs(),
                required_claims: raw.required_claims.clone(),
                max_token_size: usize::try_from(max_token_size).unwrap_or(usize::MAX),
                claims_to_headers: claims_to_headers.clone(),
                claims_header: claims_header.clone(),
            })
        })
        .collect()
}

fn jwks_settings(path: &str, raw: &RawIssuer, problems: &mut Problems<'_>) -> JwksSettings {
    let d = JwksSettings::default();
    let j = &raw.jwks;
    let at = |f: &str| format!("{path}.{f}");
    let s = JwksSettings {
        timeout: positive(problems, &at("timeout"), j.timeout.map(|d| d.0), d.timeout),
        ttl: positive(problems, &at("ttl"), j.ttl.map(|d| d.0), d.ttl),
        min_ttl: positive(problems, &at("min_ttl"), j.min_ttl.map(|d| d.0), d.min_ttl),
        max_ttl: positive(problems, &at("max_ttl"), j.max_ttl.map(|d| d.0), d.max_ttl),
        min_refresh_interval: j
            .min_refresh_interval
            .map_or(d.min_refresh_interval, |d| d.0),
        max_stale: positive(
            problems,
            &at("max_stale"),
            j.max_stale.map(|d| d.0),
            d.max_stale,
        ),
        max_size: j
            .max_size
            .map_or(d.max_size, |s| usize::try_from(s.0).unwrap_or(usize::MAX)),
    };
    if s.min_ttl > s.max_ttl {
        problems.at(&at("min_ttl"), "is longer than `max_ttl`");
    }
    s
}

fn check_url(url: &str, allow_path: bool) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("`{url}` is not a URL"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    if !allow_path && !matches!(uri.path(), "" | "/") {
        return Err(format!(
            "`{url}` has a path; give the base URL only, such as `https://auth.cryptr.eu`"
        ));
    }
    if uri.query().is_some() {
        return Err(format!("`{url}` has a query string"));
    }
    Ok(())
}

fn algorithms(path: &str, raw: Option<&[String]>, problems: &mut Problems<'_>) -> Vec<Algorithm> {
    let Some(raw) = raw else {
        return vec![Algorithm::RS256];
    };
    if raw.is_empty() {
        problems.at(
            path,
            "is empty: no token could pass; leave it out for the default `[RS256]`",
        );
    }
    const NAMES: [&str; 10] = [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "none",
    ];
    let mut out = Vec::new();
    for (i, name) in raw.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match name.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => problems.at(
                &at,
                format!(
                    "`{name}` needs a shared secret: it is never used with an issuer's public keys"
                ),
            ),
            Ok(a) => out.push(a),
            Err(_) => {
                let hint = closest(name, &NAMES[..9])
                    .map(|b| format!("; did you mean `{b}`?"))
                    .unwrap_or_default();
                problems.at(
                    &at,
                    format!("`{name}` is not a supported signature algorithm (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA){hint}"),
                );
            }
        }
    }
    out
}

fn header_name(path: &str, name: &str, problems: &mut Problems<'_>) -> Option<HeaderName> {
    let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
        problems.at(path, format!("`{name}` is not a header name"));
        return None;
    };
    if RESERVED_HEADERS.contains(&header.as_str()) || header.as_str().starts_with("x-forwarded-") {
        problems.at(
            path,
            format!(
                "`{name}` is a header the gateway manages; pick another name, such as `X-User-Id`"
            ),
        );
        return None;
    }
    Some(header)
}

fn header_map(
    path: &str,
    raw: &BTreeMap<String, String>,
    problems: &mut Problems<'_>,
) -> Vec<(String, HeaderName)> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for (claim, header) in raw {
        let at = format!("{path}.{claim}");
        if let Some(h) = header_name(&at, header, problems) {
            if !seen.insert(normalize(&h)) {
                problems.at(
                    &at,
                    format!("`{header}` is already the target of another claim"),
                );
            }
            out.push((claim.clone(), h));
        }
    }
    out
}

/// `claims_to_headers` and `claims_header` under `prefix` (which ends with `.`).
fn claim_headers(
    prefix: &str,
    map: &BTreeMap<String, String>,
    whole: Option<&str>,
    problems: &mut Problems<'_>,
) -> (Vec<(String, HeaderName)>, Option<HeaderName>) {
    let mapped = header_map(&format!("{prefix}claims_to_headers"), map, problems);
    let whole = whole.and_then(|h| header_name(&format!("{prefix}claims_header"), h, problems));
    (mapped, whole)
}

/// A header name as identity-header stripping compares it: lower case, `_` as `-`.
pub(super) fn normalize(h: &HeaderName) -> String {
    h.as_str().replace('_', "-")
}

pub(super) fn compile_route_auth(
    prefix: &str,
    raw: RawAuth,
    issuers: &Issuers,
    problems: &mut Problems<'_>,
) -> Option<Auth> {
    let raw: RawRouteAuth = match raw {
        RawAuth::None => return Some(Auth::None),
        RawAuth::Token(r) => r,
    };
    let field = |f: &str| format!("{prefix}.auth.{f}");
    let before = problems.list.len();
    if raw.issuers.is_empty() {
        problems.at(
            &field("issuers"),
            "is empty: name at least one issuer from `issuers:`",
        );
    }
    let known: Vec<&str> = issuers.keys().map(String::as_str).collect();
    let mut accepted = Vec::new();
    for (i, name) in raw.issuers.iter().enumerate() {
        match issuers.get(name) {
            Some(list) => accepted.extend(list.iter().cloned()),
            None => {
                let hint = closest(name, &known)
                    .map(|b| format!("; did you mean `{b}`?"))
                    .unwrap_or_default();
                problems.at(
                    &format!("{prefix}.auth.issuers[{i}]"),
                    format!("no issuer named `{name}` under `issuers:`{hint}"),
                );
            }
        }
    }
    let scopes = match raw.scopes {
        None => None,
        Some(s) => match (s.all, s.any) {
            (Some(list), None) if !list.is_empty() => Some(ScopeRule::All(list)),
            (None, Some(list)) if !list.is_empty() => Some(ScopeRule::Any(list)),
            (Some(_), Some(_)) => {
                problems.at(&field("scopes"), "give either `all` or `any`, not both");
                None
            }
            _ => {
                problems.at(
                    &field("scopes"),
                    "needs a non-empty `all: [...]` or `any: [...]`",
                );
                None
            }
        },
    };
    let mut claims = Vec::new();
    for (name, values) in raw.claims {
        if values.is_empty() {
            problems.at(
                &format!("{prefix}.auth.claims.{name}"),
                "is empty: no token could pass",
            );
        }
        claims.push((name, values));
    }
    let (claims_to_headers, claims_header) = claim_headers(
        &field(""),
        &raw.claims_to_headers,
        raw.claims_header.as_deref(),
        problems,
    );
    let sources = match raw.token {
        None => TokenSources::default(),
        Some(t) => {
            if t.cookie.as_deref() == Some("") || t.query.as_deref() == Some("") {
                problems.at(&field("token"), "a cookie or query parameter name is empty");
            }
            TokenSources {
                cookie: t.cookie,
                query: t.query,
            }
        }
    };
    if problems.list.len() != before {
        return None;
    }
    let max_token_size = accepted.iter().map(|i| i.max_token_size).max().unwrap_or(0);
    Some(Auth::Token(Box::new(RouteAuth {
        issuers: accepted,
        optional: raw.optional,
        scopes,
        claims,
        claims_to_headers,
        claims_header,
        forward_authorization: raw.forward_authorization.unwrap_or(true),
        sources,
        max_token_size,
    })))
}

/// `dev_issuer: true`: the embedded dev issuer, accepted by routes as issuer `dev`.
pub(super) fn dev_issuer(
    cx: &Context<'_>,
    issuers: &mut Issuers,
    problems: &mut Problems<'_>,
) -> Option<Arc<crate::demo::DevIssuer>> {
    if issuers.contains_key("dev") {
        problems.at("issuers.dev", "the name `dev` belongs to the dev issuer that `dev_issuer: true` starts; rename this one");
        return None;
    }
    let audience = "http://localhost:8080";
    // A reload keeps the running dev issuer: its keys and port, so its tokens stay valid.
    let carried = cx.carry.and_then(|c| c.dev_issuer.clone());
    let dev = match carried.map_or_else(|| crate::demo::DevIssuer::bind("dev", audience), Ok) {
        Ok(d) => d,
        Err(e) => {
            problems.at("dev_issuer", e);
            return None;
        }
    };
    let iss = dev.iss();
    let source = KeySource::Url {
        url: format!("{iss}{DEFAULT_JWKS_PATH}"),
        fallback: None,
    };
    let issuer = Issuer {
        name: "dev".into(),
        keys: cx.issuer_keys(&iss, source, JwksSettings::default()),
        iss,
        audiences: vec![audience.into()],
        client_ids: Vec::new(),
        algorithms: vec![Algorithm::RS256],
        leeway: DEFAULT_LEEWAY.as_secs(),
        required_claims: Vec::new(),
        max_token_size: DEFAULT_MAX_TOKEN_SIZE as usize,
        claims_to_headers: Vec::new(),
        claims_header: None,
    };
    issuers.insert("dev".into(), vec![Arc::new(issuer)]);
    Some(dev)
}
