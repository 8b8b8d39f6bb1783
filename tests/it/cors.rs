//! CORS at the gateway: preflights answered without a token or an upstream, every answer to an
//! allowed origin decorated (our own errors included), the rest left without CORS headers.

use std::time::Duration;

use cryptr_gateway::body;
use http::{Request, Response};
use hyper::body::Incoming;
use reqwest::header::HeaderMap;

use crate::support::issuer::TestIssuer;
use crate::support::{self, Gateway, Upstream};

const APP: &str = "http://localhost:8080";

/// `/api` protected and served by `upstream`; `/slow` (also `upstream`) times out at 200ms;
/// `/big` takes 1KiB; `/down` has no upstream listening; `/own` turns CORS off and `/partner`
/// overrides it; all under the top-level `cors` block given.
async fn gateway(cors: &str, upstream: &Upstream, issuer: &TestIssuer) -> Gateway {
    let closed = support::closed_port().await;
    let slow = upstream.url();
    Gateway::start(&format!(
        "listen: 127.0.0.1:0
cors:
{cors}
issuers:
  cryptr:
    cryptr: {{ base_url: {base}, tenants: [acme] }}
    audiences: [{APP}]
routes:
  - name: api
    match: {{ prefix: /api, methods: [GET, POST] }}
    upstream: {up}
    auth: {{ issuers: [cryptr] }}
  - name: scoped
    match: {{ prefix: /scoped }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr], scopes: {{ all: [admin] }} }}
  - name: slow
    match: {{ prefix: /slow }}
    upstream: {slow}
    timeout: 200ms
    auth: none
  - name: big
    match: {{ prefix: /big }}
    upstream: builtin:echo
    max_body: 1KiB
    auth: none
  - name: down
    match: {{ prefix: /down }}
    upstream: http://{closed}
    auth: none
  - name: own-cors
    match: {{ prefix: /own }}
    upstream: {up}
    auth: none
    cors: false
  - name: partner
    match: {{ prefix: /partner }}
    upstream: builtin:echo
    auth: none
    cors: {{ allowed_origins: [\"https://partner.example\"], allow_credentials: true }}
",
        base = issuer.base_url(),
        up = upstream.url(),
    ))
    .await
}

const DEFAULT_CORS: &str =
    "  allowed_origins: [\"http://localhost:8080\", \"https://*.example.com\"]
  allowed_headers: [Authorization, Content-Type, sentry-trace, baggage]
  expose_headers: [X-Request-Id]
  max_age: 10m";

/// An upstream that records requests and sends its own CORS headers and a `Vary`.
async fn upstream() -> Upstream {
    Upstream::recording_with(|_| {
        let mut res = Response::new(body::full("ok"));
        let h = res.headers_mut();
        h.insert("access-control-allow-origin", "*".parse().unwrap());
        h.insert("access-control-allow-credentials", "true".parse().unwrap());
        h.insert("vary", "Accept-Encoding".parse().unwrap());
        res
    })
    .await
}

async fn slow_upstream() -> Upstream {
    Upstream::serve(|_req: Request<Incoming>| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Response::new(body::full("late"))
    })
    .await
}

fn acao(h: &HeaderMap) -> Option<&str> {
    h.get("access-control-allow-origin")
        .and_then(|v| v.to_str().ok())
}

fn no_cors_headers(h: &HeaderMap) -> bool {
    !h.keys()
        .any(|k| k.as_str().starts_with("access-control-allow-"))
}

async fn preflight(
    gw: &Gateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: Option<&str>,
) -> reqwest::Response {
    let mut req = support::client()
        .request(reqwest::Method::OPTIONS, gw.url(path))
        .header("origin", origin)
        .header("access-control-request-method", method);
    if let Some(h) = headers {
        req = req.header("access-control-request-headers", h);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn preflight_is_answered_without_a_token_and_never_reaches_the_upstream() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    let res = preflight(
        &gw,
        "/api/v1/courses",
        APP,
        "GET",
        Some("authorization, sentry-trace"),
    )
    .await;
    assert_eq!(res.status(), 204);
    let h = res.headers();
    assert_eq!(acao(h), Some(APP));
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(
        h["access-control-allow-headers"],
        "authorization, baggage, content-type, sentry-trace"
    );
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h.get("access-control-allow-credentials").is_none());
    assert_eq!(
        h["vary"],
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
    );
    assert_eq!(up.count(), 0, "the preflight reached the upstream");
}

