//! The spool's on-disk record and segment header, sans-IO: encoding, the
//! decoding of one record, and the scan of a whole segment that tells good
//! records from a torn tail and from corrupt bytes in the middle (the layout
//! is described in `docs/spool.md`).
//!
//! It deliberately does no I/O and knows nothing of what a payload means:
//! the spool's owner decides that (the broker path stores whole PUBLISH
//! frames).

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"MYCSPOOL";
/// The segment format version this code writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes of the segment header: magic, version, reserved.
pub const SEGMENT_HEADER_LEN: usize = 16;
/// The first two bytes of every record (`5A A5`): a resync point after
/// corrupt bytes.
pub const RECORD_MAGIC: [u8; 2] = [0x5A, 0xA5];
/// Bytes of a record header: magic (2), flags (2), payload length (4), CRC (4).
pub const RECORD_HEADER_LEN: usize = 12;
/// The largest payload a record may carry (the broker's largest frame).
pub const MAX_RECORD_PAYLOAD: usize = 16 * 1024 * 1024;

/// The segment header: magic, version (u32 LE), four reserved zero bytes.
#[must_use]
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header
}

/// Whether `bytes` start with a segment header this code can read.
#[must_use]
pub fn is_segment_header(bytes: &[u8]) -> bool {
    bytes.len() >= SEGMENT_HEADER_LEN
        && bytes[..8] == SEGMENT_MAGIC
        && bytes[8..12] == SEGMENT_VERSION.to_le_bytes()
        && bytes[12..16] == [0; 4]
}

/// The encoded size of a record carrying `payload_len` bytes.
#[must_use]
pub fn encoded_len(payload_len: usize) -> usize {
    RECORD_HEADER_LEN + payload_len
}

/// Appends the record for `payload` to `dst`. The CRC-32 (IEEE) covers the
/// first eight header bytes and the payload, so a flipped length is caught
/// like a flipped payload byte.
pub fn encode(dst: &mut Vec<u8>, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; 8];
    head[..2].copy_from_slice(&RECORD_MAGIC);
    head[4..8].copy_from_slice(&len.to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head);
    crc.update(payload);
    dst.extend_from_slice(&head);
    dst.extend_from_slice(&crc.finalize().to_le_bytes());
    dst.extend_from_slice(payload);
}

/// What the bytes at the start of a buffer hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// A good record: its payload is `bytes[RECORD_HEADER_LEN..len]`.
    Record {
        /// The whole record's length, header included.
        len: usize,
    },
    /// Too few bytes to tell (a record cut short, or nothing at all).
    Incomplete,
    /// Not a good record: wrong magic or flags, an impossible length, or a
    /// CRC mismatch.
    Bad,
}

/// Decodes the record at the start of `bytes`.
#[must_use]
pub fn decode(bytes: &[u8]) -> Decoded {
    let Some(head) = bytes.get(..RECORD_HEADER_LEN) else {
        // A prefix that already disagrees with the magic is bad, not short.
        let magic_seen = bytes.len().min(2);
        return if bytes[..magic_seen] == RECORD_MAGIC[..magic_seen] { Decoded::Incomplete } else { Decoded::Bad };
    };
    if head[..2] != RECORD_MAGIC || head[2..4] != [0, 0] {
        return Decoded::Bad;
    }
    let payload_len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    if payload_len > MAX_RECORD_PAYLOAD {
        return Decoded::Bad;
    }
    let len = RECORD_HEADER_LEN + payload_len;
    let Some(payload) = bytes.get(RECORD_HEADER_LEN..len) else {
        return Decoded::Incomplete;
    };
    let mut crc = crc32fast::Hasher::new();
    crc.update(&head[..8]);
    crc.update(payload);
    if crc.finalize().to_le_bytes() != head[8..12] {
        return Decoded::Bad;
    }
    Decoded::Record { len }
}

/// A byte range of a segment, as offsets into the scanned buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Where it starts.
    pub offset: usize,
    /// How many bytes.
    pub len: usize,
}

/// What one step of a scan found at its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A good record at `offset`, `len` bytes long (header included).
    Record(Region),
    /// Bytes that are not good records, followed by a good record: skipped.
    Corrupt(Region),
    /// Bytes that are not good records up to the end of the buffer: a torn
    /// write when this is the newest segment.
    Tail(Region),
}

/// Walks the records of a buffer (a segment's bytes after its header). A
/// bad record is skipped up to the next offset where a good record starts
/// (its magic, then a matching CRC), so a flipped byte loses only the record
/// it hit; bad bytes with no good record after them are the tail.
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    bytes: &'a [u8],
    /// Where the next step starts; `bytes.len()` when done.
    position: usize,
}

impl<'a> Scan<'a> {
    /// A scan of `bytes` from their start.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Scan<'a> {
        Scan { bytes, position: 0 }
    }

    /// Where the next good record starts at or after `from`, if any.
    fn resync(&self, from: usize) -> Option<usize> {
        let mut at = from;
        while at + 1 < self.bytes.len() {
            let window = &self.bytes[at..];
            let hit = window.windows(2).position(|pair| pair == RECORD_MAGIC)?;
            let candidate = at + hit;
            if matches!(decode(&self.bytes[candidate..]), Decoded::Record { .. }) {
                return Some(candidate);
            }
            at = candidate + 1;
        }
        None
    }
}

