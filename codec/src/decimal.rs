//! Exact decimal text → fixed point ×10^8 (docs/protocol-v2.md §4.4).
//!
//! Feed prices and sizes arrive as decimal text (`72930.1`, `0.10000000`,
//! `1.5e-3`). Going through `f64` would turn `72930.1` into
//! `7293009999999.999…`; this module works on the digits instead, so the
//! result is exact, and rounds digits beyond the eighth decimal half away
//! from zero. It deliberately does not judge whether a value makes sense
//! (negative sizes, zero prices): the adapters decide that per field.

use crate::error::Error;

const SCALE_DIGITS: i64 = 8;
/// Exponents are clamped to this magnitude: far beyond any i64 value, small
/// enough that arithmetic on them cannot overflow.
const EXPONENT_CLAMP: i64 = 1_000_000;

/// Parses decimal text (`[+-]digits[.digits][(e|E)[+-]digits]`) into
/// `round(value × 10^8)` as an i64, exactly.
///
/// # Errors
/// [`Error::InvalidDecimal`] for malformed text, `NaN` and infinities, and
/// values whose fixed-point form does not fit in an i64.
///
/// ```
/// assert_eq!(myc_codec::parse_fixed8("72930.1"), Ok(7_293_010_000_000));
/// assert_eq!(myc_codec::parse_fixed8("0.123456785"), Ok(12_345_679));
/// assert_eq!(myc_codec::parse_fixed8("-1.5e-3"), Ok(-150_000));
/// ```
pub fn parse_fixed8(text: &str) -> Result<i64, Error> {
    let invalid = |reason| Error::InvalidDecimal { text: Error::excerpt(text), reason };
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if ["nan", "inf", "infinity"].contains(&unsigned) {
        return Err(invalid("not a finite number"));
    }
    let Some(parts) = split_decimal(text) else {
        return Err(invalid("malformed number"));
    };
    let fraction_len = i64::try_from(parts.fraction.len()).unwrap_or(EXPONENT_CLAMP);
    let shift = parts.exponent - fraction_len + SCALE_DIGITS;
    let magnitude =
        scaled_magnitude(parts.integer, parts.fraction, shift).ok_or_else(|| invalid("overflows i64 at 10^8 scale"))?;
    let signed = if parts.negative { -magnitude } else { magnitude };
    i64::try_from(signed).map_err(|_| invalid("overflows i64 at 10^8 scale"))
}

/// The pieces of a decimal number's text.
struct DecimalParts<'a> {
    negative: bool,
    /// ASCII digits before the point (at least one).
    integer: &'a [u8],
    /// ASCII digits after the point (none when there is no point).
    fraction: &'a [u8],
    /// The exponent, clamped to ±`EXPONENT_CLAMP`.
    exponent: i64,
}

fn split_decimal(text: &str) -> Option<DecimalParts<'_>> {
    let bytes = text.as_bytes();
    let (negative, rest) = match bytes.first()? {
        b'-' => (true, &bytes[1..]),
        b'+' => (false, &bytes[1..]),
        _ => (false, bytes),
    };
    let (mantissa, exponent_text) = match rest.iter().position(|&byte| byte == b'e' || byte == b'E') {
        Some(index) => (&rest[..index], Some(&rest[index + 1..])),
        None => (rest, None),
    };
    let (integer, fraction) = match mantissa.iter().position(|&byte| byte == b'.') {
        Some(index) => (&mantissa[..index], &mantissa[index + 1..]),
        None => (mantissa, &mantissa[mantissa.len()..]),
    };
    let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
    let has_point = integer.len() != mantissa.len();
    if integer.is_empty() || !all_digits(integer) || !all_digits(fraction) || (has_point && fraction.is_empty()) {
        return None;
    }
    let exponent = match exponent_text {
        None => 0,
        Some(exponent_text) => parse_exponent(exponent_text)?,
    };
    Some(DecimalParts { negative, integer, fraction, exponent })
}

