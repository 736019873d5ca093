//! Framing and validation: messages split anywhere arrive whole and in
//! order; producers get nothing back; bad framing closes only that
//! connection; invalid messages are dropped and counted.

use std::time::Duration;

use myc_codec::Domain;
use myc_relay_compat::{RelaySettings, RelayTap};
use rand::RngExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestRelay, identification, message, read_n};

/// Writes `bytes` in random chunks of 1 to `max_chunk` bytes.
async fn write_in_chunks(stream: &mut UnixStream, bytes: &[u8], max_chunk: usize) {
    let mut offset = 0;
    while offset < bytes.len() {
        let n = rand::rng().random_range(1..=max_chunk).min(bytes.len() - offset);
        stream.write_all(&bytes[offset..offset + n]).await.unwrap();
        offset += n;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_split_anywhere_reach_both_consumers_whole_and_in_order_and_never_the_producer() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, RelaySettings::default()).await;
    let mut consumers = [RelayTap::connect(&relay.path).await.unwrap(), RelayTap::connect(&relay.path).await.unwrap()];
    relay.wait_for("connections", "consumer", 2).await;
    let messages: Vec<Vec<u8>> = (1..=2000).map(|sequence| message(2, sequence)).collect();
    let mut producer = UnixStream::connect(&relay.path).await.unwrap();
    let stream: Vec<u8> = identification(2).iter().copied().chain(messages.concat()).collect();
    write_in_chunks(&mut producer, &stream, 300).await;
    for consumer in &mut consumers {
        assert!(read_n(consumer, messages.len()).await == messages, "every message, byte-identical, in order");
    }
    relay.wait_for("connections", "producer", 1).await;
    let mut echo = [0u8; 1];
    let echoed = tokio::time::timeout(Duration::from_millis(200), producer.read(&mut echo)).await;
    assert!(echoed.is_err(), "the producer receives nothing back");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_producers_keep_their_own_order_without_interleaving() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, RelaySettings::default()).await;
    let mut consumer = RelayTap::connect(&relay.path).await.unwrap();
    relay.wait_for("connections", "consumer", 1).await;
    let mut writers = Vec::new();
    for source in [2u8, 4, 5] {
        let path = relay.path.clone();
        writers.push(tokio::spawn(async move {
            let mut producer = UnixStream::connect(&path).await.unwrap();
            let stream: Vec<u8> = identification(source)
                .iter()
                .copied()
                .chain((1..=1000).flat_map(|sequence| message(source, sequence)))
                .collect();
            write_in_chunks(&mut producer, &stream, 700).await;
            producer
        }));
    }
    let received = read_n(&mut consumer, 3000).await;
    let mut next = std::collections::HashMap::from([(2u8, 1u64), (4, 1), (5, 1)]);
    for bytes in received {
        let parsed = myc_codec::Message::parse(&bytes).unwrap();
        let (source, sequence) = (parsed.header().source.as_u8(), parsed.header().sequence);
        assert_eq!(bytes, message(source, sequence), "a whole message, unchanged");
        let expected = next.get_mut(&source).unwrap();
        assert_eq!(sequence, *expected, "per-producer order for source {source}");
        *expected += 1;
    }
    for writer in writers {
        drop(writer.await.unwrap());
    }
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_errors_close_only_that_connection_and_invalid_messages_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, RelaySettings::default()).await;
    let mut consumer = RelayTap::connect(&relay.path).await.unwrap();
    relay.wait_for("connections", "consumer", 1).await;
    let mut good = UnixStream::connect(&relay.path).await.unwrap();
    good.write_all(&identification(4)).await.unwrap();

    let mut bad_magic = message(9, 1);
    bad_magic[0] = 0;
    let mut bad_version = message(9, 1);
    bad_version[5] = 2;
    let mut too_large = message(9, 1);
    too_large[24..28].copy_from_slice(&(2_000_000u32).to_le_bytes());
    for (bytes, reason) in [(bad_magic, "bad_magic"), (bad_version, "bad_version"), (too_large, "too_large")] {
        let mut producer = UnixStream::connect(&relay.path).await.unwrap();
        producer.write_all(&identification(9)).await.unwrap();
        producer.write_all(&bytes).await.unwrap();
        // The relay closes the bad producer: the read ends (EOF or reset) in time.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), producer.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty(), "and sends it nothing");
        relay.wait_for("invalid", reason, 1).await;
    }

    // Wrong domain, bad checksum, malformed TLVs: dropped, counted, connection kept.
    let mut wrong_domain = message(4, 7);
    wrong_domain[4] = 2;
    let mut bad_checksum = message(4, 8);
    let last = bad_checksum.len() - 1;
    bad_checksum[last] ^= 0xFF;
    let mut malformed = message(4, 9);
    malformed[33] = 250; // the TLV now claims more bytes than the message has
    let stream = [wrong_domain, bad_checksum, malformed, message(4, 10)].concat();
    good.write_all(&stream).await.unwrap();
    let received = read_n(&mut consumer, 1).await;
    assert_eq!(received, [message(4, 10)], "only the valid message is forwarded, on the same connection");
    for reason in ["wrong_domain", "bad_checksum", "malformed_tlv"] {
        relay.wait_for("invalid", reason, 1).await;
    }
    relay.stop().await;
}

#[tokio::test]
async fn metrics_list_every_series_at_zero_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("md.sock"), Domain::MarketData, RelaySettings::default()).await;
    let mut registry = prometheus_client::registry::Registry::default();
    relay.handle.metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for series in [
        r#"myc_relay_messages_in_total{domain="market_data",kind="all"} 0"#,
        r#"myc_relay_connections{domain="market_data",kind="producer"} 0"#,
        r#"myc_relay_dropped_total{domain="market_data",kind="slow_consumer"} 0"#,
        r#"myc_relay_invalid_total{domain="market_data",kind="bad_magic"} 0"#,
        r#"myc_relay_refused_total{domain="market_data",kind="max_connections"} 0"#,
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    relay.stop().await;
}
