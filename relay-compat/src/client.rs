//! The relay client, the producer side of the shim's relay path (the relay's
//! behaviour is described in `docs/relay.md`): connects in the background,
//! sends the identification header (again after every reconnect), writes
//! queued messages in 64 KiB blocks, and reconnects with jittered backoff.
//! The buffer, counters, flush and reconnect loop are `transport`'s
//! [`Outbox`] and [`reconnect`], shared with the broker client.
//!
//! The relay acknowledges nothing, so what was in flight when it died can be
//! lost: the client counts what it wrote and what failed, and says so. It
//! deliberately never alters a message.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use myc_codec::{Domain, Header, Source};
use myc_transport::{
    AbortOnDrop, BufferLimits, ConnectionState, Endpoint, Flushed, Link, Outbox, PublisherCounters, ReconnectOptions,
    Stream,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    /// Backoff, `max_reconnects` and the connect timeout.
    pub reconnect: ReconnectOptions,
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
            reconnect: ReconnectOptions::default(),
            writes_to_broker: false,
        }
    }
}

/// Bytes written and lost, for metrics and summaries (message counts are in
/// the [`PublisherCounters`]).
#[derive(Debug, Default)]
pub struct RelayCounters {
    /// Messages written to the relay socket.
    pub written_messages: AtomicU64,
    /// Bytes written to the relay socket.
    pub written_bytes: AtomicU64,
    /// Messages lost in a failed write (the relay went away mid-write).
    pub failed_messages: AtomicU64,
    /// Bytes of those messages.
    pub failed_bytes: AtomicU64,
}

struct Inner {
    /// The options it started with; the socket in force is `path`.
    options: RelayClientOptions,
    /// The relay's socket now: read at each connection attempt, changed
    /// live by [`RelayClient::reconfigure`].
    path: std::sync::Mutex<PathBuf>,
    outbox: Outbox,
    counters: RelayCounters,
}

/// A cloneable handle to one relay connection.
#[derive(Clone)]
pub struct RelayClient {
    inner: Arc<Inner>,
    _task: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for RelayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayClient").field("path", &self.inner.path()).finish_non_exhaustive()
    }
}

impl RelayClient {
    /// Starts the client; it connects in the background.
    pub fn start(options: RelayClientOptions) -> RelayClient {
        let inner = Arc::new(Inner {
            outbox: Outbox::new(options.buffer, message_len),
            path: std::sync::Mutex::new(options.path.clone()),
            options,
            counters: RelayCounters::default(),
        });
        let task = AbortOnDrop::spawn({
            let inner = Arc::clone(&inner);
            async move {
                let link = RelayLink { inner: Arc::clone(&inner), unwritten: None };
                myc_transport::reconnect(&inner.outbox, inner.options.reconnect, link, |attempts| {
                    Error::MaxReconnectsExceeded(attempts).to_string()
                })
                .await;
            }
        });
        RelayClient { inner, _task: Arc::new(task) }
    }

    /// Applies new settings while running: the socket `path`, the buffer's
    /// bounds and policy (from the next publish) and the reconnect settings
    /// (from the next attempt). A new socket drops the connection and
    /// connects there at once; what the old one had not written is written
    /// to the new one, so nothing queued is lost.
    pub fn reconfigure(&self, path: &std::path::Path, buffer: BufferLimits, reconnect: ReconnectOptions) {
        let moved = {
            let mut now = self.inner.path.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let moved = now.as_path() != path;
            path.clone_into(&mut now);
            moved
        };
        self.inner.outbox.set_limits(buffer);
        self.inner.outbox.set_reconnect_options(reconnect);
        if moved {
            self.inner.outbox.reconnect_now();
        }
    }

    /// The relay socket in force.
    pub fn path(&self) -> PathBuf {
        self.inner.path()
    }

