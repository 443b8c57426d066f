//! Presentation attack detection measured as ISO/IEC 30107-3 does: attack presentations of
//! each type, and bona fide ones, all sent through the very login decision the server runs
//! (`Access::log_in` with a challenge), on the shared photos.
//!
//! What this data can show, and what it cannot: there is no video of a live person here. A
//! bona fide burst is a person's own photos, taken at different moments with the head turned
//! differently, played in the order of their yaw, so that they turn as the challenge asks. Real
//! turns have more frames in between, motion blur and the same light throughout; these have
//! jumps in light and expression that a live turn does not. So the bona fide error rate here
//! says the checks do not refuse real 3-D heads turning as asked; it cannot say how often a
//! person's real turn in front of a real camera is refused.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::pad::{FrameEvidence, examine};
use super::{Access, AccessError, ChallengeError, LoginClient, Presentation};
use crate::clock::ManualClock;
use crate::config::{PadMode, Settings};
use crate::face::attacks::{on_screen, picture_motion, printed, warp};
use crate::face::gallery::Template;
use crate::face::pad::{Turn, yaw};
use crate::face::{EnginePool, FaceError, Gallery};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum PadEvalError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Identities { path: PathBuf, source: csv::Error },
    #[error("{0}")]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Face(#[from] FaceError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the login decision failed: {0}")]
    Access(AccessError),
    #[error("no person's photos span a head turn of {GENUINE_SPAN}")]
    NoTurns,
}

/// A person's photos make a bona fide turn when their yaw spans at least this: twice the
/// least turn a challenge accepts, so that the turn does not hang on one photo's noise.
pub const GENUINE_SPAN: f32 = 0.3;
/// Bona fide presentations per person: each a new challenge, the photos captured a little
/// differently each time (JPEG quality, scale, light).
const ROUNDS: usize = 4;
/// Frames sent from a camera: the longer side at most this, as the login page captures.
const FRAME_SIDE: u32 = 640;

/// How often one kind of presentation got in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rate {
    pub presented: usize,
    /// accepted (attacks) or refused (bona fide): the errors
    pub errors: usize,
    /// why each was refused
    pub refusals: BTreeMap<String, usize>,
}

impl Rate {
    pub fn rate(&self) -> f64 {
        if self.presented == 0 {
            0.0
        } else {
            self.errors as f64 / self.presented as f64
        }
    }

    fn count(&mut self, outcome: &Result<(), String>, bona_fide: bool) {
        self.presented += 1;
        match outcome {
            Ok(()) => self.errors += usize::from(!bona_fide),
            Err(why) => {
                self.errors += usize::from(bona_fide);
                *self.refusals.entry(why.clone()).or_default() += 1;
            }
        }
    }
}

