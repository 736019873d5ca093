//! A publish longer than the broker's `max_frame`: refused by the client
//! before it is buffered, and never a frame the client resends forever.

use std::sync::atomic::Ordering;
use std::time::Duration;

use myc_broker::protocol::DEFAULT_MAX_FRAME;
use myc_broker::{Client, ClientOptions, Error};
use myc_transport::{Endpoint, PushError};

use super::{TestBroker, client, fast_settings};

const WAIT: Duration = Duration::from_secs(10);
const TOPIC: &str = "md";

/// The longest payload a PUBLISH on [`TOPIC`] may carry under `max_frame`.
fn longest_payload(max_frame: usize) -> usize {
    max_frame - 1 - 1 - TOPIC.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_over_the_brokers_max_frame_is_refused_and_those_after_it_flow() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(&dir.path().join("b.sock"), fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe(TOPIC, "").unwrap();
    subscription.wait_active(WAIT).await.unwrap();
    let publisher = client(&broker.endpoint);

    let over = vec![7u8; longest_payload(DEFAULT_MAX_FRAME) + 1];
    let refused = publisher.publish(TOPIC, &over).await.unwrap_err();
    assert!(matches!(refused, Error::Buffer(PushError::OverPeerLimit { len, max }) if len == max + 1), "{refused:?}");
    assert!(refused.to_string().contains("message_too_large"), "{refused}");
    assert!(matches!(publisher.try_publish(TOPIC, &over), Err(Error::Buffer(PushError::OverPeerLimit { .. }))));

    let at_limit = vec![8u8; longest_payload(DEFAULT_MAX_FRAME)];
    publisher.publish(TOPIC, &at_limit).await.unwrap();
    for number in 0u32..10 {
        publisher.publish(TOPIC, &number.to_le_bytes()).await.unwrap();
    }
    publisher.flush(WAIT).await.unwrap();
    let first = tokio::time::timeout(WAIT, subscription.recv()).await.unwrap().unwrap();
    assert_eq!(first.payload.len(), at_limit.len());
    for number in 0u32..10 {
        let delivery = tokio::time::timeout(WAIT, subscription.recv()).await.unwrap().unwrap();
        assert_eq!(&delivery.payload[..], number.to_le_bytes());
    }
    assert_eq!(publisher.publisher_counters().connects.load(Ordering::Relaxed), 1, "never reconnected");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_buffered_for_a_larger_max_frame_is_dropped_and_counted_when_the_broker_says_less() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::Unix(dir.path().join("b.sock"));
    // The client expects a broker taking 4 MiB frames; none is up yet, so
    // everything waits in its buffer.
    let mut options = ClientOptions::new(endpoint.clone());
    options.broker_max_frame = 4 * 1024 * 1024;
    options.reconnect.backoff_base = Duration::from_millis(5);
    options.reconnect.backoff_max = Duration::from_millis(50);
    let publisher = Client::start(options);
    publisher.publish(TOPIC, b"before").await.unwrap();
    publisher.publish(TOPIC, &vec![9u8; 2 * 1024 * 1024]).await.unwrap();
    publisher.publish(TOPIC, b"after").await.unwrap();

    // The broker that comes up takes the default 1 MiB.
    let broker = TestBroker::start(dir.path().join("b.sock").as_path(), fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe(TOPIC, "").unwrap();
    subscription.wait_active(WAIT).await.unwrap();
    // A subscriber late for the first publishes would miss them: publish
    // the same three again now that it listens.
    publisher.flush(WAIT).await.unwrap();
    publisher.publish(TOPIC, b"before").await.unwrap();
    let refused = publisher.publish(TOPIC, &vec![9u8; 2 * 1024 * 1024]).await.unwrap_err();
    assert!(matches!(refused, Error::Buffer(PushError::OverPeerLimit { max, .. }) if max == DEFAULT_MAX_FRAME + 4));
    publisher.publish(TOPIC, b"after").await.unwrap();
    publisher.flush(WAIT).await.unwrap();

    for expected in [&b"before"[..], b"after"] {
        let delivery = tokio::time::timeout(WAIT, subscription.recv()).await.unwrap().unwrap();
        assert_eq!(&delivery.payload[..], expected);
    }
    assert_eq!(publisher.counters().failed_too_large.load(Ordering::Relaxed), 1);
    assert_eq!(publisher.publisher_counters().failed.load(Ordering::Relaxed), 1);
    assert_eq!(publisher.publisher_counters().connects.load(Ordering::Relaxed), 1, "never refused and reconnected");
    broker.stop().await;
}
