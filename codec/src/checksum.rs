//! The Protocol V2 checksum (docs/protocol-v2.md §3): CRC-32/ISO-HDLC over header bytes
//! `0..28` followed by the TLV area, skipping the checksum field.
//!
//! The field is skipped, not zeroed: hashing all 32 bytes with a zeroed field
//! gives a different value, which is a known legacy bug this module exists to
//! avoid. The CRC itself comes from `crc32fast`.

/// CRC-32/ISO-HDLC (zlib, Ethernet) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The checksum of a message: CRC-32 of `message[0..28]` then
/// `message[32..]`. Bytes shorter than a header hash what is there.
pub fn message_checksum(message: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(message.get(..28).unwrap_or(message));
    hasher.update(message.get(32..).unwrap_or_default());
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value_is_the_iso_hdlc_one() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn the_checksum_field_is_skipped_not_zeroed() {
        let mut message = [0u8; 40];
        message[..4].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        message[32..].copy_from_slice(b"abcdefgh");
        let skipped = message_checksum(&message);
        let zeroed = crc32(&message);
        assert_ne!(skipped, zeroed);
        message[28..32].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(message_checksum(&message), skipped);
        let mut expect = message[..28].to_vec();
        expect.extend_from_slice(b"abcdefgh");
        assert_eq!(skipped, crc32(&expect));
    }
}
