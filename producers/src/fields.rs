//! Reading the fields the mappings use, each with the reason an event is
//! dropped when it is wrong: missing or mistyped (`bad_field`), negative,
//! zero where a size is required (`zero_size`), too large for ×10^8 fixed
//! point (`overflow`), a timestamp in the wrong unit (`bad_timestamp`), or
//! a symbol that is not one (`bad_symbol`). Numbers are read from their
//! decimal text, never through `f64`.

use serde_json::value::RawValue;

/// Why an event is dropped (the `events_dropped` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// A field the mapping uses is missing or has the wrong type.
    BadField,
    /// A negative price or size.
    Negative,
    /// A size of zero where one is required.
    ZeroSize,
    /// A number too large for fixed point ×10^8.
    Overflow,
    /// A timestamp outside 2001–2100 in the expected unit.
    BadTimestamp,
    /// A symbol that cannot be mapped.
    BadSymbol,
    /// A Kraken book update for a new symbol while `max_books` books are
    /// kept already (not in [`Drop::ALL`]: only Kraken keeps books).
    BookLimit,
}

impl Drop {
    /// Every reason, for zero-filled counters.
    pub const ALL: [Drop; 6] =
        [Drop::BadField, Drop::Negative, Drop::ZeroSize, Drop::Overflow, Drop::BadTimestamp, Drop::BadSymbol];

    /// The counter key.
    pub fn name(self) -> &'static str {
        match self {
            Drop::BadField => "bad_field",
            Drop::Negative => "negative",
            Drop::ZeroSize => "zero_size",
            Drop::Overflow => "overflow",
            Drop::BadTimestamp => "bad_timestamp",
            Drop::BadSymbol => "bad_symbol",
            Drop::BookLimit => "book_limit",
        }
    }
}

/// 2001-01-01T00:00:00Z and 2100-01-01T00:00:00Z in ms.
const EARLIEST_MS: u64 = 978_307_200_000;
const LATEST_MS: u64 = 4_102_444_800_000;

/// The decimal text of a JSON number (not a string, not anything else).
fn number_text(value: Option<&RawValue>) -> Result<&str, Drop> {
    let text = value.ok_or(Drop::BadField)?.get();
    match text.as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(text),
        _ => Err(Drop::BadField),
    }
}

fn fixed8(text: &str) -> Result<i64, Drop> {
    myc_codec::parse_fixed8(text).map_err(|_| if looks_numeric(text) { Drop::Overflow } else { Drop::BadField })
}

fn looks_numeric(text: &str) -> bool {
    text.bytes().all(|byte| byte.is_ascii_digit() || matches!(byte, b'-' | b'+' | b'.' | b'e' | b'E'))
}

/// A price: a JSON number, not negative.
pub fn price(value: Option<&RawValue>) -> Result<i64, Drop> {
    let price = fixed8(number_text(value)?)?;
    if price < 0 { Err(Drop::Negative) } else { Ok(price) }
}

/// A size that must be positive (a trade's).
pub fn size(value: Option<&RawValue>) -> Result<i64, Drop> {
    size_text(number_text(value)?)
}

/// A size given as decimal text in a JSON string (Polygon's `ds`).
pub fn size_text(text: &str) -> Result<i64, Drop> {
    match fixed8(text)? {
        size if size < 0 => Err(Drop::Negative),
        0 => Err(Drop::ZeroSize),
        size => Ok(size),
    }
}

/// A size that may be zero (a quote side with nothing on it).
pub fn quote_size(value: Option<&RawValue>) -> Result<i64, Drop> {
    let size = fixed8(number_text(value)?)?;
    if size < 0 { Err(Drop::Negative) } else { Ok(size) }
}

/// Unix milliseconds (an integer, 2001–2100) as nanoseconds.
pub fn millis(value: Option<&RawValue>) -> Result<u64, Drop> {
    let text = number_text(value)?;
    let ms: u64 = text.parse().map_err(|_| if looks_numeric(text) { Drop::BadTimestamp } else { Drop::BadField })?;
    if !(EARLIEST_MS..LATEST_MS).contains(&ms) {
        return Err(Drop::BadTimestamp);
    }
    Ok(ms * 1_000_000)
}

/// An RFC 3339 time as Unix nanoseconds.
pub fn rfc3339(text: &str) -> Result<u64, Drop> {
    let time = humantime::parse_rfc3339(text).map_err(|_| Drop::BadTimestamp)?;
    let since = time.duration_since(std::time::UNIX_EPOCH).map_err(|_| Drop::BadTimestamp)?;
    u64::try_from(since.as_nanos()).map_err(|_| Drop::BadTimestamp)
}

/// The `asset_id` of a symbol.
pub fn asset(symbol: &str) -> Result<u64, Drop> {
    myc_codec::asset_id(symbol).map_err(|_| Drop::BadSymbol)
}
