//! Serving the router over plain HTTP or HTTPS, one way for both, with a bounded graceful
//! shutdown; and the background work that runs beside it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::{Extension, Router};
use axum_server::Handle;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto::Builder;

use super::connections::{ConnectionLimits, ConnectionTable, LimitAcceptor};
use super::{AppState, ServedOverTls, TlsFiles};

/// How a server is served: TLS or not, the connection limits, and the time allowed at a stop.
pub struct ServeOptions<'a> {
    pub tls: Option<&'a TlsFiles>,
    pub limits: ConnectionLimits,
    /// A request's headers must arrive within this long (and an idle HTTP/1 connection's next).
    pub header_timeout: Duration,
    /// Requests in flight at a stop get this long to finish.
    pub grace: Duration,
}

/// Connections the kernel may hold for us before we accept them (Rust's standard library
/// asks for 128, which a burst of connections overflows, and each dropped SYN costs its
/// client a second); the kernel lowers it to `net.core.somaxconn`.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket on `address` ("host:port").
pub fn bind(address: &str) -> std::io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last_error = None;
    for candidate in address.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(candidate),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        match socket
            .bind(&candidate.into())
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(()) => return Ok(socket.into()),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("the address resolved to nothing")))
}

/// A TLS handshake must be done within this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` completes: HTTPS (HTTP/2 by ALPN) with
/// `tls`, else plain HTTP, each connection admitted by the limits. Requests in flight then
/// have `grace` to finish; connections still open after it (a panel's event stream) are
/// closed, so a stop never hangs.
pub async fn serve(
    listener: std::net::TcpListener,
    router: Router,
    options: ServeOptions<'_>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let handle = Handle::new();
    let stopper = handle.clone();
    let grace = options.grace;
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(grace));
    });
    tracing::info!(
        max_connections = options.limits.max_connections,
        per_address = options.limits.max_per_address,
        "connection limits"
    );
    let table = ConnectionTable::new(options.limits);
    let idle_closer = table.spawn_idle_closer();
    let limits = LimitAcceptor::new(table);
    let served = match options.tls {
        Some(files) => {
            // ring is the one crypto provider built in; installing it twice is harmless
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config = RustlsConfig::from_pem_file(&files.cert, &files.key).await?;
            let acceptor = RustlsAcceptor::new(config)
                .handshake_timeout(HANDSHAKE_TIMEOUT)
                .acceptor(limits);
            let app = router
                .layer(Extension(ServedOverTls))
                .into_make_service_with_connect_info::<SocketAddr>();
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(acceptor)
                .handle(handle);
            time_limits(server.http_builder(), options.header_timeout);
            server.serve(app).await
        }
        None => {
            let app = router.into_make_service_with_connect_info::<SocketAddr>();
            let mut server = axum_server::from_tcp(listener)?
                .acceptor(limits)
                .handle(handle);
            time_limits(server.http_builder(), options.header_timeout);
            server.serve(app).await
        }
    };
    idle_closer.abort();
    served
}

/// hyper enforces its header timeout only when it is given a timer.
fn time_limits(builder: &mut Builder<TokioExecutor>, header_timeout: Duration) {
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
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

/// Deletes revocations, refresh tokens and replaced signing keys once they can no longer
/// matter, every `tokens.cleanup_every_secs`.
pub fn spawn_token_cleaner(state: &AppState) -> tokio::task::JoinHandle<()> {
    let tokens = state.tokens.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(tokens.cleanup_every());
        loop {
            every.tick().await;
            match tokens.clean().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(deleted = n, "expired token rows deleted"),
                Err(error) => tracing::warn!(%error, "could not clean the token tables"),
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
