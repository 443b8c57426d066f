//! Lobby kiosks and their camera boards, the other seed project's flow with recognition on
//! the server: the kiosk asks for a login, the server queues a capture request for the
//! kiosk's camera (which long-polls for it, as a lift controller polls for moves), the camera
//! uploads its signed frame or burst, the very same login decision as the browser's runs on
//! it, and the result is pushed to the kiosk page live; a recognised person's car is booked
//! (their home floor at once when the kiosk dispatches, else the floor they press).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::access::{Access, AccessError, LoginClient, Presentation};
use crate::clock::Clock;
use crate::config::{KioskSettings, PadMode, Settings};
use crate::face::pad::Turn;
use crate::lift::link::PullLink;
use crate::lift::protocol::{self, Presented, Verifier};
use crate::lift::{Building, Device, Floors, LiftError, check_device_message};
use crate::store::{DeviceRole, DeviceRow, Store};

/// Frames a camera captures for a live (challenge) login.
pub const BURST_FRAMES: usize = 6;
/// A recognised person may book a ride from the kiosk for this long.
pub const RIDE_WINDOW_SECS: i64 = 30;
/// An attempt the camera has not answered by then may be replaced by a new one.
const ATTEMPT_SECS: i64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum KioskError {
    #[error("no kiosk is called {0}")]
    NoSuchKiosk(String),
    #[error("kiosk {kiosk}: its camera {camera} is not a registered camera board")]
    NoCamera { kiosk: String, camera: String },
    #[error("no login is waiting for this camera, or it was answered already")]
    NoSuchAttempt,
    #[error("nobody was recognised at this kiosk in the last {RIDE_WINDOW_SECS} s")]
    NoOneRecognized,
    #[error("a camera upload is one JPEG, or a burst of length-prefixed JPEGs: {0}")]
    BadUpload(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Lift(#[from] LiftError),
}

/// What a camera board is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CaptureRequest {
    pub attempt_id: String,
    /// Frames to capture (1, or a burst for a live login).
    pub frames: usize,
    /// The challenge the burst answers (sent back with it), for a live login.
    pub nonce: Option<String>,
}

/// What a kiosk page hears, live.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum KioskEvent {
    /// The camera is asked to capture: look at it (and turn as asked).
    Capturing {
        attempt_id: String,
        #[schema(value_type = Vec<String>)]
        turns: Vec<Turn>,
    },
    /// The frames arrived and are being checked.
    Checking { attempt_id: String },
    /// Someone was let in: their floors to choose from.
    Recognized {
        attempt_id: String,
        name: String,
        floors: Vec<crate::lift::FloorInfo>,
        /// Why the home floor was not booked at once, when the kiosk dispatches.
        note: Option<String>,
    },
    /// A car is booked: "Lift B to floor 7".
    Booked {
        attempt_id: String,
        name: String,
        lift: String,
        floor: i32,
        floor_name: String,
    },
    /// Not let in, or the ride was refused: the code and the reason, as the API gives them.
    Refused {
        attempt_id: String,
        code: String,
        message: String,
    },
}

/// A kiosk's login in progress, or decided.
struct Attempt {
    id: String,
    started: i64,
    /// the challenge the camera's burst answers
    nonce: Option<String>,
    /// the turns it asks, told again to a page that presses Start twice
    turns: Vec<Turn>,
    /// the person recognised, and when
    recognized: Option<(String, i64)>,
    answered: bool,
    booked: bool,
}

struct Kiosk {
    settings: KioskSettings,
    /// the kiosk tablet's own secret (its pairing key), when registered
    secret: Option<protocol::Secret>,
    camera: Arc<Camera>,
    events: broadcast::Sender<KioskEvent>,
    attempt: Mutex<Option<Attempt>>,
}

impl Kiosk {
    fn attempt(&self) -> MutexGuard<'_, Option<Attempt>> {
        self.attempt
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn owner(&self) -> String {
        format!("kiosk:{}", self.settings.name)
    }

