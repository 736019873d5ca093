//! `myc bench`: runs scenarios several times, reports min / median / max
//! throughput per scenario as a table or as one JSON object (DESIGN.md,
//! "Performance targets"; spec/cli.md for the names and the shape).
//!
//! Scenarios measure in-process with the release build; figures that matter
//! are ratios between scenarios of one run, since the machine is noisy. This
//! module owns the running and the report; each scenario family lives in its
//! own file.

mod codec_scenarios;

use std::io::{self, Write};
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use super::Outcome;
use crate::args::{BenchArgs, Format};

/// One scenario of the suite: a name, a payload size, and a function that does
/// one timed run and returns messages per second.
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) payload_bytes: usize,
    /// Runs the scenario once over `n_messages` messages; returns the rate.
    pub(crate) run: fn(n_messages: u64) -> anyhow::Result<f64>,
    /// Messages per run in a full run (`--quick` uses a hundredth).
    pub(crate) n_messages: u64,
}

/// Groups accepted by `--scenario` besides the scenario names.
const GROUPS: &[(&str, &[&str])] = &[("codec", &["codec_build", "codec_parse", "codec_parse_crc"])];

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
    let report = Report { machine: machine(), scenarios: reports };
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
    codec_scenarios::scenarios()
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
    let mut rates = Vec::with_capacity(runs);
    let mut note = String::new();
    for _ in 0..runs {
        match (scenario.run)(n_messages) {
            Ok(rate) => rates.push(rate),
            Err(error) => {
                note = format!("{error:#}");
                break;
            }
        }
    }
    rates.sort_by(f64::total_cmp);
    let stats = match (rates.first(), rates.last()) {
        (Some(&min), Some(&max)) => Stats { min, median: rates[rates.len() / 2], max },
        _ => Stats { min: 0.0, median: 0.0, max: 0.0 },
    };
    ScenarioReport {
        name: scenario.name,
        payload_bytes: scenario.payload_bytes,
        runs: rates.len(),
        msgs_per_sec: stats,
        ok: note.is_empty(),
        note,
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
        "{:<18} {:>8} {:>5} {:>14} {:>14} {:>14}  ok",
        "scenario", "payload", "runs", "median msg/s", "min", "max"
    )?;
    for scenario in &report.scenarios {
        let stats = scenario.msgs_per_sec;
        writeln!(
            out,
            "{:<18} {:>6} B {:>5} {:>14} {:>14} {:>14}  {}{}",
            scenario.name,
            scenario.payload_bytes,
            scenario.runs,
            human_rate(stats.median),
            human_rate(stats.min),
            human_rate(stats.max),
            if scenario.ok { "yes" } else { "NO" },
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

/// Messages per second for `n_messages` done in `elapsed`.
pub(crate) fn rate(n_messages: u64, elapsed: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a rate needs no more than f64's 53 bits")]
    let n = n_messages as f64;
    n / elapsed.as_secs_f64().max(1e-9)
}
