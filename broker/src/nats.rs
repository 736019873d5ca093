//! The NATS backend: topic `T` is subject `<prefix>T`, the payload is the
//! Protocol V2 message unchanged. [`NatsPublisher`] gives NATS the Mycelium
//! client's contract: `transport`'s [`Outbox`] (a bounded buffer of bytes and
//! count with a deadline and a full policy, counters and flush) in front of
//! async-nats — which on its own waits without a deadline while it
//! reconnects — and jittered reconnects (async-nats reconnects itself, on
//! our backoff schedule). With JetStream each publish carries `Nats-Msg-Id:
//! <relay_domain>-<source>-<sequence>` and is acknowledged by the stream, a
//! block of messages at a time; an unacknowledged publish is retried until
//! it is, and the server drops the duplicates a retry makes.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use myc_transport::{AbortOnDrop, BufferLimits, Flushed, Outbox, PublisherCounters};

use crate::Error;

/// How to reach NATS and what to do there.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// Server URLs (any node of a cluster; the client learns the others).
    pub urls: Vec<String>,
    /// Subjects are `<subject_prefix><topic>`.
    pub subject_prefix: String,
    /// Publish through JetStream (at least once, de-duplicated) rather than
    /// core NATS (at most once).
    pub jetstream: bool,
    /// The JetStream stream, created if missing with subjects `<prefix>>`.
    pub stream: String,
    /// The stream's duplicate window.
    pub duplicate_window: Duration,
    /// The stream's limits, applied when the publisher creates it.
    pub stream_limits: StreamLimits,
    /// A `.creds` file, if the servers want one.
    pub credentials_file: Option<PathBuf>,
    /// A token, if the servers want one.
    pub token: Option<String>,
    /// Require TLS.
    pub tls_required: bool,
    /// Extra root certificates (PEM) to trust.
    pub root_certificates: Option<PathBuf>,
    /// The client name NATS shows.
    pub client_name: String,
    /// The publish buffer.
    pub buffer: BufferLimits,
    /// Reconnect backoff bounds (full jitter).
    pub backoff_base: Duration,
    /// See `backoff_base`.
    pub backoff_max: Duration,
}

/// What the JetStream stream keeps. Zero means "no limit" for the three
/// bounds; a stream with no bound at all grows until the server's disk is
/// full, so deployments set at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Copies kept by the cluster (1 to 5).
    pub replicas: usize,
    /// Bytes stored at most (0: unlimited).
    pub max_bytes: u64,
    /// How long a message is kept (zero: unlimited).
    pub max_age: Duration,
    /// Messages stored at most (0: unlimited).
    pub max_messages: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits { replicas: 1, max_bytes: 0, max_age: Duration::ZERO, max_messages: 0 }
    }
}

impl StreamLimits {
    /// JetStream's encoding of a limit: `-1` for "none".
    fn signed(limit: u64) -> i64 {
        if limit == 0 { -1 } else { i64::try_from(limit).unwrap_or(i64::MAX) }
    }
}

impl NatsOptions {
    /// Defaults for these servers.
    pub fn new(urls: Vec<String>) -> NatsOptions {
        NatsOptions {
            urls,
            subject_prefix: "myc.".to_owned(),
            jetstream: false,
            stream: "MYC".to_owned(),
            duplicate_window: Duration::from_secs(120),
            stream_limits: StreamLimits::default(),
            credentials_file: None,
            token: None,
            tls_required: false,
            root_certificates: None,
            client_name: "myc".to_owned(),
            buffer: BufferLimits::default(),
            backoff_base: myc_transport::ReconnectOptions::default().backoff_base,
            backoff_max: myc_transport::ReconnectOptions::default().backoff_max,
        }
    }
}

/// What the publisher did beyond the [`PublisherCounters`] (where
/// `settled` counts messages handed to NATS (core) or acknowledged by the
/// stream (JetStream)).
#[derive(Debug, Default)]
pub struct NatsCounters {
    /// JetStream acknowledgements that said "duplicate" (a retry's twin).
    pub duplicates: AtomicU64,
    /// Publishes sent again after a failed or missing acknowledgement.
    pub retried: AtomicU64,
    /// Messages dropped unsent as over the server's `max_payload` (one it
    /// lowered after they were buffered), counted as failed.
    pub failed_too_large: AtomicU64,
}

