//! Who is this, may they in, and why not: the login decision from a camera frame and the
//! client it came from, with no HTTP in it. The browser login calls it today; kiosks and
//! camera boards will call the very same decision.
//!
//! It owns the attempt limits (per client, per person, and a ceiling across all clients), the
//! login audit, and what a session may still do (`rights`): a person removed or disabled by an
//! administrator loses access at once, and administrator rights come from the current
//! configuration and database, never from what the session remembers.

mod challenges;
pub mod floors;
pub mod hours;
mod limits;
pub mod pad;
pub mod pad_eval;
pub mod shared_gallery;

use std::sync::{Arc, RwLock};

pub use challenges::{Challenge, ChallengeError, Challenges};
pub use floors::{FloorAccess, FloorRules};
pub use limits::{ClientLimiter, FailureCeiling, PROBATION_PER_MINUTE};
pub use pad::{PadRefusal, PadSignals};

use crate::clock::Clock;
use crate::config::{PadMode, Settings};
use crate::face::decode::check_header;
use crate::face::gallery::{Candidate, match_probes};
use crate::face::{DecodeLimits, Embedding, EnginePool, FaceError, Gallery, MatchResult};
use crate::store::{AuditEntry, AuditKind, AuditOutcome, Disabled, Standing, Store, StoreError};
use pad::{FrameEvidence, MAX_BURST_FRAMES, MIN_BURST_FRAMES, PadRules, SeenFaces, examine, judge};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("too many failed attempts; try again in {retry_after} seconds")]
    TooManyAttempts { retry_after: u64 },
    #[error("face not recognised")]
    NotRecognized,
    #[error("face login is turned off for {person}; ask an administrator")]
    LoginDisabled { person: String },
    #[error(
        "this server needs a live login: ask POST /api/v1/login/challenge for a challenge, \
         then send its nonce with a burst of frames"
    )]
    ChallengeNeeded,
    #[error("{0}")]
    Challenge(ChallengeError),
    #[error("a burst has {MIN_BURST_FRAMES} to {MAX_BURST_FRAMES} frames; this one has {sent}")]
    BurstSize { sent: usize },
    #[error("the liveness check failed: {0}")]
    PresentationRefused(PadRefusal),
    #[error("{0}")]
    BadAccess(String),
    #[error("{person} has no access now: their visitor pass has ended")]
    NoAccess { person: String },
    #[error("floor {floor} is not one of your floors")]
    FloorNotAllowed { floor: i32 },
    #[error("floor {floor} is yours only during your hours ({hours})")]
    OutsideHours { floor: i32, hours: String },
    #[error("too many challenges are outstanding; try again in a moment")]
    TooManyChallenges,
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error("the gallery is unusable: a thread panicked while changing it")]
    GalleryPoisoned,
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("a background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Who is trying: the address as far as it can be trusted, and the token of a browser that
/// logged in successfully before (its cookie), if it sent one.
#[derive(Clone, Default)]
pub struct LoginClient {
    pub address: String,
    pub browser: Option<String>,
    /// whom challenges are issued to: the browser session (later, a kiosk)
    pub challenge_owner: String,
}

/// The tokens are secrets: only whether there is one is shown.
impl std::fmt::Debug for LoginClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginClient")
            .field("address", &self.address)
            .field("browser", &self.browser.as_ref().map(|_| "<redacted>"))
            .field("challenge_owner", &"<redacted>")
            .finish()
    }
}

/// What a client shows the camera.
#[derive(Clone, Debug)]
pub enum Presentation {
    /// One camera frame (PAD modes `passive` and `off`).
    Frame(Vec<u8>),
    /// The frames captured, in order, while doing what the challenge `nonce` asked.
    Burst { nonce: String, frames: Vec<Vec<u8>> },
}

