//! `facelift bench`: the median time of every stage next to the raw ONNX Runtime time of each
//! model, all in one run, so the ratio holds even on a noisy shared machine.

use std::fmt::{self, Display};
use std::path::{Path, PathBuf};
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
use crate::face::{Engine, EnginePool, ModelSet, Which, cosine, l2_normalize};
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
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    let people = (0..people)
        .map(|i| Person {
            name: format!("person{i}"),
            templates: (0..5)
                .map(|_| {
                    let mut embedding: Vec<f32> = (0..dimensions).map(|_| next()).collect();
                    l2_normalize(&mut embedding);
                    Template {
                        file: PathBuf::new(),
                        embedding,
                    }
                })
                .collect(),
        })
        .collect();
    Gallery {
        model_id: "synthetic".into(),
        people,
    }
}

pub fn bench(settings: &Settings, args: BenchArgs) -> Result<()> {
    let image = args.image.as_deref().unwrap_or(Path::new(DEFAULT_FRAME));
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let second_path = args.second.as_deref().unwrap_or(Path::new(DEFAULT_SECOND));
    let second =
        std::fs::read(second_path).with_context(|| format!("reading {}", second_path.display()))?;
    let models = ModelSet::by_name(
        settings.model,
        settings.model_output,
        settings.model_precision,
    )?;
    let mut engine = Engine::load(&models, &settings.models_dir, settings.engine.clone())
        .context("starting the face engine")?;
    let gallery = synthetic_gallery(100, models.embedder.embedding_size);
    let threshold = engine.threshold();

    // One pass to get every intermediate result.
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
    // the baseline: the same embedding model in a session with ONNX Runtime's defaults
    let mut plain =
        open_plain_session(&models.embedder.model.verified_path(&settings.models_dir)?)?;
    // for int8 VGG-Face, also the fp32 model it was made from: the speed-up is against that
    let full_precision = ModelSet::by_name(settings.model, settings.model_output, None)?;
    let mut plain_fp32 = if full_precision.embedder.model != models.embedder.model {
        let path = full_precision
            .embedder
            .model
            .verified_path(&settings.models_dir)?;
        Some(open_plain_session(&path)?)
    } else {
        None
    };

    // Every iteration times every step once, in turn, so that the raw models and the pipeline
    // share the machine's ups and downs; the ratio is taken per iteration, then its median.
    let n = args.iterations.max(1);
    let mut samples = Samples::new();
    let mut ratios = Vec::with_capacity(n);
    let mut verify_ratios = Vec::with_capacity(n);
    let mut verify_fp32_ratios = Vec::with_capacity(n);
    let mut pair_ratios = Vec::with_capacity(n);
    for iteration in 0..=n {
        let mut time = |step: Step, f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
            let start = Instant::now();
            f()?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            // iteration 0 warms up and is not counted
            if iteration > 0 {
                samples.push(step, ms);
            }
            Ok(ms)
        };
        let raw = time(Step::RawDetect, &mut || {
            Ok(engine.run_detector(&detect_in).map(drop)?)
        })? + time(Step::RawLandmarks, &mut || {
            Ok(engine.run_landmarks(&landmark_in).map(drop)?)
        })? + time(Step::RawEmbed, &mut || {
            Ok(engine.run_embedder(&embed_in).map(drop)?)
        })?;
        time(Step::Decode, &mut || Ok(engine.decode(&bytes).map(drop)?))?;
        time(Step::Preprocess, &mut || {
            drop(engine.prepare(decoded.clone()));
            Ok(())
        })?;
        time(Step::Detect, &mut || {
            Ok(engine.detect(&prepared.image).map(drop)?)
        })?;
        time(Step::Landmarks, &mut || {
            Ok(engine.landmarks(&prepared.image, &face).map(drop)?)
        })?;
        time(Step::Align, &mut || {
            drop(engine.align(&prepared.image, &five));
            Ok(())
        })?;
        time(Step::Embed, &mut || {
            Ok(engine.embed_aligned(&aligned).map(drop)?)
        })?;
        time(Step::Match, &mut || {
            drop(gallery.best_match(&embedding, threshold));
            Ok(())
        })?;
        let whole = time(Step::EndToEnd, &mut || {
            let analysis = engine.analyze_bytes(&bytes, Which::Best)?;
            if let Some(face) = analysis.best() {
                drop(gallery.best_match(&face.embedding, threshold));
            }
            Ok(())
        })?;
        let verify = time(Step::VerifyTwoPhotos, &mut || {
            let (a, b) = pool.analyze_pair_blocking(bytes.clone(), second.clone())?;
            if let (Some(a), Some(b)) = (a.best(), b.best()) {
                std::hint::black_box(cosine(&a.embedding, &b.embedding));
            }
            Ok(())
        })?;
        // the previous version's verify on one engine, one photo after the other, as the
        // baseline of decoding both at once
        let one_after_other = time(Step::VerifyOneAfterOther, &mut || {
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
        let plain_forward = time(Step::PlainEmbed, &mut || {
            let outputs = plain.run(ort::inputs![TensorRef::from_array_view(&embed_in)?])?;
            drop(outputs);
            Ok(())
        })?;
        // The plain session leaves a worker spinning for about 70 ms after each run (ONNX
        // Runtime's default). Let it go idle before the next step, so that no step pays for
        // it; busy-waiting keeps this core as awake as the steps find it.
        settle_after_plain_session();
        let plain_fp32_forward = match plain_fp32.as_mut() {
            Some(session) => {
                let ms = time(Step::PlainFp32Embed, &mut || {
                    drop(session.run(ort::inputs![TensorRef::from_array_view(&embed_in)?])?);
                    Ok(())
                })?;
                settle_after_plain_session();
                ms
            }
            None => plain_forward,
        };
        if iteration > 0 {
            ratios.push(whole / raw);
            verify_ratios.push(verify / plain_forward);
            verify_fp32_ratios.push(verify / plain_fp32_forward);
            pair_ratios.push(verify / one_after_other);
        }
    }
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
    let report = BenchReport {
        image: image.to_path_buf(),
        second: second_path.to_path_buf(),
        size: [size.0, size.1],
        iterations: n,
        threads: settings.engine.threads,
        workers: settings.workers,
        model: models.id.clone(),
        fp32_model_file: full_precision.embedder.model.file.clone(),
        raw_models_ms: raw.detect + raw.landmarks + raw.embed,
        stages_ms: stages,
        raw_onnxruntime_ms: raw,
        end_to_end_ms: samples.median_or_nan(Step::EndToEnd),
        overhead_ratio: median_of(&mut ratios),
        plain_onnxruntime_embed_ms: samples.median_or_nan(Step::PlainEmbed),
        verify_two_photos_ms: samples.median_or_nan(Step::VerifyTwoPhotos),
        verify_over_plain_forward: median_of(&mut verify_ratios),
        verify_over_plain_fp32_forward: plain_fp32_forward
            .map(|_| median_of(&mut verify_fp32_ratios)),
        plain_onnxruntime_fp32_embed_ms: plain_fp32_forward,
        verify_one_after_other_ms: samples.median_or_nan(Step::VerifyOneAfterOther),
        verify_over_one_after_other: median_of(&mut pair_ratios),
    };
    args.output.print(&report)
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
