//! Face login and logout for the browser: parse the upload, ask `access`, start the session.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{AppendHeaders, IntoResponse};
use serde::Serialize;
use tower_sessions::Session;
use tower_sessions::cookie::{Cookie, SameSite};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{ImageRefusals, LoginUpload, NeedsSession, NeedsSessionToChange};
use super::error::ErrorBody;
use super::extract::{Client, CurrentUser, start_session};
use super::upload::{Upload, read_presentation};
use super::{AppState, EngineTicket, WebError};
use crate::access::FloorAccess;
use crate::access::LoginClient;
use crate::access::pad::{MAX_BURST_FRAMES, MIN_BURST_FRAMES};
use crate::face::pad::Turn;
use crate::store::TRUSTED_BROWSER_SECS;

/// The session key of the token challenges are issued to: a browser's challenge works only
/// in the session that asked for it.
const CHALLENGE_OWNER_KEY: &str = "challenge_owner";

/// Kept by a browser that logged in successfully: its attempts are limited on their own, not
/// with its address's (a shared kiosk or NAT), so a stranger failing there cannot lock it out.
pub const BROWSER_COOKIE: &str = "facelift_browser";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(challenge))
        .routes(routes!(logout))
        .routes(routes!(me))
}

#[derive(Serialize, ToSchema)]
struct LoggedIn {
    person: String,
    similarity: f32,
    admin: bool,
    /// Send it back as `x-csrf-token` with every change.
    csrf_token: String,
    faces_seen: usize,
}

/// What to do for a live login, and the nonce to send back with the frames.
#[derive(Serialize, ToSchema)]
struct ChallengeAnswer {
    nonce: String,
    /// the head turns to make, in order, named from the person's side
    turns: Vec<Turn>,
    /// the same, in words to show
    instruction: String,
    /// seconds left to send the burst
    expires_in: i64,
    /// how many frames to send, and how far apart to capture them
    min_frames: usize,
    max_frames: usize,
    frame_interval_ms: u64,
}

/// Asks for a live-login challenge: one or two head turns the server picks, and a one-time
/// nonce that works only in this session and only for `expires_in` seconds. Capture a burst
/// of frames while doing it and send them with the nonce to `POST /api/v1/login`.
#[utoipa::path(post, path = "/api/v1/login/challenge", tag = "login",
    responses(
        (status = 200, description = "the challenge; a session cookie binds it to this client",
            body = ChallengeAnswer),
        (status = 503, description = "too many challenges are outstanding", body = ErrorBody,
            headers(("Retry-After" = u64, description = "seconds to wait"))),
    ))]
async fn challenge(
    State(state): State<AppState>,
    session: Session,
) -> Result<Json<ChallengeAnswer>, WebError> {
    let owner = challenge_owner(&session, true).await?;
    let issued = state.access.challenge(&owner)?;
    let instruction = issued
        .turns
        .iter()
        .enumerate()
        .map(|(i, turn)| {
            let side = match turn {
                Turn::Left => "left",
                Turn::Right => "right",
            };
            if i == 0 {
                format!("Turn your head slowly to your {side}")
            } else {
                format!("then to your {side}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Json(ChallengeAnswer {
        nonce: issued.nonce,
        instruction: format!("{instruction}."),
        turns: issued.turns,
        expires_in: issued.expires_at - state.clock.now(),
        min_frames: MIN_BURST_FRAMES,
        max_frames: MAX_BURST_FRAMES,
        frame_interval_ms: 250,
    }))
}

/// The session's challenge owner token: made when `create` (asking for a challenge), else
/// whatever the session has (nothing: a challenge from another session never matches).
async fn challenge_owner(session: &Session, create: bool) -> Result<String, WebError> {
    if let Some(owner) = session.get::<String>(CHALLENGE_OWNER_KEY).await? {
        return Ok(owner);
    }
    if !create {
        return Ok(String::new());
    }
    let owner = hex::encode(rand::random::<[u8; 16]>());
    session.insert(CHALLENGE_OWNER_KEY, &owner).await?;
    Ok(owner)
}

/// Logs in with the camera: with PAD's challenge (the default), the nonce of a challenge and
/// a burst of frames doing it; otherwise one frame. The best face of every frame must match
/// one and the same enrolled person. Starts a session (cookie `facelift_session`).
#[utoipa::path(post, path = "/api/v1/login", tag = "login",
    request_body(content = LoginUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "logged in; the session cookie is set", body = LoggedIn),
        (status = 400, description = "a single frame where a challenge is needed \
            (`challenge_required`), or a burst of the wrong size", body = ErrorBody),
        (status = 401, description = "the face is not recognised (`not_recognized`), the \
            liveness check failed (`pad_refused`), or the challenge is unknown, used, expired \
            or another client's", body = ErrorBody),
        (status = 429, description = "too many failed attempts from this address",
            body = ErrorBody, headers(("Retry-After" = u64, description = "seconds to wait"))),
        ImageRefusals,
    ))]
