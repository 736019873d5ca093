//! `myc rollout guard` against real `myc` processes: a compatible relay, a
//! broker (or a broken stand-in bound to its socket), a synthetic producer
//! exporting its metrics, and the guard reading them with short windows.
//! Each test breaks the broker path the way the rule is meant to catch and
//! checks the plan and the audit log afterwards; a healthy run, a stopped
//! producer and a dry run must change nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Processes, free_port, wait_until};

/// A temporary deployment: its directory, settings file and processes.
struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    metrics: String,
    processes: Processes,
}

/// How long any awaited condition may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(90);

impl Deployment {
    /// Settings with every socket in a temporary directory, the service
    /// `synth` (source 99) at `stage`, a guard window of 2 s scraped every
    /// 250 ms, and `extra` TOML (whole tables) at the end.
    fn new(stage: &str, broker_extra: &str, extra: &str) -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let metrics = format!("127.0.0.1:{}", free_port());
        let config = dir.path().join("myc.toml");
        let d = dir.path().display();
        std::fs::write(
            &config,
            format!(
                "[relay]\nmarket_data = \"{d}/md.sock\"\nsignal = \"{d}/sig.sock\"\nexecution = \"{d}/ex.sock\"\nsystem = \"{d}/sys.sock\"\n\
                 [broker]\nendpoint = \"unix:{d}/broker.sock\"\n{broker_extra}\n[broker.server]\nlisten = [\"unix:{d}/broker.sock\"]\n\
                 [services.synth]\nsource = 99\n\
                 [guard]\ntargets = [\"http://{metrics}/metrics\"]\ninterval = \"250ms\"\nwindow = \"2s\"\nmin_messages = 200\n\
                 {extra}\n"
            ),
        )
        .unwrap();
        let deployment = Deployment { dir, config, metrics, processes: Processes(Vec::new()) };
        let set = deployment.myc(&["rollout", "set", "synth", stage, "--reason", "test start"]).output().unwrap();
        assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
        deployment
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn myc(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_myc"));
        command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("MYC_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Starts `myc ARGS` in the background; its index among the processes.
    fn spawn(&mut self, args: &[&str]) -> usize {
        let child = self.myc(args).spawn().unwrap();
        self.processes.0.push(child);
        self.processes.0.len() - 1
    }

    fn stop(&mut self, index: usize) {
        let child = &mut self.processes.0[index];
        child.kill().unwrap();
        child.wait().unwrap();
    }

    fn wait_for_socket(&self, name: &str) {
        let path = self.path(name);
        wait_until(name, PATIENCE, || UnixStream::connect(&path).is_ok());
    }

    /// The relay and the real broker, both listening.
    fn start_relay_and_broker(&mut self) -> usize {
        self.spawn(&["relay", "--domain", "market_data"]);
        let broker = self.spawn(&["broker"]);
        self.wait_for_socket("md.sock");
        self.wait_for_socket("broker.sock");
        broker
    }

    /// The synthetic producer for `synth` at `rate`, its metrics served.
    fn start_producer(&mut self, rate: u64) -> usize {
        let metrics = self.metrics.clone();
        let rate = rate.to_string();
        let index = self.spawn(&[
            "produce",
            "--feed",
            "synthetic",
            "--service",
            "synth",
            "--rate",
            &rate,
            "--metrics",
            &metrics,
        ]);
        wait_until("the producer's metrics", PATIENCE, || std::net::TcpStream::connect(&metrics).is_ok());
        index
    }

    /// `myc rollout guard ARGS --format json`, its decisions as they come.
    fn guard(&mut self, args: &[&str]) -> mpsc::Receiver<Value> {
        let mut command = self.myc(&["rollout", "guard", "--format", "json"]);
        command.args(args).stdout(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        self.processes.0.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let decision: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
                if tx.send(decision).is_err() {
                    return;
                }
            }
        });
        rx
    }

