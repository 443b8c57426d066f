//! The lift: the state the server keeps ([`machine`], pure), the signed device protocol
//! ([`protocol`]), the links that carry it ([`link`]: push over HTTP, pull by long poll, USB
//! serial over [`serial`]), and the service that ties them to a clock and the audit log.

mod building;
mod heartbeats;
pub mod link;
pub mod machine;
pub mod protocol;
pub mod serial;
mod service;

use std::path::PathBuf;

use serde::Serialize;

pub use building::{Building, Dispatched, Recall};
pub use machine::{Accepted, Floors, LiftMachine, LiftState, Timeouts};
pub use protocol::{DeviceState, MoveCommand, ProtocolError, Secret, StatusReport};
pub use service::LiftService;

use crate::config::CarSettings;
use crate::store::{DeviceRole, DeviceRow, LinkKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiftError {
    #[error("the lift is already moving")]
    Busy,
    #[error("floor {floor} does not exist: floors go from {lowest} to {highest}")]
    OutOfRange {
        floor: i32,
        lowest: i32,
        highest: i32,
    },
    #[error("the lift is already at floor {0}")]
    AlreadyThere(i32),
    #[error("this lift does not stop at floor {0}")]
    NotServed(i32),
    #[error("no lift is called {0}")]
    NoSuchLift(String),
    #[error("fire-service recall: the lifts are returning to floor {0} and take no calls")]
    Recall(i32),
    #[error("the lift controller is offline")]
    Offline,
    #[error("the lift is out of service: {0}")]
    Fault(String),
    #[error("this request id was already used for another floor")]
    RequestIdReused,
    #[error("a request id is 1 to 64 letters, digits, '-' or '_'")]
    BadRequestId,
    #[error("device: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("device {name}: {reason}")]
    BadDevice { name: String, reason: String },
    /// The store that every instance shares the car through failed.
    #[error("the lift's state could not be read or kept: {0}")]
    Unavailable(String),
}

/// How the server and a device reach each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Link {
    /// The server POSTs commands to the device at this base URL.
    Push { url: String },
    /// The device long-polls the server for commands (a device behind NAT).
    Pull,
    /// A USB serial line to the board.
    Serial { path: PathBuf },
}

/// As a building manager reads it: "push to http://10.0.0.7", "pull", "serial /dev/ttyUSB0".
impl std::fmt::Display for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Link::Push { url } => write!(f, "push to {url}"),
            Link::Pull => f.write_str("pull (the device polls the server)"),
            Link::Serial { path } => write!(f, "serial {}", path.display()),
        }
    }
}

/// A registered lift controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub name: String,
    pub secret: Secret,
    pub link: Link,
}

impl Device {
    pub fn from_row(row: &DeviceRow) -> Result<Self, LiftError> {
        let bad = |reason: &str| LiftError::BadDevice {
            name: row.name.clone(),
            reason: reason.to_string(),
        };
        let link = match (row.link, &row.address) {
            (LinkKind::Push, Some(url)) => Link::Push { url: url.clone() },
            (LinkKind::Pull, _) => Link::Pull,
            (LinkKind::Serial, Some(path)) => Link::Serial {
                path: PathBuf::from(path),
            },
            (LinkKind::Push, None) => return Err(bad("a push link needs the device's URL")),
            (LinkKind::Serial, None) => return Err(bad("a serial link needs its port")),
        };
        Ok(Self {
            name: row.name.clone(),
            secret: Secret::new(row.secret.clone()),
            link,
        })
    }

    pub fn to_row(&self) -> DeviceRow {
        let (link, address) = match &self.link {
            Link::Push { url } => (LinkKind::Push, Some(url.clone())),
            Link::Pull => (LinkKind::Pull, None),
            Link::Serial { path } => (LinkKind::Serial, Some(path.display().to_string())),
        };
        DeviceRow {
            name: self.name.clone(),
            secret: self.secret.expose().to_string(),
            link,
            address,
            role: DeviceRole::Lift,
        }
    }
}

