//! The buffered, reconnecting publisher behind every Mycelium client (the
//! broker client, the relay client and the NATS publisher): an [`Outbox`]
//! (the bounded [`FrameBuffer`], the published / settled / failed counts,
//! `flush`, the connection state and giving up) and [`reconnect`], the one
//! loop that connects a [`Link`], runs it, backs off and counts attempts
//! against `max_reconnects`, logging (rate-limited) a lost connection at
//! WARN and its recovery at INFO.
//!
//! "Settled" means whatever the transport promises for a message: the
//! broker client settles on ACK, the relay client once written (or failed),
//! the NATS publisher once delivered. The outbox only counts.
//!
//! It deliberately knows nothing of a protocol: frames come in through an
//! `encode` closure, and the link decides what connecting and a session
//! mean. Extension points, each one place: a breaker in front of pushes
//! wraps [`Outbox::push`] and watches [`Outbox::state`] and
//! `connect_failures`; a spool takes what [`Outbox::push`] refuses as full;
//! a live endpoint change is the link's business ([`Link::connect`] runs
//! once per attempt, so it reads the endpoint afresh each time) plus
//! [`Outbox::reconnect_now`], and new backoff settings go through
//! [`Outbox::set_reconnect_options`].

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;

use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::{BufferLimits, FrameBuffer, OnceASecond, PushError, RunPushed};

/// Where a publisher's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting or waiting to reconnect; publishes are buffered.
    Connecting,
    /// Connected (and past any handshake).
    Connected,
    /// `max_reconnects_exceeded`: publishes fail at once. For a link that
    /// keeps trying ([`Link::KEEP_TRYING`]) the next connection clears it;
    /// otherwise it is final.
    Failed,
}

/// How a publisher reconnects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectOptions {
    /// Backoff base (full jitter, doubling per failed attempt).
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// Consecutive failed attempts that give up (`None`: never).
    pub max_reconnects: Option<u32>,
    /// One attempt (connect and handshake) must complete within this.
    pub connect_timeout: Duration,
}

