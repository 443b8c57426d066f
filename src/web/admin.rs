//! Enrollment from the admin page: add a photo of a person (checked for exactly one good
//! face first), and remove a person.

use std::io::Cursor;

use axum::extract::{Multipart, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use super::extract::AdminUser;
use super::upload::read_files;
use super::{AppState, WebError};
use crate::face::gallery::{Template, save_photo, valid_person_name};
use crate::face::{FaceError, Which};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/people/{name}", delete(remove_person))
        .route("/api/v1/admin/people/{name}/photos", post(add_photo))
        .route("/api/v1/admin/people/{name}/thumbnail", get(thumbnail))
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

/// `POST /api/v1/admin/people/{name}/photos`, multipart field `photo`: keeps the photo only if
/// it shows exactly one usable face, then adds it to the person (creating them if new).
async fn add_photo(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
    multipart: Multipart,
) -> Result<(StatusCode, Json<Value>), WebError> {
    let name = checked_name(&name)?.to_string();
    let [photo] = read_files(multipart, ["photo"], state.max_body_bytes).await?;
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

    let templates = {
        let mut gallery = state.gallery_mut()?;
        gallery.add_template(
            &name,
            Template {
                file,
                embedding: face.embedding,
            },
        );
        gallery
            .people
            .iter()
            .find(|p| p.name == name)
            .map_or(0, |p| p.templates.len())
    };
    tracing::info!(admin = %admin.person, person = %name, templates, "photo enrolled");
    Ok((
        StatusCode::CREATED,
        Json(json!({ "person": name, "templates": templates })),
    ))
}

/// `DELETE /api/v1/admin/people/{name}`: removes the person and their photos.
async fn remove_person(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, WebError> {
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
    tracing::info!(admin = %admin.person, person = %name, "person removed");
    Ok(Json(json!({ "removed": name })))
}

/// `GET /api/v1/admin/people/{name}/thumbnail`: the person's first photo, 96 pixels high.
async fn thumbnail(
    AdminUser(_): AdminUser,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let name = checked_name(&name)?.to_string();
    let file = state
        .gallery()?
        .people
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
