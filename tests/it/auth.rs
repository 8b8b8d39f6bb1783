//! Token validation end to end: a real JWKS server, real signed tokens, a gateway on a socket.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::issuer::{edit, now, Mode, SigningKey, TestIssuer, AUDIENCE};
use crate::support::{self, poll_until, Gateway, Upstream};

/// A gateway with a Cryptr issuer (tenant `acme`) at `issuer`, `/api` protected by `auth`,
/// `/public` open; both answered by the echo upstream. `issuer_extra` lines go in the issuer
/// entry (indent them by four spaces).
fn yaml(issuer: &TestIssuer, issuer_extra: &str, auth: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{AUDIENCE}]
    claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, tnt: X-Tenant }}
{issuer_extra}
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {auth}
  - name: public
    match: {{ prefix: /public }}
    upstream: builtin:echo
    auth: none
",
        base = issuer.base_url()
    )
}

async fn start(extra: &str, auth: &str) -> (TestIssuer, Gateway) {
    let issuer = TestIssuer::start().await;
    let gw = Gateway::start(&yaml(&issuer, extra, auth)).await;
    (issuer, gw)
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    json: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }
    /// A header the echo upstream received.
    fn upstream_header(&self, name: &str) -> Option<&str> {
        self.json["headers"][name][0].as_str()
    }
}

async fn get(gw: &Gateway, path: &str, token: Option<&str>) -> Answer {
    let mut req = support::client().get(gw.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(req).await
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let json = res.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        json,
    }
}

/// `n` requests to `/api` with `token`, all at once; their statuses.
async fn concurrent_gets(gw: &Gateway, token: &str, n: usize) -> Vec<u16> {
    let c = support::client();
    let requests = (0..n).map(|_| {
        let req = c.get(gw.url("/api")).bearer_auth(token);
        async move { req.send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(requests).await
}

fn assert_refused(a: &Answer, code: &str) {
    assert_eq!(a.status, 401, "{:?}", a.json);
    assert_eq!(a.code(), code, "{:?}", a.json);
    let challenge = a.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"cryptr-gateway\", error=\"invalid_token\""),
        "{challenge}"
    );
}

#[tokio::test]
async fn valid_token_passes_with_its_claims_as_headers() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let token = issuer.token(&issuer.claims("acme"));
    let a = get(&gw, "/api/courses", Some(&token)).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(
        a.upstream_header("x-user-id"),
        Some("eba25511-afce-4c8e-8cab-f82822434648")
    );
    assert_eq!(a.upstream_header("x-user-email"), Some("max@example.com"));
    assert_eq!(a.upstream_header("x-tenant"), Some("acme"));
    // The token still goes upstream by default.
    assert_eq!(
        a.upstream_header("authorization"),
        Some(format!("Bearer {token}").as_str())
    );
}

#[tokio::test]
async fn no_token_is_401_authorization_header_missing_with_a_bare_challenge() {
    let (_issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let a = get(&gw, "/api", None).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(), "authorization_header_missing");
    assert_eq!(
        a.headers["www-authenticate"],
        "Bearer realm=\"cryptr-gateway\""
    );
}

#[tokio::test]
async fn time_claims_are_enforced_with_leeway() {
    let (issuer, gw) = start("    leeway: 30s", "{ issuers: [cryptr] }").await;
    let n = now();
    let cases = [
        (json!(n - 3600), None, "token_expired"),
        (json!(n + 3600), Some(("nbf", n + 600)), "invalid_claims"),
        (json!(n + 3600), Some(("iat", n + 600)), "invalid_claims"),
    ];
    for (exp, extra, code) in cases {
        let claims = edit(issuer.claims("acme"), |c| {
            c.insert("exp".into(), exp);
            if let Some((k, v)) = extra {
                c.insert(k.into(), json!(v));
            }
        });
        assert_refused(&get(&gw, "/api", Some(&issuer.token(&claims))).await, code);
    }
    // Within the leeway: still good.
    let claims = edit(issuer.claims("acme"), |c| {
        c.insert("exp".into(), json!(n - 10));
        c.insert("nbf".into(), json!(n + 10));
    });
    assert_eq!(
        get(&gw, "/api", Some(&issuer.token(&claims))).await.status,
        200
    );
    let claims = edit(issuer.claims("acme"), |c| {
        c.remove("exp");
    });
    assert_refused(
        &get(&gw, "/api", Some(&issuer.token(&claims))).await,
        "invalid_claims",
    );
}

