//! The memory scenario: the seed's "memory unchanged from the relay client".
//! One synthetic producer (`myc produce`, a child process, so its memory is
//! its own) publishes the same paced load twice, once with its service at
//! `relay` (to a `myc relay` child) and once at `broker` (to a `myc broker`
//! child); the peak RSS of each run and their ratio are reported.
//!
//! It deliberately measures the producer only: the servers' memory is the
//! other scenarios' business.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::process::{ChildBroker, ChildServer, peak_rss_of_pid};
use super::{Rss, RunResult, Scenario, rate};

/// The paced load: messages per second.
const RATE: u64 = 100_000;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario {
        name: "memory",
        payload_bytes: myc_producers::synthetic::MESSAGE_LEN,
        run: relay_then_broker,
        n_messages: 1_000_000,
    }]
}

fn relay_then_broker(n_messages: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let relay = ChildServer::start(&["relay", "--domain", "market_data"], |socket| {
        vec!["--socket".to_owned(), socket.display().to_string()]
    })?;
    let broker = ChildBroker::start()?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let mut peaks = [0u64; 2];
    let mut elapsed = Duration::ZERO;
    for (index, stage) in ["relay", "broker"].into_iter().enumerate() {
        let config = dir.path().join(format!("{stage}.toml"));
        std::fs::write(
            &config,
            format!(
                "[relay]\nmarket_data = \"{relay}\"\n[broker]\nendpoint = \"unix:{broker}\"\n\
                 [rollout]\nfile = \"{plan}\"\ndefault_stage = \"{stage}\"\n",
                relay = relay.socket.display(),
                broker = broker.socket.display(),
                plan = dir.path().join(format!("{stage}-plan.toml")).display(),
            ),
        )?;
        let (peak, took) = produce(&config, n_messages)?;
        peaks[index] = peak;
        elapsed = took;
    }
    let [at_relay, at_broker] = peaks;
    let rss = Rss { producer_at_relay: Some(at_relay), producer_at_broker: Some(at_broker), ..Rss::default() };
    #[allow(clippy::cast_precision_loss, reason = "a ratio of two RSS figures")]
    let ratio = at_broker as f64 / at_relay.max(1) as f64;
    Ok(RunResult { rss_bytes: Some(rss), rss_ratio: Some(ratio), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// Runs the producer over `n_messages` at [`RATE`]; its peak RSS (read from
/// `/proc` while it runs; the peak only grows) and how long it took.
fn produce(config: &std::path::Path, n_messages: u64) -> anyhow::Result<(u64, Duration)> {
    let exe = std::env::current_exe().context("cannot find the myc binary")?;
    let started = Instant::now();
    let mut child = Command::new(exe)
        .arg("--config")
        .arg(config)
        .args(["produce", "--feed", "synthetic", "--service", "bench_memory", "--rate", &RATE.to_string()])
        .args(["--count", &n_messages.to_string()])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the producer")?;
    let mut peak = 0;
    let status = loop {
        if let Some(rss) = peak_rss_of_pid(child.id()) {
            peak = peak.max(rss);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !status.success() {
        bail!("the producer failed: {status}");
    }
    if peak == 0 {
        bail!("the producer's RSS could not be read from /proc");
    }
    Ok((peak, started.elapsed()))
}
