//! Data-driven checks of the golden vectors: `data/ok/*.hex` must parse,
//! render to the `.json` beside it, re-encode from that JSON to the same
//! bytes and reject every strict prefix as truncated; `data/err/*.hex` must
//! fail with the error named in its `# error:` line.

use std::fs;
use std::path::{Path, PathBuf};

use myc_codec::{Error, Message};

fn data_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(kind)
}

/// The `.hex` files of a folder, sorted, with their bytes and comment lines.
fn vectors(kind: &str) -> Vec<(String, Vec<u8>, Vec<String>)> {
    let mut paths: Vec<_> = fs::read_dir(data_dir(kind))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "hex"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no vectors in {kind}");
    paths
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).unwrap();
            let (comments, hex_lines): (Vec<&str>, Vec<&str>) = text.lines().partition(|line| line.starts_with('#'));
            let bytes = hex::decode(hex_lines.concat().trim()).unwrap();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, bytes, comments.into_iter().map(str::to_owned).collect())
        })
        .collect()
}

#[test]
fn every_good_vector_renders_to_its_golden_json() {
    for (name, bytes, _) in vectors("ok") {
        let message = Message::parse(&bytes).unwrap_or_else(|error| panic!("{name}: {error}"));
        let expect = fs::read_to_string(data_dir("ok").join(format!("{name}.json"))).unwrap();
        assert_eq!(myc_codec::to_json_string(&message), expect.trim_end(), "{name}");
    }
}

#[test]
fn json_of_every_good_vector_encodes_back_to_the_same_bytes() {
    for (name, bytes, _) in vectors("ok") {
        let json = fs::read_to_string(data_dir("ok").join(format!("{name}.json"))).unwrap();
        assert_eq!(myc_codec::message_from_json(&json), Ok(bytes), "{name}");
    }
}

#[test]
fn every_strict_prefix_of_a_good_vector_is_truncated() {
    for (name, bytes, _) in vectors("ok") {
        for len in 0..bytes.len() {
            match Message::parse(&bytes[..len]) {
                Err(Error::Truncated { offset, need }) => {
                    assert_eq!(offset, len, "{name}[..{len}]");
                    assert!(need > 0 && len + need <= bytes.len(), "{name}[..{len}]: need {need}");
                }
                other => panic!("{name}[..{len}]: expected truncation, got {other:?}"),
            }
            assert_eq!(Message::decode(&bytes[..len]), Ok(None), "{name}[..{len}] is incomplete");
        }
        let (message, used) = Message::decode(&bytes).unwrap().unwrap();
        assert_eq!((message.as_bytes(), used), (&bytes[..], bytes.len()), "{name}");
    }
}

#[test]
fn checksums_of_good_vectors_verify() {
    for (name, bytes, _) in vectors("ok") {
        let message = Message::parse(&bytes).unwrap();
        assert_eq!(message.verify_checksum(), Ok(()), "{name}");
        if name.ends_with("checksum") {
            assert_ne!(message.header().checksum, 0, "{name} carries a checksum");
            let mut corrupt = bytes.clone();
            *corrupt.last_mut().unwrap() ^= 1;
            let corrupt = Message::parse(&corrupt).unwrap();
            assert!(matches!(corrupt.verify_checksum(), Err(Error::BadChecksum { .. })), "{name}");
        }
    }
}

#[test]
fn every_bad_vector_fails_with_its_named_error() {
    for (name, bytes, comments) in vectors("err") {
        let expect = comments
            .iter()
            .find_map(|line| line.strip_prefix("# error: "))
            .unwrap_or_else(|| panic!("{name} has no `# error:` line"));
        match Message::parse(&bytes) {
            Err(error) => assert_eq!(error.to_string(), expect, "{name}"),
            Ok(_) => panic!("{name} parsed"),
        }
    }
}

#[test]
fn concatenated_vectors_frame_one_by_one_from_a_stream() {
    let good: Vec<_> = vectors("ok").into_iter().map(|(_, bytes, _)| bytes).collect();
    let stream = good.concat();
    let mut offset = 0;
    for expect in &good {
        let (message, used) = Message::decode(&stream[offset..]).unwrap().unwrap();
        assert_eq!(message.as_bytes(), &expect[..]);
        offset += used;
    }
    assert_eq!(offset, stream.len());
    assert_eq!(myc_codec::peek_message_len(&stream), Some(good[0].len()));
    assert_eq!(myc_codec::peek_message_len(&stream[..27]), None);
}

#[test]
fn the_builder_reproduces_the_hand_written_trade_vector() {
    let (_, expect, _) = vectors("ok").into_iter().find(|(name, _, _)| name == "trade").unwrap();
    let trade = myc_codec::Trade {
        asset_id: myc_codec::asset_id("BTC/USD").unwrap(),
        price: myc_codec::parse_fixed8("72930.1").unwrap(),
        volume: myc_codec::parse_fixed8("0.07509315").unwrap(),
        execution_timestamp_ns: 1_710_426_505_066_587_000,
        venue_id: 101,
        asset_type: 51,
        reserved: 0,
        side: 1,
    };
    let header = myc_codec::Header::new(
        myc_codec::Domain::MarketData,
        myc_codec::Source::KrakenCollector,
        7,
        1_710_426_537_049_841_000,
    );
    let mut buf = [0u8; 256];
    let mut writer = myc_codec::MessageWriter::new(&mut buf).unwrap();
    writer.push_trade(&trade).unwrap();
    let len = writer.finish(&header, myc_codec::Checksum::Zero).unwrap();
    assert_eq!(&buf[..len], &expect[..]);
    let owned = myc_codec::MessageBuilder::new(header).trade(&trade).unwrap().build();
    assert_eq!(owned, expect);
}

#[test]
fn json_encode_computes_auto_checksums_and_rejects_bad_input() {
    let (_, expect, _) = vectors("ok").into_iter().find(|(name, _, _)| name == "trade_checksum").unwrap();
    let json = fs::read_to_string(data_dir("ok").join("trade_checksum.json")).unwrap();
    let auto = json.replace(
        &format!("\"checksum\":{}", Message::parse(&expect).unwrap().header().checksum),
        "\"checksum\":\"auto\"",
    );
    assert_ne!(auto, json);
    assert_eq!(myc_codec::message_from_json(&auto), Ok(expect));

    let check = |json: &str, needle: &str| match myc_codec::message_from_json(json) {
        Err(Error::Json(message)) => assert!(message.contains(needle), "{message:?} lacks {needle:?}"),
        other => panic!("{json}: {other:?}"),
    };
    check(r#"{"header":{"relay_domain":1,"source":2},"tlvs":[{"type":9}]}"#, "neither");
    check(r#"{"header":{"relay_domain":1,"source":2},"tlvs":[{"type":9,"hex":"zz"}]}"#, "bad hex");
    check(r#"{"header":{"relay_domain":1,"source":2,"colour":1},"tlvs":[]}"#, "colour");
    check(r#"{"header":{"relay_domain":1,"source":2},"tlvs":[{"type":9,"fields":{}}]}"#, "no field layout");
    check(r#"{"header":{"relay_domain":1,"source":2,"checksum":"maybe"},"tlvs":[]}"#, "auto");
    check(r#"{"header":{"relay_domain":1,"source":2,"magic":1},"tlvs":[]}"#, "magic");
    assert_eq!(
        myc_codec::message_from_json(r#"{"header":{"relay_domain":1,"source":2},"tlvs":[{"type":255,"hex":""}]}"#),
        Err(Error::ReservedTlvType { offset: 0 })
    );
}
