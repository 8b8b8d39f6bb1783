//! The command line: a thin layer over the library.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cryptr_gateway::config;
use cryptr_gateway::demo::{Demo, DemoOptions};
use cryptr_gateway::logging::{self, LogFormat};
use cryptr_gateway::mint::{self, SigningKey, TokenSpec};
use cryptr_gateway::server::{self, Server};

#[derive(Parser)]
#[command(
    name = "cryptr-gateway",
    version,
    about = "A reverse proxy that lets a request through only with a valid Cryptr access token",
    after_help = "Examples:\n  cryptr-gateway demo\n  cryptr-gateway run -c gateway.yaml\n  cryptr-gateway check -c gateway.yaml"
)]
struct Cli {
    /// Log output: `pretty` for people, `json` for log collectors. Level from RUST_LOG.
    #[arg(long, global = true, value_enum, default_value = "pretty")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve traffic with the routes of a config file.
    #[command(
        after_help = "Example:\n  cryptr-gateway run -c gateway.yaml\n  GATEWAY_LISTEN=127.0.0.1:9000 cryptr-gateway run"
    )]
    Run(RunArgs),
    /// Validate a config file and print its routes; on error, print every problem with file,
    /// line, column and field, and exit 1.
    #[command(after_help = "Example:\n  cryptr-gateway check -c gateway.yaml && echo ok")]
    Check(ConfigArg),
    /// Run the whole story locally without a Cryptr account: an embedded dev issuer, the
    /// protected course list, and a page on another origin that signs in and calls it.
    #[command(
        after_help = "Example:\n  cryptr-gateway demo\n  cryptr-gateway demo --listen 127.0.0.1:9000 --app-listen 127.0.0.1:9080"
    )]
    Demo(DemoArgs),
    /// Mint a token signed by a local key (for a `jwks_file:` issuer), printed alone.
    #[command(
        after_help = "Example:\n  cryptr-gateway keygen --out dev-key.pem --jwks > dev-jwks.json\n  TOKEN=$(cryptr-gateway token --key dev-key.pem --iss https://auth.cryptr.eu/t/acme --aud http://localhost:8080 --tenant acme --scope openid,email)"
    )]
    Token(TokenArgs),
    /// Say, step by step, what the gateway would decide for a request and why (route, CORS,
    /// each token check, the headers the upstream would get); exit 0 when it would pass.
    #[command(
        after_help = "Example:\n  cryptr-gateway explain -c gateway.yaml --token \"$TOKEN\" GET /api/v1/courses\n  echo \"$TOKEN\" | cryptr-gateway explain --token - --origin http://localhost:8080 --at 2024-01-01T00:00:00Z GET /api/v1/courses"
    )]
    Explain(ExplainArgs),
    /// Write a new private key (PKCS#8 PEM, mode 600), and with --jwks print its public JWKS.
    #[command(
        after_help = "Example:\n  cryptr-gateway keygen --out dev-key.pem --jwks > dev-jwks.json\n  cryptr-gateway keygen --key dev-key.pem --jwks"
    )]
    Keygen(KeygenArgs),
}

#[derive(clap::Args)]
struct DemoArgs {
    /// Where the gateway listens (the Cryptr Vue sample calls its API on :8000).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Where the demo page listens (the Vue sample's own port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    app_listen: SocketAddr,
}

#[derive(clap::Args)]
struct TokenArgs {
    /// PEM private key (RSA signs RS256, P-256 signs ES256), as `keygen` writes.
    #[arg(long)]
    key: PathBuf,
    /// Issuer: for Cryptr, `<base_url>/t/<tenant>`.
    #[arg(long)]
    iss: String,
    /// Audience: for Cryptr, the front-end app's URL.
    #[arg(long, default_value = "http://localhost:8080")]
    aud: String,
    /// Subject (default: a random UUID).
    #[arg(long)]
    sub: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// Tenant, as the `tnt` claim.
    #[arg(long)]
    tenant: Option<String>,
    /// Scopes, comma-separated or repeated, as the `scp` claim.
    #[arg(long, value_delimiter = ',')]
    scope: Vec<String>,
    /// Any other claim, `name=value` (a JSON value, or else a string); repeatable.
    #[arg(long, value_name = "NAME=VALUE")]
    claim: Vec<String>,
    /// Lifetime, such as `1h` or `15m`.
    #[arg(long, default_value = "1h")]
    ttl: humantime::Duration,
    /// Key id in the header (default: derived from the key, as `keygen --jwks` publishes it).
    #[arg(long)]
    kid: Option<String>,
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The access token (`-` reads it from standard input); sent as `Authorization: Bearer`.
    #[arg(long)]
    token: Option<String>,
    /// The request's Origin (for the CORS verdict).
    #[arg(long)]
    origin: Option<String>,
    /// The Host the request is addressed to.
    #[arg(long)]
    host: Option<String>,
    /// Another request header, `Name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Judge the time claims as of this moment (RFC 3339, or Unix seconds), to replay a token
    /// from a log.
    #[arg(long)]
    at: Option<String>,
    /// Check signatures with this JWKS file instead of fetching the issuer's.
    #[arg(long)]
    jwks: Option<PathBuf>,
    /// The request method.
    method: String,
    /// The request path, with its query if any.
    target: String,
}

