//! Who may go where and when, for administrators: a person's access (display name, home
//! floor, floors, hours, visitor or resident) and visitor passes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{NeedsAdmin, NeedsAdminToChange, PersonName};
use super::error::ErrorBody;
use super::extract::{AdminUser, ApiJson, ApiPath};
use super::{AppState, WebError};
use crate::access::FloorAccess;
use crate::face::gallery::valid_person_name;
use crate::store::{Profile, VisitorPass};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(person_access, change_access))
        .routes(routes!(issue_pass))
        .routes(routes!(revoke_pass))
}

/// A person's access as set, and what it gives now.
#[derive(Serialize, ToSchema)]
struct PersonAccess {
    person: String,
    #[schema(value_type = AccessChange)]
    profile: Profile,
    /// Passes not yet ended, soonest first.
    passes: Vec<VisitorPass>,
    now: FloorAccess,
}

/// A person's whole access: what is left out is cleared.
#[derive(Deserialize, Serialize, ToSchema)]
struct AccessChange {
    /// The name shown ("Ada Lovelace"); none: the enrolment name.
    display_name: Option<String>,
    /// Where a kiosk sends them; a floor they may always reach.
    home_floor: Option<i32>,
    /// The floors they may reach; none: every floor.
    floors: Option<Vec<i32>>,
    /// When they may ride, such as "weekdays 07:00-20:00"; none: at any time.
    #[serde(default)]
    hours: Vec<String>,
    /// A visitor reaches only what a current pass gives.
    #[serde(default)]
    visitor: bool,
}

/// The enrolled person of that name.
fn enrolled(state: &AppState, name: &str) -> Result<String, WebError> {
    if !valid_person_name(name) || !state.gallery()?.people().iter().any(|p| p.name == name) {
        return Err(WebError::NotFound {
            what: format!("an enrolled person called {name:?} was"),
        });
    }
    Ok(name.to_string())
}

async fn access_of(state: &AppState, person: String) -> Result<PersonAccess, WebError> {
    let (store, name) = (state.store.clone(), person.clone());
    let profile = tokio::task::spawn_blocking(move || store.profile(&name)).await??;
    Ok(PersonAccess {
        passes: state.access.passes(&person).await?,
        now: state.access.floor_access(&person).await?,
        profile,
        person,
    })
}

/// A person's access, their passes, and the floors it gives now.
#[utoipa::path(get, path = "/api/v1/admin/people/{name}/access", tag = "access",
    security(("session" = []), ("bearer" = ["admin"])),
    params(PersonName),
    responses(
        (status = 200, description = "their access", body = PersonAccess),
        NeedsAdmin,
        (status = 404, description = "nobody of that name is enrolled", body = ErrorBody),
    ))]
async fn person_access(
    _admin: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<PersonAccess>, WebError> {
    let person = enrolled(&state, &name)?;
    Ok(Json(access_of(&state, person).await?))
}

/// Sets a person's whole access. Audited.
#[utoipa::path(put, path = "/api/v1/admin/people/{name}/access", tag = "access",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(PersonName),
    request_body = AccessChange,
    responses(
        (status = 200, description = "set; their access now", body = PersonAccess),
        (status = 400, description = "not an access change", body = ErrorBody),
        NeedsAdminToChange,
        (status = 404, description = "nobody of that name is enrolled", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "a floor that does not exist, hours that do not read, or a name too long (`bad_access`)", body = ErrorBody),
    ))]
async fn change_access(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(change): ApiJson<AccessChange>,
) -> Result<Json<PersonAccess>, WebError> {
    let person = enrolled(&state, &name)?;
    let profile = Profile {
        display_name: change.display_name,
        home_floor: change.home_floor,
        floors: change.floors,
        hours: change.hours,
        visitor: change.visitor,
    };
    state
        .access
        .change_profile(&person, profile, &admin.person)
        .await?;
    tracing::info!(admin = %admin.person, %person, "access changed");
    Ok(Json(access_of(&state, person).await?))
}

#[derive(Deserialize, ToSchema)]
struct PassRequest {
    floors: Vec<i32>,
    /// When it starts (Unix seconds); by default now.
    valid_from: Option<i64>,
    /// When it ends (Unix seconds) ...
    expires_at: Option<i64>,
    /// ... or how long it lasts from its start, in seconds.
    valid_for_secs: Option<i64>,
}

/// Issues a visitor pass: these floors for this person until it expires. Audited.
#[utoipa::path(post, path = "/api/v1/admin/people/{name}/passes", tag = "access",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(PersonName),
    request_body = PassRequest,
    responses(
        (status = 201, description = "issued", body = VisitorPass),
        (status = 400, description = "not a pass request", body = ErrorBody),
        NeedsAdminToChange,
        (status = 404, description = "nobody of that name is enrolled", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "no floors, a floor that does not exist, no end, an end in the past, or longer than a year (`bad_access`)", body = ErrorBody),
    ))]
async fn issue_pass(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<PassRequest>,
) -> Result<(StatusCode, Json<VisitorPass>), WebError> {
    let person = enrolled(&state, &name)?;
    let start = request.valid_from.unwrap_or_else(|| state.clock.now());
    let expires_at = match (request.expires_at, request.valid_for_secs) {
        (Some(at), None) => at,
        (None, Some(secs)) => start.saturating_add(secs),
        _ => {
            return Err(WebError::Unprocessable(
                "give either expires_at or valid_for_secs".into(),
            ));
        }
    };
    let pass = state
        .access
        .issue_pass(
            &person,
            request.floors,
            request.valid_from,
            expires_at,
            &admin.person,
        )
        .await?;
    tracing::info!(admin = %admin.person, %person, pass = pass.id, "visitor pass issued");
    Ok((StatusCode::CREATED, Json(pass)))
}

#[derive(Serialize, ToSchema)]
struct Revoked {
    revoked: i64,
}

/// Ends a visitor pass now. Audited.
#[utoipa::path(delete, path = "/api/v1/admin/passes/{id}", tag = "access",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(("id" = i64, Path, description = "the pass's id")),
    responses(
        (status = 200, description = "ended", body = Revoked),
        (status = 400, description = "not a pass id", body = ErrorBody),
        NeedsAdminToChange,
        (status = 404, description = "no pass of that id in force", body = ErrorBody),
    ))]
async fn revoke_pass(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Revoked>, WebError> {
    if !state.access.revoke_pass(id, &admin.person).await? {
        return Err(WebError::NotFound {
            what: format!("a pass {id} in force was"),
        });
    }
    tracing::info!(admin = %admin.person, pass = id, "visitor pass revoked");
    Ok(Json(Revoked { revoked: id }))
}
