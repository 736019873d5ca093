//! The relay client (relay spec §4), the producer side of the shim's relay
//! path: connects in the background, sends the identification header (again
//! after every reconnect), writes queued messages in 64 KiB blocks, and
//! reconnects with jittered backoff. The buffer, backoff and deadline rules
//! are the broker client's (`transport`).
//!
//! The relay acknowledges nothing, so what was in flight when it died can be
//! lost: the client counts what it wrote and what failed, and says so. It
//! deliberately never alters a message.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use myc_codec::{Domain, Header, Source};
use myc_transport::backoff::Backoff;
use myc_transport::{
    AbortOnDrop, BreakerOptions, BreakerState, BufferLimits, Endpoint, FrameBuffer, PublishBreaker, PushError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Error;
use crate::framing::message_len;

/// Relay client options (defaults as the broker client's).
#[derive(Debug, Clone)]
pub struct RelayClientOptions {
    /// The relay's socket.
    pub path: PathBuf,
    /// The domain the identification header names.
    pub domain: Domain,
    /// The source the identification header names.
    pub source: Source,
    /// Buffer bounds, deadline and policy.
    pub buffer: BufferLimits,
    /// Backoff base.
    pub backoff_base: Duration,
    /// Backoff ceiling.
    pub backoff_max: Duration,
    /// Consecutive failed attempts before giving up (`None`: never).
    pub max_reconnects: Option<u32>,
    /// A circuit breaker on publishes (for shadow paths): consecutive failed
    /// connection attempts or refused publishes open it; then publishes fail
    /// at once with `circuit_open` until a probe finds the relay back.
    pub breaker: Option<BreakerOptions>,
    /// Whether this producer also writes to the broker itself (the shim):
    /// its identification header then carries flag
    /// [`WRITES_TO_BROKER`](crate::WRITES_TO_BROKER), so a relay's broker
    /// link does not publish its messages a second time.
    pub writes_to_broker: bool,
}

impl RelayClientOptions {
    /// Defaults for a producer of `source` on `domain` at `path`.
    pub fn new(path: impl Into<PathBuf>, domain: Domain, source: Source) -> RelayClientOptions {
        RelayClientOptions {
            path: path.into(),
            domain,
            source,
            buffer: BufferLimits::default(),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            max_reconnects: None,
            breaker: None,
            writes_to_broker: false,
        }
    }
}

/// What the client did, for metrics and summaries.
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Messages accepted into the buffer.
    pub published: AtomicU64,
    /// Messages written to the relay socket.
    pub written_messages: AtomicU64,
    /// Bytes written to the relay socket.
    pub written_bytes: AtomicU64,
    /// Messages lost in a failed write (the relay went away mid-write).
    pub failed_messages: AtomicU64,
    /// Bytes of those messages.
    pub failed_bytes: AtomicU64,
    /// Successful connections (the first included).
    pub connects: AtomicU64,
}

struct Inner {
    options: RelayClientOptions,
    buffer: FrameBuffer,
    counters: RelayCounters,
    /// Messages written or failed so far, for `flush`.
    settled: watch::Sender<u64>,
    breaker: PublishBreaker,
    /// Whether the connection is up now.
    connected: AtomicBool,
}

impl Inner {
    fn breaker_allows(&self) -> bool {
        self.breaker.allows(self.connected.load(Ordering::Acquire))
    }

    fn breaker_failure(&self) {
        self.breaker.failure();
    }
}

/// A cloneable handle to one relay connection.
#[derive(Clone)]
pub struct RelayClient {
    inner: Arc<Inner>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient").field("path", &self.inner.options.path).finish_non_exhaustive()
    }
}

impl RelayClient {
    /// Starts the client; it connects in the background.
    pub fn start(options: RelayClientOptions) -> RelayClient {
        let (settled, _) = watch::channel(0);
        let inner = Arc::new(Inner {
            buffer: FrameBuffer::new(options.buffer, message_len),
            breaker: PublishBreaker::new(options.breaker),
            connected: AtomicBool::new(false),
            options,
            counters: RelayCounters::default(),
            settled,
        });
        let task = AbortOnDrop::spawn(run(Arc::clone(&inner)));
        RelayClient { inner, _task: Arc::new(task) }
    }

    /// Queues one whole Protocol V2 message, waiting only for buffer room.
    ///
    /// # Errors
    /// A buffer that is not exactly one message's header-announced length,
    /// or the buffer's refusal.
    pub async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        check(message)?;
        if !self.inner.breaker_allows() {
            return Err(Error::CircuitOpen);
        }
        let pushed = self.inner.buffer.push(message.len(), |dst| dst.extend_from_slice(message)).await;
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

