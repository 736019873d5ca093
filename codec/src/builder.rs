//! Building messages: [`MessageWriter`] writes a complete message into the
//! caller's buffer without allocating (the hot path), [`MessageBuilder`] is
//! the convenient owned form, and [`SequenceCounter`] hands out the
//! per-process sequence numbers.
//!
//! It deliberately takes every header field from the caller, the timestamp
//! included: the codec never reads the clock.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::checksum::message_checksum;
use crate::enums::TlvType;
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, MAX_MESSAGE_LEN};
use crate::payload::{Heartbeat, Quote, Trade};
use crate::tlv::{encoded_tlv_len, write_tlv};

/// What to put in the checksum field when a message is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// `0`, "not computed" (market data's default).
    Zero,
    /// The CRC-32 of docs/protocol-v2.md §3.
    Compute,
    /// This value, as given (for tools that reproduce bytes exactly).
    Value(u32),
}

/// Writes one message into a borrowed buffer: TLVs first, then the header
/// once the size is known. No allocation; the buffer can be reused for every
/// message.
#[derive(Debug)]
pub struct MessageWriter<'b> {
    buf: &'b mut [u8],
    /// Bytes written so far, header space included; always ≥ 32 and ≤ `buf.len()`.
    len: usize,
}

impl<'b> MessageWriter<'b> {
    /// Starts a message at the beginning of `buf`.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when `buf` cannot hold a header.
    pub fn new(buf: &'b mut [u8]) -> Result<MessageWriter<'b>, Error> {
        if buf.len() < HEADER_LEN {
            return Err(Error::BufferTooSmall { need: HEADER_LEN, have: buf.len() });
        }
        Ok(MessageWriter { buf, len: HEADER_LEN })
    }

    /// Appends a TLV in the form its length calls for.
    ///
    /// # Errors
    /// See [`MessageWriter::push_tlv_form`].
    pub fn push_tlv(&mut self, tlv_type: TlvType, payload: &[u8]) -> Result<(), Error> {
        self.push_tlv_form(tlv_type, payload, false)
    }

    /// Appends a TLV, in the extended form when `extended` is set or the
    /// payload is longer than 255 bytes.
    ///
    /// # Errors
    /// [`Error::ReservedTlvType`] for type 255, [`Error::TlvTooLong`],
    /// [`Error::BufferTooSmall`], or [`Error::TooLarge`] when the message
    /// would exceed the maximum size.
    pub fn push_tlv_form(&mut self, tlv_type: TlvType, payload: &[u8], extended: bool) -> Result<(), Error> {
        self.ensure_room(encoded_tlv_len(payload.len(), extended))?;
        self.len += write_tlv(&mut self.buf[self.len..], tlv_type, payload, extended)?;
        Ok(())
    }

    /// Appends a Trade TLV, encoding straight into the buffer.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when the buffer is full.
    pub fn push_trade(&mut self, trade: &Trade) -> Result<(), Error> {
        #[allow(clippy::cast_possible_truncation, reason = "40 fits in a byte")]
        const TLV_HEADER: [u8; 2] = [TlvType::Trade.as_u8(), Trade::LEN as u8];
        self.ensure_room(TLV_HEADER.len() + Trade::LEN)?;
        *self.reserve::<2>()? = TLV_HEADER;
        trade.encode(self.reserve::<{ Trade::LEN }>()?);
        Ok(())
    }

    /// Appends a Quote TLV.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when the buffer is full.
    pub fn push_quote(&mut self, quote: &Quote) -> Result<(), Error> {
        self.push_tlv(TlvType::Quote, &quote.to_bytes())
    }

    /// Appends a Heartbeat TLV.
    ///
    /// # Errors
    /// [`Error::BufferTooSmall`] when the buffer is full.
    pub fn push_heartbeat(&mut self, heartbeat: &Heartbeat) -> Result<(), Error> {
        self.push_tlv(TlvType::Heartbeat, &heartbeat.to_bytes())
    }

    /// Writes the header — `header`'s fields with `payload_size` set to the
    /// TLVs written and the checksum per `checksum` — and returns the message
    /// length: the message is `buf[..len]`.
    ///
    /// # Errors
    /// None today; the signature leaves room for finishing checks.
    pub fn finish(self, header: &Header, checksum: Checksum) -> Result<usize, Error> {
        write_header(&mut self.buf[..self.len], header, checksum);
        Ok(self.len)
    }

    /// Fails unless `n` more bytes fit in the buffer and in a message.
    fn ensure_room(&self, n: usize) -> Result<(), Error> {
        let need = self.len + n;
        if need > MAX_MESSAGE_LEN {
            return Err(Error::TooLarge { len: need as u64, max: MAX_MESSAGE_LEN });
        }
        if need > self.buf.len() {
            return Err(Error::BufferTooSmall { need, have: self.buf.len() });
        }
        Ok(())
    }

    /// The next `N` bytes of the buffer, counted as written.
    fn reserve<const N: usize>(&mut self) -> Result<&mut [u8; N], Error> {
        let have = self.buf.len();
        let start = self.len;
        let Some(slot) = self.buf[start..].first_chunk_mut::<N>() else {
            return Err(Error::BufferTooSmall { need: start + N, have });
        };
        self.len = start + N;
        Ok(slot)
    }
}

/// The owned, convenient builder: collects TLVs and returns the message as a
/// `Vec<u8>`. Same bytes as [`MessageWriter`], one allocation per message.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    header: Header,
    checksum: Checksum,
    /// The message so far: 32 header bytes (written at `build`), then TLVs.
    bytes: Vec<u8>,
}

