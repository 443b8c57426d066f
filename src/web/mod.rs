//! HTTP: the router, the state it shares, and serving with graceful shutdown.

mod api;
mod error;

use std::future::Future;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tokio::net::TcpListener;

pub use error::WebError;

use crate::face::{EnginePool, Gallery};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<EnginePool>,
    pub gallery: Arc<RwLock<Gallery>>,
    pub max_body_bytes: usize,
}

/// The whole application as a value: `main` serves it, tests call it.
pub fn build_router(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(api::router())
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, build_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
