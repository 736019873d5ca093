//! The hold budget: how long a server may still let one slow reader hold
//! back the writers that feed it, sans-IO (callers pass `now`).
//!
//! A reader that is briefly behind (descheduled on a shared CPU) or nearly
//! keeps up should be waited for, so nothing is lost; one that does not read,
//! or reads far slower than it is fed, must not slow anyone (relay and broker
//! specs: slow consumers never slow producers). The budget tells them apart
//! by the share of time a reader holds its writers back: at most `capacity`
//! at once, refilled at a fixed share of the time that passes. It is a part
//! of [`crate::SubscriberFlow`] (built `with_hold_budget`): the relay's
//! consumers spend it while a producer waits for their queue to drain.

use std::time::{Duration, Instant};

/// The share of time a reader may hold its writers back over the long run:
/// one in [`HoldBudget::SHARE`].
#[derive(Debug, Clone)]
pub struct HoldBudget {
    available: Duration,
    capacity: Duration,
    refilled_at: Instant,
}

impl HoldBudget {
    /// The budget refills at 1/SHARE of the time that passes: a reader may
    /// hold its writers back half the time.
    pub const SHARE: u32 = 2;

    /// A full budget of `capacity`.
    #[must_use]
    pub fn new(capacity: Duration, now: Instant) -> HoldBudget {
        HoldBudget { available: capacity, capacity, refilled_at: now }
    }

    /// What may be spent at `now`.
    pub fn available(&mut self, now: Instant) -> Duration {
        let earned = now.saturating_duration_since(self.refilled_at) / Self::SHARE;
        self.available = (self.available + earned).min(self.capacity);
        self.refilled_at = self.refilled_at.max(now);
        self.available
    }

    /// Records `held` of holding (more than is available empties it).
    pub fn spend(&mut self, held: Duration) {
        self.available = self.available.saturating_sub(held);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn starts_full_and_never_exceeds_its_capacity() {
        let start = Instant::now();
        let mut budget = HoldBudget::new(50 * MS, start);
        assert_eq!(budget.available(start), 50 * MS);
        assert_eq!(budget.available(start + 10_000 * MS), 50 * MS);
    }

    #[test]
    fn refills_at_half_the_time_that_passes() {
        let start = Instant::now();
        let mut budget = HoldBudget::new(50 * MS, start);
        budget.spend(50 * MS);
        assert_eq!(budget.available(start), Duration::ZERO);
        assert_eq!(budget.available(start + 20 * MS), 10 * MS);
        budget.spend(4 * MS);
        assert_eq!(budget.available(start + 30 * MS), 11 * MS);
    }

    #[test]
    fn a_reader_that_always_holds_gets_half_the_time() {
        // Held all the time it is allowed: over 10 s it holds 50 ms (the
        // capacity) plus half of the rest.
        let start = Instant::now();
        let mut budget = HoldBudget::new(50 * MS, start);
        let mut now = start;
        let mut held = Duration::ZERO;
        while now < start + 10_000 * MS {
            let allowed = budget.available(now).min(MS);
            budget.spend(allowed);
            held += allowed;
            now += MS;
        }
        assert!(held >= 5_000 * MS && held <= 5_050 * MS, "{held:?}");
    }

    #[test]
    fn overspending_empties_it_and_time_going_backwards_earns_nothing() {
        let start = Instant::now();
        let mut budget = HoldBudget::new(50 * MS, start + 10 * MS);
        budget.spend(Duration::from_secs(3));
        assert_eq!(budget.available(start), Duration::ZERO);
        assert_eq!(budget.available(start + 10 * MS), Duration::ZERO);
    }
}
