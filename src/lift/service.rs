//! The lift service: the state machine behind a lock, the link to the device, a ticker for
//! timeouts, the audit trail, and a watch channel the panel listens to. Time comes from the
//! `Clock`, so tests move it instead of waiting.
//!
//! Several instances may serve one car through one database. The car's state lives in its
//! row in the store (`lift_cars`): every change (a move, a report, a poll) is made in a
//! transaction on the row as it is there, from whichever instance the request reached, and
//! announced; the other instances read the row again and tell their panels. One instance
//! at a time drives the car (a lease it renews): it runs the timeouts and sends the commands
//! of a push or serial link. A pull device takes its command from the row through any
//! instance. When the driving instance dies, another takes the lease when it runs out.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};

use super::building::Recall;
use super::heartbeats::Heartbeats;
use super::link::{DeviceLink, LinkEvent, MAX_POLL, Polls};
use super::machine::{Moment, Snapshot, Transition};
use super::protocol::{
    self, MoveCommand, Presented, ProtocolError, Signed, StatusReport, Verifier,
};
use super::{Accepted, Device, Floors, LiftError, LiftMachine, LiftStatus, LinkError, Timeouts};
use crate::clock::Clock;
use crate::config::{CarSettings, LiftSettings};
use crate::store::{
    AuditEntry, AuditKind, AuditOutcome, Dialect, Notice, REQUEST_MEMORY_SECS, Store, StoreError,
};

const TICK: Duration = Duration::from_millis(100);
/// How long a claim to drive a car holds without being renewed: another instance takes the
/// car over at most this long (and one `RENEW`) after its driver died.
pub const LEASE: Duration = Duration::from_secs(5);
/// How often the driving instance renews its lease, and the others try for it.
const RENEW: Duration = Duration::from_secs(1);

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
    /// this process, as the car's lease names it
    instance: Arc<str>,
    /// whether this instance drives the car (holds the lease)
    drives: AtomicBool,
    /// the version of the car's row the machine was last read from or written as
    seen: AtomicI64,
    /// the device's long polls, rung when the car's row changed
    polls: Polls,
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
        instance: Arc<str>,
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
        let notices = store.subscribe();
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
            instance,
            drives: AtomicBool::new(false),
            seen: AtomicI64::new(-1),
            polls: Polls::default(),
        });
        // the state another instance (or this one before a restart) left
        inner.reload();
        inner.claim();
        spawn_ticker(Arc::downgrade(&inner));
        spawn_listener(Arc::downgrade(&inner), heard);
        spawn_lease(Arc::downgrade(&inner));
        spawn_follower(Arc::downgrade(&inner), notices);
        Ok(Self { inner })
    }

    /// Whether this instance drives the car now.
    pub fn drives(&self) -> bool {
        self.inner.drives.load(Ordering::SeqCst)
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
    /// Only the instance driving the car sends it; the others tell their panels.
    pub(super) fn recall_changed(&self) {
        self.inner.publish();
        if self.drives() {
            self.inner.follow_recall();
        }
    }

    /// An administrator clears a fault; answers whether there was one.
    pub fn reset_fault(&self, who: &str) -> bool {
        match self.inner.change(|machine, _| machine.reset_fault()) {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(error) => {
                tracing::error!(lift = %self.inner.name, %error, "could not clear the fault");
                return false;
            }
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
    ///
    /// One poll is outstanding, across the instances: a newer one (the device reconnecting,
    /// perhaps through another instance) ends the older without a command, so a stale or
    /// replayed poll cannot take the command. The command is taken from the car's row, so
    /// only one poll anywhere gets it.
    pub async fn next_command(&self, wait: Duration) -> Option<MoveCommand> {
        let inner = &self.inner;
        if !matches!(inner.link, Some(DeviceLink::Pull)) {
            inner.heard_from();
            tokio::time::sleep(wait.min(MAX_POLL)).await;
            return None;
        }
        // the newest poll is named in the car's row: an older one held open on another
        // instance (the device's connection to it lost) looks, finds it is not, and ends
        let poll = format!("{:016x}", rand::random::<u64>());
        let now = inner.clock.monotonic();
        if let Err(error) = inner.change(|machine, waiting| {
            machine.heard_from(now);
            waiting.poll = Some(poll.clone());
        }) {
            tracing::error!(lift = %inner.name, %error, "could not note the device's poll");
        }
        let command = inner
            .polls
            .wait_for(wait, || {
                inner
                    .change(|_, waiting| {
                        if waiting.poll.as_deref() != Some(poll.as_str()) {
                            return ControlFlow::Break(None);
                        }
                        match waiting.command.take() {
                            Some(command) => ControlFlow::Break(Some(command)),
                            None => ControlFlow::Continue(()),
                        }
                    })
                    .unwrap_or_else(|error| {
                        tracing::error!(lift = %inner.name, %error, "could not read the command");
                        ControlFlow::Continue(())
                    })
            })
            .await;
        match &command {
            Some(command) => inner.audit(
                AuditKind::Device,
                inner.device_name(),
                None,
                AuditOutcome::CommandFetched,
                format!(
                    "move to floor {}, request {}",
                    command.floor, command.request_id
                ),
            ),
            None => inner.heard_from(),
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
            if !inner.drives.load(Ordering::SeqCst) {
                continue;
            }
            let now = inner.clock.monotonic();
            // looked at on a copy first: most ticks change nothing and need no transaction
            if inner.lock().clone().tick(now).is_none() {
                continue;
            }
            let transition = inner.change(|machine, waiting| {
                let transition = machine.tick(now);
                if transition
                    .as_ref()
                    .is_some_and(|t| !matches!(t, Transition::Arrived { .. }))
                {
                    // the move ended: its command is not for the device any more
                    waiting.command.take();
                }
                transition
            });
            match transition {
                Ok(Some(transition)) => inner.record(&transition),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(lift = %inner.name, %error, "could not time the lift")
                }
            }
        }
    });
}

