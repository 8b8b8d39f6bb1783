//! Writes the seed corpora (`fuzz/seeds/<target>/`) and `fuzz/fixtures/local.jwks.json`.
//!
//! Run from the repository root: `cargo run --manifest-path fuzz/Cargo.toml --example make_seeds`.
//! Deterministic except the ES256 and HS signatures' randomness (ECDSA): the committed seeds
//! need not be regenerated unless a plan or a token shape changes.

#[path = "../fuzz_targets/common/plans.rs"]
mod plans;

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use cryptr_gateway::mint::{SigningKey, TokenSpec};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

const NOW: u64 = 1_704_067_200;
const LOCAL_ISS: &str = "https://issuer.test/t/acme";
const LOCAL_AUD: &str = "https://api.test";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn write(target: &str, name: &str, bytes: impl AsRef<[u8]>) {
    let dir = root().join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(pem: &str, kid: &str) -> SigningKey {
    SigningKey::from_pem(&read(&format!("../tests/keys/{pem}")), Some(kid)).unwrap()
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A compact JWS with exactly this header, signed with `encoding` under `alg`.
fn sign_raw(header: &Value, claims: &Value, encoding: &EncodingKey, alg: Algorithm) -> String {
    let input = format!("{}.{}", b64(header), b64(claims));
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), encoding, alg).unwrap();
    format!("{input}.{sig}")
}

fn spec() -> TokenSpec {
    TokenSpec {
        iss: LOCAL_ISS.into(),
        aud: LOCAL_AUD.into(),
        sub: "user-1".into(),
        email: Some("user@acme.test".into()),
        tenant: Some("acme".into()),
        scopes: vec!["openid".into(), "read".into()],
        claims: vec![("org".into(), json!("acme"))],
        ttl_secs: 3600,
        now: NOW,
    }
}