    /// Queues one whole Protocol V2 message, waiting only for buffer room.
    ///
    /// # Errors
    /// A buffer that is not exactly one message's header-announced length,
    /// or the buffer's refusal.
    pub async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        check(message)?;
        Ok(self.inner.outbox.push(message.len(), |dst| dst.extend_from_slice(message)).await?)
    }

    /// Queues one message without waiting.
    ///
    /// # Errors
    /// As [`RelayClient::publish`], with `buffer_full` at once under `block`.
    pub fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        check(message)?;
        Ok(self.inner.outbox.try_push(message.len(), |dst| dst.extend_from_slice(message))?)
    }

    /// Bytes buffered now: queued, or written but not yet settled.
    pub fn buffered_bytes(&self) -> usize {
        self.inner.outbox.buffered_bytes()
    }

    /// Whether the connection to the relay is up now.
    pub fn is_connected(&self) -> bool {
        self.inner.outbox.state() == ConnectionState::Connected
    }

    /// Waits until every message so far was written (or counted failed), or
    /// the deadline passes.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`], or the reason the client gave up.
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self.inner.outbox.flush(deadline).await {
            Flushed::Done => Ok(()),
            Flushed::Pending(pending) => Err(Error::FlushTimeout { pending }),
            Flushed::GaveUp(reason) => Err(Error::Buffer(myc_transport::PushError::Closed(reason))),
        }
    }

    /// Bytes written and lost.
    pub fn counters(&self) -> &RelayCounters {
        &self.inner.counters
    }

    /// Messages published, settled, failed, and connections made.
    pub fn publisher_counters(&self) -> &PublisherCounters {
        self.inner.outbox.counters()
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

impl Inner {
    fn path(&self) -> PathBuf {
        self.path.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The relay side of [`reconnect`]: dial, send the identification header,
/// write blocks until the relay goes away.
struct RelayLink {
    inner: Arc<Inner>,
    /// A block taken from the outbox whose write was cut short by a live
    /// socket change (the session dropped mid-write): written first by the
    /// next session, so it is neither lost nor left holding buffer room.
    unwritten: Option<(bytes::Bytes, usize)>,
}

impl Link for RelayLink {
    type Session = Stream;
    type Error = Error;

    async fn connect(&mut self) -> Result<Stream, Error> {
        let endpoint = Endpoint::Unix(self.inner.path());
        let mut stream = endpoint.connect().await?;
        let options = &self.inner.options;
        let mut identification = Header::identification(options.domain, options.source);
        if options.writes_to_broker {
            identification.flags |= crate::WRITES_TO_BROKER;
        }
        let identification = identification.to_bytes();
        stream
            .write_all(&identification)
            .await
            .map_err(|source| myc_transport::Error::Io { context: "write the identification header".into(), source })?;
        Ok(stream)
    }

    fn peer(&self) -> String {
        format!("unix:{}", self.inner.path().display())
    }

    /// A relay restarted, or briefly away, must not end the path for good:
    /// past `max_reconnects` publishes fail fast, what is buffered is kept,
    /// and the next connection clears the failure (as the broker client).
    const KEEP_TRYING: bool = true;

    async fn run(&mut self, stream: Stream) -> Result<(), Error> {
        let inner = &self.inner;
        let (mut read_half, mut write_half) = stream.into_split();
        // A relay sends nothing to a producer: a read that returns means it closed.
        let mut probe = [0u8; 1];
        let closed = async { while matches!(read_half.read(&mut probe).await, Ok(n) if n > 0) {} };
        tokio::pin!(closed);
        loop {
            let (chunk, frames) = match self.unwritten.take() {
                Some(unwritten) => unwritten,
                None => tokio::select! {
                    () = &mut closed => return Ok(()),
                    chunk = inner.outbox.next_chunk() => chunk,
                },
            };
            // Kept until settled: this future may be dropped mid-write.
            self.unwritten = Some((chunk.clone(), frames));
            let written = write_half.write_all(&chunk).await;
            self.unwritten = None;
            let (messages, bytes) = (frames as u64, chunk.len() as u64);
            inner.outbox.settle(frames, chunk.len(), written.is_err());
            if let Err(source) = written {
                inner.counters.failed_messages.fetch_add(messages, Ordering::Relaxed);
                inner.counters.failed_bytes.fetch_add(bytes, Ordering::Relaxed);
                return Err(myc_transport::Error::Io { context: "write to the relay".into(), source }.into());
            }
            inner.counters.written_messages.fetch_add(messages, Ordering::Relaxed);
            inner.counters.written_bytes.fetch_add(bytes, Ordering::Relaxed);
            inner.outbox.recycle(chunk);
        }
    }
}
