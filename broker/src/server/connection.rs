//! One client connection: the inline HELLO/WELCOME handshake, the read loop
//! that routes each read batch (fan-out, groups, restart grace, PING
//! barriers), and subscription bookkeeping.
//!
//! It deliberately leaves writing to `outbound`: routing only queues.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use myc_transport::{FrameReader, LengthPrefixed, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::hello::{Admitted, check_hello};
use super::outbound::{AckState, Outbound, Positions, ack_loop, record, write_loop};
use super::{Group, Shared, Subscriber, TopicEntry};
use crate::protocol::{self, ClientOp, DecodeError, ErrorCode, PublishRef, ServerOp, Topic};

/// The ERROR `shutting_down` message.
pub(super) const SHUTTING_DOWN: &str = "broker is shutting down";

/// How long a new connection has to send its HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) async fn serve_connection(shared: Arc<Shared>, stream: Stream) {
    let peer_uid = stream.peer_uid();
    let (read_half, mut write_half) = stream.into_split();
    let Ok(_permit) = Arc::clone(&shared.connection_slots).try_acquire_owned() else {
        refuse(&shared, read_half, &mut write_half, ErrorCode::Protocol, "too many connections").await;
        return;
    };
    // The handshake runs inline, before any task is spawned, so that
    // connect + HELLO/WELCOME costs no task hand-off.
    let mut reader = FrameReader::new(read_half, LengthPrefixed { max_body: shared.settings.max_frame });
    let mut stopping = shared.stopping.clone();
    let hello = tokio::select! {
        read = tokio::time::timeout(HELLO_TIMEOUT, reader.read_frame()) => match read {
            Ok(Ok(Some(frame))) => ClientOp::decode(frame.slice(4..)).map_err(fatal_decode),
            Ok(Ok(None)) => return,
            Ok(Err(error)) => Err(fatal_framing(error)),
            Err(_) => Err((ErrorCode::HelloRequired, "no HELLO within 10 s".to_owned())),
        },
        // A shutdown does not wait out a silent peer's HELLO time.
        _ = stopping.wait_for(|stopping| *stopping) => Err((ErrorCode::ShuttingDown, SHUTTING_DOWN.to_owned())),
    };
    let permissions = match hello.and_then(|hello| check_hello(&shared.settings, &hello, peer_uid)) {
        Ok(Admitted { welcome, permissions }) => {
            shared.metrics.frames_out.inc();
            if write_half.write_all(&welcome).await.is_err() {
                return;
            }
            permissions
        }
        Err((code, message)) => {
            refuse(&shared, reader.into_inner(), &mut write_half, code, &message).await;
            return;
        }
    };
    let connection_id = shared.next_connection_id.fetch_add(1, Ordering::Relaxed);
    let (outbound, rx) = Outbound::new(&shared.settings, Arc::clone(&shared.metrics));
    let outbound = Arc::new(outbound);
    // Guards abort the helper tasks if this connection's future is dropped
    // (the broker aborted), so no half of a connection outlives it.
    let mut writer = myc_transport::AbortOnDrop::spawn(write_loop(write_half, rx, Arc::clone(&outbound)));
    shared.metrics.connections.inc();
    shared.lock_connections().insert(connection_id, Arc::clone(&outbound));
    // Registered after the shutdown sweep: it would never hear of it.
    if *shared.stopping.borrow() {
        outbound.send_fatal(ErrorCode::ShuttingDown, SHUTTING_DOWN);
    }
    let ack = Arc::new((Mutex::new(AckState::default()), Notify::new()));
    let acker = myc_transport::AbortOnDrop::spawn(ack_loop(
        Arc::clone(&ack),
        Arc::clone(&outbound),
        shared.settings.ack_interval,
    ));
    let mut connection = Connection {
        permissions,
        shared: Arc::clone(&shared),
        connection_id,
        outbound: Arc::clone(&outbound),
        ack,
        subscriptions: HashMap::new(),
        grace_over: false,
    };
    if let Err((code, message)) = connection.read_loop(reader).await {
        tracing::debug!(connection_id, code = code.name(), %message, "closing connection");
        outbound.send_fatal(code, &message);
    } else {
        outbound.close_after_queued();
    }
    connection.remove_subscriptions();
    drop(acker);
    let _ = writer.join().await;
    shared.lock_connections().remove(&connection_id);
    shared.metrics.connections.dec();
}

