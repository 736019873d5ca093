//! A connection's outbound side: the queue every publisher routes into, the
//! writer task that writes it in batches under the write deadline, and the
//! publisher-side ACK bookkeeping (checkpoints of queue positions).
//!
//! It deliberately does not route: `connection` decides what goes where.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::{Metrics, SlowConsumerPolicy};
use crate::protocol::{ErrorCode, ServerOp};

/// One item of a connection's outbound queue.
pub(super) enum Out {
    /// Whole encoded frames: control frames, or a batch of deliveries.
    Chunk(Bytes),
    /// Write what came before, then close.
    Close,
}

/// How long one write may be blocked before its queue stops holding ACKs
/// (when at least [`ACK_HOLD_BACKLOG`] is queued behind it), and how long a
/// delivery may take from queued to written before that subscriber counts
/// as lagging.
/// A subscriber that keeps up never gets here, so the ACK still means
/// "written" for it (and its copies are resent after a broker crash).
pub(super) const ACK_HOLD: Duration = Duration::from_millis(100);
/// The backlog that, behind a blocked write, releases a queue's ACKs; and
/// under which a lagging subscriber has caught up.
pub(super) const ACK_HOLD_BACKLOG: usize = 4 * 1024 * 1024;

/// What one queued item costs beyond its bytes (its channel slot and the
/// buffer's header), counted toward the outbound limit: a flood of tiny
/// control frames is bounded by the memory it takes, not by its frame bytes.
const ITEM_COST: usize = 64;

/// An item in the queue: its size in `queued_bytes` and when it was queued.
pub(super) struct Queued {
    item: Out,
    size: usize,
    at: Instant,
}

/// A connection's outbound side, shared with every publisher that routes to it.
pub(super) struct Outbound {
    /// The queue, and the count of items pushed into it; one lock so that an
    /// item's position is its place in the queue even with many publishers.
    pub(super) queue: Mutex<(mpsc::UnboundedSender<Queued>, u64)>,
    pub(super) policy: SlowConsumerPolicy,
    pub(super) limit: usize,
    /// Bytes queued and not yet written.
    pub(super) queued_bytes: AtomicUsize,
    /// Items written to the socket so far.
    pub(super) written: AtomicU64,
    /// Set once the connection is closing: nothing more will be written, so
    /// publishers waiting on it count their copies as done.
    pub(super) closed: AtomicBool,
    /// Wakes the connection's reader when a fatal error closes it, so the
    /// connection ends even if the peer keeps its side open.
    pub(super) closing: Notify,
    /// Positions up to this one count as done although not yet written: the
    /// queue went over its limit under `drop_new`, and a subscriber that does
    /// not read must not hold back its publishers' ACKs (spec: a copy under
    /// the slow-consumer policy is done). Only grows.
    pub(super) abandoned_upto: AtomicU64,
    /// Set while a write has been stuck past the write deadline under
    /// `drop_new`: everything queued counts as done until it moves again.
    pub(super) stalled: AtomicBool,
    /// Set while a write has been blocked longer than [`ACK_HOLD`]: a
    /// subscriber that is not taking data stops holding its publishers' ACKs
    /// (and so their buffers) long before the write deadline decides its
    /// fate, once [`ACK_HOLD_BACKLOG`] is queued behind it.
    pub(super) released: AtomicBool,
    /// Set when deliveries took [`ACK_HOLD`] from queued to written (or a
    /// write has been blocked that long): the subscriber reads, but slower
    /// than it is fed. Its copies then count as done for
    /// a publisher that also feeds a subscriber keeping up (see
    /// [`AckState::advance`]). Cleared once it has caught up (backlog under
    /// [`ACK_HOLD_BACKLOG`]).
    pub(super) lagging: AtomicBool,
    pub(super) write_deadline: Duration,
    pub(super) metrics: Arc<Metrics>,
}

