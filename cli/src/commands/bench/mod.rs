//! `myc bench`: runs scenarios several times, reports min / median / max
//! throughput per scenario as a table or as one JSON object (scenario
//! names and the JSON shape as BENCHMARKS.md describes them).
//!
//! Scenarios measure in-process with the release build; figures that matter
//! are ratios between scenarios of one run, since the machine is noisy. This
//! module owns the running and the report; each scenario family lives in its
//! own file.

mod broker_scenarios;
mod codec_scenarios;
mod link_scenarios;
mod memory_scenarios;
mod nats_scenarios;
mod plot;
mod process;
mod produce_scenarios;
mod relay_scenarios;
mod shim_scenarios;
mod spool_scenarios;
mod verify_scenarios;

use std::io::{self, Write};
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use super::Outcome;
use crate::args::{BenchArgs, Format};

/// One scenario of the suite: a name, a payload size, and a function that does
/// one timed run.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) payload_bytes: usize,
    /// Runs the scenario once over `n_messages` messages of `payload_bytes`.
    pub(crate) run: fn(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult>,
    /// Messages per run in a full run (`--quick` uses a hundredth).
    pub(crate) n_messages: u64,
}

/// What one run of a scenario measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct RunResult {
    pub(crate) msgs_per_sec: f64,
    /// Messages not delivered (for scenarios that deliver).
    pub(crate) lost: Option<u64>,
    pub(crate) latency_us: Option<Latency>,
    pub(crate) rss_bytes: Option<Rss>,
    /// The memory scenario: the producer's peak RSS at broker over its peak at relay.
    pub(crate) rss_ratio: Option<f64>,
    /// Set when the scenario cannot run here (then `skipped`, with the reason).
    pub(crate) skipped: Option<String>,
}

impl RunResult {
    pub(crate) fn rate(msgs_per_sec: f64) -> RunResult {
        RunResult { msgs_per_sec, ..RunResult::default() }
    }
}

/// What else is connected while a transport scenario measures its healthy
/// subscriber (the `faults` group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Nothing: the unloaded rate.
    None,
    /// A second subscriber that never reads.
    Stuck,
    /// A second subscriber that reads, but only [`SLOW_READ_BYTES`] per millisecond.
    Slow,
}

/// What the slow subscriber reads per millisecond (16 MB/s: about a
/// twentieth of what a healthy one takes at 128 B).
pub(crate) const SLOW_READ_BYTES: usize = 16 * 1024;

impl Fault {
    /// Keeps `stream` in the state the fault describes, on a task of the
    /// scenario's runtime (so until the scenario ends): the stuck one just
    /// holds the socket open, the slow one reads at its pace.
    pub(crate) fn occupy(self, mut stream: tokio::net::UnixStream) {
        use tokio::io::AsyncReadExt;
        match self {
            Fault::None => {}
            Fault::Stuck => {
                tokio::spawn(async move {
                    std::future::pending::<()>().await;
                    drop(stream);
                });
            }
            Fault::Slow => {
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; SLOW_READ_BYTES];
                    let mut tick = tokio::time::interval(Duration::from_millis(1));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        if !matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {
                            break;
                        }
                    }
                });
            }
        }
    }
}

/// Messages per run of a fault scenario: a few seconds of traffic, so that
/// what is measured is the rate the healthy side keeps, not the fraction of
/// a second the server takes to notice the faulty one.
pub(crate) fn fault_messages(payload_bytes: usize) -> u64 {
    if payload_bytes < 1024 { 20_000_000 } else { 5_000_000 }
}

/// The scenario a fault scenario is set against: `broker_e2e_1_stuck` →
/// `broker_e2e_1_base` (the same load, as many messages, no fault); and
/// `relay_link` against `relay_e2e_1`.
fn baseline_of(name: &str) -> Option<String> {
    // The relay's broker link is set against the relay alone.
    if name == "relay_link" {
        return Some("relay_e2e_1".to_owned());
    }
    let stem = name.strip_suffix("_stuck").or_else(|| name.strip_suffix("_slow"))?;
    Some(format!("{stem}_base"))
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Latency {
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
}

/// Peak resident set sizes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Rss {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) broker: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) client: Option<u64>,
    /// The memory scenario: the producer with its service at relay…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) producer_at_relay: Option<u64>,
    /// …and at broker, under the same load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) producer_at_broker: Option<u64>,
}

