//! A Kraken order book kept from `book` snapshots and updates, and its
//! CRC-32 checksum (docs/producers.md §2): the top ten asks low → high, then
//! the top ten bids high → low, each level's price and quantity as printed
//! at the pair's precision with the `.` removed and leading zeros stripped,
//! concatenated. Levels keep the text they arrived as, which Kraken prints
//! at the pair's precision.

use std::collections::BTreeMap;

/// One side: price (×10^8) → (price text, quantity text).
type Side = BTreeMap<i64, (String, String)>;

/// One symbol's book, `depth` levels a side.
#[derive(Debug, Clone)]
pub struct Book {
    depth: usize,
    asks: Side,
    bids: Side,
}

/// A level as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Level<'a> {
    /// Price ×10^8.
    pub price: i64,
    /// The price's text.
    pub price_text: &'a str,
    /// The quantity's text (zero removes the level).
    pub qty_text: &'a str,
    /// Whether the quantity is zero.
    pub delete: bool,
}

impl Book {
    /// An empty book of `depth` levels a side.
    pub fn new(depth: usize) -> Book {
        Book { depth, asks: Side::new(), bids: Side::new() }
    }

    /// Applies levels in order: a zero quantity deletes, any other sets;
    /// then each side is cut to `depth` (asks keep the lowest prices, bids
    /// the highest).
    pub fn apply<'a>(&mut self, asks: impl IntoIterator<Item = Level<'a>>, bids: impl IntoIterator<Item = Level<'a>>) {
        for (side, levels) in
            [(&mut self.asks, asks.into_iter().collect::<Vec<_>>()), (&mut self.bids, bids.into_iter().collect())]
        {
            for level in levels {
                if level.delete {
                    side.remove(&level.price);
                } else {
                    side.insert(level.price, (level.price_text.to_owned(), level.qty_text.to_owned()));
                }
            }
        }
        while self.asks.len() > self.depth {
            self.asks.pop_last();
        }
        while self.bids.len() > self.depth {
            self.bids.pop_first();
        }
    }

    /// The checksum of the top ten levels of each side.
    pub fn checksum(&self) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        let mut feed = |(price, qty): &(String, String)| {
            hasher.update(digits(price).as_bytes());
            hasher.update(digits(qty).as_bytes());
        };
        self.asks.values().take(10).for_each(&mut feed);
        self.bids.values().rev().take(10).for_each(&mut feed);
        hasher.finalize()
    }
}

/// `0.00123400` → `123400`; `45283.5` → `452835`.
fn digits(text: &str) -> String {
    let joined: String = text.chars().filter(|c| *c != '.').collect();
    let stripped = joined.trim_start_matches('0');
    if stripped.is_empty() { "0".to_owned() } else { stripped.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level<'a>(price: &'a str, qty: &'a str) -> Level<'a> {
        Level {
            price: myc_codec::parse_fixed8(price).unwrap_or_default(),
            price_text: price,
            qty_text: qty,
            delete: myc_codec::parse_fixed8(qty) == Ok(0),
        }
    }

    #[test]
    fn digits_drop_the_point_and_leading_zeros() {
        assert_eq!(digits("0.00123400"), "123400");
        assert_eq!(digits("45283.5"), "452835");
        assert_eq!(digits("0.00000000"), "0");
    }

    #[test]
    fn the_checksum_covers_asks_up_then_bids_down() {
        let mut book = Book::new(10);
        book.apply([level("2.0", "1.0"), level("1.5", "2.0")], [level("1.0", "3.0"), level("0.5", "4.0")]);
        let expected = crc32fast::hash(b"152020101030540");
        assert_eq!(book.checksum(), expected);
        book.apply([level("1.5", "0.0")], []);
        assert_eq!(book.checksum(), crc32fast::hash(b"20101030540"));
    }

    #[test]
    fn updates_are_cut_to_depth_keeping_the_best_levels() {
        let mut book = Book::new(2);
        book.apply(
            [level("3", "1"), level("1", "1"), level("2", "1")],
            [level("1", "1"), level("3", "1"), level("2", "1")],
        );
        assert_eq!(book.asks.keys().copied().collect::<Vec<_>>(), [100_000_000, 200_000_000]);
        assert_eq!(book.bids.keys().copied().collect::<Vec<_>>(), [200_000_000, 300_000_000]);
    }
}
