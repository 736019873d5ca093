//! The producer scenario: Kraken v2 trade frames → Protocol V2 messages,
//! JSON parsing and decimal conversion included, on one core, as a
//! deterministic dry run (the messages are built, not sent): events per
//! second.

use std::time::Instant;

use anyhow::bail;
use myc_codec::Source;
use myc_producers::{Adapter, Kraken, Outbox, Stamper};

use super::{RunResult, Scenario, rate};

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![Scenario { name: "produce", payload_bytes: 40, run: kraken_trades, n_messages: 2_000_000 }]
}

fn kraken_trades(n_events: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    // A few hundred distinct frames, as a live session would send them.
    let frames: Vec<String> = (0..512u64)
        .map(|n| {
            format!(
                r#"{{"channel":"trade","type":"update","data":[{{"symbol":"BTC/USD","side":"{}","price":{}.{},"qty":0.{:08},"ord_type":"market","trade_id":{},"timestamp":"2025-11-26T16:00:{:02}.{:06}Z"}}]}}"#,
                if n % 2 == 0 { "buy" } else { "sell" },
                72_900 + n % 60,
                n % 10,
                1 + n * 7919 % 99_999_999,
                4_665_906 + n,
                n % 60,
                n * 1_337 % 1_000_000
            )
        })
        .collect();
    let mut adapter = Kraken::new(Stamper::new(Source::KrakenCollector, true), 10);
    let mut out = Outbox::default();
    let started = Instant::now();
    let mut index = 0;
    while adapter.built() < n_events {
        let _ = adapter.frame(&frames[index % frames.len()], 0, 0, &mut out);
        index += 1;
        if out.len() >= 1024 {
            std::hint::black_box(out.bytes());
            out.clear();
        }
    }
    let elapsed = started.elapsed();
    if adapter.counters().frames_rejected > 0 || adapter.counters().events_dropped.values().any(|&n| n > 0) {
        bail!("the benchmark frames were not all accepted: {:?}", adapter.counters());
    }
    Ok(RunResult { lost: Some(0), ..RunResult::rate(rate(n_events, elapsed)) })
}
