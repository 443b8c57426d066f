//! What the lift must remember across a restart: the nonces of device messages still inside
//! the signature window (so that a captured message cannot be replayed once the server has
//! restarted), and the request ids of recent moves (so that a repeated request does not move
//! the lift again). And, for several instances on one database, each car's row
//! (`lift_cars`): which instance drives it (a lease), its shared state and the command its
//! device has yet to fetch.

use super::db::{Conn, DbError, Dialect, OptionalRow, params};

use super::{Store, StoreError};

/// Request ids are remembered this long: longer than any move may take.
pub const REQUEST_MEMORY_SECS: i64 = 60 * 60;

/// A car's shared row: its state and the command waiting for its device, as the lift wrote
/// them (JSON), the device's newest long poll, and a version raised by every change.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CarRecord {
    pub version: i64,
    pub state: Option<String>,
    pub pending: Option<String>,
    pub poll: Option<String>,
}

impl Store {
    /// Records that `device` sent `nonce` in a message stamped `at`; false when it had
    /// already. Nonces stamped before `forget_before` (outside the window, so refused anyway)
    /// are deleted on the way.
    pub fn remember_device_nonce(
        &self,
        device: &str,
        nonce: &str,
        at: i64,
        forget_before: i64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM device_nonces WHERE at < ?1",
                params![forget_before],
            )?;
            let added = c.execute(
                "INSERT INTO device_nonces (device, nonce, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![device, nonce, at],
            )?;
            Ok(added == 1)
        })
    }

    /// Records a move accepted under `request_id`.
    pub fn remember_lift_request(
        &self,
        request_id: &str,
        floor: i32,
        now: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM lift_requests WHERE at < ?1",
                params![now.saturating_sub(REQUEST_MEMORY_SECS)],
            )?;
            c.execute(
                "INSERT INTO lift_requests (request_id, floor, at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (request_id) DO UPDATE SET floor = excluded.floor, at = excluded.at",
                params![request_id, floor, now],
            )?;
            Ok(())
        })
    }

    /// Claims the car for `instance` for `lease_ms` from now by the database's clock (one
    /// clock for every instance, so that one whose clock runs ahead cannot take a car still
    /// driven): granted when the car is free, already `instance`'s, or its lease ran out (its
    /// instance died), or when `force` (the one instance of an embedded database). Answers
    /// whether `instance` drives the car now.
    pub fn claim_lift(
        &self,
        car: &str,
        instance: &str,
        lease_ms: i64,
        force: bool,
    ) -> Result<bool, StoreError> {
        self.with_transaction(|c| {
            let now_ms = database_now_ms(c)?;
            claim_car(c, car, instance, now_ms, lease_ms, force)
        })
    }

    /// Gives the car up (a clean stop), so that another instance takes it at once.
    pub fn release_lift(&self, car: &str, instance: &str) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE lift_cars SET lease_until = 0 WHERE car = ?1 AND owner = ?2",
                params![car, instance],
            )?;
            Ok(())
        })
    }

    /// The car's shared row as it is now (an empty one before the first change).
    pub fn lift_record(&self, car: &str) -> Result<CarRecord, StoreError> {
        self.with(|c| read_car(c, car))
    }

    /// Changes the car's shared row in one transaction: `change` sees it as it is and may
    /// change it; a change is written with the version raised. Answers what `change`
    /// answered and the version the row has now.
    pub fn change_lift<T>(
        &self,
        car: &str,
        change: impl FnOnce(&mut CarRecord) -> T,
    ) -> Result<(T, i64), StoreError> {
        self.with_transaction(|c| {
            let before = read_car(c, car)?;
            let mut record = before.clone();
            let answer = change(&mut record);
            record.version = before.version;
            if record == before {
                return Ok((answer, before.version));
            }
            let version = before.version + 1;
            c.execute(
                "INSERT INTO lift_cars (car, version, state, pending, poll)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (car) DO UPDATE SET version = excluded.version,
                    state = excluded.state, pending = excluded.pending, poll = excluded.poll",
                params![car, version, record.state, record.pending, record.poll],
            )?;
            Ok((answer, version))
        })
    }

    /// The request ids of moves accepted since `since`, oldest first, with their floors.
    pub fn lift_requests_since(&self, since: i64) -> Result<Vec<(String, i32)>, StoreError> {
        self.with(|c| {
            c.query_map(
                "SELECT request_id, floor FROM lift_requests WHERE at >= ?1 ORDER BY at",
                params![since],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
        })
    }
}

