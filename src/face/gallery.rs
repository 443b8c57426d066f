//! The enrolled people: `<dir>/<person>/*.jpg`, their embeddings (cached by file hash and model
//! id), and matching a probe against them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::engine::Which;
use super::index::MatchIndex;
use super::pool::EnginePool;
use super::{Embedding, FaceError, Result, cosine};

const PHOTO_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "JPG"];

/// Stores embeddings so that an unchanged photo is never embedded twice with one model, and
/// each photo file's hash under its size and modification time, so that an unchanged file is
/// not even read again at the next start.
pub trait EmbeddingCache: Sync {
    fn get(&self, cache_key: &str, sha256: &str) -> Option<Embedding>;
    fn put(&self, cache_key: &str, sha256: &str, embedding: &Embedding);
    /// Every embedding made with `cache_key`, by photo hash (one read at start-up).
    fn all(&self, cache_key: &str) -> HashMap<String, Embedding>;
    /// The hashes of the photo files seen before, by path.
    fn known_files(&self) -> HashMap<PathBuf, FileStamp>;
    fn remember_files(&self, files: &[(PathBuf, FileStamp)]);
    /// Forgets the hashes of photo files that are gone.
    fn forget_files(&self, files: &[PathBuf]);
}

/// What a photo file was when it was last hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    /// modification time, nanoseconds since the epoch
    pub modified_ns: i64,
    pub sha256: String,
}

impl FileStamp {
    /// The file's size and modification time, with a hash still to be filled in.
    fn of(path: &Path) -> std::io::Result<Self> {
        Ok(Self::from_metadata(&std::fs::metadata(path)?))
    }

    fn from_metadata(meta: &std::fs::Metadata) -> Self {
        let modified_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Self {
            size: meta.len(),
            modified_ns,
            sha256: String::new(),
        }
    }

    fn same_file(&self, other: &Self) -> bool {
        self.size == other.size && self.modified_ns == other.modified_ns
    }
}

#[derive(Clone, Debug)]
pub struct Template {
    pub file: PathBuf,
    pub embedding: Embedding,
}

#[derive(Clone, Debug)]
pub struct Person {
    pub name: String,
    pub templates: Vec<Template>,
}

/// The people, sorted by name, and the index that matches a probe against all their templates;
/// the two change only together, through `add_template` and `remove_person`.
#[derive(Clone, Debug, Default)]
pub struct Gallery {
    pub model_id: String,
    people: Vec<Person>,
    index: MatchIndex,
}

#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Candidate {
    pub person: String,
    pub similarity: f32,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatchResult {
    /// the recognised person, when the best similarity reaches the threshold
    pub person: Option<String>,
    /// the most similar person, recognised or not
    pub best: Option<Candidate>,
    pub runner_up: Option<Candidate>,
    /// best minus runner-up similarity
    pub margin: Option<f32>,
    pub threshold: f32,
}

impl MatchResult {
    pub fn similarity(&self) -> Option<f32> {
        self.best.as_ref().map(|c| c.similarity)
    }
}

impl Gallery {
    pub fn new(model_id: impl Into<String>, mut people: Vec<Person>) -> Self {
        people.sort_by(|a, b| a.name.cmp(&b.name));
        let mut index = MatchIndex::default();
        if let Some(first) = people.iter().flat_map(|p| &p.templates).next() {
            let rows = people.iter().map(|p| p.templates.len()).sum();
            index.reserve(rows, first.embedding.len());
        }
        for (owner, person) in people.iter().enumerate() {
            for template in &person.templates {
                index.push(owner, &template.embedding);
            }
        }
        Self {
            model_id: model_id.into(),
            people,
            index,
        }
    }

    /// Everyone enrolled, sorted by name.
    pub fn people(&self) -> &[Person] {
        &self.people
    }

    pub fn person(&self, name: &str) -> Option<&Person> {
        self.people.iter().find(|p| p.name == name)
    }

    /// Adds a template to a person, creating the person if new; false (and nothing added) when
    /// the person already has one from that file, so the same photo saved twice counts once.
    pub fn add_template(&mut self, name: &str, template: Template) -> bool {
        let at = match self.people.binary_search_by(|p| p.name.as_str().cmp(name)) {
            Ok(at)
                if self.people[at]
                    .templates
                    .iter()
                    .any(|t| t.file == template.file) =>
            {
                return false;
            }
            Ok(at) => at,
            Err(at) => {
                self.people.insert(
                    at,
                    Person {
                        name: name.to_string(),
                        templates: Vec::new(),
                    },
                );
                self.index.person_inserted(at);
                at
            }
        };
        self.index.push(at, &template.embedding);
        self.people[at].templates.push(template);
        true
    }

