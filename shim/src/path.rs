//! One path (relay or broker) as the shim drives it: its publisher, its
//! counters, and the guard of its shadow role — a bound on the bytes the
//! shadow may keep queued, and a circuit breaker — so that a shadow never
//! blocks, slows or fails the primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use myc_transport::{BreakerOptions, BreakerState, PublishBreaker};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use crate::primary::{PrimaryGuard, PrimaryOptions};
#[cfg(all(feature = "relay", feature = "broker"))]
use crate::publisher::{Messages, RunOutcome};
use crate::{Error, Publisher};

/// Polls a future once; it must be ready (the guard's publish without
/// waiting never suspends).
fn now_or_never<T>(future: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let mut future = std::pin::pin!(future);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(result) => result,
        std::task::Poll::Pending => Err(Error::Settings("a publish without waiting had to wait".to_owned())),
    }
}

/// A path's counters, as Prometheus metrics (cheap atomics underneath).
#[derive(Debug, Default)]
pub struct PathCounters {
    /// Messages the path accepted.
    pub published: Counter,
    /// Primary publishes refused (the producer saw the error).
    pub failed: Counter,
    /// Shadow publishes dropped: queue over its bound, breaker open, or
    /// refused by the path.
    pub shadow_dropped: Counter,
    /// The shadow breaker: 0 closed, 1 open, 2 half-open.
    pub breaker: Gauge,
    /// Connections after the first (copied from the path by
    /// [`GuardedPath::refresh`]).
    pub reconnects: Counter,
    /// Messages sent again after a reconnect (copied likewise).
    pub resent: Counter,
    /// 1 while the path is connected, else 0 (copied likewise).
    pub connected: Gauge,
    /// Bytes buffered on the path, waiting to be sent or acknowledged
    /// (copied likewise).
    pub buffered_bytes: Gauge,
}

/// The shadow role's limits.
#[derive(Debug, Clone, Copy)]
pub struct ShadowLimits {
    /// Bytes the path may hold queued before shadow messages are dropped.
    pub queue_bytes: usize,
    /// The shadow breaker.
    pub breaker: BreakerOptions,
}

impl ShadowLimits {
    /// The limits the settings give.
    pub fn from_settings(shadow: &myc_config::ShadowSettings) -> ShadowLimits {
        ShadowLimits {
            queue_bytes: shadow.queue_bytes,
            breaker: BreakerOptions { failure_threshold: shadow.failure_threshold, open_for: shadow.open_for.get() },
        }
    }
}

/// A publisher with its counters and shadow guard.
#[derive(Debug)]
pub struct GuardedPath<P> {
    publisher: P,
    counters: Arc<PathCounters>,
    /// The shadow queue's bound ([`ShadowLimits::queue_bytes`]); changed
    /// live by [`GuardedPath::set_shadow_limits`].
    queue_bytes: AtomicUsize,
    breaker: PublishBreaker,
    /// Whether the breaker has seen a failure not yet cleared by a success
    /// (or is open): while false, the shadow skips the breaker's lock.
    tripped: AtomicBool,
    /// The guard of the primary role (breaker and spool); broker path only.
    guard: Option<PrimaryGuard>,
}

impl<P: Publisher> GuardedPath<P> {
    /// Wraps `publisher`.
    pub fn new(publisher: P, shadow: ShadowLimits) -> GuardedPath<P> {
        GuardedPath {
            publisher,
            counters: Arc::default(),
            queue_bytes: AtomicUsize::new(shadow.queue_bytes),
            breaker: PublishBreaker::new(Some(shadow.breaker)),
            tripped: AtomicBool::new(false),
            guard: None,
        }
    }

    /// Guards the primary role with a breaker and spool (the broker path).
    ///
    /// # Errors
    /// The spool cannot be opened.
    pub fn guard_primary(&mut self, options: PrimaryOptions) -> Result<(), Error>
    where
        P: Clone + 'static,
    {
        self.guard = Some(PrimaryGuard::start(self.publisher.clone(), options)?);
        Ok(())
    }