impl Rss {
    /// The higher of each figure.
    fn max(self, other: Rss) -> Rss {
        Rss {
            broker: self.broker.max(other.broker),
            client: self.client.max(other.client),
            producer_at_relay: self.producer_at_relay.max(other.producer_at_relay),
            producer_at_broker: self.producer_at_broker.max(other.producer_at_broker),
        }
    }
}

/// Groups accepted by `--scenario` besides the scenario names.
const GROUPS: &[(&str, &[&str])] = &[
    ("codec", &["codec_build", "codec_parse", "codec_parse_crc"]),
    (
        "broker",
        &[
            "raw_uds",
            "broker_publish",
            "broker_e2e_1",
            "broker_e2e_4",
            "latency_raw",
            "latency",
            "connect",
            "nats_e2e_1",
        ],
    ),
    ("relay", &["raw_uds", "relay_e2e_1", "relay_e2e_4"]),
    (
        "faults",
        &[
            "broker_e2e_1_base",
            "broker_e2e_1_stuck",
            "broker_e2e_1_slow",
            "relay_e2e_1_base",
            "relay_e2e_1_stuck",
            "relay_e2e_1_slow",
        ],
    ),
    ("shim", &["broker_e2e_1", "shim_broker", "dual", "stage_lookup"]),
    ("link", &["relay_e2e_1", "relay_link"]),
    ("producers", &["produce", "produce_coinbase", "produce_binance"]),
    ("spool", &["shim_broker", "spool_always", "spool_replay"]),
    ("nats", &["broker_e2e_1", "nats_e2e_1", "shim_nats"]),
    ("guard", &["memory"]),
];

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cores: usize,
    cpu_model: String,
    kernel: String,
    myc_version: &'static str,
    profile: &'static str,
}

#[derive(Debug, Serialize)]
struct ScenarioReport {
    name: &'static str,
    payload_bytes: usize,
    runs: usize,
    msgs_per_sec: Stats,
    #[serde(skip_serializing_if = "Option::is_none")]
    lost: Option<u64>,
    /// Of the median run.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_us: Option<Latency>,
    /// Highest of all runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_bytes: Option<Rss>,
    /// Of the median run: the memory scenario's broker / relay RSS.
    #[serde(skip_serializing_if = "Option::is_none")]
    rss_ratio: Option<f64>,
    /// For a fault scenario: its median over its baseline's (same payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_baseline: Option<f64>,
    /// CPU time (user + system) per message, median of the runs, in
    /// microseconds: this process and the servers it started, set-up
    /// included. Over the wall time it tells whether a scenario is bound by
    /// the machine's cores or by waiting.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_msg: Option<f64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skipped: bool,
    ok: bool,
    note: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Stats {
    min: f64,
    median: f64,
    max: f64,
}

pub(crate) fn run(args: &BenchArgs, format: Format) -> anyhow::Result<Outcome> {
    let selected = select(&args.scenarios)?;
    let runs = if args.quick { 1 } else { args.runs as usize };
    let json = args.json || format == Format::Json;
    let mut reports = Vec::with_capacity(selected.len());
    for scenario in selected {
        let n_messages = if args.quick { scenario.n_messages / 100 } else { scenario.n_messages };
        if !json {
            eprint_progress(scenario.name);
        }
        reports.push(measure(&scenario, runs, n_messages));
    }
    set_baseline_ratios(&mut reports);
    let report = Report { machine: machine(), scenarios: reports };
    if let Some(path) = &args.plot {
        plot::write_svg(&report, path)?;
    }
    let mut out = io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &report)?;
        writeln!(out)?;
    } else {
        render_table(&report, &mut out)?;
    }
    out.flush()?;
    Ok(if report.scenarios.iter().all(|scenario| scenario.ok) { Outcome::Success } else { Outcome::Negative })
}