/// The settings' defaults (`[broker]` `backoff_initial`, `backoff_max`,
/// `max_reconnects`, `connect_timeout`): a client built in code behaves as
/// one built from a default settings file (the shim tests it).
impl Default for ReconnectOptions {
    fn default() -> Self {
        ReconnectOptions {
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            max_reconnects: None,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// What [`Outbox::flush`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flushed {
    /// Everything published before the call is settled (or was dropped by
    /// `drop_oldest`, which will never settle).
    Done,
    /// The deadline passed with this many messages not settled.
    Pending(u64),
    /// The publisher gave up; the reason says why.
    GaveUp(String),
}

/// Counts kept by every publisher.
#[derive(Debug, Default)]
pub struct PublisherCounters {
    /// Messages accepted into the buffer.
    pub published: AtomicU64,
    /// Messages settled: acknowledged, written or delivered per transport,
    /// failed ones included.
    pub settled: AtomicU64,
    /// Messages lost: settled by a write that failed, or discarded unsettled
    /// when giving up.
    pub failed: AtomicU64,
    /// Successful connections (the first included).
    pub connects: AtomicU64,
    /// Connection attempts that failed (connect, handshake, or its timeout).
    pub connect_failures: AtomicU64,
}

/// The buffer and bookkeeping one publisher's handles share with its
/// connection task.
#[derive(Debug)]
pub struct Outbox {
    buffer: FrameBuffer,
    counters: PublisherCounters,
    /// [`ConnectionState`] as 0 connecting, 1 connected, 2 failed.
    state: AtomicU8,
    /// Why the publisher gave up; set with `state` failed, cleared when a
    /// publisher that keeps trying connects again.
    gave_up: Mutex<Option<String>>,
    /// New reconnect settings for the loop to take at its next attempt.
    new_options: Mutex<Option<ReconnectOptions>>,
    /// Wakes the loop to drop its connection (or skip its wait) and connect
    /// again at once.
    reconnect_now: Notify,
}

impl Outbox {
    /// An empty outbox whose frames are delimited by `frame_len`.
    pub fn new(limits: BufferLimits, frame_len: fn(&[u8]) -> usize) -> Outbox {
        Outbox {
            buffer: FrameBuffer::new(limits, frame_len),
            counters: PublisherCounters::default(),
            state: AtomicU8::new(0),
            gave_up: Mutex::new(None),
            new_options: Mutex::new(None),
            reconnect_now: Notify::new(),
        }
    }

    /// Queues one frame of `len` bytes, written by `encode`, waiting for
    /// room per the buffer's policy.
    ///
    /// # Errors
    /// [`PushError`] when it was not queued.
    pub async fn push(&self, len: usize, encode: impl FnOnce(&mut BytesMut)) -> Result<(), PushError> {
        let pushed = self.buffer.push(len, encode).await;
        self.count_push(pushed)
    }

    /// Queues one frame without waiting.
    ///
    /// # Errors
    /// [`PushError`] when it was not queued (`Full` at once under `block`).
    pub fn try_push(&self, len: usize, encode: impl FnOnce(&mut BytesMut)) -> Result<(), PushError> {
        let pushed = self.buffer.try_push(len, encode);
        self.count_push(pushed)
    }

    /// Queues frames without waiting, in order, under one lock, each judged
    /// on its own ([`FrameBuffer::try_push_each`]).
    pub fn try_push_each<E: FnOnce(&mut BytesMut)>(&self, frames: impl IntoIterator<Item = (usize, E)>) -> RunPushed {
        let pushed = self.buffer.try_push_each(frames);
        self.counters.published.fetch_add(pushed.queued as u64, Ordering::Relaxed);
        pushed
    }

    fn count_push(&self, pushed: Result<(), PushError>) -> Result<(), PushError> {
        if pushed.is_ok() {
            self.counters.published.fetch_add(1, Ordering::Relaxed);
        }
        pushed
    }

    /// The next chunk of queued frames and its frame count, waiting until
    /// there is one. The frames stay held until [`Outbox::settle`].
    pub async fn next_chunk(&self) -> (Bytes, usize) {
        self.buffer.next_chunk().await
    }

    /// Settles `frames` frames of `bytes` bytes (`failed` when they were
    /// lost rather than delivered): their room goes back to the buffer and
    /// `flush` counts them.
    pub fn settle(&self, frames: usize, bytes: usize, failed: bool) {
        if failed {
            self.counters.failed.fetch_add(frames as u64, Ordering::Relaxed);
        }
        self.counters.settled.fetch_add(frames as u64, Ordering::Relaxed);
        // Last: it wakes the flushes, which then see the counts.
        self.buffer.release(frames, bytes);
    }

    /// Gives a settled chunk's memory back for reuse.
    pub fn recycle(&self, chunk: Bytes) {
        self.buffer.recycle(chunk);
    }

    /// Waits until everything published before the call is settled, or
    /// `deadline` passes, or the publisher gives up.
    ///
    /// "Settled" is by position, not by count: the flush is done once every
    /// frame pushed before it is settled or was dropped (`drop_oldest`), so
    /// drops of later frames never stand in for earlier ones still in
    /// flight.
    pub async fn flush(&self, deadline: Duration) -> Flushed {
        let target = self.buffer.pushed();
        let mut retired = self.buffer.retired();
        let wait = retired.wait_for(|&through| through >= target || self.state() == ConnectionState::Failed);
        let _ = tokio::time::timeout(deadline, wait).await;
        let through = *self.buffer.retired().borrow();
        if through >= target {
            return Flushed::Done;
        }
        if let Some(reason) = self.gave_up() {
            return Flushed::GaveUp(reason);
        }
        Flushed::Pending(target - through)
    }

    /// Gives up for `reason`: later pushes fail with it, queued frames are
    /// discarded (counted failed, never settled), and flushes return the
    /// reason.
    pub fn give_up(&self, reason: &str) {
        *self.gave_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_owned());
        self.set_state(ConnectionState::Failed);
        // Closing wakes waiting flushes: they report the reason.
        let discarded = self.buffer.close(reason);
        self.counters.failed.fetch_add(discarded as u64, Ordering::Relaxed);
    }

    /// Refuses later pushes with `reason` (flushes return it) while keeping
    /// what is queued: the loop still tries, every `backoff_max`, and the
    /// next connection undoes this ([`Outbox::recover`]).
    fn refuse_for_now(&self, reason: &str) {
        *self.gave_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_owned());
        self.state.store(2, Ordering::Release);
        // Wakes waiting flushes: they report the reason.
        self.buffer.refuse(Some(reason));
    }

