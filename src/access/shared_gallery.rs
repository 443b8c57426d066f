//! Several instances on one PostgreSQL database share one gallery: the store holds every
//! enrolled template (`store::gallery`), each instance matches against its own copy in
//! memory, and an enrolment or a removal made on one instance is announced and applied by
//! the others at once. On SQLite (one instance) the gallery folder stays the record and
//! none of this runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use crate::face::gallery::{Gallery, Template};
use crate::store::{Dialect, Notice, SharedTemplate, Store, StoreError};

/// What joining the shared gallery did at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Joined {
    /// templates of this instance's folder that were new to the shared gallery
    pub shared: usize,
    /// templates enrolled through other instances, now matched here too
    pub adopted: usize,
    /// people removed through another instance whose photos this folder still holds
    pub removed: usize,
}

/// Whether this store is shared by several instances (PostgreSQL).
pub fn is_shared(store: &Store) -> bool {
    store.dialect() == Dialect::Postgres
}

/// At start: drops the people removed elsewhere (unless a photo of theirs is newer than the
/// removal), shares what this instance's folder holds, and takes in what the others
/// enrolled.
pub fn join(
    gallery: &mut Gallery,
    store: &Store,
    cache_key: &str,
    dir: &Path,
) -> Result<Joined, StoreError> {
    let mut joined = Joined::default();
    for (person, removed_at) in store.gallery_removals()? {
        let Some(enrolled) = gallery.person(&person) else {
            continue;
        };
        let newer: Vec<Template> = enrolled
            .templates
            .iter()
            .filter(|t| modified_secs(&t.file).is_some_and(|at| at > removed_at))
            .cloned()
            .collect();
        gallery.remove_person(&person);
        if newer.is_empty() {
            joined.removed += 1;
        }
        for template in newer {
            gallery.add_template(&person, template);
        }
    }
    let shared = store.shared_templates(cache_key)?;
    let known: BTreeSet<(&str, &str)> = shared
        .iter()
        .map(|t| (t.person.as_str(), t.file.as_str()))
        .collect();
    let mine: Vec<SharedTemplate> = gallery
        .people()
        .iter()
        .flat_map(|person| {
            person.templates.iter().filter_map(|template| {
                let file = file_name(&template.file)?;
                (!known.contains(&(person.name.as_str(), file))).then(|| SharedTemplate {
                    person: person.name.clone(),
                    file: file.to_string(),
                    embedding: template.embedding.clone(),
                })
            })
        })
        .collect();
    joined.shared = store.share_templates(cache_key, &mine)?;
    for template in shared {
        if adopt(gallery, dir, template) {
            joined.adopted += 1;
        }
    }
    Ok(joined)
}

/// Shares a template just enrolled here and tells the other instances.
pub fn enrolled(
    store: &Store,
    cache_key: &str,
    person: &str,
    file: &Path,
    embedding: &[f32],
) -> Result<(), StoreError> {
    let Some(name) = file_name(file) else {
        return Ok(());
    };
    store.share_templates(
        cache_key,
        &[SharedTemplate {
            person: person.to_string(),
            file: name.to_string(),
            embedding: embedding.to_vec(),
        }],
    )?;
    store.announce(&format!("gallery add {person} {name}"))
}

/// Removes a person from the shared gallery and tells the other instances; answers whether
/// they were in it.
pub fn removed(store: &Store, person: &str, at: i64) -> Result<bool, StoreError> {
    let templates = store.unshare_person(person, at)?;
    store.announce(&format!("gallery remove {person}"))?;
    Ok(templates > 0)
}

/// Applies what the other instances announce to this instance's gallery, while the store
/// lives; when notices were missed, the whole shared gallery is read again.
pub fn follow(
    gallery: Arc<RwLock<Gallery>>,
    store: Arc<Store>,
    cache_key: String,
    dir: PathBuf,
) -> tokio::task::JoinHandle<()> {
    let mut notices = store.subscribe();
    tokio::spawn(async move {
        loop {
            let change = match Notice::next(&mut notices).await {
                Some(Notice::Changed(what)) => match what.strip_prefix("gallery ") {
                    Some(change) => Some(change.to_string()),
                    None => continue,
                },
                Some(Notice::Missed) => None,
                None => break,
            };
            let (gallery, store, cache_key, dir) = (
                Arc::clone(&gallery),
                Arc::clone(&store),
                cache_key.clone(),
                dir.clone(),
            );
            let applied = tokio::task::spawn_blocking(move || {
                apply(&gallery, &store, &cache_key, &dir, change.as_deref())
            })
            .await;
            match applied {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "could not apply a change to the shared gallery");
                }
                Err(error) => tracing::error!(%error, "the gallery follower panicked"),
            }
        }
    })
}

/// Applies one announced change ("add PERSON FILE", "remove PERSON"), or with none, the
/// whole shared gallery.
fn apply(
    gallery: &RwLock<Gallery>,
    store: &Store,
    cache_key: &str,
    dir: &Path,
    change: Option<&str>,
) -> Result<(), StoreError> {
    let mut words = change.map(|c| c.splitn(3, ' '));
    match words.as_mut().map(|w| (w.next(), w.next(), w.next())) {
        Some((Some("add"), Some(person), Some(file))) => {
            if let Some(template) = store.shared_template(cache_key, person, file)?
                && let Some(mut gallery) = write(gallery)
                && adopt(&mut gallery, dir, template)
            {
                tracing::info!(%person, "enrolled through another instance");
            }
        }
        Some((Some("remove"), Some(person), None)) => {
            if write(gallery).is_some_and(|mut g| g.remove_person(person)) {
                tracing::info!(%person, "removed through another instance");
            }
        }
        Some(_) => tracing::warn!(?change, "an unknown gallery change was announced"),
        None => {
            let shared = store.shared_templates(cache_key)?;
            let people: BTreeSet<&str> = shared.iter().map(|t| t.person.as_str()).collect();
            let Some(mut gallery) = write(gallery) else {
                return Ok(());
            };
            let gone: Vec<String> = gallery
                .people()
                .iter()
                .filter(|p| !people.contains(p.name.as_str()))
                .map(|p| p.name.clone())
                .collect();
            for person in gone {
                gallery.remove_person(&person);
            }
            for template in shared {
                adopt(&mut gallery, dir, template);
            }
        }
    }
    Ok(())
}

/// Adds a shared template unless the gallery has it; its file is named as it would be in
/// this instance's folder.
fn adopt(gallery: &mut Gallery, dir: &Path, template: SharedTemplate) -> bool {
    let file = dir.join(&template.person).join(&template.file);
    gallery.add_template(
        &template.person,
        Template {
            file,
            embedding: template.embedding,
        },
    )
}

/// The gallery to change; a poisoned one (a thread panicked while changing it) is left
/// alone, as every login refuses it.
fn write(gallery: &RwLock<Gallery>) -> Option<std::sync::RwLockWriteGuard<'_, Gallery>> {
    gallery
        .write()
        .inspect_err(|_| tracing::error!("the gallery is unusable: not applying a change to it"))
        .ok()
}

fn file_name(path: &Path) -> Option<&str> {
    path.file_name().and_then(|n| n.to_str())
}

fn modified_secs(path: &Path) -> Option<i64> {
    let modified = std::fs::metadata(path).ok()?.modified().ok()?;
    let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_secs()).ok()
}
