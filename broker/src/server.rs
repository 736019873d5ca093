//! The broker server (spec §3): accepts connections on any number of
//! listeners, routes PUBLISH frames to fan-out subscriptions and round-robin
//! groups, acknowledges publishes once their deliveries are written to the
//! subscribers' sockets, and enforces limits and the slow-consumer policy.
//!
//! Each connection has a reader task (frames in, routing) and a writer task
//! (one outbound queue, written in batches). Acknowledgement bookkeeping is
//! a checkpoint list per publisher: a checkpoint records, for each subscriber
//! queue the publisher routed to, the position its copy was queued at; the
//! checkpoint is done once every such queue has written past that position
//! (or was closed). It deliberately never parses payloads.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use transport::{FrameReader, LengthPrefixed, Listener, Stream};

pub use crate::metrics::Metrics;
use crate::protocol::{self, ClientOp, DecodeError, ErrorCode, ServerOp, Topic};

/// What the broker does with a connection over its outbound limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// ERROR `slow_consumer`, then close (the default).
    #[default]
    Disconnect,
    /// Drop deliveries while over the limit (counted).
    DropNew,
}

/// Broker settings (defaults per spec).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sent in WELCOME.
    pub server_id: String,
    /// Largest frame body accepted.
    pub max_frame: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Topics with subscriptions, broker-wide.
    pub max_topics: usize,
    /// How often ACKs are sent while the count grows.
    pub ack_interval: Duration,
    /// How long after start PUBLISH frames are held.
    pub restart_grace: Duration,
    /// Bytes queued per connection before the slow-consumer policy applies.
    pub outbound_limit: usize,
    /// A write to a subscriber that makes no progress for this long marks it
    /// a slow consumer too: a subscriber that stops reading must not hold
    /// back its publishers' ACKs (and so their buffers) indefinitely.
    pub write_deadline: Duration,
    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumerPolicy,
    /// Required HELLO token, if any.
    pub token: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_id: "mycelium".to_owned(),
            max_frame: protocol::DEFAULT_MAX_FRAME,
            max_connections: 4096,
            max_subscriptions: 1024,
            max_topics: 65_536,
            ack_interval: Duration::from_millis(1),
            restart_grace: Duration::from_millis(500),
            outbound_limit: 64 * 1024 * 1024,
            write_deadline: Duration::from_secs(2),
            slow_consumer: SlowConsumerPolicy::Disconnect,
            token: None,
        }
    }
}

/// A running broker: its metrics and the endpoints it listens on.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    /// Live counters.
    pub metrics: Arc<Metrics>,
}

/// Serves `listeners` until `shutdown` completes, then sends ERROR
/// `shutting_down` to every connection after flushing what is queued, and
/// returns once the connections are closed (Unix socket files are removed
/// when the listeners drop).
pub async fn serve(
    listeners: Vec<Listener>,
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send,
    on_start: impl FnOnce(ServerHandle),
) {
    let shared = Arc::new(Shared {
        connection_slots: Arc::new(Semaphore::new(settings.max_connections)),
        grace_ends: Instant::now() + settings.restart_grace,
        settings,
        router: RwLock::new(HashMap::new()),
        connections: Mutex::new(HashMap::new()),
        next_connection_id: AtomicU64::new(1),
        metrics: Arc::new(Metrics::default()),
    });
    on_start(ServerHandle { metrics: Arc::clone(&shared.metrics) });
    let mut tasks = JoinSet::new();
    let listeners: Vec<Arc<Listener>> = listeners.into_iter().map(Arc::new).collect();
    let (accepted_tx, mut accepted_rx) = mpsc::channel::<Stream>(64);
    let mut acceptors = JoinSet::new();
    for listener in &listeners {
        let listener = Arc::clone(listener);
        let accepted_tx = accepted_tx.clone();
        acceptors.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok(stream) => {
                        if accepted_tx.send(stream).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    drop(accepted_tx);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(stream) = accepted_rx.recv() => {
                let shared = Arc::clone(&shared);
                tasks.spawn(async move { serve_connection(shared, stream).await });
            }
        }
    }
    acceptors.abort_all();
    drop(listeners);
    let open: Vec<Arc<Outbound>> = shared.lock_connections().values().cloned().collect();
    for outbound in open {
        outbound.send_fatal(ErrorCode::ShuttingDown, "broker is shutting down");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while tasks.join_next().await.is_some() {} }).await;
}

