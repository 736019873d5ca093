//! `myc produce` with the adapters: a deterministic replay is reproducible
//! byte for byte, a live WebSocket feed (served here, in-process, from the
//! same sample) gives exactly the replay's messages, and a live
//! `auth_failed` stops the producer with the server's message.

use std::path::{Path, PathBuf};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::{myc, workspace};

fn sample(name: &str) -> PathBuf {
    workspace().join("producers/samples").join(name)
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Serves `frames` to every WebSocket client on a loopback port, then
/// keeps the connection open; returns the `ws://` URL.
fn serve(frames: Vec<String>) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        runtime.block_on(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let frames = frames.clone();
                tokio::spawn(async move {
                    let mut socket = tokio_tungstenite::accept_async(stream).await.unwrap();
                    for frame in frames {
                        if socket.send(Message::text(frame)).await.is_err() {
                            return;
                        }
                    }
                    // Keep reading (subscribe messages) until the client leaves.
                    while let Some(Ok(_)) = socket.next().await {}
                });
            }
        });
    });
    url
}

#[test]
fn a_live_feed_gives_exactly_the_messages_of_its_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (replayed, live) = (dir.path().join("replay.pcapng"), dir.path().join("live.pcapng"));
    let text = std::fs::read_to_string(sample("kraken.jsonl")).unwrap();
    let frames: Vec<String> = text.lines().map(str::to_owned).collect();
    let replay = myc(
        &[
            "produce",
            "--feed",
            "kraken",
            "--input",
            arg(&sample("kraken.jsonl")),
            "--deterministic",
            "--out",
            arg(&replayed),
        ],
        b"",
    );
    assert_eq!(replay.status.code(), Some(0), "{}", String::from_utf8_lossy(&replay.stderr));
    let url = serve(frames);
    let output = myc(
        &[
            "produce",
            "--feed",
            "kraken",
            "--input",
            &url,
            "--deterministic",
            "--count",
            "7",
            "--out",
            arg(&live),
            "--summary-json",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(std::fs::read(&replayed).unwrap(), std::fs::read(&live).unwrap());
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["events_published"], 7);
}

#[test]
fn a_live_auth_failure_stops_the_producer_with_the_servers_message() {
    let dir = tempfile::tempdir().unwrap();
    let url = serve(vec![
        r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#.to_owned(),
        r#"[{"ev":"status","status":"auth_failed","message":"authentication failed"}]"#.to_owned(),
    ]);
    let out = dir.path().join("none.pcapng");
    let output = myc(&["produce", "--feed", "polygon", "--input", &url, "--out", arg(&out)], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("authentication failed"));
}

#[test]
fn a_deterministic_replay_is_reproducible_and_bad_frames_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("1.pcapng"), dir.path().join("2.pcapng"));
    for out in [&first, &second] {
        let output = myc(
            &[
                "produce",
                "--feed",
                "polygon",
                "--input",
                arg(&sample("polygon.jsonl")),
                "--deterministic",
                "--out",
                arg(out),
            ],
            b"",
        );
        assert_eq!(output.status.code(), Some(0));
    }
    assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
    let bad = std::fs::read(sample("polygon-bad.jsonl")).unwrap();
    let output = myc(&["produce", "--feed", "polygon", "--input", "-", "--out", arg(&first), "--summary-json"], &bad);
    assert_eq!(output.status.code(), Some(0), "a replay with bad frames still ends well");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!((summary["frames"].as_u64(), summary["frames_rejected"].as_u64()), (Some(6), Some(3)));
    assert_eq!(summary["events_dropped"]["negative"], 2);
}

