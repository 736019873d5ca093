//! Heartbeat (TLV type 100, 16 bytes): a liveness tick with a counter.

use super::exact;
use crate::error::Error;
use crate::le::u64_at;

/// A Heartbeat payload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    /// When the heartbeat was sent, ns since the Unix epoch.
    pub timestamp_ns: u64,
    /// A counter, +1 per heartbeat.
    pub counter: u64,
}

impl Heartbeat {
    /// Payload length.
    pub const LEN: usize = 16;
    const NAME: &'static str = "Heartbeat";

    /// Decodes a Heartbeat payload (it has no padding).
    ///
    /// # Errors
    /// [`Error::PayloadLength`] unless the payload is 16 bytes.
    pub fn decode(payload: &[u8]) -> Result<Heartbeat, Error> {
        let bytes = exact::<{ Heartbeat::LEN }>(Self::NAME, payload)?;
        Ok(Heartbeat { timestamp_ns: u64_at(bytes, 0), counter: u64_at(bytes, 8) })
    }

    /// Writes the 16 payload bytes.
    pub fn encode(&self, out: &mut [u8; Heartbeat::LEN]) {
        out[0..8].copy_from_slice(&self.timestamp_ns.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
    }

    /// The 16 payload bytes.
    pub fn to_bytes(&self) -> [u8; Heartbeat::LEN] {
        let mut out = [0u8; Heartbeat::LEN];
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_layout_is_pinned() {
        let heartbeat = Heartbeat { timestamp_ns: 0x0102_0304_0506_0708, counter: 42 };
        assert_eq!(hex::encode(heartbeat.to_bytes()), "08070605040302012a00000000000000");
        assert_eq!(Heartbeat::decode(&heartbeat.to_bytes()), Ok(heartbeat));
        assert!(matches!(Heartbeat::decode(&[0; 15]), Err(Error::PayloadLength { found: 15, .. })));
    }
}