#[tokio::test]
async fn preflight_that_is_not_allowed_gets_204_without_allow_headers() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    for (origin, method, headers) in [
        ("http://localhost:8081", "GET", None),
        ("https://evil-example.com", "GET", None),
        ("https://a.b.example.com", "GET", None),
        ("null", "GET", None),
        (APP, "DELETE", None),
        (APP, "GET", Some("authorization, x-secret")),
    ] {
        let res = preflight(&gw, "/api", origin, method, headers).await;
        assert_eq!(res.status(), 204, "{origin} {method} {headers:?}");
        assert!(
            no_cors_headers(res.headers()),
            "{origin} {method} {headers:?}: {:?}",
            res.headers()
        );
    }
    // A one-label subdomain of the pattern is allowed.
    let res = preflight(
        &gw,
        "/api",
        "https://app.example.com",
        "POST",
        Some("content-type"),
    )
    .await;
    assert_eq!(acao(res.headers()), Some("https://app.example.com"));
    assert_eq!(up.count(), 0);
}

#[tokio::test]
async fn every_answer_to_an_allowed_origin_is_decorated_errors_included() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let slow = slow_upstream().await;
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    let gw_slow = gateway(DEFAULT_CORS, &slow, &issuer).await;
    let c = support::client();
    let token = issuer.token(&issuer.claims("acme"));
    let cases: Vec<(u16, reqwest::RequestBuilder)> = vec![
        (200, c.get(gw.url("/api")).bearer_auth(&token)),
        (401, c.get(gw.url("/api"))),
        (403, c.get(gw.url("/scoped")).bearer_auth(&token)),
        (404, c.get(gw.url("/nowhere"))),
        (405, c.delete(gw.url("/api"))),
        (413, c.post(gw.url("/big")).body(vec![b'x'; 4096])),
        (502, c.get(gw.url("/down"))),
        (504, c.get(gw_slow.url("/slow"))),
    ];
    for (status, req) in cases {
        let res = req.header("origin", APP).send().await.unwrap();
        assert_eq!(res.status().as_u16(), status);
        let h = res.headers();
        assert_eq!(acao(h), Some(APP), "{status}");
        assert_eq!(
            h["access-control-expose-headers"], "X-Request-Id",
            "{status}"
        );
        assert!(
            h.get("access-control-allow-credentials").is_none(),
            "{status}: the upstream's leaked"
        );
        let vary = h["vary"].to_str().unwrap();
        assert!(vary.ends_with("Origin"), "{status}: {vary}");
    }
}

#[tokio::test]
async fn upstream_vary_is_merged_and_its_cors_headers_replaced() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    let token = issuer.token(&issuer.claims("acme"));
    let res = support::client()
        .get(gw.url("/api"))
        .bearer_auth(token)
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["vary"], "Accept-Encoding, Origin");
    assert_eq!(acao(res.headers()), Some(APP));
}

#[tokio::test]
async fn a_disallowed_origin_is_served_without_cors_headers() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    let token = issuer.token(&issuer.claims("acme"));
    let res = support::client()
        .get(gw.url("/api"))
        .bearer_auth(token)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(no_cors_headers(res.headers()), "{:?}", res.headers());
    assert_eq!(res.headers()["vary"], "Accept-Encoding, Origin");
    // And without any Origin (not a CORS request), the upstream's headers are still ours to
    // decide: CORS is the gateway's on this route.
    let res = support::client().get(gw.url("/api")).send().await.unwrap();
    assert!(no_cors_headers(res.headers()));
}

