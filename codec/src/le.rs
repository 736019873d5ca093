//! Little-endian reads and writes at fixed offsets of byte slices.
//!
//! Protocol V2 payloads are unaligned (the first TLV payload starts at byte
//! 34), so fields are always copied out of the bytes, never read through a
//! cast pointer. Callers check lengths first; these helpers exist so that the
//! checked length is stated once, by the array type, and indexing cannot fail.

pub(crate) fn u16_at<const N: usize>(bytes: &[u8; N], offset: usize) -> u16 {
    let mut word = [0u8; 2];
    word.copy_from_slice(&bytes[offset..offset + 2]);
    u16::from_le_bytes(word)
}

pub(crate) fn u32_at<const N: usize>(bytes: &[u8; N], offset: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(word)
}

pub(crate) fn u64_at<const N: usize>(bytes: &[u8; N], offset: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(word)
}

pub(crate) fn i64_at<const N: usize>(bytes: &[u8; N], offset: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[offset..offset + 8]);
    i64::from_le_bytes(word)
}

/// The first `N` bytes of `bytes`, or `None` when it is shorter.
pub(crate) fn prefix<const N: usize>(bytes: &[u8]) -> Option<&[u8; N]> {
    bytes.get(..N).and_then(|head| head.try_into().ok())
}
