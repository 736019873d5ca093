//! The broker path's guard while it is the primary (stages
//! `dual_broker_primary` and `broker`): a circuit breaker that makes
//! publishes fail at once while the broker is away, and the spool on disk
//! (`docs/spool.md`) that takes what the path cannot take now (`overflow`)
//! or everything until the broker acknowledges it (`always`).
//!
//! Order is kept per path: while the spool holds messages not yet handed
//! to the path, new ones are spooled behind them, and a pump task hands
//! the spool to the path in order as soon as it is connected — after a
//! restart too, before anything new. A spooled message leaves the spool
//! when the path's acknowledged count passes it.
//!
//! It deliberately does not guard the relay path (the relay never
//! acknowledges, so there is nothing to release a spooled message on) or a
//! shadow role (the shadow has its own guard and never fails the producer).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use myc_transport::{AbortOnDrop, BreakerOptions, BreakerState, CircuitBreaker, Spool, SpoolOptions};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use crate::{Error, Progress, Publisher};

/// When the spool takes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolPolicy {
    /// Only a message the path cannot take now (buffer full, breaker open).
    Overflow,
    /// Every message, before its publish returns.
    Always,
}

/// What guards the primary broker path.
#[derive(Debug, Clone, Default)]
pub struct PrimaryOptions {
    /// The breaker; `None` disables it.
    pub breaker: Option<BreakerOptions>,
    /// The spool; `None` for no spool.
    pub spool: Option<(SpoolPolicy, SpoolOptions)>,
}

impl PrimaryOptions {
    /// The guard `[broker]` describes.
    pub fn from_settings(broker: &myc_config::BrokerSettings) -> PrimaryOptions {
        let breaker = (broker.breaker_failures > 0).then(|| BreakerOptions {
            failure_threshold: broker.breaker_failures,
            open_for: broker.breaker_open_for.get(),
        });
        let policy = match broker.spool {
            myc_config::SpoolMode::Off => None,
            myc_config::SpoolMode::Overflow => Some(SpoolPolicy::Overflow),
            myc_config::SpoolMode::Always => Some(SpoolPolicy::Always),
        };
        let spool = policy.map(|policy| {
            let mut options = SpoolOptions::new(&broker.spool_dir);
            options.max_bytes = broker.spool_max_bytes;
            options.fsync_every = broker.spool_fsync.get();
            (policy, options)
        });
        PrimaryOptions { breaker, spool }
    }
}

/// The guard's counters and gauges (exported per path).
#[derive(Debug, Default)]
pub struct GuardCounters {
    /// Publishes that met an open breaker (failed at once, or spooled).
    pub circuit_open: Counter,
    /// The breaker: 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
    /// Messages appended to the spool.
    pub spooled: Counter,
    /// Spooled messages handed to the path by the pump.
    pub replayed: Counter,
    /// Messages refused because the spool was full.
    pub spool_full: Counter,
    /// Torn tails truncated when the spool was opened.
    pub spool_truncated: Counter,
    /// Corrupt regions skipped when the spool was opened.
    pub spool_corrupt: Counter,
    /// Messages in the spool now.
    pub spool_messages: Gauge,
    /// Bytes of the messages in the spool now.
    pub spool_bytes: Gauge,
}

/// The breaker, fed by the path's connection counts.
#[derive(Debug)]
struct Breaker {
    breaker: CircuitBreaker,
    /// The path's failed connection attempts already counted.
    failures_seen: u64,
    /// The path's successful connections already counted.
    connects_seen: u64,
}

impl Breaker {
    /// Counts what the path did since last time: each failed connection
    /// attempt is a failure, a new connection a success.
    fn observe(&mut self, progress: Option<Progress>, now: Instant) {
        let Some(progress) = progress else { return };
        let failed = progress.connect_failures.saturating_sub(self.failures_seen);
        self.failures_seen = progress.connect_failures;
        // Past the threshold more failures change nothing but the open time.
        for _ in 0..failed.min(64) {
            self.breaker.on_failure(now);
        }
        if progress.connects > self.connects_seen {
            self.connects_seen = progress.connects;
            self.breaker.on_success();
        }
    }
}

/// The spool and what of it the path holds.
#[derive(Debug)]
struct SpoolState {
    spool: Spool,
    /// Spooled messages handed to the path, as ranges (first, last) of the
    /// path's accepted count: each leaves the spool when the acknowledged
    /// count reaches it.
    handed: VecDeque<(u64, u64)>,
}

