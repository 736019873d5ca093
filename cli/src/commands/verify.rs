//! `myc verify files` compares two captures (or two interfaces of one);
//! `myc verify live` taps a relay (reference) and a broker topic (candidate)
//! for a while and compares what they carried. Reports per spec/capture.md —
//! exit 0 identical, 1 differs, 2 error. A capture that turns corrupt
//! part-way is compared up to the bad block, the offset is reported, and the
//! exit is 2. Live taps keep what they see in memory for the duration.

use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use anyhow::{Context, bail};
use myc_verify::join::{Captured, Ignore};
use myc_verify::report::Report;
use myc_verify::stream::{CaptureStream, StreamInfo};

use super::Outcome;
use crate::args::{Format, VerifyCommand};
use crate::progress;

pub(crate) fn run(command: &VerifyCommand, format: Format) -> anyhow::Result<Outcome> {
    match command {
        VerifyCommand::Files { reference, candidate, reference_if, candidate_if, ignore, examples } => {
            let ignore = parse_ignore(ignore)?;
            let (reference_path, candidate_path) = match candidate {
                Some(candidate) => (reference.clone(), candidate.clone()),
                None => {
                    if reference_if.is_none() || candidate_if.is_none() {
                        bail!("one capture file holds both streams: name them with --reference-if and --candidate-if");
                    }
                    (reference.clone(), reference.clone())
                }
            };
            let reference_stream = CaptureStream::open(&reference_path, reference_if.as_deref())?;
            let candidate_stream = CaptureStream::open(&candidate_path, candidate_if.as_deref())?;
            let (reference_info, candidate_info) = (reference_stream.info(), candidate_stream.info());
            let bar = progress::bytes_bar(reference_info.total_bytes + candidate_info.total_bytes, "verify");
            let mut seen = 0u32;
            let reference_stream = reference_stream.inspect(|_| {
                seen = seen.wrapping_add(1);
                if seen % 65_536 == 0 {
                    let read = reference_info.bytes_read.load(Ordering::Relaxed);
                    bar.set_position(read + candidate_info.bytes_read.load(Ordering::Relaxed));
                }
            });
            let comparison = myc_verify::join::compare(reference_stream, candidate_stream, ignore, *examples);
            bar.finish_and_clear();
            let name = |info: &StreamInfo, path: &Path| info.interface().unwrap_or_else(|| path.display().to_string());
            let report = Report::new(
                &comparison,
                &name(&reference_info, &reference_path),
                &name(&candidate_info, &candidate_path),
                SystemTime::now(),
            );
            render(&report, format)?;
            for (path, info) in [(&reference_path, &reference_info), (&candidate_path, &candidate_info)] {
                if let Some(error) = info.error() {
                    bail!(
                        "{}: invalid pcapng at byte {} ({}); compared what came before it",
                        path.display(),
                        error.offset,
                        error.reason
                    );
                }
            }
            Ok(if report.identical() { Outcome::Success } else { Outcome::Negative })
        }
        VerifyCommand::Live { relay, broker, topic, nats, subject, duration, ignore, examples } => {
            let ignore = parse_ignore(ignore)?;
            let duration = humantime::parse_duration(duration).context("bad --duration")?;
            if broker.is_none() && nats.is_none() {
                bail!("name the candidate: --broker ENDPOINT --topic T, or --nats URL --subject S");
            }
            let taps = super::capture::plan(&super::capture::Streams {
                relays: std::slice::from_ref(relay),
                brokers: broker.as_slice(),
                topics: topic.as_slice(),
                nats: nats.as_slice(),
                subjects: subject.as_slice(),
            })?;
            let (reference, candidate) = tap_for(&taps, duration)?;
            let comparison = myc_verify::join::compare(reference, candidate, ignore, *examples);
            let report = Report::new(&comparison, &taps[0].name(), &taps[1].name(), SystemTime::now());
            render(&report, format)?;
            Ok(if report.identical() { Outcome::Success } else { Outcome::Negative })
        }
    }
}

fn render(report: &Report, format: Format) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Json => report.render_json(&mut out)?,
        Format::Human => report.render_human(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// Taps the two streams for `duration`; returns what each saw, in arrival
/// order. Both taps are connected (the broker subscription confirmed) before
/// the clock starts.
fn tap_for(
    taps: &[super::capture::Tap],
    duration: std::time::Duration,
) -> anyhow::Result<(Vec<Captured>, Vec<Captured>)> {
    let runtime = super::runtime()?;
    runtime.block_on(tap_live(taps, duration, |index| index == 0))
}

/// Taps `taps` for `duration` and splits what they saw into the reference
/// (taps for which `is_reference` holds) and the candidate, each in arrival
/// order. Every tap is connected before the clock starts. The guard's live
/// verify samples use this too.
pub(crate) async fn tap_live(
    taps: &[super::capture::Tap],
    duration: std::time::Duration,
    is_reference: impl Fn(usize) -> bool,
) -> anyhow::Result<(Vec<Captured>, Vec<Captured>)> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(65_536);
    let _tasks = super::capture::start_taps(taps, &tx).await?;
    drop(tx);
    let mut streams = (Vec::new(), Vec::new());
    let deadline = tokio::time::sleep(duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            tapped = rx.recv() => {
                let Some((index, bytes, arrival_ns)) = tapped else { break };
                let captured = Captured { bytes: bytes.to_vec(), arrival_ns };
                if is_reference(index) { streams.0.push(captured) } else { streams.1.push(captured) }
            }
        }
    }
    Ok(streams)
}

fn parse_ignore(fields: &[String]) -> anyhow::Result<Ignore> {
    let mut ignore = Ignore::default();
    for field in fields {
        match field.as_str() {
            "timestamp" => ignore.timestamp = true,
            "checksum" => ignore.checksum = true,
            "sequence" => ignore.sequence = true,
            other => bail!("--ignore takes timestamp, checksum or sequence, not {other:?}"),
        }
    }
    Ok(ignore)
}
