//! Attempt limits that an attacker cannot multiply (NIST SP 800-63B-4): per client (an
//! address, or a browser trusted after a success there) and a ceiling on failed matches across
//! all clients. Each is checked and counted in one step: an attempt holds its place from before
//! the engine runs until it is decided, so simultaneous tries cannot all slip under a limit.
//! The counts live in the store, so that they hold across instances on one database and across
//! a restart (`ClientLimiter::stored`, what the server uses), or in memory. The per-person
//! limits are in the store too (`Store::person_failed`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::store::{ClientCounts, Store};

/// The most clients tracked at once in memory; beyond it the stalest idle ones are forgotten
/// first.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The ceiling's window.
const MINUTE: i64 = 60;

/// Where a limiter's counts live.
enum Counts<T> {
    Memory(Mutex<T>),
    /// in the store; the time idle clients were last forgotten
    Stored(Arc<Store>, AtomicI64),
}

/// Failed logins per client: after `allowed` failures in a row the client waits, and each
/// further failure doubles the wait up to `max_wait`; a success forgets the client. Attempts in
/// flight count as possible failures.
pub struct ClientLimiter {
    allowed: u32,
    base_wait: i64,
    max_wait: i64,
    clients: Counts<HashMap<String, ClientCounts>>,
}

/// While a client waits, this many live attempts a minute are still decided (one at a time),
/// so that a resident who passes the challenge at a shared address is not locked out by a
/// stranger's failures there, and the stranger gains at most this many tries a minute.
pub const PROBATION_PER_MINUTE: u32 = 6;

/// The counts stay meaningful after a panic elsewhere: each update is a few field writes on a
/// whole map, so a poisoned lock still guards whole values.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientLimiter {
    /// Counts kept in this process.
    pub fn new(allowed: u32, base_wait: u64, max_wait: u64) -> Self {
        Self::with_counts(
            allowed,
            base_wait,
            max_wait,
            Counts::Memory(Mutex::new(HashMap::new())),
        )
    }

    /// Counts kept in `store`.
    pub fn stored(store: Arc<Store>, allowed: u32, base_wait: u64, max_wait: u64) -> Self {
        Self::with_counts(
            allowed,
            base_wait,
            max_wait,
            Counts::Stored(store, AtomicI64::new(i64::MIN)),
        )
    }

    fn with_counts(
        allowed: u32,
        base_wait: u64,
        max_wait: u64,
        clients: Counts<HashMap<String, ClientCounts>>,
    ) -> Self {
        Self {
            allowed: allowed.max(1),
            base_wait: base_wait as i64,
            max_wait: max_wait.max(base_wait) as i64,
            clients,
        }
    }

    /// Runs `change` on `client`'s counts; None when the store failed (logged).
    fn update<R>(
        &self,
        client: &str,
        now: i64,
        change: impl FnOnce(&mut ClientCounts) -> R,
    ) -> Option<R> {
        match &self.clients {
            Counts::Memory(clients) => {
                let mut clients = lock(clients);
                if !clients.contains_key(client) {
                    make_room(&mut clients, now - self.max_wait, now);
                }
                let counts = clients.entry(client.to_string()).or_default();
                let answer = change(counts);
                if counts.idle() {
                    clients.remove(client);
                }
                Some(answer)
            }
            Counts::Stored(store, last_pruned) => {
                if last_pruned.load(Ordering::Relaxed) < now - MINUTE {
                    last_pruned.store(now, Ordering::Relaxed);
                    if let Err(e) = store.forget_idle_clients(now - self.max_wait, now) {
                        tracing::warn!("forgetting idle login clients failed: {e}");
                    }
                }
                store
                    .update_client_counts(client, now, change)
                    .inspect_err(|e| tracing::error!("the login counters failed: {e}"))
                    .ok()
            }
        }
    }

    /// Takes a place for an attempt by `client`, or answers the seconds it must wait. Before
    /// the limit, as many attempts as failures are left may run at once; after a wait, one.
    /// Counters that cannot be read refuse (for a second), never admit.
    pub fn begin(&self, client: &str, now: i64) -> Result<(), u64> {
        let allowed = self.allowed;
        self.update(client, now, |counts| {
            if counts.blocked_until > now {
                return Err((counts.blocked_until - now) as u64);
            }
            let admitted = if counts.failures < allowed {
                counts.failures + counts.in_flight < allowed
            } else {
                counts.in_flight == 0
            };
            if !admitted {
                // the attempts in flight decide whether a wait follows
                return Err(1);
            }
            counts.in_flight += 1;
            counts.in_flight_at = now;
            Ok(())
        })
        .unwrap_or(Err(1))
    }

    /// A place for a live attempt (a challenge burst) by a client that must wait: one at a
    /// time, `PROBATION_PER_MINUTE` a minute; else the seconds to wait. Its end, whatever the
    /// outcome, is `end_probation`: it neither adds to nor clears the client's failures.
    pub fn begin_probation(&self, client: &str, now: i64) -> Result<(), u64> {
        self.update(client, now, |counts| {
            if counts.idle() {
                return Err(1);
            }
            let minute = now.div_euclid(MINUTE);
            if counts.probation_minute != minute {
                counts.probation_minute = minute;
                counts.probation_used = 0;
            }
            if counts.probation_since.is_some() {
                return Err(1);
            }
            if counts.probation_used >= PROBATION_PER_MINUTE {
                return Err((MINUTE - now.rem_euclid(MINUTE)) as u64);
            }
            counts.probation_used += 1;
            counts.probation_since = Some(now);
            Ok(())
        })
        .unwrap_or(Err(1))
    }

    pub fn end_probation(&self, client: &str, now: i64) {
        self.update(client, now, |counts| counts.probation_since = None);
    }

    /// The attempt failed: counted, and the wait starts or doubles.
    pub fn failure(&self, client: &str, now: i64) {
        let (allowed, base_wait, max_wait) = (self.allowed, self.base_wait, self.max_wait);
        self.update(client, now, |counts| {
            counts.in_flight = counts.in_flight.saturating_sub(1);
            counts.failures += 1;
            counts.last_failure = now;
            if counts.failures >= allowed {
                let doublings = (counts.failures - allowed).min(30);
                let wait = base_wait.saturating_mul(1 << doublings).min(max_wait);
                counts.blocked_until = now + wait;
            }
        });
    }

    /// The attempt succeeded: the client's failures are forgotten.
    pub fn success(&self, client: &str, now: i64) {
        self.update(client, now, |counts| {
            counts.in_flight = counts.in_flight.saturating_sub(1);
            counts.failures = 0;
            counts.blocked_until = 0;
        });
    }

    /// The attempt ended undecided (a bad image, a busy engine): its place is given back.
    pub fn release(&self, client: &str, now: i64) {
        self.update(client, now, |counts| {
            counts.in_flight = counts.in_flight.saturating_sub(1);
        });
    }

    /// Seconds the client must still wait, if any.
    #[cfg(test)]
    fn wait(&self, client: &str, now: i64) -> Option<u64> {
        let blocked_until = self.update(client, now, |counts| counts.blocked_until)?;
        (blocked_until > now).then(|| (blocked_until - now) as u64)
    }
}