/// NATS's default `max_payload`, assumed until a server says.
const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// Room for the `Nats-Msg-Id` header a JetStream publish carries
/// (`NATS/1.0`, the header line with the longest id, the blank line).
const MSG_ID_HEADER_ROOM: usize = 64;

struct Inner {
    outbox: Outbox,
    counters: NatsCounters,
    /// The options it started with (the servers in force are `servers`).
    options: NatsOptions,
    /// The servers' options (`urls`, `token`, `credentials_file`) and the
    /// client connected to them; replaced by [`NatsPublisher::set_servers`].
    servers: std::sync::Mutex<(NatsOptions, async_nats::Client)>,
    /// Bumped at each change of servers: the drain task sends the block it
    /// holds again, whole, to the new ones.
    moved: tokio::sync::watch::Sender<u64>,
    /// The longest message the servers take, headers included (their
    /// `max_payload`, as last seen).
    max_payload: AtomicUsize,
}

impl Inner {
    fn client(&self) -> async_nats::Client {
        self.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }

    /// Bytes a message of `len` bytes takes against `max_payload`.
    fn payload_len(&self, len: usize) -> usize {
        len + if self.options.jetstream { MSG_ID_HEADER_ROOM } else { 0 }
    }

    /// The buffered frame length of `message` for `topic`, or why it is
    /// refused: a bad topic, or a message the servers would refuse for its
    /// size (core NATS would lose it unseen, and JetStream would have the
    /// server close the connection at every retry, with every later message
    /// waiting behind it).
    fn check(&self, topic: &str, message: &[u8]) -> Result<usize, Error> {
        if topic.is_empty() || topic.len() > 255 {
            return Err(Error::BadTopic { topic: topic.to_owned(), reason: "a topic is 1 to 255 bytes" });
        }
        let (len, max) = (self.payload_len(message.len()), self.max_payload.load(Ordering::Relaxed));
        if len > max {
            return Err(Error::Buffer(myc_transport::PushError::OverPeerLimit { len, max }));
        }
        Ok(4 + 1 + topic.len() + message.len())
    }

    /// Follows the `max_payload` of the server `client` is connected to
    /// (nothing before the first INFO).
    fn learn_max_payload(&self, client: &async_nats::Client) {
        let max = client.server_info().max_payload;
        if max > 0 {
            self.max_payload.store(max, Ordering::Relaxed);
        }
    }
}

/// Publishes Protocol V2 messages to NATS subjects, buffered.
#[derive(Clone)]
pub struct NatsPublisher {
    inner: Arc<Inner>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsPublisher").field("urls", &self.inner.options.urls).finish_non_exhaustive()
    }
}

/// A buffered frame: `[u32 len][u8 topic len][topic][message]`.
fn frame_len(bytes: &[u8]) -> usize {
    bytes.get(..4).map_or(bytes.len(), |len| 4 + u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize)
}

impl NatsPublisher {
    /// Starts the publisher; it connects (and reconnects) in the background,
    /// buffering until it can deliver.
    ///
    /// # Errors
    /// Options NATS refuses at once (an unreadable credentials file, no URL).
    pub async fn start(options: NatsOptions) -> Result<NatsPublisher, Error> {
        let client = connect_options(&options).await?.connect(&options.urls).await.map_err(nats_error)?;
        let inner = Arc::new(Inner {
            outbox: Outbox::new(options.buffer, frame_len),
            counters: NatsCounters::default(),
            servers: std::sync::Mutex::new((options.clone(), client)),
            options,
            moved: tokio::sync::watch::channel(0).0,
            max_payload: AtomicUsize::new(DEFAULT_MAX_PAYLOAD),
        });
        let task = AbortOnDrop::spawn(drain(Arc::clone(&inner)));
        Ok(NatsPublisher { inner, _task: Arc::new(task) })
    }

    /// Moves to other servers while running (`urls`, `token`,
    /// `credentials_file`): a client for them is made, the block being
    /// delivered goes again, whole, to them (JetStream drops the duplicates
    /// by message id; core NATS may deliver it twice, counted in
    /// `retried`), and the old client is flushed and closed. Unchanged
    /// servers change nothing.
    ///
    /// # Errors
    /// Options NATS refuses at once (an unreadable credentials file);
    /// nothing changes then.
    pub async fn set_servers(
        &self,
        urls: Vec<String>,
        token: Option<String>,
        credentials_file: Option<PathBuf>,
    ) -> Result<(), Error> {
        let mut options = self.inner.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone();
        if (&options.urls, &options.token, &options.credentials_file) == (&urls, &token, &credentials_file) {
            return Ok(());
        }
        (options.urls, options.token, options.credentials_file) = (urls, token, credentials_file);
        let client = connect_options(&options).await?.connect(&options.urls).await.map_err(nats_error)?;
        *self.inner.servers.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = (options, client);
        self.inner.moved.send_modify(|generation| *generation += 1);
        Ok(())
    }

