//! Time as an input: the web layer, the login decision and the lift read the time through a
//! `Clock`, so tests can move it instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

pub trait Clock: Send + Sync {
    /// Unix time in seconds: signatures, sessions, the audit log.
    fn now(&self) -> i64;
    /// Unix time in milliseconds: leases and times shared between instances.
    fn now_millis(&self) -> i64 {
        self.now().saturating_mul(1000)
    }
    /// A point on a clock that never goes back: timeouts.
    fn monotonic(&self) -> Instant;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn now_millis(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn monotonic(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to. Clones share it.
#[derive(Clone)]
pub struct ManualClock(Arc<Manual>);

struct Manual {
    unix_start: i64,
    start: Instant,
    elapsed_ms: AtomicI64,
}

impl ManualClock {
    pub fn starting_at(now: i64) -> Self {
        Self(Arc::new(Manual {
            unix_start: now,
            start: Instant::now(),
            elapsed_ms: AtomicI64::new(0),
        }))
    }

    pub fn advance(&self, seconds: i64) {
        self.advance_millis(seconds.saturating_mul(1000));
    }

    pub fn advance_millis(&self, millis: i64) {
        self.0.elapsed_ms.fetch_add(millis, Ordering::SeqCst);
    }

    fn elapsed_ms(&self) -> i64 {
        self.0.elapsed_ms.load(Ordering::SeqCst)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.unix_start + self.elapsed_ms().div_euclid(1000)
    }

    fn now_millis(&self) -> i64 {
        self.0.unix_start * 1000 + self.elapsed_ms()
    }

    /// Moves forward only: a step back would be a bug in the test that made it.
    fn monotonic(&self) -> Instant {
        let elapsed = u64::try_from(self.elapsed_ms()).unwrap_or(0);
        self.0.start + Duration::from_millis(elapsed)
    }
}
