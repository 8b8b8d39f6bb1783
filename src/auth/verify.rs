//! The verification of one token, in the order that keeps I/O last: find it, take it apart,
//! pick its issuer among the route's, check its algorithm, then fetch (or read) the key,
//! check the signature, and only then trust and check the claims.

use std::sync::Arc;

use http::HeaderMap;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use super::cache::Lookup;
use super::claims::{claim, scopes};
use super::jwks::Held;
use super::keys::KeySet;
use super::token::{self, Parsed};
use super::{AuthCode, AuthFailure, AuthPlan, Identity, Issuer, RouteAuth, ScopeRule};
use crate::error::GatewayError;

/// Authenticates a request for a route that names issuers. `Ok(None)`: an anonymous request
/// on an optional route.
pub(crate) async fn authenticate(
    plan: &AuthPlan,
    route: &RouteAuth,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    let check = Check {
        now: plan.clock.now(),
        keys: None,
    };
    verify(plan, route, headers, query, &check, &mut Notes::none()).await
}

/// How `explain` bends a check: another moment, another key set.
pub struct Check {
    /// Unix seconds the time claims are judged at.
    pub now: u64,
    /// Keys to use instead of the issuer's (fetched) ones; the token cache is then bypassed.
    pub keys: Option<Arc<KeySet>>,
}

/// Where `explain` hears each step; on the request path, nobody (nothing is even formatted).
pub struct Notes<'a>(Option<&'a mut (dyn FnMut(&'static str, String) + Send)>);

impl<'a> Notes<'a> {
    pub fn none() -> Notes<'static> {
        Notes(None)
    }

    pub fn to(sink: &'a mut (dyn FnMut(&'static str, String) + Send)) -> Notes<'a> {
        Notes(Some(sink))
    }

    fn note(&mut self, label: &'static str, detail: impl FnOnce() -> String) {
        if let Some(sink) = &mut self.0 {
            sink(label, detail());
        }
    }
}

/// The whole verification, in its one order, telling `notes` what it sees.
pub async fn verify(
    plan: &AuthPlan,
    route: &RouteAuth,
    headers: &HeaderMap,
    query: Option<&str>,
    check: &Check,
    notes: &mut Notes<'_>,
) -> Result<Option<Arc<Identity>>, GatewayError> {
    let Some(found) = token::extract(headers, query, &route.sources)? else {
        if route.optional {
            notes.note("token", || {
                "none, and the route's auth is optional: anonymous".into()
            });
            return Ok(None);
        }
        return Err(AuthFailure::new(
            AuthCode::HeaderMissing,
            "send the access token as `Authorization: Bearer <token>`",
        )
        .into());
    };
    let len = found.bytes().len();
    notes.note("token", || format!("{len} bytes"));
    if len > route.max_token_size {
        return Err(AuthFailure::invalid_token("the token is larger than accepted").into());
    }
    // A token seen before: its signature and issuer-level claims were checked then, and the
    // token itself found to be text and one token (`Found::text`), so its bytes suffice.
    let cache = plan.token_cache.as_ref().filter(|_| check.keys.is_none());
    let cache_key = cache.map(|c| c.key(found.bytes()));
    if let (Some(cache), Some(key)) = (cache, &cache_key) {
        match cache.lookup(key, check.now) {
            Lookup::Verified(identity) => {
                let accepted = route
                    .issuers
                    .iter()
                    .any(|i| Arc::ptr_eq(i, &identity.issuer));
                // Past `max_stale` without keys, remembered tokens stop passing too: an entry
                // lives no longer than the key set that verified it (`TokenCache::insert`).
                if accepted {
                    notes.note("cache", || {
                        "verified before with the issuer's current keys".into()
                    });
                    authorize(route, &identity.claims)?;
                    return Ok(Some(identity));
                }
            }
            Lookup::Forged => {
                notes.note("cache", || {
                    "this exact token failed its signature check moments ago".into()
                });
                return Err(bad_signature());
            }
            Lookup::Unknown => {}
        }
    }
    let raw = found.text()?;
    let parsed = token::parse(raw, route.max_token_size)?;
    notes.note("header", || {
        format!(
            "alg {}, kid {}, iss {}",
            parsed.header.alg,
            parsed.header.kid.as_deref().unwrap_or("(none)"),
            parsed.header.iss.as_deref().unwrap_or("(none)")
        )
    });
    let issuer = pick_issuer(route, &parsed)?;
    notes.note("issuer", || {
        format!("{} (issuers.{}): accepted here", issuer.iss, issuer.name)
    });
    if raw.len() > issuer.max_token_size {
        return Err(AuthFailure::invalid_token("the token is larger than accepted").into());
    }
    let alg = algorithm(issuer, &parsed)?;
    notes.note("algorithm", || format!("{alg:?}: allowed by the issuer"));
    let kid = parsed
        .header
        .kid
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| AuthFailure::invalid_header("the token's header names no key (kid)"))?;

    let Held { keys, until } = match &check.keys {
        Some(keys) => Held {
            keys: keys.clone(),
            until: None,
        },
        None => plan.cache.keys_for(&issuer.keys, kid).await.map_err(|e| {
            GatewayError::JwksUnavailable {
                retry_after: e.retry_after,
            }
        })?,
    };
    let key = keys.get(kid).ok_or_else(|| {
        AuthFailure::new(
            AuthCode::NoRsaKey,
            "the token's key (kid) is not among the issuer's keys",
        )
    })?;
    notes.note("key", || {
        format!("{kid}: found ({:?}, alg {:?})", key.kind, key.alg)
    });
    if !key.accepts(alg) {
        return Err(
            AuthFailure::invalid_token("the token's algorithm does not fit its key").into(),
        );
    }
    let valid = key.verify(alg, parsed.signing_input.as_bytes(), parsed.signature);
    if !valid {
        if let (Some(cache), Some(key)) = (cache, &cache_key) {
            cache.insert_bad(key);
        }
        return Err(bad_signature());
    }
    notes.note("signature", || "verified".into());

    notes.note("claims", || describe_claims(&parsed.claims, check.now));
    let sub = check_claims(issuer, &parsed.claims, check.now)?;
    notes.note("claims check", || {
        format!(
            "passed (aud {:?}, client_ids {:?})",
            issuer.audiences, issuer.client_ids
        )
    });
    authorize(route, &parsed.claims)?;
    notes.note("route rules", || {
        format!(
            "passed (scopes held: {}; rule: {:?}; claim rules: {})",
            scopes(&parsed.claims).join(" "),
            route.scopes,
            route.claims.len()
        )
    });
    let exp = number(&parsed.claims, "exp").ok().flatten().unwrap_or(0);
    let identity = Arc::new(Identity::new(issuer.clone(), sub, exp, parsed.claims, raw));
    if let (Some(cache), Some(key)) = (cache, &cache_key) {
        cache.insert(key, identity.clone(), keys.generation, until, check.now);
    }
    Ok(Some(identity))
}

