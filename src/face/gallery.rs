//! The enrolled people: `<dir>/<person>/*.jpg`, their embeddings (cached by file hash and model
//! id), and matching a probe against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::engine::Which;
use super::pool::EnginePool;
use super::{Embedding, FaceError, Result, cosine};

const PHOTO_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "webp", "JPG"];

/// Stores embeddings so that an unchanged photo is never embedded twice with one model.
pub trait EmbeddingCache: Sync {
    fn get(&self, cache_key: &str, sha256: &str) -> Option<Embedding>;
    fn put(&self, cache_key: &str, sha256: &str, embedding: &Embedding);
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

#[derive(Clone, Debug, Default)]
pub struct Gallery {
    pub model_id: String,
    pub people: Vec<Person>,
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
    /// Adds a template to a person, creating the person if new; false (and nothing added) when the person already has one from
    /// that file, so the same photo saved twice counts once.
    pub fn add_template(&mut self, name: &str, template: Template) -> bool {
        match self.people.iter_mut().find(|p| p.name == name) {
            Some(person) if person.templates.iter().any(|t| t.file == template.file) => {
                return false;
            }
            Some(person) => person.templates.push(template),
            None => {
                self.people.push(Person {
                    name: name.to_string(),
                    templates: vec![template],
                });
                self.people.sort_by(|a, b| a.name.cmp(&b.name));
            }
        }
        true
    }

    /// Forgets a person; false if there was nobody of that name.
    pub fn remove_person(&mut self, name: &str) -> bool {
        let before = self.people.len();
        self.people.retain(|p| p.name != name);
        self.people.len() != before
    }

    pub fn template_count(&self) -> usize {
        self.people.iter().map(|p| p.templates.len()).sum()
    }

    /// Each person's score is their best template; the best person wins if at the threshold.
    pub fn best_match(&self, probe: &[f32], threshold: f32) -> MatchResult {
        let mut scores: Vec<Candidate> = self
            .people
            .iter()
            .filter_map(|person| {
                let best = person
                    .templates
                    .iter()
                    .map(|t| cosine(&t.embedding, probe))
                    .fold(None, |acc: Option<f32>, s| {
                        Some(acc.map_or(s, |a| a.max(s)))
                    })?;
                Some(Candidate {
                    person: person.name.clone(),
                    similarity: best,
                })
            })
            .collect();
        scores.sort_by(|a, b| b.similarity.total_cmp(&a.similarity));
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
}

/// What building the gallery did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EnrollReport {
    pub people: usize,
    pub photos: usize,
    pub embedded: usize,
    pub from_cache: usize,
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
    Ok(path)
}

/// A file with a photo's extension (.jpg, .png, ...).
pub fn is_photo(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The photos of every person under `dir`, sorted, one folder per person.
pub fn scan(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let io = |e: std::io::Error| FaceError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut people = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !entry.path().is_dir() {
            continue;
        }
        let mut photos: Vec<PathBuf> = std::fs::read_dir(entry.path())
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| is_photo(p))
            .collect();
        photos.sort();
        if !photos.is_empty() {
            people.insert(name, photos);
        }
    }
    Ok(people)
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
    let people = scan(dir)?;
    let mut report = EnrollReport {
        people: people.len(),
        ..EnrollReport::default()
    };

    let mut work = Vec::new();
    let mut known: BTreeMap<PathBuf, Embedding> = BTreeMap::new();
    for photos in people.values() {
        for path in photos {
            report.photos += 1;
            let bytes = std::fs::read(path).map_err(|e| FaceError::Io {
                path: path.to_path_buf(),
                source: e,
            })?;
            let hash = hex::encode(Sha256::digest(&bytes));
            match cache.get(&cache_key, &hash) {
                Some(embedding) => {
                    report.from_cache += 1;
                    known.insert(path.clone(), embedding);
                    on_photo();
                }
                None => work.push((path.clone(), hash, bytes)),
            }
        }
    }

    let results = pool.map_blocking(
        work,
        |engine, (path, hash, bytes)| {
            let analysis = engine.analyze_bytes(&bytes, Which::Best);
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

    let people = people
        .into_iter()
        .filter_map(|(name, photos)| {
            let templates: Vec<Template> = photos
                .into_iter()
                .filter_map(|file| {
                    let embedding = known.remove(&file)?;
                    Some(Template { file, embedding })
                })
                .collect();
            (!templates.is_empty()).then_some(Person { name, templates })
        })
        .collect();
    Ok((Gallery { model_id, people }, report))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let gallery = Gallery {
            model_id: "m".into(),
            people: vec![
                person("ada", &[[0.0, 1.0], [0.8, 0.6]]),
                person("bob", &[[0.6, 0.8]]),
            ],
        };
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

    #[test]
    fn an_empty_gallery_recognises_nobody() {
        let result = Gallery::default().best_match(&[1.0, 0.0], 0.5);
        assert_eq!(result.person, None);
        assert_eq!(result.best, None);
    }
}
