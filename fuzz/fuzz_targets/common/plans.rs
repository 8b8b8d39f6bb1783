//! The fixed configs the targets compile (also written as seeds of the `config` target by
//! `examples/make_seeds.rs`). Relative `jwks_file:` names are read from the fixture folder.
#![allow(dead_code)]

/// The `issuers:` block: a real Cryptr tenant and a generic issuer, both with `jwks_file:`.
pub const ISSUERS: &str = "issuers:
  cryptr:
    cryptr: { base_url: http://localhost:4000, tenants: [drag-n-survey] }
    jwks_file: cryptr.jwks.json
    audiences: [http://localhost:8000]
    claims_to_headers: { sub: X-User-Id, email: X-User-Email, tnt: X-Tenant, scp: X-Scopes }
  local:
    issuer: https://issuer.test/t/acme
    jwks_file: local.jwks.json
    audiences: [https://api.test, https://app.test]
    algorithms: [RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA]
    leeway: 60s
    claims_to_headers: { sub: X-User-Id, email: X-User-Email, org: X-Org }
    claims_header: X-Claims
";

/// `auth_token` and `parse_jwks`: a route taking either issuer (token also from a cookie or
/// the query), and an optional one with scope and claim rules.
pub fn auth() -> String {
    format!(
        "listen: 127.0.0.1:0
admin: {{ enabled: false }}
token_cache: off
{ISSUERS}routes:
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr, local], token: {{ cookie: at, query: access_token }} }}
  - name: scoped
    match: {{ prefix: /scoped }}
    upstream: builtin:echo
    auth:
      issuers: [local]
      optional: true
      scopes: {{ all: [read] }}
      claims: {{ tnt: [acme] }}
      claims_to_headers: {{ email: X-Mail }}
      token: {{ cookie: at, query: access_token }}
"
    )
}

/// `route`: exact and prefix routes, methods, hosts (one an IPv6 literal), `strip_prefix`.
pub const ROUTES: &str = "listen: 127.0.0.1:0
admin: { enabled: false }
cors: { allowed_origins: [\"http://localhost:8080\"] }
routes:
  - { name: courses, match: { prefix: /api/v1/courses, methods: [GET, HEAD] }, upstream: builtin:courses, auth: none }
  - { name: course-admin, match: { prefix: /api/v1/courses, methods: [POST, PUT, DELETE], host: admin.test }, upstream: builtin:echo, auth: none, cors: false }
  - { name: health, match: { exact: /health }, upstream: builtin:echo, auth: none }
  - { name: api, match: { prefix: /api, methods: [GET, POST, PATCH] }, upstream: builtin:echo, auth: none, strip_prefix: true }
  - { name: static, match: { prefix: /, host: static.test }, upstream: builtin:echo, auth: none, strip_prefix: true }
  - { name: v6, match: { prefix: /v6, host: \"[::1]\" }, upstream: builtin:echo, auth: none }
  - { name: echo, match: { prefix: /echo }, upstream: builtin:echo, auth: none }
  - { name: dotted, match: { prefix: /a.b/~c_d-e }, upstream: builtin:echo, auth: none }
";

/// `cors`: one route per kind of policy.
pub const CORS: &str = "listen: 127.0.0.1:0
admin: { enabled: false }
cors:
  allowed_origins: [\"http://localhost:8080\", \"https://*.app.test\", \"http://[::1]:3000\"]
  allowed_headers: [Authorization, Content-Type, sentry-trace]
  expose_headers: [X-Request-Id]
  max_age: 10m
routes:
  - { name: default, match: { prefix: /a }, upstream: builtin:echo, auth: none }
  - { name: creds, match: { prefix: /b, methods: [GET, PUT] }, upstream: builtin:echo, auth: none, cors: { allow_credentials: true, allow_private_network: true } }
  - { name: any, match: { prefix: /c }, upstream: builtin:echo, auth: none, cors: { allowed_origins: [\"*\"], allowed_headers: [\"*\"], allowed_methods: [GET, POST, DELETE] } }
  - { name: patterns, match: { prefix: /d }, upstream: builtin:echo, auth: none, cors: { allowed_origins: [\"http://*.localhost:3000\", \"https://*.example.com\"], allowed_headers: [\"*\"], allow_credentials: true } }
";

/// `pipeline`: public echo, protected routes of each kind, and a real upstream on loopback
/// (`{PORT}`, bound by the target itself).
pub fn pipeline(port: u16) -> String {
    format!(
        "listen: 127.0.0.1:0
admin: {{ enabled: false }}
trusted_proxies: [127.0.0.1]
limits: {{ max_header_size: 8KiB, max_headers: 40, max_uri_length: 2KiB, max_body: 4KiB, timeout: 5s, connect_timeout: 2s, header_read_timeout: 5s, idle_timeout: 5s }}
cors:
  allowed_origins: [\"http://localhost:8080\", \"https://*.app.test\"]
  allowed_headers: [Authorization, Content-Type]
  expose_headers: [X-Request-Id]
  max_age: 10m
{ISSUERS}routes:
  - name: echo
    match: {{ prefix: /echo }}
    upstream: builtin:echo
    auth: none
  - name: courses
    match: {{ prefix: /api/v1/courses, methods: [GET] }}
    upstream: builtin:courses
    auth: {{ issuers: [cryptr, local] }}
  - name: api
    match: {{ prefix: /api }}
    upstream: builtin:echo
    strip_prefix: true
    max_body: 1KiB
    auth: {{ issuers: [local], scopes: {{ any: [read, write] }}, token: {{ cookie: at, query: access_token }} }}
  - name: whoami
    match: {{ exact: /whoami, methods: [GET, POST] }}
    upstream: builtin:echo
    auth: {{ issuers: [cryptr, local], optional: true, forward_authorization: false, claims_header: X-Whoami }}
  - name: upstream
    match: {{ prefix: /up }}
    upstream: http://127.0.0.1:{port}/base
    auth: none
    cors: {{ allow_credentials: true, allow_private_network: true }}
  - name: tenant
    match: {{ prefix: /, host: acme.test }}
    upstream: http://127.0.0.1:{port}
    preserve_host: true
    auth: {{ issuers: [local], claims: {{ org: [acme] }} }}
"
    )
}
