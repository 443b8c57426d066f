//! The building's cars together: which car takes a call, and the fire-service recall that
//! sends every car to one floor and blocks normal calls until an administrator clears it.

use std::sync::{Arc, Mutex};

use super::service::write_audit;
use super::{Condition, Device, Floors, LiftError, LiftService, LinkError};
use crate::clock::Clock;
use crate::config::{CarSettings, Settings};
use crate::lift::Accepted;
use crate::store::{AuditEntry, AuditKind, AuditOutcome, Notice, Store, StoreError};

/// What a change to the recall is announced as.
const RECALL_TOPIC: &str = "recall";

/// Takes up a recall started or ended through another instance on the database (or any
/// change, when notices were missed), while the cars live.
fn follow_recall(cars: std::sync::Weak<Vec<LiftService>>, recall: Arc<Recall>, store: Arc<Store>) {
    let mut notices = store.subscribe();
    tokio::spawn(async move {
        loop {
            let reread = match Notice::next(&mut notices).await {
                Some(Notice::Changed(what)) => what == RECALL_TOPIC,
                Some(Notice::Missed) => true,
                None => break,
            };
            if cars.strong_count() == 0 {
                break;
            }
            if !reread {
                continue;
            }
            let reading = Arc::clone(&store);
            let floor = match tokio::task::spawn_blocking(move || reading.recall()).await {
                Ok(Ok(floor)) => floor,
                Ok(Err(error)) => {
                    tracing::error!(%error, "could not read whether a recall is on");
                    continue;
                }
                Err(_) => continue,
            };
            if recall.set(floor) != floor
                && let Some(cars) = cars.upgrade()
            {
                tracing::warn!(
                    ?floor,
                    "the fire-service recall changed on another instance"
                );
                for car in cars.iter() {
                    car.recall_changed();
                }
            }
        }
    });
}

/// The recall, shared by every car: the floor they go to while it is on.
#[derive(Debug, Default)]
pub struct Recall {
    floor: Mutex<Option<i32>>,
}

impl Recall {
    pub fn floor(&self) -> Option<i32> {
        *self
            .floor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets it; answers what it was.
    fn set(&self, floor: Option<i32>) -> Option<i32> {
        std::mem::replace(
            &mut *self
                .floor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            floor,
        )
    }
}

/// Every car of the building. Cloning shares them.
#[derive(Clone)]
pub struct Building {
    cars: Arc<Vec<LiftService>>,
    recall: Arc<Recall>,
    recall_floor: i32,
    floors: Floors,
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
}

/// Where a call goes: the car that took it, and what it answered.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Dispatched {
    /// The car's name.
    pub lift: String,
    #[serde(flatten)]
    pub accepted: Accepted,
}

