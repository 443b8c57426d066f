//! The face engine: decode, preprocess, detect, landmarks, align, embed, match.
//!
//! Nothing here knows about HTTP or storage; the web layer and the CLI drive it through
//! [`EnginePool`], which keeps inference off the async threads.

pub mod align;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod eval;
pub mod gallery;
pub mod int8;
pub mod landmarks;
pub mod manifest;
pub mod pool;
pub mod preprocess;
pub mod resize;
pub mod runtime;

pub use decode::DecodeLimits;
pub use engine::{Engine, EngineConfig, Face, FaceAnalysis, Which};
pub use gallery::{Gallery, MatchResult};
pub use manifest::{ModelSet, Precision, VggOutput};
pub use pool::EnginePool;
pub use preprocess::Preprocess;

/// Everything that can go wrong between an uploaded image and an embedding.
#[derive(Debug, thiserror::Error)]
pub enum FaceError {
    #[error("the upload is empty")]
    Empty,
    #[error("not an image: facelift reads JPEG, PNG and WebP")]
    NotAnImage,
    #[error("the image is truncated or corrupt ({0})")]
    Corrupt(String),
    #[error("the image is {width}x{height} pixels, over the limit of {limit} pixels")]
    TooLarge { width: u32, height: u32, limit: u64 },
    #[error("no face found in the image")]
    NoFace,
    #[error("the face is too small ({size} pixels high, at least {min} needed): come closer")]
    FaceTooSmall { size: u32, min: u32 },
    #[error("{count} faces found where one was expected")]
    SeveralFaces { count: usize },
    #[error("the face engine is busy, try again in a moment")]
    Busy,
    #[error("model file problem: {0}")]
    Model(String),
    #[error("ONNX Runtime: {0}")]
    Runtime(#[from] ort::Error),
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = FaceError> = std::result::Result<T, E>;

/// An L2-normalised embedding.
pub type Embedding = Vec<f32>;

/// Cosine similarity of two L2-normalised vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Scales a vector to unit length (a zero vector stays zero).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}
