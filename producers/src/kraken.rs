//! The Kraken WebSocket v2 adapter (docs/producers.md §2): `trade` items become
//! Trade messages, `ticker` items Quote messages, `book` snapshots and
//! updates are kept per symbol and checked against their checksum (a
//! mismatch discards the book and asks for a resubscribe); status,
//! heartbeats and method acknowledgements are control. v1 frames (arrays)
//! are rejected. Sans-IO: text in, messages out.

use std::borrow::Cow;
use std::collections::HashMap;

use myc_codec::{Quote, Trade};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::{Book, Level};
use crate::fields::{self, Drop};
use crate::{Adapter, Control, FeedCounters, Outbox, Stamper};

/// Books kept at most unless [`Kraken::max_books`] says otherwise.
pub const DEFAULT_MAX_BOOKS: usize = 1024;

const KRAKEN: u16 = 101;
const COIN: u8 = 51;

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<Cow<'a, str>>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(borrow, default)]
    error: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct TradeItem<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    side: Cow<'a, str>,
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

#[derive(Deserialize)]
struct TickerItem<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow)]
    bid: &'a RawValue,
    #[serde(borrow)]
    bid_qty: &'a RawValue,
    #[serde(borrow)]
    ask: &'a RawValue,
    #[serde(borrow)]
    ask_qty: &'a RawValue,
    #[serde(borrow, default)]
    timestamp: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct BookItem<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    #[serde(borrow, default)]
    bids: Vec<BookLevel<'a>>,
    #[serde(borrow, default)]
    asks: Vec<BookLevel<'a>>,
    checksum: u32,
}

#[derive(Deserialize)]
struct BookLevel<'a> {
    #[serde(borrow)]
    price: &'a RawValue,
    #[serde(borrow)]
    qty: &'a RawValue,
}

/// Kraken v2 frames → Protocol V2.
#[derive(Debug)]
pub struct Kraken {
    stamper: Stamper,
    counters: FeedCounters,
    depth: usize,
    /// Books by symbol; never more than `max_books` entries (a new symbol
    /// over the limit is dropped and counted `book_limit`).
    books: HashMap<String, Book>,
    /// The most books kept at once.
    max_books: usize,
    /// Book checksums verified so far.
    pub checksums_verified: u64,
}

impl Kraken {
    /// An adapter numbering its messages with `stamper`, keeping books
    /// `depth` levels deep.
    pub fn new(stamper: Stamper, depth: usize) -> Kraken {
        let mut counters = FeedCounters::new(&Drop::ALL);
        counters.events_ignored.insert("subscribe_failed".to_owned(), 0);
        counters.events_dropped.insert(Drop::BookLimit.name().to_owned(), 0);
        Kraken {
            stamper,
            counters,
            depth: depth.max(10),
            books: HashMap::new(),
            max_books: DEFAULT_MAX_BOOKS,
            checksums_verified: 0,
        }
    }

    /// Keeps at most `max_books` books (at least one): a feed that names a
    /// new symbol per frame must not grow the producer's memory.
    #[must_use]
    pub fn max_books(mut self, max_books: usize) -> Kraken {
        self.max_books = max_books.max(1);
        self
    }

    /// How many books are kept now.
    pub fn books_kept(&self) -> usize {
        self.books.len()
    }

    fn trade(&mut self, raw: &RawValue, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        let item: TradeItem<'_> = serde_json::from_str(raw.get()).map_err(|_| Drop::BadField)?;
        let side = match item.side.as_ref() {
            "buy" => 0,
            "sell" => 1,
            _ => return Err(Drop::BadField),
        };
        let trade = Trade {
            asset_id: fields::asset(&item.symbol)?,
            price: fields::price(Some(item.price))?,
            volume: fields::size(Some(item.qty))?,
            execution_timestamp_ns: fields::rfc3339(&item.timestamp)?,
            venue_id: KRAKEN,
            asset_type: COIN,
            reserved: 0,
            side,
        };
        self.stamper.trade(&trade, now_ns, out);
        Ok(())
    }

    fn ticker(&mut self, raw: &RawValue, received_ns: u64, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        let item: TickerItem<'_> = serde_json::from_str(raw.get()).map_err(|_| Drop::BadField)?;
        let event_ns = item.timestamp.as_deref().map(fields::rfc3339).transpose()?;
        let quote = Quote {
            asset_id: fields::asset(&item.symbol)?,
            bid_price: fields::price(Some(item.bid))?,
            bid_size: fields::quote_size(Some(item.bid_qty))?,
            ask_price: fields::price(Some(item.ask))?,
            ask_size: fields::quote_size(Some(item.ask_qty))?,
            quote_timestamp_ns: event_ns.unwrap_or(received_ns),
            venue_id: KRAKEN,
            asset_type: COIN,
            reserved: 0,
        };
        self.stamper.quote(&quote, event_ns.unwrap_or(0), now_ns, out);
        Ok(())
    }