    /// Forgets a person; false if there was nobody of that name.
    pub fn remove_person(&mut self, name: &str) -> bool {
        match self.people.binary_search_by(|p| p.name.as_str().cmp(name)) {
            Ok(at) => {
                self.people.remove(at);
                self.index.person_removed(at);
                true
            }
            Err(_) => false,
        }
    }

    pub fn template_count(&self) -> usize {
        self.people.iter().map(|p| p.templates.len()).sum()
    }

    /// Bytes the matching index holds beyond the templates themselves.
    pub fn index_bytes(&self) -> usize {
        self.index.memory_bytes()
    }

    /// Each person's score is their best template; the best person wins if at the threshold.
    /// The index narrows the search to the people who can still be first or second, whose
    /// templates are then scored exactly.
    pub fn best_match(&self, probe: &[f32], threshold: f32) -> MatchResult {
        let candidates = self.index.candidates(probe, self.people.len());
        let scores = candidates.iter().filter_map(|c| {
            let person = self.people.get(c.owner)?;
            Some(Candidate {
                person: person.name.clone(),
                similarity: person_score(person, probe)?,
            })
        });
        ranked(scores.collect(), threshold)
    }

    /// `best_match` by scoring every template exactly, one person after another: what the
    /// index must agree with, and the baseline its benchmark is measured against.
    pub fn best_match_exhaustive(&self, probe: &[f32], threshold: f32) -> MatchResult {
        let scores = self.people.iter().filter_map(|person| {
            Some(Candidate {
                person: person.name.clone(),
                similarity: person_score(person, probe)?,
            })
        });
        ranked(scores.collect(), threshold)
    }
}

/// Matches each probe on a blocking thread: at 100,000 templates one match reads some 50 MB,
/// milliseconds that must not hold up an async worker's other requests.
pub async fn match_probes(
    gallery: &Arc<RwLock<Gallery>>,
    probes: Vec<Embedding>,
    threshold: f32,
) -> Result<Vec<MatchResult>> {
    let gallery = Arc::clone(gallery);
    tokio::task::spawn_blocking(move || {
        let gallery = gallery.read().map_err(|_| FaceError::GalleryUnavailable)?;
        Ok(probes
            .iter()
            .map(|probe| gallery.best_match(probe, threshold))
            .collect())
    })
    .await
    .map_err(|_| FaceError::MatchPanicked)?
}

/// A person's best cosine with the probe over their templates of the probe's length.
fn person_score(person: &Person, probe: &[f32]) -> Option<f32> {
    person
        .templates
        .iter()
        .filter(|t| t.embedding.len() == probe.len())
        .map(|t| cosine(&t.embedding, probe))
        .reduce(f32::max)
}

/// Best first; an exact tie goes to the first name, whatever order the scores came in.
fn ranked(mut scores: Vec<Candidate>, threshold: f32) -> MatchResult {
    scores.sort_by(|a, b| {
        b.similarity
            .total_cmp(&a.similarity)
            .then_with(|| a.person.cmp(&b.person))
    });
    let mut ranked = scores.into_iter();
    let best = ranked.next();
    let runner_up = ranked.next();
    MatchResult {
        person: best
            .as_ref()
            .filter(|c| c.similarity >= threshold)
            .map(|c| c.person.clone()),
        margin: best
            .as_ref()
            .map(|b| b.similarity - runner_up.as_ref().map_or(0.0, |r| r.similarity)),
        best,
        runner_up,
        threshold,
    }
}

/// What building the gallery did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnrollReport {
    pub people: usize,
    pub photos: usize,
    pub embedded: usize,
    pub from_cache: usize,
    /// photos read and hashed because they were new or changed (the others were known by
    /// size and modification time)
    pub hashed: usize,
    /// photos that gave no usable face, with the reason
    pub skipped: Vec<(PathBuf, String)>,
}

