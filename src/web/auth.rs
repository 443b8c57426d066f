//! Face login, sessions and who may do what: the `CurrentUser` and `AdminUser` extractors,
//! the failed-login limiter, and the cross-site checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequestParts, Multipart, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::{Json, RequestPartsExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower_sessions::Session;

use super::client::{ClientInfo, Origin, client_info};
use super::{AppState, WebError, api::read_files};
use crate::config::Settings;
use crate::face::Which;
use crate::store::{AuditEntry, Store, StoreError};

const USER_KEY: &str = "user";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a logged-in session holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SessionUser {
    person: String,
    admin: bool,
    login_at: i64,
    last_seen: i64,
    csrf_token: String,
}

/// A logged-in person. Extracting it checks the session's inactivity and absolute limits
/// (with the app's clock) and, for state-changing requests, the origin and the CSRF token.
pub struct CurrentUser {
    pub person: String,
    pub admin: bool,
    pub csrf_token: String,
}

/// A logged-in person marked admin in the settings.
pub struct AdminUser(pub CurrentUser);

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
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
            admin: user.admin,
            csrf_token: user.csrf_token,
        })
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        if !user.admin {
            tracing::debug!(person = %user.person, "refused: not an admin");
            return Err(WebError::NotAdmin);
        }
        Ok(AdminUser(user))
    }
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

/// Failed logins per client: after `allowed` failures in a row the client waits, and each
/// further failure doubles the wait up to `max_wait`; a success forgets the client.
pub struct LoginLimiter {
    allowed: u32,
    base_wait: i64,
    max_wait: i64,
    clients: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy, Default)]
struct Failures {
    count: u32,
    blocked_until: i64,
    last: i64,
}

/// The most clients tracked at once; beyond it the stalest are forgotten first.
const MAX_TRACKED_CLIENTS: usize = 10_000;

