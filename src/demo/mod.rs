//! `cryptr-gateway demo`: the whole story in one command, without a Cryptr account.
//!
//! An embedded dev issuer plays Cryptr (a fresh RSA key each start, its JWKS on a loopback-only
//! listener at `/t/demo/.well-known`); the gateway serves `/api/v1/courses` and `/echo`, both
//! protected by it; a page on another origin plays the Cryptr Vue sample, signing in through a
//! token endpoint that exists in demo mode only.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use jsonwebtoken::Algorithm;
use serde_json::json;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::config;
use crate::mint::{SigningKey, TokenSpec};
use crate::server::Server;

const PAGE: &str = include_str!("app.html");
const TENANT: &str = "demo";
/// How long demo tokens live.
const TOKEN_TTL: u64 = 8 * 3600;

/// Where the demo listens.
#[derive(Debug, Clone, Copy)]
pub struct DemoOptions {
    /// The gateway; default `127.0.0.1:8000`, where the Cryptr Vue sample calls its API.
    pub listen: SocketAddr,
    /// The app page; default `127.0.0.1:8080`, the Vue sample's own port.
    pub app_listen: SocketAddr,
}

/// What a running demo tells its user.
pub struct Demo {
    pub gateway: SocketAddr,
    pub app: SocketAddr,
    pub issuer: String,
    pub token: String,
    server: Server,
}

/// The embedded dev issuer: plays Cryptr with a fresh RSA key each start. Its listener is on
/// loopback only, whatever else listens: `GET /t/<tenant>/.well-known` serves its JWKS and
/// `POST /token` mints a token for the dev user. Active only in `demo`, or with `dev_issuer:
/// true` in a config (which logs a warning at every start).
pub struct DevIssuer {
    key: SigningKey,
    jwks: String,
    tenant: &'static str,
    base: String,
    audience: String,
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("iss", &self.iss())
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Makes the key and binds `127.0.0.1:0`; serving starts with [`DevIssuer::serve`].
    pub fn bind(tenant: &'static str, audience: &str) -> Result<Arc<DevIssuer>, String> {
        let (key, _) = SigningKey::generate(Algorithm::RS256)?;
        let jwks = key.jwks()?.to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot start the dev issuer: {e}"))?;
        let base = format!(
            "http://{}",
            listener.local_addr().map_err(|e| e.to_string())?
        );
        Ok(Arc::new(DevIssuer {
            key,
            jwks,
            tenant,
            base,
            audience: audience.to_string(),
            listener: Mutex::new(Some(listener)),
        }))
    }

    /// The issuer identifier, Cryptr-shaped: `http://127.0.0.1:<port>/t/<tenant>`.
    pub fn iss(&self) -> String {
        format!("{}/t/{}", self.base, self.tenant)
    }

    /// The base URL, as a `cryptr.base_url`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Starts answering (once; later calls do nothing). Needs a Tokio runtime.
    pub fn serve(self: &Arc<Self>) -> Result<(), String> {
        let taken = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(listener) = taken else {
            return Ok(());
        };
        let listener = TcpListener::from_std(listener).map_err(|e| format!("dev issuer: {e}"))?;
        let this = self.clone();
        spawn_server(listener, move |req| {
            let this = this.clone();
            async move {
                match (req.method(), req.uri().path()) {
                    (&Method::GET, p) if p == format!("/t/{}/.well-known", this.tenant) => {
                        json_response(StatusCode::OK, this.jwks.clone())
                    }
                    (&Method::POST, "/token") => this.token_response(),
                    _ => json_response(StatusCode::NOT_FOUND, r#"{"code":"not_found"}"#.into()),
                }
            }
        });
        Ok(())
    }

    /// A token for the dev user, valid 8 hours.
    pub fn token(&self, email: &str) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let spec = TokenSpec {
            iss: self.iss(),
            aud: self.audience.clone(),
            sub: "eba25511-afce-4c8e-8cab-f82822434648".into(),
            email: Some(email.into()),
            tenant: Some(self.tenant.into()),
            scopes: vec!["openid".into(), "email".into(), "profile".into()],
            claims: vec![("cid".into(), json!("cryptr-gateway-dev"))],
            ttl_secs: TOKEN_TTL,
            now,
        };
        self.key.sign(&self.iss(), &spec.claims())
    }

