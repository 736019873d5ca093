//! Subscriber flow: whether a server should still hold the writers that feed
//! one reader back, sans-IO (callers pass `now` and what they observed).
//!
//! A copy queued for a reader "counts as done" for its writers once it is
//! written — or once waiting for it would let one reader slow everyone: the
//! reader was closed, its copy was dropped by the slow-consumer policy, or
//! its socket write has been blocked past the hold time with a backlog
//! behind it (or past the write deadline under a dropping policy). Every
//! such rule is a function of the recorded events and `now`, so the answer
//! never depends on which task's timer fired first.
//!
//! A reader counts as one slow-consumer event however many rules it
//! breaks: the transitions into [`FlowState::Closed`] and into a stall are
//! each reported once, as a [`Verdict`] the caller acts on.
//!
//! The relay asks the same machine a simpler question: a producer that
//! finds a consumer over its queue bound waits for it while the consumer's
//! [`HoldBudget`] lasts ([`SubscriberFlow::hold_for`], [`SubscriberFlow::held`]);
//! a consumer that exhausts it is [`FlowState::Lagging`] and gets the queue
//! policy at once ([`SubscriberFlow::holds_feeders`] is false) until it has
//! caught up ([`SubscriberFlow::caught_up`]).
//!
//! It deliberately does no I/O and keeps no clock: the writer task reports
//! writes, publishers report the limit, and anyone may ask.

use std::time::{Duration, Instant};

use crate::HoldBudget;

/// What happens to a reader over its limit or stuck past the deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// Close it.
    Disconnect,
    /// Drop what does not fit and keep it.
    DropNew,
    /// Drop the oldest queued copies to make room and keep it. Which copies
    /// go is the caller's business: the flow marks no position done for it.
    DropOldest,
}

/// The rules of one reader's flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowRules {
    /// With a hold budget ([`SubscriberFlow::with_hold_budget`]): its
    /// capacity, the longest a feeder waits at once. Otherwise: a write
    /// blocked this long (with [`FlowRules::hold_backlog`] queued
    /// behind it) stops holding writers; deliveries this long from queued
    /// to written make the reader lagging.
    pub hold: Duration,
    /// The backlog that, behind a blocked write, stops holding writers; and
    /// under which a lagging reader has caught up.
    pub hold_backlog: usize,
    /// A write blocked this long makes the reader a slow consumer.
    pub write_deadline: Duration,
    /// What the slow-consumer policy does.
    pub policy: SlowPolicy,
}

/// Where one reader stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowState {
    /// Its deliveries are written within the hold time.
    KeepingUp,
    /// Deliveries took the hold time or more from queued to written: it
    /// reads, slower than it is fed. Cleared once they are quick again with
    /// less than the hold backlog queued.
    Lagging,
    /// Closed (slow consumer, shutdown, gone): nothing more is written, and
    /// every copy counts as done.
    Closed,
}

/// What the caller must do after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing.
    Nothing,
    /// The reader just became lagging (count it).
    Lagging,
    /// Drop what did not fit (count it); the reader stays.
    Drop,
    /// A write is stuck past the deadline under a dropping policy: count one
    /// slow-consumer event; the reader stays.
    Stalled,
    /// Count one slow-consumer event and close the reader.
    Disconnect,
    /// Stop the stuck write: the reader is closed already and its write is
    /// past the deadline (nothing more to count).
    Abandon,
}

/// One reader's flow: the events its writer and its feeders reported.
#[derive(Debug, Clone)]
pub struct SubscriberFlow {
    rules: FlowRules,
    state: FlowState,
    /// Positions written to the socket so far (queue positions are 1-based
    /// and written in order).
    written: u64,
    /// When the write in progress started; `None` while no write is under way.
    writing_since: Option<Instant>,
    /// Positions up to this one were dropped by the policy: done although
    /// never written. Only grows.
    abandoned_upto: u64,
    /// Whether the current stuck write has been reported as a stall.
    stall_reported: bool,
    /// How much longer feeders may wait for this reader, for a flow whose
    /// feeders wait (the relay's); `None` for one whose feeders never do.
    budget: Option<HoldBudget>,
}

