//! The lift as the server believes it to be, moved only by commands and device reports, with
//! time passed in so that every transition can be tested without waiting.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::LiftError;
use super::protocol::{DeviceState, StatusReport};

/// Request ids remembered so that a repeated request does not move the lift twice.
const REMEMBERED_REQUESTS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LiftState {
    Idle {
        floor: i32,
    },
    Moving {
        from: i32,
        to: i32,
        request_id: String,
        since: Instant,
        /// The device has reported moving since the command: an idle report away from the
        /// target now means it stopped short, not that it has yet to start.
        started: bool,
    },
    Fault {
        reason: String,
        floor: Option<i32>,
        /// Found by the server (a timeout, a wrong floor): it stays until an administrator
        /// clears it. A fault the device reports clears when the device reports idle again.
        latched: bool,
    },
    Offline,
}

/// The building's floors: `lowest..=highest`, each with an optional name ("G", "Car park").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floors {
    pub lowest: i32,
    pub highest: i32,
    pub names: Vec<String>,
}

impl Floors {
    /// The building's floors as configured.
    pub fn of(settings: &crate::config::LiftSettings) -> Self {
        Self {
            lowest: settings.lowest_floor,
            highest: settings.highest_floor.max(settings.lowest_floor),
            names: settings.floor_names.clone(),
        }
    }

    pub fn contains(&self, floor: i32) -> bool {
        (self.lowest..=self.highest).contains(&floor)
    }

    pub fn name(&self, floor: i32) -> String {
        usize::try_from(floor - self.lowest)
            .ok()
            .and_then(|index| self.names.get(index))
            .filter(|name| !name.is_empty())
            .cloned()
            .unwrap_or_else(|| floor.to_string())
    }

    fn out_of_range(&self, floor: i32) -> LiftError {
        LiftError::OutOfRange {
            floor,
            lowest: self.lowest,
            highest: self.highest,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// A move the device has not finished by then becomes a fault.
    pub move_timeout: Duration,
    /// A device not heard from for this long is offline.
    pub offline_after: Duration,
}

/// What an accepted move answers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Accepted {
    pub request_id: String,
    pub floor: i32,
    /// The same request was already accepted: nothing new was sent.
    pub duplicate: bool,
}

/// A change worth an audit entry, returned by every transition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    Arrived { floor: i32, request_id: String },
    Faulted { reason: String },
    WentOffline,
    CameOnline,
    Recovered { floor: i32 },
    Reset,
}

#[derive(Clone, Debug)]
pub struct LiftMachine {
    floors: Floors,
    timeouts: Timeouts,
    state: LiftState,
    /// The last floor a device reported, shown while moving.
    position: Option<i32>,
    last_heard: Option<Instant>,
    last_seq: Option<u64>,
    recent_requests: VecDeque<(String, i32)>,
    /// The floors this car stops at, when not every floor.
    stops: Option<Vec<i32>>,
}

impl LiftMachine {
    /// A lift not heard from yet: offline until its device reports.
    pub fn new(floors: Floors, timeouts: Timeouts) -> Self {
        Self {
            floors,
            timeouts,
            state: LiftState::Offline,
            position: None,
            last_heard: None,
            last_seq: None,
            recent_requests: VecDeque::new(),
            stops: None,
        }
    }

    /// A car that stops only at `stops` (those inside the building).
    pub fn with_stops(mut self, stops: Option<Vec<i32>>) -> Self {
        self.stops = stops.map(|mut stops| {
            stops.retain(|floor| self.floors.contains(*floor));
            stops.sort_unstable();
            stops.dedup();
            stops
        });
        self
    }

    /// Whether this car stops at `floor`.
    pub fn serves(&self, floor: i32) -> bool {
        self.floors.contains(floor)
            && self
                .stops
                .as_ref()
                .is_none_or(|stops| stops.contains(&floor))
    }

    /// The floors this car stops at, lowest first.
    pub fn served_floors(&self) -> Vec<i32> {
        match &self.stops {
            Some(stops) => stops.clone(),
            None => (self.floors.lowest..=self.floors.highest).collect(),
        }
    }

    /// Whether a move under `request_id` was accepted lately.
    pub fn knows_request(&self, request_id: &str) -> bool {
        self.recent_requests.iter().any(|(id, _)| id == request_id)
    }

    pub fn state(&self) -> &LiftState {
        &self.state
    }

    pub fn floors(&self) -> &Floors {
        &self.floors
    }

