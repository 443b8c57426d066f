//! Who is this, may they in, and why not: the login decision from a camera frame and the
//! client it came from, with no HTTP in it. The browser login calls it today; kiosks and
//! camera boards will call the very same decision.
//!
//! It owns the failed-login limiter and the login audit, and answers with the person and
//! whether they are an administrator, or with the reason they are refused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::clock::Clock;
use crate::config::Settings;
use crate::face::{EnginePool, FaceError, Gallery, Which};
use crate::store::{AuditEntry, AuditKind, AuditOutcome, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("too many failed attempts; try again in {retry_after} seconds")]
    TooManyAttempts { retry_after: u64 },
    #[error("face not recognised")]
    NotRecognized,
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error("the gallery is unusable: a thread panicked while changing it")]
    GalleryPoisoned,
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Someone let in.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    pub person: String,
    pub similarity: f32,
    pub admin: bool,
    /// faces in the frame (the best one was matched)
    pub faces_seen: usize,
}

/// The login decision and what it needs. Cloning shares it.
#[derive(Clone)]
pub struct Access {
    pool: Arc<EnginePool>,
    gallery: Arc<RwLock<Gallery>>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    limiter: Arc<LoginLimiter>,
    /// administrators named in the configuration (`web.admins`)
    configured_admins: Arc<Vec<String>>,
}

impl Access {
    pub fn new(
        settings: &Settings,
        pool: Arc<EnginePool>,
        gallery: Arc<RwLock<Gallery>>,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let web = &settings.web;
        Self {
            pool,
            gallery,
            store,
            clock,
            limiter: Arc::new(LoginLimiter::new(
                web.login_failures_before_wait,
                web.login_wait_secs,
                web.login_wait_max_secs,
            )),
            configured_admins: Arc::new(web.admins.clone()),
        }
    }

    /// Decides on a login from `frame`, sent by `client` (an address): refused while the
    /// client must wait after failures, else the best face of the frame matched against the
    /// gallery. Every attempt is audited with its outcome.
    pub async fn log_in(&self, client: &str, frame: Vec<u8>) -> Result<Admitted, AccessError> {
        let now = self.clock.now();
        let entry = |outcome, person: Option<&str>, similarity| AuditEntry {
            at: now,
            kind: AuditKind::Login,
            client: client.to_string(),
            person: person.map(str::to_string),
            similarity,
            outcome,
            detail: None,
        };
        if let Some(retry_after) = self.limiter.wait(client, now) {
            self.audit(entry(AuditOutcome::RateLimited, None, None))
                .await;
            return Err(AccessError::TooManyAttempts { retry_after });
        }
        let analysis = self
            .pool
            .run(move |engine| engine.analyze_bytes(&frame, Which::Best))
            .await
            .and_then(|analysis| analysis);
        let analysis = match analysis {
            Ok(analysis) => analysis,
            Err(error) => {
                self.audit(entry(login_outcome(&error), None, None)).await;
                return Err(error.into());
            }
        };
        let Some(face) = analysis.best() else {
            self.audit(entry(AuditOutcome::NoFace, None, None)).await;
            return Err(FaceError::NoFace.into());
        };
        let result = self
            .gallery
            .read()
            .map_err(|_| AccessError::GalleryPoisoned)?
            .best_match(&face.embedding, self.pool.threshold());
        let similarity = result.similarity();
        let (Some(person), Some(similarity)) = (result.person, similarity) else {
            self.limiter.failure(client, now);
            self.audit(entry(AuditOutcome::NotRecognized, None, similarity))
                .await;
            return Err(AccessError::NotRecognized);
        };
        self.limiter.success(client);
        let admin = self.is_administrator(&person).await?;
        self.audit(entry(
            AuditOutcome::Recognized,
            Some(&person),
            Some(similarity),
        ))
        .await;
        Ok(Admitted {
            person,
            similarity,
            admin,
            faces_seen: analysis.faces_seen,
        })
    }

    /// Whether `person` is an administrator: listed in `web.admins`, or marked in the database
    /// by `facelift person add --admin`.
    pub async fn is_administrator(&self, person: &str) -> Result<bool, AccessError> {
        let (store, admins, person) = (
            Arc::clone(&self.store),
            Arc::clone(&self.configured_admins),
            person.to_string(),
        );
        let admin = tokio::task::spawn_blocking(move || is_administrator(&admins, &store, &person))
            .await??;
        Ok(admin)
    }

