//! `facelift bench`: the median time of every stage next to the raw ONNX Runtime time of each
//! model, all in one run, so the ratio holds even on a noisy shared machine.

use std::fmt::{self, Display};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::Output;
use crate::config::Settings;
use crate::face::detect::detector_input;
use crate::face::engine::embedder_input;
use crate::face::gallery::{Gallery, Person, Template};
use crate::face::landmarks::{landmark_crop, landmark_input};
use crate::face::runtime::open_plain_session;
use crate::face::synthetic::Xorshift;
use crate::face::{Engine, EnginePool, ModelSet, Which, cosine};
use ort::value::TensorRef;

/// The frame used when none is given: a 1280x720 webcam-like picture.
pub const DEFAULT_FRAME: &str = "../shared/data/frames/webcam-720p-img4.jpg";
/// The second photo of the timed verify when none is given: another webcam frame, as the
/// product verifies (DeepFace's large photos are timed with `--image` and `--second`).
pub const DEFAULT_SECOND: &str = "../shared/data/frames/webcam-720p-img13.jpg";

/// How long a session with ONNX Runtime's defaults keeps a worker thread spinning after a run
/// (about 70 ms of CPU time measured here), with a margin. Timed right before verify, as it
/// used to be, that spinning took one of two cores from verify's first 70 ms.
const PLAIN_SPIN: std::time::Duration = std::time::Duration::from_millis(120);

fn settle_after_plain_session() {
    let start = Instant::now();
    while start.elapsed() < PLAIN_SPIN {
        std::hint::spin_loop();
    }
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// default: a 1280x720 webcam frame from shared/data/frames
    #[arg(long)]
    image: Option<PathBuf>,
    /// The second photo of the timed verify (default: a second 1280x720 webcam frame)
    #[arg(long)]
    second: Option<PathBuf>,
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    #[command(flatten)]
    output: Output,
}

/// Every step the benchmark times, each iteration, in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    RawDetect,
    RawLandmarks,
    RawEmbed,
    Decode,
    Preprocess,
    Detect,
    Landmarks,
    Align,
    Embed,
    Match,
    EndToEnd,
    VerifyTwoPhotos,
    VerifyOneAfterOther,
    PlainEmbed,
    PlainFp32Embed,
}

impl Step {
    const COUNT: usize = Step::PlainFp32Embed as usize + 1;
}

/// The times of each step, one per counted iteration.
struct Samples([Vec<f64>; Step::COUNT]);

impl Samples {
    fn new() -> Self {
        Self(std::array::from_fn(|_| Vec::new()))
    }

    fn push(&mut self, step: Step, ms: f64) {
        self.0[step as usize].push(ms);
    }

    /// The median of a step that was timed; None for one that was not.
    fn median(&mut self, step: Step) -> Option<f64> {
        let values = &mut self.0[step as usize];
        (!values.is_empty()).then(|| median_of(values))
    }

    fn median_or_nan(&mut self, step: Step) -> f64 {
        self.median(step).unwrap_or(f64::NAN)
    }
}

/// The median of values known not to be empty.
fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A gallery of `people` x 5 random unit templates, to time matching at a realistic size.
fn synthetic_gallery(people: usize, dimensions: usize) -> Gallery {
    let mut random = Xorshift::new(0x2545_F491_4F6C_DD1D);
    let people = (0..people)
        .map(|i| Person {
            name: format!("person{i}"),
            templates: (0..5)
                .map(|_| Template {
                    file: PathBuf::new(),
                    embedding: random.unit(dimensions),
                })
                .collect(),
        })
        .collect();
    Gallery::new("synthetic", people)
}

pub fn bench(settings: &Settings, args: BenchArgs) -> Result<()> {
    let mut fixture = Fixture::prepare(settings, &args)?;
    // Every iteration times every step once, in turn, so that the raw models and the pipeline
    // share the machine's ups and downs; the ratio is taken per iteration, then its median.
    let n = args.iterations.max(1);
    let mut samples = Samples::new();
    let mut ratios = Ratios::default();
    // iteration 0 warms up and is not counted
    fixture.time_every_step(&mut Samples::new())?;
    for _ in 0..n {
        let times = fixture.time_every_step(&mut samples)?;
        ratios.push(&times);
    }
    let report = fixture.report(settings, n, &mut samples, &mut ratios);
    args.output.print(&report)
}

