//! Property tests: arbitrary headers and TLV lists round-trip byte for byte
//! through parse, JSON and the builders; arbitrary bytes never panic the
//! decoder.

use myc_codec::{Checksum, Domain, Header, Message, MessageBuilder, MessageWriter, Source, TlvType};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Spec {
    header: Header,
    checksum: bool,
    tlvs: Vec<(u8, bool, Vec<u8>)>,
}

fn header_strategy() -> impl Strategy<Value = Header> {
    (any::<u8>(), any::<u8>(), any::<u8>(), any::<u64>(), any::<u64>()).prop_map(
        |(domain, source, flags, sequence, timestamp_ns)| {
            let mut header = Header::new(Domain::from_u8(domain), Source::from_u8(source), sequence, timestamp_ns);
            header.flags = flags;
            header
        },
    )
}

fn tlv_strategy() -> impl Strategy<Value = (u8, bool, Vec<u8>)> {
    let short = proptest::collection::vec(any::<u8>(), 0..80);
    let long = proptest::collection::vec(any::<u8>(), 250..700);
    (0u8..255, any::<bool>(), prop_oneof![4 => short, 1 => long])
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (header_strategy(), any::<bool>(), proptest::collection::vec(tlv_strategy(), 0..6))
        .prop_map(|(header, checksum, tlvs)| Spec { header, checksum, tlvs })
}

fn build(spec: &Spec) -> Vec<u8> {
    let checksum = if spec.checksum { Checksum::Compute } else { Checksum::Zero };
    let mut builder = MessageBuilder::new(spec.header).checksum(checksum);
    for (tlv_type, extended, payload) in &spec.tlvs {
        builder = builder.tlv_form(TlvType::from_u8(*tlv_type), payload, *extended).unwrap();
    }
    builder.build()
}

proptest! {
    #[test]
    fn headers_and_tlv_lists_round_trip(spec in spec_strategy()) {
        let bytes = build(&spec);
        let message = Message::parse(&bytes).unwrap();
        let header = message.header();
        prop_assert_eq!(header.relay_domain, spec.header.relay_domain);
        prop_assert_eq!(header.source, spec.header.source);
        prop_assert_eq!((header.flags, header.sequence, header.timestamp_ns), (spec.header.flags, spec.header.sequence, spec.header.timestamp_ns));
        prop_assert_eq!(message.verify_checksum(), Ok(()));
        let parsed: Vec<_> = message.tlvs().map(|tlv| (tlv.tlv_type.as_u8(), tlv.extended, tlv.payload.to_vec())).collect();
        let expect: Vec<_> = spec.tlvs.iter().map(|(t, ext, p)| (*t, *ext || p.len() > 255, p.clone())).collect();
        prop_assert_eq!(parsed, expect);

        // The borrowed writer gives the same bytes as the owned builder.
        let mut buf = vec![0u8; bytes.len()];
        let mut writer = MessageWriter::new(&mut buf).unwrap();
        for (tlv_type, extended, payload) in &spec.tlvs {
            writer.push_tlv_form(TlvType::from_u8(*tlv_type), payload, *extended).unwrap();
        }
        let checksum = if spec.checksum { Checksum::Compute } else { Checksum::Zero };
        let len = writer.finish(&spec.header, checksum).unwrap();
        prop_assert_eq!(&buf[..len], &bytes[..]);

        // Canonical JSON goes back to the same bytes.
        let json = myc_codec::to_json_string(&message);
        prop_assert_eq!(myc_codec::message_from_json(&json).unwrap(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Message::parse(&bytes);
        let _ = Message::decode(&bytes);
        let _ = myc_codec::peek_message_len(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic_and_framing_stays_consistent(
        spec in spec_strategy(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = build(&spec);
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if let Ok(Some((message, used))) = Message::decode(&bytes) {
            prop_assert_eq!(used, message.as_bytes().len());
            let _ = myc_codec::to_json_string(&message);
        }
        if let Ok(message) = Message::parse(&bytes) {
            let json = myc_codec::to_json_string(&message);
            prop_assert_eq!(myc_codec::message_from_json(&json).unwrap(), bytes);
        }
    }

    #[test]
    fn decimal_text_matches_integer_arithmetic(units in any::<i64>()) {
        // `units` ×10^-8 written as decimal text parses back to `units`.
        let sign = if units < 0 { "-" } else { "" };
        let magnitude = units.unsigned_abs();
        let text = format!("{sign}{}.{:08}", magnitude / 100_000_000, magnitude % 100_000_000);
        prop_assert_eq!(myc_codec::parse_fixed8(&text), Ok(units));
    }
}
