//! `myc verify files` on captures written with the capture writer: identical
//! streams, a one-byte difference, two interfaces of one file, a truncated
//! file, bad arguments, edges counted or trimmed, and each error an operator
//! can make in naming the streams; `myc capture` into files.

use std::path::Path;

use myc_codec::{Domain, Header, MessageBuilder, Source, Trade};
use myc_verify::pcapng::Writer;

use super::myc;

pub(super) fn message(sequence: u64, price: i64) -> Vec<u8> {
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
pub(super) fn capture(path: &Path, streams: &[(&str, Vec<Vec<u8>>)]) {
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

pub(super) fn stream(n: u64) -> Vec<Vec<u8>> {
    (1..=n).map(|sequence| message(sequence, 100 + sequence as i64)).collect()
}

pub(super) fn arg(path: &Path) -> &str {
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

/// Writes a capture of one stream of `n` trades (one message reused as a
/// template, so a million of them take no memory), with `change` applied to
/// the message of one sequence.
fn million(path: &Path, name: &str, n: u64, change: Option<(u64, usize)>) {
    let mut writer = Writer::new(std::fs::File::create(path).unwrap()).unwrap();
    let interface = writer.interface(name).unwrap();
    let mut bytes = message(1, 100);
    for sequence in 1..=n {
        bytes[8..16].copy_from_slice(&sequence.to_le_bytes());
        let mut packet = bytes.clone();
        if let Some((_, offset)) = change.filter(|(at, _)| *at == sequence) {
            packet[offset] ^= 0x01;
        }
        writer.packet(interface, 1_700_000_000_000_000_000 + sequence * 1_000, &packet).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn a_million_message_pair_with_one_byte_changed_is_found_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate, same) =
        (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"), dir.path().join("same.pcapng"));
    // Byte 50 is inside the Trade's price.
    million(&reference, "relay:/tmp/torq/market_data.sock", 1_000_000, None);
    million(&candidate, "broker:market_data", 1_000_000, Some((654_321, 50)));
    million(&same, "broker:market_data", 1_000_000, None);

    let output = myc(&["verify", "files", arg(&reference), arg(&candidate), "--format", "json"], b"");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["matched"], 999_999);
    assert_eq!(report["mismatched"], 1);
    assert_eq!((report["missing"].as_u64(), report["extra"].as_u64()), (Some(0), Some(0)));
    assert_eq!(report["examples"].as_array().unwrap().len(), 1);
    assert_eq!(report["examples"][0]["key"]["sequence"], 654_321);
    assert!(report["examples"][0]["diff"].as_str().unwrap().contains("\"price\""));

    let output = myc(&["verify", "files", arg(&reference), arg(&same)], b"");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("IDENTICAL") && stdout.contains("matched 1000000"), "{stdout}");
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

/// Starts `myc <args>` and waits until `socket` accepts connections.
pub(super) fn server(args: &[&str], socket: &Path) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{args:?} did not start");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child
}

pub(super) fn stop(mut child: std::process::Child) {
    let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// A relay and a broker running as `myc` processes, with a legacy producer
/// on the relay and a raw publisher on the broker's `market_data` topic.
struct BothPaths {
    relay_socket: std::path::PathBuf,
    broker_listen: String,
    relay: Option<std::process::Child>,
    broker: Option<std::process::Child>,
    producer: Option<std::os::unix::net::UnixStream>,
    publisher: Option<std::os::unix::net::UnixStream>,
}

impl BothPaths {
    fn start(dir: &Path) -> BothPaths {
        let (relay_socket, broker_socket) = (dir.join("md.sock"), dir.join("b.sock"));
        let relay = server(&["relay", "--domain", "market_data", "--socket", arg(&relay_socket)], &relay_socket);
        let broker_listen = format!("unix:{}", broker_socket.display());
        let broker = server(&["broker", "--listen", &broker_listen], &broker_socket);
        BothPaths {
            relay_socket,
            broker_listen,
            relay: Some(relay),
            broker: Some(broker),
            producer: None,
            publisher: None,
        }
    }

    /// Connects the producer and the publisher (after the taps, so they see all).
    fn connect(&mut self) {
        use std::io::Write;

        let mut producer = std::os::unix::net::UnixStream::connect(&self.relay_socket).unwrap();
        producer
            .write_all(&myc_codec::Header::identification(Domain::MarketData, Source::KrakenCollector).to_bytes())
            .unwrap();
        let broker_socket = self.broker_listen.trim_start_matches("unix:");
        let mut publisher = std::os::unix::net::UnixStream::connect(broker_socket).unwrap();
        publisher.write_all(&[9, 0, 0, 0, 0x01, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        (self.producer, self.publisher) = (Some(producer), Some(publisher));
    }

    /// Sends the same message on both paths.
    fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;

        self.producer.as_mut().unwrap().write_all(bytes).unwrap();
        let mut frame = u32::try_from(2 + 11 + bytes.len()).unwrap().to_le_bytes().to_vec();
        frame.extend_from_slice(&[0x02, 11]);
        frame.extend_from_slice(b"market_data");
        frame.extend_from_slice(bytes);
        self.publisher.as_mut().unwrap().write_all(&frame).unwrap();
    }
}

impl Drop for BothPaths {
    fn drop(&mut self) {
        for child in [self.relay.take(), self.broker.take()].into_iter().flatten() {
            stop(child);
        }
    }
}

#[test]
fn capture_taps_a_relay_and_a_broker_topic_into_one_file_that_verify_reads() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = BothPaths::start(dir.path());
    let out = dir.path().join("both.pcapng");
    let mut capture = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args([
            "capture",
            "--relay",
            arg(&paths.relay_socket),
            "--broker",
            &paths.broker_listen,
            "--topic",
            "market_data",
        ])
        .args(["--out", arg(&out), "--count", "10", "--duration", "20s"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    paths.connect();
    let mut sequence = 0;
    while capture.try_wait().unwrap().is_none() {
        sequence += 1;
        assert!(sequence < 400, "capture never reached its count");
        paths.send(&message(sequence, 100));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(capture.wait().unwrap().success());

    let mut reader = myc_verify::pcapng::Reader::new(std::fs::File::open(&out).unwrap());
    let mut packets = 0;
    while let Some(packet) = reader.next_packet().unwrap() {
        assert!(myc_codec::Message::parse(&packet.data).is_ok());
        packets += 1;
    }
    assert_eq!(packets, 10);
    let reference_if = format!("relay:{}", paths.relay_socket.display());
    let names: Vec<_> = reader.interfaces().iter().map(|interface| interface.name.clone()).collect();
    assert_eq!(names, [reference_if.clone(), "broker:market_data".to_owned()]);
    let verdict = myc(
        &["verify", "files", arg(&out), "--reference-if", &reference_if, "--candidate-if", "broker:market_data"],
        b"",
    );
    assert!(matches!(verdict.status.code(), Some(0 | 1)), "verify read the capture");
}

#[test]
fn capture_to_an_unwritable_path_names_it_and_exits_2() {
    let output = myc(&["capture", "--relay", "/nonexistent/md.sock", "--out", "/nonexistent/dir/out.pcapng"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("/nonexistent/dir/out.pcapng"));
}

#[test]
fn capture_onto_a_full_disk_names_the_file_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("md.sock");
    let relay = server(&["relay", "--domain", "market_data", "--socket", arg(&socket)], &socket);
    // /dev/full accepts the open and fails every write, as a full disk does.
    let output = myc(&["capture", "--relay", arg(&socket), "--out", "/dev/full", "--duration", "200ms"], b"");
    stop(relay);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8(output.stderr).unwrap().contains("/dev/full"));
}

#[test]
fn verify_live_taps_both_paths_and_matches_what_they_carried() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = BothPaths::start(dir.path());
    let live = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(["verify", "live", "--relay", arg(&paths.relay_socket), "--broker", &paths.broker_listen])
        .args(["--topic", "market_data", "--duration", "2s", "--format", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    paths.connect();
    let started = std::time::Instant::now();
    let mut sequence = 0;
    while started.elapsed() < std::time::Duration::from_millis(2500) {
        sequence += 1;
        paths.send(&message(sequence, 100));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = live.wait_with_output().unwrap();
    assert!(matches!(output.status.code(), Some(0 | 1)), "{:?}", output.status);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report["matched"].as_u64().unwrap() > 10, "{report}");
    assert_eq!(report["mismatched"], 0);
}

#[test]
fn capture_taps_a_nats_subject() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let Ok(mut server) = std::process::Command::new("nats-server")
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    else {
        return; // nats-server is not installed here; CI installs it.
    };
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "nats-server did not start");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let url = format!("nats://127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nats.pcapng");
    let mut capture = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(["capture", "--nats", &url, "--subject", "myc.market_data", "--count", "5", "--out", arg(&out)])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Publish until the capture has its five messages and exits.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = runtime.block_on(async_nats::connect(&url)).unwrap();
    let mut sequence = 0;
    let status = loop {
        if let Some(status) = capture.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "the capture never finished");
        sequence += 1;
        runtime.block_on(client.publish("myc.market_data", message(sequence, 7).into())).unwrap();
        runtime.block_on(client.flush()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success());
    let mut reader = myc_verify::pcapng::Reader::new(std::fs::File::open(&out).unwrap());
    let mut packets = 0;
    while let Some(packet) = reader.next_packet().unwrap() {
        assert!(myc_codec::Message::parse(&packet.data).is_ok());
        packets += 1;
    }
    assert_eq!((packets, reader.interfaces()[0].name.as_str()), (5, "nats:myc.market_data"));
}

fn report_of(output: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("{error}: {}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
    })
}

#[test]
fn verify_files_counts_a_lost_last_message_as_missing_and_with_trim_edges_as_edge() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/r.sock", stream(10))]);
    capture(&candidate, &[("broker:md", stream(9))]);
    let counted = myc(&["verify", "files", arg(&reference), arg(&candidate), "--format", "json"], b"");
    assert_eq!(counted.status.code(), Some(1));
    let report = report_of(&counted);
    assert_eq!((report["missing"].as_u64(), report["edges"].as_str()), (Some(1), Some("counted")));
    assert_eq!(report["edge"], serde_json::json!({"reference": 0, "candidate": 0}));
    assert_eq!(report["verdict"], "differs");

    let trimmed = myc(&["verify", "files", arg(&reference), arg(&candidate), "--trim-edges", "--format", "json"], b"");
    assert_eq!(trimmed.status.code(), Some(0));
    let report = report_of(&trimmed);
    assert_eq!((report["missing"].as_u64(), report["edges"].as_str()), (Some(0), Some("trimmed")));
    assert_eq!(report["edge"], serde_json::json!({"reference": 1, "candidate": 0}));
    assert_eq!((report["matched"].as_u64(), report["verdict"].as_str()), (Some(9), Some("identical")));
}

#[test]
fn an_interface_the_file_lacks_is_an_error_listing_the_ones_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pcapng");
    capture(&both, &[("relay:/r.sock", stream(5)), ("broker:md", stream(5))]);
    let output = myc(&["verify", "files", arg(&both), "--reference-if", "typo-a", "--candidate-if", "broker:md"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty(), "no report about nothing");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("has no interface \"typo-a\"; its interfaces: relay:/r.sock, broker:md"), "{stderr}");
}

#[test]
fn comparing_a_stream_with_itself_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let both = dir.path().join("both.pcapng");
    capture(&both, &[("relay:/r.sock", stream(5)), ("broker:md", stream(5))]);
    let same_interface = myc(
        &["verify", "files", arg(&both), "--reference-if", "relay:/r.sock", "--candidate-if", "relay:/r.sock"],
        b"",
    );
    let same_file = myc(&["verify", "files", arg(&both), arg(&both)], b"");
    let respelled = dir.path().join(".").join("both.pcapng");
    let respelled = myc(&["verify", "files", arg(&both), arg(&respelled), "--reference-if", "relay:/r.sock"], b"");
    for output in [same_interface, same_file, respelled] {
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(
            stderr.contains("the reference and the candidate are the same stream")
                && stderr.contains("comparing a stream with itself proves nothing"),
            "{stderr}"
        );
    }
}