impl LoginLimiter {
    pub fn new(allowed: u32, base_wait: u64, max_wait: u64) -> Self {
        Self {
            allowed: allowed.max(1),
            base_wait: base_wait as i64,
            max_wait: max_wait.max(base_wait) as i64,
            clients: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Failures>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds the client must still wait, if any.
    pub fn wait(&self, client: &str, now: i64) -> Option<u64> {
        let clients = self.lock();
        let failures = clients.get(client)?;
        (failures.blocked_until > now).then(|| (failures.blocked_until - now) as u64)
    }

    pub fn failure(&self, client: &str, now: i64) {
        let mut clients = self.lock();
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(client) {
            // forget clients that are not waiting and have not failed for a long while
            let cutoff = now - self.max_wait;
            clients.retain(|_, f| f.last > cutoff || f.blocked_until > now);
            let stalest = (clients.len() >= MAX_TRACKED_CLIENTS)
                .then(|| {
                    clients
                        .iter()
                        .min_by_key(|(_, f)| f.last)
                        .map(|(k, _)| k.clone())
                })
                .flatten();
            if let Some(stalest) = stalest {
                clients.remove(&stalest);
            }
        }
        let failures = clients.entry(client.to_string()).or_default();
        failures.count += 1;
        failures.last = now;
        if failures.count >= self.allowed {
            let doublings = (failures.count - self.allowed).min(30);
            let wait = self
                .base_wait
                .saturating_mul(1 << doublings)
                .min(self.max_wait);
            failures.blocked_until = now + wait;
        }
    }

    pub fn success(&self, client: &str) {
        self.lock().remove(client);
    }
}

fn random_token() -> String {
    // tower-sessions' ids come from a CSPRNG; two of them make a 256-bit token
    let (a, b) = (
        tower_sessions::session::Id::default(),
        tower_sessions::session::Id::default(),
    );
    format!("{a}{b}")
}

async fn audit(state: &AppState, entry: AuditEntry) {
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || store.audit(&entry)).await;
    if !matches!(result, Ok(Ok(()))) {
        tracing::error!("could not write the audit log");
    }
}

/// Whether `person` is an administrator: listed in `web.admins`, or marked in the database by
/// `facelift person add --admin`.
pub fn is_administrator(
    settings: &Settings,
    store: &Store,
    person: &str,
) -> Result<bool, StoreError> {
    Ok(settings.web.admins.iter().any(|a| a == person) || store.is_admin(person)?)
}

/// `POST /api/v1/login`, multipart field `frame`.
pub async fn login(
    State(state): State<AppState>,
    session: Session,
    client: ClientInfoExtractor,
    multipart: Multipart,
) -> Result<Json<Value>, WebError> {
    let ClientInfoExtractor(client) = client;
    let now = state.clock.now();
    let entry = |person: Option<String>, similarity: Option<f32>, outcome: &str| AuditEntry {
        at: now,
        kind: "login".into(),
        client: client.address.clone(),
        person,
        similarity,
        outcome: outcome.into(),
        detail: None,
    };
    if let Some(retry_after) = state.limiter.wait(&client.address, now) {
        audit(&state, entry(None, None, "rate_limited")).await;
        return Err(WebError::TooManyAttempts { retry_after });
    }
    let mut files = read_files(multipart, &["frame"], state.max_body_bytes).await?;
    let frame = files.remove(0);
    let analysis = match state
        .pool
        .run(move |engine| engine.analyze_bytes(&frame, Which::Best))
        .await?
    {
        Ok(analysis) => analysis,
        Err(error) => {
            let outcome = match &error {
                crate::face::FaceError::NoFace => "no_face",
                crate::face::FaceError::FaceTooSmall { .. } => "face_too_small",
                _ => "bad_image",
            };
            audit(&state, entry(None, None, outcome)).await;
            return Err(error.into());
        }
    };
    let Some(face) = analysis.best() else {
        return Err(crate::face::FaceError::NoFace.into());
    };
    let result = state
        .gallery()?
        .best_match(&face.embedding, state.pool.threshold());
    let similarity = result.similarity();
    let Some(person) = result.person else {
        state.limiter.failure(&client.address, now);
        audit(&state, entry(None, similarity, "not_recognized")).await;
        return Err(WebError::NotRecognized);
    };
    state.limiter.success(&client.address);
    // a new id at login, so a session id planted before login is worth nothing after it
    session.cycle_id().await?;
    let (settings, store, name) = (
        Arc::clone(&state.settings),
        Arc::clone(&state.store),
        person.clone(),
    );
    let admin =
        tokio::task::spawn_blocking(move || is_administrator(&settings, &store, &name)).await??;
    let user = SessionUser {
        admin,
        person: person.clone(),
        login_at: now,
        last_seen: now,
        csrf_token: random_token(),
    };
    session.insert(USER_KEY, &user).await?;
    audit(
        &state,
        entry(Some(person.clone()), similarity, "recognized"),
    )
    .await;
    tracing::info!(%person, client = %client.address, "logged in");
    Ok(Json(json!({
        "person": person,
        "similarity": similarity,
        "admin": user.admin,
        "csrf_token": user.csrf_token,
        "faces_seen": analysis.faces_seen,
    })))
}

/// `POST /api/v1/logout`: deletes the session.
pub async fn logout(user: CurrentUser, session: Session) -> Result<Json<Value>, WebError> {
    session.flush().await?;
    tracing::info!(person = %user.person, "logged out");
    Ok(Json(json!({ "logged_out": user.person })))
}

/// `GET /api/v1/me`
pub async fn me(user: CurrentUser) -> Json<Value> {
    Json(json!({ "person": user.person, "admin": user.admin, "csrf_token": user.csrf_token }))
}

/// The client's address and scheme, as far as they can be trusted.
pub struct ClientInfoExtractor(pub ClientInfo);

impl FromRequestParts<AppState> for ClientInfoExtractor {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        check_same_origin(parts, state)?;
        Ok(Self(client_info(
            parts,
            &state.settings.web.trusted_proxies,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_starts_after_the_allowed_failures_and_doubles_to_the_cap() {
        let limiter = LoginLimiter::new(3, 10, 35);
        for _ in 0..2 {
            limiter.failure("a", 100);
        }
        assert_eq!(limiter.wait("a", 100), None, "two failures: no wait yet");
        limiter.failure("a", 100);
        assert_eq!(limiter.wait("a", 100), Some(10));
        assert_eq!(
            limiter.wait("b", 100),
            None,
            "other clients are not affected"
        );
        limiter.failure("a", 111);
        assert_eq!(limiter.wait("a", 111), Some(20));
        limiter.failure("a", 140);
        assert_eq!(limiter.wait("a", 140), Some(35), "capped");
        limiter.success("a");
        assert_eq!(limiter.wait("a", 140), None, "a success resets");
    }
}
