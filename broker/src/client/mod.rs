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
//! One owner per connection: the task (`task`) alone holds the sans-IO
//! session core (`session`: unacknowledged chunks, the ACK count, the
//! in-flight window, subscriptions); handles reach it over channels (an
//! `mpsc` of commands, a `watch` of the endpoint and token) and the outbox.
//!
//! It deliberately does not look inside payloads and offers no ordering
//! across clients: order is per client.

mod session;
mod task;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use myc_transport::{BufferLimits, Endpoint, Outbox, PushError};
pub use myc_transport::{ConnectionState, ReconnectOptions};
use tokio::sync::{mpsc, oneshot, watch};

use crate::Error;
use crate::protocol::{self, Topic, TopicRef};
use task::{BrokerLink, Command, Peer};

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
    /// The broker's `max_frame` assumed until its WELCOME says: a publish
    /// whose frame the broker would refuse is refused at once
    /// ([`myc_transport::PushError::OverPeerLimit`]) rather than buffered,
    /// since the broker would close the connection at every resend of it.
    pub broker_max_frame: usize,
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
            broker_max_frame: protocol::DEFAULT_MAX_FRAME,
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
    /// Publishes dropped unsent because a broker's WELCOME lowered
    /// `max_frame` below them after they were buffered (counted as failed).
    pub failed_too_large: AtomicU64,
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

/// What the handles share with the connection task: the outbox publishes
/// are encoded into (the one buffer between them, so the hot path takes no
/// extra hop) and the counters. Everything the protocol remembers is the
/// task's own `session::ClientSession`.
struct Shared {
    outbox: Outbox,
    counters: ClientCounters,
    /// `counters.failed_unauthorized` as last reported by `flush`; never
    /// more than the counter.
    refusals_reported: AtomicU64,
}

