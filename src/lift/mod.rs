//! The lift as the web layer sees it: its status, moves, and a stream of changes.
//!
//! For now an in-process simulated lift stands in for the controller; the device protocol and
//! the ESP32 come with the lift issue, behind this same interface.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiftState {
    Idle,
    Moving,
    Offline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiftStatus {
    pub floor: i32,
    pub state: LiftState,
    /// the floor it is moving to
    pub target: Option<i32>,
    pub floors: Vec<i32>,
    pub online: bool,
}

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
    #[error("the lift controller is offline")]
    Offline,
}

/// A lift that takes `per_floor` to travel one floor.
#[derive(Clone)]
pub struct SimulatedLift {
    status: Arc<Mutex<LiftStatus>>,
    changes: watch::Sender<LiftStatus>,
    per_floor: Duration,
    next_request: Arc<std::sync::atomic::AtomicU64>,
}

impl SimulatedLift {
    pub fn new(lowest: i32, highest: i32, per_floor: Duration) -> Self {
        let status = LiftStatus {
            floor: lowest,
            state: LiftState::Idle,
            target: None,
            floors: (lowest..=highest).collect(),
            online: true,
        };
        let (changes, _) = watch::channel(status.clone());
        Self {
            status: Arc::new(Mutex::new(status)),
            changes,
            per_floor,
            next_request: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    pub fn status(&self) -> LiftStatus {
        self.lock().clone()
    }

    /// Every change from now on (the current status first).
    pub fn subscribe(&self) -> watch::Receiver<LiftStatus> {
        self.changes.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiftStatus> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn publish(&self, status: &LiftStatus) {
        self.changes.send_replace(status.clone());
    }

    /// Starts a move; answers the request id at once. Must run inside a tokio runtime.
    pub fn request_move(&self, floor: i32) -> Result<u64, LiftError> {
        let mut status = self.lock();
        let (lowest, highest) = (status.floors[0], status.floors[status.floors.len() - 1]);
        if !status.online {
            return Err(LiftError::Offline);
        }
        if !(lowest..=highest).contains(&floor) {
            return Err(LiftError::OutOfRange {
                floor,
                lowest,
                highest,
            });
        }
        if status.state == LiftState::Moving {
            return Err(LiftError::Busy);
        }
        let request = self
            .next_request
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        status.state = LiftState::Moving;
        status.target = Some(floor);
        self.publish(&status);
        drop(status);

        let lift = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lift.per_floor).await;
                let mut status = lift.lock();
                let step = (floor - status.floor).signum();
                status.floor += step;
                if status.floor == floor {
                    status.state = LiftState::Idle;
                    status.target = None;
                }
                lift.publish(&status);
                if status.state == LiftState::Idle {
                    break;
                }
            }
        });
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_move_travels_floor_by_floor_and_refuses_what_it_cannot_do() {
        let lift = SimulatedLift::new(0, 3, Duration::from_millis(5));
        let mut changes = lift.subscribe();
        assert_eq!(
            lift.request_move(7),
            Err(LiftError::OutOfRange {
                floor: 7,
                lowest: 0,
                highest: 3
            })
        );
        lift.request_move(2).expect("idle lift moves");
        assert_eq!(lift.request_move(1), Err(LiftError::Busy));
        let mut floors = Vec::new();
        loop {
            changes.changed().await.expect("changes");
            let status = changes.borrow_and_update().clone();
            floors.push(status.floor);
            if status.state == LiftState::Idle {
                break;
            }
        }
        assert_eq!(floors.last(), Some(&2));
        assert_eq!(lift.status().target, None);
    }
}
