//! The face commands: verify, identify, represent, model-inputs, enroll, eval.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Display};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use serde::Serialize;

use super::{Output, Places, Skipped, analyze_file, load_gallery, open_pool, open_store, read};
use crate::config::Settings;
use crate::face::eval::{EvalReport, ScoredPair, evaluate, parse_pairs, roc_points, write_roc};
use crate::face::gallery::{self, Candidate};
use crate::face::{FaceError, Verification, VggOutput, Which, cosine};

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    a: PathBuf,
    b: PathBuf,
    #[command(flatten)]
    output: Output,
}

pub fn verify(settings: &Settings, args: VerifyArgs) -> Result<()> {
    let pool = open_pool(settings)?;
    let (first, second) = pool.analyze_pair_blocking(read(&args.a)?, read(&args.b)?)?;
    let verification = Verification::of(&first, &second, pool.threshold(), &pool.models().id)?;
    args.output.print(&verification)
}

impl Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.verified {
            "same person"
        } else {
            "different people"
        };
        writeln!(
            f,
            "similarity  {:.4}  (cosine distance {:.4})",
            self.similarity, self.distance
        )?;
        writeln!(
            f,
            "threshold   {:.2}  (distance {:.2})",
            self.threshold, self.distance_threshold
        )?;
        writeln!(f, "verdict     {verdict}")?;
        writeln!(f, "faces seen  {} / {}", self.faces[0], self.faces[1])?;
        writeln!(f, "model       {}", self.model)
    }
}

#[derive(Debug, clap::Args)]
pub struct IdentifyArgs {
    #[command(flatten)]
    pub(super) places: Places,
    #[arg(required = true)]
    images: Vec<PathBuf>,
    #[command(flatten)]
    output: Output,
}

/// One face found, or one image that could not be read.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Identified {
    Face {
        image: PathBuf,
        #[serde(rename = "box")]
        bbox: [f32; 4],
        person: Option<String>,
        similarity: Option<f32>,
        runner_up: Option<Candidate>,
    },
    Unreadable {
        image: PathBuf,
        error: String,
    },
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Identification(Vec<Identified>);

pub fn identify(settings: &Settings, args: IdentifyArgs) -> Result<()> {
    let pool = open_pool(settings)?;
    let (gallery, _) = load_gallery(settings, &pool, &open_store(settings)?, args.output.json)?;
    let threshold = pool.threshold();
    let mut rows = Vec::new();
    for image in args.images {
        match analyze_file(&pool, &image, Which::All) {
            Ok(analysis) => {
                for face in &analysis.faces {
                    let result = gallery.best_match(&face.embedding, threshold);
                    rows.push(Identified::Face {
                        image: image.clone(),
                        bbox: face.bbox.map(f32::round),
                        similarity: result.similarity(),
                        person: result.person,
                        runner_up: result.runner_up,
                    });
                }
            }
            Err(error) => rows.push(Identified::Unreadable {
                image,
                error: format!("{error:#}"),
            }),
        }
    }
    args.output.print(&Identification(rows))
}

