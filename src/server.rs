//! The traffic listener: accept loop, HTTP/1.1 and HTTP/2 (h2c) per connection, and graceful
//! shutdown with a bounded drain.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::config::Plan;
use crate::pipeline::{self, ConnInfo};

/// A bound, not yet serving, gateway.
pub struct Server {
    listener: TcpListener,
    plan: Arc<Plan>,
}

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

impl Server {
    /// Binds `plan.listen` (port 0 picks a free port; see [`Server::local_addr`]).
    pub async fn bind(plan: Plan) -> Result<Server, BindError> {
        let addr = plan.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        Ok(Server {
            listener,
            plan: Arc::new(plan),
        })
    }

    /// The plan it serves (shared, read-only).
    pub fn plan(&self) -> Arc<Plan> {
        self.plan.clone()
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting and gives in-flight requests
    /// up to the drain timeout to finish.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let Server { listener, plan } = self;
        if let Some(dev) = &plan.dev_issuer {
            match dev.serve() {
                Ok(()) => tracing::warn!(
                    issuer = %dev.iss(),
                    token = %format!("curl -X POST {}/token", dev.base_url()),
                    "dev_issuer: true: the embedded dev issuer is active (loopback only); never use it in production"
                ),
                Err(e) => tracing::error!(error = %e, "the dev issuer could not start"),
            }
        }
        // Issuers' keys are fetched (and kept fresh) from the start, not on the first request.
        let _refreshers = plan.auth.start_refreshers();
        let builder = connection_builder(&plan);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            // Out of file descriptors, most likely: back off instead of
                            // spinning, and keep serving the connections we have.
                            tracing::error!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let conn = ConnInfo { peer, proto: "http" };
                    let plan = plan.clone();
                    let service = service_fn(move |req| {
                        let plan = plan.clone();
                        async move { Ok::<_, Infallible>(pipeline::handle(&plan, &conn, req).await) }
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        let drain = plan.limits.drain_timeout;
        tracing::info!(
            ?drain,
            "shutting down: no new connections, draining in-flight requests"
        );
        tokio::select! {
            () = graceful.shutdown() => tracing::info!("drained: all connections closed"),
            () = tokio::time::sleep(drain) => tracing::warn!(?drain, "drain timeout reached: closing the remaining connections"),
        }
    }
}

fn connection_builder(plan: &Plan) -> auto::Builder<TokioExecutor> {
    let limits = &plan.limits;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own bounds sit above ours (pipeline::check_header_limits) so that requests between
    // the two get the gateway's JSON 431; only grossly oversized ones get hyper's bare answer.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_size * 2).max(16 * 1024))
        .max_headers(limits.max_headers * 2);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_size * 2).unwrap_or(u32::MAX))
        .keep_alive_interval(Duration::from_secs(30));
    builder
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
