//! Entry points for the fuzz targets in `fuzz/` (not a public API: hidden, unstable).
//!
//! The fuzzers drive the very functions the request path calls; the ones that are
//! crate-private are re-exported here, thinly, and nothing else.
#![doc(hidden)]

use std::sync::Arc;

use http::{HeaderMap, Method, Uri};

use crate::auth::{AuthFailure, AuthPlan, Identity, RouteAuth, TokenSources};
use crate::error::GatewayError;
use crate::route::Route;

/// `route::select`: the first route for this method, host and (normalised) path.
pub fn select_route<'a>(
    routes: &'a [Arc<Route>],
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Result<&'a Arc<Route>, GatewayError> {
    crate::route::select(routes, method, host, path)
}

/// `route::preflight_target`: the route whose CORS policy answers a preflight.
pub fn preflight_target<'a>(
    routes: &'a [Arc<Route>],
    method: &Method,
    host: Option<&str>,
    path: &str,
) -> Option<&'a Arc<Route>> {
    crate::route::preflight_target(routes, method, host, path)
}

/// `route::request_host`: the host a request is addressed to, without port.
pub fn request_host<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<&'a str> {
    crate::route::request_host(uri, headers)
}

/// `auth::token::extract` and `Found::text`: the token as found in the request and checked
/// to be one token of text, or `None`.
pub fn extract_token(
    headers: &HeaderMap,
    query: Option<&str>,
    sources: &TokenSources,
) -> Result<Option<String>, AuthFailure> {
    crate::auth::token::extract(headers, query, sources)
        .and_then(|t| t.map(|t| t.text().map(str::to_owned)).transpose())
}

/// `auth::token::parse`, reduced to what a fuzzer can check: the header's `alg`, `kid` and
/// `iss`, the claims, and the signing input.
pub struct ParsedToken {
    pub alg: String,
    pub kid: Option<String>,
    pub header_iss: Option<String>,
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub signing_input: String,
    pub signature: String,
}

pub fn parse_token(token: &str, max_size: usize) -> Result<ParsedToken, AuthFailure> {
    crate::auth::token::parse(token, max_size).map(|p| ParsedToken {
        alg: p.header.alg,
        kid: p.header.kid,
        header_iss: p.header.iss,
        claims: p.claims,
        signing_input: p.signing_input.to_string(),
        signature: p.signature.to_string(),
    })
}

/// `auth::authenticate`: what the request path runs for a route that names issuers.
pub async fn authenticate(
    plan: &AuthPlan,
    route: &RouteAuth,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    crate::auth::authenticate(plan, route, headers, query).await
}
