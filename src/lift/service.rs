//! The lift service: the state machine behind a lock, the link to the device, a ticker for
//! timeouts, the audit trail, and a watch channel the panel listens to.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use super::machine::Transition;
use super::protocol::{
    self, MoveCommand, NONCE_HEADER, Presented, ProtocolError, SIGNATURE_HEADER, SerialLine,
    Signed, StatusReport, TIMESTAMP_HEADER, Verifier,
};
use super::serial::LinePump;
use super::{Accepted, Device, Floors, LiftError, LiftMachine, LiftStatus, Link, Timeouts};
use crate::clock::Clock;
use crate::config::LiftSettings;
use crate::store::{AuditEntry, Store};

const TICK: Duration = Duration::from_millis(100);
/// The longest a device may long-poll for a command.
pub const MAX_POLL: Duration = Duration::from_secs(30);

/// The lift as the web layer drives it. Cloning shares it.
#[derive(Clone)]
pub struct LiftService {
    inner: Arc<Inner>,
}

struct Inner {
    machine: Mutex<LiftMachine>,
    changes: watch::Sender<LiftStatus>,
    device: Option<Device>,
    verifier: Verifier,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    push: reqwest::Client,
    /// Pull: the command waiting for the device's next poll.
    pending: Mutex<Option<MoveCommand>>,
    command_queued: Notify,
    serial: Mutex<Option<LinePump>>,
}

