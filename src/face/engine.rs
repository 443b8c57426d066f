//! One engine = one set of ONNX Runtime sessions, opened once, driven by one thread at a time.

use std::path::Path;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use ndarray::{Array4, ArrayView4, Axis};
use ort::session::Session;
use ort::value::TensorRef;
use serde::{Deserialize, Serialize};

use super::align::{
    ALIGNED_SIZE, ARCFACE_TEMPLATE, shifted, similarity_transform, source_footprint, warp_affine,
};
use super::decode::{DecodeLimits, decode_for_size};
use super::detect::{Detection, decode_detections, detector_input};
use super::int8::{CpuFeatures, check_int8_model};
use super::landmarks::{
    Crop, Point, five_points, landmark_crop, landmark_input, points_from_output,
};
use super::manifest::{ChannelOrder, EmbedderSpec, Fit, Layout, ModelSet};
use super::preprocess::{Prepared, Preprocess, Region, preprocess, sharpened_region};
use super::resize;
use super::runtime::open_session;
use super::{Embedding, FaceError, Result, l2_normalize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    pub preprocess: Preprocess,
    pub max_pixels: u64,
    /// Smallest usable face: box height in preprocessed pixels.
    pub min_face: u32,
    pub detect_threshold: f32,
    pub nms_iou: f32,
    /// ONNX Runtime intra-op threads per engine.
    pub threads: usize,
    /// Overrides the model set's own threshold.
    pub threshold: Option<f32>,
    /// Also score liveness (advisory) for each embedded face.
    pub liveness: bool,
}

impl EngineConfig {
    /// The cosine similarity at which two faces count as one person with `models`: the
    /// configured one, else the model set's own.
    pub fn threshold_for(&self, models: &ModelSet) -> f32 {
        self.threshold.unwrap_or(models.embedder.threshold)
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            preprocess: Preprocess::default(),
            max_pixels: DecodeLimits::default().max_pixels,
            min_face: 40,
            detect_threshold: 0.65,
            nms_iou: 0.4,
            threads: 2,
            threshold: None,
            liveness: false,
        }
    }
}

/// Which faces of an image get embedded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// the highest-scoring face (login, verify, enrollment from photos)
    Best,
    /// the one face of the image; `SeveralFaces` when more than one is large enough to use
    /// (enrollment from a camera, where a second person in the shot must not be enrolled)
    Single,
    /// every face large enough (identify)
    All,
}

#[derive(Clone, Debug, Serialize)]
pub struct Face {
    /// x1, y1, x2, y2 in pixels of the uploaded image (after EXIF rotation)
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    pub score: f32,
    #[serde(skip)]
    pub embedding: Embedding,
    /// probability that the face is live (advisory; only when enabled)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness: Option<f32>,
    /// the 68 landmarks (iBUG order) in the preprocessed frame's pixels: what presentation
    /// attack detection compares between the frames of a burst
    #[serde(skip)]
    pub landmarks: Vec<Point>,
}

#[derive(Clone, Debug)]
pub struct FaceAnalysis {
    /// embedded faces, best first
    pub faces: Vec<Face>,
    /// how many faces the detector saw, embedded or not
    pub faces_seen: usize,
}

impl FaceAnalysis {
    pub fn best(&self) -> Option<&Face> {
        self.faces.first()
    }
}

pub struct Engine {
    models: ModelSet,
    config: EngineConfig,
    finder: Finder,
    /// A second detector and landmarker, so that the second photo of a pair is found on
    /// another thread while the first one is (the models are small: 2.4 MB together).
    pair_finder: Finder,
    embedder: Session,
    /// The embedding model takes a batch (a dynamic first dimension, as VGG-Face's does):
    /// a pair's two faces then go through it in one run.
    embedder_batches: bool,
    liveness: Option<Session>,
}

/// The sessions that find and align faces (everything before the embedding); the settings
/// come from the engine.
struct Finder {
    /// The side of the aligned face: 112, or the embedder's input when that is larger.
    aligned_size: u32,
    detector: Session,
    landmarker: Session,
}

/// The faces chosen in one image, aligned and ready to embed, with their 68 landmarks.
struct Found {
    prepared: Prepared,
    faces: Vec<(Detection, RgbImage, Vec<Point>)>,
    faces_seen: usize,
}

