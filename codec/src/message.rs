//! A whole Protocol V2 message borrowed from the caller's bytes: exact
//! parsing, stream framing and checksum verification.
//!
//! It deliberately never copies or rewrites the bytes: a `Message` is a
//! checked view, and [`Message::as_bytes`] gives back exactly what came in.

use crate::checksum::message_checksum;
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, check_prefix};
use crate::tlv::{Tlv, TlvIter};

/// The length of the message starting at `bytes[0]`, read from its
/// `payload_size` (`32 + payload_size`), once 28 bytes are present.
///
/// Nothing else is checked: callers bound the result (against
/// [`crate::MAX_MESSAGE_LEN`] or their own limit) before buffering that many
/// bytes. [`Message::decode`] does the full checks.
pub fn peek_message_len(bytes: &[u8]) -> Option<usize> {
    let size = bytes.get(24..28)?;
    let payload_size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
    usize::try_from(payload_size).ok()?.checked_add(HEADER_LEN)
}

/// Checks the header bytes present at the start of a stream — magic once 4
/// bytes are there, version once 6, size (≤ [`crate::MAX_MESSAGE_LEN`]) once
/// 28 — and returns the message length once it is known. Stream readers call
/// this before buffering a message, and close the connection on an error:
/// framing is lost.
///
/// # Errors
/// [`Error::BadMagic`], [`Error::BadVersion`], [`Error::TooLarge`].
pub fn frame_len(bytes: &[u8]) -> Result<Option<usize>, Error> {
    check_prefix(bytes)
}

/// A validated Protocol V2 message: right magic and version, size within the
/// maximum, and a TLV area that `payload_size` fills exactly with well-formed
/// TLVs. The checksum is checked only on request ([`Message::verify_checksum`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    header: Header,
    /// Exactly `32 + header.payload_size` bytes.
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Parses `bytes` as exactly one message.
    ///
    /// # Errors
    /// [`Error::Truncated`] when `bytes` ends early (including every strict
    /// prefix of a valid message), [`Error::PayloadSizeMismatch`] when bytes
    /// are left over, and the header and TLV errors with their offsets.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, Error> {
        let Some(len) = check_prefix(bytes)? else {
            return Err(Error::Truncated { offset: bytes.len(), need: HEADER_LEN - bytes.len() });
        };
        if bytes.len() < len {
            let need = if bytes.len() < HEADER_LEN { HEADER_LEN - bytes.len() } else { len - bytes.len() };
            return Err(Error::Truncated { offset: bytes.len(), need });
        }
        let header = Header::decode(bytes)?;
        if bytes.len() > len {
            return Err(Error::PayloadSizeMismatch { declared: header.payload_size, actual: bytes.len() });
        }
        for tlv in TlvIter::new(&bytes[HEADER_LEN..], HEADER_LEN) {
            tlv?;
        }
        Ok(Message { header, bytes })
    }

    /// Frames the next message of a byte stream: `Ok(None)` while `bytes`
    /// holds only part of it (never an error), `Ok(Some((message, len)))` once
    /// it is complete, where `len` bytes should be consumed.
    ///
    /// A wrong magic, version or size fails as soon as the bytes that show it
    /// have arrived, so a reader never waits for (or buffers) a length it
    /// cannot trust.
    ///
    /// # Errors
    /// The header and TLV errors of [`Message::parse`].
    pub fn decode(bytes: &'a [u8]) -> Result<Option<(Message<'a>, usize)>, Error> {
        match check_prefix(bytes)? {
            Some(len) if bytes.len() >= len => Message::parse(&bytes[..len]).map(|message| Some((message, len))),
            _ => Ok(None),
        }
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The message bytes, exactly as given.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The TLV area (everything after the header).
    pub fn tlv_area(&self) -> &'a [u8] {
        &self.bytes[HEADER_LEN..]
    }

    /// The TLVs, in wire order.
    pub fn tlvs(&self) -> impl Iterator<Item = Tlv<'a>> + 'a {
        // The area was fully walked by `parse`, so no item is an error.
        TlvIter::new(self.tlv_area(), HEADER_LEN).filter_map(Result::ok)
    }

    /// The CRC-32 of this message per docs/protocol-v2.md §3 (whatever its checksum field).
    pub fn computed_checksum(&self) -> u32 {
        message_checksum(self.bytes)
    }

    /// Checks a non-zero checksum field against the computed CRC-32. A zero
    /// field means "not computed" and passes; domain policies that require a
    /// checksum check for zero themselves.
    ///
    /// # Errors
    /// [`Error::BadChecksum`] when a non-zero field does not match.
    pub fn verify_checksum(&self) -> Result<(), Error> {
        if self.header.checksum == 0 {
            return Ok(());
        }
        let computed = self.computed_checksum();
        if computed == self.header.checksum {
            Ok(())
        } else {
            Err(Error::BadChecksum { found: self.header.checksum, computed })
        }
    }
}
