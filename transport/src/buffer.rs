//! The bounded publish buffer under every client's `Outbox`
//! (`docs/broker-protocol.md`, the client). Producers encode their frame straight into one shared
//! byte buffer (no allocation per message); the connection task takes
//! everything queued as one `Bytes` chunk and writes it with one call. Room
//! is given back only when the caller says so — on acknowledgement (broker)
//! or once written (relay) — so unacknowledged messages count against the
//! bounds too.
//!
//! When full, the policy decides: `block` (wait up to the deadline, then
//! `buffer_full`), `drop_newest` or `drop_oldest` (counted). Frames must be
//! self-delimiting: the buffer finds the oldest frame's end with the
//! `frame_len` function it was given. It deliberately knows nothing of
//! sockets.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::{Notify, watch};

/// What to do with a push when the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FullPolicy {
    /// Wait for room up to the deadline, then fail with `buffer_full`.
    #[default]
    Block,
    /// Drop the message being pushed (counted).
    DropNewest,
    /// Drop the oldest message not yet taken by the connection (counted).
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
    /// A frame longer than the peer accepts ([`FrameBuffer::set_max_frame`]):
    /// the peer would refuse it and close the connection at every resend.
    #[error("message_too_large: a frame of {len} bytes is over the peer's limit of {max} bytes")]
    OverPeerLimit {
        /// The frame's length.
        len: usize,
        /// The peer's limit in force.
        max: usize,
    },
}

/// What [`FrameBuffer::try_push_each`] did with a run of frames.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunPushed {
    /// Frames queued.
    pub queued: usize,
    /// The index in the run of the last frame queued.
    pub newest: Option<usize>,
    /// Why the first refused frame was refused (`Full` for one that would
    /// have waited under `block`).
    pub refused: Option<PushError>,
}

/// Capacity of each block frames are encoded into: one block is one write.
const BLOCK: usize = 64 * 1024;
/// Recycled blocks kept at most.
const POOL: usize = 512;

#[derive(Debug)]
struct Inner {
    /// The bounds in force; changed live by [`FrameBuffer::set_limits`],
    /// read under the same lock as the counts they bound.
    limits: BufferLimits,
    /// Full blocks of encoded frames, oldest first, with their frame counts.
    full: VecDeque<(BytesMut, usize)>,
    /// The block being filled, and its frame count.
    current: BytesMut,
    current_frames: usize,
    /// Blocks given back by [`FrameBuffer::recycle`]: reusing them spares the
    /// page faults of fresh memory on the hot path.
    pool: Vec<BytesMut>,
    /// Frames queued (in `full` and `current`).
    queued_frames: usize,
    /// Bytes of queued plus taken-but-unreleased frames.
    held_bytes: usize,
    /// Count of queued plus taken-but-unreleased frames.
    held_frames: usize,
    /// Longest frame accepted, as the peer said (unbounded until set).
    max_frame: usize,
    closed: Option<String>,
    /// Frames pushed so far: a frame's sequence number is its place here.
    pushed: u64,
    /// What left the queue at its head and is not retired yet, oldest
    /// first: runs of taken frames (settled in take order by
    /// [`FrameBuffer::release`]) and of dropped ones. Never starts with a
    /// dropped run: those retire at once when nothing older is in flight.
    removed: VecDeque<Removed>,
    /// Every frame up to this sequence number is settled or dropped.
    retired_through: u64,
}

/// A run of frames that left the queue at its head.
#[derive(Debug, Clone, Copy)]
struct Removed {
    frames: u64,
    dropped: bool,
}

impl Inner {
    fn fresh_block(&mut self, at_least: usize) -> BytesMut {
        match self.pool.pop() {
            Some(block) if block.capacity() >= at_least => block,
            _ => BytesMut::with_capacity(BLOCK.max(at_least)),
        }
    }

    /// Records `frames` frames leaving the queue at its head, taken (to be
    /// released) or dropped.
    fn removed(&mut self, frames: usize, dropped: bool) {
        let frames = frames as u64;
        if frames == 0 {
            return;
        }
        match self.removed.back_mut() {
            Some(last) if last.dropped == dropped => last.frames += frames,
            _ => self.removed.push_back(Removed { frames, dropped }),
        }
        self.retire_dropped();
    }