#[tokio::test]
async fn issuer_and_audience_must_match() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let cases = [
        ("iss", json!("https://evil.example/t/acme")),
        ("aud", json!("http://localhost:8081")),
        ("aud", json!([])),
        ("jtt", json!("openid")),
        ("sub", json!("")),
    ];
    for (claim, value) in cases {
        let claims = edit(issuer.claims("acme"), |c| {
            c.insert(claim.into(), value.clone());
        });
        let a = get(&gw, "/api", Some(&issuer.token(&claims))).await;
        assert_refused(&a, "invalid_claims");
    }
    // jsonwebtoken checks `aud` and `iss` only when a token carries them; we require them.
    let no_aud = edit(issuer.claims("acme"), |c| {
        c.remove("aud");
    });
    assert_refused(
        &get(&gw, "/api", Some(&issuer.token(&no_aud))).await,
        "invalid_claims",
    );
    let no_iss = edit(issuer.claims("acme"), |c| {
        c.remove("iss");
    });
    let header = json!({"alg": "RS256", "kid": "key-a", "typ": "JWT"});
    assert_refused(
        &get(&gw, "/api", Some(&issuer.key.sign(&header, &no_iss))).await,
        "invalid_claims",
    );
    let listed = edit(issuer.claims("acme"), |c| {
        c.insert("aud".into(), json!(["https://other.example", AUDIENCE]));
    });
    assert_eq!(
        get(&gw, "/api", Some(&issuer.token(&listed))).await.status,
        200
    );
}

#[tokio::test]
async fn unsigned_and_algorithm_confusion_tokens_never_pass() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let claims = issuer.claims("acme");
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "kid": "key-a", "typ": "JWT"});
        for sig in ["", "c2ln"] {
            let token = format!("{}.{}.{sig}", b64(&header), b64(&claims));
            let a = get(&gw, "/api", Some(&token)).await;
            assert_eq!(a.status, 401, "{alg} {sig}");
        }
    }
    // HS256 "signed" with the issuer's public key, the classic confusion.
    let public_pem = {
        let jwk = SigningKey::rsa_a().jwk();
        jwk.to_string()
    };
    let hmac = SigningKey {
        kid: "key-a".into(),
        alg: jsonwebtoken::Algorithm::HS256,
        encoding: jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()).unwrap(),
        pem: b"",
    };
    let token = hmac.sign(
        &json!({"alg": "HS256", "kid": "key-a", "typ": "JWT"}),
        &claims,
    );
    assert_refused(&get(&gw, "/api", Some(&token)).await, "invalid_token");
    // RS256 allowed, but PS256 with the same key is not (the issuer allows RS256 only).
    let ps = SigningKey {
        alg: jsonwebtoken::Algorithm::PS256,
        ..SigningKey::rsa_a()
    };
    let token = ps.sign(&json!({"alg": "PS256", "kid": "key-a"}), &claims);
    assert_refused(&get(&gw, "/api", Some(&token)).await, "invalid_token");
}

