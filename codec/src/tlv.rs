//! The TLV area (docs/protocol-v2.md §2): iteration over borrowed bytes, in both the standard
//! and the extended form, and writing one TLV into a buffer.
//!
//! It deliberately does not interpret payloads: unknown types are yielded like
//! any other, and typed payloads are decoded by [`crate::Trade`] and friends.

use crate::enums::TlvType;
use crate::error::Error;

/// The first byte of an extended-form TLV.
pub const EXTENDED_MARKER: u8 = 0xFF;
/// The longest payload of a standard-form TLV.
pub const MAX_STANDARD_LEN: usize = 255;
/// The longest payload of any TLV (extended form).
pub const MAX_EXTENDED_LEN: usize = 65_535;

const STANDARD_HEADER_LEN: usize = 2;
const EXTENDED_HEADER_LEN: usize = 5;

/// One TLV, borrowed from the message bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The TLV type (never 255).
    pub tlv_type: TlvType,
    /// Whether the wire used the extended form (whatever the payload length).
    pub extended: bool,
    /// Offset of the TLV's first byte, counted from the start of the message.
    pub offset: usize,
    /// The payload bytes.
    pub payload: &'a [u8],
}

impl Tlv<'_> {
    /// The TLV's length on the wire, its own header included.
    pub fn wire_len(&self) -> usize {
        encoded_tlv_len(self.payload.len(), self.extended)
    }
}

/// The wire length of a TLV with a payload of `payload_len` bytes; the
/// extended form is used when asked for or when the payload needs it.
pub const fn encoded_tlv_len(payload_len: usize, extended: bool) -> usize {
    if extended || payload_len > MAX_STANDARD_LEN {
        EXTENDED_HEADER_LEN + payload_len
    } else {
        STANDARD_HEADER_LEN + payload_len
    }
}

/// Iterates over the TLVs of a TLV area. After the first error it yields
/// nothing more: once one length is wrong, later boundaries are guesses.
#[derive(Debug, Clone)]
pub struct TlvIter<'a> {
    area: &'a [u8],
    /// Position of the next TLV within `area`; `area.len()` when done or failed.
    position: usize,
    /// Offset of `area` within its message, so errors name message offsets.
    base_offset: usize,
}

impl<'a> TlvIter<'a> {
    /// Iterates over `area`, the bytes after a header; `base_offset` is where
    /// `area` starts in its message (32 for a whole message).
    pub fn new(area: &'a [u8], base_offset: usize) -> TlvIter<'a> {
        TlvIter { area, position: 0, base_offset }
    }

    fn decode_next(&self) -> Result<(Tlv<'a>, usize), Error> {
        let rest = &self.area[self.position..];
        let offset = self.base_offset + self.position;
        let overrun = |need: usize| Error::TlvOverrun { offset, need, remaining: rest.len() };
        let (tlv_type, extended, header_len, payload_len) = match *rest {
            [EXTENDED_MARKER, reserved, tlv_type, len_lo, len_hi, ..] => {
                if reserved != 0 {
                    return Err(Error::ExtendedReservedNonZero { offset: offset + 1, found: reserved });
                }
                if tlv_type == EXTENDED_MARKER {
                    return Err(Error::ReservedTlvType { offset: offset + 2 });
                }
                (tlv_type, true, EXTENDED_HEADER_LEN, usize::from(u16::from_le_bytes([len_lo, len_hi])))
            }
            [EXTENDED_MARKER, ..] => return Err(overrun(EXTENDED_HEADER_LEN)),
            [tlv_type, len, ..] => (tlv_type, false, STANDARD_HEADER_LEN, usize::from(len)),
            _ => return Err(overrun(STANDARD_HEADER_LEN)),
        };
        let wire_len = header_len + payload_len;
        let Some(payload) = rest.get(header_len..wire_len) else {
            return Err(overrun(wire_len));
        };
        let tlv = Tlv { tlv_type: TlvType::from_u8(tlv_type), extended, offset, payload };
        Ok((tlv, wire_len))
    }
}

impl<'a> Iterator for TlvIter<'a> {
    type Item = Result<Tlv<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.area.len() {
            return None;
        }
        match self.decode_next() {
            Ok((tlv, wire_len)) => {
                self.position += wire_len;
                Some(Ok(tlv))
            }
            Err(error) => {
                self.position = self.area.len();
                Some(Err(error))
            }
        }
    }
}