    /// New shadow limits, in force from the next shadow publish; the
    /// shadow breaker starts closed under them.
    pub fn set_shadow_limits(&self, shadow: ShadowLimits) {
        self.queue_bytes.store(shadow.queue_bytes, Ordering::Relaxed);
        self.breaker.set(shadow.breaker);
        self.tripped.store(false, Ordering::Relaxed);
        self.breaker_state();
    }

    /// Copies the path's own counts (reconnects, resends) and state
    /// (connected, bytes buffered) into the exported metrics; called before
    /// each summary and periodically.
    pub fn refresh(&self) {
        let reconnects = self.publisher.connects().saturating_sub(1);
        let resent = self.publisher.progress().map_or(0, |progress| progress.resent);
        for (counter, now) in [(&self.counters.reconnects, reconnects), (&self.counters.resent, resent)] {
            counter.inc_by(now.saturating_sub(counter.get()));
        }
        self.counters.connected.set(i64::from(self.publisher.is_connected()));
        self.counters.buffered_bytes.set(i64::try_from(self.publisher.buffered_bytes()).unwrap_or(i64::MAX));
    }

    /// Messages the path accepted and never handed over (acknowledged,
    /// written, or left in the spool).
    pub fn undelivered(&self) -> u64 {
        let in_spool = self.guard.as_ref().map_or(0, PrimaryGuard::handed_in_spool);
        self.publisher.undelivered().saturating_sub(in_spool)
    }

    /// The primary guard, when there is one.
    pub fn primary_guard(&self) -> Option<&PrimaryGuard> {
        self.guard.as_ref()
    }

