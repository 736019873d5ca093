//! The shim scenarios: a `ServicePublisher` in the `broker` stage (to set
//! against `broker_e2e_1`, the raw client, in the same run) and in
//! `dual_relay_primary` (`dual`: both paths fully delivered, to set against
//! `shim_broker`), with a child `myc broker` and a child `myc relay`; and
//! `stage_lookup`, the per-message cost of reading the stage and its route.

use std::time::{Duration, Instant};

use anyhow::bail;
use myc_config::Stage;
use myc_relay_compat::RelayTap;
use myc_shim::{BrokerPublisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};
use myc_transport::BufferLimits;

use super::process::{ChildBroker, ChildServer, own_peak_rss, reset_own_peak_rss};
use super::{Rss, RunResult, Scenario, rate};

const STALL: Duration = Duration::from_secs(10);

pub(super) fn scenarios() -> Vec<Scenario> {
    let mut all: Vec<Scenario> = [128, 1024]
        .into_iter()
        .flat_map(|payload_bytes| {
            [
                Scenario { name: "shim_broker", payload_bytes, run: shim_broker, n_messages: 2_000_000 },
                Scenario { name: "dual", payload_bytes, run: dual, n_messages: 1_000_000 },
            ]
        })
        .collect();
    all.push(Scenario { name: "stage_lookup", payload_bytes: 0, run: stage_lookup, n_messages: 100_000_000 });
    all
}

fn shim_broker(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    through_shim(n_messages, payload_bytes, Stage::Broker, None, 1)
}

fn dual(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    through_shim(n_messages, payload_bytes, Stage::DualRelayPrimary, None, 1)
}

/// Counts what arrives until `n` messages or a stall; returns the count and
/// when the last arrived.
type Counter = tokio::task::JoinHandle<(u64, Instant)>;

/// `n_messages` through a service publisher at `stage` (its broker path
/// guarded by `guard` when given) to a child broker and relay, every one
/// counted at the far end; `batch` messages per publish call (1: `publish`,
/// more: `publish_batch`).
pub(super) fn through_shim(
    n_messages: u64,
    payload_bytes: usize,
    stage: Stage,
    guard: Option<myc_shim::PrimaryOptions>,
    batch: usize,
) -> anyhow::Result<RunResult> {
    let broker = ChildBroker::start()?;
    let relay = ChildServer::start(&["relay", "--domain", "market_data"], |socket| {
        vec!["--socket".to_owned(), socket.display().to_string()]
    })?;
    reset_own_peak_rss();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let route = myc_rollout::Route::of(stage);
        let mut counters: Vec<Counter> = Vec::new();
        if route.relay.is_some() {
            counters.push(super::relay_scenarios::count_relay(RelayTap::connect(&relay.socket).await?, n_messages));
        }
        let subscriber = myc_broker::Client::start(myc_broker::ClientOptions::new(broker.endpoint.clone()));
        if route.broker.is_some() {
            let mut subscription = subscriber.subscribe("market_data", "")?;
            subscription.wait_active(STALL).await?;
            counters.push(tokio::spawn(async move {
                let mut received = 0u64;
                while received < n_messages {
                    let Ok(Some(batch)) = tokio::time::timeout(STALL, subscription.recv_batch()).await else { break };
                    received += batch.len() as u64;
                }
                (received, Instant::now())
            }));
        }
        let topics = ["market_data", "signals", "execution", "system"].map(str::to_owned);
        let relay_paths = [relay.socket.clone(), "/nonexistent".into(), "/nonexistent".into(), "/nonexistent".into()];
        // "Both paths fully delivered": the shadow may queue the whole run
        // (at 1 KiB the broker path is slower than the relay primary, and a
        // shadow never slows its primary, so a smaller bound drops by design).
        let whole_run = BufferLimits {
            max_bytes: usize::try_from(n_messages).unwrap_or(usize::MAX).saturating_mul(payload_bytes + 64),
            max_messages: usize::try_from(n_messages).unwrap_or(usize::MAX).saturating_add(1),
            ..BufferLimits::default()
        };
        let mut broker_options = myc_broker::ClientOptions::new(broker.endpoint.clone());
        // A primary broker path keeps the default buffer: it blocks the
        // publisher when full, which is the memory bound being measured.
        if route.broker == Some(myc_rollout::Role::Shadow) {
            broker_options.buffer = whole_run;
        }
        let mut publisher = ServicePublisher::new(
            RelayPublisher::new(relay_paths, BufferLimits::default()),
            BrokerPublisher::new(myc_broker::Client::start(broker_options), topics),
            StageHandle::new(stage),
            ShadowLimits { queue_bytes: whole_run.max_bytes, breaker: myc_transport::BreakerOptions::default() },
        );
        if let Some(guard) = guard {
            publisher.guard_broker_primary(guard)?;
        }
        let started = if batch > 1 {
            super::publish_numbered_in_batches(&publisher, n_messages, payload_bytes, batch).await?
        } else {
            super::publish_numbered(&publisher, n_messages, payload_bytes).await?
        };
        let mut lost = 0;
        let mut finished = started;
        for counter in counters {
            let (received, at) = counter.await?;
            lost += n_messages.saturating_sub(received);
            finished = finished.max(at);
        }
        let summary = publisher.summary();
        if summary.relay.failed + summary.broker.failed > 0 {
            bail!("publishes failed: {summary:?}");
        }
        anyhow::Ok((finished - started, lost))
    })?;
    let rss = Rss { broker: broker.peak_rss(), client: own_peak_rss(), ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// Reads the stage and its route `n` times, as the service publisher does
/// per message; the rate's inverse is the cost per message.
fn stage_lookup(n_lookups: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let stage = StageHandle::new(Stage::DualRelayPrimary);
    let started = Instant::now();
    let mut shadows = 0u64;
    for _ in 0..n_lookups {
        let route = myc_rollout::Route::of(std::hint::black_box(&stage).get());
        shadows += u64::from(route.broker == Some(myc_rollout::Role::Shadow));
    }
    let elapsed = started.elapsed();
    if std::hint::black_box(shadows) != n_lookups {
        bail!("the stage changed under the benchmark");
    }
    Ok(RunResult::rate(rate(n_lookups, elapsed)))
}
