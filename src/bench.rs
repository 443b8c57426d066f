//! `facelift bench`: the median time of every stage next to the raw ONNX Runtime time of each
//! model, all in one run, so the ratio holds even on a noisy shared machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

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

/// The photos the benchmark reads.
pub struct Inputs<'a> {
    pub image: Option<&'a Path>,
    pub second: Option<&'a Path>,
}

fn median_of(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
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

pub fn run(
    settings: &Settings,
    inputs: Inputs<'_>,
    iterations: usize,
    json_out: bool,
) -> Result<()> {
    let image = inputs.image.unwrap_or(Path::new(DEFAULT_FRAME));
    let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
    let second_path = inputs.second.unwrap_or(Path::new(DEFAULT_SECOND));
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

    let detect_in = detector_input(&prepared.image);
    let crop = landmark_crop(&face, prepared.image.dimensions()).context("empty face crop")?;
    let landmark_in = landmark_input(&prepared.image, crop);
    let embed_in = embedder_input(&aligned, &models.embedder);
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
    let n = iterations.max(1);
    let mut samples: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut ratios = Vec::with_capacity(n);
    let mut verify_ratios = Vec::with_capacity(n);
    let mut verify_fp32_ratios = Vec::with_capacity(n);
    let mut pair_ratios = Vec::with_capacity(n);
    for iteration in 0..=n {
        let mut time = |name: &'static str, f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
            let start = Instant::now();
            f()?;
            let ms = start.elapsed().as_secs_f64() * 1e3;
            // iteration 0 warms up and is not counted
            if iteration > 0 {
                samples.entry(name).or_default().push(ms);
            }
            Ok(ms)
        };
        let raw = time("raw_detect", &mut || {
            Ok(engine.run_detector(&detect_in).map(drop)?)
        })? + time("raw_landmarks", &mut || {
            Ok(engine.run_landmarks(&landmark_in).map(drop)?)
        })? + time("raw_embed", &mut || {
            Ok(engine.run_embedder(&embed_in).map(drop)?)
        })?;
        time("decode", &mut || Ok(engine.decode(&bytes).map(drop)?))?;
        time("preprocess", &mut || {
            drop(engine.prepare(decoded.clone()));
            Ok(())
        })?;
        time("detect", &mut || {
            Ok(engine.detect(&prepared.image).map(drop)?)
        })?;
        time("landmarks", &mut || {
            Ok(engine.landmarks(&prepared.image, &face).map(drop)?)
        })?;
        time("align", &mut || {
            drop(engine.align(&prepared.image, &five));
            Ok(())
        })?;
        time("embed", &mut || {
            Ok(engine.embed_aligned(&aligned).map(drop)?)
        })?;
        time("match", &mut || {
            drop(gallery.best_match(&embedding, threshold));
            Ok(())
        })?;
        let whole = time("end_to_end", &mut || {
            let analysis = engine.analyze_bytes(&bytes, Which::Best)?;
            if let Some(face) = analysis.best() {
                drop(gallery.best_match(&face.embedding, threshold));
            }
            Ok(())
        })?;
        let verify = time("verify_two_photos", &mut || {
            let (a, b) = pool.analyze_pair_blocking(bytes.clone(), second.clone())?;
            if let (Some(a), Some(b)) = (a.best(), b.best()) {
                std::hint::black_box(cosine(&a.embedding, &b.embedding));
            }
            Ok(())
        })?;
        // the previous version's verify on one engine, one photo after the other, as the
        // baseline of decoding both at once
        let one_after_other = time("verify_one_after_other", &mut || {
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
        let plain_forward = time("plain_onnxruntime_embed", &mut || {
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
                let ms = time("plain_onnxruntime_fp32_embed", &mut || {
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
    let mut median = |name: &str| samples.get_mut(name).map_or(0.0, |v| median_of(v));
    let (raw_detect, raw_landmarks, raw_embed) = (
        median("raw_detect"),
        median("raw_landmarks"),
        median("raw_embed"),
    );
    let (decode, preprocess, detect, landmarks) = (
        median("decode"),
        median("preprocess"),
        median("detect"),
        median("landmarks"),
    );
    let (align, embed, matching, end_to_end) = (
        median("align"),
        median("embed"),
        median("match"),
        median("end_to_end"),
    );
    let (plain_forward, verify) = (
        median("plain_onnxruntime_embed"),
        median("verify_two_photos"),
    );
    let overhead_ratio = median_of(&mut ratios);
    let verify_ratio = median_of(&mut verify_ratios);
    let verify_fp32_ratio = median_of(&mut verify_fp32_ratios);
    let plain_fp32_forward = plain_fp32
        .is_some()
        .then(|| median("plain_onnxruntime_fp32_embed"));
    let pair_ratio = median_of(&mut pair_ratios);

    let raw_total = raw_detect + raw_landmarks + raw_embed;
    let report = json!({
        "image": image,
        "size": [size.0, size.1],
        "iterations": n,
        "threads": settings.engine.threads,
        "model": models.id,
        "stages_ms": {
            "decode": decode, "preprocess": preprocess, "detect": detect,
            "landmarks": landmarks, "align": align, "embed": embed, "match": matching,
        },
        "raw_onnxruntime_ms": { "detect": raw_detect, "landmarks": raw_landmarks, "embed": raw_embed },
        "end_to_end_ms": end_to_end,
        "raw_models_ms": raw_total,
        "overhead_ratio": overhead_ratio,
        "plain_onnxruntime_embed_ms": plain_forward,
        "verify_two_photos_ms": verify,
        "verify_over_plain_forward": verify_ratio,
        "plain_onnxruntime_fp32_embed_ms": plain_fp32_forward,
        "verify_over_plain_fp32_forward": plain_fp32_forward.map(|_| verify_fp32_ratio),
        "verify_one_after_other_ms": median("verify_one_after_other"),
        "verify_over_one_after_other": pair_ratio,
        "workers": settings.workers,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} ({}x{}), {} iterations, {} thread(s), medians:",
        image.display(),
        size.0,
        size.1,
        n,
        settings.engine.threads
    );
    println!("{:<12} {:>10} {:>16}", "stage", "ms", "raw ONNX RT ms");
    let rows = [
        ("decode", decode, None),
        ("preprocess", preprocess, None),
        ("detect", detect, Some(raw_detect)),
        ("landmarks", landmarks, Some(raw_landmarks)),
        ("align", align, None),
        ("embed", embed, Some(raw_embed)),
        ("match", matching, None),
    ];
    for (name, ms, raw) in rows {
        let raw = raw.map_or(String::new(), |r| format!("{r:.2}"));
        println!("{name:<12} {ms:>10.2} {raw:>16}");
    }
    println!(
        "{:<12} {:>10.2} {:>16.2}",
        "end-to-end", end_to_end, raw_total
    );
    println!(
        "overhead ratio (end-to-end / raw models): {:.2}",
        end_to_end / raw_total
    );
    println!(
        "embedding model in a plain ONNX Runtime session (its defaults): {plain_forward:.2} ms; ours: {raw_embed:.2} ms"
    );
    println!(
        "verify of two photos ({} and {}, {} worker(s)): {verify:.2} ms = {verify_ratio:.2} x one plain forward pass",
        image.display(),
        second_path.display(),
        settings.workers
    );
    if let Some(fp32) = plain_fp32_forward {
        println!(
            "  the fp32 model ({}) in a plain session: {fp32:.2} ms; verify = {verify_fp32_ratio:.2} x that",
            full_precision.embedder.model.file
        );
    }
    println!("  verify / the same two photos one after the other on one engine: {pair_ratio:.2}");
    Ok(())
}