fn pem_der(pem: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(pem);
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn main() {
    // Keys: the test keys, each under a stable kid.
    let rsa_a = key("rsa-a.pem", "rsa-a");
    let mut rsa_b = key("rsa-b.pem", "rsa-b");
    let mut rsa_4096 = key("rsa-4096.pem", "rsa-4096");
    let ec = key("ec-p256.pem", "ec-p256");
    let ed_pem = read("../tests/keys/ed25519.pem");
    let ed_pair =
        aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_der(&ed_pem))
            .unwrap();
    let ed_public = aws_lc_rs::signature::KeyPair::public_key(&ed_pair)
        .as_ref()
        .to_vec();
    let ed_encoding = EncodingKey::from_ed_pem(&ed_pem).unwrap();

    // local.jwks.json: rsa-a bound to RS256, rsa-b and rsa-4096 for any RSA algorithm,
    // ec-p256 for ES256, ed25519 for EdDSA.
    let strip_alg = |mut v: Value| {
        v.as_object_mut().unwrap().remove("alg");
        v
    };
    let ed_jwk = json!({
        "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(&ed_public),
        "kid": "ed25519", "use": "sig", "alg": "EdDSA"
    });
    let local_keys = vec![
        rsa_a.jwk().unwrap(),
        strip_alg(rsa_b.jwk().unwrap()),
        strip_alg(rsa_4096.jwk().unwrap()),
        ec.jwk().unwrap(),
        ed_jwk.clone(),
    ];
    let local_jwks = serde_json::to_string_pretty(&json!({ "keys": local_keys })).unwrap();
    std::fs::write(root().join("fixtures/local.jwks.json"), &local_jwks).unwrap();

    // Tokens.
    let claims = spec().claims();
    let with = |changes: &[(&str, Value)]| {
        let mut c = claims.clone();
        for (k, v) in changes {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(*k);
            } else {
                c[*k] = v.clone();
            }
        }
        c
    };
    rsa_b.alg = Algorithm::PS256;
    rsa_4096.alg = Algorithm::RS512;
    let header =
        |alg: &str, kid: &str| json!({"alg": alg, "typ": "JWT", "kid": kid, "iss": LOCAL_ISS});
    let cryptr = String::from_utf8(read(
        "../../shared/fixtures/cryptr/drag-n-survey.v1.access.jwt",
    ))
    .unwrap();
    let cryptr_expired = String::from_utf8(read(
        "../../shared/fixtures/cryptr/drag-n-survey.v1.access-expired.jwt",
    ))
    .unwrap();
    let rsa_a_public_pem = {
        // The alg-confusion classic: HS256 "signed" with the RSA public key's PEM.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(rsa_a.jwk().unwrap()).unwrap();
        serde_json::to_vec(&jwk).unwrap()
    };
    let mut tokens: Vec<(&str, String)> = vec![
        ("cryptr-v1", cryptr.trim().to_string()),
        ("cryptr-v1-expired", cryptr_expired.trim().to_string()),
        ("rs256", rsa_a.sign(LOCAL_ISS, &claims).unwrap()),
        ("ps256", rsa_b.sign(LOCAL_ISS, &claims).unwrap()),
        ("rs512-4096", rsa_4096.sign(LOCAL_ISS, &claims).unwrap()),
        ("es256", ec.sign(LOCAL_ISS, &claims).unwrap()),
        (
            "eddsa",
            sign_raw(
                &header("EdDSA", "ed25519"),
                &claims,
                &ed_encoding,
                Algorithm::EdDSA,
            ),
        ),
        (
            "wrong-aud",
            rsa_a
                .sign(LOCAL_ISS, &with(&[("aud", json!("https://evil.test"))]))
                .unwrap(),
        ),
        (
            "aud-list",
            ec.sign(
                LOCAL_ISS,
                &with(&[("aud", json!(["x", "https://app.test"]))]),
            )
            .unwrap(),
        ),
        (
            "expired",
            ec.sign(
                LOCAL_ISS,
                &with(&[("exp", json!(NOW - 3600)), ("iat", json!(NOW - 7200))]),
            )
            .unwrap(),
        ),
        (
            "nbf-future",
            ec.sign(LOCAL_ISS, &with(&[("nbf", json!(NOW + 3600))]))
                .unwrap(),
        ),
        (
            "refresh-jtt",
            ec.sign(LOCAL_ISS, &with(&[("jtt", json!("refresh"))]))
                .unwrap(),
        ),
        (
            "no-sub",
            ec.sign(LOCAL_ISS, &with(&[("sub", Value::Null)])).unwrap(),
        ),
        (
            "no-exp",
            ec.sign(LOCAL_ISS, &with(&[("exp", Value::Null)])).unwrap(),
        ),
        (
            "v3-header-iss-only",
            ec.sign(
                LOCAL_ISS,
                &with(&[
                    ("iss", Value::Null),
                    ("scope", json!("read write")),
                    ("scp", Value::Null),
                ]),
            )
            .unwrap(),
        ),
        (
            "two-issuers",
            ec.sign("https://other.test", &claims).unwrap(),
        ),
        (
            "no-scope",
            ec.sign(LOCAL_ISS, &with(&[("scp", json!(["openid"]))]))
                .unwrap(),
        ),
        (
            "other-tenant",
            ec.sign(
                LOCAL_ISS,
                &with(&[("tnt", json!("globex")), ("org", json!("globex"))]),
            )
            .unwrap(),
        ),
        (
            "unknown-kid",
            sign_raw(
                &header("ES256", "nope"),
                &claims,
                &ec.encoding,
                Algorithm::ES256,
            ),
        ),
        (
            "alg-key-mismatch",
            sign_raw(
                &header("ES256", "rsa-a"),
                &claims,
                &ec.encoding,
                Algorithm::ES256,
            ),
        ),
        (
            "hs256-secret",
            sign_raw(
                &header("HS256", "rsa-a"),
                &claims,
                &EncodingKey::from_secret(b"secret").unwrap(),
                Algorithm::HS256,
            ),
        ),
        (
            "hs256-public-key",
            sign_raw(
                &header("HS256", "rsa-a"),
                &claims,
                &EncodingKey::from_secret(&rsa_a_public_pem).unwrap(),
                Algorithm::HS256,
            ),
        ),
        (
            "alg-none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "kid": "rsa-a"})),
                b64(&claims)
            ),
        ),
        (
            "crit",
            sign_raw(
                &json!({"alg": "ES256", "kid": "ec-p256", "crit": ["exp"], "iss": LOCAL_ISS}),
                &claims,
                &ec.encoding,
                Algorithm::ES256,
            ),
        ),
    ];
    let good = tokens[2].1.clone();
    let (input, _) = good.rsplit_once('.').unwrap();
    tokens.push(("tampered", format!("{input}.AAAA")));
    tokens.push(("two-parts", input.to_string()));

    // auth_token: a selector byte (source, route, sign mode, explain notes), then the data.
    for (name, token) in &tokens {
        write(
            "auth_token",
            &format!("{name}-bearer"),
            [&[0u8][..], format!("Bearer {token}").as_bytes()].concat(),
        );
        write(
            "auth_token",
            &format!("{name}-raw-notes"),
            [&[0x11u8][..], token.as_bytes()].concat(),
        );
    }
    for (sel, name) in [
        (0x02u8, "cookie"),
        (0x03, "query"),
        (0x05, "scoped-raw"),
        (0x15, "scoped-raw-notes"),
    ] {
        write(
            "auth_token",
            &format!("rs256-{name}"),
            [&[sel][..], good.as_bytes()].concat(),
        );
        write(
            "auth_token",
            &format!("cryptr-{name}"),
            [&[sel][..], tokens[0].1.as_bytes()].concat(),
        );
    }
    for (i, v) in [
        "Basic dXNlcjpwdw==",
        "Bearer",
        "Bearer a b",
        "bearer  x.y.z ",
        "Bearer a,b",
        "Bearer \u{e9}",
    ]
    .iter()
    .enumerate()
    {
        write(
            "auth_token",
            &format!("header-{i}"),
            [&[0u8][..], v.as_bytes()].concat(),
        );
    }
    // Sign mode: header JSON, NUL, payload JSON; the target signs them with ec-p256.
    let ec_header = json!({"alg": "ES256", "typ": "JWT", "kid": "ec-p256", "iss": LOCAL_ISS});
    let payloads = [
        claims.clone(),
        with(&[("exp", json!(1e20))]),
        with(&[("exp", json!(253_402_300_800u64))]),
        with(&[("exp", json!(-1))]),
        with(&[("iat", json!(u64::MAX)), ("nbf", json!(0.5))]),
        with(&[("aud", json!([1, null, "https://api.test"]))]),
        with(&[("scp", json!("read  write")), ("tnt", json!(["acme", "x"]))]),
        with(&[("email", json!("a\r\nX-Admin: 1")), ("sub", json!("\u{0}"))]),
        with(&[("iss", json!(["https://issuer.test/t/acme"]))]),
    ];
    for (i, p) in payloads.iter().enumerate() {
        let data = [
            ec_header.to_string().as_bytes(),
            b"\0",
            p.to_string().as_bytes(),
        ]
        .concat();
        write(
            "auth_token",
            &format!("signed-{i}"),
            [&[0x09u8][..], &data].concat(),
        );
        // Not in explain mode: describe_claims panics on times past year 9999 (see
        // regressions/auth_token/); a crashing seed would stop the fuzzer at start-up.
        if ![1, 2, 4].contains(&i) {
            write(
                "auth_token",
                &format!("signed-{i}-notes"),
                [&[0x19u8][..], &data].concat(),
            );
        }
        write(
            "auth_token",
            &format!("signed-{i}-scoped"),
            [&[0x0du8][..], &data].concat(),
        );
    }

    // parse_jwks: real and local sets, each key alone, the unit tests' odd keys.
    write(
        "parse_jwks",
        "cryptr.json",
        read("../../shared/fixtures/cryptr/drag-n-survey.jwks.json"),
    );
    write("parse_jwks", "local.json", &local_jwks);
    let cryptr_doc: Value = serde_json::from_slice(&read(
        "../../shared/fixtures/cryptr/drag-n-survey.jwks.json",
    ))
    .unwrap();
    let all = local_keys
        .iter()
        .chain(cryptr_doc["keys"].as_array().unwrap());
    for (i, k) in all.enumerate() {
        write(
            "parse_jwks",
            &format!("key-{i}.json"),
            json!({ "keys": [k] }).to_string(),
        );
    }
    write(
        "parse_jwks",
        "odd-keys.json",
        r#"{"keys":[
{"kty":"oct","kid":"h","k":"c2VjcmV0"},
{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"},
{"kty":"RSA","kid":"small","n":"AQAB","e":"AQAB"},
{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
{"kty":"EC","kid":"ec","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
{"kty":"EC","kid":"ec384","crv":"P-384","alg":"ES384","x":"AAAA","y":"AAAA"},
{"kty":"OKP","kid":"x","crv":"X25519","x":"AAAA"},
{"kty":"RSA","kid":"oaep","alg":"RSA-OAEP","n":"AQAB","e":"AQAB"}
]}"#,
    );
    write("parse_jwks", "empty.json", r#"{"keys":[]}"#);
    // The same kid twice: the later one wins.
    let mut ec_as_rsa_a = ec.jwk().unwrap();
    ec_as_rsa_a["kid"] = json!("rsa-a");
    write(
        "parse_jwks",
        "dup-kid.json",
        json!({"keys": [rsa_a.jwk().unwrap(), ec_as_rsa_a]}).to_string(),
    );

    // config: the repository's gateway.yaml, the targets' own plans, the tests' snippets.
    write("config", "gateway.yaml", read("../gateway.yaml"));
    write("config", "auth.yaml", plans::auth());
    write("config", "routes.yaml", plans::ROUTES);
    write("config", "cors.yaml", plans::CORS);
    write("config", "pipeline.yaml", plans::pipeline(9));
    let route = |rule: &str| {
        format!("listen: 127.0.0.1:0\nroutes:\n  - name: r\n    {rule}\n    upstream: builtin:echo\n    auth: none\n")
    };
    let snippets = [
        "listen: ${HOST:-127.0.0.1}:${PORT}\nlimits: { timeout: ${T:-5s} }\nroutes:\n  - name: e\n    match: { prefix: ${P:-/} }\n    upstream: builtin:echo\n    auth: none\n".to_string(),
        "listen: 127.0.0.1:${PORT}\nroutes: []\n".into(),
        "listen: 127.0.0.1:0\nroutes:\n  - { name: e, match: { prefix: ${P} }, upstream: builtin:nope, auth: none }\n".into(),
        "listen: 127.0.0.1:0 # $${not} ${A:-a:b}\nroutes:\n  - { name: e, match: { prefix: \"/#${P:-x}\" }, upstream: builtin:echo, auth: none }\n".into(),
        "routes:\n  - name: [unclosed\n".into(),
        route("match: { prefix: /a/ }"),
        route("match: { exact: /a, prefix: /b }"),
        route("match: { methods: [GET] }"),
        route("match: { prefix: /a/../b }"),
        route("match: { prefix: /%61 }"),
        route("match: { exact: /a }\n    strip_prefix: true"),
        route("match: { prefix: /a }\n    timeout: 0s"),
        route("match: { prefix: /a, methods: [] }"),
        route("match: { prefix: /a, methods: [GTE, get, BREW] }\n    max_body: 1.5MiB\n    max_concurrent_requests: 0"),
        "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    match: { prefix: /a }\n    upstream: { url: https://x, ca_file: ca.pem, client_cert: c.pem, client_key: k.pem }\n    auth: none\n".into(),
        "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    match: { prefix: /a }\n    upstream: http://user:pw@x/?a=1\n    auth: none\n".into(),
        "listen: 127.0.0.1:0\nroutes:\n  - { name: all, match: { prefix: / }, upstream: builtin:echo, auth: none }\n  - { name: all, match: { prefix: /x, host: a.b }, upstream: builtin:echo, auth: none }\n  - { name: api, match: { prefix: /api }, upstream: builtin:echo, auth: none }\n".into(),
        "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    match: { prefix: /a }\n    upstream: builtin:echo\n".into(),
        "".into(),
        "listen: 127.0.0.1:0\n".into(),
        "listen: 127.0.0.1:0\ntls: { cert: cert.pem, key: key.pem }\nadmin: { listen: \"[::1]:0\" }\ntrusted_proxies: [10.0.0.0/8, \"::1\", 300.1.1.1]\ntoken_cache: maybe\nroutes:\n  - { name: e, match: { prefix: / }, upstream: builtin:echo, auth: none }\n".into(),
        "listen: 127.0.0.1:0\ncors: { allowed_origins: [\"*\"], allow_credentials: true, allowed_headers: [\"*\"], max_age: 1y }\nroutes:\n  - { name: e, match: { prefix: / }, upstream: builtin:echo, auth: none, cors: { allowed_origins: [null, \"http://*.*.x\", \"https://a:99999\"] } }\n".into(),
        "a: &a [1, *a]\n".into(),
        "listen: 127.0.0.1:0\nroutes:\n  - &r { name: e, match: { prefix: /e }, upstream: builtin:echo, auth: none }\n  - <<: *r\n    name: f\n".into(),
    ];
    for (i, s) in snippets.iter().enumerate() {
        write("config", &format!("snippet-{i}.yaml"), s);
    }
    let issuer_cases = [
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }", "{ issuers: [cryptor] }"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    audiences: []", "{ issuers: [cryptr] }"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    algorithms: [HS256, RS265]", "{ issuers: [cryptr] }"),
        ("cryptr: { base_url: https://auth.cryptr.eu/t/acme, tenants: [acme, \"a b\"] }", "{ issuers: [cryptr] }"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    claims_to_headers: { sub: Authorization }", "{ issuers: [cryptr], scopes: { all: [] } }"),
        ("issuer: not a url", "token"),
        ("issuer: https://idp.test\n    jwks_uri: https://idp.test/keys\n    jwks: { timeout: 1s, ttl: 1m, min_ttl: 2m, max_ttl: 1m, max_size: 0B }", "{ issuers: [cryptr], optional: true }"),
        ("issuer: https://idp.test\n    jwks_file: local.jwks.json\n    jwks_uri: https://idp.test/keys", "{ issuers: [cryptr] }"),
        ("issuer: https://idp.test\n    jwks_file: missing.json", "{ issuers: [cryptr] }"),
        ("issuer: https://idp.test\n    jwks_file: cryptr.jwks.json\n    max_token_size: 10B\n    required_claims: [email]\n    client_ids: [c1]", "{ issuers: [cryptr], claims: { tnt: [acme, 1, null] }, token: { cookie: \"\", query: q } }"),
    ];
    for (i, (issuer, auth)) in issuer_cases.iter().enumerate() {
        write("config", &format!("issuer-{i}.yaml"), format!(
            "listen: 127.0.0.1:0\nissuers:\n  cryptr:\n    {issuer}\n    audiences: [http://localhost:8080]\nroutes:\n  - name: r\n    match: {{ prefix: /a }}\n    upstream: builtin:echo\n    auth: {auth}\n"
        ));
    }

    // route: method, Host header, request target, then two path rules (`=` for exact) whose
    // `covers` is checked against the path.
    let route_seeds = [
        "GET\n\n/api/v1/courses\n/api\n/api/v1",
        "GET\nlocalhost:8081\n/api/v1/courses/1?x=1\n/api/v1\n=/api/v1/courses",
        "HEAD\nexample.com\n/api/v1/courses\n/\n/a",
        "POST\nadmin.test\n/api/v1/courses\n/api\n/apix",
        "POST\nADMIN.TEST.:80\n//api//v1/%63ourses/\n/api/v1/courses\n=/api/v1/courses/",
        "DELETE\nelsewhere\n/api/v1/courses\n=/a\n=/a",
        "GET\nstatic.test\n/img/%7Ea.png\n/img\n/img/x",
        "GET\n[::1]:8080\n/v6/x\n/v6\n/v6/",
        "GET\n\nhttp://static.test:8080/x/y\n/x\n/x/y",
        "OPTIONS\n\n*\n/\n/",
        "GET\n\n/public/%2e%2e/api/x\n/public\n/public/..",
        "GET\n\n/a%2fb\n/a\n/a%2fb",
        "BREW\n\n/health\n=/health\n/health",
        "PATCH\n\n/api\n/api\n/api/",
        "GET\n\n/a.b/~c_d-e/%41\n/a.b\n/a.b/~c_d-e",
        "GET\n\n/%E2%82%AC/%zz\n/%E2%82%AC\n/%e2%82%ac",
    ];
    for (i, s) in route_seeds.iter().enumerate() {
        write("route", &format!("seed-{i}"), s);
    }

    // cors: policy index, Origin, a pattern, an exact origin, Access-Control-Request-Method,
    // -Headers, -Private-Network.
    let cors_seeds = [
        "0\nhttp://localhost:8080\nhttps://*.app.test\nhttp://localhost:8080\nGET\nauthorization, content-type\n",
        "1\nhttps://a.app.test\nhttps://*.app.test\nhttps://a.app.test:443\nPUT\nAuthorization\ntrue",
        "2\nhttps://anything.test\nhttp://*.localhost:3000\nnull\nPOST\nx-custom, authorization\n",
        "3\nhttp://app.localhost:3000\nhttp://*.localhost:3000\nHTTP://APP.LOCALHOST:3000\nDELETE\nx-a,,x-b\nTRUE",
        "3\nhttps://a.b.example.com\nhttps://*.example.com\nhttps://example.com\nGET\n\n",
        "0\nhttp://[::1]:3000\nhttps://*.[::1]\nhttp://[::1]:3000\nGET\n\n",
        "1\nnull\nhttps://*.app.test:8443\nhttps://x:\nPATCH\ncontent-type\nfalse",
        "0\nhttps://evil.app.test.evil\nhttps://*.app.test\nhttps://evil.app.test.evil\nGET\n\n",
        "2\nhttp://localhost:8080/path\nftp://*.x\nhttp://@x\nGE T\n\n",
        "3\nhttps://*.example.com\nhttps://*.example.com\nhttps://*.example.com\nGET\n\n",
    ];
    for (i, s) in cors_seeds.iter().enumerate() {
        write("cors", &format!("seed-{i}"), s);
    }

    // pipeline: raw HTTP/1.1 bytes.
    let es = &tokens[5].1;
    let rs = &tokens[2].1;
    let cryptr_token = &tokens[0].1;
    let expired = &tokens[9].1;
    let pipeline_seeds: Vec<(String, String)> = vec![
        ("echo".into(), "GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n".into()),
        ("echo-forged".into(), "GET /echo/x?y=1 HTTP/1.1\r\nHost: localhost\r\nX-User-Id: admin\r\nx_user_email: a@b\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4;proto=https\r\nConnection: close, x-drop\r\nX-Drop: 1\r\nTE: trailers\r\n\r\n".into()),
        ("courses-cryptr".into(), format!("GET /api/v1/courses HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {cryptr_token}\r\nOrigin: http://localhost:8080\r\n\r\n")),
        ("courses-es256".into(), format!("GET /api/v1/courses/1 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {es}\r\n\r\n")),
        ("courses-anon".into(), "GET /api/v1/courses HTTP/1.1\r\nHost: localhost\r\nOrigin: https://x.app.test\r\n\r\n".into()),
        ("courses-post".into(), "POST /api/v1/courses HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n{}".into()),
        ("api-cookie".into(), format!("POST /api/things?access_token=x HTTP/1.1\r\nHost: localhost\r\nCookie: a=b; at={rs}\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{{\"a\":true}}")),
        ("api-query".into(), format!("GET /api?access_token={es} HTTP/1.1\r\nHost: localhost\r\n\r\n")),
        ("api-chunked".into(), format!("PUT /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {es}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n")),
        ("api-too-big".into(), format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {es}\r\nContent-Length: 2000\r\n\r\n{}", "a".repeat(2000))),
        ("api-expect".into(), format!("POST /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {es}\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc")),
        ("expired".into(), format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {expired}\r\n\r\n")),
        ("whoami".into(), format!("GET /whoami HTTP/1.1\r\nHost: localhost\r\nAuthorization: bearer {rs}\r\n\r\nGET /whoami HTTP/1.1\r\nHost: localhost\r\n\r\nDELETE /whoami HTTP/1.1\r\nHost: localhost\r\n\r\n")),
        ("preflight".into(), "OPTIONS /api/x HTTP/1.1\r\nHost: localhost\r\nOrigin: http://localhost:8080\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n".into()),
        ("preflight-upstream".into(), "OPTIONS /up/x HTTP/1.1\r\nHost: localhost\r\nOrigin: https://a.app.test\r\nAccess-Control-Request-Method: PUT\r\nAccess-Control-Request-Private-Network: true\r\n\r\n".into()),
        ("upstream".into(), "GET /up/a%20b/%7e?q=1 HTTP/1.1\r\nHost: localhost:8081\r\nOrigin: https://a.app.test\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nUpgrade: h2c\r\n\r\n".into()),
        ("upstream-post".into(), "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello".into()),
        ("tenant".into(), format!("GET /anything HTTP/1.1\r\nHost: ACME.test.\r\nAuthorization: Bearer {es}\r\nX-Org: forged\r\n\r\n")),
        ("absolute-form".into(), "GET http://acme.test/x HTTP/1.1\r\nHost: other\r\n\r\n".into()),
        ("bad-paths".into(), "GET /echo/../api HTTP/1.1\r\nHost: a\r\n\r\nGET /echo%2fx HTTP/1.1\r\nHost: a\r\n\r\nGET //echo//x HTTP/1.1\r\nHost: a\r\n\r\nGET * HTTP/1.1\r\nHost: a\r\n\r\n".into()),
        ("two-auth".into(), format!("GET /api/x HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {es}\r\nAuthorization: Bearer {es}\r\n\r\n")),
        ("http10".into(), "GET /echo HTTP/1.0\r\n\r\n".into()),
        ("connect".into(), "CONNECT localhost:80 HTTP/1.1\r\nHost: localhost:80\r\n\r\n".into()),
        ("head".into(), "HEAD /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\n\r\n".into()),
        ("request-id".into(), "GET /echo HTTP/1.1\r\nHost: a\r\nX-Request-Id: \x01bad\r\n\r\n".into()),
    ];
    for (name, s) in &pipeline_seeds {
        write("pipeline", name, s);
    }
    println!("seeds written under {}", root().join("seeds").display());
}
