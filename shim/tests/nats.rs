//! The broker side on real `nats-server` processes, each on a free loopback
//! port: byte identity relay ↔ NATS under `dual_relay_primary`, JetStream
//! de-duplicating a retried publish, a server restart losing nothing with
//! JetStream, and a three-node cluster that keeps carrying messages when a
//! node dies. Each test says so and passes when `nats-server` is not
//! installed; `.ci/run` installs it, so CI always runs them.

#![cfg(all(feature = "relay", feature = "nats"))]
#![allow(clippy::unwrap_used, clippy::print_stderr, reason = "a failed unwrap is a failed test; a skip says so")]

mod common;

use common::{Seen, compare, sequence_of, tap_relay};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use myc_broker::nats::{NatsOptions, NatsPublisher};
use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};
use myc_config::Stage;
use myc_shim::{NatsBrokerPublisher, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};
use myc_transport::{BreakerOptions, BufferLimits, Endpoint, Listener, SocketOptions};

/// A `nats-server` child; killed on drop.
struct Nats {
    child: Option<Child>,
    port: u16,
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Nats {
    /// Starts `nats-server` on a free port with `extra` arguments, or `None`
    /// (with a note) when it is not installed.
    fn start(extra: &[String]) -> Option<Nats> {
        let port = free_port();
        let mut args = vec!["-a".to_owned(), "127.0.0.1".to_owned(), "-p".to_owned(), port.to_string()];
        args.extend_from_slice(extra);
        let mut server = Nats { child: None, port, args };
        if !server.spawn() {
            eprintln!("nats-server is not installed: skipping (CI installs it)");
            return None;
        }
        Some(server)
    }

    fn spawn(&mut self) -> bool {
        let child =
            match Command::new("nats-server").args(&self.args).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
                Ok(child) => child,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return false,
                Err(error) => panic!("cannot start nats-server: {error}"),
            };
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "nats-server did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A market-data message whose vendor TLV carries its sequence.
fn message(sequence: u64) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::TestClient, sequence, 1_700_000_000_000_000_000 + sequence);
    MessageBuilder::new(header).tlv(TlvType::from_u8(201), &sequence.to_le_bytes().repeat(4)).unwrap().build()
}

fn topics() -> [String; 4] {
    ["market_data", "signals", "execution", "system"].map(str::to_owned)
}

fn options(urls: Vec<String>, jetstream: bool) -> NatsOptions {
    let mut options = NatsOptions::new(urls);
    options.jetstream = jetstream;
    options.backoff_base = Duration::from_millis(20);
    options.backoff_max = Duration::from_millis(200);
    options
}

