//! The lift for logged-in people: status, moves, and the live stream the panel listens to.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{NeedsAdminToChange, NeedsSession, NeedsSessionToChange};
use super::error::ErrorBody;
use super::extract::{AdminUser, ApiJson, CurrentUser};
use super::{AppState, WebError};
use crate::access::Rights;
use crate::lift::{Accepted, LiftStatus};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(request_move))
        .routes(routes!(reset_fault))
}

/// The routes that stay open as long as the panel is: no request timeout.
pub fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// The lift: where it is, where it goes, whether it is in service, its floors.
#[utoipa::path(get, path = "/api/v1/lift", tag = "lift", security(("session" = [])),
    responses(
        (status = 200, description = "the lift now", body = LiftStatus),
        NeedsSession,
    ))]
async fn status(_user: CurrentUser, State(state): State<AppState>) -> Json<LiftStatus> {
    Json(state.lift.status())
}

#[derive(Deserialize, ToSchema)]
struct MoveRequest {
    floor: i32,
    /// Chosen by the panel for each press, so that a retried request does not move the lift
    /// twice; made up by the server when absent.
    request_id: Option<String>,
}

/// Sends the lift to a floor. The move itself is followed on the event stream, driven by the
/// device's reports.
#[utoipa::path(post, path = "/api/v1/lift/move", tag = "lift",
    security(("session" = [], "csrf" = [])),
    request_body = MoveRequest,
    responses(
        (status = 202, description = "the command is on its way to the lift", body = Accepted),
        (status = 400, description = "not a move request", body = ErrorBody),
        NeedsSessionToChange,
        (status = 409, description = "the lift is busy or already there, or the request id was used for another floor", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "no such floor, or a bad request id", body = ErrorBody),
        (status = 503, description = "the lift is offline or out of service", body = ErrorBody),
    ))]
async fn request_move(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> Result<(StatusCode, Json<Accepted>), WebError> {
    let accepted = state
        .lift
        .request_move(request.floor, request.request_id, &user.person)?;
    tracing::info!(person = %user.person, floor = request.floor, request_id = %accepted.request_id, duplicate = accepted.duplicate, "lift move");
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Server-sent events, one `lift` event (a `LiftStatus`) per change, the current status first.
#[utoipa::path(get, path = "/api/v1/lift/events", tag = "lift", security(("session" = [])),
    responses(
        (status = 200, description = "an endless stream of `lift` events", content_type = "text/event-stream", body = String),
        NeedsSession,
    ))]
async fn events(
    user: CurrentUser,
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, axum::Error>>> {
    let changes = state.lift.subscribe();
    let (access, person) = (state.access.clone(), user.person);
    let stream = futures_util::stream::unfold((changes, true), move |(mut changes, first)| {
        let (access, person) = (access.clone(), person.clone());
        async move {
            // until the lift changes; the person's access is checked before each event and
            // every few seconds meanwhile, and the stream ends with it
            if !first {
                loop {
                    let changed = tokio::select! {
                        changed = changes.changed() => {
                            changed.ok()?;
                            true
                        }
                        () = tokio::time::sleep(RIGHTS_CHECK) => false,
                    };
                    if !matches!(access.rights(&person).await, Ok(Rights::Person { .. })) {
                        return None;
                    }
                    if changed {
                        break;
                    }
                }
            }
            let status = changes.borrow_and_update().clone();
            let event = Event::default().event("lift").json_data(&status);
            Some((event, (changes, false)))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// How often an open event stream checks that its person may still use the lift.
const RIGHTS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Serialize, ToSchema)]
struct Reset {
    /// There was a fault, and it is cleared.
    cleared: bool,
    lift: LiftStatus,
}

/// An administrator clears a fault after checking the lift.
#[utoipa::path(post, path = "/api/v1/admin/lift/reset", tag = "lift",
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "the fault is cleared, or there was none", body = Reset),
        NeedsAdminToChange,
    ))]
async fn reset_fault(AdminUser(admin): AdminUser, State(state): State<AppState>) -> Json<Reset> {
    let cleared = state.lift.reset_fault(&admin.person);
    if cleared {
        tracing::info!(person = %admin.person, "lift fault cleared");
    }
    Json(Reset {
        cleared,
        lift: state.lift.status(),
    })
}
