//! The broker client (its frames are described in `docs/broker-protocol.md`):
//! a cloneable [`Client`] handle over one connection task. Publishes are
//! encoded straight into the bounded buffer of a `transport` [`Outbox`]; the
//! task (`transport`'s [`myc_transport::reconnect`] loop driving a
//! `BrokerLink`) connects in the background, reconnects with jittered
//! backoff, says HELLO, re-subscribes, resends unacknowledged publishes in
//! order, then drains the buffer in batches. A publish is settled only once
//! an ACK covers it. After `max_reconnects` failed attempts in a row
//! publishes fail at once (`max_reconnects_exceeded`) while the task keeps
//! trying every `backoff_max`; the next connection clears it, and what was
//! buffered is kept throughout. [`Client::reconfigure`] moves a running
//! client to a new endpoint or token, resending what was not acknowledged.
//!
//! It deliberately does not look inside payloads and offers no ordering
//! across clients: order is per client.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use myc_transport::{BufferLimits, Endpoint, FrameReader, LengthPrefixed, Link, Outbox, PushError};
pub use myc_transport::{ConnectionState, ReconnectOptions};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::Error;
use crate::protocol::{self, ClientOp, DeliverRef, ErrorCode, ServerOp, Topic, TopicRef};

/// Client options.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Where the broker is.
    pub endpoint: Endpoint,
    /// Sent in HELLO.
    pub client_name: String,
    /// Sent in HELLO; empty for none.
    pub token: String,
    /// Publish buffer bounds, deadline and policy.
    pub buffer: BufferLimits,
    /// Backoff, `max_reconnects`, and the connect timeout (connect and
    /// HELLO must complete within it).
    pub reconnect: ReconnectOptions,
    /// Largest frame this client reads.
    pub max_frame: usize,
    /// Deliveries buffered per subscription (in broker-read batches) before
    /// the reader waits.
    pub subscription_capacity: usize,
    /// Bytes written and not yet acknowledged at most. Kept well under the
    /// broker's per-subscriber outbound limit (64 MiB), so that one publisher
    /// alone cannot push a reading subscriber over it: the ACKs pace it.
    pub max_in_flight: usize,
}

impl ClientOptions {
    /// Defaults for `endpoint`.
    pub fn new(endpoint: Endpoint) -> ClientOptions {
        ClientOptions {
            endpoint,
            client_name: "myc-client".to_owned(),
            token: String::new(),
            buffer: BufferLimits::default(),
            reconnect: ReconnectOptions::default(),
            max_frame: protocol::MAX_MAX_FRAME,
            subscription_capacity: 1024,
            max_in_flight: 8 * 1024 * 1024,
        }
    }
}

/// A message delivered to a subscription. Its topic is the subscription's
/// ([`Subscription::topic`]): topics match exactly, so it is not repeated per
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The payload, byte for byte as published.
    pub payload: Bytes,
}

/// The receiving end of a subscription.
#[derive(Debug)]
pub struct Subscription {
    topic: String,
    /// Deliveries arrive in batches (one per broker read), to keep channel
    /// traffic per batch rather than per message.
    rx: mpsc::Receiver<DeliveryBatch>,
    /// The current batch and the next payload in it.
    current: DeliveryBatch,
    next: usize,
    /// Fires at the broker's first SUBACK for this subscription.
    active: Option<oneshot::Receiver<()>>,
}

/// Deliveries as a `Stream`, ending when the client is dropped.
impl futures_core::Stream for Subscription {
    type Item = Delivery;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        loop {
            if let Some(delivery) = self.pop() {
                return std::task::Poll::Ready(Some(delivery));
            }
            match self.rx.poll_recv(cx) {
                std::task::Poll::Ready(Some(batch)) => self.refill(batch),
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

impl Subscription {
    /// The next deliveries, as one batch (the rest of the current batch, or
    /// the next one to arrive); `None` once the client is dropped.
    pub async fn recv_batch(&mut self) -> Option<DeliveryBatch> {
        if self.next < self.current.payloads.len() {
            let mut batch = std::mem::take(&mut self.current);
            batch.payloads.drain(..self.next);
            self.next = 0;
            return Some(batch);
        }
        self.rx.recv().await
    }

    /// The next delivery if one has arrived, without waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pop() {
                return Some(delivery);
            }
            let batch = self.rx.try_recv().ok()?;
            self.refill(batch);
        }
    }

