//! Restarts: the broker killed five times under load loses nothing
//! (at-least-once, duplicates counted; 200,000 messages, 1,000,000 with
//! `MYC_SOAK=1`) and never blocks the producer past its deadline; a broker down at start gets the buffered publishes
//! once it appears; after `max_reconnects` failures publishes fail at once
//! with `max_reconnects_exceeded`, and the client recovers by itself.

use std::time::Duration;

use myc_broker::ClientOptions;

use super::{TestBroker, client, fast_settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_five_times_under_load_loses_no_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    // The grace lets the subscriber re-subscribe before resent publishes flow.
    let settings = || myc_broker::Settings { restart_grace: Duration::from_secs(1), ..myc_broker::Settings::default() };
    let mut broker = TestBroker::start(&path, settings()).await;
    let endpoint = broker.endpoint.clone();
    let subscriber = client(&endpoint);
    let mut subscription = subscriber.subscribe("numbers", "").unwrap();
    subscription.wait_active(Duration::from_secs(10)).await.unwrap();
    let total: u32 = if std::env::var_os("MYC_SOAK").is_some() { 1_000_000 } else { 200_000 };
    const KILLS: u32 = 5;
    let publisher = client(&endpoint);
    let deadline = ClientOptions::new(endpoint.clone()).buffer.deadline;
    let producer = tokio::spawn(async move {
        let mut slowest = Duration::ZERO;
        for number in 0..total {
            let started = std::time::Instant::now();
            publisher.publish("numbers", &number.to_le_bytes()).await.unwrap();
            slowest = slowest.max(started.elapsed());
            if number % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        }
        publisher.flush(Duration::from_secs(60)).await.unwrap();
        (publisher, slowest)
    });
    let mut seen = vec![0u32; total as usize];
    let mut distinct = 0u32;
    let mut restarts = 0;
    while distinct < total {
        let delivery = tokio::time::timeout(Duration::from_secs(30), subscription.recv()).await.unwrap().unwrap();
        let number = u32::from_le_bytes(delivery.payload[..].try_into().unwrap()) as usize;
        seen[number] += 1;
        if seen[number] == 1 {
            distinct += 1;
        }
        if restarts < KILLS && distinct > (restarts + 1) * total / (KILLS + 1) {
            broker.kill().await;
            broker = TestBroker::start(&path, settings()).await;
            restarts += 1;
        }
    }
    let (_publisher, slowest) = producer.await.unwrap();
    assert_eq!(restarts, KILLS);
    assert!(slowest <= deadline, "a publish waited {slowest:?}, past its {deadline:?} deadline");
    assert!(seen.iter().all(|&count| count >= 1), "no gaps");
    let duplicates: u32 = seen.iter().map(|&count| count - 1).sum();
    println!("broker restarted {restarts} times; {duplicates} duplicate deliveries of {total}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_made_while_the_broker_is_down_are_delivered_once_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let endpoint = myc_transport::Endpoint::Unix(path.clone());
    let publisher = client(&endpoint);
    for number in 0u32..100 {
        publisher.publish("late", &number.to_le_bytes()).await.unwrap();
    }
    let broker =
        TestBroker::start(&path, myc_broker::Settings { restart_grace: Duration::from_millis(300), ..fast_settings() })
            .await;
    let subscriber = client(&endpoint);
    let mut subscription = subscriber.subscribe("late", "").unwrap();
    subscription.wait_active(Duration::from_secs(10)).await.unwrap();
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    for number in 0u32..100 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.recv()).await.unwrap().unwrap();
        assert_eq!(&delivery.payload[..], number.to_le_bytes());
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_reconnects_fails_fast_after_the_third_failure_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let mut options = ClientOptions::new(myc_transport::Endpoint::Unix(path.clone()));
    options.reconnect.backoff_base = Duration::from_millis(1);
    options.reconnect.backoff_max = Duration::from_millis(20);
    options.reconnect.max_reconnects = Some(3);
    let publisher = myc_broker::Client::start(options);
    publisher.publish("t", b"kept").await.unwrap();
    let flushed = publisher.flush(Duration::from_secs(5)).await;
    assert!(flushed.unwrap_err().to_string().contains("max_reconnects_exceeded"));
    assert_eq!(publisher.state(), myc_broker::ConnectionState::Failed);
    let failures = publisher.publisher_counters().connect_failures.load(std::sync::atomic::Ordering::Relaxed);
    assert!(failures >= 3, "gave up after {failures} failures");
    let started = std::time::Instant::now();
    let refused = publisher.publish("t", b"refused").await;
    assert!(refused.unwrap_err().to_string().contains("max_reconnects_exceeded"));
    assert!(started.elapsed() < Duration::from_millis(100), "a refused publish waited {:?}", started.elapsed());
    // Still trying in the background, at backoff_max.
    assert!(
        eventually(|| publisher.publisher_counters().connect_failures.load(std::sync::atomic::Ordering::Relaxed)
            > failures + 2)
        .await
    );

    // The broker appears: the client recovers by itself, with what it buffered.
    // The grace holds publishes until the subscriber is in place.
    let settings = myc_broker::Settings { restart_grace: Duration::from_secs(1), ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe("t", "").unwrap();
    subscription.wait_active(Duration::from_secs(10)).await.unwrap();
    assert!(eventually(|| publisher.state() == myc_broker::ConnectionState::Connected).await, "never recovered");
    publisher.publish("t", b"after").await.unwrap();
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.recv()).await.unwrap().unwrap();
        got.push(delivery.payload);
    }
    assert_eq!(got, [&b"kept"[..], &b"after"[..]], "what was buffered before giving up is delivered, in order");
    broker.stop().await;
}

/// Polls `condition` every 5 ms for up to 5 s.
async fn eventually(mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_started_while_the_broker_is_away_buffers_then_connects_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("away.sock");
    let mut options = ClientOptions::new(myc_transport::Endpoint::Unix(path.clone()));
    options.reconnect.backoff_base = Duration::from_millis(1);
    options.reconnect.backoff_max = Duration::from_millis(5);
    let publisher = myc_broker::Client::start(options);
    assert_eq!(publisher.state(), myc_broker::ConnectionState::Connecting);
    publisher.try_publish("t", b"x").unwrap();
    assert!(publisher.buffered_bytes() > 0, "buffered while the broker is away");

    let broker = TestBroker::start(&path, fast_settings()).await;
    assert!(eventually(|| publisher.state() == myc_broker::ConnectionState::Connected).await);
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    assert_eq!(publisher.buffered_bytes(), 0);
    broker.stop().await;
}
