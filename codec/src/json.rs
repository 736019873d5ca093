//! The canonical JSON rendering of a message (docs/protocol-v2.md §5) and its reverse.
//!
//! Rendering is written by hand into a `String` so that the key order is the
//! spec's and u64 values are exact integers; parsing goes through serde with
//! unknown keys refused. Names in the input (`domain`, `source_name`, `name`)
//! and the recomputed numbers (`payload_size`, `len`) are informational: the
//! wire numbers and the payload decide the bytes. This module deliberately
//! does not do I/O; `myc tlv` reads and writes the lines.

use std::fmt::Write as _;

use serde::Deserialize;

use crate::builder::{Checksum, MessageBuilder};
use crate::enums::{Domain, Source, TlvType};
use crate::error::Error;
use crate::header::{Header, MAGIC, VERSION};
use crate::message::Message;
use crate::payload::{Heartbeat, Quote, Trade};
use crate::tlv::Tlv;

/// Appends the canonical JSON object for `message` to `out` (one line, no
/// trailing newline).
pub fn render_json(message: &Message<'_>, out: &mut String) {
    let header = message.header();
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        r#"{{"header":{{"magic":{MAGIC},"relay_domain":{},"domain":"{}","version":{},"source":{},"source_name":"{}","flags":{},"sequence":{},"timestamp_ns":{},"payload_size":{},"checksum":{}}},"tlvs":["#,
        header.relay_domain.as_u8(),
        header.relay_domain.name(),
        header.version,
        header.source.as_u8(),
        header.source.name(),
        header.flags,
        header.sequence,
        header.timestamp_ns,
        header.payload_size,
        header.checksum,
    );
    for (index, tlv) in message.tlvs().enumerate() {
        if index > 0 {
            out.push(',');
        }
        render_tlv(&tlv, out);
    }
    out.push_str("]}");
}

/// The canonical JSON object for `message`.
pub fn to_json_string(message: &Message<'_>) -> String {
    let mut out = String::with_capacity(256 + 2 * message.as_bytes().len());
    render_json(message, &mut out);
    out
}

