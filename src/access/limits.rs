//! Attempt limits that an attacker cannot multiply (NIST SP 800-63B-4), kept in memory:
//! per client (an address, or a browser trusted after a success there) and a ceiling on failed
//! matches across all clients. Each is checked and counted in one step: an attempt holds its
//! place from before the engine runs until it is decided, so simultaneous tries cannot all
//! slip under a limit. The per-person limits are in the store (`Store::person_failed`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// The most clients tracked at once; beyond it the stalest idle ones are forgotten first.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// The ceiling's window.
const MINUTE: i64 = 60;

/// Failed logins per client: after `allowed` failures in a row the client waits, and each
/// further failure doubles the wait up to `max_wait`; a success forgets the client. Attempts in
/// flight count as possible failures.
pub struct ClientLimiter {
    allowed: u32,
    base_wait: i64,
    max_wait: i64,
    clients: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy, Default)]
struct Failures {
    count: u32,
    in_flight: u32,
    blocked_until: i64,
    last: i64,
    /// live attempts decided while waiting: the minute they count in, how many, one at a time
    probation_minute: i64,
    probation_used: u32,
    probation_in_flight: bool,
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
    pub fn new(allowed: u32, base_wait: u64, max_wait: u64) -> Self {
        Self {
            allowed: allowed.max(1),
            base_wait: base_wait as i64,
            max_wait: max_wait.max(base_wait) as i64,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a place for an attempt by `client`, or answers the seconds it must wait. Before
    /// the limit, as many attempts as failures are left may run at once; after a wait, one.
    pub fn begin(&self, client: &str, now: i64) -> Result<(), u64> {
        let mut clients = lock(&self.clients);
        if !clients.contains_key(client) {
            make_room(&mut clients, now - self.max_wait, now);
        }
        let failures = clients.entry(client.to_string()).or_default();
        if failures.blocked_until > now {
            return Err((failures.blocked_until - now) as u64);
        }
        let admitted = if failures.count < self.allowed {
            failures.count + failures.in_flight < self.allowed
        } else {
            failures.in_flight == 0
        };
        if !admitted {
            // the attempts in flight decide whether a wait follows
            return Err(1);
        }
        failures.in_flight += 1;
        Ok(())
    }

    /// A place for a live attempt (a challenge burst) by a client that must wait: one at a
    /// time, `PROBATION_PER_MINUTE` a minute; else the seconds to wait. Its end, whatever the
    /// outcome, is `end_probation`: it neither adds to nor clears the client's failures.
    pub fn begin_probation(&self, client: &str, now: i64) -> Result<(), u64> {
        let mut clients = lock(&self.clients);
        let Some(failures) = clients.get_mut(client) else {
            return Err(1);
        };
        let minute = now.div_euclid(MINUTE);
        if failures.probation_minute != minute {
            failures.probation_minute = minute;
            failures.probation_used = 0;
        }
        if failures.probation_in_flight {
            return Err(1);
        }
        if failures.probation_used >= PROBATION_PER_MINUTE {
            return Err((MINUTE - now.rem_euclid(MINUTE)) as u64);
        }
        failures.probation_used += 1;
        failures.probation_in_flight = true;
        Ok(())
    }

    pub fn end_probation(&self, client: &str) {
        if let Some(failures) = lock(&self.clients).get_mut(client) {
            failures.probation_in_flight = false;
        }
    }

    /// The attempt failed: counted, and the wait starts or doubles.
    pub fn failure(&self, client: &str, now: i64) {
        let mut clients = lock(&self.clients);
        let failures = clients.entry(client.to_string()).or_default();
        failures.in_flight = failures.in_flight.saturating_sub(1);
        failures.count += 1;
        failures.last = now;
        if failures.count >= self.allowed {
            let doublings = (failures.count - self.allowed).min(30);
            let wait = self
                .base_wait
                .saturating_mul(1 << doublings)
                .min(self.max_wait);
            failures.blocked_until = now + wait;
        }
    }

    /// The attempt succeeded: the client's failures are forgotten.
    pub fn success(&self, client: &str) {
        let mut clients = lock(&self.clients);
        if let Some(failures) = clients.get_mut(client) {
            failures.in_flight = failures.in_flight.saturating_sub(1);
            failures.count = 0;
            failures.blocked_until = 0;
        }
        forget_if_idle(&mut clients, client);
    }

    /// The attempt ended undecided (a bad image, a busy engine): its place is given back.
    pub fn release(&self, client: &str) {
        let mut clients = lock(&self.clients);
        if let Some(failures) = clients.get_mut(client) {
            failures.in_flight = failures.in_flight.saturating_sub(1);
        }
        forget_if_idle(&mut clients, client);
    }

    /// Seconds the client must still wait, if any.
    #[cfg(test)]
    fn wait(&self, client: &str, now: i64) -> Option<u64> {
        let clients = lock(&self.clients);
        let failures = clients.get(client)?;
        (failures.blocked_until > now).then(|| (failures.blocked_until - now) as u64)
    }
}

fn forget_if_idle(clients: &mut HashMap<String, Failures>, client: &str) {
    if clients
        .get(client)
        .is_some_and(|f| f.count == 0 && f.in_flight == 0 && !f.probation_in_flight)
    {
        clients.remove(client);
    }
}

/// Forgets clients that are not waiting, not trying and have not failed since `cutoff`; if
/// the map is still full, the stalest idle one.
fn make_room(clients: &mut HashMap<String, Failures>, cutoff: i64, now: i64) {
    if clients.len() < MAX_TRACKED_CLIENTS {
        return;
    }
    clients.retain(|_, f| {
        f.in_flight > 0 || f.probation_in_flight || f.last > cutoff || f.blocked_until > now
    });
    if clients.len() >= MAX_TRACKED_CLIENTS {
        let stalest = clients
            .iter()
            .filter(|(_, f)| f.in_flight == 0)
            .min_by_key(|(_, f)| f.last)
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
    state: Mutex<Ceiling>,
}

#[derive(Default)]
struct Ceiling {
    failures: VecDeque<i64>,
    in_flight: usize,
}

impl FailureCeiling {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1) as usize,
            state: Mutex::new(Ceiling::default()),
        }
    }

