//! Publish/subscribe behaviour: byte identity, order, groups, copies per
//! subscription, acknowledgements.

use std::time::Duration;

use super::{TestBroker, client, fast_settings};

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_of_every_size_arrive_byte_for_byte_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe("market_data", "").unwrap();
    subscription.wait_active(WAIT).await.unwrap();
    assert_eq!(subscription.topic(), "market_data");
    let publisher = client(&broker.endpoint);
    let max_payload = myc_broker::protocol::DEFAULT_MAX_FRAME - 1 - 1 - "market_data".len();
    let payloads: Vec<Vec<u8>> = [0, 1, 128, 64 * 1024, max_payload]
        .iter()
        .enumerate()
        .map(|(index, &len)| (0..len).map(|byte| (byte * 7 + index) as u8).collect())
        .collect();
    for payload in &payloads {
        publisher.publish("market_data", payload).await.unwrap();
    }
    publisher.flush(WAIT).await.unwrap();
    for payload in &payloads {
        let delivery = tokio::time::timeout(WAIT, subscription.recv()).await.unwrap().unwrap();
        assert_eq!(delivery.payload.len(), payload.len());
        assert!(delivery.payload[..] == payload[..], "payload of {} bytes differs", payload.len());
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_deliver_each_message_once_and_fan_out_subscriptions_each_get_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let members = [client(&broker.endpoint), client(&broker.endpoint)];
    let mut group_subs: Vec<_> = members.iter().map(|member| member.subscribe("signals", "workers").unwrap()).collect();
    let watcher = client(&broker.endpoint);
    let mut copy_a = watcher.subscribe("signals", "").unwrap();
    let mut copy_b = watcher.subscribe("signals", "").unwrap();
    for subscription in group_subs.iter_mut().chain([&mut copy_a, &mut copy_b]) {
        subscription.wait_active(WAIT).await.unwrap();
    }
    let publisher = client(&broker.endpoint);
    let n = 1000u32;
    for number in 0..n {
        publisher.publish("signals", &number.to_le_bytes()).await.unwrap();
    }
    publisher.flush(WAIT).await.unwrap();
    for copy in [&mut copy_a, &mut copy_b] {
        for number in 0..n {
            let delivery = tokio::time::timeout(WAIT, copy.recv()).await.unwrap().unwrap();
            assert_eq!(&delivery.payload[..], number.to_le_bytes());
        }
    }
    let mut seen = vec![0u32; n as usize];
    for sub in &mut group_subs {
        while let Ok(Some(delivery)) = tokio::time::timeout(Duration::from_millis(200), sub.recv()).await {
            seen[u32::from_le_bytes(delivery.payload[..].try_into().unwrap()) as usize] += 1;
        }
    }
    assert!(seen.iter().all(|&count| count == 1), "each message goes to exactly one group member");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_with_no_subscriber_are_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let publisher = client(&broker.endpoint);
    for _ in 0..10_000 {
        publisher.publish("nobody_listens", b"x").await.unwrap();
    }
    publisher.flush(WAIT).await.unwrap();
    assert_eq!(publisher.publisher_counters().settled.load(std::sync::atomic::Ordering::Relaxed), 10_000);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_a_stream_of_deliveries() {
    use futures_core::Stream;

    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe("stream", "").unwrap();
    subscription.wait_active(WAIT).await.unwrap();
    let publisher = client(&broker.endpoint);
    for number in 0u8..3 {
        publisher.publish("stream", &[number]).await.unwrap();
    }
    for number in 0u8..3 {
        let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut subscription).poll_next(cx));
        let delivery = tokio::time::timeout(WAIT, next).await.unwrap().unwrap();
        assert_eq!(&delivery.payload[..], [number]);
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_hand_over_every_payload_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe("batched", "").unwrap();
    subscription.wait_active(WAIT).await.unwrap();
    let publisher = client(&broker.endpoint);
    for number in 0u32..5000 {
        publisher.publish("batched", &number.to_le_bytes()).await.unwrap();
    }
    // One taken singly first: the batch that follows starts after it.
    assert_eq!(&subscription.recv().await.unwrap().payload[..], 0u32.to_le_bytes());
    let mut expect = 1u32;
    while expect < 5000 {
        let batch = tokio::time::timeout(WAIT, subscription.recv_batch()).await.unwrap().unwrap();
        assert!(!batch.is_empty());
        for payload in batch.payloads() {
            assert_eq!(payload, expect.to_le_bytes());
            expect += 1;
        }
    }
    broker.stop().await;
}