    fn stage(&self) -> String {
        let output = self.myc(&["rollout", "status", "--format", "json"]).stdout(Stdio::piped()).output().unwrap();
        let status: Value = serde_json::from_slice(&output.stdout).unwrap();
        status["services"]["synth"]["stage"].as_str().unwrap().to_owned()
    }

    fn history(&self) -> Vec<Value> {
        let output =
            self.myc(&["rollout", "history", "synth", "--format", "json"]).stdout(Stdio::piped()).output().unwrap();
        serde_json::from_slice::<Value>(&output.stdout).unwrap().as_array().unwrap().clone()
    }
}

/// The decisions about `synth` until one satisfies `until`, which is returned
/// with every decision before it.
fn decisions_until(rx: &mpsc::Receiver<Value>, until: impl Fn(&Value) -> bool) -> (Vec<Value>, Value) {
    let started = Instant::now();
    let mut before = Vec::new();
    loop {
        let left = PATIENCE.checked_sub(started.elapsed()).unwrap_or_default();
        let decision = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no such decision in time; saw {before:#?}"));
        if decision["service"] != "synth" {
            continue;
        }
        if until(&decision) {
            return (before, decision);
        }
        before.push(decision);
    }
}

fn is(decision: &Value, verdict: &str) -> bool {
    decision["decision"] == verdict
}

/// A broker stand-in: accepts connections on `path` and hands each to
/// `serve` on its own thread.
fn stand_in(path: &Path, serve: impl Fn(UnixStream) + Send + Sync + Copy + 'static) {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || serve(stream));
        }
    });
}

#[test]
fn a_healthy_run_of_three_windows_is_ok_and_a_stopped_producer_is_stale_and_nothing_changes() {
    let mut deployment = Deployment::new("dual_relay_primary", "", "verify_every = \"500ms\"\nverify_for = \"1s\"\n");
    deployment.start_relay_and_broker();
    let producer = deployment.start_producer(2_000);
    let decisions = deployment.guard(&[]);
    let (_, first_ok) = decisions_until(&decisions, |decision| is(decision, "ok"));
    assert_eq!(first_ok["stage"], "dual_relay_primary");
    let figures = &first_ok["figures"];
    assert!(figures["relay"]["published"].as_u64().unwrap() >= 200, "{first_ok}");
    assert!(figures["broker"]["published"].as_u64().unwrap() >= 200, "{first_ok}");
    assert!(figures["rss_bytes"].as_u64().unwrap() > 1_000_000, "the producer exports its RSS: {first_ok}");
    // Three windows (2 s each, a decision every 250 ms) of ok, with live
    // verify samples that find both paths identical.
    let mut verified = 0;
    for _ in 0..24 {
        let (_, decision) = decisions_until(&decisions, |_| true);
        assert!(is(&decision, "ok"), "a healthy producer: {decision}");
        verified += usize::from(decision["figures"]["verify"] == "identical");
    }
    assert!(verified > 0, "a live verify sample was taken and found the paths identical");
    deployment.stop(producer);
    let (before, stale) = decisions_until(&decisions, |decision| is(decision, "stale"));
    assert!(before.iter().all(|decision| is(decision, "ok") || is(decision, "insufficient")), "{before:#?}");
    assert!(stale["reason"].as_str().unwrap().starts_with("no scrape for"), "{stale}");
    // Stale is shown, never acted on.
    for _ in 0..4 {
        let (_, decision) = decisions_until(&decisions, |_| true);
        assert!(is(&decision, "stale"), "{decision}");
    }
    assert_eq!(deployment.stage(), "dual_relay_primary");
    assert_eq!(deployment.history().len(), 1, "only the test's own set");
}

