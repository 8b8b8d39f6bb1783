//! gateway.yaml as a library user meets it: interpolation, defaults, and located errors.

use std::time::Duration;

use crate::support::plan_with_env;

const REPO_CONFIG: &str = include_str!("../../gateway.yaml");

#[test]
fn repo_config_compiles_with_its_defaults() {
    let plan = plan_with_env(REPO_CONFIG, &[]).unwrap();
    assert_eq!(plan.listen.to_string(), "0.0.0.0:8081");
    assert_eq!(plan.routes[0].name, "courses");
    assert_eq!(plan.routes[0].upstream.label(), "builtin:courses");
    assert_eq!(plan.routes[0].timeout, Duration::from_secs(30));
    assert_eq!(plan.routes[0].max_body, 10 * 1024 * 1024);
}

#[test]
fn variables_are_interpolated_with_defaults() {
    let yaml = "listen: ${HOST:-127.0.0.1}:${PORT}\nlimits: { timeout: ${T:-5s} }\nroutes:\n  - name: e\n    match: { prefix: ${P:-/} }\n    upstream: builtin:echo\n    auth: none\n";
    let plan = plan_with_env(yaml, &[("PORT", "9999"), ("P", "/x")]).unwrap();
    assert_eq!(plan.listen.to_string(), "127.0.0.1:9999");
    assert_eq!(plan.routes[0].timeout, Duration::from_secs(5));
    assert_eq!(plan.routes[0].path.as_str(), "/x");
}

#[test]
fn unset_variable_is_an_error_naming_it_where_it_stands() {
    let yaml = "listen: 127.0.0.1:${PORT}\nroutes: []\n";
    let errors = plan_with_env(yaml, &[]).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    let e = &errors[0];
    assert_eq!(
        (e.file.as_str(), e.line, e.column),
        ("test.yaml", Some(1), Some(19))
    );
    assert!(e.message.contains("`PORT` is not set"), "{}", e.message);
}

#[test]
fn columns_after_an_interpolation_point_into_the_file() {
    let yaml = "listen: 127.0.0.1:0\nroutes:\n  - { name: e, match: { prefix: ${P} }, upstream: builtin:nope, auth: none }\n";
    let errors = plan_with_env(yaml, &[("P", "/a-much-longer-prefix")])
        .unwrap_err()
        .0;
    assert_eq!(errors[0].path, "routes[0].upstream");
    // `builtin:nope` starts at column 51 of the file, whatever `${P}` expanded to.
    assert_eq!((errors[0].line, errors[0].column), (Some(3), Some(51)));
}

#[test]
fn yaml_syntax_errors_are_located() {
    let errors = plan_with_env("routes:\n  - name: [unclosed\n", &[])
        .unwrap_err()
        .0;
    assert_eq!(errors.len(), 1);
    assert!(errors[0].line.is_some());
    assert!(
        errors[0].message.starts_with("not valid YAML"),
        "{}",
        errors[0].message
    );
}

#[test]
fn route_rules_that_cannot_work_are_refused() {
    let cases = [
        ("match: { prefix: /a/ }", "write `/a`"),
        ("match: { exact: /a, prefix: /b }", "not both"),
        ("match: { methods: [GET] }", "needs a path"),
        ("match: { prefix: /a/../b }", "can never match"),
        ("match: { prefix: /a;v=1 }", "can never match"),
        ("match: { prefix: /%61 }", "not in canonical form"),
        (
            "match: { exact: /a }\n    strip_prefix: true",
            "applies to `prefix` matches only",
        ),
        ("match: { prefix: /a }\n    timeout: 0s", "longer than zero"),
        ("match: { prefix: /a, methods: [] }", "is empty"),
    ];
    for (rule, needle) in cases {
        let yaml = format!(
            "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    {rule}\n    upstream: builtin:echo\n    auth: none\n"
        );
        let errors = plan_with_env(&yaml, &[]).expect_err(rule).0;
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains(needle) && e.line.is_some()),
            "{rule}: {errors:?}"
        );
    }
}

/// Header-line counts out of bounds: none at all, or more than hyper is asked to make room for
/// on every request.
#[test]
fn max_headers_out_of_bounds_is_refused_where_it_is_written() {
    for (value, needle) in [("0", "at least 1"), ("1001", "at most 1000")] {
        let yaml = format!(
            "listen: 127.0.0.1:0\nlimits:\n  max_headers: {value}\nroutes:\n  - name: r\n    match: {{ prefix: /a }}\n    upstream: builtin:echo\n    auth: none\n"
        );
        let errors = plan_with_env(&yaml, &[]).expect_err(value).0;
        assert!(
            errors.iter().any(|e| e.path == "limits.max_headers"
                && e.message.contains(needle)
                && e.line == Some(3)),
            "{value}: {errors:?}"
        );
    }
    let yaml = "listen: 127.0.0.1:0\nlimits:\n  max_headers: 1000\nroutes:\n  - name: r\n    match: { prefix: /a }\n    upstream: builtin:echo\n    auth: none\n";
    assert!(plan_with_env(yaml, &[]).is_ok());
}

