//! The broker client (spec §4): a cloneable [`Client`] handle over one
//! connection task. Publishes are encoded straight into a bounded
//! [`FrameBuffer`]; the task
//! connects in the background, reconnects with jittered backoff, says HELLO,
//! re-subscribes, resends unacknowledged publishes in order, then drains the
//! buffer in batches. A publish is forgotten only once an ACK covers it.
//!
//! It deliberately does not look inside payloads and offers no ordering
//! across clients: order is per client.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
pub use myc_transport::BreakerOptions;
use myc_transport::backoff::Backoff;
use myc_transport::{BufferLimits, Endpoint, FrameBuffer, FrameReader, LengthPrefixed, PushError};
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::Error;
use crate::protocol::{self, ClientOp, ErrorCode, ServerOp, Topic};

/// Client options (defaults per spec §4).
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
    /// Backoff base.
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// Consecutive failed attempts before giving up (`None`: never).
    pub max_reconnects: Option<u32>,
    /// Connect + HELLO must complete within this.
    pub connect_timeout: Duration,
    /// Largest frame this client reads.
    pub max_frame: usize,
    /// Deliveries buffered per subscription (in broker-read batches) before
    /// the reader waits.
    pub subscription_capacity: usize,
    /// A circuit breaker on publishes (used on shadow paths): after
    /// `failure_threshold` consecutive failures (failed connection attempts
    /// or refused publishes) publishes fail at once with `circuit_open` for
    /// `open_for`, then one probe goes through.
    pub breaker: Option<BreakerOptions>,
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
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_reconnects: None,
            connect_timeout: Duration::from_secs(5),
            max_frame: protocol::MAX_MAX_FRAME,
            subscription_capacity: 1024,
            max_in_flight: 8 * 1024 * 1024,
            breaker: None,
        }
    }
}

/// Where the client's connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// Connecting or waiting to reconnect; publishes are buffered.
    Connecting,
    /// Connected and past HELLO.
    Connected,
    /// `max_reconnects` attempts failed in a row: publishes fail at once
    /// (`max_reconnects_exceeded`) while the client keeps trying every
    /// `backoff_max`; the next connection clears it.
    Failed,
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

/// Counters of one client.
#[derive(Debug, Default)]
pub struct ClientCounters {
    /// Publishes accepted into the buffer.
    pub published: AtomicU64,
    /// Publishes acknowledged by the broker.
    pub acked: AtomicU64,
    /// Successful connections (the first included).
    pub connects: AtomicU64,
    /// Publishes sent again after a reconnect.
    pub resent: AtomicU64,
    /// Publishes that failed because the broker's ACL refused them (reason
    /// `unauthorized`): acknowledged like the others, delivered to no one.
    pub failed_unauthorized: AtomicU64,
    /// Connection attempts that failed (connect, HELLO, or its timeout).
    pub connect_failures: AtomicU64,
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

struct Inner {
    /// The options the client started with; the connection settings among
    /// them may since have changed (see `live`).
    options: ClientOptions,
    /// The options in force: `Client::reconfigure` replaces the connection
    /// settings here, and the connection task reads them at each attempt.
    live: Mutex<ClientOptions>,
    /// Wakes the connection task to drop its connection and connect again
    /// at once (the endpoint or token changed).
    reconnect_now: Notify,
    buffer: FrameBuffer,
    counters: ClientCounters,
    /// Cumulative acknowledged publishes, for `flush`.
    acked: watch::Sender<u64>,
    subscriptions: Mutex<HashMap<u32, SubscriptionEntry>>,
    next_sub_id: AtomicU32,
    /// Wakes the connection task for new subscriptions.
    control: Notify,
    /// Wakes the connection task when an ACK frees in-flight room.
    ack_progress: Notify,
    /// Bytes of the chunks in `unacked`.
    in_flight: std::sync::atomic::AtomicUsize,
    /// Set when the client gave up (`max_reconnects_exceeded`).
    failed: Mutex<Option<String>>,
    /// `counters.failed_unauthorized` as last reported by `flush`; never
    /// more than the counter.
    refusals_reported: AtomicU64,
    /// Rate limit of the warnings about broker ERRORs that keep the
    /// connection (a refused publish can repeat at line rate).
    error_log: myc_transport::OnceASecond,
    /// 0 connecting, 1 connected, 2 failed.
    state: std::sync::atomic::AtomicU8,
    breaker: myc_transport::PublishBreaker,
}

impl Inner {
    fn set_state(&self, state: ConnectionState) {
        let value = match state {
            ConnectionState::Connecting => 0,
            ConnectionState::Connected => 1,
            ConnectionState::Failed => 2,
        };
        self.state.store(value, Ordering::Release);
    }

