//! `gateway.yaml`: read, interpolate, parse into raw structs, then compile into a [`Plan`].
//!
//! Every problem found is reported, each with file, line, column and field path, so a user
//! fixes a file in one pass instead of one error per run.

mod auth;
mod compile;
mod cors;
mod env;
mod locate;
mod raw;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::route::Route;

/// The compiled configuration: ready values only, read (never changed) by the request path.
#[derive(Debug)]
pub struct Plan {
    /// Where the traffic listener binds. Default `0.0.0.0:8081`.
    pub listen: SocketAddr,
    /// TLS on the traffic listener (`tls: { cert, key }`). Default: none (plain HTTP and h2c).
    pub tls: Option<crate::tls::ServerTls>,
    /// The admin listener's address; `None` with `admin: { enabled: false }`. Default
    /// `127.0.0.1:9901`.
    pub admin: Option<SocketAddr>,
    /// Peers whose `X-Forwarded-*` and `Forwarded` headers are kept. Default: none.
    pub trusted_proxies: Vec<IpNet>,
    pub limits: Limits,
    /// In file order: the first that matches wins.
    pub routes: Vec<Arc<Route>>,
    /// Some route matches on methods: only then can a method override take a request to
    /// another route (`route::check_method_override`), and only then is it looked for.
    pub routes_by_method: bool,
    /// The top-level CORS policy: decorates answers given before a route is known (404, 400).
    pub cors: Option<Arc<crate::cors::CorsPolicy>>,
    /// The embedded dev issuer, when the config says `dev_issuer: true`.
    pub dev_issuer: Option<Arc<crate::demo::DevIssuer>>,
    /// Issuers, their key caches, and the clock tokens are judged by.
    pub auth: crate::auth::AuthPlan,
    /// The file's text as it was compiled (for a file), so a reload can tell a change.
    pub source_text: Option<Arc<str>>,
}

/// Server-wide bounds (per-route ones live on [`Route`]).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total size of a request's header names and values. Default 32KiB; over it, 431.
    pub max_header_size: usize,
    /// Number of request header lines. Default 100; over it, 431.
    pub max_headers: usize,
    /// How long a client may take to send its request head (from its first byte, or from the
    /// connection's start). Default 10s.
    pub header_read_timeout: Duration,
    /// How long a keep-alive connection may sit with no request before it is closed.
    /// Default 60s.
    pub idle_timeout: Duration,
    /// Open client connections at most; more are closed at once, with a warning. Default
    /// 10,000.
    pub max_connections: usize,
    /// Longest request target (path and query). Default 8KiB; over it, 414.
    pub max_uri_length: usize,
    /// How long in-flight requests may run after a shutdown signal. Default 30s.
    pub drain_timeout: Duration,
}

impl Plan {
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        !self.trusted_proxies.is_empty() && self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// One line per route, for `check`.
    pub fn summary(&self) -> String {
        use std::fmt::Write;
        let tls = if self.tls.is_some() { " (TLS)" } else { "" };
        let admin = self
            .admin
            .map_or_else(|| "off".to_string(), |a| a.to_string());
        let mut out = format!(
            "listen {}{tls}, admin {admin}, {} route(s):\n",
            self.listen,
            self.routes.len()
        );
        let width = self.routes.iter().map(|r| r.name.len()).max().unwrap_or(0);
        for (i, r) in self.routes.iter().enumerate() {
            let kind = match r.path {
                crate::route::PathMatch::Exact(_) => "exact",
                crate::route::PathMatch::Prefix(_) => "prefix",
            };
            let methods = match &r.methods {
                None => "*".to_string(),
                Some(m) => m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","),
            };
            let host = r
                .host
                .as_deref()
                .map(|h| format!(" host {h}"))
                .unwrap_or_default();
            let auth = match &r.auth {
                crate::route::Auth::None => "none".to_string(),
                crate::route::Auth::Token(a) => {
                    let mut names: Vec<&str> = a.issuers.iter().map(|i| i.name.as_str()).collect();
                    names.dedup();
                    let optional = if a.optional { " (optional)" } else { "" };
                    format!("token from {}{optional}", names.join(", "))
                }
            };
            let _ = writeln!(
                out,
                "  {}. {:width$}  {kind} {} [{methods}]{host} -> {}  auth: {auth}",
                i + 1,
                r.name,
                r.path.as_str(),
                r.upstream,
            );
        }
        out
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// The field, as `routes[1].match.prefix`; empty for the file as a whole.
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a config file, in file order.
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What a reload keeps of the running plan: the key cache and the state of every issuer whose
/// keys are fetched the same way, and the dev issuer.
pub struct Carry {
    pub key_cache: Arc<crate::auth::KeyCache>,
    pub keys: std::collections::HashMap<String, Arc<crate::auth::IssuerKeys>>,
    pub dev_issuer: Option<Arc<crate::demo::DevIssuer>>,
}

impl Carry {
    pub fn from_plan(plan: &Plan) -> Carry {
        Carry {
            key_cache: plan.auth.cache.clone(),
            keys: plan
                .auth
                .issuers
                .iter()
                .map(|i| (i.iss.clone(), i.keys.clone()))
                .collect(),
            dev_issuer: plan.dev_issuer.clone(),
        }
    }
}

/// Reads and compiles `path`, with `${VAR}` taken from the process environment. Relative file
/// names inside (such as `ca_file`) are read from the config file's folder.
pub fn load_file(path: &Path) -> Result<Plan, ConfigErrors> {
    load_file_with(path, None)
}

/// [`load_file`] for a reload: keeps what `carry` holds of the running plan.
pub fn load_file_with(path: &Path, carry: Option<&Carry>) -> Result<Plan, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: file.clone(),
            line: None,
            column: None,
            path: String::new(),
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut plan = load_str_with(&text, &file, &dir, &|name| std::env::var(name).ok(), carry)?;
    plan.source_text = Some(Arc::from(text));
    Ok(plan)
}

/// Compiles config `text` named `file` (for messages), looking variables up with `env` and
/// relative file names under `dir`.
pub fn load_str(
    text: &str,
    file: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Plan, ConfigErrors> {
    load_str_with(text, file, dir, env, None)
}

/// [`load_str`] for a reload: keeps what `carry` holds of the running plan.
pub fn load_str_with(
    text: &str,
    file: &str,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    carry: Option<&Carry>,
) -> Result<Plan, ConfigErrors> {
    let error = |line, column, path: &str, message: String| ConfigError {
        file: file.to_string(),
        line,
        column,
        path: path.to_string(),
        message,
    };
    let expanded = env::interpolate(text, env).map_err(|errors| {
        ConfigErrors(
            errors
                .into_iter()
                .map(|e| error(Some(e.line), Some(e.column), "", e.message))
                .collect(),
        )
    })?;
    let context = compile::Context {
        text: &expanded.text,
        dir: PathBuf::from(dir),
        carry,
    };
    compile::compile(&context).map_err(|problems| {
        let mut errors: Vec<ConfigError> = problems
            .into_iter()
            .map(|p| {
                let column = match (p.line, p.column) {
                    (Some(l), Some(c)) => Some(expanded.original_column(l, c)),
                    _ => None,
                };
                error(p.line, column, &p.path, p.message)
            })
            .collect();
        errors.sort_by_key(|e| (e.line.unwrap_or(usize::MAX), e.column.unwrap_or(0)));
        ConfigErrors(errors)
    })
}