/// The database's clock, in Unix milliseconds.
fn database_now_ms(c: &dyn Conn) -> Result<i64, DbError> {
    let sql = match c.dialect() {
        Dialect::Postgres => "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT",
        Dialect::Sqlite => "SELECT CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    };
    c.query_row(sql, params![], |row| row.get(0))
}

/// Claims `car` for `instance` until `now_ms + lease_ms` (see `Store::claim_lift`).
fn claim_car(
    c: &dyn Conn,
    car: &str,
    instance: &str,
    now_ms: i64,
    lease_ms: i64,
    force: bool,
) -> Result<bool, DbError> {
    let held: Option<(String, i64)> = c
        .query_row(
            "SELECT owner, lease_until FROM lift_cars WHERE car = ?1",
            params![car],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let free = match &held {
        None => true,
        Some((owner, until)) => force || owner == instance || *until < now_ms,
    };
    if free {
        c.execute(
            "INSERT INTO lift_cars (car, owner, lease_until) VALUES (?1, ?2, ?3)
             ON CONFLICT (car) DO UPDATE SET
                owner = excluded.owner, lease_until = excluded.lease_until",
            params![car, instance, now_ms.saturating_add(lease_ms)],
        )?;
    }
    Ok(free)
}

fn read_car(c: &dyn Conn, car: &str) -> Result<CarRecord, DbError> {
    Ok(c.query_row(
        "SELECT version, state, pending, poll FROM lift_cars WHERE car = ?1",
        params![car],
        |row| {
            Ok(CarRecord {
                version: row.get(0)?,
                state: row.get(1)?,
                pending: row.get(2)?,
                poll: row.get(3)?,
            })
        },
    )
    .optional()?
    .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_new_once_per_device_until_it_leaves_the_window() {
        for store in crate::store::test_stores() {
            assert!(store.remember_device_nonce("a", "n1", 100, 70).expect("db"));
            assert!(!store.remember_device_nonce("a", "n1", 100, 70).expect("db"));
            assert!(store.remember_device_nonce("b", "n1", 100, 70).expect("db"));
            // stamped 100, forgotten once the window starts after it
            assert!(
                store
                    .remember_device_nonce("a", "n1", 140, 101)
                    .expect("db")
            );
        }
    }

    #[test]
    fn request_ids_are_kept_for_the_request_memory() {
        for store in crate::store::test_stores() {
            store.remember_lift_request("r1", 2, 1000).expect("db");
            store.remember_lift_request("r2", 1, 1010).expect("db");
            assert_eq!(
                store.lift_requests_since(0).expect("db"),
                vec![("r1".to_string(), 2), ("r2".to_string(), 1)]
            );
            store
                .remember_lift_request("r3", 2, 1005 + REQUEST_MEMORY_SECS)
                .expect("db");
            let kept: Vec<String> = store
                .lift_requests_since(0)
                .expect("db")
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(kept, ["r2", "r3"]);
        }
    }

    /// A claim at `now_ms` by the test's clock.
    fn claim_at(store: &Store, car: &str, instance: &str, now_ms: i64, force: bool) -> bool {
        store
            .with_transaction(|c| claim_car(c, car, instance, now_ms, 5000, force))
            .expect("db")
    }

    #[test]
    fn one_instance_drives_a_car_until_its_lease_runs_out() {
        for store in crate::store::test_stores() {
            let store = &store;
            assert!(claim_at(store, "A", "one", 1000, false));
            assert!(!claim_at(store, "A", "two", 2000, false));
            assert!(claim_at(store, "B", "two", 2000, false));
            // renewed by its owner, the lease moves on
            assert!(claim_at(store, "A", "one", 4000, false));
            assert!(!claim_at(store, "A", "two", 8000, false));
            // the owner fell silent: taken over once the lease ran out
            assert!(claim_at(store, "A", "two", 9001, false));
            assert!(!claim_at(store, "A", "one", 9002, false));
            // given up on a clean stop: free at once
            store.release_lift("A", "two").expect("db");
            assert!(claim_at(store, "A", "one", 9003, false));
            assert!(claim_at(store, "A", "three", 9004, true));
        }
    }

    #[test]
    fn leases_are_timed_by_the_databases_clock() {
        for store in crate::store::test_stores() {
            let database = store.with(database_now_ms).expect("db");
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_millis() as i64;
            assert!((database - wall).abs() < 5_000, "{database} against {wall}");
            assert!(store.claim_lift("A", "one", 60_000, false).expect("db"));
            assert!(!store.claim_lift("A", "two", 60_000, false).expect("db"));
            // a lease that ran out a minute ago by the database's clock is taken over
            assert!(claim_at(&store, "A", "one", database - 120_000, false));
            assert!(store.claim_lift("A", "two", 60_000, false).expect("db"));
            assert!(!store.claim_lift("A", "one", 60_000, false).expect("db"));
        }
    }

    #[test]
    fn a_car_row_changes_under_a_new_version_only_when_it_changed() {
        for store in crate::store::test_stores() {
            assert_eq!(store.lift_record("A").expect("db"), CarRecord::default());
            let (seen, version) = store
                .change_lift("A", |record| {
                    record.state = Some("{}".into());
                    record.version
                })
                .expect("db");
            assert_eq!((seen, version), (0, 1));
            let ((), version) = store.change_lift("A", |_| ()).expect("db");
            assert_eq!(version, 1);
            // the lease and the state are one row, changed apart
            assert!(claim_at(&store, "A", "one", 1000, false));
            let ((), version) = store
                .change_lift("A", |record| {
                    record.pending = Some("cmd".into());
                    record.poll = Some("one:1".into());
                })
                .expect("db");
            assert_eq!(version, 2);
            assert_eq!(
                store.lift_record("A").expect("db"),
                CarRecord {
                    version: 2,
                    state: Some("{}".into()),
                    pending: Some("cmd".into()),
                    poll: Some("one:1".into()),
                }
            );
            assert!(!claim_at(&store, "A", "two", 2000, false));
        }
    }
}
