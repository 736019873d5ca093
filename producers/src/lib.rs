//! Market-data producers: the synthetic feed, and (with the producers
//! issue) the Polygon.io and Kraken WebSocket feed adapters, turning feed
//! frames into Protocol V2 messages through `codec` and publishing them
//! through the shim.
//!
//! It deliberately does not choose routes: whether a message goes to the relay,
//! the broker or both is the shim's business, so the bytes built here are the
//! same on every path.

pub mod summary;
pub mod synthetic;

pub use summary::{FeedCounters, Paths, Summary};
pub use synthetic::Synthetic;