fn bad_signature() -> GatewayError {
    AuthFailure::invalid_token("the token's signature does not verify").into()
}

/// A Unix time as RFC 3339, or as seconds past what a calendar date can say (beyond year
/// 9999, or past what the system time type holds): a token's claims are the sender's.
fn rfc3339(unix_seconds: u64) -> String {
    const YEAR_10000: u64 = 253_402_300_800;
    match std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(unix_seconds)) {
        Some(at) if unix_seconds < YEAR_10000 => humantime::format_rfc3339_seconds(at).to_string(),
        _ => format!("{unix_seconds} s after 1970 (past year 9999)"),
    }
}

/// The registered claims, in words and with times, for `explain`.
fn describe_claims(claims: &Map<String, Value>, now: u64) -> String {
    let time = |name: &str| match number(claims, name) {
        Ok(Some(t)) => {
            let at = rfc3339(t);
            let when = if t <= now { "past" } else { "future" };
            format!("{name} {at} ({when})")
        }
        Ok(None) => format!("{name} (none)"),
        Err(_) => format!("{name} (not a time)"),
    };
    let text =
        |name: &str| claim(claims, name).map_or_else(|| "(none)".to_string(), Value::to_string);
    format!(
        "judged at {}: {}, {}, {}; iss {}, aud {}, sub {}, cid {}, tnt {}, jtt {}, ver {}",
        rfc3339(now),
        time("exp"),
        time("nbf"),
        time("iat"),
        text("iss"),
        text("aud"),
        text("sub"),
        text("cid"),
        text("tnt"),
        text("jtt"),
        text("ver"),
    )
}

/// The issuer named by the (still unverified) token, among the route's: payload `iss`, or for
/// a Cryptr v3 token that has none, the protected header's. Nothing is fetched for a token
/// naming an issuer we do not accept.
fn pick_issuer<'r>(
    route: &'r RouteAuth,
    parsed: &Parsed<'_>,
) -> Result<&'r Arc<Issuer>, AuthFailure> {
    let from_payload = parsed.claims.get("iss");
    let iss = match (from_payload, parsed.header.iss.as_deref()) {
        (Some(Value::String(p)), Some(h)) if p != h => {
            return Err(AuthFailure::invalid_claims(
                "the token names two different issuers",
            ))
        }
        (Some(Value::String(p)), _) => p.as_str(),
        (Some(_), _) => {
            return Err(AuthFailure::invalid_claims(
                "the token's issuer is not a string",
            ))
        }
        (None, Some(h)) => h,
        (None, None) => return Err(AuthFailure::invalid_claims("the token names no issuer")),
    };
    route
        .issuers
        .iter()
        .find(|i| i.iss == iss)
        .ok_or_else(|| AuthFailure::invalid_claims("the token's issuer is not accepted here"))
}

