//! Reconnect backoff: exponential with full jitter (`docs/broker-protocol.md`, the client),
//! `delay = random(0, min(max, base × 2^attempt))`.
//!
//! [`delay`] is pure — the random draw is an argument — so the schedule has a
//! table test; [`Backoff`] adds the random source and the attempt counter.

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (0 for the first retry),
/// given a uniform draw `unit` in `[0, 1)`.
pub fn delay(attempt: u32, base: Duration, max: Duration, unit: f64) -> Duration {
    let ceiling = base.checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX)).unwrap_or(max).min(max);
    ceiling.mul_f64(unit.clamp(0.0, 1.0))
}

/// A reconnect schedule: call [`Backoff::next_delay`] after each failure and
/// [`Backoff::reset`] once a connection has stayed up long enough.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Consecutive failures since the last reset.
    attempt: u32,
}

impl Backoff {
    /// A schedule with these bounds (the spec's defaults are 100 ms and 30 s).
    pub fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max, attempt: 0 }
    }

    /// The delay before the next attempt, drawn at random; counts a failure.
    pub fn next_delay(&mut self) -> Duration {
        let delay = delay(self.attempt, self.base, self.max, rand::random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Consecutive failures so far.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forgets past failures.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_follow_the_full_jitter_table() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(30);
        let check = |attempt: u32, unit: f64, expect_ms: u64| {
            assert_eq!(
                delay(attempt, base, max, unit),
                Duration::from_millis(expect_ms),
                "attempt {attempt}, unit {unit}"
            );
        };
        check(0, 0.0, 0);
        check(0, 0.5, 50);
        check(0, 1.0, 100);
        check(1, 1.0, 200);
        check(3, 0.5, 400);
        check(8, 1.0, 25_600);
        check(9, 1.0, 30_000);
        check(9, 0.25, 7_500);
        check(40, 1.0, 30_000);
        check(u32::MAX, 0.5, 15_000);
    }

    #[test]
    fn the_schedule_grows_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(50));
        for _ in 0..10 {
            assert!(backoff.next_delay() <= Duration::from_millis(50));
        }
        assert_eq!(backoff.attempts(), 10);
        backoff.reset();
        assert_eq!(backoff.attempts(), 0);
        assert!(backoff.next_delay() <= Duration::from_millis(10));
    }
}
