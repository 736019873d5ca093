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
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
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
    /// How it takes messages now (changed live).
    mode: Mode,
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

/// How a spool takes messages now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As the settings say.
    Policy(SpoolPolicy),
    /// The settings turned the spool off while it held messages: a new
    /// message still queues behind them (to keep the order) while any are
    /// unread, and goes straight to the path after; once the spool is empty
    /// the pump closes it (releasing its directory).
    Draining,
}

#[derive(Debug)]
struct SpoolShared {
    state: Mutex<SpoolState>,
    /// Wakes the pump: something was spooled, or the mode changed.
    wake: Notify,
}

impl SpoolShared {
    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The spool in force, if any: replaced live by [`PrimaryGuard::set_spool`]
/// and emptied by the pump of a drained spool. Lock order: this slot, then
/// the spool's state.
type Slot = Arc<RwLock<Option<Arc<SpoolShared>>>>;

/// Starts the pump of a spool (it holds a clone of the path).
type PumpStarter = Box<dyn Fn(Arc<SpoolShared>) -> AbortOnDrop + Send + Sync>;

/// The guard (see the module documentation).
pub struct PrimaryGuard {
    /// Always there: `breaker_failures = 0` is a threshold no path reaches,
    /// so the settings can turn it on and off live.
    breaker: Mutex<Breaker>,
    spool: Slot,
    counters: Arc<GuardCounters>,
    /// The pump of the spool in the slot; replaced (the old one stopped)
    /// with the spool.
    pump: Mutex<Option<AbortOnDrop>>,
    start_pump: PumpStarter,
    /// Whether the path learns what was delivered (a spool needs that).
    spool_capable: bool,
}

impl std::fmt::Debug for PrimaryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryGuard")
            .field("breaker", &self.breaker)
            .field("spool", &self.spool)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// The breaker state as exported: 0 closed, 1 open, 2 half-open.
fn gauge_value(state: BreakerState) -> i64 {
    match state {
        BreakerState::Closed => 0,
        BreakerState::Open => 1,
        BreakerState::HalfOpen => 2,
    }
}

/// The breaker `failures` and `open_for` describe (0: never opens).
fn breaker_of(failures: u32, open_for: Duration) -> CircuitBreaker {
    CircuitBreaker::new(if failures == 0 { u32::MAX } else { failures }, open_for)
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
        let progress = publisher.progress();
        let breaker = options.breaker.map_or_else(
            || breaker_of(0, Duration::from_secs(1)),
            |options| breaker_of(options.failure_threshold, options.open_for),
        );
        let breaker = Mutex::new(Breaker {
            breaker,
            failures_seen: progress.unwrap_or_default().connect_failures,
            connects_seen: progress.unwrap_or_default().connects,
        });
        let slot: Slot = Arc::default();
        let start_pump: PumpStarter = {
            let (counters, slot) = (Arc::clone(&counters), Arc::clone(&slot));
            Box::new(move |shared| {
                AbortOnDrop::spawn(run_pump(publisher.clone(), shared, Arc::clone(&counters), Arc::clone(&slot)))
            })
        };
        let guard = PrimaryGuard {
            breaker,
            spool: slot,
            counters,
            pump: Mutex::new(None),
            start_pump,
            spool_capable: progress.is_some(),
        };
        guard.set_spool(options.spool)?;
        guard.update_gauges();
        Ok(guard)
    }

