//! Face login and logout for the browser: parse the upload, ask `access`, start the session.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use tower_sessions::Session;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{FrameUpload, ImageRefusals, NeedsSession, NeedsSessionToChange};
use super::error::ErrorBody;
use super::extract::{Client, CurrentUser, start_session};
use super::upload::{Upload, read_files};
use super::{AppState, WebError};

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
    upload: Upload,
) -> Result<Json<LoggedIn>, WebError> {
    let [frame] = read_files(upload, ["frame"], state.max_body_bytes).await?;
    let admitted = state.access.log_in(&client.address, frame).await?;
    let now = state.clock.now();
    let csrf_token = start_session(&session, &admitted.person, admitted.admin, now).await?;
    tracing::info!(person = %admitted.person, client = %client.address, "logged in");
    Ok(Json(LoggedIn {
        person: admitted.person,
        similarity: admitted.similarity,
        admin: admitted.admin,
        csrf_token,
        faces_seen: admitted.faces_seen,
    }))
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
