//! A consumer that never reads does not slow producers or other consumers;
//! it is handled per policy (drop_oldest counted, or disconnected).

use std::time::Duration;

use codec::Domain;
use relay_compat::{QueuePolicy, RelaySettings, RelayTap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestRelay, identification, message};

async fn run(policy: QueuePolicy) -> (TestRelay, UnixStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = RelaySettings { queue_messages: 1000, queue_bytes: 256 * 1024, policy, ..RelaySettings::default() };
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, settings).await;
    let stuck = UnixStream::connect(&relay.path).await.unwrap();
    let mut reader = RelayTap::connect(&relay.path).await.unwrap();
    relay.wait_for("connections", "consumer", 2).await;
    let n = 20_000u64;
    let (progress, mut received) = tokio::sync::watch::channel(0u64);
    let consumer = tokio::spawn(async move {
        for sequence in 1..=n {
            let got = tokio::time::timeout(Duration::from_secs(10), reader.next()).await.unwrap().unwrap().unwrap();
            assert_eq!(got.bytes[..], message(2, sequence)[..], "the reading consumer misses nothing");
            progress.send_replace(sequence);
        }
    });
    let mut producer = UnixStream::connect(&relay.path).await.unwrap();
    producer.write_all(&identification(2)).await.unwrap();
    // The producer runs at the pace the healthy consumer sustains (at most
    // 500 messages ahead of it); the stuck one falls behind regardless.
    for first in (1..=n).step_by(500) {
        let last = (first + 499).min(n);
        let burst: Vec<u8> = (first..=last).flat_map(|sequence| message(2, sequence)).collect();
        tokio::time::timeout(Duration::from_secs(10), producer.write_all(&burst)).await.unwrap().unwrap();
        let caught_up = received.wait_for(|&done| done + 500 >= last);
        tokio::time::timeout(Duration::from_secs(10), caught_up).await.unwrap().unwrap();
    }
    consumer.await.unwrap();
    (relay, stuck, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_consumer_loses_its_oldest_messages_and_nobody_else_notices() {
    let (relay, mut stuck, _dir) = run(QueuePolicy::DropOldest).await;
    assert!(relay.count("dropped", "slow_consumer") > 0);
    // Still connected: it can read what is left of its queue.
    let mut buffer = [0u8; 32];
    assert!(tokio::time::timeout(Duration::from_secs(5), stuck.read_exact(&mut buffer)).await.unwrap().is_ok());
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_disconnect_a_stuck_consumer_is_closed() {
    let (relay, mut stuck, _dir) = run(QueuePolicy::Disconnect).await;
    assert!(relay.count("dropped", "slow_consumer") > 0);
    let mut sink = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stuck.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the relay closed the stuck consumer");
    relay.stop().await;
}
