//! The device side of the protocol (`firmware/PROTOCOL.md`): signed status reports, and the
//! long poll a device behind NAT fetches its commands with. No session: the signature is the
//! authentication.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, WebError};
use crate::lift::protocol::{DEVICE_HEADER, Presented, ProtocolError};
use crate::lift::{Device, LiftError, StatusReport};

/// Device messages are small; anything bigger is not one.
pub const MAX_DEVICE_BODY: usize = 4 * 1024;

/// Checks the request's signature; answers the device it comes from and the nonce it used.
fn authenticate<'a>(
    state: &'a AppState,
    method: &Method,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'a Device, String), WebError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let presented = Presented::from_headers(headers);
    let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let device = state
        .lift
        .verify_device_request(header(DEVICE_HEADER), method.as_str(), path, &presented, body)
        .inspect_err(|e| {
            tracing::warn!(error = %e, device = header(DEVICE_HEADER).unwrap_or("-"), %path, "device message refused");
        })?;
    Ok((device, presented.nonce.unwrap_or_default().to_string()))
}

/// `POST /api/v1/device/status` `{"device_id", "floor", "state", "seq"}`
pub async fn status(
    State(state): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WebError> {
    let (device, _) = authenticate(&state, &method, &uri, &headers, &body)?;
    let report: StatusReport = serde_json::from_slice(&body).map_err(|e| {
        LiftError::Protocol(ProtocolError::BadMessage(format!(
            "not a status report: {e}"
        )))
    })?;
    if report.device_id != device.name {
        return Err(LiftError::Protocol(ProtocolError::BadMessage(
            "device_id differs from the signing device".into(),
        ))
        .into());
    }
    state.lift.device_report(&report);
    Ok(axum::Json(json!({ "ok": true })).into_response())
}

#[derive(serde::Deserialize)]
pub struct Wait {
    wait: Option<u64>,
}

/// `GET /api/v1/device/commands?wait=25`: the next command at once when one is queued, else
/// 204 after `wait` seconds (at most 30). The answer is signed for the device to check.
pub async fn commands(
    State(state): State<AppState>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    axum::extract::Query(wait): axum::extract::Query<Wait>,
) -> Result<Response, WebError> {
    let (_, nonce) = authenticate(&state, &method, &uri, &headers, b"")?;
    let wait = Duration::from_secs(wait.wait.unwrap_or(25));
    let (status, body) = match state.lift.next_command(wait).await {
        Some(command) => (StatusCode::OK, serde_json::to_vec(&command)?),
        None => (StatusCode::NO_CONTENT, Vec::new()),
    };
    let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
    let mut response = (status, body.clone()).into_response();
    if let Some(signed) = state
        .lift
        .sign_response(status.as_u16(), path, &nonce, &body)
    {
        signed.insert_into(response.headers_mut());
    }
    if status == StatusCode::OK {
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}