impl Iterator for Scan<'_> {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let start = self.position;
        if start >= self.bytes.len() {
            return None;
        }
        if let Decoded::Record { len } = decode(&self.bytes[start..]) {
            self.position += len;
            return Some(Step::Record(Region { offset: start, len }));
        }
        match self.resync(start + 1) {
            Some(next) => {
                self.position = next;
                Some(Step::Corrupt(Region { offset: start, len: next - start }))
            }
            None => {
                self.position = self.bytes.len();
                Some(Step::Tail(Region { offset: start, len: self.bytes.len() - start }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for payload in payloads {
            encode(&mut out, payload);
        }
        out
    }

    fn steps(bytes: &[u8]) -> Vec<Step> {
        Scan::new(bytes).collect()
    }

    fn record(offset: usize, payload_len: usize) -> Step {
        Step::Record(Region { offset, len: encoded_len(payload_len) })
    }

    #[test]
    fn the_layout_is_pinned() {
        let mut out = Vec::new();
        encode(&mut out, b"abc");
        let mut crc = crc32fast::Hasher::new();
        crc.update(&[0x5A, 0xA5, 0, 0, 3, 0, 0, 0]);
        crc.update(b"abc");
        let mut expect = vec![0x5A, 0xA5, 0, 0, 3, 0, 0, 0];
        expect.extend_from_slice(&crc.finalize().to_le_bytes());
        expect.extend_from_slice(b"abc");
        assert_eq!(out, expect);
        assert_eq!(&segment_header(), b"MYCSPOOL\x01\0\0\0\0\0\0\0");
        assert!(is_segment_header(&segment_header()));
        assert!(!is_segment_header(&segment_header()[..15]));
    }

    #[test]
    fn a_record_decodes_and_every_cut_is_incomplete() {
        let bytes = records(&[b"payload"]);
        assert_eq!(decode(&bytes), Decoded::Record { len: bytes.len() });
        for cut in 0..bytes.len() {
            assert_eq!(decode(&bytes[..cut]), Decoded::Incomplete, "cut at {cut}");
        }
        assert_eq!(decode(&[0x00]), Decoded::Bad, "a wrong first byte is bad at once");
    }

    #[test]
    fn any_flipped_byte_makes_the_record_bad_or_short() {
        let bytes = records(&[b"some payload bytes"]);
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                let decoded = decode(&flipped);
                assert!(matches!(decoded, Decoded::Bad | Decoded::Incomplete), "byte {at} bit {bit}: {decoded:?}");
            }
        }
    }

    #[test]
    fn an_empty_payload_is_a_record_and_a_huge_length_is_bad() {
        let bytes = records(&[b""]);
        assert_eq!(decode(&bytes), Decoded::Record { len: RECORD_HEADER_LEN });
        let mut huge = bytes.clone();
        huge[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), Decoded::Bad);
    }

    #[test]
    fn scans_find_records_corrupt_middles_and_torn_tails() {
        let three = records(&[b"one", b"two!", b"three"]);
        let second = encoded_len(3);
        let third = second + encoded_len(4);

        let check = |bytes: &[u8], expect: &[Step]| assert_eq!(steps(bytes), expect);

        check(&[], &[]);
        check(&three, &[record(0, 3), record(second, 4), record(third, 5)]);

        // A flipped payload byte in the middle record: exactly that record is skipped.
        let mut flipped = three.clone();
        flipped[second + RECORD_HEADER_LEN + 1] ^= 0x40;
        check(
            &flipped,
            &[record(0, 3), Step::Corrupt(Region { offset: second, len: encoded_len(4) }), record(third, 5)],
        );

        // A flipped length: the scan resyncs on the next record.
        let mut flipped = three.clone();
        flipped[second + 4] = 0xFF;
        check(
            &flipped,
            &[record(0, 3), Step::Corrupt(Region { offset: second, len: encoded_len(4) }), record(third, 5)],
        );

        // The last record cut short: a tail.
        let torn = &three[..three.len() - 2];
        check(torn, &[record(0, 3), record(second, 4), Step::Tail(Region { offset: third, len: torn.len() - third })]);

        // Garbage after the last record: a tail.
        let mut garbage = three.clone();
        garbage.extend_from_slice(&[0x5A, 0xA5, 0xFF]);
        check(
            &garbage,
            &[record(0, 3), record(second, 4), record(third, 5), Step::Tail(Region { offset: three.len(), len: 3 })],
        );

        // Zeroes (a preallocated or hole-filled file) before a good record.
        let mut zeroes = vec![0u8; 40];
        zeroes.extend_from_slice(&records(&[b"after"]));
        check(&zeroes, &[Step::Corrupt(Region { offset: 0, len: 40 }), record(40, 5)]);
    }

    #[test]
    fn every_single_flipped_byte_loses_at_most_its_own_record() {
        let payloads: Vec<Vec<u8>> = (0u8..6).map(|n| vec![n; 20 + usize::from(n)]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        let bytes = records(&refs);
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x10;
            let good: Vec<Vec<u8>> = steps(&flipped)
                .into_iter()
                .filter_map(|step| match step {
                    Step::Record(region) => {
                        Some(flipped[region.offset + RECORD_HEADER_LEN..region.offset + region.len].to_vec())
                    }
                    _ => None,
                })
                .collect();
            assert!(good.len() + 1 >= payloads.len(), "byte {at}: only {} of {} kept", good.len(), payloads.len());
            for payload in &good {
                assert!(payloads.contains(payload), "byte {at}: a payload that was never written");
            }
        }
    }
}
