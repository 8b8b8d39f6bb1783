//! `demo`, `token` and `keygen`, as a user runs them.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{self, Gateway, TempDir};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cryptr-gateway"))
}

#[tokio::test]
async fn demo_serves_both_routes_with_the_token_it_prints() {
    let mut child = bin()
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--app-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map(crate::support::KillOnDrop)
        .unwrap();
    // Read the banner on a thread, so a demo that prints nothing cannot hang the test.
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (mut gateway, mut app, mut token) = (None, None, None);
    while token.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the demo printed no token in time");
        if let Some(t) = line.strip_prefix("export TOKEN=") {
            token = Some(t.to_string());
        }
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["gateway", url, ..] => gateway = Some(url.to_string()),
            ["app", url, ..] => app = Some(url.to_string()),
            _ => {}
        }
    }
    let (gateway, app, token) = (gateway.unwrap(), app.unwrap(), token.unwrap());
    let c = support::client();

    let res = c
        .get(format!("{gateway}/api/v1/courses"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let courses: Value = c
        .get(format!("{gateway}/api/v1/courses"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(courses[0]["title"], "learn git");
    let echo: Value = c
        .get(format!("{gateway}/echo"))
        .bearer_auth(&token)
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        echo["headers"]["x-user-id"],
        serde_json::json!(["eba25511-afce-4c8e-8cab-f82822434648"])
    );
    assert_eq!(
        echo["headers"]["x-user-email"],
        serde_json::json!(["max@example.com"])
    );

    // The page and its demo-only token endpoint.
    let page = c.get(&app).send().await.unwrap().text().await.unwrap();
    let gateway_port = gateway.rsplit(':').next().unwrap();
    assert!(
        page.contains(&format!(":{gateway_port}/api/v1/courses")),
        "the page calls another gateway"
    );
    let minted: Value = c
        .post(format!("{app}/demo/token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = c
        .get(format!("{gateway}/api/v1/courses"))
        .bearer_auth(minted["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    child.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn demo_on_a_port_in_use_names_the_flag_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    for flag in ["--listen", "--app-listen"] {
        let other = if flag == "--listen" {
            "--app-listen"
        } else {
            "--listen"
        };
        let out = bin()
            .args(["demo", flag, &addr, other, "127.0.0.1:0"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("cannot listen on {addr} ({flag})")),
            "{stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}

#[tokio::test]
async fn keygen_and_token_round_trip_through_a_jwks_file_issuer() {
    for alg in ["RS256", "ES256"] {
        let dir = TempDir::new(&format!("keygen-{alg}"));
        let key = dir.path().join("dev-key.pem");
        let out = bin()
            .args(["keygen", "--alg", alg, "--jwks", "--out"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.path().join("jwks.json"), &out.stdout).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "a private key readable by others");
        }
        // Never over an existing key.
        let again = bin().args(["keygen", "--out"]).arg(&key).output().unwrap();
        assert_eq!(again.status.code(), Some(1));

        let out = bin()
            .args([
                "token",
                "--iss",
                "https://auth.example/t/acme",
                "--tenant",
                "acme",
                "--email",
                "a@acme.test",
            ])
            .args([
                "--scope",
                "openid,email",
                "--claim",
                "plan=\"pro\"",
                "--claim",
                "seats=3",
                "--ttl",
                "10m",
                "--key",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let token = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            token.trim().lines().count(),
            1,
            "token prints the token alone"
        );

        let yaml = format!(
            "listen: 127.0.0.1:0
issuers:
  local:
    cryptr: {{ base_url: https://auth.example, tenants: [acme] }}
    jwks_file: jwks.json
    audiences: [http://localhost:8080]
    algorithms: [{alg}]
    claims_to_headers: {{ tnt: X-Tenant, plan: X-Plan, seats: X-Seats }}
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [local], scopes: {{ all: [openid, email] }} }}
"
        );
        let gw = Gateway::start_plan(support::plan_in(dir.path(), &yaml, &[]).unwrap()).await;
        let res = support::client()
            .get(gw.url("/api"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{alg}");
        let echo: Value = res.json().await.unwrap();
        assert_eq!(echo["headers"]["x-tenant"][0], "acme");
        assert_eq!(echo["headers"]["x-plan"][0], "pro");
        assert_eq!(echo["headers"]["x-seats"][0], "3");
    }
}

#[test]
fn keygen_prints_the_jwks_of_an_existing_key() {
    let out = bin()
        .args(["keygen", "--jwks", "--key"])
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys/rsa-a.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let jwks: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["use"], "sig");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert!(jwks["keys"][0]["kid"]
        .as_str()
        .is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn dev_issuer_true_starts_the_dev_issuer_as_issuer_dev_on_loopback() {
    let plan = support::plan_with_env(
        "listen: 127.0.0.1:0
dev_issuer: true
routes:
  - name: api
    match: { prefix: /api }
    upstream: builtin:echo
    auth: { issuers: [dev], claims_to_headers: { email: X-User-Email } }
",
        &[],
    )
    .unwrap();
    let dev = plan.dev_issuer.clone().expect("the dev issuer is on");
    assert!(
        dev.base_url().starts_with("http://127.0.0.1:"),
        "not loopback: {}",
        dev.base_url()
    );
    let gw = Gateway::start_plan(plan).await;
    let c = support::client();
    let minted: Value = c
        .post(format!("{}/token", dev.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = c
        .get(gw.url("/api"))
        .bearer_auth(minted["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: Value = res.json().await.unwrap();
    assert_eq!(echo["headers"]["x-user-email"][0], "max@example.com");
}

#[test]
fn without_dev_issuer_true_there_is_no_issuer_dev() {
    let errors = support::plan_with_env(
        "listen: 127.0.0.1:0
routes:
  - { name: api, match: { prefix: /api }, upstream: builtin:echo, auth: { issuers: [dev] } }
",
        &[],
    )
    .unwrap_err()
    .0;
    assert!(
        errors[0].message.contains("no issuer named `dev`"),
        "{errors:?}"
    );
    let errors = support::plan_with_env(
        "listen: 127.0.0.1:0
dev_issuer: true
issuers:
  dev: { issuer: https://x.example, audiences: [a], jwks_uri: https://x.example/jwks }
routes:
  - { name: api, match: { prefix: /api }, upstream: builtin:echo, auth: none }
",
        &[],
    )
    .unwrap_err()
    .0;
    assert!(
        errors[0].message.contains("belongs to the dev issuer"),
        "{errors:?}"
    );
}
