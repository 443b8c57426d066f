//! The device side of the protocol (`firmware/PROTOCOL.md`): signed status reports, and the
//! long poll a device behind NAT fetches its commands with. No session: the signature, checked
//! by the `DeviceAuth` extractor, is the authentication.

use std::time::Duration;

use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::DeviceRefusals;
use super::error::ErrorBody;
use super::extract::{ApiQuery, CameraAuth, DeviceAuth};
use super::{AppState, WebError};
use crate::kiosk::{CaptureRequest, KioskEvent, split_upload};
use crate::lift::{LiftError, MoveCommand, ProtocolError, StatusReport};

/// Device messages are small; anything bigger is not one.
pub const MAX_DEVICE_BODY: usize = 4 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
}

/// A camera board's upload: up to the general upload limit.
pub fn uploads(max_body_bytes: usize) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(frames))
        .layer(DefaultBodyLimit::max(max_body_bytes))
}

/// The long polls, which wait up to 30 s by design: no request timeout.
pub fn long_polls() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(commands))
        .routes(routes!(capture))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
}

/// A camera board behind NAT long-polls for its next capture request (a kiosk asked for a
/// login): at once when one is queued, else 204 after `wait` seconds. Signed like a command.
#[utoipa::path(get, path = "/api/v1/device/capture", tag = "device",
    security(("device" = [])),
    params(Wait),
    responses(
        (status = 200, description = "capture now", body = CaptureRequest),
        (status = 204, description = "nothing to do within the wait"),
        DeviceRefusals,
    ))]
async fn capture(
    State(state): State<AppState>,
    ApiQuery(wait): ApiQuery<Wait>,
    signed: CameraAuth,
) -> Result<Response, WebError> {
    let wait = Duration::from_secs(wait.wait.unwrap_or(25));
    let polled = state.kiosks.next_capture(&signed.camera, wait).await;
    poll_answer(polled, |status, body| {
        state
            .kiosks
            .sign_for_camera(&signed.camera, status, &signed.path, &signed.nonce, body)
    })
}

#[derive(Deserialize, IntoParams)]
struct AttemptOf {
    /// The attempt id of the capture request answered.
    attempt: String,
}

/// A camera board's capture for a kiosk's login: one JPEG (`image/jpeg`), or a burst
/// (`application/x-facelift-burst`: each JPEG preceded by its length, 4 bytes big-endian).
/// Signed. The login decision runs on it with the camera as the sensor; the kiosk page hears
/// the result, and so does the camera (to light its LED).
#[utoipa::path(post, path = "/api/v1/device/frames", tag = "device",
    security(("device" = [])),
    params(AttemptOf),
    request_body(content = Vec<u8>, content_type = "image/jpeg"),
    responses(
        (status = 200, description = "the result, as the kiosk shows it", body = KioskEvent),
        DeviceRefusals,
        (status = 409, description = "no login waits for this camera under that attempt id", body = ErrorBody),
        (status = 413, description = "over the upload limit", body = ErrorBody),
        (status = 422, description = "not a JPEG or a burst of them", body = ErrorBody),
    ))]
async fn frames(
    State(state): State<AppState>,
    ApiQuery(attempt): ApiQuery<AttemptOf>,
    signed: CameraAuth,
) -> Result<Json<KioskEvent>, WebError> {
    let burst = signed
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/x-facelift-burst"));
    let frames = split_upload(burst, &signed.body)?;
    let event = state
        .kiosks
        .frames(&signed.camera, &attempt.attempt, frames)
        .await?;
    Ok(Json(event))
}

#[derive(Serialize, ToSchema)]
struct Heard {
    ok: bool,
}

/// A lift controller reports where the lift is, on every change and as a heartbeat. Signed
/// as `firmware/PROTOCOL.md` says.
#[utoipa::path(post, path = "/api/v1/device/status", tag = "device",
    security(("device" = [])),
    request_body = StatusReport,
    responses(
        (status = 200, description = "heard", body = Heard),
        DeviceRefusals,
        (status = 413, description = "larger than any device message", body = ErrorBody),
        (status = 422, description = "not a status report of the signing device", body = ErrorBody),
    ))]
async fn status(signed: DeviceAuth) -> Result<Json<Heard>, WebError> {
    let report: StatusReport = serde_json::from_slice(&signed.body).map_err(|e| {
        LiftError::Protocol(ProtocolError::BadMessage(format!(
            "not a status report: {e}"
        )))
    })?;
    if report.device_id != signed.device.name {
        return Err(LiftError::Protocol(ProtocolError::BadMessage(
            "device_id differs from the signing device".into(),
        ))
        .into());
    }
    signed.lift.device_report(&report);
    Ok(Json(Heard { ok: true }))
}

#[derive(Deserialize, IntoParams)]
struct Wait {
    /// Seconds to wait for a command (at most 30, default 25).
    wait: Option<u64>,
}

/// A lift controller behind NAT long-polls for its next command: at once when one is queued,
/// else 204 after `wait` seconds. The answer is signed for the device to check.
#[utoipa::path(get, path = "/api/v1/device/commands", tag = "device",
    security(("device" = [])),
    params(Wait),
    responses(
        (status = 200, description = "a command", body = MoveCommand),
        (status = 204, description = "nothing to do within the wait"),
        DeviceRefusals,
    ))]
async fn commands(
    ApiQuery(wait): ApiQuery<Wait>,
    signed: DeviceAuth,
) -> Result<Response, WebError> {
    let wait = Duration::from_secs(wait.wait.unwrap_or(25));
    let polled = signed.lift.next_command(wait).await;
    poll_answer(polled, |status, body| {
        Some(
            signed
                .lift
                .sign_response(&signed.device, status, &signed.path, &signed.nonce, body),
        )
    })
}

/// A long poll's answer: 200 with what came as JSON, or 204 with nothing, signed by `sign`
/// (status and body) for the device to check.
fn poll_answer<T: Serialize>(
    polled: Option<T>,
    sign: impl FnOnce(u16, &[u8]) -> Option<crate::lift::protocol::Signed>,
) -> Result<Response, WebError> {
    let (status, body) = match polled {
        Some(item) => (StatusCode::OK, serde_json::to_vec(&item)?),
        None => (StatusCode::NO_CONTENT, Vec::new()),
    };
    let signature = sign(status.as_u16(), &body);
    let mut response = (status, body).into_response();
    if let Some(signature) = signature {
        signature.insert_into(response.headers_mut());
    }
    if status == StatusCode::OK {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}
