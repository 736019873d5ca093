//! A connection's outbound side: the queue every publisher routes into, the
//! writer task that writes it in batches under the write deadline, and the
//! publisher-side ACK bookkeeping (checkpoints of queue positions).
//!
//! Whether a queued copy still holds its publishers back is one
//! `transport::SubscriberFlow` per connection, kept under the same lock as
//! the queue's sender: publishers report the limit, the writer reports its
//! writes, and ACK loops ask with their own `now`.
//!
//! It deliberately does not route: `connection` decides what goes where.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use myc_transport::{FlowRules, SlowPolicy, SubscriberFlow, Verdict};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

use super::{Metrics, Settings, SlowConsumerPolicy};
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
const ACK_HOLD: Duration = Duration::from_millis(100);
/// The backlog that, behind a blocked write, releases a queue's ACKs; and
/// under which a lagging subscriber has caught up.
const ACK_HOLD_BACKLOG: usize = 4 * 1024 * 1024;

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

/// The queue's sending side and the subscriber's flow, under one lock.
struct Side {
    tx: mpsc::UnboundedSender<Queued>,
    /// Items pushed so far: an item's position is its place in the queue,
    /// even with many publishers.
    pushed: u64,
    /// Whether copies still hold publishers back; closed once nothing more
    /// will be written.
    flow: SubscriberFlow,
}

/// A connection's outbound side, shared with every publisher that routes to it.
pub(super) struct Outbound {
    side: Mutex<Side>,
    limit: usize,
    /// Bytes queued and not yet written (plus [`ITEM_COST`] per item).
    queued_bytes: AtomicUsize,
    /// Wakes the connection's reader when the flow closes (a slow consumer,
    /// shutdown), so the connection ends even if the peer keeps its side open.
    pub(super) closing: Notify,
    metrics: Arc<Metrics>,
    /// Paces the warning for deliveries dropped under `drop_new`.
    drop_log: myc_transport::OnceASecond,
}

