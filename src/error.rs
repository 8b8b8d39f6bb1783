//! Everything that can go wrong once a request is accepted, and the one place that turns it into
//! an HTTP answer: status, a JSON body in the tutorial's `{"code", "description"}` shape, and
//! the headers that go with it. Bodies say what the caller can fix, never our internals.

use std::time::Duration;

use http::header::{
    HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode};

use crate::auth::{AuthCode, AuthFailure};
use crate::body::{self, Body, BoxError};
use crate::path::PathError;

/// The realm of our `WWW-Authenticate` challenges.
const REALM: &str = "cryptr-gateway";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches the request")]
    RouteNotFound,
    #[error("the route does not take this method")]
    MethodNotAllowed(Vec<Method>),
    #[error("invalid request path: {}", .0.describe())]
    InvalidPath(PathError),
    /// A method override (where it was found) that routes would send elsewhere, or that names
    /// no method (`route::check_method_override`).
    #[error("the {0} names a method routed elsewhere")]
    MethodOverride(&'static str),
    #[error("token refused: {}", .0.description)]
    Unauthorized(AuthFailure),
    #[error("token lacks what the route requires: {description}")]
    Forbidden {
        code: &'static str,
        description: String,
    },
    #[error("the issuer's keys cannot be had")]
    JwksUnavailable { retry_after: Duration },
    #[error("request headers over the limit")]
    HeadersTooLarge,
    #[error("request target over the limit")]
    UriTooLong,
    #[error("ambiguous or broken HTTP/1.1 framing: {0}")]
    BadFraming(&'static str),
    #[error("missing, repeated or malformed Host: {0}")]
    InvalidHost(&'static str),
    #[error("the route has its maximum of requests in flight")]
    RouteOverloaded,
    #[error("request body over the route's limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("the client's request body failed: {0}")]
    ClientBody(#[source] BoxError),
    #[error("upstream unreachable: {0}")]
    UpstreamUnavailable(#[source] BoxError),
    #[error("upstream did not answer in time")]
    UpstreamTimeout,
    #[error("upstream answered with an invalid response: {0}")]
    UpstreamProtocol(#[source] BoxError),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::RouteNotFound => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::JwksUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::InvalidPath(_)
            | GatewayError::MethodOverride(_)
            | GatewayError::ClientBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::UriTooLong => StatusCode::URI_TOO_LONG,
            GatewayError::BadFraming(_) | GatewayError::InvalidHost(_) => StatusCode::BAD_REQUEST,
            GatewayError::RouteOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnavailable(_) | GatewayError::UpstreamProtocol(_) => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The stable, machine-readable code of the JSON body (and of logs and metrics).
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::RouteNotFound => "route_not_found",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::Unauthorized(f) => f.code.as_str(),
            GatewayError::Forbidden { code, .. } => code,
            GatewayError::JwksUnavailable { .. } => "jwks_unavailable",
            GatewayError::InvalidPath(_) => "invalid_path",
            GatewayError::MethodOverride(_) => "method_override",
            GatewayError::HeadersTooLarge => "headers_too_large",
            GatewayError::UriTooLong => "uri_too_long",
            GatewayError::BadFraming(_) => "bad_framing",
            GatewayError::InvalidHost(_) => "invalid_host",
            GatewayError::RouteOverloaded => "route_overloaded",
            GatewayError::BodyTooLarge { .. } => "body_too_large",
            GatewayError::ClientBody(_) => "bad_request_body",
            GatewayError::UpstreamUnavailable(_) => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::UpstreamProtocol(_) => "upstream_error",
        }
    }

    /// What the caller reads: what happened and what they can do, nothing about our insides.
    pub fn description(&self) -> String {
        match self {
            GatewayError::RouteNotFound => "no route of this gateway matches the request".into(),
            GatewayError::MethodNotAllowed(allowed) => format!(
                "this path takes {} only",
                allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            GatewayError::Unauthorized(f) => f.description.to_string(),
            GatewayError::Forbidden { description, .. } => description.clone(),
            GatewayError::JwksUnavailable { .. } => {
                "the keys to check tokens with cannot be had right now; try again later".into()
            }
            GatewayError::InvalidPath(e) => e.describe().into(),
            GatewayError::MethodOverride(source) => format!(
                "the request's {source} names a method that this gateway routes elsewhere, or no method; send the request with the method it means"
            ),
            GatewayError::HeadersTooLarge => {
                "the request headers are larger or more numerous than this gateway accepts".into()
            }
            GatewayError::UriTooLong => {
                "the request's path and query are longer than this gateway accepts".into()
            }
            GatewayError::BadFraming(why) => format!(
                "the request's HTTP/1.1 framing is ambiguous or broken ({why}); the connection is closed"
            ),
            GatewayError::InvalidHost(why) => format!("{why}; the connection is closed"),
            GatewayError::RouteOverloaded => {
                "this route is serving as many requests as it may; try again shortly".into()
            }
            GatewayError::BodyTooLarge { limit } => {
                format!("the request body is larger than this route accepts ({limit} bytes)")
            }
            GatewayError::ClientBody(_) => "the request body could not be read".into(),
            GatewayError::UpstreamUnavailable(_) => {
                "the service behind this route cannot be reached; try again later".into()
            }
            GatewayError::UpstreamTimeout => {
                "the service behind this route did not answer in time".into()
            }
            GatewayError::UpstreamProtocol(_) => {
                "the service behind this route sent an invalid answer".into()
            }
        }
    }

    /// The reason a token check refused the request, for the `auth_failures` metric.
    pub fn auth_failure(&self) -> Option<&'static str> {
        match self {
            GatewayError::Unauthorized(_)
            | GatewayError::Forbidden { .. }
            | GatewayError::JwksUnavailable { .. } => Some(self.code()),
            _ => None,
        }
    }

    /// How the upstream failed (`connect`, `timeout`, `reset`), for the `upstream_errors`
    /// metric. `reset` covers a connection closed or broken mid-exchange and an answer that
    /// is not HTTP.
    pub fn upstream_kind(&self) -> Option<&'static str> {
        match self {
            GatewayError::UpstreamUnavailable(_) => Some("connect"),
            GatewayError::UpstreamTimeout => Some("timeout"),
            GatewayError::UpstreamProtocol(_) => Some("reset"),
            _ => None,
        }
    }

    /// True for the faults that are ours or our upstreams', logged loudly.
    pub fn is_server_fault(&self) -> bool {
        self.status().is_server_error()
    }

    pub fn to_response(&self) -> Response<Body> {
        let json = serde_json::json!({ "code": self.code(), "description": self.description() });
        let mut res = Response::new(body::full(json.to_string()));
        *res.status_mut() = self.status();
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            GatewayError::MethodNotAllowed(allowed) => {
                let list = allowed
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&list) {
                    headers.insert(ALLOW, v);
                }
            }
            GatewayError::Unauthorized(_) | GatewayError::Forbidden { .. } => {
                if let Some(v) = self.challenge() {
                    headers.insert(WWW_AUTHENTICATE, v);
                }
            }
            GatewayError::JwksUnavailable { retry_after } => {
                headers.insert(RETRY_AFTER, HeaderValue::from(retry_after.as_secs().max(1)));
            }
            GatewayError::RouteOverloaded => {
                headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
            }
            GatewayError::BadFraming(_) | GatewayError::InvalidHost(_) => {
                // Nothing more on this connection can be read reliably (or, for a `Host`,
                // trusted to come from an honest client).
                headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        res
    }

    /// RFC 6750 section 3: no error attribute when no token was sent; `invalid_token` for a
    /// refused one; `insufficient_scope` when the token is good but not enough.
    fn challenge(&self) -> Option<HeaderValue> {
        let (error, description) = match self {
            GatewayError::Unauthorized(f) if f.code == AuthCode::HeaderMissing => {
                return Some(HeaderValue::from_static("Bearer realm=\"cryptr-gateway\""))
            }
            GatewayError::Unauthorized(f) => ("invalid_token", f.description.as_ref()),
            GatewayError::Forbidden { description, .. } => {
                ("insufficient_scope", description.as_str())
            }
            _ => return None,
        };
        // A quoted-string may not hold `"` or `\` unescaped; our sentences avoid them, but
        // keep the header valid whatever they say.
        let description: String = description
            .chars()
            .filter(|c| *c != '"' && *c != '\\')
            .collect();
        HeaderValue::from_str(&format!(
            "Bearer realm=\"{REALM}\", error=\"{error}\", error_description=\"{description}\""
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn every_variant() -> Vec<(GatewayError, u16, &'static str)> {
        vec![
            (GatewayError::RouteNotFound, 404, "route_not_found"),
            (
                GatewayError::MethodNotAllowed(vec![Method::GET]),
                405,
                "method_not_allowed",
            ),
            (
                GatewayError::InvalidPath(PathError::DotSegment),
                400,
                "invalid_path",
            ),
            (
                GatewayError::MethodOverride("X-HTTP-Method-Override header"),
                400,
                "method_override",
            ),
            (GatewayError::HeadersTooLarge, 431, "headers_too_large"),
            (GatewayError::UriTooLong, 414, "uri_too_long"),
            (GatewayError::BadFraming("x"), 400, "bad_framing"),
            (GatewayError::InvalidHost("x"), 400, "invalid_host"),
            (GatewayError::RouteOverloaded, 503, "route_overloaded"),
            (
                AuthFailure::new(AuthCode::HeaderMissing, "send a token").into(),
                401,
                "authorization_header_missing",
            ),
            (
                AuthFailure::new(AuthCode::InvalidHeader, "x").into(),
                401,
                "invalid_header",
            ),
            (
                AuthFailure::new(AuthCode::TokenExpired, "x").into(),
                401,
                "token_expired",
            ),
            (
                AuthFailure::new(AuthCode::InvalidClaims, "x").into(),
                401,
                "invalid_claims",
            ),
            (
                AuthFailure::new(AuthCode::NoRsaKey, "x").into(),
                401,
                "no_rsa_key",
            ),
            (
                AuthFailure::new(AuthCode::InvalidToken, "x").into(),
                401,
                "invalid_token",
            ),
            (
                GatewayError::Forbidden {
                    code: "insufficient_scope",
                    description: "x".into(),
                },
                403,
                "insufficient_scope",
            ),
            (
                GatewayError::JwksUnavailable {
                    retry_after: Duration::from_secs(3),
                },
                503,
                "jwks_unavailable",
            ),
            (
                GatewayError::BodyTooLarge { limit: 1 },
                413,
                "body_too_large",
            ),
            (
                GatewayError::ClientBody("x".into()),
                400,
                "bad_request_body",
            ),
            (
                GatewayError::UpstreamUnavailable("refused".into()),
                502,
                "upstream_unavailable",
            ),
            (GatewayError::UpstreamTimeout, 504, "upstream_timeout"),
            (
                GatewayError::UpstreamProtocol("garbage".into()),
                502,
                "upstream_error",
            ),
        ]
    }

    #[tokio::test]
    async fn each_error_maps_to_its_status_code_and_json_body() {
        for (err, status, code) in every_variant() {
            let res = err.to_response();
            assert_eq!(res.status().as_u16(), status, "{code}");
            assert_eq!(res.headers()[CONTENT_TYPE], "application/json");
            let bytes = res.into_body().collect().await.unwrap().to_bytes();
            let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(json["code"], code);
            assert!(json["description"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[test]
    fn upstream_details_never_reach_the_body() {
        let err = GatewayError::UpstreamUnavailable("connect to 10.1.2.3:5432 refused".into());
        assert!(!err.description().contains("10.1.2.3"));
    }

    #[test]
    fn method_not_allowed_lists_the_methods_in_allow() {
        let res = GatewayError::MethodNotAllowed(vec![Method::GET, Method::HEAD]).to_response();
        assert_eq!(res.headers()[ALLOW], "GET, HEAD");
    }
}

impl From<AuthFailure> for GatewayError {
    fn from(f: AuthFailure) -> Self {
        GatewayError::Unauthorized(f)
    }
}

#[cfg(test)]
mod challenge_tests {
    use super::*;

    #[test]
    fn challenges_follow_rfc_6750() {
        let missing: GatewayError = AuthFailure::new(AuthCode::HeaderMissing, "send one").into();
        assert_eq!(
            missing.to_response().headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"cryptr-gateway\""
        );
        let expired: GatewayError =
            AuthFailure::new(AuthCode::TokenExpired, "the token has expired").into();
        assert_eq!(
            expired.to_response().headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"cryptr-gateway\", error=\"invalid_token\", error_description=\"the token has expired\""
        );
        let scope = GatewayError::Forbidden {
            code: "insufficient_scope",
            description: "needs \"admin\"".into(),
        };
        assert_eq!(
            scope.to_response().headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"cryptr-gateway\", error=\"insufficient_scope\", error_description=\"needs admin\""
        );
        let unavailable = GatewayError::JwksUnavailable {
            retry_after: Duration::from_secs(7),
        };
        assert_eq!(unavailable.to_response().headers()[RETRY_AFTER], "7");
    }
}