#[derive(clap::Args)]
struct KeygenArgs {
    /// Where to write the new key (never over an existing file).
    #[arg(long, required_unless_present = "key")]
    out: Option<PathBuf>,
    /// Use this existing key instead of making one (with --jwks).
    #[arg(long, conflicts_with = "out")]
    key: Option<PathBuf>,
    /// RS256 (RSA 2048) or ES256 (P-256).
    #[arg(long, default_value = "RS256")]
    alg: String,
    /// Key id to publish (default: derived from the key).
    #[arg(long)]
    kid: Option<String>,
    /// Print the public JWKS for a `jwks_file:` issuer on stdout.
    #[arg(long)]
    jwks: bool,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Threads that serve requests [default: the CPUs this process may use, a cgroup's CPU
    /// limit included]. With 1, requests are served on one thread, with no hand-over between
    /// threads: a little less CPU a request, for a pod limited to one CPU or a sidecar.
    #[arg(long, env = "GATEWAY_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(short, long, env = "GATEWAY_CONFIG", default_value = "gateway.yaml")]
    config: PathBuf,
}

// mimalloc instead of glibc's malloc, for the Rust side (aws-lc's C code keeps calling malloc).
// Measured with callgrind, a request's allocations and frees cost 1,150 instructions instead
// of 1,730 with a cached token (10 blocks), and 9,000 instead of 14,100 with the token cache off
// (47 blocks: the parsed token, its claims, the identity). An interleaved A/B of two PGO builds
// gave 5 to 10% more requests/s with the cache off, and no change beyond noise with cached
// tokens. Memory after load is lower too: 60 against 69 MiB once 10,000 tokens were cached, 84
// against 90 MiB with 1,000 connections open after that; 10.6 against 9.6 MiB idle. Built
// without transparent huge pages (`no_thp`), with which mimalloc took 21 MiB idle.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Dropped last, when `main` returns: the log's last lines are written then.
    let _log = logging::init(cli.log_format);
    match cli.command {
        Command::Check(args) => check(&args.config),
        Command::Run(args) => run(&args.config.config, args.workers),
        Command::Demo(args) => demo(&args),
        Command::Token(args) => report(token(&args)),
        Command::Explain(args) => explain(&args),
        Command::Keygen(args) => report(keygen(&args)),
    }
}

/// How many threads a command's runtime has.
#[derive(Clone, Copy)]
enum Threads {
    /// One thread, for one-shot commands (whose upstream clients still want a runtime
    /// around them).
    One,
    /// Tokio's work-stealing runtime, with this many workers or, by default, one per CPU the
    /// process may use.
    Workers(Option<usize>),
}

