//! cryptr-gateway: a reverse proxy that lets a request through only with a valid Cryptr access
//! token. `main.rs` is a thin CLI over this library; the tests start exactly what it starts.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod body;
pub mod config;
pub mod cors;
pub mod demo;
pub mod error;
pub mod explain;
mod framing;
pub mod fuzzing;
mod headers;
pub mod logging;
pub mod metrics;
pub mod mint;
pub mod path;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod route;
pub mod server;
pub mod tls;
pub mod upstream;
