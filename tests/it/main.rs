//! Integration tests: one binary, a module per area, everything over real sockets.

mod admin;
mod auth;
mod browser;
mod builtins;
mod cli;
mod config;
mod connections;
mod cors;
mod demo;
mod docker;
mod explain;
mod failures;
mod faults;
mod k8s;
mod limits;
mod pgo;
mod proxy;
mod reload;
mod routing;
mod shutdown;
mod smuggling;
mod streaming;
mod support;
mod tls;