    fn state(&self) -> ConnectionState {
        match self.state.load(Ordering::Acquire) {
            1 => ConnectionState::Connected,
            2 => ConnectionState::Failed,
            _ => ConnectionState::Connecting,
        }
    }

    /// Whether the breaker lets a publish through now.
    fn breaker_allows(&self) -> bool {
        self.breaker.allows(self.state() == ConnectionState::Connected)
    }

    fn breaker_failure(&self) {
        self.breaker.failure();
    }
}

/// A cloneable handle to one broker connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    _task: Arc<myc_transport::AbortOnDrop>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("endpoint", &self.inner.options.endpoint).finish_non_exhaustive()
    }
}

impl Client {
    /// Starts the client; it connects in the background.
    pub fn start(options: ClientOptions) -> Client {
        let breaker_options = options.breaker;
        let (acked, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            buffer: FrameBuffer::new(options.buffer, protocol::frame_len),
            live: Mutex::new(options.clone()),
            reconnect_now: Notify::new(),
            options,
            counters: ClientCounters::default(),
            acked,
            subscriptions: Mutex::new(HashMap::new()),
            next_sub_id: AtomicU32::new(1),
            control: Notify::new(),
            ack_progress: Notify::new(),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            failed: Mutex::new(None),
            refusals_reported: AtomicU64::new(0),
            error_log: myc_transport::OnceASecond::default(),
            state: std::sync::atomic::AtomicU8::new(0),
            breaker: myc_transport::PublishBreaker::new(breaker_options),
        });
        let task = myc_transport::AbortOnDrop::spawn(run(Arc::clone(&inner)));
        Client { inner, _task: Arc::new(task) }
    }

    /// Publishes `payload` on `topic`, waiting only for buffer room (up to
    /// the deadline, per the policy).
    ///
    /// # Errors
    /// A bad topic, or the buffer's refusal (`buffer_full`, a drop,
    /// `max_reconnects_exceeded`).
    pub async fn publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let len = check_publish(topic, payload)?;
        if !self.inner.breaker_allows() {
            return Err(Error::CircuitOpen);
        }
        let pushed = self.inner.buffer.push(len, |dst| protocol::encode_publish(dst, topic.as_bytes(), payload)).await;
        self.after_push(pushed)
    }

    /// Publishes without waiting.
    ///
    /// # Errors
    /// As [`Client::publish`], with `buffer_full` at once under `block`.
    pub fn try_publish(&self, topic: &str, payload: &[u8]) -> Result<(), Error> {
        let len = check_publish(topic, payload)?;
        if !self.inner.breaker_allows() {
            return Err(Error::CircuitOpen);
        }
        let pushed = self.inner.buffer.try_push(len, |dst| protocol::encode_publish(dst, topic.as_bytes(), payload));
        self.after_push(pushed)
    }

    fn after_push(&self, pushed: Result<(), PushError>) -> Result<(), Error> {
        match pushed {
            Ok(()) => {
                self.inner.counters.published.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.inner.breaker_failure();
                Err(Error::Buffer(error))
            }
        }
    }

    /// Applies new connection settings while running: the endpoint, token,
    /// connect timeout, backoff bounds and `max_reconnects` of `options`
    /// (the rest is kept). A new endpoint or token drops the connection and
    /// connects again at once; every message not acknowledged on the old
    /// connection is resent on the new one, so nothing is lost (a message
    /// the old broker took but had not acknowledged arrives twice, counted
    /// in `resent`). The others apply to the next attempt.
    pub fn reconfigure(&self, options: &ClientOptions) {
        let mut live = self.inner.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let moved = live.endpoint != options.endpoint || live.token != options.token;
        live.endpoint = options.endpoint.clone();
        live.token.clone_from(&options.token);
        live.connect_timeout = options.connect_timeout;
        live.backoff_base = options.backoff_base;
        live.backoff_max = options.backoff_max;
        live.max_reconnects = options.max_reconnects;
        drop(live);
        if moved {
            self.inner.reconnect_now.notify_one();
        }
    }

    /// The endpoint in force.
    pub fn endpoint(&self) -> Endpoint {
        self.inner.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).endpoint.clone()
    }

    /// Where the connection stands.
    pub fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    /// Bytes buffered now: queued, or sent but not yet acknowledged.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffer.occupancy().2
    }

    /// The circuit breaker's state, when the client has one.
    pub fn breaker_state(&self) -> Option<myc_transport::BreakerState> {
        self.inner.breaker.state()
    }

    /// Messages dropped by the buffer's policy: `(drop_newest, drop_oldest)`.
    pub fn dropped(&self) -> (u64, u64) {
        (self.inner.buffer.dropped_newest(), self.inner.buffer.dropped_oldest())
    }

    /// Waits until every publish so far is acknowledged, or `deadline` passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`], the reason the client gave up, or
    /// [`Error::PublishesRefused`] when the broker refused publishes since
    /// the last flush that said so.
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        let target = self.inner.counters.published.load(Ordering::Relaxed);
        let mut acked = self.inner.acked.subscribe();
        let failed = || self.inner.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        // Messages the buffer dropped (drop_oldest) will never be acknowledged.
        let dropped = || self.inner.buffer.dropped_oldest();
        let wait = acked.wait_for(|&count| count + dropped() >= target || failed().is_some());
        let _ = tokio::time::timeout(deadline, wait).await;
        if *self.inner.acked.borrow() + dropped() >= target {
            // A refusal comes before the ACK that covers its publish, so
            // every refusal of these publishes is counted by now.
            let refused = self.inner.counters.failed_unauthorized.load(Ordering::Relaxed);
            let reported = self.inner.refusals_reported.swap(refused, Ordering::Relaxed);
            if refused > reported {
                return Err(Error::PublishesRefused { refused: refused - reported });
            }
            return Ok(());
        }
        if let Some(reason) = failed() {
            return Err(Error::Buffer(PushError::Closed(reason)));
        }
        let pending = target.saturating_sub(*self.inner.acked.borrow() + dropped());
        Err(Error::FlushTimeout { pending })
    }

    /// Subscribes to `topic` (`group` empty: fan-out; else one member of the
    /// group gets each message). Re-issued after every reconnect.
    ///
    /// # Errors
    /// A bad topic or group name.
    pub fn subscribe(&self, topic: &str, group: &str) -> Result<Subscription, Error> {
        let topic_bytes = Bytes::copy_from_slice(topic.as_bytes());
        Topic::new(topic_bytes.clone()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
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

    /// The client's counters.
    pub fn counters(&self) -> &ClientCounters {
        &self.inner.counters
    }
}

/// Checks a publish and returns its frame length.
fn check_publish(topic: &str, payload: &[u8]) -> Result<usize, Error> {
    Topic::check(topic.as_bytes()).map_err(|reason| Error::BadTopic { topic: topic.to_owned(), reason })?;
    Ok(protocol::publish_frame_len(topic.as_bytes(), payload))
}

/// Chunks written on the current connection and not yet acknowledged, oldest
/// first, each with its count of PUBLISH frames; kept across reconnects and
/// resent first.
type Unacked = Arc<Mutex<VecDeque<(Bytes, usize)>>>;

/// The connection task: connect, run, reconnect, for the life of the
/// client. After `max_reconnects` consecutive failed attempts publishes
/// fail at once (`max_reconnects_exceeded`) while the task keeps trying
/// every `backoff_max`; the next connection clears the error. What was
/// buffered stays buffered throughout.
async fn run(inner: Arc<Inner>) {
    let mut options = inner.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    let mut backoff = Backoff::new(options.backoff_base, options.backoff_max);
    let unacked: Unacked = Arc::new(Mutex::new(VecDeque::new()));
    let warn_limit = myc_transport::OnceASecond::default();
    let info_limit = myc_transport::OnceASecond::default();
    // When the connection was last lost (for "reconnected after …").
    let mut lost_at: Option<Instant> = None;
    loop {
        let current = inner.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        if (current.backoff_base, current.backoff_max) != (options.backoff_base, options.backoff_max) {
            backoff = Backoff::new(current.backoff_base, current.backoff_max);
        }
        options = current;
        let connected = tokio::time::timeout(options.connect_timeout, connect(&inner, &options)).await;
        let stream = match connected {
            Ok(Ok(stream)) => stream,
            failure => {
                let error = match failure {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no WELCOME within {:?}", options.connect_timeout),
                };
                tracing::debug!(%error, endpoint = %options.endpoint, "connect failed");
                inner.breaker_failure();
                inner.counters.connect_failures.fetch_add(1, Ordering::Relaxed);
                let failures = backoff.attempts() + 1;
                let given_up = inner.state() == ConnectionState::Failed;
                if !given_up && options.max_reconnects.is_some_and(|max| failures >= max) {
                    let reason = Error::MaxReconnectsExceeded(failures).to_string();
                    tracing::warn!(endpoint = %options.endpoint, %error, %reason, "publishes fail at once until the broker is back; still trying");
                    inner.set_state(ConnectionState::Failed);
                    *inner.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.clone());
                    inner.buffer.refuse(Some(&reason));
                    // Wake flushes so they report the failure now.
                    inner.acked.send_modify(|_| {});
                } else if lost_at.is_none() && warn_limit.ready() {
                    tracing::warn!(endpoint = %options.endpoint, %error, "cannot connect to the broker; publishes are buffered");
                }
                let delay =
                    if inner.state() == ConnectionState::Failed { options.backoff_max } else { backoff.next_delay() };
                if given_up {
                    backoff.next_delay();
                }
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = inner.reconnect_now.notified() => {}
                }
                continue;
            }
        };
        inner.counters.connects.fetch_add(1, Ordering::Relaxed);
        if inner.state() == ConnectionState::Failed {
            *inner.failed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            inner.buffer.refuse(None);
        }
        let resent_before = inner.counters.resent.load(Ordering::Relaxed);
        inner.set_state(ConnectionState::Connected);
        let up_since = Instant::now();
        let result = session(&inner, stream, &unacked, || {
            if let Some(lost) = lost_at.take()
                && info_limit.ready()
            {
                let resent = inner.counters.resent.load(Ordering::Relaxed) - resent_before;
                tracing::info!(endpoint = %options.endpoint, after = ?lost.elapsed(), resent, "reconnected to the broker");
            }
        })
        .await;
        inner.set_state(ConnectionState::Connecting);
        let result_was_move = matches!(result, Err(Error::Moved));
        if result_was_move {
            tracing::info!(from = %options.endpoint, "connection settings changed: reconnecting; unacknowledged messages are resent");
        }
        lost_at = lost_at.or(Some(Instant::now()));
        let error = result.err().map_or_else(|| "closed".to_owned(), |error| error.to_string());
        if !result_was_move && warn_limit.ready() {
            let (queued, held, bytes) = inner.buffer.occupancy();
            tracing::warn!(
                endpoint = %options.endpoint,
                %error,
                unacknowledged = held.saturating_sub(queued),
                queued,
                bytes,
                "lost the broker connection; unacknowledged messages are resent after reconnecting"
            );
        }
        if up_since.elapsed() >= Duration::from_secs(1) {
            backoff.reset();
        }
        if !result_was_move {
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = inner.reconnect_now.notified() => {}
            }
        }
    }
}