fn parse_exponent(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits
        .iter()
        .try_fold(0i64, |acc, &digit| acc.checked_mul(10)?.checked_add(i64::from(digit - b'0')))
        .map_or(EXPONENT_CLAMP, |value| value.min(EXPONENT_CLAMP));
    Some(if negative { -magnitude } else { magnitude })
}

/// `round(D × 10^shift)` half away from zero, where `D` is the integer
/// spelled by `integer` followed by `fraction`; `None` when it exceeds what an
/// i64 can hold in magnitude (2^63).
fn scaled_magnitude(integer: &[u8], fraction: &[u8], shift: i64) -> Option<i128> {
    const LIMIT: i128 = 1 << 63;
    let digits = integer.iter().chain(fraction).map(|&byte| i128::from(byte - b'0'));
    let n_digits = i64::try_from(integer.len() + fraction.len()).ok()?;
    // Digits kept before the rounding position; the rest are dropped.
    let kept = if shift >= 0 { n_digits } else { n_digits + shift };
    let mut magnitude: i128 = 0;
    let mut round_up = false;
    for (index, digit) in (0i64..).zip(digits) {
        if index < kept {
            magnitude = magnitude * 10 + digit;
            if magnitude > LIMIT {
                return None;
            }
        } else {
            round_up = index == kept && digit >= 5;
            if index >= kept {
                break;
            }
        }
    }
    if round_up {
        magnitude += 1;
    }
    if shift > 0 && magnitude != 0 {
        for _ in 0..shift {
            magnitude *= 10;
            if magnitude > LIMIT {
                return None;
            }
        }
    }
    Some(magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: Option<i64>) {
        assert_eq!(parse_fixed8(text).ok(), expect, "{text}");
    }

    #[test]
    fn exact_values_from_decimal_text() {
        check("72930.1", Some(7_293_010_000_000));
        check("0.10000000", Some(10_000_000));
        check("0", Some(0));
        check("-0", Some(0));
        check("1", Some(100_000_000));
        check("+2.5", Some(250_000_000));
        check("0.00000001", Some(1));
        check("1e-8", Some(1));
        check("1.5E3", Some(150_000_000_000));
        check("75.09315e-6", Some(7509));
        check("007.50", Some(750_000_000));
        check("92233720368.54775807", Some(i64::MAX));
        check("-92233720368.54775808", Some(i64::MIN));
    }

    #[test]
    fn digits_beyond_the_eighth_decimal_round_half_away_from_zero() {
        check("0.123456785", Some(12_345_679));
        check("0.123456784999", Some(12_345_678));
        check("-0.123456785", Some(-12_345_679));
        check("0.000000005", Some(1));
        check("0.000000004", Some(0));
        check("0.0000000005", Some(0));
        check("1e-400", Some(0));
        check("0.99999999999", Some(100_000_000));
    }

    #[test]
    fn overflow_nan_infinity_and_malformed_text_are_refused() {
        for text in [
            "92233720368.54775808",
            "-92233720368.54775809",
            "1e400",
            "1e11",
            "NaN",
            "nan",
            "-inf",
            "Infinity",
            "",
            "-",
            ".5",
            "1.",
            "1.2.3",
            "1e",
            "1e+",
            "0x10",
            "1,5",
            " 1",
            "1 ",
            "١",
        ] {
            assert!(parse_fixed8(text).is_err(), "{text:?} should be refused");
        }
        assert!(matches!(
            parse_fixed8("1e400"),
            Err(Error::InvalidDecimal { reason: "overflows i64 at 10^8 scale", .. })
        ));
        assert!(matches!(parse_fixed8("NaN"), Err(Error::InvalidDecimal { reason: "not a finite number", .. })));
    }

    #[test]
    fn many_zero_digits_do_not_overflow() {
        check(&format!("0.{}1", "0".repeat(200)), Some(0));
        check(&format!("{}1", "0".repeat(200)), Some(100_000_000));
        check(&format!("1{}e-200", "0".repeat(200)), Some(100_000_000));
        check("0e999999999999999999999", Some(0));
    }
}
