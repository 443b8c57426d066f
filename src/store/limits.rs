//! The login attempt counters (per client, and the ceiling across clients) when they are kept
//! in the store: shared by every instance on one database, and kept across a restart, so that
//! neither another instance nor a crash gives an attacker fresh tries. `access::limits` decides
//! with them; here they are read and written, each change in one write transaction.

use super::db::{Conn, DbError, OptionalRow, Row, params};
use super::{Store, StoreError};

/// An attempt in flight for longer than this is counted no more: the instance running it died.
pub const STALE_ATTEMPT_SECS: i64 = 120;

/// One client's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientCounts {
    /// failures in a row
    pub failures: u32,
    /// attempts that hold a place now
    pub in_flight: u32,
    /// when the last of those began
    pub in_flight_at: i64,
    pub blocked_until: i64,
    /// when the last failure was
    pub last_failure: i64,
    /// live attempts decided while waiting: the minute they count in, how many, and when the
    /// one in flight began
    pub probation_minute: i64,
    pub probation_used: u32,
    pub probation_since: Option<i64>,
}

impl ClientCounts {
    /// Nothing to remember: no failures and nothing in flight.
    pub fn idle(&self) -> bool {
        self.failures == 0 && self.in_flight == 0 && self.probation_since.is_none()
    }

    /// Forgets places held by attempts that began too long before `now`.
    fn drop_stale(&mut self, now: i64) {
        if self.in_flight > 0 && self.in_flight_at < now - STALE_ATTEMPT_SECS {
            self.in_flight = 0;
        }
        if self
            .probation_since
            .is_some_and(|since| since < now - STALE_ATTEMPT_SECS)
        {
            self.probation_since = None;
        }
    }

    fn read(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            failures: row.get(0)?,
            in_flight: row.get(1)?,
            in_flight_at: row.get(2)?,
            blocked_until: row.get(3)?,
            last_failure: row.get(4)?,
            probation_minute: row.get(5)?,
            probation_used: row.get(6)?,
            probation_since: row.get(7)?,
        })
    }
}

/// The ceiling's attempts in flight across every client.
fn ceiling_in_flight(c: &dyn Conn, now: i64) -> Result<u32, DbError> {
    Ok(c.query_row(
        "SELECT in_flight, in_flight_at FROM login_ceiling WHERE id = 1",
        params![],
        |row| Ok((row.get::<u32>(0)?, row.get::<i64>(1)?)),
    )
    .optional()?
    .map_or(0, |(in_flight, at)| {
        if at < now - STALE_ATTEMPT_SECS {
            0
        } else {
            in_flight
        }
    }))
}

fn set_ceiling_in_flight(c: &dyn Conn, in_flight: u32, at: i64) -> Result<(), DbError> {
    c.execute(
        "INSERT INTO login_ceiling (id, in_flight, in_flight_at) VALUES (1, ?1, ?2)
         ON CONFLICT (id) DO UPDATE SET in_flight = excluded.in_flight,
             in_flight_at = excluded.in_flight_at",
        params![in_flight, at],
    )
    .map(drop)
}

