//! The broker client's session core, sans-IO: what one client has written
//! and not had acknowledged (and the bytes of it in flight), the ACK count
//! of the current connection, and its subscriptions. The connection task
//! owns it alone and feeds it events — connected, a chunk written, a batch
//! of frames read, a subscription asked for — and it answers with the bytes
//! to write and what to do ([`Received`]): settle, deliver, confirm, count.
//! The frames themselves are described in `docs/broker-protocol.md`.
//!
//! It deliberately does no I/O and keeps no clock: the client has no rule
//! that depends on time (backoff and the connect timeout belong to
//! `transport::reconnect`), and it neither holds the channels deliveries go
//! out on nor the buffer publishes come from; the task does.

use std::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::DeliveryBatch;
use crate::Error;
use crate::protocol::{self, ClientOp, DeliverRef, ErrorCode, ServerOp};

/// One client's session state, across its connections.
#[derive(Debug)]
pub(super) struct ClientSession {
    /// Bytes written and not yet acknowledged at most: at or over it,
    /// nothing more is sent until an ACK frees room.
    max_in_flight: usize,
    /// Chunks written and not yet acknowledged, oldest first, each with its
    /// count of PUBLISH frames (at least one); kept across connections and
    /// resent first on the next one.
    unacked: VecDeque<(Bytes, usize)>,
    /// The bytes of the chunks in `unacked`.
    in_flight: usize,
    /// The ACK count already applied on the current connection (counts are
    /// cumulative per connection, so a new connection starts again at 0).
    acked_here: u64,
    /// Every live subscription by id, in the order they were made.
    subscriptions: BTreeMap<u32, SubscriptionState>,
    /// The next subscription id; ids are never reused.
    next_sub_id: u32,
    /// Whether a connection is up (past WELCOME): a new subscription's
    /// SUBSCRIBE goes out at once, else with the next connection.
    connected: bool,
}

/// One subscription as the session knows it.
#[derive(Debug)]
struct SubscriptionState {
    /// Its topic, checked by the handle.
    topic: Bytes,
    /// Its group, checked by the handle; empty for fan-out.
    group: Bytes,
    /// Whether a SUBACK has been seen for it (on any connection): only the
    /// first one is reported.
    active: bool,
}

/// What the task must do after a batch of frames was read. Reused from
/// batch to batch ([`Received::clear`]), so a busy connection allocates
/// nothing per batch but the delivery lists.
#[derive(Debug, Default)]
pub(super) struct Received {
    /// Publishes newly acknowledged: settle this many frames ...
    pub(super) settled_frames: usize,
    /// ... of this many bytes.
    pub(super) settled_bytes: usize,
    /// Chunks wholly acknowledged: their memory may be reused.
    pub(super) recycle: Vec<Bytes>,
    /// Deliveries of this batch per subscription, each list in order.
    pub(super) deliveries: Vec<(u32, DeliveryBatch)>,
    /// Subscriptions the broker confirmed for the first time.
    pub(super) activated: Vec<u32>,
    /// Publishes the broker's ACL refused (each before the ACK covering it).
    pub(super) refused: u64,
    /// Other ERRORs that keep the connection, to log.
    pub(super) errors: Vec<(ErrorCode, String)>,
}

impl Received {
    /// Empties it for the next batch.
    pub(super) fn clear(&mut self) {
        self.settled_frames = 0;
        self.settled_bytes = 0;
        self.recycle.clear();
        self.deliveries.clear();
        self.activated.clear();
        self.refused = 0;
        self.errors.clear();
    }
}

impl ClientSession {
    /// A session with nothing sent and no subscription, not connected.
    pub(super) fn new(max_in_flight: usize) -> ClientSession {
        ClientSession {
            max_in_flight,
            unacked: VecDeque::new(),
            in_flight: 0,
            acked_here: 0,
            subscriptions: BTreeMap::new(),
            next_sub_id: 1,
            connected: false,
        }
    }