/// Renews the lease while this instance drives the car, and takes the car when its driver
/// fell silent, every `RENEW`, while the service lives.
fn spawn_lease(weak: Weak<Inner>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(RENEW);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(inner) = weak.upgrade() else { break };
            // the database may be slow or away: not on the runtime's threads
            let _ = tokio::task::spawn_blocking(move || inner.claim()).await;
        }
    });
}

/// Reads the car's row again when another instance announces a change to it (or notices
/// were missed), while the service lives.
fn spawn_follower(weak: Weak<Inner>, mut notices: broadcast::Receiver<Notice>) {
    tokio::spawn(async move {
        loop {
            let Some(notice) = Notice::next(&mut notices).await else {
                break;
            };
            let Some(inner) = weak.upgrade() else { break };
            let reread = match notice {
                Notice::Changed(what) => what == inner.topic(),
                Notice::Missed => true,
            };
            if reread {
                let reading = Arc::clone(&inner);
                let _ = tokio::task::spawn_blocking(move || reading.reload()).await;
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
        let result = match self.recall.floor() {
            Some(recall_floor) if !for_recall => Err(LiftError::Recall(recall_floor)),
            _ => self
                .change(|machine, waiting| {
                    let accepted = machine.request_move(floor, &request_id, self.clock.monotonic());
                    if let Ok(accepted) = &accepted
                        && !accepted.duplicate
                    {
                        waiting.command = Some(MoveCommand {
                            request_id: accepted.request_id.clone(),
                            floor,
                        });
                    }
                    accepted
                })
                .unwrap_or_else(|error| Err(LiftError::Unavailable(error.to_string()))),
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
        if let Err(error) = self.change(|machine, _| machine.heard_from(now)) {
            tracing::error!(lift = %self.name, %error, "could not note the device's poll");
        }
    }

    /// What this car's changes are announced as.
    fn topic(&self) -> String {
        format!("lift {}", self.name)
    }

    fn moment(&self) -> Moment {
        Moment {
            monotonic: self.clock.monotonic(),
            unix_ms: self.clock.now_millis(),
        }
    }

    /// Changes the car in one transaction on its row: the machine is first brought to the
    /// row's state when another instance changed it since, then `op` runs on it and on the
    /// command waiting for the device; a change is written, announced and published. When
    /// this instance drives a push or serial link, a waiting command is taken and sent.
    fn change<T>(
        &self,
        op: impl FnOnce(&mut LiftMachine, &mut Waiting) -> T,
    ) -> Result<T, StoreError> {
        let delivers = self.drives.load(Ordering::SeqCst)
            && self.link.as_ref().is_some_and(DeviceLink::delivers);
        let changed = self.store.change_lift(&self.name, |record| {
            let mut machine = self.lock();
            let at = self.moment();
            if record.version != self.seen.load(Ordering::SeqCst) {
                self.restore(&mut machine, record.state.as_deref(), at);
            }
            let mut waiting = Waiting {
                command: record.pending.as_deref().and_then(read_command),
                poll: record.poll.take(),
            };
            let before = machine.snapshot(at);
            let answer = op(&mut machine, &mut waiting);
            let after = machine.snapshot(at);
            if after != before || record.state.is_none() {
                record.state = serde_json::to_string(&after).ok();
            }
            let deliver = if delivers {
                waiting.command.take()
            } else {
                None
            };
            record.pending = waiting
                .command
                .and_then(|command| serde_json::to_string(&command).ok());
            record.poll = waiting.poll;
            (answer, deliver)
        });
        let ((answer, deliver), version) = match changed {
            Ok(changed) => changed,
            Err(error) => {
                // the machine may hold what was not written: read the row again next time
                self.seen.store(-1, Ordering::SeqCst);
                return Err(error);
            }
        };
        let before = self.seen.swap(version, Ordering::SeqCst);
        if let Some(command) = deliver
            && let Some(link) = &self.link
        {
            link.send(command);
        }
        if version != before {
            if let Err(error) = self.store.announce(&self.topic()) {
                tracing::warn!(lift = %self.name, %error, "could not announce a change");
            }
            self.polls.ring();
        }
        self.publish();
        Ok(answer)
    }

    /// Brings the machine to the row's state, if it is newer than what the machine holds.
    fn reload(&self) {
        let record = match self.store.lift_record(&self.name) {
            Ok(record) => record,
            Err(error) => {
                tracing::error!(lift = %self.name, %error, "could not read the lift's state");
                return;
            }
        };
        {
            let mut machine = self.lock();
            if record.version <= self.seen.load(Ordering::SeqCst) {
                return;
            }
            self.restore(&mut machine, record.state.as_deref(), self.moment());
            self.seen.store(record.version, Ordering::SeqCst);
        }
        self.publish();
        self.polls.ring();
        let delivers = self.drives.load(Ordering::SeqCst)
            && self.link.as_ref().is_some_and(DeviceLink::delivers);
        if delivers
            && record.pending.is_some()
            && let Err(error) = self.change(|_, _| ())
        {
            tracing::error!(lift = %self.name, %error, "could not send the waiting command");
        }
    }

    fn restore(&self, machine: &mut LiftMachine, state: Option<&str>, at: Moment) {
        let Some(state) = state else { return };
        match serde_json::from_str::<Snapshot>(state) {
            Ok(snapshot) => machine.restore(snapshot, at),
            Err(error) => {
                tracing::error!(lift = %self.name, %error, "the lift's stored state is unreadable");
            }
        }
    }

    /// Claims the car, or renews the claim; takes it over when its driver fell silent. With
    /// an embedded database there is one instance: a restart takes the car at once.
    fn claim(&self) {
        let force = self.store.dialect() == Dialect::Sqlite;
        let lease = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let claimed = self
            .store
            .claim_lift(&self.name, &self.instance, lease, force);
        let drives = match claimed {
            Ok(drives) => drives,
            Err(error) => {
                // unable to renew, this instance must not go on driving as if it could
                tracing::error!(lift = %self.name, %error, "could not renew the lift's lease");
                false
            }
        };
        let drove = self.drives.swap(drives, Ordering::SeqCst);
        if drives && !drove {
            tracing::info!(lift = %self.name, instance = %self.instance, "driving the lift");
            // go on from the row as it is; send a command that waited for a driver
            if let Err(error) = self.change(|_, _| ()) {
                tracing::error!(lift = %self.name, %error, "could not read the lift's state");
            }
        } else if drove && !drives {
            tracing::warn!(lift = %self.name, instance = %self.instance, "another instance drives the lift now");
        }
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
                if let Err(error) = self.change(|machine, _| machine.command_refused(&request_id)) {
                    tracing::error!(lift = %self.name, %error, "could not note a refused command");
                }
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
                match self.change(|machine, _| machine.command_failed(&request_id, &reason)) {
                    Ok(Some(transition)) => self.record(&transition),
                    Ok(None) => {}
                    Err(error) => {
                        tracing::error!(lift = %self.name, %error, "could not note a failed command");
                    }
                }
            }
        }
    }

    fn report(&self, report: &StatusReport) {
        let now = self.clock.monotonic();
        let transition = self
            .change(|machine, _| machine.on_report(report, now))
            .unwrap_or_else(|error| {
                tracing::error!(lift = %self.name, %error, "could not apply a report");
                None
            });
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

impl Drop for Inner {
    /// A clean stop gives the car up, so that another instance drives it at once.
    fn drop(&mut self) {
        if self.drives.load(Ordering::SeqCst)
            && let Err(error) = self.store.release_lift(&self.name, &self.instance)
        {
            tracing::warn!(lift = %self.name, %error, "could not give the lift up");
        }
    }
}

/// What waits in the car's row for its device: the command, and which long poll is the
/// device's newest, the only one that may take it.
#[derive(Debug, Default)]
struct Waiting {
    command: Option<MoveCommand>,
    poll: Option<String>,
}

fn read_command(json: &str) -> Option<MoveCommand> {
    serde_json::from_str(json)
        .inspect_err(|error| tracing::error!(%error, "a stored lift command is unreadable"))
        .ok()
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