    /// Undoes [`Outbox::refuse_for_now`]: pushes are accepted again.
    fn recover(&self) {
        *self.gave_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.buffer.refuse(None);
        self.state.store(1, Ordering::Release);
    }

    /// Drops the current connection, or cuts short a wait between
    /// attempts, and connects again at once: after the link's endpoint or
    /// credentials changed. What was sent and not settled is the link's to
    /// resend on the new connection.
    pub fn reconnect_now(&self) {
        self.reconnect_now.notify_one();
    }

    /// New backoff, `max_reconnects` and connect timeout, in force from the
    /// loop's next attempt.
    pub fn set_reconnect_options(&self, options: ReconnectOptions) {
        *self.new_options.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(options);
    }

    /// Why the publisher gave up, if it did.
    pub fn gave_up(&self) -> Option<String> {
        self.gave_up.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        match self.state.load(Ordering::Acquire) {
            1 => ConnectionState::Connected,
            2 => ConnectionState::Failed,
            _ => ConnectionState::Connecting,
        }
    }

    /// Records where the connection stands (a failed publisher stays failed).
    pub fn set_state(&self, state: ConnectionState) {
        let value = match state {
            ConnectionState::Connecting => 0,
            ConnectionState::Connected => 1,
            ConnectionState::Failed => 2,
        };
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| (now != 2).then_some(value));
    }

    /// Frames taken (sent) and not yet settled: what a new connection resends.
    pub fn in_flight(&self) -> usize {
        let (queued, held, _) = self.buffer.occupancy();
        held.saturating_sub(queued)
    }

    /// Bytes held now: queued, or taken and not yet settled.
    pub fn buffered_bytes(&self) -> usize {
        self.buffer.occupancy().2
    }

    /// Messages dropped by the buffer's policy: `(drop_newest, drop_oldest)`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.buffer.dropped_newest(), self.buffer.dropped_oldest())
    }

    /// The counts.
    pub fn counters(&self) -> &PublisherCounters {
        &self.counters
    }

    /// The buffer's bounds.
    pub fn limits(&self) -> BufferLimits {
        self.buffer.limits()
    }

    /// New buffer bounds, deadline and policy, from the next push; nothing
    /// queued is dropped when they shrink.
    pub fn set_limits(&self, limits: BufferLimits) {
        self.buffer.set_limits(limits);
    }

    /// The longest frame the peer accepts (bytes as pushed); returns the
    /// limit it replaces ([`FrameBuffer::set_max_frame`]).
    pub fn set_max_frame(&self, max: usize) -> usize {
        self.buffer.set_max_frame(max)
    }
}

/// One transport's way to connect and to run a connection, driven by
/// [`reconnect`].
pub trait Link: Send {
    /// A connected, greeted connection.
    type Session: Send;
    /// Why an attempt or a session failed.
    type Error: std::fmt::Display + Send;

    /// Connects and says hello; called once per attempt (within the
    /// connect timeout).
    fn connect(&mut self) -> impl Future<Output = Result<Self::Session, Self::Error>> + Send;

    /// Runs one connection until it ends, settling what it delivers. It
    /// may be dropped at any await ([`Outbox::reconnect_now`]): what it
    /// wrote and did not settle must be resent by the next session.
    fn run(&mut self, session: Self::Session) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Where it connects, for logs.
    fn peer(&self) -> String;