/// Whether `name` can be a person's folder: 1 to 64 letters, digits, `-` or `_`.
pub fn valid_person_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Saves an enrolment photo (already checked for one usable face) in the person's folder under
/// `gallery`, as `<now>-<hash>.<ext>`, and caches its embedding under `cache_key`; the photo is
/// written then renamed, so a crash never leaves half a photo in the gallery. Returns its path.
pub fn save_photo(
    gallery: &Path,
    person: &str,
    photo: &[u8],
    now: i64,
    cache: (&dyn EmbeddingCache, &str, &Embedding),
) -> std::io::Result<PathBuf> {
    let extension = match image::guess_format(photo) {
        Ok(image::ImageFormat::Png) => "png",
        Ok(image::ImageFormat::WebP) => "webp",
        _ => "jpg",
    };
    let sha256 = hex::encode(Sha256::digest(photo));
    let folder = gallery.join(person);
    std::fs::create_dir_all(&folder)?;
    // the same shot sent twice (a double tap) is the file already kept
    let suffix = format!("-{}.{extension}", &sha256[..8]);
    for entry in std::fs::read_dir(&folder)?.flatten() {
        let path = entry.path();
        let same_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(&suffix));
        if same_name && std::fs::read(&path).is_ok_and(|kept| kept == photo) {
            return Ok(path);
        }
    }
    let path = folder.join(format!("{now}{suffix}"));
    let partial = path.with_extension("partial");
    std::fs::write(&partial, photo)?;
    std::fs::rename(&partial, &path)?;
    let (store, cache_key, embedding) = cache;
    store.put(cache_key, &sha256, embedding);
    let stamp = FileStamp {
        sha256,
        ..FileStamp::of(&path)?
    };
    store.remember_files(&[(path.clone(), stamp)]);
    Ok(path)
}

/// A file with a photo's extension (.jpg, .png, ...).
pub fn is_photo(path: &Path) -> bool {
    path.is_file() && has_photo_extension(path)
}

fn has_photo_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The photos of every person under `dir`, sorted, one folder per person.
pub fn scan(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    Ok(scan_stamped(dir)?
        .into_iter()
        .map(|(name, photos)| (name, photos.into_iter().map(|(path, _)| path).collect()))
        .collect())
}

/// `scan`, with each photo's size and modification time from the one `stat` the listing needs.
fn scan_stamped(dir: &Path) -> Result<BTreeMap<String, Vec<(PathBuf, FileStamp)>>> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| FaceError::Io { path, source }
    };
    let mut people = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let folder = entry.path();
        let mut photos = Vec::new();
        for photo in std::fs::read_dir(&folder).map_err(io(&folder))? {
            let photo = photo.map_err(io(&folder))?;
            let path = photo.path();
            if !has_photo_extension(&path) {
                continue;
            }
            // a link to a photo counts, as it did when `is_file` followed it
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_file() {
                photos.push((path, FileStamp::from_metadata(&meta)));
            }
        }
        photos.sort_by(|a, b| a.0.cmp(&b.0));
        if !photos.is_empty() {
            people.insert(name, photos);
        }
    }
    Ok(people)
}

/// The enrolled photos with their cached embeddings, and those still to embed.
#[derive(Debug, Default)]
pub struct Loaded {
    pub people: BTreeMap<String, Vec<PathBuf>>,
    pub embeddings: BTreeMap<PathBuf, Embedding>,
    /// photos with no embedding for this model yet, with their hash
    pub to_embed: Vec<(PathBuf, String)>,
    pub report: EnrollReport,
}