impl LiftService {
    /// Starts the lift driven by `device` (none: the lift stays offline). Spawns its ticker
    /// and link tasks, so it must be called inside a tokio runtime.
    pub fn start(
        settings: &LiftSettings,
        device: Option<Device>,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let floors = Floors {
            lowest: settings.lowest_floor,
            highest: settings.highest_floor.max(settings.lowest_floor),
            names: settings.floor_names.clone(),
        };
        let timeouts = Timeouts {
            move_timeout: Duration::from_millis(settings.move_timeout_ms),
            offline_after: Duration::from_millis(settings.offline_after_ms),
        };
        let machine = LiftMachine::new(floors, timeouts);
        let (changes, _) = watch::channel(LiftStatus::of(&machine));
        let push = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.push_timeout_ms))
            .build()
            .unwrap_or_default();
        let inner = Arc::new(Inner {
            machine: Mutex::new(machine),
            changes,
            device,
            verifier: Verifier::new(settings.signature_window_secs),
            store,
            clock,
            push,
            pending: Mutex::new(None),
            command_queued: Notify::new(),
            serial: Mutex::new(None),
        });
        let service = Self { inner };
        service.spawn_ticker();
        if let Some(Device {
            link: Link::Serial { path },
            ..
        }) = &service.inner.device
        {
            service.open_serial(path);
        }
        service
    }

    pub fn status(&self) -> LiftStatus {
        self.inner.changes.borrow().clone()
    }

    /// Every change from now on (the current status first).
    pub fn subscribe(&self) -> watch::Receiver<LiftStatus> {
        self.inner.changes.subscribe()
    }

    /// The device driving this lift, if any.
    pub fn device(&self) -> Option<&Device> {
        self.inner.device.as_ref()
    }

    /// A person asks for `floor`. A repeated `request_id` is answered again without a second
    /// move. The command goes out in the background; the panel follows the device's reports.
    pub fn request_move(
        &self,
        floor: i32,
        request_id: Option<String>,
        who: &str,
    ) -> Result<Accepted, LiftError> {
        let request_id = match request_id {
            Some(id) if protocol::valid_request_id(&id) => id,
            Some(_) => return Err(LiftError::BadRequestId),
            None => protocol::new_request_id(),
        };
        let result = self
            .inner
            .lock()
            .request_move(floor, &request_id, Instant::now());
        let outcome = match &result {
            Ok(accepted) if accepted.duplicate => "duplicate: not sent again".to_string(),
            Ok(_) => "accepted".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        self.inner.audit(
            "lift",
            who,
            Some(who),
            outcome,
            format!("move to floor {floor}, request {request_id}"),
        );
        let accepted = result?;
        if !accepted.duplicate {
            self.inner.publish();
            self.send(MoveCommand {
                request_id: accepted.request_id.clone(),
                floor,
            });
        }
        Ok(accepted)
    }

    fn send(&self, command: MoveCommand) {
        let Some(device) = &self.inner.device else {
            return;
        };
        match &device.link {
            Link::Push { url } => {
                tokio::spawn(push(Arc::clone(&self.inner), url.clone(), command));
            }
            Link::Pull => {
                *lock(&self.inner.pending) = Some(command);
                self.inner.command_queued.notify_waiters();
            }
            Link::Serial { .. } => {
                let line = SerialLine::Move(command.clone()).to_string();
                let sent = lock(&self.inner.serial)
                    .as_ref()
                    .is_some_and(|pump| pump.send(line));
                if !sent {
                    self.inner
                        .command_failed(&command.request_id, "the serial link is down");
                }
            }
        }
    }

    /// An administrator clears a fault; answers whether there was one.
    pub fn reset_fault(&self, who: &str) -> bool {
        if self.inner.lock().reset_fault().is_none() {
            return false;
        }
        self.inner.audit(
            "lift",
            who,
            Some(who),
            "fault cleared".into(),
            String::new(),
        );
        self.inner.publish();
        true
    }

    /// Checks a message from a device: known device, signature, time window, not a replay.
    pub fn verify_device_request(
        &self,
        device_name: Option<&str>,
        method: &str,
        path: &str,
        presented: &Presented<'_>,
        body: &[u8],
    ) -> Result<&Device, LiftError> {
        let device = self
            .inner
            .device
            .as_ref()
            .filter(|d| Some(d.name.as_str()) == device_name)
            .ok_or(ProtocolError::UnknownDevice)?;
        let message = protocol::Message { method, path, body };
        self.inner.verifier.verify_request(
            &device.name,
            &device.secret,
            &message,
            presented,
            self.inner.clock.now(),
        )?;
        Ok(device)
    }

    /// A verified status report.
    pub fn device_report(&self, report: &StatusReport) {
        self.inner.report(report);
    }

    /// Pull: waits up to `wait` for the next command. Polling also counts as a sign of life.
    pub async fn next_command(&self, wait: Duration) -> Option<MoveCommand> {
        self.inner.lock().heard_from(Instant::now());
        let deadline = tokio::time::Instant::now() + wait.min(MAX_POLL);
        loop {
            let queued = self.inner.command_queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            if let Some(command) = lock(&self.inner.pending).take() {
                self.inner.audit(
                    "device",
                    self.device_name(),
                    None,
                    "command fetched".into(),
                    format!(
                        "move to floor {}, request {}",
                        command.floor, command.request_id
                    ),
                );
                return Some(command);
            }
            if tokio::time::timeout_at(deadline, queued).await.is_err() {
                self.inner.lock().heard_from(Instant::now());
                return None;
            }
        }
    }

    /// Signs our answer to a device's request.
    pub fn sign_response(
        &self,
        status: u16,
        path: &str,
        request_nonce: &str,
        body: &[u8],
    ) -> Option<Signed> {
        let device = self.inner.device.as_ref()?;
        Some(protocol::sign_response(
            &device.secret,
            status,
            path,
            request_nonce,
            body,
            self.inner.clock.now(),
        ))
    }

    fn device_name(&self) -> &str {
        self.inner.device.as_ref().map_or("-", |d| d.name.as_str())
    }

    fn spawn_ticker(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(TICK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let transition = inner.lock().tick(Instant::now());
                if let Some(transition) = transition {
                    if !matches!(&transition, Transition::Arrived { .. }) {
                        lock(&inner.pending).take();
                    }
                    inner.record(&transition);
                    inner.publish();
                }
            }
        });
    }

    fn open_serial(&self, path: &std::path::Path) {
        let (lines, mut reports) = tokio::sync::mpsc::unbounded_channel::<String>();
        match LinePump::spawn_reopening(path, move |line| {
            let _ = lines.send(line);
        }) {
            Ok(pump) => *lock(&self.inner.serial) = Some(pump),
            Err(e) => tracing::error!(error = %e, "cannot start the serial link"),
        }
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            while let Some(line) = reports.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                let Some(device) = &inner.device else { break };
                match SerialLine::parse(&line) {
                    Ok(SerialLine::Status { floor, state, seq }) => inner.report(&StatusReport {
                        device_id: device.name.clone(),
                        floor,
                        state,
                        seq,
                    }),
                    Ok(SerialLine::Move(_)) | Err(_) => {
                        tracing::warn!(line = %line.chars().take(40).collect::<String>(), "unexpected serial line");
                    }
                }
            }
        });
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, LiftMachine> {
        lock(&self.machine)
    }

    fn publish(&self) {
        let status = LiftStatus::of(&self.lock());
        self.changes.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn report(&self, report: &StatusReport) {
        let transition = self.lock().on_report(report, Instant::now());
        self.audit(
            "device",
            &report.device_id,
            None,
            "report".into(),
            format!(
                "floor {} {} seq {}",
                report.floor,
                report.state.as_str(),
                report.seq
            ),
        );
        if let Some(transition) = transition {
            self.record(&transition);
        }
        self.publish();
    }

    fn command_failed(&self, request_id: &str, reason: &str) {
        let transition = self.lock().command_failed(request_id, reason);
        if let Some(transition) = transition {
            self.record(&transition);
            self.publish();
        }
    }

    fn command_refused(&self, request_id: &str, reason: &str) {
        self.lock().command_refused(request_id);
        self.audit(
            "lift",
            self.device.as_ref().map_or("-", |d| d.name.as_str()),
            None,
            format!("device refused: {reason}"),
            format!("request {request_id}"),
        );
        self.publish();
    }

    fn record(&self, transition: &Transition) {
        let device = self.device.as_ref().map_or("-", |d| d.name.as_str());
        let (outcome, detail) = match transition {
            Transition::Arrived { floor, request_id } => (
                "arrived".to_string(),
                format!("floor {floor}, request {request_id}"),
            ),
            Transition::Faulted { reason } => ("fault".to_string(), reason.clone()),
            Transition::WentOffline => ("offline".to_string(), "no report in time".to_string()),
            Transition::CameOnline => ("online".to_string(), String::new()),
            Transition::Recovered { floor } => {
                ("recovered".to_string(), format!("idle at floor {floor}"))
            }
            Transition::Reset => return,
        };
        if let Transition::Faulted { reason } = transition {
            tracing::warn!(%reason, "lift fault");
        }
        self.audit("lift", device, None, outcome, detail);
    }

    /// Written in the background: a slow disk must not hold the lift's lock or the request.
    fn audit(
        &self,
        kind: &str,
        client: &str,
        person: Option<&str>,
        outcome: String,
        detail: String,
    ) {
        let entry = AuditEntry {
            at: self.clock.now(),
            kind: kind.to_string(),
            client: client.to_string(),
            person: person.map(str::to_string),
            similarity: None,
            outcome,
            detail: (!detail.is_empty()).then_some(detail),
        };
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = store.audit(&entry) {
                tracing::error!(error = %e, "could not write the audit log");
            }
        });
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a push attempt came to.
enum PushOutcome {
    Accepted,
    Refused(String),
    /// Worth one more try with the same request id.
    Unreachable(String),
    /// Not worth retrying: the device does not trust us or we do not trust its answer.
    Rejected(String),
}