impl SubscriberFlow {
    /// A reader keeping up, nothing written yet.
    #[must_use]
    pub fn new(rules: FlowRules) -> SubscriberFlow {
        SubscriberFlow {
            rules,
            state: FlowState::KeepingUp,
            written: 0,
            writing_since: None,
            abandoned_upto: 0,
            stall_reported: false,
            budget: None,
        }
    }

    /// A reader keeping up whose feeders wait for it when it is over its
    /// limit, while a [`HoldBudget`] of `rules.hold` (full at `now`) lasts.
    #[must_use]
    pub fn with_hold_budget(rules: FlowRules, now: Instant) -> SubscriberFlow {
        SubscriberFlow { budget: Some(HoldBudget::new(rules.hold, now)), ..SubscriberFlow::new(rules) }
    }

    /// Its rules.
    pub fn rules(&self) -> &FlowRules {
        &self.rules
    }

    /// Where it stands.
    pub fn state(&self) -> FlowState {
        self.state
    }

    /// Whether it is closed.
    pub fn is_closed(&self) -> bool {
        self.state == FlowState::Closed
    }

    /// Whether it reads slower than it is fed at `now` (lagging, or a write
    /// blocked for the hold time).
    pub fn is_lagging(&self, now: Instant) -> bool {
        self.state == FlowState::Lagging || self.blocked_for(now).is_some_and(|blocked| blocked >= self.rules.hold)
    }

    /// Whether the copy queued at `position` counts as done for its writers
    /// at `now`, with `queued_bytes` still queued.
    pub fn counts_as_done(&self, position: u64, queued_bytes: usize, now: Instant) -> bool {
        if self.state == FlowState::Closed || self.written >= position || self.abandoned_upto >= position {
            return true;
        }
        match self.blocked_for(now) {
            Some(blocked) => {
                (blocked >= self.rules.hold && queued_bytes >= self.rules.hold_backlog)
                    || (blocked >= self.rules.write_deadline && self.rules.policy != SlowPolicy::Disconnect)
            }
            None => false,
        }
    }

    fn blocked_for(&self, now: Instant) -> Option<Duration> {
        self.writing_since.map(|since| now.saturating_duration_since(since))
    }

    /// The writer starts a write at `now`.
    pub fn write_started(&mut self, now: Instant) {
        self.writing_since = Some(now);
    }

    /// The write in progress completed.
    pub fn write_completed(&mut self) {
        self.writing_since = None;
        self.stall_reported = false;
    }

    /// The writer wrote a batch of `items` positions at `now`; the oldest
    /// was queued at `oldest_queued`, and `queued_bytes` remain queued.
    pub fn batch_written(
        &mut self,
        items: u64,
        oldest_queued: Option<Instant>,
        queued_bytes: usize,
        now: Instant,
    ) -> Verdict {
        self.written += items;
        if self.state == FlowState::Closed {
            return Verdict::Nothing;
        }
        if oldest_queued.is_some_and(|at| now.saturating_duration_since(at) >= self.rules.hold) {
            return self.become_lagging();
        }
        if queued_bytes < self.rules.hold_backlog {
            self.caught_up();
        }
        Verdict::Nothing
    }

    /// The reader has caught up (the caller judged so by its own queue, for
    /// a flow it does not report writes to): a lagging reader keeps up again.
    pub fn caught_up(&mut self) {
        if self.state == FlowState::Lagging {
            self.state = FlowState::KeepingUp;
        }
    }

    /// Whether a feeder that finds the reader over its limit should wait for
    /// it ([`SubscriberFlow::hold_for`]) rather than have the policy apply
    /// at once: it keeps up.
    pub fn holds_feeders(&self) -> bool {
        self.state == FlowState::KeepingUp
    }

    /// How long a feeder may wait at `now` for the reader to drain below its
    /// limit: what is left of its hold budget (the hold time for a flow
    /// without one); nothing once closed.
    pub fn hold_for(&mut self, now: Instant) -> Duration {
        if self.state == FlowState::Closed {
            return Duration::ZERO;
        }
        self.budget.as_mut().map_or(self.rules.hold, |budget| budget.available(now))
    }

