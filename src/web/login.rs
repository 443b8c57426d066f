//! Face login and logout for the browser: parse the upload, ask `access`, start the session.

use axum::extract::{Multipart, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_sessions::Session;

use super::extract::{Client, CurrentUser, start_session};
use super::upload::read_files;
use super::{AppState, WebError};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
}

/// `POST /api/v1/login`, multipart field `frame`.
async fn login(
    State(state): State<AppState>,
    session: Session,
    Client(client): Client,
    multipart: Multipart,
) -> Result<Json<Value>, WebError> {
    let [frame] = read_files(multipart, ["frame"], state.max_body_bytes).await?;
    let admitted = state.access.log_in(&client.address, frame).await?;
    let now = state.clock.now();
    let csrf_token = start_session(&session, &admitted.person, admitted.admin, now).await?;
    tracing::info!(person = %admitted.person, client = %client.address, "logged in");
    Ok(Json(json!({
        "person": admitted.person,
        "similarity": admitted.similarity,
        "admin": admitted.admin,
        "csrf_token": csrf_token,
        "faces_seen": admitted.faces_seen,
    })))
}

/// `POST /api/v1/logout`: deletes the session.
async fn logout(user: CurrentUser, session: Session) -> Result<Json<Value>, WebError> {
    session.flush().await?;
    tracing::info!(person = %user.person, "logged out");
    Ok(Json(json!({ "logged_out": user.person })))
}

/// `GET /api/v1/me`
async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({ "person": user.person, "admin": user.admin, "csrf_token": user.csrf_token }))
}
