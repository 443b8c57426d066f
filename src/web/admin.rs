//! Enrollment from the admin page: add a photo of a person (checked for exactly one good
//! face first), and remove a person.

use std::io::Cursor;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{
    ImageRefusals, Jpeg, NeedsAdmin, NeedsAdminToChange, PersonName, PhotoUpload,
};
use super::error::ErrorBody;
use super::extract::{AdminUser, ApiJson, ApiPath};
use super::upload::{Upload, read_files};
use super::{AppState, EngineTicket, WebError};
use crate::access::shared_gallery;
use crate::face::gallery::{Template, save_photo, valid_person_name};
use crate::face::{FaceError, Which};
use crate::store::Disabled;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(remove_person))
        .routes(routes!(set_face_login))
        .routes(routes!(add_photo))
        .routes(routes!(thumbnail))
}

#[derive(Serialize, ToSchema)]
struct Enrolled {
    person: String,
    /// How many photos they are now enrolled with.
    templates: usize,
    /// The same photo was kept before (a double tap): not counted again.
    duplicate: bool,
}

#[derive(Serialize, ToSchema)]
struct Removed {
    removed: String,
}

fn checked_name(name: &str) -> Result<&str, WebError> {
    if valid_person_name(name) {
        Ok(name)
    } else {
        Err(WebError::BadRequest(
            "a name is 1 to 64 letters, digits, - or _".into(),
        ))
    }
}

/// Enrols a photo: kept only if it shows exactly one usable face, then added to the person
/// (created if new).
#[utoipa::path(post, path = "/api/v1/admin/people/{name}/photos", tag = "people",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(PersonName),
    request_body(content = PhotoUpload, content_type = "multipart/form-data"),
    responses(
        (status = 201, description = "enrolled", body = Enrolled),
        NeedsAdminToChange,
        ImageRefusals,
    ))]
async fn add_photo(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    _place: EngineTicket,
    upload: Upload,
) -> Result<(StatusCode, Json<Enrolled>), WebError> {
    let name = checked_name(&name)?.to_string();
    let [photo] = read_files(upload, ["photo"], state.max_body_bytes).await?;
    let bytes = photo.clone();
    let analysis = state
        .pool
        .run(move |engine| engine.analyze_bytes(&bytes, Which::Single))
        .await??;
    let face = analysis.faces.into_iter().next().ok_or(FaceError::NoFace)?;

    let (gallery, store, cache_key, embedding, now) = (
        state.settings.gallery.clone(),
        state.store.clone(),
        state.pool.cache_key(),
        face.embedding.clone(),
        state.clock.now(),
    );
    let person = name.clone();
    let file = tokio::task::spawn_blocking(move || {
        save_photo(
            &gallery,
            &person,
            &photo,
            now,
            (&*store, &cache_key, &embedding),
        )
    })
    .await?
    .map_err(|source| WebError::Files {
        what: "saving the photo",
        source,
    })?;

    let (shared_file, shared_embedding) = (file.clone(), face.embedding.clone());
    let (added, templates) = {
        let mut gallery = state.gallery_mut()?;
        let added = gallery.add_template(
            &name,
            Template {
                file,
                embedding: face.embedding,
            },
        );
        let templates = gallery
            .people()
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| p.templates.len());
        (added, templates)
    };
    // shared after it is in this instance's gallery: this instance hears its own
    // announcement too, and must not take it for the enrolment itself
    if shared_gallery::is_shared(&state.store) {
        let (store, cache_key, person, file, embedding) = (
            state.store.clone(),
            state.pool.cache_key(),
            name.clone(),
            shared_file,
            shared_embedding,
        );
        tokio::task::spawn_blocking(move || {
            shared_gallery::enrolled(&store, &cache_key, &person, &file, &embedding)
        })
        .await??;
    }
    tracing::info!(admin = %admin.person, person = %name, templates, "photo enrolled");
    Ok((
        StatusCode::CREATED,
        Json(Enrolled {
            person: name,
            templates,
            duplicate: !added,
        }),
    ))
}

/// Removes a person and their photos.
#[utoipa::path(delete, path = "/api/v1/admin/people/{name}", tag = "people",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(PersonName),
    responses(
        (status = 200, description = "removed", body = Removed),
        (status = 400, description = "a bad name, or nobody of that name", body = ErrorBody),
        NeedsAdminToChange,
    ))]