#[test]
fn a_broker_that_starts_closing_connections_is_rolled_back_by_rule_1_within_two_windows_and_a_dry_run_changes_nothing()
{
    let mut deployment = Deployment::new(
        "dual_broker_primary",
        "buffer_messages = 500\nbuffer_policy = \"drop_newest\"\nbackoff_max = \"200ms\"",
        "",
    );
    let broker = deployment.start_relay_and_broker();
    deployment.start_producer(2_000);
    // The broker is replaced by one that closes every connection at once.
    deployment.stop(broker);
    stand_in(&deployment.path("broker.sock"), drop);

    let once = deployment
        .myc(&["rollout", "guard", "--once", "--dry-run", "--format", "json"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(once.status.code(), Some(1), "a dry run that would roll back exits 1");
    let line = String::from_utf8(once.stdout).unwrap();
    let decision: Value = serde_json::from_str(line.lines().find(|line| line.contains("\"synth\"")).unwrap()).unwrap();
    assert!(is(&decision, "rollback"), "{decision}");
    assert!(decision["reason"].as_str().unwrap().ends_with("(dry run: nothing changed)"), "{decision}");
    assert_eq!(deployment.stage(), "dual_broker_primary", "a dry run changes nothing");
    assert_eq!(deployment.history().len(), 1);
    assert!(!deployment.path("rollout.toml.guard.json").exists(), "not even the guard's state");

    let decisions = deployment.guard(&[]);
    let (before, rollback) = decisions_until(&decisions, |decision| is(decision, "rollback"));
    // Two windows are 16 rounds of 250 ms.
    assert!(before.len() <= 16, "rolled back after {} rounds: {before:#?}", before.len());
    let figures = &rollback["figures"];
    assert!(figures["broker"]["failed"].as_u64().unwrap() > 0, "{rollback}");
    wait_until("the plan to change", PATIENCE, || deployment.stage() == "dual_relay_primary");
    let history = deployment.history();
    let entry = history.last().unwrap();
    assert_eq!((entry["user"].as_str(), entry["action"].as_str()), (Some("guard"), Some("rollback")), "{entry}");
    assert_eq!(
        (entry["from"].as_str(), entry["to"].as_str()),
        (Some("dual_broker_primary"), Some("dual_relay_primary"))
    );
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("rule 1 (errors): broker path failed"), "{reason}");
    assert!(reason.contains(&format!("{} failed", figures["broker"]["failed"])), "the figures: {reason}");
}

#[test]
fn a_stalled_broker_shadow_is_rolled_back_by_rule_2() {
    let mut deployment = Deployment::new("dual_relay_primary", "", "[shadow]\nqueue_bytes = 4096\n");
    deployment.spawn(&["relay", "--domain", "market_data"]);
    deployment.wait_for_socket("md.sock");
    // A broker that accepts and then never reads nor answers.
    stand_in(&deployment.path("broker.sock"), |stream| {
        std::thread::sleep(PATIENCE * 2);
        drop(stream);
    });
    deployment.start_producer(2_000);
    let decisions = deployment.guard(&[]);
    let (_, rollback) = decisions_until(&decisions, |decision| is(decision, "rollback"));
    assert!(rollback["figures"]["broker"]["shadow_dropped"].as_u64().unwrap() > 0, "{rollback}");
    wait_until("the plan to change", PATIENCE, || deployment.stage() == "relay");
    let history = deployment.history();
    let reason = history.last().unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("rule 2 (shadow loss): broker shadow dropped"), "{reason}");
}