    /// Records a subscription (topic and group already checked) and returns
    /// its id; while connected, its SUBSCRIBE is appended to `out`.
    pub(super) fn subscribe(&mut self, topic: Bytes, group: Bytes, out: &mut BytesMut) -> u32 {
        let sub_id = self.next_sub_id;
        self.next_sub_id += 1;
        let state = SubscriptionState { topic, group, active: false };
        if self.connected {
            encode_subscribe(sub_id, &state, out);
        }
        self.subscriptions.insert(sub_id, state);
        sub_id
    }

    /// A connection is up (past WELCOME): appends to `out` every
    /// SUBSCRIBE, then every unacknowledged chunk in its original order.
    /// With `max_len`, frames longer than it (length prefix included) are
    /// dropped rather than resent: a broker that lowered its `max_frame`
    /// would refuse them and close the connection at every attempt.
    pub(super) fn connected(&mut self, out: &mut BytesMut, max_len: Option<usize>) -> Resent {
        self.connected = true;
        self.acked_here = 0;
        for (&sub_id, state) in &self.subscriptions {
            encode_subscribe(sub_id, state, out);
        }
        let mut resent = Resent::default();
        if let Some(max_len) = max_len {
            for (chunk, frames) in &mut self.unacked {
                if let Some(kept) = without_oversized(chunk, max_len) {
                    self.in_flight -= kept.dropped_bytes;
                    resent.dropped_frames += kept.dropped_frames;
                    resent.dropped_bytes += kept.dropped_bytes;
                    (*chunk, *frames) = (kept.chunk, kept.frames);
                }
            }
            self.unacked.retain(|(_, frames)| *frames > 0);
        }
        for (chunk, frames) in &self.unacked {
            out.extend_from_slice(chunk);
            resent.frames += *frames as u64;
        }
        resent
    }

    /// The connection is gone (or about to be replaced): what was written
    /// and not acknowledged stays, to be resent.
    pub(super) fn disconnected(&mut self) {
        self.connected = false;
    }

    /// Whether another chunk may be written: less than `max_in_flight`
    /// bytes are unacknowledged.
    pub(super) fn has_room(&self) -> bool {
        self.in_flight < self.max_in_flight
    }

    /// Bytes written and not yet acknowledged.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// `chunk` (whole PUBLISH frames, `frames` of them) is being written: it
    /// is held until an ACK covers it.
    pub(super) fn sent(&mut self, chunk: Bytes, frames: usize) {
        if frames == 0 {
            return;
        }
        self.in_flight += chunk.len();
        self.unacked.push_back((chunk, frames));
    }

    /// Handles a batch of whole frames read from the broker, filling
    /// `received` (cleared first) with what to do.
    ///
    /// # Errors
    /// A malformed frame ([`Error::Protocol`]) or a fatal broker ERROR
    /// ([`Error::Broker`]): the connection must end. What `received` holds
    /// for the frames before it must still be done.
    pub(super) fn receive(&mut self, batch: &Bytes, received: &mut Received) -> Result<(), Error> {
        received.clear();
        for frame in protocol::frames(batch) {
            let frame = frame.map_err(|error| Error::Protocol(error.to_string()))?;
            if frame.op() == Some(protocol::op::DELIVER) {
                let deliver = DeliverRef::parse(frame.body).map_err(|error| Error::Protocol(error.to_string()))?;
                let payload_at = frame.at + deliver.payload_at;
                // A batch is at most a few MiB, so offsets fit in u32.
                let range = (
                    u32::try_from(payload_at).unwrap_or(u32::MAX),
                    u32::try_from(payload_at + deliver.payload.len()).unwrap_or(u32::MAX),
                );
                match received.deliveries.iter_mut().find(|(id, _)| *id == deliver.sub_id) {
                    Some((_, list)) => list.payloads.push(range),
                    None => received
                        .deliveries
                        .push((deliver.sub_id, DeliveryBatch { chunk: batch.clone(), payloads: vec![range] })),
                }
                continue;
            }
            let body = batch.slice(frame.at..frame.at + frame.body.len());
            match ServerOp::decode(body).map_err(|error| Error::Protocol(error.to_string()))? {
                ServerOp::Ack { count } => {
                    let newly = count.saturating_sub(self.acked_here);
                    self.acked_here = self.acked_here.max(count);
                    self.acknowledge(newly, received);
                }
                // After WELCOME, `unauthorized` refuses one PUBLISH or
                // SUBSCRIBE and the connection stays: reconnecting would
                // only send the same publishes to the same refusal.
                ServerOp::Error { code, message } if code.is_fatal() && code != ErrorCode::Unauthorized => {
                    return Err(Error::Broker { code, message });
                }
                ServerOp::Error { code, message } => {
                    if code == ErrorCode::Unauthorized && message == protocol::PUBLISH_REFUSED {
                        received.refused += 1;
                    }
                    received.errors.push((code, message));
                }
                ServerOp::SubAck { sub_id } => {
                    if let Some(state) = self.subscriptions.get_mut(&sub_id)
                        && !state.active
                    {
                        state.active = true;
                        received.activated.push(sub_id);
                    }
                }
                ServerOp::Deliver { .. }
                | ServerOp::Welcome { .. }
                | ServerOp::UnsubAck { .. }
                | ServerOp::Pong { .. } => {}
            }
        }
        Ok(())
    }