impl Store {
    /// Reads `client`'s counts (attempts in flight since before `now` minus
    /// `STALE_ATTEMPT_SECS` not counted), lets `change` change them, and writes them back, in
    /// one transaction. Counts left idle are deleted.
    pub fn update_client_counts<R>(
        &self,
        client: &str,
        now: i64,
        change: impl FnOnce(&mut ClientCounts) -> R,
    ) -> Result<R, StoreError> {
        self.with_transaction(|t| {
            let mut counts = t
                .query_row(
                    "SELECT failures, in_flight, in_flight_at, blocked_until, last_failure,
                            probation_minute, probation_used, probation_since
                     FROM login_clients WHERE client = ?1",
                    params![client],
                    ClientCounts::read,
                )
                .optional()?
                .unwrap_or_default();
            counts.drop_stale(now);
            let answer = change(&mut counts);
            if counts.idle() {
                t.execute(
                    "DELETE FROM login_clients WHERE client = ?1",
                    params![client],
                )?;
            } else {
                t.execute(
                    "INSERT INTO login_clients (client, failures, in_flight, in_flight_at,
                         blocked_until, last_failure, probation_minute, probation_used,
                         probation_since)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                     ON CONFLICT (client) DO UPDATE SET failures = excluded.failures,
                         in_flight = excluded.in_flight, in_flight_at = excluded.in_flight_at,
                         blocked_until = excluded.blocked_until,
                         last_failure = excluded.last_failure,
                         probation_minute = excluded.probation_minute,
                         probation_used = excluded.probation_used,
                         probation_since = excluded.probation_since",
                    params![
                        client,
                        counts.failures,
                        counts.in_flight,
                        counts.in_flight_at,
                        counts.blocked_until,
                        counts.last_failure,
                        counts.probation_minute,
                        counts.probation_used,
                        counts.probation_since
                    ],
                )?;
            }
            Ok(answer)
        })
    }

    /// Forgets clients neither waiting nor trying whose last failure was before `cutoff`.
    pub fn forget_idle_clients(&self, cutoff: i64, now: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM login_clients WHERE last_failure < ?1 AND blocked_until <= ?2
                 AND (in_flight = 0 OR in_flight_at < ?3)
                 AND (probation_since IS NULL OR probation_since < ?3)",
                params![cutoff, now, now - STALE_ATTEMPT_SECS],
            )
        })
    }

    /// The ceiling: takes a place when the failures since `window_start` and the places in
    /// flight are fewer than `limit`; else answers the oldest of those failures (None: the
    /// places in flight fill it).
    pub fn begin_ceiling_attempt(
        &self,
        now: i64,
        window_start: i64,
        limit: usize,
    ) -> Result<Result<(), Option<i64>>, StoreError> {
        self.with_transaction(|t| {
            t.execute(
                "DELETE FROM login_failures WHERE at <= ?1",
                params![window_start],
            )?;
            let (failures, oldest): (usize, Option<i64>) = t.query_row(
                "SELECT COUNT(*), MIN(at) FROM login_failures",
                params![],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let in_flight = ceiling_in_flight(t, now)?;
            if failures + in_flight as usize >= limit {
                return Ok(Err(oldest));
            }
            set_ceiling_in_flight(t, in_flight + 1, now)?;
            Ok(Ok(()))
        })
    }

    /// Gives the ceiling's place back, counting a failure at `failed_at` if there was one.
    pub fn end_ceiling_attempt(&self, now: i64, failed_at: Option<i64>) -> Result<(), StoreError> {
        self.with_transaction(|t| {
            let in_flight = ceiling_in_flight(t, now)?;
            t.execute(
                "UPDATE login_ceiling SET in_flight = ?1 WHERE id = 1",
                params![in_flight.saturating_sub(1)],
            )?;
            if let Some(at) = failed_at {
                t.execute("INSERT INTO login_failures (at) VALUES (?1)", params![at])?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trip_idle_ones_go_and_stale_places_are_not_counted() {
        for store in crate::store::test_stores() {
            store
                .update_client_counts("a", 100, |c| {
                    c.in_flight = 2;
                    c.in_flight_at = 100;
                    c.failures = 1;
                    c.probation_since = Some(100);
                })
                .expect("write");
            let seen = store.update_client_counts("a", 110, |c| *c).expect("read");
            assert_eq!(
                (seen.in_flight, seen.failures, seen.probation_since),
                (2, 1, Some(100))
            );
            let later = store
                .update_client_counts("a", 100 + STALE_ATTEMPT_SECS + 1, |c| *c)
                .expect("read");
            assert_eq!(
                (later.in_flight, later.probation_since),
                (0, None),
                "{:?}: the instance running those died",
                store.dialect()
            );
            store
                .update_client_counts("a", 300, |c| c.failures = 0)
                .expect("clear");
            assert_eq!(
                store.update_client_counts("a", 300, |c| *c).expect("read"),
                ClientCounts::default()
            );
            assert_eq!(store.begin_ceiling_attempt(0, -60, 2).expect("db"), Ok(()));
            store.end_ceiling_attempt(0, Some(0)).expect("db");
            assert_eq!(store.begin_ceiling_attempt(5, -55, 2).expect("db"), Ok(()));
            assert_eq!(
                store.begin_ceiling_attempt(5, -55, 2).expect("db"),
                Err(Some(0))
            );
            assert_eq!(store.begin_ceiling_attempt(61, 1, 2).expect("db"), Ok(()));
        }
    }
}