/// The algorithm to verify with: the token's `alg`, only if the issuer allows it. The key
/// must then fit it too (see `Key::accepts`): the token never decides alone.
fn algorithm(issuer: &Issuer, parsed: &Parsed<'_>) -> Result<Algorithm, AuthFailure> {
    parsed
        .header
        .alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| issuer.algorithms.contains(a))
        .ok_or_else(|| AuthFailure::invalid_token("the token's algorithm is not accepted"))
}

fn number(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthFailure> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| {
                AuthFailure::invalid_claims(format!("the `{name}` claim is not a time"))
            }),
    }
}

/// The registered claims, judged at `now`. Returns `sub`.
fn check_claims(
    issuer: &Issuer,
    claims: &Map<String, Value>,
    now: u64,
) -> Result<String, AuthFailure> {
    let leeway = issuer.leeway;
    let exp = number(claims, "exp")?
        .ok_or_else(|| AuthFailure::invalid_claims("the token has no expiry (exp)"))?;
    if exp.saturating_add(leeway) <= now {
        return Err(AuthFailure::new(
            AuthCode::TokenExpired,
            "the token has expired",
        ));
    }
    if number(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(AuthFailure::invalid_claims(
            "the token is not valid yet (nbf)",
        ));
    }
    if number(claims, "iat")?.is_some_and(|iat| iat > now.saturating_add(leeway)) {
        return Err(AuthFailure::invalid_claims(
            "the token was issued in the future (iat)",
        ));
    }
    if let Some(jtt) = claims.get("jtt") {
        if jtt.as_str() != Some("access") {
            return Err(AuthFailure::invalid_claims(
                "the token is not an access token (jtt)",
            ));
        }
    }
    if !issuer.audiences.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => issuer.audiences.contains(a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| issuer.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(AuthFailure::invalid_claims(
                "the token is not meant for this API (aud)",
            ));
        }
    }
    if !issuer.client_ids.is_empty() {
        let ok = claim(claims, "cid")
            .and_then(Value::as_str)
            .is_some_and(|c| issuer.client_ids.iter().any(|x| x == c));
        if !ok {
            return Err(AuthFailure::invalid_claims(
                "the token's client is not accepted (cid)",
            ));
        }
    }
    for name in &issuer.required_claims {
        if claim(claims, name).is_none() {
            return Err(AuthFailure::invalid_claims(format!(
                "the token lacks the `{name}` claim"
            )));
        }
    }
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(AuthFailure::invalid_claims(
            "the token has no subject (sub)",
        )),
    }
}

/// The route's own demands on a valid token: 403 when they are not met.
fn authorize(route: &RouteAuth, claims: &Map<String, Value>) -> Result<(), GatewayError> {
    if let Some(rule) = &route.scopes {
        let held = scopes(claims);
        let ok = match rule {
            ScopeRule::All(needed) => needed.iter().all(|n| held.contains(&n.as_str())),
            ScopeRule::Any(needed) => needed.iter().any(|n| held.contains(&n.as_str())),
        };
        if !ok {
            let (how, list) = match rule {
                ScopeRule::All(l) => ("all of", l),
                ScopeRule::Any(l) => ("one of", l),
            };
            return Err(GatewayError::Forbidden {
                code: "insufficient_scope",
                description: format!("this route needs {how} the scopes: {}", list.join(" ")),
            });
        }
    }
    for (name, allowed) in &route.claims {
        let value = claim(claims, name);
        let ok = value.is_some_and(|v| {
            allowed.iter().any(|a| a == v)
                || v.as_array()
                    .is_some_and(|items| items.iter().any(|i| allowed.contains(i)))
        });
        if !ok {
            return Err(GatewayError::Forbidden {
                code: "insufficient_claims",
                description: format!(
                    "the token's `{name}` claim does not grant access to this route"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    // Found by fuzzing (fuzz/regressions/auth_token/explain-exp-*): `explain` formatted a
    // token's far-future `exp` and panicked.
    #[test]
    fn times_past_year_9999_are_said_in_seconds_never_a_panic() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
        assert!(rfc3339(253_402_300_801).contains("past year 9999"));
        assert!(rfc3339(u64::MAX).contains("past year 9999"));
    }
}