    /// Retires the dropped runs at the front: nothing older is in flight.
    fn retire_dropped(&mut self) {
        while let Some(front) = self.removed.front()
            && front.dropped
        {
            self.retired_through += front.frames;
            self.removed.pop_front();
        }
    }

    /// Retires `frames` taken frames, oldest first (and the dropped runs
    /// that were waiting behind them).
    fn settle(&mut self, frames: usize) {
        let mut left = frames as u64;
        while left > 0
            && let Some(front) = self.removed.front_mut()
        {
            let settled = left.min(front.frames);
            front.frames -= settled;
            self.retired_through += settled;
            left -= settled;
            if front.frames == 0 {
                self.removed.pop_front();
            }
            self.retire_dropped();
        }
    }

    /// Removes the oldest queued frame; returns its length.
    fn drop_oldest(&mut self, frame_len: fn(&[u8]) -> usize) -> usize {
        let (block, frames) = match self.full.front_mut() {
            Some((block, frames)) => (block, frames),
            None => (&mut self.current, &mut self.current_frames),
        };
        let len = frame_len(block).min(block.len());
        block.advance(len);
        *frames -= 1;
        if *frames == 0 && !self.full.is_empty() {
            self.full.pop_front();
        }
        self.queued_frames -= 1;
        self.removed(1, true);
        len
    }
}

/// A bounded multi-producer, single-consumer buffer of encoded frames.
#[derive(Debug)]
pub struct FrameBuffer {
    /// The length of the complete frame at the start of a byte slice.
    frame_len: fn(&[u8]) -> usize,
    inner: Mutex<Inner>,
    /// Wakes the consumer when the queue becomes non-empty.
    ready: Notify,
    /// Wakes blocked producers when room is released.
    room: Notify,
    dropped_newest: AtomicU64,
    dropped_oldest: AtomicU64,
    /// `Inner::retired_through`, for flushes to wait on.
    retired: watch::Sender<u64>,
}

impl FrameBuffer {
    /// An empty buffer whose frames are delimited by `frame_len`.
    pub fn new(limits: BufferLimits, frame_len: fn(&[u8]) -> usize) -> FrameBuffer {
        FrameBuffer {
            frame_len,
            inner: Mutex::new(Inner {
                limits,
                full: VecDeque::new(),
                current: BytesMut::with_capacity(BLOCK),
                current_frames: 0,
                pool: Vec::new(),
                queued_frames: 0,
                held_bytes: 0,
                held_frames: 0,
                max_frame: usize::MAX,
                closed: None,
                pushed: 0,
                removed: VecDeque::new(),
                retired_through: 0,
            }),
            ready: Notify::new(),
            room: Notify::new(),
            dropped_newest: AtomicU64::new(0),
            dropped_oldest: AtomicU64::new(0),
            retired: watch::Sender::new(0),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> BufferLimits {
        self.lock().limits
    }

    /// New bounds, deadline and policy, in force from the next push (a
    /// push waiting now re-checks at once). Nothing held is dropped when
    /// the bounds shrink: pushes wait (or drop, per the policy) until the
    /// connection releases enough room.
    pub fn set_limits(&self, limits: BufferLimits) {
        self.lock().limits = limits;
        self.room.notify_waiters();
    }

    /// The longest frame the peer accepts, in bytes as pushed: a longer one
    /// is refused with [`PushError::OverPeerLimit`] from the next push.
    /// Returns the limit it replaces. Frames already queued stay; a caller
    /// lowering the limit filters what it takes.
    pub fn set_max_frame(&self, max: usize) -> usize {
        std::mem::replace(&mut self.lock().max_frame, max)
    }

    /// Queues one frame of `len` bytes, written by `encode`, waiting for room
    /// per the policy.
    ///
    /// # Errors
    /// [`PushError`] when it was not queued.
    pub async fn push(&self, len: usize, encode: impl FnOnce(&mut BytesMut)) -> Result<(), PushError> {
        let mut encode = Some(encode);
        if let Some(result) = self.push_now(len, &mut encode) {
            return result;
        }
        let deadline = tokio::time::Instant::now() + self.limits().deadline;
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(result) = self.push_now(len, &mut encode) {
                return result;
            }
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return Err(PushError::Full);
            }
        }
    }

