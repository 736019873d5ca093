//! The shim against a real relay and a real broker, in-process on sockets
//! in a temp dir: the stage walked under load with both paths captured,
//! shadow isolation with the broker absent, and stage changes picked up
//! from the rollout file.

#![cfg(all(feature = "relay", feature = "broker"))]
#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod common;
#[path = "it/connections.rs"]
mod connections;
mod link;
#[path = "it/live.rs"]
mod live;

use common::{Seen, compare, sequence_of, tap_relay};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};
use myc_config::Stage;
use myc_shim::{BrokerPublisher, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};
use myc_transport::{BreakerOptions, BreakerState, BufferLimits, Endpoint, Listener, SocketOptions};

/// A market-data message whose vendor TLV carries its sequence.
fn message(sequence: u64) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::TestClient, sequence, 1_700_000_000_000_000_000 + sequence);
    MessageBuilder::new(header).tlv(TlvType::from_u8(200), &sequence.to_le_bytes().repeat(5)).unwrap().build()
}

fn relay_paths(market_data: &Path) -> [PathBuf; 4] {
    [market_data.to_owned(), "/nonexistent/s".into(), "/nonexistent/e".into(), "/nonexistent/y".into()]
}

fn topics() -> [String; 4] {
    ["market_data", "signals", "execution", "system"].map(str::to_owned)
}

async fn listener(path: &Path) -> Listener {
    Listener::bind(&Endpoint::Unix(path.to_owned()), SocketOptions::default()).await.unwrap()
}

async fn relay(path: &Path) -> myc_transport::Running<myc_relay_compat::RelayHandle> {
    let settings =
        myc_relay_compat::RelaySettings { queue_messages: 1 << 20, ..myc_relay_compat::RelaySettings::default() };
    myc_relay_compat::spawn(vec![(Domain::MarketData, listener(path).await)], settings).await
}

async fn broker(path: &Path) -> myc_transport::Running<myc_broker::ServerHandle> {
    myc_broker::spawn(vec![listener(path).await], myc_broker::Settings::default()).await
}

fn broker_client(path: &Path) -> myc_broker::Client {
    let mut options = myc_broker::ClientOptions::new(Endpoint::Unix(path.to_owned()));
    options.reconnect.backoff_base = Duration::from_millis(5);
    options.reconnect.backoff_max = Duration::from_millis(20);
    myc_broker::Client::start(options)
}

async fn tap_broker(path: &Path) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let client = broker_client(path);
    let mut subscription = client.subscribe("market_data", "").unwrap();
    subscription.wait_active(Duration::from_secs(5)).await.unwrap();
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Some(batch) = subscription.recv_batch().await {
            let mut sink = sink.lock().unwrap();
            sink.extend(batch.payloads().map(Bytes::copy_from_slice));
        }
    });
    (seen, task)
}

