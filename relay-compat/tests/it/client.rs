//! The relay client: a relay down at start, then restarted mid-stream; the
//! client reconnects, identifies itself again and carries on, counting what
//! it wrote and what failed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use myc_codec::{Domain, Source};
use myc_relay_compat::{RelayClient, RelayClientOptions, RelaySettings, RelayTap};

use super::{TestRelay, message};

fn options(path: &std::path::Path) -> RelayClientOptions {
    let mut options = RelayClientOptions::new(path, Domain::MarketData, Source::KrakenCollector);
    options.reconnect.backoff_base = Duration::from_millis(2);
    options.reconnect.backoff_max = Duration::from_millis(20);
    options
}

async fn receive(tap: &mut RelayTap, sequences: std::ops::RangeInclusive<u64>) {
    for sequence in sequences {
        let got = tokio::time::timeout(Duration::from_secs(10), tap.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(got.bytes[..], message(2, sequence)[..]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_buffers_while_the_relay_is_down_and_reidentifies_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md.sock");
    let client = RelayClient::start(options(&path));
    for sequence in 1..=100 {
        client.publish(&message(2, sequence)).await.unwrap();
    }
    assert_eq!(client.counters().written_messages.load(Ordering::Relaxed), 0, "nothing written while down");

    let relay = TestRelay::start(&path, Domain::MarketData, RelaySettings::default()).await;
    let mut tap = RelayTap::connect(&path).await.unwrap();
    relay.wait_for("connections", "consumer", 1).await;
    // The tap may connect after the client's first writes; wait for the client, then send more.
    client.flush(Duration::from_secs(10)).await.unwrap();
    relay.wait_for("connections", "producer", 1).await;
    for sequence in 101..=200 {
        client.publish(&message(2, sequence)).await.unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), tap.next()).await.unwrap().unwrap().unwrap();
    let first_sequence = myc_codec::Message::parse(&first.bytes).unwrap().header().sequence;
    receive(&mut tap, first_sequence + 1..=200).await;

    relay.kill().await;
    let relay = TestRelay::start(&path, Domain::MarketData, RelaySettings::default()).await;
    let mut tap = RelayTap::connect(&path).await.unwrap();
    relay.wait_for("connections", "consumer", 1).await;
    relay.wait_for("connections", "producer", 1).await;
    for sequence in 201..=300 {
        client.publish(&message(2, sequence)).await.unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    receive(&mut tap, 201..=300).await;
    let counters = client.counters();
    assert!(client.publisher_counters().connects.load(Ordering::Relaxed) >= 2, "reconnected");
    assert_eq!(
        counters.written_messages.load(Ordering::Relaxed) + counters.failed_messages.load(Ordering::Relaxed),
        300,
        "every message is either written or counted as failed"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_what_is_not_one_whole_message() {
    let dir = tempfile::tempdir().unwrap();
    let client = RelayClient::start(options(&dir.path().join("none.sock")));
    let whole = message(2, 1);
    assert!(client.try_publish(&whole[..whole.len() - 1]).is_err());
    assert!(client.try_publish(&[whole.clone(), whole.clone()].concat()).is_err());
    assert!(client.try_publish(&whole).is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_max_reconnects_the_client_fails_fast_keeps_its_buffer_and_recovers_with_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md.sock");
    let mut options = options(&path);
    options.reconnect.max_reconnects = Some(3);
    let client = RelayClient::start(options);
    client.publish(&message(2, 1)).await.unwrap();
    let flushed = client.flush(Duration::from_secs(10)).await;
    assert!(flushed.unwrap_err().to_string().contains("max_reconnects_exceeded"));
    let later = client.try_publish(&message(2, 2));
    assert!(later.unwrap_err().to_string().contains("max_reconnects_exceeded"));
    assert_eq!(client.publisher_counters().failed.load(Ordering::Relaxed), 0, "the buffered message is kept");

    // A relay comes (here a bare socket, to see the bytes): the next
    // connection clears the failure and the buffered message goes out first.
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (mut stream, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.unwrap().unwrap();
    let mut identification = [0u8; myc_codec::HEADER_LEN];
    stream.read_exact(&mut identification).await.unwrap();
    let first = message(2, 1);
    let mut got = vec![0u8; first.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, first);
    client.publish(&message(2, 3)).await.unwrap();
    client.flush(Duration::from_secs(10)).await.unwrap();
    let third = message(2, 3);
    let mut got = vec![0u8; third.len()];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, third);
    assert_eq!(client.publisher_counters().failed.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_meet_the_limit_and_a_producer_and_reader_are_unaffected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("md.sock");
    // Room for the reading tap, 1,500 idle consumers and the producer.
    let settings = RelaySettings { max_connections: 1_502, ..RelaySettings::default() };
    let relay = TestRelay::start(&path, Domain::MarketData, settings).await;
    let mut tap = RelayTap::connect(&path).await.unwrap();
    let client = RelayClient::start(RelayClientOptions::new(&path, Domain::MarketData, Source::TestClient));
    relay.wait_for("connections", "producer", 1).await;
    // MYC_SOAK=1: the idle crowd churns (half of it leaves and comes back) ten times.
    let rounds = if std::env::var_os("MYC_SOAK").is_some() { 10 } else { 1 };
    let mut idle = Vec::new();
    for round in 0..rounds {
        idle.truncate(idle.len() / 2);
        relay.wait_for("connections", "consumer", 1 + idle.len() as i64).await;
        while idle.len() < 2_000 {
            idle.push(tokio::net::UnixStream::connect(&path).await.unwrap());
        }
        relay.wait_for("connections", "consumer", 1_501).await;
        relay.wait_for("refused", "max_connections", 500 * (round + 1)).await;
        // The relay closes each connection over the limit at once.
        for stream in &mut idle[1_500..] {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte)).await.unwrap();
            assert!(matches!(read, Ok(0) | Err(_)), "a connection over the limit is closed");
        }
        idle.truncate(1_500);
    }
    let started = std::time::Instant::now();
    for sequence in 1..=1_000 {
        client.publish(&message(99, sequence)).await.unwrap();
    }
    client.flush(Duration::from_secs(10)).await.unwrap();
    for sequence in 1..=1_000u64 {
        let got = tokio::time::timeout(Duration::from_secs(10), tap.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&got.bytes[..], &message(99, sequence)[..]);
    }
    assert!(started.elapsed() < Duration::from_secs(5), "fan-out to 1,501 consumers took {:?}", started.elapsed());
    drop(idle);
    relay.stop().await;
}
