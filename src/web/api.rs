//! The JSON API: health, the enrolled people, identify and verify.

use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::described::{
    FrameUpload, ImageRefusals, NeedsAdmin, NeedsAdminToChange, NeedsSessionToChange, PairUpload,
};
use super::error::ErrorBody;
use super::extract::{AdminUser, CurrentUser};
use super::upload::{Upload, read_files};
use super::{AppState, EngineTicket, WebError};
use crate::face::gallery::{Candidate, MatchResult, match_probes};
use crate::face::{Verification, Which};
use crate::store::Disabled;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(people))
        .routes(routes!(identify))
        .routes(routes!(verify))
}

#[derive(Serialize, ToSchema)]
struct Health {
    #[schema(example = "ok")]
    status: &'static str,
    /// The face model set in use.
    model: String,
    people: usize,
    templates: usize,
    /// The lifts this instance drives now: with several instances on one database, one
    /// drives each car.
    drives: Vec<String>,
}

/// Whether the server can answer, and with which model and gallery.
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses(
        (status = 200, description = "serving", body = Health),
        (status = 500, description = "the gallery is unusable", body = ErrorBody),
    ))]
async fn health(State(state): State<AppState>) -> Result<Json<Health>, WebError> {
    let gallery = state.gallery()?;
    Ok(Json(Health {
        status: "ok",
        model: state.pool.models().id.clone(),
        people: gallery.people().len(),
        templates: gallery.template_count(),
        drives: state
            .lifts
            .cars()
            .iter()
            .filter(|car| car.drives())
            .map(|car| car.name().to_string())
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
struct People {
    people: Vec<EnrolledPerson>,
}

#[derive(Serialize, ToSchema)]
struct EnrolledPerson {
    name: String,
    /// How many photos they are enrolled with.
    templates: usize,
    /// Why their face login is off (`by_admin`, `after_failures`); absent when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    face_login_off: Option<&'static str>,
}

/// The enrolled people (administrators).
#[utoipa::path(get, path = "/api/v1/people", tag = "people", security(("session" = []), ("bearer" = ["admin"])),
    responses(
        (status = 200, description = "everyone enrolled", body = People),
        NeedsAdmin,
    ))]
async fn people(
    _admin: AdminUser,
    State(state): State<AppState>,
) -> Result<Json<People>, WebError> {
    let store = state.store.clone();
    let off: HashMap<String, Disabled> =
        tokio::task::spawn_blocking(move || store.disabled_people())
            .await??
            .into_iter()
            .collect();
    let gallery = state.gallery()?;
    let people = gallery
        .people()
        .iter()
        .map(|p| EnrolledPerson {
            name: p.name.clone(),
            templates: p.templates.len(),
            face_login_off: off.get(&p.name).map(|d| d.as_str()),
        })
        .collect();
    Ok(Json(People { people }))
}

#[derive(Serialize, ToSchema)]
struct Identified {
    /// Faces found, including any too small to identify.
    faces_seen: usize,
    faces: Vec<IdentifiedFace>,
}

#[derive(Serialize, ToSchema)]
struct IdentifiedFace {
    /// left, top, right, bottom, in the photo's pixels
    #[serde(rename = "box")]
    bbox: [f32; 4],
    /// The person, when the best match reaches the threshold.
    person: Option<String>,
    similarity: Option<f32>,
    runner_up: Option<Candidate>,
}

/// Every face in a photo, with who it is (administrators).
#[utoipa::path(post, path = "/api/v1/identify", tag = "faces",
    security(("session" = [], "csrf" = []), ("bearer" = ["admin"])),
    request_body(content = FrameUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "the faces and who they are", body = Identified),
        NeedsAdminToChange,
        ImageRefusals,
    ))]
async fn identify(
    _admin: AdminUser,
    State(state): State<AppState>,
    _place: EngineTicket,
    upload: Upload,
) -> Result<Json<Identified>, WebError> {
    let [frame] = read_files(upload, ["frame"], state.max_body_bytes).await?;
    let analysis = state
        .pool
        .run(move |engine| engine.analyze_bytes(&frame, Which::All))
        .await??;
    let threshold = state.pool.threshold();
    let probes = analysis.faces.iter().map(|f| f.embedding.clone()).collect();
    let matches = match_probes(&state.gallery, probes, threshold).await?;
    let faces = analysis
        .faces
        .iter()
        .zip(matches)
        .map(|(face, found)| {
            let MatchResult {
                person,
                best,
                runner_up,
                ..
            } = found;
            IdentifiedFace {
                bbox: face.bbox,
                person,
                similarity: best.map(|b| b.similarity),
                runner_up,
            }
        })
        .collect();
    Ok(Json(Identified {
        faces_seen: analysis.faces_seen,
        faces,
    }))
}

/// Whether the best faces of two photos are one person.
#[utoipa::path(post, path = "/api/v1/verify", tag = "faces",
    security(("session" = [], "csrf" = []), ("bearer" = ["lift:move"])),
    request_body(content = PairUpload, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "the comparison", body = Verification),
        NeedsSessionToChange,
        ImageRefusals,
    ))]
async fn verify(
    _user: CurrentUser,
    State(state): State<AppState>,
    _place: EngineTicket,
    upload: Upload,
) -> Result<Json<Verification>, WebError> {
    let [a, b] = read_files(upload, ["a", "b"], state.max_body_bytes).await?;
    // on two engines at once when the pool has two workers
    let (first, second) = state.pool.analyze_pair(a, b).await?;
    let verification = Verification::of(
        &first,
        &second,
        state.pool.threshold(),
        &state.pool.models().id,
    )?;
    Ok(Json(verification))
}