    fn token_response(&self) -> Response<Body> {
        match self.token("max@example.com") {
            Ok(token) => json_response(
                StatusCode::OK,
                json!({ "access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL, "email": "max@example.com" })
                    .to_string(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "dev token minting failed");
                json_response(StatusCode::INTERNAL_SERVER_ERROR, r#"{"code":"mint_failed"}"#.into())
            }
        }
    }
}

impl Demo {
    /// Binds everything; an address in use is an error naming its flag.
    pub async fn start(opts: DemoOptions) -> Result<Demo, String> {
        let app_listener = TcpListener::bind(opts.app_listen)
            .await
            .map_err(|e| format!("cannot listen on {} (--app-listen): {e}", opts.app_listen))?;
        let app = app_listener.local_addr().map_err(|e| e.to_string())?;
        if !app.ip().is_loopback() {
            tracing::warn!(%app, "the demo app (and its token endpoint) is reachable from the network");
        }
        let audience = format!("http://localhost:{}", app.port());
        let issuer = DevIssuer::bind(TENANT, &audience)?;
        issuer.serve()?;
        let yaml = demo_config(opts.listen, app.port(), issuer.base_url(), &audience);
        let plan = config::load_str(&yaml, "demo", Path::new("."), &|_| None)
            .map_err(|e| format!("the demo's own config does not compile: {e}"))?;
        let server = Server::bind(plan)
            .await
            .map_err(|e| format!("cannot listen on {} (--listen): {}", opts.listen, e.source))?;
        let gateway = server.local_addr().map_err(|e| e.to_string())?;

        let token = issuer.token("max@example.com")?;
        let page = PAGE.replace("__GATEWAY_PORT__", &gateway.port().to_string());
        let minting = issuer.clone();
        spawn_server(app_listener, move |req| {
            let page = page.clone();
            let issuer = minting.clone();
            async move { app_answer(&req, &page, &issuer) }
        });
        Ok(Demo {
            gateway,
            app,
            issuer: issuer.iss(),
            token,
            server,
        })
    }

    /// What to paste, for stdout.
    pub fn banner(&self) -> String {
        // Bound to every interface (in a container): a browser reaches it as localhost.
        let gw = if self.gateway.ip().is_unspecified() {
            format!("http://localhost:{}", self.gateway.port())
        } else {
            format!("http://{}", self.gateway)
        };
        format!(
            "cryptr-gateway demo: an embedded dev issuer plays Cryptr; no account needed.

  gateway     {gw}   /api/v1/courses and /echo, both need a token
  app         http://localhost:{app_port}   open it in a browser: Sign in, then the courses
  dev issuer  {issuer}   keys at /.well-known, loopback only
  admin       {admin}   /healthz /readyz /metrics /config

A token for the demo user (valid 8h):

export TOKEN={token}

Try:
  curl -i {gw}/api/v1/courses
      -> 401 authorization_header_missing
  curl -H \"Authorization: Bearer $TOKEN\" {gw}/api/v1/courses
      -> the tutorial's course list
  curl -H \"Authorization: Bearer $TOKEN\" -H \"X-User-Id: admin\" {gw}/echo
      -> what the upstream receives: verified claims as X-User-* headers, the forged one gone
",
            app_port = self.app.port(),
            issuer = self.issuer,
            token = self.token,
            admin = self
                .server
                .admin_addr()
                .map_or_else(|| "off".to_string(), |a| format!("http://{a}")),
        )
    }

    /// Serves until `shutdown`, then drains.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        self.server.serve(shutdown).await;
    }
}

fn demo_config(listen: SocketAddr, app_port: u16, issuer_base: &str, audience: &str) -> String {
    format!(
        r#"listen: "{listen}"
# A free loopback port: a demo never fails because another gateway holds 9901.
admin: {{ listen: "127.0.0.1:0" }}
cors:
  allowed_origins: ["http://localhost:{app_port}", "http://127.0.0.1:{app_port}"]
  allowed_headers: [Authorization, Content-Type, sentry-trace, baggage]
  max_age: 10m
issuers:
  demo:
    cryptr: {{ base_url: "{issuer_base}", tenants: [{TENANT}] }}
    audiences: ["{audience}"]
    claims_to_headers: {{ sub: X-User-Id, email: X-User-Email, tnt: X-User-Tenant, scp: X-User-Scopes }}
routes:
  - name: courses
    match: {{ prefix: /api/v1/courses, methods: [GET] }}
    upstream: builtin:courses
    auth: {{ issuers: [demo] }}
  - name: echo
    match: {{ prefix: /echo }}
    upstream: builtin:echo
    auth: {{ issuers: [demo] }}
"#
    )
}

/// The app's two answers: the page, and (demo only) a token for the demo user.
fn app_answer(req: &Request<Incoming>, page: &str, issuer: &DevIssuer) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/") => {
            let mut res = Response::new(body::full(page.to_string()));
            res.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            res
        }
        (&Method::POST, "/demo/token") => issuer.token_response(),
        _ => json_response(StatusCode::NOT_FOUND, r#"{"code":"not_found"}"#.into()),
    }
}

fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut res = Response::new(body::full(body));
    *res.status_mut() = status;
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// A small HTTP server for the demo's side listeners (not the gateway's traffic path).
fn spawn_server<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            };
            let handler = handler.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
