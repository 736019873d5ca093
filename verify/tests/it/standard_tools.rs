//! Captures open in the standard tools: `capinfos` (Wireshark's) reads the
//! file and counts the packets. Runs where `capinfos` is installed, and says
//! so where it is not.

use std::process::Command;

use myc_verify::pcapng::Writer;

#[test]
fn capinfos_reads_a_capture_and_counts_its_packets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two_streams.pcapng");
    let mut writer = Writer::new(std::fs::File::create(&path).unwrap()).unwrap();
    let relay = writer.interface("relay:/tmp/torq/market_data.sock").unwrap();
    let broker = writer.interface("broker:market_data").unwrap();
    for sequence in 0..25u64 {
        writer.packet(relay, 1_700_000_000_000_000_000 + sequence, &sequence.to_le_bytes()).unwrap();
        writer.packet(broker, 1_700_000_000_000_000_500 + sequence, &sequence.to_le_bytes()).unwrap();
    }
    writer.finish().unwrap();
    let output = match Command::new("capinfos").args(["-c", "-M"]).arg(&path).output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("capinfos is not installed (apt-get install tshark); the standard-tool check did not run");
            return;
        }
        Err(error) => panic!("capinfos: {error}"),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "capinfos failed: {text} {}", String::from_utf8_lossy(&output.stderr));
    assert!(text.contains("Number of packets:") && text.contains("50"), "{text}");
}
