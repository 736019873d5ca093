//! The 32-byte Protocol V2 header (docs/protocol-v2.md §1): reading, writing and the checks
//! that must pass before a stream reader may trust `payload_size`.
//!
//! It deliberately does not look at the TLV area; [`crate::Message`] does.

use crate::enums::{Domain, Source};
use crate::error::Error;
use crate::le;

/// `0xDEADBEEF`, on the wire `EF BE AD DE`.
pub const MAGIC: u32 = 0xDEAD_BEEF;
/// The only protocol version.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 32;
/// The largest message, header included.
pub const MAX_MESSAGE_LEN: usize = 1_048_576;

/// The decoded header fields. `magic` is not stored: a `Header` only exists
/// for bytes whose magic was right, and is always written as [`MAGIC`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Byte 4: the relay domain (any value is carried; only 1–4 route).
    pub relay_domain: Domain,
    /// Byte 5: always [`VERSION`] for a decoded header.
    pub version: u8,
    /// Byte 6: the producer kind.
    pub source: Source,
    /// Byte 7: reserved flag bits, `0` today.
    pub flags: u8,
    /// Bytes 8..16: per-process sequence from 1; `0` means "not set".
    pub sequence: u64,
    /// Bytes 16..24: build time, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// Bytes 24..28: length of the TLV area. On a decoded header it is at
    /// most `MAX_MESSAGE_LEN - 32`.
    pub payload_size: u32,
    /// Bytes 28..32: CRC-32 per docs/protocol-v2.md §3, or `0` for "not computed".
    pub checksum: u32,
}

impl Header {
    /// A header for a new message: version 1, flags 0; `payload_size` and
    /// `checksum` are filled in when the message is finished.
    pub const fn new(relay_domain: Domain, source: Source, sequence: u64, timestamp_ns: u64) -> Header {
        Header {
            relay_domain,
            version: VERSION,
            source,
            flags: 0,
            sequence,
            timestamp_ns,
            payload_size: 0,
            checksum: 0,
        }
    }

    /// The identification header a legacy producer sends first on a relay
    /// connection: magic, domain, version and source, every other field zero.
    pub const fn identification(relay_domain: Domain, source: Source) -> Header {
        Header::new(relay_domain, source, 0, 0)
    }

    /// Whether this is an identification header rather than a message:
    /// `payload_size`, `sequence` and `timestamp_ns` all zero (docs/relay.md §3).
    pub const fn is_identification(&self) -> bool {
        self.payload_size == 0 && self.sequence == 0 && self.timestamp_ns == 0
    }

    /// The length of the whole message this header announces.
    pub const fn message_len(&self) -> usize {
        HEADER_LEN + self.payload_size as usize
    }

    /// Decodes and checks a header from the first 32 bytes of `bytes`.
    ///
    /// # Errors
    /// [`Error::Truncated`] when fewer than 32 bytes are given, otherwise the
    /// first failing check of magic, version and size.
    pub fn decode(bytes: &[u8]) -> Result<Header, Error> {
        check_prefix(bytes)?;
        let Some(head) = le::prefix::<HEADER_LEN>(bytes) else {
            return Err(Error::Truncated { offset: bytes.len(), need: HEADER_LEN - bytes.len() });
        };
        Ok(Header {
            relay_domain: Domain::from_u8(head[4]),
            version: head[5],
            source: Source::from_u8(head[6]),
            flags: head[7],
            sequence: le::u64_at(head, 8),
            timestamp_ns: le::u64_at(head, 16),
            payload_size: le::u32_at(head, 24),
            checksum: le::u32_at(head, 28),
        })
    }

    /// The 32 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        self.write(&mut out);
        out
    }

    /// Writes the 32 header bytes into `out`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        out[4] = self.relay_domain.as_u8();
        out[5] = self.version;
        out[6] = self.source.as_u8();
        out[7] = self.flags;
        out[8..16].copy_from_slice(&self.sequence.to_le_bytes());
        out[16..24].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        out[24..28].copy_from_slice(&self.payload_size.to_le_bytes());
        out[28..32].copy_from_slice(&self.checksum.to_le_bytes());
    }
}

/// Checks whatever part of a header `bytes` holds — magic once 4 bytes are
/// there, version once 6, size once 28 — and returns the announced message
/// length once it is known. A stream reader can call this on every partial
/// read and close a connection as soon as framing is lost.
pub(crate) fn check_prefix(bytes: &[u8]) -> Result<Option<usize>, Error> {
    if let Some(magic) = le::prefix::<4>(bytes) {
        let found = u32::from_le_bytes(*magic);
        if found != MAGIC {
            return Err(Error::BadMagic { found });
        }
    }
    if let Some(&version) = bytes.get(5) {
        if version != VERSION {
            return Err(Error::BadVersion { found: version });
        }
    }
    let Some(head) = le::prefix::<28>(bytes) else {
        return Ok(None);
    };
    let len = HEADER_LEN as u64 + u64::from(le::u32_at(head, 24));
    if len > MAX_MESSAGE_LEN as u64 {
        return Err(Error::TooLarge { len, max: MAX_MESSAGE_LEN });
    }
    // Bounded by MAX_MESSAGE_LEN just above, so it fits in usize.
    Ok(Some(usize::try_from(len).unwrap_or(MAX_MESSAGE_LEN)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identification_header_matches_the_relay_spec_example() {
        let header = Header::identification(Domain::MarketData, Source::KrakenCollector);
        let mut expect = [0u8; 32];
        expect[..8].copy_from_slice(&[0xEF, 0xBE, 0xAD, 0xDE, 0x01, 0x01, 0x02, 0x00]);
        assert_eq!(header.to_bytes(), expect);
        assert!(Header::decode(&expect).unwrap().is_identification());
    }

    #[test]
    fn header_fields_sit_at_their_offsets() {
        let header = Header {
            relay_domain: Domain::Signal,
            version: 1,
            source: Source::from_u8(0xAB),
            flags: 0x14,
            sequence: 0x0102_0304_0506_0708,
            timestamp_ns: 0x1112_1314_1516_1718,
            payload_size: 0x0000_2122,
            checksum: 0x3132_3334,
        };
        let bytes = header.to_bytes();
        assert_eq!(
            hex::encode(bytes),
            "efbeadde0201ab14\
             0807060504030201\
             1817161514131211\
             2221000034333231"
        );
        assert_eq!(Header::decode(&bytes), Ok(header));
    }

    #[test]
    fn prefix_checks_fail_as_soon_as_the_bad_byte_arrives() {
        assert_eq!(check_prefix(&[0xEF, 0xBE, 0xAD]), Ok(None));
        assert_eq!(check_prefix(&[0xEF, 0xBE, 0xAD, 0xDF]), Err(Error::BadMagic { found: 0xDFAD_BEEF }));
        assert_eq!(check_prefix(&[0xEF, 0xBE, 0xAD, 0xDE, 1, 2]), Err(Error::BadVersion { found: 2 }));
        let mut big = Header::new(Domain::MarketData, Source::TestClient, 1, 1).to_bytes();
        big[24..28].copy_from_slice(&(1_048_576u32 - 31).to_le_bytes());
        assert_eq!(check_prefix(&big), Err(Error::TooLarge { len: 1_048_577, max: MAX_MESSAGE_LEN }));
        big[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(check_prefix(&big[..28]), Err(Error::TooLarge { .. })));
        big[24..28].copy_from_slice(&(1_048_576u32 - 32).to_le_bytes());
        assert_eq!(check_prefix(&big), Ok(Some(MAX_MESSAGE_LEN)));
    }
}
