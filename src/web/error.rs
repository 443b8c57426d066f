//! The one error type of the web layer: a status code and a JSON body with a machine code and
//! a human message. Internal causes are logged, never sent to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::face::FaceError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the upload is larger than {0} bytes")]
    TooLarge(usize),
}

impl WebError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use FaceError as F;
        let message = self.to_string();
        match self {
            WebError::Face(error) => match error {
                F::Empty | F::NotAnImage | F::Corrupt(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "bad_image", message)
                }
                F::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message),
                F::NoFace => (StatusCode::UNPROCESSABLE_ENTITY, "no_face", message),
                F::FaceTooSmall { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "face_too_small", message)
                }
                F::SeveralFaces { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "several_faces", message)
                }
                F::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy", message),
                F::Model(_) | F::Runtime(_) | F::Io { .. } => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong on the server; it has been logged".into(),
                ),
            },
            WebError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request", message),
            WebError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", message),
        }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let mut response =
            (status, Json(json!({ "error": code, "message": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