fn all_scenarios() -> Vec<Scenario> {
    let mut all = codec_scenarios::scenarios();
    all.extend(broker_scenarios::scenarios());
    all.extend(relay_scenarios::scenarios());
    all.extend(link_scenarios::scenarios());
    all.extend(nats_scenarios::scenarios());
    all.extend(shim_scenarios::scenarios());
    all.extend(spool_scenarios::scenarios());
    all.extend(produce_scenarios::scenarios());
    all.extend(memory_scenarios::scenarios());
    all.extend(verify_scenarios::scenarios());
    all
}

fn select(names: &[String]) -> anyhow::Result<Vec<Scenario>> {
    let all = all_scenarios();
    if names.is_empty() {
        return Ok(all);
    }
    let mut wanted: Vec<&str> = Vec::new();
    for name in names {
        if let Some((_, members)) = GROUPS.iter().find(|(group, _)| group == name) {
            wanted.extend_from_slice(members);
        } else if all.iter().any(|scenario| scenario.name == name) {
            wanted.push(name);
        } else {
            let known: Vec<_> =
                all.iter().map(|scenario| scenario.name).chain(GROUPS.iter().map(|(group, _)| *group)).collect();
            bail!("unknown scenario {name:?}; known: {}", known.join(", "));
        }
    }
    Ok(all.into_iter().filter(|scenario| wanted.contains(&scenario.name)).collect())
}

fn measure(scenario: &Scenario, runs: usize, n_messages: u64) -> ScenarioReport {
    let mut results: Vec<RunResult> = Vec::with_capacity(runs);
    let mut note = String::new();
    let mut skipped = false;
    let mut cpu_per_msg: Vec<f64> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_before = cpu_time();
        let outcome = (scenario.run)(n_messages, scenario.payload_bytes);
        if let (Some(before), Some(after), Ok(_)) = (cpu_before, cpu_time(), &outcome) {
            #[allow(clippy::cast_precision_loss, reason = "a per-message figure for display")]
            cpu_per_msg.push(after.saturating_sub(before).as_secs_f64() * 1e6 / n_messages.max(1) as f64);
        }
        match outcome {
            Ok(result) if result.skipped.is_some() => {
                note = result.skipped.unwrap_or_default();
                skipped = true;
                break;
            }
            Ok(result) => results.push(result),
            Err(error) => {
                note = format!("{error:#}");
                break;
            }
        }
    }
    results.sort_by(|a, b| a.msgs_per_sec.total_cmp(&b.msgs_per_sec));
    let stats = match (results.first(), results.last()) {
        (Some(min), Some(max)) => {
            Stats { min: min.msgs_per_sec, median: results[results.len() / 2].msgs_per_sec, max: max.msgs_per_sec }
        }
        _ => Stats { min: 0.0, median: 0.0, max: 0.0 },
    };
    let lost = results.iter().filter_map(|result| result.lost).reduce(|a, b| a + b);
    if lost.is_some_and(|lost| lost > 0) && note.is_empty() {
        note = "messages were lost".to_owned();
    }
    let latency_us = results.get(results.len() / 2).and_then(|result| result.latency_us);
    cpu_per_msg.sort_by(f64::total_cmp);
    let cpu_us_per_msg = cpu_per_msg.get(cpu_per_msg.len() / 2).copied().filter(|_| !skipped);
    let rss_bytes = results.iter().filter_map(|result| result.rss_bytes).reduce(Rss::max);
    let rss_ratio = results.get(results.len() / 2).and_then(|result| result.rss_ratio);
    let ok = skipped || note.is_empty();
    // The memory scenario's figures, for the table too (they are not a failure).
    if let (true, Some(ratio), Some(rss)) = (note.is_empty(), rss_ratio, rss_bytes) {
        let mib = |bytes: Option<u64>| bytes.map_or(0.0, |bytes| bytes as f64 / 1_048_576.0);
        note = format!(
            "producer peak RSS {:.1} MiB at relay, {:.1} MiB at broker: ×{ratio:.2}",
            mib(rss.producer_at_relay),
            mib(rss.producer_at_broker)
        );
    }
    ScenarioReport {
        name: scenario.name,
        payload_bytes: scenario.payload_bytes,
        runs: results.len(),
        msgs_per_sec: stats,
        lost,
        latency_us,
        rss_bytes,
        rss_ratio,
        vs_baseline: None,
        cpu_us_per_msg,
        skipped,
        ok,
        note,
    }
}

