//! Protocol V2, the message format every producer publishes: the 32-byte
//! header, the TLV area, the typed Trade / Quote / Heartbeat payloads, the
//! CRC-32 checksum, instrument helpers (`asset_id`, symbol normalisation,
//! exact decimal → fixed point) and the canonical JSON rendering.
//!
//! This crate is the single authority on message bytes. Everything else —
//! relay, broker, shim, verify, producers — reads and writes messages through
//! it, and nothing re-serialises a message it forwards.
//!
//! It deliberately does no I/O, never imports tokio, never reads the clock and
//! never allocates on the hot path: [`MessageWriter`] builds into a caller's
//! buffer and [`Message::parse`] borrows the caller's bytes. Decoding never
//! panics: every length is bounded before it is used, and malformed input is a
//! typed [`Error`] that carries the byte offset of the problem.
//!
//! ```
//! use myc_codec::{Checksum, Domain, Header, Message, MessageWriter, Source, Trade};
//!
//! let trade = Trade { asset_id: myc_codec::asset_id("BTC/USD")?, price: 7_293_010_000_000, ..Trade::default() };
//! let mut buf = [0u8; 128];
//! let mut writer = MessageWriter::new(&mut buf)?;
//! writer.push_trade(&trade)?;
//! let header = Header::new(Domain::MarketData, Source::KrakenCollector, 1, 1_710_426_537_049_841_000);
//! let len = writer.finish(&header, Checksum::Zero)?;
//!
//! let message = Message::parse(&buf[..len])?;
//! assert_eq!(message.header().sequence, 1);
//! assert_eq!(message.tlvs().next().map(|tlv| tlv.payload.len()), Some(40));
//! # Ok::<(), myc_codec::Error>(())
//! ```
#![warn(clippy::pedantic)]
#![allow(clippy::module_name_repetitions, clippy::must_use_candidate)]

mod builder;
mod checksum;
mod decimal;
mod enums;
mod error;
mod header;
mod instrument;
mod json;
mod le;
mod message;
mod payload;
mod tlv;

pub use builder::{Checksum, MessageBuilder, MessageWriter, SequenceCounter, next_sequence};
pub use checksum::{crc32, message_checksum};
pub use decimal::parse_fixed8;
pub use enums::{Domain, NaturalDomain, RETIRED_TLV_TYPES, Source, TlvType};
pub use error::Error;
pub use header::{HEADER_LEN, Header, MAGIC, MAX_MESSAGE_LEN, VERSION};
pub use instrument::{asset_id, asset_id_of_normalized, normalize_symbol};
pub use json::{message_from_json, render_json, to_json_string};
pub use message::{Message, frame_len, peek_message_len};
pub use payload::{Heartbeat, Quote, Side, Trade};
pub use tlv::{EXTENDED_MARKER, MAX_EXTENDED_LEN, MAX_STANDARD_LEN, Tlv, TlvIter, encoded_tlv_len};

/// The result type of every fallible function in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
