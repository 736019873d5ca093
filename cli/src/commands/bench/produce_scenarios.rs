//! The producer scenarios: trade frames → Protocol V2 messages, JSON
//! parsing and decimal conversion included, on one core, as a deterministic
//! dry run (the messages are built, not sent): events per second, one
//! scenario per adapter — `produce` (Kraken v2 trades), `produce_coinbase`
//! (Coinbase matches) and `produce_binance` (Binance trades on a combined
//! stream, the envelope parsed too).

use std::time::Instant;

use anyhow::bail;
use myc_codec::Source;
use myc_producers::{Adapter, Binance, Coinbase, Kraken, Outbox, Stamper};

use super::{RunResult, Scenario, rate};

/// Distinct frames per scenario, as a live session would send them.
const N_FRAMES: u64 = 512;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "produce", payload_bytes: 40, run: kraken_trades, n_messages: 2_000_000 },
        Scenario { name: "produce_coinbase", payload_bytes: 40, run: coinbase_matches, n_messages: 2_000_000 },
        Scenario { name: "produce_binance", payload_bytes: 40, run: binance_trades, n_messages: 2_000_000 },
    ]
}

fn kraken_trades(n_events: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let frames = (0..N_FRAMES).map(|n| {
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
    });
    adapter_rate(Kraken::new(Stamper::new(Source::KrakenCollector, true), 10), frames.collect(), n_events)
}

fn coinbase_matches(n_events: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let frames = (0..N_FRAMES).map(|n| {
        format!(
            r#"{{"type":"match","trade_id":{},"maker_order_id":"ac928c66-ca53-498f-9c13-a110027a60e8","taker_order_id":"132fb6ae-456b-4654-b4e0-d681ac05cea1","side":"{}","size":"0.{:08}","price":"{}.{:02}","product_id":"BTC-USD","sequence":{},"time":"2025-11-26T16:00:{:02}.{:06}Z"}}"#,
            4_665_906 + n,
            if n % 2 == 0 { "buy" } else { "sell" },
            1 + n * 7919 % 99_999_999,
            72_900 + n % 60,
            n % 100,
            50_000 + n,
            n % 60,
            n * 1_337 % 1_000_000
        )
    });
    adapter_rate(Coinbase::new(Stamper::new(Source::CoinbaseCollector, true)), frames.collect(), n_events)
}

fn binance_trades(n_events: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let frames = (0..N_FRAMES).map(|n| {
        let ms = 1_764_172_800_000 + n * 137;
        format!(
            r#"{{"stream":"btcusdt@trade","data":{{"e":"trade","E":{},"s":"BTCUSDT","t":{},"p":"{}.{:08}","q":"0.{:08}","T":{ms},"m":{},"M":true}}}}"#,
            ms + 2,
            12_345 + n,
            72_900 + n % 60,
            n * 10_000 % 100_000_000,
            1 + n * 7919 % 99_999_999,
            n % 2 == 0
        )
    });
    adapter_rate(Binance::new(Stamper::new(Source::BinanceCollector, true)), frames.collect(), n_events)
}

/// Feeds `frames` round and round to `adapter` until it built `n_events`
/// messages; every frame must be accepted.
fn adapter_rate(mut adapter: impl Adapter, frames: Vec<String>, n_events: u64) -> anyhow::Result<RunResult> {
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
        if index == frames.len() && adapter.built() == 0 {
            bail!("the benchmark frames built no message: {:?}", adapter.counters());
        }
    }
    let elapsed = started.elapsed();
    if adapter.counters().frames_rejected > 0 || adapter.counters().events_dropped.values().any(|&n| n > 0) {
        bail!("the benchmark frames were not all accepted: {:?}", adapter.counters());
    }
    Ok(RunResult { lost: Some(0), ..RunResult::rate(rate(n_events, elapsed)) })
}