#[test]
fn two_empty_streams_give_the_empty_verdict_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/r.sock", Vec::new())]);
    capture(&candidate, &[("broker:md", Vec::new())]);
    let output = myc(&["verify", "files", arg(&reference), arg(&candidate), "--format", "json"], b"");
    assert_eq!(output.status.code(), Some(1));
    let report = report_of(&output);
    assert_eq!((report["verdict"].as_str(), report["matched"].as_u64()), (Some("empty"), Some(0)));
    let human = myc(&["verify", "files", arg(&reference), arg(&candidate)], b"");
    assert!(String::from_utf8(human.stdout).unwrap().starts_with("verify: EMPTY"));
}

#[test]
fn the_report_names_its_files_digests_window_and_per_source_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/r.sock", stream(10))]);
    capture(&candidate, &[("broker:md", stream(10))]);
    let output = myc(&["verify", "files", arg(&reference), arg(&candidate), "--format", "json"], b"");
    assert_eq!(output.status.code(), Some(0));
    let report = report_of(&output);
    for (side, path) in [("reference", &reference), ("candidate", &candidate)] {
        assert_eq!(report[side]["file"].as_str(), Some(arg(path)));
        let digest = report[side]["file_sha256"].as_str().unwrap();
        if let Ok(sha256sum) = std::process::Command::new("sha256sum").arg(path).output() {
            assert!(String::from_utf8(sha256sum.stdout).unwrap().starts_with(digest), "{digest}");
        }
        assert_eq!(digest.len(), 64);
    }
    // Source 2 (Kraken) only; its counts sum to the totals.
    assert_eq!(
        report["per_source"],
        serde_json::json!({"2": {"matched": 10, "mismatched": 0, "missing": 0, "extra": 0}})
    );
    // Microseconds: the capture's first and last arrival, and when the report was made.
    assert_eq!(report["window"]["start"], "2023-11-14T22:13:20.000000Z");
    assert_eq!(report["window"]["end"], "2023-11-14T22:13:20.000000Z");
    let generated_at = report["generated_at"].as_str().unwrap();
    assert!(
        generated_at.len() == 27 && generated_at.as_bytes()[19] == b'.' && generated_at.ends_with('Z'),
        "{generated_at}"
    );
    assert!(report.get("filter").is_none());
    let skew = &report["skew_ns"];
    assert!(skew["p50"].as_i64() <= skew["p99"].as_i64() && skew["p99"].as_i64() <= skew["max"].as_i64(), "{skew}");
}