    /// Forgets `newly` acknowledged publishes, oldest first, into `received`.
    fn acknowledge(&mut self, newly: u64, received: &mut Received) {
        let mut remaining = usize::try_from(newly).unwrap_or(usize::MAX);
        while remaining > 0 {
            let Some((chunk, frames)) = self.unacked.front_mut() else { break };
            if *frames <= remaining {
                remaining -= *frames;
                received.settled_frames += *frames;
                received.settled_bytes += chunk.len();
                self.in_flight -= chunk.len();
                if let Some((chunk, _)) = self.unacked.pop_front() {
                    received.recycle.push(chunk);
                }
            } else {
                let bytes = myc_transport::frames_len(chunk, remaining, protocol::frame_len);
                *chunk = chunk.slice(bytes..);
                *frames -= remaining;
                received.settled_frames += remaining;
                received.settled_bytes += bytes;
                self.in_flight -= bytes;
                remaining = 0;
            }
        }
    }
}

/// What [`ClientSession::connected`] resends, and what it dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Resent {
    /// Publishes resent.
    pub(super) frames: u64,
    /// Publishes dropped as longer than the broker accepts ...
    pub(super) dropped_frames: usize,
    /// ... and their bytes.
    pub(super) dropped_bytes: usize,
}

/// A chunk of whole frames without those over a length limit.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Kept {
    /// The frames kept, in order.
    pub(super) chunk: Bytes,
    /// How many.
    pub(super) frames: usize,
    /// Frames left out ...
    pub(super) dropped_frames: usize,
    /// ... and their bytes.
    pub(super) dropped_bytes: usize,
}

/// `chunk` (whole frames) without its frames longer than `max_len` bytes,
/// length prefix included; `None` when every frame fits (nothing copied).
pub(super) fn without_oversized(chunk: &Bytes, max_len: usize) -> Option<Kept> {
    let lengths = || {
        let mut at = 0;
        std::iter::from_fn(move || {
            let len = protocol::frame_len(chunk.get(at..)?).min(chunk.len() - at);
            (len > 0).then(|| {
                at += len;
                (at - len, len)
            })
        })
    };
    if lengths().all(|(_, len)| len <= max_len) {
        return None;
    }
    let mut kept = Kept { chunk: Bytes::new(), frames: 0, dropped_frames: 0, dropped_bytes: 0 };
    let mut bytes = BytesMut::with_capacity(chunk.len());
    for (at, len) in lengths() {
        if len > max_len {
            kept.dropped_frames += 1;
            kept.dropped_bytes += len;
        } else {
            bytes.extend_from_slice(&chunk[at..at + len]);
            kept.frames += 1;
        }
    }
    kept.chunk = bytes.freeze();
    Some(kept)
}

/// Appends one SUBSCRIBE.
fn encode_subscribe(sub_id: u32, state: &SubscriptionState, out: &mut BytesMut) {
    // Topic and group were checked by `Client::subscribe`: they fit.
    let subscribe = ClientOp::Subscribe { sub_id, topic: state.topic.clone(), group: state.group.clone() };
    if let Err(error) = subscribe.encode(out) {
        tracing::warn!(%error, sub_id, "SUBSCRIBE could not be encoded");
    }
}

#[cfg(test)]
mod tests;
