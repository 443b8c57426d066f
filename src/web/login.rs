//! Face login and logout for the browser: parse the upload, ask `access`, start the session.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::Serialize;
use tower_sessions::Session;
use tower_sessions::cookie::{Cookie, SameSite};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{FrameUpload, ImageRefusals, NeedsSession, NeedsSessionToChange};
use super::error::ErrorBody;
use super::extract::{Client, CurrentUser, start_session};
use super::upload::{Upload, read_files};
use super::{AppState, WebError};
use crate::access::LoginClient;
use crate::store::TRUSTED_BROWSER_SECS;

/// Kept by a browser that logged in successfully: its attempts are limited on their own, not
/// with its address's (a shared kiosk or NAT), so a stranger failing there cannot lock it out.
pub const BROWSER_COOKIE: &str = "facelift_browser";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Serialize, ToSchema)]
struct LoggedIn {
    person: String,
    similarity: f32,
    admin: bool,
    /// Send it back as `x-csrf-token` with every change.
    csrf_token: String,
    faces_seen: usize,
}

/// Logs in with a camera frame: the best face must match an enrolled person. Starts a session
/// (cookie `facelift_session`).
#[utoipa::path(post, path = "/api/v1/login", tag = "login",
    request_body(content = FrameUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "logged in; the session cookie is set", body = LoggedIn),
        (status = 401, description = "the face is not recognised", body = ErrorBody),
        (status = 429, description = "too many failed attempts from this address",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
        ImageRefusals,
    ))]
async fn login(
    State(state): State<AppState>,
    session: Session,
    Client(client): Client,
    headers: HeaderMap,
    upload: Upload,
) -> Result<impl IntoResponse, WebError> {
    let [frame] = read_files(upload, ["frame"], state.max_body_bytes).await?;
    let login_client = LoginClient {
        address: client.address.clone(),
        browser: browser_token(&headers),
    };
    let admitted = state.access.log_in(&login_client, frame).await?;
    let now = state.clock.now();
    let csrf_token = start_session(&session, &admitted.person, now).await?;
    tracing::info!(person = %admitted.person, client = %client.address, "logged in");
    let trust = admitted.new_browser_token.as_deref().map(|token| {
        let cookie = Cookie::build((BROWSER_COOKIE, token))
            .path("/api/v1/login")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(time::Duration::seconds(TRUSTED_BROWSER_SECS))
            .build();
        (header::SET_COOKIE, cookie.to_string())
    });
    let answer = Json(LoggedIn {
        person: admitted.person,
        similarity: admitted.similarity,
        admin: admitted.admin,
        csrf_token,
        faces_seen: admitted.faces_seen,
    });
    Ok((AppendHeaders(trust), answer))
}

/// The trusted-browser token the request's cookies carry, if any.
fn browser_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value: &HeaderValue| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_string())
}

#[derive(Serialize, ToSchema)]
struct LoggedOut {
    logged_out: String,
}

/// Ends the session.
#[utoipa::path(post, path = "/api/v1/logout", tag = "login",
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "the session is gone", body = LoggedOut),
        NeedsSessionToChange,
    ))]
async fn logout(user: CurrentUser, session: Session) -> Result<Json<LoggedOut>, WebError> {
    session.flush().await?;
    tracing::info!(person = %user.person, "logged out");
    Ok(Json(LoggedOut {
        logged_out: user.person,
    }))
}

#[derive(Serialize, ToSchema)]
struct Me {
    person: String,
    admin: bool,
    csrf_token: String,
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/me", tag = "login", security(("session" = [])),
    responses(
        (status = 200, description = "the logged-in person", body = Me),
        NeedsSession,
    ))]
async fn me(user: CurrentUser) -> Json<Me> {
    Json(Me {
        person: user.person,
        admin: user.admin,
        csrf_token: user.csrf_token,
    })
}