#[test]
fn upstream_urls_are_checked() {
    let cases = [
        ("ftp://x", "no http or https scheme"),
        ("http://user:pw@x", "credentials"),
        ("http://x/?a=1", "query string"),
        ("{ url: http://x, ca_file: ca.pem }", "https upstreams only"),
        (
            "{ url: https://x, ca_file: /nonexistent/ca.pem }",
            "cannot read ca_file",
        ),
        ("builtin:echoo", "did you mean `builtin:echo`?"),
    ];
    for (upstream, needle) in cases {
        let yaml = format!(
            "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    match: {{ prefix: /a }}\n    upstream: {upstream}\n    auth: none\n"
        );
        let errors = plan_with_env(&yaml, &[]).expect_err(upstream).0;
        assert!(
            errors
                .iter()
                .any(|e| e.message.contains(needle) && e.path == "routes[0].upstream"),
            "{upstream}: {errors:?}"
        );
    }
}

#[test]
fn duplicate_names_and_unreachable_routes_are_refused() {
    let yaml = "listen: 127.0.0.1:0\nroutes:\n  - { name: all, match: { prefix: / }, upstream: builtin:echo, auth: none }\n  - { name: all, match: { prefix: /x, host: a.b }, upstream: builtin:echo, auth: none }\n  - { name: api, match: { prefix: /api }, upstream: builtin:echo, auth: none }\n";
    let errors = plan_with_env(yaml, &[]).unwrap_err().0;
    let messages: Vec<_> = errors
        .iter()
        .map(|e| (e.line, e.message.as_str()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.line == Some(4) && e.message.contains("already used")),
        "{messages:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.line == Some(5) && e.message.contains("never reached")),
        "{messages:?}"
    );
}

#[test]
fn a_route_without_auth_is_refused_with_the_fix() {
    let yaml = "listen: 127.0.0.1:0\nroutes:\n  - name: r\n    match: { prefix: /a }\n    upstream: builtin:echo\n";
    let errors = plan_with_env(yaml, &[]).unwrap_err().0;
    assert!(
        errors[0].message.contains("write `auth: none`"),
        "{errors:?}"
    );
    assert_eq!(errors[0].line, Some(3));
}

#[test]
fn empty_file_and_no_routes_are_explained() {
    let errors = plan_with_env("", &[]).unwrap_err().0;
    assert!(errors[0].message.contains("empty"), "{errors:?}");
    let errors = plan_with_env("listen: 127.0.0.1:0\n", &[]).unwrap_err().0;
    assert!(errors[0].message.contains("no routes"), "{errors:?}");
}

#[tokio::test]
async fn the_repo_config_serves_with_a_listen_from_the_environment() {
    let (_issuer, gw) = crate::support::tutorial_gateway().await;
    let res = crate::support::client()
        .get(gw.url("/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[test]
fn repo_config_protects_the_course_list_with_cryptr() {
    let plan = plan_with_env(REPO_CONFIG, &[("CRYPTR_TENANT_DOMAIN", "acme")]).unwrap();
    let cryptr_gateway::route::Auth::Token(auth) = &plan.routes[0].auth else {
        panic!("the course list is public");
    };
    assert_eq!(auth.issuers[0].iss, "https://auth.cryptr.eu/t/acme");
    assert_eq!(auth.issuers[0].audiences, ["http://localhost:8080"]);
}

#[test]
fn issuer_and_route_auth_mistakes_are_located_and_explained() {
    let cases = [
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }", "{ issuers: [cryptor] }", "routes[0].auth.issuers[0]", "did you mean `cryptr`?"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    audiences: []", "{ issuers: [cryptr] }", "issuers.cryptr", "set `audiences`"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    algorithms: [HS256]", "{ issuers: [cryptr] }", "issuers.cryptr.algorithms[0]", "shared secret"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    algorithms: [RS265]", "{ issuers: [cryptr] }", "issuers.cryptr.algorithms[0]", "did you mean `RS256`?"),
        ("cryptr: { base_url: https://auth.cryptr.eu/t/acme, tenants: [acme] }", "{ issuers: [cryptr] }", "issuers.cryptr.cryptr.base_url", "base URL only"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [\"a b\"] }", "{ issuers: [cryptr] }", "issuers.cryptr.cryptr.tenants[0]", "not a tenant"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    issuer: https://x", "{ issuers: [cryptr] }", "issuers.cryptr", "not both"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    claims_to_headers: { sub: Authorization }", "{ issuers: [cryptr] }", "issuers.cryptr.claims_to_headers.sub", "the gateway manages"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }\n    audeinces: [x]", "{ issuers: [cryptr] }", "issuers.cryptr.audeinces", "did you mean `audiences`?"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }", "{ issuers: [cryptr], scopes: { all: [] } }", "routes[0].auth.scopes", "non-empty"),
        ("cryptr: { base_url: https://auth.cryptr.eu, tenants: [acme] }", "token", "routes[0].auth", "not an auth kind"),
        ("issuer: not a url", "{ issuers: [cryptr] }", "issuers.cryptr.issuer", "OIDC discovery"),
    ];
    for (issuer, auth, path, needle) in cases {
        let yaml = format!(
            "listen: 127.0.0.1:0\nissuers:\n  cryptr:\n    {issuer}\n    audiences: [http://localhost:8080]\nroutes:\n  - name: r\n    match: {{ prefix: /a }}\n    upstream: builtin:echo\n    auth: {auth}\n"
        )
        .replace("    audiences: []\n    audiences: [http://localhost:8080]\n", "    audiences: []\n");
        let errors = plan_with_env(&yaml, &[]).expect_err(issuer).0;
        assert!(
            errors
                .iter()
                .any(|e| e.path == path && e.message.contains(needle) && e.line.is_some()),
            "{issuer} / {auth}: expected {path}: {needle}, got {errors:#?}"
        );
    }
}
