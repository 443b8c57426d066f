//! The extractors that say who is asking: `CurrentUser` (a logged-in person, checked against
//! the session's limits and, for changes, the origin and the CSRF token), `AdminUser`,
//! `Client` (the address and scheme as far as they can be trusted), and `DeviceAuth` (a
//! device's signed message, checked before the handler runs).

use axum::RequestPartsExt;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use super::client::{ClientInfo, Origin, client_info};
use super::{AppState, WebError};
use crate::access::Rights;
use crate::lift::protocol::{DEVICE_HEADER, Presented};
use crate::lift::{Device, LiftError, LiftService, ProtocolError};
use crate::tokens::{Scope, Scopes, SubjectKind, TokenError, Verified};

const USER_KEY: &str = "user";

/// `axum::Json`, refused in the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(WebError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Path`, refused in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(WebError))]
pub struct ApiPath<T>(pub T);

/// `axum::extract::Query`, refused in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(WebError))]
pub struct ApiQuery<T>(pub T);
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a logged-in session holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionUser {
    person: String,
    login_at: i64,
    last_seen: i64,
    csrf_token: String,
}

/// A logged-in person. Extracting it checks the session's inactivity and absolute limits
/// (with the app's clock) and, for state-changing requests, the origin and the CSRF token.
pub struct CurrentUser {
    pub person: String,
    /// an administrator (and, with a token, one with the admin scope)
    pub admin: bool,
    /// empty when the request came with a bearer token
    pub csrf_token: String,
    /// the token's scopes; none for a browser session
    pub token: Option<Scopes>,
}

/// The token of `Authorization: Bearer TOKEN`, if the request carries one.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, WebError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().map_err(|_| TokenError::Invalid)?;
    match text.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Err(TokenError::Invalid.into()),
    }
}

/// The scope a bearer request needs by its method, on routes for any logged-in person.
fn scope_for(method: &Method) -> Scope {
    if method == Method::GET || method == Method::HEAD {
        Scope::LiftRead
    } else {
        Scope::LiftMove
    }
}

impl CurrentUser {
    /// A person's bearer token with the scope `needed`; their rights are read now, as for a
    /// session. A bearer token is not sent by a browser on its own, so no CSRF check applies.
    async fn from_token(
        verified: Verified,
        state: &AppState,
        needed: Scope,
    ) -> Result<Self, WebError> {
        if verified.subject.kind != SubjectKind::Person {
            return Err(WebError::NotAPerson);
        }
        verified.scopes.require(needed)?;
        let person = verified.subject.name;
        let admin = match state.access.rights(&person).await? {
            Rights::Person { admin } => admin && verified.scopes.has(Scope::Admin),
            Rights::Ended => return Err(WebError::AccessEnded),
        };
        Ok(CurrentUser {
            person,
            admin,
            csrf_token: String::new(),
            token: Some(verified.scopes),
        })
    }
}

/// A logged-in administrator.
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        if let Some(token) = bearer(&parts.headers)? {
            let verified = state.tokens.verify(token).await?;
            return Self::from_token(verified, state, scope_for(&parts.method)).await;
        }
        let session: Session = parts
            .extract()
            .await
            .map_err(|_| WebError::NoSessionLayer)?;
        let Some(mut user) = session.get::<SessionUser>(USER_KEY).await? else {
            tracing::debug!("refused: no logged-in person in the session");
            return Err(WebError::NotLoggedIn);
        };
        let now = state.clock.now();
        let web = &state.settings.web;
        let idle = now - user.last_seen;
        let age = now - user.login_at;
        if idle > web.session_inactivity_secs as i64 || age > web.session_absolute_secs as i64 {
            tracing::debug!(idle, age, "refused: session expired");
            session.flush().await?;
            return Err(WebError::SessionExpired);
        }
        // what the session remembers is who logged in; what they may do is read now
        let admin = match state.access.rights(&user.person).await? {
            Rights::Person { admin } => admin,
            Rights::Ended => {
                tracing::debug!(person = %user.person, "refused: access ended");
                session.flush().await?;
                return Err(WebError::AccessEnded);
            }
        };
        if parts.method != Method::GET && parts.method != Method::HEAD {
            check_same_origin(parts, state)?;
            let token = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if token != Some(user.csrf_token.as_str()) {
                tracing::debug!("refused: missing or wrong CSRF token");
                return Err(WebError::CrossSite("missing or wrong CSRF token"));
            }
        }
        user.last_seen = now;
        session.insert(USER_KEY, &user).await?;
        Ok(CurrentUser {
            person: user.person,
            admin,
            csrf_token: user.csrf_token,
            token: None,
        })
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let user = match bearer(&parts.headers)? {
            Some(token) => {
                let verified = state.tokens.verify(token).await?;
                CurrentUser::from_token(verified, state, Scope::Admin).await?
            }
            None => CurrentUser::from_request_parts(parts, state).await?,
        };
        if !user.admin {
            tracing::debug!(person = %user.person, "refused: not an admin");
            return Err(WebError::NotAdmin);
        }
        Ok(AdminUser(user))
    }
}

/// Someone who may see the lifts: a logged-in person, or a token (a person's or a
/// kiosk's) with the scope lift:read.
pub struct LiftReader;

impl FromRequestParts<AppState> for LiftReader {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let Some(token) = bearer(&parts.headers)? else {
            return CurrentUser::from_request_parts(parts, state)
                .await
                .map(|_| LiftReader);
        };
        let verified = state.tokens.verify(token).await?;
        match verified.subject.kind {
            SubjectKind::Person => CurrentUser::from_token(verified, state, Scope::LiftRead)
                .await
                .map(|_| LiftReader),
            SubjectKind::Kiosk => {
                verified.scopes.require(Scope::LiftRead)?;
                state.kiosks.settings(&verified.subject.name)?;
                Ok(LiftReader)
            }
        }
    }
}