async fn connect(
    inner: &Inner,
    options: &ClientOptions,
) -> Result<
    (FrameReader<Box<dyn AsyncRead + Send + Unpin>, LengthPrefixed>, Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
    Error,
> {
    let stream = options.endpoint.connect().await?;
    let (read_half, mut write_half) = stream.into_split();
    let mut frame = BytesMut::new();
    ClientOp::Hello {
        version: protocol::VERSION,
        flags: 0,
        client_name: inner.options.client_name.clone(),
        token: options.token.clone(),
    }
    .encode(&mut frame);
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

type Halves =
    (FrameReader<Box<dyn AsyncRead + Send + Unpin>, LengthPrefixed>, Box<dyn tokio::io::AsyncWrite + Send + Unpin>);

/// One connection: subscriptions, resends, then the publish loop;
/// `on_resent` runs once the resends are written.
async fn session(
    inner: &Arc<Inner>,
    (reader, mut writer): Halves,
    unacked: &Unacked,
    on_resent: impl FnOnce(),
) -> Result<(), Error> {
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
    on_resent();
    let mut read_task = tokio::spawn(read_loop(Arc::clone(inner), reader, Arc::clone(unacked)));
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
            (chunk, frames) = inner.buffer.next_chunk(), if room_in_flight => {
                inner.in_flight.fetch_add(chunk.len(), Ordering::AcqRel);
                unacked.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push_back((chunk.clone(), frames));
                if let Err(error) = writer.write_all(&chunk).await {
                    read_task.abort();
                    return Err(io_error(error));
                }
            }
            () = inner.reconnect_now.notified() => {
                read_task.abort();
                return Err(Error::Moved);
            }
            () = inner.control.notified() => {
                out.clear();
                subscribe_new(inner, &mut subscribed, &mut out);
                if let Err(error) = writer.write_all(&out).await {
                    read_task.abort();
                    return Err(io_error(error));
                }
            }
        }
    }
}

