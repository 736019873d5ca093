//! A consumer that never reads, or reads far slower than its producer
//! writes, does not slow producers or other consumers; it is handled per
//! policy (drop_oldest counted, or disconnected).

use std::time::Duration;

use myc_codec::Domain;
use myc_relay_compat::{QueuePolicy, RelaySettings, RelayTap};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestRelay, identification, message};

async fn run(policy: QueuePolicy) -> (TestRelay, UnixStream, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let settings = RelaySettings { queue_messages: 1000, queue_bytes: 256 * 1024, policy, ..RelaySettings::default() };
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, settings).await;
    let stuck = UnixStream::connect(&relay.path).await.unwrap();
    feed_while_a_consumer_reads(&relay, 2).await;
    (relay, stuck, dir)
}

/// Connects a reading consumer and a producer, and sends 20,000 messages at
/// the pace the reading consumer sustains; returns once it has them all, in
/// order (it asserts that). `consumers` is how many consumers the relay
/// has once the reading one is connected.
async fn feed_while_a_consumer_reads(relay: &TestRelay, consumers: usize) {
    let mut reader = RelayTap::connect(&relay.path).await.unwrap();
    relay.wait_for("connections", "consumer", consumers as i64).await;
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
}

/// A consumer reading at most 8 KiB a millisecond until the relay closes
/// it; returns how many bytes it read.
fn slow_reader(mut slow: UnixStream) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut buffer = [0u8; 8 * 1024];
        let mut total = 0usize;
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            match slow.read(&mut buffer).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_loses_its_oldest_messages_instead_of_pacing_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let settings = RelaySettings { queue_messages: 1000, queue_bytes: 256 * 1024, ..RelaySettings::default() };
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, settings).await;
    // Reads 8 KiB a millisecond at most: it drains a full queue (256 KiB)
    // well within the stall timeout every time, so only the share of the
    // producer's time it takes gives it away — waiting for it each time would
    // pace the producer at 8 MB/s and drop nothing.
    let slow_reader = slow_reader(UnixStream::connect(&relay.path).await.unwrap());
    feed_while_a_consumer_reads(&relay, 2).await;
    assert!(relay.count("dropped", "slow_consumer") > 0, "the slow consumer was not waited for");
    relay.stop().await;
    assert!(slow_reader.await.unwrap() > 0, "the slow consumer was served all along");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_slow_consumers_together_hold_the_producer_no_longer_than_one_may() {
    const SLOW: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let settings = RelaySettings { queue_messages: 1000, queue_bytes: 256 * 1024, ..RelaySettings::default() };
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, settings).await;
    // Each drains its queue well within the stall timeout, so each wait for
    // one of them ends with it "caught up"; waited for in turn, they would
    // pace the producer at their rate and lose nearly nothing.
    let mut readers = Vec::new();
    for _ in 0..SLOW {
        readers.push(slow_reader(UnixStream::connect(&relay.path).await.unwrap()));
    }
    relay.wait_for("connections", "consumer", SLOW as i64).await;
    feed_while_a_consumer_reads(&relay, SLOW + 1).await;
    // The producer's own hold budget bounds the waits for all of them: most
    // of what they could not take in time was dropped for them.
    let dropped = relay.count("dropped", "slow_consumer");
    assert!(dropped > (SLOW as i64) * 20_000 / 4, "only {dropped} dropped: the slow consumers paced the producer");
    relay.stop().await;
    for reader in readers {
        assert!(reader.await.unwrap() > 0, "every slow consumer was served all along");
    }
}