    /// The circuit breaker's state, when the client has one.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.inner.breaker.state()
    }

    /// Bytes buffered now: queued, or written but not yet settled.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.buffer.occupancy().2
    }

    /// Whether the connection to the relay is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Acquire)
    }

    /// Queues one message without waiting.
    ///
    /// # Errors
    /// As [`RelayClient::publish`], with `buffer_full` at once under `block`.
    pub fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        check(message)?;
        if !self.inner.breaker_allows() {
            return Err(Error::CircuitOpen);
        }
        let pushed = self.inner.buffer.try_push(message.len(), |dst| dst.extend_from_slice(message));
        self.after_push(pushed)
    }

    /// Waits until every message so far was written (or counted failed), or
    /// the deadline passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`].
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        // Messages the buffer dropped (drop_oldest) will never be written.
        let target = self.inner.counters.published.load(Ordering::Relaxed);
        let dropped = || self.inner.buffer.dropped_oldest();
        let mut settled = self.inner.settled.subscribe();
        let _ = tokio::time::timeout(deadline, settled.wait_for(|&count| count + dropped() >= target)).await;
        let done = *self.inner.settled.borrow() + dropped();
        if done >= target { Ok(()) } else { Err(Error::FlushTimeout { pending: target - done }) }
    }

    /// The client's counters.
    pub fn counters(&self) -> &RelayCounters {
        &self.inner.counters
    }
}

/// Checks that `message` is exactly one message by its header.
fn check(message: &[u8]) -> Result<(), Error> {
    match myc_codec::frame_len(message)? {
        Some(len) if len == message.len() => Ok(()),
        Some(_) => Err(Error::BadMessage(
            myc_codec::Message::parse(message)
                .err()
                .unwrap_or(myc_codec::Error::Truncated { offset: message.len(), need: 0 }),
        )),
        None => Err(Error::BadMessage(myc_codec::Error::Truncated {
            offset: message.len(),
            need: 32 - message.len().min(32),
        })),
    }
}

async fn run(inner: Arc<Inner>) {
    let options = inner.options.clone();
    let endpoint = Endpoint::Unix(options.path.clone());
    let mut identification = Header::identification(options.domain, options.source);
    if options.writes_to_broker {
        identification.flags |= crate::WRITES_TO_BROKER;
    }
    let identification = identification.to_bytes();
    let mut backoff = Backoff::new(options.backoff_base, options.backoff_max);
    loop {
        let stream = match endpoint.connect().await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::debug!(%error, "relay connect failed");
                inner.breaker_failure();
                if options.max_reconnects.is_some_and(|max| backoff.attempts() >= max) {
                    let reason = Error::MaxReconnectsExceeded(backoff.attempts()).to_string();
                    let discarded = inner.buffer.close(&reason) as u64;
                    settle_failed(&inner, discarded, 0);
                    return;
                }
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        inner.counters.connects.fetch_add(1, Ordering::Relaxed);
        inner.connected.store(true, Ordering::Release);
        let up_since = Instant::now();
        let (mut read_half, mut write_half) = stream.into_split();
        if write_half.write_all(&identification).await.is_ok() {
            // A relay sends nothing to a producer: a read that returns means it closed.
            let mut probe = [0u8; 1];
            let closed = async { while matches!(read_half.read(&mut probe).await, Ok(n) if n > 0) {} };
            tokio::pin!(closed);
            loop {
                let (chunk, frames) = tokio::select! {
                    () = &mut closed => break,
                    chunk = inner.buffer.next_chunk() => chunk,
                };
                let written = write_half.write_all(&chunk).await.is_ok();
                inner.buffer.release(frames, chunk.len());
                if written {
                    settle_written(&inner, frames as u64, chunk.len() as u64);
                    inner.buffer.recycle(chunk);
                } else {
                    settle_failed(&inner, frames as u64, chunk.len() as u64);
                    break;
                }
            }
        }
        inner.connected.store(false, Ordering::Release);
        if up_since.elapsed() >= Duration::from_secs(1) {
            backoff.reset();
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

fn settle_written(inner: &Inner, messages: u64, bytes: u64) {
    inner.counters.written_messages.fetch_add(messages, Ordering::Relaxed);
    inner.counters.written_bytes.fetch_add(bytes, Ordering::Relaxed);
    inner.settled.send_modify(|count| *count += messages);
}

fn settle_failed(inner: &Inner, messages: u64, bytes: u64) {
    inner.counters.failed_messages.fetch_add(messages, Ordering::Relaxed);
    inner.counters.failed_bytes.fetch_add(bytes, Ordering::Relaxed);
    inner.settled.send_modify(|count| *count += messages);
}