    /// The subscribed topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Waits until the broker has confirmed the subscription (its first
    /// SUBACK), so messages published from now on reach it.
    ///
    /// # Errors
    /// [`Error::Closed`] when no confirmation came within `deadline`.
    pub async fn wait_active(&mut self, deadline: Duration) -> Result<(), Error> {
        let Some(active) = self.active.take() else {
            return Ok(());
        };
        match tokio::time::timeout(deadline, active).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::Closed),
        }
    }

    /// The next delivery; `None` once the client is dropped.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pop() {
                return Some(delivery);
            }
            let batch = self.rx.recv().await?;
            self.refill(batch);
        }
    }
}

/// Counters of one client beyond the [`myc_transport::PublisherCounters`]
/// (where `settled` counts acknowledged publishes).
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Publishes sent again after a reconnect.
    pub resent: AtomicU64,
    /// Publishes that failed because the broker's ACL refused them (reason
    /// `unauthorized`): acknowledged like the others, delivered to no one.
    pub failed_unauthorized: AtomicU64,
}

/// The payloads of one broker read for one subscription: ranges of one
/// shared chunk. [`Subscription::recv`] slices them one by one;
/// [`Subscription::recv_batch`] hands the batch over whole, for consumers
/// that read payloads in place without a reference count each.
#[derive(Debug, Default)]
pub struct DeliveryBatch {
    chunk: Bytes,
    payloads: Vec<(u32, u32)>,
}

impl DeliveryBatch {
    /// The payloads, in order, borrowed.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.payloads.iter().map(|&(start, end)| &self.chunk[start as usize..end as usize])
    }

    /// How many deliveries.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

impl Subscription {
    fn pop(&mut self) -> Option<Delivery> {
        let &(start, end) = self.current.payloads.get(self.next)?;
        self.next += 1;
        Some(Delivery { payload: self.current.chunk.slice(start as usize..end as usize) })
    }

    fn refill(&mut self, batch: DeliveryBatch) {
        self.current = batch;
        self.next = 0;
    }
}

struct SubscriptionEntry {
    topic: Bytes,
    group: Bytes,
    tx: mpsc::Sender<DeliveryBatch>,
    /// Taken at the first SUBACK.
    on_active: Option<oneshot::Sender<()>>,
}

/// Where and as whom the client connects; [`Client::reconfigure`] may
/// change it while running.
struct Peer {
    /// Where the broker is.
    endpoint: Endpoint,
    /// Sent in HELLO.
    token: String,
}

struct Inner {
    /// The options the client started with; its endpoint, token and
    /// reconnect settings may since have changed (see `peer`).
    options: ClientOptions,
    /// The endpoint and token in force, read at each connection attempt.
    peer: Mutex<Peer>,
    outbox: Outbox,
    counters: ClientCounters,
    subscriptions: Mutex<HashMap<u32, SubscriptionEntry>>,
    next_sub_id: AtomicU32,
    /// Wakes the connection task for new subscriptions.
    control: Notify,
    /// Wakes the connection task when an ACK frees in-flight room.
    ack_progress: Notify,
    /// Bytes of the chunks in `unacked`.
    in_flight: std::sync::atomic::AtomicUsize,
    /// `counters.failed_unauthorized` as last reported by `flush`; never
    /// more than the counter.
    refusals_reported: AtomicU64,
    /// Rate limit of the warnings about broker ERRORs that keep the
    /// connection (a refused publish can repeat at line rate).
    error_log: myc_transport::OnceASecond,
}

