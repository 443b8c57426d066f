//! A fixed set of worker threads, each owning one [`Engine`] (its own ONNX Runtime sessions,
//! opened once at start-up), fed through a bounded queue. Async callers never block a runtime
//! thread, and a full queue answers `Busy` at once instead of piling up memory.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread;

use sha2::{Digest, Sha256};

use super::engine::{Engine, EngineConfig, FaceAnalysis, Which};
use super::manifest::ModelSet;
use super::{FaceError, Result};

/// Bumped by a change to decoding, preprocessing or alignment that changes embeddings
/// (2: the alignment warp rounds once, to nearest; 3: 16-bit PNGs keep their high byte and
/// CMYK JPEGs are converted by `decode`, at the working size).
const PIPELINE_REVISION: u32 = 3;

type Job = Box<dyn FnOnce(&mut Engine) + Send>;

pub struct EnginePool {
    sender: SyncSender<Job>,
    workers: usize,
    models: ModelSet,
    models_dir: PathBuf,
    config: EngineConfig,
}

/// Below this many photos to embed, opening more engines costs more than it saves.
const BULK_MIN_PHOTOS: usize = 32;

impl EnginePool {
    /// Opens `workers` engines (failing early if a model is missing) and starts their threads.
    pub fn start(
        models: &ModelSet,
        models_dir: &Path,
        config: EngineConfig,
        workers: usize,
        queue: usize,
    ) -> Result<Self> {
        let workers = workers.max(1);
        let engines = (0..workers)
            .map(|_| Engine::load(models, models_dir, config.clone()))
            .collect::<Result<Vec<_>>>()?;
        let (sender, receiver) = mpsc::sync_channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for (index, engine) in engines.into_iter().enumerate() {
            let receiver = Arc::clone(&receiver);
            thread::Builder::new()
                .name(format!("face-engine-{index}"))
                .spawn(move || work(engine, &receiver))
                .map_err(FaceError::EngineThread)?;
        }
        Ok(Self {
            sender,
            workers,
            models: models.clone(),
            models_dir: models_dir.to_path_buf(),
            config,
        })
    }

    /// For embedding `photos` photos at once: one single-threaded engine per core, since
    /// ONNX Runtime's second thread helps one image little and a second engine doubles the work
    /// done (`facelift enroll` of 244 photos on 2 cores: 17.9 photos/s with one engine of two
    /// threads, 28.3 with two of one). None when this pool already has as many engines, there
    /// is too little work to pay for opening them, or they cannot be opened.
    pub fn for_bulk(&self, photos: usize) -> Option<EnginePool> {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        if photos < BULK_MIN_PHOTOS || self.workers >= cores {
            return None;
        }
        let config = EngineConfig {
            threads: 1,
            ..self.config.clone()
        };
        EnginePool::start(&self.models, &self.models_dir, config, cores, cores)
            .inspect_err(|e| tracing::warn!("embedding with one engine: {e}"))
            .ok()
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    /// What cached embeddings are filed under: the model set, and everything before the model
    /// that changes an embedding (the preprocessing settings, the pipeline's revision). A
    /// template cached under other settings is computed again, never mixed in.
    pub fn cache_key(&self) -> String {
        let settings = serde_json::to_string(&self.config.preprocess).unwrap_or_default();
        let digest = Sha256::digest(format!("{PIPELINE_REVISION}\n{settings}"));
        format!("{}/{}", self.models.id, &hex::encode(digest)[..12])
    }

    /// The cosine similarity at which two faces count as one person.
    pub fn threshold(&self) -> f32 {
        self.config.threshold_for(&self.models)
    }

    /// Runs `job` on a free engine; `Busy` when the queue is full.
    pub async fn run<R, F>(&self, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> R + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let span = tracing::Span::current();
        let job: Job = Box::new(move |engine| {
            let _entered = span.enter();
            metrics::gauge!("facelift_engine_queue_depth").decrement(1.0);
            let _ = reply.send(job(engine));
        });
        // counted before it is queued: the job may start (and uncount itself) at once
        let depth = metrics::gauge!("facelift_engine_queue_depth");
        depth.increment(1.0);
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                depth.decrement(1.0);
                metrics::counter!("facelift_engine_busy_total").increment(1);
                return Err(FaceError::Busy);
            }
            Err(TrySendError::Disconnected(_)) => {
                depth.decrement(1.0);
                return Err(stopped());
            }
        }
        answer.await.map_err(|_| stopped())
    }

    /// Runs `job` on a free engine, waiting for room in the queue (for the CLI).
    pub fn run_blocking<R, F>(&self, job: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut Engine) -> R + Send + 'static,
    {
        let (reply, answer) = mpsc::channel();
        let job: Job = Box::new(move |engine| {
            let _ = reply.send(job(engine));
        });
        self.sender.send(job).map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())
    }
}