    /// A feeder waited `held` for the reader, which `drained` below its
    /// limit or not. The wait is spent from the budget; a reader that did
    /// not drain stops holding its feeders: the caller applies the policy
    /// ([`SubscriberFlow::over_limit`]). Returns [`Verdict::Lagging`] when
    /// it just became so.
    pub fn held(&mut self, held: Duration, drained: bool) -> Verdict {
        if let Some(budget) = self.budget.as_mut() {
            budget.spend(held);
        }
        if drained || self.state == FlowState::Closed {
            return Verdict::Nothing;
        }
        self.become_lagging()
    }

    /// The writer's write, started earlier, is still blocked at `now`.
    pub fn write_blocked(&mut self, now: Instant) -> Verdict {
        let Some(blocked) = self.blocked_for(now) else {
            return Verdict::Nothing;
        };
        if self.state == FlowState::Closed {
            return if blocked >= self.rules.write_deadline { Verdict::Abandon } else { Verdict::Nothing };
        }
        if blocked >= self.rules.write_deadline {
            return match self.rules.policy {
                SlowPolicy::Disconnect => {
                    self.state = FlowState::Closed;
                    Verdict::Disconnect
                }
                SlowPolicy::DropNew | SlowPolicy::DropOldest if !self.stall_reported => {
                    self.stall_reported = true;
                    Verdict::Stalled
                }
                SlowPolicy::DropNew | SlowPolicy::DropOldest => Verdict::Nothing,
            };
        }
        if blocked >= self.rules.hold {
            return self.become_lagging();
        }
        Verdict::Nothing
    }

    fn become_lagging(&mut self) -> Verdict {
        if self.state == FlowState::Lagging {
            return Verdict::Nothing;
        }
        self.state = FlowState::Lagging;
        Verdict::Lagging
    }

    /// A feeder would take the queue over its limit; `queued_upto` is the
    /// last position queued so far.
    pub fn over_limit(&mut self, queued_upto: u64) -> Verdict {
        if self.state == FlowState::Closed {
            return Verdict::Nothing;
        }
        match self.rules.policy {
            SlowPolicy::DropNew => {
                self.abandoned_upto = self.abandoned_upto.max(queued_upto);
                Verdict::Drop
            }
            SlowPolicy::DropOldest => Verdict::Drop,
            SlowPolicy::Disconnect => {
                self.state = FlowState::Closed;
                Verdict::Disconnect
            }
        }
    }