/// CPU time (user + system) used so far by this process and by the
/// children it has reaped (the servers a scenario starts are reaped when it
/// ends), from `/proc/self/stat`; `None` where there is no `/proc`.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it start with the
    // state (field 3), so utime, stime, cutime and cstime (fields 14–17)
    // are the 12th to 15th after the name.
    let after_name = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11..15)?.iter().map(|field| field.parse::<u64>().ok()).sum::<Option<u64>>()?;
    let per_second = rustix::param::clock_ticks_per_second().max(1);
    Some(
        Duration::from_secs(ticks / per_second)
            + Duration::from_nanos((ticks % per_second) * 1_000_000_000 / per_second),
    )
}

/// Fills `vs_baseline` for every fault scenario whose baseline ran too.
fn set_baseline_ratios(reports: &mut [ScenarioReport]) {
    let medians: Vec<(&'static str, usize, f64)> =
        reports.iter().map(|report| (report.name, report.payload_bytes, report.msgs_per_sec.median)).collect();
    for report in reports.iter_mut() {
        let Some(baseline) = baseline_of(report.name) else { continue };
        report.vs_baseline = medians
            .iter()
            .find(|(name, payload_bytes, median)| {
                *name == baseline.as_str() && *payload_bytes == report.payload_bytes && *median > 0.0
            })
            .filter(|_| report.msgs_per_sec.median > 0.0)
            .map(|(_, _, median)| report.msgs_per_sec.median / median);
    }
}

fn eprint_progress(name: &str) {
    #[allow(clippy::print_stderr, reason = "progress for a person at a terminal")]
    {
        eprintln!("running {name} …");
    }
}

fn render_table(report: &Report, out: &mut impl Write) -> io::Result<()> {
    let machine = &report.machine;
    writeln!(
        out,
        "{} cores, {}, kernel {}, myc {} ({})",
        machine.cores, machine.cpu_model, machine.kernel, machine.myc_version, machine.profile
    )?;
    writeln!(
        out,
        "{:<18} {:>8} {:>5} {:>14} {:>12} {:>12} {:>7} {:>7} {:>7} {:>6} {:>18} {:>8}  ok",
        "scenario",
        "payload",
        "runs",
        "median msg/s",
        "min",
        "max",
        "×raw",
        "×nats",
        "×base",
        "lost",
        "lat µs 50/99/999",
        "cpu µs"
    )?;
    // Ratios of medians to the ceiling and to the peer at the same payload.
    let ratio = |scenario: &ScenarioReport, peer: &str| {
        report
            .scenarios
            .iter()
            .find(|base| {
                base.name == peer && base.payload_bytes == scenario.payload_bytes && base.msgs_per_sec.median > 0.0
            })
            .filter(|_| scenario.name != peer && scenario.msgs_per_sec.median > 0.0)
            .map_or(String::new(), |base| format!("{:.2}", scenario.msgs_per_sec.median / base.msgs_per_sec.median))
    };
    for scenario in &report.scenarios {
        let stats = scenario.msgs_per_sec;
        writeln!(
            out,
            "{:<18} {:>6} B {:>5} {:>14} {:>12} {:>12} {:>7} {:>7} {:>7} {:>6} {:>18} {:>8}  {}{}",
            scenario.name,
            scenario.payload_bytes,
            scenario.runs,
            human_rate(stats.median),
            human_rate(stats.min),
            human_rate(stats.max),
            ratio(scenario, "raw_uds"),
            ratio(scenario, "nats_e2e_1"),
            scenario.vs_baseline.map_or(String::new(), |ratio| format!("{ratio:.2}")),
            scenario.lost.map_or(String::new(), |lost| lost.to_string()),
            scenario.latency_us.map_or(String::new(), |l| format!("{:.0}/{:.0}/{:.0}", l.p50, l.p99, l.p999)),
            scenario.cpu_us_per_msg.map_or(String::new(), |cpu| format!("{cpu:.3}")),
            if scenario.skipped {
                "skipped"
            } else if scenario.ok {
                "yes"
            } else {
                "NO"
            },
            if scenario.note.is_empty() { String::new() } else { format!("  ({})", scenario.note) },
        )?;
    }
    Ok(())
}

fn human_rate(rate: f64) -> String {
    if rate >= 1e6 { format!("{:.2} M", rate / 1e6) } else { format!("{:.1} k", rate / 1e3) }
}

fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                line.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |text| text.trim().to_owned());
    Machine {
        cores: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model,
        kernel,
        myc_version: env!("CARGO_PKG_VERSION"),
        profile: if cfg!(debug_assertions) { "debug build: figures are not meaningful" } else { "release" },
    }
}