impl Building {
    /// Starts every car with its device (as `choose_devices` paired them).
    pub fn start(
        settings: &Settings,
        cars: Vec<(CarSettings, Option<Device>)>,
        store: Arc<Store>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LinkError> {
        let recall = Arc::new(Recall::default());
        // a recall in force before a restart stays in force
        match store.recall() {
            Ok(floor) => {
                recall.set(floor);
            }
            Err(error) => tracing::error!(%error, "could not read whether a recall is on"),
        }
        // names this process in the cars' leases
        let instance: Arc<str> = format!("{:016x}", rand::random::<u64>()).into();
        let cars = cars
            .into_iter()
            .map(|(car, device)| {
                LiftService::start(
                    &car,
                    &settings.lift,
                    device,
                    Arc::clone(&store),
                    Arc::clone(&clock),
                    Arc::clone(&recall),
                    Arc::clone(&instance),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cars = Arc::new(cars);
        follow_recall(
            Arc::downgrade(&cars),
            Arc::clone(&recall),
            Arc::clone(&store),
        );
        Ok(Self {
            cars,
            recall,
            recall_floor: settings
                .building
                .recall_floor
                .unwrap_or(settings.lift.lowest_floor),
            floors: Floors::of(&settings.lift),
            store,
            clock,
        })
    }

    /// The cars, in the configuration's order.
    pub fn cars(&self) -> &[LiftService] {
        &self.cars
    }

    pub fn car(&self, name: &str) -> Result<&LiftService, LiftError> {
        self.cars
            .iter()
            .find(|car| car.name() == name)
            .ok_or_else(|| LiftError::NoSuchLift(name.to_string()))
    }

    /// The car a device drives.
    pub fn car_driven_by(&self, device: &str) -> Option<&LiftService> {
        self.cars
            .iter()
            .find(|car| car.device().is_some_and(|d| d.name == device))
    }

    /// The floor a recall sends the cars to, when one is on.
    pub fn recall(&self) -> Option<i32> {
        self.recall.floor()
    }

    /// Which car takes a call from `from` (a kiosk's floor; a phone says none) to `to`: of the
    /// cars that stop at both, the idle one nearest the pickup floor (without one, the
    /// destination), ties to the name that sorts first; a car already at the destination is
    /// passed over unless the pickup is there too. With none idle, the refusal says why: all
    /// busy, else out of service, else offline.
    pub fn assign(&self, from: Option<i32>, to: i32) -> Result<&LiftService, LiftError> {
        if let Some(floor) = self.recall.floor() {
            return Err(LiftError::Recall(floor));
        }
        let serving: Vec<&LiftService> = self
            .cars
            .iter()
            .filter(|car| car.serves(to) && from.is_none_or(|from| car.serves(from)))
            .collect();
        if serving.is_empty() {
            return Err(
                match from
                    .into_iter()
                    .chain([to])
                    .find(|f| !self.floors.contains(*f))
                {
                    Some(floor) => LiftError::OutOfRange {
                        floor,
                        lowest: self.floors.lowest,
                        highest: self.floors.highest,
                    },
                    None => LiftError::NotServed(to),
                },
            );
        }
        let pickup = from.unwrap_or(to);
        let best = serving
            .iter()
            .filter_map(|car| {
                let status = car.status();
                let floor = status.floor?;
                let useless = floor == to && pickup != to;
                (status.state == Condition::Idle && !useless)
                    .then(|| ((floor - pickup).abs(), car.name().to_string(), *car))
            })
            .min_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        if let Some((_, _, car)) = best {
            return Ok(car);
        }
        let states: Vec<_> = serving.iter().map(|car| car.status()).collect();
        if states.iter().any(|s| s.state == Condition::Moving) {
            return Err(LiftError::Busy);
        }
        if let Some(status) = states.iter().find(|s| s.state == Condition::Idle) {
            return Err(LiftError::AlreadyThere(status.floor.unwrap_or(to)));
        }
        if let Some(fault) = states.iter().find_map(|s| s.fault.clone()) {
            return Err(LiftError::Fault(fault));
        }
        Err(LiftError::Offline)
    }

    /// A call to `to`: in the car named, else in the car `assign` picks. A repeated request id
    /// goes to the car that took it first, so that a retry never moves a second car.
    pub fn request_move(
        &self,
        lift: Option<&str>,
        from: Option<i32>,
        to: i32,
        request_id: Option<String>,
        who: &str,
    ) -> Result<Dispatched, LiftError> {
        if request_id
            .as_deref()
            .is_some_and(|id| !super::protocol::valid_request_id(id))
        {
            return Err(LiftError::BadRequestId);
        }
        let known = request_id
            .as_deref()
            .and_then(|id| self.cars.iter().find(|car| car.knows_request(id)));
        let car = match (known, lift) {
            (Some(car), _) => car,
            (None, Some(name)) => self.car(name)?,
            (None, None) => self.assign(from, to)?,
        };
        if lift.is_some_and(|name| name != car.name()) {
            return Err(LiftError::RequestIdReused);
        }
        let accepted = car.request_move(to, request_id, who)?;
        Ok(Dispatched {
            lift: car.name().to_string(),
            accepted,
        })
    }

    /// Starts the fire-service recall: every car goes to the recall floor (a moving one once
    /// it arrives) and normal calls are refused until it is cleared. It is kept in the store
    /// first, so that it outlasts a restart. Answers the floor.
    pub async fn start_recall(&self, who: &str) -> Result<i32, StoreError> {
        let floor = self.recall_floor;
        let before = self.keep_recall(Some(floor)).await?;
        self.recall.set(Some(floor));
        // the store's answer, not this instance's: the follower may have taken the change up
        // already, having heard its announcement
        if before.is_none() {
            tracing::warn!(who, floor, "fire-service recall started");
            self.audit(
                who,
                AuditOutcome::RecallStarted,
                format!("to floor {floor}"),
            );
        }
        for car in self.cars.iter() {
            car.recall_changed();
        }
        Ok(floor)
    }

    /// Ends the recall; answers whether there was one.
    pub async fn clear_recall(&self, who: &str) -> Result<bool, StoreError> {
        let before = self.keep_recall(None).await?;
        self.recall.set(None);
        if before.is_some() {
            tracing::warn!(who, "fire-service recall cleared");
            self.audit(who, AuditOutcome::RecallCleared, String::new());
            for car in self.cars.iter() {
                car.recall_changed();
            }
        }
        Ok(before.is_some())
    }

    /// Kept in the store and announced: the other instances on the database follow it.
    /// Answers the recall floor before.
    async fn keep_recall(&self, floor: Option<i32>) -> Result<Option<i32>, StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let before = store.set_recall(floor)?;
            store.announce(RECALL_TOPIC)?;
            Ok(before)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn audit(&self, who: &str, outcome: AuditOutcome, detail: String) {
        write_audit(
            &self.store,
            AuditEntry {
                at: self.clock.now(),
                kind: AuditKind::Access,
                client: who.to_string(),
                person: Some(who.to_string()),
                similarity: None,
                outcome,
                detail: (!detail.is_empty()).then_some(detail),
            },
        );
    }
}
