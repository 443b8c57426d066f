//! HTTP: the router and the state it shares; serving it is in `serve`.

mod access_api;
mod admin;
mod admin_page;
mod admission;
mod api;
mod client;
mod connections;
mod described;
mod device_api;
mod error;
mod extract;
mod kiosk_api;
mod lift_api;
mod login;
mod metrics;
mod openapi;
mod pages;
mod serve;
mod tls;
mod token_api;
pub mod upload;

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header::{self, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, SessionManagerLayer};
use utoipa_axum::router::OpenApiRouter;

pub use admission::{Admission, EngineTicket};
pub use client::{ClientInfo, ServedOverTls};
pub use connections::{ConnectionLimits, raise_open_file_limit};
pub use error::WebError;
pub use extract::{AdminUser, CSRF_HEADER, Client, CurrentUser, DeviceAuth};
pub use metrics::install as install_metrics;
pub use openapi::openapi;
pub use serve::{
    ServeOptions, bind, serve, shutdown_signal, spawn_session_cleaner, spawn_token_cleaner,
};
pub use tls::{
    TlsError, TlsFiles, self_signed, self_signed_certificate, self_signed_files, tls_files,
};

use crate::access::Access;
use crate::clock::Clock;
use crate::config::Settings;
use crate::face::{EnginePool, Gallery};
use crate::kiosk::{KioskError, Kiosks};
use crate::lift::Building;
use crate::store::{DeviceRow, Store, StoreSessions};
use crate::tokens::Tokens;

pub const SESSION_COOKIE: &str = "facelift_session";

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub pool: Arc<EnginePool>,
    pub gallery: Arc<RwLock<Gallery>>,
    pub store: Arc<Store>,
    pub lifts: Building,
    pub kiosks: Kiosks,
    pub access: Access,
    pub tokens: Tokens,
    pub clock: Arc<dyn Clock>,
    pub settings: Arc<Settings>,
    pub max_body_bytes: usize,
    /// places in front of the face engines, taken before an upload is read
    pub admission: Arc<Admission>,
}

impl AppState {
    /// The state over parts already started (`App::build` starts them).
    pub fn new(
        settings: Settings,
        pool: Arc<EnginePool>,
        gallery: Gallery,
        store: Arc<Store>,
        lifts: Building,
        clock: Arc<dyn Clock>,
        devices: &[DeviceRow],
    ) -> Result<Self, KioskError> {
        let gallery = Arc::new(RwLock::new(gallery));
        let access = Access::new(
            &settings,
            Arc::clone(&pool),
            Arc::clone(&gallery),
            Arc::clone(&store),
            Arc::clone(&clock),
        );
        let tokens = Tokens::new(&settings.tokens, Arc::clone(&store), Arc::clone(&clock));
        let kiosks = Kiosks::new(
            &settings,
            devices,
            access.clone(),
            lifts.clone(),
            Arc::clone(&store),
            Arc::clone(&clock),
        )?;
        Ok(Self {
            pool,
            gallery,
            store,
            lifts,
            kiosks,
            access,
            tokens,
            clock,
            max_body_bytes: settings.max_body_bytes,
            admission: Admission::new(settings.workers, settings.queue),
            settings: Arc::new(settings),
        })
    }
}

impl AppState {
    /// The enrolled people, to read.
    pub fn gallery(&self) -> Result<RwLockReadGuard<'_, Gallery>, WebError> {
        self.gallery.read().map_err(|_| WebError::GalleryPoisoned)
    }

    /// The enrolled people, to change.
    pub fn gallery_mut(&self) -> Result<RwLockWriteGuard<'_, Gallery>, WebError> {
        self.gallery.write().map_err(|_| WebError::GalleryPoisoned)
    }
}

/// The whole application as a value: `main` serves it, tests call it.
pub fn build_router(state: AppState) -> Router {
    let inactivity = state.settings.web.session_inactivity_secs as i64;
    let sessions = SessionManagerLayer::new(StoreSessions::new(Arc::clone(&state.store)))
        .with_name(SESSION_COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(false) // set per request by `secure_cookies`
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(inactivity)));
    let (routes, _) = routes(
        state.max_body_bytes,
        Duration::from_secs(state.settings.web.request_timeout_secs),
    )
    .split_for_parts();
    routes
        .layer(sessions)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            connections::request_body,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            security_headers,
        ))
        // failures are logged where they happen (`WebError`); an overloaded server answering
        // thousands of 503s a second must not also write thousands of error lines
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(()),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Every route with its own limits, and the OpenAPI description of each.
fn routes(body_limit: usize, timeout: Duration) -> OpenApiRouter<AppState> {
    openapi::base()
        .merge(pages::router().into())
        .merge(login::router())
        .merge(api::router())
        .merge(lift_api::router())
        .merge(admin::router())
        .merge(access_api::router())
        .merge(kiosk_api::router())
        .merge(token_api::router())
        .merge(metrics::router())
        .merge(device_api::uploads(body_limit))
        .layer(DefaultBodyLimit::max(body_limit))
        // after the general limit, so that the device routes' smaller one wins
        .merge(device_api::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .merge(untimed_routes())
}

/// The routes open for as long as they are wanted: the panel's stream, the device's long poll.
fn untimed_routes() -> OpenApiRouter<AppState> {
    lift_api::streams()
        .merge(kiosk_api::streams())
        .merge(device_api::long_polls())
}

/// Every request's span: the method, the route that matched (not the raw path, which may
/// carry names) and the request id, also sent back in `x-request-id`.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("-", MatchedPath::as_str);
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %request.method(), route, id)
}

/// What every answer may load and who may frame it: scripts and styles only from this origin
/// (no inline code anywhere), pictures also from the page's own captures, nothing framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The camera for this origin only (the login page); nothing else a page could ask for.
const PERMISSIONS_POLICY: &str =
    "camera=(self), microphone=(), geolocation=(), payment=(), usb=(), serial=()";

/// HTTPS only, for a year, once a browser has reached us over HTTPS.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The security headers of every answer (pages, static files, the API), and on HTTPS the
/// `Secure` cookies and HSTS.
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let https = client::client_info(&parts, &state.settings.web.trusted_proxies).https;
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("permissions-policy"),
            PERMISSIONS_POLICY,
        ),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if https {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
        );
        secure_cookies(headers);
    }
    response
}

/// Marks cookies `Secure` when the client's connection is HTTPS, directly or through a
/// trusted proxy (a tunnel such as ngrok), and only then: over plain HTTP on a LAN a Secure
/// cookie would never come back.
fn secure_cookies(headers: &mut HeaderMap) {
    let cookies: Vec<HeaderValue> = headers.get_all(SET_COOKIE).iter().cloned().collect();
    headers.remove(SET_COOKIE);
    for cookie in cookies {
        let secured = match cookie.to_str() {
            Ok(text) if !text.to_ascii_lowercase().contains("; secure") => {
                HeaderValue::from_str(&format!("{text}; Secure")).unwrap_or(cookie)
            }
            _ => cookie,
        };
        headers.append(SET_COOKIE, secured);
    }
}
