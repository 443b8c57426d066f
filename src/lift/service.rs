//! The lift service: the state machine behind a lock, the link to the device, a ticker for
//! timeouts, the audit trail, and a watch channel the panel listens to. Time comes from the
//! `Clock`, so tests move it instead of waiting.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::building::Recall;
use super::heartbeats::Heartbeats;
use super::link::{DeviceLink, LinkEvent, MAX_POLL};
use super::machine::Transition;
use super::protocol::{
    self, MoveCommand, Presented, ProtocolError, Signed, StatusReport, Verifier,
};
use super::{Accepted, Device, Floors, LiftError, LiftMachine, LiftStatus, LinkError, Timeouts};
use crate::clock::Clock;
use crate::config::{CarSettings, LiftSettings};
use crate::store::{AuditEntry, AuditKind, AuditOutcome, REQUEST_MEMORY_SECS, Store};

const TICK: Duration = Duration::from_millis(100);

/// The lift as the web layer drives it. Cloning shares it.
#[derive(Clone)]
pub struct LiftService {
    inner: Arc<Inner>,
}

struct Inner {
    /// the car's name
    name: String,
    machine: Mutex<LiftMachine>,
    changes: watch::Sender<LiftStatus>,
    device: Option<Device>,
    link: Option<DeviceLink>,
    verifier: Verifier,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    heartbeats: Mutex<Heartbeats>,
    /// Status reports heard since start (heartbeats included, which the audit log only counts).
    reports: std::sync::atomic::AtomicU64,
    /// the building's fire-service recall, shared by every car
    recall: Arc<Recall>,
}

impl LiftService {
    /// Starts the car driven by `device` (none: the car stays offline): its link, its
    /// ticker, and the task that hears the link. Must be called inside a tokio runtime.
    pub fn start(
        car: &CarSettings,
        settings: &LiftSettings,
        device: Option<Device>,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
        recall: Arc<Recall>,
    ) -> Result<Self, LinkError> {
        let floors = Floors::of(settings);
        let timeouts = Timeouts {
            move_timeout: Duration::from_millis(settings.move_timeout_ms),
            offline_after: Duration::from_millis(settings.offline_after_ms),
        };
        let mut machine = LiftMachine::new(floors, timeouts).with_stops(car.floors.clone());
        let since = clock.now().saturating_sub(REQUEST_MEMORY_SECS);
        match store.lift_requests_since(since) {
            Ok(requests) => machine.remember_requests(requests),
            Err(error) => tracing::error!(%error, "could not read the recent lift requests"),
        }
        let (changes, _) = watch::channel(LiftStatus::of(&car.name, &machine, recall.floor()));
        let (events, heard) = mpsc::unbounded_channel();
        let link = device
            .as_ref()
            .map(|device| {
                let push_timeout = Duration::from_millis(settings.push_timeout_ms);
                DeviceLink::open(device, push_timeout, Arc::clone(&clock), events)
            })
            .transpose()?;
        let inner = Arc::new(Inner {
            name: car.name.clone(),
            machine: Mutex::new(machine),
            changes,
            device,
            link,
            verifier: Verifier::new(settings.signature_window_secs),
            store,
            clock,
            heartbeats: Mutex::default(),
            reports: std::sync::atomic::AtomicU64::new(0),
            recall,
        });
        spawn_ticker(Arc::downgrade(&inner));
        spawn_listener(Arc::downgrade(&inner), heard);
        Ok(Self { inner })
    }

    pub fn status(&self) -> LiftStatus {
        self.inner.changes.borrow().clone()
    }