/// One person of the set, as the evaluation used them.
#[derive(Clone, Debug, Serialize)]
pub struct EvalPerson {
    pub name: String,
    pub photos: usize,
    /// the least and the greatest yaw of their photos' faces
    pub yaw: (f32, f32),
    /// their photos span a turn: they give bona fide bursts
    pub turns: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct PadEvalReport {
    /// the attack types 1 to 6, in order, and a 7th that the geometry cannot stop;
    /// `errors` are APCER's numerator
    pub attacks: Vec<(String, Rate)>,
    /// `errors` are BPCER's numerator
    pub bona_fide: Rate,
    pub people: Vec<EvalPerson>,
}

impl PadEvalReport {
    /// Every attack presentation together: NIST SP 800-63B-4's impostor attack presentation
    /// accept rate (IAPAR), to be below 0.15.
    pub fn iapar(&self) -> f64 {
        let (presented, accepted) = self.attacks.iter().fold((0, 0), |(p, a), (_, rate)| {
            (p + rate.presented, a + rate.errors)
        });
        if presented == 0 {
            0.0
        } else {
            accepted as f64 / presented as f64
        }
    }
}

impl fmt::Display for PadEvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = |rate: &Rate| {
            rate.refusals
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "{:<62} {:>9} {:>8} {:>7}  refused as",
            "attack type (ISO/IEC 30107-3)", "presented", "accepted", "APCER"
        )?;
        for (name, rate) in &self.attacks {
            writeln!(
                f,
                "{name:<62} {:>9} {:>8} {:>6.1}%  {}",
                rate.presented,
                rate.errors,
                100.0 * rate.rate(),
                why(rate)
            )?;
        }
        writeln!(
            f,
            "{:<62} {:>9} {:>8} {:>6.1}%",
            "all attacks (NIST SP 800-63B-4 IAPAR, below 15%)",
            self.attacks.iter().map(|a| a.1.presented).sum::<usize>(),
            self.attacks.iter().map(|a| a.1.errors).sum::<usize>(),
            100.0 * self.iapar()
        )?;
        writeln!(
            f,
            "{:<62} {:>9} {:>8} {:>6.1}%  {}",
            "bona fide bursts (refused, BPCER)",
            self.bona_fide.presented,
            self.bona_fide.errors,
            100.0 * self.bona_fide.rate(),
            why(&self.bona_fide)
        )?;
        let turning: Vec<String> = self
            .people
            .iter()
            .filter(|p| p.turns)
            .map(|p| {
                format!(
                    "{} ({} photos, yaw {:+.2}..{:+.2})",
                    p.name, p.photos, p.yaw.0, p.yaw.1
                )
            })
            .collect();
        writeln!(f, "bona fide turns from: {}", turning.join("; "))
    }
}

/// A photo as a camera frame, and what the engine saw in it.
struct Photo {
    image: RgbImage,
    evidence: FrameEvidence,
    yaw: f32,
}