/// The inputs, the intermediate results and the engines every step is timed on.
struct Fixture {
    image: PathBuf,
    second_path: PathBuf,
    bytes: Vec<u8>,
    second: Vec<u8>,
    size: (u32, u32),
    models: ModelSet,
    full_precision: ModelSet,
    engine: Engine,
    pool: EnginePool,
    gallery: Gallery,
    threshold: f32,
    decoded: image::RgbImage,
    prepared: crate::face::preprocess::Prepared,
    face: crate::face::detect::Detection,
    five: [crate::face::landmarks::Point; 5],
    aligned: image::RgbImage,
    embedding: Vec<f32>,
    detect_in: ndarray::Array4<f32>,
    landmark_in: ndarray::Array4<f32>,
    embed_in: ndarray::Array4<f32>,
    /// the baseline: the same embedding model in a session with ONNX Runtime's defaults
    plain: ort::session::Session,
    /// for int8 VGG-Face, also the fp32 model it was made from: the speed-up is against that
    plain_fp32: Option<ort::session::Session>,
}

/// The times of one iteration that the ratios are taken from, in ms.
struct IterationTimes {
    raw: f64,
    whole: f64,
    verify: f64,
    one_after_other: f64,
    plain_forward: f64,
    plain_fp32_forward: f64,
}

/// The per-iteration ratios, whose medians are reported.
#[derive(Default)]
struct Ratios {
    overhead: Vec<f64>,
    verify: Vec<f64>,
    verify_fp32: Vec<f64>,
    pair: Vec<f64>,
}

impl Ratios {
    fn push(&mut self, t: &IterationTimes) {
        self.overhead.push(t.whole / t.raw);
        self.verify.push(t.verify / t.plain_forward);
        self.verify_fp32.push(t.verify / t.plain_fp32_forward);
        self.pair.push(t.verify / t.one_after_other);
    }
}

fn time(samples: &mut Samples, step: Step, f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    samples.push(step, ms);
    Ok(ms)
}

impl Fixture {
    /// One pass to get every intermediate result, and the engines and baselines.
    fn prepare(settings: &Settings, args: &BenchArgs) -> Result<Self> {
        let image = args.image.clone().unwrap_or(PathBuf::from(DEFAULT_FRAME));
        let bytes =
            std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
        let second_path = args.second.clone().unwrap_or(PathBuf::from(DEFAULT_SECOND));
        let second = std::fs::read(&second_path)
            .with_context(|| format!("reading {}", second_path.display()))?;
        let models = ModelSet::by_name(
            settings.model,
            settings.model_output,
            settings.model_precision,
        )?;
        let mut engine = Engine::load(&models, &settings.models_dir, settings.engine.clone())
            .context("starting the face engine")?;
        let gallery = synthetic_gallery(100, models.embedder.embedding_size);
        let threshold = engine.threshold();

        let size = image::ImageReader::new(std::io::Cursor::new(&bytes))
            .with_guessed_format()?
            .into_dimensions()
            .with_context(|| format!("reading the size of {}", image.display()))?;
        let decoded = engine.decode(&bytes)?;
        let prepared = engine.prepare(decoded.clone());
        let detections = engine.detect(&prepared.image)?;
        let Some(face) = detections.first().copied() else {
            bail!("no face in {}", image.display());
        };
        let Some(five) = engine.landmarks(&prepared.image, &face)? else {
            bail!("no landmarks in {}", image.display());
        };
        let Some(aligned) = engine.align(&prepared.image, &five) else {
            bail!("cannot align the face in {}", image.display());
        };
        let embedding = engine.embed_aligned(&aligned)?;

        let detect_in = detector_input(&prepared.image)?;
        let crop = landmark_crop(&face, prepared.image.dimensions()).context("empty face crop")?;
        let landmark_in = landmark_input(&prepared.image, crop);
        let embed_in = embedder_input(&aligned, &models.embedder)?;
        // verify goes through a pool, as the product does: with two workers both photos at once
        let pool = EnginePool::start(
            &models,
            &settings.models_dir,
            settings.engine.clone(),
            settings.workers,
            settings.queue,
        )?;
        let plain =
            open_plain_session(&models.embedder.model.verified_path(&settings.models_dir)?)?;
        let full_precision = ModelSet::by_name(settings.model, settings.model_output, None)?;
        let plain_fp32 = if full_precision.embedder.model != models.embedder.model {
            let path = full_precision
                .embedder
                .model
                .verified_path(&settings.models_dir)?;
            Some(open_plain_session(&path)?)
        } else {
            None
        };
        Ok(Self {
            image,
            second_path,
            bytes,
            second,
            size,
            models,
            full_precision,
            engine,
            pool,
            gallery,
            threshold,
            decoded,
            prepared,
            face,
            five,
            aligned,
            embedding,
            detect_in,
            landmark_in,
            embed_in,
            plain,
            plain_fp32,
        })
    }

