//! The relay scenarios: a producer (the relay client) → a child `myc relay`
//! → one or four consumers (relay taps), every message counted. The relay
//! acknowledges nothing, so a consumer that falls behind loses messages; the
//! scenario reports them.

use std::time::{Duration, Instant};

use myc_codec::{Domain, Source};
use myc_relay_compat::{RelayClient, RelayClientOptions, RelayTap};

use super::process::ChildServer;
use super::{Fault, Rss, RunResult, Scenario, rate};

const STALL: Duration = Duration::from_secs(10);

pub(super) fn scenarios() -> Vec<Scenario> {
    [128, 1024]
        .into_iter()
        .flat_map(|payload_bytes| {
            [
                Scenario { name: "relay_e2e_1", payload_bytes, run: relay_e2e_1, n_messages: 2_000_000 },
                Scenario { name: "relay_e2e_4", payload_bytes, run: relay_e2e_4, n_messages: 1_000_000 },
                Scenario {
                    name: "relay_e2e_1_base",
                    payload_bytes,
                    run: relay_e2e_1,
                    n_messages: super::fault_messages(payload_bytes),
                },
                Scenario {
                    name: "relay_e2e_1_stuck",
                    payload_bytes,
                    run: relay_e2e_1_stuck,
                    n_messages: super::fault_messages(payload_bytes),
                },
                Scenario {
                    name: "relay_e2e_1_slow",
                    payload_bytes,
                    run: relay_e2e_1_slow,
                    n_messages: super::fault_messages(payload_bytes),
                },
            ]
        })
        .collect()
}

fn relay_e2e_1(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    relay_e2e(n_messages, payload_bytes, 1)
}

fn relay_e2e_4(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    relay_e2e(n_messages, payload_bytes, 4)
}

/// `relay_e2e_1` with a second consumer that connects and never reads: the
/// reading one's rate, to set against `relay_e2e_1` (target ≥ 90 %).
fn relay_e2e_1_stuck(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    relay_e2e_with(n_messages, payload_bytes, 1, Fault::Stuck)
}

/// `relay_e2e_1` with a second consumer that reads at a twentieth of the
/// pace (target ≥ 90 %).
fn relay_e2e_1_slow(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    relay_e2e_with(n_messages, payload_bytes, 1, Fault::Slow)
}

fn relay_e2e(n_messages: u64, payload_bytes: usize, n_consumers: usize) -> anyhow::Result<RunResult> {
    relay_e2e_with(n_messages, payload_bytes, n_consumers, Fault::None)
}

fn relay_e2e_with(
    n_messages: u64,
    payload_bytes: usize,
    n_consumers: usize,
    fault: Fault,
) -> anyhow::Result<RunResult> {
    let relay = ChildServer::start(&["relay", "--domain", "market_data"], |socket| {
        vec!["--socket".to_owned(), socket.display().to_string()]
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        // A consumer that never reads, or reads slowly: the relay must not
        // let it slow anyone.
        if fault != Fault::None {
            fault.occupy(tokio::net::UnixStream::connect(&relay.socket).await?);
        }
        let mut counters = Vec::new();
        for _ in 0..n_consumers {
            counters.push(count_relay(RelayTap::connect(&relay.socket).await?, n_messages));
        }
        // The relay registers each consumer as it accepts it, in order, so
        // the taps connected above see every message of the client below.
        let started = publish_numbered(&relay.socket, payload_bytes, n_messages).await?;
        let mut lost = 0;
        let mut finished = started;
        for counter in counters {
            let (received, at) = counter.await?;
            lost += n_messages - received;
            finished = finished.max(at);
        }
        anyhow::Ok((finished - started, lost))
    })?;
    let rss = Rss { broker: relay.peak_rss(), client: None, ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// Counts the messages `tap` delivers until `n_messages` arrived or none
/// came for [`STALL`]; answers how many and when the last came.
pub(super) fn count_relay(mut tap: RelayTap, n_messages: u64) -> tokio::task::JoinHandle<(u64, Instant)> {
    tokio::spawn(async move {
        let mut received = 0u64;
        while received < n_messages {
            let Ok(Ok(Some((batch, _arrival)))) = tokio::time::timeout(STALL, tap.next_batch()).await else {
                break;
            };
            let mut offset = 0;
            while offset < batch.len() {
                offset += myc_relay_compat::message_len(&batch[offset..]).max(1);
                received += 1;
            }
        }
        (received, Instant::now())
    })
}

/// A legacy producer (the relay client) at `socket` writes `n_messages` of
/// `payload_bytes`, sequences from 1, and flushes; answers when it started.
pub(super) async fn publish_numbered(
    socket: &std::path::Path,
    payload_bytes: usize,
    n_messages: u64,
) -> anyhow::Result<Instant> {
    let producer = RelayClient::start(RelayClientOptions::new(socket, Domain::MarketData, Source::TestClient));
    let mut template = super::message_of_len(payload_bytes, 1)?;
    let started = Instant::now();
    for sequence in 1..=n_messages {
        template[8..16].copy_from_slice(&sequence.to_le_bytes());
        producer.publish(&template).await?;
    }
    producer.flush(Duration::from_secs(120)).await?;
    Ok(started)
}