/// A cloneable handle to one broker connection: publishes go into the
/// shared outbox, everything else to the connection task over channels.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
    /// Subscriptions, to the task.
    commands: mpsc::UnboundedSender<Command>,
    /// The endpoint and token in force, read by the task at each attempt.
    peer: Arc<watch::Sender<Peer>>,
    /// Deliveries buffered per subscription (in broker-read batches).
    subscription_capacity: usize,
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
        let shared = Arc::new(Shared {
            outbox: Outbox::new(options.buffer, protocol::frame_len),
            counters: ClientCounters::default(),
            refusals_reported: AtomicU64::new(0),
        });
        shared.outbox.set_max_frame(buffered_frame_limit(options.broker_max_frame));
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (peer, peer_rx) = watch::channel(Peer { endpoint: options.endpoint.clone(), token: options.token.clone() });
        let link = BrokerLink::new(
            Arc::clone(&shared),
            options.client_name.clone(),
            options.max_frame,
            options.max_in_flight,
            peer_rx,
            commands_rx,
        );
        let task = myc_transport::AbortOnDrop::spawn({
            let shared = Arc::clone(&shared);
            let reconnect = options.reconnect;
            async move {
                myc_transport::reconnect(&shared.outbox, reconnect, link, |attempts| {
                    Error::MaxReconnectsExceeded(attempts).to_string()
                })
                .await;
            }
        });
        Client {
            shared,
            commands,
            peer: Arc::new(peer),
            subscription_capacity: options.subscription_capacity,
            _task: Arc::new(task),
        }
    }

    /// Publishes `payload` on `topic`, waiting only for buffer room (up to
    /// the deadline, per the policy).
    ///
    /// # Errors
    /// A bad topic, or the buffer's refusal (`buffer_full`, a drop,
    /// `max_reconnects_exceeded`).
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let (topic, len) = check_publish(topic, payload)?;
        Ok(self.shared.outbox.push(len, |dst| protocol::encode_publish(dst, topic, payload)).await?)
    }

    /// Publishes without waiting.
    ///
    /// # Errors
    /// As [`Client::publish`], with `buffer_full` at once under `block`.
    pub fn try_publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let (topic, len) = check_publish(topic, payload)?;
        Ok(self.shared.outbox.try_push(len, |dst| protocol::encode_publish(dst, topic, payload))?)
    }

    /// Publishes `payloads` to one topic without waiting, in order, each
    /// judged as [`Client::try_publish`] would: what was buffered, and why
    /// the first refused one was not. One buffer lock for the lot, for a
    /// caller holding a run of messages (the relay's broker link).
    ///
    /// # Errors
    /// A topic that is not valid: nothing is buffered.
    pub fn try_publish_each<'p>(
        &self,
        topic: &str,
        payloads: impl IntoIterator<Item = &'p [u8]>,
    ) -> Result<myc_transport::RunPushed, Error> {
        let topic =
            TopicRef::new(topic.as_bytes()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
        let frames = payloads.into_iter().map(|payload| {
            (protocol::publish_frame_len(topic, payload), move |dst: &mut bytes::BytesMut| {
                protocol::encode_publish(dst, topic, payload);
            })
        });
        Ok(self.shared.outbox.try_push_each(frames))
    }

    /// Applies new connection settings while running: the endpoint, token
    /// and reconnect settings of `options` (the rest is kept). A new
    /// endpoint or token drops the connection and connects again at once;
    /// every message not acknowledged on the old connection is resent on the
    /// new one, so nothing is lost (a message the old broker took but had
    /// not acknowledged arrives twice, counted in `resent`). The reconnect
    /// settings apply from the next attempt.
    pub fn reconfigure(&self, options: &ClientOptions) {
        let moved = self.peer.send_if_modified(|peer| {
            let moved = peer.endpoint != options.endpoint || peer.token != options.token;
            peer.endpoint = options.endpoint.clone();
            peer.token.clone_from(&options.token);
            moved
        });
        self.shared.outbox.set_reconnect_options(options.reconnect);
        self.shared.outbox.set_limits(options.buffer);
        if moved {
            self.shared.outbox.reconnect_now();
        }
    }

    /// The endpoint in force.
    pub fn endpoint(&self) -> Endpoint {
        self.peer.borrow().endpoint.clone()
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.shared.outbox.state()
    }

    /// Bytes buffered now: queued, or sent but not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.shared.outbox.buffered_bytes()
    }

    /// Messages dropped by the buffer's policy: `(drop_newest, drop_oldest)`.
    pub fn dropped(&self) -> (u64, u64) {
        self.shared.outbox.dropped()
    }

    /// Waits until every publish so far is acknowledged, or `deadline` passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`], the reason the client gave up, or
    /// [`Error::PublishesRefused`] when the broker refused publishes since
    /// the last flush that said so.
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self.shared.outbox.flush(deadline).await {
            myc_transport::Flushed::Done => {
                // A refusal comes before the ACK that covers its publish, so
                // every refusal of these publishes is counted by now.
                let refused = self.shared.counters.failed_unauthorized.load(Ordering::Relaxed);
                let reported = self.shared.refusals_reported.swap(refused, Ordering::Relaxed);
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
        let (tx, rx) = mpsc::channel(self.subscription_capacity);
        let (on_active, active) = oneshot::channel();
        let command =
            Command::Subscribe { topic: topic_bytes, group: Bytes::copy_from_slice(group.as_bytes()), tx, on_active };
        // The task outlives every handle, so this cannot fail while `self`
        // exists; were it gone, the subscription would simply never deliver.
        let _ = self.commands.send(command);
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
        self.shared.outbox.counters()
    }

    /// The client's own counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.shared.counters
    }
}

/// Checks a publish; returns its topic, checked, and its frame length.
/// The longest frame to buffer for a broker whose `max_frame` (the body
/// length it takes) is `max_frame`: frames are buffered with their 4-byte
/// length prefix.
fn buffered_frame_limit(max_frame: usize) -> usize {
    max_frame.min(protocol::MAX_MAX_FRAME) + 4
}

fn check_publish<'a>(topic: &'a str, payload: &[u8]) -> Result<(TopicRef<'a>, usize), Error> {
    let checked =
        TopicRef::new(topic.as_bytes()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
    Ok((checked, protocol::publish_frame_len(checked, payload)))
}
