//! The legacy relay path, made correct: a relay server that legacy producers
//! and consumers cannot tell from the old one (except that it frames by
//! `32 + payload_size` and never echoes), the producer-side relay client used
//! by the shim, and a tap that frames and timestamps what a relay sends.
//!
//! It deliberately never rewrites a message: bytes go out exactly as they came
//! in, or not at all.

pub mod client;
mod framing;
pub mod metrics;
pub mod server;
pub mod tap;

pub use client::{RelayClient, RelayClientOptions};
pub use framing::{ProtocolV2, message_len};
pub use server::{
    ChecksumCheck, Delivered, Downlink, Link, Links, QueuePolicy, RelayHandle, RelaySettings, WRITES_TO_BROKER, serve,
    spawn,
};
pub use tap::{RelayTap, TapMessage};

/// The legacy socket path of a domain (`docs/relay.md`).
pub fn default_socket(domain: myc_codec::Domain) -> Option<&'static str> {
    match domain {
        myc_codec::Domain::MarketData => Some("/tmp/torq/market_data.sock"),
        myc_codec::Domain::Signal => Some("/tmp/torq/signals.sock"),
        myc_codec::Domain::Execution => Some("/tmp/torq/execution.sock"),
        myc_codec::Domain::System => Some("/tmp/torq/system.sock"),
        myc_codec::Domain::Unknown(_) => None,
    }
}

/// The one error type of the relay crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Below the protocol: sockets, framing.
    #[error(transparent)]
    Transport(#[from] myc_transport::Error),
    /// The publish buffer refused the message.
    #[error(transparent)]
    Buffer(#[from] myc_transport::PushError),
    /// A message that is not one whole Protocol V2 message.
    #[error("not a Protocol V2 message: {0}")]
    BadMessage(#[from] myc_codec::Error),
    /// `flush` did not see every message written before its deadline.
    #[error("flush deadline passed with {pending} message(s) unwritten")]
    FlushTimeout {
        /// Messages not yet written.
        pending: u64,
    },
    /// `max_reconnects` attempts failed in a row (the client keeps trying,
    /// keeping what it buffered; the next connection clears this).
    #[error("max_reconnects_exceeded: {0} consecutive failed connection attempts; retrying in the background")]
    MaxReconnectsExceeded(u32),
}