/// Writes one TLV at the start of `out` and returns its wire length. The
/// extended form is used when `extended` is set or the payload exceeds 255
/// bytes.
///
/// # Errors
/// [`Error::ReservedTlvType`] for type 255, [`Error::TlvTooLong`] for a
/// payload over 65,535 bytes, [`Error::BufferTooSmall`] when `out` is short.
pub(crate) fn write_tlv(out: &mut [u8], tlv_type: TlvType, payload: &[u8], extended: bool) -> Result<usize, Error> {
    let type_byte = tlv_type.as_u8();
    if type_byte == EXTENDED_MARKER {
        return Err(Error::ReservedTlvType { offset: 0 });
    }
    let Ok(len16) = u16::try_from(payload.len()) else {
        return Err(Error::TlvTooLong { len: payload.len() });
    };
    let wire_len = encoded_tlv_len(payload.len(), extended);
    let Some(dest) = out.get_mut(..wire_len) else {
        return Err(Error::BufferTooSmall { need: wire_len, have: out.len() });
    };
    let header_len = wire_len - payload.len();
    if header_len == EXTENDED_HEADER_LEN {
        let [len_lo, len_hi] = len16.to_le_bytes();
        dest[..EXTENDED_HEADER_LEN].copy_from_slice(&[EXTENDED_MARKER, 0, type_byte, len_lo, len_hi]);
    } else {
        // Standard form is only chosen for payloads of at most 255 bytes.
        dest[..STANDARD_HEADER_LEN].copy_from_slice(&[type_byte, len16.to_le_bytes()[0]]);
    }
    dest[header_len..].copy_from_slice(payload);
    Ok(wire_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TLV as plain values: type, extended, offset, payload.
    type Plain = (u8, bool, usize, Vec<u8>);

    fn collect(area: &[u8]) -> Vec<Result<Plain, Error>> {
        TlvIter::new(area, 32)
            .map(|item| item.map(|tlv| (tlv.tlv_type.as_u8(), tlv.extended, tlv.offset, tlv.payload.to_vec())))
            .collect()
    }

    #[test]
    fn standard_and_extended_forms_are_both_read() {
        let area = [7, 2, 0xAA, 0xBB, 0xFF, 0x00, 9, 1, 0, 0xCC, 8, 0];
        assert_eq!(
            collect(&area),
            vec![Ok((7, false, 32, vec![0xAA, 0xBB])), Ok((9, true, 36, vec![0xCC])), Ok((8, false, 42, vec![])),]
        );
    }

    #[test]
    fn malformed_areas_report_the_offset_and_stop() {
        assert_eq!(collect(&[7]), vec![Err(Error::TlvOverrun { offset: 32, need: 2, remaining: 1 })]);
        assert_eq!(collect(&[7, 3, 1, 2]), vec![Err(Error::TlvOverrun { offset: 32, need: 5, remaining: 4 })]);
        assert_eq!(collect(&[0xFF, 0, 1, 0]), vec![Err(Error::TlvOverrun { offset: 32, need: 5, remaining: 4 })]);
        assert_eq!(
            collect(&[1, 0, 0xFF, 1, 1, 0, 0]),
            vec![Ok((1, false, 32, vec![])), Err(Error::ExtendedReservedNonZero { offset: 35, found: 1 })]
        );
        assert_eq!(collect(&[0xFF, 0, 0xFF, 0, 0]), vec![Err(Error::ReservedTlvType { offset: 34 })]);
    }

    #[test]
    fn writing_chooses_the_form_by_length_unless_extended_is_asked_for() {
        let mut out = [0u8; 400];
        assert_eq!(write_tlv(&mut out, TlvType::from_u8(5), &[1, 2], false), Ok(4));
        assert_eq!(out[..4], [5, 2, 1, 2]);
        assert_eq!(write_tlv(&mut out, TlvType::from_u8(5), &[1, 2], true), Ok(7));
        assert_eq!(out[..7], [0xFF, 0, 5, 2, 0, 1, 2]);
        assert_eq!(write_tlv(&mut out, TlvType::from_u8(5), &[0; 256], false), Ok(261));
        assert_eq!(out[..5], [0xFF, 0, 5, 0, 1]);
        assert_eq!(
            write_tlv(&mut out[..3], TlvType::from_u8(5), &[1, 2], false),
            Err(Error::BufferTooSmall { need: 4, have: 3 })
        );
        assert_eq!(write_tlv(&mut out, TlvType::from_u8(255), &[], false), Err(Error::ReservedTlvType { offset: 0 }));
        assert_eq!(
            write_tlv(&mut out, TlvType::from_u8(5), &vec![0; 65_536], false),
            Err(Error::TlvTooLong { len: 65_536 })
        );
    }
}