async fn remove_person(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<Removed>, WebError> {
    let name = checked_name(&name)?.to_string();
    let removed = state.gallery_mut()?.remove_person(&name);
    let folder = state.settings.gallery.join(&name);
    if folder.is_dir() {
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(folder))
            .await?
            .map_err(|source| WebError::Files {
                what: "removing the photos",
                source,
            })?;
    } else if !removed {
        return Err(WebError::BadRequest(format!(
            "nobody called {name} is enrolled"
        )));
    }
    let (store, person, now) = (state.store.clone(), name.clone(), state.clock.now());
    tokio::task::spawn_blocking(move || {
        if shared_gallery::is_shared(&store) {
            shared_gallery::removed(&store, &person, now)?;
        }
        store.forget_person(&person)
    })
    .await??;
    tracing::info!(admin = %admin.person, person = %name, "person removed; their sessions ended");
    Ok(Json(Removed { removed: name }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct FaceLogin {
    enabled: bool,
}

#[derive(Serialize, ToSchema)]
struct FaceLoginSet {
    person: String,
    enabled: bool,
}

/// Turns a person's face login off (their sessions end at once) or on again (which also
/// lifts a lock after failed attempts in a row).
#[utoipa::path(put, path = "/api/v1/admin/people/{name}/login", tag = "people",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    params(PersonName),
    request_body = FaceLogin,
    responses(
        (status = 200, description = "set", body = FaceLoginSet),
        (status = 400, description = "a bad name, nobody of that name, or not `{\"enabled\": bool}`", body = ErrorBody),
        (status = 415, description = "not JSON", body = ErrorBody),
        (status = 422, description = "not `{\"enabled\": bool}`", body = ErrorBody),
        NeedsAdminToChange,
    ))]
async fn set_face_login(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(request): ApiJson<FaceLogin>,
) -> Result<Json<FaceLoginSet>, WebError> {
    let name = checked_name(&name)?.to_string();
    if !state.gallery()?.people().iter().any(|p| p.name == name) {
        return Err(WebError::BadRequest(format!(
            "nobody called {name} is enrolled"
        )));
    }
    let disabled = (!request.enabled).then_some(Disabled::ByAdmin);
    let (store, person) = (state.store.clone(), name.clone());
    tokio::task::spawn_blocking(move || store.set_disabled(&person, disabled)).await??;
    tracing::info!(admin = %admin.person, person = %name, enabled = request.enabled, "face login set");
    Ok(Json(FaceLoginSet {
        person: name,
        enabled: request.enabled,
    }))
}

/// The person's first photo, 96 pixels high.
#[utoipa::path(get, path = "/api/v1/admin/people/{name}/thumbnail", tag = "people",
    security(("session" = []), ("bearer" = ["admin"])),
    params(PersonName),
    responses(
        (status = 200, description = "a JPEG", content_type = "image/jpeg", body = Jpeg),
        (status = 400, description = "a bad name, or nobody of that name", body = ErrorBody),
        NeedsAdmin,
    ))]
async fn thumbnail(
    AdminUser(_): AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, WebError> {
    let name = checked_name(&name)?.to_string();
    let file = state
        .gallery()?
        .people()
        .iter()
        .find(|p| p.name == name)
        .and_then(|p| p.templates.first().map(|t| t.file.clone()))
        .ok_or_else(|| WebError::BadRequest(format!("nobody called {name} is enrolled")))?;
    let limits = crate::face::DecodeLimits {
        max_pixels: state.settings.engine.max_pixels,
    };
    let jpeg = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, FaceError> {
        let bytes = std::fs::read(&file).map_err(|source| FaceError::Io {
            path: file.to_path_buf(),
            source,
        })?;
        let image = crate::face::decode::decode_for_size(&bytes, limits, 192)?;
        let thumb =
            image::imageops::thumbnail(&image, image.width() * 96 / image.height().max(1), 96);
        let mut out = Cursor::new(Vec::new());
        thumb
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .map_err(|e| FaceError::Corrupt(e.to_string()))?;
        Ok(out.into_inner())
    })
    .await??;
    Ok(([(header::CONTENT_TYPE, "image/jpeg")], jpeg).into_response())
}