    fn tell(&self, event: KioskEvent) {
        // nobody listening is fine: the page may be reloading
        let _ = self.events.send(event);
    }
}

struct Camera {
    device: Device,
    requests: PullLink<CaptureRequest>,
}

/// Every kiosk and camera. Cloning shares them.
#[derive(Clone)]
pub struct Kiosks {
    kiosks: Arc<Vec<Kiosk>>,
    access: Access,
    lifts: Building,
    floors: Floors,
    verifier: Arc<Verifier>,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
}

/// The person's floors by name, as a kiosk shows them.
fn floor_list(floors: &Floors, numbers: &[i32]) -> Vec<crate::lift::FloorInfo> {
    numbers
        .iter()
        .map(|&number| crate::lift::FloorInfo {
            number,
            name: floors.name(number),
        })
        .collect()
}

impl Kiosks {
    /// The configured kiosks, each with its registered camera board.
    pub fn new(
        settings: &Settings,
        rows: &[DeviceRow],
        access: Access,
        lifts: Building,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, KioskError> {
        let row = |name: &str, role| rows.iter().find(|r| r.name == name && r.role == role);
        let kiosks = settings
            .kiosks
            .iter()
            .map(|kiosk| {
                let camera =
                    row(&kiosk.camera, DeviceRole::Camera).ok_or_else(|| KioskError::NoCamera {
                        kiosk: kiosk.name.clone(),
                        camera: kiosk.camera.clone(),
                    })?;
                Ok(Kiosk {
                    settings: kiosk.clone(),
                    secret: row(&kiosk.name, DeviceRole::Kiosk)
                        .map(|r| protocol::Secret::new(r.secret.clone())),
                    camera: Arc::new(Camera {
                        device: Device {
                            name: camera.name.clone(),
                            secret: protocol::Secret::new(camera.secret.clone()),
                            link: crate::lift::Link::Pull,
                        },
                        requests: PullLink::default(),
                    }),
                    events: broadcast::channel(16).0,
                    attempt: Mutex::new(None),
                })
            })
            .collect::<Result<Vec<_>, KioskError>>()?;
        Ok(Self {
            kiosks: Arc::new(kiosks),
            access,
            lifts,
            floors: Floors::of(&settings.lift),
            verifier: Arc::new(Verifier::new(settings.lift.signature_window_secs)),
            store,
            clock,
        })
    }

    fn kiosk(&self, name: &str) -> Result<&Kiosk, KioskError> {
        self.kiosks
            .iter()
            .find(|k| k.settings.name == name)
            .ok_or_else(|| KioskError::NoSuchKiosk(name.to_string()))
    }

    fn kiosk_of_camera(&self, camera: &str) -> Option<&Kiosk> {
        self.kiosks.iter().find(|k| k.camera.device.name == camera)
    }

    /// The kiosk's settings.
    pub fn settings(&self, name: &str) -> Result<&KioskSettings, KioskError> {
        Ok(&self.kiosk(name)?.settings)
    }

    /// Whether `key` is the kiosk's pairing secret (a kiosk not registered has none).
    pub fn key_matches(&self, name: &str, key: &str) -> bool {
        self.kiosk(name)
            .ok()
            .and_then(|k| k.secret.as_ref())
            .is_some_and(|secret| protocol::same_secret(secret, key))
    }

    /// Every event of a kiosk from now on.
    pub fn subscribe(&self, name: &str) -> Result<broadcast::Receiver<KioskEvent>, KioskError> {
        Ok(self.kiosk(name)?.events.subscribe())
    }

    /// A person pressed "Start" at the kiosk: the camera is asked to capture. An attempt
    /// still waiting for the camera is answered again rather than doubled.
    pub fn start(&self, name: &str) -> Result<KioskEvent, KioskError> {
        let kiosk = self.kiosk(name)?;
        let now = self.clock.now();
        let mut attempt = kiosk.attempt();
        if let Some(current) = attempt.as_ref()
            && !current.answered
            && now - current.started < ATTEMPT_SECS
        {
            return Ok(KioskEvent::Capturing {
                attempt_id: current.id.clone(),
                turns: current.turns.clone(),
            });
        }
        let id = protocol::new_request_id();
        let (nonce, turns, frames) = match self.access.pad_mode() {
            PadMode::Challenge => {
                let challenge = self.access.challenge(&kiosk.owner())?;
                (Some(challenge.nonce), challenge.turns, BURST_FRAMES)
            }
            PadMode::Passive | PadMode::Off => (None, Vec::new(), 1),
        };
        *attempt = Some(Attempt {
            id: id.clone(),
            nonce: nonce.clone(),
            turns: turns.clone(),
            started: now,
            recognized: None,
            answered: false,
            booked: false,
        });
        drop(attempt);
        kiosk.camera.requests.queue(CaptureRequest {
            attempt_id: id.clone(),
            frames,
            nonce,
        });
        let event = KioskEvent::Capturing {
            attempt_id: id,
            turns,
        };
        kiosk.tell(event.clone());
        Ok(event)
    }

    /// Checks a signed message from a camera board; answers the camera's name.
    pub async fn verify_camera(
        &self,
        name: Option<&str>,
        method: &str,
        path: &str,
        presented: &Presented<'_>,
        body: &[u8],
    ) -> Result<String, LiftError> {
        let kiosk = name
            .and_then(|name| self.kiosk_of_camera(name))
            .ok_or(protocol::ProtocolError::UnknownDevice)?;
        let device = &kiosk.camera.device;
        let message = protocol::Message { method, path, body };
        let now = self.clock.now();
        check_device_message(
            &self.verifier,
            &self.store,
            device,
            &message,
            presented,
            now,
        )
        .await?;
        Ok(device.name.clone())
    }

    /// Signs an answer to a camera's request.
    pub fn sign_for_camera(
        &self,
        camera: &str,
        status: u16,
        path: &str,
        request_nonce: &str,
        body: &[u8],
    ) -> Option<protocol::Signed> {
        let kiosk = self.kiosk_of_camera(camera)?;
        Some(protocol::sign_response(
            &kiosk.camera.device.secret,
            status,
            path,
            request_nonce,
            body,
            self.clock.now(),
        ))
    }

    /// A camera's long poll for its next capture request.
    pub async fn next_capture(&self, camera: &str, wait: Duration) -> Option<CaptureRequest> {
        let kiosk = self.kiosk_of_camera(camera)?;
        kiosk.camera.requests.next_command(wait).await
    }

    /// A camera's frames for `attempt_id`: the login decision runs on them, with the camera
    /// as the client (its name is the sensor in the audit log), and the kiosk hears the result.
    pub async fn frames(
        &self,
        camera: &str,
        attempt_id: &str,
        frames: Vec<Vec<u8>>,
    ) -> Result<KioskEvent, KioskError> {
        let kiosk = self
            .kiosk_of_camera(camera)
            .ok_or(KioskError::NoSuchAttempt)?;
        let nonce = {
            let mut attempt = kiosk.attempt();
            match attempt.as_mut() {
                Some(a) if a.id == attempt_id && !a.answered => {
                    a.answered = true;
                    a.nonce.take()
                }
                _ => return Err(KioskError::NoSuchAttempt),
            }
        };
        kiosk.tell(KioskEvent::Checking {
            attempt_id: attempt_id.to_string(),
        });
        let presentation = match self.access.pad_mode() {
            PadMode::Challenge => Presentation::Burst {
                nonce: nonce.unwrap_or_default(),
                frames,
            },
            PadMode::Passive | PadMode::Off => Presentation::Frame(
                frames
                    .into_iter()
                    .next()
                    .ok_or_else(|| KioskError::BadUpload("no frame".into()))?,
            ),
        };
        let client = LoginClient {
            address: format!("camera:{camera}"),
            browser: None,
            challenge_owner: kiosk.owner(),
        };
        let event = match self.access.log_in(&client, presentation).await {
            Ok(admitted) => self.recognized(kiosk, attempt_id, &admitted.person).await,
            Err(error) => refusal(attempt_id, &KioskError::Access(error)),
        };
        kiosk.tell(event.clone());
        Ok(event)
    }

    async fn recognized(&self, kiosk: &Kiosk, attempt_id: &str, person: &str) -> KioskEvent {
        let now = self.clock.now();
        if let Some(attempt) = kiosk.attempt().as_mut().filter(|a| a.id == attempt_id) {
            attempt.recognized = Some((person.to_string(), now));
        }
        let access = match self.access.floor_access(person).await {
            Ok(access) => access,
            Err(error) => return refusal(attempt_id, &KioskError::Access(error)),
        };
        let name = access
            .display_name
            .clone()
            .unwrap_or_else(|| person.to_string());
        let home = access
            .home_floor
            .filter(|home| access.may_reach(*home) && *home != kiosk.settings.floor);
        let mut note = None;
        if kiosk.settings.dispatch
            && let Some(home) = home
        {
            match self.book(kiosk, attempt_id, person, home).await {
                Ok(event) => return event,
                Err(error) => note = Some(error.to_string()),
            }
        }
        let floors: Vec<i32> = access
            .floors
            .iter()
            .copied()
            .filter(|f| *f != kiosk.settings.floor)
            .collect();
        KioskEvent::Recognized {
            attempt_id: attempt_id.to_string(),
            name,
            floors: floor_list(&self.floors, &floors),
            note,
        }
    }

    /// The person recognised at the kiosk (within the ride window) asks for `floor`.
    pub async fn ride(
        &self,
        name: &str,
        attempt_id: &str,
        floor: i32,
    ) -> Result<KioskEvent, KioskError> {
        let kiosk = self.kiosk(name)?;
        let now = self.clock.now();
        let person = kiosk
            .attempt()
            .as_ref()
            .filter(|a| a.id == attempt_id && !a.booked)
            .and_then(|a| a.recognized.clone())
            .filter(|(_, at)| now - at <= RIDE_WINDOW_SECS)
            .map(|(person, _)| person)
            .ok_or(KioskError::NoOneRecognized)?;
        self.access.check_floor(&person, floor).await?;
        let event = self.book(kiosk, attempt_id, &person, floor).await?;
        kiosk.tell(event.clone());
        Ok(event)
    }

    /// Books the car the server assigns from the kiosk's floor to `floor`; the caller tells
    /// the kiosk (once: a login's result is told by `frames`).
    async fn book(
        &self,
        kiosk: &Kiosk,
        attempt_id: &str,
        person: &str,
        floor: i32,
    ) -> Result<KioskEvent, KioskError> {
        let dispatched = self.lifts.request_move(
            None,
            Some(kiosk.settings.floor),
            floor,
            Some(format!("{attempt_id}-ride")),
            person,
        )?;
        if let Some(attempt) = kiosk.attempt().as_mut().filter(|a| a.id == attempt_id) {
            attempt.booked = true;
        }
        let name = match self.access.floor_access(person).await {
            Ok(access) => access.display_name.unwrap_or_else(|| person.to_string()),
            Err(_) => person.to_string(),
        };
        let event = KioskEvent::Booked {
            attempt_id: attempt_id.to_string(),
            name,
            lift: dispatched.lift,
            floor,
            floor_name: self.floors.name(floor),
        };
        Ok(event)
    }
}

/// A refusal as the kiosk shows it.
fn refusal(attempt_id: &str, error: &KioskError) -> KioskEvent {
    let code = match error {
        KioskError::Access(AccessError::NotRecognized) => "not_recognized",
        KioskError::Access(AccessError::TooManyAttempts { .. }) => "too_many_attempts",
        KioskError::Access(AccessError::PresentationRefused(_)) => "pad_refused",
        KioskError::Access(AccessError::LoginDisabled { .. }) => "login_disabled",
        KioskError::Access(AccessError::NoAccess { .. }) => "no_access",
        KioskError::Access(AccessError::Face(_)) => "no_face",
        _ => "refused",
    };
    KioskEvent::Refused {
        attempt_id: attempt_id.to_string(),
        code: code.to_string(),
        message: error.to_string(),
    }
}

/// Splits a camera upload: a JPEG as it is, or a burst of frames each preceded by its length
/// (4 bytes, big-endian).
pub fn split_upload(burst: bool, body: &[u8]) -> Result<Vec<Vec<u8>>, KioskError> {
    if !burst {
        return Ok(vec![body.to_vec()]);
    }
    let mut frames = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (length, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| KioskError::BadUpload("a length cut short".into()))?;
        let length = u32::from_be_bytes(*length) as usize;
        if length == 0 || length > after.len() {
            return Err(KioskError::BadUpload(format!(
                "a frame of {length} bytes where {} remain",
                after.len()
            )));
        }
        let (frame, after) = after.split_at(length);
        frames.push(frame.to_vec());
        rest = after;
        if frames.len() > crate::access::pad::MAX_BURST_FRAMES {
            return Err(KioskError::BadUpload("too many frames".into()));
        }
    }
    if frames.is_empty() {
        return Err(KioskError::BadUpload("no frame".into()));
    }
    Ok(frames)
}