impl SpoolState {
    /// Notes that the path accepted `n` spooled messages, the last being
    /// its `accepted`-th.
    fn note_handed(&mut self, accepted: u64, n: u64) {
        if n == 0 {
            return;
        }
        let first = accepted + 1 - n;
        match self.handed.back_mut() {
            Some(last) if last.1 + 1 == first => last.1 = accepted,
            _ => self.handed.push_back((first, accepted)),
        }
    }

    /// Consumes the spooled messages the path has acknowledged.
    fn apply_acks(&mut self, acknowledged: u64) {
        let mut done = 0;
        while let Some(front) = self.handed.front_mut() {
            if front.1 <= acknowledged {
                done += front.1 - front.0 + 1;
                self.handed.pop_front();
            } else {
                if front.0 <= acknowledged {
                    done += acknowledged - front.0 + 1;
                    front.0 = acknowledged + 1;
                }
                break;
            }
        }
        if done > 0
            && let Err(error) = self.spool.consume(done)
        {
            tracing::warn!(%error, "spool: could not record acknowledged messages");
        }
    }
}

#[derive(Debug)]
struct SpoolShared {
    policy: SpoolPolicy,
    state: Mutex<SpoolState>,
    /// Wakes the pump: something was spooled.
    wake: Notify,
}

impl SpoolShared {
    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The guard (see the module documentation).
#[derive(Debug)]
pub struct PrimaryGuard {
    breaker: Option<Mutex<Breaker>>,
    spool: Option<Arc<SpoolShared>>,
    counters: Arc<GuardCounters>,
    /// The pump, stopped with the guard.
    _pump: Option<AbortOnDrop>,
}

/// The breaker state as exported: 0 closed, 1 open, 2 half-open.
fn gauge_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// The largest read the pump hands to the path at once.
const PUMP_READ: usize = 256 * 1024;

impl PrimaryGuard {
    /// A guard for `publisher`; opens (and recovers) the spool and starts
    /// its pump. Call inside a tokio runtime.
    ///
    /// # Errors
    /// The spool cannot be opened (another producer has its directory, or
    /// it cannot be read or written).
    pub fn start<P>(publisher: P, options: PrimaryOptions) -> Result<PrimaryGuard, Error>
    where
        P: Publisher + Clone + 'static,
    {
        let counters = Arc::new(GuardCounters::default());
        let breaker = options.breaker.map(|options| {
            let progress = publisher.progress().unwrap_or_default();
            Mutex::new(Breaker {
                breaker: CircuitBreaker::with_options(options),
                failures_seen: progress.connect_failures,
                connects_seen: progress.connects,
            })
        });
        let mut spool = None;
        let mut pump = None;
        if let Some((policy, spool_options)) = options.spool {
            if publisher.progress().is_none() {
                return Err(Error::Settings("a spool needs a path that learns what was delivered".to_owned()));
            }
            let (opened, recovery) = Spool::open(spool_options).map_err(Error::Spool)?;
            counters.spool_truncated.inc_by(recovery.truncated.len() as u64);
            counters.spool_corrupt.inc_by(recovery.corrupt.len() as u64);
            if recovery.messages > 0 {
                tracing::info!(
                    dir = %opened.dir().display(),
                    messages = recovery.messages,
                    bytes = recovery.bytes,
                    "spool holds messages from an earlier run; they are sent first"
                );
            }
            let shared = Arc::new(SpoolShared {
                policy,
                state: Mutex::new(SpoolState { spool: opened, handed: VecDeque::new() }),
                wake: Notify::new(),
            });
            pump = Some(AbortOnDrop::spawn(run_pump(publisher, Arc::clone(&shared), Arc::clone(&counters))));
            spool = Some(shared);
        }
        let guard = PrimaryGuard { breaker, spool, counters, _pump: pump };
        guard.update_gauges();
        Ok(guard)
    }

    /// Applies new breaker settings (the breaker starts closed under
    /// them); a guard started without a breaker keeps none, and
    /// `failures` 0 leaves it closed for good.
    pub fn set_breaker(&self, failures: u32, open_for: Duration) {
        let Some(breaker) = &self.breaker else { return };
        let mut breaker = breaker.lock().unwrap_or_else(PoisonError::into_inner);
        let threshold = if failures == 0 { u32::MAX } else { failures };
        breaker.breaker = CircuitBreaker::new(threshold, open_for);
        drop(breaker);
        self.update_gauges();
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<GuardCounters> {
        &self.counters
    }

    /// The breaker's state now (closed when there is none).
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.as_ref().map_or(BreakerState::Closed, |breaker| {
            breaker.lock().unwrap_or_else(PoisonError::into_inner).breaker.state(Instant::now())
        })
    }