/// Runs `work` on a Tokio runtime of `threads`.
fn with_runtime(threads: Threads, work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::Workers(n) => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            // As `top -H` and the tests see them (tokio names its blocking threads alike).
            builder.thread_name("gateway-worker");
            if let Some(n) = n {
                builder.worker_threads(n);
            }
            builder
        }
    };
    match builder.enable_all().build() {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a command's error in one line; exit 1.
fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(args: &DemoArgs) -> ExitCode {
    with_runtime(Threads::Workers(None), async {
        let options = DemoOptions {
            listen: args.listen,
            app_listen: args.app_listen,
        };
        let demo = match Demo::start(options).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        print!("{}", demo.banner());
        let _ = std::io::Write::flush(&mut std::io::stdout());
        demo.serve(server::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}

fn explain(args: &ExplainArgs) -> ExitCode {
    with_runtime(Threads::One, async {
        let plan = match config::load_file(&args.config.config) {
            Ok(plan) => plan,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        };
        let (request, check) = match explain_request(args, plan.auth.clock.now()) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let explanation = cryptr_gateway::explain::explain(&plan, &request, &check).await;
        print!("{}", explanation.render());
        if explanation.pass {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

fn explain_request(
    args: &ExplainArgs,
    now: u64,
) -> Result<
    (
        cryptr_gateway::explain::Request,
        cryptr_gateway::auth::Check,
    ),
    String,
> {
    use http::{HeaderName, HeaderValue};
    let mut headers = http::HeaderMap::new();
    let mut add = |name: &str, value: &str| -> Result<(), String> {
        let n = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let v = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("`{value}` is not a header value"))?;
        headers.append(n, v);
        Ok(())
    };
    for h in &args.headers {
        let (n, v) = h
            .split_once(':')
            .ok_or_else(|| format!("--header `{h}`: expected `Name: value`"))?;
        add(n, v)?;
    }
    if let Some(origin) = &args.origin {
        add("origin", origin)?;
    }
    if let Some(host) = &args.host {
        add("host", host)?;
    }
    if let Some(token) = &args.token {
        let token = if token == "-" {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .map_err(|e| format!("cannot read the token from stdin: {e}"))?;
            s.trim().to_string()
        } else {
            token.clone()
        };
        add("authorization", &format!("Bearer {token}"))?;
    }
    let method = http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", args.method))?;
    let now = match &args.at {
        None => now,
        Some(at) => match at.parse::<u64>() {
            Ok(secs) => secs,
            Err(_) => humantime::parse_rfc3339_weak(at)
                .map_err(|e| format!("--at `{at}`: expected RFC 3339 (2024-01-01T00:00:00Z) or Unix seconds: {e}"))?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    };
    let keys = match &args.jwks {
        None => None,
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let (set, _) = cryptr_gateway::auth::keys::parse_jwks(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Some(std::sync::Arc::new(set))
        }
    };
    Ok((
        cryptr_gateway::explain::Request {
            method,
            target: args.target.clone(),
            headers,
        },
        cryptr_gateway::auth::Check { now, keys },
    ))
}

fn token(args: &TokenArgs) -> Result<(), String> {
    let pem =
        std::fs::read(&args.key).map_err(|e| format!("cannot read {}: {e}", args.key.display()))?;
    let key = SigningKey::from_pem(&pem, args.kid.as_deref())
        .map_err(|e| format!("{}: {e}", args.key.display()))?;
    let mut claims = Vec::new();
    for c in &args.claim {
        let (name, value) = c
            .split_once('=')
            .ok_or_else(|| format!("--claim `{c}`: expected NAME=VALUE"))?;
        let value = serde_json::from_str(value)
            .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
        claims.push((name.to_string(), value));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let spec = TokenSpec {
        iss: args.iss.clone(),
        aud: args.aud.clone(),
        sub: args.sub.clone().unwrap_or_else(mint::uuid),
        email: args.email.clone(),
        tenant: args.tenant.clone(),
        scopes: args
            .scope
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        claims,
        ttl_secs: args.ttl.as_secs(),
        now,
    };
    println!("{}", key.sign(&args.iss, &spec.claims())?);
    Ok(())
}

fn keygen(args: &KeygenArgs) -> Result<(), String> {
    let key = match (&args.key, &args.out) {
        (Some(path), _) => {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            SigningKey::from_pem(&pem, args.kid.as_deref())
                .map_err(|e| format!("{}: {e}", path.display()))?
        }
        (None, Some(out)) => {
            let alg = match args.alg.to_ascii_uppercase().as_str() {
                "RS256" => jsonwebtoken::Algorithm::RS256,
                "ES256" => jsonwebtoken::Algorithm::ES256,
                other => return Err(format!("--alg {other}: expected RS256 or ES256")),
            };
            let (mut key, pem) = SigningKey::generate(alg)?;
            if let Some(kid) = &args.kid {
                key.kid = kid.clone();
            }
            write_private(out, pem.as_bytes())?;
            eprintln!("wrote {} ({:?}, kid {})", out.display(), key.alg, key.kid);
            key
        }
        (None, None) => {
            return Err("give --out FILE to make a key, or --key FILE to read one".into())
        }
    };
    if args.jwks {
        let jwks = key.jwks()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&jwks).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

/// Creates `path` for a private key: never over an existing file, readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn check(path: &std::path::Path) -> ExitCode {
    with_runtime(Threads::One, async {
        match config::load_file(path) {
            Ok(plan) => {
                print!("{}: ok, {}", path.display(), plan.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!("{}: {} problem(s)", path.display(), errors.0.len());
                ExitCode::FAILURE
            }
        }
    })
}

fn run(path: &std::path::Path, workers: Option<u16>) -> ExitCode {
    // `--workers 1` is a work-stealing runtime of one worker, not a current-thread one: its
    // LIFO slot runs a task woken by the running one next. With one token, it served 0.90x
    // of nginx's rate against 0.84x for a current-thread runtime in one A/B (medians of 6
    // interleaved rounds of `wrk -t2 -c64`); two later ones (8 and 12 rounds, release builds)
    // had it at 0.829x against 0.843x and 0.840x: no difference the noise lets through.
    with_runtime(Threads::Workers(workers.map(usize::from)), async {
        let plan = match config::load_file(path) {
            Ok(plan) => plan,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        };
        let routes = plan.routes.len();
        let server = match Server::bind_with_config(plan, Some(path.to_path_buf())).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "error: {e} (set `listen:` or `admin.listen:` in {}, or GATEWAY_LISTEN / GATEWAY_ADMIN_LISTEN if the file uses them)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        };
        match server.local_addr() {
            Ok(addr) => {
                let admin = server
                    .admin_addr()
                    .map_or_else(|| "off".to_string(), |a| a.to_string());
                tracing::info!(%addr, %admin, routes, config = %path.display(), "cryptr-gateway listening")
            }
            Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
        }
        server.serve(server::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
