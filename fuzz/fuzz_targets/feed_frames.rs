//! Fuzz target: arbitrary text as feed frames — both adapters must never
//! panic, and every message they build must be a valid Protocol V2 message.

#![no_main]

use libfuzzer_sys::fuzz_target;
use myc_producers::{Adapter, Kraken, Outbox, Polygon, Stamper};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut polygon = Polygon::new(Stamper::new(myc_codec::Source::PolygonCollector, true));
    let mut kraken = Kraken::new(Stamper::new(myc_codec::Source::KrakenCollector, true), 10);
    let mut out = Outbox::default();
    for line in text.lines() {
        let _ = polygon.frame(line, 0, 0, &mut out);
        let _ = kraken.frame(line, 0, 0, &mut out);
    }
    for message in out.messages() {
        myc_codec::Message::parse(message).expect("adapters build valid messages");
    }
});