impl Outbound {
    /// Queues deliveries (`frames` of them, whole frames in `chunks`, written
    /// in order); returns the position to wait for, or `None` when they were
    /// dropped or the connection is closed (done at once).
    pub(super) fn deliver(&self, chunks: impl IntoIterator<Item = Bytes>, bytes: usize, frames: u64) -> Option<u64> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.queued_bytes.load(Ordering::Relaxed) + bytes + ITEM_COST > self.limit {
            self.over_limit(frames);
            return None;
        }
        let mut position = None;
        for chunk in chunks {
            let size = chunk.len() + ITEM_COST;
            position = self.enqueue(Out::Chunk(chunk), size);
        }
        self.metrics.deliveries.inc_by(frames);
        self.metrics.frames_out.inc_by(frames);
        position
    }

    /// Pushes an item counted as `size` queued bytes until it is written (or
    /// discarded with the queue); returns its position (1-based), `None`
    /// once the writer is gone.
    fn enqueue(&self, item: Out, size: usize) -> Option<u64> {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Counted before the writer can see it (it subtracts once written),
        // and uncounted if the writer is gone: its final drain counts off
        // only what it received.
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        self.metrics.queued_bytes.inc_by(size as i64);
        if queue.0.send(Queued { item, size, at: Instant::now() }).is_err() {
            self.sub_queued(size);
            return None;
        }
        queue.1 += 1;
        Some(queue.1)
    }

    /// Queues one control frame (SUBACK, UNSUBACK, ERROR, …).
    pub(super) fn send(&self, op: &ServerOp) {
        self.send_control(std::slice::from_ref(op));
    }

    /// Queues control frames as one item. They count toward the outbound
    /// limit like deliveries do, so a client that sends PINGs (or refused
    /// publishes) without reading the replies meets the slow-consumer
    /// policy instead of growing the broker. Under `drop_new` they are
    /// dropped while over the limit: ACK counts are cumulative and a PING
    /// is always answered with the current one, so a client that reads again
    /// recovers the count at its next flush.
    pub(super) fn send_control(&self, ops: &[ServerOp]) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        let mut frames = BytesMut::new();
        for op in ops {
            op.encode(&mut frames);
        }
        let size = frames.len() + ITEM_COST;
        if self.queued_bytes.load(Ordering::Relaxed) + size > self.limit {
            self.over_limit(ops.len() as u64);
            return;
        }
        self.metrics.frames_out.inc_by(ops.len() as u64);
        let _ = self.enqueue(Out::Chunk(frames.freeze()), size);
    }

    /// Applies the slow-consumer policy to `frames` that would take the
    /// queue over its limit.
    fn over_limit(&self, frames: u64) {
        match self.policy {
            SlowConsumerPolicy::DropNew => {
                self.metrics.drop_deliveries("slow_consumer", frames);
                let queued_upto = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1;
                self.abandoned_upto.fetch_max(queued_upto, Ordering::AcqRel);
            }
            SlowConsumerPolicy::Disconnect => {
                self.metrics.slow_consumers.inc();
                tracing::warn!("closing a slow consumer over its outbound limit");
                self.send_fatal(ErrorCode::SlowConsumer, "outbound limit exceeded");
            }
        }
    }

    /// Counts `size` bytes as written (or discarded with the queue).
    fn sub_queued(&self, size: usize) {
        self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
        self.metrics.queued_bytes.dec_by(size as i64);
    }

    /// Sends a non-fatal ERROR.
    pub(super) fn send_error(&self, code: ErrorCode, message: String) {
        self.metrics.error_sent(code);
        self.send(&ServerOp::Error { code, message });
    }

    /// Queues the close marker (not counted as a position).
    pub(super) fn close_after_queued(&self) {
        let queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = queue.0.send(Queued { item: Out::Close, size: 0, at: Instant::now() });
    }

    /// Sends ERROR and closes the connection after it; nothing is queued after.
    pub(super) fn send_fatal(&self, code: ErrorCode, message: &str) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.metrics.error_sent(code);
        // The fatal ERROR is queued whatever the limit: it is the last item.
        let mut frame = BytesMut::new();
        ServerOp::Error { code, message: message.to_owned() }.encode(&mut frame);
        let size = frame.len() + ITEM_COST;
        self.metrics.frames_out.inc();
        let _ = self.enqueue(Out::Chunk(frame.freeze()), size);
        self.close_after_queued();
        self.closing.notify_one();
    }

    fn mark_lagging(&self) {
        if !self.lagging.swap(true, Ordering::AcqRel) {
            self.metrics.lagging.inc();
        }
    }

    fn lagging(&self) -> bool {
        self.lagging.load(Ordering::Acquire)
    }

    pub(super) fn is_done(&self, position: u64) -> bool {
        self.closed.load(Ordering::Acquire)
            || (self.released.load(Ordering::Acquire) && self.queued_bytes.load(Ordering::Acquire) >= ACK_HOLD_BACKLOG)
            || self.written.load(Ordering::Acquire) >= position
            || self.abandoned_upto.load(Ordering::Acquire) >= position
            || self.stalled.load(Ordering::Acquire)
    }

    /// Writes `bytes`, applying the slow-consumer policy when the write makes
    /// no progress for the write deadline: `disconnect` gives up (the caller
    /// closes), `drop_new` marks the queue stalled and keeps waiting.
    pub(super) async fn write(&self, write_half: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
        let write = write_half.write_all(bytes);
        tokio::pin!(write);
        // A write blocked past ACK_HOLD releases the publishers' ACKs (the
        // copies count as done); it is still written if the subscriber
        // resumes, and the slow-consumer policy still applies at the deadline.
        match tokio::time::timeout(ACK_HOLD, &mut write).await {
            Ok(result) => {
                self.released.store(false, Ordering::Release);
                self.stalled.store(false, Ordering::Release);
                return result;
            }
            Err(_) => {
                // Everything in this write has waited ACK_HOLD by now.
                self.released.store(true, Ordering::Release);
                self.mark_lagging();
            }
        }
        loop {
            match tokio::time::timeout(self.write_deadline, &mut write).await {
                Ok(result) => {
                    self.released.store(false, Ordering::Release);
                    self.stalled.store(false, Ordering::Release);
                    return result;
                }
                Err(_) => {
                    if !self.stalled.swap(true, Ordering::AcqRel) {
                        self.metrics.slow_consumers.inc();
                        tracing::warn!(deadline = ?self.write_deadline, "a subscriber stopped reading");
                    }
                    if self.policy == SlowConsumerPolicy::Disconnect {
                        self.closed.store(true, Ordering::Release);
                        self.closing.notify_one();
                        return Err(std::io::ErrorKind::TimedOut.into());
                    }
                }
            }
        }
    }
}