impl Engine {
    /// Opens every session of the model set, after checking the files' checksums.
    pub fn load(models: &ModelSet, dir: &Path, config: EngineConfig) -> Result<Self> {
        let open = |file: &super::manifest::ModelFile| -> Result<Session> {
            open_session(&file.verified_path(dir)?, config.threads)
        };
        let liveness = match (&models.liveness, config.liveness) {
            (Some(file), true) => Some(open(file)?),
            _ => None,
        };
        let finder = || -> Result<Finder> {
            Ok(Finder {
                aligned_size: models.embedder.input_size.max(ALIGNED_SIZE),
                detector: open(&models.detector)?,
                landmarker: open(&models.landmarks)?,
            })
        };
        if models.embedder.int8 {
            let path = models.embedder.model.verified_path(dir)?;
            let report = check_int8_model(&path, &CpuFeatures::detect())?;
            tracing::debug!(format = %report.int8_format, validated_on = ?report.validated_on, "int8 model fits this CPU");
        }
        let embedder = open(&models.embedder.model)?;
        let embedder_batches = embedder
            .inputs()
            .first()
            .and_then(|input| input.dtype().tensor_shape())
            .and_then(|shape| shape.first().copied())
            .is_some_and(|batch| batch < 0);
        Ok(Self {
            finder: finder()?,
            pair_finder: finder()?,
            embedder,
            embedder_batches,
            liveness,
            models: models.clone(),
            config,
        })
    }