/// Someone let in.
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    pub person: String,
    pub similarity: f32,
    pub admin: bool,
    /// faces in the frame (the best one was matched)
    pub faces_seen: usize,
    /// a new trusted-browser token for the client to keep, when it had no valid one
    pub new_browser_token: Option<String>,
}

/// What a logged-in person may still do, read afresh for every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rights {
    Person {
        admin: bool,
    },
    /// removed from the gallery, or disabled by an administrator
    Ended,
}

/// The per-person rules, after NIST SP 800-63B-4's biometric limits.
#[derive(Clone, Copy, Debug)]
struct PersonLimits {
    /// failed attempts near a person in a row before each further one must wait
    before_wait: u32,
    wait_secs: i64,
    /// in a row, after which their face login is off until an administrator turns it on
    disable_after: u32,
    /// a failed attempt whose best match is at least this similar counts against that person
    near_miss: f32,
}

/// The login decision and what it needs. Cloning shares it.
#[derive(Clone)]
pub struct Access {
    pool: Arc<EnginePool>,
    gallery: Arc<RwLock<Gallery>>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    clients: Arc<ClientLimiter>,
    ceiling: Arc<FailureCeiling>,
    person_limits: PersonLimits,
    /// administrators named in the configuration (`web.admins`)
    configured_admins: Arc<Vec<String>>,
    pad: PadRules,
    challenges: Arc<Challenges>,
    seen: Arc<SeenFaces>,
    /// what a login frame's header may promise (`web.login_max_pixels`)
    frame_limits: DecodeLimits,
    floor_rules: Arc<FloorRules>,
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
        let person_limits = PersonLimits {
            before_wait: web.person_failures_before_wait.max(1),
            wait_secs: web.person_wait_secs as i64,
            disable_after: if settings.pad == PadMode::Off {
                web.person_disable_after
            } else {
                web.person_disable_after_with_pad
            }
            .max(1),
            near_miss: web
                .near_miss_similarity
                .unwrap_or(NEAR_MISS_SHARE_OF_THRESHOLD * pool.threshold()),
        };
        // the faces accepted before a restart are still known
        let seen = SeenFaces::new(web.replay_memory_secs);
        match store.faces_since(clock.now().saturating_sub(seen.keep_secs())) {
            Ok(faces) => seen.remember_each(faces),
            Err(error) => tracing::error!(%error, "could not read the faces of accepted logins"),
        }
        let pad = PadRules {
            mode: settings.pad,
            mirrored: settings.engine.preprocess.mirror,
            liveness_min: web.liveness_min,
        };
        Self {
            pool,
            gallery,
            store: Arc::clone(&store),
            clock,
            clients: Arc::new(ClientLimiter::stored(
                Arc::clone(&store),
                web.login_failures_before_wait,
                web.login_wait_secs,
                web.login_wait_max_secs,
            )),
            ceiling: Arc::new(FailureCeiling::stored(store, web.login_failures_per_minute)),
            person_limits,
            configured_admins: Arc::new(web.admins.clone()),
            pad,
            challenges: Arc::new(Challenges::new(web.challenge_secs)),
            seen: Arc::new(seen),
            frame_limits: DecodeLimits {
                max_pixels: web.login_max_pixels.min(settings.engine.max_pixels),
            },
            floor_rules: Arc::new(FloorRules::from_settings(settings)),
        }
    }

    /// Which floors `person` may reach now.
    pub async fn floor_access(&self, person: &str) -> Result<FloorAccess, AccessError> {
        let (rules, person, now) = (
            Arc::clone(&self.floor_rules),
            person.to_string(),
            self.clock.now(),
        );
        self.blocking(move |store| {
            let profile = store.profile(&person)?;
            let passes = store.passes(&person, now)?;
            Ok(FloorAccess::decide(&rules, &profile, &passes, now))
        })
        .await
    }

    /// Replaces `person`'s access (see `floors::change_profile`).
    pub async fn change_profile(
        &self,
        person: &str,
        profile: crate::store::Profile,
        who: &str,
    ) -> Result<crate::store::Profile, AccessError> {
        let (rules, person, who, now) = (
            Arc::clone(&self.floor_rules),
            person.to_string(),
            who.to_string(),
            self.clock.now(),
        );
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            floors::change_profile(&store, &rules, &person, profile, &who, now)
        })
        .await?
    }

    /// Issues a visitor pass (see `floors::issue_pass`); `valid_from` defaults to now.
    pub async fn issue_pass(
        &self,
        person: &str,
        floors: Vec<i32>,
        valid_from: Option<i64>,
        expires_at: i64,
        who: &str,
    ) -> Result<crate::store::VisitorPass, AccessError> {
        let (rules, person, who, now) = (
            Arc::clone(&self.floor_rules),
            person.to_string(),
            who.to_string(),
            self.clock.now(),
        );
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let valid = (valid_from.unwrap_or(now), expires_at);
            floors::issue_pass(&store, &rules, &person, &floors, valid, &who, now)
        })
        .await?
    }

    /// Ends a pass now; answers whether one was in force.
    pub async fn revoke_pass(&self, id: i64, who: &str) -> Result<bool, AccessError> {
        let (who, now) = (who.to_string(), self.clock.now());
        self.blocking(move |store| floors::revoke_pass(store, id, &who, now))
            .await
    }

    /// The passes of `person` not yet ended.
    pub async fn passes(
        &self,
        person: &str,
    ) -> Result<Vec<crate::store::VisitorPass>, AccessError> {
        let (person, now) = (person.to_string(), self.clock.now());
        self.blocking(move |store| store.passes(&person, now)).await
    }

    /// Whether `person` may go to `floor` now; a refusal is audited.
    /// A floor outside the building is left to the lift, which names the floors there are.
    pub async fn check_floor(&self, person: &str, floor: i32) -> Result<(), AccessError> {
        if !self.floor_rules.in_building(floor) {
            return Ok(());
        }
        let access = self.floor_access(person).await?;
        if access.may_reach(floor) {
            return Ok(());
        }
        let (error, outcome) = if access.only_outside_hours(floor) {
            let hours = access.hours.join(", ");
            (
                AccessError::OutsideHours { floor, hours },
                AuditOutcome::OutsideHours,
            )
        } else {
            (
                AccessError::FloorNotAllowed { floor },
                AuditOutcome::FloorNotAllowed,
            )
        };
        tracing::info!(person, floor, %error, "move refused");
        let entry = AuditEntry {
            at: self.clock.now(),
            kind: AuditKind::Lift,
            client: person.to_string(),
            person: Some(person.to_string()),
            similarity: None,
            outcome,
            detail: Some(format!("floor {floor}")),
        };
        if let Err(error) = self.blocking(move |store| store.audit(&entry)).await {
            tracing::error!(%error, "could not write the audit log");
        }
        Err(error)
    }

    /// A challenge for a live login, bound to `owner` (the browser session or kiosk asking).
    pub fn challenge(&self, owner: &str) -> Result<Challenge, AccessError> {
        self.challenges
            .issue(owner, self.clock.now())
            .ok_or(AccessError::TooManyChallenges)
    }

    /// Forgets the faces of accepted bursts: for an evaluation that plays the same photos as
    /// several independent live presentations.
    pub fn forget_seen_faces(&self) {
        self.seen.forget_all();
    }

    /// The presentation attack detection mode in force.
    pub fn pad_mode(&self) -> PadMode {
        self.pad.mode
    }

    /// Decides on a login from a presentation sent by `client`. In order: the challenge (a
    /// nonce that is not good costs no engine time), the client's and the ceiling's limits (a
    /// place is taken before the engine runs), every frame's best face matched against the
    /// gallery, the matched (or nearly matched) person's standing, then presentation attack
    /// detection. Every attempt is audited with its outcome and PAD's signals.
    pub async fn log_in(
        &self,
        client: &LoginClient,
        presentation: Presentation,
    ) -> Result<Admitted, AccessError> {
        let now = self.clock.now();
        let mut log = AttemptLog {
            access: self,
            client: &client.address,
            now,
            signals: PadSignals {
                mode: self.pad.mode,
                ..PadSignals::default()
            },
        };
        let (frames, asked) = match presentation {
            Presentation::Frame(_) if self.pad.mode == PadMode::Challenge => {
                log.write(
                    AuditOutcome::PadRefused,
                    None,
                    None,
                    Some("a single frame".into()),
                )
                .await;
                return Err(AccessError::ChallengeNeeded);
            }
            Presentation::Frame(frame) => (vec![frame], None),
            Presentation::Burst { nonce, frames } => {
                if !(MIN_BURST_FRAMES..=MAX_BURST_FRAMES).contains(&frames.len()) {
                    let error = AccessError::BurstSize { sent: frames.len() };
                    log.write(AuditOutcome::BadImage, None, None, Some(error.to_string()))
                        .await;
                    return Err(error);
                }
                match self.challenges.take(&nonce, &client.challenge_owner, now) {
                    Ok(turns) => (frames, Some(turns)),
                    Err(error) => {
                        log.write(
                            AuditOutcome::PadRefused,
                            None,
                            None,
                            Some(error.to_string()),
                        )
                        .await;
                        return Err(AccessError::Challenge(error));
                    }
                }
            }
        };
        log.signals.turns = asked.clone().unwrap_or_default();
        log.signals.frames_sent = frames.len();

        let trusted = match &client.browser {
            Some(token) => self
                .blocking({
                    let token = token.clone();
                    move |store| store.trusted_browser(&token)
                })
                .await?
                .map(|_| token.clone()),
            None => None,
        };
        let live = asked.is_some();
        let place = match self.take_place(&client.address, trusted.as_deref(), live, now) {
            Ok(place) => place,
            Err(retry_after) => {
                log.write(AuditOutcome::RateLimited, None, None, None).await;
                return Err(AccessError::TooManyAttempts { retry_after });
            }
        };

        let frames = match self.examine(frames).await {
            Ok(frames) => frames,
            Err(error) => {
                log.write(login_outcome(&error), None, None, None).await;
                return Err(error.into());
            }
        };
        log.signals = judge(&self.pad, &frames, asked.as_deref(), &self.seen, now);

        // identity: the frame most like someone leads; every other must be the same person
        let probes: Vec<Embedding> = frames.iter().map(|f| f.embedding.clone()).collect();
        let matches = match_probes(&self.gallery, probes, self.pool.threshold()).await?;
        let lead = matches
            .iter()
            .enumerate()
            .max_by(|a, b| {
                let similarity = |m: &MatchResult| m.similarity().unwrap_or(f32::MIN);
                similarity(a.1).total_cmp(&similarity(b.1))
            })
            .map(|(i, _)| i)
            .unwrap_or_default();
        let similarity = matches[lead].similarity();
        let Some(person) = matches[lead].person.clone() else {
            let near = matches[lead]
                .best
                .clone()
                .filter(|best| best.similarity >= self.person_limits.near_miss);
            return self
                .refuse_unrecognized(place, near, similarity, &log)
                .await;
        };
        let similarity = similarity.unwrap_or_default();
        let standing = self.standing(&person).await?;
        if standing.disabled.is_some() {
            log.write(
                AuditOutcome::LoginDisabled,
                Some(&person),
                Some(similarity),
                None,
            )
            .await;
            return Err(AccessError::LoginDisabled { person });
        }
        if let Some(retry_after) = self.person_must_wait(&standing, now) {
            log.write(
                AuditOutcome::PersonWait,
                Some(&person),
                Some(similarity),
                None,
            )
            .await;
            return Err(AccessError::TooManyAttempts { retry_after });
        }
        if log.signals.refusal.is_none()
            && matches.iter().any(|m| m.person.as_ref() != Some(&person))
        {
            log.signals.refusal = Some(PadRefusal::MixedFaces);
        }
        if let Some(refusal) = log.signals.refusal {
            return self
                .refuse_presentation(place, &person, similarity, refusal, &log)
                .await;
        }

        let visitor_without_pass = {
            let person = person.clone();
            self.blocking(move |store| {
                Ok(store.profile(&person)?.visitor && !has_current_pass(store, &person, now)?)
            })
            .await?
        };
        if visitor_without_pass {
            place.succeeded();
            log.write(
                AuditOutcome::NoAccess,
                Some(&person),
                Some(similarity),
                None,
            )
            .await;
            return Err(AccessError::NoAccess { person });
        }

        place.succeeded();
        let faces: Vec<u64> = match asked {
            Some(_) => frames.iter().filter_map(|f| f.hash).collect(),
            None => Vec::new(),
        };
        self.seen.remember(faces.iter().copied(), now);
        let (admin, new_browser_token) = {
            let (person, trusted) = (person.clone(), trusted.is_some());
            let admins = Arc::clone(&self.configured_admins);
            let keep_secs = self.seen.keep_secs();
            self.blocking(move |store| {
                if !faces.is_empty() {
                    store.remember_faces(&faces, now, keep_secs)?;
                }
                store.person_succeeded(&person)?;
                let token = if trusted {
                    None
                } else {
                    Some(store.trust_browser(&person, now)?)
                };
                Ok((is_administrator(&admins, store, &person)?, token))
            })
            .await?
        };
        log.write(
            AuditOutcome::Recognized,
            Some(&person),
            Some(similarity),
            None,
        )
        .await;
        Ok(Admitted {
            person,
            similarity,
            admin,
            faces_seen: frames[lead].faces_seen,
            new_browser_token,
        })
    }

    /// Every frame's best face, in one engine job (one place in the queue). A frame that is
    /// no image fails the presentation; frames of a burst without a usable face are left out
    /// (a head turning can blur one), unless none has one.
    async fn examine(&self, frames: Vec<Vec<u8>>) -> Result<Vec<FrameEvidence>, FaceError> {
        // from the headers, before any frame waits for an engine
        for frame in &frames {
            check_header(frame, self.frame_limits)?;
        }
        let results = self
            .pool
            .run(move |engine| {
                frames
                    .iter()
                    .map(|frame| examine(engine, frame))
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut found = Vec::with_capacity(results.len());
        let mut faceless = None;
        for result in results {
            match result {
                Ok(evidence) => found.push(evidence),
                Err(error @ (FaceError::NoFace | FaceError::FaceTooSmall { .. })) => {
                    faceless.get_or_insert(error);
                }
                Err(error) => return Err(error),
            }
        }
        match faceless {
            Some(error) if found.is_empty() => Err(error),
            _ => Ok(found),
        }
    }

    /// A recognised person whose presentation PAD refused: a failure for the client, the
    /// ceiling and that person (someone may be holding up their photo).
    async fn refuse_presentation(
        &self,
        place: Place<'_>,
        person: &str,
        similarity: f32,
        refusal: PadRefusal,
        log: &AttemptLog<'_>,
    ) -> Result<Admitted, AccessError> {
        let now = log.now;
        place.failed(now);
        self.count_against(person, now).await?;
        log.write(
            AuditOutcome::PadRefused,
            Some(person),
            Some(similarity),
            None,
        )
        .await;
        Err(AccessError::PresentationRefused(refusal))
    }

    /// One more failure in a row for `person`; their face login goes off at the limit.
    async fn count_against(&self, person: &str, now: i64) -> Result<(), AccessError> {
        let disable_after = self.person_limits.disable_after;
        let name = person.to_string();
        let (before, after) = self
            .blocking(move |store| {
                let before = store.standing(&name)?;
                Ok((before, store.person_failed(&name, now, disable_after)?))
            })
            .await?;
        if after.disabled == Some(Disabled::AfterFailures) && before.disabled.is_none() {
            tracing::warn!(%person, failures = after.failures_in_a_row,
                "face login turned off after failed attempts in a row");
        }
        Ok(())
    }

    /// A face that matched no one: a failure for the client and the ceiling, and, when it came
    /// near someone, for that person too (unless they are in their wait, when it is not decided).
    async fn refuse_unrecognized(
        &self,
        place: Place<'_>,
        near: Option<Candidate>,
        similarity: Option<f32>,
        log: &AttemptLog<'_>,
    ) -> Result<Admitted, AccessError> {
        let now = log.now;
        let Some(near) = near else {
            place.failed(now);
            log.write(AuditOutcome::NotRecognized, None, similarity, None)
                .await;
            return Err(AccessError::NotRecognized);
        };
        let detail = Some(format!("near {} ({:.3})", near.person, near.similarity));
        let standing = self.standing(&near.person).await?;
        if let Some(retry_after) = self.person_must_wait(&standing, now) {
            log.write(AuditOutcome::PersonWait, None, similarity, detail)
                .await;
            return Err(AccessError::TooManyAttempts { retry_after });
        }
        place.failed(now);
        self.count_against(&near.person, now).await?;
        log.write(AuditOutcome::NotRecognized, None, similarity, detail)
            .await;
        Err(AccessError::NotRecognized)
    }

    /// A place for one attempt under the client's limit and (unless the browser is trusted)
    /// the ceiling; or the seconds to wait. A `live` attempt (a challenge burst) from a client
    /// that must wait may still be decided on probation (a few a minute, one at a time): a
    /// resident who passes the challenge at a shared address is not locked out by a stranger's
    /// failures there, while the ceiling and the per-person limits still bound the stranger.
    fn take_place(
        &self,
        address: &str,
        trusted: Option<&str>,
        live: bool,
        now: i64,
    ) -> Result<Place<'_>, u64> {
        // a browser that logged in before is limited on its own, so that strangers failing on
        // the same address (a kiosk, a NAT) do not lock its person out
        let client = trusted.map_or_else(|| address.to_string(), |t| format!("browser:{t}"));
        let probation = match self.clients.begin(&client, now) {
            Ok(()) => false,
            Err(retry_after) if live && trusted.is_none() => {
                self.clients
                    .begin_probation(&client, now)
                    .map_err(|_| retry_after)?;
                true
            }
            Err(retry_after) => return Err(retry_after),
        };
        let in_ceiling = trusted.is_none();
        if in_ceiling && let Err(retry_after) = self.ceiling.begin(now) {
            self.give_back(&client, probation, now);
            return Err(retry_after);
        }
        Ok(Place {
            access: self,
            client,
            began: now,
            probation,
            in_ceiling,
            settled: false,
        })
    }

    fn give_back(&self, client: &str, probation: bool, now: i64) {
        if probation {
            self.clients.end_probation(client, now);
        } else {
            self.clients.release(client, now);
        }
    }

    /// Seconds `standing`'s person must still wait before their next attempt, if any.
    fn person_must_wait(&self, standing: &Standing, now: i64) -> Option<u64> {
        let limits = self.person_limits;
        let since = now - standing.last_failure;
        (standing.failures_in_a_row >= limits.before_wait && since < limits.wait_secs)
            .then(|| (limits.wait_secs - since) as u64)
    }

    async fn standing(&self, person: &str) -> Result<Standing, AccessError> {
        let person = person.to_string();
        self.blocking(move |store| store.standing(&person)).await
    }

    /// What `person`, logged in, may still do: nothing once removed from the gallery or
    /// disabled by an administrator; administrator rights as the configuration and the
    /// database say now.
    /// Asked on every request, so one trip to the database.
    pub async fn rights(&self, person: &str) -> Result<Rights, AccessError> {
        let enrolled = self
            .gallery
            .read()
            .map_err(|_| AccessError::GalleryPoisoned)?
            .people()
            .iter()
            .any(|p| p.name == person);
        if !enrolled {
            return Ok(Rights::Ended);
        }
        let (admins, person) = (Arc::clone(&self.configured_admins), person.to_string());
        let now = self.clock.now();
        self.blocking(move |store| {
            if store.standing(&person)?.disabled == Some(Disabled::ByAdmin) {
                return Ok(Rights::Ended);
            }
            let profile = store.profile(&person)?;
            if profile.visitor && !has_current_pass(store, &person, now)? {
                return Ok(Rights::Ended);
            }
            let admin = is_administrator(&admins, store, &person)?;
            Ok(Rights::Person { admin })
        })
        .await
    }

    /// A store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, AccessError> {
        let store = Arc::clone(&self.store);
        Ok(tokio::task::spawn_blocking(move || call(&store)).await??)
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

/// One login attempt's audit lines: when, from where, and what PAD saw.
struct AttemptLog<'a> {
    access: &'a Access,
    client: &'a str,
    now: i64,
    signals: PadSignals,
}

