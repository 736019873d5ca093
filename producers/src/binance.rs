//! The Binance spot adapter: raw streams (`{"e":"trade",…}`, and the
//! bookTicker's object, which has no `e`) or combined streams
//! (`{"stream":"btcusdt@trade","data":{…}}`). `trade` becomes a Trade
//! message, `bookTicker` a Quote; subscribe acknowledgements
//! (`{"result":…,"id":…}`) are control; an `error` object is logged (at
//! most once a second) and counted; other event types are ignored and
//! counted. Numbers arrive as decimal text in JSON strings and are read as
//! such. Sans-IO: text in, messages out.
//!
//! It deliberately does not guess a bookTicker's time: the event has none,
//! so the quote carries the receive time (0 in deterministic replay).

use std::borrow::Cow;

use myc_codec::{Quote, Trade};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fields::{self, Drop};
use crate::object::ObjectFeed;
use crate::{Adapter, Control, FeedCounters, Outbox, Stamper};

/// The venue id of Binance.
const BINANCE: u16 = 100;
const COIN: u8 = 51;
/// The kind a bookTicker is counted under.
const BOOK_TICKER: &str = "bookTicker";

/// One Binance frame: an envelope (combined stream, response) or an event;
/// the fields are case-sensitive (`T` trade time, `t` trade id). Every field
/// is read by the mapping that needs it, so a mistyped field drops that
/// event, not the frame.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    msg: Option<&'a RawValue>,
    #[serde(borrow, default)]
    e: Option<&'a RawValue>,
    #[serde(borrow, default)]
    s: Option<&'a RawValue>,
    #[serde(borrow, default)]
    p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    q: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "T")]
    trade_time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    m: Option<&'a RawValue>,
    #[serde(borrow, default)]
    u: Option<&'a RawValue>,
    #[serde(borrow, default)]
    b: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "B")]
    bid_size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    a: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "A")]
    ask_size: Option<&'a RawValue>,
}

/// Binance frames → Protocol V2.
#[derive(Debug)]
pub struct Binance {
    /// Stamper, counters and the log limit of error responses.
    feed: ObjectFeed,
}

impl Binance {
    /// An adapter numbering its messages with `stamper`.
    pub fn new(stamper: Stamper) -> Binance {
        Binance { feed: ObjectFeed::new("Binance", stamper) }
    }

    /// One event (the frame itself, or a combined stream's `data`): typed by
    /// `e`, or a bookTicker.
    fn event(&mut self, event: &Frame<'_>, received_ns: u64, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        let kind = match event.e {
            Some(kind) => fields::string(Some(kind))?,
            None => Cow::Borrowed(BOOK_TICKER),
        };
        match kind.as_ref() {
            "trade" => self.trade(event, now_ns, out),
            BOOK_TICKER => self.book_ticker(event, received_ns, now_ns, out),
            other => {
                self.feed.counters.ignored(other);
                Ok(())
            }
        }
    }

    fn trade(&mut self, event: &Frame<'_>, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        // `m`: the buyer is the maker, so the taker sold.
        let side = match event.m.map(RawValue::get) {
            Some("true") => 1,
            Some("false") => 0,
            _ => return Err(Drop::BadField),
        };
        let trade = Trade {
            asset_id: fields::asset(&fields::string(event.s)?)?,
            price: fields::quoted_price(event.p)?,
            volume: fields::quoted_size(event.q)?,
            execution_timestamp_ns: fields::millis(event.trade_time)?,
            venue_id: BINANCE,
            asset_type: COIN,
            reserved: 0,
            side,
        };
        self.feed.stamper.trade(&trade, now_ns, out);
        Ok(())
    }

    fn book_ticker(&mut self, event: &Frame<'_>, received_ns: u64, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        let quote = Quote {
            asset_id: fields::asset(&fields::string(event.s)?)?,
            bid_price: fields::quoted_price(event.b)?,
            bid_size: fields::quoted_quote_size(event.bid_size)?,
            ask_price: fields::quoted_price(event.a)?,
            ask_size: fields::quoted_quote_size(event.ask_size)?,
            quote_timestamp_ns: received_ns,
            venue_id: BINANCE,
            asset_type: COIN,
            reserved: 0,
        };
        self.feed.stamper.quote(&quote, 0, now_ns, out);
        Ok(())
    }

    fn error(&mut self, frame: &Frame<'_>) {
        if self.feed.server_error() {
            let error = frame.error.map_or_else(
                || fields::string(frame.msg).map(Cow::into_owned).unwrap_or_default(),
                |error| error.get().to_owned(),
            );
            tracing::warn!(error, "Binance sent an error (further ones counted, logged once a second)");
        }
    }
}

/// Only the bookTicker stream sends events without a type `e`.
fn is_book_ticker(event: &Frame<'_>) -> bool {
    event.u.is_some() && event.b.is_some() && event.a.is_some()
}

impl Adapter for Binance {
    fn frame(
        &mut self,
        text: &str,
        received_ns: u64,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<Option<Control>, String> {
        let frame: Frame<'_> = self.feed.object(text)?;
        // An error response: `{"error":{…},"id":…}`, or `{"code":…,"msg":…}`.
        if frame.error.is_some() || (frame.msg.is_some() && frame.e.is_none() && frame.stream.is_none()) {
            self.error(&frame);
            return Ok(None);
        }
        let inner;
        let event = match (frame.stream, frame.data) {
            (Some(_), Some(data)) if !data.get().starts_with('{') => {
                return self.feed.reject("a combined stream whose data is not an object".to_owned());
            }
            (Some(_), Some(data)) => match serde_json::from_str::<Frame<'_>>(data.get()) {
                Ok(parsed) => {
                    inner = parsed;
                    &inner
                }
                Err(error) => {
                    return self.feed.reject(format!("a combined stream whose data is not an object: {error}"));
                }
            },
            (Some(_), None) => return self.feed.reject("a combined stream without data".to_owned()),
            // A response to a request (subscribe, list): `{"result":…,"id":…}`.
            (None, _) if frame.id.is_some() && frame.e.is_none() => {
                self.feed.counters.frames_control += 1;
                return Ok(None);
            }
            (None, _) => &frame,
        };
        if event.e.is_none() && !is_book_ticker(event) {
            return self.feed.reject("an object that is neither an event, a combined stream nor a response".to_owned());
        }
        let before = out.len();
        let result = self.event(event, received_ns, now_ns, out);
        self.feed.counters.mapped(result, out.len() - before);
        Ok(None)
    }

    fn counters(&self) -> &FeedCounters {
        &self.feed.counters
    }

    fn built(&self) -> u64 {
        self.feed.stamper.built()
    }
}
