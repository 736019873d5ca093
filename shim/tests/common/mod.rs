//! What both shim test binaries share: what a tap has seen, a relay tap,
//! a message's sequence, and verify's join over two taps.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use myc_codec::Domain;

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

/// Taps the relay at `path`, once `relay` has accepted the tap.
pub(crate) async fn tap_relay(
    relay: &myc_transport::Running<myc_relay_compat::RelayHandle>,
    path: &Path,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let consumers = relay.handle().consumers(Domain::MarketData);
    let mut tap = myc_relay_compat::RelayTap::connect(path).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.handle().consumers(Domain::MarketData) == consumers {
        assert!(Instant::now() < deadline, "the relay never accepted the tap");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Ok(Some(message)) = tap.next().await {
            sink.lock().unwrap().push(message.bytes);
        }
    });
    (seen, task)
}
