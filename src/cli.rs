//! The command line: every subcommand prints a readable table, or JSON with `--json`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::app::App;
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::device_sim as sim;
use crate::face::eval::{ScoredPair, evaluate, parse_pairs, roc_points, write_roc};
use crate::face::gallery::{self, EnrollReport, Gallery};
use crate::face::int8::CpuFeatures;
use crate::face::{
    EnginePool, FaceAnalysis, FaceError, ModelName, Precision, VggOutput, Which, cosine,
};
use crate::lift::{Device, Link, Secret, valid_device_name};
use crate::store::Store;
use crate::web;

#[derive(Debug, Parser)]
#[command(name = "facelift", version, about = "Log in to a lift with your face")]
pub struct Cli {
    /// TOML configuration file (default: $FACELIFT_CONFIG, else ./facelift.toml if present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder holding the model files
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model set to use
    #[arg(long, global = true, value_name = "NAME")]
    pub model: Option<ModelName>,
    /// VGG-Face's weights: fp32 (as converted) or int8 (made by scripts/quantize-vggface)
    #[arg(long, global = true, value_name = "PRECISION")]
    pub precision: Option<Precision>,
    /// ONNX Runtime threads per engine
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Engines working in parallel
    #[arg(long, global = true)]
    pub workers: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Are the faces in two photos the same person?
    Verify {
        a: PathBuf,
        b: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Who is every face in these images?
    Identify {
        /// Enrolled people, one folder each (default: the configured gallery)
        #[arg(long)]
        gallery: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The embedding of the best face in an image
    Represent {
        image: PathBuf,
        /// VGG-Face's layer: fc8 (2622-d) or fc7 (4096-d)
        #[arg(long, value_name = "LAYER")]
        output: Option<VggOutput>,
        /// DeepFace's `skip`: no detection, the whole image resized and padded
        #[arg(long)]
        no_detect: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the embedding model's input for the best face of each photo as .npy: the face
    /// crops scripts/quantize-vggface calibrates and checks the int8 model on
    ModelInputs {
        /// Folder to write the .npy files into (made if missing)
        #[arg(long)]
        out: PathBuf,
        /// Photos, or folders of them (one level of subfolders too); default: the gallery
        photos: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Run the server
    Serve {
        #[arg(long)]
        bind: Option<String>,
        #[arg(long)]
        gallery: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve HTTPS with this PEM certificate chain (with --tls-key)
        #[arg(long, value_name = "FILE")]
        tls_cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        tls_key: Option<PathBuf>,
        /// Serve HTTPS with a self-signed certificate, made once and kept in <data-dir>/tls/
        #[arg(long)]
        tls_self_signed: bool,
    },
    /// Embed (or re-embed) the enrolled photos into the cache
    Enroll {
        /// default: the configured gallery
        dir: Option<PathBuf>,
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Accuracy on labelled pairs: AUC, accuracy, error rates, best threshold
    Eval {
        /// CSV with file_x,file_y,Decision rows
        #[arg(long)]
        pairs: PathBuf,
        /// Folder holding the photos the pairs name
        #[arg(long)]
        images: PathBuf,
        /// Write the ROC curve here (.svg or .png)
        #[arg(long)]
        plot: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Register, list or remove lift controllers (kept in <data-dir>/facelift.db)
    Device {
        #[command(subcommand)]
        action: DeviceAction,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// Enrolled people: add one from photos (the first person, the first administrator), list
    /// them, remove one
    Person {
        #[command(subcommand)]
        action: PersonAction,
        /// Enrolled people, one folder each (default: the configured gallery)
        #[arg(long, global = true)]
        gallery: Option<PathBuf>,
        #[arg(long, global = true)]
        data_dir: Option<PathBuf>,
    },
    /// A simulated lift controller speaking the device protocol: try the system without hardware
    DeviceSim(DeviceSimArgs),
    /// The CPU features ONNX Runtime's int8 kernels depend on, and the int8 format
    /// scripts/quantize-vggface picks for this CPU
    Cpu {
        #[arg(long)]
        json: bool,
    },
    /// Time every stage against raw ONNX Runtime, in one run
    Bench {
        /// default: a 1280x720 webcam frame from shared/data/frames
        #[arg(long)]
        image: Option<PathBuf>,
        /// The second photo of the timed verify (default: a second 1280x720 webcam frame)
        #[arg(long)]
        second: Option<PathBuf>,
        #[arg(long, default_value_t = 30)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceAction {
    /// Register a device (or give it a new secret) and print its secret, once
    Add {
        name: String,
        /// The server sends commands to the device at this base URL
        #[arg(long, value_name = "URL", group = "link", required = true)]
        push: Option<String>,
        /// The device fetches its commands by long poll (a device behind NAT)
        #[arg(long, group = "link")]
        pull: bool,
        /// The device is on this serial port
        #[arg(long, value_name = "PORT", group = "link")]
        serial: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The registered devices (without their secrets)
    List {
        #[arg(long)]
        json: bool,
    },
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PersonAction {
    /// Enrol a person from photos: each must show exactly one usable face, is copied into the
    /// person's folder and embedded at once (photos of an already enrolled person add to theirs)
    Add {
        /// The name shown at login and used in `web.admins`: 1 to 64 letters, digits, - or _
        name: String,
        photos: Vec<PathBuf>,
        /// Also make them an administrator (they may then enrol others from /admin)
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        json: bool,
    },
    /// The enrolled people, their number of photos, and who is an administrator
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a person: their folder of photos and their administrator mark
    Remove { name: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SimMode {
    Push,
    Pull,
    Serial,
}

#[derive(Debug, clap::Args)]
pub struct DeviceSimArgs {
    /// The device's registered name
    #[arg(long)]
    name: String,
    /// The device's secret, as `facelift device add` printed it
    #[arg(long, env = "FACELIFT_DEVICE_SECRET", hide_env_values = true)]
    secret: String,
    /// The facelift server's base URL (default: the configured `bind`, over https when the
    /// configuration serves TLS)
    #[arg(long)]
    server: Option<String>,
    /// A certificate (PEM) to trust for an https server (default: the server's self-signed one
    /// in <data_dir>/tls/ when the configuration uses it)
    #[arg(long, value_name = "FILE")]
    server_cert: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = SimMode::Push)]
    mode: SimMode,
    /// Push: where the simulator listens for commands
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
    /// Serial: the port to use (default: make a pseudo-terminal pair and print the server's end)
    #[arg(long, value_name = "PORT")]
    serial: Option<PathBuf>,
    /// default: the configured lowest floor
    #[arg(long, allow_hyphen_values = true)]
    lowest: Option<i32>,
    /// default: the configured highest floor
    #[arg(long, allow_hyphen_values = true)]
    highest: Option<i32>,
    #[arg(long, allow_hyphen_values = true)]
    start_floor: Option<i32>,
    #[arg(long, default_value_t = 1500)]
    travel_ms_per_floor: u64,
    #[arg(long, default_value_t = 5)]
    heartbeat_secs: u64,
    /// Fault: accept commands and never move
    #[arg(long)]
    drop_commands: bool,
    /// Fault: hold every report back this long
    #[arg(long, default_value_t = 0)]
    delay_reports_ms: u64,
    /// Fault: go silent (no reports, no polls) after this many seconds
    #[arg(long)]
    silent_after_secs: Option<u64>,
    /// Fault: stop one floor short and report that floor
    #[arg(long)]
    wrong_floor: bool,
}

pub fn run(cli: Cli) -> Result<()> {
    let settings = load_settings(&cli)?;
    match cli.command {
        Command::Verify { a, b, json } => verify(&settings, &a, &b, json),
        Command::Identify { images, json, .. } => identify(&settings, &images, json),
        Command::Represent {
            image,
            no_detect,
            json,
            ..
        } => represent(&settings, &image, no_detect, json),
        Command::ModelInputs { out, photos, json } => model_inputs(&settings, &out, photos, json),
        Command::Serve { .. } => serve(settings),
        Command::Enroll { json, .. } => enroll(&settings, json),
        Command::Eval {
            pairs,
            images,
            plot,
            json,
        } => eval(&settings, &pairs, &images, plot.as_deref(), json),
        Command::Bench {
            image,
            second,
            iterations,
            json,
        } => crate::bench::run(
            &settings,
            crate::bench::Inputs {
                image: image.as_deref(),
                second: second.as_deref(),
            },
            iterations,
            json,
        ),
        Command::Device { action, .. } => device(&settings, action),
        Command::Person { action, .. } => person(&settings, action),
        Command::DeviceSim(args) => device_sim(&settings, args),
        Command::Cpu { json } => cpu(json),
    }
}

/// Flags become the last configuration layer, over the file and the environment.
fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let set = |field: &mut PathBuf, flag: &Option<PathBuf>| {
        if let Some(value) = flag {
            field.clone_from(value);
        }
    };
    set(&mut settings.models_dir, &cli.models_dir);
    if let Some(model) = cli.model {
        settings.model = model;
    }
    if let Some(precision) = cli.precision {
        settings.model_precision = Some(precision);
    }
    if let Some(threads) = cli.threads {
        settings.engine.threads = threads;
    }
    if let Some(workers) = cli.workers {
        settings.workers = workers;
    }
    match &cli.command {
        Command::Serve {
            bind,
            gallery,
            data_dir,
            tls_cert,
            tls_key,
            tls_self_signed,
        } => {
            if let Some(bind) = bind {
                settings.bind.clone_from(bind);
            }
            set(&mut settings.gallery, gallery);
            set(&mut settings.data_dir, data_dir);
            if tls_cert.is_some() {
                settings.tls.cert.clone_from(tls_cert);
            }
            if tls_key.is_some() {
                settings.tls.key.clone_from(tls_key);
            }
            settings.tls.self_signed |= tls_self_signed;
        }
        Command::Identify {
            gallery, data_dir, ..
        }
        | Command::Person {
            gallery, data_dir, ..
        } => {
            set(&mut settings.gallery, gallery);
            set(&mut settings.data_dir, data_dir);
        }
        Command::Enroll { dir, data_dir, .. } => {
            set(&mut settings.gallery, dir);
            set(&mut settings.data_dir, data_dir);
        }
        Command::Device { data_dir, .. } => set(&mut settings.data_dir, data_dir),
        Command::Represent {
            output: Some(output),
            ..
        } => settings.model_output = Some(*output),
        _ => {}
    }
    Ok(settings)
}

fn open_pool(settings: &Settings) -> Result<EnginePool> {
    crate::open_engine_pool(settings).context("starting the face engine")
}

fn analyze_file(pool: &EnginePool, path: &Path, which: Which) -> Result<FaceAnalysis> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    pool.run_blocking(move |engine| engine.analyze_bytes(&bytes, which))?
        .with_context(|| path.display().to_string())
}

/// Photos left out, with why, as the JSON of `model-inputs` and `person add` lists them.
fn skipped_json(skipped: &[(PathBuf, String)]) -> Vec<Value> {
    skipped
        .iter()
        .map(|(photo, why)| json!({"photo": photo, "why": why}))
        .collect()
}

fn print_skipped(skipped: &[(PathBuf, String)]) {
    for (photo, why) in skipped {
        println!("skipped {}: {why}", photo.display());
    }
}

fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn verify(settings: &Settings, a: &Path, b: &Path, json_out: bool) -> Result<()> {
    let pool = open_pool(settings)?;
    let read =
        |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let (first, second) = pool.analyze_pair_blocking(read(a)?, read(b)?)?;
    let (Some(x), Some(y)) = (first.best(), second.best()) else {
        bail!(FaceError::NoFace);
    };
    let similarity = cosine(&x.embedding, &y.embedding);
    let threshold = pool.threshold();
    let verified = similarity >= threshold;
    if json_out {
        return print_json(&json!({
            "similarity": similarity,
            "verified": verified,
            "threshold": threshold,
            // DeepFace's terms: cosine distance and its threshold
            "distance": 1.0 - similarity,
            "distance_threshold": 1.0 - threshold,
            "model": pool.models().id,
            "faces": [first.faces_seen, second.faces_seen],
        }));
    }
    println!(
        "similarity  {similarity:.4}  (cosine distance {:.4})",
        1.0 - similarity
    );
    println!(
        "threshold   {threshold:.2}  (distance {:.2})",
        1.0 - threshold
    );
    println!(
        "verdict     {}",
        if verified {
            "same person"
        } else {
            "different people"
        }
    );
    println!("faces seen  {} / {}", first.faces_seen, second.faces_seen);
    println!("model       {}", pool.models().id);
    Ok(())
}

fn open_store(settings: &Settings) -> Result<Store> {
    Ok(crate::app::open_store(settings)?)
}

/// A bar for embedding the configured gallery (hidden when `quiet`).
fn gallery_progress_bar(settings: &Settings, quiet: bool) -> Result<ProgressBar> {
    let total: usize = gallery::scan(&settings.gallery)
        .with_context(|| format!("reading the gallery {}", settings.gallery.display()))?
        .values()
        .map(Vec::len)
        .sum();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64)
    };
    // after a switch of model every photo is embedded again, which takes a while with VGG-Face
    let template = format!(
        "embedding the gallery with {} {{bar:30}} {{pos}}/{{len}} photos {{elapsed}}",
        settings.model
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Ok(bar)
}

/// Builds the configured gallery through the SQLite cache, with a progress bar on a terminal.
fn load_gallery(
    settings: &Settings,
    pool: &EnginePool,
    store: &Store,
    quiet: bool,
) -> Result<(Gallery, EnrollReport)> {
    let bar = gallery_progress_bar(settings, quiet)?;
    let result = gallery::build(&settings.gallery, pool, store, &|| bar.inc(1));
    bar.finish_and_clear();
    let (gallery, report) = result?;
    for (path, reason) in &report.skipped {
        tracing::warn!("skipped {}: {reason}", path.display());
    }
    Ok((gallery, report))
}

fn identify(settings: &Settings, images: &[PathBuf], json_out: bool) -> Result<()> {
    let pool = open_pool(settings)?;
    let (gallery, _) = load_gallery(settings, &pool, &open_store(settings)?, json_out)?;
    let threshold = pool.threshold();
    let mut rows = Vec::new();
    for image in images {
        match analyze_file(&pool, image, Which::All) {
            Ok(analysis) => {
                for face in &analysis.faces {
                    let result = gallery.best_match(&face.embedding, threshold);
                    rows.push(json!({
                        "image": image,
                        "box": face.bbox.map(|v| v.round()),
                        "person": result.person,
                        "similarity": result.similarity(),
                        "runner_up": result.runner_up,
                    }));
                }
            }
            Err(error) => rows.push(json!({ "image": image, "error": format!("{error:#}") })),
        }
    }
    if json_out {
        return print_json(&Value::Array(rows));
    }
    println!(
        "{:<32} {:<24} {:<16} {:>10}  runner-up",
        "image", "box", "person", "similarity"
    );
    for row in &rows {
        let image = row["image"].as_str().unwrap_or_default();
        if let Some(error) = row.get("error") {
            println!("{image:<32} {}", error.as_str().unwrap_or_default());
            continue;
        }
        let runner_up = match &row["runner_up"] {
            Value::Null => "-".to_string(),
            r => format!(
                "{} {:.3}",
                r["person"].as_str().unwrap_or("?"),
                r["similarity"].as_f64().unwrap_or(0.0)
            ),
        };
        println!(
            "{:<32} {:<24} {:<16} {:>10}  {runner_up}",
            image,
            row["box"].to_string(),
            row["person"].as_str().unwrap_or("(unknown)"),
            row["similarity"]
                .as_f64()
                .map_or("-".into(), |s| format!("{s:.3}")),
        );
    }
    Ok(())
}

fn represent(settings: &Settings, image: &Path, no_detect: bool, json_out: bool) -> Result<()> {
    let pool = open_pool(settings)?;
    let (bbox, embedding) = if no_detect {
        let bytes = std::fs::read(image).with_context(|| format!("reading {}", image.display()))?;
        let embedding = pool.run_blocking(move |engine| engine.embed_whole_image(&bytes))??;
        (None, embedding)
    } else {
        let analysis = analyze_file(&pool, image, Which::Best)?;
        let Some(face) = analysis.best() else {
            bail!(FaceError::NoFace);
        };
        (Some(face.bbox), face.embedding.clone())
    };
    if json_out {
        return print_json(&json!({
            "model": pool.models().id,
            "box": bbox,
            "dimensions": embedding.len(),
            "embedding": embedding,
        }));
    }
    println!("model      {}", pool.models().id);
    match bbox {
        Some(bbox) => println!("box        {:?}", bbox.map(|v| v.round())),
        None => println!("box        none (the whole image)"),
    }
    println!("dimensions {}", embedding.len());
    let head: Vec<String> = embedding
        .iter()
        .take(8)
        .map(|v| format!("{v:.4}"))
        .collect();
    println!("embedding  [{}, ...]", head.join(", "));
    Ok(())
}

fn model_inputs(
    settings: &Settings,
    out: &Path,
    mut sources: Vec<PathBuf>,
    json_out: bool,
) -> Result<()> {
    if sources.is_empty() {
        sources.push(settings.gallery.clone());
    }
    let photos = photos_under(&sources)?;
    if photos.is_empty() {
        bail!("no photos in {}", display_paths(&sources));
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let pool = open_pool(settings)?;
    let mut written = Vec::new();
    let mut skipped = Vec::new();
    for (index, photo) in photos.iter().enumerate() {
        let bytes = std::fs::read(photo).with_context(|| format!("reading {}", photo.display()))?;
        match pool.run_blocking(move |engine| engine.best_face_input(&bytes))? {
            Ok(input) => {
                let stem = photo.file_stem().unwrap_or_default().to_string_lossy();
                // numbered: two folders may hold photos of the same name
                let path = out.join(format!("{index:04}-{stem}.npy"));
                let shape: Vec<usize> = input.shape().to_vec();
                let values = input.as_standard_layout();
                write_npy_f32(&path, &shape, values.as_slice().unwrap_or_default())?;
                written.push(path);
            }
            Err(e) => skipped.push((photo.clone(), e.to_string())),
        }
    }
    if json_out {
        return print_json(&json!({
            "model": pool.models().id,
            "written": written,
            "skipped": skipped_json(&skipped),
        }));
    }
    print_skipped(&skipped);
    println!(
        "wrote {} face inputs for {} to {} ({} photos skipped)",
        written.len(),
        pool.models().id,
        out.display(),
        skipped.len()
    );
    Ok(())
}

/// The photos named, and those in the folders named and their subfolders (one level), sorted.
fn photos_under(sources: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut photos = Vec::new();
    for source in sources {
        if source.is_file() {
            photos.push(source.clone());
            continue;
        }
        let entries = |dir: &Path| -> Result<Vec<PathBuf>> {
            let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .collect();
            paths.sort();
            Ok(paths)
        };
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

fn display_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    names.join(", ")
}

/// A float32 `.npy` file (format 1.0, little-endian, C order), as numpy's `np.load` reads it.
fn write_npy_f32(path: &Path, shape: &[usize], values: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape_text = match dims.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", dims.join(", ")),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // magic (6) + version (2) + header length (2) + header, padded to 64 bytes with a newline
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + 4 * values.len());
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    let header_len = u16::try_from(header.len()).context("npy header too long")?;
    bytes.extend_from_slice(&header_len.to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for value in values {
        bytes.extend_from_slice(&value.to_le_bytes());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

fn enroll(settings: &Settings, json_out: bool) -> Result<()> {
    let pool = open_pool(settings)?;
    let (gallery, report) = load_gallery(settings, &pool, &open_store(settings)?, json_out)?;
    if json_out {
        return print_json(&json!({
            "model": gallery.model_id,
            "people": report.people,
            "photos": report.photos,
            "embedded": report.embedded,
            "from_cache": report.from_cache,
            "skipped": report.skipped.iter().map(|(p, r)| json!({"photo": p, "reason": r})).collect::<Vec<_>>(),
        }));
    }
    println!("{:<24} templates", "person");
    for person in &gallery.people {
        println!("{:<24} {}", person.name, person.templates.len());
    }
    println!(
        "{} people, {} photos: {} embedded, {} from the cache, {} skipped",
        report.people,
        report.photos,
        report.embedded,
        report.from_cache,
        report.skipped.len()
    );
    Ok(())
}

fn eval(
    settings: &Settings,
    pairs_file: &Path,
    images: &Path,
    plot: Option<&Path>,
    json_out: bool,
) -> Result<()> {
    let text = std::fs::read_to_string(pairs_file)
        .with_context(|| format!("reading {}", pairs_file.display()))?;
    let pairs = parse_pairs(&text).map_err(anyhow::Error::msg)?;
    let pool = open_pool(settings)?;

    let files: Vec<String> = pairs
        .iter()
        .flat_map(|p| [p.file_x.clone(), p.file_y.clone()])
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let bar = if json_out {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(files.len() as u64)
    };
    let jobs: Vec<(String, PathBuf)> = files.iter().map(|f| (f.clone(), images.join(f))).collect();
    let results = pool.map_blocking(
        jobs,
        |engine, (name, path)| {
            let analysis = std::fs::read(&path)
                .map_err(|source| FaceError::Io {
                    path: path.to_path_buf(),
                    source,
                })
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
    let skipped = pairs.len() - scored.len();
    let report = evaluate(&scored, pool.threshold());
    if let Some(plot) = plot {
        write_roc(plot, &roc_points(&scored), report.auc)
            .with_context(|| format!("writing {}", plot.display()))?;
    }
    if json_out {
        let mut value = serde_json::to_value(&report)?;
        value["skipped_pairs"] = json!(skipped);
        value["model"] = json!(pool.models().id);
        return print_json(&value);
    }
    println!("model                {}", pool.models().id);
    println!(
        "pairs                {} ({} skipped: a photo without a face)",
        report.pairs, skipped
    );
    println!("AUC                  {:.4}", report.auc);
    println!("threshold            {:.3}", report.threshold);
    println!("accuracy             {:.2}%", report.accuracy * 100.0);
    println!(
        "false matches        {} of {} different-person pairs",
        report.false_matches, report.impostor_pairs
    );
    println!(
        "false non-matches    {} of {} same-person pairs",
        report.false_non_matches, report.genuine_pairs
    );
    println!(
        "best threshold       {:.3} ({:.2}%)",
        report.best_threshold,
        report.best_accuracy * 100.0
    );
    if let Some(plot) = plot {
        println!("ROC curve            {}", plot.display());
    }
    Ok(())
}

fn serve(settings: Settings) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = std::net::TcpListener::bind(&settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let address = listener.local_addr()?;
        let bar = gallery_progress_bar(&settings, false)?;
        let progress = bar.clone();
        let parts = crate::app::Parts {
            on_photo: Some(Arc::new(move || progress.inc(1))),
            ..crate::app::Parts::default()
        };
        let app = App::build(settings, parts).await;
        bar.finish_and_clear();
        let app = app?;
        let report = &app.gallery;
        tracing::info!(
            people = report.people,
            photos = report.photos,
            embedded = report.embedded,
            from_cache = report.from_cache,
            "gallery ready"
        );
        let scheme = if app.tls.is_some() { "https" } else { "http" };
        tracing::info!("listening on {scheme}://{address}");
        app.serve(listener, web::shutdown_signal()).await?;
        Ok(())
    })
}

fn device(settings: &Settings, action: DeviceAction) -> Result<()> {
    let store = open_store(settings)?;
    match action {
        DeviceAction::Add {
            name,
            push,
            pull,
            serial,
            json,
        } => {
            if !valid_device_name(&name) {
                bail!("a device name is 1 to 64 letters, digits, '-' or '_'");
            }
            let link = match (push, pull, serial) {
                (Some(url), _, _) => {
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        bail!("--push takes the device's base URL, such as http://192.168.1.50");
                    }
                    Link::Push { url }
                }
                (None, true, _) => Link::Pull,
                (None, false, Some(path)) => Link::Serial { path },
                (None, false, None) => bail!("choose one of --push URL, --pull, --serial PORT"),
            };
            let device = Device {
                name,
                secret: Secret::generate(),
                link,
            };
            store.put_device(&device.to_row())?;
            if json {
                println!(
                    "{}",
                    json!({"name": device.name, "secret": device.secret.expose(), "link": format!("{:?}", device.link)})
                );
            } else {
                println!("Registered {} ({:?}).", device.name, device.link);
                println!("Its secret, shown this once; put it in the firmware's config.h:");
                println!();
                println!("  #define FACELIFT_DEVICE_ID \"{}\"", device.name);
                println!(
                    "  #define FACELIFT_DEVICE_SECRET \"{}\"",
                    device.secret.expose()
                );
                println!();
                println!("Restart the server to use it.");
            }
        }
        DeviceAction::List { json } => {
            let devices = store.devices()?;
            let rows: Vec<Value> = devices
                .iter()
                .map(|d| json!({"name": d.name, "link": d.link, "address": d.address}))
                .collect();
            if json {
                println!("{}", Value::Array(rows));
            } else if devices.is_empty() {
                println!(
                    "No device registered; add one with `facelift device add NAME --push URL|--pull|--serial PORT`."
                );
            } else {
                for d in devices {
                    println!(
                        "{:<20} {:<7} {}",
                        d.name,
                        d.link,
                        d.address.unwrap_or_default()
                    );
                }
            }
        }
        DeviceAction::Remove { name } => {
            if !store.remove_device(&name)? {
                bail!("no device named {name}");
            }
            println!("Removed {name}; restart the server.");
        }
    }
    Ok(())
}

fn person(settings: &Settings, action: PersonAction) -> Result<()> {
    let store = open_store(settings)?;
    match action {
        PersonAction::Add {
            name,
            photos,
            admin,
            json,
        } => person_add(settings, &store, &name, &photos, admin, json),
        PersonAction::List { json } => {
            let people = if settings.gallery.exists() {
                gallery::scan(&settings.gallery).with_context(|| {
                    format!("reading the gallery {}", settings.gallery.display())
                })?
            } else {
                BTreeMap::new()
            };
            let rows = people
                .iter()
                .map(|(name, photos)| {
                    let admin =
                        crate::access::is_administrator(&settings.web.admins, &store, name)?;
                    Ok((name, photos.len(), admin))
                })
                .collect::<Result<Vec<_>>>()?;
            if json {
                let rows: Vec<Value> = rows
                    .iter()
                    .map(|(name, photos, admin)| json!({"name": name, "photos": photos, "admin": admin}))
                    .collect();
                return print_json(&json!(rows));
            }
            if people.is_empty() {
                println!(
                    "No one is enrolled in {}: add someone with `facelift person add NAME PHOTO... --admin`.",
                    settings.gallery.display()
                );
            }
            for (name, photos, admin) in rows {
                let role = if admin { "  administrator" } else { "" };
                println!("{name:<24} {photos} photos{role}");
            }
            Ok(())
        }
        PersonAction::Remove { name } => {
            if !gallery::valid_person_name(&name) {
                bail!("a name is 1 to 64 letters, digits, '-' or '_'");
            }
            let folder = settings.gallery.join(&name);
            let had_photos = folder.is_dir();
            if had_photos {
                std::fs::remove_dir_all(&folder)
                    .with_context(|| format!("removing {}", folder.display()))?;
            }
            let was_admin = store.is_admin(&name)?;
            store.set_admin(&name, false)?;
            if !had_photos && !was_admin {
                bail!(
                    "no one called {name} is enrolled in {}",
                    settings.gallery.display()
                );
            }
            println!("Removed {name}; restart the server for it to forget them.");
            if settings.web.admins.contains(&name) {
                println!("{name} is still listed in web.admins in the configuration.");
            }
            Ok(())
        }
    }
}

/// `facelift person add`: every photo checked for exactly one usable face before anything is
/// written; the photos that pass are saved and embedded into the cache, so that the server
/// starts with them at once.
fn person_add(
    settings: &Settings,
    store: &Store,
    name: &str,
    photos: &[PathBuf],
    admin: bool,
    json_out: bool,
) -> Result<()> {
    if !gallery::valid_person_name(name) {
        bail!(
            "a name is 1 to 64 letters, digits, '-' or '_' (it names their folder in the gallery)"
        );
    }
    let already = gallery::scan(&settings.gallery)
        .map(|people| people.get(name).map_or(0, Vec::len))
        .unwrap_or(0);
    if photos.is_empty() && !(admin && already > 0) {
        bail!("give at least one photo of {name} (3 to 5, in different light, are better)");
    }
    let (mut added, mut skipped) = (Vec::new(), Vec::new());
    if !photos.is_empty() {
        let pool = open_pool(settings)?;
        let cache_key = pool.cache_key();
        let now = SystemClock.now();
        for path in photos {
            let checked = std::fs::read(path)
                .with_context(|| format!("reading {}", path.display()))
                .and_then(|bytes| {
                    let checked = pool.run_blocking(move |engine| {
                        let analysis = engine.analyze_bytes(&bytes, Which::Single);
                        analysis.map(|analysis| (bytes, analysis))
                    })??;
                    Ok(checked)
                });
            match checked {
                Ok((bytes, analysis)) => {
                    let embedding = &analysis.faces[0].embedding;
                    let saved = gallery::save_photo(
                        &settings.gallery,
                        name,
                        &bytes,
                        now,
                        (store, &cache_key, embedding),
                    )
                    .with_context(|| format!("saving {} in the gallery", path.display()))?;
                    added.push(saved);
                }
                Err(why) => skipped.push((path.clone(), format!("{why:#}"))),
            }
        }
        if added.is_empty() {
            for (path, why) in &skipped {
                eprintln!("{}: {why}", path.display());
            }
            bail!("no photo of {name} showed exactly one usable face; nothing was enrolled");
        }
    }
    if admin {
        store.set_admin(name, true)?;
    }
    if json_out {
        return print_json(&json!({
            "person": name,
            "added": added,
            "photos": already + added.len(),
            "admin": crate::access::is_administrator(&settings.web.admins, store, name)?,
            "skipped": skipped_json(&skipped),
        }));
    }
    print_skipped(&skipped);
    println!(
        "Enrolled {name}: {} photo(s) added, {} in all, in {}.",
        added.len(),
        already + added.len(),
        settings.gallery.join(name).display()
    );
    if admin {
        println!(
            "{name} is an administrator: they may open /admin and enrol others from the camera."
        );
    }
    println!(
        "A running server picks the new photos up when restarted (scripts/run); \
         enrolments made on /admin count at once."
    );
    Ok(())
}

fn cpu(json_out: bool) -> Result<()> {
    let features = CpuFeatures::detect();
    let model_name = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .and_then(|rest| rest.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    if json_out {
        return print_json(&json!({
            "cpu": model_name,
            "features": features.names(),
            "int8_kernels": features.int8_kernels(),
            "int8_format": features.recommended_int8_format(),
        }));
    }
    println!("CPU            {model_name}");
    println!("int8 features  {}", features.names().join(" "));
    println!("int8 kernels   {}", features.int8_kernels());
    println!(
        "int8 format    {} (what scripts/quantize-vggface makes here)",
        features.recommended_int8_format()
    );
    Ok(())
}

/// The server this configuration serves, as a device on this machine reaches it: the `bind`
/// address (loopback for an unspecified one), over https when TLS is configured.
fn configured_server_url(settings: &Settings) -> String {
    let scheme = if settings.tls.self_signed || settings.tls.cert.is_some() {
        "https"
    } else {
        "http"
    };
    let address = match settings.bind.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback: std::net::IpAddr = if address.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            std::net::SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => settings.bind.clone(),
    };
    format!("{scheme}://{address}")
}

fn device_sim(settings: &Settings, args: DeviceSimArgs) -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let lowest = args.lowest.unwrap_or(settings.lift.lowest_floor);
        let highest = args.highest.unwrap_or(settings.lift.highest_floor);
        let mut pseudo_terminal = None;
        let link = match args.mode {
            SimMode::Push => sim::SimLink::Push {
                listen: args.listen,
            },
            SimMode::Pull => sim::SimLink::Pull,
            SimMode::Serial => match &args.serial {
                Some(path) => sim::SimLink::Serial(crate::lift::serial::open(path)?),
                None => {
                    let mut pair = crate::lift::serial::PseudoTerminal::open()?;
                    let port = pair
                        .take_device_end()
                        .context("the pseudo-terminal has no device end")?;
                    println!("serial line for the server: {}", pair.path.display());
                    println!(
                        "register it with: facelift device add {} --serial {}",
                        args.name,
                        pair.path.display()
                    );
                    pseudo_terminal = Some(pair);
                    sim::SimLink::Serial(port)
                }
            },
        };
        let server = args
            .server
            .clone()
            .unwrap_or_else(|| configured_server_url(settings));
        let certificate_file = args
            .server_cert
            .clone()
            .or_else(|| web::self_signed_certificate(settings));
        let server_certificate = match certificate_file {
            Some(path) if server.starts_with("https://") => {
                Some(std::fs::read(&path).with_context(|| {
                    format!("reading the server's certificate {}", path.display())
                })?)
            }
            _ => None,
        };
        let handle = sim::start(sim::SimConfig {
            device_id: args.name.clone(),
            secret: Secret::new(args.secret),
            server: server.trim_end_matches('/').to_string(),
            link,
            lowest,
            highest,
            start_floor: args.start_floor.unwrap_or(lowest),
            travel_per_floor: std::time::Duration::from_millis(args.travel_ms_per_floor),
            heartbeat: std::time::Duration::from_secs(args.heartbeat_secs.max(1)),
            poll_wait_secs: 25,
            server_certificate,
        })
        .await?;
        let faults = &handle.faults;
        use std::sync::atomic::Ordering::Relaxed;
        faults.drop_commands.store(args.drop_commands, Relaxed);
        faults
            .delay_reports_ms
            .store(args.delay_reports_ms, Relaxed);
        faults.wrong_floor.store(args.wrong_floor, Relaxed);
        if let Some(url) = &handle.push_url {
            println!(
                "device {} listening on {url} (floors {lowest} to {highest})",
                args.name
            );
        } else {
            println!(
                "device {} talking to {server} (floors {lowest} to {highest})",
                args.name
            );
        }
        if let Some(after) = args.silent_after_secs {
            tokio::time::sleep(std::time::Duration::from_secs(after)).await;
            faults.silent.store(true, Relaxed);
            println!("device {} is now silent", args.name);
        }
        web::shutdown_signal().await;
        drop(handle);
        drop(pseudo_terminal);
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulator_finds_the_server_the_configuration_serves() {
        let mut settings = Settings {
            bind: "0.0.0.0:9090".into(),
            ..Settings::default()
        };
        assert_eq!(configured_server_url(&settings), "http://127.0.0.1:9090");
        settings.bind = "192.168.1.20:8443".into();
        settings.tls.self_signed = true;
        assert_eq!(
            configured_server_url(&settings),
            "https://192.168.1.20:8443"
        );
        settings.bind = "[::]:8443".into();
        assert_eq!(configured_server_url(&settings), "https://[::1]:8443");
    }
}