impl AttemptLog<'_> {
    async fn write(
        &self,
        outcome: AuditOutcome,
        person: Option<&str>,
        similarity: Option<f32>,
        detail: Option<String>,
    ) {
        self.access
            .audit(AuditEntry {
                at: self.now,
                kind: AuditKind::Login,
                client: self.client.to_string(),
                person: person.map(str::to_string),
                similarity,
                outcome,
                detail: Some(match detail {
                    Some(detail) => format!("{}; {detail}", self.signals),
                    None => self.signals.to_string(),
                }),
            })
            .await;
    }
}

/// Measured on DeepFace's photos with the default model (threshold 0.50): impostor pairs reach
/// 0.304 at the 99th percentile (0.46 at most), genuine pairs go down to 0.457. At 0.7 of the
/// threshold (0.35), a failed attempt by the person themself (or a photo of them) counts
/// against them, and a stranger far from everyone does not.
const NEAR_MISS_SHARE_OF_THRESHOLD: f32 = 0.7;

/// An attempt's place under the limits: failed, succeeded, or (dropped undecided) given back.
struct Place<'a> {
    access: &'a Access,
    client: String,
    /// when the place was taken
    began: i64,
    /// taken while the client waits: its outcome leaves the client's count alone
    probation: bool,
    in_ceiling: bool,
    settled: bool,
}

