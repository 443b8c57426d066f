//! Serving the router over plain HTTP or HTTPS, one way for both, with a bounded graceful
//! shutdown; and the background work that runs beside it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;

use super::{AppState, ServedOverTls, TlsFiles};

/// Serves `router` on `listener` until `shutdown` completes: HTTPS (HTTP/2 by ALPN) with
/// `tls`, else plain HTTP. Requests in flight then have `grace` to finish; connections still
/// open after it (a panel's event stream) are closed, so a stop never hangs.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    tls: Option<&TlsFiles>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    match tls {
        Some(files) => {
            // ring is the one crypto provider built in; installing it twice is harmless
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(&files.cert, &files.key).await?;
            let app = router
                .layer(Extension(ServedOverTls))
                .into_make_service_with_connect_info::<SocketAddr>();
            axum_server::from_tcp_rustls(listener, config)?
                .handle(handle)
                .serve(app)
                .await
        }
        None => {
            let app = router.into_make_service_with_connect_info::<SocketAddr>();
            axum_server::from_tcp(listener)?
                .handle(handle)
                .serve(app)
                .await
        }
    }
}

/// Deletes expired sessions every minute, until aborted.
pub fn spawn_session_cleaner(state: &AppState) -> tokio::task::JoinHandle<()> {
    let store = Arc::clone(&state.store);
    let clock = Arc::clone(&state.clock);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            let (store, now) = (Arc::clone(&store), clock.now());
            match tokio::task::spawn_blocking(move || store.delete_expired_sessions(now)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(deleted = n, "expired sessions deleted"),
                Ok(Err(error)) => tracing::warn!(%error, "could not delete expired sessions"),
                Err(error) => tracing::warn!(%error, "the session cleaner stopped"),
            }
        }
    })
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
