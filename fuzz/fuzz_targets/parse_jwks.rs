//! Arbitrary JWKS documents into `auth::keys::parse_jwks`; a set that parses is then used,
//! as `explain --jwks` uses one, to verify fixed tokens (one per key kind, the real Cryptr
//! token, and forgeries) through `auth::verify`, and each key found under a known kid is
//! asked to verify every fixed signature directly.
//!
//! Invariants: no panic; no key ever takes an HMAC algorithm (a public key set supplies no
//! secret) and every key takes only algorithms of its kind; HS256 and `none` tokens never
//! verify; a set never holds more keys than the document.
#![no_main]

mod common;

use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cryptr_gateway::auth::keys::{fits, parse_jwks};
use cryptr_gateway::auth::{self, Check, Notes};
use cryptr_gateway::config::Plan;
use cryptr_gateway::mint::SigningKey;
use http::{HeaderMap, HeaderValue};
use jsonwebtoken::{Algorithm, EncodingKey};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

struct Token {
    text: String,
    alg: Algorithm,
    /// Never valid, whatever the key set (HMAC or unsigned).
    forged: bool,
}

struct State {
    rt: tokio::runtime::Runtime,
    plan: Plan,
    tokens: Vec<Token>,
}

const ALL_ALGS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let claims = json!({
            "iss": common::LOCAL_ISS, "aud": common::LOCAL_AUD, "sub": "user-1",
            "scp": ["read"], "jtt": "access", "iat": common::NOW, "exp": common::NOW + 3600,
        });
        let pem = |name: &str| {
            std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../tests/keys")
                    .join(name),
            )
            .unwrap()
        };
        let sign = |pem: &[u8], kid: &str, alg: Algorithm| {
            let mut k = SigningKey::from_pem(pem, Some(kid)).unwrap();
            k.alg = alg;
            k.sign(common::LOCAL_ISS, &claims).unwrap()
        };
        let raw = |header: Value, key: &EncodingKey, alg: Algorithm| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).unwrap();
            format!("{input}.{sig}")
        };
        let ed = EncodingKey::from_ed_pem(&pem("ed25519.pem")).unwrap();
        let header = |alg: &str, kid: &str| {
            json!({"alg": alg, "typ": "JWT", "kid": kid, "iss": common::LOCAL_ISS})
        };
        let t = |text: String, alg, forged| Token { text, alg, forged };
        let tokens = vec![
            t(common::CRYPTR_TOKEN.trim().to_string(), Algorithm::RS256, false),
            t(sign(&pem("rsa-a.pem"), "rsa-a", Algorithm::RS256), Algorithm::RS256, false),
            t(sign(&pem("rsa-b.pem"), "rsa-b", Algorithm::PS256), Algorithm::PS256, false),
            t(sign(&pem("rsa-4096.pem"), "rsa-4096", Algorithm::RS512), Algorithm::RS512, false),
            t(sign(&pem("ec-p256.pem"), "ec-p256", Algorithm::ES256), Algorithm::ES256, false),
            t(raw(header("EdDSA", "ed25519"), &ed, Algorithm::EdDSA), Algorithm::EdDSA, false),
            t(
                raw(header("HS256", "rsa-a"), &EncodingKey::from_secret(b"secret").unwrap(), Algorithm::HS256),
                Algorithm::HS256,
                true,
            ),
            t(
                raw(
                    header("HS256", "h"),
                    &EncodingKey::from_secret(b"secret").unwrap(),
                    Algorithm::HS256,
                ),
                Algorithm::HS256,
                true,
            ),
            t(
                format!(
                    "{}.{}.",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"rsa-a"}"#),
                    URL_SAFE_NO_PAD.encode(claims.to_string())
                ),
                Algorithm::RS256,
                true,
            ),
        ];
        State {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            plan: common::plan(&common::plans::auth()),
            tokens,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let st = state();
    let Ok((set, skipped)) = parse_jwks(data) else {
        return;
    };
    // What the document holds, read independently (serde skips the members it ignores
    // without checking their UTF-8, and so does parse_jwks: read the text lossily).
    let doc: Value =
        serde_json::from_str(&String::from_utf8_lossy(data)).expect("parse_jwks accepted non-JSON");
    let entries = doc["keys"]
        .as_array()
        .expect("parse_jwks accepted no `keys` array");
    assert!(
        set.len() + skipped.len() <= entries.len(),
        "{} keys and {} skipped out of {} entries",
        set.len(),
        skipped.len(),
        entries.len()
    );
    let mut kids: Vec<&str> = entries
        .iter()
        .filter_map(|k| k.get("kid").and_then(Value::as_str))
        .collect();
    kids.extend(["rsa-a", "rsa-b", "rsa-4096", "ec-p256", "ed25519", "h"]);
    kids.push("4888c448-8628-424f-b632-aa7723aabf1d");
    for kid in kids {
        let Some(key) = set.get(kid) else { continue };
        for alg in ALL_ALGS {
            if key.accepts(alg) {
                assert!(
                    fits(alg, key.kind),
                    "key {kid} ({:?}) accepts {alg:?}",
                    key.kind
                );
                assert!(
                    !matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512),
                    "key {kid} accepts {alg:?}"
                );
            }
        }
        for token in &st.tokens {
            let Some((input, sig)) = token.text.rsplit_once('.') else {
                continue;
            };
            if key.accepts(token.alg) {
                let ok = key.verify(token.alg, input.as_bytes(), sig);
                assert!(!(ok && token.forged), "a forged token verified under {kid}");
            }
        }
    }
    // The whole check, with this set in place of the issuers' keys.
    let keys = Arc::new(set);
    let rules = common::route_auth(&st.plan, "api");
    for token in &st.tokens {
        let mut headers = HeaderMap::new();
        let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", token.text)) else {
            continue;
        };
        headers.insert(http::header::AUTHORIZATION, v);
        let check = Check {
            now: common::NOW,
            keys: Some(keys.clone()),
        };
        let result = st.rt.block_on(auth::verify(
            &st.plan.auth,
            rules,
            &headers,
            None,
            &check,
            &mut Notes::none(),
        ));
        if let Ok(Some(identity)) = &result {
            assert!(!token.forged, "a forged token verified");
            assert!(
                identity.issuer.iss == common::LOCAL_ISS
                    || identity.issuer.iss == common::CRYPTR_ISS
            );
        }
    }
});
