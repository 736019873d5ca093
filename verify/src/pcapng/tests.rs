//! The capture format: pinned bytes, round trips, three interfaces, and
//! truncation at every offset (an error with the offset, packets before it
//! kept).

use super::*;

fn sample() -> Vec<u8> {
    let mut writer = Writer::new(Vec::new()).unwrap();
    let relay = writer.interface("relay:/tmp/torq/market_data.sock").unwrap();
    let broker = writer.interface("broker:market_data").unwrap();
    let nats = writer.interface("nats:myc.market_data").unwrap();
    writer.packet(relay, 1_700_000_000_123_456_789, b"abcde").unwrap();
    writer.packet(broker, 1_700_000_000_123_456_999, b"abcde").unwrap();
    writer.packet(nats, 5, b"").unwrap();
    writer.packet(relay, 6, &[7u8; 300]).unwrap();
    writer.finish().unwrap()
}

fn read_all(bytes: &[u8]) -> (Vec<Packet>, Vec<Interface>, Option<ReadError>) {
    let mut reader = Reader::new(bytes);
    let mut packets = Vec::new();
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) => packets.push(packet),
            Ok(None) => return (packets, reader.interfaces().to_vec(), None),
            Err(error) => return (packets, reader.interfaces().to_vec(), Some(error)),
        }
    }
}

#[test]
fn the_section_and_interface_blocks_have_the_spec_bytes() {
    let mut writer = Writer::new(Vec::new()).unwrap();
    writer.interface("ab").unwrap();
    let bytes = writer.finish().unwrap();
    let expect = "0a0d0d0a 1c000000 4d3c2b1a 0100 0000 ffffffffffffffff 1c000000\
                  01000000 28000000 9300 0000 00000000 0200 0200 61620000 0900 0100 09000000 0000 0000 28000000";
    assert_eq!(hex(&bytes), expect.replace(' ', ""));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[test]
fn packets_and_interfaces_round_trip() {
    let (packets, interfaces, error) = read_all(&sample());
    assert_eq!(error, None);
    let names: Vec<_> = interfaces.iter().map(|interface| interface.name.as_str()).collect();
    assert_eq!(names, ["relay:/tmp/torq/market_data.sock", "broker:market_data", "nats:myc.market_data"]);
    assert!(
        interfaces.iter().all(|interface| interface.link_type == 147 && interface.units_per_second == 1_000_000_000)
    );
    assert_eq!(packets.len(), 4);
    assert_eq!(packets[0], Packet { interface: 0, timestamp_ns: 1_700_000_000_123_456_789, data: b"abcde".to_vec() });
    assert_eq!((packets[1].interface, packets[2].data.len(), packets[3].data.len()), (1, 0, 300));
}

#[test]
fn every_truncation_reports_its_offset_and_keeps_what_came_before() {
    let bytes = sample();
    let (all, _, _) = read_all(&bytes);
    let mut boundaries = vec![0];
    while let Some(&last) = boundaries.last().filter(|&&at| at < bytes.len()) {
        let total = u32::from_le_bytes(bytes[last + 4..last + 8].try_into().unwrap()) as usize;
        boundaries.push(last + total);
    }
    for len in 0..bytes.len() {
        let (packets, _, error) = read_all(&bytes[..len]);
        assert!(all.starts_with(&packets), "a prefix keeps the packets before the cut");
        match error {
            None => assert!(boundaries.contains(&len), "only a cut between blocks ends cleanly, not {len}"),
            Some(error) => {
                assert!(!boundaries.contains(&len), "{len} is a block boundary: {error}");
                assert!(error.offset <= len as u64, "{len}: {error}");
            }
        }
    }
}

#[test]
fn corrupt_lengths_and_magic_are_errors_with_offsets() {
    let mut bytes = sample();
    bytes[8] ^= 0xFF; // byte-order magic
    assert_eq!(read_all(&bytes).2.map(|error| error.offset), Some(0));
    let mut bytes = sample();
    let len = bytes.len();
    bytes[len - 1] ^= 0x01; // the last block's trailing length
    let (packets, _, error) = read_all(&bytes);
    assert_eq!(packets.len(), 3);
    assert!(error.unwrap().reason.contains("trailing"));
    assert!(read_all(b"not a capture file at all").2.is_some());
}
