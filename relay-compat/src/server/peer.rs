//! One relay connection's outbound side and role: a bounded queue of message
//! runs (shared slices of some producer's read buffer), its writer task, and
//! whether the peer has identified itself as a producer.
//!
//! Whether producers wait for a consumer over its bound, and when its queue
//! policy applies, is the consumer's `transport::SubscriberFlow` (with a
//! hold budget), kept under the queue's lock.
//!
//! It deliberately does not frame or validate: the read loop hands it only
//! whole, valid messages.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use myc_codec::Source;
use myc_transport::{FlowRules, HoldBudget, SlowPolicy, SubscriberFlow, Verdict};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::{QueuePolicy, RelaySettings};
use crate::metrics::Metrics;

/// Whether a connection has sent its identification header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Consumer,
    Producer,
}

struct Queue {
    /// Runs of whole messages, oldest first, with their message counts.
    runs: VecDeque<(Bytes, u64)>,
    messages: u64,
    bytes: usize,
    /// Whether producers still wait for this consumer over its bound: they
    /// do while it keeps up and its hold budget (the stall timeout at once,
    /// half the time over the long run) lasts. A consumer briefly behind
    /// loses nothing; one that does not read, or reads far slower than its
    /// producers write, exhausts it and is lagging: its policy applies at
    /// once, until its writer finds less than a full queue waiting. Closed
    /// once nothing more will be queued: the writer drains and exits.
    flow: SubscriberFlow,
}

pub(super) struct Peer {
    queue: Mutex<Queue>,
    /// Wakes the writer when runs are queued or the peer finishes.
    ready: Notify,
    /// Wakes the reader when the peer is closed from outside.
    closing: Notify,
    /// Wakes producers waiting for this consumer's queue to drain.
    progress: Notify,
    /// "Not keeping up" is logged at most once a second.
    warnings: myc_transport::OnceASecond,
    /// 0 consumer, 1 producer.
    role: AtomicU8,
    /// Whether a broker link takes this peer's messages: true unless its
    /// identification header said it writes to the broker itself.
    linked: AtomicBool,
    policy: QueuePolicy,
    max_messages: u64,
    max_bytes: usize,
    messages_out: Counter,
    bytes_out: Counter,
    dropped: Counter,
}

