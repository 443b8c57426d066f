//! HTTP: the router, the state it shares, and serving with graceful shutdown.

mod admin;
mod api;
mod auth;
mod client;
mod device_api;
mod error;
mod lift_api;
mod pages;
mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::http::header::SET_COOKIE;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};

pub use auth::{AdminUser, CSRF_HEADER, CurrentUser, LoginLimiter, is_administrator};
pub use client::{ClientInfo, ServedOverTls};
pub use error::WebError;
pub use tls::{TlsFiles, self_signed, self_signed_files, serve_tls};

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::face::{EnginePool, Gallery};
use crate::lift::{LiftService, choose_device};
use crate::store::{SqliteSessionStore, Store};

pub const SESSION_COOKIE: &str = "facelift_session";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<EnginePool>,
    pub gallery: Arc<RwLock<Gallery>>,
    pub store: Arc<Store>,
    pub lift: LiftService,
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<LoginLimiter>,
    pub settings: Arc<Settings>,
    pub max_body_bytes: usize,
}

impl AppState {
    pub fn new(
        settings: Settings,
        pool: Arc<EnginePool>,
        gallery: Gallery,
        store: Arc<Store>,
    ) -> Self {
        let web = &settings.web;
        let limiter = LoginLimiter::new(
            web.login_failures_before_wait,
            web.login_wait_secs,
            web.login_wait_max_secs,
        );
        // `serve` checks the choice first and refuses to start on a bad one
        let device = store
            .devices()
            .map_err(|e| e.to_string())
            .and_then(|rows| {
                choose_device(&rows, settings.lift.device.as_deref()).map_err(|e| e.to_string())
            })
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "no lift device: the lift stays offline");
                None
            });
        let lift = LiftService::start(&settings.lift, device, Arc::clone(&store));
        Self {
            pool,
            gallery: Arc::new(RwLock::new(gallery)),
            store,
            lift,
            clock: Arc::new(SystemClock),
            limiter: Arc::new(limiter),
            max_body_bytes: settings.max_body_bytes,
            settings: Arc::new(settings),
        }
    }

    /// The same state reading time from `clock` (tests move it by hand).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The whole application as a value: `main` serves it, tests call it.
pub fn build_router(state: AppState) -> Router {
    let inactivity = state.settings.web.session_inactivity_secs as i64;
    let sessions = SessionManagerLayer::new(SqliteSessionStore::new(Arc::clone(&state.store)))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(false) // set per request by `secure_cookies`
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(inactivity)));
    let limit = state.max_body_bytes;
    Router::new()
        .merge(api::router())
        .merge(pages::router())
        .route("/api/v1/login", post(auth::login))
        .route("/api/v1/logout", post(auth::logout))
        .route("/api/v1/me", get(auth::me))
        .route("/api/v1/lift", get(lift_api::status))
        .route("/api/v1/lift/move", post(lift_api::request_move))
        .route("/api/v1/lift/events", get(lift_api::events))
        .route("/api/v1/admin/lift/reset", post(lift_api::reset_fault))
        .route(
            "/api/v1/device/status",
            post(device_api::status).layer(DefaultBodyLimit::max(device_api::MAX_DEVICE_BODY)),
        )
        .route("/api/v1/device/commands", get(device_api::commands))
        .route(
            "/api/v1/admin/people/{name}",
            axum::routing::delete(admin::remove_person),
        )
        .route("/api/v1/admin/people/{name}/photos", post(admin::add_photo))
        .route(
            "/api/v1/admin/people/{name}/thumbnail",
            get(admin::thumbnail),
        )
        .layer(DefaultBodyLimit::max(limit))
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            secure_cookies,
        ))
        .with_state(state)
}

/// Marks cookies `Secure` when the client's connection is HTTPS, directly or through a
/// trusted proxy (a tunnel such as ngrok), and only then: over plain HTTP on a LAN a Secure
/// cookie would never come back.
async fn secure_cookies(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let https = client::client_info(&parts, &state.settings.web.trusted_proxies).https;
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if https {
        let cookies: Vec<HeaderValue> = response
            .headers_mut()
            .get_all(SET_COOKIE)
            .iter()
            .cloned()
            .collect();
        response.headers_mut().remove(SET_COOKIE);
        for cookie in cookies {
            let secured = match cookie.to_str() {
                Ok(text) if !text.to_ascii_lowercase().contains("; secure") => {
                    HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
                }
                _ => cookie,
            };
            response.headers_mut().append(SET_COOKIE, secured);
        }
    }
    response
}

/// Serves until `shutdown` completes, then finishes the requests in flight. Expired sessions
/// are deleted in the background meanwhile.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let cleaner = spawn_session_cleaner(&state);
    let app = build_router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    cleaner.abort();
    result
}

/// Deletes expired sessions every minute, until aborted.
fn spawn_session_cleaner(state: &AppState) -> tokio::task::JoinHandle<()> {
    let store = Arc::clone(&state.store);
    let clock = Arc::clone(&state.clock);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            every.tick().await;
            let (store, now) = (Arc::clone(&store), clock.now());
            match tokio::task::spawn_blocking(move || store.delete_expired_sessions(now)).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(deleted = n, "expired sessions deleted"),
                _ => tracing::warn!("could not delete expired sessions"),
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
