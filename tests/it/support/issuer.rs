//! A real JWKS server for the tests: Cryptr's layout (`/t/<tenant>/.well-known`), OIDC
//! discovery, keys that rotate, and faults on demand (down, slow, garbage). It counts and
//! records every request it gets, per instance.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cryptr_gateway::body;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The audience the tests' tokens carry: the Cryptr Vue sample's URL, as Cryptr issues them.
pub const AUDIENCE: &str = "http://localhost:8080";

/// A private key that signs test tokens, and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub pem: &'static [u8],
}

impl SigningKey {
    fn load(pem: &'static [u8], alg: Algorithm, kid: &str) -> SigningKey {
        let encoding = match alg {
            Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
            _ => EncodingKey::from_rsa_pem(pem),
        }
        .expect("test key");
        SigningKey {
            kid: kid.to_string(),
            alg,
            encoding,
            pem,
        }
    }

    pub fn rsa_a() -> SigningKey {
        SigningKey::load(
            include_bytes!("../../keys/rsa-a.pem"),
            Algorithm::RS256,
            "key-a",
        )
    }
    pub fn rsa_b() -> SigningKey {
        SigningKey::load(
            include_bytes!("../../keys/rsa-b.pem"),
            Algorithm::RS256,
            "key-b",
        )
    }
    /// RSA 4096 with a UUID kid, like a Cryptr tenant's key.
    pub fn rsa_4096() -> SigningKey {
        SigningKey::load(
            include_bytes!("../../keys/rsa-4096.pem"),
            Algorithm::RS256,
            "9a2c8f4e-3b1d-4c6a-8e7f-0d5b6a4c3e21",
        )
    }
    pub fn ec_p256() -> SigningKey {
        SigningKey::load(
            include_bytes!("../../keys/ec-p256.pem"),
            Algorithm::ES256,
            "key-ec",
        )
    }
    pub fn ed25519() -> SigningKey {
        SigningKey::load(
            include_bytes!("../../keys/ed25519.pem"),
            Algorithm::EdDSA,
            "key-ed",
        )
    }

    pub fn with_kid(mut self, kid: &str) -> SigningKey {
        self.kid = kid.to_string();
        self
    }

    /// The public JWK, as an issuer publishes it (`use`, `alg`, `kid`).
    pub fn jwk(&self) -> Value {
        let jwk = Jwk::from_encoding_key(&self.encoding, self.alg).expect("public JWK");
        let mut v = serde_json::to_value(jwk).expect("JWK as JSON");
        v["kid"] = json!(self.kid);
        v["use"] = json!("sig");
        v
    }

    /// Signs `claims` under a header of our choosing (any members, even hostile ones).
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig =
            jsonwebtoken::crypto::sign(input.as_bytes(), &self.encoding, self.alg).expect("sign");
        format!("{input}.{sig}")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Up,
    /// 503 to every request.
    Down,
    /// 200 with a body that is not JSON.
    Garbage,
    /// Answers after this long.
    Slow(Duration),
}

struct State {
    mode: Mode,
    /// Published JWKs (may differ from the signing keys: an oct key, say).
    published: Vec<Value>,
    /// Paths requested, in order.
    requests: Vec<String>,
    cache_control: Option<String>,
    /// Cryptr's Ruby SDK layout: `/.well-known` answers an empty set, `/.well-known/jwks` the keys.
    ruby_sdk_path: bool,
}

