//! The byte-stream plumbing shared by every client and server: the
//! [`Endpoint`] (`unix:PATH` or `tcp:HOST:PORT`, parsed once) with its
//! [`Listener`] and [`Stream`], a framed reader over any `AsyncRead` that
//! bounds each frame before buffering it ([`FrameReader`]), the jittered
//! backoff function ([`backoff::delay`]), the sans-IO [`CircuitBreaker`], the
//! bounded publish buffer ([`FrameBuffer`]) and the buffered reconnecting
//! publisher built on it ([`Outbox`], [`reconnect`]) behind the broker, relay
//! and NATS clients, the servers' [`SubscriberFlow`] (whether one reader
//! still holds its writers back, with the relay's [`HoldBudget`] inside),
//! and the producer's on-disk [`spool`].
//!
//! It deliberately knows nothing of message contents: framing rules come in
//! through the [`Framing`] trait, Protocol V2 lives in `codec` and the broker
//! ops in `broker`.

mod accept;
pub mod backoff;
mod breaker;
mod buffer;
mod endpoint;
mod error;
mod flow;
mod framed;
mod hold;
mod limits;
mod once_a_second;
mod publisher;
mod socket_file;
pub mod spool;
mod task;

pub use accept::accept_until;
pub use breaker::{BreakerOptions, BreakerState, CircuitBreaker, PublishBreaker};
pub use buffer::{BufferLimits, FrameBuffer, FullPolicy, PushError, RunPushed, frames_len};
pub use endpoint::{Endpoint, Listener, SocketOptions, Stream};
pub use error::Error;
pub use flow::{FlowRules, FlowState, SlowPolicy, SubscriberFlow, Verdict};
pub use framed::{FrameReader, Framing, LengthPrefixed};
pub use hold::HoldBudget;
pub use limits::{RESERVED_DESCRIPTORS, check_open_file_limit, raise_open_file_limit};
pub use once_a_second::OnceASecond;
pub use publisher::{ConnectionState, Flushed, Link, Outbox, PublisherCounters, ReconnectOptions, reconnect};
pub use spool::{Recovery, Spool, SpoolBatch, SpoolOptions, SpoolStats};
pub use task::{AbortOnDrop, Running};
