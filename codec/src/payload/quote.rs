//! Quote (TLV type 2, 56 bytes): the best bid and ask of an instrument.

use super::{check_padding, exact};
use crate::error::Error;
use crate::le::{i64_at, u16_at, u64_at};

/// A Quote payload. Prices and sizes are fixed point ×10^8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Quote {
    /// Instrument id, see [`crate::asset_id`].
    pub asset_id: u64,
    /// Best bid ×10^8.
    pub bid_price: i64,
    /// Bid size ×10^8.
    pub bid_size: i64,
    /// Best ask ×10^8.
    pub ask_price: i64,
    /// Ask size ×10^8.
    pub ask_size: i64,
    /// Quote time, ns since the Unix epoch.
    pub quote_timestamp_ns: u64,
    /// Venue id.
    pub venue_id: u16,
    /// Asset type.
    pub asset_type: u8,
    /// Reserved byte, carried as is.
    pub reserved: u8,
}

impl Quote {
    /// Payload length.
    pub const LEN: usize = 56;
    const NAME: &'static str = "Quote";
    const PADDING_START: usize = 52;

    /// Decodes a Quote payload.
    ///
    /// # Errors
    /// [`Error::PayloadLength`] unless the payload is 56 bytes,
    /// [`Error::NonZeroPadding`] when bytes 52..56 are not zero.
    pub fn decode(payload: &[u8]) -> Result<Quote, Error> {
        let bytes = exact::<{ Quote::LEN }>(Self::NAME, payload)?;
        check_padding(Self::NAME, bytes, Self::PADDING_START)?;
        Ok(Quote {
            asset_id: u64_at(bytes, 0),
            bid_price: i64_at(bytes, 8),
            bid_size: i64_at(bytes, 16),
            ask_price: i64_at(bytes, 24),
            ask_size: i64_at(bytes, 32),
            quote_timestamp_ns: u64_at(bytes, 40),
            venue_id: u16_at(bytes, 48),
            asset_type: bytes[50],
            reserved: bytes[51],
        })
    }

    /// Writes the 56 payload bytes, padding zero.
    pub fn encode(&self, out: &mut [u8; Quote::LEN]) {
        out[0..8].copy_from_slice(&self.asset_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.bid_price.to_le_bytes());
        out[16..24].copy_from_slice(&self.bid_size.to_le_bytes());
        out[24..32].copy_from_slice(&self.ask_price.to_le_bytes());
        out[32..40].copy_from_slice(&self.ask_size.to_le_bytes());
        out[40..48].copy_from_slice(&self.quote_timestamp_ns.to_le_bytes());
        out[48..50].copy_from_slice(&self.venue_id.to_le_bytes());
        out[50] = self.asset_type;
        out[51] = self.reserved;
        out[52..56].fill(0);
    }

    /// The 56 payload bytes.
    pub fn to_bytes(&self) -> [u8; Quote::LEN] {
        let mut out = [0u8; Quote::LEN];
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Quote {
        Quote {
            asset_id: 0x4141_504C_0000_0000,
            bid_price: 18_912_000_000,
            bid_size: 300_000_000,
            ask_price: 18_915_000_000,
            ask_size: 500_000_000,
            quote_timestamp_ns: 1_700_000_000_000_000_000,
            venue_id: 0,
            asset_type: 1,
            reserved: 0,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Quote::decode(&sample().to_bytes()), Ok(sample()));
    }

    #[test]
    fn byte_layout_is_pinned() {
        assert_eq!(
            hex::encode(sample().to_bytes()),
            "000000004c504141\
             00383e6704000000\
             00a3e11100000000\
             c0fe6b6704000000\
             0065cd1d00000000\
             00002a36fe9c9717\
             0000010000000000"
        );
    }

    #[test]
    fn wrong_lengths_and_padding_are_refused() {
        let bytes = sample().to_bytes();
        for len in 0..Quote::LEN {
            assert!(matches!(Quote::decode(&bytes[..len]), Err(Error::PayloadLength { expected: 56, .. })));
        }
        let mut padded = bytes;
        padded[55] = 9;
        assert_eq!(Quote::decode(&padded), Err(Error::NonZeroPadding { name: "Quote", offset: 55 }));
    }
}
