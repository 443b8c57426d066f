//! The lifts for logged-in people: their status, moves (to a car picked, or to the car the
//! server assigns), the live stream the panel listens to; and for administrators, clearing a
//! fault and the fire-service recall.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{NeedsAdminToChange, NeedsSession, NeedsSessionToMove};
use super::error::ErrorBody;
use super::extract::{AdminUser, ApiJson, ApiPath, ApiQuery, CurrentUser, LiftReader};
use super::{AppState, WebError};
use crate::access::{Access, Rights};
use crate::lift::{Dispatched, LiftService, LiftStatus};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(lifts))
        .routes(routes!(one_lift))
        .routes(routes!(request_move))
        .routes(routes!(reset_fault))
        .routes(routes!(start_recall, clear_recall))
}

/// The routes that stay open as long as the panel is: no request timeout.
pub fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

#[derive(Serialize, ToSchema)]
struct Lifts {
    lifts: Vec<LiftStatus>,
    /// A fire-service recall is on: every car goes to this floor and takes no calls.
    recall_floor: Option<i32>,
}

fn lifts_now(state: &AppState) -> Lifts {
    Lifts {
        lifts: state.lifts.cars().iter().map(LiftService::status).collect(),
        recall_floor: state.lifts.recall(),
    }
}

/// Every car: where it is, where it goes, whether it is in service, the floors it stops at.
#[utoipa::path(get, path = "/api/v1/lifts", tag = "lift", security(("session" = []), ("bearer" = ["lift:read"])),
    responses(
        (status = 200, description = "the cars now", body = Lifts),
        NeedsSession,
    ))]
async fn lifts(_reader: LiftReader, State(state): State<AppState>) -> Json<Lifts> {
    Json(lifts_now(&state))
}

/// One car.
#[utoipa::path(get, path = "/api/v1/lifts/{lift}", tag = "lift", security(("session" = []), ("bearer" = ["lift:read"])),
    params(("lift" = String, Path, description = "the car's name")),
    responses(
        (status = 200, description = "the car now", body = LiftStatus),
        NeedsSession,
        (status = 404, description = "no car of that name", body = ErrorBody),
    ))]
async fn one_lift(
    _reader: LiftReader,
    State(state): State<AppState>,
    ApiPath(lift): ApiPath<String>,
) -> Result<Json<LiftStatus>, WebError> {
    Ok(Json(state.lifts.car(&lift)?.status()))
}

#[derive(Deserialize, ToSchema)]
struct MoveRequest {
    floor: i32,
    /// The car to send; without one, the server assigns the nearest idle car that stops there.
    lift: Option<String>,
    /// Chosen by the panel for each press, so that a retried request does not move a lift
    /// twice; made up by the server when absent.
    request_id: Option<String>,
}

/// Sends a car to a floor the person may reach now. The move itself is followed on the
/// event stream, driven by the device's reports.
#[utoipa::path(post, path = "/api/v1/lift/move", tag = "lift",
    security(("session" = [], "csrf" = []), ("bearer" = ["lift:move"])),
    request_body = MoveRequest,
    responses(
        (status = 202, description = "the command is on its way to the car named in the answer", body = Dispatched),
        (status = 400, description = "not a move request", body = ErrorBody),
        NeedsSessionToMove,
        (status = 404, description = "no car of that name", body = ErrorBody),
        (status = 409, description = "the car (or every car that stops there) is busy or already there, or the request id was used for another floor", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "no such floor, the car does not stop there, or a bad request id", body = ErrorBody),
        (status = 503, description = "offline, out of service, or a fire-service recall is on", body = ErrorBody),
    ))]
async fn request_move(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<MoveRequest>,
) -> Result<(StatusCode, Json<Dispatched>), WebError> {
    state
        .access
        .check_floor(&user.person, request.floor)
        .await?;
    let dispatched = state.lifts.request_move(
        request.lift.as_deref(),
        None,
        request.floor,
        request.request_id,
        &user.person,
    )?;
    tracing::info!(person = %user.person, lift = %dispatched.lift, floor = request.floor, request_id = %dispatched.accepted.request_id, duplicate = dispatched.accepted.duplicate, "lift move");
    Ok((StatusCode::ACCEPTED, Json(dispatched)))
}

