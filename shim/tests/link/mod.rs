//! The relay's broker link end to end, in-process on sockets in a temp dir:
//! a relay with `links` from a `RelayBridge`, a real broker, an unmodified
//! legacy producer (a plain relay-protocol writer), a shim producer, a legacy
//! relay consumer and a broker subscriber; stages set through the plan file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};
use myc_config::Stage;
use myc_rollout::{Plan, ServiceStage};
use myc_shim::{
    BrokerPublisher, DirectionLabels, DomainLabel, DropLabels, Publisher, RelayBridge, RelayPublisher,
    ServicePublisher, ShadowLimits, StageHandle,
};
use myc_transport::{BreakerOptions, BufferLimits};
use tokio::io::AsyncWriteExt;

use super::common::{Seen, compare, sequence_of};
use super::{broker, listener, relay_paths, tap_broker, tap_relay, topics};

/// The legacy producer's source (a Coinbase-like collector nobody rewrites).
const LEGACY: Source = Source::CoinbaseCollector;
/// The shim producer's source.
const SHIM: Source = Source::TestClient;

fn message_from(source: Source, sequence: u64) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, source, sequence, 1_700_000_000_000_000_000 + sequence);
    MessageBuilder::new(header).tlv(TlvType::from_u8(200), &sequence.to_le_bytes().repeat(5)).unwrap().build()
}

/// One relay --bridge with a broker, in a temp dir.
struct World {
    dir: tempfile::TempDir,
    relay_path: PathBuf,
    broker_path: PathBuf,
    settings: myc_config::Settings,
    relay: myc_transport::Running<myc_relay_compat::RelayHandle>,
    bridge: RelayBridge,
}

impl World {
    /// Services `legacy` (source 3) and `shim` (source 99) at the given
    /// stages; the broker started or not.
    async fn start(legacy: Stage, shim: Stage, with_broker: bool) -> (World, Option<BrokerRunning>) {
        World::start_with(legacy, shim, with_broker, |_| {}).await
    }

    async fn start_with(
        legacy: Stage,
        shim: Stage,
        with_broker: bool,
        adjust: impl FnOnce(&mut myc_config::Settings),
    ) -> (World, Option<BrokerRunning>) {
        let dir = tempfile::tempdir().unwrap();
        let (relay_path, broker_path) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
        let broker = if with_broker { Some(broker(&broker_path).await) } else { None };
        let mut settings = myc_config::Settings::default();
        settings.broker.endpoint = format!("unix:{}", broker_path.display());
        settings.broker.backoff_initial = myc_config::Span::from_millis(5);
        settings.broker.backoff_max = myc_config::Span::from_millis(50);
        settings.rollout.file = dir.path().join("rollout.toml");
        for (name, source) in [("legacy", LEGACY), ("shim", SHIM)] {
            settings.services.insert(name.to_owned(), myc_config::ServiceSettings { source: Some(source.as_u8()) });
        }
        adjust(&mut settings);
        write_plan(&settings.rollout.file, legacy, shim);
        let bridge = RelayBridge::start(&settings, &[Domain::MarketData], "test").await.unwrap();
        let relay_settings = myc_relay_compat::RelaySettings {
            queue_messages: 1 << 20,
            links: bridge.links(),
            ..myc_relay_compat::RelaySettings::default()
        };
        let relay =
            myc_relay_compat::spawn(vec![(Domain::MarketData, listener(&relay_path).await)], relay_settings).await;
        if with_broker {
            assert!(bridge.wait_ready(Duration::from_secs(10)).await, "the downlink never subscribed");
        }
        (World { dir, relay_path, broker_path, settings, relay, bridge }, broker)
    }

    fn set_stages(&self, legacy: Stage, shim: Stage) {
        write_plan(&self.settings.rollout.file, legacy, shim);
    }

