//! The one error type of the web layer: a status code and a JSON body with a machine code and
//! a human message. Internal causes are logged, never sent to the client.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::{AccessError, ChallengeError};
use crate::face::FaceError;
use crate::lift::{LiftError, ProtocolError};
use crate::tokens::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error(transparent)]
    Lift(#[from] LiftError),
    #[error(transparent)]
    Kiosk(crate::kiosk::KioskError),
    #[error(
        "this kiosk is not paired: open the pairing link `facelift device add NAME --kiosk` printed"
    )]
    KioskNotPaired,
    #[error(transparent)]
    Token(#[from] crate::tokens::TokenError),
    #[error("this route needs a person's token, not a kiosk's")]
    NotAPerson,
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    BodyTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("the upload is larger than {0} bytes")]
    TooLarge(usize),
    #[error("please log in first")]
    NotLoggedIn,
    #[error("your session has ended; please log in again")]
    SessionExpired,
    #[error("your access has ended; ask an administrator")]
    AccessEnded,
    #[error("face not recognised")]
    NotRecognized,
    #[error("too many failed attempts; try again in {retry_after} seconds")]
    TooManyAttempts { retry_after: u64 },
    #[error("this page is for administrators")]
    NotAdmin,
    #[error("request refused: {0}")]
    CrossSite(&'static str),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("session: {0}")]
    Session(#[from] tower_sessions::session::Error),
    #[error("the session layer is missing from the router")]
    NoSessionLayer,
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the gallery is unusable: a thread panicked while changing it")]
    GalleryPoisoned,
    #[error("the admission to the face engine is unusable: a thread panicked")]
    AdmissionPoisoned,
    #[error("this address already has {0} images waiting for the face engine; try again shortly")]
    OverShare(usize),
    #[error("the request body came too slowly")]
    BodyTooSlow,
    #[error("encoding the answer: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{what}: {source}")]
    Files {
        what: &'static str,
        source: std::io::Error,
    },
}

/// Every refusal's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: `bad_image`, `no_face`, `not_recognized`,
    /// `too_many_attempts`, `not_logged_in`, `busy`, `offline`, `bad_signature`, ...
    #[schema(example = "not_recognized")]
    pub error: &'static str,
    /// The same, for people.
    pub message: String,
}

/// axum's own refusals (a body that is not JSON, a bad query or path) are answered in the
/// same JSON shape as ours, with their status kept.
impl WebError {
    fn rejected(status: StatusCode, message: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => WebError::BodyTooLarge(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => WebError::UnsupportedMediaType(message),
            StatusCode::UNPROCESSABLE_ENTITY => WebError::Unprocessable(message),
            _ => WebError::BadRequest(message),
        }
    }
}

/// A kiosk's refusal by the access decision or a lift is answered as theirs.
impl From<crate::kiosk::KioskError> for WebError {
    fn from(error: crate::kiosk::KioskError) -> Self {
        use crate::kiosk::KioskError as K;
        match error {
            K::Access(error) => WebError::Access(error),
            K::Lift(error) => WebError::Lift(error),
            other => WebError::Kiosk(other),
        }
    }
}

macro_rules! rejections_become_web_errors {
    ($($rejection:ty),*) => {$(
        impl From<$rejection> for WebError {
            fn from(rejection: $rejection) -> Self {
                WebError::rejected(rejection.status(), rejection.body_text())
            }
        }
    )*};
}
rejections_become_web_errors!(
    JsonRejection,
    MultipartRejection,
    PathRejection,
    QueryRejection
);

