//! Bearer tokens: a logged-in person (from their session) or a registered kiosk (with its
//! key) gets a token pair; a refresh token gets the next pair; either token can be revoked.
//! Administrators list, rotate and withdraw the signing keys.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ErrorBody;
use super::extract::{AdminUser, ApiJson, ApiPath, CurrentUser};
use super::{AppState, WebError};
use crate::tokens::{Issued, KeyInfo, Scope, Scopes, Subject, SubjectKind};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(issue))
        .routes(routes!(revoke))
        .routes(routes!(keys, rotate))
        .routes(routes!(withdraw))
}

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum GrantType {
    /// the logged-in person of this session (with its CSRF token)
    #[default]
    Session,
    /// a registered kiosk: `client_id` "kiosk:NAME", `client_secret` its key
    ClientCredentials,
    /// the next pair for a `refresh_token`
    RefreshToken,
}

#[derive(Deserialize, ToSchema)]
struct TokenRequest {
    #[serde(default)]
    grant_type: GrantType,
    /// Space-separated: lift:read, lift:move, admin. By default "lift:read lift:move" (a
    /// refresh: the grant's scopes). admin is given only when asked, to an administrator.
    scope: Option<String>,
    refresh_token: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

impl std::fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

const DEFAULT_SCOPES: [Scope; 2] = [Scope::LiftRead, Scope::LiftMove];

/// A token pair. An access token (a JWT, default 10 minutes) goes in `Authorization: Bearer`;
/// the refresh token is good for one refresh, and using it twice revokes the grant.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens",
    security(("session" = [], "csrf" = [])),
    request_body = TokenRequest,
    responses(
        (status = 201, description = "the token pair", body = Issued),
        (status = 400, description = "a bad request, an unknown scope or refresh token", body = ErrorBody),
        (status = 401, description = "not logged in, not the kiosk's key, or a revoked or expired refresh token", body = ErrorBody),
        (status = 403, description = "a scope the subject may not have, or a cross-site request", body = ErrorBody),
        (status = 404, description = "no kiosk of that name", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "not a token request", body = ErrorBody),
    ))]
async fn issue(
    user: Result<CurrentUser, WebError>,
    State(state): State<AppState>,
    ApiJson(request): ApiJson<TokenRequest>,
) -> Result<(StatusCode, Json<Issued>), WebError> {
    let asked = request.scope.as_deref().map(Scopes::parse).transpose()?;
    let issued = match request.grant_type {
        GrantType::Session => {
            let user = user?;
            // a token does not mint tokens: only a session (or a refresh) does
            if user.token.is_some() {
                return Err(WebError::BadRequest(
                    "a session gets tokens; with a token, refresh it instead".into(),
                ));
            }
            let allowed = allowed_for_person(user.admin);
            let scopes = asked
                .unwrap_or(Scopes::of(&DEFAULT_SCOPES))
                .within(allowed)?;
            let subject = Subject {
                kind: SubjectKind::Person,
                name: user.person,
            };
            state.tokens.issue(subject, scopes).await?
        }
        GrantType::ClientCredentials => {
            let (Some(id), Some(secret)) = (&request.client_id, &request.client_secret) else {
                return Err(WebError::BadRequest(
                    "client_credentials needs client_id and client_secret".into(),
                ));
            };
            let kiosk = id.strip_prefix("kiosk:").unwrap_or(id);
            state.kiosks.settings(kiosk)?;
            if !state.kiosks.key_matches(kiosk, secret) {
                return Err(WebError::KioskNotPaired);
            }
            let scopes = asked
                .unwrap_or(Scopes::of(&DEFAULT_SCOPES))
                .within(Scopes::of(&DEFAULT_SCOPES))?;
            let subject = Subject {
                kind: SubjectKind::Kiosk,
                name: kiosk.to_string(),
            };
            state.tokens.issue(subject, scopes).await?
        }
        GrantType::RefreshToken => {
            let Some(token) = &request.refresh_token else {
                return Err(WebError::BadRequest(
                    "refresh_token needs the refresh_token".into(),
                ));
            };
            let grant = state.tokens.redeem(token).await?;
            // what the subject may have is read now: a person removed, disabled or no longer
            // an administrator does not keep what they had
            let allowed = match grant.subject.kind {
                SubjectKind::Person => match state.access.rights(&grant.subject.name).await? {
                    crate::access::Rights::Person { admin } => allowed_for_person(admin),
                    crate::access::Rights::Ended => return Err(WebError::AccessEnded),
                },
                SubjectKind::Kiosk => {
                    state.kiosks.settings(&grant.subject.name)?;
                    Scopes::of(&DEFAULT_SCOPES)
                }
            };
            let scopes = asked.unwrap_or(grant.scopes).within(allowed)?;
            state.tokens.refreshed(grant, scopes).await?
        }
    };
    tracing::info!(grant = ?request.grant_type, scope = %issued.scope, "token issued");
    Ok((StatusCode::CREATED, Json(issued)))
}