#[tokio::test]
async fn a_route_can_turn_cors_off_or_override_it() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    // Off: the upstream's own CORS headers pass, and its preflights are its own.
    let res = support::client()
        .get(gw.url("/own"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(acao(res.headers()), Some("*"));
    let res = preflight(&gw, "/own", APP, "GET", None).await;
    assert_eq!(res.status(), 200);
    assert_eq!(up.last().method, "OPTIONS");
    // Override: another origin, with credentials.
    let res = preflight(
        &gw,
        "/partner",
        "https://partner.example",
        "GET",
        Some("authorization"),
    )
    .await;
    assert_eq!(acao(res.headers()), Some("https://partner.example"));
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let res = support::client()
        .get(gw.url("/partner"))
        .header("origin", "https://partner.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["access-control-allow-credentials"], "true");
    let res = support::client()
        .get(gw.url("/partner"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert!(no_cors_headers(res.headers()));
}

#[tokio::test]
async fn plain_options_goes_to_the_route() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let gw = gateway(DEFAULT_CORS, &up, &issuer).await;
    let res = support::client()
        .request(reqwest::Method::OPTIONS, gw.url("/big"))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let echo: serde_json::Value = res.json().await.unwrap();
    assert_eq!(echo["method"], "OPTIONS");
}

#[tokio::test]
async fn wildcard_headers_never_cover_authorization_and_private_network_is_opt_in() {
    let (up, issuer) = (upstream().await, TestIssuer::start().await);
    let cors = "  allowed_origins: [\"*\"]\n  allowed_headers: [\"*\"]";
    let gw = gateway(cors, &up, &issuer).await;
    let res = preflight(
        &gw,
        "/api",
        "https://any.site",
        "GET",
        Some("x-anything, x-other"),
    )
    .await;
    assert_eq!(acao(res.headers()), Some("https://any.site"));
    assert_eq!(
        res.headers()["access-control-allow-headers"],
        "x-anything, x-other"
    );
    let res = preflight(
        &gw,
        "/api",
        "https://any.site",
        "GET",
        Some("authorization"),
    )
    .await;
    assert!(no_cors_headers(res.headers()));
    let private = |gw: &Gateway| {
        support::client()
            .request(reqwest::Method::OPTIONS, gw.url("/api"))
            .header("origin", APP)
            .header("access-control-request-method", "GET")
            .header("access-control-request-private-network", "true")
            .send()
    };
    assert!(no_cors_headers(private(&gw).await.unwrap().headers()));
    let cors = format!("{DEFAULT_CORS}\n  allow_private_network: true");
    let gw = gateway(&cors, &up, &issuer).await;
    let res = private(&gw).await.unwrap();
    assert_eq!(
        res.headers()["access-control-allow-private-network"],
        "true"
    );
}

#[test]
fn star_with_credentials_and_null_are_refused_at_check() {
    for (cors, needle) in [
        (
            "  allowed_origins: [\"*\"]\n  allow_credentials: true",
            "list the origins",
        ),
        ("  allowed_origins: [\"null\"]", "never allowed"),
        (
            "  allowed_origins: [\"https://*example.com\"]",
            "not an origin pattern",
        ),
        (
            "  allowed_origins: [\"http://localhost:8080/\"]",
            "not an origin",
        ),
        ("  allowed_origins: []", "is empty"),
        // Seen while fuzzing: a Unicode host never matches what browsers send.
        (
            "  allowed_origins: [\"https://bücher.example\"]",
            "punycode",
        ),
    ] {
        let yaml = format!("listen: 127.0.0.1:0\ncors:\n{cors}\nroutes:\n  - {{ name: a, match: {{ prefix: / }}, upstream: builtin:echo, auth: none }}\n");
        let errors = support::plan_with_env(&yaml, &[]).unwrap_err().0;
        assert_eq!(
            errors.len(),
            1,
            "reported once, not once per route: {errors:?}"
        );
        assert!(
            errors[0].message.contains(needle)
                && errors[0].path.starts_with("cors.allowed_origins"),
            "{cors}: {errors:?}"
        );
    }
}