    /// Times every step once, in order, into `samples`.
    fn time_every_step(&mut self, samples: &mut Samples) -> Result<IterationTimes> {
        let raw = self.time_raw_models(samples)?;
        let whole = self.time_pipeline(samples)?;
        let (verify, one_after_other) = self.time_verify(samples)?;
        let (plain_forward, plain_fp32_forward) = self.time_plain_sessions(samples)?;
        Ok(IterationTimes {
            raw,
            whole,
            verify,
            one_after_other,
            plain_forward,
            plain_fp32_forward,
        })
    }

    /// The three models alone on their prepared inputs; their sum.
    fn time_raw_models(&mut self, samples: &mut Samples) -> Result<f64> {
        let engine = &mut self.engine;
        Ok(time(samples, Step::RawDetect, || {
            Ok(engine.run_detector(&self.detect_in).map(drop)?)
        })? + time(samples, Step::RawLandmarks, || {
            Ok(engine.run_landmarks(&self.landmark_in).map(drop)?)
        })? + time(samples, Step::RawEmbed, || {
            Ok(engine.run_embedder(&self.embed_in).map(drop)?)
        })?)
    }

    /// Each stage of the pipeline on the previous one's result, then the whole; the whole's time.
    fn time_pipeline(&mut self, samples: &mut Samples) -> Result<f64> {
        let (engine, image) = (&mut self.engine, &self.prepared.image);
        let (gallery, threshold) = (&self.gallery, self.threshold);
        time(samples, Step::Decode, || {
            Ok(engine.decode(&self.bytes).map(drop)?)
        })?;
        time(samples, Step::Preprocess, || {
            drop(engine.prepare(self.decoded.clone()));
            Ok(())
        })?;
        time(samples, Step::Detect, || {
            Ok(engine.detect(image).map(drop)?)
        })?;
        time(samples, Step::Landmarks, || {
            Ok(engine.landmarks(image, &self.face).map(drop)?)
        })?;
        time(samples, Step::Align, || {
            drop(engine.align(image, &self.five));
            Ok(())
        })?;
        time(samples, Step::Embed, || {
            Ok(engine.embed_aligned(&self.aligned).map(drop)?)
        })?;
        time(samples, Step::Match, || {
            drop(gallery.best_match(&self.embedding, threshold));
            Ok(())
        })?;
        time(samples, Step::EndToEnd, || {
            let analysis = engine.analyze_bytes(&self.bytes, Which::Best)?;
            if let Some(face) = analysis.best() {
                drop(gallery.best_match(&face.embedding, threshold));
            }
            Ok(())
        })
    }