    /// Buffers `message` for `topic`, waiting for room up to the deadline
    /// (per the buffer's policy).
    ///
    /// # Errors
    /// The buffer's refusal (`buffer_full`, a drop).
    pub async fn publish(&self, topic: &str, message: &[u8]) -> Result<(), Error> {
        let len = self.inner.check(topic, message)?;
        Ok(self.inner.outbox.push(len, |dst| encode(dst, topic, message)).await?)
    }

    /// Buffers `message` for `topic` without waiting.
    ///
    /// # Errors
    /// As [`NatsPublisher::publish`], with `buffer_full` at once.
    pub fn try_publish(&self, topic: &str, message: &[u8]) -> Result<(), Error> {
        let len = self.inner.check(topic, message)?;
        Ok(self.inner.outbox.try_push(len, |dst| encode(dst, topic, message))?)
    }

    /// Waits until everything published so far was delivered (core: handed
    /// over and flushed to the server; JetStream: acknowledged), or the
    /// deadline passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`].
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        let started = tokio::time::Instant::now();
        match self.inner.outbox.flush(deadline).await {
            Flushed::Done => {}
            Flushed::Pending(pending) => return Err(Error::FlushTimeout { pending }),
            Flushed::GaveUp(reason) => return Err(Error::Buffer(myc_transport::PushError::Closed(reason))),
        }
        // Core NATS: handed over is not yet sent; its own flush says sent.
        let client = self.inner.client();
        match tokio::time::timeout(deadline.saturating_sub(started.elapsed()), client.flush()).await {
            Ok(Ok(())) => Ok(()),
            _ => Err(Error::FlushTimeout { pending: 0 }),
        }
    }

    /// New buffer bounds, deadline and policy, from the next publish.
    pub fn set_buffer_limits(&self, limits: BufferLimits) {
        self.inner.outbox.set_limits(limits);
    }

    /// Whether the client is connected now.
    pub fn is_connected(&self) -> bool {
        self.inner.client().connection_state() == async_nats::connection::State::Connected
    }

    /// Bytes buffered now (queued or awaiting delivery).
    pub fn buffered_bytes(&self) -> usize {
        self.inner.outbox.buffered_bytes()
    }

    /// Duplicates and retries.
    pub fn counters(&self) -> &NatsCounters {
        &self.inner.counters
    }

    /// Messages published and settled (delivered).
    pub fn publisher_counters(&self) -> &PublisherCounters {
        self.inner.outbox.counters()
    }

    /// The subject of `topic`.
    pub fn subject(&self, topic: &str) -> String {
        format!("{}{topic}", self.inner.options.subject_prefix)
    }

    /// The async-nats client underneath now (taps, tests).
    pub fn client(&self) -> async_nats::Client {
        self.inner.client()
    }
}

fn encode(dst: &mut BytesMut, topic: &str, message: &[u8]) {
    let len = u32::try_from(1 + topic.len() + message.len()).unwrap_or(u32::MAX);
    dst.put_u32_le(len);
    dst.put_u8(u8::try_from(topic.len()).unwrap_or(u8::MAX));
    dst.put_slice(topic.as_bytes());
    dst.put_slice(message);
}

/// The NATS connect options these options describe.
async fn connect_options(options: &NatsOptions) -> Result<async_nats::ConnectOptions, Error> {
    let (base, max) = (options.backoff_base, options.backoff_max);
    let mut connect = async_nats::ConnectOptions::new()
        .name(&options.client_name)
        .retry_on_initial_connect()
        .client_capacity(4096)
        .reconnect_delay_callback(move |attempt| {
            myc_transport::backoff::delay(u32::try_from(attempt).unwrap_or(u32::MAX), base, max, rand::random::<f64>())
        });
    if let Some(path) = &options.credentials_file {
        connect = connect
            .credentials_file(path)
            .await
            .map_err(|error| Error::Protocol(format!("NATS credentials {}: {error}", path.display())))?;
    }
    if let Some(token) = &options.token {
        connect = connect.token(token.clone());
    }
    if options.tls_required {
        connect = connect.require_tls(true);
    }
    if let Some(path) = &options.root_certificates {
        connect = connect.add_root_certificates(path.clone());
    }
    Ok(connect)
}