struct Shared {
    settings: Settings,
    connection_slots: Arc<Semaphore>,
    grace_ends: Instant,
    router: RwLock<HashMap<Topic, TopicEntry>>,
    connections: Mutex<HashMap<u64, Arc<Outbound>>>,
    next_connection_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock_connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Outbound>>> {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct TopicEntry {
    fanout: Vec<Subscriber>,
    groups: Vec<Group>,
}

struct Group {
    name: Bytes,
    members: Vec<Subscriber>,
    /// Round-robin position.
    next: AtomicUsize,
}

#[derive(Clone)]
struct Subscriber {
    connection_id: u64,
    sub_id: u32,
    outbound: Arc<Outbound>,
}

/// One item of a connection's outbound queue.
enum Out {
    /// Whole encoded frames: control frames, or a batch of deliveries.
    Chunk(Bytes),
    /// Write what came before, then close.
    Close,
}

/// A connection's outbound side, shared with every publisher that routes to it.
struct Outbound {
    /// The queue, and the count of items pushed into it; one lock so that an
    /// item's position is its place in the queue even with many publishers.
    queue: Mutex<(mpsc::UnboundedSender<(Out, usize)>, u64)>,
    policy: SlowConsumerPolicy,
    limit: usize,
    /// Bytes queued and not yet written.
    queued_bytes: AtomicUsize,
    /// Items written to the socket so far.
    written: AtomicU64,
    /// Set once the connection is closing: nothing more will be written, so
    /// publishers waiting on it count their copies as done.
    closed: AtomicBool,
    /// Wakes the connection's reader when a fatal error closes it, so the
    /// connection ends even if the peer keeps its side open.
    closing: Notify,
    /// Positions up to this one count as done although not yet written: the
    /// queue went over its limit under `drop_new`, and a subscriber that does
    /// not read must not hold back its publishers' ACKs (spec: a copy under
    /// the slow-consumer policy is done). Only grows.
    abandoned_upto: AtomicU64,
    /// Set while a write has been stuck past the write deadline under
    /// `drop_new`: everything queued counts as done until it moves again.
    stalled: AtomicBool,
    write_deadline: Duration,
    metrics: Arc<Metrics>,
}

impl Outbound {
    /// Queues deliveries (`frames` of them, whole frames in `chunks`, written
    /// in order); returns the position to wait for, or `None` when they were
    /// dropped or the connection is closed (done at once).
    fn deliver(&self, chunks: impl IntoIterator<Item = Bytes>, bytes: usize, frames: u64) -> Option<u64> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.queued_bytes.load(Ordering::Relaxed) + bytes > self.limit {
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
            return None;
        }
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let mut position = None;
        for chunk in chunks {
            let size = chunk.len();
            position = self.enqueue(Out::Chunk(chunk), size);
        }
        self.metrics.deliveries.inc_by(frames);
        self.metrics.frames_out.inc_by(frames);
        position
    }

    /// Pushes an item; returns its position (1-based), `None` once the writer is gone.
    fn enqueue(&self, item: Out, size: usize) -> Option<u64> {
        let mut queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        queue.0.send((item, size)).ok()?;
        queue.1 += 1;
        Some(queue.1)
    }

    fn send(&self, op: &ServerOp) {
        let mut frame = BytesMut::new();
        op.encode(&mut frame);
        self.metrics.frames_out.inc();
        let _ = self.enqueue(Out::Chunk(frame.freeze()), 0);
    }

    /// Sends a non-fatal ERROR.
    fn send_error(&self, code: ErrorCode, message: String) {
        self.metrics.error_sent(code);
        self.send(&ServerOp::Error { code, message });
    }

    /// Queues the close marker (not counted as a position).
    fn close_after_queued(&self) {
        let queue = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = queue.0.send((Out::Close, 0));
    }

    /// Sends ERROR and closes the connection after it; nothing is queued after.
    fn send_fatal(&self, code: ErrorCode, message: &str) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.metrics.error_sent(code);
        self.send(&ServerOp::Error { code, message: message.to_owned() });
        self.close_after_queued();
        self.closing.notify_one();
    }

