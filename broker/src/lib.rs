//! The Mycelium topic broker: the sans-IO wire protocol ([`protocol`]), the
//! broker server ([`server::serve`]) and the client producers publish through
//! ([`client::Client`]), and with the `nats` feature the NATS backend
//! (`nats`).
//!
//! It deliberately treats payloads as opaque bytes: the broker never parses
//! the Protocol V2 messages it carries, and forwards each payload as a shared
//! `Bytes` slice of the frame it arrived in.

pub mod client;
pub mod metrics;
#[cfg(feature = "nats")]
pub mod nats;
pub mod protocol;
pub mod server;

pub use client::{Client, ClientOptions, ConnectionState, Delivery, DeliveryBatch, ReconnectOptions, Subscription};
pub use protocol::{ClientOp, ErrorCode, ServerOp, Topic, TopicRef};
pub use server::{ServerHandle, Settings, SlowConsumerPolicy, serve, spawn};

/// The one error type of the broker crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Below the protocol: endpoints, sockets, framing.
    #[error(transparent)]
    Transport(#[from] myc_transport::Error),
    /// The broker sent ERROR.
    #[error("broker error {}: {message}", code.name())]
    Broker {
        /// The code.
        code: ErrorCode,
        /// The broker's message.
        message: String,
    },
    /// The peer broke the protocol.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The publish buffer refused the message.
    #[error(transparent)]
    Buffer(#[from] myc_transport::PushError),
    /// A topic that breaks the rules.
    #[error("bad topic {topic:?}: {reason}")]
    BadTopic {
        /// The topic given.
        topic: String,
        /// The rule broken.
        reason: &'static str,
    },
    /// `flush` did not see every publish acknowledged before its deadline.
    #[error("flush deadline passed with {pending} publish(es) unacknowledged")]
    FlushTimeout {
        /// Publishes not yet acknowledged.
        pending: u64,
    },
    /// The broker's ACL refused publishes (ERROR `unauthorized`) since the
    /// last flush that reported it; they count as failed.
    #[error("unauthorized: the broker refused {refused} publish(es) since the last flush (see the ACL)")]
    PublishesRefused {
        /// Publishes refused.
        refused: u64,
    },
    /// `max_reconnects` attempts failed in a row (the client keeps trying).
    #[error("max_reconnects_exceeded: {0} consecutive failed connection attempts; retrying in the background")]
    MaxReconnectsExceeded(u32),
    /// An op that cannot be encoded (a string over its length field).
    #[error(transparent)]
    Encode(#[from] protocol::EncodeError),
    /// The client was closed.
    #[error("client closed")]
    Closed,
}
