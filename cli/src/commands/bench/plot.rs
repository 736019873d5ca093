//! `myc bench --plot FILE.svg`: the run as pictures — median throughput of
//! every scenario relative to `raw_uds` (the ceiling) and to `nats_e2e_1`
//! (the peer) at the same payload size, and the latency percentiles. Drawn
//! with plotters' SVG backend from primitives (bars and text), so no font
//! files are needed.

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use super::{Report, ScenarioReport};

const WIDTH: u32 = 960;
const ROW: i32 = 22;
const LABEL: i32 = 260;
const BAR: i32 = 560;

/// Writes the charts of `report` to `path`.
pub(super) fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let measured: Vec<&ScenarioReport> =
        report.scenarios.iter().filter(|scenario| scenario.ok && !scenario.skipped && scenario.runs > 0).collect();
    let relative = |peer: &str| -> Vec<(String, f64)> {
        measured
            .iter()
            // Fixed-rate scenarios measure time, not throughput.
            .filter(|scenario| scenario.name != peer && !matches!(scenario.name, "latency" | "connect"))
            .filter_map(|scenario| {
                let base = measured
                    .iter()
                    .find(|other| other.name == peer && other.payload_bytes == scenario.payload_bytes)?;
                let ratio = scenario.msgs_per_sec.median / base.msgs_per_sec.median.max(f64::MIN_POSITIVE);
                Some((format!("{} {} B", scenario.name, scenario.payload_bytes), ratio))
            })
            .collect()
    };
    let panels = [
        ("Median throughput relative to raw_uds (the ceiling, same payload)", relative("raw_uds")),
        ("Median throughput relative to nats_e2e_1 (the peer, same payload)", relative("nats_e2e_1")),
    ];
    let latencies: Vec<(String, [f64; 3])> = measured
        .iter()
        .filter_map(|scenario| {
            let latency = scenario.latency_us?;
            Some((format!("{} {} B", scenario.name, scenario.payload_bytes), [latency.p50, latency.p99, latency.p999]))
        })
        .collect();
    let rows: usize = panels.iter().map(|(_, bars)| bars.len() + 3).sum::<usize>() + latencies.len() * 3 + 5;
    let height = u32::try_from(rows).unwrap_or(200) * ROW.unsigned_abs() + 60;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).context("cannot draw")?;
    let text = |size: u32| ("sans-serif", size).into_font();
    let machine = &report.machine;
    let title = format!("myc bench — {} cores, {}, kernel {}", machine.cores, machine.cpu_model, machine.kernel);
    root.draw(&Text::new(title, (10, 10), text(16))).context("cannot draw")?;
    let mut y = 40;
    for (heading, bars) in &panels {
        root.draw(&Text::new(heading.to_owned(), (10, y), text(14).style(FontStyle::Bold))).context("cannot draw")?;
        y += ROW + 4;
        let widest = bars.iter().map(|(_, ratio)| *ratio).fold(1.0_f64, f64::max);
        for (label, ratio) in bars {
            root.draw(&Text::new(label.clone(), (10, y + 3), text(12))).context("cannot draw")?;
            #[allow(clippy::cast_possible_truncation, reason = "pixels")]
            let length = ((ratio / widest) * f64::from(BAR)).round() as i32;
            let colour = if *ratio >= 1.0 { RGBColor(46, 125, 50) } else { RGBColor(30, 100, 170) };
            root.draw(&Rectangle::new([(LABEL, y), (LABEL + length.max(1), y + ROW - 6)], colour.filled()))
                .context("cannot draw")?;
            let value = if *ratio >= 10.0 { format!("{ratio:.0}×") } else { format!("{:.0} %", ratio * 100.0) };
            root.draw(&Text::new(value, (LABEL + length + 6, y + 3), text(12))).context("cannot draw")?;
            y += ROW;
        }
        y += ROW;
    }
    if !latencies.is_empty() {
        root.draw(&Text::new("Latency at 10,000 msg/s (µs): p50, p99, p999", (10, y), text(14).style(FontStyle::Bold)))
            .context("cannot draw")?;
        y += ROW + 4;
        let widest = latencies.iter().flat_map(|(_, values)| values.iter().copied()).fold(1.0_f64, f64::max);
        let shades = [RGBColor(120, 170, 220), RGBColor(30, 100, 170), RGBColor(10, 40, 90)];
        for (label, values) in &latencies {
            for ((name, value), shade) in ["p50", "p99", "p999"].iter().zip(values).zip(shades) {
                root.draw(&Text::new(format!("{label} {name}"), (10, y + 3), text(12))).context("cannot draw")?;
                #[allow(clippy::cast_possible_truncation, reason = "pixels")]
                let length = ((value / widest) * f64::from(BAR)).round() as i32;
                root.draw(&Rectangle::new([(LABEL, y), (LABEL + length.max(1), y + ROW - 6)], shade.filled()))
                    .context("cannot draw")?;
                root.draw(&Text::new(format!("{value:.0}"), (LABEL + length + 6, y + 3), text(12)))
                    .context("cannot draw")?;
                y += ROW;
            }
        }
    }
    root.present().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