    /// When the device was last heard from (a report or a poll).
    pub fn last_heard(&self) -> Option<Instant> {
        self.last_heard
    }

    pub fn position(&self) -> Option<i32> {
        self.position
    }

    /// Knows these request ids (oldest first) as already accepted: after a restart, the ones
    /// the store kept, so that a repeated request does not move the lift again.
    pub fn remember_requests(&mut self, requests: impl IntoIterator<Item = (String, i32)>) {
        for request in requests {
            if self.recent_requests.len() == REMEMBERED_REQUESTS {
                self.recent_requests.pop_front();
            }
            self.recent_requests.push_back(request);
        }
    }

    /// Accepts a move to `floor` under `request_id`, or says why not.
    pub fn request_move(
        &mut self,
        floor: i32,
        request_id: &str,
        now: Instant,
    ) -> Result<Accepted, LiftError> {
        if let Some((_, earlier_floor)) =
            self.recent_requests.iter().find(|(id, _)| id == request_id)
        {
            if *earlier_floor != floor {
                return Err(LiftError::RequestIdReused);
            }
            return Ok(Accepted {
                request_id: request_id.to_string(),
                floor,
                duplicate: true,
            });
        }
        if !self.floors.contains(floor) {
            return Err(self.floors.out_of_range(floor));
        }
        if !self.serves(floor) {
            return Err(LiftError::NotServed(floor));
        }
        let from = match &self.state {
            LiftState::Offline => return Err(LiftError::Offline),
            LiftState::Fault { reason, .. } => return Err(LiftError::Fault(reason.clone())),
            LiftState::Moving { .. } => return Err(LiftError::Busy),
            LiftState::Idle { floor } => *floor,
        };
        if from == floor {
            return Err(LiftError::AlreadyThere(floor));
        }
        self.state = LiftState::Moving {
            from,
            to: floor,
            request_id: request_id.to_string(),
            since: now,
            started: false,
        };
        if self.recent_requests.len() == REMEMBERED_REQUESTS {
            self.recent_requests.pop_front();
        }
        self.recent_requests
            .push_back((request_id.to_string(), floor));
        Ok(Accepted {
            request_id: request_id.to_string(),
            floor,
            duplicate: false,
        })
    }