    /// Spooled messages the path holds and has not acknowledged: still in
    /// the spool, so not lost if the path never delivers them.
    pub fn handed_in_spool(&self) -> u64 {
        self.spool.as_ref().map_or(0, |shared| shared.lock().handed.iter().map(|(first, last)| last - first + 1).sum())
    }

    /// Messages in the spool now (0 without one).
    pub fn spooled_now(&self) -> u64 {
        self.spool.as_ref().map_or(0, |shared| shared.lock().spool.messages())
    }

    /// Whether the breaker lets a publish through now.
    fn allows<P: Publisher>(&self, publisher: &P) -> bool {
        let Some(breaker) = &self.breaker else { return true };
        let now = Instant::now();
        let mut breaker = breaker.lock().unwrap_or_else(PoisonError::into_inner);
        breaker.observe(publisher.progress(), now);
        let allowed = breaker.breaker.allow(now);
        let state = breaker.breaker.state(now);
        drop(breaker);
        if !allowed {
            self.counters.circuit_open.inc();
        }
        self.counters.breaker_state.set(gauge_value(state));
        allowed
    }

    fn record(&self, result: &Result<(), Error>) {
        let Some(breaker) = &self.breaker else { return };
        if result.is_err() {
            breaker.lock().unwrap_or_else(PoisonError::into_inner).breaker.on_failure(Instant::now());
            self.update_gauges();
        }
    }

    fn update_gauges(&self) {
        self.counters.breaker_state.set(gauge_value(self.breaker_state()));
    }

    /// Publishes `message` on `publisher` as the primary: through the
    /// breaker, into the spool per its policy; waits for buffer room only
    /// when `wait` and there is no spool.
    pub(crate) async fn publish<P: Publisher>(&self, publisher: &P, message: &[u8], wait: bool) -> Result<(), Error> {
        let allowed = self.allows(publisher);
        let Some(shared) = &self.spool else {
            if !allowed {
                return Err(Error::CircuitOpen);
            }
            let result = if wait { publisher.publish(message).await } else { publisher.try_publish(message) };
            self.record(&result);
            return result;
        };
        let mut state = shared.lock();
        let handed_now = match shared.policy {
            SpoolPolicy::Always => {
                self.append(&mut state, &[message])?;
                // Straight to the path too when nothing spooled waits before it.
                if allowed && state.spool.unread() == 1 && publisher.try_publish(message).is_ok() {
                    state.spool.skip(1);
                    let accepted = publisher.progress().map_or(0, |progress| progress.accepted);
                    state.note_handed(accepted, 1);
                    true
                } else {
                    false
                }
            }
            SpoolPolicy::Overflow => {
                if allowed && state.spool.unread() == 0 && publisher.try_publish(message).is_ok() {
                    return Ok(());
                }
                self.append(&mut state, &[message])?;
                false
            }
        };
        drop(state);
        if !handed_now {
            shared.wake.notify_one();
        }
        Ok(())
    }

    /// Publishes whole messages in order as [`PrimaryGuard::publish`]
    /// does, with one spool write for the batch (spool only).
    pub(crate) fn publish_batch<P: Publisher>(&self, publisher: &P, messages: &[&[u8]]) -> Result<(), Error> {
        let allowed = self.allows(publisher);
        let Some(shared) = &self.spool else {
            return Err(Error::Settings("a batch through the guard needs a spool".to_owned()));
        };
        let mut state = shared.lock();
        let n = messages.len() as u64;
        let all_handed = match shared.policy {
            SpoolPolicy::Always => {
                self.append(&mut state, messages)?;
                let mut handed = 0;
                if allowed && state.spool.unread() == n {
                    handed = messages.iter().take_while(|message| publisher.try_publish(message).is_ok()).count();
                    let handed = handed as u64;
                    state.spool.skip(handed);
                    let accepted = publisher.progress().map_or(0, |progress| progress.accepted);
                    state.note_handed(accepted, handed);
                }
                handed == messages.len()
            }
            SpoolPolicy::Overflow => {
                let mut handed = 0;
                if allowed && state.spool.unread() == 0 {
                    handed = messages.iter().take_while(|message| publisher.try_publish(message).is_ok()).count();
                }
                if handed < messages.len() {
                    self.append(&mut state, &messages[handed..])?;
                }
                handed == messages.len()
            }
        };
        drop(state);
        if !all_handed {
            shared.wake.notify_one();
        }
        Ok(())
    }

