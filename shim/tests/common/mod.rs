//! What both shim test binaries share: what a tap has seen, a message's
//! sequence, and verify's join over two taps.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// What a tap has seen so far.
pub(crate) type Seen = Arc<Mutex<Vec<Bytes>>>;

/// The Protocol V2 header's sequence.
pub(crate) fn sequence_of(bytes: &[u8]) -> u64 {
    u64::from_le_bytes(bytes[8..16].try_into().unwrap())
}

/// Verify's comparison of what two taps saw (arrival order as seen),
/// keeping up to `examples` differences.
pub(crate) fn compare(reference: &Seen, candidate: &Seen, examples: usize) -> myc_verify::join::Comparison {
    let captured = |seen: &Seen| -> Vec<myc_verify::join::Captured> {
        seen.lock()
            .unwrap()
            .iter()
            .map(|bytes| myc_verify::join::Captured { bytes: bytes.to_vec(), arrival_ns: 0 })
            .collect()
    };
    myc_verify::join::compare(captured(reference), captured(candidate), myc_verify::join::Ignore::default(), examples)
}