    /// Verified status reports heard since start.
    pub fn reports_heard(&self) -> u64 {
        self.inner
            .reports
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every change from now on (the current status first).
    pub fn subscribe(&self) -> watch::Receiver<LiftStatus> {
        self.inner.changes.subscribe()
    }

    /// How long ago the device was last heard from; None before the first time.
    pub fn device_silent_for(&self) -> Option<Duration> {
        let last = self.inner.lock().last_heard()?;
        Some(self.inner.clock.monotonic().saturating_duration_since(last))
    }

    /// The device driving this lift, if any.
    pub fn device(&self) -> Option<&Device> {
        self.inner.device.as_ref()
    }

    /// The car's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Whether this car stops at `floor`.
    pub fn serves(&self, floor: i32) -> bool {
        self.inner.lock().serves(floor)
    }

    /// Whether a move under `request_id` was accepted lately.
    pub fn knows_request(&self, request_id: &str) -> bool {
        self.inner.lock().knows_request(request_id)
    }

    /// A person asks for `floor`. A repeated `request_id` is answered again without a second
    /// move. The command goes out in the background; the panel follows the device's reports.
    /// During a fire-service recall, no call is taken.
    pub fn request_move(
        &self,
        floor: i32,
        request_id: Option<String>,
        who: &str,
    ) -> Result<Accepted, LiftError> {
        self.inner.start_move(floor, request_id, who, false)
    }

    /// The recall has started or ended: a car that can go is sent to the recall floor.
    pub(super) fn recall_changed(&self) {
        self.inner.publish();
        self.inner.follow_recall();
    }

    /// An administrator clears a fault; answers whether there was one.
    pub fn reset_fault(&self, who: &str) -> bool {
        if self.inner.lock().reset_fault().is_none() {
            return false;
        }
        self.inner.audit(
            AuditKind::Lift,
            who,
            Some(who),
            AuditOutcome::FaultCleared,
            format!("lift {}", self.inner.name),
        );
        self.inner.publish();
        self.inner.follow_recall();
        true
    }

    /// Checks a message from a device: known device, signature, time window, not a replay,
    /// in this run (memory) or before a restart (the store).
    pub async fn verify_device_request(
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
        let now = self.inner.clock.now();
        super::check_device_message(
            &self.inner.verifier,
            &self.inner.store,
            device,
            &message,
            presented,
            now,
        )
        .await?;
        Ok(device)
    }

    /// A verified status report.
    pub fn device_report(&self, report: &StatusReport) {
        self.inner.report(report);
    }

    /// Pull: waits up to `wait` (at most `MAX_POLL`) for the next command. Polling also counts
    /// as a sign of life. A device registered for another link gets no command, after the
    /// same wait, so that a misconfigured one does not poll in a tight loop.
    pub async fn next_command(&self, wait: Duration) -> Option<MoveCommand> {
        self.inner.heard_from();
        let Some(pull) = self.inner.link.as_ref().and_then(DeviceLink::pull) else {
            tokio::time::sleep(wait.min(MAX_POLL)).await;
            return None;
        };
        let command = pull.next_command(wait).await;
        match &command {
            Some(command) => self.inner.audit(
                AuditKind::Device,
                self.inner.device_name(),
                None,
                AuditOutcome::CommandFetched,
                format!(
                    "move to floor {}, request {}",
                    command.floor, command.request_id
                ),
            ),
            None => self.inner.heard_from(),
        }
        command
    }

    /// Signs our answer to `device`'s request.
    pub fn sign_response(
        &self,
        device: &Device,
        status: u16,
        path: &str,
        request_nonce: &str,
        body: &[u8],
    ) -> Signed {
        protocol::sign_response(
            &device.secret,
            status,
            path,
            request_nonce,
            body,
            self.inner.clock.now(),
        )
    }
}

/// Ends the moves and presence that timed out, every `TICK`, while the service lives.
fn spawn_ticker(weak: Weak<Inner>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            every.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            let now = inner.clock.monotonic();
            let transition = inner.lock().tick(now);
            if let Some(transition) = transition {
                if !matches!(&transition, Transition::Arrived { .. })
                    && let Some(link) = &inner.link
                {
                    link.withdraw();
                }
                inner.record(&transition);
                inner.publish();
            }
        }
    });
}

/// Applies what the link hears, while the service lives.
fn spawn_listener(weak: Weak<Inner>, mut heard: mpsc::UnboundedReceiver<LinkEvent>) {
    tokio::spawn(async move {
        while let Some(event) = heard.recv().await {
            let Some(inner) = weak.upgrade() else { break };
            inner.on_link_event(event);
        }
    });
}

impl Inner {
    /// Accepts a move and sends it to the device; only the recall itself moves a car while
    /// the recall is on.
    fn start_move(
        &self,
        floor: i32,
        request_id: Option<String>,
        who: &str,
        for_recall: bool,
    ) -> Result<Accepted, LiftError> {
        let request_id = match request_id {
            Some(id) if protocol::valid_request_id(&id) => id,
            Some(_) => return Err(LiftError::BadRequestId),
            None => protocol::new_request_id(),
        };
        let now = self.clock.monotonic();
        let result = match self.recall.floor() {
            Some(recall_floor) if !for_recall => Err(LiftError::Recall(recall_floor)),
            _ => self.lock().request_move(floor, &request_id, now),
        };
        let (outcome, why) = match &result {
            Ok(accepted) if accepted.duplicate => (AuditOutcome::Duplicate, String::new()),
            Ok(_) => (AuditOutcome::Accepted, String::new()),
            Err(e) => (AuditOutcome::Refused, format!(": {e}")),
        };
        self.audit(
            AuditKind::Lift,
            who,
            Some(who),
            outcome,
            format!(
                "lift {}: move to floor {floor}, request {request_id}{why}",
                self.name
            ),
        );
        let accepted = result?;
        if !accepted.duplicate {
            self.remember_request(&accepted);
            self.publish();
            if let Some(link) = &self.link {
                link.send(MoveCommand {
                    request_id: accepted.request_id.clone(),
                    floor,
                });
            }
        }
        Ok(accepted)
    }

