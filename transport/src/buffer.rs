//! The bounded publish buffer shared by the broker and relay clients
//! (broker spec §4): producers push without waiting while there is room; the
//! connection task pops batches; room is given back when a message is
//! acknowledged (broker) or written (relay), so unacknowledged messages count
//! against the bounds too.
//!
//! When full, the policy decides: `block` (wait up to the deadline, then
//! `buffer_full`), `drop_newest` or `drop_oldest` (counted). It deliberately
//! knows nothing of sockets or frames.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// What to do with a push when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Wait for room up to the deadline, then fail with `buffer_full`.
    #[default]
    Block,
    /// Drop the message being pushed (counted).
    DropNewest,
    /// Drop the oldest message not yet handed to the connection (counted).
    DropOldest,
}

/// The buffer's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferLimits {
    /// Bytes held at most (queued plus unacknowledged).
    pub max_bytes: usize,
    /// Messages held at most.
    pub max_messages: usize,
    /// How long a blocked push waits.
    pub deadline: Duration,
    /// The policy when full.
    pub policy: FullPolicy,
}

impl Default for BufferLimits {
    fn default() -> Self {
        BufferLimits {
            max_bytes: 64 * 1024 * 1024,
            max_messages: 1_000_000,
            deadline: Duration::from_secs(5),
            policy: FullPolicy::Block,
        }
    }
}

/// Why a push did not queue the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// Full past the deadline (`block`), or full with no waiting allowed.
    #[error("buffer_full: the publish buffer stayed full")]
    Full,
    /// Full, and the message was dropped (`drop_newest`).
    #[error("buffer_full: message dropped (drop_newest)")]
    Dropped,
    /// The buffer was closed; the reason says why (e.g. `max_reconnects_exceeded`).
    #[error("{0}")]
    Closed(String),
    /// A single message larger than the whole buffer.
    #[error("message of {0} bytes is larger than the publish buffer")]
    TooLarge(usize),
}

#[derive(Debug)]
struct Inner<T> {
    queue: VecDeque<(T, usize)>,
    /// Bytes of queued plus popped-but-unreleased messages.
    held_bytes: usize,
    /// Count of queued plus popped-but-unreleased messages.
    held_messages: usize,
    closed: Option<String>,
}

/// A bounded multi-producer, single-consumer buffer of messages of type `T`.
#[derive(Debug)]
pub struct PublishBuffer<T> {
    limits: BufferLimits,
    inner: Mutex<Inner<T>>,
    /// Wakes the consumer when items arrive.
    ready: Notify,
    /// Wakes blocked producers when room is released.
    room: Notify,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
}

impl<T> PublishBuffer<T> {
    /// An empty buffer.
    pub fn new(limits: BufferLimits) -> PublishBuffer<T> {
        PublishBuffer {
            limits,
            inner: Mutex::new(Inner { queue: VecDeque::new(), held_bytes: 0, held_messages: 0, closed: None }),
            ready: Notify::new(),
            room: Notify::new(),
            dropped_newest: AtomicU64::new(0),
            dropped_oldest: AtomicU64::new(0),
        }
    }

    /// The limits.
    pub fn limits(&self) -> BufferLimits {
        self.limits
    }