impl Display for Identification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<32} {:<24} {:<16} {:>10}  runner-up",
            "image", "box", "person", "similarity"
        )?;
        for row in &self.0 {
            match row {
                Identified::Unreadable { image, error } => {
                    writeln!(f, "{:<32} {error}", image.display().to_string())?;
                }
                Identified::Face {
                    image,
                    bbox,
                    person,
                    similarity,
                    runner_up,
                } => {
                    let runner_up = runner_up.as_ref().map_or("-".to_string(), |r| {
                        format!("{} {:.3}", r.person, r.similarity)
                    });
                    writeln!(
                        f,
                        "{:<32} {:<24} {:<16} {:>10}  {runner_up}",
                        image.display().to_string(),
                        format!("{bbox:?}"),
                        person.as_deref().unwrap_or("(unknown)"),
                        similarity.map_or("-".into(), |s| format!("{s:.3}")),
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct RepresentArgs {
    image: PathBuf,
    /// VGG-Face's layer: fc8 (2622-d) or fc7 (4096-d)
    #[arg(long, value_name = "LAYER")]
    output: Option<VggOutput>,
    /// DeepFace's `skip`: no detection, the whole image resized and padded
    #[arg(long)]
    no_detect: bool,
    #[command(flatten)]
    print: Output,
}

impl RepresentArgs {
    pub(super) fn apply(&self, settings: &mut Settings) {
        if let Some(output) = self.output {
            settings.model_output = Some(output);
        }
    }
}

#[derive(Debug, Serialize)]
struct Representation {
    model: String,
    /// None: the whole image (no detection)
    #[serde(rename = "box")]
    bbox: Option<[f32; 4]>,
    dimensions: usize,
    embedding: Vec<f32>,
}

pub fn represent(settings: &Settings, args: RepresentArgs) -> Result<()> {
    let pool = open_pool(settings)?;
    let (bbox, embedding) = if args.no_detect {
        let bytes = read(&args.image)?;
        let embedding = pool.run_blocking(move |engine| engine.embed_whole_image(&bytes))??;
        (None, embedding)
    } else {
        let analysis = analyze_file(&pool, &args.image, Which::Best)?;
        let Some(face) = analysis.best() else {
            bail!(FaceError::NoFace);
        };
        (Some(face.bbox), face.embedding.clone())
    };
    args.print.print(&Representation {
        model: pool.models().id.clone(),
        bbox,
        dimensions: embedding.len(),
        embedding,
    })
}

impl Display for Representation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "model      {}", self.model)?;
        match self.bbox {
            Some(bbox) => writeln!(f, "box        {:?}", bbox.map(f32::round))?,
            None => writeln!(f, "box        none (the whole image)")?,
        }
        writeln!(f, "dimensions {}", self.dimensions)?;
        let head: Vec<String> = self
            .embedding
            .iter()
            .take(8)
            .map(|v| format!("{v:.4}"))
            .collect();
        writeln!(f, "embedding  [{}, ...]", head.join(", "))
    }
}

#[derive(Debug, clap::Args)]
pub struct ModelInputsArgs {
    /// Folder to write the .npy files into (made if missing)
    #[arg(long)]
    out: PathBuf,
    /// Photos, or folders of them (one level of subfolders too); default: the gallery
    photos: Vec<PathBuf>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct ModelInputs {
    model: String,
    #[serde(skip)]
    out: PathBuf,
    written: Vec<PathBuf>,
    skipped: Vec<Skipped>,
}

pub fn model_inputs(settings: &Settings, args: ModelInputsArgs) -> Result<()> {
    let mut sources = args.photos;
    if sources.is_empty() {
        sources.push(settings.gallery.clone());
    }
    let photos = photos_under(&sources)?;
    if photos.is_empty() {
        let names: Vec<String> = sources.iter().map(|p| p.display().to_string()).collect();
        bail!("no photos in {}", names.join(", "));
    }
    let out = args.out;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let pool = open_pool(settings)?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for (index, photo) in photos.iter().enumerate() {
        let bytes = read(photo)?;
        match pool.run_blocking(move |engine| engine.best_face_input(&bytes))? {
            Ok(input) => {
                let stem = photo.file_stem().unwrap_or_default().to_string_lossy();
                // numbered: two folders may hold photos of the same name
                let path = out.join(format!("{index:04}-{stem}.npy"));
                ndarray_npy::write_npy(&path, &input)
                    .with_context(|| format!("writing {}", path.display()))?;
                written.push(path);
            }
            Err(e) => skipped.push(Skipped {
                photo: photo.clone(),
                why: e.to_string(),
            }),
        }
    }
    args.output.print(&ModelInputs {
        model: pool.models().id.clone(),
        out,
        written,
        skipped,
    })
}

impl Display for ModelInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for skipped in &self.skipped {
            write!(f, "{skipped}")?;
        }
        writeln!(
            f,
            "wrote {} face inputs for {} to {} ({} photos skipped)",
            self.written.len(),
            self.model,
            self.out.display(),
            self.skipped.len()
        )
    }
}

/// The photos named, and those in the folders named and their subfolders (one level), sorted.
fn photos_under(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let entries = |dir: &Path| -> Result<Vec<PathBuf>> {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            paths.push(
                entry
                    .with_context(|| format!("reading {}", dir.display()))?
                    .path(),
            );
        }
        paths.sort();
        Ok(paths)
    };
    let mut photos = Vec::new();
    for source in sources {
        if source.is_file() {
            photos.push(source.clone());
            continue;
        }
        for path in entries(source)? {
            if path.is_dir() {
                photos.extend(entries(&path)?.into_iter().filter(|p| gallery::is_photo(p)));
            } else if gallery::is_photo(&path) {
                photos.push(path);
            }
        }
    }
    Ok(photos)
}

#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// default: the configured gallery
    dir: Option<PathBuf>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub(super) output: Output,
}

impl EnrollArgs {
    pub(super) fn apply(&self, settings: &mut Settings) {
        super::set_path(&mut settings.gallery, self.dir.as_ref());
        super::set_path(&mut settings.data_dir, self.data_dir.as_ref());
    }
}

#[derive(Debug, Serialize)]
struct Enrolment {
    model: String,
    people: usize,
    photos: usize,
    embedded: usize,
    from_cache: usize,
    skipped: Vec<SkippedPhoto>,
    /// each person and their number of templates
    #[serde(skip)]
    templates: Vec<(String, usize)>,
}

/// A gallery photo left out, as `enroll --json` has always named it.
#[derive(Debug, Serialize)]
struct SkippedPhoto {
    photo: PathBuf,
    reason: String,
}