    /// Queues one frame without waiting (`block` fails at once with `Full`).
    ///
    /// # Errors
    /// [`PushError`] when it was not queued.
    pub fn try_push(&self, len: usize, encode: impl FnOnce(&mut BytesMut)) -> Result<(), PushError> {
        self.push_now(len, &mut Some(encode)).unwrap_or(Err(PushError::Full))
    }

    /// Pushes if the policy allows now; `None` means "full, wait" (`block`).
    fn push_now(&self, len: usize, encode: &mut Option<impl FnOnce(&mut BytesMut)>) -> Option<Result<(), PushError>> {
        let mut inner = self.lock();
        let was_empty = inner.queued_frames == 0;
        let pushed = self.push_locked(&mut inner, len, encode);
        drop(inner);
        if was_empty && matches!(pushed, Some(Ok(()))) {
            self.ready.notify_one();
        }
        pushed
    }

    /// Queues frames without waiting, in order, under one lock: `frames`
    /// yields each frame's length and its encoder, and each is judged on
    /// its own, as [`FrameBuffer::try_push`] would (a refused one is
    /// counted and skipped; those after it are still tried). For callers
    /// with a run of messages at hand (a relay read batch), so the lock and
    /// the consumer's wake-up are paid once per run.
    pub fn try_push_each<E: FnOnce(&mut BytesMut)>(&self, frames: impl IntoIterator<Item = (usize, E)>) -> RunPushed {
        let mut inner = self.lock();
        let was_empty = inner.queued_frames == 0;
        let mut pushed = RunPushed::default();
        for (index, (len, encode)) in frames.into_iter().enumerate() {
            match self.push_locked(&mut inner, len, &mut Some(encode)) {
                Some(Ok(())) => {
                    pushed.queued += 1;
                    pushed.newest = Some(index);
                }
                Some(Err(error)) => {
                    pushed.refused.get_or_insert(error);
                }
                None => {
                    pushed.refused.get_or_insert(PushError::Full);
                }
            }
        }
        drop(inner);
        if was_empty && pushed.queued > 0 {
            self.ready.notify_one();
        }
        pushed
    }

    /// [`FrameBuffer::push_now`] under the caller's lock.
    fn push_locked(
        &self,
        inner: &mut Inner,
        len: usize,
        encode: &mut Option<impl FnOnce(&mut BytesMut)>,
    ) -> Option<Result<(), PushError>> {
        let limits = inner.limits;
        if len > limits.max_bytes {
            return Some(Err(PushError::TooLarge(len)));
        }
        if len > inner.max_frame {
            return Some(Err(PushError::OverPeerLimit { len, max: inner.max_frame }));
        }
        if let Some(reason) = &inner.closed {
            return Some(Err(PushError::Closed(reason.clone())));
        }
        let fits =
            |inner: &Inner| inner.held_bytes + len <= limits.max_bytes && inner.held_frames < limits.max_messages;
        if !fits(inner) {
            match limits.policy {
                FullPolicy::Block => return None,
                FullPolicy::DropNewest => {
                    self.dropped_newest.fetch_add(1, Ordering::Relaxed);
                    return Some(Err(PushError::Dropped));
                }
                FullPolicy::DropOldest => {
                    while !fits(inner) {
                        if inner.queued_frames == 0 {
                            // Everything held is in flight: nothing to drop but this one.
                            self.dropped_newest.fetch_add(1, Ordering::Relaxed);
                            return Some(Err(PushError::Dropped));
                        }
                        let old_len = inner.drop_oldest(self.frame_len);
                        inner.held_bytes -= old_len;
                        inner.held_frames -= 1;
                        self.dropped_oldest.fetch_add(1, Ordering::Relaxed);
                    }
                    self.retired.send_replace(inner.retired_through);
                }
            }
        }
        if inner.current.len() + len > inner.current.capacity() {
            // A full block is queued whole; the empty rest of a block split
            // by `take` is dropped (its memory goes with its last chunk).
            let block = inner.fresh_block(len);
            let full = std::mem::replace(&mut inner.current, block);
            if !full.is_empty() {
                let frames = std::mem::take(&mut inner.current_frames);
                inner.full.push_back((full, frames));
            }
        }
        let before = inner.current.len();
        if let Some(encode) = encode.take() {
            encode(&mut inner.current);
        }
        let written = inner.current.len() - before;
        inner.current_frames += 1;
        inner.queued_frames += 1;
        inner.held_bytes += written;
        inner.held_frames += 1;
        inner.pushed += 1;
        Some(Ok(()))
    }

