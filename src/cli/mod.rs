//! The command line, a file per command group. Every command answers a result struct that
//! serialises to its `--json` form and displays as its table, so the two never disagree.

mod audit;
mod bench;
mod device;
mod face;
mod person;
mod serve;
mod system;

use std::fmt::Display;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::config::Settings;
use crate::face::gallery::{self, EnrollReport, Gallery};
use crate::face::{EnginePool, FaceAnalysis, ModelName, Precision, Which};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(name = "facelift", version, about = "Log in to a lift with your face")]
pub struct Cli {
    /// TOML configuration file (default: $FACELIFT_CONFIG, else ./facelift.toml if present)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folder holding the model files
    #[arg(long, global = true, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model set to use: default or vgg-face
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
    Verify(face::VerifyArgs),
    /// Who is every face in these images?
    Identify(face::IdentifyArgs),
    /// The embedding of the best face in an image
    Represent(face::RepresentArgs),
    /// Write the embedding model's input for the best face of each photo as .npy: the face
    /// crops scripts/quantize-vggface calibrates and checks the int8 model on
    ModelInputs(face::ModelInputsArgs),
    /// Embed (or re-embed) the enrolled photos into the cache
    Enroll(face::EnrollArgs),
    /// Accuracy on labelled pairs: AUC, accuracy, error rates, best threshold
    Eval(face::EvalArgs),
    /// Presentation attack detection measured as ISO/IEC 30107-3 does: APCER per attack type
    /// and BPCER, every presentation sent through the server's own login decision
    PadEval(face::PadEvalArgs),
    /// Run the server
    Serve(serve::ServeArgs),
    /// Register, list or remove lift controllers (kept in <data-dir>/facelift.db)
    Device(device::DeviceArgs),
    /// A simulated lift controller speaking the device protocol: try the system without hardware
    DeviceSim(device::DeviceSimArgs),
    /// Enrolled people: add one from photos (the first person, the first administrator), list
    /// them, remove one
    Person(person::PersonArgs),
    /// The CPU features ONNX Runtime's int8 kernels depend on, and the int8 format
    /// scripts/quantize-vggface picks for this CPU
    Cpu(system::CpuArgs),
    /// Time every stage against raw ONNX Runtime, in one run
    Bench(bench::BenchArgs),
    /// Check the audit log's hash chain, or export its rows
    Audit(audit::AuditArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (the server answers the same at
    /// /api/v1/openapi.json)
    Openapi,
}

/// `--json`, shared by the commands that answer a result.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct Output {
    /// Print the result as JSON instead of a table
    #[arg(long)]
    json: bool,
}

impl Output {
    /// Prints `result` as JSON or as its table.
    fn print(self, result: &(impl Serialize + Display)) -> Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(result)?);
        } else {
            print!("{result}");
        }
        Ok(())
    }
}

pub fn run(cli: Cli) -> Result<()> {
    let settings = load_settings(&cli)?;
    match cli.command {
        Command::Verify(args) => face::verify(&settings, args),
        Command::Identify(args) => face::identify(&settings, args),
        Command::Represent(args) => face::represent(&settings, args),
        Command::ModelInputs(args) => face::model_inputs(&settings, args),
        Command::Enroll(args) => face::enroll(&settings, args),
        Command::Eval(args) => face::eval(&settings, args),
        Command::PadEval(args) => face::pad_eval(&settings, args),
        Command::Serve(_) => serve::serve(settings),
        Command::Device(args) => device::device(&settings, args),
        Command::DeviceSim(args) => device::device_sim(&settings, args),
        Command::Person(args) => person::person(&settings, args),
        Command::Cpu(args) => system::cpu(args),
        Command::Bench(args) => bench::bench(&settings, args),
        Command::Audit(args) => audit::audit(&settings, args),
        Command::Openapi => {
            println!("{}", crate::web::openapi());
            Ok(())
        }
    }
}

/// Flags become the last configuration layer, over the file and the environment.
fn load_settings(cli: &Cli) -> Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    set_path(&mut settings.models_dir, cli.models_dir.as_ref());
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
        Command::Serve(args) => args.apply(&mut settings),
        Command::Identify(args) => args.places.apply(&mut settings),
        Command::Enroll(args) => args.apply(&mut settings),
        Command::Device(args) => set_path(&mut settings.data_dir, args.data_dir.as_ref()),
        Command::Audit(args) => set_path(&mut settings.data_dir, args.data_dir.as_ref()),
        Command::Person(args) => args.places.apply(&mut settings),
        Command::Represent(args) => args.apply(&mut settings),
        _ => {}
    }
    Ok(settings)
}

fn set_path(field: &mut PathBuf, flag: Option<&PathBuf>) {
    if let Some(value) = flag {
        field.clone_from(value);
    }
}

/// Where the enrolled people and the database are, when a command overrides them.
#[derive(Debug, clap::Args)]
struct Places {
    /// Enrolled people, one folder each (default: the configured gallery)
    #[arg(long, global = true)]
    gallery: Option<PathBuf>,
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
}

impl Places {
    fn apply(&self, settings: &mut Settings) {
        set_path(&mut settings.gallery, self.gallery.as_ref());
        set_path(&mut settings.data_dir, self.data_dir.as_ref());
    }
}

fn open_pool(settings: &Settings) -> Result<EnginePool> {
    crate::app::open_engine_pool(settings).context("starting the face engine")
}

fn open_store(settings: &Settings) -> Result<Store> {
    Ok(crate::app::open_store(settings)?)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn analyze_file(pool: &EnginePool, path: &Path, which: Which) -> Result<FaceAnalysis> {
    let bytes = read(path)?;
    pool.run_blocking(move |engine| engine.analyze_bytes(&bytes, which))?
        .with_context(|| path.display().to_string())
}

/// A photo left out, and why.
#[derive(Debug, Serialize)]
struct Skipped {
    photo: PathBuf,
    why: String,
}

impl Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "skipped {}: {}", self.photo.display(), self.why)
    }
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
    bar.set_style(ProgressStyle::with_template(&template)?);
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
