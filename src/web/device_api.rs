//! The device side of the protocol (`firmware/PROTOCOL.md`): signed status reports, and the
//! long poll a device behind NAT fetches its commands with. No session: the signature, checked
//! by the `DeviceAuth` extractor, is the authentication.

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::DeviceAuth;
use super::{AppState, WebError};
use crate::lift::{LiftError, ProtocolError, StatusReport};

/// Device messages are small; anything bigger is not one.
pub const MAX_DEVICE_BODY: usize = 4 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/device/status", post(status))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
}

/// The long poll, which waits up to 30 s by design: no request timeout.
pub fn long_polls() -> Router<AppState> {
    Router::new()
        .route("/api/v1/device/commands", get(commands))
        .layer(DefaultBodyLimit::max(MAX_DEVICE_BODY))
}

/// `POST /api/v1/device/status` `{"device_id", "floor", "state", "seq"}`
async fn status(
    State(state): State<AppState>,
    signed: DeviceAuth,
) -> Result<Json<Value>, WebError> {
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
    state.lift.device_report(&report);
    Ok(Json(json!({ "ok": true })))
}

#[derive(serde::Deserialize)]
struct Wait {
    wait: Option<u64>,
}

/// `GET /api/v1/device/commands?wait=25`: the next command at once when one is queued, else
/// 204 after `wait` seconds (at most 30). The answer is signed for the device to check.
async fn commands(
    State(state): State<AppState>,
    Query(wait): Query<Wait>,
    signed: DeviceAuth,
) -> Result<Response, WebError> {
    let wait = Duration::from_secs(wait.wait.unwrap_or(25));
    let (status, body) = match state.lift.next_command(wait).await {
        Some(command) => (StatusCode::OK, serde_json::to_vec(&command)?),
        None => (StatusCode::NO_CONTENT, Vec::new()),
    };
    let signature = state.lift.sign_response(
        &signed.device,
        status.as_u16(),
        &signed.path,
        &signed.nonce,
        &body,
    );
    let mut response = (status, body).into_response();
    signature.insert_into(response.headers_mut());
    if status == StatusCode::OK {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}