    /// Waits (up to 5 s) until the link follows the plan.
    async fn wait_stages(&self, legacy: Stage, shim: Stage) {
        let stages = self.bridge.stages();
        let deadline = Instant::now() + Duration::from_secs(5);
        while stages.of(LEGACY.as_u8()) != legacy || stages.of(SHIM.as_u8()) != shim {
            assert!(Instant::now() < deadline, "the link did not follow the plan to {legacy}/{shim}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn shim_publisher(&self, stage: Stage) -> ServicePublisher<RelayPublisher, BrokerPublisher> {
        ServicePublisher::new(
            RelayPublisher::new(relay_paths(&self.relay_path), BufferLimits::default()),
            BrokerPublisher::new(super::broker_client(&self.broker_path), topics()),
            StageHandle::new(stage),
            ShadowLimits { queue_bytes: 256 << 20, breaker: BreakerOptions::default() },
        )
    }

    fn counter(&self, direction: &'static str) -> u64 {
        self.bridge.metrics().messages.get_or_create(&DirectionLabels { domain: "market_data", direction }).get()
    }

    fn dropped(&self, direction: &'static str, reason: &'static str) -> u64 {
        let labels = DropLabels { domain: "market_data", direction, reason };
        self.bridge.metrics().dropped.get_or_create(&labels).get()
    }

    fn ignored(&self) -> u64 {
        self.bridge.metrics().ignored.get_or_create(&DomainLabel { domain: "market_data" }).get()
    }

    /// Message copies the relay queued to its consumers.
    fn relay_out(&self) -> u64 {
        let metrics = &self.relay.handle().metrics;
        myc_relay_compat::metrics::Metrics::get(&metrics.messages_out, "market_data", "all").get()
    }
}

type BrokerRunning = myc_transport::Running<myc_broker::ServerHandle>;

fn write_plan(path: &Path, legacy: Stage, shim: Stage) {
    let services = BTreeMap::from([
        ("legacy".to_owned(), ServiceStage { stage: legacy }),
        ("shim".to_owned(), ServiceStage { stage: shim }),
    ]);
    Plan { default_stage: Stage::Relay, services }.write(path).unwrap();
}

/// A legacy producer: connects, identifies itself with flags 0, writes.
async fn legacy_producer(path: &Path) -> tokio::net::UnixStream {
    let mut stream = tokio::net::UnixStream::connect(path).await.unwrap();
    stream.write_all(&Header::identification(Domain::MarketData, LEGACY).to_bytes()).await.unwrap();
    stream
}

/// Writes `messages` in 64 KiB blocks, never pausing.
async fn write_all(stream: &mut tokio::net::UnixStream, messages: impl Iterator<Item = Vec<u8>>) {
    let mut block = Vec::with_capacity(64 * 1024);
    for message in messages {
        block.extend_from_slice(&message);
        if block.len() >= 60 * 1024 {
            stream.write_all(&block).await.unwrap();
            block.clear();
        }
    }
    stream.write_all(&block).await.unwrap();
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn sorted(seen: &Seen) -> Vec<Bytes> {
    let mut all = seen.lock().unwrap().clone();
    all.sort_by_key(|bytes| (bytes[6], sequence_of(bytes)));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_every_stage_relay_consumers_get_each_message_once_and_the_broker_each_non_relay_message_once() {
    const N: u64 = 3_000;
    for (round, &legacy_stage) in Stage::ALL.iter().enumerate() {
        // The shim service sits two stages away, so each round mixes stages.
        let shim_stage = Stage::ALL[(round + 2) % 4];
        let (world, _broker) = World::start(legacy_stage, shim_stage, true).await;
        let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
        let (broker_seen, _broker_tap) = tap_broker(&world.broker_path).await;

        // Each producer is identified before the other writes: a connection
        // counts as a consumer until then, and would be sent copies.
        let producers = || {
            let metrics = &world.relay.handle().metrics;
            myc_relay_compat::metrics::Metrics::get(&metrics.connections, "market_data", "producer").get()
        };
        let mut legacy = legacy_producer(&world.relay_path).await;
        wait_until("the legacy producer is identified", || producers() == 1).await;
        let shim = world.shim_publisher(shim_stage);
        for sequence in 1..=N {
            shim.publish(&message_from(SHIM, sequence)).await.unwrap();
        }
        shim.flush(Duration::from_secs(30)).await.unwrap();
        if myc_rollout::Route::of(shim_stage).relay.is_some() {
            wait_until("the shim producer is identified", || producers() == 2).await;
        }
        write_all(&mut legacy, (1..=N).map(|sequence| message_from(LEGACY, sequence))).await;

        let mut expected_relay: Vec<Bytes> = (1..=N)
            .flat_map(|sequence| [message_from(LEGACY, sequence), message_from(SHIM, sequence)])
            .map(Bytes::from)
            .collect();
        expected_relay.sort_by_key(|bytes| (bytes[6], sequence_of(bytes)));
        let mut expected_broker: Vec<Bytes> = expected_relay
            .iter()
            .filter(|bytes| {
                let stage = if bytes[6] == LEGACY.as_u8() { legacy_stage } else { shim_stage };
                stage != Stage::Relay
            })
            .cloned()
            .collect();
        expected_broker.sort_by_key(|bytes| (bytes[6], sequence_of(bytes)));

        // Settled: the downlink has seen everything on the topic, the broker
        // tap as much as the downlink, and the relay tap every copy queued.
        let topic_count = expected_broker.len() as u64;
        wait_until("everything settled", || {
            let seen_down = world.counter("down") + world.ignored();
            seen_down >= topic_count
                && broker_seen.lock().unwrap().len() as u64 == seen_down
                && relay_seen.lock().unwrap().len() as u64 == world.relay_out()
                && relay_seen.lock().unwrap().len() >= expected_relay.len()
        })
        .await;
        let context = format!("legacy at {legacy_stage}, shim at {shim_stage}");
        assert_eq!(sorted(&relay_seen), expected_relay, "relay consumer, {context}");
        assert_eq!(sorted(&broker_seen), expected_broker, "broker subscriber, {context}");
        // Per producer, the relay consumer sees its messages in order.
        for source in [LEGACY, SHIM] {
            let sequences: Vec<u64> = relay_seen
                .lock()
                .unwrap()
                .iter()
                .filter(|bytes| bytes[6] == source.as_u8())
                .map(|bytes| sequence_of(bytes))
                .collect();
            assert_eq!(sequences, (1..=N).collect::<Vec<_>>(), "order of {source:?}, {context}");
        }
        // No loop: the link published the legacy messages once, and only
        // those; nothing that came down went back up.
        let legacy_up = if legacy_stage == Stage::Relay { 0 } else { N };
        assert_eq!(world.counter("up"), legacy_up, "{context}");
        let at_broker = |stage| if stage == Stage::Broker { N } else { 0 };
        assert_eq!(world.counter("down"), at_broker(legacy_stage) + at_broker(shim_stage), "{context}");
        drop(legacy);
        drop(world);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_walk_under_load_keeps_relay_and_broker_identical_in_the_dual_stages() {
    /// Messages relayed at each stage at least (four stages: ≥ 200,000).
    const STEP: u64 = 55_000;
    let (world, _broker) = World::start(Stage::Relay, Stage::Relay, true).await;
    let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
    let (broker_seen, _broker_tap) = tap_broker(&world.broker_path).await;
    // The producer never pauses: it writes until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut legacy = legacy_producer(&world.relay_path).await;
    let producer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut sequence = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                write_all(&mut legacy, (sequence + 1..=sequence + 500).map(|next| message_from(LEGACY, next))).await;
                sequence += 500;
            }
            (legacy, sequence)
        })
    };
    let relayed = || {
        let metrics = &world.relay.handle().metrics;
        myc_relay_compat::metrics::Metrics::get(&metrics.messages_in, "market_data", "all").get()
    };
    // Before each plan change: how many messages surely went at the old stage.
    let mut before_change = Vec::new();
    for stage in [Stage::DualRelayPrimary, Stage::DualBrokerPrimary, Stage::Broker] {
        let target = relayed() + STEP;
        wait_until("the producer moved on", || relayed() >= target).await;
        before_change.push(relayed());
        world.set_stages(stage, Stage::Relay);
        world.wait_stages(stage, Stage::Relay).await;
    }
    let target = relayed() + STEP;
    wait_until("the producer moved on", || relayed() >= target).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_legacy, last) = producer.await.unwrap();
    assert!(last >= 4 * STEP);
    wait_until("the last message came down", || {
        relay_seen.lock().unwrap().last().is_some_and(|bytes| sequence_of(bytes) == last)
            && broker_seen.lock().unwrap().last().is_some_and(|bytes| sequence_of(bytes) == last)
    })
    .await;
    world.bridge.flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(world.dropped("up", "shadow") + world.dropped("up", "buffer_full"), 0);

    let relay_sequences: Vec<u64> = relay_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    let broker_sequences: Vec<u64> = broker_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    // The relay consumer has every message once, in order: the link knows
    // which of its publishes the relay fanned out, however far the broker
    // path lags behind at the switch to broker.
    assert_eq!(relay_sequences, (1..=last).collect::<Vec<_>>(), "the relay consumer's stream");
    // The broker carries a gapless tail from the switch to the end, once
    // each, in order; nothing relayed at `relay` reached it.
    let first_on_broker = broker_sequences[0];
    assert!(first_on_broker > before_change[0], "a message of stage relay reached the broker");
    assert_eq!(broker_sequences, (first_on_broker..=last).collect::<Vec<_>>());

    // Verify over the dual stages (from the first message on the broker to
    // the last relayed surely before the switch to broker): identical.
    let dual = first_on_broker..=before_change[2];
    let only_dual = |seen: &Seen| -> Seen {
        let kept = seen.lock().unwrap().iter().filter(|bytes| dual.contains(&sequence_of(bytes))).cloned().collect();
        Arc::new(std::sync::Mutex::new(kept))
    };
    let comparison = compare(&only_dual(&relay_seen), &only_dual(&broker_seen), 3);
    assert!(comparison.identical(), "{:?} {:?}", comparison.counts, comparison.findings);
    assert!(comparison.counts.matched >= STEP, "{:?}", comparison.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_and_restarted_under_load_in_dual_broker_primary_loses_nothing_on_either_side() {
    const N: u64 = 90_000;
    let (world, broker) = World::start(Stage::DualBrokerPrimary, Stage::Relay, true).await;
    let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
    let mut legacy = legacy_producer(&world.relay_path).await;
    write_all(&mut legacy, (1..=N / 3).map(|sequence| message_from(LEGACY, sequence))).await;
    broker.unwrap().kill().await;
    write_all(&mut legacy, (N / 3 + 1..=2 * N / 3).map(|sequence| message_from(LEGACY, sequence))).await;
    let endpoint = myc_transport::Endpoint::Unix(world.broker_path.clone());
    let options = myc_transport::SocketOptions::default();
    let listener = myc_transport::Listener::bind_when_free(&endpoint, options, Duration::from_secs(5)).await.unwrap();
    let _broker = myc_broker::spawn(vec![listener], myc_broker::Settings::default()).await;
    let (broker_seen, _broker_tap) = tap_broker(&world.broker_path).await;
    write_all(&mut legacy, (2 * N / 3 + 1..=N).map(|sequence| message_from(LEGACY, sequence))).await;

    wait_until("the relay consumer has everything", || relay_seen.lock().unwrap().len() as u64 >= N).await;
    // Everything the link accepted is acknowledged in the end (resent after
    // the reconnect), and nothing was dropped: the buffer held the outage.
    world.bridge.flush(Duration::from_secs(30)).await.unwrap();
    assert_eq!(world.counter("up"), N);
    assert_eq!(world.dropped("up", "buffer_full") + world.dropped("up", "broker_error"), 0);
    let relay_sequences: Vec<u64> = relay_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(relay_sequences, (1..=N).collect::<Vec<_>>(), "relay consumers lose nothing, see nothing twice");
    // The new broker's subscriber saw a gapless tail up to the last message.
    wait_until("the broker subscriber has the last message", || {
        broker_seen.lock().unwrap().last().is_some_and(|bytes| sequence_of(bytes) == N)
    })
    .await;
    let broker_sequences: Vec<u64> = broker_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    let first = broker_sequences[0];
    assert!(first <= 2 * N / 3 + 1, "the restarted broker's subscriber began at {first}");
    assert_eq!(broker_sequences, (first..=N).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_absent_the_relay_serves_at_full_rate_the_link_drops_and_counts_and_the_downlink_resumes() {
    const N: u64 = 30_000;
    let (world, _) = World::start_with(Stage::DualBrokerPrimary, Stage::Relay, false, |settings| {
        settings.broker.buffer_messages = 1_000;
    })
    .await;
    let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
    let mut legacy = legacy_producer(&world.relay_path).await;
    let began = Instant::now();
    write_all(&mut legacy, (1..=N).map(|sequence| message_from(LEGACY, sequence))).await;
    wait_until("the relay consumer has everything", || relay_seen.lock().unwrap().len() as u64 >= N).await;
    let took = began.elapsed();
    // A loaded CI machine relays 30,000 small messages well within this.
    assert!(took < Duration::from_secs(10), "the relay slowed to {took:?} with the broker away");
    let dropped = world.dropped("up", "buffer_full");
    assert!(dropped > 0, "the link's buffer never filled");
    assert_eq!(world.counter("up") + dropped, N);
    assert_eq!(world.bridge.metrics().connected.get_or_create(&DomainLabel { domain: "market_data" }).get(), 0);

    // The broker arrives: the downlink subscribes by itself, and a source at
    // `broker` reaches the relay consumer through it.
    let _broker = broker(&world.broker_path).await;
    assert!(world.bridge.wait_ready(Duration::from_secs(10)).await, "the downlink never resumed");
    // The uplink reconnects by itself and delivers what it buffered.
    world.bridge.flush(Duration::from_secs(10)).await.unwrap();
    world.set_stages(Stage::Broker, Stage::Relay);
    world.wait_stages(Stage::Broker, Stage::Relay).await;
    write_all(&mut legacy, (N + 1..=N + 100).map(|sequence| message_from(LEGACY, sequence))).await;
    wait_until("the downlink delivered", || {
        relay_seen.lock().unwrap().last().is_some_and(|bytes| sequence_of(bytes) == N + 100)
    })
    .await;
    assert!(world.counter("down") >= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_plan_edit_keeps_the_last_good_stages() {
    let (world, _broker) = World::start(Stage::Broker, Stage::DualRelayPrimary, true).await;
    let rejected = world.bridge.plan_reloads().rejected.get();
    std::fs::write(&world.settings.rollout.file, "[services.legacy]\nstage = \"sideways\"\n").unwrap();
    wait_until("the bad edit was refused", || world.bridge.plan_reloads().rejected.get() > rejected).await;
    assert_eq!(world.bridge.stages().of(LEGACY.as_u8()), Stage::Broker);
    assert_eq!(world.bridge.stages().of(SHIM.as_u8()), Stage::DualRelayPrimary);
    // And the link still acts on them: a legacy message goes up and comes
    // back down to the relay consumer.
    let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
    let mut legacy = legacy_producer(&world.relay_path).await;
    write_all(&mut legacy, std::iter::once(message_from(LEGACY, 1))).await;
    wait_until("the message came down", || relay_seen.lock().unwrap().len() == 1).await;
    assert_eq!(world.counter("up"), 1);
    drop(world.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_relay_rejects_is_never_published() {
    let (world, _broker) = World::start(Stage::Broker, Stage::Relay, true).await;
    let (relay_seen, _relay_tap) = tap_relay(&world.relay, &world.relay_path).await;
    let (broker_seen, _broker_tap) = tap_broker(&world.broker_path).await;
    let mut wrong_domain = message_from(LEGACY, 2);
    wrong_domain[4] = Domain::Signal.as_u8();
    let mut bad_checksum = message_from(LEGACY, 3);
    bad_checksum[28..32].copy_from_slice(&0xDEAD_BEEF_u32.to_le_bytes());
    let messages = [message_from(LEGACY, 1), wrong_domain, bad_checksum, message_from(LEGACY, 4)];
    let mut legacy = legacy_producer(&world.relay_path).await;
    write_all(&mut legacy, messages.into_iter()).await;
    wait_until("the valid ones came down", || relay_seen.lock().unwrap().len() == 2).await;
    world.bridge.flush(Duration::from_secs(10)).await.unwrap();
    let on_broker: Vec<u64> = broker_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(on_broker, [1, 4]);
    assert_eq!(world.counter("up"), 2);
    let invalid = |reason| {
        let metrics = &world.relay.handle().metrics;
        myc_relay_compat::metrics::Metrics::get(&metrics.invalid, "market_data", reason).get()
    };
    assert_eq!((invalid("wrong_domain"), invalid("bad_checksum")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shim_producer_identifies_itself_and_is_never_linked() {
    // Both services at dual_broker_primary: the link would publish a linked
    // producer's messages; the shim's must reach the broker once, by the shim.
    const N: u64 = 500;
    let (world, _broker) = World::start(Stage::DualBrokerPrimary, Stage::DualBrokerPrimary, true).await;
    let (broker_seen, _broker_tap) = tap_broker(&world.broker_path).await;
    let shim = world.shim_publisher(Stage::DualBrokerPrimary);
    for sequence in 1..=N {
        shim.publish(&message_from(SHIM, sequence)).await.unwrap();
    }
    shim.flush(Duration::from_secs(10)).await.unwrap();
    wait_until("the relay saw the shim's messages", || {
        let metrics = &world.relay.handle().metrics;
        myc_relay_compat::metrics::Metrics::get(&metrics.messages_in, "market_data", "all").get() >= N
    })
    .await;
    wait_until("the broker subscriber has them", || broker_seen.lock().unwrap().len() as u64 >= N).await;
    world.bridge.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(world.counter("up"), 0, "the link published a shim producer's messages");
    let sequences: Vec<u64> = broker_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(sequences, (1..=N).collect::<Vec<_>>());
}
