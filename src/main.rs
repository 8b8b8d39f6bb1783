//! The command line: a thin layer over the library.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cryptr_gateway::config;
use cryptr_gateway::logging::{self, LogFormat};
use cryptr_gateway::server::{self, Server};

#[derive(Parser)]
#[command(
    name = "cryptr-gateway",
    version,
    about = "A reverse proxy that lets a request through only with a valid Cryptr access token",
    after_help = "Examples:\n  cryptr-gateway run -c gateway.yaml\n  cryptr-gateway check -c gateway.yaml"
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
    Run(ConfigArg),
    /// Validate a config file and print its routes; on error, print every problem with file,
    /// line, column and field, and exit 1.
    #[command(after_help = "Example:\n  cryptr-gateway check -c gateway.yaml && echo ok")]
    Check(ConfigArg),
}

#[derive(clap::Args)]
struct ConfigArg {
    /// The config file.
    #[arg(short, long, env = "GATEWAY_CONFIG", default_value = "gateway.yaml")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    match cli.command {
        Command::Check(args) => check(&args.config),
        Command::Run(args) => run(&args.config),
    }
}

fn check(path: &std::path::Path) -> ExitCode {
    // Upstream clients are built while compiling, and they want a runtime around them.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
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

fn run(path: &std::path::Path) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let plan = match config::load_file(path) {
            Ok(plan) => plan,
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        };
        let routes = plan.routes.len();
        let server = match Server::bind(plan).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!(
                    "error: {e} (set `listen:` in {}, or GATEWAY_LISTEN if the file uses it)",
                    path.display()
                );
                return ExitCode::FAILURE;
            }
        };
        match server.local_addr() {
            Ok(addr) => {
                tracing::info!(%addr, routes, config = %path.display(), "cryptr-gateway listening")
            }
            Err(e) => tracing::warn!(error = %e, "listening on an unknown address"),
        }
        server.serve(server::shutdown_signal()).await;
        ExitCode::SUCCESS
    })
}