    /// Applies one book item; a resubscribe when the book must be rebuilt.
    fn book(&mut self, raw: &RawValue, snapshot: bool) -> Option<Control> {
        let Ok(item) = serde_json::from_str::<BookItem<'_>>(raw.get()) else {
            self.counters.dropped(Drop::BadField);
            return None;
        };
        let symbol = item.symbol.into_owned();
        let (Some(asks), Some(bids)) = (levels(&item.asks), levels(&item.bids)) else {
            self.counters.dropped(Drop::BadField);
            return self.resync(symbol, "a level is not a price and a quantity");
        };
        if !self.books.contains_key(&symbol) && self.books.len() >= self.max_books {
            // No resubscribe either: its snapshot would be dropped the same way.
            self.counters.dropped(Drop::BookLimit);
            return None;
        }
        if snapshot {
            self.books.insert(symbol.clone(), Book::new(self.depth));
        }
        let Some(book) = self.books.get_mut(&symbol) else {
            return self.resync(symbol, "an update for a book without a snapshot");
        };
        book.apply(asks, bids);
        if book.checksum() != item.checksum {
            return self.resync(symbol, "checksum mismatch");
        }
        self.checksums_verified += 1;
        None
    }

    fn resync(&mut self, symbol: String, why: &str) -> Option<Control> {
        tracing::warn!(symbol = %symbol, why, "discarding the order book");
        self.books.remove(&symbol);
        self.counters.book_resyncs += 1;
        Some(Control::Resubscribe(symbol))
    }

    fn reject(&mut self, why: String) -> Result<Option<Control>, String> {
        crate::object::reject(&mut self.counters, why)
    }
}

/// The levels of one side, or `None` if any is not a price and a size.
fn levels<'a>(levels: &[BookLevel<'a>]) -> Option<Vec<Level<'a>>> {
    levels
        .iter()
        .map(|level| {
            let price = fields::price(Some(level.price)).ok()?;
            let qty = fields::quote_size(Some(level.qty)).ok()?;
            Some(Level { price, price_text: level.price.get(), qty_text: level.qty.get(), delete: qty == 0 })
        })
        .collect()
}

impl Adapter for Kraken {
    fn frame(
        &mut self,
        text: &str,
        received_ns: u64,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<Option<Control>, String> {
        self.counters.frames += 1;
        if text.trim_start().starts_with('[') {
            return self.reject("a Kraken v1 frame (an array), not v2".to_owned());
        }
        let frame: Frame<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(error) => return self.reject(format!("not a Kraken v2 object: {error}")),
        };
        if let Some(method) = &frame.method {
            self.counters.frames_control += 1;
            if frame.success == Some(false) {
                let error = frame.error.as_deref().unwrap_or("no reason given");
                tracing::warn!(method = %method, error, "Kraken refused a request");
                self.counters.ignored("subscribe_failed");
            }
            return Ok(None);
        }
        let Some(channel) = frame.channel.as_deref() else {
            return self.reject("neither a channel nor a method".to_owned());
        };
        let publishing = matches!(channel, "trade" | "ticker" | "book");
        if !publishing {
            if matches!(channel, "status" | "heartbeat" | "pong") {
                self.counters.frames_control += 1;
            } else {
                self.counters.ignored(channel);
            }
            return Ok(None);
        }
        let snapshot = match frame.kind.as_deref() {
            Some("snapshot") => true,
            Some("update") => false,
            other => return self.reject(format!("{channel} frame of unknown type {other:?}")),
        };
        let items: Vec<&RawValue> = match frame.data.map(|data| serde_json::from_str(data.get())) {
            Some(Ok(items)) => items,
            _ => return self.reject(format!("{channel} frame whose data is not an array")),
        };
        let mut control = None;
        for item in items {
            let before = out.len();
            let result = match channel {
                "trade" => self.trade(item, now_ns, out),
                "ticker" => self.ticker(item, received_ns, now_ns, out),
                _ => {
                    control = control.or(self.book(item, snapshot));
                    Ok(())
                }
            };
            if let Err(reason) = result {
                self.counters.dropped(reason);
            }
            self.counters.events_published += (out.len() - before) as u64;
        }
        Ok(control)
    }

    fn counters(&self) -> &FeedCounters {
        &self.counters
    }

    fn built(&self) -> u64 {
        self.stamper.built()
    }
}