#[tokio::test]
async fn a_symmetric_key_in_the_jwks_is_never_used() {
    let issuer = TestIssuer::start().await;
    // HS256 in `algorithms` is refused at config time.
    let errors = support::plan_with_env(
        &yaml(
            &issuer,
            "    algorithms: [RS256, HS256]",
            "{ issuers: [cryptr] }",
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        errors.contains("never used with an issuer's public keys"),
        "{errors}"
    );
    // And an `oct` key served by the JWKS is ignored.
    issuer.publish_raw(vec![
        json!({"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}),
    ]);
    let gw = Gateway::start(&yaml(&issuer, "", "{ issuers: [cryptr] }")).await;
    let hmac = SigningKey {
        kid: "h".into(),
        alg: jsonwebtoken::Algorithm::HS256,
        encoding: jsonwebtoken::EncodingKey::from_secret(b"secret-secret-secret").unwrap(),
        pem: b"",
    };
    let token = hmac.sign(&json!({"alg": "HS256", "kid": "h"}), &issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn keys_come_only_from_the_issuers_jwks() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let claims = issuer.claims("acme");
    let attacker = SigningKey::rsa_b();
    // Signed by another key under the issuer's kid.
    let forged = attacker.clone().with_kid("key-a");
    assert_refused(
        &get(&gw, "/api", Some(&issuer.token_with(&forged, &claims))).await,
        "invalid_token",
    );
    // The attacker's key embedded in the header (jwk), or pointed at (jku, x5u).
    let trap = Upstream::recording().await;
    let header = json!({
        "alg": "RS256", "kid": "key-evil", "typ": "JWT",
        "jwk": attacker.jwk(),
        "jku": format!("{}/jwks", trap.url()),
        "x5u": format!("{}/cert", trap.url()),
    });
    let a = get(&gw, "/api", Some(&attacker.sign(&header, &claims))).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.code(), "no_rsa_key");
    assert_eq!(
        trap.count(),
        0,
        "the gateway fetched a URL named by the token"
    );
    let header = json!({"alg": "RS256", "kid": "key-a", "jwk": attacker.jwk()});
    assert_refused(
        &get(&gw, "/api", Some(&attacker.sign(&header, &claims))).await,
        "invalid_token",
    );
    // No kid at all.
    let header = json!({"alg": "RS256", "typ": "JWT"});
    assert_refused(
        &get(&gw, "/api", Some(&issuer.key.sign(&header, &claims))).await,
        "invalid_header",
    );
    // An extension we do not understand.
    let header = json!({"alg": "RS256", "kid": "key-a", "crit": ["x-custom"], "x-custom": 1});
    assert_refused(
        &get(&gw, "/api", Some(&issuer.key.sign(&header, &claims))).await,
        "invalid_token",
    );
}

#[tokio::test]
async fn malformed_tokens_get_a_clear_401_never_a_500() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let good = issuer.token(&issuer.claims("acme"));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        format!("{}.{}", parts[0], parts[1]),
        format!("{good}.{}", parts[2]),
        format!("{}.!!!.{}", parts[0], parts[2]),
        format!("***.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}x", parts[0], parts[1], parts[2]),
        "..".to_string(),
        "a.b.c".to_string(),
        "not-a-jwt".to_string(),
    ];
    for token in cases {
        let a = get(&gw, "/api", Some(&token)).await;
        assert_eq!(a.status, 401, "{token}: {:?}", a.json);
        assert!(a.headers.contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let issuer = TestIssuer::start().await;
    let yaml = yaml(&issuer, "", "{ issuers: [cryptr] }")
        .replace("routes:", "limits: { max_header_size: 256KiB }\nroutes:");
    let gw = Gateway::start(&yaml).await;
    let claims = edit(issuer.claims("acme"), |c| {
        c.insert("padding".into(), json!("x".repeat(64 * 1024)));
    });
    let a = get(&gw, "/api", Some(&issuer.token(&claims))).await;
    assert_refused(&a, "invalid_token");
    assert!(a.json["description"].as_str().unwrap().contains("larger"));
    // With the default header limit, the same request does not even get that far.
    let (_, gw) = start("", "{ issuers: [cryptr] }").await;
    assert_eq!(
        get(&gw, "/api", Some(&issuer.token(&claims))).await.status,
        431
    );
}

#[tokio::test]
async fn authorization_header_is_read_strictly() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let token = issuer.token(&issuer.claims("acme"));
    let c = support::client();
    let a = send(
        c.get(gw.url("/api"))
            .header("authorization", format!("bearer {token}")),
    )
    .await;
    assert_eq!(a.status, 200, "lowercase scheme");
    let a = send(
        c.get(gw.url("/api"))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
    )
    .await;
    assert_refused(&a, "invalid_header");
    for value in [
        format!("Basic {token}"),
        format!("Bearer {token} {token}"),
        token.clone(),
    ] {
        let a = send(c.get(gw.url("/api")).header("authorization", value)).await;
        assert_refused(&a, "invalid_header");
    }
}

#[tokio::test]
async fn client_identity_headers_are_dropped_on_every_route() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let token = issuer.token(&issuer.claims("acme"));
    let c = support::client();
    for path in ["/api/x", "/public/x"] {
        let mut req = c
            .get(gw.url(path))
            .header("x-user-id", "admin")
            .header("X-User-Email", "boss@example.com")
            .header("x_tenant", "globex")
            .header("X_USER_ID", "admin2");
        if path.starts_with("/api") {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let a = send(req).await;
        assert_eq!(a.status, 200);
        let headers = &a.json["headers"];
        if path.starts_with("/api") {
            assert_eq!(
                headers["x-user-id"],
                json!(["eba25511-afce-4c8e-8cab-f82822434648"])
            );
            assert_eq!(headers["x-tenant"], json!(["acme"]));
        } else {
            assert!(headers.get("x-user-id").is_none(), "{headers}");
            assert!(headers.get("x-user-email").is_none(), "{headers}");
        }
        assert!(headers.get("x_tenant").is_none(), "{headers}");
        assert!(headers.get("x_user_id").is_none(), "{headers}");
    }
}

#[tokio::test]
async fn many_requests_share_one_jwks_fetch() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let token = issuer.token(&issuer.claims("acme"));
    let statuses = concurrent_gets(&gw, &token, 100).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(issuer.fetches(), 1, "{:?}", issuer.requested_paths());
    assert_eq!(issuer.requested_paths(), ["/t/acme/.well-known"]);
}

#[tokio::test]
async fn rotation_is_picked_up_by_the_new_kid() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let old = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&old)).await.status, 200);
    let fetched = issuer.fetches();
    issuer.publish(&[SigningKey::rsa_a(), SigningKey::rsa_b()]);
    let new = issuer.token_with(&SigningKey::rsa_b(), &issuer.claims("acme"));
    // 50 at once with the new kid: they share the refetch.
    let statuses = concurrent_gets(&gw, &new, 50).await;
    assert!(
        statuses.iter().filter(|s| **s == 200).count() >= 49,
        "{statuses:?}"
    );
    assert!(
        issuer.fetches() - fetched <= 2,
        "{} refetches",
        issuer.fetches() - fetched
    );
    assert_eq!(get(&gw, "/api", Some(&new)).await.status, 200);
    assert_eq!(get(&gw, "/api", Some(&old)).await.status, 200);
}