fn render_tlv(tlv: &Tlv<'_>, out: &mut String) {
    let _ = write!(
        out,
        r#"{{"type":{},"name":"{}","len":{},"extended":{}"#,
        tlv.tlv_type.as_u8(),
        tlv.tlv_type.name(),
        tlv.payload.len(),
        tlv.extended
    );
    render_fields(tlv, out);
    out.push_str(r#","hex":""#);
    out.push_str(&hex::encode(tlv.payload));
    out.push_str("\"}");
}

/// Appends `,"fields":{…}` for a typed payload whose length and padding are
/// right; nothing otherwise.
fn render_fields(tlv: &Tlv<'_>, out: &mut String) {
    let _ = match tlv.tlv_type {
        TlvType::Trade => match Trade::decode(tlv.payload) {
            Ok(t) => write!(
                out,
                r#","fields":{{"asset_id":{},"price":{},"volume":{},"execution_timestamp_ns":{},"venue_id":{},"asset_type":{},"reserved":{},"side":{}}}"#,
                t.asset_id, t.price, t.volume, t.execution_timestamp_ns, t.venue_id, t.asset_type, t.reserved, t.side
            ),
            Err(_) => Ok(()),
        },
        TlvType::Quote => match Quote::decode(tlv.payload) {
            Ok(q) => write!(
                out,
                r#","fields":{{"asset_id":{},"bid_price":{},"bid_size":{},"ask_price":{},"ask_size":{},"quote_timestamp_ns":{},"venue_id":{},"asset_type":{},"reserved":{}}}"#,
                q.asset_id,
                q.bid_price,
                q.bid_size,
                q.ask_price,
                q.ask_size,
                q.quote_timestamp_ns,
                q.venue_id,
                q.asset_type,
                q.reserved
            ),
            Err(_) => Ok(()),
        },
        TlvType::Heartbeat => match Heartbeat::decode(tlv.payload) {
            Ok(h) => write!(out, r#","fields":{{"timestamp_ns":{},"counter":{}}}"#, h.timestamp_ns, h.counter),
            Err(_) => Ok(()),
        },
        _ => Ok(()),
    };
}

/// Builds the message bytes a canonical JSON object describes.
///
/// Each TLV's payload comes from `fields` when present, else from `hex`; the
/// extended form is used when `extended` is true or the payload is longer
/// than 255 bytes. `payload_size` is recomputed; `checksum` is a number
/// (written as given) or `"auto"` (computed per docs/protocol-v2.md §3). `magic` and
/// `version` may be omitted; when given, they must be the protocol's.
///
/// # Errors
/// [`Error::Json`] naming what is wrong: bad JSON, an unknown key, a missing
/// payload, bad hex, fields given for a type without a layout; and the
/// builder's errors (type 255, a payload too long, a message too large).
pub fn message_from_json(text: &str) -> Result<Vec<u8>, Error> {
    let message: JsonMessage = serde_json::from_str(text).map_err(|error| Error::Json(error.to_string()))?;
    let header_in = &message.header;
    if let Some(magic) = header_in.magic.filter(|&magic| magic != MAGIC) {
        return Err(Error::Json(format!("magic {magic} is not {MAGIC} (0xdeadbeef)")));
    }
    let mut header = Header::new(
        Domain::from_u8(header_in.relay_domain),
        Source::from_u8(header_in.source),
        header_in.sequence,
        header_in.timestamp_ns,
    );
    header.version = header_in.version.unwrap_or(VERSION);
    header.flags = header_in.flags;
    let checksum = match header_in.checksum {
        JsonChecksum::Value(value) => Checksum::Value(value),
        JsonChecksum::Word(ref word) if word == "auto" => Checksum::Compute,
        JsonChecksum::Word(ref word) => {
            return Err(Error::Json(format!("checksum must be a number or \"auto\", not {word:?}")));
        }
    };
    let mut builder = MessageBuilder::new(header).checksum(checksum);
    for (index, tlv) in message.tlvs.iter().enumerate() {
        let payload = tlv.payload().map_err(|reason| Error::Json(format!("tlvs[{index}]: {reason}")))?;
        builder = builder.tlv_form(TlvType::from_u8(tlv.tlv_type), &payload, tlv.extended)?;
    }
    Ok(builder.build())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMessage {
    header: JsonHeader,
    tlvs: Vec<JsonTlv>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "informational keys are accepted and ignored")]
struct JsonHeader {
    magic: Option<u32>,
    relay_domain: u8,
    domain: Option<String>,
    version: Option<u8>,
    source: u8,
    source_name: Option<String>,
    #[serde(default)]
    flags: u8,
    #[serde(default)]
    sequence: u64,
    #[serde(default)]
    timestamp_ns: u64,
    payload_size: Option<u32>,
    #[serde(default = "JsonChecksum::zero")]
    checksum: JsonChecksum,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonChecksum {
    Value(u32),
    Word(String),
}

impl JsonChecksum {
    fn zero() -> JsonChecksum {
        JsonChecksum::Value(0)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "informational keys are accepted and ignored")]
struct JsonTlv {
    #[serde(rename = "type")]
    tlv_type: u8,
    name: Option<String>,
    len: Option<u64>,
    #[serde(default)]
    extended: bool,
    fields: Option<serde_json::Value>,
    hex: Option<String>,
}

impl JsonTlv {
    fn payload(&self) -> Result<Vec<u8>, String> {
        if let Some(fields) = &self.fields {
            return fields_payload(self.tlv_type, fields.clone());
        }
        match &self.hex {
            Some(hex_text) => hex::decode(hex_text).map_err(|error| format!("bad hex: {error}")),
            None => Err("neither \"fields\" nor \"hex\" given".to_owned()),
        }
    }
}

fn fields_payload(tlv_type: u8, fields: serde_json::Value) -> Result<Vec<u8>, String> {
    let bad = |error: serde_json::Error| format!("bad fields: {error}");
    match TlvType::from_u8(tlv_type) {
        TlvType::Trade => {
            let f: TradeFields = serde_json::from_value(fields).map_err(bad)?;
            let trade = Trade {
                asset_id: f.asset_id,
                price: f.price,
                volume: f.volume,
                execution_timestamp_ns: f.execution_timestamp_ns,
                venue_id: f.venue_id,
                asset_type: f.asset_type,
                reserved: f.reserved,
                side: f.side,
            };
            Ok(trade.to_bytes().to_vec())
        }
        TlvType::Quote => {
            let f: QuoteFields = serde_json::from_value(fields).map_err(bad)?;
            let quote = Quote {
                asset_id: f.asset_id,
                bid_price: f.bid_price,
                bid_size: f.bid_size,
                ask_price: f.ask_price,
                ask_size: f.ask_size,
                quote_timestamp_ns: f.quote_timestamp_ns,
                venue_id: f.venue_id,
                asset_type: f.asset_type,
                reserved: f.reserved,
            };
            Ok(quote.to_bytes().to_vec())
        }
        TlvType::Heartbeat => {
            let f: HeartbeatFields = serde_json::from_value(fields).map_err(bad)?;
            Ok(Heartbeat { timestamp_ns: f.timestamp_ns, counter: f.counter }.to_bytes().to_vec())
        }
        other => Err(format!("type {} has no field layout; give \"hex\"", other.as_u8())),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TradeFields {
    asset_id: u64,
    price: i64,
    volume: i64,
    execution_timestamp_ns: u64,
    venue_id: u16,
    asset_type: u8,
    #[serde(default)]
    reserved: u8,
    side: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuoteFields {
    asset_id: u64,
    bid_price: i64,
    bid_size: i64,
    ask_price: i64,
    ask_size: i64,
    quote_timestamp_ns: u64,
    venue_id: u16,
    asset_type: u8,
    #[serde(default)]
    reserved: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeartbeatFields {
    timestamp_ns: u64,
    counter: u64,
}