fn allowed_for_person(admin: bool) -> Scopes {
    if admin {
        Scopes::of(&[Scope::LiftRead, Scope::LiftMove, Scope::Admin])
    } else {
        Scopes::of(&DEFAULT_SCOPES)
    }
}

#[derive(Deserialize, ToSchema)]
struct RevokeRequest {
    /// an access token (revokes it) or a refresh token (revokes its whole grant)
    token: String,
}

#[derive(Serialize, ToSchema)]
struct TokenRevoked {
    /// whether the token was one of ours
    revoked: bool,
}

/// Revokes a token: holding it is the right to revoke it (RFC 7009).
#[utoipa::path(post, path = "/api/v1/tokens/revoke", tag = "tokens",
    request_body = RevokeRequest,
    responses(
        (status = 200, description = "done (or not one of ours)", body = TokenRevoked),
        (status = 400, description = "not JSON", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "not a revoke request", body = ErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RevokeRequest>,
) -> Result<Json<TokenRevoked>, WebError> {
    let revoked = state.tokens.revoke(&request.token).await?;
    tracing::info!(revoked, "token revocation");
    Ok(Json(TokenRevoked { revoked }))
}

/// The signing keys: the one that signs, and replaced ones still verifying.
#[utoipa::path(get, path = "/api/v1/admin/token-keys", tag = "tokens",
    security(("session" = []), ("bearer" = ["admin"])),
    responses(
        (status = 200, description = "the keys, the signing one first", body = [KeyInfo]),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not an administrator", body = ErrorBody),
    ))]
async fn keys(
    _admin: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<Vec<KeyInfo>>, WebError> {
    Ok(Json(state.tokens.keys().await?))
}

/// A new signing key. Tokens signed by the old one keep working until they expire.
#[utoipa::path(post, path = "/api/v1/admin/token-keys", tag = "tokens",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    responses(
        (status = 201, description = "the new key", body = KeyInfo),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not an administrator", body = ErrorBody),
    ))]
async fn rotate(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<KeyInfo>), WebError> {
    let key = state.tokens.rotate(&admin.person).await?;
    tracing::info!(by = %admin.person, kid = %key.kid, "token signing key rotated");
    Ok((StatusCode::CREATED, Json(key)))
}

/// Withdraws a key (one that leaked): every token it signed is refused at once.
#[utoipa::path(delete, path = "/api/v1/admin/token-keys/{kid}", tag = "tokens",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(("kid" = String, Path, description = "the key's id")),
    responses(
        (status = 204, description = "withdrawn"),
        (status = 401, description = "not logged in", body = ErrorBody),
        (status = 403, description = "not an administrator", body = ErrorBody),
        (status = 404, description = "no such key", body = ErrorBody),
    ))]
async fn withdraw(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(kid): ApiPath<String>,
) -> Result<StatusCode, WebError> {
    state.tokens.withdraw(&kid, &admin.person).await?;
    tracing::info!(by = %admin.person, %kid, "token signing key withdrawn");
    Ok(StatusCode::NO_CONTENT)
}
