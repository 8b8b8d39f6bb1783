//! The file as written: serde structs with `deny_unknown_fields`, and the few value types
//! (durations, sizes, upstreams) that know how to read themselves. Nothing here is used on the
//! request path; [`super::compile`] turns these into the plan.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Top level of `gateway.yaml`. Routes are kept as YAML values here and read one by one, so a
/// mistake in one route does not hide the mistakes in the next.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub listen: Option<String>,
    /// TLS on the traffic listener.
    pub tls: Option<RawServerTls>,
    /// The admin listener (health, readiness, metrics, effective config).
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    #[serde(default)]
    pub limits: RawLimits,
    /// The CORS policy of every route that does not override it.
    pub cors: Option<RawCors>,
    /// Starts the embedded dev issuer as issuer `dev` (local work only; warned at each start).
    pub dev_issuer: Option<bool>,
    /// Remembers verified tokens; default on.
    pub token_cache: Option<Toggle>,
    /// Read one by one, like routes.
    pub issuers: Option<BTreeMap<String, serde_yaml::Value>>,
    pub routes: Option<Vec<serde_yaml::Value>>,
}

/// One entry of `issuers:`: a Cryptr tenant list, or a generic issuer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIssuer {
    pub cryptr: Option<RawCryptr>,
    pub issuer: Option<String>,
    pub jwks_uri: Option<String>,
    pub jwks_file: Option<String>,
    pub jwks_path: Option<String>,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub client_ids: Vec<String>,
    pub algorithms: Option<Vec<String>>,
    pub leeway: Option<Dur>,
    #[serde(default)]
    pub required_claims: Vec<String>,
    pub max_token_size: Option<Size>,
    #[serde(default)]
    pub jwks: RawJwks,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub claims_header: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCryptr {
    pub base_url: String,
    pub tenants: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJwks {
    pub timeout: Option<Dur>,
    pub ttl: Option<Dur>,
    pub min_ttl: Option<Dur>,
    pub max_ttl: Option<Dur>,
    pub min_refresh_interval: Option<Dur>,
    pub max_stale: Option<Dur>,
    pub max_size: Option<Size>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub max_header_size: Option<Size>,
    pub max_headers: Option<usize>,
    pub max_body: Option<Size>,
    pub timeout: Option<Dur>,
    pub connect_timeout: Option<Dur>,
    pub header_read_timeout: Option<Dur>,
    pub idle_timeout: Option<Dur>,
    pub drain_timeout: Option<Dur>,
    pub max_connections: Option<usize>,
    pub max_uri_length: Option<Size>,
    pub max_concurrent_requests: Option<usize>,
}

/// `tls: { cert, key }`: PEM files, read at start and at every reload.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServerTls {
    pub cert: String,
    pub key: String,
}

/// `admin: { listen: 127.0.0.1:9901 }`, or `admin: { enabled: false }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub listen: Option<String>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: RawMatch,
    pub upstream: RawUpstream,
    pub auth: RawAuth,
    #[serde(default)]
    pub strip_prefix: bool,
    #[serde(default)]
    pub preserve_host: bool,
    pub timeout: Option<Dur>,
    pub max_body: Option<Size>,
    pub max_concurrent_requests: Option<usize>,
    pub cors: Option<RawRouteCors>,
}

/// A CORS policy, or the fields of one that a route overrides.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCors {
    pub allowed_origins: Option<Vec<String>>,
    pub allowed_methods: Option<Vec<String>>,
    pub allowed_headers: Option<Vec<String>>,
    pub expose_headers: Option<Vec<String>>,
    pub allow_credentials: Option<bool>,
    pub max_age: Option<Dur>,
    pub allow_private_network: Option<bool>,
}

/// A route's `cors:`: `false` turns CORS off there; a map overrides fields of the top level.
#[derive(Debug)]
pub(crate) enum RawRouteCors {
    Off,
    Override(RawCors),
}