impl Outbound {
    /// A connection's outbound side and the receiver its writer drains.
    pub(super) fn new(settings: &Settings, metrics: Arc<Metrics>) -> (Outbound, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let rules = FlowRules {
            hold: ACK_HOLD,
            hold_backlog: ACK_HOLD_BACKLOG,
            write_deadline: settings.write_deadline,
            policy: match settings.slow_consumer {
                SlowConsumerPolicy::Disconnect => SlowPolicy::Disconnect,
                SlowConsumerPolicy::DropNew => SlowPolicy::DropNew,
            },
        };
        let outbound = Outbound {
            side: Mutex::new(Side { tx, pushed: 0, flow: SubscriberFlow::new(rules) }),
            limit: settings.outbound_limit,
            queued_bytes: AtomicUsize::new(0),
            closing: Notify::new(),
            metrics,
            drop_log: myc_transport::OnceASecond::default(),
        };
        (outbound, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Side> {
        self.side.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues deliveries (`frames` of them, whole frames in `chunks`, written
    /// in order); returns the position to wait for, or `None` when they were
    /// dropped or the connection is closed (done at once).
    pub(super) fn deliver(&self, chunks: impl IntoIterator<Item = Bytes>, bytes: usize, frames: u64) -> Option<u64> {
        let mut side = self.lock();
        if !self.admit(&mut side, bytes + ITEM_COST, frames) {
            return None;
        }
        let mut position = None;
        for chunk in chunks {
            let size = chunk.len() + ITEM_COST;
            position = self.push(&mut side, Out::Chunk(chunk), size);
        }
        drop(side);
        self.metrics.deliveries.inc_by(frames);
        self.metrics.frames_out.inc_by(frames);
        position
    }

    /// Whether `size` more bytes (`frames` frames) may be queued; applies the
    /// slow-consumer policy when they would go over the limit.
    fn admit(&self, side: &mut Side, size: usize, frames: u64) -> bool {
        if side.flow.is_closed() {
            return false;
        }
        if self.queued_bytes.load(Ordering::Relaxed) + size <= self.limit {
            return true;
        }
        match side.flow.over_limit(side.pushed) {
            Verdict::Drop => {
                self.metrics.drop_deliveries("slow_consumer", frames);
                if self.drop_log.ready() {
                    tracing::warn!(
                        limit = self.limit,
                        "dropping deliveries to a subscriber over its outbound limit (drop_new; logged at most once a second)"
                    );
                }
            }
            Verdict::Disconnect => {
                self.metrics.slow_consumers.inc();
                tracing::warn!("closing a slow consumer over its outbound limit");
                self.queue_fatal(side, ErrorCode::SlowConsumer, "outbound limit exceeded");
            }
            _ => {}
        }
        false
    }

    /// Pushes an item counted as `size` queued bytes until it is written (or
    /// discarded with the queue); returns its position (1-based), `None`
    /// once the writer is gone.
    fn push(&self, side: &mut Side, item: Out, size: usize) -> Option<u64> {
        // Counted before the writer can see it (it subtracts once written),
        // and uncounted if the writer is gone: its final drain counts off
        // only what it received.
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        self.metrics.queued_bytes.inc_by(size as i64);
        if side.tx.send(Queued { item, size, at: Instant::now() }).is_err() {
            self.sub_queued(size);
            return None;
        }
        side.pushed += 1;
        Some(side.pushed)
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
        let mut frames = BytesMut::new();
        for op in ops {
            if let Err(error) = op.encode(&mut frames) {
                tracing::warn!(%error, "a control frame could not be encoded; not sent");
            }
        }
        let size = frames.len() + ITEM_COST;
        let mut side = self.lock();
        if !self.admit(&mut side, size, ops.len() as u64) {
            return;
        }
        self.push(&mut side, Out::Chunk(frames.freeze()), size);
        drop(side);
        self.metrics.frames_out.inc_by(ops.len() as u64);
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

    /// Closes the flow and queues the close marker after what is queued:
    /// nothing more is queued after it.
    pub(super) fn close_after_queued(&self) {
        let mut side = self.lock();
        side.flow.close();
        let _ = side.tx.send(Queued { item: Out::Close, size: 0, at: Instant::now() });
    }

    /// Sends ERROR and closes the connection after it; nothing is queued after.
    pub(super) fn send_fatal(&self, code: ErrorCode, message: &str) {
        let mut side = self.lock();
        if side.flow.close() {
            self.queue_fatal(&mut side, code, message);
        }
    }

    /// Queues a fatal ERROR whatever the limit (it is the last item) and the
    /// close marker, on a flow just closed.
    fn queue_fatal(&self, side: &mut Side, code: ErrorCode, message: &str) {
        self.metrics.error_sent(code);
        let mut frame = BytesMut::new();
        if let Err(error) = (ServerOp::Error { code, message: message.to_owned() }.encode(&mut frame)) {
            tracing::warn!(%error, "a fatal ERROR could not be encoded; closing without it");
        }
        let size = frame.len() + ITEM_COST;
        self.metrics.frames_out.inc();
        self.push(side, Out::Chunk(frame.freeze()), size);
        let _ = side.tx.send(Queued { item: Out::Close, size: 0, at: Instant::now() });
        self.closing.notify_one();
    }

    /// Whether the connection is closing: nothing more will be written.
    pub(super) fn is_closed(&self) -> bool {
        self.lock().flow.is_closed()
    }

    fn lagging(&self, now: Instant) -> bool {
        self.lock().flow.is_lagging(now)
    }

    fn is_done(&self, position: u64, now: Instant) -> bool {
        self.lock().flow.counts_as_done(position, self.queued_bytes.load(Ordering::Acquire), now)
    }

    /// Writes `bytes`, reporting a write blocked past the hold time and the
    /// write deadline to the flow: `disconnect` gives up (the caller
    /// closes), `drop_new` counts the stall and keeps waiting.
    async fn write(&self, write_half: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
        let started = Instant::now();
        self.lock().flow.write_started(started);
        let write = write_half.write_all(bytes);
        tokio::pin!(write);
        // Wake at the hold time, at the deadline, then every deadline after:
        // the flow decides what each means.
        let deadline = self.lock().flow_deadline();
        let mut wake = started + ACK_HOLD.min(deadline);
        loop {
            if let Ok(result) = tokio::time::timeout_at(tokio::time::Instant::from_std(wake), &mut write).await {
                self.lock().flow.write_completed();
                return result;
            }
            let now = Instant::now();
            let verdict = self.lock().flow.write_blocked(now);
            match verdict {
                Verdict::Lagging => {
                    self.metrics.lagging.inc();
                }
                Verdict::Stalled => {
                    self.metrics.slow_consumers.inc();
                    tracing::warn!(?deadline, "a subscriber stopped reading");
                }
                Verdict::Disconnect => {
                    self.metrics.slow_consumers.inc();
                    tracing::warn!(?deadline, "a subscriber stopped reading; closing it");
                    self.closing.notify_one();
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                Verdict::Abandon => return Err(std::io::ErrorKind::TimedOut.into()),
                Verdict::Nothing | Verdict::Drop => {}
            }
            wake = if now < started + deadline { started + deadline } else { now + deadline };
        }
    }

    /// Records a written batch of `items` whose oldest was queued at `oldest`.
    fn batch_written(&self, items: u64, oldest: Option<Instant>) {
        let queued = self.queued_bytes.load(Ordering::Relaxed);
        if self.lock().flow.batch_written(items, oldest, queued, Instant::now()) == Verdict::Lagging {
            self.metrics.lagging.inc();
        }
    }
}

impl Side {
    fn flow_deadline(&self) -> Duration {
        self.flow.rules().write_deadline
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
        let now = Instant::now();
        while let Some((count, positions)) = self.checkpoints.front() {
            // A lagging subscriber does not hold back a publisher that also
            // feeds one keeping up (publishers never wait for subscribers);
            // alone, it paces its publishers, so nothing unwritten is ever
            // acknowledged to a publisher it is the only reader of.
            let someone_keeps_up = positions.iter().any(|(queue, _)| !queue.lagging(now));
            let copy_done = |(queue, position): &(Arc<Outbound>, u64)| {
                queue.is_done(*position, now) || (someone_keeps_up && queue.lagging(now))
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
                    outbound.sub_queued(batch_size);
                    outbound.batch_written(n_items, oldest);
                } else {
                    outbound.sub_queued(batch_size);
                }
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
        outbound.metrics.bytes_out.inc_by(written_bytes);
        outbound.batch_written(n_items, oldest);
    }
    // Closed for good: every copy still waiting counts as done.
    outbound.lock().flow.close();
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
