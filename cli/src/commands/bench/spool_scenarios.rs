//! The spool scenarios: `spool_always` (the `broker` stage with every
//! message written to the spool before its publish returns, `fdatasync`
//! every 10 ms, to set against `shim_broker` in the same run) and
//! `spool_replay` (a spool of messages left by an earlier run, handed to
//! the broker by a fresh producer before anything new; timed from the
//! spool recovered, its start-up scan logged apart).
//!
//! Both use a spool in a temporary directory; neither measures the disk's
//! sync speed alone (see `docs/spool.md` for what `spool_fsync` trades).

use std::time::{Duration, Instant};

use anyhow::bail;
use myc_config::Stage;
use myc_shim::{BrokerPublisher, PrimaryOptions, RelayPublisher, ServicePublisher, ShadowLimits, SpoolPolicy};
use myc_shim::{Publisher, StageHandle};
use myc_transport::{BufferLimits, Spool, SpoolOptions};

use super::process::{ChildBroker, own_peak_rss, reset_own_peak_rss};
use super::{Rss, RunResult, Scenario, rate};

const STALL: Duration = Duration::from_secs(10);
/// Messages per `publish_batch` in `spool_always`.
const BATCH: usize = 64;

pub(super) fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario { name: "spool_always", payload_bytes: 128, run: spool_always, n_messages: 2_000_000 },
        Scenario { name: "spool_replay", payload_bytes: 128, run: spool_replay, n_messages: 1_000_000 },
    ]
}

/// A spool guard in `dir` with this policy and the default settings
/// (1 GiB, `fdatasync` every 10 ms).
fn guard(dir: &std::path::Path, policy: SpoolPolicy) -> PrimaryOptions {
    PrimaryOptions {
        breaker: Some(myc_transport::BreakerOptions::default()),
        spool: Some((policy, SpoolOptions::new(dir.join("spool")))),
    }
}

/// Every message through the spool before its publish returns, in
/// batches of [`BATCH`] messages (one spool write each), as a feed adapter
/// hands over the events of one frame.
fn spool_always(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    let guard = guard(dir.path(), SpoolPolicy::Always);
    super::shim_scenarios::through_shim(n_messages, payload_bytes, Stage::Broker, Some(guard), BATCH)
}

/// Spools `n_messages` as a producer would have left them, then times a
/// fresh producer handing them all to the broker and one subscriber.
fn spool_replay(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let dir = tempfile::tempdir()?;
    {
        let (mut spool, _) = Spool::open(SpoolOptions::new(dir.path().join("spool")))?;
        let mut template = super::message_of_len(payload_bytes, 1)?;
        let mut batch = Vec::with_capacity(4096);
        let mut sequence = 0;
        while sequence < n_messages {
            batch.clear();
            while batch.len() < 4096 && sequence < n_messages {
                sequence += 1;
                template[8..16].copy_from_slice(&sequence.to_le_bytes());
                batch.push(template.clone());
            }
            spool.append_batch(&batch)?;
        }
        spool.sync()?;
    }
    let broker = ChildBroker::start()?;
    reset_own_peak_rss();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let subscriber = myc_broker::Client::start(myc_broker::ClientOptions::new(broker.endpoint.clone()));
        let mut subscription = subscriber.subscribe("market_data", "")?;
        subscription.wait_active(STALL).await?;
        let counter = tokio::spawn(async move {
            let mut received = 0u64;
            let mut next = 1u64;
            let mut in_order = true;
            while received < n_messages {
                let Ok(Some(batch)) = tokio::time::timeout(STALL, subscription.recv_batch()).await else { break };
                for payload in batch.payloads() {
                    let sequence =
                        payload.get(8..16).map_or(0, |bytes| u64::from_le_bytes(bytes.try_into().unwrap_or_default()));
                    in_order &= sequence == next;
                    next = sequence + 1;
                }
                received += batch.len() as u64;
            }
            (received, in_order, Instant::now())
        });
        let topics = ["market_data", "signals", "execution", "system"].map(str::to_owned);
        let nowhere = ["/nonexistent", "/nonexistent", "/nonexistent", "/nonexistent"].map(Into::into);
        let opening = Instant::now();
        let mut publisher = ServicePublisher::new(
            RelayPublisher::new(nowhere, BufferLimits::default()),
            BrokerPublisher::new(
                myc_broker::Client::start(myc_broker::ClientOptions::new(broker.endpoint.clone())),
                topics,
            ),
            StageHandle::new(Stage::Broker),
            ShadowLimits::from_settings(&myc_config::ShadowSettings::default()),
        );
        publisher.guard_broker_primary(guard(dir.path(), SpoolPolicy::Overflow))?;
        // The replay proper: from the spool recovered (its scan is a start-up
        // cost, logged here) to the last message delivered.
        let started = Instant::now();
        tracing::info!(open_and_recover = ?started - opening, "spool_replay: spool opened");
        let (received, in_order, finished) = counter.await?;
        if !in_order {
            bail!("the replay arrived out of order");
        }
        publisher.flush(STALL).await?;
        anyhow::Ok((finished - started, n_messages.saturating_sub(received)))
    })?;
    let rss = Rss { broker: broker.peak_rss(), client: own_peak_rss(), ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}