impl<'de> Deserialize<'de> for RawRouteCors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawRouteCors;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`false`, or a map of CORS fields overriding the top-level `cors:`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawRouteCors, E> {
                if v {
                    Err(E::custom("`cors: true` says nothing: leave it out to use the top-level `cors:`, or give a map"))
                } else {
                    Ok(RawRouteCors::Off)
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawRouteCors, A::Error> {
                RawCors::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawRouteCors::Override)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMatch {
    pub exact: Option<String>,
    pub prefix: Option<String>,
    pub methods: Option<Vec<String>>,
    pub host: Option<String>,
}

/// What a route requires of a caller: `none`, or a map naming the accepted issuers.
#[derive(Debug)]
pub(crate) enum RawAuth {
    None,
    Token(RawRouteAuth),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouteAuth {
    pub issuers: Vec<String>,
    #[serde(default)]
    pub optional: bool,
    pub scopes: Option<RawScopes>,
    #[serde(default)]
    pub claims: BTreeMap<String, Vec<serde_json::Value>>,
    #[serde(default)]
    pub claims_to_headers: BTreeMap<String, String>,
    pub claims_header: Option<String>,
    pub forward_authorization: Option<bool>,
    pub token: Option<RawTokenSources>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScopes {
    pub all: Option<Vec<String>>,
    pub any: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTokenSources {
    pub cookie: Option<String>,
    pub query: Option<String>,
}

impl<'de> Deserialize<'de> for RawAuth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`none`, or a map such as `{ issuers: [cryptr] }`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAuth, E> {
                match v {
                    "none" => Ok(RawAuth::None),
                    other => Err(E::custom(format!(
                        "`{other}` is not an auth kind: write `none` for a public route, or `{{ issuers: [NAME] }}` to require a token"
                    ))),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawAuth, A::Error> {
                RawRouteAuth::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(RawAuth::Token)
            }
        }
        d.deserialize_any(V)
    }
}

/// `upstream: http://host:port/base` or `upstream: { url: https://..., ca_file: ca.pem }`.
#[derive(Debug)]
pub(crate) struct RawUpstream {
    pub url: String,
    pub ca_file: Option<String>,
    /// A client certificate (and its key) for upstreams that ask for one (mTLS).
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstreamMap {
    url: String,
    ca_file: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
}

impl<'de> Deserialize<'de> for RawUpstream {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawUpstream;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an upstream URL such as `http://127.0.0.1:3000` or `builtin:courses`, or a map with `url`, `ca_file`, `client_cert` and `client_key`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawUpstream, E> {
                Ok(RawUpstream {
                    url: v.to_string(),
                    ca_file: None,
                    client_cert: None,
                    client_key: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawUpstream, A::Error> {
                let m = RawUpstreamMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawUpstream {
                    url: m.url,
                    ca_file: m.ca_file,
                    client_cert: m.client_cert,
                    client_key: m.client_key,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `on`/`off`, or `true`/`false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Toggle(pub bool);

impl<'de> Deserialize<'de> for Toggle {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Toggle;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`on` or `off`")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Toggle, E> {
                Ok(Toggle(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Toggle, E> {
                match v {
                    "on" => Ok(Toggle(true)),
                    "off" => Ok(Toggle(false)),
                    other => Err(E::custom(format!("`{other}`: expected `on` or `off`"))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A duration written with its unit: `30s`, `500ms`, `10m`, `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration with a unit, such as `30s`, `500ms` or `10m`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                humantime::parse_duration(v.trim()).map(Dur).map_err(|_| {
                    E::custom(format!(
                        "invalid duration `{v}`: expected a number and a unit, such as `30s`, `500ms` or `10m`"
                    ))
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write `{v}s` for seconds or `{v}ms` for milliseconds"
                )))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Dur, E> {
                Err(E::custom(format!(
                    "duration `{v}` has no unit: write it as `30s`, `500ms` or `10m`"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// A size in bytes, written `1MiB`, `512KiB`, `10MB` or a plain number of bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `1MiB`, `512KiB` or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                v.trim()
                    .parse::<bytesize::ByteSize>()
                    .map(|b| Size(b.as_u64()))
                    .map_err(|_| {
                        E::custom(format!(
                            "invalid size `{v}`: expected a number and a unit, such as `1MiB`, `512KiB` or `10MB`"
                        ))
                    })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("size `{v}` is negative")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            serde_yaml::from_str::<Dur>("30s").unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!(
            serde_yaml::from_str::<Dur>("10m").unwrap().0,
            Duration::from_secs(600)
        );
        assert_eq!(
            serde_yaml::from_str::<Dur>("250ms").unwrap().0,
            Duration::from_millis(250)
        );
        let err = serde_yaml::from_str::<Dur>("30").unwrap_err().to_string();
        assert!(err.contains("has no unit"), "{err}");
        let err = serde_yaml::from_str::<Dur>("3Os").unwrap_err().to_string();
        assert!(err.contains("invalid duration `3Os`"), "{err}");
    }

    #[test]
    fn sizes_read_binary_and_decimal_units() {
        assert_eq!(serde_yaml::from_str::<Size>("1MiB").unwrap().0, 1 << 20);
        assert_eq!(serde_yaml::from_str::<Size>("512KiB").unwrap().0, 512 << 10);
        assert_eq!(serde_yaml::from_str::<Size>("10MB").unwrap().0, 10_000_000);
        assert_eq!(serde_yaml::from_str::<Size>("4096").unwrap().0, 4096);
        assert!(serde_yaml::from_str::<Size>("lots").is_err());
    }

    #[test]
    fn upstream_is_a_string_or_a_map() {
        let u: RawUpstream = serde_yaml::from_str("http://a:1").unwrap();
        assert_eq!(u.url, "http://a:1");
        let u: RawUpstream = serde_yaml::from_str("{ url: https://a, ca_file: ca.pem }").unwrap();
        assert_eq!(u.ca_file.as_deref(), Some("ca.pem"));
        assert!(serde_yaml::from_str::<RawUpstream>("{ url: https://a, ca: x }").is_err());
    }
}