async fn wait_for(seen: &Seen, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.lock().unwrap().len() < count {
        assert!(Instant::now() < deadline, "saw {} of {count}", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walking_the_stages_under_load_loses_repeats_and_reorders_nothing_on_either_path() {
    const N: u64 = 500_000;
    const WALK: [Stage; 5] =
        [Stage::Relay, Stage::DualRelayPrimary, Stage::DualBrokerPrimary, Stage::Broker, Stage::Relay];
    let dir = tempfile::tempdir().unwrap();
    let (relay_path, broker_path) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
    let relay = relay(&relay_path).await;
    let _broker = broker(&broker_path).await;
    let (relay_seen, _relay_tap) = tap_relay(&relay, &relay_path).await;
    let (broker_seen, _broker_tap) = tap_broker(&broker_path).await;

    let stage = StageHandle::new(Stage::Relay);
    let limits = ShadowLimits { queue_bytes: 256 << 20, breaker: BreakerOptions::default() };
    let publisher = ServicePublisher::new(
        RelayPublisher::new(relay_paths(&relay_path), BufferLimits::default()),
        BrokerPublisher::new(broker_client(&broker_path), topics()),
        stage.clone(),
        limits,
    );
    let (mut on_relay, mut on_broker) = (Vec::new(), Vec::new());
    for sequence in 1..=N {
        let now = WALK[usize::try_from((sequence - 1) / (N / 5)).unwrap()];
        if stage.get() != now {
            stage.set(now);
        }
        publisher.publish(&message(sequence)).await.unwrap();
        let route = myc_rollout::Route::of(now);
        if route.relay.is_some() {
            on_relay.push(sequence);
        }
        if route.broker.is_some() {
            on_broker.push(sequence);
        }
    }
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    let summary = publisher.summary();
    assert_eq!((summary.relay.shadow_dropped, summary.broker.shadow_dropped), (0, 0), "{summary:?}");
    assert_eq!((summary.relay.failed, summary.broker.failed), (0, 0), "{summary:?}");
    assert_eq!(summary.relay.published, on_relay.len() as u64);
    assert_eq!(summary.broker.published, on_broker.len() as u64);

    wait_for(&relay_seen, on_relay.len()).await;
    wait_for(&broker_seen, on_broker.len()).await;
    let relay_seen = relay_seen.lock().unwrap();
    let broker_seen = broker_seen.lock().unwrap();
    // Exactly the messages of the stages that route to each path, in order.
    assert_eq!(relay_seen.iter().map(|bytes| sequence_of(bytes)).collect::<Vec<_>>(), on_relay);
    assert_eq!(broker_seen.iter().map(|bytes| sequence_of(bytes)).collect::<Vec<_>>(), on_broker);
    // Byte-identical on both paths for every message of the dual stages.
    let by_sequence: HashMap<u64, &Bytes> = relay_seen.iter().map(|bytes| (sequence_of(bytes), bytes)).collect();
    let mut both = 0;
    for bytes in broker_seen.iter() {
        if let Some(twin) = by_sequence.get(&sequence_of(bytes)) {
            assert_eq!(*twin, bytes);
            both += 1;
        }
    }
    assert_eq!(both, 2 * N / 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_broker_never_slows_or_fails_the_relay_and_its_breaker_opens_then_closes() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let (relay_path, broker_path) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
    let relay = relay(&relay_path).await;
    let (relay_seen, _relay_tap) = tap_relay(&relay, &relay_path).await;

    let open_for = Duration::from_millis(50);
    let limits = ShadowLimits { queue_bytes: 64 * 1024, breaker: BreakerOptions { failure_threshold: 5, open_for } };
    let publisher = ServicePublisher::new(
        RelayPublisher::new(relay_paths(&relay_path), BufferLimits::default()),
        BrokerPublisher::new(broker_client(&broker_path), topics()),
        StageHandle::new(Stage::DualRelayPrimary),
        limits,
    );
    // The broker stays away for N messages (and, with MYC_SOAK=1, 30 s).
    let away = if std::env::var_os("MYC_SOAK").is_some() { Duration::from_secs(30) } else { Duration::ZERO };
    let began = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut sequence = 0;
    while sequence < N || began.elapsed() < away {
        sequence += 1;
        let started = Instant::now();
        publisher.publish(&message(sequence)).await.unwrap();
        slowest = slowest.max(started.elapsed());
        if sequence % 1024 == 0 && began.elapsed() < away {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let sent = sequence;
    assert!(slowest < Duration::from_millis(100), "a relay publish waited {slowest:?} on the absent broker");
    wait_for(&relay_seen, usize::try_from(sent).unwrap()).await;
    let summary = publisher.summary();
    assert_eq!((summary.relay.published, summary.relay.failed), (sent, 0));
    assert!(summary.broker.shadow_dropped > 0, "{summary:?}");
    assert_eq!(summary.broker.published + summary.broker.shadow_dropped, sent);
    // Opened by the failures; by now its open period may have run out (half-open).
    assert_ne!(publisher.broker().breaker_state(), BreakerState::Closed);

    // The broker arrives: the client connects and drains its queue, the
    // breaker's probe goes through and closes it, and shadows flow again.
    let _broker = broker(&broker_path).await;
    let (broker_seen, _broker_tap) = tap_broker(&broker_path).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.broker().breaker_state() != BreakerState::Closed
        || !broker_seen.lock().unwrap().iter().any(|bytes| sequence_of(bytes) > sent)
    {
        assert!(
            Instant::now() < deadline,
            "the shadow breaker never closed: {:?} {:?} {} {:?}",
            publisher.summary(),
            publisher.broker().publisher().client().state(),
            publisher.broker().publisher().buffered_bytes(),
            publisher.broker().breaker_state()
        );
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(publisher.summary().relay.failed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_change_in_the_rollout_file_reaches_the_publisher_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let plan_file = dir.path().join("rollout.toml");
    let (stage, _watch) = StageHandle::follow(plan_file.clone(), Stage::Relay, "feed").unwrap();
    assert_eq!(stage.get(), Stage::Relay);
    let rollout = myc_rollout::Rollout {
        plan_file,
        audit_log: dir.path().join("audit.jsonl"),
        default_stage: Stage::Relay,
        gate: myc_config::GateSettings::default(),
        services: std::collections::BTreeMap::new(),
    };
    let actor = myc_rollout::Actor { user: "test".to_owned(), host: "here".to_owned() };
    for wanted in [Stage::DualRelayPrimary, Stage::Broker, Stage::Relay] {
        rollout.set("feed", wanted, "test", &actor, std::time::SystemTime::now()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);
        while stage.get() != wanted {
            assert!(Instant::now() < deadline, "still {} instead of {wanted}", stage.get());
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // A broken plan keeps the last good stage.
    std::fs::write(dir.path().join("rollout.toml"), "[services.feed]\nstage = \"sideways\"\n").unwrap();
    tokio::time::sleep(myc_config::DEBOUNCE * 3).await;
    assert_eq!(stage.get(), Stage::Relay);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_deleted_then_replaced_by_garbage_keeps_the_stage_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let plan_file = dir.path().join("rollout.toml");
    std::fs::write(&plan_file, "[services.feed]\nstage = \"dual_broker_primary\"\n").unwrap();
    let (stage, _watch) = StageHandle::follow(plan_file.clone(), Stage::Relay, "feed").unwrap();
    assert_eq!(stage.get(), Stage::DualBrokerPrimary);
    let wait_for_errors = |n: u64| {
        let stage = stage.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            while stage.plan_errors().get() < n {
                assert!(Instant::now() < deadline, "{} plan errors counted, not {n}", stage.plan_errors().get());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    std::fs::remove_file(&plan_file).unwrap();
    wait_for_errors(1).await;
    assert_eq!(stage.get(), Stage::DualBrokerPrimary, "a deleted plan is not the default stage");
    std::fs::write(&plan_file, "\u{0}\u{7f}<html>garbage").unwrap();
    wait_for_errors(2).await;
    assert_eq!(stage.get(), Stage::DualBrokerPrimary, "garbage is not a plan");
    // A good plan again is followed again.
    std::fs::write(&plan_file, "[services.feed]\nstage = \"broker\"\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stage.get() != Stage::Broker {
        assert!(Instant::now() < deadline, "the restored plan was not followed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_during_dual_broker_primary_leaves_the_broker_path_whole_and_its_loss_visible() {
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (relay_path, broker_path) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
    let mut first_relay = Some(relay(&relay_path).await);
    let _broker = broker(&broker_path).await;
    let (relay_seen, _relay_tap) = tap_relay(first_relay.as_ref().unwrap(), &relay_path).await;
    let (broker_seen, _broker_tap) = tap_broker(&broker_path).await;
    let publisher = ServicePublisher::new(
        RelayPublisher::new(relay_paths(&relay_path), BufferLimits::default()),
        BrokerPublisher::new(broker_client(&broker_path), topics()),
        StageHandle::new(Stage::DualBrokerPrimary),
        ShadowLimits { queue_bytes: 4 << 20, breaker: BreakerOptions::default() },
    );
    let mut restarted = None;
    for sequence in 1..=N {
        if sequence == N / 2 {
            // The relay dies mid-stream and a new one takes its socket.
            first_relay.take().unwrap().kill().await;
            restarted = Some(relay_when_free(&relay_path).await);
        }
        publisher.publish(&message(sequence)).await.unwrap();
    }
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    wait_for(&broker_seen, usize::try_from(N).unwrap()).await;
    let broker_sequences: Vec<u64> = broker_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(broker_sequences, (1..=N).collect::<Vec<_>>(), "the broker path has no gap");
    let summary = publisher.summary();
    assert_eq!((summary.broker.published, summary.broker.failed), (N, 0));
    // The relay side lost what its dead connection held: counted, and shown
    // by verify as missing, not hidden.
    let relay_count = relay_seen.lock().unwrap().len() as u64;
    assert!(relay_count < N, "the old relay's tap cannot have seen everything");
    let comparison = compare(&broker_seen, &relay_seen, 1);
    assert!(!comparison.identical());
    assert_eq!(comparison.counts.missing, N - relay_count);
    drop(restarted);
}

/// A relay on `path` once the killed one has let go of it.
async fn relay_when_free(path: &Path) -> myc_transport::Running<myc_relay_compat::RelayHandle> {
    let endpoint = Endpoint::Unix(path.to_owned());
    let listener = Listener::bind_when_free(&endpoint, SocketOptions::default(), Duration::from_secs(5)).await.unwrap();
    myc_relay_compat::spawn(vec![(Domain::MarketData, listener)], myc_relay_compat::RelaySettings::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_file_edited_a_hundred_times_a_second_half_badly_never_flaps_or_loses() {
    let seconds = if std::env::var_os("MYC_SOAK").is_some() { 10 } else { 2 };
    let dir = tempfile::tempdir().unwrap();
    let (relay_path, broker_path) = (dir.path().join("md.sock"), dir.path().join("broker.sock"));
    let relay = relay(&relay_path).await;
    let _broker = broker(&broker_path).await;
    let (relay_seen, _relay_tap) = tap_relay(&relay, &relay_path).await;
    let plan = dir.path().join("rollout.toml");
    std::fs::write(&plan, "[services.feed]\nstage = \"relay\"\n").unwrap();
    let (stage, watch) = StageHandle::follow(plan.clone(), Stage::Relay, "feed").unwrap();
    let publisher = ServicePublisher::new(
        RelayPublisher::new(relay_paths(&relay_path), BufferLimits::default()),
        BrokerPublisher::new(broker_client(&broker_path), topics()),
        stage.clone(),
        ShadowLimits { queue_bytes: 64 << 20, breaker: BreakerOptions::default() },
    );
    let editor = std::thread::spawn(move || {
        // 100 edits a second, on a schedule (not sleeps that drift).
        let started = Instant::now();
        let mut edit = 0u64;
        while edit < 100 * seconds {
            let due = started + Duration::from_millis(10 * edit);
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            let text = match edit % 4 {
                0 => "[services.feed]\nstage = \"dual_relay_primary\"\n",
                1 => "[services.feed]\nstage = \"sideways\"\n",
                2 => "[services.feed]\nstage = \"relay\"\n",
                _ => "[services.feed\nstage = ",
            };
            std::fs::write(&plan, text).unwrap();
            edit += 1;
        }
        edit
    });
    let mut sequence = 0u64;
    let mut stages_seen = std::collections::BTreeSet::new();
    while !editor.is_finished() {
        sequence += 1;
        stages_seen.insert(stage.get());
        publisher.publish(&message(sequence)).await.unwrap();
        if sequence % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let edits = editor.join().unwrap();
    assert!(edits >= 100 * seconds, "{edits} edits");
    publisher.flush(Duration::from_secs(30)).await.unwrap();
    assert!(stages_seen.iter().all(|seen| matches!(seen, Stage::Relay | Stage::DualRelayPrimary)), "{stages_seen:?}");
    assert!(watch.counts().rejected.get() > 0, "the bad edits were seen and refused");
    // The relay is primary in both stages: it has every message, in order.
    wait_for(&relay_seen, usize::try_from(sequence).unwrap()).await;
    let relay_sequences: Vec<u64> = relay_seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(relay_sequences, (1..=sequence).collect::<Vec<_>>());
    assert_eq!(publisher.summary().relay.failed, 0);
}