/// Finds every enrolled photo and its cached embedding. A photo whose size and modification
/// time are as last seen is not read; the others are read and hashed on every core.
pub fn load_cached(dir: &Path, cache: &dyn EmbeddingCache, cache_key: &str) -> Result<Loaded> {
    let stamped = scan_stamped(dir)?;
    let mut known = cache.known_files();
    let mut cached = cache.all(cache_key);
    let mut report = EnrollReport {
        people: stamped.len(),
        ..EnrollReport::default()
    };
    let mut people = BTreeMap::new();
    let mut hashes: Vec<(PathBuf, String)> = Vec::new();
    let mut unknown: Vec<(PathBuf, FileStamp)> = Vec::new();
    for (name, photos) in stamped {
        let mut paths = Vec::with_capacity(photos.len());
        for (path, stamp) in photos {
            report.photos += 1;
            match known.remove(&path) {
                Some(seen) if seen.same_file(&stamp) => hashes.push((path.clone(), seen.sha256)),
                _ => unknown.push((path.clone(), stamp)),
            }
            paths.push(path);
        }
        people.insert(name, paths);
    }
    // what is left of the known files are gone from the gallery
    let gone: Vec<PathBuf> = known.into_keys().collect();
    if !gone.is_empty() {
        cache.forget_files(&gone);
    }
    let hashed = hash_files(unknown)?;
    report.hashed = hashed.len();
    if !hashed.is_empty() {
        cache.remember_files(&hashed);
    }
    hashes.extend(hashed.into_iter().map(|(path, stamp)| (path, stamp.sha256)));

    let mut embeddings: BTreeMap<PathBuf, Embedding> = BTreeMap::new();
    let mut to_embed = Vec::new();
    // the embeddings are moved out of the cache's map; a photo copied under two names has one
    // cached embedding, copied for the second name
    let mut taken: HashMap<String, PathBuf> = HashMap::new();
    for (path, sha256) in hashes {
        let embedding = match cached.remove(&sha256) {
            Some(embedding) => Some(embedding),
            None => taken.get(&sha256).and_then(|p| embeddings.get(p)).cloned(),
        };
        match embedding {
            Some(embedding) => {
                report.from_cache += 1;
                taken.insert(sha256, path.clone());
                embeddings.insert(path, embedding);
            }
            None => to_embed.push((path, sha256)),
        }
    }
    Ok(Loaded {
        people,
        embeddings,
        to_embed,
        report,
    })
}