    /// Counted, and written off the async threads; a failure to write is logged, not the
    /// login's failure.
    async fn audit(&self, entry: AuditEntry) {
        metrics::counter!("facelift_login_attempts_total", "outcome" => entry.outcome.as_str())
            .increment(1);
        let store = Arc::clone(&self.store);
        match tokio::task::spawn_blocking(move || store.audit(&entry)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "could not write the audit log"),
            Err(error) => tracing::error!(%error, "the audit writer failed"),
        }
    }
}

/// Whether `person` is named in `configured` (the configuration's `web.admins`) or marked an
/// administrator in the database.
pub fn is_administrator(
    configured: &[String],
    store: &Store,
    person: &str,
) -> Result<bool, StoreError> {
    Ok(configured.iter().any(|a| a == person) || store.is_admin(person)?)
}

/// The audit outcome of a frame the engine could not use.
fn login_outcome(error: &FaceError) -> AuditOutcome {
    match error {
        FaceError::NoFace => AuditOutcome::NoFace,
        FaceError::FaceTooSmall { .. } => AuditOutcome::FaceTooSmall,
        FaceError::Empty
        | FaceError::NotAnImage
        | FaceError::Corrupt(_)
        | FaceError::TooLarge { .. } => AuditOutcome::BadImage,
        FaceError::Busy => AuditOutcome::Busy,
        _ => AuditOutcome::Failed,
    }
}

/// Failed logins per client: after `allowed` failures in a row the client waits, and each
/// further failure doubles the wait up to `max_wait`; a success forgets the client.
pub struct LoginLimiter {
    allowed: u32,
    base_wait: i64,
    max_wait: i64,
    clients: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy, Default)]
struct Failures {
    count: u32,
    blocked_until: i64,
    last: i64,
}

/// The most clients tracked at once; beyond it the stalest are forgotten first.
const MAX_TRACKED_CLIENTS: usize = 10_000;

impl LoginLimiter {
    pub fn new(allowed: u32, base_wait: u64, max_wait: u64) -> Self {
        Self {
            allowed: allowed.max(1),
            base_wait: base_wait as i64,
            max_wait: max_wait.max(base_wait) as i64,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The counts stay meaningful after a panic elsewhere: each update is one insert or
    /// remove, so a poisoned map is still a whole one.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Failures>> {
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seconds the client must still wait, if any.
    pub fn wait(&self, client: &str, now: i64) -> Option<u64> {
        let clients = self.lock();
        let failures = clients.get(client)?;
        (failures.blocked_until > now).then(|| (failures.blocked_until - now) as u64)
    }

    pub fn failure(&self, client: &str, now: i64) {
        let mut clients = self.lock();
        if clients.len() >= MAX_TRACKED_CLIENTS && !clients.contains_key(client) {
            // forget clients that are not waiting and have not failed for a long while
            let cutoff = now - self.max_wait;
            clients.retain(|_, f| f.last > cutoff || f.blocked_until > now);
            let stalest = (clients.len() >= MAX_TRACKED_CLIENTS)
                .then(|| {
                    clients
                        .iter()
                        .min_by_key(|(_, f)| f.last)
                        .map(|(k, _)| k.clone())
                })
                .flatten();
            if let Some(stalest) = stalest {
                clients.remove(&stalest);
            }
        }
        let failures = clients.entry(client.to_string()).or_default();
        failures.count += 1;
        failures.last = now;
        if failures.count >= self.allowed {
            let doublings = (failures.count - self.allowed).min(30);
            let wait = self
                .base_wait
                .saturating_mul(1 << doublings)
                .min(self.max_wait);
            failures.blocked_until = now + wait;
        }
    }

    pub fn success(&self, client: &str) {
        self.lock().remove(client);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_starts_after_the_allowed_failures_and_doubles_to_the_cap() {
        let limiter = LoginLimiter::new(3, 10, 35);
        for _ in 0..2 {
            limiter.failure("a", 100);
        }
        assert_eq!(limiter.wait("a", 100), None, "two failures: no wait yet");
        limiter.failure("a", 100);
        assert_eq!(limiter.wait("a", 100), Some(10));
        assert_eq!(
            limiter.wait("b", 100),
            None,
            "other clients are not affected"
        );
        limiter.failure("a", 111);
        assert_eq!(limiter.wait("a", 111), Some(20));
        limiter.failure("a", 140);
        assert_eq!(limiter.wait("a", 140), Some(35), "capped");
        limiter.success("a");
        assert_eq!(limiter.wait("a", 140), None, "a success resets");
    }
}