/// A cloneable handle to one broker connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _task: Arc<myc_transport::AbortOnDrop>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.endpoint()).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the client; it connects in the background.
    pub fn start(options: ClientOptions) -> Client {
        let inner = Arc::new(Inner {
            outbox: Outbox::new(options.buffer, protocol::frame_len),
            peer: Mutex::new(Peer { endpoint: options.endpoint.clone(), token: options.token.clone() }),
            options,
            counters: ClientCounters::default(),
            subscriptions: Mutex::new(HashMap::new()),
            next_sub_id: AtomicU32::new(1),
            control: Notify::new(),
            ack_progress: Notify::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            refusals_reported: AtomicU64::new(0),
            error_log: myc_transport::OnceASecond::default(),
        });
        let task = myc_transport::AbortOnDrop::spawn({
            let inner = Arc::clone(&inner);
            async move {
                let link = BrokerLink { inner: Arc::clone(&inner), unacked: Arc::default() };
                myc_transport::reconnect(&inner.outbox, inner.options.reconnect, link, |attempts| {
                    Error::MaxReconnectsExceeded(attempts).to_string()
                })
                .await;
            }
        });
        Client { inner, _task: Arc::new(task) }
    }

    /// Publishes `payload` on `topic`, waiting only for buffer room (up to
    /// the deadline, per the policy).
    ///
    /// # Errors
    /// A bad topic, or the buffer's refusal (`buffer_full`, a drop,
    /// `max_reconnects_exceeded`).
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let (topic, len) = check_publish(topic, payload)?;
        Ok(self.inner.outbox.push(len, |dst| protocol::encode_publish(dst, topic, payload)).await?)
    }

    /// Publishes without waiting.
    ///
    /// # Errors
    /// As [`Client::publish`], with `buffer_full` at once under `block`.
    pub fn try_publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let (topic, len) = check_publish(topic, payload)?;
        Ok(self.inner.outbox.try_push(len, |dst| protocol::encode_publish(dst, topic, payload))?)
    }

    /// Applies new connection settings while running: the endpoint, token
    /// and reconnect settings of `options` (the rest is kept). A new
    /// endpoint or token drops the connection and connects again at once;
    /// every message not acknowledged on the old connection is resent on the
    /// new one, so nothing is lost (a message the old broker took but had
    /// not acknowledged arrives twice, counted in `resent`). The reconnect
    /// settings apply from the next attempt.
    pub fn reconfigure(&self, options: &ClientOptions) {
        let mut peer = self.inner.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let moved = peer.endpoint != options.endpoint || peer.token != options.token;
        peer.endpoint = options.endpoint.clone();
        peer.token.clone_from(&options.token);
        drop(peer);
        self.inner.outbox.set_reconnect_options(options.reconnect);
        self.inner.outbox.set_limits(options.buffer);
        if moved {
            self.inner.outbox.reconnect_now();
        }
    }

    /// The endpoint in force.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).endpoint.clone()
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.inner.outbox.state()
    }

    /// Bytes buffered now: queued, or sent but not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.outbox.buffered_bytes()
    }

    /// Messages dropped by the buffer's policy: `(drop_newest, drop_oldest)`.
    pub fn dropped(&self) -> (u64, u64) {
        self.inner.outbox.dropped()
    }

    /// Waits until every publish so far is acknowledged, or `deadline` passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`], the reason the client gave up, or
    /// [`Error::PublishesRefused`] when the broker refused publishes since
    /// the last flush that said so.
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self.inner.outbox.flush(deadline).await {
            myc_transport::Flushed::Done => {
                // A refusal comes before the ACK that covers its publish, so
                // every refusal of these publishes is counted by now.
                let refused = self.inner.counters.failed_unauthorized.load(Ordering::Relaxed);
                let reported = self.inner.refusals_reported.swap(refused, Ordering::Relaxed);
                if refused > reported {
                    return Err(Error::PublishesRefused { refused: refused - reported });
                }
                Ok(())
            }
            myc_transport::Flushed::Pending(pending) => Err(Error::FlushTimeout { pending }),
            myc_transport::Flushed::GaveUp(reason) => Err(Error::Buffer(PushError::Closed(reason))),
        }
    }

    /// Subscribes to `topic` (`group` empty: fan-out; else one member of the
    /// group gets each message). Re-issued after every reconnect.
    ///
    /// # Errors
    /// A bad topic or group name.
    pub fn subscribe(&self, topic: &str, group: &str) -> Result<Subscription, Error> {
        let topic_bytes = Bytes::copy_from_slice(topic.as_bytes());
        Topic::new(topic_bytes.clone()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
        if !group.is_empty() {
            Topic::check(group.as_bytes()).map_err(|reason| Error::BadTopic { topic: group.to_owned(), reason })?;
        }
        let (tx, rx) = mpsc::channel(self.inner.options.subscription_capacity);
        let sub_id = self.inner.next_sub_id.fetch_add(1, Ordering::Relaxed);
        let (on_active, active) = oneshot::channel();
        let entry = SubscriptionEntry {
            topic: topic_bytes,
            group: Bytes::copy_from_slice(group.as_bytes()),
            tx,
            on_active: Some(on_active),
        };
        self.inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(sub_id, entry);
        self.inner.control.notify_one();
        Ok(Subscription {
            topic: topic.to_owned(),
            rx,
            current: DeliveryBatch::default(),
            next: 0,
            active: Some(active),
        })
    }

    /// Publishes accepted and acknowledged (`settled`), and connections made.
    pub fn publisher_counters(&self) -> &myc_transport::PublisherCounters {
        self.inner.outbox.counters()
    }

    /// The client's own counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.inner.counters
    }
}

