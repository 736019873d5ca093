//! The circuit breaker (the shim's shadow breaker), a sans-IO state machine: callers
//! pass `now`, so every transition is testable without sleeping.
//!
//! Closed → after `failure_threshold` consecutive failures → Open (reject at
//! once) → after `open_for` → HalfOpen (one probe allowed) → Closed on the
//! probe's success, Open again on its failure.

use std::time::{Duration, Instant};

/// Circuit breaker settings (defaults: 5 failures, 1 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerOptions {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before a probe.
    pub open_for: Duration,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        BreakerOptions { failure_threshold: 5, open_for: Duration::from_secs(1) }
    }
}

/// The breaker's state, as exported in metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow.
    Closed,
    /// Requests are rejected until the open period ends.
    Open,
    /// One probe is allowed through.
    HalfOpen,
}

impl BreakerState {
    /// `closed`, `open` or `half_open`.
    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    open_for: Duration,
    /// Consecutive failures while closed.
    failures: u32,
    /// When the breaker opened; `Some` exactly while open or half-open.
    opened_at: Option<Instant>,
    /// Whether the half-open probe has been let through and not yet answered.
    probe_in_flight: bool,
}

impl CircuitBreaker {
    /// A closed breaker with these settings.
    pub fn with_options(options: BreakerOptions) -> CircuitBreaker {
        CircuitBreaker::new(options.failure_threshold, options.open_for)
    }

    /// A closed breaker (the defaults are 5 failures and 1 s).
    pub fn new(failure_threshold: u32, open_for: Duration) -> CircuitBreaker {
        CircuitBreaker {
            failure_threshold: failure_threshold.max(1),
            open_for,
            failures: 0,
            opened_at: None,
            probe_in_flight: false,
        }
    }

    /// The state at `now`.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.opened_at {
            None => BreakerState::Closed,
            Some(opened) if now.duration_since(opened) < self.open_for => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go through at `now`; in half-open, only the
    /// first caller (the probe) gets `true`.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state(now) {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if self.probe_in_flight => false,
            BreakerState::HalfOpen => {
                self.probe_in_flight = true;
                true
            }
        }
    }

    /// Records a success: closes the breaker.
    pub fn on_success(&mut self) {
        self.failures = 0;
        self.opened_at = None;
        self.probe_in_flight = false;
    }

    /// Records a failure at `now`: opens the breaker at the threshold, or
    /// again when the half-open probe failed.
    pub fn on_failure(&mut self, now: Instant) {
        self.probe_in_flight = false;
        if self.opened_at.is_some() {
            self.opened_at = Some(now);
            return;
        }
        self.failures += 1;
        if self.failures >= self.failure_threshold {
            self.opened_at = Some(now);
            self.failures = 0;
        }
    }
}

/// An optional breaker guarding a client's publishes (used on shadow
/// paths): failures are failed connection attempts and refused publishes; a
/// publish let through while connected counts as a success.
#[derive(Debug)]
pub struct PublishBreaker(Option<std::sync::Mutex<CircuitBreaker>>);

impl PublishBreaker {
    /// A breaker with these settings, or none.
    pub fn new(options: Option<BreakerOptions>) -> PublishBreaker {
        PublishBreaker(options.map(|options| std::sync::Mutex::new(CircuitBreaker::with_options(options))))
    }

    fn lock(&self) -> Option<std::sync::MutexGuard<'_, CircuitBreaker>> {
        self.0.as_ref().map(|breaker| breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether a publish may go through now; a probe let through while
    /// `connected` closes the breaker.
    pub fn allows(&self, connected: bool) -> bool {
        self.lock().is_none_or(|mut breaker| {
            let allowed = breaker.allow(Instant::now());
            if allowed && connected {
                breaker.on_success();
            }
            allowed
        })
    }

    /// New settings, in force at once; the breaker starts closed under
    /// them. A breaker made without settings stays without.
    pub fn set(&self, options: BreakerOptions) {
        if let Some(mut breaker) = self.lock() {
            *breaker = CircuitBreaker::with_options(options);
        }
    }

    /// Records a failure.
    pub fn failure(&self) {
        if let Some(mut breaker) = self.lock() {
            breaker.on_failure(Instant::now());
        }
    }

    /// The state now, when there is a breaker.
    pub fn state(&self) -> Option<BreakerState> {
        self.lock().map(|breaker| breaker.state(Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_period_and_closes_on_success() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut breaker = CircuitBreaker::new(3, second);
        for _ in 0..2 {
            assert!(breaker.allow(start));
            breaker.on_failure(start);
        }
        assert_eq!(breaker.state(start), BreakerState::Closed);
        breaker.on_failure(start);
        assert_eq!(breaker.state(start), BreakerState::Open);
        assert!(!breaker.allow(start + second / 2));
        let later = start + second;
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert!(breaker.allow(later), "the probe goes through");
        assert!(!breaker.allow(later), "only one probe");
        breaker.on_failure(later);
        assert_eq!(breaker.state(later), BreakerState::Open, "a failed probe reopens");
        let much_later = later + second;
        assert!(breaker.allow(much_later));
        breaker.on_success();
        assert_eq!(breaker.state(much_later), BreakerState::Closed);
        assert!(breaker.allow(much_later) && breaker.allow(much_later));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let now = Instant::now();
        let mut breaker = CircuitBreaker::new(2, Duration::from_secs(1));
        breaker.on_failure(now);
        breaker.on_success();
        breaker.on_failure(now);
        assert_eq!(breaker.state(now), BreakerState::Closed);
    }
}