#[test]
fn the_demo_walks_every_stage_and_verifies_both_dual_stages_identical() {
    let output = myc(&["demo", "--stage-seconds", "0.3", "--rate", "5000", "--format", "json"], b"");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["ok"], true);
    let stages = summary["stages"].as_array().unwrap();
    let names: Vec<_> = stages.iter().map(|stage| stage["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["relay", "dual_relay_primary", "dual_broker_primary", "broker"]);
    // The producers never pause: a stage's capture starts once both follow
    // it, and a path the stage does not use has delivered everything first.
    for stage in stages {
        assert!(stage["produced"].as_u64().unwrap() > 0, "{stage}");
        let (relay, broker) = (stage["relay_messages"].as_u64().unwrap(), stage["broker_messages"].as_u64().unwrap());
        match stage["stage"].as_str().unwrap() {
            "relay" => assert!(relay > 0 && broker == 0, "{stage}"),
            // At broker the relay's broker link keeps relay consumers fed.
            _ => assert!(relay > 0 && broker > 0, "{stage}"),
        }
        assert_eq!(stage["legacy_consumer"], "exactly_once", "{stage}");
    }
    assert_eq!((stages[1]["verdict"].as_str(), stages[2]["verdict"].as_str()), (Some("identical"), Some("identical")));
}

#[test]
fn coinbase_and_binance_replays_publish_through_produce_with_bad_input_counted() {
    let dir = tempfile::tempdir().unwrap();
    for (feed, good, bad, published, rejected) in [
        ("coinbase", "coinbase.jsonl", "coinbase-bad.jsonl", 7, 4),
        ("binance", "binance.jsonl", "binance-bad.jsonl", 6, 5),
    ] {
        let (out, input) = (dir.path().join(format!("{feed}.pcapng")), sample(good));
        let args = ["produce", "--feed", feed, "--input", arg(&input), "--deterministic", "--out", arg(&out)];
        let output = myc(&[&args[..], &["--summary-json"]].concat(), b"");
        assert_eq!(output.status.code(), Some(0), "{feed}: {}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(summary["events_published"], published, "{feed}");
        let again = dir.path().join(format!("{feed}-again.pcapng"));
        let args = ["produce", "--feed", feed, "--input", arg(&input), "--deterministic", "--out", arg(&again)];
        assert_eq!(myc(&args, b"").status.code(), Some(0));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap(), "{feed}: deterministic bytes");
        let bad_input = std::fs::read(sample(bad)).unwrap();
        let output =
            myc(&["produce", "--feed", feed, "--input", "-", "--out", arg(&out), "--summary-json"], &bad_input);
        assert_eq!(output.status.code(), Some(0), "{feed}: a replay with bad frames still ends well");
        let stdout = String::from_utf8(output.stdout).unwrap();
        let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
        assert_eq!(summary["frames_rejected"], rejected, "{feed}");
        assert!(summary["events_ignored"]["error"].as_u64() > Some(0), "{feed}: errors counted");
    }
}

/// Settings for the `broker` stage with the broker at a socket nobody
/// serves, and the spool given.
fn broker_away_settings(dir: &Path, spool: &str) -> PathBuf {
    let file = dir.join("myc.toml");
    let text = format!(
        "[broker]\nendpoint = \"unix:{}\"\nspool = \"{spool}\"\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n\
         [rollout]\ndefault_stage = \"broker\"\n",
        dir.join("nobody.sock").display()
    );
    std::fs::write(&file, text).unwrap();
    file
}

fn summary_of(output: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

#[test]
fn with_the_broker_away_an_always_spool_keeps_every_message_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let config = broker_away_settings(dir.path(), "always");
    let args = ["--config", arg(&config), "produce", "--feed", "synthetic", "--count", "5000", "--summary-json"];
    let output = myc(&args, b"");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let broker = &summary_of(&output)["paths"]["broker"];
    assert_eq!(broker["published"], 5000, "{broker}");
    assert_eq!(broker["spooled"], 5000, "{broker}");
    assert_eq!(broker["undelivered"], 0, "{broker}");
    for key in ["circuit_open", "resent", "replayed"] {
        assert!(broker[key].is_u64(), "{key} missing: {broker}");
    }
    assert!(dir.path().join("spool").join("LOCK").exists(), "the spool lives beside the settings file");

    // The next run finds them and counts them as still spooled.
    let output = myc(&args, b"");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(summary_of(&output)["paths"]["broker"]["spooled"], 5000);
}

#[test]
fn with_the_broker_away_and_no_spool_the_undelivered_are_counted_and_the_exit_is_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = broker_away_settings(dir.path(), "off");
    // A second at 2,000 msg/s: time for the breaker to open.
    let args = [
        "--config",
        arg(&config),
        "produce",
        "--feed",
        "synthetic",
        "--count",
        "2000",
        "--rate",
        "2000",
        "--summary-json",
    ];
    let output = myc(&args, b"");
    assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
    let broker = &summary_of(&output)["paths"]["broker"];
    let accepted = broker["published"].as_u64().unwrap();
    assert_eq!(broker["undelivered"].as_u64(), Some(accepted), "{broker}");
    assert_eq!(accepted + broker["failed"].as_u64().unwrap(), 2000, "{broker}");
    assert!(broker["circuit_open"].as_u64().unwrap() > 0, "the breaker opened: {broker}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("{accepted} messages of the primary path were never delivered")), "{stderr}");
}

/// What `myc ARGS --keep --format json` (a demo) left, read before its
/// kept directory is removed.
struct KeptDemo {
    output: std::process::Output,
    stdout: String,
    summary: serde_json::Value,
    stages: Vec<serde_json::Value>,
    /// The dual stages' verify reports.
    reports: Vec<serde_json::Value>,
    /// The rollout audit log.
    audit: String,
}

fn kept_demo(args: &[&str]) -> KeptDemo {
    let output = myc(&[args, &["--keep", "--format", "json"]].concat(), b"");
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|error| panic!("{error}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr)));
    let kept = PathBuf::from(summary["kept"].as_str().unwrap());
    let audit = std::fs::read_to_string(kept.join("rollout-audit.jsonl")).unwrap();
    let stages = summary["stages"].as_array().unwrap().clone();
    let reports = stages
        .iter()
        .filter_map(|stage| stage["report"].as_str())
        .map(|path| serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap())
        .collect();
    std::fs::remove_dir_all(&kept).unwrap();
    KeptDemo { output, stdout, summary, stages, reports, audit }
}

#[test]
fn the_demo_keeps_the_legacy_producer_going_when_the_shim_producers_cannot_keep_up() {
    // The default rate is more than a debug build makes through the
    // adapters on a shared machine: the shim producers are behind, and the
    // legacy producer must still write at its own pace in every stage —
    // each dual stage's verify report covers its source (the rollout gate
    // refuses to advance it otherwise) and the walk reaches `broker`.
    let KeptDemo { stdout, stages, reports, .. } = kept_demo(&["demo", "--stage-seconds", "1"]);
    let names: Vec<_> = stages.iter().map(|stage| stage["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["relay", "dual_relay_primary", "dual_broker_primary", "broker"], "{stdout}");
    assert_eq!(reports.len(), 2, "{stdout}");
    for report in &reports {
        assert_eq!(report["sources"], serde_json::json!([2, 3, 4]), "{report}");
        assert_eq!(report["verdict"], "identical", "{report}");
    }
    // Up to the switch to `broker` (the shim producers' handover there is
    // the other test's business), the legacy consumer has every message
    // of every producer once.
    for stage in &stages[..3] {
        assert_eq!(stage["legacy_consumer"], "exactly_once", "{stage}");
    }
}

#[test]
fn the_demo_with_every_feed_walks_coinbase_and_binance_to_broker_on_identical_verdicts() {
    // Four shim producers and the legacy one, none pausing. The Coinbase
    // adapter takes source 3, so the legacy producer is Gemini-like (5).
    let args = ["demo", "--feeds", "polygon,kraken,coinbase,binance", "--stage-seconds", "0.5", "--rate", "2000"];
    let KeptDemo { output, stdout, summary, stages, reports, audit } = kept_demo(&args);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(summary["ok"], true, "{stdout}");
    assert_eq!(
        summary["services"],
        serde_json::json!({"binance_adapter": 1, "coinbase_adapter": 3, "gemini_legacy": 5,
                           "kraken_adapter": 2, "polygon_adapter": 4}),
    );
    let names: Vec<_> = stages.iter().map(|stage| stage["stage"].as_str().unwrap()).collect();
    assert_eq!(names, ["relay", "dual_relay_primary", "dual_broker_primary", "broker"], "{stdout}");
    // Both dual stages verified identical with the new sources in them, each
    // with the gate's minimum (the demo sets 100) of matched messages.
    assert_eq!(reports.len(), 2, "{stdout}");
    for report in &reports {
        assert_eq!(report["verdict"], "identical", "{report}");
        assert_eq!(report["sources"], serde_json::json!([1, 2, 3, 4, 5]), "{report}");
        for source in ["1", "3"] {
            let counts = &report["per_source"][source];
            assert!(counts["matched"].as_u64().unwrap() >= 100, "source {source}: {report}");
            assert_eq!((counts["mismatched"].as_u64(), counts["missing"].as_u64()), (Some(0), Some(0)), "{report}");
        }
    }
    // Each new service walked every stage: an operator `set`, then two
    // `advance`s on that evidence.
    for service in ["coinbase_adapter", "binance_adapter"] {
        let steps: Vec<(String, String)> = audit
            .lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|entry| entry["service"] == service)
            .map(|entry| (entry["action"].as_str().unwrap().to_owned(), entry["to"].as_str().unwrap().to_owned()))
            .collect();
        let expected = [("set", "dual_relay_primary"), ("advance", "dual_broker_primary"), ("advance", "broker")]
            .map(|(action, to)| (action.to_owned(), to.to_owned()));
        assert_eq!(steps, expected, "{service}: {audit}");
    }
    for stage in &stages {
        assert!(stage["produced"].as_u64().unwrap() > 0, "{stage}");
        assert_eq!(stage["legacy_consumer"], "exactly_once", "{stage}");
    }
}

#[test]
fn the_demo_refuses_an_unknown_a_repeated_or_a_sampleless_feed_before_starting() {
    for (feeds, says) in [
        ("polygon,nasdaq", "unknown feed \"nasdaq\""),
        ("kraken,coinbase,kraken", "--feeds names kraken twice"),
        ("synthetic", "the demo replays the bundled feed samples"),
    ] {
        let output = myc(&["demo", "--feeds", feeds, "--stage-seconds", "0.1"], b"");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{feeds}: {stderr}");
        assert!(stderr.contains(says), "{feeds}: {stderr}");
        assert!(output.stdout.is_empty(), "{feeds}: nothing started");
    }
}
