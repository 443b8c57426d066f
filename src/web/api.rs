//! The JSON API.

use axum::extract::{Multipart, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::extract::{AdminUser, CurrentUser};
use super::upload::read_files;
use super::{AppState, WebError};
use crate::face::gallery::{Candidate, MatchResult};
use crate::face::{Verification, Which};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(health))
        .route("/api/v1/people", get(people))
        .route("/api/v1/identify", post(identify))
        .route("/api/v1/verify", post(verify))
}

async fn health(State(state): State<AppState>) -> Result<Json<Value>, WebError> {
    let (people, templates) = {
        let gallery = state.gallery()?;
        (gallery.people.len(), gallery.template_count())
    };
    Ok(Json(json!({
        "status": "ok",
        "model": state.pool.models().id,
        "people": people,
        "templates": templates,
    })))
}

async fn people(_admin: AdminUser, State(state): State<AppState>) -> Result<Json<Value>, WebError> {
    let gallery = state.gallery()?;
    let people: Vec<Value> = gallery
        .people
        .iter()
        .map(|p| json!({ "name": p.name, "templates": p.templates.len() }))
        .collect();
    Ok(Json(json!({ "people": people })))
}

#[derive(Serialize)]
struct IdentifiedFace {
    #[serde(rename = "box")]
    bbox: [f32; 4],
    person: Option<String>,
    similarity: Option<f32>,
    runner_up: Option<Candidate>,
}

/// `frame`: an image; answers every face in it with who it is (or null).
async fn identify(
    _admin: AdminUser,
    State(state): State<AppState>,
    multipart: Multipart,
) -> Result<Json<Value>, WebError> {
    let [frame] = read_files(multipart, ["frame"], state.max_body_bytes).await?;
    let analysis = state
        .pool
        .run(move |engine| engine.analyze_bytes(&frame, Which::All))
        .await??;
    let threshold = state.pool.threshold();
    let gallery = state.gallery()?;
    let faces: Vec<IdentifiedFace> = analysis
        .faces
        .iter()
        .map(|face| {
            let MatchResult {
                person,
                best,
                runner_up,
                ..
            } = gallery.best_match(&face.embedding, threshold);
            IdentifiedFace {
                bbox: face.bbox,
                person,
                similarity: best.map(|b| b.similarity),
                runner_up,
            }
        })
        .collect();
    Ok(Json(
        json!({ "faces_seen": analysis.faces_seen, "faces": faces }),
    ))
}

/// `a` and `b`: two images; answers whether their best faces are one person.
async fn verify(
    _user: CurrentUser,
    State(state): State<AppState>,
    multipart: Multipart,
) -> Result<Json<Verification>, WebError> {
    let [a, b] = read_files(multipart, ["a", "b"], state.max_body_bytes).await?;
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
