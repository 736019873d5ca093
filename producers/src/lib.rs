//! Market-data producers: the Polygon.io ([`Polygon`]), Kraken
//! ([`Kraken`]), Coinbase ([`Coinbase`]) and Binance ([`Binance`])
//! WebSocket feed adapters and the synthetic feed
//! ([`Synthetic`]), turning feed frames into Protocol V2 messages through
//! `codec`. The adapters are sans-IO — a text frame in, messages into an
//! [`Outbox`] out — so replay files, stdin and live WebSockets all drive the
//! same code, and tests drive it with no sockets at all.
//!
//! It deliberately does not choose routes: whether a message goes to the relay,
//! the broker or both is the shim's business, so the bytes built here are the
//! same on every path.

mod binance;
mod book;
mod build;
mod coinbase;
pub mod feed;
pub mod fields;
mod kraken;
mod object;
mod polygon;
pub mod summary;
pub mod synthetic;

pub use binance::Binance;
pub use book::{Book, Level};
pub use build::{Outbox, Stamper};
pub use coinbase::Coinbase;
pub use feed::{FeedError, Input, Options, Pace, Sink, expand, resubscribe_message, run};
pub use kraken::{DEFAULT_MAX_BOOKS, Kraken};
pub use polygon::Polygon;
pub use summary::{FeedCounters, MAX_IGNORED_KINDS, MAX_KIND_LEN, OTHER_KIND, Paths, Summary};
pub use synthetic::Synthetic;

/// What a frame asks of a live connection (replays only count it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Stop, do not retry (Polygon `auth_failed`), with the server's message.
    Stop(String),
    /// Reconnect (Polygon `auth_timeout`).
    Reconnect(String),
    /// Back off before reconnecting (Polygon `max_connections`).
    BackOff(String),
    /// Resubscribe to this symbol's book (Kraken checksum mismatch).
    Resubscribe(String),
}

/// A feed adapter: text frames in, messages out.
pub trait Adapter {
    /// Handles one frame received at `received_ns` (0 in deterministic
    /// replay), building messages stamped `now_ns` into `out`.
    ///
    /// # Errors
    /// Why the frame was rejected (it is counted; the next frame is
    /// handled normally).
    fn frame(&mut self, text: &str, received_ns: u64, now_ns: u64, out: &mut Outbox)
    -> Result<Option<Control>, String>;

    /// The counters so far.
    fn counters(&self) -> &FeedCounters;

    /// Messages built so far.
    fn built(&self) -> u64;
}

/// A boxed adapter is an adapter, so programs can choose feeds at run time.
impl<A: Adapter + ?Sized> Adapter for Box<A> {
    fn frame(
        &mut self,
        text: &str,
        received_ns: u64,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<Option<Control>, String> {
        (**self).frame(text, received_ns, now_ns, out)
    }

    fn counters(&self) -> &FeedCounters {
        (**self).counters()
    }

    fn built(&self) -> u64 {
        (**self).built()
    }
}
