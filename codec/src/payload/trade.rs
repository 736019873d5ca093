//! Trade (TLV type 1, 40 bytes): one execution on a venue.

use super::{check_padding, exact};
use crate::error::Error;
use crate::le::{i64_at, u16_at, u64_at};

/// A Trade payload. Prices and volumes are fixed point ×10^8.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Trade {
    /// Instrument id, see [`crate::asset_id`].
    pub asset_id: u64,
    /// Price ×10^8.
    pub price: i64,
    /// Volume ×10^8.
    pub volume: i64,
    /// Exchange time, ns since the Unix epoch.
    pub execution_timestamp_ns: u64,
    /// Venue (101 Kraken, 0 Generic, …).
    pub venue_id: u16,
    /// Asset type (1 Stock, 51 Coin, …).
    pub asset_type: u8,
    /// Reserved byte, carried as is.
    pub reserved: u8,
    /// 0 buy, 1 sell, 2 unknown; other values are carried as is.
    pub side: u8,
}

/// The side byte of a Trade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// 0
    Buy = 0,
    /// 1
    Sell = 1,
    /// 2
    Unknown = 2,
}

impl Trade {
    /// Payload length.
    pub const LEN: usize = 40;
    const NAME: &'static str = "Trade";
    const PADDING_START: usize = 37;

    /// Decodes a Trade payload.
    ///
    /// # Errors
    /// [`Error::PayloadLength`] unless the payload is 40 bytes,
    /// [`Error::NonZeroPadding`] when bytes 37..40 are not zero.
    pub fn decode(payload: &[u8]) -> Result<Trade, Error> {
        let bytes = exact::<{ Trade::LEN }>(Self::NAME, payload)?;
        check_padding(Self::NAME, bytes, Self::PADDING_START)?;
        Ok(Trade {
            asset_id: u64_at(bytes, 0),
            price: i64_at(bytes, 8),
            volume: i64_at(bytes, 16),
            execution_timestamp_ns: u64_at(bytes, 24),
            venue_id: u16_at(bytes, 32),
            asset_type: bytes[34],
            reserved: bytes[35],
            side: bytes[36],
        })
    }

    /// Writes the 40 payload bytes, padding zero.
    pub fn encode(&self, out: &mut [u8; Trade::LEN]) {
        out[0..8].copy_from_slice(&self.asset_id.to_le_bytes());
        out[8..16].copy_from_slice(&self.price.to_le_bytes());
        out[16..24].copy_from_slice(&self.volume.to_le_bytes());
        out[24..32].copy_from_slice(&self.execution_timestamp_ns.to_le_bytes());
        out[32..34].copy_from_slice(&self.venue_id.to_le_bytes());
        out[34] = self.asset_type;
        out[35] = self.reserved;
        out[36] = self.side;
        out[37..40].fill(0);
    }

    /// The 40 payload bytes.
    pub fn to_bytes(&self) -> [u8; Trade::LEN] {
        let mut out = [0u8; Trade::LEN];
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Trade {
        Trade {
            asset_id: 0x4254_4355_5344_0000,
            price: 7_293_010_000_000,
            volume: 7_509_315,
            execution_timestamp_ns: 1_710_426_505_066_587_000,
            venue_id: 101,
            asset_type: 51,
            reserved: 0,
            side: 1,
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(Trade::decode(&sample().to_bytes()), Ok(sample()));
    }

    #[test]
    fn byte_layout_is_pinned() {
        assert_eq!(
            hex::encode(sample().to_bytes()),
            "0000445355435442\
             80384509a2060000\
             4395720000000000\
             7823e818d8a7bc17\
             6500330001000000"
        );
    }

    #[test]
    fn every_wrong_length_is_refused() {
        let bytes = sample().to_bytes();
        for len in 0..Trade::LEN {
            assert_eq!(
                Trade::decode(&bytes[..len]),
                Err(Error::PayloadLength { name: "Trade", expected: 40, found: len })
            );
        }
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(Trade::decode(&long), Err(Error::PayloadLength { found: 41, .. })));
    }

    #[test]
    fn non_zero_padding_is_refused() {
        let mut bytes = sample().to_bytes();
        bytes[38] = 1;
        assert_eq!(Trade::decode(&bytes), Err(Error::NonZeroPadding { name: "Trade", offset: 38 }));
    }
}