#[tokio::test]
async fn unknown_kids_refetch_at_most_once_per_interval() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let good = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&good)).await.status, 200);
    let before = issuer.fetches();
    let c = support::client();
    for i in 0..1000 {
        let key = SigningKey::rsa_a().with_kid(&format!("random-{i}"));
        let token = issuer.token_with(&key, &issuer.claims("acme"));
        let a = send(c.get(gw.url("/api")).bearer_auth(token)).await;
        assert_eq!(a.status, 401);
        assert_eq!(a.code(), "no_rsa_key");
    }
    let refetches = issuer.fetches() - before;
    assert!(refetches <= 1, "{refetches} refetches for 1000 random kids");
}

#[tokio::test]
async fn keys_keep_serving_when_the_jwks_goes_down_or_bad() {
    let (issuer, gw) = start(
        "    jwks: { ttl: 1s, min_ttl: 100ms }",
        "{ issuers: [cryptr] }",
    )
    .await;
    let token = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    for mode in [
        Mode::Down,
        Mode::Garbage,
        Mode::Slow(Duration::from_secs(30)),
        Mode::Up,
    ] {
        issuer.set_mode(mode.clone());
        let fetched = issuer.fetches();
        // Let the background refresh (due every 800 ms here) hit the fault.
        poll_until(Duration::from_secs(10), "a refresh attempt", || {
            issuer.fetches() > fetched
        })
        .await;
        for _ in 0..5 {
            assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200, "{mode:?}");
        }
    }
}

#[tokio::test]
async fn the_last_good_keys_serve_for_max_stale_and_no_longer() {
    let (issuer, gw) = start(
        "    jwks: { ttl: 1s, min_ttl: 1s, max_stale: 3s, timeout: 300ms }",
        "{ issuers: [cryptr] }",
    )
    .await;
    let token = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    issuer.set_mode(Mode::Down);
    let down_at = Instant::now();
    // Within max_stale the old keys serve; past it, the gateway says its keys are gone.
    let mut last = 200;
    while last == 200 && down_at.elapsed() < Duration::from_secs(15) {
        last = get(&gw, "/api", Some(&token)).await.status;
        if last == 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let served_for = down_at.elapsed();
    assert_eq!(last, 503, "stale keys served for {served_for:?}");
    assert!(
        served_for >= Duration::from_secs(1),
        "the last good keys were dropped after {served_for:?}"
    );
}

#[tokio::test]
async fn jwks_unreachable_at_start_is_503_then_recovers() {
    let issuer = TestIssuer::start().await;
    issuer.set_mode(Mode::Slow(Duration::from_secs(30)));
    let gw = Gateway::start(&yaml(
        &issuer,
        "    jwks: { timeout: 300ms }",
        "{ issuers: [cryptr] }",
    ))
    .await;
    let token = issuer.token(&issuer.claims("acme"));
    let started = Instant::now();
    let a = get(&gw, "/api", Some(&token)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(a.status, 503, "{:?}", a.json);
    assert_eq!(a.code(), "jwks_unavailable");
    assert!(a.headers.contains_key("retry-after"));
    issuer.set_mode(Mode::Up);
    let mut status = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while status != 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        status = get(&gw, "/api", Some(&token)).await.status;
    }
    assert_eq!(status, 200, "never recovered");
}

#[tokio::test]
async fn optional_auth_passes_anonymous_requests_but_never_bad_tokens() {
    let (issuer, gw) = start("", "{ issuers: [cryptr], optional: true }").await;
    let anonymous = get(&gw, "/api", None).await;
    assert_eq!(anonymous.status, 200);
    assert_eq!(anonymous.upstream_header("x-user-id"), None);
    let valid = get(&gw, "/api", Some(&issuer.token(&issuer.claims("acme")))).await;
    assert_eq!(valid.upstream_header("x-tenant"), Some("acme"));
    let expired = edit(issuer.claims("acme"), |c| {
        c.insert("exp".into(), json!(now() - 3600));
    });
    assert_refused(
        &get(&gw, "/api", Some(&issuer.token(&expired))).await,
        "token_expired",
    );
}

#[tokio::test]
async fn scopes_all_and_any_are_403_insufficient_scope_when_missing() {
    let issuer = TestIssuer::start().await;
    let token = issuer.token(&issuer.claims("acme")); // openid email profile
    for (rule, status) in [
        ("{ all: [openid, email] }", 200),
        ("{ all: [openid, admin] }", 403),
        ("{ any: [admin, profile] }", 200),
        ("{ any: [admin, root] }", 403),
    ] {
        let gw = Gateway::start(&yaml(
            &issuer,
            "",
            &format!("{{ issuers: [cryptr], scopes: {rule} }}"),
        ))
        .await;
        let a = get(&gw, "/api", Some(&token)).await;
        assert_eq!(a.status, status, "{rule}");
        if status == 403 {
            assert_eq!(a.code(), "insufficient_scope");
            let challenge = a.headers["www-authenticate"].to_str().unwrap();
            assert!(
                challenge.contains("error=\"insufficient_scope\""),
                "{challenge}"
            );
        }
    }
}

#[tokio::test]
async fn tenant_claim_check_and_two_tenants_on_one_route() {
    let issuer = TestIssuer::start().await;
    let yaml = yaml(
        &issuer,
        "",
        "{ issuers: [cryptr], claims: { tnt: [acme] } }",
    )
    .replace("tenants: [acme]", "tenants: [acme, globex]");
    let gw = Gateway::start(&yaml).await;
    let acme = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&acme)).await.status, 200);
    let globex = issuer.token(&issuer.claims("globex"));
    let a = get(&gw, "/api", Some(&globex)).await;
    assert_eq!(a.status, 403, "{:?}", a.json);
    // Without the claim rule, both tenants pass, each with its own keys.
    let yaml = yaml.replace(", claims: { tnt: [acme] }", "");
    let gw = Gateway::start(&yaml).await;
    assert_eq!(get(&gw, "/api", Some(&acme)).await.status, 200);
    assert_eq!(
        get(&gw, "/api", Some(&globex))
            .await
            .upstream_header("x-tenant"),
        Some("globex")
    );
    let paths = issuer.requested_paths();
    assert!(
        paths.contains(&"/t/globex/.well-known".to_string()),
        "{paths:?}"
    );
}