    /// Queues `item` of `bytes` bytes, waiting for room per the policy.
    ///
    /// # Errors
    /// [`PushError`] when it was not queued.
    pub async fn push(&self, item: T, bytes: usize) -> Result<(), PushError> {
        let deadline = tokio::time::Instant::now() + self.limits.deadline;
        let mut item = item;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_push_inner(item, bytes) {
                Ok(()) => return Ok(()),
                Err((returned, PushError::Full)) if self.limits.policy == FullPolicy::Block => item = returned,
                Err((_, error)) => return Err(error),
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(PushError::Full);
            }
        }
    }

    /// Queues `item` without waiting (`block` fails at once with `Full`).
    ///
    /// # Errors
    /// [`PushError`] when it was not queued.
    pub fn try_push(&self, item: T, bytes: usize) -> Result<(), PushError> {
        self.try_push_inner(item, bytes).map_err(|(_, error)| error)
    }

    fn try_push_inner(&self, item: T, bytes: usize) -> Result<(), (T, PushError)> {
        if bytes > self.limits.max_bytes {
            return Err((item, PushError::TooLarge(bytes)));
        }
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err((item, PushError::Closed(reason.clone())));
        }
        let fits = |inner: &Inner<T>| {
            inner.held_bytes + bytes <= self.limits.max_bytes && inner.held_messages < self.limits.max_messages
        };
        if !fits(&inner) {
            match self.limits.policy {
                FullPolicy::Block => return Err((item, PushError::Full)),
                FullPolicy::DropNewest => {
                    self.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return Err((item, PushError::Dropped));
                }
                FullPolicy::DropOldest => {
                    while !fits(&inner) {
                        let Some((_, old_bytes)) = inner.queue.pop_front() else {
                            // Everything held is in flight: nothing to drop but this one.
                            self.dropped_newest.fetch_add(1, Ordering::Relaxed);
                            return Err((item, PushError::Dropped));
                        };
                        inner.held_bytes -= old_bytes;
                        inner.held_messages -= 1;
                        self.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        inner.queue.push_back((item, bytes));
        inner.held_bytes += bytes;
        inner.held_messages += 1;
        drop(inner);
        self.ready.notify_one();
        Ok(())
    }

    /// Moves up to `max` queued items to `out` (they stay counted as held
    /// until [`PublishBuffer::release`]); returns how many.
    pub fn pop_batch(&self, out: &mut Vec<(T, usize)>, max: usize) -> usize {
        let mut inner = self.lock();
        let n = inner.queue.len().min(max);
        out.extend(inner.queue.drain(..n));
        n
    }

    /// Waits until items are queued (returns at once if some are).
    pub async fn ready(&self) {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.lock().queue.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Gives back room held by `messages` messages of `bytes` bytes in all.
    pub fn release(&self, messages: usize, bytes: usize) {
        let mut inner = self.lock();
        inner.held_messages = inner.held_messages.saturating_sub(messages);
        inner.held_bytes = inner.held_bytes.saturating_sub(bytes);
        drop(inner);
        self.room.notify_waiters();
    }

    /// Fails every later push (and waiting ones) with `reason`; returns the
    /// items still queued so the caller can fail or count them.
    pub fn close(&self, reason: &str) -> Vec<(T, usize)> {
        let mut inner = self.lock();
        inner.closed = Some(reason.to_owned());
        let left: Vec<_> = inner.queue.drain(..).collect();
        inner.held_messages = 0;
        inner.held_bytes = 0;
        drop(inner);
        self.room.notify_waiters();
        left
    }

    /// `(queued, held messages, held bytes)` now.
    pub fn occupancy(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.queue.len(), inner.held_messages, inner.held_bytes)
    }

    /// Messages dropped by `drop_newest` (or `drop_oldest` with nothing older to drop).
    pub fn dropped_newest(&self) -> u64 {
        self.dropped_newest.load(Ordering::Relaxed)
    }

    /// Messages dropped by `drop_oldest`.
    pub fn dropped_oldest(&self) -> u64 {
        self.dropped_oldest.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding this lock cannot leave the counters torn in a
        // way that matters more than stopping would, so poison is ignored.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn limits(policy: FullPolicy) -> BufferLimits {
        BufferLimits { max_bytes: 100, max_messages: 3, deadline: Duration::from_millis(50), policy }
    }

    #[test]
    fn drop_newest_and_drop_oldest_are_counted() {
        let buffer = PublishBuffer::new(limits(FullPolicy::DropNewest));
        for n in 0..3 {
            buffer.try_push(n, 10).unwrap();
        }
        assert_eq!(buffer.try_push(3, 10), Err(PushError::Dropped));
        assert_eq!(buffer.dropped_newest(), 1);

        let buffer = PublishBuffer::new(limits(FullPolicy::DropOldest));
        for n in 0..5 {
            buffer.try_push(n, 10).unwrap();
        }
        let mut out = Vec::new();
        buffer.pop_batch(&mut out, 10);
        assert_eq!(out.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [2, 3, 4]);
        assert_eq!(buffer.dropped_oldest(), 2);
        // All three are in flight now: nothing older can be dropped.
        assert_eq!(buffer.try_push(5, 10), Err(PushError::Dropped));
        buffer.release(1, 10);
        assert_eq!(buffer.try_push(6, 10), Ok(()));
    }

    #[test]
    fn bytes_bound_the_buffer_too() {
        let buffer = PublishBuffer::new(limits(FullPolicy::Block));
        buffer.try_push(1, 60).unwrap();
        assert_eq!(buffer.try_push(2, 60), Err(PushError::Full));
        assert_eq!(buffer.try_push(3, 101), Err(PushError::TooLarge(101)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_push_waits_for_room_then_gives_up_at_the_deadline() {
        let buffer = Arc::new(PublishBuffer::new(limits(FullPolicy::Block)));
        for n in 0..3 {
            buffer.push(n, 1).await.unwrap();
        }
        assert_eq!(buffer.push(9, 1).await, Err(PushError::Full), "nothing released within the deadline");
        let waiter = tokio::spawn({
            let buffer = Arc::clone(&buffer);
            async move { buffer.push(4, 1).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let mut out = Vec::new();
        buffer.pop_batch(&mut out, 1);
        buffer.release(1, 1);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn close_fails_pushes_with_the_reason() {
        let buffer = PublishBuffer::new(limits(FullPolicy::Block));
        buffer.try_push(1, 1).unwrap();
        assert_eq!(buffer.close("max_reconnects_exceeded").len(), 1);
        assert_eq!(buffer.push(2, 1).await, Err(PushError::Closed("max_reconnects_exceeded".to_owned())));
    }
}
