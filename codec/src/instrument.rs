//! Instrument fields (docs/protocol-v2.md §4.4): symbol normalisation and the `asset_id`
//! derived from a symbol.
//!
//! It deliberately keeps no symbol table: an `asset_id` is a pure function of
//! the normalised symbol, so every producer and tool computes the same value.

use crate::error::Error;

/// Normalises a feed symbol: upper-case; a leading `X:` dropped; `/` and `-`
/// dropped; a component `XBT` (Kraken's name for bitcoin) becomes `BTC`.
/// Kraken `BTC/USD`, Polygon `BTC-USD` and `X:BTCUSD` all give `BTCUSD`.
///
/// `XBT` is replaced as a whole component between separators (`XBT/USD`,
/// `ETH-XBT`) or as the whole symbol, never inside a longer word.
pub fn normalize_symbol(symbol: &str) -> String {
    let upper = symbol.to_ascii_uppercase();
    let unprefixed = upper.strip_prefix("X:").unwrap_or(&upper);
    unprefixed.split(['/', '-']).map(|component| if component == "XBT" { "BTC" } else { component }).collect()
}

/// The `asset_id` of a feed symbol: the normalised symbol's first ≤ 8 bytes,
/// zero-padded on the right, read as a big-endian u64.
///
/// # Errors
/// [`Error::InvalidSymbol`] for an empty or non-ASCII symbol.
pub fn asset_id(symbol: &str) -> Result<u64, Error> {
    asset_id_of_normalized(&normalize_symbol(symbol))
}

/// The `asset_id` of an already normalised symbol.
///
/// # Errors
/// [`Error::InvalidSymbol`] for an empty or non-ASCII symbol.
pub fn asset_id_of_normalized(symbol: &str) -> Result<u64, Error> {
    let invalid = |reason| Error::InvalidSymbol { symbol: Error::excerpt(symbol), reason };
    if symbol.is_empty() {
        return Err(invalid("empty"));
    }
    if !symbol.is_ascii() {
        return Err(invalid("not ASCII"));
    }
    let mut bytes = [0u8; 8];
    let take = symbol.len().min(8);
    bytes[..take].copy_from_slice(&symbol.as_bytes()[..take]);
    Ok(u64::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_ids_match_the_spec_examples() {
        assert_eq!(asset_id("BTC"), Ok(0x4254_4300_0000_0000));
        assert_eq!(asset_id("BTCUSD"), Ok(0x4254_4355_5344_0000));
        assert_eq!(asset_id("ABCDEFGHIJ"), asset_id("ABCDEFGH"));
    }

    #[test]
    fn the_three_feed_spellings_normalise_alike() {
        for symbol in ["BTC/USD", "BTC-USD", "X:BTCUSD", "XBT/USD", "btc/usd", "xbt-usd"] {
            assert_eq!(normalize_symbol(symbol), "BTCUSD", "{symbol}");
        }
        assert_eq!(normalize_symbol("ETH/XBT"), "ETHBTC");
        assert_eq!(normalize_symbol("XBTX"), "XBTX");
        assert_eq!(normalize_symbol("AAPL"), "AAPL");
    }

    #[test]
    fn empty_and_non_ascii_symbols_are_refused() {
        assert!(matches!(asset_id(""), Err(Error::InvalidSymbol { reason: "empty", .. })));
        assert!(matches!(asset_id("X:"), Err(Error::InvalidSymbol { reason: "empty", .. })));
        assert!(matches!(asset_id("BTC€"), Err(Error::InvalidSymbol { reason: "not ASCII", .. })));
    }
}
