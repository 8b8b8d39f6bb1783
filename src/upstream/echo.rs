//! `builtin:echo`: answers with what it received, after the gateway's rewriting: method, path,
//! query, version, headers and the body's length (counted as it streams, never held).

use std::collections::BTreeMap;

use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response};
use http_body_util::BodyExt;

use crate::body::{self, Body};
use crate::error::GatewayError;

pub(crate) async fn serve(
    req: Request<Body>,
    max_body: u64,
) -> Result<Response<Body>, GatewayError> {
    let (parts, mut body) = req.into_parts();
    let mut length: u64 = 0;
    let mut trailers = BTreeMap::<String, Vec<String>>::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| crate::proxy::client_body_error(e, max_body))?;
        if let Some(data) = frame.data_ref() {
            length += data.len() as u64;
        } else if let Some(t) = frame.trailers_ref() {
            trailers = header_map(t);
        }
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
        "query": parts.uri.query(),
        "version": format!("{:?}", parts.version),
        "headers": header_map(&parts.headers),
        "body_length": length,
        "trailers": trailers,
    });
    let mut res = Response::new(body::full(json.to_string()));
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(res)
}

fn header_map(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    map
}