/// Encodes SUBSCRIBE for every subscription not yet sent on this connection.
fn subscribe_new(inner: &Inner, subscribed: &mut Vec<u32>, out: &mut BytesMut) {
    let subscriptions = inner.subscriptions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (&sub_id, entry) in subscriptions.iter() {
        if !subscribed.contains(&sub_id) {
            ClientOp::Subscribe { sub_id, topic: entry.topic.clone(), group: entry.group.clone() }.encode(out);
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
        let mut offset = 0;
        while offset < batch.len() {
            let len = protocol::frame_len(&batch[offset..]);
            offset += len;
            if batch.get(offset - len + 4) == Some(&protocol::op::DELIVER) {
                let (sub_id, _topic, payload) = split_deliver(&batch[offset - len + 4..offset])?;
                let body_start = offset - len + 4;
                // A batch is at most a few MiB, so offsets fit in u32.
                let range = (
                    u32::try_from(body_start + payload.start).unwrap_or(u32::MAX),
                    u32::try_from(body_start + payload.end).unwrap_or(u32::MAX),
                );
                match deliveries.iter_mut().find(|(id, _)| *id == sub_id) {
                    Some((_, list)) => list.push(range),
                    None => deliveries.push((sub_id, vec![range])),
                }
                continue;
            }
            let body = batch.slice(offset - len + 4..offset);
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

/// Forgets `newly` acknowledged publishes, oldest first, and gives their
/// room back to the buffer.
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
                    inner.buffer.recycle(chunk);
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
    inner.buffer.release(released, released_bytes);
    inner.in_flight.fetch_sub(released_bytes, Ordering::AcqRel);
    inner.ack_progress.notify_one();
    let total = inner.counters.acked.fetch_add(released as u64, Ordering::Relaxed) + released as u64;
    inner.acked.send_replace(total);
}

/// The sub_id, topic range and payload range of a DELIVER body.
fn split_deliver(body: &[u8]) -> Result<(u32, std::ops::Range<usize>, std::ops::Range<usize>), Error> {
    let (Some(sub_id), Some(&topic_len)) = (body.get(1..5), body.get(5)) else {
        return Err(Error::Protocol("truncated DELIVER".to_owned()));
    };
    let topic_end = 6 + usize::from(topic_len);
    if body.len() < topic_end {
        return Err(Error::Protocol("truncated DELIVER topic".to_owned()));
    }
    let sub_id = u32::from_le_bytes([sub_id[0], sub_id[1], sub_id[2], sub_id[3]]);
    Ok((sub_id, 6..topic_end, topic_end..body.len()))
}