/// Whether the request comes from the kiosk `name`: its paired page's cookie, or a kiosk
/// token with the scope `needed`.
pub async fn kiosk_caller(
    headers: &HeaderMap,
    needed: Scope,
    state: &AppState,
    name: &str,
) -> Result<(), WebError> {
    state.kiosks.settings(name)?;
    let Some(token) = bearer(headers)? else {
        return super::kiosk_api::paired(state, name, headers);
    };
    let verified = state.tokens.verify(token).await?;
    if verified.subject.kind != SubjectKind::Kiosk || verified.subject.name != name {
        return Err(WebError::KioskNotPaired);
    }
    verified.scopes.require(needed)?;
    Ok(())
}

/// Starts a logged-in session for `person`, under a new session id (so an id planted before
/// the login is worth nothing after it); answers the session's CSRF token.
pub async fn start_session(session: &Session, person: &str, now: i64) -> Result<String, WebError> {
    session.cycle_id().await?;
    let user = SessionUser {
        person: person.to_string(),
        login_at: now,
        last_seen: now,
        csrf_token: random_token(),
    };
    session.insert(USER_KEY, &user).await?;
    Ok(user.csrf_token)
}

/// 256 random bits from the operating system's CSPRNG, as hex.
fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// A browser always sends `Origin` on cross-site POSTs; when it is there it must name us:
/// the same scheme, host and port the request was made to.
fn check_same_origin(parts: &Parts, state: &AppState) -> Result<(), WebError> {
    let Some(origin) = parts.headers.get("origin") else {
        return Ok(());
    };
    let client = client_info(parts, &state.settings.web.trusted_proxies);
    let claimed = origin.to_str().ok().and_then(Origin::parse);
    match (claimed, client.origin()) {
        (Some(claimed), Some(ours)) if claimed == ours => Ok(()),
        (_, ours) => {
            tracing::debug!(?origin, ?ours, "refused: cross-site request");
            Err(WebError::CrossSite("the request came from another site"))
        }
    }
}

/// The client's address and scheme, as far as they can be trusted; a request from another
/// site is refused.
pub struct Client(pub ClientInfo);

impl FromRequestParts<AppState> for Client {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        check_same_origin(parts, state)?;
        Ok(Self(client_info(
            parts,
            &state.settings.web.trusted_proxies,
        )))
    }
}

/// A device's message whose signature, time window and nonce have been checked: the device
/// it comes from, the nonce (its answer is bound to it), the path signed and the body.
pub struct DeviceAuth {
    /// the car the device drives
    pub lift: LiftService,
    pub device: Device,
    pub nonce: String,
    /// the path with its query, as signed
    pub path: String,
    pub body: Bytes,
}

/// A device message as it arrived: the body (within `limit`), the device's name, the path
/// with its query as signed, and the signature headers.
struct Unverified {
    parts: axum::http::request::Parts,
    body: Bytes,
    path: String,
}

impl Unverified {
    async fn read(request: Request, state: &AppState, limit: usize) -> Result<Self, WebError> {
        let (parts, body) = request.into_parts();
        let body = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => WebError::TooLarge(limit),
                _ => WebError::BadRequest(rejection.body_text()),
            })?;
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        Ok(Self { parts, body, path })
    }

    fn name(&self) -> Option<&str> {
        self.parts
            .headers
            .get(DEVICE_HEADER)
            .and_then(|v| v.to_str().ok())
    }

    fn presented(&self) -> Presented<'_> {
        Presented::from_headers(&self.parts.headers)
    }

    /// Logged, and answered as the web error.
    fn refused(&self, error: LiftError) -> WebError {
        tracing::warn!(%error, device = self.name().unwrap_or("-"), path = %self.path, "device message refused");
        WebError::from(error)
    }
}

impl FromRequest<AppState> for DeviceAuth {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, WebError> {
        let message = Unverified::read(request, state, super::device_api::MAX_DEVICE_BODY).await?;
        let name = message.name();
        let lift = name
            .and_then(|name| state.lifts.car_driven_by(name))
            .cloned()
            .ok_or_else(|| message.refused(ProtocolError::UnknownDevice.into()))?;
        let presented = message.presented();
        let method = message.parts.method.as_str();
        let device = lift
            .verify_device_request(name, method, &message.path, &presented, &message.body)
            .await
            .map_err(|e| message.refused(e))?
            .clone();
        let nonce = presented.nonce.unwrap_or_default().to_string();
        Ok(Self {
            lift,
            device,
            nonce,
            path: message.path,
            body: message.body,
        })
    }
}

/// A camera board's message, checked like a lift controller's: the camera's name, the
/// content type it declared, the nonce, the path signed and the body (up to the upload limit).
pub struct CameraAuth {
    pub camera: String,
    pub content_type: Option<String>,
    pub nonce: String,
    pub path: String,
    pub body: Bytes,
}

impl FromRequest<AppState> for CameraAuth {
    type Rejection = WebError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, WebError> {
        let message = Unverified::read(request, state, state.max_body_bytes).await?;
        let presented = message.presented();
        let camera = state
            .kiosks
            .verify_camera(
                message.name(),
                message.parts.method.as_str(),
                &message.path,
                &presented,
                &message.body,
            )
            .await
            .map_err(|e| message.refused(e))?;
        let nonce = presented.nonce.unwrap_or_default().to_string();
        let content_type = message
            .parts
            .headers
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok(Self {
            camera,
            content_type,
            nonce,
            path: message.path,
            body: message.body,
        })
    }
}