/// Runs every attack type and the bona fide bursts through `Access::log_in`, the gallery being
/// every person of `faces_dir/identities.csv` enrolled from all their photos.
pub async fn evaluate(
    settings: &Settings,
    pool: Arc<EnginePool>,
    faces_dir: &Path,
) -> Result<PadEvalReport, PadEvalError> {
    let people = load_people(&pool, faces_dir).await?;
    let mut gallery = Gallery::new(pool.cache_key(), Vec::new());
    for (name, photos) in &people {
        for (i, photo) in photos.iter().enumerate() {
            let template = Template {
                file: PathBuf::from(format!("{name}/{i}.jpg")),
                embedding: photo.evidence.embedding.clone(),
            };
            gallery.add_template(name, template);
        }
    }
    let clock = Arc::new(ManualClock::starting_at(1_800_000_000));
    let mut settings = settings.clone();
    settings.pad = PadMode::Challenge;
    // the limits are measured elsewhere: here every presentation is decided
    let web = &mut settings.web;
    web.login_failures_before_wait = u32::MAX;
    web.login_failures_per_minute = u32::MAX;
    web.person_failures_before_wait = u32::MAX;
    web.person_disable_after_with_pad = u32::MAX;
    let access = Access::new(
        &settings,
        Arc::clone(&pool),
        Arc::new(RwLock::new(gallery)),
        Arc::new(Store::open_in_memory()?),
        clock.clone(),
    );
    let mirrored = settings.engine.preprocess.mirror;
    let eval = Eval {
        access,
        clock,
        challenge_secs: settings.web.challenge_secs,
    };

    let mut kinds: Vec<(String, Rate)> = [
        "1 still photo, hand-held jitter",
        "2 still photo tilted in 3-D to imitate the turn",
        "3 print and screen of 1 and 2",
        "4 replay of an accepted burst",
        "5 right burst, wrong or expired challenge",
        "6 frames of two people spliced",
        "7 (not in the issue's list) their photos in turn, on a screen",
    ]
    .iter()
    .map(|name| (name.to_string(), Rate::default()))
    .collect();
    let mut bona_fide = Rate::default();
    let mut rng = StdRng::seed_from_u64(30107);
    let mut listed = Vec::new();

    let turning: Vec<&(String, Vec<Photo>)> = people
        .iter()
        .filter(|(_, photos)| span(photos) >= GENUINE_SPAN)
        .collect();
    if turning.is_empty() {
        return Err(PadEvalError::NoTurns);
    }
    for (index, (name, photos)) in people.iter().enumerate() {
        listed.push(EvalPerson {
            name: name.clone(),
            photos: photos.len(),
            yaw: (
                photos.first().map_or(0.0, |p| p.yaw),
                photos.last().map_or(0.0, |p| p.yaw),
            ),
            turns: span(photos) >= GENUINE_SPAN,
        });
        // attacks 1-3: the most frontal photo held up, moved by hand or turned as a head
        let frontal = photos
            .iter()
            .min_by(|a, b| a.yaw.abs().total_cmp(&b.yaw.abs()))
            .expect("a person has photos");
        let challenge = eval.challenge()?;
        let jitter = hand_held(&frontal.image, &mut rng);
        let outcome = eval
            .present(&challenge.nonce, jpeg_all(&jitter, 90))
            .await?;
        kinds[0].1.count(&outcome, false);
        for kind3 in [screen_frames(&jitter), print_frames(&jitter)] {
            let challenge = eval.challenge()?;
            let outcome = eval.present(&challenge.nonce, kind3).await?;
            kinds[2].1.count(&outcome, false);
        }
        // turned as the challenge asks, the attacker guessing which way a picture turns
        for direction in [1.0, -1.0] {
            let challenge = eval.challenge()?;
            let tilted = tilted_as_asked(&frontal.image, &challenge.turns, direction);
            let outcome = eval
                .present(&challenge.nonce, jpeg_all(&tilted, 90))
                .await?;
            kinds[1].1.count(&outcome, false);
            for show in [screen_frames, print_frames] {
                let challenge = eval.challenge()?;
                let tilted = tilted_as_asked(&frontal.image, &challenge.turns, direction);
                let outcome = eval.present(&challenge.nonce, show(&tilted)).await?;
                kinds[2].1.count(&outcome, false);
            }
        }

        if span(photos) < GENUINE_SPAN {
            continue;
        }
        for round in 0..ROUNDS {
            // each round is another moment of a live person: nothing of it was seen before
            eval.access.forget_seen_faces();
            let challenge = eval.challenge()?;
            let frames = captured(&turn_burst(photos, &challenge.turns, mirrored), round);
            let outcome = eval.present(&challenge.nonce, frames.clone()).await?;
            bona_fide.count(&outcome, true);
            if round != 0 || outcome.is_err() {
                continue;
            }
            // attack 4: the accepted burst again, with its own nonce and with a new one
            let again = eval.present(&challenge.nonce, frames.clone()).await?;
            kinds[3].1.count(&again, false);
            let same_turns = eval.challenge_asking(&challenge.turns)?;
            let again = eval.present(&same_turns.nonce, frames.clone()).await?;
            kinds[3].1.count(&again, false);
            eval.access.forget_seen_faces();

            // attack 5: the right burst for another challenge, too late, or from elsewhere
            let other = eval.challenge()?;
            let opposite: Vec<Turn> = other.turns.iter().map(|t| opposite(*t)).collect();
            let wrong = captured(&turn_burst(photos, &opposite, mirrored), 1);
            kinds[4]
                .1
                .count(&eval.present(&other.nonce, wrong).await?, false);
            let late = eval.challenge()?;
            let right = captured(&turn_burst(photos, &late.turns, mirrored), 1);
            eval.clock.advance(eval.challenge_secs as i64 + 1);
            kinds[4]
                .1
                .count(&eval.present(&late.nonce, right).await?, false);
            let theirs = eval.challenge_for("another-client")?;
            let right = captured(&turn_burst(photos, &theirs.turns, mirrored), 1);
            kinds[4]
                .1
                .count(&eval.present(&theirs.nonce, right).await?, false);

            eval.access.forget_seen_faces();
            // attack 7: an attacker with photos of the person in several poses shows them in
            // turn on a screen; each photo is a real 3-D head, so the geometry cannot tell
            let shown = eval.challenge()?;
            let frames: Vec<Vec<u8>> = turn_burst(photos, &shown.turns, mirrored)
                .iter()
                .map(|image| jpeg(&on_screen(image), 60))
                .collect();
            kinds[6]
                .1
                .count(&eval.present(&shown.nonce, frames).await?, false);

            eval.access.forget_seen_faces();
            // attack 6: the start of this person's turn, the end of another's
            let (other_name, other_photos) = &people[(index + 1) % people.len()];
            if other_name != name {
                let splice = eval.challenge()?;
                let mut frames = captured(&turn_burst(photos, &splice.turns, mirrored), 1);
                let theirs = captured(&turn_burst(other_photos, &splice.turns, mirrored), 1);
                let half = frames.len() / 2;
                frames.truncate(half.max(1));
                frames.extend(theirs.into_iter().skip(half));
                let outcome = eval.present(&splice.nonce, frames).await?;
                kinds[5].1.count(&outcome, false);
            }
        }
    }
    Ok(PadEvalReport {
        attacks: kinds,
        bona_fide,
        people: listed,
    })
}

