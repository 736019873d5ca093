//! Slow consumers: a subscriber that never reads, or reads far slower than
//! its publisher writes, does not slow the publisher or a reading
//! subscriber, and is disconnected (or has its deliveries dropped) per
//! policy, counted in the metrics.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use myc_broker::SlowConsumerPolicy;
use myc_broker::protocol::ClientOp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestBroker, client, fast_settings};

const N: u32 = 20_000;

/// A subscriber that subscribes and then never reads.
async fn stuck_subscriber(path: &std::path::Path) -> UnixStream {
    let mut stream = UnixStream::connect(path).await.unwrap();
    let mut frames = BytesMut::new();
    ClientOp::Hello { version: 1, flags: 0, client_name: "stuck".to_owned(), token: String::new() }
        .encode(&mut frames)
        .unwrap();
    ClientOp::Subscribe { sub_id: 1, topic: Bytes::from_static(b"busy"), group: Bytes::new() }
        .encode(&mut frames)
        .unwrap();
    stream.write_all(&frames).await.unwrap();
    stream
}

/// Reads everything queued for `stream`: `true` if the broker closed it,
/// `false` if it stays open once the queue is drained.
async fn reaches_end_of_stream(stream: &mut UnixStream) -> bool {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// Subscribes a reader, publishes `N` numbered 1 KiB messages and flushes;
/// returns once the reader has them all, in order (it asserts that). The
/// publisher's in-flight window is well under the outbound limit, so the
/// reader's queue never reaches it.
async fn publish_while_one_reads(broker: &TestBroker) {
    let reader = client(&broker.endpoint);
    let mut subscription = reader.subscribe("busy", "").unwrap();
    subscription.wait_active(Duration::from_secs(5)).await.unwrap();
    let mut options = myc_broker::ClientOptions::new(broker.endpoint.clone());
    options.max_in_flight = 128 * 1024;
    let publisher = myc_broker::Client::start(options);
    let consumer = tokio::spawn(async move {
        for number in 0..N {
            let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await.unwrap().unwrap();
            assert_eq!(&delivery.payload[..4], number.to_le_bytes(), "in order, nothing missing");
        }
    });
    let mut message = vec![7u8; 1024];
    for number in 0..N {
        message[..4].copy_from_slice(&number.to_le_bytes());
        publisher.publish("busy", &message).await.unwrap();
    }
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    consumer.await.unwrap();
}

/// Runs the scenario with a subscriber that never reads; returns the broker
/// and that subscriber's socket (kept open, so only the broker can have
/// closed it).
async fn run(policy: SlowConsumerPolicy) -> (TestBroker, UnixStream) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = myc_broker::Settings {
        outbound_limit: 1024 * 1024,
        write_deadline: Duration::from_millis(500),
        slow_consumer: policy,
        ..fast_settings()
    };
    let broker = TestBroker::start(&path, settings).await;
    let stuck = stuck_subscriber(&path).await;
    // Its SUBSCRIBE was sent before the reader's, so it is in place too.
    publish_while_one_reads(&broker).await;
    (broker, stuck)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_subscriber_is_disconnected_and_the_reading_one_gets_everything() {
    let (broker, mut stuck) = run(SlowConsumerPolicy::Disconnect).await;
    assert_eq!(broker.handle.metrics.slow_consumers.get(), 1);
    assert_eq!(broker.handle.metrics.dropped("slow_consumer"), 0);
    // Reading now, the stuck subscriber finds its connection closed by the broker.
    assert!(reaches_end_of_stream(&mut stuck).await, "the stuck one was closed");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_drop_new_the_stuck_subscriber_loses_deliveries_and_stays() {
    let (broker, mut stuck) = run(SlowConsumerPolicy::DropNew).await;
    // The publisher is no longer held by the stuck one (its ACKs were
    // released after ACK_HOLD), so the stall is counted at the deadline,
    // possibly after the publisher is done.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.handle.metrics.slow_consumers.get() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the stall is counted");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(broker.handle.metrics.dropped("slow_consumer") > 0);
    assert!(!reaches_end_of_stream(&mut stuck).await, "the stuck one is still connected");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_subscriber_stops_holding_the_publisher_and_is_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = myc_broker::Settings { outbound_limit: 1024 * 1024, ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    // Reads 512 bytes a millisecond at most. Held to its pace the publisher
    // would need 40 s for the 20 MiB below, and the queue would never reach
    // the outbound limit (the publisher's in-flight window is far under it).
    let mut slow = stuck_subscriber(&path).await;
    let slow_reader = tokio::spawn(async move {
        let mut buffer = [0u8; 512];
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if !matches!(slow.read(&mut buffer).await, Ok(n) if n > 0) {
                return;
            }
        }
    });
    publish_while_one_reads(&broker).await;
    assert!(broker.handle.metrics.lagging.get() >= 1, "the slow one was found lagging");
    assert_eq!(broker.handle.metrics.slow_consumers.get(), 1, "and went over its outbound limit");
    tokio::time::timeout(Duration::from_secs(10), slow_reader).await.unwrap().unwrap();
    broker.stop().await;
}