#[test]
fn a_producer_buffering_for_a_stalled_broker_is_rolled_back_by_rule_3_against_its_relay_baseline() {
    let mut deployment = Deployment::new(
        "relay",
        "buffer_bytes = 1073741824\nbuffer_messages = 20000000\nbuffer_deadline = \"10m\"",
        "",
    );
    deployment.spawn(&["relay", "--domain", "market_data"]);
    deployment.wait_for_socket("md.sock");
    stand_in(&deployment.path("broker.sock"), |stream| {
        std::thread::sleep(PATIENCE * 2);
        drop(stream);
    });
    deployment.start_producer(200_000);
    let decisions = deployment.guard(&[]);
    let (_, at_relay) = decisions_until(&decisions, |decision| decision["figures"]["rss_baseline_bytes"].is_u64());
    let baseline = at_relay["figures"]["rss_baseline_bytes"].as_u64().unwrap();
    let state_file = deployment.path("rollout.toml.guard.json");
    wait_until("the baseline to be kept beside the plan", PATIENCE, || {
        std::fs::read_to_string(&state_file).is_ok_and(|text| text.contains("rss_baseline_bytes"))
    });
    // The operator moves it straight to the broker, which never reads.
    let set = deployment.myc(&["rollout", "set", "synth", "broker", "--reason", "test"]).status().unwrap();
    assert!(set.success());
    let (_, rollback) = decisions_until(&decisions, |decision| is(decision, "rollback"));
    assert_eq!(rollback["stage"], "broker");
    let rss = rollback["figures"]["rss_bytes"].as_u64().unwrap();
    assert!(rss as f64 > 1.5 * baseline as f64 + 32.0 * 1024.0 * 1024.0, "{rollback}");
    wait_until("the plan to change", PATIENCE, || deployment.stage() == "dual_broker_primary");
    let history = deployment.history();
    let reason = history.last().unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("rule 3 (memory): RSS"), "{reason}");
    assert!(reason.contains("recorded at relay"), "{reason}");
}

/// Forwards `client` to the broker at `upstream`, flipping the last byte of
/// every 50th PUBLISH payload on the way (frames are `[len u32 LE][body]`,
/// PUBLISH is op 0x02).
fn corrupting_proxy(client: UnixStream, upstream: &Path) {
    let Ok(broker) = UnixStream::connect(upstream) else { return };
    let (mut from_broker, mut to_client) = (broker.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_broker, &mut to_client);
    });
    let (mut from_client, mut to_broker) = (client, broker);
    let mut publishes = 0u64;
    loop {
        let mut len = [0u8; 4];
        if from_client.read_exact(&mut len).is_err() {
            return;
        }
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        if from_client.read_exact(&mut body).is_err() {
            return;
        }
        if body.first() == Some(&0x02) {
            publishes += 1;
            if publishes % 50 == 0
                && let Some(last) = body.last_mut()
            {
                *last ^= 0x01;
            }
        }
        if to_broker.write_all(&len).and_then(|()| to_broker.write_all(&body)).is_err() {
            return;
        }
    }
}

#[test]
fn a_live_verify_sample_that_differs_is_rolled_back_by_rule_4() {
    let mut deployment = Deployment::new("dual_relay_primary", "", "verify_every = \"500ms\"\nverify_for = \"1s\"\n");
    // The producer reaches the broker through a proxy that corrupts a byte
    // now and then; the guard's tap subscribes through it too, unchanged.
    let real = deployment.path("real-broker.sock");
    let config = std::fs::read_to_string(&deployment.config).unwrap();
    let config = config.replace(
        &format!("listen = [\"unix:{}\"]", deployment.path("broker.sock").display()),
        &format!("listen = [\"unix:{}\"]", real.display()),
    );
    std::fs::write(&deployment.config, config).unwrap();
    deployment.spawn(&["relay", "--domain", "market_data"]);
    deployment.spawn(&["broker"]);
    deployment.wait_for_socket("md.sock");
    deployment.wait_for_socket("real-broker.sock");
    let upstream: &'static Path = Box::leak(real.into_boxed_path());
    let _ = std::fs::remove_file(deployment.path("broker.sock"));
    let listener = UnixListener::bind(deployment.path("broker.sock")).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            std::thread::spawn(move || corrupting_proxy(stream, upstream));
        }
    });
    deployment.start_producer(2_000);
    let decisions = deployment.guard(&[]);
    let (_, rollback) = decisions_until(&decisions, |decision| is(decision, "rollback"));
    assert_eq!(rollback["figures"]["verify"], "differs", "{rollback}");
    wait_until("the plan to change", PATIENCE, || deployment.stage() == "relay");
    let history = deployment.history();
    let reason = history.last().unwrap()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("rule 4 (content): the live verify sample differs"), "{reason}");
}
