//! The face engine: decode, preprocess, detect, landmarks, align, embed, match.
//!
//! Nothing here knows about HTTP or storage; the web layer and the CLI drive it through
//! [`EnginePool`], which keeps inference off the async threads.

pub mod align;
pub mod attacks;
pub mod decode;
pub mod detect;
pub mod engine;
pub mod eval;
pub mod gallery;
pub mod index;
pub mod int8;
pub mod landmarks;
pub mod manifest;
pub mod pad;
pub mod pool;
pub mod preprocess;
pub mod resize;
pub mod runtime;
pub mod synthetic;
pub mod verify;

pub use decode::DecodeLimits;
pub use engine::{Engine, EngineConfig, Face, FaceAnalysis, Which};
pub use gallery::{Gallery, MatchResult};
pub use manifest::{ModelName, ModelSet, Precision, VggOutput};

pub use pool::EnginePool;
pub use preprocess::Preprocess;
use std::path::PathBuf;
use std::sync::Arc;
pub use verify::Verification;

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
    #[error("the {model} model set has no choice of {option}")]
    NotForThisModel {
        model: ModelName,
        option: &'static str,
    },
    #[error("{} is missing; {how_to_make}", path.display())]
    ModelMissing {
        path: PathBuf,
        how_to_make: &'static str,
    },
    #[error(
        "{} has sha256 {found}, expected {expected}; run scripts/setup to fetch it again",
        path.display()
    )]
    ModelChecksum {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("the model has no output {0:?}")]
    NoSuchOutput(String),
    #[error(
        "the embedding model gave {values} values for {faces} face(s), its manifest says {size} each"
    )]
    EmbeddingSize {
        values: usize,
        faces: usize,
        size: usize,
    },
    #[error("cannot resize the image: {0}")]
    Resize(#[from] fast_image_resize::ResizeError),
    #[error("cannot batch the faces: {0}")]
    Batch(#[from] ndarray::ShapeError),
    #[error("the int8 model cannot be used here: {0}")]
    Int8(String),
    #[error(
        "ONNX Runtime not found: run scripts/setup (it puts {} in {}/), or set ORT_DYLIB_PATH \
         to a libonnxruntime.so 1.31",
        runtime::ORT_LIBRARY,
        runtime::ORT_PROJECT_DIR
    )]
    RuntimeNotFound,
    #[error("ORT_DYLIB_PATH points at {}, which does not exist", .0.display())]
    RuntimePathMissing(PathBuf),
    #[error("loading ONNX Runtime from {}: {source}", path.display())]
    RuntimeLoad {
        path: PathBuf,
        source: ort::LoadDynamicError,
    },
    #[error("ONNX Runtime could not be loaded: {0}")]
    RuntimeUnavailable(#[source] Arc<FaceError>),
    #[error("ONNX Runtime: {0}")]
    Runtime(#[from] ort::Error),
    #[error("cannot start a face engine thread: {0}")]
    EngineThread(#[source] std::io::Error),
    #[error("the face engine stopped while handling this image")]
    EngineStopped,
    #[error("the face engine failed on this image (it panicked; see the log)")]
    EnginePanicked,
    #[error("the gallery cannot be read: a change to it failed half-way")]
    GalleryUnavailable,
    #[error("matching against the gallery failed (it panicked; see the log)")]
    MatchPanicked,
    #[error("reading {}: {source}", path.display())]
    Io {
        path: PathBuf,
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
