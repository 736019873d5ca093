//! A client that floods the broker with PINGs and never reads the replies:
//! the ACK and PONG frames queued for it count toward its outbound limit, so
//! it meets the slow-consumer policy, the broker's queued bytes stay bounded,
//! a healthy client on the same broker is unaffected, and the queued memory
//! is given back when the flooding client leaves.
//!
//! The flood lasts `MYC_FLOOD_SECS` seconds (1 by default, to keep
//! `cargo test` short; BENCHMARKS.md records a 60 s run in release with the
//! process's peak RSS).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use myc_broker::SlowConsumerPolicy;
use myc_broker::protocol::{ClientOp, ErrorCode, ServerOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::{TestBroker, client, fast_settings};

const LIMIT: usize = 1024 * 1024;

fn flood_duration() -> Duration {
    let seconds = std::env::var("MYC_FLOOD_SECS").ok().and_then(|text| text.parse().ok()).unwrap_or(1);
    Duration::from_secs(seconds)
}

/// What the flood left behind.
struct Flood {
    /// The largest `queued_bytes` sampled while it ran.
    peak_queued: i64,
    /// PINGs written.
    pings: u64,
}

/// Writes PINGs (a thousand to a write), never reading, for `duration` and
/// then until the broker has applied its slow-consumer policy (30 s at
/// most); samples the broker's queued bytes between writes.
async fn flood(stream: &mut UnixStream, broker: &TestBroker, duration: Duration) -> Flood {
    let mut pings = BytesMut::new();
    for nonce in 0..1000 {
        ClientOp::Ping { nonce }.encode(&mut pings).unwrap();
    }
    let metrics = &broker.handle.metrics;
    let policy_applied = || metrics.slow_consumers.get() > 0 || metrics.dropped("slow_consumer") > 0;
    let ends = Instant::now() + duration;
    let cap = Instant::now() + Duration::from_secs(30);
    let mut result = Flood { peak_queued: 0, pings: 0 };
    while Instant::now() < ends || (!policy_applied() && Instant::now() < cap) {
        // The broker stops reading a connection it closed: the write then
        // blocks (a second is far past any pause in a broker still reading),
        // or fails once the socket is gone.
        match tokio::time::timeout(Duration::from_secs(1), stream.write_all(&pings)).await {
            Ok(Ok(())) => result.pings += 1000,
            Ok(Err(_)) | Err(_) => break,
        }
        result.peak_queued = result.peak_queued.max(metrics.queued_bytes.get());
        if policy_applied() && Instant::now() >= ends {
            break;
        }
    }
    result.peak_queued = result.peak_queued.max(metrics.queued_bytes.get());
    result
}

async fn hello(path: &std::path::Path) -> UnixStream {
    let mut stream = UnixStream::connect(path).await.unwrap();
    let mut frame = BytesMut::new();
    ClientOp::Hello { version: 1, flags: 0, client_name: "flood".to_owned(), token: String::new() }
        .encode(&mut frame)
        .unwrap();
    stream.write_all(&frame).await.unwrap();
    stream
}

/// A subscriber and a publisher on `broker` exchange 2,000 messages, in order.
async fn healthy_exchange(broker: &TestBroker) {
    let reader = client(&broker.endpoint);
    let mut subscription = reader.subscribe("healthy", "").unwrap();
    subscription.wait_active(Duration::from_secs(10)).await.unwrap();
    let publisher = client(&broker.endpoint);
    for number in 0..2000u32 {
        publisher.publish("healthy", &number.to_le_bytes()).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    for number in 0..2000u32 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), subscription.recv()).await.unwrap().unwrap();
        assert_eq!(&delivery.payload[..], number.to_le_bytes(), "in order, nothing missing");
    }
}

/// Waits (up to 10 s) until the broker holds nothing queued and has no
/// connection left.
async fn memory_returned(broker: &TestBroker) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while broker.handle.metrics.queued_bytes.get() != 0 || broker.handle.metrics.connections.get() != 0 {
        assert!(
            Instant::now() < deadline,
            "queued bytes {} and connections {} once the flooder left",
            broker.handle.metrics.queued_bytes.get(),
            broker.handle.metrics.connections.get()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn start(policy: SlowConsumerPolicy) -> (tempfile::TempDir, TestBroker) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    // A write deadline far past the flood: the outbound limit, not the
    // deadline, is what must stop it.
    let settings = myc_broker::Settings {
        outbound_limit: LIMIT,
        write_deadline: Duration::from_secs(120),
        slow_consumer: policy,
        ..fast_settings()
    };
    let broker = TestBroker::start(&path, settings).await;
    (dir, broker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_flooding_pings_without_reading_is_disconnected_at_its_outbound_limit() {
    let (dir, broker) = start(SlowConsumerPolicy::Disconnect).await;
    let mut flooder = hello(&dir.path().join("b.sock")).await;
    let (flood, ()) = tokio::join!(flood(&mut flooder, &broker, flood_duration()), healthy_exchange(&broker));
    assert!(flood.pings > 0);
    // The limit, one fatal ERROR and the close marker past it at most.
    assert!(flood.peak_queued <= (LIMIT + 1024) as i64, "queued {} bytes at most", flood.peak_queued);
    assert_eq!(broker.handle.metrics.slow_consumers.get(), 1);
    assert_eq!(broker.handle.metrics.errors_sent(ErrorCode::SlowConsumer), 1);
    // Reading now, it finds its replies, then the ERROR, then the end.
    let mut received = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), flooder.read(&mut buffer)).await.unwrap() {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
    let last = last_frame(&received);
    assert!(
        matches!(ServerOp::decode(last), Ok(ServerOp::Error { code: ErrorCode::SlowConsumer, .. })),
        "the last frame is ERROR slow_consumer"
    );
    drop(flooder);
    memory_returned(&broker).await;
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_drop_new_a_ping_flood_has_its_replies_dropped_and_memory_stays_bounded() {
    let (dir, broker) = start(SlowConsumerPolicy::DropNew).await;
    let mut flooder = hello(&dir.path().join("b.sock")).await;
    let (flood, ()) = tokio::join!(flood(&mut flooder, &broker, flood_duration()), healthy_exchange(&broker));
    assert!(flood.peak_queued <= (LIMIT + 1024) as i64, "queued {} bytes at most", flood.peak_queued);
    assert!(broker.handle.metrics.dropped("slow_consumer") > 0);
    assert_eq!(broker.handle.metrics.errors_sent(ErrorCode::SlowConsumer), 0, "still connected");
    drop(flooder);
    memory_returned(&broker).await;
    broker.stop().await;
}

/// The body of the last whole frame in `stream`.
fn last_frame(stream: &[u8]) -> Bytes {
    let mut offset = 0;
    let mut last = Bytes::new();
    while let Some(prefix) = stream.get(offset..offset + 4) {
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        let Some(body) = stream.get(offset + 4..offset + 4 + len) else { break };
        last = Bytes::copy_from_slice(body);
        offset += 4 + len;
    }
    last
}