#[tokio::test]
async fn unconfigured_tenant_is_refused_without_a_single_jwks_request() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    poll_until(Duration::from_secs(5), "the startup fetch", || {
        issuer.fetches() == 1
    })
    .await;
    let claims = edit(issuer.claims("acme"), |c| {
        c.insert("iss".into(), json!(issuer.iss("intruder")));
    });
    let a = get(&gw, "/api", Some(&issuer.token(&claims))).await;
    assert_refused(&a, "invalid_claims");
    assert_eq!(issuer.requested_paths(), ["/t/acme/.well-known"]);
}

#[tokio::test]
async fn cryptr_v1_and_v3_tokens_with_rsa_4096_both_pass() {
    let issuer = TestIssuer::with_keys(&[SigningKey::rsa_4096()]).await;
    let gw = Gateway::start(&yaml(
        &issuer,
        "",
        "{ issuers: [cryptr], scopes: { all: [openid] } }",
    ))
    .await;
    let v1 = issuer.token(&issuer.claims("acme"));
    let a = get(&gw, "/api", Some(&v1)).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    // v3: the issuer only in the signed header.
    let v3 = issuer.token_with(&issuer.key, &issuer.claims_v3("acme"));
    let a = get(&gw, "/api", Some(&v3)).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(
        a.upstream_header("x-tenant"),
        Some("acme"),
        "tnt read from org"
    );
    // A v3 header naming another issuer than the route's is refused.
    let header = issuer.header(&issuer.key, &issuer.iss("intruder"));
    let a = get(
        &gw,
        "/api",
        Some(&issuer.key.sign(&header, &issuer.claims_v3("acme"))),
    )
    .await;
    assert_refused(&a, "invalid_claims");
}

#[tokio::test]
async fn id_tokens_are_not_access_tokens() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let claims = edit(issuer.claims("acme"), |c| {
        c.insert("jtt".into(), json!("openid"));
    });
    assert_refused(
        &get(&gw, "/api", Some(&issuer.token(&claims))).await,
        "invalid_claims",
    );
}

#[tokio::test]
async fn route_options_forward_authorization_claims_header_and_token_sources() {
    let (issuer, gw) = start(
        "",
        "{ issuers: [cryptr], forward_authorization: false, claims_header: X-Cryptr-Claims, claims_to_headers: { cid: X-Client-Id }, token: { cookie: session, query: access_token } }",
    )
    .await;
    let token = issuer.token(&issuer.claims("acme"));
    let a = get(&gw, "/api", Some(&token)).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.upstream_header("authorization"), None);
    assert_eq!(
        a.upstream_header("x-client-id"),
        Some("3f2ec1bc-0e0b-4c1c-a1b5-1f5bbf1e8e1e")
    );
    let payload = token.split('.').nth(1).unwrap();
    assert_eq!(a.upstream_header("x-cryptr-claims"), Some(payload));
    let c = support::client();
    let by_cookie = send(
        c.get(gw.url("/api"))
            .header("cookie", format!("theme=dark; session={token}")),
    )
    .await;
    assert_eq!(by_cookie.status, 200);
    let by_query = send(c.get(gw.url(&format!("/api?access_token={token}")))).await;
    assert_eq!(by_query.status, 200);
}

