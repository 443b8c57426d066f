//! One answer to "are these two photos the same person?", for the command line and the API.

use serde::Serialize;

use super::{FaceAnalysis, FaceError, cosine};

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub similarity: f32,
    pub verified: bool,
    pub threshold: f32,
    /// DeepFace's terms: cosine distance and its threshold
    pub distance: f32,
    pub distance_threshold: f32,
    pub model: String,
    /// faces seen in each photo (the best one was compared)
    pub faces: [usize; 2],
}

impl Verification {
    /// Compares the best faces of two analysed photos; `NoFace` when either has none.
    pub fn of(
        first: &FaceAnalysis,
        second: &FaceAnalysis,
        threshold: f32,
        model: &str,
    ) -> Result<Self, FaceError> {
        let (Some(x), Some(y)) = (first.best(), second.best()) else {
            return Err(FaceError::NoFace);
        };
        let similarity = cosine(&x.embedding, &y.embedding);
        Ok(Self {
            similarity,
            verified: similarity >= threshold,
            threshold,
            distance: 1.0 - similarity,
            distance_threshold: 1.0 - threshold,
            model: model.to_string(),
            faces: [first.faces_seen, second.faces_seen],
        })
    }
}
