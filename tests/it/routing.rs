//! Which route serves a request, and which path the upstream sees.

use crate::support::{self, config, raw_get, raw_json, raw_request, raw_status, Gateway, Upstream};

async fn api_gateway(upstream: &Upstream) -> Gateway {
    Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n",
        upstream.url()
    )))
    .await
}

#[tokio::test]
async fn prefix_matches_on_segment_boundaries_only() {
    let up = Upstream::recording().await;
    let gw = api_gateway(&up).await;
    let c = support::client();
    for path in ["/api", "/api/", "/api/x/y"] {
        let res = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(up.last().target, path);
    }
    let res = c.get(gw.url("/apix")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["code"], "route_not_found");
    assert!(json["description"].is_string());
    assert_eq!(up.count(), 3, "/apix reached the upstream");
}

#[tokio::test]
async fn exact_match_takes_only_its_path() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: health\n    match: {{ exact: /health }}\n    upstream: {}\n    auth: none\n",
        up.url()
    )))
    .await;
    let c = support::client();
    assert_eq!(c.get(gw.url("/health")).send().await.unwrap().status(), 200);
    assert_eq!(
        c.get(gw.url("/health/x")).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        c.get(gw.url("/healthz")).send().await.unwrap().status(),
        404
    );
}

#[tokio::test]
async fn first_matching_route_wins() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: special\n    match: {{ prefix: /api/special }}\n    upstream: builtin:echo\n    auth: none\n  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n",
        up.url()
    )))
    .await;
    let c = support::client();
    let echoed: serde_json::Value = c
        .get(gw.url("/api/special/1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["path"], "/api/special/1");
    assert_eq!(up.count(), 0);
    assert_eq!(
        c.get(gw.url("/api/other"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    assert_eq!(up.count(), 1);
}

#[tokio::test]
async fn method_outside_the_routes_methods_is_405_with_allow() {
    let gw = Gateway::start(&config(
        "  - name: read\n    match: { prefix: /r, methods: [GET, head] }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let c = support::client();
    assert_eq!(c.get(gw.url("/r")).send().await.unwrap().status(), 200);
    let res = c.delete(gw.url("/r/1")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["code"], "method_not_allowed");
}

#[tokio::test]
async fn a_later_route_can_take_the_methods_an_earlier_one_refuses() {
    let gw = Gateway::start(&config(
        "  - name: read\n    match: { prefix: /r, methods: [GET] }\n    upstream: builtin:courses\n    auth: none\n  - name: write\n    match: { prefix: /r, methods: [POST] }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let c = support::client();
    let echoed: serde_json::Value = c
        .post(gw.url("/r"))
        .body("x")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echoed["method"], "POST");
    let res = c.put(gw.url("/r")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, POST");
}

#[tokio::test]
async fn host_match_ignores_port_and_case() {
    let gw = Gateway::start(&config(
        "  - name: a\n    match: { prefix: /, host: API.example.com }\n    upstream: builtin:echo\n    auth: none\n",
    ))
    .await;
    let ok = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: api.EXAMPLE.com:8081\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&ok), 200, "{ok}");
    let other = raw_request(
        gw.addr,
        b"GET /x HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&other), 404, "{other}");
}

#[tokio::test]
async fn dot_segments_never_dodge_a_route_and_never_reach_an_upstream() {
    let public = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: builtin:echo\n    auth: none\n  - name: public\n    match: {{ prefix: /public }}\n    upstream: {}\n    auth: none\n",
        public.url()
    )))
    .await;
    for path in [
        "/public/../api/x",
        "/public/%2e%2e/api/x",
        "/public/%2E%2E/api/x",
        "/public/.%2e/api/x",
        "/public/./x",
        "/public%2f..%2fapi/x",
        "/public/..%2Fapi/x",
        "/public/..%5capi/x",
        "/public/%zz",
        // Path parameters after the dots: Tomcat, Jetty and Spring drop a segment's
        // parameters before they resolve dots, so to them these are `/api/x`.
        "/public/..;/api/x",
        "/public/..;jsessionid=1/api/x",
        "/public/%2e%2e;/api/x",
        "/public/..%3B/api/x",
        "/public/..%3bx/api/x",
        "/public/.;/x",
        // Encoded twice: an upstream that decodes twice sees `/public/../api/x`.
        "/public/%252e%252e/api/x",
        "/public/..%252fapi/x",
        "/public/%25%32%65%25%32%65/api/x",
    ] {
        let answer = raw_get(gw.addr, path).await;
        assert_eq!(raw_status(&answer), 400, "{path}: {answer}");
        assert_eq!(raw_json(&answer)["code"], "invalid_path", "{path}");
    }
    assert_eq!(public.count(), 0, "a refused path was forwarded");
}

/// Tomcat, Jetty and Spring drop `;parameters` from each segment before they route: a path
/// that would reach another route without them (past a route guarding `/api`, say) is
/// refused; one that reaches the same route either way is forwarded as sent.
#[tokio::test]
async fn path_parameters_never_carry_a_path_past_its_route() {
    let api = Upstream::recording().await;
    let rest = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n  - name: login\n    match: {{ exact: /login }}\n    upstream: builtin:echo\n    auth: none\n  - name: rest\n    match: {{ prefix: / }}\n    upstream: {}\n    auth: none\n",
        api.url(),
        rest.url()
    )))
    .await;
    for path in [
        "/api;x/secret",
        "/api;jsessionid=1",
        "/api%3Bx/secret",
        "/login;x",
    ] {
        let answer = raw_get(gw.addr, path).await;
        assert_eq!(raw_status(&answer), 400, "{path}: {answer}");
        assert_eq!(raw_json(&answer)["code"], "invalid_path", "{path}");
    }
    assert_eq!(
        api.count() + rest.count(),
        0,
        "a refused path was forwarded"
    );
    for (path, up) in [
        ("/api/secret;x", &api),
        ("/api/a;b/c", &api),
        ("/files;v=2/a", &rest),
    ] {
        let answer = raw_get(gw.addr, path).await;
        assert_eq!(raw_status(&answer), 200, "{path}: {answer}");
        assert_eq!(up.last().target, path);
    }
}

/// A gateway with two routes for `/api` to `up`, in this order, each `(name, methods, guarded)`:
/// `methods` in YAML (`[GET, POST]`) or `None` for every method; a guarded route asks for a
/// token from an issuer behind a closed port (a request without one is refused before any fetch).
async fn api_routes_by_method(up: &Upstream, routes: [(&str, Option<&str>, bool); 2]) -> Gateway {
    let closed = support::closed_port().await;
    let routes: String = routes
        .iter()
        .map(|(name, methods, guarded)| {
            let methods = methods.map(|m| format!(", methods: {m}")).unwrap_or_default();
            let auth = if *guarded { "{ issuers: [acme] }" } else { "none" };
            format!(
                "  - name: {name}\n    match: {{ prefix: /api{methods} }}\n    upstream: {}\n    auth: {auth}\n",
                up.url()
            )
        })
        .collect();
    Gateway::start(&format!(
        "listen: 127.0.0.1:0\nissuers:\n  acme:\n    cryptr: {{ base_url: \"http://{closed}\", tenants: [acme] }}\n    audiences: [app]\nroutes:\n{routes}"
    ))
    .await
}

#[tokio::test]
async fn a_method_override_never_carries_a_request_past_its_route() {
    // Reads are public, everything else on /api needs a token: an upstream that honours an
    // override would take a public POST for the DELETE the second route guards.
    let up = Upstream::recording().await;
    let gw = api_routes_by_method(
        &up,
        [
            ("reads", Some("[GET, POST]"), false),
            ("writes", None, true),
        ],
    )
    .await;
    let post = |target: &str, header: &str| {
        format!("POST {target} HTTP/1.1\r\nHost: gw.test\r\n{header}Content-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let delete = raw_request(
        gw.addr,
        b"DELETE /api/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw_status(&delete), 401, "{delete}");
    for request in [
        post("/api/x", "X-HTTP-Method-Override: DELETE\r\n"),
        post("/api/x", "x-http-method: delete\r\n"),
        post("/api/x", "X-Method-Override: PUT\r\n"),
        post("/api/x", "X-HTTP-Method-Override: GET, DELETE\r\n"),
        post(
            "/api/x",
            "X-HTTP-Method-Override: GET\r\nX-HTTP-Method-Override: DELETE\r\n",
        ),
        post("/api/x", "X-HTTP-Method-Override: NOT A METHOD\r\n"),
        post("/api/x?_method=DELETE", ""),
        post("/api/x?a=1&%5Fmethod=delete", ""),
        post("/api/x?.method=PUT", ""),
    ] {
        let answer = raw_request(gw.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{request}: {answer}");
        assert_eq!(raw_json(&answer)["code"], "method_override", "{request}");
    }
    assert_eq!(up.count(), 0, "a request with an override was forwarded");
    // An override the same route takes is forwarded as sent, the header with it.
    for request in [
        post("/api/x", "X-HTTP-Method-Override: GET\r\n"),
        post("/api/x?_method=post", ""),
        post("/api/x?method=DELETE&_method=", ""),
    ] {
        let answer = raw_request(gw.addr, request.as_bytes()).await;
        assert_eq!(raw_status(&answer), 200, "{request}: {answer}");
    }
    assert_eq!(up.count(), 3);
    assert_eq!(
        up.requests()[0].header("x-http-method-override"),
        Some("GET")
    );
    assert_eq!(up.last().target, "/api/x?method=DELETE&_method=");

    // Where no route matches on methods, a method cannot change the route: overrides pass.
    let plain = api_gateway(&up).await;
    let answer = raw_request(
        plain.addr,
        post(
            "/api/x?_method=DELETE",
            "X-HTTP-Method-Override: DELETE\r\n",
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().header("x-http-method-override"), Some("DELETE"));
}

#[tokio::test]
async fn a_lower_case_method_never_slips_past_the_route_of_its_upper_case() {
    // Writes need a token, the rest is public: Django, Flask and Symfony read the method in
    // upper case, and would take `delete` for the DELETE the first route guards.
    let up = Upstream::recording().await;
    let gw = api_routes_by_method(
        &up,
        [
            ("writes", Some("[DELETE, PUT]"), true),
            ("rest", None, false),
        ],
    )
    .await;
    let request = |method: &str| {
        format!("{method} /api/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    };
    let answer = raw_request(gw.addr, request("DELETE").as_bytes()).await;
    assert_eq!(raw_status(&answer), 401, "{answer}");
    for method in ["delete", "Delete", "pUT"] {
        let answer = raw_request(gw.addr, request(method).as_bytes()).await;
        assert_eq!(raw_status(&answer), 400, "{method}: {answer}");
        assert_eq!(raw_json(&answer)["code"], "method_override", "{method}");
    }
    assert_eq!(up.count(), 0, "a lower-case write was forwarded");
    // One whose upper case reaches the same route is forwarded as sent.
    let answer = raw_request(gw.addr, request("get").as_bytes()).await;
    assert_eq!(raw_status(&answer), 200, "{answer}");
    assert_eq!(up.last().method, "get");
}

#[tokio::test]
async fn path_is_matched_and_forwarded_in_one_canonical_form() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}\n    auth: none\n  - name: rest\n    match: {{ prefix: / }}\n    upstream: builtin:echo\n    auth: none\n",
        up.url()
    )))
    .await;
    for (sent, forwarded) in [
        ("/%61pi/x", "/api/x"),
        ("//api//x", "/api/x"),
        ("/api/caf%C3%A9", "/api/caf%C3%A9"),
    ] {
        let answer = raw_get(gw.addr, sent).await;
        assert_eq!(raw_status(&answer), 200, "{sent}: {answer}");
        assert_eq!(up.last().target, forwarded, "{sent}");
    }
}

#[tokio::test]
async fn strip_prefix_and_upstream_base_path_compose() {
    let up = Upstream::recording().await;
    let gw = Gateway::start(&config(&format!(
        "  - name: api\n    match: {{ prefix: /api }}\n    upstream: {}/base/\n    strip_prefix: true\n    auth: none\n",
        up.url()
    )))
    .await;
    let c = support::client();
    c.get(gw.url("/api/v1/x?y=1")).send().await.unwrap();
    assert_eq!(up.last().target, "/base/v1/x?y=1");
    c.get(gw.url("/api")).send().await.unwrap();
    assert_eq!(up.last().target, "/base/");
}
