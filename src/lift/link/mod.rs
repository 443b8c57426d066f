//! The links that carry commands to a device, one per transport, behind one interface: the
//! service hands a command to `DeviceLink::send` and hears what became of it as `LinkEvent`s
//! on a channel. A link knows the protocol and its transport, nothing of the lift's state.

mod pull;
mod push;
mod serial;

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

pub use pull::{MAX_POLL, Polls, PullLink};
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

/// The link to the lift's device. A pull device fetches its command from the car's row in
/// the store, through whichever instance it reaches, so its link holds nothing.
pub enum DeviceLink {
    Push(PushLink),
    Pull,
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
            Link::Pull => Self::Pull,
            Link::Serial { path } => Self::Serial(SerialLink::open(device, path, events)),
        })
    }

    /// Whether this link carries commands itself (push, serial): the instance that drives
    /// the car sends them. A pull device fetches its own.
    pub fn delivers(&self) -> bool {
        !matches!(self, Self::Pull)
    }

    /// Sends `command` in the background; what the device made of it comes back as events.
    pub fn send(&self, command: MoveCommand) {
        match self {
            Self::Push(link) => link.send(command),
            Self::Serial(link) => link.send(command),
            Self::Pull => {}
        }
    }
}
