//! A lobby kiosk's page talks to these: start a login (the camera board captures), follow the
//! result live, book a ride for the person recognised. The kiosk is paired once by opening the
//! link `facelift device add NAME --kiosk` printed: its key becomes an HTTP-only cookie. A
//! kiosk program may instead use a kiosk token (`POST /api/v1/tokens`, client credentials).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::extract::{ApiJson, ApiPath, Client, kiosk_caller};
use super::{AppState, WebError};
use crate::kiosk::KioskEvent;
use crate::tokens::Scope;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(ride))
}

/// The kiosk's stream stays open as long as the page: no request timeout.
pub fn streams() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// The cookie a paired kiosk holds.
pub fn cookie_name(kiosk: &str) -> String {
    format!("facelift_kiosk_{kiosk}")
}

/// Whether the request comes from the paired kiosk `name`.
pub fn paired(state: &AppState, name: &str, headers: &HeaderMap) -> Result<(), WebError> {
    let wanted = format!("{}=", cookie_name(name));
    let key = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|c| c.trim().strip_prefix(&wanted).map(str::to_string));
    state.kiosks.settings(name)?;
    match key {
        Some(key) if state.kiosks.key_matches(name, &key) => Ok(()),
        _ => Err(WebError::KioskNotPaired),
    }
}

/// Someone at the kiosk pressed "Start": the kiosk's camera is asked to capture.
#[utoipa::path(post, path = "/api/v1/kiosks/{name}/attempts", tag = "kiosk",
    security(("kiosk" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "the kiosk's name")),
    responses(
        (status = 202, description = "the camera is asked; the result comes on the event stream", body = KioskEvent),
        (status = 401, description = "not the paired kiosk", body = ErrorBody),
        (status = 403, description = "a cross-site request", body = ErrorBody),
        (status = 404, description = "no kiosk of that name", body = ErrorBody),
        (status = 503, description = "too many challenges outstanding", body = ErrorBody),
    ))]
async fn start(
    _client: Client,
    headers: HeaderMap,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<(StatusCode, Json<KioskEvent>), WebError> {
    kiosk_caller(&headers, Scope::LiftMove, &state, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(state.kiosks.start(&name)?)))
}

#[derive(Deserialize, ToSchema)]
struct RideRequest {
    attempt_id: String,
    floor: i32,
}

/// The person just recognised at the kiosk picks a floor: the server books the car.
#[utoipa::path(post, path = "/api/v1/kiosks/{name}/rides", tag = "kiosk",
    security(("kiosk" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "the kiosk's name")),
    request_body = RideRequest,
    responses(
        (status = 202, description = "booked: the car named is on its way", body = KioskEvent),
        (status = 400, description = "not a ride request", body = ErrorBody),
        (status = 401, description = "not the paired kiosk", body = ErrorBody),
        (status = 403, description = "a cross-site request, or a floor the person may not reach (now)", body = ErrorBody),
        (status = 404, description = "no kiosk of that name", body = ErrorBody),
        (status = 409, description = "nobody recognised here lately, or every car is busy", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "no such floor, or no car stops there", body = ErrorBody),
        (status = 503, description = "the cars are offline, out of service or recalled", body = ErrorBody),
    ))]
async fn ride(
    _client: Client,
    headers: HeaderMap,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<RideRequest>,
) -> Result<(StatusCode, Json<KioskEvent>), WebError> {
    kiosk_caller(&headers, Scope::LiftMove, &state, &name).await?;
    let event = state
        .kiosks
        .ride(&name, &request.attempt_id, request.floor)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(event)))
}

/// Server-sent events, one `kiosk` event (a `KioskEvent`) per step of a login at the kiosk.
#[utoipa::path(get, path = "/api/v1/kiosks/{name}/events", tag = "kiosk",
    security(("kiosk" = []), ("bearer" = [])),
    params(("name" = String, Path, description = "the kiosk's name")),
    responses(
        (status = 200, description = "an endless stream of `kiosk` events", content_type = "text/event-stream", body = String),
        (status = 401, description = "not the paired kiosk", body = ErrorBody),
        (status = 404, description = "no kiosk of that name", body = ErrorBody),
    ))]
async fn events(
    headers: HeaderMap,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Sse<impl Stream<Item = Result<Event, axum::Error>>>, WebError> {
    kiosk_caller(&headers, Scope::LiftRead, &state, &name).await?;
    let heard = state.kiosks.subscribe(&name)?;
    let stream = futures_util::stream::unfold(heard, |mut heard| async move {
        loop {
            match heard.recv().await {
                Ok(event) => {
                    let sent = Event::default().event("kiosk").json_data(&event);
                    return Some((sent, heard));
                }
                // a slow page missed some: it carries on with the next
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
