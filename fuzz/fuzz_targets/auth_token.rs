//! Token extraction and verification, through the code the gateway runs on a request
//! (`auth::authenticate`) and the code `explain` runs (`auth::verify` with notes).
//!
//! Input: one selector byte, then the data.
//! - bits 0-1: where the data goes: 0 the whole `Authorization` value, 1 `Bearer <data>`,
//!   2 the `at` cookie, 3 the `access_token` query parameter;
//! - bit 2: the route: `api` (either issuer) or `scoped` (optional, scope and claim rules);
//! - bit 3: sign mode: the data is `header JSON \0 payload JSON`, signed here with the
//!   ec-p256 key of the `local` issuer, so the checks behind the signature are fuzzed too;
//! - bit 4: verify as `explain` does (every step described) instead of `authenticate`.
//!
//! Invariants: no panic; a verified token names an accepted issuer, holds one of its
//! audiences, has a subject and is not expired at the plan's clock; an anonymous pass happens
//! only on an optional route; keys from files are never "unavailable" (no 503).
#![no_main]

mod common;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cryptr_gateway::auth::{self, Check, Notes};
use cryptr_gateway::config::Plan;
use cryptr_gateway::error::GatewayError;
use cryptr_gateway::fuzzing;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

struct State {
    rt: tokio::runtime::Runtime,
    plan: Plan,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| State {
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        plan: common::plan(&common::plans::auth()),
    })
}

fn sign(data: &[u8]) -> Option<String> {
    let nul = data.iter().position(|b| *b == 0)?;
    let (header, payload) = (&data[..nul], &data[nul + 1..]);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let key = common::ec_key();
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, key.alg).ok()?;
    Some(format!("{input}.{sig}"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    let st = state();
    let signed;
    let data: &[u8] = if selector & 0x08 != 0 {
        match sign(data) {
            Some(t) => {
                signed = t;
                signed.as_bytes()
            }
            None => return,
        }
    } else {
        data
    };
    let mut headers = HeaderMap::new();
    let mut query = None;
    let value = |prefix: &str| HeaderValue::from_bytes(&[prefix.as_bytes(), data].concat()).ok();
    match selector & 0x03 {
        0 => match value("") {
            Some(v) => drop(headers.insert(http::header::AUTHORIZATION, v)),
            None => return,
        },
        1 => match value("Bearer ") {
            Some(v) => drop(headers.insert(http::header::AUTHORIZATION, v)),
            None => return,
        },
        2 => match value("theme=dark; at=") {
            Some(v) => drop(headers.insert(http::header::COOKIE, v)),
            None => return,
        },
        _ => match std::str::from_utf8(data) {
            Ok(q) => query = Some(format!("a=1&access_token={q}")),
            Err(_) => return,
        },
    }
    let route_name = if selector & 0x04 != 0 {
        "scoped"
    } else {
        "api"
    };
    let rules = common::route_auth(&st.plan, route_name);
    let explain = selector & 0x10 != 0;

    let result = st.rt.block_on(async {
        if explain {
            let mut steps = Vec::new();
            let mut sink = |label: &'static str, detail: String| steps.push((label, detail));
            let check = Check {
                now: st.plan.auth.clock.now(),
                keys: None,
            };
            auth::verify(
                &st.plan.auth,
                rules,
                &headers,
                query.as_deref(),
                &check,
                &mut Notes::to(&mut sink),
            )
            .await
        } else {
            fuzzing::authenticate(&st.plan.auth, rules, &headers, query.as_deref()).await
        }
    });

    match result {
        Ok(None) => assert!(rules.optional, "anonymous pass on a required route"),
        Ok(Some(identity)) => {
            // Re-read the token as the gateway found it, and check what was let through.
            let token = fuzzing::extract_token(&headers, query.as_deref(), &rules.sources)
                .expect("a verified token was extracted")
                .expect("a verified token exists");
            let parsed = fuzzing::parse_token(&token, usize::MAX).expect("a verified token parses");
            let issuer = &identity.issuer;
            assert!(
                rules
                    .issuers
                    .iter()
                    .any(|i| std::sync::Arc::ptr_eq(i, issuer)),
                "verified under an issuer the route does not accept"
            );
            let iss = match parsed.claims.get("iss") {
                Some(Value::String(s)) => Some(s.as_str()),
                Some(other) => panic!("verified with a non-string iss {other}"),
                None => parsed.header_iss.as_deref(),
            };
            assert_eq!(
                iss,
                Some(issuer.iss.as_str()),
                "verified with another issuer"
            );
            if let Some(h) = &parsed.header_iss {
                assert_eq!(h, &issuer.iss, "header iss differs from the issuer");
            }
            if !issuer.audiences.is_empty() {
                let ok = match parsed.claims.get("aud") {
                    Some(Value::String(a)) => issuer.audiences.contains(a),
                    Some(Value::Array(l)) => l
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|a| issuer.audiences.iter().any(|x| x == a)),
                    _ => false,
                };
                assert!(ok, "verified without one of the issuer's audiences");
            }
            assert!(!identity.sub.is_empty(), "verified without a subject");
            assert_eq!(
                parsed.claims.get("sub").and_then(Value::as_str),
                Some(identity.sub.as_str())
            );
            assert!(
                identity.exp.saturating_add(issuer.leeway) > common::NOW,
                "verified an expired token (exp {})",
                identity.exp
            );
            assert!(token.len() <= issuer.max_token_size);
            // The headers the upstream would get: values a header can carry, nothing more.
            let _ = rules.injected_headers(&identity);
        }
        Err(e) => {
            assert!(
                !matches!(e, GatewayError::JwksUnavailable { .. }),
                "keys read from a file were unavailable"
            );
            assert!(
                matches!(
                    e,
                    GatewayError::Unauthorized(_) | GatewayError::Forbidden { .. }
                ),
                "a token check answered {e:?}"
            );
            let _ = e.to_response();
        }
    }
});