fn nats_error(error: impl std::fmt::Display) -> Error {
    Error::Protocol(format!("NATS: {error}"))
}

/// Takes blocks from the buffer and delivers them, in order; after a change
/// of servers the block in hand goes again, whole, to the new ones.
async fn drain(inner: Arc<Inner>) {
    let mut moved = inner.moved.subscribe();
    let (mut client, mut jetstream) = connected(&inner, &mut moved).await;
    loop {
        let (chunk, frames) = inner.outbox.next_chunk().await;
        loop {
            if moved.has_changed().unwrap_or(false) {
                (client, jetstream) = switch(&inner, &mut moved, client).await;
            }
            inner.learn_max_payload(&client);
            let messages = split(&chunk, &inner.options.subject_prefix);
            let delivered = tokio::select! {
                failed = deliver(&inner, &client, jetstream.as_ref(), messages) => Some(failed),
                _ = moved.changed() => None,
            };
            if let Some(Failed { frames: failed_frames, bytes: failed_bytes }) = delivered {
                // Settled oldest first; which of the block failed does not
                // matter to the counts.
                inner.outbox.settle(failed_frames, failed_bytes, true);
                inner.outbox.settle(frames - failed_frames, chunk.len() - failed_bytes, false);
                break;
            }
            inner.counters.retried.fetch_add(frames as u64, Ordering::Relaxed);
            tracing::info!(frames, "NATS servers changed: the block in hand goes again to the new ones");
        }
        inner.outbox.recycle(chunk);
    }
}

/// The client in force and, with JetStream, its stream (waiting for it
/// until it exists or the servers change again).
async fn connected(
    inner: &Inner,
    moved: &mut tokio::sync::watch::Receiver<u64>,
) -> (async_nats::Client, Option<async_nats::jetstream::Context>) {
    loop {
        moved.borrow_and_update();
        let client = inner.client();
        if !inner.options.jetstream {
            // A flush answers once the connection is up, so the server's
            // INFO (its max_payload) is known before the first delivery.
            tokio::select! {
                _ = client.flush() => {}
                _ = moved.changed() => continue,
            }
            inner.learn_max_payload(&client);
            return (client, None);
        }
        tokio::select! {
            context = ensure_stream(&inner.options, client.clone()) => return (client, Some(context)),
            _ = moved.changed() => {}
        }
    }
}

/// Takes the new servers' client; the old one is flushed (what it holds
/// reaches the old servers if they are there) and closed off this task.
async fn switch(
    inner: &Inner,
    moved: &mut tokio::sync::watch::Receiver<u64>,
    old: async_nats::Client,
) -> (async_nats::Client, Option<async_nats::jetstream::Context>) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(2), old.flush()).await;
        drop(old);
    });
    connected(inner, moved).await
}

/// Messages of a block that failed, and their bytes as buffered.
#[derive(Debug, Default, Clone, Copy)]
struct Failed {
    frames: usize,
    bytes: usize,
}

/// Delivers one block: core NATS hands each message over; JetStream waits
/// for every acknowledgement. Messages over the server's `max_payload`
/// (lowered after they were buffered) are dropped unsent, and with core
/// NATS a publish the client refuses fails: both are returned, to be
/// counted failed rather than delivered.
async fn deliver(
    inner: &Inner,
    client: &async_nats::Client,
    jetstream: Option<&async_nats::jetstream::Context>,
    messages: Vec<(async_nats::Subject, Bytes)>,
) -> Failed {
    let mut failed = Failed::default();
    let max = inner.max_payload.load(Ordering::Relaxed);
    let prefix = inner.options.subject_prefix.len();
    let mut fail = |subject: &async_nats::Subject, payload: &Bytes| {
        failed.frames += 1;
        failed.bytes += 4 + 1 + subject.len().saturating_sub(prefix) + payload.len();
    };
    let mut sendable = Vec::with_capacity(messages.len());
    for (subject, payload) in messages {
        if inner.payload_len(payload.len()) > max {
            inner.counters.failed_too_large.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                len = payload.len(),
                max_payload = max,
                "a message over the NATS server's max_payload dropped"
            );
            fail(&subject, &payload);
        } else {
            sendable.push((subject, payload));
        }
    }
    match jetstream {
        None => {
            for (subject, payload) in sendable {
                if let Err(error) = client.publish(subject.clone(), payload.clone()).await {
                    tracing::warn!(%error, "NATS publish failed");
                    if error.kind() == async_nats::client::PublishErrorKind::MaxPayloadExceeded {
                        // The client knew the server's limit before we did.
                        inner.counters.failed_too_large.fetch_add(1, Ordering::Relaxed);
                        inner.learn_max_payload(client);
                    }
                    fail(&subject, &payload);
                }
            }
        }
        Some(context) => publish_acknowledged(inner, context, sendable).await,
    }
    failed
}