    /// The device refused or never took the command: the lift did not move.
    pub fn command_failed(&mut self, request_id: &str, reason: &str) -> Option<Transition> {
        match &self.state {
            LiftState::Moving { request_id: id, .. } if id == request_id => {
                self.state = LiftState::Fault {
                    reason: reason.to_string(),
                    floor: self.position,
                    latched: true,
                };
                Some(Transition::Faulted {
                    reason: reason.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The device refused the command as busy or a bad floor: the lift stays where it is.
    pub fn command_refused(&mut self, request_id: &str) {
        if let LiftState::Moving {
            from,
            request_id: id,
            ..
        } = &self.state
            && id == request_id
        {
            self.state = LiftState::Idle { floor: *from };
        }
    }

    /// A report signed by the device. Reports older than the last one are ignored.
    pub fn on_report(&mut self, report: &StatusReport, now: Instant) -> Option<Transition> {
        if self.last_seq.is_some_and(|last| report.seq <= last) {
            return None;
        }
        self.last_seq = Some(report.seq);
        self.last_heard = Some(now);
        let was_offline = self.state == LiftState::Offline;
        if !self.floors.contains(report.floor) {
            let reason = format!(
                "the device reported floor {}, which does not exist",
                report.floor
            );
            self.state = LiftState::Fault {
                reason: reason.clone(),
                floor: None,
                latched: true,
            };
            return Some(Transition::Faulted { reason });
        }
        self.position = Some(report.floor);
        match (&self.state, report.state) {
            (_, DeviceState::Fault) => {
                let reason = "the lift controller reports a fault (emergency stop?)".to_string();
                if let LiftState::Fault { floor, .. } = &mut self.state {
                    // already out of service; a latched fault stays latched
                    *floor = Some(report.floor);
                    return None;
                }
                self.state = LiftState::Fault {
                    reason: reason.clone(),
                    floor: Some(report.floor),
                    latched: false,
                };
                Some(Transition::Faulted { reason })
            }
            (
                LiftState::Moving {
                    to, started: false, ..
                },
                DeviceState::Idle,
            ) if report.floor != *to => {
                // a heartbeat sent before the command arrived
                None
            }
            (LiftState::Moving { to, request_id, .. }, DeviceState::Idle) => {
                let (to, request_id) = (*to, request_id.clone());
                self.state = LiftState::Idle {
                    floor: report.floor,
                };
                if report.floor == to {
                    Some(Transition::Arrived {
                        floor: to,
                        request_id,
                    })
                } else {
                    let reason = format!(
                        "the lift stopped at floor {} on its way to floor {}",
                        self.floors.name(report.floor),
                        self.floors.name(to)
                    );
                    self.state = LiftState::Fault {
                        reason: reason.clone(),
                        floor: Some(report.floor),
                        latched: true,
                    };
                    Some(Transition::Faulted { reason })
                }
            }
            (LiftState::Moving { .. }, DeviceState::Moving) => {
                if let LiftState::Moving { started, .. } = &mut self.state {
                    *started = true;
                }
                None
            }
            (LiftState::Idle { .. }, _) => {
                // moving without a command of ours (a call button): follow it
                self.state = LiftState::Idle {
                    floor: report.floor,
                };
                None
            }
            (LiftState::Fault { latched: true, .. }, _) => {
                if let LiftState::Fault { floor, .. } = &mut self.state {
                    *floor = Some(report.floor);
                }
                None
            }
            (LiftState::Offline | LiftState::Fault { .. }, DeviceState::Idle) => {
                self.state = LiftState::Idle {
                    floor: report.floor,
                };
                Some(if was_offline {
                    Transition::CameOnline
                } else {
                    Transition::Recovered {
                        floor: report.floor,
                    }
                })
            }
            (LiftState::Offline | LiftState::Fault { .. }, DeviceState::Moving) => {
                // still travelling from before; it becomes idle with its next report
                None
            }
        }
    }

    /// The device showed it is alive (a long poll) without reporting a state.
    pub fn heard_from(&mut self, now: Instant) {
        if self.state != LiftState::Offline {
            self.last_heard = Some(now);
        }
    }

    /// An administrator clears a fault (after checking the lift): it is idle where the
    /// device last reported it, or offline until it reports.
    pub fn reset_fault(&mut self) -> Option<Transition> {
        let LiftState::Fault { .. } = self.state else {
            return None;
        };
        self.state = match self.position {
            Some(floor) => LiftState::Idle { floor },
            None => LiftState::Offline,
        };
        Some(Transition::Reset)
    }

    /// Time passing: a move not finished in time faults; a silent device goes offline.
    pub fn tick(&mut self, now: Instant) -> Option<Transition> {
        let silent = self.last_heard.is_none_or(|heard| {
            now.saturating_duration_since(heard) >= self.timeouts.offline_after
        });
        if silent && self.state != LiftState::Offline {
            self.state = LiftState::Offline;
            self.position = None;
            return Some(Transition::WentOffline);
        }
        if let LiftState::Moving { to, since, .. } = &self.state
            && now.saturating_duration_since(*since) >= self.timeouts.move_timeout
        {
            let reason = format!(
                "the move to floor {} was not confirmed within {} s",
                self.floors.name(*to),
                self.timeouts.move_timeout.as_secs_f32()
            );
            self.state = LiftState::Fault {
                reason: reason.clone(),
                floor: self.position,
                latched: true,
            };
            return Some(Transition::Faulted { reason });
        }
        None
    }
}

/// The machine's state as instances share it through the store: what changes, not what is
/// configured (floors, stops, timeouts). Times are wall-clock milliseconds, since another
/// instance's monotonic clock means nothing here.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    state: StoredState,
    position: Option<i32>,
    last_heard_ms: Option<i64>,
    last_seq: Option<u64>,
    recent_requests: Vec<(String, i32)>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum StoredState {
    Idle {
        floor: i32,
    },
    Moving {
        from: i32,
        to: i32,
        request_id: String,
        since_ms: i64,
        started: bool,
    },
    Fault {
        reason: String,
        floor: Option<i32>,
        latched: bool,
    },
    Offline,
}

/// A moment on both clocks, to carry instants between instances as wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Moment {
    pub monotonic: Instant,
    pub unix_ms: i64,
}

impl Moment {
    fn to_unix_ms(self, instant: Instant) -> i64 {
        let ago = self.monotonic.saturating_duration_since(instant);
        self.unix_ms
            .saturating_sub(i64::try_from(ago.as_millis()).unwrap_or(i64::MAX))
    }

    /// A time in the future of this instance's clock is taken as now (clocks of two
    /// machines differ a little).
    fn to_instant(self, unix_ms: i64) -> Instant {
        let ago = u64::try_from(self.unix_ms.saturating_sub(unix_ms)).unwrap_or(0);
        self.monotonic
            .checked_sub(Duration::from_millis(ago))
            .unwrap_or(self.monotonic)
    }
}

impl LiftMachine {
    /// What another instance (or this one after a restart) needs to go on from here.
    pub fn snapshot(&self, at: Moment) -> Snapshot {
        let state = match &self.state {
            LiftState::Idle { floor } => StoredState::Idle { floor: *floor },
            LiftState::Moving {
                from,
                to,
                request_id,
                since,
                started,
            } => StoredState::Moving {
                from: *from,
                to: *to,
                request_id: request_id.clone(),
                since_ms: at.to_unix_ms(*since),
                started: *started,
            },
            LiftState::Fault {
                reason,
                floor,
                latched,
            } => StoredState::Fault {
                reason: reason.clone(),
                floor: *floor,
                latched: *latched,
            },
            LiftState::Offline => StoredState::Offline,
        };
        Snapshot {
            state,
            position: self.position,
            last_heard_ms: self.last_heard.map(|heard| at.to_unix_ms(heard)),
            last_seq: self.last_seq,
            recent_requests: self.recent_requests.iter().cloned().collect(),
        }
    }

    /// Goes on from `snapshot`, keeping this car's configuration.
    pub fn restore(&mut self, snapshot: Snapshot, at: Moment) {
        self.state = match snapshot.state {
            StoredState::Idle { floor } => LiftState::Idle { floor },
            StoredState::Moving {
                from,
                to,
                request_id,
                since_ms,
                started,
            } => LiftState::Moving {
                from,
                to,
                request_id,
                since: at.to_instant(since_ms),
                started,
            },
            StoredState::Fault {
                reason,
                floor,
                latched,
            } => LiftState::Fault {
                reason,
                floor,
                latched,
            },
            StoredState::Offline => LiftState::Offline,
        };
        self.position = snapshot.position;
        self.last_heard = snapshot.last_heard_ms.map(|ms| at.to_instant(ms));
        self.last_seq = snapshot.last_seq;
        self.recent_requests = snapshot.recent_requests.into();
        while self.recent_requests.len() > REMEMBERED_REQUESTS {
            self.recent_requests.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> (LiftMachine, Instant) {
        let floors = Floors {
            lowest: 0,
            highest: 3,
            names: vec!["G".into()],
        };
        let timeouts = Timeouts {
            move_timeout: Duration::from_secs(20),
            offline_after: Duration::from_secs(15),
        };
        (LiftMachine::new(floors, timeouts), Instant::now())
    }

    fn report(floor: i32, state: DeviceState, seq: u64) -> StatusReport {
        StatusReport {
            device_id: "lift-a".into(),
            floor,
            state,
            seq,
        }
    }

    #[test]
    fn offline_until_the_device_reports_then_one_move_at_a_time() {
        let (mut lift, t0) = machine();
        assert_eq!(lift.request_move(2, "r1", t0), Err(LiftError::Offline));
        assert_eq!(
            lift.on_report(&report(0, DeviceState::Idle, 1), t0),
            Some(Transition::CameOnline)
        );
        assert_eq!(
            lift.request_move(9, "r1", t0),
            Err(LiftError::OutOfRange {
                floor: 9,
                lowest: 0,
                highest: 3
            })
        );
        let accepted = lift.request_move(2, "r1", t0).expect("idle lift moves");
        assert!(!accepted.duplicate);
        assert_eq!(lift.request_move(3, "r2", t0), Err(LiftError::Busy));
        // the same request again is not a second move
        assert!(lift.request_move(2, "r1", t0).expect("duplicate").duplicate);
        assert_eq!(lift.on_report(&report(1, DeviceState::Moving, 2), t0), None);
        assert_eq!(lift.position(), Some(1));
        assert_eq!(
            lift.on_report(&report(2, DeviceState::Idle, 3), t0),
            Some(Transition::Arrived {
                floor: 2,
                request_id: "r1".into()
            })
        );
        assert_eq!(lift.state(), &LiftState::Idle { floor: 2 });
        assert!(
            lift.request_move(2, "r1", t0)
                .expect("still a duplicate")
                .duplicate
        );
        assert_eq!(lift.floors().name(0), "G");
        assert_eq!(lift.floors().name(3), "3");
    }

    #[test]
    fn an_unconfirmed_move_faults_and_a_silent_device_goes_offline() {
        let (mut lift, t0) = machine();
        lift.on_report(&report(0, DeviceState::Idle, 1), t0);
        lift.request_move(1, "r1", t0).expect("moves");
        let t10 = t0 + Duration::from_secs(10);
        lift.on_report(&report(0, DeviceState::Moving, 2), t10);
        assert_eq!(lift.tick(t10), None);
        let t21 = t0 + Duration::from_secs(21);
        assert!(matches!(lift.tick(t21), Some(Transition::Faulted { .. })));
        assert!(matches!(
            lift.request_move(2, "r2", t21),
            Err(LiftError::Fault(_))
        ));
        // the device idling at a floor does not clear a fault the server found...
        assert_eq!(lift.on_report(&report(0, DeviceState::Idle, 3), t21), None);
        assert!(matches!(
            lift.state(),
            LiftState::Fault { floor: Some(0), .. }
        ));
        // ...an administrator does
        assert_eq!(lift.reset_fault(), Some(Transition::Reset));
        assert_eq!(lift.state(), &LiftState::Idle { floor: 0 });
        assert_eq!(
            lift.tick(t21 + Duration::from_secs(15)),
            Some(Transition::WentOffline)
        );
        assert_eq!(lift.request_move(2, "r3", t21), Err(LiftError::Offline));
    }

    #[test]
    fn stale_reports_and_impossible_floors_change_nothing_good() {
        let (mut lift, t0) = machine();
        lift.on_report(&report(1, DeviceState::Idle, 10), t0);
        assert_eq!(lift.on_report(&report(3, DeviceState::Idle, 9), t0), None);
        assert_eq!(lift.state(), &LiftState::Idle { floor: 1 });
        assert!(matches!(
            lift.on_report(&report(7, DeviceState::Idle, 11), t0),
            Some(Transition::Faulted { .. })
        ));
        lift.on_report(&report(1, DeviceState::Idle, 12), t0);
        lift.reset_fault();
        lift.request_move(2, "r1", t0).expect("moves");
        // a heartbeat from before the command arrived is not a stop
        assert_eq!(lift.on_report(&report(1, DeviceState::Idle, 13), t0), None);
        lift.on_report(&report(2, DeviceState::Moving, 14), t0);
        assert!(matches!(
            lift.on_report(&report(3, DeviceState::Idle, 15), t0),
            Some(Transition::Faulted { .. })
        ));
        lift.reset_fault();
        lift.on_report(&report(3, DeviceState::Idle, 16), t0);
        assert!(matches!(
            lift.on_report(&report(3, DeviceState::Fault, 17), t0),
            Some(Transition::Faulted { .. })
        ));
        assert_eq!(lift.on_report(&report(3, DeviceState::Fault, 18), t0), None);
        // the emergency stop released on site: the device reports idle and the fault clears
        assert_eq!(
            lift.on_report(&report(3, DeviceState::Idle, 19), t0),
            Some(Transition::Recovered { floor: 3 })
        );
        assert_eq!(
            lift.request_move(3, "r1", t0),
            Err(LiftError::RequestIdReused)
        );
    }

    #[test]
    fn another_instance_goes_on_with_a_move_from_its_snapshot() {
        let (mut lift, t0) = machine();
        lift.on_report(&report(0, DeviceState::Idle, 1), t0);
        lift.request_move(2, "r1", t0).expect("moves");
        let here = Moment {
            monotonic: t0 + Duration::from_secs(5),
            unix_ms: 1_000_000,
        };
        let snapshot = lift.snapshot(here);
        // the other instance's monotonic clock started elsewhere; its wall clock agrees
        let t1 = Instant::now() + Duration::from_secs(1000);
        let there = Moment {
            monotonic: t1,
            unix_ms: 1_002_000,
        };
        let (mut other, _) = machine();
        other.restore(snapshot.clone(), there);
        assert_eq!(other.snapshot(there), snapshot);
        assert!(other.knows_request("r1"));
        // the move started 7 s before `t1` there: its 20 s run out 13 s later, not 20
        other.on_report(&report(1, DeviceState::Moving, 2), t1);
        assert_eq!(other.tick(t1 + Duration::from_secs(12)), None);
        assert!(matches!(
            other.tick(t1 + Duration::from_millis(13_100)),
            Some(Transition::Faulted { .. })
        ));
        // a report older than the snapshot's is still ignored
        let (mut again, _) = machine();
        again.restore(snapshot, there);
        assert_eq!(again.on_report(&report(2, DeviceState::Idle, 1), t1), None);
        assert!(matches!(again.state(), LiftState::Moving { .. }));
    }
}