/// Forgets clients that are not waiting, not trying and have not failed since `cutoff`; if
/// the map is still full, the stalest idle one.
fn make_room(clients: &mut HashMap<String, ClientCounts>, cutoff: i64, now: i64) {
    if clients.len() < MAX_TRACKED_CLIENTS {
        return;
    }
    clients.retain(|_, c| {
        c.in_flight > 0
            || c.probation_since.is_some()
            || c.last_failure > cutoff
            || c.blocked_until > now
    });
    if clients.len() >= MAX_TRACKED_CLIENTS {
        let stalest = clients
            .iter()
            .filter(|(_, c)| c.in_flight == 0)
            .min_by_key(|(_, c)| c.last_failure)
            .map(|(k, _)| k.clone());
        if let Some(stalest) = stalest {
            clients.remove(&stalest);
        }
    }
}

/// At most `per_minute` failed face matches in any minute across all clients, attempts in
/// flight counted, so that many addresses together gain nothing.
pub struct FailureCeiling {
    per_minute: usize,
    state: Counts<Ceiling>,
}

#[derive(Default)]
struct Ceiling {
    failures: VecDeque<i64>,
    in_flight: usize,
}

impl FailureCeiling {
    /// Counts kept in this process.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as usize,
            state: Counts::Memory(Mutex::new(Ceiling::default())),
        }
    }

    /// Counts kept in `store`, across every instance on it.
    pub fn stored(store: Arc<Store>, per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as usize,
            state: Counts::Stored(store, AtomicI64::new(0)),
        }
    }

    /// Takes a place, or answers the seconds until the oldest failure leaves the minute.
    pub fn begin(&self, now: i64) -> Result<(), u64> {
        let retry = |oldest: Option<i64>| oldest.map_or(1, |at| (at + MINUTE - now).max(1)) as u64;
        match &self.state {
            Counts::Memory(state) => {
                let mut state = lock(state);
                while state.failures.front().is_some_and(|&at| at <= now - MINUTE) {
                    state.failures.pop_front();
                }
                if state.failures.len() + state.in_flight >= self.per_minute {
                    return Err(retry(state.failures.front().copied()));
                }
                state.in_flight += 1;
                Ok(())
            }
            Counts::Stored(store, _) => {
                match store.begin_ceiling_attempt(now, now - MINUTE, self.per_minute) {
                    Ok(answer) => answer.map_err(retry),
                    Err(e) => {
                        tracing::error!("the login ceiling failed: {e}");
                        Err(1)
                    }
                }
            }
        }
    }

    /// Ends an attempt that held a place at `now`; a failure is counted for a minute.
    pub fn end(&self, now: i64, failed: bool) {
        let failed_at = failed.then_some(now);
        match &self.state {
            Counts::Memory(state) => {
                let mut state = lock(state);
                state.in_flight = state.in_flight.saturating_sub(1);
                if let Some(at) = failed_at {
                    state.failures.push_back(at);
                }
            }
            Counts::Stored(store, _) => {
                if let Err(e) = store.end_ceiling_attempt(now, failed_at) {
                    tracing::error!("the login ceiling failed: {e}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same limits with their counts in memory and in each test store.
    fn limiters(allowed: u32, base_wait: u64, max_wait: u64) -> Vec<ClientLimiter> {
        let mut limiters = vec![ClientLimiter::new(allowed, base_wait, max_wait)];
        for store in crate::store::test_stores() {
            let store = Arc::new(store);
            limiters.push(ClientLimiter::stored(store, allowed, base_wait, max_wait));
        }
        limiters
    }

    fn fail_now(limiter: &ClientLimiter, client: &str, now: i64) {
        limiter.begin(client, now).expect("admitted");
        limiter.failure(client, now);
    }

    #[test]
    fn the_wait_starts_after_the_allowed_failures_and_doubles_to_the_cap() {
        for limiter in limiters(3, 10, 35) {
            for _ in 0..2 {
                fail_now(&limiter, "a", 100);
            }
            assert_eq!(limiter.wait("a", 100), None, "two failures: no wait yet");
            fail_now(&limiter, "a", 100);
            assert_eq!(limiter.wait("a", 100), Some(10));
            assert_eq!(limiter.begin("a", 105), Err(5), "refused while waiting");
            assert!(limiter.begin("b", 100).is_ok(), "other clients go on");
            fail_now(&limiter, "a", 111);
            assert_eq!(limiter.wait("a", 111), Some(20));
            fail_now(&limiter, "a", 140);
            assert_eq!(limiter.wait("a", 140), Some(35), "capped");
            limiter.begin("a", 200).expect("after the wait");
            limiter.success("a", 200);
            assert_eq!(limiter.wait("a", 200), None, "a success resets");
        }
    }

    #[test]
    fn a_waiting_client_still_gets_a_few_live_attempts_a_minute_one_at_a_time() {
        for limiter in limiters(2, 30, 900) {
            assert_eq!(
                limiter.begin_probation("kiosk", 600),
                Err(1),
                "only while waiting"
            );
            fail_now(&limiter, "kiosk", 600);
            fail_now(&limiter, "kiosk", 600);
            assert!(limiter.begin("kiosk", 601).is_err());
            assert_eq!(limiter.begin_probation("kiosk", 601), Ok(()));
            assert_eq!(
                limiter.begin_probation("kiosk", 601),
                Err(1),
                "one at a time"
            );
            limiter.end_probation("kiosk", 602);
            for _ in 1..PROBATION_PER_MINUTE {
                assert_eq!(limiter.begin_probation("kiosk", 602), Ok(()));
                limiter.end_probation("kiosk", 602);
            }
            assert_eq!(
                limiter.begin_probation("kiosk", 602),
                Err(58),
                "the minute's are used"
            );
            assert_eq!(
                limiter.wait("kiosk", 602),
                Some(28),
                "the wait is unchanged"
            );
            assert_eq!(limiter.begin_probation("kiosk", 620), Err(40));
            assert_eq!(
                limiter.begin_probation("kiosk", 660),
                Ok(()),
                "a new minute"
            );
            limiter.end_probation("kiosk", 660);
        }
    }

    #[test]
    fn simultaneous_attempts_cannot_pass_the_limit_together() {
        for limiter in limiters(5, 30, 900) {
            let admitted = (0..16).filter(|_| limiter.begin("a", 100).is_ok()).count();
            assert_eq!(admitted, 5, "only as many at once as failures are left");
            for _ in 0..5 {
                limiter.failure("a", 100);
            }
            assert_eq!(limiter.begin("a", 100), Err(30));
            // after the wait, one at a time
            assert!(limiter.begin("a", 130).is_ok());
            assert_eq!(limiter.begin("a", 130), Err(1));
            limiter.release("a", 130);
            assert!(limiter.begin("a", 130).is_ok(), "a released place is free");
        }
    }

    #[test]
    fn the_ceiling_counts_failures_in_the_last_minute_and_places_in_flight() {
        let mut ceilings = vec![FailureCeiling::new(3)];
        for store in crate::store::test_stores() {
            ceilings.push(FailureCeiling::stored(Arc::new(store), 3));
        }
        for ceiling in ceilings {
            for at in [0, 10] {
                ceiling.begin(at).expect("room");
                ceiling.end(at, true);
            }
            ceiling.begin(20).expect("the third place");
            assert_eq!(
                ceiling.begin(20),
                Err(40),
                "full until the first failure is a minute old"
            );
            ceiling.end(20, false);
            ceiling
                .begin(21)
                .expect("a place given back without a failure");
            ceiling.end(21, true);
            assert!(ceiling.begin(59).is_err());
            assert!(
                ceiling.begin(60).is_ok(),
                "the failure at 0 has left the minute"
            );
        }
    }
}