    /// Takes the oldest block of queued frames (about 64 KiB, whole frames)
    /// as one chunk, with the number of frames in it. They stay counted as
    /// held until [`FrameBuffer::release`].
    pub fn take(&self) -> Option<(Bytes, usize)> {
        let mut inner = self.lock();
        if let Some((block, frames)) = inner.full.pop_front() {
            inner.queued_frames -= frames;
            inner.removed(frames, false);
            return Some((block.freeze(), frames));
        }
        if inner.current_frames == 0 {
            return None;
        }
        // Only the filled part leaves: the block's free room stays for the
        // next pushes, so a consumer that keeps up (taking a few frames at a
        // time) does not hold a whole block per chunk in flight.
        let chunk = inner.current.split();
        let frames = std::mem::take(&mut inner.current_frames);
        inner.queued_frames -= frames;
        inner.removed(frames, false);
        Some((chunk.freeze(), frames))
    }

    /// Gives back the memory of a chunk from [`FrameBuffer::take`] once the
    /// caller is done with it (acknowledged or written); it is reused if no
    /// other reference to it remains.
    pub fn recycle(&self, chunk: Bytes) {
        let Ok(mut block) = chunk.try_into_mut() else {
            return;
        };
        block.clear();
        if block.capacity() >= BLOCK {
            let mut inner = self.lock();
            if inner.pool.len() < POOL {
                inner.pool.push(block);
            }
        }
    }

