//! The Polygon.io adapter (docs/producers.md §1): every frame is a JSON array
//! of events; `T`/`Q` (stocks) and `XT`/`XQ` (crypto) become Trade and
//! Quote messages, `status` events are control, other kinds are ignored and
//! counted. Sans-IO: text in, messages out.

use std::borrow::Cow;

use myc_codec::{Quote, Trade};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fields::{self, Drop};
use crate::{Adapter, Control, FeedCounters, Outbox, Stamper};

const STOCK: u8 = 1;
const COIN: u8 = 51;

/// The event fields any mapping uses; each mapping checks its own.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow)]
    ev: Cow<'a, str>,
    #[serde(borrow, default)]
    sym: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pair: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    s: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ds: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    t: Option<&'a RawValue>,
    #[serde(borrow, default)]
    c: Option<&'a RawValue>,
    #[serde(borrow, default)]
    bp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    bs: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ap: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "as")]
    ask_size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    message: Option<Cow<'a, str>>,
}

/// Polygon frames → Protocol V2.
#[derive(Debug)]
pub struct Polygon {
    stamper: Stamper,
    counters: FeedCounters,
}

impl Polygon {
    /// An adapter numbering its messages with `stamper`.
    pub fn new(stamper: Stamper) -> Polygon {
        Polygon { stamper, counters: FeedCounters::new(&Drop::ALL) }
    }

    fn event(&mut self, event: &Event<'_>, now_ns: u64, out: &mut Outbox) -> Result<Option<Control>, Drop> {
        match event.ev.as_ref() {
            "T" => {
                let trade = Trade {
                    asset_id: fields::asset(event.sym.as_deref().ok_or(Drop::BadField)?)?,
                    price: fields::price(event.p)?,
                    volume: match (event.s, &event.ds) {
                        (Some(s), _) => fields::size(Some(s))?,
                        (None, Some(ds)) => fields::size_text(ds)?,
                        (None, None) => return Err(Drop::BadField),
                    },
                    execution_timestamp_ns: fields::millis(event.t)?,
                    venue_id: 0,
                    asset_type: STOCK,
                    reserved: 0,
                    side: 2,
                };
                self.stamper.trade(&trade, now_ns, out);
            }
            "XT" => {
                let trade = Trade {
                    asset_id: fields::asset(crypto_pair(event.pair.as_deref())?)?,
                    price: fields::price(event.p)?,
                    volume: fields::size(event.s)?,
                    execution_timestamp_ns: fields::millis(event.t)?,
                    venue_id: 0,
                    asset_type: COIN,
                    reserved: 0,
                    side: side_of_conditions(event.c),
                };
                self.stamper.trade(&trade, now_ns, out);
            }
            kind @ ("Q" | "XQ") => {
                let (symbol, asset_type) = if kind == "Q" {
                    (event.sym.as_deref().ok_or(Drop::BadField)?, STOCK)
                } else {
                    (crypto_pair(event.pair.as_deref())?, COIN)
                };
                let quote_timestamp_ns = fields::millis(event.t)?;
                let quote = Quote {
                    asset_id: fields::asset(symbol)?,
                    bid_price: fields::price(event.bp)?,
                    bid_size: fields::quote_size(event.bs)?,
                    ask_price: fields::price(event.ap)?,
                    ask_size: fields::quote_size(event.ask_size)?,
                    quote_timestamp_ns,
                    venue_id: 0,
                    asset_type,
                    reserved: 0,
                };
                self.stamper.quote(&quote, quote_timestamp_ns, now_ns, out);
            }
            "status" => return Ok(status(event)),
            other => self.counters.ignored(other),
        }
        Ok(None)
    }
}

/// A WebSocket crypto pair (`BTC-USD`); the REST form `X:BTCUSD` is an
/// error, not a symbol to guess at.
fn crypto_pair(pair: Option<&str>) -> Result<&str, Drop> {
    let pair = pair.ok_or(Drop::BadField)?;
    if pair.contains(':') || !pair.contains('-') { Err(Drop::BadSymbol) } else { Ok(pair) }
}

/// Crypto trade conditions: `[1]` sell, `[2]` buy, anything else unknown.
fn side_of_conditions(conditions: Option<&RawValue>) -> u8 {
    let parsed = conditions.and_then(|raw| serde_json::from_str::<Vec<i64>>(raw.get()).ok());
    match parsed.as_deref() {
        Some([1]) => 1,
        Some([2]) => 0,
        _ => 2,
    }
}

fn status(event: &Event<'_>) -> Option<Control> {
    let message = event.message.as_deref().unwrap_or_default().to_owned();
    match event.status.as_deref() {
        Some("auth_failed") => Some(Control::Stop(message)),
        Some("auth_timeout") => Some(Control::Reconnect(message)),
        Some("max_connections") => Some(Control::BackOff(message)),
        _ => None,
    }
}

impl Adapter for Polygon {
    fn frame(
        &mut self,
        text: &str,
        _received_ns: u64,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<Option<Control>, String> {
        self.counters.frames += 1;
        let events: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(events) => events,
            Err(error) => {
                return crate::object::reject(&mut self.counters, format!("not a JSON array of events: {error}"));
            }
        };
        let mut control = None;
        let mut only_status = !events.is_empty();
        for raw in events {
            let event = match serde_json::from_str::<Event<'_>>(raw.get()) {
                Ok(event) => event,
                Err(_) => {
                    only_status = false;
                    self.counters.dropped(Drop::BadField);
                    continue;
                }
            };
            only_status &= event.ev == "status";
            let before = out.len();
            match self.event(&event, now_ns, out) {
                Ok(signal) => control = control.or(signal),
                Err(reason) => self.counters.dropped(reason),
            }
            self.counters.events_published += (out.len() - before) as u64;
        }
        if only_status {
            self.counters.frames_control += 1;
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