async fn login(
    State(state): State<AppState>,
    // before the session and the upload: a refusal reads neither
    _place: EngineTicket,
    session: Session,
    Client(client): Client,
    headers: HeaderMap,
    upload: Upload,
) -> Result<impl IntoResponse, WebError> {
    let presentation = read_presentation(upload, state.max_body_bytes).await?;
    let login_client = LoginClient {
        address: client.address.clone(),
        browser: browser_token(&headers),
        challenge_owner: challenge_owner(&session, false).await?,
    };
    let admitted = state.access.log_in(&login_client, presentation).await?;
    let now = state.clock.now();
    let csrf_token = start_session(&session, &admitted.person, now).await?;
    tracing::info!(person = %admitted.person, client = %client.address, "logged in");
    let trust = admitted.new_browser_token.as_deref().map(|token| {
        let cookie = Cookie::build((BROWSER_COOKIE, token))
            .path("/api/v1/login")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(time::Duration::seconds(TRUSTED_BROWSER_SECS))
            .build();
        (header::SET_COOKIE, cookie.to_string())
    });
    let answer = Json(LoggedIn {
        person: admitted.person,
        similarity: admitted.similarity,
        admin: admitted.admin,
        csrf_token,
        faces_seen: admitted.faces_seen,
    });
    Ok((AppendHeaders(trust), answer))
}

/// The trusted-browser token the request's cookies carry, if any.
fn browser_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value: &HeaderValue| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == BROWSER_COOKIE)
        .map(|cookie| cookie.value().to_string())
}

#[derive(Serialize, ToSchema)]
struct LoggedOut {
    logged_out: String,
}

/// Ends the session.
#[utoipa::path(post, path = "/api/v1/logout", tag = "login",
    security(("session" = [], "csrf" = [])),
    responses(
        (status = 200, description = "the session is gone", body = LoggedOut),
        NeedsSessionToChange,
    ))]
async fn logout(user: CurrentUser, session: Session) -> Result<Json<LoggedOut>, WebError> {
    session.flush().await?;
    tracing::info!(person = %user.person, "logged out");
    Ok(Json(LoggedOut {
        logged_out: user.person,
    }))
}

#[derive(Serialize, ToSchema)]
struct Me {
    person: String,
    admin: bool,
    csrf_token: String,
    /// The floors they may reach now, their home floor, hours and visitor pass.
    access: FloorAccess,
}

/// Who is logged in.
#[utoipa::path(get, path = "/api/v1/me", tag = "login", security(("session" = []), ("bearer" = ["lift:read"])),
    responses(
        (status = 200, description = "the logged-in person", body = Me),
        NeedsSession,
    ))]
async fn me(user: CurrentUser, State(state): State<AppState>) -> Result<Json<Me>, WebError> {
    let access = state.access.floor_access(&user.person).await?;
    Ok(Json(Me {
        person: user.person,
        admin: user.admin,
        csrf_token: user.csrf_token,
        access,
    }))
}