    /// Closes it for a reason of the caller's (shutdown, a protocol error,
    /// the peer gone); returns whether it was open.
    pub fn close(&mut self) -> bool {
        let was_open = self.state != FlowState::Closed;
        self.state = FlowState::Closed;
        was_open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn rules(policy: SlowPolicy) -> FlowRules {
        FlowRules { hold: 100 * MS, hold_backlog: 1000, write_deadline: 2000 * MS, policy }
    }

    /// One row: a flow after `events`, asked at `at_ms` about `position`
    /// with `queued` bytes queued.
    fn check(policy: SlowPolicy, events: &[(u64, Event)], position: u64, queued: usize, at_ms: u64, expect: bool) {
        let start = Instant::now();
        let mut flow = SubscriberFlow::new(rules(policy));
        for &(ms, event) in events {
            let now = start + Duration::from_millis(ms);
            match event {
                Event::Start => flow.write_started(now),
                Event::Finish(items) => {
                    flow.write_completed();
                    flow.batch_written(items, Some(now), 0, now);
                }
                Event::Blocked => {
                    flow.write_blocked(now);
                }
                Event::OverLimit(upto) => {
                    flow.over_limit(upto);
                }
                Event::Close => {
                    flow.close();
                }
            }
        }
        assert_eq!(
            flow.counts_as_done(position, queued, start + Duration::from_millis(at_ms)),
            expect,
            "{policy:?} {events:?}: position {position}, {queued} queued, at {at_ms} ms"
        );
    }

    #[derive(Debug, Clone, Copy)]
    enum Event {
        Start,
        Finish(u64),
        Blocked,
        OverLimit(u64),
        Close,
    }

    #[test]
    fn a_copy_counts_as_done_once_written_dropped_or_closed() {
        use Event::*;
        use SlowPolicy::*;
        check(Disconnect, &[], 1, 0, 0, false);
        check(Disconnect, &[(0, Start), (1, Finish(3))], 3, 0, 1, true);
        check(Disconnect, &[(0, Start), (1, Finish(3))], 4, 0, 1, false);
        check(DropNew, &[(0, OverLimit(7))], 7, 0, 0, true);
        check(DropNew, &[(0, OverLimit(7))], 8, 0, 0, false);
        check(Disconnect, &[(0, Close)], 99, 0, 0, true);
        check(Disconnect, &[(0, OverLimit(1))], 99, 0, 0, true);
        // A write stuck past the deadline closes it under disconnect.
        check(Disconnect, &[(0, Start), (1999, Blocked)], 99, 0, 1999, false);
        check(Disconnect, &[(0, Start), (2000, Blocked)], 99, 0, 2000, true);
    }

    #[test]
    fn a_blocked_write_stops_holding_writers_only_with_a_backlog_behind_it() {
        use Event::*;
        use SlowPolicy::*;
        // Blocked under the hold time: still held.
        check(Disconnect, &[(0, Start)], 1, 5000, 99, false);
        // Past the hold time with a backlog: released, with no timer involved.
        check(Disconnect, &[(0, Start)], 1, 5000, 100, true);
        // Past the hold time with little queued: still held.
        check(Disconnect, &[(0, Start)], 1, 10, 1500, false);
        // Past the write deadline: released under drop_new whatever is queued.
        check(DropNew, &[(0, Start)], 1, 10, 2000, true);
        check(Disconnect, &[(0, Start)], 1, 10, 2000, false);
        // The write completed: held again for what comes next.
        check(DropNew, &[(0, Start), (2500, Finish(1))], 2, 5000, 2500, false);
    }

    #[test]
    fn a_reader_is_one_slow_consumer_however_many_rules_it_breaks() {
        let start = Instant::now();
        let mut flow = SubscriberFlow::new(rules(SlowPolicy::Disconnect));
        flow.write_started(start);
        assert_eq!(flow.write_blocked(start + 100 * MS), Verdict::Lagging);
        assert_eq!(flow.write_blocked(start + 150 * MS), Verdict::Nothing, "lagging is reported once");
        assert_eq!(flow.over_limit(10), Verdict::Disconnect);
        // The stuck write reaching its deadline afterwards is not a second
        // event: it is only given up.
        assert_eq!(flow.write_blocked(start + 1999 * MS), Verdict::Nothing);
        assert_eq!(flow.write_blocked(start + 2000 * MS), Verdict::Abandon);
        assert_eq!(flow.over_limit(11), Verdict::Nothing);
        assert!(!flow.close(), "already closed");

        let mut flow = SubscriberFlow::new(rules(SlowPolicy::DropNew));
        flow.write_started(start);
        assert_eq!(flow.write_blocked(start + 2000 * MS), Verdict::Stalled);
        assert_eq!(flow.write_blocked(start + 4000 * MS), Verdict::Nothing, "one stall per stuck write");
        assert_eq!(flow.over_limit(5), Verdict::Drop);
        flow.write_completed();
        flow.batch_written(1, Some(start), 0, start + 4100 * MS);
        flow.write_started(start + 4200 * MS);
        assert_eq!(flow.write_blocked(start + 6200 * MS), Verdict::Stalled, "a new stuck write is a new stall");
    }

    #[test]
    fn a_lagging_reader_catches_up_once_quick_with_little_queued() {
        let start = Instant::now();
        let mut flow = SubscriberFlow::new(rules(SlowPolicy::Disconnect));
        flow.write_started(start);
        flow.write_completed();
        assert_eq!(flow.batch_written(1, Some(start), 5000, start + 150 * MS), Verdict::Lagging);
        assert!(flow.is_lagging(start + 150 * MS));
        // Quick, but a backlog remains: still lagging.
        flow.write_started(start + 200 * MS);
        flow.write_completed();
        assert_eq!(flow.batch_written(1, Some(start + 190 * MS), 5000, start + 200 * MS), Verdict::Nothing);
        assert_eq!(flow.state(), FlowState::Lagging);
        // Quick and little queued: caught up.
        flow.write_started(start + 300 * MS);
        flow.write_completed();
        flow.batch_written(1, Some(start + 290 * MS), 10, start + 300 * MS);
        assert_eq!(flow.state(), FlowState::KeepingUp);
        assert!(!flow.is_lagging(start + 300 * MS));
        // A write blocked for the hold time reads as lagging before it ends.
        flow.write_started(start + 400 * MS);
        assert!(!flow.is_lagging(start + 499 * MS));
        assert!(flow.is_lagging(start + 500 * MS));
    }

    /// The relay's rules: a 50 ms budget, no write deadline.
    fn relay_rules(policy: SlowPolicy) -> FlowRules {
        FlowRules { hold: 50 * MS, hold_backlog: usize::MAX, write_deadline: Duration::MAX, policy }
    }

    #[test]
    fn feeders_wait_for_a_reader_over_its_limit_while_its_budget_lasts() {
        let start = Instant::now();
        let mut flow = SubscriberFlow::with_hold_budget(relay_rules(SlowPolicy::DropOldest), start);
        assert!(flow.holds_feeders());
        assert_eq!(flow.hold_for(start), 50 * MS);
        // Drained after 20 ms: still held, 30 ms left.
        assert_eq!(flow.held(20 * MS, true), Verdict::Nothing);
        assert!(flow.holds_feeders());
        assert_eq!(flow.hold_for(start + 20 * MS), 40 * MS, "refilled at half the time that passed");
        // Not drained within what was left: lagging, reported once.
        assert_eq!(flow.held(40 * MS, false), Verdict::Lagging);
        assert_eq!(flow.held(Duration::ZERO, false), Verdict::Nothing);
        assert!(!flow.holds_feeders(), "the policy applies at once");
        assert_eq!(flow.state(), FlowState::Lagging);
        assert_eq!(flow.over_limit(9), Verdict::Drop);
        assert!(!flow.counts_as_done(1, 0, start), "drop_oldest marks no position done");
        // Caught up: held again, with the budget it earned meanwhile.
        flow.caught_up();
        assert!(flow.holds_feeders());
        assert_eq!(flow.hold_for(start + 100 * MS), 40 * MS);
    }

    #[test]
    fn a_reader_that_never_reads_holds_its_feeders_half_the_time_at_most() {
        // A feeder that finds it over its limit every millisecond, waits
        // what the budget allows, and the reader catches up in between.
        let start = Instant::now();
        let mut flow = SubscriberFlow::with_hold_budget(relay_rules(SlowPolicy::DropOldest), start);
        let mut now = start;
        let mut held = Duration::ZERO;
        while now < start + 10_000 * MS {
            let allowed = flow.hold_for(now).min(MS);
            flow.held(allowed, false);
            flow.caught_up();
            held += allowed;
            now += MS;
        }
        assert!(held >= 5_000 * MS && held <= 5_050 * MS, "{held:?}");
    }

    #[test]
    fn a_disconnected_or_closed_reader_holds_no_one() {
        let start = Instant::now();
        let mut flow = SubscriberFlow::with_hold_budget(relay_rules(SlowPolicy::Disconnect), start);
        assert_eq!(flow.held(50 * MS, false), Verdict::Lagging);
        assert_eq!(flow.over_limit(0), Verdict::Disconnect);
        assert!(flow.is_closed());
        assert_eq!(flow.hold_for(start + 10_000 * MS), Duration::ZERO);
        assert!(!flow.holds_feeders());
        flow.caught_up();
        assert!(flow.is_closed(), "a closed reader never comes back");
        assert_eq!(flow.held(MS, false), Verdict::Nothing);

        let mut flow = SubscriberFlow::with_hold_budget(relay_rules(SlowPolicy::DropOldest), start);
        assert!(flow.close());
        assert_eq!(flow.hold_for(start), Duration::ZERO);
        assert_eq!(flow.over_limit(0), Verdict::Nothing);
    }
}