/// Push: POSTs the command to the device; on a timeout or a broken connection, tries once more
/// with the same request id, which the device treats as the same command.
async fn push(inner: Arc<Inner>, base_url: String, command: MoveCommand) {
    let mut outcome = PushOutcome::Unreachable(String::new());
    for attempt in 1..=2 {
        outcome = push_once(&inner, &base_url, &command).await;
        match &outcome {
            PushOutcome::Unreachable(why) if attempt == 1 => {
                tracing::warn!(%why, request_id = %command.request_id, "device did not answer; retrying");
            }
            _ => break,
        }
    }
    match outcome {
        PushOutcome::Accepted => {}
        PushOutcome::Refused(reason) => inner.command_refused(&command.request_id, &reason),
        PushOutcome::Unreachable(why) => inner.command_failed(
            &command.request_id,
            &format!("the lift controller did not answer ({why})"),
        ),
        PushOutcome::Rejected(why) => inner.command_failed(&command.request_id, &why),
    }
}

async fn push_once(inner: &Inner, base_url: &str, command: &MoveCommand) -> PushOutcome {
    let Some(device) = &inner.device else {
        return PushOutcome::Rejected("no device".into());
    };
    let path = "/lift/move";
    let body = serde_json::to_vec(command).unwrap_or_default();
    let signed = protocol::sign_request(&device.secret, "POST", path, &body, inner.clock.now());
    let url = format!("{}{path}", base_url.trim_end_matches('/'));
    let response = inner
        .push
        .post(url)
        .header(protocol::DEVICE_HEADER, &device.name)
        .header(TIMESTAMP_HEADER, signed.timestamp.to_string())
        .header(NONCE_HEADER, &signed.nonce)
        .header(SIGNATURE_HEADER, &signed.signature)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(e) if e.is_timeout() => return PushOutcome::Unreachable("timed out".into()),
        Err(e) if e.is_connect() => return PushOutcome::Unreachable("cannot connect".into()),
        Err(_) => return PushOutcome::Unreachable("the connection failed".into()),
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let Ok(answer): Result<axum::body::Bytes, _> = response.bytes().await else {
        return PushOutcome::Unreachable("the answer was cut off".into());
    };
    let presented = Presented::from_headers(&headers);
    let signed_answer = protocol::Answer {
        status,
        path,
        body: &answer,
    };
    if let Err(e) = inner.verifier.verify_response(
        &device.secret,
        &signed_answer,
        &signed.nonce,
        &presented,
        inner.clock.now(),
    ) {
        return if status == 401 {
            PushOutcome::Rejected(
                "the lift controller refused our signature: check its secret".into(),
            )
        } else {
            PushOutcome::Rejected(format!(
                "the lift controller's answer failed its check ({e})"
            ))
        };
    }
    inner.audit(
        "device",
        &device.name,
        None,
        format!("answered {status}"),
        format!(
            "move to floor {}, request {}",
            command.floor, command.request_id
        ),
    );
    match status {
        202 => PushOutcome::Accepted,
        409 => PushOutcome::Refused("busy".into()),
        422 => PushOutcome::Refused("no such floor".into()),
        other => PushOutcome::Unreachable(format!("status {other}")),
    }
}