    /// Takes a place, or answers the seconds until the oldest failure leaves the minute.
    pub fn begin(&self, now: i64) -> Result<(), u64> {
        let mut state = lock(&self.state);
        while state.failures.front().is_some_and(|&at| at <= now - MINUTE) {
            state.failures.pop_front();
        }
        if state.failures.len() + state.in_flight >= self.per_minute {
            let retry = state
                .failures
                .front()
                .map_or(1, |&oldest| (oldest + MINUTE - now).max(1));
            return Err(retry as u64);
        }
        state.in_flight += 1;
        Ok(())
    }

    /// Ends an attempt that held a place; a failure is counted for a minute.
    pub fn end(&self, failed_at: Option<i64>) {
        let mut state = lock(&self.state);
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(at) = failed_at {
            state.failures.push_back(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fail_now(limiter: &ClientLimiter, client: &str, now: i64) {
        limiter.begin(client, now).expect("admitted");
        limiter.failure(client, now);
    }

    #[test]
    fn the_wait_starts_after_the_allowed_failures_and_doubles_to_the_cap() {
        let limiter = ClientLimiter::new(3, 10, 35);
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
        limiter.success("a");
        assert_eq!(limiter.wait("a", 200), None, "a success resets");
    }

    #[test]
    fn a_waiting_client_still_gets_a_few_live_attempts_a_minute_one_at_a_time() {
        let limiter = ClientLimiter::new(2, 30, 900);
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
        limiter.end_probation("kiosk");
        for _ in 1..PROBATION_PER_MINUTE {
            assert_eq!(limiter.begin_probation("kiosk", 602), Ok(()));
            limiter.end_probation("kiosk");
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
        limiter.end_probation("kiosk");
    }

    #[test]
    fn simultaneous_attempts_cannot_pass_the_limit_together() {
        let limiter = ClientLimiter::new(5, 30, 900);
        let admitted = (0..16).filter(|_| limiter.begin("a", 100).is_ok()).count();
        assert_eq!(admitted, 5, "only as many at once as failures are left");
        for _ in 0..5 {
            limiter.failure("a", 100);
        }
        assert_eq!(limiter.begin("a", 100), Err(30));
        // after the wait, one at a time
        assert!(limiter.begin("a", 130).is_ok());
        assert_eq!(limiter.begin("a", 130), Err(1));
        limiter.release("a");
        assert!(limiter.begin("a", 130).is_ok(), "a released place is free");
    }

    #[test]
    fn the_ceiling_counts_failures_in_the_last_minute_and_places_in_flight() {
        let ceiling = FailureCeiling::new(3);
        for at in [0, 10] {
            ceiling.begin(at).expect("room");
            ceiling.end(Some(at));
        }
        ceiling.begin(20).expect("the third place");
        assert_eq!(
            ceiling.begin(20),
            Err(40),
            "full until the first failure is a minute old"
        );
        ceiling.end(None);
        ceiling
            .begin(21)
            .expect("a place given back without a failure");
        ceiling.end(Some(21));
        assert!(ceiling.begin(59).is_err());
        assert!(
            ceiling.begin(60).is_ok(),
            "the failure at 0 has left the minute"
        );
    }
}
