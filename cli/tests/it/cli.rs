//! The command tree as a user meets it: help, global options in either
//! position, and commands not built yet failing cleanly.

use super::myc;

#[test]
fn help_lists_every_command() {
    let output = myc(&["--help"], b"");
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for command in
        ["demo", "broker", "relay", "produce", "capture", "verify", "rollout", "config", "tlv", "bench", "console"]
    {
        assert!(help.contains(command), "help lacks {command}:\n{help}");
    }
}

#[test]
fn global_options_may_stand_before_or_after_the_subcommand() {
    let before = myc(&["--format", "json", "tlv", "encode", "--hex"], b"");
    let after = myc(&["tlv", "encode", "--hex", "--format", "json", "--log-format", "json"], b"");
    assert!(before.status.success() && after.status.success());
    let bad = myc(&["tlv", "encode", "--format", "xml"], b"");
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn bench_quick_codec_reports_every_codec_scenario_as_json() {
    let output = myc(&["bench", "--quick", "--scenario", "codec", "--json"], b"");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<_> = report["scenarios"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["codec_build", "codec_parse", "codec_parse_crc"]);
    for scenario in report["scenarios"].as_array().unwrap() {
        assert_eq!(scenario["ok"], true);
        assert!(scenario["msgs_per_sec"]["median"].as_f64().unwrap() > 0.0);
    }
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let unknown = myc(&["bench", "--scenario", "warp_drive"], b"");
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn broker_serves_refuses_a_second_broker_on_its_socket_and_stops_cleanly_on_sigterm() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("b.sock");
    let listen = format!("unix:{}", socket.display());
    let mut broker = spawn_quiet(&["broker", "--listen", &listen]);
    let mut stream = connect_when_up(&socket);
    // HELLO (version 1, no name, no token) is answered by WELCOME (op 0x81).
    stream.write_all(&[9, 0, 0, 0, 0x01, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut welcome = [0u8; 5];
    stream.read_exact(&mut welcome).unwrap();
    assert_eq!(welcome[4], 0x81);

    let second = myc(&["broker", "--listen", &listen], b"");
    assert_eq!(second.status.code(), Some(2));
    let stderr = String::from_utf8(second.stderr).unwrap();
    assert!(stderr.contains(&socket.display().to_string()) && stderr.contains("in use"), "{stderr}");

    terminate(&mut broker);
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn broker_metrics_are_served_as_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("unix:{}", dir.path().join("b.sock").display());
    let mut broker = ServingMetrics::start(&["broker", "--listen", &listen, "--metrics", "127.0.0.1:0"]);
    let response = broker.scrape();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("myc_broker_connections"), "{response}");
    assert!(response.contains("# EOF"), "{response}");
    broker.terminate();
}

/// A `myc` child serving metrics, its log on a pipe read to the end by a
/// thread (so it never writes into a closed pipe).
struct ServingMetrics {
    child: std::process::Child,
    /// The address it logged `metrics listening` at.
    address: String,
    drain: Option<std::thread::JoinHandle<usize>>,
}

impl ServingMetrics {
    /// Starts `myc ARGS` (which must say `--metrics`) and waits until it
    /// logs where its metrics are served.
    fn start(args: &[&str]) -> ServingMetrics {
        use std::io::{BufRead, BufReader};

        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = lines
            .by_ref()
            .map(Result::unwrap)
            .find_map(|line| {
                line.contains("metrics listening")
                    .then(|| {
                        line.split("address=").nth(1).map(|rest| rest.split_whitespace().next().unwrap().to_owned())
                    })
                    .flatten()
            })
            .unwrap_or_else(|| panic!("myc {args:?} logs its metrics address"));
        ServingMetrics { child, address, drain: Some(std::thread::spawn(move || lines.count())) }
    }

    /// The HTTP response to `GET /metrics`, status line included.
    fn scrape(&self) -> String {
        use std::io::{Read, Write};

        let mut http = std::net::TcpStream::connect(&self.address).unwrap();
        http.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        http.read_to_string(&mut response).unwrap();
        response
    }

    /// SIGTERM, then a clean exit is asserted.
    fn terminate(&mut self) {
        terminate(&mut self.child);
        if let Some(drain) = self.drain.take() {
            drain.join().unwrap();
        }
    }
}

/// `myc ARGS` in the background, its log discarded.
fn spawn_quiet(args: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Connects to the Unix socket a child just started serves, retrying until
/// it is there (10 s at most).
fn connect_when_up(socket: &std::path::Path) -> std::os::unix::net::UnixStream {
    use std::time::{Duration, Instant};

    let started = Instant::now();
    loop {
        if let Ok(stream) = std::os::unix::net::UnixStream::connect(socket) {
            return stream;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "nothing serves {} after 10 s", socket.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends SIGTERM to `child` and asserts it exits cleanly.
fn terminate(child: &mut std::process::Child) {
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn relay_forwards_a_legacy_producers_message_and_stops_cleanly() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("md.sock");
    let mut relay = spawn_quiet(&["relay", "--domain", "market_data", "--socket", socket.to_str().unwrap()]);
    let mut consumer = connect_when_up(&socket);
    let header = myc_codec::Header::new(myc_codec::Domain::MarketData, myc_codec::Source::KrakenCollector, 1, 5);
    let message = myc_codec::MessageBuilder::new(header)
        .heartbeat(&myc_codec::Heartbeat { timestamp_ns: 5, counter: 1 })
        .unwrap()
        .build();
    let identification =
        myc_codec::Header::identification(myc_codec::Domain::MarketData, myc_codec::Source::KrakenCollector).to_bytes();
    // The consumer must be registered before the producer sends: retry until it gets the message.
    let mut received = vec![0u8; message.len()];
    consumer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut producer = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    producer.write_all(&identification).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        producer.write_all(&message).unwrap();
        if consumer.read_exact(&mut received).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "nothing relayed");
    }
    assert_eq!(received, message);

    let second = myc(&["relay", "--domain", "market_data", "--socket", socket.to_str().unwrap()], b"");
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8(second.stderr).unwrap().contains("in use"));
    let usage = myc(&["relay"], b"");
    assert_eq!(usage.status.code(), Some(2));

    terminate(&mut relay);
    assert!(!socket.exists(), "the socket file is removed on shutdown");
}

#[test]
fn broker_refuses_a_non_loopback_tcp_listener_without_a_token() {
    // The wildcard address reaches every interface: refused at start-up,
    // judged on the address actually bound, with the way out named.
    let refused = myc(&["broker", "--listen", "tcp:0.0.0.0:0", "--metrics", ""], b"");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.contains("not loopback") && stderr.contains("broker.token"), "{stderr}");
}

#[test]
fn relay_with_bridge_carries_a_legacy_producer_through_the_broker_and_serves_the_link_metrics() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};

    let dir = tempfile::tempdir().unwrap();
    let (socket, broker_socket) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
    let mut broker = spawn_quiet(&["broker", "--listen", &format!("unix:{}", broker_socket.display())]);
    // The legacy producer's source is at `broker`: its messages reach relay
    // consumers only by way of the broker and the link's downlink.
    let config = dir.path().join("myc.toml");
    std::fs::write(
        &config,
        format!(
            "[broker]\nendpoint = \"unix:{}\"\n[rollout]\nfile = \"rollout.toml\"\n\
             [services.kraken_legacy]\nsource = 2\n",
            broker_socket.display()
        ),
    )
    .unwrap();
    std::fs::write(dir.path().join("rollout.toml"), "[services.kraken_legacy]\nstage = \"broker\"\n").unwrap();
    let (config, socket_arg) = (config.to_str().unwrap(), socket.to_str().unwrap());
    let mut relay = ServingMetrics::start(&[
        "--config",
        config,
        "relay",
        "--domain",
        "market_data",
        "--bridge",
        "--socket",
        socket_arg,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let mut consumer = connect_when_up(&socket);
    consumer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut producer = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let source = myc_codec::Source::KrakenCollector;
    producer.write_all(&myc_codec::Header::identification(myc_codec::Domain::MarketData, source).to_bytes()).unwrap();
    // Until the consumer is registered and the link subscribed, a message
    // may go unseen: send until one arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut sequence = 0;
    let received = loop {
        sequence += 1;
        let header = myc_codec::Header::new(myc_codec::Domain::MarketData, source, sequence, 5);
        let message = myc_codec::MessageBuilder::new(header)
            .heartbeat(&myc_codec::Heartbeat { timestamp_ns: 5, counter: sequence })
            .unwrap()
            .build();
        producer.write_all(&message).unwrap();
        let mut received = vec![0u8; message.len()];
        if consumer.read_exact(&mut received).is_ok() {
            break received;
        }
        assert!(Instant::now() < deadline, "nothing came back down from the broker");
    };
    assert_eq!(received[6], source.as_u8(), "the legacy producer's message, unchanged");

    let response = relay.scrape();
    for series in [
        "myc_relay_link_messages_total{domain=\"market_data\",direction=\"up\"}",
        "myc_relay_link_messages_total{domain=\"market_data\",direction=\"down\"}",
        "myc_relay_link_connected{domain=\"market_data\"}",
        "myc_relay_connections",
    ] {
        assert!(response.contains(series), "{series} missing from {response}");
    }
    relay.terminate();
    terminate(&mut broker);
}

#[test]
fn broker_refuses_to_bind_over_a_regular_file_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let important = dir.path().join("important.txt");
    std::fs::write(&important, "keep me").unwrap();
    let listen = format!("unix:{}", important.display());
    let refused = myc(&["broker", "--listen", &listen, "--metrics", ""], b"");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert!(stderr.contains(&important.display().to_string()) && stderr.contains("not a socket"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&important).unwrap(), "keep me");
}

#[test]
fn config_check_warns_about_an_acl_name_anyone_can_claim() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(
        &file,
        "[acl.clients.open_feed]\npublish = [\"market_data\"]\n\n[acl.clients.bound]\npublish = [\"market_data\"]\nuids = [1001]\n",
    )
    .unwrap();
    let checked = myc(&["config", "check", &file.display().to_string()], b"");
    assert_eq!(checked.status.code(), Some(0));
    let stdout = String::from_utf8(checked.stdout).unwrap();
    let warnings: Vec<_> = stdout.lines().filter(|line| line.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stdout}");
    assert!(warnings[0].contains("acl.clients.open_feed") && warnings[0].contains("any client"), "{stdout}");
    assert!(stdout.trim_end().ends_with(": ok"), "{stdout}");
}