    /// The next chunk, as [`FrameBuffer::take`], waiting until frames are
    /// queued. One lock per call when frames are there.
    pub async fn next_chunk(&self) -> (Bytes, usize) {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(chunk) = self.take() {
                return chunk;
            }
            notified.await;
        }
    }

    /// Gives back room held by `frames` frames of `bytes` bytes in all.
    /// They are the oldest taken and not yet released, in take order.
    pub fn release(&self, frames: usize, bytes: usize) {
        let mut inner = self.lock();
        inner.held_frames = inner.held_frames.saturating_sub(frames);
        inner.held_bytes = inner.held_bytes.saturating_sub(bytes);
        inner.settle(frames);
        self.retired.send_replace(inner.retired_through);
        drop(inner);
        self.room.notify_waiters();
    }

    /// Frames pushed so far (each frame's sequence number is its place in
    /// this count).
    pub fn pushed(&self) -> u64 {
        self.lock().pushed
    }

    /// Follows the sequence number up to which every frame is settled
    /// ([`FrameBuffer::release`]) or dropped (`drop_oldest`); it also
    /// changes, to wake waiters, when pushes start or stop being refused
    /// and when [`FrameBuffer::close`] discards frames (which never retire).
    pub fn retired(&self) -> watch::Receiver<u64> {
        self.retired.subscribe()
    }

    /// Refuses every later push (and waiting ones) with `reason`, keeping
    /// what is queued; `None` accepts pushes again. For a connection that
    /// gave up for now but keeps trying (`max_reconnects_exceeded`).
    pub fn refuse(&self, reason: Option<&str>) {
        let mut inner = self.lock();
        inner.closed = reason.map(str::to_owned);
        drop(inner);
        self.room.notify_waiters();
        self.retired.send_modify(|_| {});
    }

    /// Fails every later push (and waiting ones) with `reason`; returns how
    /// many queued frames were discarded.
    pub fn close(&self, reason: &str) -> usize {
        let mut inner = self.lock();
        inner.closed = Some(reason.to_owned());
        // Discarded frames are lost, not retired: a flush waiting for them
        // reports why (it is woken below).
        let discarded = std::mem::take(&mut inner.queued_frames);
        self.retired.send_modify(|_| {});
        inner.full.clear();
        inner.current.clear();
        inner.current_frames = 0;
        inner.held_frames = 0;
        inner.held_bytes = 0;
        drop(inner);
        self.room.notify_waiters();
        discarded
    }

    /// `(queued frames, held frames, held bytes)` now.
    pub fn occupancy(&self) -> (usize, usize, usize) {
        let inner = self.lock();
        (inner.queued_frames, inner.held_frames, inner.held_bytes)
    }

    /// Messages dropped by `drop_newest` (or `drop_oldest` with nothing older to drop).
    pub fn dropped_newest(&self) -> u64 {
        self.dropped_newest.load(Ordering::Relaxed)
    }

    /// Messages dropped by `drop_oldest`.
    pub fn dropped_oldest(&self) -> u64 {
        self.dropped_oldest.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The counters stay consistent under every early return above, so a
        // poisoned lock (a panic elsewhere) is safe to keep using.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Splits the first `n` frames off `chunk` (frames delimited by `frame_len`);
/// returns their byte length. Used to forget acknowledged frames that share
/// a chunk with unacknowledged ones.
pub fn frames_len(chunk: &[u8], n: usize, frame_len: fn(&[u8]) -> usize) -> usize {
    let mut offset = 0;
    for _ in 0..n {
        if offset >= chunk.len() {
            break;
        }
        offset += frame_len(&chunk[offset..]).min(chunk.len() - offset);
    }
    offset
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::BufMut;

    use super::*;

    /// Test frames: `[len u8][len bytes]`.
    fn byte_prefixed(bytes: &[u8]) -> usize {
        1 + usize::from(bytes.first().copied().unwrap_or(0))
    }

    fn frame(value: u8) -> impl FnOnce(&mut BytesMut) {
        move |dst: &mut BytesMut| {
            dst.put_u8(1);
            dst.put_u8(value);
        }
    }

    fn limits(policy: FullPolicy) -> BufferLimits {
        BufferLimits { max_bytes: 100, max_messages: 3, deadline: Duration::from_millis(50), policy }
    }

    #[test]
    fn frames_come_out_as_one_chunk_in_order() {
        let buffer = FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed);
        for value in 0..3 {
            buffer.try_push(2, frame(value)).unwrap();
        }
        let (chunk, frames) = buffer.take().unwrap();
        assert_eq!((&chunk[..], frames), (&[1, 0, 1, 1, 1, 2][..], 3));
        assert!(buffer.take().is_none());
        assert_eq!(buffer.occupancy(), (0, 3, 6));
        assert_eq!(frames_len(&chunk, 2, byte_prefixed), 4);
    }

    #[test]
    fn a_run_is_queued_in_order_up_to_the_first_refusal_and_nothing_after_it() {
        let buffer = FrameBuffer::new(limits(FullPolicy::DropNewest), byte_prefixed);
        let pushed = buffer.try_push_each((0..5).map(|value| (2, frame(value))));
        assert_eq!(
            pushed,
            RunPushed { queued: 3, newest: Some(2), refused: Some(PushError::Dropped) },
            "max_messages is 3"
        );
        assert_eq!(buffer.dropped_newest(), 2, "each refused frame counts, as one push each would");
        let (chunk, frames) = buffer.take().unwrap();
        assert_eq!((&chunk[..], frames), (&[1, 0, 1, 1, 1, 2][..], 3));
        // Under drop_oldest the newest frames stay, as pushes one by one.
        let buffer = FrameBuffer::new(limits(FullPolicy::DropOldest), byte_prefixed);
        assert_eq!(buffer.try_push_each((0..5).map(|value| (2, frame(value)))).queued, 5);
        assert_eq!(buffer.dropped_oldest(), 2);
        assert_eq!(&buffer.take().unwrap().0[..], &[1, 2, 1, 3, 1, 4]);
        // A closed buffer takes nothing of a run.
        buffer.close("gone");
        assert_eq!(buffer.try_push_each([(2, frame(9))]).refused, Some(PushError::Closed("gone".to_owned())));
        // One frame too large for the buffer is refused alone: the ones
        // after it are still taken.
        let buffer = FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed);
        let pushed = buffer.try_push_each([(2, frame(1)), (101, frame(2)), (2, frame(3))]);
        assert_eq!(pushed, RunPushed { queued: 2, newest: Some(2), refused: Some(PushError::TooLarge(101)) });
        assert_eq!(&buffer.take().unwrap().0[..], &[1, 1, 1, 3]);
    }

    #[tokio::test]
    async fn a_run_wakes_the_consumer_once_it_is_queued() {
        let buffer = Arc::new(FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed));
        let consumer = tokio::spawn({
            let buffer = Arc::clone(&buffer);
            async move { buffer.next_chunk().await }
        });
        tokio::task::yield_now().await;
        assert_eq!(buffer.try_push_each((0..2).map(|value| (2, frame(value)))).queued, 2);
        let (chunk, frames) = tokio::time::timeout(Duration::from_secs(5), consumer).await.unwrap().unwrap();
        assert_eq!((&chunk[..], frames), (&[1, 0, 1, 1][..], 2));
    }

    #[test]
    fn taking_a_partly_filled_block_leaves_its_room_for_the_next_frames() {
        let buffer = FrameBuffer::new(
            BufferLimits { max_bytes: 1 << 20, max_messages: 1000, ..limits(FullPolicy::Block) },
            byte_prefixed,
        );
        buffer.try_push(2, frame(1)).unwrap();
        let (first, _) = buffer.take().unwrap();
        buffer.try_push(2, frame(2)).unwrap();
        let (second, _) = buffer.take().unwrap();
        // The second chunk was written right after the first, in the same
        // block: a consumer taking a few frames at a time holds one block,
        // not one per chunk.
        assert_eq!(second.as_ptr(), first.as_ptr().wrapping_add(first.len()));
        assert_eq!((&first[..], &second[..]), (&[1, 1][..], &[1, 2][..]));
    }

    #[test]
    fn frames_fill_blocks_and_each_take_is_one_block() {
        let buffer = FrameBuffer::new(
            BufferLimits { max_bytes: 1 << 20, max_messages: 1000, ..limits(FullPolicy::Block) },
            byte_prefixed,
        );
        // 600 frames of 201 bytes: 326 fit in a 64 KiB block.
        for _ in 0..600 {
            buffer
                .try_push(201, |dst| {
                    dst.put_u8(200);
                    dst.put_slice(&[9; 200]);
                })
                .unwrap();
        }
        let (first, first_frames) = buffer.take().unwrap();
        let (second, second_frames) = buffer.take().unwrap();
        assert_eq!((first_frames, second_frames), (326, 274));
        assert_eq!((first.len(), second.len()), (326 * 201, 274 * 201));
        assert!(buffer.take().is_none());
        buffer.recycle(first);
        buffer.release(600, 600 * 201);
        assert_eq!(buffer.occupancy(), (0, 0, 0));
    }

    #[test]
    fn drop_newest_and_drop_oldest_are_counted() {
        let buffer = FrameBuffer::new(limits(FullPolicy::DropNewest), byte_prefixed);
        for value in 0..3 {
            buffer.try_push(2, frame(value)).unwrap();
        }
        assert_eq!(buffer.try_push(2, frame(3)), Err(PushError::Dropped));
        assert_eq!(buffer.dropped_newest(), 1);

        let buffer = FrameBuffer::new(limits(FullPolicy::DropOldest), byte_prefixed);
        for value in 0..5 {
            buffer.try_push(2, frame(value)).unwrap();
        }
        let (chunk, frames) = buffer.take().unwrap();
        assert_eq!((&chunk[..], frames), (&[1, 2, 1, 3, 1, 4][..], 3));
        assert_eq!(buffer.dropped_oldest(), 2);
        // All three are in flight now: nothing older can be dropped.
        assert_eq!(buffer.try_push(2, frame(5)), Err(PushError::Dropped));
        buffer.release(1, 2);
        assert_eq!(buffer.try_push(2, frame(6)), Ok(()));
    }

    #[test]
    fn bytes_bound_the_buffer_too() {
        let buffer = FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed);
        buffer.try_push(60, |dst| dst.put_slice(&[59; 60])).unwrap();
        assert_eq!(buffer.try_push(60, |dst| dst.put_slice(&[59; 60])), Err(PushError::Full));
        assert_eq!(buffer.try_push(101, |_| {}), Err(PushError::TooLarge(101)));
    }

    #[test]
    fn a_frame_over_the_peers_limit_is_refused_and_the_run_goes_on() {
        let buffer = FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed);
        assert_eq!(buffer.set_max_frame(3), usize::MAX);
        assert_eq!(
            buffer.try_push(4, |dst| dst.put_slice(&[3, 9, 9, 9])),
            Err(PushError::OverPeerLimit { len: 4, max: 3 })
        );
        let pushed = buffer.try_push_each([(2, frame(1)), (4, frame(2)), (2, frame(3))]);
        assert_eq!(pushed.queued, 2);
        assert_eq!(pushed.refused, Some(PushError::OverPeerLimit { len: 4, max: 3 }));
        assert_eq!(&buffer.take().unwrap().0[..], &[1, 1, 1, 3]);
        // Raised again, the same frame fits.
        assert_eq!(buffer.set_max_frame(4), 3);
        assert_eq!(buffer.try_push(4, |dst| dst.put_slice(&[3, 9, 9, 9])), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_push_waits_for_room_then_gives_up_at_the_deadline() {
        let buffer = Arc::new(FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed));
        for value in 0..3 {
            buffer.push(2, frame(value)).await.unwrap();
        }
        assert_eq!(buffer.push(2, frame(9)).await, Err(PushError::Full), "nothing released within the deadline");
        let waiter = tokio::spawn({
            let buffer = Arc::clone(&buffer);
            async move { buffer.push(2, frame(4)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _ = buffer.take();
        buffer.release(1, 2);
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn new_limits_apply_to_the_next_push_and_wake_a_waiting_one_without_dropping_anything_held() {
        let buffer = Arc::new(FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed));
        for value in 0..3 {
            buffer.try_push(2, frame(value)).unwrap();
        }
        let waiter = tokio::spawn({
            let buffer = Arc::clone(&buffer);
            async move { buffer.push(2, frame(3)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiter.is_finished(), "full: the push waits");
        // More room: the waiting push goes through at once.
        buffer.set_limits(BufferLimits { max_messages: 5, ..limits(FullPolicy::Block) });
        assert_eq!(waiter.await.unwrap(), Ok(()));
        // Smaller than what is held, and drop_newest: nothing held goes,
        // the new message is dropped and counted.
        buffer.set_limits(BufferLimits { max_messages: 2, ..limits(FullPolicy::DropNewest) });
        assert_eq!(buffer.try_push(2, frame(4)), Err(PushError::Dropped));
        assert_eq!(buffer.dropped_newest(), 1);
        let (chunk, frames) = buffer.take().unwrap();
        assert_eq!((frames, &chunk[..]), (4, &[1, 0, 1, 1, 1, 2, 1, 3][..]), "all four held, in order");
        assert_eq!(buffer.limits().max_messages, 2);
    }

    #[tokio::test]
    async fn close_fails_pushes_with_the_reason() {
        let buffer = FrameBuffer::new(limits(FullPolicy::Block), byte_prefixed);
        buffer.try_push(2, frame(1)).unwrap();
        assert_eq!(buffer.close("max_reconnects_exceeded"), 1);
        assert_eq!(buffer.push(2, frame(2)).await, Err(PushError::Closed("max_reconnects_exceeded".to_owned())));
    }
}