impl WebError {
    fn parts(&self) -> (StatusCode, &'static str, String) {
        use FaceError as F;
        use StatusCode as S;
        let message = self.to_string();
        match self {
            WebError::Access(AccessError::Face(error)) | WebError::Face(error) => match error {
                F::Empty | F::NotAnImage | F::Corrupt(_) => {
                    (S::UNPROCESSABLE_ENTITY, "bad_image", message)
                }
                F::TooLarge { .. } => (S::PAYLOAD_TOO_LARGE, "image_too_large", message),
                F::NoFace => (S::UNPROCESSABLE_ENTITY, "no_face", message),
                F::FaceTooSmall { .. } => (S::UNPROCESSABLE_ENTITY, "face_too_small", message),
                F::SeveralFaces { .. } => (S::UNPROCESSABLE_ENTITY, "several_faces", message),
                F::Busy => (S::SERVICE_UNAVAILABLE, "busy", message),
                F::NotForThisModel { .. }
                | F::ModelMissing { .. }
                | F::ModelChecksum { .. }
                | F::NoSuchOutput(_)
                | F::EmbeddingSize { .. }
                | F::Batch(_)
                | F::Resize(_)
                | F::Int8(_)
                | F::RuntimeNotFound
                | F::RuntimePathMissing(_)
                | F::RuntimeLoad { .. }
                | F::RuntimeUnavailable(_)
                | F::Runtime(_)
                | F::EngineThread(_)
                | F::EngineStopped
                | F::EnginePanicked
                | F::GalleryUnavailable
                | F::MatchPanicked
                | F::Io { .. } => internal(),
            },
            WebError::Lift(error) => match error {
                LiftError::Busy => (S::CONFLICT, "busy", message),
                LiftError::OutOfRange { .. } => (S::UNPROCESSABLE_ENTITY, "no_such_floor", message),
                LiftError::Offline => (S::SERVICE_UNAVAILABLE, "offline", message),
                LiftError::Fault(_) => (S::SERVICE_UNAVAILABLE, "fault", message),
                LiftError::AlreadyThere(_) => (S::CONFLICT, "already_there", message),
                LiftError::RequestIdReused => (S::CONFLICT, "request_id_reused", message),
                LiftError::BadRequestId => (S::UNPROCESSABLE_ENTITY, "bad_request_id", message),
                LiftError::NotServed(_) => (S::UNPROCESSABLE_ENTITY, "floor_not_served", message),
                LiftError::NoSuchLift(_) => (S::NOT_FOUND, "no_such_lift", message),
                LiftError::Recall(_) => (S::SERVICE_UNAVAILABLE, "recall", message),
                LiftError::Protocol(ProtocolError::Replayed) => {
                    (S::UNAUTHORIZED, "replayed", message)
                }
                LiftError::Protocol(ProtocolError::Stale { .. }) => {
                    (S::UNAUTHORIZED, "stale", message)
                }
                LiftError::Protocol(ProtocolError::BadMessage(_)) => {
                    (S::UNPROCESSABLE_ENTITY, "bad_message", message)
                }
                LiftError::Protocol(ProtocolError::Unverifiable) => internal(),
                LiftError::Protocol(_) => (S::UNAUTHORIZED, "bad_signature", message),
                LiftError::BadDevice { .. } | LiftError::Unavailable(_) => internal(),
            },
            WebError::Access(AccessError::LoginDisabled { .. }) => {
                (S::FORBIDDEN, "login_disabled", message)
            }
            WebError::Access(AccessError::NotRecognized) | WebError::NotRecognized => {
                (S::UNAUTHORIZED, "not_recognized", message)
            }
            WebError::Access(AccessError::TooManyAttempts { .. })
            | WebError::TooManyAttempts { .. } => {
                (S::TOO_MANY_REQUESTS, "too_many_attempts", message)
            }
            WebError::Access(AccessError::ChallengeNeeded) => {
                (S::BAD_REQUEST, "challenge_required", message)
            }
            WebError::Access(AccessError::Challenge(error)) => match error {
                ChallengeError::Unknown => (S::UNAUTHORIZED, "challenge_unknown", message),
                ChallengeError::Expired => (S::UNAUTHORIZED, "challenge_expired", message),
                ChallengeError::OtherClient => (S::UNAUTHORIZED, "challenge_other_client", message),
            },
            WebError::Access(AccessError::BurstSize { .. }) => {
                (S::BAD_REQUEST, "bad_burst", message)
            }
            WebError::Access(AccessError::PresentationRefused(_)) => {
                (S::UNAUTHORIZED, "pad_refused", message)
            }
            WebError::Access(AccessError::NoAccess { .. }) => (S::FORBIDDEN, "no_access", message),
            WebError::Access(AccessError::BadAccess(_)) => {
                (S::UNPROCESSABLE_ENTITY, "bad_access", message)
            }
            WebError::Access(AccessError::FloorNotAllowed { .. }) => {
                (S::FORBIDDEN, "floor_not_allowed", message)
            }
            WebError::Access(AccessError::OutsideHours { .. }) => {
                (S::FORBIDDEN, "outside_hours", message)
            }
            WebError::Access(AccessError::TooManyChallenges) => {
                (S::SERVICE_UNAVAILABLE, "busy", message)
            }
            WebError::Access(
                AccessError::GalleryPoisoned | AccessError::Store(_) | AccessError::Task(_),
            ) => internal(),
            WebError::BadRequest(_) => (S::BAD_REQUEST, "bad_request", message),
            WebError::BodyTooLarge(_) => (S::PAYLOAD_TOO_LARGE, "too_large", message),
            WebError::UnsupportedMediaType(_) => {
                (S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
            }
            WebError::Unprocessable(_) => (S::UNPROCESSABLE_ENTITY, "bad_request", message),
            WebError::TooLarge(_) => (S::PAYLOAD_TOO_LARGE, "too_large", message),
            WebError::NotLoggedIn => (S::UNAUTHORIZED, "not_logged_in", message),
            WebError::SessionExpired => (S::UNAUTHORIZED, "session_expired", message),
            WebError::AccessEnded => (S::UNAUTHORIZED, "access_ended", message),
            WebError::NotAdmin => (S::FORBIDDEN, "not_admin", message),
            WebError::OverShare(_) => (S::SERVICE_UNAVAILABLE, "busy", message),
            WebError::CrossSite(_) => (S::FORBIDDEN, "cross_site", message),
            WebError::BodyTooSlow => (S::REQUEST_TIMEOUT, "body_too_slow", message),
            WebError::NotFound { .. } => (S::NOT_FOUND, "not_found", message),
            WebError::KioskNotPaired => (S::UNAUTHORIZED, "kiosk_not_paired", message),
            WebError::NotAPerson => (S::FORBIDDEN, "not_a_person", message),
            WebError::Token(error) => {
                use crate::tokens::TokenError as T;
                match error {
                    T::Invalid => (S::UNAUTHORIZED, "invalid_token", message),
                    T::Expired => (S::UNAUTHORIZED, "token_expired", message),
                    T::Revoked | T::RefreshReused => (S::UNAUTHORIZED, "token_revoked", message),
                    T::BadRefresh => (S::BAD_REQUEST, "invalid_grant", message),
                    T::UnknownScope(_) => (S::BAD_REQUEST, "invalid_scope", message),
                    T::ScopeNotAllowed(_) => (S::FORBIDDEN, "scope_not_allowed", message),
                    T::InsufficientScope(_) => (S::FORBIDDEN, "insufficient_scope", message),
                    T::NoSuchKey(_) => (S::NOT_FOUND, "not_found", message),
                    T::Store(_) | T::Task(_) | T::Signing(_) => internal(),
                }
            }
            WebError::Kiosk(error) => {
                use crate::kiosk::KioskError as K;
                match error {
                    K::NoSuchKiosk(_) => (S::NOT_FOUND, "no_such_kiosk", message),
                    K::NoSuchAttempt => (S::CONFLICT, "no_such_attempt", message),
                    K::NoOneRecognized => (S::CONFLICT, "no_one_recognized", message),
                    K::BadUpload(_) => (S::UNPROCESSABLE_ENTITY, "bad_image", message),
                    // unpacked into their own variants by `From`
                    K::NoCamera { .. } | K::Access(_) | K::Lift(_) => internal(),
                }
            }
            WebError::Store(_)
            | WebError::Session(_)
            | WebError::NoSessionLayer
            | WebError::Task(_)
            | WebError::GalleryPoisoned
            | WebError::AdmissionPoisoned
            | WebError::Encode(_)
            | WebError::Files { .. } => internal(),
        }
    }
}

fn internal() -> (StatusCode, &'static str, String) {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "something went wrong on the server; it has been logged".into(),
    )
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.parts();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, "request refused");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: code,
                message,
            }),
        )
            .into_response();
        let retry_after = match &self {
            WebError::TooManyAttempts { retry_after }
            | WebError::Access(AccessError::TooManyAttempts { retry_after }) => Some(*retry_after),
            WebError::Face(FaceError::Busy)
            | WebError::OverShare(_)
            | WebError::Access(
                AccessError::Face(FaceError::Busy) | AccessError::TooManyChallenges,
            ) => Some(1),
            _ => None,
        };
        // RFC 6750: a refused bearer token is told why in WWW-Authenticate
        let bearer_error = match &self {
            WebError::Token(TokenError::Invalid | TokenError::Expired | TokenError::Revoked) => {
                Some("invalid_token")
            }
            WebError::Token(TokenError::InsufficientScope(_)) => Some("insufficient_scope"),
            _ => None,
        };
        if let Some(value) =
            bearer_error.and_then(|e| HeaderValue::from_str(&format!("Bearer error=\"{e}\"")).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok())
        {
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}
