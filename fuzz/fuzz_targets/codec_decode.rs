//! Fuzz target: arbitrary bytes through the Protocol V2 decoder — stream
//! framing, exact parsing, TLV walk, typed payloads and JSON rendering — must
//! never panic, and every message that parses must survive the JSON round trip.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((message, used))) = myc_codec::Message::decode(rest) {
        let json = myc_codec::to_json_string(&message);
        let again = myc_codec::message_from_json(&json).expect("rendered JSON encodes");
        assert_eq!(again, message.as_bytes(), "JSON round trip changed the bytes");
        let _ = message.verify_checksum();
        for tlv in message.tlvs() {
            let _ = myc_codec::Trade::decode(tlv.payload);
            let _ = myc_codec::Quote::decode(tlv.payload);
            let _ = myc_codec::Heartbeat::decode(tlv.payload);
        }
        rest = &rest[used..];
    }
    let _ = myc_codec::Message::parse(data);
    let _ = myc_codec::peek_message_len(data);
});
