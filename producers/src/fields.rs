//! Reading the fields the mappings use, each with the reason an event is
//! dropped when it is wrong: missing or mistyped (`bad_field`), negative,
//! zero where a size is required (`zero_size`), too large for ×10^8 fixed
//! point (`overflow`), a timestamp in the wrong unit (`bad_timestamp`), or
//! a symbol that is not one (`bad_symbol`). Numbers are read from their
//! decimal text, never through `f64`: the text of a JSON number (Polygon,
//! Kraken), or the text inside a JSON string (`"72930.10"`: Coinbase,
//! Binance) — each feed's numbers in the one form it sends, the other form
//! being a mistyped field.

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

/// The decimal text inside a JSON string. A string with escapes is never a
/// number, so the text is borrowed as it stands.
fn quoted_text(value: Option<&RawValue>) -> Result<&str, Drop> {
    let text = value.ok_or(Drop::BadField)?.get();
    let inner = text.strip_prefix('"').and_then(|text| text.strip_suffix('"')).ok_or(Drop::BadField)?;
    if inner.is_empty() || inner.contains('\\') { Err(Drop::BadField) } else { Ok(inner) }
}

/// A JSON string as text: borrowed when it has no escapes (the common case).
///
/// # Errors
/// `bad_field` for a value that is not a string.
pub fn string(value: Option<&RawValue>) -> Result<std::borrow::Cow<'_, str>, Drop> {
    let text = value.ok_or(Drop::BadField)?.get();
    match text.strip_prefix('"').and_then(|text| text.strip_suffix('"')) {
        Some(inner) if !inner.contains('\\') => Ok(std::borrow::Cow::Borrowed(inner)),
        Some(_) => serde_json::from_str::<String>(text).map(std::borrow::Cow::Owned).map_err(|_| Drop::BadField),
        None => Err(Drop::BadField),
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
    price_text(number_text(value)?)
}

/// A price given as decimal text in a JSON string, not negative.
pub fn quoted_price(value: Option<&RawValue>) -> Result<i64, Drop> {
    price_text(quoted_text(value)?)
}

fn price_text(text: &str) -> Result<i64, Drop> {
    let price = fixed8(text)?;
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

/// A trade size given as decimal text in a JSON string: positive.
pub fn quoted_size(value: Option<&RawValue>) -> Result<i64, Drop> {
    size_text(quoted_text(value)?)
}

/// A size that may be zero (a quote side with nothing on it).
pub fn quote_size(value: Option<&RawValue>) -> Result<i64, Drop> {
    price_text(number_text(value)?)
}

/// A quote size given as decimal text in a JSON string: zero allowed.
pub fn quoted_quote_size(value: Option<&RawValue>) -> Result<i64, Drop> {
    price_text(quoted_text(value)?)
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