/// For each subscriber queue a publisher routed to, the position of its
/// latest copy there.
pub(super) type Positions = Vec<(Arc<Outbound>, u64)>;

/// A publisher connection's acknowledgement state.
#[derive(Default)]
pub(super) struct AckState {
    /// PUBLISH frames handled so far.
    pub(super) routed: u64,
    /// Positions queued since the last checkpoint, one entry per queue.
    pub(super) current: Positions,
    /// Checkpoints not yet done: (routed count, positions to wait for).
    pub(super) checkpoints: VecDeque<(u64, Positions)>,
    /// The count last sent in an ACK.
    pub(super) acked: u64,
}

impl AckState {
    pub(super) fn record(&mut self, outbound: &Arc<Outbound>, position: u64) {
        record(&mut self.current, outbound, position);
    }

    /// Closes the current checkpoint and returns the new cumulative count if
    /// it grew.
    pub(super) fn advance(&mut self) -> Option<u64> {
        let last_checkpoint = self.checkpoints.back().map_or(self.acked, |(count, _)| *count);
        if self.routed > last_checkpoint {
            let positions = std::mem::take(&mut self.current);
            self.checkpoints.push_back((self.routed, positions));
        }
        let mut done = None;
        while let Some((count, positions)) = self.checkpoints.front() {
            // A lagging subscriber does not hold back a publisher that also
            // feeds one keeping up (publishers never wait for subscribers);
            // alone, it paces its publishers, so nothing unwritten is ever
            // acknowledged to a publisher it is the only reader of.
            let someone_keeps_up = positions.iter().any(|(queue, _)| !queue.lagging());
            let copy_done = |(queue, position): &(Arc<Outbound>, u64)| {
                queue.is_done(*position) || (someone_keeps_up && queue.lagging())
            };
            if !positions.iter().all(copy_done) {
                break;
            }
            done = Some(*count);
            self.checkpoints.pop_front();
        }
        match done {
            Some(count) if count > self.acked => {
                self.acked = count;
                Some(count)
            }
            _ => None,
        }
    }