/// The login decision, one client asking for challenges and answering them.
struct Eval {
    access: Access,
    clock: Arc<ManualClock>,
    challenge_secs: u64,
}

const OWNER: &str = "pad-eval";

impl Eval {
    fn challenge(&self) -> Result<super::Challenge, PadEvalError> {
        self.challenge_for(OWNER)
    }

    fn challenge_for(&self, owner: &str) -> Result<super::Challenge, PadEvalError> {
        self.access.challenge(owner).map_err(PadEvalError::Access)
    }

    /// A challenge asking for `turns` (asked again until it does; each new one replaces the
    /// last).
    fn challenge_asking(&self, turns: &[Turn]) -> Result<super::Challenge, PadEvalError> {
        loop {
            let challenge = self.challenge()?;
            if challenge.turns == turns {
                return Ok(challenge);
            }
        }
    }

    /// `Ok` when let in, else why not; an error only when the decision itself failed.
    async fn present(
        &self,
        nonce: &str,
        frames: Vec<Vec<u8>>,
    ) -> Result<Result<(), String>, PadEvalError> {
        let client = LoginClient {
            address: "192.0.2.1".into(),
            browser: None,
            challenge_owner: OWNER.into(),
        };
        let presentation = Presentation::Burst {
            nonce: nonce.to_string(),
            frames,
        };
        match self.access.log_in(&client, presentation).await {
            Ok(_) => Ok(Ok(())),
            Err(error) => match refusal_name(&error) {
                Some(name) => Ok(Err(name)),
                None => Err(PadEvalError::Access(error)),
            },
        }
    }
}

/// The short name of a refusal; `None` for a failure of the server.
fn refusal_name(error: &AccessError) -> Option<String> {
    Some(match error {
        AccessError::PresentationRefused(refusal) => refusal.as_str().to_string(),
        AccessError::NotRecognized => "not_recognized".into(),
        AccessError::Challenge(ChallengeError::Unknown) => "challenge_unknown".into(),
        AccessError::Challenge(ChallengeError::Expired) => "challenge_expired".into(),
        AccessError::Challenge(ChallengeError::OtherClient) => "challenge_other_client".into(),
        AccessError::Face(FaceError::NoFace | FaceError::FaceTooSmall { .. }) => "no_face".into(),
        AccessError::BurstSize { .. } => "burst_size".into(),
        _ => return None,
    })
}

