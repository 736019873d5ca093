//! The one error type of the codec.
//!
//! Decoding errors carry the byte offset, counted from the first byte of the
//! message, at which the problem was found, so that a tool reading a stream can
//! name the exact byte. There is deliberately no `io::Error` variant: the codec
//! never does I/O, and a short buffer is either `Ok(None)` (stream framing) or
//! [`Error::Truncated`] (a buffer that should hold a whole message).

/// Everything that can be wrong with Protocol V2 bytes, a value to encode, or
/// the canonical JSON form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input ends before the message does: `need` more bytes were
    /// expected at `offset`.
    #[error("truncated: {need} more byte(s) needed at offset {offset}")]
    Truncated {
        /// Where the missing bytes would start (the input's length).
        offset: usize,
        /// How many more bytes complete the header or the message.
        need: usize,
    },
    /// The first four bytes are not `EF BE AD DE`.
    #[error("bad magic 0x{found:08x} at offset 0 (expected 0xdeadbeef)")]
    BadMagic {
        /// The little-endian u32 found at offset 0.
        found: u32,
    },
    /// The version byte (offset 5) is not 1.
    #[error("bad version {found} at offset 5 (expected 1)")]
    BadVersion {
        /// The version byte found.
        found: u8,
    },
    /// The header announces a message larger than [`crate::MAX_MESSAGE_LEN`].
    #[error("message of {len} bytes announced at offset 24 exceeds the maximum of {max}")]
    TooLarge {
        /// `32 + payload_size` as announced.
        len: u64,
        /// The maximum message length.
        max: usize,
    },
    /// The buffer holds more bytes than `32 + payload_size`.
    #[error("payload_size {declared} says the message is {} bytes, but {actual} bytes were given", 32 + u64::from(*declared))]
    PayloadSizeMismatch {
        /// The header's `payload_size`.
        declared: u32,
        /// The length of the buffer given.
        actual: usize,
    },
    /// A TLV (or the bytes left over after the last one) does not fit in the
    /// TLV area that `payload_size` announced.
    #[error("TLV at offset {offset} needs {need} bytes but only {remaining} remain in the TLV area")]
    TlvOverrun {
        /// Offset of the TLV's first byte.
        offset: usize,
        /// Bytes the TLV needs (its header, plus its payload once known).
        need: usize,
        /// Bytes left in the TLV area from `offset`.
        remaining: usize,
    },
    /// The reserved byte of an extended TLV is not zero.
    #[error("extended TLV reserved byte at offset {offset} is 0x{found:02x} (must be 0)")]
    ExtendedReservedNonZero {
        /// Offset of the reserved byte.
        offset: usize,
        /// The byte found.
        found: u8,
    },
    /// Type 255 is only the extended marker, never a real type.
    #[error("TLV type 255 at offset {offset} is reserved as the extended marker")]
    ReservedTlvType {
        /// Offset of the type byte.
        offset: usize,
    },
    /// The checksum field does not match the CRC-32 of the message.
    #[error("checksum 0x{found:08x} at offset 28 does not match the computed 0x{computed:08x}")]
    BadChecksum {
        /// The checksum in the header.
        found: u32,
        /// The checksum computed over the message.
        computed: u32,
    },
    /// A typed payload has the wrong length for its type.
    #[error("{name} payload is {found} bytes (expected {expected})")]
    PayloadLength {
        /// The payload type's name.
        name: &'static str,
        /// The defined length.
        expected: usize,
        /// The length given.
        found: usize,
    },
    /// A typed payload has a non-zero byte where the layout has padding.
    #[error("{name} payload has a non-zero padding byte at payload offset {offset}")]
    NonZeroPadding {
        /// The payload type's name.
        name: &'static str,
        /// Offset of the byte within the payload.
        offset: usize,
    },
    /// The caller's buffer cannot hold what is being written.
    #[error("buffer too small: {need} bytes needed, {have} available")]
    BufferTooSmall {
        /// Bytes needed in all.
        need: usize,
        /// Bytes the buffer has.
        have: usize,
    },
    /// A TLV payload longer than the extended form can carry.
    #[error("TLV payload of {len} bytes exceeds the extended-form maximum of 65535")]
    TlvTooLong {
        /// The payload length.
        len: usize,
    },
    /// A decimal number that cannot become an exact ×10^8 fixed-point i64.
    #[error("invalid decimal {text:?}: {reason}")]
    InvalidDecimal {
        /// The text given (cut to 64 characters).
        text: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A symbol that cannot become an `asset_id`.
    #[error("invalid symbol {symbol:?}: {reason}")]
    InvalidSymbol {
        /// The symbol given (cut to 64 characters).
        symbol: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Canonical JSON that does not describe a message.
    #[error("invalid message JSON: {0}")]
    Json(String),
}

impl Error {
    /// The byte offset within the message at which the problem was found, for
    /// the errors that concern message bytes.
    pub fn offset(&self) -> Option<usize> {
        match *self {
            Error::Truncated { offset, .. }
            | Error::TlvOverrun { offset, .. }
            | Error::ExtendedReservedNonZero { offset, .. }
            | Error::ReservedTlvType { offset } => Some(offset),
            Error::BadMagic { .. } => Some(0),
            Error::BadVersion { .. } => Some(5),
            Error::TooLarge { .. } => Some(24),
            Error::BadChecksum { .. } => Some(28),
            Error::PayloadSizeMismatch { declared, .. } => usize::try_from(u64::from(declared) + 32).ok(),
            _ => None,
        }
    }

    /// A copy of `text` short enough to put in an error message.
    pub(crate) fn excerpt(text: &str) -> String {
        text.chars().take(64).collect()
    }
}