/// Sends a fatal ERROR straight to a connection that never got a writer task,
/// and closes it. What the client already sent is read and discarded for a
/// moment first: closing a socket with unread input resets it, and the
/// client would lose the ERROR.
async fn refuse(
    shared: &Shared,
    mut read_half: impl AsyncRead + Unpin,
    write_half: &mut (impl AsyncWrite + Unpin),
    code: ErrorCode,
    message: &str,
) {
    shared.metrics.error_sent(code);
    let mut frame = BytesMut::new();
    if (ServerOp::Error { code, message: message.to_owned() }).encode(&mut frame).is_err() {
        frame.clear();
    }
    let _ = tokio::time::timeout(shared.settings.write_deadline, write_half.write_all(&frame)).await;
    let _ = write_half.shutdown().await;
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(100), async {
        while matches!(read_half.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

struct Connection {
    /// What this client may do, when the broker has an ACL.
    permissions: Option<super::acl::Permissions>,
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
    async fn read_loop(
        &mut self,
        mut reader: FrameReader<impl AsyncRead + Unpin, LengthPrefixed>,
    ) -> Result<(), Fatal> {
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
            // A connection closed by the broker (slow consumer, shutdown)
            // stops reading at once, even while its peer keeps sending.
            if self.outbound.is_closed() {
                return Ok(());
            }
            self.shared.metrics.bytes_in.inc_by(batch.len() as u64);
            let mut offset = 0;
            loop {
                let step = self.process(&batch, offset, &mut routed);
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
    fn process(&mut self, batch: &Bytes, mut offset: usize, routed: &mut Routed) -> Result<Step, Fatal> {
        let shared = Arc::clone(&self.shared);
        let mut router = None;
        let mut n_frames = 0u64;
        routed.batch_len = batch.len();
        let step = loop {
            if offset >= batch.len() {
                break Step::Done;
            }
            n_frames += 1;
            let frame = match protocol::frames(&batch[offset..]).next() {
                Some(Ok(frame)) => frame,
                Some(Err(error)) => return Err(fatal_decode(error)),
                None => break Step::Done,
            };
            let frame_len = frame.body.len();
            let body_at = offset + frame.at;
            if frame.op() == Some(protocol::op::PUBLISH) {
                if !self.grace_over {
                    if Instant::now() < shared.grace_ends {
                        n_frames -= 1;
                        break Step::Grace(offset);
                    }
                    self.grace_over = true;
                }
                let publish = PublishRef::parse(frame.body).map_err(fatal_decode)?;
                let router = router
                    .get_or_insert_with(|| shared.router.read().unwrap_or_else(std::sync::PoisonError::into_inner));
                self.route(router, batch, body_at, &publish, routed);
                routed.routed += 1;
                offset += 4 + frame_len;
                continue;
            }
            let body = batch.slice(body_at..body_at + frame_len);
            // Anything else is handled in order after the deliveries before it.
            router = None;
            self.finish(routed);
            let op = ClientOp::decode(body).map_err(fatal_decode)?;
            offset += 4 + frame_len;
            match op {
                ClientOp::Ping { nonce } => {
                    let count = {
                        let mut state = self.lock_ack();
                        state.advance();
                        state.acked
                    };
                    self.outbound.send_control(&[ServerOp::Ack { count }, ServerOp::Pong { nonce }]);
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

    /// Routes one PUBLISH, whose body starts at `body_at` in `batch`.
    fn route(
        &self,
        router: &HashMap<Topic, TopicEntry>,
        batch: &Bytes,
        body_at: usize,
        publish: &PublishRef<'_>,
        routed: &mut Routed,
    ) {
        let topic_bytes = publish.topic;
        if let Some(permissions) = &self.permissions
            && !permissions.may_publish(topic_bytes)
        {
            self.outbound.send_error(ErrorCode::Unauthorized, protocol::PUBLISH_REFUSED.to_owned());
            return;
        }
        let Some((topic, entry)) = router.get_key_value(topic_bytes) else {
            if let Err(reason) = Topic::check(topic_bytes) {
                self.outbound.send_error(ErrorCode::BadTopic, reason.to_owned());
            }
            return;
        };
        let topic = topic.as_topic_ref();
        let payload_bytes = publish.payload;
        let payload_at = body_at + publish.payload_at;
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
                protocol::encode_deliver_head(&mut head, subscriber.sub_id, topic, payload_bytes.len());
                let bytes = earlier.len() + head.len() + payload_bytes.len();
                let payload = batch.slice(payload_at..payload_at + payload_bytes.len());
                let chunks = [earlier, head.freeze(), payload].into_iter().filter(|chunk| !chunk.is_empty());
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
            protocol::encode_deliver(frames_bytes, subscriber.sub_id, topic, payload_bytes);
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
        if let Some(permissions) = &self.permissions
            && !permissions.may_subscribe(topic.as_bytes())
        {
            self.outbound.send_error(ErrorCode::Unauthorized, "this client may not subscribe to that topic".to_owned());
            return;
        }
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
        let connection_id = self.connection_id;
        let subscriber = Subscriber { connection_id, sub_id, outbound: Arc::clone(&self.outbound) };
        {
            // One write lock for the check, the removal of what `sub_id`
            // named before and the insertion: a refused SUBSCRIBE leaves the
            // old subscription as it was, and a replacing one leaves no gap a
            // publish could fall into.
            let mut router = self.shared.router.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            let previous = self.subscriptions.get(&sub_id).map(|(previous, _)| previous.clone());
            if !router.contains_key(&topic) {
                // Replacing the only subscriber of another topic frees its slot.
                let frees_one = previous
                    .as_ref()
                    .is_some_and(|previous| router.get(previous).is_some_and(|entry| entry.subscribers() == 1));
                if router.len() - usize::from(frees_one) >= self.shared.settings.max_topics {
                    drop(router);
                    let message = format!("limit of {} topics reached", self.shared.settings.max_topics);
                    self.outbound.send_error(ErrorCode::TooManySubscriptions, message);
                    return;
                }
            }
            if let Some(previous) = previous {
                self.subscriptions.remove(&sub_id);
                self.shared.metrics.subscriptions.dec();
                remove_from(&mut router, &previous, |subscriber| {
                    subscriber.connection_id == connection_id && subscriber.sub_id == sub_id
                });
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

fn fatal_framing(error: myc_transport::Error) -> Fatal {
    match error {
        myc_transport::Error::FrameTooLarge { len, max } => {
            (ErrorCode::FrameTooLarge, format!("frame of {len} bytes exceeds max_frame {max}"))
        }
        other => (ErrorCode::Protocol, other.to_string()),
    }
}

fn fatal_decode(error: DecodeError) -> Fatal {
    (ErrorCode::Protocol, error.to_string())
}
