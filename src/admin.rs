//! The admin listener: health, readiness, Prometheus metrics and the effective config, on
//! its own address (default `127.0.0.1:9901`), never on the traffic port.

/// 200 while the process serves (the liveness probe).
pub const HEALTH_PATH: &str = "/healthz";
/// 200 once every issuer has a usable key set, 503 naming what is missing otherwise (the
/// readiness probe).
pub const READY_PATH: &str = "/readyz";
/// Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";
/// The effective compiled config as JSON, secrets redacted.
pub const CONFIG_PATH: &str = "/config";

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{KeySource, ScopeRule};
use crate::config::Plan;
use crate::route::{Auth, PathMatch};
use crate::server::Shared;
use crate::upstream::Upstream;

/// Serves the admin endpoints until `stop` says so. HTTP/1.1 only; each connection is
/// bounded by a short header timeout, since nothing here streams.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "admin accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(answer(&shared, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

fn answer(shared: &Shared, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"code": "method_not_allowed", "description": "the admin endpoints take GET only"}),
        );
    }
    match req.uri().path() {
        HEALTH_PATH => json(StatusCode::OK, &json!({"status": "ok"})),
        READY_PATH => {
            let plan = shared.plan();
            let mut missing = readiness(&plan);
            if shared.is_draining() {
                missing.insert(0, "shutting down: draining in-flight requests".into());
            }
            if missing.is_empty() {
                json(StatusCode::OK, &json!({"ready": true}))
            } else {
                json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"ready": false, "missing": missing}),
                )
            }
        }
        METRICS_PATH => match shared.metrics.encode() {
            Ok(text) => {
                let mut res = Response::new(Full::new(Bytes::from(text)));
                res.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                res
            }
            Err(_) => json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"code": "metrics_failed", "description": "the metrics could not be encoded"}),
            ),
        },
        CONFIG_PATH => json(StatusCode::OK, &effective_config(&shared.plan())),
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({"code": "not_found", "description": format!("admin endpoints: {HEALTH_PATH}, {READY_PATH}, {METRICS_PATH}, {CONFIG_PATH}")}),
        ),
    }
}

fn json(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::from(body.to_string())));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// What keeps the plan from serving every route: issuers without a usable key set. Empty
/// when ready.
pub fn readiness(plan: &Plan) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    plan.auth
        .issuers
        .iter()
        .filter(|i| seen.insert(i.iss.as_str()))
        .filter_map(|i| {
            let status = plan.auth.cache.status(&i.keys);
            (status.keys == 0).then(|| match status.last_error {
                Some(e) => format!("issuer {}: no keys yet ({e})", i.iss),
                None => format!("issuer {}: no keys yet", i.iss),
            })
        })
        .collect()
}