    /// Verify of two photos through the pool, and the previous version's verify on one engine,
    /// one photo after the other, as its baseline.
    fn time_verify(&mut self, samples: &mut Samples) -> Result<(f64, f64)> {
        let (pool, bytes, second) = (&self.pool, &self.bytes, &self.second);
        let verify = time(samples, Step::VerifyTwoPhotos, || {
            let (a, b) = pool.analyze_pair_blocking(bytes.clone(), second.clone())?;
            if let (Some(a), Some(b)) = (a.best(), b.best()) {
                std::hint::black_box(cosine(&a.embedding, &b.embedding));
            }
            Ok(())
        })?;
        let one_after_other = time(samples, Step::VerifyOneAfterOther, || {
            let (a, b) = (bytes.clone(), second.clone());
            let (a, b) = pool.run_blocking(move |engine| {
                (
                    engine.analyze_bytes(&a, Which::Best),
                    engine.analyze_bytes(&b, Which::Best),
                )
            })?;
            std::hint::black_box((a?, b?));
            Ok(())
        })?;
        Ok((verify, one_after_other))
    }

    /// One forward pass of the embedding model in plain sessions (and of the fp32 model an
    /// int8 one was made from); the fp32 time is the plain one when there is no such model.
    fn time_plain_sessions(&mut self, samples: &mut Samples) -> Result<(f64, f64)> {
        let input = &self.embed_in;
        let plain = time(samples, Step::PlainEmbed, || {
            drop(
                self.plain
                    .run(ort::inputs![TensorRef::from_array_view(input)?])?,
            );
            Ok(())
        })?;
        // The plain session leaves a worker spinning for about 70 ms after each run (ONNX
        // Runtime's default). Let it go idle before the next step, so that no step pays for
        // it; busy-waiting keeps this core as awake as the steps find it.
        settle_after_plain_session();
        let Some(session) = self.plain_fp32.as_mut() else {
            return Ok((plain, plain));
        };
        let fp32 = time(samples, Step::PlainFp32Embed, || {
            drop(session.run(ort::inputs![TensorRef::from_array_view(input)?])?);
            Ok(())
        })?;
        settle_after_plain_session();
        Ok((plain, fp32))
    }

    fn report(
        &self,
        settings: &Settings,
        iterations: usize,
        samples: &mut Samples,
        ratios: &mut Ratios,
    ) -> BenchReport {
        let raw = RawModels {
            detect: samples.median_or_nan(Step::RawDetect),
            landmarks: samples.median_or_nan(Step::RawLandmarks),
            embed: samples.median_or_nan(Step::RawEmbed),
        };
        let stages = Stages {
            decode: samples.median_or_nan(Step::Decode),
            preprocess: samples.median_or_nan(Step::Preprocess),
            detect: samples.median_or_nan(Step::Detect),
            landmarks: samples.median_or_nan(Step::Landmarks),
            align: samples.median_or_nan(Step::Align),
            embed: samples.median_or_nan(Step::Embed),
            matching: samples.median_or_nan(Step::Match),
        };
        let plain_fp32_forward = samples.median(Step::PlainFp32Embed);
        BenchReport {
            image: self.image.clone(),
            second: self.second_path.clone(),
            size: [self.size.0, self.size.1],
            iterations,
            threads: settings.engine.threads,
            workers: settings.workers,
            model: self.models.id.clone(),
            fp32_model_file: self.full_precision.embedder.model.file.clone(),
            raw_models_ms: raw.detect + raw.landmarks + raw.embed,
            stages_ms: stages,
            raw_onnxruntime_ms: raw,
            end_to_end_ms: samples.median_or_nan(Step::EndToEnd),
            overhead_ratio: median_of(&mut ratios.overhead),
            plain_onnxruntime_embed_ms: samples.median_or_nan(Step::PlainEmbed),
            verify_two_photos_ms: samples.median_or_nan(Step::VerifyTwoPhotos),
            verify_over_plain_forward: median_of(&mut ratios.verify),
            verify_over_plain_fp32_forward: plain_fp32_forward
                .map(|_| median_of(&mut ratios.verify_fp32)),
            plain_onnxruntime_fp32_embed_ms: plain_fp32_forward,
            verify_one_after_other_ms: samples.median_or_nan(Step::VerifyOneAfterOther),
            verify_over_one_after_other: median_of(&mut ratios.pair),
        }
    }
}

