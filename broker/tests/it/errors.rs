//! Bad input over raw sockets: every fatal error is sent, then only that
//! connection closes; an oversized length prefix is refused without
//! allocating it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use myc_broker::protocol::{ClientOp, ErrorCode, ServerOp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestBroker, client, fast_settings};

/// Sends `bytes` on a fresh raw connection and returns every frame the broker
/// sends back until it closes the connection.
pub(crate) async fn exchange(path: &std::path::Path, bytes: &[u8]) -> Vec<ServerOp> {
    let mut stream = UnixStream::connect(path).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await.unwrap().unwrap();
    decode_all(&received)
}

/// Reads what the broker sends on a still-open connection up to the PONG
/// with `nonce`, and decodes it.
pub(crate) async fn read_through_pong(stream: &mut UnixStream, nonce: u64) -> Vec<ServerOp> {
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
pub(crate) fn decode_all(bytes: &[u8]) -> Vec<ServerOp> {
    let mut ops = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 4 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        ops.push(ServerOp::decode(Bytes::copy_from_slice(&rest[4..4 + len])).unwrap());
        rest = &rest[4 + len..];
    }
    ops
}

pub(crate) fn frame(op: &ClientOp) -> Vec<u8> {
    let mut out = BytesMut::new();
    op.encode(&mut out).unwrap();
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
    let settings = myc_broker::Settings { token: Some("secret".to_owned()), ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let mut options = myc_broker::ClientOptions::new(broker.endpoint.clone());
    options.token = "secret".to_owned();
    let healthy = myc_broker::Client::start(options);
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
        let mut options = myc_broker::ClientOptions::new(broker.endpoint.clone());
        options.token = "secret".to_owned();
        myc_broker::Client::start(options)
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
    let settings = myc_broker::Settings { max_subscriptions: 3, max_connections: 2, ..fast_settings() };
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

fn named_hello(name: &str) -> Vec<u8> {
    frame(&ClientOp::Hello { version: 1, flags: 0, client_name: name.to_owned(), token: String::new() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_acl_refuses_unlisted_topics_with_unauthorized_and_keeps_the_connection() {
    use myc_broker::server::acl::{Acl, Permissions, Topics};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let feed =
        Permissions { publish: Topics::from_rules(&["market_data"]), subscribe: Topics::from_rules::<&str>(&[]) };
    let acl = Acl {
        clients: [("polygon_adapter".to_owned(), feed)].into(),
        default: Permissions { publish: Topics::from_rules::<&str>(&[]), subscribe: Topics::from_rules(&["*"]) },
        ..Acl::default()
    };
    let broker = TestBroker::start(&path, myc_broker::Settings { acl: Some(acl), ..fast_settings() }).await;
    let publish = |topic: &'static [u8]| {
        frame(&ClientOp::Publish { topic: Bytes::from_static(topic), payload: Bytes::from_static(b"x") })
    };
    let subscribe =
        frame(&ClientOp::Subscribe { sub_id: 1, topic: Bytes::from_static(b"market_data"), group: Bytes::new() });

    let mut feed = UnixStream::connect(&path).await.unwrap();
    let mut bytes = named_hello("polygon_adapter");
    bytes.extend(publish(b"market_data"));
    bytes.extend(publish(b"execution"));
    bytes.extend(&subscribe);
    bytes.extend(frame(&ClientOp::Ping { nonce: 1 }));
    feed.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut feed, 1).await;
    let refusals = ops.iter().filter(|op| matches!(op, ServerOp::Error { code: ErrorCode::Unauthorized, .. })).count();
    assert_eq!(refusals, 2, "publish to execution and the subscription are refused: {ops:?}");

    let mut other = UnixStream::connect(&path).await.unwrap();
    let mut bytes = named_hello("dashboard");
    bytes.extend(&subscribe);
    bytes.extend(publish(b"market_data"));
    bytes.extend(frame(&ClientOp::Ping { nonce: 2 }));
    other.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut other, 2).await;
    assert!(ops.iter().any(|op| matches!(op, ServerOp::SubAck { .. })), "{ops:?}");
    let refused = ops.iter().filter(|op| matches!(op, ServerOp::Error { code: ErrorCode::Unauthorized, .. })).count();
    assert_eq!(refused, 1, "the default rule lets it subscribe, not publish: {ops:?}");
    broker.stop().await;
}

/// This process's resident set size, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|line| line.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_get_the_spec_errors_and_never_hurt_a_healthy_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let broker = TestBroker::start(&path, fast_settings()).await;
    let healthy = client(&broker.endpoint);
    let mut subscription = healthy.subscribe("market_data", "").unwrap();
    subscription.wait_active(Duration::from_secs(5)).await.unwrap();
    let rss_before = rss_bytes();

    // Random bytes, a 4 GiB length prefix, a truncated frame, then close.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..50 {
        let junk: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        // Sent, then the write side closed: an ERROR, or a close at the
        // end of a frame that never completes; never a hang or a crash.
        let mut stream = UnixStream::connect(&path).await.unwrap();
        stream.write_all(&junk).await.unwrap();
        stream.shutdown().await.unwrap();
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut received)).await.unwrap().unwrap();
        let ops = decode_all(&received);
        assert!(ops.len() <= 1 && ops.iter().all(|op| matches!(op, ServerOp::Error { .. })), "{ops:?}");
    }
    let ops = exchange(&path, &[0xFF, 0xFF, 0xFF, 0xFF, 0x01]).await;
    assert_eq!(last_error(&ops), Some(ErrorCode::FrameTooLarge));
    let mut truncated = UnixStream::connect(&path).await.unwrap();
    truncated.write_all(&[&hello()[..], &[0x10, 0, 0, 0, 0x02]].concat()).await.unwrap();
    truncated.shutdown().await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), truncated.read_to_end(&mut received)).await.unwrap().unwrap();

    // Topic names with '/', '..', NUL and invalid UTF-8: bad_topic, connection kept.
    let mut stream = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello();
    for topic in [&b"a/b"[..], b"..", b"a\0b", b"\xFF\xFE", b"Market"] {
        bytes.extend(frame(&ClientOp::Publish {
            topic: Bytes::copy_from_slice(topic),
            payload: Bytes::from_static(b"x"),
        }));
    }
    bytes.extend(frame(&ClientOp::Ping { nonce: 3 }));
    stream.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut stream, 3).await;
    let bad_topics = ops.iter().filter(|op| matches!(op, ServerOp::Error { code: ErrorCode::BadTopic, .. })).count();
    assert_eq!(bad_topics, 5, "{ops:?}");

    // 10,000 subscriptions on one connection: capped by the limit, answered.
    let mut bytes = Vec::new();
    for sub_id in 0..10_000u32 {
        bytes.extend(frame(&ClientOp::Subscribe { sub_id, topic: Bytes::from_static(b"t"), group: Bytes::new() }));
    }
    bytes.extend(frame(&ClientOp::Ping { nonce: 4 }));
    stream.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut stream, 4).await;
    assert!(ops.iter().any(|op| matches!(op, ServerOp::Error { code: ErrorCode::TooManySubscriptions, .. })));

    // A HELLO flood: HELLO again on a live connection is a protocol error.
    let mut flood = hello();
    for _ in 0..1_000 {
        flood.extend(hello());
    }
    let ops = exchange(&path, &flood).await;
    assert!(last_error(&ops).is_some(), "{ops:?}");

    // The healthy client never noticed.
    healthy.publish("market_data", b"still here").await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(5), subscription.recv()).await.unwrap().unwrap();
    assert_eq!(&delivery.payload[..], b"still here");
    let growth = rss_bytes().saturating_sub(rss_before);
    assert!(growth < 64 << 20, "memory grew by {growth} bytes under hostile input");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_connections_meet_the_limit_and_ping_stays_fast() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = myc_broker::Settings { max_connections: 1_500, ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let mut watcher = UnixStream::connect(&path).await.unwrap();
    watcher.write_all(&hello()).await.unwrap();
    let mut welcome = vec![0u8; 64];
    let _ = watcher.read(&mut welcome).await.unwrap();

    // MYC_SOAK=1: the crowd churns (half of it leaves and comes back) ten times.
    let rounds = if std::env::var_os("MYC_SOAK").is_some() { 10 } else { 1 };
    let mut held: Vec<UnixStream> = Vec::new();
    for _ in 0..rounds {
        // Keep half of the welcomed ones; wait until the broker has seen the rest go.
        held.truncate(held.len().min(1_499) / 2);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while broker.handle.metrics.connections.get() != 1 + held.len() as i64 {
            assert!(tokio::time::Instant::now() < deadline, "the broker sees closed connections go");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let (mut welcomed, mut refused) = (held.len(), 0);
        while held.len() < 2_000 {
            let mut stream = UnixStream::connect(&path).await.unwrap();
            stream.write_all(&hello()).await.unwrap();
            let mut head = [0u8; 5];
            stream.read_exact(&mut head).await.unwrap();
            match head[4] {
                0x81 => welcomed += 1,
                0x88 => refused += 1,
                other => panic!("unexpected op {other:#x}"),
            }
            held.push(stream);
        }
        assert_eq!((welcomed, refused), (1_499, 501), "the watcher holds one of the 1,500 slots");
    }

    // With every slot taken, the broker still answers PING promptly.
    let mut latencies = Vec::new();
    for nonce in 0..200u64 {
        let started = std::time::Instant::now();
        watcher.write_all(&frame(&ClientOp::Ping { nonce })).await.unwrap();
        let ops = read_through_pong(&mut watcher, nonce).await;
        assert!(matches!(ops.last(), Some(ServerOp::Pong { .. })));
        latencies.push(started.elapsed());
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(p99 <= Duration::from_millis(10), "PING p99 {p99:?} with 2,000 connections");
    drop(held);
    broker.stop().await;
}

fn subscribe(sub_id: u32, topic: &'static [u8]) -> Vec<u8> {
    frame(&ClientOp::Subscribe { sub_id, topic: Bytes::from_static(topic), group: Bytes::new() })
}

fn publish(topic: &'static [u8], payload: &'static [u8]) -> Vec<u8> {
    frame(&ClientOp::Publish { topic: Bytes::from_static(topic), payload: Bytes::from_static(payload) })
}

/// Sends `bytes` and a PING on `stream`, returning what came back up to its PONG.
async fn round(stream: &mut UnixStream, mut bytes: Vec<u8>, nonce: u64) -> Vec<ServerOp> {
    bytes.extend(frame(&ClientOp::Ping { nonce }));
    stream.write_all(&bytes).await.unwrap();
    read_through_pong(stream, nonce).await
}

fn delivered(ops: &[ServerOp]) -> Vec<(u32, Vec<u8>)> {
    ops.iter()
        .filter_map(|op| match op {
            ServerOp::Deliver { sub_id, payload, .. } => Some((*sub_id, payload.to_vec())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resubscribe_keeps_the_subscription_it_would_have_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = myc_broker::Settings { max_topics: 2, ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    // Another connection holds topics `a` and `b`: the broker is at its limit.
    let mut holder = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello();
    bytes.extend(subscribe(9, b"a"));
    bytes.extend(subscribe(8, b"b"));
    assert_eq!(round(&mut holder, bytes, 1).await.iter().filter(|op| matches!(op, ServerOp::SubAck { .. })).count(), 2);

    let mut stream = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello();
    bytes.extend(subscribe(1, b"a"));
    let ops = round(&mut stream, bytes, 2).await;
    assert!(ops.iter().any(|op| matches!(op, ServerOp::SubAck { sub_id: 1 })), "{ops:?}");

    // Moving subscription 1 to a third topic is over the limit: refused, and
    // subscription 1 still delivers `a`.
    let mut bytes = subscribe(1, b"c");
    bytes.extend(publish(b"a", b"still subscribed"));
    let ops = round(&mut stream, bytes, 3).await;
    assert!(
        ops.iter().any(|op| matches!(op, ServerOp::Error { code: ErrorCode::TooManySubscriptions, message }
            if message.contains("topics"))),
        "{ops:?}"
    );
    assert_eq!(delivered(&ops), vec![(1, b"still subscribed".to_vec())]);
    assert_eq!(broker.handle.metrics.subscriptions.get(), 3);

    // Moving it to a topic that exists replaces it: `b` now, `a` no more.
    let mut bytes = subscribe(1, b"b");
    bytes.extend(publish(b"a", b"not for 1"));
    bytes.extend(publish(b"b", b"for 1"));
    let ops = round(&mut stream, bytes, 4).await;
    assert!(ops.iter().any(|op| matches!(op, ServerOp::SubAck { sub_id: 1 })), "{ops:?}");
    assert_eq!(delivered(&ops), vec![(1, b"for 1".to_vec())]);
    let ops = round(&mut stream, frame(&ClientOp::Unsubscribe { sub_id: 1 }), 5).await;
    assert!(ops.iter().any(|op| matches!(op, ServerOp::UnsubAck { sub_id: 1 })), "{ops:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_only_subscriber_of_a_topic_frees_its_slot_for_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let settings = myc_broker::Settings { max_topics: 2, ..fast_settings() };
    let broker = TestBroker::start(&path, settings).await;
    let mut stream = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello();
    bytes.extend(subscribe(1, b"a"));
    bytes.extend(subscribe(2, b"b"));
    // At the limit; subscription 1 is alone on `a`, so moving it to `c` fits.
    bytes.extend(subscribe(1, b"c"));
    bytes.extend(publish(b"a", b"gone"));
    bytes.extend(publish(b"c", b"here"));
    let ops = round(&mut stream, bytes, 1).await;
    assert_eq!(ops.iter().filter(|op| matches!(op, ServerOp::SubAck { .. })).count(), 3, "{ops:?}");
    assert!(!ops.iter().any(|op| matches!(op, ServerOp::Error { .. })), "{ops:?}");
    assert_eq!(delivered(&ops), vec![(1, b"here".to_vec())]);
    assert_eq!(broker.handle.metrics.subscriptions.get(), 2);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_still_without_hello_is_told_of_a_shutdown_which_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let broker = TestBroker::start(&path, fast_settings()).await;
    let mut silent = UnixStream::connect(&path).await.unwrap();
    // Connections are accepted in order: once a later one is greeted and
    // answered, the silent one is being served (waiting for its HELLO).
    let mut greeted = UnixStream::connect(&path).await.unwrap();
    round(&mut greeted, hello(), 1).await;

    let started = std::time::Instant::now();
    broker.stop().await;
    let stopped_after = started.elapsed();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut received)).await.unwrap().unwrap();
    assert!(
        matches!(decode_all(&received).last(), Some(ServerOp::Error { code: ErrorCode::ShuttingDown, .. })),
        "{received:?}"
    );
    // Not the 10 s HELLO time, nor the 5 s the shutdown grants connections
    // to flush.
    assert!(stopped_after < Duration::from_secs(4), "shutdown took {stopped_after:?}");
    let mut greeted_received = Vec::new();
    greeted.read_to_end(&mut greeted_received).await.unwrap();
    assert!(matches!(
        decode_all(&greeted_received).last(),
        Some(ServerOp::Error { code: ErrorCode::ShuttingDown, .. })
    ));
}