impl Place<'_> {
    fn failed(mut self, now: i64) {
        if self.probation {
            self.access.clients.end_probation(&self.client, now);
        } else {
            self.access.clients.failure(&self.client, now);
        }
        if self.in_ceiling {
            self.access.ceiling.end(now, true);
        }
        self.settled = true;
    }

    fn succeeded(mut self) {
        if self.probation {
            self.access.clients.end_probation(&self.client, self.began);
        } else {
            self.access.clients.success(&self.client, self.began);
        }
        if self.in_ceiling {
            self.access.ceiling.end(self.began, false);
        }
        self.settled = true;
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.access
                .give_back(&self.client, self.probation, self.began);
            if self.in_ceiling {
                self.access.ceiling.end(self.began, false);
            }
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

/// Whether `person` holds a pass in force at `now`.
fn has_current_pass(store: &Store, person: &str, now: i64) -> Result<bool, StoreError> {
    Ok(store
        .passes(person, now)?
        .iter()
        .any(|pass| pass.valid_from <= now))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_client_never_shows_its_tokens() {
        let client = LoginClient {
            address: "192.0.2.7".into(),
            browser: Some("browser-secret-token".into()),
            challenge_owner: "owner-secret-token".into(),
        };
        let shown = format!("{client:?}");
        assert!(shown.contains("192.0.2.7"), "{shown}");
        assert!(!shown.contains("secret-token"), "{shown}");
    }
}