pub fn enroll(settings: &Settings, args: EnrollArgs) -> Result<()> {
    let pool = open_pool(settings)?;
    let (gallery, report) =
        load_gallery(settings, &pool, &open_store(settings)?, args.output.json)?;
    args.output.print(&Enrolment {
        model: gallery.model_id.clone(),
        people: report.people,
        photos: report.photos,
        embedded: report.embedded,
        from_cache: report.from_cache,
        skipped: report
            .skipped
            .into_iter()
            .map(|(photo, reason)| SkippedPhoto { photo, reason })
            .collect(),
        templates: gallery
            .people()
            .iter()
            .map(|p| (p.name.clone(), p.templates.len()))
            .collect(),
    })
}

impl Display for Enrolment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<24} templates", "person")?;
        for (person, templates) in &self.templates {
            writeln!(f, "{person:<24} {templates}")?;
        }
        writeln!(
            f,
            "{} people, {} photos: {} embedded, {} from the cache, {} skipped",
            self.people,
            self.photos,
            self.embedded,
            self.from_cache,
            self.skipped.len()
        )
    }
}

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// CSV with file_x,file_y,Decision rows
    #[arg(long)]
    pairs: PathBuf,
    /// Folder holding the photos the pairs name
    #[arg(long)]
    images: PathBuf,
    /// Write the ROC curve here (.svg or .png)
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct Evaluation {
    #[serde(flatten)]
    report: EvalReport,
    /// pairs left out: a photo without a face
    skipped_pairs: usize,
    model: String,
    #[serde(skip)]
    plot: Option<PathBuf>,
}

pub fn eval(settings: &Settings, args: EvalArgs) -> Result<()> {
    let file = std::fs::File::open(&args.pairs)
        .with_context(|| format!("reading {}", args.pairs.display()))?;
    let pairs = parse_pairs(file).with_context(|| args.pairs.display().to_string())?;
    let pool = open_pool(settings)?;
    let files: BTreeSet<String> = pairs
        .iter()
        .flat_map(|p| [p.file_x.clone(), p.file_y.clone()])
        .collect();
    let bar = if args.output.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(files.len() as u64)
    };
    let jobs: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|f| (args.images.join(&f), f))
        .map(|(path, name)| (name, path))
        .collect();
    let results = pool.map_blocking(
        jobs,
        |engine, (name, path)| {
            let analysis = std::fs::read(&path)
                .map_err(|source| FaceError::Io { path, source })
                .and_then(|bytes| engine.analyze_bytes(&bytes, Which::Best));
            (name, analysis)
        },
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let mut embeddings = BTreeMap::new();
    for result in results {
        let (name, analysis) = result?;
        match analysis {
            Ok(analysis) => {
                if let Some(face) = analysis.faces.into_iter().next() {
                    embeddings.insert(name, face.embedding);
                }
            }
            Err(error) => tracing::warn!("{name}: {error}"),
        }
    }
    let scored: Vec<ScoredPair> = pairs
        .iter()
        .filter_map(|p| {
            let (x, y) = (embeddings.get(&p.file_x)?, embeddings.get(&p.file_y)?);
            Some(ScoredPair {
                similarity: cosine(x, y),
                same_person: p.same_person,
            })
        })
        .collect();
    let report = evaluate(&scored, pool.threshold());
    if let Some(plot) = &args.plot {
        write_roc(plot, &roc_points(&scored), report.auc)
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    args.output.print(&Evaluation {
        report,
        skipped_pairs: pairs.len() - scored.len(),
        model: pool.models().id.clone(),
        plot: args.plot,
    })
}

impl Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let report = &self.report;
        writeln!(f, "model                {}", self.model)?;
        writeln!(
            f,
            "pairs                {} ({} skipped: a photo without a face)",
            report.pairs, self.skipped_pairs
        )?;
        writeln!(f, "AUC                  {:.4}", report.auc)?;
        writeln!(f, "threshold            {:.3}", report.threshold)?;
        writeln!(f, "accuracy             {:.2}%", report.accuracy * 100.0)?;
        writeln!(
            f,
            "false matches        {} of {} different-person pairs",
            report.false_matches, report.impostor_pairs
        )?;
        writeln!(
            f,
            "false non-matches    {} of {} same-person pairs",
            report.false_non_matches, report.genuine_pairs
        )?;
        writeln!(
            f,
            "best threshold       {:.3} ({:.2}%)",
            report.best_threshold,
            report.best_accuracy * 100.0
        )?;
        if let Some(plot) = &self.plot {
            writeln!(f, "ROC curve            {}", plot.display())?;
        }
        Ok(())
    }
}

#[derive(Debug, clap::Args)]
pub struct PadEvalArgs {
    /// Folder of photos with an identities.csv (file,person): DeepFace's test photos in
    /// ../shared/data/deepface-faces
    #[arg(long)]
    faces: PathBuf,
    #[command(flatten)]
    output: Output,
}

pub fn pad_eval(settings: &Settings, args: PadEvalArgs) -> Result<()> {
    let mut settings = settings.clone();
    // the passive liveness score is one of PAD's signals
    settings.engine.liveness = true;
    let pool = std::sync::Arc::new(open_pool(&settings)?);
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(crate::access::pad_eval::evaluate(
        &settings,
        pool,
        &args.faces,
    ))?;
    args.output.print(&report)
}
