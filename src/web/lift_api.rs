//! The lift for logged-in people: status, moves, and the live stream the panel listens to.

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::CurrentUser;
use super::{AppState, WebError};
use crate::lift::LiftStatus;
use crate::store::AuditEntry;

/// `GET /api/v1/lift`
pub async fn status(_user: CurrentUser, State(state): State<AppState>) -> Json<LiftStatus> {
    Json(state.lift.status())
}

#[derive(Deserialize)]
pub struct MoveRequest {
    floor: i32,
}

/// `POST /api/v1/lift/move` `{"floor": N}`: 202 with the request id.
pub async fn request_move(
    user: CurrentUser,
    State(state): State<AppState>,
    Json(request): Json<MoveRequest>,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let result = state.lift.request_move(request.floor);
    let entry = AuditEntry {
        at: state.clock.now(),
        kind: "lift".into(),
        client: user.person.clone(),
        person: Some(user.person.clone()),
        similarity: None,
        outcome: match &result {
            Ok(_) => "accepted".into(),
            Err(e) => format!("refused: {e}"),
        },
        detail: Some(format!("move to floor {}", request.floor)),
    };
    let store = state.store.clone();
    if !matches!(
        tokio::task::spawn_blocking(move || store.audit(&entry)).await,
        Ok(Ok(()))
    ) {
        tracing::error!("could not write the audit log");
    }
    let request_id = result?;
    tracing::info!(person = %user.person, floor = request.floor, request_id, "lift move");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "request_id": request_id.to_string(), "floor": request.floor })),
    ))
}

/// `GET /api/v1/lift/events`: server-sent events, one `lift` event per change (the current
/// status first).
pub async fn events(
    _user: CurrentUser,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let changes = state.lift.subscribe();
    let stream = futures_util::stream::unfold((changes, true), |(mut changes, first)| async move {
        if !first {
            changes.changed().await.ok()?;
        }
        let status = changes.borrow_and_update().clone();
        let event = Event::default()
            .event("lift")
            .data(serde_json::to_string(&status).unwrap_or_default());
        Some((Ok(event), (changes, false)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
