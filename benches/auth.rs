//! The auth phase alone, in process: what a request costs between "route found" and
//! "headers ready for the upstream", with a cached token, with every token verified (RSA 2048
//! and 4096, the size Cryptr uses), and with a forged token remembered as bad.
//!
//! `cargo bench --bench auth` (add `-- --quick` for a short run). The whole-gateway numbers,
//! against nginx, are `bench/run.sh`'s.

use std::hint::black_box;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion};
use cryptr_gateway::auth::RouteAuth;
use cryptr_gateway::config::{self, Plan};
use cryptr_gateway::fuzzing;
use cryptr_gateway::mint::{SigningKey, TokenSpec};
use cryptr_gateway::route::Auth;
use http::{HeaderMap, HeaderValue};

const ISS: &str = "https://auth.cryptr.eu/t/acme";
const AUD: &str = "http://localhost:8080";

fn key(file: &str, kid: &str) -> SigningKey {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(file);
    let pem = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    SigningKey::from_pem(&pem, Some(kid)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// A plan with one issuer whose keys are `keys`' public halves, one protected route, and the
/// claim headers of the tutorial's setup.
fn plan(dir: &Path, keys: &[&SigningKey], token_cache: bool) -> Plan {
    let jwks: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| k.jwk().unwrap_or_else(|e| panic!("jwk: {e}")))
        .collect();
    std::fs::write(
        dir.join("jwks.json"),
        serde_json::json!({ "keys": jwks }).to_string(),
    )
    .unwrap_or_else(|e| panic!("jwks.json: {e}"));
    let yaml = format!(
        r#"
listen: 127.0.0.1:0
admin: {{ enabled: false }}
token_cache: {}
issuers:
  acme:
    issuer: {ISS}
    jwks_file: jwks.json
    audiences: ["{AUD}"]
    claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, tnt: X-Tenant }}
routes:
  - name: api
    match: {{ prefix: / }}
    upstream: builtin:courses
    auth: {{ issuers: [acme], scopes: {{ all: [openid] }} }}
"#,
        if token_cache { "on" } else { "off" }
    );
    config::load_str(&yaml, "bench.yaml", dir, &|_| None)
        .unwrap_or_else(|e| panic!("the bench plan does not compile:\n{e}"))
}

fn rules(plan: &Plan) -> &RouteAuth {
    match &plan.routes[0].auth {
        Auth::Token(rules) => rules,
        Auth::None => panic!("the bench route is protected"),
    }
}

fn token(key: &SigningKey, sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let spec = TokenSpec {
        iss: ISS.into(),
        aud: AUD.into(),
        sub: sub.into(),
        email: Some("max@example.com".into()),
        tenant: Some("acme".into()),
        scopes: vec!["openid".into(), "email".into()],
        claims: Vec::new(),
        ttl_secs: 3600,
        now,
    };
    key.sign(ISS, &spec.claims())
        .unwrap_or_else(|e| panic!("sign: {e}"))
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let value =
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap_or_else(|e| panic!("header: {e}"));
    headers.insert(http::header::AUTHORIZATION, value);
    headers.insert(http::header::HOST, HeaderValue::from_static("api.test"));
    headers
}

fn auth_phase(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let dir = std::env::temp_dir().join(format!("cryptr-gateway-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let rsa2048 = key("rsa-a.pem", "rsa-a");
    let rsa4096 = key("rsa-4096.pem", "rsa-4096");
    let cached = plan(&dir, &[&rsa2048, &rsa4096], true);
    let uncached = plan(&dir, &[&rsa2048, &rsa4096], false);
    let t2048 = bearer(&token(&rsa2048, "user-1"));
    let t4096 = bearer(&token(&rsa4096, "user-1"));
    let forged = {
        let t = token(&rsa2048, "user-1");
        let (rest, sig) = t.rsplit_once('.').unwrap_or_else(|| panic!("a JWS"));
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        bearer(&format!("{rest}.{flipped}{}", &sig[1..]))
    };

    let run = |plan: &Plan, headers: &HeaderMap| {
        rt.block_on(fuzzing::authenticate(
            &plan.auth,
            rules(plan),
            headers,
            None,
        ))
    };
    // Sanity before timing: each case ends the way its name says.
    assert!(matches!(run(&cached, &t2048), Ok(Some(_))));
    assert!(matches!(run(&uncached, &t4096), Ok(Some(_))));
    assert!(run(&cached, &forged).is_err());

    let mut group = c.benchmark_group("auth");
    group.bench_function("cached token (RSA 2048)", |b| {
        b.iter(|| black_box(run(&cached, black_box(&t2048))))
    });
    group.bench_function("forged token, remembered", |b| {
        b.iter(|| black_box(run(&cached, black_box(&forged))))
    });
    group.bench_function("uncached, verify RS256 (RSA 2048)", |b| {
        b.iter(|| black_box(run(&uncached, black_box(&t2048))))
    });
    group.bench_function("uncached, verify RS256 (RSA 4096)", |b| {
        b.iter(|| black_box(run(&uncached, black_box(&t4096))))
    });
    let identity = match run(&cached, &t2048) {
        Ok(Some(identity)) => identity,
        other => panic!("a verified identity, got {other:?}"),
    };
    group.bench_function("claims to headers", |b| {
        b.iter(|| {
            let mut headers = HeaderMap::new();
            rules(&cached).inject(black_box(&identity), &mut headers);
            black_box(headers)
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, auth_phase);
criterion_main!(benches);
