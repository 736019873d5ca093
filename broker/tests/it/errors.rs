//! Bad input over raw sockets: every fatal error is sent, then only that
//! connection closes; an oversized length prefix is refused without
//! allocating it.

use std::time::Duration;

use broker::protocol::{ClientOp, ErrorCode, ServerOp};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestBroker, client, fast_settings};

/// Sends `bytes` on a fresh raw connection and returns every frame the broker
/// sends back until it closes the connection.
async fn exchange(path: &std::path::Path, bytes: &[u8]) -> Vec<ServerOp> {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await.unwrap().unwrap();
    decode_all(&received)
}

/// Reads what the broker sends on a still-open connection up to the PONG
/// with `nonce`, and decodes it.
async fn read_through_pong(stream: &mut UnixStream, nonce: u64) -> Vec<ServerOp> {
    let mut pong = vec![0x85];
    pong.extend_from_slice(&nonce.to_le_bytes());
    let mut received = vec![0u8; 4096];
    let mut got = Vec::new();
    while !got.ends_with(&pong) {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut received)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed: {got:?}");
        got.extend_from_slice(&received[..n]);
    }
    decode_all(&got)
}

/// Every server frame in `bytes`, in order.
fn decode_all(bytes: &[u8]) -> Vec<ServerOp> {
    let mut ops = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        ops.push(ServerOp::decode(Bytes::copy_from_slice(&rest[4..4 + len])).unwrap());
        rest = &rest[4 + len..];
    }
    ops
}

fn frame(op: &ClientOp) -> Vec<u8> {
    let mut out = BytesMut::new();
    op.encode(&mut out);
    out.to_vec()
}

fn hello() -> Vec<u8> {
    frame(&ClientOp::Hello { version: 1, flags: 0, client_name: "raw".to_owned(), token: String::new() })
}