/// The device that drives each car: the one it names; a building of one car that names none
/// gets the only device registered (none registered: none, and the car stays offline). A
/// named device must be registered, and a device drives one car at most.
pub fn choose_devices(
    rows: &[DeviceRow],
    cars: &[CarSettings],
) -> Result<Vec<Option<Device>>, LiftError> {
    let rows: Vec<&DeviceRow> = rows.iter().filter(|r| r.role == DeviceRole::Lift).collect();
    let mut chosen = Vec::with_capacity(cars.len());
    for car in cars {
        let row =
            match car.device.as_deref() {
                Some(name) => {
                    if cars
                        .iter()
                        .filter(|other| other.device.as_deref() == Some(name))
                        .count()
                        > 1
                    {
                        return Err(LiftError::BadDevice {
                            name: name.to_string(),
                            reason: "named by more than one lift: a device drives one car".into(),
                        });
                    }
                    Some(*rows.iter().find(|r| r.name == name).ok_or_else(|| {
                        LiftError::BadDevice {
                            name: name.to_string(),
                            reason: "not registered: add it with `facelift device add`".into(),
                        }
                    })?)
                }
                None if cars.len() > 1 => None,
                None if rows.len() > 1 => {
                    return Err(LiftError::BadDevice {
                        name: rows
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        reason: "several devices are registered: choose one with lift.device"
                            .into(),
                    });
                }
                None => rows.first().copied(),
            };
        chosen.push(row.map(Device::from_row).transpose()?);
    }
    Ok(chosen)
}

/// Checks a message from `device`: signature, time window, and not a replay, in this run or
/// before a restart (the store keeps the nonces of the window).
pub async fn check_device_message(
    verifier: &protocol::Verifier,
    store: &std::sync::Arc<crate::store::Store>,
    device: &Device,
    message: &protocol::Message<'_>,
    presented: &protocol::Presented<'_>,
    now: i64,
) -> Result<(), LiftError> {
    let stamped = verifier.verify_request(&device.name, &device.secret, message, presented, now)?;
    let (store, name) = (std::sync::Arc::clone(store), device.name.clone());
    let nonce = presented.nonce.unwrap_or_default().to_string();
    let forget_before = now.saturating_sub(verifier.window_secs());
    let fresh = tokio::task::spawn_blocking(move || {
        store.remember_device_nonce(&name, &nonce, stamped, forget_before)
    })
    .await;
    match fresh {
        Ok(Ok(true)) => Ok(()),
        Ok(Ok(false)) => Err(ProtocolError::Replayed.into()),
        Ok(Err(error)) => {
            // refused rather than let through unchecked
            tracing::error!(%error, "could not record a device nonce");
            Err(ProtocolError::Unverifiable.into())
        }
        Err(_) => Err(ProtocolError::Unverifiable.into()),
    }
}

/// A device name is what a building manager would write on a label: letters, digits, `-`, `_`.
pub fn valid_device_name(name: &str) -> bool {
    protocol::valid_request_id(name)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FloorInfo {
    pub number: i32,
    pub name: String,
}

/// The lift's state as the panel names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    Idle,
    Moving,
    Fault,
    Offline,
}

impl Condition {
    pub const ALL: [Condition; 4] = [
        Condition::Idle,
        Condition::Moving,
        Condition::Fault,
        Condition::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Idle => "idle",
            Condition::Moving => "moving",
            Condition::Fault => "fault",
            Condition::Offline => "offline",
        }
    }
}

impl PartialEq<&str> for Condition {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Opening the link to a device.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot make the HTTP client that pushes commands: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// What the panel shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LiftStatus {
    /// The car's name ("A").
    pub lift: String,
    pub state: Condition,
    /// The floor the lift is at or passing, when known.
    pub floor: Option<i32>,
    pub floor_name: Option<String>,
    /// The floor it is moving to.
    pub target: Option<i32>,
    pub target_name: Option<String>,
    pub request_id: Option<String>,
    /// Why it is out of service.
    pub fault: Option<String>,
    pub online: bool,
    /// A fire-service recall is on: every car goes to this floor and takes no calls.
    pub recall_floor: Option<i32>,
    /// The floors this car stops at.
    pub floors: Vec<FloorInfo>,
}

impl LiftStatus {
    pub fn of(lift: &str, machine: &LiftMachine, recall_floor: Option<i32>) -> Self {
        let floors = machine.floors();
        let (state, floor, target, request_id, fault) = match machine.state() {
            LiftState::Idle { floor } => (Condition::Idle, Some(*floor), None, None, None),
            LiftState::Moving { to, request_id, .. } => (
                Condition::Moving,
                machine.position(),
                Some(*to),
                Some(request_id.clone()),
                None,
            ),
            LiftState::Fault { reason, floor, .. } => {
                (Condition::Fault, *floor, None, None, Some(reason.clone()))
            }
            LiftState::Offline => (Condition::Offline, None, None, None, None),
        };
        Self {
            lift: lift.to_string(),
            state,
            floor,
            floor_name: floor.map(|f| floors.name(f)),
            target,
            target_name: target.map(|f| floors.name(f)),
            request_id,
            fault,
            online: state != Condition::Offline,
            recall_floor,
            floors: machine
                .served_floors()
                .into_iter()
                .map(|number| FloorInfo {
                    number,
                    name: floors.name(number),
                })
                .collect(),
        }
    }
}