#[derive(Deserialize, IntoParams)]
struct EventsOf {
    /// Only this car's events; by default every car's.
    lift: Option<String>,
}

/// Server-sent events, one `lift` event (a `LiftStatus`, which names its car) per change, each
/// car's current status first.
#[utoipa::path(get, path = "/api/v1/lift/events", tag = "lift", security(("session" = []), ("bearer" = ["lift:read"])),
    params(EventsOf),
    responses(
        (status = 200, description = "an endless stream of `lift` events", content_type = "text/event-stream", body = String),
        NeedsSession,
        (status = 404, description = "no car of that name", body = ErrorBody),
    ))]
async fn events(
    user: CurrentUser,
    State(state): State<AppState>,
    ApiQuery(of): ApiQuery<EventsOf>,
) -> Result<Sse<impl Stream<Item = Result<Event, axum::Error>>>, WebError> {
    let cars: Vec<LiftService> = match of.lift {
        Some(name) => vec![state.lifts.car(&name)?.clone()],
        None => state.lifts.cars().to_vec(),
    };
    let streams = cars
        .iter()
        .map(|car| car_events(car, state.access.clone(), user.person.clone()).boxed());
    Ok(Sse::new(futures_util::stream::select_all(streams)).keep_alive(KeepAlive::default()))
}

/// One car's changes while `person` may still use the lifts.
fn car_events(
    car: &LiftService,
    access: Access,
    person: String,
) -> impl Stream<Item = Result<Event, axum::Error>> + Send + 'static {
    let changes = car.subscribe();
    futures_util::stream::unfold((changes, true), move |(mut changes, first)| {
        let (access, person) = (access.clone(), person.clone());
        async move {
            // until the car changes; the person's access is checked before each event and
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
    })
}

/// How often an open event stream checks that its person may still use the lift.
const RIGHTS_CHECK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Serialize, ToSchema)]
struct Reset {
    /// There was a fault, and it is cleared.
    cleared: bool,
    lift: LiftStatus,
}

/// An administrator clears a car's fault after checking it.
#[utoipa::path(post, path = "/api/v1/admin/lifts/{lift}/reset", tag = "lift",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(("lift" = String, Path, description = "the car's name")),
    responses(
        (status = 200, description = "the fault is cleared, or there was none", body = Reset),
        NeedsAdminToChange,
        (status = 404, description = "no car of that name", body = ErrorBody),
    ))]
async fn reset_fault(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(lift): ApiPath<String>,
) -> Result<Json<Reset>, WebError> {
    let car = state.lifts.car(&lift)?;
    let cleared = car.reset_fault(&admin.person);
    if cleared {
        tracing::info!(person = %admin.person, lift, "lift fault cleared");
    }
    Ok(Json(Reset {
        cleared,
        lift: car.status(),
    }))
}

/// Fire-service recall: every car goes to the recall floor (one moving, once it arrives) and
/// takes no other call until the recall is cleared. It outlasts a restart.
#[utoipa::path(post, path = "/api/v1/admin/recall", tag = "lift",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    responses(
        (status = 200, description = "the recall is on", body = Lifts),
        NeedsAdminToChange,
    ))]
async fn start_recall(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Lifts>, WebError> {
    state.lifts.start_recall(&admin.person).await?;
    Ok(Json(lifts_now(&state)))
}

/// Ends the recall: the cars take calls again.
#[utoipa::path(delete, path = "/api/v1/admin/recall", tag = "lift",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    responses(
        (status = 200, description = "no recall is on", body = Lifts),
        NeedsAdminToChange,
    ))]
async fn clear_recall(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Lifts>, WebError> {
    state.lifts.clear_recall(&admin.person).await?;
    Ok(Json(lifts_now(&state)))
}
