//! Shapes that only describe requests and answers in the OpenAPI document: the handlers read
//! multipart streams and path strings, and refuse through `WebError`, so these are never built.
#![allow(dead_code)]

use utoipa::{IntoParams, IntoResponses, ToSchema};

use super::error::ErrorBody;

/// The login and identify upload.
#[derive(ToSchema)]
pub struct FrameUpload {
    /// A camera frame: JPEG, PNG or WebP.
    #[schema(value_type = String, format = Binary)]
    frame: Vec<u8>,
}

/// The login upload: with PAD's challenge, the challenge's nonce and a burst of frames in the
/// order they were captured; otherwise one frame.
#[derive(ToSchema)]
pub struct LoginUpload {
    /// The nonce of `POST /api/v1/login/challenge` (PAD mode "challenge").
    #[schema(max_length = 64)]
    nonce: Option<String>,
    /// The camera frames (JPEG, PNG or WebP), each its own `frame` field: 3 to 12 with a
    /// nonce, else one.
    #[schema(value_type = Vec<String>, format = Binary)]
    frame: Vec<Vec<u8>>,
}

/// The verify upload: two photos.
#[derive(ToSchema)]
pub struct PairUpload {
    #[schema(value_type = String, format = Binary)]
    a: Vec<u8>,
    #[schema(value_type = String, format = Binary)]
    b: Vec<u8>,
}

/// The enrolment upload: one photo of the person.
#[derive(ToSchema)]
pub struct PhotoUpload {
    #[schema(value_type = String, format = Binary)]
    photo: Vec<u8>,
}

/// The path's person name, as `valid_person_name` checks it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct PersonName {
    /// 1 to 64 letters, digits, - or _
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    name: String,
}

/// A route for anyone logged in.
#[derive(IntoResponses)]
pub enum NeedsSession {
    #[response(status = 401, description = "not logged in, or the session ended")]
    NotLoggedIn(ErrorBody),
}

/// A change by anyone logged in: also the CSRF token and the origin.
#[derive(IntoResponses)]
pub enum NeedsSessionToChange {
    #[response(status = 401, description = "not logged in, or the session ended")]
    NotLoggedIn(ErrorBody),
    #[response(status = 403, description = "a cross-site request, or no CSRF token")]
    CrossSite(ErrorBody),
}

/// A move by anyone logged in: the CSRF token and the origin, and a floor they may reach.
#[derive(IntoResponses)]
pub enum NeedsSessionToMove {
    #[response(status = 401, description = "not logged in, or the session ended")]
    NotLoggedIn(ErrorBody),
    #[response(
        status = 403,
        description = "a cross-site request, no CSRF token, or a floor the person may not                        reach (`floor_not_allowed`), or not now (`outside_hours`)"
    )]
    NotAllowed(ErrorBody),
}

/// A route for administrators.
#[derive(IntoResponses)]
pub enum NeedsAdmin {
    #[response(status = 401, description = "not logged in, or the session ended")]
    NotLoggedIn(ErrorBody),
    #[response(status = 403, description = "not an administrator")]
    NotAdmin(ErrorBody),
}

/// A change by an administrator.
#[derive(IntoResponses)]
pub enum NeedsAdminToChange {
    #[response(status = 401, description = "not logged in, or the session ended")]
    NotLoggedIn(ErrorBody),
    #[response(
        status = 403,
        description = "not an administrator, or a cross-site request"
    )]
    NotAllowed(ErrorBody),
}

/// What an upload of images can meet before and in the face engine.
#[derive(IntoResponses)]
pub enum ImageRefusals {
    #[response(
        status = 400,
        description = "not a multipart upload with the named fields"
    )]
    NotAnUpload(ErrorBody),
    #[response(
        status = 413,
        description = "the upload, or an image's pixels, over the limit"
    )]
    TooLarge(ErrorBody),
    #[response(
        status = 422,
        description = "not an image, or no usable face in it (`bad_image`, `no_face`, \
                       `face_too_small`, `several_faces`)"
    )]
    Unusable(ErrorBody),
    #[response(status = 503, description = "the face engine is busy",
        headers(("Retry-After" = u64, description = "seconds to wait")))]
    Busy(ErrorBody),
}

/// A signed device message that is not good.
#[derive(IntoResponses)]
pub enum DeviceRefusals {
    #[response(status = 400, description = "an unreadable request")]
    Unreadable(ErrorBody),
    #[response(
        status = 401,
        description = "unsigned, badly signed, stale or replayed"
    )]
    NotSigned(ErrorBody),
}

/// A JPEG image.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Jpeg(Vec<u8>);