impl MessageBuilder {
    /// Starts a message with these header fields (`payload_size` and
    /// `checksum` are computed at [`MessageBuilder::build`]).
    pub fn new(header: Header) -> MessageBuilder {
        MessageBuilder { header, checksum: Checksum::Zero, bytes: vec![0; HEADER_LEN] }
    }

    /// Chooses the checksum field (default [`Checksum::Zero`]).
    #[must_use]
    pub fn checksum(mut self, checksum: Checksum) -> MessageBuilder {
        self.checksum = checksum;
        self
    }

    /// Appends a TLV in the form its length calls for.
    ///
    /// # Errors
    /// As [`MessageWriter::push_tlv_form`].
    pub fn tlv(self, tlv_type: TlvType, payload: &[u8]) -> Result<MessageBuilder, Error> {
        self.tlv_form(tlv_type, payload, false)
    }

    /// Appends a TLV, extended when asked for or needed.
    ///
    /// # Errors
    /// As [`MessageWriter::push_tlv_form`].
    pub fn tlv_form(mut self, tlv_type: TlvType, payload: &[u8], extended: bool) -> Result<MessageBuilder, Error> {
        let start = self.bytes.len();
        let wire_len = encoded_tlv_len(payload.len(), extended);
        if start + wire_len > MAX_MESSAGE_LEN {
            return Err(Error::TooLarge { len: (start + wire_len) as u64, max: MAX_MESSAGE_LEN });
        }
        self.bytes.resize(start + wire_len, 0);
        write_tlv(&mut self.bytes[start..], tlv_type, payload, extended)?;
        Ok(self)
    }

    /// Appends a Trade TLV.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the maximum message size.
    pub fn trade(self, trade: &Trade) -> Result<MessageBuilder, Error> {
        self.tlv(TlvType::Trade, &trade.to_bytes())
    }

    /// Appends a Quote TLV.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the maximum message size.
    pub fn quote(self, quote: &Quote) -> Result<MessageBuilder, Error> {
        self.tlv(TlvType::Quote, &quote.to_bytes())
    }

    /// Appends a Heartbeat TLV.
    ///
    /// # Errors
    /// [`Error::TooLarge`] past the maximum message size.
    pub fn heartbeat(self, heartbeat: &Heartbeat) -> Result<MessageBuilder, Error> {
        self.tlv(TlvType::Heartbeat, &heartbeat.to_bytes())
    }

    /// The finished message bytes.
    pub fn build(self) -> Vec<u8> {
        let MessageBuilder { header, checksum, mut bytes } = self;
        write_header(&mut bytes, &header, checksum);
        bytes
    }
}

/// Writes the header of `message` (32 header bytes then the TLVs already in
/// place): `header`'s fields, `payload_size` from the length, the checksum
/// per `checksum`. Both builders finish through here.
fn write_header(message: &mut [u8], header: &Header, checksum: Checksum) {
    let Some((head, tlvs)) = message.split_first_chunk_mut::<HEADER_LEN>() else {
        return; // Both builders always start with 32 header bytes.
    };
    let mut header = *header;
    // Both builders bound the message by MAX_MESSAGE_LEN, which fits in u32.
    header.payload_size = u32::try_from(tlvs.len()).unwrap_or(u32::MAX);
    header.checksum = 0;
    header.write(head);
    let value = match checksum {
        Checksum::Zero => 0,
        Checksum::Compute => message_checksum(message),
        Checksum::Value(value) => value,
    };
    message[28..32].copy_from_slice(&value.to_le_bytes());
}

/// Sequence numbers for one producer process: start at 1, +1 per message,
/// shared across domains (docs/protocol-v2.md §1).
#[derive(Debug)]
pub struct SequenceCounter(AtomicU64);

impl SequenceCounter {
    /// A counter whose first number is 1.
    pub const fn new() -> SequenceCounter {
        SequenceCounter(AtomicU64::new(1))
    }

    /// The next sequence number.
    pub fn next(&self) -> u64 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Default for SequenceCounter {
    fn default() -> Self {
        SequenceCounter::new()
    }
}

static PROCESS_SEQUENCE: SequenceCounter = SequenceCounter::new();

/// The next number of this process's sequence (1, 2, 3, …).
pub fn next_sequence() -> u64 {
    PROCESS_SEQUENCE.next()
}
