//! The TLV payloads with a defined layout (docs/protocol-v2.md §4.3): Trade, Quote and
//! Heartbeat, one per file.
//!
//! Each type decodes from exactly its defined length with zero padding, and
//! encodes into a fixed-size array; fields are read with unaligned-safe
//! little-endian copies. Every other TLV type stays opaque bytes.

mod heartbeat;
mod quote;
mod trade;

pub use heartbeat::Heartbeat;
pub use quote::Quote;
pub use trade::{Side, Trade};

use crate::error::Error;

/// The payload as a fixed-size array, or the length error for `name`.
fn exact<'a, const N: usize>(name: &'static str, payload: &'a [u8]) -> Result<&'a [u8; N], Error> {
    payload.try_into().map_err(|_| Error::PayloadLength { name, expected: N, found: payload.len() })
}

/// Fails on the first non-zero byte of `payload[start..]`.
fn check_padding<const N: usize>(name: &'static str, payload: &[u8; N], start: usize) -> Result<(), Error> {
    match payload[start..].iter().position(|&byte| byte != 0) {
        Some(index) => Err(Error::NonZeroPadding { name, offset: start + index }),
        None => Ok(()),
    }
}