#[tokio::test]
async fn generic_issuers_by_discovery_with_ec_and_ed_keys() {
    let issuer = TestIssuer::with_keys(&[SigningKey::ec_p256(), SigningKey::ed25519()]).await;
    let iss = issuer.iss("oidc");
    let yaml = format!(
        "listen: 127.0.0.1:0
issuers:
  oidc:
    issuer: {iss}
    client_ids: [3f2ec1bc-0e0b-4c1c-a1b5-1f5bbf1e8e1e]
    algorithms: [ES256, EdDSA]
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [oidc] }}
"
    );
    let gw = Gateway::start(&yaml).await;
    let claims = edit(issuer.claims("oidc"), |c| {
        c.insert("aud".into(), json!("anything"));
    });
    for key in [SigningKey::ec_p256(), SigningKey::ed25519()] {
        let a = get(&gw, "/api", Some(&issuer.token_with(&key, &claims))).await;
        assert_eq!(a.status, 200, "{:?} {:?}", key.alg, a.json);
    }
    let paths = issuer.requested_paths();
    assert_eq!(
        paths,
        ["/t/oidc/.well-known/openid-configuration", "/oidc/jwks"]
    );
    let other_client = edit(claims, |c| {
        c.insert("cid".into(), json!("someone-else"));
    });
    let a = get(
        &gw,
        "/api",
        Some(&issuer.token_with(&SigningKey::ec_p256(), &other_client)),
    )
    .await;
    assert_refused(&a, "invalid_claims");
}

#[tokio::test]
async fn psychic_ecdsa_signatures_never_pass() {
    // CVE-2022-21449: an ECDSA signature with r = s = 0 (or r or s = 0, or = n) verified as
    // valid for any message in some libraries. Here each is refused as an invalid token.
    let issuer = TestIssuer::with_keys(&[SigningKey::ec_p256()]).await;
    let iss = issuer.iss("oidc");
    let gw = Gateway::start(&format!(
        "listen: 127.0.0.1:0
issuers:
  oidc:
    issuer: {iss}
    audiences: [{AUDIENCE}]
    algorithms: [ES256]
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [oidc] }}
"
    ))
    .await;
    let claims = issuer.claims("oidc");
    let good = issuer.token_with(&SigningKey::ec_p256(), &claims);
    assert_eq!(get(&gw, "/api", Some(&good)).await.status, 200);
    let signed_part = good.rsplit_once('.').unwrap().0;
    // P-256's group order n, big-endian.
    let n = "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551";
    let n: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&n[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let one = {
        let mut v = vec![0u8; 32];
        v[31] = 1;
        v
    };
    let zero = vec![0u8; 32];
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    for (r, s) in [
        (&zero, &zero),
        (&zero, &one),
        (&one, &zero),
        (&n, &n),
        (&n, &one),
    ] {
        let sig = [r.as_slice(), s.as_slice()].concat();
        let forged = format!("{signed_part}.{}", b64(&sig));
        assert_refused(&get(&gw, "/api", Some(&forged)).await, "invalid_token");
    }
    // An empty and an all-zero DER-length signature too.
    for sig in [String::new(), b64(&[0u8; 64]), b64(&[0u8; 8])] {
        let forged = format!("{signed_part}.{sig}");
        assert_eq!(get(&gw, "/api", Some(&forged)).await.status, 401);
    }
}

#[tokio::test]
async fn hostile_kids_are_only_looked_up_never_used_as_paths_or_queries() {
    // A kid is a map key here, nothing more: traversal, injection and oversized kids are an
    // unknown kid (one rate-limited refetch at most), and nothing is read or fetched by them.
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let good = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&good)).await.status, 200);
    let before = issuer.fetches();
    let paths_before = issuer.requested_paths().len();
    for kid in [
        "../../../../etc/passwd",
        "/dev/null",
        "key-a' OR '1'='1",
        "key-a\u{0}",
        "key-a/../key-a",
        "%2e%2e%2fkey-a",
        "http://127.0.0.1:1/jwks",
        &"k".repeat(4000),
    ] {
        let key = SigningKey::rsa_a().with_kid(kid);
        let token = issuer.token_with(&key, &issuer.claims("acme"));
        let a = get(&gw, "/api", Some(&token)).await;
        assert_eq!(a.status, 401, "{kid:.40}");
        assert!(
            matches!(a.code(), "no_rsa_key" | "invalid_token" | "invalid_header"),
            "{kid:.40}: {}",
            a.code()
        );
    }
    assert!(
        issuer.fetches() - before <= 1,
        "hostile kids caused refetches"
    );
    // Every JWKS request, if any, went to the issuer's own key path.
    for path in &issuer.requested_paths()[paths_before..] {
        assert_eq!(path, "/t/acme/.well-known", "{path}");
    }
}