/// The people of `identities.csv` (file,person), each with their photos as camera frames in
/// order of yaw; photos without a face are left out.
async fn load_people(
    pool: &Arc<EnginePool>,
    faces_dir: &Path,
) -> Result<Vec<(String, Vec<Photo>)>, PadEvalError> {
    let path = faces_dir.join("identities.csv");
    let mut reader = csv::Reader::from_path(&path).map_err(|source| PadEvalError::Identities {
        path: path.clone(),
        source,
    })?;
    let mut files: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for row in reader.records() {
        let row = row.map_err(|source| PadEvalError::Identities {
            path: path.clone(),
            source,
        })?;
        files
            .entry(row[1].to_string())
            .or_default()
            .push(faces_dir.join(&row[0]));
    }
    let mut people = Vec::new();
    for (name, paths) in files {
        let mut photos = Vec::new();
        for path in paths {
            let bytes = std::fs::read(&path).map_err(|source| PadEvalError::Io {
                path: path.clone(),
                source,
            })?;
            let image = camera_frame(&image::load_from_memory(&bytes)?.to_rgb8());
            let frame = jpeg(&image, 90);
            let evidence = pool.run(move |engine| examine(engine, &frame)).await?;
            match evidence {
                Ok(evidence) => {
                    let Some(turn) = yaw(&evidence.landmarks) else {
                        continue;
                    };
                    photos.push(Photo {
                        image,
                        evidence,
                        yaw: turn,
                    });
                }
                Err(FaceError::NoFace | FaceError::FaceTooSmall { .. }) => {}
                Err(error) => return Err(error.into()),
            }
        }
        photos.sort_by(|a, b| a.yaw.total_cmp(&b.yaw));
        if !photos.is_empty() {
            people.push((name, photos));
        }
    }
    Ok(people)
}

fn span(photos: &[Photo]) -> f32 {
    photos.last().map_or(0.0, |l| l.yaw) - photos.first().map_or(0.0, |f| f.yaw)
}

fn opposite(turn: Turn) -> Turn {
    match turn {
        Turn::Left => Turn::Right,
        Turn::Right => Turn::Left,
    }
}

/// A photo scaled to a camera frame's size.
pub fn camera_frame(image: &RgbImage) -> RgbImage {
    let (w, h) = image.dimensions();
    let scale = (FRAME_SIDE as f32 / w.max(h) as f32).min(1.0);
    if scale >= 1.0 {
        return image.clone();
    }
    let (w, h) = (
        ((w as f32 * scale) as u32).max(1),
        ((h as f32 * scale) as u32).max(1),
    );
    image::imageops::resize(image, w, h, image::imageops::FilterType::Triangle)
}

/// `image` as a JPEG of `quality`, as a camera page or board sends it.
pub fn jpeg(image: &RgbImage, quality: u8) -> Vec<u8> {
    let mut bytes = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality);
    image
        .write_with_encoder(encoder)
        .expect("JPEG encoding into memory does not fail");
    bytes
}

fn jpeg_all(images: &[RgbImage], quality: u8) -> Vec<Vec<u8>> {
    images.iter().map(|image| jpeg(image, quality)).collect()
}

/// A person's photos played so that they make `turns`.
fn turn_burst<'a>(photos: &'a [Photo], turns: &[Turn], mirrored: bool) -> Vec<&'a RgbImage> {
    let by_yaw: Vec<(&RgbImage, f32)> = photos.iter().map(|p| (&p.image, p.yaw)).collect();
    turn_order(&by_yaw, turns, mirrored)
}