    pub fn models(&self) -> &ModelSet {
        &self.models
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether a pair's two faces go through the embedding model in one batch.
    pub fn embeds_pairs_in_one_batch(&self) -> bool {
        self.embedder_batches
    }

    /// The cosine similarity at which two faces count as one person.
    pub fn threshold(&self) -> f32 {
        self.config.threshold_for(&self.models)
    }

    pub fn decode(&self, bytes: &[u8]) -> Result<RgbImage> {
        self.decoder()(bytes)
    }

    /// Decoding as configured, without borrowing the engine (so that another thread can decode
    /// while this one runs the models).
    fn decoder(&self) -> impl Fn(&[u8]) -> Result<RgbImage> + Send + Sync + use<> {
        let limits = DecodeLimits {
            max_pixels: self.config.max_pixels,
        };
        let max_side = self.config.preprocess.max_side;
        move |bytes| decode_for_size(bytes, limits, max_side)
    }

    pub fn prepare(&self, image: RgbImage) -> Prepared {
        preprocess(image, &self.config.preprocess)
    }

    /// Every face in the image, best first.
    pub fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>> {
        self.finder.detect(&self.config, image)
    }

    pub fn run_detector(&mut self, input: &Array4<f32>) -> Result<(Vec<f32>, Vec<f32>)> {
        self.finder.run_detector(input)
    }

    /// The five alignment points of a detected face, in frame coordinates.
    pub fn landmarks(&mut self, frame: &RgbImage, face: &Detection) -> Result<Option<[Point; 5]>> {
        self.finder.landmarks(&self.config, frame, face)
    }

    /// The aligned (and, where configured, sharpened) face for five landmarks.
    pub fn align(&self, frame: &RgbImage, five: &[Point; 5]) -> Option<RgbImage> {
        self.finder.align_in(&self.config, frame, None, five)
    }

    /// DeepFace's `skip`: no detection, the whole image (decoded at full size, no
    /// preprocessing) resized and padded to the embedder's input.
    pub fn embed_whole_image(&mut self, bytes: &[u8]) -> Result<Embedding> {
        let input = self.whole_image_input(bytes)?;
        self.run_embedder(&input)
    }

    /// The embedder's input for DeepFace's `skip`: the whole image, decoded at full size.
    pub fn whole_image_input(&self, bytes: &[u8]) -> Result<Array4<f32>> {
        let limits = DecodeLimits {
            max_pixels: self.config.max_pixels,
        };
        let image = decode_for_size(bytes, limits, 0)?;
        embedder_input(&image, &self.models.embedder)
    }

    pub fn run_landmarks(&mut self, input: &Array4<f32>) -> Result<Vec<f32>> {
        self.finder.run_landmarks(input)
    }

    /// The embedding of an aligned face.
    pub fn embed_aligned(&mut self, aligned: &RgbImage) -> Result<Embedding> {
        let input = embedder_input(aligned, &self.models.embedder)?;
        self.run_embedder(&input)
    }

    /// The embedding model's output as it comes, before L2 normalisation.
    pub fn run_embedder_raw(&mut self, input: &Array4<f32>) -> Result<Vec<f32>> {
        let output = self.models.embedder.output.clone();
        run_first_output(&mut self.embedder, input, output.as_deref())
    }

    pub fn run_embedder(&mut self, input: &Array4<f32>) -> Result<Embedding> {
        let values = self.run_embedder_raw(input)?;
        let [embedding] = self.normalized_embeddings::<1>(values)?;
        Ok(embedding)
    }

    /// One L2-normalised embedding per input, in one run of the model.
    fn run_embedder_batch<const N: usize>(
        &mut self,
        inputs: &[ArrayView4<'_, f32>; N],
    ) -> Result<[Embedding; N]> {
        let batch = ndarray::concatenate(Axis(0), inputs)?;
        let values = self.run_embedder_raw(&batch)?;
        self.normalized_embeddings(values)
    }

    /// The model's output for `N` faces, split per face and L2-normalised.
    fn normalized_embeddings<const N: usize>(&self, values: Vec<f32>) -> Result<[Embedding; N]> {
        let size = self.models.embedder.embedding_size;
        if values.len() != size * N {
            return Err(FaceError::EmbeddingSize {
                values: values.len(),
                faces: N,
                size,
            });
        }
        Ok(std::array::from_fn(|face| {
            let mut embedding = values[face * size..(face + 1) * size].to_vec();
            l2_normalize(&mut embedding);
            embedding
        }))
    }

    /// Probability that the face is live; None when liveness is off.
    pub fn liveness(&mut self, image: &RgbImage, face: &Detection) -> Result<Option<f32>> {
        let Some(session) = self.liveness.as_mut() else {
            return Ok(None);
        };
        let input = liveness_input(image, face);
        let logits = run_first_output(session, &input, None)?;
        Ok(Some(softmax_first(&logits)))
    }

    /// Decode, preprocess, detect, and embed the chosen faces.
    pub fn analyze_bytes(&mut self, bytes: &[u8], which: Which) -> Result<FaceAnalysis> {
        let image = timed("decode", || self.decode(bytes))?;
        self.analyze_image(image, which)
    }

    /// The best face of each of two photos (verify). The second photo is decoded and its face
    /// found and aligned on another thread, with the engine's second detector, while the first
    /// one's is: for large photos decoding is the costliest step after the forward pass
    /// (DeepFace's `img1.jpg` and `img2.jpg` take about 44 ms each). Both faces then go through
    /// the embedding model in one batch when it takes one.
    pub fn analyze_pair(
        &mut self,
        first: &[u8],
        second: &[u8],
    ) -> (Result<FaceAnalysis>, Result<FaceAnalysis>) {
        let decode = self.decoder();
        let (finder, pair_finder, config) = (&mut self.finder, &mut self.pair_finder, &self.config);
        let (first, second) = std::thread::scope(|scope| {
            let second = scope.spawn(|| {
                decode(second).and_then(|image| pair_finder.find(config, image, Which::Best))
            });
            let first = decode(first).and_then(|image| finder.find(config, image, Which::Best));
            let second = second
                .join()
                .unwrap_or_else(|_| Err(FaceError::EnginePanicked));
            (first, second)
        });
        match (first, second) {
            (Ok(first), Ok(second)) if self.embedder_batches => {
                let inputs = [&first, &second]
                    .map(|found| embedder_input(&found.faces[0].1, &self.models.embedder));
                let batch = match inputs {
                    [Ok(a), Ok(b)] => self.run_embedder_batch(&[a.view(), b.view()]),
                    [Err(e), _] | [_, Err(e)] => Err(e),
                };
                match batch {
                    Ok([first_embedding, second_embedding]) => (
                        self.finish(first, vec![first_embedding]),
                        self.finish(second, vec![second_embedding]),
                    ),
                    // a batch that fails takes the first photo's result; the second is tried alone
                    Err(e) => (Err(e), self.embed_found(second)),
                }
            }
            (first, second) => (
                first.and_then(|found| self.embed_found(found)),
                second.and_then(|found| self.embed_found(found)),
            ),
        }
    }

    /// The embedding model's input for the best face of a photo, exactly as `analyze_bytes`
    /// feeds it: real face crops to calibrate a quantized model on.
    pub fn best_face_input(&mut self, bytes: &[u8]) -> Result<Array4<f32>> {
        let image = self.decode(bytes)?;
        let found = self.finder.find(&self.config, image, Which::Best)?;
        embedder_input(&found.faces[0].1, &self.models.embedder)
    }

    /// As `analyze_bytes`, also giving back the preprocessed frame that the landmarks are in
    /// (presentation attack detection hashes the face in it).
    pub fn analyze_bytes_with_frame(
        &mut self,
        bytes: &[u8],
        which: Which,
    ) -> Result<(FaceAnalysis, RgbImage)> {
        let image = timed("decode", || self.decode(bytes))?;
        let found = timed("find", || self.finder.find(&self.config, image, which))?;
        let frame = found.prepared.image.clone();
        let analysis = timed("embed", || self.embed_found(found))?;
        Ok((analysis, frame))
    }

    pub fn analyze_image(&mut self, image: RgbImage, which: Which) -> Result<FaceAnalysis> {
        let found = timed("find", || self.finder.find(&self.config, image, which))?;
        timed("embed", || self.embed_found(found))
    }

    fn embed_found(&mut self, found: Found) -> Result<FaceAnalysis> {
        let mut embeddings = Vec::with_capacity(found.faces.len());
        for (_, aligned, _) in &found.faces {
            embeddings.push(self.embed_aligned(aligned)?);
        }
        self.finish(found, embeddings)
    }

    /// The analysis of found faces, given their embeddings (in the same order).
    fn finish(&mut self, found: Found, embeddings: Vec<Embedding>) -> Result<FaceAnalysis> {
        let mut faces = Vec::with_capacity(found.faces.len());
        for ((detection, _, landmarks), embedding) in found.faces.iter().zip(embeddings) {
            let liveness = self.liveness(&found.prepared.image, detection)?;
            faces.push(Face {
                bbox: found.prepared.to_original(detection.bbox),
                score: detection.score,
                embedding,
                liveness,
                landmarks: landmarks.clone(),
            });
        }
        Ok(FaceAnalysis {
            faces,
            faces_seen: found.faces_seen,
        })
    }
}

impl Finder {
    /// Preprocess, detect, choose, and align: at least one face, or the reason there is none.
    fn find(&mut self, config: &EngineConfig, image: RgbImage, which: Which) -> Result<Found> {
        let prepared = preprocess(image, &config.preprocess);
        let detections = self.detect(config, &prepared.image)?;
        let Some(best) = detections.first() else {
            return Err(FaceError::NoFace);
        };
        let min = config.min_face as f32;
        let chosen: Vec<&Detection> = match which {
            Which::Best => vec![best],
            Which::Single => {
                let usable = detections.iter().filter(|d| d.height() >= min).count();
                if usable > 1 {
                    return Err(FaceError::SeveralFaces { count: usable });
                }
                vec![best]
            }
            Which::All => detections.iter().filter(|d| d.height() >= min).collect(),
        };
        if chosen.first().is_none_or(|d| d.height() < min) {
            return Err(FaceError::FaceTooSmall {
                size: best.height().max(0.0).round() as u32,
                min: config.min_face,
            });
        }
        let mut faces = Vec::with_capacity(chosen.len());
        for detection in chosen {
            if let Some((aligned, landmarks)) =
                self.align_detection(config, &prepared.image, detection)?
            {
                faces.push((*detection, aligned, landmarks));
            }
        }
        if faces.is_empty() {
            return Err(FaceError::NoFace);
        }
        Ok(Found {
            prepared,
            faces,
            faces_seen: detections.len(),
        })
    }

    fn detect(&mut self, config: &EngineConfig, image: &RgbImage) -> Result<Vec<Detection>> {
        let input = detector_input(image)?;
        let (scores, boxes) = self.run_detector(&input)?;
        Ok(decode_detections(
            &scores,
            &boxes,
            image.dimensions(),
            config.detect_threshold,
            config.nms_iou,
        ))
    }

    fn run_detector(&mut self, input: &Array4<f32>) -> Result<(Vec<f32>, Vec<f32>)> {
        let outputs = self
            .detector
            .run(ort::inputs![TensorRef::from_array_view(input)?])?;
        let scores = outputs["scores"].try_extract_tensor::<f32>()?.1.to_vec();
        let boxes = outputs["boxes"].try_extract_tensor::<f32>()?.1.to_vec();
        Ok((scores, boxes))
    }

    fn run_landmarks(&mut self, input: &Array4<f32>) -> Result<Vec<f32>> {
        run_first_output(&mut self.landmarker, input, None)
    }

    fn landmarks(
        &mut self,
        config: &EngineConfig,
        frame: &RgbImage,
        face: &Detection,
    ) -> Result<Option<[Point; 5]>> {
        let Some(crop) = landmark_crop(face, frame.dimensions()) else {
            return Ok(None);
        };
        let region = sharpened_region(frame, crop.rect(), &config.preprocess);
        Ok(five_points(&self.landmarks_in(&region, crop)?))
    }

    /// The 68 landmarks of the face in `crop`, read from `region`, in frame coordinates.
    fn landmarks_in(&mut self, region: &Region, crop: Crop) -> Result<Vec<Point>> {
        let local = Crop {
            x: crop.x - region.x,
            y: crop.y - region.y,
            ..crop
        };
        let output = self.run_landmarks(&landmark_input(&region.image, local))?;
        Ok(points_from_output(&output, crop))
    }

    /// Aligns from `region` when it holds every pixel the warp reads, else sharpens anew.
    fn align_in(
        &self,
        config: &EngineConfig,
        frame: &RgbImage,
        region: Option<&Region>,
        five: &[Point; 5],
    ) -> Option<RgbImage> {
        // the ArcFace template, scaled to the embedder's input when it is larger (VGG-Face)
        let size = self.aligned_size;
        let scale = size as f32 / ALIGNED_SIZE as f32;
        let template = ARCFACE_TEMPLATE.map(|[x, y]| [x * scale, y * scale]);
        let m = similarity_transform(five, &template)?;
        let footprint = source_footprint(&m, size, frame.dimensions())?;
        let fresh;
        let region = match region {
            Some(region) if region.covers(footprint) => region,
            _ => {
                fresh = sharpened_region(frame, footprint, &config.preprocess);
                &fresh
            }
        };
        warp_affine(&region.image, &shifted(&m, region.x, region.y), size, size)
    }

    /// Landmarks and alignment from one sharpened region: the landmark crop grown by 40% each
    /// side, which holds the alignment's source pixels for all but strongly turned faces.
    fn align_detection(
        &mut self,
        config: &EngineConfig,
        frame: &RgbImage,
        face: &Detection,
    ) -> Result<Option<(RgbImage, Vec<Point>)>> {
        let Some(crop) = landmark_crop(face, frame.dimensions()) else {
            return Ok(None);
        };
        let region = sharpened_region(
            frame,
            crop.grown(0.4, frame.dimensions()),
            &config.preprocess,
        );
        let landmarks = self.landmarks_in(&region, crop)?;
        let Some(five) = five_points(&landmarks) else {
            return Ok(None);
        };
        Ok(self
            .align_in(config, frame, Some(&region), &five)
            .map(|aligned| (aligned, landmarks)))
    }
}

/// Runs one stage of the pipeline, recording its time in the `facelift_engine_stage_seconds`
/// histogram (a no-op where no metrics recorder is installed: the command line).
fn timed<T>(stage: &'static str, run: impl FnOnce() -> T) -> T {
    let start = std::time::Instant::now();
    let result = run();
    metrics::histogram!("facelift_engine_stage_seconds", "stage" => stage)
        .record(start.elapsed().as_secs_f64());
    result
}

fn run_first_output(
    session: &mut Session,
    input: &Array4<f32>,
    output: Option<&str>,
) -> Result<Vec<f32>> {
    let outputs = session.run(ort::inputs![TensorRef::from_array_view(input)?])?;
    let value = match output {
        Some(name) => outputs
            .get(name)
            .ok_or_else(|| FaceError::NoSuchOutput(name.to_string()))?,
        None => &outputs[0],
    };
    Ok(value.try_extract_tensor::<f32>()?.1.to_vec())
}

/// The embedding model's input tensor for an aligned face, as its manifest describes.
pub fn embedder_input(aligned: &RgbImage, spec: &EmbedderSpec) -> Result<Array4<f32>> {
    let fitted = fit_square(aligned, spec.input_size, spec.fit)?;
    let n = spec.input_size as usize;
    let value = |x: usize, y: usize, c: usize| {
        let source = match spec.channels {
            ChannelOrder::Rgb => c,
            ChannelOrder::Bgr => 2 - c,
        };
        let pixel = fitted.get_pixel(x as u32, y as u32);
        (f32::from(pixel[source]) - spec.mean) / spec.std
    };
    Ok(match spec.layout {
        Layout::Nchw => Array4::from_shape_fn((1, 3, n, n), |(_, c, y, x)| value(x, y, c)),
        Layout::Nhwc => Array4::from_shape_fn((1, n, n, 3), |(_, y, x, c)| value(x, y, c)),
    })
}

/// Brings an image to `size` x `size`, stretched or aspect-kept and zero-padded.
pub fn fit_square(image: &RgbImage, size: u32, fit: Fit) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if (w, h) == (size, size) {
        return Ok(image.clone());
    }
    match fit {
        Fit::Stretch => resize::bilinear(image, size, size),
        Fit::Pad => {
            // DeepFace's resize_image: f = min(size/h, size/w), int() of each side
            let factor = (f64::from(size) / f64::from(w)).min(f64::from(size) / f64::from(h));
            let new_w = ((f64::from(w) * factor) as u32).clamp(1, size);
            let new_h = ((f64::from(h) * factor) as u32).clamp(1, size);
            let resized = resize::opencv_exact(image, new_w, new_h);
            let mut out = RgbImage::new(size, size);
            let (left, top) = ((size - new_w) / 2, (size - new_h) / 2);
            image::imageops::replace(&mut out, &resized, i64::from(left), i64::from(top));
            Ok(out)
        }
    }
}

/// The liveness model's input: the face box grown up to 2.7x about its centre, kept inside the
/// image, resized to 128x128, BGR, raw 0-255 values, NCHW.
fn liveness_input(image: &RgbImage, face: &Detection) -> Array4<f32> {
    const SIZE: usize = 128;
    let (width, height) = (image.width() as f32, image.height() as f32);
    let [x1, y1, x2, y2] = face.bbox.map(f32::trunc);
    let (w, h) = ((x2 - x1).max(1.0), (y2 - y1).max(1.0));
    let scale = 2.7f32.min((height - 1.0) / h).min((width - 1.0) / w);
    let (new_w, new_h) = (w * scale, h * scale);
    let (cx, cy) = (x1 + w / 2.0, y1 + h / 2.0);
    let mut left = cx - new_w / 2.0;
    let mut top = cy - new_h / 2.0;
    left = left.clamp(0.0, (width - 1.0 - new_w).max(0.0));
    top = top.clamp(0.0, (height - 1.0 - new_h).max(0.0));
    let crop_w = new_w.min(width - left).max(1.0);
    let crop_h = new_h.min(height - top).max(1.0);

    let mut resized = RgbImage::new(SIZE as u32, SIZE as u32);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Interpolation(FilterType::Bilinear))
        .crop(
            f64::from(left.trunc()),
            f64::from(top.trunc()),
            f64::from(crop_w.trunc()),
            f64::from(crop_h.trunc()),
        );
    let mut input = Array4::<f32>::zeros((1, 3, SIZE, SIZE));
    if Resizer::new()
        .resize(image, &mut resized, &options)
        .is_err()
    {
        return input;
    }
    for (i, p) in resized.pixels().enumerate() {
        for c in 0..3 {
            input[[0, c, i / SIZE, i % SIZE]] = f32::from(p[2 - c]);
        }
    }
    input
}

fn softmax_first(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.first().map_or(0.0, |l| (l - max).exp() / sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_fit_keeps_the_aspect_and_centres() {
        let image = RgbImage::from_pixel(100, 50, image::Rgb([200, 100, 50]));
        let out = fit_square(&image, 224, Fit::Pad).expect("fit");
        assert_eq!(out.dimensions(), (224, 224));
        assert_eq!(out.get_pixel(112, 112), &image::Rgb([200, 100, 50]));
        assert_eq!(
            out.get_pixel(112, 10),
            &image::Rgb([0, 0, 0]),
            "padding above"
        );
    }

    #[test]
    fn embedder_input_follows_the_manifest() {
        let image = RgbImage::from_pixel(112, 112, image::Rgb([255, 127, 0]));
        let spec = ModelSet::default_set().embedder;
        let input = embedder_input(&image, &spec).expect("input");
        assert_eq!(input.shape(), &[1, 3, 112, 112]);
        // BGR: channel 0 holds blue (0), channel 2 red (255)
        assert_eq!(input[[0, 0, 5, 5]], -127.0 / 128.0);
        assert_eq!(input[[0, 1, 5, 5]], 0.0);
        assert_eq!(input[[0, 2, 5, 5]], 1.0);
    }
}