#[tokio::test]
async fn cryptr_ruby_sdk_key_path_is_the_fallback() {
    let issuer = TestIssuer::start().await;
    issuer.keys_only_at_ruby_sdk_path();
    let gw = Gateway::start(&yaml(&issuer, "", "{ issuers: [cryptr] }")).await;
    let token = issuer.token(&issuer.claims("acme"));
    let a = get(&gw, "/api", Some(&token)).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(
        issuer.requested_paths(),
        ["/t/acme/.well-known", "/t/acme/.well-known/jwks"]
    );
}

/// Tokens a Cryptr server really issued (see `shared/fixtures/cryptr`), judged at a moment
/// inside their lifetime.
#[tokio::test]
async fn real_cryptr_tokens_are_accepted_and_the_expired_one_refused() {
    let fixtures =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cryptr");
    let yaml = "listen: 127.0.0.1:0
issuers:
  cryptr:
    cryptr: { base_url: http://localhost:4000, tenants: [drag-n-survey] }
    jwks_file: drag-n-survey.jwks.json
    audiences: [http://localhost:8000]
    claims_to_headers: { sub: X-User-Id, email: X-User-Email, tnt: X-Tenant, scp: X-Scopes }
routes:
  - name: api
    match: { prefix: /api }
    upstream: builtin:echo
    auth: { issuers: [cryptr], scopes: { all: [openid, email] } }
";
    let mut plan = support::plan_in(&fixtures, yaml, &[]).unwrap();
    // 2024-01-01T00:00:00Z: after the valid token's iat, before its exp.
    plan.auth.clock = cryptr_gateway::auth::Clock::fixed(1_704_067_200);
    let gw = Gateway::start_plan(plan).await;
    let read = |name: &str| {
        std::fs::read_to_string(fixtures.join(name))
            .unwrap()
            .trim()
            .to_string()
    };
    let a = get(&gw, "/api", Some(&read("drag-n-survey.v1.access.jwt"))).await;
    assert_eq!(a.status, 200, "{:?}", a.json);
    assert_eq!(
        a.upstream_header("x-user-id"),
        Some("90c07374-a564-476f-86be-f82953866eed")
    );
    assert_eq!(
        a.upstream_header("x-user-email"),
        Some("thibaud@drag-n-survey.co")
    );
    assert_eq!(a.upstream_header("x-tenant"), Some("drag-n-survey"));
    assert_eq!(
        a.upstream_header("x-scopes"),
        Some(r#"["openid","email","profile"]"#)
    );
    let a = get(
        &gw,
        "/api",
        Some(&read("drag-n-survey.v1.access-expired.jwt")),
    )
    .await;
    assert_refused(&a, "token_expired");
}

#[tokio::test]
async fn a_jwks_over_its_size_bound_is_not_read() {
    let issuer = TestIssuer::with_keys(&[
        SigningKey::rsa_a(),
        SigningKey::rsa_b(),
        SigningKey::rsa_4096(),
    ])
    .await;
    let gw = Gateway::start(&yaml(
        &issuer,
        "    jwks: { max_size: 1KiB }",
        "{ issuers: [cryptr] }",
    ))
    .await;
    let a = get(&gw, "/api", Some(&issuer.token(&issuer.claims("acme")))).await;
    assert_eq!(a.status, 503, "{:?}", a.json);
    assert_eq!(a.code(), "jwks_unavailable");
}

#[tokio::test]
async fn cache_control_max_age_sets_the_refresh_within_bounds() {
    let issuer = TestIssuer::start().await;
    issuer.set_cache_control("public, max-age=1");
    let _gw = Gateway::start(&yaml(
        &issuer,
        "    jwks: { min_ttl: 1s }",
        "{ issuers: [cryptr] }",
    ))
    .await;
    // Refreshed at four fifths of a second, again and again.
    poll_until(Duration::from_secs(10), "background refreshes", || {
        issuer.fetches() >= 3
    })
    .await;
    // Without max-age the default ten minutes apply: one fetch only.
    let quiet = TestIssuer::start().await;
    let _gw = Gateway::start(&yaml(
        &quiet,
        "    jwks: { min_ttl: 1s }",
        "{ issuers: [cryptr] }",
    ))
    .await;
    poll_until(Duration::from_secs(5), "the first fetch", || {
        quiet.fetches() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(quiet.fetches(), 1);
}

fn cache_stats(gw: &Gateway) -> cryptr_gateway::auth::cache::CacheStats {
    gw.plan
        .auth
        .token_cache
        .as_ref()
        .expect("token cache on")
        .stats()
}

#[tokio::test]
async fn a_token_seen_before_skips_verification_but_not_the_routes_rules() {
    let issuer = TestIssuer::start().await;
    let yaml = yaml(&issuer, "", "{ issuers: [cryptr] }").replace(
        "  - name: public",
        "  - name: admin\n    match: { prefix: /admin }\n    upstream: builtin:echo\n    auth: { issuers: [cryptr], scopes: { all: [admin] } }\n  - name: public",
    );
    let gw = Gateway::start(&yaml).await;
    let token = issuer.token(&issuer.claims("acme"));
    for _ in 0..10 {
        let a = get(&gw, "/api", Some(&token)).await;
        assert_eq!(a.status, 200);
        assert_eq!(
            a.upstream_header("x-user-id"),
            Some("eba25511-afce-4c8e-8cab-f82822434648")
        );
    }
    let stats = cache_stats(&gw);
    assert_eq!((stats.hits, stats.misses), (9, 1), "{stats:?}");
    // The cached token still meets each route's own rules.
    assert_eq!(get(&gw, "/admin", Some(&token)).await.status, 403);
}

#[tokio::test]
async fn a_remembered_token_is_checked_again_when_its_issuers_keys_change() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let old = issuer.token(&issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&old)).await.status, 200);
    assert_eq!(get(&gw, "/api", Some(&old)).await.status, 200);
    // key-a is withdrawn; a token under key-b makes the gateway fetch the new set.
    issuer.publish(&[SigningKey::rsa_b()]);
    let new = issuer.token_with(&SigningKey::rsa_b(), &issuer.claims("acme"));
    assert_eq!(get(&gw, "/api", Some(&new)).await.status, 200);
    let a = get(&gw, "/api", Some(&old)).await;
    assert_refused(&a, "no_rsa_key");
}

/// The background refresh (due every 800 ms here) brings the same set: remembered tokens stay
/// remembered. A set that changed, here by a key added as a rotation begins, sends them back to
/// a signature check, once.
#[tokio::test]
async fn a_remembered_token_survives_refreshes_that_bring_the_same_keys() {
    let (issuer, gw) = start(
        "    jwks: { ttl: 1s, min_ttl: 100ms }",
        "{ issuers: [cryptr] }",
    )
    .await;
    let token = issuer.token(&issuer.claims("acme"));
    let counts = || {
        let stats = cache_stats(&gw);
        (stats.hits, stats.misses)
    };
    // Refreshes are one at a time: when a second has begun, the first is done and cached.
    async fn two_refreshes(issuer: &TestIssuer) {
        let fetched = issuer.fetches();
        poll_until(Duration::from_secs(10), "two refreshes", || {
            issuer.fetches() >= fetched + 2
        })
        .await;
    }
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    two_refreshes(&issuer).await;
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    assert_eq!(counts(), (1, 1), "a refresh of the same keys");

    issuer.publish(&[SigningKey::rsa_a(), SigningKey::rsa_b()]);
    two_refreshes(&issuer).await;
    for _ in 0..2 {
        assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    }
    assert_eq!(counts(), (2, 2), "a key added");
}

#[tokio::test]
async fn a_remembered_token_expires_with_its_exp() {
    let (issuer, gw) = start("    leeway: 0s", "{ issuers: [cryptr] }").await;
    let claims = edit(issuer.claims("acme"), |c| {
        c.insert("exp".into(), json!(now() + 2));
    });
    let token = issuer.token(&claims);
    assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_refused(&get(&gw, "/api", Some(&token)).await, "token_expired");
}

#[tokio::test]
async fn a_flood_of_one_forged_token_costs_one_verification() {
    let (issuer, gw) = start("", "{ issuers: [cryptr] }").await;
    let forged = issuer.token_with(
        &SigningKey::rsa_b().with_kid("key-a"),
        &issuer.claims("acme"),
    );
    for _ in 0..20 {
        assert_refused(&get(&gw, "/api", Some(&forged)).await, "invalid_token");
    }
    assert_eq!(cache_stats(&gw).bad_hits, 19);
}

#[tokio::test]
async fn token_cache_off_verifies_every_time() {
    let issuer = TestIssuer::start().await;
    let yaml =
        yaml(&issuer, "", "{ issuers: [cryptr] }").replace("routes:", "token_cache: off\nroutes:");
    let gw = Gateway::start(&yaml).await;
    assert!(gw.plan.auth.token_cache.is_none());
    let token = issuer.token(&issuer.claims("acme"));
    for _ in 0..3 {
        assert_eq!(get(&gw, "/api", Some(&token)).await.status, 200);
    }
}