/// A Protocol V2 market-data message of exactly `len` bytes (at least 34):
/// one vendor TLV (standard or extended form, as its length needs) filling
/// the rest, with `sequence` in the header.
pub(crate) fn message_of_len(len: usize, sequence: u64) -> anyhow::Result<Vec<u8>> {
    let rest = len.saturating_sub(myc_codec::HEADER_LEN).max(2);
    let payload_len = if rest - 2 <= 255 { rest - 2 } else { rest.saturating_sub(5) };
    let header =
        myc_codec::Header::new(myc_codec::Domain::MarketData, myc_codec::Source::TestClient, sequence, sequence);
    let message =
        myc_codec::MessageBuilder::new(header).tlv(myc_codec::TlvType::from_u8(200), &vec![0x5A; payload_len])?.build();
    Ok(message)
}

/// Publishes `n_messages` messages of `payload_bytes` through `publisher`,
/// numbered from 1, and flushes; returns when the first was published.
pub(crate) async fn publish_numbered(
    publisher: &impl myc_shim::Publisher,
    n_messages: u64,
    payload_bytes: usize,
) -> anyhow::Result<std::time::Instant> {
    let mut template = message_of_len(payload_bytes, 1)?;
    let started = std::time::Instant::now();
    for sequence in 1..=n_messages {
        template[8..16].copy_from_slice(&sequence.to_le_bytes());
        publisher.publish(&template).await?;
    }
    publisher.flush(Duration::from_secs(120)).await?;
    Ok(started)
}

/// As [`publish_numbered`], `batch` messages per `publish_batch` call.
pub(crate) async fn publish_numbered_in_batches(
    publisher: &impl myc_shim::Publisher,
    n_messages: u64,
    payload_bytes: usize,
    batch: usize,
) -> anyhow::Result<std::time::Instant> {
    let template = message_of_len(payload_bytes, 1)?;
    let mut buffer = template.repeat(batch);
    let started = std::time::Instant::now();
    let mut sequence = 0;
    while sequence < n_messages {
        let count = usize::try_from(n_messages - sequence).unwrap_or(usize::MAX).min(batch);
        for message in buffer.chunks_exact_mut(template.len()).take(count) {
            sequence += 1;
            message[8..16].copy_from_slice(&sequence.to_le_bytes());
        }
        publisher.publish_batch(&buffer[..count * template.len()]).await?;
    }
    publisher.flush(Duration::from_secs(120)).await?;
    Ok(started)
}

/// Messages per second for `n_messages` done in `elapsed`.
pub(crate) fn rate(n_messages: u64, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a rate needs no more than f64's 53 bits")]
    let n = n_messages as f64;
    n / elapsed.as_secs_f64().max(1e-9)
}