    /// Applies new breaker settings (the breaker starts closed under
    /// them); `failures` 0 turns it off.
    pub fn set_breaker(&self, failures: u32, open_for: Duration) {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner).breaker = breaker_of(failures, open_for);
        self.update_gauges();
    }

    /// Applies new spool settings while running, without losing or
    /// reordering a message:
    ///
    /// * none before: the spool is opened (what it holds from an earlier
    ///   run is sent first, as at a start);
    /// * the same directory: the policy, `max_bytes` and `fsync_every`
    ///   apply from the next publish;
    /// * another directory: it must hold no messages; everything the old
    ///   spool holds is copied there in order (and synced) before the old
    ///   one is emptied and released;
    /// * none now: the spool drains — new messages queue behind what is
    ///   unread, then go straight to the path — and is closed once empty.
    ///
    /// # Errors
    /// The new spool cannot be opened, holds messages of another run, or
    /// the copy failed; nothing changes then.
    pub fn set_spool(&self, wanted: Option<(SpoolPolicy, SpoolOptions)>) -> Result<(), Error> {
        let current = self.current_spool();
        let moving = match (&current, &wanted) {
            (Some(current), Some((_, options))) => current.lock().spool.dir() != options.dir,
            (None, Some(_)) => true,
            _ => false,
        };
        // Opened before taking the slot: publishers keep going meanwhile.
        let opened = match &wanted {
            Some((policy, options)) if moving => Some(self.open_spool(*policy, options.clone(), current.is_some())?),
            _ => None,
        };
        let mut slot = self.spool.write().unwrap_or_else(PoisonError::into_inner);
        match (slot.clone(), wanted, opened) {
            (old, Some(_), Some(new)) => {
                if let Some(old) = old {
                    let mut old_state = old.lock();
                    let mut new_state = new.lock();
                    let moved = move_spool(&mut old_state, &mut new_state)?;
                    // Released now, not when the old pump's task goes: once
                    // the move is seen, the old directory is free.
                    old_state.spool.release();
                    tracing::info!(
                        from = %old_state.spool.dir().display(),
                        to = %new_state.spool.dir().display(),
                        messages = moved,
                        "spool moved to its new directory"
                    );
                }
                *slot = Some(Arc::clone(&new));
                new.wake.notify_one();
                *self.pump.lock().unwrap_or_else(PoisonError::into_inner) = Some((self.start_pump)(new));
            }
            (Some(shared), Some((policy, options)), None) => {
                let mut state = shared.lock();
                state.mode = Mode::Policy(policy);
                state.spool.set_limits(options.max_bytes, options.fsync_every).map_err(Error::Spool)?;
                drop(state);
                shared.wake.notify_one();
            }
            (Some(shared), None, _) => {
                let mut state = shared.lock();
                if state.mode != Mode::Draining {
                    state.mode = Mode::Draining;
                    tracing::info!(
                        dir = %state.spool.dir().display(),
                        messages = state.spool.messages(),
                        "spool turned off: it closes once what it holds is delivered"
                    );
                }
                drop(state);
                shared.wake.notify_one();
            }
            (None, Some((policy, options)), None) => {
                // A drained spool of this directory closed meanwhile.
                let new = self.open_spool(policy, options, true)?;
                *slot = Some(Arc::clone(&new));
                *self.pump.lock().unwrap_or_else(PoisonError::into_inner) = Some((self.start_pump)(new));
            }
            (None, None, _) => {}
        }
        Ok(())
    }

    /// Opens the spool `options` describe for the policy; `live` says the
    /// producer is already running (the directory must then be empty).
    fn open_spool(&self, policy: SpoolPolicy, options: SpoolOptions, live: bool) -> Result<Arc<SpoolShared>, Error> {
        if !self.spool_capable {
            return Err(Error::Settings("a spool needs a path that learns what was delivered".to_owned()));
        }
        let (opened, recovery) = Spool::open(options).map_err(Error::Spool)?;
        if live && recovery.messages > 0 {
            return Err(Error::Settings(format!(
                "spool_dir {} holds {} messages of another run: move the spool there at a restart, or empty it",
                opened.dir().display(),
                recovery.messages
            )));
        }
        self.counters.spool_truncated.inc_by(recovery.truncated.len() as u64);
        self.counters.spool_corrupt.inc_by(recovery.corrupt.len() as u64);
        if recovery.messages > 0 {
            tracing::info!(
                dir = %opened.dir().display(),
                messages = recovery.messages,
                bytes = recovery.bytes,
                "spool holds messages from an earlier run; they are sent first"
            );
        }
        Ok(Arc::new(SpoolShared {
            state: Mutex::new(SpoolState { spool: opened, handed: VecDeque::new(), mode: Mode::Policy(policy) }),
            wake: Notify::new(),
        }))
    }

    fn current_spool(&self) -> Option<Arc<SpoolShared>> {
        self.spool.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<GuardCounters> {
        &self.counters
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner).breaker.state(Instant::now())
    }

    /// Spooled messages the path holds and has not acknowledged: still in
    /// the spool, so not lost if the path never delivers them.
    pub fn handed_in_spool(&self) -> u64 {
        self.current_spool().map_or(0, |shared| shared.lock().handed.iter().map(|(first, last)| last - first + 1).sum())
    }

    /// Messages in the spool now (0 without one).
    pub fn spooled_now(&self) -> u64 {
        self.current_spool().map_or(0, |shared| shared.lock().spool.messages())
    }

    /// The spool's directory and options in force, and whether it is
    /// draining (turned off, closing once empty); `None` without a spool.
    pub fn spool_options(&self) -> Option<(SpoolOptions, Option<SpoolPolicy>)> {
        self.current_spool().map(|shared| {
            let state = shared.lock();
            let policy = match state.mode {
                Mode::Policy(policy) => Some(policy),
                Mode::Draining => None,
            };
            (state.spool.options().clone(), policy)
        })
    }

    /// Whether the breaker lets a publish through now.
    fn allows<P: Publisher>(&self, publisher: &P) -> bool {
        let now = Instant::now();
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
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
        if result.is_err() {
            self.breaker.lock().unwrap_or_else(PoisonError::into_inner).breaker.on_failure(Instant::now());
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
        if let Some(result) = self.publish_spooled(publisher, message, allowed) {
            return result;
        }
        if !allowed {
            return Err(Error::CircuitOpen);
        }
        let result = if wait { publisher.publish(message).await } else { publisher.try_publish(message) };
        self.record(&result);
        result
    }

    /// The spool's part of [`PrimaryGuard::publish`]; `None` when there is
    /// no spool, or a draining one with nothing unread (the message then
    /// goes as without a spool).
    fn publish_spooled<P: Publisher>(&self, publisher: &P, message: &[u8], allowed: bool) -> Option<Result<(), Error>> {
        let slot = self.spool.read().unwrap_or_else(PoisonError::into_inner);
        let shared = slot.as_ref()?;
        let mut state = shared.lock();
        let handed_now = match state.mode {
            Mode::Policy(SpoolPolicy::Always) => {
                if let Err(error) = self.append(&mut state, &[message]) {
                    return Some(Err(error));
                }
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
            Mode::Policy(SpoolPolicy::Overflow) => {
                if allowed && state.spool.unread() == 0 && publisher.try_publish(message).is_ok() {
                    return Some(Ok(()));
                }
                if let Err(error) = self.append(&mut state, &[message]) {
                    return Some(Err(error));
                }
                false
            }
            Mode::Draining => {
                if state.spool.unread() == 0 {
                    return None;
                }
                if let Err(error) = self.append(&mut state, &[message]) {
                    return Some(Err(error));
                }
                false
            }
        };
        drop(state);
        if !handed_now {
            shared.wake.notify_one();
        }
        Some(Ok(()))
    }

    /// Publishes whole messages in order as [`PrimaryGuard::publish`]
    /// does, with one spool write for the batch; `None` (nothing done)
    /// when there is no spool in a policy now: publish them one by one.
    pub(crate) fn publish_batch<P: Publisher>(&self, publisher: &P, messages: &[&[u8]]) -> Option<Result<(), Error>> {
        let allowed = self.allows(publisher);
        let slot = self.spool.read().unwrap_or_else(PoisonError::into_inner);
        let shared = slot.as_ref()?;
        let mut state = shared.lock();
        let n = messages.len() as u64;
        let all_handed = match state.mode {
            Mode::Policy(SpoolPolicy::Always) => {
                if let Err(error) = self.append(&mut state, messages) {
                    return Some(Err(error));
                }
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
            Mode::Policy(SpoolPolicy::Overflow) => {
                let mut handed = 0;
                if allowed && state.spool.unread() == 0 {
                    handed = messages.iter().take_while(|message| publisher.try_publish(message).is_ok()).count();
                }
                if handed < messages.len()
                    && let Err(error) = self.append(&mut state, &messages[handed..])
                {
                    return Some(Err(error));
                }
                handed == messages.len()
            }
            Mode::Draining => return None,
        };
        drop(state);
        if !all_handed {
            shared.wake.notify_one();
        }
        Some(Ok(()))
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
        let Some(shared) = self.current_spool() else { return 0 };
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
        self.spool.read().unwrap_or_else(PoisonError::into_inner).is_some()
    }
}

/// Copies everything `old` holds (handed to the path or not) into the
/// empty `new`, in order, syncs it, and empties `old`; the handed ones stay
/// marked handed. Returns how many. On failure `old` is as it was.
fn move_spool(old: &mut SpoolState, new: &mut SpoolState) -> Result<u64, Error> {
    let handed: u64 = old.handed.iter().map(|(first, last)| last - first + 1).sum();
    old.spool.rewind();
    let copied = copy_records(&mut old.spool, &mut new.spool);
    if let Err(error) = copied {
        // Back as it was: the handed ones in flight, the rest unread.
        old.spool.rewind();
        old.spool.skip(handed);
        return Err(error);
    }
    new.spool.skip(handed);
    new.handed = std::mem::take(&mut old.handed);
    let moved = old.spool.messages();
    if let Err(error) = old.spool.consume(moved) {
        tracing::warn!(%error, "spool: the old directory could not be emptied after the move");
    }
    Ok(moved)
}

fn copy_records(from: &mut Spool, to: &mut Spool) -> Result<(), Error> {
    while from.unread() > 0 {
        let batch = from.read(PUMP_READ).map_err(Error::Spool)?;
        let payloads: Vec<&[u8]> = batch.payloads().collect();
        to.append_batch(&payloads).map_err(Error::Spool)?;
    }
    to.sync().map_err(Error::Spool)
}

/// Hands spooled messages to the path in order while it is connected, and
/// releases those it acknowledged; closes a drained spool once empty.
async fn run_pump<P: Publisher>(publisher: P, shared: Arc<SpoolShared>, counters: Arc<GuardCounters>, slot: Slot) {
    loop {
        let (handed, live, drained) = {
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
            (handed, stats.messages, state.mode == Mode::Draining && stats.messages == 0)
        };
        counters.replayed.inc_by(handed);
        if drained && close_drained(&shared, &slot) {
            return;
        }
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

/// Takes a drained, empty spool out of the slot (which releases its
/// directory); false when it is no longer drained, empty or in force.
fn close_drained(shared: &Arc<SpoolShared>, slot: &Slot) -> bool {
    let mut slot = slot.write().unwrap_or_else(PoisonError::into_inner);
    let state = shared.lock();
    let ours = slot.as_ref().is_some_and(|current| Arc::ptr_eq(current, shared));
    if !ours || state.mode != Mode::Draining || state.spool.messages() > 0 {
        return !ours;
    }
    tracing::info!(dir = %state.spool.dir().display(), "spool turned off and empty: closed");
    drop(state);
    *slot = None;
    true
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
        let mut state = SpoolState { spool, handed: VecDeque::new(), mode: Mode::Policy(SpoolPolicy::Always) };
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
