//! `myc verify files` on captures written with the capture writer: identical
//! streams, a one-byte difference, two interfaces of one file, a truncated
//! file, bad arguments.

use std::path::Path;

use codec::{Domain, Header, MessageBuilder, Source, Trade};
use verify::pcapng::Writer;

use super::myc;

fn message(sequence: u64, price: i64) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::KrakenCollector, sequence, 1_000 + sequence);
    let trade = Trade {
        asset_id: 7,
        price,
        volume: 1,
        execution_timestamp_ns: sequence,
        venue_id: 101,
        asset_type: 51,
        reserved: 0,
        side: 0,
    };
    MessageBuilder::new(header).trade(&trade).unwrap().build()
}

/// Writes `streams` (name, messages) into one capture file.
fn capture(path: &Path, streams: &[(&str, Vec<Vec<u8>>)]) {
    let mut writer = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    for (index, (name, messages)) in streams.iter().enumerate() {
        let interface = writer.interface(name).unwrap();
        for (position, bytes) in messages.iter().enumerate() {
            writer
                .packet(interface, 1_700_000_000_000_000_000 + position as u64 * 100 + index as u64 * 7, bytes)
                .unwrap();
        }
    }
    writer.finish().unwrap();
}

fn stream(n: u64) -> Vec<Vec<u8>> {
    (1..=n).map(|sequence| message(sequence, 100 + sequence as i64)).collect()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn identical_captures_verify_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/tmp/torq/market_data.sock", stream(50))]);
    capture(&candidate, &[("broker:market_data", stream(50))]);
    let output = myc(&["verify", "files", arg(&reference), arg(&candidate)], b"");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("IDENTICAL") && stdout.contains("matched 50"), "{stdout}");
}

#[test]
fn a_one_byte_difference_is_found_shown_as_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    let mut changed = stream(50);
    changed[16] = message(17, 999);
    capture(&reference, &[("relay:/tmp/torq/market_data.sock", stream(50))]);
    capture(&candidate, &[("broker:market_data", changed)]);
    let output = myc(&["verify", "files", arg(&reference), arg(&candidate), "--format", "json"], b"");
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["verdict"], "differs");
    assert_eq!((report["matched"].as_u64(), report["mismatched"].as_u64()), (Some(49), Some(1)));
    assert_eq!(report["reference"]["name"], "relay:/tmp/torq/market_data.sock");
    assert_eq!(report["examples"][0]["key"]["sequence"], 17);
    let diff = report["examples"][0]["diff"].as_str().unwrap();
    assert!(diff.contains("-        \"price\": 117,") && diff.contains("+        \"price\": 999,"), "{diff}");
}

#[test]
fn two_interfaces_of_one_file_are_compared_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pcapng");
    let mut short = stream(10);
    short.pop();
    capture(&both, &[("relay:/r.sock", stream(10)), ("broker:md", short), ("nats:myc.md", stream(3))]);
    let output = myc(
        &[
            "verify",
            "files",
            arg(&both),
            "--reference-if",
            "relay:/r.sock",
            "--candidate-if",
            "broker:md",
            "--format",
            "json",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["matched"].as_u64(), report["missing"].as_u64()), (Some(9), Some(1)));
    assert_eq!(report["examples"][0]["kind"], "missing");
    let without_names = myc(&["verify", "files", arg(&both)], b"");
    assert_eq!(without_names.status.code(), Some(2));
}

#[test]
fn a_truncated_capture_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/r.sock", stream(20))]);
    capture(&candidate, &[("broker:md", stream(20))]);
    let bytes = std::fs::read(&candidate).unwrap();
    std::fs::write(&candidate, &bytes[..bytes.len() - 10]).unwrap();
    let output = myc(&["verify", "files", arg(&reference), arg(&candidate)], b"");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("invalid pcapng at byte"), "{stderr}");
    let bad_ignore = myc(&["verify", "files", arg(&reference), arg(&candidate), "--ignore", "colour"], b"");
    assert_eq!(bad_ignore.status.code(), Some(2));
}