    /// The publisher underneath.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<PathCounters> {
        &self.counters
    }

    /// The shadow breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        let state = self.breaker.state().unwrap_or(BreakerState::Closed);
        self.counters.breaker.set(match state {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        });
        state
    }

    /// As the primary: awaited, and the result is the producer's.
    pub(crate) async fn primary(&self, message: &[u8]) -> Result<(), Error> {
        let result = match &self.guard {
            Some(guard) => guard.publish(&self.publisher, message, true).await,
            None => self.publisher.publish(message).await,
        };
        self.count(&result);
        result
    }

    /// As the primary, without waiting.
    pub(crate) fn try_primary(&self, message: &[u8]) -> Result<(), Error> {
        let result = self.publish_guarded_now(message);
        self.count(&result);
        result
    }

    #[cfg(all(feature = "relay", feature = "broker"))]
    /// As the primary, without waiting, for a run of `n` concatenated whole
    /// messages, each judged on its own as [`GuardedPath::try_primary`]
    /// would; the refused ones are counted as failed.
    pub(crate) fn try_primary_run(&self, messages: &[u8], n: usize) -> RunOutcome {
        let outcome = if self.guard.is_some() {
            // The guard (breaker, spool) judges message by message.
            RunOutcome::each(messages, |message| self.publish_guarded_now(message))
        } else {
            self.publisher.try_publish_run(messages)
        };
        self.counters.published.inc_by(outcome.taken as u64);
        self.counters.failed.inc_by(n.saturating_sub(outcome.taken) as u64);
        outcome
    }

    /// The guard's publish, never waiting.
    fn publish_guarded_now(&self, message: &[u8]) -> Result<(), Error> {
        match &self.guard {
            // With `wait` false the guard's future is ready at once.
            Some(guard) => now_or_never(guard.publish(&self.publisher, message, false)),
            None => self.publisher.try_publish(message),
        }
    }

    /// Whether the primary role has a spool (batches then take one write).
    pub(crate) fn has_spool(&self) -> bool {
        self.guard.as_ref().is_some_and(PrimaryGuard::has_spool)
    }

    /// As the primary with a spool: whole messages, in order, one spool
    /// write for the batch; never waits. `None` (nothing done) when there
    /// is no spool taking messages now: publish them one by one.
    pub(crate) fn primary_batch(&self, messages: &[&[u8]]) -> Option<Result<(), Error>> {
        let result = self.guard.as_ref()?.publish_batch(&self.publisher, messages)?;
        match &result {
            Ok(()) => self.counters.published.inc_by(messages.len() as u64),
            Err(_) => self.counters.failed.inc_by(messages.len() as u64),
        };
        Some(result)
    }

    fn count(&self, result: &Result<(), Error>) {
        match result {
            Ok(()) => self.counters.published.inc(),
            Err(_) => self.counters.failed.inc(),
        };
    }

    /// As the shadow: handed over without waiting (true), or dropped and
    /// counted (false).
    pub(crate) fn shadow(&self, message: &[u8]) -> bool {
        let Some(tripped) = self.shadow_admits(1) else { return false };
        let accepted = self.publisher.buffered_bytes() + message.len() <= self.queue_bytes.load(Ordering::Relaxed)
            && self.publisher.try_publish(message).is_ok();
        self.shadow_settled(tripped, usize::from(accepted), 1);
        accepted
    }

    /// Whether the shadow breaker lets an attempt of `n` messages through:
    /// `Some(tripped)` (whether it had failed before), or `None` with the
    /// `n` counted as dropped. A refusal by the open breaker is a drop, not
    /// a new failure: only attempts count toward opening it again. A
    /// breaker with no failures is closed and lets everything through, so
    /// it is only asked once something failed.
    fn shadow_admits(&self, n: usize) -> Option<bool> {
        let tripped = self.tripped.load(Ordering::Relaxed);
        if tripped && !self.breaker.allows(self.publisher.is_connected()) {
            self.counters.shadow_dropped.inc_by(n as u64);
            return None;
        }
        Some(tripped)
    }

    /// Counts a shadow attempt of `n` messages of which `taken` were handed
    /// over; one that fell short is one failure for the breaker.
    fn shadow_settled(&self, tripped: bool, taken: usize, n: usize) {
        self.counters.published.inc_by(taken as u64);
        if taken == n {
            // `allows` recorded the success when connected.
            if tripped && self.breaker_state() == BreakerState::Closed && self.publisher.is_connected() {
                self.tripped.store(false, Ordering::Relaxed);
            }
        } else {
            self.breaker.failure();
            self.tripped.store(true, Ordering::Relaxed);
            self.counters.shadow_dropped.inc_by((n - taken) as u64);
            self.breaker_state();
        }
    }

    #[cfg(all(feature = "relay", feature = "broker"))]
    /// As the shadow, for a run of `n` concatenated whole messages: the
    /// first ones that fit under the queue bound are handed over without
    /// waiting, the rest dropped and counted. A run that falls short is one
    /// failure for the breaker (the run is one attempt).
    pub(crate) fn shadow_run(&self, messages: &[u8], n: usize) -> RunOutcome {
        let Some(tripped) = self.shadow_admits(n) else { return RunOutcome::default() };
        // The queue bound is asked once for the run: what fits is taken.
        let room = self.queue_bytes.load(Ordering::Relaxed).saturating_sub(self.publisher.buffered_bytes());
        let mut fits = 0;
        for message in Messages(messages) {
            match message {
                Ok(message) if fits + message.len() <= room => fits += message.len(),
                _ => break,
            }
        }
        let outcome = if fits > 0 { self.publisher.try_publish_run(&messages[..fits]) } else { RunOutcome::default() };
        self.shadow_settled(tripped, outcome.taken, n);
        outcome
    }

    /// Flushes the path: with a spool, waits for it to drain first; what
    /// is still spooled at the deadline stays there for the next start.
    pub(crate) async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        if let Some(guard) = self.guard.as_ref().filter(|guard| guard.has_spool()) {
            guard.drain(&self.publisher, deadline).await;
            if self.undelivered() == 0 {
                // Everything is acknowledged or safe in the spool.
                return Ok(());
            }
        }
        self.publisher.flush(deadline.saturating_sub(started.elapsed())).await
    }
}