/// The compiled plan as JSON: what the gateway actually does, defaults filled in. Nothing
/// secret is in a plan (upstream URLs carry no credentials, TLS keys are files named, not
/// read out); URLs still lose any query string, in case one carries a token.
pub fn effective_config(plan: &Plan) -> Value {
    let l = &plan.limits;
    let routes: Vec<Value> = plan
        .routes
        .iter()
        .map(|r| {
            let (kind, path) = match &r.path {
                PathMatch::Exact(p) => ("exact", p),
                PathMatch::Prefix(p) => ("prefix", p),
            };
            let auth = match &r.auth {
                Auth::None => json!("none"),
                Auth::Token(a) => {
                    let mut issuers: Vec<&str> = a.issuers.iter().map(|i| i.name.as_str()).collect();
                    issuers.dedup();
                    json!({
                        "issuers": issuers,
                        "optional": a.optional,
                        "scopes": a.scopes.as_ref().map(|s| match s {
                            ScopeRule::All(v) => json!({"all": v}),
                            ScopeRule::Any(v) => json!({"any": v}),
                        }),
                        "claims": a.claims.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                        "claims_to_headers": a.claims_to_headers.iter().map(|(c, h)| (c.clone(), json!(h.as_str()))).collect::<serde_json::Map<_, _>>(),
                        "claims_header": a.claims_header.as_ref().map(|h| h.as_str()),
                        "forward_authorization": a.forward_authorization,
                        "token": {"cookie": a.sources.cookie, "query": a.sources.query},
                    })
                }
            };
            json!({
                "name": r.name,
                "match": {
                    kind: path,
                    "methods": r.methods.as_ref().map(|m| m.iter().map(Method::as_str).collect::<Vec<_>>()),
                    "host": r.host,
                },
                "upstream": match &r.upstream {
                    Upstream::Http(u) => json!(redact_url(u.url())),
                    Upstream::Builtin(_) => json!(r.upstream.label()),
                },
                "auth": auth,
                "cors": r.cors.as_deref().map(cors),
                "strip_prefix": r.strip_prefix,
                "preserve_host": r.preserve_host,
                "timeout": humantime::format_duration(r.timeout).to_string(),
                "max_body": r.max_body,
                "max_concurrent_requests": r.concurrency.limit,
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let issuers: Vec<Value> = plan
        .auth
        .issuers
        .iter()
        .filter(|i| seen.insert(i.iss.as_str()))
        .map(|i| {
            let keys = match &i.keys.source {
                KeySource::Static(set) => json!({"file": format!("{} key(s)", set.len())}),
                KeySource::Url { url, fallback } => {
                    json!({"url": redact_url(url), "fallback": fallback.as_deref().map(redact_url)})
                }
                KeySource::Discovery { issuer } => json!({"discovery": redact_url(issuer)}),
            };
            let s = &i.keys.settings;
            json!({
                "name": i.name,
                "iss": i.iss,
                "audiences": i.audiences,
                "client_ids": i.client_ids,
                "algorithms": i.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
                "leeway_seconds": i.leeway,
                "required_claims": i.required_claims,
                "max_token_size": i.max_token_size,
                "claims_to_headers": i.claims_to_headers.iter().map(|(c, h)| (c.clone(), json!(h.as_str()))).collect::<serde_json::Map<_, _>>(),
                "claims_header": i.claims_header.as_ref().map(|h| h.as_str()),
                "keys": keys,
                "jwks": {
                    "timeout": humantime::format_duration(s.timeout).to_string(),
                    "ttl": humantime::format_duration(s.ttl).to_string(),
                    "min_ttl": humantime::format_duration(s.min_ttl).to_string(),
                    "max_ttl": humantime::format_duration(s.max_ttl).to_string(),
                    "min_refresh_interval": humantime::format_duration(s.min_refresh_interval).to_string(),
                    "max_stale": humantime::format_duration(s.max_stale).to_string(),
                    "max_size": s.max_size,
                },
            })
        })
        .collect();
    json!({
        "listen": plan.listen.to_string(),
        "tls": plan.tls.as_ref().map(|t| json!({"cert": t.cert.display().to_string(), "key": "<redacted>"})),
        "admin": plan.admin.map(|a| a.to_string()),
        "trusted_proxies": plan.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "limits": {
            "max_header_size": l.max_header_size,
            "max_headers": l.max_headers,
            "header_read_timeout": humantime::format_duration(l.header_read_timeout).to_string(),
            "idle_timeout": humantime::format_duration(l.idle_timeout).to_string(),
            "drain_timeout": humantime::format_duration(l.drain_timeout).to_string(),
            "max_connections": l.max_connections,
            "max_uri_length": l.max_uri_length,
        },
        "dev_issuer": plan.dev_issuer.is_some(),
        "token_cache": plan.auth.token_cache.is_some(),
        "cors": plan.cors.as_deref().map(cors),
        "issuers": issuers,
        "routes": routes,
    })
}

fn cors(p: &crate::cors::CorsPolicy) -> Value {
    let mut origins: Vec<String> = p.origins.exact.iter().map(ToString::to_string).collect();
    origins.sort();
    origins.extend(p.origins.patterns.iter().map(ToString::to_string));
    if p.origins.any {
        origins.push("*".into());
    }
    let mut headers: Vec<&str> = p.headers.iter().map(String::as_str).collect();
    headers.sort_unstable();
    if p.any_header {
        headers.push("*");
    }
    json!({
        "allowed_origins": origins,
        "allowed_methods": p.methods.iter().map(Method::as_str).collect::<Vec<_>>(),
        "allowed_headers": headers,
        "expose_headers": p.expose_headers.as_ref().and_then(|v| v.to_str().ok()),
        "allow_credentials": p.allow_credentials,
        "allow_private_network": p.allow_private_network,
        "max_age": p.max_age.as_ref().and_then(|v| v.to_str().ok()),
    })
}

/// A URL without userinfo or query string.
fn redact_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_credentials_and_queries() {
        assert_eq!(redact_url("https://u:p@h:1/a?t=x"), "https://h:1/a");
        assert_eq!(redact_url("http://h"), "http://h");
    }
}