#[test]
fn a_source_filter_is_recorded_and_an_unknown_service_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    capture(&reference, &[("relay:/r.sock", stream(10))]);
    capture(&candidate, &[("broker:md", stream(10))]);
    let config = dir.path().join("myc.toml");
    std::fs::write(&config, "[services.kraken_adapter]\nsource = 2\n[services.unnumbered]\n").unwrap();
    let files = ["verify", "files", arg(&reference), arg(&candidate), "--format", "json", "--config", arg(&config)];
    let by_service = myc(&[&files[..], &["--service", "kraken_adapter"]].concat(), b"");
    assert_eq!(by_service.status.code(), Some(0));
    assert_eq!(report_of(&by_service)["filter"], serde_json::json!({"sources": [2]}));
    let other_source = myc(&[&files[..], &["--source", "4"]].concat(), b"");
    assert_eq!(report_of(&other_source)["verdict"], "empty", "nothing of source 4 in either stream");
    let typo = myc(&[&files[..], &["--service", "kraken_adaptr"]].concat(), b"");
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8(typo.stderr).unwrap().contains("no service \"kraken_adaptr\" in the settings"));
    let unnumbered = myc(&[&files[..], &["--service", "unnumbered"]].concat(), b"");
    assert_eq!(unnumbered.status.code(), Some(2));
    assert!(String::from_utf8(unnumbered.stderr).unwrap().contains("has no source id"));
}