/// Checks a publish; returns its topic, checked, and its frame length.
fn check_publish<'a>(topic: &'a str, payload: &[u8]) -> Result<(TopicRef<'a>, usize), Error> {
    let checked =
        TopicRef::new(topic.as_bytes()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
    Ok((checked, protocol::publish_frame_len(checked, payload)))
}

/// Chunks written on the current connection and not yet acknowledged, oldest
/// first, each with its count of PUBLISH frames; kept across reconnects and
/// resent first.
type Unacked = Arc<Mutex<VecDeque<(Bytes, usize)>>>;

type Halves =
    (FrameReader<Box<dyn AsyncRead + Send + Unpin>, LengthPrefixed>, Box<dyn tokio::io::AsyncWrite + Send + Unpin>);

/// The broker side of [`myc_transport::reconnect`]: HELLO/WELCOME, then a
/// session that resends what was never acknowledged.
struct BrokerLink {
    inner: Arc<Inner>,
    /// What was written and not acknowledged, across connections.
    unacked: Unacked,
}

impl Link for BrokerLink {
    type Session = Halves;
    type Error = Error;

    const KEEP_TRYING: bool = true;

    fn peer(&self) -> String {
        self.inner.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).endpoint.to_string()
    }

    async fn connect(&mut self) -> Result<Halves, Error> {
        connect(&self.inner).await
    }

    async fn run(&mut self, halves: Halves) -> Result<(), Error> {
        session(&self.inner, halves, &self.unacked).await
    }
}

async fn connect(inner: &Inner) -> Result<Halves, Error> {
    let (endpoint, token) = {
        let peer = inner.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        (peer.endpoint.clone(), peer.token.clone())
    };
    let stream = endpoint.connect().await?;
    let (read_half, mut write_half) = stream.into_split();
    let mut frame = BytesMut::new();
    ClientOp::Hello { version: protocol::VERSION, flags: 0, client_name: inner.options.client_name.clone(), token }
        .encode(&mut frame)?;
    write_half
        .write_all(&frame)
        .await
        .map_err(|source| myc_transport::Error::Io { context: "write HELLO".to_owned(), source })?;
    let mut reader = FrameReader::new(read_half, LengthPrefixed { max_body: inner.options.max_frame });
    let Some(frame) = reader.read_frame().await? else {
        return Err(Error::Protocol("closed before WELCOME".to_owned()));
    };
    match ServerOp::decode(frame.slice(4..)).map_err(|error| Error::Protocol(error.to_string()))? {
        ServerOp::Welcome { .. } => Ok((reader, write_half)),
        ServerOp::Error { code, message } => Err(Error::Broker { code, message }),
        other => Err(Error::Protocol(format!("expected WELCOME, got {other:?}"))),
    }
}

