//! The synthetic feed: Trade messages for `BTC-USD` with a price that
//! walks, so the shim, rollout and hot reload can be exercised without a
//! market. Built in place (no allocation per message).

use myc_codec::{Checksum, Domain, Header, MessageWriter, Source, Trade};

/// The encoded size of one synthetic message (header + one Trade TLV).
pub const MESSAGE_LEN: usize = myc_codec::HEADER_LEN + 2 + Trade::LEN;

/// Trade after trade, numbered from 1.
#[derive(Debug, Clone)]
pub struct Synthetic {
    source: Source,
    sequence: u64,
    asset_id: u64,
}

impl Synthetic {
    /// A feed publishing as `source`.
    pub fn new(source: Source) -> Synthetic {
        let asset_id = myc_codec::asset_id("BTC-USD").unwrap_or_default();
        Synthetic { source, sequence: 0, asset_id }
    }

    /// Messages built so far (also the last sequence used).
    pub fn built(&self) -> u64 {
        self.sequence
    }

    /// Builds the next message into `buf` (at least [`MESSAGE_LEN`] bytes),
    /// stamped `now_ns`; returns its length.
    ///
    /// # Errors
    /// A buffer too small.
    pub fn next_into(&mut self, now_ns: u64, buf: &mut [u8]) -> Result<usize, myc_codec::Error> {
        self.sequence += 1;
        let step = i64::try_from(self.sequence % 2_000).unwrap_or(0) - 1_000;
        let trade = Trade {
            asset_id: self.asset_id,
            price: 7_293_010_000_000 + step * 1_000_000,
            volume: 1_000_000 + i64::try_from(self.sequence % 97).unwrap_or(0) * 10_000,
            execution_timestamp_ns: now_ns,
            venue_id: 0,
            asset_type: 51,
            reserved: 0,
            side: u8::try_from(self.sequence % 2).unwrap_or(0),
        };
        let header = Header::new(Domain::MarketData, self.source, self.sequence, now_ns);
        let mut writer = MessageWriter::new(buf)?;
        writer.push_trade(&trade)?;
        writer.finish(&header, Checksum::Zero)
    }
}
