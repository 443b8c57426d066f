//! Loading ONNX Runtime (dynamically, from the library PyPI's wheel carries) and opening sessions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;

use super::{FaceError, Result};

pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";
/// Where `scripts/setup` puts the library, relative to the project root.
pub const ORT_PROJECT_DIR: &str = ".deps/onnxruntime";

static RUNTIME: OnceLock<std::result::Result<ort::environment::Environment, Arc<FaceError>>> =
    OnceLock::new();

/// `ORT_DYLIB_PATH` if set, else the project's `.deps/onnxruntime/` (looked up from the working
/// directory and from the executable's location), else an error that says how to fix it.
pub fn find_library() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(FaceError::RuntimePathMissing(path))
        };
    }
    let mut roots: Vec<PathBuf> = std::env::current_dir().into_iter().collect();
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
        .iter()
        .map(|root| root.join(ORT_PROJECT_DIR).join(ORT_LIBRARY))
        .find(|candidate| candidate.is_file())
        .ok_or(FaceError::RuntimeNotFound)
}

/// Loads the library and creates the process-wide environment, once.
pub fn environment() -> Result<&'static ort::environment::Environment> {
    let runtime = RUNTIME.get_or_init(|| {
        let path = find_library().map_err(Arc::new)?;
        let builder = ort::init_from(&path).map_err(|source| {
            Arc::new(FaceError::RuntimeLoad {
                path: path.clone(),
                source,
            })
        })?;
        builder
            .with_name("facelift")
            .build()
            .map_err(|e| Arc::new(FaceError::Runtime(e)))
    });
    runtime
        .as_ref()
        .map_err(|cause| FaceError::RuntimeUnavailable(Arc::clone(cause)))
}

/// Opens a session with ONNX Runtime's own defaults, as a plain user of it would: the
/// baseline the benchmark compares against.
pub fn open_plain_session(path: &Path) -> Result<Session> {
    let env = environment()?;
    Ok(Session::builder(env)?.commit_from_file(path)?)
}

/// Opens a session tuned for small models on few cores: no spinning threads (spinning doubled
/// a pipeline's time on 2 cores), all graph optimisations.
pub fn open_session(path: &Path, intra_threads: usize) -> Result<Session> {
    let env = environment()?;
    let session = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?
        .with_intra_threads(intra_threads.max(1))
        .map_err(ort::Error::from)?
        .with_inter_threads(1)
        .map_err(ort::Error::from)?
        .with_intra_op_spinning(false)
        .map_err(ort::Error::from)?
        .with_inter_op_spinning(false)
        .map_err(ort::Error::from)?
        .commit_from_file(path)?;
    Ok(session)
}
