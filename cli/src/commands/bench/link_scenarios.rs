//! The broker-link scenario `relay_link`: an unchanged legacy producer (the
//! relay client, no broker flag) → a child `myc relay --bridge` at
//! `dual_broker_primary` → one relay consumer and one broker subscriber
//! (on a child `myc broker`), every message counted on both sides. The rate
//! reported is the relay consumer's, to set against `relay_e2e_1` of the same
//! run (the `×base` column).
//!
//! It deliberately measures the relay side: the link must not slow it. The
//! link's buffer is sized to hold the whole run, so a broker path that lags
//! shows as time to drain, not as loss.

use std::time::Duration;

use anyhow::Context;
use myc_relay_compat::RelayTap;

use super::process::{ChildBroker, ChildServer};
use super::relay_scenarios::{count_relay, publish_numbered};
use super::{Rss, RunResult, Scenario, rate};

const STALL: Duration = Duration::from_secs(10);

pub(super) fn scenarios() -> Vec<Scenario> {
    [128, 1024]
        .into_iter()
        .map(|payload_bytes| Scenario { name: "relay_link", payload_bytes, run: relay_link, n_messages: 2_000_000 })
        .collect()
}

fn relay_link(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let broker = ChildBroker::start()?;
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let config = dir.path().join("myc.toml");
    let buffer_bytes = usize::try_from(n_messages)?.saturating_mul(payload_bytes + 64).max(64 << 20);
    std::fs::write(
        &config,
        format!(
            "[broker]\nendpoint = \"unix:{}\"\nbuffer_bytes = {buffer_bytes}\nbuffer_messages = {}\n\n\
             [rollout]\nfile = \"rollout.toml\"\ndefault_stage = \"dual_broker_primary\"\n",
            broker.socket.display(),
            n_messages + 1,
        ),
    )?;
    let config_arg = config.display().to_string();
    let relay =
        ChildServer::start(&["--config", &config_arg, "relay", "--domain", "market_data", "--bridge"], |socket| {
            vec!["--socket".to_owned(), socket.display().to_string()]
        })?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let relay_counter = count_relay(RelayTap::connect(&relay.socket).await?, n_messages);
        let client = myc_broker::Client::start(myc_broker::ClientOptions::new(broker.endpoint.clone()));
        let mut subscription = client.subscribe("market_data", "")?;
        subscription.wait_active(Duration::from_secs(10)).await.context("cannot subscribe to the broker")?;
        let broker_counter = tokio::spawn(async move {
            let _client = client;
            let mut received = 0u64;
            while received < n_messages {
                let Ok(Some(batch)) = tokio::time::timeout(STALL, subscription.recv_batch()).await else { break };
                received += batch.len() as u64;
            }
            received
        });
        // The relay accepts the tap before the producer (same order as
        // relay_e2e_1); the link subscribed before the relay listened.
        let started = publish_numbered(&relay.socket, payload_bytes, n_messages).await?;
        let (relay_received, finished) = relay_counter.await?;
        let broker_received = broker_counter.await?;
        anyhow::Ok((finished - started, (n_messages - relay_received) + (n_messages - broker_received)))
    })?;
    let rss = Rss { broker: relay.peak_rss(), client: None, ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}