/// Views of a head (each with its yaw, in order of yaw) played so that they make `turns`:
/// for each turn, in order of yaw the way it turns (a turn and back the other way: there,
/// then back). At most 6 views, spread over the span, so that two turns fit in a burst; a
/// burst of fewer than 3 frames holds its start.
pub fn turn_order<T: Clone>(by_yaw: &[(T, f32)], turns: &[Turn], mirrored: bool) -> Vec<T> {
    let picked: Vec<&(T, f32)> = if by_yaw.len() <= 6 {
        by_yaw.iter().collect()
    } else {
        (0..6)
            .map(|i| &by_yaw[i * (by_yaw.len() - 1) / 5])
            .collect()
    };
    let mut frames: Vec<T> = Vec::new();
    for (k, turn) in turns.iter().enumerate() {
        let sign = turn.yaw_sign(mirrored);
        let mut ordered = picked.clone();
        ordered.sort_by(|a, b| (a.1 * sign).total_cmp(&(b.1 * sign)));
        // a later turn starts where the last one ended
        let skip = usize::from(k > 0);
        frames.extend(ordered.iter().skip(skip).map(|view| view.0.clone()));
    }
    while !frames.is_empty() && frames.len() < super::pad::MIN_BURST_FRAMES {
        frames.insert(0, frames[0].clone());
    }
    frames
}

/// The frames as one capture would give them: each round a little differently (JPEG quality,
/// the camera's scale, the light).
fn captured(frames: &[&RgbImage], round: usize) -> Vec<Vec<u8>> {
    frames
        .iter()
        .map(|image| match round % 4 {
            0 => jpeg(image, 90),
            1 => jpeg(image, 75),
            2 => {
                let (w, h) = image.dimensions();
                let (w, h) = ((w * 4 / 5).max(1), (h * 4 / 5).max(1));
                let smaller =
                    image::imageops::resize(*image, w, h, image::imageops::FilterType::Triangle);
                jpeg(&smaller, 85)
            }
            _ => jpeg(&brighter(image, 18), 90),
        })
        .collect()
}

fn brighter(image: &RgbImage, by: u8) -> RgbImage {
    let mut out = image.clone();
    for pixel in out.pixels_mut() {
        pixel.0 = pixel.0.map(|v| v.saturating_add(by));
    }
    out
}

const BACKGROUND: Rgb<u8> = Rgb([70, 68, 64]);

/// Attack 1: a photo held up by hand, six frames each moved a little (a small turn and tilt,
/// a few pixels' shift).
fn hand_held(image: &RgbImage, rng: &mut StdRng) -> Vec<RgbImage> {
    (0..6)
        .filter_map(|_| {
            let motion = picture_motion(
                image.dimensions(),
                rng.random_range(-0.06..0.06),
                rng.random_range(-0.06..0.06),
                [rng.random_range(-6.0..6.0), rng.random_range(-6.0..6.0)],
            )?;
            warp(image, &motion, BACKGROUND)
        })
        .collect()
}

/// Attack 2: a photo turned as a head would turn for `turns`, a little more each frame, up to
/// 0.6 rad (34 degrees) each way; `direction` is the attacker's guess of which way to turn a
/// picture for a "left".
fn tilted_as_asked(image: &RgbImage, turns: &[Turn], direction: f32) -> Vec<RgbImage> {
    let mut angles = vec![0.0f32];
    for turn in turns {
        let sign = direction
            * match turn {
                Turn::Left => 1.0,
                Turn::Right => -1.0,
            };
        let from = *angles.last().expect("one angle at least");
        let to = 0.6 * sign;
        for step in 1..=4 {
            angles.push(from + (to - from) * step as f32 / 4.0);
        }
    }
    angles
        .iter()
        .filter_map(|&angle| {
            let motion = picture_motion(image.dimensions(), angle, 0.03, [0.0, 0.0])?;
            warp(image, &motion, BACKGROUND)
        })
        .collect()
}

/// Attack 3: the frames shown on a screen (and re-encoded at JPEG quality 60).
fn screen_frames(frames: &[RgbImage]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| jpeg(&on_screen(f), 60)).collect()
}

/// Attack 3: the frames printed on paper.
fn print_frames(frames: &[RgbImage]) -> Vec<Vec<u8>> {
    frames.iter().map(|f| jpeg(&printed(f), 85)).collect()
}