    /// After `max_reconnects` consecutive failed attempts: `false` gives up
    /// for good (queued frames discarded, counted failed); `true` fails
    /// publishes at once while still trying every `backoff_max`, keeping
    /// what is queued, and the next connection clears the failure.
    const KEEP_TRYING: bool = false;
}

/// A connection that stays up this long forgets past failures.
const STABLE_AFTER: Duration = Duration::from_secs(1);

/// Connects `link`, runs it, and reconnects with jittered backoff. After
/// `max_reconnects` consecutive failed attempts it gives
/// `outbox` up with `give_up(attempts)` as the reason: for good, or (with
/// [`Link::KEEP_TRYING`]) until the next connection, retrying every
/// `backoff_max`. A lost or refused connection is a WARN and the recovery an
/// INFO, each at most once a second; each failed attempt is counted in
/// `connect_failures`.
pub async fn reconnect<L: Link>(
    outbox: &Outbox,
    options: ReconnectOptions,
    mut link: L,
    give_up: impl Fn(u32) -> String + Send,
) {
    let mut options = options;
    let mut backoff = Backoff::new(options.backoff_base, options.backoff_max);
    // Failed attempts since the last connection.
    let mut failures: u32 = 0;
    let warn_limit = OnceASecond::default();
    let info_limit = OnceASecond::default();
    // Since when the publisher has been without a connection it had.
    let mut lost_at: Option<Instant> = None;
    loop {
        let new_options = outbox.new_options.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(new) = new_options {
            if (new.backoff_base, new.backoff_max) != (options.backoff_base, options.backoff_max) {
                backoff = Backoff::new(new.backoff_base, new.backoff_max);
            }
            options = new;
        }
        let mut moved = false;
        match tokio::time::timeout(options.connect_timeout, link.connect()).await {
            Ok(Ok(session)) => {
                failures = 0;
                outbox.counters.connects.fetch_add(1, Ordering::Relaxed);
                if outbox.state() == ConnectionState::Failed {
                    outbox.recover();
                }
                outbox.set_state(ConnectionState::Connected);
                if let Some(lost) = lost_at.take()
                    && info_limit.ready()
                {
                    tracing::info!(
                        peer = %link.peer(),
                        after = ?lost.elapsed(),
                        resent = outbox.in_flight(),
                        "connected again; unsettled messages are resent"
                    );
                }
                let up_since = Instant::now();
                let ended = tokio::select! {
                    result = link.run(session) => Some(result),
                    () = outbox.reconnect_now.notified() => None,
                };
                outbox.set_state(ConnectionState::Connecting);
                match ended {
                    None => {
                        moved = true;
                        tracing::info!(peer = %link.peer(), "connection settings changed: reconnecting; unsettled messages are resent");
                    }
                    Some(result) => {
                        lost_at = Some(Instant::now());
                        let error = result.err().map_or_else(|| "closed".to_owned(), |error| error.to_string());
                        if warn_limit.ready() {
                            tracing::warn!(
                                peer = %link.peer(),
                                %error,
                                buffered_bytes = outbox.buffered_bytes(),
                                "lost the connection; publishes are buffered and unsettled ones resent after reconnecting"
                            );
                        }
                    }
                }
                if up_since.elapsed() >= STABLE_AFTER {
                    backoff.reset();
                }
            }
            failure => {
                let error = match failure {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no connection within {:?}", options.connect_timeout),
                };
                tracing::debug!(%error, peer = %link.peer(), "connect failed");
                outbox.counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                failures = failures.saturating_add(1);
                let exceeded = options.max_reconnects.is_some_and(|max| failures >= max);
                if exceeded && !L::KEEP_TRYING {
                    outbox.give_up(&give_up(failures));
                    return;
                }
                if exceeded && outbox.state() != ConnectionState::Failed {
                    let reason = give_up(failures);
                    tracing::warn!(peer = %link.peer(), %error, %reason, "publishes fail at once until a connection is back; still trying");
                    outbox.refuse_for_now(&reason);
                } else if failures == 1 && lost_at.is_none() && warn_limit.ready() {
                    tracing::warn!(peer = %link.peer(), %error, "cannot connect; publishes are buffered");
                }
                lost_at.get_or_insert_with(Instant::now);
            }
        }
        if moved {
            continue;
        }
        let delay = if outbox.state() == ConnectionState::Failed { options.backoff_max } else { backoff.next_delay() };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = outbox.reconnect_now.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BufMut;

    use super::*;
    use crate::buffer::FullPolicy;

    /// Test frames: `[len u8][len bytes]`.
    fn byte_prefixed(bytes: &[u8]) -> usize {
        1 + usize::from(bytes.first().copied().unwrap_or(0))
    }

    fn outbox() -> Outbox {
        let limits = BufferLimits {
            max_bytes: 100,
            max_messages: 10,
            deadline: Duration::from_millis(50),
            ..Default::default()
        };
        Outbox::new(limits, byte_prefixed)
    }

    fn push(outbox: &Outbox, value: u8) {
        outbox
            .try_push(2, |dst| {
                dst.put_u8(1);
                dst.put_u8(value);
            })
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn flush_waits_for_every_message_published_before_it_to_settle() {
        let outbox = outbox();
        push(&outbox, 1);
        push(&outbox, 2);
        assert_eq!(outbox.flush(Duration::from_millis(10)).await, Flushed::Pending(2));
        let (chunk, frames) = outbox.next_chunk().await;
        outbox.settle(frames, chunk.len(), false);
        assert_eq!(outbox.flush(Duration::from_millis(10)).await, Flushed::Done);
        assert_eq!(outbox.buffered_bytes(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn drops_of_later_messages_never_stand_in_for_earlier_ones_still_in_flight() {
        let limits = BufferLimits {
            max_bytes: 1000,
            max_messages: 4,
            deadline: Duration::from_millis(50),
            policy: FullPolicy::DropOldest,
        };
        let outbox = Arc::new(Outbox::new(limits, byte_prefixed));
        push(&outbox, 1);
        push(&outbox, 2);
        let (chunk, frames) = outbox.next_chunk().await;
        assert_eq!(frames, 2, "1 and 2 in flight");
        let flush = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.flush(Duration::from_secs(1)).await }
        });
        tokio::task::yield_now().await;
        // Later publishes overflow: four of them are dropped, oldest first.
        for value in 3..=8 {
            push(&outbox, value);
        }
        assert_eq!(outbox.buffer.dropped_oldest(), 4);
        tokio::task::yield_now().await;
        assert!(!flush.is_finished(), "1 and 2 are not settled");
        outbox.settle(frames, chunk.len(), true);
        assert_eq!(flush.await.unwrap(), Flushed::Done);
        // A flush now waits for 7 and 8, then is done once they are.
        assert_eq!(outbox.flush(Duration::from_millis(10)).await, Flushed::Pending(2));
        let (chunk, frames) = outbox.next_chunk().await;
        assert_eq!(&chunk[..], &[1, 7, 1, 8]);
        outbox.settle(frames, chunk.len(), false);
        assert_eq!(outbox.flush(Duration::from_millis(10)).await, Flushed::Done);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_dropped_with_nothing_older_in_flight_retire_at_once() {
        let limits =
            BufferLimits { max_bytes: 1000, max_messages: 2, deadline: Duration::ZERO, policy: FullPolicy::DropOldest };
        let outbox = Outbox::new(limits, byte_prefixed);
        for value in 1..=5 {
            push(&outbox, value);
        }
        assert_eq!(outbox.buffer.dropped_oldest(), 3);
        assert_eq!(outbox.flush(Duration::from_millis(10)).await, Flushed::Pending(2), "4 and 5 queued");
        let (chunk, frames) = outbox.next_chunk().await;
        outbox.settle(frames, chunk.len(), false);
        assert_eq!(outbox.flush(Duration::ZERO).await, Flushed::Done);
    }

    /// A link that never connects.
    struct Unreachable(Arc<AtomicU64>);

    impl Link for Unreachable {
        type Session = ();
        type Error = &'static str;

        async fn connect(&mut self) -> Result<(), &'static str> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err("refused")
        }

        async fn run(&mut self, (): ()) -> Result<(), &'static str> {
            Ok(())
        }

        fn peer(&self) -> String {
            "nowhere".to_owned()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn after_max_reconnects_failed_attempts_the_outbox_gives_up_and_discards_its_frames() {
        let outbox = outbox();
        push(&outbox, 1);
        let attempts = Arc::new(AtomicU64::new(0));
        let options = ReconnectOptions { max_reconnects: Some(3), ..ReconnectOptions::default() };
        reconnect(&outbox, options, Unreachable(Arc::clone(&attempts)), |n| format!("gave up after {n}")).await;
        assert_eq!(attempts.load(Ordering::Relaxed), 3, "three failed attempts in a row");
        assert_eq!(outbox.state(), ConnectionState::Failed);
        assert_eq!(outbox.flush(Duration::from_secs(1)).await, Flushed::GaveUp("gave up after 3".to_owned()));
        assert_eq!(outbox.counters().failed.load(Ordering::Relaxed), 1);
        assert_eq!(
            outbox.try_push(2, |dst| dst.put_slice(&[1, 9])),
            Err(PushError::Closed("gave up after 3".to_owned()))
        );
        outbox.set_state(ConnectionState::Connected);
        assert_eq!(outbox.state(), ConnectionState::Failed, "failed stays failed");
    }

    /// A link that keeps trying, refused until its `up_after`th attempt,
    /// whose sessions never end.
    struct Late {
        attempts: Arc<AtomicU64>,
        up_after: u64,
    }

    impl Link for Late {
        type Session = ();
        type Error = &'static str;
        const KEEP_TRYING: bool = true;

        async fn connect(&mut self) -> Result<(), &'static str> {
            let attempt = self.attempts.fetch_add(1, Ordering::Relaxed) + 1;
            if attempt < self.up_after { Err("refused") } else { Ok(()) }
        }

        async fn run(&mut self, (): ()) -> Result<(), &'static str> {
            std::future::pending().await
        }

        fn peer(&self) -> String {
            "later".to_owned()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_link_that_keeps_trying_fails_fast_past_max_reconnects_keeps_its_frames_and_recovers() {
        let outbox = Arc::new(outbox());
        push(&outbox, 1);
        let attempts = Arc::new(AtomicU64::new(0));
        let options = ReconnectOptions { max_reconnects: Some(3), ..ReconnectOptions::default() };
        let link = Late { attempts: Arc::clone(&attempts), up_after: 8 };
        let task = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { reconnect(&outbox, options, link, |n| format!("failed {n}")).await }
        });
        while outbox.state() != ConnectionState::Failed {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(attempts.load(Ordering::Relaxed), 3, "three failed attempts in a row");
        assert_eq!(outbox.try_push(2, |dst| dst.put_slice(&[1, 9])), Err(PushError::Closed("failed 3".to_owned())));
        assert_eq!(outbox.flush(Duration::from_secs(1)).await, Flushed::GaveUp("failed 3".to_owned()));
        assert_eq!(outbox.buffered_bytes(), 2, "what was queued is kept");
        // Still trying, every backoff_max (5 s): four more refusals, then up.
        let before = tokio::time::Instant::now();
        while outbox.state() != ConnectionState::Connected {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(before.elapsed() >= Duration::from_secs(15), "retried every backoff_max: {:?}", before.elapsed());
        assert_eq!(outbox.counters().connect_failures.load(Ordering::Relaxed), 7);
        assert_eq!(outbox.gave_up(), None, "the connection cleared the failure");
        push(&outbox, 2);
        assert_eq!(outbox.buffered_bytes(), 4);
        task.abort();
    }
}
