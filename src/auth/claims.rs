//! Reading claims across Cryptr's token versions, and turning them into header values.
//!
//! v1 access tokens carry `tnt`, `cid` and `scp`; v3 ones `org`, `client_id` and `scope`.
//! A config written with either name works with both versions.

use http::HeaderValue;
use serde_json::{Map, Value};

/// The other name the same claim has in the other token version.
fn alias(name: &str) -> Option<&'static str> {
    match name {
        "tnt" => Some("org"),
        "org" => Some("tnt"),
        "cid" => Some("client_id"),
        "client_id" => Some("cid"),
        "scp" => Some("scope"),
        "scope" => Some("scp"),
        _ => None,
    }
}

/// The claim `name`, or its alias in the other token version.
pub fn claim<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c Value> {
    claims.get(name).filter(|v| !v.is_null()).or_else(|| {
        alias(name)
            .and_then(|a| claims.get(a))
            .filter(|v| !v.is_null())
    })
}

/// The token's scopes: `scp` or `scope`, each an array or a space-separated string.
pub fn scopes(claims: &Map<String, Value>) -> Vec<&str> {
    let mut out = Vec::new();
    for name in ["scp", "scope"] {
        match claims.get(name) {
            Some(Value::String(s)) => out.extend(s.split(' ').filter(|s| !s.is_empty())),
            Some(Value::Array(items)) => out.extend(items.iter().filter_map(Value::as_str)),
            _ => {}
        }
    }
    out
}

/// A claim as a header value: strings as they are, anything else as JSON. `None` when the
/// value cannot be a header (a control character): better no header than a forged one.
pub fn header_value(value: &Value) -> Option<HeaderValue> {
    match value {
        Value::String(s) => HeaderValue::from_bytes(s.as_bytes()).ok(),
        other => HeaderValue::from_str(&other.to_string()).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn v1_and_v3_names_stand_for_each_other() {
        let v1 = map(json!({"tnt": "acme", "cid": "c1"}));
        let v3 = map(json!({"org": "acme", "client_id": "c1"}));
        for claims in [&v1, &v3] {
            assert_eq!(claim(claims, "tnt"), Some(&json!("acme")));
            assert_eq!(claim(claims, "org"), Some(&json!("acme")));
            assert_eq!(claim(claims, "cid"), Some(&json!("c1")));
            assert_eq!(claim(claims, "client_id"), Some(&json!("c1")));
        }
        assert_eq!(claim(&map(json!({"sci": null})), "sci"), None);
    }

    #[test]
    fn scopes_come_from_arrays_or_strings_in_either_claim() {
        assert_eq!(
            scopes(&map(json!({"scp": ["openid", "email"]}))),
            ["openid", "email"]
        );
        assert_eq!(
            scopes(&map(json!({"scope": "read:a  write:b"}))),
            ["read:a", "write:b"]
        );
        assert_eq!(scopes(&map(json!({"scope": ["x"]}))), ["x"]);
        assert!(scopes(&map(json!({}))).is_empty());
    }

    #[test]
    fn header_values_refuse_control_characters() {
        assert_eq!(header_value(&json!("a@b.c")).unwrap(), "a@b.c");
        assert_eq!(header_value(&json!(["a", 1])).unwrap(), r#"["a",1]"#);
        assert_eq!(header_value(&json!(true)).unwrap(), "true");
        assert!(header_value(&json!("evil\r\nX-Admin: 1")).is_none());
    }
}