/// Reads and hashes the files on every core, filling in their stamps' hashes.
fn hash_files(files: Vec<(PathBuf, FileStamp)>) -> Result<Vec<(PathBuf, FileStamp)>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = files.len().div_ceil(cores).max(1);
    let mut files = files;
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks_mut(chunk)
            .map(|part| {
                scope.spawn(move || -> Result<()> {
                    for (path, stamp) in part {
                        let bytes = std::fs::read(&*path).map_err(|source| FaceError::Io {
                            path: path.clone(),
                            source,
                        })?;
                        stamp.sha256 = hex::encode(Sha256::digest(&bytes));
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().map_err(|_| FaceError::EnginePanicked)?)
    })?;
    Ok(files)
}

/// Embeds every enrolled photo (the cached ones are read back instead) and builds the gallery.
pub fn build(
    dir: &Path,
    pool: &EnginePool,
    cache: &dyn EmbeddingCache,
    on_photo: &(dyn Fn() + Sync),
) -> Result<(Gallery, EnrollReport)> {
    let model_id = pool.models().id.clone();
    let cache_key = pool.cache_key();
    let Loaded {
        people,
        embeddings: mut known,
        to_embed,
        mut report,
    } = load_cached(dir, cache, &cache_key)?;
    (0..report.from_cache).for_each(|_| on_photo());

    let bulk = pool.for_bulk(to_embed.len());
    let results = bulk.as_ref().unwrap_or(pool).map_blocking(
        to_embed,
        |engine, (path, hash)| {
            let analysis = std::fs::read(&path)
                .map_err(|source| FaceError::Io {
                    path: path.clone(),
                    source,
                })
                .and_then(|bytes| engine.analyze_bytes(&bytes, Which::Best));
            (path, hash, analysis)
        },
        on_photo,
    );
    for result in results {
        let (path, hash, analysis) = result?;
        match analysis {
            Ok(analysis) => {
                if analysis.faces_seen > 1 {
                    tracing::warn!(photo = %path.display(), faces = analysis.faces_seen,
                        "several faces in an enrollment photo; the most confident one is used");
                }
                if let Some(face) = analysis.faces.into_iter().next() {
                    cache.put(&cache_key, &hash, &face.embedding);
                    report.embedded += 1;
                    known.insert(path, face.embedding);
                }
            }
            Err(error) => report.skipped.push((path, error.to_string())),
        }
    }
    Ok((assemble(model_id, people, known), report))
}

/// The gallery of the photos that have an embedding.
pub fn assemble(
    model_id: String,
    people: BTreeMap<String, Vec<PathBuf>>,
    mut embeddings: BTreeMap<PathBuf, Embedding>,
) -> Gallery {
    let people = people
        .into_iter()
        .filter_map(|(name, photos)| {
            let templates: Vec<Template> = photos
                .into_iter()
                .filter_map(|file| {
                    let embedding = embeddings.remove(&file)?;
                    Some(Template { file, embedding })
                })
                .collect();
            (!templates.is_empty()).then_some(Person { name, templates })
        })
        .collect();
    Gallery::new(model_id, people)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::face::synthetic::Xorshift;

    fn person(name: &str, vectors: &[[f32; 2]]) -> Person {
        Person {
            name: name.into(),
            templates: vectors
                .iter()
                .map(|v| Template {
                    file: PathBuf::new(),
                    embedding: v.to_vec(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_person_scores_their_best_template_and_the_runner_up_is_reported() {
        let gallery = Gallery::new(
            "m",
            vec![
                person("ada", &[[0.0, 1.0], [0.8, 0.6]]),
                person("bob", &[[0.6, 0.8]]),
            ],
        );
        let result = gallery.best_match(&[1.0, 0.0], 0.5);
        assert_eq!(result.person.as_deref(), Some("ada"));
        assert_eq!(result.similarity(), Some(0.8));
        let runner_up = result.runner_up.expect("two people");
        assert_eq!(runner_up.person, "bob");
        assert!((result.margin.expect("margin") - 0.2).abs() < 1e-6);

        let strict = gallery.best_match(&[1.0, 0.0], 0.9);
        assert_eq!(
            strict.person, None,
            "below the threshold nobody is recognised"
        );
        assert_eq!(strict.best.map(|c| c.person).as_deref(), Some("ada"));
    }

    /// A unit vector near `centre`, or a random one when there is none.
    fn near(random: &mut Xorshift, centre: Option<&[f32]>, spread: f32, dims: usize) -> Vec<f32> {
        match centre {
            Some(centre) => random.near(centre, spread),
            None => random.unit(dims),
        }
    }

    #[test]
    fn the_index_finds_what_scoring_every_template_finds() {
        let mut state = Xorshift::new(1);
        for (people, spread) in [(300, 0.0), (200, 0.02), (50, 0.001)] {
            let dims = 512;
            // several templates a person; with a spread, everyone is a near-copy of one face,
            // the worst case for a coarse score
            let centre = near(&mut state, None, 0.0, dims);
            let centre = (spread > 0.0).then_some(centre.as_slice());
            let gallery = Gallery::new(
                "m",
                (0..people)
                    .map(|i| Person {
                        name: format!("p{i:04}"),
                        templates: (0..3)
                            .map(|_| Template {
                                file: PathBuf::new(),
                                embedding: near(&mut state, centre, spread, dims),
                            })
                            .collect(),
                    })
                    .collect(),
            );
            for probe in 0..40 {
                let probe = if probe % 2 == 0 {
                    let someone = &gallery.people()[probe * people / 40].templates[probe % 3];
                    near(&mut state, Some(&someone.embedding), 0.05, dims)
                } else {
                    near(&mut state, centre, spread, dims)
                };
                assert_eq!(
                    gallery.best_match(&probe, 0.5),
                    gallery.best_match_exhaustive(&probe, 0.5)
                );
            }
        }
    }

    #[test]
    fn adding_and_removing_people_keeps_the_index_in_step() {
        let mut gallery = Gallery::default();
        let mut state = Xorshift::new(7);
        let vectors: Vec<Vec<f32>> = (0..6).map(|_| near(&mut state, None, 0.0, 64)).collect();
        let template = |i: usize| Template {
            file: PathBuf::from(format!("{i}.jpg")),
            embedding: vectors[i].clone(),
        };
        assert!(gallery.add_template("mia", template(0)));
        assert!(gallery.add_template("ada", template(1)));
        assert!(gallery.add_template("mia", template(2)));
        assert!(
            !gallery.add_template("mia", template(2)),
            "the same file twice"
        );
        assert!(gallery.add_template("zoe", template(3)));
        assert!(gallery.add_template("bob", template(4)));
        assert!(gallery.remove_person("ada"));
        assert!(!gallery.remove_person("ada"));
        let names: Vec<&str> = gallery.people().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bob", "mia", "zoe"]);
        for (i, who) in [
            (0, Some("mia")),
            (1, None),
            (2, Some("mia")),
            (3, Some("zoe")),
            (4, Some("bob")),
        ] {
            let result = gallery.best_match(&vectors[i], 0.99);
            assert_eq!(result.person.as_deref(), who, "template {i}");
            assert_eq!(result, gallery.best_match_exhaustive(&vectors[i], 0.99));
        }
    }

    #[test]
    fn an_empty_gallery_recognises_nobody() {
        let result = Gallery::default().best_match(&[1.0, 0.0], 0.5);
        assert_eq!(result.person, None);
        assert_eq!(result.best, None);
    }
}