/// A JWKS server on port 0.
pub struct TestIssuer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Signs tokens when no key is named: the first published.
    pub key: SigningKey,
    task: JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl TestIssuer {
    /// Publishes `rsa_a` (kid `key-a`).
    pub async fn start() -> TestIssuer {
        TestIssuer::with_keys(&[SigningKey::rsa_a()]).await
    }

    pub async fn with_keys(keys: &[SigningKey]) -> TestIssuer {
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Up,
            published: keys.iter().map(SigningKey::jwk).collect(),
            requests: Vec::new(),
            cache_control: None,
            ruby_sdk_path: false,
        }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, addr, req).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        TestIssuer {
            addr,
            state,
            key: keys[0].clone(),
            task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Cryptr issuer of `tenant`: `<base_url>/t/<tenant>`.
    pub fn iss(&self, tenant: &str) -> String {
        format!("{}/t/{tenant}", self.base_url())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.lock().mode = mode;
    }

    /// Replaces the published key set (rotation).
    pub fn publish(&self, keys: &[SigningKey]) {
        self.lock().published = keys.iter().map(SigningKey::jwk).collect();
    }

    /// Publishes raw JWKs, hostile ones included.
    pub fn publish_raw(&self, jwks: Vec<Value>) {
        self.lock().published = jwks;
    }

    pub fn keys_only_at_ruby_sdk_path(&self) {
        self.lock().ruby_sdk_path = true;
    }

    pub fn set_cache_control(&self, value: &str) {
        self.lock().cache_control = Some(value.to_string());
    }

    /// Requests received for key material (JWKS and discovery).
    pub fn fetches(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn requested_paths(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// The claims of a valid v1 Cryptr access token for `tenant`, good for an hour.
    pub fn claims(&self, tenant: &str) -> Value {
        let now = now();
        json!({
            "iss": self.iss(tenant),
            "aud": AUDIENCE,
            "sub": "eba25511-afce-4c8e-8cab-f82822434648",
            "email": "max@example.com",
            "tnt": tenant,
            "cid": "3f2ec1bc-0e0b-4c1c-a1b5-1f5bbf1e8e1e",
            "scp": ["openid", "email", "profile"],
            "jti": "0f3c8b7e-1d2a-4e5f-9a8b-7c6d5e4f3a2b",
            "jtt": "access",
            "ver": 1,
            "dbs": "sandbox",
            "ips": "cryptr",
            "sci": null,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// The claims of a valid v3 Cryptr access token: no `iss`, `tnt`, `cid` or `scp` in the
    /// payload, but `org`, `client_id`, `scope` and `env`; the issuer is in the header.
    pub fn claims_v3(&self, tenant: &str) -> Value {
        let now = now();
        json!({
            "aud": [AUDIENCE],
            "sub": "eba25511-afce-4c8e-8cab-f82822434648",
            "email": "max@example.com",
            "org": tenant,
            "client_id": "3f2ec1bc-0e0b-4c1c-a1b5-1f5bbf1e8e1e",
            "scope": ["openid", "email"],
            "env": "sandbox",
            "jti": "1a2b3c4d-0000-4000-8000-000000000000",
            "jtt": "access",
            "ver": 3,
            "iat": now,
            "exp": now + 3600,
        })
    }

    /// The header Cryptr puts on its tokens: `typ`, `kid`, `alg`, and the issuer again.
    pub fn header(&self, key: &SigningKey, iss: &str) -> Value {
        json!({ "alg": format!("{:?}", key.alg), "typ": "JWT", "kid": key.kid, "iss": iss })
    }

    /// A token signed with the issuer's first key.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with(&self.key, claims)
    }

    /// A token signed with `key`, under a Cryptr-shaped header.
    pub fn token_with(&self, key: &SigningKey, claims: &Value) -> String {
        let iss = claims["iss"]
            .as_str()
            .map_or_else(|| self.iss("acme"), str::to_string);
        key.sign(&self.header(key, &iss), claims)
    }
}

async fn answer(
    state: &Mutex<State>,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Response<body::Body> {
    let path = req.uri().path().to_string();
    let (mode, keys, cache_control) = {
        let mut s = state.lock().unwrap();
        s.requests.push(path.clone());
        let keys = if s.ruby_sdk_path && path.ends_with("/.well-known") {
            Vec::new()
        } else {
            s.published.clone()
        };
        (s.mode.clone(), keys, s.cache_control.clone())
    };
    if let Mode::Slow(d) = mode {
        tokio::time::sleep(d).await;
    }
    let status_body = match mode {
        Mode::Down => (StatusCode::SERVICE_UNAVAILABLE, "down".to_string()),
        Mode::Garbage => (StatusCode::OK, "<html>this is not a key set".to_string()),
        _ if path.ends_with("/.well-known/openid-configuration") => (
            StatusCode::OK,
            json!({
                "issuer": format!("http://{addr}{}", path.trim_end_matches("/.well-known/openid-configuration")),
                "jwks_uri": format!("http://{addr}/oidc/jwks"),
            })
            .to_string(),
        ),
        _ if path.ends_with("/.well-known") || path.ends_with("/jwks") => {
            (StatusCode::OK, json!({ "keys": keys }).to_string())
        }
        _ => (StatusCode::NOT_FOUND, "not found".to_string()),
    };
    let mut res = Response::new(body::full(status_body.1));
    *res.status_mut() = status_body.0;
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(cc) = cache_control {
        res.headers_mut()
            .insert("cache-control", cc.parse().unwrap());
    }
    res
}

/// The claims as a JSON map, to edit before signing.
pub fn edit(mut claims: Value, f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    if let Some(map) = claims.as_object_mut() {
        f(map);
    }
    claims
}