async fn session(inner: &Arc<Inner>, (reader, mut writer): Halves, unacked: &Unacked) -> Result<(), Error> {
    let io_error =
        |source| Error::Transport(myc_transport::Error::Io { context: "write to broker".to_owned(), source });
    // Subscriptions first, then resend what was never acknowledged.
    let mut subscribed: Vec<u32> = Vec::new();
    let mut out = BytesMut::new();
    subscribe_new(inner, &mut subscribed, &mut out);
    let resend: Vec<(Bytes, usize)> =
        unacked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect();
    inner.counters.resent.fetch_add(resend.iter().map(|(_, frames)| *frames as u64).sum(), Ordering::Relaxed);
    for (chunk, _) in &resend {
        out.extend_from_slice(chunk);
    }
    writer.write_all(&out).await.map_err(io_error)?;
    let mut read_task = tokio::spawn(read_loop(Arc::clone(inner), reader, Arc::clone(unacked)));
    // The reader ends with the session, however it ends.
    let _reader = AbortOnReturn(read_task.abort_handle());
    loop {
        let room_in_flight = inner.in_flight.load(Ordering::Acquire) < inner.options.max_in_flight;
        tokio::select! {
            finished = &mut read_task => {
                return match finished {
                    Ok(result) => result,
                    Err(_) => Err(Error::Closed),
                };
            }
            () = inner.ack_progress.notified(), if !room_in_flight => {}
            (chunk, frames) = inner.outbox.next_chunk(), if room_in_flight => {
                inner.in_flight.fetch_add(chunk.len(), Ordering::AcqRel);
                unacked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back((chunk.clone(), frames));
                writer.write_all(&chunk).await.map_err(io_error)?;
            }
            () = inner.control.notified() => {
                out.clear();
                subscribe_new(inner, &mut subscribed, &mut out);
                writer.write_all(&out).await.map_err(io_error)?;
            }
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnReturn(tokio::task::AbortHandle);

impl Drop for AbortOnReturn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Encodes SUBSCRIBE for every subscription not yet sent on this connection.
fn subscribe_new(inner: &Inner, subscribed: &mut Vec<u32>, out: &mut BytesMut) {
    let subscriptions = inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (&sub_id, entry) in subscriptions.iter() {
        if !subscribed.contains(&sub_id) {
            // Topic and group were checked by `subscribe`: they fit.
            let subscribe = ClientOp::Subscribe { sub_id, topic: entry.topic.clone(), group: entry.group.clone() };
            if let Err(error) = subscribe.encode(out) {
                tracing::warn!(%error, sub_id, "SUBSCRIBE could not be encoded");
            }
            subscribed.push(sub_id);
        }
    }
}

async fn read_loop(
    inner: Arc<Inner>,
    mut reader: FrameReader<Box<dyn AsyncRead + Send + Unpin>, LengthPrefixed>,
    unacked: Unacked,
) -> Result<(), Error> {
    // ACK counts are per connection; this is the count already applied.
    let mut acked_here = 0u64;
    let mut deliveries: Vec<(u32, Vec<(u32, u32)>)> = Vec::new();
    loop {
        let Some(batch) = reader.read_batch().await? else {
            return Err(Error::Protocol("broker closed the connection".to_owned()));
        };
        for frame in protocol::frames(&batch) {
            let frame = frame.map_err(|error| Error::Protocol(error.to_string()))?;
            if frame.op() == Some(protocol::op::DELIVER) {
                let deliver = DeliverRef::parse(frame.body).map_err(|error| Error::Protocol(error.to_string()))?;
                let payload_at = frame.at + deliver.payload_at;
                // A batch is at most a few MiB, so offsets fit in u32.
                let range = (
                    u32::try_from(payload_at).unwrap_or(u32::MAX),
                    u32::try_from(payload_at + deliver.payload.len()).unwrap_or(u32::MAX),
                );
                match deliveries.iter_mut().find(|(id, _)| *id == deliver.sub_id) {
                    Some((_, list)) => list.push(range),
                    None => deliveries.push((deliver.sub_id, vec![range])),
                }
                continue;
            }
            let body = batch.slice(frame.at..frame.at + frame.body.len());
            match ServerOp::decode(body).map_err(|error| Error::Protocol(error.to_string()))? {
                ServerOp::Ack { count } => {
                    let newly = count.saturating_sub(acked_here);
                    acked_here = acked_here.max(count);
                    apply_ack(&inner, &unacked, newly);
                }
                // After WELCOME, `unauthorized` refuses one PUBLISH or
                // SUBSCRIBE and the connection stays: reconnecting would
                // only send the same publishes to the same refusal.
                ServerOp::Error { code, message } if code.is_fatal() && code != ErrorCode::Unauthorized => {
                    return Err(Error::Broker { code, message });
                }
                ServerOp::Error { code, message } => {
                    let refused = code == ErrorCode::Unauthorized && message == protocol::PUBLISH_REFUSED;
                    let failed = if refused {
                        inner.counters.failed_unauthorized.fetch_add(1, Ordering::Relaxed) + 1
                    } else {
                        0
                    };
                    if inner.error_log.ready() {
                        tracing::warn!(
                            code = code.name(),
                            %message,
                            failed_unauthorized = failed,
                            "broker error (logged at most once a second)"
                        );
                    }
                }
                ServerOp::SubAck { sub_id } => {
                    let mut subscriptions =
                        inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if let Some(on_active) = subscriptions.get_mut(&sub_id).and_then(|entry| entry.on_active.take()) {
                        let _ = on_active.send(());
                    }
                }
                ServerOp::Deliver { .. }
                | ServerOp::Welcome { .. }
                | ServerOp::UnsubAck { .. }
                | ServerOp::Pong { .. } => {}
            }
        }
        for (sub_id, payloads) in deliveries.drain(..) {
            let list = DeliveryBatch { chunk: batch.clone(), payloads };
            let tx = inner
                .subscriptions
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&sub_id)
                .map(|entry| entry.tx.clone());
            if let Some(tx) = tx {
                let _ = tx.send(list).await;
            }
        }
    }
}

/// Forgets `newly` acknowledged publishes, oldest first, and settles them.
fn apply_ack(inner: &Inner, unacked: &Unacked, newly: u64) {
    let mut remaining = usize::try_from(newly).unwrap_or(usize::MAX);
    let mut released_bytes = 0;
    let mut released = 0;
    {
        let mut pending = unacked.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while remaining > 0 {
            let Some((chunk, frames)) = pending.front_mut() else { break };
            if *frames <= remaining {
                remaining -= *frames;
                released += *frames;
                released_bytes += chunk.len();
                if let Some((chunk, _)) = pending.pop_front() {
                    inner.outbox.recycle(chunk);
                }
            } else {
                let bytes = myc_transport::frames_len(chunk, remaining, protocol::frame_len);
                *chunk = chunk.slice(bytes..);
                *frames -= remaining;
                released += remaining;
                released_bytes += bytes;
                remaining = 0;
            }
        }
    }
    inner.in_flight.fetch_sub(released_bytes, Ordering::AcqRel);
    inner.outbox.settle(released, released_bytes, false);
    inner.ack_progress.notify_one();
}
