//! Everything that can go wrong once a request is accepted, and the one place that turns it into
//! an HTTP answer: status, a JSON body in the tutorial's `{"code", "description"}` shape, and
//! the headers that go with it. Bodies say what the caller can fix, never our internals.

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

use crate::body::{self, Body, BoxError};
use crate::path::PathError;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no route matches the request")]
    RouteNotFound,
    #[error("the route does not take this method")]
    MethodNotAllowed(Vec<Method>),
    #[error("invalid request path: {}", .0.describe())]
    InvalidPath(PathError),
    #[error("request headers over the limit")]
    HeadersTooLarge,
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
            GatewayError::InvalidPath(_) | GatewayError::ClientBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
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
            GatewayError::InvalidPath(_) => "invalid_path",
            GatewayError::HeadersTooLarge => "headers_too_large",
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
            GatewayError::InvalidPath(e) => e.describe().into(),
            GatewayError::HeadersTooLarge => {
                "the request headers are larger or more numerous than this gateway accepts".into()
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
        if let GatewayError::MethodNotAllowed(allowed) = self {
            let list = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(v) = HeaderValue::from_str(&list) {
                headers.insert(ALLOW, v);
            }
        }
        res
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
            (GatewayError::HeadersTooLarge, 431, "headers_too_large"),
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
