//! The links that carry commands to a device, one per transport, behind one interface: the
//! service hands a command to `DeviceLink::send` and hears what became of it as `LinkEvent`s
//! on a channel. A link knows the protocol and its transport, nothing of the lift's state.

mod pull;
mod push;
mod serial;

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

pub use pull::{MAX_POLL, PullLink};
pub use push::PushLink;
pub use serial::SerialLink;

use super::protocol::{MoveCommand, StatusReport};
use super::{Device, Link, LinkError};
use crate::clock::Clock;

/// What a link tells the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A status report that came over the link itself (serial; HTTP reports come through the
    /// web layer).
    Report(StatusReport),
    /// The device answered a pushed command with this status (signed and checked).
    Answered { command: MoveCommand, status: u16 },
    /// The device refused the command.
    Refused { request_id: String, reason: String },
    /// The command did not reach the device, or its answer could not be trusted.
    Failed { request_id: String, reason: String },
}

/// The link to the lift's device.
pub enum DeviceLink {
    Push(PushLink),
    Pull(PullLink),
    Serial(SerialLink),
}

impl DeviceLink {
    /// Opens the link `device` is registered with; its events go to `events`.
    pub fn open(
        device: &Device,
        push_timeout: std::time::Duration,
        clock: Arc<dyn Clock>,
        events: UnboundedSender<LinkEvent>,
    ) -> Result<Self, LinkError> {
        Ok(match &device.link {
            Link::Push { url } => {
                Self::Push(PushLink::new(device, url, push_timeout, clock, events)?)
            }
            Link::Pull => Self::Pull(PullLink::default()),
            Link::Serial { path } => Self::Serial(SerialLink::open(device, path, events)),
        })
    }

    /// Sends `command` in the background; what the device made of it comes back as events
    /// (pull: when the device fetches it).
    pub fn send(&self, command: MoveCommand) {
        match self {
            Self::Push(link) => link.send(command),
            Self::Pull(link) => link.queue(command),
            Self::Serial(link) => link.send(command),
        }
    }

    /// Forgets a command not yet delivered (a fault or a timeout ended it).
    pub fn withdraw(&self) {
        if let Self::Pull(link) = self {
            link.withdraw();
        }
    }

    /// The long-poll side, for a device that fetches its commands.
    pub fn pull(&self) -> Option<&PullLink> {
        match self {
            Self::Pull(link) => Some(link),
            Self::Push(_) | Self::Serial(_) => None,
        }
    }
}