    fn append(&self, state: &mut SpoolState, messages: &[&[u8]]) -> Result<(), Error> {
        match state.spool.append_batch(messages) {
            Ok(()) => {
                self.counters.spooled.inc_by(messages.len() as u64);
                Ok(())
            }
            Err(error) => {
                if matches!(error, myc_transport::Error::SpoolFull { .. }) {
                    self.counters.spool_full.inc();
                }
                Err(Error::Spool(error))
            }
        }
    }

    /// Waits until the spool is empty (everything acknowledged), `deadline`
    /// passes, or the path has been disconnected for half a second (its
    /// messages are safe on disk: no use waiting for a broker that is
    /// away), then syncs it; what is left stays for the next start.
    /// Returns how many messages are left in the spool.
    pub(crate) async fn drain<P: Publisher>(&self, publisher: &P, deadline: Duration) -> u64 {
        let Some(shared) = &self.spool else { return 0 };
        let now = tokio::time::Instant::now();
        let until = now + deadline;
        let mut connected_at = now;
        loop {
            let now = tokio::time::Instant::now();
            if publisher.is_connected() {
                connected_at = now;
            }
            let left = shared.lock().spool.messages();
            let away = now.duration_since(connected_at) >= Duration::from_millis(500);
            if left == 0 || now >= until || away {
                let mut state = shared.lock();
                if let Err(error) = state.spool.sync() {
                    tracing::warn!(%error, "spool: final sync failed");
                }
                if left > 0 {
                    tracing::info!(
                        dir = %state.spool.dir().display(),
                        messages = left,
                        "messages left in the spool are sent at the next start"
                    );
                }
                return left;
            }
            shared.wake.notify_one();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Whether there is a spool.
    pub(crate) fn has_spool(&self) -> bool {
        self.spool.is_some()
    }
}

/// Hands spooled messages to the path in order while it is connected, and
/// releases those it acknowledged.
async fn run_pump<P: Publisher>(publisher: P, shared: Arc<SpoolShared>, counters: Arc<GuardCounters>) {
    loop {
        let (handed, live) = {
            let mut state = shared.lock();
            if let Some(progress) = publisher.progress() {
                state.apply_acks(progress.acknowledged);
            }
            let handed = if state.spool.unread() > 0 && publisher.is_connected() {
                pump_once(&publisher, &mut state)
            } else {
                0
            };
            let stats = state.spool.stats();
            counters.spool_messages.set(i64::try_from(stats.messages).unwrap_or(i64::MAX));
            counters.spool_bytes.set(i64::try_from(stats.bytes).unwrap_or(i64::MAX));
            (handed, stats.messages)
        };
        counters.replayed.inc_by(handed);
        if handed > 0 {
            tokio::task::yield_now().await;
        } else if live > 0 {
            // Acknowledgements arrive without a signal here: poll for them.
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(1)) => {}
            }
        } else {
            shared.wake.notified().await;
        }
    }
}

/// Reads one batch from the spool and hands the path as much of it as it
/// takes now; the rest goes back to be read again. Returns how many.
fn pump_once<P: Publisher>(publisher: &P, state: &mut SpoolState) -> u64 {
    let batch = match state.spool.read(PUMP_READ) {
        Ok(batch) => batch,
        Err(error) => {
            tracing::warn!(%error, "spool: read failed");
            return 0;
        }
    };
    let mut handed = 0u64;
    for payload in batch.payloads() {
        if publisher.try_publish(payload).is_err() {
            break;
        }
        handed += 1;
    }
    if handed < batch.len() as u64 {
        state.spool.give_back(batch.records - handed);
    }
    let accepted = publisher.progress().map_or(0, |progress| progress.accepted);
    state.note_handed(accepted, handed);
    handed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_release_only_the_spooled_ranges_they_reach() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut spool, _) = Spool::open(SpoolOptions::new(dir.path())).expect("open");
        for n in 0..10u8 {
            spool.append(&[n]).expect("append");
        }
        spool.skip(10);
        let mut state = SpoolState { spool, handed: VecDeque::new() };
        // Accepted 1–4 direct, 5–7 spooled, 8 direct, 9–15 spooled.
        state.note_handed(7, 3);
        state.note_handed(15, 7);
        assert_eq!(state.handed, [(5, 7), (9, 15)]);
        state.apply_acks(4);
        assert_eq!(state.spool.messages(), 10);
        state.apply_acks(6);
        assert_eq!(state.spool.messages(), 8);
        state.apply_acks(10);
        assert_eq!((state.spool.messages(), state.handed.front().copied()), (5, Some((11, 15))));
        state.apply_acks(100);
        assert_eq!(state.spool.messages(), 0);
        assert!(state.handed.is_empty());
    }
}