async fn subscribe(url: &str, subject: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    let client = async_nats::ConnectOptions::new().subscription_capacity(1 << 20).connect(url).await.unwrap();
    let mut subscription = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    let seen = Seen::default();
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Some(message) = subscription.next().await {
            sink.lock().unwrap().push(message.payload);
        }
    });
    (seen, task)
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_and_nats_carry_identical_bytes_in_dual_relay_primary() {
    let Some(nats) = Nats::start(&[]) else { return };
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let relay_path = dir.path().join("md.sock");
    let listener = Listener::bind(&Endpoint::Unix(relay_path.clone()), SocketOptions::default()).await.unwrap();
    let relay =
        myc_relay_compat::spawn(vec![(Domain::MarketData, listener)], myc_relay_compat::RelaySettings::default()).await;
    let (relay_seen, _relay_tap) = tap_relay(&relay, &relay_path).await;
    let (nats_seen, _nats_tap) = subscribe(&nats.url(), "myc.market_data").await;

    let paths: [PathBuf; 4] = [relay_path.clone(), "/nonexistent".into(), "/nonexistent".into(), "/nonexistent".into()];
    let publisher = ServicePublisher::new(
        RelayPublisher::new(paths, BufferLimits::default()),
        NatsBrokerPublisher::new(NatsPublisher::start(options(vec![nats.url()], false)).await.unwrap(), topics()),
        StageHandle::new(Stage::DualRelayPrimary),
        ShadowLimits { queue_bytes: 64 << 20, breaker: BreakerOptions::default() },
    );
    for sequence in 1..=N {
        publisher.publish(&message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let count = usize::try_from(N).unwrap();
    wait_until("both taps", || relay_seen.lock().unwrap().len() >= count && nats_seen.lock().unwrap().len() >= count)
        .await;
    let comparison = compare(&relay_seen, &nats_seen, 3);
    assert!(comparison.identical(), "{:?}", comparison.counts);
    assert_eq!(comparison.counts.matched, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_stores_a_retried_publish_once() {
    let store = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&["-js".to_owned(), "-sd".to_owned(), store.path().display().to_string()]) else {
        return;
    };
    let publisher = NatsPublisher::start(options(vec![nats.url()], true)).await.unwrap();
    for sequence in [1, 2, 2, 3] {
        publisher.publish("market_data", &message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(publisher.counters().duplicates.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(stream_messages(&nats.url()).await, 3);
}

/// A message of `len` bytes (a vendor TLV pads it), sequence `sequence`.
fn message_of(sequence: u64, len: usize) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::TestClient, sequence, 1_700_000_000_000_000_000 + sequence);
    let mut builder = MessageBuilder::new(header);
    let mut left = len - 32;
    while left > 0 {
        // TLVs of at most 60,000 bytes each: 2 bytes of TLV header up to
        // 255 bytes of value, 5 for an extended one.
        let take = left.min(60_005);
        let value = if take - 2 <= 255 { take - 2 } else { take - 5 };
        builder = builder.tlv(TlvType::from_u8(201), &vec![7u8; value]).unwrap();
        left -= take;
    }
    let built = builder.build();
    assert_eq!(built.len(), len);
    built
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_message_over_max_payload_is_refused_and_never_blocks_the_ones_after_it() {
    let store = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&["-js".to_owned(), "-sd".to_owned(), store.path().display().to_string()]) else {
        return;
    };
    let publisher = NatsPublisher::start(options(vec![nats.url()], true)).await.unwrap();
    publisher.publish("market_data", &message(1)).await.unwrap();
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    // 1 MiB of message is the server's max_payload, but the message id
    // header comes on top: the server would close the connection on it.
    let refused = publisher.publish("market_data", &message_of(2, 1024 * 1024)).await.unwrap_err();
    assert!(refused.to_string().contains("message_too_large"), "{refused}");
    for sequence in 3..=10 {
        publisher.publish("market_data", &message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    assert_eq!(stream_messages(&nats.url()).await, 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_core_nats_message_over_a_smaller_max_payload_is_never_counted_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nats.conf");
    std::fs::write(&config, "max_payload: 65536\n").unwrap();
    let Some(nats) = Nats::start(&["-c".to_owned(), config.display().to_string()]) else { return };
    let (seen, _task) = subscribe(&nats.url(), "myc.market_data").await;
    let publisher = NatsPublisher::start(options(vec![nats.url()], false)).await.unwrap();
    // Before the first delivery the publisher assumes NATS's default 1 MiB:
    // the large message is either refused at once or, if already buffered
    // when the server's 64 KiB is learnt, dropped unsent and counted failed.
    let mut refused = 0;
    for (sequence, len) in [(1, 100), (2, 100_000), (3, 100)] {
        match publisher.publish("market_data", &message_of(sequence, len)).await {
            Ok(()) => {}
            Err(error) => {
                assert!(error.to_string().contains("message_too_large"), "{error}");
                refused += 1;
            }
        }
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let dropped = publisher.counters().failed_too_large.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        refused + dropped,
        1,
        "refused {refused}, dropped {dropped}, failed {}, seen {:?}",
        publisher.publisher_counters().failed.load(std::sync::atomic::Ordering::Relaxed),
        seen.lock().unwrap().iter().map(|payload| payload.len()).collect::<Vec<_>>()
    );
    assert_eq!(publisher.publisher_counters().failed.load(std::sync::atomic::Ordering::Relaxed), dropped);
    wait_until("the two small messages", || seen.lock().unwrap().len() == 2).await;
    assert!(seen.lock().unwrap().iter().all(|payload| payload.len() == 100));
    // Learnt now: a large message is refused at once.
    let refused = publisher.publish("market_data", &message_of(4, 100_000)).await.unwrap_err();
    assert!(refused.to_string().contains("message_too_large"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_created_with_the_limits_the_settings_give() {
    let store = tempfile::tempdir().unwrap();
    let Some(nats) = Nats::start(&["-js".to_owned(), "-sd".to_owned(), store.path().display().to_string()]) else {
        return;
    };
    let mut settings = myc_config::Settings::default();
    settings.nats.urls = vec![nats.url()];
    settings.nats.jetstream = true;
    settings.nats.max_bytes = 8 << 20;
    settings.nats.max_msgs = 50_000;
    settings.nats.max_age = myc_config::Span::from_secs(3600);
    let publisher = NatsBrokerPublisher::from_settings(&settings, "limits-test").await.unwrap();
    publisher.publish(&message(1)).await.unwrap();
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let mut stream = async_nats::jetstream::new(client).get_stream("MYC").await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.max_bytes, 8 << 20);
    assert_eq!(config.max_messages, 50_000);
    assert_eq!(config.max_age, Duration::from_secs(3600));
    assert_eq!(config.subjects, vec!["myc.>".to_owned()]);
}

/// The value of the metric line that starts with `series` (`name{labels}`)
/// in a Prometheus exposition, if there is one.
fn metric(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shim_labels_the_nats_path_nats_and_exports_its_connection_state_and_buffer() {
    let Some(mut nats) = Nats::start(&[]) else { return };
    let publisher = ServicePublisher::new(
        RelayPublisher::new(std::array::from_fn(|_| "/nonexistent".into()), BufferLimits::default()),
        NatsBrokerPublisher::new(NatsPublisher::start(options(vec![nats.url()], false)).await.unwrap(), topics()),
        StageHandle::new(Stage::Broker),
        ShadowLimits { queue_bytes: 64 << 20, breaker: BreakerOptions::default() },
    );
    let mut registry = prometheus_client::registry::Registry::default();
    publisher.register(&mut registry, "feed");
    let exposition = |publisher: &ServicePublisher<RelayPublisher, NatsBrokerPublisher>| {
        publisher.refresh();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    publisher.publish(&message(1)).await.unwrap();
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let text = exposition(&publisher);
    assert!(!text.contains("path=\"broker\""), "the NATS path is not called broker: {text}");
    assert_eq!(metric(&text, "myc_shim_published_total{service=\"feed\",path=\"nats\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "myc_shim_connected{service=\"feed\",path=\"nats\"}"), Some(1.0), "{text}");
    assert_eq!(metric(&text, "myc_shim_buffered_bytes{service=\"feed\",path=\"nats\"}"), Some(0.0), "{text}");

    // The server goes away: the gauge says so, and what is published
    // meanwhile waits in the buffer, counted.
    nats.kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sequence = 2;
    let text = loop {
        publisher.try_publish(&message(sequence)).unwrap();
        sequence += 1;
        let text = exposition(&publisher);
        let connected = metric(&text, "myc_shim_connected{service=\"feed\",path=\"nats\"}");
        let buffered = metric(&text, "myc_shim_buffered_bytes{service=\"feed\",path=\"nats\"}");
        if connected == Some(0.0) && buffered.is_some_and(|bytes| bytes > 0.0) {
            break text;
        }
        assert!(Instant::now() < deadline, "never saw the NATS path disconnected with a buffer: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(!text.contains("path=\"broker\""), "{text}");
    // It comes back: connected again, the buffer drains to nothing.
    assert!(nats.spawn(), "nats-server restarts");
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = exposition(&publisher);
        if metric(&text, "myc_shim_connected{service=\"feed\",path=\"nats\"}") == Some(1.0)
            && metric(&text, "myc_shim_buffered_bytes{service=\"feed\",path=\"nats\"}") == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < deadline, "the NATS path never came back: {text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stream_messages(url: &str) -> u64 {
    let client = async_nats::connect(url).await.unwrap();
    let context = async_nats::jetstream::new(client);
    let mut stream = context.get_stream("MYC").await.unwrap();
    stream.info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loses_nothing_with_jetstream() {
    const N: u64 = 4_000;
    let store = tempfile::tempdir().unwrap();
    let Some(mut nats) = Nats::start(&["-js".to_owned(), "-sd".to_owned(), store.path().display().to_string()]) else {
        return;
    };
    let publisher = NatsPublisher::start(options(vec![nats.url()], true)).await.unwrap();
    for sequence in 1..=N / 2 {
        publisher.publish("market_data", &message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    nats.kill();
    // The server is down: publishes are buffered within the buffer's bounds.
    for sequence in N / 2 + 1..=N {
        publisher.try_publish("market_data", &message(sequence)).unwrap();
    }
    assert!(publisher.buffered_bytes() > 0);
    assert!(nats.spawn(), "nats-server restarts");
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(stream_messages(&nats.url()).await, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_carries_identical_bytes_and_survives_a_node() {
    let cluster_ports = [free_port(), free_port(), free_port()];
    let routes = cluster_ports.map(|port| format!("nats://127.0.0.1:{port}")).join(",");
    let mut nodes = Vec::new();
    for (index, port) in cluster_ports.iter().enumerate() {
        let args = [
            "--name".to_owned(),
            format!("node-{index}"),
            "--cluster_name".to_owned(),
            "myc".to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{port}"),
            "--routes".to_owned(),
            routes.clone(),
        ];
        let Some(node) = Nats::start(&args) else { return };
        nodes.push(node);
    }
    // Subscribe on node 2; publish through node 0 (knowing node 1 too).
    let (seen, _tap) = subscribe(&nodes[2].url(), "myc.market_data").await;
    let publisher = NatsPublisher::start(options(vec![nodes[0].url(), nodes[1].url()], false)).await.unwrap();
    // Routes form asynchronously: publish until node 2 sees the first message.
    let mut sent = HashMap::new();
    let mut sequence = 0u64;
    wait_until("the cluster to route a message", || {
        sequence += 1;
        let bytes = message(sequence);
        publisher.try_publish("market_data", &bytes).unwrap();
        sent.insert(sequence, bytes);
        !seen.lock().unwrap().is_empty()
    })
    .await;
    for _ in 0..2_000 {
        sequence += 1;
        let bytes = message(sequence);
        publisher.publish("market_data", &bytes).await.unwrap();
        sent.insert(sequence, bytes);
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let before_kill = sequence;
    wait_until("node 2 to see everything", || {
        seen.lock().unwrap().iter().any(|bytes| sequence_of(bytes) == before_kill)
    })
    .await;

    // Node 0 dies: the publisher moves to node 1 and messages keep arriving.
    nodes[0].kill();
    wait_until("a message published after the kill to arrive", || {
        sequence += 1;
        let bytes = message(sequence);
        let _ = publisher.try_publish("market_data", &bytes);
        sent.insert(sequence, bytes);
        seen.lock().unwrap().iter().any(|bytes| sequence_of(bytes) > before_kill)
    })
    .await;
    for bytes in seen.lock().unwrap().iter() {
        assert_eq!(sent[&sequence_of(bytes)], bytes.to_vec(), "byte identity through the cluster");
    }
}

// The relay's broker link needs the broker feature too (its Mycelium side).
#[cfg(feature = "broker")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_broker_link_works_over_nats_at_broker_and_dual_broker_primary() {
    let Some(nats) = Nats::start(&[]) else { return };
    const N: u64 = 5_000;
    let legacy = Source::CoinbaseCollector;
    let dir = tempfile::tempdir().unwrap();
    let relay_path = dir.path().join("md.sock");
    let mut settings = myc_config::Settings::default();
    settings.broker.backend = myc_config::Backend::Nats;
    settings.nats.urls = vec![nats.url()];
    settings.rollout.file = dir.path().join("rollout.toml");
    settings.services.insert("legacy".to_owned(), myc_config::ServiceSettings { source: Some(legacy.as_u8()) });
    let plan = |stage| {
        let services = std::collections::BTreeMap::from([("legacy".to_owned(), myc_rollout::ServiceStage { stage })]);
        myc_rollout::Plan { default_stage: Stage::Relay, services }
    };
    plan(Stage::Broker).write(&settings.rollout.file).unwrap();
    let bridge = myc_shim::RelayBridge::start(&settings, &[Domain::MarketData], "test").await.unwrap();
    let listener = Listener::bind(&Endpoint::Unix(relay_path.clone()), SocketOptions::default()).await.unwrap();
    let relay_settings = myc_relay_compat::RelaySettings { links: bridge.links(), ..Default::default() };
    let relay = myc_relay_compat::spawn(vec![(Domain::MarketData, listener)], relay_settings).await;
    assert!(bridge.wait_ready(Duration::from_secs(10)).await, "the NATS downlink never subscribed");
    let (relay_seen, _relay_tap) = tap_relay(&relay, &relay_path).await;
    let (nats_seen, _nats_tap) = subscribe(&nats.url(), "myc.market_data").await;

    // An unmodified legacy producer: identification header, then messages.
    let mut producer = tokio::net::UnixStream::connect(&relay_path).await.unwrap();
    let legacy_message = |sequence: u64| {
        let header = Header::new(Domain::MarketData, legacy, sequence, 1_700_000_000_000_000_000 + sequence);
        MessageBuilder::new(header).tlv(TlvType::from_u8(201), &sequence.to_le_bytes().repeat(4)).unwrap().build()
    };
    let mut bytes = Header::identification(Domain::MarketData, legacy).to_bytes().to_vec();
    (1..=N).for_each(|sequence| bytes.extend(legacy_message(sequence)));
    tokio::io::AsyncWriteExt::write_all(&mut producer, &bytes).await.unwrap();
    // At broker: up to NATS, and back down to the relay consumer.
    let count = usize::try_from(N).unwrap();
    wait_until("both sides at broker", || {
        relay_seen.lock().unwrap().len() >= count && nats_seen.lock().unwrap().len() >= count
    })
    .await;
    // At dual_broker_primary: fanned out locally and published.
    plan(Stage::DualBrokerPrimary).write(&settings.rollout.file).unwrap();
    wait_until("the link to follow the plan", || bridge.stages().of(legacy.as_u8()) == Stage::DualBrokerPrimary).await;
    let bytes: Vec<u8> = (N + 1..=2 * N).flat_map(legacy_message).collect();
    tokio::io::AsyncWriteExt::write_all(&mut producer, &bytes).await.unwrap();
    wait_until("both sides at dual_broker_primary", || {
        relay_seen.lock().unwrap().len() >= 2 * count && nats_seen.lock().unwrap().len() >= 2 * count
    })
    .await;
    bridge.flush(Duration::from_secs(10)).await.unwrap();
    let sequences = |seen: &Seen| seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect::<Vec<_>>();
    assert_eq!(sequences(&relay_seen), (1..=2 * N).collect::<Vec<_>>(), "relay consumer: once each, in order");
    assert_eq!(sequences(&nats_seen), (1..=2 * N).collect::<Vec<_>>(), "NATS: once each, in order");
    let comparison = compare(&relay_seen, &nats_seen, 3);
    assert!(comparison.identical(), "{:?}", comparison.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_servers_changed_in_the_settings_file_take_the_path_there_within_two_seconds_losing_nothing() {
    let (Some(server_a), Some(server_b)) = (Nats::start(&[]), Nats::start(&[])) else { return };
    let (on_a, _tap_a) = subscribe(&server_a.url(), "myc.market_data").await;
    let (on_b, _tap_b) = subscribe(&server_b.url(), "myc.market_data").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    let text = |url: &str| format!("[broker]\nbackend = \"nats\"\n[nats]\nurls = [\"{url}\"]\n");
    std::fs::write(&file, text(&server_a.url())).unwrap();
    let sources = myc_config::Sources::file_only(&file);
    let watched = myc_config::Watched::start(&file, move || myc_config::load(&sources)).unwrap();
    let settings = watched.current();
    let publisher = Arc::new(ServicePublisher::new(
        RelayPublisher::from_settings(&settings),
        myc_shim::BrokerSide::from_settings(&settings, "moving").await.unwrap(),
        StageHandle::new(Stage::Broker),
        ShadowLimits::from_settings(&settings.shadow),
    ));
    let _follow = myc_shim::live::follow(Arc::clone(&publisher), &watched);

    // 20 messages a millisecond, never pausing, until B has a message
    // published after the edit.
    let mut sequence = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut edited = None;
    loop {
        tick.tick().await;
        for _ in 0..20 {
            sequence += 1;
            publisher.publish(&message(sequence)).await.unwrap();
        }
        if edited.is_none() && sequence >= 4_000 {
            let temporary = file.with_extension("tmp");
            std::fs::write(&temporary, text(&server_b.url())).unwrap();
            std::fs::rename(&temporary, &file).unwrap();
            edited = Some((Instant::now(), sequence));
        }
        if let Some((at, before)) = edited {
            if on_b.lock().unwrap().iter().any(|bytes| sequence_of(bytes) > before) {
                let took = at.elapsed();
                assert!(took < Duration::from_secs(2), "the move took {took:?}");
                break;
            }
            assert!(at.elapsed() < Duration::from_secs(10), "never moved to B");
        }
    }
    for _ in 0..2_000 {
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(20)).await.unwrap();
    let sent = usize::try_from(sequence).unwrap();
    let union = || {
        let mut union: Vec<u64> =
            on_a.lock().unwrap().iter().chain(on_b.lock().unwrap().iter()).map(|bytes| sequence_of(bytes)).collect();
        union.sort_unstable();
        union.dedup();
        union
    };
    wait_until("every message on A or B", || union().len() >= sent).await;
    assert_eq!(union(), (1..=sequence).collect::<Vec<_>>(), "A and B together hold every message");
    let on_b: Vec<u64> = on_b.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(on_b.last().copied(), Some(sequence), "the newest went to B");
}
