//! `myc verify live` (and `myc capture`) on streams that never pause: a
//! relay and a broker run as `myc` processes, and a feed thread dual-writes
//! Protocol V2 messages to both at its own pace (or, for one source, to the
//! relay only) for the whole test. Windows open and close while messages are
//! in flight; the report must still be `identical` on a healthy stream, and
//! must still show a loss or a repeat in the middle of the window.

use std::io::{BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use myc_codec::{Domain, Header, MessageBuilder, Source, Trade};

use super::verify::{arg, server, stop};

/// A relay and a broker (`myc` processes) with a settings file naming them.
pub(super) struct Stack {
    pub(super) dir: tempfile::TempDir,
    pub(super) relay_socket: PathBuf,
    pub(super) broker_listen: String,
    pub(super) config: PathBuf,
    children: Vec<Child>,
}

impl Stack {
    /// Starts both servers; `extra` is appended to the settings file.
    pub(super) fn start(extra: &str) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (relay_socket, broker_socket) = (dir.path().join("md.sock"), dir.path().join("b.sock"));
        let broker_listen = format!("unix:{}", broker_socket.display());
        let config = dir.path().join("myc.toml");
        // The relay waits for a consumer that is briefly behind rather than
        // dropping for it: a tap in a debug build on a loaded machine must
        // not lose what it is asked to verify.
        let settings = format!(
            "[relay]\nmarket_data = {relay:?}\n[relay_server]\nqueue_messages = 1000000\nstall_timeout = \"30s\"\n\
             [broker]\nendpoint = {broker_listen:?}\n[broker.server]\nlisten = [{broker_listen:?}]\n{extra}",
            relay = relay_socket.display().to_string(),
        );
        std::fs::write(&config, settings).unwrap();
        let relay = server(&["--config", arg(&config), "relay", "--domain", "market_data"], &relay_socket);
        let broker = server(&["--config", arg(&config), "broker"], &broker_socket);
        Stack { dir, relay_socket, broker_listen, config, children: vec![relay, broker] }
    }

    /// Keeps `child` running until the stack stops.
    pub(super) fn own(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Whether every process of the stack is still running.
    pub(super) fn all_running(&mut self) -> bool {
        self.children.iter_mut().all(|child| child.try_wait().unwrap().is_none())
    }

    /// `myc --config <settings> <args>`, in the stack's directory.
    pub(super) fn myc(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_myc"))
            .args(["--config", arg(&self.config)])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("MYC_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// `myc verify live` with `args` added, its JSON report and exit code.
    fn verify_live(&self, args: &[&str]) -> (serde_json::Value, Option<i32>) {
        let output = self.myc(&[&["verify", "live", "--format", "json"], args].concat());
        let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!("{error}: {}", String::from_utf8_lossy(&output.stderr));
        });
        (report, output.status.code())
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for child in self.children.drain(..).rev() {
            stop(child);
        }
    }
}

/// What the feed is told to do to the broker side next (a test proxy in
/// front of the broker that drops or repeats one message).
#[derive(Default)]
struct Faults {
    drop_one: AtomicBool,
    repeat_one: AtomicBool,
}

/// A feed dual-writing without pause until dropped.
struct Feed {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    faults: Arc<Faults>,
    thread: Option<JoinHandle<()>>,
}

impl Feed {
    /// Writes messages of `dual` to the relay and the broker and of
    /// `relay_only` to the relay alone, 2,000 a second per source.
    fn start(stack: &Stack, dual: Source, relay_only: Option<Source>) -> Feed {
        Feed::start_at(stack, dual, relay_only, 2_000)
    }

    /// As `start`, at `rate` messages a second per source.
    fn start_at(stack: &Stack, dual: Source, relay_only: Option<Source>, rate: u64) -> Feed {
        let mut relay = UnixStream::connect(&stack.relay_socket).unwrap();
        relay.write_all(&Header::identification(Domain::MarketData, dual).to_bytes()).unwrap();
        let mut broker = UnixStream::connect(stack.broker_listen.trim_start_matches("unix:")).unwrap();
        broker.write_all(&[9, 0, 0, 0, 0x01, 1, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        // The broker's acknowledgements, and what the relay fans out to
        // every connection (a legacy peer is a consumer too), are read and
        // dropped, so neither holds the feed back.
        for mut incoming in [broker.try_clone().unwrap(), relay.try_clone().unwrap()] {
            std::thread::spawn(move || {
                let mut sink = [0u8; 65_536];
                while matches!(incoming.read(&mut sink), Ok(n) if n > 0) {}
            });
        }
        let (running, sent, faults) =
            (Arc::new(AtomicBool::new(true)), Arc::new(AtomicU64::new(0)), Arc::new(Faults::default()));
        let (thread_running, thread_sent, thread_faults) = (running.clone(), sent.clone(), faults.clone());
        let thread = std::thread::spawn(move || {
            let mut sequence = 0u64;
            let (mut to_relay, mut to_broker) = (Vec::new(), Vec::new());
            let (dual_template, other_template) = (trade(dual), relay_only.map(trade));
            let started = Instant::now();
            while thread_running.load(Ordering::Relaxed) {
                // The producer's own pace (it never waits for a consumer).
                let due = u64::try_from(started.elapsed().as_micros()).unwrap() * rate / 1_000_000;
                if sequence >= due {
                    std::thread::sleep(Duration::from_micros(500));
                    continue;
                }
                for _ in 0..32 {
                    sequence += 1;
                    let message = numbered(&dual_template, sequence);
                    to_relay.extend_from_slice(&message);
                    let copies = if thread_faults.drop_one.swap(false, Ordering::Relaxed) {
                        0
                    } else if thread_faults.repeat_one.swap(false, Ordering::Relaxed) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..copies {
                        broker_frame(&mut to_broker, &message);
                    }
                    if let Some(other) = &other_template {
                        to_relay.extend_from_slice(&numbered(other, sequence));
                    }
                }
                if let Err(error) = relay.write_all(&to_relay).and_then(|()| broker.write_all(&to_broker)) {
                    eprintln!("the feed stopped: {error}");
                    return;
                }
                to_relay.clear();
                to_broker.clear();
                thread_sent.store(sequence, Ordering::Relaxed);
            }
        });
        Feed { running, sent, faults, thread: Some(thread) }
    }

    /// Waits until `n` more messages have been sent.
    fn wait_for(&self, n: u64) {
        let target = self.sent.load(Ordering::Relaxed) + n;
        let started = Instant::now();
        while self.sent.load(Ordering::Relaxed) < target {
            assert!(started.elapsed() < Duration::from_secs(20), "the feed stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Messages per second so far, for the record.
    fn rate(&self, since: Instant) -> f64 {
        self.sent.load(Ordering::Relaxed) as f64 / since.elapsed().as_secs_f64()
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.running.store(false, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A Trade of `source`, the template of every message the feed sends.
fn trade(source: Source) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, source, 1, 1_000);
    let trade = Trade {
        asset_id: 7,
        price: 100,
        volume: 1,
        execution_timestamp_ns: 1,
        venue_id: 101,
        asset_type: 51,
        reserved: 0,
        side: 0,
    };
    MessageBuilder::new(header).trade(&trade).unwrap().build()
}

/// The template with its header's sequence set (bytes 8–16): building each
/// message afresh would make the feed, not the paths, the bottleneck.
fn numbered(template: &[u8], sequence: u64) -> Vec<u8> {
    let mut message = template.to_vec();
    message[8..16].copy_from_slice(&sequence.to_le_bytes());
    message
}

/// A broker PUB frame on `market_data`.
fn broker_frame(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(&u32::try_from(2 + 11 + message.len()).unwrap().to_le_bytes());
    out.extend_from_slice(&[0x02, 11]);
    out.extend_from_slice(b"market_data");
    out.extend_from_slice(message);
}

fn stream_flags(stack: &Stack) -> Vec<String> {
    vec![
        "--relay".to_owned(),
        stack.relay_socket.display().to_string(),
        "--broker".to_owned(),
        stack.broker_listen.clone(),
        "--topic".to_owned(),
        "market_data".to_owned(),
    ]
}

/// The rate of the healthy-stream test: as high as a debug build of the
/// verifier keeps up with on a 2-core machine shared with parallel builds.
/// (A feed at full speed reached 300,000 msg/s on a quiet machine, but a
/// starved verifier then read a second's worth of a backlog that its two
/// taps, connected a moment apart, did not share.)
const HIGH_RATE: u64 = 20_000;

#[test]
fn a_healthy_stream_verified_in_twenty_windows_back_to_back_is_identical_every_time() {
    let stack = Stack::start("");
    let started = Instant::now();
    let feed = Feed::start_at(&stack, Source::KrakenCollector, None, HIGH_RATE);
    feed.wait_for(1_000);
    let flags = stream_flags(&stack);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut with_edges = 0;
    for run in 0..20 {
        let (report, code) = stack.verify_live(&[&flags[..], &["--duration", "1s"]].concat());
        assert_eq!((code, report["verdict"].as_str()), (Some(0), Some("identical")), "run {run}: {report}");
        assert!(report["matched"].as_u64().unwrap() > 0);
        assert_eq!(report["edges"], "trimmed");
        assert!(report["reference"].get("file").is_none(), "a live report names no file");
        if report["edge"]["reference"].as_u64().unwrap() + report["edge"]["candidate"].as_u64().unwrap() > 0 {
            with_edges += 1;
        }
    }
    eprintln!(
        "20 live windows identical at {:.0} msg/s per path ({with_edges} with edges; machine loaded)",
        feed.rate(started)
    );
    assert!(with_edges > 10, "only {with_edges} of 20 windows had edges: were messages in flight?");
}

/// Starts `myc verify live` and waits until its taps are connected.
fn verify_live_started(stack: &Stack, args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(["--config", arg(&stack.config), "verify", "live", "--format", "json"])
        .args(args)
        .env_remove("MYC_CONFIG")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("the window starts") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "verify live ended before its window");
    }
    // The rest of stderr is drained so the child never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

#[test]
fn a_message_dropped_or_repeated_in_the_middle_of_the_window_is_still_counted() {
    let stack = Stack::start("");
    let feed = Feed::start_at(&stack, Source::KrakenCollector, None, HIGH_RATE);
    let flags = stream_flags(&stack);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let live = verify_live_started(&stack, &[&flags[..], &["--duration", "2s"]].concat());
    // Both taps are connected: everything sent from here on reaches both.
    feed.wait_for(1_000);
    feed.faults.drop_one.store(true, Ordering::Relaxed);
    feed.wait_for(1_000);
    feed.faults.repeat_one.store(true, Ordering::Relaxed);
    feed.wait_for(1_000);
    let output = live.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!((report["missing"].as_u64(), report["extra"].as_u64()), (Some(1), Some(0)), "{report}");
    assert_eq!(report["duplicates"]["candidate"], 1);
    assert_eq!(report["per_source"]["2"]["missing"], 1);
    assert_eq!(report["examples"][0]["kind"], "missing");
    assert_eq!(report["verdict"], "differs");
}

const SERVICES: &str = "[services.polygon_adapter]\nsource = 4\n[services.kraken_adapter]\nsource = 2\n";

#[test]
fn verify_live_with_only_a_service_name_finds_its_streams_in_the_settings() {
    let stack = Stack::start(SERVICES);
    let _feed = Feed::start(&stack, Source::PolygonCollector, None);
    let (report, code) = stack.verify_live(&["--service", "polygon_adapter", "--duration", "2s"]);
    assert_eq!((code, report["verdict"].as_str()), (Some(0), Some("identical")), "{report}");
    assert_eq!(report["reference"]["name"], format!("relay:{}", stack.relay_socket.display()));
    assert_eq!(report["candidate"]["name"], "broker:market_data");
    assert_eq!(report["filter"], serde_json::json!({"sources": [4]}));
    let (start, end) = (report["window"]["start"].as_str().unwrap(), report["window"]["end"].as_str().unwrap());
    let window = humantime::parse_rfc3339(end).unwrap().duration_since(humantime::parse_rfc3339(start).unwrap());
    assert!(window.unwrap() >= Duration::from_secs(2), "{start} .. {end}");
}

#[test]
fn two_services_on_one_domain_are_verified_one_at_a_time() {
    let stack = Stack::start(SERVICES);
    // Polygon dual-writes; Kraken is still on the relay only.
    let _feed = Feed::start(&stack, Source::PolygonCollector, Some(Source::KrakenCollector));
    let (report, code) = stack.verify_live(&["--service", "polygon_adapter", "--duration", "1s"]);
    assert_eq!((code, report["verdict"].as_str()), (Some(0), Some("identical")), "{report}");
    assert_eq!(report["per_source"].as_object().unwrap().keys().collect::<Vec<_>>(), ["4"]);

    let (report, code) = stack.verify_live(&["--duration", "1s"]);
    assert_eq!((code, report["verdict"].as_str()), (Some(1), Some("differs")));
    assert!(report.get("filter").is_none());
    let polygon = &report["per_source"]["4"];
    assert!(polygon["matched"].as_u64().unwrap() > 0, "{report}");
    assert_eq!((&polygon["mismatched"], &polygon["missing"], &polygon["extra"]), (&0.into(), &0.into(), &0.into()));
    let kraken = &report["per_source"]["2"];
    assert_eq!((kraken["matched"].as_u64(), kraken["extra"].as_u64()), (Some(0), Some(0)));
    assert_eq!(kraken["missing"], report["missing"], "every difference is Kraken's, on the relay only");
    assert!(kraken["missing"].as_u64().unwrap() > 0);
}

/// `myc produce --feed synthetic` for `service`, following the rollout plan.
fn producer(stack: &Stack, service: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(["--config", arg(&stack.config), "produce", "--feed", "synthetic", "--service", service])
        .args(["--rate", "2000"])
        .current_dir(stack.dir.path())
        .env_remove("MYC_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn succeeded(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    stderr
}

#[test]
fn the_readme_walk_through_passes_with_two_producers_that_never_pause() {
    let gate = "[gate]\nmin_messages = 1000\nmin_duration = \"1s\"\n";
    let mut stack = Stack::start(&format!("{SERVICES}{gate}"));
    for service in ["polygon_adapter", "kraken_adapter"] {
        let child = producer(&stack, service);
        stack.own(child);
    }
    let report = stack.dir.path().join("report.json");
    let verify_live = |stack: &Stack| {
        let output =
            stack.myc(&["verify", "live", "--service", "polygon_adapter", "--duration", "2s", "--format", "json"]);
        succeeded(&output);
        std::fs::write(&report, &output.stdout).unwrap();
        let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert!(verdict["matched"].as_u64().unwrap() >= 1000, "{verdict}");
    };

    succeeded(&stack.myc(&["rollout", "set", "polygon_adapter", "dual_relay_primary", "--reason", "start"]));
    verify_live(&stack);
    succeeded(&stack.myc(&["rollout", "advance", "polygon_adapter", "--evidence", arg(&report), "--reason", "one"]));
    verify_live(&stack);
    succeeded(&stack.myc(&["rollout", "advance", "polygon_adapter", "--evidence", arg(&report), "--reason", "two"]));
    succeeded(&stack.myc(&["rollout", "rollback", "polygon_adapter", "--reason", "drill"]));

    let status = stack.myc(&["rollout", "status", "--format", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["services"]["polygon_adapter"]["stage"], "dual_broker_primary");
    let history = stack.myc(&["rollout", "history", "--format", "json"]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let actions: Vec<_> = history.as_array().unwrap().iter().map(|entry| entry["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["set", "advance", "advance", "rollback"]);
    assert!(history.as_array().unwrap().iter().all(|entry| entry["forced"] == false), "{history}");
    assert!(stack.all_running(), "both producers (and the servers) ran the whole time");
}

#[test]
fn on_a_terminal_verify_live_shows_its_progress_and_the_json_stays_the_same() {
    let stack = Stack::start("");
    let _feed = Feed::start(&stack, Source::KrakenCollector, None);
    let command = format!(
        "{} --config {} verify live --relay {} --broker {} --topic market_data --duration 1500ms --format json",
        env!("CARGO_BIN_EXE_myc"),
        stack.config.display(),
        stack.relay_socket.display(),
        stack.broker_listen
    );
    // `script` gives the command a terminal (util-linux; skipped where absent).
    let Ok(output) = Command::new("script").args(["-qec", &command, "/dev/null"]).env_remove("MYC_CONFIG").output()
    else {
        eprintln!("script(1) is not installed: progress on a terminal not checked");
        return;
    };
    let text = String::from_utf8_lossy(&output.stdout).replace('\r', "\n");
    assert!(text.contains("verify live [") && text.contains("elapsed") && text.contains(" left "), "{text}");
    assert!(text.contains("broker:market_data "), "running counts per stream: {text}");
    let json = text.lines().find(|line| line.contains("\"generated_at\"")).unwrap();
    let json = &json[json.find('{').unwrap()..];
    let report: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(report["verdict"], "identical", "{report}");
}

#[test]
fn a_capture_of_a_running_stream_settles_and_verifies_identical_with_its_edges_trimmed() {
    let stack = Stack::start("");
    let _feed = Feed::start_at(&stack, Source::KrakenCollector, None, HIGH_RATE);
    let out = stack.dir.path().join("running.pcapng");
    let captured = stack.myc(&[
        "capture",
        "--relay",
        arg(&stack.relay_socket),
        "--broker",
        &stack.broker_listen,
        "--topic",
        "market_data",
        "--duration",
        "1s",
        "--settle",
        "500ms",
        "--out",
        arg(&out),
    ]);
    succeeded(&captured);
    let relay_if = format!("relay:{}", stack.relay_socket.display());
    let verified = stack.myc(&[
        "verify",
        "files",
        arg(&out),
        "--reference-if",
        &relay_if,
        "--candidate-if",
        "broker:market_data",
        "--trim-edges",
        "--format",
        "json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!((verified.status.code(), report["verdict"].as_str()), (Some(0), Some("identical")), "{report}");
    assert!(report["matched"].as_u64().unwrap() > 1_000, "{report}");
    assert_eq!(report["reference"]["file"].as_str(), Some(arg(&out)));
}