    pub(super) fn outstanding(&self) -> bool {
        self.routed > self.acked
    }
}

/// Sets the position to wait for on `outbound` (the latest one wins: a
/// queue writes in order).
pub(super) fn record(positions: &mut Positions, outbound: &Arc<Outbound>, position: u64) {
    match positions.iter_mut().find(|(queue, _)| Arc::ptr_eq(queue, outbound)) {
        Some(entry) => entry.1 = position,
        None => positions.push((Arc::clone(outbound), position)),
    }
}

pub(super) async fn ack_loop(ack: Arc<(Mutex<AckState>, Notify)>, outbound: Arc<Outbound>, interval: Duration) {
    let (state, notify) = &*ack;
    loop {
        let outstanding = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).outstanding();
        if !outstanding {
            notify.notified().await;
        }
        tokio::time::sleep(interval).await;
        let advanced = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).advance();
        if let Some(count) = advanced {
            outbound.send(&ServerOp::Ack { count });
        }
    }
}

pub(super) async fn write_loop(
    mut write_half: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<Queued>,
    outbound: Arc<Outbound>,
) {
    /// Chunks at least this large are written as they are, not copied.
    const WRITE_DIRECT_FROM: usize = 32 * 1024;
    let mut items = Vec::with_capacity(256);
    let mut buffer = BytesMut::with_capacity(256 * 1024);
    'outer: loop {
        items.clear();
        if rx.recv_many(&mut items, 256).await == 0 {
            break;
        }
        let oldest = items.first().map(|queued| queued.at);
        // The whole batch leaves the queue's count once it is written or
        // discarded, whichever way this loop ends.
        let batch_size: usize = items.iter().map(|queued| queued.size).sum();
        let mut n_items = 0u64;
        let mut written_bytes = 0u64;
        for Queued { item, .. } in items.drain(..) {
            let Out::Chunk(chunk) = item else {
                if buffer.is_empty() || outbound.write(&mut write_half, &buffer).await.is_ok() {
                    outbound.written.fetch_add(n_items, Ordering::AcqRel);
                }
                outbound.sub_queued(batch_size);
                break 'outer;
            };
            let chunk_len = chunk.len();
            if chunk.len() >= WRITE_DIRECT_FROM {
                if !buffer.is_empty() {
                    if outbound.write(&mut write_half, &buffer).await.is_err() {
                        outbound.sub_queued(batch_size);
                        break 'outer;
                    }
                    buffer.clear();
                }
                if outbound.write(&mut write_half, &chunk).await.is_err() {
                    outbound.sub_queued(batch_size);
                    break 'outer;
                }
            } else {
                buffer.extend_from_slice(&chunk);
            }
            n_items += 1;
            written_bytes += chunk_len as u64;
        }
        if !buffer.is_empty() {
            if outbound.write(&mut write_half, &buffer).await.is_err() {
                outbound.sub_queued(batch_size);
                break;
            }
            buffer.clear();
        }
        outbound.sub_queued(batch_size);
        outbound.written.fetch_add(n_items, Ordering::AcqRel);
        outbound.metrics.bytes_out.inc_by(written_bytes);
        // Deliveries that took ACK_HOLD from queued to written: lagging,
        // until they are quick again with little queued.
        if oldest.is_some_and(|at| at.elapsed() >= ACK_HOLD) {
            outbound.mark_lagging();
        } else if outbound.queued_bytes.load(Ordering::Relaxed) < ACK_HOLD_BACKLOG {
            outbound.lagging.store(false, Ordering::Release);
        }
    }
    outbound.closed.store(true, Ordering::Release);
    // What was never written goes with the connection, memory and count:
    // closing the channel first means nothing counted can arrive after.
    rx.close();
    drop(buffer);
    let mut unwritten = 0;
    while let Ok(queued) = rx.try_recv() {
        unwritten += queued.size;
    }
    outbound.sub_queued(unwritten);
    let _ = write_half.shutdown().await;
}
