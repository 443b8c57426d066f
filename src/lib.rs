//! facelift: log in to a lift with your face.
//!
//! `face` is the recognition engine, `store` the SQLite storage, `web` the HTTP layer over them,
//! `cli` the command line. Dependencies point one way: `web` and `cli` use the others.

pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod face;
pub mod lift;
pub mod store;
pub mod web;

use face::{EnginePool, FaceError, ModelSet};

pub use config::Settings;

/// Opens the engines the settings ask for.
pub fn open_engine_pool(settings: &Settings) -> Result<EnginePool, FaceError> {
    let models = ModelSet::by_name(
        &settings.model,
        settings.model_output.as_deref(),
        settings.model_precision.as_deref(),
    )?;
    EnginePool::start(
        &models,
        &settings.models_dir,
        settings.engine.clone(),
        settings.workers,
        settings.queue,
    )
}