fn last_error(ops: &[ServerOp]) -> Option<ErrorCode> {
    match ops.last() {
        Some(ServerOp::Error { code, .. }) => Some(*code),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fatal_error_is_sent_then_only_that_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = broker::Settings { token: Some("secret".to_owned()), ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let mut options = broker::ClientOptions::new(broker.endpoint.clone());
    options.token = "secret".to_owned();
    let healthy = broker::Client::start(options);
    let mut healthy_sub = healthy.subscribe("health", "").unwrap();
    healthy_sub.wait_active(Duration::from_secs(5)).await.unwrap();

    let good_hello =
        frame(&ClientOp::Hello { version: 1, flags: 0, client_name: "raw".to_owned(), token: "secret".to_owned() });
    let cases: Vec<(Vec<u8>, ErrorCode)> = vec![
        (frame(&ClientOp::Ping { nonce: 1 }), ErrorCode::HelloRequired),
        (hello(), ErrorCode::Unauthorized),
        (
            frame(&ClientOp::Hello { version: 2, flags: 0, client_name: String::new(), token: "secret".to_owned() }),
            ErrorCode::UnsupportedVersion,
        ),
        ([good_hello.clone(), vec![0, 0, 0, 0]].concat(), ErrorCode::Protocol),
        ([good_hello.clone(), vec![1, 0, 0, 0, 0x42]].concat(), ErrorCode::Protocol),
        ([good_hello.clone(), vec![2, 0, 0, 0, 0x02, 9]].concat(), ErrorCode::Protocol),
        ([good_hello.clone(), u32::MAX.to_le_bytes().to_vec()].concat(), ErrorCode::FrameTooLarge),
        ([good_hello.clone(), good_hello.clone()].concat(), ErrorCode::Protocol),
    ];
    for (bytes, expect) in cases {
        let ops = exchange(&path, &bytes).await;
        assert_eq!(last_error(&ops), Some(expect), "{ops:?}");
    }
    // The healthy client was never disturbed.
    let publisher = {
        let mut options = broker::ClientOptions::new(broker.endpoint.clone());
        options.token = "secret".to_owned();
        broker::Client::start(options)
    };
    publisher.publish("health", b"ok").await.unwrap();
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), healthy_sub.recv()).await.unwrap().unwrap();
    assert_eq!(&delivery.payload[..], b"ok");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_fatal_errors_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let broker = TestBroker::start(&path, fast_settings()).await;
    let mut stream = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello();
    bytes.extend(frame(&ClientOp::Publish { topic: Bytes::from_static(b"Bad/Topic"), payload: Bytes::new() }));
    bytes.extend(frame(&ClientOp::Unsubscribe { sub_id: 99 }));
    bytes.extend(frame(&ClientOp::Ping { nonce: 7 }));
    stream.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut stream, 7).await;
    let codes: Vec<_> = ops
        .iter()
        .filter_map(|op| match op {
            ServerOp::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(codes, [ErrorCode::BadTopic, ErrorCode::UnknownSubscription]);
    // The rejected PUBLISH still counts for ACK purposes: ACK 1 comes before the PONG.
    assert!(ops.contains(&ServerOp::Ack { count: 1 }), "{ops:?}");
    assert_eq!(ops.last(), Some(&ServerOp::Pong { nonce: 7 }));
    drop(client(&broker.endpoint));
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_frames_errors_and_subscriptions_in_the_prometheus_text() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let broker = TestBroker::start(&path, fast_settings()).await;
    let subscriber = client(&broker.endpoint);
    let mut subscription = subscriber.subscribe("counted", "").unwrap();
    subscription.wait_active(Duration::from_secs(5)).await.unwrap();
    let publisher = client(&broker.endpoint);
    for _ in 0..10 {
        publisher.publish("counted", b"0123456789").await.unwrap();
    }
    publisher.flush(Duration::from_secs(5)).await.unwrap();
    let ops = exchange(&path, &frame(&ClientOp::Ping { nonce: 1 })).await;
    assert_eq!(last_error(&ops), Some(ErrorCode::HelloRequired));

    let metrics = &broker.handle.metrics;
    assert_eq!(metrics.publishes.get(), 10);
    assert_eq!(metrics.deliveries.get(), 10);
    assert_eq!(metrics.subscriptions.get(), 1);
    assert_eq!(metrics.errors_sent(ErrorCode::HelloRequired), 1);
    let mut registry = prometheus_client::registry::Registry::default();
    metrics.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "myc_broker_publishes_total 10",
        "myc_broker_deliveries_total 10",
        "myc_broker_subscriptions 1",
        "myc_broker_errors_sent_total{code=\"hello_required\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_and_connection_limits_answer_with_the_spec_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = broker::Settings { max_subscriptions: 3, max_connections: 2, ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let mut bytes = hello();
    for sub_id in 0..4 {
        bytes.extend(frame(&ClientOp::Subscribe { sub_id, topic: Bytes::from_static(b"t"), group: Bytes::new() }));
    }
    bytes.extend(frame(&ClientOp::Ping { nonce: 9 }));
    let mut stream = UnixStream::connect(&path).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut stream, 9).await;
    let subacks = ops.iter().filter(|op| matches!(op, ServerOp::SubAck { .. })).count();
    assert_eq!(subacks, 3);
    assert!(ops.iter().any(|op| matches!(op, ServerOp::Error { code: ErrorCode::TooManySubscriptions, .. })));
    assert_eq!(broker.handle.metrics.subscriptions.get(), 3);

    // A second connection fits; a third is refused and closed.
    let _second = UnixStream::connect(&path).await.unwrap();
    let mut second = _second;
    second.write_all(&hello()).await.unwrap();
    let mut welcome = [0u8; 5];
    second.read_exact(&mut welcome).await.unwrap();
    let third = exchange(&path, &hello()).await;
    assert!(
        matches!(third.last(), Some(ServerOp::Error { message, .. }) if message.contains("too many connections")),
        "{third:?}"
    );
    broker.stop().await;
}