/// Builds a burst upload, as a camera board does.
pub fn join_burst(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut body = Vec::new();
    for frame in frames {
        body.extend_from_slice(&(frame.len() as u32).to_be_bytes());
        body.extend_from_slice(frame);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The camera vectors the firmware's camera core checks too
    /// (`firmware/test/camera_vectors.txt`): binary upload signatures, and the burst layout.
    #[test]
    fn camera_messages_match_the_vectors_shared_with_the_firmware() {
        use crate::lift::Secret;
        use crate::lift::protocol::{request_string, signature};
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/firmware/test/camera_vectors.txt"
        );
        let text = std::fs::read_to_string(path).expect("the shared vectors");
        let (mut signatures, mut bursts) = (0, 0);
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields[..] {
                ["burst", frames, burst] => {
                    let frames: Vec<Vec<u8>> = frames
                        .split(',')
                        .map(|f| hex::decode(f).expect("hex"))
                        .collect();
                    let burst = hex::decode(burst).expect("hex");
                    assert_eq!(join_burst(&frames), burst);
                    assert_eq!(split_upload(true, &burst).expect("split"), frames);
                    bursts += 1;
                }
                [secret, method, path, timestamp, nonce, body, expected] => {
                    let body = hex::decode(body).expect("hex body");
                    let text = request_string(
                        method,
                        path,
                        timestamp.parse().expect("timestamp"),
                        nonce,
                        &body,
                    );
                    assert_eq!(signature(&Secret::new(secret), &text), expected, "{line}");
                    signatures += 1;
                }
                _ => panic!("not a vector: {line:?}"),
            }
        }
        assert!(signatures >= 4 && bursts >= 1, "{signatures} {bursts}");
    }

    #[test]
    fn a_burst_splits_back_into_its_frames_and_a_cut_one_is_refused() {
        let frames = vec![vec![1, 2, 3], vec![4], vec![5, 6]];
        let body = join_burst(&frames);
        assert_eq!(split_upload(true, &body).expect("split"), frames);
        assert!(split_upload(true, &body[..body.len() - 1]).is_err());
        assert!(split_upload(true, &[0, 0]).is_err());
        assert!(split_upload(true, &[]).is_err());
        assert!(split_upload(true, &[0, 0, 0, 0]).is_err(), "an empty frame");
        assert_eq!(
            split_upload(false, b"jpeg").expect("one"),
            [b"jpeg".to_vec()]
        );
    }
}