/// The subject and message of each frame of a chunk (messages are slices
/// of the chunk, not copies).
fn split(chunk: &Bytes, prefix: &str) -> Vec<(async_nats::Subject, Bytes)> {
    let mut out = Vec::new();
    let mut offset = 0;
    while offset + 5 <= chunk.len() {
        let end = (offset + frame_len(&chunk[offset..])).min(chunk.len());
        let topic_end = (offset + 5 + usize::from(chunk[offset + 4])).min(end);
        let topic = String::from_utf8_lossy(&chunk[offset + 5..topic_end]);
        out.push((async_nats::Subject::from(format!("{prefix}{topic}")), chunk.slice(topic_end..end)));
        offset = end;
    }
    out
}

/// Creates the stream if it is missing, retrying until NATS answers.
async fn ensure_stream(options: &NatsOptions, client: async_nats::Client) -> async_nats::jetstream::Context {
    let context = async_nats::jetstream::new(client);
    let config = async_nats::jetstream::stream::Config {
        name: options.stream.clone(),
        subjects: vec![format!("{}>", options.subject_prefix)],
        duplicate_window: options.duplicate_window,
        num_replicas: options.stream_limits.replicas,
        max_bytes: StreamLimits::signed(options.stream_limits.max_bytes),
        max_messages: StreamLimits::signed(options.stream_limits.max_messages),
        max_age: options.stream_limits.max_age,
        ..Default::default()
    };
    let mut backoff = myc_transport::backoff::Backoff::new(options.backoff_base, options.backoff_max);
    loop {
        match context.get_or_create_stream(config.clone()).await {
            Ok(_) => return context,
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(stream = %options.stream, %error, ?delay, "cannot create the JetStream stream yet");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Publishes a block through JetStream and waits for every acknowledgement,
/// retrying (same message id) what was not acknowledged.
async fn publish_acknowledged(
    inner: &Inner,
    context: &async_nats::jetstream::Context,
    messages: Vec<(async_nats::Subject, Bytes)>,
) {
    let mut pending = messages;
    let mut backoff = myc_transport::backoff::Backoff::new(inner.options.backoff_base, inner.options.backoff_max);
    while !pending.is_empty() {
        let mut acks = Vec::with_capacity(pending.len());
        for (subject, payload) in &pending {
            let mut headers = async_nats::HeaderMap::new();
            // Sequence 0 means "not set": such messages cannot be told apart,
            // so they go without an id (and without de-duplication).
            if let Some(id) = message_id(payload) {
                headers.insert(async_nats::header::NATS_MESSAGE_ID, id.as_str());
            }
            acks.push(context.publish_with_headers(subject.clone(), headers, payload.clone()).await);
        }
        let mut failed = Vec::new();
        for ((subject, payload), sent) in pending.into_iter().zip(acks) {
            let acked = match sent {
                Ok(ack) => ack.await.map_err(|error| error.to_string()),
                Err(error) => Err(error.to_string()),
            };
            match acked {
                Ok(ack) if ack.duplicate => {
                    inner.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "JetStream publish not acknowledged; retrying");
                    failed.push((subject, payload));
                }
            }
        }
        if !failed.is_empty() {
            inner.counters.retried.fetch_add(failed.len() as u64, Ordering::Relaxed);
            tokio::time::sleep(backoff.next_delay()).await;
        }
        pending = failed;
    }
}

/// `<relay_domain>-<source>-<sequence>`, from the message's header; none
/// for sequence 0 ("not set").
pub fn message_id(message: &[u8]) -> Option<String> {
    let byte = |index: usize| message.get(index).copied().unwrap_or(0);
    let sequence = message.get(8..16).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_le_bytes);
    (sequence != 0).then(|| format!("{}-{}-{sequence}", byte(4), byte(6)))
}