    /// During a recall, an idle car away from the recall floor is sent there (a moving one
    /// when it arrives, one offline or in fault when it is back).
    fn follow_recall(&self) {
        let Some(recall_floor) = self.recall.floor() else {
            return;
        };
        let idle_elsewhere = matches!(
            self.lock().state(),
            super::LiftState::Idle { floor } if *floor != recall_floor
        );
        if idle_elsewhere && let Err(error) = self.start_move(recall_floor, None, "recall", true) {
            tracing::warn!(lift = %self.name, %error, "could not send the car to the recall floor");
        }
    }

    /// Keeps an accepted move's request id in the store, for a restart.
    fn remember_request(&self, accepted: &Accepted) {
        let store = Arc::clone(&self.store);
        let (id, floor, now) = (
            accepted.request_id.clone(),
            accepted.floor,
            self.clock.now(),
        );
        tokio::task::spawn_blocking(move || {
            if let Err(error) = store.remember_lift_request(&id, floor, now) {
                tracing::error!(%error, "could not record a lift request id");
            }
        });
    }

    /// The machine's state stays whole after a panic elsewhere: every change to it is made
    /// under this lock by methods that do not panic midway.
    fn lock(&self) -> MutexGuard<'_, LiftMachine> {
        self.machine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn device_name(&self) -> &str {
        self.device.as_ref().map_or("-", |d| d.name.as_str())
    }

    fn publish(&self) {
        let status = LiftStatus::of(&self.name, &self.lock(), self.recall.floor());
        self.changes.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    fn heard_from(&self) {
        let now = self.clock.monotonic();
        self.lock().heard_from(now);
    }

    fn on_link_event(&self, event: LinkEvent) {
        match event {
            LinkEvent::Report(report) => self.report(&report),
            LinkEvent::Answered { command, status } => self.audit(
                AuditKind::Device,
                self.device_name(),
                None,
                AuditOutcome::Answered,
                format!(
                    "status {status}, move to floor {}, request {}",
                    command.floor, command.request_id
                ),
            ),
            LinkEvent::Refused { request_id, reason } => {
                self.lock().command_refused(&request_id);
                self.audit(
                    AuditKind::Lift,
                    self.device_name(),
                    None,
                    AuditOutcome::DeviceRefused,
                    format!("request {request_id}: {reason}"),
                );
                self.publish();
            }
            LinkEvent::Failed { request_id, reason } => {
                let transition = self.lock().command_failed(&request_id, &reason);
                if let Some(transition) = transition {
                    self.record(&transition);
                    self.publish();
                }
            }
        }
    }

    fn report(&self, report: &StatusReport) {
        let now = self.clock.monotonic();
        let transition = self.lock().on_report(report, now);
        self.reports
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("facelift_device_reports_total", "lift" => self.name.clone())
            .increment(1);
        let rows = self
            .heartbeats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .note(report, self.clock.now());
        for detail in rows {
            self.audit(
                AuditKind::Device,
                &report.device_id,
                None,
                AuditOutcome::Report,
                detail,
            );
        }
        if let Some(transition) = transition {
            self.record(&transition);
        }
        self.publish();
    }

    fn record(&self, transition: &Transition) {
        let (outcome, detail) = match transition {
            Transition::Arrived { floor, request_id } => (
                AuditOutcome::Arrived,
                format!("floor {floor}, request {request_id}"),
            ),
            Transition::Faulted { reason } => {
                tracing::warn!(lift = %self.name, %reason, "lift fault");
                (AuditOutcome::Fault, reason.clone())
            }
            Transition::WentOffline => (AuditOutcome::Offline, "no report in time".to_string()),
            Transition::CameOnline => (AuditOutcome::Online, String::new()),
            Transition::Recovered { floor } => {
                (AuditOutcome::Recovered, format!("idle at floor {floor}"))
            }
            Transition::Reset => {
                self.follow_recall();
                return;
            }
        };
        let detail = match detail.is_empty() {
            true => format!("lift {}", self.name),
            false => format!("lift {}: {detail}", self.name),
        };
        self.audit(AuditKind::Lift, self.device_name(), None, outcome, detail);
        if !matches!(
            transition,
            Transition::Faulted { .. } | Transition::WentOffline
        ) {
            self.follow_recall();
        }
    }

    /// Written in the background: a slow disk must not hold the lift's lock or the request.
    fn audit(
        &self,
        kind: AuditKind,
        client: &str,
        person: Option<&str>,
        outcome: AuditOutcome,
        detail: String,
    ) {
        if kind == AuditKind::Lift {
            metrics::counter!("facelift_lift_events_total", "lift" => self.name.clone(), "outcome" => outcome.as_str())
                .increment(1);
        }
        let entry = AuditEntry {
            at: self.clock.now(),
            kind,
            client: client.to_string(),
            person: person.map(str::to_string),
            similarity: None,
            outcome,
            detail: (!detail.is_empty()).then_some(detail),
        };
        write_audit(&self.store, entry);
    }
}

/// Writes an audit line in the background; a failure is logged.
pub(super) fn write_audit(store: &Arc<Store>, entry: AuditEntry) {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.audit(&entry) {
            tracing::error!(error = %e, "could not write the audit log");
        }
    });
}
