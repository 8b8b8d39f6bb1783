//! `cryptr-gateway explain`: the verdict and its steps, for a passing request and each kind of
//! refusal, with the exit code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::issuer::{edit, TestIssuer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/cryptr")
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(name))
        .unwrap()
        .trim()
        .to_string()
}

/// A config file for the real Cryptr fixtures, in a temporary folder (removed on drop).
struct Config(PathBuf);

impl Config {
    fn new(name: &str, yaml: &str) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "cryptr-gateway-explain-{name}-{}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
        Config(dir)
    }
    fn path(&self) -> PathBuf {
        self.0.join("gateway.yaml")
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture_config(name: &str) -> Config {
    Config::new(
        name,
        &format!(
            "listen: 127.0.0.1:0
cors: {{ allowed_origins: [\"http://localhost:8080\"] }}
issuers:
  cryptr:
    cryptr: {{ base_url: http://localhost:4000, tenants: [drag-n-survey] }}
    jwks_file: {}
    audiences: [http://localhost:8000]
    claims_to_headers: {{ sub: X-User-Id }}
routes:
  - name: courses
    match: {{ prefix: /api/v1/courses, methods: [GET] }}
    upstream: builtin:courses
    auth: {{ issuers: [cryptr], scopes: {{ all: [openid] }} }}
",
            fixtures().join("drag-n-survey.jwks.json").display()
        ),
    )
}

fn explain(config: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
        .arg("explain")
        .arg("-c")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

const IN_LIFETIME: &str = "2024-01-01T00:00:00Z";

#[test]
fn a_passing_request_is_explained_step_by_step_and_exits_0() {
    let cfg = fixture_config("pass");
    let token = fixture("drag-n-survey.v1.access.jwt");
    let (code, out) = explain(
        &cfg.path(),
        &[
            "--token",
            &token,
            "--origin",
            "http://localhost:8080",
            "--at",
            IN_LIFETIME,
            "GET",
            "/api/v1/courses",
        ],
        None,
    );
    assert_eq!(code, 0, "{out}");
    for needle in [
        "route          courses (prefix /api/v1/courses [GET]) -> builtin:courses",
        "origin http://localhost:8080: allowed",
        "kid 4888c448-8628-424f-b632-aa7723aabf1d",
        "signature      verified",
        "exp 2025-01-08T08:54:01Z (future)",
        "upstream gets  x-user-id: 90c07374-a564-476f-86be-f82953866eed",
        "verdict: PASS: forwarded to builtin:courses",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

#[test]
fn each_refusal_names_its_status_code_and_exits_1() {
    let cfg = fixture_config("refusals");
    let token = fixture("drag-n-survey.v1.access.jwt");
    let expired = fixture("drag-n-survey.v1.access-expired.jwt");
    let tampered = {
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[2] = format!("{}A", &parts[2][..parts[2].len() - 1]);
        parts.join(".")
    };
    let other_keys = cfg.0.join("other-jwks.json");
    std::fs::write(&other_keys, r#"{"keys":[]}"#).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "--token",
                &expired,
                "--at",
                IN_LIFETIME,
                "GET",
                "/api/v1/courses",
            ],
            "401 token_expired",
        ),
        (
            vec!["--token", &token, "GET", "/api/v1/courses"],
            "401 token_expired",
        ),
        (
            vec![
                "--token",
                &token,
                "--at",
                "2022-01-01T00:00:00Z",
                "GET",
                "/api/v1/courses",
            ],
            "401 invalid_claims",
        ),
        (
            vec![
                "--token",
                &tampered,
                "--at",
                IN_LIFETIME,
                "GET",
                "/api/v1/courses",
            ],
            "401 invalid_token",
        ),
        (
            vec!["GET", "/api/v1/courses"],
            "401 authorization_header_missing",
        ),
        (
            vec!["--token", &token, "--at", IN_LIFETIME, "GET", "/nowhere"],
            "404 route_not_found",
        ),
        (
            vec![
                "--token",
                &token,
                "--at",
                IN_LIFETIME,
                "DELETE",
                "/api/v1/courses",
            ],
            "405 method_not_allowed",
        ),
        (
            vec!["--token", &token, "--at", IN_LIFETIME, "GET", "/api/../x"],
            "400 invalid_path",
        ),
        (
            vec![
                "--token",
                &token,
                "--at",
                IN_LIFETIME,
                "-H",
                "X-HTTP-Method-Override: DELETE",
                "GET",
                "/api/v1/courses",
            ],
            "400 method_override",
        ),
        (
            vec![
                "--token",
                &token,
                "--at",
                IN_LIFETIME,
                "--jwks",
                other_keys.to_str().unwrap(),
                "GET",
                "/api/v1/courses",
            ],
            "401 no_rsa_key",
        ),
        (
            vec![
                "--origin",
                "http://localhost:8080",
                "-H",
                "Access-Control-Request-Method: DELETE",
                "OPTIONS",
                "/api/v1/courses",
            ],
            "preflight not allowed",
        ),
    ];
    for (args, needle) in cases {
        let (code, out) = explain(&cfg.path(), &args, None);
        assert_eq!(code, 1, "{args:?}:\n{out}");
        assert!(
            out.contains(&format!("verdict: REFUSED: {needle}")),
            "{args:?}: expected {needle}:\n{out}"
        );
    }
}

#[test]
fn the_token_can_come_from_stdin() {
    let cfg = fixture_config("stdin");
    let token = fixture("drag-n-survey.v1.access.jwt");
    let (code, out) = explain(
        &cfg.path(),
        &[
            "--token",
            "-",
            "--at",
            "1704067200",
            "GET",
            "/api/v1/courses",
        ],
        Some(&format!("{token}\n")),
    );
    assert_eq!(code, 0, "{out}");
}

#[tokio::test]
async fn explain_fetches_the_issuers_keys_like_the_gateway() {
    let issuer = TestIssuer::start().await;
    let cfg = Config::new(
        "fetch",
        &format!(
            "listen: 127.0.0.1:0
issuers:
  cryptr:
    cryptr: {{ base_url: {}, tenants: [acme] }}
    audiences: [http://localhost:8080]
routes:
  - {{ name: api, match: {{ prefix: /api }}, upstream: builtin:echo, auth: {{ issuers: [cryptr] }} }}
",
            issuer.base_url()
        ),
    );
    let good = issuer.token(&issuer.claims("acme"));
    let wrong_aud = issuer.token(&edit(issuer.claims("acme"), |c| {
        c.insert("aud".into(), serde_json::json!("http://localhost:8081"));
    }));
    let path = cfg.path();
    let (code, out) = tokio::task::spawn_blocking(move || {
        explain(&path, &["--token", &good, "GET", "/api/x"], None)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(issuer.requested_paths(), ["/t/acme/.well-known"]);
    let path = cfg.path();
    let (code, out) = tokio::task::spawn_blocking(move || {
        explain(&path, &["--token", &wrong_aud, "GET", "/api/x"], None)
    })
    .await
    .unwrap();
    assert_eq!(code, 1);
    assert!(
        out.contains(
            "verdict: REFUSED: 401 invalid_claims: the token is not meant for this API (aud)"
        ),
        "{out}"
    );
}
