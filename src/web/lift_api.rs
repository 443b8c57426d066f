//! The lift for logged-in people: status, moves, and the live stream the panel listens to.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{AdminUser, CurrentUser};
use super::{AppState, WebError};
use crate::lift::LiftStatus;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/lift", get(status))
        .route("/api/v1/lift/move", post(request_move))
        .route("/api/v1/admin/lift/reset", post(reset_fault))
}

/// The routes that stay open as long as the panel is: no request timeout.
pub fn streams() -> Router<AppState> {
    Router::new().route("/api/v1/lift/events", get(events))
}

/// `GET /api/v1/lift`
async fn status(_user: CurrentUser, State(state): State<AppState>) -> Json<LiftStatus> {
    Json(state.lift.status())
}

#[derive(Deserialize)]
struct MoveRequest {
    floor: i32,
    /// Chosen by the panel for each press, so that a retried request does not move the lift
    /// twice; made up by the server when absent.
    request_id: Option<String>,
}

/// `POST /api/v1/lift/move` `{"floor": N, "request_id": optional}`: 202 with the request id.
/// The move itself is followed on the status stream, driven by the device's reports.
async fn request_move(
    user: CurrentUser,
    State(state): State<AppState>,
    Json(request): Json<MoveRequest>,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let accepted = state
        .lift
        .request_move(request.floor, request.request_id, &user.person)?;
    tracing::info!(person = %user.person, floor = request.floor, request_id = %accepted.request_id, duplicate = accepted.duplicate, "lift move");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "request_id": accepted.request_id,
            "floor": accepted.floor,
            "duplicate": accepted.duplicate,
        })),
    ))
}

/// `GET /api/v1/lift/events`: server-sent events, one `lift` event per change (the current
/// status first).
async fn events(
    _user: CurrentUser,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let changes = state.lift.subscribe();
    let stream = futures_util::stream::unfold((changes, true), |(mut changes, first)| async move {
        if !first {
            changes.changed().await.ok()?;
        }
        let status = changes.borrow_and_update().clone();
        let event = Event::default().event("lift").json_data(&status);
        Some((event, (changes, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// `POST /api/v1/admin/lift/reset`: an administrator clears a fault after checking the lift.
async fn reset_fault(AdminUser(admin): AdminUser, State(state): State<AppState>) -> Json<Value> {
    let cleared = state.lift.reset_fault(&admin.person);
    if cleared {
        tracing::info!(person = %admin.person, "lift fault cleared");
    }
    Json(json!({ "cleared": cleared, "lift": state.lift.status() }))
}
