//! The admin listener: health, readiness, metrics and the effective config, over real sockets.

use std::time::Duration;

use serde_json::Value;

use crate::support::issuer::{Mode, TestIssuer, AUDIENCE};
use crate::support::{self, metric, poll_until, Gateway, Upstream};

fn yaml(issuer: &TestIssuer, upstream: &str) -> String {
    format!(
        "listen: 127.0.0.1:0
admin: {{ listen: 127.0.0.1:0 }}
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{AUDIENCE}]
    claims_to_headers: {{ sub: X-User-Id }}
routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr] }}
  - name: backend
    match: {{ prefix: /backend }}
    upstream: {upstream}
    auth: none
    timeout: 300ms
",
        base = issuer.base_url()
    )
}

async fn get_json(url: &str) -> (u16, Value) {
    let res = support::client().get(url).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn healthz_answers_while_the_process_serves() {
    let gw = Gateway::start(&support::config(
        "  - name: e\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let (status, body) = get_json(&gw.admin_url("/healthz")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    // Never on the traffic port: there, /healthz is an ordinary path (here, the echo route).
    let res = support::client()
        .get(gw.url("/healthz"))
        .send()
        .await
        .unwrap();
    let echoed: Value = res.json().await.unwrap();
    assert_eq!(echoed["path"], "/healthz");
}

#[tokio::test]
async fn readyz_is_503_naming_the_issuer_until_its_keys_arrive() {
    let issuer = TestIssuer::start().await;
    issuer.set_mode(Mode::Down);
    let gw = Gateway::start(&yaml(&issuer, "builtin:echo")).await;
    let (status, body) = get_json(&gw.admin_url("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["ready"], false);
    let missing = body["missing"][0].as_str().unwrap();
    assert!(missing.contains(&issuer.iss("acme")), "{missing}");

    issuer.set_mode(Mode::Up);
    let url = gw.admin_url("/readyz");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get_json(&url).await;
        if status == 200 {
            assert_eq!(body["ready"], true);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ready: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn readyz_turns_503_when_shutdown_begins_and_the_admin_listener_lives_through_the_drain() {
    // A request held by its upstream keeps the drain going while readiness is asked.
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let held = release.clone();
    let upstream = Upstream::serve(move |_req| {
        let held = held.clone();
        async move {
            held.notified().await;
            http::Response::new(cryptr_gateway::body::full("done"))
        }
    })
    .await;
    let mut gw = Gateway::start(&support::config(&format!(
        "  - name: slow\n    match: {{ prefix: / }}\n    upstream: {}\n    auth: none\n",
        upstream.url()
    )))
    .await;
    let url = gw.url("/");
    let request = tokio::spawn(async move { support::client().get(url).send().await });
    let open = gw.shared.clone();
    poll_until(Duration::from_secs(5), "the request in flight", || {
        open.metrics.requests_in_flight() == 1
    })
    .await;
    assert_eq!(get_json(&gw.admin_url("/readyz")).await.0, 200);

    let serving = gw.begin_shutdown();
    poll_until(Duration::from_secs(5), "draining", || open.is_draining()).await;
    let (status, body) = get_json(&gw.admin_url("/readyz")).await;
    assert_eq!(status, 503);
    assert!(body["missing"][0]
        .as_str()
        .unwrap()
        .contains("shutting down"));
    assert_eq!(get_json(&gw.admin_url("/healthz")).await.0, 200);

    release.notify_one();
    let res = request.await.unwrap().unwrap();
    assert_eq!(res.status(), 200);
    serving.await.unwrap();
}

#[tokio::test]
async fn metrics_move_as_requests_pass_and_fail() {
    let issuer = TestIssuer::start().await;
    let dead = support::closed_port().await;
    let gw = Gateway::start(&yaml(&issuer, &format!("http://{dead}"))).await;
    let client = support::client();

    let token = issuer.token(&issuer.claims("acme"));
    for _ in 0..3 {
        let res = client
            .get(gw.url("/api/x"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let res = client.get(gw.url("/api/x")).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let res = client
        .get(gw.url("/api/x"))
        .bearer_auth("not.a.token")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = client.post(gw.url("/backend")).send().await.unwrap();
    assert_eq!(res.status(), 502);
    let res = client.get(gw.url("/nowhere")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    let text = gw.metrics().await;
    let sample = |name: &str, labels: &str| metric(&text, name, labels);
    assert_eq!(
        sample(
            "cryptr_gateway_requests_total",
            r#"route="api",method="GET",status="200""#
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "cryptr_gateway_requests_total",
            r#"route="api",method="GET",status="401""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            "cryptr_gateway_requests_total",
            r#"route="backend",method="POST",status="502""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "cryptr_gateway_requests_total",
            r#"route="-",method="GET",status="404""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "cryptr_gateway_auth_failures_total",
            r#"reason="authorization_header_missing""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "cryptr_gateway_auth_failures_total",
            r#"reason="invalid_header""#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            "cryptr_gateway_upstream_errors_total",
            r#"route="backend",kind="connect""#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            "cryptr_gateway_request_duration_seconds_count",
            r#"route="api""#
        ),
        Some(5.0)
    );
    assert_eq!(sample("cryptr_gateway_requests_in_flight", ""), Some(0.0));
    let iss = issuer.iss("acme");
    assert_eq!(
        sample(
            "cryptr_gateway_jwks_fetches_total",
            &format!(r#"issuer="{iss}",result="success""#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample("cryptr_gateway_jwks_keys", &format!(r#"issuer="{iss}""#)),
        Some(1.0)
    );
    let age = sample(
        "cryptr_gateway_jwks_seconds_since_last_good_fetch",
        &format!(r#"issuer="{iss}""#),
    )
    .expect("seconds since the fetch");
    assert!((0.0..60.0).contains(&age), "{age}");
    // The token was verified once, then remembered.
    assert_eq!(
        sample(
            "cryptr_gateway_token_cache_lookups_total",
            r#"result="hit""#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample("cryptr_gateway_build_info", r#"version="0.1.0""#),
        Some(1.0)
    );
    assert!(text.contains("# TYPE cryptr_gateway_request_duration_seconds histogram"));
}

#[tokio::test]
async fn upstream_timeouts_are_counted_by_kind() {
    let upstream = Upstream::serve(|_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        http::Response::new(cryptr_gateway::body::empty())
    })
    .await;
    let issuer = TestIssuer::start().await;
    let gw = Gateway::start(&yaml(&issuer, &upstream.url())).await;
    let res = support::client()
        .get(gw.url("/backend"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 504);
    let text = gw.metrics().await;
    assert_eq!(
        metric(
            &text,
            "cryptr_gateway_upstream_errors_total",
            r#"route="backend",kind="timeout""#
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test]
async fn config_shows_the_effective_plan_without_secrets() {
    let issuer = TestIssuer::start().await;
    let gw = Gateway::start(&yaml(&issuer, "http://127.0.0.1:9/base")).await;
    let (status, body) = get_json(&gw.admin_url("/config")).await;
    assert_eq!(status, 200);
    assert_eq!(body["routes"][0]["name"], "api");
    assert_eq!(body["routes"][0]["auth"]["issuers"][0], "cryptr");
    assert_eq!(body["routes"][1]["upstream"], "http://127.0.0.1:9/base");
    assert_eq!(body["routes"][1]["timeout"], "300ms");
    // Defaults are filled in: what the gateway does, not what the file says.
    assert_eq!(body["limits"]["max_connections"], 10000);
    assert_eq!(body["limits"]["idle_timeout"], "1m");
    assert_eq!(body["issuers"][0]["iss"], issuer.iss("acme"));
    assert_eq!(body["issuers"][0]["algorithms"][0], "RS256");
    assert_eq!(
        body["issuers"][0]["keys"]["url"],
        format!("{}/.well-known", issuer.iss("acme"))
    );
    assert_eq!(body["tls"], Value::Null);
}

#[tokio::test]
async fn the_admin_listener_takes_get_only_and_names_its_endpoints() {
    let gw = Gateway::start(&support::config(
        "  - name: e\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let client = support::client();
    let res = client.post(gw.admin_url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let (status, body) = get_json(&gw.admin_url("/nope")).await;
    assert_eq!(status, 404);
    assert!(body["description"].as_str().unwrap().contains("/metrics"));
    let res = client.get(gw.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(
        res.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
}

#[tokio::test]
async fn admin_off_binds_nothing_and_sharing_the_traffic_port_is_refused() {
    let plan = support::plan(&format!(
        "listen: 127.0.0.1:0\nadmin: {{ enabled: false }}\n{}",
        "routes:\n  - name: e\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n"
    ));
    assert_eq!(plan.admin, None);
    let gw = Gateway::start_plan(plan).await;
    assert_eq!(gw.admin, None);

    let err = support::plan_with_env(
        "listen: 127.0.0.1:8081\nadmin: { listen: 0.0.0.0:8081 }\nroutes:\n  - name: e\n    match: { prefix: / }\n    upstream: builtin:echo\n    auth: none\n",
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("test.yaml:2:")
            && err.contains("admin.listen")
            && err.contains("traffic port"),
        "{err}"
    );
}