impl Peer {
    pub(super) fn new(settings: &RelaySettings, metrics: &Metrics, domain: &'static str) -> Peer {
        let rules = FlowRules {
            hold: settings.stall_timeout,
            // The relay judges "caught up" by its own two bounds
            // (`Peer::take`) and reports no writes: it has no write
            // deadline, since producers wait only on the budget.
            hold_backlog: settings.queue_bytes,
            write_deadline: Duration::MAX,
            policy: match settings.policy {
                QueuePolicy::DropOldest => SlowPolicy::DropOldest,
                QueuePolicy::Disconnect => SlowPolicy::Disconnect,
            },
        };
        Peer {
            queue: Mutex::new(Queue {
                runs: VecDeque::new(),
                messages: 0,
                bytes: 0,
                flow: SubscriberFlow::with_hold_budget(rules, Instant::now()),
            }),
            ready: Notify::new(),
            closing: Notify::new(),
            progress: Notify::new(),
            warnings: myc_transport::OnceASecond::default(),
            role: AtomicU8::new(0),
            linked: AtomicBool::new(true),
            policy: settings.policy,
            max_messages: settings.queue_messages as u64,
            max_bytes: settings.queue_bytes,
            messages_out: Metrics::get(&metrics.messages_out, domain, "all"),
            bytes_out: Metrics::get(&metrics.bytes_out, domain, "all"),
            dropped: Metrics::get(&metrics.dropped, domain, "slow_consumer"),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn role(&self) -> Role {
        if self.role.load(Ordering::Acquire) == 1 { Role::Producer } else { Role::Consumer }
    }

    /// Whether a broker link takes this peer's messages.
    pub(super) fn linked(&self) -> bool {
        self.linked.load(Ordering::Relaxed)
    }

    /// Marks the peer a producer of `source` (counted under its new role),
    /// `linked` or not.
    pub(super) fn become_producer(&self, source: Source, linked: bool, metrics: &Metrics, domain: &'static str) {
        self.linked.store(linked, Ordering::Relaxed);
        if self.role.swap(1, Ordering::AcqRel) == 0 {
            Metrics::get(&metrics.connections, domain, "consumer").dec();
            Metrics::get(&metrics.connections, domain, "producer").inc();
            tracing::debug!(domain, source = %source, "producer identified");
        }
    }

    /// Queues `runs` (slices with their message counts) for this peer. Returns
    /// `true` when the queue is now over its bound and the peer is still
    /// reading: the producer should wait for it ([`Peer::wait_below_bound`])
    /// rather than have its messages dropped. A lagging peer gets the policy
    /// at once.
    pub(super) fn push(&self, runs: &[(Bytes, u64)]) -> bool {
        let mut queue = self.lock();
        if queue.flow.is_closed() {
            return false;
        }
        let was_empty = queue.runs.is_empty();
        let mut n_messages = 0;
        for (run, count) in runs {
            queue.bytes += run.len();
            queue.runs.push_back((run.clone(), *count));
            n_messages += count;
        }
        queue.messages += n_messages;
        self.messages_out.inc_by(n_messages);
        let over = self.over_bound(&queue);
        if over && !queue.flow.holds_feeders() {
            self.enforce_bound(&mut queue);
        }
        let wait = over && queue.flow.holds_feeders();
        let closed = queue.flow.is_closed();
        drop(queue);
        if was_empty || closed {
            self.ready.notify_one();
        }
        wait
    }

    fn over_bound(&self, queue: &Queue) -> bool {
        queue.messages > self.max_messages || queue.bytes > self.max_bytes
    }

    /// Waits until the queue is back under its bound, as long as this
    /// consumer's hold budget lasts; past it, the consumer is lagging and
    /// gets its policy, so the producer goes on at full speed.
    /// Waits for each of `behind` to drain below its bound, each no longer
    /// than its own hold budget lasts and all of them together no longer
    /// than `feeder`'s (a producer's, or the broker link's downlink's):
    /// several slow consumers never hold a feeder back longer than one may.
    pub(super) async fn wait_for_behind(behind: impl IntoIterator<Item = Arc<Peer>>, feeder: &mut HoldBudget) {
        for target in behind {
            let started = Instant::now();
            target.wait_below_bound(feeder.available(started)).await;
            feeder.spend(started.elapsed());
        }
    }

    async fn wait_below_bound(&self, most: Duration) {
        let started = Instant::now();
        // The consumer's own budget, and what the producer has left of its.
        let stall = self.lock().flow.hold_for(started).min(most);
        let drained = async {
            loop {
                let progress = self.progress.notified();
                tokio::pin!(progress);
                progress.as_mut().enable();
                let waiting = {
                    let queue = self.lock();
                    self.over_bound(&queue) && !queue.flow.is_closed()
                };
                if !waiting {
                    return;
                }
                progress.await;
            }
        };
        let timed_out = tokio::time::timeout(stall, drained).await.is_err();
        let mut queue = self.lock();
        queue.flow.held(started.elapsed(), !timed_out);
        if timed_out {
            self.warn_stuck();
            self.enforce_bound(&mut queue);
        }
    }

    fn warn_stuck(&self) {
        if self.warnings.ready() {
            tracing::warn!(
                policy = ?self.policy,
                "a consumer is not keeping up; applying its queue policy (logged at most once a second)"
            );
        }
    }

    /// Applies the policy to a queue over its bound.
    fn enforce_bound(&self, queue: &mut Queue) {
        while self.over_bound(queue) {
            match queue.flow.over_limit(queue.messages) {
                Verdict::Drop => {
                    // Drop whole messages from the front until within bounds.
                    let Some((run, count)) = queue.runs.pop_front() else { break };
                    let mut cut = 0;
                    let mut dropped = 0;
                    while cut < run.len() && self.over_bound(queue) {
                        let len = crate::framing::message_len(&run[cut..]).max(1);
                        cut += len;
                        dropped += 1;
                        queue.messages -= 1;
                        queue.bytes -= len;
                    }
                    self.dropped.inc_by(dropped);
                    if cut < run.len() {
                        queue.runs.push_front((run.slice(cut..), count - dropped));
                    }
                }
                Verdict::Disconnect => {
                    self.dropped.inc_by(queue.messages);
                    queue.runs.clear();
                    queue.messages = 0;
                    queue.bytes = 0;
                    self.ready.notify_one();
                    self.closing.notify_one();
                    tracing::warn!("closing a consumer over its queue bound");
                }
                // Closed already: the writer drains what is queued and
                // exits.
                _ => break,
            }
        }
    }

    /// No more pushes; the writer drains what is queued and exits, and the
    /// reader stops.
    pub(super) fn finish(&self) {
        self.lock().flow.close();
        self.ready.notify_one();
        self.closing.notify_one();
    }

    /// Completes once the peer is closed from outside (overflow, shutdown).
    pub(super) async fn closing(&self) {
        self.closing.notified().await;
    }

    /// Takes everything queued: runs and their total bytes; and whether
    /// nothing more will be queued.
    fn take(&self, out: &mut Vec<Bytes>) -> (usize, bool) {
        self.progress.notify_waiters();
        let mut queue = self.lock();
        let taken = queue.bytes;
        // Less than a full queue built up while the last batch was written:
        // the consumer keeps up again, so producers may wait for it.
        if queue.messages < self.max_messages && queue.bytes < self.max_bytes {
            queue.flow.caught_up();
        }
        out.extend(queue.runs.drain(..).map(|(run, _)| run));
        queue.bytes = 0;
        queue.messages = 0;
        (taken, queue.flow.is_closed())
    }
}

/// Writes the peer's queue until it is finished and drained, or a write fails.
pub(super) async fn write_loop(peer: Arc<Peer>, mut write_half: impl AsyncWrite + Unpin) {
    /// Runs at least this large are written as they are, not copied.
    const WRITE_DIRECT_FROM: usize = 32 * 1024;
    let mut runs = Vec::new();
    let mut buffer = BytesMut::with_capacity(64 * 1024);
    loop {
        let notified = peer.ready.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        runs.clear();
        let (bytes, closed) = peer.take(&mut runs);
        if runs.is_empty() {
            if closed {
                break;
            }
            notified.await;
            continue;
        }
        for run in &runs {
            if run.len() >= WRITE_DIRECT_FROM {
                if !buffer.is_empty() {
                    if write_half.write_all(&buffer).await.is_err() {
                        return peer.finish();
                    }
                    buffer.clear();
                }
                if write_half.write_all(run).await.is_err() {
                    return peer.finish();
                }
            } else {
                buffer.extend_from_slice(run);
            }
        }
        if !buffer.is_empty() {
            if write_half.write_all(&buffer).await.is_err() {
                return peer.finish();
            }
            buffer.clear();
        }
        peer.bytes_out.inc_by(bytes as u64);
        peer.progress.notify_waiters();
    }
    let _ = write_half.shutdown().await;
}
