//! The application assembled from `Settings`: the one place that opens the engines and the
//! database, loads the gallery, chooses the lift's device and starts the lift. `facelift serve`,
//! the tests and the benchmarks all build it here, and serve it with [`App::serve`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::task::JoinHandle;

use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::face::gallery::{self, EnrollReport};
use crate::face::{EnginePool, FaceError, ModelSet};
use crate::lift::{Building, LiftError, LinkError, choose_devices};
use crate::store::{Store, StoreError};
use crate::web::{self, AppState, TlsFiles};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("starting the face engine: {0}")]
    Engine(#[source] FaceError),
    #[error("opening the database in {}: {source}", .dir.display())]
    Store {
        dir: std::path::PathBuf,
        source: StoreError,
    },
    #[error("opening the database {url}: {source}")]
    Database { url: String, source: StoreError },
    #[error("reading the devices: {0}")]
    Devices(#[source] StoreError),
    #[error("joining the gallery shared through the database: {0}")]
    SharedGallery(#[source] StoreError),
    #[error("the lift's device: {0}")]
    Device(#[from] LiftError),
    #[error("the lift's link: {0}")]
    Link(#[from] LinkError),
    #[error("loading the gallery {}: {source}", .dir.display())]
    Gallery {
        dir: std::path::PathBuf,
        source: FaceError,
    },
    #[error("the gallery loader stopped: {0}")]
    GalleryTask(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Tls(#[from] web::TlsError),
    #[error("the building's configuration: {0}")]
    Building(String),
    #[error(transparent)]
    Kiosk(#[from] crate::kiosk::KioskError),
}

/// Refuses a building that cannot work: an unknown time zone, cars without names or with the
/// same name, floors or a recall floor outside the building.
pub fn check_building(settings: &Settings) -> Result<(), AppError> {
    let bad = |why: String| Err(AppError::Building(why));
    if let Err(error) = crate::access::hours::time_zone(&settings.building.time_zone) {
        return bad(error.to_string());
    }
    let floors = crate::lift::Floors::of(&settings.lift);
    let cars = settings.cars();
    for (i, car) in cars.iter().enumerate() {
        if !crate::lift::valid_device_name(&car.name) {
            return bad(format!(
                "a lift's name is 1 to 64 letters, digits, - or _, not {:?}",
                car.name
            ));
        }
        if cars[..i].iter().any(|other| other.name == car.name) {
            return bad(format!("two lifts are called {}", car.name));
        }
        let stops = car.floors.as_deref().unwrap_or_default();
        if let Some(floor) = stops.iter().find(|f| !floors.contains(**f)) {
            return bad(format!(
                "lift {} stops at floor {floor}, outside the building ({} to {})",
                car.name, floors.lowest, floors.highest
            ));
        }
        if car.floors.as_ref().is_some_and(Vec::is_empty) {
            return bad(format!("lift {} stops at no floor", car.name));
        }
    }
    let extra = settings.building.public_floors.iter().flatten();
    if let Some(floor) = extra
        .chain(&settings.building.recall_floor)
        .find(|f| !floors.contains(**f))
    {
        return bad(format!(
            "floor {floor} (a public or recall floor) is outside the building ({} to {})",
            floors.lowest, floors.highest
        ));
    }
    Ok(())
}

/// What a caller may bring instead of having it opened from the settings: tests share one
/// engine pool and use an in-memory database and a clock they move.
#[derive(Default)]
pub struct Parts {
    pub pool: Option<Arc<EnginePool>>,
    pub store: Option<Arc<Store>>,
    pub clock: Option<Arc<dyn Clock>>,
    /// Called after each gallery photo is embedded (a progress bar).
    pub on_photo: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// The built application: its state, its routes, how it is served, and its background work
/// (stopped when the app is dropped).
pub struct App {
    pub state: AppState,
    pub tls: Option<TlsFiles>,
    /// What loading the gallery found.
    pub gallery: EnrollReport,
    background: Vec<JoinHandle<()>>,
}

impl Drop for App {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Opens the engines the settings ask for.
pub fn open_engine_pool(settings: &Settings) -> Result<EnginePool, FaceError> {
    let models = ModelSet::by_name(
        settings.model,
        settings.model_output,
        settings.model_precision,
    )?;
    EnginePool::start(
        &models,
        &settings.models_dir,
        settings.engine.clone(),
        settings.workers,
        settings.queue,
    )
}

/// Opens the store: PostgreSQL at `database_url` when it is set, else SQLite in `data_dir`.
pub fn open_store(settings: &Settings) -> Result<Store, AppError> {
    match &settings.database_url {
        Some(url) => Store::open_postgres(&url.0).map_err(|source| AppError::Database {
            url: url.redacted(),
            source,
        }),
        None => Store::open(&settings.data_dir).map_err(|source| AppError::Store {
            dir: settings.data_dir.clone(),
            source,
        }),
    }
}

impl App {
    /// Builds the app from `settings`, opening what `parts` does not bring. Refuses to start on
    /// a device choice that cannot work (a named device not registered, several and none named).
    pub async fn build(settings: Settings, parts: Parts) -> Result<Self, AppError> {
        check_building(&settings)?;
        let pool = match parts.pool {
            Some(pool) => pool,
            None => {
                let mut for_logins = settings.clone();
                // presentation attack detection takes the passive liveness score as a signal
                for_logins.engine.liveness |= settings.pad != crate::config::PadMode::Off;
                Arc::new(open_engine_pool(&for_logins).map_err(AppError::Engine)?)
            }
        };
        let store = match parts.store {
            Some(store) => store,
            None => Arc::new(open_store(&settings)?),
        };
        let clock = parts.clock.unwrap_or_else(|| Arc::new(SystemClock));
        let cars = settings.cars();
        let rows = store.devices().map_err(AppError::Devices)?;
        let devices = choose_devices(&rows, &cars)?;
        for (car, device) in cars.iter().zip(&devices) {
            match device {
                Some(device) => {
                    tracing::info!(lift = %car.name, device = %device.name, link = %device.link, "lift controller");
                }
                None => tracing::warn!(
                    lift = %car.name,
                    "no lift controller for this car: it stays offline (see `facelift device add`)"
                ),
            }
        }
        let tls = web::tls_files(&settings)?;

        let (dir, gallery_pool, gallery_store) = (
            settings.gallery.clone(),
            Arc::clone(&pool),
            Arc::clone(&store),
        );
        let on_photo = parts.on_photo;
        let (gallery, report) = tokio::task::spawn_blocking(move || {
            let progress = || {
                if let Some(on_photo) = &on_photo {
                    on_photo();
                }
            };
            gallery::build(&dir, &gallery_pool, &*gallery_store, &progress)
        })
        .await?
        .map_err(|source| AppError::Gallery {
            dir: settings.gallery.clone(),
            source,
        })?;
        for (path, reason) in &report.skipped {
            tracing::warn!("skipped {}: {reason}", path.display());
        }
        if report.people == 0 {
            tracing::warn!(
                gallery = %settings.gallery.display(),
                "no one is enrolled: every login is \"not recognised\" until someone is; \
                 add the first person with `facelift person add NAME PHOTO... --admin`"
            );
        }

        // several instances on one database: one gallery, shared through it
        let shared_gallery = crate::access::shared_gallery::is_shared(&store);
        let mut gallery = gallery;
        if shared_gallery {
            let (joining, dir, cache_key) = (
                Arc::clone(&store),
                settings.gallery.clone(),
                pool.cache_key(),
            );
            let (joined, kept) = tokio::task::spawn_blocking(move || {
                let joined =
                    crate::access::shared_gallery::join(&mut gallery, &joining, &cache_key, &dir);
                (joined, gallery)
            })
            .await?;
            gallery = kept;
            let joined = joined.map_err(AppError::SharedGallery)?;
            tracing::info!(
                shared = joined.shared,
                adopted = joined.adopted,
                removed = joined.removed,
                "joined the gallery shared by the instances on this database"
            );
        }
        let building = Building::start(
            &settings,
            cars.into_iter().zip(devices).collect(),
            Arc::clone(&store),
            Arc::clone(&clock),
        )?;
        let state = AppState::new(settings, pool, gallery, store, building, clock, &rows)?;
        web::install_metrics();
        let mut background = vec![
            web::spawn_session_cleaner(&state),
            web::spawn_token_cleaner(&state),
        ];
        if shared_gallery {
            background.push(crate::access::shared_gallery::follow(
                Arc::clone(&state.gallery),
                Arc::clone(&state.store),
                state.pool.cache_key(),
                state.settings.gallery.clone(),
            ));
        }
        Ok(Self {
            state,
            tls,
            gallery: report,
            background,
        })
    }

    /// All the routes, with the state.
    pub fn router(&self) -> Router {
        web::build_router(self.state.clone())
    }

    /// Serves on `listener` (HTTPS when the settings ask for it) until `shutdown` completes,
    /// then lets the requests in flight finish, for at most the configured grace period.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let settings = &self.state.settings.web;
        let options = web::ServeOptions {
            tls: self.tls.as_ref(),
            limits: web::ConnectionLimits::from_settings(settings),
            header_timeout: std::time::Duration::from_secs(settings.header_timeout_secs.max(1)),
            grace: std::time::Duration::from_secs(settings.shutdown_grace_secs),
        };
        web::serve(listener, self.router(), options, shutdown).await
    }
}
