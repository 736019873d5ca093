//! The Coinbase Exchange adapter (`matches` and `ticker` channels): each
//! frame is one JSON object with a `type`. `match` and `last_match` become
//! Trade messages, `ticker` a Quote; `subscriptions` and `heartbeat` are
//! control; `error` is logged (at most once a second) and counted; other
//! types are ignored and counted. Numbers arrive as decimal text in JSON
//! strings and are read as such. Sans-IO: text in, messages out.
//!
//! It deliberately does not act on `error`: the server closes the
//! connection when an error is fatal, and the driver reconnects then.

use std::borrow::Cow;

use myc_codec::{Quote, Trade};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fields::{self, Drop};
use crate::object::ObjectFeed;
use crate::{Adapter, Control, FeedCounters, Outbox, Stamper};

/// The venue id of Coinbase.
const COINBASE: u16 = 102;
const COIN: u8 = 51;

/// One Coinbase message; every field but `type` is read by the mapping
/// that needs it, so a mistyped field drops that event, not the frame.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    product_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    price: Option<&'a RawValue>,
    #[serde(borrow, default)]
    size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    side: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_bid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_bid_size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_ask: Option<&'a RawValue>,
    #[serde(borrow, default)]
    best_ask_size: Option<&'a RawValue>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reason: Option<&'a RawValue>,
}

/// Coinbase frames → Protocol V2.
#[derive(Debug)]
pub struct Coinbase {
    /// Stamper, counters and the log limit of server errors.
    feed: ObjectFeed,
}

impl Coinbase {
    /// An adapter numbering its messages with `stamper`.
    pub fn new(stamper: Stamper) -> Coinbase {
        Coinbase { feed: ObjectFeed::new("Coinbase", stamper) }
    }

    fn trade(&mut self, event: &Event<'_>, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        // The side as sent (the maker's side), as the legacy collector did.
        let side = match fields::string(event.side)?.as_ref() {
            "buy" => 0,
            "sell" => 1,
            _ => return Err(Drop::BadField),
        };
        let trade = Trade {
            asset_id: fields::asset(&fields::string(event.product_id)?)?,
            price: fields::quoted_price(event.price)?,
            volume: fields::quoted_size(event.size)?,
            execution_timestamp_ns: fields::rfc3339(&fields::string(event.time)?)?,
            venue_id: COINBASE,
            asset_type: COIN,
            reserved: 0,
            side,
        };
        self.feed.stamper.trade(&trade, now_ns, out);
        Ok(())
    }

    fn ticker(&mut self, event: &Event<'_>, received_ns: u64, now_ns: u64, out: &mut Outbox) -> Result<(), Drop> {
        // The first ticker after a subscribe may carry no `time`.
        let event_ns = event.time.map(|time| fields::rfc3339(&fields::string(Some(time))?)).transpose()?;
        let quote = Quote {
            asset_id: fields::asset(&fields::string(event.product_id)?)?,
            bid_price: fields::quoted_price(event.best_bid)?,
            bid_size: fields::quoted_quote_size(event.best_bid_size)?,
            ask_price: fields::quoted_price(event.best_ask)?,
            ask_size: fields::quoted_quote_size(event.best_ask_size)?,
            quote_timestamp_ns: event_ns.unwrap_or(received_ns),
            venue_id: COINBASE,
            asset_type: COIN,
            reserved: 0,
        };
        self.feed.stamper.quote(&quote, event_ns.unwrap_or(0), now_ns, out);
        Ok(())
    }

    fn error(&mut self, event: &Event<'_>) {
        if self.feed.server_error() {
            let text = |value| fields::string(value).map(Cow::into_owned).unwrap_or_default();
            let (message, reason) = (text(event.message), text(event.reason));
            tracing::warn!(message, reason, "Coinbase sent an error (further ones counted, logged once a second)");
        }
    }
}

impl Adapter for Coinbase {
    fn frame(
        &mut self,
        text: &str,
        received_ns: u64,
        now_ns: u64,
        out: &mut Outbox,
    ) -> Result<Option<Control>, String> {
        let event: Event<'_> = self.feed.object(text)?;
        let before = out.len();
        let result = match event.kind.as_ref() {
            "match" | "last_match" => self.trade(&event, now_ns, out),
            "ticker" => self.ticker(&event, received_ns, now_ns, out),
            "subscriptions" | "heartbeat" => {
                self.feed.counters.frames_control += 1;
                Ok(())
            }
            "error" => {
                self.error(&event);
                Ok(())
            }
            other => {
                self.feed.counters.ignored(other);
                Ok(())
            }
        };
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