    fn is_done(&self, position: u64) -> bool {
        self.closed.load(Ordering::Acquire)
            || self.written.load(Ordering::Acquire) >= position
            || self.abandoned_upto.load(Ordering::Acquire) >= position
            || self.stalled.load(Ordering::Acquire)
    }

    /// Writes `bytes`, applying the slow-consumer policy when the write makes
    /// no progress for the write deadline: `disconnect` gives up (the caller
    /// closes), `drop_new` marks the queue stalled and keeps waiting.
    async fn write(&self, write_half: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
        let write = write_half.write_all(bytes);
        tokio::pin!(write);
        loop {
            match tokio::time::timeout(self.write_deadline, &mut write).await {
                Ok(result) => {
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
type Positions = Vec<(Arc<Outbound>, u64)>;

/// A publisher connection's acknowledgement state.
#[derive(Default)]
struct AckState {
    /// PUBLISH frames handled so far.
    routed: u64,
    /// Positions queued since the last checkpoint, one entry per queue.
    current: Positions,
    /// Checkpoints not yet done: (routed count, positions to wait for).
    checkpoints: VecDeque<(u64, Positions)>,
    /// The count last sent in an ACK.
    acked: u64,
}

impl AckState {
    fn record(&mut self, outbound: &Arc<Outbound>, position: u64) {
        record(&mut self.current, outbound, position);
    }

    /// Closes the current checkpoint and returns the new cumulative count if
    /// it grew.
    fn advance(&mut self) -> Option<u64> {
        let last_checkpoint = self.checkpoints.back().map_or(self.acked, |(count, _)| *count);
        if self.routed > last_checkpoint {
            let positions = std::mem::take(&mut self.current);
            self.checkpoints.push_back((self.routed, positions));
        }
        let mut done = None;
        while let Some((count, positions)) = self.checkpoints.front() {
            if !positions.iter().all(|(queue, position)| queue.is_done(*position)) {
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

    fn outstanding(&self) -> bool {
        self.routed > self.acked
    }
}

async fn serve_connection(shared: Arc<Shared>, stream: Stream) {
    let (read_half, write_half) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let connection_id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let outbound = Arc::new(Outbound {
        queue: Mutex::new((tx, 0)),
        policy: shared.settings.slow_consumer,
        limit: shared.settings.outbound_limit,
        queued_bytes: AtomicUsize::new(0),
        written: AtomicU64::new(0),
        closed: AtomicBool::new(false),
        closing: Notify::new(),
        abandoned_upto: AtomicU64::new(0),
        stalled: AtomicBool::new(false),
        write_deadline: shared.settings.write_deadline,
        metrics: Arc::clone(&shared.metrics),
    });
    // Guards abort the helper tasks if this connection's future is dropped
    // (the broker aborted), so no half of a connection outlives it.
    let mut writer = AbortOnDrop(tokio::spawn(write_loop(write_half, rx, Arc::clone(&outbound))));
    let Ok(_permit) = Arc::clone(&shared.connection_slots).try_acquire_owned() else {
        outbound.send_fatal(ErrorCode::Protocol, "too many connections");
        let _ = (&mut writer.0).await;
        return;
    };
    shared.metrics.connections.inc();
    shared.lock_connections().insert(connection_id, Arc::clone(&outbound));
    let ack = Arc::new((Mutex::new(AckState::default()), Notify::new()));
    let acker =
        AbortOnDrop(tokio::spawn(ack_loop(Arc::clone(&ack), Arc::clone(&outbound), shared.settings.ack_interval)));
    let mut connection = Connection {
        shared: Arc::clone(&shared),
        connection_id,
        outbound: Arc::clone(&outbound),
        ack,
        subscriptions: HashMap::new(),
        grace_over: false,
    };
    if let Err((code, message)) = connection.read_loop(read_half).await {
        tracing::debug!(connection_id, code = code.name(), %message, "closing connection");
        outbound.send_fatal(code, &message);
    } else {
        outbound.closed.store(true, Ordering::Release);
        outbound.close_after_queued();
    }
    connection.remove_subscriptions();
    drop(acker);
    let _ = (&mut writer.0).await;
    outbound.closed.store(true, Ordering::Release);
    shared.lock_connections().remove(&connection_id);
    shared.metrics.connections.dec();
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Connection {
    shared: Arc<Shared>,
    connection_id: u64,
    outbound: Arc<Outbound>,
    ack: Arc<(Mutex<AckState>, Notify)>,
    /// sub_id → (topic, group) of this connection's subscriptions.
    subscriptions: HashMap<u32, (Topic, Bytes)>,
    /// Set once the restart grace has been seen to end, so the clock is not
    /// read per PUBLISH afterwards.
    grace_over: bool,
}

type Fatal = (ErrorCode, String);

/// Payloads at least this large are queued as shared `Bytes` rather than
/// copied into a subscriber's delivery batch: copying small payloads into one
/// batch is cheaper than a reference count each, copying large ones is not.
const SHARE_PAYLOAD_FROM: usize = 16 * 1024;

/// Deliveries routed from one read batch, not yet queued.
#[derive(Default)]
struct Routed {
    /// Per subscriber queue: encoded DELIVER frames and their count.
    pending: Vec<(Arc<Outbound>, BytesMut, u64)>,
    /// Queue positions of what was queued, for the ACK checkpoints.
    positions: Positions,
    /// PUBLISH frames handled and not yet counted in the ACK state.
    routed: u64,
    /// Length of the read batch being routed (sizes the delivery buffers).
    batch_len: usize,
}

/// Where processing of a read batch stopped.
enum Step {
    /// The whole batch was processed.
    Done,
    /// A PUBLISH arrived during the restart grace at this batch offset.
    Grace(usize),
}

impl Connection {
    async fn read_loop(&mut self, read_half: impl AsyncRead + Unpin) -> Result<(), Fatal> {
        let framing = LengthPrefixed { max_body: self.shared.settings.max_frame };
        let mut reader = FrameReader::new(read_half, framing);
        let mut greeted = false;
        let mut routed = Routed::default();
        loop {
            let batch = match reader.try_batch() {
                Ok(Some(batch)) => batch,
                Ok(None) => {
                    let filled = tokio::select! {
                        filled = reader.fill() => filled,
                        () = self.outbound.closing.notified() => return Ok(()),
                    };
                    match filled {
                        Ok(true) => continue,
                        Ok(false) if reader.buffered() == 0 => return Ok(()),
                        Ok(false) => return Err((ErrorCode::Protocol, "connection closed mid-frame".to_owned())),
                        Err(_) => return Ok(()),
                    }
                }
                Err(error) => return Err(fatal_framing(error)),
            };
            self.shared.metrics.bytes_in.inc_by(batch.len() as u64);
            let mut offset = 0;
            loop {
                let step = self.process(&batch, offset, &mut greeted, &mut routed);
                self.finish(&mut routed);
                match step? {
                    Step::Done => break,
                    Step::Grace(at) => {
                        tokio::time::sleep_until(self.shared.grace_ends).await;
                        offset = at;
                    }
                }
            }
        }
    }

    /// Handles the frames of `batch` from `offset` on, without waiting.
    fn process(
        &mut self,
        batch: &Bytes,
        mut offset: usize,
        greeted: &mut bool,
        routed: &mut Routed,
    ) -> Result<Step, Fatal> {
        let shared = Arc::clone(&self.shared);
        let mut router = None;
        let mut n_frames = 0u64;
        routed.batch_len = batch.len();
        let step = loop {
            if offset >= batch.len() {
                break Step::Done;
            }
            n_frames += 1;
            let frame_len = batch
                .get(offset..offset + 4)
                .map_or(0, |prefix| u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize);
            let body = batch.slice(offset + 4..offset + 4 + frame_len);
            if *greeted && body.first() == Some(&protocol::op::PUBLISH) {
                if !self.grace_over {
                    if Instant::now() < shared.grace_ends {
                        n_frames -= 1;
                        break Step::Grace(offset);
                    }
                    self.grace_over = true;
                }
                let (topic, payload) = split_publish(&body)?;
                let router = router
                    .get_or_insert_with(|| shared.router.read().unwrap_or_else(std::sync::PoisonError::into_inner));
                self.route(router, &body, topic, payload, routed);
                routed.routed += 1;
                offset += 4 + frame_len;
                continue;
            }
            // Anything else is handled in order after the deliveries before it.
            router = None;
            self.finish(routed);
            let op = ClientOp::decode(body).map_err(fatal_decode)?;
            offset += 4 + frame_len;
            if !*greeted {
                self.hello(&op)?;
                *greeted = true;
                continue;
            }
            match op {
                ClientOp::Ping { nonce } => {
                    let count = {
                        let mut state = self.lock_ack();
                        state.advance();
                        state.acked
                    };
                    self.outbound.send(&ServerOp::Ack { count });
                    self.outbound.send(&ServerOp::Pong { nonce });
                }
                ClientOp::Subscribe { sub_id, topic, group } => self.subscribe(sub_id, topic, group),
                ClientOp::Unsubscribe { sub_id } => self.unsubscribe(sub_id),
                ClientOp::Hello { .. } => return Err((ErrorCode::Protocol, "HELLO sent twice".to_owned())),
                ClientOp::Publish { .. } => {}
            }
        };
        shared.metrics.frames_in.inc_by(n_frames);
        Ok(step)
    }

    fn lock_ack(&self) -> std::sync::MutexGuard<'_, AckState> {
        self.ack.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues the routed deliveries and adds them to the ACK state.
    fn finish(&self, routed: &mut Routed) {
        for (outbound, mut frames_bytes, frames) in routed.pending.drain(..) {
            if frames == 0 {
                continue;
            }
            let bytes = frames_bytes.len();
            if let Some(position) = outbound.deliver([frames_bytes.split().freeze()], bytes, frames) {
                record(&mut routed.positions, &outbound, position);
            }
        }
        if routed.routed == 0 && routed.positions.is_empty() {
            return;
        }
        self.shared.metrics.publishes.inc_by(routed.routed);
        let mut state = self.lock_ack();
        state.routed += std::mem::take(&mut routed.routed);
        for (outbound, position) in routed.positions.drain(..) {
            state.record(&outbound, position);
        }
        drop(state);
        self.ack.1.notify_one();
    }

    fn hello(&self, op: &ClientOp) -> Result<(), Fatal> {
        let ClientOp::Hello { version, token, .. } = op else {
            return Err((ErrorCode::HelloRequired, "the first frame must be HELLO".to_owned()));
        };
        if *version != protocol::VERSION {
            return Err((ErrorCode::UnsupportedVersion, format!("version {version} is not supported (1 is)")));
        }
        if let Some(expected) = &self.shared.settings.token {
            if !constant_time_eq(expected.as_bytes(), token.as_bytes()) {
                return Err((ErrorCode::Unauthorized, "wrong or missing token".to_owned()));
            }
        }
        let max_frame = u32::try_from(self.shared.settings.max_frame).unwrap_or(u32::MAX);
        self.outbound.send(&ServerOp::Welcome {
            version: protocol::VERSION,
            server_id: self.shared.settings.server_id.clone(),
            max_frame,
        });
        Ok(())
    }

    /// Routes one PUBLISH (`topic` and `payload` are ranges of `body`).
    fn route(
        &self,
        router: &HashMap<Topic, TopicEntry>,
        body: &Bytes,
        topic: std::ops::Range<usize>,
        payload: std::ops::Range<usize>,
        routed: &mut Routed,
    ) {
        let topic_bytes = &body[topic];
        let Some(entry) = router.get(topic_bytes) else {
            if let Err(reason) = Topic::check(topic_bytes) {
                self.outbound.send_error(ErrorCode::BadTopic, reason.to_owned());
            }
            return;
        };
        let payload_bytes = &body[payload.clone()];
        let mut push = |subscriber: &Subscriber| {
            if payload_bytes.len() >= SHARE_PAYLOAD_FROM {
                // Large: queue the frame head and a shared slice of the payload,
                // after this subscriber's pending small deliveries (order holds).
                let (earlier, earlier_frames) =
                    match routed.pending.iter_mut().find(|(queue, _, _)| Arc::ptr_eq(queue, &subscriber.outbound)) {
                        Some((_, frames_bytes, frames)) => (frames_bytes.split().freeze(), std::mem::take(frames)),
                        None => (Bytes::new(), 0),
                    };
                let mut head = BytesMut::with_capacity(10 + topic_bytes.len());
                protocol::encode_deliver_head(&mut head, subscriber.sub_id, topic_bytes, payload_bytes.len());
                let bytes = earlier.len() + head.len() + payload_bytes.len();
                let chunks =
                    [earlier, head.freeze(), body.slice(payload.clone())].into_iter().filter(|chunk| !chunk.is_empty());
                if let Some(position) = subscriber.outbound.deliver(chunks, bytes, earlier_frames + 1) {
                    record(&mut routed.positions, &subscriber.outbound, position);
                }
                return;
            }
            let index = match routed.pending.iter().position(|(queue, _, _)| Arc::ptr_eq(queue, &subscriber.outbound)) {
                Some(index) => index,
                None => {
                    // Deliveries are 4 bytes longer than publishes: room for the
                    // whole batch, and under the allocator's mmap threshold.
                    let capacity = (routed.batch_len + routed.batch_len / 16 + 256).min(120 * 1024);
                    routed.pending.push((Arc::clone(&subscriber.outbound), BytesMut::with_capacity(capacity), 0));
                    routed.pending.len() - 1
                }
            };
            let (_, frames_bytes, frames) = &mut routed.pending[index];
            protocol::encode_deliver(frames_bytes, subscriber.sub_id, topic_bytes, payload_bytes);
            *frames += 1;
        };
        for subscriber in &entry.fanout {
            push(subscriber);
        }
        for group in &entry.groups {
            if !group.members.is_empty() {
                let index = group.next.fetch_add(1, Ordering::Relaxed) % group.members.len();
                push(&group.members[index]);
            }
        }
    }

    fn subscribe(&mut self, sub_id: u32, topic: Bytes, group: Bytes) {
        let topic = match Topic::new(topic) {
            Ok(topic) => topic,
            Err(reason) => {
                self.outbound.send_error(ErrorCode::BadTopic, reason.to_owned());
                return;
            }
        };
        if !group.is_empty() && Topic::new(group.clone()).is_err() {
            self.outbound.send_error(ErrorCode::BadTopic, "bad group name".to_owned());
            return;
        }
        if !self.subscriptions.contains_key(&sub_id)
            && self.subscriptions.len() >= self.shared.settings.max_subscriptions
        {
            let message = format!("limit of {} subscriptions reached", self.shared.settings.max_subscriptions);
            self.outbound.send_error(ErrorCode::TooManySubscriptions, message);
            return;
        }
        self.unsubscribe_quietly(sub_id);
        let subscriber = Subscriber { connection_id: self.connection_id, sub_id, outbound: Arc::clone(&self.outbound) };
        {
            let mut router = self.shared.router.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !router.contains_key(&topic) && router.len() >= self.shared.settings.max_topics {
                drop(router);
                let message = format!("limit of {} topics reached", self.shared.settings.max_topics);
                self.outbound.send_error(ErrorCode::TooManySubscriptions, message);
                return;
            }
            let entry = router.entry(topic.clone()).or_default();
            if group.is_empty() {
                entry.fanout.push(subscriber);
            } else if let Some(existing) = entry.groups.iter_mut().find(|existing| existing.name == group) {
                existing.members.push(subscriber);
            } else {
                entry.groups.push(Group { name: group.clone(), members: vec![subscriber], next: AtomicUsize::new(0) });
            }
        }
        self.subscriptions.insert(sub_id, (topic, group));
        self.shared.metrics.subscriptions.inc();
        self.outbound.send(&ServerOp::SubAck { sub_id });
    }

    fn unsubscribe(&mut self, sub_id: u32) {
        if self.unsubscribe_quietly(sub_id) {
            self.outbound.send(&ServerOp::UnsubAck { sub_id });
        } else {
            let message = format!("no subscription {sub_id}");
            self.outbound.send_error(ErrorCode::UnknownSubscription, message);
        }
    }

    fn unsubscribe_quietly(&mut self, sub_id: u32) -> bool {
        let Some((topic, _)) = self.subscriptions.remove(&sub_id) else {
            return false;
        };
        self.shared.metrics.subscriptions.dec();
        let mut router = self.shared.router.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        remove_from(&mut router, &topic, |subscriber| {
            subscriber.connection_id == self.connection_id && subscriber.sub_id == sub_id
        });
        true
    }

    fn remove_subscriptions(&mut self) {
        let mut router = self.shared.router.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (_, (topic, _)) in self.subscriptions.drain() {
            self.shared.metrics.subscriptions.dec();
            remove_from(&mut router, &topic, |subscriber| subscriber.connection_id == self.connection_id);
        }
    }
}

fn remove_from(router: &mut HashMap<Topic, TopicEntry>, topic: &Topic, matches: impl Fn(&Subscriber) -> bool) {
    let Some(entry) = router.get_mut(topic) else {
        return;
    };
    entry.fanout.retain(|subscriber| !matches(subscriber));
    for group in &mut entry.groups {
        group.members.retain(|subscriber| !matches(subscriber));
    }
    entry.groups.retain(|group| !group.members.is_empty());
    if entry.fanout.is_empty() && entry.groups.is_empty() {
        router.remove(topic);
    }
}

/// Sets the position to wait for on `outbound` (the latest one wins: a
/// queue writes in order).
fn record(positions: &mut Positions, outbound: &Arc<Outbound>, position: u64) {
    match positions.iter_mut().find(|(queue, _)| Arc::ptr_eq(queue, outbound)) {
        Some(entry) => entry.1 = position,
        None => positions.push((Arc::clone(outbound), position)),
    }
}

/// The topic and payload ranges of a PUBLISH body (`[0x02][topic str8][payload]`).
fn split_publish(body: &[u8]) -> Result<(std::ops::Range<usize>, std::ops::Range<usize>), Fatal> {
    let Some(&topic_len) = body.get(1) else {
        return Err((ErrorCode::Protocol, "truncated PUBLISH: no topic length".to_owned()));
    };
    let topic_end = 2 + usize::from(topic_len);
    if body.len() < topic_end {
        return Err((
            ErrorCode::Protocol,
            format!("truncated PUBLISH: topic needs {} more byte(s)", topic_end - body.len()),
        ));
    }
    Ok((2..topic_end, topic_end..body.len()))
}

fn fatal_framing(error: transport::Error) -> Fatal {
    match error {
        transport::Error::FrameTooLarge { len, max } => {
            (ErrorCode::FrameTooLarge, format!("frame of {len} bytes exceeds max_frame {max}"))
        }
        other => (ErrorCode::Protocol, other.to_string()),
    }
}

fn fatal_decode(error: DecodeError) -> Fatal {
    (ErrorCode::Protocol, error.to_string())
}

/// Compares secrets in time that depends only on their lengths.
fn constant_time_eq(expected: &[u8], given: &[u8]) -> bool {
    let mut difference = u8::from(expected.len() != given.len());
    for (index, &byte) in expected.iter().enumerate() {
        difference |= byte ^ given.get(index).copied().unwrap_or(0);
    }
    difference == 0
}

async fn ack_loop(ack: Arc<(Mutex<AckState>, Notify)>, outbound: Arc<Outbound>, interval: Duration) {
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

async fn write_loop(
    mut write_half: impl AsyncWrite + Unpin,
    mut rx: mpsc::UnboundedReceiver<(Out, usize)>,
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
        let mut n_items = 0u64;
        let mut bytes = 0usize;
        let mut written_bytes = 0u64;
        for (item, size) in items.drain(..) {
            let Out::Chunk(chunk) = item else {
                if !buffer.is_empty() && outbound.write(&mut write_half, &buffer).await.is_err() {
                    break 'outer;
                }
                outbound.written.fetch_add(n_items, Ordering::AcqRel);
                break 'outer;
            };
            let chunk_len = chunk.len();
            if chunk.len() >= WRITE_DIRECT_FROM {
                if !buffer.is_empty() {
                    if outbound.write(&mut write_half, &buffer).await.is_err() {
                        break 'outer;
                    }
                    buffer.clear();
                }
                if outbound.write(&mut write_half, &chunk).await.is_err() {
                    break 'outer;
                }
            } else {
                buffer.extend_from_slice(&chunk);
            }
            n_items += 1;
            bytes += size;
            written_bytes += chunk_len as u64;
        }
        if !buffer.is_empty() {
            if outbound.write(&mut write_half, &buffer).await.is_err() {
                break;
            }
            buffer.clear();
        }
        outbound.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
        outbound.written.fetch_add(n_items, Ordering::AcqRel);
        outbound.metrics.bytes_out.inc_by(written_bytes);
    }
    outbound.closed.store(true, Ordering::Release);
    let _ = write_half.shutdown().await;
}
