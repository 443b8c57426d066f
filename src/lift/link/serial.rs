//! Serial: `MOVE` lines out, `STATUS` lines in, over a USB serial port reopened after a
//! failure (a board unplugged and plugged back in).

use std::path::Path;

use tokio::sync::mpsc::UnboundedSender;

use super::LinkEvent;
use crate::lift::Device;
use crate::lift::protocol::{MoveCommand, SerialLine, StatusReport};
use crate::lift::serial::LinePump;

pub struct SerialLink {
    /// None when the pump thread could not start (logged); every send then fails.
    pump: Option<LinePump>,
    events: UnboundedSender<LinkEvent>,
}

impl SerialLink {
    pub fn open(device: &Device, path: &Path, events: UnboundedSender<LinkEvent>) -> Self {
        let (name, reports) = (device.name.clone(), events.clone());
        let pump = LinePump::spawn_reopening(path, move |line| match SerialLine::parse(&line) {
            Ok(SerialLine::Status { floor, state, seq }) => {
                let report = StatusReport {
                    device_id: name.clone(),
                    floor,
                    state,
                    seq,
                };
                let _ = reports.send(LinkEvent::Report(report));
            }
            Ok(SerialLine::Move(_)) | Err(_) => {
                tracing::warn!(line = %line.chars().take(40).collect::<String>(), "unexpected serial line");
            }
        });
        let pump = pump
            .inspect_err(|error| tracing::error!(%error, "cannot start the serial link"))
            .ok();
        Self { pump, events }
    }

    pub fn send(&self, command: MoveCommand) {
        let line = SerialLine::Move(command.clone()).to_string();
        let sent = self.pump.as_ref().is_some_and(|pump| pump.send(line));
        if !sent {
            let _ = self.events.send(LinkEvent::Failed {
                request_id: command.request_id,
                reason: "the serial link is down".into(),
            });
        }
    }
}