fn stopped() -> FaceError {
    FaceError::EngineStopped
}

fn work(mut engine: Engine, jobs: &Mutex<Receiver<Job>>) {
    loop {
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        // A panic in one job must not take the engine down with it; the caller sees `stopped`.
        if catch_unwind(AssertUnwindSafe(|| job(&mut engine))).is_err() {
            tracing::error!("a face engine job panicked");
        }
    }
}

impl EnginePool {
    /// Analyses two photos (verify): on two engines at once when the pool has them, else on one,
    /// which finds the second photo's face while it finds the first one's, then embeds both
    /// ([`Engine::analyze_pair`]).
    pub fn analyze_pair_blocking(
        &self,
        a: Vec<u8>,
        b: Vec<u8>,
    ) -> Result<(FaceAnalysis, FaceAnalysis)> {
        if self.workers < 2 {
            let (first, second) = self.run_blocking(move |engine| engine.analyze_pair(&a, &b))?;
            return Ok((first?, second?));
        }
        let mut results = self
            .map_blocking(
                vec![a, b],
                |engine, bytes| engine.analyze_bytes(&bytes, Which::Best),
                &|| {},
            )
            .into_iter();
        let mut next =
            || -> Result<FaceAnalysis> { results.next().unwrap_or_else(|| Err(stopped()))? };
        Ok((next()?, next()?))
    }

    /// [`Self::analyze_pair_blocking`] for async callers.
    pub async fn analyze_pair(
        &self,
        a: Vec<u8>,
        b: Vec<u8>,
    ) -> Result<(FaceAnalysis, FaceAnalysis)> {
        if self.workers < 2 {
            let (first, second) = self.run(move |engine| engine.analyze_pair(&a, &b)).await?;
            return Ok((first?, second?));
        }
        let (first, second) = tokio::join!(
            self.run(move |engine| engine.analyze_bytes(&a, Which::Best)),
            self.run(move |engine| engine.analyze_bytes(&b, Which::Best)),
        );
        Ok((first??, second??))
    }

    /// Runs `f` over every item on all engines at once and returns the results in item order;
    /// `on_done` is called after each item (for progress bars).
    pub fn map_blocking<T, R, F>(
        &self,
        items: Vec<T>,
        f: F,
        on_done: &(dyn Fn() + Sync),
    ) -> Vec<Result<R>>
    where
        T: Send + 'static,
        R: Send + 'static,
        F: Fn(&mut Engine, T) -> R + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let count = items.len();
        let next = Mutex::new(items.into_iter().enumerate());
        let results: Mutex<Vec<Option<Result<R>>>> = Mutex::new((0..count).map(|_| None).collect());
        thread::scope(|scope| {
            for _ in 0..self.workers.min(count) {
                scope.spawn(|| {
                    loop {
                        let item = next.lock().ok().and_then(|mut it| it.next());
                        let Some((index, item)) = item else { break };
                        let f = Arc::clone(&f);
                        let result = self.run_blocking(move |engine| f(engine, item));
                        if let Ok(mut slots) = results.lock() {
                            slots[index] = Some(result);
                        }
                        on_done();
                    }
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(stopped())))
            .collect()
    }
}
