//! The verify scenario: two captures of 1,000,000 messages each (128-byte
//! payloads, the candidate 40 µs behind), compared offline from the files,
//! streaming. Reports messages per second per side and this process's peak
//! RSS.

use std::fs::File;
use std::time::Instant;

use anyhow::bail;
use myc_verify::join::Ignore;
use myc_verify::pcapng::Writer;
use myc_verify::stream::CaptureStream;

use super::process::{own_peak_rss, reset_own_peak_rss};
use super::{Rss, RunResult, Scenario, rate};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario { name: "verify", payload_bytes: 128, run: verify_files, n_messages: 1_000_000 }]
}

fn verify_files(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let (reference, candidate) = (dir.path().join("relay.pcapng"), dir.path().join("broker.pcapng"));
    for (path, name, delay) in [(&reference, "relay:/bench.sock", 0), (&candidate, "broker:bench", 40_000)] {
        let mut writer = Writer::new(File::create(path)?)?;
        let interface = writer.interface(name)?;
        let mut message = super::message_of_len(payload_bytes, 1)?;
        for sequence in 1..=n_messages {
            message[8..16].copy_from_slice(&sequence.to_le_bytes());
            writer.packet(interface, 1_700_000_000_000_000_000 + sequence * 1_000 + delay, &message)?;
        }
        writer.finish()?;
    }
    reset_own_peak_rss();
    let started = Instant::now();
    let (reference, candidate) = (CaptureStream::open(&reference, None)?, CaptureStream::open(&candidate, None)?);
    let comparison = myc_verify::join::compare(reference, candidate, Ignore::default(), 5);
    let elapsed = started.elapsed();
    if comparison.counts.matched != n_messages {
        bail!("verify matched {} of {n_messages}", comparison.counts.matched);
    }
    let rss = Rss { broker: None, client: own_peak_rss(), ..Rss::default() };
    Ok(RunResult { lost: Some(0), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}