#[derive(Debug, Serialize)]
struct Stages {
    decode: f64,
    preprocess: f64,
    detect: f64,
    landmarks: f64,
    align: f64,
    embed: f64,
    #[serde(rename = "match")]
    matching: f64,
}

/// The three models, each run alone on its prepared input.
#[derive(Debug, Serialize)]
struct RawModels {
    detect: f64,
    landmarks: f64,
    embed: f64,
}

/// Medians of one run, in ms, and ratios taken per iteration then their median (so that a
/// ratio compares the same moment of a noisy machine).
#[derive(Debug, Serialize)]
struct BenchReport {
    image: PathBuf,
    #[serde(skip)]
    second: PathBuf,
    size: [u32; 2],
    iterations: usize,
    threads: usize,
    workers: usize,
    model: String,
    #[serde(skip)]
    fp32_model_file: String,
    stages_ms: Stages,
    raw_onnxruntime_ms: RawModels,
    end_to_end_ms: f64,
    raw_models_ms: f64,
    /// end-to-end / the raw models, per iteration
    overhead_ratio: f64,
    plain_onnxruntime_embed_ms: f64,
    verify_two_photos_ms: f64,
    verify_over_plain_forward: f64,
    plain_onnxruntime_fp32_embed_ms: Option<f64>,
    verify_over_plain_fp32_forward: Option<f64>,
    verify_one_after_other_ms: f64,
    verify_over_one_after_other: f64,
}

impl Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (stages, raw) = (&self.stages_ms, &self.raw_onnxruntime_ms);
        writeln!(
            f,
            "{} ({}x{}), {} iterations, {} thread(s), medians:",
            self.image.display(),
            self.size[0],
            self.size[1],
            self.iterations,
            self.threads
        )?;
        writeln!(f, "{:<12} {:>10} {:>16}", "stage", "ms", "raw ONNX RT ms")?;
        let rows = [
            ("decode", stages.decode, None),
            ("preprocess", stages.preprocess, None),
            ("detect", stages.detect, Some(raw.detect)),
            ("landmarks", stages.landmarks, Some(raw.landmarks)),
            ("align", stages.align, None),
            ("embed", stages.embed, Some(raw.embed)),
            ("match", stages.matching, None),
        ];
        for (name, ms, raw) in rows {
            let raw = raw.map_or(String::new(), |r| format!("{r:.2}"));
            writeln!(f, "{name:<12} {ms:>10.2} {raw:>16}")?;
        }
        writeln!(
            f,
            "{:<12} {:>10.2} {:>16.2}",
            "end-to-end", self.end_to_end_ms, self.raw_models_ms
        )?;
        writeln!(
            f,
            "overhead ratio (end-to-end / raw models, median of per-iteration ratios): {:.2}",
            self.overhead_ratio
        )?;
        writeln!(
            f,
            "embedding model in a plain ONNX Runtime session (its defaults): {:.2} ms; ours: {:.2} ms",
            self.plain_onnxruntime_embed_ms, raw.embed
        )?;
        writeln!(
            f,
            "verify of two photos ({} and {}, {} worker(s)): {:.2} ms = {:.2} x one plain forward pass",
            self.image.display(),
            self.second.display(),
            self.workers,
            self.verify_two_photos_ms,
            self.verify_over_plain_forward
        )?;
        if let (Some(fp32), Some(ratio)) = (
            self.plain_onnxruntime_fp32_embed_ms,
            self.verify_over_plain_fp32_forward,
        ) {
            writeln!(
                f,
                "  the fp32 model ({}) in a plain session: {fp32:.2} ms; verify = {ratio:.2} x that",
                self.fp32_model_file
            )?;
        }
        writeln!(
            f,
            "  verify / the same two photos one after the other on one engine: {:.2}",
            self.verify_over_one_after_other
        )
    }
}
